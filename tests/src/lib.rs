//! A host simulator of Xen: domains, grant tables, event channels and an in-memory xenstored.
//!
//! Protocol engines (rings, XenStore clients, XenBus state machines, the front and back ends
//! of drivers) are written against small traits so that the kernel glue and this simulator
//! can both run them unchanged. The simulator is one process playing every part:
//!
//! - [`Sim`] is the machine: it creates [`Domain`]s and owns the shared state below, behind
//!   mutexes, so each domain's code can run on its own thread.
//! - Memory ([`mem`]): a domain allocates [`Pages`] (zeroed, page-aligned, with frame
//!   numbers); they implement xen-ring's [`SharedMemory`](xen_ring::SharedMemory).
//! - Grant tables ([`gnttab`]): access is enforced (only the named domain may map or copy, a
//!   read-only grant is never mapped writable, a mapped grant cannot be revoked), batches
//!   report per-slot results, and live grants and mappings are counted so tests can assert
//!   that nothing leaked ([`Sim::grant_stats`]).
//! - Event channels ([`evtchn`]): interdomain ports with pending bits and masks; a send wakes
//!   the threads of the receiving domain that wait on that port ([`Domain::wait`]).
//! - XenStore ([`xenstored`]): an in-memory daemon speaking the real wire protocol (xen-core's
//!   codec) with per-domain permissions, optimistic transactions that fail with `EAGAIN` on
//!   conflict, and bounded watch queues; reached in-process ([`XsConnection`]) or over a real
//!   `xs_wire` ring page and event channel ([`XsRing`]).
//! - The traits of the other crates, implemented for a domain ([`traits`]): xen-grant's
//!   `GrantOps`, xen-evtchn's `EvtchnOps`, xen-core's `Hypercalls` and its `platform`
//!   traits for [`Domain`]; xen-ring's `SharedMemory` for [`Pages`] and [`Mapping`];
//!   xen-core's `XsTransport` for both XenStore connections (so `xen_core::xs::Client`
//!   provides `XenStore`), the ring one being xen-core's own `RingTransport`.
//! - [`toolstack`] writes a device's XenStore nodes as `xl` does. The glue that runs the echo
//!   example's engines on domain threads, as a driver's would, is the echo tests' own
//!   (`tests/echo_harness`): the simulator depends on no driver.
//!
//! # Fault injection
//!
//! | fault | how |
//! |---|---|
//! | a grant map fails on one slot | [`Sim::fail_map`] |
//! | an event flood on a port | [`Sim::inject_events`] |
//! | an `EAGAIN` storm on commits | [`Sim::inject_eagain`] |
//! | xenstored never answers | [`Sim::stall_xenstored`] |
//! | a peer rewrites ring slots after publishing | [`Pages::host`] / [`Mapping::write`], any time |
//! | a peer that never answers | just don't run its thread |
//!
//! # Limitations
//!
//! Frames of a multi-page mapping must be consecutive pages of one allocation (the simulator
//! cannot remap host memory); a front end's multi-page ring always is.

pub mod evtchn;
pub mod gnttab;
pub mod mem;
pub mod toolstack;
pub mod traits;
pub mod xenstored;

pub use evtchn::{EvtchnError, PortStats};
pub use gnttab::{CopyOp, CopyPtr, GrantError, GrantStats, MapOp, Mapping};
pub use mem::Pages;
pub use xenstored::{XsConnection, XsRing, XsStats};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xen_core::xs::{Errno, Perm};
use xen_sys::{DomId, Gfn, GrantRef, Port};

/// The shared state of a simulated machine.
pub(crate) struct Hypervisor {
    pub(crate) frames: mem::FrameTable,
    pub(crate) gnttab: gnttab::GrantTables,
    pub(crate) evtchn: Arc<evtchn::EventChannels>,
    pub(crate) xenstored: Arc<xenstored::Xenstored>,
    /// Per-domain state of the trait implementations (deferred frees).
    pub(crate) guests: Mutex<HashMap<DomId, traits::GuestState>>,
}

/// A simulated machine: dom0 plus the domains a test creates.
#[derive(Clone)]
pub struct Sim {
    hv: Arc<Hypervisor>,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    /// A machine with dom0 running and introduced to xenstored.
    pub fn new() -> Sim {
        let evtchn = Arc::new(evtchn::EventChannels::default());
        let hv = Arc::new(Hypervisor {
            frames: mem::FrameTable::default(),
            gnttab: gnttab::GrantTables::default(),
            xenstored: Arc::new(xenstored::Xenstored::new(evtchn.clone())),
            evtchn,
            guests: Mutex::new(HashMap::new()),
        });
        let sim = Sim { hv };
        sim.create_domain(0);
        sim
    }

    /// Creates domain `id` (event channels, grant table) and introduces it to xenstored,
    /// which gives it a home `/local/domain/<id>` it owns. Idempotent.
    pub fn create_domain(&self, id: u16) -> Domain {
        let dom = DomId::new(id);
        self.hv.evtchn.add_domain(dom);
        self.hv.xenstored.introduce(dom);
        self.domain(id)
    }

    /// A handle on domain `id` (which should have been created).
    pub fn domain(&self, id: u16) -> Domain {
        Domain {
            hv: self.hv.clone(),
            id: DomId::new(id),
        }
    }

    /// Grant-table counters of the whole machine.
    pub fn grant_stats(&self) -> GrantStats {
        self.hv.gnttab.stats()
    }

    /// Live grants in `dom`'s table.
    pub fn live_grants(&self, dom: DomId) -> u64 {
        self.hv.gnttab.live_grants_of(dom)
    }

    /// Makes the next `times` maps of `granter`'s reference `gref` fail with
    /// [`GrantError::Injected`].
    pub fn fail_map(&self, granter: DomId, gref: GrantRef, times: u32) {
        self.hv.gnttab.fail_map(granter, gref, times);
    }

    /// Makes the next map call (of any domain) fail as a whole after its first `after` slots
    /// mapped, as Linux's `gnttab_map_refs` does when recording a frame runs out of memory:
    /// the call returns [`BatchError::CallFailed`](xen_grant::BatchError::CallFailed), the
    /// first `after` slots are mapped all the same and the rest fail.
    pub fn fail_next_map_call(&self, after: usize) {
        self.hv.gnttab.fail_next_map_call(after);
    }

    /// Raises `port` of `dom` `count` times, as a flooding peer would.
    pub fn inject_events(&self, dom: DomId, port: Port, count: u64) -> Result<(), EvtchnError> {
        self.hv.evtchn.inject(dom, port, count)
    }

    /// Counters of `dom`'s `port`.
    pub fn port_stats(&self, dom: DomId, port: Port) -> Option<PortStats> {
        self.hv.evtchn.stats(dom, port)
    }

    /// xenstored's counters.
    pub fn xenstored_stats(&self) -> XsStats {
        self.hv.xenstored.stats()
    }

    /// Makes the next `commits` transaction commits fail with `EAGAIN`.
    pub fn inject_eagain(&self, commits: u32) {
        self.hv.xenstored.inject_eagain(commits);
    }

    /// While `stalled`, xenstored swallows requests without answering.
    pub fn stall_xenstored(&self, stalled: bool) {
        self.hv.xenstored.stall(stalled);
    }

    /// Reads a node directly, bypassing permissions (a debugger's view).
    pub fn xs_read(&self, path: &str) -> Option<Vec<u8>> {
        self.hv.xenstored.read(path)
    }

    /// Writes a node as `dom` would (with its permissions, unless dom0), firing watches.
    pub fn xs_write_as(&self, dom: DomId, path: &str, value: &[u8]) -> Result<(), Errno> {
        self.hv.xenstored.write_as(dom, path, value)
    }

    /// Writes a node as dom0.
    pub fn xs_write(&self, path: &str, value: &[u8]) -> Result<(), Errno> {
        self.xs_write_as(DomId::DOM0, path, value)
    }

    /// Sets a node's permissions as dom0.
    pub fn xs_set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), Errno> {
        self.hv.xenstored.set_perms(path, perms)
    }

    /// Removes a node and its subtree as dom0.
    pub fn xs_rm(&self, path: &str) -> Result<(), Errno> {
        self.hv.xenstored.rm(path)
    }

    /// Nodes in the store.
    pub fn xs_node_count(&self) -> usize {
        self.hv.xenstored.node_count()
    }
}

/// A simulated domain: the hypercalls it can make.
#[derive(Clone)]
pub struct Domain {
    pub(crate) hv: Arc<Hypervisor>,
    pub(crate) id: DomId,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Domain").field(&self.id).finish()
    }
}

impl Domain {
    /// The domain's id.
    pub fn id(&self) -> DomId {
        self.id
    }

    /// Allocates `pages` zeroed, contiguous pages.
    ///
    /// # Panics
    ///
    /// If `pages` is 0.
    pub fn alloc_pages(&self, pages: usize) -> Pages {
        let extent = self.hv.frames.allocate(&self.hv, self.id, pages);
        Pages {
            extent,
            hv: Arc::downgrade(&self.hv),
        }
    }

    /// Grants `to` access to `frame` (which this domain must own).
    pub fn grant_access(
        &self,
        to: DomId,
        frame: Gfn,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        self.hv.gnttab.grant(&self.hv, self.id, to, frame, readonly)
    }

    /// Revokes a grant; fails with [`GrantError::StillMapped`] while the peer maps it.
    pub fn end_access(&self, gref: GrantRef) -> Result<(), GrantError> {
        self.hv.gnttab.end_access(self.id, gref)
    }

    /// Whether a grant of this domain is mapped by its peer right now.
    pub fn is_mapped(&self, gref: GrantRef) -> bool {
        self.hv.gnttab.is_mapped(self.id, gref)
    }

    /// Maps each slot (one page each); one slot's failure leaves the others mapped.
    pub fn map_grants(&self, ops: &[MapOp]) -> Vec<Result<Mapping, GrantError>> {
        self.hv.gnttab.map_batch(&self.hv, self.id, ops).0
    }

    /// Maps a multi-page ring granted by `granter` as one writable region, all or nothing.
    pub fn map_ring(&self, granter: DomId, grefs: &[GrantRef]) -> Result<Mapping, GrantError> {
        self.hv.gnttab.map_ring(&self.hv, self.id, granter, grefs)
    }

    /// Performs each copy; one slot's failure leaves the others done.
    pub fn copy(&self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        self.hv.gnttab.copy(&self.hv, self.id, ops)
    }

    /// Allocates a port that `remote` may bind to.
    pub fn alloc_unbound(&self, remote: DomId) -> Result<Port, EvtchnError> {
        self.hv.evtchn.alloc_unbound(self.id, remote)
    }

    /// Binds a local port to `remote`'s unbound port reserved for us.
    pub fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, EvtchnError> {
        self.hv
            .evtchn
            .bind_interdomain(self.id, remote, remote_port)
    }

    /// Sends an event on a bound port.
    pub fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        self.hv.evtchn.notify(self.id, port)
    }

    /// Closes a port; a bound peer's end reverts to unbound.
    pub fn close_port(&self, port: Port) -> Result<(), EvtchnError> {
        self.hv.evtchn.close(self.id, port)
    }

    /// Masks a port: events stay pending but wake nobody.
    pub fn mask(&self, port: Port) -> Result<(), EvtchnError> {
        self.hv.evtchn.set_mask(self.id, port, true)
    }

    /// Unmasks a port, waking waiters if an event is pending.
    pub fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        self.hv.evtchn.set_mask(self.id, port, false)
    }

    /// Takes a port's pending bit without waiting.
    pub fn take_pending(&self, port: Port) -> Result<bool, EvtchnError> {
        self.hv.evtchn.take_pending(self.id, port)
    }

    /// Waits up to `timeout` for one of `ports` to be pending (and unmasked); takes its
    /// pending bit and returns it.
    pub fn wait(&self, ports: &[Port], timeout: Duration) -> Option<Port> {
        self.hv.evtchn.wait(self.id, ports, timeout)
    }

    /// The remote end of a bound port.
    pub fn remote(&self, port: Port) -> Option<(DomId, Port)> {
        self.hv.evtchn.remote(self.id, port)
    }

    /// Ports allocated in this domain.
    pub fn live_ports(&self) -> usize {
        self.hv.evtchn.live_ports(self.id)
    }

    /// A new in-process XenStore connection.
    pub fn xenstore(&self) -> XsConnection {
        XsConnection::open(&self.hv, self.id)
    }

    /// A new XenStore connection over a real `xs_wire` ring page and event channel.
    pub fn xenstore_ring(&self) -> XsRing {
        XsRing::open(&self.hv, self.id)
    }
}
