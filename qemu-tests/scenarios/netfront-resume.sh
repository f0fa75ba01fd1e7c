# netfront-resume: our Rust netfront keeps its interface and a TCP connection across a save and
# restore of the guest (XSA-465 was a netfront crash after resume). The guest streams 64 MiB to
# dom0 over TCP; dom0 saves the guest (`xl save`) in the middle of the stream and restores it
# (`xl restore`: a new Linux C netback, a new vif on the bridge). The driver drops its old rings,
# grants and channels, keeps eth0 (same ifindex, address and socket), and joins the new backend;
# the stream goes on on the same connection and dom0 verifies every byte it received.
TIMEOUT=600

NET_BYTES=67108864

dom0_main() {
    SEED=$(date +%s)
    DOMU_CMDLINE="xenpvrs.seed=$SEED"
    check modprobe-netback modprobe xen-netback || return
    write_domu_cfg domu 192 "vif = [ 'bridge=xenbr0,mac=00:16:3e:5a:00:03' ]"
    printf '#!/bin/sh\nif xpattern verify - %s %s 2>/data/up.err; then echo ok; else echo "bad: $(cat /data/up.err)"; fi > /data/up.verdict\n' "$NET_BYTES" "$SEED" > /data/recv-up.sh
    chmod +x /data/recv-up.sh
    (
        nc -l -p 5000 -e /data/recv-up.sh
        grep -q '^ok' /data/up.verdict && echo ok > /data/up.ack || echo bad > /data/up.ack
        log "dom0 verdict: $(cat /data/up.verdict)"
        nc -l -p 5001 < /data/up.ack
    ) &
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    wait_guest domu '^(NET-SAVE-ME|DOMU-RESULT)' 300 "the save" || return
    # The stream is running: let some of it through first.
    sleep 3
    log "saving (the stream is running)"
    check xl-save xl save domu /data/domu.save || return
    log "SAVED bytes=$(wc -c < /data/domu.save)"
    check xl-restore xl restore /data/domu.save || return
    rm -f /data/domu.save
    d=$(xl domid domu)
    check_eq new-backend-driver vif "$(bound_driver xen-backend "vif-$d-0")"
    domu_result domu 400
    check_eq stream-verified-in-dom0 ok "$(cat /data/up.ack 2>/dev/null)"
}

domu_main() {
    cmdline_seed || return
    check modprobe-netfront modprobe xenpvrs_netfront || return
    n=30
    while [ ! -e /sys/class/net/eth0 ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
    ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0 || fail "eth0 up"
    n=30
    until ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1 || [ $n -eq 0 ]; do n=$((n - 1)); done
    ifindex=$(cat /sys/class/net/eth0/ifindex)
    (
        xpattern gen "$NET_BYTES" "$SEED" | nc 10.0.0.1 5000
        echo $? > /tmp/send.rc
    ) &
    sleep 2
    echo "NET-SAVE-ME"
    kwait XENPVRS-NETFRONT "eth0: connected" 2 300
    check_eq reconnected 2 "$KN"
    log "$KLAST"
    check_eq resumes 1 "$(kv "$KLAST" resumes)"
    kscan XENPVRS-NETFRONT "eth0: disconnected (restored; reconnecting)"
    check_eq old-connection-dropped 1 "$KN"
    # The stream ends on the connection it began on.
    n=400
    while [ ! -e /tmp/send.rc ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
    check_eq stream-sent 0 "$(cat /tmp/send.rc 2>/dev/null)"
    n=120
    ack=""
    while [ -z "$ack" ] && [ $n -gt 0 ]; do
        ack=$(nc 10.0.0.1 5001 2>/dev/null)
        [ -n "$ack" ] || sleep 1
        n=$((n - 1))
    done
    check_eq stream-verified ok "$ack"
    check_eq same-interface "$ifindex" "$(cat /sys/class/net/eth0/ifindex)"
    check_eq address-kept 1 "$(ip -4 addr show dev eth0 | grep -c '10.0.0.2/24')"
    check ping-after ping -c 3 -q 10.0.0.1
    ip link set eth0 down
    unload_netfront
}
