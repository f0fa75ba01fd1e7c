# Block scenarios' shared steps (installed as /lib/xen-pv-rs-blk.sh): the same integrity and
# detach checks run with either backend in dom0 and either frontend in the guest. A scenario
# sets BLK_BACK (c: Linux's xen-blkback, rust: xenpvrs_blkback) and BLK_FRONT (c: Linux's
# xen-blkfront, rust: xenpvrs_blkfront) before sourcing this file.

# --- dom0 ----------------------------------------------------------------------------------

blk_load_back() {
    case "$BLK_BACK" in
    c) check modprobe-blkback modprobe xen-blkback ;;
    rust)
        if grep -q '^xen_blkback ' /proc/modules; then
            fail "Linux's blkback is loaded: it would take the vbd devices"
            return 1
        fi
        check modprobe-rust-blkback modprobe xenpvrs_blkback
        ;;
    esac
}

# blk_back_stats DOMID VDEV: the backend's statistics, read the way xentop reads them
# (/sys/bus/xen-backend/devices/vbd-D-V/statistics, plus physical_device and mode), the same
# files for Linux's blkback and ours; flushes, discards, reads and writes must all have
# reached the backend. Our per-queue debugfs counters are logged too.
blk_back_stats() {
    _dev=/sys/bus/xen-backend/devices/vbd-$1-$2
    _st=$_dev/statistics
    _line=
    for _n in oo_req rd_req wr_req f_req ds_req rd_sect wr_sect; do
        _line="$_line $_n=$(cat "$_st/$_n" 2>/dev/null)"
    done
    log "vbd-$1-$2 ($BLK_BACK blkback):$_line physical_device=$(cat "$_dev/physical_device" 2>/dev/null) mode=$(cat "$_dev/mode" 2>/dev/null)"
    for _n in rd_req wr_req f_req ds_req rd_sect wr_sect; do
        [ "$(cat "$_st/$_n" 2>/dev/null || echo 0)" -gt 0 ] || fail "vbd $2: statistics/$_n is not above 0"
    done
    grep -qE '^[0-9a-f]+:[0-9a-f]+$' "$_dev/physical_device" || fail "vbd $2: no physical_device"
    check_eq "vbd-$2-mode" w "$(cat "$_dev/mode" 2>/dev/null)"
    if [ "$BLK_BACK" = rust ]; then
        for _q in /sys/kernel/debug/xenpvrs-blkback-$1-$2-q*; do
            [ -d "$_q" ] || continue
            log "counters ${_q##*/}: $(for c in "$_q"/*; do printf '%s=%s ' "${c##*/}" "$(cat "$c")"; done)"
        done
    fi
}

# blk_idle_pages DOMID VDEV: the idle pages of the vbd's map pools (our blkback's per-queue
# debugfs counter buffer_pages, refreshed every second).
blk_idle_pages() {
    _t=0
    for _q in /sys/kernel/debug/xenpvrs-blkback-$1-$2-q*; do
        [ -f "$_q/buffer_pages" ] && _t=$((_t + $(cat "$_q/buffer_pages")))
    done
    echo "$_t"
}

# blk_buffer_squeeze DOMID VDEV: Linux's map-pool parameters with Linux's defaults, and the
# squeeze. When the kernel asks backends for memory (the XenBus backend core's shrinker, which
# drop_caches=2 runs), our blkback frees the idle pages of its map pools, as Linux's blkback
# empties its free-page pool for buffer_squeeze_duration_ms.
blk_buffer_squeeze() {
    [ "$BLK_BACK" = rust ] || return 0
    _p=/sys/module/xenpvrs_blkback/parameters
    check_eq max_buffer_pages 1024 "$(cat $_p/max_buffer_pages 2>/dev/null)"
    check_eq buffer_squeeze_duration_ms 10 "$(cat $_p/buffer_squeeze_duration_ms 2>/dev/null)"
    _before=$(blk_idle_pages "$1" "$2")
    log "vbd $2: idle map-pool pages before the squeeze: $_before"
    [ "$_before" -gt 0 ] || { fail "vbd $2: no idle map-pool page to squeeze"; return; }
    echo 2 > /proc/sys/vm/drop_caches
    _n=6
    while [ "$(blk_idle_pages "$1" "$2")" -gt 0 ] && [ $_n -gt 0 ]; do sleep 1; _n=$((_n - 1)); done
    check_eq "vbd-$2-idle-pages-after-squeeze" 0 "$(blk_idle_pages "$1" "$2")"
    _l=$(dmesg | grep -a "XENPVRS-BLKBACK backend/vbd/$1/$2 q[0-9]*: buffer squeezed" | tail -1)
    [ -n "$_l" ] || fail "vbd $2: no 'buffer squeezed' line"
    log "${_l#*XENPVRS-BLKBACK }"
}

# blk_fatal_check DOMID: a disk our backend cannot open (a block device node whose major no
# driver has: the hotplug script names it, opening it fails with ENXIO). The backend reports it
# under error/ in XenStore, as Linux's does, so the toolstack finds the message instead of a
# timeout, and its state machine says Closing. blk_fatal_detach detaches it afterwards, once the
# guest's frontend driver is loaded: the frontend sees Closing and closes, and only then can the
# backend close (with no frontend driver, the toolstack's detach times out whatever the backend).
blk_fatal_check() {
    [ "$BLK_BACK" = rust ] || return 0
    rm -f /dev/xpvrs-nodev
    check mknod-nodev mknod /dev/xpvrs-nodev b 240 0
    # xvdh: 202 << 8 | 7 << 4.
    _err=/local/domain/0/error/backend/vbd/$1/51824/error
    xl block-attach "$1" 'format=raw,vdev=xvdh,access=rw,target=/dev/xpvrs-nodev'
    log "xl block-attach of a device no driver serves: exit $?"
    _n=20
    while ! xenstore-exists "$_err" 2>/dev/null && [ $_n -gt 0 ]; do sleep 1; _n=$((_n - 1)); done
    _msg=$(xenstore-read "$_err" 2>/dev/null)
    log "the backend's error in XenStore: '$_msg'"
    case "$_msg" in
    *"opening the backing device"*) log "CHECK fatal-error-in-xenstore ok" ;;
    *) fail "no error message at $_err (got '$_msg')" ;;
    esac
    # Closing, or already Closed if the guest's frontend driver answered it.
    _st=$(xenstore-read "/local/domain/0/backend/vbd/$1/51824/state" 2>/dev/null)
    case "$_st" in
    5 | 6) log "CHECK fatal-state ok ($_st)" ;;
    *) fail "the backend of a disk it cannot open is in state '$_st', not Closing" ;;
    esac
}

# blk_fatal_detach DOMID: detaches blk_fatal_check's disk (the guest's frontend is loaded).
blk_fatal_detach() {
    [ "$BLK_BACK" = rust ] || return 0
    check fatal-detach xl_detach "$1" 51824
    rm -f /dev/xpvrs-nodev
}

# blk_back_connected VDEV QUEUES PAGES: our backend's dmesg line for the disk says so.
blk_back_connected() {
    [ "$BLK_BACK" = rust ] || return 0
    KLAST=$(dmesg | grep -a "XENPVRS-BLKBACK backend/vbd/[0-9]*/$1: using" | tail -1)
    log "vbd $1: ${KLAST#*XENPVRS-BLKBACK }"
    check_eq "back-$1-queues" "$2" "$(echo "$KLAST" | sed -n 's/.*using \([0-9]*\) queues.*/\1/p')"
    check_eq "back-$1-ring-pages" "$3" "$(echo "$KLAST" | sed -n 's/.*ring pages \([0-9]*\).*/\1/p')"
    case "$KLAST" in
    *"protocol x86_64-abi, persistent grants"*) log "CHECK back-$1-persistent ok" ;;
    *) fail "vbd $1: not x86_64-abi with persistent grants" ;;
    esac
}

# blk_unload_back: once no guest uses a disk, our backend unloads and gave everything back.
blk_unload_back() {
    [ "$BLK_BACK" = rust ] || return 0
    _n=60
    while ls /sys/bus/xen-backend/devices/ 2>/dev/null | grep -q '^vbd-' && [ $_n -gt 0 ]; do
        sleep 1
        _n=$((_n - 1))
    done
    log "no vbd device left after $((60 - _n)) s; unloading xenpvrs_blkback"
    check rmmod-rust-blkback rmmod xenpvrs_blkback || return
    kscan XENPVRS-BLKBACK unload
    log "unload: $KLAST"
    check_eq blkback-unload-clean 1 "$(kv "$KLAST" clean)"
}

# --- domU ----------------------------------------------------------------------------------

# blk_load_front ORDER QUEUES
blk_load_front() {
    case "$BLK_FRONT" in
    c) check modprobe-c-blkfront modprobe xen-blkfront max_ring_page_order="$1" max_queues="$2" ;;
    rust) check modprobe-blkfront modprobe xenpvrs_blkfront max_ring_page_order="$1" max_queues="$2" ;;
    esac
}

blk_unload_front() {
    [ "$BLK_FRONT" = rust ] || return 0
    for q in /sys/kernel/debug/xenpvrs-blkfront-xvdb-q*; do
        log "counters ${q##*/}: $(for c in "$q"/*; do printf '%s=%s ' "${c##*/}" "$(cat "$c")"; done)"
    done
    unload_blkfront
}

# blk_disk_checks DEV BYTES SEED: pattern over the whole disk, fio verify, flush, discard.
blk_disk_checks() {
    check "$1-bytes" [ "$(blockdev --getsize64 "$1")" = "$2" ]
    check "$1-pattern-write" xpattern write "$1" "$2" "$3"
    check "$1-flush" blockdev --flushbufs "$1"
    echo 3 > /proc/sys/vm/drop_caches
    check "$1-pattern-verify" xpattern verify "$1" "$2" "$3"
    # Four jobs in parallel, each on its own 16 MiB, random sizes 4-128 KiB, queue depth 8,
    # every block checked with crc32c after it is written; an fsync every 16 writes.
    check "$1-fio-verify" fio --name=verify --filename="$1" --direct=1 --ioengine=libaio \
        --iodepth=8 --rw=randwrite --bsrange=4k-128k --size=16M --offset_increment=16M \
        --numjobs=4 --verify=crc32c --verify_fatal=1 --fsync=16 --group_reporting \
        --output=/tmp/fio.out
    grep -E 'err=|WRITE:|READ:' /tmp/fio.out | sed "s|^|[fio $1] |"
    # Discard the first 8 MiB (pattern data again) and read zeros back.
    check "$1-refill" xpattern write "$1" 8388608 "$3"
    check "$1-discard" blkdiscard -o 0 -l 8388608 "$1"
    zeros=$(dd if=/dev/zero bs=1M count=8 2>/dev/null | md5sum)
    echo 3 > /proc/sys/vm/drop_caches
    got=$(dd if="$1" bs=1M count=8 2>/dev/null | md5sum)
    check_eq "$1-discarded-reads-zero" "$zeros" "$got"
}

# blk_fs_checks DEV SEED: mkfs.ext4, fsck, a file written, read back after a remount, fsck.
blk_fs_checks() {
    check mkfs-ext4 mkfs.ext4 -q -F "$1"
    check fsck-ext4 e2fsck -fn "$1"
    check mount-ext4 mount -t ext4 "$1" /mnt
    check fs-write xpattern write /mnt/f.bin 33554432 "$2"
    check umount-ext4 umount /mnt
    echo 3 > /proc/sys/vm/drop_caches
    check mount-ext4-again mount -t ext4 -o ro "$1" /mnt
    check fs-verify xpattern verify /mnt/f.bin 33554432 "$2"
    check umount-again umount /mnt
    check fsck-after e2fsck -fn "$1"
}

# blk_ro_checks DEV BYTES SEED: read-only, refuses writes, holds what dom0 wrote.
blk_ro_checks() {
    check_eq "${1##*/}-ro" 1 "$(blockdev --getro "$1")"
    if dd if=/dev/zero of="$1" bs=4096 count=1 conv=fsync 2>/dev/null; then
        fail "a write to the read-only disk succeeded"
    else
        log "CHECK ${1##*/}-write-refused ok"
    fi
    check "${1##*/}-content" xpattern verify "$1" "$2" "$3"
}

# blk_cdrom_checks DEV BYTES SEED: a virtual CD-ROM (xl devtype=cdrom): read-only, removable
# media (our backend says VDISK_REMOVABLE with VDISK_CDROM, our frontend treats a CD-ROM as
# removable either way), and its content reads back.
blk_cdrom_checks() {
    check_eq "${1##*/}-removable" 1 "$(cat /sys/block/${1##*/}/removable)"
    blk_ro_checks "$@"
}

# --- the integrity scenario (blkfront, blkback, blkback-rustfront) --------------------------
# Disks: xvdb backed by a file, xvdc by a block device (a loop device dom0 sets up itself,
# given to xl as phy), xvdd read-only, xvde the tools disk (fio), xvdf a CD-ROM (devtype=cdrom,
# read-only, removable); 2 queues of 4-page rings.
# The guest writes a pseudo-random pattern over all of xvdb and xvdc, drops its caches and
# verifies every byte; runs four parallel fio jobs with verify=crc32c on each; flushes and
# discards (the discarded range must read back as zeros); makes and checks an ext4 file
# system; checks that the read-only disk is read-only, refuses writes and holds what dom0
# wrote. dom0 checks the backend's own counters: flush and discard requests arrived.

BLK_DISK_BYTES=134217728
BLK_RO_BYTES=16777216
BLK_CD_BYTES=4194304

blk_integrity_dom0() {
    SEED=$(date +%s)
    DOMU_CMDLINE="xenpvrs.seed=$SEED"
    blk_load_back || return
    truncate -s "$BLK_DISK_BYTES" /data/file.img
    truncate -s "$BLK_DISK_BYTES" /data/phy.img
    check losetup-phy losetup /dev/loop7 /data/phy.img || return
    check ro-pattern xpattern write /data/ro.img "$BLK_RO_BYTES" "$((SEED + 7))"
    check cd-pattern xpattern write /data/cd.img "$BLK_CD_BYTES" "$((SEED + 9))"
    check tools-disk make_tools_disk /data/tools.img || return
    # 384 MiB: Linux's blkfront keeps a pool of granted pages per queue for persistent
    # grants (about 16 MiB per disk with 2 queues of 4-page rings and 32 indirect segments),
    # and the guest has up to six disks here; 256 MiB ran out of memory.
    write_domu_cfg domu 384 "vcpus = 2
disk = [ 'format=raw,vdev=xvdb,access=rw,target=/data/file.img',
         'format=raw,vdev=xvdc,access=rw,target=/dev/loop7',
         'format=raw,vdev=xvdd,access=ro,target=/data/ro.img',
         'format=raw,vdev=xvde,access=ro,target=/data/tools.img',
         'format=raw,vdev=xvdf,access=ro,devtype=cdrom,target=/data/cd.img' ]"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    d=$(xl domid domu)
    # While the guest boots (its frontend sees the extra disk go to Closing and lets it be).
    blk_fatal_check "$d"
    # The guest says when its flushes and discards are done; read the counters then. It gets
    # there about 90 s after xl create in the slowest run measured: 400 s is ample.
    if wait_for "$(guest_log domu)" '^BLKFRONT-STATS-NOW' 400; then
        for v in 51728 51744; do
            blk_back_stats "$d" "$v"
        done
        blk_buffer_squeeze "$d" 51728
        blk_fatal_detach "$d"
        blk_back_connected 51728 2 4
        blk_back_connected 51744 2 4
        echo > /data/stats.ack
    else
        fail "the guest never got to its flush/discard checks"
        guest_dump domu
    fi
    domu_result domu 500
    blk_unload_back
}

blk_integrity_domu() {
    cmdline_seed || return
    blk_load_front 2 2 || return
    for d in xvdb xvdc xvdd xvde xvdf; do
        wait_for_dev /dev/$d 60 || { fail "no /dev/$d"; return; }
    done
    if [ "$BLK_FRONT" = rust ]; then
        kscan XENPVRS-BLKFRONT "xvdb: connected"
        log "xvdb $KLAST"
        check_eq xvdb-queues 2 "$(kv "$KLAST" queues)"
        check_eq xvdb-ring-pages 4 "$(kv "$KLAST" ring-pages)"
        # The queue depth is the ring's slots (32 a page), as Linux's blkfront sizes it.
        check_eq xvdb-depth 128 "$(kv "$KLAST" depth)"
        check_eq xvdb-nr-tags 128 "$(cat /sys/block/xvdb/mq/0/nr_tags)"
        check_eq xvdb-persistent 1 "$(kv "$KLAST" persistent)"
        check_eq xvdb-flush 1 "$(kv "$KLAST" flush)"
    fi
    # Linux's numbers for Xen disks: major 202, 16 minors each (xvdb = 202:16, xvdc = 202:32),
    # and the major is listed in /proc/devices under Linux's name (LVM's filters read it).
    check_eq proc-devices-xvd "202 xvd" "$(grep -E '^ *202 ' /proc/devices | sed 's/^ *//')"
    check_eq xvdb-devt ca:10 "$(stat -c %t:%T /dev/xvdb)"
    check_eq xvdc-devt ca:20 "$(stat -c %t:%T /dev/xvdc)"
    log "queues in sysfs: $(ls /sys/block/xvdb/mq | tr '\n' ' ')"
    check_eq xvdb-mq-dirs 2 "$(ls /sys/block/xvdb/mq | wc -l)"
    use_tools /dev/xvde || { fail "cannot mount the tools disk"; return; }

    blk_disk_checks /dev/xvdb "$BLK_DISK_BYTES" "$SEED"
    blk_disk_checks /dev/xvdc "$BLK_DISK_BYTES" "$((SEED + 1))"
    echo "BLKFRONT-STATS-NOW"
    # dom0 reads the backend's counters now; give it time before the disks go away.
    sleep 10

    blk_fs_checks /dev/xvdb "$SEED"
    blk_ro_checks /dev/xvdd "$BLK_RO_BYTES" "$((SEED + 7))"
    blk_cdrom_checks /dev/xvdf "$BLK_CD_BYTES" "$((SEED + 9))"
    umount /tools
    blk_unload_front
}

# --- the detach scenario (blkfront-detach, blkback-detach) ---------------------------------
# Ten cycles of `xl block-attach` and `xl block-detach` of a file-backed disk, every other one
# detached while the guest is reading and writing it. In each cycle the guest first checks
# that the data it wrote and flushed in the previous cycle is all there (nothing completed is
# lost), writes a new pattern and flushes; I/O cut off by a detach must fail cleanly (an error,
# no hang, no kernel warning), and the disk must come back on the next attach. A last attach
# checks the last cycle's data. With BLK_DESTROY=1 the guest then keeps reading and writing
# the disk until dom0 destroys it (`xl destroy`) in the middle of that I/O; dom0 must stay
# healthy (no kernel warning) and the backend must give everything back.

BLK_CYCLES=10
BLK_DET_BYTES=67108864
BLK_KEEP_BYTES=16777216

blk_attach() {
    xl_attach domu 51728 format=raw vdev=xvdb access=rw target=/data/det.img
}

blk_detach_dom0() {
    SEED=$(date +%s)
    DOMU_CMDLINE="xenpvrs.seed=$SEED"
    blk_load_back || return
    truncate -s "$BLK_DET_BYTES" /data/det.img
    write_domu_cfg domu 192 "vcpus = 2"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    wait_for "$(guest_log domu)" '^BLKFRONT-LOADED' 120 || { fail "guest never loaded blkfront"; guest_dump domu; return; }
    i=1
    while [ $i -le $BLK_CYCLES ]; do
        check "attach-$i" blk_attach || return
        if ! wait_for "$(guest_log domu)" "^CYCLE $i (READY|FAILED)" 300; then
            fail "cycle $i: the guest did not get ready"
            guest_dump domu
            return
        fi
        check "detach-$i" xl_detach domu 51728 || return
        if ! wait_for "$(guest_log domu)" "^CYCLE $i GONE" 120; then
            fail "cycle $i: the guest did not see the disk go"
            guest_dump domu
            return
        fi
        i=$((i + 1))
    done
    check attach-final blk_attach
    if [ "${BLK_DESTROY:-0}" = 1 ]; then
        if ! wait_for "$(guest_log domu)" '^GUEST-CHECKS ' 600; then
            fail "the guest never finished its checks"
            guest_dump domu
            return
        fi
        _line=$(grep -a '^GUEST-CHECKS ' "$(guest_log domu)" | tail -1 | tr -d '\r')
        check_eq guest-checks "GUEST-CHECKS PASS" "$_line"
        wait_for "$(guest_log domu)" '^IO-RUNNING' 60 || fail "no I/O running in the guest"
        sleep 3
        check xl-destroy-mid-io xl destroy domu
        _n=60
        while xl domid domu >/dev/null 2>&1 && [ $_n -gt 0 ]; do sleep 1; _n=$((_n - 1)); done
        kernel_log_clean || fail "dom0 kernel warnings after the destroy"
        blk_unload_back
    else
        domu_result domu 600
        blk_unload_back
    fi
}

blk_detach_domu() {
    cmdline_seed || return
    blk_load_front 1 2 || return
    echo "BLKFRONT-LOADED"
    i=1
    while [ $i -le $((BLK_CYCLES + 1)) ]; do
        wait_for_dev /dev/xvdb 120 || { fail "cycle $i: no /dev/xvdb"; echo "CYCLE $i FAILED"; return; }
        if [ $i -gt 1 ]; then
            check "cycle-$i-previous-data" xpattern verify-prefix /dev/xvdb "$BLK_KEEP_BYTES" "$((SEED + i - 1))"
        fi
        [ $i -gt $BLK_CYCLES ] && break
        check "cycle-$i-write" xpattern write /dev/xvdb "$BLK_KEEP_BYTES" "$((SEED + i))"
        check "cycle-$i-flush" blockdev --flushbufs /dev/xvdb
        echo 3 > /proc/sys/vm/drop_caches
        bg=""
        if [ $((i % 2)) -eq 0 ]; then
            # I/O in flight when the disk goes: reads of the whole disk and writes past the
            # kept region, over and over, until they fail.
            (while dd if=/dev/xvdb of=/dev/null bs=1M 2>/dev/null; do :; done) &
            bg="$bg $!"
            (while dd if=/dev/urandom of=/dev/xvdb bs=64k seek=512 count=256 conv=fsync 2>/dev/null; do :; done) &
            bg="$bg $!"
            sleep 2
        fi
        echo "CYCLE $i READY"
        n=120
        while [ -e /dev/xvdb ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
        [ -e /dev/xvdb ] && fail "cycle $i: /dev/xvdb still there after detach"
        n=60
        while [ -e /sys/bus/xen/devices/vbd-51728 ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
        for p in $bg; do
            wait "$p"
        done
        kernel_log_clean || fail "cycle $i: kernel warnings"
        if [ "$BLK_FRONT" = rust ]; then
            kscan XENPVRS-BLKFRONT "xvdb: disconnected"
            log "cycle $i: $KN disconnects so far"
        fi
        echo "CYCLE $i GONE"
        i=$((i + 1))
    done
    if [ "$BLK_FRONT" = rust ]; then
        kscan XENPVRS-BLKFRONT "xvdb: connected"
        check_eq connections "$((BLK_CYCLES + 1))" "$KN"
    fi
    if [ "${BLK_DESTROY:-0}" = 1 ]; then
        kernel_log_clean || fail "domU kernel log has warnings"
        echo "GUEST-CHECKS ${FAILED:-PASS}"
        # Reads and O_DIRECT-free writes with fsync, until the domain is destroyed.
        (while dd if=/dev/xvdb of=/dev/null bs=1M 2>/dev/null; do :; done) &
        (while dd if=/dev/urandom of=/dev/xvdb bs=64k seek=512 count=256 conv=fsync 2>/dev/null; do :; done) &
        sleep 2
        echo "IO-RUNNING"
        sleep 600
        return
    fi
    blk_unload_front
}

# --- the resize scenario (blkback-resize, blkfront-resize) -------------------------------------
# Online resize, as Linux does it: dom0 grows the disk under a connected guest (the file behind
# a loop device grows, `losetup -c` tells the loop device); the backend notices, writes the new
# `sectors` and its Connected state again; the frontend re-reads the size and resizes the disk.
# The guest keeps reading (one direct 4 KiB read a second: our backend looks at the size when it
# runs) until the disk has the new size; the old data is intact and the new sectors take data.
BLK_RESIZE_FROM=33554432
BLK_RESIZE_TO=67108864

blk_resize_dom0() {
    SEED=$(date +%s)
    DOMU_CMDLINE="xenpvrs.seed=$SEED"
    blk_load_back || return
    truncate -s "$BLK_RESIZE_FROM" /data/grow.img
    check losetup-grow losetup /dev/loop5 /data/grow.img || return
    write_domu_cfg domu 160 "vcpus = 2
disk = [ 'format=raw,vdev=xvdb,access=rw,target=/dev/loop5' ]"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    wait_guest domu '^(BLKFRONT-RESIZE-ME|DOMU-RESULT)' 300 "the resize" || return
    check grow-file truncate -s "$BLK_RESIZE_TO" /data/grow.img
    check grow-loop losetup -c /dev/loop5
    log "loop5 now $(blockdev --getsize64 /dev/loop5) bytes"
    domu_result domu 300
    if [ "$BLK_BACK" = rust ]; then
        _l=$(dmesg | grep -a "XENPVRS-BLKBACK backend/vbd/[0-9]*/51728: resized" | tail -1)
        log "backend: ${_l#*XENPVRS-BLKBACK }"
        case "$_l" in
        *"resized from 65536 to 131072 sectors"*) log "CHECK back-resized ok" ;;
        *) fail "our blkback did not announce the new size" ;;
        esac
    fi
    blk_unload_back
}

blk_resize_domu() {
    cmdline_seed || return
    blk_load_front 0 1 || return
    wait_for_dev /dev/xvdb 60 || { fail "no /dev/xvdb"; return; }
    check_eq size-before "$BLK_RESIZE_FROM" "$(blockdev --getsize64 /dev/xvdb)"
    check pattern-write xpattern write /dev/xvdb "$BLK_RESIZE_FROM" "$SEED"
    check flush blockdev --flushbufs /dev/xvdb
    echo "BLKFRONT-RESIZE-ME"
    _n=0
    while [ "$(blockdev --getsize64 /dev/xvdb)" != "$BLK_RESIZE_TO" ] && [ $_n -lt 120 ]; do
        dd if=/dev/xvdb of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null
        sleep 1
        _n=$((_n + 1))
    done
    check_eq size-after "$BLK_RESIZE_TO" "$(blockdev --getsize64 /dev/xvdb)"
    log "the new size showed after about $_n s"
    if [ "$BLK_FRONT" = rust ]; then
        kscan XENPVRS-BLKFRONT "xvdb: resized"
        log "$KLAST"
        check_eq front-resized 1 "$KN"
    fi
    echo 3 > /proc/sys/vm/drop_caches
    check old-data xpattern verify-prefix /dev/xvdb "$BLK_RESIZE_FROM" "$SEED"
    check pattern-write-grown xpattern write /dev/xvdb "$BLK_RESIZE_TO" "$((SEED + 1))"
    check flush-grown blockdev --flushbufs /dev/xvdb
    echo 3 > /proc/sys/vm/drop_caches
    check pattern-verify-grown xpattern verify /dev/xvdb "$BLK_RESIZE_TO" "$((SEED + 1))"
    blk_unload_front
}
