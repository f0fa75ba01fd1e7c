// SPDX-License-Identifier: GPL-2.0

//! `linux`: safe layers over Linux subsystems that the `kernel` crate of Linux 6.12 does not
//! cover, for the project's drivers. Nothing here knows about Xen: these are the layers an
//! upstream `rust/kernel` would hold, shaped like its `block` module (thin `extern "C"` shims
//! in `linux/helpers.c`, owned objects, a `// SAFETY:` comment on each `unsafe` block).
//!
//! | module | C interfaces | what a driver gets |
//! |---|---|---|
//! | [`block::mq`] | blk-mq tag sets, `gendisk`, requests | [`block::mq::Disk`], [`block::mq::Request`]: a multi-queue disk served by safe code |
//! | [`block::bio`] | `bdev_file_open_by_dev`, `bio_alloc`, `submit_bio` | [`block::bio::BlockDevice`], [`block::bio::BioCtx`]: a backend's disk and its asynchronous I/O |
//! | [`net`] | `alloc_etherdev_mq`, NAPI, `net_device_ops`, `ethtool_ops`, skbs | [`net::NetDevice`], [`net::TxSkb`], [`net::RxSkb`]: an Ethernet device with per-queue NAPI served by safe code |
//! | [`debugfs`] | `debugfs_create_dir`, `debugfs_create_u64` | [`debugfs::DebugCounters`]: a queue's counters as files |
//! | [`timer`] | `timer_setup`, `mod_timer`, `timer_shutdown_sync` | [`timer::Ticker`]: a periodic callback holding its object |
//! | [`workqueue`] | `cancel_work_sync` | [`workqueue::cancel_sync`] |
//! | [`page`] | `struct page` | [`page::PagePtr`] for bios, [`page::KernelPage`] for request copies |
//!
//! The SCSI host, target core and memory layers of the coming drivers belong here
//! too. `xen_kernel` (the Xen glue) depends on this crate; this crate depends on `kernel` only.

#![no_std]

const __LOG_PREFIX: &[u8] = b"linux\0";

pub mod block;
pub mod debugfs;
pub mod net;
pub mod page;
pub mod timer;
pub mod workqueue;
