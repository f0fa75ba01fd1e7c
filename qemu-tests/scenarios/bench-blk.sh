# bench-blk (run by `cargo xtask bench blk`, which reads its BENCH lines): in one boot, the same
# file-backed disk (xvdb, 256 MiB in dom0's tmpfs) is driven with the same fio jobs (4 KiB
# random reads at queue depth 32 for IOPS; 1 MiB sequential reads and writes for MB/s) by:
# - frontends (behind the Linux C blkback): the Linux C blkfront and ours, ROUNDS rounds each,
#   in alternating order (C R, R C, C R, ...) so neither always runs first (driver=c / rust);
# - backends (the Linux C blkfront in front): the Linux C blkback and ours, the same way
#   (driver=back-c / back-rust); dom0 swaps the backend module between runs, so the guest
#   first copies fio into memory and dom0 detaches the tools disk.
# Every driver runs with its defaults (Linux's: 1-page rings, queues = vCPUs, 32 indirect
# segments, persistent grants; our blkback offers what Linux's does). Each run gets a fresh
# device: dom0 attaches the disk, the C frontend (loaded first) takes it, and for our
# frontend's runs the guest moves it to ours (unbind, bind); dom0 detaches it after the run.
#
# Each run proves which drivers served it: the guest prints the driver its XenBus device is
# bound to (front=vbd is Linux's, front=xenpvrs-blkfront ours), dom0 the driver of the backend
# device (back=vbd is Linux's, back=xenpvrs-blkback ours); `cargo xtask bench blk` fails the run
# on any mismatch. Events received per request come from /proc/interrupts on each side:
# the guest counts its frontend's interrupts (notifications the backend sent), dom0 its
# backend's (notifications the frontend sent), the same source whichever driver runs.
TIMEOUT=3000
BENCHMARK=1

DISK_BYTES=268435456
RUNTIME=8
ROUNDS=5

# runs: round:driver for every run, in order (both sides compute the same list). Odd rounds
# run Linux's driver first, even rounds ours.
runs() {
    for side in front back; do
        r=1
        while [ $r -le "$ROUNDS" ]; do
            if [ $side = front ]; then c=c rust=rust; else c=back-c rust=back-rust; fi
            if [ $((r % 2)) -eq 1 ]; then echo "$r:$c $r:$rust"; else echo "$r:$rust $r:$c"; fi
            r=$((r + 1))
        done
    done
}
RUNS=$(runs | tr '\n' ' ')

# backend_irqs: events received by backend interrupts in dom0 ("blkif-backend" for Linux's
# blkback, "xenpvrs-blkback" for ours).
backend_irqs() {
    awk '/blkif-backend|xenpvrs-blkback/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts
}

# use_back c|rust (dom0): the backend module new vbd devices go to (no disk is attached).
use_back() {
    case $1 in
    c)
        grep -q '^xenpvrs_blkback ' /proc/modules && { rmmod xenpvrs_blkback || return; }
        modprobe xen-blkback
        ;;
    rust)
        grep -q '^xen_blkback ' /proc/modules && { rmmod xen_blkback || return; }
        modprobe xenpvrs_blkback
        ;;
    esac
}

dom0_main() {
    check modprobe-blkback modprobe xen-blkback || return
    check fill-disk xpattern write /data/bench.img "$DISK_BYTES" 1
    check tools-disk make_tools_disk /data/tools.img || return
    write_domu_cfg domu 320 "vcpus = 2
disk = [ 'format=raw,vdev=xvdc,access=ro,target=/data/tools.img' ]"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    g=$(guest_log domu)
    wait_for "$g" '^BENCH-READY' 120 || { fail "guest not ready"; guest_dump domu; return; }
    wait_for "$g" '^BENCH-TOOLS-COPIED' 120 || { fail "guest did not copy its tools"; return; }
    check detach-tools xl_detach domu 51744 || return
    for run in $RUNS; do
        r=${run%%:*} drv=${run#*:}
        case $drv in
        back-rust) check "use-back-$run" use_back rust || return ;;
        *) check "use-back-$run" use_back c || return ;;
        esac
        check "attach-$run" xl_attach domu 51728 format=raw vdev=xvdb access=rw \
            target=/data/bench.img || return
        ev0=$(backend_irqs)
        if ! wait_for "$g" "^BENCH-(DONE $r $drv|FAILED)" 600; then
            fail "round $r $drv did not finish"
            guest_dump domu
            return
        fi
        ev1=$(backend_irqs)
        bdev=/sys/bus/xen-backend/devices/vbd-$(xl domid domu)-51728
        echo "BENCH-DOM0 driver=$drv round=$r back=$(basename "$(readlink "$bdev/driver")") backend_events=$((ev1 - ev0))"
        check "detach-$run" xl_detach domu 51728 || return
        wait_for "$g" "^BENCH-GONE $r $drv" 120 || { fail "disk did not go ($r $drv)"; return; }
    done
    domu_result domu 300
}

# --- domU ----------------------------------------------------------------------------------

VBD=vbd-51728
C_DRV=/sys/bus/xen/drivers/vbd
RUST_DRV=/sys/bus/xen/drivers/xenpvrs-blkfront

# to_rust: move xvdb from the C driver to ours and wait for the disk.
to_rust() {
    echo "$VBD" > "$C_DRV/unbind" || return 1
    n=60
    while [ -e /dev/xvdb ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
    echo "$VBD" > "$RUST_DRV/bind" || return 1
    wait_for_dev /dev/xvdb 60
}

# evtchn_irqs: events received by block-device interrupts so far ("blkif" for the C driver,
# "xenpvrs-blkfront" for ours; the tools disk's, on the C driver, is nearly idle).
evtchn_irqs() {
    awk '/blkif|xenpvrs-blkfront/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts
}

# run_fio DRIVER ROUND NAME FIO-ARGS...: one job; prints a BENCH line.
run_fio() {
    drv=$1 round=$2 name=$3
    shift 3
    ev0=$(evtchn_irqs)
    if ! fio --name="$name" --filename=/dev/xvdb --direct=1 --ioengine=libaio --time_based \
        --runtime="$RUNTIME" --output-format=terse --terse-version=3 "$@" > /tmp/fio.terse; then
        fail "fio $name with $drv"
        return
    fi
    ev1=$(evtchn_irqs)
    # terse v3: fields 6/7/8 are read KiB, KiB/s, IOPS; 47/48/49 the same for writes.
    front=$(basename "$(readlink /sys/bus/xen/devices/$VBD/driver)")
    tail -1 /tmp/fio.terse | awk -F';' -v d="$drv" -v r="$round" -v n="$name" \
        -v ev=$((ev1 - ev0)) -v t="$RUNTIME" -v f="$front" '{
        printf "BENCH driver=%s round=%s test=%s front=%s iops=%d kibps=%d ios=%d events=%d\n",
            d, r, n, f, $8 + $49, $7 + $48, ($8 + $49) * t, ev }'
}

domu_main() {
    check modprobe-c-blkfront modprobe xen-blkfront || return
    check modprobe-rust-blkfront modprobe xenpvrs_blkfront || return
    wait_for_dev /dev/xvdc 60 || { fail "no tools disk"; return; }
    use_tools /dev/xvdc || { fail "cannot mount the tools disk"; return; }
    # A copy in memory: dom0 takes the tools disk away to swap backend modules.
    check copy-tools cp -a /tools /tmp/tools || return
    umount /tools
    TOOLS=/tmp/tools
    echo "BENCH-READY"
    echo "BENCH-TOOLS-COPIED"
    for run in $RUNS; do
        r=${run%%:*} drv=${run#*:}
        wait_for_dev /dev/xvdb 120 || { fail "no xvdb ($run)"; echo "BENCH-FAILED"; return; }
        if [ $drv = rust ]; then
            check "to-rust-$r" to_rust || { echo "BENCH-FAILED"; return; }
        fi
        # Which driver has the disk, from sysfs.
        log "run $run: xvdb on $(basename "$(readlink /sys/bus/xen/devices/$VBD/driver)")"
        run_fio $drv $r randread-4k-qd32 --rw=randread --bs=4k --iodepth=32
        run_fio $drv $r seqread-1m --rw=read --bs=1M --iodepth=4
        run_fio $drv $r seqwrite-1m --rw=write --bs=1M --iodepth=4
        if [ $drv = rust ]; then
            for q in /sys/kernel/debug/xenpvrs-blkfront-xvdb-q*; do
                echo "BENCH-COUNTERS round=$r queue=${q##*-q} requests=$(cat "$q/requests") notifications_sent=$(cat "$q/notifications_sent") events_received=$(cat "$q/events_received")"
            done
        fi
        echo "BENCH-DONE $r $drv"
        n=120
        while [ -e /dev/xvdb ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
        n=60
        while [ -e /sys/bus/xen/devices/$VBD ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
        echo "BENCH-GONE $r $drv"
    done
}
