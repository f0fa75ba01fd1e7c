//! The transmit side's pure parts: how a packet is described, how many slots it takes, and the check of each TX response.
//!
//! A packet reaches the engine as a head buffer and fragments, each a byte slice plus the
//! offset it has in its page ([`TxPacket`]). The engine never grants the guest's own memory
//! (Linux's `trusted=0`): it copies the packet into its own pages, packed from offset 0, so a
//! packet of `len` bytes always takes [`copy_slots`]`(len)` data slots, at most 16 for
//! [`MAX_TX_SIZE`] bytes, within the [`NR_SLOTS_MIN`] a backend must accept. Packing *is*
//! linearisation: a packet whose own layout would need more than [`NR_SLOTS_MIN`] slots
//! ([`TxPacket::needs_linearisation`], which is what a zero-copy mode granting the pages in
//! place would have to check) goes out in as few slots as any other of its size.

use xen_sys::wire::netif::{GsoType, NetTxFlags, TxResponse, MAX_TX_SIZE, NR_SLOTS_MIN};
use xen_sys::wire::netif::{RSP_DROPPED, RSP_ERROR, RSP_NULL, RSP_OKAY};

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
}
