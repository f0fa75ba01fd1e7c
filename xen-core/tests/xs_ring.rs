//! The client over the shared-page byte ring (`xen_ring::XsClient`), against a simulated
//! xenstored on the other side of the page.

mod common;

use std::sync::Arc;

use common::FakeXenstored;
use xen_core::xs::{Client, Decoder, Error, Path, RingEvents, RingTransport, TxId, XsTransport};
use xen_ring::{HostPages, XsClient, XsServer};

/// Plays xenstored whenever the guest waits: drains requests, answers into the ring as space
/// allows.
struct SimEvents {
    server: XsServer<Arc<HostPages>>,
    store: FakeXenstored,
    decoder: Decoder,
    pending: Vec<u8>,
    notifies: u32,
    /// Stop serving (a dead daemon).
    dead: bool,
}

impl SimEvents {
    fn serve(&mut self) {
        if self.dead {
            return;
        }
        let mut buf = [0u8; 256];
        loop {
            let n = self.server.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                let (used, m) = self.decoder.feed(chunk);
                chunk = &chunk[used..];
                if let Some(m) = m.unwrap() {
                    let bytes = [&m.header.to_bytes()[..], m.payload].concat();
                    self.store.send(&bytes).unwrap();
                    let mut out = [0u8; 8192];
                    while let Ok(k) = self.store.try_recv(&mut out) {
                        if k == 0 {
                            break;
                        }
                        self.pending.extend_from_slice(&out[..k]);
                    }
                }
            }
        }
        let written = self.server.write(&self.pending).unwrap();
        self.pending.drain(..written);
    }
}

impl RingEvents for SimEvents {
    fn notify(&mut self) -> Result<(), Error> {
        self.notifies += 1;
        Ok(())
    }

    fn wait(&mut self) -> Result<(), Error> {
        self.serve();
        Ok(())
    }
}

fn client() -> (
    Client<RingTransport<Arc<HostPages>, SimEvents>>,
    Arc<HostPages>,
) {
    let mem = HostPages::shared(1);
    let server = XsServer::init(mem.clone()).unwrap();
    let ring = XsClient::attach(mem.clone()).unwrap();
    let events = SimEvents {
        server,
        store: FakeXenstored::new(),
        decoder: Decoder::new(),
        pending: Vec::new(),
        notifies: 0,
        dead: false,
    };
    (Client::new(RingTransport::new(ring, events)), mem)
}

#[test]
fn messages_larger_than_the_ring_go_through() {
    let (mut c, _mem) = client();
    let path = Path::new("device/vbd/768/big").unwrap();
    let value = vec![b'v'; 4000];
    c.write(TxId::NONE, path, &value).unwrap();
    let mut buf = [0u8; 4096];
    let n = c.read(TxId::NONE, path, &mut buf).unwrap();
    assert_eq!(&buf[..n], &value[..]);
    assert!(c.transport_mut().events_mut().notifies > 4);
}

#[test]
fn dead_daemon_is_an_error_not_a_hang() {
    let (mut c, _mem) = client();
    c.transport_mut().events_mut().dead = true;
    c.transport_mut().set_max_idle_waits(10);
    let path = Path::new("/a").unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(c.read(TxId::NONE, path, &mut buf), Err(Error::Transport));
}

#[test]
fn corrupted_ring_index_is_reported() {
    let (mut c, mem) = client();
    // xenstored claims to have produced more than the ring holds (rsp_prod at offset 2060).
    mem.poke_u32(2060, 5000);
    let mut buf = [0u8; 8];
    assert_eq!(c.transport_mut().try_recv(&mut buf), Err(Error::Transport));
    assert_eq!(
        c.read(TxId::NONE, Path::new("/a").unwrap(), &mut buf),
        Err(Error::Transport)
    );
}
