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
	/* A one-shot timer (period 0) waits for its next xpvrs_oneshot_arm(). After
	 * timer_shutdown_sync() this re-arm is a no-op. */
	if (k->period)
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

struct xpvrs_ticker *xpvrs_oneshot_new(void (*fn)(const void *arg), const void *arg)
{
	struct xpvrs_ticker *k = kzalloc(sizeof(*k), GFP_KERNEL);

	if (!k)
		return NULL;
	k->fn = fn;
	k->arg = arg;
	timer_setup(&k->timer, xpvrs_ticker_fire, 0);
	return k;
}

void xpvrs_oneshot_arm(struct xpvrs_ticker *k, unsigned int ms)
{
	/* Any context. A pending timer keeps its expiry; after shutdown this is a no-op. */
	if (!timer_pending(&k->timer))
		mod_timer(&k->timer, jiffies + (msecs_to_jiffies(ms) ?: 1));
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

/* --- network devices (linux::net) ---------------------------------------------------- */

#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/skbuff.h>
#include <net/page_pool/helpers.h>
#include "net_helpers.h"

struct xpvrs_napi {
	struct napi_struct napi;
	struct net_device *nd;
	u16 index;
};

/* netdev_priv() of our devices. */
struct xpvrs_net {
	const struct xpvrs_net_ops *ops;
	const void *drv;
	const char *driver;
	char bus_info[32];
	const char *const *stat_names;
	u32 nr_stats;
	u32 nr_napi;
	struct xpvrs_napi napi[];
};

static struct xpvrs_net *xpvrs_net_of(struct net_device *nd)
{
	return netdev_priv(nd);
}

static netdev_features_t xpvrs_to_netdev_features(u32 f)
{
	netdev_features_t r = 0;

	if (f & XPVRS_NETF_SG)
		r |= NETIF_F_SG;
	if (f & XPVRS_NETF_IP_CSUM)
		r |= NETIF_F_IP_CSUM;
	if (f & XPVRS_NETF_IPV6_CSUM)
		r |= NETIF_F_IPV6_CSUM;
	if (f & XPVRS_NETF_TSO)
		r |= NETIF_F_TSO;
	if (f & XPVRS_NETF_TSO6)
		r |= NETIF_F_TSO6;
	if (f & XPVRS_NETF_RXCSUM)
		r |= NETIF_F_RXCSUM;
	return r;
}

static u32 xpvrs_from_netdev_features(netdev_features_t f)
{
	return ((f & NETIF_F_SG) ? XPVRS_NETF_SG : 0) |
	       ((f & NETIF_F_IP_CSUM) ? XPVRS_NETF_IP_CSUM : 0) |
	       ((f & NETIF_F_IPV6_CSUM) ? XPVRS_NETF_IPV6_CSUM : 0) |
	       ((f & NETIF_F_TSO) ? XPVRS_NETF_TSO : 0) |
	       ((f & NETIF_F_TSO6) ? XPVRS_NETF_TSO6 : 0) |
	       ((f & NETIF_F_RXCSUM) ? XPVRS_NETF_RXCSUM : 0);
}

/* The bits of enum xpvrs_net_feature; the driver decides only these. */
#define XPVRS_NETF_MASK \
	(NETIF_F_SG | NETIF_F_IP_CSUM | NETIF_F_IPV6_CSUM | NETIF_F_TSO | NETIF_F_TSO6 | \
	 NETIF_F_RXCSUM)

/* Every NAPI context is enabled exactly while the device is open: before the driver's open,
 * and disabled after its stop, so a driver cannot enable one twice, disable one twice or
 * free the device with one enabled. */
static int xpvrs_ndo_open(struct net_device *nd)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);
	u32 i;
	int r;

	for (i = 0; i < n->nr_napi; i++)
		napi_enable(&n->napi[i].napi);
	r = n->ops->open(n->drv, nd);
	if (r)
		for (i = 0; i < n->nr_napi; i++)
			napi_disable(&n->napi[i].napi);
	return r;
}

static int xpvrs_ndo_stop(struct net_device *nd)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);
	u32 i;
	int r = n->ops->stop(n->drv, nd);

	for (i = 0; i < n->nr_napi; i++)
		napi_disable(&n->napi[i].napi);
	return r;
}

static netdev_tx_t xpvrs_ndo_xmit(struct sk_buff *skb, struct net_device *nd)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);

	return n->ops->xmit(n->drv, nd, skb, skb_get_queue_mapping(skb)) ? NETDEV_TX_BUSY :
								       NETDEV_TX_OK;
}

static void xpvrs_ndo_stats(struct net_device *nd, struct rtnl_link_stats64 *s)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);
	struct xpvrs_net_stats v = {};

	n->ops->stats(n->drv, &v);
	s->rx_packets = v.rx_packets;
	s->rx_bytes = v.rx_bytes;
	s->rx_errors = v.rx_errors;
	s->rx_dropped = v.rx_dropped;
	s->tx_packets = v.tx_packets;
	s->tx_bytes = v.tx_bytes;
	s->tx_errors = v.tx_errors;
	s->tx_dropped = v.tx_dropped;
}

static int xpvrs_ndo_change_mtu(struct net_device *nd, int mtu)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);
	int r = n->ops->change_mtu(n->drv, nd, mtu);

	if (!r)
		WRITE_ONCE(nd->mtu, mtu);
	return r;
}

static netdev_features_t xpvrs_ndo_fix_features(struct net_device *nd, netdev_features_t f)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);
	u32 ours = n->ops->fix_features(n->drv, xpvrs_from_netdev_features(f));

	return (f & ~XPVRS_NETF_MASK) | xpvrs_to_netdev_features(ours);
}

static u16 xpvrs_ndo_select_queue(struct net_device *nd, struct sk_buff *skb,
				  struct net_device *sb_dev)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);
	unsigned int nq = READ_ONCE(nd->real_num_tx_queues);

	if (nq <= 1)
		return 0;
	/* The driver's choice is reduced into range here, whatever it returned. */
	return n->ops->select_queue(n->drv, skb_get_hash(skb), nq) % nq;
}

static int xpvrs_ndo_set_features(struct net_device *nd, netdev_features_t f)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);

	return n->ops->set_features(n->drv, nd, xpvrs_from_netdev_features(f));
}

/* Under RTNL (an ndo callback): lowers the MTU to `mtu` if above it, without the notifier
 * round of dev_set_mtu (the features change that calls this is itself notified). */
void xpvrs_net_clamp_mtu_locked(struct net_device *nd, u32 mtu)
{
	ASSERT_RTNL();
	if (READ_ONCE(nd->mtu) > mtu)
		WRITE_ONCE(nd->mtu, mtu);
}

static const struct net_device_ops xpvrs_netdev_ops = {
	.ndo_open = xpvrs_ndo_open,
	.ndo_stop = xpvrs_ndo_stop,
	.ndo_start_xmit = xpvrs_ndo_xmit,
	.ndo_get_stats64 = xpvrs_ndo_stats,
	.ndo_change_mtu = xpvrs_ndo_change_mtu,
	.ndo_fix_features = xpvrs_ndo_fix_features,
	.ndo_set_features = xpvrs_ndo_set_features,
	.ndo_select_queue = xpvrs_ndo_select_queue,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
};

static void xpvrs_get_drvinfo(struct net_device *nd, struct ethtool_drvinfo *info)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);

	strscpy(info->driver, n->driver, sizeof(info->driver));
	strscpy(info->bus_info, n->bus_info, sizeof(info->bus_info));
}

static int xpvrs_get_sset_count(struct net_device *nd, int set)
{
	return set == ETH_SS_STATS ? xpvrs_net_of(nd)->nr_stats : -EOPNOTSUPP;
}

static void xpvrs_get_strings(struct net_device *nd, u32 set, u8 *data)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);
	u32 i;

	if (set != ETH_SS_STATS)
		return;
	for (i = 0; i < n->nr_stats; i++)
		ethtool_puts(&data, n->stat_names[i]);
}

static void xpvrs_get_ethtool_stats(struct net_device *nd, struct ethtool_stats *st, u64 *data)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);

	memset(data, 0, sizeof(u64) * n->nr_stats);
	n->ops->ethtool_stats(n->drv, data, n->nr_stats);
}

static const struct ethtool_ops xpvrs_ethtool_ops = {
	.get_drvinfo = xpvrs_get_drvinfo,
	.get_link = ethtool_op_get_link,
	.get_sset_count = xpvrs_get_sset_count,
	.get_strings = xpvrs_get_strings,
	.get_ethtool_stats = xpvrs_get_ethtool_stats,
};

static int xpvrs_napi_poll(struct napi_struct *napi, int budget)
{
	struct xpvrs_napi *q = container_of(napi, struct xpvrs_napi, napi);
	struct xpvrs_net *n = xpvrs_net_of(q->nd);

	return n->ops->poll(n->drv, q->nd, q->index, budget);
}

struct net_device *xpvrs_net_alloc(const struct xpvrs_net_ops *ops, const void *drv,
				   const struct xpvrs_net_params *p, struct device *parent)
{
	struct net_device *nd;
	struct xpvrs_net *n;
	u32 i;

	if (!p->nr_queues || p->nr_queues > U16_MAX)
		return NULL;
	nd = alloc_etherdev_mq(struct_size(n, napi, p->nr_queues), p->nr_queues);
	if (!nd)
		return NULL;
	n = netdev_priv(nd);
	n->ops = ops;
	n->drv = drv;
	n->driver = p->driver;
	strscpy(n->bus_info, p->bus_info, sizeof(n->bus_info));
	n->stat_names = p->stat_names;
	n->nr_stats = p->nr_stats;
	n->nr_napi = p->nr_queues;
	for (i = 0; i < p->nr_queues; i++) {
		n->napi[i].nd = nd;
		n->napi[i].index = i;
		netif_napi_add(nd, &n->napi[i].napi, xpvrs_napi_poll);
	}
	nd->netdev_ops = &xpvrs_netdev_ops;
	nd->ethtool_ops = &xpvrs_ethtool_ops;
	nd->hw_features = xpvrs_to_netdev_features(p->hw_features);
	nd->features = xpvrs_to_netdev_features(p->features) | NETIF_F_GSO_ROBUST;
	nd->min_mtu = p->min_mtu;
	nd->max_mtu = p->max_mtu;
	nd->mtu = p->mtu;
	eth_hw_addr_set(nd, p->mac);
	SET_NETDEV_DEV(nd, parent);
	netif_carrier_off(nd);
	return nd;
}

int xpvrs_net_register(struct net_device *nd)
{
	return register_netdev(nd);
}

void xpvrs_net_unregister(struct net_device *nd)
{
	unregister_netdev(nd);
}

void xpvrs_net_free(struct net_device *nd)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);
	u32 i;

	for (i = 0; i < n->nr_napi; i++)
		netif_napi_del(&n->napi[i].napi);
	free_netdev(nd);
}

const char *xpvrs_net_name(struct net_device *nd)
{
	return nd->name;
}

void xpvrs_net_carrier(struct net_device *nd, bool on)
{
	if (on)
		netif_carrier_on(nd);
	else
		netif_carrier_off(nd);
}

bool xpvrs_net_running(struct net_device *nd)
{
	return netif_running(nd);
}

void xpvrs_net_update_features(struct net_device *nd)
{
	rtnl_lock();
	netdev_update_features(nd);
	rtnl_unlock();
}

int xpvrs_net_set_mtu(struct net_device *nd, u32 mtu)
{
	int r;

	rtnl_lock();
	r = dev_set_mtu(nd, mtu);
	rtnl_unlock();
	return r;
}

u32 xpvrs_net_mtu(struct net_device *nd)
{
	return READ_ONCE(nd->mtu);
}

u32 xpvrs_net_features(struct net_device *nd)
{
	return xpvrs_from_netdev_features(nd->features);
}

int xpvrs_net_set_queues(struct net_device *nd, u32 nq)
{
	int r;

	rtnl_lock();
	r = netif_set_real_num_tx_queues(nd, nq);
	if (!r)
		r = netif_set_real_num_rx_queues(nd, nq);
	rtnl_unlock();
	return r;
}

static struct napi_struct *xpvrs_napi_of(struct net_device *nd, u16 q)
{
	struct xpvrs_net *n = xpvrs_net_of(nd);

	return q < n->nr_napi ? &n->napi[q].napi : NULL;
}

void xpvrs_napi_schedule(struct net_device *nd, u16 q)
{
	struct napi_struct *napi = xpvrs_napi_of(nd, q);

	if (!napi)
		return;
	if (in_interrupt()) {
		napi_schedule(napi);
	} else {
		/* From process context the raised softirq must run on bottom-half enable. */
		local_bh_disable();
		napi_schedule(napi);
		local_bh_enable();
	}
}

bool xpvrs_napi_complete(struct net_device *nd, u16 q, int done)
{
	struct napi_struct *napi = xpvrs_napi_of(nd, q);

	return napi ? napi_complete_done(napi, done) : false;
}

void xpvrs_napi_gro_receive(struct net_device *nd, u16 q, struct sk_buff *skb)
{
	struct napi_struct *napi = xpvrs_napi_of(nd, q);

	if (napi)
		napi_gro_receive(napi, skb);
	else
		dev_kfree_skb_any(skb);
}

void xpvrs_txq_stop(struct net_device *nd, u16 q)
{
	if (q < nd->real_num_tx_queues)
		netif_tx_stop_queue(netdev_get_tx_queue(nd, q));
}

void xpvrs_txq_wake(struct net_device *nd, u16 q)
{
	if (q < nd->real_num_tx_queues)
		netif_tx_wake_queue(netdev_get_tx_queue(nd, q));
}

bool xpvrs_txq_stopped(struct net_device *nd, u16 q)
{
	return q < nd->real_num_tx_queues &&
	       netif_tx_queue_stopped(netdev_get_tx_queue(nd, q));
}

void xpvrs_txq_disable_all(struct net_device *nd)
{
	netif_tx_disable(nd);
}

void xpvrs_txq_start_all(struct net_device *nd)
{
	netif_tx_start_all_queues(nd);
}

void xpvrs_txq_wake_all(struct net_device *nd)
{
	netif_tx_wake_all_queues(nd);
}

void xpvrs_skb_info(struct sk_buff *skb, struct xpvrs_skb_info *i)
{
	struct skb_shared_info *sh = skb_shinfo(skb);

	i->head = skb->data;
	i->head_len = skb_headlen(skb);
	i->len = skb->len;
	i->nr_frags = sh->nr_frags;
	i->csum = skb->ip_summed == CHECKSUM_PARTIAL ? 1 :
		  skb->ip_summed == CHECKSUM_UNNECESSARY ? 2 : 0;
	i->gso = 0;
	i->gso_size = 0;
	if (skb_is_gso(skb)) {
		i->gso = (sh->gso_type & SKB_GSO_TCPV4) ? 1 :
			 (sh->gso_type & SKB_GSO_TCPV6) ? 2 : 3;
		i->gso_size = sh->gso_size;
	}
}

bool xpvrs_skb_frag(struct sk_buff *skb, u32 i, const u8 **data, u32 *len, u32 *page_offset)
{
	const skb_frag_t *f;

	if (i >= skb_shinfo(skb)->nr_frags)
		return false;
	f = &skb_shinfo(skb)->frags[i];
	/* Frag pages of a device without NETIF_F_HIGHDMA are in the direct map. */
	*data = skb_frag_address(f);
	*len = skb_frag_size(f);
	*page_offset = skb_frag_off(f) & ~PAGE_MASK;
	return true;
}

int xpvrs_skb_linearize(struct sk_buff *skb)
{
	return skb_linearize(skb);
}

void xpvrs_skb_consume(struct sk_buff *skb)
{
	dev_consume_skb_any(skb);
}

void xpvrs_skb_free(struct sk_buff *skb)
{
	dev_kfree_skb_any(skb);
}

struct sk_buff *xpvrs_skb_rx_alloc(struct net_device *nd, u16 q, u32 head_len)
{
	struct napi_struct *napi = xpvrs_napi_of(nd, q);

	return napi ? napi_alloc_skb(napi, head_len) : NULL;
}

u8 *xpvrs_skb_put(struct sk_buff *skb, u32 len)
{
	if (len > skb_tailroom(skb))
		return NULL;
	return skb_put(skb, len);
}

bool xpvrs_skb_add_page(struct sk_buff *skb, void *page_addr, u32 offset, u32 len, bool pool)
{
	int i = skb_shinfo(skb)->nr_frags;

	if (i >= MAX_SKB_FRAGS || offset + len > PAGE_SIZE)
		return false;
	skb_add_rx_frag(skb, i, virt_to_page(page_addr), offset, len, PAGE_SIZE);
	/* Freeing the skb returns each page-pool page to its pool (others are put as usual). */
	if (pool)
		skb_mark_for_recycle(skb);
	return true;
}

struct page_pool *xpvrs_page_pool_create(u32 pool_size)
{
	/* No DMA mapping is asked, so no device is needed. */
	struct page_pool_params pp = {
		.order = 0,
		.pool_size = pool_size,
		.nid = NUMA_NO_NODE,
	};
	struct page_pool *pool = page_pool_create(&pp);

	return IS_ERR(pool) ? NULL : pool;
}

void *xpvrs_page_pool_alloc(struct page_pool *pool, bool atomic)
{
	/* __GFP_ZERO applies to the pages the pool takes from the allocator, not to those it
	 * recycles. */
	gfp_t gfp = (atomic ? GFP_ATOMIC : GFP_KERNEL) | __GFP_NOWARN | __GFP_ZERO;
	struct page *page = page_pool_alloc_pages(pool, gfp);

	return page ? page_address(page) : NULL;
}

void xpvrs_page_pool_put(struct page_pool *pool, void *page_addr)
{
	page_pool_put_full_page(pool, virt_to_page(page_addr), false);
}

void xpvrs_page_pool_destroy(struct page_pool *pool)
{
	/* Pages still in skbs come back later; the pool is freed once they all have. */
	page_pool_destroy(pool);
}

void xpvrs_skb_set_hash(struct sk_buff *skb, u32 hash, bool l4)
{
	skb_set_hash(skb, hash, l4 ? PKT_HASH_TYPE_L4 : PKT_HASH_TYPE_L3);
}

int xpvrs_skb_rx_finish(struct net_device *nd, struct sk_buff *skb, u8 csum, u8 gso,
			u16 gso_size)
{
	bool recalculate = false;
	int r;

	if (gso == 1 || gso == 2) {
		skb_shinfo(skb)->gso_size = gso_size;
		skb_shinfo(skb)->gso_type = (gso == 1 ? SKB_GSO_TCPV4 : SKB_GSO_TCPV6) |
					    SKB_GSO_DODGY;
		skb_shinfo(skb)->gso_segs = 0;
	}
	if (!pskb_may_pull(skb, ETH_HLEN)) {
		dev_kfree_skb_any(skb);
		return -EINVAL;
	}
	skb->protocol = eth_type_trans(skb, nd);
	/* skb_checksum_setup() finds the IP header here. */
	skb_reset_network_header(skb);
	if (csum == 1) {
		skb->ip_summed = CHECKSUM_PARTIAL;
	} else if (gso == 1 || gso == 2) {
		/* A GSO packet must be CHECKSUM_PARTIAL: its checksum is recomputed. */
		skb->ip_summed = CHECKSUM_PARTIAL;
		recalculate = true;
	} else if (csum == 2) {
		skb->ip_summed = CHECKSUM_UNNECESSARY;
	}
	if (skb->ip_summed == CHECKSUM_PARTIAL) {
		r = skb_checksum_setup(skb, recalculate);
		if (r) {
			dev_kfree_skb_any(skb);
			return r;
		}
	}
	return 0;
}

void xpvrs_local_bh_disable(void)
{
	local_bh_disable();
}

void xpvrs_local_bh_enable(void)
{
	local_bh_enable();
}
