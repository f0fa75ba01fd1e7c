//! The ids of a netfront table: which are free, which are outstanding, and a stack of free ones linked through the table's own entries.
//!
//! A netif id is the entry's index, a `u16` on the wire with no generation in it (unlike
//! blkif's 64-bit ids, which is what `xen_core::slots::Slots` is for). Keeping each id's
//! state and its link in its own table entry, rather than in arrays beside the table, means
//! the bookkeeping lives wherever the table does (on the heap in a kernel module) and the
//! engine itself stays a few hundred bytes per side, whatever the table's length.
//!
//! The protocol of use mirrors `Slots`: [`IdStack::open_all`] makes ids `0..n` free, id 0
//! handed out first; [`IdStack::claim`] takes the top of the stack; [`IdStack::release`] puts
//! an outstanding id back on top (so it is the next handed out); [`IdStack::close`] ends a
//! connection, reporting each outstanding id once and leaving none free.

/// Where an id is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not available (never opened, or closed).
    Closed,
    /// On the free stack.
    Free,
    /// Handed out: something of the engine's is in flight under it.
    Outstanding,
}

/// One id's bookkeeping, kept in its table entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdLink {
    state: State,
    /// While free: the free id below this one on the stack.
    below: Option<u16>,
}

impl IdLink {
    /// A closed id, as every entry starts.
    pub(crate) const CLOSED: IdLink = IdLink {
        state: State::Closed,
        below: None,
    };

    /// Whether the id is closed and links nothing (a fresh entry's state).
    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed && self.below.is_none()
    }

    /// Whether the id is handed out.
    pub(crate) fn is_outstanding(&self) -> bool {
        self.state == State::Outstanding
    }
}

/// An entry of a table whose ids an [`IdStack`] keeps.
pub(crate) trait Linked {
    /// The entry's id bookkeeping.
    fn link_mut(&mut self) -> &mut IdLink;
}

/// The free ids of one table and the count of outstanding ones. The table itself is passed
/// to each call; an id is its entry's index.
///
/// # Invariants
///
/// Following `top` and then each entry's `below` visits exactly the entries whose state is
/// `Free`, each once, `free` of them; `outstanding` entries are `Outstanding`. (Given that
/// every call is passed the same table, which only this type's methods change the links of.)
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdStack {
    top: Option<u16>,
    free: usize,
    outstanding: usize,
}

impl IdStack {
    /// A stack with no id free.
    pub(crate) const fn new() -> Self {
        IdStack {
            top: None,
            free: 0,
            outstanding: 0,
        }
    }

    /// Ids free.
    pub(crate) fn free(&self) -> usize {
        self.free
    }

    /// Ids outstanding.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The id the next [`claim`](Self::claim) will return. Nothing changes.
    pub(crate) fn next(&self) -> Option<u16> {
        self.top
    }

    /// Makes the closed id `id` free, on top of the stack. `false` (and nothing changes) if
    /// it names no entry or is not closed.
    pub(crate) fn open<E: Linked>(&mut self, table: &mut [E], id: u16) -> bool {
        let Some(link) = table.get_mut(usize::from(id)).map(Linked::link_mut) else {
            return false;
        };
        if link.state != State::Closed {
            return false;
        }
        // INVARIANT: a closed id is not on the stack; it goes on top as it becomes free.
        *link = IdLink {
            state: State::Free,
            below: self.top,
        };
        self.top = Some(id);
        self.free += 1;
        true
    }

    /// Makes ids `0..n` free (those of them that are closed), id 0 on top.
    pub(crate) fn open_all<E: Linked>(&mut self, table: &mut [E], n: usize) {
        let n = n.min(table.len()).min(usize::from(u16::MAX) + 1);
        for id in (0..n).rev() {
            if let Ok(id) = u16::try_from(id) {
                self.open(table, id);
            }
        }
    }

    /// Takes the id on top of the stack, which becomes outstanding. `None` if none is free.
    pub(crate) fn claim<E: Linked>(&mut self, table: &mut [E]) -> Option<u16> {
        let id = self.top?;
        let link = table.get_mut(usize::from(id))?.link_mut();
        if link.state != State::Free {
            // Not reachable while the invariant holds.
            return None;
        }
        // INVARIANT: the top leaves the stack as its state leaves `Free`.
        self.top = link.below.take();
        link.state = State::Outstanding;
        self.free -= 1;
        self.outstanding += 1;
        Some(id)
    }

    /// Frees the outstanding id `id`: it goes on top of the stack. `false` (and nothing
    /// changes) if it names no entry or is not outstanding.
    pub(crate) fn release<E: Linked>(&mut self, table: &mut [E], id: u16) -> bool {
        let Some(link) = table.get_mut(usize::from(id)).map(Linked::link_mut) else {
            return false;
        };
        if link.state != State::Outstanding {
            return false;
        }
        link.state = State::Closed;
        self.outstanding -= 1;
        self.open(table, id)
    }

    /// Ends the connection: calls `aborted` once with each outstanding entry (in id order),
    /// and closes every id: none is free until opened again.
    pub(crate) fn close<E: Linked>(&mut self, table: &mut [E], mut aborted: impl FnMut(&mut E)) {
        // INVARIANT: the stack empties as every id becomes closed.
        self.top = None;
        self.free = 0;
        self.outstanding = 0;
        for e in table.iter_mut() {
            let was = core::mem::replace(e.link_mut(), IdLink::CLOSED);
            if was.state == State::Outstanding {
                aborted(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    struct E(IdLink);

    impl Linked for E {
        fn link_mut(&mut self) -> &mut IdLink {
            &mut self.0
        }
    }

    fn table<const N: usize>() -> [E; N] {
        [E(IdLink::CLOSED); N]
    }

    #[test]
    fn low_ids_first_and_released_ids_reused_first() {
        let mut t = table::<4>();
        let mut s = IdStack::new();
        s.open_all(&mut t, 4);
        assert_eq!((s.free(), s.outstanding()), (4, 0));
        assert_eq!(s.next(), Some(0));
        assert_eq!(s.claim(&mut t), Some(0));
        assert_eq!(s.claim(&mut t), Some(1));
        assert!(t[1].0.is_outstanding() && !t[2].0.is_outstanding());
        assert_eq!((s.free(), s.outstanding()), (2, 2));
        assert!(s.release(&mut t, 0));
        assert_eq!(s.next(), Some(0));
        assert_eq!(s.claim(&mut t), Some(0));
        assert_eq!(s.claim(&mut t), Some(2));
        assert_eq!(s.claim(&mut t), Some(3));
        assert_eq!(s.claim(&mut t), None);
        assert_eq!((s.free(), s.outstanding()), (0, 4));
    }

    #[test]
    fn release_of_an_id_not_outstanding_changes_nothing() {
        let mut t = table::<3>();
        let mut s = IdStack::new();
        s.open_all(&mut t, 3);
        // Free, out of range, or released twice: refused, the stack intact.
        assert!(!s.release(&mut t, 1));
        assert!(!s.release(&mut t, 3));
        assert!(!s.release(&mut t, u16::MAX));
        let id = s.claim(&mut t).unwrap();
        assert!(s.release(&mut t, id));
        assert!(!s.release(&mut t, id));
        assert_eq!((s.free(), s.outstanding()), (3, 0));
        let mut got = [s.claim(&mut t), s.claim(&mut t), s.claim(&mut t)];
        got.sort_unstable();
        assert_eq!(got, [Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn close_reports_outstanding_once_and_frees_nothing() {
        let mut t = table::<4>();
        let mut s = IdStack::new();
        s.open_all(&mut t, 4);
        s.claim(&mut t);
        s.claim(&mut t);
        let mut n = 0;
        s.close(&mut t, |_| n += 1);
        assert_eq!(n, 2);
        assert_eq!((s.free(), s.outstanding(), s.next()), (0, 0, None));
        assert!(t.iter().all(|e| e.0.is_closed()));
        s.close(&mut t, |_| n += 1);
        assert_eq!(n, 2);
        // Opened again: all four, id 0 first.
        s.open_all(&mut t, 4);
        assert_eq!(s.claim(&mut t), Some(0));
    }

    #[test]
    fn open_all_is_bounded_by_the_table() {
        let mut t = table::<2>();
        let mut s = IdStack::new();
        s.open_all(&mut t, 10);
        assert_eq!(s.free(), 2);
        // Opening an open id again changes nothing.
        s.open_all(&mut t, 2);
        assert_eq!(s.free(), 2);
        assert!(!s.open(&mut t, 1));
    }
}
