//! The backend's persistent-grant cache: a bounded set of grants kept mapped across requests.
//!
//! With `feature-persistent`, a frontend reuses a small pool of granted pages, and the backend
//! keeps their mappings instead of mapping and unmapping for every request. The cache lives in
//! a slice of [`CacheSlot`]s the glue allocates (its length is the capacity, so its memory is
//! fixed); when it is full a new grant evicts an old one by the clock algorithm (second
//! chance), skipping entries pinned by requests in flight. A frontend that cycles through
//! endless distinct grants therefore costs map/unmap work, never memory.

use xen_sys::GrantRef;

/// No slot: the end of a hash chain, or an empty bucket.
const NIL: u32 = u32::MAX;

struct Entry<M> {
    gref: GrantRef,
    mapping: M,
    referenced: bool,
    /// Requests in flight using this mapping (a segment each): never evicted while non-zero.
    pins: u32,
    /// The next slot in this entry's hash chain.
    next: u32,
    /// The purge period ([`Clock::tick`]) of its last use.
    used: u32,
}

/// One place in the cache.
///
/// A slot holds an entry and also serves as one bucket of the gref index (a chained hash
/// table with as many buckets as slots), so the index costs no memory of its own.
pub struct CacheSlot<M> {
    /// First slot of the chain of entries whose gref hashes to this bucket.
    head: u32,
    entry: Option<Entry<M>>,
}

impl<M> CacheSlot<M> {
    /// An empty place.
    pub const EMPTY: Self = CacheSlot {
        head: NIL,
        entry: None,
    };

    /// The mapping held here.
    pub fn mapping(&self) -> Option<&M> {
        self.entry.as_ref().map(|e| &e.mapping)
    }
}

/// The clock hand, hash key and counters of a cache (its slots are kept apart, in the glue's
/// memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    hand: usize,
    evictions: u64,
    /// Entries held, kept so that counting them needs no scan of the slots.
    held: usize,
    /// The secret key of the gref hash (SipHash-2-4), chosen at random per connection: a
    /// frontend cannot pick grefs that share a bucket without knowing it.
    key: [u64; 2],
    /// Chain entries visited by lookups, in all (the work a frontend caused).
    probes: u64,
    /// Purge periods so far ([`Cache::purge_unused_next`]); entries are stamped with it when
    /// used.
    tick: u32,
}

impl Clock {
    /// A clock whose gref hash uses `key`; the glue draws it from the kernel's random pool for
    /// each connection.
    pub fn with_key(key: [u64; 2]) -> Self {
        Clock {
            key,
            ..Clock::default()
        }
    }

    /// Mappings the cache holds.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Chain entries visited by lookups so far.
    pub fn probes(&self) -> u64 {
        self.probes
    }
}

/// SipHash-2-4 of one 64-bit word under `key` (Aumasson and Bernstein's keyed hash; the same
/// function Linux uses for hash tables whose keys an attacker chooses).
fn siphash_u64(key: [u64; 2], m: u64) -> u64 {
    let [k0, k1] = key;
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let round = |v: &mut [u64; 4]| {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    };
    // One 8-byte block, then the final block holding only the length (8) in its top byte.
    for block in [m, 8u64 << 56] {
        v[3] ^= block;
        round(&mut v);
        round(&mut v);
        v[0] ^= block;
    }
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// A view of a cache: its slots and its clock.
///
/// Lookups go through a hash index on the gref, so a hit costs a few comparisons rather than a
/// scan of the cache. Grefs are the frontend's choice, so the hash is keyed with a secret
/// drawn per connection ([`Clock::with_key`]): a frontend cannot aim its grefs at one bucket.
/// Even so a chain is never walked beyond the capacity.
pub struct Cache<'a, M> {
    slots: &'a mut [CacheSlot<M>],
    clock: &'a mut Clock,
}

impl<'a, M> Cache<'a, M> {
    /// The cache made of `slots` (capacity `slots.len()`, at most `u32::MAX - 1`) and `clock`.
    ///
    /// `slots` must have been made of [`CacheSlot::EMPTY`] and changed only through `Cache`.
    pub fn new(slots: &'a mut [CacheSlot<M>], clock: &'a mut Clock) -> Self {
        Cache { slots, clock }
    }

    /// Mappings held.
    pub fn len(&self) -> usize {
        self.clock.held
    }

    /// Whether no mapping is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mappings evicted so far.
    pub fn evictions(&self) -> u64 {
        self.clock.evictions
    }

    /// The bucket of `gref`: its keyed hash scaled onto the slots (no division).
    fn bucket(&self, gref: GrantRef) -> usize {
        let h = siphash_u64(self.clock.key, u64::from(gref.raw())) >> 32;
        let n = u64::try_from(self.slots.len()).unwrap_or(u64::MAX);
        usize::try_from((h * n) >> 32).unwrap_or(0)
    }

    /// The slot holding `gref`, if any. Walks at most one chain, bounded by the capacity.
    fn find(&mut self, gref: GrantRef) -> Option<usize> {
        let mut i = self.slots.get(self.bucket(gref))?.head;
        for _ in 0..self.slots.len() {
            self.clock.probes = self.clock.probes.wrapping_add(1);
            let e = self.slots.get(usize::try_from(i).ok()?)?.entry.as_ref()?;
            if e.gref == gref {
                return usize::try_from(i).ok();
            }
            i = e.next;
        }
        None
    }

    /// Links the entry in slot `i` at the head of its bucket's chain.
    fn link(&mut self, i: usize) {
        let Some(gref) = self
            .slots
            .get(i)
            .and_then(|s| s.entry.as_ref())
            .map(|e| e.gref)
        else {
            return;
        };
        let b = self.bucket(gref);
        let (Some(head), Ok(me)) = (self.slots.get(b).map(|s| s.head), u32::try_from(i)) else {
            return;
        };
        if let Some(e) = self.slots.get_mut(i).and_then(|s| s.entry.as_mut()) {
            e.next = head;
        }
        if let Some(s) = self.slots.get_mut(b) {
            s.head = me;
        }
    }

    /// Unlinks the entry in slot `i` from its bucket's chain (the entry stays in place).
    fn unlink(&mut self, i: usize) {
        let Some((gref, next)) = self
            .slots
            .get(i)
            .and_then(|s| s.entry.as_ref())
            .map(|e| (e.gref, e.next))
        else {
            return;
        };
        let Ok(me) = u32::try_from(i) else {
            return;
        };
        let b = self.bucket(gref);
        if self.slots.get(b).map(|s| s.head) == Some(me) {
            if let Some(s) = self.slots.get_mut(b) {
                s.head = next;
            }
            return;
        }
        let mut p = self.slots.get(b).map_or(NIL, |s| s.head);
        for _ in 0..self.slots.len() {
            let Some(e) = usize::try_from(p)
                .ok()
                .and_then(|p| self.slots.get_mut(p))
                .and_then(|s| s.entry.as_mut())
            else {
                return;
            };
            if e.next == me {
                e.next = next;
                return;
            }
            p = e.next;
        }
    }

    /// The slot holding `gref`, pinned once more: no insertion evicts it until as many
    /// [`unpin`](Self::unpin)s.
    pub fn lookup(&mut self, gref: GrantRef) -> Option<usize> {
        let i = self.find(gref)?;
        let e = self.slots.get_mut(i)?.entry.as_mut()?;
        e.referenced = true;
        e.pins = e.pins.saturating_add(1);
        e.used = self.clock.tick;
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
        if n == 0 || u32::try_from(n).map_or(true, |n| n == NIL) {
            return Err(mapping);
        }
        // Two sweeps clear every reference bit, so a victim is found unless all are pinned.
        for _ in 0..2 * n {
            let i = self.clock.hand;
            self.clock.hand = if i + 1 >= n { 0 } else { i + 1 };
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            let victim = match &mut slot.entry {
                None => true,
                Some(e) if e.pins > 0 => false,
                Some(e) if e.referenced => {
                    e.referenced = false;
                    false
                }
                Some(_) => true,
            };
            if victim {
                self.unlink(i);
                let Some(slot) = self.slots.get_mut(i) else {
                    continue;
                };
                let old = slot.entry.replace(Entry {
                    gref,
                    mapping,
                    referenced: true,
                    pins: 1,
                    next: NIL,
                    used: self.clock.tick,
                });
                self.link(i);
                if old.is_some() {
                    self.clock.evictions = self.clock.evictions.wrapping_add(1);
                } else {
                    self.clock.held += 1;
                }
                return Ok((i, old.map(|e| e.mapping)));
            }
        }
        Err(mapping)
    }

    /// Drops one pin of slot `i` (a request using it finished).
    pub fn unpin(&mut self, i: usize) {
        if let Some(e) = self.slots.get_mut(i).and_then(|s| s.entry.as_mut()) {
            e.pins = e.pins.saturating_sub(1);
        }
    }

    /// Starts a new purge period: what [`purge_unused_next`](Self::purge_unused_next)
    /// measures idleness in. The glue ticks once a second, so a period is a second.
    pub fn tick(&mut self) {
        self.clock.tick = self.clock.tick.wrapping_add(1);
    }

    /// Takes out the next mapping, from slot `*from` on, that no request uses and that was
    /// last used `idle` periods ago or more (Linux's `persistent_grant_unused_seconds`), to
    /// unmap; `None` when there is none. `*from` moves past it, so calling this until `None`
    /// (once a period, from 0) scans the slots once.
    pub fn purge_unused_next(&mut self, idle: u32, from: &mut usize) -> Option<M> {
        let now = self.clock.tick;
        let i = *from
            + self.slots.get(*from..)?.iter().position(|s| {
                s.entry
                    .as_ref()
                    .is_some_and(|e| e.pins == 0 && now.wrapping_sub(e.used) >= idle)
            })?;
        *from = i + 1;
        self.unlink(i);
        let e = self.slots.get_mut(i)?.entry.take()?;
        self.clock.held = self.clock.held.saturating_sub(1);
        Some(e.mapping)
    }

    /// Takes out the next mapping no request uses (to unmap at disconnect).
    pub fn drain_unpinned_one(&mut self) -> Option<M> {
        let i = self
            .slots
            .iter()
            .position(|s| s.entry.as_ref().is_some_and(|e| e.pins == 0))?;
        self.unlink(i);
        let e = self.slots.get_mut(i)?.entry.take()?;
        self.clock.held = self.clock.held.saturating_sub(1);
        Some(e.mapping)
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

    /// A small deterministic generator (xorshift) for the model test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Every slot reachable from the index is found by lookup, and every held entry is
    /// reachable: the index agrees with a scan of the slots after any mix of operations.
    fn check_index(c: &mut Cache<'_, u32>) {
        let held: std::vec::Vec<(usize, GrantRef)> = c
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.entry.as_ref().map(|e| (i, e.gref)))
            .collect();
        for &(i, g) in &held {
            let found = c.find(g).expect("a held gref is indexed");
            // Duplicates are allowed (two segments of one batch may map the same gref); the
            // index finds one of them.
            assert_eq!(
                c.slots[found].entry.as_ref().map(|e| e.gref),
                Some(g),
                "slot {i}"
            );
        }
        let mut chained = 0;
        for b in 0..c.slots.len() {
            let mut p = c.slots[b].head;
            while p != NIL {
                let e = c.slots[p as usize]
                    .entry
                    .as_ref()
                    .expect("chains hold entries");
                assert_eq!(c.bucket(e.gref), b, "entry in the wrong chain");
                chained += 1;
                assert!(chained <= held.len(), "a chain loops");
                p = e.next;
            }
        }
        assert_eq!(chained, held.len(), "every entry in exactly one chain");
        assert_eq!(c.len(), held.len(), "the count agrees with the slots");
    }

    #[test]
    fn index_agrees_with_the_slots_under_random_insert_lookup_unpin_and_drain() {
        let mut s = slots::<37>();
        let mut clock = Clock::default();
        let mut c = Cache::new(&mut s, &mut clock);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut pinned: std::vec::Vec<usize> = std::vec::Vec::new();
        for step in 0..20_000u32 {
            match rng.below(10) {
                0..=3 => {
                    let g = GrantRef::new(rng.below(200) as u32);
                    if let Some(i) = c.lookup(g) {
                        assert_eq!(c.slots[i].entry.as_ref().map(|e| e.gref), Some(g));
                        pinned.push(i);
                    } else if let Ok((i, _)) = c.insert(g, step) {
                        pinned.push(i);
                    }
                }
                4..=7 => {
                    if !pinned.is_empty() {
                        let k = rng.below(pinned.len() as u64) as usize;
                        c.unpin(pinned.swap_remove(k));
                    }
                }
                8 => {
                    // A duplicate of a gref that may already be held.
                    let g = GrantRef::new(rng.below(200) as u32);
                    if let Ok((i, _)) = c.insert(g, step) {
                        pinned.push(i);
                    }
                }
                _ => {
                    if rng.below(20) == 0 {
                        while c.drain_unpinned_one().is_some() {}
                    }
                }
            }
            check_index(&mut c);
        }
    }

    #[test]
    fn colliding_grefs_from_a_hostile_frontend_stay_correct_and_bounded() {
        // Grefs chosen to land in one bucket: every lookup walks one long chain, which is
        // never longer than the capacity, and still finds the right entry.
        let mut s = slots::<64>();
        let mut clock = Clock::default();
        let mut c = Cache::new(&mut s, &mut clock);
        let target = c.bucket(GrantRef::new(12345));
        let same: std::vec::Vec<u32> = (0..u32::MAX)
            .filter(|&g| c.bucket(GrantRef::new(g)) == target)
            .take(200)
            .collect();
        assert_eq!(same.len(), 200);
        for &g in &same {
            if let Ok((i, _)) = c.insert(GrantRef::new(g), g) {
                c.unpin(i);
            }
            check_index(&mut c);
        }
        assert_eq!(c.len(), 64);
        for &g in same.iter().rev().take(64) {
            let i = c.lookup(GrantRef::new(g)).expect("recent grefs are cached");
            assert_eq!(c.get(i), Some(&g));
            c.unpin(i);
        }
    }

    #[test]
    fn siphash_matches_the_reference_vector() {
        // The reference implementation's vector for key 00..0f and the message 00..07.
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        assert_eq!(
            siphash_u64(key, 0x0706_0504_0302_0100),
            0x93f5_f579_9a93_2462
        );
    }

    #[test]
    fn grefs_colliding_under_a_guessed_key_do_not_make_lookups_linear() {
        // A hostile frontend fills a 1056-entry cache with grefs that share one bucket under
        // the key it guessed (all zero, or any public constant), then sends 256-segment
        // requests of them. Under that key every lookup walks one chain of 1056 entries;
        // under the connection's secret key the same grefs spread out.
        const CAP: usize = 1056;
        let guessed = [0u64; 2];
        let bucket_of = |key: [u64; 2], g: u32| {
            let h = siphash_u64(key, u64::from(g)) >> 32;
            ((h * CAP as u64) >> 32) as usize
        };
        let aim = bucket_of(guessed, 7);
        let grefs: std::vec::Vec<u32> = (0..u32::MAX)
            .filter(|&g| bucket_of(guessed, g) == aim)
            .take(CAP)
            .collect();
        let work = |key: [u64; 2]| {
            let mut s: std::vec::Vec<CacheSlot<u32>> = (0..CAP).map(|_| CacheSlot::EMPTY).collect();
            let mut clock = Clock::with_key(key);
            let mut c = Cache::new(&mut s, &mut clock);
            for &g in &grefs {
                let (i, old) = c.insert(GrantRef::new(g), g).expect("room");
                assert_eq!(old, None);
                c.unpin(i);
            }
            let before = c.clock.probes;
            for &g in grefs.iter().take(256) {
                let i = c.lookup(GrantRef::new(g)).expect("cached");
                c.unpin(i);
            }
            c.clock.probes - before
        };
        let attacked = work(guessed);
        assert!(
            attacked > 256 * 500,
            "the attack is real: {attacked} probes"
        );
        let keyed = work([0x5eed_1234_abcd_0001, 0x0bad_cafe_f00d_0002]);
        // A chain of a balanced table holds a few entries: allow 8 probes a lookup on average.
        assert!(keyed <= 256 * 8, "{keyed} probes for 256 lookups");
    }
}
