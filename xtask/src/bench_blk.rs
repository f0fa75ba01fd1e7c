//! `cargo xtask bench blk`: our blkfront and blkback against Linux's, same disk, same boot.
//!
//! Runs the `bench-blk` QEMU scenario (`qemu-tests/scenarios/bench-blk.sh`): one guest, one
//! file-backed disk, driven with the same fio jobs (4 KiB random reads at queue depth 32, 1 MiB
//! sequential reads and writes) by the Linux C blkfront and by ours behind the Linux C blkback,
//! then by the Linux C blkfront behind the Linux C blkback and behind ours: five rounds per
//! driver, in alternating order (C R, R C, ...).
//!
//! Every run must prove which drivers served it: the guest names the driver its XenBus device
//! is bound to, dom0 the driver of the backend device. A run served by another driver, a
//! missing round, or a log whose run did not finish with a PASS (also with `--report`) is an
//! error, and no ratio is printed. Each figure is printed as min / median / max of its rounds,
//! with the events received per request on each side from `/proc/interrupts` (the frontend's
//! in the guest; the backend's in dom0, which are the notifications the frontend sent). The
//! report ends with
//!
//! ```text
//! ratio blkfront rust/c iops = X  (spread S: pairings A .. B)   4 KiB random reads
//! ratio blkfront rust/c mbps = Y  (spread S: pairings A .. B)   geometric mean of seq. read and write
//! ratio blkback rust/c iops = X  (...)                          the same, our backend against Linux's
//! ratio blkback rust/c mbps = Y  (...)
//! ```
//!
//! where X and Y are ratios of the medians, a pairing is one round of ours over the same
//! round of Linux's (they ran back to back), and the spread is the worst pairing over the best.

use crate::bench_log::{field, spread};
use std::collections::BTreeMap;
use std::path::Path;

const SCENARIO: &str = "bench-blk";
const IOPS_TEST: &str = "randread-4k-qd32";
const MBPS_TESTS: [&str; 2] = ["seqread-1m", "seqwrite-1m"];

/// Rounds per driver the scenario runs (`ROUNDS` in bench-blk.sh); a run with fewer, for any
/// driver and job, prints no ratio.
const ROUNDS: usize = 5;

/// The four drivers' labels, with the XenBus driver names that must have served their runs:
/// (label, frontend driver in the guest, backend driver in dom0).
const DRIVERS: [(&str, &str, &str); 4] = [
    ("c", "vbd", "vbd"),
    ("rust", "xenpvrs-blkfront", "vbd"),
    ("back-c", "vbd", "vbd"),
    ("back-rust", "vbd", "xenpvrs-blkback"),
];

/// One fio job's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Job {
    round: u32,
    iops: f64,
    kibps: f64,
    ios: f64,
    events: f64,
}

/// Runs the scenario and reports (`report_only`: reports on the last run's log again, if that
/// run finished).
pub fn run(report_only: bool) -> Result<(), String> {
    let log = crate::bench_log::run_scenario(SCENARIO, report_only)?;
    report(&log)
}

/// What the log says, checked: every run accounted for and proven.
#[derive(Debug)]
struct Parsed {
    /// (driver label, job) -> one entry per round.
    jobs: BTreeMap<(String, String), Vec<Job>>,
    /// (driver label, round) -> the backend's events received in dom0 over the round.
    backend_events: BTreeMap<(String, u32), f64>,
}

/// Parses the log; any run that is missing, failed, or served by the wrong driver is an
/// error, so no ratio is printed from an incomplete or unproven run.
fn parse(log: &Path) -> Result<Parsed, String> {
    let text = crate::bench_log::finished_log(log, SCENARIO)?;
    let crate::bench_log::Proven {
        jobs: lines,
        backend_events,
        mut problems,
    } = crate::bench_log::proven_lines(&text, &DRIVERS);
    let mut jobs: BTreeMap<(String, String), Vec<Job>> = BTreeMap::new();
    for l in lines {
        let get = |k| field(l.rest, k).and_then(|v| v.parse::<f64>().ok());
        let job = Job {
            round: l.round,
            iops: get("iops").unwrap_or(f64::NAN),
            kibps: get("kibps").unwrap_or(f64::NAN),
            ios: get("ios").unwrap_or(f64::NAN),
            events: get("events").unwrap_or(f64::NAN),
        };
        jobs.entry((l.driver.to_string(), l.test.to_string()))
            .or_default()
            .push(job);
    }
    crate::bench_log::check_rounds(
        &jobs,
        |j| j.round,
        &backend_events,
        &DRIVERS,
        &[IOPS_TEST, MBPS_TESTS[0], MBPS_TESTS[1]],
        ROUNDS as u32,
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(format!(
            "{}: {} problem(s), no ratio:\n  {}",
            log.display(),
            problems.len(),
            problems.join("\n  ")
        ));
    }
    Ok(Parsed {
        jobs,
        backend_events,
    })
}

/// Parses the log and prints the report.
fn report(log: &Path) -> Result<(), String> {
    let p = parse(log)?;
    let runs = |d: &str, t: &str| -> &[Job] {
        p.jobs
            .get(&(d.to_string(), t.to_string()))
            .map_or(&[], Vec::as_slice)
    };
    let by_round = |d: &str, t: &str, f: fn(&Job) -> f64| -> BTreeMap<u32, f64> {
        runs(d, t).iter().map(|j| (j.round, f(j))).collect()
    };
    let mut ratios = Vec::new();
    for (side, c, rust, peer) in [
        ("blkfront", "c", "rust", "Linux C blkback behind both"),
        (
            "blkback",
            "back-c",
            "back-rust",
            "Linux C blkfront in front of both",
        ),
    ] {
        println!(
            "{side} benchmark: same disk, same boot, {peer}; {ROUNDS} rounds per driver in \
             alternating order; min / median / max of the rounds"
        );
        for d in [c, rust] {
            for t in [IOPS_TEST, MBPS_TESTS[0], MBPS_TESTS[1]] {
                let js = runs(d, t);
                let (i0, i1, i2) = spread(js.iter().map(|j| j.iops).collect());
                let (m0, m1, m2) = spread(js.iter().map(|j| j.kibps * 1024.0 / 1e6).collect());
                let (e0, e1, e2) = spread(js.iter().map(|j| j.events / j.ios.max(1.0)).collect());
                println!(
                    "  {d:>9} {t:<17} iops {i0:>7.0} / {i1:>7.0} / {i2:>7.0}   MB/s {m0:>6.1} / {m1:>6.1} / {m2:>6.1}   frontend events/request {e0:.3} / {e1:.3} / {e2:.3}"
                );
            }
            // Notifications the frontend sent, as the backend received them in dom0, over all
            // of a round's jobs.
            let per_req: Vec<f64> = (1..=ROUNDS as u32)
                .filter_map(|r| {
                    let ios: f64 = [IOPS_TEST, MBPS_TESTS[0], MBPS_TESTS[1]]
                        .iter()
                        .filter_map(|t| runs(d, t).iter().find(|j| j.round == r))
                        .map(|j| j.ios)
                        .sum();
                    p.backend_events
                        .get(&(d.to_string(), r))
                        .map(|e| e / ios.max(1.0))
                })
                .collect();
            let (b0, b1, b2) = spread(per_req);
            println!(
                "  {d:>9} backend events/request (notifications the frontend sent, all jobs) {b0:.3} / {b1:.3} / {b2:.3}"
            );
        }
        // Pairings: round r of ours against round r of Linux's (they ran back to back).
        let pairing = |t: &str, f: fn(&Job) -> f64| -> Vec<f64> {
            let (ours, theirs) = (by_round(rust, t, f), by_round(c, t, f));
            ours.iter()
                .filter_map(|(r, v)| theirs.get(r).map(|w| v / w))
                .collect()
        };
        let iops_pairs = pairing(IOPS_TEST, |j| j.iops);
        let read_pairs = pairing(MBPS_TESTS[0], |j| j.kibps);
        let write_pairs = pairing(MBPS_TESTS[1], |j| j.kibps);
        let mbps_pairs: Vec<f64> = read_pairs
            .iter()
            .zip(&write_pairs)
            .map(|(r, w)| (r * w).sqrt())
            .collect();
        let med =
            |d: &str, t: &str, f: fn(&Job) -> f64| spread(runs(d, t).iter().map(f).collect()).1;
        let iops = med(rust, IOPS_TEST, |j| j.iops) / med(c, IOPS_TEST, |j| j.iops);
        let read = med(rust, MBPS_TESTS[0], |j| j.kibps) / med(c, MBPS_TESTS[0], |j| j.kibps);
        let write = med(rust, MBPS_TESTS[1], |j| j.kibps) / med(c, MBPS_TESTS[1], |j| j.kibps);
        println!("  sequential read rust/c = {read:.2}, sequential write rust/c = {write:.2}");
        ratios.push((
            side,
            iops,
            (read * write).sqrt(),
            spread(iops_pairs),
            spread(mbps_pairs),
        ));
    }
    // The ratio lines last, together: the ratio of the medians, then the spread (the worst
    // round-by-round pairing over the best) and the pairings' range.
    for (side, iops, mbps, ip, mp) in ratios {
        println!(
            "ratio {side} rust/c iops = {iops:.2}  (spread {:.2}: pairings {:.2} .. {:.2})",
            ip.0 / ip.2,
            ip.0,
            ip.2
        );
        println!(
            "ratio {side} rust/c mbps = {mbps:.2}  (spread {:.2}: pairings {:.2} .. {:.2})",
            mp.0 / mp.2,
            mp.0,
            mp.2
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log with every run: `drop` removes the lines containing it, `verdict` adds the PASS
    /// line, `wrong_front` has our frontend's runs served by Linux's.
    fn log(drop: Option<&str>, verdict: bool, wrong_front: bool) -> std::path::PathBuf {
        let mut text = String::new();
        for (d, front, back) in DRIVERS {
            for r in 1..=ROUNDS {
                for t in [IOPS_TEST, MBPS_TESTS[0], MBPS_TESTS[1]] {
                    let f = if wrong_front && d == "rust" {
                        "vbd"
                    } else {
                        front
                    };
                    text += &format!(
                        "{{domu}} BENCH driver={d} round={r} test={t} front={f} iops={} kibps=1000 ios=800 events=400\n",
                        100 + r
                    );
                }
                text +=
                    &format!("BENCH-DOM0 driver={d} round={r} back={back} backend_events=1200\n");
            }
        }
        if verdict {
            text += &format!("XEN-PV-RS-RESULT {SCENARIO} PASS\n");
        }
        let text: String = text
            .lines()
            .filter(|l| drop.is_none_or(|p| !l.contains(p)))
            .map(|l| format!("{l}\n"))
            .collect();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("bench-blk-test-{}-{n}.log", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_complete_proven_run_reports() {
        let p = parse(&log(None, true, false)).unwrap();
        assert_eq!(p.jobs.len(), 12);
        assert!(report(&log(None, true, false)).is_ok());
    }

    #[test]
    fn an_unfinished_run_is_refused() {
        assert!(parse(&log(None, false, false))
            .unwrap_err()
            .contains("did not finish"));
    }

    #[test]
    fn a_missing_round_prints_no_ratio() {
        let e = parse(&log(
            Some("driver=rust round=3 test=seqread-1m"),
            true,
            false,
        ))
        .unwrap_err();
        assert!(e.contains("rust seqread-1m: rounds [1, 2, 4, 5]"), "{e}");
    }

    #[test]
    fn a_run_served_by_the_wrong_driver_fails() {
        let e = parse(&log(None, true, true)).unwrap_err();
        assert!(e.contains("served by frontend driver `vbd`"), "{e}");
        let e = parse(&log(
            Some("BENCH-DOM0 driver=back-rust round=2"),
            true,
            false,
        ))
        .unwrap_err();
        assert!(e.contains("back-rust round 2: no BENCH-DOM0 line"), "{e}");
    }
}
