//! `cargo xtask`: the project's tasks, one entry point for developers and CI.
//!
//! The heavy lifting for the kernel, the images and the QEMU scenarios lives in shell scripts
//! under `qemu-tests/` (they run as root on a Debian machine and are easiest to read as shell);
//! this binary gives them one discoverable front door next to the Rust-side tasks.

mod bench;
mod bench_balloon;
mod bench_blk;
mod bench_log;
mod bench_net;
mod bindgen;
mod safety;
mod test;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  setup              install Debian packages and bindgen-cli (idempotent; needs root)
  kernel             build (or reuse from the cache) the Rust-enabled Linux 6.12 kernel
  modules            build our out-of-tree Rust kernel modules against that kernel
  image              build the dom0 and domU initramfs images
  qemu --list        list the QEMU scenarios, one name a line
  qemu NAME...       boot Xen in QEMU and run the named scenarios (or --all)
  demo               setup, kernel, modules, image, then the demo scenario with a report
  test [--host]      the full test suite: fmt, clippy, rustdoc, host tests, fuzz smoke and,
                     unless --host is given, every QEMU scenario
  fuzz-smoke [SECS]  run every fuzz target for a short bounded time (default 30 s each)
  bench ring         our ring against a pair of rtrb SPSC queues, same process and run
  bench blk          our blkfront against Linux's C blkfront, same disk, same Xen boot
  bench net          our netfront against Linux's C netfront, same vif, same Xen boot
  safety             check that every `unsafe` in the kernel crates has a `// SAFETY:` comment
  bench balloon      our balloon against Linux's C balloon, same guest, same Xen boot
  bindgen            regenerate xen-core/sys/src/bindings.rs from Debian's Xen headers
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let rest = &args[1..];
    let result = match task.as_str() {
        "setup" => script("setup.sh", rest),
        "kernel" => script("kernel.sh", rest),
        "modules" => script("modules.sh", rest),
        "image" => script("image.sh", rest),
        "qemu" => script("run.sh", rest),
        "demo" => script("demo.sh", rest),
        "test" => test::run(rest),
        "fuzz-smoke" => test::fuzz_smoke(rest),
        "bench" => bench::run(rest),
        "bindgen" => bindgen::run(rest),
        "safety" => safety::check(),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs `cmd`, echoing it first; fails with its exit status.
pub fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

/// Runs one of the harness scripts in `qemu-tests/`.
fn script(name: &str, args: &[String]) -> Result<(), String> {
    let path = root().join("qemu-tests").join(name);
    run_cmd(Command::new("sh").arg(path).args(args).current_dir(root()))
}
