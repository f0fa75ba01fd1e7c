// SPDX-License-Identifier: GPL-2.0

//! Pages as the block layers see them: a [`PagePtr`] names a `struct page` for a bio, and a
//! [`KernelPage`] is a page-sized buffer in the kernel's address space that request data is
//! copied to or from.

use core::ptr::NonNull;
use kernel::bindings;

/// A page-sized buffer at a kernel address that request data is copied to or from by C
/// (`memcpy` in blk-mq's helpers, never through Rust references). It may be granted to
/// another domain: then the bytes copied out are whatever the peer left there, which is all
/// a peer could make them anyway.
///
/// # Safety
///
/// `kernel_addr` returns the address of `PAGE_SIZE` bytes mapped in the kernel, valid for
/// reads and writes for as long as `self` is borrowed.
pub unsafe trait KernelPage {
    /// The buffer's address.
    fn kernel_addr(&self) -> NonNull<u8>;
}

/// A `struct page` that I/O can be done on: a raw handle that owns nothing, from
/// whoever owns the page (e.g. a grant mapping). It says whether the page may be written (a read-only
/// grant mapping may not be the destination of a read from disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePtr {
    page: NonNull<bindings::page>,
    writable: bool,
}

// SAFETY: an address and a flag; only `unsafe` code (`BlockDevice::submit`) uses the address,
// under its own contract.
unsafe impl Send for PagePtr {}
// SAFETY: as above; nothing is reachable through `&PagePtr`.
unsafe impl Sync for PagePtr {}

impl PagePtr {
    /// A handle on `page`; `writable`: whether data may be read from disk into it.
    ///
    /// Making a handle is safe: using one is `unsafe` ([`crate::block::bio::BlockDevice::submit`]),
    /// under the promise that the page is live for the I/O.
    pub fn new(page: NonNull<bindings::page>, writable: bool) -> PagePtr {
        PagePtr { page, writable }
    }

    /// The `struct page`.
    pub fn as_raw(&self) -> *mut bindings::page {
        self.page.as_ptr()
    }

    /// Whether the page may be the destination of a read from disk.
    pub fn is_writable(&self) -> bool {
        self.writable
    }
}


/// An order-0 page of the kernel's direct map whose owner can give its reference away (to an
/// skb, which frees it with `put_page`).
///
/// # Safety
///
/// `kernel_addr` returns the address of a whole order-0 page of the direct map, with a page
/// reference that `self` owns; after `give_up` the owner no longer uses or frees the page.
pub unsafe trait GivePage: Sized {
    /// The page's address.
    fn kernel_addr(&self) -> NonNull<u8>;
    /// Gives the page's reference away: the page is no longer this value's to free.
    fn give_up(self);

    /// Whether the page belongs to a page pool (`linux::net::PagePool`): an skb given it is
    /// marked for recycling, so the page goes back to its pool when the skb is freed.
    fn from_pool(&self) -> bool {
        false
    }
}
