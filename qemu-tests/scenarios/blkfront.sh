# blkfront: our Rust blkfront (xenpvrs_blkfront) in the guest against the Linux C blkback in
# dom0, with 4-page rings and 2 queues (module parameters), persistent grants and indirect
# descriptors as the backend offers them. Disks: xvdb backed by a file, xvdc by a block device
# (a loop device dom0 sets up itself, given to xl as phy), xvdd read-only, xvde the tools disk
# (fio). The guest writes a pseudo-random pattern over all of xvdb and xvdc, drops its caches
# and verifies every byte; runs four parallel fio jobs with verify=crc32c on each; flushes and
# discards (the discarded range must read back as zeros); makes and checks an ext4 file system;
# checks that the read-only disk is read-only, refuses writes and holds what dom0 wrote. dom0
# checks C blkback's own counters: flush and discard requests arrived.
TIMEOUT=1500
BLKFRONT_WAIT=60

DISK_BYTES=134217728
RO_BYTES=16777216

dom0_main() {
    SEED=$(date +%s)
    DOMU_CMDLINE="xenpvrs.seed=$SEED"
    check modprobe-blkback modprobe xen-blkback || return
    truncate -s "$DISK_BYTES" /data/file.img
    truncate -s "$DISK_BYTES" /data/phy.img
    check losetup-phy losetup /dev/loop7 /data/phy.img || return
    check ro-pattern xpattern write /data/ro.img "$RO_BYTES" "$((SEED + 7))"
    check tools-disk make_tools_disk /data/tools.img || return
    write_domu_cfg domu 256 "vcpus = 2
disk = [ 'format=raw,vdev=xvdb,access=rw,target=/data/file.img',
         'format=raw,vdev=xvdc,access=rw,target=/dev/loop7',
         'format=raw,vdev=xvdd,access=ro,target=/data/ro.img',
         'format=raw,vdev=xvde,access=ro,target=/data/tools.img' ]"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    d=$(xl domid domu)
    # The guest says when its flushes and discards are done; read blkback's counters then.
    if wait_for "$(guest_log domu)" '^BLKFRONT-STATS-NOW' "${BLKFRONT_WAIT:-900}"; then
        for v in 51728 51744; do
            st=/sys/bus/xen-backend/devices/vbd-$d-$v/statistics
            f=$(cat "$st/f_req")
            ds=$(cat "$st/ds_req")
            log "blkback vbd-$d-$v: f_req=$f ds_req=$ds rd_req=$(cat "$st/rd_req") wr_req=$(cat "$st/wr_req")"
            [ "${f:-0}" -gt 0 ] || fail "vbd $v: no flush reached blkback"
            [ "${ds:-0}" -gt 0 ] || fail "vbd $v: no discard reached blkback"
        done
        echo > /data/stats.ack
    else
        fail "the guest never got to its flush/discard checks"
        guest_dump domu
    fi
    domu_result domu 900
}

# --- domU ----------------------------------------------------------------------------------

# disk_checks DEV SEED: pattern over the whole disk, fio verify, flush, discard.
disk_checks() {
    check "$1-bytes" [ "$(blockdev --getsize64 "$1")" = "$DISK_BYTES" ]
    check "$1-pattern-write" xpattern write "$1" "$DISK_BYTES" "$2"
    check "$1-flush" blockdev --flushbufs "$1"
    echo 3 > /proc/sys/vm/drop_caches
    check "$1-pattern-verify" xpattern verify "$1" "$DISK_BYTES" "$2"
    # Four jobs in parallel, each on its own 16 MiB, random sizes 4-128 KiB, queue depth 8,
    # every block checked with crc32c after it is written; an fsync every 16 writes.
    check "$1-fio-verify" fio --name=verify --filename="$1" --direct=1 --ioengine=libaio \
        --iodepth=8 --rw=randwrite --bsrange=4k-128k --size=16M --offset_increment=16M \
        --numjobs=4 --verify=crc32c --verify_fatal=1 --fsync=16 --group_reporting \
        --output=/tmp/fio.out
    grep -E 'err=|WRITE:|READ:' /tmp/fio.out | sed "s|^|[fio $1] |"
    # Discard the first 8 MiB (pattern data again) and read zeros back.
    check "$1-refill" xpattern write "$1" 8388608 "$2"
    check "$1-discard" blkdiscard -o 0 -l 8388608 "$1"
    zeros=$(dd if=/dev/zero bs=1M count=8 2>/dev/null | md5sum)
    echo 3 > /proc/sys/vm/drop_caches
    got=$(dd if="$1" bs=1M count=8 2>/dev/null | md5sum)
    check_eq "$1-discarded-reads-zero" "$zeros" "$got"
}

domu_main() {
    cmdline_seed || return
    check modprobe-blkfront modprobe xenpvrs_blkfront max_ring_page_order=2 max_queues=2 || return
    for d in xvdb xvdc xvdd xvde; do
        wait_for_dev /dev/$d 60 || { fail "no /dev/$d"; return; }
    done
    kscan XENPVRS-BLKFRONT "xvdb: connected"
    log "xvdb $KLAST"
    check_eq xvdb-queues 2 "$(kv "$KLAST" queues)"
    check_eq xvdb-ring-pages 4 "$(kv "$KLAST" ring-pages)"
    check_eq xvdb-persistent 1 "$(kv "$KLAST" persistent)"
    check_eq xvdb-flush 1 "$(kv "$KLAST" flush)"
    # Linux's numbers for Xen disks: major 202, 16 minors each (xvdb = 202:16, xvdc = 202:32).
    check_eq xvdb-devt ca:10 "$(stat -c %t:%T /dev/xvdb)"
    check_eq xvdc-devt ca:20 "$(stat -c %t:%T /dev/xvdc)"
    log "queues in sysfs: $(ls /sys/block/xvdb/mq | tr '\n' ' ')"
    check_eq xvdb-mq-dirs 2 "$(ls /sys/block/xvdb/mq | wc -l)"
    use_tools /dev/xvde || { fail "cannot mount the tools disk"; return; }

    disk_checks /dev/xvdb "$SEED"
    disk_checks /dev/xvdc "$((SEED + 1))"
    echo "BLKFRONT-STATS-NOW"
    # dom0 reads blkback's counters now; give it time before the disks go away.
    sleep 10

    check mkfs-ext4 mkfs.ext4 -q -F /dev/xvdb
    check fsck-ext4 e2fsck -fn /dev/xvdb
    check mount-ext4 mount -t ext4 /dev/xvdb /mnt
    check fs-write xpattern write /mnt/f.bin 33554432 "$SEED"
    check umount-ext4 umount /mnt
    echo 3 > /proc/sys/vm/drop_caches
    check mount-ext4-again mount -t ext4 -o ro /dev/xvdb /mnt
    check fs-verify xpattern verify /mnt/f.bin 33554432 "$SEED"
    check umount-again umount /mnt
    check fsck-after e2fsck -fn /dev/xvdb

    check_eq xvdd-ro 1 "$(blockdev --getro /dev/xvdd)"
    if dd if=/dev/zero of=/dev/xvdd bs=4096 count=1 conv=fsync 2>/dev/null; then
        fail "a write to the read-only disk succeeded"
    else
        log "CHECK xvdd-write-refused ok"
    fi
    check xvdd-content xpattern verify /dev/xvdd "$RO_BYTES" "$((SEED + 7))"
    umount /tools
    for q in /sys/kernel/debug/xenpvrs-blkfront-xvdb-q*; do
        log "counters ${q##*/}: $(for c in "$q"/*; do printf '%s=%s ' "${c##*/}" "$(cat "$c")"; done)"
    done
    unload_blkfront
}
