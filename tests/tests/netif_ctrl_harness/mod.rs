//! A netif control ring between a simulated guest's `CtrlFront` and a backend in dom0 that the tests drive.
//!
//! Shared by `netif_ctrl_e2e.rs` and `netif_ctrl_attacks.rs`, which include it as a module.
//! [`CtrlRig`] holds both ends: the front (domain 1) over a granted ring page and its own
//! event channel, and the backend's [`BackRing`] over its mapping of that page. Tests take
//! the requests the front published ([`CtrlRig::take_requests`]), answer them
//! ([`CtrlRig::answer`], or anything at all with [`CtrlRig::respond_raw`]) and deliver the
//! event ([`CtrlRig::event`]). [`Model`] is a backend that follows `io/netif.h` (what Linux's
//! netback does) and records what it was told, so a test can steer packets with it.
// Each test that includes this uses part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use xen_core::platform::{self, RingMemory};
use xen_netif::ctrl::{self, toeplitz, CtrlFront, CtrlOutcome, HashConfig, KEY_LEN};
use xen_netif::Progress;
use xen_ring::BackRing;
use xen_sim::{CopyOp, CopyPtr, Domain, MapOp, Mapping, Pages, Sim};
use xen_sys::wire::netif::{
    CtrlRequest, CtrlResponse, CtrlStatus, CtrlType, HashAlgorithm, HashFlags,
};
use xen_sys::{DomId, GrantRef, Port};

pub const D0: DomId = DomId::DOM0;
pub const D1: DomId = DomId::new(1);

pub type Ctrl = CtrlFront<Domain, Pages>;
pub type CtrlBack = BackRing<Mapping, [u8; 16], [u8; 12]>;

pub struct CtrlRig {
    pub sim: Sim,
    pub fe: Domain,
    pub be: Domain,
    pub front: Ctrl,
    pub back: CtrlBack,
    /// The front's port, and the backend's end of it.
    pub port: Port,
    pub be_port: Port,
    pub ring_gref: GrantRef,
    /// Requests the backend took and has not answered.
    pub pending: VecDeque<CtrlRequest>,
    /// Every request the backend took, in order.
    pub seen: Vec<CtrlRequest>,
}

impl CtrlRig {
    /// A control ring of domain 1 for `config`, not started.
    pub fn new(config: HashConfig) -> CtrlRig {
        let sim = Sim::new();
        let fe = sim.create_domain(1);
        let be = sim.domain(0);
        let ring = fe.alloc_ring(1).unwrap();
        let ring_gref = fe.grant_ring_page(D0, &ring, 0).unwrap();
        let port = fe.alloc_unbound(D0).unwrap();
        let be_port = be.bind_interdomain(D1, port).unwrap();
        let front = CtrlFront::new(fe.clone(), ring, D0, port, config).unwrap();
        let back = BackRing::attach(RingMemory::map_ring(&be, D1, &[ring_gref]).unwrap()).unwrap();
        CtrlRig {
            sim,
            fe,
            be,
            front,
            back,
            port,
            be_port,
            ring_gref,
            pending: VecDeque::new(),
            seen: Vec::new(),
        }
    }

    /// A rig with the front started (its first request published).
    pub fn started(config: HashConfig) -> CtrlRig {
        let mut rig = Self::new(config);
        rig.front.start().unwrap();
        rig
    }

    /// Grants of the front other than the ring's (and the deferred pages').
    pub fn page_grants(&self) -> u64 {
        self.sim.live_grants(D1) - 1
    }

    /// Whether the front notified the backend since the last call.
    pub fn notified(&self) -> bool {
        self.be.take_pending(self.be_port).unwrap()
    }

    /// Takes every request published; returns how many.
    pub fn take_requests(&mut self) -> usize {
        let mut n = 0;
        while let Some(raw) = self.back.next_request().unwrap() {
            let req = CtrlRequest::from_bytes(&raw);
            self.pending.push_back(req);
            self.seen.push(req);
            n += 1;
        }
        n
    }

    /// The next request not answered (taking what was published).
    pub fn next_request(&mut self) -> CtrlRequest {
        self.take_requests();
        self.pending.pop_front().expect("a request published")
    }

    /// Queues a response with any contents (using up one request taken).
    pub fn respond_raw(&mut self, id: u16, ty: u16, status: u32, data: u32) {
        let mut r = CtrlResponse::ZERO;
        r.id = id;
        r.ty = ty;
        r.status = status;
        r.data = data;
        self.back.queue_response(&r.to_bytes()).unwrap();
    }

    /// Queues the proper response to `req`.
    pub fn answer(&mut self, req: &CtrlRequest, status: CtrlStatus, data: u32) {
        self.respond_raw(req.id, req.ty, status.into(), data);
    }

    /// Publishes the responses.
    pub fn push(&mut self) {
        let _ = self.back.push_responses().unwrap();
    }

    /// Runs the front's event handler.
    pub fn event(&mut self) -> Result<Progress, ctrl::Error> {
        self.front.handle_event()
    }

    /// Copies `len` bytes from the start of a page the front granted, by grant copy (as
    /// netback reads keys and tables); `None` if the copy fails.
    pub fn read_granted(&self, gref: GrantRef, len: usize) -> Option<Vec<u8>> {
        let local = self.be.alloc_pages(1);
        let frame = local.frame(0).unwrap();
        let res = self.be.copy(&[CopyOp {
            src: CopyPtr::Gref {
                granter: D1,
                gref,
                offset: 0,
            },
            dst: CopyPtr::Local { frame, offset: 0 },
            len: u16::try_from(len).ok()?,
        }]);
        if res[0].is_err() {
            return None;
        }
        let mut out = vec![0u8; len];
        local.read(0, &mut out);
        Some(out)
    }

    /// Maps a page the front granted.
    pub fn map(&self, gref: GrantRef, writable: bool) -> Result<Mapping, xen_sim::GrantError> {
        self.be
            .map_grants(&[MapOp {
                granter: D1,
                gref,
                writable,
            }])
            .pop()
            .unwrap()
    }

    /// Whether the backend could map the page writable (it should not: keys and tables are
    /// granted read-only).
    pub fn writable(&self, gref: GrantRef) -> bool {
        match self.map(gref, true) {
            Ok(m) => {
                m.unmap();
                true
            }
            Err(_) => false,
        }
    }

    /// Closes the front and releases its ring as the glue would; checks that nothing is left
    /// granted but what the backend still maps, and that no page was freed while mapped.
    pub fn close(self) -> Sim {
        let CtrlRig {
            sim,
            fe,
            mut front,
            back,
            port,
            ring_gref,
            ..
        } = self;
        front.close();
        // A second close changes nothing.
        let outcome = front.outcome();
        front.close();
        assert_eq!(front.outcome(), outcome);
        assert_eq!(front.pages_held(), 0);
        drop(back);
        let ring = front.into_ring();
        platform::release_ring(&fe, ring, &[ring_gref]);
        fe.close_port(port).unwrap();
        fe.retry_deferred();
        assert_eq!(
            sim.live_grants(D1),
            fe.deferred_frees() as u64,
            "only deferred pages stay granted"
        );
        assert_eq!(sim.grant_stats().freed_while_mapped, 0);
        sim
    }
}

/// A backend that answers as `io/netif.h` says (Linux's netback in all that matters here),
/// reading keys and tables by grant copy, and recording the state it was put in.
#[derive(Clone, Debug)]
pub struct Model {
    pub num_queues: u32,
    /// Packet types it hashes (`GET_HASH_FLAGS`).
    pub offered: u32,
    /// Largest key it takes (`BUFFER_OVERFLOW` past it).
    pub max_key: usize,
    /// Largest table (`GET_HASH_MAPPING_SIZE`).
    pub max_mapping: u32,
    pub algorithm: HashAlgorithm,
    pub flags: HashFlags,
    pub key: [u8; KEY_LEN],
    pub mapping: Vec<u32>,
    /// Whether each page it was given (key, table) was refused a writable mapping.
    pub pages_read_only: Vec<bool>,
}

impl Model {
    /// Linux's netback: every type, 40-byte keys, tables of 128 entries.
    pub fn netback(num_queues: u32) -> Model {
        Model {
            num_queues,
            offered: HashFlags::all().bits(),
            max_key: KEY_LEN,
            max_mapping: 128,
            algorithm: HashAlgorithm::None,
            flags: HashFlags::empty(),
            key: [0; KEY_LEN],
            mapping: Vec::new(),
            pages_read_only: Vec::new(),
        }
    }

    /// The answer to `req`.
    pub fn handle(&mut self, rig: &CtrlRig, req: &CtrlRequest) -> (CtrlStatus, u32) {
        use CtrlStatus::*;
        let [d0, d1, d2] = req.data;
        let Ok(ty) = CtrlType::try_from(req.ty) else {
            return (NotSupported, 0);
        };
        match ty {
            CtrlType::SetHashAlgorithm => match HashAlgorithm::try_from(d0) {
                Ok(a) => {
                    self.algorithm = a;
                    (Success, 0)
                }
                Err(_) => (InvalidParameter, 0),
            },
            CtrlType::GetHashFlags if self.algorithm == HashAlgorithm::None => (NotSupported, 0),
            CtrlType::GetHashFlags => (Success, self.offered),
            CtrlType::SetHashFlags => match HashFlags::from_bits(d0) {
                Some(_) if self.algorithm == HashAlgorithm::None => (InvalidParameter, 0),
                Some(f) if f.bits() & !self.offered == 0 => {
                    self.flags = f;
                    (Success, 0)
                }
                _ => (InvalidParameter, 0),
            },
            CtrlType::SetHashKey => {
                let len = d1 as usize;
                if len > self.max_key {
                    return (BufferOverflow, 0);
                }
                self.pages_read_only.push(!rig.writable(GrantRef::new(d0)));
                let Some(bytes) = rig.read_granted(GrantRef::new(d0), len) else {
                    return (InvalidParameter, 0);
                };
                self.key = [0; KEY_LEN];
                self.key[..len].copy_from_slice(&bytes);
                (Success, 0)
            }
            CtrlType::GetHashMappingSize => (Success, self.max_mapping),
            // Whatever it claims, the model keeps its own table bounded.
            CtrlType::SetHashMappingSize if d0 > self.max_mapping || d0 > 1 << 16 => {
                (InvalidParameter, 0)
            }
            CtrlType::SetHashMappingSize => {
                self.mapping = vec![0; d0 as usize];
                (Success, 0)
            }
            CtrlType::SetHashMapping => {
                let (len, off) = (d1 as usize, d2 as usize);
                if len > 1024
                    || off
                        .checked_add(len)
                        .map_or(true, |end| end > self.mapping.len())
                {
                    return (InvalidParameter, 0);
                }
                self.pages_read_only.push(!rig.writable(GrantRef::new(d0)));
                let Some(bytes) = rig.read_granted(GrantRef::new(d0), len * 4) else {
                    return (InvalidParameter, 0);
                };
                let entries: Vec<u32> = bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
                    .collect();
                if entries.iter().any(|&q| q >= self.num_queues) {
                    return (InvalidParameter, 0);
                }
                self.mapping[off..off + len].copy_from_slice(&entries);
                (Success, 0)
            }
            _ => (NotSupported, 0),
        }
    }

    /// The queue a packet whose hash input is `input` (of a type in `flags`) goes to, or
    /// `None` if the backend does not hash it.
    pub fn queue_of(&self, ty: HashFlags, input: &[u8]) -> Option<u32> {
        if self.algorithm != HashAlgorithm::Toeplitz || !self.flags.contains(ty) {
            return None;
        }
        let hash = toeplitz(&self.key, input);
        Some(if self.mapping.is_empty() {
            hash % self.num_queues
        } else {
            self.mapping[(hash % self.mapping.len() as u32) as usize]
        })
    }

    /// Serves the ring until the front's sequence ends: takes each request, answers it,
    /// publishes, delivers the event. Returns the rounds (one request each).
    pub fn serve(&mut self, rig: &mut CtrlRig) -> usize {
        let mut rounds = 0;
        while rig.front.outcome().is_none() {
            assert!(rounds < 32, "the sequence does not end");
            rig.take_requests();
            let Some(req) = rig.pending.pop_front() else {
                panic!("the front waits with nothing published");
            };
            let (status, data) = self.handle(rig, &req);
            rig.answer(&req, status, data);
            rig.push();
            let p = rig.event().unwrap();
            assert!(!p.spurious && p.done == 1, "{p:?}");
            rounds += 1;
        }
        rounds
    }
}

/// The outcome, which must be `Configured`.
pub fn configured(rig: &CtrlRig) -> ctrl::HashSetup {
    match rig.front.outcome() {
        Some(CtrlOutcome::Configured(s)) => s,
        other => panic!("not configured: {other:?}"),
    }
}
