//! The late-EOI throttle against event storms, driven through a fake event channel.

use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use xen_evtchn::{
    DomId, Eoi, EvtchnError, EvtchnOps, Nanos, Outcome, Port, Throttle, ThrottleConfig,
};

/// Ports with a pending bit and a mask bit, like the 2-level ABI.
#[derive(Default)]
struct FakeChannels {
    ports: RefCell<BTreeMap<u32, (bool, bool)>>, // port -> (pending, masked)
    next: RefCell<u32>,
}

impl FakeChannels {
    fn with_port<T>(
        &self,
        port: Port,
        f: impl FnOnce(&mut (bool, bool)) -> T,
    ) -> Result<T, EvtchnError> {
        self.ports
            .borrow_mut()
            .get_mut(&port.raw())
            .map(f)
            .ok_or(EvtchnError::InvalidPort)
    }

    /// Whether the port has an event to deliver now (pending and unmasked); delivering it
    /// masks the port until the EOI, as late EOI does.
    fn deliver(&self, port: Port) -> bool {
        self.with_port(port, |(pending, masked)| {
            let fire = *pending && !*masked;
            if fire {
                *pending = false;
                *masked = true;
            }
            fire
        })
        .unwrap_or(false)
    }
}

impl EvtchnOps for FakeChannels {
    fn alloc_unbound(&self, _remote: DomId) -> Result<Port, EvtchnError> {
        let mut next = self.next.borrow_mut();
        *next += 1;
        self.ports.borrow_mut().insert(*next, (false, false));
        Ok(Port::new(*next))
    }
    fn bind_interdomain(&self, remote: DomId, _remote_port: Port) -> Result<Port, EvtchnError> {
        self.alloc_unbound(remote)
    }
    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        self.with_port(port, |p| p.0 = true)
    }
    fn mask(&self, port: Port) -> Result<(), EvtchnError> {
        self.with_port(port, |p| p.1 = true)
    }
    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        self.with_port(port, |p| p.1 = false)
    }
    fn close(&self, port: Port) -> Result<(), EvtchnError> {
        self.ports
            .borrow_mut()
            .remove(&port.raw())
            .map(|_| ())
            .ok_or(EvtchnError::InvalidPort)
    }
}

/// Simulated time per step of [`flood`].
const STEP: Nanos = Nanos::from_us(10);

/// Runs `duration` of simulated time in which a rogue peer re-notifies the port one step
/// (10 µs) after every delivery, while the handler finds no work (or work on the events `work` picks).
/// Returns the number of times the handler ran.
fn flood(cfg: ThrottleConfig, duration: Nanos, mut work: impl FnMut(u64) -> bool) -> u64 {
    let ch = FakeChannels::default();
    let port = ch.alloc_unbound(DomId::new(7)).unwrap();
    let mut throttle = Throttle::new(cfg);
    let mut now = Nanos::ZERO;
    let mut eoi_due: Option<Nanos> = None;
    let mut handled = 0u64;
    while now < duration {
        ch.notify(port).unwrap(); // the peer never stops
        if let Some(due) = eoi_due {
            if now >= due {
                ch.unmask(port).unwrap();
                eoi_due = None;
            }
        }
        if ch.deliver(port) {
            handled += 1;
            let outcome = if work(handled) {
                Outcome::Work
            } else {
                Outcome::Spurious
            };
            eoi_due = Some(match throttle.on_event(now, outcome) {
                Eoi::Now => now,
                Eoi::At(t) => t,
            });
        }
        now = now.saturating_add(STEP);
    }
    handled
}

#[test]
fn event_storm_is_throttled() {
    let cfg = ThrottleConfig::DEFAULT;
    let ten_seconds = Nanos::from_ms(10_000);
    let handled = flood(cfg, ten_seconds, |_| false);
    // Ramp-up (0+1+2+...+64 ms, 8 events) then one event per 100 ms: about 100 in 10 s,
    // where an unthrottled port would run the handler every step (a million times).
    assert!(
        handled <= 110,
        "handler ran {handled} times in a 10 s storm"
    );
    assert!(
        handled >= 90,
        "throttle stopped the port altogether: {handled}"
    );
    // Without the policy (no delay ever), the same storm runs the handler each step.
    let unthrottled = ThrottleConfig {
        free_spurious: u32::MAX,
        ..cfg
    };
    assert!(flood(unthrottled, Nanos::from_ms(10), |_| false) >= 900);
}

#[test]
fn real_work_resets_throttle() {
    let mut t = Throttle::new(ThrottleConfig::DEFAULT);
    let mut now = Nanos::from_ms(1);
    for _ in 0..20 {
        now = now.saturating_add(t.on_event(now, Outcome::Spurious).delay_from(now));
    }
    assert_eq!(
        t.on_event(now, Outcome::Spurious).delay_from(now),
        ThrottleConfig::DEFAULT.max_delay
    );
    assert_eq!(t.on_event(now, Outcome::Work), Eoi::Now);
    assert_eq!(t.consecutive_spurious(), 0);
    // One spurious event after work is free again, the next starts at the base delay.
    assert_eq!(t.on_event(now, Outcome::Spurious), Eoi::Now);
    assert_eq!(
        t.on_event(now, Outcome::Spurious).delay_from(now),
        ThrottleConfig::DEFAULT.base_delay
    );
}

#[test]
fn busy_peer_with_real_work_is_never_delayed() {
    // Every other event carries work: a legitimate, if chatty, peer.
    let handled = flood(ThrottleConfig::DEFAULT, Nanos::from_ms(10), |n| n % 2 == 0);
    assert!(
        handled >= 900,
        "a working peer was throttled: {handled} events in 10 ms"
    );
}

fn config() -> impl Strategy<Value = ThrottleConfig> {
    (0u32..5, any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(free, base, max, quiet)| {
        ThrottleConfig {
            free_spurious: free,
            base_delay: Nanos(base),
            max_delay: Nanos(max),
            quiet: Nanos(quiet),
        }
    })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Work), Just(Outcome::Spurious)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the configuration, clock and event sequence: no panic, any delay is within
    /// `max_delay`, and real work is acknowledged at once.
    #[test]
    fn delay_is_bounded_and_work_is_never_delayed(
        cfg in config(),
        events in prop::collection::vec((any::<u64>(), outcome()), 1..100),
    ) {
        let mut t = Throttle::new(cfg);
        for (now, outcome) in events {
            let eoi = t.on_event(Nanos(now), outcome);
            prop_assert!(eoi.delay_from(Nanos(now)) <= cfg.max_delay);
            if outcome == Outcome::Work {
                prop_assert_eq!(eoi, Eoi::Now);
                prop_assert_eq!(t.consecutive_spurious(), 0);
            }
        }
    }

    /// In an uninterrupted storm (each event right at its EOI), delays never shrink, the
    /// first `free_spurious` events are free, and the cap is reached and held.
    #[test]
    fn storm_delays_grow_monotonically_to_the_cap(
        free in 0u32..4,
        base_us in 1u64..10_000,
        max_ms in 1u64..2_000,
        start in 0u64..u64::MAX / 2,
    ) {
        let cfg = ThrottleConfig {
            free_spurious: free,
            base_delay: Nanos::from_us(base_us),
            max_delay: Nanos::from_ms(max_ms),
            quiet: Nanos::from_ms(max_ms.saturating_mul(2)),
        };
        let mut t = Throttle::new(cfg);
        let mut now = Nanos(start);
        let mut last = Nanos::ZERO;
        for i in 0..80u32 {
            let d = t.on_event(now, Outcome::Spurious).delay_from(now);
            if i < free {
                prop_assert_eq!(d, Nanos::ZERO);
            }
            prop_assert!(d >= last, "delay shrank from {:?} to {:?}", last, d);
            last = d;
            now = now.saturating_add(d);
        }
        prop_assert_eq!(last, cfg.max_delay);
    }
}
