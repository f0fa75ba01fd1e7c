# Helpers shared by the echo scenarios (sourced by qemu-tests/scenarios/echo*.sh; busybox sh).
# shellcheck shell=sh
# kv LINE KEY: the value of KEY=value in LINE (shell expansion only: few processes, see below).
kv() {
    case " $1" in
    *" $2="*) _v=${1##*"$2="}; echo "${_v%% *}" ;;
    esac
}

# kscan TAG WHAT: over the kernel log, KN = how many lines hold "TAG WHAT", KLAST = the last one
# from WHAT on. One process (dmesg) and shell builtins: busybox processes in these guests crash
# now and then under TCG, with or without our modules, so the scenario starts as few as it can.
kscan() {
    KN=0
    KLAST=
    dmesg > /tmp/kmsg || return
    while IFS= read -r _l; do
        case "$_l" in
        *"$1 $2"*) KN=$((KN + 1)); KLAST=${_l#*"$1 "} ;;
        esac
    done < /tmp/kmsg
}

# kwait TAG WHAT N SECS: wait until there are at least N such lines (KLAST is the last).
kwait() {
    _n=$4
    kscan "$1" "$2"
    while [ "$KN" -lt "$3" ] && [ "$_n" -gt 0 ]; do
        sleep 2
        _n=$((_n - 2))
        kscan "$1" "$2"
    done
    [ "$KN" -ge "$3" ]
}

# unbind_all DRIVERDIR: unbind every device from a XenBus driver. The XenBus core holds a
# reference on a driver's module while a device is bound, so a module is unloaded by unbinding
# its devices (as for the C PV drivers), then rmmod.
unbind_all() {
    for _d in "$1"/echo-*; do
        [ -e "$_d" ] || continue
        echo "${_d##*/}" > "$1/unbind" || return
    done
}

# --- dom0 ----------------------------------------------------------------------------------

# echo_add_device DOMID: the toolstack's part. Both directories are created and given their
# permissions first (children inherit them), the keys written in one transaction, and the two
# state nodes last: XenBus creates a device only once its state reads Initialising.
echo_add_device() {
    fe=/local/domain/$1/device/echo/0
    be=/local/domain/0/backend/echo/$1/0
    check xs-mkdirs xenstore-write "$fe" "" "$be" "" || return
    check xs-chmod-front xenstore-chmod "$fe" "n$1" r0 || return
    check xs-chmod-back xenstore-chmod "$be" n0 "r$1" || return
    check xs-keys xenstore-write "$fe/backend" "$be" "$fe/backend-id" 0 \
        "$be/frontend" "$fe" "$be/frontend-id" "$1" "$be/online" 1 || return
    check xs-states xenstore-write "$be/state" 1 "$fe/state" 1
}
