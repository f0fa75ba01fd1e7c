//! The floor: the fewest pages the balloon leaves the guest.
//!
//! The floor is the larger of two figures: a minimum from the guest's size alone (the
//! *formula*, [`floor_pages`]) and one from what the guest is using now that nothing can
//! reclaim (the *usage floor*, [`usage_floor_pages`]). The engine evaluates the formula at
//! load and the usage floor before every batch, so a guest whose memory use grows while the
//! balloon goes down stops higher.
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
//! The formula knows the guest's size, not what it holds. A guest whose initramfs lives in
//! tmpfs, or whose processes hold anonymous memory with no swap, can need more than it leaves:
//! the first balloon scenario held 32 MiB in a 256 MiB guest, and the OOM killer took the
//! holder at 93 MiB, above the formula's 85 MiB.
//!
//! # The usage floor
//!
//! From the kernel's global counters ([`MemoryUse`]), in the balloon's unit (pages the domain
//! holds, `current`):
//!
//! ```text
//! reclaimable   = file - min(file / 2, low)            page cache, less what Linux keeps
//!               + kreclaim - min(kreclaim / 2, low)    reclaimable slab and kernel memory
//!               + min(anon, swap_free)                 swap-backed pages swap can take
//! unreclaimable = total_ram - free - reclaimable
//! headroom      = reserve + HEADROOM_MIN_WMARKS * min
//! usage floor   = (current - total_ram) + unreclaimable + headroom
//! ```
//!
//! - `unreclaimable` is what the kernel manages minus what is free or reclaim can free: the
//!   complement, not a sum of counters, so memory no counter names (percpu, vmalloc, module
//!   text, pages drivers took with `alloc_pages`) is in it too. It holds swap-backed pages
//!   (anonymous memory, shmem, tmpfs and so an initramfs in it) beyond free swap, the
//!   unevictable LRU (mlocked pages, ramfs), unreclaimable slab, kernel stacks and page
//!   tables. The discounts of page cache and reclaimable slab are `si_mem_available()`'s:
//!   part of each is in use. `free` is `NR_FREE_PAGES`, without the free pages on the
//!   per-CPU lists: those serve only allocations of their CPU and migrate type, and the
//!   allocator drains the lists before the OOM killer only when reclaim made progress, which
//!   at the floor it cannot (counted as free, the balloon scenario once had the OOM killer
//!   run with 1.6 MiB in the buddy lists and 7 MiB on one CPU's list). They make the floor
//!   read high while they are full; the engine follows it down when they drain
//!   ([`crate::engine::FLOOR_RESUME_PAGES`]).
//! - `current - total_ram` are the pages the domain holds that the kernel never manages
//!   (kernel image, `struct page` array, boot reservations). Converting with it makes the
//!   usage floor blind to the balloon's own moves: a page given back lowers `current`,
//!   `total_ram` and `free` by one each.
//! - `headroom` is what stays free or reclaimable at the floor. `reserve`
//!   (`totalreserve_pages`: each zone's high watermark plus its largest `lowmem_reserve`) is
//!   what the kernel keeps free for itself and what `MemAvailable` excludes; on top of it,
//!   [`HEADROOM_MIN_WMARKS`] times the zones' min watermarks (`min_free_kbytes`, which Linux
//!   sizes as the square root of the memory) are left for the guest's processes and kernel
//!   to grow into before an allocation meets the min watermark with nothing to reclaim, the
//!   point where the OOM killer runs.
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

/// How many times the zones' min watermarks the usage floor leaves free or reclaimable on top
/// of `totalreserve_pages` (see the module doc).
pub const HEADROOM_MIN_WMARKS: u64 = 3;

/// The kernel's memory counters the usage floor reads, all in 4 KiB pages, global (every
/// node and zone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Free pages: `NR_FREE_PAGES` (`MemFree`), which leaves out the pages on the per-CPU
    /// lists (see the module doc).
    pub free_pages: u64,
    /// Page cache on the file LRUs (`NR_ACTIVE_FILE + NR_INACTIVE_FILE`).
    pub file_pages: u64,
    /// Swap-backed pages on the evictable LRUs (`NR_ACTIVE_ANON + NR_INACTIVE_ANON`):
    /// anonymous memory, shmem and tmpfs.
    pub anon_pages: u64,
    /// Reclaimable slab and other reclaimable kernel memory (`NR_SLAB_RECLAIMABLE_B` in pages
    /// plus `NR_KERNEL_MISC_RECLAIMABLE`).
    pub kernel_reclaimable_pages: u64,
    /// Free swap (`get_nr_swap_pages()`; 0 without swap).
    pub swap_free_pages: u64,
    /// The zones' min watermarks, summed (`min_free_kbytes` in pages).
    pub min_wmark_pages: u64,
    /// The zones' low watermarks, summed.
    pub low_wmark_pages: u64,
}

impl MemoryUse {
    /// Pages reclaim can free: page cache and reclaimable kernel memory less the part
    /// `si_mem_available()` assumes stays (half, at most the low watermarks), and swap-backed
    /// pages up to the free swap.
    pub fn reclaimable_pages(&self) -> u64 {
        let low = self.low_wmark_pages;
        let file = self.file_pages - (self.file_pages / 2).min(low);
        let kernel = self.kernel_reclaimable_pages - (self.kernel_reclaimable_pages / 2).min(low);
        let anon = self.anon_pages.min(self.swap_free_pages);
        file.saturating_add(kernel).saturating_add(anon)
    }

    /// Managed pages (`total_ram_pages`) neither free nor reclaimable.
    pub fn unreclaimable_pages(&self, total_ram_pages: u64) -> u64 {
        total_ram_pages
            .saturating_sub(self.free_pages)
            .saturating_sub(self.reclaimable_pages())
    }

    /// What stays free or reclaimable at the usage floor: `reserve_pages`
    /// (`totalreserve_pages`) plus [`HEADROOM_MIN_WMARKS`] times the min watermarks.
    pub fn headroom_pages(&self, reserve_pages: u64) -> u64 {
        reserve_pages.saturating_add(HEADROOM_MIN_WMARKS.saturating_mul(self.min_wmark_pages))
    }
}

/// The usage floor, in the balloon's unit, for a domain holding `current_pages` of which the
/// kernel manages `total_ram_pages` and keeps `reserve_pages` in reserve: `(current -
/// total_ram) + unreclaimable + headroom` (see the module doc).
pub fn usage_floor_pages(
    current_pages: u64,
    total_ram_pages: u64,
    reserve_pages: u64,
    usage: &MemoryUse,
) -> u64 {
    current_pages
        .saturating_sub(total_ram_pages)
        .saturating_add(usage.unreclaimable_pages(total_ram_pages))
        .saturating_add(usage.headroom_pages(reserve_pages))
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

    fn idle_guest() -> MemoryUse {
        MemoryUse {
            free_pages: 100 * MIB,
            min_wmark_pages: 512,
            low_wmark_pages: 640,
            ..MemoryUse::default()
        }
    }

    #[test]
    fn anonymous_memory_without_swap_is_unreclaimable() {
        // 240 MiB managed, 100 MiB free, 62 MiB of it anonymous/tmpfs, no swap.
        let u = MemoryUse {
            anon_pages: 62 * MIB,
            ..idle_guest()
        };
        assert_eq!(u.unreclaimable_pages(240 * MIB), 140 * MIB);
        // 256 MiB held, 16 MiB of it unmanaged; reserve 1000 pages; 3 x 512 pages headroom.
        assert_eq!(
            usage_floor_pages(256 * MIB, 240 * MIB, 1000, &u),
            16 * MIB + 140 * MIB + 1000 + HEADROOM_MIN_WMARKS * 512
        );
    }

    #[test]
    fn swap_makes_anonymous_memory_reclaimable_up_to_what_is_free() {
        let all = MemoryUse {
            anon_pages: 62 * MIB,
            swap_free_pages: 1024 * MIB,
            ..idle_guest()
        };
        assert_eq!(all.unreclaimable_pages(240 * MIB), 78 * MIB);
        let part = MemoryUse {
            swap_free_pages: 12 * MIB,
            ..all
        };
        assert_eq!(part.unreclaimable_pages(240 * MIB), 128 * MIB);
    }

    #[test]
    fn page_cache_is_reclaimable_less_what_linux_keeps() {
        // Large cache: all but the low watermarks. Small cache: half stays.
        let big = MemoryUse {
            file_pages: 40 * MIB,
            ..idle_guest()
        };
        assert_eq!(big.reclaimable_pages(), 40 * MIB - 640);
        let small = MemoryUse {
            file_pages: 1000,
            kernel_reclaimable_pages: 301,
            ..idle_guest()
        };
        assert_eq!(small.reclaimable_pages(), 500 + 151);
    }

    #[test]
    fn headroom_is_the_reserve_plus_min_watermarks() {
        let u = idle_guest();
        assert_eq!(u.headroom_pages(1000), 1000 + HEADROOM_MIN_WMARKS * 512);
        let doubled = MemoryUse {
            min_wmark_pages: 1024,
            ..u
        };
        assert_eq!(
            doubled.headroom_pages(1000) - u.headroom_pages(1000),
            HEADROOM_MIN_WMARKS * 512
        );
    }

    #[test]
    fn usage_floor_ignores_the_balloons_own_moves() {
        let u = MemoryUse {
            anon_pages: 62 * MIB,
            ..idle_guest()
        };
        let before = usage_floor_pages(256 * MIB, 240 * MIB, 1000, &u);
        // 10 MiB given back: held, managed and free pages all drop by 10 MiB.
        let after = MemoryUse {
            free_pages: u.free_pages - 10 * MIB,
            ..u
        };
        assert_eq!(
            usage_floor_pages(246 * MIB, 230 * MIB, 1000, &after),
            before
        );
    }

    #[test]
    fn inconsistent_counters_saturate_instead_of_wrapping() {
        // Per-CPU drift can make free + reclaimable exceed what is managed.
        let u = MemoryUse {
            free_pages: 300 * MIB,
            file_pages: u64::MAX,
            kernel_reclaimable_pages: u64::MAX,
            anon_pages: u64::MAX,
            swap_free_pages: u64::MAX,
            min_wmark_pages: u64::MAX,
            low_wmark_pages: u64::MAX,
        };
        assert_eq!(u.unreclaimable_pages(240 * MIB), 0);
        assert_eq!(usage_floor_pages(0, 240 * MIB, u64::MAX, &u), u64::MAX);
    }
}
