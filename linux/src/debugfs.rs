// SPDX-License-Identifier: GPL-2.0

//! Counters in debugfs: a directory of read-only `u64` files over a queue's atomics.

use kernel::ffi::{c_char, c_void};
use core::sync::atomic::AtomicU64;
use kernel::prelude::*;
use kernel::sync::Arc;

extern "C" {
    fn xpvrs_debugfs_counters(
        dir: *const c_char,
        names: *const *const c_char,
        vals: *mut u64,
        n: u32,
    ) -> *mut c_void;
    fn xpvrs_debugfs_remove(d: *mut c_void);
}

/// Read-only counters in debugfs: `/sys/kernel/debug/<dir>/<name>` for each name, the values
/// being an `[AtomicU64; N]` inside an `Arc<Q>` (a queue), which this value keeps alive.
///
/// Writers update the atomics; debugfs reads them as plain `u64`s (same layout), which is
/// fine for counters.
pub struct DebugCounters<Q> {
    dentry: *mut c_void,
    _owner: Arc<Q>,
}

// SAFETY: a dentry pointer the kernel lets any thread remove, and an `Arc` of a type that is
// itself sent and shared only as its own bounds allow.
unsafe impl<Q: Send + Sync> Send for DebugCounters<Q> {}
// SAFETY: no `&self` methods.
unsafe impl<Q: Send + Sync> Sync for DebugCounters<Q> {}

impl<Q> DebugCounters<Q> {
    /// Creates the directory `dir` and one file per name, showing `values(&owner)`; `None`
    /// when debugfs refused (no debugfs, or no memory), which costs only the files.
    pub fn new<const N: usize>(
        dir: &kernel::str::CStr,
        names: &[&'static kernel::str::CStr; N],
        owner: Arc<Q>,
        values: fn(&Q) -> &[AtomicU64; N],
    ) -> Option<Self> {
        let ptrs: [*const c_char; N] = core::array::from_fn(|i| {
            names.get(i).map_or(core::ptr::null(), |n| n.as_char_ptr())
        });
        let vals = core::ptr::from_ref(values(&owner)).cast_mut().cast::<u64>();
        // SAFETY: the names are NUL-terminated statics; `vals` points at `N` `u64`-sized
        // atomics inside `owner`'s allocation, which does not move and which `self` keeps
        // alive until `drop` has removed the files (debugfs drains readers on removal).
        let dentry = unsafe { xpvrs_debugfs_counters(dir.as_char_ptr(), ptrs.as_ptr(), vals, N as u32) };
        if dentry.is_null() {
            None
        } else {
            Some(DebugCounters {
                dentry,
                _owner: owner,
            })
        }
    }

    /// One directory per queue, named by `name`: what both block drivers publish after
    /// connecting. A queue whose files debugfs refused is skipped.
    pub fn for_queues<'a, const N: usize>(
        queues: impl Iterator<Item = &'a Arc<Q>>,
        names: &[&'static kernel::str::CStr; N],
        values: fn(&Q) -> &[AtomicU64; N],
        name: impl Fn(&Q) -> Result<kernel::str::CString>,
    ) -> Result<KVec<Self>>
    where
        Q: 'a,
    {
        let mut out = KVec::new();
        for q in queues {
            let dir = name(q)?;
            if let Some(d) = Self::new(&dir, names, q.clone(), values) {
                out.push(d, GFP_KERNEL)?;
            }
        }
        Ok(out)
    }
}

impl<Q> Drop for DebugCounters<Q> {
    fn drop(&mut self) {
        // SAFETY: created in `new`, removed once; readers are drained by debugfs.
        unsafe { xpvrs_debugfs_remove(self.dentry) };
    }
}
