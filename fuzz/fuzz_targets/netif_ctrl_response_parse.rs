//! Fuzzes the netif control-ring response check and the hashing sequence it feeds: arbitrary
//! 12-byte responses (some given the right id and type, so the sequence gets deep), arbitrary
//! configurations.
//!
//! Checked on every response: no panic; `parse_response` accepts exactly the responses with
//! the outstanding id, its type and a known status, and otherwise names the first thing
//! wrong. Checked on every request the sequence asks for: a table size between the number of
//! queues and the size configured (so never more than one page), a table payload of that
//! size, a key of the configured length, flags within those configured and known; the
//! sequence ends within 8 requests, and once ended it asks for nothing and has an outcome
//! (`Configured` only with flags set). A fault starts a fresh sequence, as a reconnect would.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use xen_netif::ctrl::{
    parse_response, ConfigError, CtrlOutcome, Fault, HashConfig, Payload, Sequence, Step,
    KEY_LEN, MAX_MAPPING_ENTRIES,
};
use xen_sys::wire::netif::{CtrlResponse, CtrlStatus, HashFlags};

#[derive(Arbitrary, Debug)]
struct Input {
    num_queues: u8,
    flags: u8,
    key_len: u8,
    mapping_entries: u16,
    /// Each response, and whether to give it the outstanding id and type.
    responses: Vec<([u8; 12], bool)>,
}

fuzz_target!(|input: Input| {
    let config = HashConfig {
        num_queues: u32::from(input.num_queues),
        flags: HashFlags::from_bits_retain(u32::from(input.flags)),
        key_len: input.key_len,
        mapping_entries: u32::from(input.mapping_entries),
        ..HashConfig::new(1)
    };
    let fresh = || match Sequence::new(config) {
        Ok(s) => Some(s),
        Err(e) => {
            // Refused configurations are the out-of-bounds ones.
            assert_eq!(config.check(), Err(e));
            assert!(matches!(
                e,
                ConfigError::Queues
                    | ConfigError::Flags
                    | ConfigError::KeyLength
                    | ConfigError::MappingEntries
            ));
            None
        }
    };
    let Some(mut seq) = fresh() else { return };
    assert!(usize::from(config.key_len) <= KEY_LEN);
    let mut id: u16 = 0;
    let mut sent = 0usize;
    let mut table: Option<u32> = None;
    for (raw, fix) in &input.responses {
        let Some(cmd) = seq.command() else {
            assert!(seq.is_finished());
            match seq.outcome() {
                Some(CtrlOutcome::Configured(s)) => {
                    assert!(!s.flags.is_empty());
                    assert!(config.flags.contains(s.flags));
                    assert!(s.offered.contains(s.flags));
                    assert_eq!(s.mapping_entries, table.unwrap_or(0));
                }
                Some(CtrlOutcome::Failed(_)) => panic!("the pure sequence never fails"),
                Some(_) => {}
                None => panic!("finished without an outcome"),
            }
            // The next connection.
            seq = fresh().unwrap();
            (sent, table) = (0, None);
            continue;
        };
        sent += 1;
        assert!(sent <= 8, "the sequence runs past 8 requests");
        let ty = cmd.step.ctrl_type();
        match cmd.step {
            Step::SetMappingSize => {
                let n = cmd.data[0];
                assert!(n >= config.num_queues && n <= config.mapping_entries);
                assert!(n <= MAX_MAPPING_ENTRIES);
                table = Some(n);
            }
            Step::SetMapping => {
                assert_eq!(cmd.payload, Some(Payload::Mapping { entries: table.unwrap() }));
                assert_eq!(cmd.data[1], table.unwrap());
            }
            Step::SetKey => {
                assert_eq!(cmd.payload, Some(Payload::Key));
                assert_eq!(cmd.data[1], u32::from(config.key_len));
            }
            Step::SetFlags => {
                let f = HashFlags::from_bits(cmd.data[0]).expect("known flags only");
                assert!(!f.is_empty() && config.flags.contains(f));
            }
            _ => assert_eq!(cmd.payload, None),
        }
        let mut bytes = *raw;
        if *fix {
            bytes[0..2].copy_from_slice(&id.to_ne_bytes());
            bytes[2..4].copy_from_slice(&u16::from(ty).to_ne_bytes());
        }
        let rsp = CtrlResponse::from_bytes(&bytes);
        match parse_response(&bytes, id, ty) {
            Ok(reply) => {
                assert_eq!(rsp.id, id);
                assert_eq!(rsp.ty, u16::from(ty));
                assert_eq!(CtrlStatus::try_from(rsp.status), Ok(reply.status));
                assert_eq!(reply.data, rsp.data);
                let before = seq.step();
                seq.answer(reply);
                assert_ne!(seq.step(), before, "every answer moves the sequence on");
                id = id.wrapping_add(1);
            }
            Err(Fault::BadId { id: got, expected }) => {
                assert_eq!((got, expected), (rsp.id, id));
                assert_ne!(got, expected);
                seq = fresh().unwrap();
                (id, sent, table) = (0, 0, None);
            }
            Err(Fault::WrongType { ty: got, expected }) => {
                assert_eq!(rsp.id, id);
                assert_eq!((got, expected), (rsp.ty, ty));
                assert_ne!(got, u16::from(ty));
                seq = fresh().unwrap();
                (id, sent, table) = (0, 0, None);
            }
            Err(Fault::UnknownStatus(s)) => {
                assert_eq!((rsp.id, rsp.ty), (id, u16::from(ty)));
                assert_eq!(s, rsp.status);
                assert!(s > 3);
                seq = fresh().unwrap();
                (id, sent, table) = (0, 0, None);
            }
            Err(Fault::Unexpected(_)) => panic!("parse_response never says unexpected"),
        }
    }
});
