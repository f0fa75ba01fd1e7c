// SPDX-License-Identifier: GPL-2.0

//! XenStore through the kernel's xenbus client: an implementation of xen-core's `XenStore`.
//!
//! Reads, writes, directories, removals and transactions map one to one onto `xenbus_read`,
//! `xenbus_write`, `xenbus_directory`, `xenbus_rm` and `xenbus_transaction_{start,end}`.
//! Watches are registered with `register_xenbus_watch`; their callback (the kernel's xenwatch
//! thread) records that the watch fired and kicks the owning device ([`crate::Kick`]), which
//! then drains events with `poll_watch` from its own context. The kernel coalesces nothing per
//! path, so an event reports the watched path itself; the pending count is bounded by
//! saturation, so a flood of events costs one re-read, never memory.
//!
//! Every watch is unregistered by `unwatch` or, at the latest, when the [`KernelStore`] is
//! dropped; `unregister_xenbus_watch` waits for a callback in flight, so no callback runs
//! after either.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::error::from_err_ptr;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::types::Opaque;
use xen_core::xs::{
    Errno, Error, Path, Perm, PermList, Strings, TxId, WatchEvent, WatchId, XenStore,
};
use xen_kbindings as b;
use xen_sys::DomId;

use crate::{stats, Kick, KickReason};

/// Watches one store can hold at once.
pub const MAX_WATCHES: usize = 4;
/// Longest path (with its NUL) passed to the kernel.
const PATH_CAP: usize = 256;
/// Longest value (with its NUL) written.
const VALUE_CAP: usize = 256;

/// One registered watch.
///
/// # Invariants
///
/// While registered, `watch.node` points into `node`, and `target` is the device to kick.
struct WatchSlot<K: Kick> {
    watch: Opaque<b::xenbus_watch>,
    node: [u8; PATH_CAP],
    node_len: usize,
    pending: AtomicU32,
    target: Arc<K>,
}

/// The kernel's XenStore, for one device whose watches kick `K`.
pub struct KernelStore<K: Kick> {
    target: Arc<K>,
    slots: [Option<Pin<KBox<WatchSlot<K>>>>; MAX_WATCHES],
    generations: [u16; MAX_WATCHES],
}

// SAFETY: the watch slots are only touched by the owner (`&mut self`) and, through atomics, by
// the watch callback; the kernel's watch list is protected by its own locks.
unsafe impl<K: Kick> Send for KernelStore<K> {}

impl<K: Kick> KernelStore<K> {
    /// A store whose watches kick `target`.
    pub fn new(target: Arc<K>) -> Self {
        KernelStore {
            target,
            slots: [None, None, None, None],
            generations: [0; MAX_WATCHES],
        }
    }

    /// Writes the formatted `args` at `path` (the `xenbus_printf` of this API), e.g.
    /// `store.write_fmt(tx, path, format_args!("{}", port))`.
    pub fn write_fmt(
        &mut self,
        t: TxId,
        path: Path<'_>,
        args: core::fmt::Arguments<'_>,
    ) -> Result<(), Error> {
        let mut value = [0u8; VALUE_CAP];
        let mut w = Cursor {
            buf: &mut value,
            at: 0,
        };
        core::fmt::write(&mut w, args).map_err(|_| Error::NoSpace)?;
        let len = w.at;
        self.write(t, path, value.get(..len).unwrap_or(&[]))
    }

    /// Unregisters every watch (also done on drop).
    pub fn unwatch_all(&mut self) {
        for slot in self.slots.iter_mut() {
            if let Some(w) = slot.take() {
                unregister(w);
            }
        }
    }
}

impl<K: Kick> Drop for KernelStore<K> {
    fn drop(&mut self) {
        self.unwatch_all();
    }
}

fn unregister<K: Kick>(w: Pin<KBox<WatchSlot<K>>>) {
    // SAFETY: the watch was registered when the slot was filled; this waits for a callback in
    // flight and discards queued events, so the slot can be freed afterwards.
    unsafe { b::unregister_xenbus_watch(w.watch.get()) };
    stats::dec(&stats::WATCHES);
    drop(w);
}

unsafe extern "C" fn watch_callback<K: Kick>(
    watch: *mut b::xenbus_watch,
    _path: *const kernel::ffi::c_char,
    _token: *const kernel::ffi::c_char,
) {
    // SAFETY: `watch` is the `watch` field of a registered `WatchSlot<K>` (only such watches
    // get this callback), which stays allocated until unregistered, and unregistration waits
    // for this callback to return. `Opaque<T>` is transparent over `T`.
    let slot = unsafe {
        &*kernel::container_of!(watch.cast::<Opaque<b::xenbus_watch>>(), WatchSlot<K>, watch)
    };
    let _ = slot
        .pending
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            Some(n.saturating_add(1))
        });
    K::kick(slot.target.as_arc_borrow(), KickReason::Watch);
}

/// The positive errno of a kernel return value as a XenStore error.
fn xs_error(ret: i32) -> Error {
    let errno = ret.checked_neg().unwrap_or(0);
    Errno::ALL
        .iter()
        .find(|e| e.to_linux() == errno)
        .map_or(Error::Transport, |e| Error::Daemon(*e))
}

fn check(ret: i32) -> Result<(), Error> {
    if ret < 0 {
        Err(xs_error(ret))
    } else {
        Ok(())
    }
}

/// `bytes` with a NUL appended, in `buf`; fails with `err` if it does not fit or holds a NUL.
fn to_c<'a, const N: usize>(
    bytes: &[u8],
    buf: &'a mut [u8; N],
    err: Error,
) -> Result<&'a [u8], Error> {
    if bytes.contains(&0) {
        return Err(Error::Malformed);
    }
    let dst = buf.get_mut(..bytes.len()).ok_or(err)?;
    dst.copy_from_slice(bytes);
    let with_nul = buf.get_mut(..bytes.len().wrapping_add(1)).ok_or(err)?;
    if let Some(last) = with_nul.last_mut() {
        *last = 0;
    }
    Ok(with_nul)
}

fn tx(t: TxId) -> b::xenbus_transaction {
    b::xenbus_transaction { id: t.0 }
}

const EMPTY: &[u8; 1] = b"\0";

impl<K: Kick> XenStore for KernelStore<K> {
    fn read(&mut self, t: TxId, path: Path<'_>, buf: &mut [u8]) -> Result<usize, Error> {
        let mut p = [0u8; PATH_CAP];
        let p = to_c(path.as_bytes(), &mut p, Error::PathTooLong)?;
        let mut len: kernel::ffi::c_uint = 0;
        // SAFETY: both strings are NUL-terminated and outlive the call; `len` is a valid
        // out-pointer. The result is a kmalloc'ed buffer or an ERR_PTR.
        let raw =
            unsafe { b::xenbus_read(tx(t), p.as_ptr().cast(), EMPTY.as_ptr().cast(), &mut len) };
        let value = from_err_ptr(raw).map_err(|e| xs_error(e.to_errno()))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let result = match buf.get_mut(..len) {
            Some(dst) => {
                // SAFETY: on success `value` holds `len` bytes (plus a NUL) that we own.
                let src = unsafe { core::slice::from_raw_parts(value.cast::<u8>(), len) };
                dst.copy_from_slice(src);
                Ok(len)
            }
            None => Err(Error::NoSpace),
        };
        // SAFETY: `value` was kmalloc'ed by xenbus_read and is not used after this.
        unsafe { b::kfree(value) };
        result
    }

    fn write(&mut self, t: TxId, path: Path<'_>, value: &[u8]) -> Result<(), Error> {
        let mut p = [0u8; PATH_CAP];
        let p = to_c(path.as_bytes(), &mut p, Error::PathTooLong)?;
        let mut v = [0u8; VALUE_CAP];
        let v = to_c(value, &mut v, Error::NoSpace)?;
        // SAFETY: all three strings are NUL-terminated and outlive the call.
        check(unsafe {
            b::xenbus_write(
                tx(t),
                p.as_ptr().cast(),
                EMPTY.as_ptr().cast(),
                v.as_ptr().cast(),
            )
        })
    }

    fn directory<'a>(
        &mut self,
        t: TxId,
        path: Path<'_>,
        buf: &'a mut [u8],
    ) -> Result<Strings<'a>, Error> {
        let mut p = [0u8; PATH_CAP];
        let p = to_c(path.as_bytes(), &mut p, Error::PathTooLong)?;
        let mut num: kernel::ffi::c_uint = 0;
        // SAFETY: both strings are NUL-terminated and outlive the call; `num` is a valid
        // out-pointer. The result is one kmalloc'ed block (the pointer array followed by the
        // strings) or an ERR_PTR.
        let raw = unsafe {
            b::xenbus_directory(tx(t), p.as_ptr().cast(), EMPTY.as_ptr().cast(), &mut num)
        };
        let list = from_err_ptr(raw).map_err(|e| xs_error(e.to_errno()))?;
        let num = usize::try_from(num).unwrap_or(0);
        let mut used = 0usize;
        let mut result = Ok(());
        for i in 0..num {
            // SAFETY: `list` holds `num` pointers to NUL-terminated strings in the same block.
            let name = unsafe { kernel::str::CStr::from_char_ptr(*list.add(i)) };
            let bytes = name.as_bytes_with_nul();
            let end = used.checked_add(bytes.len());
            match end.and_then(|end| buf.get_mut(used..end)) {
                Some(dst) => dst.copy_from_slice(bytes),
                None => {
                    result = Err(Error::NoSpace);
                    break;
                }
            }
            used = used.wrapping_add(bytes.len());
        }
        // SAFETY: the block was kmalloc'ed by xenbus_directory and is not used after this.
        unsafe { b::kfree(list.cast()) };
        result?;
        Strings::new(buf.get(..used).unwrap_or(&[]))
    }

    fn mkdir(&mut self, t: TxId, path: Path<'_>) -> Result<(), Error> {
        let mut p = [0u8; PATH_CAP];
        let p = to_c(path.as_bytes(), &mut p, Error::PathTooLong)?;
        // SAFETY: both strings are NUL-terminated and outlive the call.
        check(unsafe { b::xenbus_mkdir(tx(t), p.as_ptr().cast(), EMPTY.as_ptr().cast()) })
    }

    fn remove(&mut self, t: TxId, path: Path<'_>) -> Result<(), Error> {
        let mut p = [0u8; PATH_CAP];
        let p = to_c(path.as_bytes(), &mut p, Error::PathTooLong)?;
        // SAFETY: both strings are NUL-terminated and outlive the call.
        check(unsafe { b::xenbus_rm(tx(t), p.as_ptr().cast(), EMPTY.as_ptr().cast()) })
    }

    /// The kernel exports no permission calls: `ENOSYS`.
    fn get_perms<'a>(
        &mut self,
        _t: TxId,
        _path: Path<'_>,
        _buf: &'a mut [u8],
    ) -> Result<PermList<'a>, Error> {
        Err(Error::Daemon(Errno::Enosys))
    }

    /// The kernel exports no permission calls: `ENOSYS`.
    fn set_perms(&mut self, _t: TxId, _path: Path<'_>, _perms: &[Perm]) -> Result<(), Error> {
        Err(Error::Daemon(Errno::Enosys))
    }

    fn transaction_start(&mut self) -> Result<TxId, Error> {
        let mut t = b::xenbus_transaction { id: 0 };
        // SAFETY: `t` is a valid out-pointer.
        check(unsafe { b::xenbus_transaction_start(&mut t) })?;
        Ok(TxId(t.id))
    }

    fn transaction_end(&mut self, t: TxId, commit: bool) -> Result<(), Error> {
        // SAFETY: ends a transaction id the kernel gave us; a stale id is refused by xenstored.
        check(unsafe { b::xenbus_transaction_end(tx(t), i32::from(!commit)) })
    }

    fn watch(&mut self, path: Path<'_>) -> Result<WatchId, Error> {
        let (index, slot) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.is_none())
            .ok_or(Error::TooManyWatches)?;
        let mut node = [0u8; PATH_CAP];
        let len = to_c(path.as_bytes(), &mut node, Error::PathTooLong)?.len();
        let w = KBox::pin(
            WatchSlot {
                watch: Opaque::new(b::xenbus_watch {
                    callback: Some(watch_callback::<K>),
                    ..Default::default()
                }),
                node,
                node_len: len.wrapping_sub(1),
                pending: AtomicU32::new(0),
                target: self.target.clone(),
            },
            GFP_KERNEL,
        )
        .map_err(|_| Error::NoSpace)?;
        // SAFETY: the slot is pinned on the heap: `node` will not move while registered.
        unsafe { (*w.watch.get()).node = w.node.as_ptr().cast() };
        // SAFETY: the watch is fully initialised and stays allocated and pinned until
        // `unregister`, which runs before the slot is freed (unwatch, unwatch_all, drop).
        check(unsafe { b::register_xenbus_watch(w.watch.get()) })?;
        stats::inc(&stats::WATCHES);
        let generation = self.generations.get(index).copied().unwrap_or(0);
        // INVARIANT: registered with `node` and `target` set.
        *slot = Some(w);
        let slot = u16::try_from(index).map_err(|_| Error::TooManyWatches)?;
        Ok(WatchId { slot, generation })
    }

    fn unwatch(&mut self, id: WatchId) -> Result<(), Error> {
        let index = usize::from(id.slot);
        if self.generations.get(index).copied() != Some(id.generation) {
            return Err(Error::NoSuchWatch);
        }
        let w = self
            .slots
            .get_mut(index)
            .and_then(Option::take)
            .ok_or(Error::NoSuchWatch)?;
        unregister(w);
        if let Some(g) = self.generations.get_mut(index) {
            *g = g.wrapping_add(1);
        }
        Ok(())
    }

    fn poll_watch(&mut self, id: WatchId, buf: &mut [u8]) -> Result<Option<WatchEvent>, Error> {
        let index = usize::from(id.slot);
        if self.generations.get(index).copied() != Some(id.generation) {
            return Err(Error::NoSuchWatch);
        }
        let w = self
            .slots
            .get(index)
            .and_then(Option::as_ref)
            .ok_or(Error::NoSuchWatch)?;
        let node = w.node.get(..w.node_len).ok_or(Error::NoSpace)?;
        let dst = buf.get_mut(..node.len()).ok_or(Error::NoSpace)?;
        if w.pending.swap(0, Ordering::AcqRel) == 0 {
            return Ok(None);
        }
        dst.copy_from_slice(node);
        Ok(Some(WatchEvent::Changed { len: node.len() }))
    }

    fn get_domain_path(&mut self, domid: DomId, buf: &mut [u8]) -> Result<usize, Error> {
        let mut w = Cursor { buf, at: 0 };
        core::fmt::write(&mut w, format_args!("/local/domain/{}", domid.raw()))
            .map_err(|_| Error::NoSpace)?;
        Ok(w.at)
    }
}

/// A `fmt::Write` into a byte buffer that fails instead of truncating.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.at.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.buf.get_mut(self.at..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}
