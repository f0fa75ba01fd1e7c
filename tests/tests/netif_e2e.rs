//! The xen-netif frontend engine against a loopback netif backend in the simulator.
//!
//! Every packet sent comes back through the RX ring byte for byte, with its checksum state
//! and GSO; the backend checks the slot layout a Linux netback would check. Grants are
//! counted: nothing may be left granted after a close.

mod netif_harness;

use netif_harness::{Rig, WirePacket, D1};
use std::collections::VecDeque;
use xen_core::feature::netif::Offload;
use xen_netif::{
    FrontConfig, Gso, RxChecksum, RxGso, SendError, TxChecksum, TxFrag, TxLent, TxOutcome, TxPacket,
};
use xen_sys::wire::netif::{ExtraType, GsoType, NetTxFlags, NR_SLOTS_MIN};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn echo_all(rig: &mut Rig) {
    let mut backlog = VecDeque::new();
    for _ in 0..1000 {
        rig.echo(&mut backlog);
        rig.poll_all();
        rig.tx_event().unwrap();
        if backlog.is_empty() && rig.front.tx_outstanding() == 0 {
            return;
        }
    }
    panic!("loopback never drained");
}

#[test]
fn small_packets_loop_back() {
    let mut rig = Rig::new(FrontConfig::default());
    let mut sent = Vec::new();
    for (i, len) in (14..1514).step_by(37).enumerate() {
        let data = pattern(len, i as u8);
        let csum = [
            TxChecksum::None,
            TxChecksum::Partial,
            TxChecksum::Unnecessary,
        ][i % 3];
        let p = TxPacket {
            csum,
            ..TxPacket::linear(&data)
        };
        rig.front.send(&p, i as u64).unwrap();
        sent.push((data, csum));
    }
    rig.front.push_tx().unwrap();
    assert_eq!(
        rig.data_grants(),
        256 + sent.len() as u64,
        "RX buffers + one page per packet"
    );
    echo_all(&mut rig);
    assert_eq!(rig.received.len(), sent.len());
    for (r, (data, csum)) in rig.received.iter().zip(&sent) {
        assert_eq!(&r.data, data);
        assert_eq!(r.frags, 1);
        let want = match csum {
            TxChecksum::None => RxChecksum::None,
            TxChecksum::Partial => RxChecksum::Partial,
            TxChecksum::Unnecessary => RxChecksum::Unnecessary,
        };
        assert_eq!(r.meta.csum, want);
        assert_eq!(r.meta.gso, None);
    }
    assert_eq!(rig.completions.len(), sent.len());
    for (i, c) in rig.completions.iter().enumerate() {
        assert_eq!((c.token, c.outcome), (i as u64, TxOutcome::Okay));
    }
    let s = rig.front.stats();
    assert_eq!(
        (s.tx_packets, s.rx_packets),
        (sent.len() as u64, sent.len() as u64)
    );
    assert_eq!(s.rx_errors, 0);
    // TX grants ended; the RX ring is full of buffers again.
    assert_eq!(rig.front.tx_outstanding(), 0);
    assert_eq!(rig.front.rx_posted(), 256);
    assert_eq!(rig.data_grants(), 256);
    rig.close();
}

#[test]
fn max_mtu_sg_packet_of_head_and_frags() {
    let mut rig = Rig::new(FrontConfig::default());
    let data = pattern(65535, 7);
    // A 54-byte head and 17 frags of up to 4096 bytes, at odd page offsets.
    let (head, rest) = data.split_at(54);
    let frags: Vec<TxFrag<'_>> = rest
        .chunks(3900)
        .enumerate()
        .map(|(i, c)| TxFrag {
            data: c,
            page_offset: 100 * i,
        })
        .collect();
    assert_eq!(frags.len(), 17);
    let p = TxPacket {
        head: TxFrag::new(head),
        frags: &frags,
        csum: TxChecksum::Partial,
        gso: None,
    };
    assert_eq!(p.len(), 65535);
    rig.front.send(&p, 1).unwrap();
    rig.front.push_tx().unwrap();
    let wire = rig.read_tx();
    assert_eq!(wire.len(), 1);
    assert_eq!(wire[0].slots, 16, "packed into 16 pages");
    assert_eq!(wire[0].data, data);
    rig.answer_tx(&wire[0], 0);
    rig.push_tx_responses();
    assert!(rig.rx_send(
        &wire[0].data,
        xen_sys::wire::netif::NetRxFlags::DATA_VALIDATED,
        None
    ));
    rig.push_rx_responses();
    rig.poll_all();
    rig.tx_event().unwrap();
    assert_eq!(rig.received.len(), 1);
    assert_eq!(rig.received[0].data, data);
    assert_eq!(rig.received[0].frags, 16);
    assert_eq!(rig.received[0].meta.slots, 16);
    assert_eq!(rig.completions[0].outcome, TxOutcome::Okay);
    rig.close();
}

#[test]
fn gso_packets_carry_an_extra_slot_both_ways() {
    let mut rig = Rig::new(FrontConfig::default());
    let v4 = pattern(30000, 1);
    let v6 = pattern(9000, 2);
    for (i, (data, ty, mss)) in [(&v4, GsoType::Tcpv4, 1448u16), (&v6, GsoType::Tcpv6, 1428)]
        .into_iter()
        .enumerate()
    {
        let p = TxPacket {
            csum: TxChecksum::Partial,
            gso: Some(Gso { ty, size: mss }),
            ..TxPacket::linear(data)
        };
        rig.front.send(&p, i as u64).unwrap();
    }
    rig.front.push_tx().unwrap();
    let wire = rig.read_tx();
    assert_eq!(wire.len(), 2);
    for (w, (ty, mss, data)) in wire
        .iter()
        .zip([(GsoType::Tcpv4, 1448, &v4), (GsoType::Tcpv6, 1428, &v6)])
    {
        assert!(w
            .flags
            .contains(NetTxFlags::EXTRA_INFO | NetTxFlags::CSUM_BLANK));
        let e = w.gso.expect("GSO slot");
        assert_eq!(ExtraType::try_from(e.ty), Ok(ExtraType::Gso));
        assert_eq!(
            (GsoType::try_from(e.gso_type()), e.gso_size()),
            (Ok(ty), mss)
        );
        assert_eq!(w.slots, data.len().div_ceil(4096) + 1);
        assert_eq!(&w.data, data);
    }
    // The backend answers the extra slots with RSP_NULL; loop them back with GSO.
    let mut backlog: VecDeque<WirePacket> = wire.into_iter().collect();
    for p in backlog.clone() {
        rig.answer_tx(&p, 0);
    }
    rig.push_tx_responses();
    rig.echo(&mut backlog);
    rig.poll_all();
    rig.tx_event().unwrap();
    assert_eq!(rig.completions.len(), 2);
    assert!(rig.completions.iter().all(|c| c.outcome == TxOutcome::Okay));
    assert_eq!(rig.received.len(), 2);
    assert_eq!(rig.received[0].data, v4);
    assert_eq!(
        rig.received[0].meta.gso,
        Some(RxGso {
            ty: GsoType::Tcpv4,
            size: 1448
        })
    );
    assert_eq!(rig.received[0].meta.csum, RxChecksum::Partial);
    assert_eq!(rig.received[1].data, v6);
    assert_eq!(rig.received[1].meta.gso.unwrap().ty, GsoType::Tcpv6);
    assert_eq!(rig.front.stats().tx_gso, 2);
    assert_eq!(rig.front.stats().rx_gso, 2);
    rig.close();
}

#[test]
fn gso_and_size_limits_follow_negotiation() {
    let config = FrontConfig {
        tx: Offload {
            sg: false,
            ..Offload::default()
        },
        ..FrontConfig::default()
    };
    let mut rig = Rig::new(config);
    let big = pattern(4097, 0);
    assert_eq!(
        rig.front.send(&TxPacket::linear(&big), 0),
        Err(SendError::BadLength),
        "no SG: one page at most"
    );
    assert_eq!(
        rig.front.send(&TxPacket::linear(&big[..13]), 0),
        Err(SendError::BadLength)
    );
    let gso = TxPacket {
        csum: TxChecksum::Partial,
        gso: Some(Gso {
            ty: GsoType::Tcpv4,
            size: 1448,
        }),
        ..TxPacket::linear(&big[..4096])
    };
    assert_eq!(rig.front.send(&gso, 0), Err(SendError::BadGso));
    rig.front.send(&TxPacket::linear(&big[..4096]), 0).unwrap();
    let mut rig2 = Rig::new(FrontConfig::default());
    let no_csum = TxPacket {
        csum: TxChecksum::None,
        ..gso
    };
    assert_eq!(rig2.front.send(&no_csum, 0), Err(SendError::BadGso));
    let zero = TxPacket {
        gso: Some(Gso {
            ty: GsoType::Tcpv6,
            size: 0,
        }),
        ..gso
    };
    assert_eq!(rig2.front.send(&zero, 0), Err(SendError::BadGso));
    let too_big = pattern(65536, 0);
    assert_eq!(
        rig2.front.send(&TxPacket::linear(&too_big), 0),
        Err(SendError::BadLength)
    );
    assert_eq!(rig2.front.tx_outstanding(), 0);
    assert_eq!(
        rig2.data_grants(),
        256,
        "nothing granted for refused packets"
    );
    rig.close();
    rig2.close();
}

#[test]
fn packet_needing_linearisation_goes_out_in_few_slots() {
    let mut rig = Rig::new(FrontConfig::default());
    let data = pattern(40 * 200, 9);
    // 40 frags of 200 bytes, each straddling a page boundary: 80 slots where they lie.
    let frags: Vec<TxFrag<'_>> = data[100..]
        .chunks(200)
        .map(|c| TxFrag {
            data: c,
            page_offset: 4000,
        })
        .collect();
    let p = TxPacket {
        head: TxFrag::new(&data[..100]),
        frags: &frags,
        csum: TxChecksum::Partial,
        gso: None,
    };
    assert!(p.in_place_slots() > NR_SLOTS_MIN);
    assert!(p.needs_linearisation());
    rig.front.send(&p, 5).unwrap();
    rig.front.push_tx().unwrap();
    let wire = rig.read_tx();
    assert_eq!(wire[0].slots, 2, "8000 bytes packed into two pages");
    assert!(wire[0].slots <= NR_SLOTS_MIN);
    assert_eq!(wire[0].data, data);
    let mut backlog: VecDeque<WirePacket> = VecDeque::new();
    rig.answer_tx(&wire[0], 0);
    rig.push_tx_responses();
    backlog.push_back(wire[0].clone());
    rig.echo(&mut backlog);
    rig.poll_all();
    assert_eq!(rig.received[0].data, data);
    assert_eq!(rig.front.stats().tx_linearised, 1);
    rig.close();
}

#[test]
fn ring_full_back_pressure_on_tx_and_rx() {
    let mut rig = Rig::new(FrontConfig::default());
    let data = pattern(100, 3);
    // The backend answers nothing: the 256 TX slots fill up.
    let mut sent = 0u64;
    loop {
        match rig.front.send(&TxPacket::linear(&data), sent) {
            Ok(()) => sent += 1,
            Err(SendError::Busy) => break,
            Err(e) => panic!("{e:?}"),
        }
        assert!(sent <= 256);
    }
    assert_eq!(sent, 256);
    assert!(!rig.front.tx_room());
    rig.front.push_tx().unwrap();
    // A spurious TX event changes nothing.
    assert!(rig.tx_event().unwrap().spurious);
    let wire = rig.read_tx();
    assert_eq!(wire.len(), 256);
    // The backend answers half: the queue may wake.
    for p in &wire[..128] {
        rig.answer_tx(p, 0);
    }
    rig.push_tx_responses();
    let p = rig.tx_event().unwrap();
    assert_eq!(p.done, 64, "the TX budget");
    assert!(p.more);
    rig.tx_event().unwrap();
    assert_eq!(rig.completions.len(), 128);
    assert!(rig.front.tx_room());
    rig.front.send(&TxPacket::linear(&data), 999).unwrap();
    rig.front.push_tx().unwrap();
    let late = rig.read_tx();
    assert_eq!(late.len(), 1);
    for p in wire[128..].iter().chain(&late) {
        rig.answer_tx(p, 0);
    }
    rig.push_tx_responses();
    while rig.tx_event().unwrap().more {}
    assert_eq!(rig.completions.len(), 257);
    assert_eq!(rig.completions[256].token, 999);

    // RX: 300 packets for 256 buffers. The backend waits for reposted buffers.
    let mut backlog: VecDeque<WirePacket> = (0..300)
        .map(|i| WirePacket {
            data: pattern(60 + i, i as u8),
            flags: NetTxFlags::empty(),
            gso: None,
            ids: vec![],
            grefs: vec![],
            slots: 1,
        })
        .collect();
    rig.echo(&mut backlog);
    assert_eq!(backlog.len(), 300 - 256);
    let p = rig.poll(16).unwrap();
    assert_eq!((p.done, p.more), (16, true), "NAPI budget");
    rig.poll_all();
    assert_eq!(rig.front.rx_posted(), 256, "buffers reposted");
    rig.echo(&mut backlog);
    assert!(backlog.is_empty());
    rig.poll_all();
    assert_eq!(rig.received.len(), 300);
    for (i, r) in rig.received.iter().enumerate() {
        assert_eq!(r.data, pattern(60 + i, i as u8));
    }
    rig.close();
}

#[test]
fn close_and_reconnect_without_leaking_grants() {
    let mut sim = xen_sim::Sim::new();
    for round in 0..3u64 {
        let mut rig = Rig::on(sim.clone(), FrontConfig::default(), round % 2 == 0);
        let data = pattern(5000, round as u8);
        for t in 0..10 {
            rig.front.send(&TxPacket::linear(&data), t).unwrap();
        }
        rig.front.push_tx().unwrap();
        // Half the packets are answered and looped back; the rest stay in flight.
        let wire = rig.read_tx();
        for p in &wire[..5] {
            rig.answer_tx(p, 0);
        }
        rig.push_tx_responses();
        rig.tx_event().unwrap();
        assert_eq!(rig.completions.len(), 5);
        let mut backlog: VecDeque<WirePacket> = wire[..5].iter().cloned().collect();
        rig.echo(&mut backlog);
        rig.poll(2).unwrap();
        assert!(rig.data_grants() > 0);
        let (s, completions) = rig.close();
        // Every packet completed exactly once: five answered, five aborted by the close.
        let mut tokens: Vec<u64> = completions.iter().map(|c| c.token).collect();
        tokens.sort_unstable();
        assert_eq!(tokens, (0..10).collect::<Vec<_>>());
        assert_eq!(
            completions
                .iter()
                .filter(|c| c.outcome == TxOutcome::Aborted)
                .count(),
            5
        );
        assert_eq!(s.live_grants(D1), 0, "nothing left granted");
        assert_eq!(s.grant_stats().freed_while_granted, 0);
        sim = s;
    }
}

#[test]
fn shared_event_channel_sees_both_rings() {
    let mut rig = Rig::on(xen_sim::Sim::new(), FrontConfig::default(), false);
    assert_eq!(rig.tx_port, rig.rx_port);
    let mut done = Vec::new();
    let p = rig.front.handle_event(|c| done.push(c)).unwrap();
    assert!(p.spurious && !p.more);
    let data = pattern(200, 4);
    rig.front.send(&TxPacket::linear(&data), 77).unwrap();
    rig.front.push_tx().unwrap();
    let mut backlog = VecDeque::new();
    rig.echo(&mut backlog);
    let p = rig.front.handle_event(|c| done.push(c)).unwrap();
    assert_eq!(p.done, 1);
    assert!(p.more, "RX work waits: schedule the poll");
    assert!(!p.spurious);
    assert_eq!(done[0].token, 77);
    rig.poll_all();
    assert_eq!(rig.received[0].data, data);
    let p = rig.front.handle_event(|c| done.push(c)).unwrap();
    assert!(p.spurious);
    rig.close();
}

#[test]
fn reused_tx_pages_carry_only_the_new_packet() {
    let mut rig = Rig::new(FrontConfig::default());
    let big = vec![0xabu8; 3000];
    rig.front.send(&TxPacket::linear(&big), 0).unwrap();
    rig.front.push_tx().unwrap();
    let w = rig.read_tx();
    rig.answer_tx(&w[0], 0);
    rig.push_tx_responses();
    rig.tx_event().unwrap();
    // The next packet reuses that page: past its 100 bytes the page must be zero again.
    let small = vec![0x11u8; 100];
    rig.front.send(&TxPacket::linear(&small), 1).unwrap();
    rig.front.push_tx().unwrap();
    let w2 = rig.read_tx();
    assert_eq!(w2[0].ids, w[0].ids, "the same slot and page are reused");
    let m = rig
        .be
        .map_grants(&[xen_sim::MapOp {
            granter: D1,
            gref: w2[0].grefs[0],
            writable: false,
        }])
        .pop()
        .unwrap()
        .unwrap();
    let mut page = vec![0u8; 4096];
    assert!(m.read(0, &mut page));
    assert!(page[..100].iter().all(|&b| b == 0x11));
    assert!(page[100..].iter().all(|&b| b == 0), "no stale bytes");
    // Granted read-only.
    assert!(rig
        .be
        .map_grants(&[xen_sim::MapOp {
            granter: D1,
            gref: w2[0].grefs[0],
            writable: true,
        }])
        .pop()
        .unwrap()
        .is_err());
    m.unmap();
    assert_eq!(rig.sim.grant_stats().plain_writes_to_granted, 0);
    rig.close();
}

#[test]
fn pages_the_glue_takes_are_its_own_and_replaced() {
    let mut rig = Rig::new(FrontConfig::default());
    let d = pattern(1000, 8);
    let req = rig.rx_data(0, &d, xen_sys::wire::netif::NetRxFlags::empty());
    rig.push_rx_responses();
    let allocs = rig.front.stats().page_allocs;
    let mut taken = Vec::new();
    let p = rig
        .front
        .poll(64, |p| {
            assert_eq!(p.frag_count(), 1);
            let (page, offset, len) = p.take_page(0).unwrap();
            assert_eq!((offset, len), (0, 1000));
            taken.push(page);
            // Still described after it was taken, but no longer there to copy.
            let (page, offset, len) = p.frag(0).unwrap();
            assert!(page.is_none());
            assert_eq!((offset, len), (0, 1000));
            assert_eq!(p.copy_to(&mut [0u8; 1000]), Some(0));
            assert!(p.take_page(0).is_none());
        })
        .unwrap();
    assert_eq!(p.done, 1);
    let mut b = vec![0u8; 1000];
    taken[0].read(0, &mut b);
    assert_eq!(b, d);
    // Its grant is gone (the reference may already name a fresh buffer): 256 buffers are
    // granted, and none of them is the taken page.
    assert_eq!(rig.data_grants(), 256);
    if let Some(Ok(m)) = rig
        .be
        .map_grants(&[xen_sim::MapOp {
            granter: D1,
            gref: xen_sys::GrantRef::new(req.gref),
            writable: false,
        }])
        .pop()
    {
        let mut seen = vec![0u8; 1000];
        assert!(m.read(0, &mut seen));
        assert_ne!(seen, d, "the reference no longer reaches the taken page");
        m.unmap();
    }
    // The id was reposted with a fresh page.
    assert_eq!(rig.front.rx_posted(), 256);
    assert_eq!(rig.front.stats().page_allocs, allocs + 1);
    drop(taken);
    rig.close();
}

#[test]
fn lent_packet_goes_out_in_place_without_a_copy() {
    let mut rig = Rig::new(FrontConfig::default());
    // A GSO packet as an skb may lie: a 54-byte head near a page end, a 61000-byte frag
    // from a page start, a 4000-byte frag across a page end. 1 + 15 + 2 = 18 pieces, the most
    // that is lent.
    let data = pattern(54 + 61000 + 4000, 3);
    let parts = [
        (&data[..54], 4000),
        (&data[54..61054], 0),
        (&data[61054..], 2000),
    ];
    let mut mem = Vec::new();
    let mut pieces = Vec::new();
    for (bytes, offset) in parts {
        let (m, p) = rig.lend(bytes, offset);
        mem.push(m);
        pieces.extend(p);
    }
    assert_eq!(pieces.len(), NR_SLOTS_MIN);
    let gso = Some(Gso {
        ty: GsoType::Tcpv4,
        size: 1448,
    });
    rig.front
        .send_lent(&pieces, TxChecksum::Partial, gso, 77)
        .unwrap();
    // A small one in a single page.
    let small = pattern(60, 9);
    let (small_mem, small_pieces) = rig.lend(&small, 4000);
    assert_eq!(small_pieces.len(), 1);
    rig.front
        .send_lent(&small_pieces, TxChecksum::None, None, 78)
        .unwrap();
    rig.front.push_tx().unwrap();
    assert_eq!(
        rig.data_grants(),
        256 + 19,
        "one grant per piece, no page of ours"
    );
    let wire = rig.read_tx();
    assert_eq!(wire.len(), 2);
    assert_eq!(
        wire[0].data, data,
        "the backend reads the lent frames in place"
    );
    assert_eq!(
        wire[0].slots,
        NR_SLOTS_MIN + 1,
        "18 data slots and the GSO slot"
    );
    assert_eq!(wire[0].gso.map(|g| g.ty), Some(ExtraType::Gso as u8));
    assert_eq!(wire[1].data, small);
    for w in &wire {
        rig.answer_tx(w, 0);
    }
    rig.push_tx_responses();
    rig.tx_event().unwrap();
    let done: Vec<_> = rig
        .completions
        .iter()
        .map(|c| (c.token, c.len, c.outcome, c.still_mapped))
        .collect();
    assert_eq!(
        done,
        vec![
            (77, data.len() as u32, TxOutcome::Okay, false),
            (78, 60, TxOutcome::Okay, false)
        ]
    );
    let s = rig.front.stats();
    assert_eq!(s.copied_bytes, 0);
    assert_eq!(s.lent_bytes, (data.len() + 60) as u64);
    assert_eq!(
        s.page_allocs, 256,
        "RX buffers only: lending allocates nothing"
    );
    assert_eq!(
        rig.data_grants(),
        256,
        "every lent grant ended at its completion"
    );
    // Copied and lent packets share the ids: a copied one after them still works.
    rig.front.send(&TxPacket::linear(&small), 79).unwrap();
    rig.front.push_tx().unwrap();
    let w = rig.read_tx();
    assert_eq!(w[0].data, small);
    drop((mem, small_mem));
    rig.close();
}

#[test]
fn lent_layouts_that_cannot_go_in_place_are_refused_untouched() {
    let mut rig = Rig::new(FrontConfig::default());
    let mem = rig.fe.alloc_pages(19);
    let piece = |i: usize, offset: u16, len: u16| TxLent {
        gfn: mem.frame(i).unwrap(),
        offset,
        len,
    };
    let too_many: Vec<TxLent> = (0..NR_SLOTS_MIN + 1).map(|i| piece(i, 0, 100)).collect();
    let cases: Vec<(&str, Vec<TxLent>, SendError)> = vec![
        ("no piece", vec![], SendError::BadLayout),
        ("19 pieces", too_many, SendError::BadLayout),
        (
            "crossing the page end",
            vec![piece(0, 4000, 97)],
            SendError::BadLayout,
        ),
        (
            "an empty piece",
            vec![piece(0, 0, 60), piece(1, 0, 0)],
            SendError::BadLayout,
        ),
        (
            "shorter than a header",
            vec![piece(0, 0, 13)],
            SendError::BadLayout,
        ),
        (
            "a header split across pieces",
            vec![piece(0, 4090, 6), piece(1, 0, 100)],
            SendError::BadLayout,
        ),
    ];
    for (what, pieces, want) in cases {
        assert_eq!(
            rig.front.send_lent(&pieces, TxChecksum::None, None, 1),
            Err(want),
            "{what}"
        );
    }
    let gso = Some(Gso {
        ty: GsoType::Tcpv4,
        size: 1448,
    });
    assert_eq!(
        rig.front
            .send_lent(&[piece(0, 0, 100)], TxChecksum::None, gso, 1),
        Err(SendError::BadGso),
        "GSO without a partial checksum"
    );
    // Nothing was granted or queued by any of them.
    assert_eq!(rig.data_grants(), 256);
    rig.front.push_tx().unwrap();
    assert!(rig.read_tx().is_empty());
    // Without SG a lent packet must fit a page, as a copied one.
    let mut rig2 = Rig::on(
        rig.close().0,
        FrontConfig {
            tx: Offload::default(),
            ..FrontConfig::default()
        },
        true,
    );
    let mem2 = rig2.fe.alloc_pages(2);
    let two = [
        TxLent {
            gfn: mem2.frame(0).unwrap(),
            offset: 0,
            len: 4096,
        },
        TxLent {
            gfn: mem2.frame(1).unwrap(),
            offset: 0,
            len: 1,
        },
    ];
    assert_eq!(
        rig2.front.send_lent(&two, TxChecksum::None, None, 1),
        Err(SendError::BadLength)
    );
    rig2.close();
}

#[test]
fn lent_and_copied_packets_fill_the_ring_and_drain() {
    let mut rig = Rig::new(FrontConfig::default());
    let mut kept = Vec::new();
    let mut sent = Vec::new();
    let mut token = 0u64;
    // Alternate lent and copied packets until the queue says stop.
    while rig.front.tx_room() {
        let d = pattern(1000 + (token as usize * 97) % 9000, token as u8);
        if token % 2 == 0 {
            let (mem, pieces) = rig.lend(&d, (token as usize * 613) % 4096);
            rig.front
                .send_lent(&pieces, TxChecksum::Partial, None, token)
                .unwrap();
            kept.push(mem);
        } else {
            rig.front
                .send(
                    &TxPacket {
                        csum: TxChecksum::Partial,
                        ..TxPacket::linear(&d)
                    },
                    token,
                )
                .unwrap();
        }
        sent.push(d);
        token += 1;
    }
    assert!(token > 20, "the ring took many packets ({token})");
    rig.front.push_tx().unwrap();
    echo_all(&mut rig);
    let got: Vec<&Vec<u8>> = rig.received.iter().map(|r| &r.data).collect();
    assert_eq!(got, sent.iter().collect::<Vec<_>>());
    assert_eq!(rig.completions.len(), sent.len());
    assert!(rig
        .completions
        .iter()
        .all(|c| c.outcome == TxOutcome::Okay && !c.still_mapped));
    assert_eq!(rig.data_grants(), 256);
    drop(kept);
    rig.close();
}

/// Receive buffers from a platform that recycles them (a page pool): a page it reports as
/// clean is posted as it is, one it does not is cleared first, so the backend never sees
/// bytes the platform did not vouch for.
#[test]
fn recycled_rx_pages_are_cleared_unless_the_platform_vouches_for_them() {
    use xen_sim::traits::RxRecycle;
    use xen_sim::Sim;
    for clean in [false, true] {
        let sim = Sim::new();
        sim.create_domain(1)
            .recycle_rx_pages(Some(RxRecycle { fill: 0xa5, clean }));
        let mut rig = Rig::on(sim, FrontConfig::default(), true);
        let posted = rig.rx_available();
        assert!(posted > 0);
        for _ in 0..posted {
            let req = rig.rx_take();
            let m = rig.map(xen_sys::GrantRef::new(req.gref), true);
            let mut page = vec![0u8; 4096];
            assert!(m.read(0, &mut page));
            let want = if clean { 0xa5 } else { 0 };
            assert!(
                page.iter().all(|&b| b == want),
                "clean={clean}: buffer {} holds other bytes",
                req.id
            );
        }
    }
}
