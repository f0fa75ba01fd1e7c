//! A hostile blkif backend against the xen-blkif frontend engine, one test per attack.
//!
//! The backend here is the test: it maps the frontend's ring as a raw `BackRing` and answers
//! (or mis-answers) as it likes. Each test checks the attack happened, then that the frontend
//! failed cleanly: every request completed exactly once, no page freed while mapped.

use xen_blkif::front::ReadData;
use xen_blkif::{BlkFront, Completion, Error, FrontConfig, ResponseFault, Sector};
use xen_core::platform::RingMemory;
use xen_ring::{BackRing, RingError};
use xen_sim::{Domain, MapOp, Mapping, Pages, Sim};
use xen_sys::wire::blkif::{self as wire, Op, Status};
use xen_sys::{DomId, GrantRef, Port};

const D0: DomId = DomId::DOM0;
const D1: DomId = DomId::new(1);

type Front = BlkFront<Domain, Pages, 32>;
type Back = BackRing<Mapping, [u8; 112], [u8; 16]>;
type Done = Vec<(Completion, Vec<u8>)>;

struct Rig {
    sim: Sim,
    fe: Domain,
    be: Domain,
    front: Front,
    back: Back,
    fport: Port,
    ring_grefs: Vec<GrantRef>,
}

impl Rig {
    fn new() -> Rig {
        let sim = Sim::new();
        let fe = sim.create_domain(1);
        let be = sim.domain(0);
        let ring = fe.alloc_ring(1).unwrap();
        let ring_grefs = vec![fe.grant_ring_page(D0, &ring, 0).unwrap()];
        let fport = fe.alloc_unbound(D0).unwrap();
        let _bport = be.bind_interdomain(D1, fport).unwrap();
        let front = BlkFront::new(fe.clone(), ring, D0, fport, FrontConfig::default()).unwrap();
        let mapped = RingMemory::map_ring(&be, D1, &ring_grefs).unwrap();
        let back = BackRing::attach(mapped).unwrap();
        Rig {
            sim,
            fe,
            be,
            front,
            back,
            fport,
            ring_grefs,
        }
    }

    fn requests(&mut self) -> Vec<wire::Request> {
        let mut out = Vec::new();
        while let Some(r) = self.back.next_request().unwrap() {
            out.push(wire::Request::from_bytes(&r));
        }
        out
    }

    fn answer(&mut self, id: u64, op: u8, status: i16) {
        let mut r = wire::Response::ZERO;
        r.id = id;
        r.operation = op;
        r.status = status;
        self.back.queue_response(&r.to_bytes()).unwrap();
        let _ = self.back.push_responses().unwrap();
    }

    fn event(&mut self, done: &mut Done) -> Result<xen_blkif::Progress, Error> {
        self.front
            .handle_event(|c: Completion, data: &ReadData<'_, Pages>| {
                let mut b = vec![0u8; data.len()];
                assert!(data.copy_to(&mut b));
                done.push((c, b));
            })
    }

    /// Grants of the frontend other than the ring's.
    fn data_grants(&self) -> u64 {
        self.sim.live_grants(D1) - self.ring_grefs.len() as u64
    }
}

fn submit_two_reads(rig: &mut Rig) -> Vec<wire::Request> {
    rig.front.submit_read(Sector(0), 8).unwrap();
    rig.front.submit_read(Sector(8), 16).unwrap();
    rig.front.push().unwrap();
    let reqs = rig.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(rig.data_grants(), 3);
    reqs
}

/// After a fault: every request completed once with Error, every data grant revoked, the
/// device refuses further work.
fn assert_failed_cleanly(rig: &mut Rig, done: &Done, expected_aborts: usize) {
    assert!(rig.front.is_failed());
    let aborted = done
        .iter()
        .filter(|(c, _)| c.status == Status::Error)
        .count();
    assert_eq!(aborted, expected_aborts);
    assert_eq!(rig.front.outstanding(), 0);
    assert_eq!(rig.data_grants(), 0, "every data grant revoked");
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
    assert_eq!(
        rig.front.submit_flush(),
        Err(xen_blkif::SubmitError::Failed)
    );
    // Later events of the dead device are spurious and quiet: no error to report again.
    let mut more = Vec::new();
    let p = rig.event(&mut more).unwrap();
    assert_eq!((p.done, p.more, p.spurious), (0, false, true));
    assert!(more.is_empty());
}

#[test]
fn rejects_bogus_response_id() {
    let mut rig = Rig::new();
    let reqs = submit_two_reads(&mut rig);
    // Slot 999 is outside the 32-entry table; the generation half is right.
    let bogus = (reqs[0].id & !0xffff_ffff) | 999;
    rig.answer(bogus, Op::Read.into(), 0);
    let mut done = Vec::new();
    let err = rig.event(&mut done).unwrap_err();
    assert_eq!(err, Error::Response(ResponseFault::BadId(bogus)));
    assert_failed_cleanly(&mut rig, &done, 2);
}

#[test]
fn rejects_duplicate_response() {
    let mut rig = Rig::new();
    let reqs = submit_two_reads(&mut rig);
    rig.answer(reqs[0].id, Op::Read.into(), 0);
    rig.answer(reqs[0].id, Op::Read.into(), 0);
    let mut done = Vec::new();
    let err = rig.event(&mut done).unwrap_err();
    assert_eq!(
        err,
        Error::Response(ResponseFault::NotOutstanding(reqs[0].id))
    );
    // The first answer completed its request; the second request was aborted.
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].0.status, Status::Okay);
    assert_eq!(done[0].0.ticket.0, reqs[0].id);
    assert_eq!(done[0].1.len(), 4096);
    assert_failed_cleanly(&mut rig, &done, 1);
}

#[test]
fn rejects_stale_generation_wrong_operation_and_unknown_status() {
    for case in 0..3 {
        let mut rig = Rig::new();
        let reqs = submit_two_reads(&mut rig);
        let id = reqs[1].id;
        let (rid, op, status, fault) = match case {
            0 => (
                id.wrapping_add(1 << 32),
                0,
                0,
                ResponseFault::NotOutstanding(id.wrapping_add(1 << 32)),
            ),
            1 => (id, 1, 0, ResponseFault::WrongOperation { id, operation: 1 }),
            _ => (id, 0, -3, ResponseFault::UnknownStatus(-3)),
        };
        rig.answer(rid, op, status);
        let mut done = Vec::new();
        let err = rig.event(&mut done).unwrap_err();
        assert_eq!(err, Error::Response(fault));
        assert_failed_cleanly(&mut rig, &done, 2);
    }
}

#[test]
fn rejects_response_producer_overflow() {
    let mut rig = Rig::new();
    let reqs = submit_two_reads(&mut rig);
    // rsp_prod past every request the front published.
    rig.back.memory().write(8, &5u32.to_ne_bytes());
    let mut b = [0u8; 4];
    rig.back.memory().read(8, &mut b);
    assert_eq!(u32::from_ne_bytes(b), 5);
    let mut done = Vec::new();
    let err = rig.event(&mut done).unwrap_err();
    assert!(matches!(err, Error::Ring(RingError::Broken(_))), "{err:?}");
    assert_failed_cleanly(&mut rig, &done, reqs.len());
}

#[test]
fn event_storm() {
    let mut rig = Rig::new();
    rig.sim.inject_events(D1, rig.fport, 50_000).unwrap();
    assert!(rig.sim.port_stats(D1, rig.fport).unwrap().received >= 50_000);
    let mut done = Vec::new();
    // Every event is judged spurious: that verdict is what the glue passes to the late EOI,
    // whose kernel throttle then delays the port.
    for _ in 0..500u64 {
        let p = rig.event(&mut done).unwrap();
        assert_eq!(p.done, 0);
        assert!(p.spurious);
    }
    assert_eq!(rig.front.stats().spurious_events, 500);
    assert!(done.is_empty());
    // Real responses still complete.
    let reqs = submit_two_reads(&mut rig);
    for r in &reqs {
        rig.answer(r.id, r.operation, 0);
    }
    let p = rig.event(&mut done).unwrap();
    assert_eq!(p.done, 2);
    assert!(!p.spurious, "real work is not spurious");
}

#[test]
fn page_still_mapped_at_free() {
    let mut rig = Rig::new();
    let data = vec![0xa5u8; 8192];
    rig.front.submit_write(Sector(0), &data).unwrap();
    rig.front.push().unwrap();
    let reqs = rig.requests();
    assert_eq!(reqs[0].nr_segments, 2);
    let gref = GrantRef::new(reqs[0].seg[1].gref);
    // The backend maps the second page and keeps it mapped after answering.
    let kept = rig
        .be
        .map_grants(&[MapOp {
            granter: D1,
            gref,
            writable: false,
        }])
        .pop()
        .unwrap()
        .unwrap();
    let mut seen = vec![0u8; 4096];
    assert!(kept.read(0, &mut seen));
    assert_eq!(seen, data[4096..]);
    assert!(rig.fe.is_mapped(gref));
    rig.answer(reqs[0].id, reqs[0].operation, 0);
    let mut done = Vec::new();
    assert_eq!(rig.event(&mut done).unwrap().done, 1);
    assert_eq!(done[0].0.status, Status::Okay);
    // The page was neither freed nor reused: it waits for the backend to let go.
    assert_eq!(rig.front.stats().deferred_frees, 1);
    assert_eq!(rig.fe.deferred_frees(), 1);
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
    assert_eq!(rig.data_grants(), 1);
    // New requests get fresh pages, not that one.
    rig.front.submit_read(Sector(0), 8).unwrap();
    rig.front.push().unwrap();
    let again = rig.requests();
    assert_ne!(GrantRef::new(again[0].seg[0].gref), gref);
    // Once unmapped, the deferred free goes through.
    drop(kept);
    assert_eq!(rig.fe.retry_deferred().pending, 0);
    assert_eq!(rig.fe.deferred_frees(), 0);
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
}

#[test]
fn granted_pages_carry_only_the_request_data() {
    let mut rig = Rig::new();
    // A 1.5-page write: the tail of the second page must be zero, not stale memory.
    let data = vec![0x3cu8; 4096 + 2048];
    rig.front.submit_write(Sector(0), &data).unwrap();
    rig.front.push().unwrap();
    let req = rig.requests()[0];
    assert_eq!((req.seg[1].first_sect, req.seg[1].last_sect), (0, 3));
    let page = rig
        .be
        .map_grants(&[MapOp {
            granter: D1,
            gref: GrantRef::new(req.seg[1].gref),
            writable: false,
        }])
        .pop()
        .unwrap()
        .unwrap();
    let mut b = vec![0u8; 4096];
    assert!(page.read(0, &mut b));
    assert!(b[..2048].iter().all(|&x| x == 0x3c));
    assert!(b[2048..].iter().all(|&x| x == 0));
    // Writes are granted read-only.
    assert!(rig
        .be
        .map_grants(&[MapOp {
            granter: D1,
            gref: GrantRef::new(req.seg[0].gref),
            writable: true,
        }])
        .pop()
        .unwrap()
        .is_err());
}

#[test]
fn rejects_indirect_response_with_the_outer_operation() {
    let sim = Sim::new();
    let fe = sim.create_domain(1);
    let be = sim.domain(0);
    let ring = fe.alloc_ring(1).unwrap();
    let gref = fe.grant_ring_page(D0, &ring, 0).unwrap();
    let fport = fe.alloc_unbound(D0).unwrap();
    be.bind_interdomain(D1, fport).unwrap();
    let config = FrontConfig {
        max_indirect_segments: 32,
        ..FrontConfig::default()
    };
    let mut front: BlkFront<Domain, Pages, 8, 32> =
        BlkFront::new(fe.clone(), ring, D0, fport, config).unwrap();
    let mut back: Back = BackRing::attach(RingMemory::map_ring(&be, D1, &[gref]).unwrap()).unwrap();
    assert_eq!(front.max_sectors(), 256);
    front.submit_read(Sector(0), 256).unwrap();
    front.push().unwrap();
    let req = wire::Request::from_bytes(&back.next_request().unwrap().unwrap());
    assert_eq!(req.operation, u8::from(Op::Indirect));
    let ind = req.to_indirect();
    assert_eq!((ind.indirect_op, ind.nr_segments), (u8::from(Op::Read), 32));
    // 32 data pages and one descriptor page are granted.
    assert_eq!(sim.live_grants(D1), 1 + 32 + 1);
    // Answer with the outer operation: Linux's blkback never does, and ours refuses it.
    let mut rsp = wire::Response::ZERO;
    rsp.id = req.id;
    rsp.operation = Op::Indirect.into();
    back.queue_response(&rsp.to_bytes()).unwrap();
    let _ = back.push_responses().unwrap();
    let mut aborted = 0;
    let err = front
        .handle_event(|c: Completion, _: &ReadData<'_, Pages>| {
            assert_eq!(c.status, Status::Error);
            aborted += 1;
        })
        .unwrap_err();
    assert_eq!(
        err,
        Error::Response(ResponseFault::WrongOperation {
            id: req.id,
            operation: 6
        })
    );
    assert_eq!(aborted, 1);
    assert_eq!(sim.live_grants(D1), 1, "data and descriptor pages revoked");
}

/// What is negotiated at connection (indirect segments, persistent grants) cannot change under
/// requests in flight: a request sized for one setting must not be completed under another.
#[test]
fn configure_is_refused_while_requests_are_outstanding() {
    let mut rig = Rig::new();
    assert!(rig.front.configure(32, true));
    assert!(rig.front.is_persistent());
    // The engine holds at most S = 11 segments per request here: the offer is capped.
    assert_eq!(rig.front.max_sectors(), 11 * 8);
    let reqs = submit_two_reads(&mut rig);
    assert!(
        !rig.front.configure(0, false),
        "refused with two requests out"
    );
    assert!(rig.front.is_persistent());
    let mut done = Done::new();
    for r in &reqs {
        rig.answer(r.id, r.operation, 0);
    }
    rig.event(&mut done).unwrap();
    assert_eq!(done.len(), 2);
    // Persistent pages are pooled now: still refused until the pool is gone.
    assert!(rig.front.pooled_pages() > 0);
    assert!(!rig.front.configure(0, false));
}

/// A write whose data is filled in place (as the kernel copies from the block layer's pages)
/// reaches the backend's pages intact, and a fill that fails queues nothing and leaves no grant.
#[test]
fn write_filled_in_place_reaches_the_backend_and_a_failed_fill_leaves_nothing() {
    let mut rig = Rig::new();
    let before = rig.data_grants();
    let r = rig
        .front
        .submit_write_with(Sector(4), 4096 + 512, |_| false);
    assert_eq!(r, Err(xen_blkif::SubmitError::BadLength));
    assert_eq!(rig.data_grants(), before);
    assert_eq!(rig.front.outstanding(), 0);
    let data: Vec<u8> = (0..4608u32).map(|i| (i % 251) as u8).collect();
    rig.front
        .submit_write_with(Sector(4), data.len(), |pages| pages.copy_from(&data))
        .unwrap();
    rig.front.push().unwrap();
    let reqs = rig.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].nr_segments, 2);
    assert_eq!(rig.data_grants(), before + 2);
}

#[test]
fn backend_flooding_a_failed_device_gets_one_error_then_spurious_events() {
    // A backend breaks the protocol, then floods the port. The frontend reports the fault
    // once (the glue logs it once); every later event is spurious, which is what the glue
    // passes to the late EOI, so the kernel throttles the flood instead of logging it.
    let mut rig = Rig::new();
    let reqs = submit_two_reads(&mut rig);
    rig.answer(reqs[0].id | 999, Op::Read.into(), 0);
    let mut done = Vec::new();
    assert!(matches!(rig.event(&mut done), Err(Error::Response(_))));
    rig.sim.inject_events(D1, rig.fport, 10_000).unwrap();
    let before = rig.front.stats().spurious_events;
    for _ in 0..10_000 {
        let p = rig.event(&mut done).unwrap();
        assert!(p.spurious && p.done == 0 && !p.more);
    }
    assert_eq!(rig.front.stats().spurious_events, before + 10_000);
    assert_eq!(done.len(), 2, "only the two aborted requests completed");
}

#[test]
fn backend_refusing_flush_and_discard_turns_them_off_and_nothing_else() {
    // A backend answers a flush, a barrier and a discard with EOPNOTSUPP (and a second flush
    // with Error). As Linux: the flush succeeds and flushes are off; the discard fails with
    // EOPNOTSUPP and discards are off; reads still work. The device is never half-working.
    let mut rig = Rig::new();
    rig.front.submit_flush().unwrap();
    rig.front.submit_discard(Sector(0), 8, false).unwrap();
    rig.front.push().unwrap();
    let reqs = rig.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        rig.answer(r.id, r.operation, Status::Eopnotsupp.into());
    }
    let mut done = Vec::new();
    assert_eq!(rig.event(&mut done).unwrap().done, 2);
    let status_of = |op: Op| {
        done.iter()
            .find(|(c, _)| c.op == op)
            .map(|(c, _)| c.status)
            .unwrap()
    };
    assert_eq!(
        status_of(Op::FlushDiskcache),
        Status::Okay,
        "a refused flush succeeds"
    );
    assert_eq!(status_of(Op::Discard), Status::Eopnotsupp);
    assert!(rig.front.flush_revoked() && rig.front.discard_revoked());
    // Neither is sent again.
    assert_eq!(
        rig.front.submit_flush(),
        Err(xen_blkif::SubmitError::Unsupported)
    );
    assert_eq!(
        rig.front.submit_barrier(),
        Err(xen_blkif::SubmitError::Unsupported)
    );
    assert_eq!(
        rig.front.submit_discard(Sector(0), 8, true),
        Err(xen_blkif::SubmitError::Unsupported)
    );
    assert!(rig.requests().is_empty());
    // Reads go on, and complete with their data.
    let reqs = submit_two_reads(&mut rig);
    for r in &reqs {
        rig.answer(r.id, r.operation, 0);
    }
    let mut done = Vec::new();
    assert_eq!(rig.event(&mut done).unwrap().done, 2);
    assert!(done.iter().all(|(c, _)| c.status == Status::Okay));
    assert!(!rig.front.is_failed());

    // A barrier answered with Error (an empty one) also revokes flushes, on a new device.
    let mut rig = Rig::new();
    rig.front.submit_barrier().unwrap();
    rig.front.push().unwrap();
    let r = rig.requests()[0];
    rig.answer(r.id, r.operation, Status::Error.into());
    let mut done = Vec::new();
    rig.event(&mut done).unwrap();
    assert_eq!(done[0].0.status, Status::Okay);
    assert!(rig.front.flush_revoked() && !rig.front.discard_revoked());
}
