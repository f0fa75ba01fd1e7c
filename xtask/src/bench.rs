//! `cargo xtask bench`: benchmarks that print a ratio against a peer measured in the same run.
//!
//! `cargo xtask bench ring [ROUND_TRIPS]`: a front thread sends 64-byte requests and consumes
//! responses while a back thread consumes requests and sends responses, over one page of our
//! `io/ring.h` ring (32 slots), and then the same workload over a pair of `rtrb` SPSC queues
//! (one per direction, at most 32 requests in flight, like the ring). Both sides busy-poll:
//! there is no event channel, but our ring's consumers re-arm their event index with the final
//! check whenever they find the ring empty (where a driver would go to sleep), so the count of
//! notifications the hold-off logic asks for is what a driver would send. Each configuration
//! runs at least 5 times, alternating ring and rtrb, and the median counts.
//!
//! Our ring runs twice: "push" calls `push_*` after every batch (the full barrier and the
//! notify check each time, as `ring.h` drivers do), "publish" calls `publish_*` after every
//! batch and `push_*` only when the side finds nothing to do, before it re-arms. The last line
//! is `ratio ring/rtrb = X`: push's throughput over rtrb's, batched case (the ring as the
//! drivers drive it today); the line before it gives publish's.
//!
//! Time on a shared 2-vCPU machine swings by 2x from one run to the next, so the bench also
//! counts instructions per request, which load does not change: it runs itself under
//! `valgrind --tool=callgrind` (installed by `qemu-tests/setup.sh`) on a single-threaded
//! version of the same workload (front queues a batch and pushes, back answers it and pushes,
//! front consumes the responses; no spinning, so nothing depends on scheduling), for both
//! contenders, and prints the instructions counted inside that loop divided by the requests.

use std::hint::spin_loop;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};
use xen_ring::{BackRing, FrontRing, HostPages};

/// A 64-byte request: the id, then payload.
type Req = [u64; 8];
/// A 16-byte response: the id and a status.
type Rsp = [u64; 2];

const RUNS: usize = 7;
const BATCHES: [u32; 2] = [1, 8];
const DEFAULT_ROUND_TRIPS: u64 = 1 << 21;

/// Dispatches `cargo xtask bench WHAT`.
pub fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("ring") => {
            let round_trips = match args.get(1) {
                Some(n) => n
                    .parse()
                    .map_err(|_| format!("bench ring: `{n}` is not a count"))?,
                None => DEFAULT_ROUND_TRIPS,
            };
            if cfg!(debug_assertions) {
                // `cargo xtask` builds in debug; a benchmark needs the release build.
                return crate::run_cmd(
                    std::process::Command::new(
                        std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
                    )
                    .current_dir(crate::root())
                    .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
                    .arg("bench")
                    .args(args),
                );
            }
            ring(round_trips)
        }
        // Internal: the single-threaded workload that `ring` runs under callgrind.
        Some("ring-count") => {
            let parse = |i: usize| -> Result<u64, String> {
                args.get(i)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| "usage: bench ring-count ring|rtrb BATCH ROUND_TRIPS".into())
            };
            let (batch, round_trips) = (parse(2)?, parse(3)?);
            let batch = u32::try_from(batch).map_err(|e| e.to_string())?;
            match args.get(1).map(String::as_str) {
                Some("ring") => count_ring(round_trips, batch),
                Some("rtrb") => count_rtrb(round_trips, batch),
                _ => return Err("usage: bench ring-count ring|rtrb BATCH ROUND_TRIPS".into()),
            }
            Ok(())
        }
        Some("blk") => crate::bench_blk::run(args.get(1).map(String::as_str) == Some("--report")),
        Some("net") => crate::bench_net::run(args.get(1).map(String::as_str) == Some("--report")),
        Some("balloon") => {
            crate::bench_balloon::run(args.get(1).map(String::as_str) == Some("--report"))
        }
        Some(other) => Err(format!("unknown benchmark `{other}`")),
        None => Err(
            "usage: cargo xtask bench ring [ROUND_TRIPS] | blk [--report] | net [--report] \
             | balloon [--report]"
                .into(),
        ),
    }
}

/// One run's result.
#[derive(Clone, Copy)]
struct Sample {
    elapsed: Duration,
    /// Events the front would have sent to the back, and the back to the front.
    events: (u64, u64),
}

fn request(id: u64) -> Req {
    [id, id ^ 0x5555, 3, 4, 5, 6, 7, 8]
}

fn response(req: &Req) -> Rsp {
    [req[0], req[1] ^ 0x5555]
}

fn check_response(rsp: &Rsp, expected: u64) {
    assert!(
        rsp[0] == expected && rsp[1] == expected,
        "response {rsp:?} out of order, expected id {expected}"
    );
}

/// The workload over our ring.
/// How our ring's producers make a batch visible.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `push_*` after every batch: the barrier and the notify check each time, as `ring.h`'s
    /// `RING_PUSH_*_AND_CHECK_NOTIFY` does.
    Push,
    /// `publish_*` after every batch (a release store of the producer index), `push_*` only
    /// when the side finds nothing to do, before it re-arms (where a driver would sleep).
    Publish,
}

fn ring_run(round_trips: u64, batch: u32, mode: Mode) -> Sample {
    let defer = mode == Mode::Publish;
    let pages = HostPages::shared(1);
    let mut front = FrontRing::<_, Req, Rsp>::init(pages.clone()).expect("ring init");
    let back = BackRing::<_, Req, Rsp>::attach(pages).expect("ring attach");
    let start = &Barrier::new(2);
    thread::scope(|s| {
        // Each side's private state lives on its own thread's stack, as it would in its own
        // domain: side by side on one stack they could share a cache line (false sharing).
        let back_thread = s.spawn(move || {
            let mut back = back;
            start.wait();
            let mut served = 0u64;
            let mut events = 0u64;
            let mut armed = false;
            while served < round_trips {
                let mut requests = back.requests(batch).expect("back: ring broken");
                let mut n = 0u64;
                while let Some(req) = requests.next() {
                    requests
                        .queue_response(&response(&req))
                        .expect("back: answer");
                    n += 1;
                }
                if n > 0 {
                    served += n;
                    armed = false;
                    if defer {
                        back.publish_responses().expect("back: publish");
                    } else if back.push_responses().expect("back: push").is_required() {
                        events += 1;
                    }
                } else if !armed {
                    if defer && back.push_responses().expect("back: push").is_required() {
                        events += 1;
                    }
                    // Where a driver would sleep: re-arm, then poll until work shows up.
                    armed = !back.final_check_for_requests().expect("back: final check");
                } else {
                    spin_loop();
                }
            }
            events
        });

        start.wait();
        let began = Instant::now();
        let (mut sent, mut received, mut events) = (0u64, 0u64, 0u64);
        let mut armed = false;
        while received < round_trips {
            let room = u64::from(front.free_requests().min(batch));
            let n = room.min(round_trips - sent);
            for id in sent..sent + n {
                front.queue_request(&request(id)).expect("front: queue");
            }
            if n > 0 {
                sent += n;
                if defer {
                    front.publish_requests().expect("front: publish");
                } else if front.push_requests().expect("front: push").is_required() {
                    events += 1;
                }
            }
            let mut got = 0;
            for rsp in front.responses(u32::MAX).expect("front: ring broken") {
                check_response(&rsp, received);
                received += 1;
                got += 1;
            }
            if got > 0 || n > 0 {
                armed = false;
            } else if !armed {
                if defer && front.push_requests().expect("front: push").is_required() {
                    events += 1;
                }
                armed = !front
                    .final_check_for_responses()
                    .expect("front: final check");
            } else {
                spin_loop();
            }
        }
        let elapsed = began.elapsed();
        let back_events = back_thread.join().expect("back thread panicked");
        Sample {
            elapsed,
            events: (events, back_events),
        }
    })
}

/// The same workload over two rtrb SPSC queues, with the same 32-request window.
fn rtrb_run(round_trips: u64, batch: u32, window: u64) -> Sample {
    let (mut req_tx, req_rx) = rtrb::RingBuffer::<Req>::new(window as usize);
    let (rsp_tx, mut rsp_rx) = rtrb::RingBuffer::<Rsp>::new(window as usize);
    let batch = batch as usize;
    let start = &Barrier::new(2);
    thread::scope(|s| {
        // The back's handles move to its thread, as for our ring.
        let back_thread = s.spawn(move || {
            let (mut req_rx, mut rsp_tx) = (req_rx, rsp_tx);
            start.wait();
            let mut served = 0u64;
            while served < round_trips {
                let n = req_rx.slots().min(batch).min(rsp_tx.slots());
                if n == 0 {
                    spin_loop();
                    continue;
                }
                let requests = req_rx.read_chunk(n).expect("rtrb: read");
                let (first, second) = requests.as_slices();
                let chunk = rsp_tx.write_chunk_uninit(n).expect("rtrb: write");
                let written = chunk.fill_from_iter(first.iter().chain(second).map(response));
                assert_eq!(written, n);
                requests.commit_all();
                served += n as u64;
            }
        });

        start.wait();
        let began = Instant::now();
        let (mut sent, mut received) = (0u64, 0u64);
        while received < round_trips {
            let room = (window - (sent - received)).min(batch as u64);
            let n = room.min(round_trips - sent).min(req_tx.slots() as u64) as usize;
            if n > 0 {
                let chunk = req_tx.write_chunk_uninit(n).expect("rtrb: write");
                let written = chunk.fill_from_iter((sent..).map(request));
                assert_eq!(written, n);
                sent += n as u64;
            }
            let ready = rsp_rx.slots();
            if ready > 0 {
                let responses = rsp_rx.read_chunk(ready).expect("rtrb: read");
                let (first, second) = responses.as_slices();
                for rsp in first.iter().chain(second) {
                    check_response(rsp, received);
                    received += 1;
                }
                responses.commit_all();
            } else if n == 0 {
                spin_loop();
            }
        }
        let elapsed = began.elapsed();
        back_thread.join().expect("back thread panicked");
        Sample {
            elapsed,
            events: (0, 0),
        }
    })
}

/// The workload over our ring on one thread, for callgrind: no spinning, no scheduling.
///
/// `#[inline(never)]` and the name are what `--toggle-collect` matches.
#[inline(never)]
fn count_ring(round_trips: u64, batch: u32) {
    let pages = HostPages::shared(1);
    let mut front = FrontRing::<_, Req, Rsp>::init(pages.clone()).expect("ring init");
    let mut back = BackRing::<_, Req, Rsp>::attach(pages).expect("ring attach");
    let (mut sent, mut received) = (0u64, 0u64);
    while received < round_trips {
        let n = u64::from(front.free_requests().min(batch)).min(round_trips - sent);
        for id in sent..sent + n {
            front.queue_request(&request(id)).expect("front: queue");
        }
        sent += n;
        let _ = front.push_requests().expect("front: push");
        let mut requests = back.requests(batch).expect("back: ring broken");
        while let Some(req) = requests.next() {
            requests
                .queue_response(&response(&req))
                .expect("back: answer");
        }
        let _ = back.push_responses().expect("back: push");
        for rsp in front.responses(u32::MAX).expect("front: ring broken") {
            check_response(&rsp, received);
            received += 1;
        }
    }
    std::hint::black_box(received);
}

/// The same single-threaded workload over two rtrb queues of 32 requests.
#[inline(never)]
fn count_rtrb(round_trips: u64, batch: u32) {
    let window = 32;
    let (mut req_tx, mut req_rx) = rtrb::RingBuffer::<Req>::new(window);
    let (mut rsp_tx, mut rsp_rx) = rtrb::RingBuffer::<Rsp>::new(window);
    let batch = batch as usize;
    let (mut sent, mut received) = (0u64, 0u64);
    while received < round_trips {
        let n = req_tx.slots().min(batch).min((round_trips - sent) as usize);
        if n > 0 {
            let chunk = req_tx.write_chunk_uninit(n).expect("rtrb: write");
            let written = chunk.fill_from_iter((sent..).map(request));
            assert_eq!(written, n);
            sent += n as u64;
        }
        let n = req_rx.slots().min(batch).min(rsp_tx.slots());
        if n > 0 {
            let requests = req_rx.read_chunk(n).expect("rtrb: read");
            let (first, second) = requests.as_slices();
            let chunk = rsp_tx.write_chunk_uninit(n).expect("rtrb: write");
            let written = chunk.fill_from_iter(first.iter().chain(second).map(response));
            assert_eq!(written, n);
            requests.commit_all();
        }
        let ready = rsp_rx.slots();
        if ready > 0 {
            let responses = rsp_rx.read_chunk(ready).expect("rtrb: read");
            let (first, second) = responses.as_slices();
            for rsp in first.iter().chain(second) {
                check_response(rsp, received);
                received += 1;
            }
            responses.commit_all();
        }
    }
    std::hint::black_box(received);
}

/// Round trips in each callgrind run: enough that setup (zeroing the page, allocating the
/// queues) is below 0.1 % of the count.
const COUNT_ROUND_TRIPS: u64 = 1 << 16;

/// Runs `bench ring-count WHO BATCH` under callgrind and returns instructions per request.
fn instructions_per_request(who: &str, batch: u32) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::env::temp_dir().join(format!(
        "xen-pv-rs-callgrind-{}-{who}-{batch}.out",
        std::process::id()
    ));
    let status = std::process::Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--quiet",
            "--collect-atstart=no",
            &format!("--toggle-collect=*bench::count_{who}*"),
        ])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args(["bench", "ring-count", who])
        .arg(batch.to_string())
        .arg(COUNT_ROUND_TRIPS.to_string())
        .status()
        .map_err(|e| {
            format!("bench ring: cannot run valgrind ({e}); install it (qemu-tests/setup.sh does)")
        })?;
    if !status.success() {
        return Err(format!(
            "bench ring: callgrind run for {who} failed: {status}"
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    // `summary:` (older valgrind) or `totals:` holds the events counted, Ir first.
    let total: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ir| ir.parse().ok())
        .ok_or_else(|| {
            format!("bench ring: no instruction total in the callgrind output for {who}")
        })?;
    if total == 0 {
        return Err(format!(
            "bench ring: callgrind counted nothing in count_{who} (symbol not matched?)"
        ));
    }
    Ok(total as f64 / COUNT_ROUND_TRIPS as f64)
}

fn median(samples: &mut [Sample]) -> Sample {
    samples.sort_by_key(|s| s.elapsed);
    samples[samples.len() / 2]
}

fn per_second(round_trips: u64, s: Sample) -> f64 {
    round_trips as f64 / s.elapsed.as_secs_f64()
}

fn ring(round_trips: u64) -> Result<(), String> {
    let geometry = FrontRing::<_, Req, Rsp>::init(HostPages::new(1))
        .map_err(|e| e.to_string())?
        .geometry()
        .to_owned();
    let window = u64::from(geometry.entries());
    println!(
        "ring vs rtrb: {round_trips} request/response round trips per run, {}-byte requests, \
         {} slots on {} page(s), median of {RUNS} runs, busy-polling on {} CPUs",
        std::mem::size_of::<Req>(),
        geometry.entries(),
        geometry.bytes() / xen_ring::PAGE_SIZE,
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "ring push: push (barrier + notify check) after every batch, as ring.h drivers do; \
         ring publish: publish every batch, push only before going idle"
    );
    println!(
        "{:>5}  {:>10}  {:>10}  {:>10}  {:>9}  {:>9}  {:>26}",
        "batch",
        "push Mr/s",
        "publ Mr/s",
        "rtrb Mr/s",
        "push/rtrb",
        "publ/rtrb",
        "events/req push | publ"
    );
    let mut ratios = (0.0, 0.0);
    let mut counts = Vec::new();
    for batch in BATCHES {
        counts.push((
            batch,
            instructions_per_request("ring", batch)?,
            instructions_per_request("rtrb", batch)?,
        ));
    }
    for batch in BATCHES {
        let (mut pushed, mut published, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            pushed.push(ring_run(round_trips, batch, Mode::Push));
            published.push(ring_run(round_trips, batch, Mode::Publish));
            theirs.push(rtrb_run(round_trips, batch, window));
        }
        let (pushed, published, theirs) = (
            median(&mut pushed),
            median(&mut published),
            median(&mut theirs),
        );
        let rate = |s: Sample| per_second(round_trips, s);
        let per_req = |s: Sample| (s.events.0 + s.events.1) as f64 / round_trips as f64;
        ratios = (rate(pushed) / rate(theirs), rate(published) / rate(theirs));
        println!(
            "{batch:>5}  {:>10.2}  {:>10.2}  {:>10.2}  {:>9.2}  {:>9.2}  {:>12.3} | {:.3}",
            rate(pushed) / 1e6,
            rate(published) / 1e6,
            rate(theirs) / 1e6,
            ratios.0,
            ratios.1,
            per_req(pushed),
            per_req(published),
        );
    }
    println!(
        "instructions per request, front and back together (callgrind, both sides on one \
         thread, push after every batch, {COUNT_ROUND_TRIPS} round trips; lower is better):"
    );
    println!(
        "{:>5}  {:>12}  {:>12}  {:>10}",
        "batch", "ring instr", "rtrb instr", "ring/rtrb"
    );
    for (batch, ours, theirs) in counts {
        println!(
            "{batch:>5}  {ours:>12.1}  {theirs:>12.1}  {:>10.2}",
            ours / theirs
        );
    }
    // The headline is the ring driven as every driver drives it today (a push, with its
    // barrier and notification check, after each batch); publishing each batch and pushing
    // once before going idle is the API's faster way, which no driver uses yet.
    println!(
        "ratio ring/rtrb publish-then-push-before-idle = {:.2}  (not yet how the drivers drive it)",
        ratios.1
    );
    println!("ratio ring/rtrb = {:.2}", ratios.0);
    Ok(())
}
