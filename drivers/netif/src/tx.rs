//! The transmit side's pure parts: how a packet is described, how many slots it takes, the check of each TX response, and the backend's parser of TX request chains.
//!
//! A packet reaches the engine in one of two forms:
//!
//! - Copied (Linux's `trusted=0`): a head buffer and fragments, each a byte slice plus the
//!   offset it has in its page ([`TxPacket`]). The engine copies the packet into its own
//!   pages, packed from offset 0, so a packet of `len` bytes always takes
//!   [`copy_slots`]`(len)` data slots, at most 16 for [`MAX_TX_SIZE`] bytes, within the
//!   [`NR_SLOTS_MIN`] a backend must accept. Packing *is* linearisation: a packet whose own
//!   layout would need more than [`NR_SLOTS_MIN`] slots
//!   ([`TxPacket::needs_linearisation`]) goes out in as few slots as any other of its size.
//! - Lent (Linux's `trusted=1`): the frames the packet lies in, one [`TxLent`] piece per
//!   page it touches, each granted in place. At most [`NR_SLOTS_MIN`] pieces
//!   ([`lent_len`]); a packet with more is sent copied.
//!
//! The backend's side is [`TxParser`]: it takes the TX requests of a frontend in ring order,
//! each copied once, and chains them into packets (see its doc for every check).

use crate::rx::RxHash;
use xen_sys::wire::netif::{ExtraFlags, ExtraInfo, ExtraType, TxRequest};
use xen_sys::wire::netif::{GsoType, NetTxFlags, TxResponse, MAX_TX_SIZE, NR_SLOTS_MIN};
use xen_sys::wire::netif::{RSP_DROPPED, RSP_ERROR, RSP_NULL, RSP_OKAY};
use xen_sys::{Gfn, GrantRef};

/// Bytes in a granted page.
pub const PAGE: usize = 4096;
/// The smallest packet sent: an Ethernet header (Linux's netback drops anything shorter).
pub const MIN_TX_SIZE: usize = 14;

/// The checksum state of a packet to send (the skb's `ip_summed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxChecksum {
    /// Nothing known (`CHECKSUM_NONE`): no flag.
    None,
    /// The protocol checksum is left for the backend to fill (`CHECKSUM_PARTIAL`):
    /// `csum_blank` and `data_validated`.
    Partial,
    /// The checksum is known good (`CHECKSUM_UNNECESSARY`): `data_validated`.
    Unnecessary,
}

impl TxChecksum {
    /// The request flags this state sets on a packet's first slot.
    pub fn flags(self) -> NetTxFlags {
        match self {
            TxChecksum::None => NetTxFlags::empty(),
            TxChecksum::Partial => NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED,
            TxChecksum::Unnecessary => NetTxFlags::DATA_VALIDATED,
        }
    }
}

/// Segmentation offload of a packet to send: one GSO extra-info slot follows its first slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gso {
    /// [`GsoType::Tcpv4`] or [`GsoType::Tcpv6`].
    pub ty: GsoType,
    /// The segment size (MSS), not 0.
    pub size: u16,
}

/// One piece of a packet: its bytes, and the offset they start at in their page (which only
/// counts for [`TxPacket::in_place_slots`]).
#[derive(Clone, Copy, Debug)]
pub struct TxFrag<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// Offset of `data` in its page (taken modulo 4096).
    pub page_offset: usize,
}

impl<'a> TxFrag<'a> {
    /// A piece starting at the beginning of a page.
    pub fn new(data: &'a [u8]) -> Self {
        TxFrag {
            data,
            page_offset: 0,
        }
    }

    /// Pages the piece spans where it lies.
    pub fn pages(&self) -> usize {
        if self.data.is_empty() {
            return 0;
        }
        (self.page_offset % PAGE + self.data.len()).div_ceil(PAGE)
    }
}

/// A piece of a packet granted where it lies: `len` bytes at `offset` of the frame `gfn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLent {
    /// The frame.
    pub gfn: Gfn,
    /// Where the bytes start in it.
    pub offset: u16,
    /// How many (1 to `4096 - offset`).
    pub len: u16,
}

/// The length of a packet lent as `pieces`, or `None` if it cannot go out as they lie: no
/// piece, more than [`NR_SLOTS_MIN`], a piece that is empty or crosses its page's end, or a
/// first piece shorter than an Ethernet header (a backend takes the header from the first
/// slot; Linux's netfront bounces such a packet too).
pub fn lent_len(pieces: &[TxLent]) -> Option<usize> {
    let first = pieces.first()?;
    if pieces.len() > NR_SLOTS_MIN || usize::from(first.len) < MIN_TX_SIZE {
        return None;
    }
    pieces.iter().try_fold(0usize, |n, p| {
        let end = usize::from(p.offset) + usize::from(p.len);
        (p.len > 0 && end <= PAGE).then_some(n + usize::from(p.len))
    })
}

/// A packet to send: a head buffer and fragments (the skb's linear part and frags).
#[derive(Clone, Copy, Debug)]
pub struct TxPacket<'a> {
    /// The linear part.
    pub head: TxFrag<'a>,
    /// The fragments, in order.
    pub frags: &'a [TxFrag<'a>],
    /// Checksum state.
    pub csum: TxChecksum,
    /// Segmentation offload, if any (needs [`TxChecksum::Partial`]).
    pub gso: Option<Gso>,
}

impl<'a> TxPacket<'a> {
    /// A linear packet with no offload.
    pub fn linear(data: &'a [u8]) -> Self {
        TxPacket {
            head: TxFrag::new(data),
            frags: &[],
            csum: TxChecksum::None,
            gso: None,
        }
    }

    /// Bytes in the packet (saturating: a caller cannot make it wrap).
    pub fn len(&self) -> usize {
        self.frags
            .iter()
            .fold(self.head.data.len(), |n, f| n.saturating_add(f.data.len()))
    }

    /// Whether the packet has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces in order: head, then fragments.
    pub fn pieces(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        core::iter::once(self.head.data).chain(self.frags.iter().map(|f| f.data))
    }

    /// Slots the packet would take granted where it lies (one per page each piece spans, as
    /// Linux's netfront counts them).
    pub fn in_place_slots(&self) -> usize {
        self.frags
            .iter()
            .fold(self.head.pages(), |n, f| n.saturating_add(f.pages()))
    }

    /// Whether the packet's own layout needs more than [`NR_SLOTS_MIN`] slots, so it would
    /// have to be linearised before being granted in place. The copying engine always packs.
    pub fn needs_linearisation(&self) -> bool {
        self.in_place_slots() > NR_SLOTS_MIN
    }
}

/// Data slots a packet of `len` bytes takes once packed into pages from offset 0.
pub fn copy_slots(len: usize) -> usize {
    len.div_ceil(PAGE)
}

// The largest packet and its GSO slot fit in the slots every backend accepts.
const _: () = assert!((MAX_TX_SIZE as usize).div_ceil(PAGE) < NR_SLOTS_MIN);

/// What a backend said about one transmitted slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// `NETIF_RSP_OKAY`.
    Okay,
    /// `NETIF_RSP_ERROR`.
    Error,
    /// `NETIF_RSP_DROPPED`.
    Dropped,
}

/// A TX response, copied once and decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxReply {
    /// `NETIF_RSP_NULL`: the answer to an extra-info slot. Its `id` means nothing (Linux's
    /// netback writes only the status), so it is not looked at.
    Null,
    /// The answer to the data slot `id`.
    Slot {
        /// The request's id (unchecked: the engine checks it against its table).
        id: u16,
        /// The status.
        status: TxStatus,
    },
}

/// Decodes a TX response's bytes; `Err(status)` for a status that is no `NETIF_RSP_*`.
pub fn parse_tx_response(raw: &[u8; TxResponse::SIZE]) -> Result<TxReply, i16> {
    let rsp = TxResponse::from_bytes(raw);
    let status = match rsp.status {
        RSP_NULL => return Ok(TxReply::Null),
        RSP_OKAY => TxStatus::Okay,
        RSP_ERROR => TxStatus::Error,
        RSP_DROPPED => TxStatus::Dropped,
        other => return Err(other),
    };
    Ok(TxReply::Slot { id: rsp.id, status })
}

/// Data slots a packet may span before the queue fails, by default (Linux's
/// `fatal_skb_slots`).
pub const FATAL_SKB_SLOTS: usize = 20;
/// The largest `fatal_skb_slots` a [`TxParser`] takes (a larger setting is clamped): it bounds
/// the slots the backend holds while it reads one packet.
pub const MAX_FATAL_SKB_SLOTS: usize = 64;
/// Extra-info slots a TX packet may carry: one of each type (GSO, multicast add, multicast
/// delete, hash).
pub const MAX_TX_EXTRAS: usize = 4;

/// The bytes of one TX ring slot as a backend reads it (a request or an extra-info slot).
pub type TxReqBytes = [u8; TxRequest::SIZE];

/// What a backend accepts from a frontend's TX ring (from its offer and the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxLimits {
    /// Data slots past which the packet is a fault (Linux's `fatal_skb_slots`; clamped to
    /// [`NR_SLOTS_MIN`]..=[`MAX_FATAL_SKB_SLOTS`]).
    pub fatal_slots: usize,
    /// `feature-sg` offered: packets of more than one data slot.
    pub sg: bool,
    /// `feature-gso-tcpv4` offered.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6` offered.
    pub gso_tcpv6: bool,
    /// Multicast control negotiated (`request-multicast-control`): multicast extra-info
    /// slots are requests; otherwise they are refused.
    pub multicast: bool,
}

impl Default for TxLimits {
    /// What Linux's netback accepts.
    fn default() -> Self {
        TxLimits {
            fatal_slots: FATAL_SKB_SLOTS,
            sg: true,
            gso_tcpv4: true,
            gso_tcpv6: true,
            multicast: true,
        }
    }
}

/// One data slot of a TX packet, copied once. `size` is the slot's own data: for the first
/// slot, the packet's length minus the bytes of the others (computed at the end of the chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxSlot {
    /// The frontend's id, to answer with.
    pub id: u16,
    /// The page's grant.
    pub gref: GrantRef,
    /// Where the data starts in the page.
    pub offset: u16,
    /// Bytes (checked: `offset + size <= 4096` once the packet is complete).
    pub size: u16,
}

impl TxSlot {
    /// A slot of nothing (table filler).
    pub const EMPTY: TxSlot = TxSlot {
        id: 0,
        gref: GrantRef::new(0),
        offset: 0,
        size: 0,
    };
}

/// A multicast-filter request (an `XEN_NETIF_EXTRA_TYPE_MCAST_ADD/DEL` slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mcast {
    /// Add (`true`) or remove the address.
    pub add: bool,
    /// The Ethernet address.
    pub addr: [u8; 6],
}

/// A TX packet whose chain passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxMeta {
    /// The packet's length (the first slot's `size`).
    pub len: u16,
    /// The first slot's own data (`len` minus the other slots' bytes).
    pub first_size: u16,
    /// Checksum state from the first slot's flags (`csum_blank` is [`TxChecksum::Partial`],
    /// `data_validated` alone [`TxChecksum::Unnecessary`]).
    pub csum: TxChecksum,
    /// Segmentation offload (a type that was offered, a size that is not 0).
    pub gso: Option<Gso>,
    /// A multicast-filter request: the chain carries no packet to deliver.
    pub mcast: Option<Mcast>,
    /// The frontend's hash.
    pub hash: Option<RxHash>,
    /// Data slots.
    pub data_slots: u16,
    /// Extra-info slots.
    pub extras: u16,
}

/// Why a TX packet is dropped. Each of its slots is answered `NETIF_RSP_ERROR` (and each
/// extra-info slot `NETIF_RSP_NULL`); the queue goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxDrop {
    /// More than [`NR_SLOTS_MIN`] data slots (but not more than `fatal_slots`).
    TooManySlots,
    /// A slot after the first carries more bytes than the first slot's `size` leaves: the
    /// packet would be longer than it says.
    Oversized {
        /// The slot's size.
        size: u16,
        /// What the first slot's `size` left for it.
        left: u16,
    },
    /// Shorter than an Ethernet header (and no multicast request).
    TooShort(u16),
    /// More than one data slot without `feature-sg`.
    NoSg,
    /// GSO of a type not offered.
    GsoNotOffered(GsoType),
    /// A multicast request without multicast control negotiated.
    McastNotNegotiated,
}

/// A TX chain that is no packet at all: the queue fails (Linux's `xenvif_fatal_tx_err`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxFault {
    /// More than `fatal_slots` data slots.
    TooManySlots,
    /// A slot's `offset + size` runs past its page.
    OutsidePage {
        /// The slot's offset.
        offset: u16,
        /// Its size (the first slot's own data for the first).
        size: u16,
    },
    /// An extra-info type that is 0 or unknown.
    BadExtraType(u8),
    /// A second extra-info slot of one type.
    DuplicateExtra(u8),
    /// More than [`MAX_TX_EXTRAS`] extra-info slots.
    TooManyExtras,
    /// A GSO slot of type none or unknown, or of size 0.
    BadGso {
        /// The raw GSO type.
        ty: u8,
        /// The size.
        size: u16,
    },
    /// The chain goes on past the requests the frontend published (a frontend publishes
    /// whole packets).
    Incomplete,
}

/// What a TX slot was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxSlotKind {
    /// A data slot. The first slot's `size` here is still the packet's length; its own data
    /// is [`TxMeta::first_size`].
    Data(TxSlot),
    /// An extra-info slot (answered `NETIF_RSP_NULL`).
    Extra,
}

/// The outcome of feeding one TX slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxFed {
    /// What the slot was.
    pub kind: TxSlotKind,
    /// Set when the slot ended a packet: the packet, or why it is dropped.
    pub end: Option<Result<TxMeta, TxDrop>>,
}

/// The packet being read.
#[derive(Clone, Copy, Debug)]
struct TxPartial {
    len: u16,
    first_offset: u16,
    /// Bytes the first slot's `size` leaves for slots not read yet.
    left: u16,
    data: usize,
    extras: usize,
    seen: u8,
    extra_next: bool,
    /// The first slot's `more_data` (continues after its extras).
    more_data: bool,
    csum: TxChecksum,
    gso: Option<Gso>,
    mcast: Option<Mcast>,
    hash: Option<RxHash>,
    drop: Option<TxDrop>,
}

impl TxPartial {
    fn spoil(&mut self, d: TxDrop) {
        if self.drop.is_none() {
            self.drop = Some(d);
        }
    }

    fn extra(&mut self, e: &ExtraInfo, limits: &TxLimits) -> Result<(), TxFault> {
        if self.extras > MAX_TX_EXTRAS {
            return Err(TxFault::TooManyExtras);
        }
        let ty = ExtraType::try_from(e.ty).map_err(|_| TxFault::BadExtraType(e.ty))?;
        let bit = 1u8 << u8::from(ty);
        if self.seen & bit != 0 {
            return Err(TxFault::DuplicateExtra(e.ty));
        }
        self.seen |= bit;
        match ty {
            ExtraType::Gso => {
                let size = e.gso_size();
                let bad = TxFault::BadGso {
                    ty: e.gso_type(),
                    size,
                };
                let ty = match GsoType::try_from(e.gso_type()) {
                    Ok(t @ (GsoType::Tcpv4 | GsoType::Tcpv6)) => t,
                    _ => return Err(bad),
                };
                if size == 0 {
                    return Err(bad);
                }
                let offered = match ty {
                    GsoType::Tcpv4 => limits.gso_tcpv4,
                    GsoType::Tcpv6 => limits.gso_tcpv6,
                    GsoType::None => false,
                };
                if !offered {
                    self.spoil(TxDrop::GsoNotOffered(ty));
                }
                self.gso = Some(Gso { ty, size });
            }
            ExtraType::McastAdd | ExtraType::McastDel => {
                if !limits.multicast {
                    self.spoil(TxDrop::McastNotNegotiated);
                }
                self.mcast = Some(Mcast {
                    add: ty == ExtraType::McastAdd,
                    addr: e.mcast_addr(),
                });
            }
            ExtraType::Hash => {
                self.hash = Some(RxHash {
                    ty: e.hash_type(),
                    algorithm: e.hash_algorithm(),
                    value: e.hash_value(),
                });
            }
        }
        Ok(())
    }
}

/// The backend's TX chain parser.
///
/// Fed each TX slot in ring order (each copied once off the ring: only the copy is looked
/// at), it keeps the state of the packet being read and checks:
///
/// - the first slot: its `size` is the packet's length (at most 65535 by its type); a
///   packet shorter than an Ethernet header is dropped ([`TxDrop::TooShort`]) unless it is
///   a multicast request; its flags give the checksum state, `extra_info` says extra-info
///   slots follow it, `more_data` that data slots follow (after the extras);
/// - extra-info slots (only after the first slot; `extra_info` on a later slot is ignored,
///   as Linux does): a known type, at most once each, so at most [`MAX_TX_EXTRAS`]; GSO of
///   type TCPv4 or TCPv6 with a size that is not 0, else a fault; a type not offered drops
///   the packet; a multicast request without multicast control drops it;
/// - every data slot: `offset + size` within its page, else a fault (for the first slot
///   with its own data, known at the end of the chain); a slot after the first may carry
///   no more than the first slot's `size` leaves, else the packet is dropped
///   ([`TxDrop::Oversized`]); a zero-length slot is allowed (it carries nothing and is
///   answered like the others);
/// - the slot count: more than [`NR_SLOTS_MIN`] data slots drop the packet, more than
///   `fatal_slots` fail the queue ([`TxFault::TooManySlots`], returned at the slot past the
///   bound, so a chain is never read further than that).
///
/// A fault ends the packet: the parser starts afresh, and the engine fails the queue.
#[derive(Clone, Debug)]
pub struct TxParser {
    limits: TxLimits,
    cur: Option<TxPartial>,
}

impl TxParser {
    /// A parser between packets.
    pub fn new(limits: TxLimits) -> Self {
        let limits = TxLimits {
            fatal_slots: limits.fatal_slots.clamp(NR_SLOTS_MIN, MAX_FATAL_SKB_SLOTS),
            ..limits
        };
        TxParser { limits, cur: None }
    }

    /// The limits in force (`fatal_slots` clamped).
    pub fn limits(&self) -> TxLimits {
        self.limits
    }

    /// Whether a packet is partly read.
    pub fn in_packet(&self) -> bool {
        self.cur.is_some()
    }

    /// Whether the next slot is an extra-info slot.
    pub fn expects_extra(&self) -> bool {
        self.cur.is_some_and(|p| p.extra_next)
    }

    /// Forgets a partly read packet.
    pub fn reset(&mut self) {
        self.cur = None;
    }

    /// Takes the next slot of the ring.
    pub fn feed(&mut self, raw: &TxReqBytes) -> Result<TxFed, TxFault> {
        let r = self.feed_inner(raw);
        if r.is_err() {
            self.cur = None;
        }
        r
    }

    fn feed_inner(&mut self, raw: &TxReqBytes) -> Result<TxFed, TxFault> {
        let limits = self.limits;
        let kind = match self.cur.as_mut() {
            None => {
                let r = TxRequest::from_bytes(raw);
                let flags = NetTxFlags::from_bits_truncate(r.flags);
                let csum = if flags.contains(NetTxFlags::CSUM_BLANK) {
                    TxChecksum::Partial
                } else if flags.contains(NetTxFlags::DATA_VALIDATED) {
                    TxChecksum::Unnecessary
                } else {
                    TxChecksum::None
                };
                self.cur = Some(TxPartial {
                    len: r.size,
                    first_offset: r.offset,
                    left: r.size,
                    data: 1,
                    extras: 0,
                    seen: 0,
                    extra_next: flags.contains(NetTxFlags::EXTRA_INFO),
                    more_data: flags.contains(NetTxFlags::MORE_DATA),
                    csum,
                    gso: None,
                    mcast: None,
                    hash: None,
                    drop: None,
                });
                TxSlotKind::Data(TxSlot {
                    id: r.id,
                    gref: GrantRef::new(r.gref),
                    offset: r.offset,
                    size: r.size,
                })
            }
            Some(p) if p.extra_next => {
                let mut bytes = [0u8; ExtraInfo::SIZE];
                bytes.copy_from_slice(raw.get(..ExtraInfo::SIZE).unwrap_or(&[0; 8]));
                let e = ExtraInfo::from_bytes(&bytes);
                p.extras += 1;
                p.extra_next = ExtraFlags::from_bits_truncate(e.flags).contains(ExtraFlags::MORE);
                p.extra(&e, &limits)?;
                TxSlotKind::Extra
            }
            Some(p) => {
                let r = TxRequest::from_bytes(raw);
                p.data += 1;
                if p.data > limits.fatal_slots {
                    return Err(TxFault::TooManySlots);
                }
                if p.data > NR_SLOTS_MIN {
                    p.spoil(TxDrop::TooManySlots);
                }
                if usize::from(r.offset) + usize::from(r.size) > PAGE {
                    return Err(TxFault::OutsidePage {
                        offset: r.offset,
                        size: r.size,
                    });
                }
                if r.size > p.left {
                    p.spoil(TxDrop::Oversized {
                        size: r.size,
                        left: p.left,
                    });
                }
                p.left = p.left.saturating_sub(r.size);
                p.more_data =
                    NetTxFlags::from_bits_truncate(r.flags).contains(NetTxFlags::MORE_DATA);
                TxSlotKind::Data(TxSlot {
                    id: r.id,
                    gref: GrantRef::new(r.gref),
                    offset: r.offset,
                    size: r.size,
                })
            }
        };
        let Some(p) = self.cur else {
            return Ok(TxFed { kind, end: None });
        };
        if p.extra_next || p.more_data {
            return Ok(TxFed { kind, end: None });
        }
        self.cur = None;
        // The first slot's own data is what the others left of the packet's length.
        if usize::from(p.first_offset) + usize::from(p.left) > PAGE {
            return Err(TxFault::OutsidePage {
                offset: p.first_offset,
                size: p.left,
            });
        }
        let mut p = p;
        if p.data > 1 && !limits.sg {
            p.spoil(TxDrop::NoSg);
        }
        if p.mcast.is_none() && usize::from(p.len) < MIN_TX_SIZE {
            p.spoil(TxDrop::TooShort(p.len));
        }
        let end = match p.drop {
            Some(d) => Err(d),
            None => Ok(TxMeta {
                len: p.len,
                first_size: p.left,
                csum: p.csum,
                gso: p.gso,
                mcast: p.mcast,
                hash: p.hash,
                data_slots: u16::try_from(p.data).unwrap_or(u16::MAX),
                extras: u16::try_from(p.extras).unwrap_or(u16::MAX),
            }),
        };
        Ok(TxFed {
            kind,
            end: Some(end),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsp(id: u16, status: i16) -> [u8; 4] {
        let mut r = TxResponse::ZERO;
        r.id = id;
        r.status = status;
        r.to_bytes()
    }

    #[test]
    fn tx_response_statuses() {
        assert_eq!(
            parse_tx_response(&rsp(7, 0)),
            Ok(TxReply::Slot {
                id: 7,
                status: TxStatus::Okay
            })
        );
        assert_eq!(
            parse_tx_response(&rsp(7, -2)),
            Ok(TxReply::Slot {
                id: 7,
                status: TxStatus::Dropped
            })
        );
        assert_eq!(parse_tx_response(&rsp(0xffff, 1)), Ok(TxReply::Null));
    }

    #[test]
    fn rejects_unknown_tx_status() {
        for s in [2, 3, -3, i16::MIN, i16::MAX] {
            assert_eq!(parse_tx_response(&rsp(1, s)), Err(s));
        }
    }

    #[test]
    fn slot_counts() {
        assert_eq!(copy_slots(14), 1);
        assert_eq!(copy_slots(4096), 1);
        assert_eq!(copy_slots(4097), 2);
        assert_eq!(copy_slots(65535), 16);
        let data = [0u8; 8192];
        // 100 bytes straddling a page boundary span two pages in place.
        let straddle = TxFrag {
            data: &data[..100],
            page_offset: 4050,
        };
        assert_eq!(straddle.pages(), 2);
        let frags = [straddle; 9];
        let p = TxPacket {
            head: TxFrag::new(&data[..64]),
            frags: &frags,
            csum: TxChecksum::Partial,
            gso: None,
        };
        assert_eq!(p.len(), 964);
        assert_eq!(p.in_place_slots(), 19);
        assert!(p.needs_linearisation());
        assert_eq!(copy_slots(p.len()), 1);
        let empty = TxFrag::new(&[]);
        assert_eq!(empty.pages(), 0);
    }

    #[test]
    fn checksum_flags_follow_linux() {
        assert_eq!(TxChecksum::None.flags(), NetTxFlags::empty());
        assert_eq!(
            TxChecksum::Partial.flags(),
            NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED
        );
        assert_eq!(TxChecksum::Unnecessary.flags(), NetTxFlags::DATA_VALIDATED);
    }

    fn req(size: u16, offset: u16, flags: NetTxFlags, id: u16) -> TxReqBytes {
        let mut r = TxRequest::ZERO;
        r.gref = 100 + u32::from(id);
        r.offset = offset;
        r.flags = flags.bits();
        r.id = id;
        r.size = size;
        r.to_bytes()
    }

    fn extra(e: ExtraInfo) -> TxReqBytes {
        let mut b = [0u8; TxRequest::SIZE];
        b[..ExtraInfo::SIZE].copy_from_slice(&e.to_bytes());
        b
    }

    /// Feeds every slot; the last result.
    fn run(p: &mut TxParser, slots: &[TxReqBytes]) -> Result<TxFed, TxFault> {
        let mut last = None;
        for (i, s) in slots.iter().enumerate() {
            let f = p.feed(s);
            if i + 1 < slots.len() {
                assert_eq!(f.map(|f| f.end), Ok(None), "slot {i}");
            }
            last = Some(f);
        }
        last.unwrap()
    }

    const MORE: NetTxFlags = NetTxFlags::MORE_DATA;

    #[test]
    fn gso_packet_with_frags_parses() {
        let mut p = TxParser::new(TxLimits::default());
        let first = NetTxFlags::CSUM_BLANK | NetTxFlags::EXTRA_INFO | MORE;
        let f = run(
            &mut p,
            &[
                req(9000, 0, first, 1),
                extra(ExtraInfo::gso(1448, GsoType::Tcpv4, 0, ExtraFlags::empty())),
                req(4096, 0, MORE, 2),
                req(4000, 96, NetTxFlags::empty(), 3),
            ],
        )
        .unwrap();
        let m = f.end.unwrap().unwrap();
        assert_eq!(
            (m.len, m.first_size, m.data_slots, m.extras),
            (9000, 904, 3, 1)
        );
        assert_eq!(m.csum, TxChecksum::Partial);
        assert_eq!(
            m.gso,
            Some(Gso {
                ty: GsoType::Tcpv4,
                size: 1448
            })
        );
        assert!(!p.in_packet());
    }

    #[test]
    fn slot_count_bounds_drop_then_fault() {
        let mut p = TxParser::new(TxLimits::default());
        let chain = |n: usize| {
            let mut v = vec![req(60, 0, MORE, 0)];
            v.extend((1..n).map(|i| {
                req(
                    0,
                    0,
                    if i + 1 < n { MORE } else { NetTxFlags::empty() },
                    i as u16,
                )
            }));
            v
        };
        assert!(run(&mut p, &chain(18)).unwrap().end.unwrap().is_ok());
        for n in [19, 20] {
            assert_eq!(
                run(&mut p, &chain(n)).unwrap().end,
                Some(Err(TxDrop::TooManySlots))
            );
        }
        assert_eq!(run(&mut p, &chain(21)), Err(TxFault::TooManySlots));
        assert!(!p.in_packet());
    }

    #[test]
    fn oversized_and_short_packets_are_dropped() {
        let mut p = TxParser::new(TxLimits::default());
        let f = run(
            &mut p,
            &[req(100, 0, MORE, 1), req(101, 0, NetTxFlags::empty(), 2)],
        );
        assert_eq!(
            f.unwrap().end,
            Some(Err(TxDrop::Oversized {
                size: 101,
                left: 100
            }))
        );
        let f = run(&mut p, &[req(13, 0, NetTxFlags::empty(), 1)]);
        assert_eq!(f.unwrap().end, Some(Err(TxDrop::TooShort(13))));
    }

    #[test]
    fn offset_past_page_is_a_fault() {
        let mut p = TxParser::new(TxLimits::default());
        let f = run(
            &mut p,
            &[req(200, 0, MORE, 1), req(100, 4000, NetTxFlags::empty(), 2)],
        );
        assert_eq!(
            f,
            Err(TxFault::OutsidePage {
                offset: 4000,
                size: 100
            })
        );
        // The first slot's own data (what the others leave) is checked at the end.
        let f = run(
            &mut p,
            &[
                req(1000, 3500, MORE, 1),
                req(100, 0, NetTxFlags::empty(), 2),
            ],
        );
        assert_eq!(
            f,
            Err(TxFault::OutsidePage {
                offset: 3500,
                size: 900
            })
        );
        let f = run(&mut p, &[req(596, 3500, NetTxFlags::empty(), 1)]);
        assert!(f.unwrap().end.unwrap().is_ok(), "the boundary itself");
    }

    #[test]
    fn bogus_extra_info_is_a_fault_or_a_drop() {
        let first = NetTxFlags::EXTRA_INFO;
        let mut p = TxParser::new(TxLimits {
            gso_tcpv6: false,
            multicast: false,
            ..TxLimits::default()
        });
        let mut unknown = ExtraInfo::ZERO;
        unknown.ty = 5;
        assert_eq!(
            run(&mut p, &[req(60, 0, first, 1), extra(unknown)]),
            Err(TxFault::BadExtraType(5))
        );
        assert_eq!(
            run(&mut p, &[req(60, 0, first, 1), extra(ExtraInfo::ZERO)]),
            Err(TxFault::BadExtraType(0))
        );
        let gso = |size, ty, f| extra(ExtraInfo::gso(size, ty, 0, f));
        assert_eq!(
            run(
                &mut p,
                &[
                    req(60, 0, first, 1),
                    gso(0, GsoType::Tcpv4, ExtraFlags::empty())
                ]
            ),
            Err(TxFault::BadGso { ty: 1, size: 0 })
        );
        assert_eq!(
            run(
                &mut p,
                &[
                    req(60, 0, first, 1),
                    gso(9, GsoType::None, ExtraFlags::empty())
                ]
            ),
            Err(TxFault::BadGso { ty: 0, size: 9 })
        );
        assert_eq!(
            run(
                &mut p,
                &[
                    req(60, 0, first, 1),
                    gso(9, GsoType::Tcpv4, ExtraFlags::MORE),
                    gso(9, GsoType::Tcpv4, ExtraFlags::empty())
                ]
            ),
            Err(TxFault::DuplicateExtra(1))
        );
        // Not offered or not negotiated: the packet is dropped, the queue goes on.
        assert_eq!(
            run(
                &mut p,
                &[
                    req(60, 0, first, 1),
                    gso(9, GsoType::Tcpv6, ExtraFlags::empty())
                ]
            )
            .unwrap()
            .end,
            Some(Err(TxDrop::GsoNotOffered(GsoType::Tcpv6)))
        );
        let mcast = ExtraInfo::mcast(
            ExtraType::McastAdd,
            [1, 0, 0x5e, 0, 0, 1],
            ExtraFlags::empty(),
        );
        assert_eq!(
            run(&mut p, &[req(0, 0, first, 1), extra(mcast)])
                .unwrap()
                .end,
            Some(Err(TxDrop::McastNotNegotiated))
        );
        let mut p = TxParser::new(TxLimits::default());
        let m = run(&mut p, &[req(0, 0, first, 1), extra(mcast)])
            .unwrap()
            .end
            .unwrap()
            .unwrap();
        assert_eq!(
            m.mcast,
            Some(Mcast {
                add: true,
                addr: [1, 0, 0x5e, 0, 0, 1]
            })
        );
    }
}
