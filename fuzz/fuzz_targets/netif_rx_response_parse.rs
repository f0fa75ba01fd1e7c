//! Fuzzes the netif RX response parser alone: arbitrary 8-byte slots (responses and
//! extra-info slots alike), arbitrary page-came-back flags, arbitrary requested GSO types.
//!
//! Checked on every slot: no panic; a kept data slot lies inside its page; a packet that
//! ends well has as many bytes as its kept slots, at most 18 data slots, a GSO type that was
//! requested with a size that is not 0, and no page that failed to come back; a chain never
//! runs past `MAX_RX_CHAIN` slots without the parser giving up (and starting afresh).
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use xen_netif::rx::{
    RxError, RxLimits, RxParser, SlotKind, MAX_RX_CHAIN, MAX_RX_DATA_SLOTS, MAX_RX_EXTRAS,
};
use xen_sys::wire::netif::GsoType;

#[derive(Arbitrary, Debug)]
struct Input {
    gso_tcpv4: bool,
    gso_tcpv6: bool,
    slots: Vec<([u8; 8], bool)>,
}

fuzz_target!(|input: Input| {
    let limits = RxLimits {
        gso_tcpv4: input.gso_tcpv4,
        gso_tcpv6: input.gso_tcpv6,
    };
    let mut parser = RxParser::new(limits);
    let (mut chain, mut kept_bytes, mut kept, mut data, mut extras, mut spoiled) =
        (0usize, 0u32, 0usize, 0usize, 0usize, false);
    for (raw, page_ok) in &input.slots {
        let extra = parser.expects_extra();
        chain += 1;
        let fed = match parser.feed(raw, *page_ok) {
            Ok(fed) => fed,
            Err(_) => {
                assert_eq!(chain, MAX_RX_CHAIN + 1);
                assert!(!parser.in_packet());
                (chain, kept_bytes, kept, data, extras, spoiled) = (0, 0, 0, 0, 0, false);
                continue;
            }
        };
        assert!(chain <= MAX_RX_CHAIN);
        match fed.kind {
            SlotKind::Extra => {
                assert!(extra);
                extras += 1;
            }
            SlotKind::Data { offset, len, keep } => {
                assert!(!extra);
                data += 1;
                if keep {
                    assert!(usize::from(offset) + usize::from(len) <= 4096);
                    assert!(len > 0);
                    kept_bytes += u32::from(len);
                    kept += 1;
                } else if len > 0 && !page_ok {
                    spoiled = true;
                }
            }
        }
        if let Some(end) = fed.end {
            assert!(!parser.in_packet());
            match end {
                Ok(meta) => {
                    assert!(!spoiled);
                    assert_eq!(meta.len, kept_bytes);
                    assert!(meta.len > 0);
                    assert!(data <= MAX_RX_DATA_SLOTS && kept <= data);
                    assert!(extras <= MAX_RX_EXTRAS);
                    assert_eq!(usize::from(meta.slots), chain);
                    if let Some(g) = meta.gso {
                        assert!(g.size > 0);
                        match g.ty {
                            GsoType::Tcpv4 => assert!(limits.gso_tcpv4),
                            GsoType::Tcpv6 => assert!(limits.gso_tcpv6),
                            GsoType::None => panic!("GSO type none accepted"),
                        }
                    }
                }
                Err(RxError::TooManySlots) => assert!(data > MAX_RX_DATA_SLOTS),
                Err(_) => {}
            }
            (chain, kept_bytes, kept, data, extras, spoiled) = (0, 0, 0, 0, 0, false);
        } else {
            assert!(parser.in_packet());
        }
    }
});
