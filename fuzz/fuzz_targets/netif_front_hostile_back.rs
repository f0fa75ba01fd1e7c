//! Fuzzes the netif frontend engine against a backend that writes arbitrary TX and RX
//! response slots and producer indices, keeps granted pages mapped, and floods events.
//!
//! The engine runs in the host simulator (`xen-sim`). Checked after every step: no panic or
//! hang; every packet completes at most once, and once the queue failed nothing is left in
//! flight; a delivered packet's fragments lie inside their pages and add up to its length;
//! a page is never freed while the backend maps it. Packets are copied (`send`) or lent in
//! place (`send_lent`, from memory the test owns): lent memory is freed at its completion
//! unless the completion says the backend still maps it, and then it is kept for good, so a
//! frame the backend maps is never freed either. At the end, after close, every packet sent
//! completed exactly once and nothing is granted but the two rings, what is deferred and the
//! frames of lent memory reported held.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use xen_core::feature::netif::Offload;
use xen_core::platform::{self, RingMemory};
use xen_netif::{
    Error, FrontConfig, Gso, NetFront, SendError, TxChecksum, TxFrag, TxLent, TxOutcome,
    TxPacket,
};
use std::collections::HashMap;
use xen_sim::{MapOp, Mapping, Pages, Sim};
use xen_sys::wire::netif::GsoType;
use xen_sys::{DomId, GrantRef};

#[derive(Arbitrary, Debug)]
enum Step {
    Send {
        len: u16,
        frags: u8,
        csum: u8,
        gso: u8,
        mss: u16,
        /// Lent in place (at offset `mss % 4096` of fresh pages) rather than copied.
        lent: bool,
    },
    PushTx,
    /// Writes TX response slot `slot`: a real id (picked among the ids the backend saw) or
    /// a raw one, and a raw status.
    TxRsp {
        slot: u8,
        real: bool,
        pick: u8,
        raw_id: u16,
        status: i8,
    },
    TxProduce {
        n: u8,
    },
    TxSetProd {
        value: u32,
    },
    /// Writes RX slot `slot` with raw bytes, or a response naming a real posted id.
    RxRsp {
        slot: u8,
        real: bool,
        pick: u8,
        bytes: [u8; 8],
    },
    RxProduce {
        n: u8,
    },
    RxSetProd {
        value: u32,
    },
    Map {
        pick: u8,
        writable: bool,
    },
    Unmap,
    TxEvent,
    RxEvent,
    Event,
    Poll {
        budget: u8,
        take: bool,
    },
    Refill,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sg: bool,
    gso: bool,
    steps: Vec<Step>,
}

const TX_ENTRY: usize = 12;
const RX_ENTRY: usize = 8;

fuzz_target!(|input: Input| {
    let sim = Sim::new();
    let fe = sim.create_domain(1);
    let be = sim.domain(0);
    let tx_ring = fe.alloc_ring(1).unwrap();
    let rx_ring = fe.alloc_ring(1).unwrap();
    let tx_gref = fe.grant_ring_page(DomId::DOM0, &tx_ring, 0).unwrap();
    let rx_gref = fe.grant_ring_page(DomId::DOM0, &rx_ring, 0).unwrap();
    let port = fe.alloc_unbound(DomId::DOM0).unwrap();
    be.bind_interdomain(fe.id(), port).unwrap();
    let offload = Offload {
        sg: input.sg,
        gso_tcpv4: input.gso && input.sg,
        gso_tcpv6: input.gso && input.sg,
        ipv4_csum: true,
        ipv6_csum: true,
    };
    let config = FrontConfig {
        tx: offload,
        rx: offload,
        tx_budget: 16,
    };
    // 32 ids per ring: small enough that ids run out and get reused.
    let mut front: NetFront<_, Pages, 32> = NetFront::new(
        fe.clone(),
        tx_ring,
        rx_ring,
        DomId::DOM0,
        (port, port),
        config,
    )
    .unwrap();
    let _ = front.refill_rx();
    let txm: Mapping = RingMemory::map_ring(&be, fe.id(), &[tx_gref]).unwrap();
    let rxm: Mapping = RingMemory::map_ring(&be, fe.id(), &[rx_gref]).unwrap();
    let mut sent: u64 = 0;
    let mut done: HashSet<u64> = HashSet::new();
    let mut kept: Vec<Mapping> = Vec::new();
    // Lent memory by token until its completion; memory reported held, with its frames.
    let mut lent_mem: HashMap<u64, (Pages, usize)> = HashMap::new();
    let mut held: Vec<(Pages, usize)> = Vec::new();
    let (mut tx_prod, mut rx_prod) = (0u32, 0u32);
    let data = vec![0x5au8; 65535];
    let read_u16 = |m: &Mapping, off: usize| {
        let mut b = [0u8; 2];
        assert!(m.read(off, &mut b));
        u16::from_ne_bytes(b)
    };
    for step in input.steps.iter().take(128) {
        let mut complete = |c: xen_netif::TxCompletion| {
            assert!(c.token < sent, "unknown token");
            assert!(done.insert(c.token), "completed twice");
            match lent_mem.remove(&c.token) {
                Some(mem) if c.still_mapped => held.push(mem),
                Some(mem) => drop(mem),
                None => assert!(!c.still_mapped, "a copied packet reported held"),
            }
        };
        match step {
            Step::Send {
                len,
                frags,
                csum,
                gso,
                mss,
                lent,
            } => {
                let len = usize::from(*len);
                let n = usize::from(*frags % 20).max(1);
                let pieces: Vec<TxFrag<'_>> = data[..len]
                    .chunks(len.div_ceil(n).max(1))
                    .map(|c| TxFrag {
                        data: c,
                        page_offset: c.len() * 7,
                    })
                    .collect();
                let (head, rest) = match pieces.split_first() {
                    Some((h, r)) => (*h, r),
                    None => (TxFrag::new(&[]), &[][..]),
                };
                let p = TxPacket {
                    head,
                    frags: rest,
                    csum: [
                        TxChecksum::None,
                        TxChecksum::Partial,
                        TxChecksum::Unnecessary,
                    ][usize::from(*csum % 3)],
                    gso: match gso % 3 {
                        0 => None,
                        1 => Some(Gso {
                            ty: GsoType::Tcpv4,
                            size: *mss,
                        }),
                        _ => Some(Gso {
                            ty: GsoType::Tcpv6,
                            size: *mss,
                        }),
                    },
                };
                let r = if *lent {
                    let offset = usize::from(*mss) % 4096;
                    let pages = (offset + len).div_ceil(4096).max(1);
                    let mem = fe.alloc_pages(pages);
                    mem.write(offset, &data[..len]);
                    let mut pieces = Vec::new();
                    let mut at = offset;
                    while at < offset + len {
                        let n = (4096 - at % 4096).min(offset + len - at);
                        pieces.push(TxLent {
                            gfn: mem.frame(at / 4096).unwrap(),
                            offset: (at % 4096) as u16,
                            len: n as u16,
                        });
                        at += n;
                    }
                    let r = front.send_lent(&pieces, p.csum, p.gso, sent);
                    if r.is_ok() {
                        lent_mem.insert(sent, (mem, pieces.len()));
                    }
                    r
                } else {
                    front.send(&p, sent)
                };
                match r {
                    Ok(()) => sent += 1,
                    Err(SendError::Failed) => assert!(front.is_failed()),
                    Err(_) => {}
                }
            }
            Step::PushTx => {
                let _ = front.push_tx();
            }
            Step::TxRsp {
                slot,
                real,
                pick,
                raw_id,
                status,
            } => {
                let slot = usize::from(*slot) % 256;
                let id = if *real {
                    // An id the front wrote into some request slot.
                    read_u16(&txm, 64 + (usize::from(*pick) % 256) * TX_ENTRY + 8)
                } else {
                    *raw_id
                };
                let mut b = [0u8; 4];
                b[..2].copy_from_slice(&id.to_ne_bytes());
                b[2..].copy_from_slice(&i16::from(*status % 4).to_ne_bytes());
                assert!(txm.write(64 + slot * TX_ENTRY, &b));
            }
            Step::TxProduce { n } => {
                tx_prod = tx_prod.wrapping_add(u32::from(*n % 40));
                assert!(txm.write(8, &tx_prod.to_ne_bytes()));
            }
            Step::TxSetProd { value } => {
                tx_prod = *value;
                assert!(txm.write(8, &tx_prod.to_ne_bytes()));
            }
            Step::RxRsp {
                slot,
                real,
                pick,
                bytes,
            } => {
                let slot = usize::from(*slot) % 256;
                let mut b = *bytes;
                if *real {
                    let id = read_u16(&rxm, 64 + (usize::from(*pick) % 256) * RX_ENTRY);
                    b[..2].copy_from_slice(&id.to_ne_bytes());
                }
                assert!(rxm.write(64 + slot * RX_ENTRY, &b));
            }
            Step::RxProduce { n } => {
                rx_prod = rx_prod.wrapping_add(u32::from(*n % 40));
                assert!(rxm.write(8, &rx_prod.to_ne_bytes()));
            }
            Step::RxSetProd { value } => {
                rx_prod = *value;
                assert!(rxm.write(8, &rx_prod.to_ne_bytes()));
            }
            Step::Map { pick, writable } => {
                // Any reference the front may have granted (they are allocated from 8 up).
                let gref = GrantRef::new(8 + u32::from(*pick));
                if let Some(Ok(m)) = be
                    .map_grants(&[MapOp {
                        granter: fe.id(),
                        gref,
                        writable: *writable,
                    }])
                    .pop()
                {
                    kept.push(m);
                }
            }
            Step::Unmap => {
                if let Some(m) = kept.pop() {
                    m.unmap();
                }
                fe.retry_deferred();
            }
            Step::TxEvent => {
                let r = front.tx_event(&mut complete);
                check(&front, r);
            }
            Step::RxEvent => {
                let r = front.rx_event();
                check(&front, r);
            }
            Step::Event => {
                let r = front.handle_event(&mut complete);
                check(&front, r);
            }
            Step::Poll { budget, take } => {
                let budget = u32::from(*budget % 80);
                let r = front.poll(budget, |p| {
                    assert!(p.frag_count() <= 18);
                    let mut total = 0u32;
                    for i in 0..p.frag_count() {
                        let (page, off, len) = p.frag(i).unwrap();
                        assert!(page.is_some());
                        assert!(usize::from(off) + usize::from(len) <= 4096);
                        total += u32::from(len);
                    }
                    assert_eq!(total, p.meta.len);
                    if *take {
                        // The glue keeps the first page (an skb frag); it is ours now.
                        drop(p.take_page(0));
                    }
                });
                if let Ok(p) = &r {
                    assert!(p.done <= budget.max(1));
                }
                check(&front, r);
            }
            Step::Refill => {
                let _ = front.refill_rx();
            }
        }
        assert_eq!(sim.grant_stats().freed_while_mapped, 0);
    }
    front.close(|c| {
        assert!(c.token < sent);
        assert!(done.insert(c.token), "completed twice");
        assert_eq!(c.outcome, TxOutcome::Aborted);
        match lent_mem.remove(&c.token) {
            Some(mem) if c.still_mapped => held.push(mem),
            Some(mem) => drop(mem),
            None => assert!(!c.still_mapped, "a copied packet reported held"),
        }
    });
    assert!(lent_mem.is_empty(), "every lent packet came back");
    assert_eq!(done.len() as u64, sent, "every packet completed once");
    let (tx_ring, rx_ring) = front.into_rings();
    drop((txm, rxm));
    platform::release_ring(&fe, tx_ring, &[tx_gref]);
    platform::release_ring(&fe, rx_ring, &[rx_gref]);
    for m in kept {
        m.unmap();
    }
    fe.retry_deferred();
    assert_eq!(sim.grant_stats().freed_while_mapped, 0);
    // The grants of held memory are the memory's for good; nothing else stays granted.
    let held_frames: usize = held.iter().map(|(_, n)| n).sum();
    let live = sim.live_grants(fe.id());
    let deferred = fe.deferred_frees() as u64;
    assert!(live >= deferred && live - deferred <= held_frames as u64);
    if held.is_empty() {
        assert_eq!(live, deferred);
    }
});

/// After an error the queue is failed and holds nothing.
fn check<T, P, M, const N: usize>(front: &NetFront<P, M, N>, r: Result<T, Error>)
where
    P: xen_grant::GrantOps
        + xen_evtchn::EvtchnOps
        + xen_core::platform::PageAlloc<Page = <P as xen_grant::GrantOps>::Page>,
    <P as xen_grant::GrantOps>::Page: xen_core::platform::PageBytes,
    M: xen_ring::SharedMemory,
{
    match r {
        Ok(_) => {}
        Err(Error::Fault(_) | Error::Ring(_)) => {
            assert!(front.is_failed());
            assert_eq!(front.tx_outstanding(), 0);
            assert_eq!(front.rx_posted(), 0);
            assert_eq!(front.pages_held(), 0);
        }
        Err(e) => panic!("{e:?}"),
    }
}
