//! The vscsiif SCSI protocol (`io/vscsiif.h`): request and response validation, LUN
//! translation, and the backend and frontend engines, shared by the kernel modules and the
//! host simulator.
//!
//! # What is here
//!
//! - [`parse`]: [`Request::parse`](parse::Request::parse), which checks a request copied out
//!   of the ring before anything else happens: action (`SCSI_CDB`, `ABORT`, `RESET`; the
//!   deprecated `SG_PRESET` and unknown values are answered with an error), request id bound,
//!   the LUN exists in the table, `cmd_len` 1 to 16 and consistent with the operation code's
//!   group, data direction known and consistent with the segments, segment counts against
//!   the negotiated maximum, every segment inside its page, descriptor-page slots whole.
//! - [`response`]: what a response carries ([`Outcome`]: host byte, status byte, sense data,
//!   residual) and the frontend's check of one ([`response::check`]).
//! - [`lun`]: the LUN table (`vscsi-devs/dev-N`, bounded, duplicates refused) and the hotplug
//!   decisions of each side for an entry's `state`.
//! - [`ScsiBack`]: the backend engine over a [`ScsiTarget`]: budgeted batches, the producer
//!   loaded and checked once per batch, each slot copied once, descriptor pages copied once
//!   then checked, data grants mapped in batches (writable only when the device writes),
//!   at most 16 commands in flight, abort and LUN reset, late-EOI verdicts, disconnect on a
//!   broken ring.
//! - [`ScsiFront`]: the frontend engine: commands with data in zeroed granted pages, direct or
//!   through descriptor pages, request ids with a generation, every response copied once and
//!   checked (rqid in range and outstanding, result known, sense at most 96 bytes, residual at
//!   most the transfer), deferred frees of pages the backend still maps, and
//!   [`ScsiFront::drain`] to queue outstanding commands again after save/restore.
//! - `MemTarget` (feature `std`): an in-memory disk answering INQUIRY, TEST UNIT READY,
//!   READ CAPACITY, REPORT LUNS, READ and WRITE, for tests and fuzzing.
//!
//! # Not here
//!
//! The XenBus handshake is the glue's, with `xen_core::feature::vscsiif` (offer, ring keys,
//! `v-dev`, `p-dev`, per-LUN `state`) and the decisions of [`lun`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(all(feature = "std", not(test)))]
extern crate std;

pub mod back;
pub mod front;
pub mod lun;
#[cfg(any(test, feature = "std"))]
pub mod mem;
pub mod parse;
pub mod response;

pub use back::{
    BackConfig, BackStats, Command, Connection, DataSeg, ScsiBack, ScsiTarget, Started,
};
pub use front::{
    CommandSpec, Completion, DataPages, FrontConfig, FrontStats, Kind, Reissue, ScsiFront,
    SubmitError, Ticket,
};
pub use lun::{LunAction, LunEntry, LunError, LunTable};
#[cfg(any(test, feature = "std"))]
pub use mem::MemTarget;
pub use parse::{Direction, Invalid, Limits, Luns, Request, VAddr};
pub use response::{Answer, Expected, Outcome, ResponseFault};
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
    /// The engine is disconnected.
    Disconnected,
    /// The backend sent a response that breaks the protocol: the device failed.
    Response(ResponseFault),
}
