#!/bin/sh
# Build the Rust-enabled Linux 6.12 kernel (dom0 and PV domU) from Debian's linux-source-6.12,
# cached outside the clone under $XEN_PV_RS_CACHE (default /var/cache/xen-pv-rs), keyed by the
# source version, our config fragment and the toolchain. A warm run only prints the path.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

t0=$(now)
key=$(kernel_key)
kdir=$(kernel_dir)
if [ -f "$kdir/.xen-pv-rs-built" ]; then
    stage "kernel: cached build $kdir (key $key)" "$t0"
    exit 0
fi

rm -rf "$kdir.tmp"
mkdir -p "$kdir.tmp"
echo "kernel: extracting $KSRC_TARBALL"
tar -xJf "$KSRC_TARBALL" -C "$kdir.tmp" --strip-components=1
# Our kernel patches (qemu-tests/patches/, each explains itself); they are part of the cache key.
for p in "$here"/patches/*.patch; do
    [ -f "$p" ] || continue
    echo "kernel: applying $(basename "$p")"
    patch -s -p1 -d "$kdir.tmp" < "$p"
done
stage "kernel: extract" "$t0"

t1=$(now)
cd "$kdir.tmp"
make -s $(kmake_args) tinyconfig
scripts/kconfig/merge_config.sh -m .config "$here/kernel.config" >/dev/null
make -s $(kmake_args) olddefconfig
make -s $(kmake_args) rustavailable
# olddefconfig silently drops what it cannot satisfy: insist on every =y/=m we asked for.
bad=0
grep -E '^CONFIG_[A-Z0-9_]+=[ym]$' "$here/kernel.config" | while IFS= read -r want; do
    grep -qx "$want" .config || { echo "kernel: config lost $want" >&2; echo x; }
done | grep -q x && bad=1
grep -qx 'CONFIG_XEN_BALLOON=y' .config && { echo "kernel: CONFIG_XEN_BALLOON must be off" >&2; bad=1; }
[ "$bad" = 0 ] || exit 1
stage "kernel: configure" "$t1"

t2=$(now)
make $(kmake_args) -j"$(nproc)" bzImage modules > build.log 2>&1 || { tail -50 build.log; exit 1; }
stage "kernel: bzImage + modules" "$t2"
touch .xen-pv-rs-built
cd /
rm -rf "$kdir"
mv "$kdir.tmp" "$kdir"
stage "kernel: total" "$t0"
