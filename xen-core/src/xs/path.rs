//! XenStore path syntax: validation of borrowed paths and a fixed-capacity path builder.
//!
//! The rules (docs/misc/xenstore.txt): characters are ASCII alphanumerics and `-/_@`; a path is
//! absolute (starts with `/`) or relative to the caller's domain home; no empty path, no `//`,
//! no trailing `/` except the root itself; absolute paths are at most [`ABS_PATH_MAX`] bytes,
//! relative ones at most [`REL_PATH_MAX`]. Watch paths of the form `@introduceDomain` are
//! relative paths as far as syntax goes, so they need no special case.
//!
//! These are the protocol's limits (`xs_wire.h`). C xenstored is stricter in two ways a
//! caller may meet as `EINVAL` (checked against Xen 4.17 by the `xenstore-interop` QEMU
//! scenario): its `path-max` quota, `XENSTORE_REL_PATH_MAX` by default and applied to dom0
//! too, limits the part after `/local/domain/<id>/` (the whole path elsewhere), so an absolute
//! path outside a domain's home longer than 2048 bytes is refused; and an `@` path names no
//! node, so reading or writing one fails. Both are the daemon's configuration or
//! interpretation, not syntax, so they are left to it.

use core::fmt;

use super::wire::{Error, ABS_PATH_MAX, REL_PATH_MAX};

/// Whether `byte` may appear in a path.
fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'/' | b'_' | b'@')
}

/// Validates `bytes` as a path and returns it as `&str`.
fn validate(bytes: &[u8]) -> Result<&str, Error> {
    let first = *bytes.first().ok_or(Error::InvalidPath)?;
    let limit = if first == b'/' {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if bytes.len() > limit {
        return Err(Error::PathTooLong);
    }
    if !bytes.iter().all(|&b| is_path_byte(b)) {
        return Err(Error::InvalidPath);
    }
    if bytes.windows(2).any(|w| w == b"//") {
        return Err(Error::InvalidPath);
    }
    if bytes.len() > 1 && bytes.last() == Some(&b'/') {
        return Err(Error::InvalidPath);
    }
    core::str::from_utf8(bytes).map_err(|_| Error::InvalidPath)
}

/// A syntactically valid XenStore path.
///
/// # Invariants
///
/// The string satisfies every rule in the module documentation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path<'a>(&'a str);

impl<'a> Path<'a> {
    /// The root, `/`.
    pub const ROOT: Path<'static> = Path("/");

    /// Validates `s`.
    pub fn new(s: &'a str) -> Result<Self, Error> {
        Self::from_bytes(s.as_bytes())
    }

    /// Validates raw bytes, e.g. a path received from a peer (without its NUL).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        // INVARIANT: `validate` checked every rule.
        validate(bytes).map(Path)
    }

    /// The path text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The path bytes (no NUL).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0.as_bytes()
    }

    /// Whether the path starts with `/`.
    pub fn is_absolute(&self) -> bool {
        self.0.starts_with('/')
    }

    /// Whether this is a special watch path such as `@releaseDomain`.
    pub fn is_special(&self) -> bool {
        self.0.starts_with('@')
    }

    /// Whether `self` is `other` or lies below it (the xenstored watch-match rule).
    pub fn is_child_of(&self, other: &Path<'_>) -> bool {
        let (c, p) = (self.as_bytes(), other.as_bytes());
        if p == b"/" {
            return self.is_absolute();
        }
        match c.strip_prefix(p) {
            Some(rest) => rest.is_empty() || rest.first() == Some(&b'/'),
            None => false,
        }
    }

    /// The last component (the whole path if relative without `/`; empty for the root).
    pub fn leaf(&self) -> &'a str {
        match self.0.rfind('/') {
            Some(i) => self.0.get(i + 1..).unwrap_or(""),
            None => self.0,
        }
    }
}

impl fmt::Debug for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Checks one path component (non-empty, path characters, no `/`).
pub fn check_component(component: &[u8]) -> Result<(), Error> {
    if component.is_empty()
        || component.contains(&b'/')
        || !component.iter().all(|&b| is_path_byte(b))
    {
        return Err(Error::InvalidPath);
    }
    Ok(())
}

/// A path built in place, in a fixed buffer of `N` bytes.
///
/// # Invariants
///
/// `buf[..len]` is empty or a valid [`Path`].
#[derive(Clone)]
pub struct PathBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for PathBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PathBuf<N> {
    /// An empty builder.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// A builder holding a copy of `path`.
    pub fn from_path(path: Path<'_>) -> Result<Self, Error> {
        let mut b = Self::new();
        b.set(path)?;
        Ok(b)
    }

    /// Validates `s` and copies it in.
    pub fn try_from_str(s: &str) -> Result<Self, Error> {
        Self::from_path(Path::new(s)?)
    }

    /// Replaces the contents with `path`.
    pub fn set(&mut self, path: Path<'_>) -> Result<(), Error> {
        let src = path.as_bytes();
        let dst = self.buf.get_mut(..src.len()).ok_or(Error::NoSpace)?;
        dst.copy_from_slice(src);
        // INVARIANT: a copy of a valid path.
        self.len = src.len();
        Ok(())
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Empties the builder.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Cuts back to `len` bytes, which must be a length this builder had before (as returned by
    /// [`PathBuf::len`]); any other value leaves the builder unchanged and fails.
    pub fn truncate(&mut self, len: usize) -> Result<(), Error> {
        if len > self.len {
            return Err(Error::InvalidPath);
        }
        let prefix = self.buf.get(..len).ok_or(Error::InvalidPath)?;
        if len != 0 {
            validate(prefix)?;
        }
        self.len = len;
        Ok(())
    }

    /// Appends `/component` (or just `component` when empty).
    pub fn push(&mut self, component: &str) -> Result<&mut Self, Error> {
        check_component(component.as_bytes())?;
        self.push_unchecked_component(component.as_bytes())
    }

    /// Appends `/<prefix><decimal>` (e.g. `queue-3` or `ring-ref12`).
    pub fn push_indexed(&mut self, prefix: &str, index: u32) -> Result<&mut Self, Error> {
        let digits = crate::num::Decimal::new(index);
        let mut tmp = [0u8; 64];
        let total = prefix
            .len()
            .checked_add(digits.as_bytes().len())
            .ok_or(Error::NoSpace)?;
        let dst = tmp.get_mut(..total).ok_or(Error::NoSpace)?;
        let (a, b) = dst.split_at_mut(prefix.len());
        a.copy_from_slice(prefix.as_bytes());
        b.copy_from_slice(digits.as_bytes());
        check_component(dst)?;
        self.push_unchecked_component(dst)
    }

    /// Appends a relative path (one or more components) such as `queue-0/ring-ref`.
    pub fn join(&mut self, rel: &str) -> Result<&mut Self, Error> {
        let p = Path::new(rel)?;
        if p.is_absolute() {
            return Err(Error::InvalidPath);
        }
        for c in rel.split('/') {
            self.push(c)?;
        }
        Ok(self)
    }

    fn push_unchecked_component(&mut self, component: &[u8]) -> Result<&mut Self, Error> {
        let root = self.as_bytes() == b"/";
        let sep = usize::from(!self.is_empty() && !root);
        let new_len = self
            .len
            .checked_add(sep)
            .and_then(|l| l.checked_add(component.len()))
            .ok_or(Error::NoSpace)?;
        let limit = if self.buf.first() == Some(&b'/') && self.len > 0 {
            ABS_PATH_MAX
        } else {
            REL_PATH_MAX
        };
        if new_len > limit {
            return Err(Error::PathTooLong);
        }
        let dst = self.buf.get_mut(self.len..new_len).ok_or(Error::NoSpace)?;
        let (s, c) = dst.split_at_mut(sep);
        s.fill(b'/');
        c.copy_from_slice(component);
        // INVARIANT: a valid path (or nothing) plus `/` plus a valid component is a valid path
        // within the length limit just checked.
        self.len = new_len;
        Ok(self)
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// The path text (empty if nothing was written).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The path, or [`Error::InvalidPath`] while empty.
    pub fn as_path(&self) -> Result<Path<'_>, Error> {
        Path::from_bytes(self.as_bytes())
    }
}

impl<const N: usize> fmt::Debug for PathBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_paths() {
        for ok in [
            "/",
            "/local/domain/0",
            "device/vbd/768/state",
            "@releaseDomain",
            "a-b_c@d",
            "x",
        ] {
            assert!(Path::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_path_syntax_rejected() {
        for bad in [
            "", "//", "/a//b", "/a/", "a/", "/a b", "/a\0b", "/a.b", "/ä", "/a\nb", "a%b",
        ] {
            assert_eq!(Path::new(bad).err(), Some(Error::InvalidPath), "{bad:?}");
        }
    }

    #[test]
    fn path_too_long_rejected() {
        let mut abs = std::string::String::from("/");
        abs.push_str(&"a".repeat(ABS_PATH_MAX - 1));
        assert!(Path::new(&abs).is_ok());
        abs.push('a');
        assert_eq!(Path::new(&abs).err(), Some(Error::PathTooLong));
        let rel = "a".repeat(REL_PATH_MAX);
        assert!(Path::new(&rel).is_ok());
        let rel = "a".repeat(REL_PATH_MAX + 1);
        assert_eq!(Path::new(&rel).err(), Some(Error::PathTooLong));
    }

    #[test]
    fn child_of_follows_component_boundaries() {
        let p = |s| Path::new(s).unwrap();
        assert!(p("/a/b").is_child_of(&p("/a")));
        assert!(p("/a").is_child_of(&p("/a")));
        assert!(p("/a/b").is_child_of(&p("/")));
        assert!(!p("/ab").is_child_of(&p("/a")));
        assert!(!p("/a").is_child_of(&p("/a/b")));
        assert!(!p("a").is_child_of(&p("/")));
    }

    #[test]
    fn builder_builds_keys() {
        let mut b = PathBuf::<64>::try_from_str("/local/domain/1/device/vbd/768").unwrap();
        let base = b.len();
        b.push_indexed("queue-", 3)
            .unwrap()
            .push_indexed("ring-ref", 12)
            .unwrap();
        assert_eq!(
            b.as_str(),
            "/local/domain/1/device/vbd/768/queue-3/ring-ref12"
        );
        b.truncate(base).unwrap();
        b.join("queue-0/event-channel").unwrap();
        assert_eq!(
            b.as_str(),
            "/local/domain/1/device/vbd/768/queue-0/event-channel"
        );
        let mut r = PathBuf::<8>::try_from_str("/").unwrap();
        r.push("a").unwrap();
        assert_eq!(r.as_str(), "/a");
        let mut e = PathBuf::<8>::new();
        e.push("rel").unwrap();
        assert_eq!(e.as_str(), "rel");
    }

    #[test]
    fn builder_refuses_overflow_and_bad_components() {
        let mut b = PathBuf::<8>::try_from_str("/abc").unwrap();
        assert_eq!(b.push("defgh").err(), Some(Error::NoSpace));
        assert_eq!(b.as_str(), "/abc");
        assert_eq!(b.push("a/b").err(), Some(Error::InvalidPath));
        assert_eq!(b.push("").err(), Some(Error::InvalidPath));
        assert_eq!(b.join("/x").err(), Some(Error::InvalidPath));
        assert_eq!(b.truncate(2).err(), None);
        assert_eq!(b.truncate(9).err(), Some(Error::InvalidPath));
    }
}
