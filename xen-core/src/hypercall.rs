//! The [`Hypercalls`] trait: the few hypervisor operations drivers need beyond grants and event channels.
//!
//! Today that is memory reservation for the balloon driver (`XENMEM_*` of `memory.h`, always
//! for `DOMID_SELF`, extent order 0, i.e. 4 KiB pages). Xen processes a batch in order and
//! stops at the first frame it cannot handle, returning how many it did; the trait keeps that
//! shape, so a partial batch is a normal `Ok(n)` and only a hypercall that did nothing at all
//! with an error code is `Err`.

use core::fmt;

pub use xen_sys::Gfn;

/// A guest pseudo-physical frame number (`xen_pfn_t` of a page in the guest's own physical
/// address space): what `populate_physmap` is asked to back with memory. For HVM and PVH
/// guests it equals the [`Gfn`]; for PV guests the [`Gfn`] is the machine frame instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Pfn(u64);

impl Pfn {
    /// Wraps a raw frame number.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw frame number.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl From<u64> for Pfn {
    fn from(raw: u64) -> Self {
        Self(raw)
    }
}

impl From<Pfn> for u64 {
    fn from(p: Pfn) -> u64 {
        p.0
    }
}

/// A failed hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallError {
    /// Xen returned this (positive) errno value, e.g. 12 for `ENOMEM`.
    Errno(i32),
    /// The operation is not available to this domain or on this platform.
    NotSupported,
}

impl fmt::Display for HypercallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Errno(e) => write!(f, "hypercall failed with errno {e}"),
            Self::NotSupported => f.write_str("hypercall not supported"),
        }
    }
}

/// Memory-reservation hypercalls for the calling domain.
pub trait Hypercalls {
    /// `XENMEM_decrease_reservation`: gives `frames` back to Xen. Returns how many, from the
    /// start of the slice, were released; the caller must not touch those pages again until
    /// repopulated.
    fn decrease_reservation(&mut self, frames: &[Gfn]) -> Result<usize, HypercallError>;

    /// `XENMEM_populate_physmap`: backs the pages at `frames` with memory again. Returns how
    /// many, from the start of the slice, were populated.
    fn populate_physmap(&mut self, frames: &[Pfn]) -> Result<usize, HypercallError>;

    /// `XENMEM_increase_reservation`: asks for `frames.len()` new pages, whose frame numbers Xen
    /// writes into `frames`. Returns how many were allocated (the rest of `frames` is
    /// unspecified).
    fn increase_reservation(&mut self, frames: &mut [Gfn]) -> Result<usize, HypercallError>;

    /// `XENMEM_current_reservation`: pages the domain holds now.
    fn current_reservation(&mut self) -> Result<u64, HypercallError>;

    /// `XENMEM_maximum_reservation`: the most pages the domain may hold.
    fn maximum_reservation(&mut self) -> Result<u64, HypercallError>;
}
