//! `GrantOps` behaviour through a small in-test fake: deferred frees, per-slot map errors,
//! zeroing before granting.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use xen_grant::{
    decode_v1, encode_v1, revocable, Access, AccessError, ArrayRefAllocator, BatchError, CopyOp,
    CopyPtr, Deferred, DeferredQueue, DomId, EndAccess, EntryState, Gfn, GrantError, GrantOps,
    GrantRef, GrantedPage, MapRequest, MapResult, UnmapResult,
};
use xen_sys::wire::grant::{EntryV1, GrantFlags};

/// A page whose drop is recorded, so a test can tell whether it was freed.
#[derive(Debug)]
struct Page {
    id: usize,
    bytes: Vec<u8>,
    freed: Rc<RefCell<Vec<usize>>>,
}

impl Drop for Page {
    fn drop(&mut self) {
        self.freed.borrow_mut().push(self.id);
    }
}

#[derive(Debug, PartialEq)]
struct Mapping {
    domid: DomId,
    gref: GrantRef,
    handle: u32,
}

/// Our grant table plus a peer's grants we may map, all in memory.
struct Fake {
    refs: RefCell<ArrayRefAllocator<8>>,
    /// Our v1 entries and what the peer saw of the page when it was granted.
    table: RefCell<BTreeMap<GrantRef, (EntryV1, Vec<u8>)>>,
    deferred: RefCell<DeferredQueue<Page, 2>>,
    /// Grants other domains made to us: (domid, gref) -> read-only?
    foreign: BTreeMap<(DomId, GrantRef), bool>,
    live_handles: RefCell<BTreeSet<u32>>,
    next_handle: RefCell<u32>,
    freed: Rc<RefCell<Vec<usize>>>,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            refs: RefCell::new(ArrayRefAllocator::new(GrantRef::new(8), [0; 8]).unwrap()),
            table: RefCell::default(),
            deferred: RefCell::new(DeferredQueue::new()),
            foreign: BTreeMap::new(),
            live_handles: RefCell::default(),
            next_handle: RefCell::new(1),
            freed: Rc::default(),
        }
    }

    fn page(&self, id: usize, fill: u8) -> Page {
        Page {
            id,
            bytes: vec![fill; 4096],
            freed: self.freed.clone(),
        }
    }

    fn was_freed(&self, id: usize) -> bool {
        self.freed.borrow().contains(&id)
    }

    /// The peer maps our grant: Xen sets the in-use flag in our entry.
    fn peer_maps(&self, gref: GrantRef) {
        let mut t = self.table.borrow_mut();
        let (e, _) = t.get_mut(&gref).expect("granted");
        e.flags |= GrantFlags::WRITING.bits();
    }

    fn peer_unmaps(&self, gref: GrantRef) {
        let mut t = self.table.borrow_mut();
        let (e, _) = t.get_mut(&gref).expect("granted");
        e.flags &= !(GrantFlags::READING | GrantFlags::WRITING).bits();
    }

    fn retry_deferred(&self) -> xen_grant::Retry {
        self.deferred.borrow_mut().retry(|g| self.end_access(g))
    }
}

impl GrantOps for Fake {
    type Page = Page;
    type Mapping = Mapping;

    fn zero_page(&self, page: &mut Page) {
        page.bytes.fill(0);
    }

    fn grant_access(
        &self,
        domid: DomId,
        page: &Page,
        access: Access,
    ) -> Result<GrantRef, AccessError> {
        let entry = encode_v1(domid, Gfn::new(page.id as u64), access)
            .map_err(|_| AccessError::FrameTooLarge)?;
        let gref = self
            .refs
            .borrow_mut()
            .alloc()
            .map_err(|_| AccessError::NoFreeRefs)?;
        self.table
            .borrow_mut()
            .insert(gref, (entry, page.bytes.clone()));
        Ok(gref)
    }

    fn end_access(&self, gref: GrantRef) -> EndAccess {
        let mut t = self.table.borrow_mut();
        match t.get(&gref) {
            Some((e, _)) if !revocable(e.flags) => EndAccess::StillMapped,
            Some(_) => {
                t.remove(&gref);
                self.refs.borrow_mut().free(gref).expect("ours and in use");
                EndAccess::Ended
            }
            None => panic!("end_access on a reference we never granted: {gref:?}"),
        }
    }

    fn defer_free(&self, gref: GrantRef, page: Page) {
        let _ = self.deferred.borrow_mut().push(gref, page);
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
        for (req, result) in requests.iter().zip(results.iter_mut()) {
            *result = match self.foreign.get(&(req.domid, req.gref)) {
                None => MapResult::Failed(GrantError::BadGntref),
                Some(true) if req.access == Access::ReadWrite => {
                    MapResult::Failed(GrantError::PermissionDenied)
                }
                Some(_) => {
                    let mut next = self.next_handle.borrow_mut();
                    let handle = *next;
                    *next += 1;
                    self.live_handles.borrow_mut().insert(handle);
                    MapResult::Mapped(Mapping {
                        domid: req.domid,
                        gref: req.gref,
                        handle,
                    })
                }
            };
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
            *result = match slot {
                None => UnmapResult::Skipped,
                Some(m) if self.live_handles.borrow_mut().remove(&m.handle) => {
                    *slot = None;
                    UnmapResult::Unmapped
                }
                Some(_) => UnmapResult::Failed(GrantError::BadHandle),
            };
        }
        Ok(())
    }

    fn copy_batch(
        &self,
        ops: &[CopyOp<'_, Page>],
        results: &mut [Result<(), GrantError>],
    ) -> Result<(), BatchError> {
        if ops.len() != results.len() {
            return Err(BatchError::LengthMismatch);
        }
        for (op, result) in ops.iter().zip(results.iter_mut()) {
            *result = op.check().and_then(|()| match (&op.source, &op.dest) {
                (CopyPtr::Foreign { domid, gref, .. }, _)
                | (_, CopyPtr::Foreign { domid, gref, .. })
                    if !self.foreign.contains_key(&(*domid, *gref)) =>
                {
                    Err(GrantError::BadGntref)
                }
                _ => Ok(()),
            });
        }
        Ok(())
    }
}

const BACKEND: DomId = DomId::new(0);

#[test]
fn page_still_mapped_at_free_time_defers_free() {
    let fake = Fake::new();
    let granted = GrantedPage::new(&fake, fake.page(1, 0), BACKEND, Access::ReadWrite).unwrap();
    let gref = granted.gref();
    fake.peer_maps(gref);

    drop(granted);
    assert!(
        !fake.was_freed(1),
        "page freed while the backend still maps it"
    );
    assert_eq!(fake.deferred.borrow().len(), 1);
    assert!(
        fake.refs.borrow().is_allocated(gref),
        "reference reused while mapped"
    );

    // Still mapped: a retry changes nothing.
    assert_eq!(
        fake.retry_deferred(),
        xen_grant::Retry {
            freed: 0,
            pending: 1
        }
    );
    assert!(!fake.was_freed(1));

    fake.peer_unmaps(gref);
    assert_eq!(
        fake.retry_deferred(),
        xen_grant::Retry {
            freed: 1,
            pending: 0
        }
    );
    assert!(fake.was_freed(1));
    assert!(!fake.refs.borrow().is_allocated(gref));
    assert!(fake.deferred.borrow().is_empty());
}

#[test]
fn full_deferred_queue_leaks_rather_than_frees_a_mapped_page() {
    let fake = Fake::new();
    for id in 1..=3 {
        let g = GrantedPage::new(&fake, fake.page(id, 0), BACKEND, Access::ReadOnly).unwrap();
        fake.peer_maps(g.gref());
    }
    assert!((1..=3).all(|id| !fake.was_freed(id)));
    assert_eq!(fake.deferred.borrow().len(), 2);
    assert_eq!(fake.deferred.borrow().leaked(), 1);
}

#[test]
fn leaked_page_reports_leaked() {
    let fake = Fake::new();
    let mut q: DeferredQueue<Page, 1> = DeferredQueue::new();
    assert_eq!(q.push(GrantRef::new(8), fake.page(1, 0)), Deferred::Queued);
    assert_eq!(q.push(GrantRef::new(9), fake.page(2, 0)), Deferred::Leaked);
    assert!(!fake.was_freed(2));
}

#[test]
fn end_gives_the_guard_back_while_mapped_and_the_page_after() {
    let fake = Fake::new();
    let granted = GrantedPage::new(&fake, fake.page(7, 0), BACKEND, Access::ReadWrite).unwrap();
    let gref = granted.gref();
    fake.peer_maps(gref);
    let granted = granted.end().expect_err("still mapped");
    assert_eq!(
        granted.page().map(|p| p.id),
        Some(7),
        "a guard handed back by end lost its page"
    );
    fake.peer_unmaps(gref);
    let page = granted.end().expect("unmapped");
    assert_eq!(page.id, 7);
    assert!(
        !fake.was_freed(7),
        "end returns the page instead of freeing it"
    );
    assert!(fake.table.borrow().is_empty());
}

#[test]
fn granted_page_never_shows_stale_data() {
    let fake = Fake::new();
    let mut granted =
        GrantedPage::new(&fake, fake.page(3, 0xAA), BACKEND, Access::ReadOnly).unwrap();
    let (entry, seen) = fake.table.borrow()[&granted.gref()].clone();
    assert!(
        seen.iter().all(|&b| b == 0),
        "stale bytes visible to the peer at grant time"
    );
    assert_eq!(
        decode_v1(&entry),
        EntryState::PermitAccess {
            domid: BACKEND,
            gfn: Gfn::new(3),
            access: Access::ReadOnly,
            mapped: false
        }
    );
    granted.page_mut().expect("live guard has its page").bytes[0] = 1;
    assert_eq!(granted.page().map(|p| p.bytes[0]), Some(1));
}

#[test]
fn grant_failure_returns_the_page() {
    let fake = Fake::new();
    let mut guards = Vec::new();
    for id in 0..8 {
        guards.push(GrantedPage::new(&fake, fake.page(id, 0), BACKEND, Access::ReadOnly).unwrap());
    }
    let (err, page) =
        GrantedPage::new(&fake, fake.page(99, 0), BACKEND, Access::ReadOnly).unwrap_err();
    assert_eq!(err, AccessError::NoFreeRefs);
    assert_eq!(page.id, 99);
    drop(guards);
    assert_eq!(fake.refs.borrow().available(), 8);
}

#[test]
fn failed_grant_map_on_one_slot_reports_per_slot() {
    let mut fake = Fake::new();
    let front = DomId::new(5);
    fake.foreign.insert((front, GrantRef::new(10)), false);
    fake.foreign.insert((front, GrantRef::new(12)), true);
    let req = |gref, access| MapRequest {
        domid: front,
        gref: GrantRef::new(gref),
        access,
    };
    let requests = [
        req(10, Access::ReadWrite),
        req(11, Access::ReadWrite), // never granted
        req(12, Access::ReadWrite), // granted read-only
        req(12, Access::ReadOnly),
    ];
    let mut results: [MapResult<Mapping>; 4] = core::array::from_fn(|_| MapResult::Pending);
    fake.map_batch(&requests, &mut results).unwrap();

    assert!(
        matches!(results[0], MapResult::Mapped(Mapping { gref, .. }) if gref == GrantRef::new(10))
    );
    assert_eq!(results[1], MapResult::Failed(GrantError::BadGntref));
    assert_eq!(results[2], MapResult::Failed(GrantError::PermissionDenied));
    assert!(matches!(results[3], MapResult::Mapped(_)));

    // Unmap what succeeded; a bogus handle fails on its own slot only.
    let [r0, _, _, r3] = results;
    let mut mappings = [
        r0.mapped(),
        None,
        Some(Mapping {
            domid: front,
            gref: GrantRef::new(11),
            handle: 999,
        }),
        r3.mapped(),
    ];
    let mut unmapped = [UnmapResult::Skipped; 4];
    fake.unmap_batch(&mut mappings, &mut unmapped).unwrap();
    assert_eq!(
        unmapped,
        [
            UnmapResult::Unmapped,
            UnmapResult::Skipped,
            UnmapResult::Failed(GrantError::BadHandle),
            UnmapResult::Unmapped
        ]
    );
    assert!(mappings[0].is_none() && mappings[3].is_none());
    assert!(
        mappings[2].is_some(),
        "a failed unmap leaves the mapping with the caller"
    );
    assert_eq!(mappings[2].as_ref().map(|m| m.domid), Some(front));
}

#[test]
fn map_batch_with_mismatched_lengths_does_nothing() {
    let mut fake = Fake::new();
    fake.foreign
        .insert((DomId::new(5), GrantRef::new(10)), false);
    let requests = [MapRequest {
        domid: DomId::new(5),
        gref: GrantRef::new(10),
        access: Access::ReadOnly,
    }];
    let mut results: [MapResult<Mapping>; 2] = core::array::from_fn(|_| MapResult::Pending);
    assert_eq!(
        fake.map_batch(&requests, &mut results),
        Err(BatchError::LengthMismatch)
    );
    assert!(fake.live_handles.borrow().is_empty());
}

#[test]
fn copy_batch_reports_bad_arguments_per_slot() {
    let mut fake = Fake::new();
    fake.foreign
        .insert((DomId::new(5), GrantRef::new(10)), true);
    let local = fake.page(1, 0);
    let foreign = |gref, offset| CopyPtr::Foreign {
        domid: DomId::new(5),
        gref: GrantRef::new(gref),
        offset,
    };
    let ops = [
        CopyOp {
            source: foreign(10, 0),
            dest: CopyPtr::Local {
                page: &local,
                offset: 0,
            },
            len: 4096,
        },
        CopyOp {
            source: foreign(10, 100),
            dest: CopyPtr::Local {
                page: &local,
                offset: 0,
            },
            len: 4000,
        },
        CopyOp {
            source: foreign(11, 0),
            dest: CopyPtr::Local {
                page: &local,
                offset: 0,
            },
            len: 1,
        },
    ];
    let mut results = [Ok(()); 3];
    fake.copy_batch(&ops, &mut results).unwrap();
    assert_eq!(
        results,
        [
            Ok(()),
            Err(GrantError::BadCopyArg),
            Err(GrantError::BadGntref)
        ]
    );
}
