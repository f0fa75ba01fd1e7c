/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C half of linux::block::bio: block devices opened by number and bios built on pages the
 * caller keeps alive, for a block backend. Only static inlines, macros and the bio completion
 * callback live here; the Rust side (src/bio.rs) declares these functions itself and mirrors
 * struct xpvrs_bio_ctx, so keep the two in step (the layout is asserted on both sides).
 */
#ifndef XEN_PV_RS_BIO_HELPERS_H
#define XEN_PV_RS_BIO_HELPERS_H

#include <linux/types.h>

struct bio;
struct block_device;
struct file;
struct page;

/*
 * One I/O of one or more bios. The owner keeps it at a stable address from
 * xpvrs_bio_ctx_begin() until done() has run.
 *
 * remaining: bios in flight, plus one while the I/O is still being built (the bias);
 * error: the first error any bio reported (an errno), 0 if none;
 * done: called once, when the last bio has ended and the bias is dropped, in whatever
 *	 context that happens (hard or soft interrupt, or the submitter's own thread);
 * owner, tag: the user's; never touched here.
 */
struct xpvrs_bio_ctx {
	atomic_t remaining;
	int error;
	void (*done)(struct xpvrs_bio_ctx *ctx, int error);
	void *owner;
	unsigned int tag;
};

struct file *xpvrs_bdev_open(u32 major, u32 minor, bool write);
void xpvrs_bdev_close(struct file *bdev_file);
struct block_device *xpvrs_bdev_of(struct file *bdev_file);
u32 xpvrs_bdev_devt(struct block_device *bdev);
u64 xpvrs_bdev_nr_sectors(struct block_device *bdev);
u32 xpvrs_bdev_logical_block_size(struct block_device *bdev);
u32 xpvrs_bdev_physical_block_size(struct block_device *bdev);
bool xpvrs_bdev_read_only(struct block_device *bdev);
u32 xpvrs_bdev_max_discard_sectors(struct block_device *bdev);
u32 xpvrs_bdev_max_secure_erase_sectors(struct block_device *bdev);
u32 xpvrs_bdev_discard_granularity(struct block_device *bdev);
u32 xpvrs_bdev_discard_alignment(struct block_device *bdev);
bool xpvrs_bdev_write_cache(struct block_device *bdev);
bool xpvrs_bdev_fua(struct block_device *bdev);
int xpvrs_bdev_discard(struct block_device *bdev, u64 sector, u64 nr_sectors);
int xpvrs_bdev_secure_erase(struct block_device *bdev, u64 sector, u64 nr_sectors);
int xpvrs_bdev_flush(struct block_device *bdev);

void xpvrs_bio_ctx_begin(struct xpvrs_bio_ctx *ctx,
			 void (*done)(struct xpvrs_bio_ctx *ctx, int error));
struct bio *xpvrs_bio_new(struct xpvrs_bio_ctx *ctx, struct block_device *bdev, bool write,
			  bool preflush, bool fua, u64 sector, u32 nr_vecs);
bool xpvrs_bio_add_page(struct bio *bio, struct page *page, u32 len, u32 offset);
void xpvrs_bio_submit(struct bio *bio);
void xpvrs_bio_abandon(struct xpvrs_bio_ctx *ctx, struct bio *bio, int error);
void xpvrs_bio_ctx_fail(struct xpvrs_bio_ctx *ctx, int error);
void xpvrs_bio_ctx_finish(struct xpvrs_bio_ctx *ctx);

#endif
