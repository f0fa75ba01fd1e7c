//! Fuzzes vscsiif request validation (backend side): arbitrary 252-byte slots against
//! arbitrary negotiated limits and an arbitrary LUN table, and arbitrary indirect descriptors.
//!
//! Checked on every run: no panic; an accepted request names a LUN of the table, its CDB is
//! 1 to 16 bytes and not shorter than its group, a DMA_NONE command has no segment, segment
//! counts respect the limits, every segment is non-empty and inside its page; a refusal maps
//! to a result of the right kind.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use xen_core::feature::vscsiif::Hctl;
use xen_sys::wire::vscsiif as wire;
use xen_vscsiif::parse::{check_descriptors, group_len, Body, Segments};
use xen_vscsiif::{Direction, Limits, LunTable, Luns, Request};

#[derive(Arbitrary, Debug)]
struct Input {
    slot: [u8; 252],
    max_segments: u32,
    indirect: bool,
    max_rqid: u16,
    luns: Vec<(u32, u16, u16, u16, bool)>,
    descriptors: Vec<[u8; 8]>,
}

fuzz_target!(|input: Input| {
    let w = wire::Request::from_bytes(&input.slot);
    let limits = Limits {
        max_segments: input.max_segments,
        indirect: input.indirect,
        max_rqid: input.max_rqid,
    };
    let mut table = LunTable::<8>::new();
    for (index, c, t, l, active) in input.luns.iter().take(16) {
        let v = Hctl {
            host: 0,
            channel: u32::from(*c),
            target: u32::from(*t),
            lun: u32::from(*l),
        };
        if table.insert(*index, v, None).is_ok() {
            table.activate(*index, *active);
        }
    }
    match Request::parse(&w, &limits, &table) {
        Err(invalid) => {
            let r = invalid.result(w.act);
            if w.act == 2 || w.act == 3 {
                assert_eq!(r, wire::RSLT_RESET_FAILED);
            } else {
                assert_ne!(r, 0);
            }
        }
        Ok(req) => {
            assert!(req.rqid <= limits.max_rqid);
            assert_eq!(table.find(req.addr), Some(req.lun));
            if let Body::Cdb(c) = req.body {
                assert!((1..=16).contains(&c.len));
                assert!(group_len(c.bytes[0]).map_or(true, |g| c.len >= g));
                assert!(c.direction != Direction::None || c.segments.total() == 0);
                assert!(c.segments.total() <= limits.max_segments);
                match c.segments {
                    Segments::Direct { .. } => {
                        for s in c.segments.direct() {
                            assert!(
                                s.length > 0 && u32::from(s.offset) + u32::from(s.length) <= 4096
                            );
                        }
                    }
                    Segments::Indirect { .. } => {
                        assert!(limits.indirect);
                        for p in c.segments.indirect_pages() {
                            assert!(
                                p.length % 8 == 0
                                    && u32::from(p.offset) + u32::from(p.length) <= 4096
                            );
                        }
                    }
                }
            }
        }
    }
    let descs: Vec<wire::Segment> = input
        .descriptors
        .iter()
        .map(|b| wire::Segment::from_bytes(b))
        .collect();
    if check_descriptors(&descs).is_ok() {
        assert!(descs
            .iter()
            .all(|d| d.length > 0 && u32::from(d.offset) + u32::from(d.length) <= 4096));
    }
});
