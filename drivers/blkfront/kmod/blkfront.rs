// SPDX-License-Identifier: GPL-2.0

//! `xenpvrs_blkfront`: the Xen virtual block device frontend, xen-blkif's `BlkFront` engine
//! behind a blk-mq disk.
//!
//! One [`Dev`] per `device/vbd/<id>`: it runs the XenBus handshake (ring order, queues,
//! persistent grants, protocol; then the backend's disk properties) in a work item driven by
//! the backend's state, and owns the disk (`xvdX`, named from `virtual-device` like Linux).
//! One [`Queue`] per negotiated ring: its own engine, ring, event channel and blk-mq hardware
//! queue. Requests are copied through the engine's zeroed, granted pages (persistent when the
//! backend agrees), so no guest page other than those is ever shared with the backend: this is
//! the `trusted=0` behaviour of Linux, always. Responses are copied once and checked by the
//! engine; a response that breaks the protocol fails the device's requests with an I/O error,
//! never the kernel.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{Arc, ArcBorrow, Mutex};
use kernel::workqueue::{self, impl_has_work, new_work, Work, WorkItem};
use kernel::{c_str, fmt, new_mutex};
use xen_blkif::front::{ring_slots, Completion, DataPages, FrontConfig, SlotEntry, SubmitError};
use xen_blkif::vdev::{self, DiskName};
use xen_blkif::{BlkFront, Sector};
use xen_core::feature::blkif::{
    write_queue, BackOffer, DiskInfo, DiskParams, FrontLimits, FrontRequest,
};
use xen_core::feature::{FeatureError, StoreDir};
use xen_core::xenbus::{Action, Event, Input, Machine, Perform, Role};
use xen_core::xs::{with_transaction, PathBuf, TxId, XenStore};
use xen_evtchn::EvtchnOps;
use linux::block::mq::{self as blk, Disk, DiscardParams, HwQueue, Op, QueueRqError, Request};
use linux::debugfs::DebugCounters;
use xen_kernel::bus::{self, peer_state, DevPath, Device, DeviceHandle, HandshakeError, Side};
use xen_kernel::evtchn::Channel;
use xen_kernel::grant::Grants;
use xen_kernel::platform::{Env, Page};
use xen_kernel::ring::FrontRingPages;
use xen_kernel::store::KernelStore;
use linux::workqueue::cancel_sync;
use xen_kernel::work::EventQueue;
use xen_kernel::{stats, Kick, KickReason};
use xen_sys::wire::blkif::{Op as WireOp, Status};
use xen_sys::{GrantRef, XenbusState};

module! {
    type: BlkFrontModule,
    name: "xenpvrs_blkfront",
    author: "xen-pv-rs",
    description: "xen-pv-rs: Xen virtual block device frontend",
    license: "GPL",
    alias: ["xen:vbd"],
}

extern "C" {
    fn xpvrs_blkfront_max_indirect_segments() -> u32;
    fn xpvrs_blkfront_max_queues() -> u32;
    fn xpvrs_blkfront_max_ring_page_order() -> u32;
    fn xpvrs_blkfront_feature_persistent() -> bool;
    fn xpvrs_blkfront_online_cpus() -> u32;
    fn xpvrs_blkfront_trusted() -> bool;
    fn xpvrs_blkfront_register_major() -> i32;
    fn xpvrs_blkfront_unregister_major();
}

/// A device directory path. XenStore allows 3072 bytes, but a path lives on the stack here
/// (kernel stacks are 16 KiB) and device paths are short: a longer one fails cleanly.

/// The most request slots a queue can have: those of a 4-page ring (32 slots a page). Each
/// queue's table has as many slots as its ring ([`ring_slots`]), up to this, which is also
/// its blk-mq queue depth, as Linux's blkfront sizes it. Not 512 (a 16-page ring): the
/// engine's id bookkeeping (`Slots<N>`, about 7 bytes a slot) is inline and the engine is
/// built on the stack before it is boxed; with 512 that overflowed the 16 KiB kernel stack
/// at connection (a guest crash in the blkfront scenario).
const SLOTS: usize = 128;
/// Most segments (pages) per request: 11 direct, up to this many with indirect descriptors.
const SEGS: usize = 64;

/// The slot table, on the heap: one slot is ~2 KiB, too large for a stack as a whole (and,
/// at up to 1 MiB for a 16-page ring, allocated with `kvmalloc`).
struct Table(KVVec<SlotEntry<Page, SEGS>>);

impl AsRef<[SlotEntry<Page, SEGS>]> for Table {
    fn as_ref(&self) -> &[SlotEntry<Page, SEGS>] {
        &self.0
    }
}

impl AsMut<[SlotEntry<Page, SEGS>]> for Table {
    fn as_mut(&mut self) -> &mut [SlotEntry<Page, SEGS>] {
        &mut self.0
    }
}

type Engine = BlkFront<Env<Queue>, FrontRingPages, SLOTS, SEGS, Table>;

/// The frontend's limits from the module parameters (as Linux: queues capped by the CPUs).
fn limits() -> FrontLimits {
    // SAFETY: the getters read module parameters; no preconditions.
    let (indirect, queues, order, persistent, cpus) = unsafe {
        (
            xpvrs_blkfront_max_indirect_segments(),
            xpvrs_blkfront_max_queues(),
            xpvrs_blkfront_max_ring_page_order(),
            xpvrs_blkfront_feature_persistent(),
            xpvrs_blkfront_online_cpus(),
        )
    };
    FrontLimits::from_params(indirect, queues, order, persistent, cpus, SEGS as u32)
}

// --- counters ---------------------------------------------------------------------------------

const COUNTERS: usize = 11;
const COUNTER_NAMES: [&kernel::str::CStr; COUNTERS] = [
    c_str!("requests"),
    c_str!("completed"),
    c_str!("aborted"),
    c_str!("segments"),
    c_str!("notifications_sent"),
    c_str!("events_received"),
    c_str!("spurious_events"),
    c_str!("grants"),
    c_str!("grant_ends"),
    c_str!("persistent_pages"),
    c_str!("deferred_frees"),
];

// --- one queue ----------------------------------------------------------------------------------

struct QState {
    engine: Option<KBox<Engine>>,
    /// The block request of each outstanding engine slot.
    inflight: KVec<Option<Request>>,
    events: u64,
    /// The engine is configured (set by `connect`): requests may go to the ring. While it
    /// is not, a reconnecting device holds requests back in a stopped queue. Changed only
    /// under this lock, which is also where the queue is stopped, so that `connect`'s restart
    /// cannot slip between a refusal and its stop.
    ready: bool,
}

/// One ring with its engine and blk-mq hardware queue.
#[pin_data]
struct Queue {
    index: u32,
    shared: Arc<Shared>,
    #[pin]
    state: Mutex<QState>,
    #[pin]
    work: Work<Queue, 0>,
    event_kicked: AtomicBool,
    /// Read by debugfs (as plain u64s: `AtomicU64` has `u64`'s layout).
    counters: [AtomicU64; COUNTERS],
}

impl_has_work! {
    impl HasWork<Self, 0> for Queue { self.work }
}

impl EventQueue for Queue {
    fn event_pending(&self) -> &AtomicBool {
        &self.event_kicked
    }
}

impl Queue {
    fn new(index: u32, shared: Arc<Shared>) -> Result<Arc<Queue>> {
        let mut inflight = KVec::with_capacity(SLOTS, GFP_KERNEL)?;
        for _ in 0..SLOTS {
            inflight.push(None, GFP_KERNEL)?;
        }
        Arc::pin_init(
            pin_init!(Queue {
                index,
                shared,
                state <- new_mutex!(QState {
                    engine: None,
                    inflight,
                    events: 0,
                    ready: false,
                }),
                work <- new_work!("Queue::work"),
                event_kicked: AtomicBool::new(false),
                counters: [const { AtomicU64::new(0) }; COUNTERS],
            }),
            GFP_KERNEL,
        )
    }

    fn publish(&self, engine: &Engine, events: u64) {
        let s = engine.stats();
        let vals = [
            s.submitted,
            s.completed,
            s.aborted,
            s.segments,
            s.notifications,
            events,
            s.spurious_events,
            s.grants,
            s.grant_ends,
            engine.pooled_pages() as u64,
            s.deferred_frees,
        ];
        for (c, v) in self.counters.iter().zip(vals) {
            c.store(v, Ordering::Relaxed);
        }
    }

    /// Builds this queue's ring, channel and engine; returns what goes into XenStore.
    #[inline(never)]
    fn setup(
        self: &Arc<Self>,
        dev: &DeviceHandle,
        pages: usize,
    ) -> Result<([GrantRef; 16], xen_sys::Port)> {
        let backend = dev.otherend_id();
        let ring = FrontRingPages::new(dev, pages)?;
        let mut grefs = [GrantRef::new(0); 16];
        for (i, g) in grefs.iter_mut().enumerate().take(pages) {
            *g = ring.gref(i).ok_or(EINVAL)?;
        }
        let env = Env {
            dev: dev.clone(),
            grants: Grants::new(),
            chan: Channel::new(dev.clone(), self.clone(), c_str!("xenpvrs-blkfront")),
            rx_chan: None,
            atomic_pages: false,
            rx_pool: None,
            refs: None,
        };
        let port = env.alloc_unbound(backend).map_err(|_| EIO)?;
        // As many slots as the ring has: the queue depth.
        let depth = ring_slots(pages).ok_or(EINVAL)?.min(SLOTS);
        let mut table = KVVec::with_capacity(depth, GFP_KERNEL)?;
        for _ in 0..depth {
            table.push(SlotEntry::new(), GFP_KERNEL)?;
        }
        // Indirect segments and persistent grants are set at connection (`configure`).
        let config = FrontConfig::default();
        let engine = Engine::with_table(env, ring, backend, port, config, Table(table))
            .map_err(|_| EINVAL)?;
        let engine = KBox::new(engine, GFP_KERNEL)?;
        let mut st = self.state.lock();
        st.engine = Some(engine);
        st.events = 0;
        st.ready = false;
        Ok((grefs, port))
    }

    /// Takes the engine out (failing it: every grant revoked or deferred) and every
    /// outstanding block request with it; the engine is dropped (channel closed, ring
    /// released) before the requests are handed back, outside the lock.
    fn drain(&self) -> KVec<Request> {
        // Pushes into the reserved room do not fail; a request that could not be kept would be
        // dropped, which ends it with EIO.
        let mut out = KVec::with_capacity(SLOTS, GFP_KERNEL).unwrap_or(KVec::new());
        let engine = {
            let mut guard = self.state.lock();
            let QState {
                engine,
                inflight,
                ready,
                ..
            } = &mut *guard;
            *ready = false;
            if let Some(e) = engine.as_mut() {
                // Every outstanding request is in `inflight`; it is collected below.
                e.fail(|_, _| {});
            }
            for slot in inflight.iter_mut() {
                if let Some(rq) = slot.take() {
                    let _ = out.push(rq, GFP_ATOMIC);
                }
            }
            engine.take()
        };
        drop(engine);
        out
    }

    /// After a restore: drops the engine (its backend is gone) and hands every outstanding
    /// request back to blk-mq, which issues it again once the new connection is up.
    fn recover(&self) -> usize {
        let rqs = self.drain();
        let n = rqs.len();
        for rq in rqs {
            rq.requeue();
        }
        n
    }

    /// Fails every outstanding request and drops the engine.
    fn shutdown(&self) {
        for rq in self.drain() {
            rq.end(Err(EIO));
        }
    }
}

/// `EOPNOTSUPP`, which the kernel crate does not name.
fn eopnotsupp() -> Error {
    Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32))
}

fn take_request(inflight: &mut KVec<Option<Request>>, c: &Completion) -> Option<Request> {
    let slot = usize::try_from(c.ticket.0 & 0xffff_ffff).ok()?;
    inflight.get_mut(slot)?.take()
}

fn pages_of<'a>(data: &'a DataPages<'_, Page>) -> impl Iterator<Item = &'a Page> + 'a {
    (0..data.page_count()).filter_map(move |i| data.page(i))
}

/// Longest wait for the backend to unmap after we wrote Closed.
const CLOSE_WAIT_MS: u32 = 5000;

/// Most completions ended per work run (the engine's budget).
const BUDGET: usize = 64;

impl WorkItem<0> for Queue {
    type Pointer = Arc<Queue>;

    /// Handles the ring's responses: checks them (engine), copies read data into the block
    /// requests, and ends those requests once the lock is dropped (their completion may
    /// submit new I/O to this very queue).
    fn run(this: Arc<Queue>) {
        if !this.event_kicked.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut done: [Option<(Request, Result)>; BUDGET] = [const { None }; BUDGET];
        let mut n = 0usize;
        let mut requeue = false;
        // The backend refused discards (the engine no longer sends them): the queue stops
        // announcing them, below, unlocked.
        let discard_refused;
        {
            let mut guard = this.state.lock();
            let QState {
                engine,
                inflight,
                events,
                ..
            } = &mut *guard;
            let Some(engine) = engine.as_mut() else {
                return;
            };
            *events = events.wrapping_add(1);
            let result = engine.handle_event(|c, data| {
                let Some(mut rq) = take_request(inflight, &c) else {
                    return;
                };
                let r = match c.status {
                    Status::Okay if c.op == WireOp::Read => {
                        if rq.copy_from_pages(pages_of(data)) {
                            Ok(())
                        } else {
                            Err(EIO)
                        }
                    }
                    Status::Okay => Ok(()),
                    Status::Eopnotsupp => Err(eopnotsupp()),
                    Status::Error => Err(EIO),
                };
                match done.get_mut(n) {
                    Some(slot) => {
                        *slot = Some((rq, r));
                        n += 1;
                    }
                    // Cannot happen (the budget bounds completions); end it here rather
                    // than lose it.
                    None => rq.end(r),
                }
            });
            match result {
                Ok(p) => {
                    if p.more {
                        requeue = true;
                    } else {
                        engine.env().chan.eoi(p.spurious);
                    }
                }
                Err(e) => {
                    // Returned once: the engine has failed, and its later events are
                    // spurious (Ok), so a backend that keeps notifying is throttled by the
                    // late EOI instead of filling the log.
                    pr_err!(
                        "XENPVRS-BLKFRONT queue {}: backend broke the protocol ({:?}); failing its requests\n",
                        this.index,
                        e
                    );
                    engine.env().chan.eoi(true);
                }
            }
            discard_refused = engine.discard_revoked();
            this.publish(engine, *events);
        }
        if discard_refused && !this.shared.discard_off.swap(true, Ordering::AcqRel) {
            pr_warn!(
                "XENPVRS-BLKFRONT queue {}: the backend refused a discard; discards are off\n",
                this.index
            );
            if let Some(d) = this.shared.disk.lock().as_ref() {
                d.disable_discard();
            }
        }
        for slot in done.iter_mut().take(n) {
            if let Some((rq, r)) = slot.take() {
                rq.end(r);
            }
        }
        if requeue {
            this.event_kicked.store(true, Ordering::Release);
            let _ = workqueue::system_highpri().enqueue::<Arc<Queue>, 0>(this.clone());
        }
        if n > 0 {
            this.shared.restart();
        }
    }
}

// --- the device ---------------------------------------------------------------------------------

/// What the queues and the device share: the disk, for restarting stopped queues.
#[pin_data]
struct Shared {
    #[pin]
    disk: Mutex<Option<Disk<Dev>>>,
    dead: AtomicBool,
    read_only: AtomicBool,
    /// The backend offers `feature-barrier` but not `feature-flush-cache`: flushes are sent
    /// as empty write barriers.
    barrier_only: AtomicBool,
    /// A backend refused a discard: the queue no longer announces discards (for the disk's
    /// life, as in Linux).
    discard_off: AtomicBool,
    /// Between a restore and the new connection: requests wait (their hardware queue is
    /// stopped) instead of failing.
    reconnecting: AtomicBool,
    /// Since the last restore: requests that were outstanding on the old rings and handed
    /// back to blk-mq, and requests refused (held in a stopped queue) before the new
    /// connection. Both kinds are re-issued by `connect`.
    handed_back: AtomicU32,
    held: AtomicU32,
}

impl Kick for Shared {
    /// No watches are registered through the device's store.
    fn kick(_this: ArcBorrow<'_, Self>, _reason: KickReason) {}
}

impl Shared {
    fn restart(&self) {
        if let Some(d) = self.disk.lock().as_ref() {
            d.start_queues();
        }
    }
}

struct Ctl {
    /// The XenBus state machine: every handshake decision is its.
    machine: Machine,
    st: CtlState,
}

/// What the handshake's actions work on.
struct CtlState {
    store: Option<KernelStore<Shared>>,
    /// The backend's offer, read by `ReadPeerFeatures`.
    offer: Option<BackOffer>,
    /// Our request, once rings are published.
    request: Option<FrontRequest>,
    /// The backend's disk properties, read by `ReadDeviceProperties` for `Connect`.
    disk: Option<(DiskInfo, Option<FeatureError>)>,
    /// `Connect` ran and no `Disconnect` since: a repeated Connected is a resize.
    connected: bool,
    limits: FrontLimits,
    debug: KVec<DebugCounters<Queue>>,
    connections: u32,
    /// The disk's size as last read from the backend.
    sectors: u64,
}

/// One virtual block device.
#[pin_data]
struct Dev {
    handle: DeviceHandle,
    name: DiskName,
    vdevice: u32,
    queues: KVec<Arc<Queue>>,
    shared: Arc<Shared>,
    #[pin]
    ctl: Mutex<Ctl>,
    #[pin]
    ctl_work: Work<Dev, 0>,
    backend_state: AtomicU32,
}

impl_has_work! {
    impl HasWork<Self, 0> for Dev { self.ctl_work }
}

impl Dev {
    /// Runs the handshake work (after a backend state change).
    fn kick(this: ArcBorrow<'_, Self>) {
        let this: Arc<Self> = this.into();
        let _ = workqueue::system().enqueue::<Arc<Dev>, 0>(this);
    }

    /// Feeds `input` to the state machine and performs what it decides.
    fn drive(self: &Arc<Self>, ctl: &mut Ctl, input: Input<'_>, resuming: bool) {
        let Ctl { machine, st } = ctl;
        machine.drive(
            input,
            &mut Glue {
                dev: self,
                st,
                resuming,
            },
        );
    }
}

impl WorkItem<0> for Dev {
    type Pointer = Arc<Dev>;

    /// Moves the handshake along after a backend state change.
    fn run(this: Arc<Dev>) {
        let Some(backend) = peer_state(&this.backend_state) else {
            return;
        };
        let mut guard = this.ctl.lock();
        this.drive(&mut guard, Input::Peer(backend), false);
    }
}

/// Performs the state machine's actions on one device.
struct Glue<'a> {
    dev: &'a Arc<Dev>,
    st: &'a mut CtlState,
    /// Performing a resume: `Disconnect` keeps the disk and hands its requests back.
    resuming: bool,
}

impl Perform for Glue<'_> {
    type Error = HandshakeError;

    fn perform(&mut self, action: Action) -> Result<(), HandshakeError> {
        let dev = self.dev;
        match action {
            Action::ReadPeerFeatures => dev.read_offer(self.st),
            Action::PublishRingRefs => dev.publish_rings(self.st),
            Action::ReadDeviceProperties => dev.read_disk(self.st),
            Action::Connect => dev.connect(self.st),
            Action::Quiesce => {
                dev.quiesce();
                Ok(())
            }
            Action::Disconnect if self.resuming => {
                dev.recover(self.st);
                Ok(())
            }
            Action::Disconnect => {
                dev.disconnect(self.st);
                Ok(())
            }
            Action::SwitchState(state) => Ok(dev.handle.switch_state(state)?),
            Action::ReportInvalidPeerState => {
                pr_warn!(
                    "XENPVRS-BLKFRONT {}: the backend's state is not a XenBus state\n",
                    dev.name.as_str()
                );
                Ok(())
            }
            // Backend actions, and vscsiif's reconfiguration: nothing to do for a disk.
            Action::PublishFeatures
            | Action::MapRing
            | Action::PublishDeviceProperties
            | Action::Reconfigure => Ok(()),
        }
    }

    fn failed(&mut self, action: Action, e: HandshakeError, gave_up: bool) {
        let dev = self.dev;
        if !gave_up {
            pr_warn!(
                "XENPVRS-BLKFRONT {}: {:?} failed ({}); the disk stays as it was\n",
                dev.name.as_str(),
                action,
                e
            );
            return;
        }
        pr_err!(
            "XENPVRS-BLKFRONT {}: handshake failed ({}) in {:?}\n",
            dev.name.as_str(),
            e,
            action
        );
        // Tells the toolstack, as Linux's blkfront does (error/... in XenStore); the machine
        // has already switched the state.
        dev.handle.handshake_error(&e);
    }
}

impl Dev {
    /// `ReadPeerFeatures`: the backend's offer, and our limits as the module parameters say.
    fn read_offer(&self, st: &mut CtlState) -> Result<(), HandshakeError> {
        let store = st.store.as_mut().ok_or(EINVAL)?;
        let other = self.handle.otherend_path()?;
        st.offer = Some(BackOffer::read(&mut StoreDir::new(
            store,
            other.as_path()?,
            TxId::NONE,
        ))?);
        st.limits = limits();
        Ok(())
    }

    /// `PublishRingRefs`: builds the rings and channels and publishes them with our request.
    #[inline(never)]
    fn publish_rings(self: &Arc<Self>, st: &mut CtlState) -> Result<(), HandshakeError> {
        let offer = st.offer.ok_or(EINVAL)?;
        let req = FrontRequest::negotiate(&st.limits, &offer);
        let store = st.store.as_mut().ok_or(EINVAL)?;
        let nq = usize::try_from(req.num_queues).map_err(|_| EINVAL)?;
        let mut published = KVec::new();
        for q in self.queues.iter().take(nq) {
            let (grefs, port) = q.setup(&self.handle, req.nr_ring_pages())?;
            published.push((grefs, port), GFP_KERNEL)?;
        }
        // Live from here: a failure below is cleaned up by `Disconnect`.
        st.request = Some(req);
        let me = self.handle.nodename_path()?;
        let pages = req.nr_ring_pages();
        with_transaction(store, 16, |s, tx| -> Result<(), FeatureError> {
            let mut dir = StoreDir::new(s, me.as_path()?, tx);
            req.write(&mut dir)?;
            for (q, (grefs, port)) in published.iter().enumerate() {
                let refs = grefs.get(..pages).ok_or(FeatureError::Inconsistent("ring-ref"))?;
                write_queue(&mut dir, &req, q as u32, refs, *port)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// `ReadDeviceProperties`: the backend's disk properties, for `Connect`; on a live
    /// connection (the backend said Connected again), a new size.
    fn read_disk(&self, st: &mut CtlState) -> Result<(), HandshakeError> {
        let store = st.store.as_mut().ok_or(EINVAL)?;
        let other = self.handle.otherend_path()?;
        let read = DiskInfo::read(&mut StoreDir::new(store, other.as_path()?, TxId::NONE))?;
        if !st.connected {
            st.disk = Some(read);
            return Ok(());
        }
        let sectors = read.0.sectors;
        if sectors != st.sectors {
            if let Some(d) = self.shared.disk.lock().as_ref() {
                d.set_capacity(sectors);
            }
            pr_info!(
                "XENPVRS-BLKFRONT {}: resized from {} to {} sectors\n",
                self.name.as_str(),
                st.sectors,
                sectors
            );
            st.sectors = sectors;
        }
        Ok(())
    }

    /// `Connect`: finishes the engines' setup and adds the disk (or, after a restore, keeps
    /// it and re-issues its requests).
    #[inline(never)]
    fn connect(self: &Arc<Self>, st: &mut CtlState) -> Result<(), HandshakeError> {
        let req = st.request.ok_or(EINVAL)?;
        let (info, rejected) = st.disk.take().ok_or(EINVAL)?;
        let params = DiskParams::negotiate(&st.limits, &info, rejected);
        let nq = usize::try_from(req.num_queues).map_err(|_| EINVAL)?;
        let indirect = u16::try_from(params.indirect_segments).unwrap_or(0);
        let persistent = params.persistent;
        let mut max_sectors = u32::MAX;
        let mut depth = u32::MAX;
        for q in self.queues.iter().take(nq) {
            let mut guard = q.state.lock();
            let qs = &mut *guard;
            let engine = qs.engine.as_mut().ok_or(EINVAL)?;
            if !engine.configure(indirect, persistent) {
                return Err(EBUSY.into());
            }
            qs.ready = true;
            max_sectors = max_sectors.min(engine.max_sectors());
            depth = depth.min(engine.ring_entries());
        }
        let read_only = info.read_only();
        self.shared.read_only.store(read_only, Ordering::Release);
        self.shared
            .barrier_only
            .store(params.barrier_only(), Ordering::Release);
        self.shared.dead.store(false, Ordering::Release);
        let discard = params.discard.map(|d| DiscardParams {
            // A request's byte count is 32 bits.
            max_sectors: u32::MAX >> 9,
            granularity: d.granularity,
            alignment: d.alignment,
            secure: d.secure,
        });
        let dp = blk::DiskParams {
            name: self.name.as_str(),
            capacity: info.sectors,
            logical_block_size: info.sector_size,
            physical_block_size: info.physical_sector_size,
            max_hw_sectors: max_sectors,
            nr_queues: req.num_queues,
            queue_depth: depth,
            write_cache: params.write_cache(),
            fua: false,
            discard,
            read_only,
            removable: DiskParams::removable(&info),
            devt: vdev::disk_devt(self.vdevice).ok(),
        };
        if let Some(e) = params.discard_rejected {
            pr_warn!(
                "XENPVRS-BLKFRONT {}: discard offered but refused: {:?}\n",
                self.name.as_str(),
                e
            );
        }
        let kept = {
            let disk = self.shared.disk.lock();
            if let Some(d) = disk.as_ref() {
                // Reconnected after a restore: the disk and its queued requests stay.
                d.set_capacity(info.sectors);
            }
            disk.is_some()
        };
        if !kept {
            let disk = Disk::new(&dp, self.clone())?;
            *self.shared.disk.lock() = Some(disk);
        }
        if self.shared.reconnecting.swap(false, Ordering::AcqRel) {
            pr_info!(
                "XENPVRS-BLKFRONT {}: resumed, re-issuing requests-in-flight={} requests-held={}\n",
                self.name.as_str(),
                self.shared.handed_back.load(Ordering::Relaxed),
                self.shared.held.load(Ordering::Relaxed)
            );
            self.shared.restart();
        }
        st.connected = true;
        st.sectors = info.sectors;
        st.connections = st.connections.wrapping_add(1);
        st.debug = DebugCounters::for_queues(
            self.queues.iter().take(nq),
            &COUNTER_NAMES,
            |q| &q.counters,
            |q| CString::try_from_fmt(fmt!("xenpvrs-blkfront-{}-q{}", self.name.as_str(), q.index)),
        )?;
        pr_info!(
            "XENPVRS-BLKFRONT {}: connected sectors={} sector-size={} physical-sector-size={} queues={} ring-pages={} indirect-segments={} persistent={} flush={} discard={} secure-discard={} barrier={} read-only={} max-sectors={} depth={}\n",
            self.name.as_str(),
            info.sectors,
            info.sector_size,
            info.physical_sector_size,
            req.num_queues,
            req.nr_ring_pages(),
            params.indirect_segments,
            u8::from(persistent),
            u8::from(params.flush_cache),
            u8::from(params.discard.is_some()),
            u8::from(params.discard.is_some_and(|d| d.secure)),
            u8::from(params.barrier),
            u8::from(read_only),
            max_sectors,
            dp.queue_depth
        );
        Ok(())
    }

    /// Waits (sleeping) until the backend's state is `want`, at most `ms` milliseconds.
    fn wait_backend(&self, want: XenbusState, ms: u32) {
        for _ in 0..ms / 20 {
            if self.backend_state.load(Ordering::Acquire) == u32::from(want) {
                return;
            }
            // SAFETY: sleeping in process context (a work item) holding only our own mutex.
            unsafe { kernel::bindings::msleep(20) };
        }
    }

    /// `Quiesce`: the connection is being given up; requests fail from now on instead of
    /// reaching rings that will be revoked.
    fn quiesce(&self) {
        self.shared.dead.store(true, Ordering::Release);
        self.shared.restart();
    }

    /// `Disconnect`: fails outstanding I/O, deletes the disk and drops the rings. Idempotent.
    #[inline(never)]
    fn disconnect(&self, st: &mut CtlState) {
        st.connected = false;
        st.disk = None;
        let live = st.request.take().is_some() || self.shared.disk.lock().is_some();
        if !live {
            // Nothing was set up beyond, perhaps, some queues of a failed setup.
            for q in self.queues.iter() {
                q.shutdown();
            }
            return;
        }
        if self.backend_state.load(Ordering::Acquire) == u32::from(XenbusState::Closing) {
            // Closed first: a Linux backend finishes its in-flight requests and unmaps our
            // rings and persistent grants only once it sees the frontend Closed. Revoking
            // after that frees the pages at once instead of deferring each one (the machine
            // says Closed right after this, which is then a no-op).
            let _ = self.handle.switch_state(XenbusState::Closed);
            self.wait_backend(XenbusState::Closed, CLOSE_WAIT_MS);
        }
        self.shared.dead.store(true, Ordering::Release);
        st.debug = KVec::new();
        for q in self.queues.iter() {
            q.shutdown();
        }
        // Stopped queues run again and find the device dead: their requests fail at once, so
        // deleting the disk (which waits for every request) cannot hang.
        self.shared.restart();
        let disk = self.shared.disk.lock().take();
        drop(disk);
        let why = match XenbusState::try_from(self.backend_state.load(Ordering::Acquire)) {
            Ok(XenbusState::Closing | XenbusState::Closed) => "backend closed",
            Ok(XenbusState::Unknown) | Err(_) => "backend gone",
            Ok(_) => "closed",
        };
        pr_info!(
            "XENPVRS-BLKFRONT {}: disconnected ({})\n",
            self.name.as_str(),
            why
        );
    }

    /// `Disconnect` while resuming: the backend that had our rings mapped is gone. The
    /// engines are dropped (their grants revoked, channels closed) and their requests handed
    /// back to blk-mq; the disk stays, and requests wait in stopped queues until the new
    /// connection re-issues them.
    fn recover(&self, st: &mut CtlState) {
        if st.connected {
            self.shared.reconnecting.store(true, Ordering::Release);
        }
        st.connected = false;
        st.request = None;
        st.disk = None;
        st.debug = KVec::new();
        let mut handed_back = 0usize;
        for q in self.queues.iter() {
            handed_back += q.recover();
        }
        self.shared
            .handed_back
            .store(u32::try_from(handed_back).unwrap_or(u32::MAX), Ordering::Relaxed);
        self.shared.held.store(0, Ordering::Relaxed);
        pr_info!(
            "XENPVRS-BLKFRONT {}: restored, reconnecting; requests-in-flight={}\n",
            self.name.as_str(),
            handed_back
        );
    }
}

impl blk::Operations for Dev {
    fn queue_rq(
        this: ArcBorrow<'_, Self>,
        hctx: &HwQueue,
        rq: Request,
        last: bool,
    ) -> Result<(), QueueRqError> {
        let Some(q) = usize::try_from(hctx.index()).ok().and_then(|i| this.queues.get(i)) else {
            rq.end(Err(EIO));
            return Ok(());
        };
        if this.shared.dead.load(Ordering::Acquire) {
            rq.end(Err(EIO));
            return Ok(());
        }
        let read_only = this.shared.read_only.load(Ordering::Acquire);
        let mut guard = q.state.lock();
        let QState {
            engine,
            inflight,
            events,
            ready,
        } = &mut *guard;
        let engine = match engine.as_mut() {
            Some(e) if *ready => e,
            // Restored and not connected yet (no engine, or one that `connect` has not
            // configured): the request waits in the stopped queue, which `connect` restarts
            // after it set `ready` under this lock.
            _ if this.shared.reconnecting.load(Ordering::Acquire) => {
                this.shared.held.fetch_add(1, Ordering::Relaxed);
                let stopped = hctx.stop();
                drop(guard);
                return Err(QueueRqError::Busy(rq, stopped));
            }
            _ => {
                drop(guard);
                rq.end(Err(EIO));
                return Ok(());
            }
        };
        let sector = Sector(rq.sector());
        let bytes = rq.bytes();
        let sectors = bytes / 512;
        let op = rq.op();
        let submitted = match op {
            Op::Read => engine.submit_read(sector, sectors),
            Op::Write if read_only => Err(SubmitError::Failed),
            Op::Write => engine.submit_write_with(sector, bytes as usize, |pages| {
                rq.copy_to_pages(pages_of(pages))
            }),
            Op::Flush if this.shared.barrier_only.load(Ordering::Acquire) => {
                engine.submit_barrier()
            }
            Op::Flush => engine.submit_flush(),
            Op::Discard if !read_only => engine.submit_discard(sector, u64::from(sectors), false),
            Op::SecureErase if !read_only => {
                engine.submit_discard(sector, u64::from(sectors), true)
            }
            _ => Err(SubmitError::BadLength),
        };
        match submitted {
            Ok(ticket) => {
                let slot = usize::try_from(ticket.0 & 0xffff_ffff).unwrap_or(usize::MAX);
                match inflight.get_mut(slot) {
                    Some(s) => *s = Some(rq),
                    // Cannot happen: tickets name table slots. The response will find no
                    // request and be dropped; this one fails now.
                    None => rq.end(Err(EIO)),
                }
                if last {
                    let _ = engine.push();
                    q.publish(engine, *events);
                }
                Ok(())
            }
            // The backend revoked flushes (engine): as Linux, the empty flush ends at once.
            Err(SubmitError::Unsupported) if op == Op::Flush => {
                drop(guard);
                rq.end(Ok(()));
                Ok(())
            }
            Err(SubmitError::Busy) => {
                let _ = engine.push();
                // Stopped under the lock the completion path frees slots under, before it
                // restarts the queues: a restart cannot fall between this refusal and the stop.
                let stopped = hctx.stop();
                drop(guard);
                Err(QueueRqError::Busy(rq, stopped))
            }
            Err(e) => {
                let _ = engine.push();
                drop(guard);
                let err = match e {
                    SubmitError::NoMemory => ENOMEM,
                    SubmitError::Unsupported => eopnotsupp(),
                    SubmitError::Failed if read_only => EROFS,
                    _ => EIO,
                };
                rq.end(Err(err));
                Ok(())
            }
        }
    }

    fn commit_rqs(this: ArcBorrow<'_, Self>, queue: u32) {
        let Some(q) = usize::try_from(queue).ok().and_then(|i| this.queues.get(i)) else {
            return;
        };
        let mut guard = q.state.lock();
        let events = guard.events;
        if let Some(engine) = guard.engine.as_mut() {
            let _ = engine.push();
            q.publish(engine, events);
        }
    }
}

/// The disk name from our `virtual-device` key.
#[inline(never)]
fn read_name(store: &mut KernelStore<Shared>, dev: &Device) -> Result<(DiskName, u32)> {
    let dir = dev.nodename().to_str().map_err(|_| EINVAL)?;
    let mut path: DevPath =
        PathBuf::try_from_str(dir).map_err(|_| EINVAL)?;
    path.join("virtual-device").map_err(|_| EINVAL)?;
    let mut buf = [0u8; 16];
    let n = store
        .read(TxId::NONE, path.as_path().map_err(|_| EINVAL)?, &mut buf)
        .map_err(|_| ENODEV)?;
    let text = core::str::from_utf8(buf.get(..n).unwrap_or(&[])).map_err(|_| EINVAL)?;
    let vdevice: u32 = text.trim().parse().map_err(|_| EINVAL)?;
    let name = vdev::disk_name(vdevice).map_err(|e| {
        pr_err!(
            "XENPVRS-BLKFRONT virtual-device {} names no disk: {:?}\n",
            vdevice,
            e
        );
        ENODEV
    })?;
    Ok((name, vdevice))
}

struct Driver;

impl bus::Driver for Driver {
    type Data = Dev;
    const SIDE: Side = Side::Frontend;
    const TYPE: &'static kernel::str::CStr = c_str!("vbd");

    fn probe(dev: &Device) -> Result<Arc<Dev>> {
        let shared = Arc::pin_init(
            pin_init!(Shared {
                disk <- new_mutex!(None),
                dead: AtomicBool::new(false),
                read_only: AtomicBool::new(false),
                barrier_only: AtomicBool::new(false),
                discard_off: AtomicBool::new(false),
                reconnecting: AtomicBool::new(false),
                handed_back: AtomicU32::new(0),
                held: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )?;
        let limits = limits();
        let mut queues = KVec::new();
        for i in 0..limits.max_queues {
            queues.push(Queue::new(i, shared.clone())?, GFP_KERNEL)?;
        }
        // The store's watch target is the shared part (the driver registers no watches: the
        // XenBus core reports the backend's state through `otherend_changed`).
        let mut store = KernelStore::new(shared.clone());
        let (name, vdevice) = read_name(&mut store, dev)?;
        let handle = dev.handle();
        let this = Arc::pin_init(
            pin_init!(Dev {
                handle,
                name,
                vdevice,
                queues,
                shared,
                ctl <- new_mutex!(Ctl {
                    machine: Machine::new(Role::Frontend),
                    st: CtlState {
                        store: Some(store),
                        offer: None,
                        request: None,
                        disk: None,
                        connected: false,
                        limits,
                        debug: KVec::new(),
                        connections: 0,
                        sectors: 0,
                    },
                }),
                ctl_work <- new_work!("Dev::ctl_work"),
                backend_state: AtomicU32::new(bus::PEER_NOT_SEEN),
            }),
            GFP_KERNEL,
        )?;
        // A device unbound from a driver is left Closed by the XenBus core; saying
        // Initialising again asks the backend for a new handshake (a no-op on a fresh device).
        let _ = dev.switch_state(XenbusState::Initialising);
        this.drive(&mut this.ctl.lock(), Input::Event(Event::Start), false);
        pr_info!(
            "XENPVRS-BLKFRONT probe {} virtual-device={} disk={}\n",
            dev.nodename(),
            vdevice,
            this.name.as_str()
        );
        Ok(this)
    }

    fn resume(this: ArcBorrow<'_, Dev>, _dev: &Device) -> Result {
        // The domain was restored: the backend that had our rings mapped is gone and a new one
        // will wait in InitWait. The machine forgets the old backend and disconnects, which
        // here keeps the disk and hands its requests back (see `Dev::recover`).
        let this: Arc<Dev> = this.into();
        cancel_sync(&this.ctl_work);
        this.backend_state
            .store(bus::PEER_NOT_SEEN, Ordering::Release);
        let mut guard = this.ctl.lock();
        this.drive(&mut guard, Input::Resume, true);
        Ok(())
    }

    fn otherend_changed(data: ArcBorrow<'_, Dev>, _dev: &Device, state: XenbusState) {
        data.backend_state.store(u32::from(state), Ordering::Release);
        Dev::kick(data);
    }

    fn remove(this: Arc<Dev>, _dev: &Device) {
        cancel_sync(&this.ctl_work);
        {
            let mut guard = this.ctl.lock();
            this.drive(&mut guard, Input::Event(Event::Removed), false);
            guard.st.store = None;
        }
        for q in this.queues.iter() {
            cancel_sync(&q.work);
        }
        pr_info!("XENPVRS-BLKFRONT {}: removed\n", this.name.as_str());
    }
}

/// Major 202 registered under Linux's name, `xvd`, as Linux's blkfront does, so that
/// `/proc/devices` lists it (LVM and other tools filter devices on that name). `false` when
/// another driver holds it (Linux's blkfront loaded too): the disks work all the same.
struct XvdMajor(bool);

impl XvdMajor {
    fn register() -> XvdMajor {
        // SAFETY: module init, process context.
        let r = unsafe { xpvrs_blkfront_register_major() };
        if r != 0 {
            pr_warn!("XENPVRS-BLKFRONT cannot register major 202 as xvd ({}); /proc/devices will not list it\n", r);
        }
        XvdMajor(r == 0)
    }
}

impl Drop for XvdMajor {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: registered in `register`; module exit, process context.
            unsafe { xpvrs_blkfront_unregister_major() };
        }
    }
}

/// Fields drop in order: the registration first (removing every device), then the major,
/// then the report.
struct BlkFrontModule {
    _reg: Pin<KBox<bus::Registration<Driver>>>,
    _major: XvdMajor,
    _report: stats::UnloadReport,
}

impl kernel::Module for BlkFrontModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if !xen_kernel::xen_domain() {
            return Err(ENODEV);
        }
        let l = limits();
        let major = XvdMajor::register();
        let reg = KBox::pin_init(
            bus::Registration::<Driver>::new(c_str!("xenpvrs-blkfront")),
            GFP_KERNEL,
        )?;
        pr_info!(
            "XENPVRS-BLKFRONT loaded max_queues={} max_ring_page_order={} max_indirect_segments={} feature_persistent={} trusted={} major={}\n",
            l.max_queues,
            l.max_ring_page_order,
            l.max_indirect_segments,
            u8::from(l.persistent),
            // SAFETY: reads a module parameter.
            u8::from(unsafe { xpvrs_blkfront_trusted() }),
            if major.0 { 202 } else { 0 }
        );
        Ok(BlkFrontModule {
            _reg: reg,
            _major: major,
            _report: stats::UnloadReport("XENPVRS-BLKFRONT"),
        })
    }
}
