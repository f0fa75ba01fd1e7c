/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C half of linux::block::mq, our block-layer glue: what blk-mq offers only as static
 * inlines or macros, and the one place a `struct queue_limits` is filled in (its feature bits
 * are macros bindgen cannot evaluate). The Rust side declares these in src/blk.rs; keep the
 * two in step. Compiled into each module (THIS_MODULE below is that module).
 */
#ifndef XEN_PV_RS_BLK_HELPERS_H
#define XEN_PV_RS_BLK_HELPERS_H

#include <linux/types.h>

struct blk_mq_ops;
struct blk_mq_tag_set;
struct gendisk;
struct request;
struct dentry;

/* What a disk looks like to the block layer; see `DiskParams` in src/blk.rs. */
struct xpvrs_disk_params {
	u64 capacity; /* 512-byte sectors */
	u32 logical_block_size;
	u32 physical_block_size;
	u32 max_hw_sectors; /* 512-byte sectors per request */
	u32 max_discard_sectors; /* 0: no discard */
	u32 discard_granularity;
	u32 discard_alignment;
	u32 nr_queues;
	u32 queue_depth;
	u32 major; /* 0: a dynamic device number */
	u32 first_minor;
	u32 minors;
	bool secure_erase;
	bool write_cache;
	bool fua;
	bool read_only;
	bool blocking;
	bool removable;
	char name[32];
};

struct blk_mq_tag_set *xpvrs_blk_alloc_tag_set(const struct blk_mq_ops *ops,
					       const struct xpvrs_disk_params *p);
void xpvrs_blk_free_tag_set(struct blk_mq_tag_set *set);
struct gendisk *xpvrs_blk_add_disk(struct blk_mq_tag_set *set,
				   const struct xpvrs_disk_params *p, void *queuedata);
void xpvrs_blk_del_disk(struct gendisk *disk);
void *xpvrs_blk_hctx_data(void *hctx, unsigned int *queue_num);
void xpvrs_blk_stop_queue(void *hctx);
void xpvrs_blk_start_queues(struct gendisk *disk);
void xpvrs_blk_set_capacity(struct gendisk *disk, u64 sectors);
void xpvrs_blk_set_ro(struct gendisk *disk, bool ro);
void xpvrs_blk_disable_discard(struct gendisk *disk);

/* A request: start, facts, data, end. */
void xpvrs_blk_rq_start(struct request *rq);
u64 xpvrs_blk_rq_sector(const struct request *rq);
u32 xpvrs_blk_rq_bytes(const struct request *rq);
u32 xpvrs_blk_rq_op(const struct request *rq); /* enum xpvrs_blk_op */
bool xpvrs_blk_rq_fua(const struct request *rq);
u32 xpvrs_blk_rq_copy(struct request *rq, void *const *pages, u32 nr_pages, bool to_pages);
void xpvrs_blk_rq_end(struct request *rq, int err);
void xpvrs_blk_rq_requeue(struct request *rq);

enum xpvrs_blk_op {
	XPVRS_BLK_READ = 0,
	XPVRS_BLK_WRITE = 1,
	XPVRS_BLK_FLUSH = 2,
	XPVRS_BLK_DISCARD = 3,
	XPVRS_BLK_SECURE_ERASE = 4,
	XPVRS_BLK_OTHER = 5,
};

/* Read-only u64 counters in debugfs: <debugfs>/<dir>/<names[i]> shows vals[i]. */
struct dentry *xpvrs_debugfs_counters(const char *dir, const char *const *names,
				      u64 *vals, u32 n);
void xpvrs_debugfs_remove(struct dentry *d);

#endif
