# SPDX-License-Identifier: GPL-2.0
# Kbuild rules shared by the echo example's modules (echo-front, echo-back): `include` this from
# a module's Kbuild after xen.mk, then add `$(xen_echo_objs)` to the module's objects, pass
# `$(xen_echo_externs)` in its crate root's RUSTFLAGS and make the crate root depend on
# `$(xen_echo_deps)`.
#
# It builds xen_echo, the echo engines, from drivers/echo/src: the same source cargo tests on
# the host.

xen_echo_objs := xen_echo.o
xen_echo_externs := --extern xen_echo
xen_echo_deps := $(obj)/xen_echo.o

$(obj)/xen_echo.o: $(XEN_PV_RS_ROOT)/drivers/echo/src/lib.rs $(obj)/xen_core.o FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_echo.o = $(xen_crate_flags) --extern xen_sys --extern xen_ring --extern xen_grant \
	--extern xen_evtchn --extern xen_core -L $(obj)
