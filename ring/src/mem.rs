//! The shared-memory accessor: the only code in this crate that touches memory a peer can write.
//!
//! Everything else in the crate goes through [`Region`], which offers exactly four kinds of
//! access, none of which hands out a Rust reference into the shared pages:
//!
//! - 32-bit ring indices: atomic loads with `Acquire` and stores with `Release`;
//! - one volatile copy of a whole [`Slot`] in or out of the slot array of an `io/ring.h` ring
//!   ([`SlotArray`]; the value is copied once, then owned);
//! - volatile byte copies in or out (for the byte-stream rings);
//! - [`full_barrier`], the `xen_mb()` that `ring.h` puts between publishing an index and reading
//!   the peer's event index.
//!
//! Offsets are checked against the region on every access: a wrong offset yields `None`, never
//! an access outside the pages. The one exception is [`SlotArray`]: it checks its geometry
//! against the region when it is built, and any index then names a whole slot inside it, so
//! there is nothing left to check per access.
//!
//! Under `cfg(loom)` the index words a model touches are routed to loom's atomics (see
//! [`SharedMemory::loom_index`]) and the barrier becomes loom's fence, so the model checker
//! sees every ordering decision this crate makes. Kbuild never sets `loom`.

#[cfg(any(test, feature = "std"))]
mod host;

#[cfg(any(test, feature = "std"))]
pub use host::HostPages;

use core::marker::PhantomData;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

/// Bytes in a Xen page: ring protocols use 4 KiB pages whatever the guest's own page size.
pub const PAGE_SIZE: usize = 4096;

/// Memory shared with a peer domain: granted pages, mapped pages, or host pages in tests.
///
/// The ring types take any `SharedMemory`, so the kernel glue (grant-mapped or granted pages)
/// and the host simulator (`HostPages` with the `std` feature) use the very same protocol code.
///
/// # Safety
///
/// For as long as the value lives, an implementation guarantees:
///
/// - `as_ptr()` and `len()` return the same values on every call;
/// - the bytes `[as_ptr(), as_ptr() + len())` are valid for reads and writes, and stay mapped
///   and allocated;
/// - `as_ptr()` is aligned to [`PAGE_SIZE`] and `len()` is a non-zero multiple of it;
/// - nothing holds a Rust reference (`&`, `&mut`) to those bytes: they are reached only through
///   raw pointers (volatile or atomic accesses), because the peer may write any byte at any time.
///
/// The peer writing concurrently is expected and allowed; the ring code assumes nothing about
/// the contents.
pub unsafe trait SharedMemory {
    /// The first byte of the shared pages.
    fn as_ptr(&self) -> NonNull<u8>;

    /// The length of the shared pages in bytes.
    fn len(&self) -> usize;

    /// Whether the memory is empty; never true for a valid implementation.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Under `cfg(loom)` only: the loom atomic that stands in for the index word at `offset`.
    ///
    /// Memory that is not meant for loom models keeps the default (`None`).
    #[cfg(loom)]
    #[doc(hidden)]
    fn loom_index(&self, _offset: usize) -> Option<&loom::sync::atomic::AtomicU32> {
        None
    }
}

// SAFETY: a shared reference lives no longer than the value it borrows, so every guarantee
// `T` makes for its own lifetime holds for the reference's.
unsafe impl<T: SharedMemory + ?Sized> SharedMemory for &T {
    fn as_ptr(&self) -> NonNull<u8> {
        (**self).as_ptr()
    }

    fn len(&self) -> usize {
        (**self).len()
    }

    #[cfg(loom)]
    fn loom_index(&self, offset: usize) -> Option<&loom::sync::atomic::AtomicU32> {
        (**self).loom_index(offset)
    }
}

#[cfg(any(test, feature = "std"))]
// SAFETY: the `Arc` keeps the inner value alive for as long as the `Arc` lives, so the inner
// value's guarantees carry over.
unsafe impl<T: SharedMemory + ?Sized> SharedMemory for std::sync::Arc<T> {
    fn as_ptr(&self) -> NonNull<u8> {
        (**self).as_ptr()
    }

    fn len(&self) -> usize {
        (**self).len()
    }

    #[cfg(loom)]
    fn loom_index(&self, offset: usize) -> Option<&loom::sync::atomic::AtomicU32> {
        (**self).loom_index(offset)
    }
}

/// A plain wire type that may be copied to and from shared memory.
///
/// Use [`impl_slot!`](crate::impl_slot) for your own `#[repr(C)]` structs: it checks the
/// padding rule at compile time.
///
/// # Safety
///
/// An implementation guarantees that the type:
///
/// - accepts every bit pattern as a valid value (no `bool`, `char`, enums, references or
///   pointers), because the peer chooses the bytes we copy in;
/// - has no padding bytes, not even at the end, so copying a value out never leaks
///   uninitialised kernel memory to the peer (XSA-216, XSA-403);
/// - has no interior mutability and no drop glue (it is `Copy`).
pub unsafe trait Slot: Copy {}

macro_rules! primitive_slots {
    ($($t:ty),*) => {
        $(
            // SAFETY: a primitive integer accepts every bit pattern and has no padding.
            unsafe impl Slot for $t {}
        )*
    };
}

primitive_slots!(u8, u16, u32, u64, i8, i16, i32, i64);

// SAFETY: an array has no padding between or after its elements (its size is `N` times the
// element size, which is a multiple of the element alignment), and it accepts every bit pattern
// its elements accept.
unsafe impl<T: Slot, const N: usize> Slot for [T; N] {}

/// Returns the size of the field a projection closure names; used by [`impl_slot!`](crate::impl_slot).
#[doc(hidden)]
pub const fn field_size<S, F: Slot>(_field: fn(&S) -> &F) -> usize {
    size_of::<F>()
}

/// Implements [`Slot`] for a struct after proving, at compile time, that it has no padding.
///
/// List every field of the struct, once each: the macro checks that the list is exhaustive
/// (an exhaustive struct pattern), that every field is itself a `Slot`, and that the field sizes
/// add up to the size of the struct (so there is no padding anywhere).
///
/// ```
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct Request {
///     id: u64,
///     op: u8,
///     pad: [u8; 3],
///     len: u32,
/// }
/// xen_ring::impl_slot!(Request { id, op, pad, len });
/// ```
///
/// A struct with a hole is rejected:
///
/// ```compile_fail
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct Holey {
///     op: u8,
///     id: u64,
/// }
/// xen_ring::impl_slot!(Holey { op, id });
/// ```
#[macro_export]
macro_rules! impl_slot {
    ($ty:path { $($field:tt),+ $(,)? }) => {
        const _: () = {
            // Fails to compile unless the list names every field exactly once.
            #[allow(dead_code)]
            fn every_field_listed(value: &$ty) {
                let $ty { $($field: _),+ } = value;
            }
            let fields = 0 $(+ $crate::field_size::<$ty, _>(|s| &s.$field))+;
            assert!(
                fields == ::core::mem::size_of::<$ty>(),
                "the struct has padding bytes",
            );
        };
        // SAFETY: every field is a `Slot` (the `field_size` bound), the list above names each
        // field exactly once, and the field sizes add up to the size of the struct, so there is
        // no padding and every bit pattern is valid.
        unsafe impl $crate::Slot for $ty {}
    };
}

/// A 32-bit index word inside the first page of a region.
///
/// # Invariants
///
/// The offset is a multiple of 4 and the word lies entirely inside the first [`PAGE_SIZE`]
/// bytes (checked when the constant is built; every `Word` in this crate is a `const`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Word(usize);

impl Word {
    /// The index word at byte `offset` of the first page.
    pub(crate) const fn at(offset: usize) -> Self {
        assert!(offset % 4 == 0 && offset + 4 <= PAGE_SIZE);
        // INVARIANT: checked just above.
        Word(offset)
    }

    /// The byte offset of the word.
    #[cfg(test)]
    pub(crate) const fn offset(self) -> usize {
        self.0
    }
}

/// Shared memory with the geometry checks done once, up front.
///
/// # Invariants
///
/// `mem.as_ptr()` is aligned to [`PAGE_SIZE`] and `mem.len() >= PAGE_SIZE`.
pub(crate) struct Region<M> {
    mem: M,
}

impl<M: SharedMemory> Region<M> {
    /// Wraps `mem` after checking that it is page-aligned and at least one page long.
    pub(crate) fn new(mem: M) -> Option<Self> {
        let aligned = mem.as_ptr().as_ptr() as usize % PAGE_SIZE == 0;
        if !aligned || mem.len() < PAGE_SIZE {
            return None;
        }
        // INVARIANT: both conditions were checked just above.
        Some(Region { mem })
    }

    /// The length of the region in bytes.
    pub(crate) fn len(&self) -> usize {
        self.mem.len()
    }

    /// The memory this region wraps.
    pub(crate) fn memory(&self) -> &M {
        &self.mem
    }

    /// Gives the memory back.
    pub(crate) fn into_inner(self) -> M {
        self.mem
    }

    /// Returns a pointer to `len` bytes at `offset`, or `None` unless they lie inside the region
    /// and `offset` is a multiple of `align` (a power of two, at most [`PAGE_SIZE`]). No division:
    /// a kernel build must not carry a divide-by-zero panic path here.
    fn span(&self, offset: usize, len: usize, align: usize) -> Option<*mut u8> {
        let end = offset.checked_add(len)?;
        if end > self.mem.len()
            || !align.is_power_of_two()
            || align > PAGE_SIZE
            || offset & (align - 1) != 0
        {
            return None;
        }
        // The result is only a pointer; it is not dereferenced here, so `wrapping_add` keeps this
        // function free of `unsafe`. `offset + len <= len()` makes it point inside the region.
        Some(self.mem.as_ptr().as_ptr().wrapping_add(offset))
    }

    /// Loads the index word `word` with `Acquire` ordering: every slot write the peer made before
    /// publishing this value is visible afterwards.
    pub(crate) fn load_acquire(&self, word: Word) -> u32 {
        #[cfg(loom)]
        if let Some(atomic) = self.mem.loom_index(word.0) {
            return atomic.load(Ordering::Acquire);
        }
        let ptr = self
            .mem
            .as_ptr()
            .as_ptr()
            .wrapping_add(word.0)
            .cast::<u32>();
        // SAFETY: by the `Word` invariant the 4 bytes at `word.0` lie inside the first page and are
        // 4-aligned; by the `Region` invariant the region is page-aligned and at least a page long,
        // and `SharedMemory` makes it valid for the region's lifetime. Every access to the word
        // (ours and the peer's) is atomic; the `&AtomicU32` never leaves this function.
        unsafe { AtomicU32::from_ptr(ptr) }.load(Ordering::Acquire)
    }

    /// Stores the index word `word` with `Release` ordering: every slot write made before is
    /// visible to a peer that loads this value.
    pub(crate) fn store_release(&self, word: Word, value: u32) {
        #[cfg(loom)]
        if let Some(atomic) = self.mem.loom_index(word.0) {
            return atomic.store(value, Ordering::Release);
        }
        let ptr = self
            .mem
            .as_ptr()
            .as_ptr()
            .wrapping_add(word.0)
            .cast::<u32>();
        // SAFETY: as in `load_acquire`: in bounds, aligned, valid, and only accessed atomically.
        unsafe { AtomicU32::from_ptr(ptr) }.store(value, Ordering::Release);
    }

    /// Copies `dst.len()` bytes at `offset` out of shared memory.
    ///
    /// Returns `None` (and copies nothing) if the bytes are not all inside the region.
    pub(crate) fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Option<()> {
        let ptr = self.span(offset, dst.len(), 1)?;
        for (i, byte) in dst.iter_mut().enumerate() {
            // SAFETY: `span` checked that `offset + dst.len()` bytes fit in the region and
            // `i < dst.len()`; bytes have no alignment and no invalid values.
            *byte = unsafe { ptr.add(i).read_volatile() };
        }
        Some(())
    }

    /// Copies `src` into shared memory at `offset`.
    ///
    /// Returns `None` (and copies nothing) if the bytes are not all inside the region.
    pub(crate) fn write_bytes(&self, offset: usize, src: &[u8]) -> Option<()> {
        let ptr = self.span(offset, src.len(), 1)?;
        for (i, byte) in src.iter().enumerate() {
            // SAFETY: `span` checked that `offset + src.len()` bytes fit in the region and
            // `i < src.len()`.
            unsafe { ptr.add(i).write_volatile(*byte) };
        }
        Some(())
    }

    /// Zeroes `len` bytes at `offset`.
    ///
    /// Returns `None` (and writes nothing) if the bytes are not all inside the region.
    pub(crate) fn zero(&self, offset: usize, len: usize) -> Option<()> {
        let ptr = self.span(offset, len, 1)?;
        for i in 0..len {
            // SAFETY: `span` checked that `offset + len` bytes fit in the region and `i < len`.
            unsafe { ptr.add(i).write_volatile(0) };
        }
        Some(())
    }
}

/// The slot array of an `io/ring.h` ring: `entries` slots of `entry_size` bytes starting at
/// byte `offset` of a region, each holding an `A` or a `B` (the request/response union).
///
/// The geometry is checked against the region once, in [`SlotArray::new`]; an index is then
/// reduced to a slot with a mask, so every access is in bounds by construction and costs no
/// check. Each access is still one volatile copy of a whole value, in or out.
///
/// # Invariants
///
/// - `mask + 1` is a power of two (the slot count), and
///   `offset + (mask + 1) * entry_size <= region.len()` without overflow;
/// - `size_of::<A>()` and `size_of::<B>()` are at most `entry_size`;
/// - `offset` and `entry_size` are multiples of `align_of::<A>()` and of `align_of::<B>()`
///   (the region itself is page-aligned, and both alignments are at most a page).
pub(crate) struct SlotArray<M, A, B> {
    region: Region<M>,
    offset: usize,
    entry_size: usize,
    mask: u32,
    _slots: PhantomData<fn() -> (A, B)>,
}

impl<M: SharedMemory, A: Slot, B: Slot> SlotArray<M, A, B> {
    /// Builds the slot array after checking every invariant against `region`; `None` if one
    /// fails.
    pub(crate) fn new(
        region: Region<M>,
        offset: usize,
        entry_size: usize,
        entries: u32,
    ) -> Option<Self> {
        let fits = |t_size: usize, t_align: usize| {
            t_size <= entry_size
                && t_align <= PAGE_SIZE
                && offset & (t_align - 1) == 0
                && entry_size & (t_align - 1) == 0
        };
        let bytes = usize::try_from(entries).ok()?.checked_mul(entry_size)?;
        let end = offset.checked_add(bytes)?;
        if !entries.is_power_of_two()
            || end > region.len()
            || !fits(size_of::<A>(), align_of::<A>())
            || !fits(size_of::<B>(), align_of::<B>())
        {
            return None;
        }
        // INVARIANT: each condition was checked just above (alignments are powers of two, so
        // `& (align - 1)` is the remainder).
        Some(SlotArray {
            region,
            offset,
            entry_size,
            mask: entries - 1,
            _slots: PhantomData,
        })
    }

    /// The region the slots live in (for the index words).
    pub(crate) fn region(&self) -> &Region<M> {
        &self.region
    }

    /// Gives the region back.
    pub(crate) fn into_region(self) -> Region<M> {
        self.region
    }

    /// The first byte of the slot that `index` names (`index & mask`).
    #[inline]
    fn slot(&self, index: u32) -> *mut u8 {
        // `mask` fits in `u32`, so in `usize` on every target this crate builds for (32 and
        // 64 bits); the conversion cannot fail, and `unwrap_or` keeps a panic path out.
        let slot = usize::try_from(index & self.mask).unwrap_or(0);
        // By the invariant, `offset + slot * entry_size + entry_size <= len` with no overflow:
        // wrapping arithmetic only keeps overflow checks out of the kernel build. Only a
        // pointer is computed here; `wrapping_add` keeps this function free of `unsafe`.
        let at = self.offset.wrapping_add(slot.wrapping_mul(self.entry_size));
        self.region.mem.as_ptr().as_ptr().wrapping_add(at)
    }

    /// Copies the `A` in the slot `index` names out of shared memory, once.
    #[inline]
    pub(crate) fn read_a(&self, index: u32) -> A {
        // SAFETY: by the invariant the slot lies inside the region and is aligned for `A`
        // (region page-aligned, `offset` and `entry_size` multiples of `align_of::<A>()`), and
        // `size_of::<A>() <= entry_size`. `SharedMemory` makes the bytes valid for reads. The
        // peer may be writing them: a torn value is harmless because `Slot` accepts every bit
        // pattern, and volatile keeps the compiler from reading the slot again later.
        unsafe { read_words(self.slot(index).cast::<A>()) }
    }

    /// Copies `value` into the slot `index` names.
    #[inline]
    pub(crate) fn write_a(&self, index: u32, value: &A) {
        // SAFETY: in bounds and aligned for `A` as in `read_a`; `SharedMemory` makes the bytes
        // valid for writes, and `Slot` means `A` has no padding to leak.
        unsafe { write_words(self.slot(index).cast::<A>(), value) };
    }

    /// Copies the `B` in the slot `index` names out of shared memory, once.
    #[inline]
    pub(crate) fn read_b(&self, index: u32) -> B {
        // SAFETY: as in `read_a`, with the invariant's conditions for `B`.
        unsafe { read_words(self.slot(index).cast::<B>()) }
    }

    /// Copies `value` into the slot `index` names.
    #[inline]
    pub(crate) fn write_b(&self, index: u32, value: &B) {
        // SAFETY: as in `write_a`, with the invariant's conditions for `B`.
        unsafe { write_words(self.slot(index).cast::<B>(), value) };
    }
}

/// Copies a `T` out of shared memory with one volatile load per word of `T`'s alignment (at most
/// 8 bytes), each shared byte read once, into a private value.
///
/// Compared with `src.read_volatile()` of the whole aggregate, the private side is an ordinary
/// value the compiler may keep in registers; only the shared accesses are volatile.
///
/// # Safety
///
/// `src` is valid for reads of a `T` and aligned for `T`.
#[inline(always)]
unsafe fn read_words<T: Slot>(src: *const T) -> T {
    let align = align_of::<T>();
    if align >= 8 {
        // SAFETY: forwarded from the caller; `u64` words fit `T`'s alignment.
        unsafe { read_as::<T, u64>(src) }
    } else if align == 4 {
        // SAFETY: as above, with `u32` words.
        unsafe { read_as::<T, u32>(src) }
    } else if align == 2 {
        // SAFETY: as above, with `u16` words.
        unsafe { read_as::<T, u16>(src) }
    } else {
        // SAFETY: as above, with bytes.
        unsafe { read_as::<T, u8>(src) }
    }
}

/// [`read_words`] with the word type `W` chosen.
///
/// # Safety
///
/// As for [`read_words`], and `align_of::<W>() <= align_of::<T>()`, so `size_of::<T>()` (a
/// multiple of its alignment) is a whole number of `W` and every `W` is aligned.
#[inline(always)]
unsafe fn read_as<T: Slot, W: Slot>(src: *const T) -> T {
    let mut out = MaybeUninit::<T>::uninit();
    let (src, dst) = (src.cast::<W>(), out.as_mut_ptr().cast::<W>());
    for i in 0..size_of::<T>() / size_of::<W>() {
        // SAFETY: word `i` lies inside both `T`s (`i * size_of::<W>() < size_of::<T>()`) and is
        // aligned (both pointers are aligned for `T`, hence for `W`). `src` is valid for reads
        // by the caller's contract; `out` is ours.
        unsafe { dst.add(i).write(src.add(i).read_volatile()) };
    }
    // SAFETY: every byte of `out` was written above, and `T: Slot` accepts every bit pattern.
    unsafe { out.assume_init() }
}

/// Copies `value` into shared memory with one volatile store per word of `T`'s alignment (at
/// most 8 bytes), each shared byte written once.
///
/// # Safety
///
/// `dst` is valid for writes of a `T` and aligned for `T`.
#[inline(always)]
unsafe fn write_words<T: Slot>(dst: *mut T, value: &T) {
    let align = align_of::<T>();
    if align >= 8 {
        // SAFETY: forwarded from the caller; `u64` words fit `T`'s alignment.
        unsafe { write_as::<T, u64>(dst, value) }
    } else if align == 4 {
        // SAFETY: as above, with `u32` words.
        unsafe { write_as::<T, u32>(dst, value) }
    } else if align == 2 {
        // SAFETY: as above, with `u16` words.
        unsafe { write_as::<T, u16>(dst, value) }
    } else {
        // SAFETY: as above, with bytes.
        unsafe { write_as::<T, u8>(dst, value) }
    }
}

/// [`write_words`] with the word type `W` chosen.
///
/// # Safety
///
/// As for [`write_words`], and `align_of::<W>() <= align_of::<T>()`.
#[inline(always)]
unsafe fn write_as<T: Slot, W: Slot>(dst: *mut T, value: &T) {
    let (src, dst) = (core::ptr::from_ref(value).cast::<W>(), dst.cast::<W>());
    for i in 0..size_of::<T>() / size_of::<W>() {
        // SAFETY: word `i` lies inside both `T`s and is aligned, as in `read_as`. `T: Slot` has
        // no padding, so every word of `value` is initialised: no uninitialised byte reaches the
        // peer. `dst` is valid for writes by the caller's contract.
        unsafe { dst.add(i).write_volatile(src.add(i).read()) };
    }
}

/// A full memory barrier (`xen_mb()`): our earlier index store is visible to the peer before
/// our next load of the peer's index, and vice versa for a peer that does the same.
#[inline]
pub(crate) fn full_barrier() {
    #[cfg(not(loom))]
    core::sync::atomic::fence(Ordering::SeqCst);
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host pages seen from `skew` bytes in, to fake a misaligned mapping.
    struct Skewed(HostPages, usize);

    // SAFETY: the pointer stays inside the `HostPages` allocation (`skew` is below a page and the
    // length shrinks by a page), which lives as long as `self`. Only page alignment is broken,
    // on purpose: that is what the test checks `Region::new` refuses.
    unsafe impl SharedMemory for Skewed {
        fn as_ptr(&self) -> NonNull<u8> {
            let base = self.0.as_ptr().as_ptr().wrapping_add(self.1);
            NonNull::new(base).unwrap_or(self.0.as_ptr())
        }

        fn len(&self) -> usize {
            self.0.len() - PAGE_SIZE
        }
    }

    #[test]
    fn rejects_misaligned_memory() {
        assert!(Region::new(Skewed(HostPages::new(2), 8)).is_none());
        assert!(Region::new(Skewed(HostPages::new(2), 0)).is_some());
        assert!(
            Region::new(Skewed(HostPages::new(1), 0)).is_none(),
            "zero length"
        );
    }

    #[test]
    fn rejects_accesses_outside_the_region() {
        let region = Region::new(HostPages::new(1)).unwrap();
        assert_eq!(region.write_bytes(PAGE_SIZE, &[1]), None);
        assert_eq!(region.read_bytes(PAGE_SIZE - 4, &mut [0; 8]), None);
        assert_eq!(region.write_bytes(PAGE_SIZE - 1, &[1, 2]), None);
        assert_eq!(region.read_bytes(usize::MAX, &mut [0; 2]), None);
        assert_eq!(region.zero(1, PAGE_SIZE), None);
        assert_eq!(region.write_bytes(PAGE_SIZE - 2, &[1, 2]), Some(()));
        let mut back = [0; 2];
        assert_eq!(region.read_bytes(PAGE_SIZE - 2, &mut back), Some(()));
        assert_eq!(back, [1, 2]);
    }

    #[test]
    fn slot_array_rejects_geometry_outside_the_region() {
        let slots = |offset, size, entries| {
            SlotArray::<_, u64, [u8; 16]>::new(
                Region::new(HostPages::new(1)).unwrap(),
                offset,
                size,
                entries,
            )
            .is_some()
        };
        assert!(slots(64, 16, 128));
        assert!(!slots(64, 16, 127), "not a power of two");
        assert!(!slots(64, 16, 0), "no slots");
        assert!(!slots(64, 16, 256), "runs past the page");
        assert!(!slots(0, 16, 1 << 31), "overflows");
        assert!(!slots(64, 8, 4), "B larger than a slot");
        assert!(
            !slots(64, 20, 4),
            "slot size not a multiple of A's alignment"
        );
        assert!(!slots(4, 16, 4), "offset misaligned for A");
        assert!(!slots(usize::MAX - 8, 16, 1), "offset overflows");
    }

    #[test]
    fn slot_array_masks_every_index_into_the_ring() {
        let pages = HostPages::shared(1);
        let slots =
            SlotArray::<_, u64, u64>::new(Region::new(pages.clone()).unwrap(), 64, 8, 4).unwrap();
        for index in [0, 1, 2, 3, 4, 7, u32::MAX] {
            slots.write_a(index, &u64::from(index));
        }
        // Index 4 lands on slot 0, 7 and 2^32 - 1 on slot 3; nothing is written past slot 3.
        assert_eq!(slots.read_b(0), 4);
        assert_eq!(slots.read_a(3), u64::from(u32::MAX));
        assert_eq!(slots.read_b(2), 2);
        let mut after = [0u8; 8];
        pages.peek_bytes(64 + 4 * 8, &mut after);
        assert_eq!(after, [0; 8]);
    }
}
