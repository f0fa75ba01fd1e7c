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
    crate::safety::check()?;
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
        qemu_all()?;
    }
    Ok(())
}

/// Builds the kernel (or reuses the cached one), our modules and the images, then runs every
/// QEMU scenario; `run.sh` ends with the table of each scenario's boot-to-verdict time.
///
/// The modules are built with a `CARGO_HOME` that starts empty: the README's commands must work
/// on a machine where cargo never fetched a crate, and the host tests above have filled the
/// usual registry, which would hide a module build that forgets to fetch its own crates.
fn qemu_all() -> Result<(), String> {
    let sh = |script: &str| {
        let mut c = Command::new("sh");
        c.arg(root().join("qemu-tests").join(script))
            .current_dir(root());
        c
    };
    run_cmd(&mut sh("kernel.sh"))?;
    let empty_home = root().join("target/empty-cargo-home");
    let _ = std::fs::remove_dir_all(&empty_home);
    std::fs::create_dir_all(&empty_home)
        .map_err(|e| format!("cannot create {}: {e}", empty_home.display()))?;
    run_cmd(sh("modules.sh").env("CARGO_HOME", &empty_home))?;
    let _ = std::fs::remove_dir_all(&empty_home);
    run_cmd(&mut sh("image.sh"))?;
    run_cmd(sh("run.sh").arg("--all").env("XEN_PV_RS_NO_BUILD", "1"))
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

/// Runs every fuzz target in `fuzz/` for a bounded time: `cargo xtask fuzz-smoke [SECONDS]`
/// (default 30 s each).
///
/// Installs `cargo-fuzz` if it is missing and asks it for the target list, so targets other
/// engineers add to `fuzz/Cargo.toml` are picked up. Only the stable toolchain exists here, and
/// cargo-fuzz passes nightly `-Z` flags: `RUSTC_BOOTSTRAP=1` lets stable accept them. The
/// targets build with AddressSanitizer (and debug assertions and overflow checks, as in the
/// kernel); if ASan cannot build on this machine the run says so and falls back to
/// `--sanitizer none`. A target that panics, trips ASan, or spends over 10 s on one input
/// fails the run.
pub fn fuzz_smoke(args: &[String]) -> Result<(), String> {
    let secs: u64 = match args.first() {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("fuzz-smoke: `{arg}` is not a number of seconds"))?,
        None => 30,
    };
    let fuzz_dir = root().join("fuzz");
    let has_cargo_fuzz = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_cargo_fuzz {
        run_cmd(cargo().args(["install", "--locked", "cargo-fuzz"]))?;
    }
    let cargo_fuzz = || {
        let mut c = cargo();
        c.arg("fuzz").env("RUSTC_BOOTSTRAP", "1");
        c
    };
    let listed = cargo_fuzz()
        .arg("list")
        .arg("--fuzz-dir")
        .arg(&fuzz_dir)
        .output()
        .map_err(|e| format!("cannot run cargo fuzz list: {e}"))?;
    if !listed.status.success() {
        return Err(format!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&listed.stderr)
        ));
    }
    let targets: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        return Err("cargo fuzz list found no targets".into());
    }

    let build = |sanitizer: &str| {
        run_cmd(
            cargo_fuzz()
                .args(["build", "--sanitizer", sanitizer, "--fuzz-dir"])
                .arg(&fuzz_dir),
        )
    };
    let sanitizer = match build("address") {
        Ok(()) => "address",
        Err(e) => {
            eprintln!("fuzz smoke: AddressSanitizer build failed ({e}); using --sanitizer none");
            build("none")?;
            "none"
        }
    };
    eprintln!(
        "fuzz smoke: {} targets, {secs} s each, sanitizer {sanitizer}",
        targets.len()
    );
    for target in &targets {
        run_cmd(
            cargo_fuzz()
                .args(["run", "--sanitizer", sanitizer, "--fuzz-dir"])
                .arg(&fuzz_dir)
                .arg(target)
                .arg("--")
                .arg(format!("-max_total_time={secs}"))
                .arg("-timeout=10"),
        )?;
    }
    eprintln!(
        "fuzz smoke: all {} targets ran {secs} s without a finding",
        targets.len()
    );
    Ok(())
}
