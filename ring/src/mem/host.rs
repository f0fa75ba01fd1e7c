//! Page-aligned heap pages that play the part of granted memory on the host (`std` feature).
//!
//! Tests, fuzz targets, benchmarks and the host simulator build rings over [`HostPages`]. Share
//! one between a front and a back (or two threads, or two simulated domains) with
//! [`Arc`](std::sync::Arc), which also implements [`SharedMemory`]. The `peek_*`/`poke_*`
//! methods are the hostile peer's tools: they read and write any byte, any time, the way a
//! misbehaving domain could.

use super::{SharedMemory, PAGE_SIZE};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::vec::Vec;

/// Offsets of the index words that loom models may touch: the `ring.h` header and the
/// `xenstore_domain_interface` indices.
#[cfg(loom)]
const LOOM_WORDS: [usize; 8] = [0, 4, 8, 12, 2048, 2052, 2056, 2060];

/// Zeroed, page-aligned heap memory of a whole number of pages.
///
/// # Invariants
///
/// `ptr` comes from `alloc_zeroed` with the layout `Self::layout(len)`, `len` is a non-zero
/// multiple of [`PAGE_SIZE`], and the allocation is freed only in `Drop`. No reference to the
/// bytes is ever created: all access goes through raw pointers.
pub struct HostPages {
    ptr: NonNull<u8>,
    len: usize,
    #[cfg(loom)]
    loom_words: [loom::sync::atomic::AtomicU32; 8],
}

// SAFETY: `HostPages` owns its allocation (like a `Box<[u8]>`), and every access to the bytes is
// a volatile or atomic raw-pointer access that tolerates concurrent writers, which is the whole
// point of shared memory.
unsafe impl Send for HostPages {}
// SAFETY: see `Send`: no method hands out a reference to the bytes.
unsafe impl Sync for HostPages {}

impl HostPages {
    fn layout(len: usize) -> Layout {
        match Layout::from_size_align(len, PAGE_SIZE) {
            Ok(layout) => layout,
            Err(_) => panic!("{len} bytes of pages do not fit in the address space"),
        }
    }

    /// Allocates `pages` zeroed pages.
    ///
    /// # Panics
    ///
    /// If `pages` is 0 or the size overflows; aborts if the allocation fails. This type is
    /// host-only test equipment, never built into the kernel.
    pub fn new(pages: usize) -> Self {
        assert!(pages > 0, "a ring needs at least one page");
        let len = pages
            .checked_mul(PAGE_SIZE)
            .expect("page count overflows usize");
        let layout = Self::layout(len);
        // SAFETY: `layout` has a non-zero size (`pages > 0`).
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        // INVARIANT: allocated zeroed with `Self::layout(len)`, `len` a non-zero multiple of a page.
        HostPages {
            ptr,
            len,
            #[cfg(loom)]
            loom_words: Default::default(),
        }
    }

    /// Allocates `pages` zeroed pages behind an [`Arc`](std::sync::Arc), ready to be shared
    /// between a front and a back.
    pub fn shared(pages: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::new(pages))
    }

    /// Returns a pointer to `len` bytes at `offset`.
    ///
    /// # Panics
    ///
    /// If the bytes are not all inside the pages.
    fn span(&self, offset: usize, len: usize) -> *mut u8 {
        let end = offset.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.len),
            "bytes {offset}..+{len} are outside the {} shared bytes",
            self.len
        );
        self.ptr.as_ptr().wrapping_add(offset)
    }

    /// The word at `offset` as an atomic, for the duration of `f`.
    fn with_word<R>(&self, offset: usize, f: impl FnOnce(&AtomicU32) -> R) -> R {
        assert!(offset % 4 == 0, "index words are 4-aligned");
        let ptr = self.span(offset, 4).cast::<u32>();
        // SAFETY: `span` checked the bounds, `offset` is 4-aligned in a page-aligned allocation,
        // the allocation lives as long as `self`, and the ring code accesses index words only
        // atomically. The reference does not outlive `f`.
        f(unsafe { AtomicU32::from_ptr(ptr) })
    }

    /// Reads the 32-bit word at `offset` (atomically, `Acquire`), as the peer would.
    ///
    /// # Panics
    ///
    /// If `offset` is not 4-aligned or the word is outside the pages.
    pub fn peek_u32(&self, offset: usize) -> u32 {
        #[cfg(loom)]
        if let Some(atomic) = self.loom_index(offset) {
            return atomic.load(Ordering::Acquire);
        }
        self.with_word(offset, |w| w.load(Ordering::Acquire))
    }

    /// Writes the 32-bit word at `offset` (atomically, `Release`), as the peer would.
    ///
    /// # Panics
    ///
    /// If `offset` is not 4-aligned or the word is outside the pages.
    pub fn poke_u32(&self, offset: usize, value: u32) {
        #[cfg(loom)]
        if let Some(atomic) = self.loom_index(offset) {
            return atomic.store(value, Ordering::Release);
        }
        self.with_word(offset, |w| w.store(value, Ordering::Release));
    }

    /// Copies bytes at `offset` into `dst` (volatile).
    ///
    /// # Panics
    ///
    /// If the bytes are outside the pages.
    pub fn peek_bytes(&self, offset: usize, dst: &mut [u8]) {
        let ptr = self.span(offset, dst.len());
        for (i, byte) in dst.iter_mut().enumerate() {
            // SAFETY: `span` checked `offset + dst.len()` against the allocation and `i < dst.len()`.
            *byte = unsafe { ptr.add(i).read_volatile() };
        }
    }

    /// Copies `src` into the pages at `offset` (volatile), as a hostile peer could at any time.
    ///
    /// # Panics
    ///
    /// If the bytes are outside the pages.
    pub fn poke_bytes(&self, offset: usize, src: &[u8]) {
        let ptr = self.span(offset, src.len());
        for (i, byte) in src.iter().enumerate() {
            // SAFETY: `span` checked `offset + src.len()` against the allocation and `i < src.len()`.
            unsafe { ptr.add(i).write_volatile(*byte) };
        }
    }

    /// A copy of every byte of the pages, e.g. to compare with the C macros' result.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = std::vec![0; self.len];
        self.peek_bytes(0, &mut bytes);
        #[cfg(loom)]
        for (i, offset) in LOOM_WORDS.iter().enumerate() {
            let value = self.loom_words[i].load(Ordering::Acquire);
            bytes[*offset..*offset + 4].copy_from_slice(&value.to_ne_bytes());
        }
        bytes
    }
}

impl core::fmt::Debug for HostPages {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostPages")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for HostPages {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `ptr` was allocated with exactly this layout and is freed
        // only here, once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) };
    }
}

// SAFETY: by the type invariant the allocation is page-aligned, a non-zero multiple of a page
// long, lives until `Drop`, and `ptr`/`len` never change. No method creates a reference to the
// bytes except the transient `&AtomicU32` of `with_word`, which is itself an atomic access.
unsafe impl SharedMemory for HostPages {
    fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    fn len(&self) -> usize {
        self.len
    }

    #[cfg(loom)]
    fn loom_index(&self, offset: usize) -> Option<&loom::sync::atomic::AtomicU32> {
        let i = LOOM_WORDS.iter().position(|&o| o == offset)?;
        self.loom_words.get(i)
    }
}
