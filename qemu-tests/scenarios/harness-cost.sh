# harness-cost (a benchmark: run by name, e.g. `XEN_PV_RS_CPU=qemu64 cargo xtask qemu
# harness-cost`): what the harness's CPU model and Xen options cost, measured on Linux's own
# block drivers (C blkfront in a 2-vCPU guest, C blkback in dom0, a 256 MiB file-backed disk).
# fio: 4 KiB random reads at queue depth 32 and 1 MiB sequential reads, 15 s each, twice; prints
# COST lines that docs/harness.md compares across CPU models.
TIMEOUT=900
BENCHMARK=1
COST_BYTES=268435456

dom0_main() {
    check modprobe-blkback modprobe xen-blkback || return
    check fill-disk xpattern write /data/cost.img "$COST_BYTES" 3
    check tools-disk make_tools_disk /data/tools.img || return
    write_domu_cfg domu 320 "vcpus = 2
disk = [ 'format=raw,vdev=xvdb,access=ro,target=/data/cost.img',
         'format=raw,vdev=xvdc,access=ro,target=/data/tools.img' ]"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    domu_result domu 600
    grep -a '^COST ' "$(guest_log domu)" | tr -d '\r'
}

# cost_fio NAME FIO-ARGS...: one 15 s fio job on xvdb; prints "COST NAME iops=N kibps=N".
cost_fio() {
    _name=$1
    shift
    fio --name="$_name" --filename=/dev/xvdb --direct=1 --ioengine=libaio --time_based \
        --runtime=15 --readonly --output-format=terse --terse-version=3 "$@" > /tmp/fio.terse || return
    tail -1 /tmp/fio.terse | awk -F';' -v n="$_name" '{ printf "COST %s iops=%d kibps=%d\n", n, $8, $7 }'
}

domu_main() {
    check modprobe-c-blkfront modprobe xen-blkfront || return
    wait_for_dev /dev/xvdc 60 || { fail "no tools disk"; return; }
    use_tools /dev/xvdc || return
    wait_for_dev /dev/xvdb 60 || { fail "no xvdb"; return; }
    for _r in 1 2; do
        check "randread-$_r" cost_fio randread-4k-qd32 --rw=randread --bs=4k --iodepth=32
        check "seqread-$_r" cost_fio seqread-1m --rw=read --bs=1M --iodepth=4
    done
}
