// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters of xenpvrs_balloon. `scrub_pages` has the name and meaning of Linux's
 * sysfs attribute (its kernel parameter is `xen_scrub_pages`), default on as Linux's Kconfig
 * default; `selfballooning` is the name of Linux's former xen-selfballoon switch, default
 * off. The Rust module reads them once at load through the getters below (Rust's module!
 * macro in Linux 6.12 has no parameters); sysfs `scrub_pages` changes scrubbing afterwards.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>

bool xpvrs_balloon_param_scrub_pages(void);
bool xpvrs_balloon_param_selfballooning(void);

static bool scrub_pages = true;
module_param(scrub_pages, bool, 0444);
MODULE_PARM_DESC(scrub_pages, "Zero pages before giving them back to Xen (default on)");

static bool selfballooning;
module_param(selfballooning, bool, 0444);
MODULE_PARM_DESC(selfballooning,
		 "Give back memory the guest does not use, above a margin over its committed memory, and take it back when needed (default off)");

bool xpvrs_balloon_param_scrub_pages(void) { return READ_ONCE(scrub_pages); }
bool xpvrs_balloon_param_selfballooning(void) { return READ_ONCE(selfballooning); }
