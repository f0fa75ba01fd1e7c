//! The grant operations a driver needs, as a trait the kernel glue and the host simulator
//! both implement.

use crate::entry::Access;
use xen_sys::{bindings, DomId, Gfn, GrantRef};

/// A per-slot failure of a grant-table operation (Xen's `GNTST_*` codes other than okay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantError {
    /// Undefined error (`GNTST_general_error`).
    GeneralError,
    /// Unknown domain (`GNTST_bad_domain`).
    BadDomain,
    /// Unknown or inappropriate grant reference (`GNTST_bad_gntref`).
    BadGntref,
    /// Unknown or inappropriate handle (`GNTST_bad_handle`).
    BadHandle,
    /// Inappropriate virtual address to map (`GNTST_bad_virt_addr`).
    BadVirtAddr,
    /// Inappropriate device address to unmap (`GNTST_bad_dev_addr`).
    BadDevAddr,
    /// Out of space in the I/O MMU (`GNTST_no_device_space`).
    NoDeviceSpace,
    /// Not enough privilege (`GNTST_permission_denied`).
    PermissionDenied,
    /// The page was invalid for the operation (`GNTST_bad_page`).
    BadPage,
    /// Copy arguments cross a page boundary (`GNTST_bad_copy_arg`).
    BadCopyArg,
    /// Transfer page address too large (`GNTST_address_too_big`).
    AddressTooBig,
    /// Not done; try again (`GNTST_eagain`).
    Eagain,
    /// Out of space, e.g. for map handles (`GNTST_no_space`).
    NoSpace,
    /// A status Xen 4.17 does not define.
    Unknown(i16),
}

impl GrantError {
    /// Decodes a hypercall slot's `status`: 0 is success.
    pub fn check(status: i16) -> Result<(), GrantError> {
        Err(match status {
            0 => return Ok(()),
            -1 => GrantError::GeneralError,
            -2 => GrantError::BadDomain,
            -3 => GrantError::BadGntref,
            -4 => GrantError::BadHandle,
            -5 => GrantError::BadVirtAddr,
            -6 => GrantError::BadDevAddr,
            -7 => GrantError::NoDeviceSpace,
            -8 => GrantError::PermissionDenied,
            -9 => GrantError::BadPage,
            -10 => GrantError::BadCopyArg,
            -11 => GrantError::AddressTooBig,
            -12 => GrantError::Eagain,
            -13 => GrantError::NoSpace,
            other => GrantError::Unknown(other),
        })
    }

    /// The `GNTST_*` status code.
    pub fn status(self) -> i16 {
        match self {
            GrantError::GeneralError => -1,
            GrantError::BadDomain => -2,
            GrantError::BadGntref => -3,
            GrantError::BadHandle => -4,
            GrantError::BadVirtAddr => -5,
            GrantError::BadDevAddr => -6,
            GrantError::NoDeviceSpace => -7,
            GrantError::PermissionDenied => -8,
            GrantError::BadPage => -9,
            GrantError::BadCopyArg => -10,
            GrantError::AddressTooBig => -11,
            GrantError::Eagain => -12,
            GrantError::NoSpace => -13,
            GrantError::Unknown(raw) => raw,
        }
    }
}

const _: () = {
    use bindings as b;
    assert!(b::GNTST_okay == 0);
    assert!(b::GNTST_general_error == -1);
    assert!(b::GNTST_bad_domain == -2);
    assert!(b::GNTST_bad_gntref == -3);
    assert!(b::GNTST_bad_handle == -4);
    assert!(b::GNTST_bad_virt_addr == -5);
    assert!(b::GNTST_bad_dev_addr == -6);
    assert!(b::GNTST_no_device_space == -7);
    assert!(b::GNTST_permission_denied == -8);
    assert!(b::GNTST_bad_page == -9);
    assert!(b::GNTST_bad_copy_arg == -10);
    assert!(b::GNTST_address_too_big == -11);
    assert!(b::GNTST_eagain == -12);
    assert!(b::GNTST_no_space == -13);
};

/// Why a page could not be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// No free grant reference.
    NoFreeRefs,
    /// The page's frame does not fit in a v1 entry.
    FrameTooLarge,
}

/// The outcome of revoking a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum EndAccess {
    /// The grant is revoked and its reference freed: the page may be freed or reused.
    Ended,
    /// The peer still maps the page; nothing changed. The page must not be freed or
    /// reused, and the reference stays in use, until a later attempt returns `Ended`.
    StillMapped,
}

/// A batch failed as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The input and result slices have different lengths; nothing was done.
    LengthMismatch,
    /// A result slot was not [`MapResult::Pending`]; nothing was done.
    ResultNotPending,
    /// The batch is larger than the implementation handles in one call; nothing was done.
    TooLarge,
    /// The call started and then failed (in Linux, `gnttab_map_refs` returns an error when
    /// the hypercall fails or when recording a mapped frame runs out of memory, after Xen
    /// mapped some slots). Slots reported [`MapResult::Mapped`] hold a grant mapping that
    /// must be unmapped and must not be used; every other slot is [`MapResult::Failed`].
    CallFailed,
}

/// One grant to map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    /// The granting domain.
    pub domid: DomId,
    /// Its grant reference.
    pub gref: GrantRef,
    /// How to map it; read-write fails on a read-only grant.
    pub access: Access,
}

/// The result of one slot of [`GrantOps::map_batch`].
#[derive(Debug, PartialEq, Eq)]
pub enum MapResult<M> {
    /// Not attempted yet: what the caller passes in.
    Pending,
    /// Mapped; unmap it with [`GrantOps::unmap_batch`].
    Mapped(M),
    /// This slot failed; the others are unaffected.
    Failed(GrantError),
}

impl<M> MapResult<M> {
    /// The mapping, if this slot succeeded.
    pub fn mapped(self) -> Option<M> {
        match self {
            MapResult::Mapped(m) => Some(m),
            _ => None,
        }
    }
}

/// The result of one slot of [`GrantOps::unmap_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapResult {
    /// Not attempted yet, or the slot held no mapping.
    Skipped,
    /// Unmapped; the mapping was consumed.
    Unmapped,
    /// This slot failed; its mapping is left in place (still mapped).
    Failed(GrantError),
}

/// One end of a grant copy.
#[derive(Debug)]
pub enum CopyPtr<'a, P> {
    /// A page another domain granted us.
    Foreign {
        /// The granting domain.
        domid: DomId,
        /// Its grant reference.
        gref: GrantRef,
        /// Byte offset in the page.
        offset: u16,
    },
    /// One of our pages.
    Local {
        /// The page.
        page: &'a P,
        /// Byte offset in the page.
        offset: u16,
    },
}

impl<P> CopyPtr<'_, P> {
    fn offset(&self) -> u16 {
        match self {
            CopyPtr::Foreign { offset, .. } | CopyPtr::Local { offset, .. } => *offset,
        }
    }
}

/// One grant copy: `len` bytes from `source` to `dest`, neither crossing a page end.
#[derive(Debug)]
pub struct CopyOp<'a, P> {
    /// Where to read.
    pub source: CopyPtr<'a, P>,
    /// Where to write.
    pub dest: CopyPtr<'a, P>,
    /// Bytes to copy.
    pub len: u16,
}

/// Page size of every grant.
pub const PAGE_SIZE: u32 = 4096;

impl<P> CopyOp<'_, P> {
    /// The check Xen applies: each end's `offset + len` is within the page.
    pub fn check(&self) -> Result<(), GrantError> {
        let fits = |offset: u16| u32::from(offset) + u32::from(self.len) <= PAGE_SIZE;
        if fits(self.source.offset()) && fits(self.dest.offset()) {
            Ok(())
        } else {
            Err(GrantError::BadCopyArg)
        }
    }
}

/// The grant-table operations drivers use.
///
/// Methods take `&self` so that many [`GrantedPage`](crate::GrantedPage) guards can share
/// one implementation; implementations synchronise internally.
///
/// # Contract
///
/// - Frontends grant pages through [`GrantedPage::new`](crate::GrantedPage::new), which
///   zeroes the page ([`GrantOps::zero_page`]) before [`GrantOps::grant_access`]: a granted
///   page never shows the peer stale data. Calling `grant_access` directly skips that.
/// - A page is never freed or reused while [`GrantOps::end_access`] says
///   [`EndAccess::StillMapped`]; [`GrantOps::defer_free`] takes ownership of such a page and
///   frees it once revocation succeeds.
/// - Batch operations check their arguments first and return a [`BatchError`] without side
///   effects if they are inconsistent; otherwise every slot gets its own result, and one
///   slot's failure does not affect the others. Nothing a peer does may make them panic.
/// - A map batch that fails as a call ([`BatchError::CallFailed`]) still reports every
///   slot: the caller unmaps the [`MapResult::Mapped`] ones and uses none of them. A slot's
///   result is never success by default: an implementation starts every status as an error.
pub trait GrantOps {
    /// A page of our memory that can be granted (owned: dropping it frees it).
    type Page;
    /// A foreign page mapped into our address space (see [`GrantOps::map_batch`]).
    type Mapping;

    /// Fills `page` with zeros, with plain stores: only for a page no peer can see (not
    /// granted, or every grant of it ended). A page a peer may still map is shared memory
    /// and is written through its volatile accessors instead.
    fn zero_page(&self, page: &mut Self::Page);

    /// Grants `domid` `access` to `page`; the returned reference is what the peer is told.
    fn grant_access(
        &self,
        domid: DomId,
        page: &Self::Page,
        access: Access,
    ) -> Result<GrantRef, AccessError>;

    /// Revokes the grant `gref` (from [`GrantOps::grant_access`] on this implementation)
    /// unless the peer still maps it.
    fn end_access(&self, gref: GrantRef) -> EndAccess;

    /// Takes a page whose grant could not be ended yet; the implementation retries
    /// [`GrantOps::end_access`] later and frees the page once it returns
    /// [`EndAccess::Ended`] (see [`DeferredQueue`](crate::DeferredQueue)). If its bounded
    /// queue is full it leaks the page rather than free it while mapped.
    fn defer_free(&self, gref: GrantRef, page: Self::Page);

    /// Maps each request; `results` must have the same length, every slot
    /// [`MapResult::Pending`].
    fn map_batch(
        &self,
        requests: &[MapRequest],
        results: &mut [MapResult<Self::Mapping>],
    ) -> Result<(), BatchError>;

    /// Unmaps each `Some` mapping, taking it out of its slot on success and leaving it there
    /// on failure; `results` must have the same length.
    fn unmap_batch(
        &self,
        mappings: &mut [Option<Self::Mapping>],
        results: &mut [UnmapResult],
    ) -> Result<(), BatchError>;

    /// Performs each copy; `results` must have the same length. A slot that fails
    /// [`CopyOp::check`] gets [`GrantError::BadCopyArg`].
    fn copy_batch(
        &self,
        ops: &[CopyOp<'_, Self::Page>],
        results: &mut [Result<(), GrantError>],
    ) -> Result<(), BatchError>;
}

/// Grants of memory a caller lends rather than a page the implementation owns: a frame is
/// granted in place (Linux's netfront with `trusted=1` grants an skb's own pages).
///
/// # Contract
///
/// The grant is ended with [`GrantOps::end_access`]. While that says
/// [`EndAccess::StillMapped`] the peer may still read (or, if writable, write) the frame, so
/// the caller must neither free nor reuse the memory: with no page object to defer, such
/// memory is leaked rather than freed. Lending exposes the whole frame, not only the bytes
/// the peer is told about: lend only to a peer trusted to see the rest of the page.
pub trait LendOps: GrantOps {
    /// Grants `domid` `access` to the frame `gfn` of memory the caller keeps alive until
    /// [`GrantOps::end_access`] of the returned reference says [`EndAccess::Ended`].
    fn grant_frame(&self, domid: DomId, gfn: Gfn, access: Access) -> Result<GrantRef, AccessError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips() {
        for raw in i16::MIN..=i16::MAX {
            match GrantError::check(raw) {
                Ok(()) => assert_eq!(raw, 0),
                Err(e) => {
                    assert_eq!(e.status(), raw);
                    assert_eq!(
                        matches!(e, GrantError::Unknown(_)),
                        !(-13..=-1).contains(&raw)
                    );
                }
            }
        }
    }

    #[test]
    fn copy_crossing_a_page_end_is_a_bad_copy_arg() {
        let foreign = |offset| CopyPtr::Foreign {
            domid: DomId::new(1),
            gref: GrantRef::new(9),
            offset,
        };
        let op = |src, dst, len| CopyOp::<'static, ()> {
            source: foreign(src),
            dest: foreign(dst),
            len,
        };
        assert_eq!(op(0, 0, 4096).check(), Ok(()));
        assert_eq!(op(4095, 0, 1).check(), Ok(()));
        assert_eq!(op(4095, 0, 2).check(), Err(GrantError::BadCopyArg));
        assert_eq!(op(0, 1, 4096).check(), Err(GrantError::BadCopyArg));
        assert_eq!(
            op(u16::MAX, 0, u16::MAX).check(),
            Err(GrantError::BadCopyArg)
        );
    }
}
