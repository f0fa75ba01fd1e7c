//! The backend's persistent-grant cache: a bounded set of grants kept mapped across requests.
//!
//! With `feature-persistent`, a frontend reuses a small pool of granted pages, and the backend
//! keeps their mappings instead of mapping and unmapping for every request. The cache holds at
//! most `N` mappings (a const generic, so its memory is fixed); when it is full a new grant
//! evicts an old one by the clock algorithm (second chance), skipping entries pinned by the
//! request being served. A frontend that cycles through endless distinct grants therefore costs
//! map/unmap work, never memory.

use xen_sys::GrantRef;

struct Entry<M> {
    gref: GrantRef,
    mapping: M,
    referenced: bool,
    pinned: bool,
}

/// Up to `N` grant mappings, looked up by grant reference.
pub struct PersistentCache<M, const N: usize> {
    entries: [Option<Entry<M>>; N],
    hand: usize,
    evictions: u64,
}

impl<M, const N: usize> Default for PersistentCache<M, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M, const N: usize> PersistentCache<M, N> {
    /// An empty cache.
    pub fn new() -> Self {
        PersistentCache {
            entries: core::array::from_fn(|_| None),
            hand: 0,
            evictions: 0,
        }
    }

    /// Mappings held.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.is_some()).count()
    }

    /// Whether no mapping is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mappings evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The slot holding `gref`, pinned so that no insertion evicts it until
    /// [`unpin_all`](Self::unpin_all).
    pub fn lookup(&mut self, gref: GrantRef) -> Option<usize> {
        let (i, e) = self
            .entries
            .iter_mut()
            .enumerate()
            .find_map(|(i, e)| e.as_mut().filter(|e| e.gref == gref).map(|e| (i, e)))?;
        e.referenced = true;
        e.pinned = true;
        Some(i)
    }

    /// The mapping in slot `i`.
    pub fn get(&self, i: usize) -> Option<&M> {
        self.entries.get(i)?.as_ref().map(|e| &e.mapping)
    }

    /// Inserts a pinned mapping. Returns its slot and the mapping it evicted (to unmap), or
    /// gives the mapping back if every slot is pinned.
    pub fn insert(&mut self, gref: GrantRef, mapping: M) -> Result<(usize, Option<M>), M> {
        if N == 0 {
            return Err(mapping);
        }
        // Two sweeps clear every reference bit, so a victim is found unless all are pinned.
        for _ in 0..2 * N {
            let i = self.hand;
            self.hand = if i + 1 >= N { 0 } else { i + 1 };
            let Some(slot) = self.entries.get_mut(i) else {
                continue;
            };
            let victim = match slot {
                None => true,
                Some(e) if e.pinned => false,
                Some(e) if e.referenced => {
                    e.referenced = false;
                    false
                }
                Some(_) => true,
            };
            if victim {
                let old = slot.replace(Entry {
                    gref,
                    mapping,
                    referenced: true,
                    pinned: true,
                });
                if old.is_some() {
                    self.evictions = self.evictions.wrapping_add(1);
                }
                return Ok((i, old.map(|e| e.mapping)));
            }
        }
        Err(mapping)
    }

    /// Unpins every entry (after a request is served).
    pub fn unpin_all(&mut self) {
        for e in self.entries.iter_mut().flatten() {
            e.pinned = false;
        }
    }

    /// Takes the next mapping out (to unmap everything at disconnect).
    pub fn drain_one(&mut self) -> Option<M> {
        self.entries
            .iter_mut()
            .find_map(|e| e.take())
            .map(|e| e.mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_distinct_grants_stay_bounded_and_pinned_entries_survive() {
        let mut c = PersistentCache::<u32, 4>::new();
        let (a, _) = c.insert(GrantRef::new(100), 100).unwrap();
        c.unpin_all();
        let mut evicted = 0;
        for g in (0..1000u32).filter(|&g| g != 100) {
            // Keep 100 hot and pinned during each insertion.
            assert_eq!(c.lookup(GrantRef::new(100)), Some(a));
            match c.insert(GrantRef::new(g), g) {
                Ok((_, Some(old))) => {
                    assert_ne!(old, 100);
                    evicted += 1;
                }
                Ok((_, None)) => {}
                Err(_) => panic!("a slot was free to evict"),
            }
            c.unpin_all();
            assert!(c.len() <= 4);
        }
        assert!(evicted >= 990, "{evicted}");
        assert_eq!(c.get(a), Some(&100));
        let mut all = 0;
        while c.drain_one().is_some() {
            all += 1;
        }
        assert_eq!(all, 4);
    }

    #[test]
    fn insert_into_fully_pinned_cache_gives_the_mapping_back() {
        let mut c = PersistentCache::<u32, 2>::new();
        c.insert(GrantRef::new(1), 1).unwrap();
        c.insert(GrantRef::new(2), 2).unwrap();
        assert_eq!(c.insert(GrantRef::new(3), 3), Err(3));
    }
}
