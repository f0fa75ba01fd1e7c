//! [`DeferredQueue`]: pages whose grant the peer still maps, waiting to be freed.
//!
//! A frontend must not free a page the backend still maps (XSA-396). When revoking fails,
//! the page goes into this bounded queue, and the owner retries later (a timer, the next
//! interrupt, disconnect). When the queue is full the page is leaked, never freed early.

use crate::ops::EndAccess;
use xen_sys::GrantRef;

/// What [`DeferredQueue::push`] did with the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferred {
    /// Queued for a later retry.
    Queued,
    /// The queue was full: the page and its reference are leaked, never reused.
    Leaked,
}

/// The outcome of one [`DeferredQueue::retry`] pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retry {
    /// Pages whose grant ended and which were freed in this pass.
    pub freed: usize,
    /// Pages still mapped by a peer.
    pub pending: usize,
}

/// Up to `N` pages whose grants could not be ended yet, with the references to retry.
pub struct DeferredQueue<P, const N: usize> {
    slots: [Option<(GrantRef, P)>; N],
    leaked: u64,
}

impl<P, const N: usize> Default for DeferredQueue<P, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P, const N: usize> DeferredQueue<P, N> {
    /// An empty queue.
    pub fn new() -> Self {
        DeferredQueue {
            slots: core::array::from_fn(|_| None),
            leaked: 0,
        }
    }

    /// Pages waiting.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether no page is waiting.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Pages leaked because the queue was full.
    pub fn leaked(&self) -> u64 {
        self.leaked
    }

    /// Queues `page`, whose grant `gref` is still mapped; leaks it if the queue is full.
    pub fn push(&mut self, gref: GrantRef, page: P) -> Deferred {
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some((gref, page));
                Deferred::Queued
            }
            None => {
                // Freeing it could hand a page the peer still writes to someone else;
                // forgetting it costs a page.
                core::mem::forget(page);
                self.leaked = self.leaked.saturating_add(1);
                Deferred::Leaked
            }
        }
    }

    /// Tries `end_access` once on each waiting grant and drops (frees) the pages whose
    /// grant ended. Bounded: at most `N` calls.
    pub fn retry(&mut self, mut end_access: impl FnMut(GrantRef) -> EndAccess) -> Retry {
        let mut r = Retry::default();
        for slot in self.slots.iter_mut() {
            let Some((gref, _)) = slot else { continue };
            match end_access(*gref) {
                EndAccess::Ended => {
                    *slot = None;
                    r.freed = r.freed.saturating_add(1);
                }
                EndAccess::StillMapped => r.pending = r.pending.saturating_add(1),
            }
        }
        r
    }
}
