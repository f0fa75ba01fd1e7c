//! The blkif backend engine: takes requests off a mapped ring, validates them, maps the data
//! grants in batches, does the I/O on a [`Storage`], and answers each request.

use crate::abi::{x86_32, Abi, NativeResponse, NativeSlot, X86_32Response, X86_32Slot};
use crate::cache::PersistentCache;
use crate::parse::{self, check_segments, Body, Direction, Invalid, Limits, Sector, Transfer};
use crate::storage::{IoError, Storage};
use crate::Error;
use xen_echo::env::PageBytes;
use xen_echo::Progress;
use xen_evtchn::{EvtchnOps, Nanos, Outcome, Throttle, ThrottleConfig};
use xen_grant::{Access, GrantOps, MapRequest, MapResult, UnmapResult};
use xen_ring::{BackRing, Notify, RingError, SharedMemory, Slot};
use xen_sys::wire::blkif::{self as wire, Status, SEGMENTS_PER_INDIRECT_FRAME};
use xen_sys::{DomId, GrantRef, Port};

/// Grants mapped per hypercall batch (and the most mappings a request holds at once).
pub const MAP_BATCH: usize = 16;
/// Bytes in a page.
const PAGE: usize = 4096;
/// The most segments one request can carry here.
const MAX_SEGS: usize = parse::MAX_INDIRECT_SEGMENTS as usize;
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
    /// Requests served per [`BlkBack::handle_event`] call at most.
    pub budget: u32,
    /// The storm policy for the port.
    pub throttle: ThrottleConfig,
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
            throttle: ThrottleConfig::DEFAULT,
        }
    }
}

/// Counters of a backend (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackStats {
    /// Requests answered.
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
}

enum Ring<M> {
    Native(BackRing<M, NativeSlot, NativeResponse>),
    X86_32(BackRing<M, X86_32Slot, X86_32Response>),
}

/// Everything but the ring, so a request can be served while the ring batch is borrowed.
struct Server<P: GrantOps, S, const C: usize> {
    env: P,
    storage: S,
    front: DomId,
    limits: Limits,
    persistent: bool,
    cache: PersistentCache<P::Mapping, C>,
    stats: BackStats,
    /// One page of bounce buffer between a mapped page and the storage.
    buf: [u8; PAGE],
    /// The segment descriptors copied out of an indirect request's pages (kept here, not on
    /// the stack: a kernel stack is small).
    raw: [wire::Segment; MAX_SEGS],
    /// The checked segments of the request being served.
    segs: [parse::Segment; MAX_SEGS],
}

/// The backend of one blkif ring.
///
/// The glue maps the ring the frontend granted (any order up to 4), binds its event channel,
/// and hands both over with [`new`](Self::new); it calls [`handle_event`](Self::handle_event)
/// when the port fires (again at once while [`Progress::more`], and re-enables the port no
/// sooner than [`Progress::eoi`]). A ring the frontend breaks disconnects the engine: the ring
/// is unmapped, persistent grants are unmapped, the port is closed, and every later event is
/// answered with [`Error::Disconnected`].
///
/// `C` is the capacity of the persistent-grant cache (Linux keeps up to 1056 per queue).
pub struct BlkBack<P: GrantOps, S, M, const C: usize> {
    ring: Option<Ring<M>>,
    port: Option<Port>,
    budget: u32,
    throttle: Throttle,
    server: Server<P, S, C>,
}

impl<P, S, M, const C: usize> BlkBack<P, S, M, C>
where
    P: GrantOps + EvtchnOps,
    P::Mapping: PageBytes,
    S: Storage,
    M: SharedMemory,
{
    /// A backend serving `storage` to `front` over the mapped ring `ring` (in the request
    /// layout `abi`) and the bound port `port`.
    pub fn new(
        env: P,
        storage: S,
        ring: M,
        abi: Abi,
        front: DomId,
        port: Port,
        config: BackConfig,
    ) -> Result<Self, RingError> {
        let ring = match abi {
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
        Ok(BlkBack {
            ring: Some(ring),
            port: Some(port),
            budget: config.budget.max(1),
            throttle: Throttle::new(config.throttle),
            server: Server {
                env,
                storage,
                front,
                limits,
                persistent: config.persistent,
                cache: PersistentCache::new(),
                stats: BackStats::default(),
                buf: [0; PAGE],
                raw: [wire::Segment::ZERO; MAX_SEGS],
                segs: [parse::Segment::FILLER; MAX_SEGS],
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

    /// What requests are checked against.
    pub fn limits(&self) -> &Limits {
        &self.server.limits
    }

    /// Counters.
    pub fn stats(&self) -> BackStats {
        self.server.stats
    }

    /// Persistent grants currently mapped.
    pub fn persistent_grants(&self) -> usize {
        self.server.cache.len()
    }

    /// Whether the ring is still served.
    pub fn is_connected(&self) -> bool {
        self.ring.is_some()
    }

    /// The throttle's count of spurious events in a row.
    pub fn consecutive_spurious(&self) -> u32 {
        self.throttle.consecutive_spurious()
    }

    /// Handles the port's event: serves at most the budget of requests, answers each, and says
    /// whether more are waiting and when to re-enable the port (late EOI: events that bring no
    /// work are throttled).
    ///
    /// A broken ring returns [`Error::Ring`] once, after disconnecting.
    pub fn handle_event(&mut self, now: Nanos) -> Result<Progress, Error> {
        let Some(ring) = self.ring.as_mut() else {
            self.server.stats.spurious_events = self.server.stats.spurious_events.wrapping_add(1);
            return Err(Error::Disconnected);
        };
        let server = &mut self.server;
        let result = match ring {
            Ring::Native(r) => run(
                r,
                self.budget,
                wire::Request::from_bytes,
                |rsp| rsp.to_bytes(),
                |req| server.serve(req),
            ),
            Ring::X86_32(r) => run(r, self.budget, x86_32::to_native, x86_32::response, |req| {
                server.serve(req)
            }),
        };
        let (done, notify, more) = match result {
            Ok(v) => v,
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
        let outcome = if done > 0 {
            Outcome::Work
        } else {
            self.server.stats.spurious_events = self.server.stats.spurious_events.wrapping_add(1);
            Outcome::Spurious
        };
        Ok(Progress {
            done,
            more,
            eoi: self.throttle.on_event(now, outcome),
        })
    }

    /// Stops serving: unmaps every persistent grant, unmaps the ring and closes the port.
    /// Idempotent. Requests are served synchronously, so none is in flight here.
    pub fn disconnect(&mut self) {
        let server = &mut self.server;
        while let Some(m) = server.cache.drain_one() {
            let mut one = [Some(m)];
            let mut res = [UnmapResult::Skipped];
            let _ = server.env.unmap_batch(&mut one, &mut res);
            server.stats.unmaps = server.stats.unmaps.wrapping_add(1);
        }
        drop(self.ring.take());
        if let Some(port) = self.port.take() {
            let _ = server.env.close(port);
        }
        self.throttle.reset();
    }
}

/// One budgeted batch on either layout: returns (requests served, notify, more waiting).
fn run<M, Req, Rsp>(
    ring: &mut BackRing<M, Req, Rsp>,
    budget: u32,
    decode: impl Fn(&Req) -> wire::Request,
    encode: impl Fn(&wire::Response) -> Rsp,
    mut serve: impl FnMut(&wire::Request) -> wire::Response,
) -> Result<(u32, Notify, bool), RingError>
where
    M: SharedMemory,
    Req: Slot,
    Rsp: Slot,
{
    let mut done = 0u32;
    let mut batch = ring.requests(budget)?;
    while let Some(slot) = batch.next() {
        // The slot was copied out once; only the copy is decoded and validated.
        let rsp = serve(&decode(&slot));
        batch.queue_response(&encode(&rsp))?;
        done += 1;
    }
    let notify = ring.push_responses()?;
    let more = if done >= budget {
        true
    } else {
        ring.final_check_for_requests()?
    };
    Ok((done, notify, more))
}

/// Why serving a valid request failed.
enum Fail {
    Map,
    Io,
}

impl<P, S, const C: usize> Server<P, S, C>
where
    P: GrantOps,
    P::Mapping: PageBytes,
    S: Storage,
{
    /// Answers one request: validate, then (only if valid) map, transfer, unmap.
    fn serve(&mut self, req: &wire::Request) -> wire::Response {
        self.stats.requests = self.stats.requests.wrapping_add(1);
        let mut rsp = wire::Response::ZERO;
        rsp.id = req.id;
        rsp.operation = parse::response_operation(req);
        let status = match parse::Request::parse(req, &self.limits) {
            Err(invalid) => self.refuse(invalid),
            Ok(valid) => match self.execute(&valid.body) {
                Ok(()) => Status::Okay,
                Err(Err(invalid)) => self.refuse(invalid),
                Err(Ok(Fail::Map)) => {
                    self.stats.map_failures = self.stats.map_failures.wrapping_add(1);
                    Status::Error
                }
                Err(Ok(Fail::Io)) => {
                    self.stats.io_errors = self.stats.io_errors.wrapping_add(1);
                    Status::Error
                }
            },
        };
        rsp.status = status.into();
        rsp
    }

    fn refuse(&mut self, invalid: Invalid) -> Status {
        self.stats.invalid = self.stats.invalid.wrapping_add(1);
        invalid.status()
    }

    /// Does what a valid request asks. `Err(Err(_))`: the indirect segments failed validation
    /// (nothing was done); `Err(Ok(_))`: a map or the storage failed.
    fn execute(&mut self, body: &Body) -> Result<(), Result<Fail, Invalid>> {
        let io = |r: Result<(), IoError>| r.map_err(|IoError| Ok(Fail::Io));
        match *body {
            Body::Discard {
                sector,
                count,
                secure,
            } => io(self.storage.discard(sector, count, secure)),
            Body::Rw(t) => self.transfer(&t),
            Body::Flush(t) => {
                io(self.storage.flush())?;
                if t.segments.count() > 0 {
                    self.transfer(&t)?;
                }
                io(self.storage.flush())
            }
        }
    }

    /// Loads and checks the segments, then moves the data chunk by chunk.
    fn transfer(&mut self, t: &Transfer) -> Result<(), Result<Fail, Invalid>> {
        let n = match t.segments {
            parse::Segments::Direct { .. } => {
                let direct = t.segments.direct();
                for (dst, src) in self.segs.iter_mut().zip(direct) {
                    *dst = *src;
                }
                direct.len()
            }
            parse::Segments::Indirect { .. } => self.load_indirect(t)?,
        };
        let mut sector = t.sector;
        let mut start = 0usize;
        while start < n {
            let end = n.min(start + MAP_BATCH);
            let Some(&first) = self.segs.first() else {
                return Ok(());
            };
            let mut chunk = [first; MAP_BATCH];
            let k = end - start;
            for (dst, src) in chunk
                .iter_mut()
                .zip(self.segs.get(start..end).unwrap_or(&[]))
            {
                *dst = *src;
            }
            let chunk = chunk.get(..k).unwrap_or(&[]);
            sector = self.chunk(chunk, sector, t.direction).map_err(Ok)?;
            start = end;
        }
        Ok(())
    }

    /// Maps the indirect pages read-only, copies the segment descriptors out once, unmaps, and
    /// checks them. Returns how many segments are in `self.segs`.
    fn load_indirect(&mut self, t: &Transfer) -> Result<usize, Result<Fail, Invalid>> {
        let parse::Segments::Indirect { count, .. } = t.segments else {
            return Ok(0);
        };
        self.stats.indirect = self.stats.indirect.wrapping_add(1);
        let grefs = t.segments.indirect_grefs();
        let mut reqs = [MapRequest {
            domid: self.front,
            gref: GrantRef::new(0),
            access: Access::ReadOnly,
        }; wire::MAX_INDIRECT_PAGES_PER_REQUEST];
        for (r, g) in reqs.iter_mut().zip(grefs) {
            r.gref = *g;
        }
        let k = grefs.len();
        let mut maps: [Option<P::Mapping>; wire::MAX_INDIRECT_PAGES_PER_REQUEST] =
            core::array::from_fn(|_| None);
        let ok = map_into(
            &self.env,
            reqs.get(..k).unwrap_or(&[]),
            &mut maps,
            &mut self.stats,
        );
        let mut copied = ok;
        if ok {
            let mut left = usize::from(count).min(MAX_SEGS);
            let mut at = 0usize;
            for m in maps.iter().take(k).flatten() {
                let here = left.min(SEGMENTS_PER_INDIRECT_FRAME);
                let bytes = here * wire::Segment::SIZE;
                let Some(buf) = self.buf.get_mut(..bytes) else {
                    copied = false;
                    break;
                };
                // One copy of the descriptors; only the copy is checked and used.
                if !m.read_bytes(0, buf) {
                    copied = false;
                    break;
                }
                for (seg, b) in self
                    .raw
                    .iter_mut()
                    .skip(at)
                    .zip(buf.chunks_exact(wire::Segment::SIZE))
                {
                    let mut img = [0u8; wire::Segment::SIZE];
                    img.copy_from_slice(b);
                    *seg = wire::Segment::from_bytes(&img);
                }
                at += here;
                left -= here;
            }
        }
        unmap_all(&self.env, &mut maps, &mut self.stats);
        if !copied {
            return Err(Ok(Fail::Map));
        }
        let n = usize::from(count).min(MAX_SEGS);
        let raw = self.raw.get(..n).unwrap_or(&[]);
        check_segments(t, raw, &mut self.segs, &self.limits).map_err(Err)
    }

    /// Maps one chunk of segments (persistent: through the cache), moves the data, unmaps
    /// what is not kept. Returns the sector after the chunk.
    fn chunk(
        &mut self,
        chunk: &[parse::Segment],
        sector: Sector,
        dir: Direction,
    ) -> Result<Sector, Fail> {
        // Persistent grants are mapped writable whatever the operation, as the frontend
        // grants them read-write; otherwise the operation decides.
        let access = if self.persistent {
            Access::ReadWrite
        } else {
            dir.access()
        };
        let mut cached: [Option<usize>; MAP_BATCH] = [None; MAP_BATCH];
        let mut reqs = [MapRequest {
            domid: self.front,
            gref: GrantRef::new(0),
            access,
        }; MAP_BATCH];
        let mut which = [0usize; MAP_BATCH];
        let mut k = 0usize;
        for (i, seg) in chunk.iter().enumerate() {
            let hit = if self.persistent {
                self.cache.lookup(seg.gref())
            } else {
                None
            };
            if let Some(slot) = hit {
                self.stats.persistent_hits = self.stats.persistent_hits.wrapping_add(1);
                if let Some(c) = cached.get_mut(i) {
                    *c = Some(slot);
                }
            } else if let (Some(r), Some(w)) = (reqs.get_mut(k), which.get_mut(k)) {
                r.gref = seg.gref();
                *w = i;
                k += 1;
            }
        }
        let mut fresh: [Option<P::Mapping>; MAP_BATCH] = core::array::from_fn(|_| None);
        let ok = map_into(
            &self.env,
            reqs.get(..k).unwrap_or(&[]),
            &mut fresh,
            &mut self.stats,
        );
        // Mappings indexed by segment: fresh ones move into the cache if it takes them.
        let mut transient: [Option<P::Mapping>; MAP_BATCH] = core::array::from_fn(|_| None);
        let mut evicted: [Option<P::Mapping>; MAP_BATCH] = core::array::from_fn(|_| None);
        for (j, m) in fresh.iter_mut().enumerate().take(k) {
            let (Some(m), Some(&i)) = (m.take(), which.get(j)) else {
                continue;
            };
            let gref = reqs.get(j).map_or(GrantRef::new(0), |r| r.gref);
            let placed = if self.persistent && ok {
                match self.cache.insert(gref, m) {
                    Ok((slot, old)) => {
                        if let Some(c) = cached.get_mut(i) {
                            *c = Some(slot);
                        }
                        if let Some(e) = evicted.get_mut(j) {
                            *e = old;
                        }
                        None
                    }
                    Err(m) => Some(m),
                }
            } else {
                Some(m)
            };
            if let Some(t) = transient.get_mut(i) {
                *t = placed;
            }
        }
        let result = if ok {
            self.move_data(chunk, &cached, &transient, sector, dir)
        } else {
            Err(Fail::Map)
        };
        self.cache.unpin_all();
        unmap_all(&self.env, &mut transient, &mut self.stats);
        unmap_all(&self.env, &mut evicted, &mut self.stats);
        result
    }

    fn move_data(
        &mut self,
        chunk: &[parse::Segment],
        cached: &[Option<usize>; MAP_BATCH],
        transient: &[Option<P::Mapping>; MAP_BATCH],
        mut sector: Sector,
        dir: Direction,
    ) -> Result<Sector, Fail> {
        for (i, seg) in chunk.iter().enumerate() {
            let mapping = match (cached.get(i).copied().flatten(), transient.get(i)) {
                (Some(slot), _) => self.cache.get(slot),
                (None, Some(Some(m))) => Some(m),
                _ => None,
            };
            let Some(m) = mapping else {
                return Err(Fail::Map);
            };
            let buf = self.buf.get_mut(..seg.len()).ok_or(Fail::Io)?;
            match dir {
                Direction::Read => {
                    self.storage.read(sector, buf).map_err(|_| Fail::Io)?;
                    if !m.write_bytes(seg.offset(), buf) {
                        return Err(Fail::Map);
                    }
                }
                Direction::Write => {
                    // One copy out of the guest page; the guest may change it meanwhile, but
                    // only this copy reaches the disk.
                    if !m.read_bytes(seg.offset(), buf) {
                        return Err(Fail::Map);
                    }
                    self.storage.write(sector, buf).map_err(|_| Fail::Io)?;
                }
            }
            self.stats.segments = self.stats.segments.wrapping_add(1);
            sector = sector.checked_add(seg.sectors()).ok_or(Fail::Io)?;
        }
        Ok(sector)
    }
}

/// Maps `reqs` in one batch into `out[..reqs.len()]`; `false` if the batch or any slot failed
/// (the slots that did map are in `out` all the same, for the caller to unmap).
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
    if env.map_batch(reqs, results).is_err() {
        return false;
    }
    let mut ok = true;
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
