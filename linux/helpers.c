// SPDX-License-Identifier: GPL-2.0
/*
 * The C half of the `linux` crate: wrappers for the static inlines and macros of the Linux
 * subsystems its Rust layers cover (timers, blk-mq and gendisk, debugfs, bdev and bio). Each
 * section names the Rust module that declares its functions.
 */

/* --- periodic ticks (linux::timer) ----------------------------------------------------- */

#include <linux/slab.h>
#include <linux/timer.h>
#include "timer_helpers.h"

struct xpvrs_ticker {
	struct timer_list timer;
	unsigned long period;
	void (*fn)(const void *arg);
	const void *arg;
};

static void xpvrs_ticker_fire(struct timer_list *t)
{
	struct xpvrs_ticker *k = from_timer(k, t, timer);

	k->fn(k->arg);
	/* After timer_shutdown_sync() this re-arm is a no-op. */
	mod_timer(&k->timer, jiffies + k->period);
}

struct xpvrs_ticker *xpvrs_ticker_start(unsigned int period_ms, void (*fn)(const void *arg),
					const void *arg)
{
	struct xpvrs_ticker *k = kzalloc(sizeof(*k), GFP_KERNEL);

	if (!k)
		return NULL;
	k->period = msecs_to_jiffies(period_ms) ?: 1;
	k->fn = fn;
	k->arg = arg;
	timer_setup(&k->timer, xpvrs_ticker_fire, 0);
	mod_timer(&k->timer, jiffies + k->period);
	return k;
}

void xpvrs_ticker_stop(struct xpvrs_ticker *k)
{
	if (!k)
		return;
	/* Waits for a running callback; the timer cannot be re-armed afterwards. */
	timer_shutdown_sync(&k->timer);
	kfree(k);
}

/* --- block layer (linux::block::mq, linux::debugfs) ------------------------------------ */

#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/highmem.h>
#include <linux/module.h>
#include "blk_helpers.h"

static const struct block_device_operations xpvrs_blk_fops = {
	.owner = THIS_MODULE,
};

struct blk_mq_tag_set *xpvrs_blk_alloc_tag_set(const struct blk_mq_ops *ops,
					       const struct xpvrs_disk_params *p)
{
	struct blk_mq_tag_set *set = kzalloc(sizeof(*set), GFP_KERNEL);
	int err;

	if (!set)
		return ERR_PTR(-ENOMEM);
	set->ops = ops;
	set->nr_hw_queues = p->nr_queues;
	set->nr_maps = 1;
	set->queue_depth = p->queue_depth;
	set->numa_node = NUMA_NO_NODE;
	set->flags = BLK_MQ_F_SHOULD_MERGE | (p->blocking ? BLK_MQ_F_BLOCKING : 0);
	set->cmd_size = 0;
	err = blk_mq_alloc_tag_set(set);
	if (err) {
		kfree(set);
		return ERR_PTR(err);
	}
	return set;
}

void xpvrs_blk_free_tag_set(struct blk_mq_tag_set *set)
{
	blk_mq_free_tag_set(set);
	kfree(set);
}

struct gendisk *xpvrs_blk_add_disk(struct blk_mq_tag_set *set,
				   const struct xpvrs_disk_params *p, void *queuedata)
{
	struct queue_limits lim = {
		.logical_block_size = p->logical_block_size,
		.physical_block_size = p->physical_block_size,
		.max_hw_sectors = p->max_hw_sectors,
		/* Data is copied through our own pages: any bvec layout is fine. */
		.max_segments = 512,
		.max_segment_size = UINT_MAX,
	};
	struct gendisk *disk;
	int err;

	if (p->write_cache)
		lim.features |= BLK_FEAT_WRITE_CACHE;
	if (p->fua)
		lim.features |= BLK_FEAT_FUA;
	if (p->max_discard_sectors) {
		lim.max_hw_discard_sectors = p->max_discard_sectors;
		lim.discard_granularity = p->discard_granularity;
		lim.discard_alignment = p->discard_alignment;
		if (p->secure_erase)
			lim.max_secure_erase_sectors = p->max_discard_sectors;
	}
	disk = blk_mq_alloc_disk(set, &lim, queuedata);
	if (IS_ERR(disk))
		return disk;
	disk->fops = &xpvrs_blk_fops;
	if (p->major) {
		disk->major = p->major;
		disk->first_minor = p->first_minor;
		disk->minors = p->minors;
	}
	strscpy(disk->disk_name, p->name, sizeof(disk->disk_name));
	set_capacity(disk, p->capacity);
	set_disk_ro(disk, p->read_only);
	if (p->removable)
		disk->flags |= GENHD_FL_REMOVABLE;
	err = add_disk(disk);
	if (err) {
		put_disk(disk);
		return ERR_PTR(err);
	}
	return disk;
}

void xpvrs_blk_del_disk(struct gendisk *disk)
{
	del_gendisk(disk);
	put_disk(disk);
}

void *xpvrs_blk_hctx_data(void *hctx, unsigned int *queue_num)
{
	struct blk_mq_hw_ctx *h = hctx;

	*queue_num = h->queue_num;
	return h->queue->queuedata;
}

void xpvrs_blk_stop_queue(void *hctx)
{
	blk_mq_stop_hw_queue(hctx);
}

void xpvrs_blk_start_queues(struct gendisk *disk)
{
	blk_mq_start_stopped_hw_queues(disk->queue, true);
}

void xpvrs_blk_set_capacity(struct gendisk *disk, u64 sectors)
{
	set_capacity_and_notify(disk, sectors);
}

void xpvrs_blk_set_ro(struct gendisk *disk, bool ro)
{
	set_disk_ro(disk, ro);
}

void xpvrs_blk_disable_discard(struct gendisk *disk)
{
	blk_queue_disable_discard(disk->queue);
	blk_queue_disable_secure_erase(disk->queue);
}

void xpvrs_blk_rq_start(struct request *rq)
{
	blk_mq_start_request(rq);
}

u64 xpvrs_blk_rq_sector(const struct request *rq)
{
	return blk_rq_pos(rq);
}

u32 xpvrs_blk_rq_bytes(const struct request *rq)
{
	return blk_rq_bytes(rq);
}

u32 xpvrs_blk_rq_op(const struct request *rq)
{
	switch (req_op(rq)) {
	case REQ_OP_READ:
		return XPVRS_BLK_READ;
	case REQ_OP_WRITE:
		return XPVRS_BLK_WRITE;
	case REQ_OP_FLUSH:
		return XPVRS_BLK_FLUSH;
	case REQ_OP_DISCARD:
		return XPVRS_BLK_DISCARD;
	case REQ_OP_SECURE_ERASE:
		return XPVRS_BLK_SECURE_ERASE;
	default:
		return XPVRS_BLK_OTHER;
	}
}

bool xpvrs_blk_rq_fua(const struct request *rq)
{
	return rq->cmd_flags & REQ_FUA;
}

/*
 * Copies the request's data to (to_pages) or from whole pages, in order: byte i of the
 * request is byte i % PAGE_SIZE of pages[i / PAGE_SIZE]. Returns the bytes copied, which is
 * less than blk_rq_bytes() only if the pages run out.
 */
u32 xpvrs_blk_rq_copy(struct request *rq, void *const *pages, u32 nr_pages, bool to_pages)
{
	struct req_iterator iter;
	struct bio_vec bv;
	size_t at = 0, limit = (size_t)nr_pages * PAGE_SIZE;

	rq_for_each_segment(bv, rq, iter) {
		unsigned int done = 0;

		while (done < bv.bv_len) {
			size_t in_page = at % PAGE_SIZE;
			unsigned int n = min_t(size_t, bv.bv_len - done, PAGE_SIZE - in_page);
			char *p;
			void *mem;

			if (at >= limit)
				return at;
			p = (char *)pages[at / PAGE_SIZE] + in_page;
			mem = bvec_kmap_local(&bv);
			if (to_pages)
				memcpy(p, mem + done, n);
			else
				memcpy(mem + done, p, n);
			kunmap_local(mem);
			done += n;
			at += n;
		}
		if (!to_pages)
			flush_dcache_page(bv.bv_page);
	}
	return at;
}

void xpvrs_blk_rq_end(struct request *rq, int err)
{
	blk_mq_end_request(rq, errno_to_blk_status(err));
}

void xpvrs_blk_rq_requeue(struct request *rq)
{
	blk_mq_requeue_request(rq, true);
}

struct dentry *xpvrs_debugfs_counters(const char *dir, const char *const *names,
				      u64 *vals, u32 n)
{
	struct dentry *d = debugfs_create_dir(dir, NULL);
	u32 i;

	if (IS_ERR(d))
		return NULL;
	for (i = 0; i < n; i++)
		debugfs_create_u64(names[i], 0444, d, &vals[i]);
	return d;
}

void xpvrs_debugfs_remove(struct dentry *d)
{
	debugfs_remove_recursive(d);
}

/* --- block devices and bios (linux::block::bio) ---------------------------------------- */

#include <linux/bio.h>
#include <linux/build_bug.h>
#include <linux/file.h>
#include <linux/kdev_t.h>
#include <linux/stddef.h>
#include "bio_helpers.h"

/* src/bio.rs mirrors struct xpvrs_bio_ctx (as RawBioCtx) and asserts the same numbers. */
#ifdef CONFIG_64BIT
static_assert(offsetof(struct xpvrs_bio_ctx, remaining) == 0);
static_assert(offsetof(struct xpvrs_bio_ctx, error) == 4);
static_assert(offsetof(struct xpvrs_bio_ctx, done) == 8);
static_assert(offsetof(struct xpvrs_bio_ctx, owner) == 16);
static_assert(offsetof(struct xpvrs_bio_ctx, tag) == 24);
static_assert(sizeof(struct xpvrs_bio_ctx) == 32);
#endif

struct file *xpvrs_bdev_open(u32 major, u32 minor, bool write)
{
	blk_mode_t mode = BLK_OPEN_READ | (write ? BLK_OPEN_WRITE : 0);

	/* MKDEV would silently truncate a number out of range into another device's. */
	if (major > MAJOR(~0U) || minor > MINORMASK)
		return ERR_PTR(-EINVAL);
	/* No holder: a shared (non-exclusive) open, as the C backend does. */
	return bdev_file_open_by_dev(MKDEV(major, minor), mode, NULL, NULL);
}

void xpvrs_bdev_close(struct file *bdev_file)
{
	fput(bdev_file);
}

struct block_device *xpvrs_bdev_of(struct file *bdev_file)
{
	return file_bdev(bdev_file);
}

u32 xpvrs_bdev_devt(struct block_device *bdev)
{
	return bdev->bd_dev;
}

u64 xpvrs_bdev_nr_sectors(struct block_device *bdev)
{
	return bdev_nr_sectors(bdev);
}

u32 xpvrs_bdev_logical_block_size(struct block_device *bdev)
{
	return bdev_logical_block_size(bdev);
}

u32 xpvrs_bdev_physical_block_size(struct block_device *bdev)
{
	return bdev_physical_block_size(bdev);
}

bool xpvrs_bdev_read_only(struct block_device *bdev)
{
	return bdev_read_only(bdev);
}

u32 xpvrs_bdev_max_discard_sectors(struct block_device *bdev)
{
	return bdev_max_discard_sectors(bdev);
}

u32 xpvrs_bdev_max_secure_erase_sectors(struct block_device *bdev)
{
	return bdev_max_secure_erase_sectors(bdev);
}

u32 xpvrs_bdev_discard_granularity(struct block_device *bdev)
{
	return bdev_discard_granularity(bdev);
}

u32 xpvrs_bdev_discard_alignment(struct block_device *bdev)
{
	return bdev_discard_alignment(bdev);
}

bool xpvrs_bdev_write_cache(struct block_device *bdev)
{
	return bdev_write_cache(bdev);
}

bool xpvrs_bdev_fua(struct block_device *bdev)
{
	return bdev_fua(bdev);
}

int xpvrs_bdev_discard(struct block_device *bdev, u64 sector, u64 nr_sectors)
{
	return blkdev_issue_discard(bdev, sector, nr_sectors, GFP_KERNEL);
}

int xpvrs_bdev_secure_erase(struct block_device *bdev, u64 sector, u64 nr_sectors)
{
	return blkdev_issue_secure_erase(bdev, sector, nr_sectors, GFP_KERNEL);
}

int xpvrs_bdev_flush(struct block_device *bdev)
{
	return blkdev_issue_flush(bdev);
}

/* Keeps the first error: bios of one I/O may end concurrently on several CPUs. */
void xpvrs_bio_ctx_fail(struct xpvrs_bio_ctx *ctx, int error)
{
	if (error)
		cmpxchg(&ctx->error, 0, error);
}

/* Drops one count; whoever drops the last one reports the I/O. */
static void xpvrs_bio_ctx_put(struct xpvrs_bio_ctx *ctx)
{
	if (atomic_dec_and_test(&ctx->remaining))
		ctx->done(ctx, READ_ONCE(ctx->error));
	/* ctx may be gone now: done() hands it back to its owner. */
}

static void xpvrs_bio_end_io(struct bio *bio)
{
	struct xpvrs_bio_ctx *ctx = bio->bi_private;
	int error = blk_status_to_errno(bio->bi_status);

	bio_put(bio);
	xpvrs_bio_ctx_fail(ctx, error);
	xpvrs_bio_ctx_put(ctx);
}

void xpvrs_bio_ctx_begin(struct xpvrs_bio_ctx *ctx,
			 void (*done)(struct xpvrs_bio_ctx *ctx, int error))
{
	ctx->done = done;
	WRITE_ONCE(ctx->error, 0);
	atomic_set(&ctx->remaining, 1);
}

struct bio *xpvrs_bio_new(struct xpvrs_bio_ctx *ctx, struct block_device *bdev, bool write,
			  bool preflush, bool fua, u64 sector, u32 nr_vecs)
{
	blk_opf_t opf = REQ_OP_READ;
	struct bio *bio;

	if (write) {
		opf = REQ_OP_WRITE | REQ_SYNC;
		if (preflush)
			opf |= REQ_PREFLUSH;
		if (fua)
			opf |= REQ_FUA;
	}
	if (nr_vecs > BIO_MAX_VECS)
		return NULL;
	/* GFP_NOIO: this is the I/O path of a disk that reclaim may write to. */
	bio = bio_alloc(bdev, nr_vecs, opf, GFP_NOIO);
	if (!bio)
		return NULL;
	bio->bi_iter.bi_sector = sector;
	bio->bi_end_io = xpvrs_bio_end_io;
	bio->bi_private = ctx;
	atomic_inc(&ctx->remaining);
	return bio;
}

bool xpvrs_bio_add_page(struct bio *bio, struct page *page, u32 len, u32 offset)
{
	return bio_add_page(bio, page, len, offset) == len;
}

void xpvrs_bio_submit(struct bio *bio)
{
	submit_bio(bio);
}

/* A bio from xpvrs_bio_new() that will not be submitted: free it and fail the I/O. */
void xpvrs_bio_abandon(struct xpvrs_bio_ctx *ctx, struct bio *bio, int error)
{
	bio_put(bio);
	xpvrs_bio_ctx_fail(ctx, error);
	xpvrs_bio_ctx_put(ctx);
}

void xpvrs_bio_ctx_finish(struct xpvrs_bio_ctx *ctx)
{
	xpvrs_bio_ctx_put(ctx);
}
