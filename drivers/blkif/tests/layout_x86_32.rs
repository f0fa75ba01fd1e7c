//! Checks the `x86_32-abi` layouts against the C compiler: Xen's own `io/blkif.h` compiled for
//! i386 (`cc -m32`), where `id` follows a 4-byte header with no padding.
//!
//! The test writes a C file of `_Static_assert`s, one per size and offset our Rust layout
//! claims, and compiles it with `$CC` (default `cc`) `-m32 -ffreestanding -fsyntax-only`
//! (no 32-bit libc needed). A compile failure names the assertion that failed.

use core::mem::{offset_of, size_of};
use std::fmt::Write as _;
use std::process::Command;
use xen_blkif::abi::x86_32::{
    DiscardRequest, IndirectRequest, Request, Response, REQUEST_SIZE, RESPONSE_SIZE,
};

#[test]
fn x86_32_layout_matches_xen_blkif_h_compiled_for_i386() {
    let mut c =
        String::from("#include <stddef.h>\n#include <stdint.h>\n#include <xen/io/blkif.h>\n");
    let mut check = |what: &str, expr: &str, value: usize| {
        writeln!(c, "_Static_assert({expr} == {value}, \"{what}\");").unwrap();
    };
    check("request size", "sizeof(struct blkif_request)", REQUEST_SIZE);
    check(
        "request size",
        "sizeof(struct blkif_request)",
        size_of::<Request>(),
    );
    for (f, off) in [
        ("operation", offset_of!(Request, operation)),
        ("nr_segments", offset_of!(Request, nr_segments)),
        ("handle", offset_of!(Request, handle)),
        ("id", offset_of!(Request, id)),
        ("sector_number", offset_of!(Request, sector_number)),
        ("seg", offset_of!(Request, seg)),
    ] {
        check(f, &format!("offsetof(struct blkif_request, {f})"), off);
    }
    check(
        "response size",
        "sizeof(struct blkif_response)",
        RESPONSE_SIZE,
    );
    for (f, off) in [
        ("id", offset_of!(Response, id)),
        ("operation", offset_of!(Response, operation)),
        ("status", offset_of!(Response, status)),
    ] {
        check(f, &format!("offsetof(struct blkif_response, {f})"), off);
    }
    check(
        "discard size",
        "sizeof(struct blkif_request_discard)",
        size_of::<DiscardRequest>(),
    );
    for (f, off) in [
        ("flag", offset_of!(DiscardRequest, flag)),
        ("id", offset_of!(DiscardRequest, id)),
        ("sector_number", offset_of!(DiscardRequest, sector_number)),
        ("nr_sectors", offset_of!(DiscardRequest, nr_sectors)),
    ] {
        check(
            f,
            &format!("offsetof(struct blkif_request_discard, {f})"),
            off,
        );
    }
    for (f, off) in [
        ("indirect_op", offset_of!(IndirectRequest, indirect_op)),
        ("nr_segments", offset_of!(IndirectRequest, nr_segments)),
        ("id", offset_of!(IndirectRequest, id)),
        ("sector_number", offset_of!(IndirectRequest, sector_number)),
        ("handle", offset_of!(IndirectRequest, handle)),
        (
            "indirect_grefs",
            offset_of!(IndirectRequest, indirect_grefs),
        ),
    ] {
        check(
            f,
            &format!("offsetof(struct blkif_request_indirect, {f})"),
            off,
        );
    }
    // Xen's i386 indirect struct ends after the grants (56 bytes); Linux pads its copy to 64.
    // Both fit the 108-byte slot, and the fields we read are at the same offsets.
    check(
        "indirect end",
        "offsetof(struct blkif_request_indirect, indirect_grefs) + sizeof(((struct blkif_request_indirect *)0)->indirect_grefs)",
        offset_of!(IndirectRequest, _pad2),
    );
    let dir = std::env::temp_dir().join(format!("xen-blkif-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("x86_32.c");
    std::fs::write(&src, &c).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-m32", "-ffreestanding", "-fsyntax-only"])
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "the i386 layout differs from Rust's:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
