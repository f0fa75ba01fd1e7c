# blkback-rustfront: our Rust blkback in dom0 and our Rust blkfront in the guest, both ends of
# every disk ours: the integrity checks of blk-lib.sh as in the blkback scenario (whole-disk
# patterns, fio with verify, flush, discard, ext4, a read-only disk), both modules unloading
# clean (the guest unbinds its disks first, so our backend sees frontends close).
TIMEOUT=600
BLK_BACK=rust
BLK_FRONT=rust

. /lib/xen-pv-rs-blk.sh

dom0_main() { blk_integrity_dom0; }
domu_main() { blk_integrity_domu; }
