//! Strict decimal parsing and allocation-free formatting for values that travel through XenStore.
//!
//! Every number a peer writes into XenStore (states, ring references, event channels, sizes,
//! feature flags) arrives as ASCII text. The parsers here accept exactly `[0-9]+` — no sign, no
//! whitespace, no trailing NUL or newline — and use checked arithmetic, so a hostile string can
//! cost at most one pass over its bytes and an error, never an overflow panic.

use core::fmt;

/// Why a decimal string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The string was empty.
    Empty,
    /// The string held a byte other than an ASCII digit.
    NotDecimal,
    /// The value does not fit the target type.
    Overflow,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty number",
            Self::NotDecimal => "not a decimal number",
            Self::Overflow => "number out of range",
        })
    }
}

/// Parses an unsigned decimal `u64` with checked arithmetic.
pub fn parse_u64(text: &[u8]) -> Result<u64, ParseError> {
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut value: u64 = 0;
    for &byte in text {
        if !byte.is_ascii_digit() {
            return Err(ParseError::NotDecimal);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(byte - b'0')))
            .ok_or(ParseError::Overflow)?;
    }
    Ok(value)
}

/// Parses an unsigned decimal `u32` with checked arithmetic.
pub fn parse_u32(text: &[u8]) -> Result<u32, ParseError> {
    u32::try_from(parse_u64(text)?).map_err(|_| ParseError::Overflow)
}

/// Parses an unsigned decimal `u16` with checked arithmetic.
pub fn parse_u16(text: &[u8]) -> Result<u16, ParseError> {
    u16::try_from(parse_u64(text)?).map_err(|_| ParseError::Overflow)
}

/// The decimal text of an unsigned integer, formatted without allocation.
///
/// # Invariants
///
/// `digits[start..]` holds the ASCII digits of the value, most significant first.
#[derive(Clone, Copy)]
pub struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    /// Formats `value` (any unsigned integer up to `u64`).
    pub fn new(value: impl Into<u64>) -> Self {
        let mut value: u64 = value.into();
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        // u64::MAX has 20 digits, so the loop ends before `start` reaches 0.
        while let Some(next) = start.checked_sub(1) {
            start = next;
            let digit = u8::try_from(value % 10).unwrap_or(0);
            if let Some(slot) = digits.get_mut(start) {
                *slot = b'0' + digit;
            }
            value /= 10;
            if value == 0 {
                break;
            }
        }
        // INVARIANT: the loop wrote one digit per position from the end down to `start`.
        Self { digits, start }
    }

    /// The digits as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or(&[])
    }

    /// The digits as a string slice.
    pub fn as_str(&self) -> &str {
        // ASCII digits are always valid UTF-8; the fallback is unreachable.
        core::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_decimal() {
        assert_eq!(parse_u32(b"0"), Ok(0));
        assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
        assert_eq!(parse_u32(b"007"), Ok(7));
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn rejects_overflowing_decimal() {
        assert_eq!(parse_u32(b"4294967296"), Err(ParseError::Overflow));
        assert_eq!(
            parse_u64(b"18446744073709551616"),
            Err(ParseError::Overflow)
        );
        assert_eq!(parse_u16(b"65536"), Err(ParseError::Overflow));
        assert_eq!(parse_u64(&[b'9'; 4096]), Err(ParseError::Overflow));
    }

    #[test]
    fn rejects_sign_space_and_terminators() {
        for bad in [
            &b"-1"[..],
            b"+1",
            b" 1",
            b"1 ",
            b"1\0",
            b"1\n",
            b"0x10",
            b"1e3",
            b"\xff",
        ] {
            assert_eq!(parse_u32(bad), Err(ParseError::NotDecimal), "{bad:?}");
        }
        assert_eq!(parse_u32(b""), Err(ParseError::Empty));
    }

    #[test]
    fn formats_round_trip() {
        for v in [0u64, 1, 9, 10, 4095, 65535, u64::from(u32::MAX), u64::MAX] {
            let d = Decimal::new(v);
            assert_eq!(parse_u64(d.as_bytes()), Ok(v));
            assert_eq!(d.as_str(), std::format!("{v}"));
        }
    }
}
