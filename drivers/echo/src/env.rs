//! The small traits the echo engines need beyond xen-grant's and xen-evtchn's.
//!
//! xen-grant's `GrantOps` works one page at a time and gives no access to a page's bytes;
//! an engine also needs a contiguous multi-page ring (allocated and granted page by page by a
//! front, mapped as one region by a back, like `xenbus_grant_ring` and
//! `xenbus_map_ring_valloc`), fresh data pages, and safe copies in and out of pages. The
//! kernel glue implements these with `alloc_pages`, `xenbus_*_ring*` and volatile copies; the
//! host simulator with its page pool.

use xen_grant::{AccessError, EndAccess, GrantError};
use xen_ring::SharedMemory;
use xen_sys::{DomId, GrantRef};

/// Copies in and out of one page the engine owns or mapped. The peer may change the bytes at
/// any time: each call is one copy, and the engine never reads the same byte twice to decide
/// anything.
pub trait PageBytes {
    /// Copies `dst.len()` bytes at `offset` out; `false` (and nothing copied) if the range is
    /// outside the page.
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> bool;

    /// Copies `src` in at `offset`; `false` (and nothing copied) if the range is outside the
    /// page or the page is mapped read-only.
    fn write_bytes(&self, offset: usize, src: &[u8]) -> bool;
}

/// A source of fresh pages to grant.
pub trait PageAlloc {
    /// The page type (the `Page` of the matching `GrantOps`).
    type Page;

    /// A new page (contents unspecified: the engine zeroes it before granting it), or `None`
    /// when memory is short.
    fn alloc_page(&self) -> Option<Self::Page>;
}

/// Rings of 1 to 16 pages: the front's side (allocate, grant, revoke) and the back's (map).
pub trait RingMemory {
    /// A front's ring: contiguous pages it owns (dropping it frees them).
    type Front: SharedMemory;
    /// A back's mapping of a front's ring (dropping it unmaps).
    type Back: SharedMemory;

    /// Allocates `pages` contiguous pages.
    fn alloc_ring(&self, pages: usize) -> Option<Self::Front>;

    /// Grants `domid` read-write access to page `index` of `ring`.
    fn grant_ring_page(
        &self,
        domid: DomId,
        ring: &Self::Front,
        index: usize,
    ) -> Result<GrantRef, AccessError>;

    /// Revokes one ring page's grant unless the peer still maps it.
    fn end_ring_access(&self, gref: GrantRef) -> EndAccess;

    /// Takes a ring some of whose grants (`grefs`) the peer still maps; frees it once every
    /// one of them is revoked, or leaks it rather than free it early.
    fn defer_free_ring(&self, ring: Self::Front, grefs: &[GrantRef]);

    /// Maps the ring `domid` granted as `grefs` (in page order) as one region.
    fn map_ring(&self, domid: DomId, grefs: &[GrantRef]) -> Result<Self::Back, GrantError>;
}
