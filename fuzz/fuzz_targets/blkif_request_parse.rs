//! Fuzzes blkif request validation: arbitrary 112-byte slots (read in both the `x86_64-abi`
//! and the `x86_32-abi` layout) against arbitrary device limits.
//!
//! Checked on every run: no panic; an accepted request respects every limit it was checked
//! against (operation offered, segment counts, sectors inside each page and inside the disk,
//! nothing written to a read-only disk); a refused one maps to a response status; and the
//! indirect segment check accepts only segments inside the disk.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use xen_blkif::abi::x86_32;
use xen_blkif::parse::{
    check_segments, response_operation, Body, Direction, Request, Segment, Segments,
};
use xen_blkif::Limits;
use xen_sys::wire::blkif as wire;

#[derive(Arbitrary, Debug)]
struct Input {
    slot: [u8; 112],
    capacity: u64,
    read_only: bool,
    flush: bool,
    barrier: bool,
    discard: bool,
    secure_discard: bool,
    max_indirect_segments: u16,
    /// Segment descriptors an indirect page would hold.
    indirect: Vec<[u8; 8]>,
}

fn within(sector: u64, n: u64, limits: &Limits) -> bool {
    sector.checked_add(n).is_some_and(|e| e <= limits.capacity)
}

fn check(w: &wire::Request, limits: &Limits, indirect: &[wire::Segment]) {
    let Ok(req) = Request::parse(w, limits) else {
        return;
    };
    assert_eq!((req.id, req.operation), (w.id, response_operation(w)));
    match req.body {
        Body::Discard {
            sector,
            count,
            secure,
        } => {
            assert!(limits.discard && !limits.read_only);
            assert!(within(sector.0, count, limits));
            assert!(!secure || limits.secure_discard);
        }
        Body::Rw(t) | Body::Flush(t) => {
            if t.direction == Direction::Write {
                assert!(!limits.read_only);
            }
            if matches!(req.body, Body::Flush(_)) {
                assert!(limits.flush || limits.barrier);
            }
            match t.segments {
                Segments::Direct { count, .. } => {
                    assert!(count <= 11);
                    assert!(count > 0 || matches!(req.body, Body::Flush(_)));
                    let mut total = 0u64;
                    for s in t.segments.direct() {
                        assert!(s.offset() + s.len() <= 4096 && s.len() >= 512);
                        total += s.sectors();
                    }
                    // A flush without data has no range (blk-mq sends sector -1).
                    assert!(count == 0 || within(t.sector.0, total, limits));
                }
                Segments::Indirect { count, pages, .. } => {
                    assert!(count >= 1 && count <= limits.max_indirect_segments.min(256));
                    assert!((1..=8).contains(&pages));
                    assert_eq!(t.segments.indirect_grefs().len(), usize::from(pages));
                    let mut out = [Segment::check(&wire::Segment::ZERO, 0).unwrap(); 256];
                    let n = usize::from(count).min(indirect.len());
                    if let Ok(k) = check_segments(&t, &indirect[..n], &mut out, limits) {
                        assert_eq!(k, n);
                        let total: u64 = out[..k].iter().map(|s| s.sectors()).sum();
                        assert!(within(t.sector.0, total, limits));
                    }
                }
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let limits = Limits {
        capacity: input.capacity,
        read_only: input.read_only,
        flush: input.flush,
        barrier: input.barrier,
        discard: input.discard,
        secure_discard: input.secure_discard,
        max_indirect_segments: input.max_indirect_segments,
    };
    let indirect: Vec<wire::Segment> = input
        .indirect
        .iter()
        .take(256)
        .map(wire::Segment::from_bytes)
        .collect();
    let native = wire::Request::from_bytes(&input.slot);
    check(&native, &limits, &indirect);
    let i386: [u8; 108] = input.slot[..108].try_into().unwrap();
    check(&x86_32::to_native(&i386), &limits, &indirect);
    if let Err(e) = Request::parse(&native, &limits) {
        let _ = e.status();
    }
});
