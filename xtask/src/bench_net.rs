//! `cargo xtask bench net`: our netfront against Linux's, same vif setup, same boot.
//!
//! Runs the `bench-net` QEMU scenario (`qemu-tests/scenarios/bench-net.sh`): one guest behind
//! Linux's C netback, a fresh vif per run, driven with the same iperf3 jobs (TCP each way; 64-byte
//! UDP each way) by the Linux C netfront and by ours, five rounds per driver in alternating order
//! (C R, R C, ...).
//!
//! Every run must prove which drivers served it: each job's line names the driver eth0 was bound
//! to, and dom0 names the driver of the backend device. A run served by another driver, a missing
//! round, or a log whose run did not finish with a PASS (also with `--report`) is an error, and no
//! ratio is printed. Each figure is printed as min / median / max of its rounds, with the events
//! per packet on each side from `/proc/interrupts`. The report ends with
//!
//! ```text
//! ratio netfront rust/c gbps = X  (spread S: pairings A .. B)   geometric mean of TCP up and down
//! ratio netfront rust/c pps = Y  (spread S: pairings A .. B)    geometric mean of 64-byte UDP up and down
//! ```
//!
//! where X and Y are ratios of the medians, a pairing is one round of ours over the same round of
//! Linux's (they ran back to back), and the spread is the worst pairing over the best.

use crate::bench_log::{field, spread};
use std::collections::BTreeMap;
use std::path::Path;

const SCENARIO: &str = "bench-net";
const TCP_TESTS: [&str; 2] = ["tcp-up", "tcp-down"];
const UDP_TESTS: [&str; 2] = ["udp64-up", "udp64-down"];

/// Rounds per driver the scenario runs (`ROUNDS` in bench-net.sh); fewer, for any driver and
/// job, prints no ratio.
const ROUNDS: u32 = 5;

/// The drivers' labels, with the XenBus driver names that must have served their runs: (label,
/// frontend driver in the guest, backend driver in dom0). Linux's netfront and netback both name
/// their XenBus driver `vif`.
const DRIVERS: [(&str, &str, &str); 2] = [("c", "vif", "vif"), ("rust", "xenpvrs-netfront", "vif")];

/// One iperf3 job's figures.
#[derive(Clone, Copy, Debug)]
struct Job {
    round: u32,
    kbps: f64,
    pps: f64,
    packets: f64,
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
    /// (driver label, round) -> the backend's events received in dom0 over the run.
    backend_events: BTreeMap<(String, u32), f64>,
}

fn all_tests() -> impl Iterator<Item = &'static str> {
    TCP_TESTS.into_iter().chain(UDP_TESTS)
}

/// Parses the log; any run that is missing, failed, or served by the wrong driver is an error.
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
            kbps: get("kbps").unwrap_or(f64::NAN),
            pps: get("pps").unwrap_or(f64::NAN),
            packets: get("packets").unwrap_or(f64::NAN),
            events: get("events").unwrap_or(f64::NAN),
        };
        // iperf3's summary had no figure: the job did not measure what it should have.
        let figure = if UDP_TESTS.contains(&l.test) {
            job.pps
        } else {
            job.kbps
        };
        if figure.is_nan() || figure <= 0.0 {
            problems.push(format!(
                "round {} {} {}: no figure in `{}`",
                l.round, l.driver, l.test, l.rest
            ));
        }
        jobs.entry((l.driver.to_string(), l.test.to_string()))
            .or_default()
            .push(job);
    }
    let tests: Vec<&str> = all_tests().collect();
    crate::bench_log::check_rounds(
        &jobs,
        |j| j.round,
        &backend_events,
        &DRIVERS,
        &tests,
        ROUNDS,
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

/// The geometric mean of ours over Linux's for two tests, by medians and by round pairings.
struct Ratio {
    median: f64,
    pairings: (f64, f64, f64),
}

/// Parses the log and prints the report.
fn report(log: &Path) -> Result<(), String> {
    let p = parse(log)?;
    let runs = |d: &str, t: &str| -> &[Job] {
        p.jobs
            .get(&(d.to_string(), t.to_string()))
            .map_or(&[], Vec::as_slice)
    };
    println!(
        "netfront benchmark: same guest, a fresh vif per run, Linux C netback behind both; \
         {ROUNDS} rounds per driver in alternating order; min / median / max of the rounds"
    );
    for (d, _, _) in DRIVERS {
        for t in all_tests() {
            let js = runs(d, t);
            let (g0, g1, g2) = spread(js.iter().map(|j| j.kbps / 1e6).collect());
            let (k0, k1, k2) = spread(js.iter().map(|j| j.pps / 1e3).collect());
            let (e0, e1, e2) = spread(js.iter().map(|j| j.events / j.packets.max(1.0)).collect());
            let figure = if UDP_TESTS.contains(&t) {
                format!("kpps {k0:>7.1} / {k1:>7.1} / {k2:>7.1}")
            } else {
                format!("Gbit/s {g0:>6.3} / {g1:>6.3} / {g2:>6.3}")
            };
            println!(
                "  {d:>4} {t:<10} {figure}   frontend events/packet {e0:.3} / {e1:.3} / {e2:.3}"
            );
        }
        let per_packet: Vec<f64> = (1..=ROUNDS)
            .filter_map(|r| {
                let packets: f64 = all_tests()
                    .filter_map(|t| runs(d, t).iter().find(|j| j.round == r))
                    .map(|j| j.packets)
                    .sum();
                p.backend_events
                    .get(&(d.to_string(), r))
                    .map(|e| e / packets.max(1.0))
            })
            .collect();
        let (b0, b1, b2) = spread(per_packet);
        println!(
            "  {d:>4} backend events/packet (notifications the frontend sent, all jobs) {b0:.3} / {b1:.3} / {b2:.3}"
        );
    }
    let ratio = |tests: [&str; 2], f: fn(&Job) -> f64| -> Ratio {
        let med = |d: &str, t: &str| spread(runs(d, t).iter().map(f).collect()).1;
        let by_round = |d: &str, t: &str| -> BTreeMap<u32, f64> {
            runs(d, t).iter().map(|j| (j.round, f(j))).collect()
        };
        let [a, b] = tests.map(|t| med("rust", t) / med("c", t));
        let pairs = |t: &str| -> BTreeMap<u32, f64> {
            let (ours, theirs) = (by_round("rust", t), by_round("c", t));
            ours.iter()
                .filter_map(|(r, v)| theirs.get(r).map(|w| (*r, v / w)))
                .collect()
        };
        let (pa, pb) = (pairs(tests[0]), pairs(tests[1]));
        let pairings = pa
            .iter()
            .filter_map(|(r, x)| pb.get(r).map(|y| (x * y).sqrt()))
            .collect();
        println!(
            "  {} rust/c = {a:.2}, {} rust/c = {b:.2}",
            tests[0], tests[1]
        );
        Ratio {
            median: (a * b).sqrt(),
            pairings: spread(pairings),
        }
    };
    let gbps = ratio(TCP_TESTS, |j| j.kbps);
    let pps = ratio(UDP_TESTS, |j| j.pps);
    for (name, r) in [("gbps", gbps), ("pps", pps)] {
        let (lo, _, hi) = r.pairings;
        println!(
            "ratio netfront rust/c {name} = {:.2}  (spread {:.2}: pairings {lo:.2} .. {hi:.2})",
            r.median,
            lo / hi
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log with every run: `drop` removes the lines containing it, `verdict` adds the PASS
    /// line, `wrong_front` has our runs served by Linux's netfront.
    fn log(drop: Option<&str>, verdict: bool, wrong_front: bool) -> std::path::PathBuf {
        let mut text = String::new();
        for (d, front, back) in DRIVERS {
            for r in 1..=ROUNDS {
                for t in all_tests() {
                    let f = if wrong_front && d == "rust" {
                        "vif"
                    } else {
                        front
                    };
                    text += &format!(
                        "{{domu}} BENCH driver={d} round={r} test={t} front={f} kbps={} pps={} packets=5000 events=900\n",
                        1000 + r,
                        if t.starts_with("udp") { 2000 + i64::from(r) } else { -1 }
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
            std::env::temp_dir().join(format!("bench-net-test-{}-{n}.log", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_complete_proven_run_reports() {
        let p = parse(&log(None, true, false)).unwrap();
        assert_eq!(p.jobs.len(), 8);
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
        let e = parse(&log(Some("driver=c round=4 test=udp64-down"), true, false)).unwrap_err();
        assert!(e.contains("c udp64-down: rounds [1, 2, 3, 5]"), "{e}");
    }

    #[test]
    fn a_run_served_by_the_wrong_driver_fails() {
        let e = parse(&log(None, true, true)).unwrap_err();
        assert!(e.contains("served by frontend driver `vif`"), "{e}");
        let e = parse(&log(Some("BENCH-DOM0 driver=rust round=2"), true, false)).unwrap_err();
        assert!(e.contains("rust round 2: no BENCH-DOM0 line"), "{e}");
    }

    #[test]
    fn a_job_without_a_figure_fails() {
        let text = std::fs::read_to_string(log(None, true, false))
            .unwrap()
            .replace(
                "driver=rust round=3 test=udp64-up front=xenpvrs-netfront kbps=1003 pps=2003",
                "driver=rust round=3 test=udp64-up front=xenpvrs-netfront kbps=1003 pps=-1",
            );
        let path = std::env::temp_dir().join(format!("bench-net-nofig-{}.log", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let e = parse(&path).unwrap_err();
        assert!(e.contains("round 3 rust udp64-up: no figure"), "{e}");
    }
}
