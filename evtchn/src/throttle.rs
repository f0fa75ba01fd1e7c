//! A pure late-EOI throttling policy for event storms (XSA-332, XSA-391).
//!
//! With late EOI a port stays masked from the moment an event is delivered until the driver
//! sends the end-of-interrupt (unmasks it). The handler reports each event's [`Outcome`]: it
//! either found work, or found nothing to do (spurious: the peer notified for no reason, or
//! is flooding the port). After more than [`ThrottleConfig::free_spurious`] spurious events in
//! a row the policy delays the EOI: `base_delay`, then twice that, and so on up to
//! `max_delay`. Any event with real work, or a quiet spell of `quiet` after the last EOI,
//! resets it. Time comes in as nanoseconds from any monotonic clock; the policy never reads
//! one, so it is deterministic and host-testable.

/// A point on, or a span of, a monotonic clock in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    /// Zero.
    pub const ZERO: Nanos = Nanos(0);

    /// `us` microseconds.
    pub const fn from_us(us: u64) -> Nanos {
        Nanos(us.saturating_mul(1_000))
    }

    /// `ms` milliseconds.
    pub const fn from_ms(ms: u64) -> Nanos {
        Nanos(ms.saturating_mul(1_000_000))
    }

    /// `self + d`, saturating at the end of time.
    pub const fn saturating_add(self, d: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(d.0))
    }

    /// `self - earlier`, or zero if the clock went backwards.
    pub const fn saturating_sub(self, earlier: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }
}

/// What the handler found when it ran for an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It consumed at least one request or response.
    Work,
    /// It found nothing to do.
    Spurious,
}

/// When to send the end-of-interrupt (unmask the port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Eoi {
    /// Right away.
    Now,
    /// Not before this time.
    At(Nanos),
}

impl Eoi {
    /// How long after `now` the EOI is due (zero for [`Eoi::Now`] or a past time).
    pub fn delay_from(self, now: Nanos) -> Nanos {
        match self {
            Eoi::Now => Nanos::ZERO,
            Eoi::At(t) => t.saturating_sub(now),
        }
    }
}

/// The knobs of a [`Throttle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Spurious events in a row that are acknowledged at once (a peer may notify a little
    /// early or twice; that is not a storm).
    pub free_spurious: u32,
    /// The first delay.
    pub base_delay: Nanos,
    /// The longest delay; also the bound on any delay the policy returns.
    pub max_delay: Nanos,
    /// A gap this long between the last EOI and the next event ends a storm.
    pub quiet: Nanos,
}

impl ThrottleConfig {
    /// One free spurious event, then 1 ms doubling up to 100 ms; one second of quiet resets.
    pub const DEFAULT: ThrottleConfig = ThrottleConfig {
        free_spurious: 1,
        base_delay: Nanos::from_ms(1),
        max_delay: Nanos::from_ms(100),
        quiet: Nanos::from_ms(1_000),
    };
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The late-EOI policy of one port.
#[derive(Clone, Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    /// Spurious events since the last real work (saturating).
    spurious: u32,
    /// When the port was last re-enabled (the last EOI decided), for the quiet reset.
    last_eoi: Nanos,
}

impl Throttle {
    /// A policy that has seen no events.
    pub const fn new(cfg: ThrottleConfig) -> Throttle {
        Throttle {
            cfg,
            spurious: 0,
            last_eoi: Nanos::ZERO,
        }
    }

    /// Spurious events in a row so far.
    pub fn consecutive_spurious(&self) -> u32 {
        self.spurious
    }

    /// Forgets the storm (e.g. on reconnect).
    pub fn reset(&mut self) {
        self.spurious = 0;
    }

    /// Records an event handled at `now` and decides when to send its EOI.
    pub fn on_event(&mut self, now: Nanos, outcome: Outcome) -> Eoi {
        if now.saturating_sub(self.last_eoi) >= self.cfg.quiet {
            self.spurious = 0;
        }
        let delay = match outcome {
            Outcome::Work => {
                self.spurious = 0;
                Nanos::ZERO
            }
            Outcome::Spurious => {
                self.spurious = self.spurious.saturating_add(1);
                self.delay()
            }
        };
        let at = now.saturating_add(delay);
        self.last_eoi = at;
        if delay == Nanos::ZERO {
            Eoi::Now
        } else {
            Eoi::At(at)
        }
    }

    /// The delay for the current run of spurious events: zero up to `free_spurious`, then
    /// `base_delay << (excess - 1)`, never above `max_delay`.
    fn delay(&self) -> Nanos {
        let excess = self.spurious.saturating_sub(self.cfg.free_spurious);
        if excess == 0 {
            return Nanos::ZERO;
        }
        let doublings = excess.saturating_sub(1).min(63);
        let delay = self.cfg.base_delay.0.saturating_mul(1u64 << doublings);
        Nanos(delay.min(self.cfg.max_delay.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_base_to_cap() {
        let mut t = Throttle::new(ThrottleConfig::DEFAULT);
        let mut now = Nanos::from_ms(5);
        let mut delays = Vec::new();
        for _ in 0..12 {
            let eoi = t.on_event(now, Outcome::Spurious);
            delays.push(eoi.delay_from(now).0 / 1_000_000);
            now = now.saturating_add(eoi.delay_from(now));
        }
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 64, 100, 100, 100, 100]);
    }

    #[test]
    fn quiet_spell_after_the_last_eoi_resets() {
        let mut t = Throttle::new(ThrottleConfig::DEFAULT);
        let mut now = Nanos::ZERO;
        for _ in 0..5 {
            now = now.saturating_add(t.on_event(now, Outcome::Spurious).delay_from(now));
        }
        assert_eq!(t.consecutive_spurious(), 5);
        let later = now.saturating_add(Nanos::from_ms(1_000));
        assert_eq!(t.on_event(later, Outcome::Spurious), Eoi::Now);
        assert_eq!(t.consecutive_spurious(), 1);
    }

    #[test]
    fn backwards_clock_and_extreme_times_do_not_panic() {
        let mut t = Throttle::new(ThrottleConfig {
            free_spurious: 0,
            base_delay: Nanos(u64::MAX),
            max_delay: Nanos(u64::MAX),
            quiet: Nanos(u64::MAX),
        });
        for now in [u64::MAX, 0, u64::MAX - 1, 1] {
            let eoi = t.on_event(Nanos(now), Outcome::Spurious);
            assert!(eoi.delay_from(Nanos(now)) <= Nanos(u64::MAX));
        }
    }
}
