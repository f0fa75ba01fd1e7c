# blkfront-detach: our Rust blkfront in the guest, the Linux C blkback in dom0. Ten cycles of
# `xl block-attach` and `xl block-detach` of a file-backed disk, every other one detached while
# the guest is reading and writing it. In each cycle the guest first checks that the data it
# wrote and flushed in the previous cycle is all there (nothing completed is lost), writes a new
# pattern and flushes; I/O cut off by a detach must fail cleanly (an error, no hang, no kernel
# warning), and the disk must come back on the next attach. A last attach checks the last
# cycle's data; at unload every grant, ring and channel has been given back.
TIMEOUT=1800

CYCLES=10
DISK_BYTES=67108864
KEEP_BYTES=16777216

attach() {
    xl_attach domu 51728 format=raw vdev=xvdb access=rw target=/data/det.img
}

dom0_main() {
    SEED=$(date +%s)
    DOMU_CMDLINE="xenpvrs.seed=$SEED"
    check modprobe-blkback modprobe xen-blkback || return
    truncate -s "$DISK_BYTES" /data/det.img
    write_domu_cfg domu 192 "vcpus = 2"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    wait_for "$(guest_log domu)" '^BLKFRONT-LOADED' 120 || { fail "guest never loaded blkfront"; guest_dump domu; return; }
    i=1
    while [ $i -le $CYCLES ]; do
        check "attach-$i" attach || return
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
    check attach-final attach
    domu_result domu 600
}

# --- domU ----------------------------------------------------------------------------------

domu_main() {
    cmdline_seed || return
    check modprobe-blkfront modprobe xenpvrs_blkfront max_ring_page_order=1 max_queues=2 || return
    echo "BLKFRONT-LOADED"
    i=1
    while [ $i -le $((CYCLES + 1)) ]; do
        wait_for_dev /dev/xvdb 120 || { fail "cycle $i: no /dev/xvdb"; echo "CYCLE $i FAILED"; return; }
        if [ $i -gt 1 ]; then
            check "cycle-$i-previous-data" xpattern verify-prefix /dev/xvdb "$KEEP_BYTES" "$((SEED + i - 1))"
        fi
        [ $i -gt $CYCLES ] && break
        check "cycle-$i-write" xpattern write /dev/xvdb "$KEEP_BYTES" "$((SEED + i))"
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
        kscan XENPVRS-BLKFRONT "xvdb: disconnected"
        log "cycle $i: $KN disconnects so far"
        echo "CYCLE $i GONE"
        i=$((i + 1))
    done
    kscan XENPVRS-BLKFRONT "xvdb: connected"
    check_eq connections "$((CYCLES + 1))" "$KN"
    unload_blkfront
}
