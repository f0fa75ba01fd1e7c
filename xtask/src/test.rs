//! `cargo xtask test`: everything CI checks, in the order a developer wants failures reported.

use crate::{root, run_cmd};
use std::process::Command;

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs the whole suite; `--host` skips the QEMU scenarios.
pub fn run(args: &[String]) -> Result<(), String> {
    let host_only = args.iter().any(|a| a == "--host");
    run_cmd(cargo().args(["fmt", "--all", "--check"]))?;
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_cmd(
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    run_cmd(cargo().args(["test", "--workspace", "--release"]))?;
    loom()?;
    fuzz_smoke(&[])?;
    if !host_only {
        run_cmd(
            Command::new("sh")
                .arg(root().join("qemu-tests/run.sh"))
                .arg("--all")
                .current_dir(root()),
        )?;
    }
    Ok(())
}

/// Model-checks xen-ring's notification protocol with loom.
///
/// `--cfg loom` changes every crate's build, so it gets its own target directory and does not
/// invalidate the main one.
fn loom() -> Result<(), String> {
    run_cmd(
        cargo()
            .args(["test", "-p", "xen-ring", "--test", "loom", "--release"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", root().join("target/loom")),
    )
}

/// Runs each fuzz target for a bounded time.
pub fn fuzz_smoke(_args: &[String]) -> Result<(), String> {
    eprintln!("fuzz smoke: no fuzz targets yet");
    Ok(())
}
