//! A front's request slots: wire ids `generation << 32 | slot`, and the check of every id a backend answers with.
//!
//! A front names each request by a slot of a fixed table and the slot's generation, a
//! counter bumped each time the slot is claimed. The id on the ring is
//! `generation << 32 | slot` ([`Tag::id`]). A response's id is untrusted: [`Slots::lookup`]
//! accepts it only if the slot is in the table, has a request outstanding, and is of the same
//! generation, so an out-of-range id, a duplicate response and a stale one (a response to an
//! earlier use of the slot) are all refused before the engine touches anything of the slot.
//!
//! [`Slots`] holds only that bookkeeping (generations, which slots are outstanding, a stack
//! of free ones); what a request holds (its pages, its expected operation) stays in the
//! engine's own table, indexed by [`Tag::slot`], so a table too large for a stack can live
//! on the heap.
//!
//! The protocol of use:
//!
//! 1. [`Slots::open`] makes a slot available (once its resources are ready), or
//!    [`Slots::open_all`] makes the first `n` available, lowest handed out first;
//! 2. [`Slots::next`] names the slot and id the next request will get, without taking it, so
//!    the request can be built (and abandoned) first; [`Slots::claim`] takes it once the
//!    request is on the ring;
//! 3. for each response, [`Slots::lookup`] checks its id; the engine checks the rest of the
//!    response, then calls [`Slots::release`], and the slot is free again (and the next
//!    [`Slots::next`] hands it out first);
//! 4. [`Slots::close`] ends a connection: each outstanding request is reported once, and no
//!    slot is free until opened again.
//!
//! Freeing a request's granted pages goes through [`crate::platform::revoke`]: a page the
//! backend still maps is deferred, never freed.

/// Names one use of a slot: the slot and the generation it had when claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tag {
    /// The slot.
    pub slot: u16,
    /// Which use of the slot.
    pub generation: u32,
}

impl Tag {
    /// The wire id: generation in the high half, slot in the low half.
    pub fn id(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.slot)
    }
}

/// Why a response's id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdError {
    /// The slot half names no slot of the table.
    OutOfRange,
    /// The slot has no request outstanding, or one of another generation: a duplicate or
    /// stale response.
    NotOutstanding,
}

/// The id bookkeeping of a table of `N` request slots (at most 65536 are used: a slot
/// number is a `u16`).
///
/// # Invariants
///
/// `free[..nr_free]` holds exactly the slots whose state is `Free`, each once.
#[derive(Clone, Debug)]
pub struct Slots<const N: usize> {
    generation: [u32; N],
    state: [State; N],
    free: [u16; N],
    nr_free: usize,
}

/// Where a slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not available (never opened, or closed).
    Closed,
    /// On the free stack.
    Free,
    /// A request is outstanding in it.
    Outstanding,
}

impl<const N: usize> Default for Slots<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Slots<N> {
    /// A table with no slot open and every generation 0 (the first id of a slot is of
    /// generation 1).
    pub fn new() -> Self {
        Slots {
            generation: [0; N],
            state: [State::Closed; N],
            free: [0; N],
            nr_free: 0,
        }
    }

    /// Makes `slot` available for a request: it goes on top of the free stack, so it is the
    /// next handed out. Ignored (`false`) if `slot` is outside the table, outstanding, or
    /// already free.
    pub fn open(&mut self, slot: usize) -> bool {
        let Ok(index) = u16::try_from(slot) else {
            return false;
        };
        let (Some(state), Some(top)) = (self.state.get_mut(slot), self.free.get_mut(self.nr_free))
        else {
            return false;
        };
        if *state != State::Closed {
            return false;
        }
        // INVARIANT: `index` was closed, so not on the stack; it goes on as it becomes free.
        *state = State::Free;
        *top = index;
        self.nr_free += 1;
        true
    }

    /// Makes slots `0..n` (at most `N`, and at most 65535) available, slot 0 handed out
    /// first; slots that are outstanding are left alone. Slots opened before stay open.
    pub fn open_all(&mut self, n: usize) {
        let n = n.min(N).min(usize::from(u16::MAX));
        for slot in (0..n).rev() {
            self.open(slot);
        }
    }

    /// Slots free for a request.
    pub fn free(&self) -> usize {
        self.nr_free
    }

    /// Requests outstanding.
    pub fn outstanding(&self) -> usize {
        self.state
            .iter()
            .filter(|s| **s == State::Outstanding)
            .count()
    }

    /// Whether `slot` has a request outstanding.
    pub fn is_outstanding(&self, slot: usize) -> bool {
        self.state.get(slot) == Some(&State::Outstanding)
    }

    /// The tag the next [`claim`](Self::claim) will return, or `None` if no slot is free.
    /// Nothing changes: a request built for it and then abandoned costs nothing.
    pub fn next(&self) -> Option<Tag> {
        let slot = *self.free.get(self.nr_free.checked_sub(1)?)?;
        let generation = self.generation.get(usize::from(slot))?.wrapping_add(1);
        Some(Tag { slot, generation })
    }

    /// Takes the slot [`next`](Self::next) names: bumps its generation (wrapping) and marks
    /// it outstanding. `None` if no slot is free.
    pub fn claim(&mut self) -> Option<Tag> {
        let tag = self.next()?;
        let index = usize::from(tag.slot);
        let (Some(generation), Some(state)) =
            (self.generation.get_mut(index), self.state.get_mut(index))
        else {
            return None;
        };
        // INVARIANT: the top of the stack leaves it as its state leaves `Free`.
        *generation = tag.generation;
        *state = State::Outstanding;
        self.nr_free -= 1;
        Some(tag)
    }

    /// Checks a response's `id`: its slot is in the table and has a request outstanding of
    /// the same generation. Nothing changes; on success the engine checks the rest of the
    /// response and then calls [`release`](Self::release).
    pub fn lookup(&self, id: u64) -> Result<Tag, IdError> {
        let index = usize::try_from(id & 0xffff_ffff).map_err(|_| IdError::OutOfRange)?;
        let generation = u32::try_from(id >> 32).map_err(|_| IdError::OutOfRange)?;
        let current = *self.generation.get(index).ok_or(IdError::OutOfRange)?;
        let slot = u16::try_from(index).map_err(|_| IdError::OutOfRange)?;
        if !self.is_outstanding(index) || current != generation {
            return Err(IdError::NotOutstanding);
        }
        Ok(Tag { slot, generation })
    }

    /// Ends the request `tag` names (from [`lookup`](Self::lookup)): the slot is free again,
    /// on top of the free stack. `false`, and nothing changes, if `tag` is not outstanding.
    pub fn release(&mut self, tag: Tag) -> bool {
        if self.lookup(tag.id()) != Ok(tag) {
            return false;
        }
        if let Some(state) = self.state.get_mut(usize::from(tag.slot)) {
            *state = State::Closed;
        }
        self.open(usize::from(tag.slot))
    }

    /// Ends the connection: calls `aborted` once for each outstanding request (in slot
    /// order), which is no longer outstanding, and closes every slot: none is free until
    /// [`open`](Self::open)ed again. Generations are kept, so an answer to an aborted
    /// request is refused even after its slot is reused.
    pub fn close(&mut self, mut aborted: impl FnMut(Tag)) {
        // INVARIANT: the stack is emptied as every slot becomes closed.
        self.nr_free = 0;
        for (index, (state, generation)) in self
            .state
            .iter_mut()
            .zip(self.generation.iter())
            .enumerate()
        {
            if core::mem::replace(state, State::Closed) == State::Outstanding {
                if let Ok(slot) = u16::try_from(index) {
                    aborted(Tag {
                        slot,
                        generation: *generation,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened<const N: usize>() -> Slots<N> {
        let mut s = Slots::new();
        s.open_all(N);
        s
    }

    #[test]
    fn ids_are_generation_then_slot() {
        let mut s = opened::<4>();
        let next = s.next().unwrap();
        let tag = s.claim().unwrap();
        assert_eq!(tag, next);
        assert_eq!(
            tag,
            Tag {
                slot: 0,
                generation: 1
            }
        );
        assert_eq!(tag.id(), 1 << 32);
        assert_eq!(s.lookup(tag.id()), Ok(tag));
        assert!(s.release(tag));
        // The freed slot is handed out again first, with the next generation.
        assert_eq!(s.claim().unwrap().id(), 2 << 32);
    }

    #[test]
    fn next_takes_nothing() {
        let mut s = opened::<2>();
        assert_eq!(s.next(), s.next());
        assert_eq!(s.free(), 2);
        assert_eq!(s.outstanding(), 0);
        s.claim().unwrap();
        assert_eq!(s.free(), 1);
        assert_eq!(s.outstanding(), 1);
    }

    #[test]
    fn rejects_out_of_range_id() {
        let mut s = opened::<4>();
        let tag = s.claim().unwrap();
        let beyond = (u64::from(tag.generation) << 32) | 4;
        assert_eq!(s.lookup(beyond), Err(IdError::OutOfRange));
        let huge = (u64::from(tag.generation) << 32) | 0xffff_ffff;
        assert_eq!(s.lookup(huge), Err(IdError::OutOfRange));
        assert_eq!(s.outstanding(), 1);
    }

    #[test]
    fn rejects_stale_generation() {
        let mut s = opened::<1>();
        let first = s.claim().unwrap();
        assert!(s.release(first));
        let second = s.claim().unwrap();
        assert_eq!(second.slot, first.slot);
        // An answer to the slot's earlier use names it with the old generation.
        assert_eq!(s.lookup(first.id()), Err(IdError::NotOutstanding));
        let ahead = Tag {
            generation: second.generation + 1,
            ..second
        };
        assert_eq!(s.lookup(ahead.id()), Err(IdError::NotOutstanding));
        assert_eq!(s.lookup(second.id()), Ok(second));
    }

    #[test]
    fn rejects_duplicate_response() {
        let mut s = opened::<2>();
        let tag = s.claim().unwrap();
        assert_eq!(s.lookup(tag.id()), Ok(tag));
        assert!(s.release(tag));
        assert_eq!(s.lookup(tag.id()), Err(IdError::NotOutstanding));
        assert!(!s.release(tag));
        // The slot went back on the stack once only.
        assert_eq!(s.free(), 2);
    }

    #[test]
    fn rejects_idle_slot() {
        let s = opened::<2>();
        // Slot 1 never carried a request: even generation 0 (its current one) is refused.
        assert_eq!(s.lookup(1), Err(IdError::NotOutstanding));
        assert_eq!(s.lookup((1 << 32) | 1), Err(IdError::NotOutstanding));
    }

    #[test]
    fn generation_wraps_around() {
        let mut s = opened::<1>();
        let mut last = None;
        // Walk the generation to the top without 2^32 claims.
        s.generation[0] = u32::MAX - 1;
        for expected in [u32::MAX, 0, 1] {
            let tag = s.claim().unwrap();
            assert_eq!(tag.generation, expected);
            assert_eq!(s.lookup(tag.id()), Ok(tag));
            if let Some(old) = last {
                assert_eq!(s.lookup(Tag::id(old)), Err(IdError::NotOutstanding));
            }
            assert!(s.release(tag));
            last = Some(tag);
        }
    }

    #[test]
    fn free_stack_order() {
        // `open_all`: low slots first.
        let mut s = opened::<3>();
        let order: Vec<u16> = (0..3).map(|_| s.claim().unwrap().slot).collect();
        assert_eq!(order, [0, 1, 2]);
        assert_eq!(s.next(), None);
        assert_eq!(s.claim(), None);
        // `open` one by one: the last opened goes first.
        let mut s = Slots::<3>::new();
        for i in 0..3 {
            assert!(s.open(i));
        }
        let order: Vec<u16> = (0..3).map(|_| s.claim().unwrap().slot).collect();
        assert_eq!(order, [2, 1, 0]);
    }

    #[test]
    fn open_refuses_bad_slots() {
        let mut s = Slots::<2>::new();
        assert!(!s.open(2));
        assert!(s.open(0));
        assert!(!s.open(0));
        let tag = s.claim().unwrap();
        assert!(!s.open(usize::from(tag.slot)));
        assert_eq!(s.free(), 0);
    }

    #[test]
    fn close_reports_each_outstanding_once() {
        let mut s = opened::<4>();
        let a = s.claim().unwrap();
        let b = s.claim().unwrap();
        assert!(s.release(a));
        let c = s.claim().unwrap();
        let mut aborted = Vec::new();
        s.close(|t| aborted.push(t));
        assert_eq!(aborted, [c, b]);
        assert_eq!(s.outstanding(), 0);
        assert_eq!(s.free(), 0);
        assert_eq!(s.next(), None);
        // An answer to an aborted request is refused, before and after the slot is reused.
        assert_eq!(s.lookup(b.id()), Err(IdError::NotOutstanding));
        s.open_all(4);
        let again = s.claim().unwrap();
        assert_eq!(again.slot, c.slot);
        assert_eq!(again.generation, c.generation + 1);
        assert_eq!(s.lookup(c.id()), Err(IdError::NotOutstanding));
        let mut none = 0;
        s.close(|_| none += 1);
        assert_eq!(none, 1);
    }
}
