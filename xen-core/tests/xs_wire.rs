//! XenStore messages: per-type round trips, NUL rules, limits, and property tests of the decoder.

use proptest::prelude::*;
use xen_core::xs::wire::{HEADER_LEN, MSG_MAX, PAYLOAD_MAX};
use xen_core::xs::{
    Access, Decoder, Errno, Error, Header, Message, MsgType, Path, Perm, PermList, Reply, ReqId,
    Request, Strings, TxId,
};
use xen_sys::DomId;

fn encode_req(r: &Request<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MSG_MAX];
    let n = r.encode(ReqId(42), TxId(3), &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn decode_one(bytes: &[u8]) -> (Header, Vec<u8>) {
    let mut d = Decoder::new();
    let (used, m) = d.feed(bytes);
    assert_eq!(used, bytes.len());
    let m = m.unwrap().unwrap();
    (m.header, m.payload.to_vec())
}

fn msg(ty: MsgType, payload: &[u8]) -> Message<'_> {
    Message {
        header: Header {
            msg_type: ty,
            req_id: ReqId(1),
            tx_id: TxId(0),
            len: payload.len() as u32,
        },
        payload,
    }
}

fn p(s: &str) -> Path<'_> {
    Path::new(s).unwrap()
}

#[test]
fn every_request_round_trips() {
    let perms = [
        Perm {
            access: Access::Both,
            domid: DomId::new(0),
        },
        Perm {
            access: Access::Read,
            domid: DomId::new(9),
        },
    ];
    let reqs = [
        Request::Control { args: b"log\0on\0" },
        Request::Directory { path: p("/a") },
        Request::DirectoryPart {
            path: p("/a"),
            offset: 4000,
        },
        Request::Read {
            path: p("rel/path"),
        },
        Request::GetPerms { path: p("/a") },
        Request::Watch {
            path: p("@releaseDomain"),
            token: b"tok-1",
        },
        Request::Unwatch {
            path: p("/a"),
            token: b"",
        },
        Request::TransactionStart,
        Request::TransactionEnd { commit: true },
        Request::TransactionEnd { commit: false },
        Request::Introduce {
            domid: DomId::new(3),
            mfn: 0x1_2345_6789,
            port: 11,
        },
        Request::Release {
            domid: DomId::new(3),
        },
        Request::GetDomainPath {
            domid: DomId::new(65535),
        },
        Request::Write {
            path: p("/a"),
            value: b"bin\0ary",
        },
        Request::Write {
            path: p("/a"),
            value: b"",
        },
        Request::Mkdir { path: p("/a") },
        Request::Rm { path: p("/a") },
        Request::SetPerms {
            path: p("/a"),
            perms: PermList::Slice(&perms),
        },
        Request::IsDomainIntroduced {
            domid: DomId::new(1),
        },
        Request::Resume {
            domid: DomId::new(1),
        },
        Request::SetTarget {
            domid: DomId::new(1),
            target: DomId::new(2),
        },
        Request::ResetWatches,
    ];
    for r in reqs {
        let bytes = encode_req(&r);
        let (h, payload) = decode_one(&bytes);
        assert_eq!(
            (h.msg_type, h.req_id, h.tx_id),
            (r.msg_type(), ReqId(42), TxId(3))
        );
        let back = Request::parse(&Message {
            header: h,
            payload: &payload,
        })
        .unwrap();
        assert_eq!(back, r, "{r:?}");
    }
}

#[test]
fn wire_bytes_of_some_requests() {
    assert_eq!(
        &encode_req(&Request::Read { path: p("/a/b") })[HEADER_LEN..],
        b"/a/b\0"
    );
    assert_eq!(
        &encode_req(&Request::Write {
            path: p("/a"),
            value: b"1"
        })[HEADER_LEN..],
        b"/a\x001"
    );
    assert_eq!(
        &encode_req(&Request::Watch {
            path: p("/a"),
            token: b"t"
        })[HEADER_LEN..],
        b"/a\0t\0"
    );
    assert_eq!(&encode_req(&Request::TransactionStart)[HEADER_LEN..], b"\0");
    assert_eq!(
        &encode_req(&Request::TransactionEnd { commit: true })[HEADER_LEN..],
        b"T\0"
    );
    let perms = [
        Perm {
            access: Access::None,
            domid: DomId::new(0),
        },
        Perm {
            access: Access::Write,
            domid: DomId::new(7),
        },
    ];
    assert_eq!(
        &encode_req(&Request::SetPerms {
            path: p("/a"),
            perms: PermList::Slice(&perms)
        })[HEADER_LEN..],
        b"/a\0n0\0w7\0"
    );
}

#[test]
fn every_reply_round_trips() {
    let perms = [Perm {
        access: Access::None,
        domid: DomId::new(0),
    }];
    let cases: Vec<(MsgType, Reply<'_>)> = vec![
        (MsgType::Write, Reply::Ok),
        (MsgType::Watch, Reply::Ok),
        (MsgType::Read, Reply::Error(Errno::Enoent)),
        (MsgType::Read, Reply::Value(b"v\0with nul")),
        (MsgType::Read, Reply::Value(b"")),
        (
            MsgType::Directory,
            Reply::Directory(Strings::new(b"a\0bb\0").unwrap()),
        ),
        (
            MsgType::Directory,
            Reply::Directory(Strings::new(b"").unwrap()),
        ),
        (
            MsgType::DirectoryPart,
            Reply::DirectoryPart {
                generation: 99,
                children: Strings::new(b"x\0").unwrap(),
                complete: false,
            },
        ),
        (
            MsgType::DirectoryPart,
            Reply::DirectoryPart {
                generation: 99,
                children: Strings::new(b"x\0y\0").unwrap(),
                complete: true,
            },
        ),
        (
            MsgType::DirectoryPart,
            Reply::DirectoryPart {
                generation: 1,
                children: Strings::new(b"").unwrap(),
                complete: true,
            },
        ),
        (MsgType::GetPerms, Reply::Perms(PermList::Slice(&perms))),
        (
            MsgType::TransactionStart,
            Reply::TransactionStarted(TxId(77)),
        ),
        (
            MsgType::GetDomainPath,
            Reply::DomainPath(p("/local/domain/3")),
        ),
        (MsgType::IsDomainIntroduced, Reply::Introduced(true)),
        (MsgType::Control, Reply::Control(b"anything")),
        (
            MsgType::Watch,
            Reply::WatchEvent {
                path: p("/a/b"),
                token: b"t",
            },
        ),
    ];
    for (req_ty, reply) in cases {
        let mut buf = [0u8; MSG_MAX];
        let n = reply.encode(req_ty, ReqId(5), TxId(0), &mut buf).unwrap();
        let (h, payload) = decode_one(&buf[..n]);
        let back = Reply::parse(&Message {
            header: h,
            payload: &payload,
        })
        .unwrap();
        assert_eq!(back, reply, "{req_ty:?}");
    }
}

#[test]
fn reply_cannot_answer_wrong_request() {
    let mut buf = [0u8; 64];
    assert_eq!(
        Reply::Ok.encode(MsgType::Read, ReqId(1), TxId(0), &mut buf),
        Err(Error::UnexpectedReply)
    );
    assert_eq!(
        Reply::Value(b"").encode(MsgType::Write, ReqId(1), TxId(0), &mut buf),
        Err(Error::UnexpectedReply)
    );
}

#[test]
fn missing_nul_rejected() {
    let cases: &[(MsgType, &[u8])] = &[
        (MsgType::Read, b"/a"),
        (MsgType::Write, b"/a"),
        (MsgType::Watch, b"/a\0tok"),
        (MsgType::TransactionEnd, b"T"),
        (MsgType::Directory, b"/a"),
        (MsgType::SetPerms, b"/a\0r1"),
        (MsgType::Introduce, b"1\x002\x003"),
        (MsgType::Control, b"check"),
    ];
    for (ty, payload) in cases {
        assert_eq!(
            Request::parse(&msg(*ty, payload)),
            Err(Error::MissingNul),
            "{ty:?}"
        );
    }
    let replies: &[(MsgType, &[u8])] = &[
        (MsgType::Write, b"OK"),
        (MsgType::Error, b"ENOENT"),
        (MsgType::Directory, b"a\0b"),
        (MsgType::WatchEvent, b"/a\0tok"),
        (MsgType::TransactionStart, b"5"),
        (MsgType::GetDomainPath, b"/local/domain/1"),
        (MsgType::GetPerms, b"n0"),
    ];
    for (ty, payload) in replies {
        assert_eq!(
            Reply::parse(&msg(*ty, payload)),
            Err(Error::MissingNul),
            "{ty:?}"
        );
    }
}

#[test]
fn wrong_field_count_or_embedded_nul_rejected() {
    assert_eq!(
        Request::parse(&msg(MsgType::Read, b"/a\0/b\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::Watch, b"/a\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::Watch, b"/a\0t\0extra\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::TransactionStart, b"x\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::TransactionEnd, b"Y\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::SetPerms, b"/a\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::SetPerms, b"/a\0x1\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::Release, b"65536\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::Release, b"-1\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::WatchEvent, b"/a\0t\0")),
        Err(Error::UnexpectedReply)
    );
    assert_eq!(
        Reply::parse(&msg(MsgType::Write, b"OK\0\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Reply::parse(&msg(MsgType::Write, b"ok\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Reply::parse(&msg(MsgType::WatchEvent, b"/a\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Reply::parse(&msg(MsgType::IsDomainIntroduced, b"X\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Reply::parse(&msg(MsgType::TransactionStart, b"4294967296\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Reply::parse(&msg(MsgType::Error, b"EAGAIN\0EAGAIN\0")),
        Err(Error::Malformed)
    );
    assert_eq!(
        Reply::parse(&msg(MsgType::Error, b"EFOO\0")),
        Err(Error::UnknownErrno)
    );
}

#[test]
fn invalid_paths_in_messages_rejected() {
    assert_eq!(
        Request::parse(&msg(MsgType::Read, b"/a//b\0")),
        Err(Error::InvalidPath)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::Read, b"\0")),
        Err(Error::InvalidPath)
    );
    assert_eq!(
        Request::parse(&msg(MsgType::Write, b"/a/\0v")),
        Err(Error::InvalidPath)
    );
    assert_eq!(
        Reply::parse(&msg(MsgType::WatchEvent, b"/a b\0t\0")),
        Err(Error::InvalidPath)
    );
    assert_eq!(
        Reply::parse(&msg(MsgType::GetDomainPath, b"\0")),
        Err(Error::InvalidPath)
    );
}

#[test]
fn path_too_long_rejected() {
    let long = format!("/{}", "x".repeat(3072));
    let mut payload = long.clone().into_bytes();
    payload.push(0);
    assert_eq!(
        Request::parse(&msg(MsgType::Read, &payload)),
        Err(Error::PathTooLong)
    );
    assert_eq!(Path::new(&long).err(), Some(Error::PathTooLong));
    let rel = "x".repeat(2049);
    assert_eq!(Path::new(&rel).err(), Some(Error::PathTooLong));
}

#[test]
fn oversized_xenstore_payload_rejected() {
    // Encoding refuses to produce one...
    let big = vec![b'x'; PAYLOAD_MAX];
    let mut buf = vec![0u8; MSG_MAX + 100];
    assert_eq!(
        Request::Write {
            path: p("/a"),
            value: &big
        }
        .encode(ReqId(1), TxId(0), &mut buf),
        Err(Error::PayloadTooLarge)
    );
    let fits = vec![b'x'; PAYLOAD_MAX - 3];
    assert!(Request::Write {
        path: p("/a"),
        value: &fits
    }
    .encode(ReqId(1), TxId(0), &mut buf)
    .is_ok());
    // ...and decoding refuses to accept one.
    let mut hdr = [0u8; 16];
    hdr[0..4].copy_from_slice(&2u32.to_le_bytes());
    hdr[12..16].copy_from_slice(&(PAYLOAD_MAX as u32 + 1).to_le_bytes());
    let mut d = Decoder::new();
    assert_eq!(d.feed(&hdr).1.err(), Some(Error::PayloadTooLarge));
    assert!(d.is_broken());
}

#[test]
fn encoder_refuses_small_buffer() {
    let mut buf = [0u8; 18];
    assert_eq!(
        Request::Read { path: p("/abc") }.encode(ReqId(1), TxId(0), &mut buf),
        Err(Error::NoSpace)
    );
}

#[test]
fn token_with_nul_refused() {
    let mut buf = [0u8; 64];
    assert_eq!(
        Request::Watch {
            path: p("/a"),
            token: b"a\0b"
        }
        .encode(ReqId(1), TxId(0), &mut buf),
        Err(Error::Malformed)
    );
}

/// A reference model of the path rules, written independently of the implementation.
fn model_path_ok(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    let max = if s[0] == b'/' { 3072 } else { 2048 };
    s.len() <= max
        && s.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-/_@".contains(c))
        && !s.windows(2).any(|w| w == b"//")
        && (s == b"/" || *s.last().unwrap() != b'/')
}

fn arb_path() -> impl Strategy<Value = String> {
    prop_oneof![
        "(/[a-z0-9@_-]{1,12}){1,6}",
        "[a-z0-9@_-]{1,12}(/[a-z0-9@_-]{1,12}){0,4}",
        Just("/".to_string()),
    ]
}

fn arb_request_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..8,
        arb_path(),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<u32>(),
    )
        .prop_map(|(k, path, val, n)| {
            let path = Path::new(&path).unwrap();
            let token: Vec<u8> = val.iter().map(|b| b | 1).collect();
            let r = match k {
                0 => Request::Read { path },
                1 => Request::Write { path, value: &val },
                2 => Request::Watch {
                    path,
                    token: &token,
                },
                3 => Request::DirectoryPart { path, offset: n },
                4 => Request::TransactionEnd { commit: n % 2 == 0 },
                5 => Request::GetDomainPath {
                    domid: DomId::new(n as u16),
                },
                6 => Request::Rm { path },
                _ => Request::ResetWatches,
            };
            encode_req(&r)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any chunking of a stream of valid messages yields exactly those messages.
    #[test]
    fn chunking_does_not_change_messages(
        msgs in proptest::collection::vec(arb_request_bytes(), 1..8),
        cuts in proptest::collection::vec(1usize..40, 1..64),
    ) {
        let stream: Vec<u8> = msgs.concat();
        let mut d = Decoder::new();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut cut = cuts.iter().cycle();
        while pos < stream.len() {
            let end = (pos + cut.next().unwrap()).min(stream.len());
            let mut chunk = &stream[pos..end];
            while !chunk.is_empty() {
                let (used, m) = d.feed(chunk);
                prop_assert!(used > 0 || m.as_ref().map(|m| m.is_some()).unwrap_or(true));
                chunk = &chunk[used..];
                if let Some(m) = m.unwrap() {
                    let mut bytes = m.header.to_bytes().to_vec();
                    bytes.extend_from_slice(m.payload);
                    got.push(bytes);
                }
            }
            pos = end;
        }
        prop_assert_eq!(got, msgs);
    }

    /// Arbitrary bytes in arbitrary chunks: never a panic, always progress or a sticky stop.
    #[test]
    fn arbitrary_bytes_never_panic(
        stream in proptest::collection::vec(any::<u8>(), 0..20_000),
        cuts in proptest::collection::vec(1usize..5000, 1..16),
    ) {
        let mut d = Decoder::new();
        let mut pos = 0;
        let mut cut = cuts.iter().cycle();
        'outer: while pos < stream.len() {
            let end = (pos + cut.next().unwrap()).min(stream.len());
            let mut chunk = &stream[pos..end];
            while !chunk.is_empty() {
                let (used, m) = d.feed(chunk);
                chunk = &chunk[used..];
                match m {
                    Ok(Some(m)) => {
                        prop_assert!(m.payload.len() <= PAYLOAD_MAX);
                        let _ = Reply::parse(&m);
                        let _ = Request::parse(&m);
                    }
                    Ok(None) => prop_assert!(chunk.is_empty()),
                    Err(Error::UnknownType(_)) => {}
                    Err(e) => {
                        prop_assert!(matches!(e, Error::PayloadTooLarge | Error::Broken));
                        prop_assert!(d.is_broken());
                        break 'outer;
                    }
                }
            }
            pos = end;
        }
    }

    /// Payload parsers accept or reject any bytes without panicking, for every type.
    #[test]
    fn payload_parsers_total(ty in 0u32..23, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(ty) = xen_core::xs::wire::check_type(ty) {
            let m = msg(ty, &payload);
            let _ = Request::parse(&m);
            let _ = Reply::parse(&m);
        }
    }

    /// The path validator agrees with the reference model.
    #[test]
    fn path_rules_match_model(s in proptest::collection::vec(prop_oneof![
        Just(b'/'), Just(b'a'), Just(b'-'), Just(b'@'), Just(b' '), Just(0u8), any::<u8>()
    ], 0..40)) {
        prop_assert_eq!(Path::from_bytes(&s).is_ok(), model_path_ok(&s));
    }
}
