//! The disk a backend serves, as a small trait, and in-memory disks for host tests.
//!
//! The engine hands the storage a validated request whose guest pages are already mapped
//! ([`Io`]): the storage moves the data straight between the disk and those pages (the kernel
//! glue builds bios on the mapped pages; the simulator's `VecDisk` copies). A request either
//! finishes at once ([`Started::Done`]) or later: the glue then reports it with
//! [`BlkBack::complete`](crate::BlkBack::complete), and the engine keeps the request's
//! mappings until then.

use crate::cache::CacheSlot;
use crate::parse::Sector;
use xen_sys::GrantRef;

/// Bytes in a blkif sector.
pub const SECTOR_BYTES: usize = 512;

/// A storage error; the request that met it is answered `BLKIF_RSP_ERROR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError;

/// What a request asks the disk to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// Read the segments' sectors from the disk into the guest's pages.
    Read,
    /// Write the guest's pages to the disk.
    Write {
        /// Flush the disk's cache first (a flush or barrier request carrying data).
        preflush: bool,
        /// The data must be durable when the request completes.
        fua: bool,
    },
    /// Flush the disk's cache (no data).
    Flush,
    /// Discard `sectors` sectors (securely: the data must be unrecoverable).
    Discard {
        /// Sectors to discard (may be 0).
        sectors: u64,
        /// Secure erase.
        secure: bool,
    },
}

/// Where one segment of a request stays while its I/O runs: its mapping (in the segment or
/// in the persistent cache) and the bytes of the page it covers. The glue allocates a slice of
/// these (see [`Tables`](crate::back::Tables)); only the engine fills them.
pub struct SegState<M> {
    pub(crate) gref: GrantRef,
    pub(crate) map: Option<M>,
    pub(crate) cached: Option<usize>,
    pub(crate) offset: u16,
    pub(crate) len: u16,
}

impl<M> SegState<M> {
    /// An unused segment.
    pub const EMPTY: Self = SegState {
        gref: GrantRef::new(0),
        map: None,
        cached: None,
        offset: 0,
        len: 0,
    };
}

/// One segment as the storage sees it: bytes `offset..offset + len` of a mapped page.
pub struct IoSeg<'a, M> {
    /// The mapped guest page.
    pub page: &'a M,
    /// Byte offset in the page (a multiple of 512).
    pub offset: usize,
    /// Bytes (512 to 4096).
    pub len: usize,
}

/// A validated request with its guest pages mapped, as handed to [`Storage::start`].
pub struct Io<'a, M> {
    /// What to do.
    pub kind: IoKind,
    /// The first disk sector (512-byte units).
    pub sector: Sector,
    pub(crate) segs: &'a [SegState<M>],
    pub(crate) cache: &'a [CacheSlot<M>],
}

impl<M> Io<'_, M> {
    /// The request's segments, in disk order (empty for a flush or a discard).
    pub fn segments(&self) -> impl Iterator<Item = IoSeg<'_, M>> + '_ {
        self.segs.iter().map_while(move |s| {
            let page = match s.cached {
                Some(slot) => self.cache.get(slot)?.mapping()?,
                None => s.map.as_ref()?,
            };
            Some(IoSeg {
                page,
                offset: usize::from(s.offset),
                len: usize::from(s.len),
            })
        })
    }

    /// How many segments the request has.
    pub fn segment_count(&self) -> usize {
        self.segs.len()
    }

    /// Sectors the segments cover.
    pub fn data_sectors(&self) -> u64 {
        self.segs
            .iter()
            .map(|s| u64::from(s.len) / 512)
            .sum::<u64>()
    }
}

/// Whether [`Storage::start`] finished the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// Done (or failed) already; the engine answers it now.
    Done(Result<(), IoError>),
    /// Running: the glue calls [`BlkBack::complete`](crate::BlkBack::complete) with this tag
    /// when it ends, exactly once.
    Pending,
}

/// A disk addressed in 512-byte sectors.
pub trait Storage<M> {
    /// Size in 512-byte sectors.
    fn capacity(&self) -> u64;

    /// Whether the disk refuses writes.
    fn read_only(&self) -> bool;

    /// Starts request `tag`. The engine has checked the whole range against
    /// [`capacity`](Self::capacity), and keeps every page of `io` mapped until the request is
    /// done.
    fn start(&mut self, tag: usize, io: &Io<'_, M>) -> Started;
}

#[cfg(any(test, feature = "std"))]
pub use sim::{Deferred, VecDisk};

#[cfg(any(test, feature = "std"))]
mod sim {
    use super::*;
    use std::vec::Vec;
    use xen_core::platform::PageBytes;

    /// An in-memory disk (host builds only), with counters the tests assert on.
    #[derive(Clone, Debug)]
    pub struct VecDisk {
        bytes: Vec<u8>,
        read_only: bool,
        /// Flushes seen (a write with preflush counts one).
        pub flushes: u64,
        /// Sectors discarded.
        pub discarded: u64,
        /// Sector-reads and sector-writes done.
        pub io_sectors: u64,
    }

    impl VecDisk {
        /// A zeroed disk of `sectors` sectors.
        pub fn new(sectors: u64, read_only: bool) -> VecDisk {
            let len = usize::try_from(sectors).expect("test disk fits in memory") * SECTOR_BYTES;
            VecDisk {
                bytes: std::vec![0; len],
                read_only,
                flushes: 0,
                discarded: 0,
                io_sectors: 0,
            }
        }

        /// The disk's contents.
        pub fn bytes(&self) -> &[u8] {
            &self.bytes
        }

        /// Grows (or shrinks) the disk to `sectors`, new sectors zero: what a resized backing
        /// file looks like.
        pub fn resize(&mut self, sectors: u64) {
            self.bytes
                .resize(usize::try_from(sectors).unwrap_or(0) * SECTOR_BYTES, 0);
        }

        /// The disk's contents, writable (to fill it from a test).
        pub fn bytes_mut(&mut self) -> &mut [u8] {
            &mut self.bytes
        }

        fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, IoError> {
            let start = usize::try_from(sector)
                .ok()
                .and_then(|s| s.checked_mul(SECTOR_BYTES))
                .ok_or(IoError)?;
            let end = start.checked_add(len).ok_or(IoError)?;
            if end > self.bytes.len() || len % SECTOR_BYTES != 0 {
                return Err(IoError);
            }
            Ok(start..end)
        }

        fn run<M: PageBytes>(&mut self, io: &Io<'_, M>) -> Result<(), IoError> {
            let mut sector = io.sector.0;
            match io.kind {
                IoKind::Flush => self.flushes += 1,
                IoKind::Discard { sectors, .. } => {
                    let len = usize::try_from(sectors)
                        .ok()
                        .and_then(|c| c.checked_mul(SECTOR_BYTES))
                        .ok_or(IoError)?;
                    let r = self.range(sector, len)?;
                    self.bytes[r].fill(0);
                    self.discarded += sectors;
                }
                IoKind::Read => {
                    for seg in io.segments() {
                        let r = self.range(sector, seg.len)?;
                        if !seg.page.write_bytes(seg.offset, &self.bytes[r]) {
                            return Err(IoError);
                        }
                        sector += (seg.len / SECTOR_BYTES) as u64;
                        self.io_sectors += (seg.len / SECTOR_BYTES) as u64;
                    }
                }
                IoKind::Write { preflush, fua } => {
                    if self.read_only {
                        return Err(IoError);
                    }
                    if preflush {
                        self.flushes += 1;
                    }
                    for seg in io.segments() {
                        let r = self.range(sector, seg.len)?;
                        if !seg.page.read_bytes(seg.offset, &mut self.bytes[r]) {
                            return Err(IoError);
                        }
                        sector += (seg.len / SECTOR_BYTES) as u64;
                        self.io_sectors += (seg.len / SECTOR_BYTES) as u64;
                    }
                    if fua {
                        self.flushes += 1;
                    }
                }
            }
            Ok(())
        }
    }

    impl<M: PageBytes> Storage<M> for VecDisk {
        fn capacity(&self) -> u64 {
            (self.bytes.len() / SECTOR_BYTES) as u64
        }

        fn read_only(&self) -> bool {
            self.read_only
        }

        fn start(&mut self, _tag: usize, io: &Io<'_, M>) -> Started {
            Started::Done(self.run(io))
        }
    }

    /// A storage whose requests finish only when the test says so: the data moves at
    /// [`start`](Storage::start) (the pages are mapped then), the completion waits in
    /// [`pending`](Self::pending) until the test hands it to `BlkBack::complete`.
    #[derive(Debug)]
    pub struct Deferred<S> {
        /// The disk underneath.
        pub inner: S,
        /// Requests started and not yet reported: (tag, result).
        pub pending: Vec<(usize, Result<(), IoError>)>,
    }

    impl<S> Deferred<S> {
        /// Wraps `inner`.
        pub fn new(inner: S) -> Self {
            Deferred {
                inner,
                pending: Vec::new(),
            }
        }
    }

    impl<M, S: Storage<M>> Storage<M> for Deferred<S> {
        fn capacity(&self) -> u64 {
            self.inner.capacity()
        }

        fn read_only(&self) -> bool {
            self.inner.read_only()
        }

        fn start(&mut self, tag: usize, io: &Io<'_, M>) -> Started {
            let r = match self.inner.start(tag, io) {
                Started::Done(r) => r,
                Started::Pending => Err(IoError),
            };
            self.pending.push((tag, r));
            Started::Pending
        }
    }
}
