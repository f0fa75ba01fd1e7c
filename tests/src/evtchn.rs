//! Simulated event channels: per-domain ports, interdomain binding, pending bits and wake-ups.
//!
//! Each domain has a table of ports (port 0 is never allocated, as in Xen). A port is free,
//! unbound (waiting for a named remote domain to bind), or bound to a remote port. Sending on
//! a bound port sets the remote port's pending bit and, unless it is masked, wakes the remote
//! domain's waiting threads (a [`Condvar`] per domain stands in for the upcall). Pending bits
//! coalesce: many sends before the receiver looks are one event, as with real event channels.
//!
//! Every port counts the sends it received, so a test can see that a flood was attempted and
//! how much of it reached the handler.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use xen_sys::{DomId, Port};

/// Ports per domain (the 2-level ABI's limit on 64-bit guests).
pub const MAX_PORTS: u32 = 4096;

/// Why an event-channel operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvtchnError {
    /// The port is not allocated, or is out of range (`-EINVAL`).
    BadPort,
    /// The port is in the wrong state for this operation, e.g. sending on an unbound port or
    /// binding to a port reserved for another domain (`-EINVAL`).
    BadState,
    /// The domain is unknown (`-ESRCH`).
    BadDomain,
    /// Every port is in use (`-ENOSPC`).
    NoFreePort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Binding {
    Free,
    Unbound { remote: DomId },
    Interdomain { remote: DomId, remote_port: Port },
}

#[derive(Clone, Copy, Debug)]
struct PortState {
    binding: Binding,
    pending: bool,
    masked: bool,
    /// Sends that targeted this port (before coalescing).
    received: u64,
    /// Times a waiter took the pending bit.
    delivered: u64,
}

impl PortState {
    const FREE: PortState = PortState {
        binding: Binding::Free,
        pending: false,
        masked: false,
        received: 0,
        delivered: 0,
    };
}

struct DomEvents {
    ports: Vec<PortState>,
    wake: Arc<Condvar>,
}

impl DomEvents {
    fn new() -> Self {
        DomEvents {
            // Port 0 is reserved and never handed out.
            ports: vec![PortState::FREE],
            wake: Arc::new(Condvar::new()),
        }
    }

    fn port(&self, port: Port) -> Result<&PortState, EvtchnError> {
        let index = usize::try_from(port.raw()).map_err(|_| EvtchnError::BadPort)?;
        match self.ports.get(index) {
            Some(p) if index != 0 && p.binding != Binding::Free => Ok(p),
            _ => Err(EvtchnError::BadPort),
        }
    }

    fn port_mut(&mut self, port: Port) -> Result<&mut PortState, EvtchnError> {
        let index = usize::try_from(port.raw()).map_err(|_| EvtchnError::BadPort)?;
        match self.ports.get_mut(index) {
            Some(p) if index != 0 && p.binding != Binding::Free => Ok(p),
            _ => Err(EvtchnError::BadPort),
        }
    }

    fn allocate(&mut self, binding: Binding) -> Result<Port, EvtchnError> {
        let free = self
            .ports
            .iter()
            .skip(1)
            .position(|p| p.binding == Binding::Free);
        let index = match free {
            Some(i) => i + 1,
            None if self.ports.len() < MAX_PORTS as usize => {
                self.ports.push(PortState::FREE);
                self.ports.len() - 1
            }
            None => return Err(EvtchnError::NoFreePort),
        };
        self.ports[index] = PortState {
            binding,
            ..PortState::FREE
        };
        Ok(Port::new(u32::try_from(index).expect("below MAX_PORTS")))
    }
}

/// Counters of one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Sends that targeted the port, before coalescing.
    pub received: u64,
    /// Events a waiter took (each covers one or more sends).
    pub delivered: u64,
}

/// The event channels of every domain of a simulated machine.
#[derive(Default)]
pub(crate) struct EventChannels {
    inner: Mutex<HashMap<DomId, DomEvents>>,
}

impl EventChannels {
    pub(crate) fn add_domain(&self, dom: DomId) {
        let mut inner = self.inner.lock().unwrap();
        inner.entry(dom).or_insert_with(DomEvents::new);
    }

    pub(crate) fn alloc_unbound(&self, dom: DomId, remote: DomId) -> Result<Port, EvtchnError> {
        let mut inner = self.inner.lock().unwrap();
        if !inner.contains_key(&remote) {
            return Err(EvtchnError::BadDomain);
        }
        let d = inner.get_mut(&dom).ok_or(EvtchnError::BadDomain)?;
        d.allocate(Binding::Unbound { remote })
    }

    pub(crate) fn bind_interdomain(
        &self,
        dom: DomId,
        remote: DomId,
        remote_port: Port,
    ) -> Result<Port, EvtchnError> {
        let mut inner = self.inner.lock().unwrap();
        if !inner.contains_key(&dom) {
            return Err(EvtchnError::BadDomain);
        }
        let r = inner.get_mut(&remote).ok_or(EvtchnError::BadDomain)?;
        match r.port(remote_port)?.binding {
            Binding::Unbound { remote: allowed } if allowed == dom => {}
            _ => return Err(EvtchnError::BadState),
        }
        let d = inner.get_mut(&dom).ok_or(EvtchnError::BadDomain)?;
        let local = d.allocate(Binding::Interdomain {
            remote,
            remote_port,
        })?;
        let r = inner.get_mut(&remote).ok_or(EvtchnError::BadDomain)?;
        r.port_mut(remote_port)?.binding = Binding::Interdomain {
            remote: dom,
            remote_port: local,
        };
        Ok(local)
    }

    /// Sets `port`'s pending bit in `dom` and wakes its waiters unless masked.
    fn raise(
        inner: &mut HashMap<DomId, DomEvents>,
        dom: DomId,
        port: Port,
    ) -> Result<(), EvtchnError> {
        let d = inner.get_mut(&dom).ok_or(EvtchnError::BadDomain)?;
        let p = d.port_mut(port)?;
        p.received += 1;
        if !p.pending {
            p.pending = true;
            if !p.masked {
                d.wake.notify_all();
            }
        }
        Ok(())
    }

    pub(crate) fn notify(&self, dom: DomId, port: Port) -> Result<(), EvtchnError> {
        let mut inner = self.inner.lock().unwrap();
        let d = inner.get(&dom).ok_or(EvtchnError::BadDomain)?;
        match d.port(port)?.binding {
            Binding::Interdomain {
                remote,
                remote_port,
            } => Self::raise(&mut inner, remote, remote_port),
            _ => Err(EvtchnError::BadState),
        }
    }

    /// Raises `port` of `dom` directly, as if its peer had sent `count` events.
    pub(crate) fn inject(&self, dom: DomId, port: Port, count: u64) -> Result<(), EvtchnError> {
        let mut inner = self.inner.lock().unwrap();
        for _ in 0..count {
            Self::raise(&mut inner, dom, port)?;
        }
        Ok(())
    }

    pub(crate) fn close(&self, dom: DomId, port: Port) -> Result<(), EvtchnError> {
        let mut inner = self.inner.lock().unwrap();
        let d = inner.get_mut(&dom).ok_or(EvtchnError::BadDomain)?;
        let p = d.port_mut(port)?;
        let binding = p.binding;
        *p = PortState::FREE;
        if let Binding::Interdomain {
            remote,
            remote_port,
        } = binding
        {
            // The remote end reverts to unbound, reserved for us, as in Xen.
            if let Some(r) = inner.get_mut(&remote) {
                if let Ok(rp) = r.port_mut(remote_port) {
                    rp.binding = Binding::Unbound { remote: dom };
                }
            }
        }
        Ok(())
    }

    pub(crate) fn set_mask(&self, dom: DomId, port: Port, masked: bool) -> Result<(), EvtchnError> {
        let mut inner = self.inner.lock().unwrap();
        let d = inner.get_mut(&dom).ok_or(EvtchnError::BadDomain)?;
        let wake = d.wake.clone();
        let p = d.port_mut(port)?;
        p.masked = masked;
        if !masked && p.pending {
            wake.notify_all();
        }
        Ok(())
    }

    /// Takes `port`'s pending bit without waiting; `true` if it was set.
    pub(crate) fn take_pending(&self, dom: DomId, port: Port) -> Result<bool, EvtchnError> {
        let mut inner = self.inner.lock().unwrap();
        let d = inner.get_mut(&dom).ok_or(EvtchnError::BadDomain)?;
        let p = d.port_mut(port)?;
        let was = p.pending;
        if was {
            p.pending = false;
            p.delivered += 1;
        }
        Ok(was)
    }

    /// Waits until one of `ports` is pending and unmasked, takes its pending bit and returns
    /// it; `None` on timeout. Unknown ports are ignored (a closed port never fires).
    pub(crate) fn wait(&self, dom: DomId, ports: &[Port], timeout: Duration) -> Option<Port> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.inner.lock().unwrap();
        loop {
            let d = inner.get_mut(&dom)?;
            for &port in ports {
                if let Ok(p) = d.port_mut(port) {
                    if p.pending && !p.masked {
                        p.pending = false;
                        p.delivered += 1;
                        return Some(port);
                    }
                }
            }
            let wake = d.wake.clone();
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            inner = wake.wait_timeout(inner, deadline - now).unwrap().0;
        }
    }

    pub(crate) fn stats(&self, dom: DomId, port: Port) -> Option<PortStats> {
        let inner = self.inner.lock().unwrap();
        let p = inner.get(&dom)?.port(port).ok()?;
        Some(PortStats {
            received: p.received,
            delivered: p.delivered,
        })
    }

    /// The remote end of a bound port.
    pub(crate) fn remote(&self, dom: DomId, port: Port) -> Option<(DomId, Port)> {
        let inner = self.inner.lock().unwrap();
        match inner.get(&dom)?.port(port).ok()?.binding {
            Binding::Interdomain {
                remote,
                remote_port,
            } => Some((remote, remote_port)),
            _ => None,
        }
    }

    /// Ports allocated in `dom` (for leak checks).
    pub(crate) fn live_ports(&self, dom: DomId) -> usize {
        let inner = self.inner.lock().unwrap();
        inner.get(&dom).map_or(0, |d| {
            d.ports
                .iter()
                .skip(1)
                .filter(|p| p.binding != Binding::Free)
                .count()
        })
    }
}
