# bench-net (run by `cargo xtask bench net`, which reads its BENCH lines): in one boot, one
# guest's vif behind the Linux C netback is driven with the same iperf3 jobs by the Linux C
# netfront (driver=c) and by ours (driver=rust), ROUNDS rounds each, in alternating order
# (C R, R C, C R, ...) so neither always runs first. The jobs, each RUNTIME seconds against
# `iperf3 -s` in dom0 (on the bridge):
# - tcp-up / tcp-down: one TCP stream guest -> dom0 and dom0 -> guest (`-R`);
# - udp64-up / udp64-down: 64-byte UDP datagrams as fast as the sender can (`-u -l 64 -b 0`),
#   each way; the figure is the datagrams delivered per second at the receiver.
# Both drivers run with their defaults (queues = vCPUs = 2, split event channels, offloads on).
#
# A run is one vif: the guest loads the run's driver (and unloads the other), dom0 attaches a
# new vif with `xl network-attach`, the guest configures eth0 and runs the jobs, dom0 detaches
# the vif. Each run proves which drivers served it: the guest prints the driver eth0 is bound
# to (front=vif is Linux's netfront, front=xenpvrs-netfront ours) on every job's line, dom0 the
# driver of the backend device (back=vif is Linux's netback). Events per packet come from
# /proc/interrupts on each side, the same source for both drivers: the guest counts its
# frontend's interrupts (notifications the backend sent), dom0 the vif's (notifications the
# frontend sent); packets are eth0's tx+rx packet counters over the job.
TIMEOUT=2400
BENCHMARK=1

RUNTIME=8
ROUNDS=5
MAC=00:16:3e:5a:00:06

# runs: round:driver for every run, in order (both sides compute the same list). Odd rounds run
# Linux's driver first, even rounds ours.
runs() {
    r=1
    while [ $r -le "$ROUNDS" ]; do
        if [ $((r % 2)) -eq 1 ]; then echo "$r:c $r:rust"; else echo "$r:rust $r:c"; fi
        r=$((r + 1))
    done
}
RUNS=$(runs | tr '\n' ' ')

# backend_irqs (dom0): events received by netback's interrupts (vifD.N-qQ-tx/-rx).
backend_irqs() {
    awk '$NF ~ /^vif[0-9]+\.[0-9]+-q[0-9]+-(tx|rx)$/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts
}

dom0_main() {
    check modprobe-netback modprobe xen-netback || return
    # The tools disk (iperf3 for the guest) is served by Linux's blkback.
    check modprobe-blkback modprobe xen-blkback || return
    check tools-disk make_tools_disk /data/tools.img /usr/bin/iperf3 || return
    # (`iperf3` alone is the guest's tools-disk function of guest-lib.sh.)
    /usr/bin/iperf3 -s -D --logfile /data/iperf3.log || { fail "iperf3 server"; return; }
    write_domu_cfg domu 256 "vcpus = 2
disk = [ 'format=raw,vdev=xvdc,access=ro,target=/data/tools.img' ]"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    g=$(guest_log domu)
    for run in $RUNS; do
        r=${run%%:*} drv=${run#*:}
        wait_guest domu "^BENCH-(READY $r $drv|FAILED)" 300 "run $r $drv" || return
        grep -aq '^BENCH-FAILED' "$g" && break
        check "attach-$run" xl network-attach domu bridge=xenbr0 "mac=$MAC" || return
        devid=$(xenstore-list "/local/domain/$(xl domid domu)/device/vif" | tail -1)
        bdev=/sys/bus/xen-backend/devices/vif-$(xl domid domu)-$devid
        ev0=$(backend_irqs)
        wait_guest domu "^BENCH-(DONE $r $drv|FAILED)" 600 "the end of run $r $drv" || return
        ev1=$(backend_irqs)
        echo "BENCH-DOM0 driver=$drv round=$r back=$(basename "$(readlink "$bdev/driver")") backend_events=$((ev1 - ev0))"
        check "detach-$run" vif_detach domu "$devid" || return
    done
    domu_result domu 300
}

# vif_detach DOMAIN DEVID: xl network-detach; done once the frontend directory is gone.
vif_detach() {
    _fe=/local/domain/$(xl domid "$1")/device/vif/$2
    xl network-detach "$1" "$2" || return
    _n=30
    while xenstore-exists "$_fe" 2>/dev/null && [ $_n -gt 0 ]; do sleep 1; _n=$((_n - 1)); done
    ! xenstore-exists "$_fe" 2>/dev/null
}

# --- domU ----------------------------------------------------------------------------------

# frontend_irqs: events received by the netfront's interrupts (Linux's vifN-qQ-tx/-rx, ours
# xenpvrs-netfront-tx/-rx).
frontend_irqs() {
    awk '$NF ~ /^(vif[0-9]+-q[0-9]+-(tx|rx)|xenpvrs-netfront-(tx|rx))$/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts
}

# packets: eth0's packets sent and received.
packets() {
    echo $(($(cat /sys/class/net/eth0/statistics/tx_packets) + $(cat /sys/class/net/eth0/statistics/rx_packets)))
}

# use_driver c|rust: the run's netfront module loaded, the other one not.
use_driver() {
    case $1 in
    c) grep -q '^xenpvrs_netfront ' /proc/modules && { rmmod xenpvrs_netfront || return; }
       modprobe xen-netfront ;;
    rust) grep -q '^xen_netfront ' /proc/modules && { rmmod xen_netfront || return; }
       modprobe xenpvrs_netfront ;;
    esac
}

# run_iperf DRIVER ROUND TEST IPERF-ARGS...: one job; prints its BENCH line. The figures come
# from iperf3's receiver summary: kbps, and for UDP the datagrams delivered (total - lost) per
# second of its interval.
run_iperf() {
    drv=$1 round=$2 name=$3
    shift 3
    ev0=$(frontend_irqs) p0=$(packets)
    if ! iperf3 -c 10.0.0.1 -t "$RUNTIME" -f k "$@" > /tmp/iperf3.out 2>&1; then
        cat /tmp/iperf3.out
        fail "iperf3 $name with $drv"
        return 1
    fi
    ev1=$(frontend_irqs) p1=$(packets)
    front=$(basename "$(readlink /sys/class/net/eth0/device/driver)")
    line=$(grep 'receiver$' /tmp/iperf3.out | tail -1)
    [ -n "$line" ] || { cat /tmp/iperf3.out; fail "iperf3 $name: no receiver summary"; return 1; }
    echo "$line" | awk -v d="$drv" -v r="$round" -v n="$name" -v f="$front" \
        -v ev=$((ev1 - ev0)) -v pk=$((p1 - p0)) '{
        kbps = -1; pps = -1; split($3, iv, "-"); secs = iv[2] - iv[1]
        for (i = 2; i <= NF; i++) {
            if ($i == "Kbits/sec") kbps = $(i - 1)
            if ($i ~ /^[0-9]+\/[0-9]+$/ && secs > 0) { split($i, lt, "/"); pps = (lt[2] - lt[1]) / secs }
        }
        printf "BENCH driver=%s round=%s test=%s front=%s kbps=%d pps=%d packets=%d events=%d\n",
            d, r, n, f, kbps, pps, pk, ev }'
}

domu_main() {
    check modprobe-blkfront modprobe xen-blkfront || return
    wait_for_dev /dev/xvdc 60 || { fail "no tools disk"; return; }
    use_tools /dev/xvdc || { fail "cannot mount the tools disk"; return; }
    check copy-tools cp -a /tools /tmp/tools || return
    umount /tools
    TOOLS=/tmp/tools
    for run in $RUNS; do
        r=${run%%:*} drv=${run#*:}
        check "use-driver-$run" use_driver "$drv" || { echo "BENCH-FAILED"; return; }
        echo "BENCH-READY $r $drv"
        n=60
        while [ ! -e /sys/class/net/eth0 ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
        ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0 || { fail "eth0 up ($run)"; echo "BENCH-FAILED"; return; }
        n=60
        until ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1 || [ $n -eq 0 ]; do n=$((n - 1)); done
        log "run $run: eth0 on $(basename "$(readlink /sys/class/net/eth0/device/driver)"), $(ls -d /sys/class/net/eth0/queues/tx-* | wc -l) queues"
        ok=1
        run_iperf "$drv" "$r" tcp-up || ok=0
        run_iperf "$drv" "$r" tcp-down -R || ok=0
        run_iperf "$drv" "$r" udp64-up -u -l 64 -b 0 || ok=0
        run_iperf "$drv" "$r" udp64-down -R -u -l 64 -b 0 || ok=0
        [ $ok = 1 ] || { echo "BENCH-FAILED"; return; }
        echo "BENCH-DONE $r $drv"
        n=60
        while [ -e /sys/class/net/eth0 ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
        [ ! -e /sys/class/net/eth0 ] || { fail "eth0 did not go ($run)"; echo "BENCH-FAILED"; return; }
    done
}
