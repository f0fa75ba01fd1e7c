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
    make -s -C "$kdir" M="$b" $(kmake_args) XEN_PV_RS_ROOT="$ROOT" modules
    cp "$b"/*.ko "$out"/
done
stage "modules: $(ls "$out" | tr '\n' ' ')" "$t0"
