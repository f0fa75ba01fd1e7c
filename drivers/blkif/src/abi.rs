//! The two request layouts a backend serves (`x86_64-abi`, `x86_32-abi`) and their ring slots.
//!
//! A 64-bit frontend writes `struct blkif_request` (112 bytes, `id` at offset 8). A 32-bit x86
//! frontend writes the same fields packed to 4-byte alignment: `id` at offset 4, every later
//! field 4 bytes earlier, 108 bytes in all; its responses are 12 bytes. The backend copies each
//! slot out of the ring once as plain bytes and converts a 32-bit image to the native
//! [`wire::Request`] with [`x86_32::to_native`] before validation, so one parser serves both.
//!
//! The ring slots are byte arrays ([`NativeSlot`], [`X86_32Slot`]): every bit pattern is valid,
//! there is no padding, and the ring geometry (a slot is the larger of request and response)
//! comes out as in C: 112-byte slots for the native ABI, 108-byte slots for `x86_32-abi`,
//! 32 of either per page.

use xen_sys::wire::blkif as wire;

/// The request layout a frontend announced in its `protocol` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Abi {
    /// `x86_64-abi`, the native layout (also what a frontend without `protocol` uses here).
    X86_64,
    /// `x86_32-abi`, a 32-bit x86 guest.
    X86_32,
}

impl Abi {
    /// The `protocol` key's value for this layout.
    pub const fn name(self) -> &'static str {
        match self {
            Abi::X86_64 => "x86_64-abi",
            Abi::X86_32 => "x86_32-abi",
        }
    }

    /// The layout a `protocol` value names, or `None` for an unknown value.
    pub fn from_name(name: &[u8]) -> Option<Abi> {
        match name {
            b"x86_64-abi" => Some(Abi::X86_64),
            b"x86_32-abi" => Some(Abi::X86_32),
            _ => None,
        }
    }
}

/// A native request slot: the bytes of a `struct blkif_request`.
pub type NativeSlot = [u8; wire::Request::SIZE];
/// A native response: the bytes of a `struct blkif_response`.
pub type NativeResponse = [u8; wire::Response::SIZE];
/// An `x86_32-abi` request slot.
pub type X86_32Slot = [u8; x86_32::REQUEST_SIZE];
/// An `x86_32-abi` response.
pub type X86_32Response = [u8; x86_32::RESPONSE_SIZE];

/// The `x86_32-abi` layouts (`struct blkif_x86_32_request` and friends in Linux's
/// `drivers/block/xen-blkback/common.h`: `__packed` unions, `id` at offset 4).
pub mod x86_32 {
    use core::mem::{align_of, offset_of, size_of};
    use xen_sys::wire::blkif as wire;

    /// Bytes in a 32-bit request slot.
    pub const REQUEST_SIZE: usize = 108;
    /// Bytes in a 32-bit response (`id` u64, `operation` u8, a pad byte, `status` i16; 4-byte
    /// aligned).
    pub const RESPONSE_SIZE: usize = 12;

    /// A read/write/flush/barrier request as a 32-bit guest lays it out.
    ///
    /// Packed to 4 bytes like the i386 C ABI: no implicit padding, `id` at 4.
    #[repr(C, packed(4))]
    #[derive(Clone, Copy, Debug)]
    pub struct Request {
        /// The raw operation.
        pub operation: u8,
        /// Segments in use.
        pub nr_segments: u8,
        /// The virtual device handle.
        pub handle: u16,
        /// The frontend's cookie.
        pub id: u64,
        /// First sector.
        pub sector_number: u64,
        /// The segments.
        pub seg: [wire::Segment; wire::MAX_SEGMENTS_PER_REQUEST],
    }

    /// A discard request as a 32-bit guest lays it out.
    #[repr(C, packed(4))]
    #[derive(Clone, Copy, Debug)]
    pub struct DiscardRequest {
        /// [`wire::Op::Discard`].
        pub operation: u8,
        /// Discard flags.
        pub flag: u8,
        /// Explicit padding (was `handle`).
        pub _pad1: u16,
        /// The frontend's cookie.
        pub id: u64,
        /// First sector.
        pub sector_number: u64,
        /// Sectors to discard.
        pub nr_sectors: u64,
    }

    /// An indirect request as a 32-bit guest lays it out.
    #[repr(C, packed(4))]
    #[derive(Clone, Copy, Debug)]
    pub struct IndirectRequest {
        /// [`wire::Op::Indirect`].
        pub operation: u8,
        /// The real operation.
        pub indirect_op: u8,
        /// Segments in the indirect pages.
        pub nr_segments: u16,
        /// The frontend's cookie.
        pub id: u64,
        /// First sector.
        pub sector_number: u64,
        /// The virtual device handle.
        pub handle: u16,
        /// Explicit padding.
        pub _pad1: u16,
        /// Grant references of the indirect pages.
        pub indirect_grefs: [u32; wire::MAX_INDIRECT_PAGES_PER_REQUEST],
        /// Explicit padding to 64 bytes.
        pub _pad2: u64,
    }

    /// A response as a 32-bit guest reads it.
    #[repr(C, packed(4))]
    #[derive(Clone, Copy, Debug)]
    pub struct Response {
        /// The request's `id`.
        pub id: u64,
        /// The request's `operation`.
        pub operation: u8,
        /// Explicit padding.
        pub _pad: u8,
        /// The status.
        pub status: i16,
    }

    // The offsets of Linux's `blkif_x86_32_request*` (packed, `operation` then the union).
    const _: () = {
        assert!(size_of::<Request>() == REQUEST_SIZE && align_of::<Request>() == 4);
        assert!(offset_of!(Request, nr_segments) == 1);
        assert!(offset_of!(Request, handle) == 2);
        assert!(offset_of!(Request, id) == 4);
        assert!(offset_of!(Request, sector_number) == 12);
        assert!(offset_of!(Request, seg) == 20);
        assert!(size_of::<DiscardRequest>() == 28);
        assert!(offset_of!(DiscardRequest, flag) == 1);
        assert!(offset_of!(DiscardRequest, id) == 4);
        assert!(offset_of!(DiscardRequest, sector_number) == 12);
        assert!(offset_of!(DiscardRequest, nr_sectors) == 20);
        assert!(size_of::<IndirectRequest>() == 64);
        assert!(offset_of!(IndirectRequest, indirect_op) == 1);
        assert!(offset_of!(IndirectRequest, nr_segments) == 2);
        assert!(offset_of!(IndirectRequest, id) == 4);
        assert!(offset_of!(IndirectRequest, sector_number) == 12);
        assert!(offset_of!(IndirectRequest, handle) == 20);
        assert!(offset_of!(IndirectRequest, indirect_grefs) == 24);
        assert!(offset_of!(IndirectRequest, _pad2) == 56);
        assert!(size_of::<Response>() == RESPONSE_SIZE && align_of::<Response>() == 4);
        assert!(offset_of!(Response, operation) == 8);
        assert!(offset_of!(Response, status) == 10);
        // The native layout is the same with 4 bytes of padding before `id`.
        assert!(wire::Request::SIZE == REQUEST_SIZE + 4);
    };

    fn u16_at(b: &[u8; REQUEST_SIZE], at: usize) -> u16 {
        let mut v = [0u8; 2];
        if let Some(src) = b.get(at..at + 2) {
            v.copy_from_slice(src);
        }
        u16::from_ne_bytes(v)
    }

    fn u32_at(b: &[u8; REQUEST_SIZE], at: usize) -> u32 {
        let mut v = [0u8; 4];
        if let Some(src) = b.get(at..at + 4) {
            v.copy_from_slice(src);
        }
        u32::from_ne_bytes(v)
    }

    fn u64_at(b: &[u8; REQUEST_SIZE], at: usize) -> u64 {
        let mut v = [0u8; 8];
        if let Some(src) = b.get(at..at + 8) {
            v.copy_from_slice(src);
        }
        u64::from_ne_bytes(v)
    }

    /// Converts a 32-bit request slot to the native request it means (as Linux's
    /// `blkif_get_x86_32_req` does): the variant is chosen by the operation byte, and fields the
    /// variant does not carry are zero. Pure: the slot was already copied out of the ring.
    pub fn to_native(slot: &[u8; REQUEST_SIZE]) -> wire::Request {
        let operation = slot[0];
        let id = u64_at(slot, offset_of!(Request, id));
        let sector_number = u64_at(slot, offset_of!(Request, sector_number));
        match wire::Op::try_from(operation) {
            Ok(wire::Op::Discard) => {
                let mut d = wire::DiscardRequest::ZERO;
                d.operation = operation;
                d.flag = slot[offset_of!(DiscardRequest, flag)];
                d.id = id;
                d.sector_number = sector_number;
                d.nr_sectors = u64_at(slot, offset_of!(DiscardRequest, nr_sectors));
                wire::Request::from(d)
            }
            Ok(wire::Op::Indirect) => {
                let mut r = wire::IndirectRequest::ZERO;
                r.operation = operation;
                r.indirect_op = slot[offset_of!(IndirectRequest, indirect_op)];
                r.nr_segments = u16_at(slot, offset_of!(IndirectRequest, nr_segments));
                r.id = id;
                r.sector_number = sector_number;
                r.handle = u16_at(slot, offset_of!(IndirectRequest, handle));
                let grefs = offset_of!(IndirectRequest, indirect_grefs);
                for (i, g) in r.indirect_grefs.iter_mut().enumerate() {
                    *g = u32_at(slot, grefs + 4 * i);
                }
                wire::Request::from(r)
            }
            _ => {
                let mut r = wire::Request::ZERO;
                r.operation = operation;
                r.nr_segments = slot[offset_of!(Request, nr_segments)];
                r.handle = u16_at(slot, offset_of!(Request, handle));
                r.id = id;
                r.sector_number = sector_number;
                let segs = offset_of!(Request, seg);
                for (i, s) in r.seg.iter_mut().enumerate() {
                    let mut b = [0u8; wire::Segment::SIZE];
                    let at = segs + i * wire::Segment::SIZE;
                    if let Some(src) = slot.get(at..at + wire::Segment::SIZE) {
                        b.copy_from_slice(src);
                    }
                    *s = wire::Segment::from_bytes(&b);
                }
                r
            }
        }
    }

    /// The image of a native response in the 32-bit layout.
    pub fn response(rsp: &wire::Response) -> [u8; RESPONSE_SIZE] {
        let mut out = [0u8; RESPONSE_SIZE];
        out[..8].copy_from_slice(&rsp.id.to_ne_bytes());
        out[offset_of!(Response, operation)] = rsp.operation;
        out[10..12].copy_from_slice(&rsp.status.to_ne_bytes());
        out
    }

    /// The 32-bit image of a native request (for tests and a 32-bit frontend model): the
    /// inverse of [`to_native`] for the variant the operation names.
    pub fn from_native(req: &wire::Request) -> [u8; REQUEST_SIZE] {
        let mut out = [0u8; REQUEST_SIZE];
        let native = req.to_bytes();
        // Bytes 0..4 are the same; the rest moves 4 bytes down (drop the native padding).
        out[..4].copy_from_slice(&native[..4]);
        out[4..].copy_from_slice(&native[8..]);
        if wire::Op::try_from(req.operation) == Ok(wire::Op::Indirect) {
            // The native indirect header has its own padding after `nr_segments`: the 32-bit
            // one keeps `indirect_op`/`nr_segments` at 1..4 and the rest follows `id`.
            let ind = req.to_indirect().to_bytes();
            out = [0u8; REQUEST_SIZE];
            out[..4].copy_from_slice(&ind[..4]);
            out[4..60].copy_from_slice(&ind[8..64]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_32_round_trips_every_variant() {
        let mut r = wire::Request::ZERO;
        r.operation = wire::Op::Write.into();
        r.nr_segments = 3;
        r.handle = 0x5a5a;
        r.id = 0x1122_3344_5566_7788;
        r.sector_number = 0x99;
        r.seg[2].gref = 77;
        r.seg[2].last_sect = 7;
        let img = x86_32::from_native(&r);
        assert_eq!(&img[4..12], &r.id.to_ne_bytes());
        assert_eq!(x86_32::to_native(&img), r);

        let mut d = wire::DiscardRequest::ZERO;
        d.operation = wire::Op::Discard.into();
        d.flag = 1;
        d.id = 5;
        d.sector_number = 6;
        d.nr_sectors = 7;
        let img = x86_32::from_native(&wire::Request::from(d));
        assert_eq!(&img[20..28], &7u64.to_ne_bytes());
        assert_eq!(x86_32::to_native(&img).to_discard(), d);

        let mut i = wire::IndirectRequest::ZERO;
        i.operation = wire::Op::Indirect.into();
        i.indirect_op = wire::Op::Read.into();
        i.nr_segments = 300;
        i.id = 9;
        i.sector_number = 10;
        i.handle = 11;
        i.indirect_grefs = [1, 2, 3, 4, 5, 6, 7, 8];
        let img = x86_32::from_native(&wire::Request::from(i));
        assert_eq!(&img[24..28], &1u32.to_ne_bytes());
        assert_eq!(x86_32::to_native(&img).to_indirect(), i);
    }

    #[test]
    fn x86_32_response_puts_status_at_offset_10() {
        let mut rsp = wire::Response::ZERO;
        rsp.id = u64::MAX - 1;
        rsp.operation = 6;
        rsp.status = -2;
        let img = x86_32::response(&rsp);
        assert_eq!(&img[..8], &rsp.id.to_ne_bytes());
        assert_eq!(img[8], 6);
        assert_eq!(&img[10..], &(-2i16).to_ne_bytes());
    }

    #[test]
    fn ring_geometry_matches_c() {
        use xen_ring::Geometry;
        let native = Geometry::new::<NativeSlot, NativeResponse>(4096).unwrap();
        assert_eq!((native.entries(), native.entry_size()), (32, 112));
        let i386 = Geometry::new::<X86_32Slot, X86_32Response>(4096).unwrap();
        assert_eq!((i386.entries(), i386.entry_size()), (32, 108));
        let big = Geometry::new::<NativeSlot, NativeResponse>(16 * 4096).unwrap();
        assert_eq!(big.entries(), 512);
    }
}
