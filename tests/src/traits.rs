//! The traits of the protocol crates, implemented for a simulated [`Domain`].
//!
//! - xen-grant's [`GrantOps`]: pages are [`Pages`] (a page is granted by its first frame),
//!   mappings are [`Mapping`]s. Frees the granter could not do yet because the peer still
//!   maps the page wait in a bounded per-domain [`DeferredQueue`], retried on every later
//!   grant operation of that domain and by [`Domain::retry_deferred`].
//! - xen-evtchn's [`EvtchnOps`](xen_evtchn::EvtchnOps).
//! - xen-core's [`platform`](xen_core::platform) traits: [`PageBytes`] for [`Pages`] and
//!   [`Mapping`], [`PageAlloc`] and [`RingMemory`] for [`Domain`] (a ring whose grants the
//!   peer still maps waits in the same per-domain deferral list).
//! - xen-core's [`Hypercalls`] (memory reservation, for a balloon driver): each domain holds
//!   a number of pages under a ceiling ([`Domain::set_memory`]); frames
//!   given back are remembered so that giving one back twice stops the batch, as in Xen.
//! - xen-core's `XsTransport` is implemented by [`crate::XsConnection`] and
//!   [`crate::XsRing`] themselves.

use crate::gnttab::{self, Mapping};
use crate::mem::Pages;
use crate::Domain;
use std::collections::HashSet;
use xen_core::hypercall::{HypercallError, Hypercalls, Pfn};
use xen_core::platform::{PageAlloc, PageBytes, RingMemory};
use xen_grant::{
    Access, AccessError, BatchError, CopyOp, CopyPtr, DeferredQueue, EndAccess, GrantError,
    GrantOps, LendOps, MapRequest, MapResult, Retry, UnmapResult,
};
use xen_sys::{DomId, Gfn, GrantRef, Port};

/// Pages a domain may hold for deferred freeing before it leaks them.
pub const DEFERRED_MAX: usize = 64;

/// Per-domain state of the trait implementations.
#[derive(Default)]
pub(crate) struct GuestState {
    deferred: DeferredQueue<Pages, DEFERRED_MAX>,
    /// Rings with the grants still to revoke.
    rings: Vec<(Pages, Vec<GrantRef>)>,
    memory: Reservation,
    /// Receive buffers come back recycled ([`Domain::recycle_rx_pages`]).
    rx_recycle: Option<RxRecycle>,
}

/// How [`PageAlloc::alloc_rx_page`] hands out pages in a domain set up to recycle them.
#[derive(Clone, Copy, Debug)]
pub struct RxRecycle {
    /// Every byte of the page: what an earlier packet left in it.
    pub fill: u8,
    /// Whether the page is reported as needing no clearing (what a page pool says).
    pub clean: bool,
}

/// Default memory of a domain, in pages (256 MiB).
pub const DEFAULT_PAGES: u64 = 65536;

/// A domain's memory reservation.
pub(crate) struct Reservation {
    pub(crate) pages: u64,
    pub(crate) max: u64,
    /// Frames given back and not populated again.
    released: HashSet<u64>,
    /// The next frame `increase_reservation` hands out.
    next: u64,
}

impl Default for Reservation {
    fn default() -> Self {
        Reservation {
            pages: DEFAULT_PAGES,
            max: DEFAULT_PAGES,
            released: HashSet::new(),
            next: 1 << 32,
        }
    }
}

/// Converts a simulator grant error to the `GNTST_*` code a real hypervisor would return.
pub fn gntst(e: gnttab::GrantError) -> GrantError {
    use gnttab::GrantError as S;
    match e {
        S::BadRef => GrantError::BadGntref,
        S::BadDomain => GrantError::BadDomain,
        S::PermissionDenied | S::ReadOnly => GrantError::PermissionDenied,
        S::StillMapped | S::NotContiguous | S::Injected => GrantError::GeneralError,
        S::BadRange => GrantError::BadCopyArg,
        S::BadFrame => GrantError::BadPage,
        S::TableFull => GrantError::NoSpace,
    }
}

impl Domain {
    /// Retries the deferred frees of this domain's [`GrantOps`] and [`RingMemory`]
    /// implementations (pages and rings whose grants the peer still mapped).
    pub fn retry_deferred(&self) -> Retry {
        let mut guests = self.hv.guests.lock().unwrap();
        let state = guests.entry(self.id).or_default();
        for (_, grefs) in state.rings.iter_mut() {
            grefs.retain(|g| self.hv.gnttab.end_access(self.id, *g).is_err());
        }
        state.rings.retain(|(_, grefs)| !grefs.is_empty());
        state
            .deferred
            .retry(|gref| match self.hv.gnttab.end_access(self.id, gref) {
                Ok(()) | Err(gnttab::GrantError::BadRef) => EndAccess::Ended,
                Err(_) => EndAccess::StillMapped,
            })
    }

    /// From now on, [`PageAlloc::alloc_rx_page`] gives pages full of `r.fill` and says
    /// `r.clean` of them, as a platform that recycles receive buffers would (`None`: fresh
    /// zeroed pages to be cleared, the default).
    pub fn recycle_rx_pages(&self, r: Option<RxRecycle>) {
        let mut guests = self.hv.guests.lock().unwrap();
        guests.entry(self.id).or_default().rx_recycle = r;
    }

    /// Pages waiting for a deferred free.
    pub fn deferred_frees(&self) -> usize {
        let guests = self.hv.guests.lock().unwrap();
        guests
            .get(&self.id)
            .map_or(0, |s| s.deferred.len() + s.rings.len())
    }
}

impl LendOps for Domain {
    fn grant_frame(&self, domid: DomId, gfn: Gfn, access: Access) -> Result<GrantRef, AccessError> {
        self.retry_deferred();
        let readonly = access == Access::ReadOnly;
        match self
            .hv
            .gnttab
            .grant(&self.hv, self.id, domid, gfn, readonly)
        {
            Ok(gref) => Ok(gref),
            Err(gnttab::GrantError::TableFull) => Err(AccessError::NoFreeRefs),
            Err(_) => Err(AccessError::FrameTooLarge),
        }
    }
}

impl GrantOps for Domain {
    type Page = Pages;
    type Mapping = Mapping;

    fn zero_page(&self, page: &mut Pages) {
        for i in 0..page.pages() {
            if let Some(frame) = page.frame(i) {
                self.hv.gnttab.note_plain_write(self.id, frame);
            }
        }
        let zeros = vec![0u8; page.pages() * xen_ring::PAGE_SIZE];
        page.write(0, &zeros);
    }

    fn grant_access(
        &self,
        domid: DomId,
        page: &Pages,
        access: Access,
    ) -> Result<GrantRef, AccessError> {
        self.retry_deferred();
        let frame = page.frame(0).ok_or(AccessError::FrameTooLarge)?;
        let readonly = access == Access::ReadOnly;
        match self
            .hv
            .gnttab
            .grant(&self.hv, self.id, domid, frame, readonly)
        {
            Ok(gref) => Ok(gref),
            Err(gnttab::GrantError::TableFull) => Err(AccessError::NoFreeRefs),
            // Granting a page we do not own is a caller bug; a real kernel would have no
            // such page. Report it as a frame the table cannot hold.
            Err(_) => Err(AccessError::FrameTooLarge),
        }
    }

    fn end_access(&self, gref: GrantRef) -> EndAccess {
        match self.hv.gnttab.end_access(self.id, gref) {
            Ok(()) | Err(gnttab::GrantError::BadRef) => EndAccess::Ended,
            Err(_) => EndAccess::StillMapped,
        }
    }

    fn defer_free(&self, gref: GrantRef, page: Pages) {
        let mut guests = self.hv.guests.lock().unwrap();
        let state = guests.entry(self.id).or_default();
        let _ = state.deferred.push(gref, page);
    }

    fn map_batch(
        &self,
        requests: &[MapRequest],
        results: &mut [MapResult<Mapping>],
    ) -> Result<(), BatchError> {
        if requests.len() != results.len() {
            return Err(BatchError::LengthMismatch);
        }
        if results.iter().any(|r| !matches!(r, MapResult::Pending)) {
            return Err(BatchError::ResultNotPending);
        }
        let ops: Vec<gnttab::MapOp> = requests
            .iter()
            .map(|r| gnttab::MapOp {
                granter: r.domid,
                gref: r.gref,
                writable: r.access == Access::ReadWrite,
            })
            .collect();
        let (mapped, call_failed) = self.hv.gnttab.map_batch(&self.hv, self.id, &ops);
        for (slot, result) in results.iter_mut().zip(mapped) {
            *slot = match result {
                Ok(m) => MapResult::Mapped(m),
                Err(e) => MapResult::Failed(gntst(e)),
            };
        }
        if call_failed {
            return Err(BatchError::CallFailed);
        }
        Ok(())
    }

    fn unmap_batch(
        &self,
        mappings: &mut [Option<Mapping>],
        results: &mut [UnmapResult],
    ) -> Result<(), BatchError> {
        if mappings.len() != results.len() {
            return Err(BatchError::LengthMismatch);
        }
        for (slot, result) in mappings.iter_mut().zip(results.iter_mut()) {
            *result = match slot.take() {
                Some(m) => {
                    m.unmap();
                    UnmapResult::Unmapped
                }
                None => UnmapResult::Skipped,
            };
        }
        Ok(())
    }

    fn copy_batch(
        &self,
        ops: &[CopyOp<'_, Pages>],
        results: &mut [Result<(), GrantError>],
    ) -> Result<(), BatchError> {
        if ops.len() != results.len() {
            return Err(BatchError::LengthMismatch);
        }
        let convert = |ptr: &CopyPtr<'_, Pages>| -> Option<gnttab::CopyPtr> {
            Some(match ptr {
                CopyPtr::Foreign {
                    domid,
                    gref,
                    offset,
                } => gnttab::CopyPtr::Gref {
                    granter: *domid,
                    gref: *gref,
                    offset: *offset,
                },
                CopyPtr::Local { page, offset } => gnttab::CopyPtr::Local {
                    frame: page.frame(0)?,
                    offset: *offset,
                },
            })
        };
        for (op, result) in ops.iter().zip(results.iter_mut()) {
            *result = match (op.check(), convert(&op.source), convert(&op.dest)) {
                (Err(e), _, _) => Err(e),
                (Ok(()), Some(src), Some(dst)) => {
                    let one = gnttab::CopyOp {
                        src,
                        dst,
                        len: op.len,
                    };
                    self.hv.gnttab.copy(&self.hv, self.id, &[one])[0].map_err(gntst)
                }
                _ => Err(GrantError::BadPage),
            };
        }
        Ok(())
    }
}

/// Converts a simulator event-channel error to the errno-based one.
pub fn evtchn_error(e: crate::EvtchnError) -> xen_evtchn::EvtchnError {
    use crate::EvtchnError as S;
    match e {
        S::BadPort | S::BadState => xen_evtchn::EvtchnError::InvalidPort,
        S::BadDomain => xen_evtchn::EvtchnError::NoSuchDomain,
        S::NoFreePort => xen_evtchn::EvtchnError::NoFreePorts,
    }
}

impl xen_evtchn::EvtchnOps for Domain {
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, xen_evtchn::EvtchnError> {
        Domain::alloc_unbound(self, remote).map_err(evtchn_error)
    }

    fn bind_interdomain(
        &self,
        remote: DomId,
        remote_port: Port,
    ) -> Result<Port, xen_evtchn::EvtchnError> {
        Domain::bind_interdomain(self, remote, remote_port).map_err(evtchn_error)
    }

    fn notify(&self, port: Port) -> Result<(), xen_evtchn::EvtchnError> {
        Domain::notify(self, port).map_err(evtchn_error)
    }

    fn mask(&self, port: Port) -> Result<(), xen_evtchn::EvtchnError> {
        Domain::mask(self, port).map_err(evtchn_error)
    }

    fn unmask(&self, port: Port) -> Result<(), xen_evtchn::EvtchnError> {
        Domain::unmask(self, port).map_err(evtchn_error)
    }

    fn close(&self, port: Port) -> Result<(), xen_evtchn::EvtchnError> {
        Domain::close_port(self, port).map_err(evtchn_error)
    }
}

impl Domain {
    /// Sets the pages this domain holds and the most it may hold.
    pub fn set_memory(&self, pages: u64, max: u64) {
        let mut guests = self.hv.guests.lock().unwrap();
        let memory = &mut guests.entry(self.id).or_default().memory;
        memory.pages = pages;
        memory.max = max;
    }

    /// The pages this domain holds and the most it may hold.
    pub fn memory(&self) -> (u64, u64) {
        let guests = self.hv.guests.lock().unwrap();
        guests
            .get(&self.id)
            .map_or((DEFAULT_PAGES, DEFAULT_PAGES), |g| {
                (g.memory.pages, g.memory.max)
            })
    }

    fn with_memory<R>(&self, f: impl FnOnce(&mut Reservation) -> R) -> R {
        let mut guests = self.hv.guests.lock().unwrap();
        f(&mut guests.entry(self.id).or_default().memory)
    }
}

impl Hypercalls for Domain {
    fn decrease_reservation(&mut self, frames: &[Gfn]) -> Result<usize, HypercallError> {
        self.with_memory(|m| {
            let mut done = 0;
            for frame in frames {
                // Giving back a frame twice (or more pages than held) stops the batch.
                if m.pages == 0 || !m.released.insert(frame.raw()) {
                    break;
                }
                m.pages -= 1;
                done += 1;
            }
            Ok(done)
        })
    }

    fn populate_physmap(&mut self, frames: &[Pfn]) -> Result<usize, HypercallError> {
        self.with_memory(|m| {
            let mut done = 0;
            for frame in frames {
                if m.pages >= m.max {
                    break;
                }
                m.released.remove(&frame.raw());
                m.pages += 1;
                done += 1;
            }
            if done == 0 && !frames.is_empty() {
                return Err(HypercallError::Errno(12));
            }
            Ok(done)
        })
    }

    fn increase_reservation(&mut self, frames: &mut [Gfn]) -> Result<usize, HypercallError> {
        self.with_memory(|m| {
            let mut done = 0;
            for frame in frames.iter_mut() {
                if m.pages >= m.max {
                    break;
                }
                *frame = Gfn::new(m.next);
                m.next += 1;
                m.pages += 1;
                done += 1;
            }
            Ok(done)
        })
    }

    fn current_reservation(&mut self) -> Result<u64, HypercallError> {
        Ok(self.with_memory(|m| m.pages))
    }

    fn maximum_reservation(&mut self) -> Result<u64, HypercallError> {
        Ok(self.with_memory(|m| m.max))
    }
}

impl PageBytes for Pages {
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> bool {
        let fits = offset
            .checked_add(dst.len())
            .is_some_and(|end| end <= self.pages() * xen_ring::PAGE_SIZE);
        if fits {
            self.read(offset, dst);
        }
        fits
    }

    fn write_bytes(&self, offset: usize, src: &[u8]) -> bool {
        let fits = offset
            .checked_add(src.len())
            .is_some_and(|end| end <= self.pages() * xen_ring::PAGE_SIZE);
        if fits {
            self.write(offset, src);
        }
        fits
    }
}

impl PageBytes for Mapping {
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> bool {
        self.read(offset, dst)
    }

    fn write_bytes(&self, offset: usize, src: &[u8]) -> bool {
        self.write(offset, src)
    }
}

impl PageAlloc for Domain {
    type Page = Pages;

    fn alloc_page(&self) -> Option<Pages> {
        Some(self.alloc_pages(1))
    }

    fn alloc_rx_page(&mut self) -> Option<(Pages, bool)> {
        let r = {
            let guests = self.hv.guests.lock().unwrap();
            guests.get(&self.id).and_then(|s| s.rx_recycle)
        };
        let p = self.alloc_pages(1);
        match r {
            Some(r) => {
                p.write(0, &[r.fill; xen_ring::PAGE_SIZE]);
                Some((p, r.clean))
            }
            None => Some((p, false)),
        }
    }
}

impl RingMemory for Domain {
    type Front = Pages;
    type Back = Mapping;

    fn alloc_ring(&self, pages: usize) -> Option<Pages> {
        (1..=16).contains(&pages).then(|| self.alloc_pages(pages))
    }

    fn grant_ring_page(
        &self,
        domid: DomId,
        ring: &Pages,
        index: usize,
    ) -> Result<GrantRef, AccessError> {
        let frame = ring.frame(index).ok_or(AccessError::FrameTooLarge)?;
        self.hv
            .gnttab
            .grant(&self.hv, self.id, domid, frame, false)
            .map_err(|_| AccessError::NoFreeRefs)
    }

    fn end_ring_access(&self, gref: GrantRef) -> EndAccess {
        GrantOps::end_access(self, gref)
    }

    fn defer_free_ring(&self, ring: Pages, grefs: &[GrantRef]) {
        let mut guests = self.hv.guests.lock().unwrap();
        let state = guests.entry(self.id).or_default();
        state.rings.push((ring, grefs.to_vec()));
    }

    fn map_ring(&self, domid: DomId, grefs: &[GrantRef]) -> Result<Mapping, GrantError> {
        Domain::map_ring(self, domid, grefs).map_err(gntst)
    }
}
