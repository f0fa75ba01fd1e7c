# blkback-readback: two read-only disks (copies of the 160 MiB tools image), served by our
# blkback to Linux's C blkfront, are read back whole eight times each, both at once, with the
# guest's caches dropped before every round; every read must match dom0's checksum of the
# image. Large buffered reads (readahead) make indirect requests on persistent grants, the path
# a guest loads its programs through: a wrong page here would show up elsewhere as a program
# crashing at start.
TIMEOUT=600
BLK_BACK=rust
BLK_FRONT=c

. /lib/xen-pv-rs-blk.sh

dom0_main() {
    blk_load_back || return
    check tools-disk make_tools_disk /data/tools.img || return
    cp /data/tools.img /data/tools2.img
    SUM=$(md5sum /data/tools.img | cut -d' ' -f1)
    log "tools.img md5 $SUM"
    DOMU_CMDLINE="xenpvrs.sum=$SUM"
    write_domu_cfg domu 256 "vcpus = 2
disk = [ 'format=raw,vdev=xvde,access=ro,target=/data/tools.img',
         'format=raw,vdev=xvdf,access=ro,target=/data/tools2.img' ]"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    domu_result domu 500
    blk_unload_back
    # The reads really took the indirect, persistent path: the queues' last counters say so.
    _ind=0
    _hits=0
    for v in $(dmesg | grep -a 'XENPVRS-BLKBACK backend/vbd/[0-9]*/517[79][62] q[0-9]*: disconnected' |
        sed -n 's/.* indirect=\([0-9]*\) persistent_hits=\([0-9]*\) .*/\1:\2/p'); do
        _ind=$((_ind + ${v%:*}))
        _hits=$((_hits + ${v#*:}))
    done
    log "indirect requests $_ind, persistent hits $_hits"
    [ "$_ind" -gt 0 ] || fail "no indirect request reached the backend"
    [ "$_hits" -gt 0 ] || fail "no persistent grant was reused"
}

domu_main() {
    SUM=$(cmdline_value xenpvrs.sum)
    blk_load_front 2 2 || return
    wait_for_dev /dev/xvde 60 || { fail "no /dev/xvde"; return; }
    wait_for_dev /dev/xvdf 60 || { fail "no /dev/xvdf"; return; }
    bad=0
    for i in 1 2 3 4 5 6 7 8; do
        echo 3 > /proc/sys/vm/drop_caches
        md5sum /dev/xvde > /tmp/e.sum &
        md5sum /dev/xvdf > /tmp/f.sum
        wait
        e=$(cut -d' ' -f1 /tmp/e.sum); f=$(cut -d' ' -f1 /tmp/f.sum)
        log "round $i xvde $e xvdf $f"
        [ "$e" = "$SUM" ] || { bad=$((bad + 1)); log "MISMATCH xvde round $i"; }
        [ "$f" = "$SUM" ] || { bad=$((bad + 1)); log "MISMATCH xvdf round $i"; }
    done
    check_eq readback-mismatches 0 "$bad"
}
