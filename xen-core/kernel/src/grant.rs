// SPDX-License-Identifier: GPL-2.0

//! Grant tables through the kernel's `gnttab_*` functions: an implementation of xen-grant's
//! `GrantOps`.
//!
//! - Frontends grant [`LocalPage`]s (zeroed, owned pages). Revoking uses
//!   `gnttab_try_end_foreign_access`; a page the peer still maps is handed to
//!   `gnttab_end_foreign_access`, which keeps it on the kernel's deferred list and frees it
//!   only once the peer has unmapped it (the deferred-free rule).
//! - Backends map foreign grants into a fixed pool of pages from `gnttab_alloc_pages`, in
//!   batches through `gnttab_map_refs`/`gnttab_unmap_refs`; every slot has its own status, and a
//!   failed slot is reported, never fatal. A [`Mapping`] is read through a copy accessor only.
//!
//! - Grant copy goes through `gnttab_batch_copy` (which retries `GNTST_eagain` itself), at
//!   most 16 copies per call, each checked as Xen would before it is sent.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;
use xen_grant::{
    Access, AccessError, BatchError, CopyOp, CopyPtr, EndAccess, GrantError, GrantOps, MapRequest,
    MapResult, UnmapResult,
};
use xen_kbindings as b;
use xen_sys::{DomId, GrantRef};

use crate::stats;

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;
/// Largest map pool, and largest batch (the C helper's limit).
pub const MAX_POOL: usize = 16;

/// Copies `dst.len()` bytes out of `base + offset` with volatile loads; `false` (nothing
/// copied) if the range leaves the page.
///
/// # Safety
///
/// `base` must point to a page (`PAGE_SIZE` bytes) valid for reads.
unsafe fn copy_out(base: *const u8, offset: usize, dst: &mut [u8]) -> bool {
    match offset.checked_add(dst.len()) {
        Some(end) if end <= PAGE_SIZE => {}
        _ => return false,
    }
    for (i, byte) in dst.iter_mut().enumerate() {
        // SAFETY: `offset + i < PAGE_SIZE` (checked above) and the page is readable (caller).
        // Volatile: the peer may write the page concurrently.
        *byte = unsafe { base.add(offset + i).read_volatile() };
    }
    true
}

/// Copies `src` to `base + offset` with volatile stores; `false` (nothing copied) if the range
/// leaves the page.
///
/// # Safety
///
/// `base` must point to a page (`PAGE_SIZE` bytes) valid for writes.
unsafe fn copy_in(base: *mut u8, offset: usize, src: &[u8]) -> bool {
    match offset.checked_add(src.len()) {
        Some(end) if end <= PAGE_SIZE => {}
        _ => return false,
    }
    for (i, byte) in src.iter().enumerate() {
        // SAFETY: in range (checked above) and writable (caller). Volatile: the page is shared.
        unsafe { base.add(offset + i).write_volatile(*byte) };
    }
    true
}

/// The busy-mask bit of pool slot `i` (0 for an index out of range).
fn bit(i: usize) -> u32 {
    u32::try_from(i)
        .ok()
        .and_then(|s| 1u32.checked_shl(s))
        .unwrap_or(0)
}

/// A zeroed page of our own memory, freed on drop.
///
/// # Invariants
///
/// `addr` is a page from `get_zeroed_page` that this value owns.
pub struct LocalPage {
    addr: NonNull<u8>,
}

// SAFETY: the page is plain memory owned by this value.
unsafe impl Send for LocalPage {}

impl LocalPage {
    /// A new zeroed page.
    pub fn new() -> Option<LocalPage> {
        // SAFETY: no preconditions; returns a page or NULL.
        let addr = unsafe { b::xpvrs_alloc_page() };
        // INVARIANT: a fresh page we own.
        NonNull::new(addr.cast()).map(|addr| LocalPage { addr })
    }

    /// The page's kernel address, for C code that copies whole pages (e.g. the block layer's
    /// request copy in [`crate::blk`]); valid while `self` is borrowed.
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    /// Copies bytes out of the page (see `xen_echo::env::PageBytes`).
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> bool {
        // SAFETY: we own the page (type invariant).
        unsafe { copy_out(self.addr.as_ptr(), offset, dst) }
    }

    /// Copies bytes into the page.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> bool {
        // SAFETY: we own the page (type invariant).
        unsafe { copy_in(self.addr.as_ptr(), offset, src) }
    }
}

impl Drop for LocalPage {
    fn drop(&mut self) {
        // SAFETY: the page is ours (type invariant) and nobody else may use it: a granted page
        // only reaches drop once its grant is revoked (`GrantOps` contract), otherwise it is
        // handed to the kernel with `defer_free` instead.
        unsafe { b::xpvrs_free_page(self.addr.as_ptr().cast()) };
    }
}

/// A foreign page mapped into one of the pool's pages.
///
/// # Invariants
///
/// While it exists, pool slot `index` is busy and holds this grant mapping (`handle`).
pub struct Mapping {
    index: usize,
    addr: NonNull<u8>,
    handle: b::grant_handle_t,
    readonly: bool,
}

// SAFETY: a mapping is an address and a handle; nothing ties it to a thread.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Copies bytes out of the mapped page.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> bool {
        // SAFETY: the page is mapped while `self` exists (type invariant).
        unsafe { copy_out(self.addr.as_ptr(), offset, dst) }
    }

    /// Copies bytes into the mapped page; `false` if it is mapped read-only.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> bool {
        if self.readonly {
            return false;
        }
        // SAFETY: mapped read-write while `self` exists (type invariant).
        unsafe { copy_in(self.addr.as_ptr(), offset, src) }
    }
}

/// The grant-table operations of one device.
///
/// # Invariants
///
/// `pool[..pool_len]` are pages from `gnttab_alloc_pages`; bit `i` of `busy` is set while a
/// [`Mapping`] of slot `i` exists.
pub struct Grants {
    pool: [*mut b::page; MAX_POOL],
    pool_len: usize,
    busy: AtomicU32,
}

// SAFETY: the pool pages are owned by this value; `busy` is atomic.
unsafe impl Send for Grants {}

impl Grants {
    /// Grants for a frontend: grant and revoke only, no map pool.
    pub fn new() -> Grants {
        Grants {
            pool: [core::ptr::null_mut(); MAX_POOL],
            pool_len: 0,
            busy: AtomicU32::new(0),
        }
    }

    /// Grants for a backend: up to `pool` foreign pages mapped at once.
    pub fn with_map_pool(pool: usize) -> Result<Grants> {
        let mut g = Grants::new();
        let n = pool.min(MAX_POOL);
        let nr = u32::try_from(n).map_err(|_| EINVAL)?;
        // SAFETY: `g.pool` has room for `n <= MAX_POOL` page pointers.
        let ret = unsafe { b::xpvrs_alloc_map_pages(nr, g.pool.as_mut_ptr()) };
        kernel::error::to_result(ret)?;
        // INVARIANT: `n` pool pages allocated, none busy.
        g.pool_len = n;
        Ok(g)
    }

    fn take_slot(&self) -> Option<usize> {
        let mut found = None;
        let _ = self
            .busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |mask| {
                let free = (0..self.pool_len).find(|&i| mask & bit(i) == 0)?;
                found = Some(free);
                Some(mask | bit(free))
            });
        found
    }

    fn release_slot(&self, index: usize) {
        self.busy.fetch_and(!bit(index), Ordering::AcqRel);
    }
}

impl Default for Grants {
    fn default() -> Self {
        Grants::new()
    }
}

impl Drop for Grants {
    fn drop(&mut self) {
        if self.pool_len == 0 {
            return;
        }
        if self.busy.load(Ordering::Acquire) != 0 {
            // A mapping was dropped without being unmapped: the pool pages may still hold
            // foreign frames, so they must never return to the allocator.
            pr_err!(
                "xen_kernel: grant mappings still in place at teardown; leaking the map pool\n"
            );
            return;
        }
        let nr = u32::try_from(self.pool_len).unwrap_or(0);
        // SAFETY: the pool pages came from `gnttab_alloc_pages` and none is mapped.
        unsafe { b::xpvrs_free_map_pages(nr, self.pool.as_mut_ptr()) };
    }
}

impl GrantOps for Grants {
    type Page = LocalPage;
    type Mapping = Mapping;

    fn zero_page(&self, page: &mut LocalPage) {
        // SAFETY: we own the page; `&mut` means no grant of it is in use by this engine.
        unsafe { core::ptr::write_bytes(page.addr.as_ptr(), 0, PAGE_SIZE) };
    }

    fn grant_access(
        &self,
        domid: DomId,
        page: &LocalPage,
        access: Access,
    ) -> Result<GrantRef, AccessError> {
        // SAFETY: `page` is a live page of the direct map.
        let gfn = unsafe { b::xpvrs_virt_to_gfn(page.addr.as_ptr().cast()) };
        let readonly = i32::from(access == Access::ReadOnly);
        // SAFETY: grants a page we own; the grant is revoked before the page is freed
        // (`end_access`) or the page is handed to the kernel (`defer_free`).
        let r = unsafe { b::gnttab_grant_foreign_access(domid.raw(), gfn, readonly) };
        let gref = u32::try_from(r).map_err(|_| AccessError::NoFreeRefs)?;
        stats::inc(&stats::GRANTS);
        Ok(GrantRef::new(gref))
    }

    fn end_access(&self, gref: GrantRef) -> EndAccess {
        // SAFETY: revokes a grant this implementation made; on success the kernel also frees
        // the reference, and the entry is left alone (and the page must be kept) otherwise.
        if unsafe { b::gnttab_try_end_foreign_access(gref.raw()) } == 0 {
            return EndAccess::StillMapped;
        }
        stats::dec(&stats::GRANTS);
        EndAccess::Ended
    }

    fn defer_free(&self, gref: GrantRef, page: LocalPage) {
        let addr = page.addr;
        core::mem::forget(page);
        // SAFETY: `addr` is a page we owned (now given up); `gnttab_end_foreign_access` takes
        // ownership of its reference and frees it once the peer no longer maps it.
        unsafe {
            let pg = b::xpvrs_virt_to_page(addr.as_ptr().cast());
            b::gnttab_end_foreign_access(gref.raw(), pg);
        }
        stats::dec(&stats::GRANTS);
        stats::inc(&stats::DEFERRED);
    }

    fn map_batch(
        &self,
        requests: &[MapRequest],
        results: &mut [MapResult<Mapping>],
    ) -> Result<(), BatchError> {
        if requests.len() != results.len() {
            return Err(BatchError::LengthMismatch);
        }
        if results.iter().any(|r| !matches!(r, MapResult::Pending)) {
            return Err(BatchError::ResultNotPending);
        }
        if requests.len() > self.pool_len {
            return Err(BatchError::TooLarge);
        }
        // Compacted arrays: entry `k` is request `which[k]`, mapped into pool slot `slots[k]`.
        let mut pages = [core::ptr::null_mut::<b::page>(); MAX_POOL];
        let mut slots = [usize::MAX; MAX_POOL];
        let mut which = [usize::MAX; MAX_POOL];
        let mut refs = [0u32; MAX_POOL];
        let mut domids = [0u16; MAX_POOL];
        let mut ro = [false; MAX_POOL];
        let mut handles: [b::grant_handle_t; MAX_POOL] = [0; MAX_POOL];
        let mut status = [0i16; MAX_POOL];
        let mut n = 0usize;
        for (i, (req, res)) in requests.iter().zip(results.iter_mut()).enumerate() {
            let (Some(p), Some(s), Some(w), Some(r), Some(d), Some(o)) = (
                pages.get_mut(n),
                slots.get_mut(n),
                which.get_mut(n),
                refs.get_mut(n),
                domids.get_mut(n),
                ro.get_mut(n),
            ) else {
                *res = MapResult::Failed(GrantError::NoSpace);
                continue;
            };
            let Some(slot) = self.take_slot() else {
                *res = MapResult::Failed(GrantError::NoSpace);
                continue;
            };
            *p = self
                .pool
                .get(slot)
                .copied()
                .unwrap_or(core::ptr::null_mut());
            *s = slot;
            *w = i;
            *r = req.gref.raw();
            *d = req.domid.raw();
            *o = req.access == Access::ReadOnly;
            n += 1;
        }
        let count = u32::try_from(n).map_err(|_| BatchError::TooLarge)?;
        if count == 0 {
            return Ok(());
        }
        // SAFETY: the first `n` entries of every array are initialised, each page a pool page
        // (`slot < pool_len`) reserved for this entry alone.
        let _ = unsafe {
            b::xpvrs_map_grants(
                pages.as_mut_ptr(),
                refs.as_ptr(),
                domids.as_ptr(),
                ro.as_ptr(),
                handles.as_mut_ptr(),
                status.as_mut_ptr(),
                count,
            )
        };
        for k in 0..n {
            let (slot, st, h, page, readonly) = (
                slots.get(k).copied().unwrap_or(usize::MAX),
                status.get(k).copied().unwrap_or(-1),
                handles.get(k).copied().unwrap_or(0),
                pages.get(k).copied().unwrap_or(core::ptr::null_mut()),
                ro.get(k).copied().unwrap_or(true),
            );
            let Some(res) = which.get(k).and_then(|&i| results.get_mut(i)) else {
                continue;
            };
            match GrantError::check(st) {
                Ok(()) => {
                    // SAFETY: `page` is a pool page (a live `struct page`).
                    let addr = unsafe { b::xpvrs_page_address(page) };
                    match NonNull::new(addr.cast::<u8>()) {
                        Some(addr) => {
                            stats::inc(&stats::MAPPINGS);
                            // INVARIANT: slot `slot` is busy and now holds this mapping.
                            *res = MapResult::Mapped(Mapping {
                                index: slot,
                                addr,
                                handle: h,
                                readonly,
                            });
                        }
                        None => *res = MapResult::Failed(GrantError::BadVirtAddr),
                    }
                }
                Err(e) => {
                    self.release_slot(slot);
                    *res = MapResult::Failed(e);
                }
            }
        }
        Ok(())
    }

    fn unmap_batch(
        &self,
        mappings: &mut [Option<Mapping>],
        results: &mut [UnmapResult],
    ) -> Result<(), BatchError> {
        if mappings.len() != results.len() {
            return Err(BatchError::LengthMismatch);
        }
        if mappings.len() > MAX_POOL {
            return Err(BatchError::TooLarge);
        }
        let mut pages = [core::ptr::null_mut::<b::page>(); MAX_POOL];
        let mut handles: [b::grant_handle_t; MAX_POOL] = [0; MAX_POOL];
        let mut which = [usize::MAX; MAX_POOL];
        let mut status = [0i16; MAX_POOL];
        let mut n = 0usize;
        for (i, m) in mappings.iter().enumerate() {
            let Some(m) = m else { continue };
            if let (Some(p), Some(h), Some(w)) =
                (pages.get_mut(n), handles.get_mut(n), which.get_mut(n))
            {
                *p = self
                    .pool
                    .get(m.index)
                    .copied()
                    .unwrap_or(core::ptr::null_mut());
                *h = m.handle;
                *w = i;
                n += 1;
            }
        }
        for r in results.iter_mut() {
            *r = UnmapResult::Skipped;
        }
        let count = u32::try_from(n).map_err(|_| BatchError::TooLarge)?;
        if count == 0 {
            return Ok(());
        }
        // SAFETY: the first `n` entries are the pool pages and handles of live mappings.
        let _ = unsafe {
            b::xpvrs_unmap_grants(
                pages.as_mut_ptr(),
                handles.as_ptr(),
                status.as_mut_ptr(),
                count,
            )
        };
        for k in 0..n {
            let i = which.get(k).copied().unwrap_or(usize::MAX);
            let st = status.get(k).copied().unwrap_or(-1);
            let (Some(slot), Some(res)) = (mappings.get_mut(i), results.get_mut(i)) else {
                continue;
            };
            match GrantError::check(st) {
                Ok(()) => {
                    if let Some(m) = slot.take() {
                        self.release_slot(m.index);
                        stats::dec(&stats::MAPPINGS);
                    }
                    *res = UnmapResult::Unmapped;
                }
                Err(e) => *res = UnmapResult::Failed(e),
            }
        }
        Ok(())
    }

    fn copy_batch(
        &self,
        ops: &[CopyOp<'_, LocalPage>],
        results: &mut [Result<(), GrantError>],
    ) -> Result<(), BatchError> {
        if ops.len() != results.len() {
            return Err(BatchError::LengthMismatch);
        }
        if ops.len() > MAX_POOL {
            return Err(BatchError::TooLarge);
        }
        let end = || b::xpvrs_copy_end {
            gref_or_gfn: 0,
            domid: 0,
            offset: 0,
            is_gref: false,
        };
        let mut src = [end(); MAX_POOL];
        let mut dst = [end(); MAX_POOL];
        let mut len = [0u16; MAX_POOL];
        let mut status = [0i16; MAX_POOL];
        let mut which = [usize::MAX; MAX_POOL];
        let mut n = 0usize;
        for (i, (op, res)) in ops.iter().zip(results.iter_mut()).enumerate() {
            // Xen's own check, done here first: a bad slot costs its result only.
            if let Err(e) = op.check() {
                *res = Err(e);
                continue;
            }
            let (Some(s), Some(d), Some(l), Some(w)) = (
                src.get_mut(n),
                dst.get_mut(n),
                len.get_mut(n),
                which.get_mut(n),
            ) else {
                *res = Err(GrantError::NoSpace);
                continue;
            };
            *s = copy_end(&op.source);
            *d = copy_end(&op.dest);
            *l = op.len;
            *w = i;
            n += 1;
        }
        let count = u32::try_from(n).map_err(|_| BatchError::TooLarge)?;
        if count == 0 {
            return Ok(());
        }
        // SAFETY: the first `n` entries of each array are initialised; local ends name pages we
        // own (borrowed by `ops` for the call), foreign ends are checked by Xen.
        let ret = unsafe {
            b::xpvrs_grant_copy(
                src.as_ptr(),
                dst.as_ptr(),
                len.as_ptr(),
                status.as_mut_ptr(),
                count,
            )
        };
        for k in 0..n {
            let Some(res) = which.get(k).and_then(|&i| results.get_mut(i)) else {
                continue;
            };
            let st = if ret < 0 {
                -1
            } else {
                status.get(k).copied().unwrap_or(-1)
            };
            *res = GrantError::check(st);
        }
        Ok(())
    }
}

/// `DOMID_SELF`: a local frame in a grant copy.
const DOMID_SELF: u16 = 0x7FF0;

fn copy_end(ptr: &CopyPtr<'_, LocalPage>) -> b::xpvrs_copy_end {
    match *ptr {
        CopyPtr::Foreign {
            domid,
            gref,
            offset,
        } => b::xpvrs_copy_end {
            gref_or_gfn: u64::from(gref.raw()),
            domid: domid.raw(),
            offset,
            is_gref: true,
        },
        CopyPtr::Local { page, offset } => b::xpvrs_copy_end {
            // SAFETY: `page` is a live page of the direct map.
            gref_or_gfn: u64::try_from(unsafe { b::xpvrs_virt_to_gfn(page.addr.as_ptr().cast()) })
                .unwrap_or(u64::MAX),
            domid: DOMID_SELF,
            offset,
            is_gref: false,
        },
    }
}
