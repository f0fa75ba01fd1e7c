//! Validation of a vscsiif request copied out of the ring: [`Request::parse`] checks every
//! field against the negotiated [`Limits`] and the LUN table before anything else happens.
//!
//! What is checked, in order (the first failure is the answer):
//!
//! - the action is `SCSI_CDB`, `ABORT` or `RESET` (`SG_PRESET` and unknown values are refused);
//! - the request id is within [`Limits::max_rqid`];
//! - the virtual address (channel, target, LUN) names a LUN of the current table;
//! - for a CDB: `cmd_len` is 1 to 16 and at least the length the operation code's group
//!   implies (6, 10, 12 or 16 bytes; groups 3, 6 and 7 are variable or vendor specific and only
//!   bounded by 16); the data direction is one of the four DMA values; a `DMA_NONE` command
//!   carries no segment;
//! - direct segments: at most [`SG_TABLESIZE`] and the negotiated maximum, each non-empty and
//!   inside its page (`offset + length <= 4096`);
//! - indirect segments (`VSCSIIF_SG_GRANT`, only when `feature-sg-grant` was negotiated): 1 to
//!   [`SG_TABLESIZE`] descriptor pages, each slot a whole number of descriptors inside its page,
//!   and the descriptors they announce within the negotiated maximum. The descriptors
//!   themselves live in pages the frontend still controls: the backend copies them out once
//!   and checks the copies with [`check_descriptors`].
//!
//! Task-management requests (`ABORT`, `RESET`) carry no data; their segment fields are
//! ignored, never mapped.

use xen_sys::wire::vscsiif::{self as wire, Act, MAX_COMMAND_SIZE, SG_GRANT, SG_TABLESIZE};

/// Bytes in a granted page.
pub const PAGE_SIZE: u32 = 4096;

/// What requests are checked against, from negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most data segments per request: [`SG_TABLESIZE`] without `feature-sg-grant`, otherwise
    /// what the backend offered (and can hold).
    pub max_segments: u32,
    /// Whether `VSCSIIF_SG_GRANT` (descriptor pages) may be used (`feature-sg-grant` offered).
    pub indirect: bool,
    /// Largest request id accepted (the protocol treats `rqid` as an opaque cookie; a backend
    /// that wants Linux's scsifront numbering bounds it at the ring size minus one).
    pub max_rqid: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_segments: SG_TABLESIZE as u32,
            indirect: false,
            max_rqid: u16::MAX,
        }
    }
}

/// A virtual SCSI address as a request names it (the `v-dev` without its host number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VAddr {
    /// Channel (bus).
    pub channel: u16,
    /// Target id.
    pub id: u16,
    /// Logical unit.
    pub lun: u16,
}

/// Finds the LUN a request addresses.
pub trait Luns {
    /// The handle (`N` of `vscsi-devs/dev-N`) of the connected LUN at `addr`, if any.
    fn find(&self, addr: VAddr) -> Option<u32>;
}

/// The data direction of a command (`sc_data_direction`, Linux's `enum dma_data_direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Both ways (`DMA_BIDIRECTIONAL`, 0).
    Bidirectional,
    /// Guest memory to the device: a write (`DMA_TO_DEVICE`, 1).
    ToDevice,
    /// The device to guest memory: a read (`DMA_FROM_DEVICE`, 2).
    FromDevice,
    /// No data (`DMA_NONE`, 3).
    None,
}

impl Direction {
    /// The wire value.
    pub fn raw(self) -> u8 {
        match self {
            Direction::Bidirectional => 0,
            Direction::ToDevice => 1,
            Direction::FromDevice => 2,
            Direction::None => 3,
        }
    }

    /// Whether the device writes into the guest's pages (so they are mapped writable).
    pub fn device_writes(self) -> bool {
        matches!(self, Direction::Bidirectional | Direction::FromDevice)
    }
}

impl TryFrom<u8> for Direction {
    type Error = Invalid;
    fn try_from(raw: u8) -> Result<Self, Invalid> {
        Ok(match raw {
            0 => Direction::Bidirectional,
            1 => Direction::ToDevice,
            2 => Direction::FromDevice,
            3 => Direction::None,
            other => return Err(Invalid::Direction(other)),
        })
    }
}

/// One data range in a granted page, checked: non-empty and inside the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The page's grant.
    pub gref: u32,
    /// Offset in the page.
    pub offset: u16,
    /// Bytes.
    pub length: u16,
}

impl Segment {
    /// Checks a descriptor: non-empty, `offset + length <= 4096`.
    pub fn check(raw: &wire::Segment) -> Result<Segment, Invalid> {
        if raw.length == 0 || u32::from(raw.offset) + u32::from(raw.length) > PAGE_SIZE {
            return Err(Invalid::SegmentOutsidePage);
        }
        Ok(Segment {
            gref: raw.gref,
            offset: raw.offset,
            length: raw.length,
        })
    }
}

/// Where a command's data segments are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segments {
    /// In the request itself: the first `count` of `seg`, each checked.
    Direct {
        /// Segments used.
        count: u8,
        /// The segments (past `count`: zero).
        seg: [Segment; SG_TABLESIZE],
    },
    /// In granted pages of descriptors: slot `i` of `pages` names the descriptors at
    /// `offset..offset + length` of page `gref` (each checked inside its page, a whole number
    /// of descriptors).
    Indirect {
        /// Descriptor pages used.
        count: u8,
        /// The descriptor ranges (past `count`: zero).
        pages: [Segment; SG_TABLESIZE],
        /// Descriptors they hold together (1 to the negotiated maximum).
        total: u32,
    },
}

impl Segments {
    /// Data segments the command has (for indirect, the announced descriptors).
    pub fn total(&self) -> u32 {
        match self {
            Segments::Direct { count, .. } => u32::from(*count),
            Segments::Indirect { total, .. } => *total,
        }
    }

    /// The direct segments (empty for indirect).
    pub fn direct(&self) -> &[Segment] {
        match self {
            Segments::Direct { count, seg } => seg.get(..usize::from(*count)).unwrap_or(&[]),
            Segments::Indirect { .. } => &[],
        }
    }

    /// The descriptor pages (empty for direct).
    pub fn indirect_pages(&self) -> &[Segment] {
        match self {
            Segments::Indirect { count, pages, .. } => {
                pages.get(..usize::from(*count)).unwrap_or(&[])
            }
            Segments::Direct { .. } => &[],
        }
    }
}

/// A validated SCSI command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cdb {
    /// The CDB; bytes past `len` are zero.
    pub bytes: [u8; MAX_COMMAND_SIZE],
    /// Valid bytes (1 to 16).
    pub len: u8,
    /// Data direction.
    pub direction: Direction,
    /// Data segments (none for [`Direction::None`]).
    pub segments: Segments,
}

impl Cdb {
    /// The valid CDB bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// What a validated request asks for.
// `Cdb` is copied once per request on the stack (about 240 bytes); boxing is not an option
// in `no_std` without an allocator.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Run a command.
    Cdb(Cdb),
    /// Abort the command the frontend named `ref_rqid`.
    Abort {
        /// The request to abort.
        ref_rqid: u16,
    },
    /// Reset the LUN.
    Reset,
}

/// A request that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The frontend's cookie, echoed in the response.
    pub rqid: u16,
    /// The address it named.
    pub addr: VAddr,
    /// The LUN's handle in the table.
    pub lun: u32,
    /// What to do.
    pub body: Body,
}

/// Why a request was refused. Each maps to the response's result ([`Invalid::result`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `act` is not one this protocol version serves.
    UnknownAct(u8),
    /// `act` is the deprecated `SG_PRESET`.
    SgPreset,
    /// `rqid` above [`Limits::max_rqid`].
    RqidOutOfRange(u16),
    /// No connected LUN at the address.
    UnknownLun(VAddr),
    /// `cmd_len` is 0 or above 16.
    CmdLen(u8),
    /// `cmd_len` is shorter than the operation code's group requires.
    CdbTooShort {
        /// The operation code.
        opcode: u8,
        /// `cmd_len`.
        len: u8,
    },
    /// `sc_data_direction` is not a DMA direction.
    Direction(u8),
    /// A `DMA_NONE` command carries segments.
    DataWithoutDirection,
    /// More segments (or descriptor pages) than allowed.
    TooManySegments,
    /// `VSCSIIF_SG_GRANT` without `feature-sg-grant`.
    IndirectNotNegotiated,
    /// A descriptor-page slot that is empty or not a whole number of descriptors.
    BadIndirectPage,
    /// A segment that is empty or crosses its page's end.
    SegmentOutsidePage,
    /// The request id is already in use by a command in flight (backend check).
    RqidInFlight(u16),
}

impl Invalid {
    /// The `rslt` the refusal is answered with: task-management requests get
    /// `RESET_FAILED`; a command to an absent LUN gets the host byte `NO_CONNECT` (as Linux's
    /// backend answers), anything else the host byte `ERROR`.
    pub fn result(self, act: u8) -> i32 {
        if act == u8::from(Act::ScsiAbort) || act == u8::from(Act::ScsiReset) {
            return wire::RSLT_RESET_FAILED;
        }
        let host = match self {
            Invalid::UnknownLun(_) => wire::RSLT_HOST_NO_CONNECT,
            _ => wire::RSLT_HOST_ERROR,
        };
        rslt(host, 0)
    }
}

/// The `rslt` of a host byte and a SCSI status byte (`XEN_VSCSIIF_RSLT_HOST`,
/// `XEN_VSCSIIF_RSLT_STATUS`).
pub fn rslt(host: u8, status: u8) -> i32 {
    (i32::from(host) << 16) | i32::from(status)
}

/// The CDB length an operation code's group implies (SPC: the top three bits), or `None` for
/// the variable-length and vendor-specific groups.
pub fn group_len(opcode: u8) -> Option<u8> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

impl Request {
    /// Validates a request copied out of the ring (see the module doc). Nothing is mapped or
    /// started before this returns `Ok`.
    pub fn parse<L: Luns + ?Sized>(
        w: &wire::Request,
        limits: &Limits,
        luns: &L,
    ) -> Result<Request, Invalid> {
        let act = match Act::try_from(w.act) {
            Ok(Act::ScsiSgPreset) => return Err(Invalid::SgPreset),
            Ok(a) => a,
            Err(_) => return Err(Invalid::UnknownAct(w.act)),
        };
        if w.rqid > limits.max_rqid {
            return Err(Invalid::RqidOutOfRange(w.rqid));
        }
        let addr = VAddr {
            channel: w.channel,
            id: w.id,
            lun: w.lun,
        };
        let lun = luns.find(addr).ok_or(Invalid::UnknownLun(addr))?;
        let body = match act {
            Act::ScsiAbort => Body::Abort {
                ref_rqid: w.ref_rqid,
            },
            Act::ScsiReset => Body::Reset,
            // Refused above; listed for exhaustiveness.
            Act::ScsiSgPreset => return Err(Invalid::SgPreset),
            Act::ScsiCdb => Body::Cdb(parse_cdb(w, limits)?),
        };
        Ok(Request {
            rqid: w.rqid,
            addr,
            lun,
            body,
        })
    }
}

fn parse_cdb(w: &wire::Request, limits: &Limits) -> Result<Cdb, Invalid> {
    let len = w.cmd_len;
    if len == 0 || usize::from(len) > MAX_COMMAND_SIZE {
        return Err(Invalid::CmdLen(len));
    }
    let opcode = w.cmnd[0];
    if group_len(opcode).is_some_and(|need| len < need) {
        return Err(Invalid::CdbTooShort { opcode, len });
    }
    let mut bytes = [0u8; MAX_COMMAND_SIZE];
    for (d, s) in bytes.iter_mut().zip(w.cmnd.iter()).take(usize::from(len)) {
        *d = *s;
    }
    let direction = Direction::try_from(w.sc_data_direction)?;
    let segments = parse_segments(w, limits)?;
    if direction == Direction::None && segments.total() != 0 {
        return Err(Invalid::DataWithoutDirection);
    }
    Ok(Cdb {
        bytes,
        len,
        direction,
        segments,
    })
}

fn parse_segments(w: &wire::Request, limits: &Limits) -> Result<Segments, Invalid> {
    let count = w.nr_segments & !SG_GRANT;
    let n = usize::from(count);
    if n > SG_TABLESIZE {
        return Err(Invalid::TooManySegments);
    }
    let mut seg = [Segment {
        gref: 0,
        offset: 0,
        length: 0,
    }; SG_TABLESIZE];
    if w.nr_segments & SG_GRANT == 0 {
        if u32::from(count) > limits.max_segments {
            return Err(Invalid::TooManySegments);
        }
        for (d, s) in seg.iter_mut().zip(w.seg.iter()).take(n) {
            *d = Segment::check(s)?;
        }
        return Ok(Segments::Direct { count, seg });
    }
    if !limits.indirect {
        return Err(Invalid::IndirectNotNegotiated);
    }
    if n == 0 {
        return Err(Invalid::BadIndirectPage);
    }
    let desc = wire::Segment::SIZE as u32;
    let mut total = 0u32;
    for (d, s) in seg.iter_mut().zip(w.seg.iter()).take(n) {
        let page = Segment::check(s).map_err(|_| Invalid::BadIndirectPage)?;
        if u32::from(page.length) % desc != 0 {
            return Err(Invalid::BadIndirectPage);
        }
        total += u32::from(page.length) / desc;
        *d = page;
    }
    if total > limits.max_segments {
        return Err(Invalid::TooManySegments);
    }
    Ok(Segments::Indirect {
        count,
        pages: seg,
        total,
    })
}

/// Checks descriptors copied out of an indirect page (each non-empty and inside its page).
pub fn check_descriptors(descs: &[wire::Segment]) -> Result<(), Invalid> {
    descs.iter().try_for_each(|d| Segment::check(d).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One;
    impl Luns for One {
        fn find(&self, addr: VAddr) -> Option<u32> {
            (addr
                == VAddr {
                    channel: 0,
                    id: 1,
                    lun: 0,
                })
            .then_some(7)
        }
    }

    fn read10(segs: &[(u32, u16, u16)]) -> wire::Request {
        let mut w = wire::Request::ZERO;
        w.act = 1;
        w.rqid = 3;
        w.id = 1;
        w.cmd_len = 10;
        w.cmnd[0] = 0x28;
        w.sc_data_direction = 2;
        w.nr_segments = segs.len() as u8;
        for (d, &(g, o, l)) in w.seg.iter_mut().zip(segs) {
            d.gref = g;
            d.offset = o;
            d.length = l;
        }
        w
    }

    #[test]
    fn accepts_a_read() {
        let r = Request::parse(&read10(&[(5, 0, 4096)]), &Limits::default(), &One).unwrap();
        assert_eq!(r.lun, 7);
        let Body::Cdb(c) = r.body else { panic!() };
        assert_eq!(c.as_bytes().len(), 10);
        assert_eq!(c.segments.total(), 1);
    }

    #[test]
    fn cdb_length_against_group() {
        let mut w = read10(&[]);
        w.cmd_len = 6;
        assert_eq!(
            Request::parse(&w, &Limits::default(), &One),
            Err(Invalid::CdbTooShort {
                opcode: 0x28,
                len: 6
            })
        );
        w.cmd_len = 17;
        assert_eq!(
            Request::parse(&w, &Limits::default(), &One),
            Err(Invalid::CmdLen(17))
        );
        w.cmd_len = 0;
        assert_eq!(
            Request::parse(&w, &Limits::default(), &One),
            Err(Invalid::CmdLen(0))
        );
        // Vendor-specific group: any length 1..=16.
        w.cmnd[0] = 0xc0;
        w.cmd_len = 1;
        assert!(Request::parse(&w, &Limits::default(), &One).is_ok());
    }

    #[test]
    fn indirect_slots_must_hold_whole_descriptors() {
        let lim = Limits {
            max_segments: 1024,
            indirect: true,
            ..Limits::default()
        };
        let mut w = read10(&[(9, 0, 4096), (10, 8, 12)]);
        w.nr_segments |= SG_GRANT;
        assert_eq!(
            Request::parse(&w, &lim, &One),
            Err(Invalid::BadIndirectPage)
        );
        w.seg[1].length = 16;
        let r = Request::parse(&w, &lim, &One).unwrap();
        let Body::Cdb(c) = r.body else { panic!() };
        assert_eq!(c.segments.total(), 514);
        let small = Limits {
            max_segments: 513,
            ..lim
        };
        assert_eq!(
            Request::parse(&w, &small, &One),
            Err(Invalid::TooManySegments)
        );
        assert_eq!(
            Request::parse(&w, &Limits::default(), &One),
            Err(Invalid::IndirectNotNegotiated)
        );
    }
}
