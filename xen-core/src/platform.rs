//! The device platform: what every split-driver engine needs from its host beyond grants and event channels.
//!
//! xen-grant's [`GrantOps`] works one page at a time and gives no access to a page's bytes;
//! an engine also needs a contiguous multi-page ring (allocated and granted page by page by a
//! front, mapped as one region by a back, like `xenbus_grant_ring` and
//! `xenbus_map_ring_valloc`), fresh data pages, and safe copies in and out of pages:
//!
//! - [`PageBytes`]: copies in and out of a page the engine owns or mapped;
//! - [`PageAlloc`]: fresh pages to grant;
//! - [`RingMemory`]: a front's ring (allocate, grant, revoke, defer) and a back's (map);
//! - [`Progress`]: what one call of an engine's event handler did, and whether the event
//!   was spurious (for the late EOI);
//! - [`release_ring`]: a front's ring teardown, revoking each page's grant and deferring the
//!   free while the peer still maps one.
//!
//! The kernel implements these in `xen_kernel::platform` (with `alloc_pages`,
//! `xenbus_*_ring*` and volatile copies), the host simulator (`xen-sim`) for its domains with
//! its page pool. The request-slot table a front keeps for its outstanding requests is
//! [`crate::slots`].

use xen_grant::{AccessError, EndAccess, GrantError, GrantOps};
use xen_ring::{Geometry, SharedMemory};
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
    /// The page type (the `Page` of the matching [`GrantOps`]).
    type Page;

    /// A new page (contents unspecified: the engine zeroes it before granting it), or `None`
    /// when memory is short.
    fn alloc_page(&self) -> Option<Self::Page>;

    /// A page for a receive buffer (which the peer writes), and whether it may be granted
    /// without clearing: `true` when it holds zeros, or only what an earlier packet from this
    /// device's peer left in it (a receive buffer recycled through the stack, as a page pool
    /// gives them back). By default a page from [`PageAlloc::alloc_page`], to be cleared.
    fn alloc_rx_page(&mut self) -> Option<(Self::Page, bool)> {
        self.alloc_page().map(|p| (p, false))
    }
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

/// What one call of an engine's event handler (`handle_event`, or a back's `resume`) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Requests served (back) or responses completed (front).
    pub done: u32,
    /// More work is waiting: call again without waiting for an event.
    pub more: bool,
    /// The event brought no work (the peer notified for nothing, or floods the port). The
    /// glue passes this to the late EOI (`xen_irq_lateeoi` with `XEN_EOI_FLAG_SPURIOUS`),
    /// whose throttle delays the port after a run of spurious events; an event that found
    /// work, or found the engine waiting on its own I/O (stalled), is not spurious.
    pub spurious: bool,
}

/// Tears down a front's ring: revokes the grant of each page in `grefs`, then frees the ring,
/// or, if the peer still maps any page, hands the ring to [`RingMemory::defer_free_ring`]
/// with the grants still to revoke. A ring has at most [`Geometry::MAX_PAGES`] pages; grants
/// past that many still mapped are not handed on (the ring is deferred all the same).
pub fn release_ring<R: RingMemory + ?Sized>(env: &R, ring: R::Front, grefs: &[GrantRef]) {
    let mut busy = [GrantRef::new(0); Geometry::MAX_PAGES];
    let mut n = 0;
    for &g in grefs {
        if env.end_ring_access(g) == EndAccess::StillMapped {
            if let Some(b) = busy.get_mut(n) {
                *b = g;
                n += 1;
            }
        }
    }
    if n == 0 {
        drop(ring);
    } else {
        env.defer_free_ring(ring, busy.get(..n).unwrap_or(&[]));
    }
}

/// Revokes the grant `gref` of `page` and frees the page, or, if the peer still maps it,
/// hands both to [`GrantOps::defer_free`]: a granted page is never freed or reused while a
/// peer maps it. Returns what [`GrantOps::end_access`] answered (`StillMapped`: deferred).
pub fn revoke<G: GrantOps + ?Sized>(grants: &G, gref: GrantRef, page: G::Page) -> EndAccess {
    let ended = grants.end_access(gref);
    match ended {
        EndAccess::Ended => drop(page),
        EndAccess::StillMapped => grants.defer_free(gref, page),
    }
    ended
}
