#!/bin/sh
# Build the dom0 and domU initramfs images from the host's Debian packages: busybox-static, the Xen
# 4.17 tools and their libraries, e2fsprogs, fio and iperf3 (dom0 only: their libraries weigh 70 MB, too much
# for a small guest's initramfs), the cached kernel's modules, our modules and the scenario scripts.
# Output: target/qemu/{dom0,domu}.cpio.gz. Takes seconds; not cached.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

t0=$(now)
kdir=$(kernel_dir)
require_kernel image
kver=$(cat "$kdir/include/config/kernel.release")
out=$ROOT/target/qemu
mkdir -p "$out"

# copy_bin ROOTFS FILE...: copy executables and every shared library they load (and the loader).
copy_bin() {
    r=$1; shift
    for f in "$@"; do
        [ -e "$f" ] || { echo "image: missing $f (run 'cargo xtask setup')" >&2; exit 1; }
        mkdir -p "$r$(dirname "$f")"
        cp -L "$f" "$r$f"
        ldd "$f" 2>/dev/null | awk '/=> \// {print $3} /^[ \t]*\/lib/ {print $1}' | while read -r lib; do
            [ -e "$r$lib" ] && continue
            mkdir -p "$r$(dirname "$lib")"
            cp -L "$lib" "$r$lib"
        done
    done
}

# common_root DIR: busybox, kernel modules (C and ours), scenario scripts and the test library.
common_root() {
    r=$1
    rm -rf "$r"
    mkdir -p "$r"/bin "$r"/sbin "$r"/usr/bin "$r"/usr/sbin "$r"/proc "$r"/sys "$r"/dev "$r"/tmp \
        "$r"/run "$r"/var/log "$r"/lib/x86_64-linux-gnu "$r"/lib64 "$r"/etc "$r"/mnt
    ln -s ../run "$r/var/run"   # libxl and xenconsoled keep locks and state in /var/run/xen
    cp /bin/busybox "$r/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"
    done
    make -s -C "$kdir" $(kmake_args) INSTALL_MOD_PATH="$r" INSTALL_MOD_STRIP=1 modules_install >/dev/null
    if ls "$ROOT"/target/kmod/*.ko >/dev/null 2>&1; then
        mkdir -p "$r/lib/modules/$kver/extra"
        cp "$ROOT"/target/kmod/*.ko "$r/lib/modules/$kver/extra/"
    fi
    depmod -b "$r" "$kver"
    # Module tools: kmod, as on a distribution (modprobe.d, blacklists for aliases), in place
    # of busybox's applets; the hotplug agent that loads drivers by modalias; our modprobe.d
    # file that prefers our drivers over Linux's C ones (drivers/modprobe.d).
    copy_bin "$r" /bin/kmod
    for a in modprobe insmod rmmod lsmod modinfo depmod; do
        ln -sf kmod "$r/bin/$a"
        ln -sf ../bin/kmod "$r/sbin/$a"
    done
    cp "$here/rootfs/sbin/xen-pv-rs-hotplug" "$r/sbin/xen-pv-rs-hotplug"
    chmod +x "$r/sbin/xen-pv-rs-hotplug"
    mkdir -p "$r/etc/modprobe.d"
    cp "$ROOT"/drivers/modprobe.d/*.conf "$r/etc/modprobe.d/"
    copy_bin "$r" /sbin/mke2fs /sbin/e2fsck /usr/sbin/ethtool
    cp "$ROOT/target/release/xudp" "$r/usr/bin/xudp"
    copy_bin "$r" "$ROOT/target/release/xudp"
    cp "$ROOT/target/release/xpattern" "$r/usr/bin/xpattern"
    copy_bin "$r" "$ROOT/target/release/xpattern"
    cp "$ROOT/target/static/fpu-probe" "$r/usr/bin/fpu-probe"
    rm -rf "$r$ROOT"
    ln -sf mke2fs "$r/sbin/mkfs.ext4"
    mkdir -p "$r/scenarios"
    cp "$here"/scenarios/*.sh "$r/scenarios/"
    cp "$here/guest-lib.sh" "$r/lib/xen-pv-rs.sh"
    cp "$here/echo-lib.sh" "$r/lib/xen-pv-rs-echo.sh"
    cp "$here/blk-lib.sh" "$r/lib/xen-pv-rs-blk.sh"
}

# Test tools of ours (tests/src/bin): xs-interop (our XenStore client against the real xenstored)
# xpattern (fast, position-dependent data patterns for disks and streams) and xudp (UDP
# datagrams of every size, echoed and compared).
(cd "$ROOT" && cargo build --release -q -p xen-sim --bin xs-interop --bin xpattern --bin xudp) ||
    { echo "image: building the test tools failed" >&2; exit 1; }
# fpu-probe (tests/src/bin, the harness-fpu self-test): one static binary from one source file,
# with the toolchain cargo uses.
mkdir -p "$ROOT/target/static"
rustc --edition 2021 -O -C target-feature=+crt-static -C strip=symbols \
    -o "$ROOT/target/static/fpu-probe" "$ROOT/tests/src/bin/fpu-probe.rs" ||
    { echo "image: building fpu-probe failed" >&2; exit 1; }

t1=$(now)
common_root "$out/domu-root"
cp "$here/domu-init.sh" "$out/domu-root/init"
(cd "$out/domu-root" && find . | cpio -o -H newc --quiet | gzip -1 > "$out/domu.cpio.gz")
stage "image: domU ($(du -h "$out/domu.cpio.gz" | cut -f1))" "$t1"

t2=$(now)
r=$out/dom0-root
common_root "$r"
X=/usr/lib/xen-4.17/bin
copy_bin "$r" $X/xl $X/xenstored $X/xenconsoled $X/xen-init-dom0 $X/libxl-save-helper \
    /usr/bin/xenstore /usr/lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/bin/fio \
    /usr/bin/iperf3
for t in read write rm ls list exists chmod watch control; do ln -sf xenstore "$r/usr/bin/xenstore-$t"; done
# xs-interop (built above): copied to a stable path, plus any library the tools did not bring.
if [ -e "$ROOT/target/release/xs-interop" ]; then
    cp "$ROOT/target/release/xs-interop" "$r/usr/bin/xs-interop"
    ldd "$r/usr/bin/xs-interop" | awk '/=> \// {print $3}' | while read -r lib; do
        [ -e "$r$lib" ] || { mkdir -p "$r$(dirname "$lib")" && cp -L "$lib" "$r$lib"; }
    done
fi
# xl and xenstored look for these.
mkdir -p "$r"/var/lib/xen "$r"/var/lib/xenstored "$r"/var/log/xen/console "$r"/boot \
    "$r"/etc/xen/scripts
: > "$r/etc/xen/xl.conf"
cp "$here"/rootfs/etc/xen/scripts/* "$r/etc/xen/scripts/"
chmod +x "$r"/etc/xen/scripts/*
cp "$kdir/arch/x86/boot/bzImage" "$r/boot/bzImage"
cp "$out/domu.cpio.gz" "$r/boot/domu.cpio.gz"
cp "$here/dom0-init.sh" "$r/init"
chmod +x "$r/init" "$out/domu-root/init"
(cd "$r" && find . | cpio -o -H newc --quiet | gzip -1 > "$out/dom0.cpio.gz")
cp "$kdir/arch/x86/boot/bzImage" "$out/bzImage"
zcat /boot/xen-4.17-amd64.gz > "$out/xen"
stage "image: dom0 ($(du -h "$out/dom0.cpio.gz" | cut -f1))" "$t2"
stage "image: total" "$t0"
