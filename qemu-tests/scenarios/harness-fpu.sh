# harness-fpu: the harness's self-test for vector registers lost across context switches. Under
# QEMU's TCG, Xen's lazy FPU switching lost about a third of all xmm/ymm lanes within seconds
# (user-space heap corruption and crashes everywhere); run.sh gives Xen spec-ctrl=eager-fpu.
# fpu-probe (tests/src/bin/fpu-probe.rs) runs four workers in dom0 and four in a 2-vCPU guest at
# the same time, so Xen switches vCPUs as well as the kernels switching processes; one wrong
# lane fails the scenario.
TIMEOUT=300
FPU_SECS=40
FPU_WORKERS=4

fpu_run() {
    fpu-probe "$FPU_SECS" "$FPU_WORKERS" > /tmp/fpu.out 2>&1
    _rc=$?
    cat /tmp/fpu.out
    # Each worker must have done real work: a probe that never got the CPU proves nothing.
    _min=$(sed -n 's/^FPU-PROBE worker=.* rounds=\([0-9]*\) .*/\1/p' /tmp/fpu.out | sort -n | head -1)
    [ "${_min:-0}" -ge 100 ] || { log "a worker did fewer than 100 rounds (${_min:-none})"; return 1; }
    return $_rc
}

dom0_main() {
    write_domu_cfg domu 128 "vcpus = 2"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    wait_for "$(guest_log domu)" '^FPU-PROBE-START' 120 || { fail "the guest never started its probe"; return; }
    check dom0-fpu-probe fpu_run
    domu_result domu 240
}

domu_main() {
    echo "FPU-PROBE-START"
    check domu-fpu-probe fpu_run
}
