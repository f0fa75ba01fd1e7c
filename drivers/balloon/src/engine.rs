//! The balloon engine: decides how many pages each batch moves, which way, and when to retry;
//! the glue moves the pages.
//!
//! # The glue's side: two traits and a staging area
//!
//! The glue implements [`KernelMemory`] and [`Reservation`] on one object that owns a
//! *staging area* of at most [`BATCH`] pages (fixed arrays of `struct page *` and frame
//! numbers). One batch is one of these call sequences, and the staging area is empty again
//! when every engine method returns:
//!
//! - down by `n`: [`KernelMemory::take_pages`]`(n)` stages `k <= n` pages taken from the
//!   kernel (scrubbed when [`Balloon::scrub_pages`] is set); if `k > 0`,
//!   [`Reservation::decrease`]`(k)` unmaps and gives staged pages to Xen, `r <= k` of them,
//!   which join the glue's balloon list; then, if `r < k`, [`KernelMemory::free_pages`]`(k -
//!   r)` returns the rest to the kernel with their mapping restored.
//! - up by `n`: [`Reservation::increase`]`(n)` populates `k <= n` pages of the glue's balloon
//!   list, maps them and stages them; then [`KernelMemory::free_pages`]`(k)` frees them to the
//!   kernel.
//!
//! # Pages the engine counts
//!
//! - `current`: pages the domain holds, Linux's `current_pages`. The module initialises it
//!   from `XENMEM_current_reservation` for `DOMID_SELF` (what Xen charges the domain), not
//!   from `totalram_pages`, which lacks the pages the kernel never manages.
//! - `held`: pages in *this* balloon: unpopulated frames the glue owns and may populate
//!   again. It starts with the frames between the boot size and `maxmem` that the glue claimed
//!   from the built-in core at load, and grows and shrinks with every batch. Pages the
//!   built-in core lends out for grant mappings (`xen_alloc_ballooned_pages`) never enter it:
//!   they are neither held nor counted in `current`, so the engine cannot hand them to Xen
//!   nor populate them.
//!
//! Going up is bounded by `current + held` (without memory hotplug, the balloon cannot grow
//! the guest past the frames it owns): beyond it the balloon stops with
//! [`StopReason::BalloonEmpty`].
//!
//! # Policy
//!
//! - Target: `memory/target` in KiB, parsed by [`crate::parse::parse_kib`]; a bad value is
//!   reported ([`Event::TargetRejected`]) and changes nothing, as if never written.
//! - Ceiling: `memory/static-max` (the glue falls back to `memory_static_max`, as Linux does).
//!   Until one parses, the engine moves nothing ([`State::Blocked`]). A higher target is
//!   clamped to it.
//! - Floor: [`crate::floor`], the larger of the formula (from the guest's size, at load) and
//!   the usage floor (what the guest holds that nothing can reclaim, plus headroom), the
//!   latter evaluated from [`KernelMemory::memory_use`] at every [`Balloon::poll`] so it
//!   follows memory use while the balloon goes down; a lower target stops at it
//!   ([`StopReason::FloorReached`]). If the guest is already below it, the balloon does not
//!   go down at all (and does not grow to reach it either). Once stopped at the floor, the
//!   balloon evaluates it again every [`FLOOR_RECHECK_MS`] and goes on down only when it has
//!   fallen at least [`floor_resume_margin`] below the balloon: the stop may have come on a
//!   transient peak of memory use (a burst of processes, reclaim in progress), which would
//!   otherwise strand the balloon above the floor until the next target, while the floor's
//!   swing at rest (the per-CPU free lists filling and draining) is not followed, so the balloon is not ratcheted
//!   into the headroom by its low samples. A rising floor is never followed up.
//! - Each decrease also takes at most the kernel's available pages (`MemAvailable`), and backs
//!   off when that cut the batch short below the kernel's reserve, as Linux's worker does.
//! - Steps: [`crate::step`]; one batch per [`Balloon::poll`].
//! - Back-off: [`crate::backoff`]. A failed batch (Xen refused or did part of a decrease,
//!   the kernel could not spare the pages, or populate gave nothing) waits; after
//!   `max_retry_count` failures the balloon gives up ([`State::Cancelled`]) until the target
//!   changes or an hour passes, as Linux's does. A new target cuts a back-off wait short.
//! - Flapping: a change of direction waits until the target has been unchanged for
//!   [`Config::settle_ms`], unless the balloon has not moved for that long. So however fast
//!   the target flaps, pages change direction at most once per settle interval, and the
//!   balloon ends at the last target. More than [`Config::flap_changes`] changes within
//!   [`Config::flap_window_ms`] are reported ([`Event::TargetFlapping`]).
//! - Self-ballooning ([`SelfBalloon`], off by default): see [`Balloon::poll`].
//! - Reports: log-worthy events come back as [`Report`]s, at most one per kind per
//!   [`Config::log_interval_ms`], with the count of those suppressed in between.

use core::fmt;

use xen_core::hypercall::HypercallError;

use crate::backoff::Backoff;
use crate::floor::{floor_pages, usage_floor_pages, MemoryUse};
use crate::parse::{parse_kib, Kib, TargetError};
use crate::step::{step, BATCH};

/// How long a balloon that gave up waits before trying the same target again: an hour, as
/// Linux's worker sleeps in `BP_ECANCELED`.
pub const CANCELLED_WAIT_MS: u64 = 3_600_000;

/// How often a balloon stopped at the floor, with the target below it, evaluates the floor
/// again.
pub const FLOOR_RECHECK_MS: u64 = 1_000;

/// How far the floor must have fallen below a balloon stopped on it before the balloon goes
/// on down, at least: 8 MiB. The floor swings at rest as the per-CPU free lists fill and
/// drain (their pages count as used): by up to 5 MiB in the balloon scenario's 100 MiB guest.
/// Following that swing down would leave the guest at rest with its headroom less what the
/// lists take back when they refill, so only a larger fall is followed: a peak of memory use
/// that has passed (12 MiB was seen once in CI: the balloon stopped at 109.3 MiB on a floor
/// that read 97.6 MiB at rest). The margin grows with the guest ([`floor_resume_margin`]),
/// as the kernel's limit on those lists does.
pub const FLOOR_RESUME_PAGES: u64 = 8 * crate::floor::PAGES_PER_MIB;

/// The margin [`FLOOR_RESUME_PAGES`] for a balloon of `current_pages`: a 64th of it, at least
/// the constant (8 MiB up to 512 MiB, 64 MiB at 4 GiB). The kernel caps the per-CPU lists,
/// all CPUs together, at an eighth of the zone; they hold far less at rest.
pub const fn floor_resume_margin(current_pages: u64) -> u64 {
    let m = current_pages / 64;
    if m > FLOOR_RESUME_PAGES {
        m
    } else {
        FLOOR_RESUME_PAGES
    }
}

/// The kernel side of a batch: pages taken from and freed to the page allocator, and the
/// kernel's memory figures. All counts are 4 KiB pages.
pub trait KernelMemory {
    /// Takes up to `n` (at most [`BATCH`]) pages from the page allocator without sleeping
    /// long or invoking the OOM killer (Linux's `GFP_BALLOON`), scrubs them if scrubbing is
    /// on, and stages them. Returns how many it staged: fewer when the kernel cannot spare
    /// them.
    fn take_pages(&mut self, n: usize) -> usize;

    /// Frees `n` staged pages to the kernel (their mapping valid again).
    fn free_pages(&mut self, n: usize);

    /// Pages the kernel could give without pressure (`si_mem_available()`, `MemAvailable`).
    fn available_pages(&mut self) -> u64;

    /// Pages the kernel manages (`totalram_pages()`, `MemTotal`).
    fn total_ram_pages(&mut self) -> u64;

    /// Pages the kernel keeps in reserve (`totalreserve_pages`).
    fn reserve_pages(&mut self) -> u64;

    /// Pages committed to processes (`vm_memory_committed()`, `Committed_AS`); read only by
    /// self-ballooning.
    fn committed_pages(&mut self) -> u64;

    /// The counters the usage floor reads ([`crate::floor::usage_floor_pages`]): free pages,
    /// LRU sizes, reclaimable kernel memory, free swap, watermarks. Read at every poll.
    fn memory_use(&mut self) -> MemoryUse;
}

/// The Xen side of a batch: the memory reservation, over the staging area.
pub trait Reservation {
    /// Removes `n` staged pages from the p2m and the kernel mapping and gives them back with
    /// `XENMEM_decrease_reservation`. `Ok(r)`: `r <= n` were released (they join the glue's
    /// balloon list); the other `n - r` stay staged. `Err`: none was released.
    fn decrease(&mut self, n: usize) -> Result<usize, HypercallError>;

    /// Takes up to `n` frames from the glue's balloon list and backs them with memory
    /// (`XENMEM_populate_physmap`), updating the p2m and the mapping. `Ok(k)`: `k <= n` were
    /// populated and are staged; the rest stay in the balloon list. `Err`: none was.
    fn increase(&mut self, n: usize) -> Result<usize, HypercallError>;
}

/// Why the balloon stopped where it is (sysfs: [`StopReason::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Nothing asked of the balloon yet.
    None,
    /// At the target.
    TargetReached,
    /// The target is below the floor: stopped at the floor.
    FloorReached,
    /// The target is above `static-max`: stopped at it.
    CeilingReached,
    /// Every frame this balloon owns is populated; growing further needs memory hotplug.
    BalloonEmpty,
    /// Xen refused or did only part of a batch.
    XenRefused,
    /// The kernel could not spare the pages.
    KernelRefused,
    /// `memory/static-max` is missing: no target is acted on.
    NoStaticMax,
    /// `memory/static-max` did not parse: no target is acted on.
    BadStaticMax,
}

impl StopReason {
    /// A stable short name, for sysfs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::TargetReached => "target-reached",
            Self::FloorReached => "floor-reached",
            Self::CeilingReached => "ceiling-reached",
            Self::BalloonEmpty => "balloon-empty",
            Self::XenRefused => "xen-refused",
            Self::KernelRefused => "kernel-refused",
            Self::NoStaticMax => "no-static-max",
            Self::BadStaticMax => "bad-static-max",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// At the effective target, or no target yet.
    Idle,
    /// Moving: the next batch can run now.
    Moving,
    /// Waiting for a flapping target to settle before changing direction.
    Settling,
    /// Waiting out a back-off after a failed batch.
    Retrying,
    /// Gave up after `max_retry_count` failures, until the target changes (or an hour).
    Cancelled,
    /// No valid `static-max`: no target is acted on.
    Blocked,
}

impl State {
    /// A stable short name, for sysfs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Moving => "moving",
            Self::Settling => "settling",
            Self::Retrying => "retrying",
            Self::Cancelled => "cancelled",
            Self::Blocked => "blocked",
        }
    }
}

/// A log-worthy event, for one line of the kernel log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A `memory/target` value was refused; the target is unchanged.
    TargetRejected(TargetError),
    /// `memory/static-max` is missing: targets are not acted on.
    StaticMaxMissing,
    /// `memory/static-max` was refused: targets are not acted on.
    StaticMaxRejected(TargetError),
    /// The target is above the ceiling and will stop there.
    TargetClamped {
        /// The target, pages.
        requested: u64,
        /// The ceiling, pages.
        ceiling: u64,
    },
    /// The target is below the floor and will stop there.
    TargetBelowFloor {
        /// The target, pages.
        requested: u64,
        /// The floor as last evaluated, pages (the descent re-evaluates it).
        floor: u64,
    },
    /// The target changed more than [`Config::flap_changes`] times within
    /// [`Config::flap_window_ms`].
    TargetFlapping {
        /// Changes in the current window.
        changes: u32,
    },
    /// A batch failed; the next try waits.
    Retry {
        /// Who said no.
        reason: StopReason,
        /// Xen's error, if the hypercall failed outright.
        error: Option<HypercallError>,
        /// Seconds until the retry.
        delay_s: u32,
        /// The try that comes next (Linux's `retry_count`).
        retry_count: u32,
    },
    /// Too many failures in a row: the balloon gave up until the target changes.
    GaveUp {
        /// Who said no last.
        reason: StopReason,
        /// Xen's error, if the hypercall failed outright.
        error: Option<HypercallError>,
    },
    /// The balloon stopped.
    Stopped {
        /// Why.
        reason: StopReason,
        /// Pages held now.
        current: u64,
        /// The target asked for, pages.
        target: u64,
    },
}

impl Event {
    fn kind(&self) -> usize {
        match self {
            Self::TargetRejected(_) => 0,
            Self::StaticMaxMissing => 1,
            Self::StaticMaxRejected(_) => 8,
            Self::TargetClamped { .. } => 2,
            Self::TargetBelowFloor { .. } => 3,
            Self::TargetFlapping { .. } => 4,
            Self::Retry { .. } => 5,
            Self::GaveUp { .. } => 6,
            Self::Stopped { .. } => 7,
        }
    }
}

const KINDS: usize = 9;

fn mib(pages: u64) -> u64 {
    pages / crate::floor::PAGES_PER_MIB
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TargetRejected(e) => write!(f, "memory/target refused ({e}); target unchanged"),
            Self::StaticMaxMissing => {
                f.write_str("memory/static-max missing; memory targets will be ignored")
            }
            Self::StaticMaxRejected(e) => write!(
                f,
                "memory/static-max refused ({e}); memory targets will be ignored"
            ),
            Self::TargetClamped { requested, ceiling } => write!(
                f,
                "target {} MiB above static-max: stopping at {} MiB",
                mib(requested),
                mib(ceiling)
            ),
            Self::TargetBelowFloor { requested, floor } => write!(
                f,
                "target {} MiB below the floor ({} MiB now, re-evaluated on the way down): stopping at the floor",
                mib(requested),
                mib(floor)
            ),
            Self::TargetFlapping { changes } => write!(
                f,
                "memory/target changed {changes} times in a short while; direction changes wait for it to settle"
            ),
            Self::Retry { reason, error, delay_s, retry_count } => {
                write!(f, "batch failed ({reason}")?;
                if let Some(e) = error {
                    write!(f, ": {e}")?;
                }
                write!(f, "); retry {retry_count} in {delay_s} s")
            }
            Self::GaveUp { reason, error } => {
                write!(f, "giving up after repeated failures ({reason}")?;
                if let Some(e) = error {
                    write!(f, ": {e}")?;
                }
                f.write_str(") until the target changes")
            }
            Self::Stopped { reason, current, target } => write!(
                f,
                "stopped at {} MiB, target {} MiB ({reason})",
                mib(current),
                mib(target)
            ),
        }
    }
}

/// An [`Event`] let through the rate limit, with how many of its kind were suppressed since
/// the last one printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The event.
    pub event: Event,
    /// Events of the same kind dropped since the last report of that kind.
    pub suppressed: u32,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.event)?;
        if self.suppressed > 0 {
            write!(f, " ({} similar messages suppressed)", self.suppressed)?;
        }
        Ok(())
    }
}

/// When to call [`Balloon::poll`] next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Right away (after yielding the CPU: `cond_resched`).
    Now,
    /// After this many milliseconds, or earlier if the target changes.
    After(u64),
    /// When the target changes.
    Idle,
}

/// What one [`Balloon::poll`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    /// When to call again.
    pub next: Next,
    /// Something to log, already rate-limited.
    pub report: Option<Report>,
}

/// Self-ballooning: the guest sets its own target from its committed memory.
///
/// Each [`SelfBalloon::interval_ms`], with `cur` = `total_ram_pages()` and `goal` =
/// `committed + reserve + margin`, the target moves a fraction of the way from `cur` to
/// `goal`: `cur - (cur - goal) / down_hysteresis` going down, `cur + (goal - cur) /
/// up_hysteresis` going up (Linux's former xen-selfballoon: divisors 8 and 1, every 5 s,
/// margin 10 % of RAM). It is converted to the balloon's unit (`+ current - cur`), bounded by
/// the floor and by the toolstack's target (or the ceiling), and ignored if it moved less
/// than [`SelfBalloon::min_change_pages`] (hysteresis: no churn over small changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfBalloon {
    /// On or off (default off).
    pub enabled: bool,
    /// Pages kept above committed memory; `None`: 10 % of `total_ram_pages()` at the first
    /// computation.
    pub margin_pages: Option<u64>,
    /// Divisor of the distance when going down (at least 1).
    pub down_hysteresis: u32,
    /// Divisor of the distance when going up (at least 1).
    pub up_hysteresis: u32,
    /// Milliseconds between computations.
    pub interval_ms: u64,
    /// A new self-balloon target closer than this to the previous one is ignored.
    pub min_change_pages: u64,
}

impl Default for SelfBalloon {
    fn default() -> Self {
        Self {
            enabled: false,
            margin_pages: None,
            down_hysteresis: 8,
            up_hysteresis: 1,
            interval_ms: 5000,
            min_change_pages: 256,
        }
    }
}

/// Tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// A change of direction waits until the target has been unchanged this long (0: never
    /// waits).
    pub settle_ms: u64,
    /// Window for counting target changes.
    pub flap_window_ms: u64,
    /// More changes than this within the window are reported as flapping.
    pub flap_changes: u32,
    /// At most one report per kind per interval.
    pub log_interval_ms: u64,
    /// Replaces the floor's piecewise minimum when set and non-zero (pages).
    pub min_usable_pages: Option<u64>,
    /// Pages are scrubbed before being given back (sysfs `scrub_pages`; Linux's default
    /// follows `CONFIG_XEN_SCRUB_PAGES_DEFAULT`, which defaults to on).
    pub scrub_pages: bool,
    /// Self-ballooning.
    pub self_balloon: SelfBalloon,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            settle_ms: 500,
            flap_window_ms: 1000,
            flap_changes: 10,
            log_interval_ms: 5000,
            min_usable_pages: None,
            scrub_pages: true,
            self_balloon: SelfBalloon::default(),
        }
    }
}

/// What the module knows at load, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Init {
    /// Pages the domain holds: `XENMEM_current_reservation` for `DOMID_SELF`.
    pub current_pages: u64,
    /// Unpopulated frames the module owns at load (those it claimed between the boot size
    /// and `maxmem`); never pages the built-in core lends for grant mappings.
    pub held_pages: u64,
    /// The guest's memory map in pages (`max_pfn`): the floor's `max`.
    pub max_pages: u64,
    /// `totalreserve_pages` at load: the floor's `reserve`.
    pub reserve_pages: u64,
}

/// The counters, Linux's `balloon_stats` and ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Pages the domain holds (sysfs `info/current_kb`).
    pub current_pages: u64,
    /// The target asked for (sysfs `target_kb`, `target`); `current_pages` at load until a
    /// target arrives, as in Linux.
    pub target_pages: u64,
    /// Where the balloon is heading now, after ceiling, floor and self-ballooning.
    pub effective_target_pages: u64,
    /// Pages in the balloon from low memory (sysfs `info/low_kb`): all of them on x86_64.
    pub balloon_low: u64,
    /// Pages in the balloon from high memory (sysfs `info/high_kb`): 0 on x86_64.
    pub balloon_high: u64,
    /// The floor: the larger of the formula and the usage floor, as last evaluated.
    pub floor_pages: u64,
    /// The formula's part of the floor ([`crate::floor::floor_pages`]), fixed at load.
    pub floor_formula_pages: u64,
    /// The usage floor as last evaluated ([`crate::floor::usage_floor_pages`]); `None` before
    /// the first poll.
    pub floor_usage_pages: Option<u64>,
    /// The ceiling (`static-max`), if one parsed.
    pub ceiling_pages: Option<u64>,
    /// Why the balloon last stopped or waited.
    pub last_stop: StopReason,
    /// What it is doing.
    pub state: State,
    /// The back-off counters.
    pub backoff: Backoff,
    /// The last target refused, if any.
    pub last_rejected: Option<TargetError>,
    /// The self-balloon target, if self-ballooning computed one.
    pub self_target_pages: Option<u64>,
    /// Pages given back to Xen since load.
    pub pages_given: u64,
    /// Pages taken from Xen since load.
    pub pages_taken: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ceiling {
    Unset,
    Missing,
    Bad,
    Pages(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// The balloon's policy engine. One per guest; the glue serialises calls (one mutex, like
/// Linux's `balloon_mutex`).
#[derive(Debug)]
pub struct Balloon {
    cfg: Config,
    current: u64,
    held: u64,
    /// `max(floor_formula, floor_usage)`.
    floor: u64,
    floor_formula: u64,
    floor_usage: Option<u64>,
    ceiling: Ceiling,
    requested: Option<u64>,
    self_target: Option<u64>,
    self_margin: Option<u64>,
    next_self_ms: u64,
    state: State,
    stop: StopReason,
    backoff: Backoff,
    not_before: u64,
    last_dir: Option<Dir>,
    last_move_ms: u64,
    last_change_ms: u64,
    flap_start_ms: u64,
    flap_count: u32,
    last_rejected: Option<TargetError>,
    stopped_reported: bool,
    log_last: [Option<u64>; KINDS],
    log_suppressed: [u32; KINDS],
    pages_given: u64,
    pages_taken: u64,
}

impl Balloon {
    /// A balloon at rest; it acts on nothing until [`Balloon::set_static_max`] gives it a
    /// ceiling and a target arrives.
    pub fn new(cfg: Config, init: Init) -> Self {
        let formula = floor_pages(init.max_pages, init.reserve_pages, cfg.min_usable_pages);
        Self {
            floor: formula,
            floor_formula: formula,
            floor_usage: None,
            cfg,
            current: init.current_pages,
            held: init.held_pages,
            ceiling: Ceiling::Unset,
            requested: None,
            self_target: None,
            self_margin: cfg.self_balloon.margin_pages,
            next_self_ms: 0,
            state: State::Blocked,
            stop: StopReason::NoStaticMax,
            backoff: Backoff::default(),
            not_before: 0,
            last_dir: None,
            last_move_ms: 0,
            last_change_ms: 0,
            flap_start_ms: 0,
            flap_count: 0,
            last_rejected: None,
            stopped_reported: true,
            log_last: [None; KINDS],
            log_suppressed: [0; KINDS],
            pages_given: 0,
            pages_taken: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether pages are scrubbed before being given back (sysfs `scrub_pages`).
    pub fn scrub_pages(&self) -> bool {
        self.cfg.scrub_pages
    }

    /// Sets sysfs `scrub_pages`.
    pub fn set_scrub_pages(&mut self, on: bool) {
        self.cfg.scrub_pages = on;
    }

    /// Sets sysfs `max_schedule_delay` (seconds; 0 is taken as 1).
    pub fn set_max_schedule_delay(&mut self, s: u32) {
        self.backoff.max_schedule_delay = s.max(1);
        self.backoff.schedule_delay = self.backoff.schedule_delay.min(s.max(1));
    }

    /// Sets sysfs `max_retry_count` ([`crate::backoff::RETRY_UNLIMITED`]: forever).
    pub fn set_max_retry_count(&mut self, n: u32) {
        self.backoff.max_retry_count = n;
    }

    /// Turns self-ballooning on or off; off drops its target.
    pub fn set_self_balloon(&mut self, on: bool, now: u64) {
        self.cfg.self_balloon.enabled = on;
        if !on {
            self.self_target = None;
        }
        self.next_self_ms = now;
        self.redirect(now);
    }

    /// The floor, in pages, as last evaluated: the larger of the formula and the usage floor.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The formula's part of the floor, fixed at load.
    pub fn floor_formula(&self) -> u64 {
        self.floor_formula
    }

    /// Evaluates the usage floor from the kernel's counters now; [`Balloon::poll`] does so
    /// before anything else, the glue may too (sysfs `floor_kb` shows a fresh value).
    pub fn refresh_floor<E: KernelMemory>(&mut self, env: &mut E) {
        let total = env.total_ram_pages();
        let reserve = env.reserve_pages();
        let usage = env.memory_use();
        let u = usage_floor_pages(self.current, total, reserve, &usage);
        self.floor_usage = Some(u);
        self.floor = self.floor_formula.max(u);
    }

    /// The ceiling, in pages, once `static-max` parsed.
    pub fn ceiling(&self) -> Option<u64> {
        match self.ceiling {
            Ceiling::Pages(c) => Some(c),
            _ => None,
        }
    }

    /// Pages the domain holds.
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Pages in this balloon (unpopulated frames the glue owns).
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        Stats {
            current_pages: self.current,
            target_pages: self.requested.unwrap_or(self.current),
            effective_target_pages: match self.effective() {
                Some((t, _)) if !(self.resting_at_floor() && t < self.current) => t,
                _ => self.current,
            },
            balloon_low: self.held,
            balloon_high: 0,
            floor_pages: self.floor,
            floor_formula_pages: self.floor_formula,
            floor_usage_pages: self.floor_usage,
            ceiling_pages: self.ceiling(),
            last_stop: self.stop,
            state: self.state,
            backoff: self.backoff,
            last_rejected: self.last_rejected,
            self_target_pages: self.self_target,
            pages_given: self.pages_given,
            pages_taken: self.pages_taken,
        }
    }

    /// Sets the ceiling from `memory/static-max` (`None`: the key is missing). A missing or
    /// bad value is reported, and targets are then not acted on until a good one arrives.
    pub fn set_static_max(&mut self, raw: Option<&[u8]>, now: u64) -> Option<Report> {
        let (ceiling, event) = match raw.map(parse_kib) {
            None => (Ceiling::Missing, Some(Event::StaticMaxMissing)),
            Some(Err(e)) => (Ceiling::Bad, Some(Event::StaticMaxRejected(e))),
            Some(Ok(kib)) => (Ceiling::Pages(kib.to_pages()), None),
        };
        self.ceiling = ceiling;
        self.redirect(now);
        event.and_then(|e| self.report(e, now))
    }

    /// A new `memory/target` value (KiB, from XenStore). A bad value is reported and changes
    /// nothing.
    pub fn set_target(&mut self, raw: &[u8], now: u64) -> Option<Report> {
        match parse_kib(raw) {
            Ok(kib) => self.set_target_kib(kib, now),
            Err(e) => {
                self.last_rejected = Some(e);
                self.report(Event::TargetRejected(e), now)
            }
        }
    }

    /// A new target in KiB (sysfs `target_kb`, or `target` in bytes divided by 1024).
    pub fn set_target_kib(&mut self, kib: Kib, now: u64) -> Option<Report> {
        self.set_target_pages(kib.to_pages(), now)
    }

    /// A new target in pages.
    pub fn set_target_pages(&mut self, pages: u64, now: u64) -> Option<Report> {
        if self.requested == Some(pages) {
            // Watches fire at registration and may repeat a value: not a change.
            return None;
        }
        self.requested = Some(pages);
        self.last_change_ms = now;
        self.redirect(now);

        let window = self.cfg.flap_window_ms;
        if now.saturating_sub(self.flap_start_ms) > window || self.flap_count == 0 {
            self.flap_start_ms = now;
            self.flap_count = 1;
        } else {
            self.flap_count = self.flap_count.saturating_add(1);
        }
        if self.flap_count == self.cfg.flap_changes.saturating_add(1) {
            return self.report(
                Event::TargetFlapping {
                    changes: self.flap_count,
                },
                now,
            );
        }
        match self.ceiling {
            Ceiling::Pages(c) if pages > c => {
                return self.report(
                    Event::TargetClamped {
                        requested: pages,
                        ceiling: c,
                    },
                    now,
                );
            }
            _ => {}
        }
        if pages < self.floor && pages < self.current {
            return self.report(
                Event::TargetBelowFloor {
                    requested: pages,
                    floor: self.floor,
                },
                now,
            );
        }
        None
    }

    /// Runs at most one batch toward the target (or self-balloon computation), and says when
    /// to call again. `now` is a monotonic time in milliseconds (`jiffies_to_msecs`).
    ///
    /// Each poll first evaluates the floor again ([`Balloon::refresh_floor`]): memory use
    /// changes while the balloon moves, and a batch going down never takes the guest below
    /// the floor evaluated just before it.
    pub fn poll<E: KernelMemory + Reservation>(&mut self, env: &mut E, now: u64) -> Poll {
        self.refresh_floor(env);
        let report = self.tick_self_balloon(env, now);
        let mut poll = self.poll_batch(env, now);
        if poll.report.is_none() {
            poll.report = report;
        }
        if self.cfg.self_balloon.enabled {
            let wait = self.next_self_ms.saturating_sub(now).max(1);
            poll.next = match poll.next {
                Next::Idle => Next::After(wait),
                Next::After(t) => Next::After(t.min(wait)),
                Next::Now => Next::Now,
            };
        }
        poll
    }

    fn poll_batch<E: KernelMemory + Reservation>(&mut self, env: &mut E, now: u64) -> Poll {
        let idle = |report| Poll {
            next: Next::Idle,
            report,
        };
        match self.ceiling {
            Ceiling::Unset | Ceiling::Missing => {
                self.state = State::Blocked;
                self.stop = StopReason::NoStaticMax;
                return idle(None);
            }
            Ceiling::Bad => {
                self.state = State::Blocked;
                self.stop = StopReason::BadStaticMax;
                return idle(None);
            }
            Ceiling::Pages(_) => {}
        }
        if matches!(
            self.state,
            State::Retrying | State::Cancelled | State::Settling
        ) && now < self.not_before
        {
            return Poll {
                next: Next::After(self.not_before - now),
                report: None,
            };
        }
        let Some((target, limit)) = self.effective() else {
            self.state = State::Idle;
            return idle(None);
        };
        // At rest at the floor, the floor evaluated afresh must have fallen by
        // floor_resume_margin() before the balloon follows it down: its estimate jitters with
        // the guest's short-lived processes, and following every low sample would ratchet the
        // balloon down by that jitter, into the headroom. A fall beyond the margin (the stop
        // came on a peak of memory use that has passed) is a new descent, whose stop is
        // reported again. A new target starts a new descent from the floor as it is then.
        if self.resting_at_floor() && target < self.current {
            if limit == Some(StopReason::FloorReached)
                && target.saturating_add(floor_resume_margin(self.current)) > self.current
            {
                return Poll {
                    next: Next::After(FLOOR_RECHECK_MS),
                    report: None,
                };
            }
            self.stopped_reported = false;
        }
        if target == self.current {
            return self.finish(limit.unwrap_or(StopReason::TargetReached), now);
        }
        let dir = if target > self.current {
            Dir::Up
        } else {
            Dir::Down
        };
        if self.last_dir.is_some_and(|d| d != dir) {
            let settle = self.cfg.settle_ms;
            let quiet_at = self.last_change_ms.saturating_add(settle);
            let still_at = self.last_move_ms.saturating_add(settle);
            if now < quiet_at && now < still_at {
                self.state = State::Settling;
                self.not_before = quiet_at.min(still_at);
                return Poll {
                    next: Next::After(self.not_before - now),
                    report: None,
                };
            }
        }
        self.state = State::Moving;
        let distance = target.abs_diff(self.current);
        let failed = match dir {
            Dir::Down => self.batch_down(env, step(distance)),
            Dir::Up => self.batch_up(env, step(distance)),
        };
        self.last_dir = Some(dir);
        self.last_move_ms = now;
        match failed {
            Some((reason, error)) => self.fail(reason, error, now),
            None => {
                self.backoff.reset();
                match self.effective() {
                    // Landed on the floor evaluated before this batch: one more poll
                    // evaluates it afresh, and stops there only if it still holds.
                    Some((t, Some(StopReason::FloorReached))) if t == self.current => Poll {
                        next: Next::Now,
                        report: None,
                    },
                    Some((t, limit)) if t == self.current => {
                        self.finish(limit.unwrap_or(StopReason::TargetReached), now)
                    }
                    _ => Poll {
                        next: Next::Now,
                        report: None,
                    },
                }
            }
        }
    }

    /// One batch down by `want` pages; `Some` if it failed.
    fn batch_down<E: KernelMemory + Reservation>(
        &mut self,
        env: &mut E,
        want: usize,
    ) -> Option<(StopReason, Option<HypercallError>)> {
        let want = want.min(BATCH);
        let available = env.available_pages();
        let n = usize::try_from(available).unwrap_or(BATCH).min(want);
        if n == 0 {
            return Some((StopReason::KernelRefused, None));
        }
        let k = env.take_pages(n).min(n);
        let mut released = 0;
        let mut error = None;
        if k > 0 {
            match env.decrease(k) {
                Ok(r) => released = r.min(k),
                Err(e) => error = Some(e),
            }
            if released < k {
                env.free_pages(k - released);
            }
        }
        let released = released as u64;
        self.current = self.current.saturating_sub(released);
        self.held = self.held.saturating_add(released);
        self.pages_given = self.pages_given.saturating_add(released);
        if error.is_some() || released < k as u64 {
            return Some((StopReason::XenRefused, error));
        }
        if k < n {
            return Some((StopReason::KernelRefused, None));
        }
        // Linux's rule: a batch cut short by MemAvailable, below the kernel's reserve, is
        // a reason to wait rather than press on.
        if n < want && available < env.reserve_pages() {
            return Some((StopReason::KernelRefused, None));
        }
        None
    }

    /// One batch up by `want` pages; `Some` if it failed.
    fn batch_up<E: KernelMemory + Reservation>(
        &mut self,
        env: &mut E,
        want: usize,
    ) -> Option<(StopReason, Option<HypercallError>)> {
        let want = want
            .min(BATCH)
            .min(usize::try_from(self.held).unwrap_or(BATCH));
        if want == 0 {
            return Some((StopReason::BalloonEmpty, None));
        }
        match env.increase(want) {
            Err(e) => Some((StopReason::XenRefused, Some(e))),
            Ok(0) => Some((StopReason::XenRefused, None)),
            Ok(k) => {
                let k = k.min(want);
                env.free_pages(k);
                let k = k as u64;
                self.current = self.current.saturating_add(k);
                self.held = self.held.saturating_sub(k);
                self.pages_taken = self.pages_taken.saturating_add(k);
                // A partial populate is progress, as in Linux; the next batch asks again.
                None
            }
        }
    }

    fn fail(&mut self, reason: StopReason, error: Option<HypercallError>, now: u64) -> Poll {
        self.stop = reason;
        self.stopped_reported = false;
        match self.backoff.fail() {
            Some(delay_s) => {
                self.state = State::Retrying;
                let wait = u64::from(delay_s) * 1000;
                self.not_before = now.saturating_add(wait);
                let event = Event::Retry {
                    reason,
                    error,
                    delay_s,
                    retry_count: self.backoff.retry_count,
                };
                Poll {
                    next: Next::After(wait),
                    report: self.report(event, now),
                }
            }
            None => {
                self.state = State::Cancelled;
                self.not_before = now.saturating_add(CANCELLED_WAIT_MS);
                Poll {
                    next: Next::After(CANCELLED_WAIT_MS),
                    report: self.report(Event::GaveUp { reason, error }, now),
                }
            }
        }
    }

    fn finish(&mut self, reason: StopReason, now: u64) -> Poll {
        self.state = State::Idle;
        self.stop = reason;
        self.last_dir = None;
        let report = if self.stopped_reported {
            None
        } else {
            self.stopped_reported = true;
            let event = Event::Stopped {
                reason,
                current: self.current,
                target: self.requested.unwrap_or(self.current),
            };
            self.report(event, now)
        };
        // Stopped at the floor, with the target below: the floor is evaluated again
        // periodically, in case the stop came on a transient peak of memory use.
        let next = if reason == StopReason::FloorReached {
            Next::After(FLOOR_RECHECK_MS)
        } else {
            Next::Idle
        };
        Poll { next, report }
    }

    /// The target changed (or the ceiling, or self-ballooning): a back-off or give-up wait
    /// ends now (Linux's worker wakes when the credit changes), the back-off counts stay.
    fn redirect(&mut self, now: u64) {
        self.stopped_reported = false;
        if matches!(
            self.state,
            State::Retrying | State::Cancelled | State::Idle | State::Settling
        ) {
            self.state = State::Moving;
            self.not_before = now;
        }
    }

    /// Stopped at the floor, with no new target since: a lower floor is not followed.
    fn resting_at_floor(&self) -> bool {
        self.state == State::Idle && self.stop == StopReason::FloorReached
    }

    /// Where to head, and what limits it (`None`: the target itself), or `None` without a
    /// ceiling or target.
    fn effective(&self) -> Option<(u64, Option<StopReason>)> {
        let Ceiling::Pages(ceiling) = self.ceiling else {
            return None;
        };
        let asked = match (self.cfg.self_balloon.enabled, self.self_target) {
            (true, Some(s)) => s.min(self.requested.unwrap_or(ceiling)),
            _ => self.requested?,
        };
        let mut target = asked;
        let mut limit = None;
        if target > ceiling {
            target = ceiling;
            limit = Some(StopReason::CeilingReached);
        }
        if target < self.current {
            let floor = self.floor.min(self.current);
            if target < floor {
                target = floor;
                limit = Some(StopReason::FloorReached);
            }
        } else if target > self.current {
            let top = self.current.saturating_add(self.held);
            if target > top {
                target = top;
                limit = Some(StopReason::BalloonEmpty);
            }
        }
        Some((target, limit))
    }

    fn tick_self_balloon<E: KernelMemory>(&mut self, env: &mut E, now: u64) -> Option<Report> {
        let sb = self.cfg.self_balloon;
        if !sb.enabled || now < self.next_self_ms {
            return None;
        }
        self.next_self_ms = now.saturating_add(sb.interval_ms.max(1));
        let Ceiling::Pages(ceiling) = self.ceiling else {
            return None;
        };
        let ram = env.total_ram_pages();
        let margin = *self.self_margin.get_or_insert(ram / 10);
        let goal = env
            .committed_pages()
            .saturating_add(env.reserve_pages())
            .saturating_add(margin);
        let tgt = if ram > goal {
            ram - (ram - goal) / u64::from(sb.down_hysteresis.max(1))
        } else {
            ram + (goal - ram) / u64::from(sb.up_hysteresis.max(1))
        };
        // From kernel pages to the balloon's unit, then bounded.
        let tgt = tgt.saturating_add(self.current).saturating_sub(ram);
        let top = self.requested.unwrap_or(ceiling).min(ceiling);
        let tgt = tgt.max(self.floor).min(top);
        let changed = match self.self_target {
            Some(old) => old.abs_diff(tgt) >= sb.min_change_pages,
            None => true,
        };
        if changed {
            self.self_target = Some(tgt);
            self.redirect(now);
        }
        None
    }

    /// Rate limit: one report per kind per interval.
    fn report(&mut self, event: Event, now: u64) -> Option<Report> {
        let k = event.kind();
        let (Some(last), Some(suppressed)) =
            (self.log_last.get_mut(k), self.log_suppressed.get_mut(k))
        else {
            return None;
        };
        match *last {
            Some(t) if now.saturating_sub(t) < self.cfg.log_interval_ms => {
                *suppressed = suppressed.saturating_add(1);
                None
            }
            _ => {
                *last = Some(now);
                let r = Report {
                    event,
                    suppressed: *suppressed,
                };
                *suppressed = 0;
                Some(r)
            }
        }
    }
}
