//! The back end of a shared ring: it consumes requests and produces responses.

use crate::error::{RingError, Violation};
use crate::index::{Notify, RingIndex};
use crate::mem::{full_barrier, SharedMemory, Slot};
use crate::sring::{
    check_producer, Geometry, SharedRing, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD,
};

/// The back end of an `io/ring.h` ring (the driver domain side: blkback, netback, ...).
///
/// The back owns two shared indices and writes nothing else in the header:
///
/// | index | owner | meaning |
/// |---|---|---|
/// | `rsp_prod` | **back** | responses published |
/// | `req_event` | **back** | "send me an event when `req_prod` passes this" |
/// | `req_prod` | front | requests published |
/// | `rsp_event` | front | "send me an event when `rsp_prod` passes this" |
///
/// Its private state is `req_cons` (requests consumed), `rsp_prod_pvt` (responses queued), and
/// copies of the last `rsp_prod` it published and the last `req_prod` it validated.
///
/// # Invariants
///
/// `rsp_prod_pushed <= rsp_prod_published <= rsp_prod_pvt <= req_cons <= req_prod_seen` and
/// `req_prod_seen - rsp_prod_pvt <= entries`, all in wrapping distance from `rsp_prod_pushed`:
/// the back never answers a request it has not consumed, and never consumes more requests
/// than it has slots to answer in.
pub struct BackRing<M, Req, Rsp> {
    ring: SharedRing<M, Req, Rsp>,
    rsp_prod_pvt: RingIndex,
    rsp_prod_pushed: RingIndex,
    rsp_prod_published: RingIndex,
    req_cons: RingIndex,
    req_prod_seen: RingIndex,
    broken: Option<Violation>,
}

impl<M: SharedMemory, Req: Slot, Rsp: Slot> BackRing<M, Req, Rsp> {
    /// Attaches to a ring the front has set up (`BACK_RING_ATTACH`).
    ///
    /// The back takes the indices it finds: it starts answering at the current `rsp_prod`
    /// (0 on a fresh ring, later after a reconnect). It checks the front's `req_prod` against
    /// that at once; a ring that is already inconsistent is refused with
    /// [`RingError::Broken`].
    pub fn attach(mem: M) -> Result<Self, RingError> {
        let ring = SharedRing::new(mem)?;
        let start = ring.load(RSP_PROD);
        // INVARIANT: every private index is `start`.
        let mut back = BackRing {
            ring,
            rsp_prod_pvt: start,
            rsp_prod_pushed: start,
            rsp_prod_published: start,
            req_cons: start,
            req_prod_seen: start,
            broken: None,
        };
        back.refresh()?;
        Ok(back)
    }

    /// The ring's geometry.
    pub fn geometry(&self) -> &Geometry {
        self.ring.geometry()
    }

    /// The number of slots (`RING_SIZE`).
    pub fn entries(&self) -> u32 {
        self.ring.geometry().entries()
    }

    /// The shared memory.
    pub fn memory(&self) -> &M {
        self.ring.memory()
    }

    /// Gives the shared memory back (to unmap it).
    pub fn into_memory(self) -> M {
        self.ring.into_memory()
    }

    /// The violation that broke this ring, if any.
    pub fn broken(&self) -> Option<Violation> {
        self.broken
    }

    fn check(&self) -> Result<(), RingError> {
        match self.broken {
            Some(v) => Err(RingError::Broken(v)),
            None => Ok(()),
        }
    }

    fn fail(&mut self, violation: Violation) -> RingError {
        self.broken = Some(violation);
        RingError::Broken(violation)
    }

    /// Requests consumed and not yet answered.
    pub fn unanswered_requests(&self) -> u32 {
        self.req_cons.since(self.rsp_prod_pvt)
    }

    /// Responses queued but not yet pushed by [`push_responses`](Self::push_responses) (some
    /// may already be published by [`publish_responses`](Self::publish_responses), without a
    /// decision on the event yet).
    pub fn unpushed_responses(&self) -> u32 {
        self.rsp_prod_pvt.since(self.rsp_prod_pushed)
    }

    /// Loads `req_prod` once, validates it, and returns how many requests are ready.
    ///
    /// The front may have at most `entries` requests outstanding counted from our oldest
    /// unanswered one (`RING_REQUEST_PROD_OVERFLOW`), and `req_prod` must not be behind
    /// `req_cons`.
    fn refresh(&mut self) -> Result<u32, RingError> {
        let prod = self.ring.load(REQ_PROD);
        let entries = self.entries();
        match check_producer(prod, self.rsp_prod_pvt, self.req_cons, entries, entries) {
            Ok(ready) => {
                // INVARIANT: `req_cons <= prod` and `prod - rsp_prod_pvt <= entries`, as just
                // checked.
                self.req_prod_seen = prod;
                Ok(ready)
            }
            Err(v) => Err(self.fail(v)),
        }
    }

    /// Requests ready to consume, loading `req_prod` only if the last batch is used up.
    fn ready(&mut self) -> Result<u32, RingError> {
        self.check()?;
        match self.req_prod_seen.since(self.req_cons) {
            0 => self.refresh(),
            ready => Ok(ready),
        }
    }

    /// Copies out the request at `req_cons` if it is below `req_prod_seen`, without loading
    /// `req_prod`.
    ///
    /// Callers check first that the ring is not broken (once per batch).
    #[inline]
    fn take(&mut self) -> Option<Req> {
        if self.req_prod_seen.since(self.req_cons) == 0 {
            return None;
        }
        let req = self.ring.read_request(self.req_cons);
        // INVARIANT: `req_cons` was below `req_prod_seen`.
        self.req_cons = self.req_cons.add(1);
        Some(req)
    }

    /// Copies the next request out of the ring, or returns `None` if there is none.
    ///
    /// The slot is copied exactly once (`RING_COPY_REQUEST`); validate the copy, never the
    /// slot. `req_prod` is loaded (and checked) only when the requests seen at the last load
    /// are all consumed.
    pub fn next_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.ready()? == 0 {
            return Ok(None);
        }
        Ok(self.take())
    }

    /// Starts a batch: loads `req_prod` at most once, checks it, and yields at most `budget` of
    /// the requests it covers, each copied out once.
    ///
    /// If the last load already showed `budget` requests not yet consumed, `req_prod` is not
    /// loaded at all: the batch takes those, and the shared index line (which the peer writes)
    /// is left alone.
    ///
    /// The batch never loads `req_prod` again, so its length is fixed up front and bounded by
    /// both `budget` and the ring size, whatever the front does meanwhile: a budgeted loop
    /// always returns, and the driver reschedules itself for the rest.
    pub fn requests(&mut self, budget: u32) -> Result<Requests<'_, M, Req, Rsp>, RingError> {
        self.check()?;
        let cached = self.req_prod_seen.since(self.req_cons);
        let ready = if cached >= budget {
            cached
        } else {
            self.refresh()?
        };
        Ok(Requests {
            left: ready.min(budget),
            ring: self,
        })
    }

    /// Copies `rsp` into the slot of the oldest unanswered request; the front sees it after the
    /// next push.
    ///
    /// Returns [`RingError::NoRequestToAnswer`] (and changes nothing) if every consumed request
    /// is already answered: the back cannot publish more responses than it took requests.
    pub fn queue_response(&mut self, rsp: &Rsp) -> Result<(), RingError> {
        self.check()?;
        if self.unanswered_requests() == 0 {
            return Err(RingError::NoRequestToAnswer);
        }
        self.ring.write_response(self.rsp_prod_pvt, rsp);
        // INVARIANT: a request was unanswered, so `rsp_prod_pvt` stays at or below `req_cons`.
        self.rsp_prod_pvt = self.rsp_prod_pvt.add(1);
        Ok(())
    }

    /// Publishes every queued response and says whether the front needs an event
    /// (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    ///
    /// One call covers a whole batch. The decision covers every response published since the
    /// last push, including those [`publish_responses`](Self::publish_responses) made visible
    /// without a decision. The old producer value is our private copy, not the page's.
    pub fn push_responses(&mut self) -> Result<Notify, RingError> {
        self.check()?;
        let old = self.rsp_prod_pushed;
        let new = self.rsp_prod_pvt;
        if new == old {
            // Nothing new: `ring.h` would store the same index and find `new - old == 0`, so
            // no event either; skip the store and the barrier.
            return Ok(Notify::No);
        }
        if new != self.rsp_prod_published {
            // Release: the front sees the slots before it sees the new producer index.
            self.ring.store(RSP_PROD, new);
        }
        // The front must see the new index before we read its event index.
        full_barrier();
        let event = self.ring.load(RSP_EVENT);
        // INVARIANT: both move up to `rsp_prod_pvt`, which is ahead of them.
        self.rsp_prod_published = new;
        self.rsp_prod_pushed = new;
        Ok(Notify::decide(old, new, event))
    }

    /// Makes every queued response visible to the front (`RING_PUSH_RESPONSES`), without the
    /// barrier and without deciding whether it needs an event.
    ///
    /// For a back that keeps working: a front that is polling sees the responses at once, and
    /// the costly part of a push (a full barrier, then reading `rsp_event`) is paid once for
    /// many batches. The decision is only postponed, never lost: the next
    /// [`push_responses`](Self::push_responses) covers these responses too. **Call
    /// `push_responses` before the back waits for anything** (before its final check, and at
    /// the end of a budget): a front that went to sleep is woken only by the event that push
    /// asks for.
    pub fn publish_responses(&mut self) -> Result<(), RingError> {
        self.check()?;
        let new = self.rsp_prod_pvt;
        if new != self.rsp_prod_published {
            // Release: the front sees the slots before it sees the new producer index.
            self.ring.store(RSP_PROD, new);
            // INVARIANT: moves up to `rsp_prod_pvt`; `rsp_prod_pushed` stays behind it.
            self.rsp_prod_published = new;
        }
        Ok(())
    }

    /// Checks for requests one last time before the back goes idle
    /// (`RING_FINAL_CHECK_FOR_REQUESTS`).
    ///
    /// Returns `true` if requests are pending (keep going). Otherwise sets `req_event` so that
    /// the very next request raises an event, then checks again to close the race with a
    /// request published in between.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.ready()? > 0 {
            return Ok(true);
        }
        self.ring.store(REQ_EVENT, self.req_cons.add(1));
        // The front must see the new event index before we look at its producer again.
        full_barrier();
        Ok(self.refresh()? > 0)
    }
}

/// A batch of requests, see [`BackRing::requests`].
///
/// Answer requests while iterating with [`queue_response`](Self::queue_response):
///
/// ```
/// # use xen_ring::{BackRing, RingError, SharedMemory};
/// fn serve<M: SharedMemory>(back: &mut BackRing<M, u64, u64>) -> Result<bool, RingError> {
///     let mut batch = back.requests(64)?;
///     while let Some(req) = batch.next() {
///         batch.queue_response(&(req * 2))?;
///     }
///     Ok(back.push_responses()?.is_required()) // true: send an event to the front
/// }
/// ```
///
/// The batch was validated when it started (`req_prod` loaded once and checked), so taking a
/// request is one copy out of its slot and nothing can break the ring mid-batch.
pub struct Requests<'a, M, Req, Rsp> {
    ring: &'a mut BackRing<M, Req, Rsp>,
    left: u32,
}

impl<M: SharedMemory, Req: Slot, Rsp: Slot> Requests<'_, M, Req, Rsp> {
    /// Queues a response, as [`BackRing::queue_response`], without ending the batch.
    pub fn queue_response(&mut self, rsp: &Rsp) -> Result<(), RingError> {
        self.ring.queue_response(rsp)
    }
}

impl<M: SharedMemory, Req: Slot, Rsp: Slot> Iterator for Requests<'_, M, Req, Rsp> {
    type Item = Req;

    fn next(&mut self) -> Option<Req> {
        if self.left == 0 {
            return None;
        }
        let req = self.ring.take();
        // `left` never exceeds the requests validated for this batch, so `take` always has
        // one; if it had none, the batch would simply end.
        self.left = if req.is_some() { self.left - 1 } else { 0 };
        req
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.left).unwrap_or(usize::MAX);
        (0, Some(left))
    }
}
