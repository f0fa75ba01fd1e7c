// SPDX-License-Identifier: GPL-2.0

//! `xenpvrs_blkback`: the Xen virtual block device backend, xen-blkif's `BlkBack` engine
//! serving a block device to a guest's frontend.
//!
//! One [`Dev`] per `backend/vbd/<domid>/<id>`, driven by the toolstack's keys exactly as `xl`
//! writes them: at probe it offers ring order, queues and persistent grants and goes to
//! InitWait; when the hotplug script publishes `physical-device` (`major:minor` in hex) it
//! opens that block device (read-only unless `mode` has `w`; `xl`'s file disks arrive as loop
//! devices); when the frontend has published its rings it maps them, binds the event
//! channels, writes the disk's properties and goes to Connected. A frontend that closes gets
//! the backend closed; the toolstack removing the directory removes the device.
//!
//! One [`Queue`] per ring: its engine (the same source the host simulator tests), its ring,
//! event channel and map pool. Requests are validated by the engine before anything happens,
//! their grants mapped in batches, and the bios built on the mapped guest pages (no copy).
//! Bio completions arrive in interrupt context and only set a bit and kick the queue's work
//! item; the work item answers, unmaps and takes more requests (bounded per run, late EOI).
//! Teardown with I/O in flight waits for the bios to end before unmapping anything.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{Arc, ArcBorrow, Mutex};
use kernel::time::Ktime;
use kernel::workqueue::{self, impl_has_work, new_work, Work, WorkItem};
use kernel::{c_str, fmt, new_mutex};
use xen_blkif::back::{Parts, MAX_SEGS};
use xen_blkif::{
    Abi, BackConfig, BlkBack, CacheSlot, Connection, Error as BlkError, Io, IoError, IoKind,
    PendingSlot, SegState, Started, Storage, Tables,
};
use xen_core::feature::blkif::{
    announce_resize, read_queue, BackOffer, BackendDisk, DeviceFacts, DiskInfo, FrontRequest,
    Protocol,
};
use xen_core::feature::{FeatureError, StoreDir};
use xen_core::xenbus::{Action, Event, Input, Machine, Perform, Role};
use xen_core::xs::{with_transaction, TxId, XenStore};
use xen_evtchn::EvtchnOps;
use linux::timer::{Tick, Ticker};
use linux::block::bio::{self, BioCtx, BlockDevice, IoOp};
use linux::debugfs::DebugCounters;
use xen_kernel::bus::{self, peer_state, Device, DeviceHandle, HandshakeError, Side};
use xen_kernel::evtchn::Channel;
use xen_kernel::grant::{Grants, MAX_POOL_PAGES};
use xen_kernel::platform::{Env, Mapped};
use xen_kernel::ring::BackRingPages;
use xen_kernel::store::KernelStore;
use linux::workqueue::cancel_sync;
use xen_kernel::work::EventQueue;
use xen_kernel::{stats, Kick, KickReason};
use xen_sys::XenbusState;

module! {
    type: BlkBackModule,
    name: "xenpvrs_blkback",
    author: "xen-pv-rs",
    description: "xen-pv-rs: Xen virtual block device backend",
    license: "GPL",
    alias: ["xen-backend:vbd"],
}

extern "C" {
    fn xpvrs_blkback_max_queues() -> u32;
    fn xpvrs_blkback_max_ring_page_order() -> u32;
    fn xpvrs_blkback_max_persistent_grants() -> u32;
    fn xpvrs_blkback_feature_persistent() -> bool;
    fn xpvrs_blkback_online_cpus() -> u32;
    fn xpvrs_blkback_persistent_grant_unused_seconds() -> u32;
    fn xpvrs_blkback_log_stats() -> bool;
    fn xpvrs_blkback_max_buffer_pages() -> u32;
    fn xpvrs_blkback_buffer_squeeze_duration_ms() -> u32;
    fn xpvrs_vbd_sysfs_add(
        xdev: *mut kernel::ffi::c_void,
        stats: *const u64,
        major: u32,
        minor: u32,
        writable: bool,
    ) -> *mut kernel::ffi::c_void;
    fn xpvrs_vbd_sysfs_remove(handle: *mut kernel::ffi::c_void);
}

/// A device directory path (on the stack: kernel stacks are small, device paths are short).

/// Requests in flight per queue at most (pending slots; more wait on the ring).
const DEPTH: usize = 64;
/// Words of the completion bitmaps.
const WORDS: usize = DEPTH / 64;
const _: () = assert!(DEPTH % 64 == 0);
/// Segments in flight per queue at most (each may hold a transient mapping).
const INFLIGHT_SEGS: u32 = 1280;
/// Most segments per indirect request we offer (Linux's maximum).
const INDIRECT_SEGS: u16 = 256;
/// How long teardown waits for a queue's bios to end before giving up on its memory.
const DRAIN_WAIT_MS: u32 = 30_000;

/// The backend's offer from the module parameters: `max_queues` 0 (the default) means one
/// queue per online CPU, as in Linux; a larger value is capped by the CPUs.
fn offer() -> (BackOffer, usize) {
    // SAFETY: the getters read module parameters; no preconditions.
    let (queues, order, cache, persistent, cpus) = unsafe {
        (
            xpvrs_blkback_max_queues(),
            xpvrs_blkback_max_ring_page_order(),
            xpvrs_blkback_max_persistent_grants(),
            xpvrs_blkback_feature_persistent(),
            xpvrs_blkback_online_cpus(),
        )
    };
    let offer = BackOffer::from_params(queues, order, persistent, cpus);
    let room = MAX_POOL_PAGES - pool_pages(0);
    (offer, usize::try_from(cache).unwrap_or(0).min(room))
}

/// The disk as the frontend is told it (and the engine serves it): xen-core decides from the
/// device's facts and the toolstack's keys.
fn describe(bdev: &BlockDevice, disk: &BackendDisk, persistent: bool) -> DiskInfo {
    let facts = DeviceFacts {
        sectors: bdev.sectors(),
        logical_block_size: bdev.logical_block_size(),
        physical_block_size: bdev.physical_block_size(),
        opened_writable: bdev.writable(),
        read_only: bdev.read_only(),
        write_cache: bdev.write_cache(),
        discard: bdev.discard_supported(),
        secure_erase: bdev.secure_erase_supported(),
        discard_granularity: bdev.discard_granularity(),
        discard_alignment: bdev.discard_alignment(),
    };
    DiskInfo::describe(&facts, disk, persistent, u32::from(INDIRECT_SEGS))
}

/// The map pool of a queue: the persistent-grant cache, the segments in flight (the limit plus
/// the one request that may cross it), one request's indirect pages and one batch of evicted
/// mappings.
fn pool_pages(cache: usize) -> usize {
    cache + INFLIGHT_SEGS as usize + MAX_SEGS + 8 + xen_blkif::back::MAP_BATCH
}

// --- counters -----------------------------------------------------------------------------------

const COUNTERS: usize = 17;
const COUNTER_NAMES: [&kernel::str::CStr; COUNTERS] = [
    c_str!("requests"),
    c_str!("invalid"),
    c_str!("map_failures"),
    c_str!("io_errors"),
    c_str!("segments"),
    c_str!("indirect"),
    c_str!("persistent_hits"),
    c_str!("persistent_grants"),
    c_str!("maps"),
    c_str!("unmaps"),
    c_str!("spurious_events"),
    c_str!("stalls"),
    c_str!("max_in_flight"),
    c_str!("events"),
    c_str!("flushes"),
    c_str!("discards"),
    // Not an engine counter: the map pool's idle pages, as of the last tick.
    c_str!("buffer_pages"),
];
/// The index of `buffer_pages` in [`COUNTER_NAMES`].
const BUFFER_PAGES: usize = 16;

/// A queue's counters as `name=value` pairs, for its disconnect line.
struct CounterLine<'a>(&'a [AtomicU64; COUNTERS]);

impl core::fmt::Display for CounterLine<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (name, v)) in COUNTER_NAMES.iter().zip(self.0.iter()).enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let name = name.to_str().unwrap_or("?");
            write!(f, "{sep}{name}={}", v.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

// --- storage: bios on the mapped guest pages ----------------------------------------------------

/// The engine's tables, on the heap (vmalloc for the large ones).
struct KTables {
    pending: KVec<PendingSlot>,
    segs: KVVec<SegState<Mapped>>,
    cache: KVVec<CacheSlot<Mapped>>,
}

impl KTables {
    fn new(cache: usize) -> Result<KTables> {
        let mut pending = KVec::with_capacity(DEPTH, GFP_KERNEL)?;
        for _ in 0..DEPTH {
            pending.push(PendingSlot::FREE, GFP_KERNEL)?;
        }
        let mut segs = KVVec::with_capacity(DEPTH * MAX_SEGS, GFP_KERNEL)?;
        for _ in 0..DEPTH * MAX_SEGS {
            segs.push(SegState::EMPTY, GFP_KERNEL)?;
        }
        let mut slots = KVVec::with_capacity(cache, GFP_KERNEL)?;
        for _ in 0..cache {
            slots.push(CacheSlot::EMPTY, GFP_KERNEL)?;
        }
        Ok(KTables {
            pending,
            segs,
            cache: slots,
        })
    }
}

impl Tables<Mapped> for KTables {
    fn parts(&mut self) -> Parts<'_, Mapped> {
        Parts {
            pending: &mut self.pending,
            segs: &mut self.segs,
            cache: &mut self.cache,
        }
    }

    fn cache(&self) -> &[CacheSlot<Mapped>] {
        &self.cache
    }
}

/// The block device of one queue's requests, with one bio context per pending slot.
///
/// # Invariants
///
/// `owner` came from `Arc::into_raw` and its reference count is this value's until it drops:
/// the queue outlives the storage, its contexts and their bios, also when a teardown that timed
/// out leaks the engine (and with it this storage, and the count). `ctxs[i]` has owner `owner`
/// and tag `i`; `ctxs` is never resized, so the contexts do not move.
struct KStorage {
    owner: NonNull<Queue>,
    bdev: Arc<BlockDevice>,
    ctxs: KVec<BioCtx>,
    segs: KVec<bio::Segment>,
    read_only: bool,
}

// SAFETY: `owner` is a counted `Arc<Queue>` reference (type invariant) and `Queue` is `Send` and
// `Sync`; the other fields are `Send`.
unsafe impl Send for KStorage {}

impl Drop for KStorage {
    /// Releases the queue's count once no context of this storage can run any more: the
    /// engine that owns the storage is dropped only after all its I/O ended.
    fn drop(&mut self) {
        // SAFETY: `owner` came from `Arc::into_raw` and its count is ours (type invariant);
        // this runs once.
        drop(unsafe { Arc::from_raw(self.owner.as_ptr().cast_const()) });
    }
}

impl KStorage {
    fn new(bdev: Arc<BlockDevice>, queue: &Arc<Queue>) -> Result<KStorage> {
        let ctxs = KVec::with_capacity(DEPTH, GFP_KERNEL)?;
        let segs = KVec::with_capacity(MAX_SEGS, GFP_KERNEL)?;
        let read_only = !bdev.writable() || bdev.read_only();
        let owner = Arc::into_raw(queue.clone());
        let Some(owner) = NonNull::new(owner.cast_mut()) else {
            // SAFETY: `owner` came from `into_raw` just above (and `into_raw` never gives null).
            drop(unsafe { Arc::from_raw(owner) });
            return Err(EINVAL);
        };
        // INVARIANT: `owner`'s count is the storage's from here (released by `drop`, also if
        // the loop below fails); `ctxs` is filled before anyone sees it.
        let mut storage = KStorage {
            owner,
            bdev,
            ctxs,
            segs,
            read_only,
        };
        for i in 0..DEPTH {
            let ctx = BioCtx::new(Queue::bio_done);
            ctx.set_tag(u32::try_from(i).map_err(|_| EINVAL)?);
            ctx.set_owner(storage.owner.as_ptr().cast());
            storage.ctxs.push(ctx, GFP_KERNEL)?;
        }
        Ok(storage)
    }

    fn submit(&mut self, tag: usize, op: IoOp, io: &Io<'_, Mapped>) -> Started {
        let Some(ctx) = self.ctxs.get(tag) else {
            return Started::Done(Err(IoError));
        };
        // SAFETY: shrinking only; `bio::Segment` is `Copy` (nothing to drop).
        unsafe { self.segs.set_len(0) };
        for s in io.segments() {
            let (Ok(offset), Ok(len)) = (u32::try_from(s.offset), u32::try_from(s.len)) else {
                return Started::Done(Err(IoError));
            };
            let seg = bio::Segment {
                page: s.page.page(),
                offset,
                len,
            };
            // Capacity is MAX_SEGS, the most a request has: no allocation here.
            if self.segs.push(seg, GFP_ATOMIC).is_err() {
                return Started::Done(Err(IoError));
            }
        }
        // A flush has no range (Linux frontends send sector -1): start it at 0.
        let sector = if op == IoOp::Flush { 0 } else { io.sector.0 };
        // SAFETY: `ctx` stays at its address until its callback has run (type invariant: the
        // queue keeps `ctxs` until no I/O is in flight); the pages are mappings the engine
        // holds in this request's pending slot until `complete` for this tag, which only the
        // callback triggers.
        match unsafe { self.bdev.submit(ctx, op, sector, &self.segs) } {
            Ok(()) => Started::Pending,
            Err(_) => Started::Done(Err(IoError)),
        }
    }
}

impl Storage<Mapped> for KStorage {
    /// Read live: a loop device whose file grew (`losetup -c`) reports its new size, which
    /// the engine notices (`check_resize`) and the device announces.
    fn capacity(&self) -> u64 {
        self.bdev.sectors()
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn start(&mut self, tag: usize, io: &Io<'_, Mapped>) -> Started {
        match io.kind {
            IoKind::Read => self.submit(tag, IoOp::Read, io),
            IoKind::Write { preflush, fua } => self.submit(tag, IoOp::Write { preflush, fua }, io),
            IoKind::Flush => self.submit(tag, IoOp::Flush, io),
            IoKind::Discard { sectors, secure } => {
                if sectors == 0 {
                    return Started::Done(Ok(()));
                }
                // Synchronous: we are in the queue's work item (process context).
                let r = if secure {
                    self.bdev.secure_erase(io.sector.0, sectors)
                } else {
                    self.bdev.discard(io.sector.0, sectors)
                };
                Started::Done(r.map_err(|_| IoError))
            }
        }
    }
}

type Engine = BlkBack<Env<Queue>, KStorage, BackRingPages, KTables>;

// --- one queue ----------------------------------------------------------------------------------

struct QState {
    engine: Option<KBox<Engine>>,
    events: u64,
    /// The once-a-second tick while connected (stopped first at shutdown).
    ticker: Option<Ticker<Queue>>,
    ticks: u32,
    /// The counters at the last `log_stats` line.
    logged: [u64; VBD_STATS],
    /// The persistent-grant cache's capacity (for `log_stats`).
    cache_size: usize,
    /// `resume` asked to be called again (its budget ran out).
    resume_more: bool,
    /// The device's `squeezes` as this queue last acted on it.
    squeezes_seen: u32,
}

/// One ring with its engine.
#[pin_data]
struct Queue {
    index: u32,
    dev: DeviceHandle,
    #[pin]
    state: Mutex<QState>,
    #[pin]
    work: Work<Queue, 0>,
    event_kicked: AtomicBool,
    /// A second passed (the ticker): housekeeping is due.
    tick_due: AtomicBool,
    /// Tags whose bios ended (set in interrupt context, taken by the work item).
    done_bits: [AtomicU64; WORDS],
    /// Of those, the ones that failed (set before the done bit).
    err_bits: [AtomicU64; WORDS],
    /// Completion callbacks running right now (teardown waits for zero).
    callbacks: AtomicU32,
    /// The ring broke: the device must close.
    broken: AtomicBool,
    counters: [AtomicU64; COUNTERS],
    /// The device, to announce a resize the engine noticed. (A cycle while connected: the
    /// device's disconnect drops its queues.)
    owner: Arc<Dev>,
    /// The device's Linux-style totals, and what this queue last added to them.
    vbd: Arc<VbdStats>,
    vbd_added: [AtomicU64; VBD_STATS],
}

impl_has_work! {
    impl HasWork<Self, 0> for Queue { self.work }
}

impl Tick for Queue {
    fn tick(this: ArcBorrow<'_, Self>) {
        this.tick_due.store(true, Ordering::Release);
        let this: Arc<Self> = this.into();
        let _ = workqueue::system_highpri().enqueue::<Arc<Queue>, 0>(this);
    }
}

impl EventQueue for Queue {
    fn event_pending(&self) -> &AtomicBool {
        &self.event_kicked
    }
}

impl Queue {
    fn new(index: u32, owner: Arc<Dev>) -> Result<Arc<Queue>> {
        let dev = owner.handle.clone();
        let vbd = owner.vbd.clone();
        Arc::pin_init(
            pin_init!(Queue {
                index,
                dev,
                state <- new_mutex!(QState {
                    engine: None,
                    events: 0,
                    ticker: None,
                    ticks: 0,
                    squeezes_seen: 0,
                    logged: [0; VBD_STATS],
                    cache_size: 0,
                    resume_more: false,
                }),
                work <- new_work!("Queue::work"),
                event_kicked: AtomicBool::new(false),
                tick_due: AtomicBool::new(false),
                done_bits: [const { AtomicU64::new(0) }; WORDS],
                err_bits: [const { AtomicU64::new(0) }; WORDS],
                callbacks: AtomicU32::new(0),
                broken: AtomicBool::new(false),
                counters: [const { AtomicU64::new(0) }; COUNTERS],
                owner,
                vbd,
                vbd_added: [const { AtomicU64::new(0) }; VBD_STATS],
            }),
            GFP_KERNEL,
        )
    }

    /// A bio context's I/O ended (any context, often a hard interrupt): record it and kick the
    /// work item. Nothing here sleeps or locks.
    fn bio_done(ctx: &BioCtx, result: Result) {
        let owner = ctx.owner().cast::<Queue>().cast_const();
        if owner.is_null() {
            return;
        }
        // SAFETY: the owner came from `Arc::into_raw`, and its count belongs to the `KStorage`
        // whose context this is (type invariant). That storage is dropped only with its engine,
        // after every context's I/O ended; a teardown that gives up leaks the engine, storage
        // and count together. So the queue is alive while this I/O is.
        let this = unsafe { ArcBorrow::from_raw(owner) };
        this.callbacks.fetch_add(1, Ordering::AcqRel);
        let tag = usize::try_from(ctx.tag()).unwrap_or(usize::MAX);
        let (word, bit) = (tag / 64, 1u64 << (tag % 64));
        if let (Some(d), Some(e)) = (this.done_bits.get(word), this.err_bits.get(word)) {
            if result.is_err() {
                e.fetch_or(bit, Ordering::AcqRel);
            }
            d.fetch_or(bit, Ordering::AcqRel);
        }
        let arc: Arc<Queue> = this.into();
        let _ = workqueue::system_highpri().enqueue::<Arc<Queue>, 0>(arc);
        this.callbacks.fetch_sub(1, Ordering::AcqRel);
    }

    /// Hands every recorded completion to the engine; returns how many.
    fn reap(&self, engine: &mut Engine) -> usize {
        let mut n = 0;
        for (w, (d, e)) in self.done_bits.iter().zip(self.err_bits.iter()).enumerate() {
            let bits = d.swap(0, Ordering::AcqRel);
            if bits == 0 {
                continue;
            }
            let errs = e.fetch_and(!bits, Ordering::AcqRel) & bits;
            for b in 0..64 {
                if bits & (1u64 << b) == 0 {
                    continue;
                }
                let r = if errs & (1u64 << b) != 0 {
                    Err(IoError)
                } else {
                    Ok(())
                };
                engine.complete(w * 64 + b, r);
                n += 1;
            }
        }
        n
    }

    fn publish(&self, engine: &Engine, events: u64) {
        let s = engine.stats();
        let vals = [
            s.requests,
            s.invalid,
            s.map_failures,
            s.io_errors,
            s.segments,
            s.indirect,
            s.persistent_hits,
            engine.persistent_grants() as u64,
            s.maps,
            s.unmaps,
            s.spurious_events,
            s.stalls,
            s.max_in_flight,
            events,
            s.flushes,
            s.discards,
        ];
        for (c, v) in self.counters.iter().zip(vals) {
            c.store(v, Ordering::Relaxed);
        }
        // The device's totals grow by what this engine counted since the last publish (one
        // publisher per queue: the queue's state lock is held).
        for ((total, added), v) in self.vbd.0.iter().zip(&self.vbd_added).zip(VbdStats::of(&s)) {
            let before = added.swap(v, Ordering::Relaxed);
            total.fetch_add(v.wrapping_sub(before), Ordering::Relaxed);
        }
    }

    /// Once a second, also when idle (the ticker): unmaps persistent grants unused for
    /// `persistent_grant_unused_seconds`, and with `log_stats` prints the queue's request
    /// counts of the last 10 seconds, as Linux's blkback does (the size check is in `run`).
    /// Frees the map pool's idle pages beyond `max_buffer_pages`, or all of them after the
    /// kernel asked for memory (`reclaim_memory`) and for `buffer_squeeze_duration_ms` after
    /// that, as Linux's blkback does with its free-page pool. Linux checks after each batch;
    /// this runs on the queue's tick (once a second), and a request for memory is acted on at
    /// the next tick even if its window has passed by then.
    fn squeeze_buffer(&self, engine: &Engine, squeezes_seen: &mut u32) {
        let squeezes = self.owner.squeezes.load(Ordering::Acquire);
        let asked = squeezes != *squeezes_seen;
        *squeezes_seen = squeezes;
        let now = Ktime::ktime_get().to_ms();
        let squeezing = asked || now < self.owner.squeeze_until_ms.load(Ordering::Acquire);
        // SAFETY: reads a module parameter.
        let max = unsafe { xpvrs_blkback_max_buffer_pages() };
        let keep = if squeezing { 0 } else { max };
        let grants = &engine.env().grants;
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        // One scan when there is nothing to free (the usual case), two when there is.
        let idle = grants.idle_pages();
        let freed = if idle > keep {
            grants.shrink_idle_pages(keep)
        } else {
            0
        };
        if squeezing && freed > 0 {
            pr_info!(
                "XENPVRS-BLKBACK {} q{}: buffer squeezed, {} idle pages freed\n",
                self.dev.nodename(),
                self.index,
                freed
            );
        }
        if let Some(c) = self.counters.get(BUFFER_PAGES) {
            // The queue's lock is held: nothing maps or unmaps meanwhile.
            c.store(idle.saturating_sub(freed) as u64, Ordering::Relaxed);
        }
    }

    fn housekeeping(
        &self,
        engine: &mut Engine,
        ticks: &mut u32,
        logged: &mut [u64; VBD_STATS],
        cache_size: usize,
    ) {
        // SAFETY: reads a module parameter.
        let unused = unsafe { xpvrs_blkback_persistent_grant_unused_seconds() };
        let purged = engine.purge_unused_grants(unused);
        if purged > 0 {
            pr_debug!(
                "XENPVRS-BLKBACK {} q{}: unmapped {} persistent grants unused for {} s\n",
                self.dev.nodename(),
                self.index,
                purged,
                unused
            );
        }
        *ticks = ticks.wrapping_add(1);
        // SAFETY: reads a module parameter.
        if *ticks % 10 == 0 && unsafe { xpvrs_blkback_log_stats() } {
            let now = VbdStats::of(&engine.stats());
            let mut d = now;
            for (v, before) in d.iter_mut().zip(logged.iter()) {
                *v = v.wrapping_sub(*before);
            }
            let [oo, rd, wr, f, ds, _, _] = d;
            pr_info!(
                "XENPVRS-BLKBACK {} q{}: oo {} | rd {} | wr {} | f {} | ds {} | pg: {}/{}\n",
                self.dev.nodename(),
                self.index,
                oo,
                rd,
                wr,
                f,
                ds,
                engine.persistent_grants(),
                cache_size
            );
            *logged = now;
        }
    }

    /// Maps the frontend's ring, binds its port and builds the engine.
    #[inline(never)]
    fn setup(
        self: &Arc<Self>,
        ring: &xen_core::feature::blkif::QueueRing,
        abi: Abi,
        bdev: &Arc<BlockDevice>,
        config: BackConfig,
        cache: usize,
    ) -> Result {
        let front = self.dev.otherend_id();
        let pages = BackRingPages::map(&self.dev, ring.refs())?;
        let pool = pool_pages(cache);
        let env = Env {
            dev: self.dev.clone(),
            grants: Grants::with_map_pool(pool)?,
            chan: Channel::new(self.dev.clone(), self.clone(), c_str!("xenpvrs-blkback")),
            rx_chan: None,
            atomic_pages: false,
            rx_pool: None,
            refs: None,
        };
        let port = env.bind_interdomain(front, ring.port).map_err(|_| EIO)?;
        let storage = KStorage::new(bdev.clone(), self)?;
        let tables = KTables::new(cache)?;
        let conn = Connection { abi, front, port };
        let engine = Engine::new(env, storage, pages, conn, config, tables).map_err(|_| EINVAL)?;
        let engine = KBox::new(engine, GFP_KERNEL)?;
        let ticker = Ticker::start(self.clone(), 1000)?;
        let mut st = self.state.lock();
        st.engine = Some(engine);
        st.events = 0;
        st.ticker = Some(ticker);
        st.ticks = 0;
        st.logged = [0; VBD_STATS];
        st.cache_size = cache;
        drop(st);
        // Requests published before the port was bound raised no event: look once.
        self.event_kicked.store(true, Ordering::Release);
        let _ = workqueue::system_highpri().enqueue::<Arc<Queue>, 0>(self.clone());
        Ok(())
    }

    /// Stops serving: disconnects the engine, waits (bounded in time) for its bios to end,
    /// publishes its last counters and drops it. Returns them.
    ///
    /// The wait is uninterruptible: a signal pending on the caller (a killed `rmmod` or
    /// unbind) must not cut it short, or the engine, the open block device and the guest's
    /// mappings would leak while the bios still run. Its bound is a deadline in time
    /// (`DRAIN_WAIT_MS`), not a count of wake-ups.
    fn shutdown(&self) -> Option<xen_blkif::BackStats> {
        // The ticker first (it holds a reference on the queue); stopping waits for a tick
        // in progress, which takes no lock.
        let ticker = self.state.lock().ticker.take();
        drop(ticker);
        // An orderly close: what is on the ring is answered (an error), what is in flight is
        // answered when its I/O ends, and only then does the ring go. A frontend waits for
        // every answer (Linux's blkfront cannot remove its disk without them).
        let _ = self.state.lock().engine.as_mut()?.close();
        let start = Ktime::ktime_get();
        loop {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let engine = st.engine.as_mut()?;
            if self.reap(engine) > 0 && engine.is_connected() {
                // Pushes the answers (and answers, with an error, what came meanwhile).
                let _ = engine.resume();
            }
            if engine.in_flight() == 0 && self.callbacks.load(Ordering::Acquire) == 0 {
                engine.disconnect();
                let stats = engine.stats();
                self.publish(engine, st.events);
                let engine = st.engine.take();
                drop(guard);
                drop(engine);
                return Some(stats);
            }
            let waited = kernel::time::ktime_ms_delta(Ktime::ktime_get(), start);
            if waited >= i64::from(DRAIN_WAIT_MS) {
                pr_err!(
                    "XENPVRS-BLKBACK {} q{}: {} requests still in flight after {} ms; leaking their mappings\n",
                    self.dev.nodename(),
                    self.index,
                    engine.in_flight(),
                    waited
                );
                // The bios still use the mapped pages and the contexts: never free them.
                core::mem::forget(st.engine.take());
                return None;
            }
            drop(guard);
            // A bio's end only queues the work item; this loop reaps too (above). Polling every
            // 10 ms in an uninterruptible sleep is the wait.
            // SAFETY: process context, no lock held.
            unsafe { kernel::bindings::msleep(10) };
        }
    }
}

impl WorkItem<0> for Queue {
    type Pointer = Arc<Queue>;

    /// Completions first (they free room), then the ring; late EOI after an event.
    fn run(this: Arc<Queue>) {
        let mut guard = this.state.lock();
        let st = &mut *guard;
        let Some(engine) = st.engine.as_mut() else {
            return;
        };
        let mut requeue = false;
        let mut broken = false;
        if this.tick_due.swap(false, Ordering::AcqRel) {
            this.squeeze_buffer(engine, &mut st.squeezes_seen);
            this.housekeeping(engine, &mut st.ticks, &mut st.logged, st.cache_size);
        }
        let completed = this.reap(engine);
        // One plug over the batch: the block layer may merge the bios of adjacent requests.
        // `resume` runs after completions, and again on the rerun it asked for (`more`: its
        // budget ran out with requests left on the ring) even if nothing completed since:
        // otherwise those requests would wait for an event that may never come.
        if (completed > 0 || st.resume_more) && engine.is_connected() {
            st.resume_more = false;
            if let Ok(p) = bio::plugged(|| engine.resume()) {
                st.resume_more = p.more;
                requeue |= p.more;
            }
        }
        if this.event_kicked.swap(false, Ordering::AcqRel) {
            st.events = st.events.wrapping_add(1);
            let mut spurious = true;
            let mut more = false;
            match bio::plugged(|| engine.handle_event()) {
                Ok(p) => {
                    // The engine's verdict: an event that finds the engine stalled on
                    // its own I/O is work, not a storm.
                    spurious = p.spurious;
                    more = p.more;
                }
                Err(BlkError::Ring(e)) => {
                    pr_warn!(
                        "XENPVRS-BLKBACK {} q{}: frontend broke the ring ({:?}); disconnected\n",
                        this.dev.nodename(),
                        this.index,
                        e
                    );
                    // The device's state machine gives the connection up (unmapping before it
                    // says Closing).
                    this.broken.store(true, Ordering::Release);
                    broken = true;
                }
                Err(_) => {}
            }
            if more {
                // Budget spent with work left: come back without re-enabling the port.
                this.event_kicked.store(true, Ordering::Release);
                requeue = true;
            } else {
                engine.env().chan.eoi(spurious);
            }
        }
        let resized = engine.check_resize().is_some();
        let events = st.events;
        this.publish(engine, events);
        drop(guard);
        if resized || broken {
            // The device announces the new size (once, whichever queue saw it first), or
            // gives a broken connection up.
            Dev::kick(this.owner.as_arc_borrow(), KickReason::Watch);
        }
        if requeue {
            let _ = workqueue::system_highpri().enqueue::<Arc<Queue>, 0>(this.clone());
        }
    }
}

// --- one device ---------------------------------------------------------------------------------

/// The backing device as the toolstack described it.
/// Linux's backend statistics (sysfs `statistics/`), summed over the device's queues, in the
/// order `vbd_sysfs.c` names them: oo_req, rd_req, wr_req, f_req, ds_req, rd_sect, wr_sect.
struct VbdStats([AtomicU64; VBD_STATS]);

const VBD_STATS: usize = 7;

impl VbdStats {
    fn new() -> Result<Arc<VbdStats>> {
        Ok(Arc::new(VbdStats([const { AtomicU64::new(0) }; VBD_STATS]), GFP_KERNEL)?)
    }

    /// The values a queue's engine stats contribute.
    fn of(s: &xen_blkif::BackStats) -> [u64; VBD_STATS] {
        [
            s.stalls,
            s.reads,
            s.writes,
            s.flushes,
            s.discards,
            s.read_sectors,
            s.write_sectors,
        ]
    }
}

/// The vbd's sysfs files (`physical_device`, `mode`, `statistics/`), removed on drop.
///
/// # Invariants
///
/// `handle` came from `xpvrs_vbd_sysfs_add` and is removed once, on drop; the counters it
/// reads are kept alive by `_stats` until then.
struct VbdSysfs {
    handle: NonNull<kernel::ffi::c_void>,
    _stats: Arc<VbdStats>,
}

// SAFETY: the handle is only passed back to C, from any thread, once.
unsafe impl Send for VbdSysfs {}

impl VbdSysfs {
    fn add(dev: &Device, stats: &Arc<VbdStats>, major: u32, minor: u32, writable: bool) -> Result<Self> {
        let vals = core::ptr::from_ref(&stats.0).cast::<u64>();
        // SAFETY: `dev` is live; `vals` points to `VBD_STATS` u64 counters (`AtomicU64` has
        // the layout of `u64`) that `_stats` keeps alive until the files are removed.
        let h = unsafe { xpvrs_vbd_sysfs_add(dev.as_ptr(), vals, major, minor, writable) };
        // NULL on failure (logged by the helper).
        let handle = NonNull::new(h).ok_or(ENOMEM)?;
        Ok(VbdSysfs {
            handle,
            _stats: stats.clone(),
        })
    }
}

impl Drop for VbdSysfs {
    fn drop(&mut self) {
        // SAFETY: the handle is live and removed once (type invariant); this waits for any
        // reader of the files to finish.
        unsafe { xpvrs_vbd_sysfs_remove(self.handle.as_ptr()) };
    }
}

struct Backing {
    bdev: Arc<BlockDevice>,
    /// The keys it was opened from.
    disk: BackendDisk,
}

struct Ctl {
    /// The XenBus state machine: every handshake decision is its. Not ready while no disk is
    /// open, which holds the frontend's rings until there is one.
    machine: Machine,
    st: CtlState,
}

/// What the handshake's actions work on.
struct CtlState {
    store: Option<KernelStore<Dev>>,
    offer: BackOffer,
    cache: usize,
    backing: Option<Backing>,
    /// The `physical-device` whose opening failed (and was reported): not retried.
    failed_physical: Option<(u32, u32)>,
    /// The frontend's request, read by `MapRing`.
    request: Option<FrontRequest>,
    /// The disk as described by `MapRing`, written by `PublishDeviceProperties`.
    disk: Option<DiskInfo>,
    queues: KVec<Arc<Queue>>,
    debug: KVec<DebugCounters<Queue>>,
    connections: u32,
}

/// One virtual block device.
#[pin_data]
struct Dev {
    handle: DeviceHandle,
    domid: u16,
    devid: u32,
    #[pin]
    ctl: Mutex<Ctl>,
    #[pin]
    ctl_work: Work<Dev, 0>,
    /// The teardown after `remove`, which must not wait for I/O in XenBus's thread.
    #[pin]
    teardown_work: Work<Dev, 1>,
    front_state: AtomicU32,
    /// Linux's statistics of the vbd, over all its queues and connections.
    vbd: Arc<VbdStats>,
    /// The size last written to `sectors` (online resize compares with it).
    announced: AtomicU64,
    /// Requests for memory (`reclaim_memory`) so far, and the end (ktime, ms) of the last
    /// one's squeeze window.
    squeezes: AtomicU32,
    squeeze_until_ms: AtomicI64,
    /// Its sysfs files, once the device is open; removed before `remove` returns.
    #[pin]
    sysfs: Mutex<Option<VbdSysfs>>,
}

impl_has_work! {
    impl HasWork<Self, 0> for Dev { self.ctl_work }
    impl HasWork<Self, 1> for Dev { self.teardown_work }
}

/// Teardowns queued by `remove` and not finished: the module waits for them at unload.
static TEARDOWNS: AtomicU32 = AtomicU32::new(0);

impl WorkItem<1> for Dev {
    type Pointer = Arc<Dev>;

    /// The teardown `remove` queued: waits (bounded) for the device's I/O in a worker, not
    /// in the xenwatch thread that runs `remove`, so one slow disk stalls no other watch.
    fn run(this: Arc<Dev>) {
        teardown(&this);
        pr_info!("XENPVRS-BLKBACK removed {}\n", this.handle.nodename());
        drop(this);
        TEARDOWNS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Dropped after the driver's registration: waits until every teardown has finished, so none
/// runs after the module is gone. Each is bounded (`DRAIN_WAIT_MS` per queue).
struct TeardownDrain;

impl Drop for TeardownDrain {
    fn drop(&mut self) {
        while TEARDOWNS.load(Ordering::Acquire) != 0 {
            // SAFETY: module unload runs in process context and holds no lock of ours.
            unsafe { kernel::bindings::msleep(10) };
        }
    }
}

impl Kick for Dev {
    fn kick(this: ArcBorrow<'_, Self>, _reason: KickReason) {
        let this: Arc<Self> = this.into();
        let _ = workqueue::system().enqueue::<Arc<Dev>, 0>(this);
    }
}

impl WorkItem<0> for Dev {
    type Pointer = Arc<Dev>;

    /// Moves the handshake along after a watch or a frontend state change.
    fn run(this: Arc<Dev>) {
        let front = peer_state(&this.front_state);
        let mut guard = this.ctl.lock();
        let ctl = &mut *guard;
        if ctl.st.store.is_none() {
            // Torn down (`teardown` took the store before it cancelled this work): the device
            // is going away, nothing is left to do.
            return;
        }
        if ctl.st.backing.is_none() {
            match this.open_backing(&mut ctl.st) {
                Ok(false) => {}
                Ok(true) => this.drive(ctl, Input::Ready(true)),
                Err(e) => {
                    pr_err!(
                        "XENPVRS-BLKBACK {}: cannot use the backing device: {}\n",
                        this.handle.nodename(),
                        e
                    );
                    this.drive(ctl, Input::Event(Event::Failed));
                    this.report(&e, "opening the backing device");
                    return;
                }
            }
        }
        if ctl.st.queues.iter().any(|q| q.broken.load(Ordering::Acquire)) {
            this.drive(ctl, Input::Event(Event::Failed));
        }
        if ctl.machine.state() == XenbusState::Connected {
            if let Err(e) = this.announce_size(&mut ctl.st) {
                pr_warn!(
                    "XENPVRS-BLKBACK {}: cannot announce the new size: {}\n",
                    this.handle.nodename(),
                    e
                );
            }
        }
        if let Some(front) = front {
            this.drive(ctl, Input::Peer(front));
        }
    }
}

impl Dev {
    /// Feeds `input` to the state machine and performs what it decides. A connection given
    /// up releases the disk (reopened when the frontend tries again), so the machine is not
    /// ready until then.
    fn drive(self: &Arc<Self>, ctl: &mut Ctl, input: Input<'_>) {
        let Ctl { machine, st } = ctl;
        let mut glue = Glue {
            dev: self,
            st,
            released: false,
        };
        machine.drive(input, &mut glue);
        if glue.released {
            machine.set_ready(false);
        }
    }

    /// Reports a failure to the toolstack (`error/...` in XenStore), as Linux's blkback does;
    /// the state machine has already said the next state.
    fn report(&self, e: &HandshakeError, doing: &str) {
        match CString::try_from_fmt(fmt!("{doing}: {e}")) {
            Ok(msg) => self.handle.error(e.errno(), &msg),
            Err(_) => self
                .handle
                .error(e.errno(), c_str!("xenpvrs-blkback: setup failed")),
        }
    }
}

/// Performs the state machine's actions on one device.
struct Glue<'a> {
    dev: &'a Arc<Dev>,
    st: &'a mut CtlState,
    /// A failed connection released the disk.
    released: bool,
}

impl Perform for Glue<'_> {
    type Error = HandshakeError;

    fn perform(&mut self, action: Action) -> Result<(), HandshakeError> {
        let dev = self.dev;
        match action {
            Action::PublishFeatures => dev.publish_offer(self.st),
            Action::MapRing => dev.map_rings(self.st),
            Action::PublishDeviceProperties => dev.publish_disk(self.st),
            Action::Connect => dev.connect(self.st),
            Action::Disconnect => {
                dev.disconnect(self.st);
                Ok(())
            }
            Action::SwitchState(state) => Ok(dev.handle.switch_state(state)?),
            Action::ReportInvalidPeerState => {
                pr_warn!(
                    "XENPVRS-BLKBACK {}: the frontend's state is not a XenBus state\n",
                    dev.handle.nodename()
                );
                Ok(())
            }
            // Frontend actions, and vscsiif's reconfiguration: nothing to do for a disk.
            Action::ReadPeerFeatures
            | Action::PublishRingRefs
            | Action::ReadDeviceProperties
            | Action::Quiesce
            | Action::Reconfigure => Ok(()),
        }
    }

    fn failed(&mut self, action: Action, e: HandshakeError, gave_up: bool) {
        let dev = self.dev;
        pr_err!(
            "XENPVRS-BLKBACK {}: handshake failed ({}) in {:?}\n",
            dev.handle.nodename(),
            e,
            action
        );
        if gave_up {
            // A failed setup holds nothing: the block device (a loop device the hotplug
            // script made) is released, and reopened if the frontend tries again.
            drop(dev.sysfs.lock().take());
            self.st.backing = None;
            self.released = true;
            dev.report(&e, "connecting");
        }
    }
}

impl Dev {
    /// Online resize: if the device's size differs from what the frontend was told, writes
    /// the new `sectors` and the Connected state again in one transaction, as Linux's blkback
    /// does; the frontend re-reads the size.
    fn announce_size(&self, st: &mut CtlState) -> Result<(), HandshakeError> {
        let Some(backing) = st.backing.as_ref() else {
            return Ok(());
        };
        let now = backing.bdev.sectors();
        let before = self.announced.load(Ordering::Acquire);
        if now == before {
            return Ok(());
        }
        let me = self.handle.nodename_path()?;
        let store = st.store.as_mut().ok_or(EINVAL)?;
        with_transaction(store, 16, |s, tx| -> Result<(), FeatureError> {
            announce_resize(&mut StoreDir::new(s, me.as_path()?, tx), now)
        })?;
        self.announced.store(now, Ordering::Release);
        pr_info!(
            "XENPVRS-BLKBACK {}: resized from {} to {} sectors\n",
            self.handle.nodename(),
            before,
            now
        );
        Ok(())
    }

    /// Opens the block device once the hotplug script has named it; `Ok(true)` if it did.
    #[inline(never)]
    fn open_backing(&self, st: &mut CtlState) -> Result<bool, HandshakeError> {
        let store = st.store.as_mut().ok_or(EINVAL)?;
        let me = self.handle.nodename_path()?;
        let Some(disk) = BackendDisk::read(&mut StoreDir::new(store, me.as_path()?, TxId::NONE))?
        else {
            return Ok(false);
        };
        let (major, minor) = (disk.major, disk.minor);
        if st.failed_physical == Some((major, minor)) {
            // Reported already; tried again only for another device.
            return Ok(false);
        }
        st.failed_physical = Some((major, minor));
        let bdev = BlockDevice::open(major, minor, disk.writable)?;
        let bdev = Arc::new(bdev, GFP_KERNEL)?;
        pr_info!(
            "XENPVRS-BLKBACK {}: physical-device {:x}:{:x} mode {} sectors {}\n",
            self.handle.nodename(),
            major,
            minor,
            if disk.writable { "w" } else { "r" },
            bdev.sectors()
        );
        st.failed_physical = None;
        st.backing = Some(Backing { bdev, disk });
        // Linux's sysfs files of the vbd, for xentop and scripts; a failure costs them only.
        let files = VbdSysfs::add(&self.handle, &self.vbd, major, minor, disk.writable).ok();
        *self.sysfs.lock() = files;
        Ok(true)
    }

    /// `PublishFeatures`: writes the offer.
    fn publish_offer(&self, st: &mut CtlState) -> Result<(), HandshakeError> {
        let store = st.store.as_mut().ok_or(EINVAL)?;
        let me = self.handle.nodename_path()?;
        st.offer
            .write(&mut StoreDir::new(store, me.as_path()?, TxId::NONE))?;
        Ok(())
    }

    /// `MapRing`: reads the frontend's request and rings, maps them and starts the engines.
    #[inline(never)]
    fn map_rings(self: &Arc<Self>, st: &mut CtlState) -> Result<(), HandshakeError> {
        let backing = st.backing.as_ref().ok_or(EINVAL)?;
        let bdev = backing.bdev.clone();
        let store = st.store.as_mut().ok_or(EINVAL)?;
        let other = self.handle.otherend_path()?;
        let req = FrontRequest::read(
            &mut StoreDir::new(store, other.as_path()?, TxId::NONE),
            &st.offer,
        )?;
        let abi = match req.protocol {
            Protocol::Native => Abi::X86_64,
            Protocol::X86_32 => Abi::X86_32,
        };
        // What the frontend will be told, so the engine serves exactly that.
        let disk = describe(&bdev, &backing.disk, req.persistent);
        let config = BackConfig {
            flush: disk.flush_cache,
            barrier: disk.barrier,
            discard: disk.discard.is_some(),
            secure_discard: disk.discard.is_some_and(|d| d.secure),
            max_indirect_segments: INDIRECT_SEGS,
            persistent: req.persistent,
            budget: 64,
            max_inflight_segments: INFLIGHT_SEGS,
            cache_key: random_key(),
            ..BackConfig::default()
        };
        st.request = Some(req);
        // `PublishDeviceProperties` writes this same description.
        st.disk = Some(disk);
        for q in 0..req.num_queues {
            let ring = read_queue(
                &mut StoreDir::new(store, other.as_path()?, TxId::NONE),
                &req,
                q,
            )?;
            let queue = Queue::new(q, self.clone())?;
            // Kept first: a failed setup is torn down with the others by `Disconnect`.
            st.queues.push(queue.clone(), GFP_KERNEL)?;
            queue.setup(&ring, abi, &bdev, config, st.cache)?;
        }
        Ok(())
    }

    /// `PublishDeviceProperties`: describes the disk to the frontend.
    fn publish_disk(&self, st: &mut CtlState) -> Result<(), HandshakeError> {
        let disk = st.disk.ok_or(EINVAL)?;
        let me = self.handle.nodename_path()?;
        let store = st.store.as_mut().ok_or(EINVAL)?;
        with_transaction(store, 16, |s, tx| -> Result<(), FeatureError> {
            disk.write(&mut StoreDir::new(s, me.as_path()?, tx))
        })?;
        self.announced.store(disk.sectors, Ordering::Release);
        Ok(())
    }

    /// `Connect`: the engines serve; counters go to debugfs.
    fn connect(&self, st: &mut CtlState) -> Result<(), HandshakeError> {
        let req = st.request.ok_or(EINVAL)?;
        let disk = st.disk.ok_or(EINVAL)?;
        st.connections = st.connections.wrapping_add(1);
        st.debug = DebugCounters::for_queues(
            st.queues.iter(),
            &COUNTER_NAMES,
            |q| &q.counters,
            |q| {
                CString::try_from_fmt(fmt!(
                    "xenpvrs-blkback-{}-{}-q{}",
                    self.domid,
                    self.devid,
                    q.index
                ))
            },
        )?;
        pr_info!(
            "XENPVRS-BLKBACK {}: using {} queues, protocol {}, {}ring pages {}, indirect segments {}, sectors {}, sector-size {}, mode {}, flush {}, discard {}, secure-discard {}\n",
            self.handle.nodename(),
            req.num_queues,
            req.protocol.name(),
            if req.persistent { "persistent grants, " } else { "" },
            req.nr_ring_pages(),
            INDIRECT_SEGS,
            disk.sectors,
            disk.sector_size,
            if disk.read_only() { "r" } else { "w" },
            u8::from(disk.flush_cache),
            u8::from(disk.discard.is_some()),
            u8::from(disk.discard.is_some_and(|d| d.secure))
        );
        Ok(())
    }

    /// `Disconnect`: stops every queue (waiting for their I/O) and drops them. Idempotent.
    fn disconnect(&self, st: &mut CtlState) {
        st.debug = KVec::new();
        st.request = None;
        st.disk = None;
        let queues = core::mem::take(&mut st.queues);
        for q in queues.iter() {
            if q.shutdown().is_some() {
                pr_info!(
                    "XENPVRS-BLKBACK {} q{}: disconnected {}\n",
                    self.handle.nodename(),
                    q.index,
                    CounterLine(&q.counters)
                );
            }
            cancel_sync(&q.work);
        }
    }
}

struct Driver;

impl bus::Driver for Driver {
    type Data = Dev;
    const SIDE: Side = Side::Backend;
    const TYPE: &'static kernel::str::CStr = c_str!("vbd");

    fn probe(dev: &Device) -> Result<Arc<Dev>> {
        let (offer, cache) = offer();
        // backend/vbd/<domid>/<devid>
        let node = dev.nodename().to_str().map_err(|_| EINVAL)?;
        let mut parts = node.rsplit('/');
        let devid = parts.next().and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        let domid = parts.next().and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        let vbd = VbdStats::new()?;
        let this = Arc::pin_init(
            pin_init!(Dev {
                handle: dev.handle(),
                domid,
                devid,
                ctl <- new_mutex!(Ctl {
                    machine: Machine::new(Role::Backend),
                    st: CtlState {
                        store: None,
                        offer,
                        cache,
                        backing: None,
                        failed_physical: None,
                        request: None,
                        disk: None,
                        queues: KVec::new(),
                        debug: KVec::new(),
                        connections: 0,
                    },
                }),
                ctl_work <- new_work!("Dev::ctl_work"),
                teardown_work <- new_work!("Dev::teardown_work"),
                vbd,
                announced: AtomicU64::new(0),
                squeezes: AtomicU32::new(0),
                squeeze_until_ms: AtomicI64::new(0),
                sysfs <- new_mutex!(None),
                front_state: AtomicU32::new(bus::PEER_NOT_SEEN),
            }),
            GFP_KERNEL,
        )?;
        let result = (|| -> Result<(), HandshakeError> {
            let mut guard = this.ctl.lock();
            let ctl = &mut *guard;
            let store = ctl.st.store.insert(KernelStore::new(this.clone()));
            // The hotplug script writes physical-device after we exist: watch for it.
            let mut watched = this.handle.nodename_path()?;
            watched.join("physical-device")?;
            store.watch(watched.as_path()?)?;
            // No disk yet: the frontend's rings wait for it.
            ctl.machine.set_ready(false);
            let Ctl { machine, st } = ctl;
            let mut glue = Glue {
                dev: &this,
                st,
                released: false,
            };
            if machine.drive(Input::Event(Event::Start), &mut glue) {
                Ok(())
            } else {
                Err(HandshakeError::Bad("cannot publish the offer"))
            }
        })();
        if let Err(e) = result {
            pr_err!(
                "XENPVRS-BLKBACK {}: probe failed: {}\n",
                dev.nodename(),
                e
            );
            teardown(&this);
            return Err(EIO);
        }
        pr_info!(
            "XENPVRS-BLKBACK probe {} frontend-id={}\n",
            dev.nodename(),
            dev.otherend_id().raw()
        );
        Ok(this)
    }

    fn otherend_changed(data: ArcBorrow<'_, Dev>, _dev: &Device, state: XenbusState) {
        data.front_state.store(u32::from(state), Ordering::Release);
        Dev::kick(data, KickReason::Watch);
    }

    fn reclaim_memory(data: ArcBorrow<'_, Dev>, _dev: &Device) {
        // Memory reclaim is running: no locks, no allocation. The queues free their idle
        // pool pages at their next tick.
        // SAFETY: reads a module parameter.
        let ms = unsafe { xpvrs_blkback_buffer_squeeze_duration_ms() };
        let until = Ktime::ktime_get().to_ms().saturating_add(i64::from(ms));
        data.squeeze_until_ms.store(until, Ordering::Release);
        data.squeezes.fetch_add(1, Ordering::AcqRel);
    }

    fn remove(this: Arc<Dev>, _dev: &Device) {
        // The sysfs files go now, while the device is still registered.
        drop(this.sysfs.lock().take());
        // Called from xenwatch when the toolstack deletes the device: the teardown waits for
        // the device's I/O, so it runs in a worker (a long-running one) instead.
        TEARDOWNS.fetch_add(1, Ordering::AcqRel);
        if workqueue::system_long()
            .enqueue::<Arc<Dev>, 1>(this.clone())
            .is_err()
        {
            // Already queued (cannot happen: remove runs once); tear down here rather than
            // not at all.
            TEARDOWNS.fetch_sub(1, Ordering::AcqRel);
            teardown(&this);
        }
    }
}

/// Stops the queues (waiting for their I/O), unregisters the watch and closes the block
/// device; nothing refers to the device afterwards.
fn teardown(this: &Arc<Dev>) {
    drop(this.sysfs.lock().take());
    let (store, backing) = {
        let mut guard = this.ctl.lock();
        let ctl = &mut *guard;
        this.drive(ctl, Input::Event(Event::Removed));
        let ctl = &mut ctl.st;
        if let Some(b) = ctl.backing.as_ref() {
            pr_info!(
                "XENPVRS-BLKBACK {}: releasing {:x}:{:x} after {} connections\n",
                this.handle.nodename(),
                b.disk.major,
                b.disk.minor,
                ctl.connections
            );
        }
        (ctl.store.take(), ctl.backing.take())
    };
    drop(store);
    cancel_sync(&this.ctl_work);
    drop(backing);
}

/// Fields drop in order: the registration first (removing every device), then the wait for
/// their teardowns, then the report.
struct BlkBackModule {
    _reg: Pin<KBox<bus::Registration<Driver>>>,
    _drain: TeardownDrain,
    _report: stats::UnloadReport,
}

impl kernel::Module for BlkBackModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if !xen_kernel::xen_domain() {
            return Err(ENODEV);
        }
        let reg = KBox::pin_init(
            bus::Registration::<Driver>::new(c_str!("xenpvrs-blkback")),
            GFP_KERNEL,
        )?;
        pr_info!("XENPVRS-BLKBACK loaded\n");
        Ok(BlkBackModule {
            _reg: reg,
            _drain: TeardownDrain,
            _report: stats::UnloadReport("XENPVRS-BLKBACK"),
        })
    }
}

/// A fresh secret for the persistent-grant cache's hash, one per connection.
fn random_key() -> [u64; 2] {
    let mut key = [0u64; 2];
    // SAFETY: `key` is 16 writable bytes; get_random_bytes may be called from any context.
    unsafe { kernel::bindings::get_random_bytes(key.as_mut_ptr().cast(), core::mem::size_of_val(&key)) };
    key
}
