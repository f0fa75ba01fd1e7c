//! Typed feature negotiation for blkif, netif and vscsiif over XenStore keys.
//!
//! Each protocol module describes, as plain structs, what each end writes into its own device
//! directory and how the two are combined:
//!
//! * the backend's *offer* (written before InitWait), read and validated by the frontend;
//! * the frontend's *request* (negotiated from the offer and its own limits, written with its
//!   ring references before Initialised), read and validated by the backend against its offer;
//! * device properties the backend writes when connecting.
//!
//! Every value read comes from the peer, so it is bounded (at most [`VALUE_MAX`] bytes),
//! parsed strictly (decimal digits only; booleans are `0` or `1`), checked against the
//! protocol's limits and ours, and defaulted when absent as the protocol headers specify.
//! Malformed or out-of-range values are typed errors ([`FeatureError`]) naming the key, never a
//! silent guess. The modules read and write through the small [`Keys`] and [`KeysMut`]
//! traits, which [`StoreDir`] implements for any [`XenStore`] directory and tests implement
//! with a map.

pub mod blkif;
pub mod netif;
pub mod vscsiif;

use core::fmt::{self, Write as _};

use crate::num::{parse_u32, parse_u64, Decimal};
use crate::xs::{self, Errno, Path, PathBuf, TxId, XenStore};
use xen_sys::{GrantRef, Port};

/// Longest value the negotiation code reads; anything longer is malformed.
pub const VALUE_MAX: usize = 64;

/// Why negotiation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureError {
    /// A key the protocol requires is absent.
    Missing(&'static str),
    /// A key holds text that is not a valid value for it (not decimal, not `0`/`1`, too long).
    Malformed(&'static str),
    /// A value is outside what the protocol or our side allows.
    OutOfRange(&'static str),
    /// Values contradict each other.
    Inconsistent(&'static str),
    /// The peer lacks something we require, or asks for something we do not do.
    Unsupported(&'static str),
    /// XenStore failed.
    Store(xs::Error),
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(k) => write!(f, "missing key {k}"),
            Self::Malformed(k) => write!(f, "malformed value for {k}"),
            Self::OutOfRange(k) => write!(f, "value out of range for {k}"),
            Self::Inconsistent(k) => write!(f, "inconsistent value for {k}"),
            Self::Unsupported(k) => write!(f, "unsupported: {k}"),
            Self::Store(e) => write!(f, "xenstore: {e}"),
        }
    }
}

impl From<xs::Error> for FeatureError {
    fn from(e: xs::Error) -> Self {
        Self::Store(e)
    }
}

impl xs::TransactionError for FeatureError {
    fn is_eagain(&self) -> bool {
        matches!(self, Self::Store(e) if xs::TransactionError::is_eagain(e))
    }
}

/// Read access to one device directory (keys are relative, e.g. `queue-0/ring-ref`).
pub trait Keys {
    /// Reads `key` into `buf`: `Ok(None)` if absent; [`xs::Error::NoSpace`] if longer than `buf`.
    fn read<'b>(&mut self, key: &str, buf: &'b mut [u8]) -> Result<Option<&'b [u8]>, xs::Error>;
}

/// Write access to one device directory.
pub trait KeysMut {
    /// Writes `value` at `key`.
    fn write(&mut self, key: &str, value: &[u8]) -> Result<(), xs::Error>;
}

/// Longest device key path [`StoreDir`] builds (e.g.
/// `/local/domain/0/backend/vbd/12/51712/queue-3/ring-ref15`). Kept well below XenStore's 3072
/// bytes: the path is built on the stack, and kernel stacks are 16 KiB. A longer path is
/// refused with [`xs::Error::NoSpace`].
pub const KEY_PATH_MAX: usize = 256;

/// A XenStore directory seen as [`Keys`]/[`KeysMut`], inside transaction `tx` (or none).
pub struct StoreDir<'a, S: XenStore + ?Sized> {
    store: &'a mut S,
    dir: Path<'a>,
    tx: TxId,
}

impl<'a, S: XenStore + ?Sized> StoreDir<'a, S> {
    /// The directory `dir` of `store`.
    pub fn new(store: &'a mut S, dir: Path<'a>, tx: TxId) -> Self {
        Self { store, dir, tx }
    }

    fn key_path(&self, key: &str) -> Result<PathBuf<KEY_PATH_MAX>, xs::Error> {
        let mut p = PathBuf::from_path(self.dir)?;
        p.join(key)?;
        Ok(p)
    }
}

impl<S: XenStore + ?Sized> Keys for StoreDir<'_, S> {
    fn read<'b>(&mut self, key: &str, buf: &'b mut [u8]) -> Result<Option<&'b [u8]>, xs::Error> {
        let path = self.key_path(key)?;
        match self.store.read(self.tx, path.as_path()?, buf) {
            Ok(n) => Ok(Some(buf.get(..n).ok_or(xs::Error::NoSpace)?)),
            Err(xs::Error::Daemon(Errno::Enoent)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<S: XenStore + ?Sized> KeysMut for StoreDir<'_, S> {
    fn write(&mut self, key: &str, value: &[u8]) -> Result<(), xs::Error> {
        let path = self.key_path(key)?;
        self.store.write(self.tx, path.as_path()?, value)
    }
}

/// A key name built in place, such as `queue-3/ring-ref12`.
#[derive(Clone, Copy)]
pub struct KeyBuf {
    buf: [u8; 48],
    len: usize,
}

impl KeyBuf {
    /// Formats `args` into a key.
    pub fn new(args: fmt::Arguments<'_>) -> Result<Self, xs::Error> {
        let mut k = Self {
            buf: [0; 48],
            len: 0,
        };
        k.write_fmt(args).map_err(|_| xs::Error::NoSpace)?;
        Ok(k)
    }

    /// `key`, or `queue-<q>/key` when the device uses several queues.
    pub fn queued(queue: u32, num_queues: u32, key: &str) -> Result<Self, xs::Error> {
        if num_queues > 1 {
            Self::new(format_args!("queue-{queue}/{key}"))
        } else {
            Self::new(format_args!("{key}"))
        }
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl fmt::Write for KeyBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Reads a key's raw value (bounded by [`VALUE_MAX`]) and hands it to `parse`.
fn read_with<K: Keys + ?Sized, T>(
    keys: &mut K,
    key: &str,
    name: &'static str,
    parse: impl FnOnce(&[u8]) -> Option<T>,
) -> Result<Option<T>, FeatureError> {
    let mut buf = [0u8; VALUE_MAX];
    match keys.read(key, &mut buf) {
        Ok(None) => Ok(None),
        Ok(Some(v)) => parse(v).map(Some).ok_or(FeatureError::Malformed(name)),
        Err(xs::Error::NoSpace) => Err(FeatureError::Malformed(name)),
        Err(e) => Err(FeatureError::Store(e)),
    }
}

/// Reads an optional decimal `u32`.
pub fn read_u32<K: Keys + ?Sized>(
    keys: &mut K,
    key: &str,
    name: &'static str,
) -> Result<Option<u32>, FeatureError> {
    read_with(keys, key, name, |v| parse_u32(v).ok())
}

/// Reads an optional decimal `u64`.
pub fn read_u64<K: Keys + ?Sized>(
    keys: &mut K,
    key: &str,
    name: &'static str,
) -> Result<Option<u64>, FeatureError> {
    read_with(keys, key, name, |v| parse_u64(v).ok())
}

/// Reads a boolean (`0` or `1`; anything else is malformed), `default` when absent.
pub fn read_bool<K: Keys + ?Sized>(
    keys: &mut K,
    key: &'static str,
    default: bool,
) -> Result<bool, FeatureError> {
    let v = read_with(keys, key, key, |v| match v {
        b"0" => Some(false),
        b"1" => Some(true),
        _ => None,
    })?;
    Ok(v.unwrap_or(default))
}

/// Reads a required grant reference.
pub fn read_grant_ref<K: Keys + ?Sized>(
    keys: &mut K,
    key: &str,
    name: &'static str,
) -> Result<GrantRef, FeatureError> {
    read_u32(keys, key, name)?
        .map(GrantRef::new)
        .ok_or(FeatureError::Missing(name))
}

/// Reads an optional event-channel port; port 0 is never valid.
pub fn read_port<K: Keys + ?Sized>(
    keys: &mut K,
    key: &str,
    name: &'static str,
) -> Result<Option<Port>, FeatureError> {
    match read_u32(keys, key, name)? {
        None => Ok(None),
        Some(0) => Err(FeatureError::OutOfRange(name)),
        Some(p) => Ok(Some(Port::new(p))),
    }
}

/// Writes a decimal value.
pub fn write_decimal<K: KeysMut + ?Sized>(
    keys: &mut K,
    key: &str,
    value: impl Into<u64>,
) -> Result<(), FeatureError> {
    Ok(keys.write(key, Decimal::new(value).as_bytes())?)
}

/// Writes a boolean as `0`/`1`.
pub fn write_bool<K: KeysMut + ?Sized>(
    keys: &mut K,
    key: &str,
    value: bool,
) -> Result<(), FeatureError> {
    Ok(keys.write(key, if value { b"1" } else { b"0" })?)
}

#[cfg(test)]
pub(crate) mod testing {
    //! A map-backed key directory for unit tests.
    use super::*;
    use std::collections::BTreeMap;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// Keys in a map.
    #[derive(Default, Debug, Clone)]
    pub struct MapKeys(pub BTreeMap<String, Vec<u8>>);

    impl MapKeys {
        pub fn with(pairs: &[(&str, &str)]) -> Self {
            Self(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            )
        }

        pub fn get(&self, k: &str) -> Option<&str> {
            self.0.get(k).map(|v| core::str::from_utf8(v).unwrap())
        }
    }

    impl Keys for MapKeys {
        fn read<'b>(
            &mut self,
            key: &str,
            buf: &'b mut [u8],
        ) -> Result<Option<&'b [u8]>, xs::Error> {
            match self.0.get(key) {
                None => Ok(None),
                Some(v) => {
                    let dst = buf.get_mut(..v.len()).ok_or(xs::Error::NoSpace)?;
                    dst.copy_from_slice(v);
                    Ok(Some(dst))
                }
            }
        }
    }

    impl KeysMut for MapKeys {
        fn write(&mut self, key: &str, value: &[u8]) -> Result<(), xs::Error> {
            self.0.insert(key.to_string(), value.to_vec());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::MapKeys;
    use super::*;

    #[test]
    fn booleans_are_strict() {
        let mut k = MapKeys::with(&[("a", "1"), ("b", "0"), ("c", "2"), ("d", "yes"), ("e", "")]);
        assert_eq!(read_bool(&mut k, "a", false), Ok(true));
        assert_eq!(read_bool(&mut k, "b", true), Ok(false));
        assert_eq!(read_bool(&mut k, "absent", true), Ok(true));
        assert_eq!(
            read_bool(&mut k, "c", false),
            Err(FeatureError::Malformed("c"))
        );
        assert_eq!(
            read_bool(&mut k, "d", false),
            Err(FeatureError::Malformed("d"))
        );
        assert_eq!(
            read_bool(&mut k, "e", false),
            Err(FeatureError::Malformed("e"))
        );
        let mut k = MapKeys::with(&[("feature-sg", "on")]);
        assert_eq!(
            read_bool(&mut k, "feature-sg", false),
            Err(FeatureError::Malformed("feature-sg"))
        );
    }

    #[test]
    fn overlong_value_is_malformed_not_truncated() {
        let long = "1".repeat(VALUE_MAX + 1);
        let mut k = MapKeys::with(&[("n", &long)]);
        assert_eq!(
            read_u32(&mut k, "n", "n"),
            Err(FeatureError::Malformed("n"))
        );
    }

    #[test]
    fn port_zero_rejected() {
        let mut k = MapKeys::with(&[("event-channel", "0")]);
        assert_eq!(
            read_port(&mut k, "event-channel", "event-channel"),
            Err(FeatureError::OutOfRange("event-channel"))
        );
    }

    #[test]
    fn key_names() {
        assert_eq!(
            KeyBuf::queued(3, 4, "ring-ref").unwrap().as_str(),
            "queue-3/ring-ref"
        );
        assert_eq!(
            KeyBuf::queued(0, 1, "ring-ref").unwrap().as_str(),
            "ring-ref"
        );
        assert!(KeyBuf::new(format_args!("{}", "x".repeat(100))).is_err());
    }
}
