//! Errors of the echo engines.

use crate::wire::BadResponse;
use xen_evtchn::EvtchnError;
use xen_grant::{AccessError, GrantError};
use xen_ring::RingError;

/// Why a front refused a response from the back. Any of these breaks the connection: a
/// back that sends them is buggy or hostile, and the front stops trusting the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFault {
    /// A field holds an undefined value.
    Malformed(BadResponse),
    /// The id names no request slot (out of range, or from another connection).
    UnknownId(u64),
    /// The id names a slot with no request outstanding: a duplicate or invented response.
    NotOutstanding(u64),
    /// The response's op differs from the request's.
    OpMismatch(u64),
}

/// What went wrong in an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// XenStore failed.
    Xs(xen_core::xs::Error),
    /// The peer did not write a key we need (named).
    MissingKey(&'static str),
    /// The peer wrote a value we refuse (in the named key).
    BadValue(&'static str),
    /// The ring broke (the peer violated the ring protocol) or could not be set up.
    Ring(RingError),
    /// Mapping the peer's ring failed.
    Map(GrantError),
    /// Granting a page failed.
    Grant(AccessError),
    /// An event-channel operation failed.
    Evtchn(EvtchnError),
    /// No memory for a ring or data page.
    NoMemory,
    /// The back sent a response the front refuses.
    BadResponse(ResponseFault),
    /// The operation needs [`start`](crate::EchoFront::start) first.
    NotStarted,
}

impl From<RingError> for Error {
    fn from(e: RingError) -> Self {
        Error::Ring(e)
    }
}

impl From<EvtchnError> for Error {
    fn from(e: EvtchnError) -> Self {
        Error::Evtchn(e)
    }
}

impl From<xen_core::xs::Error> for Error {
    fn from(e: xen_core::xs::Error) -> Self {
        Error::Xs(e)
    }
}
