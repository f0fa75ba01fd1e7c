# autoload: drivers loaded by modalias, as on a distribution, with no modprobe in the scenario.
# Both images run the hotplug agent (AUTOLOAD=1: /sbin/xen-pv-rs-hotplug loads the driver of a
# new device with `modprobe -b MODALIAS`) and carry drivers/modprobe.d/xen-pv-rs.conf in
# /etc/modprobe.d. With the file, `xl block-attach` loads and binds our blkback in dom0 and our
# blkfront in the guest, and Linux's C drivers stay out. Then the disk is detached, our modules
# are unloaded and the file removed on both sides, and the same attach gets Linux's C drivers
# back, which read the pattern our pair wrote.
TIMEOUT=300
AUTOLOAD=1
AUTO_BYTES=16777216
AUTO_SEED=4242

# wait_bound BUS DEVICE SECS: wait until a driver is bound to the device; prints its name.
wait_bound() {
    _n=$3
    while [ "$(bound_driver "$1" "$2")" = none ] && [ "$_n" -gt 0 ]; do sleep 1; _n=$((_n - 1)); done
    bound_driver "$1" "$2"
}

auto_attach() { xl_attach domu 51728 format=raw vdev=xvdb access=rw target=/data/auto.img; }

dom0_main() {
    truncate -s "$AUTO_BYTES" /data/auto.img
    write_domu_cfg domu 128 ""
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    d=$(xl domid domu)
    wait_for "$(guest_log domu)" '^AUTOLOAD-READY' 120 || { fail "the guest never got ready"; return; }

    # Our modprobe.d file in place: ours is preferred.
    check attach-ours auto_attach || return
    check_eq back-ours xenpvrs-blkback "$(wait_bound xen-backend "vbd-$d-51728" 30)"
    check c-blkback-not-loaded sh -c '! grep -q "^xen_blkback " /proc/modules'
    wait_for "$(guest_log domu)" '^PHASE ours (DONE|FAILED)' 300 || { fail "the guest never finished with our pair"; return; }
    check detach-ours xl_detach domu 51728 || return
    wait_for "$(guest_log domu)" '^PHASE ours GONE' 120 || { fail "the guest never let our blkfront go"; return; }
    check rmmod-ours rmmod xenpvrs_blkback
    check rm-modprobe-conf rm /etc/modprobe.d/xen-pv-rs.conf

    # Without the file: Linux's C driver binds.
    check attach-linux auto_attach || return
    check_eq back-linux vbd "$(wait_bound xen-backend "vbd-$d-51728" 30)"
    check c-blkback-loaded grep -q '^xen_blkback ' /proc/modules
    domu_result domu 300
    log "the hotplug agent ran modprobe $(dmesg | grep -c 'xen-pv-rs-hotplug: ') times in dom0"
}

domu_main() {
    echo "AUTOLOAD-READY"
    wait_for_dev /dev/xvdb 120 || { fail "no /dev/xvdb (ours)"; echo "PHASE ours FAILED"; return; }
    check_eq front-ours xenpvrs-blkfront "$(wait_bound xen vbd-51728 30)"
    check c-blkfront-not-loaded sh -c '! grep -q "^xen_blkfront " /proc/modules'
    check ours-write xpattern write /dev/xvdb "$AUTO_BYTES" "$AUTO_SEED"
    echo 3 > /proc/sys/vm/drop_caches
    check ours-verify xpattern verify /dev/xvdb "$AUTO_BYTES" "$AUTO_SEED"
    echo "PHASE ours DONE"
    _n=120
    while [ -e /sys/bus/xen/devices/vbd-51728 ] && [ $_n -gt 0 ]; do sleep 1; _n=$((_n - 1)); done
    check rmmod-ours rmmod xenpvrs_blkfront
    check rm-modprobe-conf rm /etc/modprobe.d/xen-pv-rs.conf
    echo "PHASE ours GONE"
    wait_for_dev /dev/xvdb 120 || { fail "no /dev/xvdb (Linux's)"; return; }
    check_eq front-linux vbd "$(wait_bound xen vbd-51728 30)"
    check c-blkfront-loaded grep -q '^xen_blkfront ' /proc/modules
    check linux-reads-ours xpattern verify /dev/xvdb "$AUTO_BYTES" "$AUTO_SEED"
}
