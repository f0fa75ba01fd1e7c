// SPDX-License-Identifier: GPL-2.0

//! `xenpvrs_hello`: prints the domain id read from XenStore, proving our Rust reaches Xen.

use kernel::prelude::*;
use kernel::{c_str, error::from_err_ptr, ffi, str::CStr};

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
        Ok(XenHello { domid })
    }
}

impl Drop for XenHello {
    fn drop(&mut self) {
        pr_info!("XENPVRS-HELLO unload domid={}\n", self.domid);
    }
}
