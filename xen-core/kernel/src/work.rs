// SPDX-License-Identifier: GPL-2.0

//! The one way a ring's queue is kicked.

use crate::{Kick, KickReason};
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::sync::{Arc, ArcBorrow};
use kernel::workqueue::{self, HasWork, WorkItem};

/// A ring's queue served by its work item (id 0) on `system_highpri`: kicking it queues the
/// work item, and an event-channel kick also sets the queue's flag, because the work owes the
/// port a late EOI. Implementing this gives the queue its [`Kick`].
pub trait EventQueue:
    HasWork<Self, 0> + WorkItem<0, Pointer = Arc<Self>> + Send + Sync + Sized + 'static
{
    /// Set on an event-channel kick; the work item takes it (and then EOIs the port).
    fn event_pending(&self) -> &AtomicBool;
}

impl<T: EventQueue> Kick for T {
    fn kick(this: ArcBorrow<'_, Self>, reason: KickReason) {
        if reason == KickReason::Event {
            this.event_pending().store(true, Ordering::Release);
        }
        let this: Arc<T> = this.into();
        // Already queued: the queued run sees the flag.
        let _ = workqueue::system_highpri().enqueue::<Arc<T>, 0>(this);
    }
}
