/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C wrappers the Rust glue calls for what the kernel offers only as static inlines or macros.
 * Each is a thin call; see helpers.c.
 */
#ifndef XEN_PV_RS_HELPERS_H
#define XEN_PV_RS_HELPERS_H

#include <linux/types.h>
#include <xen/xenbus.h>

int xpvrs_register_frontend(struct xenbus_driver *drv);
int xpvrs_register_backend(struct xenbus_driver *drv);
void *xpvrs_get_drvdata(struct xenbus_device *dev);
void xpvrs_set_drvdata(struct xenbus_device *dev, void *data);
bool xpvrs_xen_domain(void);
bool xpvrs_xen_initial_domain(void);
void xpvrs_notify_evtchn(evtchn_port_t port);
void *xpvrs_alloc_page(void);
void *xpvrs_alloc_page_unzeroed(bool atomic);
void xpvrs_free_page(void *addr);
unsigned long xpvrs_virt_to_gfn(const void *addr);
bool xpvrs_direct_map_gfn(const void *addr, unsigned long *gfn);
int xpvrs_setup_ring(struct xenbus_device *dev, void **vaddr, unsigned int nr_pages,
		     grant_ref_t *grefs);
int xpvrs_alloc_map_pages(unsigned int nr, struct page **pages);
void xpvrs_free_map_pages(unsigned int nr, struct page **pages);
int xpvrs_map_grants(struct page **pages, const grant_ref_t *refs, const domid_t *domids,
		     const bool *readonly, grant_handle_t *handles, int16_t *status,
		     unsigned int count);
int xpvrs_unmap_grants(struct page **pages, const grant_handle_t *handles, int16_t *status,
		       unsigned int count);
void *xpvrs_page_address(struct page *page);
struct page *xpvrs_virt_to_page(const void *addr);

/* One end of a grant copy: a foreign grant (is_gref) or a local frame (gfn, DOMID_SELF). */
struct xpvrs_copy_end {
	uint64_t gref_or_gfn;
	uint16_t domid;
	uint16_t offset;
	bool is_gref;
};
int xpvrs_grant_copy(const struct xpvrs_copy_end *src, const struct xpvrs_copy_end *dst,
		     const uint16_t *len, int16_t *status, unsigned int count);

#endif
