//! Checked parsing of the toolstack's memory sizes: `memory/target` and `memory/static-max`.
//!
//! Both keys hold a size in KiB as decimal ASCII, written by the toolstack: untrusted input.
//! [`parse_kib`] accepts exactly `[0-9]{1,20}` whose value is at most [`MAX_KIB`]; anything
//! else is a [`TargetError`] naming what was wrong, and the engine acts on nothing it could not
//! parse. Leading zeros are accepted (the value is still decimal); a sign, blanks, a `0x`
//! prefix or a unit suffix are not. [`parse_kib_line`] also takes the one trailing newline a
//! sysfs write (`echo 262144 > target_kb`) brings.

use core::fmt;

/// KiB per page (4 KiB pages; the balloon works in extent order 0 only).
pub const KIB_PER_PAGE: u64 = 4;

/// The longest value accepted, in bytes: `u64::MAX` has 20 decimal digits.
pub const MAX_LEN: usize = 20;

/// The largest size accepted, in KiB: 4 PiB, i.e. 2^52 bytes, the widest physical address
/// x86_64 defines. Anything larger cannot be memory this guest could ever hold.
pub const MAX_KIB: u64 = 1 << 42;

/// A size in KiB, as XenStore and sysfs state it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kib(u64);

impl Kib {
    /// Wraps a size in KiB.
    pub const fn new(kib: u64) -> Self {
        Self(kib)
    }

    /// The size in KiB.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Whole pages in this size, rounded down (a partial page cannot be given or taken).
    pub const fn to_pages(self) -> u64 {
        self.0 / KIB_PER_PAGE
    }

    /// The size of `pages` pages, saturating at `u64::MAX` KiB.
    pub const fn from_pages(pages: u64) -> Self {
        Self(pages.saturating_mul(KIB_PER_PAGE))
    }
}

/// Why a size from the toolstack was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// The value is empty.
    Empty,
    /// The value is longer than [`MAX_LEN`] bytes.
    TooLong,
    /// The value starts with `-`.
    Negative,
    /// A byte other than an ASCII digit (a `+`, a blank, a hex prefix, a unit).
    NotDecimal,
    /// The digits do not fit in 64 bits.
    Overflow,
    /// The value fits in 64 bits but is above [`MAX_KIB`].
    Huge,
}

impl TargetError {
    /// A stable short name, for sysfs and log lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too-long",
            Self::Negative => "negative",
            Self::NotDecimal => "not-decimal",
            Self::Overflow => "overflow",
            Self::Huge => "huge",
        }
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a size in KiB: decimal ASCII digits only, at most [`MAX_LEN`] of them, value at
/// most [`MAX_KIB`]. The checks run in this order: empty, too long, negative, not decimal,
/// overflow, huge.
pub fn parse_kib(raw: &[u8]) -> Result<Kib, TargetError> {
    if raw.is_empty() {
        return Err(TargetError::Empty);
    }
    if raw.len() > MAX_LEN {
        return Err(TargetError::TooLong);
    }
    if raw.first() == Some(&b'-') {
        return Err(TargetError::Negative);
    }
    if !raw.iter().all(u8::is_ascii_digit) {
        return Err(TargetError::NotDecimal);
    }
    let mut value: u64 = 0;
    for &b in raw {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(TargetError::Overflow)?;
    }
    if value > MAX_KIB {
        return Err(TargetError::Huge);
    }
    Ok(Kib(value))
}

/// [`parse_kib`] after removing one trailing `\n`, for values written to sysfs.
pub fn parse_kib_line(raw: &[u8]) -> Result<Kib, TargetError> {
    parse_kib(raw.strip_suffix(b"\n").unwrap_or(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimal() {
        assert_eq!(parse_kib(b"262144"), Ok(Kib::new(262144)));
        assert_eq!(parse_kib(b"0"), Ok(Kib::new(0)));
        assert_eq!(
            parse_kib(b"000000000000000000001"),
            Err(TargetError::TooLong)
        );
        assert_eq!(parse_kib(b"00000000000000000001"), Ok(Kib::new(1)));
        assert_eq!(parse_kib(b"4398046511104"), Ok(Kib::new(MAX_KIB)));
        assert_eq!(Kib::new(262144).to_pages(), 65536);
        assert_eq!(Kib::new(7).to_pages(), 1);
    }

    #[test]
    fn rejects_each_class() {
        assert_eq!(parse_kib(b""), Err(TargetError::Empty));
        assert_eq!(parse_kib(b"-1"), Err(TargetError::Negative));
        assert_eq!(parse_kib(b"+1"), Err(TargetError::NotDecimal));
        assert_eq!(parse_kib(b" 1"), Err(TargetError::NotDecimal));
        assert_eq!(parse_kib(b"1 "), Err(TargetError::NotDecimal));
        assert_eq!(parse_kib(b"0x10"), Err(TargetError::NotDecimal));
        assert_eq!(parse_kib(b"1G"), Err(TargetError::NotDecimal));
        assert_eq!(parse_kib(b"1\0"), Err(TargetError::NotDecimal));
        assert_eq!(
            parse_kib(b"18446744073709551616"),
            Err(TargetError::Overflow)
        );
        assert_eq!(parse_kib(b"18446744073709551615"), Err(TargetError::Huge));
        assert_eq!(parse_kib(b"4398046511105"), Err(TargetError::Huge));
        assert_eq!(
            parse_kib(b"123456789012345678901"),
            Err(TargetError::TooLong)
        );
    }

    #[test]
    fn sysfs_line_takes_one_newline() {
        assert_eq!(parse_kib_line(b"1024\n"), Ok(Kib::new(1024)));
        assert_eq!(parse_kib_line(b"1024"), Ok(Kib::new(1024)));
        assert_eq!(parse_kib_line(b"1024\n\n"), Err(TargetError::NotDecimal));
        assert_eq!(parse_kib_line(b"\n"), Err(TargetError::Empty));
    }
}
