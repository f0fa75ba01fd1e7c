# Shared settings and helpers for the harness scripts (sourced, not run).
# shellcheck shell=sh

CACHE=${XEN_PV_RS_CACHE:-/var/cache/xen-pv-rs}
KSRC_TARBALL=/usr/src/linux-source-6.12.tar.xz
BINDGEN=${BINDGEN:-$(command -v bindgen || echo "${CARGO_HOME:-$HOME/.cargo}/bin/bindgen")}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RESULTS=${XEN_PV_RS_RESULTS:-$ROOT/results}

now() { date +%s; }
# stage NAME START: print how long a stage took.
stage() { echo "== $1: $(( $(now) - $2 )) s"; }

kmake_args() {
    echo "LLVM=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc BINDGEN=$BINDGEN"
}

# The cache key: kernel source version, our fragment, and every tool that shapes the build.
kernel_key() {
    {
        dpkg-query -W -f='${Version}\n' linux-source-6.12
        cat "$HERE/kernel.config" "$HERE"/patches/*.patch
        /usr/bin/rustc --version
        "$BINDGEN" --version
        clang --version | head -1
    } | sha256sum | cut -c1-16
}
kernel_dir() { echo "$CACHE/linux-$(kernel_key)"; }

# require_kernel WHO: fail with a clear message unless the kernel for the current key is built.
require_kernel() {
    _k=$(kernel_dir)
    [ -f "$_k/.xen-pv-rs-built" ] && return 0
    if [ -d "$_k.tmp" ]; then
        echo "$1: a kernel build for this configuration is in progress in $_k.tmp;" \
            "wait until $_k/.xen-pv-rs-built exists (do not start a second build)" >&2
    else
        echo "$1: no kernel build at $_k: run 'cargo xtask kernel' first" >&2
    fi
    exit 1
}
