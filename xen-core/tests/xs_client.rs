//! The XenStore client against a fake xenstored: operations, watches, transactions and attacks.

mod common;

use common::{event_bytes, raw_msg, reply_bytes, FakeXenstored};
use xen_core::xs::client::{ClientStats, MAX_STRAY_REPLIES};
use xen_core::xs::store::DEFAULT_TRANSACTION_ATTEMPTS;
use xen_core::xs::{
    with_transaction, Access, Client, Errno, Error, MsgType, Path, Perm, Reply, TxId, WatchEvent,
    XenStore,
};
use xen_sys::DomId;

type TestClient = Client<FakeXenstored, 4, 4>;

fn p(s: &str) -> Path<'_> {
    Path::new(s).unwrap()
}

fn client() -> TestClient {
    Client::new(FakeXenstored::new())
}

fn read_string(c: &mut TestClient, path: &str) -> Result<String, Error> {
    let mut buf = [0u8; 256];
    let n = c.read(TxId::NONE, p(path), &mut buf)?;
    Ok(String::from_utf8(buf[..n].to_vec()).unwrap())
}

#[test]
fn write_read_directory_rm() {
    let mut c = client();
    c.write(TxId::NONE, p("/local/domain/1/device/vbd/768/state"), b"1")
        .unwrap();
    c.write(
        TxId::NONE,
        p("/local/domain/1/device/vbd/768/ring-ref"),
        b"8",
    )
    .unwrap();
    assert_eq!(
        read_string(&mut c, "/local/domain/1/device/vbd/768/state").unwrap(),
        "1"
    );
    let mut buf = [0u8; 128];
    let names: Vec<&[u8]> = c
        .directory(TxId::NONE, p("/local/domain/1/device/vbd/768"), &mut buf)
        .unwrap()
        .collect();
    assert_eq!(names, [&b"ring-ref"[..], b"state"]);
    c.rm(TxId::NONE, p("/local/domain/1/device/vbd/768"))
        .unwrap();
    assert_eq!(
        read_string(&mut c, "/local/domain/1/device/vbd/768/state"),
        Err(Error::Daemon(Errno::Enoent))
    );
    let mut buf = [0u8; 8];
    assert_eq!(c.read_optional(TxId::NONE, p("/nope"), &mut buf), Ok(None));
}

#[test]
fn chunked_delivery_one_byte_at_a_time() {
    let mut c = client();
    c.transport_mut().chunk = 1;
    c.write(TxId::NONE, p("/a"), b"hello").unwrap();
    assert_eq!(read_string(&mut c, "/a").unwrap(), "hello");
}

#[test]
fn value_larger_than_caller_buffer_is_no_space() {
    let mut c = client();
    c.write(TxId::NONE, p("/big"), &[b'x'; 100]).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(
        c.read(TxId::NONE, p("/big"), &mut small),
        Err(Error::NoSpace)
    );
    // The connection is still in step.
    assert_eq!(read_string(&mut c, "/big").unwrap().len(), 100);
}

#[test]
fn perms_round_trip() {
    let mut c = client();
    c.mkdir(TxId::NONE, p("/dev")).unwrap();
    let perms = [
        Perm {
            access: Access::None,
            domid: DomId::new(0),
        },
        Perm {
            access: Access::Read,
            domid: DomId::new(5),
        },
    ];
    c.set_perms(TxId::NONE, p("/dev"), &perms).unwrap();
    let mut buf = [0u8; 64];
    let got: Vec<Perm> = c
        .get_perms(TxId::NONE, p("/dev"), &mut buf)
        .unwrap()
        .iter()
        .collect();
    assert_eq!(got, perms);
}

#[test]
fn domain_path() {
    let mut c = client();
    let mut buf = [0u8; 64];
    let n = c.get_domain_path(DomId::new(7), &mut buf).unwrap();
    assert_eq!(&buf[..n], b"/local/domain/7");
}

#[test]
fn every_error_name_maps_to_errno() {
    for errno in Errno::ALL {
        let mut c = client();
        let mut err = reply_bytes(&Reply::Error(errno), MsgType::Read, 0, 0);
        err[4..8].copy_from_slice(&1u32.to_le_bytes()); // first request id
        c.transport_mut().replace_reply = Some(err);
        assert_eq!(read_string(&mut c, "/x"), Err(Error::Daemon(errno)));
    }
}

#[test]
fn unknown_error_name_rejected() {
    let mut c = client();
    c.transport_mut().replace_reply = Some(raw_msg(16, 1, 0, b"EWHATEVER\0"));
    assert_eq!(read_string(&mut c, "/x"), Err(Error::UnknownErrno));
}

#[test]
fn missing_nul_rejected() {
    let mut c = client();
    // "OK" without its NUL.
    c.transport_mut().replace_reply = Some(raw_msg(11, 1, 0, b"OK"));
    assert_eq!(c.write(TxId::NONE, p("/a"), b"v"), Err(Error::MissingNul));
    // An error name without its NUL.
    c.transport_mut().replace_reply = Some(raw_msg(16, 2, 0, b"EINVAL"));
    assert_eq!(c.write(TxId::NONE, p("/a"), b"v"), Err(Error::MissingNul));
    // A watch event without its final NUL is counted and dropped; the call still completes.
    c.transport_mut()
        .before_reply
        .push_back(raw_msg(15, 0, 0, b"/a\0tok"));
    c.write(TxId::NONE, p("/a"), b"v").unwrap();
    assert_eq!(c.stats().malformed_events, 1);
}

#[test]
fn reply_of_wrong_type_rejected() {
    let mut c = client();
    c.transport_mut().replace_reply = Some(reply_bytes(&Reply::Value(b"x"), MsgType::Read, 1, 0));
    assert_eq!(
        c.write(TxId::NONE, p("/a"), b"v"),
        Err(Error::UnexpectedReply)
    );
}

#[test]
fn oversized_xenstore_payload_rejected() {
    let mut c = client();
    let mut huge = raw_msg(2, 1, 0, b"");
    huge[12..16].copy_from_slice(&4097u32.to_le_bytes());
    c.transport_mut().replace_reply = Some(huge);
    assert_eq!(read_string(&mut c, "/a"), Err(Error::PayloadTooLarge));
    // Framing is lost: the connection stays broken instead of guessing where the next header is.
    assert!(c.is_broken());
    assert_eq!(read_string(&mut c, "/a"), Err(Error::Broken));
}

#[test]
fn unknown_message_type_skipped() {
    let mut c = client();
    c.transport_mut()
        .before_reply
        .push_back(raw_msg(20, 1, 0, b"junk"));
    c.write(TxId::NONE, p("/a"), b"v").unwrap();
    assert_eq!(c.stats().unknown_types, 1);
}

#[test]
fn stray_replies_discarded_then_bounded() {
    let mut c = client();
    for _ in 0..3 {
        c.transport_mut()
            .before_reply
            .push_back(reply_bytes(&Reply::Ok, MsgType::Write, 999, 0));
    }
    c.write(TxId::NONE, p("/a"), b"v").unwrap();
    assert_eq!(
        c.stats(),
        ClientStats {
            stray_replies: 3,
            ..Default::default()
        }
    );
    for _ in 0..=MAX_STRAY_REPLIES {
        c.transport_mut()
            .before_reply
            .push_back(reply_bytes(&Reply::Ok, MsgType::Write, 999, 0));
    }
    assert_eq!(
        c.write(TxId::NONE, p("/a"), b"v"),
        Err(Error::UnexpectedReply)
    );
}

#[test]
fn watch_fires_and_events_are_queued_during_calls() {
    let mut c = client();
    let w = c.watch(p("/local/domain/1/device")).unwrap();
    let mut buf = [0u8; 256];
    // The initial event.
    assert_eq!(
        c.poll_watch(w, &mut buf),
        Ok(Some(WatchEvent::Changed { len: 22 }))
    );
    assert_eq!(&buf[..22], b"/local/domain/1/device");
    assert_eq!(c.poll_watch(w, &mut buf), Ok(None));
    c.write(TxId::NONE, p("/local/domain/1/device/vif/0/state"), b"4")
        .unwrap();
    c.write(TxId::NONE, p("/elsewhere"), b"x").unwrap();
    let Some(WatchEvent::Changed { len }) = c.poll_watch(w, &mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(&buf[..len], b"/local/domain/1/device/vif/0/state");
    assert_eq!(c.poll_watch(w, &mut buf), Ok(None));
}

#[test]
fn wait_event_returns_the_watch() {
    let mut c = client();
    let w = c.watch(p("/a")).unwrap();
    let mut buf = [0u8; 64];
    assert!(c.poll_watch(w, &mut buf).unwrap().is_some());
    c.transport_mut()
        .push_inbound(&event_bytes("/a/b", b"xc0.1"));
    assert_eq!(c.wait_event(), Ok(w));
}

#[test]
fn unwatch_invalidates_handle_and_token() {
    let mut c = client();
    let w = c.watch(p("/a")).unwrap();
    c.unwatch(w).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(c.poll_watch(w, &mut buf), Err(Error::NoSuchWatch));
    assert_eq!(c.unwatch(w), Err(Error::NoSuchWatch));
    // An event with the old token arriving late matches nothing.
    c.transport_mut()
        .before_reply
        .push_back(event_bytes("/a", b"xc0.1"));
    c.write(TxId::NONE, p("/b"), b"").unwrap();
    // Two: the watch's initial firing (still unread when the watch was removed) and the late one.
    assert_eq!(c.stats().unmatched_events, 2);
    // The slot is reused with a new generation.
    let w2 = c.watch(p("/a")).unwrap();
    assert_eq!(w2.slot, w.slot);
    assert_ne!(w2.generation, w.generation);
}

#[test]
fn watch_table_full() {
    let mut c = client();
    for i in 0..4 {
        c.watch(p(&format!("/w{i}"))).unwrap();
    }
    assert_eq!(c.watch(p("/w4")), Err(Error::TooManyWatches));
}

#[test]
fn watch_flood_is_bounded() {
    let mut c = client();
    let w = c.watch(p("/local/domain/5")).unwrap();
    // A guest rewrites 10 000 distinct nodes under its home while dom0 waits on a reply.
    for i in 0..10_000 {
        c.transport_mut()
            .before_reply
            .push_back(event_bytes(&format!("/local/domain/5/n{i}"), b"xc0.1"));
    }
    c.write(TxId::NONE, p("/x"), b"").unwrap();
    let stats = c.watch_stats(w).unwrap();
    assert!(stats.dropped >= 10_000 - 4, "{stats:?}");
    let mut buf = [0u8; 256];
    // The consumer is told to rescan, once; nothing else is left.
    assert_eq!(c.poll_watch(w, &mut buf), Ok(Some(WatchEvent::Overflow)));
    assert_eq!(c.poll_watch(w, &mut buf), Ok(None));
}

#[test]
fn transaction_commits_writes() {
    let mut c = client();
    with_transaction(&mut c, 4, |s, tx| {
        s.write(tx, p("/dev/ring-ref"), b"9")?;
        s.write(tx, p("/dev/event-channel"), b"3")
    })
    .unwrap();
    assert_eq!(read_string(&mut c, "/dev/ring-ref").unwrap(), "9");
    assert_eq!(c.transport_mut().commits, 1);
}

#[test]
fn transaction_retried_on_eagain() {
    let mut c = client();
    c.transport_mut().eagain_commits = 2;
    let mut runs = 0;
    with_transaction(&mut c, 4, |s, tx| {
        runs += 1;
        s.write(tx, p("/k"), b"v")
    })
    .unwrap();
    assert_eq!(runs, 3);
    assert_eq!(read_string(&mut c, "/k").unwrap(), "v");
}

#[test]
fn transaction_eagain_storm_gives_up() {
    let mut c = client();
    c.transport_mut().eagain_commits = u32::MAX;
    let r = with_transaction(&mut c, 5, |s, tx| s.write(tx, p("/k"), b"v"));
    assert_eq!(r, Err(Error::TooManyRetries));
    assert_eq!(c.transport_mut().starts, 5);
    assert!(!c.transport_mut().nodes.contains_key("/k"));
    const { assert!(DEFAULT_TRANSACTION_ATTEMPTS > 1) };
}

#[test]
fn transaction_body_error_aborts() {
    let mut c = client();
    let r: Result<(), Error> = with_transaction(&mut c, 5, |s, tx| {
        s.write(tx, p("/k"), b"v")?;
        Err(Error::Daemon(Errno::Eacces))
    });
    assert_eq!(r, Err(Error::Daemon(Errno::Eacces)));
    assert_eq!(c.transport_mut().aborts, 1);
    assert!(!c.transport_mut().nodes.contains_key("/k"));
}

#[test]
fn directory_falls_back_to_parts() {
    let mut c = client();
    for i in 0..50 {
        c.write(TxId::NONE, p(&format!("/many/child-{i}")), b"")
            .unwrap();
    }
    c.transport_mut().directory_part_size = Some(40);
    let mut buf = [0u8; 2048];
    let names: Vec<&[u8]> = c
        .directory(TxId::NONE, p("/many"), &mut buf)
        .unwrap()
        .collect();
    assert_eq!(names.len(), 50);
    let parts = c
        .transport_mut()
        .requests
        .iter()
        .filter(|(t, _)| *t == MsgType::DirectoryPart)
        .count();
    assert!(parts > 5, "{parts}");
}

#[test]
fn transport_close_is_an_error_not_a_hang() {
    let mut c = client();
    c.transport_mut().replace_reply = Some(Vec::new());
    assert_eq!(c.write(TxId::NONE, p("/a"), b"v"), Err(Error::Transport));
}
