//! The netif network-device ring protocol (`io/netif.h`): a tx ring, an rx ring and the optional control ring.
//!
//! A tx slot holds a [`TxRequest`] (12 bytes) or a [`TxResponse`]; an rx slot holds an
//! [`RxRequest`] or an [`RxResponse`] (8 bytes each). A request or response flagged
//! `EXTRA_INFO` is followed by slots holding an [`ExtraInfo`] instead.
//!
//! A control-ring slot (`feature-ctrl-ring`) holds a [`CtrlRequest`] (16 bytes) or a
//! [`CtrlResponse`] (12 bytes): the frontend asks ([`CtrlType`]), the backend answers with a
//! [`CtrlStatus`] and one word of data. The requests defined so far set up receive-side
//! hashing ([`HashAlgorithm`], [`HashFlags`], a key and a hash-to-queue mapping table) and
//! manage static grant mappings.

use super::wire_struct;
use crate::{bindings, Unknown};

/// Slots a backend must accept for one packet (`XEN_NETIF_NR_SLOTS_MIN`).
pub const NR_SLOTS_MIN: usize = 18;
/// Largest packet a tx request may describe (`XEN_NETIF_MAX_TX_SIZE`).
pub const MAX_TX_SIZE: u32 = 0xFFFF;

/// Response status: the packet was dropped (`NETIF_RSP_DROPPED`).
pub const RSP_DROPPED: i16 = -2;
/// Response status: error (`NETIF_RSP_ERROR`).
pub const RSP_ERROR: i16 = -1;
/// Response status: success (`NETIF_RSP_OKAY`); rx responses carry a byte count instead.
pub const RSP_OKAY: i16 = 0;
/// Response status of a tx slot that held an extra-info segment (`NETIF_RSP_NULL`).
pub const RSP_NULL: i16 = 1;

const _: () = {
    assert!(NR_SLOTS_MIN as u32 == bindings::XEN_NETIF_NR_SLOTS_MIN);
    assert!(MAX_TX_SIZE == bindings::XEN_NETIF_MAX_TX_SIZE);
    assert!(RSP_DROPPED as i32 == bindings::NETIF_RSP_DROPPED);
    assert!(RSP_ERROR as i32 == bindings::NETIF_RSP_ERROR);
    assert!(RSP_OKAY as u32 == bindings::NETIF_RSP_OKAY);
    assert!(RSP_NULL as u32 == bindings::NETIF_RSP_NULL);
};

bitflags::bitflags! {
    /// Flags of a [`TxRequest`] (`NETTXF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NetTxFlags: u16 {
        /// The protocol checksum is blank: the backend (or hardware) fills it in.
        const CSUM_BLANK = 1 << 0;
        /// The protocol checksum has been validated.
        const DATA_VALIDATED = 1 << 1;
        /// The packet continues in the next request.
        const MORE_DATA = 1 << 2;
        /// The request is followed by [`ExtraInfo`] slots.
        const EXTRA_INFO = 1 << 3;
    }
}

bitflags::bitflags! {
    /// Flags of an [`RxResponse`] (`NETRXF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NetRxFlags: u16 {
        /// The protocol checksum has been validated.
        const DATA_VALIDATED = 1 << 0;
        /// The protocol checksum is blank.
        const CSUM_BLANK = 1 << 1;
        /// The packet continues in the next response.
        const MORE_DATA = 1 << 2;
        /// The response is followed by [`ExtraInfo`] slots.
        const EXTRA_INFO = 1 << 3;
        /// The packet has a GSO prefix slot (deprecated).
        const GSO_PREFIX = 1 << 4;
    }
}

bitflags::bitflags! {
    /// Flags of an [`ExtraInfo`] (`XEN_NETIF_EXTRA_FLAG_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ExtraFlags: u8 {
        /// Another extra-info slot follows.
        const MORE = 1 << 0;
    }
}

const _: () = {
    assert!(NetTxFlags::CSUM_BLANK.bits() as u32 == bindings::NETTXF_csum_blank);
    assert!(NetTxFlags::DATA_VALIDATED.bits() as u32 == bindings::NETTXF_data_validated);
    assert!(NetTxFlags::MORE_DATA.bits() as u32 == bindings::NETTXF_more_data);
    assert!(NetTxFlags::EXTRA_INFO.bits() as u32 == bindings::NETTXF_extra_info);
    assert!(NetRxFlags::DATA_VALIDATED.bits() as u32 == bindings::NETRXF_data_validated);
    assert!(NetRxFlags::CSUM_BLANK.bits() as u32 == bindings::NETRXF_csum_blank);
    assert!(NetRxFlags::MORE_DATA.bits() as u32 == bindings::NETRXF_more_data);
    assert!(NetRxFlags::EXTRA_INFO.bits() as u32 == bindings::NETRXF_extra_info);
    assert!(NetRxFlags::GSO_PREFIX.bits() as u32 == bindings::NETRXF_gso_prefix);
    assert!(ExtraFlags::MORE.bits() as u32 == bindings::XEN_NETIF_EXTRA_FLAG_MORE);
};

/// The kind of an [`ExtraInfo`] slot (`XEN_NETIF_EXTRA_TYPE_*`; 0 is never valid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExtraType {
    /// Segmentation offload parameters.
    Gso = 1,
    /// Add a multicast address filter.
    McastAdd = 2,
    /// Remove a multicast address filter.
    McastDel = 3,
    /// The packet's hash value.
    Hash = 4,
}

const _: () = {
    assert!(ExtraType::Gso as u32 == bindings::XEN_NETIF_EXTRA_TYPE_GSO);
    assert!(ExtraType::McastAdd as u32 == bindings::XEN_NETIF_EXTRA_TYPE_MCAST_ADD);
    assert!(ExtraType::McastDel as u32 == bindings::XEN_NETIF_EXTRA_TYPE_MCAST_DEL);
    assert!(ExtraType::Hash as u32 == bindings::XEN_NETIF_EXTRA_TYPE_HASH);
    assert!(bindings::XEN_NETIF_EXTRA_TYPE_MAX == 5);
};

impl TryFrom<u8> for ExtraType {
    type Error = Unknown<u8>;
    fn try_from(raw: u8) -> Result<Self, Self::Error> {
        Ok(match raw {
            1 => ExtraType::Gso,
            2 => ExtraType::McastAdd,
            3 => ExtraType::McastDel,
            4 => ExtraType::Hash,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<ExtraType> for u8 {
    fn from(ty: ExtraType) -> u8 {
        ty as u8
    }
}

/// The segmentation offload of a GSO [`ExtraInfo`] (`XEN_NETIF_GSO_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GsoType {
    /// No segmentation offload.
    None = 0,
    /// TCP over IPv4.
    Tcpv4 = 1,
    /// TCP over IPv6.
    Tcpv6 = 2,
}

const _: () = {
    assert!(GsoType::None as u32 == bindings::XEN_NETIF_GSO_TYPE_NONE);
    assert!(GsoType::Tcpv4 as u32 == bindings::XEN_NETIF_GSO_TYPE_TCPV4);
    assert!(GsoType::Tcpv6 as u32 == bindings::XEN_NETIF_GSO_TYPE_TCPV6);
};

impl TryFrom<u8> for GsoType {
    type Error = Unknown<u8>;
    fn try_from(raw: u8) -> Result<Self, Self::Error> {
        Ok(match raw {
            0 => GsoType::None,
            1 => GsoType::Tcpv4,
            2 => GsoType::Tcpv6,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<GsoType> for u8 {
    fn from(ty: GsoType) -> u8 {
        ty as u8
    }
}

wire_struct! {
    /// A packet fragment to transmit (`struct netif_tx_request`).
    pub struct TxRequest (12 bytes, like bindings::netif_tx_request) {
        /// Grant reference of the page holding the fragment.
        pub gref: u32 => gref,
        /// Offset of the fragment in the page.
        pub offset: u16 => offset,
        /// [`NetTxFlags`] bits.
        pub flags: u16 => flags,
        /// The frontend's cookie, echoed in the response.
        pub id: u16 => id,
        /// Fragment size; in a packet's first request, the whole packet's size.
        pub size: u16 => size,
    }
}

wire_struct! {
    /// The result of one tx request (`struct netif_tx_response`).
    pub struct TxResponse (4 bytes, like bindings::netif_tx_response) {
        /// The request's `id`.
        pub id: u16 => id,
        /// `RSP_*`.
        pub status: i16 => status,
    }
}

wire_struct! {
    /// A buffer offered for a received packet (`struct netif_rx_request`).
    pub struct RxRequest (8 bytes, like bindings::netif_rx_request) {
        /// The frontend's cookie, echoed in the response.
        pub id: u16 => id,
        _pad: u16,
        /// Grant reference of the buffer page.
        pub gref: u32 => gref,
    }
}

wire_struct! {
    /// A received fragment (`struct netif_rx_response`).
    pub struct RxResponse (8 bytes, like bindings::netif_rx_response) {
        /// The request's `id`.
        pub id: u16 => id,
        /// Offset of the data in the buffer page.
        pub offset: u16 => offset,
        /// [`NetRxFlags`] bits.
        pub flags: u16 => flags,
        /// Bytes received if positive, else `RSP_*`.
        pub status: i16 => status,
    }
}

wire_struct! {
    /// An extra-info slot (`struct netif_extra_info`) following a flagged request or
    /// response; `u` is a union whose meaning depends on `ty`, read with the accessors.
    #[repr(align(2))]
    pub struct ExtraInfo (8 bytes, like bindings::netif_extra_info) {
        /// An [`ExtraType`] (raw: the peer may send anything).
        pub ty: u8 => type_,
        /// [`ExtraFlags`] bits.
        pub flags: u8 => flags,
        /// The union's bytes.
        pub u: [u8; 6] => u,
    }
}

impl ExtraInfo {
    /// A GSO slot: `size` is the MSS, `gso_type` a [`GsoType`].
    pub fn gso(size: u16, gso_type: GsoType, features: u16, flags: ExtraFlags) -> ExtraInfo {
        let [s0, s1] = size.to_ne_bytes();
        let [f0, f1] = features.to_ne_bytes();
        let mut e = ExtraInfo::ZERO;
        e.ty = ExtraType::Gso.into();
        e.flags = flags.bits();
        e.u = [s0, s1, gso_type.into(), 0, f0, f1];
        e
    }

    /// A multicast-filter slot ([`ExtraType::McastAdd`] or [`ExtraType::McastDel`]).
    pub fn mcast(ty: ExtraType, addr: [u8; 6], flags: ExtraFlags) -> ExtraInfo {
        let mut e = ExtraInfo::ZERO;
        e.ty = ty.into();
        e.flags = flags.bits();
        e.u = addr;
        e
    }

    /// `u.gso.size`: the MSS of a GSO slot.
    pub fn gso_size(&self) -> u16 {
        u16::from_ne_bytes([self.u[0], self.u[1]])
    }

    /// `u.gso.type`: a [`GsoType`] (raw) of a GSO slot.
    pub fn gso_type(&self) -> u8 {
        self.u[2]
    }

    /// `u.gso.features` of a GSO slot.
    pub fn gso_features(&self) -> u16 {
        u16::from_ne_bytes([self.u[4], self.u[5]])
    }

    /// `u.mcast.addr`: the MAC address of a multicast-filter slot.
    pub fn mcast_addr(&self) -> [u8; 6] {
        self.u
    }

    /// `u.hash.type` of a hash slot.
    pub fn hash_type(&self) -> u8 {
        self.u[0]
    }

    /// `u.hash.algorithm` of a hash slot.
    pub fn hash_algorithm(&self) -> u8 {
        self.u[1]
    }

    /// `u.hash.value` of a hash slot (the bytes as the C array holds them).
    pub fn hash_value(&self) -> [u8; 4] {
        [self.u[2], self.u[3], self.u[4], self.u[5]]
    }
}

/// What a control request asks (`XEN_NETIF_CTRL_TYPE_*`; 0, `INVALID`, is never sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CtrlType {
    /// Which [`HashFlags`] the backend can compute (after an algorithm is set).
    GetHashFlags = 1,
    /// Which [`HashFlags`] to compute (`data[0]`; 0 turns hashing off).
    SetHashFlags = 2,
    /// The hash key: `data[0]` a grant of the page holding it from offset 0, `data[1]` its
    /// length in bytes.
    SetHashKey = 3,
    /// The largest mapping table the backend takes, in entries (0: none, hash modulo queues).
    GetHashMappingSize = 4,
    /// The mapping table's size in entries (`data[0]`); the table is zeroed.
    SetHashMappingSize = 5,
    /// Part of the mapping table: `data[0]` a grant of the page holding `data[1]` entries
    /// (`u32` queue numbers) from offset 0, to store from entry `data[2]` on.
    SetHashMapping = 6,
    /// The [`HashAlgorithm`] (`data[0]`).
    SetHashAlgorithm = 7,
    /// How many static grant mappings the backend keeps.
    GetGrefMappingSize = 8,
    /// Adds static grant mappings.
    AddGrefMapping = 9,
    /// Removes static grant mappings.
    DelGrefMapping = 10,
}

const _: () = {
    assert!(bindings::XEN_NETIF_CTRL_TYPE_INVALID == 0);
    assert!(CtrlType::GetHashFlags as u32 == bindings::XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS);
    assert!(CtrlType::SetHashFlags as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS);
    assert!(CtrlType::SetHashKey as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_KEY);
    assert!(
        CtrlType::GetHashMappingSize as u32 == bindings::XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE
    );
    assert!(
        CtrlType::SetHashMappingSize as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE
    );
    assert!(CtrlType::SetHashMapping as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING);
    assert!(CtrlType::SetHashAlgorithm as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM);
    assert!(
        CtrlType::GetGrefMappingSize as u32 == bindings::XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE
    );
    assert!(CtrlType::AddGrefMapping as u32 == bindings::XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING);
    assert!(CtrlType::DelGrefMapping as u32 == bindings::XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING);
};

impl TryFrom<u16> for CtrlType {
    type Error = Unknown<u16>;
    fn try_from(raw: u16) -> Result<Self, Self::Error> {
        Ok(match raw {
            1 => CtrlType::GetHashFlags,
            2 => CtrlType::SetHashFlags,
            3 => CtrlType::SetHashKey,
            4 => CtrlType::GetHashMappingSize,
            5 => CtrlType::SetHashMappingSize,
            6 => CtrlType::SetHashMapping,
            7 => CtrlType::SetHashAlgorithm,
            8 => CtrlType::GetGrefMappingSize,
            9 => CtrlType::AddGrefMapping,
            10 => CtrlType::DelGrefMapping,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<CtrlType> for u16 {
    fn from(ty: CtrlType) -> u16 {
        ty as u16
    }
}

/// How the backend answered a control request (`XEN_NETIF_CTRL_STATUS_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CtrlStatus {
    /// Done; `data` holds the answer of a `Get*` request.
    Success = 0,
    /// The backend does not implement the request, or not in its current state.
    NotSupported = 1,
    /// A value in the request is out of range, or a grant could not be read.
    InvalidParameter = 2,
    /// A key or table is larger than the backend takes.
    BufferOverflow = 3,
}

const _: () = {
    assert!(CtrlStatus::Success as u32 == bindings::XEN_NETIF_CTRL_STATUS_SUCCESS);
    assert!(CtrlStatus::NotSupported as u32 == bindings::XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED);
    assert!(
        CtrlStatus::InvalidParameter as u32 == bindings::XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER
    );
    assert!(CtrlStatus::BufferOverflow as u32 == bindings::XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW);
};

impl TryFrom<u32> for CtrlStatus {
    type Error = Unknown<u32>;
    fn try_from(raw: u32) -> Result<Self, Self::Error> {
        Ok(match raw {
            0 => CtrlStatus::Success,
            1 => CtrlStatus::NotSupported,
            2 => CtrlStatus::InvalidParameter,
            3 => CtrlStatus::BufferOverflow,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<CtrlStatus> for u32 {
    fn from(status: CtrlStatus) -> u32 {
        status as u32
    }
}

/// The receive-side hash function (`XEN_NETIF_CTRL_HASH_ALGORITHM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum HashAlgorithm {
    /// No hashing: the backend steers packets to queues as it likes.
    None = 0,
    /// The Toeplitz hash, with a key (as in Microsoft's RSS).
    Toeplitz = 1,
}

const _: () = {
    assert!(HashAlgorithm::None as u32 == bindings::XEN_NETIF_CTRL_HASH_ALGORITHM_NONE);
    assert!(HashAlgorithm::Toeplitz as u32 == bindings::XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ);
};

impl TryFrom<u32> for HashAlgorithm {
    type Error = Unknown<u32>;
    fn try_from(raw: u32) -> Result<Self, Self::Error> {
        Ok(match raw {
            0 => HashAlgorithm::None,
            1 => HashAlgorithm::Toeplitz,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<HashAlgorithm> for u32 {
    fn from(alg: HashAlgorithm) -> u32 {
        alg as u32
    }
}

bitflags::bitflags! {
    /// The packet types a backend hashes (`XEN_NETIF_CTRL_HASH_TYPE_*`), and what the hash
    /// covers: for the TCP types the addresses and ports, for the others the addresses only.
    /// Where both a type and its TCP type are set, TCP packets get the TCP hash.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct HashFlags: u32 {
        /// IPv4 source and destination addresses (8 bytes).
        const IPV4 = 1 << 0;
        /// IPv4 addresses, then TCP source and destination ports (12 bytes).
        const IPV4_TCP = 1 << 1;
        /// IPv6 source and destination addresses (32 bytes).
        const IPV6 = 1 << 2;
        /// IPv6 addresses, then TCP source and destination ports (36 bytes).
        const IPV6_TCP = 1 << 3;
    }
}

const _: () = {
    assert!(HashFlags::IPV4.bits() == bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV4);
    assert!(HashFlags::IPV4_TCP.bits() == bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
    assert!(HashFlags::IPV6.bits() == bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV6);
    assert!(HashFlags::IPV6_TCP.bits() == bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);
};

wire_struct! {
    /// A control request (`struct xen_netif_ctrl_request`).
    pub struct CtrlRequest (16 bytes, like bindings::xen_netif_ctrl_request) {
        /// The frontend's cookie, echoed in the response.
        pub id: u16 => id,
        /// A [`CtrlType`].
        pub ty: u16 => type_,
        /// The arguments, by type (unused ones 0).
        pub data: [u32; 3] => data,
    }
}

wire_struct! {
    /// The answer to a control request (`struct xen_netif_ctrl_response`).
    pub struct CtrlResponse (12 bytes, like bindings::xen_netif_ctrl_response) {
        /// The request's `id`.
        pub id: u16 => id,
        /// The request's type (raw: the peer may send anything).
        pub ty: u16 => type_,
        /// A [`CtrlStatus`] (raw).
        pub status: u32 => status,
        /// The answer of a `Get*` request that succeeded; otherwise 0.
        pub data: u32 => data,
    }
}

impl CtrlRequest {
    /// A request of type `ty` with arguments `data`.
    pub fn new(id: u16, ty: CtrlType, data: [u32; 3]) -> CtrlRequest {
        let mut r = CtrlRequest::ZERO;
        r.id = id;
        r.ty = ty.into();
        r.data = data;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_accessors_read_what_the_constructor_wrote() {
        let e = ExtraInfo::gso(1448, GsoType::Tcpv6, 0x0102, ExtraFlags::MORE);
        assert_eq!(ExtraType::try_from(e.ty), Ok(ExtraType::Gso));
        assert_eq!(ExtraFlags::from_bits(e.flags), Some(ExtraFlags::MORE));
        assert_eq!(e.gso_size(), 1448);
        assert_eq!(GsoType::try_from(e.gso_type()), Ok(GsoType::Tcpv6));
        assert_eq!(e.gso_features(), 0x0102);
        assert_eq!(ExtraInfo::from_bytes(&e.to_bytes()), e);
    }

    #[test]
    fn extra_type_zero_and_unknown_are_rejected() {
        assert_eq!(ExtraType::try_from(0), Err(Unknown(0)));
        for raw in 5..=u8::MAX {
            assert_eq!(ExtraType::try_from(raw), Err(Unknown(raw)));
        }
        assert_eq!(GsoType::try_from(3), Err(Unknown(3)));
    }

    #[test]
    fn unknown_tx_flag_bits_are_kept_apart() {
        let raw = 0xfff4;
        let flags = NetTxFlags::from_bits_truncate(raw);
        assert_eq!(flags, NetTxFlags::MORE_DATA);
        assert_eq!(NetTxFlags::from_bits(raw), None);
    }

    #[test]
    fn rx_request_padding_is_zero_in_zero() {
        let mut r = RxRequest::ZERO;
        r.id = 0xffff;
        r.gref = 0xffff_ffff;
        assert_eq!(r.to_bytes(), [0xff, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn ctrl_request_image_is_id_type_then_three_words() {
        let r = CtrlRequest::new(0x0102, CtrlType::SetHashMapping, [7, 128, 0x0a0b_0c0d]);
        let b = r.to_bytes();
        assert_eq!(b[0..2], 0x0102u16.to_ne_bytes());
        assert_eq!(b[2..4], 6u16.to_ne_bytes());
        assert_eq!(b[4..8], 7u32.to_ne_bytes());
        assert_eq!(b[8..12], 128u32.to_ne_bytes());
        assert_eq!(b[12..16], 0x0a0b_0c0du32.to_ne_bytes());
        assert_eq!(CtrlRequest::from_bytes(&b), r);
    }

    #[test]
    fn ctrl_response_image_is_id_type_status_data() {
        let mut b = [0u8; CtrlResponse::SIZE];
        b[0..2].copy_from_slice(&9u16.to_ne_bytes());
        b[2..4].copy_from_slice(&4u16.to_ne_bytes());
        b[4..8].copy_from_slice(&3u32.to_ne_bytes());
        b[8..12].copy_from_slice(&128u32.to_ne_bytes());
        let r = CtrlResponse::from_bytes(&b);
        assert_eq!((r.id, r.ty, r.status, r.data), (9, 4, 3, 128));
        assert_eq!(CtrlType::try_from(r.ty), Ok(CtrlType::GetHashMappingSize));
        assert_eq!(
            CtrlStatus::try_from(r.status),
            Ok(CtrlStatus::BufferOverflow)
        );
        assert_eq!(r.to_bytes(), b);
    }

    #[test]
    fn ctrl_type_status_and_algorithm_unknown_values_are_rejected() {
        assert_eq!(CtrlType::try_from(0), Err(Unknown(0)));
        for raw in 11..=u16::MAX {
            assert_eq!(CtrlType::try_from(raw), Err(Unknown(raw)));
        }
        for raw in 1..=10u16 {
            assert_eq!(CtrlType::try_from(raw).map(u16::from), Ok(raw));
        }
        for raw in [4, 5, 0x8000_0000, u32::MAX] {
            assert_eq!(CtrlStatus::try_from(raw), Err(Unknown(raw)));
        }
        for raw in 0..=3u32 {
            assert_eq!(CtrlStatus::try_from(raw).map(u32::from), Ok(raw));
        }
        assert_eq!(HashAlgorithm::try_from(2), Err(Unknown(2)));
        assert_eq!(
            HashAlgorithm::try_from(1).map(u32::from),
            Ok(HashAlgorithm::Toeplitz as u32)
        );
    }

    #[test]
    fn unknown_hash_flag_bits_are_kept_apart() {
        assert_eq!(HashFlags::all().bits(), 0xf);
        assert_eq!(HashFlags::from_bits(0x1f), None);
        assert_eq!(
            HashFlags::from_bits_truncate(0xffff_fff5),
            HashFlags::IPV4 | HashFlags::IPV6
        );
    }
}
