//! A simulated guest and hypervisor for host tests and fuzzing (feature `std`): page counts
//! only, with fault injection.
//!
//! Every page of the guest's memory map is in exactly one place: used by the kernel, free in
//! the kernel, staged by the glue, or in the balloon (unpopulated); pages lent by the built-in
//! core for grant mappings are a fifth place the balloon never touches. Xen's free pool and
//! the guest's populated pages add up to a constant. [`SimGuest::check`] verifies both, and
//! that the staging area is empty between engine calls; every trait call also checks its
//! contract (never more than [`BATCH`] pages staged, never more freed than staged).

use std::vec::Vec;

use xen_core::hypercall::HypercallError;

use crate::engine::{Balloon, KernelMemory, Next, Reservation};
use crate::floor::MemoryUse;
use crate::step::BATCH;

/// The simulated guest: the kernel's pages, the glue's staging area and balloon list, and
/// Xen's free pool.
#[derive(Clone, Debug, Default)]
pub struct SimGuest {
    /// Pages the kernel uses. For the usage floor they are unreclaimable, except the `file`
    /// and `anon` (up to `swap_free`) pages among them, which `take_pages` reclaims (page
    /// cache first, then swap-backed pages to swap) when free pages run short.
    pub kernel_used: u64,
    /// Of `kernel_used`, page cache (reported as the file LRUs).
    pub file: u64,
    /// Of `kernel_used`, swap-backed pages (reported as the anon LRUs).
    pub anon: u64,
    /// Free swap.
    pub swap_free: u64,
    /// The zones' min watermarks, summed.
    pub min_wmark: u64,
    /// The zones' low watermarks, summed.
    pub low_wmark: u64,
    /// Free pages in the kernel.
    pub kernel_free: u64,
    /// Pages staged by the glue.
    pub staged: u64,
    /// Unpopulated frames in the glue's balloon list.
    pub ballooned: u64,
    /// Unpopulated frames the built-in core lends for grant mappings (never moved).
    pub lent: u64,
    /// Xen's free pages.
    pub xen_free: u64,
    /// `totalreserve_pages`.
    pub reserve: u64,
    /// `Committed_AS`.
    pub committed: u64,
    /// Fault: Xen takes at most this many more pages back (then stops short, then refuses).
    pub xen_decrease_budget: Option<u64>,
    /// Fault: every hypercall fails with this error.
    pub xen_error: Option<HypercallError>,
    /// Fault: the kernel gives at most this many more pages.
    pub kernel_spare_budget: Option<u64>,
    /// Fault: each call does at most this many pages (partial success).
    pub max_per_call: Option<usize>,
    /// Fault: `available_pages` reports at most this.
    pub available_cap: Option<u64>,
    /// Calls of `decrease` and `increase`.
    pub hypercalls: u64,
    total_map: u64,
    total_machine: u64,
}

impl SimGuest {
    /// A guest whose memory map has `map_pages` pages, of which `populated` are backed by
    /// memory (`used` of them in use), the rest ballooned out at boot and owned by the glue;
    /// Xen has `xen_free` pages to spare.
    pub fn new(map_pages: u64, populated: u64, used: u64, xen_free: u64) -> Self {
        assert!(populated <= map_pages && used <= populated);
        Self {
            kernel_used: used,
            kernel_free: populated - used,
            ballooned: map_pages - populated,
            xen_free,
            reserve: map_pages / 64,
            total_map: map_pages,
            total_machine: xen_free + populated,
            ..Self::default()
        }
    }

    /// Pages backed by memory: what `XENMEM_current_reservation` would say.
    pub fn populated(&self) -> u64 {
        self.kernel_used + self.kernel_free + self.staged
    }

    /// Moves `n` pages from free to used (a process allocating), or back with a negative `n`;
    /// `anon` says whether they count as swap-backed.
    pub fn allocate(&mut self, n: i64, anon: bool) {
        let m = n.unsigned_abs();
        if n >= 0 {
            assert!(
                m <= self.kernel_free,
                "allocating {m}, {} free",
                self.kernel_free
            );
            self.kernel_free -= m;
            self.kernel_used += m;
            if anon {
                self.anon += m;
            }
        } else {
            assert!(m <= self.kernel_used);
            self.kernel_used -= m;
            self.kernel_free += m;
            if anon {
                self.anon -= m;
            }
        }
    }

    /// Panics unless every page is accounted for and the staging area is empty.
    pub fn check(&self) {
        assert_eq!(self.staged, 0, "pages left staged between engine calls");
        assert!(
            self.file + self.anon <= self.kernel_used,
            "more page cache and swap-backed pages than used pages: {self:?}"
        );
        assert_eq!(
            self.populated() + self.ballooned + self.lent,
            self.total_map,
            "a page of the memory map leaked: {self:?}"
        );
        assert_eq!(
            self.populated() + self.xen_free,
            self.total_machine,
            "a machine page leaked: {self:?}"
        );
    }

    fn cap(&self, n: usize) -> usize {
        self.max_per_call.map_or(n, |m| n.min(m))
    }

    /// Polls `balloon` until it is idle (a balloon stopped at the floor, which only rechecks
    /// it, counts as idle) or waits longer than `max_wait_ms`, advancing the clock `now`
    /// through waits; checks conservation and the engine's count after every call. Returns
    /// the number of polls.
    pub fn run(&mut self, balloon: &mut Balloon, now: &mut u64, max_wait_ms: u64) -> usize {
        let mut polls = 0;
        loop {
            let p = balloon.poll(self, *now);
            polls += 1;
            self.check();
            assert_eq!(balloon.current(), self.populated(), "engine lost count");
            assert_eq!(
                balloon.held(),
                self.ballooned,
                "engine lost count of its balloon"
            );
            assert!(polls < 1_000_000, "no progress: {balloon:?}");
            match p.next {
                _ if at_rest(balloon) => return polls,
                Next::Now => {}
                Next::After(ms) if ms <= max_wait_ms => *now += ms,
                Next::After(_) | Next::Idle => return polls,
            }
        }
    }
}

impl KernelMemory for SimGuest {
    fn take_pages(&mut self, n: usize) -> usize {
        assert!(n <= BATCH && self.staged + n as u64 <= BATCH as u64);
        // Reclaim: page cache first, then swap-backed pages while swap has room.
        let mut short = (self.cap(n) as u64).saturating_sub(self.kernel_free);
        let from_file = short.min(self.file);
        self.file -= from_file;
        short -= from_file;
        let to_swap = short.min(self.anon).min(self.swap_free);
        self.anon -= to_swap;
        self.swap_free -= to_swap;
        self.kernel_used -= from_file + to_swap;
        self.kernel_free += from_file + to_swap;
        let mut k = (self.cap(n) as u64).min(self.kernel_free);
        if let Some(b) = self.kernel_spare_budget.as_mut() {
            k = k.min(*b);
            *b -= k;
        }
        self.kernel_free -= k;
        self.staged += k;
        k as usize
    }

    fn free_pages(&mut self, n: usize) {
        assert!(
            n as u64 <= self.staged,
            "freed {n} pages, {} staged",
            self.staged
        );
        self.staged -= n as u64;
        self.kernel_free += n as u64;
    }

    /// Free pages plus page cache less what Linux's `MemAvailable` assumes stays.
    fn available_pages(&mut self) -> u64 {
        let avail = self.kernel_free + self.file - (self.file / 2).min(self.low_wmark);
        self.available_cap.map_or(avail, |c| c.min(avail))
    }

    fn total_ram_pages(&mut self) -> u64 {
        self.kernel_used + self.kernel_free
    }

    fn reserve_pages(&mut self) -> u64 {
        self.reserve
    }

    fn committed_pages(&mut self) -> u64 {
        self.committed
    }

    fn memory_use(&mut self) -> MemoryUse {
        MemoryUse {
            free_pages: self.kernel_free,
            file_pages: self.file,
            anon_pages: self.anon,
            kernel_reclaimable_pages: 0,
            swap_free_pages: self.swap_free,
            min_wmark_pages: self.min_wmark,
            low_wmark_pages: self.low_wmark,
        }
    }
}

impl Reservation for SimGuest {
    fn decrease(&mut self, n: usize) -> Result<usize, HypercallError> {
        self.hypercalls += 1;
        assert!(
            n as u64 <= self.staged,
            "decrease of {n} pages, {} staged",
            self.staged
        );
        if let Some(e) = self.xen_error {
            return Err(e);
        }
        let mut k = self.cap(n) as u64;
        if let Some(b) = self.xen_decrease_budget.as_mut() {
            if *b == 0 {
                return Err(HypercallError::Errno(22));
            }
            k = k.min(*b);
            *b -= k;
        }
        self.staged -= k;
        self.ballooned += k;
        self.xen_free += k;
        Ok(k as usize)
    }

    fn increase(&mut self, n: usize) -> Result<usize, HypercallError> {
        self.hypercalls += 1;
        assert!(n <= BATCH && self.staged + n as u64 <= BATCH as u64);
        if let Some(e) = self.xen_error {
            return Err(e);
        }
        let k = (self.cap(n) as u64).min(self.ballooned).min(self.xen_free);
        self.ballooned -= k;
        self.xen_free -= k;
        self.staged += k;
        Ok(k as usize)
    }
}

/// Stopped at the floor: the engine only rechecks the floor now, which is being at rest.
fn at_rest(balloon: &Balloon) -> bool {
    let s = balloon.stats();
    s.state == crate::engine::State::Idle && s.last_stop == crate::engine::StopReason::FloorReached
}

/// Records the reports of a run, for tests that look at them.
pub fn collect_reports(
    guest: &mut SimGuest,
    balloon: &mut Balloon,
    now: &mut u64,
    max_wait_ms: u64,
) -> Vec<crate::engine::Report> {
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        let p = balloon.poll(guest, *now);
        guest.check();
        out.extend(p.report);
        match p.next {
            _ if at_rest(balloon) => return out,
            Next::Now => {}
            Next::After(ms) if ms <= max_wait_ms => *now += ms,
            Next::After(_) | Next::Idle => return out,
        }
    }
    panic!("no progress: {balloon:?}");
}
