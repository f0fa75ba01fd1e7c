//! The io/ring.h shared-ring protocol and the xs_wire byte-stream ring, in safe Rust.
//!
//! Xen's paravirtual split drivers talk through rings in pages that the front end (the guest
//! driver) grants to the back end (the driver domain). This crate is the ring protocol and
//! nothing else: no grants, no event channels, no XenStore. It is `no_std`, allocates nothing,
//! and is shared verbatim by the kernel modules and the host simulator.
//!
//! # The slot ring (`io/ring.h`)
//!
//! One ring of 1 to 16 pages carries requests one way and responses the other, in the same
//! slots. The shared area is a 64-byte header followed by the slots:
//!
//! ```text
//!  0  req_prod   front: requests published        (front writes)
//!  4  req_event  back: "wake me past this request" (back writes)
//!  8  rsp_prod   back: responses published        (back writes)
//! 12  rsp_event  front: "wake me past this response" (front writes)
//! 16  private union (4 bytes), 44 bytes of padding
//! 64  slot 0, slot 1, ... slot N-1   (N a power of two; a slot fits a request or a response)
//! ```
//!
//! [`FrontRing`] and [`BackRing`] are different types, and each can only write the two indices
//! it owns. Each keeps its own private indices: the front `req_prod_pvt` (requests queued) and
//! `rsp_cons` (responses consumed), the back `rsp_prod_pvt` and `req_cons`. Indices run freely
//! and wrap at 2^32 ([`RingIndex`]); a slot is `index & (N - 1)`.
//!
//! A request's life: the front [`queue_request`](FrontRing::queue_request)s it (copied into the
//! slot at `req_prod_pvt`), [`push_requests`](FrontRing::push_requests) publishes `req_prod`
//! for a whole batch and says whether to [`Notify`] the back; the back copies it out once with
//! [`next_request`](BackRing::next_request) or a budgeted [`requests`](BackRing::requests)
//! batch, answers with [`queue_response`](BackRing::queue_response) in the same slot, and
//! [`push_responses`](BackRing::push_responses). Before sleeping, each side calls its final
//! check ([`final_check_for_requests`](BackRing::final_check_for_requests),
//! [`final_check_for_responses`](FrontRing::final_check_for_responses)), which re-arms its
//! event index and looks once more. The hold-off rule is `ring.h`'s: after moving a producer
//! from `old` to `new`, notify iff `new - event < new - old` (wrapping) — see
//! [`Notify::decide`].
//!
//! A side that keeps working may [`publish_requests`](FrontRing::publish_requests) (or
//! [`publish_responses`](BackRing::publish_responses)) after each batch instead: a release store
//! of the producer index, without the full barrier and without reading the peer's event index.
//! The next push decides for everything published since the previous push (`old` is the index
//! at that push, kept privately), so no event is lost as long as the side pushes before it
//! waits for anything; `tests/loom.rs` checks exactly that.
//!
//! ```
//! use xen_ring::{impl_slot, BackRing, FrontRing, HostPages, Notify};
//!
//! #[derive(Clone, Copy, Debug, PartialEq)]
//! #[repr(C)]
//! struct Req { id: u64, sector: u64 }
//! impl_slot!(Req { id, sector });
//!
//! #[derive(Clone, Copy, Debug, PartialEq)]
//! #[repr(C)]
//! struct Rsp { id: u64, status: i64 }
//! impl_slot!(Rsp { id, status });
//!
//! # fn main() -> Result<(), xen_ring::RingError> {
//! let pages = HostPages::shared(1); // the kernel uses granted pages instead
//! let mut front = FrontRing::<_, Req, Rsp>::init(pages.clone())?;
//! let mut back = BackRing::<_, Req, Rsp>::attach(pages)?;
//!
//! front.queue_request(&Req { id: 1, sector: 8 })?;
//! front.queue_request(&Req { id: 2, sector: 16 })?;
//! assert_eq!(front.push_requests()?, Notify::Yes); // one event for the batch
//!
//! let mut batch = back.requests(32)?; // at most 32, whatever the front claims
//! while let Some(req) = batch.next() {
//!     batch.queue_response(&Rsp { id: req.id, status: 0 })?;
//! }
//! let _ = back.push_responses()?;
//! assert!(!back.final_check_for_requests()?); // idle: the back may sleep
//!
//! assert_eq!(front.next_response()?, Some(Rsp { id: 1, status: 0 }));
//! assert_eq!(front.next_response()?, Some(Rsp { id: 2, status: 0 }));
//! assert_eq!(front.next_response()?, None);
//! # Ok(())
//! # }
//! ```
//!
//! ## Invariants, and what happens when the peer breaks them
//!
//! The peer is untrusted in both directions and can write any byte of the pages at any time.
//!
//! - Slots are copied in or out once, whole ([`Slot`] types have no padding and accept any bit
//!   pattern). A request is handed over by value; no API reads a slot twice or exposes a
//!   reference into the pages, so a peer rewriting a slot after it was consumed changes
//!   nothing (XSA-155).
//! - The peer's producer index is loaded at most once per batch and checked before any slot is
//!   read: the back requires `req_cons <= req_prod` and `req_prod - rsp_prod_pvt <= N`
//!   (`RING_REQUEST_PROD_OVERFLOW`); the front requires `rsp_cons <= rsp_prod <= req_prod`
//!   as it last published it — it will not accept a response to a request it never sent.
//! - The back cannot answer more requests than it consumed; the front cannot queue more than
//!   `N` requests without consuming responses ([`FrontRing::free_requests`], `RING_FULL`).
//! - A violation makes the ring *broken*: the call returns [`RingError::Broken`] and so does
//!   every later call. Nothing a peer writes can panic, loop or spin; consumer loops are
//!   bounded by the ring size and by the caller's budget.
//! - Our own producer index and the value we last published are kept privately, so the peer
//!   overwriting them in the page cannot confuse our accounting.
//!
//! The front zeroes the whole shared area (not only the header) in [`FrontRing::init`], so
//! the pages carry nothing it did not write on purpose.
//!
//! ## Zero-copy
//!
//! The ring carries descriptors only: grant references, offsets, lengths, ids. Data pages are
//! granted separately and never copied through the ring; the only bytes copied are the slots
//! themselves, once each.
//!
//! # The byte ring (`xs_wire.h`, `console.h`)
//!
//! XenStore and the console use a different ring: two byte buffers, one per direction, each
//! with a consumer and producer index, no event indices. [`XsClient`]/[`XsServer`] (and
//! [`ConsoleClient`]/[`ConsoleServer`]) read and write byte streams over it with the same
//! discipline: `prod - cons <= size` is checked on every load of a peer index, and a
//! violation breaks the ring.
//!
//! # Shared memory and `unsafe`
//!
//! The rings are generic over [`SharedMemory`], an `unsafe trait` whose implementor promises a
//! valid, page-aligned region that lives as long as the object and that the peer may write at
//! any time. The kernel glue implements it for granted or grant-mapped pages; with the `std`
//! feature, `HostPages` implements it for tests, fuzzing, benchmarks and the simulator.
//!
//! All access to the pages goes through one private accessor module, the only place where
//! `unsafe` is allowed (`#![deny(unsafe_code)]` everywhere else): atomic index loads with
//! `Acquire` and stores with `Release`, one volatile copy per slot, volatile byte copies, and
//! the full barrier `ring.h` uses between publishing an index and reading the peer's event
//! index (and between re-arming an event index and re-reading the peer's producer).
//!
//! # Building into a kernel module
//!
//! Kbuild compiles `ring/src/lib.rs` as a crate of its own, with the kernel's rustc flags, and
//! links it into the module with `--extern`:
//!
//! ```text
//! obj-m := xen_blkfront_rs.o
//! xen_blkfront_rs-y := xen_ring.o main.o
//! $(obj)/xen_ring.o: $(src)/../../ring/src/lib.rs FORCE
//!         $(call if_changed_rule,rustc_o_rs)   # (a tab in the real Makefile)
//! RUSTFLAGS_xen_ring.o := --emit=metadata=$(obj)/libxen_ring.rmeta
//! RUSTFLAGS_main.o := --extern xen_ring -L $(obj)
//! $(obj)/main.o: $(obj)/xen_ring.o
//! ```
//!
//! The crate therefore has no dependencies, no build script and no proc macros, uses no
//! `alloc`, and all arithmetic on peer-controlled values is explicitly wrapping or checked
//! (the kernel builds with overflow checks). The `std` feature and `cfg(loom)` are for host
//! builds only.
//!
//! # Testing
//!
//! Unit tests named for the attacks they stop, a property test against a model, a
//! differential test against `ring.h`'s own macros compiled from C, a loom model of the
//! notification protocol, and fuzz targets: see `ring/README.md`.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

mod back;
mod error;
mod front;
mod index;
#[allow(unsafe_code)]
mod mem;
mod sring;
mod stream;

pub use back::{BackRing, Requests};
pub use error::{GeometryError, RingError, Violation};
pub use front::{FrontRing, Responses};
pub use index::{Notify, RingIndex};
#[doc(hidden)]
pub use mem::field_size;
#[cfg(any(test, feature = "std"))]
pub use mem::HostPages;
pub use mem::{SharedMemory, Slot, PAGE_SIZE};
pub use sring::Geometry;
pub use stream::{
    Connection, Console, ConsoleClient, ConsoleServer, Layout, ServerFeatures, StreamClient,
    StreamLayout, StreamServer, XenStore, XsClient, XsErrorCode, XsServer, XS_RING_SIZE,
};
