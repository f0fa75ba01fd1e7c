//! Grant references, the v1 grant-entry encoding and the grant operations drivers need.
//!
//! - [`RefAllocator`]: hands out grant references from a fixed range, detecting double
//!   frees without corrupting its free list.
//! - [`encode_v1`] / [`decode_v1`]: pure conversions between a grant and a
//!   `grant_entry_v1` ([`xen_sys::wire::grant::EntryV1`]).
//! - [`GrantOps`]: grant, revoke, map, unmap and copy, implemented by the kernel glue and by
//!   the host simulator. Batches report a result per slot ([`MapResult`], [`GrantError`]).
//! - [`GrantedPage`]: a page granted for as long as the guard lives. It is zeroed before it
//!   is granted; dropping it revokes the grant, or defers the free if the peer still maps the
//!   page ([`EndAccess::StillMapped`], [`DeferredQueue`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod deferred;
mod entry;
mod ops;
mod page;
mod refs;

pub use deferred::{Deferred, DeferredQueue, Retry};
pub use entry::{decode_v1, encode_v1, revocable, Access, EntryState, FrameTooLarge};
pub use ops::{
    AccessError, BatchError, CopyOp, CopyPtr, EndAccess, GrantError, GrantOps, LendOps, MapRequest,
    MapResult, UnmapResult, PAGE_SIZE,
};
pub use page::GrantedPage;
pub use refs::{ArrayRefAllocator, Exhausted, FreeError, RangeError, RefAllocator};
pub use xen_sys::{DomId, Gfn, GrantRef};
