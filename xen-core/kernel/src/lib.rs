// SPDX-License-Identifier: GPL-2.0

//! Safe Rust abstractions over Linux's Xen interfaces, for xen-pv-rs kernel modules.
//!
//! This crate is built by Kbuild (see `../xen.mk`), never by cargo: it depends on the kernel's
//! `kernel` crate and on `xen_kbindings`, bindgen's output for the kernel's own Xen headers,
//! generated when the module is built. It turns those C interfaces into the traits the
//! project's protocol crates are written against, so the very engines the host simulator tests
//! run unchanged in the kernel:
//!
//! | module | kernel interface | what it offers |
//! |---|---|---|
//! | [`bus`] | `xenbus_register_{frontend,backend}`, drvdata | [`bus::Driver`]: probe, otherend_changed, remove as safe methods on an owned per-device object |
//! | [`store`] | `xenbus_read/write/directory/rm/transaction_*`, `register_xenbus_watch` | [`store::KernelStore`], an implementation of xen-core's `XenStore` whose watches kick a device |
//! | [`grant`] | `gnttab_*`, `gnttab_map_refs` | [`grant::Grants`], an implementation of xen-grant's `GrantOps` |
//! | [`evtchn`] | `xenbus_alloc_evtchn`, `bind_*_lateeoi`, `xen_irq_lateeoi` | [`evtchn::Channel`], an implementation of xen-evtchn's `EvtchnOps` with late EOI |
//! | [`ring`] | `xenbus_setup_ring`, `xenbus_map_ring_valloc` | ring pages implementing xen-ring's `SharedMemory` |
//! | [`platform`] | all of the above | [`platform::Env`]: one device's grants, event channel and ring pages behind xen-grant's `GrantOps`, xen-evtchn's `EvtchnOps` and xen-core's `platform` traits, the platform every driver hands its engine |
//! | [`work`] | `system_highpri` | [`work::EventQueue`]: how a ring's queue is kicked by its event channel |
//! | [`stats`] | | counters of live grants, mappings and rings, for leak checks |
//!
//! The Linux layers that are not Xen's (blk-mq, bio, debugfs, timers) are the `linux` crate's
//! (`linux/`): this crate is Xen glue only, and uses `linux` for what it shares with them (the
//! `struct page` handle a grant mapping gives a bio).
//!
//! # Safety story
//!
//! Every `unsafe` block is in this crate or in the generated bindings. Raw kernel objects are
//! reached only through `#[repr(transparent)]` wrappers over [`Opaque`](kernel::types::Opaque)
//! or through owners whose `Drop` undoes what their constructor did (unbind, unwatch,
//! unmap, revoke). Callbacks from C are short `unsafe extern "C" fn` shims that turn the raw
//! pointers back into the owned object registered with them and call a safe trait method.
//! Shared pages are exposed only as [`xen_ring::SharedMemory`] regions or through copy
//! accessors, never as Rust references.

/// The prefix of this crate's `pr_*!` messages.
const __LOG_PREFIX: &[u8] = b"xen_kernel\0";

pub mod bus;
pub mod evtchn;
pub mod grant;
pub mod platform;
pub mod ring;
pub mod stats;
pub mod store;
pub mod work;

use kernel::sync::ArcBorrow;

/// Something that wants to run when a watch fires or an event arrives.
///
/// Called from the XenStore watch thread (process context) or from the event channel's hard
/// interrupt handler: implementations must not sleep and should only schedule work (e.g.
/// enqueue a work item).
pub trait Kick: Send + Sync + 'static {
    /// A watch fired ([`KickReason::Watch`]) or the event channel signalled
    /// ([`KickReason::Event`]).
    fn kick(this: ArcBorrow<'_, Self>, reason: KickReason);
}

/// Why [`Kick::kick`] was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KickReason {
    /// A XenStore watch fired.
    Watch,
    /// The event channel signalled; the device owes a late EOI ([`evtchn::Channel::eoi`]).
    Event,
}

/// Whether we run in a Xen domain at all.
pub fn xen_domain() -> bool {
    // SAFETY: reads a global set once at boot; no preconditions.
    unsafe { xen_kbindings::xpvrs_xen_domain() }
}

/// Whether we run in the initial domain (dom0).
pub fn xen_initial_domain() -> bool {
    // SAFETY: reads a global set once at boot; no preconditions.
    unsafe { xen_kbindings::xpvrs_xen_initial_domain() }
}
