//! The xen-blkif frontend and backend engines against each other in the simulator, and
//! property tests of request parsing over arbitrary bytes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xen_blkif::abi::x86_32;
use xen_blkif::front::ReadData;
use xen_blkif::parse::{Body, Request, Segments};
use xen_blkif::{
    Abi, BackConfig, BlkBack, BlkFront, Completion, Connection, FrontConfig, Limits, Sector,
    SubmitError, VecDisk, VecTables,
};
use xen_core::platform::RingMemory;
use xen_ring::FrontRing;
use xen_sim::{Domain, Mapping, Pages, Sim};
use xen_sys::wire::blkif::{self as wire, Op, Status};
use xen_sys::{DomId, GrantRef, Port};

const D0: DomId = DomId::DOM0;
const D1: DomId = DomId::new(1);

/// xorshift64*: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, b: &mut [u8]) {
        for chunk in b.chunks_mut(8) {
            let v = self.next().to_ne_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type Front<const S: usize> = BlkFront<Domain, Pages, 256, S>;
type Back = BlkBack<Domain, VecDisk, Mapping, VecTables<Mapping>>;
type Done = Vec<(Completion, Vec<u8>)>;

/// A frontend domain and dom0's backend on a ring of `2^order` pages.
fn pair<const S: usize>(
    order: u32,
    sectors: u64,
    persistent: bool,
    indirect: u16,
) -> (Sim, Front<S>, Back, Port, Port) {
    let sim = Sim::new();
    let fe = sim.create_domain(1);
    let be = sim.domain(0);
    let pages = 1usize << order;
    let ring = fe.alloc_ring(pages).unwrap();
    let grefs: Vec<GrantRef> = (0..pages)
        .map(|i| fe.grant_ring_page(D0, &ring, i).unwrap())
        .collect();
    let fport = fe.alloc_unbound(D0).unwrap();
    let bport = be.bind_interdomain(D1, fport).unwrap();
    let fcfg = FrontConfig {
        persistent,
        max_indirect_segments: indirect,
        ..FrontConfig::default()
    };
    let front = BlkFront::new(fe.clone(), ring, D0, fport, fcfg).unwrap();
    let mapped = RingMemory::map_ring(&be, D1, &grefs).unwrap();
    let bcfg = BackConfig {
        persistent,
        secure_discard: true,
        ..BackConfig::default()
    };
    let disk = VecDisk::new(sectors, false);
    let back = BlkBack::new(
        be,
        disk,
        mapped,
        Connection {
            abi: Abi::X86_64,
            front: D1,
            port: bport,
        },
        bcfg,
        VecTables::new(32, 2048),
    )
    .unwrap();
    (sim, front, back, fport, bport)
}

/// Runs both engines until neither has anything left to do.
fn pump<const S: usize>(front: &mut Front<S>, back: &mut Back, done: &mut Done) {
    loop {
        let b = back.handle_event().unwrap();
        let f = front
            .handle_event(|c: Completion, data: &ReadData<'_, Pages>| {
                let mut buf = vec![0u8; data.len()];
                assert!(data.copy_to(&mut buf));
                done.push((c, buf));
            })
            .unwrap();
        if b.done == 0 && f.done == 0 && !b.more && !f.more {
            break;
        }
    }
}

fn whole_disk_round_trip<const S: usize>(order: u32, persistent: bool, indirect: u16) {
    const SECTORS: u64 = 16 * 2048; // 16 MiB
    let (sim, mut front, mut back, _, _) = pair::<S>(order, SECTORS, persistent, indirect);
    // 11 pages per request, or up to the indirect maximum.
    let chunk = u64::from(front.max_sectors());
    assert_eq!(chunk, 8 * (S as u64).min(u64::from(indirect).max(11)));
    assert_eq!(front.ring_entries(), 32 << order);
    let mut pattern = vec![0u8; (SECTORS * 512) as usize];
    Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(order)).fill(&mut pattern);
    let mut done = Done::new();
    let mut max_in_flight = 0;
    // Write the whole disk, as many requests in flight as the ring takes.
    let mut sector = 0u64;
    while sector < SECTORS {
        let n = chunk.min(SECTORS - sector);
        let at = (sector * 512) as usize;
        match front.submit_write(Sector(sector), &pattern[at..at + (n * 512) as usize]) {
            Ok(_) => sector += n,
            Err(SubmitError::Busy) => {
                max_in_flight = max_in_flight.max(front.outstanding());
                front.push().unwrap();
                pump(&mut front, &mut back, &mut done);
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    front.push().unwrap();
    pump(&mut front, &mut back, &mut done);
    front.submit_flush().unwrap();
    // The barrier form of a flush (for backends without feature-flush-cache).
    front.submit_barrier().unwrap();
    front.push().unwrap();
    pump(&mut front, &mut back, &mut done);
    assert!(done.iter().all(|(c, _)| c.status == Status::Okay));
    assert!(done.iter().any(|(c, _)| c.op == Op::WriteBarrier));
    // More in flight than one ring page holds: the ring, or else the 256-entry table, is full.
    assert_eq!(
        max_in_flight,
        (32usize << order).min(256),
        "the multi-page ring was used"
    );
    assert_eq!(
        back.storage().bytes(),
        &pattern[..],
        "the disk holds the pattern"
    );
    assert!(back.storage().flushes >= 2);
    // Read it all back through the engines.
    done.clear();
    let mut tickets = std::collections::HashMap::new();
    let mut sector = 0u64;
    while sector < SECTORS {
        let n = chunk.min(SECTORS - sector);
        match front.submit_read(Sector(sector), n as u32) {
            Ok(t) => {
                tickets.insert(t, sector);
                sector += n;
            }
            Err(SubmitError::Busy) => {
                front.push().unwrap();
                pump(&mut front, &mut back, &mut done);
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    front.push().unwrap();
    pump(&mut front, &mut back, &mut done);
    assert_eq!(done.len(), tickets.len());
    for (c, data) in &done {
        assert_eq!((c.op, c.status), (Op::Read, Status::Okay));
        let s = tickets[&c.ticket];
        let at = (s * 512) as usize;
        assert_eq!(data[..], pattern[at..at + data.len()], "sector {s}");
    }
    // Discard a range and see zeros.
    done.clear();
    front.submit_discard(Sector(100), 50, true).unwrap();
    front.submit_read(Sector(96), 64).unwrap();
    front.push().unwrap();
    pump(&mut front, &mut back, &mut done);
    assert_eq!(done.len(), 2);
    let data = &done[1].1;
    assert_eq!(data[..4 * 512], pattern[96 * 512..100 * 512]);
    assert!(data[4 * 512..54 * 512].iter().all(|&b| b == 0));
    assert_eq!(data[54 * 512..], pattern[150 * 512..160 * 512]);
    assert_eq!(back.storage().discarded, 50);
    // Nothing left behind: data grants only in the persistent pool, only the ring and the
    // persistent grants mapped, nothing freed while mapped.
    assert_eq!(front.outstanding(), 0);
    let pooled = front.pooled_pages() as u64;
    // Pages revoked while the back's cache still mapped them wait in the deferred list.
    let deferred = sim.domain(1).deferred_frees() as u64;
    assert_eq!(sim.live_grants(D1), (1 << order) + pooled + deferred);
    let stats = sim.grant_stats();
    assert_eq!(stats.freed_while_mapped, 0);
    // Pooled pages stay granted (and mapped, with persistent grants): the front clears them
    // with volatile stores, never with zero_page's plain ones.
    assert_eq!(
        stats.plain_writes_to_granted, 0,
        "zero_page on a granted page"
    );
    assert_eq!(
        stats.live_maps,
        (1 << order) + back.persistent_grants() as u64
    );
    let b = back.stats();
    assert_eq!((b.invalid, b.map_failures, b.io_errors), (0, 0, 0));
    // Requests over 11 pages went through indirect pages.
    assert_eq!(b.indirect > 0, S > 11, "{b:?}");
    if persistent {
        assert!(pooled > 0 && pooled <= 256 * 11, "{pooled}");
        assert!(back.persistent_grants() > 0 && back.persistent_grants() <= 2048);
        assert!(b.persistent_hits > b.segments / 2, "{b:?}");
        // Every grant made stays in the pool (data and indirect pages alike): a bounded set,
        // whatever the number of requests.
        let f = front.stats();
        assert_eq!(f.grants - f.grant_ends, pooled, "{f:?}");
        assert!(f.grants <= 256 * (S as u64 + 8), "{f:?}");
        assert_eq!(f.grant_ends, 0, "nothing revoked while connected: {f:?}");
        eprintln!("persistent: {b:?}, pooled {pooled}, deferred {deferred}");
    } else {
        assert_eq!(b.persistent_hits, 0);
    }
    // Close in XenBus order: the back unmaps everything (Closing), then the front revokes its
    // pooled grants and frees the pages.
    back.disconnect();
    assert_eq!(sim.grant_stats().live_maps, 0);
    front.fail(|_, _| {});
    let fe = sim.domain(1);
    fe.retry_deferred();
    assert_eq!(fe.deferred_frees(), 0);
    assert_eq!(
        sim.live_grants(D1),
        1 << order,
        "only the ring pages stay granted"
    );
}

/// Runs `f` on a thread with room for engines held by value (the kernel keeps them on the
/// heap; a debug build moves them around on the stack).
fn with_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn whole_disk_random_pattern_reads_back_equal_on_a_16_page_ring() {
    with_big_stack(|| whole_disk_round_trip::<11>(4, false, 0));
}

#[test]
fn whole_disk_random_pattern_reads_back_equal_with_persistent_grants() {
    with_big_stack(|| whole_disk_round_trip::<11>(2, true, 0));
}

#[test]
fn whole_disk_random_pattern_reads_back_equal_with_indirect_descriptors() {
    // Linux's blkfront default: 32 indirect segments (128 KiB requests).
    with_big_stack(|| whole_disk_round_trip::<32>(1, false, 32));
    with_big_stack(|| whole_disk_round_trip::<32>(0, true, 32));
}

/// A raw frontend (the test) writing x86_32 or indirect requests by hand.
struct RawFront {
    fe: Domain,
    ring_pages: Arc<Pages>,
    back: BlkBack<Domain, VecDisk, Mapping, VecTables<Mapping>>,
}

impl RawFront {
    fn new(abi: Abi) -> (Sim, RawFront) {
        let sim = Sim::new();
        let fe = sim.create_domain(1);
        let be = sim.domain(0);
        let ring_pages = Arc::new(fe.alloc_pages(1));
        let gref = fe.grant_ring_page(D0, &ring_pages, 0).unwrap();
        let fport = fe.alloc_unbound(D0).unwrap();
        let bport = be.bind_interdomain(D1, fport).unwrap();
        let mapped = RingMemory::map_ring(&be, D1, &[gref]).unwrap();
        let cfg = BackConfig {
            persistent: false,
            ..BackConfig::default()
        };
        let back = BlkBack::new(
            be,
            VecDisk::new(4096, false),
            mapped,
            Connection {
                abi,
                front: D1,
                port: bport,
            },
            cfg,
            VecTables::new(32, 16),
        )
        .unwrap();
        (
            sim,
            RawFront {
                fe,
                ring_pages,
                back,
            },
        )
    }

    fn page(&self, fill: u8) -> (Pages, GrantRef) {
        let p = self.fe.alloc_pages(1);
        p.write(0, &[fill; 4096]);
        let g = self
            .fe
            .grant_access(D0, p.frame(0).unwrap(), false)
            .unwrap();
        (p, g)
    }
}

#[test]
fn x86_32_guest_writes_and_reads_back() {
    let (_sim, mut raw) = RawFront::new(Abi::X86_32);
    let mut ring = FrontRing::<_, [u8; 108], [u8; 12]>::init(raw.ring_pages.clone()).unwrap();
    assert_eq!(ring.entries(), 32);
    let (src, sg) = raw.page(0x42);
    let (dst, dg) = raw.page(0);
    let mut w = wire::Request::ZERO;
    w.operation = Op::Write.into();
    w.nr_segments = 1;
    w.id = 0x0102_0304_0506_0708;
    w.sector_number = 16;
    w.seg[0].gref = sg.raw();
    w.seg[0].first_sect = 2;
    w.seg[0].last_sect = 5;
    let mut r = w;
    r.operation = Op::Read.into();
    r.id = 0x1112_1314_1516_1718;
    r.seg[0].gref = dg.raw();
    ring.queue_request(&x86_32::from_native(&w)).unwrap();
    ring.queue_request(&x86_32::from_native(&r)).unwrap();
    let _ = ring.push_requests().unwrap();
    assert_eq!(raw.back.handle_event().unwrap().done, 2);
    for want in [&w, &r] {
        let rsp = ring.next_response().unwrap().unwrap();
        assert_eq!(&rsp[..8], &want.id.to_ne_bytes());
        assert_eq!(rsp[8], want.operation);
        assert_eq!(&rsp[10..12], &0i16.to_ne_bytes());
    }
    assert!(raw.back.storage().bytes()[16 * 512..20 * 512]
        .iter()
        .all(|&b| b == 0x42));
    let mut b = vec![0u8; 4096];
    dst.read(0, &mut b);
    assert!(b[..1024].iter().all(|&x| x == 0));
    assert!(b[1024..3072].iter().all(|&x| x == 0x42));
    assert!(b[3072..].iter().all(|&x| x == 0));
    drop(src);
}

#[test]
fn indirect_write_then_read_round_trips() {
    let (sim, mut raw) = RawFront::new(Abi::X86_64);
    let mut ring = FrontRing::<_, [u8; 112], [u8; 16]>::init(raw.ring_pages.clone()).unwrap();
    const SEGS: usize = 40;
    let mut rng = Rng(7);
    let data: Vec<(Pages, GrantRef)> = (0..SEGS).map(|_| raw.page(0)).collect();
    let mut pattern = vec![0u8; SEGS * 4096];
    rng.fill(&mut pattern);
    for (i, (p, _)) in data.iter().enumerate() {
        p.write(0, &pattern[i * 4096..(i + 1) * 4096]);
    }
    let (ind, ig) = raw.page(0);
    for (i, (_, g)) in data.iter().enumerate() {
        let mut s = wire::Segment::ZERO;
        s.gref = g.raw();
        s.last_sect = 7;
        ind.write(i * 8, &s.to_bytes());
    }
    let mut req = wire::IndirectRequest::ZERO;
    req.operation = Op::Indirect.into();
    req.indirect_op = Op::Write.into();
    req.nr_segments = SEGS as u16;
    req.id = 1;
    req.sector_number = 800;
    req.indirect_grefs[0] = ig.raw();
    ring.queue_request(&wire::Request::from(req).to_bytes())
        .unwrap();
    let _ = ring.push_requests().unwrap();
    raw.back.handle_event().unwrap();
    let rsp = wire::Response::from_bytes(&ring.next_response().unwrap().unwrap());
    // Answered with the inner operation, as Linux's blkback does.
    assert_eq!(
        (rsp.id, rsp.operation, rsp.status),
        (1, u8::from(Op::Write), 0)
    );
    assert_eq!(
        &raw.back.storage().bytes()[800 * 512..800 * 512 + SEGS * 4096],
        &pattern[..]
    );
    // Clear the pages, read back.
    for (p, _) in &data {
        p.write(0, &[0; 4096]);
    }
    req.indirect_op = Op::Read.into();
    req.id = 2;
    ring.queue_request(&wire::Request::from(req).to_bytes())
        .unwrap();
    let _ = ring.push_requests().unwrap();
    raw.back.handle_event().unwrap();
    let rsp = wire::Response::from_bytes(&ring.next_response().unwrap().unwrap());
    assert_eq!((rsp.id, rsp.status), (2, 0));
    for (i, (p, _)) in data.iter().enumerate() {
        let mut b = vec![0u8; 4096];
        p.read(0, &mut b);
        assert_eq!(b, pattern[i * 4096..(i + 1) * 4096], "segment {i}");
    }
    // A bad segment in the indirect page fails the request before any data moves.
    let mut bad = wire::Segment::ZERO;
    bad.gref = data[0].1.raw();
    bad.first_sect = 5;
    bad.last_sect = 4;
    ind.write(30 * 8, &bad.to_bytes());
    let io = raw.back.storage().io_sectors;
    req.id = 3;
    ring.queue_request(&wire::Request::from(req).to_bytes())
        .unwrap();
    let _ = ring.push_requests().unwrap();
    raw.back.handle_event().unwrap();
    let rsp = wire::Response::from_bytes(&ring.next_response().unwrap().unwrap());
    assert_eq!((rsp.id, rsp.status), (3, -1));
    assert_eq!(raw.back.storage().io_sectors, io);
    assert_eq!(sim.grant_stats().live_maps, 1, "only the ring is mapped");
}

fn random_limits(rng: &mut Rng) -> Limits {
    Limits {
        capacity: match rng.below(4) {
            0 => 0,
            1 => rng.below(10_000),
            2 => u64::MAX,
            _ => rng.next(),
        },
        read_only: rng.below(2) == 0,
        flush: rng.below(2) == 0,
        barrier: rng.below(2) == 0,
        discard: rng.below(2) == 0,
        secure_discard: rng.below(2) == 0,
        max_indirect_segments: rng.next() as u16,
    }
}

/// Every valid request respects the limits it was parsed against.
fn check_invariants(wire: &wire::Request, req: &Request, limits: &Limits) {
    assert_eq!(req.id, wire.id);
    assert_eq!(req.operation, xen_blkif::parse::response_operation(wire));
    let within = |sector: u64, n: u64| sector.checked_add(n).is_some_and(|e| e <= limits.capacity);
    match req.body {
        Body::Discard {
            sector,
            count,
            secure,
        } => {
            assert!(limits.discard && !limits.read_only);
            assert!(within(sector.0, count));
            assert!(!secure || limits.secure_discard);
        }
        Body::Rw(t) | Body::Flush(t) => {
            if t.direction == xen_blkif::parse::Direction::Write {
                assert!(!limits.read_only);
            }
            match t.segments {
                Segments::Direct { count, .. } => {
                    assert!(count <= 11);
                    assert!(count > 0 || matches!(req.body, Body::Flush(_)));
                    let total: u64 = t.segments.direct().iter().map(|s| s.sectors()).sum();
                    for s in t.segments.direct() {
                        assert!(s.offset() + s.len() <= 4096);
                    }
                    // A flush without data has no range to check (blk-mq sends sector -1).
                    assert!(count == 0 || within(t.sector.0, total));
                }
                Segments::Indirect { count, pages, .. } => {
                    assert!((1..=limits.max_indirect_segments.min(256)).contains(&count));
                    assert!((1..=8).contains(&pages));
                    assert!(within(t.sector.0, u64::from(count)));
                }
            }
        }
    }
}

#[test]
fn parse_is_total_over_arbitrary_slots() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (mut ok, mut err) = (0u32, 0u32);
    for i in 0..200_000u32 {
        let limits = random_limits(&mut rng);
        let mut bytes = [0u8; 112];
        rng.fill(&mut bytes);
        if i % 2 == 0 {
            // Bias half the cases towards plausible requests so the Ok paths are explored.
            bytes[0] = rng.below(8) as u8;
            bytes[1] = rng.below(13) as u8;
            bytes[16..24].copy_from_slice(&rng.below(20_000).to_ne_bytes());
            for s in 0..11 {
                bytes[24 + 8 * s + 4] = rng.below(9) as u8;
                bytes[24 + 8 * s + 5] = rng.below(9) as u8;
            }
        }
        for w in [
            wire::Request::from_bytes(&bytes),
            x86_32::to_native(bytes[..108].try_into().unwrap()),
        ] {
            match Request::parse(&w, &limits) {
                Ok(req) => {
                    ok += 1;
                    check_invariants(&w, &req, &limits);
                }
                Err(e) => {
                    err += 1;
                    let _ = e.status();
                }
            }
        }
    }
    assert!(ok > 2_000 && err > 10_000, "ok {ok}, err {err}");
}

#[test]
fn parse_agrees_between_the_two_layouts() {
    let mut rng = Rng(99);
    for _ in 0..50_000 {
        let limits = random_limits(&mut rng);
        let mut bytes = [0u8; 112];
        rng.fill(&mut bytes);
        bytes[0] = rng.below(8) as u8;
        // Native padding carries nothing, so the 32-bit image of a native request means the
        // same request.
        let mut native = wire::Request::from_bytes(&bytes);
        native = match Op::try_from(native.operation) {
            Ok(Op::Discard) => wire::Request::from(native.to_discard()),
            Ok(Op::Indirect) => wire::Request::from(native.to_indirect()),
            _ => wire::Request::from_bytes(&{
                let mut b = native.to_bytes();
                b[4..8].fill(0);
                for s in 0..11 {
                    b[24 + 8 * s + 6..24 + 8 * s + 8].fill(0);
                }
                b
            }),
        };
        let converted = x86_32::to_native(&x86_32::from_native(&native));
        assert_eq!(
            Request::parse(&native, &limits),
            Request::parse(&converted, &limits)
        );
    }
}

/// Front on this thread, back on its own, woken only by event channels: a lost or missing
/// notification stalls the run, which the timeout turns into a failure.
#[test]
fn threaded_front_and_back_never_stall_on_notifications() {
    with_big_stack(|| {
        const SECTORS: u64 = 8 * 2048; // 8 MiB
        let (sim, mut front, back, fport, bport) = pair::<11>(1, SECTORS, true, 0);
        let fe = sim.domain(1);
        let be = sim.domain(0);
        let stop = Arc::new(AtomicBool::new(false));
        let back_thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .stack_size(256 << 20)
                .spawn(move || {
                    let mut back = back;
                    let mut run_now = false;
                    let mut events = 0u64;
                    while !stop.load(Ordering::Acquire) {
                        let fired = if run_now {
                            Some(bport)
                        } else {
                            be.wait(&[bport], Duration::from_millis(5))
                        };
                        run_now = false;
                        if fired.is_none() {
                            continue;
                        }
                        events += 1;
                        run_now = back.handle_event().unwrap().more;
                    }
                    (back, events)
                })
                .unwrap()
        };
        let mut pattern = vec![0u8; (SECTORS * 512) as usize];
        Rng(5).fill(&mut pattern);
        let mut done = Done::new();
        let mut collect = |front: &mut Front<11>, done: &mut Done| loop {
            let p = front
                .handle_event(|c: Completion, data: &ReadData<'_, Pages>| {
                    let mut buf = vec![0u8; data.len()];
                    assert!(data.copy_to(&mut buf));
                    done.push((c, buf));
                })
                .unwrap();
            if !p.more {
                break;
            }
        };
        // Waits for the back's event; a stall (no event while work is outstanding) fails.
        let wait = |front: &mut Front<11>,
                    done: &mut Done,
                    collect: &mut dyn FnMut(&mut Front<11>, &mut Done)| {
            let fired = fe.wait(&[fport], Duration::from_secs(10));
            assert!(
                fired.is_some(),
                "stalled with {} outstanding",
                front.outstanding()
            );
            collect(front, done);
        };
        let mut tickets = std::collections::HashMap::new();
        for pass in 0..2 {
            let mut sector = 0u64;
            while sector < SECTORS {
                let n = 88.min(SECTORS - sector);
                let at = (sector * 512) as usize;
                let r = if pass == 0 {
                    front.submit_write(Sector(sector), &pattern[at..at + (n * 512) as usize])
                } else {
                    front.submit_read(Sector(sector), n as u32)
                };
                match r {
                    Ok(t) => {
                        tickets.insert(t, sector);
                        sector += n;
                    }
                    Err(SubmitError::Busy) => {
                        front.push().unwrap();
                        wait(&mut front, &mut done, &mut collect);
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            front.push().unwrap();
            while front.outstanding() > 0 {
                wait(&mut front, &mut done, &mut collect);
            }
        }
        stop.store(true, Ordering::Release);
        let (back, events) = back_thread.join().unwrap();
        let submitted = front.stats().submitted;
        assert_eq!(done.len() as u64, submitted);
        for (c, data) in &done {
            assert_eq!(c.status, Status::Okay);
            if c.op == Op::Read {
                let at = (tickets[&c.ticket] * 512) as usize;
                assert_eq!(data[..], pattern[at..at + data.len()]);
            }
        }
        assert_eq!(back.storage().bytes(), &pattern[..]);
        // Notifications are batched: fewer events than requests in both directions.
        let sent = front.stats().notifications;
        assert!(
            sent < submitted / 2,
            "{sent} notifications for {submitted} requests"
        );
        assert!(
            events < submitted,
            "{events} back events for {submitted} requests"
        );
        eprintln!("{submitted} requests, {sent} front notifications, {events} back events");
    });
}

/// A table shorter than `N` is the queue depth: no more requests are outstanding than it has
/// slots; an empty table or one longer than `N` is refused.
#[test]
fn the_slot_table_sets_the_queue_depth() {
    use xen_blkif::front::SlotEntry;
    let sim = Sim::new();
    let fe = sim.create_domain(1);
    let table =
        |n: usize| -> Vec<SlotEntry<Pages, 11>> { (0..n).map(|_| SlotEntry::new()).collect() };
    let make = |n: usize| {
        let ring = fe.alloc_ring(1).unwrap();
        let port = fe.alloc_unbound(D0).unwrap();
        BlkFront::<Domain, Pages, 32, 11, Vec<SlotEntry<Pages, 11>>>::with_table(
            fe.clone(),
            ring,
            D0,
            port,
            FrontConfig::default(),
            table(n),
        )
    };
    assert!(make(0).is_err(), "an empty table");
    assert!(make(33).is_err(), "more slots than N");
    for depth in [1, 8, 32] {
        let mut front = make(depth).unwrap();
        let mut n = 0;
        loop {
            match front.submit_read(Sector(n as u64 * 8), 8) {
                Ok(_) => n += 1,
                Err(SubmitError::Busy) => break,
                Err(e) => panic!("{e:?}"),
            }
            assert!(n <= depth, "more outstanding than the table holds");
        }
        assert_eq!((n, front.outstanding()), (depth, depth));
    }
}

#[test]
fn ring_slots_are_32_a_page() {
    use xen_blkif::front::ring_slots;
    for (pages, slots) in [(1, 32), (2, 64), (4, 128), (8, 256), (16, 512)] {
        assert_eq!(ring_slots(pages), Some(slots));
    }
    for pages in [0, 3, 32, usize::MAX] {
        assert_eq!(ring_slots(pages), None);
    }
}
