//! Fuzzes the balloon: arbitrary bytes as `memory/target`, then arbitrary sequences of engine
//! operations (targets as bytes or pages, `static-max` present, missing or garbage, polls,
//! clock jumps, injected faults, self-ballooning on and off) against the simulated guest.
//!
//! Checked on every run: no panic; the parser accepts exactly 1 to 20 ASCII digits whose value
//! is at most `MAX_KIB`, and its error names the first rule broken; after every call every
//! page is accounted for (guest + balloon + lent = memory map; guest + Xen's free = machine)
//! and nothing is left staged; the engine's counts match the guest's; nothing moves without a
//! valid `static-max`; a poll that grew the guest left it at or below the ceiling, one that
//! shrank it left it at or above the floor; and once faults stop, the balloon settles at its
//! effective target without hanging.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use xen_balloon::parse::{MAX_KIB, MAX_LEN};
use xen_balloon::sim::SimGuest;
use xen_balloon::{parse_kib, Balloon, Config, Init, State, TargetError, RETRY_UNLIMITED};
use xen_core::hypercall::HypercallError;

#[derive(Arbitrary, Debug)]
enum Op {
    Target(Vec<u8>),
    TargetPages(u32),
    StaticMax(Option<Vec<u8>>),
    StaticMaxPages(u32),
    Poll,
    Advance(u16),
    XenError(bool),
    XenBudget(Option<u16>),
    KernelBudget(Option<u16>),
    PerCall(Option<u16>),
    AvailableCap(Option<u16>),
    SelfBalloon(bool),
    Committed(u32),
    MaxRetry(u8),
    MaxDelay(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    raw: Vec<u8>,
    map: u16,
    populated_per_mille: u16,
    lent: u8,
    ops: Vec<Op>,
    last_target: u32,
}

fn check_parse(raw: &[u8]) {
    let r = parse_kib(raw);
    let digits = !raw.is_empty() && raw.iter().all(u8::is_ascii_digit);
    match r {
        Ok(k) => {
            assert!(digits && raw.len() <= MAX_LEN && k.get() <= MAX_KIB);
            let s = core::str::from_utf8(raw).unwrap();
            assert_eq!(s.parse::<u64>().ok(), Some(k.get()));
        }
        Err(TargetError::Empty) => assert!(raw.is_empty()),
        Err(TargetError::TooLong) => assert!(raw.len() > MAX_LEN),
        Err(TargetError::Negative) => assert_eq!(raw.first(), Some(&b'-')),
        Err(TargetError::NotDecimal) => assert!(!digits),
        Err(TargetError::Overflow) => {
            let s = core::str::from_utf8(raw).unwrap();
            assert!(digits && s.parse::<u64>().is_err());
        }
        Err(TargetError::Huge) => {
            let s = core::str::from_utf8(raw).unwrap();
            assert!(s.parse::<u64>().unwrap() > MAX_KIB);
        }
    }
}

fn kib(pages: u64) -> Vec<u8> {
    (pages * 4).to_string().into_bytes()
}

fn poll_checked(g: &mut SimGuest, b: &mut Balloon, now: u64) {
    let before = b.current();
    b.poll(g, now);
    g.check();
    assert_eq!(b.current(), g.populated());
    assert_eq!(b.held(), g.ballooned);
    let after = b.current();
    match b.ceiling() {
        None => assert_eq!(after, before, "moved without a static-max"),
        Some(c) => {
            if after > before {
                assert!(after <= c, "grew to {after} above the ceiling {c}");
            }
        }
    }
    if after < before {
        assert!(
            after >= b.floor(),
            "shrank to {after} below the floor {}",
            b.floor()
        );
    }
}

fuzz_target!(|input: Input| {
    check_parse(&input.raw);

    let map = u64::from(input.map % 4096 + 1) * 64;
    let populated = map * u64::from(input.populated_per_mille % 1001) / 1000;
    let lent = u64::from(input.lent).min(map - populated);
    let used = populated / 8;
    let mut g = SimGuest::new(map, populated, used, map * 2);
    g.ballooned -= lent;
    g.lent = lent;
    let mut b = Balloon::new(
        Config::default(),
        Init {
            current_pages: g.populated(),
            held_pages: g.ballooned,
            max_pages: map,
            reserve_pages: g.reserve,
        },
    );
    let mut now = 0u64;
    for op in input.ops.iter().take(256) {
        match op {
            Op::Target(raw) => {
                check_parse(raw);
                let _ = b.set_target(raw, now);
            }
            Op::TargetPages(p) => {
                let _ = b.set_target(&kib(u64::from(*p) % (2 * map + 1)), now);
            }
            Op::StaticMax(raw) => {
                let _ = b.set_static_max(raw.as_deref(), now);
            }
            Op::StaticMaxPages(p) => {
                let _ = b.set_static_max(Some(&kib(u64::from(*p) % (2 * map + 1))), now);
            }
            Op::Poll => {
                for _ in 0..8 {
                    poll_checked(&mut g, &mut b, now);
                }
            }
            Op::Advance(ms) => now += u64::from(*ms),
            Op::XenError(on) => g.xen_error = on.then_some(HypercallError::Errno(12)),
            Op::XenBudget(n) => g.xen_decrease_budget = n.map(u64::from),
            Op::KernelBudget(n) => g.kernel_spare_budget = n.map(u64::from),
            Op::PerCall(n) => g.max_per_call = n.map(usize::from),
            Op::AvailableCap(n) => g.available_cap = n.map(u64::from),
            Op::SelfBalloon(on) => b.set_self_balloon(*on, now),
            Op::Committed(c) => g.committed = u64::from(*c) % (2 * map + 1),
            Op::MaxRetry(n) => b.set_max_retry_count(u32::from(*n)),
            Op::MaxDelay(s) => b.set_max_schedule_delay(u32::from(*s)),
        }
    }

    // Faults stop; a valid ceiling and a last target: the balloon must settle there.
    g.xen_error = None;
    g.xen_decrease_budget = None;
    g.kernel_spare_budget = None;
    g.max_per_call = None;
    g.available_cap = None;
    b.set_self_balloon(false, now);
    b.set_max_retry_count(RETRY_UNLIMITED);
    b.set_max_schedule_delay(1);
    let _ = b.set_static_max(Some(&kib(map)), now);
    let _ = b.set_target(&kib(u64::from(input.last_target) % (2 * map + 1)), now);
    for _ in 0..100_000 {
        poll_checked(&mut g, &mut b, now);
        if b.stats().state == State::Idle {
            break;
        }
        now += 1000;
    }
    let s = b.stats();
    assert_eq!(s.state, State::Idle, "did not settle: {b:?}");
    assert_eq!(s.current_pages, s.effective_target_pages);
});
