# smoke: the stock Linux C drivers on both sides (xen-blkback/xen-netback in dom0, xen-blkfront/
# xen-netfront in the guest). The guest writes a pseudo-random pattern over a 256 MiB disk backed
# by a file in dom0 and reads every byte back, makes and checks an ext4 file system, and sends a
# 64 MiB file from it to dom0 over TCP through its vif; dom0 verifies every byte it received.
TIMEOUT=450

DISK_BYTES=268435456
NET_BYTES=67108864

dom0_main() {
    # A new pattern each run; the guest gets the seed on its command line.
    DISK_SEED=$(date +%s)
    NET_SEED=$((DISK_SEED + 1))
    DOMU_CMDLINE="xenpvrs.seed=$DISK_SEED"
    check modprobe-blkback modprobe xen-blkback
    check modprobe-netback modprobe xen-netback
    truncate -s "$DISK_BYTES" /data/disk.img
    write_domu_cfg domu 256 "disk = [ 'format=raw,vdev=xvda,access=rw,target=/data/disk.img' ]
vif = [ 'bridge=xenbr0,mac=00:16:3e:5a:00:02' ]"
    # Receive on 5000; once the sender closes, verify what arrived and answer on 5001, so the
    # guest knows dom0 has everything before it powers off.
    (
        # busybox nc stops reading the connection at EOF on its own stdin (/dev/null for a
        # background job): hand the connection to a reader that takes it to the end instead.
        printf '#!/bin/sh\nexec cat > /data/net.bin\n' > /data/recv-net.sh
        chmod +x /data/recv-net.sh
        nc -l -p 5000 -e /data/recv-net.sh
        xpattern verify /data/net.bin "$NET_BYTES" "$NET_SEED" > /data/net.verdict 2>&1 &&
            echo ok > /data/net.ack || echo bad > /data/net.ack
        log "dom0 received $(stat -c %s /data/net.bin) bytes: $(cat /data/net.verdict)"
        nc -l -p 5001 < /data/net.ack
    ) &
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    domu_result domu 400
    check net-received xpattern verify /data/net.bin "$NET_BYTES" "$NET_SEED"
}

domu_main() {
    cmdline_seed || return
    DISK_SEED=$SEED
    NET_SEED=$((DISK_SEED + 1))
    check modprobe-blkfront modprobe xen-blkfront
    check modprobe-netfront modprobe xen-netfront
    wait_for_dev /dev/xvda 30 || { fail "no /dev/xvda"; return; }
    check_eq disk-bytes "$DISK_BYTES" "$(blockdev --getsize64 /dev/xvda)"

    # A pseudo-random pattern over the whole disk (each word depends on its offset), flushed to
    # the backend; then the page cache is dropped and every byte is read back from the backend.
    check disk-write xpattern write /dev/xvda "$DISK_BYTES" "$DISK_SEED"
    check disk-flush blockdev --flushbufs /dev/xvda
    echo 3 > /proc/sys/vm/drop_caches
    check disk-verify xpattern verify /dev/xvda "$DISK_BYTES" "$DISK_SEED"

    check mkfs-ext4 mkfs.ext4 -q -F /dev/xvda
    check fsck-ext4 e2fsck -fn /dev/xvda
    check mount-ext4 mount -t ext4 /dev/xvda /mnt || return
    check fs-write xpattern write /mnt/net.bin "$NET_BYTES" "$NET_SEED"

    ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0 || fail "eth0 up"
    n=30
    until ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1 || [ $n -eq 0 ]; do n=$((n - 1)); done
    check net-send nc 10.0.0.1 5000 < /mnt/net.bin
    # Wait until dom0 has received and verified everything (it answers on 5001).
    n=120
    ack=""
    while [ -z "$ack" ] && [ $n -gt 0 ]; do
        ack=$(nc 10.0.0.1 5001 2>/dev/null)
        [ -n "$ack" ] || sleep 1
        n=$((n - 1))
    done
    check_eq net-verified-in-dom0 ok "$ack"
    echo 3 > /proc/sys/vm/drop_caches
    check fs-verify xpattern verify /mnt/net.bin "$NET_BYTES" "$NET_SEED"
    check umount umount /mnt
    check fsck-after e2fsck -fn /dev/xvda
}
