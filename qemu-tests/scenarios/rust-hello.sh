# rust-hello: our out-of-tree Rust module, xenpvrs_hello, loaded and unloaded in dom0 and in a PV
# guest; each prints its domain id read from XenStore through the kernel's XenStore API and runs
# the project's ring crate (compiled by Kbuild from the host tests' source) in the kernel.
TIMEOUT=300

hello_value() { dmesg | sed -n "s/.*XENPVRS-HELLO $1\([^ ]*\).*/\1/p" | tail -1; }

# hello_checks: load, check the module's lines, unload; prints the domid the module read.
hello_checks() {
    check insmod-hello modprobe xenpvrs_hello || return
    check_eq hello-ring "ok" "$(hello_value 'ring ')"
    check rmmod-hello rmmod xenpvrs_hello
    check hello-unloaded sh -c '! grep -q "^xenpvrs_hello " /proc/modules'
    check_eq hello-unload-line "$(hello_value domid=)" "$(hello_value 'unload domid=')"
}

dom0_main() {
    hello_checks
    check_eq dom0-domid 0 "$(hello_value domid=)"
    write_domu_cfg domu 128 ""
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    want=$(xl domid domu)
    domu_result domu 300
    check_eq domu-domid "$want" "$(guest_value domu DOMID)"
}

domu_main() {
    hello_checks
    echo "DOMID $(hello_value domid=)"
}
