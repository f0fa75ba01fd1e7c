//! The disk a backend serves, as a small trait, and an in-memory disk for host tests.
//!
//! The kernel glue implements [`Storage`] with bios on a block device; the simulator tests use
//! `VecDisk` (feature `std`). Calls are synchronous here: the engine finishes a request
//! before it answers it.

use crate::parse::Sector;

/// Bytes in a blkif sector.
pub const SECTOR_BYTES: usize = 512;

/// A storage error; the request that met it is answered `BLKIF_RSP_ERROR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError;

/// A disk addressed in 512-byte sectors.
pub trait Storage {
    /// Size in 512-byte sectors.
    fn capacity(&self) -> u64;

    /// Whether the disk refuses writes.
    fn read_only(&self) -> bool;

    /// Reads `buf.len() / 512` sectors from `sector` into `buf` (a multiple of 512 bytes,
    /// at most one page). The engine has checked the range against [`capacity`](Self::capacity).
    fn read(&mut self, sector: Sector, buf: &mut [u8]) -> Result<(), IoError>;

    /// Writes `buf` (a multiple of 512 bytes, at most one page) from `sector`.
    fn write(&mut self, sector: Sector, buf: &[u8]) -> Result<(), IoError>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), IoError>;

    /// Discards `count` sectors from `sector` (securely: the data must be unrecoverable).
    fn discard(&mut self, sector: Sector, count: u64, secure: bool) -> Result<(), IoError>;
}

/// An in-memory disk (host builds only), with counters the tests assert on.
#[cfg(any(test, feature = "std"))]
#[derive(Clone, Debug)]
pub struct VecDisk {
    bytes: std::vec::Vec<u8>,
    read_only: bool,
    /// Flushes seen.
    pub flushes: u64,
    /// Sectors discarded.
    pub discarded: u64,
    /// Sector-reads and sector-writes done.
    pub io_sectors: u64,
}

#[cfg(any(test, feature = "std"))]
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

    /// The disk's contents, writable (to fill it from a test).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn range(&self, sector: Sector, len: usize) -> Result<core::ops::Range<usize>, IoError> {
        let start = usize::try_from(sector.0)
            .ok()
            .and_then(|s| s.checked_mul(SECTOR_BYTES))
            .ok_or(IoError)?;
        let end = start.checked_add(len).ok_or(IoError)?;
        if end > self.bytes.len() || len % SECTOR_BYTES != 0 {
            return Err(IoError);
        }
        Ok(start..end)
    }
}

#[cfg(any(test, feature = "std"))]
impl Storage for VecDisk {
    fn capacity(&self) -> u64 {
        (self.bytes.len() / SECTOR_BYTES) as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(&mut self, sector: Sector, buf: &mut [u8]) -> Result<(), IoError> {
        let r = self.range(sector, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        self.io_sectors += (buf.len() / SECTOR_BYTES) as u64;
        Ok(())
    }

    fn write(&mut self, sector: Sector, buf: &[u8]) -> Result<(), IoError> {
        if self.read_only {
            return Err(IoError);
        }
        let r = self.range(sector, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        self.io_sectors += (buf.len() / SECTOR_BYTES) as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.flushes += 1;
        Ok(())
    }

    fn discard(&mut self, sector: Sector, count: u64, _secure: bool) -> Result<(), IoError> {
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(SECTOR_BYTES))
            .ok_or(IoError)?;
        let r = self.range(sector, len)?;
        self.bytes[r].fill(0);
        self.discarded += count;
        Ok(())
    }
}
