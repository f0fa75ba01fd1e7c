//! The echo front end: grants a ring and data pages, issues requests, verifies responses.

use crate::error::{Error, ResponseFault};
use crate::store::{self, Dir, Key};
use crate::wire::{checksum, Op, RequestWire, Response, ResponseWire, Status, MAX_RING_PAGE_ORDER};
use crate::{Progress, CHUNK};
use xen_core::platform::{self, PageAlloc, PageBytes, RingMemory};
use xen_core::slots::{IdError, Slots};
use xen_core::xenbus::{Action, Actions, Event, Machine, Role, XenbusState};
use xen_core::xs::{with_transaction, TxId, WatchEvent, WatchId, XenStore};
use xen_evtchn::EvtchnOps;
use xen_grant::{Access, GrantOps};
use xen_ring::{FrontRing, PAGE_SIZE};
use xen_sys::{DomId, GrantRef, Port};

/// How a front is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontConfig {
    /// The ring order wanted; the back's `max-ring-page-order` caps it.
    pub ring_page_order: u32,
    /// Responses consumed per [`EchoFront::handle_event`] call at most.
    pub budget: u32,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            ring_page_order: MAX_RING_PAGE_ORDER,
            budget: 64,
        }
    }
}

/// A request to submit. Data ops carry the bytes to place at `offset` of a data page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoRequest<'a> {
    /// [`Op::Nop`].
    Nop,
    /// [`Op::Checksum`].
    Checksum {
        /// Where in the page.
        offset: u16,
        /// The bytes (1 to `4096 - offset`).
        data: &'a [u8],
    },
    /// [`Op::Complement`] (needs the back's `feature-complement`).
    Complement {
        /// Where in the pages.
        offset: u16,
        /// The bytes (1 to `4096 - offset`).
        data: &'a [u8],
    },
}

/// Why a request was not submitted (nothing was sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// Not connected, closing, or broken.
    NotConnected,
    /// Every request slot, or the ring, is full: handle responses first.
    Busy,
    /// The data does not fit the page, or is empty.
    BadRange,
    /// The back did not offer the op.
    Unsupported,
}

/// Names a submitted request: its slot and the slot's generation (xen-core's slot tag; its
/// [`id`](Ticket::id) is the wire id).
pub use xen_core::slots::Tag as Ticket;

/// A finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The request.
    pub ticket: Ticket,
    /// Its op.
    pub op: Op,
    /// The back's status.
    pub status: Status,
    /// For [`Status::Okay`]: the checksum matched what was sent and, for a complement, the
    /// response page holds the complement. Always `false` otherwise.
    pub verified: bool,
}

/// Counters of a front.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// Requests submitted.
    pub submitted: u64,
    /// Responses accepted.
    pub completed: u64,
    /// Completions whose data did not verify.
    pub mismatches: u64,
    /// Requests outstanding when a connection was torn down.
    pub aborted: u64,
    /// Responses refused (each broke the connection).
    pub bad_responses: u64,
    /// Events that found no response.
    pub spurious_events: u64,
    /// The peer wrote an invalid `state`.
    pub invalid_peer_state: u64,
    /// Connections established.
    pub connects: u64,
}

/// What the back offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Features {
    max_order: u32,
    complement: bool,
}

struct Pending {
    op: Op,
    offset: u16,
    len: u16,
    checksum: u32,
}

/// A request slot's pages and, while a request is outstanding in it (`ids` says which), what
/// the response is checked against.
struct Slot<Pg> {
    data: Option<(Pg, GrantRef)>,
    out: Option<(Pg, GrantRef)>,
    pending: Option<Pending>,
}

struct Conn<R: RingMemory> {
    ring: FrontRing<R::Front, RequestWire, ResponseWire>,
    grefs: [GrantRef; 16],
    pages: usize,
    port: Port,
    connected: bool,
}

/// The front end of one echo device.
///
/// Generic over the platform `P` (grants, event channels, ring memory, pages; the kernel
/// glue or the host simulator) and the number of request slots `N` (at most 65536, and at
/// most the ring size is used). Each slot owns a data page granted read-only and a response
/// page granted read-write for the life of a connection, so the hot path grants nothing.
///
/// The glue calls [`start`](Self::start) once, [`on_xenstore`](Self::on_xenstore) whenever
/// XenStore has news, [`handle_event`](Self::handle_event) when the device's event channel
/// fires (and again while it reports more work), and [`close`](Self::close) to unplug.
pub struct EchoFront<P: GrantOps + RingMemory, const N: usize> {
    env: P,
    config: FrontConfig,
    machine: Machine,
    dir: Dir,
    backend: Option<(Dir, DomId)>,
    watch: Option<WatchId>,
    features: Features,
    conn: Option<Conn<P>>,
    slots: [Slot<P::Page>; N],
    /// Which slots are free or outstanding, and their generations.
    ids: Slots<N>,
    quiesced: bool,
    broken: Option<ResponseFault>,
    /// Spurious events in a row (for storm diagnostics).
    spurious_run: u32,
    stats: FrontStats,
}

impl<P, const N: usize> EchoFront<P, N>
where
    P: GrantOps + EvtchnOps + RingMemory + PageAlloc<Page = <P as GrantOps>::Page>,
    <P as GrantOps>::Page: PageBytes,
{
    /// A front for the device whose directory is `dir` (`/local/domain/<fe>/device/echo/<id>`).
    pub fn new(env: P, dir: Dir, config: FrontConfig) -> Self {
        EchoFront {
            env,
            config,
            machine: Machine::new(Role::Frontend),
            dir,
            backend: None,
            watch: None,
            features: Features::default(),
            conn: None,
            slots: core::array::from_fn(|_| Slot {
                data: None,
                out: None,
                pending: None,
            }),
            ids: Slots::new(),
            quiesced: false,
            broken: None,
            spurious_run: 0,
            stats: FrontStats::default(),
        }
    }

    /// The platform.
    pub fn env(&self) -> &P {
        &self.env
    }

    /// Our XenBus state.
    pub fn state(&self) -> XenbusState {
        self.machine.state()
    }

    /// Whether requests may be submitted.
    pub fn is_connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.connected) && !self.quiesced && self.broken.is_none()
    }

    /// The response that broke the connection, if any.
    pub fn broken(&self) -> Option<ResponseFault> {
        self.broken
    }

    /// Counters.
    pub fn stats(&self) -> FrontStats {
        self.stats
    }

    /// Requests submitted and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.ids.outstanding()
    }

    /// The port of the current connection.
    pub fn port(&self) -> Option<Port> {
        self.conn.as_ref().map(|c| c.port)
    }

    /// The ring's pages (a test's hostile hands reach the shared memory through this).
    pub fn ring_memory(&self) -> Option<&P::Front> {
        self.conn.as_ref().map(|c| c.ring.memory())
    }

    /// Slots in use at most: `N`, capped by the ring size.
    fn capacity(&self) -> usize {
        let entries = self.conn.as_ref().map_or(0, |c| {
            usize::try_from(c.ring.entries()).unwrap_or(usize::MAX)
        });
        N.min(entries).min(usize::from(u16::MAX) + 1)
    }

    /// Reads the toolstack's keys, watches the back's state and begins the handshake.
    pub fn start<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        if self.backend.is_none() {
            let backend = store::require_dir(xs, Key::new(&self.dir, store::BACKEND))?;
            let id = store::require_domid(xs, Key::new(&self.dir, store::BACKEND_ID))?;
            let state = Key::new(&backend, store::STATE).path()?;
            self.watch = Some(xs.watch(state.as_path()?)?);
            self.backend = Some((backend, id));
        }
        let actions = self.machine.on_event(Event::Start);
        self.run(xs, actions)
    }

    /// Handles pending XenStore watch events: re-reads the back's state if it may have changed.
    pub fn on_xenstore<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        let (Some(watch), Some((backend, _))) = (self.watch, self.backend.as_ref()) else {
            return Err(Error::NotStarted);
        };
        let backend = backend.clone();
        let mut buf = [0u8; 128];
        let mut changed = false;
        // Bounded: the client's queue is bounded, and so is this loop.
        for _ in 0..64 {
            match xs.poll_watch(watch, &mut buf)? {
                Some(WatchEvent::Changed { .. } | WatchEvent::Overflow) => changed = true,
                None => break,
            }
        }
        if !changed {
            return Ok(());
        }
        let mut state = [0u8; 16];
        let value = store::read_state(xs, &backend, &mut state)?;
        let actions = self.machine.on_peer_state(value);
        self.run(xs, actions)
    }

    /// Starts closing (unplug): stops new requests and tears down once the back is closing.
    pub fn close<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        let actions = self.machine.on_event(Event::Close);
        self.run(xs, actions)
    }

    /// Gives up on the connection after an error (e.g. a bad response).
    pub fn fail<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        let actions = self.machine.on_event(Event::Failed);
        self.run(xs, actions)
    }

    /// Removes the watch (before dropping the engine). Tears down anything still set up.
    pub fn stop<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        self.disconnect();
        if let Some(w) = self.watch.take() {
            xs.unwatch(w)?;
        }
        self.backend = None;
        Ok(())
    }

    fn run<S: XenStore + ?Sized>(&mut self, xs: &mut S, actions: Actions) -> Result<(), Error> {
        match self.perform(xs, &actions) {
            Ok(()) => Ok(()),
            Err(e) => {
                // One retry path only: the failure transition's own actions (disconnect,
                // state writes) are performed best effort.
                let recovery = self.machine.on_event(Event::Failed);
                let _ = self.perform(xs, &recovery);
                Err(e)
            }
        }
    }

    fn perform<S: XenStore + ?Sized>(
        &mut self,
        xs: &mut S,
        actions: &Actions,
    ) -> Result<(), Error> {
        for action in actions {
            match *action {
                Action::ReadPeerFeatures => self.read_features(xs)?,
                Action::PublishRingRefs => self.publish(xs)?,
                Action::Connect => {
                    if let Some(conn) = self.conn.as_mut() {
                        conn.connected = true;
                        self.quiesced = false;
                        self.stats.connects = self.stats.connects.wrapping_add(1);
                    }
                }
                Action::Quiesce => self.quiesced = true,
                Action::Disconnect => self.disconnect(),
                Action::SwitchState(state) => store::write_state(xs, &self.dir, state)?,
                Action::ReportInvalidPeerState => {
                    self.stats.invalid_peer_state = self.stats.invalid_peer_state.wrapping_add(1)
                }
                // Nothing to read: the echo back publishes no device properties.
                Action::ReadDeviceProperties => {}
                // Back-end or vscsi actions; never emitted for a frontend.
                Action::PublishFeatures
                | Action::MapRing
                | Action::PublishDeviceProperties
                | Action::Reconfigure => {}
            }
        }
        Ok(())
    }

    fn backend(&self) -> Result<(Dir, DomId), Error> {
        self.backend.clone().ok_or(Error::NotStarted)
    }

    fn read_features<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        let (backend, _) = self.backend()?;
        let order = Key::new(&backend, store::MAX_RING_PAGE_ORDER);
        let order = store::read_u32(xs, TxId::NONE, order)?;
        let complement = Key::new(&backend, store::FEATURE_COMPLEMENT);
        let complement = store::read_u32(xs, TxId::NONE, complement)?;
        self.features = Features {
            // The back's word is a hint; our own limit is the law.
            max_order: order.unwrap_or(0).min(MAX_RING_PAGE_ORDER),
            complement: complement == Some(1),
        };
        Ok(())
    }

    /// Allocates, zeroes and grants the ring and the data pages, binds an event channel, and
    /// publishes them in one transaction.
    fn publish<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        self.disconnect();
        let (_, backend_id) = self.backend()?;
        let order = self.config.ring_page_order.min(self.features.max_order);
        let pages = 1usize << order;
        let mem = self.env.alloc_ring(pages).ok_or(Error::NoMemory)?;
        let ring = FrontRing::init(mem)?;
        let mut grefs = [GrantRef::new(0); 16];
        let mut granted = 0;
        let mut result = Ok(());
        for (i, slot) in grefs.iter_mut().enumerate().take(pages) {
            match self.env.grant_ring_page(backend_id, ring.memory(), i) {
                Ok(g) => {
                    *slot = g;
                    granted += 1;
                }
                Err(e) => {
                    result = Err(Error::Grant(e));
                    break;
                }
            }
        }
        let port = match result {
            Ok(()) => self.env.alloc_unbound(backend_id).map_err(Error::Evtchn),
            Err(e) => Err(e),
        };
        let port = match port {
            Ok(p) => p,
            Err(e) => {
                let granted = grefs.get(..granted).unwrap_or(&[]);
                platform::release_ring(&self.env, ring.into_memory(), granted);
                return Err(e);
            }
        };
        // INVARIANT for the slot table: every slot gets fresh pages and starts free.
        self.conn = Some(Conn {
            ring,
            grefs,
            pages,
            port,
            connected: false,
        });
        self.grant_slots(backend_id)?;
        let dir = self.dir.clone();
        let refs = grefs;
        with_transaction(xs, 8, |xs, tx| {
            if order == 0 {
                store::write_u32(xs, tx, Key::new(&dir, store::RING_REF), refs[0].raw())?;
            } else {
                store::write_u32(xs, tx, Key::new(&dir, store::RING_PAGE_ORDER), order)?;
                for (i, r) in refs.iter().enumerate().take(pages) {
                    let i = u32::try_from(i).unwrap_or(u32::MAX);
                    store::write_u32(xs, tx, Key::indexed(&dir, store::RING_REF, i), r.raw())?;
                }
            }
            store::write_u32(xs, tx, Key::new(&dir, store::EVENT_CHANNEL), port.raw())
        })?;
        Ok(())
    }

    /// Gives every slot a zeroed data page (read-only grant) and response page (read-write).
    fn grant_slots(&mut self, backend_id: DomId) -> Result<(), Error> {
        for i in 0..self.capacity() {
            let Some(slot) = self.slots.get_mut(i) else {
                break;
            };
            for (target, access) in [
                (&mut slot.data, Access::ReadOnly),
                (&mut slot.out, Access::ReadWrite),
            ] {
                let mut page = self.env.alloc_page().ok_or(Error::NoMemory)?;
                self.env.zero_page(&mut page);
                let gref = self
                    .env
                    .grant_access(backend_id, &page, access)
                    .map_err(Error::Grant)?;
                *target = Some((page, gref));
            }
            slot.pending = None;
            self.ids.open(i);
        }
        Ok(())
    }

    /// Tears the connection down: closes the port, revokes every grant (deferring the free of
    /// pages the back still maps) and forgets outstanding requests. Idempotent.
    fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = self.env.close(conn.port);
            let grefs = conn.grefs;
            let pages = conn.pages;
            let grefs = grefs.get(..pages).unwrap_or(&[]);
            platform::release_ring(&self.env, conn.ring.into_memory(), grefs);
        }
        let stats = &mut self.stats;
        self.ids
            .close(|_| stats.aborted = stats.aborted.wrapping_add(1));
        for slot in self.slots.iter_mut() {
            slot.pending = None;
            for (page, gref) in [slot.data.take(), slot.out.take()].into_iter().flatten() {
                let _ = platform::revoke(&self.env, gref, page);
            }
        }
        self.quiesced = false;
        self.broken = None;
        self.spurious_run = 0;
    }

    /// Places a request on the ring (published by the next [`push`](Self::push)).
    pub fn submit(&mut self, req: &EchoRequest<'_>) -> Result<Ticket, SubmitError> {
        if !self.is_connected() {
            return Err(SubmitError::NotConnected);
        }
        let (op, offset, data) = match *req {
            EchoRequest::Nop => (Op::Nop, 0u16, &[][..]),
            EchoRequest::Checksum { offset, data } => (Op::Checksum, offset, data),
            EchoRequest::Complement { offset, data } => (Op::Complement, offset, data),
        };
        if op == Op::Complement && !self.features.complement {
            return Err(SubmitError::Unsupported);
        }
        let len = u16::try_from(data.len()).map_err(|_| SubmitError::BadRange)?;
        let fits = usize::from(offset) + data.len() <= PAGE_SIZE;
        if (op != Op::Nop && len == 0) || !fits {
            return Err(SubmitError::BadRange);
        }
        let full = self.conn.as_ref().map_or(true, |c| c.ring.is_full());
        let ticket = match self.ids.next() {
            Some(ticket) if !full => ticket,
            _ => return Err(SubmitError::Busy),
        };
        let slot = self
            .slots
            .get_mut(usize::from(ticket.slot))
            .ok_or(SubmitError::Busy)?;
        let (Some((data_page, data_gref)), Some((out_page, out_gref))) = (&slot.data, &slot.out)
        else {
            return Err(SubmitError::NotConnected);
        };
        let mut wire = RequestWire {
            id: 0,
            gref: 0,
            rsp_gref: 0,
            offset: 0,
            len: 0,
            op: op.into(),
            pad: [0; 3],
        };
        if op != Op::Nop {
            if !data_page.write_bytes(usize::from(offset), data) {
                return Err(SubmitError::BadRange);
            }
            wire.gref = data_gref.raw();
            wire.offset = offset;
            wire.len = len;
        }
        if op == Op::Complement {
            // Clear the answer's range so a back that writes nothing cannot pass.
            let zeros = [0u8; CHUNK];
            let mut at = usize::from(offset);
            let end = at + data.len();
            while at < end {
                let n = (end - at).min(CHUNK);
                let _ = out_page.write_bytes(at, zeros.get(..n).unwrap_or(&[]));
                at += n;
            }
            wire.rsp_gref = out_gref.raw();
        }
        wire.id = ticket.id();
        let conn = self.conn.as_mut().ok_or(SubmitError::NotConnected)?;
        conn.ring
            .queue_request(&wire)
            .map_err(|_| SubmitError::Busy)?;
        slot.pending = Some(Pending {
            op,
            offset: wire.offset,
            len: wire.len,
            checksum: checksum(data),
        });
        let claimed = self.ids.claim();
        debug_assert_eq!(claimed, Some(ticket));
        self.stats.submitted = self.stats.submitted.wrapping_add(1);
        Ok(ticket)
    }

    /// Publishes queued requests, sending an event if the back asked for one.
    pub fn push(&mut self) -> Result<(), Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if conn.ring.push_requests()?.is_required() {
            self.env.notify(conn.port)?;
        }
        Ok(())
    }

    /// Handles the device's event: consumes at most `budget` responses, verifies each, and
    /// reports it to `complete`. A bad response breaks the connection and is returned as
    /// [`Error::BadResponse`]; the glue should then [`fail`](Self::fail).
    pub fn handle_event(
        &mut self,
        mut complete: impl FnMut(Completion),
    ) -> Result<Progress, Error> {
        if let Some(fault) = self.broken {
            return Err(Error::BadResponse(fault));
        }
        let budget = self.config.budget.max(1);
        let mut done = 0u32;
        let mut result = Ok(());
        if let Some(conn) = self.conn.as_mut() {
            let mut batch = conn.ring.responses(budget)?;
            for wire in batch.by_ref() {
                match Self::complete(&mut self.slots, &mut self.ids, &wire) {
                    Ok(c) => {
                        done += 1;
                        self.stats.completed = self.stats.completed.wrapping_add(1);
                        if !c.verified && c.status == Status::Okay {
                            self.stats.mismatches = self.stats.mismatches.wrapping_add(1);
                        }
                        complete(c);
                    }
                    Err(fault) => {
                        self.stats.bad_responses = self.stats.bad_responses.wrapping_add(1);
                        self.broken = Some(fault);
                        result = Err(Error::BadResponse(fault));
                        break;
                    }
                }
            }
        }
        result?;
        let more = match self.conn.as_mut() {
            Some(_) if done >= budget => true,
            Some(conn) => conn.ring.final_check_for_responses()?,
            None => false,
        };
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

    /// Validates one response against the slot table and verifies its data; on success the
    /// slot is free again.
    fn complete(
        slots: &mut [Slot<<P as GrantOps>::Page>; N],
        ids: &mut Slots<N>,
        wire: &ResponseWire,
    ) -> Result<Completion, ResponseFault> {
        let rsp = Response::parse(wire).map_err(ResponseFault::Malformed)?;
        let ticket = ids.lookup(rsp.id).map_err(|e| match e {
            IdError::OutOfRange => ResponseFault::UnknownId(rsp.id),
            IdError::NotOutstanding => ResponseFault::NotOutstanding(rsp.id),
        })?;
        let slot = slots
            .get_mut(usize::from(ticket.slot))
            .ok_or(ResponseFault::UnknownId(rsp.id))?;
        let Some(pending) = slot.pending.as_ref() else {
            return Err(ResponseFault::NotOutstanding(rsp.id));
        };
        if pending.op != rsp.op {
            return Err(ResponseFault::OpMismatch(rsp.id));
        }
        let verified = rsp.status == Status::Okay
            && match pending.op {
                Op::Nop => true,
                Op::Checksum => rsp.checksum == pending.checksum,
                Op::Complement => {
                    rsp.checksum == pending.checksum && Self::complemented(slot, pending)
                }
            };
        let op = pending.op;
        slot.pending = None;
        ids.release(ticket);
        Ok(Completion {
            ticket,
            op,
            status: rsp.status,
            verified,
        })
    }

    /// Whether the response page holds the complement of the data page over the request.
    fn complemented(slot: &Slot<<P as GrantOps>::Page>, pending: &Pending) -> bool {
        let (Some((data, _)), Some((out, _))) = (&slot.data, &slot.out) else {
            return false;
        };
        let mut a = [0u8; CHUNK];
        let mut b = [0u8; CHUNK];
        let mut at = usize::from(pending.offset);
        let end = at + usize::from(pending.len);
        while at < end {
            let n = (end - at).min(CHUNK);
            let (Some(a), Some(b)) = (a.get_mut(..n), b.get_mut(..n)) else {
                return false;
            };
            if !data.read_bytes(at, a) || !out.read_bytes(at, b) {
                return false;
            }
            if a.iter().zip(b.iter()).any(|(x, y)| *y != !*x) {
                return false;
            }
            at += n;
        }
        true
    }
}
