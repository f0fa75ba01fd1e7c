// SPDX-License-Identifier: GPL-2.0

//! Event channels bound to an interrupt handler with late EOI: an implementation of
//! xen-evtchn's `EvtchnOps`.
//!
//! A [`Channel`] holds at most one binding (one port per device is what PV devices use). A
//! frontend allocates an unbound port for its peer (`xenbus_alloc_evtchn`) and binds it with
//! `bind_evtchn_to_irqhandler_lateeoi`; a backend binds the frontend's port with
//! `bind_interdomain_evtchn_to_irqhandler_lateeoi`. The interrupt handler only kicks the
//! device ([`crate::Kick`], reason `Event`); the port stays masked until the device calls
//! [`Channel::eoi`], marking the event spurious if it brought no work, so the kernel throttles
//! a peer that floods the port. Closing (or dropping) unbinds, which also closes the port.
//!
//! The kernel does not export the local port of an interdomain binding, so the [`Port`] a
//! backend gets back from `bind_interdomain` is the peer's port: a handle naming the binding
//! in later calls, not a number to publish.

use core::cell::Cell;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::Arc;
use kernel::types::ForeignOwnable;
use xen_evtchn::{EvtchnError, EvtchnOps};
use xen_kbindings as b;
use xen_sys::{DomId, Port};

use crate::bus::DeviceHandle;
use crate::{stats, Kick, KickReason};

/// One bound port.
///
/// # Invariants
///
/// `irq` is bound to our handler with `dev_id`, which came from `Arc::into_foreign` and is
/// reclaimed once, after unbinding.
struct Binding {
    irq: u32,
    port: Port,
    dev_id: *const kernel::ffi::c_void,
}

/// The event channel of one device.
pub struct Channel<K: Kick> {
    dev: DeviceHandle,
    target: Arc<K>,
    name: &'static CStr,
    bound: Cell<Option<Binding>>,
}

// SAFETY: the binding is an irq number and a pointer to an `Arc<K>` (K: Send + Sync); the cell
// is only used through `&self` of the owner, which is not shared across threads (not `Sync`).
unsafe impl<K: Kick> Send for Channel<K> {}

unsafe extern "C" fn irq_handler<K: Kick>(
    _irq: kernel::ffi::c_int,
    dev_id: *mut kernel::ffi::c_void,
) -> b::irqreturn_t {
    // SAFETY: `dev_id` is the `Arc<K>` registered with this handler; it is reclaimed only after
    // `unbind_from_irqhandler`, which waits for a running handler.
    let target = unsafe { <Arc<K> as ForeignOwnable>::borrow(dev_id) };
    K::kick(target, KickReason::Event);
    b::irqreturn_IRQ_HANDLED
}

impl<K: Kick> Channel<K> {
    /// An unbound channel of `dev`, kicking `target` on events; `name` shows in
    /// `/proc/interrupts`.
    pub fn new(dev: DeviceHandle, target: Arc<K>, name: &'static CStr) -> Self {
        Channel {
            dev,
            target,
            name,
            bound: Cell::new(None),
        }
    }

    /// Sends the late EOI for the event the device was kicked for: re-enables the port.
    /// `spurious` tells the kernel the event brought no work, so a flood is slowed down. Call
    /// it once per [`KickReason::Event`] kick, after handling the event.
    pub fn eoi(&self, spurious: bool) {
        if let Some(bd) = self.bound.take() {
            let flags = if spurious {
                b::XEN_EOI_FLAG_SPURIOUS
            } else {
                0
            };
            // SAFETY: `bd.irq` is bound with late EOI (type invariant of `Binding`).
            unsafe { b::xen_irq_lateeoi(bd.irq, flags) };
            self.bound.set(Some(bd));
        }
    }

    fn bind(
        &self,
        port: Port,
        bind: impl FnOnce(*mut kernel::ffi::c_void) -> i32,
    ) -> Result<Port, EvtchnError> {
        let dev_id = self.target.clone().into_foreign();
        let irq = bind(dev_id as *mut _);
        match u32::try_from(irq) {
            Ok(irq) => {
                stats::inc(&stats::CHANNELS);
                // INVARIANT: bound to our handler with `dev_id`.
                self.bound.set(Some(Binding { irq, port, dev_id }));
                Ok(port)
            }
            Err(_) => {
                // SAFETY: binding failed, so the handler never saw `dev_id`; reclaim it once.
                drop(unsafe { <Arc<K> as ForeignOwnable>::from_foreign(dev_id) });
                Err(EvtchnError::from_errno(irq))
            }
        }
    }

    fn check_peer(&self, remote: DomId) -> Result<(), EvtchnError> {
        if remote != self.dev.otherend_id() {
            return Err(EvtchnError::PermissionDenied);
        }
        let busy = self.bound.take();
        let is_bound = busy.is_some();
        self.bound.set(busy);
        if is_bound {
            return Err(EvtchnError::Busy);
        }
        Ok(())
    }

    fn with_binding<R>(&self, port: Port, f: impl FnOnce(&Binding) -> R) -> Result<R, EvtchnError> {
        let bd = self.bound.take();
        let result = match &bd {
            Some(b) if b.port == port => Ok(f(b)),
            _ => Err(EvtchnError::InvalidPort),
        };
        self.bound.set(bd);
        result
    }

    fn unbind(bd: Binding) {
        // SAFETY: `bd.irq` is bound with `bd.dev_id` (type invariant); this waits for a running
        // handler and closes the port.
        unsafe { b::unbind_from_irqhandler(bd.irq, bd.dev_id as *mut _) };
        // SAFETY: no handler can run any more; `dev_id` is reclaimed exactly once.
        drop(unsafe { <Arc<K> as ForeignOwnable>::from_foreign(bd.dev_id) });
        stats::dec(&stats::CHANNELS);
    }
}

impl<K: Kick> Drop for Channel<K> {
    fn drop(&mut self) {
        if let Some(bd) = self.bound.take() {
            Self::unbind(bd);
        }
    }
}

impl<K: Kick> EvtchnOps for Channel<K> {
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, EvtchnError> {
        self.check_peer(remote)?;
        let mut port: b::evtchn_port_t = 0;
        // SAFETY: `dev` is a live device (handle); `port` is a valid out-pointer.
        let ret = unsafe { b::xenbus_alloc_evtchn(self.dev.as_raw(), &mut port) };
        if ret < 0 {
            return Err(EvtchnError::from_errno(ret));
        }
        let name = self.name;
        let result = self.bind(Port::new(port), |dev_id| {
            // SAFETY: `port` is our fresh unbound port; the handler and `dev_id` stay valid
            // until `unbind` (Binding invariant).
            unsafe {
                b::bind_evtchn_to_irqhandler_lateeoi(
                    port,
                    Some(irq_handler::<K>),
                    0,
                    name.as_char_ptr(),
                    dev_id,
                )
            }
        });
        if result.is_err() {
            // SAFETY: the port is ours and unbound.
            unsafe { b::xenbus_free_evtchn(self.dev.as_raw(), port) };
        }
        result
    }

    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, EvtchnError> {
        self.check_peer(remote)?;
        let name = self.name;
        let dev = self.dev.as_raw();
        self.bind(remote_port, |dev_id| {
            // SAFETY: `dev` is live (handle); the handler and `dev_id` stay valid until
            // `unbind` (Binding invariant). The kernel validates the remote port.
            unsafe {
                b::bind_interdomain_evtchn_to_irqhandler_lateeoi(
                    dev,
                    remote_port.raw(),
                    Some(irq_handler::<K>),
                    0,
                    name.as_char_ptr(),
                    dev_id,
                )
            }
        })
    }

    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        self.with_binding(port, |bd| {
            let irq = i32::try_from(bd.irq).unwrap_or(-1);
            // SAFETY: `irq` is bound to an event channel (Binding invariant).
            unsafe { b::notify_remote_via_irq(irq) }
        })
    }

    /// Not offered: masking is done by late EOI ([`Channel::eoi`]).
    fn mask(&self, _port: Port) -> Result<(), EvtchnError> {
        Err(EvtchnError::Other(-95))
    }

    /// The late EOI for the last event (see [`Channel::eoi`]).
    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        self.with_binding(port, |_| ())?;
        self.eoi(false);
        Ok(())
    }

    fn close(&self, port: Port) -> Result<(), EvtchnError> {
        let bd = self.bound.take();
        match bd {
            Some(b) if b.port == port => {
                Self::unbind(b);
                Ok(())
            }
            other => {
                self.bound.set(other);
                Err(EvtchnError::InvalidPort)
            }
        }
    }
}
