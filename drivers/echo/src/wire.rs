//! The echo ring's wire structs, codes and checksum, and the validating parsers of both ends.
//!
//! Both structs are `#[repr(C)]` with every padding byte spelled out as a field, so a slot
//! copied to the peer carries nothing we did not write (the [`impl_slot!`] check proves there
//! is no hidden padding), and their sizes and offsets are pinned by compile-time assertions.

use xen_ring::{impl_slot, Geometry, PAGE_SIZE};
use xen_sys::GrantRef;

/// A request as it sits in a ring slot (24 bytes).
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `id` | chosen by the front, echoed in the response |
/// | 8 | `gref` | grant of the data page (read-only is enough) |
/// | 12 | `rsp_gref` | grant of the page [`Op::Complement`] writes into (read-write); 0 otherwise |
/// | 16 | `offset` | first byte of the data in both pages |
/// | 18 | `len` | bytes of data; `offset + len <= 4096` |
/// | 20 | `op` | an [`Op`] code |
/// | 21 | `pad` | zero |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RequestWire {
    /// Request id, echoed in the response.
    pub id: u64,
    /// Grant reference of the data page.
    pub gref: u32,
    /// Grant reference of the response page ([`Op::Complement`] only, else 0).
    pub rsp_gref: u32,
    /// Offset of the data in the page(s).
    pub offset: u16,
    /// Length of the data.
    pub len: u16,
    /// Operation code.
    pub op: u8,
    /// Zero.
    pub pad: [u8; 3],
}
impl_slot!(RequestWire {
    id,
    gref,
    rsp_gref,
    offset,
    len,
    op,
    pad
});

/// A response as it sits in a ring slot (16 bytes).
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `id` | the request's id |
/// | 8 | `checksum` | [`checksum`] of the data the back read ([`Status::Okay`] only) |
/// | 12 | `status` | a [`Status`] code |
/// | 14 | `op` | the request's op |
/// | 15 | `pad` | zero |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ResponseWire {
    /// The request's id.
    pub id: u64,
    /// Checksum of the data read.
    pub checksum: u32,
    /// Status code.
    pub status: i16,
    /// The request's op.
    pub op: u8,
    /// Zero.
    pub pad: u8,
}
impl_slot!(ResponseWire {
    id,
    checksum,
    status,
    op,
    pad
});

const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<RequestWire>() == 24);
    assert!(align_of::<RequestWire>() == 8);
    assert!(offset_of!(RequestWire, id) == 0);
    assert!(offset_of!(RequestWire, gref) == 8);
    assert!(offset_of!(RequestWire, rsp_gref) == 12);
    assert!(offset_of!(RequestWire, offset) == 16);
    assert!(offset_of!(RequestWire, len) == 18);
    assert!(offset_of!(RequestWire, op) == 20);
    assert!(offset_of!(RequestWire, pad) == 21);
    assert!(size_of::<ResponseWire>() == 16);
    assert!(offset_of!(ResponseWire, id) == 0);
    assert!(offset_of!(ResponseWire, checksum) == 8);
    assert!(offset_of!(ResponseWire, status) == 12);
    assert!(offset_of!(ResponseWire, op) == 14);
    assert!(offset_of!(ResponseWire, pad) == 15);
};

/// The largest ring: `2^MAX_RING_PAGE_ORDER` pages (16, as Linux allows for blkif).
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// Slots in a ring of `2^order` pages: 128 per page; 0 for an order above
/// [`MAX_RING_PAGE_ORDER`].
pub const fn ring_entries(order: u32) -> u32 {
    if order > MAX_RING_PAGE_ORDER {
        return 0;
    }
    let pages = 1usize << order;
    match Geometry::new::<RequestWire, ResponseWire>(pages * PAGE_SIZE) {
        Ok(g) => g.entries(),
        Err(_) => 0,
    }
}

const _: () = {
    assert!(ring_entries(0) == 128);
    assert!(ring_entries(MAX_RING_PAGE_ORDER) == 2048);
    assert!(ring_entries(MAX_RING_PAGE_ORDER + 1) == 0);
};

/// What the back does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// Nothing: no grant is touched; `gref`, `rsp_gref`, `offset`, `len` are 0.
    Nop = 0,
    /// Read the data and return its [`checksum`].
    Checksum = 1,
    /// Read the data, write its byte-wise complement at the same offset of the `rsp_gref`
    /// page, and return the checksum of what was read. Needs `feature-complement`.
    Complement = 2,
}

impl Op {
    /// The op for a wire code.
    pub fn from_code(code: u8) -> Option<Op> {
        match code {
            0 => Some(Op::Nop),
            1 => Some(Op::Checksum),
            2 => Some(Op::Complement),
            _ => None,
        }
    }
}

impl From<Op> for u8 {
    fn from(op: Op) -> u8 {
        op as u8
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum Status {
    /// Done; `checksum` is valid.
    Okay = 0,
    /// The back could not do it (a grant failed to map).
    Error = -1,
    /// The request was malformed (bad grant, offset, length or padding).
    Invalid = -2,
    /// Unknown op, or an op the back did not offer.
    Unsupported = -3,
}

impl Status {
    /// The status for a wire code.
    pub fn from_code(code: i16) -> Option<Status> {
        match code {
            0 => Some(Status::Okay),
            -1 => Some(Status::Error),
            -2 => Some(Status::Invalid),
            -3 => Some(Status::Unsupported),
            _ => None,
        }
    }
}

impl From<Status> for i16 {
    fn from(s: Status) -> i16 {
        s as i16
    }
}

/// The checksum of the protocol: 32-bit FNV-1a.
pub fn checksum(data: &[u8]) -> u32 {
    let mut state = Checksum::new();
    state.update(data);
    state.finish()
}

/// An incremental [`checksum`], for data processed in chunks.
#[derive(Clone, Copy, Debug)]
pub struct Checksum(u32);

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

impl Checksum {
    /// The checksum of nothing.
    pub const fn new() -> Checksum {
        Checksum(0x811c_9dc5)
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }

    /// The value.
    pub const fn finish(self) -> u32 {
        self.0
    }
}

/// A byte range of one granted page.
///
/// # Invariants
///
/// `offset + len <= PAGE_SIZE`, `len > 0`, and `gref` is not a reserved reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    gref: GrantRef,
    offset: u16,
    len: u16,
}

impl Extent {
    fn new(gref: u32, offset: u16, len: u16) -> Result<Extent, Invalid> {
        let gref = GrantRef::new(gref);
        if gref.is_reserved() {
            return Err(Invalid::ReservedGrant);
        }
        if len == 0 {
            return Err(Invalid::Empty);
        }
        let end = usize::from(offset) + usize::from(len);
        if end > PAGE_SIZE {
            return Err(Invalid::CrossesPage);
        }
        // INVARIANT: checked just above.
        Ok(Extent { gref, offset, len })
    }

    /// The page's grant.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }

    /// The first byte.
    pub fn offset(&self) -> usize {
        usize::from(self.offset)
    }

    /// The length, at least 1.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Never true (an extent has at least one byte); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A request that passed every check: what the back acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// [`Op::Nop`].
    Nop,
    /// [`Op::Checksum`] of `data`.
    Checksum {
        /// Where to read.
        data: Extent,
    },
    /// [`Op::Complement`] of `data` into the same range of `out`.
    Complement {
        /// Where to read.
        data: Extent,
        /// The page to write.
        out: GrantRef,
    },
}

/// Why a request was refused. Each is answered with a status, never acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// An op code we do not know (answered [`Status::Unsupported`]).
    UnknownOp(u8),
    /// A known op the back did not offer (answered [`Status::Unsupported`]).
    NotOffered(Op),
    /// A grant reference below `GNTTAB_NR_RESERVED_ENTRIES`.
    ReservedGrant,
    /// `offset + len` beyond the page.
    CrossesPage,
    /// A data op with `len` 0.
    Empty,
    /// A field that must be zero is not (padding, or a grant/offset/len of a Nop, or a
    /// `rsp_gref` of a Checksum).
    NonZero,
    /// A complement whose output page is the data page.
    SamePage,
}

impl Invalid {
    /// The status to answer.
    pub fn status(self) -> Status {
        match self {
            Invalid::UnknownOp(_) | Invalid::NotOffered(_) => Status::Unsupported,
            _ => Status::Invalid,
        }
    }
}

impl Request {
    /// Validates a request copied out of the ring. Every check happens here, before the back
    /// maps anything. `complement` says whether the back offered [`Op::Complement`].
    pub fn parse(wire: &RequestWire, complement: bool) -> Result<Request, Invalid> {
        let op = Op::from_code(wire.op).ok_or(Invalid::UnknownOp(wire.op))?;
        if wire.pad != [0; 3] {
            return Err(Invalid::NonZero);
        }
        match op {
            Op::Nop => {
                if wire.gref != 0 || wire.rsp_gref != 0 || wire.offset != 0 || wire.len != 0 {
                    return Err(Invalid::NonZero);
                }
                Ok(Request::Nop)
            }
            Op::Checksum => {
                if wire.rsp_gref != 0 {
                    return Err(Invalid::NonZero);
                }
                let data = Extent::new(wire.gref, wire.offset, wire.len)?;
                Ok(Request::Checksum { data })
            }
            Op::Complement => {
                if !complement {
                    return Err(Invalid::NotOffered(op));
                }
                let data = Extent::new(wire.gref, wire.offset, wire.len)?;
                let out = GrantRef::new(wire.rsp_gref);
                if out.is_reserved() {
                    return Err(Invalid::ReservedGrant);
                }
                if out == data.gref {
                    return Err(Invalid::SamePage);
                }
                Ok(Request::Complement { data, out })
            }
        }
    }

    /// The op.
    pub fn op(&self) -> Op {
        match self {
            Request::Nop => Op::Nop,
            Request::Checksum { .. } => Op::Checksum,
            Request::Complement { .. } => Op::Complement,
        }
    }
}

/// A response whose fields are all known values (the front still checks the id against
/// what it has outstanding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The id.
    pub id: u64,
    /// The op it claims to answer.
    pub op: Op,
    /// The status.
    pub status: Status,
    /// The checksum (meaningful for [`Status::Okay`]).
    pub checksum: u32,
}

/// Why a response was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadResponse {
    /// A status code the protocol does not define.
    UnknownStatus(i16),
    /// An op code the protocol does not define.
    UnknownOp(u8),
    /// Non-zero padding.
    NonZero,
}

impl Response {
    /// Validates a response copied out of the ring.
    pub fn parse(wire: &ResponseWire) -> Result<Response, BadResponse> {
        let status =
            Status::from_code(wire.status).ok_or(BadResponse::UnknownStatus(wire.status))?;
        let op = Op::from_code(wire.op).ok_or(BadResponse::UnknownOp(wire.op))?;
        if wire.pad != 0 {
            return Err(BadResponse::NonZero);
        }
        Ok(Response {
            id: wire.id,
            op,
            status,
            checksum: wire.checksum,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> ResponseWire {
        ResponseWire {
            id: self.id,
            checksum: self.checksum,
            status: self.status.into(),
            op: self.op.into(),
            pad: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: u8, gref: u32, rsp_gref: u32, offset: u16, len: u16) -> RequestWire {
        RequestWire {
            id: 7,
            gref,
            rsp_gref,
            offset,
            len,
            op,
            pad: [0; 3],
        }
    }

    #[test]
    fn rejects_extent_crossing_the_page() {
        assert_eq!(
            Request::parse(&req(1, 9, 0, 4000, 97), true),
            Err(Invalid::CrossesPage)
        );
        assert_eq!(
            Request::parse(&req(1, 9, 0, u16::MAX, u16::MAX), true),
            Err(Invalid::CrossesPage)
        );
        assert!(Request::parse(&req(1, 9, 0, 4000, 96), true).is_ok());
    }

    #[test]
    fn rejects_reserved_grant_references() {
        assert_eq!(
            Request::parse(&req(1, 1, 0, 0, 8), true),
            Err(Invalid::ReservedGrant)
        );
        assert_eq!(
            Request::parse(&req(2, 9, 0, 0, 8), true),
            Err(Invalid::ReservedGrant)
        );
    }

    #[test]
    fn rejects_zero_length_and_nonzero_padding() {
        assert_eq!(
            Request::parse(&req(1, 9, 0, 0, 0), true),
            Err(Invalid::Empty)
        );
        let mut w = req(1, 9, 0, 0, 8);
        w.pad[2] = 1;
        assert_eq!(Request::parse(&w, true), Err(Invalid::NonZero));
        assert_eq!(
            Request::parse(&req(0, 9, 0, 0, 0), true),
            Err(Invalid::NonZero)
        );
        assert_eq!(
            Request::parse(&req(1, 9, 10, 0, 8), true),
            Err(Invalid::NonZero)
        );
    }

    #[test]
    fn unknown_or_unoffered_op_is_unsupported() {
        let e = Request::parse(&req(3, 9, 0, 0, 8), true).unwrap_err();
        assert_eq!(
            (e, e.status()),
            (Invalid::UnknownOp(3), Status::Unsupported)
        );
        let e = Request::parse(&req(2, 9, 10, 0, 8), false).unwrap_err();
        assert_eq!(e.status(), Status::Unsupported);
        assert_eq!(
            Request::parse(&req(2, 9, 9, 0, 8), true),
            Err(Invalid::SamePage)
        );
    }

    #[test]
    fn response_with_unknown_status_is_refused() {
        let mut w = ResponseWire {
            id: 1,
            checksum: 0,
            status: -4,
            op: 1,
            pad: 0,
        };
        assert_eq!(Response::parse(&w), Err(BadResponse::UnknownStatus(-4)));
        w.status = 0;
        w.op = 9;
        assert_eq!(Response::parse(&w), Err(BadResponse::UnknownOp(9)));
        w.op = 1;
        assert!(Response::parse(&w).is_ok());
    }

    #[test]
    fn checksum_is_fnv1a() {
        assert_eq!(checksum(b""), 0x811c_9dc5);
        assert_eq!(checksum(b"a"), 0xe40c_292c);
        let mut c = Checksum::new();
        c.update(b"foo");
        c.update(b"bar");
        assert_eq!(c.finish(), checksum(b"foobar"));
    }
}
