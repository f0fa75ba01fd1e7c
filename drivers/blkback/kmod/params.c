// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters of xenpvrs_blkback: the same names and defaults as Linux's xen-blkback
 * where it has them, so a user's modprobe options carry over. The Rust module reads them
 * through the getters below (Rust's module! macro in Linux 6.12 has no parameters).
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/cpumask.h>

unsigned int xpvrs_blkback_max_queues(void);
unsigned int xpvrs_blkback_max_ring_page_order(void);
unsigned int xpvrs_blkback_max_persistent_grants(void);
bool xpvrs_blkback_feature_persistent(void);
unsigned int xpvrs_blkback_persistent_grant_unused_seconds(void);
bool xpvrs_blkback_log_stats(void);
unsigned int xpvrs_blkback_max_buffer_pages(void);
unsigned int xpvrs_blkback_buffer_squeeze_duration_ms(void);
unsigned int xpvrs_blkback_online_cpus(void);

static unsigned int max_queues;
module_param(max_queues, uint, 0644);
MODULE_PARM_DESC(max_queues,
		 "Maximum number of hardware queues per virtual disk (0, the default: the online CPUs)");

static unsigned int max_ring_page_order = 4;
module_param_named(max_ring_page_order, max_ring_page_order, uint, 0444);
MODULE_PARM_DESC(max_ring_page_order, "Maximum order of pages to be used for the shared ring");

static unsigned int max_persistent_grants = 1056;
module_param_named(max_persistent_grants, max_persistent_grants, uint, 0644);
MODULE_PARM_DESC(max_persistent_grants, "Maximum number of grants to map persistently per queue");

static unsigned int persistent_grant_unused_seconds = 60;
module_param(persistent_grant_unused_seconds, uint, 0644);
MODULE_PARM_DESC(persistent_grant_unused_seconds,
		 "Time in seconds an unused persistent grant is allowed to remain mapped (default 60, 0: unlimited)");

static bool log_stats;
module_param(log_stats, bool, 0644);
MODULE_PARM_DESC(log_stats, "Print each queue's request counts every 10 seconds");

static unsigned int max_buffer_pages = 1024;
module_param_named(max_buffer_pages, max_buffer_pages, uint, 0644);
MODULE_PARM_DESC(max_buffer_pages,
		 "Maximum number of free pages to keep in each queue's map pool");

static unsigned int buffer_squeeze_duration_ms = 10;
module_param_named(buffer_squeeze_duration_ms, buffer_squeeze_duration_ms, uint, 0644);
MODULE_PARM_DESC(buffer_squeeze_duration_ms,
		 "Duration in ms to keep the map pools empty after the kernel asked for memory");

static bool feature_persistent = true;
module_param(feature_persistent, bool, 0644);
MODULE_PARM_DESC(feature_persistent, "Enables the persistent grants feature");

unsigned int xpvrs_blkback_max_queues(void) { return READ_ONCE(max_queues); }
unsigned int xpvrs_blkback_max_ring_page_order(void) { return max_ring_page_order; }
unsigned int xpvrs_blkback_max_persistent_grants(void) { return READ_ONCE(max_persistent_grants); }
bool xpvrs_blkback_feature_persistent(void) { return READ_ONCE(feature_persistent); }
unsigned int xpvrs_blkback_online_cpus(void) { return num_online_cpus(); }
unsigned int xpvrs_blkback_persistent_grant_unused_seconds(void)
{
	return READ_ONCE(persistent_grant_unused_seconds);
}
bool xpvrs_blkback_log_stats(void) { return READ_ONCE(log_stats); }
unsigned int xpvrs_blkback_max_buffer_pages(void) { return READ_ONCE(max_buffer_pages); }
unsigned int xpvrs_blkback_buffer_squeeze_duration_ms(void)
{
	return READ_ONCE(buffer_squeeze_duration_ms);
}
