//! The front end of a shared ring: it produces requests and consumes responses.

use crate::error::{RingError, Violation};
use crate::index::{Notify, RingIndex};
use crate::mem::{full_barrier, SharedMemory, Slot};
use crate::sring::{
    check_producer, Geometry, SharedRing, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD,
};

/// The front end of an `io/ring.h` ring (the guest driver side: blkfront, netfront, ...).
///
/// The front owns two shared indices and writes nothing else in the header:
///
/// | index | owner | meaning |
/// |---|---|---|
/// | `req_prod` | **front** | requests published |
/// | `rsp_event` | **front** | "send me an event when `rsp_prod` passes this" |
/// | `rsp_prod` | back | responses published |
/// | `req_event` | back | "send me an event when `req_prod` passes this" |
///
/// It also keeps private state the back cannot touch: `req_prod_pvt` (requests queued, not
/// necessarily published), `rsp_cons` (responses consumed), and copies of the last `req_prod`
/// it published and the last `rsp_prod` it validated, so nothing it relies on lives only in the
/// shared page.
///
/// # Invariants
///
/// `rsp_cons <= rsp_prod_seen <= req_prod_published <= req_prod_pvt`,
/// `req_prod_pushed <= req_prod_published` and `req_prod_pvt - rsp_cons <= entries`, all in
/// wrapping distance from `rsp_cons`.
pub struct FrontRing<M, Req, Rsp> {
    ring: SharedRing<M, Req, Rsp>,
    req_prod_pvt: RingIndex,
    req_prod_pushed: RingIndex,
    req_prod_published: RingIndex,
    rsp_cons: RingIndex,
    rsp_prod_seen: RingIndex,
    broken: Option<Violation>,
}

impl<M: SharedMemory, Req: Slot, Rsp: Slot> FrontRing<M, Req, Rsp> {
    /// Sets up a fresh ring in `mem` (`SHARED_RING_INIT` + `FRONT_RING_INIT`).
    ///
    /// Every byte of the shared area is zeroed first, slots included, so the pages carry
    /// nothing but what the front writes on purpose; then both producer indices are 0 and both
    /// event indices 1. Share the pages with the back only after this returns.
    pub fn init(mem: M) -> Result<Self, RingError> {
        Self::init_at(mem, RingIndex::new(0))
    }

    /// Like [`init`](Self::init), but with every index starting at `start` instead of 0
    /// (`FRONT_RING_ATTACH` with index `start`). Tests use it to cross the 2^32 wrap quickly.
    pub fn init_at(mem: M, start: RingIndex) -> Result<Self, RingError> {
        let ring = SharedRing::new(mem)?;
        ring.zero_all()?;
        ring.store(REQ_PROD, start);
        ring.store(RSP_PROD, start);
        ring.store(REQ_EVENT, start.add(1));
        ring.store(RSP_EVENT, start.add(1));
        // INVARIANT: every private index is `start`.
        Ok(FrontRing {
            ring,
            req_prod_pvt: start,
            req_prod_pushed: start,
            req_prod_published: start,
            rsp_cons: start,
            rsp_prod_seen: start,
            broken: None,
        })
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

    /// Gives the shared memory back (to revoke the grant and free the pages).
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

    /// Requests that can still be queued before the ring is full (`RING_FREE_REQUESTS`): slots
    /// whose response has not been consumed yet count as used.
    pub fn free_requests(&self) -> u32 {
        // Never below zero by the type invariant; saturating keeps an overflow panic path out
        // of the kernel build.
        self.entries()
            .saturating_sub(self.req_prod_pvt.since(self.rsp_cons))
    }

    /// Whether no request can be queued (`RING_FULL`).
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Requests queued but not yet pushed by [`push_requests`](Self::push_requests) (some
    /// may already be published by [`publish_requests`](Self::publish_requests), without a
    /// decision on the event yet).
    pub fn unpushed_requests(&self) -> u32 {
        self.req_prod_pvt.since(self.req_prod_pushed)
    }

    /// Copies `req` into the next free slot; the back sees it after the next push.
    ///
    /// Returns [`RingError::Full`] (and changes nothing) when every slot is in use.
    pub fn queue_request(&mut self, req: &Req) -> Result<(), RingError> {
        self.check()?;
        if self.is_full() {
            return Err(RingError::Full);
        }
        self.ring.write_request(self.req_prod_pvt, req);
        // INVARIANT: the ring was not full, so `req_prod_pvt - rsp_cons` stays `<= entries`.
        self.req_prod_pvt = self.req_prod_pvt.add(1);
        Ok(())
    }

    /// Publishes every queued request and says whether the back needs an event
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    ///
    /// One call covers a whole batch: queue many requests, push once, send at most one event.
    /// The decision covers every request published since the last push, including those
    /// [`publish_requests`](Self::publish_requests) made visible without a decision. The old
    /// producer value is our private copy, not the page's (which the back could have scribbled
    /// on).
    pub fn push_requests(&mut self) -> Result<Notify, RingError> {
        self.check()?;
        let old = self.req_prod_pushed;
        let new = self.req_prod_pvt;
        if new == old {
            // Nothing new: `ring.h` would store the same index and find `new - old == 0`, so
            // no event either; skip the store and the barrier.
            return Ok(Notify::No);
        }
        if new != self.req_prod_published {
            // Release: the back sees the slots before it sees the new producer index.
            self.ring.store(REQ_PROD, new);
        }
        // The back must see the new index before we read its event index, or we could both
        // decide the other one will act (the back sleeps, we don't notify).
        full_barrier();
        let event = self.ring.load(REQ_EVENT);
        // INVARIANT: both move up to `req_prod_pvt`, which is ahead of them.
        self.req_prod_published = new;
        self.req_prod_pushed = new;
        Ok(Notify::decide(old, new, event))
    }

    /// Makes every queued request visible to the back (`RING_PUSH_REQUESTS`), without the
    /// barrier and without deciding whether it needs an event.
    ///
    /// For a front that keeps working: a back that is polling sees the requests at once, and
    /// the costly part of a push (a full barrier, then reading `req_event`) is paid once for
    /// many batches. The decision is only postponed, never lost: the next
    /// [`push_requests`](Self::push_requests) covers these requests too. **Call
    /// `push_requests` before waiting for anything from the back** (before sleeping, and at
    /// the latest when the ring is full): a back that went to sleep is woken only by the event
    /// that push asks for.
    pub fn publish_requests(&mut self) -> Result<(), RingError> {
        self.check()?;
        let new = self.req_prod_pvt;
        if new != self.req_prod_published {
            // Release: the back sees the slots before it sees the new producer index.
            self.ring.store(REQ_PROD, new);
            // INVARIANT: moves up to `req_prod_pvt`; `req_prod_pushed` stays behind it.
            self.req_prod_published = new;
        }
        Ok(())
    }

    /// Loads `rsp_prod` once, validates it, and returns how many responses are ready.
    fn refresh(&mut self) -> Result<u32, RingError> {
        let prod = self.ring.load(RSP_PROD);
        let limit = self.req_prod_published.since(self.rsp_cons);
        match check_producer(prod, self.rsp_cons, self.rsp_cons, limit, self.entries()) {
            Ok(ready) => {
                // INVARIANT: `rsp_cons <= prod <= req_prod_published`, as just checked.
                self.rsp_prod_seen = prod;
                Ok(ready)
            }
            Err(v) => Err(self.fail(v)),
        }
    }

    /// Responses ready to consume, loading `rsp_prod` only if the last batch is used up.
    fn ready(&mut self) -> Result<u32, RingError> {
        self.check()?;
        match self.rsp_prod_seen.since(self.rsp_cons) {
            0 => self.refresh(),
            ready => Ok(ready),
        }
    }

    /// Copies out the response at `rsp_cons` if it is below `rsp_prod_seen`, without loading
    /// `rsp_prod`.
    ///
    /// Callers check first that the ring is not broken (once per batch).
    #[inline]
    fn take(&mut self) -> Option<Rsp> {
        if self.rsp_prod_seen.since(self.rsp_cons) == 0 {
            return None;
        }
        let rsp = self.ring.read_response(self.rsp_cons);
        // INVARIANT: `rsp_cons` was below `rsp_prod_seen`.
        self.rsp_cons = self.rsp_cons.add(1);
        Some(rsp)
    }

    /// Copies the next response out of the ring, or returns `None` if there is none.
    ///
    /// The slot is copied exactly once and its slot is free for a new request afterwards;
    /// nothing can read it again. `rsp_prod` is loaded (and checked) only when the responses
    /// seen at the last load are all consumed.
    pub fn next_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.ready()? == 0 {
            return Ok(None);
        }
        Ok(self.take())
    }

    /// Starts a batch: loads `rsp_prod` at most once, checks it, and yields at most `budget` of
    /// the responses it covers, each copied out once.
    ///
    /// If the last load already showed `budget` responses not yet consumed, `rsp_prod` is not
    /// loaded at all: the batch takes those, and the shared index line (which the peer writes)
    /// is left alone.
    ///
    /// The batch never loads `rsp_prod` again, so its length is fixed up front and bounded by
    /// both `budget` and the ring size, whatever the back does meanwhile.
    pub fn responses(&mut self, budget: u32) -> Result<Responses<'_, M, Req, Rsp>, RingError> {
        self.check()?;
        let cached = self.rsp_prod_seen.since(self.rsp_cons);
        let ready = if cached >= budget {
            cached
        } else {
            self.refresh()?
        };
        Ok(Responses {
            left: ready.min(budget),
            ring: self,
        })
    }

    /// Checks for responses one last time before the front goes idle
    /// (`RING_FINAL_CHECK_FOR_RESPONSES`).
    ///
    /// Returns `true` if responses are pending (keep going). Otherwise sets `rsp_event` so that
    /// the very next response raises an event, then checks again to close the race with a
    /// response published in between.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.ready()? > 0 {
            return Ok(true);
        }
        self.ring.store(RSP_EVENT, self.rsp_cons.add(1));
        // The back must see the new event index before we look at its producer again.
        full_barrier();
        Ok(self.refresh()? > 0)
    }
}

/// A batch of responses, see [`FrontRing::responses`].
///
/// The batch was validated when it started (`rsp_prod` loaded once and checked), so taking a
/// response is one copy out of its slot and nothing can break the ring mid-batch.
pub struct Responses<'a, M, Req, Rsp> {
    ring: &'a mut FrontRing<M, Req, Rsp>,
    left: u32,
}

impl<M: SharedMemory, Req: Slot, Rsp: Slot> Responses<'_, M, Req, Rsp> {
    /// Queues a request, as [`FrontRing::queue_request`], without ending the batch (e.g. to
    /// refill a receive ring while draining it).
    pub fn queue_request(&mut self, req: &Req) -> Result<(), RingError> {
        self.ring.queue_request(req)
    }
}

impl<M: SharedMemory, Req: Slot, Rsp: Slot> Iterator for Responses<'_, M, Req, Rsp> {
    type Item = Rsp;

    fn next(&mut self) -> Option<Rsp> {
        if self.left == 0 {
            return None;
        }
        let rsp = self.ring.take();
        // `left` never exceeds the responses validated for this batch, so `take` always has
        // one; if it had none, the batch would simply end.
        self.left = if rsp.is_some() { self.left - 1 } else { 0 };
        rsp
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.left).unwrap_or(usize::MAX);
        (0, Some(left))
    }
}
