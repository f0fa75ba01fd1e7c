//! `fpu-probe`: checks that a process's vector registers survive context switches.
//!
//! The harness's self-test (scenario `harness-fpu`) runs it in dom0 and in a PV guest at the same
//! time. Each worker process loads all sixteen vector registers with a pattern, spins on integer
//! work with a `sched_yield` in the middle (so the kernel and Xen switch it out and back), stores
//! the registers and compares every 64-bit lane with what it loaded. Xen's lazy FPU switching under
//! QEMU's TCG lost about a third of the lanes within seconds this way; with `spec-ctrl=eager-fpu`
//! none is lost. Even workers use the AVX registers (`ymm0`-`ymm15`, when the CPU and kernel have
//! AVX), odd ones the SSE registers (`xmm0`-`xmm15`) with legacy SSE instructions.
//!
//! ```text
//! fpu-probe SECS WORKERS     run WORKERS processes for SECS seconds; exit 1 if a lane was wrong
//! ```
//!
//! Each worker prints `FPU-PROBE worker=N regs=ymm|xmm rounds=R bad_lanes=B`, the parent a total
//! line `FPU-PROBE total workers=N rounds=R bad_lanes=B`. It is built as a static binary (see
//! `qemu-tests/image.sh`), so it needs nothing from the image but a kernel.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Integer iterations before and after the `sched_yield` of each round.
const SPIN: u64 = 100_000;

/// A pattern word for worker `w`, round `r`, lane `i` (SplitMix64): every lane of every round
/// differs, so a register restored from another process or an older round is caught.
fn pattern(w: u64, r: u64, i: u64) -> u64 {
    let mut z = (w << 48) ^ (r << 8) ^ i;
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The middle of a round, between loading the registers and storing them: spin on integer work,
/// `sched_yield` (syscall 24, which clobbers rax, rcx and r11), spin again. Operands: `{t}` and
/// `{acc}` scratch registers, `{spin}` the iteration count.
macro_rules! switch_out {
    () => {
        concat!(
            "mov {t}, {spin}\n",
            "2:\n",
            "add {acc}, {t}\n",
            "rol {acc}, 7\n",
            "dec {t}\n",
            "jnz 2b\n",
            "mov eax, 24\n",
            "syscall\n",
            "mov {t}, {spin}\n",
            "3:\n",
            "add {acc}, {t}\n",
            "rol {acc}, 7\n",
            "dec {t}\n",
            "jnz 3b",
        )
    };
}

/// One round on the AVX registers: load `src` into ymm0-15, spin, yield, spin, store to `dst`.
///
/// # Safety
/// The CPU and the kernel must support AVX (`is_x86_feature_detected!("avx")`).
#[target_feature(enable = "avx")]
unsafe fn round_ymm(src: &[u64; 64], dst: &mut [u64; 64]) {
    // SAFETY: the caller guarantees AVX; `src` and `dst` are 512 bytes each (16 registers of 32
    // bytes) and unaligned moves need no alignment; every register the block writes is declared
    // (the ymm registers, the two scratch registers, and rax/rcx/r11, which `syscall` clobbers);
    // `sched_yield` (24) takes no arguments and touches no memory of ours.
    unsafe {
        core::arch::asm!(
            "vmovdqu ymm0, [{src}]",
            "vmovdqu ymm1, [{src} + 32]",
            "vmovdqu ymm2, [{src} + 64]",
            "vmovdqu ymm3, [{src} + 96]",
            "vmovdqu ymm4, [{src} + 128]",
            "vmovdqu ymm5, [{src} + 160]",
            "vmovdqu ymm6, [{src} + 192]",
            "vmovdqu ymm7, [{src} + 224]",
            "vmovdqu ymm8, [{src} + 256]",
            "vmovdqu ymm9, [{src} + 288]",
            "vmovdqu ymm10, [{src} + 320]",
            "vmovdqu ymm11, [{src} + 352]",
            "vmovdqu ymm12, [{src} + 384]",
            "vmovdqu ymm13, [{src} + 416]",
            "vmovdqu ymm14, [{src} + 448]",
            "vmovdqu ymm15, [{src} + 480]",
            switch_out!(),
            "vmovdqu [{dst}], ymm0",
            "vmovdqu [{dst} + 32], ymm1",
            "vmovdqu [{dst} + 64], ymm2",
            "vmovdqu [{dst} + 96], ymm3",
            "vmovdqu [{dst} + 128], ymm4",
            "vmovdqu [{dst} + 160], ymm5",
            "vmovdqu [{dst} + 192], ymm6",
            "vmovdqu [{dst} + 224], ymm7",
            "vmovdqu [{dst} + 256], ymm8",
            "vmovdqu [{dst} + 288], ymm9",
            "vmovdqu [{dst} + 320], ymm10",
            "vmovdqu [{dst} + 352], ymm11",
            "vmovdqu [{dst} + 384], ymm12",
            "vmovdqu [{dst} + 416], ymm13",
            "vmovdqu [{dst} + 448], ymm14",
            "vmovdqu [{dst} + 480], ymm15",
            "vzeroupper",
            src = in(reg) src.as_ptr(),
            dst = in(reg) dst.as_mut_ptr(),
            spin = in(reg) SPIN,
            t = out(reg) _,
            acc = out(reg) _,
            out("rax") _, out("rcx") _, out("r11") _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        );
    }
}

/// One round on the SSE registers (legacy encoding): as [`round_ymm`] with xmm0-15.
fn round_xmm(src: &[u64; 64], dst: &mut [u64; 64]) {
    // SAFETY: SSE2 is part of x86_64; `src` and `dst` hold at least 256 bytes (16 registers of
    // 16 bytes); the clobbers are declared as in `round_ymm`.
    unsafe {
        core::arch::asm!(
            "movdqu xmm0, [{src}]",
            "movdqu xmm1, [{src} + 16]",
            "movdqu xmm2, [{src} + 32]",
            "movdqu xmm3, [{src} + 48]",
            "movdqu xmm4, [{src} + 64]",
            "movdqu xmm5, [{src} + 80]",
            "movdqu xmm6, [{src} + 96]",
            "movdqu xmm7, [{src} + 112]",
            "movdqu xmm8, [{src} + 128]",
            "movdqu xmm9, [{src} + 144]",
            "movdqu xmm10, [{src} + 160]",
            "movdqu xmm11, [{src} + 176]",
            "movdqu xmm12, [{src} + 192]",
            "movdqu xmm13, [{src} + 208]",
            "movdqu xmm14, [{src} + 224]",
            "movdqu xmm15, [{src} + 240]",
            switch_out!(),
            "movdqu [{dst}], xmm0",
            "movdqu [{dst} + 16], xmm1",
            "movdqu [{dst} + 32], xmm2",
            "movdqu [{dst} + 48], xmm3",
            "movdqu [{dst} + 64], xmm4",
            "movdqu [{dst} + 80], xmm5",
            "movdqu [{dst} + 96], xmm6",
            "movdqu [{dst} + 112], xmm7",
            "movdqu [{dst} + 128], xmm8",
            "movdqu [{dst} + 144], xmm9",
            "movdqu [{dst} + 160], xmm10",
            "movdqu [{dst} + 176], xmm11",
            "movdqu [{dst} + 192], xmm12",
            "movdqu [{dst} + 208], xmm13",
            "movdqu [{dst} + 224], xmm14",
            "movdqu [{dst} + 240], xmm15",
            src = in(reg) src.as_ptr(),
            dst = in(reg) dst.as_mut_ptr(),
            spin = in(reg) SPIN,
            t = out(reg) _,
            acc = out(reg) _,
            out("rax") _, out("rcx") _, out("r11") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack),
        );
    }
}

/// Runs worker `w` for `secs` seconds; returns (register width, rounds, bad lanes).
fn worker(w: u64, secs: u64) -> (&'static str, u64, u64) {
    let ymm = w % 2 == 0 && std::arch::is_x86_feature_detected!("avx");
    // 16 registers of 4 lanes (ymm) or 2 lanes (xmm).
    let lanes = if ymm { 64 } else { 32 };
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut rounds, mut bad) = (0u64, 0u64);
    let mut src = [0u64; 64];
    let mut dst = [0u64; 64];
    while Instant::now() < end {
        for (i, v) in src.iter_mut().enumerate() {
            *v = pattern(w, rounds, i as u64);
        }
        dst.fill(0);
        if ymm {
            // SAFETY: AVX was detected above.
            unsafe { round_ymm(&src, &mut dst) };
        } else {
            round_xmm(&src, &mut dst);
        }
        let wrong = (0..lanes).filter(|&i| src[i] != dst[i]).count() as u64;
        if wrong > 0 && bad == 0 {
            eprintln!("FPU-PROBE worker={w} round={rounds}: {wrong} of {lanes} lanes wrong");
        }
        bad += wrong;
        rounds += 1;
    }
    (if ymm { "ymm" } else { "xmm" }, rounds, bad)
}

fn usage() -> ExitCode {
    eprintln!("usage: fpu-probe SECS WORKERS");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--worker" {
        let (Ok(w), Ok(secs)) = (args[2].parse(), args[3].parse()) else {
            return usage();
        };
        let (regs, rounds, bad) = worker(w, secs);
        println!("FPU-PROBE worker={w} regs={regs} rounds={rounds} bad_lanes={bad}");
        return if bad == 0 && rounds > 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let (Some(Ok(secs)), Some(Ok(n))) = (
        args.get(1).map(|a| a.parse::<u64>()),
        args.get(2).map(|a| a.parse::<u64>()),
    ) else {
        return usage();
    };
    if args.len() != 3 || n == 0 {
        return usage();
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("fpu-probe: cannot find my own binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Start every worker before waiting for any, so they compete for the CPUs.
    let spawned: Result<Vec<_>, _> = (0..n)
        .map(|w| {
            Command::new(&exe)
                .args(["--worker", &w.to_string(), &secs.to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
        })
        .collect();
    let spawned = match spawned {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fpu-probe: cannot start a worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut rounds, mut bad, mut ok) = (0u64, 0u64, true);
    for child in spawned {
        let out = match child.wait_with_output() {
            Ok(out) => out,
            Err(e) => {
                eprintln!("fpu-probe: lost a worker: {e}");
                ok = false;
                continue;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        ok &= out.status.success();
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .and_then(|v| v.parse::<u64>().ok())
        };
        match (field("rounds="), field("bad_lanes=")) {
            (Some(r), Some(b)) => {
                rounds += r;
                bad += b;
            }
            _ => ok = false,
        }
    }
    println!("FPU-PROBE total workers={n} rounds={rounds} bad_lanes={bad}");
    if ok && bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
