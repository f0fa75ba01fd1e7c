# echo: our Rust echo device end to end. The backend module (xenpvrs_echo_back) in dom0 and the
# frontend module (xenpvrs_echo_front) in a PV guest connect through XenStore nodes written as a
# toolstack would, and exchange 100,000 complement requests whose data both sides verify (the
# back validates, maps and checksums each request; the front checks every checksum and every
# complemented page). Then the guest module is unloaded, reloaded and runs again; then dom0
# writes a bogus backend state (42) and unloads its module while the guest is connected, and
# the guest survives and reports the disconnect. Both modules print their layer's counters at unload: every grant, mapping, ring,
# event channel and watch must be given back (clean=1).
TIMEOUT=450

REQUESTS=100000

. /lib/xen-pv-rs-echo.sh

dom0_main() {
    check modprobe-echo-back modprobe xenpvrs_echo_back || return
    write_domu_cfg domu 128 ""
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    d=$(xl domid domu)
    echo_add_device "$d" || return
    # The guest runs, reloads its module and runs again; then we pull the backend from under it.
    if ! wait_for "$(guest_log domu)" '^(ECHO-RELOADED|DOMU-RESULT)' 300; then
        fail "the guest did not finish its two runs"
        return
    fi
    kscan XENPVRS-ECHO-BACK connected
    check_eq back-connects 2 "$KN"
    # A state number no XenBus state has, where the front reads its peer's state: the kernel
    # hands it to the front's otherend_changed as is; the front must shrug it off.
    check bogus-back-state xenstore-write "/local/domain/0/backend/echo/$d/0/state" 42
    sleep 2
    check unbind-echo-back unbind_all /sys/bus/xen-backend/drivers/xenpvrs-echo-back
    check rmmod-echo-back rmmod xenpvrs_echo_back
    kscan XENPVRS-ECHO-BACK unload
    unload=$KLAST
    log "ECHO-BACK $unload"
    check_eq back-unload-clean 1 "$(kv "$unload" clean)"
    # The engine's counters are per device, over both connections.
    kscan XENPVRS-ECHO-BACK disconnected
    last=$KLAST
    log "ECHO-BACK $last"
    check_eq back-served "$((2 * REQUESTS))" "$(kv "$last" served)"
    check_eq back-invalid 0 "$(kv "$last" invalid)"
    check_eq back-map-failures 0 "$(kv "$last" map_failures)"
    domu_result domu 300
    check_eq domu-disconnect-seen yes "$(guest_value domu ECHO-DISCONNECT-SEEN)"
}

# --- domU ----------------------------------------------------------------------------------

# front_run N: the N-th result line since boot says all requests completed and verified.
front_run() {
    if ! kwait XENPVRS-ECHO-FRONT result "$1" 300; then
        fail "run $1: no result line"
        return 1
    fi
    line=$KLAST
    echo "ECHO-RUN$1 $line"
    check_eq "run$1-outcome" done "$(kv "$line" outcome)"
    check_eq "run$1-completed" "$REQUESTS" "$(kv "$line" completed)"
    check_eq "run$1-mismatches" 0 "$(kv "$line" mismatches)"
}

# front_unload N: unload the module; its N-th unload line reports a clean layer.
front_unload() {
    check "unbind-front$1" unbind_all /sys/bus/xen/drivers/xenpvrs-echo-front
    check "rmmod-front$1" rmmod xenpvrs_echo_front || return
    kwait XENPVRS-ECHO-FRONT unload "$1" 6 || fail "no unload line $1"
    line=$KLAST
    echo "ECHO-UNLOAD$1 $line"
    check_eq "front-unload$1-clean" 1 "$(kv "$line" clean)"
}

domu_main() {
    check modprobe-echo-front modprobe xenpvrs_echo_front || return
    # The module's load-time self-test of the glue's grant copy (two local frames).
    kscan XENPVRS-ECHO-FRONT grant-copy
    check_eq grant-copy "grant-copy ok" "$KLAST"
    front_run 1 || return
    front_unload 1
    check modprobe-echo-front-again modprobe xenpvrs_echo_front || return
    front_run 2 || return
    kscan XENPVRS-ECHO-FRONT disconnected
    before=$KN
    echo "ECHO-RELOADED"
    if kwait XENPVRS-ECHO-FRONT disconnected $((before + 1)) 120; then
        echo "ECHO-DISCONNECT $KLAST"
        echo "ECHO-DISCONNECT-SEEN yes"
    else
        fail "no disconnect reported after the backend left"
    fi
    front_unload 2
}
