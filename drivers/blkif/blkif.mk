# SPDX-License-Identifier: GPL-2.0
# Kbuild rules shared by the block modules (blkfront, blkback): `include` this from a module's
# Kbuild after xen.mk, then add `$(xen_blkif_objs)` to the module's objects, pass
# `$(xen_blkif_externs)` in its crate root's RUSTFLAGS and make the crate root depend on
# `$(xen_blkif_deps)`.
#
# It builds xen_blkif, the blkif protocol engines, from drivers/blkif/src: the same source cargo
# tests on the host. Like the common crates it depends on (built by xen.mk), it is no_std and
# free of unsafe code.

xen_blkif_objs := xen_blkif.o
xen_blkif_externs := --extern xen_blkif
xen_blkif_deps := $(obj)/xen_blkif.o

$(obj)/xen_blkif.o: $(XEN_PV_RS_ROOT)/drivers/blkif/src/lib.rs $(obj)/xen_core.o FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_blkif.o = $(xen_crate_flags) --extern xen_sys --extern xen_ring --extern xen_grant \
	--extern xen_evtchn --extern xen_core -L $(obj)
