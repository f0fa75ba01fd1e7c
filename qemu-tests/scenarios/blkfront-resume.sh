# blkfront-resume: our Rust blkfront survives a save and restore of the guest with writes in
# flight. The disk is a scsi_debug device in dom0 (Linux C blkback), made slow for the save: one
# command at a time, 100 ms each. The guest writes a pattern through its page cache and lets
# writeback run (no fsync: user tasks are frozen before a suspend, so only I/O the kernel issues
# itself is still in flight then); dom0 saves the guest (`xl save`) while those writes are in
# flight, makes the disk fast again and restores it (`xl restore`, a new backend). On restore the
# driver drops its old rings, grants and channels, keeps the disk, hands the outstanding
# requests back to blk-mq and re-issues them on the new connection. The driver must report at
# least one request handed back, and after a sync the written pattern must read back whole.
TIMEOUT=450

DISK_MB=32
DISK_BYTES=33554432
# Written through the page cache while the save happens: little enough that the kernel does
# not throttle the writer (with 16 MiB it did, and dd returned with only about 2 MB left, which
# one run in three finished before the suspend), so all of it is still under writeback when
# the guest says it is ready: 64 commands of 16 KiB at 100 ms each, about 6 s, while the
# suspend begins about 0.6 s later.
LATE_BYTES=1048576
DELAY=/sys/bus/pseudo/drivers/scsi_debug/delay

# set_delay JIFFIES: scsi_debug refuses a change while commands are queued (EBUSY); wait for a
# quiet moment, at most 30 s.
set_delay() {
    _n=30
    while [ $_n -gt 0 ]; do
        echo "$1" > "$DELAY" 2>/dev/null && return 0
        sleep 1
        _n=$((_n - 1))
    done
    return 1
}

dom0_main() {
    SEED=$(date +%s)
    DOMU_CMDLINE="xenpvrs.seed=$SEED"
    check modprobe-blkback modprobe xen-blkback || return
    check modprobe-scsi-debug modprobe scsi_debug dev_size_mb=$DISK_MB max_queue=1 || return
    _n=20
    sd=
    while [ -z "$sd" ] && [ $_n -gt 0 ]; do
        sd=$(ls /sys/bus/pseudo/drivers/scsi_debug/adapter0/host*/target*/*/block/ 2>/dev/null | head -1)
        [ -n "$sd" ] || sleep 1
        _n=$((_n - 1))
    done
    [ -n "$sd" ] || { fail "scsi_debug made no disk"; return; }
    log "scsi_debug disk: /dev/$sd"
    write_domu_cfg domu 192 "vcpus = 2
disk = [ 'format=raw,vdev=xvdb,access=rw,target=/dev/$sd' ]"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    wait_guest domu '^(BLKFRONT-SLOW-ME|DOMU-RESULT)' 300 "the slow part" || return
    # 25 jiffies at HZ=250: 100 ms a command, and small commands, so that a write takes a
    # while.
    check small-commands sh -c "echo 16 > /sys/block/$sd/queue/max_sectors_kb"
    check slow-disk set_delay 25 || return
    wait_guest domu '^(BLKFRONT-SAVE-ME|DOMU-RESULT)' 120 "the save" || return
    log "saving"
    check xl-save xl save domu /data/domu.save || return
    log "SAVED bytes=$(wc -c < /data/domu.save)"
    check fast-disk set_delay 1
    check big-commands sh -c "echo 512 > /sys/block/$sd/queue/max_sectors_kb"
    check xl-restore xl restore /data/domu.save || return
    rm -f /data/domu.save
    domu_result domu 300
}

# --- domU ----------------------------------------------------------------------------------

# read_ms: how long a direct 4 KiB read of the disk takes, in ms (10 ms resolution).
read_ms() {
    _t0=$(cut -d' ' -f1 /proc/uptime)
    dd if=/dev/xvdb of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null
    _t1=$(cut -d' ' -f1 /proc/uptime)
    awk -v a="$_t0" -v b="$_t1" 'BEGIN { printf "%d", (b - a) * 1000 }'
}

domu_main() {
    cmdline_seed || return
    check modprobe-blkfront modprobe xenpvrs_blkfront max_queues=2 || return
    wait_for_dev /dev/xvdb 60 || { fail "no /dev/xvdb"; return; }
    check pattern-write xpattern write /dev/xvdb "$DISK_BYTES" "$SEED"
    echo "BLKFRONT-SLOW-ME"
    # Wait until dom0 has slowed the disk down (a read takes 100 ms or more).
    _n=0
    while [ "$(read_ms)" -lt 80 ] && [ $_n -lt 60 ]; do sleep 1; _n=$((_n + 1)); done
    log "direct 4 KiB read: $(read_ms) ms"
    # Writeback starts at once (tiny background threshold) and the writer is not throttled.
    echo 4096 > /proc/sys/vm/dirty_background_bytes
    echo 134217728 > /proc/sys/vm/dirty_bytes
    # The shell keeps the disk open: the last close of a block device writes its dirty pages
    # back and waits, and dd's close must not be that one.
    exec 3< /dev/xvdb
    log "writing $LATE_BYTES bytes through the page cache"
    xpattern gen "$LATE_BYTES" "$((SEED + 1))" | dd of=/dev/xvdb bs=1M 2>/dev/null
    log "written; $(grep -E '^(Dirty|Writeback):' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"
    echo "BLKFRONT-SAVE-ME"
    kwait XENPVRS-BLKFRONT "xvdb: resumed" 1 240
    check_eq resumed 1 "$KN"
    log "$KLAST"
    inflight=$(kv "$KLAST" requests-in-flight)
    held=$(kv "$KLAST" requests-held)
    log "re-issued at the new connection: in-flight=$inflight held=$held"
    if [ -z "$inflight" ] || [ "$inflight" -lt 1 ]; then
        fail "no request was in flight across the save and restore (in-flight='$inflight')"
    fi
    kscan XENPVRS-BLKFRONT "xvdb: restored"
    log "$KLAST"
    exec 3<&-
    check sync sync
    echo 3 > /proc/sys/vm/drop_caches
    check late-writes-landed xpattern verify-prefix /dev/xvdb "$LATE_BYTES" "$((SEED + 1))"
    check write-after xpattern write /dev/xvdb "$DISK_BYTES" "$((SEED + 2))"
    echo 3 > /proc/sys/vm/drop_caches
    check verify-new xpattern verify /dev/xvdb "$DISK_BYTES" "$((SEED + 2))"
    unload_blkfront
}
