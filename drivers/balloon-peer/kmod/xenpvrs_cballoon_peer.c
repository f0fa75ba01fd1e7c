// SPDX-License-Identifier: GPL-2.0
/*
 * xenpvrs_cballoon_peer: test-only. Drives Linux's own C balloon (drivers/xen/balloon.c, built
 * in whatever CONFIG_XEN_BALLOON says) the way Linux's xen-balloon.c does when memory/target
 * changes: one call to balloon_set_new_target. `cargo xtask bench balloon` measures it
 * against xenpvrs_balloon in the same boot and the same guest.
 *
 *   /sys/module/xenpvrs_cballoon_peer/parameters/target_kb   write: the new target (KiB)
 *   /sys/module/xenpvrs_cballoon_peer/parameters/current_kb  read: balloon_stats.current_pages
 *
 * Not a balloon driver: it watches nothing and is never installed by anything but the
 * benchmark.
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sysfs.h>
#include <xen/balloon.h>
#include <xen/xen.h>

#define PAGES_TO_KB(p) ((p) << (PAGE_SHIFT - 10))

static int xpvrs_peer_set_target(const char *val, const struct kernel_param *kp)
{
	unsigned long kb;
	int err = kstrtoul(val, 10, &kb);

	if (err)
		return err;
	balloon_set_new_target(kb >> (PAGE_SHIFT - 10));
	return 0;
}

static int xpvrs_peer_get_target(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%lu\n", PAGES_TO_KB(READ_ONCE(balloon_stats.target_pages)));
}

static int xpvrs_peer_get_current(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%lu\n", PAGES_TO_KB(READ_ONCE(balloon_stats.current_pages)));
}

static const struct kernel_param_ops xpvrs_peer_target_ops = {
	.set = xpvrs_peer_set_target,
	.get = xpvrs_peer_get_target,
};

static const struct kernel_param_ops xpvrs_peer_current_ops = {
	.get = xpvrs_peer_get_current,
};

module_param_cb(target_kb, &xpvrs_peer_target_ops, NULL, 0644);
MODULE_PARM_DESC(target_kb, "The C balloon's target in KiB (balloon_set_new_target)");
module_param_cb(current_kb, &xpvrs_peer_current_ops, NULL, 0444);
MODULE_PARM_DESC(current_kb, "The C balloon's current size in KiB");

static int __init xpvrs_peer_init(void)
{
	if (!xen_domain())
		return -ENODEV;
	pr_info("XENPVRS-CBALLOON-PEER loaded current_kb=%lu\n",
		PAGES_TO_KB(READ_ONCE(balloon_stats.current_pages)));
	return 0;
}

static void __exit xpvrs_peer_exit(void)
{
	pr_info("XENPVRS-CBALLOON-PEER unload current_kb=%lu target_kb=%lu\n",
		PAGES_TO_KB(READ_ONCE(balloon_stats.current_pages)),
		PAGES_TO_KB(READ_ONCE(balloon_stats.target_pages)));
}

module_init(xpvrs_peer_init);
module_exit(xpvrs_peer_exit);
MODULE_DESCRIPTION("xen-pv-rs test peer: drives Linux's C balloon core for the benchmark");
MODULE_LICENSE("GPL");
