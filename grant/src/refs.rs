//! A fixed-capacity allocator of grant references over caller-provided storage.
//!
//! It hands out the references `first..first + capacity` from a free list threaded through
//! one `u32` per reference. A reference's word is either the index of the next free
//! reference (or `END`) when free, or `ALLOCATED` when in use, so a double free is
//! detected from the word itself and refused before the list is touched.

use xen_sys::GrantRef;

/// Free-list terminator.
const END: u32 = u32::MAX;
/// Marks a reference that is handed out.
const ALLOCATED: u32 = u32::MAX - 1;

/// Why an allocator could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// The range starts among the toolstack's reserved references
    /// ([`GrantRef::NR_RESERVED`]).
    Reserved,
    /// `first + capacity` does not fit in a grant reference, or the storage holds more
    /// than `u32::MAX - 2` words.
    TooLarge,
}

/// Not enough free references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhausted {
    /// References asked for.
    pub requested: usize,
    /// References that were free (none were taken).
    pub available: usize,
}

/// A refused free; the allocator is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The reference is outside this allocator's range.
    NotOwned(GrantRef),
    /// The reference is already free (or appears twice in one batch).
    DoubleFree(GrantRef),
}

/// Hands out grant references `first..first + storage.len()`.
///
/// `S` is the storage, one `u32` per reference: `[u32; N]` for a fixed capacity, or any
/// caller-owned buffer (`&mut [u32]`, a kernel vector wrapped to implement `AsMut`).
///
/// # Invariants
///
/// - `free` words of the storage are not `ALLOCATED`; they form one list starting at
///   `head`, each holding the index of the next, the last holding `END`.
/// - The other words are `ALLOCATED`.
pub struct RefAllocator<S> {
    first: u32,
    head: u32,
    free: u32,
    slots: S,
}

/// A [`RefAllocator`] with `N` references stored inline.
pub type ArrayRefAllocator<const N: usize> = RefAllocator<[u32; N]>;

impl<S: AsRef<[u32]> + AsMut<[u32]>> RefAllocator<S> {
    /// Manages `first..first + storage.len()`, all free; `storage`'s contents are
    /// overwritten.
    pub fn new(first: GrantRef, mut storage: S) -> Result<Self, RangeError> {
        if first.is_reserved() {
            return Err(RangeError::Reserved);
        }
        let slots = storage.as_mut();
        let count = u32::try_from(slots.len())
            .ok()
            .filter(|&n| n < ALLOCATED)
            .ok_or(RangeError::TooLarge)?;
        if first.raw().checked_add(count).is_none() {
            return Err(RangeError::TooLarge);
        }
        // INVARIANT: slot i points at i + 1, the last at END: one list of every slot.
        let mut next = 1u32;
        for slot in slots.iter_mut() {
            *slot = if next == count { END } else { next };
            next = next.wrapping_add(1);
        }
        Ok(RefAllocator {
            first: first.raw(),
            head: if count == 0 { END } else { 0 },
            free: count,
            slots: storage,
        })
    }

    /// References managed.
    pub fn capacity(&self) -> usize {
        self.slots.as_ref().len()
    }

    /// References free.
    pub fn available(&self) -> usize {
        self.free as usize
    }

    /// Whether `r` is in this allocator's range and handed out.
    pub fn is_allocated(&self, r: GrantRef) -> bool {
        self.index(r)
            .and_then(|i| self.slots.as_ref().get(i as usize))
            .is_some_and(|&w| w == ALLOCATED)
    }

    /// Takes one free reference.
    pub fn alloc(&mut self) -> Result<GrantRef, Exhausted> {
        let head = self.head;
        let Some(slot) = self.slots.as_mut().get_mut(head as usize) else {
            return Err(Exhausted {
                requested: 1,
                available: 0,
            });
        };
        // INVARIANT: the head moves to its successor and leaves the list marked ALLOCATED.
        self.head = *slot;
        *slot = ALLOCATED;
        self.free = self.free.wrapping_sub(1);
        Ok(GrantRef::new(self.first.wrapping_add(head)))
    }

    /// Fills `out` with free references, or takes none if there are not enough.
    pub fn alloc_batch(&mut self, out: &mut [GrantRef]) -> Result<(), Exhausted> {
        if out.len() > self.available() {
            return Err(Exhausted {
                requested: out.len(),
                available: self.available(),
            });
        }
        for r in out.iter_mut() {
            *r = self.alloc()?;
        }
        Ok(())
    }

    /// Returns one reference.
    pub fn free(&mut self, r: GrantRef) -> Result<(), FreeError> {
        self.free_batch(core::slice::from_ref(&r))
    }

    /// Returns every reference of `refs`, or none: a reference out of range, already free
    /// or listed twice refuses the whole batch and leaves the allocator unchanged.
    pub fn free_batch(&mut self, refs: &[GrantRef]) -> Result<(), FreeError> {
        // Pass 1: check each and mark it END (not ALLOCATED), so a repeat in the batch is
        // seen as a double free; undo the marks if anything is wrong.
        for (n, &r) in refs.iter().enumerate() {
            if let Err(e) = self.claim_for_free(r) {
                for &done in refs.iter().take(n) {
                    if let Some(w) = self.word_mut(done) {
                        *w = ALLOCATED;
                    }
                }
                return Err(e);
            }
        }
        // Pass 2: push them all onto the list.
        for &r in refs {
            let head = self.head;
            if let (Some(i), Some(w)) = (self.index(r), self.word_mut(r)) {
                // INVARIANT: the freed slot becomes the head, pointing at the old head.
                *w = head;
                self.head = i;
                self.free = self.free.wrapping_add(1);
            }
        }
        Ok(())
    }

    fn claim_for_free(&mut self, r: GrantRef) -> Result<(), FreeError> {
        let word = self.word_mut(r).ok_or(FreeError::NotOwned(r))?;
        if *word != ALLOCATED {
            return Err(FreeError::DoubleFree(r));
        }
        *word = END;
        Ok(())
    }

    /// The slot index of `r`, if it is in range.
    fn index(&self, r: GrantRef) -> Option<u32> {
        let i = r.raw().checked_sub(self.first)?;
        ((i as usize) < self.capacity()).then_some(i)
    }

    /// The word of `r`, if it is in range.
    fn word_mut(&mut self, r: GrantRef) -> Option<&mut u32> {
        let i = self.index(r)?;
        self.slots.as_mut().get_mut(i as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(r: u32) -> GrantRef {
        GrantRef::new(r)
    }

    #[test]
    fn hands_out_each_reference_once_then_reports_exhaustion() {
        let mut a = ArrayRefAllocator::<4>::new(g(8), [0; 4]).unwrap();
        let mut got: Vec<u32> = (0..4).map(|_| a.alloc().unwrap().raw()).collect();
        got.sort();
        assert_eq!(got, [8, 9, 10, 11]);
        assert_eq!(
            a.alloc(),
            Err(Exhausted {
                requested: 1,
                available: 0
            })
        );
    }

    #[test]
    fn double_free_is_refused_and_list_stays_intact() {
        let mut a = ArrayRefAllocator::<3>::new(g(100), [0; 3]).unwrap();
        let r = a.alloc().unwrap();
        a.free(r).unwrap();
        assert_eq!(a.free(r), Err(FreeError::DoubleFree(r)));
        assert_eq!(a.available(), 3);
        let mut out = [g(0); 3];
        a.alloc_batch(&mut out).unwrap();
        out.sort();
        assert_eq!(out, [g(100), g(101), g(102)]);
    }

    #[test]
    fn batch_with_a_repeated_reference_frees_nothing() {
        let mut a = ArrayRefAllocator::<4>::new(g(8), [0; 4]).unwrap();
        let mut out = [g(0); 3];
        a.alloc_batch(&mut out).unwrap();
        let bad = [out[0], out[1], out[0]];
        assert_eq!(a.free_batch(&bad), Err(FreeError::DoubleFree(out[0])));
        assert_eq!(a.available(), 1);
        assert!(out.iter().all(|&r| a.is_allocated(r)));
        a.free_batch(&out).unwrap();
        assert_eq!(a.available(), 4);
    }

    #[test]
    fn foreign_reference_is_not_owned() {
        let mut a = ArrayRefAllocator::<2>::new(g(8), [0; 2]).unwrap();
        assert_eq!(a.free(g(7)), Err(FreeError::NotOwned(g(7))));
        assert_eq!(a.free(g(10)), Err(FreeError::NotOwned(g(10))));
        assert_eq!(a.free(g(u32::MAX)), Err(FreeError::NotOwned(g(u32::MAX))));
    }

    #[test]
    fn batch_alloc_larger_than_free_takes_nothing() {
        let mut a = ArrayRefAllocator::<2>::new(g(8), [0; 2]).unwrap();
        let mut out = [g(0); 3];
        assert_eq!(
            a.alloc_batch(&mut out),
            Err(Exhausted {
                requested: 3,
                available: 2
            })
        );
        assert_eq!(a.available(), 2);
    }

    #[test]
    fn rejects_reserved_and_overflowing_ranges() {
        assert_eq!(
            ArrayRefAllocator::<2>::new(g(1), [0; 2]).err(),
            Some(RangeError::Reserved)
        );
        assert_eq!(
            ArrayRefAllocator::<2>::new(g(u32::MAX - 1), [0; 2]).err(),
            Some(RangeError::TooLarge)
        );
        let mut empty: [u32; 0] = [];
        let mut a = RefAllocator::new(g(8), &mut empty[..]).unwrap();
        assert!(a.alloc().is_err());
    }
}
