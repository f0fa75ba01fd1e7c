//! The blkif block-device protocol (`io/blkif.h`): request validation and the backend and
//! frontend engines, shared by the kernel modules and the host simulator.
//!
//! # What is here
//!
//! - [`abi`]: the two request layouts a backend serves, `x86_64-abi` (native, 112-byte slots)
//!   and `x86_32-abi` (108-byte slots, `id` at offset 4), and the conversion of a 32-bit slot
//!   to the native request.
//! - [`parse`]: [`Request::parse`](parse::Request::parse), which checks a request copied out
//!   of the ring against the device's [`Limits`] before anything else happens:
//!   operation known and offered, 1 to 11 segments (0 only for a flush or barrier), indirect
//!   segments within the negotiated maximum (at most 256) and at most 8 indirect pages,
//!   `first_sect <= last_sect <= 7`, `sector + sectors <= capacity` with checked arithmetic,
//!   writes, flushes and discards refused on a read-only disk, and the grant access each
//!   operation needs (a read fills guest pages, so it needs a writable mapping).
//! - [`BlkBack`]: the backend engine, generic over the ring memory, grants
//!   (`xen_grant::GrantOps`), event channels (`xen_evtchn::EvtchnOps`) and a [`Storage`] that
//!   does the I/O straight on the mapped guest pages, asynchronously (requests in flight hold
//!   a pending slot and their mappings until [`BlkBack::complete`]). Budgeted batches, grant maps in batches of [`back::MAP_BATCH`] with per-slot results (a
//!   failed slot fails its request only; whatever mapped is unmapped), persistent grants in a
//!   bounded clock cache, late EOI for spurious events, disconnect on a broken ring.
//! - [`BlkFront`]: the frontend engine: reads, writes, flushes and discards in zeroed granted
//!   pages, requests over 11 pages through indirect descriptors (as negotiated), persistent
//!   grants (each table slot keeps its pages granted read-write), ids
//!   `generation << 32 | slot` in a fixed table ([`xen_core::slots`]), each response copied
//!   once and checked (id in range and outstanding, operation matches, status known; anything
//!   else fails the device), grants revoked before pages are freed (deferred while still
//!   mapped, [`xen_core::platform::revoke`]).
//!
//! Both engines answer or expect an indirect request's response with its inner operation
//! (`indirect_op`), as Linux's blkback and blkfront do.
//! - `VecDisk` (feature `std`): an in-memory [`Storage`] for tests and fuzzing.
//!
//! # Not here (yet)
//!
//! The XenBus handshake (keys, states) is the glue's: it uses `xen_core::feature::blkif` to
//! negotiate and hands the engines a mapped (or granted) ring and a bound port. Multiple queues
//! are one engine per queue.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(all(feature = "std", not(test)))]
extern crate std;

pub mod abi;
pub mod back;
pub mod cache;
pub mod front;
pub mod parse;
pub mod storage;
pub mod vdev;

pub use abi::Abi;
#[cfg(any(test, feature = "std"))]
pub use back::VecTables;
pub use back::{BackConfig, BackStats, BlkBack, Connection, PendingSlot, Tables};
pub use cache::CacheSlot;
pub use front::{
    BlkFront, Completion, DataPages, FrontConfig, FrontStats, InlineTable, ReadData, ResponseFault,
    SlotEntry, SubmitError,
};
pub use parse::{Invalid, Limits, Sector};
#[cfg(any(test, feature = "std"))]
pub use storage::{Deferred, VecDisk};
pub use storage::{Io, IoError, IoKind, IoSeg, SegState, Started, Storage};
pub use xen_core::platform::Progress;

use xen_evtchn::EvtchnError;
use xen_ring::RingError;

/// Why an engine call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The peer broke the ring (impossible index): the engine disconnected.
    Ring(RingError),
    /// An event-channel operation failed.
    Evtchn(EvtchnError),
    /// The engine is disconnected (after a broken ring, a bad response, or on request).
    Disconnected,
    /// The backend sent a response that breaks the protocol: the device failed.
    Response(ResponseFault),
}
