//! The xen-netif frontend with its id tables on the heap, as a kernel module must keep them: end to end against the loopback backend, the refusal of bad tables, and the size of what stays inline.

mod netif_harness;

use netif_harness::{HeapRx, HeapTx, Rig, WirePacket, D0, D1};
use std::collections::VecDeque;
use xen_core::platform::RingMemory;
use xen_netif::{
    FrontConfig, Gso, NetFront, RxEntry, SendError, TxChecksum, TxEntry, TxFrag, TxOutcome,
    TxPacket, RING_SLOTS,
};
use xen_ring::{GeometryError, RingError};
use xen_sim::{Domain, Pages, Sim};
use xen_sys::wire::netif::GsoType;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

/// Tables filled one entry at a time, as the kernel glue fills a `KVec`.
fn heap_tables(n: usize) -> (HeapTx, HeapRx) {
    let mut tx = Vec::with_capacity(n);
    let mut rx = Vec::with_capacity(n);
    for _ in 0..n {
        tx.push(TxEntry::new());
        rx.push(RxEntry::new());
    }
    (tx, rx)
}

fn heap_rig(sim: Sim) -> Rig<HeapTx, HeapRx> {
    let (tx, rx) = heap_tables(RING_SLOTS);
    Rig::with_tables(sim, FrontConfig::default(), tx, rx)
}

fn echo_all(rig: &mut Rig<HeapTx, HeapRx>) {
    let mut backlog = VecDeque::new();
    for _ in 0..1000 {
        rig.echo(&mut backlog);
        while rig.poll(64).unwrap().more {}
        let out = &mut rig.completions;
        while rig.front.tx_event(|c| out.push(c)).unwrap().more {}
        if backlog.is_empty() && rig.front.tx_outstanding() == 0 {
            return;
        }
    }
    panic!("loopback never drained");
}

#[test]
fn heap_tables_run_end_to_end() {
    let mut sim = Sim::new();
    // Two connections on the same simulator: nothing of the first may stay granted.
    for round in 0..2u8 {
        let mut rig = heap_rig(sim);
        assert_eq!(rig.front.rx_posted(), 256);
        assert_eq!(rig.data_grants(), 256, "RX buffers granted");
        let mut sent = Vec::new();
        // Linear packets with each checksum state, a 64 KiB packet of 17 fragments and two
        // GSO packets.
        for (i, len) in (14..3000).step_by(211).enumerate() {
            let data = pattern(len, round.wrapping_add(i as u8));
            let csum = [
                TxChecksum::None,
                TxChecksum::Partial,
                TxChecksum::Unnecessary,
            ][i % 3];
            let p = TxPacket {
                csum,
                ..TxPacket::linear(&data)
            };
            rig.front.send(&p, sent.len() as u64).unwrap();
            sent.push(data);
        }
        let big = pattern(65535, round);
        let (head, rest) = big.split_at(54);
        let frags: Vec<TxFrag<'_>> = rest
            .chunks(3900)
            .enumerate()
            .map(|(i, c)| TxFrag {
                data: c,
                page_offset: 100 * i,
            })
            .collect();
        let p = TxPacket {
            head: TxFrag::new(head),
            frags: &frags,
            csum: TxChecksum::Partial,
            gso: None,
        };
        rig.front.send(&p, sent.len() as u64).unwrap();
        sent.push(big.clone());
        for (ty, mss, len) in [(GsoType::Tcpv4, 1448, 30000), (GsoType::Tcpv6, 1428, 9000)] {
            let data = pattern(len, mss as u8);
            let p = TxPacket {
                csum: TxChecksum::Partial,
                gso: Some(Gso { ty, size: mss }),
                ..TxPacket::linear(&data)
            };
            rig.front.send(&p, sent.len() as u64).unwrap();
            sent.push(data);
        }
        rig.front.push_tx().unwrap();
        echo_all(&mut rig);
        assert_eq!(rig.received.len(), sent.len());
        for (r, data) in rig.received.iter().zip(&sent) {
            assert_eq!(&r.data, data);
        }
        assert_eq!(rig.completions.len(), sent.len());
        for (i, c) in rig.completions.iter().enumerate() {
            assert_eq!((c.token, c.outcome), (i as u64, TxOutcome::Okay));
            assert_eq!(c.len as usize, sent[i].len());
        }
        assert_eq!(rig.front.stats().tx_gso, 2);
        assert_eq!(rig.front.stats().rx_gso, 2);

        // Back-pressure: with nothing answered the 256 TX ids run out, and come back.
        let small = pattern(60, 1);
        let mut queued = 0u64;
        loop {
            match rig.front.send(&TxPacket::linear(&small), 1000 + queued) {
                Ok(()) => queued += 1,
                Err(SendError::Busy) => break,
                Err(e) => panic!("{e:?}"),
            }
            assert!(queued <= 256);
        }
        assert_eq!(queued, 256);
        assert!(!rig.front.tx_room());
        rig.front.push_tx().unwrap();
        // Half are answered; the rest are in flight at the close.
        let wire: Vec<WirePacket> = rig.read_tx();
        for p in &wire[..128] {
            rig.answer_tx(p, 0);
        }
        rig.push_tx_responses();
        let out = &mut rig.completions;
        while rig.front.tx_event(|c| out.push(c)).unwrap().more {}
        assert_eq!(rig.front.tx_outstanding(), 128);
        assert!(rig.front.tx_room());

        let (s, completions) = rig.close();
        let aborted = completions
            .iter()
            .filter(|c| c.outcome == TxOutcome::Aborted)
            .count();
        assert_eq!(aborted, 128, "each packet in flight reported once");
        assert_eq!(s.live_grants(D1), 0, "nothing left granted");
        assert_eq!(s.grant_stats().freed_while_granted, 0);
        sim = s;
    }
}

/// Builds a front with the given tables over fresh (ungranted) rings; the rejection must
/// come before anything is granted or notified.
fn try_tables<const N: usize>(tx: HeapTx, rx: HeapRx) -> Result<(), RingError> {
    let sim = Sim::new();
    let fe = sim.create_domain(1);
    let tx_ring = fe.alloc_ring(1).unwrap();
    let rx_ring = fe.alloc_ring(1).unwrap();
    let port = fe.alloc_unbound(D0).unwrap();
    let r = NetFront::<Domain, Pages, N, HeapTx, HeapRx>::with_tables(
        fe.clone(),
        tx_ring,
        rx_ring,
        D0,
        (port, port),
        FrontConfig::default(),
        tx,
        rx,
    )
    .map(drop);
    assert_eq!(sim.live_grants(D1), 0);
    r
}

#[test]
fn rejects_tables_of_the_wrong_length() {
    let bad = |len| Err(RingError::Geometry(GeometryError::BadLength(len)));
    for (ntx, nrx, want) in [
        (255, 256, bad(255)),
        (257, 256, bad(257)),
        (0, 256, bad(0)),
        (256, 255, bad(255)),
        (256, 1024, bad(1024)),
        (256, 0, bad(0)),
    ] {
        let (tx, _) = heap_tables(ntx);
        let (_, rx) = heap_tables(nrx);
        assert_eq!(try_tables::<256>(tx, rx), want, "{ntx} TX, {nrx} RX");
    }
    // Tables of N entries are the only ones taken, whatever N is.
    let (tx, rx) = heap_tables(64);
    assert_eq!(try_tables::<64>(tx, rx), Ok(()));
    let (tx, rx) = heap_tables(256);
    assert_eq!(try_tables::<64>(tx, rx), bad(256));
    // N itself out of range: refused however long the tables are.
    let (tx, rx) = heap_tables(300);
    assert_eq!(
        try_tables::<300>(tx, rx),
        Err(RingError::Geometry(GeometryError::BadEntry))
    );
}

// (A table whose entries are not empty cannot be built outside the crate: `TxEntry::new`
// and `RxEntry::new` are the only constructors. xen-netif's unit tests check the refusal of
// each way an entry can hold something: `front::tests::rejects_table_not_empty`.)

#[test]
fn engine_without_tables_is_small() {
    type HeapFront = NetFront<Domain, Pages, RING_SLOTS, HeapTx, HeapRx>;
    type InlineFront = NetFront<Domain, Pages>;
    let heap = core::mem::size_of::<HeapFront>();
    let inline = core::mem::size_of::<InlineFront>();
    let (tx, rx) = (
        core::mem::size_of::<TxEntry<Pages>>(),
        core::mem::size_of::<RxEntry<Pages>>(),
    );
    println!(
        "NetFront<Domain, Pages, 256>: {heap} bytes with heap tables, {inline} inline \
         (TxEntry {tx} bytes, RxEntry {rx} bytes)"
    );
    // What a kernel module builds on its stack before boxing it: well under a page.
    assert!(heap < 2048, "NetFront without its tables is {heap} bytes");
    assert!(inline > 256 * (tx + rx));
}
