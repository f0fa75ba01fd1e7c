# blkback-detach: our Rust blkback in dom0, the Linux C blkfront in the guest: blk-lib.sh's ten
# xl block-attach/block-detach cycles (every other one under I/O; each cycle verifies the
# previous one's flushed data), then the guest is destroyed with `xl destroy` in the middle of
# reads and writes; dom0's kernel log stays clean and our backend unloads with every mapping,
# ring and channel given back.
TIMEOUT=600
BLK_BACK=rust
BLK_FRONT=c
BLK_DESTROY=1

. /lib/xen-pv-rs-blk.sh

dom0_main() { blk_detach_dom0; }
domu_main() { blk_detach_domu; }
