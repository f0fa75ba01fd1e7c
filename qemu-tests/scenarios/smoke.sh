# smoke: the stock Linux C drivers on both sides (xen-blkback/xen-netback in dom0, xen-blkfront/
# xen-netfront in the guest). The guest writes a random pattern over a 256 MiB file-backed disk
# and reads it back, makes and checks an ext4 file system, and sends 64 MiB to dom0 over TCP.
TIMEOUT=1200

DISK_BYTES=268435456
NET_BYTES=67108864

dom0_main() {
    check modprobe-blkback modprobe xen-blkback
    check modprobe-netback modprobe xen-netback
    mkdir -p /var/lib/xen-pv-rs
    truncate -s "$DISK_BYTES" /var/lib/xen-pv-rs/disk.img
    write_domu_cfg domu 256 "disk = [ 'format=raw,vdev=xvda,access=rw,target=/var/lib/xen-pv-rs/disk.img' ]
vif = [ 'bridge=xenbr0,mac=00:16:3e:5a:00:02' ]"
    nc -l -p 5000 > /tmp/net.bin &
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    domu_result domu 900
    check_eq net-sha256 "$(guest_value domu NET-SHA256)" "$(sha256sum < /tmp/net.bin | cut -d' ' -f1)"
    check_eq net-bytes "$NET_BYTES" "$(stat -c %s /tmp/net.bin)"
}

domu_main() {
    check modprobe-blkfront modprobe xen-blkfront
    check modprobe-netfront modprobe xen-netfront
    wait_for_dev /dev/xvda 30 || { fail "no /dev/xvda"; return; }
    check_eq disk-bytes "$DISK_BYTES" "$(blockdev --getsize64 /dev/xvda)"

    # A random pattern over the whole disk, written with O_DIRECT, checksummed on the way.
    mkfifo /tmp/pattern
    sha256sum < /tmp/pattern > /tmp/pattern.sum &
    head -c "$DISK_BYTES" /dev/urandom | tee /tmp/pattern |
        dd of=/dev/xvda bs=1M iflag=fullblock oflag=direct 2>/dev/null
    wait
    sync
    echo 3 > /proc/sys/vm/drop_caches
    check_eq disk-pattern "$(cut -d' ' -f1 /tmp/pattern.sum)" \
        "$(dd if=/dev/xvda bs=1M iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"

    check mkfs-ext4 mkfs.ext4 -q -F /dev/xvda
    check fsck-ext4 e2fsck -fn /dev/xvda
    check mount-ext4 mount -t ext4 /dev/xvda /mnt || return
    head -c "$NET_BYTES" /dev/urandom > /mnt/net.bin
    sum=$(sha256sum < /mnt/net.bin | cut -d' ' -f1)

    ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0 || fail "eth0 up"
    n=30
    until ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1 || [ $n -eq 0 ]; do n=$((n - 1)); done
    check net-send nc 10.0.0.1 5000 < /mnt/net.bin
    echo "NET-SHA256 $sum"
    check umount umount /mnt
    check fsck-after e2fsck -fn /dev/xvda
}
