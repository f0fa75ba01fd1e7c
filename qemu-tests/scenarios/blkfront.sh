# blkfront: our Rust blkfront (xenpvrs_blkfront) in the guest against the Linux C blkback in
# dom0, with 4-page rings and 2 queues (module parameters), persistent grants and indirect
# descriptors as the backend offers them. The checks are blk-lib.sh's integrity scenario:
# whole-disk patterns, fio with verify, flush, discard, ext4, a read-only disk; dom0 checks
# that flushes and discards reached C blkback (its own counters).
TIMEOUT=600
BLK_BACK=c
BLK_FRONT=rust

. /lib/xen-pv-rs-blk.sh

dom0_main() { blk_integrity_dom0; }
domu_main() { blk_integrity_domu; }
