// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters of xenpvrs_netfront: the same names and defaults as Linux's xen-netfront,
 * so a user's modprobe options carry over. The Rust module reads them through the getters
 * below (Rust's module! macro in Linux 6.12 has no parameters).
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/cpumask.h>

unsigned int xpvrs_netfront_max_queues(void);
bool xpvrs_netfront_trusted(void);

/* Linux's default: 0 means the online CPUs, at most 8. */
static unsigned int max_queues;
module_param(max_queues, uint, 0644);
MODULE_PARM_DESC(max_queues, "Maximum number of queues per virtual interface");

static bool trusted = true;
module_param(trusted, bool, 0644);
MODULE_PARM_DESC(trusted, "Is the backend trusted (1: lend the packets' pages; 0: copy them)");

unsigned int xpvrs_netfront_max_queues(void)
{
	unsigned int q = READ_ONCE(max_queues);

	return q ? q : min_t(unsigned int, 8, num_online_cpus());
}

bool xpvrs_netfront_trusted(void) { return READ_ONCE(trusted); }
