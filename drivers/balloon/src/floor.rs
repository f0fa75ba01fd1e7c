//! The floor: the fewest pages the balloon leaves the guest.
//!
//! # The formula, and where it comes from
//!
//! Linux 6.12's `drivers/xen/balloon.c` has no absolute floor: each decrease takes at most
//! `si_mem_available()` pages (what the kernel reports as `MemAvailable`), and when that cap
//! cut the batch short and it was below `totalreserve_pages`, the worker backs off. The engine
//! applies that rule per batch too (see [`crate::engine`]).
//!
//! The absolute floor is the minimum usable memory of Linux's former self-ballooning driver
//! (`drivers/xen/xen-selfballoon.c`, removed upstream together with tmem), which no target went below.
//! With `reserve` = `totalreserve_pages`, `max` = the guest's memory map in pages (`max_pfn`)
//! and `useful = max - reserve`:
//!
//! | `useful` | floor |
//! |---|---|
//! | below 16 MiB | `max` (not worth ballooning: the floor is the whole guest) |
//! | 16 MiB to below 64 MiB | `reserve + 16 MiB + (useful - 16 MiB) / 2` |
//! | 64 MiB to below 512 MiB | `reserve + 40 MiB + (useful - 40 MiB) / 8` |
//! | 512 MiB and above | `reserve + 99 MiB + (useful - 99 MiB) / 32` |
//!
//! A configured minimum usable size (that driver's `selfballoon_min_usable_mb`) replaces the
//! piecewise part: `reserve + min_usable`. Sizes are converted to 4 KiB pages; the divisions
//! round down, as the C shifts did.
//!
//! The floor is in the same unit as the balloon's current size (pages the domain holds);
//! the formula's inputs are kernel figures, which differ from it only by pages the kernel
//! never manages (a few MiB at most), well inside the formula's own margin.

/// Pages per MiB (4 KiB pages).
pub const PAGES_PER_MIB: u64 = 256;

/// The floor, in pages, for a guest whose memory map has `max_pages` pages, of which the
/// kernel keeps `reserve_pages` in reserve (`totalreserve_pages`); `min_usable_pages`
/// replaces the piecewise minimum when set and non-zero.
pub fn floor_pages(max_pages: u64, reserve_pages: u64, min_usable_pages: Option<u64>) -> u64 {
    const MIB: u64 = PAGES_PER_MIB;
    if let Some(m) = min_usable_pages.filter(|&m| m != 0) {
        return reserve_pages.saturating_add(m);
    }
    let useful = max_pages.saturating_sub(reserve_pages);
    let piecewise = if useful < 16 * MIB {
        return max_pages;
    } else if useful < 64 * MIB {
        16 * MIB + (useful - 16 * MIB) / 2
    } else if useful < 512 * MIB {
        40 * MIB + (useful - 40 * MIB) / 8
    } else {
        99 * MIB + (useful - 99 * MIB) / 32
    };
    reserve_pages.saturating_add(piecewise)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = PAGES_PER_MIB;

    #[test]
    fn piecewise_values() {
        // 8 MiB guest: not worth ballooning.
        assert_eq!(floor_pages(8 * MIB, 0, None), 8 * MIB);
        // 32 MiB: 16 + 8.
        assert_eq!(floor_pages(32 * MIB, 0, None), 24 * MIB);
        // 256 MiB with 4 MiB reserve: useful 252 → 4 + 40 + 212/8 = 70.5 MiB.
        assert_eq!(
            floor_pages(256 * MIB, 4 * MIB, None),
            44 * MIB + 212 * MIB / 8
        );
        // 2 GiB: 99 + (2048 - 99)/32.
        assert_eq!(floor_pages(2048 * MIB, 0, None), 99 * MIB + 1949 * MIB / 32);
        // A configured minimum replaces the formula.
        assert_eq!(floor_pages(2048 * MIB, 10, Some(64 * MIB)), 64 * MIB + 10);
        assert_eq!(
            floor_pages(2048 * MIB, 0, Some(0)),
            floor_pages(2048 * MIB, 0, None)
        );
    }

    #[test]
    fn floor_never_above_the_guest_for_real_sizes() {
        let mut max = 16 * MIB;
        while max < (1 << 40) {
            let f = floor_pages(max, max / 64, None);
            assert!(f <= max, "floor {f} above max {max}");
            max += max / 3 + 1;
        }
    }
}
