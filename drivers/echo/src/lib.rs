//! The echo test device: a minimal request/response PV protocol, front and back engines.
//!
//! Echo is a split device of our own, small enough to read in one sitting, that exercises
//! everything a real PV driver does: XenBus negotiation through XenStore, a multi-page
//! `io/ring.h` ring, grant references to data pages, event channels with notification
//! hold-off, bounded work per event, and hardening in both directions. The same engine
//! source runs in the host simulator (`xen-sim`) and, compiled by Kbuild, in kernel modules
//! (the front in a PV guest, the back in dom0).
//!
//! Echo is an example: no driver or core crate depends on it. What its engines run on (the
//! platform traits, [`Progress`], the request-slot ids) is xen-core's, shared with every other
//! engine.
//!
//! # The protocol
//!
//! ## XenStore layout
//!
//! The toolstack (or a test harness acting as one) creates both directories before either
//! driver starts, the front's owned by the front domain and readable by the back, the
//! back's owned by the back domain and readable by the front:
//!
//! ```text
//! /local/domain/<fe>/device/echo/<devid>/
//!     backend      = /local/domain/<be>/backend/echo/<fe>/<devid>   (toolstack)
//!     backend-id   = <be>                                           (toolstack)
//!     state        = XenBus state of the front                      (front)
//!     ring-ref     = grant of the ring, when ring-page-order is 0   (front)
//!     ring-page-order = k, 1 <= k <= 4, only when above 0           (front)
//!     ring-ref0 .. ring-ref<2^k - 1> = grants of the ring pages     (front)
//!     event-channel = the front's unbound port                      (front)
//! /local/domain/<be>/backend/echo/<fe>/<devid>/
//!     frontend     = /local/domain/<fe>/device/echo/<devid>         (toolstack)
//!     frontend-id  = <fe>                                           (toolstack)
//!     online       = 1                                              (toolstack)
//!     state        = XenBus state of the back                       (back)
//!     max-ring-page-order = largest order the back maps, 0..=4      (back)
//!     feature-complement  = 1 if the back serves Op::Complement     (back)
//! ```
//!
//! All numbers are plain decimal; anything else (signs, spaces, overlong values) is refused.
//!
//! ## Handshake (the [`xen_core::xenbus`] state machine)
//!
//! 1. The back writes `max-ring-page-order` and `feature-complement` in one transaction,
//!    then `state` = 2 (InitWait).
//! 2. The front reads those features (missing means 0 / not offered), picks
//!    `order = min(wanted, max-ring-page-order, 4)`, allocates `2^order` zeroed contiguous
//!    pages, initialises the ring in them, grants each page to the back, allocates an
//!    unbound event channel for the back, allocates and grants one data page (read-only)
//!    and one response page (read-write) per request slot, writes `ring-ref*`,
//!    `ring-page-order` and `event-channel` in one transaction (retried on `EAGAIN`), then
//!    `state` = 3 (Initialised).
//! 3. The back reads and checks those keys (order within what it offered, references not
//!    reserved, port non-zero), maps the ring pages as one region, binds the event channel,
//!    and writes `state` = 4 (Connected).
//! 4. The front sees Connected and writes `state` = 4.
//!
//! Closing: the front stops submitting and writes 5 (Closing); the back unmaps and unbinds,
//! then writes 5; the front revokes its grants (a page the back still maps is kept, not
//! freed, until the grant can be revoked) and writes 6 (Closed); the back writes 6. A front
//! re-started from Closed writes 1 (Initialising) and the back answers with step 1 again.
//!
//! ## The ring
//!
//! A ring of `2^order` pages holds 128 slots per page (2048 on 16 pages). Requests and
//! responses are [`RequestWire`] (24 bytes) and [`ResponseWire`] (16 bytes):
//!
//! - [`Op::Nop`]: no data; `gref`, `rsp_gref`, `offset`, `len` are 0.
//! - [`Op::Checksum`]: the back reads `len` bytes at `offset` of page `gref` and answers
//!   their [`checksum`] (32-bit FNV-1a).
//! - [`Op::Complement`]: as Checksum, and the back also writes the byte-wise complement of
//!   what it read at the same offset of page `rsp_gref` (granted read-write).
//!
//! The response echoes `id` and `op` and carries a [`Status`]: Okay (0), Error (-1: a grant
//! did not map), Invalid (-2: the request failed validation), Unsupported (-3). The front's
//! ids are `generation << 32 | slot` ([`xen_core::slots`]).
//!
//! ## Hardening
//!
//! - The back copies each request out of the ring once and validates the copy
//!   ([`Request::parse`]: known op, zero padding, non-reserved grants, `offset + len` within
//!   the page, `len > 0`, distinct pages) before it maps anything. A bad request costs an
//!   Invalid or Unsupported answer; a grant that does not map costs an Error answer; a ring
//!   whose producer index is impossible is broken for good and the back closes the device.
//! - The front copies each response once and checks it ([`Response::parse`]: known status
//!   and op, zero padding; then the id names a slot with a request outstanding, of the same
//!   generation and op). A bad response breaks the connection; it never frees, completes or
//!   indexes anything.
//! - Work per event is bounded by a budget; the engine reports whether more is waiting
//!   ([`Progress::more`]) instead of looping. The engine says whether an event brought work
//!   ([`Progress::spurious`]); the glue passes that verdict to the port's late EOI, whose
//!   kernel throttle slows down a peer flooding the port.
//! - The front verifies every answer against what it sent: the checksum it computed itself,
//!   and for a complement the response page, which it cleared before submitting.
//!
//! # Using the engines
//!
//! [`EchoFront`] and [`EchoBack`] are generic over the platform (xen-grant's `GrantOps`,
//! xen-evtchn's `EvtchnOps`, and xen-core's [`platform`](xen_core::platform) traits) and take the XenStore (any
//! `xen_core::xs::XenStore`) as a parameter of each call. The glue calls `start`, then
//! `on_xenstore` when XenStore has news, `handle_event` when the event channel fires (again
//! at once while `more` is set, with the late EOI `spurious` asks for otherwise), and `close`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod back;
mod error;
mod front;
pub mod store;
pub mod wire;

pub use back::{BackConfig, BackStats, EchoBack};
pub use error::{Error, ResponseFault};
pub use front::{Completion, EchoFront, EchoRequest, FrontConfig, FrontStats, SubmitError, Ticket};
pub use wire::{checksum, Op, Request, RequestWire, Response, ResponseWire, Status};
pub use xen_core::platform::Progress;

/// Bytes copied at a time through a stack buffer when touching data pages.
pub(crate) const CHUNK: usize = 256;
