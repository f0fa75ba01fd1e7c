# blkback: our Rust blkback (xenpvrs_blkback) in dom0 serving the Linux C blkfront in the
# guest, as xl sets the disks up (a file through a loop device, a block device, a read-only
# file), 2 queues of 4-page rings, persistent grants and indirect descriptors. The checks are
# blk-lib.sh's integrity scenario: whole-disk patterns, fio with verify, flush, discard, ext4,
# a read-only disk; dom0 checks our backend's counters (flushes and discards arrived), its
# dmesg line per disk (queues, protocol, persistent grants, ring pages), and that it unloads
# with every mapping, ring and channel given back.
TIMEOUT=600
BLK_BACK=rust
BLK_FRONT=c

. /lib/xen-pv-rs-blk.sh

dom0_main() { blk_integrity_dom0; }
domu_main() { blk_integrity_domu; }
