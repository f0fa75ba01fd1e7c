//! The xen-netif control-ring frontend against a well-behaved backend in the simulator.
//!
//! The backend ([`Model`]) answers as `io/netif.h` says and keeps what it was told; each test
//! then checks the backend's state (algorithm, flags, key, table), steers packets with it,
//! and counts grants: keys and tables are granted read-only, and nothing is left granted
//! after a close.

mod netif_ctrl_harness;

use netif_ctrl_harness::{configured, CtrlRig, Model, D1};
use xen_netif::ctrl::{
    default_queue, toeplitz, CtrlOutcome, HashConfig, HashInput, Step, DEFAULT_KEY,
    MAX_MAPPING_ENTRIES,
};
use xen_sim::MapOp;
use xen_sys::wire::netif::{CtrlStatus, CtrlType, HashAlgorithm, HashFlags};

/// Pseudo-random IPv4 TCP flows.
fn flows(n: usize) -> Vec<HashInput> {
    let mut x = 0x9e37_79b9u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let src = x.to_be_bytes();
            let ports = ((x >> 3) as u16, 443);
            HashInput::ipv4(src, [10, 0, 0, 1], Some(ports))
        })
        .collect()
}

#[test]
fn toeplitz_hashing_configured_on_a_netback_like_backend() {
    let mut rig = CtrlRig::new(HashConfig::new(4));
    assert!(!rig.notified());
    rig.front.start().unwrap();
    assert!(rig.notified(), "the first request is notified");
    let mut model = Model::netback(4);
    let rounds = model.serve(&mut rig);
    assert_eq!(rounds, 7);
    let setup = configured(&rig);
    assert_eq!(setup.flags, HashFlags::all());
    assert_eq!(setup.offered, HashFlags::all());
    assert_eq!((setup.key_len, setup.mapping_entries), (40, 128));

    // The requests, in order, with fresh ids and unused words zero.
    let types: Vec<u16> = rig.seen.iter().map(|r| r.ty).collect();
    assert_eq!(
        types,
        [
            CtrlType::SetHashAlgorithm,
            CtrlType::GetHashFlags,
            CtrlType::SetHashKey,
            CtrlType::GetHashMappingSize,
            CtrlType::SetHashMappingSize,
            CtrlType::SetHashMapping,
            CtrlType::SetHashFlags,
        ]
        .map(u16::from)
    );
    let ids: Vec<u16> = rig.seen.iter().map(|r| r.id).collect();
    assert_eq!(ids, (0..7).collect::<Vec<u16>>());
    assert_eq!(rig.seen[0].data, [1, 0, 0]);
    assert_eq!(rig.seen[1].data, [0, 0, 0]);
    assert_eq!(&rig.seen[2].data[1..], &[40, 0]);
    assert_eq!(rig.seen[3].data, [0, 0, 0]);
    assert_eq!(rig.seen[4].data, [128, 0, 0]);
    assert_eq!(&rig.seen[5].data[1..], &[128, 0]);
    assert_eq!(rig.seen[6].data, [0xf, 0, 0]);

    // What the backend holds.
    assert_eq!(model.algorithm, HashAlgorithm::Toeplitz);
    assert_eq!(model.flags, HashFlags::all());
    assert_eq!(model.key, DEFAULT_KEY);
    let want: Vec<u32> = (0..128).map(|i| default_queue(i, 4)).collect();
    assert_eq!(model.mapping, want);
    assert_eq!(
        model.pages_read_only,
        [true, true],
        "key and table read-only"
    );

    // Steering: the Toeplitz hash picks the table entry, and every queue gets flows.
    let mut per_queue = [0u32; 4];
    for f in flows(4000) {
        let q = model.queue_of(HashFlags::IPV4_TCP, f.as_bytes()).unwrap();
        let h = toeplitz(&DEFAULT_KEY, f.as_bytes());
        assert_eq!(q, default_queue(h % 128, 4));
        per_queue[q as usize] += 1;
    }
    for (q, n) in per_queue.iter().enumerate() {
        assert!(*n > 800, "queue {q} gets {n} of 4000 flows");
    }
    // Microsoft's first IPv4 TCP vector (hash 0x51ccc178) lands on entry 0x78 = 120: queue 0.
    let v = HashInput::ipv4([66, 9, 149, 187], [161, 142, 100, 80], Some((2794, 1766)));
    assert_eq!(model.queue_of(HashFlags::IPV4_TCP, v.as_bytes()), Some(0));

    // Nothing granted but the ring; no page held; later events find nothing.
    assert_eq!(rig.page_grants(), 0);
    assert_eq!(rig.front.pages_held(), 0);
    let s = rig.front.stats();
    assert_eq!((s.requests, s.responses), (7, 7));
    assert_eq!((s.grants, s.grant_ends, s.deferred_frees), (2, 2, 0));
    assert_eq!(
        s.page_allocs, 1,
        "the key's page is reused (zeroed) for the table"
    );
    assert!(s.notifications >= 1 && s.notifications <= 7);
    assert!(rig.event().unwrap().spurious);
    rig.close();
}

#[test]
fn table_page_holds_nothing_but_the_table() {
    // A 2-entry table after a 40-byte key: the page is zeroed between the two.
    let config = HashConfig {
        mapping_entries: 2,
        ..HashConfig::new(2)
    };
    let mut rig = CtrlRig::started(config);
    let mut model = Model::netback(2);
    let mut table_page = None;
    while rig.front.outcome().is_none() {
        rig.take_requests();
        let req = rig.pending.pop_front().unwrap();
        if req.ty == u16::from(CtrlType::SetHashMapping) {
            table_page = rig.read_granted(xen_sys::GrantRef::new(req.data[0]), 4096);
        }
        let (status, data) = model.handle(&rig, &req);
        rig.answer(&req, status, data);
        rig.push();
        rig.event().unwrap();
    }
    let page = table_page.expect("a table was sent");
    assert_eq!(&page[..8], &[0, 0, 0, 0, 1, 0, 0, 0]);
    assert!(page[8..].iter().all(|&b| b == 0), "no stale key bytes");
    assert_eq!(configured(&rig).mapping_entries, 2);
    rig.close();
}

#[test]
fn one_queue_sets_key_and_flags_only() {
    let mut rig = CtrlRig::started(HashConfig::new(1));
    let mut model = Model::netback(1);
    assert_eq!(model.serve(&mut rig), 4);
    let setup = configured(&rig);
    assert_eq!(setup.mapping_entries, 0);
    assert!(model.mapping.is_empty());
    assert_eq!(model.key, DEFAULT_KEY);
    // Every packet still gets its hash (for the stack), and queue 0.
    let f = &flows(1)[0];
    assert_eq!(model.queue_of(HashFlags::IPV4_TCP, f.as_bytes()), Some(0));
    rig.close();
}

#[test]
fn backend_with_small_tables_gets_modulo_steering() {
    let mut rig = CtrlRig::started(HashConfig::new(4));
    let mut model = Model {
        max_mapping: 3,
        ..Model::netback(4)
    };
    assert_eq!(model.serve(&mut rig), 5, "no table size, no table");
    assert_eq!(configured(&rig).mapping_entries, 0);
    for f in flows(100) {
        let h = toeplitz(&DEFAULT_KEY, f.as_bytes());
        assert_eq!(
            model.queue_of(HashFlags::IPV4_TCP, f.as_bytes()),
            Some(h % 4)
        );
    }
    rig.close();
}

#[test]
fn largest_table_fits_one_page() {
    let config = HashConfig {
        mapping_entries: MAX_MAPPING_ENTRIES,
        ..HashConfig::new(3)
    };
    let mut rig = CtrlRig::started(config);
    let mut model = Model {
        max_mapping: 4096,
        ..Model::netback(3)
    };
    model.serve(&mut rig);
    assert_eq!(configured(&rig).mapping_entries, 1024);
    let want: Vec<u32> = (0..1024).map(|i| i % 3).collect();
    assert_eq!(model.mapping, want);
    rig.close();
}

#[test]
fn only_offered_types_are_hashed() {
    let mut rig = CtrlRig::started(HashConfig::new(2));
    let mut model = Model {
        offered: (HashFlags::IPV4 | HashFlags::IPV6_TCP).bits(),
        ..Model::netback(2)
    };
    model.serve(&mut rig);
    assert_eq!(
        configured(&rig).flags,
        HashFlags::IPV4 | HashFlags::IPV6_TCP
    );
    assert_eq!(model.flags, HashFlags::IPV4 | HashFlags::IPV6_TCP);
    rig.close();
}

#[test]
fn backend_without_hashing_ends_refused_and_untouched() {
    let mut rig = CtrlRig::started(HashConfig::new(4));
    let req = rig.next_request();
    rig.answer(&req, CtrlStatus::NotSupported, 0);
    rig.push();
    assert_eq!(rig.event().unwrap().done, 1);
    assert_eq!(
        rig.front.outcome(),
        Some(CtrlOutcome::Refused {
            step: Step::SetAlgorithm,
            status: CtrlStatus::NotSupported
        })
    );
    assert_eq!(rig.take_requests(), 0, "nothing to reset");
    rig.close();
}

#[test]
fn refused_key_resets_the_algorithm() {
    let mut rig = CtrlRig::started(HashConfig::new(4));
    let mut model = Model {
        max_key: 16,
        ..Model::netback(4)
    };
    model.serve(&mut rig);
    assert_eq!(
        rig.front.outcome(),
        Some(CtrlOutcome::Refused {
            step: Step::SetKey,
            status: CtrlStatus::BufferOverflow
        })
    );
    let last = rig.seen.last().unwrap();
    assert_eq!(
        (last.ty, last.data),
        (u16::from(CtrlType::SetHashAlgorithm), [0, 0, 0])
    );
    assert_eq!(model.algorithm, HashAlgorithm::None);
    assert_eq!(model.flags, HashFlags::empty(), "hashing never turned on");
    assert_eq!(rig.page_grants(), 0);
    rig.close();
}

#[test]
fn key_page_still_mapped_after_its_answer_is_deferred_never_reused() {
    let mut rig = CtrlRig::started(HashConfig::new(2));
    let mut model = Model::netback(2);
    let mut kept = None;
    let mut key_gref = None;
    while rig.front.outcome().is_none() {
        rig.take_requests();
        let req = rig.pending.pop_front().unwrap();
        if req.ty == u16::from(CtrlType::SetHashKey) {
            // The backend keeps the key page mapped past its answer.
            let g = xen_sys::GrantRef::new(req.data[0]);
            kept = Some(rig.map(g, false).unwrap());
            key_gref = Some(g);
        }
        if req.ty == u16::from(CtrlType::SetHashMapping) {
            assert_ne!(Some(req.data[0]), key_gref.map(|g| g.raw()));
        }
        let (status, data) = model.handle(&rig, &req);
        rig.answer(&req, status, data);
        rig.push();
        rig.event().unwrap();
    }
    configured(&rig);
    let s = rig.front.stats();
    assert_eq!(s.deferred_frees, 1);
    assert_eq!(s.page_allocs, 2, "a fresh page for the table");
    assert_eq!(rig.fe.deferred_frees(), 1);
    // The key page is still granted, unchanged, while mapped.
    let mut b = [0u8; 40];
    assert!(kept.as_ref().unwrap().read(0, &mut b));
    assert_eq!(b, DEFAULT_KEY);
    kept.unwrap().unmap();
    rig.fe.retry_deferred();
    assert_eq!(rig.fe.deferred_frees(), 0);
    assert_eq!(rig.page_grants(), 0);
    rig.close();
}

#[test]
fn close_mid_sequence_revokes_the_page_and_ends_closed() {
    let mut rig = CtrlRig::started(HashConfig::new(2));
    let mut model = Model::netback(2);
    // Algorithm and flags answered; the key request is outstanding.
    for _ in 0..2 {
        let req = rig.next_request();
        let (status, data) = model.handle(&rig, &req);
        rig.answer(&req, status, data);
        rig.push();
        rig.event().unwrap();
    }
    let req = rig.next_request();
    assert_eq!(req.ty, u16::from(CtrlType::SetHashKey));
    assert!(rig.front.is_waiting());
    let kept = rig
        .be
        .map_grants(&[MapOp {
            granter: D1,
            gref: xen_sys::GrantRef::new(req.data[0]),
            writable: false,
        }])
        .pop()
        .unwrap()
        .unwrap();
    rig.front.close();
    assert_eq!(
        rig.front.outcome(),
        Some(CtrlOutcome::Failed(xen_netif::ctrl::Error::Closed))
    );
    assert_eq!(rig.front.stats().deferred_frees, 1);
    // The late answer is not looked at.
    rig.answer(&req, CtrlStatus::Success, 0);
    rig.push();
    assert!(rig.event().unwrap().spurious);
    assert_eq!(rig.take_requests(), 0);
    kept.unmap();
    rig.close();
}
