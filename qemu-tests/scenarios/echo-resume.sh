# echo-resume: our echo device survives a save and restore of the guest. The backend module in
# dom0 and the frontend module in a PV guest connect (as in the echo scenario) and run 100,000
# complement requests; dom0 saves the guest (`xl save`), restores it paused (`xl restore -p`),
# gives the new domain a new echo device (the toolstack knows nothing of ours) and unpauses it.
# The front's XenBus resume drops its old ring, grants and event channel and connects to the
# new backend, and a second batch completes with every checksum verified. At the end both
# modules report that every grant, mapping, ring, event channel and watch was given back.
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
    if ! wait_for "$(guest_log domu)" '^(ECHO-SAVE-ME|DOMU-RESULT)' 300; then
        fail "the guest did not finish its first run"
        return
    fi
    check xl-save xl save domu /data/domu.save || return
    log "SAVED domid=$d bytes=$(wc -c < /data/domu.save)"
    # The saved domain's backend device: its front is gone; removing the directory removes the
    # device, whose teardown unmaps what the dead front had granted.
    check xs-rm-old-back xenstore-rm "/local/domain/0/backend/echo/$d" || return
    check xl-restore xl restore -p /data/domu.save || return
    n=$(xl domid domu)
    log "RESTORED domid=$n"
    echo_add_device "$n" || return
    check xl-unpause xl unpause domu || return
    rm -f /data/domu.save
    if ! wait_for "$(guest_log domu)" '^(ECHO-RESUMED-RUN|DOMU-RESULT)' 300; then
        fail "the guest did not finish its run after the restore"
        return
    fi
    domu_result domu 300
    kscan XENPVRS-ECHO-BACK connected
    check_eq back-connects 2 "$KN"
    check unbind-echo-back unbind_all /sys/bus/xen-backend/drivers/xenpvrs-echo-back
    check rmmod-echo-back rmmod xenpvrs_echo_back
    kscan XENPVRS-ECHO-BACK unload
    unload=$KLAST
    log "ECHO-BACK $unload"
    check_eq back-unload-clean 1 "$(kv "$unload" clean)"
    kscan XENPVRS-ECHO-BACK disconnected
    log "ECHO-BACK $KLAST"
    check_eq back-invalid 0 "$(kv "$KLAST" invalid)"
    check_eq back-map-failures 0 "$(kv "$KLAST" map_failures)"
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
    front_run 1 || return
    # dom0 saves and restores us now. Only the kernel learns of it: the front's resume prints
    # its "resumed" line, then connects to the new backend and runs the second batch.
    echo "ECHO-SAVE-ME"
    if ! kwait XENPVRS-ECHO-FRONT resumed 1 300; then
        fail "no resumed line"
        return
    fi
    echo "ECHO-RESUMED $KLAST"
    front_run 2 || return
    echo "ECHO-RESUMED-RUN ok"
    front_unload 1
}
