//! The bounded per-watch event queue that keeps a flooding peer from growing memory (XSA-349).
//!
//! # Policy: coalesce, then drop-oldest with an overflow flag
//!
//! Each watch owns a queue of at most `DEPTH` pending event paths, each at most
//! [`EVENT_PATH_MAX`] bytes.
//!
//! * An event whose path is already queued is **coalesced** (dropped: the consumer will look at
//!   that path anyway). A peer rewriting one node in a loop therefore costs one slot.
//! * An event arriving at a full queue **drops the oldest** entry and sets the **overflow** flag;
//!   an event whose path is longer than [`EVENT_PATH_MAX`] also sets the flag.
//! * While the flag is set, [`WatchQueue::pop`] returns [`Popped::Overflow`] first and empties the
//!   queue: the consumer must rescan everything under the watched path, which subsumes every
//!   lost and every still-queued event.
//!
//! So memory per watch is fixed, work per incoming event is bounded by `DEPTH` comparisons of at
//! most [`EVENT_PATH_MAX`] bytes, and no change is silently lost: at worst it is reported as "something
//! changed, rescan".

use super::path::PathBuf;

/// Longest event path a queue stores; longer ones are reported as overflow.
pub const EVENT_PATH_MAX: usize = 256;

/// What [`WatchQueue::pop`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Popped {
    /// This path changed; it was copied to the front of the caller's buffer, `len` bytes.
    Changed {
        /// Length of the path copied into the buffer.
        len: usize,
    },
    /// Events were lost: rescan the whole watched subtree.
    Overflow,
}

/// Counters, for rate-limited diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Events merged into an identical queued path.
    pub coalesced: u64,
    /// Events lost to a full queue or an overlong path.
    pub dropped: u64,
}

/// A fixed-capacity FIFO of event paths with overflow reporting.
///
/// # Invariants
///
/// `len <= DEPTH` and `head < DEPTH` (when `DEPTH > 0`); the live entries are
/// `entries[(head + i) % DEPTH]` for `i < len`.
#[derive(Clone)]
pub struct WatchQueue<const DEPTH: usize> {
    entries: [PathBuf<EVENT_PATH_MAX>; DEPTH],
    head: usize,
    len: usize,
    overflowed: bool,
    stats: QueueStats,
}

impl<const DEPTH: usize> Default for WatchQueue<DEPTH> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const DEPTH: usize> WatchQueue<DEPTH> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            entries: core::array::from_fn(|_| PathBuf::new()),
            head: 0,
            len: 0,
            overflowed: false,
            stats: QueueStats::default(),
        }
    }

    /// Number of queued paths (not counting a pending overflow).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is pending (no paths and no overflow).
    pub fn is_empty(&self) -> bool {
        self.len == 0 && !self.overflowed
    }

    /// Whether an overflow is pending.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Diagnostics counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Empties the queue and clears the overflow flag.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.overflowed = false;
    }

    fn slot(&self, i: usize) -> Option<&PathBuf<EVENT_PATH_MAX>> {
        let idx = self.head.checked_add(i)? % DEPTH.max(1);
        self.entries.get(idx)
    }

    /// Queues an event path (already validated as a XenStore path).
    pub fn push(&mut self, path: &[u8]) {
        if path.len() > EVENT_PATH_MAX || DEPTH == 0 {
            self.overflowed = true;
            self.stats.dropped = self.stats.dropped.wrapping_add(1);
            return;
        }
        if (0..self.len).any(|i| self.slot(i).map(|p| p.as_bytes() == path).unwrap_or(false)) {
            self.stats.coalesced = self.stats.coalesced.wrapping_add(1);
            return;
        }
        if self.len == DEPTH {
            // Drop the oldest.
            self.head = (self.head + 1) % DEPTH.max(1);
            self.len -= 1;
            self.overflowed = true;
            self.stats.dropped = self.stats.dropped.wrapping_add(1);
        }
        let idx = (self.head + self.len) % DEPTH.max(1);
        let Some(entry) = self.entries.get_mut(idx) else {
            return;
        };
        let stored = crate::xs::Path::from_bytes(path).and_then(|p| entry.set(p));
        if stored.is_err() {
            // Not a valid path: the caller should have checked; count it as lost.
            self.overflowed = true;
            self.stats.dropped = self.stats.dropped.wrapping_add(1);
            return;
        }
        // INVARIANT: len < DEPTH here, so len + 1 <= DEPTH.
        self.len += 1;
    }

    /// Takes the oldest pending event, copying its path into `buf`. Returns `Err(needed)` if
    /// `buf` is too small (the event stays queued).
    pub fn pop(&mut self, buf: &mut [u8]) -> Result<Option<Popped>, usize> {
        if self.overflowed {
            self.clear();
            return Ok(Some(Popped::Overflow));
        }
        if self.len == 0 {
            return Ok(None);
        }
        let Some(entry) = self.slot(0) else {
            return Ok(None);
        };
        let src = entry.as_bytes();
        let len = src.len();
        let dst = buf.get_mut(..len).ok_or(len)?;
        dst.copy_from_slice(src);
        self.head = (self.head + 1) % DEPTH.max(1);
        self.len -= 1;
        Ok(Some(Popped::Changed { len }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pop_str<const D: usize>(q: &mut WatchQueue<D>) -> Option<std::string::String> {
        let mut buf = [0u8; EVENT_PATH_MAX];
        match q.pop(&mut buf).unwrap()? {
            Popped::Changed { len } => {
                Some(std::string::String::from_utf8(buf[..len].to_vec()).unwrap())
            }
            Popped::Overflow => Some("<overflow>".into()),
        }
    }

    #[test]
    fn fifo_order() {
        let mut q = WatchQueue::<4>::new();
        q.push(b"/a");
        q.push(b"/b");
        assert_eq!(pop_str(&mut q).as_deref(), Some("/a"));
        assert_eq!(pop_str(&mut q).as_deref(), Some("/b"));
        assert_eq!(pop_str(&mut q), None);
    }

    #[test]
    fn duplicate_paths_coalesce() {
        let mut q = WatchQueue::<4>::new();
        for _ in 0..1000 {
            q.push(b"/local/domain/1/device/vbd/768/state");
        }
        assert_eq!(q.len(), 1);
        assert!(!q.overflowed());
        assert_eq!(q.stats().coalesced, 999);
    }

    #[test]
    fn watch_flood_is_bounded() {
        let mut q = WatchQueue::<4>::new();
        for i in 0..100_000u32 {
            let p = std::format!("/flood/{i}");
            q.push(p.as_bytes());
            assert!(q.len() <= 4);
        }
        assert_eq!(q.stats().dropped, 100_000 - 4);
        // The consumer learns it must rescan, then the queue is empty.
        assert_eq!(pop_str(&mut q).as_deref(), Some("<overflow>"));
        assert!(q.is_empty());
        assert_eq!(pop_str(&mut q), None);
    }

    #[test]
    fn overlong_event_path_reported_as_overflow() {
        let mut q = WatchQueue::<4>::new();
        let long = std::format!("/{}", "a".repeat(EVENT_PATH_MAX));
        q.push(long.as_bytes());
        assert_eq!(pop_str(&mut q).as_deref(), Some("<overflow>"));
    }

    #[test]
    fn small_buffer_keeps_event() {
        let mut q = WatchQueue::<2>::new();
        q.push(b"/abcdef");
        let mut tiny = [0u8; 3];
        assert_eq!(q.pop(&mut tiny), Err(7));
        assert_eq!(pop_str(&mut q).as_deref(), Some("/abcdef"));
    }

    #[test]
    fn zero_depth_queue_reports_overflow_only() {
        let mut q = WatchQueue::<0>::new();
        q.push(b"/a");
        assert_eq!(pop_str(&mut q).as_deref(), Some("<overflow>"));
    }
}
