//! Fuzzes the blkif backend engine against a frontend that writes arbitrary slot bytes and
//! ring indices, grants or withholds data pages, fails grant maps and floods events.
//!
//! The engine runs in the host simulator (`xen-sim`) over a real grant table. Checked after
//! every step: no panic or hang; a call serves at most its budget; a broken ring disconnects
//! for good (ring, persistent grants and port released); the storage is never asked for a
//! sector outside the disk (it would fail: `io_errors` stays 0); mappings stay bounded by the
//! ring and the persistent-grant cache; a read-only disk is never written.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use xen_blkif::{Connection, VecTables, Abi, BackConfig, BlkBack, Error, VecDisk};
use xen_core::platform::RingMemory;
use xen_sim::{Mapping, Pages, Sim};
use xen_sys::{DomId, GrantRef};

const CACHE: usize = 8;
const SECTORS: u64 = 256;
const PAGES: usize = 4;

#[derive(Arbitrary, Debug)]
enum Step {
    /// Writes a whole slot (112 bytes are enough for either layout).
    Slot {
        index: u8,
        bytes: [u8; 112],
    },
    /// Writes a request built from a few fields, so valid requests are common.
    Request {
        index: u8,
        op: u8,
        nr: u8,
        sector: u16,
        page: u8,
        first: u8,
        last: u8,
    },
    /// Moves `req_prod` forward by `n` (or to any value).
    Produce {
        n: u8,
    },
    SetReqProd {
        value: u32,
    },
    /// Makes the next map of data page `page` fail.
    FailMap {
        page: u8,
    },
    /// Writes indirect descriptors into data page `page`.
    Descriptors {
        page: u8,
        bytes: Vec<u8>,
    },
    /// The event fires.
    Event,
}

#[derive(Arbitrary, Debug)]
struct Input {
    x86_32: bool,
    read_only: bool,
    persistent: bool,
    budget: u8,
    /// Which data pages are granted read-only (bit i: page i).
    readonly_pages: u8,
    steps: Vec<Step>,
}

fuzz_target!(|input: Input| {
    let sim = Sim::new();
    let fe = sim.create_domain(1);
    let be = sim.domain(0);
    let ring: Arc<Pages> = Arc::new(fe.alloc_pages(1));
    let gref = fe.grant_ring_page(DomId::DOM0, &ring, 0).unwrap();
    let mapped: Mapping = RingMemory::map_ring(&be, fe.id(), &[gref]).unwrap();
    let fport = fe.alloc_unbound(DomId::DOM0).unwrap();
    let bport = be.bind_interdomain(fe.id(), fport).unwrap();
    let data: Vec<(Pages, GrantRef)> = (0..PAGES)
        .map(|i| {
            let p = fe.alloc_pages(1);
            let ro = input.readonly_pages & (1 << i) != 0;
            let g = fe
                .grant_access(DomId::DOM0, p.frame(0).unwrap(), ro)
                .unwrap();
            (p, g)
        })
        .collect();
    let budget = u32::from(input.budget % 40) + 1;
    let config = BackConfig {
        persistent: input.persistent,
        budget,
        max_indirect_segments: 64,
        ..BackConfig::default()
    };
    let abi = if input.x86_32 {
        Abi::X86_32
    } else {
        Abi::X86_64
    };
    let (slot_size, slots) = if input.x86_32 { (108, 32) } else { (112, 32) };
    let disk = VecDisk::new(SECTORS, input.read_only);
    let before = disk.bytes().to_vec();
    let mut back =
        BlkBack::new(
            be,
            disk,
            mapped,
            Connection { abi, front: fe.id(), port: bport },
            config,
            VecTables::new(32, CACHE),
        )
        .unwrap();
    let mut req_prod = 0u32;
    let mut broken = false;
    for step in input.steps.iter().take(64) {
        match step {
            Step::Slot { index, bytes } => {
                let at = 64 + usize::from(*index % slots) * slot_size;
                ring.host().poke_bytes(at, &bytes[..slot_size]);
            }
            Step::Request {
                index,
                op,
                nr,
                sector,
                page,
                first,
                last,
            } => {
                let mut b = [0u8; 112];
                b[0] = op % 8;
                b[1] = nr % 13;
                let (sector_at, seg_at) = if input.x86_32 { (12, 20) } else { (16, 24) };
                b[sector_at..sector_at + 8].copy_from_slice(&u64::from(*sector).to_ne_bytes());
                let g = data[usize::from(*page) % PAGES].1.raw();
                for s in 0..11 {
                    let at = seg_at + 8 * s;
                    b[at..at + 4].copy_from_slice(&g.to_ne_bytes());
                    b[at + 4] = first % 9;
                    b[at + 5] = last % 9;
                }
                let at = 64 + usize::from(*index % slots) * slot_size;
                ring.host().poke_bytes(at, &b[..slot_size]);
            }
            Step::Produce { n } => {
                req_prod = req_prod.wrapping_add(u32::from(*n % 40));
                ring.host().poke_u32(0, req_prod);
            }
            Step::SetReqProd { value } => {
                req_prod = *value;
                ring.host().poke_u32(0, req_prod);
            }
            Step::FailMap { page } => {
                sim.fail_map(fe.id(), data[usize::from(*page) % PAGES].1, 1);
            }
            Step::Descriptors { page, bytes } => {
                let n = bytes.len().min(4096);
                data[usize::from(*page) % PAGES].0.write(0, &bytes[..n]);
            }
            Step::Event => match back.handle_event() {
                Ok(p) => {
                    assert!(!broken);
                    assert!(p.done <= budget);
                }
                Err(Error::Ring(_)) => {
                    assert!(!broken);
                    broken = true;
                    assert!(!back.is_connected());
                    assert_eq!(back.persistent_grants(), 0);
                    assert_eq!(sim.grant_stats().live_maps, 0);
                }
                Err(Error::Disconnected) => assert!(broken),
                Err(e) => panic!("{e:?}"),
            },
        }
        let stats = back.stats();
        assert_eq!(
            stats.io_errors, 0,
            "storage asked for sectors outside the disk"
        );
        assert!(back.persistent_grants() <= CACHE);
        assert!(sim.grant_stats().live_maps <= 1 + CACHE as u64);
    }
    if input.read_only {
        assert_eq!(back.storage().bytes(), &before[..]);
    }
    back.disconnect();
    assert_eq!(sim.grant_stats().live_maps, 0);
});
