//! Simulated machine memory: frames owned by domains, and the pages a domain allocates.
//!
//! Every allocation is an *extent*: a run of contiguous, page-aligned host pages with
//! consecutive frame numbers, owned by one domain. [`Pages`] is the owner's handle; it
//! implements [`SharedMemory`], so a front end can build a ring in it and grant its frames.
//! A grant mapping (see [`crate::gnttab`]) holds its own reference to the extent, like Xen's
//! page reference count: the memory stays valid while it is mapped even if the owner frees it,
//! and the simulator records that as a bug ([`crate::GrantStats::freed_while_granted`]).

use crate::Hypervisor;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};
use xen_ring::{HostPages, SharedMemory, PAGE_SIZE};
use xen_sys::{DomId, Gfn};

/// A run of contiguous frames owned by one domain.
pub(crate) struct Extent {
    pub(crate) mem: HostPages,
    pub(crate) first: Gfn,
    pub(crate) pages: usize,
    pub(crate) owner: DomId,
    hv: Weak<Hypervisor>,
}

impl Extent {
    /// The frame of page `index`, if it is inside the extent.
    pub(crate) fn frame(&self, index: usize) -> Option<Gfn> {
        if index >= self.pages {
            return None;
        }
        let index = u64::try_from(index).ok()?;
        Some(Gfn::new(self.first.raw() + index))
    }
}

impl Drop for Extent {
    fn drop(&mut self) {
        if let Some(hv) = self.hv.upgrade() {
            hv.frames.release(self.first, self.pages);
        }
    }
}

/// Where each live frame lives: its extent and its page index there.
#[derive(Default)]
pub(crate) struct FrameTable {
    inner: Mutex<FrameTableInner>,
}

#[derive(Default)]
struct FrameTableInner {
    next: u64,
    live: HashMap<u64, (Weak<Extent>, usize)>,
}

impl FrameTable {
    /// Allocates `pages` zeroed pages with fresh consecutive frame numbers.
    pub(crate) fn allocate(&self, hv: &Arc<Hypervisor>, owner: DomId, pages: usize) -> Arc<Extent> {
        let mut inner = self.inner.lock().unwrap();
        // Start well above zero so a zeroed frame field never names a real frame.
        let first = Gfn::new(inner.next.max(0x1000));
        let count = u64::try_from(pages).expect("page count fits u64");
        inner.next = first.raw() + count;
        let extent = Arc::new(Extent {
            mem: HostPages::new(pages),
            first,
            pages,
            owner,
            hv: Arc::downgrade(hv),
        });
        for i in 0..pages {
            inner
                .live
                .insert(first.raw() + i as u64, (Arc::downgrade(&extent), i));
        }
        extent
    }

    /// The extent holding `frame` and the page index in it.
    pub(crate) fn lookup(&self, frame: Gfn) -> Option<(Arc<Extent>, usize)> {
        let inner = self.inner.lock().unwrap();
        let (weak, index) = inner.live.get(&frame.raw())?;
        Some((weak.upgrade()?, *index))
    }

    fn release(&self, first: Gfn, pages: usize) {
        let mut inner = self.inner.lock().unwrap();
        for i in 0..pages {
            inner.live.remove(&(first.raw() + i as u64));
        }
    }
}

/// Pages a domain allocated: zeroed, page-aligned, with consecutive frame numbers.
///
/// This is the memory a front end builds its rings and data buffers in and grants to a peer.
/// Dropping it frees the pages; if any of its frames is still granted or mapped at that
/// moment the simulator counts a leak ([`crate::GrantStats::freed_while_granted`]) — the
/// memory itself stays valid for the mapper, as Xen's page references would keep it.
pub struct Pages {
    pub(crate) extent: Arc<Extent>,
    pub(crate) hv: Weak<Hypervisor>,
}

impl Pages {
    /// The number of pages.
    pub fn pages(&self) -> usize {
        self.extent.pages
    }

    /// The frame of page `index`.
    pub fn frame(&self, index: usize) -> Option<Gfn> {
        self.extent.frame(index)
    }

    /// The domain that owns these pages.
    pub fn owner(&self) -> DomId {
        self.extent.owner
    }

    /// The raw host pages, for a hostile test peer's `peek_*`/`poke_*`.
    pub fn host(&self) -> &HostPages {
        &self.extent.mem
    }

    /// Copies bytes out of the pages.
    ///
    /// # Panics
    ///
    /// If the range is outside the pages (test equipment).
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        self.extent.mem.peek_bytes(offset, dst);
    }

    /// Copies bytes into the pages.
    ///
    /// # Panics
    ///
    /// If the range is outside the pages (test equipment).
    pub fn write(&self, offset: usize, src: &[u8]) {
        self.extent.mem.poke_bytes(offset, src);
    }
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("owner", &self.extent.owner)
            .field("first", &self.extent.first)
            .field("pages", &self.extent.pages)
            .finish()
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if let Some(hv) = self.hv.upgrade() {
            hv.gnttab.note_free(&self.extent);
        }
    }
}

// SAFETY: the extent's `HostPages` is a page-aligned allocation of whole pages that lives as
// long as the `Arc` this value holds, its pointer and length never change, and `HostPages`
// accesses its bytes only through raw pointers.
unsafe impl SharedMemory for Pages {
    fn as_ptr(&self) -> NonNull<u8> {
        self.extent.mem.as_ptr()
    }

    fn len(&self) -> usize {
        self.extent.mem.len()
    }
}

/// The bytes of `pages` pages starting at page `first` of an extent, as one region.
///
/// # Invariants
///
/// `first + pages <= extent.pages` and `pages > 0`.
pub(crate) struct View {
    pub(crate) extent: Arc<Extent>,
    pub(crate) first: usize,
    pub(crate) pages: usize,
}

impl View {
    pub(crate) fn new(extent: Arc<Extent>, first: usize, pages: usize) -> Option<View> {
        let end = first.checked_add(pages)?;
        if pages == 0 || end > extent.pages {
            return None;
        }
        // INVARIANT: checked just above.
        Some(View {
            extent,
            first,
            pages,
        })
    }

    pub(crate) fn ptr(&self) -> NonNull<u8> {
        let base = self.extent.mem.as_ptr().as_ptr();
        // `first * PAGE_SIZE` is inside the allocation by the type invariant.
        let ptr = base.wrapping_add(self.first * PAGE_SIZE);
        NonNull::new(ptr).expect("a pointer inside an allocation is not null")
    }

    pub(crate) fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    /// Copies bytes out, `offset` relative to the view.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> bool {
        let Some(end) = offset.checked_add(dst.len()) else {
            return false;
        };
        if end > self.len() {
            return false;
        }
        self.extent
            .mem
            .peek_bytes(self.first * PAGE_SIZE + offset, dst);
        true
    }

    /// Copies bytes in, `offset` relative to the view.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) -> bool {
        let Some(end) = offset.checked_add(src.len()) else {
            return false;
        };
        if end > self.len() {
            return false;
        }
        self.extent
            .mem
            .poke_bytes(self.first * PAGE_SIZE + offset, src);
        true
    }
}
