//! The blkif block-device ring protocol (`io/blkif.h`), x86_64 ABI.
//!
//! One ring slot holds a [`Request`] (112 bytes) or a [`Response`] (16 bytes). A slot whose
//! `operation` is [`Op::Discard`] or [`Op::Indirect`] is laid out as [`DiscardRequest`] or
//! [`IndirectRequest`] instead; [`Request::to_discard`] and friends reinterpret the bytes.

use super::wire_struct;
use crate::{bindings, Unknown};

/// Segments in a direct [`Request`] (`BLKIF_MAX_SEGMENTS_PER_REQUEST`).
pub const MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Grant references in an [`IndirectRequest`] (`BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`).
pub const MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// [`Segment`]s in one 4 KiB indirect page (`XEN_PAGE_SIZE / sizeof(segment)`).
pub const SEGMENTS_PER_INDIRECT_FRAME: usize = 4096 / Segment::SIZE;
/// Sector size of every sector number and count on the ring, whatever the disk's sector size.
pub const SECTOR_SIZE: u64 = 512;
/// The last sector of a 4 KiB page (`first_sect` and `last_sect` are at most this).
pub const LAST_SECTOR_IN_PAGE: u8 = 7;

const _: () = {
    assert!(MAX_SEGMENTS_PER_REQUEST as u32 == bindings::BLKIF_MAX_SEGMENTS_PER_REQUEST);
    assert!(
        MAX_INDIRECT_PAGES_PER_REQUEST as u32 == bindings::BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST
    );
    assert!(SEGMENTS_PER_INDIRECT_FRAME == 512);
};

/// A request's operation (`BLKIF_OP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// Read sectors into the granted segments.
    Read = 0,
    /// Write sectors from the granted segments.
    Write = 1,
    /// Write with barrier semantics (`feature-barrier`).
    WriteBarrier = 2,
    /// Flush the disk's write cache (`feature-flush-cache`).
    FlushDiskcache = 3,
    /// Reserved: was used by a deprecated interface.
    Reserved1 = 4,
    /// Discard sectors (`feature-discard`); the slot is a [`DiscardRequest`].
    Discard = 5,
    /// Segments live in granted indirect pages; the slot is an [`IndirectRequest`].
    Indirect = 6,
}

const _: () = {
    assert!(Op::Read as u32 == bindings::BLKIF_OP_READ);
    assert!(Op::Write as u32 == bindings::BLKIF_OP_WRITE);
    assert!(Op::WriteBarrier as u32 == bindings::BLKIF_OP_WRITE_BARRIER);
    assert!(Op::FlushDiskcache as u32 == bindings::BLKIF_OP_FLUSH_DISKCACHE);
    assert!(Op::Reserved1 as u32 == bindings::BLKIF_OP_RESERVED_1);
    assert!(Op::Discard as u32 == bindings::BLKIF_OP_DISCARD);
    assert!(Op::Indirect as u32 == bindings::BLKIF_OP_INDIRECT);
};

impl TryFrom<u8> for Op {
    type Error = Unknown<u8>;
    fn try_from(raw: u8) -> Result<Self, Self::Error> {
        Ok(match raw {
            0 => Op::Read,
            1 => Op::Write,
            2 => Op::WriteBarrier,
            3 => Op::FlushDiskcache,
            4 => Op::Reserved1,
            5 => Op::Discard,
            6 => Op::Indirect,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<Op> for u8 {
    fn from(op: Op) -> u8 {
        op as u8
    }
}

/// A response's status (`BLKIF_RSP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum Status {
    /// The operation succeeded.
    Okay = 0,
    /// The operation failed.
    Error = -1,
    /// The backend does not support the operation.
    Eopnotsupp = -2,
}

const _: () = {
    assert!(Status::Okay as i32 == bindings::BLKIF_RSP_OKAY as i32);
    assert!(Status::Error as i32 == bindings::BLKIF_RSP_ERROR);
    assert!(Status::Eopnotsupp as i32 == bindings::BLKIF_RSP_EOPNOTSUPP);
};

impl TryFrom<i16> for Status {
    type Error = Unknown<i16>;
    fn try_from(raw: i16) -> Result<Self, Unknown<i16>> {
        Ok(match raw {
            0 => Status::Okay,
            -1 => Status::Error,
            -2 => Status::Eopnotsupp,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<Status> for i16 {
    fn from(status: Status) -> i16 {
        status as i16
    }
}

bitflags::bitflags! {
    /// The `flag` byte of a [`DiscardRequest`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct DiscardFlags: u8 {
        /// Discard securely (`BLKIF_DISCARD_SECURE`); ignored unless the backend offers
        /// `discard-secure`.
        const SECURE = 1 << 0;
    }
}

const _: () = assert!(DiscardFlags::SECURE.bits() as u32 == bindings::BLKIF_DISCARD_SECURE);

bitflags::bitflags! {
    /// The backend's `info` key (`VDISK_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VdiskInfo: u32 {
        /// The device is a CD-ROM.
        const CDROM = 1 << 0;
        /// The medium is removable.
        const REMOVABLE = 1 << 1;
        /// The device is read-only.
        const READONLY = 1 << 2;
    }
}

const _: () = {
    assert!(VdiskInfo::CDROM.bits() == bindings::VDISK_CDROM);
    assert!(VdiskInfo::REMOVABLE.bits() == bindings::VDISK_REMOVABLE);
    assert!(VdiskInfo::READONLY.bits() == bindings::VDISK_READONLY);
};

wire_struct! {
    /// One granted page of a request (`struct blkif_request_segment`): sectors
    /// `first_sect..=last_sect` of the page, in 512-byte units.
    pub struct Segment (8 bytes, like bindings::blkif_request_segment) {
        /// Grant reference of the data page.
        pub gref: u32 => gref,
        /// First sector of the page to transfer.
        pub first_sect: u8 => first_sect,
        /// Last sector of the page to transfer (inclusive).
        pub last_sect: u8 => last_sect,
        _pad: u16,
    }
}

wire_struct! {
    /// A read/write/barrier/flush request (`struct blkif_request`), the ring's request type.
    pub struct Request (112 bytes, like bindings::blkif_request) {
        /// An [`Op`] (raw: the peer may send anything).
        pub operation: u8 => operation,
        /// Segments in use in `seg`.
        pub nr_segments: u8 => nr_segments,
        /// The virtual device handle.
        pub handle: u16 => handle,
        _pad: u32,
        /// The frontend's cookie, echoed in the response.
        pub id: u64 => id,
        /// First sector, in 512-byte units.
        pub sector_number: u64 => sector_number,
        /// The data segments; only the first `nr_segments` are meaningful.
        pub seg: [Segment; MAX_SEGMENTS_PER_REQUEST] => seg,
    }
}

wire_struct! {
    /// A discard request (`struct blkif_request_discard`), carried in a [`Request`] slot.
    pub struct DiscardRequest (32 bytes, like bindings::blkif_request_discard) {
        /// [`Op::Discard`].
        pub operation: u8 => operation,
        /// [`DiscardFlags`] bits.
        pub flag: u8 => flag,
        /// The virtual device handle.
        pub handle: u16 => handle,
        _pad: u32,
        /// The frontend's cookie, echoed in the response.
        pub id: u64 => id,
        /// First sector to discard, in 512-byte units.
        pub sector_number: u64 => sector_number,
        /// Number of 512-byte sectors to discard.
        pub nr_sectors: u64 => nr_sectors,
    }
}

wire_struct! {
    /// An indirect request (`struct blkif_request_indirect`), carried in a [`Request`] slot:
    /// the segments live in up to [`MAX_INDIRECT_PAGES_PER_REQUEST`] granted pages of
    /// [`SEGMENTS_PER_INDIRECT_FRAME`] [`Segment`]s each.
    pub struct IndirectRequest (64 bytes, like bindings::blkif_request_indirect) {
        /// [`Op::Indirect`].
        pub operation: u8 => operation,
        /// The real operation, [`Op::Read`] or [`Op::Write`].
        pub indirect_op: u8 => indirect_op,
        /// Segments in the indirect pages.
        pub nr_segments: u16 => nr_segments,
        _pad0: u32,
        /// The frontend's cookie, echoed in the response.
        pub id: u64 => id,
        /// First sector, in 512-byte units.
        pub sector_number: u64 => sector_number,
        /// The virtual device handle.
        pub handle: u16 => handle,
        _pad1: u16,
        /// Grant references of the pages holding the segments.
        pub indirect_grefs: [u32; MAX_INDIRECT_PAGES_PER_REQUEST] => indirect_grefs,
        _pad2: u32,
    }
}

wire_struct! {
    /// A response (`struct blkif_response`).
    pub struct Response (16 bytes, like bindings::blkif_response) {
        /// The request's `id`.
        pub id: u64 => id,
        /// The request's `operation`.
        pub operation: u8 => operation,
        _pad0: u8,
        /// A [`Status`] (raw: the peer may send anything).
        pub status: i16 => status,
        _pad1: u32,
    }
}

impl Request {
    /// This slot read as a discard request (meaningful when `operation` is [`Op::Discard`]).
    pub fn to_discard(&self) -> DiscardRequest {
        DiscardRequest::from_bytes(&resize(&self.to_bytes()))
    }

    /// This slot read as an indirect request (meaningful when `operation` is
    /// [`Op::Indirect`]).
    pub fn to_indirect(&self) -> IndirectRequest {
        IndirectRequest::from_bytes(&resize(&self.to_bytes()))
    }
}

impl From<DiscardRequest> for Request {
    /// The slot image of a discard request; bytes past it are zero.
    fn from(discard: DiscardRequest) -> Request {
        Request::from_bytes(&resize(&discard.to_bytes()))
    }
}

impl From<IndirectRequest> for Request {
    /// The slot image of an indirect request; bytes past it are zero.
    fn from(indirect: IndirectRequest) -> Request {
        Request::from_bytes(&resize(&indirect.to_bytes()))
    }
}

// The variants fit in a request slot, so `resize` never drops bytes of a variant.
const _: () = {
    assert!(DiscardRequest::SIZE <= Request::SIZE);
    assert!(IndirectRequest::SIZE <= Request::SIZE);
};

/// The first `N` bytes of `bytes`, zero-filled past its end.
fn resize<const M: usize, const N: usize>(bytes: &[u8; M]) -> [u8; N] {
    core::array::from_fn(|i| bytes.get(i).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discard_round_trips_through_a_request_slot() {
        let mut d = DiscardRequest::ZERO;
        d.operation = Op::Discard.into();
        d.flag = DiscardFlags::SECURE.bits();
        d.handle = 0x1234;
        d.id = 0xdead_beef_0000_0001;
        d.sector_number = 77;
        d.nr_sectors = 0x0102_0304_0506_0708;
        let slot = Request::from(d);
        assert_eq!(slot.to_discard(), d);
        assert_eq!(slot.id, d.id);
        assert_eq!(slot.sector_number, d.sector_number);
        // nr_sectors overlays seg[0]; the rest of the slot is zero.
        assert_eq!(&slot.to_bytes()[32..], &[0u8; 80][..]);
    }

    #[test]
    fn indirect_round_trips_through_a_request_slot() {
        let mut r = IndirectRequest::ZERO;
        r.operation = Op::Indirect.into();
        r.indirect_op = Op::Write.into();
        r.nr_segments = 4096;
        r.id = 9;
        r.sector_number = 1 << 40;
        r.handle = 51712;
        r.indirect_grefs = [1, 2, 3, 4, 5, 6, 7, 0xffff_ffff];
        let slot = Request::from(r);
        assert_eq!(slot.to_indirect(), r);
        assert_eq!(slot.id, 9);
    }

    #[test]
    fn request_image_puts_fields_at_abi_offsets() {
        let mut r = Request::ZERO;
        r.operation = 1;
        r.nr_segments = 2;
        r.handle = 0x0304;
        r.id = 0x0102_0304_0506_0708;
        r.seg[10].gref = 0xaabb_ccdd;
        r.seg[10].last_sect = 7;
        let b = r.to_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(b[1], 2);
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 0x0304);
        assert_eq!(&b[4..8], &[0; 4]);
        assert_eq!(u64::from_ne_bytes(b[8..16].try_into().unwrap()), r.id);
        assert_eq!(
            u32::from_ne_bytes(b[104..108].try_into().unwrap()),
            0xaabb_ccdd
        );
        assert_eq!(b[109], 7);
        assert_eq!(Request::from_bytes(&b), r);
    }

    #[test]
    fn peer_padding_survives_decode_but_zero_has_none() {
        let mut b = [0xffu8; 16];
        b[0] = 1;
        let rsp = Response::from_bytes(&b);
        assert_eq!(rsp.to_bytes(), b);
        assert_eq!(Response::ZERO.to_bytes(), [0u8; 16]);
    }

    #[test]
    fn unknown_op_and_status_are_errors_not_panics() {
        for raw in 7..=u8::MAX {
            assert_eq!(Op::try_from(raw), Err(Unknown(raw)));
        }
        for raw in 0..=6u8 {
            assert_eq!(u8::from(Op::try_from(raw).unwrap()), raw);
        }
        assert_eq!(Status::try_from(-3), Err(Unknown(-3)));
        assert_eq!(Status::try_from(i16::MIN), Err(Unknown(i16::MIN)));
        assert_eq!(Status::try_from(-2), Ok(Status::Eopnotsupp));
    }
}
