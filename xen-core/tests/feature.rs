//! Feature negotiation end to end through XenStore, and properties of the negotiation.

mod common;

use common::FakeXenstored;
use proptest::prelude::*;
use xen_core::feature::{blkif, netif, FeatureError, StoreDir};
use xen_core::xs::{with_transaction, Client, Path, TxId};
use xen_sys::{GrantRef, Port};

#[test]
fn blkif_handshake_through_xenstore() {
    let mut xs: Client<FakeXenstored> = Client::new(FakeXenstored::new());
    let back_dir = Path::new("/local/domain/0/backend/vbd/1/768").unwrap();
    let front_dir = Path::new("/local/domain/1/device/vbd/768").unwrap();
    let offer = blkif::BackOffer {
        max_ring_page_order: 5,
        max_queues: 2,
        persistent: true,
    };

    // Backend publishes its offer in one transaction.
    with_transaction(&mut xs, 4, |s, tx| {
        offer.write(&mut StoreDir::new(s, back_dir, tx))
    })
    .unwrap();

    // Frontend reads it, negotiates, publishes its request and rings.
    let seen = blkif::BackOffer::read(&mut StoreDir::new(&mut xs, back_dir, TxId::NONE)).unwrap();
    assert_eq!(seen, offer);
    let req = blkif::FrontRequest::negotiate(&blkif::FrontLimits::default(), &seen);
    assert_eq!(
        (req.ring_page_order, req.num_queues, req.persistent),
        (4, 2, true)
    );
    {
        let mut dir = StoreDir::new(&mut xs, front_dir, TxId::NONE);
        req.write(&mut dir).unwrap();
        for q in 0..2 {
            let refs: Vec<GrantRef> = (0..16).map(|i| GrantRef::new(8 + 16 * q + i)).collect();
            blkif::write_queue(&mut dir, &req, q, &refs, Port::new(10 + q)).unwrap();
        }
    }

    // Backend validates the request against its offer and reads the rings.
    let mut dir = StoreDir::new(&mut xs, front_dir, TxId::NONE);
    let got = blkif::FrontRequest::read(&mut dir, &offer).unwrap();
    assert_eq!(got, req);
    let q1 = blkif::read_queue(&mut dir, &got, 1).unwrap();
    assert_eq!(q1.refs().len(), 16);
    assert_eq!(q1.refs()[15], GrantRef::new(8 + 16 + 15));
    assert_eq!(q1.port, Port::new(11));
}

#[test]
fn feature_writes_retry_on_eagain() {
    let mut xs: Client<FakeXenstored> = Client::new(FakeXenstored::new());
    xs.transport_mut().eagain_commits = 2;
    let dir = Path::new("/be").unwrap();
    let offer = netif::BackOffer::default();
    with_transaction(&mut xs, 4, |s, tx| {
        offer.write(&mut StoreDir::new(s, dir, tx))
    })
    .unwrap();
    assert_eq!(
        netif::BackOffer::read(&mut StoreDir::new(&mut xs, dir, TxId::NONE)),
        Ok(offer)
    );
    xs.transport_mut().eagain_commits = 100;
    let r = with_transaction(&mut xs, 3, |s, tx| {
        offer.write(&mut StoreDir::new(s, dir, tx))
    });
    assert_eq!(
        r,
        Err(FeatureError::Store(xen_core::xs::Error::TooManyRetries))
    );
}

#[test]
fn overlong_peer_value_is_malformed() {
    let mut xs: Client<FakeXenstored> = Client::new(FakeXenstored::new());
    let dir = Path::new("/be").unwrap();
    xs.write(
        TxId::NONE,
        Path::new("/be/max-ring-page-order").unwrap(),
        &[b'1'; 3000],
    )
    .unwrap();
    assert_eq!(
        blkif::BackOffer::read(&mut StoreDir::new(&mut xs, dir, TxId::NONE)),
        Err(FeatureError::Malformed("max-ring-page-order"))
    );
}

fn arb_blk_offer() -> impl Strategy<Value = blkif::BackOffer> {
    (0u32..40, 0u32..100, any::<bool>()).prop_map(|(o, q, p)| blkif::BackOffer {
        max_ring_page_order: if o > 30 { u32::MAX - o } else { o },
        max_queues: q,
        persistent: p,
    })
}

fn arb_net_offload() -> impl Strategy<Value = netif::Offload> {
    any::<[bool; 5]>().prop_map(|b| netif::Offload {
        sg: b[0],
        gso_tcpv4: b[1],
        gso_tcpv6: b[2],
        ipv4_csum: b[3],
        ipv6_csum: b[4],
    })
}

proptest! {
    /// Whatever the backend offers and we allow, the request is within bounds and the backend
    /// accepts exactly it.
    #[test]
    fn blkif_request_always_acceptable(offer in arb_blk_offer(), lo in 0u32..10, lq in 0u32..100, lp in any::<bool>()) {
        let mut k = StoreMap::default();
        offer.write(&mut k).unwrap();
        let seen = blkif::BackOffer::read(&mut k).unwrap();
        let limits = blkif::FrontLimits { max_ring_page_order: lo, max_queues: lq, persistent: lp, max_indirect_segments: 32 };
        let req = blkif::FrontRequest::negotiate(&limits, &seen);
        prop_assert!(req.ring_page_order <= blkif::MAX_RING_PAGE_ORDER.min(lo).min(offer.max_ring_page_order));
        prop_assert!(req.num_queues >= 1 && req.num_queues <= lq.max(1).min(offer.max_queues.max(1)).max(1));
        // The frontend announces its own wish; the backend reads what both want.
        prop_assert_eq!(req.persistent, lp);
        let mut front = StoreMap::default();
        req.write(&mut front).unwrap();
        let read = blkif::FrontRequest::read(&mut front, &seen);
        prop_assert_eq!(read, Ok(blkif::FrontRequest { persistent: lp && offer.persistent, ..req }));
    }

    #[test]
    fn netif_request_always_acceptable(
        ours in arb_net_offload(), theirs in arb_net_offload(),
        split in any::<[bool; 2]>(), mq in 0u32..100, lq in 0u32..100,
    ) {
        let offer = netif::BackOffer { offload: theirs, split_event_channels: split[0], max_queues: mq, ..netif::BackOffer::default() };
        let mut k = StoreMap::default();
        offer.write(&mut k).unwrap();
        let seen = netif::BackOffer::read(&mut k).unwrap();
        let limits = netif::FrontLimits { max_queues: lq, split_event_channels: split[1], offload: ours, ..netif::FrontLimits::default() };
        let (req, front_tx) = netif::FrontRequest::negotiate(&limits, &seen).unwrap();
        prop_assert!(req.num_queues >= 1);
        prop_assert_eq!(req.split_event_channels, split[0] && split[1]);
        let mut front = StoreMap::default();
        req.write(&mut front).unwrap();
        for q in 0..req.num_queues {
            let channels = if req.split_event_channels {
                netif::Channels::Split { tx: Port::new(1 + q), rx: Port::new(100 + q) }
            } else {
                netif::Channels::Shared(Port::new(1 + q))
            };
            let rings = netif::QueueRings { tx_ref: GrantRef::new(8), rx_ref: GrantRef::new(9), channels };
            netif::write_queue(&mut front, &req, q, &rings).unwrap();
        }
        let (got, back_tx) = netif::FrontRequest::read(&mut front, &seen).unwrap();
        prop_assert_eq!(got.num_queues, req.num_queues);
        prop_assert_eq!(got.offload, ours);
        // Each side only sends what the other said it can receive.
        prop_assert_eq!(front_tx, netif::Offload::both(ours, theirs));
        prop_assert_eq!(back_tx, netif::Offload::both(theirs, ours));
        for q in 0..req.num_queues {
            prop_assert!(netif::read_queue(&mut front, &got, q).is_ok());
        }
    }

    /// Reading any bytes as any key never panics and never yields a value out of bounds.
    #[test]
    fn arbitrary_peer_values_are_bounded(key in 0usize..6, value in proptest::collection::vec(any::<u8>(), 0..80)) {
        let keys = ["max-ring-page-order", "multi-queue-max-queues", "feature-persistent",
                    "ring-page-order", "multi-queue-num-queues", "feature-max-indirect-segments"];
        let mut k = StoreMap::default();
        k.0.insert(keys[key].to_string(), value);
        if let Ok(o) = blkif::BackOffer::read(&mut k) {
            prop_assert!(blkif::FrontRequest::negotiate(&blkif::FrontLimits::default(), &o).ring_page_order <= 4);
        }
        if let Ok(r) = blkif::FrontRequest::read(&mut k, &blkif::BackOffer::default()) {
            prop_assert!(r.ring_page_order <= 4 && r.num_queues == 1);
        }
    }
}

/// Keys in a map (the crate's own test helper is private to its unit tests).
#[derive(Default)]
struct StoreMap(std::collections::BTreeMap<String, Vec<u8>>);

impl xen_core::feature::Keys for StoreMap {
    fn read<'b>(
        &mut self,
        key: &str,
        buf: &'b mut [u8],
    ) -> Result<Option<&'b [u8]>, xen_core::xs::Error> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => {
                let dst = buf.get_mut(..v.len()).ok_or(xen_core::xs::Error::NoSpace)?;
                dst.copy_from_slice(v);
                Ok(Some(dst))
            }
        }
    }
}

impl xen_core::feature::KeysMut for StoreMap {
    fn write(&mut self, key: &str, value: &[u8]) -> Result<(), xen_core::xs::Error> {
        self.0.insert(key.to_string(), value.to_vec());
        Ok(())
    }
}

fn keys(pairs: &[(&str, &str)]) -> StoreMap {
    StoreMap(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec()))
            .collect(),
    )
}

#[test]
fn backend_offer_from_module_parameters_follows_linux() {
    // max_queues = 0: one per online CPU.
    let o = blkif::BackOffer::from_params(0, 4, true, 2);
    assert_eq!(
        (o.max_queues, o.max_ring_page_order, o.persistent),
        (2, 4, true)
    );
    // Never more queues than CPUs, never fewer than one, the order capped.
    assert_eq!(blkif::BackOffer::from_params(8, 9, false, 2).max_queues, 2);
    assert_eq!(
        blkif::BackOffer::from_params(8, 9, false, 2).max_ring_page_order,
        4
    );
    assert_eq!(blkif::BackOffer::from_params(1, 0, false, 0).max_queues, 1);
    assert_eq!(
        blkif::BackOffer::from_params(0, 0, false, 1000).max_queues,
        blkif::MAX_QUEUES
    );
}

#[test]
fn frontend_limits_from_module_parameters() {
    let l = blkif::FrontLimits::from_params(256, 4, 9, true, 2, 64);
    assert_eq!(
        l.max_indirect_segments, 64,
        "capped at what the engine's slots hold"
    );
    assert_eq!(l.max_queues, 2, "capped at the CPUs");
    assert_eq!(l.max_ring_page_order, 4);
    assert_eq!(
        blkif::FrontLimits::from_params(32, 0, 0, false, 2, 64).max_queues,
        1
    );
}

/// A Linux backend states `feature-persistent` only before Connected: a frontend that
/// negotiated on the InitWait offer alone would never ask for persistent grants.
#[test]
fn frontend_announces_its_persistent_wish_and_uses_the_backends_later_answer() {
    let offer_without = blkif::BackOffer::read(&mut keys(&[("max-ring-page-order", "4")])).unwrap();
    let limits = blkif::FrontLimits::default();
    let req = blkif::FrontRequest::negotiate(&limits, &offer_without);
    assert!(req.persistent);
    let mut front = StoreMap::default();
    req.write(&mut front).unwrap();
    assert_eq!(
        front.0.get("feature-persistent").map(Vec::as_slice),
        Some(&b"1"[..])
    );
    let disk = |p: &str| {
        blkif::DiskInfo::read(&mut keys(&[
            ("sectors", "8"),
            ("info", "0"),
            ("sector-size", "512"),
            ("feature-persistent", p),
        ]))
        .unwrap()
        .0
    };
    assert!(blkif::DiskParams::negotiate(&limits, &disk("1"), None).persistent);
    assert!(!blkif::DiskParams::negotiate(&limits, &disk("0"), None).persistent);
    let off = blkif::FrontLimits {
        persistent: false,
        ..limits
    };
    assert!(!blkif::DiskParams::negotiate(&off, &disk("1"), None).persistent);
}

/// The backend takes the layout from the request it validated, and reads it once.
#[test]
fn backend_reads_the_protocol_with_the_request() {
    let offer = blkif::BackOffer::default();
    let read = |p: Option<&str>| {
        let mut k = keys(&[]);
        if let Some(p) = p {
            k.0.insert("protocol".into(), p.as_bytes().to_vec());
        }
        blkif::FrontRequest::read(&mut k, &offer).map(|r| r.protocol)
    };
    assert_eq!(read(None), Ok(blkif::Protocol::Native));
    assert_eq!(read(Some("x86_64-abi")), Ok(blkif::Protocol::Native));
    assert_eq!(read(Some("x86_32-abi")), Ok(blkif::Protocol::X86_32));
    assert_eq!(
        read(Some("arm-abi")),
        Err(FeatureError::Unsupported("protocol"))
    );
    assert_eq!(
        read(Some(&"x".repeat(300))),
        Err(FeatureError::Unsupported("protocol"))
    );
}

#[test]
fn backend_disk_keys_as_the_toolstack_writes_them() {
    assert_eq!(
        blkif::BackendDisk::read(&mut keys(&[("mode", "w")])),
        Ok(None)
    );
    let d = blkif::BackendDisk::read(&mut keys(&[
        ("physical-device", "fe:1a"),
        ("mode", "w"),
        ("device-type", "cdrom"),
        ("discard-enable", "0"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(
        d,
        blkif::BackendDisk {
            major: 0xfe,
            minor: 0x1a,
            writable: true,
            cdrom: true,
            discard: false
        }
    );
    // Defaults: read-only, a disk, discard on.
    let d = blkif::BackendDisk::read(&mut keys(&[("physical-device", "7:0")]))
        .unwrap()
        .unwrap();
    assert_eq!((d.writable, d.cdrom, d.discard), (false, false, true));
    assert_eq!(
        blkif::BackendDisk::read(&mut keys(&[("physical-device", "7:0"), ("mode", "r")]))
            .unwrap()
            .map(|d| d.writable),
        Some(false)
    );
}

#[test]
fn malformed_physical_device_is_refused() {
    for bad in [
        "", "7", ":", "7:", ":0", "g:0", "+7:0", "7:-1", "1000:0", "7:100000", "7:0:0", "7 :0",
    ] {
        assert_eq!(
            blkif::parse_physical_device(bad.as_bytes()),
            None,
            "{bad:?}"
        );
        assert_eq!(
            blkif::BackendDisk::read(&mut keys(&[("physical-device", bad)])),
            Err(FeatureError::Malformed("physical-device")),
            "{bad:?}"
        );
    }
    assert_eq!(
        blkif::parse_physical_device(b"fff:fffff"),
        Some((0xfff, 0xfffff))
    );
    assert_eq!(blkif::parse_physical_device(b"8:10\n"), Some((8, 0x10)));
    assert_eq!(blkif::parse_physical_device(b" 8:10 "), Some((8, 0x10)));
}

fn facts() -> blkif::DeviceFacts {
    blkif::DeviceFacts {
        sectors: 2048,
        logical_block_size: 512,
        physical_block_size: 4096,
        opened_writable: true,
        read_only: false,
        write_cache: true,
        discard: true,
        secure_erase: false,
        discard_granularity: 0,
        discard_alignment: 0,
    }
}

fn disk_keys(mode: &str, devtype: &str, discard: &str) -> blkif::BackendDisk {
    blkif::BackendDisk::read(&mut keys(&[
        ("physical-device", "7:0"),
        ("mode", mode),
        ("device-type", devtype),
        ("discard-enable", discard),
    ]))
    .unwrap()
    .unwrap()
}

#[test]
fn backend_describes_a_writable_disk_with_what_the_device_can_do() {
    let d = blkif::DiskInfo::describe(&facts(), &disk_keys("w", "disk", "1"), true, 256);
    assert!(!d.read_only());
    assert!(d.flush_cache && d.barrier && d.persistent);
    assert_eq!(d.max_indirect_segments, Some(256));
    assert_eq!(
        (d.sector_size, d.physical_sector_size, d.sectors),
        (512, 4096, 2048)
    );
    let discard = d.discard.expect("discard");
    assert_eq!(discard.granularity, 512, "at least one logical block");
    assert!(!discard.secure);
    // No write cache: no flush, barriers still.
    let d = blkif::DiskInfo::describe(
        &blkif::DeviceFacts {
            write_cache: false,
            ..facts()
        },
        &disk_keys("w", "disk", "1"),
        false,
        256,
    );
    assert!(!d.flush_cache && d.barrier && !d.persistent);
}

/// A read-only disk offers nothing that writes: no flush, no barrier, no discard.
#[test]
fn backend_read_only_disk_offers_no_writing_operation() {
    for (f, k) in [
        (
            blkif::DeviceFacts {
                opened_writable: false,
                ..facts()
            },
            disk_keys("r", "disk", "1"),
        ),
        (
            blkif::DeviceFacts {
                read_only: true,
                ..facts()
            },
            disk_keys("w", "disk", "1"),
        ),
    ] {
        let d = blkif::DiskInfo::describe(&f, &k, true, 256);
        assert!(d.read_only());
        assert!(!d.flush_cache && !d.barrier && d.discard.is_none());
    }
}

#[test]
fn backend_discard_needs_the_device_and_the_toolstack() {
    let off = blkif::DiskInfo::describe(&facts(), &disk_keys("w", "disk", "0"), true, 256);
    assert!(off.discard.is_none(), "discard-enable = 0");
    let none = blkif::DiskInfo::describe(
        &blkif::DeviceFacts {
            discard: false,
            ..facts()
        },
        &disk_keys("w", "disk", "1"),
        true,
        256,
    );
    assert!(none.discard.is_none());
    let secure = blkif::DiskInfo::describe(
        &blkif::DeviceFacts {
            secure_erase: true,
            discard_granularity: 65536,
            discard_alignment: 4096,
            ..facts()
        },
        &disk_keys("w", "disk", "1"),
        true,
        256,
    );
    assert_eq!(
        secure.discard,
        Some(blkif::Discard {
            granularity: 65536,
            alignment: 4096,
            secure: true
        })
    );
}

/// A CD-ROM is removable media on both sides, whatever the device under it says.
#[test]
fn cdrom_is_removable_on_both_sides() {
    let d = blkif::DiskInfo::describe(
        &blkif::DeviceFacts {
            opened_writable: false,
            ..facts()
        },
        &disk_keys("r", "cdrom", "1"),
        false,
        256,
    );
    assert!(d.info.contains(xen_sys::wire::blkif::VdiskInfo::CDROM));
    assert!(blkif::DiskParams::removable(&d));
    let plain = blkif::DiskInfo::describe(&facts(), &disk_keys("w", "disk", "1"), false, 256);
    assert!(!blkif::DiskParams::removable(&plain));
    // What the frontend reads back is the same.
    let mut k = StoreMap::default();
    d.write(&mut k).unwrap();
    let (back, _) = blkif::DiskInfo::read(&mut k).unwrap();
    assert!(blkif::DiskParams::removable(&back) && back.read_only());
}

#[test]
fn frontend_flushes_as_barriers_only_without_a_flush() {
    let limits = blkif::FrontLimits::default();
    let disk = |flush: bool, barrier: bool| blkif::DiskInfo {
        flush_cache: flush,
        barrier,
        ..blkif::DiskInfo::describe(&facts(), &disk_keys("w", "disk", "1"), false, 256)
    };
    let p = blkif::DiskParams::negotiate(&limits, &disk(true, true), None);
    assert!(p.write_cache() && !p.barrier_only());
    let p = blkif::DiskParams::negotiate(&limits, &disk(false, true), None);
    assert!(p.write_cache() && p.barrier_only());
    let p = blkif::DiskParams::negotiate(&limits, &disk(false, false), None);
    assert!(!p.write_cache() && !p.barrier_only());
}
