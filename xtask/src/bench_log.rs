//! What the QEMU benchmarks (`cargo xtask bench blk`, `bench net`) share: running the scenario,
//! refusing a log whose run did not finish, reading `key=value` fields, and min/median/max.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the QEMU scenario `scenario` (unless `report_only`) and returns the path of its serial
/// log. A scenario that fails is an error: no ratio is printed from it.
pub fn run_scenario(scenario: &str, report_only: bool) -> Result<PathBuf, String> {
    let root = crate::root();
    let log = root.join("results").join(scenario).join("serial.log");
    if report_only {
        return Ok(log);
    }
    let status = Command::new("sh")
        .arg(root.join("qemu-tests/run.sh"))
        .arg(scenario)
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run the {scenario} scenario: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the {scenario} scenario failed (logs in results/{scenario}/); no ratio"
        ));
    }
    Ok(log)
}

/// The text of `log`, if its run of `scenario` finished with a PASS; otherwise an error, so no
/// report is made from an unfinished or failed run (also with `--report`).
pub fn finished_log(log: &Path, scenario: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let verdict = format!("XEN-PV-RS-RESULT {scenario} PASS");
    if !text.lines().any(|l| l.trim_end() == verdict) {
        return Err(format!(
            "{}: the run did not finish with a PASS; refusing to report on it",
            log.display()
        ));
    }
    Ok(text)
}

/// The value of `key=value` among a line's words.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// `(min, median, max)`; NaN for none.
pub fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (v[0], med, v[n - 1])
}

/// One job's line from the guest (`BENCH driver=D round=R test=T front=F ...`): its driver
/// label, test and round, and the rest of the line for the job's own figures ([`field`]).
pub struct JobLine<'a> {
    /// The driver label the run was for.
    pub driver: &'a str,
    /// The job.
    pub test: &'a str,
    /// The round.
    pub round: u32,
    /// The line from `driver=` on.
    pub rest: &'a str,
}

/// What a benchmark log's BENCH lines say, each run's drivers checked.
pub struct Proven<'a> {
    /// The guest's job lines, in order.
    pub jobs: Vec<JobLine<'a>>,
    /// (driver label, round) -> the backend's events received in dom0 over the run (from its
    /// `BENCH-DOM0` line, which proves the backend driver).
    pub backend_events: std::collections::BTreeMap<(String, u32), f64>,
    /// Every line that is unreadable or names a driver other than the label's.
    pub problems: Vec<String>,
}

/// Reads the guest's `BENCH` lines and dom0's `BENCH-DOM0` lines of `text`. `drivers` lists
/// (label, frontend driver, backend driver): a job line must name its label's frontend driver
/// (`front=`) and a dom0 line its backend driver (`back=`), or it is a problem.
pub fn proven_lines<'a>(text: &'a str, drivers: &[(&str, &str, &str)]) -> Proven<'a> {
    let mut p = Proven {
        jobs: Vec::new(),
        backend_events: std::collections::BTreeMap::new(),
        problems: Vec::new(),
    };
    let expected = |d: &str| drivers.iter().find(|(l, _, _)| *l == d).copied();
    for line in text.lines() {
        if let Some(rest) = line.split("BENCH-DOM0 ").nth(1) {
            let (Some(d), Some(r), Some(back)) = (
                field(rest, "driver"),
                field(rest, "round").and_then(|v| v.parse::<u32>().ok()),
                field(rest, "back"),
            ) else {
                p.problems.push(format!("unreadable line: {line}"));
                continue;
            };
            match expected(d) {
                Some((_, _, want)) if want == back => {}
                _ => p
                    .problems
                    .push(format!("round {r} {d}: served by backend driver `{back}`")),
            }
            let ev = field(rest, "backend_events").and_then(|v| v.parse::<f64>().ok());
            p.backend_events
                .insert((d.to_string(), r), ev.unwrap_or(f64::NAN));
        } else if line.starts_with("{domu}") {
            let Some(rest) = line.split("BENCH ").nth(1) else {
                continue;
            };
            let (Some(d), Some(t), Some(r), Some(front)) = (
                field(rest, "driver"),
                field(rest, "test"),
                field(rest, "round").and_then(|v| v.parse::<u32>().ok()),
                field(rest, "front"),
            ) else {
                p.problems.push(format!("unreadable line: {line}"));
                continue;
            };
            match expected(d) {
                Some((_, want, _)) if want == front => {}
                _ => p.problems.push(format!(
                    "round {r} {d} {t}: served by frontend driver `{front}`"
                )),
            }
            p.jobs.push(JobLine {
                driver: d,
                test: t,
                round: r,
                rest,
            });
        }
    }
    p
}

/// Checks that every label of `drivers` has rounds `1..=rounds` of every test in `tests` and a
/// `BENCH-DOM0` line for each round; adds a problem for each gap.
pub fn check_rounds<J>(
    jobs: &std::collections::BTreeMap<(String, String), Vec<J>>,
    round_of: impl Fn(&J) -> u32,
    backend_events: &std::collections::BTreeMap<(String, u32), f64>,
    drivers: &[(&str, &str, &str)],
    tests: &[&str],
    rounds: u32,
    problems: &mut Vec<String>,
) {
    let want: Vec<u32> = (1..=rounds).collect();
    for (d, _, _) in drivers {
        for t in tests {
            let mut got: Vec<u32> = jobs
                .get(&(d.to_string(), t.to_string()))
                .map(|js| js.iter().map(&round_of).collect())
                .unwrap_or_default();
            got.sort_unstable();
            if got != want {
                problems.push(format!("{d} {t}: rounds {got:?}, want {want:?}"));
            }
        }
        for r in 1..=rounds {
            if !backend_events.contains_key(&(d.to_string(), r)) {
                problems.push(format!(
                    "{d} round {r}: no BENCH-DOM0 line (backend unproven)"
                ));
            }
        }
    }
}
