//! The [`XenStore`] trait protocol engines are written against, and the bounded transaction loop.
//!
//! The kernel glue implements [`XenStore`] on top of its XenStore connection; the host
//! simulator implements it in memory; [`super::Client`] implements it over any
//! [`super::XsTransport`]. Every method works in caller-provided buffers, and every path is a
//! [`Path`] the caller has already validated.

use super::msg::{Perm, PermList};
use super::path::Path;
use super::wire::{Errno, Error, Strings, TxId};
use xen_sys::DomId;

/// How many times [`with_transaction`] tries before giving up with [`Error::TooManyRetries`],
/// when the caller has no better bound.
pub const DEFAULT_TRANSACTION_ATTEMPTS: u32 = 32;

/// A registered watch.
///
/// # Invariants
///
/// Only the implementation that returned it interprets the fields; a stale handle (after
/// [`XenStore::unwatch`]) is refused with [`Error::NoSuchWatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatchId {
    /// Implementation-defined slot.
    pub slot: u16,
    /// Implementation-defined generation, so reused slots do not alias old handles.
    pub generation: u16,
}

/// A pending watch event, as returned by [`XenStore::poll_watch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The node at this path (copied into the caller's buffer, `len` bytes) or below it changed.
    Changed {
        /// Bytes of path written to the front of the caller's buffer.
        len: usize,
    },
    /// Events were lost to the bounded queue: re-read everything under the watched path.
    Overflow,
}

/// XenStore operations in terms of fixed buffers.
///
/// Errors from xenstored arrive as [`Error::Daemon`]; a missing node is
/// `Error::Daemon(Errno::Enoent)` (see [`XenStore::read_optional`]).
pub trait XenStore {
    /// Reads the value at `path` into `buf`; returns its length. [`Error::NoSpace`] if `buf`
    /// is too small.
    fn read(&mut self, tx: TxId, path: Path<'_>, buf: &mut [u8]) -> Result<usize, Error>;

    /// Writes `value` at `path`, creating missing parents.
    fn write(&mut self, tx: TxId, path: Path<'_>, value: &[u8]) -> Result<(), Error>;

    /// Lists the children of `path` into `buf` (NUL-terminated leaf names).
    fn directory<'b>(
        &mut self,
        tx: TxId,
        path: Path<'_>,
        buf: &'b mut [u8],
    ) -> Result<Strings<'b>, Error>;

    /// Creates `path` (and parents) if missing.
    fn mkdir(&mut self, tx: TxId, path: Path<'_>) -> Result<(), Error>;

    /// Removes `path` and everything below it.
    fn remove(&mut self, tx: TxId, path: Path<'_>) -> Result<(), Error>;

    /// Reads the permissions of `path` into `buf`.
    fn get_perms<'b>(
        &mut self,
        tx: TxId,
        path: Path<'_>,
        buf: &'b mut [u8],
    ) -> Result<PermList<'b>, Error>;

    /// Replaces the permissions of `path` (owner first).
    fn set_perms(&mut self, tx: TxId, path: Path<'_>, perms: &[Perm]) -> Result<(), Error>;

    /// Starts a transaction.
    fn transaction_start(&mut self) -> Result<TxId, Error>;

    /// Commits (`commit = true`) or aborts a transaction. A commit that conflicted fails with
    /// `Error::Daemon(Errno::Eagain)`; the transaction is over either way.
    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), Error>;

    /// Registers a watch on `path` (or an `@special` path). xenstored fires it once at once.
    fn watch(&mut self, path: Path<'_>) -> Result<WatchId, Error>;

    /// Removes a watch; its pending events are discarded.
    fn unwatch(&mut self, id: WatchId) -> Result<(), Error>;

    /// Takes the next pending event of watch `id`, if any, without blocking. The event path is
    /// copied into `buf`; [`Error::NoSpace`] leaves the event queued.
    fn poll_watch(&mut self, id: WatchId, buf: &mut [u8]) -> Result<Option<WatchEvent>, Error>;

    /// Copies `/local/domain/<domid>` (as xenstored spells it) into `buf`; returns its length.
    fn get_domain_path(&mut self, domid: DomId, buf: &mut [u8]) -> Result<usize, Error>;

    /// Like [`XenStore::read`], but a missing node is `Ok(None)`.
    fn read_optional(
        &mut self,
        tx: TxId,
        path: Path<'_>,
        buf: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        match self.read(tx, path, buf) {
            Ok(n) => Ok(Some(n)),
            Err(Error::Daemon(Errno::Enoent)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the decimal text of `value`.
    fn write_decimal(&mut self, tx: TxId, path: Path<'_>, value: u64) -> Result<(), Error> {
        let d = crate::num::Decimal::new(value);
        self.write(tx, path, d.as_bytes())
    }
}

/// An error type [`with_transaction`] can retry on: it can hold a XenStore error and say
/// whether it is xenstored's `EAGAIN`.
pub trait TransactionError: From<Error> {
    /// Whether this is `Error::Daemon(Errno::Eagain)`.
    fn is_eagain(&self) -> bool;
}

impl TransactionError for Error {
    fn is_eagain(&self) -> bool {
        *self == Error::Daemon(Errno::Eagain)
    }
}

/// Runs `body` in a transaction, retrying the whole body while xenstored answers `EAGAIN`
/// (on start, inside the body, or on commit), at most `max_attempts` times; after that,
/// [`Error::TooManyRetries`]. Any other error aborts the transaction and is returned as is.
///
/// `body` may run several times, so it must only have effects through `tx`. Its error type
/// can be anything that wraps a XenStore [`Error`] (e.g. `feature::FeatureError`).
pub fn with_transaction<S, R, E, F>(store: &mut S, max_attempts: u32, mut body: F) -> Result<R, E>
where
    S: XenStore + ?Sized,
    E: TransactionError,
    F: FnMut(&mut S, TxId) -> Result<R, E>,
{
    const EAGAIN: Error = Error::Daemon(Errno::Eagain);
    for _ in 0..max_attempts {
        let tx = match store.transaction_start() {
            Ok(tx) => tx,
            Err(EAGAIN) => continue,
            Err(e) => return Err(e.into()),
        };
        match body(store, tx) {
            Ok(result) => match store.transaction_end(tx, true) {
                Ok(()) => return Ok(result),
                Err(EAGAIN) => continue,
                Err(e) => return Err(e.into()),
            },
            Err(e) => {
                // Best effort: the transaction may already be gone (e.g. the connection broke).
                let _ = store.transaction_end(tx, false);
                if !e.is_eagain() {
                    return Err(e);
                }
            }
        }
    }
    Err(Error::TooManyRetries.into())
}
