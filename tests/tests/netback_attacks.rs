//! A hostile netif frontend against the xen-netif backend engine (`NetBack`), one test per
//! attack (XSA-423/432/448 malformed TX layouts, XSA-392 a stalled RX ring, event storms,
//! slots rewritten after publish, grant failures).
//!
//! The frontend is the test: it writes raw TX slots and RX requests on rings it granted, and
//! grants (or withholds) data pages as it likes. Each test checks that the attack happened,
//! then that the backend answered what it should, stayed bounded, and left nothing mapped.

mod netback_harness;

use netback_harness::{collect, Raw, SimPacket, D1};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use xen_evtchn::{Eoi, Nanos, Outcome, Throttle, ThrottleConfig};
use xen_netif::back::Error;
use xen_netif::{BackConfig, Carrier, RxRefused, TxDrop, TxFault};
use xen_sys::wire::netif::{
    ExtraFlags, ExtraInfo, ExtraType, GsoType, NetTxFlags, RxResponse, RSP_ERROR, RSP_NULL,
    RSP_OKAY,
};
use xen_sys::GrantRef;

const MORE: u16 = NetTxFlags::MORE_DATA.bits();
const EXTRA: u16 = NetTxFlags::EXTRA_INFO.bits();

/// Queues a chain of `n` data slots (all the same granted page, 100 bytes each) for a packet
/// of `n * 100` bytes, ids from `id0`.
fn chain(raw: &mut Raw, n: u16, id0: u16) {
    let g = raw.page(0, &[0x5a; 4096]);
    for i in 0..n {
        let size = if i == 0 { n * 100 } else { 100 };
        let flags = if i + 1 < n { MORE } else { 0 };
        raw.slot(g, 0, size, flags, id0 + i);
    }
}

/// A good one-slot packet of `len` bytes; returns its bytes.
fn good(raw: &mut Raw, len: u16, id: u16) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    let g = raw.page(10, &data);
    raw.slot(g, 10, len, 0, id);
    data
}

fn assert_healthy(raw: &mut Raw) {
    let data = good(raw, 300, 4000);
    raw.publish();
    let (r, got) = raw.serve();
    r.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, data);
    if let Some(t) = got[0].token {
        raw.back.tx_release(t).unwrap();
    }
    assert_eq!(raw.tx_responses(), vec![(4000, RSP_OKAY)]);
}

#[test]
fn too_many_slots_is_fatal() {
    let mut raw = Raw::new(BackConfig::default());
    chain(&mut raw, 21, 0);
    raw.publish();
    let (r, got) = raw.serve();
    assert_eq!(r, Err(Error::Fault(TxFault::TooManySlots)));
    assert!(got.is_empty());
    assert!(raw.back.is_failed());
    assert_eq!(raw.data_maps(), 0);
    // The queue is dead: later events are spurious and read nothing.
    good(&mut raw, 100, 50);
    raw.publish();
    let (r, got) = raw.serve();
    assert_eq!(r, Err(Error::Failed));
    assert!(got.is_empty());
    assert_eq!(raw.back.stats().spurious_events, 1);
}

#[test]
fn fatal_skb_slots_is_configurable_and_clamped() {
    let mut raw = Raw::new(BackConfig {
        fatal_skb_slots: 30,
        ..BackConfig::default()
    });
    chain(&mut raw, 30, 0);
    raw.publish();
    let (r, _) = raw.serve();
    r.unwrap();
    assert_eq!(raw.back.last_tx_drop(), Some(TxDrop::TooManySlots));
    let mut raw = Raw::new(BackConfig {
        fatal_skb_slots: 5,
        ..BackConfig::default()
    });
    chain(&mut raw, 18, 0);
    raw.publish();
    let (r, got) = raw.serve();
    r.unwrap();
    assert_eq!(got.len(), 1, "clamped up to 18: 18 slots are a packet");
}

#[test]
fn nineteen_and_twenty_slots_are_dropped_with_an_error_per_slot() {
    let mut raw = Raw::new(BackConfig::default());
    chain(&mut raw, 19, 0);
    chain(&mut raw, 20, 100);
    raw.publish();
    let (r, got) = raw.serve();
    r.unwrap();
    assert!(got.is_empty());
    let rsps = raw.tx_responses();
    assert_eq!(rsps.len(), 39, "every slot answered once");
    assert!(rsps.iter().all(|&(_, s)| s == RSP_ERROR));
    let mut ids: Vec<u16> = rsps.iter().map(|r| r.0).collect();
    ids.sort_unstable();
    let mut want: Vec<u16> = (0..19).chain(100..120).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(raw.back.stats().tx_dropped, 2);
    assert_eq!(
        raw.sim.grant_stats().maps,
        2,
        "nothing but the rings was mapped"
    );
    assert_healthy(&mut raw);
}

#[test]
fn eighteen_slots_are_a_packet() {
    let mut raw = Raw::new(BackConfig::default());
    chain(&mut raw, 18, 0);
    raw.publish();
    let (r, got) = raw.serve();
    r.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, vec![0x5a; 1800]);
    raw.back.tx_release(got[0].token.unwrap()).unwrap();
    let rsps = raw.tx_responses();
    assert_eq!(rsps.len(), 18);
    assert!(rsps.iter().all(|&(_, s)| s == RSP_OKAY));
    assert_eq!(raw.data_maps(), 0);
}

#[test]
fn zero_length_frag_is_skipped_not_handed_over() {
    let mut raw = Raw::new(BackConfig::default());
    let a = raw.page(0, &[1; 1000]);
    let b = raw.page(0, &[2; 1000]);
    let c = raw.page(0, &[3; 500]);
    // 1000 (first) + 0 + 500 + 0 bytes.
    raw.slot(a, 0, 1500, MORE, 1);
    raw.slot(b, 0, 0, MORE, 2);
    raw.slot(c, 0, 500, MORE, 3);
    raw.slot(b, 0, 0, 0, 4);
    raw.publish();
    let (r, got) = raw.serve();
    r.unwrap();
    assert_eq!(got.len(), 1);
    let mut want = vec![1u8; 1000];
    want.extend([3u8; 500]);
    assert_eq!(got[0].data, want);
    assert_eq!(got[0].frags, 2, "the first slot's rest and the 500 bytes");
    raw.back.tx_release(got[0].token.unwrap()).unwrap();
    let mut rsps = raw.tx_responses();
    rsps.sort_unstable();
    assert_eq!(
        rsps,
        vec![(1, RSP_OKAY), (2, RSP_OKAY), (3, RSP_OKAY), (4, RSP_OKAY)]
    );
    // A first slot with no data of its own: the head comes from the next slot.
    raw.slot(a, 0, 500, MORE, 5);
    raw.slot(c, 0, 500, 0, 6);
    raw.publish();
    let (r, got) = raw.serve();
    r.unwrap();
    assert_eq!(got[0].data, vec![3u8; 500]);
    assert_eq!(got[0].head, 128, "the header split across slots is whole");
    raw.back.tx_release(got[0].token.unwrap()).unwrap();
    assert_eq!(raw.tx_responses().len(), 2);
    assert_eq!(raw.data_maps(), 0);
}

#[test]
fn oversized_packet_frags_past_first_size_are_dropped() {
    let mut raw = Raw::new(BackConfig::default());
    let g = raw.page(0, &[7; 4096]);
    // The first slot says 1000 bytes; the frags carry 1200.
    raw.slot(g, 0, 1000, MORE, 1);
    raw.slot(g, 0, 600, MORE, 2);
    raw.slot(g, 0, 600, 0, 3);
    raw.publish();
    let (r, got) = raw.serve();
    r.unwrap();
    assert!(got.is_empty());
    assert_eq!(
        raw.back.last_tx_drop(),
        Some(TxDrop::Oversized {
            size: 600,
            left: 400
        })
    );
    assert_eq!(
        raw.tx_responses(),
        vec![(1, RSP_ERROR), (2, RSP_ERROR), (3, RSP_ERROR)]
    );
    // Shorter than an Ethernet header.
    raw.slot(g, 0, 13, 0, 9);
    raw.publish();
    raw.serve().0.unwrap();
    assert_eq!(raw.back.last_tx_drop(), Some(TxDrop::TooShort(13)));
    assert_eq!(raw.tx_responses(), vec![(9, RSP_ERROR)]);
    assert_healthy(&mut raw);
}

#[test]
fn offset_past_page_is_fatal() {
    let mut raw = Raw::new(BackConfig::default());
    let g = raw.page(0, &[7; 4096]);
    raw.slot(g, 0, 300, MORE, 1);
    raw.slot(g, 4000, 200, 0, 2);
    raw.publish();
    let (r, got) = raw.serve();
    assert_eq!(
        r,
        Err(Error::Fault(TxFault::OutsidePage {
            offset: 4000,
            size: 200
        }))
    );
    assert!(got.is_empty());
    assert!(raw.back.is_failed());
    assert_eq!(raw.data_maps(), 0);
    assert_eq!(raw.sim.grant_stats().copies, 0, "nothing was copied");
}

#[test]
fn first_slot_past_page_is_fatal() {
    let mut raw = Raw::new(BackConfig::default());
    let g = raw.page(0, &[7; 4096]);
    raw.slot(g, 4090, 100, 0, 1);
    raw.publish();
    assert_eq!(
        raw.serve().0,
        Err(Error::Fault(TxFault::OutsidePage {
            offset: 4090,
            size: 100
        }))
    );
}

#[test]
fn incomplete_chain_is_fatal() {
    let mut raw = Raw::new(BackConfig::default());
    let g = raw.page(0, &[7; 4096]);
    raw.slot(g, 0, 300, MORE, 1);
    raw.publish();
    assert_eq!(raw.serve().0, Err(Error::Fault(TxFault::Incomplete)));
}

#[test]
fn bogus_extra_info_type_is_fatal() {
    for (ty, fault) in [
        (0u8, TxFault::BadExtraType(0)),
        (5, TxFault::BadExtraType(5)),
        (0xff, TxFault::BadExtraType(0xff)),
    ] {
        let mut raw = Raw::new(BackConfig::default());
        let g = raw.page(0, &[7; 4096]);
        raw.slot(g, 0, 300, EXTRA, 1);
        let mut e = ExtraInfo::ZERO;
        e.ty = ty;
        raw.raw_slot(e.to_bytes());
        raw.publish();
        assert_eq!(raw.serve().0, Err(Error::Fault(fault)));
    }
}

#[test]
fn bogus_gso_extra_is_fatal_and_unoffered_gso_dropped() {
    let mut raw = Raw::new(BackConfig::default());
    let g = raw.page(0, &[7; 4096]);
    raw.slot(g, 0, 300, EXTRA, 1);
    raw.raw_slot(ExtraInfo::gso(0, GsoType::Tcpv4, 0, ExtraFlags::empty()).to_bytes());
    raw.publish();
    assert_eq!(
        raw.serve().0,
        Err(Error::Fault(TxFault::BadGso { ty: 1, size: 0 }))
    );

    let mut config = BackConfig::default();
    config.tx.gso_tcpv6 = false;
    let mut raw = Raw::new(config);
    let g = raw.page(0, &[7; 4096]);
    raw.slot(g, 0, 300, EXTRA, 1);
    raw.raw_slot(ExtraInfo::gso(1400, GsoType::Tcpv6, 0, ExtraFlags::empty()).to_bytes());
    raw.publish();
    raw.serve().0.unwrap();
    assert_eq!(
        raw.back.last_tx_drop(),
        Some(TxDrop::GsoNotOffered(GsoType::Tcpv6))
    );
    assert_eq!(raw.tx_responses(), vec![(1, RSP_ERROR), (0, RSP_NULL)]);
    assert_healthy(&mut raw);
}

#[test]
fn extra_info_flood_is_fatal() {
    let mut raw = Raw::new(BackConfig::default());
    let g = raw.page(0, &[7; 4096]);
    raw.slot(g, 0, 300, EXTRA, 1);
    // Every extra says another follows: the second GSO slot is a duplicate.
    for _ in 0..100 {
        raw.raw_slot(ExtraInfo::gso(1400, GsoType::Tcpv4, 0, ExtraFlags::MORE).to_bytes());
    }
    raw.publish();
    assert_eq!(raw.serve().0, Err(Error::Fault(TxFault::DuplicateExtra(1))));
    assert_eq!(
        raw.back.stats().tx_slots,
        3,
        "read no further than the bad slot"
    );
}

#[test]
fn multicast_requests_reach_the_glue_and_are_answered() {
    let mut raw = Raw::new(BackConfig::default());
    let g = raw.page(0, &[0; 16]);
    raw.slot(g, 0, 0, EXTRA, 1);
    let addr = [0x01, 0x00, 0x5e, 0, 0, 0xfb];
    raw.raw_slot(ExtraInfo::mcast(ExtraType::McastAdd, addr, ExtraFlags::empty()).to_bytes());
    raw.publish();
    let mut got = Vec::new();
    let mut mcast = Vec::new();
    raw.back.tx_event(collect(&mut got, &mut mcast)).unwrap();
    assert!(got.is_empty());
    assert_eq!(mcast.len(), 1);
    assert!(mcast[0].add);
    assert_eq!(mcast[0].addr, addr);
    assert_eq!(raw.tx_responses(), vec![(1, RSP_OKAY), (0, RSP_NULL)]);
}

#[test]
fn slots_rewritten_after_publish_copy_once() {
    let mut raw = Raw::new(BackConfig::default());
    let a = raw.page(0, &[1; 4096]);
    let b = raw.page(0, &[2; 4096]);
    // 4000 bytes: 3000 in the first slot, 1000 in the second.
    raw.slot(a, 0, 4000, MORE, 11);
    raw.slot(b, 0, 1000, 0, 12);
    raw.publish();
    // While the engine holds the packet, the frontend rewrites both slots: a huge size, a
    // chain that goes on, other ids and grants. Nothing of it may be seen.
    let pages = raw.tx_pages.clone();
    let mut got = Vec::new();
    let r = raw.back.tx_event(|ev| {
        if let xen_netif::TxEvent::Packet(p) = ev {
            for slot in 0..2 {
                let mut evil = xen_sys::wire::netif::TxRequest::ZERO;
                evil.gref = 0xdead;
                evil.offset = 4000;
                evil.size = 0xffff;
                evil.flags = MORE | EXTRA;
                evil.id = 0xbad;
                pages.write(64 + 12 * slot, &evil.to_bytes());
            }
            got.push(netback_harness::got(p));
        }
    });
    r.unwrap();
    assert_eq!(got.len(), 1);
    let mut want = vec![1u8; 3000];
    want.extend([2u8; 1000]);
    assert!(got[0].data == want, "the bytes of the slots as read");
    // Release answers the ids that were read, not the ones rewritten.
    raw.back.tx_release(got[0].token.unwrap()).unwrap();
    let mut rsps = raw.tx_responses();
    rsps.sort_unstable();
    assert_eq!(rsps, vec![(11, RSP_OKAY), (12, RSP_OKAY)]);
    // The ring goes on from where it was: the rewritten slots are not read again.
    assert_healthy(&mut raw);
    assert_eq!(raw.back.stats().tx_slots, 3);
}

#[test]
fn map_failure_becomes_error_responses() {
    let mut raw = Raw::new(BackConfig::default());
    let a = raw.page(0, &[1; 4096]);
    let b = raw.page(0, &[2; 4096]);
    raw.sim.fail_map(D1, b, 1);
    raw.slot(a, 0, 3000, MORE, 1);
    raw.slot(b, 0, 1000, 0, 2);
    raw.publish();
    let (r, got) = raw.serve();
    r.unwrap();
    assert!(got.is_empty());
    assert_eq!(raw.tx_responses(), vec![(1, RSP_ERROR), (2, RSP_ERROR)]);
    assert_eq!(raw.back.stats().tx_grant_errors, 1);
    assert_eq!(raw.data_maps(), 0, "the slot that did map is unmapped");
    assert_eq!(raw.back.tx_in_flight(), 0);
    assert_healthy(&mut raw);
}

#[test]
fn copy_of_an_ungranted_page_becomes_an_error_response() {
    for zero_copy in [true, false] {
        let mut raw = Raw::new(BackConfig {
            zero_copy,
            ..BackConfig::default()
        });
        raw.slot(GrantRef::new(7777), 0, 100, 0, 1);
        raw.publish();
        raw.serve().0.unwrap();
        assert_eq!(raw.tx_responses(), vec![(1, RSP_ERROR)]);
        assert_healthy(&mut raw);
    }
}

#[test]
fn mapped_frags_in_flight_are_bounded_by_the_table() {
    // A table of 40 entries: two packets of 18 mapped slots fit, the third waits.
    let mut raw = Raw::with(BackConfig::default(), 40, 8);
    for k in 0..3u16 {
        let g = raw.page(0, &[k as u8; 4096]);
        for i in 0..18u16 {
            let size = if i == 0 { 18 * 1000 } else { 1000 };
            raw.slot(g, 0, size, if i < 17 { MORE } else { 0 }, k * 100 + i);
        }
    }
    raw.publish();
    let (r, got) = raw.serve();
    let p = r.unwrap();
    assert_eq!(got.len(), 2);
    assert!(!p.spurious && !p.more);
    assert!(raw.back.tx_stalled());
    assert_eq!(raw.back.tx_in_flight(), 36);
    assert_eq!(raw.data_maps(), 36);
    raw.back.tx_release(got[0].token.unwrap()).unwrap();
    // A second release of the same token does nothing.
    assert!(!raw.back.tx_release(got[0].token.unwrap()).unwrap());
    let (r, got2) = raw.serve();
    r.unwrap();
    assert_eq!(got2.len(), 1);
    for t in [got[1].token, got2[0].token] {
        raw.back.tx_release(t.unwrap()).unwrap();
    }
    assert_eq!(raw.tx_responses().len(), 54);
    assert_eq!(raw.data_maps(), 0);
    assert_eq!(raw.back.stats().tx_max_in_flight, 36);
}

#[test]
fn tx_producer_overflow_is_fatal() {
    let mut raw = Raw::new(BackConfig::default());
    // req_prod far past what the ring holds.
    raw.tx_pages.write(0, &1000u32.to_ne_bytes());
    let (r, _) = raw.serve();
    assert!(matches!(r, Err(Error::Ring(_))), "{r:?}");
    assert!(raw.back.is_failed());
}

#[test]
fn stalled_frontend_stops_posting_rx_buffers_bounded() {
    let config = BackConfig {
        rx_queue_max_bytes: 64 * 1024,
        ..BackConfig::default()
    };
    let mut raw = Raw::with(config, 256, 1024);
    let freed = Arc::new(AtomicUsize::new(0));
    raw.post_rx(4);
    let data = vec![0x77u8; 1500];
    let mut queued = 0usize;
    let mut refused = 0usize;
    // The guest posts 4 buffers and stops; dom0 keeps sending.
    for i in 0..1000u64 {
        let p = SimPacket::new(&raw.be, &data, 4096, 0).counted(&freed);
        match raw.back.rx_queue(p, Nanos::from_ms(i)) {
            Ok(()) => queued += 1,
            Err((_, RxRefused::Full)) => refused += 1,
            Err((_, why)) => panic!("{why:?}"),
        }
        raw.back.rx_work().unwrap();
        assert!(
            raw.back.rx_queued_bytes() <= 64 * 1024,
            "queued memory bounded"
        );
    }
    assert_eq!(raw.rx_responses().len(), 4);
    assert!(refused > 900, "{refused}");
    assert_eq!(raw.back.rx_queued(), queued - 4);
    assert_eq!(raw.back.rx_queued(), 64 * 1024 / 1500);
    // Before the stall timeout the carrier stays on; after it, off.
    assert_eq!(raw.back.rx_tick(Nanos::from_ms(5_000)), Carrier::Unchanged);
    assert_eq!(raw.back.rx_tick(Nanos::from_ms(65_001)), Carrier::Off);
    assert!(raw.back.rx_stalled());
    // Off: everything queued was there for more than the drain timeout, and is gone.
    assert_eq!(raw.back.rx_queued(), 0);
    assert_eq!(raw.back.rx_queued_bytes(), 0);
    assert_eq!(freed.load(Ordering::SeqCst), 1000, "every packet let go of");
    let p = SimPacket::new(&raw.be, &data, 4096, 0);
    assert!(matches!(
        raw.back.rx_queue(p, Nanos::from_ms(65_002)),
        Err((_, RxRefused::Stalled))
    ));
    assert_eq!(raw.back.stats().rx_stalls, 1);
    assert!(raw.back.stats().rx_expired > 0);
    // The guest posts again: the carrier comes back.
    raw.post_rx(64);
    raw.back.rx_event().unwrap();
    assert_eq!(raw.back.rx_tick(Nanos::from_ms(66_000)), Carrier::On);
    let p = SimPacket::new(&raw.be, &data, 4096, 0);
    raw.back.rx_queue(p, Nanos::from_ms(66_001)).unwrap();
    raw.back.rx_work().unwrap();
    let rsps = raw.rx_responses();
    assert_eq!(rsps.len(), 1);
    assert_eq!(RxResponse::from_bytes(&rsps[0]).status, 1500);
}

#[test]
fn drain_timeout_drops_old_packets_without_a_stall() {
    let mut raw = Raw::new(BackConfig::default());
    let data = vec![1u8; 100];
    for i in 0..3 {
        let p = SimPacket::new(&raw.be, &data, 4096, 0);
        raw.back.rx_queue(p, Nanos::from_ms(i * 1000)).unwrap();
    }
    raw.back.rx_work().unwrap();
    assert_eq!(raw.back.rx_tick(Nanos::from_ms(11_500)), Carrier::Unchanged);
    assert_eq!(raw.back.rx_queued(), 1, "two were older than 10 s");
    assert_eq!(raw.back.stats().rx_expired, 2);
}

#[test]
fn rx_copy_into_a_bogus_buffer_is_an_error_response() {
    let mut raw = Raw::new(BackConfig::default());
    // A request naming a grant the frontend never made.
    let mut r = xen_sys::wire::netif::RxRequest::ZERO;
    r.id = 5;
    r.gref = 9999;
    raw.rx.queue_request(&r.to_bytes()).unwrap();
    let _ = raw.rx.push_requests().unwrap();
    let p = SimPacket::new(&raw.be, &[3u8; 200], 4096, 0);
    raw.back.rx_queue(p, Nanos::ZERO).unwrap();
    raw.back.rx_work().unwrap();
    let rsps = raw.rx_responses();
    let rsp = RxResponse::from_bytes(&rsps[0]);
    assert_eq!((rsp.id, rsp.status), (5, RSP_ERROR));
    assert_eq!(raw.back.stats().rx_copy_errors, 1);
}

#[test]
fn event_storm_is_spurious_and_throttled() {
    let mut raw = Raw::new(BackConfig::default());
    let mut throttle = Throttle::new(ThrottleConfig::default());
    let mut delayed = 0;
    let before = raw.sim.grant_stats();
    for i in 0..10_000u64 {
        let p = raw
            .back
            .handle_event(|_| panic!("nothing to deliver"))
            .unwrap();
        assert!(p.spurious && !p.more && p.done == 0);
        let outcome = if p.spurious {
            Outcome::Spurious
        } else {
            Outcome::Work
        };
        if let Eoi::At(_) = throttle.on_event(Nanos::from_us(i), outcome) {
            delayed += 1;
        }
    }
    let s = raw.back.stats();
    assert_eq!((s.events, s.spurious_events), (10_000, 10_000));
    assert_eq!(s.notifications, 0, "a storm makes the backend send nothing");
    assert!(
        delayed > 9_000,
        "the late EOI throttles the port: {delayed}"
    );
    let after = raw.sim.grant_stats();
    assert_eq!(before.copies, after.copies);
    assert_eq!(before.maps, after.maps);
    // Work ends the spurious run.
    assert_healthy(&mut raw);
}

#[test]
fn rx_event_with_fresh_buffers_is_not_spurious() {
    let mut raw = Raw::new(BackConfig::default());
    assert!(raw.back.rx_event().unwrap().spurious);
    raw.post_rx(8);
    assert!(!raw.back.rx_event().unwrap().spurious);
    assert!(
        raw.back.rx_event().unwrap().spurious,
        "the same buffers again"
    );
}

#[test]
fn rx_gso_extra_only_for_types_the_frontend_asked_for() {
    let mut config = BackConfig::default();
    config.rx.gso_tcpv6 = false;
    let mut raw = Raw::new(config);
    raw.post_rx(16);
    let data: Vec<u8> = (0..9000).map(|i| i as u8).collect();
    for ty in [GsoType::Tcpv4, GsoType::Tcpv6] {
        let p = SimPacket::new(&raw.be, &data, 4096, 0).with(
            xen_netif::TxChecksum::Partial,
            Some(xen_netif::Gso { ty, size: 1448 }),
        );
        raw.back.rx_queue(p, Nanos::ZERO).unwrap();
    }
    raw.back.rx_work().unwrap();
    let rsps = raw.rx_responses();
    // TCPv4: three data slots and the GSO slot after the first; TCPv6 dropped.
    assert_eq!(rsps.len(), 4);
    let first = RxResponse::from_bytes(&rsps[0]);
    assert_ne!(
        first.flags & xen_sys::wire::netif::NetRxFlags::EXTRA_INFO.bits(),
        0
    );
    let e = ExtraInfo::from_bytes(&rsps[1]);
    assert_eq!((e.ty, e.gso_type(), e.gso_size()), (1, 1, 1448));
    assert_eq!(raw.back.stats().rx_dropped, 1);
}

#[test]
fn deferred_notifications_are_collected_for_the_glue() {
    let mut raw = Raw::new(BackConfig {
        defer_notify: true,
        ..BackConfig::default()
    });
    good(&mut raw, 100, 1);
    raw.publish();
    raw.serve().0.unwrap();
    let n = raw.back.take_notifications();
    assert!(n.tx.is_some(), "the frontend asked for the response");
    assert_eq!(raw.back.take_notifications(), Default::default());
    let port = raw.fport;
    assert_eq!(
        raw.sim.port_stats(D1, port).map_or(0, |s| s.received),
        0,
        "nothing sent by the engine"
    );
}
