// SPDX-License-Identifier: GPL-2.0

//! `xenpvrs_balloon`: the guest's memory balloon, xen-balloon's policy engine driven by the
//! toolstack's `memory/target` and moving pages with the kernel's reservation helpers.
//!
//! One [`Shared`] object per module: a mutex around the engine, the staging area of one
//! batch ([`Mem`], which implements the engine's `KernelMemory` and `Reservation`) and the
//! XenStore handle whose watch on `memory/target` kicks the worker. The worker (a delayed work
//! in `balloon_helpers.c`) drains the watch, feeds the engine the new target and runs one
//! [`Balloon::poll`], then queues itself again as the engine's [`Next`] says. Sysfs
//! (`/sys/devices/system/xen_memory/xen_memory0`, Linux's names plus `floor_kb`, `ceiling_kb`
//! and `stop_reason`) reads the engine's counters and sets its tunables under the same mutex.
//!
//! # The frames between the boot size and `maxmem`
//!
//! A PV guest's memory map reaches `maxmem`; the frames above its boot size are unpopulated
//! and the kernel's built-in balloon core holds them on its list from boot. At load the
//! module claims them with `xen_alloc_ballooned_pages`, only as many as the core's own count
//! (`balloon_stats.balloon_low`) says it holds, so the core hands out listed frames and never
//! balloons memory out for us. Pages the core lends for grant mappings are off its list, so
//! they cannot be among ours. At unload the module populates frames until the guest is back
//! to its size at load (at least), frees those pages to the kernel, and hands every frame it
//! still holds back to the core, unpopulated, as it found them.

use core::ffi::c_void;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow, Mutex};
use xen_balloon::{
    parse_kib_line, Balloon, Config, Event, Init, KernelMemory, Kib, MemoryUse, Next, Report,
    Reservation, SelfBalloon, StopReason, BATCH,
};
use xen_core::hypercall::HypercallError;
use xen_core::xs::{Error as XsError, Path, TxId, WatchId, XenStore};
use xen_kernel::store::KernelStore;
use xen_kernel::{Kick, KickReason};

module! {
    type: BalloonModule,
    name: "xenpvrs_balloon",
    author: "xen-pv-rs",
    description: "xen-pv-rs: Xen memory balloon",
    license: "GPL",
}

/// Opaque: a kernel `struct page`, only ever handled by pointer and passed back to C.
#[repr(C)]
struct Page {
    _opaque: [u8; 0],
}

extern "C" {
    fn xpvrs_balloon_param_scrub_pages() -> bool;
    fn xpvrs_balloon_param_selfballooning() -> bool;

    fn xpvrs_balloon_claim(max: u64) -> u64;
    fn xpvrs_balloon_unclaim_all() -> u64;
    fn xpvrs_balloon_listed_pages() -> u64;
    fn xpvrs_balloon_take(pages: *mut *mut Page, n: u32, scrub: bool) -> u32;
    fn xpvrs_balloon_decrease(pages: *mut *mut Page, frames: *mut u64, n: u32) -> i64;
    fn xpvrs_balloon_increase(pages: *mut *mut Page, frames: *mut u64, n: u32) -> i64;
    fn xpvrs_balloon_free(pages: *mut *mut Page, n: u32);

    fn xpvrs_balloon_available_pages() -> u64;
    fn xpvrs_balloon_total_ram_pages() -> u64;
    fn xpvrs_balloon_reserve_pages() -> u64;
    fn xpvrs_balloon_committed_pages() -> u64;
    fn xpvrs_balloon_memory_use(use_: *mut MemUse);
    fn xpvrs_balloon_max_pages() -> u64;
    fn xpvrs_balloon_current_reservation() -> i64;
    fn xpvrs_balloon_now_ms() -> u64;
    fn xpvrs_balloon_pv() -> bool;

    fn xpvrs_balloon_work_init(ctx: *const c_void);
    fn xpvrs_balloon_kick();
    fn xpvrs_balloon_schedule(ms: u32);
    fn xpvrs_balloon_work_stop();

    fn xpvrs_balloon_sysfs_add(ctx: *const c_void) -> i32;
    fn xpvrs_balloon_sysfs_remove();
}

/// `memory/target`, relative to the guest's home in XenStore.
const TARGET: &str = "memory/target";
/// `memory/static-max`, the ceiling.
const STATIC_MAX: &str = "memory/static-max";
/// What XAPI-style toolstacks look for; Linux never writes it.
const FEATURE: &str = "control/feature-balloon";
/// Bytes read of a size key: more than the engine accepts, so a long value reaches it whole.
const VALUE_CAP: usize = 32;
/// The size of the buffer sysfs hands a `show`.
const SYSFS_BUF: usize = 4096;

fn now_ms() -> u64 {
    // SAFETY: reads jiffies; no preconditions.
    unsafe { xpvrs_balloon_now_ms() }
}

/// Moves the worker's next run to now.
fn kick() {
    // SAFETY: the delayed work is static in the helper and initialised at compile time.
    unsafe { xpvrs_balloon_kick() };
}

/// One log line per engine report; failures and refusals are warnings.
fn log(report: Option<Report>) {
    let Some(r) = report else { return };
    match r.event {
        Event::Stopped { .. } | Event::TargetClamped { .. } | Event::TargetBelowFloor { .. } => {
            pr_info!("XENPVRS-BALLOON {}\n", r)
        }
        _ => pr_warn!("XENPVRS-BALLOON {}\n", r),
    }
}

/// The helper's `struct xpvrs_balloon_use`: the kernel's counters for the usage floor, pages.
#[repr(C)]
#[derive(Default)]
struct MemUse {
    free: u64,
    file: u64,
    anon: u64,
    kernel_reclaimable: u64,
    swap_free: u64,
    min_wmark: u64,
    low_wmark: u64,
}

// --- the staging area ------------------------------------------------------------------------

/// One batch's pages: the engine's `KernelMemory` and `Reservation` over the helper's calls.
///
/// # Invariants
///
/// `pages` and `frames` hold [`BATCH`] entries each; `pages[..staged]` are pages this module
/// took from the allocator or populated, not yet given to Xen nor freed.
struct Mem {
    pages: KVec<*mut Page>,
    frames: KVec<u64>,
    staged: usize,
    scrub: bool,
}

// SAFETY: the staged pages belong to this object alone and are only handed to the helper
// from whichever thread holds the mutex around it.
unsafe impl Send for Mem {}

impl Mem {
    fn new(scrub: bool) -> Result<Self> {
        let mut pages = KVec::with_capacity(BATCH, GFP_KERNEL)?;
        let mut frames = KVec::with_capacity(BATCH, GFP_KERNEL)?;
        for _ in 0..BATCH {
            pages.push(core::ptr::null_mut(), GFP_KERNEL)?;
            frames.push(0, GFP_KERNEL)?;
        }
        // INVARIANT: BATCH entries each, nothing staged.
        Ok(Mem {
            pages,
            frames,
            staged: 0,
            scrub,
        })
    }

    /// Room after the staged pages.
    fn room(&self) -> usize {
        BATCH.saturating_sub(self.staged)
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn xen_error(rc: i64) -> HypercallError {
    HypercallError::Errno(i32::try_from(rc.saturating_neg()).unwrap_or(i32::MAX))
}

impl KernelMemory for Mem {
    fn take_pages(&mut self, n: usize) -> usize {
        let n = n.min(self.room());
        let Some(dst) = self.pages.get_mut(self.staged..) else {
            return 0;
        };
        // SAFETY: `dst` has room for `n` page pointers (n <= room); the helper writes at most
        // `n` and returns how many.
        let k = unsafe { xpvrs_balloon_take(dst.as_mut_ptr(), to_u32(n), self.scrub) };
        let k = (k as usize).min(n);
        self.staged += k;
        k
    }

    fn free_pages(&mut self, n: usize) {
        let n = n.min(self.staged);
        let from = self.staged - n;
        let Some(src) = self.pages.get_mut(from..self.staged) else {
            return;
        };
        // SAFETY: these `n` pages are staged (type invariant): mapped, ours, not listed.
        unsafe { xpvrs_balloon_free(src.as_mut_ptr(), to_u32(n)) };
        self.staged = from;
    }

    fn available_pages(&mut self) -> u64 {
        // SAFETY: reads the kernel's counters; no preconditions.
        unsafe { xpvrs_balloon_available_pages() }
    }

    fn total_ram_pages(&mut self) -> u64 {
        // SAFETY: as above.
        unsafe { xpvrs_balloon_total_ram_pages() }
    }

    fn reserve_pages(&mut self) -> u64 {
        // SAFETY: as above.
        unsafe { xpvrs_balloon_reserve_pages() }
    }

    fn committed_pages(&mut self) -> u64 {
        // SAFETY: as above.
        unsafe { xpvrs_balloon_committed_pages() }
    }

    fn memory_use(&mut self) -> MemoryUse {
        let mut u = MemUse::default();
        // SAFETY: `u` is a valid, writable `struct xpvrs_balloon_use` (same layout, repr(C));
        // the helper only reads the kernel's counters and writes its fields.
        unsafe { xpvrs_balloon_memory_use(&mut u) };
        MemoryUse {
            free_pages: u.free,
            file_pages: u.file,
            anon_pages: u.anon,
            kernel_reclaimable_pages: u.kernel_reclaimable,
            swap_free_pages: u.swap_free,
            min_wmark_pages: u.min_wmark,
            low_wmark_pages: u.low_wmark,
        }
    }
}

impl Reservation for Mem {
    fn decrease(&mut self, n: usize) -> Result<usize, HypercallError> {
        let n = n.min(self.staged);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: `pages[..n]` are staged pages (type invariant) and `frames` has room for
        // `n`. The helper gives the released prefix to Xen (they join the balloon list) and
        // moves the others, mapped again, to the front.
        let rc = unsafe {
            xpvrs_balloon_decrease(self.pages.as_mut_ptr(), self.frames.as_mut_ptr(), to_u32(n))
        };
        if rc < 0 {
            return Err(xen_error(rc));
        }
        let released = usize::try_from(rc).unwrap_or(0).min(n);
        // INVARIANT: the helper shifted the pages it kept to the front.
        self.staged -= released;
        Ok(released)
    }

    fn increase(&mut self, n: usize) -> Result<usize, HypercallError> {
        let n = n.min(self.room());
        let at = self.staged;
        let (Some(pages), Some(frames)) = (self.pages.get_mut(at..), self.frames.get_mut(at..))
        else {
            return Ok(0);
        };
        // SAFETY: both slices have room for `n` entries; the helper populates up to `n`
        // frames of the balloon list and writes their (mapped) pages to `pages`.
        let rc =
            unsafe { xpvrs_balloon_increase(pages.as_mut_ptr(), frames.as_mut_ptr(), to_u32(n)) };
        if rc < 0 {
            return Err(xen_error(rc));
        }
        let k = usize::try_from(rc).unwrap_or(0).min(n);
        // INVARIANT: the helper staged `k` populated pages after the others.
        self.staged += k;
        Ok(k)
    }
}

// --- the module's object ---------------------------------------------------------------------

/// What the `memory/target` watch kicks: the worker.
struct Kicker;

impl Kick for Kicker {
    fn kick(_this: ArcBorrow<'_, Self>, _reason: KickReason) {
        kick();
    }
}

/// Everything behind the mutex.
struct Inner {
    engine: Balloon,
    mem: Mem,
    store: KernelStore<Kicker>,
    watch: Option<WatchId>,
}

#[pin_data]
struct Shared {
    #[pin]
    inner: Mutex<Inner>,
    /// Set at unload: the worker no longer queues itself.
    stopping: AtomicBool,
}

/// Reads a size key into `buf`; `None` if it is missing or unreadable.
fn read_key<'a>(
    store: &mut KernelStore<Kicker>,
    key: &str,
    buf: &'a mut [u8; VALUE_CAP],
) -> Option<&'a [u8]> {
    let path = Path::new(key).ok()?;
    match store.read(TxId::NONE, path, buf) {
        Ok(len) => buf.get(..len),
        // Longer than the buffer: longer than any value the engine accepts. Hand it a value
        // of that length class so it is refused and reported as too long.
        Err(XsError::NoSpace) => {
            buf.fill(b'0');
            Some(&buf[..])
        }
        Err(_) => None,
    }
}

impl Shared {
    /// The worker: new target first, then one batch, then the next run.
    fn run(&self) {
        let next = {
            let mut guard = self.inner.lock();
            let Inner {
                engine,
                mem,
                store,
                watch,
            } = &mut *guard;
            let now = now_ms();
            if let Some(id) = *watch {
                let mut path = [0u8; 64];
                if let Ok(Some(_)) = store.poll_watch(id, &mut path) {
                    let mut buf = [0u8; VALUE_CAP];
                    if let Some(raw) = read_key(store, TARGET, &mut buf) {
                        log(engine.set_target(raw, now));
                    }
                }
            }
            let poll = engine.poll(mem, now);
            log(poll.report);
            poll.next
        };
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let ms = match next {
            Next::Now => 0,
            Next::After(ms) => u32::try_from(ms).unwrap_or(u32::MAX),
            Next::Idle => return,
        };
        // SAFETY: the delayed work is static in the helper; queueing it from its own run is
        // allowed (it is no longer pending).
        unsafe { xpvrs_balloon_schedule(ms) };
    }
}

/// The worker's entry from C.
///
/// # Safety
///
/// `ctx` is the pointer given to `xpvrs_balloon_work_init`: a live `Shared`, kept alive until
/// the work is stopped.
#[no_mangle]
unsafe extern "C" fn xpvrs_balloon_run(ctx: *mut c_void) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: the caller's contract: `ctx` is a live `Shared`.
    let shared = unsafe { &*ctx.cast::<Shared>() };
    shared.run();
}

// --- sysfs -----------------------------------------------------------------------------------

/// The attributes, in the order of the helper's enum.
#[derive(Clone, Copy)]
enum Attr {
    TargetKb,
    Target,
    ScheduleDelay,
    MaxScheduleDelay,
    RetryCount,
    MaxRetryCount,
    ScrubPages,
    FloorKb,
    CeilingKb,
    StopReason,
    CurrentKb,
    LowKb,
    HighKb,
}

impl Attr {
    const ALL: [Attr; 13] = [
        Attr::TargetKb,
        Attr::Target,
        Attr::ScheduleDelay,
        Attr::MaxScheduleDelay,
        Attr::RetryCount,
        Attr::MaxRetryCount,
        Attr::ScrubPages,
        Attr::FloorKb,
        Attr::CeilingKb,
        Attr::StopReason,
        Attr::CurrentKb,
        Attr::LowKb,
        Attr::HighKb,
    ];

    fn from_id(id: u32) -> Option<Attr> {
        Attr::ALL.get(usize::try_from(id).ok()?).copied()
    }
}

/// A `fmt::Write` into the sysfs buffer that fails instead of overrunning it.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.at.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.buf.get_mut(self.at..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}

fn kib(pages: u64) -> u64 {
    Kib::from_pages(pages).get()
}

impl Shared {
    fn show(&self, attr: Attr, out: &mut Cursor<'_>) -> core::fmt::Result {
        let mut g = self.inner.lock();
        if matches!(attr, Attr::FloorKb) {
            // The floor follows memory use: show it as of now.
            let Inner { engine, mem, .. } = &mut *g;
            engine.refresh_floor(mem);
        }
        let s = g.engine.stats();
        match attr {
            Attr::TargetKb => writeln!(out, "{}", kib(s.target_pages)),
            Attr::Target => writeln!(out, "{}", kib(s.target_pages).saturating_mul(1024)),
            Attr::ScheduleDelay => writeln!(out, "{}", s.backoff.schedule_delay),
            Attr::MaxScheduleDelay => writeln!(out, "{}", s.backoff.max_schedule_delay),
            Attr::RetryCount => writeln!(out, "{}", s.backoff.retry_count),
            Attr::MaxRetryCount => writeln!(out, "{}", s.backoff.max_retry_count),
            Attr::ScrubPages => writeln!(out, "{}", u8::from(g.engine.scrub_pages())),
            Attr::FloorKb => writeln!(out, "{}", kib(s.floor_pages)),
            Attr::CeilingKb => match s.ceiling_pages {
                Some(c) => writeln!(out, "{}", kib(c)),
                None => writeln!(out, "none"),
            },
            Attr::StopReason => writeln!(out, "{}", s.last_stop.as_str()),
            Attr::CurrentKb => writeln!(out, "{}", kib(s.current_pages)),
            Attr::LowKb => writeln!(out, "{}", kib(s.balloon_low)),
            Attr::HighKb => writeln!(out, "{}", kib(s.balloon_high)),
        }
    }

    /// A write to a writable attribute; `Err(EINVAL)` for a value that does not parse.
    fn store(&self, attr: Attr, raw: &[u8]) -> Result {
        let now = now_ms();
        let mut g = self.inner.lock();
        match attr {
            Attr::TargetKb => {
                let k = parse_kib_line(raw).map_err(|_| EINVAL)?;
                log(g.engine.set_target_kib(k, now));
            }
            Attr::Target => {
                let bytes = parse_bytes(raw).ok_or(EINVAL)?;
                log(g.engine.set_target_kib(Kib::new(bytes / 1024), now));
            }
            Attr::MaxScheduleDelay => g.engine.set_max_schedule_delay(parse_u32(raw)?),
            Attr::MaxRetryCount => g.engine.set_max_retry_count(parse_u32(raw)?),
            Attr::ScrubPages => {
                let on = parse_bool(raw)?;
                g.engine.set_scrub_pages(on);
                g.mem.scrub = on;
            }
            _ => return Err(EPERM),
        }
        drop(g);
        kick();
        Ok(())
    }
}

/// `raw` without the one trailing newline `echo` adds, as text.
fn line(raw: &[u8]) -> Result<&str> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    core::str::from_utf8(raw).map_err(|_| EINVAL)
}

fn parse_u32(raw: &[u8]) -> Result<u32> {
    line(raw)?.parse::<u32>().map_err(|_| EINVAL)
}

fn parse_bool(raw: &[u8]) -> Result<bool> {
    match line(raw)? {
        "1" | "y" | "Y" => Ok(true),
        "0" | "n" | "N" => Ok(false),
        _ => Err(EINVAL),
    }
}

/// Bytes as sysfs `target` takes them: decimal with an optional `K`, `M` or `G` suffix
/// (binary units, as Linux's `memparse`). `None` if it does not parse or overflows.
fn parse_bytes(raw: &[u8]) -> Option<u64> {
    let s = line(raw).ok()?;
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (s.get(..s.len() - 1)?, 10),
        b'm' | b'M' => (s.get(..s.len() - 1)?, 20),
        b'g' | b'G' => (s.get(..s.len() - 1)?, 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = digits.parse::<u64>().ok()?;
    v.checked_mul(1u64 << shift)
}

/// # Safety
///
/// `ctx` is the pointer given to `xpvrs_balloon_sysfs_add`, live until the device is removed;
/// `buf` is the page sysfs hands a `show`.
#[no_mangle]
unsafe extern "C" fn xpvrs_balloon_show(ctx: *mut c_void, id: u32, buf: *mut u8) -> isize {
    let Some(attr) = Attr::from_id(id) else {
        return EINVAL.to_errno() as isize;
    };
    // SAFETY: the caller's contract: `ctx` is a live `Shared`.
    let shared = unsafe { &*ctx.cast::<Shared>() };
    // SAFETY: sysfs hands `show` a buffer of one page, ours for the call.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, SYSFS_BUF) };
    let mut out = Cursor { buf, at: 0 };
    match shared.show(attr, &mut out) {
        Ok(()) => isize::try_from(out.at).unwrap_or(0),
        Err(_) => EINVAL.to_errno() as isize,
    }
}

/// # Safety
///
/// `ctx` is as for [`xpvrs_balloon_show`]; `buf` holds `len` bytes.
#[no_mangle]
unsafe extern "C" fn xpvrs_balloon_store(
    ctx: *mut c_void,
    id: u32,
    buf: *const u8,
    len: usize,
) -> isize {
    let Some(attr) = Attr::from_id(id) else {
        return EINVAL.to_errno() as isize;
    };
    // SAFETY: the caller's contract: `ctx` is a live `Shared`.
    let shared = unsafe { &*ctx.cast::<Shared>() };
    // SAFETY: sysfs hands `store` `len` readable bytes, valid for the call.
    let raw = unsafe { core::slice::from_raw_parts(buf, len) };
    match shared.store(attr, raw) {
        Ok(()) => isize::try_from(len).unwrap_or(isize::MAX),
        Err(e) => e.to_errno() as isize,
    }
}

// --- load and unload -------------------------------------------------------------------------

struct BalloonModule {
    shared: Arc<Shared>,
    /// Frames claimed from the built-in core at load.
    claimed: u64,
    /// Pages the domain held at load.
    current_at_load: u64,
}

impl kernel::Module for BalloonModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: reads globals set once at boot.
        if !xen_kernel::xen_domain() || !unsafe { xpvrs_balloon_pv() } {
            pr_info!("XENPVRS-BALLOON not a Xen PV domain: not loading\n");
            return Err(ENODEV);
        }
        // SAFETY: reads module parameters.
        let (scrub, self_balloon) = unsafe {
            (
                xpvrs_balloon_param_scrub_pages(),
                xpvrs_balloon_param_selfballooning(),
            )
        };
        let cfg = Config {
            scrub_pages: scrub,
            self_balloon: SelfBalloon {
                enabled: self_balloon,
                ..SelfBalloon::default()
            },
            ..Config::default()
        };
        let mut mem = Mem::new(scrub)?;
        let kicker = Arc::new(Kicker, GFP_KERNEL)?;
        let mut store = KernelStore::new(kicker);

        // SAFETY: process context at load; the helper's list is empty and only we use it.
        let claimed = unsafe { xpvrs_balloon_claim(u64::MAX) };
        // SAFETY: a memory_op on our own domain; no preconditions.
        let current = unsafe { xpvrs_balloon_current_reservation() };
        let Some(current) = u64::try_from(current).ok().filter(|&c| c > 0) else {
            pr_warn!("XENPVRS-BALLOON XENMEM_current_reservation failed ({current})\n");
            // SAFETY: gives back the frames just claimed; nothing else uses the list.
            unsafe { xpvrs_balloon_unclaim_all() };
            return Err(ENODEV);
        };
        let init = Init {
            current_pages: current,
            held_pages: claimed,
            // SAFETY: reads the kernel's figures; no preconditions.
            max_pages: unsafe { xpvrs_balloon_max_pages() },
            // SAFETY: as above.
            reserve_pages: unsafe { xpvrs_balloon_reserve_pages() },
        };
        let mut engine = Balloon::new(cfg, init);
        engine.refresh_floor(&mut mem);
        let now = now_ms();
        let mut buf = [0u8; VALUE_CAP];
        let static_max = read_key(&mut store, STATIC_MAX, &mut buf);
        log(engine.set_static_max(static_max, now));

        let shared = match Arc::pin_init(
            pin_init!(Shared {
                inner <- new_mutex!(Inner { engine, mem, store, watch: None }),
                stopping: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        ) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: as above.
                unsafe { xpvrs_balloon_unclaim_all() };
                return Err(e);
            }
        };
        let ctx: *const c_void = (&*shared as *const Shared).cast();
        // SAFETY: `ctx` stays valid until `drop` has stopped the work (the module holds the
        // Arc until then).
        unsafe { xpvrs_balloon_work_init(ctx) };
        // SAFETY: as above, until `drop` has removed the device.
        let err = unsafe { xpvrs_balloon_sysfs_add(ctx) };
        if err != 0 {
            if err == EEXIST.to_errno() {
                pr_warn!("XENPVRS-BALLOON a xen_memory subsystem exists already (Linux's xen-balloon?): not loading\n");
            } else {
                pr_warn!("XENPVRS-BALLOON cannot register xen_memory0: {err}\n");
            }
            // SAFETY: nothing was queued (no watch yet); the list is ours alone.
            unsafe {
                xpvrs_balloon_work_stop();
                xpvrs_balloon_unclaim_all();
            }
            return Err(if err == EEXIST.to_errno() {
                EBUSY
            } else {
                ENODEV
            });
        }
        let (floor, formula, ceiling) = {
            let mut g = shared.inner.lock();
            let Inner { store, watch, .. } = &mut *g;
            if let Ok(p) = Path::new(FEATURE) {
                // The toolstack must have made the node writable for the guest (XAPI does;
                // Xen 4.17's libxl does not, and the write fails with EACCES).
                if let Err(e) = store.write(TxId::NONE, p, b"1") {
                    pr_info!(
                        "XENPVRS-BALLOON cannot write {FEATURE} ({e:?}): the toolstack did not create it for the guest\n"
                    );
                }
            }
            // Registering fires the watch once: the first run reads the target.
            match Path::new(TARGET).map(|p| store.watch(p)) {
                Ok(Ok(id)) => *watch = Some(id),
                _ => pr_warn!(
                    "XENPVRS-BALLOON cannot watch {TARGET}; only sysfs moves the balloon\n"
                ),
            }
            (
                g.engine.floor(),
                g.engine.floor_formula(),
                g.engine.ceiling(),
            )
        };
        pr_info!(
            "XENPVRS-BALLOON loaded current_kb={} held_kb={} floor_kb={} floor_formula_kb={} ceiling_kb={} scrub_pages={} selfballooning={}\n",
            kib(current),
            kib(claimed),
            kib(floor),
            kib(formula),
            ceiling.map_or(0, kib),
            u8::from(scrub),
            u8::from(self_balloon)
        );
        kick();
        Ok(BalloonModule {
            shared,
            claimed,
            current_at_load: current,
        })
    }
}

impl Drop for BalloonModule {
    fn drop(&mut self) {
        // SAFETY: removes the device; sysfs waits for readers and writers in progress.
        unsafe { xpvrs_balloon_sysfs_remove() };
        {
            let mut g = self.shared.inner.lock();
            g.store.unwatch_all();
            g.watch = None;
        }
        self.shared.stopping.store(true, Ordering::Release);
        // SAFETY: no watch can kick any more; this waits for a running worker and keeps
        // the work from being queued again.
        unsafe { xpvrs_balloon_work_stop() };

        let mut g = self.shared.inner.lock();
        let Inner {
            engine, mem, store, ..
        } = &mut *g;
        // Back to the size at load (at least): populate, then free to the kernel.
        let mut current = engine.current();
        let mut populated = 0u64;
        let mut refused = None;
        while current < self.current_at_load {
            let want = usize::try_from(self.current_at_load - current)
                .unwrap_or(BATCH)
                .min(BATCH);
            match mem.increase(want) {
                Ok(0) => {
                    refused = Some(StopReason::XenRefused);
                    break;
                }
                Ok(k) => {
                    mem.free_pages(k);
                    current += k as u64;
                    populated += k as u64;
                }
                Err(_) => {
                    refused = Some(StopReason::XenRefused);
                    break;
                }
            }
        }
        // What XAPI's guest agent writes when the guest does not balloon.
        if let Ok(p) = Path::new(FEATURE) {
            let _ = store.write(TxId::NONE, p, b"0");
        }
        // SAFETY: the worker is stopped and sysfs gone: nothing else touches the list.
        let listed = unsafe { xpvrs_balloon_listed_pages() };
        // SAFETY: as above.
        let returned = unsafe { xpvrs_balloon_unclaim_all() };
        pr_info!(
            "XENPVRS-BALLOON unload populated_kb={} current_kb={} load_kb={} returned_kb={} claimed_kb={} given_kb={} taken_kb={} clean={}\n",
            kib(populated),
            kib(current),
            kib(self.current_at_load),
            kib(returned),
            kib(self.claimed),
            kib(engine.stats().pages_given),
            kib(engine.stats().pages_taken),
            u8::from(refused.is_none() && returned == listed && mem.staged == 0)
        );
    }
}
