//! `cargo xtask bench balloon`: our balloon against Linux's C balloon, same guest, same boot.
//!
//! Runs the `bench-balloon` QEMU scenario (`qemu-tests/scenarios/bench-balloon.sh`): one guest
//! of 768 MiB in which Linux's C balloon core (driven by the test-only
//! `xenpvrs_cballoon_peer`, one `balloon_set_new_target` per target, which is all Linux's
//! `xen-balloon.c` adds) and `xenpvrs_balloon` each give 512 MiB back to Xen and take it
//! again, [`ROUNDS`] rounds each in alternating order, scrubbing off for both.
//!
//! Every move must name the module that served it; a missing round, a move served by the wrong
//! module, or a log whose run did not finish with a PASS (also with `--report`) is an error,
//! and no ratio is printed. Each direction is printed as min / median / max MB/s over the
//! rounds; the report ends with
//!
//! ```text
//! ratio balloon rust/c mbps = X  (spread S: pairings A .. B)
//! ```
//!
//! X is the geometric mean of the two directions' ratios of medians (giving back, taking
//! again); a pairing is one round of ours over the same round of Linux's (geometric mean of
//! both directions), and the spread is the worst pairing over the best.

use crate::bench_log::{field, spread};
use std::collections::BTreeMap;
use std::path::Path;

const SCENARIO: &str = "bench-balloon";
/// Rounds per implementation (`ROUNDS` in bench-balloon.sh).
const ROUNDS: u32 = 5;
/// (label, module that must have served its moves).
const IMPLS: [(&str, &str); 2] = [("c", "xenpvrs_cballoon_peer"), ("rust", "xenpvrs_balloon")];
const DIRS: [&str; 2] = ["down", "up"];

/// Runs the scenario and reports (`report_only`: reports on the last run's log again, if that
/// run finished).
pub fn run(report_only: bool) -> Result<(), String> {
    let log = crate::bench_log::run_scenario(SCENARIO, report_only)?;
    report(&log)
}

/// (impl, dir) -> round -> MB/s.
type Rates = BTreeMap<(String, String), BTreeMap<u32, f64>>;

/// Parses the log; a missing, unproven or unreadable move is an error.
fn parse(log: &Path) -> Result<Rates, String> {
    let text = crate::bench_log::finished_log(log, SCENARIO)?;
    let mut rates = Rates::new();
    let mut problems = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("{domu}")) {
        let Some(rest) = line.split("BENCH balloon ").nth(1) else {
            continue;
        };
        let num = |k| field(rest, k).and_then(|v| v.parse::<u64>().ok());
        let (Some(i), Some(d), Some(r), Some(kib), Some(ms), Some(module)) = (
            field(rest, "impl"),
            field(rest, "dir"),
            num("round"),
            num("kib"),
            num("ms"),
            field(rest, "module"),
        ) else {
            problems.push(format!("unreadable line: {line}"));
            continue;
        };
        match IMPLS.iter().find(|(l, _)| *l == i) {
            Some((_, want)) if *want == module => {}
            _ => problems.push(format!("round {r} {i} {d}: served by `{module}`")),
        }
        let r = u32::try_from(r).unwrap_or(u32::MAX);
        // MB/s: 10^6 bytes per second; a move faster than the 10 ms clock counts as 10 ms.
        let mbps = (kib as f64 * 1024.0 / 1e6) / (ms.max(10) as f64 / 1000.0);
        rates
            .entry((i.to_string(), d.to_string()))
            .or_default()
            .insert(r, mbps);
    }
    for (i, _) in IMPLS {
        for d in DIRS {
            let rounds: Vec<u32> = rates
                .get(&(i.to_string(), d.to_string()))
                .map(|m| m.keys().copied().collect())
                .unwrap_or_default();
            let want: Vec<u32> = (1..=ROUNDS).collect();
            if rounds != want {
                problems.push(format!("{i} {d}: rounds {rounds:?}, want {want:?}"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{}: {} problem(s), no ratio:\n  {}",
            log.display(),
            problems.len(),
            problems.join("\n  ")
        ));
    }
    Ok(rates)
}

/// The report's lines, the ratio last.
fn lines(rates: &Rates) -> Vec<String> {
    let get = |i: &str, d: &str| rates.get(&(i.to_string(), d.to_string()));
    let mut out = vec![format!(
        "balloon benchmark: one 768 MiB guest, one boot, 512 MiB given back to Xen (down) and \
         taken again (up), {ROUNDS} rounds each in alternating order, scrubbing off for both; \
         MB/s min / median / max"
    )];
    for (i, module) in IMPLS {
        for d in DIRS {
            let (a, m, b) = spread(
                get(i, d)
                    .map(|v| v.values().copied().collect())
                    .unwrap_or_default(),
            );
            out.push(format!(
                "  {i:>4} ({module}) {d:<4} {a:>8.1} / {m:>8.1} / {b:>8.1}"
            ));
        }
    }
    let median = |i: &str, d: &str| {
        spread(
            get(i, d)
                .map(|v| v.values().copied().collect())
                .unwrap_or_default(),
        )
        .1
    };
    let down = median("rust", "down") / median("c", "down");
    let up = median("rust", "up") / median("c", "up");
    out.push(format!(
        "  giving back rust/c = {down:.2}, taking again rust/c = {up:.2}"
    ));
    let pairings: Vec<f64> = (1..=ROUNDS)
        .filter_map(|r| {
            let ratio = |d: &str| Some(get("rust", d)?.get(&r)? / get("c", d)?.get(&r)?);
            Some((ratio("down")? * ratio("up")?).sqrt())
        })
        .collect();
    let (lo, _, hi) = spread(pairings);
    out.push(format!(
        "ratio balloon rust/c mbps = {:.2}  (spread {:.2}: pairings {lo:.2} .. {hi:.2})",
        (down * up).sqrt(),
        lo / hi
    ));
    out
}

fn report(log: &Path) -> Result<(), String> {
    for l in lines(&parse(log)?) {
        println!("{l}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log with every move (ours twice as fast): `drop` removes lines containing it,
    /// `verdict` adds the PASS, `wrong` makes one Rust move name the C peer.
    fn log(drop: Option<&str>, verdict: bool, wrong: bool) -> std::path::PathBuf {
        let mut text = String::from("boot\n");
        for r in 1..=ROUNDS {
            for (i, module) in IMPLS {
                for d in DIRS {
                    let ms = if i == "rust" { 1000 } else { 2000 };
                    let module = if wrong && i == "rust" && r == 2 && d == "up" {
                        "xenpvrs_cballoon_peer"
                    } else {
                        module
                    };
                    text.push_str(&format!(
                        "{{domu}} BENCH balloon impl={i} round={r} dir={d} kib=524288 ms={ms} module={module}\n"
                    ));
                }
            }
        }
        if verdict {
            text.push_str("XEN-PV-RS-RESULT bench-balloon PASS\n");
        }
        if let Some(d) = drop {
            text = text
                .lines()
                .filter(|l| !l.contains(d))
                .map(|l| format!("{l}\n"))
                .collect();
        }
        let path = std::env::temp_dir().join(format!(
            "bench-balloon-{}-{:?}-{verdict}-{wrong}.log",
            std::process::id(),
            drop
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_complete_proven_run_reports_the_ratio() {
        let rates = parse(&log(None, true, false)).unwrap();
        let out = lines(&rates);
        assert!(out
            .last()
            .unwrap()
            .starts_with("ratio balloon rust/c mbps = 2.00  (spread 1.00"));
    }

    #[test]
    fn an_unfinished_run_is_refused() {
        assert!(parse(&log(None, false, false)).is_err());
    }

    #[test]
    fn a_missing_round_prints_no_ratio() {
        assert!(parse(&log(Some("impl=c round=3 dir=up"), true, false)).is_err());
    }

    #[test]
    fn a_move_served_by_the_wrong_module_fails() {
        let e = parse(&log(None, true, true)).unwrap_err();
        assert!(e.contains("served by `xenpvrs_cballoon_peer`"), "{e}");
    }
}
