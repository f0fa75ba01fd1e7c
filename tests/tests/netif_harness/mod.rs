//! A netfront queue on a simulated guest, facing a netif backend in dom0 that the tests drive.
//!
//! Shared by `netif_e2e.rs` and `netif_front_attacks.rs`, which include it as a module. The
//! backend is plain ring code over `BackRing`: [`Rig::read_tx`] takes the packets the front
//! sent (reading each slot's data through a read-only mapping, as netback's grant copy
//! would), [`Rig::answer_tx`] answers them, [`Rig::rx_send`] writes a packet into the front's
//! posted buffers (with a GSO slot if asked) and [`Rig::echo`] does all three, looping every
//! sent packet back. Tests that attack the front write raw slots with [`Rig::rx_raw`] and
//! [`Rig::tx_raw`]. The front's id tables are inline ([`Rig::new`], [`Rig::on`]) or any
//! storage the test hands over ([`Rig::with_tables`]).
// Each test that includes this uses part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use xen_core::platform::{self, RingMemory};
use xen_netif::{
    FrontConfig, InlineRxTable, InlineTxTable, NetFront, RxEntry, RxMeta, TxCompletion, TxEntry,
    TxLent, RING_SLOTS,
};
use xen_ring::BackRing;
use xen_sim::{Domain, MapOp, Mapping, Pages, Sim};
use xen_sys::wire::netif::{
    ExtraFlags, ExtraInfo, GsoType, NetRxFlags, NetTxFlags, RxRequest, RxResponse, TxRequest,
    TxResponse, RSP_NULL,
};
use xen_sys::{DomId, GrantRef, Port};

pub const D0: DomId = DomId::DOM0;
pub const D1: DomId = DomId::new(1);

pub type Front<T = InlineTxTable<Pages, RING_SLOTS>, R = InlineRxTable<Pages, RING_SLOTS>> =
    NetFront<Domain, Pages, RING_SLOTS, T, R>;
/// Tables on the heap, as a kernel module keeps them.
pub type HeapTx = Vec<TxEntry<Pages>>;
pub type HeapRx = Vec<RxEntry<Pages>>;
pub type TxBack = BackRing<Mapping, [u8; 12], [u8; 4]>;
pub type RxBack = BackRing<Mapping, [u8; 8], [u8; 8]>;

/// A packet as the backend read it off the TX ring.
#[derive(Clone, Debug)]
pub struct WirePacket {
    pub data: Vec<u8>,
    /// The first slot's flags.
    pub flags: NetTxFlags,
    /// The GSO slot, if one followed the first.
    pub gso: Option<ExtraInfo>,
    /// The data slots' ids, in ring order.
    pub ids: Vec<u16>,
    /// Their grant references.
    pub grefs: Vec<GrantRef>,
    /// Ring slots used (data and extra-info).
    pub slots: usize,
}

/// A received packet as the test copied it out of the front.
#[derive(Clone, Debug)]
pub struct Received {
    pub data: Vec<u8>,
    pub meta: RxMeta,
    pub frags: usize,
}

pub struct Rig<T = InlineTxTable<Pages, RING_SLOTS>, R = InlineRxTable<Pages, RING_SLOTS>> {
    pub sim: Sim,
    pub fe: Domain,
    pub be: Domain,
    pub front: Front<T, R>,
    pub txb: TxBack,
    pub rxb: RxBack,
    pub tx_port: Port,
    pub rx_port: Port,
    pub ring_grefs: Vec<GrantRef>,
    /// RX requests consumed by the backend and not yet used.
    pub rx_reqs: VecDeque<RxRequest>,
    pub completions: Vec<TxCompletion>,
    pub received: Vec<Received>,
}

impl Rig {
    /// A queue with split event channels, RX buffers posted.
    pub fn new(config: FrontConfig) -> Rig {
        Self::on(Sim::new(), config, true)
    }

    /// A queue of domain 1 on `sim` (which may have held an earlier one).
    pub fn on(sim: Sim, config: FrontConfig, split: bool) -> Rig {
        Rig::build(sim, split, |fe, tx_ring, rx_ring, ports| {
            NetFront::new(fe, tx_ring, rx_ring, D0, ports, config)
        })
    }
}

impl<T, R> Rig<T, R>
where
    T: AsRef<[TxEntry<Pages>]> + AsMut<[TxEntry<Pages>]>,
    R: AsRef<[RxEntry<Pages>]> + AsMut<[RxEntry<Pages>]>,
{
    /// A queue of domain 1 on `sim` with split event channels, its id tables in `tx_table`
    /// and `rx_table`, RX buffers posted.
    pub fn with_tables(sim: Sim, config: FrontConfig, tx_table: T, rx_table: R) -> Self {
        Rig::build(sim, true, |fe, tx_ring, rx_ring, ports| {
            NetFront::with_tables(fe, tx_ring, rx_ring, D0, ports, config, tx_table, rx_table)
        })
    }

    /// Sets up the rings and ports, has `make` build the front over them, and posts the RX
    /// buffers.
    fn build(
        sim: Sim,
        split: bool,
        make: impl FnOnce(
            Domain,
            Pages,
            Pages,
            (Port, Port),
        ) -> Result<Front<T, R>, xen_ring::RingError>,
    ) -> Self {
        let fe = sim.create_domain(1);
        let be = sim.domain(0);
        let tx_ring = fe.alloc_ring(1).unwrap();
        let rx_ring = fe.alloc_ring(1).unwrap();
        let tx_gref = fe.grant_ring_page(D0, &tx_ring, 0).unwrap();
        let rx_gref = fe.grant_ring_page(D0, &rx_ring, 0).unwrap();
        let tx_port = fe.alloc_unbound(D0).unwrap();
        be.bind_interdomain(D1, tx_port).unwrap();
        let rx_port = if split {
            let p = fe.alloc_unbound(D0).unwrap();
            be.bind_interdomain(D1, p).unwrap();
            p
        } else {
            tx_port
        };
        let front = make(fe.clone(), tx_ring, rx_ring, (tx_port, rx_port)).unwrap();
        let txb = BackRing::attach(RingMemory::map_ring(&be, D1, &[tx_gref]).unwrap()).unwrap();
        let rxb = BackRing::attach(RingMemory::map_ring(&be, D1, &[rx_gref]).unwrap()).unwrap();
        let mut rig = Rig {
            sim,
            fe,
            be,
            front,
            txb,
            rxb,
            tx_port,
            rx_port,
            ring_grefs: vec![tx_gref, rx_gref],
            rx_reqs: VecDeque::new(),
            completions: Vec::new(),
            received: Vec::new(),
        };
        assert_eq!(rig.front.refill_rx().unwrap(), 256);
        rig
    }

    /// `data` written into fresh pages of the front's domain at `offset` of the first, as an
    /// skb's memory would lie, and the pieces that lend it (one per page touched); the pages
    /// are the caller's to keep until the packet completes.
    pub fn lend(&self, data: &[u8], offset: usize) -> (Pages, Vec<TxLent>) {
        let pages = (offset + data.len()).div_ceil(4096);
        let mem = self.fe.alloc_pages(pages);
        mem.write(offset, data);
        let mut pieces = Vec::new();
        let mut at = offset;
        while at < offset + data.len() {
            let len = (4096 - at % 4096).min(offset + data.len() - at);
            pieces.push(TxLent {
                gfn: mem.frame(at / 4096).unwrap(),
                offset: (at % 4096) as u16,
                len: len as u16,
            });
            at += len;
        }
        (mem, pieces)
    }

    /// Grants of the frontend other than the rings'.
    pub fn data_grants(&self) -> u64 {
        self.sim.live_grants(D1) - self.ring_grefs.len() as u64
    }

    /// Closes the queue and releases its rings as the glue would; returns the simulator.
    /// Checks that nothing is left granted but what the backend still maps.
    pub fn close(self) -> (Sim, Vec<TxCompletion>) {
        let Rig {
            sim,
            fe,
            mut front,
            txb,
            rxb,
            ring_grefs,
            tx_port,
            rx_port,
            mut completions,
            ..
        } = self;
        let before = completions.len();
        front.close(|c| completions.push(c));
        // A second close reports nothing again.
        front.close(|c| completions.push(c));
        let _ = before;
        drop(txb);
        drop(rxb);
        let (tx_ring, rx_ring) = front.into_rings();
        platform::release_ring(&fe, tx_ring, &ring_grefs[..1]);
        platform::release_ring(&fe, rx_ring, &ring_grefs[1..]);
        fe.close_port(tx_port).unwrap();
        if rx_port != tx_port {
            fe.close_port(rx_port).unwrap();
        }
        fe.retry_deferred();
        assert_eq!(
            sim.live_grants(D1),
            fe.deferred_frees() as u64,
            "only deferred pages stay granted"
        );
        assert_eq!(sim.grant_stats().freed_while_mapped, 0);
        (sim, completions)
    }

    // ---- the backend's TX side ----

    /// Maps one of the front's grants into the backend (a test may keep it mapped).
    pub fn map(&self, gref: GrantRef, writable: bool) -> Mapping {
        self.be
            .map_grants(&[MapOp {
                granter: D1,
                gref,
                writable,
            }])
            .pop()
            .unwrap()
            .unwrap()
    }

    /// Reads every packet published on the TX ring.
    pub fn read_tx(&mut self) -> Vec<WirePacket> {
        let mut out = Vec::new();
        while let Some(raw) = self.txb.next_request().unwrap() {
            let first = TxRequest::from_bytes(&raw);
            let flags = NetTxFlags::from_bits_truncate(first.flags);
            let mut p = WirePacket {
                data: Vec::new(),
                flags,
                gso: None,
                ids: Vec::new(),
                grefs: Vec::new(),
                slots: 1,
            };
            let mut reqs = vec![first];
            if flags.contains(NetTxFlags::EXTRA_INFO) {
                let raw = self.txb.next_request().unwrap().expect("extra slot");
                let extra: [u8; 8] = raw[..8].try_into().unwrap();
                p.gso = Some(ExtraInfo::from_bytes(&extra));
                p.slots += 1;
            }
            let mut more = flags.contains(NetTxFlags::MORE_DATA);
            while more {
                let r = TxRequest::from_bytes(&self.txb.next_request().unwrap().expect("slot"));
                more = NetTxFlags::from_bits_truncate(r.flags).contains(NetTxFlags::MORE_DATA);
                reqs.push(r);
                p.slots += 1;
            }
            // The first slot's size is the packet's: its own data is what the others leave.
            let rest: usize = reqs[1..].iter().map(|r| usize::from(r.size)).sum();
            let total = usize::from(first.size);
            for (i, r) in reqs.iter().enumerate() {
                let len = if i == 0 {
                    total - rest
                } else {
                    usize::from(r.size)
                };
                assert!(usize::from(r.offset) + len <= 4096, "slot within its page");
                let m = self.map(GrantRef::new(r.gref), false);
                let mut b = vec![0u8; len];
                assert!(m.read(usize::from(r.offset), &mut b));
                m.unmap();
                p.data.extend_from_slice(&b);
                p.ids.push(r.id);
                p.grefs.push(GrantRef::new(r.gref));
            }
            assert_eq!(p.data.len(), total);
            out.push(p);
        }
        out
    }

    /// Queues the answers to a packet (`RSP_NULL` after the first for its extra slot).
    pub fn answer_tx(&mut self, p: &WirePacket, status: i16) {
        for (i, &id) in p.ids.iter().enumerate() {
            self.tx_raw(id, status);
            if i == 0 && p.gso.is_some() {
                self.tx_raw(0xdead, RSP_NULL);
            }
        }
    }

    /// Queues one TX response.
    pub fn tx_raw(&mut self, id: u16, status: i16) {
        let mut r = TxResponse::ZERO;
        r.id = id;
        r.status = status;
        self.txb.queue_response(&r.to_bytes()).unwrap();
    }

    /// Publishes the TX responses.
    pub fn push_tx_responses(&mut self) {
        let _ = self.txb.push_responses().unwrap();
    }

    // ---- the backend's RX side ----

    /// RX requests the front has posted and the backend not used.
    pub fn rx_available(&mut self) -> usize {
        while let Some(raw) = self.rxb.next_request().unwrap() {
            self.rx_reqs.push_back(RxRequest::from_bytes(&raw));
        }
        self.rx_reqs.len()
    }

    /// Takes the next posted RX request.
    pub fn rx_take(&mut self) -> RxRequest {
        assert!(self.rx_available() > 0, "no RX buffer posted");
        self.rx_reqs.pop_front().unwrap()
    }

    /// Queues a raw RX response slot (using up the next posted request).
    pub fn rx_raw(&mut self, bytes: [u8; 8]) {
        self.rx_take();
        self.rxb.queue_response(&bytes).unwrap();
    }

    /// Copies `data` into the next buffer and queues its response; returns its request.
    pub fn rx_data(&mut self, offset: u16, data: &[u8], flags: NetRxFlags) -> RxRequest {
        let req = self.rx_take();
        if !data.is_empty() {
            let m = self.map(GrantRef::new(req.gref), true);
            assert!(m.write(usize::from(offset), data));
            m.unmap();
        }
        let mut r = RxResponse::ZERO;
        r.id = req.id;
        r.offset = offset;
        r.flags = flags.bits();
        r.status = data.len() as i16;
        self.rxb.queue_response(&r.to_bytes()).unwrap();
        req
    }

    /// Slots `rx_send` needs for a packet.
    pub fn rx_slots(len: usize, gso: bool) -> usize {
        len.div_ceil(4096).max(1) + usize::from(gso)
    }

    /// Writes a packet into the front's buffers as netback does (4096 bytes a slot from
    /// offset 0, the GSO slot after the first); `false` (nothing written) if too few
    /// buffers are posted.
    pub fn rx_send(&mut self, data: &[u8], csum: NetRxFlags, gso: Option<(GsoType, u16)>) -> bool {
        if self.rx_available() < Self::rx_slots(data.len(), gso.is_some()) {
            return false;
        }
        let chunks: Vec<&[u8]> = data.chunks(4096).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut flags = if i == 0 { csum } else { NetRxFlags::empty() };
            if i + 1 < chunks.len() {
                flags |= NetRxFlags::MORE_DATA;
            }
            if i == 0 && gso.is_some() {
                flags |= NetRxFlags::EXTRA_INFO;
            }
            self.rx_data(0, chunk, flags);
            if i == 0 {
                if let Some((ty, size)) = gso {
                    self.rx_raw(ExtraInfo::gso(size, ty, 0, ExtraFlags::empty()).to_bytes());
                }
            }
        }
        true
    }

    /// Publishes the RX responses.
    pub fn push_rx_responses(&mut self) {
        let _ = self.rxb.push_responses().unwrap();
    }

    // ---- the front's glue ----

    /// Runs the front's TX completion handler; records completions.
    pub fn tx_event(&mut self) -> Result<xen_netif::Progress, xen_netif::Error> {
        let out = &mut self.completions;
        self.front.tx_event(|c| out.push(c))
    }

    /// Runs the NAPI poll once; records the packets (copied out, pages left to recycle).
    pub fn poll(&mut self, budget: u32) -> Result<xen_netif::Progress, xen_netif::Error> {
        let out = &mut self.received;
        self.front.poll(budget, |p| {
            let mut data = vec![0u8; p.meta.len as usize];
            assert_eq!(p.copy_to(&mut data), Some(data.len()));
            out.push(Received {
                data,
                meta: p.meta,
                frags: p.frag_count(),
            });
        })
    }

    /// Polls until the front has nothing more.
    pub fn poll_all(&mut self) {
        for _ in 0..10_000 {
            if !self.poll(64).unwrap().more {
                return;
            }
        }
        panic!("poll never finished");
    }

    /// The loopback backend: every packet published on the TX ring is answered `OKAY` and
    /// written back into the RX buffers (with its checksum state and GSO), as long as
    /// buffers are posted; packets that do not fit wait in `backlog`.
    pub fn echo(&mut self, backlog: &mut VecDeque<WirePacket>) {
        for p in self.read_tx() {
            self.answer_tx(&p, 0);
            backlog.push_back(p);
        }
        self.push_tx_responses();
        while let Some(p) = backlog.front() {
            let mut csum = NetRxFlags::empty();
            if p.flags.contains(NetTxFlags::CSUM_BLANK) {
                csum |= NetRxFlags::CSUM_BLANK | NetRxFlags::DATA_VALIDATED;
            } else if p.flags.contains(NetTxFlags::DATA_VALIDATED) {
                csum |= NetRxFlags::DATA_VALIDATED;
            }
            let gso = p
                .gso
                .map(|e| (GsoType::try_from(e.gso_type()).unwrap(), e.gso_size()));
            let data = p.data.clone();
            if !self.rx_send(&data, csum, gso) {
                break;
            }
            backlog.pop_front();
        }
        self.push_rx_responses();
    }
}
