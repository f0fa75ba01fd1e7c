//! The XenStore wire format of `io/xs_wire.h`: message types, the 16-byte header, error names and limits.
//!
//! Every message in either direction is a [`Header`] (`type`, `req_id`, `tx_id`, `len`, each a
//! little-endian `u32`) followed by `len` bytes of payload, `len <= PAYLOAD_MAX`. Payloads are
//! mostly sequences of NUL-terminated strings; [`fields`] and [`Strings`] split them without
//! trusting the peer to terminate anything, and [`Encoder`] builds them into a caller buffer.

use core::fmt;

use crate::num::ParseError;

pub use xen_sys::wire::xenstore::{
    MsgHeader, MsgType, ABS_PATH_MAX, CONNECTED, ERROR_COMM, ERROR_NONE, ERROR_PROTO,
    ERROR_RINGIDX, PAYLOAD_MAX, RECONNECT, REL_PATH_MAX, RING_SIZE, SERVER_FEATURE_ERROR,
    SERVER_FEATURE_RECONNECTION,
};

/// Size of the message header (`struct xsd_sockmsg`).
pub const HEADER_LEN: usize = MsgHeader::SIZE;
/// Largest whole message: header plus maximal payload.
pub const MSG_MAX: usize = HEADER_LEN + PAYLOAD_MAX;

/// `XS_WRITE_NONE` (legacy WRITE flag string).
pub const WRITE_NONE: &str = "NONE";
/// `XS_WRITE_CREATE` (legacy WRITE flag string).
pub const WRITE_CREATE: &str = "CREATE";
/// `XS_WRITE_CREATE_EXCL` (legacy WRITE flag string).
pub const WRITE_CREATE_EXCL: &str = "CREATE|EXCL";

/// Checks a raw type value: the removed `XS_RESTRICT` (20), values at or above
/// `XS_TYPE_COUNT` and `XS_INVALID` are refused with [`Error::UnknownType`].
pub fn check_type(raw: u32) -> Result<MsgType, Error> {
    match MsgType::try_from(raw) {
        Ok(MsgType::Invalid) | Err(_) => Err(Error::UnknownType(raw)),
        Ok(ty) => Ok(ty),
    }
}

/// A request identifier, echoed by xenstored in the matching reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReqId(pub u32);

/// A transaction identifier; [`TxId::NONE`] means "not in a transaction".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TxId(pub u32);

impl TxId {
    /// No transaction (`XBT_NIL`).
    pub const NONE: Self = Self(0);
}

/// An error name xenstored may send in an `XS_ERROR` reply (`xsd_errors[]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// `EINVAL`: invalid argument.
    Einval,
    /// `EACCES`: permission denied.
    Eacces,
    /// `EEXIST`: node exists.
    Eexist,
    /// `EISDIR`: is a directory.
    Eisdir,
    /// `ENOENT`: no such node.
    Enoent,
    /// `ENOMEM`: out of memory.
    Enomem,
    /// `ENOSPC`: quota exceeded.
    Enospc,
    /// `EIO`: I/O error.
    Eio,
    /// `ENOTEMPTY`: directory not empty.
    Enotempty,
    /// `ENOSYS`: operation not implemented.
    Enosys,
    /// `EROFS`: read-only connection.
    Erofs,
    /// `EBUSY`: busy.
    Ebusy,
    /// `EAGAIN`: transaction conflict; retry.
    Eagain,
    /// `EISCONN`: already connected.
    Eisconn,
    /// `E2BIG`: result too big (use `XS_DIRECTORY_PART`).
    E2big,
    /// `EPERM`: operation not permitted.
    Eperm,
}

impl Errno {
    /// All names of `xsd_errors[]`, in the header's order.
    pub const ALL: [Self; 16] = [
        Self::Einval,
        Self::Eacces,
        Self::Eexist,
        Self::Eisdir,
        Self::Enoent,
        Self::Enomem,
        Self::Enospc,
        Self::Eio,
        Self::Enotempty,
        Self::Enosys,
        Self::Erofs,
        Self::Ebusy,
        Self::Eagain,
        Self::Eisconn,
        Self::E2big,
        Self::Eperm,
    ];

    /// The name as sent on the wire, without the NUL.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Einval => "EINVAL",
            Self::Eacces => "EACCES",
            Self::Eexist => "EEXIST",
            Self::Eisdir => "EISDIR",
            Self::Enoent => "ENOENT",
            Self::Enomem => "ENOMEM",
            Self::Enospc => "ENOSPC",
            Self::Eio => "EIO",
            Self::Enotempty => "ENOTEMPTY",
            Self::Enosys => "ENOSYS",
            Self::Erofs => "EROFS",
            Self::Ebusy => "EBUSY",
            Self::Eagain => "EAGAIN",
            Self::Eisconn => "EISCONN",
            Self::E2big => "E2BIG",
            Self::Eperm => "EPERM",
        }
    }

    /// Looks a name up, exactly (no NUL, case-sensitive).
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|e| e.name().as_bytes() == name)
    }

    /// The positive Linux errno value of this name (x86 and generic numbering).
    pub const fn to_linux(self) -> i32 {
        match self {
            Self::Eperm => 1,
            Self::Enoent => 2,
            Self::Eio => 5,
            Self::E2big => 7,
            Self::Eagain => 11,
            Self::Enomem => 12,
            Self::Eacces => 13,
            Self::Ebusy => 16,
            Self::Eexist => 17,
            Self::Eisdir => 21,
            Self::Einval => 22,
            Self::Enospc => 28,
            Self::Erofs => 30,
            Self::Enosys => 38,
            Self::Enotempty => 39,
            Self::Eisconn => 106,
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong speaking XenStore, locally or on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// xenstored answered `XS_ERROR` with this name.
    Daemon(Errno),
    /// xenstored answered `XS_ERROR` with a name not in `xsd_errors[]`.
    UnknownErrno,
    /// A header announced more than [`PAYLOAD_MAX`] bytes; framing is lost.
    PayloadTooLarge,
    /// A header carried a type value that `xs_wire.h` does not define.
    UnknownType(u32),
    /// A path broke the syntax rules (empty, bad character, `//`, trailing `/`).
    InvalidPath,
    /// A path exceeded [`ABS_PATH_MAX`] or [`REL_PATH_MAX`].
    PathTooLong,
    /// A field that must end in NUL did not.
    MissingNul,
    /// A payload had the wrong shape for its type (field count, embedded NUL, bad value).
    Malformed,
    /// A caller buffer or a fixed-capacity table was too small.
    NoSpace,
    /// The connection lost framing earlier and must be reset before use.
    Broken,
    /// The transport failed or was closed.
    Transport,
    /// A reply with our request id had a type that does not answer our request.
    UnexpectedReply,
    /// A transaction kept failing with `EAGAIN` beyond the retry bound.
    TooManyRetries,
    /// The watch table is full.
    TooManyWatches,
    /// The watch handle does not name a live watch.
    NoSuchWatch,
}

impl Error {
    /// The positive Linux errno the kernel glue should report for this error.
    pub const fn to_linux(self) -> i32 {
        match self {
            Self::Daemon(e) => e.to_linux(),
            Self::PathTooLong => 36,    // ENAMETOOLONG
            Self::NoSpace => 34,        // ERANGE, as for a too-small getxattr buffer
            Self::TooManyWatches => 28, // ENOSPC
            Self::NoSuchWatch | Self::InvalidPath => 22,
            Self::TooManyRetries => 11, // EAGAIN
            Self::Transport | Self::Broken => 5,
            Self::UnknownErrno
            | Self::PayloadTooLarge
            | Self::UnknownType(_)
            | Self::MissingNul
            | Self::Malformed
            | Self::UnexpectedReply => 71, // EPROTO
        }
    }
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        Self::Daemon(e)
    }
}

impl From<ParseError> for Error {
    fn from(_: ParseError) -> Self {
        Self::Malformed
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Daemon(e) => write!(f, "xenstored: {e}"),
            Self::UnknownErrno => f.write_str("xenstored sent an unknown error name"),
            Self::PayloadTooLarge => f.write_str("payload larger than XENSTORE_PAYLOAD_MAX"),
            Self::UnknownType(t) => write!(f, "unknown message type {t}"),
            Self::InvalidPath => f.write_str("invalid path"),
            Self::PathTooLong => f.write_str("path too long"),
            Self::MissingNul => f.write_str("missing NUL terminator"),
            Self::Malformed => f.write_str("malformed payload"),
            Self::NoSpace => f.write_str("buffer too small"),
            Self::Broken => f.write_str("connection broken"),
            Self::Transport => f.write_str("transport failure"),
            Self::UnexpectedReply => f.write_str("unexpected reply type"),
            Self::TooManyRetries => f.write_str("transaction retries exhausted"),
            Self::TooManyWatches => f.write_str("watch table full"),
            Self::NoSuchWatch => f.write_str("no such watch"),
        }
    }
}

/// A decoded message header (`struct xsd_sockmsg`), with its type and length already checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub msg_type: MsgType,
    /// Request id (0 in watch events).
    pub req_id: ReqId,
    /// Transaction id (0 outside transactions and in watch events).
    pub tx_id: TxId,
    /// Payload length, at most [`PAYLOAD_MAX`].
    pub len: u32,
}

impl Header {
    /// Checks a raw header: the length first, then the type. The length comes first because
    /// an oversized length means framing is lost, which is worse than an unknown type whose
    /// payload can be skipped.
    pub fn check(raw: &MsgHeader) -> Result<Header, Error> {
        let len_ok = usize::try_from(raw.len)
            .map(|l| l <= PAYLOAD_MAX)
            .unwrap_or(false);
        if !len_ok {
            return Err(Error::PayloadTooLarge);
        }
        Ok(Header {
            msg_type: check_type(raw.ty)?,
            req_id: ReqId(raw.req_id),
            tx_id: TxId(raw.tx_id),
            len: raw.len,
        })
    }

    /// The raw header.
    pub fn to_raw(&self) -> MsgHeader {
        let mut raw = MsgHeader::ZERO;
        raw.ty = u32::from(self.msg_type);
        raw.req_id = self.req_id.0;
        raw.tx_id = self.tx_id.0;
        raw.len = self.len;
        raw
    }

    /// The 16 bytes of this header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        self.to_raw().to_bytes()
    }
}

/// One whole message: a checked header and exactly `header.len` payload bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header.
    pub header: Header,
    /// The payload.
    pub payload: &'a [u8],
}

/// Splits `payload` into exactly `N` NUL-terminated fields (NULs stripped).
///
/// Fails with [`Error::MissingNul`] if the payload does not end in NUL and with
/// [`Error::Malformed`] if it holds a different number of fields.
pub fn fields<const N: usize>(payload: &[u8]) -> Result<[&[u8]; N], Error> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut strings = Strings::new(payload)?;
    for slot in out.iter_mut() {
        *slot = strings.next().ok_or(Error::Malformed)?;
    }
    if strings.next().is_some() {
        return Err(Error::Malformed);
    }
    Ok(out)
}

/// Iterator over a payload made of zero or more NUL-terminated strings (`<foo>|*`).
///
/// # Invariants
///
/// `rest` is empty or ends in NUL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strings<'a> {
    rest: &'a [u8],
}

impl<'a> Strings<'a> {
    /// Checks that `payload` is empty or NUL-terminated.
    pub fn new(payload: &'a [u8]) -> Result<Self, Error> {
        match payload.last() {
            None | Some(0) => Ok(Self { rest: payload }),
            Some(_) => Err(Error::MissingNul),
        }
    }

    /// The bytes not yet iterated (a NUL-terminated tail, or empty).
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let nul = self.rest.iter().position(|&b| b == 0)?;
        let item = self.rest.get(..nul)?;
        // INVARIANT: everything after a NUL in a NUL-terminated buffer is again empty or
        // NUL-terminated.
        self.rest = self.rest.get(nul + 1..).unwrap_or(&[]);
        Some(item)
    }
}

/// Builds one message (header plus payload) into a caller buffer.
///
/// Space for the header is reserved first; payload pieces are appended with bounds checks;
/// [`Encoder::finish`] writes the header once the length is known.
pub struct Encoder<'b> {
    out: &'b mut [u8],
    len: usize,
}

impl<'b> Encoder<'b> {
    /// Starts a message in `out`.
    pub fn new(out: &'b mut [u8]) -> Result<Self, Error> {
        if out.len() < HEADER_LEN {
            return Err(Error::NoSpace);
        }
        Ok(Self {
            out,
            len: HEADER_LEN,
        })
    }

    /// Appends raw bytes to the payload.
    pub fn bytes(&mut self, data: &[u8]) -> Result<&mut Self, Error> {
        let end = self
            .len
            .checked_add(data.len())
            .ok_or(Error::PayloadTooLarge)?;
        if end - HEADER_LEN > PAYLOAD_MAX {
            return Err(Error::PayloadTooLarge);
        }
        let dst = self.out.get_mut(self.len..end).ok_or(Error::NoSpace)?;
        dst.copy_from_slice(data);
        self.len = end;
        Ok(self)
    }

    /// Appends a string that must not contain NUL, followed by a NUL.
    pub fn string(&mut self, s: &[u8]) -> Result<&mut Self, Error> {
        if s.contains(&0) {
            return Err(Error::Malformed);
        }
        self.bytes(s)?.bytes(&[0])
    }

    /// Appends the decimal text of `value` followed by a NUL.
    pub fn decimal(&mut self, value: impl Into<u64>) -> Result<&mut Self, Error> {
        let d = crate::num::Decimal::new(value);
        self.string(d.as_bytes())
    }

    /// Payload bytes written so far.
    pub fn payload_len(&self) -> usize {
        self.len - HEADER_LEN
    }

    /// Writes the header and returns the total message length.
    pub fn finish(self, msg_type: MsgType, req_id: ReqId, tx_id: TxId) -> Result<usize, Error> {
        let len = u32::try_from(self.payload_len()).map_err(|_| Error::PayloadTooLarge)?;
        let header = Header {
            msg_type,
            req_id,
            tx_id,
            len,
        };
        let dst = self.out.get_mut(..HEADER_LEN).ok_or(Error::NoSpace)?;
        dst.copy_from_slice(&header.to_bytes());
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_and_out_of_range_types_rejected() {
        for raw in [20, 23, 24, 0xffff, u32::MAX] {
            assert_eq!(check_type(raw), Err(Error::UnknownType(raw)));
        }
        for raw in (0..20).chain([21, 22]) {
            assert_eq!(check_type(raw).map(u32::from), Ok(raw));
        }
    }

    #[test]
    fn errno_names_round_trip() {
        for e in Errno::ALL {
            assert_eq!(Errno::from_name(e.name().as_bytes()), Some(e));
        }
        assert_eq!(Errno::from_name(b"EAGAIN\0"), None);
        assert_eq!(Errno::from_name(b"eagain"), None);
        assert_eq!(Errno::from_name(b"EWHATEVER"), None);
    }

    #[test]
    fn header_is_little_endian_16_bytes() {
        let h = Header {
            msg_type: MsgType::Write,
            req_id: ReqId(0x0102_0304),
            tx_id: TxId(5),
            len: 6,
        };
        let b = h.to_bytes();
        assert_eq!(b, [11, 0, 0, 0, 4, 3, 2, 1, 5, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(Header::check(&MsgHeader::from_bytes(&b)), Ok(h));
    }

    #[test]
    fn oversized_header_length_rejected_before_type() {
        let raw = |ty, len| {
            let mut h = MsgHeader::ZERO;
            h.ty = ty;
            h.len = len;
            h
        };
        assert_eq!(Header::check(&raw(999, 4097)), Err(Error::PayloadTooLarge));
        assert_eq!(
            Header::check(&raw(2, u32::MAX)),
            Err(Error::PayloadTooLarge)
        );
        assert!(Header::check(&raw(2, 4096)).is_ok());
    }

    #[test]
    fn fields_require_exact_count_and_nul() {
        assert_eq!(fields::<2>(b"a\0b\0"), Ok([&b"a"[..], &b"b"[..]]));
        assert_eq!(fields::<2>(b"a\0b"), Err(Error::MissingNul));
        assert_eq!(fields::<2>(b"a\0"), Err(Error::Malformed));
        assert_eq!(fields::<1>(b"a\0b\0"), Err(Error::Malformed));
        assert_eq!(fields::<1>(b"\0"), Ok([&b""[..]]));
        assert_eq!(fields::<0>(b""), Ok([]));
    }

    #[test]
    fn encoder_enforces_payload_max_and_buffer() {
        let mut buf = [0u8; MSG_MAX + 10];
        let mut e = Encoder::new(&mut buf).unwrap();
        e.bytes(&[b'x'; PAYLOAD_MAX]).unwrap();
        assert_eq!(e.bytes(b"y").err(), Some(Error::PayloadTooLarge));
        let mut small = [0u8; 20];
        let mut e = Encoder::new(&mut small).unwrap();
        assert_eq!(e.bytes(b"12345").err(), Some(Error::NoSpace));
        assert_eq!(e.string(b"a\0b").err(), Some(Error::Malformed));
        let mut tiny = [0u8; 15];
        assert!(Encoder::new(&mut tiny).is_err());
    }
}
