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
log "DOMU-ALIVE scenario=$S kernel=$(uname -r)"
if [ -f "/scenarios/$S.sh" ]; then
    . "/scenarios/$S.sh"
    domu_main
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
