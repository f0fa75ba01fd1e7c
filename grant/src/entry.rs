//! The v1 grant-entry encoding: pure functions between grant intents and `grant_entry_v1`.
//!
//! Writing an entry is a two-step protocol the shared-memory accessor performs: `domid` and
//! `frame` first, then (after a write barrier) `flags`, so the peer never sees a valid type
//! with a stale frame. Revoking is a compare-and-exchange of `flags` to 0 that fails while
//! Xen has set `READING` or `WRITING` for a peer mapping ([`revocable`]).

use xen_sys::wire::grant::{EntryV1, GrantFlags};
use xen_sys::{DomId, Gfn};

/// What a grant lets the peer do with the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The peer may read the page.
    ReadOnly,
    /// The peer may read and write the page.
    ReadWrite,
}

/// The frame does not fit in a v1 entry's 32-bit `frame` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTooLarge(pub Gfn);

/// The entry granting `domid` `access` to `gfn`.
pub fn encode_v1(domid: DomId, gfn: Gfn, access: Access) -> Result<EntryV1, FrameTooLarge> {
    let frame = u32::try_from(gfn.raw()).map_err(|_| FrameTooLarge(gfn))?;
    let flags = match access {
        Access::ReadOnly => GrantFlags::PERMIT_ACCESS | GrantFlags::READONLY,
        Access::ReadWrite => GrantFlags::PERMIT_ACCESS,
    };
    let mut e = EntryV1::ZERO;
    e.flags = flags.bits();
    e.domid = domid.raw();
    e.frame = frame;
    Ok(e)
}

/// A v1 entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// No grant (type bits 0): the reference may be reused.
    Invalid,
    /// An access grant.
    PermitAccess {
        /// The domain allowed to use it.
        domid: DomId,
        /// The granted frame.
        gfn: Gfn,
        /// What the domain may do.
        access: Access,
        /// Xen has the frame mapped for the peer (reading or writing), so it must not be
        /// revoked or freed yet.
        mapped: bool,
    },
    /// A transfer or transitive grant, which our drivers never create.
    Other(GrantFlags),
}

/// Decodes an entry; unknown flag bits are ignored.
pub fn decode_v1(e: &EntryV1) -> EntryState {
    let flags = GrantFlags::from_bits_truncate(e.flags);
    let ty = flags & GrantFlags::TYPE_MASK;
    if ty.is_empty() {
        EntryState::Invalid
    } else if ty == GrantFlags::PERMIT_ACCESS {
        EntryState::PermitAccess {
            domid: DomId::new(e.domid),
            gfn: Gfn::new(u64::from(e.frame)),
            access: if flags.contains(GrantFlags::READONLY) {
                Access::ReadOnly
            } else {
                Access::ReadWrite
            },
            mapped: flags.intersects(GrantFlags::READING | GrantFlags::WRITING),
        }
    } else {
        EntryState::Other(flags)
    }
}

/// Whether an entry with `flags` can be revoked now: Xen sets `READING`/`WRITING` while the
/// peer maps the frame, and a revoke (flags to 0) must only succeed when neither is set.
pub fn revocable(flags: u16) -> bool {
    !GrantFlags::from_bits_retain(flags).intersects(GrantFlags::READING | GrantFlags::WRITING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn access() -> impl Strategy<Value = Access> {
        prop_oneof![Just(Access::ReadOnly), Just(Access::ReadWrite)]
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(domid in any::<u16>(), frame in any::<u32>(), access in access()) {
            let e = encode_v1(DomId::new(domid), Gfn::new(u64::from(frame)), access).unwrap();
            prop_assert_eq!(
                decode_v1(&e),
                EntryState::PermitAccess {
                    domid: DomId::new(domid),
                    gfn: Gfn::new(u64::from(frame)),
                    access,
                    mapped: false,
                }
            );
            prop_assert!(revocable(e.flags));
            prop_assert_eq!(EntryV1::from_bytes(&e.to_bytes()), e);
        }

        #[test]
        fn decode_never_panics_and_mapped_means_not_revocable(flags in any::<u16>(), domid in any::<u16>(), frame in any::<u32>()) {
            let mut e = EntryV1::ZERO;
            e.flags = flags;
            e.domid = domid;
            e.frame = frame;
            if let EntryState::PermitAccess { mapped, .. } = decode_v1(&e) {
                prop_assert_eq!(mapped, !revocable(flags));
            }
        }

        #[test]
        fn frames_above_32_bits_are_refused(frame in (1u64 << 32)..) {
            prop_assert_eq!(
                encode_v1(DomId::DOM0, Gfn::new(frame), Access::ReadWrite),
                Err(FrameTooLarge(Gfn::new(frame)))
            );
        }
    }

    #[test]
    fn read_only_grant_sets_readonly_and_permit_access_only() {
        let e = encode_v1(DomId::new(3), Gfn::new(0x1234), Access::ReadOnly).unwrap();
        assert_eq!(e.flags, 0b101);
        assert_eq!((e.domid, e.frame), (3, 0x1234));
        let rw = encode_v1(DomId::new(3), Gfn::new(0x1234), Access::ReadWrite).unwrap();
        assert_eq!(rw.flags, 0b001);
    }

    #[test]
    fn peer_mapping_blocks_revocation() {
        let mut e = encode_v1(DomId::new(1), Gfn::new(5), Access::ReadWrite).unwrap();
        e.flags |= GrantFlags::WRITING.bits();
        assert!(!revocable(e.flags));
        assert!(matches!(
            decode_v1(&e),
            EntryState::PermitAccess { mapped: true, .. }
        ));
        e.flags = GrantFlags::PERMIT_ACCESS.bits() | GrantFlags::READING.bits();
        assert!(!revocable(e.flags));
    }

    #[test]
    fn invalid_and_transfer_entries_are_told_apart() {
        assert_eq!(decode_v1(&EntryV1::ZERO), EntryState::Invalid);
        let mut e = EntryV1::ZERO;
        e.flags = GrantFlags::ACCEPT_TRANSFER.bits();
        assert!(matches!(decode_v1(&e), EntryState::Other(_)));
    }
}
