//! Fuzzes the XenStore byte ring: a client and a server share a page while a third party
//! writes arbitrary indices and buffer bytes between operations.
//!
//! Checked on every run: no panic, hang or spin; no call moves more bytes than asked or than a
//! buffer holds; each side writes only its own indices; a broken side stays broken with the
//! same error; and until the first hostile write, both streams arrive intact and in order.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::sync::Arc;
use xen_ring::{HostPages, RingError, Violation, XsClient, XsServer, XS_RING_SIZE};

const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;
const CLIENT_WORDS: [usize; 2] = [REQ_PROD, RSP_CONS];
const SERVER_WORDS: [usize; 2] = [REQ_CONS, RSP_PROD];

#[derive(Arbitrary, Debug)]
enum Op {
    ClientWrite {
        len: u16,
    },
    ClientRead {
        len: u16,
    },
    ServerWrite {
        len: u16,
    },
    ServerRead {
        len: u16,
    },
    /// Hostile: any value into any index word.
    PokeWord {
        word: u8,
        value: u32,
    },
    /// Hostile: move an index by a small amount.
    NudgeWord {
        word: u8,
        delta: i16,
    },
    /// Hostile: overwrite buffer bytes.
    PokeData {
        offset: u16,
        byte: u8,
        len: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    start: [u32; 4],
    ops: Vec<Op>,
}

/// One side's sticky-error bookkeeping.
#[derive(Default)]
struct Side {
    broken: Option<Violation>,
}

impl Side {
    fn outcome(&mut self, hostile: bool, result: Result<usize, RingError>, asked: usize) -> usize {
        match result {
            Ok(n) => {
                assert!(self.broken.is_none(), "a broken ring answered Ok");
                assert!(
                    n <= asked && n <= XS_RING_SIZE as usize,
                    "moved too many bytes"
                );
                n
            }
            Err(RingError::Broken(v)) => {
                assert!(hostile, "honest peers broke the ring: {v:?}");
                if let Some(old) = self.broken {
                    assert_eq!(old, v, "the reported violation changed");
                }
                self.broken = Some(v);
                0
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
}

fn pattern(seq: &mut u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seq = seq.wrapping_add(1);
            *seq
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let mem: Arc<HostPages> = HostPages::shared(1);
    // Consistent starting indices anywhere in the 32-bit space.
    mem.poke_u32(REQ_CONS, input.start[0]);
    mem.poke_u32(REQ_PROD, input.start[0].wrapping_add(input.start[1] % 1025));
    mem.poke_u32(RSP_CONS, input.start[2]);
    mem.poke_u32(RSP_PROD, input.start[2].wrapping_add(input.start[3] % 1025));
    let mut client = XsClient::attach(mem.clone()).unwrap();
    let mut server = XsServer::attach(mem.clone()).unwrap();
    // Bytes already in flight at attach time are unknown to the stream model: drain them.
    let mut sink = vec![0u8; 1024];
    server.read(&mut sink).unwrap();
    client.read(&mut sink).unwrap();

    let (mut c, mut s) = (Side::default(), Side::default());
    let mut hostile = false;
    let (mut to_server, mut to_client) = (VecDeque::new(), VecDeque::new());
    let (mut cseq, mut sseq) = (0u8, 100u8);

    for op in input.ops.iter().take(2000) {
        let client_words = CLIENT_WORDS.map(|w| mem.peek_u32(w));
        let server_words = SERVER_WORDS.map(|w| mem.peek_u32(w));
        match *op {
            Op::ClientWrite { len } => {
                let data = pattern(&mut cseq, usize::from(len % 2048));
                let n = c.outcome(hostile, client.write(&data), data.len());
                to_server.extend(&data[..n]);
                assert_eq!(SERVER_WORDS.map(|w| mem.peek_u32(w)), server_words);
            }
            Op::ClientRead { len } => {
                let mut buf = vec![0u8; usize::from(len % 2048)];
                let n = c.outcome(hostile, client.read(&mut buf), buf.len());
                if !hostile {
                    let expected: Vec<u8> = to_client.drain(..n).collect();
                    assert_eq!(&buf[..n], &expected[..], "response stream corrupted");
                }
                assert_eq!(SERVER_WORDS.map(|w| mem.peek_u32(w)), server_words);
            }
            Op::ServerWrite { len } => {
                let data = pattern(&mut sseq, usize::from(len % 2048));
                let n = s.outcome(hostile, server.write(&data), data.len());
                to_client.extend(&data[..n]);
                assert_eq!(CLIENT_WORDS.map(|w| mem.peek_u32(w)), client_words);
            }
            Op::ServerRead { len } => {
                let mut buf = vec![0u8; usize::from(len % 2048)];
                let n = s.outcome(hostile, server.read(&mut buf), buf.len());
                if !hostile {
                    let expected: Vec<u8> = to_server.drain(..n).collect();
                    assert_eq!(&buf[..n], &expected[..], "request stream corrupted");
                }
                assert_eq!(CLIENT_WORDS.map(|w| mem.peek_u32(w)), client_words);
            }
            Op::PokeWord { word, value } => {
                hostile = true;
                mem.poke_u32(REQ_CONS + usize::from(word % 4) * 4, value);
            }
            Op::NudgeWord { word, delta } => {
                hostile = true;
                let at = REQ_CONS + usize::from(word % 4) * 4;
                mem.poke_u32(at, mem.peek_u32(at).wrapping_add_signed(i32::from(delta)));
            }
            Op::PokeData { offset, byte, len } => {
                hostile = true;
                let at = usize::from(offset) % 2048;
                let len = usize::from(len).min(2048 - at);
                mem.poke_bytes(at, &vec![byte; len]);
            }
        }
    }
});
