# blkfront-detach: our Rust blkfront in the guest, the Linux C blkback in dom0: blk-lib.sh's
# ten attach/detach cycles (every other one under I/O; each cycle verifies the previous one's
# flushed data), 11 connections, and at unload every grant, ring and channel given back.
TIMEOUT=600
BLK_BACK=c
BLK_FRONT=rust

. /lib/xen-pv-rs-blk.sh

dom0_main() { blk_detach_dom0; }
domu_main() { blk_detach_domu; }
