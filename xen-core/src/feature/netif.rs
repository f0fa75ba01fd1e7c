//! netif (`io/netif.h`) negotiation: rx-copy, offloads, queues, split event channels, the
//! control ring, and the toolstack's `mac` and `mtu`.
//!
//! ```text
//! backend, before InitWait      BackOffer     feature-rx-copy, feature-sg, feature-gso-tcpv4/6,
//!                                             feature-ipv6-csum-offload, feature-no-csum-offload,
//!                                             feature-split-event-channels,
//!                                             multi-queue-max-queues, feature-ctrl-ring,
//!                                             feature-(dynamic-)multicast-control,
//!                                             feature-xdp-headroom
//! frontend, before Connected    FrontRequest  request-rx-copy, feature-rx-notify, feature-sg,
//!                                             feature-gso-tcpv4/6, feature-ipv6-csum-offload,
//!                                             feature-no-csum-offload, multi-queue-num-queues,
//!                                             request-multicast-control, xdp-headroom
//!                               + per queue   [queue-N/]tx-ring-ref, rx-ring-ref,
//!                                             event-channel | event-channel-tx + -rx
//!                               + if offered  ctrl-ring-ref, event-channel-ctrl (CtrlRing)
//! ```
//!
//! Offloads are per direction: what a side *writes* is what it can receive; what it may
//! *send* is what both wrote ([`Offload::both`]). Minimal peers work: QEMU's `xen_nic` offers
//! only rx-copy (everything else defaults off, one queue, one event channel); a frontend
//! without split event channels simply writes `event-channel`. Copying receive is required in
//! both directions (page flipping is long gone).
//!
//! The control ring (`feature-ctrl-ring`, which Linux's netback offers and its netfront never
//! uses) is one per device, not per queue: its two keys sit next to `multi-queue-num-queues`.
//! A frontend sets one up when [`wants_ctrl_ring`] says so and writes it with
//! [`write_ctrl_ring`] before it goes Connected; a backend reads it with [`read_ctrl_ring`].
//! What travels on it is `xen_netif::ctrl`'s. ([`BackOffer::default`] leaves it off: our
//! backend has no control ring to serve.)

use super::{
    read_bool, read_grant_ref, read_port, read_u32, write_bool, write_decimal, FeatureError,
    KeyBuf, Keys, KeysMut,
};
use xen_sys::{GrantRef, Port};

/// Most queues we accept on either side.
pub const MAX_QUEUES: u32 = 64;
/// Largest `xdp-headroom` a frontend may ask for (`XEN_NETIF_MAX_XDP_HEADROOM`).
pub const MAX_XDP_HEADROOM: u32 = 0x7fff;
/// Smallest MTU (`ETH_MIN_MTU`).
pub const MIN_MTU: u32 = 68;
/// Largest MTU (`XEN_NETIF_MAX_TX_SIZE`).
pub const MAX_MTU: u32 = 0xffff;
/// MTU when the toolstack sets none.
pub const DEFAULT_MTU: u32 = 1500;

const K_RX_COPY: &str = "feature-rx-copy";
const K_SG: &str = "feature-sg";
const K_GSO4: &str = "feature-gso-tcpv4";
const K_GSO6: &str = "feature-gso-tcpv6";
const K_CSUM6: &str = "feature-ipv6-csum-offload";
const K_NO_CSUM4: &str = "feature-no-csum-offload";
const K_SPLIT: &str = "feature-split-event-channels";
const K_MAX_QUEUES: &str = "multi-queue-max-queues";
const K_CTRL: &str = "feature-ctrl-ring";
const K_MCAST: &str = "feature-multicast-control";
const K_DMCAST: &str = "feature-dynamic-multicast-control";
const K_XDP: &str = "feature-xdp-headroom";
const K_REQ_RX_COPY: &str = "request-rx-copy";
const K_RX_NOTIFY: &str = "feature-rx-notify";
const K_NUM_QUEUES: &str = "multi-queue-num-queues";
const K_REQ_MCAST: &str = "request-multicast-control";
const K_XDP_HEADROOM: &str = "xdp-headroom";
const K_CTRL_REF: &str = "ctrl-ring-ref";
const K_CTRL_EVTCHN: &str = "event-channel-ctrl";

/// Offloads one side can *receive*.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// `feature-sg`: multi-slot packets.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// IPv4 checksum offload (on unless `feature-no-csum-offload` = 1).
    pub ipv4_csum: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_csum: bool,
}

impl Offload {
    /// Everything Linux netfront and netback support.
    pub const ALL: Self = Self {
        sg: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
        ipv4_csum: true,
        ipv6_csum: true,
    };

    /// What may be sent to a peer that wrote `peer`, if we can produce `ours`.
    pub fn both(ours: Self, peer: Self) -> Self {
        Self {
            sg: ours.sg && peer.sg,
            gso_tcpv4: ours.gso_tcpv4 && peer.gso_tcpv4 && ours.sg && peer.sg,
            gso_tcpv6: ours.gso_tcpv6 && peer.gso_tcpv6 && ours.sg && peer.sg,
            ipv4_csum: ours.ipv4_csum && peer.ipv4_csum,
            ipv6_csum: ours.ipv6_csum && peer.ipv6_csum,
        }
    }

    fn write<K: KeysMut + ?Sized>(&self, keys: &mut K) -> Result<(), FeatureError> {
        write_bool(keys, K_SG, self.sg)?;
        write_bool(keys, K_GSO4, self.gso_tcpv4)?;
        write_bool(keys, K_GSO6, self.gso_tcpv6)?;
        write_bool(keys, K_CSUM6, self.ipv6_csum)?;
        write_bool(keys, K_NO_CSUM4, !self.ipv4_csum)
    }

    fn read<K: Keys + ?Sized>(keys: &mut K) -> Result<Self, FeatureError> {
        Ok(Self {
            sg: read_bool(keys, K_SG, false)?,
            gso_tcpv4: read_bool(keys, K_GSO4, false)?,
            gso_tcpv6: read_bool(keys, K_GSO6, false)?,
            ipv4_csum: !read_bool(keys, K_NO_CSUM4, false)?,
            ipv6_csum: read_bool(keys, K_CSUM6, false)?,
        })
    }
}

/// What a backend offers before InitWait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackOffer {
    /// `feature-rx-copy`: required by us.
    pub rx_copy: bool,
    /// What the backend can receive from the frontend.
    pub offload: Offload,
    /// `feature-split-event-channels`.
    pub split_event_channels: bool,
    /// `multi-queue-max-queues` (default 1; 0 read as 1).
    pub max_queues: u32,
    /// `feature-ctrl-ring`.
    pub ctrl_ring: bool,
    /// `feature-multicast-control`.
    pub multicast_control: bool,
    /// `feature-dynamic-multicast-control`.
    pub dynamic_multicast_control: bool,
    /// `feature-xdp-headroom`.
    pub xdp_headroom: bool,
}

impl Default for BackOffer {
    /// What Linux netback offers, with one queue and without the control ring (which it offers
    /// too, but which a backend must then serve).
    fn default() -> Self {
        Self {
            rx_copy: true,
            offload: Offload::ALL,
            split_event_channels: true,
            max_queues: 1,
            ctrl_ring: false,
            multicast_control: true,
            dynamic_multicast_control: true,
            xdp_headroom: true,
        }
    }
}

impl BackOffer {
    /// Writes the offer (backend side).
    pub fn write<K: KeysMut + ?Sized>(&self, keys: &mut K) -> Result<(), FeatureError> {
        write_bool(keys, K_RX_COPY, self.rx_copy)?;
        self.offload.write(keys)?;
        write_bool(keys, K_SPLIT, self.split_event_channels)?;
        write_decimal(keys, K_MAX_QUEUES, self.max_queues)?;
        write_bool(keys, K_CTRL, self.ctrl_ring)?;
        write_bool(keys, K_MCAST, self.multicast_control)?;
        write_bool(keys, K_DMCAST, self.dynamic_multicast_control)?;
        write_bool(keys, K_XDP, self.xdp_headroom)
    }

    /// Reads a backend's offer (frontend side); absent keys mean "not offered".
    pub fn read<K: Keys + ?Sized>(keys: &mut K) -> Result<Self, FeatureError> {
        Ok(Self {
            rx_copy: read_bool(keys, K_RX_COPY, false)?,
            offload: Offload::read(keys)?,
            split_event_channels: read_bool(keys, K_SPLIT, false)?,
            max_queues: read_u32(keys, K_MAX_QUEUES, K_MAX_QUEUES)?
                .unwrap_or(1)
                .max(1),
            ctrl_ring: read_bool(keys, K_CTRL, false)?,
            multicast_control: read_bool(keys, K_MCAST, false)?,
            dynamic_multicast_control: read_bool(keys, K_DMCAST, false)?,
            xdp_headroom: read_bool(keys, K_XDP, false)?,
        })
    }
}

/// A frontend's own capabilities and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontLimits {
    /// Most queues we would use.
    pub max_queues: u32,
    /// Whether we would use split event channels.
    pub split_event_channels: bool,
    /// What we can receive (and would like to send).
    pub offload: Offload,
    /// Whether we want multicast filtering.
    pub multicast_control: bool,
    /// XDP headroom to ask for, if any.
    pub xdp_headroom: Option<u16>,
}

impl Default for FrontLimits {
    fn default() -> Self {
        Self {
            max_queues: 4,
            split_event_channels: true,
            offload: Offload::ALL,
            multicast_control: false,
            xdp_headroom: None,
        }
    }
}

/// What the frontend writes; the backend reads and checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontRequest {
    /// Queues (at least 1).
    pub num_queues: u32,
    /// Whether each queue has separate tx and rx event channels. When read by a backend, this
    /// says whether they are *allowed*; [`read_queue`] reports what each queue uses.
    pub split_event_channels: bool,
    /// What the frontend can receive.
    pub offload: Offload,
    /// `request-multicast-control`.
    pub multicast_control: bool,
    /// `xdp-headroom`.
    pub xdp_headroom: Option<u16>,
}

impl FrontRequest {
    /// The frontend's choice, and what it may transmit. Fails if the backend cannot copy
    /// received packets.
    pub fn negotiate(
        limits: &FrontLimits,
        offer: &BackOffer,
    ) -> Result<(Self, Offload), FeatureError> {
        if !offer.rx_copy {
            return Err(FeatureError::Unsupported(K_RX_COPY));
        }
        let request = Self {
            num_queues: limits.max_queues.min(offer.max_queues).clamp(1, MAX_QUEUES),
            split_event_channels: limits.split_event_channels && offer.split_event_channels,
            offload: limits.offload,
            multicast_control: limits.multicast_control
                && (offer.multicast_control || offer.dynamic_multicast_control),
            xdp_headroom: if offer.xdp_headroom {
                limits.xdp_headroom
            } else {
                None
            },
        };
        Ok((request, Offload::both(limits.offload, offer.offload)))
    }

    /// Writes the request (frontend side; rings and channels go with [`write_queue`]).
    pub fn write<K: KeysMut + ?Sized>(&self, keys: &mut K) -> Result<(), FeatureError> {
        write_bool(keys, K_REQ_RX_COPY, true)?;
        write_bool(keys, K_RX_NOTIFY, true)?;
        self.offload.write(keys)?;
        if self.num_queues > 1 {
            write_decimal(keys, K_NUM_QUEUES, self.num_queues)?;
        }
        if self.multicast_control {
            write_bool(keys, K_REQ_MCAST, true)?;
        }
        if let Some(h) = self.xdp_headroom {
            write_decimal(keys, K_XDP_HEADROOM, h)?;
        }
        Ok(())
    }

    /// Reads and checks a frontend's request against our offer (backend side), returning it
    /// and what the backend may send to this frontend.
    pub fn read<K: Keys + ?Sized>(
        keys: &mut K,
        offer: &BackOffer,
    ) -> Result<(Self, Offload), FeatureError> {
        if !read_bool(keys, K_REQ_RX_COPY, false)? {
            return Err(FeatureError::Unsupported(K_REQ_RX_COPY));
        }
        let num_queues = read_u32(keys, K_NUM_QUEUES, K_NUM_QUEUES)?.unwrap_or(1);
        if num_queues == 0 || num_queues > offer.max_queues.min(MAX_QUEUES) {
            return Err(FeatureError::OutOfRange(K_NUM_QUEUES));
        }
        let offload = Offload::read(keys)?;
        let multicast_control = read_bool(keys, K_REQ_MCAST, false)?
            && (offer.multicast_control || offer.dynamic_multicast_control);
        let xdp_headroom = match read_u32(keys, K_XDP_HEADROOM, K_XDP_HEADROOM)? {
            Some(_) if !offer.xdp_headroom => return Err(FeatureError::Unsupported(K_XDP)),
            Some(h) if h > MAX_XDP_HEADROOM => {
                return Err(FeatureError::OutOfRange(K_XDP_HEADROOM))
            }
            Some(h) => {
                Some(u16::try_from(h).map_err(|_| FeatureError::OutOfRange(K_XDP_HEADROOM))?)
            }
            None => None,
        };
        let request = Self {
            num_queues,
            split_event_channels: offer.split_event_channels,
            offload,
            multicast_control,
            xdp_headroom,
        };
        Ok((request, Offload::both(offer.offload, offload)))
    }
}

/// A queue's event channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    /// One channel for both directions (`event-channel`).
    Shared(Port),
    /// `event-channel-tx` and `event-channel-rx`.
    Split {
        /// Transmit notifications.
        tx: Port,
        /// Receive notifications.
        rx: Port,
    },
}

/// One queue's rings and channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRings {
    /// `tx-ring-ref`.
    pub tx_ref: GrantRef,
    /// `rx-ring-ref`.
    pub rx_ref: GrantRef,
    /// Event channels.
    pub channels: Channels,
}

fn check_queue(req: &FrontRequest, queue: u32) -> Result<(), FeatureError> {
    if queue >= req.num_queues {
        return Err(FeatureError::OutOfRange(K_NUM_QUEUES));
    }
    Ok(())
}

/// Writes one queue's rings and channels (frontend side); split channels only if negotiated.
pub fn write_queue<K: KeysMut + ?Sized>(
    keys: &mut K,
    req: &FrontRequest,
    queue: u32,
    rings: &QueueRings,
) -> Result<(), FeatureError> {
    check_queue(req, queue)?;
    let n = req.num_queues;
    write_decimal(
        keys,
        KeyBuf::queued(queue, n, "tx-ring-ref")?.as_str(),
        u32::from(rings.tx_ref),
    )?;
    write_decimal(
        keys,
        KeyBuf::queued(queue, n, "rx-ring-ref")?.as_str(),
        u32::from(rings.rx_ref),
    )?;
    match rings.channels {
        Channels::Shared(p) => write_decimal(
            keys,
            KeyBuf::queued(queue, n, "event-channel")?.as_str(),
            u32::from(p),
        ),
        Channels::Split { .. } if !req.split_event_channels => {
            Err(FeatureError::Unsupported(K_SPLIT))
        }
        Channels::Split { tx, rx } => {
            write_decimal(
                keys,
                KeyBuf::queued(queue, n, "event-channel-tx")?.as_str(),
                u32::from(tx),
            )?;
            write_decimal(
                keys,
                KeyBuf::queued(queue, n, "event-channel-rx")?.as_str(),
                u32::from(rx),
            )
        }
    }
}

/// Reads one queue's rings and channels (backend side). Split channels are accepted only if
/// offered, and then both must be present.
pub fn read_queue<K: Keys + ?Sized>(
    keys: &mut K,
    req: &FrontRequest,
    queue: u32,
) -> Result<QueueRings, FeatureError> {
    check_queue(req, queue)?;
    let n = req.num_queues;
    let tx_ref = read_grant_ref(
        keys,
        KeyBuf::queued(queue, n, "tx-ring-ref")?.as_str(),
        "tx-ring-ref",
    )?;
    let rx_ref = read_grant_ref(
        keys,
        KeyBuf::queued(queue, n, "rx-ring-ref")?.as_str(),
        "rx-ring-ref",
    )?;
    let tx = read_port(
        keys,
        KeyBuf::queued(queue, n, "event-channel-tx")?.as_str(),
        "event-channel-tx",
    )?;
    let channels = match tx {
        Some(_) if !req.split_event_channels => return Err(FeatureError::Unsupported(K_SPLIT)),
        Some(tx) => {
            let rx = read_port(
                keys,
                KeyBuf::queued(queue, n, "event-channel-rx")?.as_str(),
                "event-channel-rx",
            )?
            .ok_or(FeatureError::Missing("event-channel-rx"))?;
            Channels::Split { tx, rx }
        }
        None => Channels::Shared(
            read_port(
                keys,
                KeyBuf::queued(queue, n, "event-channel")?.as_str(),
                "event-channel",
            )?
            .ok_or(FeatureError::Missing("event-channel"))?,
        ),
    };
    Ok(QueueRings {
        tx_ref,
        rx_ref,
        channels,
    })
}

/// The control ring a frontend provides: one page granted to the backend, and its own event
/// channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtrlRing {
    /// `ctrl-ring-ref`.
    pub ring_ref: GrantRef,
    /// `event-channel-ctrl`.
    pub port: Port,
}

/// Whether a frontend should set up a control ring: the backend offers one and there is more
/// than one queue to steer received packets between (all the ring is used for so far).
pub fn wants_ctrl_ring(offer: &BackOffer, req: &FrontRequest) -> bool {
    offer.ctrl_ring && req.num_queues > 1
}

/// Writes the control ring's keys (frontend side); refused unless the backend offered
/// `feature-ctrl-ring`.
pub fn write_ctrl_ring<K: KeysMut + ?Sized>(
    keys: &mut K,
    offer: &BackOffer,
    ring: &CtrlRing,
) -> Result<(), FeatureError> {
    if !offer.ctrl_ring {
        return Err(FeatureError::Unsupported(K_CTRL));
    }
    write_decimal(keys, K_CTRL_REF, u32::from(ring.ring_ref))?;
    write_decimal(keys, K_CTRL_EVTCHN, u32::from(ring.port))
}

/// Reads a frontend's control ring (backend side): `None` if it wrote no `ctrl-ring-ref`.
/// A ring we did not offer is refused; a ring needs its event channel (not port 0).
pub fn read_ctrl_ring<K: Keys + ?Sized>(
    keys: &mut K,
    offer: &BackOffer,
) -> Result<Option<CtrlRing>, FeatureError> {
    let Some(raw) = read_u32(keys, K_CTRL_REF, K_CTRL_REF)? else {
        return Ok(None);
    };
    if !offer.ctrl_ring {
        return Err(FeatureError::Unsupported(K_CTRL));
    }
    let port = read_port(keys, K_CTRL_EVTCHN, K_CTRL_EVTCHN)?
        .ok_or(FeatureError::Missing(K_CTRL_EVTCHN))?;
    Ok(Some(CtrlRing {
        ring_ref: GrantRef::new(raw),
        port,
    }))
}

/// An Ethernet address from the toolstack's `mac` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Parses `xx:xx:xx:xx:xx:xx` (hex, either case). Multicast and all-zero addresses are
    /// refused, as a NIC cannot own them.
    pub fn parse(text: &[u8]) -> Result<Self, FeatureError> {
        const NAME: &str = "mac";
        if text.len() != 17 {
            return Err(FeatureError::Malformed(NAME));
        }
        let hex = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut mac = [0u8; 6];
        for (i, (octet, chunk)) in mac.iter_mut().zip(text.chunks(3)).enumerate() {
            let (hi, lo) = match chunk {
                [h, l] if i == 5 => (*h, *l),
                [h, l, b':'] if i < 5 => (*h, *l),
                _ => return Err(FeatureError::Malformed(NAME)),
            };
            *octet = (hex(hi).ok_or(FeatureError::Malformed(NAME))? << 4)
                | hex(lo).ok_or(FeatureError::Malformed(NAME))?;
        }
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(FeatureError::OutOfRange(NAME));
        }
        Ok(Self(mac))
    }

    /// Reads the `mac` key (required).
    pub fn read<K: Keys + ?Sized>(keys: &mut K) -> Result<Self, FeatureError> {
        let mut buf = [0u8; super::VALUE_MAX];
        match keys.read("mac", &mut buf) {
            Ok(Some(v)) => Self::parse(v),
            Ok(None) => Err(FeatureError::Missing("mac")),
            Err(crate::xs::Error::NoSpace) => Err(FeatureError::Malformed("mac")),
            Err(e) => Err(FeatureError::Store(e)),
        }
    }
}

/// Reads the toolstack's `mtu` ([`DEFAULT_MTU`] when absent; [`MIN_MTU`]..=[`MAX_MTU`]).
pub fn read_mtu<K: Keys + ?Sized>(keys: &mut K) -> Result<u32, FeatureError> {
    let mtu = read_u32(keys, "mtu", "mtu")?.unwrap_or(DEFAULT_MTU);
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(FeatureError::OutOfRange("mtu"));
    }
    Ok(mtu)
}

#[cfg(test)]
mod tests {
    use super::super::testing::MapKeys;
    use super::*;

    #[test]
    fn qemu_xen_nic_offers_only_rx_copy() {
        let offer = BackOffer::read(&mut MapKeys::with(&[("feature-rx-copy", "1")])).unwrap();
        let (req, tx) = FrontRequest::negotiate(&FrontLimits::default(), &offer).unwrap();
        assert_eq!(req.num_queues, 1);
        assert!(!req.split_event_channels);
        assert_eq!(
            tx,
            Offload {
                ipv4_csum: true,
                ..Offload::default()
            }
        );
        let mut k = MapKeys::default();
        req.write(&mut k).unwrap();
        write_queue(
            &mut k,
            &req,
            0,
            &QueueRings {
                tx_ref: GrantRef::new(8),
                rx_ref: GrantRef::new(9),
                channels: Channels::Shared(Port::new(4)),
            },
        )
        .unwrap();
        assert_eq!(k.get("event-channel"), Some("4"));
        assert_eq!(k.get("request-rx-copy"), Some("1"));
        assert_eq!(k.get("multi-queue-num-queues"), None);
        // And the frontend may not use split channels it did not negotiate.
        let split = QueueRings {
            tx_ref: GrantRef::new(8),
            rx_ref: GrantRef::new(9),
            channels: Channels::Split {
                tx: Port::new(4),
                rx: Port::new(5),
            },
        };
        assert_eq!(
            write_queue(&mut k, &req, 0, &split),
            Err(FeatureError::Unsupported(K_SPLIT))
        );
    }

    #[test]
    fn backend_without_rx_copy_refused() {
        let offer = BackOffer::read(&mut MapKeys::default()).unwrap();
        assert_eq!(
            FrontRequest::negotiate(&FrontLimits::default(), &offer),
            Err(FeatureError::Unsupported(K_RX_COPY))
        );
    }

    #[test]
    fn multi_queue_split_round_trip() {
        let offer = BackOffer {
            max_queues: 8,
            ..BackOffer::default()
        };
        let (req, tx) = FrontRequest::negotiate(&FrontLimits::default(), &offer).unwrap();
        assert_eq!((req.num_queues, req.split_event_channels), (4, true));
        assert_eq!(tx, Offload::ALL);
        let mut k = MapKeys::default();
        req.write(&mut k).unwrap();
        for q in 0..4 {
            let rings = QueueRings {
                tx_ref: GrantRef::new(10 + q),
                rx_ref: GrantRef::new(20 + q),
                channels: Channels::Split {
                    tx: Port::new(30 + q),
                    rx: Port::new(40 + q),
                },
            };
            write_queue(&mut k, &req, q, &rings).unwrap();
        }
        assert_eq!(k.get("queue-3/event-channel-rx"), Some("43"));
        let (back, _) = FrontRequest::read(&mut k, &offer).unwrap();
        assert_eq!(back.num_queues, 4);
        assert_eq!(
            read_queue(&mut k, &back, 2).unwrap().channels,
            Channels::Split {
                tx: Port::new(32),
                rx: Port::new(42)
            }
        );
    }

    #[test]
    fn zero_or_too_many_queues_refused_by_backend() {
        let offer = BackOffer {
            max_queues: 2,
            ..BackOffer::default()
        };
        for n in ["0", "3", "99999999999"] {
            let mut k = MapKeys::with(&[("request-rx-copy", "1"), ("multi-queue-num-queues", n)]);
            assert!(FrontRequest::read(&mut k, &offer).is_err(), "{n}");
        }
        let o = BackOffer::read(&mut MapKeys::with(&[
            ("feature-rx-copy", "1"),
            (K_MAX_QUEUES, "0"),
        ]))
        .unwrap();
        assert_eq!(o.max_queues, 1);
    }

    #[test]
    fn frontend_without_rx_copy_refused() {
        let mut k = MapKeys::default();
        assert_eq!(
            FrontRequest::read(&mut k, &BackOffer::default()),
            Err(FeatureError::Unsupported(K_REQ_RX_COPY))
        );
        let mut k = MapKeys::with(&[("request-rx-copy", "yes")]);
        assert_eq!(
            FrontRequest::read(&mut k, &BackOffer::default()),
            Err(FeatureError::Malformed(K_REQ_RX_COPY))
        );
    }

    #[test]
    fn split_channels_need_offer_and_both_ports() {
        let req = FrontRequest {
            num_queues: 1,
            split_event_channels: false,
            offload: Offload::ALL,
            multicast_control: false,
            xdp_headroom: None,
        };
        let mut k = MapKeys::with(&[
            ("tx-ring-ref", "8"),
            ("rx-ring-ref", "9"),
            ("event-channel-tx", "3"),
            ("event-channel-rx", "4"),
        ]);
        assert_eq!(
            read_queue(&mut k, &req, 0),
            Err(FeatureError::Unsupported(K_SPLIT))
        );
        let req = FrontRequest {
            split_event_channels: true,
            ..req
        };
        let mut k = MapKeys::with(&[
            ("tx-ring-ref", "8"),
            ("rx-ring-ref", "9"),
            ("event-channel-tx", "3"),
        ]);
        assert_eq!(
            read_queue(&mut k, &req, 0),
            Err(FeatureError::Missing("event-channel-rx"))
        );
        let mut k = MapKeys::with(&[("tx-ring-ref", "8"), ("rx-ring-ref", "9")]);
        assert_eq!(
            read_queue(&mut k, &req, 0),
            Err(FeatureError::Missing("event-channel"))
        );
    }

    #[test]
    fn gso_requires_sg() {
        let no_sg = Offload {
            sg: false,
            ..Offload::ALL
        };
        let b = Offload::both(Offload::ALL, no_sg);
        assert!(!b.gso_tcpv4 && !b.gso_tcpv6 && !b.sg);
    }

    #[test]
    fn xdp_headroom_bounded() {
        let mut k = MapKeys::with(&[("request-rx-copy", "1"), ("xdp-headroom", "32768")]);
        assert_eq!(
            FrontRequest::read(&mut k, &BackOffer::default()),
            Err(FeatureError::OutOfRange(K_XDP_HEADROOM))
        );
        let mut k = MapKeys::with(&[("request-rx-copy", "1"), ("xdp-headroom", "256")]);
        assert_eq!(
            FrontRequest::read(&mut k, &BackOffer::default())
                .unwrap()
                .0
                .xdp_headroom,
            Some(256)
        );
    }

    #[test]
    fn mac_and_mtu_parsed_strictly() {
        assert_eq!(
            MacAddr::parse(b"00:16:3e:Aa:0b:ff"),
            Ok(MacAddr([0, 0x16, 0x3e, 0xaa, 0x0b, 0xff]))
        );
        for bad in [
            &b"00:16:3e:aa:0b"[..],
            b"00:16:3e:aa:0b:ff:",
            b"00-16-3e-aa-0b-ff",
            b"0g:16:3e:aa:0b:ff",
            b"",
            b"00:16:3e:aa:0b:f ",
        ] {
            assert_eq!(
                MacAddr::parse(bad),
                Err(FeatureError::Malformed("mac")),
                "{bad:?}"
            );
        }
        assert_eq!(
            MacAddr::parse(b"01:00:5e:00:00:01"),
            Err(FeatureError::OutOfRange("mac"))
        );
        assert_eq!(
            MacAddr::parse(b"00:00:00:00:00:00"),
            Err(FeatureError::OutOfRange("mac"))
        );
        assert_eq!(read_mtu(&mut MapKeys::default()), Ok(1500));
        assert_eq!(read_mtu(&mut MapKeys::with(&[("mtu", "9000")])), Ok(9000));
        assert_eq!(
            read_mtu(&mut MapKeys::with(&[("mtu", "67")])),
            Err(FeatureError::OutOfRange("mtu"))
        );
        assert_eq!(
            read_mtu(&mut MapKeys::with(&[("mtu", "65536")])),
            Err(FeatureError::OutOfRange("mtu"))
        );
        assert_eq!(
            read_mtu(&mut MapKeys::with(&[("mtu", "15OO")])),
            Err(FeatureError::Malformed("mtu"))
        );
    }

    fn ctrl_offer() -> BackOffer {
        BackOffer {
            ctrl_ring: true,
            max_queues: 4,
            ..BackOffer::default()
        }
    }

    #[test]
    fn backend_offer_of_ctrl_ring_is_read() {
        // What Linux's netback writes.
        let on = BackOffer::read(&mut MapKeys::with(&[
            ("feature-rx-copy", "1"),
            ("feature-ctrl-ring", "1"),
        ]))
        .unwrap();
        assert!(on.ctrl_ring);
        let off = BackOffer::read(&mut MapKeys::with(&[("feature-rx-copy", "1")])).unwrap();
        assert!(!off.ctrl_ring);
        assert_eq!(
            BackOffer::read(&mut MapKeys::with(&[
                ("feature-rx-copy", "1"),
                ("feature-ctrl-ring", "true"),
            ])),
            Err(FeatureError::Malformed(K_CTRL))
        );
        let mut k = MapKeys::default();
        ctrl_offer().write(&mut k).unwrap();
        assert_eq!(k.get("feature-ctrl-ring"), Some("1"));
    }

    #[test]
    fn ctrl_ring_wanted_only_if_offered_and_multi_queue() {
        let limits = FrontLimits::default();
        let (req, _) = FrontRequest::negotiate(&limits, &ctrl_offer()).unwrap();
        assert_eq!(req.num_queues, 4);
        assert!(wants_ctrl_ring(&ctrl_offer(), &req));
        let not_offered = BackOffer {
            ctrl_ring: false,
            ..ctrl_offer()
        };
        assert!(!wants_ctrl_ring(&not_offered, &req));
        let one = BackOffer {
            max_queues: 1,
            ..ctrl_offer()
        };
        let (req1, _) = FrontRequest::negotiate(&limits, &one).unwrap();
        assert!(!wants_ctrl_ring(&one, &req1));
    }

    #[test]
    fn ctrl_ring_keys_round_trip() {
        let ring = CtrlRing {
            ring_ref: GrantRef::new(77),
            port: Port::new(9),
        };
        let mut k = MapKeys::default();
        write_ctrl_ring(&mut k, &ctrl_offer(), &ring).unwrap();
        assert_eq!(k.get("ctrl-ring-ref"), Some("77"));
        assert_eq!(k.get("event-channel-ctrl"), Some("9"));
        assert_eq!(read_ctrl_ring(&mut k, &ctrl_offer()), Ok(Some(ring)));
        // No ring written: none read.
        assert_eq!(
            read_ctrl_ring(&mut MapKeys::default(), &ctrl_offer()),
            Ok(None)
        );
    }

    #[test]
    fn ctrl_ring_not_offered_is_neither_written_nor_accepted() {
        let ring = CtrlRing {
            ring_ref: GrantRef::new(77),
            port: Port::new(9),
        };
        let not_offered = BackOffer::default();
        let mut k = MapKeys::default();
        assert_eq!(
            write_ctrl_ring(&mut k, &not_offered, &ring),
            Err(FeatureError::Unsupported(K_CTRL))
        );
        assert_eq!(k.get("ctrl-ring-ref"), None);
        let mut k = MapKeys::with(&[("ctrl-ring-ref", "77"), ("event-channel-ctrl", "9")]);
        assert_eq!(
            read_ctrl_ring(&mut k, &not_offered),
            Err(FeatureError::Unsupported(K_CTRL))
        );
    }

    #[test]
    fn ctrl_ring_needs_a_valid_ref_and_port() {
        let o = ctrl_offer();
        let mut k = MapKeys::with(&[("ctrl-ring-ref", "77")]);
        assert_eq!(
            read_ctrl_ring(&mut k, &o),
            Err(FeatureError::Missing(K_CTRL_EVTCHN))
        );
        let mut k = MapKeys::with(&[("ctrl-ring-ref", "77"), ("event-channel-ctrl", "0")]);
        assert_eq!(
            read_ctrl_ring(&mut k, &o),
            Err(FeatureError::OutOfRange(K_CTRL_EVTCHN))
        );
        for bad in ["", "-1", "0x10", "4294967296", "7 "] {
            let mut k = MapKeys::with(&[("ctrl-ring-ref", bad), ("event-channel-ctrl", "9")]);
            assert_eq!(
                read_ctrl_ring(&mut k, &o),
                Err(FeatureError::Malformed(K_CTRL_REF)),
                "{bad:?}"
            );
        }
        let mut k = MapKeys::with(&[("ctrl-ring-ref", "77"), ("event-channel-ctrl", "nine")]);
        assert_eq!(
            read_ctrl_ring(&mut k, &o),
            Err(FeatureError::Malformed(K_CTRL_EVTCHN))
        );
    }
}
