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
