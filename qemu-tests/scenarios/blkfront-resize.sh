# blkfront-resize: online resize from the Linux C blkback to our Rust blkfront: dom0 grows the
# guest's disk while it is connected; Linux's backend announces the new size, our frontend
# resizes the disk; old data intact, new sectors usable (blk-lib.sh's resize scenario).
TIMEOUT=300
BLK_BACK=c
BLK_FRONT=rust

. /lib/xen-pv-rs-blk.sh

dom0_main() { blk_resize_dom0; }
domu_main() { blk_resize_domu; }
