//! The XenStore wire protocol (`io/xs_wire.h`): message header, message types and the
//! shared page a guest talks to XenStore through.

use super::wire_struct;
use crate::{bindings, Unknown};

/// Bytes in each of the two byte-stream rings of the shared page (`XENSTORE_RING_SIZE`).
pub const RING_SIZE: usize = 1024;
/// Largest payload after a [`MsgHeader`] (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;
/// Longest absolute path (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;
/// Longest relative path (`XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = 2048;

/// `server_features` bit: the server supports reconnection (`connection` field).
pub const SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `server_features` bit: the server reports errors in the `error` field.
pub const SERVER_FEATURE_ERROR: u32 = 2;
/// `connection`: connected (`XENSTORE_CONNECTED`).
pub const CONNECTED: u32 = 0;
/// `connection`: reconnection in progress (`XENSTORE_RECONNECT`).
pub const RECONNECT: u32 = 1;
/// `error`: no error.
pub const ERROR_NONE: u32 = 0;
/// `error`: communication problem.
pub const ERROR_COMM: u32 = 1;
/// `error`: invalid ring index.
pub const ERROR_RINGIDX: u32 = 2;
/// `error`: protocol violation (payload too long).
pub const ERROR_PROTO: u32 = 3;

/// Byte offsets in the shared page (`struct xenstore_domain_interface`).
///
/// The page is written concurrently by the peer, so it has no Rust struct: the ring crate
/// reads the indices atomically and the buffers with volatile copies at these offsets.
pub mod interface {
    /// Requests from the guest to XenStore: a [`RING_SIZE`](super::RING_SIZE)-byte ring.
    pub const REQ: usize = 0;
    /// Replies and watch events: a [`RING_SIZE`](super::RING_SIZE)-byte ring.
    pub const RSP: usize = 1024;
    /// `req_cons` (u32): written by XenStore.
    pub const REQ_CONS: usize = 2048;
    /// `req_prod` (u32): written by the guest.
    pub const REQ_PROD: usize = 2052;
    /// `rsp_cons` (u32): written by the guest.
    pub const RSP_CONS: usize = 2056;
    /// `rsp_prod` (u32): written by XenStore.
    pub const RSP_PROD: usize = 2060;
    /// `server_features` (u32).
    pub const SERVER_FEATURES: usize = 2064;
    /// `connection` (u32).
    pub const CONNECTION: usize = 2068;
    /// `error` (u32).
    pub const ERROR: usize = 2072;
    /// Size of the struct.
    pub const SIZE: usize = 2076;
}

const _: () = {
    use bindings::xenstore_domain_interface as X;
    use core::mem::{offset_of, size_of};
    assert!(RING_SIZE as u32 == bindings::XENSTORE_RING_SIZE);
    assert!(PAYLOAD_MAX as u32 == bindings::XENSTORE_PAYLOAD_MAX);
    assert!(ABS_PATH_MAX as u32 == bindings::XENSTORE_ABS_PATH_MAX);
    assert!(REL_PATH_MAX as u32 == bindings::XENSTORE_REL_PATH_MAX);
    assert!(SERVER_FEATURE_RECONNECTION == bindings::XENSTORE_SERVER_FEATURE_RECONNECTION);
    assert!(SERVER_FEATURE_ERROR == bindings::XENSTORE_SERVER_FEATURE_ERROR);
    assert!(CONNECTED == bindings::XENSTORE_CONNECTED);
    assert!(RECONNECT == bindings::XENSTORE_RECONNECT);
    assert!(ERROR_NONE == bindings::XENSTORE_ERROR_NONE);
    assert!(ERROR_COMM == bindings::XENSTORE_ERROR_COMM);
    assert!(ERROR_RINGIDX == bindings::XENSTORE_ERROR_RINGIDX);
    assert!(ERROR_PROTO == bindings::XENSTORE_ERROR_PROTO);
    assert!(offset_of!(X, req) == interface::REQ);
    assert!(offset_of!(X, rsp) == interface::RSP);
    assert!(offset_of!(X, req_cons) == interface::REQ_CONS);
    assert!(offset_of!(X, req_prod) == interface::REQ_PROD);
    assert!(offset_of!(X, rsp_cons) == interface::RSP_CONS);
    assert!(offset_of!(X, rsp_prod) == interface::RSP_PROD);
    assert!(offset_of!(X, server_features) == interface::SERVER_FEATURES);
    assert!(offset_of!(X, connection) == interface::CONNECTION);
    assert!(offset_of!(X, error) == interface::ERROR);
    assert!(size_of::<X>() == interface::SIZE);
};

/// A message type (`enum xsd_sockmsg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    /// Implementation-specific control (also `XS_DEBUG`).
    Control = 0,
    /// List a node's children.
    Directory = 1,
    /// Read a node's value.
    Read = 2,
    /// Read a node's permissions.
    GetPerms = 3,
    /// Register a watch.
    Watch = 4,
    /// Remove a watch.
    Unwatch = 5,
    /// Start a transaction.
    TransactionStart = 6,
    /// Commit or abort a transaction.
    TransactionEnd = 7,
    /// Introduce a domain (toolstack).
    Introduce = 8,
    /// Release a domain (toolstack).
    Release = 9,
    /// Get a domain's home path.
    GetDomainPath = 10,
    /// Write a node's value.
    Write = 11,
    /// Create a node.
    Mkdir = 12,
    /// Remove a node.
    Rm = 13,
    /// Set a node's permissions.
    SetPerms = 14,
    /// A watch fired (server to client, unsolicited).
    WatchEvent = 15,
    /// An error reply; the payload is the error name.
    Error = 16,
    /// Ask whether a domain was introduced (toolstack).
    IsDomainIntroduced = 17,
    /// Resume a domain (toolstack).
    Resume = 18,
    /// Set a domain's target (toolstack).
    SetTarget = 19,
    /// Remove all of this connection's watches.
    ResetWatches = 21,
    /// List a node's children, one part at a time.
    DirectoryPart = 22,
    /// Guaranteed never to be a valid type.
    Invalid = 0xffff,
}

const _: () = {
    use bindings as b;
    assert!(MsgType::Control as u32 == b::XS_CONTROL);
    assert!(MsgType::Directory as u32 == b::XS_DIRECTORY);
    assert!(MsgType::Read as u32 == b::XS_READ);
    assert!(MsgType::GetPerms as u32 == b::XS_GET_PERMS);
    assert!(MsgType::Watch as u32 == b::XS_WATCH);
    assert!(MsgType::Unwatch as u32 == b::XS_UNWATCH);
    assert!(MsgType::TransactionStart as u32 == b::XS_TRANSACTION_START);
    assert!(MsgType::TransactionEnd as u32 == b::XS_TRANSACTION_END);
    assert!(MsgType::Introduce as u32 == b::XS_INTRODUCE);
    assert!(MsgType::Release as u32 == b::XS_RELEASE);
    assert!(MsgType::GetDomainPath as u32 == b::XS_GET_DOMAIN_PATH);
    assert!(MsgType::Write as u32 == b::XS_WRITE);
    assert!(MsgType::Mkdir as u32 == b::XS_MKDIR);
    assert!(MsgType::Rm as u32 == b::XS_RM);
    assert!(MsgType::SetPerms as u32 == b::XS_SET_PERMS);
    assert!(MsgType::WatchEvent as u32 == b::XS_WATCH_EVENT);
    assert!(MsgType::Error as u32 == b::XS_ERROR);
    assert!(MsgType::IsDomainIntroduced as u32 == b::XS_IS_DOMAIN_INTRODUCED);
    assert!(MsgType::Resume as u32 == b::XS_RESUME);
    assert!(MsgType::SetTarget as u32 == b::XS_SET_TARGET);
    assert!(MsgType::ResetWatches as u32 == b::XS_RESET_WATCHES);
    assert!(MsgType::DirectoryPart as u32 == b::XS_DIRECTORY_PART);
    assert!(MsgType::Invalid as u32 == b::XS_INVALID);
    assert!(b::XS_TYPE_COUNT == 23);
};

impl TryFrom<u32> for MsgType {
    type Error = Unknown<u32>;
    fn try_from(raw: u32) -> Result<Self, Unknown<u32>> {
        Ok(match raw {
            0 => MsgType::Control,
            1 => MsgType::Directory,
            2 => MsgType::Read,
            3 => MsgType::GetPerms,
            4 => MsgType::Watch,
            5 => MsgType::Unwatch,
            6 => MsgType::TransactionStart,
            7 => MsgType::TransactionEnd,
            8 => MsgType::Introduce,
            9 => MsgType::Release,
            10 => MsgType::GetDomainPath,
            11 => MsgType::Write,
            12 => MsgType::Mkdir,
            13 => MsgType::Rm,
            14 => MsgType::SetPerms,
            15 => MsgType::WatchEvent,
            16 => MsgType::Error,
            17 => MsgType::IsDomainIntroduced,
            18 => MsgType::Resume,
            19 => MsgType::SetTarget,
            21 => MsgType::ResetWatches,
            22 => MsgType::DirectoryPart,
            0xffff => MsgType::Invalid,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<MsgType> for u32 {
    fn from(ty: MsgType) -> u32 {
        ty as u32
    }
}

/// Which string of a watch event's payload is which (`enum xs_watch_type`).
pub mod watch_event {
    /// Index of the path that changed.
    pub const PATH: usize = 0;
    /// Index of the token given when registering the watch.
    pub const TOKEN: usize = 1;
}

const _: () = {
    assert!(watch_event::PATH as u32 == bindings::XS_WATCH_PATH);
    assert!(watch_event::TOKEN as u32 == bindings::XS_WATCH_TOKEN);
};

wire_struct! {
    /// The header of every XenStore message (`struct xsd_sockmsg`), followed by `len` bytes of
    /// payload (usually NUL-separated strings).
    pub struct MsgHeader (16 bytes, like bindings::xsd_sockmsg) {
        /// A [`MsgType`] (raw: the peer may send anything).
        pub ty: u32 => type_,
        /// The requester's cookie, echoed in the reply.
        pub req_id: u32 => req_id,
        /// Transaction id, 0 outside a transaction.
        pub tx_id: u32 => tx_id,
        /// Payload bytes that follow.
        pub len: u32 => len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_type_round_trips_and_gaps_are_unknown() {
        for raw in 0..=0x1_0000u32 {
            match MsgType::try_from(raw) {
                Ok(ty) => assert_eq!(u32::from(ty), raw),
                Err(Unknown(r)) => {
                    assert_eq!(r, raw);
                    assert!(raw == 20 || (23..0xffff).contains(&raw) || raw > 0xffff);
                }
            }
        }
    }
}
