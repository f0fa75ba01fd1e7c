// SPDX-License-Identifier: GPL-2.0

//! Block devices opened by number, and asynchronous bios on pages the caller keeps alive: the
//! storage side of a block backend.
//!
//! Linux 6.12's `kernel` crate cannot open a block device or build a bio, so this module is
//! our layer over the C interfaces (`bdev_file_open_by_dev`, `bio_alloc`, `submit_bio`), with
//! its C half in `linux/helpers.c` (declared in `linux/bio_helpers.h`; the externs below mirror
//! it).
//!
//! # Ownership
//!
//! - A [`BlockDevice`] owns one open of the device (a `struct file`); dropping it closes the
//!   device. It must outlive every I/O submitted on it.
//! - A [`BioCtx`] is one I/O in flight: one or more bios and a completion callback. Its owner
//!   keeps it at a fixed address, from [`BlockDevice::submit`] until the callback has run
//!   (typically in a per-request slot allocated once, e.g. a boxed array). The callback runs
//!   exactly once per successful submit, when the last bio has ended, possibly in interrupt
//!   context and possibly before `submit` returns. After it has run, the context may be
//!   submitted again or freed.
//! - The data pages are named by [`PagePtr`]s (e.g. a grant mapping's page): raw handles
//!   that own nothing. Whoever owns the page (a grant mapping) keeps it until the callback
//!   has run; that is the caller's promise when it calls the `unsafe` [`BlockDevice::submit`].
//! - The synchronous operations ([`BlockDevice::discard`], [`BlockDevice::secure_erase`],
//!   [`BlockDevice::flush_sync`]) wait for their I/O: process context only (a work item).

use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::prelude::*;
use kernel::types::Opaque;

pub use crate::page::PagePtr;

/// `struct xpvrs_bio_ctx` (bio_helpers.h). C owns `remaining`, `error` and `done` while I/O
/// is in flight; `owner` and `tag` are ours and only ever accessed atomically.
#[repr(C)]
struct RawBioCtx {
    /// `atomic_t`: C only.
    remaining: c_int,
    /// C only (`cmpxchg`, `READ_ONCE`).
    error: c_int,
    done: Option<unsafe extern "C" fn(ctx: *mut RawBioCtx, error: c_int)>,
    owner: *mut c_void,
    tag: c_uint,
}

// The same numbers are asserted on the C side (helpers.c).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(core::mem::offset_of!(RawBioCtx, remaining) == 0);
    assert!(core::mem::offset_of!(RawBioCtx, error) == 4);
    assert!(core::mem::offset_of!(RawBioCtx, done) == 8);
    assert!(core::mem::offset_of!(RawBioCtx, owner) == 16);
    assert!(core::mem::offset_of!(RawBioCtx, tag) == 24);
    assert!(core::mem::size_of::<RawBioCtx>() == 32);
};

// Kernel structs are passed as `c_void` (the C prototypes in bio_helpers.h have the real
// types); they are opaque to this side.
extern "C" {
    fn xpvrs_bdev_open(major: u32, minor: u32, write: bool) -> *mut c_void;
    fn xpvrs_bdev_close(bdev_file: *mut c_void);
    fn xpvrs_bdev_of(bdev_file: *mut c_void) -> *mut c_void;
    fn xpvrs_bdev_devt(bdev: *mut c_void) -> u32;
    fn xpvrs_bdev_nr_sectors(bdev: *mut c_void) -> u64;
    fn xpvrs_bdev_logical_block_size(bdev: *mut c_void) -> u32;
    fn xpvrs_bdev_physical_block_size(bdev: *mut c_void) -> u32;
    fn xpvrs_bdev_read_only(bdev: *mut c_void) -> bool;
    fn xpvrs_bdev_max_discard_sectors(bdev: *mut c_void) -> u32;
    fn xpvrs_bdev_max_secure_erase_sectors(bdev: *mut c_void) -> u32;
    fn xpvrs_bdev_discard_granularity(bdev: *mut c_void) -> u32;
    fn xpvrs_bdev_discard_alignment(bdev: *mut c_void) -> u32;
    fn xpvrs_bdev_write_cache(bdev: *mut c_void) -> bool;
    fn xpvrs_bdev_fua(bdev: *mut c_void) -> bool;
    fn xpvrs_bdev_discard(bdev: *mut c_void, sector: u64, nr_sectors: u64) -> c_int;
    fn xpvrs_bdev_secure_erase(bdev: *mut c_void, sector: u64, nr_sectors: u64) -> c_int;
    fn xpvrs_bdev_flush(bdev: *mut c_void) -> c_int;
    fn xpvrs_bio_ctx_begin(
        ctx: *mut RawBioCtx,
        done: Option<unsafe extern "C" fn(ctx: *mut RawBioCtx, error: c_int)>,
    );
    fn xpvrs_bio_new(
        ctx: *mut RawBioCtx,
        bdev: *mut c_void,
        write: bool,
        preflush: bool,
        fua: bool,
        sector: u64,
        nr_vecs: u32,
    ) -> *mut c_void;
    fn xpvrs_bio_add_page(bio: *mut c_void, page: *mut c_void, len: u32, offset: u32) -> bool;
    fn xpvrs_bio_submit(bio: *mut c_void);
    fn xpvrs_bio_abandon(ctx: *mut RawBioCtx, bio: *mut c_void, error: c_int);
    fn xpvrs_bio_ctx_fail(ctx: *mut RawBioCtx, error: c_int);
    fn xpvrs_bio_ctx_finish(ctx: *mut RawBioCtx);
}

/// `EOPNOTSUPP`, which the `kernel` crate does not name.
fn eopnotsupp() -> Error {
    c_int::try_from(bindings::EOPNOTSUPP).map_or(EINVAL, |e| Error::from_errno(-e))
}

/// Bytes in a sector, the unit of every position and length here.
pub const SECTOR_SIZE: u32 = 512;
/// Most segments (page pieces) one bio carries (`BIO_MAX_VECS`); longer I/O takes more bios.
pub const BIO_MAX_VECS: usize = 256;

/// One piece of an I/O's data: `len` bytes at `offset` in `page`, both multiples of
/// [`SECTOR_SIZE`], within the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The page.
    pub page: PagePtr,
    /// Byte offset in the page.
    pub offset: u32,
    /// Bytes.
    pub len: u32,
}

impl Segment {
    /// Its length in sectors, if it is well formed: not empty, sector-aligned, within a page.
    fn sectors(&self) -> Option<u64> {
        let end = self.offset.checked_add(self.len)?;
        let page = u32::try_from(kernel::page::PAGE_SIZE).ok()?;
        let aligned = self.offset % SECTOR_SIZE == 0 && self.len % SECTOR_SIZE == 0;
        (self.len != 0 && aligned && end <= page).then(|| u64::from(self.len / SECTOR_SIZE))
    }
}

/// What an I/O does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Read from disk into the segments' pages (`REQ_OP_READ`).
    Read,
    /// Write the segments' pages to disk (`REQ_OP_WRITE | REQ_SYNC`).
    Write {
        /// Flush the device's volatile cache first (`REQ_PREFLUSH`, on the first bio).
        preflush: bool,
        /// The data is on stable storage when the I/O completes (`REQ_FUA`, on every bio).
        fua: bool,
    },
    /// Flush the device's volatile cache; no data (an empty `REQ_PREFLUSH` write).
    Flush,
}

/// The callback of a [`BioCtx`]: the context and the I/O's outcome (the first error of any of
/// its bios).
///
/// It runs when the block layer ends the last bio: in hard or soft interrupt context, or on the
/// submitting thread (even before [`BlockDevice::submit`] returns). It must not sleep: no
/// mutex, no allocation other than `GFP_ATOMIC`, no waiting. Typically it records the result
/// and queues a work item, or answers the peer under a spinlock taken with interrupts off.
pub type BioDone = fn(ctx: &BioCtx, result: Result);

/// One I/O in flight: the C completion state of its bios, the callback and two words for its
/// owner ([`BioCtx::tag`], [`BioCtx::owner`]).
///
/// It must stay at one address while an I/O is in flight (see [`BlockDevice::submit`]); the
/// callback may then find the surrounding object by the context's address, its tag or its
/// owner pointer.
///
/// # Invariants
///
/// - `raw` is the first field, so a pointer to the C context is a pointer to this value.
/// - `in_flight` is set from a successful claim in [`BlockDevice::submit`] until the callback
///   is called (or `submit` fails); only then are `raw`'s C-owned fields (`remaining`,
///   `error`, `done`) in use by C. `raw.owner` and `raw.tag` are only accessed atomically.
#[repr(C)]
pub struct BioCtx {
    raw: Opaque<RawBioCtx>,
    done: BioDone,
    in_flight: AtomicBool,
}

// SAFETY: the fields shared between threads are atomic (`in_flight`, `owner`, `tag`) or owned
// by C, which synchronises them itself (`remaining` is an `atomic_t`, `error` is written with
// `cmpxchg` and read after the last `atomic_dec_and_test`); `done` never changes.
unsafe impl Send for BioCtx {}
// SAFETY: as above.
unsafe impl Sync for BioCtx {}

impl BioCtx {
    /// A context whose I/O ends in `done`, with tag 0 and a null owner.
    pub const fn new(done: BioDone) -> BioCtx {
        BioCtx {
            raw: Opaque::new(RawBioCtx {
                remaining: 0,
                error: 0,
                done: None,
                owner: core::ptr::null_mut(),
                tag: 0,
            }),
            done,
            in_flight: AtomicBool::new(false),
        }
    }

    fn raw(&self) -> *mut RawBioCtx {
        self.raw.get()
    }

    fn tag_cell(&self) -> &AtomicU32 {
        // SAFETY: the field is a live, aligned `u32` for as long as `self` is borrowed, and is
        // only ever accessed atomically (type invariant; C never touches it).
        unsafe { AtomicU32::from_ptr(core::ptr::addr_of_mut!((*self.raw()).tag)) }
    }

    fn owner_cell(&self) -> &AtomicPtr<c_void> {
        // SAFETY: as for `tag_cell`: a live, aligned pointer field, only accessed atomically.
        unsafe { AtomicPtr::from_ptr(core::ptr::addr_of_mut!((*self.raw()).owner)) }
    }

    /// The owner's number for this context (e.g. a request slot's index).
    pub fn tag(&self) -> u32 {
        self.tag_cell().load(Ordering::Relaxed)
    }

    /// Sets [`BioCtx::tag`].
    pub fn set_tag(&self, tag: u32) {
        self.tag_cell().store(tag, Ordering::Relaxed);
    }

    /// The owner's pointer (never dereferenced here).
    pub fn owner(&self) -> *mut c_void {
        self.owner_cell().load(Ordering::Relaxed)
    }

    /// Sets [`BioCtx::owner`].
    pub fn set_owner(&self, owner: *mut c_void) {
        self.owner_cell().store(owner, Ordering::Relaxed);
    }

    /// Whether an I/O is in flight (submitted, callback not yet called).
    pub fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire)
    }
}

impl Drop for BioCtx {
    fn drop(&mut self) {
        if self.in_flight.load(Ordering::Acquire) {
            // A broken `submit` contract; the block layer will write to freed memory.
            pr_err!("linux::block::bio: BioCtx freed with I/O in flight\n");
        }
    }
}

/// Called by C (`xpvrs_bio_ctx_put`) when the last bio of an I/O has ended.
///
/// # Safety
///
/// `raw` is the C context of a [`BioCtx`] whose I/O was submitted by [`BlockDevice::submit`]
/// and has just ended; it is live (the `submit` contract).
unsafe extern "C" fn bio_ctx_done(raw: *mut RawBioCtx, error: c_int) {
    // SAFETY: `raw` is the first field of a live `BioCtx` (type invariant, caller).
    let ctx = unsafe { &*raw.cast::<BioCtx>() };
    let result = if error == 0 {
        Ok(())
    } else {
        Err(Error::from_errno(error))
    };
    // INVARIANT: C is done with the context; it may be submitted again from here on.
    ctx.in_flight.store(false, Ordering::Release);
    (ctx.done)(ctx, result);
}

/// An open block device.
///
/// # Invariants
///
/// `file` is a `struct file` from `bdev_file_open_by_dev` that this value owns (its one
/// reference, dropped in `Drop`); `bdev` is its `file_bdev`, live while `file` is open;
/// `writable` says whether it was opened for writing.
pub struct BlockDevice {
    file: NonNull<c_void>,
    bdev: NonNull<c_void>,
    writable: bool,
}

// SAFETY: an open file may be used and closed from any thread; the queries and the I/O
// functions are thread-safe.
unsafe impl Send for BlockDevice {}
// SAFETY: as above; every method takes `&self` and the C side synchronises itself.
unsafe impl Sync for BlockDevice {}

impl BlockDevice {
    /// Opens device `major:minor` (shared, not exclusive), for reading and, if `writable`, for
    /// writing. Process context (may sleep).
    pub fn open(major: u32, minor: u32, writable: bool) -> Result<BlockDevice> {
        // SAFETY: no preconditions; returns an open file or an `ERR_PTR`.
        let file = from_err_ptr(unsafe { xpvrs_bdev_open(major, minor, writable) })?;
        let file = NonNull::new(file).ok_or(ENXIO)?;
        // SAFETY: `file` is an open block device file.
        let bdev = unsafe { xpvrs_bdev_of(file.as_ptr()) };
        let Some(bdev) = NonNull::new(bdev) else {
            // SAFETY: we own the file's reference and nothing else uses it.
            unsafe { xpvrs_bdev_close(file.as_ptr()) };
            return Err(ENXIO);
        };
        // INVARIANT: an open file we own and its block device.
        Ok(BlockDevice {
            file,
            bdev,
            writable,
        })
    }

    fn bdev(&self) -> *mut c_void {
        self.bdev.as_ptr()
    }

    /// The device number, in the kernel's `dev_t` encoding (`major << 20 | minor`).
    pub fn devt(&self) -> u32 {
        // SAFETY: the block device is live while `self` is (type invariant).
        unsafe { xpvrs_bdev_devt(self.bdev()) }
    }

    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_nr_sectors(self.bdev()) }
    }

    /// The smallest unit the device can address, in bytes.
    pub fn logical_block_size(&self) -> u32 {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_logical_block_size(self.bdev()) }
    }

    /// The smallest unit the device writes without a read-modify-write, in bytes.
    pub fn physical_block_size(&self) -> u32 {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_physical_block_size(self.bdev()) }
    }

    /// Whether the device itself is read-only (independent of how it was opened).
    pub fn read_only(&self) -> bool {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_read_only(self.bdev()) }
    }

    /// Whether it was opened for writing.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether the device supports discard.
    pub fn discard_supported(&self) -> bool {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_max_discard_sectors(self.bdev()) > 0 }
    }

    /// Whether the device supports secure erase.
    pub fn secure_erase_supported(&self) -> bool {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_max_secure_erase_sectors(self.bdev()) > 0 }
    }

    /// The device's discard unit, in bytes.
    pub fn discard_granularity(&self) -> u32 {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_discard_granularity(self.bdev()) }
    }

    /// Offset, in bytes, of the first discard unit from the start of the device.
    pub fn discard_alignment(&self) -> u32 {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_discard_alignment(self.bdev()) }
    }

    /// Whether the device has a volatile write cache (so flushes matter).
    pub fn write_cache(&self) -> bool {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_write_cache(self.bdev()) }
    }

    /// Whether the device supports FUA writes natively (the block layer emulates them
    /// otherwise).
    pub fn fua(&self) -> bool {
        // SAFETY: as in `devt`.
        unsafe { xpvrs_bdev_fua(self.bdev()) }
    }

    /// `EROFS` unless this open may write to the device.
    fn check_writable(&self) -> Result {
        if self.writable && !self.read_only() {
            Ok(())
        } else {
            Err(EROFS)
        }
    }

    /// `EINVAL` unless sectors `sector..sector + nr_sectors` are on the device.
    fn check_range(&self, sector: u64, nr_sectors: u64) -> Result {
        match sector.checked_add(nr_sectors) {
            Some(end) if end <= self.sectors() => Ok(()),
            _ => Err(EINVAL),
        }
    }

    /// Discards `nr_sectors` sectors from `sector` and waits for it. Process context.
    ///
    /// `EOPNOTSUPP` if the device cannot discard, `EROFS` if it cannot be written, `EINVAL` if
    /// the range leaves the device.
    pub fn discard(&self, sector: u64, nr_sectors: u64) -> Result {
        self.check_writable()?;
        if !self.discard_supported() {
            return Err(eopnotsupp());
        }
        self.check_range(sector, nr_sectors)?;
        if nr_sectors == 0 {
            return Ok(());
        }
        // SAFETY: the device is open (type invariant); process context (documented).
        kernel::error::to_result(unsafe { xpvrs_bdev_discard(self.bdev(), sector, nr_sectors) })
    }

    /// Securely erases `nr_sectors` sectors from `sector` and waits for it. Process context.
    ///
    /// Errors as for [`BlockDevice::discard`]; `EINVAL` also if the range is not aligned to
    /// the logical block size.
    pub fn secure_erase(&self, sector: u64, nr_sectors: u64) -> Result {
        self.check_writable()?;
        if !self.secure_erase_supported() {
            return Err(eopnotsupp());
        }
        self.check_range(sector, nr_sectors)?;
        if nr_sectors == 0 {
            return Ok(());
        }
        // SAFETY: the device is open (type invariant); process context (documented).
        let ret = unsafe { xpvrs_bdev_secure_erase(self.bdev(), sector, nr_sectors) };
        kernel::error::to_result(ret)
    }

    /// Flushes the device's volatile cache and waits for it. Process context.
    pub fn flush_sync(&self) -> Result {
        // SAFETY: the device is open (type invariant); process context (documented).
        kernel::error::to_result(unsafe { xpvrs_bdev_flush(self.bdev()) })
    }

    /// Starts `op` at `sector` on the data of `segs`, in order (a [`IoOp::Flush`] takes no
    /// segments); `ctx`'s callback reports the outcome. Process context (allocates bios with
    /// `GFP_NOIO`, which may sleep).
    ///
    /// The data goes in as many bios as needed: a bio takes segments until it has
    /// [`BIO_MAX_VECS`] or the block layer refuses the next one, and the next bio starts at
    /// the sector where the previous one ended.
    ///
    /// Every check comes before any I/O; on `Err` nothing was submitted and the callback will
    /// not run:
    /// - `EINVAL`: a malformed segment ([`Segment`]), segments for a flush or none for a read
    ///   or write, a read into a page that is not writable, or a range that leaves the device;
    /// - `EROFS`: a write or flush on a device that cannot be written ([`BlockDevice::writable`],
    ///   [`BlockDevice::read_only`]);
    /// - `EBUSY`: `ctx` already has an I/O in flight;
    /// - `ENOMEM`: not even the first bio could be allocated.
    ///
    /// On `Ok` the callback runs exactly once. If a later bio cannot be allocated, the bios
    /// already submitted still complete and the callback reports `ENOMEM`.
    ///
    /// # Safety
    ///
    /// If this returns `Ok`, then until `ctx`'s callback has run:
    /// - `ctx` stays at its address and is neither moved nor freed;
    /// - every page of `segs` stays valid (for a grant mapping: stays mapped), and is not
    ///   written by anyone else during a write;
    /// - `self` is not dropped.
    ///
    /// The callback may run on this thread before this returns: the caller must not hold a
    /// lock the callback takes.
    pub unsafe fn submit(&self, ctx: &BioCtx, op: IoOp, sector: u64, segs: &[Segment]) -> Result {
        let (write, preflush, fua) = match op {
            IoOp::Read => (false, false, false),
            IoOp::Write { preflush, fua } => (true, preflush, fua),
            IoOp::Flush => (true, true, false),
        };
        // Every check first: nothing is submitted for a bad request.
        if write {
            self.check_writable()?;
        }
        match op {
            IoOp::Flush if !segs.is_empty() => return Err(EINVAL),
            IoOp::Read | IoOp::Write { .. } if segs.is_empty() => return Err(EINVAL),
            _ => {}
        }
        let mut total = 0u64;
        for seg in segs {
            let n = seg.sectors().ok_or(EINVAL)?;
            if !write && !seg.page.is_writable() {
                return Err(EINVAL);
            }
            total = total.checked_add(n).ok_or(EINVAL)?;
        }
        if !segs.is_empty() {
            self.check_range(sector, total)?;
        }
        if ctx
            .in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(EBUSY);
        }
        let raw = ctx.raw();
        // SAFETY: we hold the context (`in_flight`), so C is not using it; it stays at this
        // address until the callback has run (caller's contract) or we fail below.
        unsafe { xpvrs_bio_ctx_begin(raw, Some(bio_ctx_done)) };
        // SAFETY: the context was just begun; the pages and `self` outlive the I/O (caller).
        let (submitted, failed) = unsafe { self.build(raw, write, preflush, fua, sector, segs) };
        match (submitted, failed) {
            (false, Some(e)) => {
                // Nothing in flight: C forgets the context, we give it back.
                ctx.in_flight.store(false, Ordering::Release);
                Err(e)
            }
            (_, failed) => {
                if let Some(e) = failed {
                    // SAFETY: the context is begun and holds its bias.
                    unsafe { xpvrs_bio_ctx_fail(raw, e.to_errno()) };
                }
                // SAFETY: drops the bias taken by `begin`; from here on the callback may run
                // (and the context may be reused) at any time.
                unsafe { xpvrs_bio_ctx_finish(raw) };
                Ok(())
            }
        }
    }

    /// Builds and submits the bios of one I/O (checked by `submit`): whether any bio was
    /// submitted, and the error that stopped it early, if any.
    ///
    /// # Safety
    ///
    /// `ctx` is a context begun by `xpvrs_bio_ctx_begin` whose bias is still held; it, the
    /// pages of `segs` and `self` stay valid until its callback has run.
    unsafe fn build(
        &self,
        ctx: *mut RawBioCtx,
        write: bool,
        preflush: bool,
        fua: bool,
        sector: u64,
        segs: &[Segment],
    ) -> (bool, Option<Error>) {
        // SAFETY (all calls below): `ctx` is begun and held (caller); `self.bdev()` is open;
        // each bio is one `xpvrs_bio_new` returned and that has not been submitted or
        // abandoned yet; each page is valid until the callback (caller).
        let new_bio = |at: u64, preflush: bool, left: usize| -> *mut c_void {
            let nr_vecs = u32::try_from(left.min(BIO_MAX_VECS)).unwrap_or(0);
            // SAFETY: see above.
            unsafe { xpvrs_bio_new(ctx, self.bdev(), write, preflush, fua, at, nr_vecs) }
        };
        if segs.is_empty() {
            // A flush: one empty bio.
            let bio = new_bio(sector, preflush, 0);
            if bio.is_null() {
                return (false, Some(ENOMEM));
            }
            // SAFETY: see above.
            unsafe { xpvrs_bio_submit(bio) };
            return (true, None);
        }
        let mut submitted = false;
        let mut preflush_pending = preflush;
        let mut bio: *mut c_void = core::ptr::null_mut();
        let mut bio_fresh = false;
        let mut at = sector;
        for (i, seg) in segs.iter().enumerate() {
            loop {
                if bio.is_null() {
                    let left = segs.len().saturating_sub(i);
                    bio = new_bio(at, preflush_pending, left);
                    if bio.is_null() {
                        return (submitted, Some(ENOMEM));
                    }
                    // The flush goes before the first bio only: the later ones are part of
                    // the same request, which completes only after all of them.
                    preflush_pending = false;
                    bio_fresh = true;
                }
                let page = seg.page.as_raw().cast();
                // SAFETY: see above.
                if unsafe { xpvrs_bio_add_page(bio, page, seg.len, seg.offset) } {
                    bio_fresh = false;
                    break;
                }
                if bio_fresh {
                    // Not even an empty bio takes it: give up on the I/O.
                    // SAFETY: see above.
                    unsafe { xpvrs_bio_abandon(ctx, bio, EIO.to_errno()) };
                    return (submitted, Some(EIO));
                }
                // Full: send it, and retry the segment on a new bio.
                // SAFETY: see above.
                unsafe { xpvrs_bio_submit(bio) };
                submitted = true;
                bio = core::ptr::null_mut();
            }
            // `seg.sectors()` was checked by `submit`, and the whole range fits in a `u64`.
            at = at.saturating_add(u64::from(seg.len / SECTOR_SIZE));
        }
        if !bio.is_null() {
            // SAFETY: see above.
            unsafe { xpvrs_bio_submit(bio) };
            submitted = true;
        }
        (submitted, None)
    }
}

impl Drop for BlockDevice {
    fn drop(&mut self) {
        // SAFETY: we own the file's reference (type invariant); no I/O is in flight (the
        // `submit` contract).
        unsafe { xpvrs_bdev_close(self.file.as_ptr()) };
    }
}

/// Runs `f` with the block layer's plugging on: bios submitted inside are held back and sent
/// together when `f` returns (or when the thread sleeps), which lets the block layer merge
/// them. Process context.
pub fn plugged<R>(f: impl FnOnce() -> R) -> R {
    let mut plug = MaybeUninit::<bindings::blk_plug>::uninit();
    // SAFETY: `blk_start_plug` initialises the plug; it stays at this address (this frame)
    // until `blk_finish_plug` below, which is always reached (the kernel does not unwind).
    unsafe { bindings::blk_start_plug(plug.as_mut_ptr()) };
    let r = f();
    // SAFETY: the plug started above, still at the same address.
    unsafe { bindings::blk_finish_plug(plug.as_mut_ptr()) };
    r
}
