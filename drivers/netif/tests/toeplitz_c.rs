//! Checks `ctrl::toeplitz` against the reference hash in Xen's own `io/netif.h`, compiled by the C compiler.
//!
//! The header carries a Toeplitz implementation behind `XEN_NETIF_DEFINE_TOEPLITZ` for
//! operating systems without one. The test writes a C program that includes the header with
//! that macro defined (from Debian's `libxen-dev`, like xen-sys's layout test), hashes a set
//! of pseudo-random keys and inputs (keys shorter and longer than the input needs, empty
//! inputs, inputs longer than any packet header), and compares each result with ours.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use xen_netif::ctrl::{toeplitz, DEFAULT_KEY};

/// Deterministic cases: (key, input).
fn cases() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut x = 0x2545_f491u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut out = Vec::new();
    for key_len in [0usize, 1, 3, 8, 9, 12, 36, 40, 52] {
        for input_len in [0usize, 1, 4, 8, 12, 13, 32, 36, 37, 64] {
            let key: Vec<u8> = (0..key_len).map(|_| next() as u8).collect();
            let input: Vec<u8> = (0..input_len).map(|_| next() as u8).collect();
            out.push((key, input));
        }
    }
    // The RSS key with all-ones and all-zeros inputs.
    out.push((DEFAULT_KEY.to_vec(), vec![0xff; 36]));
    out.push((DEFAULT_KEY.to_vec(), vec![0; 36]));
    out
}

fn c_array(name: &str, i: usize, bytes: &[u8]) -> String {
    // A zero-length array is not C: pad with one unused byte.
    let mut s = format!("static const uint8_t {name}{i}[] = {{");
    for b in bytes {
        write!(s, "{b},").unwrap();
    }
    if bytes.is_empty() {
        s.push('0');
    }
    s.push_str("};\n");
    s
}

#[test]
fn toeplitz_matches_the_reference_in_xen_netif_h() {
    let cases = cases();
    let mut src = String::from(
        "#include <stdint.h>\n#include <stdio.h>\n#include <xen/xen.h>\n\
         #define XEN_NETIF_DEFINE_TOEPLITZ\n#include <xen/io/netif.h>\n",
    );
    for (i, (key, input)) in cases.iter().enumerate() {
        src.push_str(&c_array("key", i, key));
        src.push_str(&c_array("buf", i, input));
    }
    src.push_str("int main(void) {\n");
    for (i, (key, input)) in cases.iter().enumerate() {
        writeln!(
            src,
            "    printf(\"%u\\n\", (unsigned)xen_netif_toeplitz_hash(key{i}, {}, buf{i}, {}));",
            key.len(),
            input.len()
        )
        .unwrap();
    }
    src.push_str("    return 0;\n}\n");

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("xen-netif-toeplitz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c_file = dir.join("toeplitz.c");
    let exe = dir.join("toeplitz");
    std::fs::write(&c_file, &src).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args([
            "-std=gnu11",
            "-Wall",
            "-Werror",
            "-D__XEN_INTERFACE_VERSION__=0x00040e00",
            "-o",
        ])
        .arg(&exe)
        .arg(&c_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(
        out.status.success(),
        "C compile of {} failed ({}):\n{}",
        c_file.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(
        run.status.success(),
        "{} failed: {}",
        exe.display(),
        run.status
    );
    let _ = std::fs::remove_dir_all(&dir);
    let c_hashes: Vec<u32> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(c_hashes.len(), cases.len(), "one line per case");
    let mut nonzero = 0;
    for ((key, input), c) in cases.iter().zip(&c_hashes) {
        assert_eq!(
            toeplitz(key, input),
            *c,
            "key {} bytes, input {} bytes",
            key.len(),
            input.len()
        );
        nonzero += usize::from(*c != 0);
    }
    assert!(nonzero > cases.len() / 2, "the cases exercise the hash");
}
