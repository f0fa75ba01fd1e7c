//! Fuzzes the XenStore decoder with arbitrary bytes in arbitrary chunks, then parses every
//! message it yields as a request and as a reply.
//!
//! Checked on every run: no panic; each call either consumes input, completes a message or
//! reports an error; payloads never exceed `XENSTORE_PAYLOAD_MAX`; a broken decoder stays
//! broken and consumes nothing; whatever parses re-encodes to bytes that parse to the same
//! value; and the messages decoded from a stream do not depend on how it was chunked.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use xen_core::xs::wire::{MSG_MAX, PAYLOAD_MAX};
use xen_core::xs::{Decoder, Error, Message, Reply, Request};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Chunk sizes, cycled (0 is read as 1).
    cuts: Vec<u16>,
    stream: Vec<u8>,
}

/// What one decoder run saw: messages (header bytes + payload) and errors, in order.
fn run(input: &Input, cut_sizes: &[usize]) -> Vec<Result<Vec<u8>, Error>> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut cuts = cut_sizes.iter().cycle();
    while pos < input.stream.len() {
        let end = (pos + cuts.next().copied().unwrap_or(1)).min(input.stream.len());
        let mut chunk = &input.stream[pos..end];
        while !chunk.is_empty() {
            let (used, result) = d.feed(chunk);
            assert!(used <= chunk.len());
            chunk = &chunk[used..];
            match result {
                Ok(Some(m)) => {
                    assert!(m.payload.len() <= PAYLOAD_MAX);
                    assert_eq!(m.header.len as usize, m.payload.len());
                    check_parsers(&m);
                    let mut bytes = m.header.to_bytes().to_vec();
                    bytes.extend_from_slice(m.payload);
                    out.push(Ok(bytes));
                }
                Ok(None) => assert!(chunk.is_empty(), "stopped early without a message or error"),
                Err(e @ Error::UnknownType(_)) => out.push(Err(e)),
                Err(e) => {
                    assert!(matches!(e, Error::PayloadTooLarge | Error::Broken), "{e:?}");
                    assert!(d.is_broken());
                    let (used, again) = d.feed(chunk);
                    assert_eq!(used, 0);
                    assert_eq!(again.err(), Some(Error::Broken));
                    out.push(Err(e));
                    return out;
                }
            }
        }
        pos = end;
    }
    out
}

fn check_parsers(m: &Message<'_>) {
    let mut buf = vec![0u8; MSG_MAX];
    if let Ok(req) = Request::parse(m) {
        let n = req.encode(m.header.req_id, m.header.tx_id, &mut buf).expect("a parsed request re-encodes");
        let mut d = Decoder::new();
        let (used, again) = d.feed(&buf[..n]);
        assert_eq!(used, n);
        let again = again.expect("re-encoded request decodes").expect("whole message");
        assert_eq!(Request::parse(&again).expect("re-encoded request parses"), req);
    }
    if let Ok(reply) = Reply::parse(m) {
        let n = reply.encode(m.header.msg_type, m.header.req_id, m.header.tx_id, &mut buf).expect("a parsed reply re-encodes");
        let mut d = Decoder::new();
        let (_, again) = d.feed(&buf[..n]);
        let again = again.expect("re-encoded reply decodes").expect("whole message");
        assert_eq!(Reply::parse(&again).expect("re-encoded reply parses"), reply);
    }
}

fuzz_target!(|input: Input| {
    if input.stream.len() > 64 * 1024 {
        return;
    }
    let cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c).max(1)).collect();
    let chunked = run(&input, if cuts.is_empty() { &[1] } else { &cuts });
    let whole = run(&input, &[input.stream.len().max(1)]);
    assert_eq!(chunked, whole, "chunking changed the decoded messages");
});
