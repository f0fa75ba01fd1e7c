// SPDX-License-Identifier: GPL-2.0
//! A tick for a driver object: a kernel timer that calls [`Tick::tick`] every period
//! ([`Ticker::start`]), for housekeeping that must happen also when no event comes (Linux's
//! backends wake their threads on a timeout for the same reasons: purging unused persistent
//! grants, noticing a resized device, printing statistics), or once per [`Ticker::arm`]
//! ([`Ticker::one_shot`]), for a retry later (a network frontend that could not allocate
//! receive buffers polls again in a moment rather than spinning).
//!
//! The timer runs in softirq context, so `tick` must not sleep: it typically sets a flag and
//! queues the object's work item.

use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};

/// Opaque: the C helper's timer (`timer_helpers.h`).
#[repr(C)]
struct XpvrsTicker {
    _opaque: [u8; 0],
}

extern "C" {
    fn xpvrs_ticker_start(
        period_ms: kernel::ffi::c_uint,
        fire: Option<unsafe extern "C" fn(arg: *const c_void)>,
        arg: *const c_void,
    ) -> *mut XpvrsTicker;
    fn xpvrs_oneshot_new(
        fire: Option<unsafe extern "C" fn(arg: *const c_void)>,
        arg: *const c_void,
    ) -> *mut XpvrsTicker;
    fn xpvrs_oneshot_arm(ticker: *mut XpvrsTicker, ms: kernel::ffi::c_uint);
    fn xpvrs_ticker_stop(ticker: *mut XpvrsTicker);
}

/// What a [`Ticker`] calls.
pub trait Tick: Send + Sync + 'static {
    /// One period passed. Atomic context: must not sleep.
    fn tick(this: ArcBorrow<'_, Self>);
}

/// A timer (periodic, or one-shot and armed on demand) holding a counted reference on its
/// object; dropping it stops the timer (waiting for a running tick) and releases the
/// reference.
///
/// # Invariants
///
/// `timer` came from `xpvrs_ticker_start` or `xpvrs_oneshot_new` with `arg`, which came from
/// `Arc::into_raw` (its count belongs to this value); both are released once, on drop.
pub struct Ticker<T: Tick> {
    timer: NonNull<XpvrsTicker>,
    arg: *const T,
    _p: PhantomData<T>,
}

// SAFETY: the timer handle is only passed back to C (from any thread), and `arg` is a counted
// `Arc<T>` with `T: Send + Sync`.
unsafe impl<T: Tick> Send for Ticker<T> {}
// SAFETY: `&Ticker` offers nothing.
unsafe impl<T: Tick> Sync for Ticker<T> {}

impl<T: Tick> Ticker<T> {
    /// Calls `T::tick(this)` every `period_ms` milliseconds from now on.
    pub fn start(this: Arc<T>, period_ms: u32) -> Result<Self> {
        let arg = Arc::into_raw(this);
        // SAFETY: `fire::<T>` is a valid callback for `arg`, which stays valid until `drop`
        // stops the timer.
        let timer = unsafe { xpvrs_ticker_start(period_ms, Some(Self::fire), arg.cast()) };
        Self::from_parts(timer, arg)
    }

    /// A timer that calls `T::tick(this)` once after each [`Ticker::arm`].
    pub fn one_shot(this: Arc<T>) -> Result<Self> {
        let arg = Arc::into_raw(this);
        // SAFETY: `fire::<T>` is a valid callback for `arg`, which stays valid until `drop`
        // stops the timer.
        let timer = unsafe { xpvrs_oneshot_new(Some(Self::fire), arg.cast()) };
        Self::from_parts(timer, arg)
    }

    fn from_parts(timer: *mut XpvrsTicker, arg: *const T) -> Result<Self> {
        match NonNull::new(timer) {
            // INVARIANT: `timer` was made for `arg`, an `into_raw` pointer (both callers).
            Some(timer) => Ok(Ticker {
                timer,
                arg,
                _p: PhantomData,
            }),
            None => {
                // SAFETY: `arg` came from `into_raw` in the caller and was never handed on.
                drop(unsafe { Arc::from_raw(arg) });
                Err(ENOMEM)
            }
        }
    }

    /// Ticks once `ms` milliseconds from now, unless a tick is already pending (which keeps
    /// its time). Any context, atomic included.
    pub fn arm(&self, ms: u32) {
        // SAFETY: the timer is live until `drop` (type invariant).
        unsafe { xpvrs_oneshot_arm(self.timer.as_ptr(), ms) };
    }

    /// # Safety
    ///
    /// Called by the timer only, with the `arg` of a live `Ticker<T>`.
    unsafe extern "C" fn fire(arg: *const c_void) {
        // SAFETY: `arg` is the `Arc::into_raw` pointer the ticker holds a count of until the
        // timer is stopped, which waits for this call (caller's contract).
        let this = unsafe { ArcBorrow::from_raw(arg.cast::<T>()) };
        T::tick(this);
    }
}

impl<T: Tick> Drop for Ticker<T> {
    fn drop(&mut self) {
        // SAFETY: the timer is live and stopped once (type invariant); this waits for a
        // running callback, and the timer cannot fire again.
        unsafe { xpvrs_ticker_stop(self.timer.as_ptr()) };
        // SAFETY: `arg` came from `Arc::into_raw` and its count is ours (type invariant); no
        // callback can use it any more.
        drop(unsafe { Arc::from_raw(self.arg) });
    }
}
