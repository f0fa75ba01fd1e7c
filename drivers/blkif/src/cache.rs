//! The backend's persistent-grant cache: a bounded set of grants kept mapped across requests.
//!
//! With `feature-persistent`, a frontend reuses a small pool of granted pages, and the backend
//! keeps their mappings instead of mapping and unmapping for every request. The cache lives in
//! a slice of [`CacheSlot`]s the glue allocates (its length is the capacity, so its memory is
//! fixed); when it is full a new grant evicts an old one by the clock algorithm (second
//! chance), skipping entries pinned by requests in flight. A frontend that cycles through
//! endless distinct grants therefore costs map/unmap work, never memory.

use xen_sys::GrantRef;

struct Entry<M> {
    gref: GrantRef,
    mapping: M,
    referenced: bool,
    /// Requests in flight using this mapping (a segment each): never evicted while non-zero.
    pins: u32,
}

/// One place in the cache.
pub struct CacheSlot<M>(Option<Entry<M>>);

impl<M> CacheSlot<M> {
    /// An empty place.
    pub const EMPTY: Self = CacheSlot(None);

    /// The mapping held here.
    pub fn mapping(&self) -> Option<&M> {
        self.0.as_ref().map(|e| &e.mapping)
    }
}

/// The clock hand and counters of a cache (its slots are kept apart, in the glue's memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    hand: usize,
    evictions: u64,
}

/// A view of a cache: its slots and its clock.
pub struct Cache<'a, M> {
    slots: &'a mut [CacheSlot<M>],
    clock: &'a mut Clock,
}

impl<'a, M> Cache<'a, M> {
    /// The cache made of `slots` (capacity `slots.len()`) and `clock`.
    pub fn new(slots: &'a mut [CacheSlot<M>], clock: &'a mut Clock) -> Self {
        Cache { slots, clock }
    }

    /// Mappings held.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|e| e.0.is_some()).count()
    }

    /// Whether no mapping is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mappings evicted so far.
    pub fn evictions(&self) -> u64 {
        self.clock.evictions
    }

    /// The slot holding `gref`, pinned once more: no insertion evicts it until as many
    /// [`unpin`](Self::unpin)s.
    pub fn lookup(&mut self, gref: GrantRef) -> Option<usize> {
        let (i, e) = self
            .slots
            .iter_mut()
            .enumerate()
            .find_map(|(i, e)| e.0.as_mut().filter(|e| e.gref == gref).map(|e| (i, e)))?;
        e.referenced = true;
        e.pins = e.pins.saturating_add(1);
        Some(i)
    }

    /// The mapping in slot `i`.
    pub fn get(&self, i: usize) -> Option<&M> {
        self.slots.get(i)?.mapping()
    }

    /// Inserts a mapping, pinned once. Returns its slot and the mapping it evicted (to
    /// unmap), or gives the mapping back if every slot is pinned.
    pub fn insert(&mut self, gref: GrantRef, mapping: M) -> Result<(usize, Option<M>), M> {
        let n = self.slots.len();
        if n == 0 {
            return Err(mapping);
        }
        // Two sweeps clear every reference bit, so a victim is found unless all are pinned.
        for _ in 0..2 * n {
            let i = self.clock.hand;
            self.clock.hand = if i + 1 >= n { 0 } else { i + 1 };
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            let victim = match &mut slot.0 {
                None => true,
                Some(e) if e.pins > 0 => false,
                Some(e) if e.referenced => {
                    e.referenced = false;
                    false
                }
                Some(_) => true,
            };
            if victim {
                let old = slot.0.replace(Entry {
                    gref,
                    mapping,
                    referenced: true,
                    pins: 1,
                });
                if old.is_some() {
                    self.clock.evictions = self.clock.evictions.wrapping_add(1);
                }
                return Ok((i, old.map(|e| e.mapping)));
            }
        }
        Err(mapping)
    }

    /// Drops one pin of slot `i` (a request using it finished).
    pub fn unpin(&mut self, i: usize) {
        if let Some(e) = self.slots.get_mut(i).and_then(|s| s.0.as_mut()) {
            e.pins = e.pins.saturating_sub(1);
        }
    }

    /// Takes out the next mapping no request uses (to unmap at disconnect).
    pub fn drain_unpinned_one(&mut self) -> Option<M> {
        self.slots
            .iter_mut()
            .find(|e| e.0.as_ref().is_some_and(|e| e.pins == 0))
            .and_then(|e| e.0.take())
            .map(|e| e.mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots<const N: usize>() -> [CacheSlot<u32>; N] {
        core::array::from_fn(|_| CacheSlot::EMPTY)
    }

    #[test]
    fn endless_distinct_grants_stay_bounded_and_pinned_entries_survive() {
        let mut s = slots::<4>();
        let mut clock = Clock::default();
        let mut c = Cache::new(&mut s, &mut clock);
        let (a, _) = c.insert(GrantRef::new(100), 100).unwrap();
        c.unpin(a);
        let mut evicted = 0;
        for g in (0..1000u32).filter(|&g| g != 100) {
            // Keep 100 hot and pinned during each insertion.
            assert_eq!(c.lookup(GrantRef::new(100)), Some(a));
            match c.insert(GrantRef::new(g), g) {
                Ok((i, old)) => {
                    if let Some(old) = old {
                        assert_ne!(old, 100);
                        evicted += 1;
                    }
                    c.unpin(i);
                }
                Err(_) => panic!("a slot was free to evict"),
            }
            c.unpin(a);
            assert!(c.len() <= 4);
        }
        assert!(evicted >= 990, "{evicted}");
        assert_eq!(c.get(a), Some(&100));
        let mut all = 0;
        while c.drain_unpinned_one().is_some() {
            all += 1;
        }
        assert_eq!(all, 4);
    }

    #[test]
    fn insert_into_fully_pinned_cache_gives_the_mapping_back() {
        let mut s = slots::<2>();
        let mut clock = Clock::default();
        let mut c = Cache::new(&mut s, &mut clock);
        c.insert(GrantRef::new(1), 1).unwrap();
        c.insert(GrantRef::new(2), 2).unwrap();
        assert_eq!(c.insert(GrantRef::new(3), 3), Err(3));
    }

    #[test]
    fn a_mapping_pinned_twice_needs_two_unpins_and_is_not_drained_while_pinned() {
        let mut s = slots::<1>();
        let mut clock = Clock::default();
        let mut c = Cache::new(&mut s, &mut clock);
        let (i, _) = c.insert(GrantRef::new(7), 7).unwrap();
        assert_eq!(c.lookup(GrantRef::new(7)), Some(i));
        c.unpin(i);
        assert!(c.drain_unpinned_one().is_none());
        assert_eq!(c.insert(GrantRef::new(8), 8), Err(8));
        c.unpin(i);
        assert_eq!(c.drain_unpinned_one(), Some(7));
    }
}
