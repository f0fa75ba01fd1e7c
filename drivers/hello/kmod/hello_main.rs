// SPDX-License-Identifier: GPL-2.0

//! `xenpvrs_hello`: prints the domain id read from XenStore, proving our Rust reaches Xen.

use core::ptr::NonNull;
use kernel::prelude::*;
use kernel::init::{self, InPlaceInit, Zeroable};
use kernel::{c_str, error::from_err_ptr, ffi, str::CStr};
use xen_ring::{impl_slot, BackRing, FrontRing, Notify, SharedMemory, PAGE_SIZE};

module! {
    type: XenHello,
    name: "xenpvrs_hello",
    author: "xen-pv-rs",
    description: "xen-pv-rs: hello from Rust under Xen",
    license: "GPL",
}

/// `struct xenbus_transaction` from `include/xen/xenbus.h`: an id, 0 meaning "no transaction".
#[repr(C)]
#[derive(Clone, Copy)]
struct XenbusTransaction {
    id: u32,
}

extern "C" {
    /// `void *xenbus_read(struct xenbus_transaction t, const char *dir, const char *node,
    /// unsigned int *len)`: a `kmalloc`ed, NUL-terminated copy of the value, or an `ERR_PTR`.
    fn xenbus_read(
        t: XenbusTransaction,
        dir: *const ffi::c_char,
        node: *const ffi::c_char,
        len: *mut ffi::c_uint,
    ) -> *mut ffi::c_void;
}

/// Reads a decimal unsigned value from XenStore `dir/node` outside any transaction.
fn xenstore_read_u32(dir: &CStr, node: &CStr) -> Result<u32> {
    let mut len: ffi::c_uint = 0;
    // SAFETY: `dir` and `node` are NUL-terminated strings that outlive the call; `len` is a valid
    // out-pointer. `xenbus_read` returns a kmalloc'ed buffer or an ERR_PTR, checked next.
    let raw = unsafe {
        xenbus_read(
            XenbusTransaction { id: 0 },
            dir.as_char_ptr(),
            node.as_char_ptr(),
            &mut len,
        )
    };
    let buf = from_err_ptr(raw)?;
    // SAFETY: on success `buf` points to `len` bytes followed by a NUL, owned by us until kfree.
    let value = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) };
    let parsed = core::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or(EINVAL);
    // SAFETY: `buf` came from kmalloc in xenbus_read and is not used after this.
    unsafe { kernel::bindings::kfree(buf) };
    parsed
}

/// One page of kernel memory, page-aligned (kmalloc aligns power-of-two sizes naturally).
#[repr(C, align(4096))]
struct PageBuf([u8; PAGE_SIZE]);

// SAFETY: an array of bytes is valid when all zeroes.
unsafe impl Zeroable for PageBuf {}

/// A zeroed page that plays the shared ring page for a front and a back in the same module.
struct LocalPage(KBox<PageBuf>);

// SAFETY: the pointer is to a live, page-aligned, PAGE_SIZE-byte allocation owned by `self`, so
// it stays valid for as long as the rings that borrow `self`; nothing else in this module reads
// or writes those bytes, all access goes through the ring's accessor.
unsafe impl SharedMemory for LocalPage {
    fn as_ptr(&self) -> NonNull<u8> {
        NonNull::from(&*self.0).cast()
    }
    fn len(&self) -> usize {
        PAGE_SIZE
    }
}

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Req {
    id: u64,
    value: u64,
}
impl_slot!(Req { id, value });

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Rsp {
    id: u64,
    value: u64,
}
impl_slot!(Rsp { id, value });

/// Any ring error becomes `EIO` here: the self-test only reports success or failure.
fn ring_err<E>(_: E) -> Error {
    EIO
}

/// Runs `total` requests in batches through a front and a back ring over one page and checks
/// every response; returns how many notifications the hold-off logic asked for.
fn ring_selftest(total: u64) -> Result<u64> {
    // Zeroed in place: a page-sized value must never be built on the 16 KiB kernel stack.
    let page = LocalPage(KBox::init(init::zeroed::<PageBuf>(), GFP_KERNEL)?);
    let mut front = FrontRing::<_, Req, Rsp>::init(&page).map_err(ring_err)?;
    let mut back = BackRing::<_, Req, Rsp>::attach(&page).map_err(ring_err)?;
    let (mut sent, mut done, mut notifies) = (0u64, 0u64, 0u64);
    while done < total {
        while sent < total && front.free_requests() > 0 {
            front.queue_request(&Req { id: sent, value: sent.wrapping_mul(3) }).map_err(ring_err)?;
            sent += 1;
        }
        if front.push_requests().map_err(ring_err)? == Notify::Yes {
            notifies += 1;
        }
        let mut batch = back.requests(64).map_err(ring_err)?;
        while let Some(req) = batch.next() {
            batch.queue_response(&Rsp { id: req.id, value: req.value.wrapping_add(1) }).map_err(ring_err)?;
        }
        if back.push_responses().map_err(ring_err)? == Notify::Yes {
            notifies += 1;
        }
        while let Some(rsp) = front.next_response().map_err(ring_err)? {
            if rsp.id != done || rsp.value != done.wrapping_mul(3).wrapping_add(1) {
                pr_err!("ring selftest: response {} carries id {} value {}\n", done, rsp.id, rsp.value);
                return Err(EIO);
            }
            done += 1;
        }
    }
    Ok(notifies)
}

struct XenHello {
    domid: u32,
}

impl kernel::Module for XenHello {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // Relative XenStore paths resolve under the caller's own /local/domain/<domid>.
        let domid = xenstore_read_u32(c_str!("domid"), c_str!("")).inspect_err(|e| {
            pr_err!("cannot read domid from XenStore: {:?}\n", e);
        })?;
        pr_info!("XENPVRS-HELLO domid={}\n", domid);
        match ring_selftest(100_000) {
            Ok(n) => pr_info!("XENPVRS-HELLO ring ok requests=100000 notifications={}\n", n),
            Err(e) => pr_err!("XENPVRS-HELLO ring failed: {:?}\n", e),
        }
        Ok(XenHello { domid })
    }
}

impl Drop for XenHello {
    fn drop(&mut self) {
        pr_info!("XENPVRS-HELLO unload domid={}\n", self.domid);
    }
}
