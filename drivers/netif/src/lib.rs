//! The netif network-device protocol (`io/netif.h`): the frontend and backend engines of one
//! queue and the parsers they share, run by the kernel module and the host simulator.
//!
//! # What is here
//!
//! - [`tx`]: a packet to send ([`TxPacket`]: head and fragments, checksum state, GSO), the
//!   slots it takes, and the decoding of a TX response ([`tx::parse_tx_response`]).
//! - [`rx`]: [`RxParser`], which takes RX responses in ring order, copied once, and chains
//!   them into packets, checking status, `offset + size`, `more_data` chain length and
//!   extra-info slots; a bad packet is dropped and reported, an endless chain is a fault.
//! - [`NetBack`]: the backend of one queue (see [`back`]): TX chains parsed copy-once by
//!   [`TxParser`], heads grant-copied, fragments grant-mapped (zero-copy) or copied, each slot
//!   answered once; RX packets queued (bounded) and grant-copied into the posted buffers;
//!   stall and drain timers driven by the glue's clock.
//! - [`NetFront`]: the frontend of one queue. TX: a packet is copied into the engine's own
//!   zeroed pages ([`NetFront::send`], Linux's `trusted=0`: nothing of the guest's memory is
//!   granted), packed from offset 0 so it takes at most 16 data slots plus a GSO slot; or
//!   its frames are granted where they lie ([`NetFront::send_lent`], Linux's `trusted=1`:
//!   no copy, at most 18 pieces, the memory kept until the completion and leaked if the
//!   backend still maps it then). Checksum flags from the packet's checksum state;
//!   responses checked (id in range and outstanding, status known, `RSP_NULL` only for
//!   extra-info slots sent) and finished packets reported. RX: buffers
//!   kept posted (zeroed pages granted read-write, rx-copy), responses checked against the
//!   buffer posted at their ring position, packets handed over as page fragments and
//!   metadata, pages recycled. Work per call bounded by a budget; every event handler
//!   returns a [`Progress`] whose `spurious` verdict goes to the late EOI. Its id tables
//!   ([`TxEntry`], [`RxEntry`]) are inline ([`NetFront::new`]) or in storage the caller
//!   allocates, e.g. on the heap ([`NetFront::with_tables`]).
//!
//! # Not here (yet)
//!
//! The XenBus handshake is the glue's, through `xen_core::feature::netif` and
//! `xen_core::xenbus`. Multiple queues are one engine per queue; the control ring is
//! [`ctrl`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod back;
pub mod ctrl;
pub mod front;
mod ids;
pub mod rx;
pub mod tx;

pub use back::{
    BackConfig, BackStats, BackTxPacket, Carrier, NetBack, Notifications, RxQueued, RxRefused,
    RxSource, TxEvent, TxFragRef, TxPending, TxToken,
};
pub use front::{
    Error, Fault, FrontConfig, FrontStats, InlineRxTable, InlineTxTable, NetFront, RxEntry,
    RxPacket, SendError, TxCompletion, TxEntry, TxOutcome, RING_SLOTS,
};
pub use rx::{RxChecksum, RxError, RxGso, RxHash, RxLimits, RxMeta, RxParser};
pub use tx::{
    Gso, Mcast, TxChecksum, TxDrop, TxFault, TxFrag, TxLent, TxLimits, TxMeta, TxPacket, TxParser,
    TxStatus,
};
pub use xen_core::platform::Progress;
