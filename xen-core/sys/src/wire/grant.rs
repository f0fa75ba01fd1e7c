//! Grant-table entries (`grant_table.h`): the v1 entry a domain writes to share a page.

use super::wire_struct;
use crate::bindings;

bitflags::bitflags! {
    /// The `flags` of a v1 grant entry (`GTF_*`).
    ///
    /// The two low bits are a type field, not independent flags: [`GrantFlags::TYPE_MASK`]
    /// selects it and [`GrantFlags::PERMIT_ACCESS`] is the only type drivers write. The
    /// transfer-only flags (`GTF_transfer_committed`, `GTF_transfer_completed`) share bits
    /// with `READONLY` and `READING` and are not defined here.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GrantFlags: u16 {
        /// Type: the peer may map or copy the frame (`GTF_permit_access`).
        const PERMIT_ACCESS = 1;
        /// Type: the peer may transfer a frame to us (`GTF_accept_transfer`).
        const ACCEPT_TRANSFER = 2;
        /// Type: access is granted through another grant (`GTF_transitive`).
        const TRANSITIVE = 3;
        /// The two bits holding the type (`GTF_type_mask`).
        const TYPE_MASK = 3;
        /// The peer may only read (`GTF_readonly`).
        const READONLY = 1 << 2;
        /// Set by Xen while the peer maps the frame for reading (`GTF_reading`).
        const READING = 1 << 3;
        /// Set by Xen while the peer maps the frame for writing (`GTF_writing`).
        const WRITING = 1 << 4;
        /// Cache attribute: page write-through (`GTF_PWT`).
        const PWT = 1 << 5;
        /// Cache attribute: page cache disable (`GTF_PCD`).
        const PCD = 1 << 6;
        /// Cache attribute: PAT (`GTF_PAT`).
        const PAT = 1 << 7;
        /// Sub-page grant, v2 only (`GTF_sub_page`).
        const SUB_PAGE = 1 << 8;
    }
}

const _: () = {
    assert!(GrantFlags::PERMIT_ACCESS.bits() as u32 == bindings::GTF_permit_access);
    assert!(GrantFlags::ACCEPT_TRANSFER.bits() as u32 == bindings::GTF_accept_transfer);
    assert!(GrantFlags::TRANSITIVE.bits() as u32 == bindings::GTF_transitive);
    assert!(GrantFlags::TYPE_MASK.bits() as u32 == bindings::GTF_type_mask);
    assert!(GrantFlags::READONLY.bits() as u32 == bindings::GTF_readonly);
    assert!(GrantFlags::READING.bits() as u32 == bindings::GTF_reading);
    assert!(GrantFlags::WRITING.bits() as u32 == bindings::GTF_writing);
    assert!(GrantFlags::PWT.bits() as u32 == bindings::GTF_PWT);
    assert!(GrantFlags::PCD.bits() as u32 == bindings::GTF_PCD);
    assert!(GrantFlags::PAT.bits() as u32 == bindings::GTF_PAT);
    assert!(GrantFlags::SUB_PAGE.bits() as u32 == bindings::GTF_sub_page);
};

wire_struct! {
    /// A v1 grant entry (`struct grant_entry_v1`), one per grant reference in the table.
    pub struct EntryV1 (8 bytes, like bindings::grant_entry_v1) {
        /// [`GrantFlags`] bits; Xen sets `READING`/`WRITING` while the peer maps the frame.
        pub flags: u16 => flags,
        /// The domain allowed to use the grant.
        pub domid: u16 => domid,
        /// The granted frame number.
        pub frame: u32 => frame,
    }
}
