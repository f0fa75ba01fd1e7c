// SPDX-License-Identifier: GPL-2.0

//! `xenpvrs_echo_front`: the echo frontend, xen-echo's `EchoFront` driven by XenBus.
//!
//! For each `device/echo/<id>` the module runs the engine: XenStore watch events and the event
//! channel kick one work item, which feeds the engine (`on_xenstore`, `handle_event`, late
//! EOI). Once connected, a second work item submits `REQUESTS` complement requests with data
//! that varies per request, waits for the responses (a condition variable with a bounded
//! wait, never a busy loop) and prints one result line with what the engine verified.

use linux::workqueue::cancel_sync;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow, CondVar, Mutex};
use kernel::time::{msecs_to_jiffies, Ktime};
use kernel::workqueue::{self, impl_has_work, new_work, Work, WorkItem};
use kernel::{c_str, new_condvar, new_mutex};
use xen_core::xs::PathBuf;
use xen_echo::{EchoFront, EchoRequest, FrontConfig, SubmitError};
use xen_grant::{CopyOp, CopyPtr, GrantError, GrantOps};
use xen_kernel::bus::{self, Device, Side};
use xen_kernel::evtchn::Channel;
use xen_kernel::grant::{Grants, LocalPage};
use xen_kernel::platform::Env;
use xen_kernel::store::KernelStore;
use xen_kernel::{stats, Kick, KickReason};
use xen_sys::XenbusState;

module! {
    type: EchoFrontModule,
    name: "xenpvrs_echo_front",
    author: "xen-pv-rs",
    description: "xen-pv-rs: echo test device, frontend",
    license: "GPL",
    alias: ["xen:echo"],
}

/// Requests per connection.
const REQUESTS: u64 = 100_000;
/// Request slots (each with a data page and a response page granted).
const SLOTS: usize = 32;
/// Longest wait for any progress before a run is declared stalled.
const STALL_MS: u32 = 10_000;

type Engine = EchoFront<Env<FrontDev>, SLOTS>;

#[derive(Default)]
struct State {
    engine: Option<KBox<Engine>>,
    store: Option<KernelStore<FrontDev>>,
    completed: u64,
    mismatches: u64,
    was_connected: bool,
    runner_queued: bool,
}

#[pin_data]
struct FrontDev {
    #[pin]
    state: Mutex<State>,
    #[pin]
    progress: CondVar,
    #[pin]
    work: Work<FrontDev, 0>,
    #[pin]
    runner: Work<FrontDev, 1>,
    watch_kicked: AtomicBool,
    event_kicked: AtomicBool,
    stopping: AtomicBool,
    runs: AtomicU32,
}

impl_has_work! {
    impl HasWork<Self, 0> for FrontDev { self.work }
    impl HasWork<Self, 1> for FrontDev { self.runner }
}

impl Kick for FrontDev {
    fn kick(this: ArcBorrow<'_, Self>, reason: KickReason) {
        match reason {
            KickReason::Watch => this.watch_kicked.store(true, Ordering::Release),
            KickReason::Event => this.event_kicked.store(true, Ordering::Release),
        }
        let this: Arc<Self> = this.into();
        let _ = workqueue::system().enqueue::<Arc<FrontDev>, 0>(this);
    }
}

impl WorkItem<0> for FrontDev {
    type Pointer = Arc<FrontDev>;

    /// Feeds XenStore news and events to the engine.
    fn run(this: Arc<FrontDev>) {
        let mut guard = this.state.lock();
        let st = &mut *guard;
        let (Some(engine), Some(store)) = (st.engine.as_mut(), st.store.as_mut()) else {
            return;
        };
        if this.watch_kicked.swap(false, Ordering::AcqRel) {
            if let Err(e) = engine.on_xenstore(store) {
                pr_warn!("XENPVRS-ECHO-FRONT xenstore handling failed: {:?}\n", e);
            }
        }
        if this.event_kicked.swap(false, Ordering::AcqRel) {
            let (completed, mismatches) = (&mut st.completed, &mut st.mismatches);
            let mut requeue = false;
            let mut spurious = true;
            for _ in 0..64 {
                match engine.handle_event(|c| {
                    *completed = completed.wrapping_add(1);
                    if !c.verified {
                        *mismatches = mismatches.wrapping_add(1);
                    }
                }) {
                    Ok(p) => {
                        // The engine's verdict, as the late EOI takes it.
                        spurious &= p.spurious;
                        requeue = p.more;
                        if !p.more {
                            break;
                        }
                    }
                    Err(e) => {
                        pr_warn!("XENPVRS-ECHO-FRONT bad response, closing: {:?}\n", e);
                        let _ = engine.fail(store);
                        requeue = false;
                        break;
                    }
                }
            }
            if requeue {
                // Budget spent with work left: come back without re-enabling the port.
                this.event_kicked.store(true, Ordering::Release);
                let _ = workqueue::system().enqueue::<Arc<FrontDev>, 0>(this.clone());
            } else {
                engine.env().chan.eoi(spurious);
            }
        }
        sync_state(engine);
        let connected = engine.is_connected();
        if connected && !st.was_connected {
            pr_info!(
                "XENPVRS-ECHO-FRONT connected state={} ring_pages={}\n",
                u32::from(engine.state()),
                engine.ring_memory().map_or(0, |r| r.pages())
            );
            st.completed = 0;
            st.mismatches = 0;
            if !st.runner_queued && !this.stopping.load(Ordering::Acquire) {
                st.runner_queued = true;
                let _ = workqueue::system_long().enqueue::<Arc<FrontDev>, 1>(this.clone());
            }
        }
        if !connected && st.was_connected {
            let s = engine.stats();
            pr_info!(
                "XENPVRS-ECHO-FRONT disconnected state={} completed={} aborted={} bad_responses={}\n",
                u32::from(engine.state()),
                s.completed,
                s.aborted,
                s.bad_responses
            );
        }
        st.was_connected = connected;
        drop(guard);
        this.progress.notify_all();
    }
}

/// The request data for request `i`: a length and offset that vary, bytes derived from `i`.
fn fill(i: u64, buf: &mut [u8; 256]) -> (u16, usize) {
    let len = 1 + (i % 255) as usize;
    let offset = ((i.wrapping_mul(37)) % 3800) as u16;
    for (k, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(k as u8);
    }
    (offset, len)
}

impl WorkItem<1> for FrontDev {
    type Pointer = Arc<FrontDev>;

    /// Runs `REQUESTS` requests through the connection and reports.
    fn run(this: Arc<FrontDev>) {
        let run = this.runs.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        let start = Ktime::ktime_get();
        let mut last_progress = start;
        let mut sent = 0u64;
        let mut buf = [0u8; 256];
        let mut guard = this.state.lock();
        let outcome = loop {
            if this.stopping.load(Ordering::Acquire) {
                break "stopped";
            }
            let st = &mut *guard;
            let Some(engine) = st.engine.as_mut() else {
                break "gone";
            };
            if !engine.is_connected() {
                break "disconnected";
            }
            if st.completed >= REQUESTS {
                break "done";
            }
            while sent < REQUESTS {
                let (offset, len) = fill(sent, &mut buf);
                let data = buf.get(..len).unwrap_or(&[]);
                match engine.submit(&EchoRequest::Complement { offset, data }) {
                    Ok(_) => sent += 1,
                    Err(SubmitError::Busy) => break,
                    Err(_) => break,
                }
            }
            if engine.push().is_err() {
                break "push failed";
            }
            // Wake-ups without progress (a spurious event, XenStore news) are normal: only a
            // whole STALL_MS without any completion ends the run.
            let before = st.completed;
            let _ = this
                .progress
                .wait_interruptible_timeout(&mut guard, msecs_to_jiffies(1000));
            let now = Ktime::ktime_get();
            if guard.completed != before {
                last_progress = now;
            } else if kernel::time::ktime_ms_delta(now, last_progress) > i64::from(STALL_MS) {
                break "stalled";
            }
        };
        let st = &mut *guard;
        st.runner_queued = false;
        let ms = kernel::time::ktime_ms_delta(Ktime::ktime_get(), start);
        let (completed, mismatches) = (st.completed, st.mismatches);
        drop(guard);
        pr_info!(
            "XENPVRS-ECHO-FRONT result run={} outcome={} requests={} completed={} mismatches={} ms={}\n",
            run,
            outcome,
            REQUESTS,
            completed,
            mismatches,
            ms
        );
        this.progress.notify_all();
    }
}

/// Tells the XenBus core the state the engine wrote to XenStore (through
/// `xenbus_switch_state`, which does nothing if the core already knows it): the core's copy
/// decides, e.g., whether a frontend still counts as connecting when a driver registers.
fn sync_state(engine: &Engine) {
    let _ = engine.env().dev.switch_state(engine.state());
}

struct Driver;

impl bus::Driver for Driver {
    type Data = FrontDev;
    const SIDE: Side = Side::Frontend;
    const TYPE: &'static kernel::str::CStr = c_str!("echo");

    fn probe(dev: &Device) -> Result<Arc<FrontDev>> {
        let this = Arc::pin_init(
            pin_init!(FrontDev {
                state <- new_mutex!(State::default()),
                progress <- new_condvar!(),
                work <- new_work!("FrontDev::work"),
                runner <- new_work!("FrontDev::runner"),
                watch_kicked: AtomicBool::new(false),
                event_kicked: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                runs: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )?;
        if let Err(e) = connect(&this, dev) {
            pr_err!("XENPVRS-ECHO-FRONT start failed: {:?}\n", e);
            teardown(&this);
            return Err(EIO);
        }
        pr_info!("XENPVRS-ECHO-FRONT probe {}\n", dev.nodename());
        Ok(this)
    }

    fn otherend_changed(data: ArcBorrow<'_, FrontDev>, _dev: &Device, _state: XenbusState) {
        // The engine watches the back's state itself; this is one more nudge to look.
        FrontDev::kick(data, KickReason::Watch);
    }

    fn resume(this: ArcBorrow<'_, FrontDev>, dev: &Device) -> Result {
        // The domain was restored: the backend that had our ring mapped is gone and a new one
        // waits in InitWait. The old grants and event channel are dropped without a word to
        // it (revoking succeeds: the restored grant table has no mappings of them, and the
        // channel's port is already closed), then a fresh engine runs the handshake.
        let this: Arc<FrontDev> = this.into();
        let (engine, store) = {
            let mut guard = this.state.lock();
            let st = &mut *guard;
            if let (Some(engine), Some(store)) = (st.engine.as_mut(), st.store.as_mut()) {
                let _ = engine.stop(store);
            }
            st.was_connected = false;
            (st.engine.take(), st.store.take())
        };
        drop(store);
        drop(engine);
        // A runner still waiting finds no engine and ends; a queued one is dropped, and the
        // next connection queues a new one.
        this.progress.notify_all();
        cancel_sync(&this.work);
        cancel_sync(&this.runner);
        this.state.lock().runner_queued = false;
        if let Err(e) = connect(&this, dev) {
            pr_err!("XENPVRS-ECHO-FRONT resume failed: {:?}\n", e);
            return Err(EIO);
        }
        pr_info!("XENPVRS-ECHO-FRONT resumed {}\n", dev.nodename());
        Ok(())
    }

    fn remove(this: Arc<FrontDev>, _dev: &Device) {
        this.stopping.store(true, Ordering::Release);
        this.progress.notify_all();
        cancel_sync(&this.runner);
        // Close cleanly: the back unmaps first, then we revoke and write Closed.
        {
            let mut guard = this.state.lock();
            let st = &mut *guard;
            if let (Some(engine), Some(store)) = (st.engine.as_mut(), st.store.as_mut()) {
                let _ = engine.close(store);
            }
        }
        for _ in 0..50 {
            let mut guard = this.state.lock();
            let state = guard.engine.as_ref().map(|e| e.state());
            if !matches!(
                state,
                Some(XenbusState::Closing) | Some(XenbusState::Connected)
            ) {
                break;
            }
            let _ = this
                .progress
                .wait_interruptible_timeout(&mut guard, msecs_to_jiffies(100));
        }
        teardown(&this);
        pr_info!("XENPVRS-ECHO-FRONT removed\n");
    }
}

/// Builds an engine for `dev` and starts the handshake (probe, and again after a restore).
fn connect(this: &Arc<FrontDev>, dev: &Device) -> Result<(), xen_echo::Error> {
    let dir = dev
        .nodename()
        .to_str()
        .map_err(|_| xen_echo::Error::NotStarted)?;
    let dir = PathBuf::try_from_str(dir).map_err(|_| xen_echo::Error::NotStarted)?;
    let handle = dev.handle();
    let env = Env {
        dev: handle.clone(),
        grants: Grants::new(),
        chan: Channel::new(handle, this.clone(), c_str!("xenpvrs-echo-front")),
        rx_chan: None,
        atomic_pages: false,
        rx_pool: None,
        refs: None,
    };
    let config = FrontConfig::default();
    // The engine is large (a slot table): built in place on the heap, not on the stack.
    let engine = KBox::new(EchoFront::new(env, dir, config), GFP_KERNEL)
        .map_err(|_| xen_echo::Error::NoMemory)?;
    let mut guard = this.state.lock();
    let st = &mut *guard;
    let store = st.store.insert(KernelStore::new(this.clone()));
    let engine = st.engine.insert(engine);
    let started = engine.start(store);
    sync_state(engine);
    started
}

/// Stops the engine (revoking everything), drops the store (unregistering watches) and the
/// event channel, then waits out the work item: nothing refers to the device afterwards.
fn teardown(this: &Arc<FrontDev>) {
    let (engine, store) = {
        let mut guard = this.state.lock();
        let st = &mut *guard;
        if let (Some(engine), Some(store)) = (st.engine.as_mut(), st.store.as_mut()) {
            let _ = engine.stop(store);
        }
        (st.engine.take(), st.store.take())
    };
    drop(store);
    drop(engine);
    cancel_sync(&this.work);
    // The event work may have queued the runner just before `stopping` was set: with the work
    // item gone nothing queues it any more, so this wait is the last.
    this.stopping.store(true, Ordering::Release);
    cancel_sync(&this.runner);
}

/// Fields drop in order: the registration first (removing every device), then the report.
struct EchoFrontModule {
    _reg: Pin<KBox<bus::Registration<Driver>>>,
    _report: stats::UnloadReport,
}

impl kernel::Module for EchoFrontModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if !xen_kernel::xen_domain() {
            return Err(ENODEV);
        }
        match grant_copy_selftest() {
            Ok(()) => pr_info!("XENPVRS-ECHO-FRONT grant-copy ok\n"),
            Err(e) => pr_info!("XENPVRS-ECHO-FRONT grant-copy failed {:?}\n", e),
        }
        let reg = KBox::pin_init(
            bus::Registration::<Driver>::new(c_str!("xenpvrs-echo-front")),
            GFP_KERNEL,
        )?;
        pr_info!("XENPVRS-ECHO-FRONT loaded\n");
        Ok(EchoFrontModule {
            _reg: reg,
            _report: stats::UnloadReport("XENPVRS-ECHO-FRONT"),
        })
    }
}

/// Copies bytes between two of our own pages with the grant-copy hypercall (both ends local
/// frames), checking the glue's plumbing of `GrantOps::copy_batch`.
fn grant_copy_selftest() -> Result<(), GrantError> {
    let (Some(src), Some(dst)) = (LocalPage::new(), LocalPage::new()) else {
        return Err(GrantError::NoSpace);
    };
    let pattern: [u8; 100] = core::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(1));
    if !src.write_bytes(10, &pattern) {
        return Err(GrantError::BadCopyArg);
    }
    let op = CopyOp {
        source: CopyPtr::Local {
            page: &src,
            offset: 10,
        },
        dest: CopyPtr::Local {
            page: &dst,
            offset: 3000,
        },
        len: 100,
    };
    let mut result = [Err(GrantError::GeneralError)];
    Grants::new()
        .copy_batch(&[op], &mut result)
        .map_err(|_| GrantError::GeneralError)?;
    let [r] = result;
    r?;
    let mut back = [0u8; 100];
    if !dst.read_bytes(3000, &mut back) || back != pattern {
        return Err(GrantError::GeneralError);
    }
    Ok(())
}
