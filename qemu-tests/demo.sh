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
XEN_PV_RS_NO_BUILD=1 sh "$here/run.sh" smoke rust-hello echo blkback-rustfront netfront || status=$?

echo
echo "================ xen-pv-rs demo report ================"
s=$RESULTS/smoke
if [ -f "$s/guest-domu.log" ]; then
    echo "Xen:   $(grep -a -m1 'Xen version' "$s/serial.log" | sed 's/.*(XEN) //' | tr -d '\r')"
    echo "dom0:  Linux $(sed -n 's/.*DOM0-ALIVE.*kernel=\([^ ]*\).*/\1/p' "$s/serial.log" | head -1) (our Rust-enabled build)"
    echo "guest: PV domU, 256 MiB virtual disk xvda backed by a file in dom0, vif on bridge xenbr0,"
    echo "       Linux C xen-blkfront/xen-netfront against xen-blkback/xen-netback"
    grep -a -h 'CHECK \(disk-write\|disk-verify\|mkfs-ext4\|fsck-ext4\|net-received\|fs-verify\)\|dom0 received' \
        "$s/guest-domu.log" "$s/serial.log" | grep -v '^{' | sed 's/^\[[^]]*\] /  /'
    echo "  (disk: 256 MiB pseudo-random pattern written and read back byte for byte; net: 64 MiB to dom0 over TCP)"
fi
h=$RESULTS/rust-hello
if [ -f "$h/serial.log" ]; then
    echo "rust:  $(grep -a -h 'XENPVRS-HELLO' "$h/serial.log" "$h/guest-domu.log" 2>/dev/null | sed 's/.*XENPVRS-HELLO/xenpvrs_hello:/' | tr -d '\r' | sort -u | tr '\n' ';')"
fi
e=$RESULTS/echo
if [ -f "$e/serial.log" ]; then
    echo "echo:  our Rust PV pair: xenpvrs_echo_front in the guest, xenpvrs_echo_back in dom0, data in granted pages"
    grep -a -h 'ECHO-RUN[0-9] result\|XENPVRS-ECHO-BACK disconnected\|unload .*clean=' "$e/serial.log" | grep -v '^{' |
        sed 's/^\[[^]]*\] */  /' | tr -d '\r' | head -6
    grep -a -h 'ECHO-RUN[0-9] result\|unload .*clean=' "$e/guest-domu.log" 2>/dev/null | sed 's/^\[[^]]*\] */  guest: /' | head -4
fi
b=$RESULTS/blkback-rustfront
if [ -f "$b/serial.log" ]; then
    echo "blk:   our Rust block drivers on both sides: xenpvrs_blkfront (blk-mq) in the guest,"
    echo "       xenpvrs_blkback (bios on the mapped guest pages) in dom0"
    grep -a -h 'XENPVRS-BLKFRONT xvd[bcd]: connected' "$b/serial.log" | sed 's/.*XENPVRS-BLKFRONT /  /' | tr -d '\r' | head -3
    grep -a -h 'XENPVRS-BLKBACK backend/vbd/[0-9]*/517[24][48]: using' "$b/serial.log" | sed 's/.*XENPVRS-BLKBACK /  /' | tr -d '\r' | head -2
    grep -a -h 'CHECK /dev/xvd[bc]-\(pattern-verify\|fio-verify\|discarded-reads-zero\)\|CHECK \(fsck-after\|xvdd-write-refused\|blkfront-unload-clean\|blkback-unload-clean\)' \
        "$b/serial.log" | grep -v '^{' | sed 's/^.*\(CHECK \)/  \1/; s/^\[[^]]*\] */  /' | tr -d '\r'
    echo "  (xvdb file-backed, xvdc a block device, 128 MiB each: pattern over the whole disk, 4 parallel fio jobs"
    echo "   with crc32c verify, flush, discard, ext4; xvdd read-only; 2 queues of 4-page rings)"
fi
n=$RESULTS/netfront
if [ -f "$n/serial.log" ]; then
    echo "net:   our Rust netfront (xenpvrs_netfront, 2 queues, split event channels) in the guest,"
    echo "       against Linux's C xen-netback in dom0 on bridge xenbr0"
    grep -a -h 'XENPVRS-NETFRONT eth0: connected\|XENPVRS-NETFRONT device/vif/0: receive hashing' "$n/serial.log" |
        sed 's/.*XENPVRS-NETFRONT /  /' | tr -d '\r' | head -2
    grep -a -h 'CHECK netback-hash-mapping' "$n/serial.log" | grep -v '^{' | sed 's/^.*\(CHECK \)/  dom0: \1/' |
        tr -d '\r' | head -1
    grep -a -h 'CHECK \(tcp-up-verified\|tcp-down-verified\|udp-mtu-1500\|udp-mtu-9000\|ping-flood-no-loss\|netfront-unload-clean\)' \
        "$n/guest-domu.log" 2>/dev/null | sed 's/^.*\(CHECK \)/  guest: \1/' | tr -d '\r'
    echo "  (TCP 256 MiB each way verified byte for byte, UDP datagrams of every size class up to 65507 bytes"
    echo "   echoed and compared at MTU 1500 and 9000, a ping flood of 2000; Toeplitz receive hashing over our"
    echo "   control ring, which Linux's netfront does not implement)"
fi
for v in smoke rust-hello echo blkback-rustfront netfront; do cat "$RESULTS/$v/verdict" 2>/dev/null; done
echo "logs:  $RESULTS/<scenario>/{serial,guest-*,xen-dmesg,dom0-dmesg}.log"
echo "time:  $(( $(now) - t0 )) s in all"
exit $status
