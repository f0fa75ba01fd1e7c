//! The client over a real Unix socket (the `std` transport), against the fake xenstored in a thread.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::FakeXenstored;
use xen_core::xs::unix::UnixTransport;
use xen_core::xs::{Client, Decoder, Path, TxId, WatchEvent, XsTransport};

fn serve(mut sock: UnixStream) {
    let mut store = FakeXenstored::new();
    let mut dec = Decoder::new();
    let mut buf = [0u8; 512];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let (used, msg) = dec.feed(chunk);
            chunk = &chunk[used..];
            if let Some(m) = msg.expect("bad frame from client") {
                let bytes = [&m.header.to_bytes()[..], m.payload].concat();
                store.send(&bytes).unwrap();
                let mut out = [0u8; 8192];
                while let Ok(k) = store.try_recv(&mut out) {
                    if k == 0 {
                        break;
                    }
                    sock.write_all(&out[..k]).unwrap();
                }
            }
        }
    }
}

#[test]
fn client_over_unix_socket() {
    let (a, b) = UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || serve(b));
    let transport = UnixTransport::from_stream(a);
    transport
        .set_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c: Client<UnixTransport> = Client::new(transport);
    let path = Path::new("/local/domain/0/backend/vbd/1/768/state").unwrap();
    c.write(TxId::NONE, path, b"2").unwrap();
    let mut buf = [0u8; 64];
    let n = c.read(TxId::NONE, path, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"2");
    let w = c.watch(path).unwrap();
    assert_eq!(c.wait_event(), Ok(w));
    let Some(WatchEvent::Changed { len }) = c.poll_watch(w, &mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(&buf[..len], path.as_bytes());
    drop(c);
    server.join().unwrap();
}
