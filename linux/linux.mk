# SPDX-License-Identifier: GPL-2.0
# Kbuild rules for the `linux` crate, the safe layers over Linux subsystems (block, debugfs,
# timers, work items) that the kernel's own `kernel` crate lacks. xen.mk includes this: every
# module gets it through `$(xen_kernel_objs)` and `$(xen_kernel_externs)`, and a module that
# needed only these layers could include it alone.
#
# It builds, in the module's build folder:
# - linux_helpers.o: C wrappers for the subsystems' static inlines and macros (helpers.c);
# - linux: the Rust layers (src/lib.rs), which depend on `kernel` only.

LINUX_LAYERS_SRC := $(XEN_PV_RS_ROOT)/linux

linux_objs := linux_helpers.o linux.o
linux_externs := --extern linux -L $(obj)
linux_deps := $(obj)/linux.o

$(obj)/linux_helpers.o: $(LINUX_LAYERS_SRC)/helpers.c FORCE
	$(call if_changed_rule,cc_o_c)
CFLAGS_linux_helpers.o := -I$(LINUX_LAYERS_SRC)

$(obj)/linux.o: $(LINUX_LAYERS_SRC)/src/lib.rs FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_linux.o = --emit=metadata=$(obj)/liblinux.rmeta -Aunused_attributes
