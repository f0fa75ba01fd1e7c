//! The netfront engine of one queue: TX through zeroed bounce pages, RX buffers kept posted, every response copied once and checked.

use crate::ids::{IdLink, IdStack, Linked};
use crate::rx::MAX_RX_DATA_SLOTS;
use crate::rx::{EndlessChain, RxError, RxLimits, RxMeta, RxParser, RxSlot, SlotKind};
use crate::tx::{copy_slots, parse_tx_response, Gso, TxChecksum, TxLent, TxPacket, TxReply};
use crate::tx::{TxStatus, MIN_TX_SIZE, PAGE};
use xen_core::feature::netif::Offload;
use xen_core::platform::{self, PageAlloc, PageBytes, Progress};
use xen_evtchn::{EvtchnError, EvtchnOps};
use xen_grant::{Access, AccessError, EndAccess, GrantOps, LendOps};
use xen_ring::{FrontRing, GeometryError, RingError, SharedMemory};
use xen_sys::wire::netif::{
    ExtraFlags, ExtraInfo, GsoType, NetTxFlags, RxRequest, TxRequest, TxResponse, MAX_TX_SIZE,
    NR_SLOTS_MIN,
};
use xen_sys::{DomId, GrantRef, Port};

/// Requests of a one-page TX or RX ring (`NET_TX_RING_SIZE`, `NET_RX_RING_SIZE`).
pub const RING_SLOTS: usize = 256;
/// What a reused TX page's stale tail is cleared with.
static ZEROS: [u8; PAGE] = [0; PAGE];
/// Data slots of the largest packet: 18 lent pieces ([`NR_SLOTS_MIN`]); a copied packet
/// takes at most 16.
const MAX_DATA_SLOTS: usize = NR_SLOTS_MIN;
/// RX ring slots a poll handles per packet of its budget at most (data and extra-info).
const RX_SLOTS_PER_PACKET: u32 = (MAX_RX_DATA_SLOTS + crate::rx::MAX_RX_EXTRAS) as u32;

/// A TX ring slot (`union netif_tx_sring_entry`: a 12-byte request or a 4-byte response).
pub type TxSlotBytes = [u8; TxRequest::SIZE];
/// A TX response's bytes.
pub type TxRspBytes = [u8; TxResponse::SIZE];

/// How a frontend queue is set up (from the negotiation, `xen_core::feature::netif`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontConfig {
    /// What may be sent: `Offload::both(ours, backend's offer)`. Without `sg` a packet must
    /// fit one page; GSO of a type not offered is refused.
    pub tx: Offload,
    /// What the frontend asked the backend to send (`feature-gso-tcpv4/6` in its request):
    /// a received GSO slot of another type drops the packet.
    pub rx: Offload,
    /// TX responses handled per [`NetFront::tx_event`] call at most.
    pub tx_budget: u32,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            tx: Offload::ALL,
            rx: Offload::ALL,
            tx_budget: 64,
        }
    }
}

/// Counters of a queue (wrapping), for ethtool `-S` and debugfs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// Packets queued for transmission.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// TX ring slots used (data and extra-info).
    pub tx_slots: u64,
    /// Packets the backend answered with an error or dropped.
    pub tx_errors: u64,
    /// Packets completed without an answer (failure or close).
    pub tx_aborted: u64,
    /// Packets whose own layout needed more than 18 slots (sent packed all the same).
    pub tx_linearised: u64,
    /// GSO packets sent.
    pub tx_gso: u64,
    /// Packets received and handed to the glue.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// RX ring slots consumed.
    pub rx_slots: u64,
    /// Received packets dropped ([`RxError`]); the last reason is [`NetFront::last_rx_error`].
    pub rx_errors: u64,
    /// GSO packets received.
    pub rx_gso: u64,
    /// Notifications sent to the backend (TX and RX).
    pub notifications: u64,
    /// Event handler and poll calls.
    pub events: u64,
    /// Those that found no work.
    pub spurious_events: u64,
    /// Grants made.
    pub grants: u64,
    /// Grants ended.
    pub grant_ends: u64,
    /// Pages the backend still mapped when their grant was ended: deferred, never reused.
    pub deferred_frees: u64,
    /// Bytes copied into bounce pages.
    pub copied_bytes: u64,
    /// Bytes granted where they lie ([`NetFront::send_lent`], Linux's `trusted=1`).
    pub lent_bytes: u64,
    /// Packets of lent memory the backend still mapped when they ended: their memory must
    /// never be freed ([`TxCompletion::still_mapped`]).
    pub tx_still_mapped: u64,
    /// Pages allocated (zeroed, or recycled received buffers for RX).
    pub page_allocs: u64,
}

impl FrontStats {
    /// The field-by-field (wrapping) sum of two sets of counters, e.g. of the engines of a
    /// device's queues or of its connections.
    pub fn sum(&self, b: &FrontStats) -> FrontStats {
        let a = self;
        FrontStats {
            tx_packets: a.tx_packets.wrapping_add(b.tx_packets),
            tx_bytes: a.tx_bytes.wrapping_add(b.tx_bytes),
            tx_slots: a.tx_slots.wrapping_add(b.tx_slots),
            tx_errors: a.tx_errors.wrapping_add(b.tx_errors),
            tx_aborted: a.tx_aborted.wrapping_add(b.tx_aborted),
            tx_linearised: a.tx_linearised.wrapping_add(b.tx_linearised),
            tx_gso: a.tx_gso.wrapping_add(b.tx_gso),
            rx_packets: a.rx_packets.wrapping_add(b.rx_packets),
            rx_bytes: a.rx_bytes.wrapping_add(b.rx_bytes),
            rx_slots: a.rx_slots.wrapping_add(b.rx_slots),
            rx_errors: a.rx_errors.wrapping_add(b.rx_errors),
            rx_gso: a.rx_gso.wrapping_add(b.rx_gso),
            notifications: a.notifications.wrapping_add(b.notifications),
            events: a.events.wrapping_add(b.events),
            spurious_events: a.spurious_events.wrapping_add(b.spurious_events),
            grants: a.grants.wrapping_add(b.grants),
            grant_ends: a.grant_ends.wrapping_add(b.grant_ends),
            deferred_frees: a.deferred_frees.wrapping_add(b.deferred_frees),
            copied_bytes: a.copied_bytes.wrapping_add(b.copied_bytes),
            lent_bytes: a.lent_bytes.wrapping_add(b.lent_bytes),
            tx_still_mapped: a.tx_still_mapped.wrapping_add(b.tx_still_mapped),
            page_allocs: a.page_allocs.wrapping_add(b.page_allocs),
        }
    }
}

/// A response that breaks the protocol: the queue fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A TX response's id names no slot of the table.
    TxBadId(u16),
    /// A TX response's id names a slot with nothing outstanding (a duplicate).
    TxNotOutstanding(u16),
    /// A TX response's status is no `NETIF_RSP_*`.
    TxUnknownStatus(i16),
    /// A `NETIF_RSP_NULL` with no extra-info slot outstanding.
    TxUnexpectedNull,
    /// The backend answered a slot of lent memory but still maps its frame.
    TxStillMapped(u16),
    /// An RX response's id names no buffer of the table.
    RxBadId(u16),
    /// An RX response's id names a buffer not posted (a duplicate).
    RxNotOutstanding(u16),
    /// An RX response answers a buffer posted at another ring position.
    RxOutOfOrder {
        /// The response's id.
        id: u16,
        /// The id posted at that position.
        expected: u16,
    },
    /// An RX `more_data` or extra-info chain longer than the ring.
    RxEndlessChain,
}

/// Why an engine call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The backend broke a ring (impossible index): the queue failed.
    Ring(RingError),
    /// A notification could not be sent.
    Evtchn(EvtchnError),
    /// The backend sent a response that breaks the protocol: the queue failed.
    Fault(Fault),
}

/// Why a packet was not queued. Nothing was granted or queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Not enough TX slots or ids: stop the queue until completions free some.
    Busy,
    /// Shorter than 14 bytes, longer than 65535, or longer than a page without SG.
    BadLength,
    /// GSO not negotiated for this type, size 0, or without a partial checksum.
    BadGso,
    /// Lent pieces ([`NetFront::send_lent`]): none, more than [`NR_SLOTS_MIN`], one empty
    /// or crossing its page's end, or a first one shorter than an Ethernet header.
    BadLayout,
    /// No page to copy into.
    NoMemory,
    /// A grant could not be made.
    Grant(AccessError),
    /// The queue failed or was closed.
    Failed,
}

/// How a transmitted packet ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxOutcome {
    /// Every slot was answered `OKAY`.
    Okay,
    /// A slot was answered `ERROR`.
    Error,
    /// A slot was answered `DROPPED`.
    Dropped,
    /// No answer: the queue failed or was closed.
    Aborted,
}

/// A finished packet, for the glue's statistics and byte-queue limits. (A packet copied by
/// [`NetFront::send`] was done with its buffer there; one lent to
/// [`NetFront::send_lent`] keeps its memory until this completion, and for good if
/// `still_mapped`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxCompletion {
    /// The cookie given to [`NetFront::send`].
    pub token: u64,
    /// Bytes in the packet.
    pub len: u32,
    /// How it ended.
    pub outcome: TxOutcome,
    /// The backend still maps a frame of this packet's lent memory
    /// ([`NetFront::send_lent`]): the glue must never free or reuse that memory (it leaks
    /// it). Always false for copied packets.
    pub still_mapped: bool,
}

/// One data slot of a packet being queued: its id, and the bytes it carries in its page.
#[derive(Clone, Copy, Debug, Default)]
struct TxSlot {
    id: u16,
    offset: u16,
    size: u16,
}

/// The packet of a TX head slot.
#[derive(Clone, Copy, Debug)]
struct TxPacketState {
    token: u64,
    len: u32,
    /// Data slots not answered yet.
    remaining: u8,
    outcome: TxOutcome,
    /// A lent frame of the packet is still mapped by the backend.
    held: bool,
}

/// The page type of a platform.
type Pg<P> = <P as GrantOps>::Page;

/// One TX id of a frontend's table: the bounce page it keeps, the packet slot it carries,
/// and whether the id is free or outstanding.
///
/// Public so that a platform can allocate the table on the heap one entry at a time
/// ([`NetFront::with_tables`]); its contents are the engine's.
pub struct TxEntry<Pg> {
    /// Free, outstanding (a slot in flight, or a head whose packet is), or closed.
    link: IdLink,
    /// Kept across uses; granted while in flight.
    page: Option<Pg>,
    gref: Option<GrantRef>,
    /// `gref` grants a frame the caller lent, not `page` (which stays for later copies).
    lent: bool,
    /// Bytes from offset 0 that may be non-zero.
    dirty: usize,
    /// The packet's first slot.
    head: u16,
    /// Answered (a head stays outstanding until its packet is complete).
    answered: bool,
    /// Set on a head slot while its packet is in flight.
    packet: Option<TxPacketState>,
    /// A packet aborted by a failure, to report.
    aborted: Option<TxPacketState>,
}

impl<Pg> TxEntry<Pg> {
    /// An empty entry: no page, nothing in flight, its id closed until the engine opens it.
    pub const fn new() -> Self {
        TxEntry {
            link: IdLink::CLOSED,
            page: None,
            gref: None,
            lent: false,
            dirty: 0,
            head: 0,
            answered: false,
            packet: None,
            aborted: None,
        }
    }

    /// Whether the entry is as [`new`](Self::new) made it.
    fn is_empty(&self) -> bool {
        self.link.is_closed()
            && self.page.is_none()
            && self.gref.is_none()
            && !self.lent
            && self.dirty == 0
            && self.head == 0
            && !self.answered
            && self.packet.is_none()
            && self.aborted.is_none()
    }
}

impl<Pg> Default for TxEntry<Pg> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Pg> Linked for TxEntry<Pg> {
    fn link_mut(&mut self) -> &mut IdLink {
        &mut self.link
    }
}

/// Where an RX buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RxState {
    /// Not posted (its page, if any, is free).
    Idle,
    /// On the ring, granted to the backend.
    Posted,
    /// Answered; holds data of a packet being received.
    Held,
}

/// One RX id of a frontend's table: its buffer page, where the buffer is, and whether the
/// id is free or outstanding.
///
/// Public so that a platform can allocate the table on the heap one entry at a time
/// ([`NetFront::with_tables`]); its contents are the engine's.
pub struct RxEntry<Pg> {
    /// Free, outstanding (posted or held), or closed.
    link: IdLink,
    page: Option<Pg>,
    gref: Option<GrantRef>,
    state: RxState,
}

impl<Pg> RxEntry<Pg> {
    /// An empty entry: no page, not posted, its id closed until the engine opens it.
    pub const fn new() -> Self {
        RxEntry {
            link: IdLink::CLOSED,
            page: None,
            gref: None,
            state: RxState::Idle,
        }
    }

    /// Whether the entry is as [`new`](Self::new) made it.
    fn is_empty(&self) -> bool {
        self.link.is_closed()
            && self.page.is_none()
            && self.gref.is_none()
            && self.state == RxState::Idle
    }
}

impl<Pg> Default for RxEntry<Pg> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Pg> Linked for RxEntry<Pg> {
    fn link_mut(&mut self) -> &mut IdLink {
        &mut self.link
    }
}

/// A TX table of `N` entries held inline, the default storage.
pub type InlineTxTable<Pg, const N: usize> = [TxEntry<Pg>; N];
/// An RX table of `N` entries held inline, the default storage.
pub type InlineRxTable<Pg, const N: usize> = [RxEntry<Pg>; N];

/// Checks a frontend's tables: each holds exactly `n` entries, all empty. The length of the
/// first that does not is the error.
fn check_tables<Pg>(tx: &[TxEntry<Pg>], rx: &[RxEntry<Pg>], n: usize) -> Result<(), usize> {
    if tx.len() != n || !tx.iter().all(TxEntry::is_empty) {
        return Err(tx.len());
    }
    if rx.len() != n || !rx.iter().all(RxEntry::is_empty) {
        return Err(rx.len());
    }
    Ok(())
}

/// A fragment of a received packet held by the engine until the packet is complete.
#[derive(Clone, Copy, Debug)]
struct HeldFrag {
    slot: u16,
    offset: u16,
    len: u16,
}

/// A received packet, handed to the glue by [`NetFront::poll`]: up to 18 fragments, each a
/// page with the data at `offset..offset + len`, and the metadata. The grants of its pages are
/// ended: the backend can no longer write them.
///
/// The glue may [`take_page`](Self::take_page) pages (to attach them to an skb); the pages it
/// leaves are recycled as RX buffers. It must not write into a page it leaves: a recycled
/// page is granted again without being zeroed (it only holds bytes this backend wrote).
pub struct RxPacket<Pg> {
    /// Each fragment: its page (until the glue takes it) and where the data lies in it.
    frags: [Option<(Option<Pg>, HeldFrag)>; MAX_RX_DATA_SLOTS],
    count: usize,
    /// Length, checksum state, GSO and hash.
    pub meta: RxMeta,
}

impl<Pg: PageBytes> RxPacket<Pg> {
    /// Fragments (the same number whether or not their pages were taken).
    pub fn frag_count(&self) -> usize {
        self.count
    }

    /// Fragment `i`: its page (if not taken), offset and length.
    pub fn frag(&self, i: usize) -> Option<(Option<&Pg>, u16, u16)> {
        if i >= self.count {
            return None;
        }
        let (page, f) = self.frags.get(i)?.as_ref()?;
        Some((page.as_ref(), f.offset, f.len))
    }

    /// Takes fragment `i`'s page: the glue owns it from now on (it is no longer granted).
    pub fn take_page(&mut self, i: usize) -> Option<(Pg, u16, u16)> {
        let (page, f) = self.frags.get_mut(i)?.as_mut()?;
        Some((page.take()?, f.offset, f.len))
    }

    /// Copies the data of the fragments not taken into `dst`, in order; returns the bytes
    /// copied, or `None` if `dst` is too short or a page could not be read.
    pub fn copy_to(&self, dst: &mut [u8]) -> Option<usize> {
        let mut at = 0usize;
        for (page, f) in self.frags.iter().take(self.count).flatten() {
            let Some(page) = page else { continue };
            let len = usize::from(f.len);
            let out = dst.get_mut(at..at.checked_add(len)?)?;
            if !page.read_bytes(usize::from(f.offset), out) {
                return None;
            }
            at += len;
        }
        Some(at)
    }
}

/// The frontend of one netif queue: a TX ring and an RX ring of one page each, `N` TX ids
/// and `N` RX buffers (at most 256, the rings' size).
///
/// The glue grants both rings and binds the event channel(s), then hands them over with
/// [`new`](Self::new) (or [`with_tables`](Self::with_tables)) and posts the RX buffers with
/// [`refill_rx`](Self::refill_rx). It sends with [`send`](Self::send) and
/// [`push_tx`](Self::push_tx); on a TX event it calls
/// [`tx_event`](Self::tx_event) (completions), on an RX event [`rx_event`](Self::rx_event)
/// (whether to schedule NAPI), with one channel [`handle_event`](Self::handle_event) for both;
/// its NAPI poll calls [`poll`](Self::poll). Each returns a [`Progress`] whose `spurious`
/// verdict goes to the late EOI.
///
/// A response that breaks the protocol fails the queue: every grant is revoked (pages the
/// backend still maps are deferred, never freed or reused), unanswered packets are reported
/// [`TxOutcome::Aborted`] by the next `tx_event` or [`close`](Self::close), and every later
/// event is spurious.
///
/// The id tables are `T` (TX) and `R` (RX): inline by default (28 KiB for 256 + 256 ids with
/// the simulator's 16-byte page type), or any slice storage of exactly `N` entries, e.g. a
/// kernel vector filled entry by entry, when the engine must not be built on a stack. Each id's free-or-outstanding state
/// lives in its entry, so what stays inline is small (`rx_posted`, one `u16` per ring slot,
/// is the largest part).
pub struct NetFront<
    P: GrantOps,
    M,
    const N: usize = RING_SLOTS,
    T = InlineTxTable<<P as GrantOps>::Page, N>,
    R = InlineRxTable<<P as GrantOps>::Page, N>,
> {
    env: P,
    backend: DomId,
    tx_port: Port,
    rx_port: Port,
    config: FrontConfig,
    tx_ring: FrontRing<M, TxSlotBytes, TxRspBytes>,
    rx_ring: FrontRing<M, RxSlot, RxSlot>,
    /// The free TX ids (linked through `tx`).
    tx_ids: IdStack,
    tx: T,
    /// Extra-info slots sent whose `RSP_NULL` has not come yet.
    tx_null_pending: u32,
    /// The free RX ids (linked through `rx`).
    rx_ids: IdStack,
    rx: R,
    /// The RX id posted at each ring position (`index % entries`).
    rx_posted: [u16; RING_SLOTS],
    rx_prod: u32,
    rx_cons: u32,
    parser: RxParser,
    held: [Option<HeldFrag>; MAX_RX_DATA_SLOTS],
    nheld: usize,
    last_rx_error: Option<RxError>,
    failed: bool,
    stats: FrontStats,
}

impl<P, M, const N: usize> NetFront<P, M, N>
where
    P: GrantOps + EvtchnOps + PageAlloc<Page = <P as GrantOps>::Page>,
    <P as GrantOps>::Page: PageBytes,
    M: SharedMemory,
{
    /// A queue over the ring pages `tx_ring` and `rx_ring` (each one page, already granted
    /// to `backend`), notifying through `tx_port` and `rx_port` (the same port without split
    /// event channels), with its tables inline. Initialises (zeroes) both rings. `N` must be
    /// 1 to 256.
    pub fn new(
        env: P,
        tx_ring: M,
        rx_ring: M,
        backend: DomId,
        ports: (Port, Port),
        config: FrontConfig,
    ) -> Result<Self, RingError> {
        Self::with_tables(
            env,
            tx_ring,
            rx_ring,
            backend,
            ports,
            config,
            core::array::from_fn(|_| TxEntry::new()),
            core::array::from_fn(|_| RxEntry::new()),
        )
    }
}

impl<P, M, const N: usize, T, R> NetFront<P, M, N, T, R>
where
    P: GrantOps + EvtchnOps + PageAlloc<Page = <P as GrantOps>::Page>,
    <P as GrantOps>::Page: PageBytes,
    M: SharedMemory,
    T: AsRef<[TxEntry<Pg<P>>]> + AsMut<[TxEntry<Pg<P>>]>,
    R: AsRef<[RxEntry<Pg<P>>]> + AsMut<[RxEntry<Pg<P>>]>,
{
    /// As [`new`](NetFront::new), with the TX ids in `tx_table` and the RX ids in
    /// `rx_table`, which must each hold exactly `N` empty entries ([`TxEntry::new`],
    /// [`RxEntry::new`]). A table of another length, or with an entry that is not empty, is
    /// refused with `RingError::Geometry(GeometryError::BadLength(len))`, `len` that table's
    /// length; `N` of 0 or over 256 with `RingError::Geometry(GeometryError::BadEntry)`.
    /// These checks come before the rings are initialised. The tables' `as_ref` and `as_mut`
    /// must give the same entries each time (as a vector or a boxed slice does).
    #[allow(clippy::too_many_arguments)]
    pub fn with_tables(
        env: P,
        tx_ring: M,
        rx_ring: M,
        backend: DomId,
        ports: (Port, Port),
        config: FrontConfig,
        mut tx_table: T,
        mut rx_table: R,
    ) -> Result<Self, RingError> {
        if N == 0 || N > RING_SLOTS {
            return Err(RingError::Geometry(GeometryError::BadEntry));
        }
        check_tables(tx_table.as_ref(), rx_table.as_ref(), N)
            .map_err(|len| RingError::Geometry(GeometryError::BadLength(len)))?;
        let tx_ring = FrontRing::init(tx_ring)?;
        let rx_ring = FrontRing::init(rx_ring)?;
        if rx_ring.entries() as usize > RING_SLOTS || tx_ring.entries() as usize > RING_SLOTS {
            return Err(RingError::Geometry(GeometryError::BadLength(
                rx_ring.geometry().bytes(),
            )));
        }
        let mut tx_ids = IdStack::new();
        tx_ids.open_all(tx_table.as_mut(), N);
        let mut rx_ids = IdStack::new();
        rx_ids.open_all(rx_table.as_mut(), N);
        Ok(NetFront {
            env,
            backend,
            tx_port: ports.0,
            rx_port: ports.1,
            config: FrontConfig {
                tx_budget: config.tx_budget.max(1),
                ..config
            },
            tx_ring,
            rx_ring,
            tx_ids,
            tx: tx_table,
            tx_null_pending: 0,
            rx_ids,
            rx: rx_table,
            rx_posted: [0; RING_SLOTS],
            rx_prod: 0,
            rx_cons: 0,
            parser: RxParser::new(RxLimits {
                gso_tcpv4: config.rx.gso_tcpv4,
                gso_tcpv6: config.rx.gso_tcpv6,
            }),
            held: [None; MAX_RX_DATA_SLOTS],
            nheld: 0,
            last_rx_error: None,
            failed: false,
            stats: FrontStats::default(),
        })
    }

    /// The platform.
    pub fn env(&self) -> &P {
        &self.env
    }

    /// Counters.
    pub fn stats(&self) -> FrontStats {
        self.stats
    }

    /// Why the last dropped packet was dropped.
    pub fn last_rx_error(&self) -> Option<RxError> {
        self.last_rx_error
    }

    /// Whether the queue failed (or was closed).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// TX data slots in flight.
    pub fn tx_outstanding(&self) -> usize {
        self.tx_ids.outstanding()
    }

    /// RX buffers posted to the backend.
    pub fn rx_posted(&self) -> usize {
        self.rx
            .as_ref()
            .iter()
            .filter(|e| e.state == RxState::Posted)
            .count()
    }

    /// Pages the queue holds (in flight, held or kept for reuse).
    pub fn pages_held(&self) -> usize {
        self.tx.as_ref().iter().filter(|e| e.page.is_some()).count()
            + self.rx.as_ref().iter().filter(|e| e.page.is_some()).count()
    }

    /// Whether the largest packet (18 data slots, lent or copied, and a GSO slot) can be
    /// queued now: the glue stops its queue when this turns false and wakes it when it is
    /// true again.
    pub fn tx_room(&self) -> bool {
        !self.failed
            && self.tx_ids.free() >= MAX_DATA_SLOTS
            && self.tx_ring.free_requests() as usize > MAX_DATA_SLOTS
    }

    /// The checks every packet passes before anything is claimed: the queue works, the
    /// length fits, the GSO type was negotiated, and `slots` data slots (and a GSO slot) are
    /// free.
    fn check_send(
        &self,
        len: usize,
        csum: TxChecksum,
        gso: Option<Gso>,
        slots: usize,
    ) -> Result<(), SendError> {
        if self.failed {
            return Err(SendError::Failed);
        }
        let max = if self.config.tx.sg {
            MAX_TX_SIZE as usize
        } else {
            PAGE
        };
        if len < MIN_TX_SIZE || len > max {
            return Err(SendError::BadLength);
        }
        if let Some(g) = gso {
            let offered = match g.ty {
                GsoType::Tcpv4 => self.config.tx.gso_tcpv4,
                GsoType::Tcpv6 => self.config.tx.gso_tcpv6,
                GsoType::None => false,
            };
            if !offered || g.size == 0 || csum != TxChecksum::Partial {
                return Err(SendError::BadGso);
            }
        }
        let ring_slots = slots + usize::from(gso.is_some());
        if self.tx_ids.free() < slots || (self.tx_ring.free_requests() as usize) < ring_slots {
            return Err(SendError::Busy);
        }
        Ok(())
    }

    /// Copies `packet` into bounce pages (zeroed when new, their stale tail cleared when
    /// reused), grants them read-only and queues its slots: the first (whole length,
    /// checksum flags), a GSO extra-info slot if any, then the rest. `token` comes back in
    /// its [`TxCompletion`]. Publish with [`push_tx`](Self::push_tx).
    pub fn send(&mut self, packet: &TxPacket<'_>, token: u64) -> Result<(), SendError> {
        let len = packet.len();
        let slots = copy_slots(len);
        self.check_send(len, packet.csum, packet.gso, slots)?;
        // Claim, fill and grant every slot before anything reaches the ring.
        let mut claimed = [TxSlot::default(); MAX_DATA_SLOTS];
        let mut pieces = packet.pieces();
        let mut piece: &[u8] = &[];
        let mut result = Ok(());
        let mut n = 0;
        for out in claimed.iter_mut().take(slots) {
            let Some(slot) = self.tx_ids.claim(self.tx.as_mut()) else {
                result = Err(SendError::Busy);
                break;
            };
            n += 1;
            let chunk = if n < slots {
                PAGE
            } else {
                len - PAGE * (slots - 1)
            };
            *out = TxSlot {
                id: slot,
                offset: 0,
                size: u16::try_from(chunk).unwrap_or(PAGE as u16),
            };
            if let Err(e) = self.fill_tx(slot, chunk, &mut pieces, &mut piece) {
                result = Err(e);
                break;
            }
        }
        if let Err(e) = result {
            for s in claimed.iter().take(n) {
                self.unclaim_tx(s.id);
            }
            return Err(e);
        }
        self.queue_packet(
            claimed.get(..slots).unwrap_or(&[]),
            len,
            packet.csum,
            packet.gso,
            token,
        );
        let s = &mut self.stats;
        s.copied_bytes = s.copied_bytes.wrapping_add(len as u64);
        if packet.needs_linearisation() {
            s.tx_linearised = s.tx_linearised.wrapping_add(1);
        }
        Ok(())
    }

    /// Queues the claimed, granted data slots of one packet: the first carries the whole
    /// length and the flags, a GSO extra-info slot follows it, then the rest. Room was
    /// checked by [`check_send`](Self::check_send).
    fn queue_packet(
        &mut self,
        slots: &[TxSlot],
        len: usize,
        csum: TxChecksum,
        gso: Option<Gso>,
        token: u64,
    ) {
        let Some(head) = slots.first().map(|s| s.id) else {
            return;
        };
        let mut first_flags = csum.flags();
        if slots.len() > 1 {
            first_flags |= NetTxFlags::MORE_DATA;
        }
        if gso.is_some() {
            first_flags |= NetTxFlags::EXTRA_INFO;
        }
        for (i, s) in slots.iter().enumerate() {
            // Ids come from `tx_ids`, which hands out `0..N` only.
            let Some(e) = self.tx.as_mut().get_mut(usize::from(s.id)) else {
                continue;
            };
            e.head = head;
            let mut req = TxRequest::ZERO;
            req.gref = e.gref.map_or(0, GrantRef::raw);
            req.offset = s.offset;
            req.id = s.id;
            if i == 0 {
                req.flags = first_flags.bits();
                req.size = u16::try_from(len).unwrap_or(u16::MAX);
            } else {
                req.flags = if i + 1 < slots.len() {
                    NetTxFlags::MORE_DATA.bits()
                } else {
                    0
                };
                req.size = s.size;
            }
            let queued = self.tx_ring.queue_request(&req.to_bytes());
            debug_assert!(queued.is_ok());
            if i == 0 {
                if let Some(g) = gso {
                    let extra = ExtraInfo::gso(g.size, g.ty, 0, ExtraFlags::empty());
                    let mut bytes = [0u8; TxRequest::SIZE];
                    bytes[..ExtraInfo::SIZE].copy_from_slice(&extra.to_bytes());
                    let queued = self.tx_ring.queue_request(&bytes);
                    debug_assert!(queued.is_ok());
                    self.tx_null_pending += 1;
                }
            }
        }
        if let Some(e) = self.tx.as_mut().get_mut(usize::from(head)) {
            e.packet = Some(TxPacketState {
                token,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                remaining: u8::try_from(slots.len()).unwrap_or(u8::MAX),
                outcome: TxOutcome::Okay,
                held: false,
            });
        }
        let s = &mut self.stats;
        s.tx_packets = s.tx_packets.wrapping_add(1);
        s.tx_bytes = s.tx_bytes.wrapping_add(len as u64);
        s.tx_slots = s
            .tx_slots
            .wrapping_add((slots.len() + usize::from(gso.is_some())) as u64);
        if gso.is_some() {
            s.tx_gso = s.tx_gso.wrapping_add(1);
        }
    }

    /// Fills the page of the claimed TX slot `slot` with the next `chunk` bytes of the packet
    /// and grants it read-only.
    fn fill_tx<'a>(
        &mut self,
        slot: u16,
        chunk: usize,
        pieces: &mut impl Iterator<Item = &'a [u8]>,
        piece: &mut &'a [u8],
    ) -> Result<(), SendError> {
        let env = &self.env;
        let stats = &mut self.stats;
        let e = self
            .tx
            .as_mut()
            .get_mut(usize::from(slot))
            .ok_or(SendError::NoMemory)?;
        e.answered = false;
        let page = match e.page.take() {
            Some(p) => p,
            None => {
                let mut p = env.alloc_page().ok_or(SendError::NoMemory)?;
                env.zero_page(&mut p);
                stats.page_allocs = stats.page_allocs.wrapping_add(1);
                e.dirty = 0;
                p
            }
        };
        let page = e.page.insert(page);
        // Until the tail is cleared below, anything up to the larger of the two may be set.
        let stale_end = e.dirty;
        e.dirty = e.dirty.max(chunk);
        let mut at = 0usize;
        while at < chunk {
            if piece.is_empty() {
                match pieces.next() {
                    Some(p) => *piece = p,
                    None => return Err(SendError::BadLength),
                }
                continue;
            }
            let n = piece.len().min(chunk - at);
            let (now, rest) = piece.split_at(n);
            if !page.write_bytes(at, now) {
                return Err(SendError::NoMemory);
            }
            *piece = rest;
            at += n;
        }
        // Bytes past the data that an earlier packet left: the backend sees the whole page.
        if stale_end > chunk {
            let stale = ZEROS.get(..stale_end - chunk).unwrap_or(&[]);
            if !page.write_bytes(chunk, stale) {
                return Err(SendError::NoMemory);
            }
        }
        e.dirty = chunk;
        let gref = env
            .grant_access(self.backend, page, Access::ReadOnly)
            .map_err(SendError::Grant)?;
        stats.grants = stats.grants.wrapping_add(1);
        e.gref = Some(gref);
        Ok(())
    }

    /// Undoes a claimed TX slot of a packet that was not queued: revokes its grant (never
    /// published, so it ends at once) and frees the id; the page stays for reuse.
    fn unclaim_tx(&mut self, slot: u16) {
        let Some(e) = self.tx.as_mut().get_mut(usize::from(slot)) else {
            return;
        };
        if core::mem::take(&mut e.lent) {
            // Never published: the backend cannot map it, and the memory is not ours to defer.
            if let Some(gref) = e.gref.take() {
                self.stats.grant_ends = self.stats.grant_ends.wrapping_add(1);
                let _ = self.env.end_access(gref);
            }
        } else if let Some(gref) = e.gref.take() {
            self.stats.grant_ends = self.stats.grant_ends.wrapping_add(1);
            if self.env.end_access(gref) == EndAccess::StillMapped {
                // Cannot happen for a grant the backend never saw; never reuse it anyway.
                if let Some(page) = e.page.take() {
                    self.stats.deferred_frees = self.stats.deferred_frees.wrapping_add(1);
                    self.env.defer_free(gref, page);
                }
            }
        }
        self.tx_ids.release(self.tx.as_mut(), slot);
    }

    /// Publishes the queued TX requests and notifies the backend if it asked.
    pub fn push_tx(&mut self) -> Result<(), Error> {
        if self.failed {
            return Ok(());
        }
        match self.tx_ring.push_requests() {
            Ok(n) if n.is_required() => self.notify(self.tx_port),
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail_with(Error::Ring(e))),
        }
    }

    fn notify(&mut self, port: Port) -> Result<(), Error> {
        self.stats.notifications = self.stats.notifications.wrapping_add(1);
        self.env.notify(port).map_err(Error::Evtchn)
    }

    /// Handles a TX event: completes at most the TX budget of responses, calling `complete`
    /// once for each finished packet. After a failure it reports the aborted packets (once)
    /// and is otherwise spurious.
    pub fn tx_event(&mut self, mut complete: impl FnMut(TxCompletion)) -> Result<Progress, Error> {
        self.stats.events = self.stats.events.wrapping_add(1);
        let progress = self.tx_work(&mut complete);
        self.count_spurious(progress)
    }

    fn count_spurious(&mut self, p: Result<Progress, Error>) -> Result<Progress, Error> {
        if let Ok(p) = &p {
            if p.spurious {
                self.stats.spurious_events = self.stats.spurious_events.wrapping_add(1);
            }
        }
        p
    }

    fn tx_work(&mut self, complete: &mut impl FnMut(TxCompletion)) -> Result<Progress, Error> {
        if self.failed {
            self.report_aborted(complete);
            return Ok(Progress {
                done: 0,
                more: false,
                spurious: true,
            });
        }
        let mut done = 0u32;
        let mut answered = 0u32;
        let mut fault = None;
        let Self {
            env,
            stats,
            tx,
            tx_ids,
            tx_ring,
            tx_null_pending,
            config,
            ..
        } = self;
        match tx_ring.responses(config.tx_budget) {
            Err(e) => fault = Some(Error::Ring(e)),
            Ok(batch) => {
                for raw in batch {
                    answered += 1;
                    match tx_answer(env, stats, tx.as_mut(), tx_ids, tx_null_pending, &raw) {
                        Ok(Some(c)) => {
                            done += 1;
                            complete(c);
                        }
                        Ok(None) => {}
                        Err(f) => {
                            fault = Some(Error::Fault(f));
                            break;
                        }
                    }
                }
            }
        }
        let more = match fault {
            Some(_) => false,
            None if answered >= self.config.tx_budget => true,
            None => match self.tx_ring.final_check_for_responses() {
                Ok(more) => more,
                Err(e) => {
                    fault = Some(Error::Ring(e));
                    false
                }
            },
        };
        if let Some(e) = fault {
            let e = self.fail_with(e);
            self.report_aborted(complete);
            return Err(e);
        }
        Ok(Progress {
            done,
            more,
            spurious: answered == 0,
        })
    }

    fn report_aborted(&mut self, complete: &mut impl FnMut(TxCompletion)) {
        for e in self.tx.as_mut().iter_mut() {
            if let Some(p) = e.aborted.take() {
                if p.held {
                    self.stats.tx_still_mapped = self.stats.tx_still_mapped.wrapping_add(1);
                }
                complete(TxCompletion {
                    token: p.token,
                    len: p.len,
                    outcome: TxOutcome::Aborted,
                    still_mapped: p.held,
                });
            }
        }
    }

    /// Handles an RX event: says whether responses wait (schedule the NAPI poll: `more`), or
    /// that the event was spurious. Consumes nothing.
    pub fn rx_event(&mut self) -> Result<Progress, Error> {
        self.stats.events = self.stats.events.wrapping_add(1);
        let p = self.rx_pending();
        self.count_spurious(p)
    }

    fn rx_pending(&mut self) -> Result<Progress, Error> {
        if self.failed {
            return Ok(Progress {
                done: 0,
                more: false,
                spurious: true,
            });
        }
        match self.rx_ring.final_check_for_responses() {
            Ok(more) => Ok(Progress {
                done: 0,
                more,
                spurious: !more,
            }),
            Err(e) => Err(self.fail_with(Error::Ring(e))),
        }
    }

    /// Handles the event of a queue with one event channel for both rings: TX completions
    /// (as [`tx_event`](Self::tx_event)), and whether RX work waits (`more`: schedule the
    /// poll). Spurious if neither ring had anything.
    pub fn handle_event(
        &mut self,
        mut complete: impl FnMut(TxCompletion),
    ) -> Result<Progress, Error> {
        self.stats.events = self.stats.events.wrapping_add(1);
        let tx = self.tx_work(&mut complete)?;
        let rx = self.rx_pending()?;
        let p = Progress {
            done: tx.done,
            more: tx.more || rx.more,
            spurious: tx.spurious && rx.spurious,
        };
        self.count_spurious(Ok(p))
    }

    /// Posts RX buffers (granted read-write; zeroed pages, or pages the platform recycled
    /// from earlier received packets, [`PageAlloc::alloc_rx_page`]) for every free id while the ring
    /// has room, and publishes them. Returns how many were posted; fewer than wanted when
    /// memory or grants run short (the glue retries later, as Linux's refill timer does).
    pub fn refill_rx(&mut self) -> Result<usize, Error> {
        if self.failed {
            return Ok(0);
        }
        let mut n = 0;
        while !self.rx_ring.is_full() {
            let Some(slot) = self.rx_ids.next() else {
                break;
            };
            let pos = self.rx_pos(self.rx_prod);
            // Ids come from `rx_ids`, which hands out `0..N` only.
            let Some(e) = self.rx.as_mut().get_mut(usize::from(slot)) else {
                break;
            };
            let page = match e.page.take() {
                Some(p) => p,
                None => {
                    let Some((mut p, clean)) = self.env.alloc_rx_page() else {
                        break;
                    };
                    if !clean {
                        self.env.zero_page(&mut p);
                    }
                    self.stats.page_allocs = self.stats.page_allocs.wrapping_add(1);
                    p
                }
            };
            let gref = match self
                .env
                .grant_access(self.backend, &page, Access::ReadWrite)
            {
                Ok(g) => g,
                Err(_) => {
                    e.page = Some(page);
                    break;
                }
            };
            self.stats.grants = self.stats.grants.wrapping_add(1);
            let mut req = RxRequest::ZERO;
            req.id = slot;
            req.gref = gref.raw();
            if self.rx_ring.queue_request(&req.to_bytes()).is_err() {
                // Not full (checked): only a broken ring refuses; its grant never got out.
                self.stats.grant_ends = self.stats.grant_ends.wrapping_add(1);
                if platform::revoke(&self.env, gref, page) == EndAccess::StillMapped {
                    self.stats.deferred_frees = self.stats.deferred_frees.wrapping_add(1);
                }
                break;
            }
            e.page = Some(page);
            e.gref = Some(gref);
            e.state = RxState::Posted;
            let claimed = self.rx_ids.claim(self.rx.as_mut());
            debug_assert_eq!(claimed, Some(slot));
            if let Some(p) = self.rx_posted.get_mut(pos) {
                *p = slot;
            }
            self.rx_prod = self.rx_prod.wrapping_add(1);
            n += 1;
        }
        match self.rx_ring.push_requests() {
            Ok(notify) if notify.is_required() => self.notify(self.rx_port)?,
            Ok(_) => {}
            Err(e) => return Err(self.fail_with(Error::Ring(e))),
        }
        Ok(n)
    }

    fn rx_pos(&self, index: u32) -> usize {
        (index as usize) & (self.rx_ring.entries() as usize - 1)
    }

    /// The NAPI poll: receives at most `budget` packets (delivered or dropped), handing each
    /// good one to `deliver`, then reposts buffers. `more` asks for another poll; otherwise
    /// the ring is re-armed for an event. At most `budget * 20` ring slots are consumed, so a
    /// backend cannot make one poll run long.
    pub fn poll(
        &mut self,
        budget: u32,
        mut deliver: impl FnMut(&mut RxPacket<Pg<P>>),
    ) -> Result<Progress, Error> {
        self.stats.events = self.stats.events.wrapping_add(1);
        if self.failed {
            return self.count_spurious(Ok(Progress {
                done: 0,
                more: false,
                spurious: true,
            }));
        }
        let budget = budget.max(1);
        let max_slots = budget.saturating_mul(RX_SLOTS_PER_PACKET);
        let mut done = 0u32;
        let mut slots = 0u32;
        let mut more = false;
        loop {
            if done >= budget || slots >= max_slots {
                more = true;
                break;
            }
            let raw = match self.rx_ring.next_response() {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => return Err(self.fail_with(Error::Ring(e))),
            };
            slots += 1;
            self.stats.rx_slots = self.stats.rx_slots.wrapping_add(1);
            match self.rx_slot(&raw, &mut deliver) {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(f) => return Err(self.fail_with(Error::Fault(f))),
            }
        }
        self.refill_rx()?;
        if !more {
            more = match self.rx_ring.final_check_for_responses() {
                Ok(m) => m,
                Err(e) => return Err(self.fail_with(Error::Ring(e))),
            };
        }
        self.count_spurious(Ok(Progress {
            done,
            more,
            spurious: slots == 0,
        }))
    }

    /// Takes one RX slot; `true` if it ended a packet (delivered or dropped).
    fn rx_slot(
        &mut self,
        raw: &RxSlot,
        deliver: &mut impl FnMut(&mut RxPacket<Pg<P>>),
    ) -> Result<bool, Fault> {
        let pos = self.rx_pos(self.rx_cons);
        self.rx_cons = self.rx_cons.wrapping_add(1);
        let slot = self.rx_posted.get(pos).copied().unwrap_or(0);
        if !self.parser.expects_extra() {
            // A data slot names its buffer: the one posted at this position. (An extra-info
            // slot overlays the id; it uses up that buffer all the same.)
            let id = xen_sys::wire::netif::RxResponse::from_bytes(raw).id;
            let e = self
                .rx
                .as_ref()
                .get(usize::from(id))
                .ok_or(Fault::RxBadId(id))?;
            if e.state != RxState::Posted {
                return Err(Fault::RxNotOutstanding(id));
            }
            if id != slot {
                return Err(Fault::RxOutOfOrder { id, expected: slot });
            }
        }
        // Every position below the checked producer holds a posted buffer.
        let e = self
            .rx
            .as_mut()
            .get_mut(usize::from(slot))
            .ok_or(Fault::RxBadId(slot))?;
        let page_ok = match e.gref.take() {
            Some(gref) => {
                self.stats.grant_ends = self.stats.grant_ends.wrapping_add(1);
                match self.env.end_access(gref) {
                    EndAccess::Ended => true,
                    EndAccess::StillMapped => {
                        if let Some(page) = e.page.take() {
                            self.stats.deferred_frees = self.stats.deferred_frees.wrapping_add(1);
                            self.env.defer_free(gref, page);
                        }
                        false
                    }
                }
            }
            None => false,
        };
        let fed = self
            .parser
            .feed(raw, page_ok)
            .map_err(|EndlessChain| Fault::RxEndlessChain)?;
        match fed.kind {
            SlotKind::Data {
                offset,
                len,
                keep: true,
            } if self.nheld < MAX_RX_DATA_SLOTS => {
                if let Some(e) = self.rx.as_mut().get_mut(usize::from(slot)) {
                    e.state = RxState::Held;
                }
                if let Some(h) = self.held.get_mut(self.nheld) {
                    *h = Some(HeldFrag { slot, offset, len });
                }
                self.nheld += 1;
            }
            _ => self.recycle_rx(slot),
        }
        let Some(end) = fed.end else {
            return Ok(false);
        };
        match end {
            Ok(meta) => self.deliver(meta, deliver),
            Err(err) => {
                self.last_rx_error = Some(err);
                self.stats.rx_errors = self.stats.rx_errors.wrapping_add(1);
                for i in 0..self.nheld {
                    if let Some(h) = self.held.get_mut(i).and_then(Option::take) {
                        self.recycle_rx(h.slot);
                    }
                }
                self.nheld = 0;
            }
        }
        Ok(true)
    }

    /// Returns an answered buffer's id: its page (if it came back) stays for the next post.
    fn recycle_rx(&mut self, slot: u16) {
        let Some(e) = self.rx.as_mut().get_mut(usize::from(slot)) else {
            return;
        };
        e.state = RxState::Idle;
        self.rx_ids.release(self.rx.as_mut(), slot);
    }

    fn deliver(&mut self, meta: RxMeta, deliver: &mut impl FnMut(&mut RxPacket<Pg<P>>)) {
        let mut packet = RxPacket {
            frags: core::array::from_fn(|_| None),
            count: 0,
            meta,
        };
        for h in self.held.iter().take(self.nheld).flatten() {
            let page = self
                .rx
                .as_mut()
                .get_mut(usize::from(h.slot))
                .and_then(|e| e.page.take());
            if let (Some(page), Some(out)) = (page, packet.frags.get_mut(packet.count)) {
                *out = Some((Some(page), *h));
                packet.count += 1;
            }
        }
        let mut slots = [0u16; MAX_RX_DATA_SLOTS];
        for (out, h) in slots.iter_mut().zip(self.held.iter()) {
            if let Some(h) = h {
                *out = h.slot;
            }
        }
        let nslots = self.nheld;
        self.held = [None; MAX_RX_DATA_SLOTS];
        self.nheld = 0;
        self.stats.rx_packets = self.stats.rx_packets.wrapping_add(1);
        self.stats.rx_bytes = self.stats.rx_bytes.wrapping_add(u64::from(meta.len));
        if meta.gso.is_some() {
            self.stats.rx_gso = self.stats.rx_gso.wrapping_add(1);
        }
        deliver(&mut packet);
        // Pages the glue left are recycled; every fragment's id is free again (an id whose
        // page was taken gets a fresh page at its next post).
        for (page, h) in packet.frags.into_iter().flatten() {
            let Some(page) = page else { continue };
            if let Some(e) = self.rx.as_mut().get_mut(usize::from(h.slot)) {
                e.page = Some(page);
            }
        }
        for &s in slots.iter().take(nslots) {
            self.recycle_rx(s);
        }
    }

    fn fail_with(&mut self, e: Error) -> Error {
        self.fail();
        e
    }

    /// Fails the queue: ends every grant (deferring pages the backend still maps), frees every
    /// page, and marks unanswered packets aborted (reported by the next
    /// [`tx_event`](Self::tx_event) or [`close`](Self::close)). Idempotent.
    pub fn fail(&mut self) {
        self.failed = true;
        let Self {
            env,
            stats,
            tx,
            tx_ids,
            rx,
            rx_ids,
            ..
        } = self;
        tx_ids.close(tx.as_mut(), |e| {
            if let Some(p) = e.packet.take() {
                stats.tx_aborted = stats.tx_aborted.wrapping_add(1);
                e.aborted = Some(p);
            }
        });
        let tx = tx.as_mut();
        for i in 0..tx.len() {
            let Some(e) = tx.get_mut(i) else { break };
            e.packet = None;
            if core::mem::take(&mut e.lent) {
                let head = usize::from(e.head);
                if let Some(g) = e.gref.take() {
                    stats.grant_ends = stats.grant_ends.wrapping_add(1);
                    if env.end_access(g) == EndAccess::StillMapped {
                        // Lent memory the backend maps: its packet is reported held.
                        if let Some(a) = tx.get_mut(head).and_then(|h| h.aborted.as_mut()) {
                            a.held = true;
                        }
                    }
                }
            }
            if let Some(e) = tx.get_mut(i) {
                release(env, stats, &mut e.gref, &mut e.page);
            }
        }
        rx_ids.close(rx.as_mut(), |_| {});
        for e in rx.as_mut().iter_mut() {
            e.state = RxState::Idle;
            release(env, stats, &mut e.gref, &mut e.page);
        }
        self.tx_null_pending = 0;
        self.parser.reset();
        self.held = [None; MAX_RX_DATA_SLOTS];
        self.nheld = 0;
    }

    /// Closes the queue (the glue's teardown): [`fail`](Self::fail)s it and reports every
    /// unanswered packet once. Then the glue revokes and frees the rings
    /// ([`into_rings`](Self::into_rings), `xen_core::platform::release_ring`).
    pub fn close(&mut self, mut complete: impl FnMut(TxCompletion)) {
        self.fail();
        self.report_aborted(&mut complete);
    }

    /// The ring memory, TX then RX, after [`close`](Self::close).
    pub fn into_rings(mut self) -> (M, M) {
        self.fail();
        (self.tx_ring.into_memory(), self.rx_ring.into_memory())
    }
}

impl<P, M, const N: usize, T, R> NetFront<P, M, N, T, R>
where
    P: LendOps + EvtchnOps + PageAlloc<Page = <P as GrantOps>::Page>,
    <P as GrantOps>::Page: PageBytes,
    M: SharedMemory,
    T: AsRef<[TxEntry<Pg<P>>]> + AsMut<[TxEntry<Pg<P>>]>,
    R: AsRef<[RxEntry<Pg<P>>]> + AsMut<[RxEntry<Pg<P>>]>,
{
    /// Grants the packet's memory where it lies (Linux's netfront with `trusted=1`): each of
    /// `pieces` (the head and fragments, split at page ends by the caller) becomes one data
    /// slot granted read-only, with no copy. Otherwise as [`send`](Self::send): flags and
    /// GSO, nothing queued on an error, `token` returned in the [`TxCompletion`].
    ///
    /// The caller keeps the memory alive and unchanged until that completion, and leaks it
    /// if the completion says [`still_mapped`](TxCompletion::still_mapped). Lending shows
    /// the backend every frame in full, so only a trusted backend is lent to. A packet the
    /// layout refuses ([`SendError::BadLayout`]: more than [`NR_SLOTS_MIN`] pieces, or a
    /// first piece shorter than an Ethernet header) is the caller's to [`send`](Self::send)
    /// (copied and packed) instead.
    pub fn send_lent(
        &mut self,
        pieces: &[TxLent],
        csum: TxChecksum,
        gso: Option<Gso>,
        token: u64,
    ) -> Result<(), SendError> {
        let len = crate::tx::lent_len(pieces).ok_or(SendError::BadLayout)?;
        self.check_send(len, csum, gso, pieces.len())?;
        let mut claimed = [TxSlot::default(); MAX_DATA_SLOTS];
        let mut n = 0;
        let mut result = Ok(());
        for (out, piece) in claimed.iter_mut().zip(pieces) {
            let Some(slot) = self.tx_ids.claim(self.tx.as_mut()) else {
                result = Err(SendError::Busy);
                break;
            };
            n += 1;
            *out = TxSlot {
                id: slot,
                offset: piece.offset,
                size: piece.len,
            };
            match self
                .env
                .grant_frame(self.backend, piece.gfn, Access::ReadOnly)
            {
                Ok(gref) => {
                    self.stats.grants = self.stats.grants.wrapping_add(1);
                    if let Some(e) = self.tx.as_mut().get_mut(usize::from(slot)) {
                        e.answered = false;
                        e.lent = true;
                        e.gref = Some(gref);
                    }
                }
                Err(e) => {
                    result = Err(SendError::Grant(e));
                    break;
                }
            }
        }
        if let Err(e) = result {
            for s in claimed.iter().take(n) {
                self.unclaim_tx(s.id);
            }
            return Err(e);
        }
        self.queue_packet(claimed.get(..n).unwrap_or(&[]), len, csum, gso, token);
        self.stats.lent_bytes = self.stats.lent_bytes.wrapping_add(len as u64);
        Ok(())
    }
}

/// Ends a page's grant and frees it, or defers it while the backend maps it.
fn release<P: GrantOps>(
    env: &P,
    stats: &mut FrontStats,
    gref: &mut Option<GrantRef>,
    page: &mut Option<P::Page>,
) {
    match (gref.take(), page.take()) {
        (Some(g), Some(p)) => {
            stats.grant_ends = stats.grant_ends.wrapping_add(1);
            if platform::revoke(env, g, p) == EndAccess::StillMapped {
                stats.deferred_frees = stats.deferred_frees.wrapping_add(1);
            }
        }
        (Some(g), None) => {
            stats.grant_ends = stats.grant_ends.wrapping_add(1);
            let _ = env.end_access(g);
        }
        (None, p) => drop(p),
    }
}

/// Checks one TX response and applies it; a finished packet's completion if it ended one.
fn tx_answer<P: GrantOps>(
    env: &P,
    stats: &mut FrontStats,
    tx: &mut [TxEntry<P::Page>],
    ids: &mut IdStack,
    null_pending: &mut u32,
    raw: &TxRspBytes,
) -> Result<Option<TxCompletion>, Fault> {
    let (id, status) = match parse_tx_response(raw).map_err(Fault::TxUnknownStatus)? {
        TxReply::Null => {
            *null_pending = null_pending.checked_sub(1).ok_or(Fault::TxUnexpectedNull)?;
            return Ok(None);
        }
        TxReply::Slot { id, status } => (id, status),
    };
    let e = tx.get_mut(usize::from(id)).ok_or(Fault::TxBadId(id))?;
    if !e.link.is_outstanding() || e.answered {
        return Err(Fault::TxNotOutstanding(id));
    }
    e.answered = true;
    let lent = core::mem::take(&mut e.lent);
    let mut held = false;
    if let Some(gref) = e.gref.take() {
        stats.grant_ends = stats.grant_ends.wrapping_add(1);
        if env.end_access(gref) == EndAccess::StillMapped {
            if lent {
                // Not ours to defer: the packet's memory is kept for good (below).
                held = true;
            } else if let Some(page) = e.page.take() {
                stats.deferred_frees = stats.deferred_frees.wrapping_add(1);
                env.defer_free(gref, page);
            }
        }
    }
    let head = e.head;
    if head != id {
        // A slot after the head: its id is free at once (the head's stays outstanding until
        // its packet is complete).
        ids.release(tx, id);
    }
    let h = tx.get_mut(usize::from(head)).ok_or(Fault::TxBadId(id))?;
    let Some(p) = h.packet.as_mut() else {
        // The head's packet always outlives its slots.
        return Ok(None);
    };
    p.remaining = p.remaining.saturating_sub(1);
    if p.outcome == TxOutcome::Okay {
        p.outcome = match status {
            TxStatus::Okay => TxOutcome::Okay,
            TxStatus::Error => TxOutcome::Error,
            TxStatus::Dropped => TxOutcome::Dropped,
        };
    }
    if held {
        // The packet stays on its head: failing the queue reports it aborted and held.
        p.held = true;
        return Err(Fault::TxStillMapped(id));
    }
    if p.remaining > 0 {
        return Ok(None);
    }
    let p = *p;
    h.packet = None;
    ids.release(tx, head);
    if p.outcome != TxOutcome::Okay {
        stats.tx_errors = stats.tx_errors.wrapping_add(1);
    }
    Ok(Some(TxCompletion {
        token: p.token,
        len: p.len,
        outcome: p.outcome,
        still_mapped: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx_table(n: usize) -> Vec<TxEntry<u8>> {
        (0..n).map(|_| TxEntry::new()).collect()
    }

    fn rx_table(n: usize) -> Vec<RxEntry<u8>> {
        (0..n).map(|_| RxEntry::default()).collect()
    }

    #[test]
    fn accepts_empty_tables_of_n() {
        assert_eq!(check_tables(&tx_table(4), &rx_table(4), 4), Ok(()));
        assert_eq!(check_tables(&tx_table(0), &rx_table(0), 0), Ok(()));
    }

    #[test]
    fn rejects_table_of_wrong_length() {
        assert_eq!(check_tables(&tx_table(3), &rx_table(4), 4), Err(3));
        assert_eq!(check_tables(&tx_table(5), &rx_table(4), 4), Err(5));
        assert_eq!(check_tables(&tx_table(4), &rx_table(0), 4), Err(0));
        assert_eq!(check_tables(&tx_table(4), &rx_table(257), 4), Err(257));
    }

    #[test]
    fn rejects_table_not_empty() {
        // Each way a TX entry can hold something: a stale page (never zeroed for this
        // backend), a grant, a packet, an id on some free list.
        let dirty: [fn(&mut TxEntry<u8>); 9] = [
            |e| e.page = Some(0xaa),
            |e| e.gref = Some(GrantRef::new(9)),
            |e| e.lent = true,
            |e| e.dirty = 100,
            |e| e.head = 1,
            |e| e.answered = true,
            |e| {
                e.packet = Some(TxPacketState {
                    token: 1,
                    len: 60,
                    remaining: 1,
                    outcome: TxOutcome::Okay,
                    held: false,
                })
            },
            |e| {
                e.aborted = Some(TxPacketState {
                    token: 1,
                    len: 60,
                    remaining: 1,
                    outcome: TxOutcome::Aborted,
                    held: false,
                })
            },
            |e| {
                let mut ids = IdStack::new();
                ids.open(core::slice::from_mut(e), 0);
            },
        ];
        for (i, f) in dirty.iter().enumerate() {
            let mut tx = tx_table(4);
            f(&mut tx[i % 4]);
            assert_eq!(check_tables(&tx, &rx_table(4), 4), Err(4), "TX case {i}");
        }
        let dirty: [fn(&mut RxEntry<u8>); 4] = [
            |e| e.page = Some(0xaa),
            |e| e.gref = Some(GrantRef::new(9)),
            |e| e.state = RxState::Posted,
            |e| {
                let mut ids = IdStack::new();
                ids.open(core::slice::from_mut(e), 0);
                ids.claim(core::slice::from_mut(e));
            },
        ];
        for (i, f) in dirty.iter().enumerate() {
            let mut rx = rx_table(4);
            f(&mut rx[3 - i % 4]);
            assert_eq!(check_tables(&tx_table(4), &rx, 4), Err(4), "RX case {i}");
        }
    }
}
