//! A hostile backend against the xen-netif control-ring frontend, one test per attack.
//!
//! The backend is the test: it writes raw responses and indices. Each test checks that the
//! attack landed, then what the front made of it: a response that breaks the protocol fails
//! the ring cleanly (outcome `Failed`, the page revoked or deferred while mapped, nothing
//! granted but the ring, no further request, every later event spurious); a value the
//! backend may legitimately choose is bounded before use; a flood of events costs nothing
//! but spurious verdicts.

mod netif_ctrl_harness;

use netif_ctrl_harness::{configured, CtrlRig, Model, D1};
use xen_evtchn::{Eoi, Nanos, Outcome, Throttle, ThrottleConfig};
use xen_netif::ctrl::{CtrlOutcome, Error, Fault, HashConfig, Step};
use xen_ring::RingError;
use xen_sys::wire::netif::{CtrlStatus, CtrlType, HashFlags};
use xen_sys::GrantRef;

/// Answers the next `n` requests as Linux's netback would.
fn serve_n(rig: &mut CtrlRig, model: &mut Model, n: usize) {
    for _ in 0..n {
        let req = rig.next_request();
        let (status, data) = model.handle(rig, &req);
        rig.answer(&req, status, data);
        rig.push();
        assert_eq!(rig.event().unwrap().done, 1);
    }
}

/// After a fault: the outcome says so, nothing is held or granted but the ring (and pages
/// the backend still maps, deferred), no request follows, later events are spurious.
fn assert_failed_cleanly(rig: &mut CtrlRig, err: Error) {
    assert!(rig.front.is_failed());
    assert_eq!(rig.front.outcome(), Some(CtrlOutcome::Failed(err)));
    assert!(!rig.front.is_waiting());
    assert_eq!(rig.front.pages_held(), 0);
    assert_eq!(
        rig.page_grants(),
        rig.fe.deferred_frees() as u64,
        "only deferred pages stay granted"
    );
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
    let requests = rig.front.stats().requests;
    for _ in 0..3 {
        let p = rig.event().unwrap();
        assert!(p.spurious && p.done == 0 && !p.more);
    }
    assert_eq!(rig.take_requests(), 0, "no request after the fault");
    assert_eq!(rig.front.stats().requests, requests);
    assert_eq!(
        rig.front.start(),
        Ok(()),
        "a failed ring does not start again"
    );
    assert_eq!(rig.take_requests(), 0);
    assert_eq!(rig.front.outcome(), Some(CtrlOutcome::Failed(err)));
}

#[test]
fn rejects_bogus_response_id() {
    let mut rig = CtrlRig::started(HashConfig::new(4));
    let req = rig.next_request();
    assert_eq!(req.id, 0);
    rig.respond_raw(0x4242, req.ty, 0, 0);
    rig.push();
    let err = Error::Fault(Fault::BadId {
        id: 0x4242,
        expected: 0,
    });
    assert_eq!(rig.event(), Err(err));
    assert_failed_cleanly(&mut rig, err);
    rig.close();
}

#[test]
fn rejects_duplicate_response() {
    // The first request is answered twice: the second answer comes in the slot of the next
    // request (it must not pass for the answer to GET_HASH_FLAGS).
    let mut rig = CtrlRig::started(HashConfig::new(4));
    let first = rig.next_request();
    rig.answer(&first, CtrlStatus::Success, 0);
    rig.push();
    assert_eq!(rig.event().unwrap().done, 1);
    let second = rig.next_request();
    assert_eq!(second.ty, u16::from(CtrlType::GetHashFlags));
    rig.answer(&first, CtrlStatus::Success, 0xf);
    rig.push();
    let err = Error::Fault(Fault::BadId { id: 0, expected: 1 });
    assert_eq!(rig.event(), Err(err));
    assert_failed_cleanly(&mut rig, err);
    rig.close();
}

#[test]
fn rejects_stale_id_of_a_request_holding_a_page() {
    // Answering the key request again while the table request is out: the id is stale.
    let mut rig = CtrlRig::started(HashConfig::new(4));
    let mut model = Model::netback(4);
    serve_n(&mut rig, &mut model, 2);
    let key = rig.next_request();
    assert_eq!(key.ty, u16::from(CtrlType::SetHashKey));
    rig.answer(&key, CtrlStatus::Success, 0);
    rig.push();
    rig.event().unwrap();
    let size = rig.next_request();
    rig.answer(&key, CtrlStatus::Success, 0);
    rig.push();
    let err = Error::Fault(Fault::BadId {
        id: key.id,
        expected: size.id,
    });
    assert_eq!(rig.event(), Err(err));
    assert_failed_cleanly(&mut rig, err);
    rig.close();
}

#[test]
fn rejects_wrong_response_type() {
    let mut rig = CtrlRig::started(HashConfig::new(4));
    let mut model = Model::netback(4);
    serve_n(&mut rig, &mut model, 3);
    // GET_HASH_MAPPING_SIZE answered as if it were SET_HASH_MAPPING_SIZE.
    let req = rig.next_request();
    assert_eq!(req.ty, u16::from(CtrlType::GetHashMappingSize));
    rig.respond_raw(req.id, CtrlType::SetHashMappingSize.into(), 0, 128);
    rig.push();
    let err = Error::Fault(Fault::WrongType {
        ty: 5,
        expected: CtrlType::GetHashMappingSize,
    });
    assert_eq!(rig.event(), Err(err));
    assert_failed_cleanly(&mut rig, err);
    rig.close();
}

#[test]
fn rejects_unknown_status() {
    for status in [4, 0x100, u32::MAX] {
        let mut rig = CtrlRig::started(HashConfig::new(4));
        let req = rig.next_request();
        rig.respond_raw(req.id, req.ty, status, 0);
        rig.push();
        let err = Error::Fault(Fault::UnknownStatus(status));
        assert_eq!(rig.event(), Err(err));
        assert_failed_cleanly(&mut rig, err);
        rig.close();
    }
}

#[test]
fn rejects_response_producer_past_the_requests() {
    let mut rig = CtrlRig::started(HashConfig::new(4));
    let req = rig.next_request();
    // One request out; rsp_prod (offset 8) claims three answers.
    rig.answer(&req, CtrlStatus::Success, 0);
    assert!(rig.back.memory().write(8, &3u32.to_ne_bytes()));
    let err = rig.event().unwrap_err();
    assert!(matches!(err, Error::Ring(RingError::Broken(_))), "{err:?}");
    assert_failed_cleanly(&mut rig, err);
    rig.close();
}

#[test]
fn rejects_answer_after_the_sequence_ended() {
    let mut rig = CtrlRig::started(HashConfig::new(2));
    let mut model = Model::netback(2);
    model.serve(&mut rig);
    configured(&rig);
    // Nothing is outstanding: any answer is one too many.
    assert!(rig.back.memory().write(8, &8u32.to_ne_bytes()));
    let err = rig.event().unwrap_err();
    assert!(matches!(err, Error::Ring(RingError::Broken(_))), "{err:?}");
    assert_failed_cleanly(&mut rig, err);
    rig.close();
}

#[test]
fn fault_while_the_backend_maps_the_key_page_defers_it() {
    let mut rig = CtrlRig::started(HashConfig::new(4));
    let mut model = Model::netback(4);
    serve_n(&mut rig, &mut model, 2);
    let key = rig.next_request();
    assert_eq!(key.ty, u16::from(CtrlType::SetHashKey));
    let kept = rig.map(GrantRef::new(key.data[0]), false).unwrap();
    rig.respond_raw(key.id, key.ty, 99, 0);
    rig.push();
    let err = Error::Fault(Fault::UnknownStatus(99));
    assert_eq!(rig.event(), Err(err));
    assert_eq!(rig.front.stats().deferred_frees, 1);
    assert_eq!(rig.fe.deferred_frees(), 1);
    assert_failed_cleanly(&mut rig, err);
    kept.unmap();
    rig.close();
}

#[test]
fn huge_mapping_size_is_bounded_before_use() {
    let mut rig = CtrlRig::started(HashConfig::new(4));
    // A backend that claims to take 2^32 - 1 entries, and then takes whatever it is sent.
    let mut model = Model {
        max_mapping: u32::MAX,
        ..Model::netback(4)
    };
    let grants_before = rig.front.stats().grants;
    model.serve(&mut rig);
    let size_req = rig
        .seen
        .iter()
        .find(|r| r.ty == u16::from(CtrlType::SetHashMappingSize))
        .unwrap();
    assert_eq!(size_req.data[0], 128, "our size, not the backend's");
    let table_req = rig
        .seen
        .iter()
        .find(|r| r.ty == u16::from(CtrlType::SetHashMapping))
        .unwrap();
    assert_eq!(&table_req.data[1..], &[128, 0]);
    assert_eq!(model.mapping.len(), 128);
    assert!(model.mapping.iter().all(|&q| q < 4));
    assert_eq!(configured(&rig).mapping_entries, 128);
    // One page for the key and the table, two grants in all.
    let s = rig.front.stats();
    assert_eq!((s.page_allocs, s.grants - grants_before), (1, 2));
    rig.close();
}

#[test]
fn unknown_offered_flag_bits_are_never_set() {
    let mut rig = CtrlRig::started(HashConfig::new(2));
    let mut model = Model {
        offered: u32::MAX,
        ..Model::netback(2)
    };
    model.serve(&mut rig);
    let last = rig.seen.last().unwrap();
    assert_eq!(last.ty, u16::from(CtrlType::SetHashFlags));
    assert_eq!(last.data, [0xf, 0, 0]);
    assert_eq!(configured(&rig).offered, HashFlags::all());
    rig.close();
}

#[test]
fn backend_that_never_answers_is_closed_by_the_glue() {
    let mut rig = CtrlRig::started(HashConfig::new(2));
    let mut model = Model::netback(2);
    serve_n(&mut rig, &mut model, 2);
    let _key = rig.next_request();
    // Silence: events find nothing, the sequence waits.
    for _ in 0..10 {
        assert!(rig.event().unwrap().spurious);
    }
    assert!(rig.front.is_waiting());
    assert_eq!(rig.front.outcome(), None);
    assert_eq!(rig.page_grants(), 1, "the key page, granted while asked");
    rig.front.close();
    assert_eq!(
        rig.front.outcome(),
        Some(CtrlOutcome::Failed(Error::Closed))
    );
    assert_eq!(rig.page_grants(), 0);
    rig.close();
}

#[test]
fn event_storm_gets_spurious_verdicts_and_is_throttled() {
    let mut rig = CtrlRig::started(HashConfig::new(4));
    rig.sim.inject_events(D1, rig.port, 20_000).unwrap();
    assert!(rig.sim.port_stats(D1, rig.port).unwrap().received >= 20_000);
    let mut throttle = Throttle::new(ThrottleConfig::default());
    let mut delayed = 0;
    let mut now = Nanos::ZERO;
    for _ in 0..1000 {
        let p = rig.event().unwrap();
        assert!(p.spurious && p.done == 0 && !p.more);
        if let Eoi::At(t) = throttle.on_event(now, Outcome::Spurious) {
            delayed += 1;
            now = t;
        }
        now = now.saturating_add(Nanos::from_us(1));
    }
    assert!(delayed > 900, "the flood is throttled ({delayed})");
    let s = rig.front.stats();
    assert_eq!((s.events, s.spurious_events), (1000, 1000));
    assert_eq!(
        (s.requests, s.responses),
        (1, 0),
        "no work done for the flood"
    );
    assert_eq!(rig.take_requests(), 1, "still the first request, once");
    assert!(rig.front.is_waiting());
    // Real answers still get through, and are not spurious.
    let mut model = Model::netback(4);
    let req = rig.pending.pop_front().unwrap();
    let (status, data) = model.handle(&rig, &req);
    rig.answer(&req, status, data);
    rig.push();
    let p = rig.event().unwrap();
    assert!(!p.spurious && p.done == 1);
    model.serve(&mut rig);
    configured(&rig);
    rig.close();
}

#[test]
fn refusal_of_the_reset_still_ends_the_sequence() {
    // The backend refuses the flags, then refuses to unset the algorithm too.
    let mut rig = CtrlRig::started(HashConfig::new(2));
    let mut model = Model::netback(2);
    serve_n(&mut rig, &mut model, 1);
    let flags = rig.next_request();
    rig.answer(&flags, CtrlStatus::NotSupported, 0);
    rig.push();
    rig.event().unwrap();
    let reset = rig.next_request();
    assert_eq!(
        (reset.ty, reset.data),
        (CtrlType::SetHashAlgorithm.into(), [0, 0, 0])
    );
    rig.answer(&reset, CtrlStatus::InvalidParameter, 0);
    rig.push();
    rig.event().unwrap();
    assert_eq!(
        rig.front.outcome(),
        Some(CtrlOutcome::Refused {
            step: Step::GetFlags,
            status: CtrlStatus::NotSupported
        })
    );
    assert_eq!(rig.take_requests(), 0);
    rig.close();
}
