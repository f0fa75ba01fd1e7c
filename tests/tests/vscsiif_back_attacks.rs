//! A hostile vscsiif frontend against the xen-vscsiif backend engine, one test per attack.
//!
//! The frontend is the test: it writes raw request slots and ring indices in the pages it
//! granted. Each test checks the attack happened, then that the backend answered what it
//! should (or disconnected), mapped nothing it should not have, and left nothing mapped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xen_core::feature::vscsiif::Hctl;
use xen_core::platform::RingMemory;
use xen_ring::{FrontRing, RingError};
use xen_sim::{Domain, Mapping, Pages, Sim};
use xen_sys::wire::vscsiif::{self as wire, SG_GRANT};
use xen_sys::{DomId, GrantRef, Port};
use xen_vscsiif::back::{Slot, MAX_SEGS};
use xen_vscsiif::{BackConfig, Connection, DataSeg, Error, MemTarget, ScsiBack};

const D0: DomId = DomId::DOM0;
const HOST_ERROR: i32 = (wire::RSLT_HOST_ERROR as i32) << 16;

type Front = FrontRing<Arc<Pages>, Slot, Slot>;
type Back = ScsiBack<Domain, MemTarget, Mapping, Vec<DataSeg<Mapping>>>;

struct Rig {
    sim: Sim,
    fe: Domain,
    ring_pages: Arc<Pages>,
    front: Front,
    back: Back,
    bport: Port,
}

impl Rig {
    fn new(config: BackConfig) -> Rig {
        let sim = Sim::new();
        let fe = sim.create_domain(1);
        let be = sim.domain(0);
        let ring_pages = Arc::new(fe.alloc_pages(1));
        let gref = fe.grant_ring_page(D0, &ring_pages, 0).unwrap();
        let front = FrontRing::init(ring_pages.clone()).unwrap();
        let mapped = RingMemory::map_ring(&be, fe.id(), &[gref]).unwrap();
        let fport = fe.alloc_unbound(D0).unwrap();
        let bport = be.bind_interdomain(fe.id(), fport).unwrap();
        let mut target = MemTarget::default();
        target.add_disk(0, 64);
        let segs = (0..16 * MAX_SEGS).map(|_| DataSeg::EMPTY).collect();
        let mut back = Back::new(
            be,
            target,
            mapped,
            Connection {
                front: fe.id(),
                port: bport,
            },
            config,
            segs,
        )
        .unwrap();
        let v = Hctl {
            host: 0,
            channel: 0,
            target: 0,
            lun: 0,
        };
        back.luns_mut().insert(0, v, None).unwrap();
        back.luns_mut().activate(0, true);
        Rig {
            sim,
            fe,
            ring_pages,
            front,
            back,
            bport,
        }
    }

    fn page(&self, readonly: bool) -> (Pages, GrantRef) {
        let p = self.fe.alloc_pages(1);
        let g = self
            .fe
            .grant_access(D0, p.frame(0).unwrap(), readonly)
            .unwrap();
        (p, g)
    }

    fn send(&mut self, req: &wire::Request) {
        self.front.queue_request(&req.to_bytes()).unwrap();
        let _ = self.front.push_requests().unwrap();
    }

    fn responses(&mut self) -> Vec<wire::Response> {
        let mut out = Vec::new();
        while let Some(r) = self.front.next_response().unwrap() {
            out.push(wire::Response::from_bytes(&r));
        }
        out
    }

    /// Sends one request, serves it, returns its response.
    fn answer(&mut self, req: &wire::Request) -> wire::Response {
        self.send(req);
        self.back.handle_event().unwrap();
        let mut r = self.responses();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].rqid, req.rqid);
        r.pop().unwrap()
    }

    fn maps(&self) -> u64 {
        self.sim.grant_stats().maps
    }

    fn live_maps(&self) -> u64 {
        self.sim.grant_stats().live_maps
    }
}

/// A READ (10) of `blocks` blocks into `segs` (gref, offset, length).
fn read10(rqid: u16, blocks: u16, segs: &[(GrantRef, u16, u16)]) -> wire::Request {
    let mut w = wire::Request::ZERO;
    w.rqid = rqid;
    w.act = 1;
    w.cmd_len = 10;
    w.cmnd[0] = 0x28;
    w.cmnd[7..9].copy_from_slice(&blocks.to_be_bytes());
    w.sc_data_direction = 2;
    w.nr_segments = segs.len() as u8;
    for (d, &(g, o, l)) in w.seg.iter_mut().zip(segs) {
        d.gref = g.raw();
        d.offset = o;
        d.length = l;
    }
    w
}

#[test]
fn rejects_bad_cmd_len() {
    let mut rig = Rig::new(BackConfig::default());
    let (_p, g) = rig.page(false);
    let maps = rig.maps();
    for len in [0u8, 6, 17, 255] {
        let mut w = read10(1, 1, &[(g, 0, 512)]);
        w.cmd_len = len;
        assert_eq!(rig.answer(&w).rslt, HOST_ERROR, "cmd_len {len}");
    }
    assert_eq!(rig.maps(), maps, "nothing was mapped");
    assert_eq!(rig.back.stats().invalid, 4);
    assert_eq!(rig.answer(&read10(2, 1, &[(g, 0, 512)])).rslt, 0);
}

#[test]
fn rejects_direction_mismatch() {
    let mut rig = Rig::new(BackConfig::default());
    let (_p, g) = rig.page(false);
    let maps = rig.maps();
    // DMA_NONE with a segment, and a direction that is no DMA value.
    let mut w = read10(1, 1, &[(g, 0, 512)]);
    w.sc_data_direction = 3;
    assert_eq!(rig.answer(&w).rslt, HOST_ERROR);
    w.sc_data_direction = 4;
    assert_eq!(rig.answer(&w).rslt, HOST_ERROR);
    assert_eq!(rig.maps(), maps);
    // A read whose pages the frontend granted read-only: the writable map fails per slot,
    // the command fails, nothing stays mapped.
    let (_q, ro) = rig.page(true);
    assert_eq!(rig.answer(&read10(2, 1, &[(ro, 0, 512)])).rslt, HOST_ERROR);
    assert_eq!(rig.back.stats().map_failures, 1);
    assert_eq!(rig.live_maps(), 1, "only the ring");
}

#[test]
fn rejects_too_many_segments() {
    let mut rig = Rig::new(BackConfig::default());
    let (_p, g) = rig.page(false);
    let maps = rig.maps();
    let mut w = read10(1, 1, &[(g, 0, 512); 26]);
    w.nr_segments = 27;
    assert_eq!(rig.answer(&w).rslt, HOST_ERROR);
    w.nr_segments = 0x7f;
    assert_eq!(rig.answer(&w).rslt, HOST_ERROR);
    // Indirect: 2 descriptor pages announcing 512 + 512 descriptors, over the 128 offered.
    let mut w = read10(2, 1, &[(g, 0, 4096), (g, 0, 4096)]);
    w.nr_segments |= SG_GRANT;
    assert_eq!(rig.answer(&w).rslt, HOST_ERROR);
    assert_eq!(rig.maps(), maps, "nothing was mapped");
    // Without feature-sg-grant, indirect is refused outright.
    let mut rig = Rig::new(BackConfig {
        sg_grant: 0,
        ..BackConfig::default()
    });
    let (_p, g) = rig.page(false);
    let mut w = read10(3, 1, &[(g, 0, 8)]);
    w.nr_segments |= SG_GRANT;
    assert_eq!(rig.answer(&w).rslt, HOST_ERROR);
}

#[test]
fn rejects_segment_offset_outside_page() {
    let mut rig = Rig::new(BackConfig::default());
    let (_p, g) = rig.page(false);
    let maps = rig.maps();
    for (o, l) in [
        (4095u16, 2u16),
        (0, 4097),
        (1, 4096),
        (0, 0),
        (65535, 65535),
    ] {
        let w = read10(1, 1, &[(g, 0, 512), (g, o, l)]);
        assert_eq!(rig.answer(&w).rslt, HOST_ERROR, "{o}+{l}");
    }
    assert_eq!(rig.maps(), maps);
}

#[test]
fn rejects_unknown_lun() {
    let mut rig = Rig::new(BackConfig::default());
    let (_p, g) = rig.page(false);
    let maps = rig.maps();
    let mut w = read10(1, 1, &[(g, 0, 512)]);
    w.id = 1;
    assert_eq!(
        rig.answer(&w).rslt,
        (wire::RSLT_HOST_NO_CONNECT as i32) << 16
    );
    w.id = 0;
    w.lun = 0xffff;
    assert_eq!(
        rig.answer(&w).rslt,
        (wire::RSLT_HOST_NO_CONNECT as i32) << 16
    );
    // A reset of an unknown LUN fails as a task.
    let mut r = wire::Request::ZERO;
    r.act = 3;
    r.channel = 9;
    assert_eq!(rig.answer(&r).rslt, wire::RSLT_RESET_FAILED);
    assert_eq!(rig.maps(), maps);
    assert!(rig.back.target().tasks.is_empty());
}

#[test]
fn rejects_bad_rqid() {
    let mut rig = Rig::new(BackConfig {
        max_rqid: 15,
        ..BackConfig::default()
    });
    let (_p, g) = rig.page(false);
    assert_eq!(rig.answer(&read10(16, 1, &[(g, 0, 512)])).rslt, HOST_ERROR);
    assert_eq!(
        rig.answer(&read10(0xffff, 1, &[(g, 0, 512)])).rslt,
        HOST_ERROR
    );
    assert_eq!(rig.answer(&read10(15, 1, &[(g, 0, 512)])).rslt, 0);
    // An rqid still in flight is not taken twice.
    rig.back.target_mut().deferred = true;
    rig.send(&read10(3, 1, &[(g, 0, 512)]));
    rig.send(&read10(3, 1, &[(g, 512, 512)]));
    rig.back.handle_event().unwrap();
    let r = rig.responses();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].rqid, r[0].rslt), (3, HOST_ERROR));
    assert_eq!(rig.back.in_flight(), 1);
}

#[test]
fn unknown_action_and_sg_preset_get_an_error() {
    let mut rig = Rig::new(BackConfig::default());
    let (_p, g) = rig.page(false);
    let maps = rig.maps();
    for act in [0u8, 4, 5, 0xff] {
        let mut w = read10(1, 1, &[(g, 0, 512)]);
        w.act = act;
        assert_eq!(rig.answer(&w).rslt, HOST_ERROR, "act {act}");
    }
    assert_eq!(rig.maps(), maps);
    assert_eq!(rig.back.stats().invalid, 4);
}

#[test]
fn rejects_producer_overflow() {
    let mut rig = Rig::new(BackConfig::default());
    let (_p, g) = rig.page(false);
    assert_eq!(rig.answer(&read10(1, 1, &[(g, 0, 512)])).rslt, 0);
    // 17 new requests on a 16-slot ring.
    rig.ring_pages.host().poke_u32(0, 1 + 17);
    let before = rig.back.stats().requests;
    let err = rig.back.handle_event().unwrap_err();
    assert!(matches!(err, Error::Ring(RingError::Broken(_))), "{err:?}");
    assert!(!rig.back.is_connected());
    assert_eq!(rig.back.stats().requests, before, "no slot was served");
    assert_eq!(rig.live_maps(), 0);
    assert!(rig.sim.domain(0).remote(rig.bport).is_none());
    assert_eq!(rig.back.handle_event().unwrap_err(), Error::Disconnected);
}

#[test]
fn slot_rewritten_after_publish() {
    let mut rig = Rig::new(BackConfig::default());
    let (_p, g) = rig.page(false);
    // The good version reads 512 bytes at offset 512; the evil twin's segment crosses the
    // page's end. Only the segment's offset and length (bytes 36..40) differ.
    let good = read10(7, 1, &[(g, 512, 512)]);
    let mut evil = good;
    evil.seg[0].offset = 4000;
    let (good_b, evil_b) = (good.to_bytes(), evil.to_bytes());
    assert_ne!(good_b[36..40], evil_b[36..40]);
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let flipper = {
        let (pages, stop, flips) = (rig.ring_pages.clone(), stop.clone(), flips.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let v = if flips.load(Ordering::Relaxed) % 2 == 0 {
                    &evil_b
                } else {
                    &good_b
                };
                for slot in 0..16 {
                    pages.host().poke_bytes(64 + slot * 252 + 36, &v[36..40]);
                }
                flips.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (mut okay, mut refused) = (0u32, 0u32);
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 200 || okay == 0 || refused == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "okay {okay}, refused {refused}"
        );
        rounds += 1;
        while !rig.front.is_full() {
            rig.front.queue_request(&good_b).unwrap();
        }
        let _ = rig.front.push_requests().unwrap();
        rig.back.handle_event().unwrap();
        for r in rig.responses() {
            match r.rslt {
                0 => {
                    // Served as validated: the whole transfer happened.
                    assert_eq!(r.residual_len, 0);
                    okay += 1;
                }
                HOST_ERROR => refused += 1,
                other => panic!("rslt {other:#x}"),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(
        flips.load(Ordering::Relaxed) > 0,
        "the slots were rewritten"
    );
    assert_eq!(rig.back.stats().invalid, u64::from(refused));
    assert_eq!(rig.live_maps(), 1, "only the ring stays mapped");
}

#[test]
fn indirect_descriptor_page_with_bad_entries() {
    let mut rig = Rig::new(BackConfig::default());
    let (data, dg) = rig.page(false);
    let (ind, ig) = rig.page(true);
    let desc = |g: GrantRef, o: u16, l: u16| {
        let mut d = wire::Segment::ZERO;
        d.gref = g.raw();
        d.offset = o;
        d.length = l;
        d.to_bytes()
    };
    let mut w = read10(1, 2, &[(ig, 0, 16)]);
    w.nr_segments |= SG_GRANT;
    // Two good descriptors: 1 KiB is read.
    ind.host().poke_bytes(0, &desc(dg, 0, 512));
    ind.host().poke_bytes(8, &desc(dg, 512, 512));
    assert_eq!(rig.answer(&w).rslt, 0);
    let _ = data;
    // Bad second entries: crossing the page end, empty.
    let maps = rig.maps();
    for (o, l) in [(4000u16, 512u16), (0, 0), (0, 4097)] {
        ind.host().poke_bytes(8, &desc(dg, o, l));
        assert_eq!(rig.answer(&w).rslt, HOST_ERROR, "{o}+{l}");
    }
    // Each time only the descriptor page was mapped (and unmapped): no data page.
    assert_eq!(rig.maps(), maps + 3);
    assert_eq!(rig.live_maps(), 1);
    // A descriptor range that is not whole descriptors is refused before any map.
    let mut w2 = read10(2, 2, &[(ig, 0, 12)]);
    w2.nr_segments |= SG_GRANT;
    assert_eq!(rig.answer(&w2).rslt, HOST_ERROR);
    assert_eq!(rig.maps(), maps + 3);
}

#[test]
fn event_storm() {
    let mut rig = Rig::new(BackConfig::default());
    rig.sim.inject_events(D0, rig.bport, 100_000).unwrap();
    for _ in 0..1000 {
        let p = rig.back.handle_event().unwrap();
        assert_eq!(p.done, 0);
        assert!(p.spurious);
    }
    assert_eq!(rig.back.consecutive_spurious(), 1000);
    let (_p, g) = rig.page(false);
    assert_eq!(rig.answer(&read10(9, 1, &[(g, 0, 512)])).rslt, 0);
    assert_eq!(rig.back.consecutive_spurious(), 0);
}
