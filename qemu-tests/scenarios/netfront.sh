# netfront: our Rust netfront (xenpvrs_netfront, max_queues=2) in the guest against the Linux C
# netback in dom0, on a stock `xl` vif with the image's vif-bridge script. The guest proves the
# interface is ours, then moves real data both ways and dom0 or the guest verifies every byte:
# - TCP, 256 MiB guest -> dom0 (dom0 verifies) and 256 MiB dom0 -> guest (the guest verifies);
# - UDP datagrams of every size class up to 65507 bytes, each echoed by dom0 and compared, at
#   MTU 1500 and again at MTU 9000 (dom0 raises its vif and bridge when the guest asks);
# - pings of 56 and 8000 bytes, a flood of 2000 (each sent when the last reply is in), and
#   of 8972 bytes unfragmented at MTU 9000;
# - UDP again with checksum offload and TSO off (ethtool -K), then both on again;
# then shows its counters (ethtool -S: both queues carried packets; TX went out lent in place,
# Linux's default trusted=1; debugfs has the same per queue) and unloads the driver.
# Our control ring sets Linux's netback up for Toeplitz receive hashing over the two queues
# (which Linux's netfront never does); dom0 reads back key and table from netback's debugfs.
TIMEOUT=900

NET_BYTES=268435456

dom0_main() {
    SEED=$(date +%s)
    DOMU_CMDLINE="xenpvrs.seed=$SEED"
    check modprobe-netback modprobe xen-netback
    write_domu_cfg domu 256 "vif = [ 'bridge=xenbr0,mac=00:16:3e:5a:00:02' ]"
    # Up: receive on 5000, verify, answer the verdict on 5001.
    printf '#!/bin/sh\nif xpattern verify - %s %s 2>/data/up.err; then echo ok; else echo "bad: $(cat /data/up.err)"; fi > /data/up.verdict\n' "$NET_BYTES" "$SEED" > /data/recv-up.sh
    # Down: whoever connects to 5003 gets the pattern.
    printf '#!/bin/sh\nexec xpattern gen %s %s\n' "$NET_BYTES" "$((SEED + 1))" > /data/send-down.sh
    chmod +x /data/recv-up.sh /data/send-down.sh
    (
        nc -l -p 5000 -e /data/recv-up.sh
        grep -q '^ok' /data/up.verdict && echo ok > /data/up.ack || echo bad > /data/up.ack
        log "dom0 up verdict: $(cat /data/up.verdict)"
        nc -l -p 5001 < /data/up.ack
    ) &
    nc -l -p 5003 -e /data/send-down.sh &
    xudp server 6000 &
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    d=$(xl domid domu)
    check_eq backend-driver vif "$(bound_driver xen-backend "vif-$d-0")"
    # MTU 9000 when the guest asks: vif and bridge, then the go-ahead on 5009.
    if wait_guest domu '^NET-MTU-9000-PLEASE' 600 "its MTU 9000 phase"; then
        # Our control ring set Linux's netback up for receive hashing: Toeplitz, our key
        # (the usual RSS key), a table of 128 entries alternating between the two queues.
        ctrl=/sys/kernel/debug/xen-netback/vif$d.0/ctrl
        sed 's/^/NETBACK-CTRL /' "$ctrl"
        check_eq netback-hash-toeplitz "Hash Algorithm: TOEPLITZ" "$(grep '^Hash Algorithm' "$ctrl")"
        check_eq netback-hash-key "[ 0 - 7]: 6d 5a 56 da 25 5b 0e c2" "$(grep '^\[ *0 - *7\]' "$ctrl" | head -1 | tr -s ' ' | sed 's/ $//')"
        check_eq netback-hash-mapping "[ 0 - 7]: 0 1 0 1 0 1 0 1|[ 120 - 127]: 0 1 0 1 0 1 0 1" \
            "$(sed -n '/^Hash Mapping/,$p' "$ctrl" | grep -E '^\[ *(0|120) - ' | tr -s ' ' | sed 's/ $//' | tr '\n' '|' | sed 's/|$//')"
        check vif-mtu ip link set "vif$d.0" mtu 9000
        check bridge-mtu ip link set xenbr0 mtu 9000
        echo mtu9000 > /data/mtu.ack
        nc -l -p 5009 < /data/mtu.ack &
    fi
    domu_result domu 300
    check_eq up-verified-in-dom0 ok "$(cat /data/up.ack 2>/dev/null)"
    log "netback: $(grep -c . /proc/net/dev) interfaces; vif$d.0: $(grep "vif$d.0" /proc/net/dev)"
}

domu_main() {
    cmdline_seed || return
    check modprobe-netfront modprobe xenpvrs_netfront max_queues=2
    n=30
    while [ ! -e /sys/class/net/eth0 ] && [ $n -gt 0 ]; do sleep 1; n=$((n - 1)); done
    check_eq netfront-bound xenpvrs-netfront "$(basename "$(readlink /sys/class/net/eth0/device/driver)")"
    check_eq driver-in-ethtool "driver: xenpvrs_netfront" "$(ethtool -i eth0 | grep '^driver:')"
    check_eq mac 00:16:3e:5a:00:02 "$(cat /sys/class/net/eth0/address)"
    ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0 || fail "eth0 up"
    n=30
    until ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1 || [ $n -eq 0 ]; do n=$((n - 1)); done
    check_eq carrier 1 "$(cat /sys/class/net/eth0/carrier)"
    check_eq queues 2 "$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l)"
    kscan XENPVRS-NETFRONT "eth0: connected"
    log "$KLAST"
    # Linux's netback offers split event channels: a TX and an RX channel per queue.
    check_eq split-event-channels 1 "$(kv "$KLAST" split-event-channels)"
    # Linux's default trusted=1: TX grants the skbs' own pages (checked in the counters below).
    check_eq trusted-lends 1 "$(kv "$KLAST" trusted)"
    check_eq channels-in-proc-interrupts 4 "$(grep -cE 'xenpvrs-netfront-(tx|rx)' /proc/interrupts)"
    # Two queues and Linux's netback offers the control ring: we set up receive hashing
    # (dom0 checks what its netback took).
    check_eq ctrl-ring-channel 1 "$(grep -c 'xenpvrs-netfront-ctrl' /proc/interrupts)"
    kwait XENPVRS-NETFRONT "device/vif/0: receive hashing on" 1 30
    log "$KLAST"
    check_eq receive-hashing-mapping 128 "$(kv "$KLAST" mapping)"

    # TCP up: dom0 verifies every byte and answers on 5001.
    check tcp-up sh -c "xpattern gen $NET_BYTES $SEED | nc 10.0.0.1 5000"
    n=120
    ack=""
    while [ -z "$ack" ] && [ $n -gt 0 ]; do
        ack=$(nc 10.0.0.1 5001 2>/dev/null)
        [ -n "$ack" ] || sleep 1
        n=$((n - 1))
    done
    check_eq tcp-up-verified ok "$ack"
    # TCP down: the guest verifies every byte.
    printf '#!/bin/sh\nif xpattern verify - %s %s 2>/tmp/down.err; then echo ok; else echo "bad: $(cat /tmp/down.err)"; fi > /tmp/down.verdict\n' "$NET_BYTES" "$((SEED + 1))" > /tmp/recv-down.sh
    chmod +x /tmp/recv-down.sh
    nc 10.0.0.1 5003 -e /tmp/recv-down.sh
    log "down verdict: $(cat /tmp/down.verdict)"
    check tcp-down-verified grep -q '^ok' /tmp/down.verdict

    check udp-mtu-1500 xudp client 10.0.0.1 6000 "$SEED" 65507
    check ping ping -c 20 -q 10.0.0.1
    # A ping flood: the next echo as soon as the reply is in, 2000 of them, none lost.
    flood=$(ping -A -c 2000 -w 120 -q 10.0.0.1 | grep 'packets transmitted')
    log "ping flood: $flood"
    check_eq ping-flood-no-loss "2000 packets transmitted, 2000 packets received, 0% packet loss" "$flood"
    check ping-8000 ping -c 10 -s 8000 -q 10.0.0.1

    # MTU 9000 on both ends.
    check mtu-9000 ip link set eth0 mtu 9000
    echo "NET-MTU-9000-PLEASE"
    n=120
    ack=""
    while [ -z "$ack" ] && [ $n -gt 0 ]; do
        ack=$(nc 10.0.0.1 5009 2>/dev/null)
        [ -n "$ack" ] || sleep 1
        n=$((n - 1))
    done
    check_eq dom0-mtu-9000 mtu9000 "$ack"
    check udp-mtu-9000 xudp client 10.0.0.1 6000 "$((SEED + 2))" 65507
    check ping-8972-unfragmented ping -c 10 -s 8972 -q 10.0.0.1
    # Scatter-gather off: a packet must fit a page again, so the MTU falls back to 1500; back on
    # afterwards (the MTU stays 1500 for the rest).
    check sg-off ethtool -K eth0 sg off
    check_eq sg-off-mtu-1500 1500 "$(cat /sys/class/net/eth0/mtu)"
    check sg-on ethtool -K eth0 sg on
    # Offloads off (checksums computed by the stack, no TSO), then on again.
    check offloads-off ethtool -K eth0 tx off tso off
    check_eq tso-off "tcp-segmentation-offload: off" "$(ethtool -k eth0 | grep '^tcp-segmentation-offload:')"
    check udp-offloads-off xudp client 10.0.0.1 6000 "$((SEED + 3))" 65507
    check offloads-on ethtool -K eth0 tx on tso on
    check_eq tso-on "tcp-segmentation-offload: on" "$(ethtool -k eth0 | grep '^tcp-segmentation-offload:')"

    ethtool -S eth0 | sed 's/^/ETHTOOL /'
    for q in 0 1; do
        t=$(ethtool -S eth0 | awk -v k="queue${q}_tx_packets:" '$1 == k {print $2}')
        r=$(ethtool -S eth0 | awk -v k="queue${q}_rx_packets:" '$1 == k {print $2}')
        log "queue $q: tx_packets=$t rx_packets=$r"
        check "queue$q-carried-traffic" test "$((t + r))" -gt 0
    done
    # With receive hashing on, Linux's netback sends each packet's Toeplitz hash; the driver
    # gives it to the stack as the skb's hash.
    hashed=$(ethtool -S eth0 | awk '$1 == "rx_hashed:" {print $2}')
    log "rx_hashed=$hashed"
    check rx-hashed-by-backend test "${hashed:-0}" -gt 0
    # Sent in place: the 256 MiB up and everything else went out lent, none held back.
    lent=$(ethtool -S eth0 | awk '$1 == "lent_bytes:" {print $2}')
    log "lent_bytes=$lent copied_bytes=$(ethtool -S eth0 | awk '$1 == "copied_bytes:" {print $2}')"
    check tx-lent-in-place test "${lent:-0}" -gt "$NET_BYTES"
    check_eq tx-still-mapped 0 "$(ethtool -S eth0 | awk '$1 == "tx_still_mapped:" {print $2}')"
    # The same counters per queue in debugfs, refreshed by each poll: both queues' sum is
    # ethtool's live total, give or take the packets of the last moments (1 %).
    debugfs_counters | grep '^xenpvrs-netfront-' | sed 's/^/DEBUGFS /'
    for k in tx_packets rx_packets lent_bytes grants events_received; do
        d=0
        for q in 0 1; do
            d=$((d + $(cat "/sys/kernel/debug/xenpvrs-netfront-eth0-q$q/$k" 2>/dev/null || echo 0)))
        done
        e=$(ethtool -S eth0 | awk -v k="$k:" '$1 == k {print $2}')
        log "debugfs $k=$d ethtool $k=$e"
        check "debugfs-$k-sums-queues" test "$d" -gt 0 -a "$d" -le "$e" -a "$((e - d))" -le "$((e / 100))"
    done
    check_eq rx-errors 0 "$(ethtool -S eth0 | awk '$1 == "rx_errors:" {print $2}')"
    check_eq tx-errors 0 "$(ethtool -S eth0 | awk '$1 == "tx_errors:" {print $2}')"
    ip link set eth0 down
    unload_netfront
    check_eq eth0-gone 0 "$(ls /sys/class/net | grep -c '^eth')"
}
