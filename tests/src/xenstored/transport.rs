//! The two ways a simulated domain reaches xenstored: in-process, or over the `xs_wire` ring.
//!
//! Both implement xen-core's [`XsTransport`], so `xen_core::xs::Client` runs over either. The
//! ring's guest side is xen-core's own [`RingTransport`] (what the kernel uses), with the
//! simulator's event channel behind its [`RingEvents`].

use super::Xenstored;
use crate::evtchn::EventChannels;
use crate::gnttab::Mapping;
use crate::mem::Pages;
use crate::Hypervisor;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use xen_core::xs::ring::{RingEvents, RingTransport};
use xen_core::xs::{Error, XsTransport};
use xen_ring::{XsClient, XsErrorCode, XsServer};
use xen_sys::{DomId, Port};

/// How long a blocking receive waits before reporting the transport dead.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A direct, in-process connection to the simulated xenstored.
///
/// Bytes sent are decoded and answered synchronously; replies and watch events queue on the
/// connection. Whenever output is queued, the simulator raises [`port`](Self::port) in the
/// domain, as xenstored's event channel would, so a driver thread can wait on it together
/// with its device's ports and then call `Client::process_pending`.
pub struct XsConnection {
    xs: Arc<Xenstored>,
    evtchn: Arc<EventChannels>,
    conn: u64,
    dom: DomId,
    port: Port,
    timeout: Duration,
}

impl XsConnection {
    pub(crate) fn open(hv: &Hypervisor, dom: DomId) -> XsConnection {
        let port = hv
            .evtchn
            .alloc_unbound(dom, DomId::DOM0)
            .expect("a fresh domain has free ports");
        let conn = hv.xenstored.open(dom, Some((dom, port)));
        XsConnection {
            xs: hv.xenstored.clone(),
            evtchn: hv.evtchn.clone(),
            conn,
            dom,
            port,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The port raised in the domain whenever xenstored queues output for this connection.
    pub fn port(&self) -> Port {
        self.port
    }

    /// Sets how long [`recv`](XsTransport::recv) waits before failing with
    /// [`Error::Transport`].
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Watch events queued by xenstored on this connection and not yet received.
    pub fn queued_events(&self) -> usize {
        self.xs.queued_events(self.conn)
    }

    /// Whether xenstored dropped the connection (e.g. after an oversized header).
    pub fn is_closed(&self) -> bool {
        self.xs.is_closed(self.conn)
    }
}

impl XsTransport for XsConnection {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        if self.xs.receive(self.conn, msg) {
            Ok(())
        } else {
            Err(Error::Transport)
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.xs
            .read_out(self.conn, buf, Some(self.timeout))
            .map_err(|()| Error::Transport)
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        match self.xs.read_out(self.conn, buf, None) {
            Ok(0) if self.xs.is_closed(self.conn) => Err(Error::Transport),
            Ok(n) => Ok(n),
            Err(()) => Ok(0),
        }
    }
}

impl Drop for XsConnection {
    fn drop(&mut self) {
        self.xs.close(self.conn);
        let _ = self.evtchn.close(self.dom, self.port);
    }
}

/// The guest's XenStore event channel, as xen-core's [`RingTransport`] wants it.
pub struct SimRingEvents {
    evtchn: Arc<EventChannels>,
    dom: DomId,
    port: Port,
    timeout: Duration,
}

impl RingEvents for SimRingEvents {
    fn notify(&mut self) -> Result<(), Error> {
        self.evtchn
            .notify(self.dom, self.port)
            .map_err(|_| Error::Transport)
    }

    fn wait(&mut self) -> Result<(), Error> {
        match self.evtchn.wait(self.dom, &[self.port], self.timeout) {
            Some(_) => Ok(()),
            None => Err(Error::Transport),
        }
    }
}

/// A guest's connection to xenstored over a real `xs_wire` page and event channel.
///
/// The guest side is xen-core's [`RingTransport`] over xen-ring's [`XsClient`] on a page the
/// guest owns; the daemon side is an [`XsServer`] on the same page, run by a service thread
/// that wakes on the event channel.
pub struct XsRing {
    transport: RingTransport<Pages, SimRingEvents>,
    evtchn: Arc<EventChannels>,
    xs: Arc<Xenstored>,
    dom: DomId,
    port: Port,
    server_port: Port,
    conn: u64,
    service: Option<JoinHandle<()>>,
}

impl XsRing {
    pub(crate) fn open(hv: &Arc<Hypervisor>, dom: DomId) -> XsRing {
        let page = crate::Domain {
            hv: hv.clone(),
            id: dom,
        }
        .alloc_pages(1);
        let server_mem = Mapping::privileged(&page);
        let server = XsServer::init(server_mem).expect("a fresh page is a valid ring");
        let client = XsClient::attach(page).expect("a zeroed page is a valid ring");
        let server_port = hv
            .evtchn
            .alloc_unbound(DomId::DOM0, dom)
            .expect("dom0 has free ports");
        let port = hv
            .evtchn
            .bind_interdomain(dom, DomId::DOM0, server_port)
            .expect("the port was just reserved for this domain");
        let conn = hv.xenstored.open(dom, Some((DomId::DOM0, server_port)));
        let (xs, evtchn) = (hv.xenstored.clone(), hv.evtchn.clone());
        let service = std::thread::Builder::new()
            .name(format!("xenstored-ring-d{}", dom.raw()))
            .spawn(move || serve(server, xs, evtchn, server_port, conn))
            .expect("spawn the ring service thread");
        let events = SimRingEvents {
            evtchn: hv.evtchn.clone(),
            dom,
            port,
            timeout: DEFAULT_TIMEOUT,
        };
        XsRing {
            transport: RingTransport::new(client, events),
            evtchn: hv.evtchn.clone(),
            xs: hv.xenstored.clone(),
            dom,
            port,
            server_port,
            conn,
            service: Some(service),
        }
    }

    /// The guest's end of the XenStore event channel.
    pub fn port(&self) -> Port {
        self.port
    }

    /// Sets how long one wait for the event channel lasts before the transport fails.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.transport.events_mut().timeout = timeout;
    }

    /// The guest's ring, for a hostile test to scribble on.
    pub fn pages(&self) -> &Pages {
        self.transport.ring().memory()
    }

    /// The error the daemon reported in the page.
    pub fn error(&self) -> XsErrorCode {
        self.transport.ring().error()
    }

    /// Whether xenstored dropped the connection (e.g. after an oversized header).
    pub fn is_closed(&self) -> bool {
        self.xs.is_closed(self.conn)
    }
}

impl XsTransport for XsRing {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.transport.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.transport.recv(buf)
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.transport.try_recv(buf)
    }
}

impl Drop for XsRing {
    fn drop(&mut self) {
        let _ = self.evtchn.close(self.dom, self.port);
        // Wake the service thread so it sees the closed channel at once.
        let _ = self.evtchn.inject(DomId::DOM0, self.server_port, 1);
        if let Some(service) = self.service.take() {
            let _ = service.join();
        }
        let _ = self.evtchn.close(DomId::DOM0, self.server_port);
        self.xs.close(self.conn);
    }
}

/// The daemon side of one ring: moves bytes between the page and the connection.
fn serve(
    mut server: XsServer<Mapping>,
    xs: Arc<Xenstored>,
    evtchn: Arc<EventChannels>,
    port: Port,
    conn: u64,
) {
    let mut buf = [0u8; 1024];
    let mut failed = false;
    loop {
        if evtchn.remote(DomId::DOM0, port).is_none() {
            return;
        }
        let mut moved = false;
        while !failed {
            match server.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    moved = true;
                    if !xs.receive(conn, &buf[..n]) {
                        server.set_error(XsErrorCode::PROTO);
                        failed = true;
                    }
                }
                Err(_) => {
                    server.set_error(XsErrorCode::RINGIDX);
                    xs.close(conn);
                    failed = true;
                }
            }
        }
        if !failed {
            xs.drain_out(conn, |bytes| {
                let n = server.write(bytes).unwrap_or(0);
                moved |= n > 0;
                n
            });
        }
        if moved {
            let _ = evtchn.notify(DomId::DOM0, port);
        }
        evtchn.wait(DomId::DOM0, &[port], Duration::from_millis(100));
    }
}
