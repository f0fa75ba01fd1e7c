// SPDX-License-Identifier: GPL-2.0

//! `xenpvrs_echo_back`: the echo backend, xen-echo's `EchoBack` driven by XenBus.
//!
//! For each `backend/echo/<domid>/<id>` the module runs the engine: XenStore watch events and
//! the event channel kick one work item, which feeds the engine (`on_xenstore`,
//! `handle_event` with its budget, late EOI). Every request is validated, its grants mapped in
//! one batch, its data checksummed and complemented, and unmapped; the counts are printed when
//! a connection ends.

use linux::workqueue::cancel_sync;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow, CondVar, Mutex};
use kernel::time::msecs_to_jiffies;
use kernel::workqueue::{self, impl_has_work, new_work, Work, WorkItem};
use kernel::{c_str, new_condvar, new_mutex};
use xen_core::xs::PathBuf;
use xen_echo::{BackConfig, EchoBack};
use xen_kernel::bus::{self, Device, Side};
use xen_kernel::evtchn::Channel;
use xen_kernel::grant::Grants;
use xen_kernel::platform::Env;
use xen_kernel::store::KernelStore;
use xen_kernel::{stats, Kick, KickReason};
use xen_sys::XenbusState;

module! {
    type: EchoBackModule,
    name: "xenpvrs_echo_back",
    author: "xen-pv-rs",
    description: "xen-pv-rs: echo test device, backend",
    license: "GPL",
    alias: ["xen-backend:echo"],
}

/// Foreign pages mapped at once (a complement request maps two).
const MAP_POOL: usize = 2;

type Engine = EchoBack<Env<BackDev>>;

#[derive(Default)]
struct State {
    engine: Option<KBox<Engine>>,
    store: Option<KernelStore<BackDev>>,
    was_connected: bool,
}

#[pin_data]
struct BackDev {
    #[pin]
    state: Mutex<State>,
    #[pin]
    progress: CondVar,
    #[pin]
    work: Work<BackDev, 0>,
    watch_kicked: AtomicBool,
    event_kicked: AtomicBool,
}

impl_has_work! {
    impl HasWork<Self, 0> for BackDev { self.work }
}

impl Kick for BackDev {
    fn kick(this: ArcBorrow<'_, Self>, reason: KickReason) {
        match reason {
            KickReason::Watch => this.watch_kicked.store(true, Ordering::Release),
            KickReason::Event => this.event_kicked.store(true, Ordering::Release),
        }
        let this: Arc<Self> = this.into();
        let _ = workqueue::system().enqueue::<Arc<BackDev>, 0>(this);
    }
}

impl WorkItem<0> for BackDev {
    type Pointer = Arc<BackDev>;

    /// Feeds XenStore news and events to the engine.
    fn run(this: Arc<BackDev>) {
        let mut guard = this.state.lock();
        let st = &mut *guard;
        let (Some(engine), Some(store)) = (st.engine.as_mut(), st.store.as_mut()) else {
            return;
        };
        if this.watch_kicked.swap(false, Ordering::AcqRel) {
            if let Err(e) = engine.on_xenstore(store) {
                pr_warn!("XENPVRS-ECHO-BACK xenstore handling failed: {:?}\n", e);
            }
        }
        if this.event_kicked.swap(false, Ordering::AcqRel) {
            let mut requeue = false;
            let mut spurious = true;
            for _ in 0..16 {
                match engine.handle_event() {
                    Ok(p) => {
                        // The engine's verdict, as the late EOI takes it.
                        spurious &= p.spurious;
                        requeue = p.more;
                        if !p.more {
                            break;
                        }
                    }
                    Err(e) => {
                        pr_warn!("XENPVRS-ECHO-BACK broken ring, closing: {:?}\n", e);
                        let _ = engine.fail(store);
                        requeue = false;
                        break;
                    }
                }
            }
            if requeue {
                // Budget spent with work left: come back later without re-enabling the port.
                this.event_kicked.store(true, Ordering::Release);
                let _ = workqueue::system().enqueue::<Arc<BackDev>, 0>(this.clone());
            } else {
                engine.env().chan.eoi(spurious);
            }
        }
        sync_state(engine);
        let connected = engine.is_connected();
        if connected && !st.was_connected {
            pr_info!("XENPVRS-ECHO-BACK connected\n");
        }
        if !connected && st.was_connected {
            let s = engine.stats();
            pr_info!(
                "XENPVRS-ECHO-BACK disconnected state={} served={} invalid={} map_failures={} connects={}\n",
                u32::from(engine.state()),
                s.served,
                s.invalid,
                s.map_failures,
                s.connects
            );
        }
        st.was_connected = connected;
        drop(guard);
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
    type Data = BackDev;
    const SIDE: Side = Side::Backend;
    const TYPE: &'static kernel::str::CStr = c_str!("echo");

    fn probe(dev: &Device) -> Result<Arc<BackDev>> {
        let this = Arc::pin_init(
            pin_init!(BackDev {
                state <- new_mutex!(State::default()),
                progress <- new_condvar!(),
                work <- new_work!("BackDev::work"),
                watch_kicked: AtomicBool::new(false),
                event_kicked: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )?;
        let dir = dev.nodename().to_str().map_err(|_| EINVAL)?;
        let dir = PathBuf::try_from_str(dir).map_err(|_| EINVAL)?;
        let handle = dev.handle();
        let env = Env {
            dev: handle.clone(),
            grants: Grants::with_map_pool(MAP_POOL)?,
            chan: Channel::new(handle, this.clone(), c_str!("xenpvrs-echo-back")),
            rx_chan: None,
            atomic_pages: false,
            rx_pool: None,
            refs: None,
        };
        let engine = KBox::new(EchoBack::new(env, dir, BackConfig::default()), GFP_KERNEL)?;
        let mut guard = this.state.lock();
        let st = &mut *guard;
        let store = st.store.insert(KernelStore::new(this.clone()));
        let engine = st.engine.insert(engine);
        let started = engine.start(store);
        sync_state(engine);
        drop(guard);
        if let Err(e) = started {
            pr_err!("XENPVRS-ECHO-BACK start failed: {:?}\n", e);
            teardown(&this);
            return Err(EIO);
        }
        pr_info!(
            "XENPVRS-ECHO-BACK probe {} frontend-id={}\n",
            dev.nodename(),
            dev.otherend_id().raw()
        );
        Ok(this)
    }

    fn otherend_changed(data: ArcBorrow<'_, BackDev>, _dev: &Device, _state: XenbusState) {
        // The engine watches the front's state itself; this is one more nudge to look.
        BackDev::kick(data, KickReason::Watch);
    }

    fn remove(this: Arc<BackDev>, _dev: &Device) {
        // Close: unmap and unbind first, then give the front a bounded time to close too.
        {
            let mut guard = this.state.lock();
            let st = &mut *guard;
            if let (Some(engine), Some(store)) = (st.engine.as_mut(), st.store.as_mut()) {
                let _ = engine.close(store);
            }
        }
        for _ in 0..20 {
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
        pr_info!("XENPVRS-ECHO-BACK removed\n");
    }
}

/// Stops the engine (unmapping, unbinding), drops the store (unregistering watches) and the
/// event channel, then waits out the work item: nothing refers to the device afterwards.
fn teardown(this: &Arc<BackDev>) {
    let (engine, store) = {
        let mut guard = this.state.lock();
        let st = &mut *guard;
        if let (Some(engine), Some(store)) = (st.engine.as_mut(), st.store.as_mut()) {
            let _ = engine.stop(store);
            if st.was_connected {
                let s = engine.stats();
                pr_info!(
                    "XENPVRS-ECHO-BACK disconnected state={} served={} invalid={} map_failures={} connects={}\n",
                    u32::from(engine.state()),
                    s.served,
                    s.invalid,
                    s.map_failures,
                    s.connects
                );
                st.was_connected = false;
            }
        }
        (st.engine.take(), st.store.take())
    };
    drop(store);
    drop(engine);
    cancel_sync(&this.work);
}

/// Fields drop in order: the registration first (removing every device), then the report.
struct EchoBackModule {
    _reg: Pin<KBox<bus::Registration<Driver>>>,
    _report: stats::UnloadReport,
}

impl kernel::Module for EchoBackModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if !xen_kernel::xen_domain() {
            return Err(ENODEV);
        }
        let reg = KBox::pin_init(
            bus::Registration::<Driver>::new(c_str!("xenpvrs-echo-back")),
            GFP_KERNEL,
        )?;
        pr_info!("XENPVRS-ECHO-BACK loaded\n");
        Ok(EchoBackModule {
            _reg: reg,
            _report: stats::UnloadReport("XENPVRS-ECHO-BACK"),
        })
    }
}
