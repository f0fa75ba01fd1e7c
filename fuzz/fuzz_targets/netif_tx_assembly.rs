//! Fuzzes the netfront's TX assembly: arbitrary packets handed to `send`, read off the ring by a backend that checks every slot as netback would, and answered in any order with any status.
//!
//! A packet is a head and up to 24 fragments of any length and page offset, a checksum state
//! and a GSO type and size. The engine runs in the host simulator with its id tables on the
//! heap (`NetFront::with_tables`), 32 or 256 ids. The backend is honest but arbitrary: it
//! reads what was published, answers the slots it read in any order with `OKAY`, `ERROR` or
//! `DROPPED` (`RSP_NULL` for a GSO slot), publishes when it likes, and keeps grants mapped.
//!
//! Checked, besides no panic and no hang:
//! - `send` refuses exactly the packets it must (`BadLength`, `BadGso`), is `Busy` only when
//!   `tx_room()` was false, and a refused packet leaves nothing granted or queued;
//! - each packet on the ring takes at most 18 slots (`XEN_NETIF_NR_SLOTS_MIN`): one per
//!   4096 bytes and the GSO slot; the first slot's size is the packet's length and the data
//!   slots' sizes add up to it, each within its page; the flags, the GSO slot and the ids
//!   are right (an id is never reused while its packet is in flight);
//! - the bytes behind each grant are the packet's, the rest of the page is zero, and the
//!   grant is read-only;
//! - every packet completes once, after all its slots were answered, with its length and
//!   the first failing status it got;
//! - grants and pages add up after every step (the rings, the slots in flight and what is
//!   deferred; pages allocated = pages kept + pages deferred), nothing is freed while
//!   mapped; once all is answered nothing is granted but the rings, and after close the
//!   engine holds no page.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::sync::OnceLock;
use xen_core::feature::netif::Offload;
use xen_core::platform::{self, RingMemory};
use xen_netif::{
    FrontConfig, Gso, NetFront, RxEntry, SendError, TxChecksum, TxCompletion, TxEntry, TxFrag,
    TxOutcome, TxPacket,
};
use xen_ring::BackRing;
use xen_sim::{Domain, MapOp, Mapping, Pages, Sim};
use xen_sys::wire::netif::{
    ExtraInfo, ExtraType, GsoType, NetTxFlags, TxRequest, TxResponse, NR_SLOTS_MIN, RSP_DROPPED,
    RSP_ERROR, RSP_NULL, RSP_OKAY,
};
use xen_sys::{DomId, GrantRef};

const PAGE: usize = 4096;
const MAX_LEN: usize = 65535;
const MAX_FRAGS: usize = 24;
const MAX_STEPS: usize = 96;

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Piece {
    len: u16,
    /// Takes `len` modulo 1600 (a frame's worth), so packets of many pieces stay in range.
    short: bool,
    /// Where the piece starts in the pattern, and its offset in its page.
    at: u16,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Send {
        head: Piece,
        frags: Vec<Piece>,
        csum: u8,
        gso: u8,
        mss: u16,
    },
    PushTx,
    /// The backend reads every published request.
    Read,
    /// Answers the `pick`th unanswered slot: `status` picks `OKAY` (most often), `ERROR` or
    /// `DROPPED`.
    Answer {
        pick: u8,
        status: u8,
    },
    /// Answers every unanswered slot, oldest first, `OKAY`.
    AnswerAll,
    /// Publishes the queued responses.
    Publish,
    /// Maps the `pick`th unanswered data slot's grant read-only and keeps it mapped.
    Map {
        pick: u8,
    },
    /// Unmaps the last kept mapping and retries the deferred frees.
    Unmap,
    TxEvent,
    /// A round of the backend: push, read, answer `answers` slots (each the `pick`th
    /// unanswered, statuses from the bits of `status`), publish, and run the TX event until
    /// it has nothing more: packets complete, and ids and pages get reused, in few steps.
    Round {
        answers: u8,
        pick: u8,
        status: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// 32 ids (ids run out before ring slots) or 256.
    small: bool,
    sg: bool,
    gso_v4: bool,
    gso_v6: bool,
    budget: u8,
    steps: Vec<Step>,
}

/// The bytes packets are cut from: no period that divides a page, so a slot out of place
/// shows.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        (0..MAX_LEN + 65536)
            .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 11) as u8 ^ (i / 4093) as u8)
            .collect()
    })
}

fn piece(p: Piece) -> TxFrag<'static> {
    let at = usize::from(p.at);
    let len = if p.short { p.len % 1600 } else { p.len };
    TxFrag {
        data: &pattern()[at..at + usize::from(len)],
        page_offset: at,
    }
}

/// A packet the engine took, as the test expects it on the ring.
struct Sent {
    data: Vec<u8>,
    csum: TxChecksum,
    gso: Option<Gso>,
    /// Filled when the backend read it.
    head_id: Option<u16>,
    data_slots: usize,
    answered: usize,
    /// The first failing status the backend gave, in ring order.
    outcome: TxOutcome,
    completed: bool,
}

/// A slot the backend read and has not answered.
#[derive(Clone, Copy)]
struct Unanswered {
    packet: usize,
    id: u16,
    gref: GrantRef,
    extra: bool,
}

struct Backend {
    txb: BackRing<Mapping, [u8; TxRequest::SIZE], [u8; TxResponse::SIZE]>,
    be: Domain,
    fe_id: DomId,
    /// Packets in send order; the token of each is its index.
    sent: Vec<Sent>,
    next_read: usize,
    unanswered: Vec<Unanswered>,
    /// Ids the engine may not hand out: data slots unanswered, heads of packets in flight.
    busy: HashSet<u16>,
    kept: Vec<Mapping>,
}

impl Backend {
    fn map(&self, gref: GrantRef, writable: bool) -> Option<Mapping> {
        self.be
            .map_grants(&[MapOp {
                granter: self.fe_id,
                gref,
                writable,
            }])
            .pop()?
            .ok()
    }

    /// Reads every published packet and checks it against what was sent.
    fn read(&mut self, n: usize) {
        while let Some(raw) = self.txb.next_request().unwrap() {
            let first = TxRequest::from_bytes(&raw);
            let index = self.next_read;
            self.next_read += 1;
            let sent = self.sent.get(index).expect("a packet that was not sent");
            let flags = NetTxFlags::from_bits(first.flags).expect("unknown TX flags");
            let mut want = sent.csum.flags();
            if sent.data.len() > PAGE {
                want |= NetTxFlags::MORE_DATA;
            }
            if sent.gso.is_some() {
                want |= NetTxFlags::EXTRA_INFO;
            }
            assert_eq!(flags, want, "first slot's flags");
            assert_eq!(
                usize::from(first.size),
                sent.data.len(),
                "first size = length"
            );
            let mut slots = 1;
            let mut reqs = vec![first];
            if let Some(g) = sent.gso {
                let raw = self.txb.next_request().unwrap().expect("the GSO slot");
                let extra = ExtraInfo::from_bytes(raw[..ExtraInfo::SIZE].try_into().unwrap());
                assert_eq!(extra.ty, u8::from(ExtraType::Gso));
                assert_eq!(extra.flags, 0, "no further extra slot");
                assert_eq!(extra.gso_type(), u8::from(g.ty));
                assert_eq!(extra.gso_size(), g.size);
                slots += 1;
                self.unanswered.push(Unanswered {
                    packet: index,
                    id: 0,
                    gref: GrantRef::new(0),
                    extra: true,
                });
            }
            let mut more = flags.contains(NetTxFlags::MORE_DATA);
            while more {
                let r = TxRequest::from_bytes(&self.txb.next_request().unwrap().expect("a slot"));
                let f = NetTxFlags::from_bits(r.flags).expect("unknown TX flags");
                assert_eq!(f - NetTxFlags::MORE_DATA, NetTxFlags::empty());
                more = f.contains(NetTxFlags::MORE_DATA);
                reqs.push(r);
                slots += 1;
                assert!(slots <= NR_SLOTS_MIN, "over XEN_NETIF_NR_SLOTS_MIN slots");
            }
            assert!(slots <= NR_SLOTS_MIN, "over XEN_NETIF_NR_SLOTS_MIN slots");
            assert_eq!(reqs.len(), sent.data.len().div_ceil(PAGE), "packed pages");
            // The first slot holds what the others leave; the sizes add up to the length.
            let rest: usize = reqs[1..].iter().map(|r| usize::from(r.size)).sum();
            assert!(rest < sent.data.len(), "the first slot holds something");
            let mut at = 0;
            let mut page = vec![0u8; PAGE];
            for (i, r) in reqs.iter().enumerate() {
                let len = if i == 0 {
                    sent.data.len() - rest
                } else {
                    usize::from(r.size)
                };
                assert!(
                    len > 0 && usize::from(r.offset) + len <= PAGE,
                    "within the page"
                );
                assert!(usize::from(r.id) < n, "id out of the table");
                assert!(self.busy.insert(r.id), "id {} reused while in flight", r.id);
                let gref = GrantRef::new(r.gref);
                let m = self.map(gref, false).expect("slot page granted");
                assert!(m.read(0, &mut page));
                m.unmap();
                let (off, end) = (usize::from(r.offset), usize::from(r.offset) + len);
                assert!(
                    page[off..end] == sent.data[at..at + len],
                    "slot {i}'s bytes"
                );
                assert!(
                    page[..off].iter().chain(&page[end..]).all(|&b| b == 0),
                    "stale bytes around slot {i}"
                );
                assert!(self.map(gref, true).is_none(), "granted writable");
                at += len;
                self.unanswered.push(Unanswered {
                    packet: index,
                    id: r.id,
                    gref,
                    extra: false,
                });
            }
            assert_eq!(at, sent.data.len());
            let sent = &mut self.sent[index];
            sent.head_id = Some(first.id);
            sent.data_slots = reqs.len();
        }
    }

    fn answer(&mut self, pick: usize, status: u8) {
        if self.unanswered.is_empty() {
            return;
        }
        let u = self.unanswered.remove(pick % self.unanswered.len());
        let mut r = TxResponse::ZERO;
        if u.extra {
            // netback writes only the status of an extra slot's answer.
            r.id = 0xffff;
            r.status = RSP_NULL;
        } else {
            r.id = u.id;
            r.status = [RSP_OKAY, RSP_OKAY, RSP_ERROR, RSP_DROPPED][usize::from(status % 4)];
            let sent = &mut self.sent[u.packet];
            sent.answered += 1;
            if sent.outcome == TxOutcome::Okay {
                sent.outcome = match r.status {
                    RSP_OKAY => TxOutcome::Okay,
                    RSP_ERROR => TxOutcome::Error,
                    _ => TxOutcome::Dropped,
                };
            }
            if sent.head_id != Some(u.id) {
                self.busy.remove(&u.id);
            }
        }
        self.txb.queue_response(&r.to_bytes()).unwrap();
    }

    fn complete(&mut self, c: TxCompletion) {
        let sent = self.sent.get_mut(c.token as usize).expect("unknown token");
        assert!(!sent.completed, "completed twice");
        assert_eq!(
            sent.answered, sent.data_slots,
            "completed before all answered"
        );
        assert!(sent.data_slots > 0, "completed before it was read");
        assert_eq!(c.len as usize, sent.data.len());
        assert_eq!(c.outcome, sent.outcome);
        sent.completed = true;
        if let Some(id) = sent.head_id {
            self.busy.remove(&id);
        }
    }
}

type Front<const N: usize> = NetFront<Domain, Pages, N, Vec<TxEntry<Pages>>, Vec<RxEntry<Pages>>>;

/// Grants and pages add up: the rings, the slots in flight, the deferred pages.
fn accounted<const N: usize>(front: &Front<N>, sim: &Sim, fe: &Domain) {
    let s = front.stats();
    let in_flight = s.grants - s.grant_ends;
    assert_eq!(
        sim.live_grants(fe.id()),
        2 + in_flight + fe.deferred_frees() as u64,
        "grants: rings + in flight + deferred"
    );
    assert_eq!(
        s.page_allocs,
        front.pages_held() as u64 + s.deferred_frees,
        "pages: kept + deferred"
    );
    assert!(front.pages_held() <= N);
    let g = sim.grant_stats();
    assert_eq!((g.freed_while_granted, g.freed_while_mapped), (0, 0));
}

/// Publishes, reads, answers and completes everything.
fn drain<const N: usize>(front: &mut Front<N>, back: &mut Backend) {
    front.push_tx().unwrap();
    back.read(N);
    while !back.unanswered.is_empty() {
        back.answer(0, 0);
    }
    let _ = back.txb.push_responses().unwrap();
    for _ in 0..1000 {
        if !front.tx_event(|c| back.complete(c)).unwrap().more {
            break;
        }
    }
}

fn run<const N: usize>(input: &Input) {
    let sim = Sim::new();
    let fe = sim.create_domain(1);
    let be = sim.domain(0);
    let tx_ring = fe.alloc_ring(1).unwrap();
    let rx_ring = fe.alloc_ring(1).unwrap();
    let tx_gref = fe.grant_ring_page(DomId::DOM0, &tx_ring, 0).unwrap();
    let rx_gref = fe.grant_ring_page(DomId::DOM0, &rx_ring, 0).unwrap();
    let port = fe.alloc_unbound(DomId::DOM0).unwrap();
    be.bind_interdomain(fe.id(), port).unwrap();
    let tx = Offload {
        sg: input.sg,
        gso_tcpv4: input.gso_v4,
        gso_tcpv6: input.gso_v6,
        ipv4_csum: true,
        ipv6_csum: true,
    };
    let config = FrontConfig {
        tx,
        rx: Offload::default(),
        tx_budget: u32::from(input.budget % 80),
    };
    let tables = (
        (0..N).map(|_| TxEntry::new()).collect(),
        (0..N).map(|_| RxEntry::new()).collect(),
    );
    let mut front: Front<N> = NetFront::with_tables(
        fe.clone(),
        tx_ring,
        rx_ring,
        DomId::DOM0,
        (port, port),
        config,
        tables.0,
        tables.1,
    )
    .unwrap();
    // No RX buffers are posted: every grant and page past the rings is TX's.
    let mut back = Backend {
        txb: BackRing::attach(RingMemory::map_ring(&be, fe.id(), &[tx_gref]).unwrap()).unwrap(),
        be: be.clone(),
        fe_id: fe.id(),
        sent: Vec::new(),
        next_read: 0,
        unanswered: Vec::new(),
        busy: HashSet::new(),
        kept: Vec::new(),
    };
    let max_len = if input.sg { MAX_LEN } else { PAGE };

    for step in input.steps.iter().take(MAX_STEPS) {
        match step {
            Step::Send {
                head,
                frags,
                csum,
                gso,
                mss,
            } => {
                let frags: Vec<TxFrag<'static>> =
                    frags.iter().take(MAX_FRAGS).map(|&p| piece(p)).collect();
                let csum = [
                    TxChecksum::None,
                    TxChecksum::Partial,
                    TxChecksum::Unnecessary,
                ][usize::from(csum % 3)];
                let gso = match gso % 4 {
                    0 => None,
                    1 => Some(GsoType::Tcpv4),
                    2 => Some(GsoType::Tcpv6),
                    _ => Some(GsoType::None),
                }
                .map(|ty| Gso { ty, size: *mss });
                let p = TxPacket {
                    head: piece(*head),
                    frags: &frags,
                    csum,
                    gso,
                };
                let len = p.len();
                let gso_ok = gso.is_none_or(|g| {
                    let offered = match g.ty {
                        GsoType::Tcpv4 => input.gso_v4,
                        GsoType::Tcpv6 => input.gso_v6,
                        GsoType::None => false,
                    };
                    offered && g.size > 0 && csum == TxChecksum::Partial
                });
                let room = front.tx_room();
                let before = (front.stats(), front.tx_outstanding());
                let token = back.sent.len() as u64;
                match front.send(&p, token) {
                    Ok(()) => {
                        assert!((14..=max_len).contains(&len) && gso_ok, "took a bad packet");
                        let s = front.stats();
                        assert_eq!(s.tx_packets, before.0.tx_packets + 1);
                        assert_eq!(
                            s.tx_linearised - before.0.tx_linearised,
                            u64::from(p.needs_linearisation())
                        );
                        let mut data = Vec::with_capacity(len);
                        for piece in p.pieces() {
                            data.extend_from_slice(piece);
                        }
                        back.sent.push(Sent {
                            data,
                            csum,
                            gso,
                            head_id: None,
                            data_slots: 0,
                            answered: 0,
                            outcome: TxOutcome::Okay,
                            completed: false,
                        });
                    }
                    Err(e) => {
                        let want = if !(14..=max_len).contains(&len) {
                            Some(SendError::BadLength)
                        } else if !gso_ok {
                            Some(SendError::BadGso)
                        } else {
                            None
                        };
                        match want {
                            Some(w) => assert_eq!(e, w),
                            None => {
                                assert_eq!(e, SendError::Busy, "a good packet refused");
                                assert!(!room, "busy with tx_room()");
                            }
                        }
                        let s = front.stats();
                        assert_eq!((s, front.tx_outstanding()), before, "refused, yet changed");
                    }
                }
            }
            Step::PushTx => front.push_tx().unwrap(),
            Step::Read => back.read(N),
            Step::Answer { pick, status } => back.answer(usize::from(*pick), *status),
            Step::AnswerAll => {
                while !back.unanswered.is_empty() {
                    back.answer(0, 0);
                }
            }
            Step::Publish => {
                let _ = back.txb.push_responses().unwrap();
            }
            Step::Map { pick } => {
                let data: Vec<GrantRef> = back
                    .unanswered
                    .iter()
                    .filter(|u| !u.extra)
                    .map(|u| u.gref)
                    .collect();
                if !data.is_empty() {
                    let gref = data[usize::from(*pick) % data.len()];
                    let m = back
                        .map(gref, false)
                        .expect("an unanswered slot is granted");
                    back.kept.push(m);
                }
            }
            Step::Unmap => {
                if let Some(m) = back.kept.pop() {
                    m.unmap();
                }
                fe.retry_deferred();
            }
            Step::TxEvent => {
                let p = front.tx_event(|c| back.complete(c)).unwrap();
                assert!(p.done <= config.tx_budget.max(1));
            }
            Step::Round {
                answers,
                pick,
                status,
            } => {
                front.push_tx().unwrap();
                back.read(N);
                for i in 0..u32::from(*answers) {
                    back.answer(usize::from(*pick), status.rotate_right(2 * i));
                }
                let _ = back.txb.push_responses().unwrap();
                for _ in 0..1000 {
                    if !front.tx_event(|c| back.complete(c)).unwrap().more {
                        break;
                    }
                }
            }
        }
        assert!(!front.is_failed(), "an honest backend failed the queue");
        accounted(&front, &sim, &fe);
    }

    drain(&mut front, &mut back);
    assert!(
        back.sent.iter().all(|s| s.completed),
        "a packet never completed"
    );
    assert_eq!(front.tx_outstanding(), 0);
    assert!(back.busy.is_empty());
    let s = front.stats();
    assert_eq!(s.grants, s.grant_ends, "every grant ended");
    assert_eq!(s.tx_packets, back.sent.len() as u64);
    let bytes: usize = back.sent.iter().map(|s| s.data.len()).sum();
    assert_eq!(s.tx_bytes, bytes as u64);
    accounted(&front, &sim, &fe);
    for m in back.kept.drain(..) {
        m.unmap();
    }
    fe.retry_deferred();
    assert_eq!(sim.live_grants(fe.id()), 2, "nothing granted but the rings");

    front.close(|c| panic!("{c:?} aborted after it completed"));
    assert_eq!(front.pages_held(), 0);
    let (tx_ring, rx_ring) = front.into_rings();
    drop(back);
    platform::release_ring(&fe, tx_ring, &[tx_gref]);
    platform::release_ring(&fe, rx_ring, &[rx_gref]);
    fe.retry_deferred();
    assert_eq!(sim.live_grants(fe.id()), fe.deferred_frees() as u64);
    assert_eq!(sim.grant_stats().freed_while_mapped, 0);
}

fuzz_target!(|input: Input| {
    if input.small {
        run::<32>(&input);
    } else {
        run::<256>(&input);
    }
});
