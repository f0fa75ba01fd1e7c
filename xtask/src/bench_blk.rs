//! `cargo xtask bench blk`: our blkfront and blkback against Linux's, same disk, same boot.
//!
//! Runs the `bench-blk` QEMU scenario (`qemu-tests/scenarios/bench-blk.sh`): one guest, one
//! file-backed disk, driven with the same fio jobs (4 KiB random reads at queue depth 32, 1 MiB
//! sequential reads and writes) first by the Linux C blkfront and by ours behind the Linux C
//! blkback (three rounds, alternating), then by the Linux C blkfront behind the Linux C blkback
//! and behind ours (three rounds, alternating). The guest prints one `BENCH` line per job; this
//! task takes the median of each (driver, job), the events received per request (from
//! `/proc/interrupts`) and our frontend's notifications sent per request (debugfs), and ends
//! with
//!
//! ```text
//! ratio blkfront rust/c iops = X    (4 KiB random reads)
//! ratio blkfront rust/c mbps = Y    (geometric mean of the sequential read and write ratios)
//! ratio blkback rust/c iops = X     (the same, our backend against Linux's)
//! ratio blkback rust/c mbps = Y
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const SCENARIO: &str = "bench-blk";
const IOPS_TEST: &str = "randread-4k-qd32";
const MBPS_TESTS: [&str; 2] = ["seqread-1m", "seqwrite-1m"];

/// One fio job's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Job {
    iops: f64,
    kibps: f64,
    ios: f64,
    events: f64,
}

/// Runs the scenario and reports (`report_only`: reports on the last run's log again).
pub fn run(report_only: bool) -> Result<(), String> {
    let root = crate::root();
    if report_only {
        return report(&root.join("results").join(SCENARIO).join("serial.log"));
    }
    let status = Command::new("sh")
        .arg(root.join("qemu-tests/run.sh"))
        .arg(SCENARIO)
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run the {SCENARIO} scenario: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the {SCENARIO} scenario failed (logs in results/{SCENARIO}/)"
        ));
    }
    report(&root.join("results").join(SCENARIO).join("serial.log"))
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Parses the guest's lines out of the serial log and prints the report.
fn report(log: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut jobs: BTreeMap<(String, String), Vec<Job>> = BTreeMap::new();
    let (mut sent, mut requests) = (0.0, 0.0);
    // The guest's console is copied into the serial log once, tagged `{domu}`.
    for line in text.lines().filter(|l| l.starts_with("{domu}")) {
        if let Some(rest) = line.split("BENCH ").nth(1) {
            let get = |k| field(rest, k).and_then(|v| v.parse::<f64>().ok());
            let (Some(d), Some(t)) = (field(rest, "driver"), field(rest, "test")) else {
                continue;
            };
            let job = Job {
                iops: get("iops").unwrap_or(f64::NAN),
                kibps: get("kibps").unwrap_or(f64::NAN),
                ios: get("ios").unwrap_or(f64::NAN),
                events: get("events").unwrap_or(f64::NAN),
            };
            jobs.entry((d.to_string(), t.to_string()))
                .or_default()
                .push(job);
        } else if let Some(rest) = line.split("BENCH-COUNTERS ").nth(1) {
            let get = |k| field(rest, k).and_then(|v| v.parse::<f64>().ok());
            sent += get("notifications_sent").unwrap_or(0.0);
            requests += get("requests").unwrap_or(0.0);
        }
    }
    if jobs.is_empty() {
        return Err(format!("no BENCH lines in {}", log.display()));
    }
    let med = |d: &str, t: &str, f: fn(&Job) -> f64| -> f64 {
        let v = jobs
            .get(&(d.to_string(), t.to_string()))
            .map(|js| js.iter().map(f).collect())
            .unwrap_or_default();
        median(v)
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
        println!("{side} benchmark: same disk, same boot, {peer}; medians of each job's runs");
        for d in [c, rust] {
            for t in [IOPS_TEST, MBPS_TESTS[0], MBPS_TESTS[1]] {
                let runs = jobs
                    .get(&(d.to_string(), t.to_string()))
                    .map_or(0, Vec::len);
                let ev: f64 = jobs
                    .get(&(d.to_string(), t.to_string()))
                    .map(|js| js.iter().map(|j| j.events / j.ios.max(1.0)).collect())
                    .map(median)
                    .unwrap_or(f64::NAN);
                println!(
                    "  {d:>9} {t:<17} iops {:>9.0}  MB/s {:>7.1}  events received/request {:.3}  ({runs} runs)",
                    med(d, t, |j| j.iops),
                    med(d, t, |j| j.kibps) * 1024.0 / 1e6,
                    ev
                );
            }
        }
        if side == "blkfront" && requests > 0.0 {
            println!(
                "  rust notifications sent/request {:.3} (debugfs, all jobs); C: not measurable from the guest",
                sent / requests
            );
        }
        let iops = med(rust, IOPS_TEST, |j| j.iops) / med(c, IOPS_TEST, |j| j.iops);
        let read = med(rust, MBPS_TESTS[0], |j| j.kibps) / med(c, MBPS_TESTS[0], |j| j.kibps);
        let write = med(rust, MBPS_TESTS[1], |j| j.kibps) / med(c, MBPS_TESTS[1], |j| j.kibps);
        println!("  sequential read rust/c = {read:.2}, sequential write rust/c = {write:.2}");
        ratios.push((side, iops, (read * write).sqrt()));
    }
    // The ratio lines last, together.
    for (side, iops, mbps) in ratios {
        println!("ratio {side} rust/c iops = {iops:.2}");
        println!("ratio {side} rust/c mbps = {mbps:.2}");
    }
    Ok(())
}
