//! The end-to-end host test: echo front (dom1) and back (dom0) on two threads, negotiating
//! through the simulated xenstored, over a 16-page ring with grants and event channels.
//!
//! `ECHO_REQUESTS` overrides the number of requests (default 1,000,000; run it with
//! `cargo test --release`, as CI does).

mod echo_harness;

use echo_harness::{BackThread, FrontDriver, SimTransport};
use std::time::{Duration, Instant};
use xen_echo::{BackConfig, EchoRequest, FrontConfig, Status};
use xen_sim::toolstack::add_device;
use xen_sim::Sim;
use xen_sys::{DomId, XenbusState};

const SLOTS: usize = 256;
const WAIT: Duration = Duration::from_secs(10);

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn requests() -> u64 {
    std::env::var("ECHO_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Exchanges `count` requests, keeping the ring as full as the slots allow; returns the
/// number completed (all verified, or the test fails).
fn exchange<T: SimTransport>(f: &mut FrontDriver<T, SLOTS>, rng: &mut Rng, count: u64) -> u64 {
    let (mut sent, mut done) = (0u64, 0u64);
    let mut data = [0u8; 4096];
    let mut last_progress = Instant::now();
    while done < count {
        while sent < count {
            let r = rng.next();
            let kind = r % 8;
            let offset = ((r >> 8) % 4096) as u16;
            let room = 4096 - usize::from(offset);
            let len = 1 + ((r >> 24) as usize % 512).min(room - 1);
            for (i, b) in data[..len].iter_mut().enumerate() {
                *b = (r >> ((i % 8) * 8)) as u8 ^ i as u8;
            }
            let req = match kind {
                0 => EchoRequest::Nop,
                1..=4 => EchoRequest::Checksum {
                    offset,
                    data: &data[..len],
                },
                _ => EchoRequest::Complement {
                    offset,
                    data: &data[..len],
                },
            };
            match f.front.submit(&req) {
                Ok(_) => sent += 1,
                Err(xen_echo::SubmitError::Busy) => break,
                Err(e) => panic!("submit failed: {e:?}"),
            }
        }
        f.front.push().expect("push");
        let before = done;
        f.pump(Duration::from_millis(100), |c| {
            assert_eq!(c.status, Status::Okay, "request {c:?} failed");
            assert!(c.verified, "response {c:?} did not verify");
            done += 1;
        })
        .expect("front event handling");
        if done > before {
            last_progress = Instant::now();
        }
        assert!(
            last_progress.elapsed() < WAIT,
            "no progress: {done}/{count} completed"
        );
    }
    done
}

#[test]
fn echo_end_to_end_million_requests_with_reconnect() {
    let total = requests();
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let paths = add_device(&sim, "echo", DomId::new(1), DomId::DOM0, 0).unwrap();
    let back = BackThread::spawn(&sim, DomId::DOM0, &paths.backend, BackConfig::default());
    // The guest reaches XenStore over its real ring page and event channel.
    let mut f = FrontDriver::<_, SLOTS>::new(
        d1.clone(),
        d1.xenstore_ring(),
        &paths.frontend,
        FrontConfig::default(),
    );
    let started = Instant::now();
    f.front.start(&mut f.xs).unwrap();
    assert!(
        f.pump_until(WAIT, |fr| fr.is_connected()).unwrap(),
        "never connected"
    );
    assert_eq!(
        sim.xs_read(&format!("{}/ring-page-order", paths.frontend))
            .unwrap(),
        b"4"
    );
    assert!(sim
        .xs_read(&format!("{}/ring-ref15", paths.frontend))
        .is_some());
    assert_eq!(
        sim.xs_read(&format!("{}/state", paths.backend)).unwrap(),
        b"4"
    );
    let connected = started.elapsed();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let half = total / 2;
    let t0 = Instant::now();
    let mut done = exchange(&mut f, &mut rng, half);
    assert_eq!(f.front.outstanding(), 0);

    // Disconnect and reconnect: nothing outstanding is lost, every grant is revoked.
    f.front.close(&mut f.xs).unwrap();
    assert!(
        f.pump_until(WAIT, |fr| fr.state() == XenbusState::Closed)
            .unwrap(),
        "never closed"
    );
    let closed = Instant::now();
    while sim.xs_read(&format!("{}/state", paths.backend)).unwrap() != b"6" {
        assert!(closed.elapsed() < WAIT, "back never closed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let g = sim.grant_stats();
    assert_eq!(
        (g.live_grants, g.live_maps),
        (0, 0),
        "grants left after disconnect: {g:?}"
    );
    f.front.start(&mut f.xs).unwrap();
    assert!(
        f.pump_until(WAIT, |fr| fr.is_connected()).unwrap(),
        "never reconnected"
    );
    assert_eq!(f.front.stats().connects, 2);

    done += exchange(&mut f, &mut rng, total - half);
    let elapsed = t0.elapsed();
    assert_eq!(done, total);

    f.front.close(&mut f.xs).unwrap();
    assert!(f
        .pump_until(WAIT, |fr| fr.state() == XenbusState::Closed)
        .unwrap());
    f.front.stop(&mut f.xs).unwrap();
    let report = back.stop();
    let stats = f.front.stats();
    println!(
        "echo e2e: {total} requests in {elapsed:?} ({:.0} req/s), handshake {connected:?}, \
         back events {}, front {stats:?}",
        total as f64 / elapsed.as_secs_f64(),
        report.events
    );
    assert!(report.errors.is_empty(), "back errors: {:?}", report.errors);
    assert_eq!(report.stats.served, total);
    assert_eq!((report.stats.invalid, report.stats.map_failures), (0, 0));
    assert_eq!(stats.completed, total);
    assert_eq!(
        (stats.mismatches, stats.aborted, stats.bad_responses),
        (0, 0, 0)
    );
    assert_eq!(report.stats.connects, 2);

    drop(f);
    assert_eq!(d1.live_ports(), 0, "the guest's ports are all closed");
    assert_eq!(sim.domain(0).live_ports(), 0, "dom0's ports are all closed");
    let g = sim.grant_stats();
    assert_eq!((g.live_grants, g.live_maps), (0, 0), "leaked: {g:?}");
    assert_eq!(
        (g.freed_while_granted, g.freed_while_mapped),
        (0, 0),
        "{g:?}"
    );
    assert_eq!(d1.deferred_frees(), 0);
    assert_eq!(g.maps, g.unmaps);
    assert!(g.maps >= total, "every data request mapped its page(s)");
}
