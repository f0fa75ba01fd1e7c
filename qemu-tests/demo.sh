#!/bin/sh
# cargo xtask demo: from a fresh Debian machine to Xen in QEMU with PV devices moving real data.
# Installs what is missing, builds (or reuses) the kernel, our modules and the images, runs the
# demo scenarios and prints a short report of what moved where.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
t0=$(now)
sh "$here/setup.sh"
sh "$here/kernel.sh"
sh "$here/modules.sh"
sh "$here/image.sh"
status=0
XEN_PV_RS_NO_BUILD=1 sh "$here/run.sh" smoke rust-hello || status=$?

echo
echo "================ xen-pv-rs demo report ================"
s=$RESULTS/smoke
if [ -f "$s/guest-domu.log" ]; then
    echo "Xen:   $(grep -a -m1 'Xen version' "$s/serial.log" | sed 's/.*(XEN) //' | tr -d '\r')"
    echo "dom0:  Linux $(sed -n 's/.*DOM0-ALIVE.*kernel=\([^ ]*\).*/\1/p' "$s/serial.log" | head -1) (our Rust-enabled build)"
    echo "guest: PV domU, 256 MiB virtual disk xvda backed by a file in dom0, vif on bridge xenbr0"
    grep -a 'CHECK \(disk-pattern\|fsck-ext4\|net-sha256\|net-bytes\|domu result\)' "$s/serial.log" "$s/guest-domu.log" |
        sed 's/^[^:]*:\[[^]]*\] /  /'
fi
h=$RESULTS/rust-hello
if [ -f "$h/serial.log" ]; then
    echo "rust:  $(grep -a -h 'XENPVRS-HELLO' "$h/serial.log" "$h/guest-domu.log" 2>/dev/null | sed 's/.*XENPVRS-HELLO/xenpvrs_hello:/' | tr -d '\r' | sort -u | tr '\n' ';')"
fi
grep -a -h '^SCENARIO ' "$RESULTS"/*/verdict 2>/dev/null || true
echo "logs:  $RESULTS/<scenario>/{serial,guest-*,xen-dmesg,dom0-dmesg}.log"
echo "time:  $(( $(now) - t0 )) s in all"
exit $status
