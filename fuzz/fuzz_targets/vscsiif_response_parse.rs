//! Fuzzes the frontend's check of a vscsiif response: arbitrary 252-byte slots against an
//! arbitrary expectation (a command of some transfer length, or a task).
//!
//! Checked on every run: no panic; an accepted command answer has a known host byte and
//! status, at most 96 bytes of sense data (what it reports equals the slot's first
//! `sense_len` bytes) and a residual within the transfer; an accepted task answer comes from
//! a reset result or a host error.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use xen_sys::wire::vscsiif as wire;
use xen_vscsiif::response::{check, encode, STATUSES};
use xen_vscsiif::{Answer, Expected};

#[derive(Arbitrary, Debug)]
struct Input {
    slot: [u8; 252],
    task: bool,
    transfer: u32,
}

fuzz_target!(|input: Input| {
    let rsp = wire::Response::from_bytes(&input.slot);
    let expected = if input.task {
        Expected::Task
    } else {
        Expected::Command {
            transfer: input.transfer,
        }
    };
    match check(&rsp, expected) {
        Err(_) => {}
        Ok(Answer::Task { success }) => {
            assert!(input.task);
            assert_eq!(success, rsp.rslt == wire::RSLT_RESET_SUCCESS);
        }
        Ok(Answer::Command(o)) => {
            assert!(!input.task);
            assert!(o.host <= 20 && STATUSES.contains(&o.status));
            assert!(o.sense_len <= 96);
            assert_eq!(o.sense(), &rsp.sense_buffer[..usize::from(rsp.sense_len)]);
            assert!(o.residual <= input.transfer);
            // What a backend would send for it is accepted again, unchanged.
            let again = encode(rsp.rqid, &o, input.transfer);
            assert_eq!(check(&again, expected), Ok(Answer::Command(o)));
        }
    }
});
