# netfront-detach: our Rust netfront against the Linux C netback through ten `xl network-detach`
# / `xl network-attach` cycles with a ping running all along. Each detach closes the connection
# and removes eth0 (every grant ended, every channel unbound); each attach (a new vif, same MAC)
# brings a new eth0 that the guest configures and reaches dom0 through. The first five cycles
# lend the skbs' pages to the backend (trusted=1), the last five copy (trusted=0 written to the
# module parameter, read at each connection). At the end the driver
# unloads clean and dom0 has no vif of the guest left but the current one.
TIMEOUT=600
MAC=00:16:3e:5a:00:04
CYCLES=10

# vif_detach DOMAIN DEVID: xl network-detach; done once the frontend directory is gone.
vif_detach() {
    _fe=/local/domain/$(xl domid "$1")/device/vif/$2
    xl network-detach "$1" "$2" || return
    _n=30
    while xenstore-exists "$_fe" 2>/dev/null && [ $_n -gt 0 ]; do sleep 1; _n=$((_n - 1)); done
    ! xenstore-exists "$_fe" 2>/dev/null
}

dom0_main() {
    check modprobe-netback modprobe xen-netback || return
    write_domu_cfg domu 128 "vif = [ 'bridge=xenbr0,mac=$MAC' ]"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    wait_guest domu '^(NET-CYCLE 0 UP|DOMU-RESULT)' 120 "its first interface" || return
    devid=0
    i=1
    while [ $i -le $CYCLES ]; do
        check "detach-$i" vif_detach domu "$devid" || return
        check "attach-$i" xl network-attach domu bridge=xenbr0 "mac=$MAC" || return
        devid=$(xenstore-list "/local/domain/$(xl domid domu)/device/vif" | tail -1)
        wait_guest domu "^(NET-CYCLE $i UP|DOMU-RESULT)" 120 "cycle $i" || return
        i=$((i + 1))
    done
    # Every detached vif is gone from dom0; the current one is on the bridge.
    check_eq one-vif-left 1 "$(ls /sys/class/net | grep -c "^vif$(xl domid domu)\.")"
    domu_result domu 120
}

# up_and_ping I: configure the current eth0 and reach dom0; says NET-CYCLE I UP.
up_and_ping() {
    check_eq "cycle-$1-mac" "$MAC" "$(cat /sys/class/net/eth0/address)"
    ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0 || { fail "cycle $1: eth0 up"; return 1; }
    # Carrier once connected (it cannot be read while the interface is down).
    _n=30
    until [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ] || [ $_n -eq 0 ]; do sleep 1; _n=$((_n - 1)); done
    check_eq "cycle-$1-carrier" 1 "$(cat /sys/class/net/eth0/carrier)"
    _n=30
    until ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1 || [ $_n -eq 0 ]; do _n=$((_n - 1)); done
    if [ $_n -eq 0 ]; then
        fail "cycle $1: dom0 unreachable"
        return 1
    fi
    # Cycles 6 to 10 copy every packet (trusted=0); the earlier ones lend the skbs' pages.
    # The parameter is read at each connection, so it changes while cycle 5 is connected,
    # before dom0 (waiting for the line below) detaches it.
    [ "$1" -eq 5 ] && echo 0 > /sys/module/xenpvrs_netfront/parameters/trusted
    echo "NET-CYCLE $1 UP"
}

domu_main() {
    check modprobe-netfront modprobe xenpvrs_netfront || return
    n=30
    while [ ! -e /sys/class/net/eth0 ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
    up_and_ping 0 || return
    # Traffic all along: a ping every 0.2 s (its losses while detached are expected).
    ping -i 0.2 -q 10.0.0.1 > /tmp/ping.log 2>&1 &
    pinger=$!
    last=$(cat /sys/class/net/eth0/ifindex)
    i=1
    while [ $i -le $CYCLES ]; do
        # A new eth0 (another ifindex) after the detach and the attach.
        n=120
        while [ $n -gt 0 ]; do
            cur=$(cat /sys/class/net/eth0/ifindex 2>/dev/null)
            [ -n "$cur" ] && [ "$cur" != "$last" ] && break
            sleep 1
            n=$((n - 1))
        done
        [ $n -gt 0 ] || { fail "cycle $i: no new eth0"; return; }
        last=$cur
        up_and_ping "$i" || return
        i=$((i + 1))
    done
    kill "$pinger" 2>/dev/null
    check_eq removed-each-cycle "$CYCLES" "$(dmesg | grep -c 'XENPVRS-NETFRONT device/vif/[0-9]*: removed')"
    kscan XENPVRS-NETFRONT "eth0: connected"
    check_eq connected-each-cycle "$((CYCLES + 1))" "$KN"
    check_eq lending-connections 6 "$(dmesg | grep -c 'XENPVRS-NETFRONT eth0: connected .* trusted=1')"
    check_eq copying-connections 5 "$(dmesg | grep -c 'XENPVRS-NETFRONT eth0: connected .* trusted=0')"
    check_eq nothing-held-by-backend 0 "$(dmesg | grep -c 'still maps a sent packet')"
    check ping-at-the-end ping -c 3 -q 10.0.0.1
    ip link set eth0 down
    unload_netfront
}
