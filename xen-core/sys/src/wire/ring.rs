//! The header of an `io/ring.h` shared ring page, common to every ring protocol.

use super::wire_struct;
use crate::bindings;

/// Bytes before the first slot of a shared ring (`offsetof(sring, ring)`).
pub const HEADER_SIZE: usize = 64;

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(bindings::blkif_sring, ring) == HEADER_SIZE);
    assert!(offset_of!(bindings::netif_tx_sring, ring) == HEADER_SIZE);
    assert!(offset_of!(bindings::netif_rx_sring, ring) == HEADER_SIZE);
    assert!(offset_of!(bindings::vscsiif_sring, ring) == HEADER_SIZE);
};

wire_struct! {
    /// The indices at the start of a shared ring page (`struct *_sring` up to `ring`).
    ///
    /// The ring crate accesses these fields one at a time, atomically, at their offsets
    /// (`core::mem::offset_of!(Header, req_prod)`); the struct names the layout.
    pub struct Header (64 bytes, prefix of bindings::blkif_sring) {
        /// Requests produced by the frontend.
        pub req_prod: u32 => req_prod,
        /// The backend wants an event when `req_prod` passes this.
        pub req_event: u32 => req_event,
        /// Responses produced by the backend.
        pub rsp_prod: u32 => rsp_prod,
        /// The frontend wants an event when `rsp_prod` passes this.
        pub rsp_event: u32 => rsp_event,
        /// Protocol-private bytes (`pvt`; netif's `smartpoll_active`).
        pub pvt: [u8; 4] => pvt,
        _pad: [u8; 44],
    }
}
