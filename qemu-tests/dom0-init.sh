#!/bin/sh
# dom0 /init: bring up the Xen toolstack, run the scenario named on the kernel command line
# (xenpvrs.scenario=NAME), print its verdict and the collected logs to the console, power off.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /run/xen /run/xenstored /sys/kernel/debug
mount -t devpts devpts /dev/pts
mount -t debugfs debugfs /sys/kernel/debug
mount -t xenfs xenfs /proc/xen
# Scenario data (disk images, received streams) gets its own, sized tmpfs: the initramfs root is
# capped at half of dom0's memory and already holds the image.
mkdir -p /data
mount -t tmpfs -o size=640m tmpfs /data
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/lib/xen-4.17/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
. /lib/xen-pv-rs.sh
S=$(scenario_name)
log "DOM0-ALIVE scenario=$S kernel=$(uname -r)"

toolstack_up() {
    xenstored -N --pid-file=/run/xenstored.pid > /tmp/xenstored.log 2>&1 &
    wait_for_socket=20
    while [ ! -S /run/xenstored/socket ] && [ $wait_for_socket -gt 0 ]; do
        sleep 1; wait_for_socket=$((wait_for_socket - 1))
    done
    check xen-init-dom0 xen-init-dom0 || return 1
    xenconsoled --log=guest --log-dir="$CONSOLE_DIR" || { fail "xenconsoled"; return 1; }
    brctl addbr xenbr0 && ip addr add 10.0.0.1/24 dev xenbr0 && ip link set xenbr0 up ||
        { fail "bridge xenbr0"; return 1; }
    ( daemon_watchdog < /dev/null & )
    log "TOOLSTACK-UP"
}

# daemon_watchdog: a toolstack daemon that dies of an abort leaves no kernel message, and then
# every xenstore user, in dom0 and in the guests, blocks until the scenario's timeout. Check both daemons every 3 s with shell builtins only (a
# dead child of ours stays a zombie, so its state is read, not just its /proc entry); when one
# is gone say so, print the kernel log and end the boot with a verdict.
daemon_watchdog() {
    _xs=$(cat /run/xenstored.pid 2>/dev/null)
    _xc=$(pidof xenconsoled)
    [ -n "$_xs" ] && [ -n "$_xc" ] || { log "watchdog: no daemon pids (xs '$_xs' xc '$_xc')"; return; }
    while :; do
        sleep 3
        for _p in "xenstored:$_xs" "xenconsoled:$_xc"; do
            _st=Z
            [ -r "/proc/${_p#*:}/stat" ] && read -r _a _b _st _rest < "/proc/${_p#*:}/stat"
            [ "$_st" = Z ] || continue
            echo "XEN-PV-RS-DAEMON-DIED ${_p%%:*} (pid ${_p#*:})"
            echo "=== BEGIN xenstored.log"; tail -n 20 /tmp/xenstored.log; echo "=== END xenstored.log"
            print_logs
            echo "XEN-PV-RS-RESULT $S FAIL: the toolstack daemon ${_p%%:*} died"
            sync
            poweroff -f
        done
    done
}

# print_logs: every log a verdict needs, in sections run.sh cuts into results/NAME/*.log.
print_logs() {
    for f in "$CONSOLE_DIR"/guest-*.log; do
        [ -f "$f" ] || continue
        echo "=== BEGIN $(basename "$f")"
        tr -d '\r' < "$f"
        echo "=== END $(basename "$f")"
    done
    echo "=== BEGIN xen-dmesg.log"; xl dmesg 2>&1; echo "=== END xen-dmesg.log"
    echo "=== BEGIN dom0-dmesg.log"; dmesg; echo "=== END dom0-dmesg.log"
}

# overrun_watchdog SECS: a hang is diagnosed, not waited out. When the scenario still runs at
# SECS s of uptime (its TIMEOUT), dump the blocked tasks and CPU backtraces of dom0 and of every
# guest (SysRq w and l; a guest's land in its console log), our debugfs counters and all logs,
# then give the verdict. run.sh waits a grace period beyond TIMEOUT for this report.
overrun_watchdog() {
    sleep_until_uptime "$1"
    echo "XEN-PV-RS-OVERRUN $S: still running after $1 s: dumping the state of every domain"
    echo w > /proc/sysrq-trigger
    echo l > /proc/sysrq-trigger
    for _d in $(xl list 2>/dev/null | awk 'NR > 1 && $2 != 0 {print $1}'); do
        xl sysrq "$_d" w
        xl sysrq "$_d" l
    done
    sleep 10
    echo "=== BEGIN counters.log"; debugfs_counters; echo "=== END counters.log"
    print_logs
    echo "XEN-PV-RS-RESULT $S FAIL: overran its TIMEOUT of $1 s (blocked tasks, backtraces and counters in the logs)"
    sync
    poweroff -f
}

if [ ! -f "/scenarios/$S.sh" ]; then
    fail "no such scenario '$S'"
elif toolstack_up; then
    . "/scenarios/$S.sh"
    [ "${AUTOLOAD:-0}" = 1 ] && hotplug_agent_on
    # Detached (not a job of this shell), so a scenario's bare `wait` does not wait for it.
    ( overrun_watchdog "${TIMEOUT:-600}" < /dev/null & echo $! > /tmp/overrun-watchdog.pid )
    dom0_main
    for d in $(xl list 2>/dev/null | awk 'NR > 1 && $2 != 0 {print $1}'); do
        xl destroy "$d" 2>/dev/null
    done
    kill "$(cat /tmp/overrun-watchdog.pid)" 2>/dev/null
fi
kernel_log_clean || fail "dom0 kernel log has warnings"
print_logs
if [ -z "$FAILED" ]; then
    echo "XEN-PV-RS-RESULT $S PASS"
else
    echo "XEN-PV-RS-RESULT $S FAIL: $FAILED"
fi
sync
poweroff -f
