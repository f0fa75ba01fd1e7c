//! An incremental XenStore message decoder fed by arbitrary byte chunks, with no allocation.
//!
//! # Policy on bad input
//!
//! * A header whose `len` exceeds [`PAYLOAD_MAX`] means the stream's framing can no longer be
//!   trusted (the peer cannot be resynchronised: any later byte could be mistaken for a header).
//!   The decoder reports [`Error::PayloadTooLarge`] once and becomes **broken**: every later call
//!   consumes nothing and returns [`Error::Broken`] until [`Decoder::reset`] (which the glue calls
//!   only after a ring reconnection, when both sides restart from a message boundary). Callers
//!   must stop reading on any error; since a broken decoder consumes nothing, a loop that ignored
//!   errors would spin, so the examples break out.
//! * A header with a well-formed length but an unknown type is framed correctly, so the decoder
//!   buffers and discards its payload, reports [`Error::UnknownType`] for it, and carries on with
//!   the next message: one bad message costs one error, not the connection.
//! * Payload contents are not interpreted here; [`super::Reply::parse`] and
//!   [`super::Request::parse`] check them.

use super::wire::{Error, Header, Message, MsgHeader, HEADER_LEN, MSG_MAX, PAYLOAD_MAX};

/// Decoder state between calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Collecting the 16 header bytes.
    Header,
    /// Header accepted; collecting `need` payload bytes.
    Payload { header: Header },
    /// Header had an unknown type; collecting its payload to discard it.
    Skip { raw_type: u32, need: usize },
    /// The last call completed a message (`Some`) or skipped one (`None`); the next call starts
    /// afresh.
    Done { header: Option<Header> },
    /// Framing lost.
    Broken,
}

/// Reassembles whole messages from a byte stream.
///
/// # Invariants
///
/// `filled <= MSG_MAX`; in `Payload`, `HEADER_LEN + header.len <= MSG_MAX`; in `Skip`,
/// `HEADER_LEN + need <= MSG_MAX`.
pub struct Decoder {
    buf: [u8; MSG_MAX],
    filled: usize,
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decoder")
            .field("filled", &self.filled)
            .field("state", &self.state)
            .finish()
    }
}

impl Decoder {
    /// A decoder expecting a header.
    pub const fn new() -> Self {
        Self {
            buf: [0; MSG_MAX],
            filled: 0,
            state: State::Header,
        }
    }

    /// Whether framing was lost; see the module documentation.
    pub fn is_broken(&self) -> bool {
        self.state == State::Broken
    }

    /// Whether a message is partly received (so a reset would lose bytes).
    pub fn is_mid_message(&self) -> bool {
        matches!(
            self.state,
            State::Header | State::Payload { .. } | State::Skip { .. }
        ) && self.filled > 0
    }

    /// Forgets everything, including a broken state. Only correct at a known message boundary
    /// (a fresh connection or a completed ring reconnection).
    pub fn reset(&mut self) {
        self.filled = 0;
        self.state = State::Header;
    }

    fn total_needed(&self) -> usize {
        match self.state {
            State::Header => HEADER_LEN,
            State::Payload { header } => {
                HEADER_LEN.saturating_add(usize::try_from(header.len).unwrap_or(usize::MAX))
            }
            State::Skip { need, .. } => HEADER_LEN.saturating_add(need),
            State::Done { .. } | State::Broken => self.filled,
        }
    }

    fn start_if_done(&mut self) {
        if matches!(self.state, State::Done { .. }) {
            self.filled = 0;
            self.state = State::Header;
        }
    }

    /// The space for exactly the bytes still missing from the current header or payload, so a
    /// transport can receive straight into it without ever reading past a message boundary.
    /// Empty when broken.
    pub fn spare(&mut self) -> &mut [u8] {
        self.start_if_done();
        let need = self.total_needed().min(MSG_MAX);
        let start = self.filled.min(need);
        self.buf.get_mut(start..need).unwrap_or(&mut [])
    }

    /// Records that `n` bytes were written into [`Decoder::spare`] (values above its length are
    /// clamped) and returns a message if one is now complete.
    pub fn advance(&mut self, n: usize) -> Result<Option<Message<'_>>, Error> {
        if self.step(n)? {
            Ok(self.message())
        } else {
            Ok(None)
        }
    }

    /// The message completed by the last [`Decoder::advance`] or [`Decoder::feed`], until the
    /// next call to either or to [`Decoder::spare`].
    pub fn message(&self) -> Option<Message<'_>> {
        match self.state {
            State::Done {
                header: Some(header),
            } => Some(Message {
                header,
                payload: self.buf.get(HEADER_LEN..self.filled).unwrap_or(&[]),
            }),
            _ => None,
        }
    }

    /// Like [`Decoder::advance`], but only says whether a message completed (then available
    /// from [`Decoder::message`]); convenient in loops that must not hold the borrow.
    pub fn step(&mut self, n: usize) -> Result<bool, Error> {
        self.start_if_done();
        if self.state == State::Broken {
            return Err(Error::Broken);
        }
        let need = self.total_needed();
        self.filled = self.filled.saturating_add(n).min(need);
        self.progress()
    }

    /// Copies as much of `input` as the current message needs and returns how many bytes were
    /// consumed, together with a message if one completed. Call again with the rest of the input
    /// after handling the message; stop on an error.
    ///
    /// ```
    /// # use xen_core::xs::{Decoder, Error};
    /// # fn handle(_: xen_core::xs::Message<'_>) {}
    /// fn on_bytes(dec: &mut Decoder, mut chunk: &[u8]) -> Result<(), Error> {
    ///     while !chunk.is_empty() {
    ///         let (used, msg) = dec.feed(chunk);
    ///         chunk = chunk.get(used..).unwrap_or(&[]);
    ///         if let Some(msg) = msg? {
    ///             handle(msg);
    ///         }
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn feed(&mut self, input: &[u8]) -> (usize, Result<Option<Message<'_>>, Error>) {
        let mut used = 0usize;
        // At most two rounds: the header, then the payload it announces.
        for _ in 0..2 {
            let rest = input.get(used..).unwrap_or(&[]);
            let spare = self.spare();
            let n = spare.len().min(rest.len());
            if let (Some(dst), Some(src)) = (spare.get_mut(..n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            used += n;
            match self.step(n) {
                Ok(true) => return (used, Ok(self.message())),
                Ok(false) if used < input.len() => {}
                Ok(false) => return (used, Ok(None)),
                Err(e) => return (used, Err(e)),
            }
        }
        (used, Ok(None))
    }

    fn progress(&mut self) -> Result<bool, Error> {
        if self.state == State::Header && self.filled == HEADER_LEN {
            let mut raw = [0u8; HEADER_LEN];
            raw.copy_from_slice(self.buf.get(..HEADER_LEN).unwrap_or(&[0; HEADER_LEN]));
            let raw = MsgHeader::from_bytes(&raw);
            match Header::check(&raw) {
                Ok(header) => self.state = State::Payload { header },
                Err(Error::UnknownType(raw_type)) => {
                    // `check` validated the length before the type, so it is <= PAYLOAD_MAX.
                    let need = usize::try_from(raw.len)
                        .unwrap_or(PAYLOAD_MAX)
                        .min(PAYLOAD_MAX);
                    self.state = State::Skip { raw_type, need };
                }
                Err(e) => {
                    self.state = State::Broken;
                    return Err(e);
                }
            }
        }
        if self.filled < self.total_needed() {
            return Ok(false);
        }
        match self.state {
            State::Payload { header } => {
                self.state = State::Done {
                    header: Some(header),
                };
                Ok(true)
            }
            State::Skip { raw_type, .. } => {
                self.state = State::Done { header: None };
                Err(Error::UnknownType(raw_type))
            }
            State::Header | State::Done { .. } => Ok(false),
            State::Broken => Err(Error::Broken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xs::wire::{Encoder, MsgType, ReqId, TxId};

    fn msg(ty: MsgType, req: u32, payload: &[u8]) -> std::vec::Vec<u8> {
        let mut buf = [0u8; MSG_MAX];
        let mut e = Encoder::new(&mut buf).unwrap();
        e.bytes(payload).unwrap();
        let n = e.finish(ty, ReqId(req), TxId(0)).unwrap();
        buf[..n].to_vec()
    }

    fn raw_header(ty: u32, len: u32) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        h
    }

    #[test]
    fn decodes_one_byte_at_a_time() {
        let bytes = msg(MsgType::Read, 7, b"value");
        let mut d = Decoder::new();
        for (i, b) in bytes.iter().enumerate() {
            let (used, r) = d.feed(core::slice::from_ref(b));
            assert_eq!(used, 1);
            let m = r.unwrap();
            if i + 1 < bytes.len() {
                assert!(m.is_none());
            } else {
                let m = m.unwrap();
                assert_eq!(m.header.req_id, ReqId(7));
                assert_eq!(m.payload, b"value");
            }
        }
    }

    #[test]
    fn stops_at_message_boundary() {
        let mut bytes = msg(MsgType::Read, 1, b"a");
        bytes.extend(msg(MsgType::Write, 2, b"OK\0"));
        let mut d = Decoder::new();
        let (used, r) = d.feed(&bytes);
        assert_eq!(used, 17);
        assert_eq!(r.unwrap().unwrap().payload, b"a");
        let (used, r) = d.feed(&bytes[17..]);
        assert_eq!(used, 19);
        assert_eq!(r.unwrap().unwrap().header.msg_type, MsgType::Write);
    }

    #[test]
    fn empty_payload_completes_with_header() {
        let bytes = msg(MsgType::Directory, 3, b"");
        let mut d = Decoder::new();
        let (used, r) = d.feed(&bytes);
        assert_eq!(used, 16);
        assert_eq!(r.unwrap().unwrap().payload, b"");
    }

    #[test]
    fn oversized_xenstore_payload_rejected() {
        let mut d = Decoder::new();
        let (used, r) = d.feed(&raw_header(2, 4097));
        assert_eq!(used, 16);
        assert_eq!(r.err(), Some(Error::PayloadTooLarge));
        assert!(d.is_broken());
        // Broken is sticky and consumes nothing, so the caller cannot be fooled into resyncing.
        let good = msg(MsgType::Read, 1, b"x");
        let (used, r) = d.feed(&good);
        assert_eq!(used, 0);
        assert_eq!(r.err(), Some(Error::Broken));
        assert!(d.spare().is_empty());
        d.reset();
        let (_, r) = d.feed(&good);
        assert_eq!(r.unwrap().unwrap().payload, b"x");
    }

    #[test]
    fn maximal_payload_accepted() {
        let bytes = msg(MsgType::Read, 9, &[b'v'; PAYLOAD_MAX]);
        let mut d = Decoder::new();
        let (used, r) = d.feed(&bytes);
        assert_eq!(used, MSG_MAX);
        assert_eq!(r.unwrap().unwrap().payload.len(), PAYLOAD_MAX);
    }

    #[test]
    fn unknown_type_skipped_without_losing_framing() {
        let mut bytes = raw_header(20, 3).to_vec();
        bytes.extend_from_slice(b"abc");
        bytes.extend(msg(MsgType::Read, 4, b"ok"));
        let mut d = Decoder::new();
        let (used, r) = d.feed(&bytes);
        assert_eq!(used, 19);
        assert_eq!(r.err(), Some(Error::UnknownType(20)));
        assert!(!d.is_broken());
        let (_, r) = d.feed(&bytes[19..]);
        assert_eq!(r.unwrap().unwrap().header.req_id, ReqId(4));
    }

    #[test]
    fn spare_advance_never_reads_past_boundary() {
        let mut bytes = msg(MsgType::Read, 1, b"hello");
        bytes.extend(msg(MsgType::Read, 2, b"world"));
        let mut d = Decoder::new();
        let mut src = &bytes[..];
        let mut got = std::vec::Vec::new();
        while !src.is_empty() {
            let spare = d.spare();
            let n = spare.len().min(src.len()).min(3);
            spare[..n].copy_from_slice(&src[..n]);
            src = &src[n..];
            if let Some(m) = d.advance(n).unwrap() {
                got.push(m.payload.to_vec());
            }
        }
        assert_eq!(got, [b"hello".to_vec(), b"world".to_vec()]);
        // Over-reporting is clamped to what was asked for.
        let mut d = Decoder::new();
        assert_eq!(d.spare().len(), HEADER_LEN);
        let m = d.advance(1000).unwrap().unwrap();
        assert_eq!((m.header.msg_type, m.payload.len()), (MsgType::Control, 0));
    }
}
