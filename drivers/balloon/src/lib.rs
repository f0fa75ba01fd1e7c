//! The balloon's policy engine: how far, which way, in what steps and when to retry, when the
//! toolstack moves a guest's memory; shared by the kernel module and the host tests.
//!
//! # What is here
//!
//! - [`parse`]: `memory/target` and `memory/static-max` (KiB, decimal ASCII, untrusted) read
//!   with a checked parser whose [`TargetError`] names each bad class (empty, too long,
//!   negative, not decimal, overflow, huge).
//! - [`floor`]: the fewest pages the balloon leaves the guest: the larger of Linux's former
//!   self-ballooning driver's minimum and what the guest holds that nothing can reclaim plus
//!   headroom, with each decrease also capped by `MemAvailable` as Linux 6.12's balloon does
//!   (the module doc of [`floor`] gives the formulas and their sources).
//! - [`step`]: the logarithmic step scale, `min(d, clamp(2^(floor(log2 d) - 2), 16, 512))`
//!   pages for a distance `d`: never overshoots, shrinks monotonically near the target.
//! - [`backoff`]: `schedule_delay`, `max_schedule_delay`, `retry_count`, `max_retry_count`
//!   with Linux 6.12's semantics and defaults (1 s doubling to 32 s; give up after 4 tries;
//!   0 retries forever).
//! - [`engine`]: [`Balloon`], generic per call over the glue's [`KernelMemory`] and
//!   [`Reservation`]: one batch of at most [`BATCH`] pages per [`Balloon::poll`], ceiling
//!   and floor, back-off, debouncing of a flapping target, self-ballooning (off by default),
//!   [`StopReason`]s and counters for sysfs, and rate-limited [`Report`]s for the log.
//! - `sim` (feature `std`): a simulated guest and hypervisor with fault injection.
//!
//! The module doc of [`engine`] describes what the kernel module provides and how it sets
//! the engine up (the current size from `XENMEM_current_reservation`; the balloon's own
//! frames apart from those the built-in core lends for grant mappings).
//!
//! All sizes in the API are 4 KiB pages (`u64`, named `*_pages`), except [`Kib`], the unit the
//! toolstack writes; times are milliseconds of a monotonic clock the caller passes in.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(all(feature = "std", not(test)))]
extern crate std;

pub mod backoff;
pub mod engine;
pub mod floor;
pub mod parse;
#[cfg(any(test, feature = "std"))]
pub mod sim;
pub mod step;

pub use backoff::{Backoff, RETRY_UNLIMITED};
pub use engine::{
    floor_resume_margin, Balloon, Config, Event, Init, KernelMemory, Next, Poll, Report,
    Reservation, SelfBalloon, State, Stats, StopReason, CANCELLED_WAIT_MS, FLOOR_RECHECK_MS,
    FLOOR_RESUME_PAGES,
};
pub use floor::{floor_pages, usage_floor_pages, MemoryUse};
pub use parse::{parse_kib, parse_kib_line, Kib, TargetError};
pub use step::{step as step_pages, BATCH};
