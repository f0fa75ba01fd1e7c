#!/bin/sh
# cargo xtask qemu [--list | --all | NAME...]: boot Xen 4.17 under QEMU (TCG) once per scenario
# with the dom0 image, let dom0 run the scenario, collect the logs into results/NAME/ and print
# `SCENARIO NAME PASS` or `SCENARIO NAME FAIL: reason`. Exits non-zero if any scenario failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/guest-lib.sh"

list() { for f in "$here"/scenarios/*.sh; do basename "$f" .sh; done; }
# The test scenarios: all but benchmarks (a scenario file saying BENCHMARK=1 runs only by name,
# e.g. from `cargo xtask bench blk`).
tests() { for f in "$here"/scenarios/*.sh; do grep -q '^BENCHMARK=1' "$f" || basename "$f" .sh; done; }

case "${1:-}" in
--list) list; exit 0 ;;
--all) set -- $(tests) ;;
""|-h|--help) echo "usage: cargo xtask qemu [--list | --all | NAME...]" >&2; exit 2 ;;
esac
for s in "$@"; do
    [ -f "$here/scenarios/$s.sh" ] || { echo "qemu: no scenario '$s' (see --list)" >&2; exit 2; }
done

if [ -z "${XEN_PV_RS_NO_BUILD:-}" ]; then
    sh "$here/kernel.sh" && sh "$here/modules.sh" && sh "$here/image.sh" || {
        for s in "$@"; do echo "SCENARIO $s FAIL: build failed"; done
        exit 1
    }
fi
img=$ROOT/target/qemu

# split_logs DIR: cut the "=== BEGIN name" ... "=== END name" sections of serial.log into files.
split_logs() {
    awk -v dir="$1" '
        { gsub(/\r/, "") }
        /^=== BEGIN / { f = dir "/" $3; next }
        /^=== END / { close(f); f = ""; next }
        f != "" { print > f }' "$1/serial.log"
}

# problems FILE...: what fails a run in these logs: kernel warnings, oopses, BUGs, hung tasks,
# soft lockups and RCU stalls (guest-lib.sh's kernel_warnings), and user-space processes killed
# by a fault. With Xen's FPU state kept (spec-ctrl=eager-fpu below) no process of ours crashes
# under TCG: a crash is a finding, not noise.
problems() {
    cat "$@" 2>/dev/null | grep -av '(XEN)' > "$dir/.all.log"
    kernel_warnings "$dir/.all.log"
    grep -aE 'segfault at [0-9a-f]+ ip |traps: [^ ]+\[[0-9]+\] |: symbol lookup error: |^XEN-PV-RS-DAEMON-DIED ' "$dir/.all.log" | head -3
    rm -f "$dir/.all.log"
}

# Xen's command line. spec-ctrl=eager-fpu: Xen's lazy FPU switching loses vector registers
# under QEMU's TCG (about a third of xmm/ymm lanes wrong within seconds, in dom0 and in guests;
# it showed up as user-space heap corruption and crashes in busybox, fio, xl and xenstored).
# Eager switching keeps them: the harness-fpu scenario proves it on every run. Keep the option
# whatever the CPU model.
XEN_CMDLINE="console=com1 com1=115200 dom0_mem=1024M,max:1024M noreboot loglvl=all guest_loglvl=all spec-ctrl=eager-fpu"
# The CPU model: qemu64 with the SSE4 and POPCNT flags Debian's binaries use. Measured against
# -cpu max (with and without its MPX and PKRU state) in docs/harness.md: the self-test passes
# on all three, and this one reads sequentially three times as fast under TCG and runs the
# data-heavy scenarios faster. XEN_PV_RS_CPU selects another.
CPU=${XEN_PV_RS_CPU:-qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt}
# How long the runner waits after a scenario's TIMEOUT for dom0's overrun report (dom0 dumps its
# blocked tasks and backtraces, each guest's, and our counters at TIMEOUT, then gives its verdict).
GRACE=120

# run_one NAME: boot once for scenario NAME; prints and records the verdict, returns 0 on PASS.
run_one() {
    s=$1
    dir=$RESULTS/$s
    rm -rf "$dir"
    mkdir -p "$dir"
    limit=$(sed -n 's/^TIMEOUT=\([0-9]*\).*/\1/p' "$here/scenarios/$s.sh")
    limit=${limit:-600}
    t0=$(now)
    echo "qemu: $s: booting Xen (cpu $CPU, timeout ${limit} s, logs in $dir)"
    qemu-system-x86_64 -accel "tcg,thread=${XEN_PV_RS_TCG_THREAD:-multi}" -cpu "$CPU" -smp 2 -m 2048 \
        -display none -monitor none -no-reboot -serial "file:$dir/serial.log" \
        -kernel "$img/xen" -append "$XEN_CMDLINE" \
        -initrd "$img/bzImage console=hvc0 earlyprintk=xen xenpvrs.scenario=$s,$img/dom0.cpio.gz" \
        > "$dir/qemu.log" 2>&1 < /dev/null &
    qpid=$!
    # Watch the console: stop at dom0's verdict (dom0 gives one itself when the scenario overruns
    # its TIMEOUT, after dumping the state of every domain), at a crash of Xen or dom0 (with
    # noreboot Xen would sit there until the timeout), or when dom0 gave nothing GRACE s later.
    rc=0
    while kill -0 "$qpid" 2>/dev/null; do
        if grep -aqE "^XEN-PV-RS-RESULT $s |Hardware Dom0 crashed|Panic on CPU|Kernel panic - not syncing" "$dir/serial.log" 2>/dev/null; then
            sleep 3
            break
        fi
        if [ $(( $(now) - t0 )) -ge $((limit + GRACE)) ]; then
            rc=124
            break
        fi
        sleep 2
    done
    kill "$qpid" 2>/dev/null
    wait "$qpid" 2>/dev/null
    secs=$(( $(now) - t0 ))
    split_logs "$dir"
    verdict=$(grep -a "^XEN-PV-RS-RESULT $s " "$dir/serial.log" | tail -1 | tr -d '\r')
    if grep -aq "Hardware Dom0 crashed\|Panic on CPU" "$dir/serial.log"; then
        reason="Xen or dom0 crashed: $(grep -a -m1 'Dom0 (vcpu#[0-9]*) crashed\|Kernel panic\|Panic on CPU' "$dir/serial.log" | tr -d '\r')"
    elif [ "$rc" -eq 124 ]; then
        reason="timeout after ${limit} s, and dom0 gave no overrun report within ${GRACE} s"
    elif [ -z "$verdict" ]; then
        reason="no verdict from dom0 (qemu exit status $rc)"
    elif [ "$verdict" != "XEN-PV-RS-RESULT $s PASS" ]; then
        reason=${verdict#XEN-PV-RS-RESULT $s FAIL: }
    elif [ -n "$(problems "$dir/serial.log" "$dir"/guest-*.log)" ]; then
        reason="in the logs: $(problems "$dir/serial.log" "$dir"/guest-*.log | head -1)"
    else
        reason=""
    fi
    echo "qemu: $s: ${secs} s"
    echo "$s $secs" >> "$RESULTS/.times"
    if [ -z "$reason" ]; then echo "SCENARIO $s PASS"; else echo "SCENARIO $s FAIL: $reason"; fi > "$dir/verdict"
    if [ -z "$reason" ]; then
        echo "SCENARIO $s PASS"
        return 0
    fi
    echo "--- last lines of $dir/serial.log:"
    tail -n 40 "$dir/serial.log" | grep -av '^=== '
    echo "SCENARIO $s FAIL: $reason"
    return 1
}

# One boot per scenario, no retries: a failed scenario is a failure.
mkdir -p "$RESULTS"
: > "$RESULTS/.times"
failed=0
for s in "$@"; do
    run_one "$s" || failed=$((failed + 1))
done
# Boot-to-verdict time of each scenario and the total, slowest first.
echo "qemu: time table (boot to verdict, cpu $CPU)"
sort -k2,2nr "$RESULTS/.times" | awk '{ printf "  %-22s %5d s\n", $1, $2; t += $2 }
    END { printf "  %-22s %5d s (%d min %d s)\n", "total", t, t / 60, t % 60 }'
[ "$failed" -eq 0 ]
