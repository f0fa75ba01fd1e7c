// SPDX-License-Identifier: GPL-2.0
/*
 * Thin C wrappers for the kernel's Xen static inlines and macros, compiled into each module
 * (so THIS_MODULE and KBUILD_MODNAME are the module's own). No logic lives here beyond filling
 * hypercall argument structs; the Rust glue (src/) owns every decision.
 */
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <xen/grant_table.h>
#include <xen/events.h>
#include <xen/page.h>
#include <xen/xen.h>
#include "helpers.h"

/* Largest batch xpvrs_map_grants/xpvrs_unmap_grants take (keeps their stack use small). */
#define XPVRS_MAX_BATCH 16

int xpvrs_register_frontend(struct xenbus_driver *drv)
{
	return xenbus_register_frontend(drv);
}

int xpvrs_register_backend(struct xenbus_driver *drv)
{
	return xenbus_register_backend(drv);
}

void *xpvrs_get_drvdata(struct xenbus_device *dev)
{
	return dev_get_drvdata(&dev->dev);
}

void xpvrs_set_drvdata(struct xenbus_device *dev, void *data)
{
	dev_set_drvdata(&dev->dev, data);
}

bool xpvrs_xen_domain(void)
{
	return xen_domain();
}

bool xpvrs_xen_initial_domain(void)
{
	return xen_initial_domain();
}

void xpvrs_notify_evtchn(evtchn_port_t port)
{
	notify_remote_via_evtchn(port);
}

void *xpvrs_alloc_page(void)
{
	/* GFP_NOIO: block drivers allocate on their I/O path, which reclaim may wait on. */
	return (void *)get_zeroed_page(GFP_NOIO);
}

/* For engines, which zero a page themselves before they grant it (xen-core's PageAlloc). */
void *xpvrs_alloc_page_unzeroed(bool atomic)
{
	return (void *)__get_free_page(atomic ? GFP_ATOMIC | __GFP_NOWARN : GFP_NOIO);
}

void xpvrs_free_page(void *addr)
{
	free_page((unsigned long)addr);
}

unsigned long xpvrs_virt_to_gfn(const void *addr)
{
	return virt_to_gfn(addr);
}

/* The frame of a direct-map address; false for any other (vmalloc, stack, module data). */
bool xpvrs_direct_map_gfn(const void *addr, unsigned long *gfn)
{
	if (!virt_addr_valid(addr))
		return false;
	*gfn = virt_to_gfn(addr);
	return true;
}

int xpvrs_setup_ring(struct xenbus_device *dev, void **vaddr, unsigned int nr_pages,
		     grant_ref_t *grefs)
{
	return xenbus_setup_ring(dev, GFP_KERNEL, vaddr, nr_pages, grefs);
}

int xpvrs_alloc_map_pages(unsigned int nr, struct page **pages)
{
	return gnttab_alloc_pages(nr, pages);
}

void xpvrs_free_map_pages(unsigned int nr, struct page **pages)
{
	gnttab_free_pages(nr, pages);
}

struct page *xpvrs_virt_to_page(const void *addr)
{
	return virt_to_page(addr);
}

void *xpvrs_page_address(struct page *page)
{
	return pfn_to_kaddr(page_to_pfn(page));
}

int xpvrs_map_grants(struct page **pages, const grant_ref_t *refs, const domid_t *domids,
		     const bool *readonly, grant_handle_t *handles, int16_t *status,
		     unsigned int count)
{
	struct gnttab_map_grant_ref ops[XPVRS_MAX_BATCH];
	unsigned int i;
	int err;

	if (count > XPVRS_MAX_BATCH)
		return -E2BIG;
	for (i = 0; i < count; i++) {
		u32 flags = GNTMAP_host_map | (readonly[i] ? GNTMAP_readonly : 0);

		gnttab_set_map_op(&ops[i], (unsigned long)pfn_to_kaddr(page_to_pfn(pages[i])),
				  flags, refs[i], domids[i]);
		ops[i].handle = 0;
		/* A slot Xen never reached (the hypercall failed) must not read as mapped. */
		ops[i].status = GNTST_general_error;
	}
	/*
	 * An error here may come after Xen mapped some slots (the p2m update ran out of memory):
	 * the caller unmaps every slot whose status is okay and uses none of them.
	 */
	err = gnttab_map_refs(ops, NULL, pages, count);
	for (i = 0; i < count; i++) {
		status[i] = ops[i].status;
		handles[i] = ops[i].handle;
	}
	return err;
}

int xpvrs_unmap_grants(struct page **pages, const grant_handle_t *handles, int16_t *status,
		       unsigned int count)
{
	struct gnttab_unmap_grant_ref ops[XPVRS_MAX_BATCH];
	unsigned int i;
	int err;

	if (count > XPVRS_MAX_BATCH)
		return -E2BIG;
	for (i = 0; i < count; i++) {
		gnttab_set_unmap_op(&ops[i], (unsigned long)pfn_to_kaddr(page_to_pfn(pages[i])),
				    GNTMAP_host_map, handles[i]);
		ops[i].status = GNTST_general_error;
	}
	err = gnttab_unmap_refs(ops, NULL, pages, count);
	for (i = 0; i < count; i++)
		status[i] = ops[i].status;
	return err;
}

static void xpvrs_fill_copy_end(const struct xpvrs_copy_end *end, grant_ref_t *ref,
				xen_pfn_t *gmfn, domid_t *domid, uint16_t *offset)
{
	if (end->is_gref)
		*ref = (grant_ref_t)end->gref_or_gfn;
	else
		*gmfn = (xen_pfn_t)end->gref_or_gfn;
	*domid = end->domid;
	*offset = end->offset;
}

int xpvrs_grant_copy(const struct xpvrs_copy_end *src, const struct xpvrs_copy_end *dst,
		     const uint16_t *len, int16_t *status, unsigned int count)
{
	struct gnttab_copy ops[XPVRS_MAX_BATCH];
	unsigned int i;

	if (count > XPVRS_MAX_BATCH)
		return -E2BIG;
	memset(ops, 0, sizeof(ops));
	for (i = 0; i < count; i++) {
		xpvrs_fill_copy_end(&src[i], &ops[i].source.u.ref, &ops[i].source.u.gmfn,
				    &ops[i].source.domid, &ops[i].source.offset);
		xpvrs_fill_copy_end(&dst[i], &ops[i].dest.u.ref, &ops[i].dest.u.gmfn,
				    &ops[i].dest.domid, &ops[i].dest.offset);
		ops[i].len = len[i];
		ops[i].flags = (src[i].is_gref ? GNTCOPY_source_gref : 0) |
			       (dst[i].is_gref ? GNTCOPY_dest_gref : 0);
	}
	gnttab_batch_copy(ops, count);
	for (i = 0; i < count; i++)
		status[i] = ops[i].status;
	return 0;
}
