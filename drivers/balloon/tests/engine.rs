//! The balloon engine against the simulated guest: steps, floor, ceiling, back-off, hostile
//! targets, flapping, self-ballooning; page conservation checked after every call.

use xen_balloon::floor::HEADROOM_MIN_WMARKS;
use xen_balloon::sim::{collect_reports, SimGuest};
use xen_balloon::{
    floor_resume_margin, step_pages, Balloon, Config, Event, Init, Next, SelfBalloon, State,
    StopReason, TargetError, BATCH, FLOOR_RECHECK_MS, FLOOR_RESUME_PAGES, RETRY_UNLIMITED,
};
use xen_core::hypercall::HypercallError;

const MIB: u64 = 256;
const KIB_PER_PAGE: u64 = 4;

fn kib(pages: u64) -> Vec<u8> {
    (pages * KIB_PER_PAGE).to_string().into_bytes()
}

/// A guest whose memory map is `map` MiB, `populated` MiB of it backed, 32 MiB in use,
/// `static-max` = the map, Xen with 1 GiB free.
fn setup(map: u64, populated: u64, cfg: Config) -> (SimGuest, Balloon, u64) {
    let g = SimGuest::new(map * MIB, populated * MIB, 32 * MIB, 1024 * MIB);
    let mut b = Balloon::new(
        cfg,
        Init {
            current_pages: g.populated(),
            held_pages: g.ballooned,
            max_pages: map * MIB,
            reserve_pages: g.reserve,
        },
    );
    assert_eq!(b.set_static_max(Some(&kib(map * MIB)), 0), None);
    (g, b, 0)
}

#[test]
fn goes_down_and_up_to_targets() {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    let xen_free = g.xen_free;
    b.set_target(&kib(256 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 256 * MIB);
    assert_eq!(b.stats().last_stop, StopReason::TargetReached);
    assert_eq!(
        g.xen_free,
        xen_free + 256 * MIB,
        "Xen's free memory moved by the same amount"
    );
    b.set_target(&kib(512 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 512 * MIB);
    assert_eq!(g.xen_free, xen_free);
    let s = b.stats();
    assert_eq!((s.pages_given, s.pages_taken), (256 * MIB, 256 * MIB));
    assert_eq!((s.balloon_low, s.balloon_high), (0, 0));
}

#[test]
fn steps_are_logarithmic_monotone_and_never_overshoot() {
    let (mut g, mut b, now) = setup(512, 512, Config::default());
    let target = 512 * MIB - 5000;
    b.set_target(&kib(target), now);
    let mut prev_current = b.current();
    let mut prev_step = usize::MAX;
    let mut steps = Vec::new();
    loop {
        let p = b.poll(&mut g, now);
        g.check();
        let moved = (prev_current - b.current()) as usize;
        assert!(b.current() >= target, "overshot");
        if moved > 0 {
            assert_eq!(moved, step_pages(prev_current - target));
            assert!(moved <= prev_step, "steps grew: {steps:?}");
            steps.push(moved);
            prev_step = moved;
        }
        prev_current = b.current();
        if p.next != Next::Now {
            break;
        }
    }
    assert_eq!(b.current(), target);
    assert_eq!(steps.first(), Some(&BATCH));
    assert!(
        steps.iter().rev().take(3).all(|&s| s < 64),
        "ends gently: {steps:?}"
    );
    assert!(steps.len() < 40, "{steps:?}");
}

#[test]
fn target_changed_midway_redirects() {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    b.set_target(&kib(128 * MIB), now);
    for _ in 0..20 {
        b.poll(&mut g, now);
    }
    let mid = b.current();
    assert!(mid < 512 * MIB && mid > 400 * MIB);
    // Same direction, nearer: stops there, not at the old target.
    b.set_target(&kib(mid - 1000), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), mid - 1000);
    // Back up: no settle wait (`run` allows none), the balloon had stopped.
    b.set_target(&kib(mid), now);
    let before = now;
    g.run(&mut b, &mut now, 0);
    assert_eq!(now, before);
    assert_eq!(b.current(), mid);
}

#[test]
fn target_below_floor_stops_at_floor() {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    let floor = b.floor();
    assert_eq!(floor, xen_balloon::floor_pages(512 * MIB, g.reserve, None));
    let r = b.set_target(&kib(16 * MIB), now).expect("reported");
    assert_eq!(
        r.event,
        Event::TargetBelowFloor {
            requested: 16 * MIB,
            floor
        }
    );
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), floor);
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
    assert_eq!(StopReason::FloorReached.as_str(), "floor-reached");
}

#[test]
fn guest_below_floor_does_not_go_down() {
    // 512 MiB map but only 64 MiB populated: below the floor already.
    let (mut g, mut b, mut now) = setup(512, 64, Config::default());
    assert!(b.floor() > 64 * MIB);
    b.set_target(&kib(32 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 64 * MIB);
    assert_eq!(g.hypercalls, 0);
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
}

/// A 256 MiB guest like the scenario's: 32 MiB of kernel memory, `held` MiB of anonymous
/// memory and tmpfs (an initramfs and a pattern holder), no swap, watermarks of a guest that
/// size (min 2 MiB, low 2.5 MiB); 4 MiB reserve.
fn holding(held: u64) -> (SimGuest, Balloon, u64) {
    let (mut g, b, now) = setup(256, 256, Config::default());
    g.allocate(i64::try_from(held * MIB).unwrap(), true);
    g.min_wmark = 512;
    g.low_wmark = 640;
    (g, b, now)
}

/// What the usage floor should be for the sim guest: everything used but page cache and
/// swap-backed pages swap can take, plus the reserve and `HEADROOM_MIN_WMARKS` times the min
/// watermarks.
fn expected_usage_floor(g: &SimGuest) -> u64 {
    let file_kept = (g.file / 2).min(g.low_wmark);
    g.kernel_used - (g.file - file_kept) - g.anon.min(g.swap_free)
        + g.reserve
        + HEADROOM_MIN_WMARKS * g.min_wmark
}

#[test]
fn floor_counts_unreclaimable_memory_above_the_formula() {
    let (mut g, mut b, mut now) = holding(62);
    let formula = b.floor_formula();
    assert_eq!(
        formula,
        xen_balloon::floor_pages(256 * MIB, g.reserve, None)
    );
    let usage = expected_usage_floor(&g);
    assert_eq!(usage, 94 * MIB + 1024 + HEADROOM_MIN_WMARKS * 512);
    assert!(usage > formula, "the scenario's case: {usage} vs {formula}");
    b.set_target(&kib(48 * MIB), now);
    g.run(&mut b, &mut now, 0);
    let s = b.stats();
    assert_eq!(b.current(), usage, "stopped at the usage floor");
    assert_eq!(s.last_stop, StopReason::FloorReached);
    assert_eq!(
        (s.floor_pages, s.floor_formula_pages, s.floor_usage_pages),
        (usage, formula, Some(usage))
    );
    // What stays free at the floor is the headroom: nothing here is reclaimable.
    assert_eq!(g.kernel_free, g.reserve + HEADROOM_MIN_WMARKS * g.min_wmark);
}

#[test]
fn small_use_leaves_the_formula_as_the_floor() {
    let (mut g, mut b, mut now) = holding(0);
    assert!(expected_usage_floor(&g) < b.floor_formula());
    b.set_target(&kib(16 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), b.floor_formula());
    assert_eq!(b.floor(), b.floor_formula());
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
}

#[test]
fn floor_rises_when_memory_use_grows_while_going_down() {
    let (mut g, mut b, mut now) = holding(62);
    b.set_target(&kib(48 * MIB), now);
    for _ in 0..20 {
        b.poll(&mut g, now);
        g.check();
    }
    let first = b.floor();
    assert!(b.current() > first + 16 * MIB, "still on its way down");
    // A process allocates 10 MiB of anonymous memory mid-way.
    g.allocate(i64::try_from(10 * MIB).unwrap(), true);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.floor(), first + 10 * MIB);
    assert_eq!(b.current(), first + 10 * MIB);
    assert_eq!(b.current(), expected_usage_floor(&g));
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
}

#[test]
fn floor_falls_when_memory_is_freed_while_going_down() {
    let (mut g, mut b, mut now) = holding(62);
    b.set_target(&kib(48 * MIB), now);
    for _ in 0..20 {
        b.poll(&mut g, now);
        g.check();
    }
    let first = b.floor();
    // A process exits: 16 MiB freed.
    g.allocate(-i64::try_from(16 * MIB).unwrap(), true);
    g.run(&mut b, &mut now, 0);
    assert!(first - 16 * MIB > b.floor_formula());
    assert_eq!(b.current(), first - 16 * MIB);
    assert_eq!(b.current(), expected_usage_floor(&g));
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
}

#[test]
fn floor_does_not_move_with_the_balloons_own_pages() {
    let (mut g, mut b, mut now) = holding(62);
    b.set_target(&kib(48 * MIB), now);
    let mut floors = Vec::new();
    loop {
        let p = b.poll(&mut g, now);
        g.check();
        floors.push(b.floor());
        if p.next != Next::Now {
            break;
        }
    }
    assert!(floors.len() > 10);
    assert!(floors.iter().all(|&f| f == floors[0]), "{floors:?}");
    let _ = g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), floors[0]);
}

#[test]
fn resting_at_the_floor_does_not_follow_it_down_without_a_new_target() {
    let (mut g, mut b, mut now) = holding(62);
    b.set_target(&kib(48 * MIB), now);
    g.run(&mut b, &mut now, 0);
    let rest = b.current();
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
    // The floor's estimate drops (a short-lived process exits); polls that no new target
    // caused, a refused target and the same target again move nothing.
    g.allocate(-i64::try_from(MIB).unwrap(), true);
    let calls = g.hypercalls;
    g.run(&mut b, &mut now, 0);
    assert_eq!(
        b.set_target(b"12x", now).map(|r| r.event),
        Some(Event::TargetRejected(TargetError::NotDecimal))
    );
    g.run(&mut b, &mut now, 0);
    b.set_target(&kib(48 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!((b.current(), g.hypercalls), (rest, calls));
    assert!(b.floor() < rest, "the floor did drop: {}", b.floor());
    // A new target starts a new descent, to the floor as it is now.
    b.set_target(&kib(40 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), rest - MIB);
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
    // Going up from the floor is not held back.
    b.set_target(&kib(200 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 200 * MIB);
}

#[test]
fn resting_at_the_floor_follows_it_down_once_it_falls_past_the_margin() {
    let (mut g, mut b, mut now) = holding(62);
    b.set_target(&kib(48 * MIB), now);
    g.run(&mut b, &mut now, 0);
    let rest = b.current();
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
    let margin = floor_resume_margin(rest);
    assert_eq!(
        margin, FLOOR_RESUME_PAGES,
        "a small guest gets the constant"
    );
    // A drop of one page less than the margin is the floor's swing: rechecked, not followed.
    g.allocate(-i64::try_from(margin - 1).unwrap(), true);
    let calls = g.hypercalls;
    for _ in 0..5 {
        now += FLOOR_RECHECK_MS;
        assert_eq!(b.poll(&mut g, now).next, Next::After(FLOOR_RECHECK_MS));
        g.check();
    }
    assert_eq!((b.current(), g.hypercalls), (rest, calls));
    // One page more and the balloon goes on down, to the floor as it is now, and says so.
    g.allocate(-1, true);
    now += FLOOR_RECHECK_MS;
    let reports: Vec<Event> = collect_reports(&mut g, &mut b, &mut now, 0)
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(b.current(), rest - margin);
    assert_eq!(b.current(), expected_usage_floor(&g));
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
    assert!(
        reports.iter().any(|e| matches!(
            e,
            Event::Stopped {
                reason: StopReason::FloorReached,
                current,
                ..
            } if *current == rest - margin
        )),
        "{reports:?}"
    );
}

#[test]
fn the_resume_margin_grows_with_the_guest() {
    assert_eq!(floor_resume_margin(0), FLOOR_RESUME_PAGES);
    assert_eq!(floor_resume_margin(512 * MIB), FLOOR_RESUME_PAGES);
    assert_eq!(floor_resume_margin(4096 * MIB), 64 * MIB);
    assert_eq!(floor_resume_margin(u64::MAX), u64::MAX / 64);
}

#[test]
fn a_peak_of_memory_use_at_the_stop_does_not_strand_the_balloon_above_the_floor() {
    // CI once saw the balloon stop 12 MiB above the floor it read at rest: the floor was
    // evaluated on a peak of memory use as the descent got there.
    let (mut g, mut b, mut now) = holding(62);
    b.set_target(&kib(48 * MIB), now);
    for _ in 0..20 {
        b.poll(&mut g, now);
        g.check();
    }
    let floor = b.floor();
    assert!(b.current() > floor + 16 * MIB, "still on its way down");
    g.allocate(i64::try_from(12 * MIB).unwrap(), true);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), floor + 12 * MIB);
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
    // The peak passes; within one recheck the balloon is down on the floor.
    g.allocate(-i64::try_from(12 * MIB).unwrap(), true);
    now += FLOOR_RECHECK_MS;
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), floor);
    assert_eq!(b.current(), expected_usage_floor(&g));
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
    // A rising floor is not followed up.
    g.allocate(i64::try_from(8 * MIB).unwrap(), true);
    let calls = g.hypercalls;
    now += FLOOR_RECHECK_MS;
    assert_eq!(b.poll(&mut g, now).next, Next::After(FLOOR_RECHECK_MS));
    assert_eq!((b.current(), g.hypercalls), (floor, calls));
}

#[test]
fn descent_stops_on_a_fresh_floor_not_on_the_sample_before_its_last_batch() {
    let (mut g, mut b, now) = holding(62);
    b.set_target(&kib(48 * MIB), now);
    // Down until a batch lands on the floor sampled before it.
    let mut polls = 0;
    while b.current() != b.floor() {
        assert_eq!(b.poll(&mut g, now).next, Next::Now);
        g.check();
        polls += 1;
        assert!(polls < 1000);
    }
    let landed = b.current();
    // That sample was high (a process has exited since): the balloon is not done yet.
    assert_ne!(b.stats().last_stop, StopReason::FloorReached);
    g.allocate(-i64::try_from(MIB).unwrap(), true);
    let mut now = now;
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), landed - MIB);
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
}

#[test]
fn swap_lets_the_balloon_take_anonymous_memory() {
    // Without swap, 36 MiB held puts the usage floor above the formula.
    let (g0, _, _) = holding(36);
    // (The headroom's third min watermark is the 512 pages past the round figure.)
    assert_eq!(expected_usage_floor(&g0), 76 * MIB + 512);
    let (mut g, mut b, mut now) = holding(36);
    assert!(expected_usage_floor(&g0) > b.floor_formula());
    // With 20 MiB of free swap, 20 of those MiB are reclaimable: the formula is the floor.
    g.swap_free = 20 * MIB;
    assert_eq!(expected_usage_floor(&g), 56 * MIB + 512);
    b.set_target(&kib(48 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), b.floor_formula());
    assert_eq!(b.stats().floor_usage_pages, Some(56 * MIB + 512));
}

#[test]
fn page_cache_counts_as_reclaimable_less_what_linux_keeps() {
    let (mut g, mut b, mut now) = holding(62);
    // 20 of the used MiB are page cache: the floor drops by all but the low watermarks.
    g.file = 20 * MIB;
    let usage = expected_usage_floor(&g);
    assert_eq!(usage, 94 * MIB + 2560 - (20 * MIB - 640));
    b.set_target(&kib(48 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), usage.max(b.floor_formula()));
}

#[test]
fn guest_using_more_than_the_usage_floor_allows_does_not_go_down() {
    // 220 of 256 MiB anonymous: unreclaimable use plus headroom is above what it holds.
    let (mut g, mut b, mut now) = holding(220);
    b.set_target(&kib(128 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 256 * MIB);
    assert_eq!(g.hypercalls, 0);
    assert!(b.floor() > 256 * MIB);
    assert_eq!(b.stats().last_stop, StopReason::FloorReached);
    // Going up is not held back by it.
    b.set_target(&kib(256 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.stats().last_stop, StopReason::TargetReached);
}

#[test]
fn self_balloon_stays_above_the_usage_floor() {
    let cfg = Config {
        self_balloon: SelfBalloon {
            enabled: true,
            ..SelfBalloon::default()
        },
        ..Config::default()
    };
    let (mut g, mut b, mut now) = setup(256, 256, cfg);
    g.allocate(i64::try_from(62 * MIB).unwrap(), true);
    g.min_wmark = 512;
    b.set_target(&kib(256 * MIB), now);
    // Nothing committed: self-ballooning heads for the reserve plus its margin, far below
    // what the guest holds in tmpfs and anonymous memory; the usage floor stops it.
    for _ in 0..40 {
        g.run(&mut b, &mut now, 0);
        now += 5000;
        assert!(b.current() >= expected_usage_floor(&g));
    }
    assert_eq!(b.current(), expected_usage_floor(&g));
}

#[test]
fn target_above_static_max_stops_at_ceiling() {
    let (mut g, mut b, mut now) = setup(512, 256, Config::default());
    b.set_static_max(Some(&kib(384 * MIB)), now);
    let r = b.set_target(&kib(1024 * MIB), now).expect("reported");
    assert_eq!(
        r.event,
        Event::TargetClamped {
            requested: 1024 * MIB,
            ceiling: 384 * MIB
        }
    );
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 384 * MIB);
    assert_eq!(b.stats().last_stop, StopReason::CeilingReached);
    assert_eq!(b.stats().ceiling_pages, Some(384 * MIB));
}

#[test]
fn growth_stops_when_balloon_is_empty() {
    let (mut g, mut b, mut now) = setup(512, 256, Config::default());
    b.set_static_max(Some(&kib(1024 * MIB)), now);
    b.set_target(&kib(1024 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 512 * MIB);
    assert_eq!(b.held(), 0);
    assert_eq!(b.stats().last_stop, StopReason::BalloonEmpty);
}

#[test]
fn lent_pages_are_never_touched() {
    let mut g = SimGuest::new(512 * MIB, 256 * MIB, 32 * MIB, 1024 * MIB);
    // The built-in core lends 1000 of the unpopulated frames for grant mappings; the
    // module initialises the engine with the frames it owns only.
    g.ballooned -= 1000;
    g.lent = 1000;
    let mut b = Balloon::new(
        Config::default(),
        Init {
            current_pages: g.populated(),
            held_pages: g.ballooned,
            max_pages: 512 * MIB,
            reserve_pages: g.reserve,
        },
    );
    let mut now = 0;
    b.set_static_max(Some(&kib(512 * MIB)), now);
    b.set_target(&kib(512 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 512 * MIB - 1000);
    assert_eq!(g.lent, 1000);
    assert_eq!(b.stats().last_stop, StopReason::BalloonEmpty);
}

#[test]
fn backoff_delays_double_and_give_up_after_max_retry_count() {
    let (mut g, mut b, now) = setup(512, 512, Config::default());
    g.xen_error = Some(HypercallError::Errno(12));
    b.set_target(&kib(256 * MIB), now);
    let mut waits = Vec::new();
    let mut now = now;
    for _ in 0..4 {
        let p = b.poll(&mut g, now);
        g.check();
        let Next::After(ms) = p.next else {
            panic!("{p:?}")
        };
        // Polling early does nothing.
        assert_eq!(b.poll(&mut g, now + 1).next, Next::After(ms - 1));
        waits.push(ms);
        now += ms;
    }
    assert_eq!(waits, [2000, 4000, 8000, 3_600_000]);
    assert_eq!(b.stats().state, State::Cancelled);
    assert_eq!(b.stats().last_stop, StopReason::XenRefused);
    assert_eq!(
        b.stats().backoff.retry_count,
        1,
        "reset on giving up, as Linux"
    );
    assert_eq!(b.current(), 512 * MIB);
    // A new target wakes it at once.
    g.xen_error = None;
    b.set_target(&kib(300 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 300 * MIB);
}

#[test]
fn backoff_is_capped_and_unlimited_retries_never_give_up() {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    b.set_max_retry_count(RETRY_UNLIMITED);
    b.set_max_schedule_delay(8);
    g.xen_error = Some(HypercallError::NotSupported);
    b.set_target(&kib(256 * MIB), now);
    let mut waits = Vec::new();
    for _ in 0..10 {
        let Next::After(ms) = b.poll(&mut g, now).next else {
            panic!()
        };
        waits.push(ms);
        now += ms;
    }
    assert_eq!(
        waits,
        [2000, 4000, 8000, 8000, 8000, 8000, 8000, 8000, 8000, 8000]
    );
    assert_eq!(b.stats().backoff.retry_count, 11);
    // Success resets the schedule.
    g.xen_error = None;
    b.poll(&mut g, now);
    assert_eq!(
        (
            b.stats().backoff.schedule_delay,
            b.stats().backoff.retry_count
        ),
        (1, 1)
    );
}

#[test]
fn xen_refuses_after_n_pages() {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    g.xen_decrease_budget = Some(1000);
    b.set_target(&kib(256 * MIB), now);
    g.run(&mut b, &mut now, 10_000);
    // Stopped short after exactly 1000 pages; the pages Xen did not take went back to the
    // kernel (checked by `run` after every poll).
    assert_eq!(b.current(), 512 * MIB - 1000);
    assert_eq!(b.stats().state, State::Cancelled);
    assert_eq!(b.stats().last_stop, StopReason::XenRefused);
}

#[test]
fn kernel_cannot_spare_pages() {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    g.kernel_spare_budget = Some(700);
    b.set_target(&kib(256 * MIB), now);
    g.run(&mut b, &mut now, 10_000);
    assert_eq!(b.current(), 512 * MIB - 700);
    assert_eq!(b.stats().last_stop, StopReason::KernelRefused);
    assert_eq!(StopReason::KernelRefused.as_str(), "kernel-refused");
}

#[test]
fn memavailable_caps_each_decrease_and_backs_off_below_reserve() {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    g.available_cap = Some(100);
    b.set_max_retry_count(RETRY_UNLIMITED);
    b.set_target(&kib(500 * MIB), now);
    let start = b.current();
    let p = b.poll(&mut g, now);
    assert_eq!(start - b.current(), 100, "at most MemAvailable per batch");
    assert_eq!(
        p.next,
        Next::After(2000),
        "cut short below the reserve: back off"
    );
    g.available_cap = None;
    now += 2000;
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 500 * MIB);
}

#[test]
fn partial_success_still_arrives() {
    let (mut g, mut b, mut now) = setup(512, 256, Config::default());
    g.max_per_call = Some(7);
    // Up: a partial populate is progress.
    b.set_target(&kib(300 * MIB), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 300 * MIB);
    // Down: each short batch backs off, but with unlimited retries it arrives.
    b.set_max_retry_count(RETRY_UNLIMITED);
    b.set_max_schedule_delay(1);
    b.set_target(&kib(300 * MIB - 100), now);
    g.run(&mut b, &mut now, 1000);
    assert_eq!(b.current(), 300 * MIB - 100);
}

fn no_action(g: &SimGuest, b: &Balloon, before: u64) {
    assert_eq!(b.current(), before);
    assert_eq!(g.hypercalls, 0);
}

fn rejected(raw: &[u8], want: TargetError) {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    let r = b.set_target(raw, now).expect("reported");
    assert_eq!(r.event, Event::TargetRejected(want));
    g.run(&mut b, &mut now, 0);
    no_action(&g, &b, 512 * MIB);
    assert_eq!(b.stats().last_rejected, Some(want));
    // A bad value after a good one leaves the good one in force.
    b.set_target(&kib(400 * MIB), now);
    b.set_target(raw, now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 400 * MIB);
}

#[test]
fn rejects_non_numeric_target() {
    rejected(b"lots", TargetError::NotDecimal);
    rejected(b"262144kB", TargetError::NotDecimal);
    rejected(b"0x40000", TargetError::NotDecimal);
}

#[test]
fn rejects_negative_target() {
    rejected(b"-262144", TargetError::Negative);
}

#[test]
fn rejects_huge_target() {
    rejected(b"9999999999999999999", TargetError::Huge);
}

#[test]
fn rejects_overflowing_target() {
    rejected(b"99999999999999999999", TargetError::Overflow);
    rejected(b"999999999999999999999999", TargetError::TooLong);
}

#[test]
fn rejects_empty_target() {
    rejected(b"", TargetError::Empty);
}

#[test]
fn missing_static_max_takes_no_action() {
    let g0 = SimGuest::new(512 * MIB, 512 * MIB, 32 * MIB, 0);
    let mut g = g0.clone();
    let mut b = Balloon::new(
        Config::default(),
        Init {
            current_pages: g.populated(),
            held_pages: 0,
            max_pages: 512 * MIB,
            reserve_pages: 0,
        },
    );
    let mut now = 0;
    let r = b.set_static_max(None, now).expect("reported");
    assert_eq!(r.event, Event::StaticMaxMissing);
    b.set_target(&kib(256 * MIB), now);
    g.run(&mut b, &mut now, 0);
    no_action(&g, &b, 512 * MIB);
    assert_eq!(b.stats().state, State::Blocked);
    assert_eq!(b.stats().last_stop.as_str(), "no-static-max");
    // A bad one is no better; a good one unblocks.
    let r = b.set_static_max(Some(b"-1"), now).expect("reported");
    assert_eq!(r.event, Event::StaticMaxRejected(TargetError::Negative));
    g.run(&mut b, &mut now, 0);
    no_action(&g, &b, 512 * MIB);
    assert_eq!(b.stats().last_stop, StopReason::BadStaticMax);
    b.set_static_max(Some(&kib(512 * MIB)), now);
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 256 * MIB);
}

/// A little deterministic generator for the flapping tests.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

/// 100 random targets 1 ms apart, three polls after each; returns the page movement's
/// changes of direction, the flapping reports, and the balloon with its guest.
fn flap(cfg: Config) -> (u32, usize, u64, Balloon, SimGuest, u64) {
    let (mut g, mut b, mut now) = setup(1024, 1024, cfg);
    let mut rng = Lcg(7);
    let mut reports = Vec::new();
    let mut last = 0;
    let mut reversals = 0;
    let mut prev_dir = 0i8;
    for _ in 0..100 {
        last = rng.next(200 * MIB, 1024 * MIB);
        reports.extend(b.set_target(&kib(last), now));
        for _ in 0..3 {
            let before = b.current();
            let p = b.poll(&mut g, now);
            g.check();
            reports.extend(p.report);
            let dir = (b.current() as i64 - before as i64).signum() as i8;
            if dir != 0 && prev_dir != 0 && dir != prev_dir {
                reversals += 1;
            }
            if dir != 0 {
                prev_dir = dir;
            }
        }
        now += 1;
    }
    let flaps = reports
        .iter()
        .filter(|r| matches!(r.event, Event::TargetFlapping { .. }))
        .count();
    (reversals, flaps, last, b, g, now)
}

#[test]
fn flapping_target_ends_at_last_without_moving_pages_back_and_forth() {
    let (reversals, flaps, last, mut b, mut g, mut now) = flap(Config::default());
    // 100 changes within 100 ms: the pages changed direction at most once.
    assert!(reversals <= 1, "{reversals} reversals");
    assert_eq!(flaps, 1, "one report, rate-limited");
    g.run(&mut b, &mut now, 1000);
    assert_eq!(b.current(), last.max(b.floor()));
    assert_eq!(b.stats().target_pages, last);
    // Without the settle interval the same sequence does move pages back and forth.
    let no_settle = Config {
        settle_ms: 0,
        ..Config::default()
    };
    let (reversals, ..) = flap(no_settle);
    assert!(reversals > 10, "{reversals} reversals without settling");
}

#[test]
fn hundred_rapid_changes_end_at_the_last_with_nothing_leaked() {
    let (mut g, mut b, mut now) = setup(1024, 768, Config::default());
    let total = g.populated() + g.ballooned;
    let mut rng = Lcg(99);
    let mut last = 0;
    for i in 0..100 {
        last = rng.next(64 * MIB, 1100 * MIB);
        b.set_target(&kib(last), now);
        // Sometimes no poll at all, sometimes many.
        for _ in 0..(i % 5) * 10 {
            b.poll(&mut g, now);
            g.check();
        }
        now += 3;
    }
    let polls = g.run(&mut b, &mut now, 1000);
    assert!(polls < 10_000);
    let expected = last.max(b.floor()).min(1024 * MIB);
    assert_eq!(b.current(), expected);
    assert_eq!(
        g.populated() + g.ballooned,
        total,
        "pages in balloon + guest constant"
    );
    assert_eq!(b.stats().state, State::Idle);
}

#[test]
fn reports_are_rate_limited() {
    let (_, mut b, mut now) = setup(512, 512, Config::default());
    let first = b.set_target(b"x", now).expect("first reported");
    assert_eq!(first.suppressed, 0);
    for _ in 0..49 {
        assert_eq!(b.set_target(b"x", now), None);
        now += 10;
    }
    now += 5000;
    let next = b
        .set_target(b"y", now)
        .expect("reported after the interval");
    assert_eq!(next.suppressed, 49);
    assert!(
        next.to_string().contains("49 similar messages suppressed"),
        "{next}"
    );
}

#[test]
fn stopped_report_says_why() {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    b.set_target(&kib(8 * MIB), now);
    let reports = collect_reports(&mut g, &mut b, &mut now, 0);
    let stop = reports
        .iter()
        .find(|r| matches!(r.event, Event::Stopped { .. }))
        .expect("stop");
    let line = stop.to_string();
    assert!(line.contains("floor-reached"), "{line}");
}

#[test]
fn self_balloon_is_off_by_default() {
    let (mut g, mut b, mut now) = setup(512, 512, Config::default());
    g.committed = MIB;
    assert!(!b.config().self_balloon.enabled);
    assert_eq!(b.poll(&mut g, now).next, Next::Idle);
    g.run(&mut b, &mut now, 100_000);
    assert_eq!(b.current(), 512 * MIB);
    assert_eq!(g.hypercalls, 0);
}

#[test]
fn self_balloon_gives_back_idle_memory_and_takes_it_back() {
    let mut cfg = Config::default();
    cfg.self_balloon.enabled = true;
    let (mut g, mut b, mut now) = setup(1024, 1024, cfg);
    b.set_target(&kib(1024 * MIB), now);
    g.committed = 64 * MIB;
    // A minute of idle: the target walks down 1/8 of the way every 5 s, never below the floor.
    let mut prev = b.current();
    for _ in 0..12 {
        g.run(&mut b, &mut now, 0);
        assert!(b.current() <= prev && b.current() >= b.floor());
        prev = b.current();
        now += 5000;
    }
    let idle = b.current();
    assert!(
        idle < 700 * MIB,
        "gave back idle memory: {} MiB",
        idle / MIB
    );
    // Demand: committed memory jumps; up-hysteresis 1 takes it back in one step, bounded by
    // the toolstack's target.
    g.committed = 2048 * MIB;
    now += 5000;
    g.run(&mut b, &mut now, 0);
    assert_eq!(b.current(), 1024 * MIB);
    // Small changes of committed memory do not churn (hysteresis).
    let calls = g.hypercalls;
    g.committed += 10;
    now += 5000;
    g.run(&mut b, &mut now, 0);
    assert_eq!(g.hypercalls, calls);
    // Off again: back to the toolstack's target only.
    b.set_self_balloon(false, now);
    assert_eq!(b.stats().self_target_pages, None);
}
