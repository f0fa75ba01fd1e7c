// SPDX-License-Identifier: GPL-2.0

//! The device platform in the kernel: this crate's grants, event channel and ring pages behind the traits every engine is generic over.
//!
//! [`Env`] implements xen-grant's `GrantOps`, xen-evtchn's `EvtchnOps` and xen-core's
//! [`platform`](xen_core::platform) traits (`PageAlloc`, `RingMemory`) for one device; [`Page`]
//! and [`Mapped`] implement `PageBytes`. Every driver module hands its engine an [`Env`]: the
//! echo example's front and back, blkfront, blkback and netfront (with its second event
//! channel and pages allocated without sleeping).
//!
//! Only delegation lives here: the grant, event-channel and ring work is done by
//! [`crate::grant`], [`crate::evtchn`] and [`crate::ring`]. [`Page`] and [`Mapped`], the page
//! types the engines see, wrap [`LocalPage`] (or a page pool's [`PoolPage`]) and [`Mapping`].

use xen_core::platform::{PageAlloc, PageBytes, RingMemory};
use xen_evtchn::{EvtchnError, EvtchnOps};
use xen_grant::{
    Access, AccessError, BatchError, CopyOp, EndAccess, GrantError, GrantOps, LendOps, MapRequest,
    MapResult, UnmapResult,
};
use crate::bus::DeviceHandle;
use crate::evtchn::Channel;
use crate::grant::{copy_in, copy_out, frame_of, Grants, LocalPage, Mapping, RefPool, PAGE_SIZE};
use core::ptr::NonNull;
use linux::net::{PagePool, PoolPage};
use linux::page::{GivePage, KernelPage};
use crate::ring::{BackRingPages, FrontRingPages};
use crate::Kick;
use xen_sys::{DomId, Gfn, GrantRef, Port};

/// A page of ours the front grants: from the page allocator, or from a receive queue's page
/// pool ([`Env::rx_pool`]), which gets it back when the skb it goes up in is freed.
pub enum Page {
    /// From the page allocator.
    Local(LocalPage),
    /// From a page pool.
    Pool(PoolPage),
}

impl Page {
    fn addr(&self) -> NonNull<u8> {
        match self {
            Page::Local(p) => KernelPage::kernel_addr(p),
            Page::Pool(p) => KernelPage::kernel_addr(p),
        }
    }
}

// SAFETY: both kinds are a whole page of the direct map that `self` owns until dropped.
unsafe impl KernelPage for Page {
    fn kernel_addr(&self) -> NonNull<u8> {
        self.addr()
    }
}

// SAFETY: both kinds are order-0 direct-map pages with a reference `self` owns, given away
// (not freed) by `give_up`; a pool page says so, so its skb returns it to its pool.
unsafe impl GivePage for Page {
    fn kernel_addr(&self) -> NonNull<u8> {
        self.addr()
    }

    fn give_up(self) {
        match self {
            Page::Local(p) => p.give_up(),
            Page::Pool(p) => p.give_up(),
        }
    }

    fn from_pool(&self) -> bool {
        matches!(self, Page::Pool(_))
    }
}

/// A front's page mapped by the back.
pub struct Mapped(Mapping);

impl Mapped {
    /// The page the foreign frame is mapped at (for a bio), valid while `self` exists.
    pub fn page(&self) -> linux::page::PagePtr {
        self.0.page()
    }
}

impl PageBytes for Page {
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> bool {
        // SAFETY: a page of the direct map we own, readable while `self` is borrowed.
        unsafe { copy_out(self.addr().as_ptr(), offset, dst) }
    }
    fn write_bytes(&self, offset: usize, src: &[u8]) -> bool {
        // SAFETY: as above, and writable.
        unsafe { copy_in(self.addr().as_ptr(), offset, src) }
    }
}

impl PageBytes for Mapped {
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> bool {
        self.0.read_bytes(offset, dst)
    }
    fn write_bytes(&self, offset: usize, src: &[u8]) -> bool {
        self.0.write_bytes(offset, src)
    }
}

/// Everything an engine needs from the kernel, for one device whose kicks go to `K`.
pub struct Env<K: Kick> {
    /// The device (for rings and event channels).
    pub dev: DeviceHandle,
    /// Grant operations.
    pub grants: Grants,
    /// The device's event channel (with split channels, the first: netif's TX channel).
    pub chan: Channel<K>,
    /// A second event channel, for protocols that split them (netif's RX channel); the
    /// event-channel operations go to whichever channel holds the port.
    pub rx_chan: Option<Channel<K>>,
    /// Pages are allocated without sleeping (an engine that allocates from `start_xmit` or a
    /// NAPI poll); otherwise with `GFP_KERNEL`.
    pub atomic_pages: bool,
    /// Where receive buffers come from ([`PageAlloc::alloc_rx_page`]): a page pool that the
    /// stack returns them to (netfront), or `None` for the page allocator.
    pub rx_pool: Option<PagePool>,
    /// A private pool of grant references for the engine's grants (netfront, which grants
    /// and ends pages per packet), or `None` for the global allocator.
    pub refs: Option<RefPool>,
}

impl<K: Kick> Env<K> {
    /// `op` on whichever channel holds `port`.
    fn on_port(
        &self,
        port: Port,
        op: impl Fn(&Channel<K>, Port) -> Result<(), EvtchnError>,
    ) -> Result<(), EvtchnError> {
        match (op(&self.chan, port), self.rx_chan.as_ref()) {
            (Err(EvtchnError::InvalidPort), Some(rx)) => op(rx, port),
            (r, _) => r,
        }
    }
}

impl<K: Kick> LendOps for Env<K> {
    fn grant_frame(&self, domid: DomId, gfn: Gfn, access: Access) -> Result<GrantRef, AccessError> {
        match self.refs.as_ref() {
            Some(refs) => {
                let frame = usize::try_from(gfn.raw()).map_err(|_| AccessError::FrameTooLarge)?;
                // SAFETY: the caller lends the frame under `LendOps`' contract (kept until
                // `end_access` says ended, leaked otherwise).
                unsafe { refs.grant(domid, frame, access) }
            }
            None => self.grants.grant_frame(domid, gfn, access),
        }
    }
}

impl<K: Kick> GrantOps for Env<K> {
    type Page = Page;
    type Mapping = Mapped;

    fn zero_page(&self, page: &mut Page) {
        // SAFETY: we own the page, and the contract of `zero_page` is that no peer can see it
        // (never granted, or every grant ended): plain stores race with no one.
        unsafe { core::ptr::write_bytes(page.addr().as_ptr(), 0, PAGE_SIZE) };
    }

    fn grant_access(
        &self,
        domid: DomId,
        page: &Page,
        access: Access,
    ) -> Result<GrantRef, AccessError> {
        match self.refs.as_ref() {
            Some(refs) => {
                // SAFETY: a live page of the direct map that we own; the engine keeps it until
                // the grant is revoked or hands it to `defer_free` (the `GrantOps` contract).
                unsafe { refs.grant(domid, frame_of(page.addr()), access) }
            }
            // SAFETY: as above.
            None => unsafe { self.grants.grant_owned(domid, page.addr(), access) },
        }
    }

    fn end_access(&self, gref: GrantRef) -> EndAccess {
        match self.refs.as_ref() {
            Some(refs) => refs.end(gref),
            None => self.grants.end_access(gref),
        }
    }

    fn defer_free(&self, gref: GrantRef, page: Page) {
        match page {
            Page::Local(p) => self.grants.defer_free(gref, p),
            // A pool page cannot be handed to the grant table to free (its pool counts it):
            // it is leaked, and the grant ended once the peer lets go.
            Page::Pool(p) => {
                self.grants.end_access_later(gref);
                p.leak();
            }
        }
    }

    fn map_batch(
        &self,
        requests: &[MapRequest],
        results: &mut [MapResult<Mapped>],
    ) -> Result<(), BatchError> {
        const MAX: usize = crate::grant::MAX_POOL;
        if requests.len() != results.len() {
            return Err(BatchError::LengthMismatch);
        }
        if requests.len() > MAX {
            return Err(BatchError::TooLarge);
        }
        if results.iter().any(|r| !matches!(r, MapResult::Pending)) {
            return Err(BatchError::ResultNotPending);
        }
        let mut inner: [MapResult<Mapping>; MAX] = core::array::from_fn(|_| MapResult::Pending);
        let inner = inner
            .get_mut(..requests.len())
            .ok_or(BatchError::TooLarge)?;
        // A call that failed as a whole still reports its mapped slots (for the caller to
        // unmap): they are handed on before the error is.
        let r = self.grants.map_batch(requests, inner);
        for (out, r) in results.iter_mut().zip(inner.iter_mut()) {
            *out = match core::mem::replace(r, MapResult::Pending) {
                MapResult::Mapped(m) => MapResult::Mapped(Mapped(m)),
                MapResult::Failed(e) => MapResult::Failed(e),
                MapResult::Pending => MapResult::Pending,
            };
        }
        r
    }

    fn unmap_batch(
        &self,
        mappings: &mut [Option<Mapped>],
        results: &mut [UnmapResult],
    ) -> Result<(), BatchError> {
        const MAX: usize = crate::grant::MAX_POOL;
        if mappings.len() > MAX {
            return Err(BatchError::TooLarge);
        }
        let mut inner: [Option<Mapping>; MAX] = core::array::from_fn(|_| None);
        let inner = inner
            .get_mut(..mappings.len())
            .ok_or(BatchError::TooLarge)?;
        for (i, m) in inner.iter_mut().zip(mappings.iter_mut()) {
            *i = m.take().map(|m| m.0);
        }
        let r = self.grants.unmap_batch(inner, results);
        // Whatever is still mapped goes back to the caller.
        for (i, m) in inner.iter_mut().zip(mappings.iter_mut()) {
            *m = i.take().map(Mapped);
        }
        r
    }

    fn copy_batch(
        &self,
        _ops: &[CopyOp<'_, Page>],
        results: &mut [Result<(), GrantError>],
    ) -> Result<(), BatchError> {
        // No engine copies yet, and the kernel glue offers no grant copy.
        for r in results.iter_mut() {
            *r = Err(GrantError::GeneralError);
        }
        Ok(())
    }
}

impl<K: Kick> EvtchnOps for Env<K> {
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, EvtchnError> {
        self.chan.alloc_unbound(remote)
    }
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, EvtchnError> {
        self.chan.bind_interdomain(remote, remote_port)
    }
    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        self.on_port(port, |c, p| c.notify(p))
    }
    fn mask(&self, port: Port) -> Result<(), EvtchnError> {
        self.on_port(port, |c, p| c.mask(p))
    }
    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        self.on_port(port, |c, p| c.unmask(p))
    }
    fn close(&self, port: Port) -> Result<(), EvtchnError> {
        self.on_port(port, |c, p| c.close(p))
    }
}

impl<K: Kick> PageAlloc for Env<K> {
    type Page = Page;
    fn alloc_page(&self) -> Option<Page> {
        // The engines zero every page before they grant it (`PageAlloc`'s contract): one
        // clearing per page, not two.
        LocalPage::new_unzeroed(self.atomic_pages).map(Page::Local)
    }

    /// From the receive pool when there is one: a page it took from the allocator is zeroed,
    /// and a recycled one holds only what a packet this queue received left in it, bytes
    /// this backend wrote (the stack reads received data, it does not write the pages back),
    /// so neither needs clearing. Linux's netfront posts its pool's pages the same way.
    fn alloc_rx_page(&mut self) -> Option<(Page, bool)> {
        let atomic = self.atomic_pages;
        match self.rx_pool.as_mut() {
            Some(pool) => pool.alloc(atomic).map(|p| (Page::Pool(p), true)),
            None => self.alloc_page().map(|p| (p, false)),
        }
    }
}

impl<K: Kick> RingMemory for Env<K> {
    type Front = FrontRingPages;
    type Back = BackRingPages;

    fn alloc_ring(&self, pages: usize) -> Option<FrontRingPages> {
        // xenbus_setup_ring allocates and grants in one go, to the device's other end.
        FrontRingPages::new(&self.dev, pages).ok()
    }

    fn grant_ring_page(
        &self,
        domid: DomId,
        ring: &FrontRingPages,
        index: usize,
    ) -> Result<GrantRef, AccessError> {
        if domid != self.dev.otherend_id() {
            return Err(AccessError::NoFreeRefs);
        }
        ring.gref(index).ok_or(AccessError::NoFreeRefs)
    }

    /// Ring grants are revoked page by page when the ring is dropped, each page handed to
    /// the kernel with its grant (`gnttab_end_foreign_access`: freed at once if revoked,
    /// deferred while the peer still maps it). Until then every grant is in place, so this
    /// reports `StillMapped` and the engine gives the ring to `defer_free_ring`.
    fn end_ring_access(&self, _gref: GrantRef) -> EndAccess {
        EndAccess::StillMapped
    }

    fn defer_free_ring(&self, ring: FrontRingPages, _grefs: &[GrantRef]) {
        drop(ring);
    }

    fn map_ring(&self, domid: DomId, grefs: &[GrantRef]) -> Result<BackRingPages, GrantError> {
        if domid != self.dev.otherend_id() {
            return Err(GrantError::BadDomain);
        }
        BackRingPages::map(&self.dev, grefs).map_err(|_| GrantError::GeneralError)
    }
}
