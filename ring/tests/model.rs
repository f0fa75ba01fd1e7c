//! Property test: random interleavings of front and back operations against a trivially
//! correct model built from `VecDeque`s and unbounded `u64` counters.
//!
//! After every operation the ring must agree with the model on the value returned (requests
//! and responses, in order), on the notify decision, on the final-check answer, on the free
//! slot count, and on the four indices in the shared page.

use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use xen_ring::{impl_slot, BackRing, FrontRing, HostPages, Notify, RingError, RingIndex};

/// 112 bytes, like a blkif request: 32 slots on one page, so the ring fills often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Req {
    id: u64,
    body: [u64; 13],
}
impl_slot!(Req { id, body });

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Rsp {
    id: u64,
    status: i64,
}
impl_slot!(Rsp { id, status });

#[derive(Clone, Copy, Debug)]
enum Op {
    Queue,
    Push,
    Publish,
    NextResponse,
    Responses(u32),
    FinalResponses,
    NextRequest,
    Requests(u32),
    Answer,
    PushResponses,
    PublishResponses,
    FinalRequests,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::Queue),
        2 => Just(Op::Push),
        1 => Just(Op::Publish),
        2 => Just(Op::NextResponse),
        1 => (0..6u32).prop_map(Op::Responses),
        1 => Just(Op::FinalResponses),
        3 => Just(Op::NextRequest),
        1 => (0..6u32).prop_map(Op::Requests),
        4 => Just(Op::Answer),
        2 => Just(Op::PushResponses),
        1 => Just(Op::PublishResponses),
        1 => Just(Op::FinalRequests),
    ]
}

/// The ring as a reference implementation would describe it: queues of values and absolute
/// positions that never wrap.
struct Model {
    entries: u64,
    /// Requests queued by the front, not yet pushed.
    req_queued: VecDeque<Req>,
    /// Requests pushed, not yet consumed by the back.
    req_published: VecDeque<Req>,
    /// Ids the back consumed and has not answered, oldest first.
    unanswered: VecDeque<u64>,
    rsp_queued: VecDeque<Rsp>,
    rsp_published: VecDeque<Rsp>,
    /// Requests sent whose response the front has not consumed.
    in_flight: u64,
    /// Absolute producer positions as published in the page.
    req_pushed: u64,
    rsp_pushed: u64,
    /// Where the last push decided on an event (`publish_*` moves the producer, not these).
    req_checked: u64,
    rsp_checked: u64,
    req_cons: u64,
    rsp_cons: u64,
    /// Absolute positions the consumers asked to be woken at.
    req_event: u64,
    rsp_event: u64,
}

impl Model {
    fn new(entries: u64) -> Self {
        Model {
            entries,
            req_queued: VecDeque::new(),
            req_published: VecDeque::new(),
            unanswered: VecDeque::new(),
            rsp_queued: VecDeque::new(),
            rsp_published: VecDeque::new(),
            in_flight: 0,
            req_pushed: 0,
            rsp_pushed: 0,
            req_checked: 0,
            rsp_checked: 0,
            req_cons: 0,
            rsp_cons: 0,
            req_event: 1,
            rsp_event: 1,
        }
    }

    /// The consumer wants an event iff its wake-up position lies in what was just published.
    fn notify(old: u64, new: u64, event: u64) -> Notify {
        if old < event && event <= new {
            Notify::Yes
        } else {
            Notify::No
        }
    }
}

fn req(id: u64) -> Req {
    Req {
        id,
        body: [id.rotate_left(17); 13],
    }
}

fn rsp(id: u64) -> Rsp {
    Rsp {
        id,
        status: -(id as i64),
    }
}

fn check(start: u32, pages: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let mem: Arc<HostPages> = HostPages::shared(pages);
    let mut front = FrontRing::<_, Req, Rsp>::init_at(mem.clone(), RingIndex::new(start)).unwrap();
    let mut back = BackRing::<_, Req, Rsp>::attach(mem.clone()).unwrap();
    let mut m = Model::new(u64::from(front.entries()));
    let mut next_id = 0u64;
    let at = |abs: u64| start.wrapping_add(abs as u32);

    for (step, &op) in ops.iter().enumerate() {
        match op {
            Op::Queue => {
                next_id += 1;
                let r = req(next_id);
                if m.in_flight + m.req_queued.len() as u64 == m.entries {
                    prop_assert_eq!(front.queue_request(&r), Err(RingError::Full));
                } else {
                    prop_assert_eq!(front.queue_request(&r), Ok(()));
                    m.req_queued.push_back(r);
                }
            }
            Op::Push | Op::Publish => {
                let n = m.req_queued.len() as u64;
                m.in_flight += n;
                m.req_pushed += n;
                m.req_published.extend(m.req_queued.drain(..));
                if let Op::Publish = op {
                    prop_assert_eq!(front.publish_requests(), Ok(()), "step {}", step);
                } else {
                    let old = m.req_checked;
                    m.req_checked = m.req_pushed;
                    let expected = Model::notify(old, m.req_pushed, m.req_event);
                    prop_assert_eq!(front.push_requests(), Ok(expected), "step {}", step);
                }
            }
            Op::NextResponse => {
                let expected = m.rsp_published.pop_front();
                if expected.is_some() {
                    m.rsp_cons += 1;
                    m.in_flight -= 1;
                }
                prop_assert_eq!(front.next_response(), Ok(expected));
            }
            Op::Responses(budget) => {
                let n = m.rsp_published.len().min(budget as usize);
                let expected: Vec<Rsp> = m.rsp_published.drain(..n).collect();
                m.rsp_cons += n as u64;
                m.in_flight -= n as u64;
                let got: Vec<Rsp> = front.responses(budget).unwrap().collect();
                prop_assert_eq!(got, expected);
            }
            Op::FinalResponses => {
                let work = !m.rsp_published.is_empty();
                if !work {
                    m.rsp_event = m.rsp_cons + 1;
                }
                prop_assert_eq!(front.final_check_for_responses(), Ok(work));
            }
            Op::NextRequest => {
                let expected = m.req_published.pop_front();
                if let Some(r) = expected {
                    m.req_cons += 1;
                    m.unanswered.push_back(r.id);
                }
                prop_assert_eq!(back.next_request(), Ok(expected));
            }
            Op::Requests(budget) => {
                let n = m.req_published.len().min(budget as usize);
                let expected: Vec<Req> = m.req_published.drain(..n).collect();
                m.req_cons += n as u64;
                m.unanswered.extend(expected.iter().map(|r| r.id));
                let got: Vec<Req> = back.requests(budget).unwrap().collect();
                prop_assert_eq!(got, expected);
            }
            Op::Answer => match m.unanswered.pop_front() {
                Some(id) => {
                    prop_assert_eq!(back.queue_response(&rsp(id)), Ok(()));
                    m.rsp_queued.push_back(rsp(id));
                }
                None => {
                    prop_assert_eq!(
                        back.queue_response(&rsp(0)),
                        Err(RingError::NoRequestToAnswer)
                    );
                }
            },
            Op::PushResponses | Op::PublishResponses => {
                m.rsp_pushed += m.rsp_queued.len() as u64;
                m.rsp_published.extend(m.rsp_queued.drain(..));
                if let Op::PublishResponses = op {
                    prop_assert_eq!(back.publish_responses(), Ok(()), "step {}", step);
                } else {
                    let old = m.rsp_checked;
                    m.rsp_checked = m.rsp_pushed;
                    let expected = Model::notify(old, m.rsp_pushed, m.rsp_event);
                    prop_assert_eq!(back.push_responses(), Ok(expected), "step {}", step);
                }
            }
            Op::FinalRequests => {
                let work = !m.req_published.is_empty();
                if !work {
                    m.req_event = m.req_cons + 1;
                }
                prop_assert_eq!(back.final_check_for_requests(), Ok(work));
            }
        }

        // The accounting and the shared page agree with the model after every step.
        let used = m.in_flight + m.req_queued.len() as u64;
        prop_assert_eq!(u64::from(front.free_requests()), m.entries - used);
        prop_assert_eq!(front.is_full(), used == m.entries);
        prop_assert_eq!(
            u64::from(front.unpushed_requests()),
            m.req_queued.len() as u64 + m.req_pushed - m.req_checked
        );
        prop_assert_eq!(
            u64::from(back.unanswered_requests()),
            m.unanswered.len() as u64
        );
        prop_assert_eq!(
            u64::from(back.unpushed_responses()),
            m.rsp_queued.len() as u64 + m.rsp_pushed - m.rsp_checked
        );
        prop_assert_eq!(mem.peek_u32(0), at(m.req_pushed), "req_prod");
        prop_assert_eq!(mem.peek_u32(4), at(m.req_event), "req_event");
        prop_assert_eq!(mem.peek_u32(8), at(m.rsp_pushed), "rsp_prod");
        prop_assert_eq!(mem.peek_u32(12), at(m.rsp_event), "rsp_event");
    }
    // Every request ever sent is accounted for exactly once.
    let sent = m.req_pushed;
    let accounted = m.req_published.len() as u64
        + m.unanswered.len() as u64
        + m.rsp_queued.len() as u64
        + m.rsp_published.len() as u64
        + m.rsp_cons;
    prop_assert_eq!(sent, accounted);
    prop_assert!(front.broken().is_none() && back.broken().is_none());
    Ok(())
}

fn start_index() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), (u32::MAX - 300..=u32::MAX), any::<u32>()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_model(start in start_index(), pages in prop_oneof![Just(1usize), Just(2)], ops in prop::collection::vec(op(), 1..400)) {
        check(start, pages, &ops)?;
    }
}
