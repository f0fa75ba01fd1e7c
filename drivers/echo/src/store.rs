//! XenStore keys of the echo device and strict readers for the values a peer wrote.

use crate::Error;
use xen_core::num::{parse_u16, parse_u32};
use xen_core::xenbus::{state_text, XenbusState};
use xen_core::xs::{self, Path, PathBuf, TxId, XenStore};

use xen_sys::DomId;

/// Capacity of a device directory path (`/local/domain/<be>/backend/echo/<fe>/<devid>/<key>`
/// is well under it).
pub const DIR_MAX: usize = 128;

/// A device directory, or a key in one.
pub type Dir = PathBuf<DIR_MAX>;

/// The device kind in XenStore paths.
pub const KIND: &str = "echo";

/// Front key: the back's directory (written by the toolstack).
pub const BACKEND: &str = "backend";
/// Front key: the back's domain id (written by the toolstack).
pub const BACKEND_ID: &str = "backend-id";
/// Back key: the front's directory (written by the toolstack).
pub const FRONTEND: &str = "frontend";
/// Back key: the front's domain id (written by the toolstack).
pub const FRONTEND_ID: &str = "frontend-id";
/// Both: the XenBus state.
pub const STATE: &str = "state";
/// Back feature: the largest ring order it maps.
pub const MAX_RING_PAGE_ORDER: &str = "max-ring-page-order";
/// Back feature: `1` if it serves [`Op::Complement`](crate::Op::Complement).
pub const FEATURE_COMPLEMENT: &str = "feature-complement";
/// Front key: the ring order it chose (only written when above 0).
pub const RING_PAGE_ORDER: &str = "ring-page-order";
/// Front key: the ring's grant (order 0), or the prefix of `ring-ref0..N`.
pub const RING_REF: &str = "ring-ref";
/// Front key: its unbound event channel.
pub const EVENT_CHANNEL: &str = "event-channel";

/// A key of a device directory: `dir/leaf`, or `dir/<leaf><index>` for numbered keys.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    dir: &'a Dir,
    leaf: &'static str,
    index: Option<u32>,
}

impl<'a> Key<'a> {
    /// `dir/leaf`.
    pub fn new(dir: &'a Dir, leaf: &'static str) -> Key<'a> {
        Key {
            dir,
            leaf,
            index: None,
        }
    }

    /// `dir/<prefix><index>`, e.g. `ring-ref3`.
    pub fn indexed(dir: &'a Dir, prefix: &'static str, index: u32) -> Key<'a> {
        Key {
            dir,
            leaf: prefix,
            index: Some(index),
        }
    }

    /// The key's name (without an index), for errors.
    pub fn name(&self) -> &'static str {
        self.leaf
    }

    /// The full path.
    pub fn path(&self) -> Result<Dir, Error> {
        let mut k = self.dir.clone();
        match self.index {
            None => k.push(self.leaf),
            Some(i) => k.push_indexed(self.leaf, i),
        }
        .map_err(Error::Xs)?;
        Ok(k)
    }
}

/// Reads a value the peer wrote into `buf`, `None` if the node is missing.
pub fn read_raw<'b, S: XenStore + ?Sized>(
    xs: &mut S,
    tx: TxId,
    k: Key<'_>,
    buf: &'b mut [u8],
) -> Result<Option<&'b [u8]>, Error> {
    let p = k.path()?;
    match xs.read_optional(tx, p.as_path()?, buf) {
        Ok(Some(n)) => Ok(buf.get(..n)),
        Ok(None) => Ok(None),
        // A value longer than any we accept is as bad as a malformed one.
        Err(xs::Error::NoSpace) => Err(Error::BadValue(k.name())),
        Err(e) => Err(Error::Xs(e)),
    }
}

/// Reads a strict decimal `u32`; `None` if the node is missing.
pub fn read_u32<S: XenStore + ?Sized>(
    xs: &mut S,
    tx: TxId,
    k: Key<'_>,
) -> Result<Option<u32>, Error> {
    let mut buf = [0u8; 16];
    match read_raw(xs, tx, k, &mut buf)? {
        Some(text) => parse_u32(text)
            .map(Some)
            .map_err(|_| Error::BadValue(k.name())),
        None => Ok(None),
    }
}

/// Reads a strict decimal `u32` that must be present.
pub fn require_u32<S: XenStore + ?Sized>(xs: &mut S, tx: TxId, k: Key<'_>) -> Result<u32, Error> {
    read_u32(xs, tx, k)?.ok_or(Error::MissingKey(k.name()))
}

/// Reads a domain id that must be present.
pub fn require_domid<S: XenStore + ?Sized>(xs: &mut S, k: Key<'_>) -> Result<DomId, Error> {
    let mut buf = [0u8; 8];
    let text = read_raw(xs, TxId::NONE, k, &mut buf)?.ok_or(Error::MissingKey(k.name()))?;
    let id = DomId::new(parse_u16(text).map_err(|_| Error::BadValue(k.name()))?);
    if id.is_reserved() {
        return Err(Error::BadValue(k.name()));
    }
    Ok(id)
}

/// Reads an absolute path that must be present (the peer's directory).
pub fn require_dir<S: XenStore + ?Sized>(xs: &mut S, k: Key<'_>) -> Result<Dir, Error> {
    let mut buf = [0u8; DIR_MAX];
    let text = read_raw(xs, TxId::NONE, k, &mut buf)?.ok_or(Error::MissingKey(k.name()))?;
    let p = Path::from_bytes(text).map_err(|_| Error::BadValue(k.name()))?;
    if !p.is_absolute() {
        return Err(Error::BadValue(k.name()));
    }
    Dir::from_path(p).map_err(|_| Error::BadValue(k.name()))
}

/// Writes a decimal value.
pub fn write_u32<S: XenStore + ?Sized>(
    xs: &mut S,
    tx: TxId,
    k: Key<'_>,
    value: u32,
) -> Result<(), xs::Error> {
    let p = k.path().map_err(|_| xs::Error::NoSpace)?;
    xs.write_decimal(tx, p.as_path()?, u64::from(value))
}

/// Writes our `state` key.
pub fn write_state<S: XenStore + ?Sized>(
    xs: &mut S,
    dir: &Dir,
    state: XenbusState,
) -> Result<(), Error> {
    let p = Key::new(dir, STATE).path()?;
    xs.write(TxId::NONE, p.as_path()?, state_text(state).as_bytes())
        .map_err(Error::Xs)
}

/// The state key's raw value, for [`xen_core::xenbus::Machine::on_peer_state`].
pub fn read_state<'b, S: XenStore + ?Sized>(
    xs: &mut S,
    dir: &Dir,
    buf: &'b mut [u8; 16],
) -> Result<Option<&'b [u8]>, Error> {
    match read_raw(xs, TxId::NONE, Key::new(dir, STATE), buf) {
        // An overlong state is garbage; let the state machine report it.
        Err(Error::BadValue(_)) => Ok(Some(b"?")),
        other => other,
    }
}
