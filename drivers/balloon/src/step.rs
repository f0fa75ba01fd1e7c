//! The logarithmic step scale: how many pages one batch moves, given the distance left.
//!
//! With `d` the distance to the target in pages (`d > 0`):
//!
//! ```text
//! step(d) = min(d, clamp(2^(floor(log2 d) - STEP_SHIFT), MIN_STEP, BATCH))
//! ```
//!
//! Each batch so moves between an eighth and a quarter of the distance left (`STEP_SHIFT` =
//! 2), at least [`MIN_STEP`] pages and at most one [`BATCH`]; from 8 MiB away on, every batch
//! is a full one, as Linux's worker moves them. Because the step never exceeds `d`, a batch
//! never overshoots; because `step` is non-decreasing in `d`, the steps of one approach shrink
//! monotonically as the target nears; a target changed mid-way only changes `d`.

/// Pages per batch: one page of 64-bit frame numbers (4096 / 8), the size of Linux's
/// `frame_list`. The glue's per-batch arrays have this many entries.
pub const BATCH: usize = 512;

/// The smallest step, unless the distance is smaller: 64 KiB.
pub const MIN_STEP: u64 = 16;

/// A step is `2^(floor(log2 d) - STEP_SHIFT)` before clamping.
pub const STEP_SHIFT: u32 = 2;

/// The pages one batch moves when `distance` pages remain; 0 only for a distance of 0.
pub fn step(distance: u64) -> usize {
    if distance == 0 {
        return 0;
    }
    let log = distance.ilog2();
    let scaled = 1u64 << log.saturating_sub(STEP_SHIFT);
    let s = scaled.clamp(MIN_STEP, BATCH as u64).min(distance);
    // `s <= BATCH`, so it fits.
    usize::try_from(s).unwrap_or(BATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_scale_values() {
        assert_eq!(step(0), 0);
        assert_eq!(step(1), 1);
        assert_eq!(step(15), 15);
        assert_eq!(step(16), 16);
        assert_eq!(step(100), 16);
        assert_eq!(step(128), 32);
        assert_eq!(step(1000), 128);
        assert_eq!(step(2047), 256);
        assert_eq!(step(2048), 512);
        assert_eq!(step(u64::MAX), BATCH);
    }

    #[test]
    fn never_overshoots_and_is_monotone() {
        let mut prev = 0;
        for d in 0..100_000u64 {
            let s = step(d) as u64;
            assert!(s <= d);
            assert!(s <= BATCH as u64);
            assert!(d == 0 || s >= 1);
            assert!(s >= prev, "step({d}) = {s} < step({}) = {prev}", d - 1);
            prev = s;
        }
    }
}
