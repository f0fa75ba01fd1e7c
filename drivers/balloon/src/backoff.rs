//! Retry with back-off, with the semantics and defaults of Linux 6.12's balloon.
//!
//! From `drivers/xen/balloon.c` (`balloon_init`, `update_schedule`) and
//! `include/xen/balloon.h`: `schedule_delay` starts at 1 s and `retry_count` at 1; a batch
//! that did what it was asked resets both. A failed batch increments `retry_count`; if
//! `max_retry_count` is not 0 (0 means retry forever) and `retry_count` exceeds it, both reset
//! and the balloon gives up (`BP_ECANCELED`) until the target changes; otherwise
//! `schedule_delay` doubles, capped at `max_schedule_delay`, and the next try waits that long.
//! Defaults: `max_schedule_delay` 32 s, `max_retry_count` 4. So with the defaults the waits
//! after failures are 2, 4 and 8 s, and the fourth failure in a row gives up.

/// `max_retry_count` value meaning "retry forever" (Linux's `RETRY_UNLIMITED`).
pub const RETRY_UNLIMITED: u32 = 0;

/// Linux's default `max_schedule_delay`, in seconds.
pub const DEFAULT_MAX_SCHEDULE_DELAY: u32 = 32;

/// Linux's default `max_retry_count`.
pub const DEFAULT_MAX_RETRY_COUNT: u32 = 4;

/// The back-off state, the four numbers Linux shows in sysfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Seconds the next retry waits (sysfs `schedule_delay`).
    pub schedule_delay: u32,
    /// The cap on `schedule_delay` (sysfs `max_schedule_delay`).
    pub max_schedule_delay: u32,
    /// Tries so far, starting at 1 (sysfs `retry_count`).
    pub retry_count: u32,
    /// Tries before giving up; [`RETRY_UNLIMITED`] never gives up (sysfs `max_retry_count`).
    pub max_retry_count: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            schedule_delay: 1,
            max_schedule_delay: DEFAULT_MAX_SCHEDULE_DELAY,
            retry_count: 1,
            max_retry_count: DEFAULT_MAX_RETRY_COUNT,
        }
    }
}

impl Backoff {
    /// A batch succeeded: back to the first delay and count.
    pub fn reset(&mut self) {
        self.schedule_delay = 1;
        self.retry_count = 1;
    }

    /// A batch failed. Returns the seconds to wait before retrying, or `None` if the balloon
    /// gives up (the counters are reset, as Linux does).
    pub fn fail(&mut self) -> Option<u32> {
        self.retry_count = self.retry_count.saturating_add(1);
        if self.max_retry_count != RETRY_UNLIMITED && self.retry_count > self.max_retry_count {
            self.reset();
            return None;
        }
        // A delay of 0 (a sysfs write) would never grow; 1 is the smallest wait.
        let cap = self.max_schedule_delay.max(1);
        self.schedule_delay = self.schedule_delay.max(1).saturating_mul(2).min(cap);
        Some(self.schedule_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_defaults() {
        let mut b = Backoff::default();
        assert_eq!(b.fail(), Some(2));
        assert_eq!(b.fail(), Some(4));
        assert_eq!(b.fail(), Some(8));
        assert_eq!(b.fail(), None);
        assert_eq!(b, Backoff::default());
    }
}
