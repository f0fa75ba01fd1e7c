// SPDX-License-Identifier: GPL-2.0

//! Counters of what the layer holds on a module's behalf: a leak shows as a non-zero count at
//! unload.
//!
//! Each module links its own copy of this crate, so the counters are per module.

use core::sync::atomic::{AtomicI64, Ordering};

pub(crate) static GRANTS: AtomicI64 = AtomicI64::new(0);
pub(crate) static DEFERRED: AtomicI64 = AtomicI64::new(0);
pub(crate) static MAPPINGS: AtomicI64 = AtomicI64::new(0);
pub(crate) static FRONT_RINGS: AtomicI64 = AtomicI64::new(0);
pub(crate) static BACK_RINGS: AtomicI64 = AtomicI64::new(0);
pub(crate) static CHANNELS: AtomicI64 = AtomicI64::new(0);
pub(crate) static WATCHES: AtomicI64 = AtomicI64::new(0);

pub(crate) fn inc(c: &AtomicI64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn dec(c: &AtomicI64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Pages granted through [`crate::grant::Grants`] and not yet revoked.
    pub grants: i64,
    /// Grants whose revocation was handed to the kernel's deferred list (the peer still mapped
    /// the page); the kernel frees the page once the peer unmaps it.
    pub deferred: i64,
    /// Foreign pages mapped and not yet unmapped.
    pub mappings: i64,
    /// Front rings allocated and granted, not yet torn down.
    pub front_rings: i64,
    /// Back rings mapped, not yet unmapped.
    pub back_rings: i64,
    /// Event channels bound to an interrupt handler.
    pub channels: i64,
    /// XenStore watches registered.
    pub watches: i64,
}

impl Counters {
    /// Whether everything the layer handed out was given back (deferred revocations are the
    /// kernel's to finish and do not count).
    pub fn is_clean(&self) -> bool {
        self.grants == 0
            && self.mappings == 0
            && self.front_rings == 0
            && self.back_rings == 0
            && self.channels == 0
            && self.watches == 0
    }
}

/// Reads the counters.
pub fn counters() -> Counters {
    let get = |c: &AtomicI64| c.load(Ordering::Relaxed);
    Counters {
        grants: get(&GRANTS),
        deferred: get(&DEFERRED),
        mappings: get(&MAPPINGS),
        front_rings: get(&FRONT_RINGS),
        back_rings: get(&BACK_RINGS),
        channels: get(&CHANNELS),
        watches: get(&WATCHES),
    }
}

/// Prints the layer's counters when dropped, as one line `TAG unload grants=… deferred=…
/// mappings=… front_rings=… back_rings=… channels=… watches=… clean=0|1`. A module keeps one
/// as the last field of its module object, after its XenBus registration, so the line comes
/// once every device is gone; the scenarios check `clean=1`.
pub struct UnloadReport(pub &'static str);

impl Drop for UnloadReport {
    fn drop(&mut self) {
        let c = counters();
        kernel::pr_info!(
            "{} unload grants={} deferred={} mappings={} front_rings={} back_rings={} channels={} watches={} clean={}\n",
            self.0,
            c.grants,
            c.deferred,
            c.mappings,
            c.front_rings,
            c.back_rings,
            c.channels,
            c.watches,
            u32::from(c.is_clean())
        );
    }
}
