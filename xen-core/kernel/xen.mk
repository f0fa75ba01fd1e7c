# SPDX-License-Identifier: GPL-2.0
# Kbuild rules shared by every xen-pv-rs kernel module: `include` this from a module's Kbuild
# after setting `obj-m`, then add `$(xen_kernel_objs)` to the module's objects, pass
# `$(xen_kernel_externs)` in its crate root's RUSTFLAGS and make the crate root depend on
# `$(xen_kernel_deps)`.
#
# It builds, in the module's build folder:
# - xen_kbindings: bindgen's output for the kernel's Xen headers (bindings.h), generated at
#   module build time with the kernel's own bindgen flags and C flags, so it always matches the
#   kernel we build against;
# - xen_kernel_helpers.o: C wrappers for static inlines and macros (helpers.c);
# - the project's no_std crates from their one source (the same files cargo tests on the host):
#   bitflags (from the cargo registry), xen_sys, xen_ring, xen_grant, xen_evtchn, xen_core;
# - the `linux` crate and its C helpers (linux/linux.mk): Linux layers that are not Xen's;
# - xen_kernel: the safe Xen glue (src/lib.rs) over all of the above, with the device platform
#   (src/platform.rs) every driver hands its engine.
# A driver's Kbuild lists only its own crates; a protocol crate two modules share has a fragment
# of its own next to its source, included after this one (drivers/blkif/blkif.mk,
# drivers/echo/echo.mk).
# XEN_PV_RS_ROOT is the workspace (qemu-tests/modules.sh passes it).

XEN_KERNEL_SRC := $(XEN_PV_RS_ROOT)/xen-core/kernel

# bitflags as cargo resolved it for the host build (Cargo.lock): qemu-tests/modules.sh runs
# `cargo fetch --locked` and passes the source file cargo metadata names, so the module build
# needs no earlier cargo run and no particular CARGO_HOME.
ifeq ($(XEN_BITFLAGS_SRC),)
$(error xen.mk: XEN_BITFLAGS_SRC is not set; build the modules with qemu-tests/modules.sh)
endif

include $(XEN_PV_RS_ROOT)/linux/linux.mk

xen_kernel_objs := bitflags.o xen_sys.o xen_ring.o xen_grant.o xen_evtchn.o xen_core.o \
	xen_kbindings.o xen_kernel_helpers.o $(linux_objs) xen_kernel.o
xen_kernel_externs := --extern xen_kernel --extern xen_core --extern xen_sys --extern xen_ring \
	--extern xen_grant --extern xen_evtchn $(linux_externs)
xen_kernel_deps := $(addprefix $(obj)/,xen_kernel.o xen_core.o xen_sys.o xen_ring.o \
	xen_grant.o xen_evtchn.o) $(linux_deps)

# A shared crate's object also writes lib<name>.rmeta for the crates that use it. Kbuild adds
# -Zcrate-attr=no_std; the crates say no_std themselves for cargo, hence -Aunused_attributes.
xen_crate_flags = --emit=metadata=$(obj)/lib$(basename $(notdir $@)).rmeta -Aunused_attributes

$(obj)/bitflags.o: $(XEN_BITFLAGS_SRC) FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_bitflags.o = $(xen_crate_flags) --cap-lints=allow

$(obj)/xen_sys.o: $(XEN_PV_RS_ROOT)/xen-core/sys/src/lib.rs $(obj)/bitflags.o FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_sys.o = $(xen_crate_flags) --extern bitflags -L $(obj)

$(obj)/xen_ring.o: $(XEN_PV_RS_ROOT)/ring/src/lib.rs FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_ring.o = $(xen_crate_flags)

$(obj)/xen_grant.o: $(XEN_PV_RS_ROOT)/grant/src/lib.rs $(obj)/xen_sys.o FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_grant.o = $(xen_crate_flags) --extern xen_sys -L $(obj)

$(obj)/xen_evtchn.o: $(XEN_PV_RS_ROOT)/evtchn/src/lib.rs $(obj)/xen_sys.o FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_evtchn.o = $(xen_crate_flags) --extern xen_sys -L $(obj)

$(obj)/xen_core.o: $(XEN_PV_RS_ROOT)/xen-core/src/lib.rs $(obj)/xen_sys.o $(obj)/xen_ring.o \
		$(obj)/xen_grant.o $(obj)/xen_evtchn.o FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_core.o = $(xen_crate_flags) --extern xen_sys --extern xen_ring \
	--extern xen_grant --extern xen_evtchn -L $(obj)

# --- bindings -------------------------------------------------------------------------------
# The kernel's rust/Makefile drops these GCC-only flags before handing $(c_flags) to libclang.
xen_bindgen_skip_c_flags := -mno-fp-ret-in-387 -mpreferred-stack-boundary=% \
	-mskip-rax-setup -mgeneral-regs-only -msign-return-address=% \
	-mindirect-branch=thunk-extern -mindirect-branch-register \
	-mfunction-return=thunk-extern -mrecord-mcount -mabi=lp64 \
	-mindirect-branch-cs-prefix -mstack-protector-guard% -mtraceback=no \
	-mno-pointers-to-nested-functions -mno-string \
	-mno-strict-align -mstrict-align -mdirect-extern-access \
	-mexplicit-relocs -mno-check-zero-division \
	-fconserve-stack -falign-jumps=% -falign-loops=% \
	-femit-struct-debug-baseonly -fno-ipa-cp-clone -fno-ipa-sra \
	-fno-partial-inlining -fplugin-arg-arm_ssp_per_task_plugin-% \
	-fno-reorder-blocks -fno-allow-store-data-races -fasan-shadow-offset=% \
	-fzero-call-used-regs=% -fno-stack-clash-protection \
	-fno-inline-functions-called-once -fsanitize=bounds-strict \
	-fstrict-flex-arrays=% -fmin-function-alignment=% \
	-fzero-init-padding-bits=% -mno-fdpic \
	--param=% --param asan-% -fno-isolate-erroneous-paths-dereference

# Only what the glue calls, and the types those need; large kernel structs stay opaque.
xen_bindgen_items := \
	--allowlist-function '__xenbus_register_(frontend|backend)' \
	--allowlist-function 'xenbus_(unregister_driver|read|write|directory|mkdir|rm|exists)' \
	--allowlist-function 'xenbus_(transaction_start|transaction_end|setup_ring|teardown_ring)' \
	--allowlist-function 'xenbus_(map_ring_valloc|unmap_ring_vfree|alloc_evtchn|free_evtchn)' \
	--allowlist-function 'xenbus_(switch_state|dev_error|read_driver_state)' \
	--allowlist-function '(un)?register_xenbus_watch' \
	--allowlist-function 'gnttab_(grant_foreign_access|end_foreign_access|try_end_foreign_access)' \
	--allowlist-function 'gnttab_(free_grant_reference|alloc_pages|free_pages)' \
	--allowlist-function 'gnttab_(alloc|free)_grant_references' \
	--allowlist-function 'gnttab_(claim|release)_grant_reference' \
	--allowlist-function 'gnttab_(grant_foreign_access_ref|end_foreign_access_ref)' \
	--allowlist-function 'bind_(interdomain_)?evtchn_to_irqhandler_lateeoi' \
	--allowlist-function 'unbind_from_irqhandler|xen_irq_lateeoi|notify_remote_via_irq|get_device|put_device' \
	--allowlist-function 'xpvrs_.*|kfree' \
	--allowlist-type 'xenbus_(device|driver|device_id|watch|transaction|state)|xpvrs_copy_end' \
	--allowlist-var 'XEN_EOI_FLAG_SPURIOUS|GNTMAP_(host_map|readonly)' \
	--opaque-type 'device|device_driver|completion|work_struct|semaphore|kobj_uevent_env' \
	--opaque-type 'page|module|list_head'
# `enum xenbus_state` stays a plain integer (bindgen's default): the kernel passes
# otherend_changed whatever number the peer wrote, and a Rust enum must never hold a value
# outside its variants.

xen_bindgen_c_flags = $(filter-out $(xen_bindgen_skip_c_flags), $(c_flags)) \
	-w --target=x86_64-linux-gnu -fno-builtin -D__BINDGEN__ -DMODULE -I$(XEN_KERNEL_SRC)

quiet_cmd_xen_bindgen = BINDGEN $@
      cmd_xen_bindgen = \
	$(BINDGEN) $< --rust-target 1.68 \
		--use-core --with-derive-default --ctypes-prefix ffi --no-layout-tests \
		--no-debug '.*' --enable-function-attribute-detection --no-doc-comments \
		$(xen_bindgen_items) \
		--raw-line '//! Bindings to the kernel'"'"'s Xen interfaces, generated at module build time.' \
		--raw-line '\#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]' \
		--raw-line '\#![allow(missing_docs, dead_code, improper_ctypes, unsafe_op_in_unsafe_fn, unnecessary_transmutes, clippy::all)]' \
		--raw-line 'use kernel::ffi;' \
		-o $@ -- $(xen_bindgen_c_flags)

$(obj)/xen_kbindings.rs: $(XEN_KERNEL_SRC)/bindings.h $(XEN_KERNEL_SRC)/helpers.h FORCE
	$(call if_changed_dep,xen_bindgen)
RUSTFLAGS_xen_kbindings.o = $(xen_crate_flags)
$(obj)/xen_kbindings.o: $(obj)/xen_kbindings.rs
targets += xen_kbindings.rs
clean-files += xen_kbindings.rs

# --- C helpers ------------------------------------------------------------------------------
$(obj)/xen_kernel_helpers.o: $(XEN_KERNEL_SRC)/helpers.c FORCE
	$(call if_changed_rule,cc_o_c)
CFLAGS_xen_kernel_helpers.o := -I$(XEN_KERNEL_SRC)

# --- the glue crate -------------------------------------------------------------------------
$(obj)/xen_kernel.o: $(XEN_KERNEL_SRC)/src/lib.rs $(obj)/xen_kbindings.o $(obj)/xen_core.o \
		$(obj)/linux.o FORCE
	$(call if_changed_rule,rustc_o_rs)
RUSTFLAGS_xen_kernel.o = $(xen_crate_flags) --extern xen_kbindings --extern xen_core \
	--extern xen_sys --extern xen_ring --extern xen_grant --extern xen_evtchn --extern linux \
	-L $(obj)
