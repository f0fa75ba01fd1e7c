# Helpers shared by the echo scenarios (sourced by qemu-tests/scenarios/echo*.sh; busybox sh).
# shellcheck shell=sh
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
