//! The receive ring's parser: each response copied once, checked, and chained into a packet.
//!
//! [`RxParser`] is fed the 8 bytes of each RX response in ring order and keeps the state of
//! the packet being received across calls (a packet may span two polls). It checks everything
//! a response carries except its `id`, which names one of the engine's buffers and is checked
//! by the engine against the request posted at the same ring position (every backend answers
//! RX requests in order; Linux's netfront relies on it):
//!
//! - status: a byte count, or `NETIF_RSP_ERROR` / `NETIF_RSP_DROPPED` (the packet is dropped
//!   and the error reported); any other negative value is an unknown status (dropped too);
//! - `offset + size` within the 4096-byte page;
//! - a packet has at most [`MAX_RX_DATA_SLOTS`] data slots and at least one byte;
//! - extra-info slots follow the first slot only; each type is known and one the frontend
//!   accepts on receive (GSO, hash), at most once per packet, at most [`MAX_RX_EXTRAS`]; a
//!   GSO slot names a type we asked for (`feature-gso-tcpv4/6`) and a size that is not 0.
//!
//! A packet that breaks one of these is dropped, once: the rest of its chain is consumed and
//! its pages recycled, and [`Fed::end`] reports the [`RxError`]. A chain that goes on for
//! more than [`MAX_RX_CHAIN`] slots (the ring's size: no packet comes near it) is not a packet
//! at all: [`RxParser::feed`] returns [`EndlessChain`] and the engine fails the connection.

use xen_sys::wire::netif::{
    ExtraFlags, ExtraInfo, ExtraType, GsoType, NetRxFlags, RxResponse, NR_SLOTS_MIN, RSP_DROPPED,
    RSP_ERROR,
};

use crate::tx::PAGE;

/// Data slots a received packet may span (`XEN_NETIF_NR_SLOTS_MIN`): a 65535-byte packet
/// packed into pages takes 16.
pub const MAX_RX_DATA_SLOTS: usize = NR_SLOTS_MIN;
/// Extra-info slots a received packet may carry: one GSO and one hash.
pub const MAX_RX_EXTRAS: usize = 2;
/// Slots a chain (data and extra-info) may span before it is a fault, not a packet: the
/// size of a one-page RX ring.
pub const MAX_RX_CHAIN: usize = 256;

/// The bytes of one RX ring slot (a response or an extra-info slot).
pub type RxSlot = [u8; RxResponse::SIZE];

/// The checksum state of a received packet, from its first slot's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RxChecksum {
    /// Nothing known: the stack verifies it.
    None,
    /// `data_validated` alone: the checksum was verified (`CHECKSUM_UNNECESSARY`).
    Unnecessary,
    /// `csum_blank`: the checksum is not filled in; the data is good (`CHECKSUM_PARTIAL`,
    /// the stack must set up the checksum offsets before forwarding it).
    Partial,
}

/// The GSO metadata of a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RxGso {
    /// [`GsoType::Tcpv4`] or [`GsoType::Tcpv6`].
    pub ty: GsoType,
    /// The segment size (not 0).
    pub size: u16,
}

/// The hash a backend computed for a received packet (an `XEN_NETIF_EXTRA_TYPE_HASH` slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RxHash {
    /// `XEN_NETIF_CTRL_HASH_TYPE_*` (raw).
    pub ty: u8,
    /// `XEN_NETIF_CTRL_HASH_ALGORITHM_*` (raw).
    pub algorithm: u8,
    /// The value, as the slot holds it.
    pub value: [u8; 4],
}

/// What the glue needs besides the data to build an skb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RxMeta {
    /// Bytes in the packet.
    pub len: u32,
    /// Checksum state.
    pub csum: RxChecksum,
    /// Segmentation offload.
    pub gso: Option<RxGso>,
    /// The backend's hash.
    pub hash: Option<RxHash>,
    /// Ring slots the packet used (data and extra-info).
    pub slots: u16,
}

/// Why a received packet was dropped. The connection goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RxError {
    /// A slot's status was `NETIF_RSP_ERROR` or `NETIF_RSP_DROPPED`.
    Status(i16),
    /// A slot's status was negative and no `NETIF_RSP_*`.
    UnknownStatus(i16),
    /// `offset + size` runs past the page.
    OutsidePage {
        /// The slot's offset.
        offset: u16,
        /// Its size.
        size: u16,
    },
    /// More than [`MAX_RX_DATA_SLOTS`] data slots.
    TooManySlots,
    /// More than [`MAX_RX_EXTRAS`] extra-info slots.
    TooManyExtras,
    /// A second extra-info slot of one type.
    DuplicateExtra(u8),
    /// An extra-info type that is unknown or not valid on receive.
    BadExtraType(u8),
    /// A GSO slot with an unknown or unrequested type, or size 0.
    BadGso {
        /// The raw GSO type.
        ty: u8,
        /// The size.
        size: u16,
    },
    /// An extra-info flag on a slot other than the packet's first.
    MisplacedExtra,
    /// The packet has no bytes.
    Empty,
    /// The backend still maps one of the packet's pages (rx-copy never maps them): the page
    /// is deferred, never handed on, and the packet is dropped.
    StillMapped,
}

/// A chain of more than [`MAX_RX_CHAIN`] slots: the connection is failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndlessChain;

/// What a slot was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// A data slot: `len` bytes at `offset` of the buffer page. `keep` is whether the page
    /// holds data of a packet still good; otherwise (an error, or no bytes) it is recycled at
    /// once.
    Data {
        /// Offset of the data in the page (checked: `offset + len <= 4096`).
        offset: u16,
        /// Bytes.
        len: u16,
        /// Whether the bytes belong to the packet.
        keep: bool,
    },
    /// An extra-info slot: its buffer page holds nothing and is recycled.
    Extra,
}

/// The outcome of feeding one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fed {
    /// What the slot was.
    pub kind: SlotKind,
    /// Set when the slot ended a packet: its metadata, or why it was dropped.
    pub end: Option<Result<RxMeta, RxError>>,
}

/// The receive offloads the frontend asked for: a GSO slot of another type is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RxLimits {
    /// `feature-gso-tcpv4` was requested.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6` was requested.
    pub gso_tcpv6: bool,
}

/// The packet being received.
#[derive(Clone, Copy, Debug)]
struct Partial {
    slots: usize,
    data: usize,
    extras: usize,
    /// Bit `t` set: an extra of type `t` was seen.
    seen: u8,
    len: u32,
    /// The next slot is an extra-info slot.
    extra_next: bool,
    /// The last data slot said more data follows.
    more_data: bool,
    csum: RxChecksum,
    gso: Option<RxGso>,
    hash: Option<RxHash>,
    error: Option<RxError>,
}

impl Partial {
    const NEW: Partial = Partial {
        slots: 0,
        data: 0,
        extras: 0,
        seen: 0,
        len: 0,
        extra_next: false,
        more_data: false,
        csum: RxChecksum::None,
        gso: None,
        hash: None,
        error: None,
    };

    fn spoil(&mut self, e: RxError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn extra(&mut self, e: &ExtraInfo, limits: RxLimits) -> Result<(), RxError> {
        if self.extras > MAX_RX_EXTRAS {
            return Err(RxError::TooManyExtras);
        }
        let ty = ExtraType::try_from(e.ty).map_err(|_| RxError::BadExtraType(e.ty))?;
        let bit = 1u8 << u8::from(ty);
        if self.seen & bit != 0 {
            return Err(RxError::DuplicateExtra(e.ty));
        }
        self.seen |= bit;
        match ty {
            ExtraType::Gso => {
                let size = e.gso_size();
                let bad = RxError::BadGso {
                    ty: e.gso_type(),
                    size,
                };
                let ty = match GsoType::try_from(e.gso_type()) {
                    Ok(GsoType::Tcpv4) if limits.gso_tcpv4 => GsoType::Tcpv4,
                    Ok(GsoType::Tcpv6) if limits.gso_tcpv6 => GsoType::Tcpv6,
                    _ => return Err(bad),
                };
                if size == 0 {
                    return Err(bad);
                }
                self.gso = Some(RxGso { ty, size });
            }
            ExtraType::Hash => {
                self.hash = Some(RxHash {
                    ty: e.hash_type(),
                    algorithm: e.hash_algorithm(),
                    value: e.hash_value(),
                });
            }
            ExtraType::McastAdd | ExtraType::McastDel => return Err(RxError::BadExtraType(e.ty)),
        }
        Ok(())
    }

    /// Checks a data slot; returns its offset and size, and whether its bytes count.
    fn data(&mut self, r: &RxResponse, page_ok: bool) -> (u16, u16, bool) {
        let first = self.slots == 1;
        let flags = NetRxFlags::from_bits_truncate(r.flags);
        self.data += 1;
        if first {
            self.csum = if flags.contains(NetRxFlags::CSUM_BLANK) {
                RxChecksum::Partial
            } else if flags.contains(NetRxFlags::DATA_VALIDATED) {
                RxChecksum::Unnecessary
            } else {
                RxChecksum::None
            };
        }
        if flags.contains(NetRxFlags::EXTRA_INFO) {
            // The extras that follow are consumed as extras wherever they are.
            self.extra_next = true;
            if !first {
                self.spoil(RxError::MisplacedExtra);
            }
        }
        self.more_data = flags.contains(NetRxFlags::MORE_DATA);
        if self.data > MAX_RX_DATA_SLOTS {
            self.spoil(RxError::TooManySlots);
        }
        let (offset, size) = match u16::try_from(r.status) {
            Err(_) => {
                self.spoil(if r.status == RSP_ERROR || r.status == RSP_DROPPED {
                    RxError::Status(r.status)
                } else {
                    RxError::UnknownStatus(r.status)
                });
                (0, 0)
            }
            Ok(size) if usize::from(r.offset) + usize::from(size) > PAGE => {
                self.spoil(RxError::OutsidePage {
                    offset: r.offset,
                    size,
                });
                (0, 0)
            }
            Ok(size) => (r.offset, size),
        };
        if size > 0 && !page_ok {
            self.spoil(RxError::StillMapped);
        }
        let keep = size > 0 && self.error.is_none();
        if keep {
            self.len += u32::from(size);
        }
        (offset, size, keep)
    }
}

/// The RX chain parser; see the module doc.
#[derive(Clone, Debug)]
pub struct RxParser {
    limits: RxLimits,
    cur: Option<Partial>,
}

impl RxParser {
    /// A parser between packets.
    pub fn new(limits: RxLimits) -> Self {
        RxParser { limits, cur: None }
    }

    /// Whether a packet is partly received.
    pub fn in_packet(&self) -> bool {
        self.cur.is_some()
    }

    /// Whether the next slot is an extra-info slot (which carries no id).
    pub fn expects_extra(&self) -> bool {
        self.cur.is_some_and(|p| p.extra_next)
    }

    /// Forgets a partly received packet (when the connection ends).
    pub fn reset(&mut self) {
        self.cur = None;
    }

    /// Takes the next slot of the ring. `page_ok` says whether the slot's buffer page came
    /// back (its grant ended); a data slot with bytes in a page that did not drops the packet
    /// ([`RxError::StillMapped`]).
    pub fn feed(&mut self, raw: &RxSlot, page_ok: bool) -> Result<Fed, EndlessChain> {
        let limits = self.limits;
        let p = self.cur.get_or_insert(Partial::NEW);
        p.slots += 1;
        if p.slots > MAX_RX_CHAIN {
            self.cur = None;
            return Err(EndlessChain);
        }
        let kind = if p.extra_next {
            let e = ExtraInfo::from_bytes(raw);
            p.extras += 1;
            p.extra_next = ExtraFlags::from_bits_truncate(e.flags).contains(ExtraFlags::MORE);
            if let Err(err) = p.extra(&e, limits) {
                p.spoil(err);
            }
            SlotKind::Extra
        } else {
            let r = RxResponse::from_bytes(raw);
            let (offset, len, keep) = p.data(&r, page_ok);
            SlotKind::Data { offset, len, keep }
        };
        let end = if !p.extra_next && !p.more_data {
            let p = self.cur.take().unwrap_or(Partial::NEW);
            Some(match p.error {
                Some(e) => Err(e),
                None if p.len == 0 => Err(RxError::Empty),
                None => Ok(RxMeta {
                    len: p.len,
                    csum: p.csum,
                    gso: p.gso,
                    hash: p.hash,
                    slots: u16::try_from(p.slots).unwrap_or(u16::MAX),
                }),
            })
        } else {
            None
        };
        Ok(Fed { kind, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: RxLimits = RxLimits {
        gso_tcpv4: true,
        gso_tcpv6: true,
    };

    fn data(offset: u16, status: i16, flags: NetRxFlags) -> RxSlot {
        let mut r = RxResponse::ZERO;
        r.id = 3;
        r.offset = offset;
        r.status = status;
        r.flags = flags.bits();
        r.to_bytes()
    }

    fn gso(size: u16, ty: GsoType, more: bool) -> RxSlot {
        let f = if more {
            ExtraFlags::MORE
        } else {
            ExtraFlags::empty()
        };
        ExtraInfo::gso(size, ty, 0, f).to_bytes()
    }

    fn run(p: &mut RxParser, slots: &[RxSlot]) -> Vec<Fed> {
        slots.iter().map(|s| p.feed(s, true).unwrap()).collect()
    }

    #[test]
    fn single_slot_packet() {
        let mut p = RxParser::new(ALL);
        let f = run(&mut p, &[data(0, 60, NetRxFlags::DATA_VALIDATED)]);
        assert_eq!(
            f[0].kind,
            SlotKind::Data {
                offset: 0,
                len: 60,
                keep: true
            }
        );
        let meta = f[0].end.unwrap().unwrap();
        assert_eq!(
            (meta.len, meta.csum, meta.slots),
            (60, RxChecksum::Unnecessary, 1)
        );
        assert!(!p.in_packet());
    }

    #[test]
    fn gso_packet_with_extra_after_the_first_slot() {
        let mut p = RxParser::new(ALL);
        let first = NetRxFlags::CSUM_BLANK
            | NetRxFlags::DATA_VALIDATED
            | NetRxFlags::EXTRA_INFO
            | NetRxFlags::MORE_DATA;
        let f = run(
            &mut p,
            &[
                data(0, 4096, first),
                gso(1448, GsoType::Tcpv4, false),
                data(0, 4096, NetRxFlags::MORE_DATA),
                data(0, 100, NetRxFlags::empty()),
            ],
        );
        assert_eq!(f[1].kind, SlotKind::Extra);
        assert!(f[..3].iter().all(|x| x.end.is_none()));
        let meta = f[3].end.unwrap().unwrap();
        assert_eq!(meta.len, 8292);
        assert_eq!(meta.csum, RxChecksum::Partial);
        assert_eq!(
            meta.gso,
            Some(RxGso {
                ty: GsoType::Tcpv4,
                size: 1448
            })
        );
        assert_eq!(meta.slots, 4);
    }

    #[test]
    fn rejects_size_past_the_page() {
        let mut p = RxParser::new(ALL);
        let f = run(&mut p, &[data(4000, 97, NetRxFlags::empty())]);
        assert_eq!(
            f[0].end,
            Some(Err(RxError::OutsidePage {
                offset: 4000,
                size: 97
            }))
        );
        assert!(matches!(f[0].kind, SlotKind::Data { keep: false, .. }));
        // The boundary itself is fine.
        let f = run(&mut p, &[data(4000, 96, NetRxFlags::empty())]);
        assert!(f[0].end.unwrap().is_ok());
    }

    #[test]
    fn error_statuses_drop_the_packet_and_skip_its_chain() {
        let mut p = RxParser::new(ALL);
        let f = run(
            &mut p,
            &[
                data(0, 4096, NetRxFlags::MORE_DATA),
                data(0, RSP_ERROR, NetRxFlags::MORE_DATA),
                data(0, 50, NetRxFlags::empty()),
            ],
        );
        assert!(matches!(f[2].kind, SlotKind::Data { keep: false, .. }));
        assert_eq!(f[2].end, Some(Err(RxError::Status(-1))));
        let f = run(&mut p, &[data(0, -7, NetRxFlags::empty())]);
        assert_eq!(f[0].end, Some(Err(RxError::UnknownStatus(-7))));
        // The next packet is unaffected.
        let f = run(&mut p, &[data(0, 20, NetRxFlags::empty())]);
        assert_eq!(f[0].end.unwrap().unwrap().len, 20);
    }

    #[test]
    fn rejects_chain_over_max_slots() {
        let mut p = RxParser::new(ALL);
        let mut slots = vec![data(0, 4096, NetRxFlags::MORE_DATA); MAX_RX_DATA_SLOTS];
        slots.push(data(0, 10, NetRxFlags::empty()));
        let f = run(&mut p, &slots);
        assert!(f[..MAX_RX_DATA_SLOTS].iter().all(|x| x.end.is_none()));
        assert_eq!(f[MAX_RX_DATA_SLOTS].end, Some(Err(RxError::TooManySlots)));
        // Exactly the maximum is a packet.
        let mut slots = vec![data(0, 4096, NetRxFlags::MORE_DATA); MAX_RX_DATA_SLOTS - 1];
        slots.push(data(0, 10, NetRxFlags::empty()));
        let f = run(&mut p, &slots);
        assert!(f.last().unwrap().end.unwrap().is_ok());
    }

    #[test]
    fn endless_more_data_is_a_fault() {
        let mut p = RxParser::new(ALL);
        let s = data(0, 1, NetRxFlags::MORE_DATA);
        for _ in 0..MAX_RX_CHAIN {
            assert_eq!(p.feed(&s, true).unwrap().end, None);
        }
        assert_eq!(p.feed(&s, true), Err(EndlessChain));
        assert!(!p.in_packet());
    }

    #[test]
    fn rejects_extra_flood_duplicates_and_unknown_types() {
        let first = NetRxFlags::EXTRA_INFO;
        let mut p = RxParser::new(ALL);
        let f = run(
            &mut p,
            &[
                data(0, 64, first),
                gso(1000, GsoType::Tcpv4, true),
                gso(1000, GsoType::Tcpv4, false),
            ],
        );
        assert_eq!(f[2].end, Some(Err(RxError::DuplicateExtra(1))));
        let mut unknown = ExtraInfo::ZERO;
        unknown.ty = 5;
        let f = run(&mut p, &[data(0, 64, first), unknown.to_bytes()]);
        assert_eq!(f[1].end, Some(Err(RxError::BadExtraType(5))));
        let mcast = ExtraInfo::mcast(ExtraType::McastAdd, [1; 6], ExtraFlags::empty());
        let f = run(&mut p, &[data(0, 64, first), mcast.to_bytes()]);
        assert_eq!(f[1].end, Some(Err(RxError::BadExtraType(2))));
        // A flood of extras: the third is over the count (checked before its type).
        let mut hash = ExtraInfo::ZERO;
        hash.ty = ExtraType::Hash.into();
        hash.flags = ExtraFlags::MORE.bits();
        let mut slots = vec![data(0, 64, first), gso(10, GsoType::Tcpv6, true)];
        slots.extend([hash.to_bytes(); 5]);
        hash.flags = 0;
        slots.push(hash.to_bytes());
        let f = run(&mut p, &slots);
        assert!(f[..slots.len() - 1].iter().all(|x| x.end.is_none()));
        assert_eq!(f.last().unwrap().end, Some(Err(RxError::TooManyExtras)));
    }

    #[test]
    fn rejects_bad_gso() {
        let first = NetRxFlags::EXTRA_INFO;
        let mut p = RxParser::new(RxLimits {
            gso_tcpv4: true,
            gso_tcpv6: false,
        });
        for (slot, ty, size) in [
            (gso(0, GsoType::Tcpv4, false), 1, 0),
            (gso(1400, GsoType::None, false), 0, 1400),
            (gso(1400, GsoType::Tcpv6, false), 2, 1400),
        ] {
            let f = run(&mut p, &[data(0, 64, first), slot]);
            assert_eq!(f[1].end, Some(Err(RxError::BadGso { ty, size })));
        }
    }

    #[test]
    fn rejects_misplaced_extra_and_empty_packets() {
        let mut p = RxParser::new(ALL);
        let f = run(
            &mut p,
            &[
                data(0, 64, NetRxFlags::MORE_DATA),
                data(0, 64, NetRxFlags::EXTRA_INFO),
                gso(100, GsoType::Tcpv4, false),
            ],
        );
        assert_eq!(f[1].end, None, "the extra after it is still consumed");
        assert_eq!(f[2].end, Some(Err(RxError::MisplacedExtra)));
        let f = run(&mut p, &[data(0, 0, NetRxFlags::empty())]);
        assert_eq!(f[0].end, Some(Err(RxError::Empty)));
        // A zero-length fragment inside a packet is skipped, not kept.
        let f = run(
            &mut p,
            &[
                data(0, 0, NetRxFlags::MORE_DATA),
                data(0, 9, NetRxFlags::empty()),
            ],
        );
        assert!(matches!(f[0].kind, SlotKind::Data { keep: false, .. }));
        assert_eq!(f[1].end.unwrap().unwrap().len, 9);
    }

    #[test]
    fn page_still_mapped_drops_the_packet() {
        let mut p = RxParser::new(ALL);
        let f = p.feed(&data(0, 64, NetRxFlags::empty()), false).unwrap();
        assert_eq!(f.end, Some(Err(RxError::StillMapped)));
    }
}
