//! The vscsiif backend engine: takes requests off a mapped ring, validates each
//! ([`Request::parse`]), maps the data grants in batches and hands the command to a
//! [`ScsiTarget`] straight on the mapped guest pages; answers each command when the target
//! reports it done, with status, sense data and residual.
//!
//! Commands run asynchronously: each takes a pending slot (a tag, at most the ring's 16) and
//! keeps its mappings until [`ScsiBack::complete`]. With every slot busy the engine leaves
//! requests on the ring (it is "stalled") and takes them once a command completes. Task
//! management (abort, LUN reset) is answered at once with what the target did.

use crate::lun::LunTable;
use crate::parse::{self, Body, Direction, Invalid, Limits, Request, Segments};
use crate::response::{self, Outcome};
use crate::Error;
use xen_core::platform::{PageBytes, Progress};
use xen_evtchn::EvtchnOps;
use xen_grant::{Access, GrantOps, MapRequest, MapResult, UnmapResult};
use xen_ring::{BackRing, RingError, SharedMemory};
use xen_sys::wire::vscsiif::{self as wire, SG_TABLESIZE};
use xen_sys::{DomId, GrantRef, Port};

/// A ring slot's image.
pub type Slot = [u8; 252];

/// Grants mapped per batch.
pub const MAP_BATCH: usize = 16;
/// Most data segments one command may have here (what a backend can offer as
/// `feature-sg-grant`; the segment storage holds this many per pending slot).
pub const MAX_SEGS: usize = 256;
/// Commands in flight at most (the ring's slots).
pub const MAX_DEPTH: usize = 16;
/// LUNs per virtual host.
pub const MAX_LUNS: usize = 64;

/// How a backend is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackConfig {
    /// `feature-sg-grant` offered (0: direct segments only); capped at [`MAX_SEGS`].
    pub sg_grant: u32,
    /// Requests taken per event at most.
    pub budget: u32,
    /// Commands in flight at most (capped at [`MAX_DEPTH`] and by the segment storage).
    pub depth: usize,
    /// Largest `rqid` accepted.
    pub max_rqid: u16,
}

impl Default for BackConfig {
    fn default() -> Self {
        BackConfig {
            sg_grant: 128,
            budget: 32,
            depth: MAX_DEPTH,
            max_rqid: u16::MAX,
        }
    }
}

impl BackConfig {
    /// The limits requests are checked against.
    pub fn limits(&self) -> Limits {
        let sg = self.sg_grant.min(MAX_SEGS as u32);
        Limits {
            max_segments: if sg == 0 {
                SG_TABLESIZE as u32
            } else {
                sg.max(SG_TABLESIZE as u32)
            },
            indirect: sg > 0,
            max_rqid: self.max_rqid,
        }
    }
}

/// Counters (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackStats {
    /// Requests taken off the ring.
    pub requests: u64,
    /// Requests refused by validation.
    pub invalid: u64,
    /// Commands failed because a grant did not map.
    pub map_failures: u64,
    /// Grants mapped (data and descriptor pages).
    pub maps: u64,
    /// Grants unmapped.
    pub unmaps: u64,
    /// Unmaps that failed (the mapping is leaked, never reused).
    pub unmap_failures: u64,
    /// Commands using descriptor pages.
    pub indirect: u64,
    /// Aborts and resets served.
    pub tasks: u64,
    /// Events that found nothing to do.
    pub spurious_events: u64,
    /// Times every pending slot was busy with requests waiting.
    pub stalls: u64,
    /// Requests answered `NO_CONNECT` unserved while closing ([`ScsiBack::close`]).
    pub turned_away: u64,
}

/// One data segment of a command: the guest page mapped, and the range in it.
#[derive(Debug)]
pub struct DataSeg<M> {
    /// The page's grant.
    pub gref: GrantRef,
    /// Offset in the page.
    pub offset: u16,
    /// Bytes.
    pub len: u16,
    /// The mapping; always `Some` in a [`Command`] handed to the target.
    pub mapping: Option<M>,
}

impl<M> DataSeg<M> {
    /// An unused entry.
    pub const EMPTY: Self = DataSeg {
        gref: GrantRef::new(0),
        offset: 0,
        len: 0,
        mapping: None,
    };
}

/// A validated command handed to the target.
pub struct Command<'a, M> {
    /// The LUN (`N` of `vscsi-devs/dev-N`; its `p-dev` is in the table).
    pub lun: u32,
    /// The CDB (1 to 16 bytes).
    pub cdb: &'a [u8],
    /// Data direction.
    pub direction: Direction,
    /// Data segments, mapped writable when the device writes into them.
    pub data: &'a [DataSeg<M>],
    /// Bytes the segments hold together.
    pub length: u32,
}

/// What [`ScsiTarget::submit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// Running: [`ScsiBack::complete`] reports it later.
    Pending,
    /// Already done.
    Done(Outcome),
}

/// The SCSI target core a backend serves (in the kernel, the target core's fabric module;
/// in tests, an in-memory device).
pub trait ScsiTarget<M> {
    /// Starts `cmd`; `tag` names it in [`ScsiBack::complete`] and [`ScsiTarget::abort`].
    fn submit(&mut self, tag: usize, cmd: &Command<'_, M>) -> Started;
    /// Aborts the command `tag` on `lun` (it still completes, with the host byte ABORT);
    /// `true` if the task-management function completed.
    fn abort(&mut self, lun: u32, tag: usize) -> bool;
    /// Resets `lun`; `true` if the task-management function completed.
    fn reset(&mut self, lun: u32) -> bool;
}

/// A backend's ring partner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The frontend's domain.
    pub front: DomId,
    /// Our end of the event channel.
    pub port: Port,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    busy: bool,
    rqid: u16,
    lun: u32,
    count: u16,
    transfer: u32,
}

const FREE: Pending = Pending {
    busy: false,
    rqid: 0,
    lun: 0,
    count: 0,
    transfer: 0,
};

/// Everything but the ring, so a request can be served while the ring batch is borrowed.
struct Server<P: GrantOps, S, T> {
    env: P,
    target: S,
    segs: T,
    luns: LunTable<MAX_LUNS>,
    pending: [Pending; MAX_DEPTH],
    depth: usize,
    in_flight: usize,
    limits: Limits,
    front: DomId,
    stats: BackStats,
}

/// The backend of one vscsiif ring (one virtual host).
///
/// The glue maps the ring, binds the port, fills the LUN table ([`luns_mut`](Self::luns_mut))
/// as the toolstack adds LUNs, and calls [`handle_event`](Self::handle_event) when the port
/// fires (again while [`Progress::more`]; otherwise the late EOI with
/// [`Progress::spurious`]). The target reports commands done with
/// [`complete`](Self::complete); the glue then calls [`resume`](Self::resume). A broken ring
/// disconnects for good: the ring is unmapped, the port closed, later events refused; commands
/// in flight keep their mappings until they complete.
///
/// `T` is the segment storage: [`MAX_SEGS`] [`DataSeg::EMPTY`] entries per command in flight
/// (on the heap in the kernel).
pub struct ScsiBack<P: GrantOps, S, M, T> {
    ring: Option<BackRing<M, Slot, Slot>>,
    port: Option<Port>,
    budget: u32,
    stalled: bool,
    spurious_run: u32,
    /// [`close`](ScsiBack::close) was called: requests are answered without being served.
    closing: bool,
    server: Server<P, S, T>,
}

impl<P, S, M, T> ScsiBack<P, S, M, T>
where
    P: GrantOps + EvtchnOps,
    P::Mapping: PageBytes,
    S: ScsiTarget<P::Mapping>,
    M: SharedMemory,
    T: AsMut<[DataSeg<P::Mapping>]>,
{
    /// A backend over the mapped ring `ring`.
    pub fn new(
        env: P,
        target: S,
        ring: M,
        conn: Connection,
        config: BackConfig,
        mut segs: T,
    ) -> Result<Self, RingError> {
        let ring = BackRing::attach(ring)?;
        let depth = config
            .depth
            .min(MAX_DEPTH)
            .min(segs.as_mut().len() / MAX_SEGS)
            .max(1);
        Ok(ScsiBack {
            ring: Some(ring),
            port: Some(conn.port),
            budget: config.budget.max(1),
            stalled: false,
            spurious_run: 0,
            closing: false,
            server: Server {
                env,
                target,
                segs,
                luns: LunTable::new(),
                pending: [FREE; MAX_DEPTH],
                depth,
                in_flight: 0,
                limits: config.limits(),
                front: conn.front,
                stats: BackStats::default(),
            },
        })
    }

    /// The platform.
    pub fn env(&self) -> &P {
        &self.server.env
    }

    /// The target.
    pub fn target(&self) -> &S {
        &self.server.target
    }

    /// The target, writable.
    pub fn target_mut(&mut self) -> &mut S {
        &mut self.server.target
    }

    /// The LUN table.
    pub fn luns(&self) -> &LunTable<MAX_LUNS> {
        &self.server.luns
    }

    /// The LUN table, writable (hotplug).
    pub fn luns_mut(&mut self) -> &mut LunTable<MAX_LUNS> {
        &mut self.server.luns
    }

    /// The limits requests are checked against.
    pub fn limits(&self) -> &Limits {
        &self.server.limits
    }

    /// Counters.
    pub fn stats(&self) -> BackStats {
        self.server.stats
    }

    /// Commands not yet completed. The glue must not drop the engine before this is 0.
    pub fn in_flight(&self) -> usize {
        self.server.in_flight
    }

    /// Whether the ring is served.
    pub fn is_connected(&self) -> bool {
        self.ring.is_some()
    }

    /// Spurious events in a row.
    pub fn consecutive_spurious(&self) -> u32 {
        self.spurious_run
    }

    /// Handles the port's event: takes at most the budget of requests, publishes responses.
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

    /// Reports command `tag` done and queues its response (unknown or free tags are
    /// ignored). Call [`resume`](Self::resume) after a batch.
    pub fn complete(&mut self, tag: usize, outcome: Outcome) {
        let Some(rsp) = self.server.finish(tag, &outcome) else {
            return;
        };
        if let Some(ring) = self.ring.as_mut() {
            if ring.queue_response(&rsp.to_bytes()).is_err() {
                self.disconnect();
            }
        }
    }

    /// After completions: publishes responses and takes requests that waited for a slot.
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

    /// Begins an orderly close, before [`disconnect`](Self::disconnect): from now on every
    /// request taken from the ring is answered at once with the host byte `NO_CONNECT`
    /// (nothing is mapped or submitted), while the commands in flight finish and are answered
    /// as usual ([`complete`](Self::complete), [`resume`](Self::resume)). This answers what
    /// is on the ring now; the glue then waits for [`in_flight`](Self::in_flight) to reach 0.
    ///
    /// A closing frontend still waits for an answer to every request it queued (its SCSI
    /// error handler would otherwise time them out one by one), so responses are pushed
    /// before the ring is unmapped.
    pub fn close(&mut self) -> Result<Progress, Error> {
        self.closing = true;
        self.resume()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Stops serving: unmaps the ring and closes the port. Idempotent. Commands in flight
    /// keep their mappings until they complete; their responses are dropped.
    pub fn disconnect(&mut self) {
        drop(self.ring.take());
        if let Some(port) = self.port.take() {
            let _ = self.server.env.close(port);
        }
        self.stalled = false;
    }

    fn pump(&mut self) -> Result<(u32, bool), Error> {
        let Some(ring) = self.ring.as_mut() else {
            return Err(Error::Disconnected);
        };
        let result = run(ring, &mut self.server, self.budget, self.closing);
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
        let notify = match ring.push_responses() {
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
}

/// One budgeted batch: (requests taken, stalled, more waiting). The producer is loaded and
/// checked once by the ring's batch; each slot is copied out once.
fn run<M, P, S, T>(
    ring: &mut BackRing<M, Slot, Slot>,
    server: &mut Server<P, S, T>,
    budget: u32,
    closing: bool,
) -> Result<(u32, bool, bool), RingError>
where
    M: SharedMemory,
    P: GrantOps,
    P::Mapping: PageBytes,
    S: ScsiTarget<P::Mapping>,
    T: AsMut<[DataSeg<P::Mapping>]>,
{
    let mut done = 0u32;
    let mut stalled = false;
    let mut batch = ring.requests(budget)?;
    loop {
        if !closing && server.in_flight >= server.depth {
            stalled = true;
            break;
        }
        let Some(slot) = batch.next() else { break };
        let req = wire::Request::from_bytes(&slot);
        let rsp = if closing {
            Some(server.turn_away(&req))
        } else {
            server.serve(&req)
        };
        if let Some(rsp) = rsp {
            batch.queue_response(&rsp.to_bytes())?;
        }
        done += 1;
    }
    let more = if stalled {
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
    S: ScsiTarget<P::Mapping>,
    T: AsMut<[DataSeg<P::Mapping>]>,
{
    /// Takes one request: validate, then (only if valid) act. Returns the response unless the
    /// command is running.
    fn serve(&mut self, w: &wire::Request) -> Option<wire::Response> {
        self.stats.requests = self.stats.requests.wrapping_add(1);
        let req = match Request::parse(w, &self.limits, &self.luns) {
            Ok(r) => r,
            Err(invalid) => return Some(self.refuse(w, invalid)),
        };
        match req.body {
            Body::Cdb(cdb) => {
                if self.pending.iter().any(|p| p.busy && p.rqid == req.rqid) {
                    return Some(self.refuse(w, Invalid::RqidInFlight(req.rqid)));
                }
                let tag = self.pending.iter().take(self.depth).position(|p| !p.busy)?;
                let transfer = match self.load(tag, &cdb.segments, cdb.direction) {
                    Ok(t) => t,
                    Err(()) => {
                        self.stats.map_failures = self.stats.map_failures.wrapping_add(1);
                        let o = Outcome::host_error(wire::RSLT_HOST_ERROR, 0);
                        return Some(response::encode(req.rqid, &o, 0));
                    }
                };
                let count = usize::try_from(cdb.segments.total()).unwrap_or(0);
                let slot = self.pending.get_mut(tag)?;
                *slot = Pending {
                    busy: true,
                    rqid: req.rqid,
                    lun: req.lun,
                    count: u16::try_from(count).unwrap_or(0),
                    transfer,
                };
                self.in_flight += 1;
                let base = tag * MAX_SEGS;
                let segs = self.segs.as_mut();
                let cmd = Command {
                    lun: req.lun,
                    cdb: cdb.as_bytes(),
                    direction: cdb.direction,
                    data: segs.get(base..base + count).unwrap_or(&[]),
                    length: transfer,
                };
                match self.target.submit(tag, &cmd) {
                    Started::Pending => None,
                    Started::Done(o) => self.finish(tag, &o),
                }
            }
            Body::Abort { ref_rqid } => {
                self.stats.tasks = self.stats.tasks.wrapping_add(1);
                let victim = self
                    .pending
                    .iter()
                    .take(self.depth)
                    .position(|p| p.busy && p.rqid == ref_rqid && p.lun == req.lun);
                let ok = victim.is_some_and(|tag| self.target.abort(req.lun, tag));
                Some(task_response(req.rqid, ok))
            }
            Body::Reset => {
                self.stats.tasks = self.stats.tasks.wrapping_add(1);
                let ok = self.target.reset(req.lun);
                Some(task_response(req.rqid, ok))
            }
        }
    }

    /// Answers a request taken while closing: `NO_CONNECT`, nothing mapped or submitted.
    fn turn_away(&mut self, w: &wire::Request) -> wire::Response {
        self.stats.requests = self.stats.requests.wrapping_add(1);
        self.stats.turned_away = self.stats.turned_away.wrapping_add(1);
        let mut r = wire::Response::ZERO;
        r.rqid = w.rqid;
        r.rslt = crate::parse::rslt(wire::RSLT_HOST_NO_CONNECT, 0);
        r
    }

    fn refuse(&mut self, w: &wire::Request, invalid: Invalid) -> wire::Response {
        self.stats.invalid = self.stats.invalid.wrapping_add(1);
        let mut r = wire::Response::ZERO;
        r.rqid = w.rqid;
        r.rslt = invalid.result(w.act);
        r
    }

    /// Fills pending slot `tag`'s segments (copying indirect descriptors out once and
    /// checking the copies) and maps them. Returns the bytes they hold; on `Err` nothing is
    /// held.
    fn load(&mut self, tag: usize, segments: &Segments, dir: Direction) -> Result<u32, ()> {
        let base = tag * MAX_SEGS;
        let n = match segments {
            Segments::Direct { .. } => {
                let segs = self.segs.as_mut();
                let direct = segments.direct();
                for (d, s) in segs.iter_mut().skip(base).zip(direct) {
                    d.gref = GrantRef::new(s.gref);
                    d.offset = s.offset;
                    d.len = s.length;
                }
                direct.len()
            }
            Segments::Indirect { .. } => self.load_indirect(base, segments)?,
        };
        let access = if dir.device_writes() {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let mut start = 0;
        while start < n {
            let end = n.min(start + MAP_BATCH);
            if !self.map_chunk(base + start, base + end, access) {
                self.release(base, n);
                return Err(());
            }
            start = end;
        }
        let segs = self.segs.as_mut();
        let bytes = segs
            .get(base..base + n)
            .map_or(0, |s| s.iter().map(|d| u32::from(d.len)).sum());
        Ok(bytes)
    }

    /// Maps the descriptor pages read-only, copies each announced descriptor out once into
    /// the segment storage, unmaps the pages, then checks the copies.
    fn load_indirect(&mut self, base: usize, segments: &Segments) -> Result<usize, ()> {
        self.stats.indirect = self.stats.indirect.wrapping_add(1);
        let pages = segments.indirect_pages();
        let mut maps: [Option<P::Mapping>; SG_TABLESIZE] = core::array::from_fn(|_| None);
        let mut ok = true;
        for (chunk, out) in pages.chunks(MAP_BATCH).zip(maps.chunks_mut(MAP_BATCH)) {
            ok &= self.map_grants(chunk.iter().map(|p| p.gref), Access::ReadOnly, out);
        }
        let mut k = 0usize;
        if ok {
            let segs = self.segs.as_mut();
            let mut dst = segs.iter_mut().skip(base).take(MAX_SEGS);
            'pages: for (page, map) in pages.iter().zip(maps.iter()) {
                let Some(map) = map else {
                    ok = false;
                    break;
                };
                let n = usize::from(page.length) / wire::Segment::SIZE;
                for j in 0..n {
                    let mut b = [0u8; wire::Segment::SIZE];
                    let at = usize::from(page.offset) + j * wire::Segment::SIZE;
                    let Some(d) = dst.next() else {
                        ok = false;
                        break 'pages;
                    };
                    if !map.read_bytes(at, &mut b) {
                        ok = false;
                        break 'pages;
                    }
                    let desc = wire::Segment::from_bytes(&b);
                    d.gref = GrantRef::new(desc.gref);
                    d.offset = desc.offset;
                    d.len = desc.length;
                    k += 1;
                }
            }
        }
        self.unmap(&mut maps);
        if !ok {
            return Err(());
        }
        // Only the copies are checked (the pages are gone): no double fetch.
        let segs = self.segs.as_mut();
        let valid = segs.iter().skip(base).take(k).all(|d| {
            let mut w = wire::Segment::ZERO;
            w.gref = d.gref.raw();
            w.offset = d.offset;
            w.length = d.len;
            parse::Segment::check(&w).is_ok()
        });
        if valid {
            Ok(k)
        } else {
            Err(())
        }
    }

    /// Maps `grefs` (at most [`MAP_BATCH`]) into `out`; `false` if any failed (whatever
    /// mapped is in `out`, to be unmapped).
    fn map_grants(
        &mut self,
        grefs: impl Iterator<Item = u32>,
        access: Access,
        out: &mut [Option<P::Mapping>],
    ) -> bool {
        let mut reqs = [MapRequest {
            domid: self.front,
            gref: GrantRef::new(0),
            access,
        }; MAP_BATCH];
        let mut n = 0;
        for (r, g) in reqs.iter_mut().zip(grefs) {
            r.gref = GrantRef::new(g);
            n += 1;
        }
        let n = n.min(out.len());
        let mut results: [MapResult<P::Mapping>; MAP_BATCH] =
            core::array::from_fn(|_| MapResult::Pending);
        let (Some(reqs), Some(results)) = (reqs.get(..n), results.get_mut(..n)) else {
            return false;
        };
        let call = self.env.map_batch(reqs, results);
        let mut ok = call.is_ok();
        for (r, o) in results.iter_mut().zip(out.iter_mut()) {
            match core::mem::replace(r, MapResult::Pending) {
                MapResult::Mapped(m) => {
                    self.stats.maps = self.stats.maps.wrapping_add(1);
                    *o = Some(m);
                }
                _ => ok = false,
            }
        }
        ok
    }

    fn map_chunk(&mut self, lo: usize, hi: usize, access: Access) -> bool {
        let mut grefs = [0u32; MAP_BATCH];
        let mut n = 0;
        for (g, s) in grefs
            .iter_mut()
            .zip(self.segs.as_mut().iter().take(hi).skip(lo))
        {
            *g = s.gref.raw();
            n += 1;
        }
        let mut out: [Option<P::Mapping>; MAP_BATCH] = core::array::from_fn(|_| None);
        let ok = self.map_grants(
            grefs.iter().take(n).copied(),
            access,
            out.get_mut(..n).unwrap_or(&mut []),
        );
        for (s, m) in self.segs.as_mut().iter_mut().skip(lo).zip(out.iter_mut()) {
            if let Some(m) = m.take() {
                s.mapping = Some(m);
            }
        }
        ok
    }

    fn unmap(&mut self, maps: &mut [Option<P::Mapping>]) {
        for chunk in maps.chunks_mut(MAP_BATCH) {
            let n = chunk.iter().filter(|m| m.is_some()).count();
            if n == 0 {
                continue;
            }
            let mut results = [UnmapResult::Skipped; MAP_BATCH];
            let results = results.get_mut(..chunk.len()).unwrap_or(&mut []);
            if self.env.unmap_batch(chunk, results).is_err() {
                self.stats.unmap_failures = self.stats.unmap_failures.wrapping_add(1);
                continue;
            }
            for r in results.iter() {
                match r {
                    UnmapResult::Unmapped => self.stats.unmaps = self.stats.unmaps.wrapping_add(1),
                    UnmapResult::Failed(_) => {
                        self.stats.unmap_failures = self.stats.unmap_failures.wrapping_add(1);
                    }
                    UnmapResult::Skipped => {}
                }
            }
            // A mapping that failed to unmap stays in its slot; dropping it is the
            // platform's last resort (as for every engine), it is never reused here.
        }
    }

    /// Unmaps segments `base..base + n` and clears them.
    fn release(&mut self, base: usize, n: usize) {
        let mut batch: [Option<P::Mapping>; MAP_BATCH] = core::array::from_fn(|_| None);
        let mut start = base;
        while start < base + n {
            let end = (base + n).min(start + MAP_BATCH);
            for (d, s) in batch
                .iter_mut()
                .zip(self.segs.as_mut().iter_mut().take(end).skip(start))
            {
                *d = s.mapping.take();
                s.len = 0;
            }
            self.unmap(&mut batch);
            start = end;
        }
    }

    /// Ends command `tag`: unmaps, frees the slot, builds the response.
    fn finish(&mut self, tag: usize, outcome: &Outcome) -> Option<wire::Response> {
        let p = self.pending.get_mut(tag).filter(|p| p.busy)?;
        let done = core::mem::replace(p, FREE);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.release(tag * MAX_SEGS, usize::from(done.count));
        Some(response::encode(done.rqid, outcome, done.transfer))
    }
}

fn task_response(rqid: u16, ok: bool) -> wire::Response {
    let mut r = wire::Response::ZERO;
    r.rqid = rqid;
    r.rslt = if ok {
        wire::RSLT_RESET_SUCCESS
    } else {
        wire::RSLT_RESET_FAILED
    };
    r
}
