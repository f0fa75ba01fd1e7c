//! Glue that runs the echo engines on simulated domains, as a kernel driver's glue would.
//!
//! Shared by the echo tests (`attacks.rs`, `echo_e2e.rs`), which include it as a module: the
//! simulator itself knows nothing of the echo example.
//!
//! A driver's glue does three things: it calls the engine when XenStore has news, when the
//! device's event channel fires (again at once while the engine reports more work), and it
//! re-enables the event channel when the engine's late-EOI decision says so. Here a thread
//! of the domain waits on the XenStore port and, unless throttled, the device port.
// Each test that includes this uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xen_core::xs::{Client, XsTransport};
use xen_echo::store::Dir;
use xen_echo::{BackConfig, BackStats, Completion, EchoBack, EchoFront, Error, FrontConfig};
use xen_evtchn::{Eoi, Nanos, Outcome, Throttle, ThrottleConfig};
use xen_sim::{Domain, Sim, XsConnection, XsRing};
use xen_sys::{DomId, Port};

/// A XenStore transport of the simulator, with the port that signals its input.
pub trait SimTransport: XsTransport {
    /// The port raised when xenstored has output for this connection.
    fn port(&self) -> Port;
}

impl SimTransport for XsConnection {
    fn port(&self) -> Port {
        XsConnection::port(self)
    }
}

impl SimTransport for XsRing {
    fn port(&self) -> Port {
        XsRing::port(self)
    }
}

/// A XenStore client with room for 8 watches of 16 queued events each.
pub type SimClient<T> = Client<T, 8, 16>;

/// Nanoseconds since `epoch`, for the throttles.
pub fn nanos_since(epoch: Instant) -> Nanos {
    Nanos(u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// When a late EOI is due, as an instant.
/// The late EOI of an event the engine judged `spurious`, as the kernel's throttle (modelled
/// by [`Throttle`]) schedules it: `None` for at once.
fn late_eoi(throttle: &mut Throttle, epoch: Instant, spurious: bool) -> Option<Instant> {
    let outcome = if spurious {
        Outcome::Spurious
    } else {
        Outcome::Work
    };
    eoi_at(epoch, throttle.on_event(nanos_since(epoch), outcome))
}

fn eoi_at(epoch: Instant, eoi: Eoi) -> Option<Instant> {
    match eoi {
        Eoi::Now => None,
        Eoi::At(t) => Some(epoch + Duration::from_nanos(t.0)),
    }
}

/// What a back thread saw.
#[derive(Clone, Debug)]
pub struct BackReport {
    /// The engine's counters.
    pub stats: BackStats,
    /// Errors the engine returned (each followed by `fail`).
    pub errors: Vec<String>,
    /// Times the device port was left masked because of the throttle.
    pub throttled: u64,
    /// The longest late-EOI delay decided.
    pub max_delay: Duration,
    /// Calls to `handle_event`.
    pub events: u64,
}

/// A back end running on its own thread in `backend`.
pub struct BackThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<BackReport>>,
}

impl BackThread {
    /// Starts an echo back for the device whose back directory is `dir`.
    pub fn spawn(sim: &Sim, backend: DomId, dir: &str, config: BackConfig) -> BackThread {
        let dom = sim.domain(backend.raw());
        let dir = Dir::try_from_str(dir).expect("valid backend directory");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("echo-back-d{}", backend.raw()))
            .spawn(move || run_back(dom, dir, config, &flag))
            .expect("spawn the back thread");
        BackThread {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread (the engine unwatches and unmaps) and returns its report.
    pub fn stop(mut self) -> BackReport {
        self.stop.store(true, Ordering::Release);
        self.handle
            .take()
            .expect("stopped once")
            .join()
            .expect("the back thread panicked")
    }
}

impl Drop for BackThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run_back(dom: Domain, dir: Dir, config: BackConfig, stop: &AtomicBool) -> BackReport {
    let mut xs = SimClient::new(dom.xenstore());
    let xs_port = xs.transport_mut().port();
    let mut back = EchoBack::new(dom.clone(), dir, config);
    let epoch = Instant::now();
    let mut throttle = Throttle::new(ThrottleConfig::DEFAULT);
    let mut report = BackReport {
        stats: BackStats::default(),
        errors: Vec::new(),
        throttled: 0,
        max_delay: Duration::ZERO,
        events: 0,
    };
    if let Err(e) = back.start(&mut xs) {
        report.errors.push(format!("start: {e:?}"));
    }
    let mut masked_until: Option<Instant> = None;
    let mut run_now = false;
    while !stop.load(Ordering::Acquire) {
        let mut ports = vec![xs_port];
        if masked_until.is_some_and(|t| Instant::now() >= t) {
            masked_until = None;
        }
        if let (Some(p), None) = (back.port(), masked_until) {
            ports.push(p);
        }
        let fired = if run_now {
            back.port()
        } else {
            dom.wait(&ports, Duration::from_millis(5))
        };
        run_now = false;
        if let Err(e) = back.on_xenstore(&mut xs) {
            report.errors.push(format!("xenstore: {e:?}"));
            let _ = back.fail(&mut xs);
        }
        if fired.is_none() || fired == Some(xs_port) {
            continue;
        }
        report.events += 1;
        match back.handle_event() {
            Ok(p) => {
                run_now = p.more;
                if let Some(t) = late_eoi(&mut throttle, epoch, p.spurious) {
                    report.throttled += 1;
                    report.max_delay = report
                        .max_delay
                        .max(t.saturating_duration_since(Instant::now()));
                    masked_until = Some(t);
                    run_now = false;
                }
            }
            Err(e) => {
                report.errors.push(format!("event: {e:?}"));
                let _ = back.fail(&mut xs);
            }
        }
    }
    if let Err(e) = back.stop(&mut xs) {
        report.errors.push(format!("stop: {e:?}"));
    }
    report.stats = back.stats();
    report
}

/// A front end driven from the calling thread.
pub struct FrontDriver<T: SimTransport, const N: usize> {
    /// The domain.
    pub dom: Domain,
    /// Its XenStore client.
    pub xs: SimClient<T>,
    /// The engine.
    pub front: EchoFront<Domain, N>,
    xs_port: Port,
    epoch: Instant,
    masked_until: Option<Instant>,
    /// The kernel's late-EOI throttle of the port, as the glue would get it.
    throttle: Throttle,
}

impl<T: SimTransport, const N: usize> FrontDriver<T, N> {
    /// A front for the device whose front directory is `dir`, over `transport`.
    pub fn new(dom: Domain, transport: T, dir: &str, config: FrontConfig) -> Self {
        let xs_port = transport.port();
        let dir = Dir::try_from_str(dir).expect("valid frontend directory");
        FrontDriver {
            front: EchoFront::new(dom.clone(), dir, config),
            dom,
            xs: SimClient::new(transport),
            xs_port,
            epoch: Instant::now(),
            masked_until: None,
            throttle: Throttle::new(ThrottleConfig::DEFAULT),
        }
    }

    /// Waits (at most `timeout`) for XenStore news or a response event and handles it;
    /// completions go to `complete`. Returns whether anything fired.
    pub fn pump(
        &mut self,
        timeout: Duration,
        mut complete: impl FnMut(Completion),
    ) -> Result<bool, Error> {
        let mut ports = vec![self.xs_port];
        if self.masked_until.is_some_and(|t| Instant::now() >= t) {
            self.masked_until = None;
        }
        if let (Some(p), None) = (self.front.port(), self.masked_until) {
            ports.push(p);
        }
        let fired = self.dom.wait(&ports, timeout);
        self.front.on_xenstore(&mut self.xs)?;
        if fired.is_none() || fired == Some(self.xs_port) {
            return Ok(fired.is_some());
        }
        loop {
            let p = self.front.handle_event(&mut complete)?;
            if let Some(t) = late_eoi(&mut self.throttle, self.epoch, p.spurious) {
                self.masked_until = Some(t);
                break;
            }
            if !p.more {
                break;
            }
        }
        Ok(true)
    }

    /// Pumps until `done` holds or `timeout` passes; `true` if it holds.
    pub fn pump_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&EchoFront<Domain, N>) -> bool,
    ) -> Result<bool, Error> {
        let deadline = Instant::now() + timeout;
        while !done(&self.front) {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.pump(Duration::from_millis(5), |_| {})?;
        }
        Ok(true)
    }
}
