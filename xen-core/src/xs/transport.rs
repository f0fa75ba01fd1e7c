//! The byte transport a XenStore [`Client`](super::Client) runs over.
//!
//! Two kinds exist: the shared-page byte ring of `xs_wire.h` (`struct xenstore_domain_interface`,
//! what guests and the kernel use) and a Unix stream socket to a local xenstored
//! (`/run/xenstored/socket`, dom0 userspace; see `xs::unix`, with the `std` feature). Both
//! carry exactly the same messages, so the client only needs "send these bytes" and "give me
//! some bytes".

use super::wire::Error;

/// A reliable, ordered byte stream to xenstored.
pub trait XsTransport {
    /// Sends one whole message, blocking until every byte is queued. On error the stream is in
    /// an unknown state and the connection should be treated as lost.
    fn send(&mut self, msg: &[u8]) -> Result<(), Error>;

    /// Receives between 1 and `buf.len()` bytes, blocking until at least one is available.
    /// `Ok(0)` means the peer closed the stream. Implementations must not block forever on a
    /// dead peer if the platform offers a way to notice (a timeout, a ring error flag).
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error>;

    /// Receives up to `buf.len()` bytes that are already available, without blocking; `Ok(0)`
    /// means nothing is available now. The default never has anything, which is correct for
    /// transports that can only block (events are then picked up by the next blocking call).
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let _ = buf;
        Ok(0)
    }
}

impl<T: XsTransport + ?Sized> XsTransport for &mut T {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        (**self).send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        (**self).recv(buf)
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        (**self).try_recv(buf)
    }
}
