// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters of xenpvrs_blkfront: the same names and defaults as Linux's xen-blkfront,
 * so a user's modprobe options carry over. The Rust module reads them through the getters
 * below (Rust's module! macro in Linux 6.12 has no parameters).
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/blkdev.h>

unsigned int xpvrs_blkfront_max_indirect_segments(void);
unsigned int xpvrs_blkfront_max_queues(void);
unsigned int xpvrs_blkfront_max_ring_page_order(void);
bool xpvrs_blkfront_feature_persistent(void);
unsigned int xpvrs_blkfront_online_cpus(void);
bool xpvrs_blkfront_trusted(void);
int xpvrs_blkfront_register_major(void);
void xpvrs_blkfront_unregister_major(void);

/* Linux's major for Xen virtual block devices, named as Linux names it in /proc/devices. */
#define XPVRS_XVD_MAJOR 202
#define XPVRS_XVD_NAME "xvd"

static unsigned int max_indirect_segments = 32;
module_param(max_indirect_segments, uint, 0444);
MODULE_PARM_DESC(max_indirect_segments,
		 "Maximum amount of segments in indirect requests (default is 32; capped at 64 here)");

static unsigned int max_queues = 4;
module_param(max_queues, uint, 0444);
MODULE_PARM_DESC(max_queues, "Maximum number of hardware queues/rings used per virtual disk");

static unsigned int max_ring_page_order;
module_param(max_ring_page_order, uint, 0444);
MODULE_PARM_DESC(max_ring_page_order, "Maximum order of pages to be used for the shared ring");

static bool trusted = true;
module_param(trusted, bool, 0644);
MODULE_PARM_DESC(trusted, "Is the backend trusted (this driver always copies through its own pages)");

static bool feature_persistent = true;
module_param(feature_persistent, bool, 0644);
MODULE_PARM_DESC(feature_persistent, "Enables the persistent grants feature");

unsigned int xpvrs_blkfront_max_indirect_segments(void) { return max_indirect_segments; }
unsigned int xpvrs_blkfront_max_queues(void) { return max_queues; }
unsigned int xpvrs_blkfront_max_ring_page_order(void) { return max_ring_page_order; }
bool xpvrs_blkfront_feature_persistent(void) { return READ_ONCE(feature_persistent); }
unsigned int xpvrs_blkfront_online_cpus(void) { return num_online_cpus(); }
bool xpvrs_blkfront_trusted(void) { return READ_ONCE(trusted); }
int xpvrs_blkfront_register_major(void) { return register_blkdev(XPVRS_XVD_MAJOR, XPVRS_XVD_NAME); }
void xpvrs_blkfront_unregister_major(void) { unregister_blkdev(XPVRS_XVD_MAJOR, XPVRS_XVD_NAME); }
