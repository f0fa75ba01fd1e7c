#!/bin/sh
# Build our out-of-tree Rust kernel modules (drivers/*/kmod, each with a Kbuild file) against the
# cached kernel, with LLVM=1 and the kernel's own rustc and bindgen. Output: target/kmod/*.ko.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

t0=$(now)
kdir=$(kernel_dir)
require_kernel modules
out=$ROOT/target/kmod
# The shared crates' one dependency from crates.io (bitflags) is compiled from cargo's copy of
# its source: fetch what Cargo.lock names (a no-op when the registry has it) and ask cargo where
# it is, so the module build works on a machine where cargo never ran.
(cd "$ROOT" && cargo fetch --locked -q) || { echo "modules: cargo fetch failed" >&2; exit 1; }
ver=$(sed -n 's/^bitflags = { version = "=\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml")
bitflags=$(cd "$ROOT" && cargo metadata --locked --format-version 1 |
    grep -o "\"manifest_path\":\"[^\"]*/bitflags-$ver/Cargo\\.toml\"" | head -1 |
    sed 's/^"manifest_path":"//; s/Cargo\.toml"$/src\/lib.rs/')
[ -f "$bitflags" ] || { echo "modules: cargo metadata names no source for bitflags $ver (the version Cargo.toml pins)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
for kb in "$ROOT"/drivers/*/kmod/Kbuild; do
    [ -f "$kb" ] || continue
    m=$(dirname "$kb")
    # Kbuild writes objects next to the sources; build in a scratch copy of the module folder so
    # the tree stays clean, with ROOT pointing the Kbuild at the shared crates' real sources.
    b=$ROOT/target/kbuild/$(basename "$(dirname "$m")")
    rm -rf "$b"
    mkdir -p "$b"
    cp -r "$m"/. "$b"/
    make -s -C "$kdir" M="$b" $(kmake_args) XEN_PV_RS_ROOT="$ROOT" XEN_BITFLAGS_SRC="$bitflags" modules
    cp "$b"/*.ko "$out"/
done
stage "modules: $(ls "$out" | tr '\n' ' ')" "$t0"
