//! What can go wrong on a ring, split by who is at fault.

use crate::index::RingIndex;
use core::fmt;

/// A protocol violation by the peer. Once seen, the ring is broken for good.
///
/// Every variant carries the indices as they were when the check failed, for the one log
/// message the driver prints before disconnecting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Violation {
    /// The peer's producer index claims more unconsumed entries than it can have produced
    /// (`RING_REQUEST_PROD_OVERFLOW` / `RING_RESPONSE_PROD_OVERFLOW`), e.g. more responses than
    /// requests were sent, or more bytes than the byte ring holds.
    ProducerOverflow {
        /// The producer index the peer published.
        prod: RingIndex,
        /// Our consumer index at the time.
        cons: RingIndex,
    },
    /// The peer moved an index backwards: our consumer is past the peer's producer, or the
    /// peer's consumer is past our producer.
    ConsumerPastProducer {
        /// The producer index.
        prod: RingIndex,
        /// The consumer index.
        cons: RingIndex,
    },
    /// A slot or byte offset fell outside the shared memory. The geometry checks at setup make
    /// this impossible; it exists so that even a bug here breaks the ring instead of the kernel.
    OutOfBounds,
}

/// Why the memory handed to a constructor cannot hold the ring.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GeometryError {
    /// The memory is not aligned to a 4 KiB page.
    Misaligned,
    /// The length is not 1, 2, 4, 8 or 16 pages (the byte rings: not at least one page).
    BadLength(usize),
    /// The request or response type is larger than a ring of this size can hold, is zero-sized,
    /// or is aligned to more than 64 bytes.
    BadEntry,
}

/// The error type of every ring operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RingError {
    /// The peer broke the protocol. Sticky: every later call on this ring returns the same
    /// error, so the driver can only disconnect.
    Broken(Violation),
    /// The producer has no free slot or byte (`RING_FULL`); try again after consuming responses.
    Full,
    /// The back queued a response while every request it consumed is already answered.
    NoRequestToAnswer,
    /// The memory cannot hold this ring.
    Geometry(GeometryError),
}

impl From<Violation> for RingError {
    fn from(v: Violation) -> Self {
        RingError::Broken(v)
    }
}

impl From<GeometryError> for RingError {
    fn from(e: GeometryError) -> Self {
        RingError::Geometry(e)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ProducerOverflow { prod, cons } => write!(
                f,
                "peer producer index {:#x} overflows the ring (consumer {:#x})",
                prod.get(),
                cons.get()
            ),
            Violation::ConsumerPastProducer { prod, cons } => write!(
                f,
                "consumer index {:#x} is past producer index {:#x}",
                cons.get(),
                prod.get()
            ),
            Violation::OutOfBounds => f.write_str("ring access outside the shared pages"),
        }
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Broken(v) => write!(f, "ring broken by peer: {v}"),
            RingError::Full => f.write_str("ring full"),
            RingError::NoRequestToAnswer => f.write_str("no consumed request left to answer"),
            RingError::Geometry(GeometryError::Misaligned) => {
                f.write_str("shared memory not page-aligned")
            }
            RingError::Geometry(GeometryError::BadLength(len)) => {
                write!(f, "shared memory length {len} is not a valid ring size")
            }
            RingError::Geometry(GeometryError::BadEntry) => {
                f.write_str("request/response type does not fit this ring")
            }
        }
    }
}
