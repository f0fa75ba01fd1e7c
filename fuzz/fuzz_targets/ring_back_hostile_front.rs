//! Fuzzes `BackRing` against a front that writes arbitrary indices and slot bytes between
//! operations.
//!
//! Checked on every run: no panic, hang or spin; a batch never exceeds its budget or the ring;
//! the back never writes the front's indices (`req_prod`, `rsp_event`); a broken ring stays
//! broken with the same error; and until the first hostile write, the back sees exactly the
//! requests an honest `FrontRing` sent, in order, and never reports a violation.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::sync::Arc;
use xen_ring::{BackRing, FrontRing, HostPages, RingError, RingIndex, Violation};

/// 112 bytes like a blkif request; the id is the first word.
type Req = [u64; 14];
type Rsp = [u64; 2];

const FRONT_WORDS: [usize; 2] = [0, 12];

#[derive(Arbitrary, Debug)]
enum Op {
    /// The honest front queues `count` requests and pushes them.
    Send {
        count: u8,
    },
    /// The honest front drains responses and re-arms.
    FrontDrain,
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
    /// The back under test.
    Next,
    Batch {
        budget: u8,
        answer: bool,
    },
    Answer {
        count: u8,
    },
    Push,
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
    back: BackRing<Arc<HostPages>, Req, Rsp>,
    entries: u32,
    /// Ids sent by the honest front, not yet consumed; meaningful until `hostile`.
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
    /// Records the outcome of a back operation and checks stickiness.
    fn consumed(&mut self, req: &Req) {
        if !self.check.hostile {
            assert_eq!(self.expected.pop_front(), Some(req[0]), "wrong request");
        }
    }

    fn back_op(&mut self, op: &Op) {
        let owned_by_front = FRONT_WORDS.map(|w| self.mem.peek_u32(w));
        let unanswered = self.back.unanswered_requests();
        match *op {
            Op::Next => {
                if let Some(Some(req)) = self.check.outcome(self.back.next_request()) {
                    self.consumed(&req);
                }
            }
            Op::Batch { budget, answer } => {
                let result = self.back.requests(u32::from(budget));
                let Some(mut batch) = self.check.outcome(result) else {
                    return;
                };
                let mut got = Vec::new();
                while let Some(req) = batch.next() {
                    got.push(req);
                    if answer {
                        batch.queue_response(&[req[0], 0]).unwrap();
                    }
                }
                drop(batch);
                assert!(got.len() <= usize::from(budget), "batch over budget");
                assert!(
                    got.len() as u32 + unanswered <= self.entries,
                    "batch over ring"
                );
                for req in &got {
                    self.consumed(req);
                }
            }
            Op::Answer { count } => {
                for i in 0..count {
                    let result = self.back.queue_response(&[u64::from(i), 1]);
                    if self.check.outcome(result).is_none() {
                        break;
                    }
                }
            }
            Op::Push => {
                let _ = self.check.outcome(self.back.push_responses());
            }
            Op::FinalCheck => {
                let _ = self.check.outcome(self.back.final_check_for_requests());
            }
            Op::DrainAll => {
                let mut n = 0u32;
                while let Some(Some(req)) = self.check.outcome(self.back.next_request()) {
                    self.consumed(&req);
                    n += 1;
                    assert!(
                        n + unanswered <= self.entries,
                        "drained more than the ring holds"
                    );
                }
            }
            _ => unreachable!(),
        }
        assert!(self.back.unanswered_requests() <= self.entries);
        let after = FRONT_WORDS.map(|w| self.mem.peek_u32(w));
        assert_eq!(owned_by_front, after, "the back wrote a front-owned index");
    }
}

fuzz_target!(|input: Input| {
    let pages = 1usize << (input.order % 3);
    let mem = HostPages::shared(pages);
    let mut front =
        FrontRing::<_, Req, Rsp>::init_at(mem.clone(), RingIndex::new(input.start)).unwrap();
    let back = BackRing::<_, Req, Rsp>::attach(mem.clone()).unwrap();
    let entries = back.entries();
    let mut h = Harness {
        mem: mem.clone(),
        back,
        entries,
        expected: VecDeque::new(),
        check: Check::default(),
    };
    let mut next_id = 0u64;
    let slot_area = pages * 4096 - 64;

    for op in input.ops.iter().take(2000) {
        match *op {
            Op::Send { count } => {
                for _ in 0..count {
                    next_id += 1;
                    if front.queue_request(&[next_id; 14]).is_err() {
                        break;
                    }
                    h.expected.push_back(next_id);
                }
                let _ = front.push_requests();
            }
            Op::FrontDrain => {
                while let Ok(Some(_)) = front.next_response() {}
                let _ = front.final_check_for_responses();
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
            ref back_op => h.back_op(back_op),
        }
    }
});
