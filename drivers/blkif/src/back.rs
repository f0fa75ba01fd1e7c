//! The blkif backend engine: takes requests off a mapped ring, validates them, maps the data
//! grants in batches, starts the I/O on a [`Storage`] straight on the mapped guest pages, and
//! answers each request when its I/O is done.
//!
//! Requests run asynchronously: each valid request takes a pending slot (a tag) and keeps its
//! mappings until [`BlkBack::complete`] reports its I/O. How many run at once is bounded by
//! the pending slots and by [`BackConfig::max_inflight_segments`] (plus one request); past
//! either bound the
//! engine leaves requests on the ring (it is "stalled") and takes them once I/O completes.
//! The tables that grow with those bounds (pending slots, segment states, the
//! persistent-grant cache) are the glue's memory ([`Tables`]), so that nothing large is ever
//! built on a kernel stack.

use crate::abi::{x86_32, Abi, NativeResponse, NativeSlot, X86_32Response, X86_32Slot};
use crate::cache::{Cache, CacheSlot, Clock};
use crate::parse::{self, Body, Direction, Invalid, Limits, Transfer};
use crate::storage::{Io, IoError, IoKind, SegState, Started, Storage};
use crate::Error;
use xen_core::platform::{PageBytes, Progress};
use xen_evtchn::EvtchnOps;
use xen_grant::{Access, GrantOps, MapRequest, MapResult, UnmapResult};
use xen_ring::{BackRing, Notify, RingError, SharedMemory, Slot};
use xen_sys::wire::blkif::{self as wire, Status, SEGMENTS_PER_INDIRECT_FRAME};
use xen_sys::{DomId, GrantRef, Port};

/// Grants mapped per hypercall batch.
pub const MAP_BATCH: usize = 16;
/// The most segments one request can carry here (the segment states per pending slot).
pub const MAX_SEGS: usize = parse::MAX_INDIRECT_SEGMENTS as usize;
// `From` is not usable in a constant; the widening above is lossless.
const _: () = assert!(MAX_SEGS == 256);

/// How a backend is set up: what it offers and how hard it works per event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackConfig {
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard`.
    pub discard: bool,
    /// `discard-secure`.
    pub secure_discard: bool,
    /// `feature-max-indirect-segments` (0: none; at most 256).
    pub max_indirect_segments: u16,
    /// Persistent grants negotiated (`feature-persistent` on both sides).
    pub persistent: bool,
    /// Requests taken per [`BlkBack::handle_event`] call at most.
    pub budget: u32,
    /// Segments of requests in flight (each may need a transient mapping): a request is
    /// taken only while fewer are in flight, so at most this plus one request's 256 are.
    pub max_inflight_segments: u32,
    /// The secret key of the persistent-grant cache's hash ([`Clock::with_key`]). The glue
    /// draws it at random for each connection; the default (zero) is for host tests only.
    pub cache_key: [u64; 2],
}

impl Default for BackConfig {
    /// What Linux's blkback offers.
    fn default() -> Self {
        BackConfig {
            flush: true,
            barrier: true,
            discard: true,
            secure_discard: false,
            max_indirect_segments: parse::MAX_INDIRECT_SEGMENTS,
            persistent: true,
            budget: 64,
            max_inflight_segments: 1280,
            cache_key: [0; 2],
        }
    }
}

/// Counters of a backend (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackStats {
    /// Requests taken off the ring.
    pub requests: u64,
    /// Requests refused by validation.
    pub invalid: u64,
    /// Requests answered `ERROR` because a grant did not map.
    pub map_failures: u64,
    /// Requests answered `ERROR` because the storage failed.
    pub io_errors: u64,
    /// Data segments transferred.
    pub segments: u64,
    /// Requests whose segments came from indirect pages.
    pub indirect: u64,
    /// Segments served from the persistent-grant cache.
    pub persistent_hits: u64,
    /// Grant mappings made (data and indirect pages).
    pub maps: u64,
    /// Grant mappings undone.
    pub unmaps: u64,
    /// Events that found no request.
    pub spurious_events: u64,
    /// Times the engine left requests on the ring because too much I/O was in flight.
    pub stalls: u64,
    /// Most requests in flight at once.
    pub max_in_flight: u64,
    /// Valid flush and barrier requests (with or without data).
    pub flushes: u64,
    /// Valid discard requests.
    pub discards: u64,
    /// Read requests started (Linux's `rd_req`).
    pub reads: u64,
    /// Write requests started, not counting flushes and barriers with data (`wr_req`).
    pub writes: u64,
    /// 512-byte sectors read (`rd_sect`).
    pub read_sectors: u64,
    /// 512-byte sectors written, with those of flushes and barriers (`wr_sect`).
    pub write_sectors: u64,
    /// Requests answered with an error because they came after [`BlkBack::close`].
    pub refused_closing: u64,
}

/// The state of one pending slot (a request whose I/O may be running).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingSlot {
    busy: bool,
    id: u64,
    operation: u8,
    count: u16,
}

impl PendingSlot {
    /// A free slot.
    pub const FREE: Self = PendingSlot {
        busy: false,
        id: 0,
        operation: 0,
        count: 0,
    };
}

/// The engine's tables, borrowed together.
pub struct Parts<'a, M> {
    /// One per request that may be in flight.
    pub pending: &'a mut [PendingSlot],
    /// [`MAX_SEGS`] per pending slot.
    pub segs: &'a mut [SegState<M>],
    /// The persistent-grant cache (its length is the capacity; may be empty).
    pub cache: &'a mut [CacheSlot<M>],
}

/// Memory the glue provides for the engine's tables (on the heap in the kernel): pending
/// slots ([`PendingSlot::FREE`]), `MAX_SEGS` segment states per pending slot
/// ([`SegState::EMPTY`]) and cache slots ([`CacheSlot::EMPTY`]). The depth is
/// `min(pending.len(), segs.len() / MAX_SEGS)`.
pub trait Tables<M> {
    /// All tables, writable.
    fn parts(&mut self) -> Parts<'_, M>;
    /// The cache slots, read-only.
    fn cache(&self) -> &[CacheSlot<M>];
}

/// Tables in `Vec`s (host builds).
#[cfg(any(test, feature = "std"))]
pub struct VecTables<M> {
    pending: std::vec::Vec<PendingSlot>,
    segs: std::vec::Vec<SegState<M>>,
    cache: std::vec::Vec<CacheSlot<M>>,
}

#[cfg(any(test, feature = "std"))]
impl<M> VecTables<M> {
    /// Room for `depth` requests in flight and `cache` persistent grants.
    pub fn new(depth: usize, cache: usize) -> Self {
        VecTables {
            pending: (0..depth).map(|_| PendingSlot::FREE).collect(),
            segs: (0..depth * MAX_SEGS).map(|_| SegState::EMPTY).collect(),
            cache: (0..cache).map(|_| CacheSlot::EMPTY).collect(),
        }
    }
}

#[cfg(any(test, feature = "std"))]
impl<M> Tables<M> for VecTables<M> {
    fn parts(&mut self) -> Parts<'_, M> {
        Parts {
            pending: &mut self.pending,
            segs: &mut self.segs,
            cache: &mut self.cache,
        }
    }

    fn cache(&self) -> &[CacheSlot<M>] {
        &self.cache
    }
}

/// Who the engine serves: the request layout, the frontend's domain, the bound port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// `protocol` as the frontend wrote it.
    pub abi: Abi,
    /// The frontend's domain.
    pub front: DomId,
    /// Our end of the event channel.
    pub port: Port,
}

enum Ring<M> {
    Native(BackRing<M, NativeSlot, NativeResponse>),
    X86_32(BackRing<M, X86_32Slot, X86_32Response>),
}

impl<M: SharedMemory> Ring<M> {
    fn queue(&mut self, rsp: &wire::Response) -> Result<(), RingError> {
        match self {
            Ring::Native(r) => r.queue_response(&rsp.to_bytes()),
            Ring::X86_32(r) => r.queue_response(&x86_32::response(rsp)),
        }
    }

    fn push(&mut self) -> Result<Notify, RingError> {
        match self {
            Ring::Native(r) => r.push_responses(),
            Ring::X86_32(r) => r.push_responses(),
        }
    }
}

/// Everything but the ring, so a request can be served while the ring batch is borrowed.
struct Server<P: GrantOps, S, T> {
    env: P,
    storage: S,
    tables: T,
    clock: Clock,
    front: DomId,
    limits: Limits,
    persistent: bool,
    stats: BackStats,
    depth: usize,
    in_flight: usize,
    inflight_segs: usize,
    seg_limit: usize,
}

/// The backend of one blkif ring.
///
/// The glue maps the ring the frontend granted (any order up to 4), binds its event channel,
/// and hands both over with [`new`](Self::new); it calls [`handle_event`](Self::handle_event)
/// when the port fires (again at once while [`Progress::more`], and otherwise sends the late
/// EOI with [`Progress::spurious`]). When the storage reports a request done, the glue calls
/// [`complete`](Self::complete), then [`resume`](Self::resume) once per batch of completions
/// (it publishes the responses and takes requests left waiting). A ring the frontend breaks
/// disconnects the engine: the ring is unmapped, idle persistent grants are unmapped, the port
/// is closed, and every later event is answered with [`Error::Disconnected`]; requests in
/// flight keep their mappings until they complete (see [`in_flight`](Self::in_flight)).
pub struct BlkBack<P: GrantOps, S, M, T> {
    ring: Option<Ring<M>>,
    port: Option<Port>,
    budget: u32,
    /// Spurious events in a row (for storm diagnostics).
    spurious_run: u32,
    stalled: bool,
    /// Closing ([`close`](BlkBack::close)): requests still on the ring are answered with an
    /// error instead of served, while those in flight finish.
    closing: bool,
    server: Server<P, S, T>,
}

impl<P, S, M, T> BlkBack<P, S, M, T>
where
    P: GrantOps + EvtchnOps,
    P::Mapping: PageBytes,
    S: Storage<P::Mapping>,
    M: SharedMemory,
    T: Tables<P::Mapping>,
{
    /// A backend serving `storage` over the mapped ring `ring` to the frontend of `conn`,
    /// with `tables` for its requests in flight and persistent grants.
    pub fn new(
        env: P,
        storage: S,
        ring: M,
        conn: Connection,
        config: BackConfig,
        mut tables: T,
    ) -> Result<Self, RingError> {
        let ring = match conn.abi {
            Abi::X86_64 => Ring::Native(BackRing::attach(ring)?),
            Abi::X86_32 => Ring::X86_32(BackRing::attach(ring)?),
        };
        let limits = Limits {
            capacity: storage.capacity(),
            read_only: storage.read_only(),
            flush: config.flush,
            barrier: config.barrier,
            discard: config.discard,
            secure_discard: config.discard && config.secure_discard,
            max_indirect_segments: config.max_indirect_segments,
        };
        let parts = tables.parts();
        let depth = parts.pending.len().min(parts.segs.len() / MAX_SEGS);
        for p in parts.pending.iter_mut() {
            *p = PendingSlot::FREE;
        }
        Ok(BlkBack {
            ring: Some(ring),
            port: Some(conn.port),
            budget: config.budget.max(1),
            spurious_run: 0,
            stalled: false,
            closing: false,
            server: Server {
                env,
                storage,
                tables,
                clock: Clock::with_key(config.cache_key),
                front: conn.front,
                limits,
                persistent: config.persistent,
                stats: BackStats::default(),
                depth,
                in_flight: 0,
                inflight_segs: 0,
                seg_limit: usize::try_from(config.max_inflight_segments)
                    .unwrap_or(usize::MAX)
                    .max(1),
            },
        })
    }

    /// The platform.
    pub fn env(&self) -> &P {
        &self.server.env
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.server.storage
    }

    /// The storage, writable (tests complete deferred requests through it).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.server.storage
    }

    /// What requests are checked against.
    pub fn limits(&self) -> &Limits {
        &self.server.limits
    }

    /// Ends one purge period of the persistent-grant cache (the glue calls it once a second,
    /// idle or not) and unmaps the grants no request used for `idle` periods: Linux's
    /// `persistent_grant_unused_seconds` (0 keeps them for ever). Returns how many.
    pub fn purge_unused_grants(&mut self, idle: u32) -> usize {
        if idle == 0 {
            return 0;
        }
        self.server.purge_unused(idle)
    }

    /// Checks the storage's size (online resize): returns the new size in sectors if it
    /// changed since the last check (or since `new`), after which requests are checked
    /// against it. The glue then announces it to the frontend
    /// (`xen_core::feature::blkif::announce_resize`), as Linux's blkback does
    /// when its device grows. Cheap: call it whenever the engine runs.
    pub fn check_resize(&mut self) -> Option<u64> {
        let now = self.server.storage.capacity();
        if now == self.server.limits.capacity {
            return None;
        }
        self.server.limits.capacity = now;
        Some(now)
    }

    /// Counters.
    pub fn stats(&self) -> BackStats {
        self.server.stats
    }

    /// Persistent grants currently mapped.
    pub fn persistent_grants(&self) -> usize {
        self.server.clock.held()
    }

    /// Requests whose I/O has not been reported by [`complete`](Self::complete) yet. The
    /// glue must not drop the engine (nor the storage) before this is zero.
    pub fn in_flight(&self) -> usize {
        self.server.in_flight
    }

    /// Whether the ring is still served.
    pub fn is_connected(&self) -> bool {
        self.ring.is_some()
    }

    /// Spurious events in a row.
    pub fn consecutive_spurious(&self) -> u32 {
        self.spurious_run
    }

    /// Handles the port's event: takes at most the budget of requests (answering invalid ones
    /// and ones the storage finished at once), publishes the responses, and says whether more
    /// are waiting and when to re-enable the port (late EOI: events that bring no work are
    /// throttled).
    ///
    /// A broken ring returns [`Error::Ring`] once, after disconnecting.
    pub fn handle_event(&mut self) -> Result<Progress, Error> {
        if self.ring.is_none() {
            self.server.stats.spurious_events = self.server.stats.spurious_events.wrapping_add(1);
            return Err(Error::Disconnected);
        }
        let (done, more) = self.pump()?;
        let spurious = done == 0 && !self.stalled;
        if spurious {
            self.server.stats.spurious_events = self.server.stats.spurious_events.wrapping_add(1);
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

    /// Reports request `tag` done (the tag [`Storage::start`] got) and queues its response.
    /// Unknown or free tags are ignored. Call [`resume`](Self::resume) after a batch.
    pub fn complete(&mut self, tag: usize, result: Result<(), IoError>) {
        let Some(rsp) = self.server.finish(tag, result) else {
            return;
        };
        match self.ring.as_mut() {
            Some(ring) => {
                if let Err(e) = ring.queue(&rsp) {
                    // Only an internal bug gets here (a request was taken, so a slot is free).
                    let _ = e;
                    self.disconnect();
                }
            }
            None => {
                if self.server.in_flight == 0 {
                    self.server.drain_cache();
                }
            }
        }
    }

    /// After completions: publishes the queued responses (notifying the frontend if it asked)
    /// and takes requests that waited for room. `Progress::more`: call again (the budget ran
    /// out); its `spurious` is meaningless here (no event is being handled).
    pub fn resume(&mut self) -> Result<Progress, Error> {
        if self.ring.is_none() {
            return Err(Error::Disconnected);
        }
        let (done, more) = self.pump()?;
        Ok(Progress {
            done,
            more,
            spurious: false,
        })
    }

    /// One budgeted batch, then the push: (requests taken, more waiting).
    fn pump(&mut self) -> Result<(u32, bool), Error> {
        let Some(ring) = self.ring.as_mut() else {
            return Err(Error::Disconnected);
        };
        let server = &mut self.server;
        let closing = self.closing;
        let result = match ring {
            Ring::Native(r) => run(
                r,
                server,
                self.budget,
                closing,
                wire::Request::from_bytes,
                |rsp| rsp.to_bytes(),
            ),
            Ring::X86_32(r) => run(
                r,
                server,
                self.budget,
                closing,
                x86_32::to_native,
                x86_32::response,
            ),
        };
        let (done, stalled, more) = match result {
            Ok(v) => v,
            Err(e) => {
                self.disconnect();
                return Err(Error::Ring(e));
            }
        };
        if stalled {
            self.server.stats.stalls = self.server.stats.stalls.wrapping_add(1);
        }
        self.stalled = stalled;
        let notify = match ring.push() {
            Ok(n) => n,
            Err(e) => {
                self.disconnect();
                return Err(Error::Ring(e));
            }
        };
        if notify.is_required() {
            if let Some(port) = self.port {
                self.server.env.notify(port).map_err(Error::Evtchn)?;
            }
        }
        Ok((done, more))
    }

    /// Begins an orderly close, before [`disconnect`](Self::disconnect): from now on every
    /// request taken from the ring is answered `BLKIF_RSP_ERROR` at once (nothing is mapped
    /// or started), and the requests in flight finish and are answered as usual
    /// ([`complete`](Self::complete), [`resume`](Self::resume)). This answers all that is on
    /// the ring now; the glue then waits for [`in_flight`](Self::in_flight) to reach 0.
    ///
    /// A frontend that is closing (Linux's blkfront marks its disk dead and says Closed)
    /// still waits for an answer to every request it queued; one left unanswered hangs its
    /// disk's removal forever. So responses are pushed before the ring is unmapped.
    pub fn close(&mut self) -> Result<Progress, Error> {
        self.closing = true;
        self.resume()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Stops serving: unmaps every persistent grant no request in flight uses, unmaps the
    /// ring and closes the port. Idempotent. Requests in flight keep their mappings until
    /// [`complete`](Self::complete) (which then unmaps them, and the rest of the cache once
    /// the last is done); their responses are dropped.
    pub fn disconnect(&mut self) {
        self.server.drain_cache();
        drop(self.ring.take());
        if let Some(port) = self.port.take() {
            let _ = self.server.env.close(port);
        }
        self.stalled = false;
        self.spurious_run = 0;
    }
}

/// One budgeted batch on either layout: returns (requests taken, stalled, more waiting).
/// Responses are queued, not pushed.
fn run<M, Req, Rsp, P, S, T>(
    ring: &mut BackRing<M, Req, Rsp>,
    server: &mut Server<P, S, T>,
    budget: u32,
    closing: bool,
    decode: impl Fn(&Req) -> wire::Request,
    encode: impl Fn(&wire::Response) -> Rsp,
) -> Result<(u32, bool, bool), RingError>
where
    M: SharedMemory,
    Req: Slot,
    Rsp: Slot,
    P: GrantOps,
    P::Mapping: PageBytes,
    S: Storage<P::Mapping>,
    T: Tables<P::Mapping>,
{
    let mut done = 0u32;
    let mut stalled = false;
    let mut batch = ring.requests(budget)?;
    loop {
        if !closing && !server.has_room() {
            stalled = true;
            break;
        }
        let Some(slot) = batch.next() else { break };
        // The slot was copied out once; only the copy is decoded and validated.
        let req = decode(&slot);
        if closing {
            batch.queue_response(&encode(&server.refuse_closing(&req)))?;
        } else if let Some(rsp) = server.serve(&req) {
            batch.queue_response(&encode(&rsp))?;
        }
        done += 1;
    }
    let more = if stalled {
        // Completions resume the engine; no event is needed meanwhile.
        false
    } else if done >= budget {
        true
    } else {
        ring.final_check_for_requests()?
    };
    Ok((done, stalled, more))
}

impl<P, S, T> Server<P, S, T>
where
    P: GrantOps,
    P::Mapping: PageBytes,
    S: Storage<P::Mapping>,
    T: Tables<P::Mapping>,
{
    /// Whether one more request, of any size, can be taken.
    fn has_room(&self) -> bool {
        self.in_flight < self.depth && self.inflight_segs < self.seg_limit
    }

    /// Takes one request: validate, then (only if valid) map and start the I/O. Returns the
    /// response if the request is already answered, `None` if its I/O is running.
    fn serve(&mut self, req: &wire::Request) -> Option<wire::Response> {
        self.stats.requests = self.stats.requests.wrapping_add(1);
        let mut rsp = wire::Response::ZERO;
        rsp.id = req.id;
        rsp.operation = parse::response_operation(req);
        let status = match parse::Request::parse(req, &self.limits) {
            Err(invalid) => self.refuse(invalid),
            Ok(valid) => match self.free_tag() {
                None => Status::Error,
                Some(tag) => match self.begin(tag, &valid) {
                    Err(status) => status,
                    Ok(Started::Pending) => return None,
                    Ok(Started::Done(r)) => return self.finish(tag, r),
                },
            },
        };
        rsp.status = status.into();
        Some(rsp)
    }

    /// The answer to a request taken while closing: an error, with nothing mapped.
    fn refuse_closing(&mut self, req: &wire::Request) -> wire::Response {
        self.stats.requests = self.stats.requests.wrapping_add(1);
        self.stats.refused_closing = self.stats.refused_closing.wrapping_add(1);
        let mut rsp = wire::Response::ZERO;
        rsp.id = req.id;
        rsp.operation = parse::response_operation(req);
        rsp.status = Status::Error.into();
        rsp
    }

    fn refuse(&mut self, invalid: Invalid) -> Status {
        self.stats.invalid = self.stats.invalid.wrapping_add(1);
        invalid.status()
    }

    fn free_tag(&mut self) -> Option<usize> {
        let parts = self.tables.parts();
        parts.pending.iter().take(self.depth).position(|p| !p.busy)
    }

    /// Loads and maps the request's segments into pending slot `tag`, marks it busy and
    /// starts the I/O. On `Err` nothing is held and the status is the answer.
    fn begin(&mut self, tag: usize, req: &parse::Request) -> Result<Started, Status> {
        let (kind, sector, transfer) = match req.body {
            Body::Discard {
                sector,
                count,
                secure,
            } => (
                IoKind::Discard {
                    sectors: count,
                    secure,
                },
                sector,
                None,
            ),
            Body::Rw(t) => {
                let kind = match t.direction {
                    Direction::Read => IoKind::Read,
                    Direction::Write => IoKind::Write {
                        preflush: false,
                        fua: false,
                    },
                };
                (kind, t.sector, Some(t))
            }
            Body::Flush(t) if t.segments.count() == 0 => (IoKind::Flush, t.sector, None),
            Body::Flush(t) => (
                IoKind::Write {
                    preflush: true,
                    fua: true,
                },
                t.sector,
                Some(t),
            ),
        };
        match kind {
            IoKind::Flush | IoKind::Write { preflush: true, .. } => {
                self.stats.flushes = self.stats.flushes.wrapping_add(1);
            }
            IoKind::Discard { .. } => self.stats.discards = self.stats.discards.wrapping_add(1),
            IoKind::Read | IoKind::Write { .. } => {}
        }
        let count = match transfer {
            Some(t) => self.load(tag, &t)?,
            None => 0,
        };
        let base = tag * MAX_SEGS;
        let parts = self.tables.parts();
        // Counted as Linux's blkback counts them (its sysfs `statistics`).
        let sectors = parts
            .segs
            .get(base..base + count)
            .map_or(0, |s| s.iter().map(|g| u64::from(g.len)).sum::<u64>() / 512);
        match kind {
            IoKind::Read => {
                self.stats.reads = self.stats.reads.wrapping_add(1);
                self.stats.read_sectors = self.stats.read_sectors.wrapping_add(sectors);
            }
            IoKind::Write { preflush, .. } => {
                if !preflush {
                    self.stats.writes = self.stats.writes.wrapping_add(1);
                }
                self.stats.write_sectors = self.stats.write_sectors.wrapping_add(sectors);
            }
            IoKind::Flush | IoKind::Discard { .. } => {}
        }
        let Some(slot) = parts.pending.get_mut(tag) else {
            return Err(Status::Error);
        };
        *slot = PendingSlot {
            busy: true,
            id: req.id,
            operation: req.operation,
            count: u16::try_from(count).unwrap_or(u16::MAX),
        };
        self.in_flight += 1;
        self.inflight_segs += count;
        self.stats.max_in_flight = self
            .stats
            .max_in_flight
            .max(u64::try_from(self.in_flight).unwrap_or(u64::MAX));
        let io = Io {
            kind,
            sector,
            segs: parts.segs.get(base..base + count).unwrap_or(&[]),
            cache: parts.cache,
        };
        Ok(self.storage.start(tag, &io))
    }

    /// Copies the checked segments into slot `tag`'s segment states (from the indirect pages
    /// if need be) and maps them. Returns how many.
    fn load(&mut self, tag: usize, t: &Transfer) -> Result<usize, Status> {
        let base = tag * MAX_SEGS;
        let n = match t.segments {
            parse::Segments::Direct { .. } => {
                let parts = self.tables.parts();
                let direct = t.segments.direct();
                for (dst, src) in parts.segs.iter_mut().skip(base).zip(direct) {
                    set_seg(dst, src);
                }
                direct.len()
            }
            parse::Segments::Indirect { .. } => self.load_indirect(base, t)?,
        };
        // Persistent grants are mapped writable whatever the operation, as the frontend
        // grants them read-write; otherwise the operation decides.
        let access = if self.persistent {
            Access::ReadWrite
        } else {
            t.direction.access()
        };
        let mut start = 0usize;
        while start < n {
            let end = n.min(start + MAP_BATCH);
            if !self.map_chunk(base + start, base + end, access) {
                self.release(base, n);
                self.stats.map_failures = self.stats.map_failures.wrapping_add(1);
                return Err(Status::Error);
            }
            start = end;
        }
        Ok(n)
    }

    /// Maps the indirect pages, copies the segment descriptors out once (into the segment
    /// states at `base`), lets the pages go, and checks the descriptors. Returns how many
    /// segments.
    ///
    /// With persistent grants the indirect pages go through the cache like data pages (a
    /// frontend draws both from one pool of grants it keeps), so a steady stream of indirect
    /// requests costs no map or unmap; otherwise each page is mapped read-only for this
    /// request only.
    fn load_indirect(&mut self, base: usize, t: &Transfer) -> Result<usize, Status> {
        let parse::Segments::Indirect { count, .. } = t.segments else {
            return Ok(0);
        };
        self.stats.indirect = self.stats.indirect.wrapping_add(1);
        let grefs = t.segments.indirect_grefs();
        let k = grefs.len();
        let mut maps: [Option<PageMap<P::Mapping>>; wire::MAX_INDIRECT_PAGES_PER_REQUEST] =
            core::array::from_fn(|_| None);
        let ok = self.map_indirect(grefs, &mut maps);
        let total = usize::from(count).min(MAX_SEGS);
        let mut verdict: Result<u64, Status> = if ok { Ok(0) } else { Err(Status::Error) };
        let mut at = 0usize;
        let mut bad = None;
        if ok {
            let parts = self.tables.parts();
            let cached: &[CacheSlot<P::Mapping>] = parts.cache;
            let mut segs = parts.segs.iter_mut().skip(base);
            'pages: for pm in maps.iter().take(k).flatten() {
                let m = match pm {
                    PageMap::Own(m) => m,
                    PageMap::Cached(i) => match cached.get(*i).and_then(CacheSlot::mapping) {
                        Some(m) => m,
                        None => {
                            verdict = Err(Status::Error);
                            break 'pages;
                        }
                    },
                };
                let here = (total - at).min(SEGMENTS_PER_INDIRECT_FRAME);
                let mut off = 0usize;
                // 64 descriptors (512 bytes) at a time through a small buffer.
                while off < here * wire::Segment::SIZE {
                    let mut buf = [0u8; 512];
                    let len = (here * wire::Segment::SIZE - off).min(buf.len());
                    let Some(chunk) = buf.get_mut(..len) else {
                        break 'pages;
                    };
                    // One copy of the descriptors; only the copy is checked and used.
                    if !m.read_bytes(off, chunk) {
                        verdict = Err(Status::Error);
                        break 'pages;
                    }
                    for b in chunk.chunks_exact(wire::Segment::SIZE) {
                        let mut img = [0u8; wire::Segment::SIZE];
                        img.copy_from_slice(b);
                        let raw = wire::Segment::from_bytes(&img);
                        let index = u16::try_from(at).unwrap_or(u16::MAX);
                        match parse::Segment::check(&raw, index) {
                            Ok(seg) => {
                                if let (Some(dst), Ok(sum)) = (segs.next(), verdict.as_mut()) {
                                    set_seg(dst, &seg);
                                    *sum += seg.sectors();
                                }
                            }
                            Err(invalid) => {
                                bad = Some(invalid);
                                break 'pages;
                            }
                        }
                        at += 1;
                    }
                    off += len;
                }
            }
        }
        self.release_indirect(&mut maps);
        if let Some(invalid) = bad {
            return Err(self.refuse(invalid));
        }
        let sectors = match verdict {
            Ok(s) => s,
            Err(status) => {
                self.stats.map_failures = self.stats.map_failures.wrapping_add(1);
                return Err(status);
            }
        };
        if at != total {
            self.stats.map_failures = self.stats.map_failures.wrapping_add(1);
            return Err(Status::Error);
        }
        if let Err(invalid) = parse::check_range(t.sector.0, sectors, &self.limits) {
            return Err(self.refuse(invalid));
        }
        Ok(at)
    }

    /// Maps an indirect request's pages into `out[..grefs.len()]`: through the cache (pinned,
    /// read-write as the frontend grants its persistent pool) when persistent, else read-only
    /// for this request. `false` if any failed (what mapped is in `out`, to be released).
    fn map_indirect<const N: usize>(
        &mut self,
        grefs: &[GrantRef],
        out: &mut [Option<PageMap<P::Mapping>>; N],
    ) -> bool {
        let access = if self.persistent {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let parts = self.tables.parts();
        let mut cache = Cache::new(parts.cache, &mut self.clock);
        let mut ctx = MapCtx {
            env: &self.env,
            front: self.front,
            persistent: self.persistent,
            stats: &mut self.stats,
        };
        ctx.map(&mut cache, grefs, access, out).is_some()
    }

    /// Lets go of an indirect request's pages: unpins cached ones, unmaps the others.
    fn release_indirect<const N: usize>(&mut self, maps: &mut [Option<PageMap<P::Mapping>>; N]) {
        let parts = self.tables.parts();
        let mut cache = Cache::new(parts.cache, &mut self.clock);
        let mut own: [Option<P::Mapping>; N] = core::array::from_fn(|_| None);
        for (pm, dst) in maps.iter_mut().zip(own.iter_mut()) {
            match pm.take() {
                Some(PageMap::Cached(slot)) => cache.unpin(slot),
                Some(PageMap::Own(m)) => *dst = Some(m),
                None => {}
            }
        }
        unmap_all(&self.env, &mut own, &mut self.stats);
    }

    /// Maps segment states `lo..hi` (at most [`MAP_BATCH`]) in one batch, through the cache
    /// when persistent. `false` if any failed (whatever mapped is recorded, to be released).
    fn map_chunk(&mut self, lo: usize, hi: usize, access: Access) -> bool {
        let parts = self.tables.parts();
        let mut cache = Cache::new(parts.cache, &mut self.clock);
        let mut grefs = [GrantRef::new(0); MAP_BATCH];
        let mut n = 0usize;
        for (dst, s) in grefs.iter_mut().zip(parts.segs.iter().take(hi).skip(lo)) {
            *dst = s.gref;
            n += 1;
        }
        let mut out: [Option<PageMap<P::Mapping>>; MAP_BATCH] = core::array::from_fn(|_| None);
        let mut ctx = MapCtx {
            env: &self.env,
            front: self.front,
            persistent: self.persistent,
            stats: &mut self.stats,
        };
        let hits = ctx.map(&mut cache, grefs.get(..n).unwrap_or(&[]), access, &mut out);
        if let Some(hits) = hits {
            self.stats.persistent_hits = self.stats.persistent_hits.wrapping_add(hits);
        }
        for (s, pm) in parts.segs.iter_mut().skip(lo).zip(out.iter_mut()) {
            match pm.take() {
                Some(PageMap::Cached(slot)) => s.cached = Some(slot),
                Some(PageMap::Own(m)) => s.map = Some(m),
                None => {}
            }
        }
        hits.is_some()
    }

    /// Lets go of segment states `base..base + n`: unpins cached mappings, unmaps the others.
    fn release(&mut self, base: usize, n: usize) {
        let parts = self.tables.parts();
        let mut cache = Cache::new(parts.cache, &mut self.clock);
        let mut batch: [Option<P::Mapping>; MAP_BATCH] = core::array::from_fn(|_| None);
        let mut b = 0usize;
        for s in parts.segs.iter_mut().skip(base).take(n) {
            if let Some(slot) = s.cached.take() {
                cache.unpin(slot);
            }
            if let Some(m) = s.map.take() {
                if let Some(dst) = batch.get_mut(b) {
                    *dst = Some(m);
                    b += 1;
                }
                if b == MAP_BATCH {
                    unmap_all(&self.env, &mut batch, &mut self.stats);
                    b = 0;
                }
            }
        }
        unmap_all(&self.env, &mut batch, &mut self.stats);
    }

    /// Ends request `tag`: releases its mappings and frees the slot. Returns its response,
    /// or `None` if the tag is not in flight.
    fn finish(&mut self, tag: usize, result: Result<(), IoError>) -> Option<wire::Response> {
        let parts = self.tables.parts();
        let slot = parts.pending.get_mut(tag).filter(|p| p.busy)?;
        let done = core::mem::replace(slot, PendingSlot::FREE);
        let count = usize::from(done.count);
        self.release(tag * MAX_SEGS, count);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.inflight_segs = self.inflight_segs.saturating_sub(count);
        let status = match result {
            Ok(()) => {
                self.stats.segments = self
                    .stats
                    .segments
                    .wrapping_add(u64::try_from(count).unwrap_or(0));
                Status::Okay
            }
            Err(IoError) => {
                self.stats.io_errors = self.stats.io_errors.wrapping_add(1);
                Status::Error
            }
        };
        let mut rsp = wire::Response::ZERO;
        rsp.id = done.id;
        rsp.operation = done.operation;
        rsp.status = status.into();
        Some(rsp)
    }

    /// One purge period: unmaps the cached mappings no request uses that were not used for
    /// `idle` periods. Returns how many.
    fn purge_unused(&mut self, idle: u32) -> usize {
        let parts = self.tables.parts();
        let mut cache = Cache::new(parts.cache, &mut self.clock);
        cache.tick();
        let (mut n, mut at) = (0, 0);
        while let Some(m) = cache.purge_unused_next(idle, &mut at) {
            let mut one = [Some(m)];
            let mut res = [UnmapResult::Skipped];
            let _ = self.env.unmap_batch(&mut one, &mut res);
            self.stats.unmaps = self.stats.unmaps.wrapping_add(1);
            n += 1;
        }
        n
    }

    /// Unmaps every cached mapping no request in flight uses.
    fn drain_cache(&mut self) {
        let parts = self.tables.parts();
        let mut cache = Cache::new(parts.cache, &mut self.clock);
        while let Some(m) = cache.drain_unpinned_one() {
            let mut one = [Some(m)];
            let mut res = [UnmapResult::Skipped];
            let _ = self.env.unmap_batch(&mut one, &mut res);
            self.stats.unmaps = self.stats.unmaps.wrapping_add(1);
        }
    }
}

/// A page mapped for a request: a pinned slot of the persistent-grant cache, or a mapping of
/// the request's own.
enum PageMap<M> {
    Cached(usize),
    Own(M),
}

/// What mapping through the cache needs of the engine, borrowed apart from its tables.
struct MapCtx<'a, P: GrantOps> {
    env: &'a P,
    front: DomId,
    persistent: bool,
    stats: &'a mut BackStats,
}

impl<P: GrantOps> MapCtx<'_, P> {
    /// Maps `grefs` (at most `N`) into `out[..grefs.len()]` in one batch: when persistent,
    /// hits are pinned in the cache and fresh mappings are added to it (evicting, and
    /// unmapping, idle ones), falling back to a mapping of the caller's own when every slot is
    /// pinned; otherwise every page is the caller's own. Returns the cache hits, or `None` if
    /// any map failed (what did map is in `out` all the same, for the caller to release).
    fn map<const N: usize>(
        &mut self,
        cache: &mut Cache<'_, P::Mapping>,
        grefs: &[GrantRef],
        access: Access,
        out: &mut [Option<PageMap<P::Mapping>>; N],
    ) -> Option<u64> {
        let mut reqs = [MapRequest {
            domid: self.front,
            gref: GrantRef::new(0),
            access,
        }; N];
        let mut which = [0usize; N];
        let (mut k, mut hits) = (0usize, 0u64);
        for (i, (g, dst)) in grefs.iter().zip(out.iter_mut()).enumerate() {
            if self.persistent {
                if let Some(slot) = cache.lookup(*g) {
                    *dst = Some(PageMap::Cached(slot));
                    hits += 1;
                    continue;
                }
            }
            if let (Some(r), Some(w)) = (reqs.get_mut(k), which.get_mut(k)) {
                r.gref = *g;
                *w = i;
                k += 1;
            }
        }
        let mut fresh: [Option<P::Mapping>; N] = core::array::from_fn(|_| None);
        let ok = map_into(
            self.env,
            reqs.get(..k).unwrap_or(&[]),
            &mut fresh,
            self.stats,
        );
        let mut evicted: [Option<P::Mapping>; N] = core::array::from_fn(|_| None);
        for (j, m) in fresh.iter_mut().enumerate().take(k) {
            let (Some(m), Some(dst), Some(r)) = (
                m.take(),
                which.get(j).and_then(|&i| out.get_mut(i)),
                reqs.get(j),
            ) else {
                continue;
            };
            *dst = Some(if self.persistent && ok {
                match cache.insert(r.gref, m) {
                    Ok((slot, old)) => {
                        if let Some(e) = evicted.get_mut(j) {
                            *e = old;
                        }
                        PageMap::Cached(slot)
                    }
                    Err(m) => PageMap::Own(m),
                }
            } else {
                PageMap::Own(m)
            });
        }
        unmap_all(self.env, &mut evicted, self.stats);
        ok.then_some(hits)
    }
}

/// Fills a segment state from a checked segment (nothing mapped yet).
fn set_seg<M>(dst: &mut SegState<M>, src: &parse::Segment) {
    dst.gref = src.gref();
    dst.cached = None;
    dst.map = None;
    dst.offset = u16::try_from(src.offset()).unwrap_or(0);
    dst.len = u16::try_from(src.len()).unwrap_or(0);
}

/// Maps `reqs` in one batch into `out[..reqs.len()]`; `false` if the batch or any slot failed
/// (the slots that did map are in `out` all the same, for the caller to unmap). A call that
/// failed as a whole ([`BatchError::CallFailed`](xen_grant::BatchError::CallFailed)) may
/// still report mapped slots: they go to `out` too, to be unmapped, and the request fails.
fn map_into<P: GrantOps, const N: usize>(
    env: &P,
    reqs: &[MapRequest],
    out: &mut [Option<P::Mapping>; N],
    stats: &mut BackStats,
) -> bool {
    if reqs.is_empty() {
        return true;
    }
    let mut results: [MapResult<P::Mapping>; N] = core::array::from_fn(|_| MapResult::Pending);
    let Some(results) = results.get_mut(..reqs.len()) else {
        return false;
    };
    let mut ok = env.map_batch(reqs, results).is_ok();
    for (slot, result) in out.iter_mut().zip(results.iter_mut()) {
        match core::mem::replace(result, MapResult::Pending) {
            MapResult::Mapped(m) => {
                stats.maps = stats.maps.wrapping_add(1);
                *slot = Some(m);
            }
            MapResult::Pending | MapResult::Failed(_) => ok = false,
        }
    }
    ok
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
    stats.unmaps = stats
        .unmaps
        .wrapping_add(u64::try_from(live).unwrap_or(u64::MAX));
}
