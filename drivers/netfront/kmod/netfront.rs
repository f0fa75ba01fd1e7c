// SPDX-License-Identifier: GPL-2.0

//! `xenpvrs_netfront`: the Xen virtual network interface frontend, xen-netif's `NetFront`
//! engine behind a Linux `net_device`.
//!
//! One [`Dev`] per `device/vif/<id>`: it owns the interface (`eth<N>`, created at probe with
//! the MAC from our `mac` key, carrier off until connected) and runs the XenBus handshake in a
//! work item driven by the backend's state. It connects first, as netif requires (Linux's
//! netback maps the rings only once it sees the frontend Connected). One [`Queue`] per
//! negotiated queue: its own engine, TX and RX rings, event channel and NAPI context. The
//! event channel's interrupt only schedules NAPI; the poll handles TX completions and RX,
//! refills the RX ring, wakes the TX queue, and sends the late EOI once the queue is idle, so
//! a backend that floods the channel is throttled.
//!
//! TX lends the skb's own pages in place to a trusted backend (Linux's `trusted=1`, its
//! default): the skb is kept until the backend has answered every slot, and leaked if it
//! still maps one then. With `trusted=0` (or our `trusted` key 0) every packet is copied
//! through the engine's own zeroed, granted pages instead. Received data lands in pages the engine posted; their grants are ended before the data is read, and
//! the pages then go to the skb. Every response is copied once and checked by the engine; one
//! that breaks the protocol fails the queue (its packets are dropped), never the kernel.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{Arc, ArcBorrow, Mutex, SpinLock};
use kernel::workqueue::{self, impl_has_work, new_work, Work, WorkItem};
use kernel::{c_str, fmt, new_mutex, new_spinlock};
use linux::net::{
    self, BhOff, Checksum, Features, NapiScheduler, NetDevice, NetParams, NetRef, NetStats,
    PagePool, RxSkb, TxSkb,
};
use linux::debugfs::DebugCounters;
use linux::timer::{Tick, Ticker};
use linux::workqueue::cancel_sync;
use xen_core::feature::netif::{
    read_mtu, wants_ctrl_ring, write_ctrl_ring, write_queue, BackOffer, Channels, CtrlRing,
    FrontLimits, FrontRequest, MacAddr, Offload, QueueRings, MAX_MTU, MIN_MTU,
};
use xen_core::feature::{read_u32, FeatureError, StoreDir};
use xen_core::platform::PageBytes;
use xen_core::xenbus::{Action, Event, Input, Machine, Perform};
use xen_core::xs::{with_transaction, TxId};
use xen_evtchn::EvtchnOps;
use xen_kernel::bus::{self, peer_state, Device, DeviceHandle, HandshakeError, Side};
use xen_kernel::evtchn::Channel;
use xen_kernel::grant::{Grants, RefPool};
use xen_kernel::platform::{Env, Page};
use xen_kernel::ring::FrontRingPages;
use xen_kernel::store::KernelStore;
use xen_kernel::{stats, Kick, KickReason};
use xen_netif::ctrl::{CtrlFront, CtrlOutcome, HashConfig};
use xen_netif::front::{FrontConfig, FrontStats, RxEntry, TxCompletion, TxEntry, TxOutcome};
use xen_netif::rx::RxChecksum;
use xen_netif::tx::{lent_len, Gso, TxChecksum, TxFrag, TxLent, TxPacket, PAGE};
use xen_netif::{NetFront, SendError};
use xen_sys::wire::netif::{GsoType, NR_SLOTS_MIN};
use xen_sys::{bindings, XenbusState};

module! {
    type: NetFrontModule,
    name: "xenpvrs_netfront",
    author: "xen-pv-rs",
    description: "xen-pv-rs: Xen virtual network interface frontend",
    license: "GPL",
    alias: ["xen:vif"],
}

extern "C" {
    fn xpvrs_netfront_max_queues() -> u32;
    fn xpvrs_netfront_trusted() -> bool;
}

/// TX ids and RX buffers per queue: the rings' size.
const IDS: usize = xen_netif::front::RING_SLOTS;
/// Most queues (Linux's `max_queues` default is the online CPUs, at most 8).
const MAX_QUEUES: u16 = 8;
/// Bytes of a received packet copied into the skb's linear part; the rest stays in the
/// pages, attached as fragments (a packet this short keeps its page in the engine).
const RX_COPY: usize = 256;
/// Most packets one poll delivers (the NAPI weight).
const BUDGET: usize = 64;
/// Fewer RX buffers than this after a refill arm the refill timer (a packet may need as many
/// slots: Linux's `NET_RX_SLOTS_MIN`).
const RX_SLOTS_MIN: usize = xen_sys::wire::netif::NR_SLOTS_MIN + 1;
/// When the refill timer polls again (Linux's: a tenth of a second).
const RX_REFILL_MS: u32 = 100;

// --- the platform ---------------------------------------------------------------------------

/// What a queue's interrupt does: schedule its NAPI poll, which owes the port a late EOI.
struct IrqTarget {
    net: NapiScheduler,
    queue: u16,
    eoi_owed: AtomicBool,
}

impl Kick for IrqTarget {
    fn kick(this: ArcBorrow<'_, Self>, reason: KickReason) {
        if reason == KickReason::Event {
            this.eoi_owed.store(true, Ordering::Release);
            this.net.schedule(this.queue);
        }
    }
}

/// The RX refill timer: a poll that could not post enough receive buffers (no memory) arms it,
/// and it polls again later (no EOI is owed for it).
impl Tick for IrqTarget {
    fn tick(this: ArcBorrow<'_, Self>) {
        this.net.schedule(this.queue);
    }
}

struct TxTable(KVec<TxEntry<Page>>);
struct RxTable(KVec<RxEntry<Page>>);

impl AsRef<[TxEntry<Page>]> for TxTable {
    fn as_ref(&self) -> &[TxEntry<Page>] {
        &self.0
    }
}
impl AsMut<[TxEntry<Page>]> for TxTable {
    fn as_mut(&mut self) -> &mut [TxEntry<Page>] {
        &mut self.0
    }
}
impl AsRef<[RxEntry<Page>]> for RxTable {
    fn as_ref(&self) -> &[RxEntry<Page>] {
        &self.0
    }
}
impl AsMut<[RxEntry<Page>]> for RxTable {
    fn as_mut(&mut self) -> &mut [RxEntry<Page>] {
        &mut self.0
    }
}

/// A queue's engine. Its platform is the device's [`Env`] with the queue's channels (with split
/// channels, `chan` is the TX one and `rx_chan` the RX one) and pages allocated without
/// sleeping (the engine allocates in `start_xmit` and in the NAPI poll).
type Engine = NetFront<Env<IrqTarget>, FrontRingPages, IDS, TxTable, RxTable>;

// --- counters ---------------------------------------------------------------------------------

/// `ethtool -S`: the device's totals, then each queue's packets.
const TOTALS: usize = 25;
const PER_QUEUE: usize = 2;
static STAT_NAMES: [&kernel::str::CStr; TOTALS + PER_QUEUE * MAX_QUEUES as usize] = [
    c_str!("tx_packets"),
    c_str!("tx_bytes"),
    c_str!("tx_slots"),
    c_str!("tx_errors"),
    c_str!("tx_aborted"),
    c_str!("tx_linearised"),
    c_str!("tx_gso"),
    c_str!("tx_dropped"),
    c_str!("rx_packets"),
    c_str!("rx_bytes"),
    c_str!("rx_slots"),
    c_str!("rx_errors"),
    c_str!("rx_gso"),
    c_str!("rx_dropped"),
    c_str!("notifications_sent"),
    c_str!("events_received"),
    c_str!("spurious_events"),
    c_str!("grants"),
    c_str!("grant_ends"),
    c_str!("deferred_frees"),
    c_str!("copied_bytes"),
    c_str!("lent_bytes"),
    c_str!("tx_still_mapped"),
    c_str!("page_allocs"),
    c_str!("rx_hashed"),
    c_str!("queue0_tx_packets"),
    c_str!("queue0_rx_packets"),
    c_str!("queue1_tx_packets"),
    c_str!("queue1_rx_packets"),
    c_str!("queue2_tx_packets"),
    c_str!("queue2_rx_packets"),
    c_str!("queue3_tx_packets"),
    c_str!("queue3_rx_packets"),
    c_str!("queue4_tx_packets"),
    c_str!("queue4_rx_packets"),
    c_str!("queue5_tx_packets"),
    c_str!("queue5_rx_packets"),
    c_str!("queue6_tx_packets"),
    c_str!("queue6_rx_packets"),
    c_str!("queue7_tx_packets"),
    c_str!("queue7_rx_packets"),
];

/// The totals of `ethtool -S` (its first `TOTALS` names), of a queue or of all.
fn totals(s: &FrontStats, c: &Counts) -> [u64; TOTALS] {
    [
        s.tx_packets,
        s.tx_bytes,
        s.tx_slots,
        s.tx_errors,
        s.tx_aborted,
        s.tx_linearised,
        s.tx_gso,
        c.tx_dropped,
        s.rx_packets,
        s.rx_bytes,
        s.rx_slots,
        s.rx_errors,
        s.rx_gso,
        c.rx_dropped,
        s.notifications,
        s.events,
        s.spurious_events,
        s.grants,
        s.grant_ends,
        s.deferred_frees,
        s.copied_bytes,
        s.lent_bytes,
        s.tx_still_mapped,
        s.page_allocs,
        c.rx_hashed,
    ]
}

/// What debugfs shows of a queue (`/sys/kernel/debug/xenpvrs-netfront-<ifname>-q<N>/`, the
/// totals of `ethtool -S` for this queue, summed over its connections), refreshed by each
/// poll and at disconnect.
struct QCounters {
    index: u16,
    /// Read by debugfs (as plain u64s: `AtomicU64` has `u64`'s layout).
    vals: [AtomicU64; TOTALS],
}

impl QCounters {
    fn publish(&self, now: Option<&FrontStats>, counts: &Counts) {
        let s = now.map_or(counts.past, |n| counts.past.sum(n));
        let vals = totals(&s, counts);
        for (c, v) in self.vals.iter().zip(vals) {
            c.store(v, Ordering::Relaxed);
        }
    }
}

/// A queue's counters: the engines' (summed over its connections) and the glue's own.
#[derive(Clone, Copy, Default)]
struct Counts {
    /// Totals of engines already dropped (earlier connections).
    past: FrontStats,
    tx_dropped: u64,
    rx_dropped: u64,
    /// Packets received with the backend's Toeplitz hash, given to the stack as theirs.
    rx_hashed: u64,
}


/// An unused [`TxLent`].
const NO_PIECE: TxLent = TxLent {
    gfn: xen_sys::Gfn::new(0),
    offset: 0,
    len: 0,
};

/// The pieces that lend `slices` (an skb's head and frags) in place, one per page touched,
/// written into `out`; `None` if a slice is not in the direct map or they need more than
/// [`NR_SLOTS_MIN`] pieces (the packet is then copied).
fn lend_pieces<'a, 'b>(
    slices: impl Iterator<Item = &'a [u8]>,
    out: &'b mut [TxLent; NR_SLOTS_MIN],
) -> Option<&'b [TxLent]> {
    let mut n = 0;
    for s in slices {
        let mut at = 0;
        while at < s.len() {
            let rest = s.get(at..)?;
            let addr = rest.as_ptr();
            let gfn = xen_kernel::grant::direct_map_gfn(addr)?;
            let offset = addr as usize % PAGE;
            let len = (PAGE - offset).min(rest.len());
            *out.get_mut(n)? = TxLent {
                gfn,
                offset: u16::try_from(offset).ok()?,
                len: u16::try_from(len).ok()?,
            };
            n += 1;
            at += len;
        }
    }
    out.get(..n)
}

/// A finished TX packet: a lent skb (a non-zero token) is freed, or leaked for good if the
/// backend still maps it. Copied packets (token 0) were freed at `start_xmit`.
fn tx_done(c: TxCompletion) {
    if c.token == 0 {
        return;
    }
    // SAFETY: a non-zero token is an skb `xmit` gave up with `into_token` after `send_lent`
    // took it, and the engine completes each packet once.
    let Some(skb) = (unsafe { TxSkb::from_token(c.token) }) else {
        return;
    };
    if c.still_mapped {
        pr_alert!("XENPVRS-NETFRONT: the backend still maps a sent packet; leaking its memory\n");
        skb.leak();
    } else if c.outcome == TxOutcome::Okay {
        skb.consume();
    } else {
        drop(skb);
    }
}

// --- one queue ----------------------------------------------------------------------------------

struct QState {
    engine: Option<KBox<Engine>>,
    /// The interrupt targets: the queue's channel (TX with split channels), and the RX
    /// channel's with split channels.
    irq: Option<Arc<IrqTarget>>,
    rx_irq: Option<Arc<IrqTarget>>,
    /// Polls again when a refill fell short.
    refill: Option<Ticker<IrqTarget>>,
    /// Connected: packets may go to the ring.
    ready: bool,
    /// Work was found since the last EOI (else the EOI says spurious).
    worked: bool,
    /// TX lends the skb's own pages (`trusted`): else every packet is copied.
    lend: bool,
    counts: Counts,
}

/// One queue: engine, rings, channel; served by its NAPI context and `start_xmit`.
#[pin_data]
struct Queue {
    index: u16,
    counters: Arc<QCounters>,
    /// Taken by `start_xmit` and the NAPI poll (bottom halves off), and by process context
    /// only with bottom halves off ([`BhOff`]).
    #[pin]
    state: SpinLock<QState>,
}

impl Queue {
    fn new(index: u16, counters: Arc<QCounters>) -> impl PinInit<Self> {
        pin_init!(Queue {
            index,
            counters,
            state <- new_spinlock!(QState {
                engine: None,
                irq: None,
                rx_irq: None,
                refill: None,
                ready: false,
                worked: false,
                lend: false,
                counts: Counts::default(),
            }),
        })
    }

    /// Builds the queue's rings, channel and engine (process context); returns what goes into
    /// XenStore.
    #[inline(never)]
    fn setup(
        &self,
        dev: &DeviceHandle,
        net: NapiScheduler,
        config: FrontConfig,
        split: bool,
        lend: bool,
    ) -> Result<QueueRings> {
        let backend = dev.otherend_id();
        let tx_ring = FrontRingPages::new(dev, 1)?;
        let rx_ring = FrontRingPages::new(dev, 1)?;
        let tx_ref = tx_ring.gref(0).ok_or(EINVAL)?;
        let rx_ref = rx_ring.gref(0).ok_or(EINVAL)?;
        let target = || {
            Arc::new(
                IrqTarget {
                    net,
                    queue: self.index,
                    eoi_owed: AtomicBool::new(false),
                },
                GFP_KERNEL,
            )
        };
        let irq = target()?;
        let rx_irq = if split { Some(target()?) } else { None };
        let refill = Ticker::one_shot(rx_irq.as_ref().unwrap_or(&irq).clone())?;
        let env = Env {
            dev: dev.clone(),
            grants: Grants::new(),
            chan: Channel::new(
                dev.clone(),
                irq.clone(),
                if split {
                    c_str!("xenpvrs-netfront-tx")
                } else {
                    c_str!("xenpvrs-netfront")
                },
            ),
            rx_chan: rx_irq
                .as_ref()
                .map(|t| Channel::new(dev.clone(), t.clone(), c_str!("xenpvrs-netfront-rx"))),
            atomic_pages: true,
            // Receive buffers come back from the stack to the queue's pool, as Linux's
            // netfront gets them, instead of a fresh zeroed page per buffer.
            rx_pool: Some(PagePool::new(IDS as u32)?),
            // One reference per TX and per RX slot, claimed without the grant table's
            // lock, as Linux's netfront reserves them.
            refs: Some(RefPool::new(2 * IDS as u16)?),
        };
        let port = env.chan.alloc_unbound(backend).map_err(|_| EIO)?;
        let rx_port = match env.rx_chan.as_ref() {
            Some(c) => c.alloc_unbound(backend).map_err(|_| EIO)?,
            None => port,
        };
        let mut tx = KVec::with_capacity(IDS, GFP_KERNEL)?;
        let mut rx = KVec::with_capacity(IDS, GFP_KERNEL)?;
        for _ in 0..IDS {
            tx.push(TxEntry::new(), GFP_KERNEL)?;
            rx.push(RxEntry::new(), GFP_KERNEL)?;
        }
        let engine = Engine::with_tables(
            env,
            tx_ring,
            rx_ring,
            backend,
            (port, rx_port),
            config,
            TxTable(tx),
            RxTable(rx),
        )
        .map_err(|_| EINVAL)?;
        let engine = KBox::new(engine, GFP_KERNEL)?;
        let old = {
            let _bh = BhOff::new();
            let mut st = self.state.lock();
            st.ready = false;
            st.worked = false;
            st.lend = lend;
            st.irq = Some(irq);
            st.rx_irq = rx_irq;
            (st.engine.replace(engine), st.refill.replace(refill))
        };
        // The old timer stops (waiting for a running tick) outside the lock.
        drop(old);
        Ok(QueueRings {
            tx_ref,
            rx_ref,
            channels: if split {
                Channels::Split {
                    tx: port,
                    rx: rx_port,
                }
            } else {
                Channels::Shared(port)
            },
        })
    }

    /// Connected: posts the RX buffers and lets packets through.
    fn start(&self) -> Result {
        let _bh = BhOff::new();
        let mut st = self.state.lock();
        let engine = st.engine.as_mut().ok_or(EINVAL)?;
        engine.refill_rx().map_err(|_| EIO)?;
        st.ready = true;
        Ok(())
    }

    /// Takes the engine out (closing it: every grant ended or deferred, packets in flight
    /// reported) and drops it with its channel and rings outside the lock.
    fn shutdown(&self) {
        let engine = {
            let _bh = BhOff::new();
            let mut st = self.state.lock();
            st.ready = false;
            st.irq = None;
            st.rx_irq = None;
            let mut engine = st.engine.take();
            if let Some(e) = engine.as_mut() {
                e.close(tx_done);
                let s = e.stats();
                st.counts.past = st.counts.past.sum(&s);
            }
            self.counters.publish(None, &st.counts);
            (engine, st.refill.take())
        };
        // Unbinds the interrupt and stops the refill timer (each waiting for a running
        // handler) and releases the rings.
        drop(engine);
    }

    /// The queue's totals (process context or any context with bottom halves off).
    fn stats(&self) -> (FrontStats, Counts) {
        let _bh = BhOff::new();
        let st = self.state.lock();
        let now = st.engine.as_ref().map(|e| e.stats()).unwrap_or_default();
        (st.counts.past.sum(&now), st.counts)
    }

    /// `start_xmit` on this queue (bottom halves off).
    fn xmit(&self, net: &NetRef<'_>, mut skb: TxSkb) -> Result<(), TxSkb> {
        let mut frags = [TxFrag::new(&[]); 18];
        let mut info = skb.info();
        if info.nr_frags as usize > frags.len() {
            // More fragments than the 17 of a default kernel (MAX_SKB_FRAGS is configurable):
            // one linear buffer instead, as Linux's netfront does.
            if skb.linearize().is_err() {
                self.state.lock().counts.tx_dropped += 1;
                return Ok(());
            }
            info = skb.info();
        }
        let nfrags = info.nr_frags as usize;
        if nfrags > frags.len() {
            self.state.lock().counts.tx_dropped += 1;
            return Ok(());
        }
        for (i, f) in frags.iter_mut().enumerate().take(nfrags) {
            match skb.frag(i as u32) {
                Some((data, page_offset)) => *f = TxFrag { data, page_offset },
                None => {
                    self.state.lock().counts.tx_dropped += 1;
                    return Ok(());
                }
            }
        }
        let gso = match info.gso {
            None => None,
            Some(net::Gso::Tcpv4(size)) => Some(Gso {
                ty: GsoType::Tcpv4,
                size,
            }),
            Some(net::Gso::Tcpv6(size)) => Some(Gso {
                ty: GsoType::Tcpv6,
                size,
            }),
            Some(net::Gso::Other) => {
                self.state.lock().counts.tx_dropped += 1;
                return Ok(());
            }
        };
        let csum = match info.csum {
            Checksum::None => TxChecksum::None,
            Checksum::Partial => TxChecksum::Partial,
            Checksum::Unnecessary => TxChecksum::Unnecessary,
        };
        let frag_slices = frags.get(..nfrags).unwrap_or(&[]);
        let mut lent = [NO_PIECE; NR_SLOTS_MIN];
        let mut st = self.state.lock();
        let QState {
            engine,
            ready,
            counts,
            lend,
            ..
        } = &mut *st;
        let engine = match engine.as_mut() {
            Some(e) if *ready => e,
            _ => {
                counts.tx_dropped += 1;
                return Ok(());
            }
        };
        // Lent in place when trusted and the layout allows (`lent_len`); else copied (and
        // packed).
        let pieces = if *lend {
            lend_pieces(
                Iterator::chain(
                    core::iter::once(skb.head()),
                    frag_slices.iter().map(|f| f.data),
                ),
                &mut lent,
            )
            .filter(|p| lent_len(p).is_some())
        } else {
            None
        };
        let sent = match pieces {
            Some(pieces) => engine
                .send_lent(pieces, csum, gso, skb.token())
                .map(|()| true),
            None => {
                let packet = TxPacket {
                    head: TxFrag::new(skb.head()),
                    frags: frag_slices,
                    csum,
                    gso,
                };
                engine.send(&packet, 0).map(|()| false)
            }
        };
        match sent {
            Ok(lent) => {
                let _ = engine.push_tx();
                if !engine.tx_room() {
                    // Woken by the poll once completions free room.
                    net.tx_stop(self.index);
                }
                drop(st);
                if lent {
                    // The backend reads it in place: the skb is the engine's until its
                    // completion hands the token back (`tx_done`).
                    skb.into_token();
                } else {
                    // The engine copied the packet: it is sent as far as the stack is concerned.
                    skb.consume();
                }
                Ok(())
            }
            Err(SendError::Busy) => {
                let _ = engine.push_tx();
                net.tx_stop(self.index);
                Err(skb)
            }
            Err(_) => {
                counts.tx_dropped += 1;
                Ok(())
            }
        }
    }

    /// The NAPI poll (softirq).
    fn poll(&self, napi: &net::Napi<'_>, budget: i32) -> i32 {
        let net = napi.net();
        let q = self.index;
        // A budget of 0 (netpoll) allows TX completions only; more than the array below holds
        // is worked through in several polls (the real budget is what a busy poll returns).
        let full_budget = budget.max(0);
        let budget = usize::try_from(budget).unwrap_or(0).min(BUDGET);
        let mut skbs: [Option<(RxSkb, Checksum, Option<net::Gso>)>; BUDGET] =
            [const { None }; BUDGET];
        let mut n = 0usize;
        let mut more = false;
        let mut st = self.state.lock();
        let QState {
            engine,
            worked,
            counts,
            refill,
            ..
        } = &mut *st;
        let Some(e) = engine.as_mut() else {
            drop(st);
            napi.complete_done(0);
            return 0;
        };
        if budget == 0 {
            if let Ok(p) = e.tx_event(tx_done) {
                *worked |= !p.spurious;
            }
            if net.tx_stopped(q) && e.tx_room() {
                net.tx_wake(q);
            }
            return 0;
        }
        match e.tx_event(tx_done) {
            Ok(p) => {
                more |= p.more;
                *worked |= !p.spurious;
            }
            Err(err) => pr_err!(
                "XENPVRS-NETFRONT {} queue {}: backend broke the TX protocol ({:?}); queue failed\n",
                net.name(),
                q,
                err
            ),
        }
        if net.tx_stopped(q) && e.tx_room() {
            net.tx_wake(q);
        }
        let mut dropped = 0u64;
        let mut hashed = 0u64;
        let polled = e.poll(budget as u32, |pkt| {
            match build_skb(napi, pkt, &mut hashed) {
                Some(skb) => match skbs.get_mut(n) {
                    Some(slot) => {
                        *slot = Some(skb);
                        n += 1;
                    }
                    None => dropped += 1,
                },
                None => dropped += 1,
            }
        });
        match polled {
            Ok(p) => {
                more |= p.more;
                *worked |= !p.spurious;
            }
            Err(err) => pr_err!(
                "XENPVRS-NETFRONT {} queue {}: backend broke the RX protocol ({:?}); queue failed\n",
                net.name(),
                q,
                err
            ),
        }
        counts.rx_dropped = counts.rx_dropped.wrapping_add(dropped);
        counts.rx_hashed = counts.rx_hashed.wrapping_add(hashed);
        // Pages taken by skbs are replaced here (atomic allocations). A ring left short of
        // buffers (no memory now) is refilled by a later poll from the refill timer: neither
        // stalled nor spinning.
        let _ = e.refill_rx();
        if e.rx_posted() < RX_SLOTS_MIN && !e.is_failed() {
            if let Some(t) = refill.as_ref() {
                t.arm(RX_REFILL_MS);
            }
        }
        self.counters.publish(Some(&e.stats()), counts);
        let done = n.min(budget);
        drop(st);
        // Delivered outside the lock: the stack may send on this very queue from here (an ARP
        // reply, a TCP ACK), and so may `complete_done` below, which flushes GRO.
        for slot in skbs.iter_mut().take(n) {
            if let Some((skb, csum, gso)) = slot.take() {
                if napi.receive(skb, csum, gso).is_err() {
                    self.state.lock().counts.rx_dropped += 1;
                }
            }
        }
        if more || done >= budget {
            // Polled again: the EOI waits for the end of the work.
            return full_budget;
        }
        if !napi.complete_done(done as i32) {
            // Rescheduled (or busy-polled): the next poll ends the work.
            return done as i32;
        }
        // Idle: the port may raise its next event.
        let mut st = self.state.lock();
        let QState {
            engine,
            irq,
            rx_irq,
            worked,
            ..
        } = &mut *st;
        if let Some(e) = engine.as_ref() {
            // Each channel that raised an event gets its EOI (one `worked` for both: a queue
            // that found work on either ring is not flooded).
            let mut eoi = false;
            if irq
                .as_ref()
                .is_some_and(|t| t.eoi_owed.swap(false, Ordering::AcqRel))
            {
                e.env().chan.eoi(!*worked);
                eoi = true;
            }
            if let (Some(t), Some(c)) = (rx_irq.as_ref(), e.env().rx_chan.as_ref()) {
                if t.eoi_owed.swap(false, Ordering::AcqRel) {
                    c.eoi(!*worked);
                    eoi = true;
                }
            }
            if eoi {
                *worked = false;
            }
        }
        done as i32
    }
}

/// An skb for a received packet: its first bytes copied, the rest of its pages attached.
fn build_skb(
    napi: &net::Napi<'_>,
    pkt: &mut xen_netif::front::RxPacket<Page>,
    hashed: &mut u64,
) -> Option<(RxSkb, Checksum, Option<net::Gso>)> {
    let copy = (pkt.meta.len as usize).min(RX_COPY);
    let mut skb = napi.rx_skb(copy as u32)?;
    let mut head = [0u8; RX_COPY];
    let head = head.get_mut(..copy)?;
    // The first bytes, which may span fragments.
    let mut copied = 0usize;
    let mut used = [0u16; 18];
    for (i, u) in used.iter_mut().enumerate().take(pkt.frag_count()) {
        if copied == copy {
            break;
        }
        let (page, off, len) = pkt.frag(i)?;
        let take = usize::from(len).min(copy - copied);
        if !page?.read_bytes(usize::from(off), head.get_mut(copied..copied + take)?)
        {
            return None;
        }
        copied += take;
        *u = take as u16;
    }
    if !skb.put(head) {
        return None;
    }
    // The rest: whole pages handed to the skb (the engine posts fresh ones).
    for (i, u) in used.iter().enumerate().take(pkt.frag_count()) {
        let (_, _, len) = pkt.frag(i)?;
        if *u == len {
            continue;
        }
        let (page, off, len) = pkt.take_page(i)?;
        let start = u32::from(off) + u32::from(*u);
        let rest = u32::from(len).checked_sub(u32::from(*u))?;
        if skb.add_page(page, start, rest).is_err() {
            return None;
        }
    }
    let csum = match pkt.meta.csum {
        RxChecksum::None => Checksum::None,
        RxChecksum::Unnecessary => Checksum::Unnecessary,
        RxChecksum::Partial => Checksum::Partial,
    };
    let gso = pkt.meta.gso.map(|g| match g.ty {
        GsoType::Tcpv6 => net::Gso::Tcpv6(g.size),
        _ => net::Gso::Tcpv4(g.size),
    });
    // The backend's Toeplitz hash (our control ring asked for it): the packet's flow hash, as
    // a NIC's receive hash would be. The type is a bit number of `XEN_NETIF_CTRL_HASH_TYPE_*`.
    if let Some(h) = pkt.meta.hash {
        if u32::from(h.algorithm) == bindings::XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ {
            let l4 = 1u32.checked_shl(u32::from(h.ty)).is_some_and(|bit| {
                bit & (bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP
                    | bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP)
                    != 0
            });
            skb.set_hash(u32::from_ne_bytes(h.value), l4);
            *hashed += 1;
        }
    }
    Some((skb, csum, gso))
}

// --- the net_device ---------------------------------------------------------------------------

/// What the `net_device` callbacks see: the queues and the negotiated offloads.
struct Net {
    queues: KVec<Pin<KBox<Queue>>>,
    /// Queues connected (0 while disconnected).
    active: AtomicU32,
    /// What the backend offers, as `Features` bits (`fix_features`).
    offered: AtomicU32,
}

impl Net {
    fn queue(&self, q: u16) -> Option<&Queue> {
        self.queues.get(usize::from(q)).map(|b| &**b)
    }
}

fn offload_features(o: &Offload) -> Features {
    let mut f = Features::RXCSUM;
    if o.sg {
        f = f.with(Features::SG);
    }
    if o.ipv4_csum {
        f = f.with(Features::IP_CSUM);
    }
    if o.ipv6_csum {
        f = f.with(Features::IPV6_CSUM);
    }
    if o.gso_tcpv4 {
        f = f.with(Features::TSO);
    }
    if o.gso_tcpv6 {
        f = f.with(Features::TSO6);
    }
    f
}

impl net::Operations for Net {
    fn open(this: ArcBorrow<'_, Self>, net: &NetRef<'_>) -> Result {
        net.tx_start_all();
        // Anything that arrived while the interface was down (a poll of a queue with no
        // engine just completes).
        for q in 0..this.queues.len() as u16 {
            net.napi_schedule(q);
        }
        Ok(())
    }

    fn stop(_this: ArcBorrow<'_, Self>, net: &NetRef<'_>) -> Result {
        net.tx_disable_all();
        Ok(())
    }

    fn start_xmit(
        this: ArcBorrow<'_, Self>,
        net: &NetRef<'_>,
        queue: u16,
        skb: TxSkb,
    ) -> Result<(), TxSkb> {
        match this.queue(queue) {
            Some(q) => q.xmit(net, skb),
            // The stack picks among the real queues, which are ours: drop it.
            None => Ok(()),
        }
    }

    fn poll(this: ArcBorrow<'_, Self>, napi: &net::Napi<'_>, budget: i32) -> i32 {
        match this.queue(napi.queue()) {
            Some(q) => q.poll(napi, budget),
            None => {
                napi.complete_done(0);
                0
            }
        }
    }

    fn stats(this: ArcBorrow<'_, Self>, s: &mut NetStats) {
        for q in this.queues.iter() {
            let (f, c) = q.stats();
            s.tx_packets += f.tx_packets;
            s.tx_bytes += f.tx_bytes;
            s.tx_errors += f.tx_errors + f.tx_aborted;
            s.tx_dropped += c.tx_dropped;
            s.rx_packets += f.rx_packets;
            s.rx_bytes += f.rx_bytes;
            s.rx_errors += f.rx_errors;
            s.rx_dropped += c.rx_dropped;
        }
    }

    fn change_mtu(this: ArcBorrow<'_, Self>, net: &NetRef<'_>, mtu: u32) -> Result {
        // Without scatter-gather a packet must fit one page.
        let sg = net.features().contains(Features::SG)
            && Features(this.offered.load(Ordering::Acquire)).contains(Features::SG);
        if mtu > 1500 && !sg {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Scatter-gather turned off: a packet must fit one page again, so an MTU above the
    /// Ethernet default falls back to it (as Linux's netfront does).
    fn set_features(_this: ArcBorrow<'_, Self>, net: &NetRef<'_>, features: Features) -> Result {
        if !features.contains(Features::SG) {
            net.clamp_mtu_locked(1500);
        }
        Ok(())
    }

    fn fix_features(this: ArcBorrow<'_, Self>, wanted: Features) -> Features {
        let offered = Features(this.offered.load(Ordering::Acquire));
        let switchable = Features::SG
            .with(Features::IPV6_CSUM)
            .with(Features::TSO)
            .with(Features::TSO6);
        Features(wanted.0 & !(switchable.0 & !offered.0))
    }

    fn ethtool_stats(this: ArcBorrow<'_, Self>, vals: &mut [u64]) {
        let mut t = FrontStats::default();
        let mut glue = Counts::default();
        for (i, q) in this.queues.iter().enumerate() {
            let (f, c) = q.stats();
            t = t.sum(&f);
            glue.tx_dropped += c.tx_dropped;
            glue.rx_dropped += c.rx_dropped;
            glue.rx_hashed += c.rx_hashed;
            if let Some(v) = vals.get_mut(TOTALS + PER_QUEUE * i) {
                *v = f.tx_packets;
            }
            if let Some(v) = vals.get_mut(TOTALS + PER_QUEUE * i + 1) {
                *v = f.rx_packets;
            }
        }
        for (v, t) in vals.iter_mut().zip(totals(&t, &glue)) {
            *v = t;
        }
    }
}

// --- the device ---------------------------------------------------------------------------------

struct Ctl {
    machine: Machine,
    st: CtlState,
}

/// The control ring's engine: its platform is the device's [`Env`], whose channel kicks the
/// device (the work item serves the ring).
type CtrlEngine = CtrlFront<Env<Dev>, FrontRingPages>;

struct CtlState {
    store: Option<KernelStore<Dev>>,
    offer: Option<BackOffer>,
    request: Option<FrontRequest>,
    offload: Offload,
    limits: FrontLimits,
    connected: bool,
    connections: u32,
    /// The control ring (receive hashing), with several queues and a backend offering it.
    ctrl: Option<KBox<CtrlEngine>>,
    /// Its sequence was started (once the backend is Connected: it binds the channel then).
    ctrl_started: bool,
    /// How it ended was logged.
    ctrl_reported: bool,
    /// TX lends the skbs' pages (the `trusted` parameter and our `trusted` key).
    lend: bool,
    /// The queues' debugfs counters while connected.
    debug: KVec<DebugCounters<QCounters>>,
}

/// One virtual network interface.
#[pin_data]
struct Dev {
    handle: DeviceHandle,
    net: Arc<Net>,
    /// The interface; `None` only while probe builds it and after remove.
    #[pin]
    netdev: Mutex<Option<NetDevice<Net>>>,
    #[pin]
    ctl: Mutex<Ctl>,
    #[pin]
    ctl_work: Work<Dev, 0>,
    backend_state: AtomicU32,
    resumed: AtomicU64,
    /// The control ring's channel raised an event: the work item owes it a late EOI.
    ctrl_eoi_owed: AtomicBool,
}

impl_has_work! {
    impl HasWork<Self, 0> for Dev { self.ctl_work }
}

impl Kick for Dev {
    /// An event on the control ring's channel: the work item serves the ring. (No watches are
    /// registered through the device's store.)
    fn kick(this: ArcBorrow<'_, Self>, reason: KickReason) {
        if reason == KickReason::Event {
            this.ctrl_eoi_owed.store(true, Ordering::Release);
            let this: Arc<Dev> = this.into();
            let _ = workqueue::system().enqueue::<Arc<Dev>, 0>(this);
        }
    }
}

impl WorkItem<0> for Dev {
    type Pointer = Arc<Dev>;

    fn run(this: Arc<Dev>) {
        let Some(backend) = peer_state(&this.backend_state) else {
            return;
        };
        let mut guard = this.ctl.lock();
        this.drive(&mut guard, Input::Peer(backend), false);
        this.serve_ctrl(&mut guard.st, backend);
    }
}

impl Dev {
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

    fn read_offer(&self, st: &mut CtlState) -> Result<(), HandshakeError> {
        let store = st.store.as_mut().ok_or(EINVAL)?;
        let other = self.handle.otherend_path()?;
        st.offer = Some(BackOffer::read(&mut StoreDir::new(
            store,
            other.as_path()?,
            TxId::NONE,
        ))?);
        Ok(())
    }

    #[inline(never)]
    fn publish_rings(self: &Arc<Self>, st: &mut CtlState) -> Result<(), HandshakeError> {
        let offer = st.offer.ok_or(EINVAL)?;
        let (req, offload) = FrontRequest::negotiate(&st.limits, &offer)?;
        let net = {
            let netdev = self.netdev.lock();
            let netdev = netdev.as_ref().ok_or(ENODEV)?;
            // SAFETY: the scheduler goes to the queues' interrupt targets, which live in their
            // channels; every channel is unbound by `Disconnect`, which `remove` performs (the
            // machine's `Removed`) before it drops the device.
            unsafe { netdev.napi_scheduler() }
        };
        let nq = usize::try_from(req.num_queues).map_err(|_| EINVAL)?;
        let config = FrontConfig {
            tx: offload,
            rx: req.offload,
            tx_budget: BUDGET as u32,
        };
        // As Linux's netfront: pages are lent only to a backend trusted both by the module
        // parameter and by the toolstack (our `trusted` key, 1 when absent). A value that is
        // not a number is taken as untrusted.
        let lend = {
            // SAFETY: reads a module parameter.
            let param = unsafe { xpvrs_netfront_trusted() };
            let store = st.store.as_mut().ok_or(EINVAL)?;
            let me = self.handle.nodename_path()?;
            let key = read_u32(
                &mut StoreDir::new(store, me.as_path()?, TxId::NONE),
                "trusted",
                "trusted",
            );
            param && matches!(key, Ok(None) | Ok(Some(1..)))
        };
        st.lend = lend;
        let mut rings = KVec::new();
        for q in self.net.queues.iter().take(nq) {
            rings.push(
                q.setup(&self.handle, net, config, req.split_event_channels, lend)?,
                GFP_KERNEL,
            )?;
        }
        st.request = Some(req);
        st.offload = offload;
        // The control ring is an optimisation (the backend steers received packets by our
        // hash): without one the interface works all the same.
        close_ctrl(st);
        st.ctrl_reported = false;
        let ctrl = if wants_ctrl_ring(&offer, &req) {
            match self.setup_ctrl(req.num_queues) {
                Ok(c) => Some(c),
                Err(e) => {
                    pr_warn!(
                        "XENPVRS-NETFRONT {}: no control ring ({:?}); receive hashing stays the backend's\n",
                        self.handle.nodename(),
                        e
                    );
                    None
                }
            }
        } else {
            None
        };
        let store = st.store.as_mut().ok_or(EINVAL)?;
        let me = self.handle.nodename_path()?;
        with_transaction(store, 16, |s, tx| -> Result<(), FeatureError> {
            let mut dir = StoreDir::new(s, me.as_path()?, tx);
            req.write(&mut dir)?;
            for (q, r) in rings.iter().enumerate() {
                write_queue(&mut dir, &req, q as u32, r)?;
            }
            if let Some((_, ring)) = ctrl.as_ref() {
                write_ctrl_ring(&mut dir, &offer, ring)?;
            }
            Ok(())
        })?;
        st.ctrl = ctrl.map(|(c, _)| c);
        Ok(())
    }

    /// The control ring: one granted page and its own event channel, for a hash over
    /// `queues` queues.
    fn setup_ctrl(self: &Arc<Self>, queues: u32) -> Result<(KBox<CtrlEngine>, CtrlRing)> {
        let backend = self.handle.otherend_id();
        let ring = FrontRingPages::new(&self.handle, 1)?;
        let ring_ref = ring.gref(0).ok_or(EINVAL)?;
        let env = Env {
            dev: self.handle.clone(),
            grants: Grants::new(),
            chan: Channel::new(
                self.handle.clone(),
                self.clone(),
                c_str!("xenpvrs-netfront-ctrl"),
            ),
            rx_chan: None,
            atomic_pages: false,
            rx_pool: None,
            refs: None,
        };
        let port = env.chan.alloc_unbound(backend).map_err(|_| EIO)?;
        let engine = CtrlFront::new(env, ring, backend, port, HashConfig::new(queues))
            .map_err(|_| EINVAL)?;
        Ok((KBox::new(engine, GFP_KERNEL)?, CtrlRing { ring_ref, port }))
    }

    /// Serves the control ring (the work item, after the state machine): starts the sequence
    /// once the backend is Connected, takes its answers on events (then the late EOI), and
    /// logs how it ended, once. A backend that breaks the control protocol is hostile or
    /// broken: the ring is given up (hashing stays off) and the data path goes on.
    fn serve_ctrl(&self, st: &mut CtlState, backend: XenbusState) {
        let owed = self.ctrl_eoi_owed.swap(false, Ordering::AcqRel);
        let Some(c) = st.ctrl.as_mut() else {
            return;
        };
        let mut worked = false;
        if !st.ctrl_started && st.connected && backend == XenbusState::Connected {
            st.ctrl_started = true;
            worked = true;
            if let Err(e) = c.start() {
                pr_warn!(
                    "XENPVRS-NETFRONT {}: control ring: cannot start ({:?})\n",
                    self.handle.nodename(),
                    e
                );
            }
        }
        if owed {
            let spurious = match c.handle_event() {
                Ok(p) => p.spurious,
                Err(_) => true,
            };
            c.env().chan.eoi(spurious && !worked);
        }
        if st.ctrl_reported {
            return;
        }
        let Some(outcome) = c.outcome() else {
            return;
        };
        st.ctrl_reported = true;
        let name = self.handle.nodename();
        match outcome {
            CtrlOutcome::Configured(h) => pr_info!(
                "XENPVRS-NETFRONT {}: receive hashing on: toeplitz key={} flags={:#x} mapping={} requests={}\n",
                name,
                h.key_len,
                h.flags.bits(),
                h.mapping_entries,
                c.stats().requests
            ),
            other => pr_warn!(
                "XENPVRS-NETFRONT {}: receive hashing off: {:?}\n",
                name,
                other
            ),
        }
    }

    fn connect(self: &Arc<Self>, st: &mut CtlState) -> Result<(), HandshakeError> {
        let req = st.request.ok_or(EINVAL)?;
        // The device stays borrowed (its mutex held) for the whole connect.
        let netdev = self.netdev.lock();
        let net = netdev.as_ref().ok_or(ENODEV)?.net();
        let nq = u16::try_from(req.num_queues).map_err(|_| EINVAL)?;
        self.net
            .offered
            .store(offload_features(&st.offload).0, Ordering::Release);
        net.set_queues(nq)?;
        net.update_features();
        for q in self.net.queues.iter().take(usize::from(nq)) {
            q.start()?;
        }
        self.net.active.store(u32::from(nq), Ordering::Release);
        // The toolstack's MTU, as Linux's netfront takes it.
        let mtu = {
            let store = st.store.as_mut().ok_or(EINVAL)?;
            let other = self.handle.otherend_path()?;
            read_mtu(&mut StoreDir::new(store, other.as_path()?, TxId::NONE)).unwrap_or(1500)
        };
        if mtu != net.mtu() {
            if let Err(e) = net.set_mtu(mtu) {
                pr_warn!(
                    "XENPVRS-NETFRONT {}: cannot take the backend's mtu {} ({:?})\n",
                    net.name(),
                    mtu,
                    e
                );
            }
        }
        net.set_carrier(true);
        net.tx_wake_all();
        if net.is_running() {
            for q in 0..nq {
                net.napi_schedule(q);
            }
        }
        st.connected = true;
        st.connections = st.connections.wrapping_add(1);
        st.debug = DebugCounters::for_queues(
            self.net.queues.iter().take(usize::from(nq)).map(|q| &q.counters),
            STAT_NAMES.first_chunk::<TOTALS>().ok_or(EINVAL)?,
            |c| &c.vals,
            |c| CString::try_from_fmt(fmt!("xenpvrs-netfront-{}-q{}", net.name(), c.index)),
        )?;
        let o = st.offload;
        pr_info!(
            "XENPVRS-NETFRONT {}: connected connections={} resumes={} queues={} sg={} tso4={} tso6={} csum4={} csum6={} mtu={} split-event-channels={} trusted={}\n",
            net.name(),
            st.connections,
            self.resumed.load(Ordering::Relaxed),
            nq,
            u8::from(o.sg),
            u8::from(o.gso_tcpv4),
            u8::from(o.gso_tcpv6),
            u8::from(o.ipv4_csum),
            u8::from(o.ipv6_csum),
            net.mtu(),
            u8::from(req.split_event_channels),
            u8::from(st.lend)
        );
        Ok(())
    }

    /// `Quiesce`: no more packets to the rings.
    fn quiesce(&self) {
        if let Some(netdev) = self.netdev.lock().as_ref() {
            let net = netdev.net();
            net.set_carrier(false);
            net.tx_disable_all();
        }
    }

    /// `Disconnect`: drops every queue's engine (ending or deferring every grant, unbinding the
    /// channels); the interface stays, carrier off. Idempotent.
    fn disconnect(&self, st: &mut CtlState, why: &str) {
        let netdev = self.netdev.lock();
        let net = netdev.as_ref().map(|n| n.net());
        if let Some(net) = net.as_ref() {
            net.set_carrier(false);
            net.tx_disable_all();
        }
        self.net.active.store(0, Ordering::Release);
        for q in self.net.queues.iter() {
            q.shutdown();
        }
        // The control ring's engine goes too (its channel holds a reference on the device).
        close_ctrl(st);
        st.debug = KVec::new();
        let was = st.connected || st.request.is_some();
        st.connected = false;
        st.request = None;
        if was {
            pr_info!(
                "XENPVRS-NETFRONT {}: disconnected ({})\n",
                net.as_ref().map_or(c_str!("?"), |n| n.name()),
                why
            );
        }
    }
}

/// Closes the control ring's engine, if any (its page's grant ended, or the page deferred if the
/// backend still maps it) and drops it with its channel and ring.
fn close_ctrl(st: &mut CtlState) {
    if let Some(mut c) = st.ctrl.take() {
        c.close();
    }
    st.ctrl_started = false;
}

struct Glue<'a> {
    dev: &'a Arc<Dev>,
    st: &'a mut CtlState,
    resuming: bool,
}

impl Perform for Glue<'_> {
    type Error = HandshakeError;

    fn perform(&mut self, action: Action) -> Result<(), HandshakeError> {
        let dev = self.dev;
        match action {
            Action::ReadPeerFeatures => dev.read_offer(self.st),
            Action::PublishRingRefs => dev.publish_rings(self.st),
            // Nothing to read: the MAC was read at probe, the MTU is taken at connect.
            Action::ReadDeviceProperties => Ok(()),
            Action::Connect => dev.connect(self.st),
            Action::Quiesce => {
                dev.quiesce();
                Ok(())
            }
            Action::Disconnect => {
                let why = if self.resuming {
                    "restored; reconnecting"
                } else {
                    match XenbusState::try_from(dev.backend_state.load(Ordering::Acquire)) {
                        Ok(XenbusState::Closing | XenbusState::Closed) => "backend closed",
                        Ok(XenbusState::Unknown) | Err(_) => "backend gone",
                        Ok(_) => "closed",
                    }
                };
                dev.disconnect(self.st, why);
                Ok(())
            }
            Action::SwitchState(state) => Ok(dev.handle.switch_state(state)?),
            Action::ReportInvalidPeerState => {
                pr_warn!(
                    "XENPVRS-NETFRONT {}: the backend's state is not a XenBus state\n",
                    dev.handle.nodename()
                );
                Ok(())
            }
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
                "XENPVRS-NETFRONT {}: {:?} failed ({})\n",
                dev.handle.nodename(),
                action,
                e
            );
            return;
        }
        pr_err!(
            "XENPVRS-NETFRONT {}: handshake failed ({}) in {:?}\n",
            dev.handle.nodename(),
            e,
            action
        );
        dev.handle.handshake_error(&e);
    }
}

/// Our `mac` key.
fn read_mac(store: &mut KernelStore<Dev>, dev: &Device) -> Result<MacAddr> {
    let me = dev.nodename_path().map_err(|_| EINVAL)?;
    MacAddr::read(&mut StoreDir::new(
        store,
        me.as_path().map_err(|_| EINVAL)?,
        TxId::NONE,
    ))
    .map_err(|e| {
        pr_err!(
            "XENPVRS-NETFRONT {}: no usable mac ({:?})\n",
            dev.nodename(),
            e
        );
        ENODEV
    })
}

fn max_queues() -> u16 {
    // SAFETY: reads a module parameter.
    let q = unsafe { xpvrs_netfront_max_queues() };
    u16::try_from(q).unwrap_or(MAX_QUEUES).clamp(1, MAX_QUEUES)
}

struct Driver;

impl bus::Driver for Driver {
    type Data = Dev;
    const SIDE: Side = Side::Frontend;
    const TYPE: &'static kernel::str::CStr = c_str!("vif");

    fn probe(dev: &Device) -> Result<Arc<Dev>> {
        let nq = max_queues();
        let mut queues = KVec::with_capacity(usize::from(nq), GFP_KERNEL)?;
        for i in 0..nq {
            let counters = Arc::new(
                QCounters {
                    index: i,
                    vals: [const { AtomicU64::new(0) }; TOTALS],
                },
                GFP_KERNEL,
            )?;
            queues.push(
                KBox::pin_init(Queue::new(i, counters), GFP_KERNEL)?,
                GFP_KERNEL,
            )?;
        }
        let net = Arc::new(
            Net {
                queues,
                active: AtomicU32::new(0),
                offered: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )?;
        let shared = net.clone();
        let this = Arc::pin_init(
            pin_init!(Dev {
                handle: dev.handle(),
                net: shared,
                netdev <- new_mutex!(None),
                ctl <- new_mutex!(Ctl {
                    machine: Machine::new_connecting_first(),
                    st: CtlState {
                        store: None,
                        offer: None,
                        request: None,
                        offload: Offload::default(),
                        limits: FrontLimits {
                            max_queues: u32::from(nq),
                            split_event_channels: true,
                            offload: Offload::ALL,
                            multicast_control: false,
                            xdp_headroom: None,
                        },
                        connected: false,
                        connections: 0,
                        ctrl: None,
                        ctrl_started: false,
                        ctrl_reported: false,
                        lend: false,
                        debug: KVec::new(),
                    },
                }),
                ctl_work <- new_work!("Dev::ctl_work"),
                backend_state: AtomicU32::new(bus::PEER_NOT_SEEN),
                resumed: AtomicU64::new(0),
                ctrl_eoi_owed: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )?;
        let mut store = KernelStore::new(this.clone());
        let mac = read_mac(&mut store, dev)?;
        let bus_info = CString::try_from_fmt(fmt!("{}", dev.nodename()))?;
        let all = Features::SG
            .with(Features::IP_CSUM)
            .with(Features::IPV6_CSUM)
            .with(Features::TSO)
            .with(Features::TSO6)
            .with(Features::RXCSUM);
        let params = NetParams {
            nr_queues: nq,
            mac: mac.0,
            mtu: 1500,
            min_mtu: MIN_MTU,
            max_mtu: MAX_MTU,
            hw_features: Features::SG
                .with(Features::IPV6_CSUM)
                .with(Features::TSO)
                .with(Features::TSO6),
            features: all,
            driver: c_str!("xenpvrs_netfront"),
            bus_info: &bus_info,
            stat_names: STAT_NAMES
                .get(..TOTALS + PER_QUEUE * usize::from(nq))
                .unwrap_or(&STAT_NAMES),
        };
        let mut netdev = NetDevice::new(&params, net, dev.as_device())?;
        netdev.register()?;
        let name = CString::try_from_fmt(fmt!("{}", netdev.net().name()))?;
        *this.netdev.lock() = Some(netdev);
        {
            let mut ctl = this.ctl.lock();
            ctl.st.store = Some(store);
        }
        let _ = dev.switch_state(XenbusState::Initialising);
        this.drive(&mut this.ctl.lock(), Input::Event(Event::Start), false);
        pr_info!(
            "XENPVRS-NETFRONT probe {} {} mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} max_queues={}\n",
            dev.nodename(),
            name.to_str().unwrap_or("?"),
            mac.0[0],
            mac.0[1],
            mac.0[2],
            mac.0[3],
            mac.0[4],
            mac.0[5],
            nq
        );
        Ok(this)
    }

    fn resume(this: ArcBorrow<'_, Dev>, _dev: &Device) -> Result {
        // Restored: the backend that had our rings is gone. The interface stays (with its
        // addresses and sockets); the machine disconnects the engines and joins the new
        // backend.
        let this: Arc<Dev> = this.into();
        cancel_sync(&this.ctl_work);
        this.backend_state
            .store(bus::PEER_NOT_SEEN, Ordering::Release);
        this.resumed.fetch_add(1, Ordering::Relaxed);
        let mut guard = this.ctl.lock();
        this.drive(&mut guard, Input::Resume, true);
        Ok(())
    }

    fn otherend_changed(data: ArcBorrow<'_, Dev>, _dev: &Device, state: XenbusState) {
        data.backend_state
            .store(u32::from(state), Ordering::Release);
        let this: Arc<Dev> = data.into();
        let _ = workqueue::system().enqueue::<Arc<Dev>, 0>(this);
    }

    fn remove(this: Arc<Dev>, _dev: &Device) {
        cancel_sync(&this.ctl_work);
        {
            let mut guard = this.ctl.lock();
            this.drive(&mut guard, Input::Event(Event::Removed), false);
            close_ctrl(&mut guard.st);
            guard.st.store = None;
        }
        // Every channel is unbound (Disconnect): nothing schedules NAPI any more.
        let netdev = this.netdev.lock().take();
        drop(netdev);
        pr_info!("XENPVRS-NETFRONT {}: removed\n", this.handle.nodename());
    }
}

struct NetFrontModule {
    _reg: Pin<KBox<bus::Registration<Driver>>>,
    _report: stats::UnloadReport,
}

impl kernel::Module for NetFrontModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if !xen_kernel::xen_domain() {
            return Err(ENODEV);
        }
        let reg = KBox::pin_init(
            bus::Registration::<Driver>::new(c_str!("xenpvrs-netfront")),
            GFP_KERNEL,
        )?;
        pr_info!(
            "XENPVRS-NETFRONT loaded max_queues={} trusted={}\n",
            max_queues(),
            // SAFETY: reads a module parameter.
            u8::from(unsafe { xpvrs_netfront_trusted() })
        );
        Ok(NetFrontModule {
            _reg: reg,
            _report: stats::UnloadReport("XENPVRS-NETFRONT"),
        })
    }
}
