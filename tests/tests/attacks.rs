//! Tests named for the attacks they stop, against the simulator and the echo engines.
//!
//! Each test first checks that the hostile act really happened (the flood was delivered,
//! the map really failed, the slot really changed...), so that none can pass vacuously.

mod echo_harness;

use echo_harness::{BackThread, FrontDriver, SimClient};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xen_core::xs::{
    with_transaction, Client, Errno, Error as XsError, Path, TxId, WatchEvent, XsTransport,
};
use xen_echo::store::Dir;
use xen_echo::{
    checksum, BackConfig, EchoBack, EchoFront, EchoRequest, Error, FrontConfig, Op, RequestWire,
    ResponseFault, ResponseWire, Status,
};
use xen_ring::{BackRing, FrontRing, RingError, Violation};
use xen_sim::toolstack::add_device;
use xen_sim::xenstored::EVENTS_PER_CONN;
use xen_sim::{Domain, MapOp, Mapping, Pages, Sim, XsConnection};
use xen_sys::{DomId, GrantRef, Port, XenbusState};

const D0: DomId = DomId::DOM0;
const D1: DomId = DomId::new(1);
/// Offsets in an `io/ring.h` page.
const REQ_PROD: usize = 0;
const RSP_PROD: usize = 8;
const SLOTS_AT: usize = 64;
const SLOT_SIZE: usize = 24;

fn p(s: &str) -> Path<'_> {
    Path::new(s).unwrap()
}

/// Front and back engines in one thread, stepped by hand: every interleaving is chosen.
struct Pair {
    sim: Sim,
    d0: Domain,
    d1: Domain,
    fxs: SimClient<XsConnection>,
    bxs: SimClient<XsConnection>,
    front: EchoFront<Domain, 8>,
    back: EchoBack<Domain>,
}

impl Pair {
    fn new(front: FrontConfig, back: BackConfig) -> Pair {
        let sim = Sim::new();
        let d1 = sim.create_domain(1);
        let d0 = sim.domain(0);
        let paths = add_device(&sim, "echo", D1, D0, 0).unwrap();
        let mut pair = Pair {
            fxs: SimClient::new(d1.xenstore()),
            bxs: SimClient::new(d0.xenstore()),
            front: EchoFront::new(
                d1.clone(),
                Dir::try_from_str(&paths.frontend).unwrap(),
                front,
            ),
            back: EchoBack::new(d0.clone(), Dir::try_from_str(&paths.backend).unwrap(), back),
            sim,
            d0,
            d1,
        };
        pair.back.start(&mut pair.bxs).unwrap();
        pair.front.start(&mut pair.fxs).unwrap();
        pair.settle();
        pair
    }

    /// Lets both ends react to XenStore until nothing changes.
    fn settle(&mut self) {
        for _ in 0..50 {
            let before = (self.front.state(), self.back.state());
            let _ = self.back.on_xenstore(&mut self.bxs);
            let _ = self.front.on_xenstore(&mut self.fxs);
            if before == (self.front.state(), self.back.state()) {
                break;
            }
        }
    }

    fn connected(&self) -> bool {
        self.front.is_connected() && self.back.is_connected()
    }

    /// The request in ring slot `index`, as the back will see it.
    fn ring_slot(&self, index: usize) -> RequestWire {
        let mut raw = [0u8; SLOT_SIZE];
        self.front
            .ring_memory()
            .unwrap()
            .read(SLOTS_AT + index * SLOT_SIZE, &mut raw);
        let u32_at = |o: usize| u32::from_ne_bytes(raw[o..o + 4].try_into().unwrap());
        let u16_at = |o: usize| u16::from_ne_bytes(raw[o..o + 2].try_into().unwrap());
        RequestWire {
            id: u64::from_ne_bytes(raw[0..8].try_into().unwrap()),
            gref: u32_at(8),
            rsp_gref: u32_at(12),
            offset: u16_at(16),
            len: u16_at(18),
            op: raw[20],
            pad: [raw[21], raw[22], raw[23]],
        }
    }

    fn front_events(&mut self) -> (Vec<xen_echo::Completion>, Result<(), Error>) {
        let mut done = Vec::new();
        let r = self.front.handle_event(|c| done.push(c)).map(|_| ());
        (done, r)
    }
}

#[test]
fn watch_flood_is_bounded() {
    let sim = Sim::new();
    let flooder = sim.create_domain(1);
    // Dom0's toolstack watches the guest's data directory, as xenstored clients do.
    let mut watcher = Client::<_, 4, 8>::new(sim.domain(0).xenstore());
    let w = watcher.watch(p("/local/domain/1/data")).unwrap();
    let mut buf = [0u8; 128];
    assert!(
        watcher.poll_watch(w, &mut buf).unwrap().is_some(),
        "the initial event"
    );
    let conn_events = |c: &mut Client<XsConnection, 4, 8>| c.transport_mut().queued_events();
    // The guest writes 5000 times under the watched path without pause (900 distinct nodes:
    // its node quota is 1000).
    let mut xs = Client::<_>::new(flooder.xenstore());
    for i in 0..5000 {
        let path = format!("/local/domain/1/data/n{}", i % 900);
        xs.write(TxId::NONE, p(&path), b"x").unwrap();
        assert!(conn_events(&mut watcher) <= EVENTS_PER_CONN);
    }
    let stats = sim.xenstored_stats();
    assert!(
        stats.watch_events >= EVENTS_PER_CONN as u64,
        "the flood reached xenstored"
    );
    assert!(
        stats.watch_events_dropped >= 5000 - EVENTS_PER_CONN as u64,
        "{stats:?}"
    );
    assert_eq!(stats.max_queued_events, EVENTS_PER_CONN as u64);
    // The watcher's own queue is bounded too: at most 8 paths, then one overflow report.
    let mut seen = 0;
    let mut overflow = false;
    while let Some(ev) = watcher.poll_watch(w, &mut buf).unwrap() {
        seen += 1;
        overflow |= ev == WatchEvent::Overflow;
        assert!(seen <= 9, "the client queue is bounded");
    }
    assert!(
        overflow,
        "lost events are reported as an overflow, not silently"
    );
    assert!(watcher.watch_stats(w).unwrap().dropped > 0);
    // After the flood the watch still works.
    sim.xs_write("/local/domain/1/data/after", b"1").unwrap();
    let Some(WatchEvent::Changed { len }) = watcher.poll_watch(w, &mut buf).unwrap() else {
        panic!("the watch is dead after a flood");
    };
    assert_eq!(&buf[..len], b"/local/domain/1/data/after");
}

#[test]
fn event_storm_is_throttled() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let paths = add_device(&sim, "echo", D1, D0, 0).unwrap();
    let back = BackThread::spawn(&sim, D0, &paths.backend, BackConfig::default());
    let mut f = FrontDriver::<_, 8>::new(
        d1.clone(),
        d1.xenstore(),
        &paths.frontend,
        FrontConfig::default(),
    );
    f.front.start(&mut f.xs).unwrap();
    assert!(f
        .pump_until(Duration::from_secs(10), |fr| fr.is_connected())
        .unwrap());
    // A hostile front notifies its port in a loop, flooding the back's port.
    let port = f.front.port().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (d1, stop, sent) = (d1.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                d1.notify(port).unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Meanwhile real requests keep flowing, one every 20 ms: the back stays responsive.
    let mut worst = Duration::ZERO;
    let mut done = 0;
    for _ in 0..20 {
        let t = Instant::now();
        f.front
            .submit(&EchoRequest::Checksum {
                offset: 0,
                data: b"still here",
            })
            .unwrap();
        f.front.push().unwrap();
        let target = done + 1;
        while done < target {
            f.pump(Duration::from_millis(50), |c| {
                assert!(c.verified);
                done += 1;
            })
            .unwrap();
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "the back stopped answering"
            );
        }
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let report = back.stop();
    let sent = sent.load(Ordering::Relaxed);
    println!("storm: {sent} notifications, {} handler runs, {} throttled, max delay {:?}, worst latency {worst:?}, {done} requests",
        report.events, report.throttled, report.max_delay);
    assert!(sent > 20_000, "the flood was real: {sent}");
    assert_eq!(done, 20, "requests kept completing during the storm");
    assert!(report.throttled > 0, "the throttle never engaged");
    assert!(
        report.max_delay >= Duration::from_millis(2),
        "delays grew: {:?}",
        report.max_delay
    );
    assert!(
        report.events < sent / 50,
        "the handler ran for most of the flood: {} of {sent}",
        report.events
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn failed_grant_map_on_one_slot() {
    let mut pair = Pair::new(FrontConfig::default(), BackConfig::default());
    assert!(pair.connected());
    let data = [0x5au8; 100];
    pair.front
        .submit(&EchoRequest::Complement {
            offset: 10,
            data: &data,
        })
        .unwrap();
    pair.front.push().unwrap();
    // Fail the second slot of the back's batch (the response page) once.
    let wire = pair.ring_slot(0);
    assert_eq!(wire.op, u8::from(Op::Complement));
    pair.sim.fail_map(D1, GrantRef::new(wire.rsp_gref), 1);
    let ring_maps = pair.sim.grant_stats().live_maps;
    let p = pair.back.handle_event().unwrap();
    assert_eq!(p.done, 1);
    let g = pair.sim.grant_stats();
    assert_eq!(g.map_failures, 1, "the map really failed");
    assert_eq!(g.live_maps, ring_maps, "the slot that did map was unmapped");
    assert_eq!(pair.back.stats().map_failures, 1);
    let (done, r) = pair.front_events();
    r.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, Status::Error);
    assert!(!done[0].verified);
    // The same slot works again.
    pair.front
        .submit(&EchoRequest::Complement {
            offset: 10,
            data: &data,
        })
        .unwrap();
    pair.front.push().unwrap();
    pair.back.handle_event().unwrap();
    let (done, r) = pair.front_events();
    r.unwrap();
    assert_eq!((done[0].status, done[0].verified), (Status::Okay, true));
    assert!(
        pair.back.is_connected(),
        "a map failure costs a request, not the device"
    );
}

#[test]
fn page_still_mapped_at_free_time() {
    let mut pair = Pair::new(FrontConfig::default(), BackConfig::default());
    pair.front
        .submit(&EchoRequest::Checksum {
            offset: 0,
            data: b"keep me",
        })
        .unwrap();
    pair.front.push().unwrap();
    let wire = pair.ring_slot(0);
    // A back (dom0) that keeps the data page mapped after the device closes.
    let held: Mapping = pair
        .d0
        .map_grants(&[MapOp {
            granter: D1,
            gref: GrantRef::new(wire.gref),
            writable: false,
        }])
        .pop()
        .unwrap()
        .unwrap();
    pair.back.handle_event().unwrap();
    let (done, r) = pair.front_events();
    r.unwrap();
    assert!(done[0].verified);
    pair.front.close(&mut pair.fxs).unwrap();
    pair.settle();
    assert_eq!(
        (pair.front.state(), pair.back.state()),
        (XenbusState::Closed, XenbusState::Closed)
    );
    let g = pair.sim.grant_stats();
    assert!(
        g.end_access_busy >= 1,
        "the front really tried to revoke a mapped grant"
    );
    assert_eq!(
        (g.freed_while_granted, g.freed_while_mapped),
        (0, 0),
        "{g:?}"
    );
    assert_eq!(
        pair.d1.deferred_frees(),
        1,
        "the page waits instead of being freed"
    );
    assert_eq!(pair.sim.live_grants(D1), 1);
    let mut peek = [0u8; 7];
    assert!(held.read(0, &mut peek));
    assert_eq!(&peek, b"keep me", "the page the back maps is intact");
    // Once the back lets go, the deferred free completes.
    drop(held);
    pair.d1.retry_deferred();
    assert_eq!(pair.d1.deferred_frees(), 0);
    let g = pair.sim.grant_stats();
    assert_eq!(
        (g.live_grants, g.live_maps, g.freed_while_mapped),
        (0, 0, 0),
        "{g:?}"
    );
}

#[test]
fn oversized_xenstore_payload() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    // The client refuses to send one: nothing reaches xenstored.
    let mut xs = Client::<_>::new(d1.xenstore());
    let before = sim.xenstored_stats().requests;
    let huge = vec![b'x'; 5000];
    assert!(xs.write(TxId::NONE, p("data/big"), &huge).is_err());
    assert_eq!(sim.xenstored_stats().requests, before);
    // A value xenstored takes on the wire but over the per-domain quota is refused.
    let big = vec![b'x'; 3000];
    assert_eq!(
        xs.write(TxId::NONE, p("data/big"), &big),
        Err(XsError::Daemon(Errno::Enospc))
    );
    // A hand-made header announcing 4097 bytes: xenstored drops the connection.
    let mut raw = d1.xenstore();
    let mut header = [0u8; 16];
    header[0..4].copy_from_slice(&11u32.to_le_bytes()); // XS_WRITE
    header[12..16].copy_from_slice(&4097u32.to_le_bytes());
    assert!(
        raw.send(&header).is_err(),
        "the connection is closed at once"
    );
    assert!(raw.is_closed());
    assert_eq!(sim.xenstored_stats().oversized, 1);
    let mut buf = [0u8; 16];
    assert_eq!(raw.recv(&mut buf), Ok(0), "the stream is closed, not hung");
    // Over the ring, the daemon flags the page (XENSTORE_ERROR_PROTO) and stops serving.
    let mut ring = d1.xenstore_ring();
    ring.set_timeout(Duration::from_millis(200));
    ring.send(&header).unwrap();
    let t = Instant::now();
    while ring.error() != xen_ring::XsErrorCode::PROTO {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the daemon never flagged the ring"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(sim.xenstored_stats().oversized, 2);
    // Other connections are unaffected.
    xs.write(TxId::NONE, p("data/ok"), b"1").unwrap();
}

#[test]
fn transaction_eagain_storm() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let mut xs = Client::<_>::new(d1.xenstore());
    // A storm longer than the retry bound: the loop gives up after exactly the bound.
    sim.inject_eagain(1000);
    let mut bodies = 0;
    let r = with_transaction(&mut xs, 32, |xs, tx| {
        bodies += 1;
        xs.write(tx, p("data/x"), b"1")
    });
    assert_eq!(r, Err(XsError::TooManyRetries));
    assert_eq!((bodies, sim.xenstored_stats().eagain), (32, 32));
    assert!(sim.xs_read("/local/domain/1/data/x").is_none());
    // A shorter storm is ridden out.
    sim.inject_eagain(5);
    with_transaction(&mut xs, 32, |xs, tx| xs.write(tx, p("data/x"), b"2")).unwrap();
    assert_eq!(sim.xs_read("/local/domain/1/data/x").unwrap(), b"2");
    assert_eq!(sim.xenstored_stats().eagain, 37);
    // The echo handshake survives a storm within its bound (8 attempts per transaction).
    sim.inject_eagain(0);
    let mut pair = Pair::new(FrontConfig::default(), BackConfig::default());
    assert!(pair.connected());
    pair.front.close(&mut pair.fxs).unwrap();
    pair.settle();
    pair.sim.inject_eagain(7);
    pair.front.start(&mut pair.fxs).unwrap();
    pair.settle();
    assert!(pair.connected(), "7 EAGAINs in a row are retried");
    assert_eq!(pair.sim.xenstored_stats().eagain, 7);
    // ... and fails cleanly beyond it: no panic, no leak, a closed device.
    pair.front.close(&mut pair.fxs).unwrap();
    pair.settle();
    pair.sim.inject_eagain(100);
    pair.front.start(&mut pair.fxs).unwrap();
    pair.settle();
    assert!(!pair.connected());
    pair.sim.inject_eagain(0);
    pair.front.stop(&mut pair.fxs).unwrap();
    pair.back.stop(&mut pair.bxs).unwrap();
    let g = pair.sim.grant_stats();
    assert_eq!((g.live_grants, g.live_maps), (0, 0), "{g:?}");
}

/// A hostile front: it sets up a one-page ring by hand and then writes what it likes.
struct RawFront {
    ring: FrontRing<Arc<Pages>, RequestWire, ResponseWire>,
    pages: Arc<Pages>,
    port: Port,
    data: Pages,
    data_gref: GrantRef,
}

fn hostile_front() -> (
    Sim,
    Domain,
    SimClient<XsConnection>,
    EchoBack<Domain>,
    RawFront,
) {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let d0 = sim.domain(0);
    let paths = add_device(&sim, "echo", D1, D0, 0).unwrap();
    let mut bxs = SimClient::new(d0.xenstore());
    let mut back = EchoBack::new(
        d0,
        Dir::try_from_str(&paths.backend).unwrap(),
        BackConfig::default(),
    );
    back.start(&mut bxs).unwrap();
    let pages = Arc::new(d1.alloc_pages(1));
    let ring = FrontRing::init(pages.clone()).unwrap();
    let gref = d1.grant_access(D0, pages.frame(0).unwrap(), false).unwrap();
    let port = d1.alloc_unbound(D0).unwrap();
    let data = d1.alloc_pages(1);
    data.write(0, &[7u8; 4096]);
    let data_gref = d1.grant_access(D0, data.frame(0).unwrap(), true).unwrap();
    let key = |k: &str| format!("{}/{k}", paths.frontend);
    sim.xs_write_as(D1, &key("ring-ref"), gref.raw().to_string().as_bytes())
        .unwrap();
    sim.xs_write_as(D1, &key("event-channel"), port.raw().to_string().as_bytes())
        .unwrap();
    sim.xs_write_as(D1, &key("state"), b"3").unwrap();
    for _ in 0..5 {
        back.on_xenstore(&mut bxs).unwrap();
    }
    assert!(back.is_connected());
    let raw = RawFront {
        ring,
        pages,
        port,
        data,
        data_gref,
    };
    (sim, d1, bxs, back, raw)
}

fn checksum_request(id: u64, gref: GrantRef, offset: u16, len: u16) -> RequestWire {
    RequestWire {
        id,
        gref: gref.raw(),
        rsp_gref: 0,
        offset,
        len,
        op: Op::Checksum.into(),
        pad: [0; 3],
    }
}

#[test]
fn slot_rewritten_after_publish() {
    let (_sim, d1, _bxs, mut back, mut raw) = hostile_front();
    let good = checksum_request(1, raw.data_gref, 0, 16);
    // The evil twin: an extent that would read far past the page if it were ever used.
    let evil = checksum_request(1, raw.data_gref, 4000, 4000);
    let as_bytes = |w: &RequestWire| {
        let mut b = [0u8; SLOT_SIZE];
        b[0..8].copy_from_slice(&w.id.to_ne_bytes());
        b[8..12].copy_from_slice(&w.gref.to_ne_bytes());
        b[12..16].copy_from_slice(&w.rsp_gref.to_ne_bytes());
        b[16..18].copy_from_slice(&w.offset.to_ne_bytes());
        b[18..20].copy_from_slice(&w.len.to_ne_bytes());
        b[20] = w.op;
        b
    };
    let (good_b, evil_b) = (as_bytes(&good), as_bytes(&evil));
    // A thread flips every slot between the two versions, as fast as it can, while the
    // back consumes requests published with the good version.
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let flipper = {
        let (pages, stop, flips) = (raw.pages.clone(), stop.clone(), flips.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for slot in 0..128 {
                    let v = if flips.load(Ordering::Relaxed) % 2 == 0 {
                        &evil_b
                    } else {
                        &good_b
                    };
                    // Only `offset` and `len` differ; they lie past the 16 bytes a response
                    // occupies, so the answers in the same slots are left alone.
                    pages
                        .host()
                        .poke_bytes(SLOTS_AT + slot * SLOT_SIZE + 16, &v[16..20]);
                }
                flips.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // A copy may be torn between the two versions (like READ_ONCE on a slot the peer is
    // writing); any copy that validates is fine to act on. Acting on anything else, e.g.
    // a checked offset with a re-read length, would read past the page: an Error answer.
    // Byte-wise tearing of `len` (0x0010 / 0x0fa0) gives these lengths; the page is all 7s.
    let acceptable = [16, 160, 3856, 4000].map(|n| checksum(&vec![7u8; n]));
    let (mut okay, mut invalid) = (0u32, 0u32);
    let mut back_ring_responses = 0;
    let started = Instant::now();
    let mut rounds = 0;
    // At least 200 rounds, and until both outcomes were seen (the flipper thread may be
    // scheduled late on a busy machine).
    while rounds < 200 || okay == 0 || invalid == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "okay {okay}, invalid {invalid}"
        );
        rounds += 1;
        while !raw.ring.is_full() {
            raw.ring.queue_request(&good).unwrap();
        }
        let _ = raw.ring.push_requests().unwrap();
        back.handle_event().unwrap();
        while let Some(rsp) = raw.ring.next_response().unwrap() {
            back_ring_responses += 1;
            match xen_echo::Status::from_code(rsp.status) {
                Some(Status::Okay) => {
                    assert!(
                        acceptable.contains(&rsp.checksum),
                        "the back mixed two versions of a slot"
                    );
                    okay += 1;
                }
                Some(Status::Invalid) => invalid += 1,
                other => panic!("the back acted on a slot it did not validate: {other:?}"),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    println!(
        "slot flips: {}, okay {okay}, invalid {invalid}",
        flips.load(Ordering::Relaxed)
    );
    assert!(
        flips.load(Ordering::Relaxed) > 10,
        "the slots really were rewritten"
    );
    assert!(invalid > 0, "some requests were read after the rewrite");
    assert!(okay > 0, "some requests were read before it");
    assert_eq!(back_ring_responses, okay + invalid);
    assert_eq!(d1.id(), D1);
    let _ = raw.port;
}

#[test]
fn producer_overflow_from_the_front() {
    let (sim, d1, mut bxs, mut back, raw) = hostile_front();
    raw.pages.host().poke_u32(REQ_PROD, 128 + 5);
    assert_eq!(
        raw.pages.host().peek_u32(REQ_PROD),
        133,
        "the bogus index is in the page"
    );
    d1.notify(raw.port).unwrap();
    let err = back.handle_event().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Ring(RingError::Broken(Violation::ProducerOverflow { .. }))
        ),
        "{err:?}"
    );
    assert_eq!(back.stats().served, 0, "nothing beyond the ring was served");
    back.fail(&mut bxs).unwrap();
    assert_eq!(back.state(), XenbusState::Closing);
    assert!(!back.is_connected());
    assert_eq!(
        sim.grant_stats().live_maps,
        0,
        "the back unmapped the broken ring"
    );
    let _ = raw.data;
}

/// A hostile back: it answers the front's handshake by hand and then writes what it likes.
struct RawBack {
    ring: BackRing<Mapping, RequestWire, ResponseWire>,
    port: Port,
}

fn hostile_back() -> (
    Sim,
    Domain,
    SimClient<XsConnection>,
    EchoFront<Domain, 8>,
    RawBack,
) {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let d0 = sim.domain(0);
    let paths = add_device(&sim, "echo", D1, D0, 0).unwrap();
    let key = |dir: &str, k: &str| format!("{dir}/{k}");
    sim.xs_write(&key(&paths.backend, "max-ring-page-order"), b"0")
        .unwrap();
    sim.xs_write(&key(&paths.backend, "state"), b"2").unwrap();
    let mut fxs = SimClient::new(d1.xenstore());
    let mut front = EchoFront::new(
        d1.clone(),
        Dir::try_from_str(&paths.frontend).unwrap(),
        FrontConfig::default(),
    );
    front.start(&mut fxs).unwrap();
    front.on_xenstore(&mut fxs).unwrap();
    assert_eq!(front.state(), XenbusState::Initialised);
    let read = |k: &str| -> u32 {
        String::from_utf8(sim.xs_read(&key(&paths.frontend, k)).unwrap())
            .unwrap()
            .parse()
            .unwrap()
    };
    let mapping = d0.map_ring(D1, &[GrantRef::new(read("ring-ref"))]).unwrap();
    let ring = BackRing::attach(mapping).unwrap();
    let port = d0
        .bind_interdomain(D1, Port::new(read("event-channel")))
        .unwrap();
    sim.xs_write(&key(&paths.backend, "state"), b"4").unwrap();
    front.on_xenstore(&mut fxs).unwrap();
    assert!(front.is_connected());
    (sim, d1, fxs, front, RawBack { ring, port })
}

fn answer(id: u64, op: Op, status: Status, checksum: u32) -> ResponseWire {
    ResponseWire {
        id,
        checksum,
        status: status.into(),
        op: op.into(),
        pad: 0,
    }
}

#[test]
fn bogus_response_id() {
    let (sim, _d1, mut fxs, mut front, mut raw) = hostile_back();
    let t = front
        .submit(&EchoRequest::Checksum {
            offset: 0,
            data: b"abc",
        })
        .unwrap();
    front.push().unwrap();
    let req = raw.ring.next_request().unwrap().unwrap();
    assert_eq!(req.id, t.id());
    // An id out of the slot range.
    raw.ring
        .queue_response(&answer(999, Op::Checksum, Status::Okay, 0))
        .unwrap();
    let _ = raw.ring.push_responses().unwrap();
    let mut completions = 0;
    let err = front.handle_event(|_| completions += 1).unwrap_err();
    assert!(
        matches!(err, Error::BadResponse(ResponseFault::UnknownId(999))),
        "{err:?}"
    );
    assert_eq!(completions, 0);
    assert_eq!(
        front.outstanding(),
        1,
        "the real request is still outstanding"
    );
    assert!(!front.is_connected());
    assert_eq!(
        front.submit(&EchoRequest::Nop),
        Err(xen_echo::SubmitError::NotConnected)
    );
    // The right slot with another generation is refused as well (fresh setup).
    let (_sim2, _d, _x, mut front2, mut raw2) = hostile_back();
    let t2 = front2
        .submit(&EchoRequest::Checksum {
            offset: 0,
            data: b"abc",
        })
        .unwrap();
    front2.push().unwrap();
    raw2.ring.next_request().unwrap().unwrap();
    let stale = t2.id() ^ (1 << 32);
    raw2.ring
        .queue_response(&answer(stale, Op::Checksum, Status::Okay, checksum(b"abc")))
        .unwrap();
    let _ = raw2.ring.push_responses().unwrap();
    let err = front2.handle_event(|_| {}).unwrap_err();
    assert!(
        matches!(err, Error::BadResponse(ResponseFault::NotOutstanding(_))),
        "{err:?}"
    );
    // The front closes the device.
    front.fail(&mut fxs).unwrap();
    assert_eq!(front.state(), XenbusState::Closing);
    assert_eq!(sim.grant_stats().freed_while_mapped, 0);
    let _ = raw.port;
}

#[test]
fn duplicate_response() {
    let (_sim, _d1, _fxs, mut front, mut raw) = hostile_back();
    let a = front
        .submit(&EchoRequest::Checksum {
            offset: 0,
            data: b"a",
        })
        .unwrap();
    let _b = front
        .submit(&EchoRequest::Checksum {
            offset: 0,
            data: b"b",
        })
        .unwrap();
    front.push().unwrap();
    raw.ring.next_request().unwrap().unwrap();
    raw.ring.next_request().unwrap().unwrap();
    // Both answers carry `a`'s id.
    let rsp = answer(a.id(), Op::Checksum, Status::Okay, checksum(b"a"));
    raw.ring.queue_response(&rsp).unwrap();
    raw.ring.queue_response(&rsp).unwrap();
    let _ = raw.ring.push_responses().unwrap();
    let mut done = Vec::new();
    let err = front.handle_event(|c| done.push(c)).unwrap_err();
    assert_eq!(done.len(), 1, "the first answer completes the request");
    assert!(done[0].verified);
    assert!(
        matches!(err, Error::BadResponse(ResponseFault::NotOutstanding(id)) if id == a.id()),
        "{err:?}"
    );
    assert_eq!(front.stats().bad_responses, 1);
    assert_eq!(
        front.outstanding(),
        1,
        "b is still outstanding, not completed by the duplicate"
    );
}

#[test]
fn producer_overflow_from_the_back() {
    let (sim, _d1, mut fxs, mut front, mut raw) = hostile_back();
    front.submit(&EchoRequest::Nop).unwrap();
    front.push().unwrap();
    raw.ring.next_request().unwrap().unwrap();
    // Publish far more responses than the front has requests outstanding.
    assert!(raw.ring.memory().write(RSP_PROD, &1000u32.to_ne_bytes()));
    let mut back_prod = [0u8; 4];
    raw.ring.memory().read(RSP_PROD, &mut back_prod);
    assert_eq!(
        u32::from_ne_bytes(back_prod),
        1000,
        "the bogus index is in the page"
    );
    sim.domain(0).notify(raw.port).unwrap();
    let mut completions = 0;
    let err = front.handle_event(|_| completions += 1).unwrap_err();
    assert!(matches!(err, Error::Ring(RingError::Broken(_))), "{err:?}");
    assert_eq!(completions, 0);
    front.fail(&mut fxs).unwrap();
    assert_eq!(front.state(), XenbusState::Closing);
}

#[test]
fn peer_never_answers() {
    let (sim, d1, mut fxs, mut front, raw) = hostile_back();
    // The back consumes nothing and answers nothing. The front fills what it may, then is
    // told it is busy: memory stays bounded by its slots, and nothing blocks.
    let mut sent = 0;
    loop {
        match front.submit(&EchoRequest::Checksum {
            offset: 0,
            data: b"hello?",
        }) {
            Ok(_) => sent += 1,
            Err(xen_echo::SubmitError::Busy) => break,
            Err(e) => panic!("{e:?}"),
        }
        assert!(sent <= 8, "more requests than slots");
    }
    front.push().unwrap();
    assert_eq!((sent, front.outstanding()), (8, 8));
    let t = Instant::now();
    let p = front
        .handle_event(|_| panic!("no answer was sent"))
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "handling an idle ring does not block"
    );
    assert_eq!(p.done, 0);
    // Closing waits for the back (the pages may still be mapped), without freeing anything.
    front.close(&mut fxs).unwrap();
    assert_eq!(front.state(), XenbusState::Closing);
    assert_eq!(
        sim.live_grants(D1),
        1 + 16,
        "ring and slot pages stay granted"
    );
    // The toolstack finally removes the dead back end: the front tears down; the ring the
    // back still maps is not freed but deferred.
    let backend = "/local/domain/0/backend/echo/1/0";
    sim.xs_rm(backend).unwrap();
    front.on_xenstore(&mut fxs).unwrap();
    assert_eq!(front.state(), XenbusState::Closed);
    assert_eq!(front.stats().aborted, 8);
    let g = sim.grant_stats();
    assert_eq!(
        (g.freed_while_granted, g.freed_while_mapped),
        (0, 0),
        "{g:?}"
    );
    assert_eq!(
        sim.live_grants(D1),
        1,
        "only the still-mapped ring page is left"
    );
    drop(raw);
    d1.retry_deferred();
    assert_eq!(sim.live_grants(D1), 0);
}

#[test]
fn xenstored_never_answers() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let mut conn = d1.xenstore();
    conn.set_timeout(Duration::from_millis(100));
    let mut xs = Client::<_>::new(conn);
    sim.stall_xenstored(true);
    let t = Instant::now();
    let mut buf = [0u8; 8];
    assert_eq!(
        xs.read(TxId::NONE, p("data"), &mut buf),
        Err(XsError::Transport)
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the client gave up instead of hanging"
    );
    assert_eq!(
        sim.xenstored_stats().swallowed,
        1,
        "the request really went unanswered"
    );
    // The same through the guest's ring transport.
    let mut ring = d1.xenstore_ring();
    ring.set_timeout(Duration::from_millis(100));
    let mut xs = Client::<_>::new(ring);
    let t = Instant::now();
    assert_eq!(
        xs.read(TxId::NONE, p("data"), &mut buf),
        Err(XsError::Transport)
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}
