// SPDX-License-Identifier: GPL-2.0

//! Work items: what the `kernel` crate's workqueue module lacks.

use kernel::workqueue::Work;

/// Waits for `work` to finish if it runs, and makes sure it is not queued
/// (`cancel_work_sync`).
pub fn cancel_sync<T: ?Sized, const ID: u64>(work: &Work<T, ID>) {
    // SAFETY: `work` is a reference to an initialised work item, so the raw pointer is valid
    // for the call; `cancel_work_sync` may sleep, which every caller (process context) allows.
    unsafe { kernel::bindings::cancel_work_sync(Work::raw_get(work)) };
}
