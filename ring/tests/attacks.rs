//! Attacks on the rings by a hostile peer, each test named for what it stops.
//!
//! The peer is played by the test itself, writing the shared page through `HostPages`'s
//! `poke_*` methods, exactly the way another domain could.

// The wire types below use `impl_slot!`; it must work in crates that forbid `unsafe`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use xen_ring::{
    impl_slot, BackRing, FrontRing, HostPages, Notify, RingError, RingIndex, SharedMemory,
    Violation, XsClient, XsServer, XS_RING_SIZE,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Req {
    id: u64,
    op: u32,
    arg: u32,
}
impl_slot!(Req { id, op, arg });

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Rsp {
    id: u64,
    status: i32,
    pad: u32,
}
impl_slot!(Rsp { id, status, pad });

type Mem = Arc<HostPages>;
type Front = FrontRing<Mem, Req, Rsp>;
type Back = BackRing<Mem, Req, Rsp>;

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

fn req(id: u64) -> Req {
    Req {
        id,
        op: 7,
        arg: id as u32 ^ 0x5a5a,
    }
}

fn rsp(id: u64) -> Rsp {
    Rsp {
        id,
        status: -(id as i32),
        pad: 0,
    }
}

fn ring_at(start: u32) -> (Front, Back, Mem) {
    let mem = HostPages::shared(1);
    let front = Front::init_at(mem.clone(), RingIndex::new(start)).unwrap();
    let back = Back::attach(mem.clone()).unwrap();
    (front, back, mem)
}

fn ring() -> (Front, Back, Mem) {
    ring_at(0)
}

/// Sends `n` requests from the front and consumes them on the back.
fn send(front: &mut Front, back: &mut Back, ids: std::ops::Range<u64>) {
    for id in ids.clone() {
        front.queue_request(&req(id)).unwrap();
    }
    let _ = front.push_requests().unwrap();
    for id in ids {
        assert_eq!(back.next_request().unwrap(), Some(req(id)));
    }
}

fn broken(result: Result<impl std::fmt::Debug, RingError>) -> Violation {
    match result {
        Err(RingError::Broken(v)) => v,
        other => panic!("expected a broken ring, got {other:?}"),
    }
}

#[test]
fn rejects_producer_overflow_from_front() {
    let (_front, mut back, mem) = ring();
    let entries = back.entries();
    assert_eq!(entries, 128);
    // A full ring is fine...
    mem.poke_u32(REQ_PROD, entries);
    assert_eq!(back.requests(u32::MAX).unwrap().count(), 128);
    // ...one more than the ring holds, counted from the oldest unanswered request, is not,
    // even though only one request is unconsumed (RING_REQUEST_PROD_OVERFLOW).
    mem.poke_u32(REQ_PROD, entries + 1);
    assert_eq!(
        broken(back.next_request()),
        Violation::ProducerOverflow {
            prod: RingIndex::new(entries + 1),
            cons: RingIndex::new(entries)
        }
    );
}

#[test]
fn rejects_producer_overflow_before_reading_a_slot() {
    for huge in [129, 0x8000_0000, u32::MAX - 200] {
        let (_front, mut back, mem) = ring();
        mem.poke_u32(REQ_PROD, huge);
        assert!(matches!(
            broken(back.requests(8).map(|b| b.count())),
            Violation::ProducerOverflow { .. }
        ));
    }
}

#[test]
fn rejects_producer_overflow_from_back() {
    let (mut front, mut back, mem) = ring();
    send(&mut front, &mut back, 0..3);
    // Three requests were sent: four responses are one too many.
    mem.poke_u32(RSP_PROD, 4);
    assert_eq!(
        broken(front.next_response()),
        Violation::ProducerOverflow {
            prod: RingIndex::new(4),
            cons: RingIndex::new(0)
        }
    );
}

#[test]
fn rejects_responses_to_queued_but_unpublished_requests() {
    let (mut front, _back, mem) = ring();
    front.queue_request(&req(1)).unwrap();
    // The request sits in its slot but was never pushed: the back cannot have seen it.
    mem.poke_u32(RSP_PROD, 1);
    assert!(matches!(
        broken(front.final_check_for_responses()),
        Violation::ProducerOverflow { .. }
    ));
}

#[test]
fn consumer_past_producer() {
    // Back: the front moves req_prod back below what the back already consumed.
    let (mut front, mut back, mem) = ring();
    send(&mut front, &mut back, 0..5);
    mem.poke_u32(REQ_PROD, 3);
    assert_eq!(
        broken(back.next_request()),
        Violation::ConsumerPastProducer {
            prod: RingIndex::new(3),
            cons: RingIndex::new(5)
        }
    );

    // Front: the back moves rsp_prod back below what the front already consumed.
    let (mut front, mut back, mem) = ring();
    send(&mut front, &mut back, 0..5);
    for id in 0..5 {
        back.queue_response(&rsp(id)).unwrap();
    }
    let _ = back.push_responses().unwrap();
    for _ in 0..4 {
        front.next_response().unwrap().unwrap();
    }
    mem.poke_u32(RSP_PROD, 2);
    assert_eq!(
        front.next_response(),
        Ok(Some(rsp(4))),
        "the batch was already validated"
    );
    assert_eq!(
        broken(front.next_response()),
        Violation::ConsumerPastProducer {
            prod: RingIndex::new(2),
            cons: RingIndex::new(5)
        }
    );
}

#[test]
fn back_cannot_answer_unconsumed_requests() {
    let (mut front, mut back, _mem) = ring();
    assert_eq!(
        back.queue_response(&rsp(0)),
        Err(RingError::NoRequestToAnswer)
    );
    send(&mut front, &mut back, 0..1);
    back.queue_response(&rsp(0)).unwrap();
    assert_eq!(
        back.queue_response(&rsp(1)),
        Err(RingError::NoRequestToAnswer)
    );
    // A caller mistake is not a peer violation: the ring still works.
    assert_eq!(back.broken(), None);
    assert_eq!(back.push_responses(), Ok(Notify::Yes));
    assert_eq!(front.next_response(), Ok(Some(rsp(0))));
}

#[test]
fn front_cannot_overfill_the_ring() {
    let (mut front, mut back, _mem) = ring();
    for id in 0..128 {
        assert_eq!(front.free_requests(), 128 - id as u32);
        front.queue_request(&req(id)).unwrap();
    }
    assert!(front.is_full());
    assert_eq!(front.queue_request(&req(128)), Err(RingError::Full));
    let _ = front.push_requests().unwrap();
    // Consuming requests frees nothing: only consumed *responses* free slots.
    assert_eq!(back.requests(u32::MAX).unwrap().count(), 128);
    assert!(front.is_full());
    back.queue_response(&rsp(0)).unwrap();
    let _ = back.push_responses().unwrap();
    assert_eq!(front.next_response(), Ok(Some(rsp(0))));
    assert_eq!(front.free_requests(), 1);
}

#[test]
fn index_wrap_at_2_pow_32() {
    let start = u32::MAX - 5;
    let (mut front, mut back, mem) = ring_at(start);
    let mut next_id = 0;
    // Three laps of the ring in uneven batches, crossing 2^32 on the way.
    while next_id < 3 * 128 {
        let batch = 1 + next_id % 37;
        for id in next_id..next_id + batch {
            front.queue_request(&req(id)).unwrap();
        }
        let _ = front.push_requests().unwrap();
        let got: Vec<Req> = back.requests(u32::MAX).unwrap().collect();
        assert_eq!(got, (next_id..next_id + batch).map(req).collect::<Vec<_>>());
        for r in &got {
            back.queue_response(&rsp(r.id)).unwrap();
        }
        let _ = back.push_responses().unwrap();
        let got: Vec<Rsp> = front.responses(u32::MAX).unwrap().collect();
        assert_eq!(got, (next_id..next_id + batch).map(rsp).collect::<Vec<_>>());
        assert_eq!(front.free_requests(), 128);
        next_id += batch;
    }
    let published = mem.peek_u32(REQ_PROD);
    assert_eq!(published, start.wrapping_add(next_id as u32));
    assert!(published < start, "the indices wrapped");
    assert_eq!(mem.peek_u32(RSP_PROD), published);
}

#[test]
fn notify_hold_off_across_the_wrap() {
    let (mut front, mut back, _mem) = ring_at(u32::MAX);
    // Fresh ring: req_event = start + 1, so the first request needs an event.
    front.queue_request(&req(0)).unwrap();
    assert_eq!(front.push_requests(), Ok(Notify::Yes));
    // The back has not re-armed: further requests need none.
    front.queue_request(&req(1)).unwrap();
    assert_eq!(front.push_requests(), Ok(Notify::No));
    // An empty push never notifies.
    assert_eq!(front.push_requests(), Ok(Notify::No));
    assert_eq!(back.requests(u32::MAX).unwrap().count(), 2);
    // The back re-arms (nothing pending), and the next request needs an event again.
    assert_eq!(back.final_check_for_requests(), Ok(false));
    front.queue_request(&req(2)).unwrap();
    assert_eq!(front.push_requests(), Ok(Notify::Yes));
    // A final check with work pending does not re-arm.
    assert_eq!(back.final_check_for_requests(), Ok(true));
    front.queue_request(&req(3)).unwrap();
    assert_eq!(front.push_requests(), Ok(Notify::No));
}

#[test]
fn slot_rewritten_by_peer_after_publish() {
    let (mut front, mut back, mem) = ring();
    front.queue_request(&req(42)).unwrap();
    let _ = front.push_requests().unwrap();
    let got = back.next_request().unwrap().unwrap();
    // The front rewrites the slot (and again, and again) after the back took its copy.
    for byte in [0x00, 0xff, 0x42] {
        mem.poke_bytes(64, &[byte; 16]);
        assert_eq!(got, req(42), "the copy is ours; the slot is not read again");
    }
    // There is no second read of that slot: the next request is the next slot.
    assert_eq!(back.next_request(), Ok(None));

    // Same from the front: a response rewritten after it was consumed changes nothing held.
    back.queue_response(&rsp(42)).unwrap();
    let _ = back.push_responses().unwrap();
    let got = front.next_response().unwrap().unwrap();
    mem.poke_bytes(64, &[0xee; 16]);
    assert_eq!(got, rsp(42));
    assert_eq!(front.next_response(), Ok(None));
}

#[test]
fn broken_ring_is_sticky() {
    let (mut front, mut back, mem) = ring();
    send(&mut front, &mut back, 0..2);
    mem.poke_u32(REQ_PROD, 1000);
    let v = broken(back.next_request());
    // The front "repairs" the index: the back stays broken, every call says why.
    mem.poke_u32(REQ_PROD, 2);
    assert_eq!(back.broken(), Some(v));
    assert_eq!(back.next_request(), Err(RingError::Broken(v)));
    assert_eq!(back.requests(4).err(), Some(RingError::Broken(v)));
    assert_eq!(back.queue_response(&rsp(0)), Err(RingError::Broken(v)));
    assert_eq!(back.push_responses(), Err(RingError::Broken(v)));
    assert_eq!(back.final_check_for_requests(), Err(RingError::Broken(v)));
    // A broken back writes nothing more to the page.
    assert_eq!(mem.peek_u32(RSP_PROD), 0);

    mem.poke_u32(RSP_PROD, 77);
    let v = broken(front.next_response());
    mem.poke_u32(RSP_PROD, 0);
    assert_eq!(front.broken(), Some(v));
    assert_eq!(front.next_response(), Err(RingError::Broken(v)));
    assert_eq!(front.responses(4).err(), Some(RingError::Broken(v)));
    assert_eq!(front.queue_request(&req(9)), Err(RingError::Broken(v)));
    assert_eq!(front.push_requests(), Err(RingError::Broken(v)));
    assert_eq!(front.final_check_for_responses(), Err(RingError::Broken(v)));
    assert_eq!(mem.peek_u32(REQ_PROD), 2);
}

#[test]
fn attach_rejects_an_inconsistent_ring() {
    let mem = HostPages::shared(1);
    let _front = Front::init(mem.clone()).unwrap();
    mem.poke_u32(REQ_PROD, 129);
    assert!(matches!(
        Back::attach(mem.clone()).err(),
        Some(RingError::Broken(Violation::ProducerOverflow { .. }))
    ));
    // After a reconnect the back takes the indices it finds.
    mem.poke_u32(RSP_PROD, 1000);
    mem.poke_u32(REQ_PROD, 1003);
    let mut back = Back::attach(mem.clone()).unwrap();
    assert_eq!(back.requests(u32::MAX).unwrap().count(), 3);
}

#[test]
fn budgeted_consumer_returns_under_a_request_flood() {
    // The front keeps the ring full for ever, as fast as the back answers.
    let (_front, mut back, mem) = ring();
    let budget = 16;
    for round in 0..100u32 {
        // Hostile but in-protocol: every answered slot is refilled at once.
        let answered = mem.peek_u32(RSP_PROD);
        mem.poke_u32(REQ_PROD, answered.wrapping_add(128));
        let mut served = 0;
        let mut batch = back.requests(budget).unwrap();
        while let Some(r) = batch.next() {
            batch.queue_response(&rsp(r.id)).unwrap();
            served += 1;
        }
        assert_eq!(served, budget, "round {round}: a batch stops at the budget");
        let _ = back.push_responses().unwrap();
    }
    // A batch is fixed when it starts: more published meanwhile waits for the next batch.
    let (mut front, mut back, mem) = ring();
    send(&mut front, &mut back, 0..0);
    for id in 0..2 {
        front.queue_request(&req(id)).unwrap();
    }
    let _ = front.push_requests().unwrap();
    let mut batch = back.requests(u32::MAX).unwrap();
    assert_eq!(batch.next(), Some(req(0)));
    mem.poke_u32(REQ_PROD, 100);
    assert_eq!(batch.next(), Some(req(1)));
    assert_eq!(batch.next(), None);
}

#[test]
fn init_leaves_nothing_but_the_header() {
    let mem = HostPages::shared(4);
    mem.poke_bytes(0, &vec![0xaa; mem.len()]);
    let _front = FrontRing::<_, Req, Rsp>::init(mem.clone()).unwrap();
    let bytes = mem.to_vec();
    let mut expected = vec![0; bytes.len()];
    expected[REQ_EVENT..REQ_EVENT + 4].copy_from_slice(&1u32.to_ne_bytes());
    expected[RSP_EVENT..RSP_EVENT + 4].copy_from_slice(&1u32.to_ne_bytes());
    assert_eq!(
        bytes, expected,
        "stale bytes would leak to the back (XSA-403)"
    );
}

#[test]
fn rejects_bad_geometry() {
    assert!(matches!(
        Front::init(HostPages::shared(3)).err(),
        Some(RingError::Geometry(xen_ring::GeometryError::BadLength(
            12288
        )))
    ));
    assert!(Front::init(HostPages::shared(32)).is_err());
    assert_eq!(Front::init(HostPages::shared(16)).unwrap().entries(), 2048);
}

// The byte ring (xs_wire.h).

const XS_REQ_CONS: usize = 2048;
const XS_REQ_PROD: usize = 2052;
const XS_RSP_CONS: usize = 2056;
const XS_RSP_PROD: usize = 2060;

fn xs_pair() -> (XsClient<Mem>, XsServer<Mem>, Mem) {
    let mem = HostPages::shared(1);
    let server = XsServer::init(mem.clone()).unwrap();
    let client = XsClient::attach(mem.clone()).unwrap();
    (client, server, mem)
}

#[test]
fn xs_stream_round_trip_across_the_wrap() {
    let mem = HostPages::shared(1);
    for off in [XS_REQ_CONS, XS_REQ_PROD, XS_RSP_CONS, XS_RSP_PROD] {
        mem.poke_u32(off, u32::MAX - 700);
    }
    let mut client = XsClient::attach(mem.clone()).unwrap();
    let mut server = XsServer::attach(mem.clone()).unwrap();
    let message: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let (mut sent, mut received) = (0, Vec::new());
    let mut buf = [0u8; 300];
    while received.len() < message.len() {
        sent += client.write(&message[sent..]).unwrap();
        let n = server.read(&mut buf).unwrap();
        assert!(server.write(&buf[..n]).unwrap() == n);
        let n = client.read(&mut buf).unwrap();
        received.extend_from_slice(&buf[..n]);
    }
    assert_eq!(received, message);
    assert!(mem.peek_u32(XS_REQ_PROD) < 5000, "the indices wrapped");
}

#[test]
fn xs_writes_stop_when_the_buffer_is_full() {
    let (mut client, mut server, _mem) = xs_pair();
    assert_eq!(client.write(&[1; 1000]), Ok(1000));
    assert_eq!(client.write(&[2; 1000]), Ok(24));
    assert_eq!(client.write(&[3; 1]), Ok(0));
    let mut buf = [0; 2048];
    assert_eq!(server.read(&mut buf), Ok(1024));
    assert_eq!(client.writable(), Ok(XS_RING_SIZE as usize));
}

#[test]
fn xs_rejects_producer_overflow() {
    // The server claims more response bytes than the buffer holds.
    let (mut client, _server, mem) = xs_pair();
    mem.poke_u32(XS_RSP_PROD, 1025);
    let mut buf = [0; 64];
    assert!(matches!(
        broken(client.read(&mut buf)),
        Violation::ProducerOverflow { .. }
    ));
    assert_eq!(buf, [0; 64], "nothing was copied");
    // The client claims more request bytes than the buffer holds.
    let (_client, mut server, mem) = xs_pair();
    mem.poke_u32(XS_REQ_PROD, 0x8000_0000);
    assert!(matches!(
        broken(server.read(&mut buf)),
        Violation::ProducerOverflow { .. }
    ));
}

#[test]
fn xs_rejects_consumer_past_producer() {
    // The server's consumer index runs past what the client produced.
    let (mut client, _server, mem) = xs_pair();
    assert_eq!(client.write(b"hello"), Ok(5));
    mem.poke_u32(XS_REQ_CONS, 9);
    assert!(matches!(
        broken(client.write(b"world")),
        Violation::ConsumerPastProducer { .. }
    ));
    // The client's response consumer runs past the server's producer.
    let (_client, mut server, mem) = xs_pair();
    mem.poke_u32(XS_RSP_CONS, 1);
    assert!(matches!(
        broken(server.write(b"x")),
        Violation::ConsumerPastProducer { .. }
    ));
    // The client moves its producer back below what the server consumed.
    let (mut client, mut server, mem) = xs_pair();
    assert_eq!(client.write(b"abc"), Ok(3));
    assert_eq!(server.read(&mut [0; 3]), Ok(3));
    mem.poke_u32(XS_REQ_PROD, 1);
    assert!(matches!(
        broken(server.readable()),
        Violation::ConsumerPastProducer { .. }
    ));
}

#[test]
fn xs_broken_ring_is_sticky() {
    let (mut client, _server, mem) = xs_pair();
    mem.poke_u32(XS_RSP_PROD, 5000);
    let v = broken(client.readable());
    mem.poke_u32(XS_RSP_PROD, 0);
    assert_eq!(client.broken(), Some(v));
    assert_eq!(client.read(&mut [0; 4]), Err(RingError::Broken(v)));
    assert_eq!(client.write(b"x"), Err(RingError::Broken(v)));
    assert_eq!(
        mem.peek_u32(XS_REQ_PROD),
        0,
        "a broken client writes nothing"
    );
}

#[test]
fn xs_attach_rejects_an_inconsistent_page() {
    let mem = HostPages::shared(1);
    mem.poke_u32(XS_RSP_PROD, 2000);
    assert!(XsClient::attach(mem.clone()).is_err());
    assert!(XsServer::attach(mem.clone()).is_err());
    mem.poke_u32(XS_RSP_PROD, 0);
    mem.poke_u32(XS_REQ_PROD, 2000);
    assert!(XsClient::attach(mem.clone()).is_err());
    assert!(XsServer::attach(mem.clone()).is_err());
    mem.poke_u32(XS_REQ_PROD, 1024);
    assert!(
        XsServer::attach(mem.clone()).is_ok(),
        "a full buffer is fine"
    );
}

#[test]
fn xs_server_fields() {
    let (client, server, _mem) = xs_pair();
    server.set_server_features(xen_ring::ServerFeatures::ERROR);
    server.set_error(xen_ring::XsErrorCode::RINGIDX);
    assert!(client
        .server_features()
        .contains(xen_ring::ServerFeatures::ERROR));
    assert_eq!(client.error(), xen_ring::XsErrorCode::RINGIDX);
    assert_eq!(client.connection(), xen_ring::Connection::CONNECTED);
}
