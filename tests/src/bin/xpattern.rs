//! `xpattern`: writes and verifies a position-dependent pseudo-random pattern, fast.
//!
//! The QEMU scenarios use it to fill a virtual disk or a TCP stream and check every byte that
//! comes back. Each 8-byte word is a hash of (seed, word offset), so a sector that lands at the
//! wrong place, a stale sector and a short stream are all caught, and a failure names the first
//! bad offset. Under QEMU TCG it is much faster than `/dev/urandom` plus `sha256sum`.
//!
//! ```text
//! xpattern gen BYTES SEED            > stream     pattern to stdout
//! xpattern write PATH BYTES SEED                  pattern into a device or a (new) file, then fsync
//! xpattern verify PATH BYTES SEED                 read PATH (or - for stdin) and compare
//! xpattern verify-prefix PATH BYTES SEED          compare the first BYTES bytes of PATH only
//! xpattern hold BYTES SEED STOPFILE               hold the pattern in memory, verify it again
//!                                                 and again until STOPFILE exists
//! ```
//!
//! `hold` is for the balloon scenarios: a process whose memory must survive the guest giving
//! pages back and taking them again. It fails at the first wrong byte.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const CHUNK: usize = 1 << 20;

/// The pattern word at word index `i` (SplitMix64 of the seed and the index).
fn word(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern bytes starting at byte offset `off` (a multiple of 8).
fn fill(seed: u64, off: u64, buf: &mut [u8]) {
    for (k, w) in buf.chunks_mut(8).enumerate() {
        let v = word(seed, off / 8 + k as u64).to_le_bytes();
        w.copy_from_slice(&v[..w.len()]);
    }
}

fn emit(out: &mut dyn Write, bytes: u64, seed: u64) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < bytes {
        let n = usize::try_from((bytes - off).min(CHUNK as u64)).unwrap_or(CHUNK);
        fill(seed, off, &mut buf[..n]);
        out.write_all(&buf[..n])?;
        off += n as u64;
    }
    out.flush()
}

/// Compares the first `bytes` bytes of `input` with the pattern; with `exact`, `input` must
/// also end there.
fn verify(input: &mut dyn Read, bytes: u64, seed: u64, exact: bool) -> Result<(), String> {
    let mut got = vec![0u8; CHUNK];
    let mut want = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < bytes {
        let n = usize::try_from((bytes - off).min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut have = 0;
        while have < n {
            match input.read(&mut got[have..n]) {
                Ok(0) => return Err(format!("short: {} of {bytes} bytes", off + have as u64)),
                Ok(k) => have += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read error at byte {}: {e}", off + have as u64)),
            }
        }
        fill(seed, off, &mut want[..n]);
        if let Some(i) = (0..n).find(|&i| got[i] != want[i]) {
            return Err(format!("mismatch at byte {}", off + i as u64));
        }
        off += n as u64;
    }
    if !exact {
        return Ok(());
    }
    let mut extra = [0u8; 1];
    match input.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(format!("more than {bytes} bytes")),
        Err(e) => Err(format!("read error at the end: {e}")),
    }
}

/// Fills `bytes` of memory with the pattern, then compares all of it with the pattern every
/// 200 ms until `stop` exists; returns the number of full passes. Everything is allocated
/// before the first pass, so the process asks for no memory while it holds the pattern.
fn hold(bytes: u64, seed: u64, stop: &Path) -> Result<u64, String> {
    let len = usize::try_from(bytes).map_err(|_| format!("{bytes} bytes do not fit in memory"))?;
    let mut mem = vec![0u8; len];
    fill(seed, 0, &mut mem);
    let mut want = vec![0u8; CHUNK];
    let mut passes = 0u64;
    loop {
        for (k, got) in mem.chunks(CHUNK).enumerate() {
            let off = (k * CHUNK) as u64;
            let want = &mut want[..got.len()];
            fill(seed, off, want);
            if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
                return Err(format!(
                    "after {passes} passes: mismatch at byte {}",
                    off + i as u64
                ));
            }
        }
        passes += 1;
        if stop.exists() {
            return Ok(passes);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let num = |s: &String| {
        s.parse::<u64>()
            .map_err(|_| format!("`{s}` is not a number"))
    };
    match args {
        [cmd, bytes, seed] if cmd == "gen" => {
            emit(&mut io::stdout().lock(), num(bytes)?, num(seed)?).map_err(|e| e.to_string())?;
            Ok(String::new())
        }
        [cmd, path, bytes, seed] if cmd == "write" => {
            let (bytes, seed) = (num(bytes)?, num(seed)?);
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                // A device keeps its size; a file is written over from the start either way.
                .truncate(false)
                .open(path)
                .map_err(|e| format!("{path}: {e}"))?;
            emit(&mut f, bytes, seed).map_err(|e| format!("{path}: {e}"))?;
            f.sync_all().map_err(|e| format!("{path}: fsync: {e}"))?;
            Ok(format!("wrote {bytes} bytes"))
        }
        [cmd, path, bytes, seed] if cmd == "verify" || cmd == "verify-prefix" => {
            let (bytes, seed) = (num(bytes)?, num(seed)?);
            let exact = cmd == "verify";
            if path == "-" {
                verify(&mut io::stdin().lock(), bytes, seed, exact)?;
            } else {
                let mut f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
                verify(&mut f, bytes, seed, exact)?;
            }
            Ok(format!("verified {bytes} bytes"))
        }
        [cmd, bytes, seed, stop] if cmd == "hold" => {
            let (bytes, seed) = (num(bytes)?, num(seed)?);
            let passes = hold(bytes, seed, Path::new(stop))?;
            Ok(format!("held {bytes} bytes, verified {passes} times"))
        }
        _ => Err(
            "usage: xpattern gen BYTES SEED | write PATH BYTES SEED | verify[-prefix] PATH BYTES SEED | hold BYTES SEED STOPFILE"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(msg) => {
            if !msg.is_empty() {
                eprintln!("xpattern: {msg}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xpattern: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_the_pattern_and_names_the_first_bad_byte() {
        let mut data = Vec::new();
        emit(&mut data, 3 * 4096 + 5, 9).unwrap();
        assert!(verify(&mut data.as_slice(), data.len() as u64, 9, true).is_ok());
        data[4100] ^= 1;
        assert_eq!(
            verify(&mut data.as_slice(), data.len() as u64, 9, true),
            Err("mismatch at byte 4100".into())
        );
    }

    #[test]
    fn verify_catches_a_sector_at_the_wrong_place_and_a_short_stream() {
        let mut data = Vec::new();
        emit(&mut data, 8 * 512, 1).unwrap();
        let (a, b) = data.split_at_mut(512);
        a.copy_from_slice(&b[..512]);
        assert!(verify(&mut data.as_slice(), 8 * 512, 1, true).is_err());
        let mut short = Vec::new();
        emit(&mut short, 1000, 1).unwrap();
        assert!(verify(&mut short.as_slice(), 1001, 1, true).is_err());
    }

    #[test]
    fn hold_verifies_until_the_stop_file_exists() {
        let stop = std::env::temp_dir().join(format!("xpattern-hold-{}", std::process::id()));
        std::fs::write(&stop, b"").unwrap();
        assert_eq!(hold(3 * 4096 + 8, 5, &stop), Ok(1));
        std::fs::remove_file(&stop).unwrap();
    }

    #[test]
    fn verify_prefix_ignores_what_follows_but_exact_does_not() {
        let mut data = Vec::new();
        emit(&mut data, 4096, 3).unwrap();
        data.extend_from_slice(&[0xee; 512]);
        assert!(verify(&mut data.as_slice(), 4096, 3, false).is_ok());
        assert_eq!(
            verify(&mut data.as_slice(), 4096, 3, true),
            Err("more than 4096 bytes".into())
        );
        data[100] ^= 1;
        assert!(verify(&mut data.as_slice(), 4096, 3, false).is_err());
    }
}
