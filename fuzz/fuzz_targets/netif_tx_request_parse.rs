//! Fuzzes the netback TX request parser alone: arbitrary 12-byte slots (requests and
//! extra-info slots alike), arbitrary limits (fatal_skb_slots, offered offloads, multicast).
//!
//! Checked on every slot: no panic; a chain never runs past `fatal_slots` data slots plus
//! `MAX_TX_EXTRAS` extra-info slots without ending or faulting (and a fault starts afresh);
//! a packet that ends well has at most 18 data slots, every data slot inside its page, a
//! first slot whose own data plus the others' is the packet's length, at least 14 bytes
//! unless it is a multicast request, only one slot without `sg`, and a GSO type that was
//! offered with a size that is not 0.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use xen_netif::tx::{TxLimits, TxParser, TxSlotKind, MAX_FATAL_SKB_SLOTS, MAX_TX_EXTRAS};
use xen_sys::wire::netif::{GsoType, NR_SLOTS_MIN};

#[derive(Arbitrary, Debug)]
struct Input {
    fatal_slots: u8,
    sg: bool,
    gso_tcpv4: bool,
    gso_tcpv6: bool,
    multicast: bool,
    slots: Vec<[u8; 12]>,
}

fuzz_target!(|input: Input| {
    let mut parser = TxParser::new(TxLimits {
        fatal_slots: usize::from(input.fatal_slots),
        sg: input.sg,
        gso_tcpv4: input.gso_tcpv4,
        gso_tcpv6: input.gso_tcpv6,
        multicast: input.multicast,
    });
    let limits = parser.limits();
    assert!((NR_SLOTS_MIN..=MAX_FATAL_SKB_SLOTS).contains(&limits.fatal_slots));
    let (mut data, mut extras, mut first_offset, mut rest) = (0usize, 0usize, 0u16, 0u32);
    for raw in &input.slots {
        let fed = match parser.feed(raw) {
            Ok(fed) => fed,
            Err(_) => {
                assert!(!parser.in_packet());
                (data, extras, rest) = (0, 0, 0);
                continue;
            }
        };
        match fed.kind {
            TxSlotKind::Data(s) => {
                if data == 0 {
                    first_offset = s.offset;
                } else {
                    assert!(usize::from(s.offset) + usize::from(s.size) <= 4096);
                    rest += u32::from(s.size);
                }
                data += 1;
            }
            TxSlotKind::Extra => extras += 1,
        }
        assert!(data <= limits.fatal_slots);
        assert!(extras <= MAX_TX_EXTRAS);
        if let Some(end) = fed.end {
            assert!(!parser.in_packet());
            if let Ok(meta) = end {
                assert!(data <= NR_SLOTS_MIN);
                assert_eq!(usize::from(meta.data_slots), data);
                assert_eq!(usize::from(meta.extras), extras);
                assert_eq!(u32::from(meta.first_size) + rest, u32::from(meta.len));
                assert!(usize::from(first_offset) + usize::from(meta.first_size) <= 4096);
                assert!(meta.mcast.is_some() || meta.len >= 14);
                assert!(meta.mcast.is_none() || limits.multicast);
                assert!(data == 1 || limits.sg);
                if let Some(g) = meta.gso {
                    assert!(g.size > 0);
                    match g.ty {
                        GsoType::Tcpv4 => assert!(limits.gso_tcpv4),
                        GsoType::Tcpv6 => assert!(limits.gso_tcpv6),
                        GsoType::None => panic!("GSO type none accepted"),
                    }
                }
            }
            (data, extras, rest) = (0, 0, 0);
        } else {
            assert!(parser.in_packet());
        }
    }
});
