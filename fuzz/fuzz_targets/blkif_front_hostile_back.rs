//! Fuzzes the blkif frontend engine against a backend that writes arbitrary response bytes
//! and indices, keeps data pages mapped, and floods events.
//!
//! The engine runs in the host simulator (`xen-sim`). Checked after every step: no panic or
//! hang; every request completes at most once, and once the device failed none is left
//! outstanding; a page is never freed while the backend maps it; data grants are never more
//! than the pages of outstanding requests plus the persistent spares and the deferred ones.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use xen_blkif::front::ReadData;
use xen_blkif::{BlkFront, Completion, Error, FrontConfig, Sector, SubmitError};
use xen_core::platform::RingMemory;
use xen_sim::{MapOp, Mapping, Pages, Sim};
use xen_sys::{DomId, GrantRef};

#[derive(Arbitrary, Debug)]
enum Step {
    Read {
        sector: u16,
        sectors: u8,
    },
    Write {
        sector: u16,
        pages: u8,
    },
    Flush,
    Discard {
        sector: u16,
        count: u16,
    },
    Push,
    /// Writes a response slot: `id` chosen among real ids (or raw), plus raw op and status.
    Respond {
        slot: u8,
        real: bool,
        pick: u8,
        raw_id: u64,
        op: u8,
        status: i16,
    },
    /// Sets `rsp_prod` relative to what the front published, or to any value.
    Produce {
        n: u8,
    },
    SetRspProd {
        value: u32,
    },
    /// Maps a granted data page (and keeps it mapped) or drops a kept mapping.
    Map {
        pick: u8,
    },
    Unmap,
    Event,
}

#[derive(Arbitrary, Debug)]
struct Input {
    persistent: bool,
    indirect: bool,
    steps: Vec<Step>,
}

fuzz_target!(|input: Input| {
    let sim = Sim::new();
    let fe = sim.create_domain(1);
    let be = sim.domain(0);
    let ring = fe.alloc_ring(1).unwrap();
    let gref = fe.grant_ring_page(DomId::DOM0, &ring, 0).unwrap();
    let fport = fe.alloc_unbound(DomId::DOM0).unwrap();
    be.bind_interdomain(fe.id(), fport).unwrap();
    let config = FrontConfig {
        persistent: input.persistent,
        max_indirect_segments: if input.indirect { 16 } else { 0 },
        budget: 8,
        ..FrontConfig::default()
    };
    let mut front: BlkFront<_, Pages, 8, 16> =
        BlkFront::new(fe.clone(), ring, DomId::DOM0, fport, config).unwrap();
    let shared: Mapping = RingMemory::map_ring(&be, fe.id(), &[gref]).unwrap();
    let mut ids: Vec<u64> = Vec::new();
    let mut done: HashSet<u64> = HashSet::new();
    let mut kept: Vec<Mapping> = Vec::new();
    let mut rsp_prod = 0u32;
    let data = vec![0x5au8; 16 * 4096];
    for step in input.steps.iter().take(96) {
        let submitted = match step {
            Step::Read { sector, sectors } => {
                Some(front.submit_read(Sector(u64::from(*sector)), u32::from(*sectors % 130)))
            }
            Step::Write { sector, pages } => {
                let n = usize::from(*pages % 17) * 4096;
                Some(front.submit_write(Sector(u64::from(*sector)), &data[..n]))
            }
            Step::Flush => Some(front.submit_flush()),
            Step::Discard { sector, count } => {
                Some(front.submit_discard(Sector(u64::from(*sector)), u64::from(*count), false))
            }
            Step::Push => {
                let _ = front.push();
                None
            }
            Step::Respond {
                slot,
                real,
                pick,
                raw_id,
                op,
                status,
            } => {
                let id = match (real, ids.len()) {
                    (true, n) if n > 0 => ids[usize::from(*pick) % n],
                    _ => *raw_id,
                };
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&id.to_ne_bytes());
                b[8] = *op % 8;
                b[10..12].copy_from_slice(&(*status % 4).to_ne_bytes());
                assert!(shared.write(64 + usize::from(*slot % 32) * 112, &b));
                None
            }
            Step::Produce { n } => {
                rsp_prod = rsp_prod.wrapping_add(u32::from(*n % 34));
                assert!(shared.write(8, &rsp_prod.to_ne_bytes()));
                None
            }
            Step::SetRspProd { value } => {
                rsp_prod = *value;
                assert!(shared.write(8, &rsp_prod.to_ne_bytes()));
                None
            }
            Step::Map { pick } => {
                // Any reference the front may have granted (they are allocated from 8 up).
                let gref = GrantRef::new(8 + u32::from(*pick));
                if let Some(Ok(m)) = be
                    .map_grants(&[MapOp {
                        granter: fe.id(),
                        gref,
                        writable: false,
                    }])
                    .pop()
                {
                    kept.push(m);
                }
                None
            }
            Step::Unmap => {
                kept.pop();
                fe.retry_deferred();
                None
            }
            Step::Event => {
                let r = front.handle_event(
                    |c: Completion, d: &ReadData<'_, Pages>| {
                        assert!(done.insert(c.ticket.0), "completed twice");
                        let mut buf = vec![0u8; d.len()];
                        let _ = d.copy_to(&mut buf);
                    },
                );
                match r {
                    Ok(p) => assert!(p.done <= 8),
                    Err(Error::Response(_) | Error::Ring(_) | Error::Disconnected) => {
                        assert!(front.is_failed());
                        assert_eq!(front.outstanding(), 0);
                    }
                    Err(e) => panic!("{e:?}"),
                }
                None
            }
        };
        match submitted {
            Some(Ok(t)) => ids.push(t.0),
            Some(Err(SubmitError::Failed)) => assert!(front.is_failed()),
            Some(Err(_)) | None => {}
        }
        assert_eq!(sim.grant_stats().freed_while_mapped, 0);
    }
    // Close: everything outstanding completes once, nothing is freed while mapped.
    front.fail(|c, _| assert!(done.insert(c.ticket.0), "completed twice"));
    assert_eq!(front.outstanding(), 0);
    assert_eq!(done.len(), ids.len());
    drop(kept);
    fe.retry_deferred();
    assert_eq!(sim.grant_stats().freed_while_mapped, 0);
    assert_eq!(sim.live_grants(fe.id()), 1 + fe.deferred_frees() as u64);
});
