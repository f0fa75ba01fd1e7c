//! The netback engine of one queue: TX requests parsed copy-once into packets moved by grant copy (head) and grant map or copy (frags), RX packets copied into the buffers the frontend posted.
//!
//! # TX (guest to dom0)
//!
//! Each TX slot is copied off the ring once and fed to [`TxParser`], which checks the chain
//! (slot count against [`NR_SLOTS_MIN`] and `fatal_skb_slots`, `offset + size` within the
//! page, the first slot's `size` against the others, extra-info types). A dropped packet's
//! slots are answered `NETIF_RSP_ERROR` at once; a fault fails the queue. A good packet is
//! moved with one batch of grant copies and one batch of grant maps:
//!
//! - its first [`BackConfig::head_len`] bytes (taken from as many slots as they span, so a
//!   header split across slots is whole) are grant-copied into a local page and handed over
//!   as a byte slice;
//! - the rest of each slot is a fragment: grant-mapped read-only (zero-copy, the default) or,
//!   with [`BackConfig::zero_copy`] off, grant-copied into a fresh local page the glue may
//!   take. A slot with no bytes left after the head gives no fragment.
//!
//! A slot whose copy or map fails drops its packet: every slot is answered `ERROR`, what did
//! map is unmapped. Copied slots are answered `OKAY` once the packet is handed over; mapped
//! ones when the glue says the stack is done with the pages ([`NetBack::tx_release`]), so the
//! frontend never reuses a page still mapped. Mapped slots wait in the caller's table
//! ([`TxPending`]); a packet is taken only while the table has room for the largest
//! ([`NR_SLOTS_MIN`] entries), so mappings in flight are bounded by the table.
//!
//! # RX (dom0 to guest)
//!
//! The glue queues packets ([`NetBack::rx_queue`], bounded by the caller's queue storage and
//! [`BackConfig::rx_queue_max_bytes`]); [`NetBack::rx_work`] takes the frontend's posted RX
//! requests and grant-copies each packet into as many buffers as it needs (packed 4096 bytes
//! a buffer from offset 0, one batch of copies for several packets), with a GSO extra-info
//! slot after the first when the frontend asked for that GSO type. A packet waits at the
//! head of the queue until enough buffers are posted. [`NetBack::rx_tick`], called with the
//! time, drops packets queued longer than `rx_drain_timeout` and reports a frontend that has
//! left the head packet waiting for `rx_stall_timeout` ([`Carrier::Off`]: the glue turns the
//! carrier off; new packets are refused until buffers come back, [`Carrier::On`]).
//!
//! # Events and notifications
//!
//! Every handler returns a [`Progress`] whose `spurious` (nothing found) goes to the late
//! EOI. Responses are published with the ring's push-and-check: the frontend is notified
//! only if it asked; notifications are sent by the engine, or collected for the glue to send
//! in one batch ([`BackConfig::defer_notify`], [`NetBack::take_notifications`]).

use crate::rx::RxHash;
use crate::tx::{Gso, Mcast, TxChecksum, TxDrop, TxFault, TxLimits, TxMeta, TxParser, TxReqBytes};
use crate::tx::{TxSlot, TxSlotKind, MAX_FATAL_SKB_SLOTS, PAGE};
use core::ops::DerefMut;
use xen_core::feature::netif::Offload;
use xen_core::platform::{PageAlloc, PageBytes, Progress};
use xen_evtchn::{EvtchnError, EvtchnOps, Nanos};
use xen_grant::{
    Access, CopyOp, CopyPtr, GrantError, GrantOps, MapRequest, MapResult, UnmapResult,
};
use xen_ring::{BackRing, RingError, SharedMemory};
use xen_sys::wire::netif::{
    ExtraFlags, ExtraInfo, GsoType, NetRxFlags, RxRequest, RxResponse, TxResponse, MAX_TX_SIZE,
    NR_SLOTS_MIN, RSP_ERROR, RSP_NULL, RSP_OKAY,
};
use xen_sys::{DomId, GrantRef, Port};

/// The most head bytes [`BackConfig::head_len`] may ask for.
pub const MAX_HEAD_LEN: usize = 256;
/// Linux's default `fatal_skb_slots`.
pub const FATAL_SKB_SLOTS: u32 = 20;
/// Linux's default `rx_stall_timeout_msecs`.
pub const RX_STALL_TIMEOUT_MS: u64 = 60_000;
/// Linux's default `rx_drain_timeout_msecs`.
pub const RX_DRAIN_TIMEOUT_MS: u64 = 10_000;
/// Pieces (page, offset, length) a queued RX packet may have; one with more is dropped.
pub const MAX_RX_PIECES: usize = NR_SLOTS_MIN + 1;
/// Grant copies of one RX batch (several whole packets; the largest packet needs at most
/// `MAX_RX_PIECES + 16`).
const RX_BATCH_OPS: usize = 64;
/// RX ring slots of one RX batch.
const RX_BATCH_SLOTS: usize = 48;
/// Grant copies one TX packet may need: head pieces and copied fragments.
const TX_OPS: usize = 2 * NR_SLOTS_MIN;

/// The platform's page type.
type LocalPage<P> = <P as GrantOps>::Page;

/// A TX ring slot as the backend writes it (a 4-byte response in a 12-byte slot).
pub type TxRspBytes = [u8; TxResponse::SIZE];
/// An RX ring slot.
pub type RxSlotBytes = [u8; RxResponse::SIZE];

/// How a backend queue is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackConfig {
    /// What the frontend may send us: our offer (`feature-sg`, `feature-gso-tcpv4/6`).
    pub tx: Offload,
    /// What we may send the frontend: `Offload::both(our offer, the frontend's request)`.
    /// A queued packet needing more (several slots without `sg`, a GSO type not asked for)
    /// is dropped.
    pub rx: Offload,
    /// Multicast control negotiated: multicast extra-info slots are requests to the glue.
    pub multicast_control: bool,
    /// Linux's `fatal_skb_slots`: a TX packet of more data slots fails the queue (clamped
    /// to 18..=64).
    pub fatal_skb_slots: u32,
    /// Bytes of each TX packet grant-copied into the head (at most [`MAX_HEAD_LEN`]).
    pub head_len: u16,
    /// Map TX fragments (zero-copy, the default); `false` copies them into local pages.
    pub zero_copy: bool,
    /// TX packets taken per [`NetBack::tx_event`] call at most.
    pub tx_budget: u32,
    /// RX packets sent per [`NetBack::rx_work`] call at most.
    pub rx_budget: u32,
    /// Bytes of RX packets queued at most.
    pub rx_queue_max_bytes: u32,
    /// Linux's `rx_stall_timeout_msecs`, as a span.
    pub rx_stall_timeout: Nanos,
    /// Linux's `rx_drain_timeout_msecs`, as a span.
    pub rx_drain_timeout: Nanos,
    /// Collect notifications for [`NetBack::take_notifications`] instead of sending them.
    pub defer_notify: bool,
}

impl Default for BackConfig {
    /// Linux's parameters, everything offered and negotiated.
    fn default() -> Self {
        BackConfig {
            tx: Offload::ALL,
            rx: Offload::ALL,
            multicast_control: true,
            fatal_skb_slots: FATAL_SKB_SLOTS,
            head_len: 128,
            zero_copy: true,
            tx_budget: 64,
            rx_budget: 64,
            rx_queue_max_bytes: 1 << 20,
            rx_stall_timeout: Nanos::from_ms(RX_STALL_TIMEOUT_MS),
            rx_drain_timeout: Nanos::from_ms(RX_DRAIN_TIMEOUT_MS),
            defer_notify: false,
        }
    }
}

/// Counters of a backend queue (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackStats {
    /// TX packets handed to the glue.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// TX ring slots consumed (data and extra-info).
    pub tx_slots: u64,
    /// TX packets dropped as malformed ([`TxDrop`]); the last is [`NetBack::last_tx_drop`].
    pub tx_dropped: u64,
    /// TX packets dropped because a grant copy, map or page allocation failed.
    pub tx_grant_errors: u64,
    /// GSO packets received from the frontend.
    pub tx_gso: u64,
    /// Multicast requests handed to the glue.
    pub tx_mcast: u64,
    /// TX grant copies (head and copied fragments).
    pub tx_copy_ops: u64,
    /// TX grant maps.
    pub tx_map_ops: u64,
    /// TX grant unmaps.
    pub tx_unmap_ops: u64,
    /// Unmaps that failed (the mapping is kept, its table entry never reused).
    pub tx_unmap_failures: u64,
    /// Most TX slots held mapped at once.
    pub tx_max_in_flight: u64,
    /// Times TX requests were left on the ring because the table was full.
    pub tx_stalls: u64,
    /// RX packets copied to the frontend.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// RX ring slots used (data and extra-info).
    pub rx_slots: u64,
    /// RX grant copies.
    pub rx_copy_ops: u64,
    /// RX packets sent with a failed copy (answered `ERROR`).
    pub rx_copy_errors: u64,
    /// RX packets dropped before sending (too long, too many pieces, an offload the
    /// frontend did not ask for).
    pub rx_dropped: u64,
    /// RX packets dropped after `rx_drain_timeout` in the queue.
    pub rx_expired: u64,
    /// RX packets refused by [`NetBack::rx_queue`].
    pub rx_refused: u64,
    /// GSO packets sent.
    pub rx_gso: u64,
    /// Times the queue was reported stalled.
    pub rx_stalls: u64,
    /// Notifications to the frontend (sent, or handed to the glue).
    pub notifications: u64,
    /// Event handler calls.
    pub events: u64,
    /// Those that found nothing to do.
    pub spurious_events: u64,
}

/// Why an engine call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The frontend broke a ring: the queue failed.
    Ring(RingError),
    /// A TX chain that is no packet: the queue failed.
    Fault(TxFault),
    /// A notification could not be sent.
    Evtchn(EvtchnError),
    /// The queue failed earlier (or was closed).
    Failed,
}

/// One entry of the TX table: a TX slot whose page is mapped, waiting for the glue's
/// [`NetBack::tx_release`]. The glue provides the table (on the heap in the kernel), filled
/// with [`TxPending::FREE`]; its length bounds the mappings in flight (256, the ring's size,
/// is plenty; fewer than [`NR_SLOTS_MIN`] entries disable TX).
pub struct TxPending<Mp> {
    busy: bool,
    /// A failed unmap left the mapping here: never reused.
    stuck: bool,
    generation: u32,
    id: u16,
    mapping: Option<Mp>,
    /// The next entry of the same packet (`u16::MAX`: none).
    next: u16,
}

impl<Mp> TxPending<Mp> {
    /// A free entry.
    pub const FREE: Self = TxPending {
        busy: false,
        stuck: false,
        generation: 0,
        id: 0,
        mapping: None,
        next: u16::MAX,
    };
}

/// Names a delivered TX packet whose fragments are mapped, for [`NetBack::tx_release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxToken {
    slot: u16,
    generation: u32,
}

/// Where a TX fragment's bytes are.
enum FragSrc<Pg> {
    /// Mapped: TX table entry.
    Mapped(u16),
    /// Copied into a local page (until the glue takes it).
    Copied(Option<Pg>),
}

struct Frag<Pg> {
    src: FragSrc<Pg>,
    offset: u16,
    len: u16,
}

/// A TX fragment as the glue sees it.
pub enum TxFragRef<'a, Mp, Pg> {
    /// The frontend's page, mapped read-only (valid until [`NetBack::tx_release`]).
    Mapped {
        /// The mapping.
        mapping: &'a Mp,
        /// Where the bytes start.
        offset: u16,
        /// Bytes.
        len: u16,
    },
    /// A local page holding a copy (`None` once taken).
    Copied {
        /// The page.
        page: Option<&'a Pg>,
        /// Where the bytes start.
        offset: u16,
        /// Bytes.
        len: u16,
    },
}

/// A TX packet handed to the glue: the head bytes, up to 18 fragments and the metadata.
///
/// If [`token`](Self::token) is set, fragments are mapped: the glue attaches them to its skb
/// and calls [`NetBack::tx_release`] with the token when the stack is done with them (or at
/// once, after copying them).
pub struct BackTxPacket<'a, Mp, Pg> {
    head: &'a [u8],
    frags: [Option<Frag<Pg>>; NR_SLOTS_MIN],
    count: usize,
    table: &'a [TxPending<Mp>],
    token: Option<TxToken>,
    /// The packet's length.
    pub len: u32,
    /// Checksum state.
    pub csum: TxChecksum,
    /// Segmentation offload.
    pub gso: Option<Gso>,
    /// The frontend's hash.
    pub hash: Option<RxHash>,
}

impl<Mp: PageBytes, Pg: PageBytes> BackTxPacket<'_, Mp, Pg> {
    /// The head: the packet's first `min(len, head_len)` bytes.
    pub fn head(&self) -> &[u8] {
        self.head
    }

    /// Fragments after the head (none has zero bytes).
    pub fn frag_count(&self) -> usize {
        self.count
    }

    /// Fragment `i`.
    pub fn frag(&self, i: usize) -> Option<TxFragRef<'_, Mp, Pg>> {
        let f = self.frags.get(i)?.as_ref()?;
        Some(match &f.src {
            FragSrc::Mapped(slot) => TxFragRef::Mapped {
                mapping: self.table.get(usize::from(*slot))?.mapping.as_ref()?,
                offset: f.offset,
                len: f.len,
            },
            FragSrc::Copied(page) => TxFragRef::Copied {
                page: page.as_ref(),
                offset: f.offset,
                len: f.len,
            },
        })
    }

    /// Takes a copied fragment's page (the glue's from now on).
    pub fn take_page(&mut self, i: usize) -> Option<(Pg, u16, u16)> {
        let f = self.frags.get_mut(i)?.as_mut()?;
        match &mut f.src {
            FragSrc::Copied(page) => Some((page.take()?, f.offset, f.len)),
            FragSrc::Mapped(_) => None,
        }
    }

    /// The token to release mapped fragments with, if any are mapped.
    pub fn token(&self) -> Option<TxToken> {
        self.token
    }

    /// Copies the packet (head, then fragments not taken) into `dst`; the bytes copied, or
    /// `None` if `dst` is too short or a page could not be read.
    pub fn copy_to(&self, dst: &mut [u8]) -> Option<usize> {
        let mut at = self.head.len();
        dst.get_mut(..at)?.copy_from_slice(self.head);
        for i in 0..self.count {
            let (ok, len) = match self.frag(i)? {
                TxFragRef::Mapped {
                    mapping,
                    offset,
                    len,
                } => {
                    let out = dst.get_mut(at..at.checked_add(usize::from(len))?)?;
                    (mapping.read_bytes(usize::from(offset), out), len)
                }
                TxFragRef::Copied {
                    page: Some(page),
                    offset,
                    len,
                } => {
                    let out = dst.get_mut(at..at.checked_add(usize::from(len))?)?;
                    (page.read_bytes(usize::from(offset), out), len)
                }
                TxFragRef::Copied { page: None, .. } => (true, 0),
            };
            if !ok {
                return None;
            }
            at += usize::from(len);
        }
        Some(at)
    }
}

/// What the TX side hands the glue.
pub enum TxEvent<'p, 'a, Mp, Pg> {
    /// A packet for the stack.
    Packet(&'p mut BackTxPacket<'a, Mp, Pg>),
    /// A multicast-filter request (its slots are answered `OKAY`).
    Mcast(Mcast),
}

/// A packet the glue queues for the frontend (an skb): its bytes as pieces of pages of the
/// platform, each within one page, and its offloads.
pub trait RxSource<Pg> {
    /// Piece `i` in order (page, offset, length), `None` past the last.
    fn piece(&self, i: usize) -> Option<(&Pg, u16, u16)>;
    /// Checksum state (`Partial` sets `csum_blank | data_validated` on the first response,
    /// `Unnecessary` sets `data_validated`).
    fn csum(&self) -> TxChecksum;
    /// Segmentation offload, if any.
    fn gso(&self) -> Option<Gso>;
}

/// A queued RX packet (an entry of the caller's RX queue storage, `None` when free).
pub struct RxQueued<S> {
    packet: S,
    at: Nanos,
    len: u32,
}

/// Why [`NetBack::rx_queue`] refused a packet (it is handed back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxRefused {
    /// The queue is full (packets or bytes): stop the netdev queue until
    /// [`NetBack::rx_room`].
    Full,
    /// The frontend stalled (the carrier is off).
    Stalled,
    /// Empty, longer than 65535 bytes, or of more than [`MAX_RX_PIECES`] pieces.
    BadPacket,
    /// The queue failed or was closed.
    Failed,
}

/// A carrier change [`NetBack::rx_tick`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// Nothing changed.
    Unchanged,
    /// The frontend left the head packet waiting for `rx_stall_timeout`: carrier off.
    Off,
    /// Buffers are posted again after a stall: carrier on.
    On,
}

/// Ports the glue must notify ([`NetBack::take_notifications`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notifications {
    /// The TX ring's port, if it needs an event.
    pub tx: Option<Port>,
    /// The RX ring's port (the same as TX with one channel), if it needs an event.
    pub rx: Option<Port>,
}

/// The backend of one netif queue.
///
/// The glue maps the frontend's two ring pages, binds the event channel(s) and hands them
/// over with [`new`](Self::new), with its TX table (`T`, entries [`TxPending::FREE`]) and RX
/// queue storage (`Q`, entries `None`). On a TX event it calls [`tx_event`](Self::tx_event)
/// (packets delivered through a callback), on an RX event [`rx_event`](Self::rx_event), with
/// one channel [`handle_event`](Self::handle_event). It queues packets for the frontend with
/// [`rx_queue`](Self::rx_queue) and sends them with [`rx_work`](Self::rx_work); it calls
/// [`rx_tick`](Self::rx_tick) with the time now and then (Linux checks every
/// `rx_stall_timeout` / `rx_drain_timeout`).
///
/// A fault fails the queue: nothing is read or answered any more, the RX queue is emptied,
/// every later event is spurious. Mapped fragments the glue holds stay mapped until
/// [`tx_release`](Self::tx_release); the glue keeps the engine until
/// [`tx_in_flight`](Self::tx_in_flight) is 0, then takes the rings back with
/// [`into_rings`](Self::into_rings).
pub struct NetBack<P: GrantOps, M, T, S, Q> {
    env: P,
    front: DomId,
    tx_port: Port,
    rx_port: Port,
    config: BackConfig,
    tx_ring: BackRing<M, TxReqBytes, TxRspBytes>,
    rx_ring: BackRing<M, RxSlotBytes, RxSlotBytes>,
    parser: TxParser,
    table: T,
    /// Entries of the table that are free.
    table_free: usize,
    /// Where the next free-entry search starts.
    table_cursor: usize,
    /// Slots mapped now.
    in_flight: usize,
    generation: u32,
    /// The local page TX heads are copied into.
    head_page: Option<LocalPage<P>>,
    queue: Q,
    q_head: usize,
    q_len: usize,
    q_bytes: u64,
    /// The head packet waits for buffers (at the last [`rx_work`](Self::rx_work)).
    rx_blocked: bool,
    rx_blocked_since: Option<Nanos>,
    rx_stalled: bool,
    /// Unconsumed RX requests at the last look.
    rx_ready_seen: u32,
    /// TX requests were left on the ring for want of table entries.
    tx_stalled: bool,
    notify: Notifications,
    last_tx_drop: Option<TxDrop>,
    failed: bool,
    stats: BackStats,
    _source: core::marker::PhantomData<S>,
}

/// A TX packet's grant copy, map or page allocation failed: nothing is held, nothing
/// answered.
struct GrantFailed;

impl<P, M, T, S, Q> NetBack<P, M, T, S, Q>
where
    P: GrantOps + EvtchnOps + PageAlloc<Page = <P as GrantOps>::Page>,
    <P as GrantOps>::Page: PageBytes,
    P::Mapping: PageBytes,
    M: SharedMemory,
    T: DerefMut<Target = [TxPending<P::Mapping>]>,
    S: RxSource<<P as GrantOps>::Page>,
    Q: DerefMut<Target = [Option<RxQueued<S>>]>,
{
    /// A queue over the mapped rings of `front`, notifying through `ports` (TX, RX: the same
    /// port twice with one event channel).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        env: P,
        tx_ring: M,
        rx_ring: M,
        front: DomId,
        ports: (Port, Port),
        config: BackConfig,
        mut table: T,
        mut queue: Q,
    ) -> Result<Self, RingError> {
        let tx_ring = BackRing::attach(tx_ring)?;
        let rx_ring = BackRing::attach(rx_ring)?;
        for e in table.iter_mut() {
            *e = TxPending::FREE;
        }
        for q in queue.iter_mut() {
            *q = None;
        }
        let table_free = table.len().min(usize::from(u16::MAX));
        let parser = TxParser::new(TxLimits {
            fatal_slots: usize::try_from(config.fatal_skb_slots).unwrap_or(MAX_FATAL_SKB_SLOTS),
            sg: config.tx.sg,
            gso_tcpv4: config.tx.gso_tcpv4,
            gso_tcpv6: config.tx.gso_tcpv6,
            multicast: config.multicast_control,
        });
        Ok(NetBack {
            env,
            front,
            tx_port: ports.0,
            rx_port: ports.1,
            config: BackConfig {
                head_len: config.head_len.min(MAX_HEAD_LEN as u16),
                tx_budget: config.tx_budget.max(1),
                rx_budget: config.rx_budget.max(1),
                ..config
            },
            tx_ring,
            rx_ring,
            parser,
            table,
            table_free,
            table_cursor: 0,
            in_flight: 0,
            generation: 0,
            head_page: None,
            queue,
            q_head: 0,
            q_len: 0,
            q_bytes: 0,
            rx_blocked: false,
            rx_blocked_since: None,
            rx_stalled: false,
            rx_ready_seen: 0,
            tx_stalled: false,
            notify: Notifications::default(),
            last_tx_drop: None,
            failed: false,
            stats: BackStats::default(),
            _source: core::marker::PhantomData,
        })
    }

    /// The platform.
    pub fn env(&self) -> &P {
        &self.env
    }

    /// Counters.
    pub fn stats(&self) -> BackStats {
        self.stats
    }

    /// Why the last malformed TX packet was dropped.
    pub fn last_tx_drop(&self) -> Option<TxDrop> {
        self.last_tx_drop
    }

    /// Whether the queue failed (or was closed).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// TX slots mapped and not released yet.
    pub fn tx_in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether TX requests wait on the ring for mapped fragments to be released: call
    /// [`tx_event`](Self::tx_event) after [`tx_release`](Self::tx_release)s.
    pub fn tx_stalled(&self) -> bool {
        self.tx_stalled
    }

    /// RX packets queued.
    pub fn rx_queued(&self) -> usize {
        self.q_len
    }

    /// Bytes of the RX packets queued.
    pub fn rx_queued_bytes(&self) -> u64 {
        self.q_bytes
    }

    /// Whether the frontend is reported stalled (carrier off).
    pub fn rx_stalled(&self) -> bool {
        self.rx_stalled
    }

    /// Whether a packet of 65535 bytes could be queued now (wake the netdev queue).
    pub fn rx_room(&self) -> bool {
        !self.failed
            && !self.rx_stalled
            && self.q_len < self.queue.len()
            && self.q_bytes + u64::from(MAX_TX_SIZE) <= u64::from(self.config.rx_queue_max_bytes)
    }

    /// The notifications collected with [`BackConfig::defer_notify`] (and forgets them).
    pub fn take_notifications(&mut self) -> Notifications {
        core::mem::take(&mut self.notify)
    }

    // ---- events ----

    fn count_event(&mut self, p: Progress) -> Progress {
        self.stats.events = self.stats.events.wrapping_add(1);
        if p.spurious {
            self.stats.spurious_events = self.stats.spurious_events.wrapping_add(1);
        }
        p
    }

    /// Handles a TX event: takes at most `tx_budget` packets, handing each good one to
    /// `deliver`, answers what can be answered and publishes. `more`: call again.
    pub fn tx_event(
        &mut self,
        mut deliver: impl FnMut(TxEvent<'_, '_, P::Mapping, LocalPage<P>>),
    ) -> Result<Progress, Error> {
        let r = self.tx_work(&mut deliver);
        let r = self.finish(r);
        match r {
            Ok(p) => Ok(self.count_event(p)),
            Err(e) => {
                self.count_event(Progress {
                    done: 0,
                    more: false,
                    spurious: e == Error::Failed,
                });
                Err(e)
            }
        }
    }

    /// Handles an RX event (the frontend posted buffers): sends what is queued, as
    /// [`rx_work`](Self::rx_work). Spurious if no buffer was posted since the last look and
    /// nothing was sent.
    pub fn rx_event(&mut self) -> Result<Progress, Error> {
        let r = self.rx_inner();
        let r = self.finish(r);
        match r {
            Ok(p) => Ok(self.count_event(p)),
            Err(e) => {
                self.count_event(Progress {
                    done: 0,
                    more: false,
                    spurious: e == Error::Failed,
                });
                Err(e)
            }
        }
    }

    /// Handles the event of a queue with one channel: TX, then RX. Spurious if neither
    /// found anything.
    pub fn handle_event(
        &mut self,
        mut deliver: impl FnMut(TxEvent<'_, '_, P::Mapping, LocalPage<P>>),
    ) -> Result<Progress, Error> {
        let tx = self.tx_work(&mut deliver);
        let r = match tx {
            Err(e) => Err(e),
            Ok(tx) => self.rx_inner().map(|rx| Progress {
                done: tx.done.saturating_add(rx.done),
                more: tx.more || rx.more,
                spurious: tx.spurious && rx.spurious,
            }),
        };
        let r = self.finish(r);
        match r {
            Ok(p) => Ok(self.count_event(p)),
            Err(e) => {
                self.count_event(Progress {
                    done: 0,
                    more: false,
                    spurious: e == Error::Failed,
                });
                Err(e)
            }
        }
    }

    /// Publishes queued responses (TX and RX) and notifies; a ring error fails the queue.
    fn finish(&mut self, r: Result<Progress, Error>) -> Result<Progress, Error> {
        let r = match r {
            Err(Error::Ring(e)) => Err(self.fail_with(Error::Ring(e))),
            Err(Error::Fault(f)) => Err(self.fail_with(Error::Fault(f))),
            other => other,
        };
        if self.failed {
            return r.and(Err(Error::Failed));
        }
        self.push()?;
        r
    }

    fn push(&mut self) -> Result<(), Error> {
        let tx = match self.tx_ring.push_responses() {
            Ok(n) => n.is_required(),
            Err(e) => return Err(self.fail_with(Error::Ring(e))),
        };
        let rx = match self.rx_ring.push_responses() {
            Ok(n) => n.is_required(),
            Err(e) => return Err(self.fail_with(Error::Ring(e))),
        };
        let mut want = Notifications::default();
        if tx {
            want.tx = Some(self.tx_port);
        }
        if rx {
            want.rx = Some(self.rx_port);
        }
        // One channel: one event covers both rings.
        if want.tx.is_some() && want.rx == want.tx {
            want.rx = None;
        }
        for port in [want.tx, want.rx].into_iter().flatten() {
            self.stats.notifications = self.stats.notifications.wrapping_add(1);
            if self.config.defer_notify {
                if self.notify.tx.is_none() {
                    self.notify.tx = Some(port);
                } else if self.notify.tx != Some(port) {
                    self.notify.rx = Some(port);
                }
            } else {
                self.env.notify(port).map_err(Error::Evtchn)?;
            }
        }
        Ok(())
    }

    // ---- TX ----

    fn tx_work(
        &mut self,
        deliver: &mut impl FnMut(TxEvent<'_, '_, P::Mapping, LocalPage<P>>),
    ) -> Result<Progress, Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        self.tx_stalled = false;
        let mut done = 0u32;
        let mut seen = 0u32;
        loop {
            if done >= self.config.tx_budget {
                return Ok(Progress {
                    done,
                    more: true,
                    spurious: false,
                });
            }
            if self.table_free < NR_SLOTS_MIN && self.config.zero_copy {
                // The glue calls `tx_event` again after releases; no event is needed
                // meanwhile.
                if !self.tx_stalled {
                    self.stats.tx_stalls = self.stats.tx_stalls.wrapping_add(1);
                }
                self.tx_stalled = true;
                return Ok(Progress {
                    done,
                    more: false,
                    spurious: false,
                });
            }
            match self.tx_packet(deliver)? {
                None => break,
                Some(()) => {
                    done += 1;
                    seen += 1;
                }
            }
        }
        let more = self
            .tx_ring
            .final_check_for_requests()
            .map_err(Error::Ring)?;
        Ok(Progress {
            done,
            more,
            spurious: seen == 0,
        })
    }

    /// Reads one packet's chain off the ring and serves it; `None` if the ring is empty.
    fn tx_packet(
        &mut self,
        deliver: &mut impl FnMut(TxEvent<'_, '_, P::Mapping, LocalPage<P>>),
    ) -> Result<Option<()>, Error> {
        let mut slots = [TxSlot::EMPTY; MAX_FATAL_SKB_SLOTS];
        let mut n = 0usize;
        let mut extras = 0usize;
        let end = loop {
            let raw = match self.tx_ring.next_request().map_err(Error::Ring)? {
                Some(raw) => raw,
                None if self.parser.in_packet() => {
                    self.parser.reset();
                    return Err(Error::Fault(TxFault::Incomplete));
                }
                None => return Ok(None),
            };
            self.stats.tx_slots = self.stats.tx_slots.wrapping_add(1);
            let fed = self.parser.feed(&raw).map_err(Error::Fault)?;
            match fed.kind {
                TxSlotKind::Data(s) => {
                    if let Some(dst) = slots.get_mut(n) {
                        *dst = s;
                    }
                    n += 1;
                }
                TxSlotKind::Extra => extras += 1,
            }
            if let Some(end) = fed.end {
                break end;
            }
        };
        let slots = slots.get(..n).unwrap_or(&[]);
        match end {
            Err(d) => {
                self.last_tx_drop = Some(d);
                self.stats.tx_dropped = self.stats.tx_dropped.wrapping_add(1);
                self.answer_all(slots, extras, RSP_ERROR)?;
            }
            Ok(meta) => match meta.mcast {
                Some(m) => {
                    self.stats.tx_mcast = self.stats.tx_mcast.wrapping_add(1);
                    deliver(TxEvent::Mcast(m));
                    self.answer_all(slots, extras, RSP_OKAY)?;
                }
                None => {
                    if let Err(GrantFailed) = self.tx_serve(slots, extras, &meta, deliver) {
                        self.stats.tx_grant_errors = self.stats.tx_grant_errors.wrapping_add(1);
                        self.answer_all(slots, extras, RSP_ERROR)?;
                    }
                }
            },
        }
        Ok(Some(()))
    }

    fn tx_respond(&mut self, id: u16, status: i16) -> Result<(), Error> {
        let mut r = TxResponse::ZERO;
        r.id = id;
        r.status = status;
        self.tx_ring
            .queue_response(&r.to_bytes())
            .map_err(Error::Ring)
    }

    /// Answers a packet's slots: the first, an `RSP_NULL` per extra-info slot, the rest.
    fn answer_all(&mut self, slots: &[TxSlot], extras: usize, status: i16) -> Result<(), Error> {
        for (i, s) in slots.iter().enumerate() {
            self.tx_respond(s.id, status)?;
            if i == 0 {
                for _ in 0..extras {
                    self.tx_respond(0, RSP_NULL)?;
                }
            }
        }
        Ok(())
    }

    /// Moves a good packet's bytes and hands it over. `Err`: a grant operation or an
    /// allocation failed; nothing is held and nothing was answered.
    fn tx_serve(
        &mut self,
        slots: &[TxSlot],
        extras: usize,
        meta: &TxMeta,
        deliver: &mut impl FnMut(TxEvent<'_, '_, P::Mapping, LocalPage<P>>),
    ) -> Result<(), GrantFailed> {
        let zero_copy = self.config.zero_copy;
        // Each slot: its own bytes, how many of them go to the head.
        let mut parts = [(0u16, 0u16, 0u16); NR_SLOTS_MIN];
        let mut head_left = meta.len.min(self.config.head_len);
        let head_len = head_left;
        for (i, (s, p)) in slots.iter().zip(parts.iter_mut()).enumerate() {
            let size = if i == 0 { meta.first_size } else { s.size };
            let h = size.min(head_left);
            head_left -= h;
            *p = (s.offset, size, h);
        }
        let nslots = slots.len().min(NR_SLOTS_MIN);
        if self.head_page.is_none() {
            self.head_page = self.env.alloc_page();
        }
        let Self {
            env,
            head_page,
            front,
            stats,
            ..
        } = self;
        let Some(head_page) = head_page.as_ref() else {
            return Err(GrantFailed);
        };
        // Copy-mode fragment pages.
        let mut pages: [Option<LocalPage<P>>; NR_SLOTS_MIN] = core::array::from_fn(|_| None);
        if !zero_copy {
            for (p, &(_, size, h)) in pages.iter_mut().zip(parts.iter()).take(nslots) {
                if size > h {
                    *p = Some(env.alloc_page().ok_or(GrantFailed)?);
                }
            }
        }
        let dummy = || CopyOp {
            source: CopyPtr::Foreign {
                domid: *front,
                gref: GrantRef::new(0),
                offset: 0,
            },
            dest: CopyPtr::Foreign {
                domid: *front,
                gref: GrantRef::new(0),
                offset: 0,
            },
            len: 0,
        };
        let mut ops: [CopyOp<'_, LocalPage<P>>; TX_OPS] = core::array::from_fn(|_| dummy());
        let mut nops = 0usize;
        let mut at = 0u16;
        let mut maps = [MapRequest {
            domid: *front,
            gref: GrantRef::new(0),
            access: Access::ReadOnly,
        }; NR_SLOTS_MIN];
        let mut map_slot = [0usize; NR_SLOTS_MIN];
        let mut nmaps = 0usize;
        for (i, (s, &(offset, size, h))) in slots.iter().zip(parts.iter()).enumerate() {
            if h > 0 {
                if let Some(op) = ops.get_mut(nops) {
                    *op = CopyOp {
                        source: CopyPtr::Foreign {
                            domid: *front,
                            gref: s.gref,
                            offset,
                        },
                        dest: CopyPtr::Local {
                            page: head_page,
                            offset: at,
                        },
                        len: h,
                    };
                    nops += 1;
                    at += h;
                }
            }
            if size > h {
                if zero_copy {
                    if let (Some(m), Some(w)) = (maps.get_mut(nmaps), map_slot.get_mut(nmaps)) {
                        m.gref = s.gref;
                        *w = i;
                        nmaps += 1;
                    }
                } else if let (Some(Some(page)), Some(op)) = (pages.get(i), ops.get_mut(nops)) {
                    *op = CopyOp {
                        source: CopyPtr::Foreign {
                            domid: *front,
                            gref: s.gref,
                            offset: offset + h,
                        },
                        dest: CopyPtr::Local { page, offset: 0 },
                        len: size - h,
                    };
                    nops += 1;
                }
            }
        }
        let mut ok = true;
        let mut results = [Err(GrantError::GeneralError); TX_OPS];
        if let (Some(o), Some(r)) = (ops.get(..nops), results.get_mut(..nops)) {
            if !o.is_empty() {
                stats.tx_copy_ops = stats.tx_copy_ops.wrapping_add(nops as u64);
                ok &= env.copy_batch(o, r).is_ok() && r.iter().all(Result::is_ok);
            }
        }
        let mut mapped: [Option<P::Mapping>; NR_SLOTS_MIN] = core::array::from_fn(|_| None);
        if nmaps > 0 {
            let mut res: [MapResult<P::Mapping>; NR_SLOTS_MIN] =
                core::array::from_fn(|_| MapResult::Pending);
            if let (Some(reqs), Some(res)) = (maps.get(..nmaps), res.get_mut(..nmaps)) {
                ok &= env.map_batch(reqs, res).is_ok();
                for (dst, r) in mapped.iter_mut().zip(res.iter_mut()) {
                    match core::mem::replace(r, MapResult::Pending) {
                        MapResult::Mapped(m) => {
                            stats.tx_map_ops = stats.tx_map_ops.wrapping_add(1);
                            *dst = Some(m);
                        }
                        MapResult::Pending | MapResult::Failed(_) => ok = false,
                    }
                }
            } else {
                ok = false;
            }
        }
        if !ok {
            unmap_all(env, &mut mapped, stats);
            return Err(GrantFailed);
        }
        let mut head = [0u8; MAX_HEAD_LEN];
        let head = head.get_mut(..usize::from(head_len)).unwrap_or(&mut []);
        if !head_page.read_bytes(0, head) {
            unmap_all(env, &mut mapped, stats);
            return Err(GrantFailed);
        }
        // Everything moved: mapped slots go to the table, the rest is answered.
        let mut frags: [Option<Frag<LocalPage<P>>>; NR_SLOTS_MIN] = core::array::from_fn(|_| None);
        let mut count = 0usize;
        let mut first_entry: Option<TxToken> = None;
        let mut prev: Option<usize> = None;
        let mut answer_now = [false; NR_SLOTS_MIN];
        let mut k = 0usize;
        let table = &mut *self.table;
        for (i, (&(offset, size, h), page)) in
            parts.iter().zip(pages.iter_mut()).take(nslots).enumerate()
        {
            let now = if size > h {
                let src = if zero_copy {
                    let m = mapped.get_mut(k).and_then(Option::take);
                    k += 1;
                    let Some(e) = claim(table, &mut self.table_cursor) else {
                        // The free count said there was room: cannot happen. The slot is
                        // answered; its bytes are missing from the packet.
                        if let Some(m) = m {
                            let mut one = [Some(m)];
                            unmap_all(env, &mut one, stats);
                        }
                        if let Some(a) = answer_now.get_mut(i) {
                            *a = true;
                        }
                        continue;
                    };
                    self.table_free = self.table_free.saturating_sub(1);
                    self.in_flight += 1;
                    self.generation = self.generation.wrapping_add(1);
                    if let Some(entry) = table.get_mut(e) {
                        entry.busy = true;
                        entry.generation = self.generation;
                        entry.id = slots.get(i).map_or(0, |s| s.id);
                        entry.mapping = m;
                        entry.next = u16::MAX;
                    }
                    let e16 = u16::try_from(e).unwrap_or(u16::MAX);
                    match prev {
                        Some(p) => {
                            if let Some(pe) = table.get_mut(p) {
                                pe.next = e16;
                            }
                        }
                        None => {
                            first_entry = Some(TxToken {
                                slot: e16,
                                generation: self.generation,
                            })
                        }
                    }
                    prev = Some(e);
                    FragSrc::Mapped(e16)
                } else {
                    FragSrc::Copied(page.take())
                };
                if let Some(f) = frags.get_mut(count) {
                    *f = Some(Frag {
                        src,
                        offset: if zero_copy { offset + h } else { 0 },
                        len: size - h,
                    });
                    count += 1;
                }
                !zero_copy
            } else {
                true
            };
            if let Some(a) = answer_now.get_mut(i) {
                *a = now;
            }
        }
        let _ = prev;
        stats.tx_max_in_flight = stats.tx_max_in_flight.max(self.in_flight as u64);
        stats.tx_packets = stats.tx_packets.wrapping_add(1);
        stats.tx_bytes = stats.tx_bytes.wrapping_add(u64::from(meta.len));
        if meta.gso.is_some() {
            stats.tx_gso = stats.tx_gso.wrapping_add(1);
        }
        let mut packet = BackTxPacket {
            head,
            frags,
            count,
            table: &self.table,
            token: first_entry,
            len: u32::from(meta.len),
            csum: meta.csum,
            gso: meta.gso,
            hash: meta.hash,
        };
        deliver(TxEvent::Packet(&mut packet));
        drop(packet);
        // The first slot is answered first, then the extras' RSP_NULL, then the others
        // answered now; mapped slots are answered at release.
        for (i, s) in slots.iter().enumerate().take(nslots) {
            if answer_now.get(i).copied().unwrap_or(false) {
                // Cannot fail: each slot was consumed and is answered once.
                let _ = self.tx_respond(s.id, RSP_OKAY);
            }
            if i == 0 {
                for _ in 0..extras {
                    let _ = self.tx_respond(0, RSP_NULL);
                }
            }
        }
        Ok(())
    }

    /// The glue is done with a delivered packet's mapped fragments: unmaps them (one batch)
    /// and answers their slots `OKAY`, then publishes (and notifies if the frontend asked).
    /// Returns `false` for a token that names nothing in flight. After a failure the pages
    /// are unmapped all the same and nothing is answered.
    pub fn tx_release(&mut self, token: TxToken) -> Result<bool, Error> {
        let mut at = usize::from(token.slot);
        match self.table.get(at) {
            Some(e) if e.busy && !e.stuck && e.generation == token.generation => {}
            _ => return Ok(false),
        }
        let mut batch: [Option<P::Mapping>; NR_SLOTS_MIN] = core::array::from_fn(|_| None);
        let mut entries = [usize::MAX; NR_SLOTS_MIN];
        let mut n = 0usize;
        while let Some(e) = self.table.get_mut(at) {
            if !e.busy || n >= NR_SLOTS_MIN {
                break;
            }
            if let (Some(b), Some(w)) = (batch.get_mut(n), entries.get_mut(n)) {
                *b = e.mapping.take();
                *w = at;
            }
            n += 1;
            at = usize::from(e.next);
        }
        let mut results = [UnmapResult::Skipped; NR_SLOTS_MIN];
        let live = batch.iter().filter(|m| m.is_some()).count();
        if live > 0 {
            let _ = self.env.unmap_batch(&mut batch, &mut results);
            self.stats.tx_unmap_ops = self.stats.tx_unmap_ops.wrapping_add(live as u64);
        }
        for (i, &slot) in entries.iter().enumerate().take(n) {
            let Some(e) = self.table.get_mut(slot) else {
                continue;
            };
            let id = e.id;
            if let Some(Some(m)) = batch.get_mut(i).map(Option::take) {
                // The unmap failed: keep the mapping, never reuse the entry.
                e.mapping = Some(m);
                e.stuck = true;
                self.stats.tx_unmap_failures = self.stats.tx_unmap_failures.wrapping_add(1);
            } else {
                e.busy = false;
                e.next = u16::MAX;
                self.table_free += 1;
            }
            self.in_flight = self.in_flight.saturating_sub(1);
            if !self.failed {
                self.tx_respond(id, RSP_OKAY)
                    .map_err(|e| self.fail_with(e))?;
            }
        }
        if !self.failed {
            self.push()?;
        }
        Ok(true)
    }

    // ---- RX ----

    /// Queues a packet for the frontend (call [`rx_work`](Self::rx_work) to send it). `now`
    /// starts its drain timer. A refused packet is handed back.
    pub fn rx_queue(&mut self, packet: S, now: Nanos) -> Result<(), (S, RxRefused)> {
        if self.failed {
            return Err(self.refuse(packet, RxRefused::Failed));
        }
        if self.rx_stalled {
            return Err(self.refuse(packet, RxRefused::Stalled));
        }
        let mut len = 0u32;
        let mut pieces = 0usize;
        while let Some((_, offset, l)) = packet.piece(pieces) {
            if usize::from(offset) + usize::from(l) > PAGE || pieces >= MAX_RX_PIECES {
                return Err(self.refuse(packet, RxRefused::BadPacket));
            }
            len = len.saturating_add(u32::from(l));
            pieces += 1;
        }
        if len == 0 || len > MAX_TX_SIZE {
            return Err(self.refuse(packet, RxRefused::BadPacket));
        }
        let cap = self.queue.len();
        if self.q_len >= cap
            || self.q_bytes + u64::from(len) > u64::from(self.config.rx_queue_max_bytes)
        {
            return Err(self.refuse(packet, RxRefused::Full));
        }
        let at = (self.q_head + self.q_len) % cap;
        let Some(slot) = self.queue.get_mut(at) else {
            return Err(self.refuse(packet, RxRefused::Full));
        };
        *slot = Some(RxQueued {
            packet,
            at: now,
            len,
        });
        self.q_len += 1;
        self.q_bytes += u64::from(len);
        Ok(())
    }

    fn refuse(&mut self, packet: S, why: RxRefused) -> (S, RxRefused) {
        self.stats.rx_refused = self.stats.rx_refused.wrapping_add(1);
        (packet, why)
    }

    fn pop(&mut self) -> Option<RxQueued<S>> {
        if self.q_len == 0 {
            return None;
        }
        let q = self.queue.get_mut(self.q_head).and_then(Option::take);
        self.q_head = (self.q_head + 1) % self.queue.len().max(1);
        self.q_len -= 1;
        if let Some(q) = &q {
            self.q_bytes = self.q_bytes.saturating_sub(u64::from(q.len));
        }
        q
    }

    fn head(&self) -> Option<&RxQueued<S>> {
        if self.q_len == 0 {
            return None;
        }
        self.queue.get(self.q_head)?.as_ref()
    }

    /// Sends queued packets into the buffers the frontend posted, at most `rx_budget`, in
    /// batches of grant copies, and publishes the responses. `more`: call again.
    pub fn rx_work(&mut self) -> Result<Progress, Error> {
        let r = self.rx_inner();
        self.finish(r)
    }

    /// Unconsumed RX requests (loads the frontend's producer once).
    fn rx_ready(&mut self) -> Result<u32, Error> {
        let batch = self.rx_ring.requests(u32::MAX).map_err(Error::Ring)?;
        let n = batch.size_hint().1.unwrap_or(0);
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Slots a packet needs: data slots, and a GSO slot if the frontend gets one; `None`
    /// if the frontend cannot take it.
    fn rx_need(&self, q: &RxQueued<S>) -> Option<(u32, Option<Gso>)> {
        rx_need_of(&self.config, q)
    }

    fn rx_inner(&mut self) -> Result<Progress, Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let budget = self.config.rx_budget;
        let before = self.rx_ready_seen;
        let mut done = 0u32;
        let mut more = false;
        let mut ready = self.rx_ready()?;
        let fresh = ready > before;
        loop {
            if done >= budget {
                more = self.q_len > 0;
                break;
            }
            let sent = self.rx_batch(&mut ready, budget - done)?;
            if sent == 0 {
                break;
            }
            done += sent;
        }
        // Blocked: the head waits for buffers (or, stalled with nothing queued, the
        // frontend has not posted enough for the largest packet yet).
        self.rx_blocked = match self.head() {
            Some(q) => self.rx_need(q).is_some_and(|(need, _)| need > ready),
            None => self.rx_stalled && (ready as usize) < NR_SLOTS_MIN,
        };
        if !more {
            // Ask for an event when the frontend posts (only useful while packets wait,
            // harmless otherwise: each event then finds fresh buffers).
            let _ = self
                .rx_ring
                .final_check_for_requests()
                .map_err(Error::Ring)?;
            ready = self.rx_ready()?;
        }
        self.rx_ready_seen = ready;
        Ok(Progress {
            done,
            more,
            spurious: done == 0 && !fresh,
        })
    }

    /// One batch: plans whole packets from the head of the queue while buffers and room in
    /// the batch last, copies them in one call, answers and dequeues them. Returns the
    /// packets sent (or dropped).
    fn rx_batch(&mut self, ready: &mut u32, budget: u32) -> Result<u32, Error> {
        // Per packet: (first request index, data slots, GSO, checksum, length).
        let mut plan = [(0usize, 0u32, None::<Gso>, TxChecksum::None, 0u32); RX_BATCH_SLOTS];
        let mut npk = 0usize;
        let mut reqs = [RxRequest::ZERO; RX_BATCH_SLOTS];
        let mut nreq = 0usize;
        let mut failed = [false; RX_BATCH_SLOTS];
        let mut drops = 0u32;
        // Drop packets at the head the frontend cannot take.
        while let Some(q) = self.head() {
            if self.rx_need(q).is_some() {
                break;
            }
            self.pop();
            self.stats.rx_dropped = self.stats.rx_dropped.wrapping_add(1);
            drops += 1;
        }
        let Self {
            env,
            front,
            queue,
            q_head,
            q_len,
            rx_ring,
            stats,
            ..
        } = self;
        let cap = queue.len().max(1);
        let dummy = || CopyOp {
            source: CopyPtr::Foreign {
                domid: *front,
                gref: GrantRef::new(0),
                offset: 0,
            },
            dest: CopyPtr::Foreign {
                domid: *front,
                gref: GrantRef::new(0),
                offset: 0,
            },
            len: 0,
        };
        let mut ops: [CopyOp<'_, LocalPage<P>>; RX_BATCH_OPS] = core::array::from_fn(|_| dummy());
        let mut op_req = [0usize; RX_BATCH_OPS];
        let mut nops = 0usize;
        let config = self.config;
        while npk < *q_len && (npk as u32) < budget {
            let Some(Some(q)) = queue.get((*q_head + npk) % cap) else {
                break;
            };
            // Checked by the loop above for the head; a later bad packet ends the batch
            // and is dropped when it reaches the head.
            let Some((need, gso)) = rx_need_of(&config, q) else {
                break;
            };
            let data = need - u32::from(gso.is_some());
            let ops_need = MAX_RX_PIECES + data as usize;
            if need > *ready
                || nreq + need as usize > RX_BATCH_SLOTS
                || nops + ops_need > RX_BATCH_OPS
            {
                break;
            }
            let first = nreq;
            for _ in 0..need {
                let raw = match rx_ring.next_request() {
                    Ok(Some(raw)) => raw,
                    // Counted as ready: cannot happen.
                    Ok(None) => break,
                    Err(e) => return Err(Error::Ring(e)),
                };
                if let Some(r) = reqs.get_mut(nreq) {
                    *r = RxRequest::from_bytes(&raw);
                }
                nreq += 1;
            }
            *ready -= need;
            // Data slot d is request `first + d`, shifted by one past the GSO slot.
            let req_of = |d: usize| first + d + usize::from(d > 0 && gso.is_some());
            let mut d = 0usize;
            let mut dest_off = 0usize;
            let mut i = 0usize;
            while let Some((page, offset, len)) = q.packet.piece(i) {
                i += 1;
                let mut src_off = usize::from(offset);
                let mut left = usize::from(len);
                while left > 0 {
                    if dest_off == PAGE {
                        d += 1;
                        dest_off = 0;
                    }
                    let chunk = left.min(PAGE - dest_off);
                    let r = req_of(d);
                    let gref = reqs.get(r).map_or(0, |req| req.gref);
                    if let (Some(op), Some(w)) = (ops.get_mut(nops), op_req.get_mut(nops)) {
                        *op = CopyOp {
                            source: CopyPtr::Local {
                                page,
                                offset: src_off as u16,
                            },
                            dest: CopyPtr::Foreign {
                                domid: *front,
                                gref: GrantRef::new(gref),
                                offset: dest_off as u16,
                            },
                            len: chunk as u16,
                        };
                        *w = r;
                        nops += 1;
                    }
                    src_off += chunk;
                    dest_off += chunk;
                    left -= chunk;
                }
            }
            if let Some(p) = plan.get_mut(npk) {
                *p = (first, data, gso, q.packet.csum(), q.len);
            }
            npk += 1;
        }
        if npk == 0 {
            return Ok(drops);
        }
        let mut results = [Err(GrantError::GeneralError); RX_BATCH_OPS];
        if let (Some(o), Some(r)) = (ops.get(..nops), results.get_mut(..nops)) {
            stats.rx_copy_ops = stats.rx_copy_ops.wrapping_add(nops as u64);
            let call_ok = env.copy_batch(o, r).is_ok();
            for (res, &w) in r.iter().zip(op_req.iter()) {
                if !call_ok || res.is_err() {
                    if let Some(f) = failed.get_mut(w) {
                        *f = true;
                    }
                }
            }
        }
        for &(first, data, gso, csum, len) in plan.iter().take(npk) {
            let mut left = len as usize;
            let mut bad = false;
            for d in 0..data as usize {
                let r = first + d + usize::from(d > 0 && gso.is_some());
                let req = reqs.get(r).copied().unwrap_or(RxRequest::ZERO);
                let size = left.min(PAGE);
                left -= size;
                let mut flags = NetRxFlags::empty();
                if d == 0 {
                    flags |= match csum {
                        TxChecksum::Partial => NetRxFlags::CSUM_BLANK | NetRxFlags::DATA_VALIDATED,
                        TxChecksum::Unnecessary => NetRxFlags::DATA_VALIDATED,
                        TxChecksum::None => NetRxFlags::empty(),
                    };
                    if gso.is_some() {
                        flags |= NetRxFlags::EXTRA_INFO;
                    }
                }
                if d + 1 < data as usize {
                    flags |= NetRxFlags::MORE_DATA;
                }
                let fail = failed.get(r).copied().unwrap_or(true);
                bad |= fail;
                let mut rsp = RxResponse::ZERO;
                rsp.id = req.id;
                rsp.offset = 0;
                rsp.flags = flags.bits();
                rsp.status = if fail { RSP_ERROR } else { size as i16 };
                rx_ring
                    .queue_response(&rsp.to_bytes())
                    .map_err(Error::Ring)?;
                if d == 0 {
                    if let Some(g) = gso {
                        let e = ExtraInfo::gso(g.size, g.ty, 0, ExtraFlags::empty());
                        rx_ring.queue_response(&e.to_bytes()).map_err(Error::Ring)?;
                    }
                }
            }
            let slots = u64::from(data) + u64::from(gso.is_some());
            stats.rx_slots = stats.rx_slots.wrapping_add(slots);
            if bad {
                stats.rx_copy_errors = stats.rx_copy_errors.wrapping_add(1);
            } else {
                stats.rx_packets = stats.rx_packets.wrapping_add(1);
                stats.rx_bytes = stats.rx_bytes.wrapping_add(u64::from(len));
                if gso.is_some() {
                    stats.rx_gso = stats.rx_gso.wrapping_add(1);
                }
            }
        }
        for _ in 0..npk {
            // The packet is sent: the glue's buffer is freed by its drop.
            drop(self.pop());
        }
        Ok(drops + npk as u32)
    }

    /// Called with the time now and then: drops packets queued for longer than
    /// `rx_drain_timeout`, and reports the carrier: [`Carrier::Off`] once the head packet
    /// has waited for buffers for `rx_stall_timeout` (new packets are then refused and the
    /// queue drains), [`Carrier::On`] once buffers are posted again.
    pub fn rx_tick(&mut self, now: Nanos) -> Carrier {
        if self.failed {
            return Carrier::Unchanged;
        }
        while let Some(q) = self.head() {
            if now.saturating_sub(q.at) < self.config.rx_drain_timeout {
                break;
            }
            self.pop();
            self.stats.rx_expired = self.stats.rx_expired.wrapping_add(1);
        }
        if self.rx_blocked {
            let since = *self.rx_blocked_since.get_or_insert(now);
            if !self.rx_stalled && now.saturating_sub(since) >= self.config.rx_stall_timeout {
                self.rx_stalled = true;
                self.stats.rx_stalls = self.stats.rx_stalls.wrapping_add(1);
                return Carrier::Off;
            }
        } else {
            self.rx_blocked_since = None;
            if self.rx_stalled {
                self.rx_stalled = false;
                return Carrier::On;
            }
        }
        Carrier::Unchanged
    }

    // ---- failure ----

    fn fail_with(&mut self, e: Error) -> Error {
        self.fail();
        e
    }

    /// Fails the queue (also the glue's close): nothing is read or answered any more, the
    /// RX queue is emptied (its packets dropped). Mapped TX fragments stay mapped until
    /// [`tx_release`](Self::tx_release). Idempotent.
    pub fn fail(&mut self) {
        self.failed = true;
        self.parser.reset();
        while self.pop().is_some() {}
        self.head_page = None;
    }

    /// The ring memory, TX then RX (to unmap). Call it when
    /// [`tx_in_flight`](Self::tx_in_flight) is 0: the table goes with the engine, and a
    /// mapping still in it is unmapped by its drop only.
    pub fn into_rings(mut self) -> (M, M) {
        self.fail();
        (self.tx_ring.into_memory(), self.rx_ring.into_memory())
    }
}

/// [`NetBack::rx_need`] without the engine borrowed.
fn rx_need_of<S: RxSource<Pg>, Pg>(
    config: &BackConfig,
    q: &RxQueued<S>,
) -> Option<(u32, Option<Gso>)> {
    let data = q.len.div_ceil(PAGE as u32);
    if data > 1 && !config.rx.sg {
        return None;
    }
    let gso = match q.packet.gso() {
        None => None,
        Some(g) => {
            let ok = match g.ty {
                GsoType::Tcpv4 => config.rx.gso_tcpv4,
                GsoType::Tcpv6 => config.rx.gso_tcpv6,
                GsoType::None => false,
            };
            if !ok || g.size == 0 {
                return None;
            }
            Some(g)
        }
    };
    Some((data + u32::from(gso.is_some()), gso))
}

/// A free entry of the TX table, searched from `cursor`.
fn claim<Mp>(table: &[TxPending<Mp>], cursor: &mut usize) -> Option<usize> {
    let n = table.len().min(usize::from(u16::MAX));
    for k in 0..n {
        let i = (*cursor + k) % n;
        if table.get(i).is_some_and(|e| !e.busy) {
            *cursor = (i + 1) % n;
            return Some(i);
        }
    }
    None
}

/// Unmaps every mapping in `maps` in one batch.
fn unmap_all<P: GrantOps, const N: usize>(
    env: &P,
    maps: &mut [Option<P::Mapping>; N],
    stats: &mut BackStats,
) {
    let live = maps.iter().filter(|m| m.is_some()).count();
    if live == 0 {
        return;
    }
    let mut results = [UnmapResult::Skipped; N];
    let _ = env.unmap_batch(maps, &mut results);
    stats.tx_unmap_ops = stats.tx_unmap_ops.wrapping_add(live as u64);
}
