//! A hostile vscsiif backend against the xen-vscsiif frontend engine, one test per attack.
//!
//! The backend is the test: it maps the frontend's ring as a raw `BackRing` and answers (or
//! mis-answers) as it likes. Each test checks the attack happened, then that the frontend
//! failed cleanly: every request completed once, every grant revoked, no page freed while
//! mapped.

use xen_core::platform::RingMemory;
use xen_ring::{BackRing, RingError};
use xen_sim::{Domain, MapOp, Mapping, Pages, Sim};
use xen_sys::wire::vscsiif as wire;
use xen_sys::{DomId, GrantRef, Port};
use xen_vscsiif::back::Slot;
use xen_vscsiif::{
    Answer, CommandSpec, Completion, Direction, Error, FrontConfig, ResponseFault, ScsiFront,
    SubmitError, VAddr,
};

const D0: DomId = DomId::DOM0;
const D1: DomId = DomId::new(1);
const LUN0: VAddr = VAddr {
    channel: 0,
    id: 0,
    lun: 0,
};

type Front = ScsiFront<Domain, Pages, 16, 26>;
type Back = BackRing<Mapping, Slot, Slot>;
type Done = Vec<(Completion, Vec<u8>)>;

struct Rig {
    sim: Sim,
    fe: Domain,
    be: Domain,
    front: Front,
    back: Back,
    fport: Port,
}

impl Rig {
    fn new() -> Rig {
        let sim = Sim::new();
        let fe = sim.create_domain(1);
        let be = sim.domain(0);
        let ring = fe.alloc_ring(1).unwrap();
        let gref = fe.grant_ring_page(D0, &ring, 0).unwrap();
        let fport = fe.alloc_unbound(D0).unwrap();
        let _ = be.bind_interdomain(D1, fport).unwrap();
        let front = Front::new(fe.clone(), ring, D0, fport, FrontConfig::default()).unwrap();
        let mapped = RingMemory::map_ring(&be, D1, &[gref]).unwrap();
        let back = BackRing::attach(mapped).unwrap();
        Rig {
            sim,
            fe,
            be,
            front,
            back,
            fport,
        }
    }

    fn requests(&mut self) -> Vec<wire::Request> {
        let mut out = Vec::new();
        while let Some(r) = self.back.next_request().unwrap() {
            out.push(wire::Request::from_bytes(&r));
        }
        out
    }

    fn respond(&mut self, r: &wire::Response) {
        self.back.queue_response(&r.to_bytes()).unwrap();
        let _ = self.back.push_responses().unwrap();
    }

    fn event(&mut self, done: &mut Done) -> Result<xen_vscsiif::Progress, Error> {
        self.front.handle_event(|c, d| {
            let mut b = vec![0u8; d.len()];
            assert!(d.copy_to(&mut b));
            done.push((c, b));
        })
    }

    fn data_grants(&self) -> u64 {
        self.sim.live_grants(D1) - 1
    }

    /// Two reads (4 KiB and 8 KiB), published.
    fn two_reads(&mut self) -> Vec<wire::Request> {
        for len in [4096, 8192] {
            let spec = CommandSpec {
                addr: LUN0,
                cdb: &[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0],
                direction: Direction::FromDevice,
                length: len,
            };
            self.front.submit_command(&spec, &[]).unwrap();
        }
        self.front.push().unwrap();
        let reqs = self.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(self.data_grants(), 3);
        reqs
    }
}

fn ok(rqid: u16) -> wire::Response {
    let mut r = wire::Response::ZERO;
    r.rqid = rqid;
    r
}

/// Every request completed once without an answer, every data grant revoked, nothing freed
/// while mapped, the device refuses work and its later events are spurious.
fn assert_failed_cleanly(rig: &mut Rig, done: &Done, aborted: usize) {
    assert!(rig.front.is_failed());
    let n = done
        .iter()
        .filter(|(c, _)| matches!(c.answer, Answer::Command(o) if o.host == wire::RSLT_HOST_ERROR))
        .count();
    assert_eq!(n, aborted);
    assert_eq!(rig.front.outstanding(), 0);
    assert_eq!(rig.data_grants(), 0, "every data grant revoked");
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
    assert_eq!(rig.front.submit_reset(LUN0), Err(SubmitError::Failed));
    let mut more = Vec::new();
    let p = rig.event(&mut more).unwrap();
    assert_eq!((p.done, p.spurious), (0, true));
    assert!(more.is_empty());
}

#[test]
fn rejects_bogus_rqid() {
    let mut rig = Rig::new();
    let reqs = rig.two_reads();
    // Slot 15 never carried a request; slot 0 with the wrong generation.
    for bogus in [15u16, reqs[0].rqid ^ 0x0100] {
        let mut rig = Rig::new();
        rig.two_reads();
        rig.respond(&ok(bogus));
        let mut done = Vec::new();
        let err = rig.event(&mut done).unwrap_err();
        assert_eq!(err, Error::Response(ResponseFault::NotOutstanding(bogus)));
        assert_failed_cleanly(&mut rig, &done, 2);
    }
}

#[test]
fn rejects_duplicate_rqid() {
    let mut rig = Rig::new();
    let reqs = rig.two_reads();
    rig.respond(&ok(reqs[0].rqid));
    rig.respond(&ok(reqs[0].rqid));
    let mut done = Vec::new();
    let err = rig.event(&mut done).unwrap_err();
    assert_eq!(
        err,
        Error::Response(ResponseFault::NotOutstanding(reqs[0].rqid))
    );
    // The first answer completed its request; the duplicate failed the device.
    assert_eq!(done.len(), 2);
    assert!(matches!(done[0].0.answer, Answer::Command(o) if o.host == 0));
    let rest: Done = done.split_off(1);
    assert_failed_cleanly(&mut rig, &rest, 1);
}

#[test]
fn rejects_sense_len_over_96() {
    let mut rig = Rig::new();
    let reqs = rig.two_reads();
    let mut r = ok(reqs[1].rqid);
    r.rslt = 2;
    r.sense_len = 97;
    rig.respond(&r);
    let mut done = Vec::new();
    let err = rig.event(&mut done).unwrap_err();
    assert_eq!(err, Error::Response(ResponseFault::SenseTooLong(97)));
    assert_failed_cleanly(&mut rig, &done, 2);
}

#[test]
fn rejects_residual_larger_than_the_transfer() {
    let mut rig = Rig::new();
    let reqs = rig.two_reads();
    let mut r = ok(reqs[0].rqid);
    r.residual_len = 4097;
    rig.respond(&r);
    let mut done = Vec::new();
    let err = rig.event(&mut done).unwrap_err();
    assert_eq!(
        err,
        Error::Response(ResponseFault::ResidualTooLarge {
            residual: 4097,
            transfer: 4096
        })
    );
    assert_failed_cleanly(&mut rig, &done, 2);
}

#[test]
fn rejects_unknown_result() {
    let mut rig = Rig::new();
    let reqs = rig.two_reads();
    let mut r = ok(reqs[0].rqid);
    r.rslt = 0x0003;
    rig.respond(&r);
    let mut done = Vec::new();
    let err = rig.event(&mut done).unwrap_err();
    assert_eq!(err, Error::Response(ResponseFault::BadResult(3)));
    assert_failed_cleanly(&mut rig, &done, 2);
}

#[test]
fn rejects_response_producer_overflow() {
    let mut rig = Rig::new();
    rig.two_reads();
    // rsp_prod past every request published.
    rig.back.memory().write(8, &5u32.to_ne_bytes());
    let mut done = Vec::new();
    let err = rig.event(&mut done).unwrap_err();
    assert!(matches!(err, Error::Ring(RingError::Broken(_))), "{err:?}");
    assert_failed_cleanly(&mut rig, &done, 2);
}

#[test]
fn event_storm() {
    let mut rig = Rig::new();
    rig.sim.inject_events(D1, rig.fport, 50_000).unwrap();
    let mut done = Vec::new();
    for _ in 0..500 {
        let p = rig.event(&mut done).unwrap();
        assert!(p.spurious && p.done == 0);
    }
    assert_eq!(rig.front.consecutive_spurious(), 500);
    let reqs = rig.two_reads();
    rig.respond(&ok(reqs[0].rqid));
    assert_eq!(rig.event(&mut done).unwrap().done, 1);
    assert_eq!(rig.front.consecutive_spurious(), 0);
}

#[test]
fn page_still_mapped_at_free_is_deferred() {
    let mut rig = Rig::new();
    let data = vec![0xa5u8; 8192];
    let spec = CommandSpec {
        addr: LUN0,
        cdb: &[0x2a, 0, 0, 0, 0, 0, 0, 0, 16, 0],
        direction: Direction::ToDevice,
        length: 8192,
    };
    rig.front.submit_command(&spec, &data).unwrap();
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
    rig.respond(&ok(reqs[0].rqid));
    let mut done = Vec::new();
    assert_eq!(rig.event(&mut done).unwrap().done, 1);
    assert_eq!(rig.front.stats().deferred_frees, 1);
    assert_eq!(rig.fe.deferred_frees(), 1);
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
    assert_eq!(rig.data_grants(), 1);
    // New commands get fresh pages, not that one.
    rig.two_reads_after_one(gref);
    drop(kept);
    assert_eq!(rig.fe.retry_deferred().pending, 0);
    assert_eq!(rig.fe.deferred_frees(), 0);
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
}

impl Rig {
    fn two_reads_after_one(&mut self, not: GrantRef) {
        let spec = CommandSpec {
            addr: LUN0,
            cdb: &[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0],
            direction: Direction::FromDevice,
            length: 4096,
        };
        self.front.submit_command(&spec, &[]).unwrap();
        self.front.push().unwrap();
        let again = self.requests();
        assert_ne!(GrantRef::new(again[0].seg[0].gref), not);
    }
}
