//! vscsiif (`io/vscsiif.h`) negotiation: scatter-gather limits, the ring, and the LUN list.
//!
//! The backend offers `feature-sg-grant` (the most segments a request may describe through
//! granted pages of segment descriptors; absent or 0: only the [`SG_TABLESIZE`] direct
//! segments). The frontend writes `ring-ref` and `event-channel` (one page, one ring). LUNs
//! live under `vscsi-devs/dev-N/` with `v-dev` (`host:channel:target:lun`), `p-dev` and their
//! own `state`; adding or removing one goes through the Reconfiguring/Reconfigured round of
//! [`crate::xenbus`].

use super::{
    read_grant_ref, read_port, read_u32, write_decimal, FeatureError, KeyBuf, Keys, KeysMut,
    VALUE_MAX,
};
use crate::num::parse_u32;
use crate::xenbus::{parse_state, XenbusState};
use xen_sys::{GrantRef, Port};

/// Segments a request carries directly (`VSCSIIF_SG_TABLESIZE`).
pub const SG_TABLESIZE: u32 = xen_sys::wire::vscsiif::SG_TABLESIZE as u32;
/// Segment descriptors per granted page (`VSCSIIF_SG_PER_PAGE`).
pub const SG_PER_PAGE: u32 = xen_sys::wire::vscsiif::SG_PER_PAGE as u32;
// The `as` conversions above are of small compile-time constants; check they were lossless.
const _: () = assert!(SG_TABLESIZE as usize == xen_sys::wire::vscsiif::SG_TABLESIZE);
const _: () = assert!(SG_PER_PAGE as usize == xen_sys::wire::vscsiif::SG_PER_PAGE);

/// Largest `feature-sg-grant` the protocol allows.
pub const MAX_SG_GRANT: u32 = 65535;
/// Most segments one request can reach: every direct slot pointing at a page of descriptors.
pub const MAX_SEGMENTS: u32 = SG_TABLESIZE * SG_PER_PAGE;
/// Most LUNs we track per host.
pub const MAX_LUNS: u32 = 1024;

const K_SG_GRANT: &str = "feature-sg-grant";

/// What a backend offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackOffer {
    /// `feature-sg-grant`; 0 means not offered.
    pub sg_grant: u32,
}

impl BackOffer {
    /// Writes the offer (backend side).
    pub fn write<K: KeysMut + ?Sized>(&self, keys: &mut K) -> Result<(), FeatureError> {
        if self.sg_grant > 0 {
            write_decimal(keys, K_SG_GRANT, self.sg_grant)?;
        }
        Ok(())
    }

    /// Reads a backend's offer (frontend side). Values above [`MAX_SG_GRANT`] are refused;
    /// values from 1 to [`SG_TABLESIZE`] are raised to it, as Linux scsifront does (direct
    /// segments are always allowed).
    pub fn read<K: Keys + ?Sized>(keys: &mut K) -> Result<Self, FeatureError> {
        let sg_grant = read_u32(keys, K_SG_GRANT, K_SG_GRANT)?.unwrap_or(0);
        if sg_grant > MAX_SG_GRANT {
            return Err(FeatureError::OutOfRange(K_SG_GRANT));
        }
        let sg_grant = if sg_grant == 0 {
            0
        } else {
            sg_grant.max(SG_TABLESIZE)
        };
        Ok(Self { sg_grant })
    }

    /// The most segments per request a frontend wanting up to `ours` may use.
    pub fn max_segments(&self, ours: u32) -> u32 {
        let offered = if self.sg_grant == 0 {
            SG_TABLESIZE
        } else {
            self.sg_grant.min(MAX_SEGMENTS)
        };
        offered.min(ours).max(1)
    }

    /// Whether requests may use granted descriptor pages (`VSCSIIF_SG_GRANT`).
    pub fn indirect(&self, max_segments: u32) -> bool {
        self.sg_grant > 0 && max_segments > SG_TABLESIZE
    }
}

/// The frontend's ring and event channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontRing {
    /// `ring-ref`.
    pub ring_ref: GrantRef,
    /// `event-channel`.
    pub port: Port,
}

impl FrontRing {
    /// Writes the ring keys (frontend side).
    pub fn write<K: KeysMut + ?Sized>(&self, keys: &mut K) -> Result<(), FeatureError> {
        write_decimal(keys, "ring-ref", u32::from(self.ring_ref))?;
        write_decimal(keys, "event-channel", u32::from(self.port))
    }

    /// Reads the ring keys (backend side).
    pub fn read<K: Keys + ?Sized>(keys: &mut K) -> Result<Self, FeatureError> {
        Ok(Self {
            ring_ref: read_grant_ref(keys, "ring-ref", "ring-ref")?,
            port: read_port(keys, "event-channel", "event-channel")?
                .ok_or(FeatureError::Missing("event-channel"))?,
        })
    }
}

/// A SCSI address `host:channel:target:lun`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hctl {
    /// Host.
    pub host: u32,
    /// Channel (bus).
    pub channel: u32,
    /// Target id.
    pub target: u32,
    /// Logical unit.
    pub lun: u32,
}

impl Hctl {
    /// Parses `h:c:t:l`, four strict decimals.
    pub fn parse(text: &[u8]) -> Result<Self, FeatureError> {
        const NAME: &str = "v-dev";
        let mut parts = text.split(|&b| b == b':');
        let mut next = || -> Result<u32, FeatureError> {
            parse_u32(parts.next().ok_or(FeatureError::Malformed(NAME))?)
                .map_err(|_| FeatureError::Malformed(NAME))
        };
        let hctl = Self {
            host: next()?,
            channel: next()?,
            target: next()?,
            lun: next()?,
        };
        if parts.next().is_some() {
            return Err(FeatureError::Malformed(NAME));
        }
        Ok(hctl)
    }

    /// Writes `h:c:t:l` to `key`.
    pub fn write<K: KeysMut + ?Sized>(&self, keys: &mut K, key: &str) -> Result<(), FeatureError> {
        let text = KeyBuf::new(format_args!(
            "{}:{}:{}:{}",
            self.host, self.channel, self.target, self.lun
        ))?;
        Ok(keys.write(key, text.as_str().as_bytes())?)
    }
}

/// Parses a directory entry name `dev-N` of `vscsi-devs/` (N below [`MAX_LUNS`]).
pub fn parse_dev_name(name: &[u8]) -> Result<u32, FeatureError> {
    let digits = name
        .strip_prefix(b"dev-")
        .ok_or(FeatureError::Malformed("vscsi-devs"))?;
    let n = parse_u32(digits).map_err(|_| FeatureError::Malformed("vscsi-devs"))?;
    if n >= MAX_LUNS {
        return Err(FeatureError::OutOfRange("vscsi-devs"));
    }
    Ok(n)
}

/// One LUN entry as a frontend sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lun {
    /// N of `dev-N`.
    pub index: u32,
    /// `v-dev`: the address the frontend exposes.
    pub v_dev: Hctl,
    /// The entry's `state`.
    pub state: XenbusState,
}

/// Reads `vscsi-devs/dev-<index>/{v-dev,state}`.
pub fn read_lun<K: Keys + ?Sized>(keys: &mut K, index: u32) -> Result<Lun, FeatureError> {
    if index >= MAX_LUNS {
        return Err(FeatureError::OutOfRange("vscsi-devs"));
    }
    let mut buf = [0u8; VALUE_MAX];
    let key = KeyBuf::new(format_args!("vscsi-devs/dev-{index}/v-dev"))?;
    let v_dev = match keys.read(key.as_str(), &mut buf) {
        Ok(Some(v)) => Hctl::parse(v)?,
        Ok(None) => return Err(FeatureError::Missing("v-dev")),
        Err(crate::xs::Error::NoSpace) => return Err(FeatureError::Malformed("v-dev")),
        Err(e) => return Err(FeatureError::Store(e)),
    };
    let key = KeyBuf::new(format_args!("vscsi-devs/dev-{index}/state"))?;
    let state = match keys.read(key.as_str(), &mut buf) {
        Ok(Some(v)) => parse_state(v).map_err(|_| FeatureError::Malformed("state"))?,
        Ok(None) => return Err(FeatureError::Missing("state")),
        Err(crate::xs::Error::NoSpace) => return Err(FeatureError::Malformed("state")),
        Err(e) => return Err(FeatureError::Store(e)),
    };
    Ok(Lun {
        index,
        v_dev,
        state,
    })
}

/// Longest `p-dev` accepted (a WWN such as `naa.6001405000000001:0` or an `h:c:t:l`; the
/// XenStore value bound of this crate).
pub const P_DEV_MAX: usize = VALUE_MAX;

/// A backend LUN's `p-dev`: `<name>:<lun>`, where the name is a target-port WWN, a TPG alias or
/// `h:c:t` of a host SCSI device. Printable ASCII without spaces, at most [`P_DEV_MAX`] bytes,
/// a non-empty name and a strict decimal LUN after the last `:`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PDev {
    buf: [u8; P_DEV_MAX],
    len: usize,
    /// Where the last `:` is.
    colon: usize,
    lun: u32,
}

impl core::fmt::Debug for PDev {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = core::str::from_utf8(self.as_bytes()).unwrap_or("?");
        f.debug_tuple("PDev").field(&text).finish()
    }
}

impl PDev {
    /// Parses a `p-dev` value (see the type doc).
    pub fn parse(text: &[u8]) -> Result<Self, FeatureError> {
        const NAME: &str = "p-dev";
        if text.is_empty() || text.len() > P_DEV_MAX {
            return Err(FeatureError::Malformed(NAME));
        }
        if !text.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(FeatureError::Malformed(NAME));
        }
        let colon = text
            .iter()
            .rposition(|&b| b == b':')
            .ok_or(FeatureError::Malformed(NAME))?;
        if colon == 0 {
            return Err(FeatureError::Malformed(NAME));
        }
        let lun = parse_u32(text.get(colon + 1..).unwrap_or(&[]))
            .map_err(|_| FeatureError::Malformed(NAME))?;
        let mut buf = [0u8; P_DEV_MAX];
        buf.get_mut(..text.len())
            .ok_or(FeatureError::Malformed(NAME))?
            .copy_from_slice(text);
        Ok(Self {
            buf,
            len: text.len(),
            colon,
            lun,
        })
    }

    /// The whole value.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// The part before the last `:` (WWN, alias, or `h:c:t`).
    pub fn name(&self) -> &[u8] {
        self.buf.get(..self.colon).unwrap_or(&[])
    }

    /// The LUN after the last `:`.
    pub fn lun(&self) -> u32 {
        self.lun
    }
}

/// One LUN entry as a backend sees it: what [`read_lun`] reads, plus `p-dev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackLun {
    /// `v-dev` and `state`.
    pub lun: Lun,
    /// `p-dev`.
    pub p_dev: PDev,
}

/// Reads `vscsi-devs/dev-<index>/{v-dev,state,p-dev}` (backend side).
pub fn read_back_lun<K: Keys + ?Sized>(keys: &mut K, index: u32) -> Result<BackLun, FeatureError> {
    let lun = read_lun(keys, index)?;
    let mut buf = [0u8; VALUE_MAX];
    let key = KeyBuf::new(format_args!("vscsi-devs/dev-{index}/p-dev"))?;
    let p_dev = match keys.read(key.as_str(), &mut buf) {
        Ok(Some(v)) => PDev::parse(v)?,
        Ok(None) => return Err(FeatureError::Missing("p-dev")),
        Err(crate::xs::Error::NoSpace) => return Err(FeatureError::Malformed("p-dev")),
        Err(e) => return Err(FeatureError::Store(e)),
    };
    Ok(BackLun { lun, p_dev })
}

/// Writes `vscsi-devs/dev-<index>/state` (either side: each writes the entry in its own
/// directory).
pub fn write_lun_state<K: KeysMut + ?Sized>(
    keys: &mut K,
    index: u32,
    state: XenbusState,
) -> Result<(), FeatureError> {
    if index >= MAX_LUNS {
        return Err(FeatureError::OutOfRange("vscsi-devs"));
    }
    let key = KeyBuf::new(format_args!("vscsi-devs/dev-{index}/state"))?;
    write_decimal(keys, key.as_str(), state as u32)
}

#[cfg(test)]
mod tests {
    use super::super::testing::MapKeys;
    use super::*;

    fn offer(v: Option<&str>) -> Result<BackOffer, FeatureError> {
        match v {
            Some(v) => BackOffer::read(&mut MapKeys::with(&[(K_SG_GRANT, v)])),
            None => BackOffer::read(&mut MapKeys::default()),
        }
    }

    #[test]
    fn sg_grant_boundaries() {
        assert_eq!(offer(None).unwrap().max_segments(1000), 26);
        assert_eq!(offer(Some("0")).unwrap().max_segments(1000), 26);
        assert!(!offer(Some("0")).unwrap().indirect(26));
        assert_eq!(offer(Some("1")).unwrap().sg_grant, 26);
        assert_eq!(offer(Some("128")).unwrap().max_segments(1000), 128);
        assert!(offer(Some("128")).unwrap().indirect(128));
        assert_eq!(
            offer(Some("65535")).unwrap().max_segments(u32::MAX),
            MAX_SEGMENTS
        );
        assert_eq!(
            offer(Some("65536")),
            Err(FeatureError::OutOfRange(K_SG_GRANT))
        );
        assert_eq!(
            offer(Some("4294967296")),
            Err(FeatureError::Malformed(K_SG_GRANT))
        );
        assert_eq!(
            offer(Some("lots")),
            Err(FeatureError::Malformed(K_SG_GRANT))
        );
        assert_eq!(offer(Some("128")).unwrap().max_segments(0), 1);
    }

    #[test]
    fn ring_round_trip_and_checks() {
        let r = FrontRing {
            ring_ref: GrantRef::new(43),
            port: Port::new(20),
        };
        let mut k = MapKeys::default();
        r.write(&mut k).unwrap();
        assert_eq!(FrontRing::read(&mut k), Ok(r));
        assert_eq!(
            FrontRing::read(&mut MapKeys::with(&[("ring-ref", "43")])),
            Err(FeatureError::Missing("event-channel"))
        );
    }

    #[test]
    fn hctl_parsed_strictly() {
        assert_eq!(
            Hctl::parse(b"0:0:1:0"),
            Ok(Hctl {
                host: 0,
                channel: 0,
                target: 1,
                lun: 0
            })
        );
        for bad in [
            &b"0:0:1"[..],
            b"0:0:1:0:0",
            b"0:0:x:0",
            b"",
            b":::",
            b"0:0:1:-1",
            b"0:0:1:99999999999",
        ] {
            assert_eq!(
                Hctl::parse(bad),
                Err(FeatureError::Malformed("v-dev")),
                "{bad:?}"
            );
        }
        let mut k = MapKeys::default();
        Hctl {
            host: 1,
            channel: 2,
            target: 3,
            lun: 4,
        }
        .write(&mut k, "v-dev")
        .unwrap();
        assert_eq!(k.get("v-dev"), Some("1:2:3:4"));
    }

    #[test]
    fn lun_entries() {
        assert_eq!(parse_dev_name(b"dev-3"), Ok(3));
        assert_eq!(
            parse_dev_name(b"dev-"),
            Err(FeatureError::Malformed("vscsi-devs"))
        );
        assert_eq!(
            parse_dev_name(b"disk-3"),
            Err(FeatureError::Malformed("vscsi-devs"))
        );
        assert_eq!(
            parse_dev_name(b"dev-1024"),
            Err(FeatureError::OutOfRange("vscsi-devs"))
        );
        let mut k = MapKeys::with(&[
            ("vscsi-devs/dev-1/v-dev", "0:0:1:0"),
            ("vscsi-devs/dev-1/state", "5"),
        ]);
        assert_eq!(
            read_lun(&mut k, 1),
            Ok(Lun {
                index: 1,
                v_dev: Hctl {
                    host: 0,
                    channel: 0,
                    target: 1,
                    lun: 0
                },
                state: XenbusState::Closing
            })
        );
        let mut k = MapKeys::with(&[
            ("vscsi-devs/dev-1/v-dev", "0:0:1:0"),
            ("vscsi-devs/dev-1/state", "12"),
        ]);
        assert_eq!(read_lun(&mut k, 1), Err(FeatureError::Malformed("state")));
        assert_eq!(read_lun(&mut k, 2), Err(FeatureError::Missing("v-dev")));
    }
    #[test]
    fn p_dev_parsed_strictly() {
        let p = PDev::parse(b"naa.6001405000000001:0").unwrap();
        assert_eq!(p.name(), b"naa.6001405000000001");
        assert_eq!(p.lun(), 0);
        let p = PDev::parse(b"8:0:2:1").unwrap();
        assert_eq!((p.name(), p.lun()), (&b"8:0:2"[..], 1));
        for bad in [
            &b""[..],
            b":0",
            b"naa.1",
            b"naa.1:",
            b"naa.1:x",
            b"naa 1:0",
            b"naa.1:99999999999",
            &[b'a'; 65][..],
        ] {
            assert_eq!(
                PDev::parse(bad),
                Err(FeatureError::Malformed("p-dev")),
                "{bad:?}"
            );
        }
        let mut k = MapKeys::with(&[
            ("vscsi-devs/dev-0/v-dev", "0:0:0:0"),
            ("vscsi-devs/dev-0/state", "1"),
            ("vscsi-devs/dev-0/p-dev", "naa.1:3"),
        ]);
        let b = read_back_lun(&mut k, 0).unwrap();
        assert_eq!(b.p_dev.lun(), 3);
        assert_eq!(b.lun.state, XenbusState::Initialising);
        write_lun_state(&mut k, 0, XenbusState::Initialised).unwrap();
        assert_eq!(k.get("vscsi-devs/dev-0/state"), Some("3"));
    }
}
