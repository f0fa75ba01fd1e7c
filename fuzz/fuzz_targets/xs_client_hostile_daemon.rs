//! Fuzzes the XenStore client against a daemon that answers every request with arbitrary bytes
//! (garbage, wrong ids, floods of watch events, oversized headers, early close).
//!
//! Checked on every run: no panic or hang (every call returns, an error at worst); a broken
//! client stays broken; values copied out never exceed the caller's buffer.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use xen_core::xs::{with_transaction, Client, Error, Path, TxId, WatchEvent, XsTransport};

#[derive(Arbitrary, Debug)]
enum Call {
    Read,
    Write,
    Directory,
    Watch,
    Unwatch(u8),
    Poll(u8),
    Transaction(u8),
    GetPerms,
}

/// Whether a call must reach the transport (so fails once broken) or may succeed locally.
enum Kind {
    Wire,
    Local,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// For each request, the bytes the daemon answers with.
    answers: Vec<Vec<u8>>,
    /// Bytes per `recv`.
    chunk: u8,
    calls: Vec<Call>,
}

struct Hostile {
    answers: VecDeque<Vec<u8>>,
    inbound: VecDeque<u8>,
    chunk: usize,
}

impl XsTransport for Hostile {
    fn send(&mut self, _msg: &[u8]) -> Result<(), Error> {
        if let Some(a) = self.answers.pop_front() {
            self.inbound.extend(a);
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.inbound.is_empty() {
            // A real transport would block here; the fuzzer has nothing more to say.
            return Err(Error::Transport);
        }
        let n = buf.len().min(self.inbound.len()).min(self.chunk);
        for b in buf.iter_mut().take(n) {
            *b = self.inbound.pop_front().unwrap_or(0);
        }
        Ok(n)
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.inbound.is_empty() {
            return Ok(0);
        }
        self.recv(buf)
    }
}

fuzz_target!(|input: Input| {
    if input.calls.len() > 64 || input.answers.iter().map(Vec::len).sum::<usize>() > 256 * 1024 {
        return;
    }
    let transport = Hostile {
        answers: input.answers.into(),
        inbound: VecDeque::new(),
        chunk: usize::from(input.chunk).max(1),
    };
    let mut c: Client<Hostile, 2, 3> = Client::new(transport);
    let path = Path::new("/local/domain/1/device/vbd/768/state").unwrap();
    let mut watches = Vec::new();
    let mut was_broken = false;
    for call in input.calls {
        let mut buf = [0u8; 64];
        let call_kind = match call {
            Call::Unwatch(_) | Call::Poll(_) | Call::Transaction(_) => Kind::Local,
            _ => Kind::Wire,
        };
        let r: Result<(), Error> = match call {
            Call::Read => c.read(TxId::NONE, path, &mut buf).map(|n| assert!(n <= buf.len())),
            Call::Write => c.write(TxId::NONE, path, b"4"),
            Call::Directory => c.directory(TxId::NONE, path, &mut buf).map(|s| s.for_each(drop)),
            Call::GetPerms => c.get_perms(TxId::NONE, path, &mut buf).map(|p| p.iter().for_each(drop)),
            Call::Watch => c.watch(path).map(|w| watches.push(w)),
            Call::Unwatch(i) => match watches.get(usize::from(i) % watches.len().max(1)).copied() {
                Some(w) => c.unwatch(w),
                None => Ok(()),
            },
            Call::Poll(i) => match watches.get(usize::from(i) % watches.len().max(1)).copied() {
                Some(w) => {
                    // Drain; the input is finite, so this ends.
                    while let Ok(Some(ev)) = c.poll_watch(w, &mut buf) {
                        if let WatchEvent::Changed { len } = ev {
                            assert!(len <= buf.len());
                        }
                    }
                    Ok(())
                }
                None => Ok(()),
            },
            Call::Transaction(tries) => {
                with_transaction(&mut c, u32::from(tries % 4), |s, tx| s.write(tx, path, b"1"))
            }
        };
        if was_broken {
            assert!(c.is_broken(), "broken is not sticky");
            assert!(r != Ok(()) || matches!(call_kind, Kind::Local), "a broken client talked: {r:?}");
        }
        was_broken = c.is_broken();
    }
});
