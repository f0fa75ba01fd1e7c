# blkback-resize: online resize through our Rust blkback to the Linux C blkfront: dom0 grows the
# guest's disk while it is connected; our backend notices and announces the new size, Linux's
# frontend resizes the disk; old data intact, new sectors usable (blk-lib.sh's resize scenario).
TIMEOUT=300
BLK_BACK=rust
BLK_FRONT=c

. /lib/xen-pv-rs-blk.sh

dom0_main() { blk_resize_dom0; }
domu_main() { blk_resize_domu; }
