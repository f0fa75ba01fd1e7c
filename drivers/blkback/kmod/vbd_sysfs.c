// SPDX-License-Identifier: GPL-2.0
/*
 * The sysfs files of a backend vbd, with the names and formats of Linux's xen-blkback so that
 * xentop and admin scripts read our backend as they read Linux's:
 *
 *   <device>/physical_device         "major:minor" in hex
 *   <device>/mode                    "w" or "r"
 *   <device>/statistics/{oo_req,rd_req,wr_req,f_req,ds_req,rd_sect,wr_sect}
 *
 * The counters are the driver's (Rust) totals over the device's queues: an array of
 * XPVRS_VBD_STATS u64 it updates atomically and keeps alive until xpvrs_vbd_sysfs_remove has
 * returned (sysfs waits for running readers on removal). xpvrs_vbd_sysfs_add returns NULL on
 * failure.
 */
#include <linux/device.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <xen/xenbus.h>

#define XPVRS_VBD_STATS 7

struct xpvrs_vbd_sysfs;

struct xpvrs_vbd_attr {
	struct device_attribute attr;
	struct xpvrs_vbd_sysfs *owner;
	unsigned int index;
};

struct xpvrs_vbd_sysfs {
	struct device *dev;
	const u64 *stats;
	u32 major, minor;
	bool writable;
	struct xpvrs_vbd_attr stat[XPVRS_VBD_STATS];
	struct attribute *stat_list[XPVRS_VBD_STATS + 1];
	struct attribute_group stat_group;
	struct xpvrs_vbd_attr physical, mode;
	struct attribute *dev_list[3];
	struct attribute_group dev_group;
};

void *xpvrs_vbd_sysfs_add(struct xenbus_device *xdev, const u64 *stats, u32 major, u32 minor,
			  bool writable);
void xpvrs_vbd_sysfs_remove(void *handle);

/* In the order of the Rust side's array. */
static const char *const xpvrs_vbd_stat_names[XPVRS_VBD_STATS] = {
	"oo_req", "rd_req", "wr_req", "f_req", "ds_req", "rd_sect", "wr_sect",
};

static ssize_t xpvrs_vbd_stat_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct xpvrs_vbd_attr *a = container_of(attr, struct xpvrs_vbd_attr, attr);

	return sysfs_emit(buf, "%llu\n", READ_ONCE(a->owner->stats[a->index]));
}

static ssize_t xpvrs_vbd_physical_show(struct device *dev, struct device_attribute *attr,
				       char *buf)
{
	struct xpvrs_vbd_attr *a = container_of(attr, struct xpvrs_vbd_attr, attr);

	return sysfs_emit(buf, "%x:%x\n", a->owner->major, a->owner->minor);
}

static ssize_t xpvrs_vbd_mode_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct xpvrs_vbd_attr *a = container_of(attr, struct xpvrs_vbd_attr, attr);

	return sysfs_emit(buf, "%s\n", a->owner->writable ? "w" : "r");
}

static void xpvrs_vbd_attr_init(struct xpvrs_vbd_sysfs *s, struct xpvrs_vbd_attr *a,
				const char *name, unsigned int index,
				ssize_t (*show)(struct device *, struct device_attribute *, char *))
{
	sysfs_attr_init(&a->attr.attr);
	a->attr.attr.name = name;
	a->attr.attr.mode = 0444;
	a->attr.show = show;
	a->owner = s;
	a->index = index;
}

void *xpvrs_vbd_sysfs_add(struct xenbus_device *xdev, const u64 *stats, u32 major, u32 minor,
			  bool writable)
{
	struct xpvrs_vbd_sysfs *s = kzalloc(sizeof(*s), GFP_KERNEL);
	unsigned int i;
	int err;

	if (!s)
		return NULL;
	s->dev = &xdev->dev;
	s->stats = stats;
	s->major = major;
	s->minor = minor;
	s->writable = writable;
	for (i = 0; i < XPVRS_VBD_STATS; i++) {
		xpvrs_vbd_attr_init(s, &s->stat[i], xpvrs_vbd_stat_names[i], i,
				    xpvrs_vbd_stat_show);
		s->stat_list[i] = &s->stat[i].attr.attr;
	}
	s->stat_group.name = "statistics";
	s->stat_group.attrs = s->stat_list;
	xpvrs_vbd_attr_init(s, &s->physical, "physical_device", 0, xpvrs_vbd_physical_show);
	xpvrs_vbd_attr_init(s, &s->mode, "mode", 0, xpvrs_vbd_mode_show);
	s->dev_list[0] = &s->physical.attr.attr;
	s->dev_list[1] = &s->mode.attr.attr;
	s->dev_group.attrs = s->dev_list;
	err = sysfs_create_group(&s->dev->kobj, &s->dev_group);
	if (err)
		goto free;
	err = sysfs_create_group(&s->dev->kobj, &s->stat_group);
	if (err)
		goto remove_dev;
	return s;

remove_dev:
	sysfs_remove_group(&s->dev->kobj, &s->dev_group);
free:
	dev_warn(&xdev->dev, "cannot add the vbd sysfs files: %d\n", err);
	kfree(s);
	return NULL;
}

void xpvrs_vbd_sysfs_remove(void *handle)
{
	struct xpvrs_vbd_sysfs *s = handle;

	if (!s)
		return;
	/* Waits for readers in progress: no show runs after this. */
	sysfs_remove_group(&s->dev->kobj, &s->stat_group);
	sysfs_remove_group(&s->dev->kobj, &s->dev_group);
	kfree(s);
}
