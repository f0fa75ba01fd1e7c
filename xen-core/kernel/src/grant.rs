// SPDX-License-Identifier: GPL-2.0

//! Grant tables through the kernel's `gnttab_*` functions: an implementation of xen-grant's
//! `GrantOps`.
//!
//! - Frontends grant [`LocalPage`]s (zeroed, owned pages). Revoking uses
//!   `gnttab_try_end_foreign_access`; a page the peer still maps is handed to
//!   `gnttab_end_foreign_access`, which keeps it on the kernel's deferred list and frees it
//!   only once the peer has unmapped it (the deferred-free rule).
//! - Backends map foreign grants into a pool of up to [`MAX_POOL_PAGES`] slots, in batches
//!   of at most [`MAX_BATCH`] through `gnttab_map_refs`/`gnttab_unmap_refs`; every slot has its
//!   own status, and a failed slot is reported, never fatal. A slot's page comes from
//!   `gnttab_alloc_pages` the first time the slot is used and stays with the pool (reused by
//!   later mappings) until the pool is dropped. A [`Mapping`] is read through a copy accessor
//!   only; its page ([`Mapping::page`]) can also be handed to the block layer
//!   (`linux::block::bio`).
//!
//! - Grant copy goes through `gnttab_batch_copy` (which retries `GNTST_eagain` itself), at
//!   most 16 copies per call, each checked as Xen would before it is sent.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use kernel::prelude::*;
use xen_grant::{
    Access, AccessError, BatchError, CopyOp, CopyPtr, EndAccess, GrantError, GrantOps, LendOps,
    MapRequest, MapResult, UnmapResult,
};
use xen_kbindings as b;
use xen_sys::{DomId, Gfn, GrantRef};

use linux::page::{KernelPage, PagePtr};
use crate::stats;

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;
/// Largest batch of one `map_batch`, `unmap_batch` or `copy_batch` call (the C helpers'
/// limit, which keeps their stack use small).
pub const MAX_BATCH: usize = 16;
/// The old name of [`MAX_BATCH`], from when the map pool was no larger than a batch.
pub const MAX_POOL: usize = MAX_BATCH;
/// Largest map pool ([`Grants::with_map_pool`]): foreign pages mapped at once.
pub const MAX_POOL_PAGES: usize = 4096;

/// Slots per word of the busy bitmap.
const SLOTS_PER_WORD: usize = 64;

/// Bytes per word of the volatile copies: the aligned middle of a range is copied a word at a
/// time (one load or store each, every byte still read or written exactly once), its unaligned
/// ends a byte at a time. Byte by byte alone costs several instructions per byte, which a
/// network frontend copying every packet pays on each one.
const WORD: usize = core::mem::size_of::<u64>();

/// Copies `dst.len()` bytes out of `base + offset` with volatile loads, each byte read once;
/// `false` (nothing copied) if the range leaves the page.
///
/// # Safety
///
/// `base` must point to a page (`PAGE_SIZE` bytes, page-aligned) valid for reads.
pub(crate) unsafe fn copy_out(base: *const u8, offset: usize, dst: &mut [u8]) -> bool {
    match offset.checked_add(dst.len()) {
        Some(end) if end <= PAGE_SIZE => {}
        _ => return false,
    }
    // Bytes up to the first word boundary (the page is page-aligned, so `offset` says it).
    let head = ((WORD - offset % WORD) % WORD).min(dst.len());
    let (first, rest) = dst.split_at_mut(head);
    let mut at = offset;
    for byte in first.iter_mut() {
        // SAFETY: `at < offset + dst.len() <= PAGE_SIZE` (checked above) and the page is
        // readable (caller). Volatile: the peer may write the page concurrently.
        *byte = unsafe { base.add(at).read_volatile() };
        at += 1;
    }
    let mut words = rest.chunks_exact_mut(WORD);
    for chunk in &mut words {
        // SAFETY: `at` is a multiple of `WORD` (after the head) and `at + WORD <= PAGE_SIZE`
        // (the chunk lies in the checked range), so the load is aligned and in the page.
        let w = unsafe { base.add(at).cast::<u64>().read_volatile() };
        chunk.copy_from_slice(&w.to_ne_bytes());
        at += WORD;
    }
    for byte in words.into_remainder() {
        // SAFETY: in the checked range, as above.
        *byte = unsafe { base.add(at).read_volatile() };
        at += 1;
    }
    true
}

/// Copies `src` to `base + offset` with volatile stores, each byte written once; `false`
/// (nothing copied) if the range leaves the page.
///
/// # Safety
///
/// `base` must point to a page (`PAGE_SIZE` bytes, page-aligned) valid for writes.
pub(crate) unsafe fn copy_in(base: *mut u8, offset: usize, src: &[u8]) -> bool {
    match offset.checked_add(src.len()) {
        Some(end) if end <= PAGE_SIZE => {}
        _ => return false,
    }
    let head = ((WORD - offset % WORD) % WORD).min(src.len());
    let (first, rest) = src.split_at(head);
    let mut at = offset;
    for byte in first {
        // SAFETY: in range (checked above) and writable (caller). Volatile: the page is shared.
        unsafe { base.add(at).write_volatile(*byte) };
        at += 1;
    }
    let mut words = rest.chunks_exact(WORD);
    for chunk in &mut words {
        let mut w = [0u8; WORD];
        w.copy_from_slice(chunk);
        // SAFETY: `at` is a multiple of `WORD` (after the head) and `at + WORD <= PAGE_SIZE`
        // (the chunk lies in the checked range), so the store is aligned and in the page.
        unsafe { base.add(at).cast::<u64>().write_volatile(u64::from_ne_bytes(w)) };
        at += WORD;
    }
    for byte in words.remainder() {
        // SAFETY: in range (checked above) and writable (caller).
        unsafe { base.add(at).write_volatile(*byte) };
        at += 1;
    }
    true
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

    /// A new page whose contents are whatever its last owner left (`atomic`: allocated
    /// without sleeping), for an engine that zeroes it before anyone else sees it (the
    /// contract of `xen_core::platform::PageAlloc`); `None` when memory is short.
    pub fn new_unzeroed(atomic: bool) -> Option<LocalPage> {
        // SAFETY: no preconditions; returns a page or NULL, never sleeps when `atomic`.
        let addr = unsafe { b::xpvrs_alloc_page_unzeroed(atomic) };
        // INVARIANT: a fresh page we own.
        NonNull::new(addr.cast()).map(|addr| LocalPage { addr })
    }

    /// The page's kernel address, for C code that copies whole pages (e.g. the block layer's
    /// request copy in `linux::block::mq`); valid while `self` is borrowed.
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    /// Copies bytes out of the page (see `xen_core::platform::PageBytes`).
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

// SAFETY: a page we own (type invariant), mapped in the kernel and `PAGE_SIZE` bytes, until
// `drop`, which a borrow of `self` excludes.
unsafe impl KernelPage for LocalPage {
    fn kernel_addr(&self) -> NonNull<u8> {
        self.addr
    }
}

// SAFETY: an order-0 page of the direct map from `get_zeroed_page`, with the one reference we
// own (type invariant); `give_up` forgets it, so it is never freed here.
unsafe impl linux::page::GivePage for LocalPage {
    fn kernel_addr(&self) -> NonNull<u8> {
        self.addr
    }

    fn give_up(self) {
        core::mem::forget(self);
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
/// While it exists, pool slot `index` is busy and `page` (the slot's pool page, whose kernel
/// address is `addr`) holds this grant mapping (`handle`).
pub struct Mapping {
    index: usize,
    page: NonNull<b::page>,
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

    /// The pool page the foreign frame is mapped at, for block I/O on it
    /// (`linux::block::bio::BlockDevice::submit`).
    ///
    /// The page shows the foreign frame while this mapping exists: I/O on it must have
    /// completed before the mapping is unmapped (or dropped). A read-only mapping
    /// ([`Mapping::is_readonly`]) may only be the source of a write to disk, never the
    /// destination of a read from it.
    pub fn page(&self) -> PagePtr {
        PagePtr::new(self.page.cast(), !self.readonly)
    }

    /// Whether the page is mapped read-only.
    pub fn is_readonly(&self) -> bool {
        self.readonly
    }
}

/// The grant-table operations of one device.
///
/// A backend's map pool has `pool_len` slots, each a page of its own (from
/// `gnttab_alloc_pages`) into which one foreign frame is mapped at a time. Slots are claimed
/// through a bitmap of atomic words; a slot's page is allocated the first time the slot is
/// claimed, by its claimer, which owns the slot (and so may store its page pointer) until it
/// releases the busy bit.
///
/// # Invariants
///
/// - `pages.len() == pool_len` and `busy.len() == pool_len.div_ceil(64)`; no bit for a slot
///   `>= pool_len` is ever set.
/// - Bit `i % 64` of `busy[i / 64]` is set while slot `i` is claimed: from `take_slot` until
///   the [`Mapping`] of slot `i` is unmapped, or until its map attempt fails.
/// - `pages[i]` is null or a page from `gnttab_alloc_pages(1, ..)` that this value owns; it is
///   written only by the claimer of slot `i`, and holds a foreign mapping only while a
///   [`Mapping`] of slot `i` exists.
pub struct Grants {
    pages: KVVec<AtomicPtr<b::page>>,
    busy: KVec<AtomicU64>,
    pool_len: usize,
}

// `Grants` is `Send` and `Sync` by its fields: the pool pages are owned by this value and
// every shared field is atomic; a slot's page is only touched by the slot's claimer.

impl Grants {
    /// Grants for a frontend: grant and revoke only, no map pool.
    pub fn new() -> Grants {
        // INVARIANT: an empty pool.
        Grants {
            pages: KVVec::new(),
            busy: KVec::new(),
            pool_len: 0,
        }
    }

    /// Grants for a backend: up to `pool` foreign pages mapped at once (at most
    /// [`MAX_POOL_PAGES`]; a larger `pool` is clamped).
    ///
    /// Only the pool's bookkeeping is allocated here; each slot's page is allocated the first
    /// time the slot is used, by [`GrantOps::map_batch`] (which must therefore run in process
    /// context; it already may sleep in `gnttab_map_refs`). A page that cannot be allocated
    /// then costs that one slot's result ([`GrantError::NoSpace`]).
    pub fn with_map_pool(pool: usize) -> Result<Grants> {
        let n = pool.min(MAX_POOL_PAGES);
        let words = n.div_ceil(SLOTS_PER_WORD);
        let mut pages = KVVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            pages.push(AtomicPtr::new(core::ptr::null_mut()), GFP_KERNEL)?;
        }
        let mut busy = KVec::with_capacity(words, GFP_KERNEL)?;
        for _ in 0..words {
            busy.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        // INVARIANT: `n` slots, none claimed, no page allocated yet.
        Ok(Grants {
            pages,
            busy,
            pool_len: n,
        })
    }

    /// The bits of busy word `word` that stand for slots of the pool.
    fn valid_bits(&self, word: usize) -> u64 {
        let first = word.saturating_mul(SLOTS_PER_WORD);
        let n = self.pool_len.saturating_sub(first);
        if n >= SLOTS_PER_WORD {
            u64::MAX
        } else {
            // `n < 64`, so the shift cannot overflow.
            (1u64 << n) - 1
        }
    }

    /// Claims a free slot.
    fn take_slot(&self) -> Option<usize> {
        for (w, word) in self.busy.iter().enumerate() {
            let valid = self.valid_bits(w);
            let mut found = None;
            let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |mask| {
                found = None;
                let free = !mask & valid;
                if free == 0 {
                    return None;
                }
                let b = free.trailing_zeros();
                found = Some(b);
                Some(mask | (1u64 << b))
            });
            if let Some(b) = found {
                let b = usize::try_from(b).ok()?;
                // INVARIANT: `b` is a valid bit of word `w`, so the slot is `< pool_len`.
                return w.checked_mul(SLOTS_PER_WORD)?.checked_add(b);
            }
        }
        None
    }

    /// Releases slot `index`, which the caller claimed.
    fn release_slot(&self, index: usize) {
        let Some(word) = self.busy.get(index / SLOTS_PER_WORD) else {
            return;
        };
        let bit = 1u64 << (index % SLOTS_PER_WORD);
        word.fetch_and(!bit, Ordering::AcqRel);
    }

    /// Claims slot `index` if it is free.
    fn claim_slot(&self, index: usize) -> bool {
        let Some(word) = self.busy.get(index / SLOTS_PER_WORD) else {
            return false;
        };
        if index >= self.pool_len {
            return false;
        }
        let bit = 1u64 << (index % SLOTS_PER_WORD);
        word.fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    /// Pages the map pool holds that no mapping uses (a snapshot: mappings come and go).
    pub fn idle_pages(&self) -> usize {
        (0..self.pool_len)
            .filter(|&i| {
                let busy = self
                    .busy
                    .get(i / SLOTS_PER_WORD)
                    .is_some_and(|w| w.load(Ordering::Acquire) & (1u64 << (i % SLOTS_PER_WORD)) != 0);
                !busy && self.pages.get(i).is_some_and(|c| !c.load(Ordering::Acquire).is_null())
            })
            .count()
    }

    /// Frees the pages of idle pool slots (allocated, no mapping in place) beyond the first
    /// `keep`, as Linux's blkback keeps at most `max_buffer_pages` free pages per ring. A freed
    /// slot allocates a page again on its next use. Returns the pages freed. Process context.
    pub fn shrink_idle_pages(&self, keep: usize) -> usize {
        let mut kept = 0usize;
        let mut freed = 0usize;
        for index in 0..self.pool_len {
            if !self.claim_slot(index) {
                // Mapped, or being mapped: not idle.
                continue;
            }
            // We are now the slot's claimer: nobody else touches its page (type invariant).
            if let Some(cell) = self.pages.get(index) {
                if !cell.load(Ordering::Acquire).is_null() {
                    if kept < keep {
                        kept += 1;
                    } else {
                        let mut page = cell.swap(core::ptr::null_mut(), Ordering::AcqRel);
                        // SAFETY: the page came from `gnttab_alloc_pages` (type invariant)
                        // and holds no mapping: its slot was free, and is claimed by us now.
                        unsafe { b::xpvrs_free_map_pages(1, &mut page) };
                        freed += 1;
                    }
                }
            }
            self.release_slot(index);
        }
        freed
    }

    /// The page of slot `index`, which the caller claimed; allocated on the slot's first use.
    fn slot_page(&self, index: usize) -> Option<NonNull<b::page>> {
        let cell = self.pages.get(index)?;
        if let Some(page) = NonNull::new(cell.load(Ordering::Acquire)) {
            return Some(page);
        }
        let mut page = core::ptr::null_mut();
        // SAFETY: room for the one page pointer asked for; process context (map_batch's rule).
        let ret = unsafe { b::xpvrs_alloc_map_pages(1, &mut page) };
        if ret != 0 {
            return None;
        }
        let page = NonNull::new(page)?;
        // INVARIANT: only the claimer of slot `index` (our caller) writes `pages[index]`.
        cell.store(page.as_ptr(), Ordering::Release);
        Some(page)
    }
}

impl Default for Grants {
    fn default() -> Self {
        Grants::new()
    }
}

impl Drop for Grants {
    fn drop(&mut self) {
        if self.busy.iter().any(|w| w.load(Ordering::Acquire) != 0) {
            // A mapping was dropped without being unmapped: the pool pages may still hold
            // foreign frames, so they must never return to the allocator.
            pr_err!(
                "xen_kernel: grant mappings still in place at teardown; leaking the map pool\n"
            );
            return;
        }
        for cell in self.pages.iter() {
            let mut page = cell.swap(core::ptr::null_mut(), Ordering::AcqRel);
            if page.is_null() {
                continue;
            }
            // SAFETY: the page came from `gnttab_alloc_pages` (type invariant) and holds no
            // mapping (no slot is busy); it was just taken out of the pool.
            unsafe { b::xpvrs_free_map_pages(1, &mut page) };
        }
    }
}

/// The frame holding `addr` if it lies in the kernel's direct map (memory of the page
/// allocator or the slab: an skb's head and its frag pages), for lending it in place
/// ([`LendOps`]); `None` for any other address.
pub fn direct_map_gfn(addr: *const u8) -> Option<Gfn> {
    let mut gfn = 0;
    // SAFETY: only checks and translates the address, never dereferences it.
    let ok = unsafe { b::xpvrs_direct_map_gfn(addr.cast(), &mut gfn) };
    ok.then(|| Gfn::new(gfn as u64))
}

/// A private pool of grant references (`gnttab_alloc_grant_references`), claimed and
/// released without the grant table's lock, as Linux's netfront keeps one per ring: for an
/// engine that grants and ends a page per packet. A reference it cannot claim (the pool ran
/// dry: a reference still mapped at its end goes to the kernel's deferred list, not back
/// here) comes from the global allocator instead; every reference ended here joins the pool.
///
/// Not `Sync`: claiming and releasing touch the pool's head unlocked, so one thread at a
/// time uses it (the owning engine's lock serializes its users).
///
/// # Invariants
///
/// `head` is the head of a private reference list from `gnttab_alloc_grant_references`
/// that this value owns.
pub struct RefPool {
    head: core::cell::UnsafeCell<b::grant_ref_t>,
}

// SAFETY: the list is plain data owned by this value; moving it between threads is fine.
unsafe impl Send for RefPool {}

impl RefPool {
    /// A pool of `count` references.
    pub fn new(count: u16) -> Result<RefPool> {
        let mut head: b::grant_ref_t = 0;
        // SAFETY: `head` is a valid place for the list's head.
        let r = unsafe { b::gnttab_alloc_grant_references(count, &mut head) };
        if r < 0 {
            return Err(ENOSPC);
        }
        // INVARIANT: a list we own.
        Ok(RefPool {
            head: core::cell::UnsafeCell::new(head),
        })
    }

    /// Grants `domid` access to `frame`, with a reference from the pool if it has one.
    ///
    /// # Safety
    ///
    /// The frame stays the caller's (neither freed nor reused) until the grant ends: the
    /// contract of `GrantOps::grant_access` or `LendOps::grant_frame`.
    pub(crate) unsafe fn grant(
        &self,
        domid: DomId,
        frame: usize,
        access: Access,
    ) -> Result<GrantRef, AccessError> {
        let readonly = i32::from(access == Access::ReadOnly);
        // SAFETY: the head is ours (type invariant) and `!Sync` keeps other threads out.
        let r = unsafe { b::gnttab_claim_grant_reference(self.head.get()) };
        let gref = match u32::try_from(r) {
            Ok(gref) => {
                // SAFETY: `gref` is a free reference we just claimed; it grants the frame
                // under the caller's contract.
                unsafe { b::gnttab_grant_foreign_access_ref(gref, domid.raw(), frame, readonly) };
                gref
            }
            // SAFETY: the caller's contract, from the global allocator (the pool is dry).
            Err(_) => return unsafe { grant_global(domid, frame, access) },
        };
        stats::inc(&stats::GRANTS);
        Ok(GrantRef::new(gref))
    }

    /// Ends `gref` (made by [`RefPool::grant`]) and puts the reference in the pool, unless
    /// the peer still maps it.
    pub(crate) fn end(&self, gref: GrantRef) -> EndAccess {
        // SAFETY: ends a grant we made; the reference stays ours either way.
        if unsafe { b::gnttab_end_foreign_access_ref(gref.raw()) } == 0 {
            return EndAccess::StillMapped;
        }
        // SAFETY: an ended reference of ours, released into our list (type invariant; `!Sync`
        // keeps other threads out).
        unsafe { b::gnttab_release_grant_reference(self.head.get(), gref.raw()) };
        stats::dec(&stats::GRANTS);
        EndAccess::Ended
    }
}

impl Drop for RefPool {
    fn drop(&mut self) {
        // SAFETY: our list (type invariant), freed once; references claimed from it and not
        // released are not on it (they end through the kernel's deferred list).
        unsafe { b::gnttab_free_grant_references(*self.head.get_mut()) };
    }
}

impl LendOps for Grants {
    fn grant_frame(&self, domid: DomId, gfn: Gfn, access: Access) -> Result<GrantRef, AccessError> {
        let frame = usize::try_from(gfn.raw()).map_err(|_| AccessError::FrameTooLarge)?;
        // SAFETY: grants a frame the caller lends under `LendOps`' contract: it keeps the
        // memory until `end_access` says the grant ended, and leaks it otherwise.
        unsafe { grant_global(domid, frame, access) }
    }
}

/// The frame of the direct-map page at `addr`.
///
/// # Safety
///
/// `addr` is a live page of the direct map.
pub(crate) unsafe fn frame_of(addr: NonNull<u8>) -> usize {
    // SAFETY: a live page of the direct map (caller).
    unsafe { b::xpvrs_virt_to_gfn(addr.as_ptr().cast()) }
}

/// Grants `domid` access to `frame` with a reference from the grant table's global allocator.
///
/// # Safety
///
/// The frame stays the caller's, neither freed nor reused, until the grant is revoked (the
/// contract of `GrantOps::grant_access` and `LendOps::grant_frame`).
unsafe fn grant_global(
    domid: DomId,
    frame: usize,
    access: Access,
) -> Result<GrantRef, AccessError> {
    let readonly = i32::from(access == Access::ReadOnly);
    // SAFETY: grants a frame the caller keeps until the grant is revoked (caller).
    let r = unsafe { b::gnttab_grant_foreign_access(domid.raw(), frame, readonly) };
    let gref = u32::try_from(r).map_err(|_| AccessError::NoFreeRefs)?;
    stats::inc(&stats::GRANTS);
    Ok(GrantRef::new(gref))
}

impl Grants {
    /// Grants `domid` access to the page of ours at `addr`.
    ///
    /// # Safety
    ///
    /// `addr` is a whole page of the direct map that the caller owns and keeps, neither
    /// freed nor reused, until the grant is revoked (`end_access` says ended) or handed to
    /// [`Grants::end_access_later`] or `defer_free`.
    pub(crate) unsafe fn grant_owned(
        &self,
        domid: DomId,
        addr: NonNull<u8>,
        access: Access,
    ) -> Result<GrantRef, AccessError> {
        // SAFETY: a live page of the direct map we own, kept until the grant is revoked
        // (caller).
        unsafe { grant_global(domid, frame_of(addr), access) }
    }

    /// Ends `gref` once the peer no longer maps it, with no page to free then: for a page
    /// the caller leaks (one that belongs to someone else's allocator, e.g. a page pool,
    /// whose owner must never get it back while the peer may map it).
    pub(crate) fn end_access_later(&self, gref: GrantRef) {
        // SAFETY: a grant this implementation made; with no page, the kernel only retries
        // ending it (and frees the reference) until the peer lets go.
        unsafe { b::gnttab_end_foreign_access(gref.raw(), core::ptr::null_mut()) };
        stats::dec(&stats::GRANTS);
        stats::inc(&stats::DEFERRED);
    }
}

impl GrantOps for Grants {
    type Page = LocalPage;
    type Mapping = Mapping;

    fn zero_page(&self, page: &mut LocalPage) {
        // SAFETY: we own the page, and the contract of `zero_page` is that no peer can see it
        // (never granted, or every grant ended): plain stores race with no one.
        unsafe { core::ptr::write_bytes(page.addr.as_ptr(), 0, PAGE_SIZE) };
    }

    fn grant_access(
        &self,
        domid: DomId,
        page: &LocalPage,
        access: Access,
    ) -> Result<GrantRef, AccessError> {
        // SAFETY: `page` is a page of ours (type invariant) that the caller keeps until the
        // grant is revoked or the page is given to `defer_free` (the `GrantOps` contract).
        unsafe { self.grant_owned(domid, page.addr, access) }
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
        // A batch never needs more slots than the pool has (a pool smaller than a batch keeps
        // its old limit).
        if requests.len() > MAX_BATCH.min(self.pool_len) {
            return Err(BatchError::TooLarge);
        }
        // Compacted arrays: entry `k` is request `which[k]`, mapped into pool slot `slots[k]`.
        let mut pages = [core::ptr::null_mut::<b::page>(); MAX_BATCH];
        let mut slots = [usize::MAX; MAX_BATCH];
        let mut which = [usize::MAX; MAX_BATCH];
        let mut refs = [0u32; MAX_BATCH];
        let mut domids = [0u16; MAX_BATCH];
        let mut ro = [false; MAX_BATCH];
        let mut handles: [b::grant_handle_t; MAX_BATCH] = [0; MAX_BATCH];
        // Every status starts as an error: only Xen's own word makes a slot mapped.
        let mut status = [GNTST_GENERAL_ERROR; MAX_BATCH];
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
            let Some(page) = self.slot_page(slot) else {
                // No page for the slot (out of memory): this request fails, not the batch.
                self.release_slot(slot);
                *res = MapResult::Failed(GrantError::NoSpace);
                continue;
            };
            *p = page.as_ptr();
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
        // SAFETY: the first `n` entries of every array are initialised, each page the pool page
        // of a slot claimed for this entry alone.
        let err = unsafe {
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
                    match (NonNull::new(addr.cast::<u8>()), NonNull::new(page)) {
                        (Some(addr), Some(page)) => {
                            stats::inc(&stats::MAPPINGS);
                            // INVARIANT: slot `slot` is busy and its page now holds this
                            // mapping.
                            *res = MapResult::Mapped(Mapping {
                                index: slot,
                                page,
                                addr,
                                handle: h,
                                readonly,
                            });
                        }
                        _ => *res = MapResult::Failed(GrantError::BadVirtAddr),
                    }
                }
                Err(e) => {
                    self.release_slot(slot);
                    *res = MapResult::Failed(e);
                }
            }
        }
        if err != 0 {
            // The call failed after Xen had mapped the slots whose status is okay (the p2m
            // update ran out of memory, say): they are reported mapped, for the caller to
            // unmap, and must not be used (`BatchError::CallFailed`).
            return Err(BatchError::CallFailed);
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
        if mappings.len() > MAX_BATCH {
            return Err(BatchError::TooLarge);
        }
        let mut pages = [core::ptr::null_mut::<b::page>(); MAX_BATCH];
        let mut handles: [b::grant_handle_t; MAX_BATCH] = [0; MAX_BATCH];
        let mut which = [usize::MAX; MAX_BATCH];
        let mut status = [GNTST_GENERAL_ERROR; MAX_BATCH];
        for r in results.iter_mut() {
            *r = UnmapResult::Skipped;
        }
        let mut n = 0usize;
        for (i, (m, res)) in mappings.iter().zip(results.iter_mut()).enumerate() {
            let Some(m) = m else { continue };
            // A mapping of another pool (a caller's mix-up) is left alone: releasing its slot
            // here would free one of ours.
            let ours = self
                .pages
                .get(m.index)
                .is_some_and(|c| c.load(Ordering::Acquire) == m.page.as_ptr());
            if !ours {
                *res = UnmapResult::Failed(GrantError::BadHandle);
                continue;
            }
            if let (Some(p), Some(h), Some(w)) =
                (pages.get_mut(n), handles.get_mut(n), which.get_mut(n))
            {
                *p = m.page.as_ptr();
                *h = m.handle;
                *w = i;
                n += 1;
            }
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
        if ops.len() > MAX_BATCH {
            return Err(BatchError::TooLarge);
        }
        let end = || b::xpvrs_copy_end {
            gref_or_gfn: 0,
            domid: 0,
            offset: 0,
            is_gref: false,
        };
        let mut src = [end(); MAX_BATCH];
        let mut dst = [end(); MAX_BATCH];
        let mut len = [0u16; MAX_BATCH];
        let mut status = [GNTST_GENERAL_ERROR; MAX_BATCH];
        let mut which = [usize::MAX; MAX_BATCH];
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

/// `GNTST_general_error`: what every status of a batch starts as.
const GNTST_GENERAL_ERROR: i16 = xen_sys::bindings::GNTST_general_error as i16;

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
