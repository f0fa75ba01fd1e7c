//! The echo back end: maps the front's ring, validates and serves requests, answers each.

use crate::error::Error;
use crate::store::{self, Dir, Key};
use crate::wire::{
    Checksum, Extent, Request, RequestWire, ResponseWire, Status, MAX_RING_PAGE_ORDER,
};
use crate::{Progress, CHUNK};
use xen_core::platform::{PageBytes, RingMemory};
use xen_core::xenbus::{Action, Actions, Event, Machine, Role, XenbusState};
use xen_core::xs::{with_transaction, TxId, WatchEvent, WatchId, XenStore};
use xen_evtchn::EvtchnOps;
use xen_grant::{Access, GrantOps, MapRequest, MapResult, UnmapResult};
use xen_ring::BackRing;
use xen_sys::{DomId, GrantRef, Port};

/// How a back is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackConfig {
    /// The largest ring order offered (`max-ring-page-order`, at most 4).
    pub max_ring_page_order: u32,
    /// Whether [`Op::Complement`](crate::Op::Complement) is offered (`feature-complement`).
    pub complement: bool,
    /// Requests served per [`EchoBack::handle_event`] call at most.
    pub budget: u32,
}

impl Default for BackConfig {
    fn default() -> Self {
        BackConfig {
            max_ring_page_order: MAX_RING_PAGE_ORDER,
            complement: true,
            budget: 64,
        }
    }
}

/// Counters of a back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackStats {
    /// Requests answered.
    pub served: u64,
    /// Requests refused by validation (answered `Invalid` or `Unsupported`).
    pub invalid: u64,
    /// Requests answered `Error` because a grant did not map.
    pub map_failures: u64,
    /// Events that found no request.
    pub spurious_events: u64,
    /// The peer wrote an invalid `state`.
    pub invalid_peer_state: u64,
    /// Connections established.
    pub connects: u64,
}

struct Conn<R: RingMemory> {
    ring: BackRing<R::Back, RequestWire, ResponseWire>,
    port: Port,
    connected: bool,
}

/// The back end of one echo device.
///
/// The glue calls [`start`](Self::start) once (after the toolstack created the directory),
/// [`on_xenstore`](Self::on_xenstore) whenever XenStore has news,
/// [`handle_event`](Self::handle_event) when the device's event channel fires (and again
/// while it reports more work), and [`close`](Self::close) to unplug.
pub struct EchoBack<P: GrantOps + RingMemory> {
    env: P,
    config: BackConfig,
    machine: Machine,
    dir: Dir,
    frontend: Option<(Dir, DomId)>,
    watch: Option<WatchId>,
    conn: Option<Conn<P>>,
    /// Spurious events in a row (for storm diagnostics).
    spurious_run: u32,
    stats: BackStats,
}

impl<P> EchoBack<P>
where
    P: GrantOps + EvtchnOps + RingMemory,
    <P as GrantOps>::Mapping: PageBytes,
{
    /// A back for the device whose directory is `dir`
    /// (`/local/domain/<be>/backend/echo/<fe>/<id>`).
    pub fn new(env: P, dir: Dir, config: BackConfig) -> Self {
        let config = BackConfig {
            max_ring_page_order: config.max_ring_page_order.min(MAX_RING_PAGE_ORDER),
            ..config
        };
        EchoBack {
            env,
            config,
            machine: Machine::new(Role::Backend),
            dir,
            frontend: None,
            watch: None,
            conn: None,
            spurious_run: 0,
            stats: BackStats::default(),
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

    /// Whether the ring is mapped and being served.
    pub fn is_connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.connected)
    }

    /// Counters.
    pub fn stats(&self) -> BackStats {
        self.stats
    }

    /// The port of the current connection.
    pub fn port(&self) -> Option<Port> {
        self.conn.as_ref().map(|c| c.port)
    }

    /// Spurious events in a row (for storm diagnostics).
    pub fn consecutive_spurious(&self) -> u32 {
        self.spurious_run
    }

    /// Reads the toolstack's keys, watches the front's state and publishes our features.
    pub fn start<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        if self.frontend.is_none() {
            let frontend = store::require_dir(xs, Key::new(&self.dir, store::FRONTEND))?;
            let id = store::require_domid(xs, Key::new(&self.dir, store::FRONTEND_ID))?;
            let state = Key::new(&frontend, store::STATE).path()?;
            self.watch = Some(xs.watch(state.as_path()?)?);
            self.frontend = Some((frontend, id));
        }
        let actions = self.machine.on_event(Event::Start);
        self.run(xs, actions)
    }

    /// Handles pending XenStore watch events: re-reads the front's state if it may have
    /// changed.
    pub fn on_xenstore<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        let (Some(watch), Some((frontend, _))) = (self.watch, self.frontend.as_ref()) else {
            return Err(Error::NotStarted);
        };
        let frontend = frontend.clone();
        let mut buf = [0u8; 128];
        let mut changed = false;
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
        let value = store::read_state(xs, &frontend, &mut state)?;
        let actions = self.machine.on_peer_state(value);
        self.run(xs, actions)
    }

    /// Starts closing (unplug): unmaps at once and announces Closing.
    pub fn close<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        let actions = self.machine.on_event(Event::Close);
        self.run(xs, actions)
    }

    /// Gives up on the connection after an error (e.g. a broken ring).
    pub fn fail<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        let actions = self.machine.on_event(Event::Failed);
        self.run(xs, actions)
    }

    /// Removes the watch (before dropping the engine) and unmaps anything still mapped.
    pub fn stop<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        self.disconnect();
        if let Some(w) = self.watch.take() {
            xs.unwatch(w)?;
        }
        self.frontend = None;
        Ok(())
    }

    fn run<S: XenStore + ?Sized>(&mut self, xs: &mut S, actions: Actions) -> Result<(), Error> {
        match self.perform(xs, &actions) {
            Ok(()) => Ok(()),
            Err(e) => {
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
                Action::PublishFeatures => self.publish_features(xs)?,
                Action::MapRing => self.map_ring(xs)?,
                Action::Connect => {
                    if let Some(conn) = self.conn.as_mut() {
                        conn.connected = true;
                        self.stats.connects = self.stats.connects.wrapping_add(1);
                        // Requests may have been queued before we bound the port.
                        let _ = self.env.notify(conn.port);
                    }
                }
                Action::Disconnect => self.disconnect(),
                Action::SwitchState(state) => store::write_state(xs, &self.dir, state)?,
                Action::ReportInvalidPeerState => {
                    self.stats.invalid_peer_state = self.stats.invalid_peer_state.wrapping_add(1)
                }
                // The echo back has no device properties to publish.
                Action::PublishDeviceProperties => {}
                Action::Reconfigure
                | Action::ReadPeerFeatures
                | Action::PublishRingRefs
                | Action::ReadDeviceProperties
                | Action::Quiesce => {}
            }
        }
        Ok(())
    }

    fn publish_features<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        let dir = &self.dir;
        let (max, offer) = (
            self.config.max_ring_page_order,
            u32::from(self.config.complement),
        );
        with_transaction(xs, 8, |xs, tx| {
            store::write_u32(xs, tx, Key::new(dir, store::MAX_RING_PAGE_ORDER), max)?;
            store::write_u32(xs, tx, Key::new(dir, store::FEATURE_COMPLEMENT), offer)
        })?;
        Ok(())
    }

    /// Reads and checks the front's ring references and event channel, maps the ring and
    /// binds the channel.
    fn map_ring<S: XenStore + ?Sized>(&mut self, xs: &mut S) -> Result<(), Error> {
        self.disconnect();
        let (frontend, id) = self.frontend.clone().ok_or(Error::NotStarted)?;
        let order_key = Key::new(&frontend, store::RING_PAGE_ORDER);
        let order = store::read_u32(xs, TxId::NONE, order_key)?.unwrap_or(0);
        if order > self.config.max_ring_page_order {
            return Err(Error::BadValue(order_key.name()));
        }
        let pages = 1usize << order;
        let mut grefs = [GrantRef::new(0); 16];
        for (i, slot) in grefs.iter_mut().enumerate().take(pages) {
            let k = if order == 0 {
                Key::new(&frontend, store::RING_REF)
            } else {
                let i = u32::try_from(i).unwrap_or(u32::MAX);
                Key::indexed(&frontend, store::RING_REF, i)
            };
            let gref = GrantRef::new(store::require_u32(xs, TxId::NONE, k)?);
            if gref.is_reserved() {
                return Err(Error::BadValue(k.name()));
            }
            *slot = gref;
        }
        let port_key = Key::new(&frontend, store::EVENT_CHANNEL);
        let remote_port = Port::new(store::require_u32(xs, TxId::NONE, port_key)?);
        if !remote_port.is_valid() {
            return Err(Error::BadValue(port_key.name()));
        }
        let mem = self
            .env
            .map_ring(id, grefs.get(..pages).unwrap_or(&[]))
            .map_err(Error::Map)?;
        let ring = BackRing::attach(mem)?;
        let port = self.env.bind_interdomain(id, remote_port)?;
        self.conn = Some(Conn {
            ring,
            port,
            connected: false,
        });
        Ok(())
    }

    /// Unbinds and unmaps. Idempotent.
    fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = self.env.close(conn.port);
            drop(conn.ring.into_memory());
        }
        self.spurious_run = 0;
    }

    /// Handles the device's event: serves at most `budget` requests, publishes the
    /// responses, and says whether more are waiting and when to re-enable the port.
    ///
    /// A broken ring (the front published an impossible index) is returned as
    /// [`Error::Ring`]; the glue should then [`fail`](Self::fail).
    pub fn handle_event(&mut self) -> Result<Progress, Error> {
        let budget = self.config.budget.max(1);
        let complement = self.config.complement;
        let mut done = 0u32;
        let Some(conn) = self.conn.as_mut().filter(|c| c.connected) else {
            self.stats.spurious_events = self.stats.spurious_events.wrapping_add(1);
            self.spurious_run = self.spurious_run.saturating_add(1);
            return Ok(Progress {
                done,
                more: false,
                spurious: true,
            });
        };
        let id = self.frontend.as_ref().map_or(DomId::INVALID, |(_, id)| *id);
        let mut batch = conn.ring.requests(budget)?;
        while let Some(wire) = batch.next() {
            let rsp = serve(&self.env, id, &wire, complement, &mut self.stats);
            batch.queue_response(&rsp)?;
            done += 1;
        }
        if conn.ring.push_responses()?.is_required() {
            self.env.notify(conn.port)?;
        }
        let more = if done >= budget {
            true
        } else {
            conn.ring.final_check_for_requests()?
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
}

/// Answers one request copied out of the ring: validate, then map, compute, unmap.
fn serve<P>(
    env: &P,
    front: DomId,
    wire: &RequestWire,
    complement: bool,
    stats: &mut BackStats,
) -> ResponseWire
where
    P: GrantOps,
    P::Mapping: PageBytes,
{
    stats.served = stats.served.wrapping_add(1);
    let answer = |status: Status, checksum: u32| ResponseWire {
        id: wire.id,
        checksum,
        status: status.into(),
        op: wire.op,
        pad: 0,
    };
    let req = match Request::parse(wire, complement) {
        Ok(req) => req,
        Err(invalid) => {
            stats.invalid = stats.invalid.wrapping_add(1);
            return answer(invalid.status(), 0);
        }
    };
    let (data, out) = match req {
        Request::Nop => return answer(Status::Okay, 0),
        Request::Checksum { data } => (data, None),
        Request::Complement { data, out } => (data, Some(out)),
    };
    match transform(env, front, data, out) {
        Some(sum) => answer(Status::Okay, sum),
        None => {
            stats.map_failures = stats.map_failures.wrapping_add(1);
            answer(Status::Error, 0)
        }
    }
}

/// Maps the data page (read-only) and, for a complement, the output page (read-write) in one
/// batch; computes the checksum and writes the complement; unmaps. `None` if any slot failed.
fn transform<P>(env: &P, front: DomId, data: Extent, out: Option<GrantRef>) -> Option<u32>
where
    P: GrantOps,
    P::Mapping: PageBytes,
{
    let requests = [
        MapRequest {
            domid: front,
            gref: data.gref(),
            access: Access::ReadOnly,
        },
        MapRequest {
            domid: front,
            gref: out.unwrap_or(GrantRef::new(0)),
            access: Access::ReadWrite,
        },
    ];
    let count = if out.is_some() { 2 } else { 1 };
    let mut results = [MapResult::Pending, MapResult::Pending];
    let batch = (requests.get(..count), results.get_mut(..count));
    let (Some(requests), Some(results)) = batch else {
        return None;
    };
    // A call that failed as a whole may still have mapped slots: they are unmapped below.
    let mut all = env.map_batch(requests, results).is_ok();
    let mut mapped: [Option<P::Mapping>; 2] = [None, None];
    for (slot, result) in mapped.iter_mut().zip(results.iter_mut()) {
        match core::mem::replace(result, MapResult::Pending) {
            MapResult::Mapped(m) => *slot = Some(m),
            _ => all = false,
        }
    }
    let sum = if all { compute(&mapped, data) } else { None };
    let mut unmapped = [UnmapResult::Skipped; 2];
    let _ = env.unmap_batch(&mut mapped, &mut unmapped);
    sum
}

fn compute<M: PageBytes>(mapped: &[Option<M>; 2], data: Extent) -> Option<u32> {
    let [Some(src), out] = mapped else {
        return None;
    };
    let mut sum = Checksum::new();
    let mut buf = [0u8; CHUNK];
    let mut at = data.offset();
    let end = at + data.len();
    while at < end {
        let n = (end - at).min(CHUNK);
        let chunk = buf.get_mut(..n)?;
        // One copy out of the page per byte; the front may rewrite its page meanwhile, but
        // only this copy is used.
        if !src.read_bytes(at, chunk) {
            return None;
        }
        sum.update(chunk);
        if let Some(out) = out {
            for b in chunk.iter_mut() {
                *b = !*b;
            }
            if !out.write_bytes(at, chunk) {
                return None;
            }
        }
        at += n;
    }
    Some(sum.finish())
}
