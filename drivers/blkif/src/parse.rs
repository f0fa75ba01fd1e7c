//! Validation of a request copied out of the ring, before the backend does anything with it.
//!
//! [`Request::parse`] turns the raw slot into a [`Request`] whose every field is known good
//! against the device's [`Limits`]: the operation is known and negotiated, the segment count is
//! in range, every segment stays inside its page, the sectors are inside the disk, and the grant
//! direction each segment needs is decided. An indirect request's segments live in granted
//! pages; [`check_segments`] validates them once they are copied out, still before any data
//! grant is mapped or any I/O starts. A failure is an [`Invalid`], which maps to the response
//! status the frontend gets ([`Invalid::status`]).

use xen_grant::Access;
use xen_sys::wire::blkif::{
    self as wire, DiscardFlags, Op, Status, LAST_SECTOR_IN_PAGE, MAX_INDIRECT_PAGES_PER_REQUEST,
    MAX_SEGMENTS_PER_REQUEST, SEGMENTS_PER_INDIRECT_FRAME,
};
use xen_sys::GrantRef;

/// Most segments of an indirect request the backend accepts (Linux's `MAX_INDIRECT_SEGMENTS`).
pub const MAX_INDIRECT_SEGMENTS: u16 = 256;
/// Sectors in one 4 KiB page.
pub const SECTORS_PER_PAGE: u64 = 8;

/// A disk address in 512-byte units, whatever the disk's own sector size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sector(pub u64);

impl Sector {
    /// The sector `n` sectors further on, or `None` past `u64::MAX`.
    pub fn checked_add(self, n: u64) -> Option<Sector> {
        self.0.checked_add(n).map(Sector)
    }
}

/// What the device offers and what was negotiated: everything a request is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Disk size in 512-byte sectors.
    pub capacity: u64,
    /// The disk is read-only (`mode = r`): writes, flushes and discards are refused.
    pub read_only: bool,
    /// `feature-flush-cache` offered.
    pub flush: bool,
    /// `feature-barrier` offered.
    pub barrier: bool,
    /// `feature-discard` offered.
    pub discard: bool,
    /// `discard-secure` offered; without it the secure flag is ignored, as Linux does.
    pub secure_discard: bool,
    /// `feature-max-indirect-segments` offered (0: no indirect requests). Values above
    /// [`MAX_INDIRECT_SEGMENTS`] are treated as that.
    pub max_indirect_segments: u16,
}

impl Limits {
    /// The indirect segment limit actually enforced.
    pub fn indirect_limit(&self) -> u16 {
        self.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS)
    }
}

/// Why a request was refused. Each costs one response; none affects other requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The operation byte is not a blkif operation.
    UnknownOp(u8),
    /// A known operation the device did not offer (or `RESERVED_1`).
    NotNegotiated(Op),
    /// An indirect request whose inner operation is not read or write.
    BadIndirectOp(u8),
    /// A data operation with no segment, or more than allowed.
    SegmentCount(u16),
    /// An indirect request that would need more than 8 indirect pages.
    TooManyIndirectPages(u16),
    /// Segment `index` has `first_sect > last_sect` or `last_sect > 7`.
    BadSectors {
        /// The segment's position in the request.
        index: u16,
        /// Its first sector.
        first: u8,
        /// Its last sector.
        last: u8,
    },
    /// The sectors run past the end of the disk (or past `u64::MAX`).
    PastTheEnd,
    /// A write, flush, barrier or discard on a read-only disk.
    ReadOnly,
}

impl Invalid {
    /// The status the frontend gets: `EOPNOTSUPP` for operations we do not do, `ERROR` for the
    /// rest.
    pub fn status(self) -> Status {
        match self {
            Invalid::UnknownOp(_) | Invalid::NotNegotiated(_) | Invalid::BadIndirectOp(_) => {
                Status::Eopnotsupp
            }
            _ => Status::Error,
        }
    }
}

/// Which way data moves between the disk and the guest's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Disk to guest: the backend writes the guest's pages, so it needs a writable mapping.
    Read,
    /// Guest to disk: a read-only mapping suffices.
    Write,
}

impl Direction {
    /// The grant access the data pages must allow.
    pub fn access(self) -> Access {
        match self {
            Direction::Read => Access::ReadWrite,
            Direction::Write => Access::ReadOnly,
        }
    }
}

/// A checked segment: sectors `first..=last` (at most 7) of the page `gref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    gref: GrantRef,
    first: u8,
    last: u8,
}

impl Segment {
    /// Sector 0 of grant 0: a filler for fixed-size arrays, never handed to I/O.
    pub(crate) const FILLER: Segment = Segment {
        gref: GrantRef::new(0),
        first: 0,
        last: 0,
    };

    /// Checks a wire segment.
    pub fn check(seg: &wire::Segment, index: u16) -> Result<Segment, Invalid> {
        if seg.first_sect > seg.last_sect || seg.last_sect > LAST_SECTOR_IN_PAGE {
            return Err(Invalid::BadSectors {
                index,
                first: seg.first_sect,
                last: seg.last_sect,
            });
        }
        Ok(Segment {
            gref: GrantRef::new(seg.gref),
            first: seg.first_sect,
            last: seg.last_sect,
        })
    }

    /// The data page's grant.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }

    /// Byte offset of the first sector in the page (0..=3584).
    pub fn offset(&self) -> usize {
        usize::from(self.first) * 512
    }

    /// Sectors transferred (1..=8).
    pub fn sectors(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Bytes transferred (512..=4096).
    pub fn len(&self) -> usize {
        (usize::from(self.last - self.first) + 1) * 512
    }

    /// Never true: a segment moves at least one sector.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Where a data request's segments are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segments {
    /// In the slot, already checked (`count` of `seg` are in use; 0 for a bare flush).
    Direct {
        /// Segments in use.
        count: u8,
        /// The segments.
        seg: [Segment; MAX_SEGMENTS_PER_REQUEST],
    },
    /// In `pages` granted indirect pages, to be copied out and checked with
    /// [`check_segments`].
    Indirect {
        /// Segments in the indirect pages, `1..=` the negotiated maximum.
        count: u16,
        /// Indirect pages in use, `1..=8`, `count` divided by 512 rounded up.
        pages: u8,
        /// Their grants; only the first `pages` are meaningful.
        grefs: [GrantRef; MAX_INDIRECT_PAGES_PER_REQUEST],
    },
}

impl Segments {
    /// The grants of the indirect pages in use (empty for a direct request).
    pub fn indirect_grefs(&self) -> &[GrantRef] {
        match self {
            Segments::Direct { .. } => &[],
            Segments::Indirect { pages, grefs, .. } => {
                grefs.get(..usize::from(*pages)).unwrap_or(&[])
            }
        }
    }

    /// The number of segments.
    pub fn count(&self) -> u16 {
        match *self {
            Segments::Direct { count, .. } => u16::from(count),
            Segments::Indirect { count, .. } => count,
        }
    }

    /// The checked segments of a direct request (empty for an indirect one).
    pub fn direct(&self) -> &[Segment] {
        match self {
            Segments::Direct { count, seg } => seg.get(..usize::from(*count)).unwrap_or(&[]),
            Segments::Indirect { .. } => &[],
        }
    }
}

/// A data transfer: segments laid out on disk one after another from `sector`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The disk sector of the first segment's first sector.
    pub sector: Sector,
    /// The segments.
    pub segments: Segments,
    /// Which way the data moves.
    pub direction: Direction,
}

/// What a valid request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Read or write (also through indirect pages).
    Rw(Transfer),
    /// `FLUSH_DISKCACHE` or `WRITE_BARRIER`: flush the cache, write the segments if any, and
    /// flush again so the data is durable before the response.
    Flush(Transfer),
    /// Discard `count` sectors from `sector`.
    Discard {
        /// First sector.
        sector: Sector,
        /// Sectors (may be 0).
        count: u64,
        /// Discard securely (only when offered).
        secure: bool,
    },
}

/// A request that passed every check that can be made without touching guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The frontend's cookie, echoed in the response.
    pub id: u64,
    /// The operation byte to echo in the response ([`response_operation`]).
    pub operation: u8,
    /// What to do.
    pub body: Body,
}

impl Request {
    /// Validates a native request image (a 32-bit one goes through
    /// [`x86_32::to_native`](crate::abi::x86_32::to_native) first).
    ///
    /// Pure and total: any bytes give `Ok` or `Err`, never a panic. The `Err` carries the
    /// response to send (see [`Invalid::status`]); the id and operation to echo are in `wire`.
    pub fn parse(wire: &wire::Request, limits: &Limits) -> Result<Request, Invalid> {
        let op = Op::try_from(wire.operation).map_err(|_| Invalid::UnknownOp(wire.operation))?;
        let body = match op {
            Op::Read => Body::Rw(direct(wire, Direction::Read, false, limits)?),
            Op::Write => Body::Rw(direct(wire, Direction::Write, false, limits)?),
            Op::FlushDiskcache | Op::WriteBarrier => {
                let offered = if op == Op::FlushDiskcache {
                    limits.flush
                } else {
                    limits.barrier
                };
                if !offered {
                    return Err(Invalid::NotNegotiated(op));
                }
                Body::Flush(direct(wire, Direction::Write, true, limits)?)
            }
            Op::Discard => {
                if !limits.discard {
                    return Err(Invalid::NotNegotiated(op));
                }
                let d = wire.to_discard();
                if limits.read_only {
                    return Err(Invalid::ReadOnly);
                }
                let end = d
                    .sector_number
                    .checked_add(d.nr_sectors)
                    .ok_or(Invalid::PastTheEnd)?;
                if end > limits.capacity {
                    return Err(Invalid::PastTheEnd);
                }
                let secure = limits.secure_discard
                    && DiscardFlags::from_bits_retain(d.flag).contains(DiscardFlags::SECURE);
                Body::Discard {
                    sector: Sector(d.sector_number),
                    count: d.nr_sectors,
                    secure,
                }
            }
            Op::Indirect => Body::Rw(indirect(wire, limits)?),
            Op::Reserved1 => return Err(Invalid::NotNegotiated(op)),
        };
        Ok(Request {
            id: wire.id,
            operation: response_operation(wire),
            body,
        })
    }
}

/// The operation a response to `wire` carries: the request's, except that an indirect request
/// is answered with its inner operation (`indirect_op`), as Linux's blkback does and its
/// blkfront checks.
pub fn response_operation(wire: &wire::Request) -> u8 {
    if wire.operation == u8::from(Op::Indirect) {
        wire.to_indirect().indirect_op
    } else {
        wire.operation
    }
}

/// Checks a direct read/write/flush: segment count, each segment, the sector range.
fn direct(
    wire: &wire::Request,
    direction: Direction,
    flush: bool,
    limits: &Limits,
) -> Result<Transfer, Invalid> {
    let count = wire.nr_segments;
    let max = u8::try_from(MAX_SEGMENTS_PER_REQUEST).unwrap_or(u8::MAX);
    // Only a flush or barrier may carry no data.
    if count > max || (count == 0 && !flush) {
        return Err(Invalid::SegmentCount(u16::from(count)));
    }
    if direction == Direction::Write && limits.read_only {
        return Err(Invalid::ReadOnly);
    }
    let mut seg = [Segment::FILLER; MAX_SEGMENTS_PER_REQUEST];
    let mut total = 0u64;
    for (i, (out, raw)) in seg
        .iter_mut()
        .zip(wire.seg.iter())
        .take(usize::from(count))
        .enumerate()
    {
        *out = Segment::check(raw, u16::try_from(i).unwrap_or(u16::MAX))?;
        total += out.sectors();
    }
    // A flush without data has no range: Linux's blk-mq leaves its sector at -1, and Linux's
    // blkback checks only ranges that cover sectors.
    if count > 0 {
        check_range(wire.sector_number, total, limits)?;
    }
    Ok(Transfer {
        sector: Sector(wire.sector_number),
        segments: Segments::Direct { count, seg },
        direction,
    })
}

/// Checks an indirect request's header: inner operation, segment count, page count.
fn indirect(wire: &wire::Request, limits: &Limits) -> Result<Transfer, Invalid> {
    let ind = wire.to_indirect();
    let direction = match Op::try_from(ind.indirect_op) {
        Ok(Op::Read) => Direction::Read,
        Ok(Op::Write) => Direction::Write,
        _ => return Err(Invalid::BadIndirectOp(ind.indirect_op)),
    };
    if limits.indirect_limit() == 0 {
        return Err(Invalid::NotNegotiated(Op::Indirect));
    }
    let count = ind.nr_segments;
    let per_page = u16::try_from(SEGMENTS_PER_INDIRECT_FRAME).unwrap_or(u16::MAX);
    let pages = count.div_ceil(per_page);
    if usize::from(pages) > MAX_INDIRECT_PAGES_PER_REQUEST {
        return Err(Invalid::TooManyIndirectPages(count));
    }
    if count == 0 || count > limits.indirect_limit() {
        return Err(Invalid::SegmentCount(count));
    }
    if direction == Direction::Write && limits.read_only {
        return Err(Invalid::ReadOnly);
    }
    // At least one sector per segment: reject early what cannot fit whatever the segments say.
    check_range(ind.sector_number, u64::from(count), limits)?;
    Ok(Transfer {
        sector: Sector(ind.sector_number),
        segments: Segments::Indirect {
            count,
            pages: u8::try_from(pages).unwrap_or(u8::MAX),
            grefs: ind.indirect_grefs.map(GrantRef::new),
        },
        direction,
    })
}

/// `sector + sectors <= capacity`, without overflow.
pub(crate) fn check_range(sector: u64, sectors: u64, limits: &Limits) -> Result<(), Invalid> {
    match sector.checked_add(sectors) {
        Some(end) if end <= limits.capacity => Ok(()),
        _ => Err(Invalid::PastTheEnd),
    }
}

/// Checks the segments copied out of an indirect request's pages: each inside its page, and
/// all of them inside the disk from `transfer.sector`. `out` receives the checked segments;
/// returns how many (the shorter of `raw` and `out`).
pub fn check_segments(
    transfer: &Transfer,
    raw: &[wire::Segment],
    out: &mut [Segment],
    limits: &Limits,
) -> Result<usize, Invalid> {
    let mut total = 0u64;
    let mut n = 0usize;
    for (i, (dst, src)) in out.iter_mut().zip(raw.iter()).enumerate() {
        *dst = Segment::check(src, u16::try_from(i).unwrap_or(u16::MAX))?;
        total += dst.sectors();
        n += 1;
    }
    check_range(transfer.sector.0, total, limits)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        capacity: 1024,
        read_only: false,
        flush: true,
        barrier: true,
        discard: true,
        secure_discard: false,
        max_indirect_segments: 256,
    };

    fn rw(op: Op, sector: u64, segs: &[(u32, u8, u8)]) -> wire::Request {
        let mut r = wire::Request::ZERO;
        r.operation = op.into();
        r.nr_segments = segs.len() as u8;
        r.id = 42;
        r.sector_number = sector;
        for (s, &(g, f, l)) in r.seg.iter_mut().zip(segs) {
            s.gref = g;
            s.first_sect = f;
            s.last_sect = l;
        }
        r
    }

    #[test]
    fn read_needs_a_writable_grant_and_write_a_readonly_one() {
        let Body::Rw(t) = Request::parse(&rw(Op::Read, 0, &[(9, 0, 7)]), &LIMITS)
            .unwrap()
            .body
        else {
            panic!()
        };
        assert_eq!(t.direction.access(), Access::ReadWrite);
        let Body::Rw(t) = Request::parse(&rw(Op::Write, 0, &[(9, 0, 7)]), &LIMITS)
            .unwrap()
            .body
        else {
            panic!()
        };
        assert_eq!(t.direction.access(), Access::ReadOnly);
    }

    #[test]
    fn flush_without_data_is_accepted_at_any_sector_with_data_it_is_range_checked() {
        // Linux's blk-mq leaves a flush request's sector at -1 (blk_rq_init).
        for op in [Op::FlushDiskcache, Op::WriteBarrier] {
            assert!(Request::parse(&rw(op, u64::MAX, &[]), &LIMITS).is_ok());
            assert_eq!(
                Request::parse(&rw(op, u64::MAX, &[(9, 0, 7)]), &LIMITS),
                Err(Invalid::PastTheEnd)
            );
            assert_eq!(
                Request::parse(&rw(op, 1020, &[(9, 0, 7)]), &LIMITS),
                Err(Invalid::PastTheEnd)
            );
        }
    }

    #[test]
    fn rejects_segment_count_zero_or_over_eleven() {
        let r = rw(Op::Read, 0, &[]);
        assert_eq!(Request::parse(&r, &LIMITS), Err(Invalid::SegmentCount(0)));
        let mut r = rw(Op::Read, 0, &[(9, 0, 0); 11]);
        assert!(Request::parse(&r, &LIMITS).is_ok());
        r.nr_segments = 12;
        assert_eq!(Request::parse(&r, &LIMITS), Err(Invalid::SegmentCount(12)));
        // A flush may carry none.
        assert!(Request::parse(&rw(Op::FlushDiskcache, 0, &[]), &LIMITS).is_ok());
    }

    #[test]
    fn rejects_bad_first_last_sect() {
        for (f, l) in [(1, 0), (0, 8), (8, 8), (255, 255)] {
            let r = rw(Op::Write, 0, &[(9, 0, 7), (9, f, l)]);
            assert_eq!(
                Request::parse(&r, &LIMITS),
                Err(Invalid::BadSectors {
                    index: 1,
                    first: f,
                    last: l
                })
            );
        }
    }

    #[test]
    fn rejects_sector_past_the_end_without_overflow() {
        assert!(Request::parse(&rw(Op::Read, 1016, &[(9, 0, 7)]), &LIMITS).is_ok());
        let r = rw(Op::Read, 1017, &[(9, 0, 7)]);
        assert_eq!(Request::parse(&r, &LIMITS), Err(Invalid::PastTheEnd));
        let r = rw(Op::Read, u64::MAX - 3, &[(9, 0, 7)]);
        assert_eq!(Request::parse(&r, &LIMITS), Err(Invalid::PastTheEnd));
        let mut d = wire::DiscardRequest::ZERO;
        d.operation = Op::Discard.into();
        d.sector_number = 1;
        d.nr_sectors = u64::MAX;
        let r = wire::Request::from(d);
        assert_eq!(Request::parse(&r, &LIMITS), Err(Invalid::PastTheEnd));
    }

    #[test]
    fn unknown_and_unoffered_ops_are_eopnotsupp() {
        let r = rw(Op::Read, 0, &[(9, 0, 7)]);
        for raw in [4u8, 7, 200, 255] {
            let mut x = r;
            x.operation = raw;
            assert_eq!(
                Request::parse(&x, &LIMITS).unwrap_err().status(),
                Status::Eopnotsupp
            );
        }
        let none = Limits {
            flush: false,
            barrier: false,
            discard: false,
            max_indirect_segments: 0,
            ..LIMITS
        };
        for op in [Op::FlushDiskcache, Op::WriteBarrier, Op::Discard] {
            let x = rw(op, 0, &[]);
            assert_eq!(Request::parse(&x, &none), Err(Invalid::NotNegotiated(op)));
        }
        let mut ind = wire::IndirectRequest::ZERO;
        ind.operation = Op::Indirect.into();
        ind.indirect_op = Op::Read.into();
        ind.nr_segments = 1;
        let x = wire::Request::from(ind);
        assert_eq!(
            Request::parse(&x, &none),
            Err(Invalid::NotNegotiated(Op::Indirect))
        );
        ind.indirect_op = Op::FlushDiskcache.into();
        let x = wire::Request::from(ind);
        assert_eq!(Request::parse(&x, &LIMITS), Err(Invalid::BadIndirectOp(3)));
    }

    #[test]
    fn read_only_disk_refuses_writes_flushes_and_discards() {
        let ro = Limits {
            read_only: true,
            ..LIMITS
        };
        assert!(Request::parse(&rw(Op::Read, 0, &[(9, 0, 7)]), &ro).is_ok());
        for op in [Op::Write, Op::FlushDiskcache, Op::WriteBarrier, Op::Discard] {
            let r = rw(op, 0, &[(9, 0, 7)]);
            assert_eq!(Request::parse(&r, &ro), Err(Invalid::ReadOnly), "{op:?}");
        }
    }

    #[test]
    fn rejects_too_many_indirect_pages_and_segments() {
        let mut ind = wire::IndirectRequest::ZERO;
        ind.operation = Op::Indirect.into();
        ind.indirect_op = Op::Write.into();
        ind.nr_segments = 4097;
        let r = wire::Request::from(ind);
        assert_eq!(
            Request::parse(&r, &LIMITS),
            Err(Invalid::TooManyIndirectPages(4097))
        );
        ind.nr_segments = 257;
        let r = wire::Request::from(ind);
        assert_eq!(Request::parse(&r, &LIMITS), Err(Invalid::SegmentCount(257)));
        ind.nr_segments = 256;
        let r = wire::Request::from(ind);
        let Body::Rw(t) = Request::parse(&r, &LIMITS).unwrap().body else {
            panic!()
        };
        assert_eq!(t.segments.indirect_grefs().len(), 1);
        // Secure flag without the feature is ignored.
        let mut d = wire::DiscardRequest::ZERO;
        d.operation = Op::Discard.into();
        d.flag = 1;
        d.nr_sectors = 8;
        let r = Request::parse(&wire::Request::from(d), &LIMITS).unwrap();
        assert!(matches!(r.body, Body::Discard { secure: false, .. }));
    }

    #[test]
    fn indirect_segments_are_checked_against_the_disk() {
        let mut ind = wire::IndirectRequest::ZERO;
        ind.operation = Op::Indirect.into();
        ind.indirect_op = Op::Read.into();
        ind.nr_segments = 3;
        ind.sector_number = 1001;
        let Body::Rw(t) = Request::parse(&wire::Request::from(ind), &LIMITS)
            .unwrap()
            .body
        else {
            panic!()
        };
        let mut raw = [wire::Segment::ZERO; 3];
        for s in raw.iter_mut() {
            s.last_sect = 7;
        }
        let mut out = [Segment::check(&wire::Segment::ZERO, 0).unwrap(); 3];
        assert_eq!(
            check_segments(&t, &raw, &mut out, &LIMITS),
            Err(Invalid::PastTheEnd)
        );
        raw[2].last_sect = 7;
        raw[0].last_sect = 0;
        raw[1].last_sect = 0;
        assert_eq!(check_segments(&t, &raw, &mut out, &LIMITS), Ok(3));
    }
}
