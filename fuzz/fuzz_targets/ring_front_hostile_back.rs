//! Fuzzes `FrontRing` against a back that writes arbitrary indices and slot bytes between
//! operations.
//!
//! Checked on every run: no panic, hang or spin; the front never accepts more responses than
//! requests it pushed, nor queues more than the ring holds; a batch never exceeds its budget;
//! the front never writes the back's indices (`rsp_prod`, `req_event`); a broken ring stays
//! broken with the same error; and until the first hostile write, the front sees exactly the
//! responses an honest `BackRing` sent, in order, and never reports a violation.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::sync::Arc;
use xen_ring::{BackRing, FrontRing, HostPages, RingError, RingIndex, Violation};

type Req = [u64; 14];
type Rsp = [u64; 2];

const BACK_WORDS: [usize; 2] = [4, 8];

#[derive(Arbitrary, Debug)]
enum Op {
    /// The honest back consumes up to `count` requests and answers them.
    Serve {
        count: u8,
    },
    /// The honest back re-arms.
    BackFinalCheck,
    /// Hostile: any value into any header word.
    PokeWord {
        word: u8,
        value: u32,
    },
    /// Hostile: move a header word by a small amount.
    NudgeWord {
        word: u8,
        delta: i8,
    },
    /// Hostile: overwrite bytes in the slot area.
    PokeSlots {
        offset: u16,
        byte: u8,
        len: u8,
    },
    /// The front under test.
    Queue {
        count: u8,
    },
    Push,
    Next,
    Batch {
        budget: u8,
        refill: bool,
    },
    FinalCheck,
    DrainAll,
}

#[derive(Arbitrary, Debug)]
struct Input {
    order: u8,
    start: u32,
    ops: Vec<Op>,
}

struct Harness {
    mem: Arc<HostPages>,
    front: FrontRing<Arc<HostPages>, Req, Rsp>,
    entries: u32,
    next_id: u64,
    /// Requests pushed minus responses consumed: the most responses the front may accept.
    in_flight: u64,
    queued: u64,
    /// Response ids the honest back published, not yet consumed; meaningful until `hostile`.
    expected: VecDeque<u64>,
    check: Check,
}

/// Sticky-error bookkeeping, kept apart from the ring so both can be borrowed at once.
#[derive(Default)]
struct Check {
    hostile: bool,
    broken: Option<Violation>,
}

impl Check {
    /// Records a ring call's outcome: `Some` on success, `None` on a caller-side refusal or a
    /// peer violation, which only a hostile peer may cause and which must never change.
    fn outcome<T>(&mut self, result: Result<T, RingError>) -> Option<T> {
        match result {
            Ok(value) => {
                assert!(self.broken.is_none(), "a broken ring answered Ok");
                Some(value)
            }
            Err(RingError::Broken(v)) => {
                assert!(self.hostile, "an honest peer broke the ring: {v:?}");
                if let Some(old) = self.broken {
                    assert_eq!(old, v, "the reported violation changed");
                }
                self.broken = Some(v);
                None
            }
            Err(RingError::NoRequestToAnswer | RingError::Full) => None,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
}

impl Harness {
    fn consumed(&mut self, rsp: &Rsp) {
        assert!(self.in_flight > 0, "accepted a response to no request");
        self.in_flight -= 1;
        if !self.check.hostile {
            assert_eq!(self.expected.pop_front(), Some(rsp[0]), "wrong response");
        }
    }

    fn queue(&mut self) -> bool {
        self.next_id += 1;
        let result = self.front.queue_request(&[self.next_id; 14]);
        if result == Err(RingError::Full) {
            assert_eq!(self.front.free_requests(), 0, "Full with free slots");
        }
        let ok = self.check.outcome(result).is_some();
        if ok {
            self.queued += 1;
        }
        ok
    }

    fn front_op(&mut self, op: &Op) {
        let owned_by_back = BACK_WORDS.map(|w| self.mem.peek_u32(w));
        match *op {
            Op::Queue { count } => {
                for _ in 0..count {
                    if !self.queue() {
                        break;
                    }
                }
            }
            Op::Push => {
                if self.check.outcome(self.front.push_requests()).is_some() {
                    self.in_flight += self.queued;
                    self.queued = 0;
                }
            }
            Op::Next => {
                if let Some(Some(rsp)) = self.check.outcome(self.front.next_response()) {
                    self.consumed(&rsp);
                }
            }
            Op::Batch { budget, refill } => {
                let result = self.front.responses(u32::from(budget));
                let Some(mut batch) = self.check.outcome(result) else {
                    return;
                };
                let mut got = Vec::new();
                let mut refilled = 0;
                while let Some(rsp) = batch.next() {
                    got.push(rsp);
                    if refill && batch.queue_request(&[0; 14]).is_ok() {
                        refilled += 1;
                    }
                }
                drop(batch);
                self.queued += refilled;
                assert!(got.len() <= usize::from(budget), "batch over budget");
                for rsp in &got {
                    self.consumed(rsp);
                }
            }
            Op::FinalCheck => {
                let _ = self.check.outcome(self.front.final_check_for_responses());
            }
            Op::DrainAll => {
                let mut n = 0u32;
                while let Some(Some(rsp)) = self.check.outcome(self.front.next_response()) {
                    self.consumed(&rsp);
                    n += 1;
                    assert!(n <= self.entries, "drained more than the ring holds");
                }
            }
            _ => unreachable!(),
        }
        assert!(self.front.free_requests() <= self.entries);
        assert_eq!(
            u64::from(self.entries - self.front.free_requests()),
            self.in_flight + self.queued,
            "free-slot accounting"
        );
        let after = BACK_WORDS.map(|w| self.mem.peek_u32(w));
        assert_eq!(owned_by_back, after, "the front wrote a back-owned index");
    }
}

fuzz_target!(|input: Input| {
    let pages = 1usize << (input.order % 3);
    let mem = HostPages::shared(pages);
    let front =
        FrontRing::<_, Req, Rsp>::init_at(mem.clone(), RingIndex::new(input.start)).unwrap();
    let mut back = BackRing::<_, Req, Rsp>::attach(mem.clone()).unwrap();
    let entries = front.entries();
    let mut h = Harness {
        mem: mem.clone(),
        front,
        entries,
        next_id: 0,
        in_flight: 0,
        queued: 0,
        expected: VecDeque::new(),
        check: Check::default(),
    };
    let slot_area = pages * 4096 - 64;

    for op in input.ops.iter().take(2000) {
        match *op {
            Op::Serve { count } => {
                if let Ok(batch) = back.requests(u32::from(count)) {
                    let mut batch = batch;
                    let mut ids = Vec::new();
                    while let Some(req) = batch.next() {
                        if batch.queue_response(&[req[0], 0]).is_ok() {
                            ids.push(req[0]);
                        }
                    }
                    drop(batch);
                    if back.push_responses().is_ok() {
                        h.expected.extend(ids);
                    }
                }
            }
            Op::BackFinalCheck => {
                let _ = back.final_check_for_requests();
            }
            Op::PokeWord { word, value } => {
                h.check.hostile = true;
                mem.poke_u32(usize::from(word % 4) * 4, value);
            }
            Op::NudgeWord { word, delta } => {
                h.check.hostile = true;
                let at = usize::from(word % 4) * 4;
                let value = mem.peek_u32(at).wrapping_add_signed(i32::from(delta));
                mem.poke_u32(at, value);
            }
            Op::PokeSlots { offset, byte, len } => {
                h.check.hostile = true;
                let at = 64 + usize::from(offset) % slot_area;
                let len = usize::from(len).min(pages * 4096 - at);
                mem.poke_bytes(at, &vec![byte; len]);
            }
            ref front_op => h.front_op(front_op),
        }
    }
});
