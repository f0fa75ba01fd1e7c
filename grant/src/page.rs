//! [`GrantedPage`]: a page shared with a peer for as long as the guard lives.

use crate::entry::Access;
use crate::ops::{AccessError, EndAccess, GrantOps};
use xen_sys::{DomId, GrantRef};

/// A zeroed page granted to a peer; dropping it revokes the grant, or hands the page to
/// [`GrantOps::defer_free`] if the peer still maps it.
///
/// # Invariants
///
/// `page` is `Some` from construction until [`GrantedPage::end`] or `drop` takes it, and
/// `gref` is the live grant of that page to `domid`.
pub struct GrantedPage<'a, G: GrantOps> {
    ops: &'a G,
    gref: GrantRef,
    domid: DomId,
    access: Access,
    page: Option<G::Page>,
}

impl<'a, G: GrantOps> GrantedPage<'a, G> {
    /// Zeroes `page`, then grants `domid` `access` to it. On failure the page comes back.
    pub fn new(
        ops: &'a G,
        mut page: G::Page,
        domid: DomId,
        access: Access,
    ) -> Result<Self, (AccessError, G::Page)> {
        ops.zero_page(&mut page);
        match ops.grant_access(domid, &page, access) {
            // INVARIANT: the page is zeroed and granted as `gref`.
            Ok(gref) => Ok(GrantedPage {
                ops,
                gref,
                domid,
                access,
                page: Some(page),
            }),
            Err(e) => Err((e, page)),
        }
    }

    /// The grant reference to tell the peer.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }

    /// The domain the page is granted to.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// What the peer may do with the page.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The page (to fill before telling the peer, or to read after it answered).
    ///
    /// Always `Some` for a guard a caller can hold: only [`GrantedPage::end`] and `drop` take
    /// the page, and both consume the guard. It is an `Option` so that no code path here can
    /// panic; a caller that somehow sees `None` should fail its request, not the kernel.
    pub fn page(&self) -> Option<&G::Page> {
        self.page.as_ref()
    }

    /// The page, mutably (always `Some`, see [`GrantedPage::page`]).
    pub fn page_mut(&mut self) -> Option<&mut G::Page> {
        self.page.as_mut()
    }

    /// Revokes the grant and returns the page for reuse, or gives the guard back if the peer
    /// still maps it.
    pub fn end(mut self) -> Result<G::Page, Self> {
        match self.ops.end_access(self.gref) {
            EndAccess::Ended => self.page.take().ok_or(self),
            EndAccess::StillMapped => Err(self),
        }
    }
}

impl<G: GrantOps> Drop for GrantedPage<'_, G> {
    fn drop(&mut self) {
        let Some(page) = self.page.take() else {
            return;
        };
        match self.ops.end_access(self.gref) {
            EndAccess::Ended => drop(page),
            EndAccess::StillMapped => self.ops.defer_free(self.gref, page),
        }
    }
}

impl<G: GrantOps> core::fmt::Debug for GrantedPage<'_, G> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GrantedPage")
            .field("gref", &self.gref)
            .field("domid", &self.domid)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}
