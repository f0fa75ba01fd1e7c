//! Model check of the notification protocol: no interleaving and no memory ordering the
//! C11 model allows makes a consumer sleep on work it was never woken for.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p xen-ring --test loom --release` (the xtask
//! test runner does, in `target/loom`). Under `cfg(loom)` the ring's index words and barriers
//! are loom's, so loom explores every interleaving of the two sides and every value each load
//! may legally return.
//!
//! The event channel is modelled as one pending flag: the producer sets it when the push says
//! [`Notify::Yes`]; the consumer clears it when its handler starts, drains the ring, and goes
//! to sleep only when its final check says there is no more work. After both sides finish, a
//! set flag means the handler runs once more. A lost wake-up is a request (or response) left
//! on the ring with the consumer asleep and no event pending; the test asserts there is none.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use xen_ring::{BackRing, FrontRing, HostPages, Notify};

type Pages = std::sync::Arc<HostPages>;

/// How many entries each model sends, one push each (so the second push can be held off).
const SENT: u64 = 2;

/// Sends the event if the push asked for one (`notify_remote_via_evtchn`, a full barrier).
fn kick(notify: Notify, pending: &AtomicBool) {
    if notify.is_required() {
        pending.store(true, Ordering::SeqCst);
    }
}

/// The back's event handler: acknowledge, drain, final check, repeat until idle.
fn back_handler(back: &mut BackRing<Pages, u64, u64>, pending: &AtomicBool, seen: &mut Vec<u64>) {
    pending.store(false, Ordering::SeqCst);
    loop {
        while let Some(req) = back.next_request().unwrap() {
            seen.push(req);
        }
        if !back.final_check_for_requests().unwrap() {
            return;
        }
    }
}

/// The front's response handler, the mirror image.
fn front_handler(
    front: &mut FrontRing<Pages, u64, u64>,
    pending: &AtomicBool,
    seen: &mut Vec<u64>,
) {
    pending.store(false, Ordering::SeqCst);
    loop {
        while let Some(rsp) = front.next_response().unwrap() {
            seen.push(rsp);
        }
        if !front.final_check_for_responses().unwrap() {
            return;
        }
    }
}

#[test]
fn back_is_always_woken_for_new_requests() {
    back_model(false);
}

/// The first request is only published (`publish_requests`, no barrier, no decision); the push
/// after the second decides for both.
#[test]
fn back_is_woken_for_requests_published_before_the_push() {
    back_model(true);
}

fn back_model(publish_first: bool) {
    loom::model(move || {
        let pages = HostPages::shared(1);
        let mut front = FrontRing::<_, u64, u64>::init(pages.clone()).unwrap();
        let mut back = BackRing::<_, u64, u64>::attach(pages).unwrap();
        let pending = Arc::new(AtomicBool::new(false));

        let producer = {
            let pending = pending.clone();
            thread::spawn(move || {
                for id in 0..SENT {
                    front.queue_request(&id).unwrap();
                    if publish_first && id + 1 < SENT {
                        front.publish_requests().unwrap();
                    } else {
                        kick(front.push_requests().unwrap(), &pending);
                    }
                }
            })
        };
        let consumer = {
            let pending = pending.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                back_handler(&mut back, &pending, &mut seen);
                (back, seen)
            })
        };
        producer.join().unwrap();
        let (mut back, mut seen) = consumer.join().unwrap();
        // The back is asleep now. Only a pending event wakes it.
        if pending.load(Ordering::SeqCst) {
            back_handler(&mut back, &pending, &mut seen);
        }
        assert_eq!(
            seen,
            (0..SENT).collect::<Vec<_>>(),
            "a request was left unseen"
        );
    });
}

#[test]
fn front_is_always_woken_for_new_responses() {
    front_model(false);
}

/// The first response is only published (`publish_responses`); the push after the second
/// decides for both.
#[test]
fn front_is_woken_for_responses_published_before_the_push() {
    front_model(true);
}

fn front_model(publish_first: bool) {
    loom::model(move || {
        let pages = HostPages::shared(1);
        let mut front = FrontRing::<_, u64, u64>::init(pages.clone()).unwrap();
        let mut back = BackRing::<_, u64, u64>::attach(pages).unwrap();
        // Set up outside the model's threads: the requests the back will answer.
        for id in 0..SENT {
            front.queue_request(&id).unwrap();
        }
        let _ = front.push_requests().unwrap();
        for _ in 0..SENT {
            back.next_request().unwrap().unwrap();
        }
        let pending = Arc::new(AtomicBool::new(false));

        let producer = {
            let pending = pending.clone();
            thread::spawn(move || {
                for id in 0..SENT {
                    back.queue_response(&(id + 100)).unwrap();
                    if publish_first && id + 1 < SENT {
                        back.publish_responses().unwrap();
                    } else {
                        kick(back.push_responses().unwrap(), &pending);
                    }
                }
            })
        };
        let consumer = {
            let pending = pending.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                front_handler(&mut front, &pending, &mut seen);
                (front, seen)
            })
        };
        producer.join().unwrap();
        let (mut front, mut seen) = consumer.join().unwrap();
        if pending.load(Ordering::SeqCst) {
            front_handler(&mut front, &pending, &mut seen);
        }
        assert_eq!(seen, vec![100, 101], "a response was left unseen");
    });
}
