//! The blkif frontend engine: queues I/O in zeroed granted pages and checks every response.

use crate::abi::{NativeResponse, NativeSlot};
use crate::parse::Sector;
use crate::Error;
use xen_core::platform::{self, PageAlloc, PageBytes, Progress};
use xen_core::slots::{IdError, Slots, Tag};
use xen_evtchn::EvtchnOps;
use xen_grant::{Access, AccessError, EndAccess, GrantOps};
use xen_ring::{FrontRing, GeometryError, RingError, SharedMemory};
use xen_sys::wire::blkif::{
    self as wire, DiscardFlags, Op, Status, MAX_INDIRECT_PAGES_PER_REQUEST,
    MAX_SEGMENTS_PER_REQUEST, SEGMENTS_PER_INDIRECT_FRAME,
};
use xen_sys::{DomId, GrantRef, Port};

/// Bytes in a sector on the ring.
const SECTOR: usize = 512;
/// Bytes in a granted page.
const PAGE_BYTES: usize = 4096;
/// What a kept page's unused tail is cleared with.
static ZEROS: [u8; PAGE_BYTES] = [0; PAGE_BYTES];
/// Most sectors in one direct request (11 full pages).
pub const MAX_SECTORS_PER_REQUEST: u32 = (MAX_SEGMENTS_PER_REQUEST * 8) as u32;
// `TryFrom` is not usable in a constant; 88 fits.
const _: () = assert!(MAX_SECTORS_PER_REQUEST == 88);

/// How a frontend is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontConfig {
    /// Responses handled per [`BlkFront::handle_event`] call at most.
    pub budget: u32,
    /// Persistent grants negotiated: every data page is granted read-write, as a backend
    /// keeping persistent mappings maps them writable whatever the operation; each table
    /// slot keeps its pages granted for its next request.
    pub persistent: bool,
    /// Indirect segments per request, as negotiated (the backend's
    /// `feature-max-indirect-segments`, capped by what we want). Above 11, requests larger
    /// than 11 pages go through indirect pages, up to this many pages and the engine's `S`.
    pub max_indirect_segments: u16,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            budget: 64,
            persistent: false,
            max_indirect_segments: 0,
        }
    }
}

/// Counters of a frontend (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// Requests queued.
    pub submitted: u64,
    /// Requests completed by a response.
    pub completed: u64,
    /// Requests failed without a response (device failure or close).
    pub aborted: u64,
    /// Segments sent.
    pub segments: u64,
    /// Notifications sent to the backend.
    pub notifications: u64,
    /// Events that found no response.
    pub spurious_events: u64,
    /// Pages whose grant the backend still mapped when the request completed: handed to
    /// `defer_free`, not freed or reused.
    pub deferred_frees: u64,
    /// Grants made (data, indirect and persistent pages).
    pub grants: u64,
    /// Grants ended.
    pub grant_ends: u64,
}

/// A response that breaks the protocol. Any of these fails the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFault {
    /// The id names no slot of our table.
    BadId(u64),
    /// The id names a slot with no request outstanding, or of another generation (a duplicate
    /// or stale response).
    NotOutstanding(u64),
    /// The operation differs from the request's.
    WrongOperation {
        /// The response's id.
        id: u64,
        /// The operation it carried.
        operation: u8,
    },
    /// The status is not a `BLKIF_RSP_*` value.
    UnknownStatus(i16),
    /// The backend broke the ring (impossible response producer).
    Ring,
}

/// Why a request could not be queued. Nothing was granted or queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// Every table slot or ring slot is in use: wait for completions.
    Busy,
    /// The size is zero, not a multiple of 512 bytes, or over 11 pages.
    BadLength,
    /// No page to grant.
    NoMemory,
    /// A grant could not be made.
    Grant(AccessError),
    /// The device failed or was closed.
    Failed,
    /// The backend refused this kind of request (EOPNOTSUPP) on this connection: a flush
    /// completes at once without error (as Linux does), a discard fails with EOPNOTSUPP.
    Unsupported,
}

/// A request's handle; also the low and high halves of the wire id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

/// A finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Which request.
    pub ticket: Ticket,
    /// Its operation.
    pub op: Op,
    /// The backend's status (`Error` for a request aborted without a response).
    pub status: Status,
}

/// The granted data pages of one request, in order, each holding 4096 bytes of its data (the
/// last possibly fewer): what a write's `fill` closure writes into and what a completed read
/// is read from.
pub struct DataPages<'a, Pg> {
    pages: &'a [Option<(GrantRef, Pg)>],
    bytes: usize,
}

/// The data pages of a completed read, readable once their grants are revoked.
pub type ReadData<'a, Pg> = DataPages<'a, Pg>;

impl<Pg: PageBytes> DataPages<'_, Pg> {
    /// Bytes of data (0 for anything but a read, or for a failed read).
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Whether there is no data.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Pages holding the data (`len().div_ceil(4096)`).
    pub fn page_count(&self) -> usize {
        self.bytes.div_ceil(4096).min(self.pages.len())
    }

    /// The page holding bytes `index * 4096 ..`, if `index < page_count()`.
    pub fn page(&self, index: usize) -> Option<&Pg> {
        if index >= self.page_count() {
            return None;
        }
        self.pages.get(index)?.as_ref().map(|(_, p)| p)
    }

    /// Copies the data to `dst` (at most [`len`](Self::len) bytes); `false` if a page could
    /// not be read.
    pub fn copy_to(&self, dst: &mut [u8]) -> bool {
        let n = dst.len().min(self.bytes);
        let Some(dst) = dst.get_mut(..n) else {
            return false;
        };
        for (chunk, page) in dst.chunks_mut(4096).zip(self.pages.iter()) {
            match page {
                Some((_, p)) if p.read_bytes(0, chunk) => {}
                _ => return false,
            }
        }
        true
    }

    /// Copies `src` (at most [`len`](Self::len) bytes) into the pages; `false` if a page
    /// could not be written.
    pub fn copy_from(&self, src: &[u8]) -> bool {
        let n = src.len().min(self.bytes);
        let Some(src) = src.get(..n) else {
            return false;
        };
        for (chunk, page) in src.chunks(4096).zip(self.pages.iter()) {
            match page {
                Some((_, p)) if p.write_bytes(0, chunk) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Granted pages, each with its grant.
type PageSet<Pg, const K: usize> = [Option<(GrantRef, Pg)>; K];

/// The indirect pages of one request.
type IndirectPages<Pg> = PageSet<Pg, MAX_INDIRECT_PAGES_PER_REQUEST>;

/// A slot's kept data and indirect pages (persistent grants).
type SparePages<'a, Pg, const S: usize> = (&'a mut PageSet<Pg, S>, &'a mut IndirectPages<Pg>);

struct Live<Pg, const S: usize> {
    /// The operation the response must carry (an indirect request's inner one).
    op: Op,
    pages: PageSet<Pg, S>,
    /// The pages holding the segment descriptors of an indirect request.
    indirect: IndirectPages<Pg>,
    bytes: usize,
}

/// One request slot of a frontend's table: the request outstanding in it, if any, and (with
/// persistent grants) the pages it keeps granted for its next request. Its id (generation,
/// whether outstanding) is kept by the engine's [`Slots`].
///
/// Public so that a platform can allocate a table on the heap one slot at a time
/// ([`BlkFront::with_table`]); its contents are the engine's.
pub struct SlotEntry<Pg, const S: usize> {
    live: Option<Live<Pg, S>>,
    /// With persistent grants: the data pages this slot's last request used, still granted
    /// read-write, for the next request in this slot. So at most `N * S` pages stay granted,
    /// like Linux's per-ring pool.
    spare: PageSet<Pg, S>,
    /// With persistent grants: this slot's indirect pages, kept granted read-write for its
    /// next indirect request (a backend using persistent grants maps them writable and keeps
    /// them mapped, as it does data pages).
    spare_indirect: IndirectPages<Pg>,
}

impl<Pg, const S: usize> SlotEntry<Pg, S> {
    /// An empty slot.
    pub fn new() -> Self {
        SlotEntry {
            live: None,
            spare: empty_pages(),
            spare_indirect: empty_pages(),
        }
    }
}

impl<Pg, const S: usize> Default for SlotEntry<Pg, S> {
    fn default() -> Self {
        Self::new()
    }
}

type Entry<Pg, const S: usize> = SlotEntry<Pg, S>;

/// The slots of a frontend's ring of `pages` pages (32 a page), or `None` for a size rings
/// cannot have (1, 2, 4, 8 or 16 pages): the queue depth a glue sizes its table to.
pub fn ring_slots(pages: usize) -> Option<usize> {
    let bytes = pages.checked_mul(xen_ring::PAGE_SIZE)?;
    let g = xen_ring::Geometry::new::<NativeSlot, NativeResponse>(bytes).ok()?;
    usize::try_from(g.entries()).ok()
}

/// A table of `N` slots held inline, the default storage.
pub type InlineTable<Pg, const N: usize, const S: usize> = [SlotEntry<Pg, S>; N];

/// The frontend of one blkif ring, with at most `N` requests outstanding of at most `S`
/// segments (pages) each: 11 fit in a ring slot, more need indirect descriptors
/// ([`FrontConfig::max_indirect_segments`]).
///
/// The glue allocates and grants the ring (order from negotiation), allocates the port, and
/// hands both over with [`new`](Self::new). It queues I/O with the `submit_*` calls, publishes
/// with [`push`](Self::push), and calls [`handle_event`](Self::handle_event) when the port
/// fires. A response that breaks the protocol fails the device: every outstanding request
/// completes with `Error`, every grant is revoked (pages the backend still maps are deferred,
/// never freed), and every later call returns [`Error::Disconnected`].
///
/// The slot table is `T`: inline by default (`N` slots), or any slice storage of 1 to `N`
/// slots (e.g. a kernel vector sized to the ring, filled slot by slot, when the table is too
/// large to build on a stack); its length is the queue depth.
pub struct BlkFront<
    P: GrantOps,
    M,
    const N: usize,
    const S: usize = MAX_SEGMENTS_PER_REQUEST,
    T = InlineTable<<P as GrantOps>::Page, N, S>,
> {
    env: P,
    ring: FrontRing<M, NativeSlot, NativeResponse>,
    backend: DomId,
    port: Port,
    table: T,
    _slots: core::marker::PhantomData<Entry<P::Page, S>>,
    /// Which slots are free or outstanding, and their generations (wire ids).
    ids: Slots<N>,
    budget: u32,
    persistent: bool,
    /// Segments per request: up to 11 direct, more through indirect pages.
    max_segments: usize,
    /// Spurious events in a row (for storm diagnostics).
    spurious_run: u32,
    failed: bool,
    /// The backend refused a flush or barrier: later ones are not sent (see
    /// [`SubmitError::Unsupported`]).
    flush_revoked: bool,
    /// The backend refused a discard: later ones are not sent.
    discard_revoked: bool,
    stats: FrontStats,
}

/// The page type of a platform.
type Pg<P> = <P as GrantOps>::Page;

impl<P, M, const N: usize, const S: usize> BlkFront<P, M, N, S>
where
    P: GrantOps + EvtchnOps + PageAlloc<Page = <P as GrantOps>::Page>,
    <P as GrantOps>::Page: PageBytes,
    M: SharedMemory,
{
    /// A frontend over the ring pages `ring` (already granted to `backend`), notifying
    /// `backend` through `port`. Initialises (zeroes) the ring.
    pub fn new(
        env: P,
        ring: M,
        backend: DomId,
        port: Port,
        config: FrontConfig,
    ) -> Result<Self, RingError> {
        let table = core::array::from_fn(|_| SlotEntry::new());
        Self::with_table(env, ring, backend, port, config, table)
    }
}

impl<P, M, const N: usize, const S: usize, T> BlkFront<P, M, N, S, T>
where
    P: GrantOps + EvtchnOps + PageAlloc<Page = <P as GrantOps>::Page>,
    <P as GrantOps>::Page: PageBytes,
    M: SharedMemory,
    T: AsRef<[Entry<Pg<P>, S>]> + AsMut<[Entry<Pg<P>, S>]>,
{
    /// As [`new`](BlkFront::new), with the slot table in `table`: 1 to `N` empty slots
    /// ([`SlotEntry::new`]), otherwise `RingError::Geometry(BadLength(len))`. The table's
    /// length is the queue depth: a glue sizes it to the ring it negotiated (32 slots a
    /// page), as Linux's blkfront sizes its depth, with `N` the most any ring may have.
    pub fn with_table(
        env: P,
        ring: M,
        backend: DomId,
        port: Port,
        config: FrontConfig,
        table: T,
    ) -> Result<Self, RingError> {
        let len = table.as_ref().len();
        let empty = table.as_ref().iter().all(|e| {
            e.live.is_none()
                && e.spare.iter().all(Option::is_none)
                && e.spare_indirect.iter().all(Option::is_none)
        });
        if len == 0 || len > N || !empty {
            return Err(RingError::Geometry(GeometryError::BadLength(len)));
        }
        let ring = FrontRing::init(ring)?;
        // Every slot of the table is free, low slots handed out first; ids beyond it are
        // never handed out (a response naming one is out of range for this queue).
        let mut ids = Slots::new();
        ids.open_all(len);
        Ok(BlkFront {
            env,
            ring,
            backend,
            port,
            table,
            _slots: core::marker::PhantomData,
            ids,
            budget: config.budget.max(1),
            persistent: config.persistent,
            max_segments: max_segments(config.max_indirect_segments, S),
            spurious_run: 0,
            failed: false,
            flush_revoked: false,
            discard_revoked: false,
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

    /// Ring slots (32 per page).
    pub fn ring_entries(&self) -> u32 {
        self.ring.entries()
    }

    /// Requests outstanding.
    pub fn outstanding(&self) -> usize {
        self.ids.outstanding()
    }

    /// Granted pages kept for reuse (persistent grants).
    pub fn pooled_pages(&self) -> usize {
        self.table
            .as_ref()
            .iter()
            .map(|e| {
                e.spare.iter().filter(|p| p.is_some()).count()
                    + e.spare_indirect.iter().filter(|p| p.is_some()).count()
            })
            .sum()
    }

    /// The largest request in 512-byte sectors (8 per segment).
    pub fn max_sectors(&self) -> u32 {
        u32::try_from(self.max_segments * 8).unwrap_or(u32::MAX)
    }

    /// Sets what is negotiated at connection time, after the rings exist: the indirect
    /// segments per request and persistent grants (a Linux backend announces
    /// `feature-max-indirect-segments` and `feature-persistent` only then). Refused (`false`)
    /// while requests are outstanding or pages are pooled.
    pub fn configure(&mut self, indirect: u16, persistent: bool) -> bool {
        if self.outstanding() > 0 || self.pooled_pages() > 0 {
            return false;
        }
        self.max_segments = max_segments(indirect, S);
        self.persistent = persistent;
        true
    }

    /// Whether persistent grants are in use.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether the backend refused a flush (or barrier) on this connection: flushes are no
    /// longer sent.
    pub fn flush_revoked(&self) -> bool {
        self.flush_revoked
    }

    /// Whether the backend refused a discard on this connection: discards are no longer
    /// sent, and the glue should stop announcing them.
    pub fn discard_revoked(&self) -> bool {
        self.discard_revoked
    }

    /// Whether the device failed (or was closed).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Queues a read of `sectors` (1 to [`max_sectors`](Self::max_sectors)) sectors from
    /// `sector`.
    pub fn submit_read(&mut self, sector: Sector, sectors: u32) -> Result<Ticket, SubmitError> {
        if sectors == 0 || sectors > self.max_sectors() {
            return Err(SubmitError::BadLength);
        }
        let bytes = usize::try_from(sectors).map_err(|_| SubmitError::BadLength)? * SECTOR;
        self.submit_data(
            Op::Read,
            sector,
            bytes,
            None::<fn(&DataPages<'_, Pg<P>>) -> bool>,
        )
    }

    /// Queues a write of `data` (a multiple of 512 bytes, at most
    /// [`max_sectors`](Self::max_sectors)) at `sector`.
    pub fn submit_write(&mut self, sector: Sector, data: &[u8]) -> Result<Ticket, SubmitError> {
        if data.is_empty() || data.len() % SECTOR != 0 || data.len() > self.max_segments * 4096 {
            return Err(SubmitError::BadLength);
        }
        self.submit_data(
            Op::Write,
            sector,
            data.len(),
            Some(|pages: &DataPages<'_, Pg<P>>| pages.copy_from(data)),
        )
    }

    /// Queues a write of `bytes` (a multiple of 512, at most
    /// [`max_sectors`](Self::max_sectors) sectors) at `sector`, whose data `fill` writes into
    /// the request's zeroed pages (e.g. straight from the block layer's pages, without an
    /// intermediate buffer). The pages are granted but not yet published when `fill` runs; if
    /// it returns `false` nothing is queued and [`SubmitError::BadLength`] is returned.
    pub fn submit_write_with(
        &mut self,
        sector: Sector,
        bytes: usize,
        fill: impl FnOnce(&DataPages<'_, Pg<P>>) -> bool,
    ) -> Result<Ticket, SubmitError> {
        if bytes == 0 || bytes % SECTOR != 0 || bytes > self.max_segments * 4096 {
            return Err(SubmitError::BadLength);
        }
        self.submit_data(Op::Write, sector, bytes, Some(fill))
    }

    /// Queues a cache flush (`FLUSH_DISKCACHE`, no data).
    pub fn submit_flush(&mut self) -> Result<Ticket, SubmitError> {
        if self.flush_revoked {
            return Err(SubmitError::Unsupported);
        }
        self.submit_empty(Op::FlushDiskcache)
    }

    /// Queues an empty write barrier (`WRITE_BARRIER`, no data): how a flush is asked of a
    /// backend that offers `feature-barrier` but not `feature-flush-cache`, as Linux does.
    pub fn submit_barrier(&mut self) -> Result<Ticket, SubmitError> {
        if self.flush_revoked {
            return Err(SubmitError::Unsupported);
        }
        self.submit_empty(Op::WriteBarrier)
    }

    fn submit_empty(&mut self, op: Op) -> Result<Ticket, SubmitError> {
        let (slot, id) = self.reserve()?;
        let mut req = wire::Request::ZERO;
        req.operation = op.into();
        req.id = id;
        let live = Live {
            op,
            pages: empty_pages(),
            indirect: empty_pages(),
            bytes: 0,
        };
        self.commit(slot, req.to_bytes(), live)
    }

    /// Queues a discard of `count` sectors from `sector`.
    pub fn submit_discard(
        &mut self,
        sector: Sector,
        count: u64,
        secure: bool,
    ) -> Result<Ticket, SubmitError> {
        if self.discard_revoked {
            return Err(SubmitError::Unsupported);
        }
        let (slot, id) = self.reserve()?;
        let mut d = wire::DiscardRequest::ZERO;
        d.operation = Op::Discard.into();
        d.flag = if secure {
            DiscardFlags::SECURE.bits()
        } else {
            0
        };
        d.id = id;
        d.sector_number = sector.0;
        d.nr_sectors = count;
        let req = wire::Request::from(d);
        let live = Live {
            op: Op::Discard,
            pages: empty_pages(),
            indirect: empty_pages(),
            bytes: 0,
        };
        self.commit(slot, req.to_bytes(), live)
    }

    /// Publishes the queued requests and notifies the backend if it asked.
    pub fn push(&mut self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Disconnected);
        }
        match self.ring.push_requests() {
            Ok(n) if n.is_required() => {
                self.stats.notifications = self.stats.notifications.wrapping_add(1);
                self.env.notify(self.port).map_err(Error::Evtchn)
            }
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Ring(e)),
        }
    }

    /// A free table slot and its next wire id, if the ring has room too.
    fn reserve(&mut self) -> Result<(usize, u64), SubmitError> {
        if self.failed {
            return Err(SubmitError::Failed);
        }
        match self.ids.next() {
            Some(tag) if !self.ring.is_full() => Ok((usize::from(tag.slot), tag.id())),
            _ => Err(SubmitError::Busy),
        }
    }

    fn submit_data<F: FnOnce(&DataPages<'_, Pg<P>>) -> bool>(
        &mut self,
        op: Op,
        sector: Sector,
        bytes: usize,
        fill: Option<F>,
    ) -> Result<Ticket, SubmitError> {
        let count = bytes.div_ceil(4096);
        if count == 0 || count > self.max_segments {
            return Err(SubmitError::BadLength);
        }
        let (slot, id) = self.reserve()?;
        let access = if op == Op::Read || self.persistent {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let mut live = Live {
            op,
            pages: empty_pages::<Pg<P>, S>(),
            indirect: empty_pages(),
            bytes: if op == Op::Read { bytes } else { 0 },
        };
        let mut descs = [wire::Segment::ZERO; S];
        let mut left = bytes;
        let mut result = Ok(());
        for (page_slot, desc) in live.pages.iter_mut().zip(descs.iter_mut()) {
            if left == 0 {
                break;
            }
            let here = left.min(4096);
            match self.grant_page(slot, access, op == Op::Write, here) {
                Ok((gref, page)) => {
                    desc.gref = gref.raw();
                    desc.first_sect = 0;
                    desc.last_sect = u8::try_from(here / SECTOR - 1).unwrap_or(7);
                    *page_slot = Some((gref, page));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            left -= here;
        }
        if let (Ok(()), Some(fill)) = (&result, fill) {
            let pages = DataPages {
                pages: &live.pages,
                bytes,
            };
            if !fill(&pages) {
                result = Err(SubmitError::BadLength);
            }
        }
        let descs = descs.get(..count).unwrap_or(&[]);
        let image = match result {
            Ok(()) if count <= MAX_SEGMENTS_PER_REQUEST => {
                let mut req = wire::Request::ZERO;
                req.operation = op.into();
                req.id = id;
                req.sector_number = sector.0;
                req.nr_segments = u8::try_from(count).unwrap_or(0);
                for (dst, src) in req.seg.iter_mut().zip(descs) {
                    *dst = *src;
                }
                Ok(req.to_bytes())
            }
            Ok(()) => self.indirect_request(slot, op, id, sector, descs, &mut live.indirect),
            Err(e) => Err(e),
        };
        match image {
            Ok(image) => {
                let n = u64::try_from(count).unwrap_or(0);
                self.stats.segments = self.stats.segments.wrapping_add(n);
                self.commit(slot, image, live)
            }
            Err(e) => {
                // Nothing was published: the backend never saw these grants.
                self.revoke(&mut live.pages);
                self.revoke(&mut live.indirect);
                Err(e)
            }
        }
    }

    /// Writes `descs` into zeroed pages (512 descriptors each) and returns the slot image of
    /// the indirect request naming them. The pages are fresh and granted read-only, or, with
    /// persistent grants, the slot's kept ones (granted read-write, as the backend maps them).
    fn indirect_request(
        &mut self,
        slot_index: usize,
        op: Op,
        id: u64,
        sector: Sector,
        descs: &[wire::Segment],
        pages: &mut IndirectPages<Pg<P>>,
    ) -> Result<NativeSlot, SubmitError> {
        let mut req = wire::IndirectRequest::ZERO;
        req.operation = Op::Indirect.into();
        req.indirect_op = op.into();
        req.nr_segments = u16::try_from(descs.len()).map_err(|_| SubmitError::BadLength)?;
        req.id = id;
        req.sector_number = sector.0;
        let chunks = descs.chunks(SEGMENTS_PER_INDIRECT_FRAME);
        for ((chunk, slot), gref_out) in chunks
            .zip(pages.iter_mut())
            .zip(req.indirect_grefs.iter_mut())
        {
            let pooled = if self.persistent {
                self.table
                    .as_mut()
                    .get_mut(slot_index)
                    .and_then(|e| e.spare_indirect.iter_mut().find_map(Option::take))
            } else {
                None
            };
            let (granted, mut page) = match pooled {
                Some((gref, page)) => (Some(gref), page),
                None => (None, self.env.alloc_page().ok_or(SubmitError::NoMemory)?),
            };
            if granted.is_some() {
                // A pooled page stays granted, and the backend may keep it mapped (persistent
                // grants): it is shared memory, cleared with the volatile accessor.
                // The whole page is in range: this cannot fail.
                let cleared = page.write_bytes(0, &ZEROS);
                debug_assert!(cleared);
            } else {
                self.env.zero_page(&mut page);
            }
            let gref = match granted {
                Some(gref) => gref,
                None => {
                    let access = if self.persistent {
                        Access::ReadWrite
                    } else {
                        Access::ReadOnly
                    };
                    let gref = match self.env.grant_access(self.backend, &page, access) {
                        Ok(g) => g,
                        Err(e) => {
                            drop(page);
                            return Err(SubmitError::Grant(e));
                        }
                    };
                    self.stats.grants = self.stats.grants.wrapping_add(1);
                    gref
                }
            };
            // Held in the request from here on, so an error below revokes it.
            *gref_out = gref.raw();
            let page = &slot.insert((gref, page)).1;
            for (j, d) in chunk.iter().enumerate() {
                if !page.write_bytes(j * wire::Segment::SIZE, &d.to_bytes()) {
                    return Err(SubmitError::NoMemory);
                }
            }
        }
        Ok(wire::Request::from(req).to_bytes())
    }

    /// A page for `len` bytes of a request, granted: one the slot kept (persistent grants) or
    /// a fresh one, zeroed.
    ///
    /// A kept page is not zeroed again: it only ever held data this backend wrote or was
    /// given, and a read's page is overwritten by the backend, a write's first `len` bytes by
    /// the data. Only a write's tail past `len` is cleared, so a request carries nothing but
    /// its own bytes.
    fn grant_page(
        &mut self,
        slot: usize,
        access: Access,
        write: bool,
        len: usize,
    ) -> Result<(GrantRef, Pg<P>), SubmitError> {
        let pooled = if self.persistent {
            self.table
                .as_mut()
                .get_mut(slot)
                .and_then(|e| e.spare.iter_mut().find_map(Option::take))
        } else {
            None
        };
        let (granted, mut page) = match pooled {
            Some((gref, page)) => (Some(gref), page),
            None => (None, self.env.alloc_page().ok_or(SubmitError::NoMemory)?),
        };
        if let Some(gref) = granted {
            if write && len < PAGE_BYTES {
                let tail = ZEROS.get(..PAGE_BYTES - len).unwrap_or(&[]);
                if !page.write_bytes(len, tail) {
                    return Err(SubmitError::NoMemory);
                }
            }
            return Ok((gref, page));
        }
        // A fresh page is zeroed whole before it is shared: no stale kernel data reaches the
        // backend.
        self.env.zero_page(&mut page);
        let gref = self
            .env
            .grant_access(self.backend, &page, access)
            .map_err(SubmitError::Grant)?;
        self.stats.grants = self.stats.grants.wrapping_add(1);
        Ok((gref, page))
    }

    fn commit(
        &mut self,
        slot: usize,
        image: NativeSlot,
        mut live: Live<Pg<P>, S>,
    ) -> Result<Ticket, SubmitError> {
        if self.ring.queue_request(&image).is_err() {
            self.revoke(&mut live.pages);
            self.revoke(&mut live.indirect);
            return Err(SubmitError::Busy);
        }
        let id = u64::from_ne_bytes(image[8..16].try_into().unwrap_or([0; 8]));
        if let Some(entry) = self.table.as_mut().get_mut(slot) {
            entry.live = Some(live);
        }
        let claimed = self.ids.claim();
        debug_assert_eq!(claimed.map(Tag::id), Some(id));
        self.stats.submitted = self.stats.submitted.wrapping_add(1);
        Ok(Ticket(id))
    }

    /// Ends every grant in `pages` (deferring pages still mapped).
    fn revoke(&mut self, pages: &mut [Option<(GrantRef, Pg<P>)>]) {
        revoke_into(&self.env, &mut self.stats, pages);
    }

    /// Handles the port's event: completes at most the budget of responses, calling
    /// `complete` for each (with the read data, readable after the grants are revoked).
    ///
    /// A bad response fails the device (see the type doc) and returns [`Error::Response`],
    /// once. The events of a failed device find no work: they are spurious (`Ok`, nothing
    /// done), so a backend that keeps notifying is throttled, and the glue has nothing new to
    /// report.
    pub fn handle_event(
        &mut self,
        mut complete: impl FnMut(Completion, &ReadData<'_, Pg<P>>),
    ) -> Result<Progress, Error> {
        if self.failed {
            self.stats.spurious_events = self.stats.spurious_events.wrapping_add(1);
            self.spurious_run = self.spurious_run.saturating_add(1);
            return Ok(Progress {
                done: 0,
                more: false,
                spurious: true,
            });
        }
        let mut done = 0u32;
        let mut fault = None;
        match self.ring.responses(self.budget) {
            Err(e) => fault = Some((ResponseFault::Ring, Error::Ring(e))),
            Ok(batch) => {
                for raw in batch {
                    // Copied out once; only the copy is checked.
                    let rsp = wire::Response::from_bytes(&raw);
                    match check(&self.ids, self.table.as_mut(), &rsp) {
                        Ok((tag, live, status)) => {
                            let slot = usize::from(tag.slot);
                            done += 1;
                            let status = revoke_on_refusal(
                                live.op,
                                status,
                                &mut self.flush_revoked,
                                &mut self.discard_revoked,
                            );
                            let pool = if self.persistent {
                                self.table
                                    .as_mut()
                                    .get_mut(slot)
                                    .map(|e| (&mut e.spare, &mut e.spare_indirect))
                            } else {
                                None
                            };
                            finish(
                                &self.env,
                                &mut self.stats,
                                pool,
                                rsp.id,
                                live,
                                status,
                                &mut complete,
                            );
                            self.ids.release(tag);
                            self.stats.completed = self.stats.completed.wrapping_add(1);
                        }
                        Err(f) => {
                            fault = Some((f, Error::Response(f)));
                            break;
                        }
                    }
                }
            }
        }
        let more = match fault {
            None if done >= self.budget => true,
            None => match self.ring.final_check_for_responses() {
                Ok(more) => more,
                Err(e) => {
                    fault = Some((ResponseFault::Ring, Error::Ring(e)));
                    false
                }
            },
            Some(_) => false,
        };
        if let Some((_, err)) = fault {
            self.fail(&mut complete);
            return Err(err);
        }
        let spurious = done == 0;
        if spurious {
            self.stats.spurious_events = self.stats.spurious_events.wrapping_add(1);
            self.spurious_run = self.spurious_run.saturating_add(1);
        } else {
            self.spurious_run = 0;
        }
        Ok(Progress {
            done,
            more,
            spurious,
        })
    }

    /// Fails the device: every outstanding request completes with `Error`, every grant is
    /// revoked or deferred. Idempotent. Also what the glue calls to close.
    pub fn fail(&mut self, mut complete: impl FnMut(Completion, &ReadData<'_, Pg<P>>)) {
        self.failed = true;
        let (env, stats, table) = (&self.env, &mut self.stats, self.table.as_mut());
        self.ids.close(|tag| {
            let Some(live) = table
                .get_mut(usize::from(tag.slot))
                .and_then(|e| e.live.take())
            else {
                return;
            };
            let (mut pages, mut indirect) = (live.pages, live.indirect);
            revoke_into(env, stats, &mut pages);
            revoke_into(env, stats, &mut indirect);
            stats.aborted = stats.aborted.wrapping_add(1);
            let data = ReadData {
                pages: &[],
                bytes: 0,
            };
            complete(
                Completion {
                    ticket: Ticket(tag.id()),
                    op: live.op,
                    status: Status::Error,
                },
                &data,
            );
        });
        for entry in self.table.as_mut().iter_mut() {
            revoke_into(&self.env, &mut self.stats, &mut entry.spare);
            revoke_into(&self.env, &mut self.stats, &mut entry.spare_indirect);
        }
    }
}

fn empty_pages<Pg, const K: usize>() -> PageSet<Pg, K> {
    core::array::from_fn(|_| None)
}

/// Segments per request: 11 direct, or the negotiated indirect maximum (at most 8 pages of
/// 512), never more than the engine's `S`.
fn max_segments(indirect: u16, s: usize) -> usize {
    let indirect = usize::from(indirect);
    let want = if indirect > MAX_SEGMENTS_PER_REQUEST {
        indirect.min(MAX_INDIRECT_PAGES_PER_REQUEST * SEGMENTS_PER_INDIRECT_FRAME)
    } else {
        MAX_SEGMENTS_PER_REQUEST
    };
    want.min(s)
}

/// What a response's status means once the backend's refusals are taken into account, as
/// Linux's blkfront reads them: an empty flush or barrier answered `EOPNOTSUPP` or `Error`
/// means the backend revoked flushes (the protocol allows it at any time): the flush succeeds,
/// and none is sent again. A discard answered `EOPNOTSUPP` turns discards off. Nothing else
/// changes: reads and writes go on.
fn revoke_on_refusal(op: Op, status: Status, flush: &mut bool, discard: &mut bool) -> Status {
    match (op, status) {
        (Op::FlushDiskcache | Op::WriteBarrier, Status::Eopnotsupp | Status::Error) => {
            *flush = true;
            Status::Okay
        }
        (Op::Discard, Status::Eopnotsupp) => {
            *discard = true;
            status
        }
        _ => status,
    }
}

/// Checks a response against the slot ids and the table; on success takes the request out of
/// the table (the caller then releases its slot).
fn check<Pg, const N: usize, const S: usize>(
    ids: &Slots<N>,
    table: &mut [Entry<Pg, S>],
    rsp: &wire::Response,
) -> Result<(Tag, Live<Pg, S>, Status), ResponseFault> {
    let id = rsp.id;
    let tag = ids.lookup(id).map_err(|e| match e {
        IdError::OutOfRange => ResponseFault::BadId(id),
        IdError::NotOutstanding => ResponseFault::NotOutstanding(id),
    })?;
    let entry = table
        .get_mut(usize::from(tag.slot))
        .ok_or(ResponseFault::BadId(id))?;
    let op = match &entry.live {
        Some(live) => live.op,
        None => return Err(ResponseFault::NotOutstanding(id)),
    };
    // An indirect request is answered with its inner operation, which is what `op` holds.
    if rsp.operation != u8::from(op) {
        return Err(ResponseFault::WrongOperation {
            id,
            operation: rsp.operation,
        });
    }
    let status =
        Status::try_from(rsp.status).map_err(|_| ResponseFault::UnknownStatus(rsp.status))?;
    let live = entry.live.take().ok_or(ResponseFault::NotOutstanding(id))?;
    Ok((tag, live, status))
}

/// Completes a checked request: revoke its grants first, then hand the data over, then free
/// the pages (or defer those the backend still maps). With persistent grants (`pool`), the
/// data and indirect pages stay granted and go back to the slot's spare sets.
fn finish<P: GrantOps, const S: usize>(
    env: &P,
    stats: &mut FrontStats,
    pool: Option<SparePages<'_, P::Page, S>>,
    id: u64,
    live: Live<P::Page, S>,
    status: Status,
    complete: &mut impl FnMut(Completion, &ReadData<'_, P::Page>),
) {
    let Live {
        op,
        mut pages,
        mut indirect,
        bytes,
    } = live;
    let mut pool = match pool {
        Some((data, ind)) => {
            // Persistent: the descriptor pages are kept for the slot's next request.
            for (free, page) in ind.iter_mut().zip(indirect.iter_mut()) {
                if free.is_none() {
                    *free = page.take();
                }
            }
            Some(data)
        }
        None => None,
    };
    // The descriptors were read by the backend before it answered; they are not reused
    // (without persistent grants; with them, any the spare set could not take).
    revoke_into(env, stats, &mut indirect);
    // A page the backend no longer maps cannot change under us once its grant is ended. A
    // page it still maps is read all the same (a backend can only spoil its own guest's data)
    // and then deferred, never freed.
    let mut still_mapped = [false; S];
    if pool.is_none() {
        for (p, still) in pages.iter().zip(still_mapped.iter_mut()) {
            if let Some((gref, _)) = p {
                stats.grant_ends = stats.grant_ends.wrapping_add(1);
                *still = env.end_access(*gref) == EndAccess::StillMapped;
            }
        }
    }
    let data = ReadData {
        pages: &pages,
        bytes: if status == Status::Okay { bytes } else { 0 },
    };
    complete(
        Completion {
            ticket: Ticket(id),
            op,
            status,
        },
        &data,
    );
    for (p, still) in pages.iter_mut().zip(still_mapped) {
        let Some(entry) = p.take() else {
            continue;
        };
        let (gref, page, still) = match pool.as_mut() {
            Some(pool) => match pool.iter_mut().find(|p| p.is_none()) {
                Some(free) => {
                    *free = Some(entry);
                    continue;
                }
                None => {
                    // Cannot happen (a request has at most as many pages as a spare set);
                    // revoke rather than leak.
                    let (gref, page) = entry;
                    stats.grant_ends = stats.grant_ends.wrapping_add(1);
                    let ended = env.end_access(gref) == EndAccess::Ended;
                    (gref, page, !ended)
                }
            },
            None => (entry.0, entry.1, still),
        };
        if still {
            stats.deferred_frees = stats.deferred_frees.wrapping_add(1);
            env.defer_free(gref, page);
        } else {
            drop((gref, page));
        }
    }
}

/// Ends every grant in `pages`; a page the backend still maps goes to `defer_free`.
fn revoke_into<P: GrantOps>(
    env: &P,
    stats: &mut FrontStats,
    pages: &mut [Option<(GrantRef, P::Page)>],
) {
    for p in pages.iter_mut() {
        if let Some((gref, page)) = p.take() {
            stats.grant_ends = stats.grant_ends.wrapping_add(1);
            if platform::revoke(env, gref, page) == EndAccess::StillMapped {
                stats.deferred_frees = stats.deferred_frees.wrapping_add(1);
            }
        }
    }
}
