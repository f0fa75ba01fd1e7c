# SPDX-License-Identifier: GPL-2.0
# Kbuild rules shared by the network modules (netfront, and netback to come): `include` this
# from a module's Kbuild after xen.mk, then add `$(xen_netif_objs)` to the module's objects,
# pass `$(xen_netif_externs)` in its crate root's RUSTFLAGS and make the crate root depend on
# `$(xen_netif_deps)`.
#
# It builds xen_netif, the netif protocol engine, from drivers/netif/src: the same source cargo
# tests on the host. Like the common crates it depends on (built by xen.mk), it is no_std and
# free of unsafe code.

xen_netif_objs := xen_netif.o
xen_netif_externs := --extern xen_netif
xen_netif_deps := $(obj)/xen_netif.o

$(obj)/xen_netif.o: $(XEN_PV_RS_ROOT)/drivers/netif/src/lib.rs $(obj)/xen_core.o FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_netif.o = $(xen_crate_flags) --extern xen_sys --extern xen_ring --extern xen_grant \
	--extern xen_evtchn --extern xen_core -L $(obj)
