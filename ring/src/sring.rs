//! The shared page of an `io/ring.h` ring: its header, its geometry and its slots.

use crate::error::{GeometryError, Violation};
use crate::index::RingIndex;
use crate::mem::{Region, SharedMemory, Slot, SlotArray, Word, PAGE_SIZE};
use core::mem::{align_of, size_of};

/// The front's request producer index (`req_prod`); only the front writes it.
pub(crate) const REQ_PROD: Word = Word::at(0);
/// The back's request event index (`req_event`); only the back writes it.
pub(crate) const REQ_EVENT: Word = Word::at(4);
/// The back's response producer index (`rsp_prod`); only the back writes it.
pub(crate) const RSP_PROD: Word = Word::at(8);
/// The front's response event index (`rsp_event`); only the front writes it.
pub(crate) const RSP_EVENT: Word = Word::at(12);

/// The shape of a ring: how many slots of which size fit in the shared pages.
///
/// The shared area starts with a 64-byte header (`req_prod`, `req_event`, `rsp_prod`,
/// `rsp_event`, a 4-byte private union, 44 bytes of padding); the slots follow. A slot is the
/// C union of the request and the response: the larger size, rounded up to the larger
/// alignment. The slot count is as many as fit, rounded down to a power of two, so an index
/// maps to its slot with a mask.
///
/// `Geometry::new` is a `const fn`, so wire-format crates can pin the slot count at compile time
/// (blkif on one page: 32 slots; on 16 pages: 512).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Geometry {
    bytes: usize,
    entry_size: usize,
    entries: u32,
}

impl Geometry {
    /// Bytes before the first slot.
    pub const HEADER_SIZE: usize = 64;
    /// The largest ring: 16 pages (`ring-page-order` 4, the limit Linux uses).
    pub const MAX_PAGES: usize = 16;

    /// The geometry of a `Req`/`Rsp` ring in `bytes` of shared memory.
    ///
    /// `bytes` must be 1, 2, 4, 8 or 16 pages; the slot union must be non-empty, aligned to at
    /// most 64 bytes, and fit at least once.
    pub const fn new<Req, Rsp>(bytes: usize) -> Result<Self, GeometryError> {
        let pages = bytes / PAGE_SIZE;
        if bytes % PAGE_SIZE != 0 || !pages.is_power_of_two() || pages > Self::MAX_PAGES {
            return Err(GeometryError::BadLength(bytes));
        }
        let align = max(align_of::<Req>(), align_of::<Rsp>());
        let size = max(size_of::<Req>(), size_of::<Rsp>());
        if size == 0 || align > Self::HEADER_SIZE {
            return Err(GeometryError::BadEntry);
        }
        // Round up to the union's alignment; `size` is at most a few KiB here, no overflow.
        let entry_size = size.div_ceil(align) * align;
        let fit = (bytes - Self::HEADER_SIZE) / entry_size;
        if fit == 0 {
            return Err(GeometryError::BadEntry);
        }
        // Round down to a power of two. `fit` is below 2^16 (64 KiB / 1 byte), so the cast to
        // `u32` is lossless (`TryFrom` is not usable in a `const fn`).
        let entries = 1u32 << (usize::BITS - 1 - fit.leading_zeros());
        Ok(Geometry {
            bytes,
            entry_size,
            entries,
        })
    }

    /// The number of slots (`RING_SIZE`), a power of two.
    pub const fn entries(&self) -> u32 {
        self.entries
    }

    /// The size of one slot in bytes (`sizeof(union ..._sring_entry)`).
    pub const fn entry_size(&self) -> usize {
        self.entry_size
    }

    /// The size of the shared area in bytes.
    pub const fn bytes(&self) -> usize {
        self.bytes
    }

    /// The byte offset of the slot that `index` names.
    pub const fn slot_offset(&self, index: RingIndex) -> usize {
        // `entries` is a power of two, so the mask keeps the slot below `entries`; with
        // `entries * entry_size <= bytes - 64` the result is inside the shared area.
        let slot = (index.get() & (self.entries - 1)) as usize;
        Self::HEADER_SIZE + slot * self.entry_size
    }
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Validates the peer's producer index against our consumer window.
///
/// Counting from `base`, the oldest entry we still track (the back: its `rsp_prod_pvt`; the
/// front: its `rsp_cons`), our consumer `cons` must not be past the peer's producer `prod`, and
/// `prod` must not be more than `limit` entries past `base` (the back: the ring size; the
/// front: the requests it has published and not yet seen answered). On success returns the
/// number of entries ready to consume, `prod - cons`, which is at most `limit`.
///
/// `entries` only chooses which violation to report for an index that moved backwards.
pub(crate) const fn check_producer(
    prod: RingIndex,
    base: RingIndex,
    cons: RingIndex,
    limit: u32,
    entries: u32,
) -> Result<u32, Violation> {
    let produced = prod.since(base);
    let consumed = cons.since(base);
    if produced > limit {
        // Far ahead, or a little behind `base` (the peer moved its index backwards).
        let behind = base.since(prod);
        if behind != 0 && behind <= entries {
            return Err(Violation::ConsumerPastProducer { prod, cons });
        }
        return Err(Violation::ProducerOverflow { prod, cons });
    }
    if produced < consumed {
        return Err(Violation::ConsumerPastProducer { prod, cons });
    }
    Ok(produced - consumed)
}

/// The shared area of a ring: its memory, checked against its geometry.
///
/// # Invariants
///
/// `geometry` was computed for `Req`/`Rsp` from the region's length, and `slots` is that
/// geometry's slot array (from byte [`Geometry::HEADER_SIZE`], `entries` slots of
/// `entry_size` bytes).
pub(crate) struct SharedRing<M, Req, Rsp> {
    slots: SlotArray<M, Req, Rsp>,
    geometry: Geometry,
}

impl<M: SharedMemory, Req: Slot, Rsp: Slot> SharedRing<M, Req, Rsp> {
    /// Checks that `mem` can hold a `Req`/`Rsp` ring.
    pub(crate) fn new(mem: M) -> Result<Self, GeometryError> {
        let geometry = Geometry::new::<Req, Rsp>(mem.len())?;
        let region = Region::new(mem).ok_or(GeometryError::Misaligned)?;
        // `Geometry::new` already guarantees what `SlotArray::new` checks again (the slots fit
        // after the header, the slot size is a multiple of both alignments); a failure here
        // would be a bug in `Geometry`, reported as a bad entry rather than a panic.
        let slots = SlotArray::new(
            region,
            Geometry::HEADER_SIZE,
            geometry.entry_size(),
            geometry.entries(),
        )
        .ok_or(GeometryError::BadEntry)?;
        // INVARIANT: computed from this very memory's length, and the slots from the geometry.
        Ok(SharedRing { slots, geometry })
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub(crate) fn memory(&self) -> &M {
        self.slots.region().memory()
    }

    pub(crate) fn into_memory(self) -> M {
        self.slots.into_region().into_inner()
    }

    /// Zeroes the header and every slot (done by the front before it shares the pages).
    pub(crate) fn zero_all(&self) -> Result<(), Violation> {
        let region = self.slots.region();
        region.zero(0, region.len()).ok_or(Violation::OutOfBounds)
    }

    #[inline]
    pub(crate) fn load(&self, word: Word) -> RingIndex {
        RingIndex::new(self.slots.region().load_acquire(word))
    }

    #[inline]
    pub(crate) fn store(&self, word: Word, index: RingIndex) {
        self.slots.region().store_release(word, index.get());
    }

    /// Copies the request in the slot `index` names out, once.
    #[inline]
    pub(crate) fn read_request(&self, index: RingIndex) -> Req {
        self.slots.read_a(index.get())
    }

    /// Copies `req` into the slot `index` names.
    #[inline]
    pub(crate) fn write_request(&self, index: RingIndex, req: &Req) {
        self.slots.write_a(index.get(), req);
    }

    /// Copies the response in the slot `index` names out, once.
    #[inline]
    pub(crate) fn read_response(&self, index: RingIndex) -> Rsp {
        self.slots.read_b(index.get())
    }

    /// Copies `rsp` into the slot `index` names.
    #[inline]
    pub(crate) fn write_response(&self, index: RingIndex, rsp: &Rsp) {
        self.slots.write_b(index.get(), rsp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    #[repr(C)]
    struct Blkif {
        bytes: [u64; 14],
    }

    #[test]
    fn geometry_matches_ring_h() {
        // blkif: 112-byte requests, 32 slots per page, 512 on 16 pages.
        let g = Geometry::new::<Blkif, [u8; 16]>(4096).unwrap();
        assert_eq!((g.entry_size(), g.entries()), (112, 32));
        let g = Geometry::new::<Blkif, [u8; 16]>(16 * 4096).unwrap();
        assert_eq!(g.entries(), 512);
        // netif tx (12 B) and rx (8 B): 256 slots.
        assert_eq!(
            Geometry::new::<[u32; 3], [u16; 4]>(4096).unwrap().entries(),
            256
        );
        assert_eq!(
            Geometry::new::<[u16; 4], [u16; 4]>(4096).unwrap().entries(),
            256
        );
        // vscsiif: 252-byte requests (4-aligned) → 16 slots.
        assert_eq!(
            Geometry::new::<[u32; 63], [u8; 4]>(4096).unwrap().entries(),
            16
        );
        // Union rounding: 9 bytes at 8-byte alignment is a 16-byte slot.
        let g = Geometry::new::<[u8; 9], u64>(4096).unwrap();
        assert_eq!((g.entry_size(), g.entries()), (16, 128));
    }

    #[test]
    fn geometry_rejects_bad_sizes() {
        for bytes in [0, 100, 4095, 3 * 4096, 32 * 4096] {
            assert_eq!(
                Geometry::new::<u64, u64>(bytes),
                Err(GeometryError::BadLength(bytes))
            );
        }
        assert_eq!(Geometry::new::<(), ()>(4096), Err(GeometryError::BadEntry));
        assert_eq!(
            Geometry::new::<[u8; 4096], u8>(4096),
            Err(GeometryError::BadEntry)
        );
    }

    #[test]
    fn check_producer_window() {
        let i = RingIndex::new;
        assert_eq!(check_producer(i(5), i(0), i(2), 32, 32), Ok(3));
        assert_eq!(check_producer(i(32), i(0), i(0), 32, 32), Ok(32));
        assert_eq!(
            check_producer(i(33), i(0), i(0), 32, 32),
            Err(Violation::ProducerOverflow {
                prod: i(33),
                cons: i(0)
            })
        );
        assert_eq!(
            check_producer(i(1), i(0), i(2), 32, 32),
            Err(Violation::ConsumerPastProducer {
                prod: i(1),
                cons: i(2)
            })
        );
        assert_eq!(
            check_producer(i(u32::MAX), i(0), i(0), 32, 32),
            Err(Violation::ConsumerPastProducer {
                prod: i(u32::MAX),
                cons: i(0)
            })
        );
        // Across the wrap: base just below 2^32, producer just above.
        assert_eq!(
            check_producer(i(3), i(u32::MAX - 1), i(u32::MAX), 32, 32),
            Ok(4)
        );
    }
}
