//! Simulated grant tables: per-domain entries, access checks, batch map/unmap/copy, leak counts.
//!
//! Xen's rules, as the simulator enforces them:
//!
//! - only the domain an entry names may map it or copy through it;
//! - a read-only grant cannot be mapped writable nor be the destination of a copy;
//! - an entry cannot be revoked ([`end_access`](crate::Domain::end_access)) while it is
//!   mapped: the call fails and the granter must retry later (the deferred free of
//!   `gnttab_end_foreign_access`);
//! - a batch map or copy reports a result per slot; one bad slot does not fail the others.
//!
//! Every live entry and every live mapping is counted ([`GrantStats`]), so a test can assert
//! that nothing leaked. Faults are injected per grant reference
//! ([`fail_map`](crate::Sim::fail_map)).

use crate::mem::{Extent, View};
use crate::Hypervisor;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};
use xen_ring::{SharedMemory, PAGE_SIZE};
use xen_sys::{DomId, Gfn, GrantRef};

/// How many entries a domain's grant table holds (a v1 table of 32 frames holds 16384).
pub const TABLE_ENTRIES: u32 = 16384;

/// Why a grant operation failed (a `GNTST_*` code, roughly).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantError {
    /// The reference names no live entry (`GNTST_bad_gntref`).
    BadRef,
    /// The domain is unknown (`GNTST_bad_domain`).
    BadDomain,
    /// The entry grants access to another domain (`GNTST_permission_denied`).
    PermissionDenied,
    /// A writable mapping or a copy into a read-only grant (`GNTST_permission_denied`).
    ReadOnly,
    /// The entry is still mapped; revoke it after the mapper unmaps (`GNTST_general_error`).
    StillMapped,
    /// An offset or length outside the page (`GNTST_bad_copy_arg`).
    BadRange,
    /// The frames of a multi-page mapping are not contiguous (a simulator limitation: the
    /// simulator cannot remap host pages, so it maps a ring only if its frames are
    /// consecutive pages of one allocation, as a front end's ring always is).
    NotContiguous,
    /// The frame is not owned by the caller, or no longer exists (`GNTST_bad_page`).
    BadFrame,
    /// The grant table is full (`-ENOSPC` from the granting side).
    TableFull,
    /// A failure injected by the test ([`Sim::fail_map`](crate::Sim::fail_map)).
    Injected,
}

/// Counters over all grant tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantStats {
    /// Entries currently granted.
    pub live_grants: u64,
    /// Entries currently mapped (one per mapped reference).
    pub live_maps: u64,
    /// Successful map operations, one per reference.
    pub maps: u64,
    /// Map slots that failed, plus map calls that failed as a whole.
    pub map_failures: u64,
    /// Unmaps, one per reference.
    pub unmaps: u64,
    /// Copy slots that succeeded.
    pub copies: u64,
    /// Copy slots that failed.
    pub copy_failures: u64,
    /// `end_access` calls refused because the entry was mapped.
    pub end_access_busy: u64,
    /// Grant entries whose page was freed while granted (a front end bug).
    pub freed_while_granted: u64,
    /// Grant entries whose page was freed while mapped by the peer (a front end bug: XSA-396).
    pub freed_while_mapped: u64,
    /// Grant mappings dropped without [`Mapping::unmap`]: the simulator unmaps them, a kernel
    /// would leak them (and the grant's page with them). Rings, whose mappings are released
    /// by dropping them, count here too.
    pub dropped_mappings: u64,
    /// `zero_page` calls (plain stores) on a page still granted: a peer may map it and see
    /// torn data; shared pages must be written with volatile accessors.
    pub plain_writes_to_granted: u64,
}

/// One slot of a batch map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapOp {
    /// The granting domain.
    pub granter: DomId,
    /// Its grant reference.
    pub gref: GrantRef,
    /// Map writable (else read-only).
    pub writable: bool,
}

/// One end of a grant copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyPtr {
    /// A page another domain granted to the caller.
    Gref {
        /// The granting domain.
        granter: DomId,
        /// Its reference.
        gref: GrantRef,
        /// Byte offset in the page.
        offset: u16,
    },
    /// A frame the caller owns.
    Local {
        /// The frame.
        frame: Gfn,
        /// Byte offset in the page.
        offset: u16,
    },
}

/// One slot of a batch copy (`GNTTABOP_copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOp {
    /// Where to read.
    pub src: CopyPtr,
    /// Where to write.
    pub dst: CopyPtr,
    /// How many bytes; both ends must stay inside their page.
    pub len: u16,
}

struct Entry {
    frame: Gfn,
    to: DomId,
    readonly: bool,
    maps: u32,
}

#[derive(Default)]
struct Table {
    entries: HashMap<u32, Entry>,
    free: Vec<u32>,
    next: u32,
}

impl Table {
    fn allocate(&mut self) -> Option<u32> {
        if let Some(r) = self.free.pop() {
            return Some(r);
        }
        let r = self.next.max(GrantRef::NR_RESERVED);
        if r >= TABLE_ENTRIES {
            return None;
        }
        self.next = r + 1;
        Some(r)
    }
}

#[derive(Default)]
struct Inner {
    tables: HashMap<DomId, Table>,
    stats: GrantStats,
    /// Injected map failures: how many more maps of this reference fail.
    fail_map: HashMap<(DomId, u32), u32>,
    /// An injected failure of the next map call as a whole, after this many slots mapped.
    fail_call_after: Option<usize>,
}

/// All grant tables of a simulated machine.
#[derive(Default)]
pub(crate) struct GrantTables {
    inner: Mutex<Inner>,
}

impl GrantTables {
    pub(crate) fn stats(&self) -> GrantStats {
        self.inner.lock().unwrap().stats
    }

    /// Counts a plain write to `frame` of `dom` if any grant of it is live.
    pub(crate) fn note_plain_write(&self, dom: DomId, frame: Gfn) {
        let mut inner = self.inner.lock().unwrap();
        let granted = inner
            .tables
            .get(&dom)
            .is_some_and(|t| t.entries.values().any(|e| e.frame == frame));
        if granted {
            inner.stats.plain_writes_to_granted += 1;
        }
    }

    pub(crate) fn live_grants_of(&self, dom: DomId) -> u64 {
        let inner = self.inner.lock().unwrap();
        inner.tables.get(&dom).map_or(0, |t| t.entries.len() as u64)
    }

    pub(crate) fn fail_map(&self, granter: DomId, gref: GrantRef, times: u32) {
        let mut inner = self.inner.lock().unwrap();
        inner.fail_map.insert((granter, gref.raw()), times);
    }

    pub(crate) fn fail_next_map_call(&self, after: usize) {
        self.inner.lock().unwrap().fail_call_after = Some(after);
    }

    pub(crate) fn grant(
        &self,
        hv: &Hypervisor,
        granter: DomId,
        to: DomId,
        frame: Gfn,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let (extent, _) = hv.frames.lookup(frame).ok_or(GrantError::BadFrame)?;
        if extent.owner != granter {
            return Err(GrantError::BadFrame);
        }
        let mut inner = self.inner.lock().unwrap();
        let table = inner.tables.entry(granter).or_default();
        let r = table.allocate().ok_or(GrantError::TableFull)?;
        table.entries.insert(
            r,
            Entry {
                frame,
                to,
                readonly,
                maps: 0,
            },
        );
        inner.stats.live_grants += 1;
        drop(inner);
        drop(extent);
        Ok(GrantRef::new(r))
    }

    pub(crate) fn end_access(&self, granter: DomId, gref: GrantRef) -> Result<(), GrantError> {
        let mut inner = self.inner.lock().unwrap();
        let table = inner.tables.get_mut(&granter).ok_or(GrantError::BadRef)?;
        let entry = table.entries.get(&gref.raw()).ok_or(GrantError::BadRef)?;
        if entry.maps > 0 {
            inner.stats.end_access_busy += 1;
            return Err(GrantError::StillMapped);
        }
        table.entries.remove(&gref.raw());
        table.free.push(gref.raw());
        inner.stats.live_grants -= 1;
        Ok(())
    }

    pub(crate) fn is_mapped(&self, granter: DomId, gref: GrantRef) -> bool {
        let inner = self.inner.lock().unwrap();
        inner
            .tables
            .get(&granter)
            .and_then(|t| t.entries.get(&gref.raw()))
            .is_some_and(|e| e.maps > 0)
    }

    /// Records the owner freeing `extent` while some of its frames are granted.
    pub(crate) fn note_free(&self, extent: &Extent) {
        let mut inner = self.inner.lock().unwrap();
        let first = extent.first.raw();
        let end = first + extent.pages as u64;
        let (mut granted, mut mapped) = (0, 0);
        if let Some(table) = inner.tables.get(&extent.owner) {
            for entry in table.entries.values() {
                if (first..end).contains(&entry.frame.raw()) {
                    granted += 1;
                    if entry.maps > 0 {
                        mapped += 1;
                    }
                }
            }
        }
        inner.stats.freed_while_granted += granted;
        inner.stats.freed_while_mapped += mapped;
    }

    /// Checks one reference for `mapper` and takes a map count on it.
    fn take(
        inner: &mut Inner,
        hv: &Hypervisor,
        mapper: DomId,
        op: MapOp,
    ) -> Result<(Arc<Extent>, usize), GrantError> {
        if let Some(left) = inner.fail_map.get_mut(&(op.granter, op.gref.raw())) {
            if *left > 0 {
                *left -= 1;
                return Err(GrantError::Injected);
            }
        }
        let table = inner
            .tables
            .get_mut(&op.granter)
            .ok_or(GrantError::BadRef)?;
        let entry = table
            .entries
            .get_mut(&op.gref.raw())
            .ok_or(GrantError::BadRef)?;
        if entry.to != mapper {
            return Err(GrantError::PermissionDenied);
        }
        if entry.readonly && op.writable {
            return Err(GrantError::ReadOnly);
        }
        let found = hv.frames.lookup(entry.frame).ok_or(GrantError::BadFrame)?;
        entry.maps += 1;
        inner.stats.maps += 1;
        inner.stats.live_maps += 1;
        Ok(found)
    }

    fn put(inner: &mut Inner, granter: DomId, gref: GrantRef) {
        let entry = inner
            .tables
            .get_mut(&granter)
            .and_then(|t| t.entries.get_mut(&gref.raw()));
        if let Some(entry) = entry {
            if entry.maps > 0 {
                entry.maps -= 1;
                inner.stats.live_maps -= 1;
                inner.stats.unmaps += 1;
            }
        }
    }

    pub(crate) fn map_batch(
        &self,
        hv: &Arc<Hypervisor>,
        mapper: DomId,
        ops: &[MapOp],
    ) -> (Vec<Result<Mapping, GrantError>>, bool) {
        let mut inner = self.inner.lock().unwrap();
        let mut out = Vec::with_capacity(ops.len());
        let call_fails_after = inner.fail_call_after.take();
        for (i, op) in ops.iter().enumerate() {
            if call_fails_after.is_some_and(|n| i >= n) {
                inner.stats.map_failures += 1;
                out.push(Err(GrantError::Injected));
                continue;
            }
            let result = Self::take(&mut inner, hv, mapper, *op).and_then(|(extent, index)| {
                View::new(extent, index, 1).ok_or(GrantError::BadFrame)
            });
            match result {
                Ok(view) => out.push(Ok(Mapping {
                    view,
                    writable: op.writable,
                    refs: vec![(op.granter, op.gref)],
                    hv: Arc::downgrade(hv),
                    unmapped: false,
                })),
                Err(e) => {
                    inner.stats.map_failures += 1;
                    out.push(Err(e));
                }
            }
        }
        if call_fails_after.is_some() {
            inner.stats.map_failures += 1;
        }
        (out, call_fails_after.is_some())
    }

    pub(crate) fn map_ring(
        &self,
        hv: &Arc<Hypervisor>,
        mapper: DomId,
        granter: DomId,
        grefs: &[GrantRef],
    ) -> Result<Mapping, GrantError> {
        let mut inner = self.inner.lock().unwrap();
        let mut taken: Vec<(GrantRef, Arc<Extent>, usize)> = Vec::with_capacity(grefs.len());
        let mut failure = None;
        for gref in grefs {
            let op = MapOp {
                granter,
                gref: *gref,
                writable: true,
            };
            match Self::take(&mut inner, hv, mapper, op) {
                Ok((extent, index)) => taken.push((*gref, extent, index)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let view = match (failure, taken.first()) {
            (None, Some((_, extent, index))) => {
                let contiguous = taken
                    .iter()
                    .enumerate()
                    .all(|(i, (_, e, idx))| Arc::ptr_eq(e, extent) && *idx == index + i);
                if contiguous {
                    View::new(extent.clone(), *index, taken.len()).ok_or(GrantError::BadFrame)
                } else {
                    Err(GrantError::NotContiguous)
                }
            }
            (Some(e), _) => Err(e),
            (None, None) => Err(GrantError::BadRange),
        };
        match view {
            Ok(view) => Ok(Mapping {
                view,
                writable: true,
                refs: taken.iter().map(|(g, _, _)| (granter, *g)).collect(),
                hv: Arc::downgrade(hv),
                unmapped: false,
            }),
            Err(e) => {
                for (gref, _, _) in &taken {
                    Self::put(&mut inner, granter, *gref);
                }
                inner.stats.map_failures += 1;
                drop(inner);
                drop(taken);
                Err(e)
            }
        }
    }

    fn unmap(&self, refs: &[(DomId, GrantRef)]) {
        let mut inner = self.inner.lock().unwrap();
        for (granter, gref) in refs {
            Self::put(&mut inner, *granter, *gref);
        }
    }

    /// Resolves one end of a copy to a page view and an offset, for `caller`.
    fn resolve(
        inner: &Inner,
        hv: &Hypervisor,
        caller: DomId,
        ptr: CopyPtr,
        write: bool,
    ) -> Result<(View, usize), GrantError> {
        let (frame, offset) = match ptr {
            CopyPtr::Gref {
                granter,
                gref,
                offset,
            } => {
                let entry = inner
                    .tables
                    .get(&granter)
                    .and_then(|t| t.entries.get(&gref.raw()))
                    .ok_or(GrantError::BadRef)?;
                if entry.to != caller {
                    return Err(GrantError::PermissionDenied);
                }
                if write && entry.readonly {
                    return Err(GrantError::ReadOnly);
                }
                (entry.frame, offset)
            }
            CopyPtr::Local { frame, offset } => (frame, offset),
        };
        let (extent, index) = hv.frames.lookup(frame).ok_or(GrantError::BadFrame)?;
        if let CopyPtr::Local { .. } = ptr {
            if extent.owner != caller {
                return Err(GrantError::BadFrame);
            }
        }
        let view = View::new(extent, index, 1).ok_or(GrantError::BadFrame)?;
        Ok((view, usize::from(offset)))
    }

    pub(crate) fn copy(
        &self,
        hv: &Hypervisor,
        caller: DomId,
        ops: &[CopyOp],
    ) -> Vec<Result<(), GrantError>> {
        let mut inner = self.inner.lock().unwrap();
        let mut out = Vec::with_capacity(ops.len());
        let mut buf = [0u8; PAGE_SIZE];
        for op in ops {
            let len = usize::from(op.len);
            let result = Self::resolve(&inner, hv, caller, op.src, false).and_then(|src| {
                let dst = Self::resolve(&inner, hv, caller, op.dst, true)?;
                Ok((src, dst))
            });
            let result = result.and_then(|((src, so), (dst, d_off))| {
                let fits = |off: usize| off.checked_add(len).is_some_and(|e| e <= PAGE_SIZE);
                if !fits(so) || !fits(d_off) {
                    return Err(GrantError::BadRange);
                }
                let chunk = &mut buf[..len];
                if src.read(so, chunk) && dst.write(d_off, chunk) {
                    Ok(())
                } else {
                    Err(GrantError::BadRange)
                }
            });
            if result.is_ok() {
                inner.stats.copies += 1;
            } else {
                inner.stats.copy_failures += 1;
            }
            out.push(result);
        }
        out
    }
}

/// Pages of another domain, mapped through grants; unmapped when dropped.
///
/// A mapping holds its own reference to the pages (as Xen does), so the memory stays valid
/// while mapped whatever the granter does. It implements [`SharedMemory`] so a back end can
/// attach a ring to it; [`read`](Self::read)/[`write`](Self::write) are checked copies, and
/// `write` refuses a read-only mapping.
pub struct Mapping {
    view: View,
    writable: bool,
    refs: Vec<(DomId, GrantRef)>,
    hv: Weak<Hypervisor>,
    /// Set by [`Mapping::unmap`]; a mapping dropped without it is counted.
    unmapped: bool,
}

impl Mapping {
    /// A writable view of `pages` without any grant: what a privileged daemon (xenstored,
    /// the console daemon) gets by mapping a guest's special pages directly.
    pub(crate) fn privileged(pages: &crate::mem::Pages) -> Mapping {
        let view = View::new(pages.extent.clone(), 0, pages.pages()).expect("whole extent");
        Mapping {
            view,
            writable: true,
            refs: Vec::new(),
            hv: pages.hv.clone(),
            unmapped: false,
        }
    }

    /// Whether the mapping is writable.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The references this mapping covers, in page order.
    pub fn grants(&self) -> impl Iterator<Item = GrantRef> + '_ {
        self.refs.iter().map(|(_, g)| *g)
    }

    /// The number of pages mapped.
    pub fn pages(&self) -> usize {
        self.view.pages
    }

    /// Copies bytes out of the mapped pages; `false` if the range is outside them.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> bool {
        self.view.read(offset, dst)
    }

    /// Copies bytes into the mapped pages; `false` if the range is outside them or the mapping
    /// is read-only.
    pub fn write(&self, offset: usize, src: &[u8]) -> bool {
        self.writable && self.view.write(offset, src)
    }

    /// Unmaps (the same as dropping it).
    pub fn unmap(mut self) {
        self.unmapped = true;
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(hv) = self.hv.upgrade() {
            if !self.unmapped && !self.refs.is_empty() {
                hv.gnttab.inner.lock().unwrap().stats.dropped_mappings += 1;
            }
            hv.gnttab.unmap(&self.refs);
        }
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("refs", &self.refs)
            .field("writable", &self.writable)
            .finish()
    }
}

// SAFETY: the view covers whole pages of a page-aligned `HostPages` allocation that the `Arc`
// in the view keeps alive for as long as this value lives; the pointer and length never change,
// and the bytes are reached only through raw pointers.
unsafe impl SharedMemory for Mapping {
    fn as_ptr(&self) -> NonNull<u8> {
        self.view.ptr()
    }

    fn len(&self) -> usize {
        self.view.len()
    }
}
