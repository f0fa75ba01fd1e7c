//! The guest's XenStore transport: the `xs_wire.h` shared-page byte ring plus an event channel.
//!
//! [`RingTransport`] adapts `xen_ring`'s [`XsClient`] (index discipline, copy-once, overflow
//! checks) to [`XsTransport`]. Waiting and kicking are the glue's business, behind the small
//! [`RingEvents`] trait: the kernel implements it with the XenStore event channel and a wait
//! queue, tests with a simulated xenstored.
//!
//! A peer that never makes progress cannot hang the caller: each blocking operation gives up
//! with [`Error::Transport`] after [`RingEvents::wait`] returned `max_idle_waits` times in a
//! row without the ring moving (on top of whatever timeout `wait` itself applies). A ring the
//! peer corrupted (bad indices) is reported once by `xen_ring` and stays broken; every later
//! call fails with [`Error::Transport`].

use xen_ring::{SharedMemory, XsClient};

use super::transport::XsTransport;
use super::wire::Error;

/// Default bound on consecutive wake-ups without progress.
pub const DEFAULT_MAX_IDLE_WAITS: u32 = 1024;

/// Event-channel operations the ring transport needs.
pub trait RingEvents {
    /// Tells xenstored the ring moved (event-channel notify).
    fn notify(&mut self) -> Result<(), Error>;

    /// Blocks until xenstored signals, or fails (e.g. on a timeout or a signal) with
    /// [`Error::Transport`]. Spurious returns are fine.
    fn wait(&mut self) -> Result<(), Error>;
}

/// [`XsTransport`] over the shared XenStore page.
pub struct RingTransport<M: SharedMemory, E: RingEvents> {
    ring: XsClient<M>,
    events: E,
    max_idle_waits: u32,
}

impl<M: SharedMemory, E: RingEvents> RingTransport<M, E> {
    /// Wraps an attached ring client and its event channel.
    pub fn new(ring: XsClient<M>, events: E) -> Self {
        Self {
            ring,
            events,
            max_idle_waits: DEFAULT_MAX_IDLE_WAITS,
        }
    }

    /// Sets the bound on consecutive wake-ups without progress (at least 1).
    pub fn set_max_idle_waits(&mut self, waits: u32) {
        self.max_idle_waits = waits.max(1);
    }

    /// The ring client (e.g. to read `server_features` or `connection`).
    pub fn ring(&self) -> &XsClient<M> {
        &self.ring
    }

    /// The event operations.
    pub fn events_mut(&mut self) -> &mut E {
        &mut self.events
    }

    /// Takes the parts back.
    pub fn into_parts(self) -> (XsClient<M>, E) {
        (self.ring, self.events)
    }

    fn idle(&mut self, idle: &mut u32) -> Result<(), Error> {
        *idle = idle.saturating_add(1);
        if *idle > self.max_idle_waits {
            return Err(Error::Transport);
        }
        self.events.wait()
    }
}

impl<M: SharedMemory, E: RingEvents> XsTransport for RingTransport<M, E> {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        let mut rest = msg;
        let mut idle = 0u32;
        while !rest.is_empty() {
            let n = self.ring.write(rest).map_err(|_| Error::Transport)?;
            if n == 0 {
                self.idle(&mut idle)?;
                continue;
            }
            idle = 0;
            rest = rest.get(n..).unwrap_or(&[]);
            self.events.notify()?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut idle = 0u32;
        loop {
            let n = self.ring.read(buf).map_err(|_| Error::Transport)?;
            if n > 0 {
                // Space was freed: xenstored may be waiting to write more.
                self.events.notify()?;
                return Ok(n);
            }
            self.idle(&mut idle)?;
        }
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.ring.read(buf).map_err(|_| Error::Transport)?;
        if n > 0 {
            self.events.notify()?;
        }
        Ok(n)
    }
}
