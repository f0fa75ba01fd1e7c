// SPDX-License-Identifier: GPL-2.0
/*
 * The C half of xenpvrs_balloon: what Rust cannot reach without static inlines and macros.
 *
 * - The balloon list: unpopulated frames this module owns (their struct pages, linked through
 *   page->lru and marked PageOffline, as Linux's balloon marks its own), taken from the
 *   built-in core at load and grown by every decrease.
 * - One batch's steps over arrays the Rust side owns (its staging area): take pages from the
 *   allocator, give them to Xen (unmap, clear the p2m, XENMEM_decrease_reservation), populate
 *   frames of the list (XENMEM_populate_physmap, p2m and mapping set), free pages to the
 *   allocator. The hypercalls and p2m updates are mem-reservation.c's exported helpers.
 * - The kernel's memory figures, the current reservation, a monotonic clock in ms.
 * - The delayed work that runs the engine, and the sysfs device xen_memory0 with Linux's
 *   attribute names, both calling back into Rust with the context pointer they were given.
 *
 * Every function runs in process context. The list and the staging arrays are only touched
 * under the Rust side's mutex (the engine's), except at load and unload, when nothing else
 * runs.
 */
#include <linux/cpumask.h>
#include <linux/device.h>
#include <linux/highmem.h>
#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/mmzone.h>
#include <linux/page-flags.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/swap.h>
#include <linux/sysfs.h>
#include <linux/vmstat.h>
#include <linux/workqueue.h>
#include <asm/tlbflush.h>
#include <asm/xen/hypervisor.h>
#include <asm/xen/hypercall.h>
#include <xen/xen.h>
#include <xen/interface/xen.h>
#include <xen/interface/memory.h>
#include <xen/balloon.h>
#include <xen/features.h>
#include <xen/page.h>
#include <xen/mem-reservation.h>

/*
 * totalreserve_pages and max_pfn are not exported; with one memory node (NUMA off, as in our
 * kernel config) the node's own figures are the same. A NUMA kernel would need the sum over
 * the online nodes, which a module cannot walk (first_online_pgdat is not exported either).
 */
#ifdef CONFIG_NUMA
#error "xenpvrs_balloon reads the memory figures of node 0 only: build it with CONFIG_NUMA off"
#endif

/* The engine's BATCH: most pages one call moves. */
#define XPVRS_BALLOON_BATCH 512

/* Linux's GFP_BALLOON: no OOM killer, no warnings, no emergency reserves. */
#define XPVRS_GFP_BALLOON (GFP_HIGHUSER | __GFP_NOWARN | __GFP_NORETRY | __GFP_NOMEMALLOC)

static LIST_HEAD(xpvrs_balloon_list);
static unsigned long xpvrs_balloon_listed;

/* Called from Rust (balloon.rs). */
unsigned long xpvrs_balloon_listed_pages(void);
unsigned long xpvrs_balloon_claim(unsigned long max);
unsigned long xpvrs_balloon_unclaim_all(void);
unsigned int xpvrs_balloon_take(struct page **pages, unsigned int n, bool scrub);
long xpvrs_balloon_decrease(struct page **pages, xen_pfn_t *frames, unsigned int n);
long xpvrs_balloon_increase(struct page **pages, xen_pfn_t *frames, unsigned int n);
void xpvrs_balloon_free(struct page **pages, unsigned int n);
unsigned long xpvrs_balloon_available_pages(void);
unsigned long xpvrs_balloon_total_ram_pages(void);
unsigned long xpvrs_balloon_reserve_pages(void);
unsigned long xpvrs_balloon_committed_pages(void);
struct xpvrs_balloon_use;
void xpvrs_balloon_memory_use(struct xpvrs_balloon_use *use);
unsigned long xpvrs_balloon_max_pages(void);
long xpvrs_balloon_current_reservation(void);
u64 xpvrs_balloon_now_ms(void);
bool xpvrs_balloon_pv(void);
void xpvrs_balloon_work_init(void *ctx);
void xpvrs_balloon_kick(void);
void xpvrs_balloon_schedule(unsigned int ms);
void xpvrs_balloon_work_stop(void);
int xpvrs_balloon_sysfs_add(void *ctx);
void xpvrs_balloon_sysfs_remove(void);

/* Implemented in Rust (balloon.rs). */
void xpvrs_balloon_run(void *ctx);
ssize_t xpvrs_balloon_show(void *ctx, unsigned int attr, char *buf);
ssize_t xpvrs_balloon_store(void *ctx, unsigned int attr, const char *buf, size_t len);

/* --- the balloon list ------------------------------------------------------------------- */

/*
 * Frames just given back go to the head, so going up repopulates them first (as Linux's list
 * does); the frames claimed at load go to the tail, used when the guest grows past them.
 */
static void xpvrs_balloon_append(struct page *page, bool head)
{
	if (!PageOffline(page))
		__SetPageOffline(page);
	if (head)
		list_add(&page->lru, &xpvrs_balloon_list);
	else
		list_add_tail(&page->lru, &xpvrs_balloon_list);
	xpvrs_balloon_listed++;
}

unsigned long xpvrs_balloon_listed_pages(void)
{
	return xpvrs_balloon_listed;
}

/*
 * Takes up to @max unpopulated frames from the built-in core (xen_alloc_ballooned_pages),
 * only while its own count says it holds that many: the core then hands out frames from its
 * list and never balloons guest memory out to satisfy us. The frames the core lends for grant
 * mappings are off its list (not counted in balloon_low), so they cannot be among these.
 * Returns how many joined our list.
 */
unsigned long xpvrs_balloon_claim(unsigned long max)
{
	struct page **pages;
	unsigned long claimed = 0;

	pages = kmalloc_array(XPVRS_BALLOON_BATCH, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return 0;
	while (claimed < max) {
		unsigned long n = READ_ONCE(balloon_stats.balloon_low);
		unsigned long i;

		n = min3(n, max - claimed, (unsigned long)XPVRS_BALLOON_BATCH);
		if (!n)
			break;
		if (xen_alloc_ballooned_pages(n, pages))
			break;
		for (i = 0; i < n; i++)
			xpvrs_balloon_append(pages[i], false);
		claimed += n;
	}
	kfree(pages);
	return claimed;
}

/*
 * Hands every frame left on our list back to the built-in core (xen_free_ballooned_pages),
 * unpopulated, as it held them at boot. Returns how many.
 */
unsigned long xpvrs_balloon_unclaim_all(void)
{
	struct page **pages;
	unsigned long total = 0;

	pages = kmalloc_array(XPVRS_BALLOON_BATCH, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return 0;
	while (!list_empty(&xpvrs_balloon_list)) {
		unsigned int n = 0;

		while (n < XPVRS_BALLOON_BATCH && !list_empty(&xpvrs_balloon_list)) {
			struct page *page = list_first_entry(&xpvrs_balloon_list, struct page, lru);

			list_del(&page->lru);
			xpvrs_balloon_listed--;
			pages[n++] = page;
		}
		/* The core marks them PageOffline again and puts them on its list. */
		xen_free_ballooned_pages(n, pages);
		total += n;
	}
	kfree(pages);
	return total;
}

/* --- one batch ---------------------------------------------------------------------------- */

/* Takes up to @n pages from the allocator into @pages, scrubbed if @scrub. */
unsigned int xpvrs_balloon_take(struct page **pages, unsigned int n, bool scrub)
{
	unsigned int i;

	n = min_t(unsigned int, n, XPVRS_BALLOON_BATCH);
	for (i = 0; i < n; i++) {
		struct page *page = alloc_page(XPVRS_GFP_BALLOON);

		if (!page)
			break;
		adjust_managed_page_count(page, -1);
		if (scrub)
			clear_highpage(page);
		pages[i] = page;
	}
	return i;
}

static void xpvrs_flush_tlb_one_cpu(void *unused)
{
	__flush_tlb_all();
}

/*
 * Gives the @n pages in @pages to Xen: unmaps them and clears their p2m entries, flushes every
 * CPU's TLB, then XENMEM_decrease_reservation. The released ones (a prefix of @pages) join
 * our list; the others get their mapping and p2m entry back and stay in @pages, shifted to
 * the front. Returns how many were released, or a negative Xen errno if none was.
 */
long xpvrs_balloon_decrease(struct page **pages, xen_pfn_t *frames, unsigned int n)
{
	unsigned int i, released;
	int rc;

	n = min_t(unsigned int, n, XPVRS_BALLOON_BATCH);
	if (!n)
		return 0;
	for (i = 0; i < n; i++) {
		frames[i] = xen_page_to_gfn(pages[i]);
		xenmem_reservation_va_mapping_reset(1, &pages[i]);
	}
	/* flush_tlb_all() is not exported; this is what it does on x86. */
	on_each_cpu(xpvrs_flush_tlb_one_cpu, NULL, 1);

	rc = xenmem_reservation_decrease(n, frames);
	released = rc > 0 ? min_t(unsigned int, rc, n) : 0;
	for (i = 0; i < released; i++)
		xpvrs_balloon_append(pages[i], true);
	/* Xen did not take these: their frames are still ours, map them again. */
	for (i = released; i < n; i++) {
		xenmem_reservation_va_mapping_update(1, &pages[i], &frames[i]);
		pages[i - released] = pages[i];
	}
	if (rc < 0)
		return rc;
	return released;
}

/*
 * Populates up to @n frames from the head of our list (XENMEM_populate_physmap), sets their
 * p2m entries and mappings and puts their pages in @pages. Returns how many, or a negative
 * Xen errno if none.
 */
long xpvrs_balloon_increase(struct page **pages, xen_pfn_t *frames, unsigned int n)
{
	struct page *page;
	unsigned int i = 0;
	int rc;

	n = min_t(unsigned int, n, XPVRS_BALLOON_BATCH);
	list_for_each_entry(page, &xpvrs_balloon_list, lru) {
		if (i == n)
			break;
		frames[i++] = page_to_xen_pfn(page);
	}
	n = i;
	if (!n)
		return 0;
	rc = xenmem_reservation_increase(n, frames);
	if (rc <= 0)
		return rc;
	for (i = 0; i < (unsigned int)rc && i < n; i++) {
		page = list_first_entry(&xpvrs_balloon_list, struct page, lru);
		list_del(&page->lru);
		xpvrs_balloon_listed--;
		__ClearPageOffline(page);
		xenmem_reservation_va_mapping_update(1, &page, &frames[i]);
		pages[i] = page;
	}
	return i;
}

/* Frees @n pages to the allocator (their mapping valid); they count as RAM again. */
void xpvrs_balloon_free(struct page **pages, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		free_reserved_page(pages[i]);
}

/* --- figures ------------------------------------------------------------------------------- */

unsigned long xpvrs_balloon_available_pages(void)
{
	long avail = si_mem_available();

	return avail > 0 ? avail : 0;
}

unsigned long xpvrs_balloon_total_ram_pages(void)
{
	return totalram_pages();
}

unsigned long xpvrs_balloon_reserve_pages(void)
{
	return READ_ONCE(NODE_DATA(0)->totalreserve_pages);
}

unsigned long xpvrs_balloon_committed_pages(void)
{
	return vm_memory_committed();
}

/*
 * The counters the engine's usage floor reads (xen_balloon::MemoryUse; the Rust side mirrors
 * this layout). All in pages, global. The vmstat arrays and nr_swap_pages are exported; the
 * watermarks are summed over node 0's populated zones (one node, see above). Free pages are
 * NR_FREE_PAGES alone, as MemAvailable counts them: pages on the per-CPU lists are free only
 * to an allocation of their CPU and migrate type, and the allocator drains the lists before
 * the OOM killer only when reclaim made progress, which at the floor it cannot (the balloon
 * scenario once had the OOM killer run with 1.6 MiB in the buddy lists and 7 MiB on one
 * CPU's list).
 */
struct xpvrs_balloon_use {
	u64 free;
	u64 file;
	u64 anon;
	u64 kernel_reclaimable;
	u64 swap_free;
	u64 min_wmark;
	u64 low_wmark;
};

void xpvrs_balloon_memory_use(struct xpvrs_balloon_use *use)
{
	struct pglist_data *pgdat = NODE_DATA(0);
	long swap = get_nr_swap_pages();
	int i;

	use->free = global_zone_page_state(NR_FREE_PAGES);
	use->file = global_node_page_state(NR_ACTIVE_FILE) +
		    global_node_page_state(NR_INACTIVE_FILE);
	use->anon = global_node_page_state(NR_ACTIVE_ANON) +
		    global_node_page_state(NR_INACTIVE_ANON);
	use->kernel_reclaimable = global_node_page_state_pages(NR_SLAB_RECLAIMABLE_B) +
				  global_node_page_state(NR_KERNEL_MISC_RECLAIMABLE);
	use->swap_free = swap > 0 ? swap : 0;
	use->min_wmark = 0;
	use->low_wmark = 0;
	for (i = 0; i < MAX_NR_ZONES; i++) {
		struct zone *zone = &pgdat->node_zones[i];

		if (!populated_zone(zone))
			continue;
		use->min_wmark += min_wmark_pages(zone);
		use->low_wmark += low_wmark_pages(zone);
	}
}

/* The end of the guest's memory map, in pages (max_pfn). */
unsigned long xpvrs_balloon_max_pages(void)
{
	return pgdat_end_pfn(NODE_DATA(0));
}

/* XENMEM_current_reservation of this domain: pages Xen charges it. */
long xpvrs_balloon_current_reservation(void)
{
	domid_t domid = DOMID_SELF;

	return HYPERVISOR_memory_op(XENMEM_current_reservation, &domid);
}

u64 xpvrs_balloon_now_ms(void)
{
	return jiffies64_to_msecs(get_jiffies_64());
}

bool xpvrs_balloon_pv(void)
{
	return xen_pv_domain();
}

/* --- the worker ---------------------------------------------------------------------------- */

static void *xpvrs_balloon_ctx;
static void xpvrs_balloon_work_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(xpvrs_balloon_work, xpvrs_balloon_work_fn);

static void xpvrs_balloon_work_fn(struct work_struct *work)
{
	xpvrs_balloon_run(READ_ONCE(xpvrs_balloon_ctx));
}

void xpvrs_balloon_work_init(void *ctx)
{
	WRITE_ONCE(xpvrs_balloon_ctx, ctx);
}

/* Runs the worker now, or moves a later run to now (a target changed). */
void xpvrs_balloon_kick(void)
{
	mod_delayed_work(system_freezable_wq, &xpvrs_balloon_work, 0);
}

/* Runs the worker in @ms unless a run is already queued (which may be sooner: a kick). */
void xpvrs_balloon_schedule(unsigned int ms)
{
	queue_delayed_work(system_freezable_wq, &xpvrs_balloon_work, msecs_to_jiffies(ms));
}

/* Waits for a running worker and makes sure none is queued; it cannot queue itself again. */
void xpvrs_balloon_work_stop(void)
{
	disable_delayed_work_sync(&xpvrs_balloon_work);
}

/* --- sysfs: /sys/devices/system/xen_memory/xen_memory0 ------------------------------------- */

/* In the order of the Rust side's `Attr`. */
enum {
	XPVRS_ATTR_TARGET_KB,
	XPVRS_ATTR_TARGET,
	XPVRS_ATTR_SCHEDULE_DELAY,
	XPVRS_ATTR_MAX_SCHEDULE_DELAY,
	XPVRS_ATTR_RETRY_COUNT,
	XPVRS_ATTR_MAX_RETRY_COUNT,
	XPVRS_ATTR_SCRUB_PAGES,
	XPVRS_ATTR_FLOOR_KB,
	XPVRS_ATTR_CEILING_KB,
	XPVRS_ATTR_STOP_REASON,
	XPVRS_ATTR_CURRENT_KB,
	XPVRS_ATTR_LOW_KB,
	XPVRS_ATTR_HIGH_KB,
};

struct xpvrs_balloon_attr {
	struct device_attribute attr;
	unsigned int id;
};

static ssize_t xpvrs_balloon_attr_show(struct device *dev, struct device_attribute *attr,
				       char *buf)
{
	struct xpvrs_balloon_attr *a = container_of(attr, struct xpvrs_balloon_attr, attr);

	return xpvrs_balloon_show(dev_get_drvdata(dev), a->id, buf);
}

static ssize_t xpvrs_balloon_attr_store(struct device *dev, struct device_attribute *attr,
					const char *buf, size_t len)
{
	struct xpvrs_balloon_attr *a = container_of(attr, struct xpvrs_balloon_attr, attr);

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	return xpvrs_balloon_store(dev_get_drvdata(dev), a->id, buf, len);
}

#define XPVRS_RO(_name, _id)                                                           \
	static struct xpvrs_balloon_attr xpvrs_attr_##_name = {                       \
		.attr = __ATTR(_name, 0444, xpvrs_balloon_attr_show, NULL), .id = _id \
	}
#define XPVRS_RW(_name, _id)                                                            \
	static struct xpvrs_balloon_attr xpvrs_attr_##_name = {                        \
		.attr = __ATTR(_name, 0644, xpvrs_balloon_attr_show,                   \
			       xpvrs_balloon_attr_store),                              \
		.id = _id                                                              \
	}

XPVRS_RW(target_kb, XPVRS_ATTR_TARGET_KB);
XPVRS_RW(target, XPVRS_ATTR_TARGET);
XPVRS_RO(schedule_delay, XPVRS_ATTR_SCHEDULE_DELAY);
XPVRS_RW(max_schedule_delay, XPVRS_ATTR_MAX_SCHEDULE_DELAY);
XPVRS_RO(retry_count, XPVRS_ATTR_RETRY_COUNT);
XPVRS_RW(max_retry_count, XPVRS_ATTR_MAX_RETRY_COUNT);
XPVRS_RW(scrub_pages, XPVRS_ATTR_SCRUB_PAGES);
XPVRS_RO(floor_kb, XPVRS_ATTR_FLOOR_KB);
XPVRS_RO(ceiling_kb, XPVRS_ATTR_CEILING_KB);
XPVRS_RO(stop_reason, XPVRS_ATTR_STOP_REASON);
XPVRS_RO(current_kb, XPVRS_ATTR_CURRENT_KB);
XPVRS_RO(low_kb, XPVRS_ATTR_LOW_KB);
XPVRS_RO(high_kb, XPVRS_ATTR_HIGH_KB);

static struct attribute *xpvrs_balloon_attrs[] = {
	&xpvrs_attr_target_kb.attr.attr,
	&xpvrs_attr_target.attr.attr,
	&xpvrs_attr_schedule_delay.attr.attr,
	&xpvrs_attr_max_schedule_delay.attr.attr,
	&xpvrs_attr_retry_count.attr.attr,
	&xpvrs_attr_max_retry_count.attr.attr,
	&xpvrs_attr_scrub_pages.attr.attr,
	&xpvrs_attr_floor_kb.attr.attr,
	&xpvrs_attr_ceiling_kb.attr.attr,
	&xpvrs_attr_stop_reason.attr.attr,
	NULL,
};

static struct attribute *xpvrs_balloon_info_attrs[] = {
	&xpvrs_attr_current_kb.attr.attr,
	&xpvrs_attr_low_kb.attr.attr,
	&xpvrs_attr_high_kb.attr.attr,
	NULL,
};

static const struct attribute_group xpvrs_balloon_group = {
	.attrs = xpvrs_balloon_attrs,
};

static const struct attribute_group xpvrs_balloon_info_group = {
	.name = "info",
	.attrs = xpvrs_balloon_info_attrs,
};

static const struct attribute_group *xpvrs_balloon_groups[] = {
	&xpvrs_balloon_group,
	&xpvrs_balloon_info_group,
	NULL,
};

static const struct bus_type xpvrs_balloon_subsys = {
	.name = "xen_memory",
	.dev_name = "xen_memory",
};

static struct device *xpvrs_balloon_dev;

static void xpvrs_balloon_dev_release(struct device *dev)
{
	kfree(dev);
}

/*
 * Registers the xen_memory subsystem and xen_memory0, whose attributes call back with @ctx.
 * -EEXIST: another balloon (Linux's xen-balloon) already has the subsystem.
 */
int xpvrs_balloon_sysfs_add(void *ctx)
{
	struct device *dev;
	int err;

	err = subsys_system_register(&xpvrs_balloon_subsys, NULL);
	if (err)
		return err;
	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev) {
		bus_unregister(&xpvrs_balloon_subsys);
		return -ENOMEM;
	}
	dev->id = 0;
	dev->bus = &xpvrs_balloon_subsys;
	dev->groups = xpvrs_balloon_groups;
	dev->release = xpvrs_balloon_dev_release;
	dev_set_drvdata(dev, ctx);
	err = device_register(dev);
	if (err) {
		put_device(dev);
		bus_unregister(&xpvrs_balloon_subsys);
		return err;
	}
	xpvrs_balloon_dev = dev;
	return 0;
}

/* Removes xen_memory0 and the subsystem; waits for readers and writers in progress. */
void xpvrs_balloon_sysfs_remove(void)
{
	if (!xpvrs_balloon_dev)
		return;
	device_unregister(xpvrs_balloon_dev);
	xpvrs_balloon_dev = NULL;
	bus_unregister(&xpvrs_balloon_subsys);
}
