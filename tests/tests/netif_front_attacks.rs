//! A hostile netif backend against the xen-netif frontend engine, one test per attack.
//!
//! The backend is the test: it writes raw TX and RX response slots and indices. Each test
//! checks that the attack landed, then what the front made of it: a bad packet is dropped
//! and the queue goes on; a bad ring or id fails the queue cleanly (every packet completed
//! once, every grant revoked, no page freed or reused while the backend maps it), and its
//! later events are spurious.

mod netif_harness;

use netif_harness::{Rig, D1};
use std::collections::VecDeque;
use xen_evtchn::{Eoi, Nanos, Outcome, Throttle, ThrottleConfig};
use xen_netif::rx::{MAX_RX_CHAIN, MAX_RX_DATA_SLOTS};
use xen_netif::{Error, Fault, FrontConfig, RxError, SendError, TxChecksum, TxOutcome, TxPacket};
use xen_ring::RingError;
use xen_sim::MapOp;
use xen_sys::wire::netif::{
    ExtraFlags, ExtraInfo, ExtraType, GsoType, NetRxFlags, RxResponse, RSP_DROPPED, RSP_ERROR,
    RSP_NULL,
};
use xen_sys::GrantRef;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

/// Sends `n` one-page packets (tokens 0..n) and returns them as the backend read them.
fn send(rig: &mut Rig, n: u64, len: usize) -> Vec<netif_harness::WirePacket> {
    let d = data(len);
    for t in 0..n {
        rig.front.send(&TxPacket::linear(&d), t).unwrap();
    }
    rig.front.push_tx().unwrap();
    rig.read_tx()
}

/// After a fault: the queue refuses work, every packet completed once, nothing granted but
/// the rings, later events spurious.
fn assert_failed_cleanly(rig: &mut Rig, sent: usize) {
    assert!(rig.front.is_failed());
    // Aborted packets are reported by the next TX event (or by close).
    rig.tx_event().unwrap();
    let mut tokens: Vec<u64> = rig.completions.iter().map(|c| c.token).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), rig.completions.len(), "each packet once");
    assert_eq!(rig.completions.len(), sent);
    assert_eq!(rig.front.tx_outstanding(), 0);
    assert_eq!(rig.front.rx_posted(), 0);
    assert_eq!(rig.front.pages_held(), 0);
    assert_eq!(rig.data_grants(), 0, "every data grant revoked");
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
    assert_eq!(
        rig.front.send(&TxPacket::linear(&data(60)), 1000),
        Err(SendError::Failed)
    );
    for _ in 0..3 {
        let p = rig.tx_event().unwrap();
        assert!(p.spurious && p.done == 0 && !p.more);
        assert!(rig.front.rx_event().unwrap().spurious);
        assert!(rig.poll(64).unwrap().spurious);
    }
    assert_eq!(rig.completions.len(), sent, "nothing reported twice");
}

// ---- TX ring ----

#[test]
fn tx_rejects_bogus_response_id() {
    let mut rig = Rig::new(FrontConfig::default());
    send(&mut rig, 2, 100);
    rig.tx_raw(999, 0);
    rig.push_tx_responses();
    assert_eq!(rig.tx_event(), Err(Error::Fault(Fault::TxBadId(999))));
    assert_eq!(
        rig.completions
            .iter()
            .filter(|c| c.outcome == TxOutcome::Aborted)
            .count(),
        2
    );
    assert_failed_cleanly(&mut rig, 2);
}

#[test]
fn tx_rejects_duplicate_response_id() {
    let mut rig = Rig::new(FrontConfig::default());
    let w = send(&mut rig, 2, 100);
    rig.tx_raw(w[0].ids[0], 0);
    rig.tx_raw(w[0].ids[0], 0);
    rig.push_tx_responses();
    assert_eq!(
        rig.tx_event(),
        Err(Error::Fault(Fault::TxNotOutstanding(w[0].ids[0])))
    );
    // The first answer completed its packet; the other was aborted.
    assert_eq!(rig.completions[0].outcome, TxOutcome::Okay);
    assert_eq!(rig.completions[1].outcome, TxOutcome::Aborted);
    assert_failed_cleanly(&mut rig, 2);
}

#[test]
fn tx_rejects_duplicate_answer_to_the_head_of_an_unfinished_packet() {
    let mut rig = Rig::new(FrontConfig::default());
    // A two-slot packet: its head stays outstanding until the second slot is answered.
    let w = send(&mut rig, 1, 5000);
    assert_eq!(w[0].ids.len(), 2);
    rig.tx_raw(w[0].ids[0], 0);
    rig.tx_raw(w[0].ids[0], 0);
    rig.push_tx_responses();
    assert_eq!(
        rig.tx_event(),
        Err(Error::Fault(Fault::TxNotOutstanding(w[0].ids[0])))
    );
    assert_eq!(rig.completions.len(), 1);
    assert_eq!(rig.completions[0].outcome, TxOutcome::Aborted);
    assert_failed_cleanly(&mut rig, 1);
}

#[test]
fn tx_rejects_answer_to_an_id_never_sent() {
    let mut rig = Rig::new(FrontConfig::default());
    send(&mut rig, 1, 100);
    // Id 200 is in range but carries nothing.
    rig.tx_raw(200, 0);
    rig.push_tx_responses();
    assert_eq!(
        rig.tx_event(),
        Err(Error::Fault(Fault::TxNotOutstanding(200)))
    );
    assert_failed_cleanly(&mut rig, 1);
}

#[test]
fn tx_rejects_unknown_status() {
    let mut rig = Rig::new(FrontConfig::default());
    let w = send(&mut rig, 1, 100);
    rig.tx_raw(w[0].ids[0], 7);
    rig.push_tx_responses();
    assert_eq!(rig.tx_event(), Err(Error::Fault(Fault::TxUnknownStatus(7))));
    assert_failed_cleanly(&mut rig, 1);
}

#[test]
fn tx_rejects_rsp_null_without_an_extra_slot() {
    let mut rig = Rig::new(FrontConfig::default());
    send(&mut rig, 1, 100);
    rig.tx_raw(0, RSP_NULL);
    rig.push_tx_responses();
    assert_eq!(rig.tx_event(), Err(Error::Fault(Fault::TxUnexpectedNull)));
    assert_failed_cleanly(&mut rig, 1);
}

#[test]
fn tx_error_and_dropped_statuses_complete_the_packet_with_them() {
    let mut rig = Rig::new(FrontConfig::default());
    let w = send(&mut rig, 2, 5000);
    // A two-slot packet: one slot dropped is the packet dropped.
    rig.tx_raw(w[0].ids[0], 0);
    rig.tx_raw(w[0].ids[1], RSP_DROPPED);
    rig.tx_raw(w[1].ids[1], RSP_ERROR);
    rig.tx_raw(w[1].ids[0], 0);
    rig.push_tx_responses();
    assert_eq!(rig.tx_event().unwrap().done, 2);
    assert_eq!(rig.completions[0].outcome, TxOutcome::Dropped);
    assert_eq!(rig.completions[1].outcome, TxOutcome::Error);
    assert_eq!(rig.front.stats().tx_errors, 2);
    assert!(!rig.front.is_failed());
    rig.close();
}

#[test]
fn tx_rejects_response_producer_past_the_requests() {
    let mut rig = Rig::new(FrontConfig::default());
    send(&mut rig, 2, 100);
    // rsp_prod (offset 8) claims 5 answers to 2 requests.
    assert!(rig.txb.memory().write(8, &5u32.to_ne_bytes()));
    let err = rig.tx_event().unwrap_err();
    assert!(matches!(err, Error::Ring(RingError::Broken(_))), "{err:?}");
    assert_failed_cleanly(&mut rig, 2);
}

#[test]
fn tx_page_still_mapped_is_deferred_never_reused() {
    let mut rig = Rig::new(FrontConfig::default());
    let w = send(&mut rig, 1, 100);
    let gref = w[0].grefs[0];
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
    rig.answer_tx(&w[0], 0);
    rig.push_tx_responses();
    assert_eq!(rig.tx_event().unwrap().done, 1);
    assert_eq!(rig.front.stats().deferred_frees, 1);
    assert_eq!(rig.fe.deferred_frees(), 1);
    // The next packet in the same id gets a fresh page.
    let w2 = send(&mut rig, 1, 100);
    assert_eq!(w2[0].ids, w[0].ids);
    assert_ne!(w2[0].grefs[0], gref);
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
    drop(kept);
    assert_eq!(rig.fe.retry_deferred().pending, 0);
    rig.close();
}

/// Lends a 5000-byte packet from offset 3000 of fresh pages of the front's (two pieces);
/// returns the memory (kept alive by the test, as the glue keeps the skb) and what the
/// backend read.
fn lend(rig: &mut Rig, token: u64) -> (xen_sim::Pages, netif_harness::WirePacket) {
    let (mem, pieces) = rig.lend(&data(5000), 3000);
    assert_eq!(pieces.len(), 2);
    rig.front
        .send_lent(&pieces, TxChecksum::None, None, token)
        .unwrap();
    rig.front.push_tx().unwrap();
    let mut w = rig.read_tx();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].data, data(5000));
    (mem, w.remove(0))
}

#[test]
fn tx_lent_frame_still_mapped_after_its_answer_is_never_given_back() {
    let mut rig = Rig::new(FrontConfig::default());
    let (mem, w) = lend(&mut rig, 7);
    // The backend answers both slots but keeps the second frame mapped.
    let kept = rig.map(w.grefs[1], false);
    rig.answer_tx(&w, 0);
    rig.push_tx_responses();
    assert_eq!(
        rig.tx_event(),
        Err(Error::Fault(Fault::TxStillMapped(w.ids[1])))
    );
    // Reported once, aborted, and held: the glue must leak the memory, never free it.
    let done: Vec<_> = rig
        .completions
        .iter()
        .map(|c| (c.token, c.outcome, c.still_mapped))
        .collect();
    assert_eq!(done, vec![(7, TxOutcome::Aborted, true)]);
    assert!(rig.front.is_failed());
    assert_eq!(rig.front.stats().tx_still_mapped, 1);
    assert_eq!(
        rig.front.send(&TxPacket::linear(&data(60)), 8),
        Err(SendError::Failed)
    );
    // Every grant is revoked but the one the backend maps, which is the memory's for good.
    assert_eq!(rig.data_grants(), 1);
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
    let mut seen = vec![0u8; 3904];
    assert!(kept.read(0, &mut seen));
    assert_eq!(seen, data(5000)[1096..]);
    drop(kept);
    drop(mem);
}

#[test]
fn tx_lent_frame_mapped_when_the_queue_fails_is_reported_held() {
    let mut rig = Rig::new(FrontConfig::default());
    let (mem_a, a) = lend(&mut rig, 1);
    let (mem_b, _b) = lend(&mut rig, 2);
    let kept = rig.map(a.grefs[0], false);
    // A bogus answer fails the queue with both packets unanswered.
    rig.tx_raw(4000, 0);
    rig.push_tx_responses();
    assert_eq!(rig.tx_event(), Err(Error::Fault(Fault::TxBadId(4000))));
    let mut done: Vec<_> = rig
        .completions
        .iter()
        .map(|c| (c.token, c.outcome, c.still_mapped))
        .collect();
    done.sort_unstable_by_key(|d| d.0);
    assert_eq!(
        done,
        vec![
            (1, TxOutcome::Aborted, true),
            (2, TxOutcome::Aborted, false)
        ],
        "only the packet whose frame is mapped is held"
    );
    assert_eq!(rig.front.stats().tx_still_mapped, 1);
    assert_eq!(rig.data_grants(), 1, "only the mapped frame stays granted");
    drop(mem_b);
    drop(kept);
    drop(mem_a);
}

// ---- RX ring ----

fn rx_rsp(id: u16, offset: u16, status: i16, flags: NetRxFlags) -> [u8; 8] {
    let mut r = RxResponse::ZERO;
    r.id = id;
    r.offset = offset;
    r.status = status;
    r.flags = flags.bits();
    r.to_bytes()
}

#[test]
fn rx_rejects_bogus_response_id() {
    let mut rig = Rig::new(FrontConfig::default());
    rig.rx_raw(rx_rsp(4000, 0, 60, NetRxFlags::empty()));
    rig.push_rx_responses();
    assert_eq!(rig.poll(64), Err(Error::Fault(Fault::RxBadId(4000))));
    assert!(rig.received.is_empty());
    assert_failed_cleanly(&mut rig, 0);
}

#[test]
fn rx_rejects_duplicate_response_id() {
    let mut rig = Rig::new(FrontConfig::default());
    let d = data(60);
    let first = rig.rx_data(0, &d, NetRxFlags::empty());
    // The second response names the buffer the first one used up (not posted again yet:
    // buffers are reposted after the poll's batch).
    rig.rx_raw(rx_rsp(first.id, 0, 60, NetRxFlags::empty()));
    rig.push_rx_responses();
    assert_eq!(
        rig.poll(64),
        Err(Error::Fault(Fault::RxNotOutstanding(first.id)))
    );
    assert_eq!(rig.received.len(), 1);
    assert_eq!(rig.received[0].data, d);
    assert_failed_cleanly(&mut rig, 0);
}

#[test]
fn rx_rejects_answer_naming_a_buffer_held_in_a_packet() {
    let mut rig = Rig::new(FrontConfig::default());
    let d = data(60);
    // The first slot of a packet: its buffer is held until the packet ends.
    let held = rig.rx_data(0, &d, NetRxFlags::MORE_DATA);
    rig.rx_raw(rx_rsp(held.id, 0, 60, NetRxFlags::empty()));
    rig.push_rx_responses();
    assert_eq!(
        rig.poll(64),
        Err(Error::Fault(Fault::RxNotOutstanding(held.id)))
    );
    assert!(rig.received.is_empty());
    assert_failed_cleanly(&mut rig, 0);
}

#[test]
fn rx_rejects_response_out_of_order() {
    let mut rig = Rig::new(FrontConfig::default());
    let a = rig.rx_take();
    let b = rig.rx_take();
    // The answer at a's position names b: both posted, but not in ring order.
    rig.rxb
        .queue_response(&rx_rsp(b.id, 0, 60, NetRxFlags::empty()))
        .unwrap();
    rig.rxb
        .queue_response(&rx_rsp(a.id, 0, 60, NetRxFlags::empty()))
        .unwrap();
    rig.push_rx_responses();
    assert_eq!(
        rig.poll(64),
        Err(Error::Fault(Fault::RxOutOfOrder {
            id: b.id,
            expected: a.id
        }))
    );
    assert_failed_cleanly(&mut rig, 0);
}

#[test]
fn rx_rejects_response_producer_past_the_requests() {
    let mut rig = Rig::new(FrontConfig::default());
    // 256 buffers posted; rsp_prod claims 300 answers.
    assert!(rig.rxb.memory().write(8, &300u32.to_ne_bytes()));
    let err = rig.poll(64).unwrap_err();
    assert!(matches!(err, Error::Ring(RingError::Broken(_))), "{err:?}");
    assert_failed_cleanly(&mut rig, 0);
}

#[test]
fn rx_size_or_offset_outside_the_page_drops_the_packet() {
    let mut rig = Rig::new(FrontConfig::default());
    let d = data(60);
    for (offset, size) in [
        (4000u16, 97i16),
        (4096, 1),
        (0xffff, 60),
        (0, 4097),
        (0, i16::MAX),
    ] {
        let req = rig.rx_take();
        rig.rxb
            .queue_response(&rx_rsp(req.id, offset, size, NetRxFlags::empty()))
            .unwrap();
    }
    // Then a good packet: the queue goes on.
    rig.rx_data(0, &d, NetRxFlags::empty());
    rig.push_rx_responses();
    rig.poll_all();
    assert!(!rig.front.is_failed());
    assert_eq!(rig.front.stats().rx_errors, 5);
    assert_eq!(
        rig.front.last_rx_error(),
        Some(RxError::OutsidePage {
            offset: 0,
            size: i16::MAX as u16
        })
    );
    assert_eq!(rig.received.len(), 1);
    assert_eq!(rig.received[0].data, d);
    assert_eq!(rig.front.rx_posted(), 256, "dropped buffers reposted");
    rig.close();
}

#[test]
fn rx_negative_status_drops_the_packet() {
    let mut rig = Rig::new(FrontConfig::default());
    for s in [RSP_ERROR, RSP_DROPPED, -9] {
        let req = rig.rx_take();
        rig.rxb
            .queue_response(&rx_rsp(req.id, 0, s, NetRxFlags::empty()))
            .unwrap();
    }
    rig.push_rx_responses();
    rig.poll_all();
    assert_eq!(rig.front.stats().rx_errors, 3);
    assert_eq!(rig.front.last_rx_error(), Some(RxError::UnknownStatus(-9)));
    assert!(rig.received.is_empty());
    assert!(!rig.front.is_failed());
    rig.close();
}

#[test]
fn rx_chain_over_max_slots_is_dropped_and_skipped() {
    let mut rig = Rig::new(FrontConfig::default());
    let page = data(4096);
    for _ in 0..MAX_RX_DATA_SLOTS + 2 {
        rig.rx_data(0, &page, NetRxFlags::MORE_DATA);
    }
    rig.rx_data(0, &page[..10], NetRxFlags::empty());
    let d = data(70);
    rig.rx_data(0, &d, NetRxFlags::empty());
    rig.push_rx_responses();
    rig.poll_all();
    assert_eq!(rig.front.last_rx_error(), Some(RxError::TooManySlots));
    assert_eq!(rig.front.stats().rx_errors, 1);
    assert_eq!(rig.received.len(), 1, "only the packet after it");
    assert_eq!(rig.received[0].data, d);
    assert_eq!(rig.front.rx_posted(), 256);
    rig.close();
}

#[test]
fn rx_endless_more_data_fails_the_queue() {
    let mut rig = Rig::new(FrontConfig::default());
    let mut sent = 0;
    // The backend answers every buffer the front posts with more_data, forever.
    for _ in 0..10 {
        while rig.rx_available() > 0 {
            rig.rx_data(0, &[1, 2, 3], NetRxFlags::MORE_DATA);
            sent += 1;
        }
        rig.push_rx_responses();
        match rig.poll(64) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e, Error::Fault(Fault::RxEndlessChain));
                assert!(sent > MAX_RX_CHAIN);
                assert!(rig.received.is_empty());
                assert_failed_cleanly(&mut rig, 0);
                return;
            }
        }
    }
    panic!("the chain never ended the queue");
}

#[test]
fn rx_extra_info_flood_drops_the_packet() {
    let mut rig = Rig::new(FrontConfig::default());
    let d = data(100);
    rig.rx_data(0, &d, NetRxFlags::EXTRA_INFO);
    // Extra after extra, each saying another follows, then a last one.
    let mut e = ExtraInfo::gso(1448, GsoType::Tcpv4, 0, ExtraFlags::MORE);
    for _ in 0..40 {
        rig.rx_raw(e.to_bytes());
    }
    e.flags = 0;
    rig.rx_raw(e.to_bytes());
    rig.rx_data(0, &d, NetRxFlags::empty());
    rig.push_rx_responses();
    rig.poll_all();
    assert_eq!(rig.front.stats().rx_errors, 1);
    // The second GSO slot is a duplicate; the rest of the flood is consumed and dropped.
    assert_eq!(rig.front.last_rx_error(), Some(RxError::DuplicateExtra(1)));
    assert_eq!(rig.received.len(), 1, "the next packet is received");
    assert_eq!(rig.received[0].data, d);
    assert_eq!(rig.front.rx_posted(), 256, "the extras' buffers reposted");
    rig.close();
}

#[test]
fn rx_bad_extra_types_and_gso_drop_the_packet() {
    let mut rig = Rig::new(FrontConfig::default());
    let d = data(100);
    let mut unknown = ExtraInfo::ZERO;
    unknown.ty = 9;
    let bad = [
        unknown,
        ExtraInfo::mcast(ExtraType::McastAdd, [2; 6], ExtraFlags::empty()),
        ExtraInfo::gso(0, GsoType::Tcpv4, 0, ExtraFlags::empty()),
        ExtraInfo::gso(1000, GsoType::None, 0, ExtraFlags::empty()),
    ];
    for e in bad {
        rig.rx_data(0, &d, NetRxFlags::EXTRA_INFO);
        rig.rx_raw(e.to_bytes());
    }
    rig.push_rx_responses();
    rig.poll_all();
    assert_eq!(rig.front.stats().rx_errors, 4);
    assert!(rig.received.is_empty());
    assert!(!rig.front.is_failed());
    rig.close();
}

#[test]
fn rx_page_still_mapped_is_deferred_and_the_packet_dropped() {
    let mut rig = Rig::new(FrontConfig::default());
    let req = rig.rx_take();
    // The backend maps the buffer (rx-copy never does) and keeps it.
    let gref = GrantRef::new(req.gref);
    let kept = rig
        .be
        .map_grants(&[MapOp {
            granter: D1,
            gref,
            writable: true,
        }])
        .pop()
        .unwrap()
        .unwrap();
    assert!(kept.write(0, &data(60)));
    rig.rxb
        .queue_response(&rx_rsp(req.id, 0, 60, NetRxFlags::empty()))
        .unwrap();
    rig.push_rx_responses();
    rig.poll_all();
    assert!(
        rig.received.is_empty(),
        "a page the backend can still write is not handed on"
    );
    assert_eq!(rig.front.last_rx_error(), Some(RxError::StillMapped));
    assert_eq!(rig.front.stats().deferred_frees, 1);
    assert_eq!(rig.fe.deferred_frees(), 1);
    // Its id was reposted with a fresh page.
    assert_eq!(rig.front.rx_posted(), 256);
    while rig.rx_available() > 0 {
        let r = rig.rx_take();
        assert_ne!(GrantRef::new(r.gref), gref);
    }
    assert_eq!(rig.sim.grant_stats().freed_while_mapped, 0);
    drop(kept);
    assert_eq!(rig.fe.retry_deferred().pending, 0);
    rig.close();
}

// ---- events ----

#[test]
fn event_storm_gets_spurious_verdicts_and_is_throttled() {
    let mut rig = Rig::new(FrontConfig::default());
    rig.sim.inject_events(D1, rig.tx_port, 20_000).unwrap();
    rig.sim.inject_events(D1, rig.rx_port, 20_000).unwrap();
    assert!(rig.sim.port_stats(D1, rig.rx_port).unwrap().received >= 20_000);
    // The glue feeds each verdict to the late-EOI throttle.
    let mut throttle = Throttle::new(ThrottleConfig::default());
    let mut delayed = 0;
    let mut now = Nanos::ZERO;
    for _ in 0..1000 {
        let tx = rig.tx_event().unwrap();
        let rx = rig.front.rx_event().unwrap();
        assert!(tx.spurious && rx.spurious && tx.done == 0);
        // The next event comes once the port is re-enabled.
        if let Eoi::At(t) = throttle.on_event(now, Outcome::Spurious) {
            delayed += 1;
            now = t;
        }
        now = now.saturating_add(Nanos::from_us(1));
    }
    assert!(delayed > 900, "the flood is throttled ({delayed})");
    assert_eq!(rig.front.stats().spurious_events, 2000);
    // Real work is not spurious, and it still gets through.
    let mut backlog = VecDeque::new();
    rig.front.send(&TxPacket::linear(&data(80)), 5).unwrap();
    rig.front.push_tx().unwrap();
    rig.echo(&mut backlog);
    let tx = rig.tx_event().unwrap();
    assert!(!tx.spurious && tx.done == 1);
    let rx = rig.front.rx_event().unwrap();
    assert!(!rx.spurious && rx.more);
    rig.poll_all();
    assert_eq!(rig.received.len(), 1);
    rig.close();
}

#[test]
fn backend_flooding_a_failed_queue_gets_one_error_then_spurious_events() {
    let mut rig = Rig::new(FrontConfig::default());
    send(&mut rig, 1, 100);
    rig.tx_raw(999, 0);
    rig.push_tx_responses();
    assert!(rig.tx_event().is_err());
    rig.sim.inject_events(D1, rig.tx_port, 5_000).unwrap();
    for _ in 0..5_000 {
        assert!(rig.tx_event().unwrap().spurious);
        assert!(rig.front.rx_event().unwrap().spurious);
    }
    assert_eq!(rig.completions.len(), 1);
    rig.close();
}
