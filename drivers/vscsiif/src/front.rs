//! The vscsiif frontend engine: queues SCSI commands with their data in zeroed granted pages
//! (directly in the request, or through descriptor pages with `feature-sg-grant`), and checks
//! every response before it touches anything.
//!
//! Request ids: a request in slot `s` of the table (at most 16, the ring's size) of use
//! (generation) `g` is `rqid = (g mod 4096) << 4 | s`. The backend echoes it; a response whose
//! slot is outside the table, idle, or of another use (a duplicate or a stale answer) fails the
//! device, as does an unknown result, sense data over 96 bytes, or a residual over the bytes
//! the request described. Grants are revoked before pages are freed; a page the backend still
//! maps is handed to `defer_free`, never freed or reused.

use crate::parse::{group_len, Direction, VAddr, PAGE_SIZE};
use crate::response::{self, Answer, Expected, Outcome, ResponseFault};
use crate::Error;
use xen_core::platform::{self, PageAlloc, PageBytes, Progress};
use xen_core::slots::{Slots, Tag};
use xen_evtchn::EvtchnOps;
use xen_grant::{Access, AccessError, EndAccess, GrantOps};
use xen_ring::{FrontRing, RingError, SharedMemory};
use xen_sys::wire::vscsiif::{
    self as wire, Act, MAX_COMMAND_SIZE, SG_GRANT, SG_PER_PAGE, SG_TABLESIZE,
};
use xen_sys::{DomId, GrantRef, Port};

use crate::back::Slot;

const PAGE: usize = PAGE_SIZE as usize;

/// How a frontend is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontConfig {
    /// Responses handled per event at most.
    pub budget: u32,
    /// Segments per command, as negotiated
    /// (`xen_core::feature::vscsiif::BackOffer::max_segments`): above 26, larger commands
    /// go through descriptor pages.
    pub max_segments: u32,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            budget: 32,
            max_segments: SG_TABLESIZE as u32,
        }
    }
}

/// Counters (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// Requests queued.
    pub submitted: u64,
    /// Requests answered.
    pub completed: u64,
    /// Requests ended without an answer (failure, close, drain).
    pub aborted: u64,
    /// Grants made.
    pub grants: u64,
    /// Grants ended (or attempted).
    pub grant_ends: u64,
    /// Pages the backend still mapped when their request ended: deferred, not freed.
    pub deferred_frees: u64,
    /// Events with no response.
    pub spurious_events: u64,
    /// Commands sent with descriptor pages.
    pub indirect: u64,
}

/// Why a request was not queued. Nothing was granted or queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// Every slot or ring entry is in use.
    Busy,
    /// The CDB is empty, over 16 bytes, or shorter than its group requires.
    BadCdb,
    /// The length is over the negotiated maximum, does not fit the direction, or the data
    /// given does not match it.
    BadLength,
    /// No page to grant.
    NoMemory,
    /// A grant failed.
    Grant(AccessError),
    /// The device failed or was drained.
    Failed,
    /// The ticket to abort is not outstanding.
    NotOutstanding,
}

/// A request's handle (`Tag::id` of its slot use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

/// What a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A SCSI command.
    Command,
    /// An abort of the command with this ticket.
    Abort(Ticket),
    /// A LUN reset.
    Reset,
}

/// A finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Which request.
    pub ticket: Ticket,
    /// What it was.
    pub kind: Kind,
    /// The answer; a request ended without a response gets the host byte `ERROR` (a
    /// command) or a failed task.
    pub answer: Answer,
}

/// A command to queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec<'a> {
    /// The LUN's address.
    pub addr: VAddr,
    /// The CDB (1 to 16 bytes).
    pub cdb: &'a [u8],
    /// Data direction.
    pub direction: Direction,
    /// Bytes of data (0 exactly for [`Direction::None`]).
    pub length: usize,
}

/// An outstanding request handed back by [`ScsiFront::drain`] (save/restore), to be queued
/// again on the new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reissue {
    /// Its old ticket.
    pub ticket: Ticket,
    /// What it was.
    pub kind: Kind,
    /// The LUN's address.
    pub addr: VAddr,
    /// The CDB; bytes past `cdb_len` are zero.
    pub cdb: [u8; MAX_COMMAND_SIZE],
    /// Valid CDB bytes.
    pub cdb_len: u8,
    /// Data direction.
    pub direction: Direction,
    /// Bytes of data.
    pub length: usize,
}

impl Reissue {
    /// The command to queue again.
    pub fn spec(&self) -> CommandSpec<'_> {
        CommandSpec {
            addr: self.addr,
            cdb: self.cdb.get(..usize::from(self.cdb_len)).unwrap_or(&[]),
            direction: self.direction,
            length: self.length,
        }
    }
}

/// The data pages of one request, 4096 bytes each (the last possibly fewer).
pub struct DataPages<'a, Pg> {
    pages: &'a [Option<(GrantRef, Pg)>],
    bytes: usize,
}

impl<Pg: PageBytes> DataPages<'_, Pg> {
    /// Bytes of data.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Copies the data to `dst` (at most [`len`](Self::len) bytes); `false` if a page could
    /// not be read.
    pub fn copy_to(&self, dst: &mut [u8]) -> bool {
        let n = dst.len().min(self.bytes);
        let Some(dst) = dst.get_mut(..n) else {
            return false;
        };
        dst.chunks_mut(PAGE)
            .zip(self.pages.iter())
            .all(|(c, p)| matches!(p, Some((_, p)) if p.read_bytes(0, c)))
    }

    /// Copies `src` (at most [`len`](Self::len) bytes) into the pages.
    pub fn copy_from(&self, src: &[u8]) -> bool {
        let n = src.len().min(self.bytes);
        let Some(src) = src.get(..n) else {
            return false;
        };
        src.chunks(PAGE)
            .zip(self.pages.iter())
            .all(|(c, p)| matches!(p, Some((_, p)) if p.write_bytes(0, c)))
    }
}

type PageSet<Pg, const K: usize> = [Option<(GrantRef, Pg)>; K];

/// One outstanding request.
struct Live<Pg, const S: usize> {
    tag: Tag,
    rqid: u16,
    kind: Kind,
    addr: VAddr,
    cdb: [u8; MAX_COMMAND_SIZE],
    cdb_len: u8,
    direction: Direction,
    length: usize,
    pages: PageSet<Pg, S>,
    indirect: PageSet<Pg, SG_TABLESIZE>,
}

/// The frontend of one vscsiif ring, with at most `N` (1 to 16) requests outstanding of at
/// most `S` data pages each.
///
/// A response that breaks the protocol fails the device: every outstanding request
/// completes (host byte `ERROR`, or a failed task), every grant is revoked or deferred, and
/// every later call is refused.
pub struct ScsiFront<P: GrantOps, M, const N: usize = 16, const S: usize = SG_TABLESIZE> {
    env: P,
    ring: FrontRing<M, Slot, Slot>,
    backend: DomId,
    port: Port,
    ids: Slots<N>,
    table: [Option<Live<P::Page, S>>; N],
    budget: u32,
    max_segments: usize,
    failed: bool,
    spurious_run: u32,
    stats: FrontStats,
}

/// The rqid of a slot use.
fn rqid_of(tag: Tag) -> u16 {
    let generation = (tag.generation & 0x0fff) as u16;
    (generation << 4) | (tag.slot & 0x000f)
}

/// The page type of a platform.
type Pg<P> = <P as GrantOps>::Page;

impl<P, M, const N: usize, const S: usize> ScsiFront<P, M, N, S>
where
    P: GrantOps + EvtchnOps + PageAlloc<Page = <P as GrantOps>::Page>,
    <P as GrantOps>::Page: PageBytes,
    M: SharedMemory,
{
    const TABLE_FITS_RQID: () = assert!(N >= 1 && N <= 16, "4 bits of rqid name the slot");

    /// A frontend over the ring page `ring` (granted to `backend`), notifying through `port`.
    pub fn new(
        env: P,
        ring: M,
        backend: DomId,
        port: Port,
        config: FrontConfig,
    ) -> Result<Self, RingError> {
        let () = Self::TABLE_FITS_RQID;
        let ring = FrontRing::init(ring)?;
        let mut ids = Slots::new();
        ids.open_all(N);
        let max_segments = usize::try_from(config.max_segments)
            .unwrap_or(usize::MAX)
            .clamp(1, SG_TABLESIZE * SG_PER_PAGE)
            .min(S);
        Ok(ScsiFront {
            env,
            ring,
            backend,
            port,
            ids,
            table: core::array::from_fn(|_| None),
            budget: config.budget.max(1),
            max_segments,
            failed: false,
            spurious_run: 0,
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

    /// Requests outstanding.
    pub fn outstanding(&self) -> usize {
        self.ids.outstanding()
    }

    /// Commands at once (the SCSI host's `can_queue`).
    pub fn can_queue(&self) -> usize {
        N.min(usize::try_from(self.ring.entries()).unwrap_or(N))
    }

    /// Segments per command (the SCSI host's `sg_tablesize`).
    pub fn sg_tablesize(&self) -> usize {
        self.max_segments
    }

    /// Whether the device failed (or was drained).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Spurious events in a row.
    pub fn consecutive_spurious(&self) -> u32 {
        self.spurious_run
    }

    /// Queues a command; for [`Direction::ToDevice`] `data` is its `length` bytes, for
    /// [`Direction::Bidirectional`] at most that many (the rest zero), otherwise empty.
    pub fn submit_command(
        &mut self,
        spec: &CommandSpec<'_>,
        data: &[u8],
    ) -> Result<Ticket, SubmitError> {
        let len = spec.cdb.len();
        let opcode = *spec.cdb.first().ok_or(SubmitError::BadCdb)?;
        if len > MAX_COMMAND_SIZE || group_len(opcode).is_some_and(|g| len < usize::from(g)) {
            return Err(SubmitError::BadCdb);
        }
        let count = spec.length.div_ceil(PAGE);
        let fits = match spec.direction {
            Direction::None => spec.length == 0 && data.is_empty(),
            Direction::ToDevice => data.len() == spec.length,
            Direction::FromDevice => data.is_empty(),
            Direction::Bidirectional => data.len() <= spec.length,
        };
        if !fits || count > self.max_segments || spec.length > u32::MAX as usize {
            return Err(SubmitError::BadLength);
        }
        let tag = self.reserve()?;
        let mut cdb = [0u8; MAX_COMMAND_SIZE];
        for (d, s) in cdb.iter_mut().zip(spec.cdb) {
            *d = *s;
        }
        let mut live = Live {
            tag,
            rqid: rqid_of(tag),
            kind: Kind::Command,
            addr: spec.addr,
            cdb,
            cdb_len: u8::try_from(len).unwrap_or(0),
            direction: spec.direction,
            length: spec.length,
            pages: core::array::from_fn(|_| None),
            indirect: core::array::from_fn(|_| None),
        };
        let access = if spec.direction.device_writes() {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let built = self.build(&mut live, count, access, data);
        match built {
            Ok(req) => self.commit(req, live),
            Err(e) => {
                // Nothing was published: the backend never saw these grants.
                self.revoke_live(&mut live);
                Err(e)
            }
        }
    }

    /// Queues an abort of the outstanding command `ticket`.
    pub fn submit_abort(&mut self, ticket: Ticket) -> Result<Ticket, SubmitError> {
        if self.failed {
            return Err(SubmitError::Failed);
        }
        let victim = self
            .table
            .iter()
            .flatten()
            .find(|l| l.tag.id() == ticket.0 && l.kind == Kind::Command)
            .map(|l| (l.rqid, l.addr))
            .ok_or(SubmitError::NotOutstanding)?;
        self.submit_task(Kind::Abort(ticket), victim.1, victim.0)
    }

    /// Queues a reset of the LUN at `addr`.
    pub fn submit_reset(&mut self, addr: VAddr) -> Result<Ticket, SubmitError> {
        self.submit_task(Kind::Reset, addr, 0)
    }

    fn submit_task(
        &mut self,
        kind: Kind,
        addr: VAddr,
        ref_rqid: u16,
    ) -> Result<Ticket, SubmitError> {
        let tag = self.reserve()?;
        let live = Live {
            tag,
            rqid: rqid_of(tag),
            kind,
            addr,
            cdb: [0; MAX_COMMAND_SIZE],
            cdb_len: 0,
            direction: Direction::None,
            length: 0,
            pages: core::array::from_fn(|_| None),
            indirect: core::array::from_fn(|_| None),
        };
        let mut req = wire::Request::ZERO;
        req.rqid = live.rqid;
        req.act = u8::from(if kind == Kind::Reset {
            Act::ScsiReset
        } else {
            Act::ScsiAbort
        });
        req.ref_rqid = ref_rqid;
        req.channel = addr.channel;
        req.id = addr.id;
        req.lun = addr.lun;
        req.sc_data_direction = Direction::None.raw();
        self.commit(req, live)
    }

    /// Publishes queued requests, notifying the backend if it asked.
    pub fn push(&mut self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Disconnected);
        }
        match self.ring.push_requests() {
            Ok(n) if n.is_required() => self.env.notify(self.port).map_err(Error::Evtchn),
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Ring(e)),
        }
    }

    fn reserve(&mut self) -> Result<Tag, SubmitError> {
        if self.failed {
            return Err(SubmitError::Failed);
        }
        match self.ids.next() {
            Some(tag) if !self.ring.is_full() => Ok(tag),
            _ => Err(SubmitError::Busy),
        }
    }

    /// Grants `count` zeroed data pages (filled from `data`) and, if need be, descriptor
    /// pages, and returns the request.
    fn build(
        &mut self,
        live: &mut Live<Pg<P>, S>,
        count: usize,
        access: Access,
        data: &[u8],
    ) -> Result<wire::Request, SubmitError> {
        let mut req = wire::Request::ZERO;
        req.rqid = live.rqid;
        req.act = u8::from(Act::ScsiCdb);
        req.cmd_len = live.cdb_len;
        req.cmnd = live.cdb;
        req.channel = live.addr.channel;
        req.id = live.addr.id;
        req.lun = live.addr.lun;
        req.sc_data_direction = live.direction.raw();
        let mut descs = [wire::Segment::ZERO; S];
        let mut left = live.length;
        let mut chunks = data.chunks(PAGE);
        for (slot, desc) in live.pages.iter_mut().zip(descs.iter_mut()).take(count) {
            let here = left.min(PAGE);
            let (gref, page) = self.grant_fresh(access)?;
            if let Some(c) = chunks.next() {
                if !page.write_bytes(0, c) {
                    return Err(SubmitError::NoMemory);
                }
            }
            *slot = Some((gref, page));
            desc.gref = gref.raw();
            desc.offset = 0;
            desc.length = u16::try_from(here).map_err(|_| SubmitError::BadLength)?;
            left -= here;
        }
        let descs = descs.get(..count).unwrap_or(&[]);
        if count <= SG_TABLESIZE {
            req.nr_segments = u8::try_from(count).map_err(|_| SubmitError::BadLength)?;
            for (d, s) in req.seg.iter_mut().zip(descs) {
                *d = *s;
            }
            return Ok(req);
        }
        // Descriptor pages: 512 descriptors each, granted read-only.
        let pages = descs.chunks(SG_PER_PAGE);
        let mut n = 0u8;
        for ((chunk, slot), seg) in pages.zip(live.indirect.iter_mut()).zip(req.seg.iter_mut()) {
            let (gref, page) = self.grant_fresh(Access::ReadOnly)?;
            for (j, d) in chunk.iter().enumerate() {
                if !page.write_bytes(j * wire::Segment::SIZE, &d.to_bytes()) {
                    return Err(SubmitError::NoMemory);
                }
            }
            *slot = Some((gref, page));
            seg.gref = gref.raw();
            seg.offset = 0;
            seg.length = u16::try_from(chunk.len() * wire::Segment::SIZE)
                .map_err(|_| SubmitError::BadLength)?;
            n += 1;
        }
        self.stats.indirect = self.stats.indirect.wrapping_add(1);
        req.nr_segments = n | SG_GRANT;
        Ok(req)
    }

    /// A fresh page, zeroed whole before it is shared, granted to the backend.
    fn grant_fresh(&mut self, access: Access) -> Result<(GrantRef, Pg<P>), SubmitError> {
        let mut page = self.env.alloc_page().ok_or(SubmitError::NoMemory)?;
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
        req: wire::Request,
        mut live: Live<Pg<P>, S>,
    ) -> Result<Ticket, SubmitError> {
        if self.ring.queue_request(&req.to_bytes()).is_err() {
            self.revoke_live(&mut live);
            return Err(SubmitError::Busy);
        }
        let claimed = self.ids.claim();
        debug_assert_eq!(claimed, Some(live.tag));
        let ticket = Ticket(live.tag.id());
        if let Some(e) = self.table.get_mut(usize::from(live.tag.slot)) {
            *e = Some(live);
        }
        self.stats.submitted = self.stats.submitted.wrapping_add(1);
        Ok(ticket)
    }

    fn revoke_live(&mut self, live: &mut Live<Pg<P>, S>) {
        revoke_into(&self.env, &mut self.stats, &mut live.pages);
        revoke_into(&self.env, &mut self.stats, &mut live.indirect);
    }

    /// Handles the port's event: completes at most the budget of responses, calling
    /// `complete` for each with the data pages (readable; for a command the device wrote
    /// into, the backend's data). A bad response fails the device and returns
    /// [`Error::Response`] once; later events of a failed device are spurious.
    pub fn handle_event(
        &mut self,
        mut complete: impl FnMut(Completion, &DataPages<'_, Pg<P>>),
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
            Err(e) => fault = Some(Error::Ring(e)),
            Ok(batch) => {
                for raw in batch {
                    // Copied out once; only the copy is checked.
                    let rsp = wire::Response::from_bytes(&raw);
                    match check(&self.ids, &mut self.table, &rsp) {
                        Ok((live, answer)) => {
                            done += 1;
                            let tag = live.tag;
                            finish(&self.env, &mut self.stats, live, answer, &mut complete);
                            self.ids.release(tag);
                            self.stats.completed = self.stats.completed.wrapping_add(1);
                        }
                        Err(f) => {
                            fault = Some(Error::Response(f));
                            break;
                        }
                    }
                }
            }
        }
        let more = match fault {
            None if done >= self.budget => true,
            None => match self.ring.final_check_for_responses() {
                Ok(m) => m,
                Err(e) => {
                    fault = Some(Error::Ring(e));
                    false
                }
            },
            Some(_) => false,
        };
        if let Some(err) = fault {
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

    /// Fails the device: every outstanding request completes without an answer (host byte
    /// `ERROR`, or a failed task), every grant is revoked or deferred. Idempotent.
    pub fn fail(&mut self, mut complete: impl FnMut(Completion, &DataPages<'_, Pg<P>>)) {
        self.failed = true;
        let (env, stats, table) = (&self.env, &mut self.stats, &mut self.table);
        self.ids.close(|tag| {
            let Some(mut live) = table.get_mut(usize::from(tag.slot)).and_then(Option::take) else {
                return;
            };
            revoke_into(env, stats, &mut live.pages);
            revoke_into(env, stats, &mut live.indirect);
            stats.aborted = stats.aborted.wrapping_add(1);
            let answer = match live.kind {
                Kind::Command => Answer::Command(Outcome::host_error(
                    wire::RSLT_HOST_ERROR,
                    u32::try_from(live.length).unwrap_or(u32::MAX),
                )),
                _ => Answer::Task { success: false },
            };
            let data = DataPages {
                pages: &[],
                bytes: 0,
            };
            complete(
                Completion {
                    ticket: Ticket(tag.id()),
                    kind: live.kind,
                    answer,
                },
                &data,
            );
        });
    }

    /// Save/restore: hands back every outstanding request, in slot order, with its data pages
    /// (a command's data for the device is still in them), so the glue can queue it again on
    /// the new connection's engine; then revokes every grant (deferring pages still mapped)
    /// and retires this engine, which refuses all later calls.
    pub fn drain(&mut self, mut reissue: impl FnMut(Reissue, &DataPages<'_, Pg<P>>)) {
        self.failed = true;
        let (env, stats, table) = (&self.env, &mut self.stats, &mut self.table);
        self.ids.close(|tag| {
            let Some(mut live) = table.get_mut(usize::from(tag.slot)).and_then(Option::take) else {
                return;
            };
            let data = DataPages {
                pages: &live.pages,
                bytes: live.length,
            };
            reissue(
                Reissue {
                    ticket: Ticket(tag.id()),
                    kind: live.kind,
                    addr: live.addr,
                    cdb: live.cdb,
                    cdb_len: live.cdb_len,
                    direction: live.direction,
                    length: live.length,
                },
                &data,
            );
            revoke_into(env, stats, &mut live.pages);
            revoke_into(env, stats, &mut live.indirect);
            stats.aborted = stats.aborted.wrapping_add(1);
        });
    }
}

/// Matches a response to its request by `rqid` and checks it; on success takes the request
/// out of the table (the caller then releases its slot).
fn check<Pg, const N: usize, const S: usize>(
    ids: &Slots<N>,
    table: &mut [Option<Live<Pg, S>>; N],
    rsp: &wire::Response,
) -> Result<(Live<Pg, S>, Answer), ResponseFault> {
    let rqid = rsp.rqid;
    let slot = usize::from(rqid & 0x000f);
    let entry = table.get_mut(slot).ok_or(ResponseFault::BadRqid(rqid))?;
    let live = entry.as_ref().ok_or(ResponseFault::NotOutstanding(rqid))?;
    if live.rqid != rqid || ids.lookup(live.tag.id()).is_err() {
        return Err(ResponseFault::NotOutstanding(rqid));
    }
    let expected = match live.kind {
        Kind::Command => Expected::Command {
            transfer: u32::try_from(live.length).unwrap_or(u32::MAX),
        },
        Kind::Abort(_) | Kind::Reset => Expected::Task,
    };
    let answer = response::check(rsp, expected)?;
    let live = entry.take().ok_or(ResponseFault::NotOutstanding(rqid))?;
    Ok((live, answer))
}

/// Completes a checked request: end its grants, hand the data over, then free the pages, or
/// defer those the backend still maps.
fn finish<P: GrantOps, const S: usize>(
    env: &P,
    stats: &mut FrontStats,
    live: Live<P::Page, S>,
    answer: Answer,
    complete: &mut impl FnMut(Completion, &DataPages<'_, P::Page>),
) {
    let Live {
        tag,
        kind,
        direction,
        length,
        mut pages,
        mut indirect,
        ..
    } = live;
    revoke_into(env, stats, &mut indirect);
    let mut still = [false; S];
    for (p, s) in pages.iter().zip(still.iter_mut()) {
        if let Some((gref, _)) = p {
            stats.grant_ends = stats.grant_ends.wrapping_add(1);
            *s = env.end_access(*gref) == EndAccess::StillMapped;
        }
    }
    let bytes = match answer {
        Answer::Command(o) if direction.device_writes() => {
            length.saturating_sub(usize::try_from(o.residual).unwrap_or(usize::MAX))
        }
        _ => 0,
    };
    let data = DataPages {
        pages: &pages,
        bytes,
    };
    complete(
        Completion {
            ticket: Ticket(tag.id()),
            kind,
            answer,
        },
        &data,
    );
    for (p, s) in pages.iter_mut().zip(still) {
        if let Some((gref, page)) = p.take() {
            if s {
                stats.deferred_frees = stats.deferred_frees.wrapping_add(1);
                env.defer_free(gref, page);
            }
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
