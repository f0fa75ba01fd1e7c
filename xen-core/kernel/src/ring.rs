// SPDX-License-Identifier: GPL-2.0

//! Shared ring pages of 1 to 16 pages, implementing xen-ring's `SharedMemory`.
//!
//! [`FrontRingPages`] are allocated, zeroed and granted to the other end by
//! `xenbus_setup_ring`. Dropping them does not use `xenbus_teardown_ring` (which frees every
//! page even when the peer still maps it): each page is handed with its grant to
//! `gnttab_end_foreign_access`, which frees it at once if the grant could be revoked and
//! otherwise keeps it on the kernel's deferred list until the peer unmaps it.
//! [`BackRingPages`] are a frontend's ring mapped as one virtually contiguous region by
//! `xenbus_map_ring_valloc`; dropping them unmaps.

use core::ptr::NonNull;
use kernel::prelude::*;
use xen_kbindings as b;
use xen_ring::{SharedMemory, PAGE_SIZE};
use xen_sys::GrantRef;

use crate::bus::DeviceHandle;
use crate::stats;

/// Most pages in a ring (order 4).
pub const MAX_RING_PAGES: usize = 16;

/// A frontend's ring, granted to the device's other end.
///
/// # Invariants
///
/// `vaddr` is `pages` zeroed, page-aligned, contiguous pages from `xenbus_setup_ring`, each
/// granted to the other end as `grefs[i]`, until drop.
pub struct FrontRingPages {
    vaddr: NonNull<u8>,
    pages: usize,
    grefs: [u32; MAX_RING_PAGES],
}

// SAFETY: the pages are owned by this value; access goes through raw pointers only.
unsafe impl Send for FrontRingPages {}

impl FrontRingPages {
    /// Allocates and grants `pages` pages (1 to 16) to `dev`'s other end.
    pub fn new(dev: &DeviceHandle, pages: usize) -> Result<FrontRingPages> {
        if pages == 0 || pages > MAX_RING_PAGES {
            return Err(EINVAL);
        }
        let mut grefs = [0u32; MAX_RING_PAGES];
        let mut vaddr: *mut kernel::ffi::c_void = core::ptr::null_mut();
        let nr = u32::try_from(pages).map_err(|_| EINVAL)?;
        // SAFETY: `dev` is live; `vaddr` and `grefs` (room for 16) are valid out-pointers.
        let ret = unsafe { b::xpvrs_setup_ring(dev.as_raw(), &mut vaddr, nr, grefs.as_mut_ptr()) };
        kernel::error::to_result(ret)?;
        let vaddr = NonNull::new(vaddr.cast::<u8>()).ok_or(ENOMEM)?;
        stats::inc(&stats::FRONT_RINGS);
        // INVARIANT: set up by xenbus_setup_ring just now.
        Ok(FrontRingPages {
            vaddr,
            pages,
            grefs,
        })
    }

    /// The grant of page `index`.
    pub fn gref(&self, index: usize) -> Option<GrantRef> {
        self.grefs
            .get(..self.pages)?
            .get(index)
            .map(|&g| GrantRef::new(g))
    }

    /// Pages in the ring.
    pub fn pages(&self) -> usize {
        self.pages
    }
}

// SAFETY: the region is `pages * PAGE_SIZE` bytes, page-aligned (page allocator), allocated
// until drop (type invariant); this type hands out no references to it.
unsafe impl SharedMemory for FrontRingPages {
    fn as_ptr(&self) -> NonNull<u8> {
        self.vaddr
    }
    fn len(&self) -> usize {
        self.pages.wrapping_mul(PAGE_SIZE)
    }
}

impl Drop for FrontRingPages {
    fn drop(&mut self) {
        // The pages come from `alloc_pages_exact` (in `xenbus_setup_ring`), which splits them:
        // each is a page of its own, with its own reference count.
        for (i, &gref) in self.grefs.iter().enumerate().take(self.pages) {
            let addr = self.vaddr.as_ptr().wrapping_add(i.wrapping_mul(PAGE_SIZE));
            // SAFETY: `addr` is page `i` of the ring, granted as `gref` (type invariant). The
            // kernel takes the page's reference: freed now if the grant is revoked, or later,
            // once the peer no longer maps it.
            unsafe {
                let page = b::xpvrs_virt_to_page(addr.cast());
                b::gnttab_end_foreign_access(gref, page);
            }
        }
        stats::dec(&stats::FRONT_RINGS);
    }
}

/// A frontend's ring mapped by a backend.
///
/// # Invariants
///
/// `vaddr` is `pages` pages mapped by `xenbus_map_ring_valloc` for `dev`, until drop.
pub struct BackRingPages {
    dev: DeviceHandle,
    vaddr: NonNull<u8>,
    pages: usize,
}

// SAFETY: the mapping is owned by this value; access goes through raw pointers only.
unsafe impl Send for BackRingPages {}

impl BackRingPages {
    /// Maps the other end's ring pages `grefs` (1 to 16, in order) as one region.
    pub fn map(dev: &DeviceHandle, grefs: &[GrantRef]) -> Result<BackRingPages> {
        if grefs.is_empty() || grefs.len() > MAX_RING_PAGES {
            return Err(EINVAL);
        }
        let mut raw = [0u32; MAX_RING_PAGES];
        for (d, g) in raw.iter_mut().zip(grefs) {
            *d = g.raw();
        }
        let nr = u32::try_from(grefs.len()).map_err(|_| EINVAL)?;
        let mut vaddr: *mut kernel::ffi::c_void = core::ptr::null_mut();
        // SAFETY: `dev` is live; `raw` holds `nr` references; `vaddr` is a valid out-pointer.
        let ret =
            unsafe { b::xenbus_map_ring_valloc(dev.as_raw(), raw.as_mut_ptr(), nr, &mut vaddr) };
        kernel::error::to_result(ret)?;
        let vaddr = NonNull::new(vaddr.cast::<u8>()).ok_or(ENOMEM)?;
        stats::inc(&stats::BACK_RINGS);
        // INVARIANT: mapped just now.
        Ok(BackRingPages {
            dev: dev.clone(),
            vaddr,
            pages: grefs.len(),
        })
    }
}

// SAFETY: the region is `pages * PAGE_SIZE` bytes, page-aligned (vmalloc area), mapped
// read-write until drop (type invariant); this type hands out no references to it.
unsafe impl SharedMemory for BackRingPages {
    fn as_ptr(&self) -> NonNull<u8> {
        self.vaddr
    }
    fn len(&self) -> usize {
        self.pages.wrapping_mul(PAGE_SIZE)
    }
}

impl Drop for BackRingPages {
    fn drop(&mut self) {
        // SAFETY: mapped by xenbus_map_ring_valloc for this device (type invariant).
        let ret =
            unsafe { b::xenbus_unmap_ring_vfree(self.dev.as_raw(), self.vaddr.as_ptr().cast()) };
        if ret == 0 {
            stats::dec(&stats::BACK_RINGS);
        }
    }
}
