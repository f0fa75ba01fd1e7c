// SPDX-License-Identifier: GPL-2.0

//! Block-layer glue: a multi-queue disk whose requests a safe Rust driver serves.
//!
//! Linux 6.12's `kernel::block::mq` cannot carry what a paravirtual disk needs: its
//! `Operations` get no per-disk data, its `Request` offers only `end_ok` (no sector, no
//! operation, no data, no error status), its `GenDiskBuilder` sets no queue limits (segments,
//! flush, FUA, discard) and its tag set pointer is private to the `kernel` crate, so it cannot
//! be extended from outside. This module is our layer over the same C interfaces, with the same
//! ownership rules, plus what was missing:
//!
//! - [`Disk`] owns a tag set, a `gendisk` added to the system with the limits of
//!   [`DiskParams`] (block sizes, largest request, write cache and FUA, discard and secure
//!   erase, read-only) and a reference to the driver's per-disk object, the `queuedata` every
//!   callback is given back. Dropping it deletes the disk (which waits for every request to be
//!   ended), then frees the tag set, then the reference.
//! - [`Request`] is the driver's exclusive ownership of one started request: its facts
//!   ([`Request::sector`], [`Request::op`], [`Request::bytes`]), its data copied to or from
//!   whole pages ([`Request::copy_to_pages`], [`Request::copy_from_pages`]) and exactly one
//!   end ([`Request::end`], or an I/O error if it is dropped unended, so no request can hang).
//! - [`Operations`] is the driver: `queue_rq` and `commit_rqs` with the per-disk object and the
//!   hardware queue's index.
//!
//! The C half is in `linux/helpers.c` (declared in `linux/blk_helpers.h`; the externs below
//! mirror it).

use crate::page::KernelPage;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::ffi::{c_char, c_int, c_uint, c_void};
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};
use kernel::types::ForeignOwnable;

/// `struct xpvrs_disk_params` (blk_helpers.h).
#[repr(C)]
struct RawParams {
    capacity: u64,
    logical_block_size: u32,
    physical_block_size: u32,
    max_hw_sectors: u32,
    max_discard_sectors: u32,
    discard_granularity: u32,
    discard_alignment: u32,
    nr_queues: u32,
    queue_depth: u32,
    major: u32,
    first_minor: u32,
    minors: u32,
    secure_erase: bool,
    write_cache: bool,
    fua: bool,
    read_only: bool,
    blocking: bool,
    removable: bool,
    name: [c_char; 32],
}

// Pointers to kernel structs are passed as `c_void` (the C prototypes in blk_helpers.h have
// the real types); the structs are opaque to this side.
extern "C" {
    fn xpvrs_blk_alloc_tag_set(
        ops: *const c_void,
        p: *const RawParams,
    ) -> *mut c_void;
    fn xpvrs_blk_free_tag_set(set: *mut c_void);
    fn xpvrs_blk_add_disk(
        set: *mut c_void,
        p: *const RawParams,
        queuedata: *mut c_void,
    ) -> *mut c_void;
    fn xpvrs_blk_del_disk(disk: *mut c_void);
    fn xpvrs_blk_hctx_data(hctx: *mut c_void, queue_num: *mut c_uint) -> *mut c_void;
    fn xpvrs_blk_stop_queue(hctx: *mut c_void);
    fn xpvrs_blk_start_queues(disk: *mut c_void);
    fn xpvrs_blk_set_capacity(disk: *mut c_void, sectors: u64);
    fn xpvrs_blk_set_ro(disk: *mut c_void, ro: bool);
    fn xpvrs_blk_disable_discard(disk: *mut c_void);
    fn xpvrs_blk_rq_start(rq: *mut c_void);
    fn xpvrs_blk_rq_sector(rq: *const c_void) -> u64;
    fn xpvrs_blk_rq_bytes(rq: *const c_void) -> u32;
    fn xpvrs_blk_rq_op(rq: *const c_void) -> u32;
    fn xpvrs_blk_rq_fua(rq: *const c_void) -> bool;
    fn xpvrs_blk_rq_copy(
        rq: *mut c_void,
        pages: *const *mut c_void,
        nr_pages: u32,
        to_pages: bool,
    ) -> u32;
    fn xpvrs_blk_rq_end(rq: *mut c_void, err: c_int);
    fn xpvrs_blk_rq_requeue(rq: *mut c_void);
}

/// Most pages one request's data may be copied through (512 KiB).
pub const MAX_REQUEST_PAGES: usize = 128;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read [`Request::bytes`] from [`Request::sector`].
    Read,
    /// Write.
    Write,
    /// Flush the device's volatile cache (no data).
    Flush,
    /// Discard sectors (no data).
    Discard,
    /// Discard sectors so that their old contents cannot be read back.
    SecureErase,
    /// Anything else (never sent to a disk whose [`DiskParams`] do not announce it).
    Other,
}

/// One started request, owned by the driver until it ends it.
///
/// # Invariants
///
/// `rq` is a request blk-mq handed to `queue_rq` and started; it has not been ended or
/// requeued, and this value is its only owner.
pub struct Request {
    rq: NonNull<bindings::request>,
}

// SAFETY: a started request may be ended from any context and any thread.
unsafe impl Send for Request {}
// SAFETY: `&Request` only reads immutable facts of the request.
unsafe impl Sync for Request {}

impl Request {
    fn raw(&self) -> *mut c_void {
        self.rq.as_ptr().cast()
    }

    /// The first 512-byte sector.
    pub fn sector(&self) -> u64 {
        // SAFETY: the request is live (type invariant).
        unsafe { xpvrs_blk_rq_sector(self.raw()) }
    }

    /// Bytes of data (or, for a discard, bytes of disk the request covers).
    pub fn bytes(&self) -> u32 {
        // SAFETY: the request is live (type invariant).
        unsafe { xpvrs_blk_rq_bytes(self.raw()) }
    }

    /// The operation.
    pub fn op(&self) -> Op {
        // SAFETY: the request is live (type invariant).
        match unsafe { xpvrs_blk_rq_op(self.raw()) } {
            0 => Op::Read,
            1 => Op::Write,
            2 => Op::Flush,
            3 => Op::Discard,
            4 => Op::SecureErase,
            _ => Op::Other,
        }
    }

    /// Whether the data must be on stable storage when the request completes.
    pub fn is_fua(&self) -> bool {
        // SAFETY: the request is live (type invariant).
        unsafe { xpvrs_blk_rq_fua(self.raw()) }
    }

    fn copy(&self, pages: &mut dyn Iterator<Item = &dyn KernelPage>, to_pages: bool) -> bool {
        let mut addrs = [core::ptr::null_mut::<c_void>(); MAX_REQUEST_PAGES];
        let mut n = 0usize;
        for (slot, page) in addrs.iter_mut().zip(pages) {
            *slot = page.kernel_addr().as_ptr().cast();
            n += 1;
        }
        let bytes = self.bytes();
        if n * kernel::page::PAGE_SIZE < bytes as usize {
            return false;
        }
        // SAFETY: the request is live and ours (type invariant); `addrs[..n]` are pages we own
        // (each is borrowed for this call; `KernelPage`'s contract), each PAGE_SIZE bytes; the helper copies
        // at most `n` pages' worth.
        let done = unsafe {
            xpvrs_blk_rq_copy(self.raw(), addrs.as_ptr(), n as u32, to_pages)
        };
        done == bytes
    }

    /// Copies the request's data (a write's) into `pages`, in order, 4096 bytes each;
    /// `false` if they are too few.
    pub fn copy_to_pages<'a, P: KernelPage + 'a>(&self, pages: impl Iterator<Item = &'a P>) -> bool {
        let mut pages = pages.map(|p| p as &dyn KernelPage);
        self.copy(&mut pages, true)
    }

    /// Copies `pages` (a read's result) into the request's data; `false` if they are too few.
    ///
    /// Takes `&mut self`: it writes the request's pages, so no other reference may be reading
    /// them (a `&Request` is `Sync`, and `copy_to_pages` reads through one).
    pub fn copy_from_pages<'a, P: KernelPage + 'a>(
        &mut self,
        pages: impl Iterator<Item = &'a P>,
    ) -> bool {
        let mut pages = pages.map(|p| p as &dyn KernelPage);
        self.copy(&mut pages, false)
    }

    /// Ends the request: `Ok` or the errno of the failure (e.g. `EIO`, `EOPNOTSUPP`).
    pub fn end(self, result: Result) {
        let err = match result {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        };
        let rq = self.raw();
        core::mem::forget(self);
        // SAFETY: the request is started and ours (type invariant); `forget` makes this the
        // only end.
        unsafe { xpvrs_blk_rq_end(rq, err) };
    }

    /// Gives the request back to blk-mq, which will queue it again (e.g. after a reconnect).
    pub fn requeue(self) {
        let rq = self.raw();
        core::mem::forget(self);
        // SAFETY: as in `end`: started, ours, handed back exactly once.
        unsafe { xpvrs_blk_rq_requeue(rq) };
    }
}

impl Drop for Request {
    /// A request dropped without an end fails with an I/O error rather than hang.
    fn drop(&mut self) {
        // SAFETY: the request is started and ours (type invariant); drop runs once.
        unsafe { xpvrs_blk_rq_end(self.raw(), EIO.to_errno()) };
    }
}

/// The hardware queue a [`Operations::queue_rq`] call runs on.
///
/// # Invariants
///
/// `hctx` is the blk-mq hardware context of the call that lent this value; it outlives it.
pub struct HwQueue {
    hctx: NonNull<c_void>,
    index: u32,
}

impl HwQueue {
    /// The queue's number, below the disk's `nr_queues`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Stops this hardware queue: blk-mq dispatches nothing more on it until
    /// [`Disk::start_queues`]. Call it under the lock that the path which frees resources
    /// and restarts the queues also takes, so that a restart cannot run between the
    /// driver's decision and the stop (and be lost).
    pub fn stop(&self) -> Stopped {
        // SAFETY: `hctx` is valid for the call (type invariant).
        unsafe { xpvrs_blk_stop_queue(self.hctx.as_ptr()) };
        Stopped(())
    }
}

/// Proof that the driver stopped its hardware queue before refusing a request.
pub struct Stopped(());

/// Why `queue_rq` did not take a request.
pub enum QueueRqError {
    /// Out of resources (ring slots, or no connection yet): blk-mq keeps the request, and
    /// the queue, which the driver has stopped, waits for [`Disk::start_queues`].
    Busy(Request, Stopped),
}

/// A block driver's per-disk object.
pub trait Operations: Send + Sync + 'static + Sized {
    /// Serve `rq` on hardware queue `hctx`. `last` says blk-mq has no more requests for now
    /// (publish to the device); otherwise [`Operations::commit_rqs`] follows a batch. To
    /// refuse a request the driver ends it with an error; [`QueueRqError::Busy`] asks blk-mq
    /// to retry it once the queue is restarted.
    fn queue_rq(
        this: ArcBorrow<'_, Self>,
        hctx: &HwQueue,
        rq: Request,
        last: bool,
    ) -> Result<(), QueueRqError>;

    /// The end of a batch queued without `last`: publish.
    fn commit_rqs(this: ArcBorrow<'_, Self>, queue: u32);
}

struct VTable<T: Operations>(PhantomData<T>);

impl<T: Operations> VTable<T> {
    /// # Safety
    ///
    /// Called by blk-mq only: `hctx` belongs to a queue whose `queuedata` is the foreign form
    /// of an `Arc<T>` kept alive by a [`Disk<T>`], `bd` is valid.
    unsafe extern "C" fn queue_rq(
        hctx: *mut bindings::blk_mq_hw_ctx,
        bd: *const bindings::blk_mq_queue_data,
    ) -> bindings::blk_status_t {
        let Some(raw) = NonNull::new(hctx.cast::<c_void>()) else {
            // SAFETY: a pure mapping from an errno.
            return unsafe { bindings::errno_to_blk_status(EIO.to_errno()) };
        };
        let mut queue: c_uint = 0;
        // SAFETY: `hctx` is valid (caller).
        let data = unsafe { xpvrs_blk_hctx_data(hctx.cast(), &mut queue) };
        // SAFETY: `bd` is valid; its request is ours until we end it or return busy.
        let (rq, last) = unsafe { ((*bd).rq, (*bd).last) };
        // SAFETY: a request handed to queue_rq is started exactly once, here.
        unsafe { xpvrs_blk_rq_start(rq.cast()) };
        let Some(rq) = NonNull::new(rq) else {
            return bindings::BLK_STS_OK as bindings::blk_status_t;
        };
        // INVARIANT: started just above, not ended, owned by this value alone.
        let rq = Request { rq };
        // SAFETY: `queuedata` is the `Arc<T>` the disk holds until after the queue is gone.
        let this = unsafe { <Arc<T> as ForeignOwnable>::borrow(data) };
        // INVARIANT: blk-mq's context for this call.
        let hw = HwQueue {
            hctx: raw,
            index: queue,
        };
        match T::queue_rq(this, &hw, rq, last) {
            Ok(()) => bindings::BLK_STS_OK as bindings::blk_status_t,
            Err(QueueRqError::Busy(rq, Stopped(()))) => {
                // blk-mq keeps the request (ours no more); the driver stopped the queue.
                core::mem::forget(rq);
                // SAFETY: a pure mapping from an errno.
                unsafe { bindings::errno_to_blk_status(EBUSY.to_errno()) }
            }
        }
    }

    /// # Safety
    ///
    /// As for `queue_rq`.
    unsafe extern "C" fn commit_rqs(hctx: *mut bindings::blk_mq_hw_ctx) {
        let mut queue: c_uint = 0;
        // SAFETY: `hctx` is valid (caller).
        let data = unsafe { xpvrs_blk_hctx_data(hctx.cast(), &mut queue) };
        // SAFETY: as in `queue_rq`.
        let this = unsafe { <Arc<T> as ForeignOwnable>::borrow(data) };
        T::commit_rqs(this, queue);
    }

    const OPS: bindings::blk_mq_ops = {
        // SAFETY: `blk_mq_ops` is a table of optional function pointers: all-zero is "none".
        let mut ops: bindings::blk_mq_ops = unsafe { core::mem::zeroed() };
        ops.queue_rq = Some(Self::queue_rq);
        ops.commit_rqs = Some(Self::commit_rqs);
        ops
    };
}

/// The discard capability of a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscardParams {
    /// Largest discard in 512-byte sectors.
    pub max_sectors: u32,
    /// Granularity in bytes.
    pub granularity: u32,
    /// Alignment offset in bytes.
    pub alignment: u32,
    /// Secure erase is offered too.
    pub secure: bool,
}

/// How a disk looks to the block layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskParams<'a> {
    /// Name, e.g. `xvdb` (at most 31 bytes).
    pub name: &'a str,
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Logical block size (512 to 4096, a power of two).
    pub logical_block_size: u32,
    /// Physical block size.
    pub physical_block_size: u32,
    /// Largest request in 512-byte sectors.
    pub max_hw_sectors: u32,
    /// Hardware queues.
    pub nr_queues: u32,
    /// Requests outstanding per queue.
    pub queue_depth: u32,
    /// The device has a volatile write cache: the block layer sends flushes.
    pub write_cache: bool,
    /// Forced unit access is native (otherwise the block layer follows a FUA write with a
    /// flush).
    pub fua: bool,
    /// Discard, if offered.
    pub discard: Option<DiscardParams>,
    /// Refuse writes.
    pub read_only: bool,
    /// Removable media (`/sys/block/<disk>/removable` reads 1), e.g. a virtual CD-ROM.
    pub removable: bool,
    /// A fixed device number: major, first minor and minors (partitions + 1), e.g. Xen's
    /// `xvd` numbers; `None` for a dynamic one.
    pub devt: Option<(u32, u32, u32)>,
}

/// A disk served by `T`.
///
/// # Invariants
///
/// `set` is an allocated tag set whose ops are `VTable<T>::OPS`; `disk` was added to the
/// system on it with `data` (the foreign form of an `Arc<T>`) as queuedata.
pub struct Disk<T: Operations> {
    set: NonNull<c_void>,
    disk: NonNull<c_void>,
    data: *const c_void,
    _p: PhantomData<T>,
}

// SAFETY: the pointers are owned by this value; the C objects may be used from any thread.
unsafe impl<T: Operations> Send for Disk<T> {}
// SAFETY: every `&self` method is a C call that does its own locking.
unsafe impl<T: Operations> Sync for Disk<T> {}

impl<T: Operations> Disk<T> {
    /// Creates the disk and adds it to the system (it may see I/O at once, e.g. a partition
    /// scan, so `data` must be ready to serve).
    pub fn new(params: &DiskParams<'_>, data: Arc<T>) -> Result<Self> {
        let mut name = [0 as c_char; 32];
        let bytes = params.name.as_bytes();
        if bytes.len() >= name.len() {
            return Err(EINVAL);
        }
        for (d, s) in name.iter_mut().zip(bytes) {
            *d = *s as c_char;
        }
        let (max_discard_sectors, discard_granularity, discard_alignment, secure_erase) =
            match params.discard {
                Some(d) => (d.max_sectors, d.granularity, d.alignment, d.secure),
                None => (0, 0, 0, false),
            };
        let raw = RawParams {
            capacity: params.capacity,
            logical_block_size: params.logical_block_size,
            physical_block_size: params.physical_block_size,
            max_hw_sectors: params.max_hw_sectors,
            max_discard_sectors,
            discard_granularity,
            discard_alignment,
            nr_queues: params.nr_queues,
            queue_depth: params.queue_depth,
            major: params.devt.map_or(0, |d| d.0),
            first_minor: params.devt.map_or(0, |d| d.1),
            minors: params.devt.map_or(0, |d| d.2),
            secure_erase,
            write_cache: params.write_cache,
            fua: params.fua,
            read_only: params.read_only,
            // Drivers take mutexes and allocate pages in queue_rq.
            blocking: true,
            removable: params.removable,
            name,
        };
        static_assert!(core::mem::size_of::<RawParams>() == 96);
        let ops: *const bindings::blk_mq_ops = &VTable::<T>::OPS;
        // SAFETY: `ops` is a static table of valid callbacks; `raw` is a valid parameter block.
        let set = unsafe { xpvrs_blk_alloc_tag_set(ops.cast(), &raw) };
        let set = check_ptr(set)?;
        let data = data.into_foreign();
        // SAFETY: `set` was allocated above; `data` stays valid until `Drop` (or below).
        let disk = unsafe { xpvrs_blk_add_disk(set.as_ptr(), &raw, data as *mut c_void) };
        match check_ptr(disk) {
            Ok(disk) => Ok(Disk {
                set,
                disk,
                data,
                _p: PhantomData,
            }),
            Err(e) => {
                // SAFETY: no disk uses the tag set; `data` was never seen by blk-mq.
                unsafe { xpvrs_blk_free_tag_set(set.as_ptr()) };
                // SAFETY: from `into_foreign` above, reclaimed once.
                drop(unsafe { <Arc<T> as ForeignOwnable>::from_foreign(data) });
                Err(e)
            }
        }
    }

    /// Restarts hardware queues stopped by [`QueueRqError::Busy`] (asynchronously).
    pub fn start_queues(&self) {
        // SAFETY: the disk is live (type invariant).
        unsafe { xpvrs_blk_start_queues(self.disk.as_ptr()) };
    }

    /// Changes the capacity (and tells user space).
    pub fn set_capacity(&self, sectors: u64) {
        // SAFETY: the disk is live (type invariant).
        unsafe { xpvrs_blk_set_capacity(self.disk.as_ptr(), sectors) };
    }

    /// Stops sending discards and secure erases (the device refused them): the queue's
    /// discard limits drop to zero, so the block layer no longer issues them.
    pub fn disable_discard(&self) {
        // SAFETY: the disk is live (type invariant).
        unsafe { xpvrs_blk_disable_discard(self.disk.as_ptr()) };
    }

    /// Marks the disk read-only or writable.
    pub fn set_read_only(&self, ro: bool) {
        // SAFETY: the disk is live (type invariant).
        unsafe { xpvrs_blk_set_ro(self.disk.as_ptr(), ro) };
    }
}

impl<T: Operations> Drop for Disk<T> {
    /// Deletes the disk; this waits until every request has been ended, so the driver must
    /// be able to end them (fail them if its device is gone) before dropping the disk.
    fn drop(&mut self) {
        // SAFETY: added in `new` (type invariant); deleted once.
        unsafe { xpvrs_blk_del_disk(self.disk.as_ptr()) };
        // SAFETY: the disk, the only user of the set, is gone.
        unsafe { xpvrs_blk_free_tag_set(self.set.as_ptr()) };
        // SAFETY: from `into_foreign` in `new`; no callback can run any more.
        drop(unsafe { <Arc<T> as ForeignOwnable>::from_foreign(self.data) });
    }
}

fn check_ptr(p: *mut c_void) -> Result<NonNull<c_void>> {
    let v = p as isize;
    if (-4095..0).contains(&v) {
        return Err(Error::from_errno(v as c_int));
    }
    NonNull::new(p).ok_or(ENOMEM)
}

