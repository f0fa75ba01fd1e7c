# SPDX-License-Identifier: GPL-2.0
# Kbuild rules for the balloon module: `include` this from a module's Kbuild after xen.mk, then
# add `$(xen_balloon_objs)` to the module's objects, pass `$(xen_balloon_externs)` in its crate
# root's RUSTFLAGS and make the crate root depend on `$(xen_balloon_deps)`.
#
# It builds xen_balloon, the balloon's policy engine, from drivers/balloon/src: the same source
# cargo tests on the host (no features: the simulator is host-only). Like the common crates it
# depends on (built by xen.mk), it is no_std and free of unsafe code.

xen_balloon_objs := xen_balloon.o
xen_balloon_externs := --extern xen_balloon
xen_balloon_deps := $(obj)/xen_balloon.o

$(obj)/xen_balloon.o: $(XEN_PV_RS_ROOT)/drivers/balloon/src/lib.rs $(obj)/xen_core.o FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_balloon.o = $(xen_crate_flags) --extern xen_sys --extern xen_core -L $(obj)
