/* SPDX-License-Identifier: GPL-2.0 */
/* What xen_kbindings is generated from: the kernel's Xen headers and our helpers. */
#include <linux/slab.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include <xen/grant_table.h>
#include <xen/events.h>
#include <xen/page.h>
#include <xen/interface/grant_table.h>
#include "helpers.h"
