#!/bin/sh
# domU /init: run this scenario's domu_main and print the verdict on the console, which xenconsoled
# logs in dom0 where the scenario reads it.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /sys/kernel/debug
mount -t debugfs debugfs /sys/kernel/debug
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
. /lib/xen-pv-rs.sh
S=$(scenario_name)

# counters_watchdog SECS: when the scenario still runs at SECS s of this guest's uptime, print
# our debugfs counters on the console (which dom0 keeps): dom0 reports an overrun at the
# scenario's TIMEOUT of its own uptime, and this guest started after dom0.
counters_watchdog() {
    sleep_until_uptime "$1"
    log "still running after $1 s: our counters"
    debugfs_counters | sed 's/^/XENPVRS-COUNTER /'
}
log "DOMU-ALIVE scenario=$S kernel=$(uname -r)"
if [ -f "/scenarios/$S.sh" ]; then
    . "/scenarios/$S.sh"
    [ "${AUTOLOAD:-0}" = 1 ] && hotplug_agent_on
    # Detached (not a job of this shell), so a scenario's bare `wait` does not wait for it.
    ( counters_watchdog $((${TIMEOUT:-600} - 60)) < /dev/null & echo $! > /tmp/counters-watchdog.pid )
    domu_main
    kill "$(cat /tmp/counters-watchdog.pid)" 2>/dev/null
else
    fail "no such scenario '$S'"
fi
kernel_log_clean || fail "domU kernel log has warnings"
if [ -z "$FAILED" ]; then
    echo "DOMU-RESULT PASS"
else
    echo "DOMU-RESULT FAIL: $FAILED"
fi
sync
poweroff -f
