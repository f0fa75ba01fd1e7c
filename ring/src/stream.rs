//! The byte-stream rings of XenStore (`xs_wire.h`) and the console (`console.h`).
//!
//! Unlike `io/ring.h`, these carry a stream of bytes in two fixed buffers, one per direction,
//! each with a free-running consumer and producer index (`MASK_XENSTORE_IDX` masks an index to
//! a byte offset). There are no event indices: whoever moves an index sends an event.
//!
//! The same discipline as the slot rings applies: each side writes only its own two indices,
//! loads the peer's index once per call, and checks `prod - cons <= size` (wrapping) before
//! touching a byte; a violation breaks the ring for good.

use crate::error::{GeometryError, RingError, Violation};
use crate::index::RingIndex;
use crate::mem::{Region, SharedMemory, Word};
use core::marker::PhantomData;

/// One direction of a byte ring: where its bytes and its two indices live.
#[derive(Clone, Copy, Debug)]
struct Pipe {
    data: usize,
    size: u32,
    cons: Word,
    prod: Word,
}

/// The page layout of a byte ring. Only this crate builds one; see [`StreamLayout`].
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Client to server (`req` for XenStore, `out` for the console).
    requests: Pipe,
    /// Server to client (`rsp` for XenStore, `in` for the console).
    responses: Pipe,
}

mod sealed {
    pub trait Sealed {}
}

/// A byte-ring page layout: [`XenStore`] or [`Console`].
pub trait StreamLayout: sealed::Sealed {
    /// Where the buffers and indices live.
    const LAYOUT: Layout;
}

/// The `xenstore_domain_interface` page: `req[1024]`, `rsp[1024]`, then `req_cons`,
/// `req_prod`, `rsp_cons`, `rsp_prod`, `server_features`, `connection`, `error`.
#[derive(Clone, Copy, Debug)]
pub enum XenStore {}

impl sealed::Sealed for XenStore {}

impl StreamLayout for XenStore {
    const LAYOUT: Layout = Layout {
        requests: Pipe {
            data: 0,
            size: XS_RING_SIZE,
            cons: Word::at(2048),
            prod: Word::at(2052),
        },
        responses: Pipe {
            data: 1024,
            size: XS_RING_SIZE,
            cons: Word::at(2056),
            prod: Word::at(2060),
        },
    };
}

/// The `xencons_interface` page: `in[1024]` (to the guest), `out[2048]` (from the guest), then
/// `in_cons`, `in_prod`, `out_cons`, `out_prod`.
#[derive(Clone, Copy, Debug)]
pub enum Console {}

impl sealed::Sealed for Console {}

impl StreamLayout for Console {
    const LAYOUT: Layout = Layout {
        requests: Pipe {
            data: 1024,
            size: 2048,
            cons: Word::at(3080),
            prod: Word::at(3084),
        },
        responses: Pipe {
            data: 0,
            size: 1024,
            cons: Word::at(3072),
            prod: Word::at(3076),
        },
    };
}

/// `XENSTORE_RING_SIZE`: bytes in each XenStore buffer.
pub const XS_RING_SIZE: u32 = 1024;

const XS_SERVER_FEATURES: Word = Word::at(2064);
const XS_CONNECTION: Word = Word::at(2068);
const XS_ERROR: Word = Word::at(2072);

/// The `server_features` bitmap of the XenStore page.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ServerFeatures(pub u32);

impl ServerFeatures {
    /// `XENSTORE_SERVER_FEATURE_RECONNECTION`: the server supports ring reconnection.
    pub const RECONNECTION: Self = ServerFeatures(1);
    /// `XENSTORE_SERVER_FEATURE_ERROR`: the server reports errors in the `error` field.
    pub const ERROR: Self = ServerFeatures(2);

    /// Whether every feature in `other` is present.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The `connection` field of the XenStore page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Connection(pub u32);

impl Connection {
    /// `XENSTORE_CONNECTED`: the steady state.
    pub const CONNECTED: Self = Connection(0);
    /// `XENSTORE_RECONNECT`: the guest asked for a reconnection.
    pub const RECONNECT: Self = Connection(1);
}

/// The `error` field of the XenStore page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct XsErrorCode(pub u32);

impl XsErrorCode {
    /// `XENSTORE_ERROR_NONE`.
    pub const NONE: Self = XsErrorCode(0);
    /// `XENSTORE_ERROR_COMM`: communication problem.
    pub const COMM: Self = XsErrorCode(1);
    /// `XENSTORE_ERROR_RINGIDX`: invalid ring index.
    pub const RINGIDX: Self = XsErrorCode(2);
    /// `XENSTORE_ERROR_PROTO`: protocol violation (payload too long).
    pub const PROTO: Self = XsErrorCode(3);
}

/// One side's view of a byte-ring page: the memory, its own two private indices, and whether
/// the peer broke it.
///
/// # Invariants
///
/// `region` is at least one page, so every `Pipe` of every layout lies inside it;
/// `0 <= out_prod - (peer's out_cons) <= out.size` and `0 <= in_prod - in_cons <= in.size` as
/// last checked.
struct Stream<M> {
    region: Region<M>,
    /// The pipe we write, and our private copy of its producer index.
    out: Pipe,
    out_prod: RingIndex,
    /// The pipe we read, and our private copy of its consumer index.
    inp: Pipe,
    in_cons: RingIndex,
    broken: Option<Violation>,
}

impl<M: SharedMemory> Stream<M> {
    /// Checks that `mem` is at least one aligned page.
    fn region(mem: M) -> Result<Region<M>, GeometryError> {
        let len = mem.len();
        Region::new(mem).ok_or(if len < crate::mem::PAGE_SIZE {
            GeometryError::BadLength(len)
        } else {
            GeometryError::Misaligned
        })
    }

    fn new(mem: M, out: Pipe, inp: Pipe) -> Result<Self, RingError> {
        let region = Self::region(mem)?;
        let out_prod = RingIndex::new(region.load_acquire(out.prod));
        let in_cons = RingIndex::new(region.load_acquire(inp.cons));
        // INVARIANT: checked by `validate` before the stream is handed out.
        let mut stream = Stream {
            region,
            out,
            out_prod,
            inp,
            in_cons,
            broken: None,
        };
        stream.writable()?;
        stream.readable()?;
        Ok(stream)
    }

    fn check(&self) -> Result<(), RingError> {
        match self.broken {
            Some(v) => Err(RingError::Broken(v)),
            None => Ok(()),
        }
    }

    fn fail(&mut self, violation: Violation) -> RingError {
        self.broken = Some(violation);
        RingError::Broken(violation)
    }

    /// Loads the peer's consumer index of our outgoing pipe once, checks it, and returns the
    /// free space.
    fn writable(&mut self) -> Result<u32, RingError> {
        self.check()?;
        let cons = RingIndex::new(self.region.load_acquire(self.out.cons));
        let used = self.out_prod.since(cons);
        if used > self.out.size {
            let prod = self.out_prod;
            // A consumer a little ahead of our producer moved backwards past it; anything else
            // claims more unread bytes than the buffer holds.
            let v = if cons.since(prod) <= self.out.size {
                Violation::ConsumerPastProducer { prod, cons }
            } else {
                Violation::ProducerOverflow { prod, cons }
            };
            return Err(self.fail(v));
        }
        Ok(self.out.size - used)
    }

    /// Loads the peer's producer index of our incoming pipe once, checks it, and returns the
    /// producer index with the number of readable bytes.
    fn readable(&mut self) -> Result<(RingIndex, u32), RingError> {
        self.check()?;
        let prod = RingIndex::new(self.region.load_acquire(self.inp.prod));
        let cons = self.in_cons;
        let ready = prod.since(cons);
        if ready > self.inp.size {
            let v = if cons.since(prod) <= self.inp.size {
                Violation::ConsumerPastProducer { prod, cons }
            } else {
                Violation::ProducerOverflow { prod, cons }
            };
            return Err(self.fail(v));
        }
        Ok((prod, ready))
    }

    /// The byte offset in the page, and the contiguous length left before the buffer wraps,
    /// of the byte `index` names in `pipe`.
    fn place(pipe: Pipe, index: RingIndex) -> (usize, u32) {
        let masked = index.get() & (pipe.size - 1);
        // `masked < size <= 2048`: the conversion is lossless.
        (pipe.data + masked as usize, pipe.size - masked)
    }

    /// Copies as much of `data` as fits into the outgoing pipe and publishes it.
    fn write(&mut self, data: &[u8]) -> Result<usize, RingError> {
        let free = self.writable()?;
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX).min(free);
        let mut done = 0u32;
        while done < len {
            let (offset, contiguous) = Self::place(self.out, self.out_prod.add(done));
            let chunk = contiguous.min(len - done);
            let range = done as usize..(done + chunk) as usize;
            let copied = data
                .get(range)
                .and_then(|bytes| self.region.write_bytes(offset, bytes));
            if copied.is_none() {
                return Err(self.fail(Violation::OutOfBounds));
            }
            done += chunk;
        }
        self.out_prod = self.out_prod.add(len);
        // Release: the peer sees the bytes before the new producer index.
        self.region
            .store_release(self.out.prod, self.out_prod.get());
        Ok(len as usize)
    }

    /// Copies as many readable bytes as fit into `buf` and releases their space to the peer.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        let (_, ready) = self.readable()?;
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX).min(ready);
        let mut done = 0u32;
        while done < len {
            let (offset, contiguous) = Self::place(self.inp, self.in_cons.add(done));
            let chunk = contiguous.min(len - done);
            let range = done as usize..(done + chunk) as usize;
            let copied = match buf.get_mut(range) {
                Some(bytes) => self.region.read_bytes(offset, bytes),
                None => None,
            };
            if copied.is_none() {
                return Err(self.fail(Violation::OutOfBounds));
            }
            done += chunk;
        }
        self.in_cons = self.in_cons.add(len);
        // Release: our reads of the bytes complete before the peer may overwrite them.
        self.region.store_release(self.inp.cons, self.in_cons.get());
        Ok(len as usize)
    }
}

/// The client side of a byte ring (the guest): writes requests, reads responses.
///
/// Owns `req_prod` and `rsp_cons` (console: `out_prod`, `in_cons`).
pub struct StreamClient<M, L> {
    stream: Stream<M>,
    _layout: PhantomData<L>,
}

/// The server side of a byte ring (xenstored, xenconsoled): reads requests, writes responses.
///
/// Owns `req_cons` and `rsp_prod` (console: `out_cons`, `in_prod`), and for XenStore the
/// `server_features` and `error` fields.
pub struct StreamServer<M, L> {
    stream: Stream<M>,
    _layout: PhantomData<L>,
}

/// The guest side of the XenStore ring.
pub type XsClient<M> = StreamClient<M, XenStore>;
/// The xenstored side of the XenStore ring.
pub type XsServer<M> = StreamServer<M, XenStore>;
/// The guest side of the console ring.
pub type ConsoleClient<M> = StreamClient<M, Console>;
/// The console daemon's side of the console ring.
pub type ConsoleServer<M> = StreamServer<M, Console>;

impl<M: SharedMemory, L: StreamLayout> StreamClient<M, L> {
    /// Attaches to a page the toolstack set up, taking the indices found and checking them.
    pub fn attach(mem: M) -> Result<Self, RingError> {
        let layout = L::LAYOUT;
        Ok(StreamClient {
            stream: Stream::new(mem, layout.requests, layout.responses)?,
            _layout: PhantomData,
        })
    }

    /// Copies as much of `data` as fits into the request buffer and publishes it; returns the
    /// number of bytes written (0 when the buffer is full). Send an event afterwards.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, RingError> {
        self.stream.write(data)
    }

    /// Copies up to `buf.len()` response bytes out and frees their space; returns the number
    /// of bytes read (0 when there are none). Send an event afterwards.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        self.stream.read(buf)
    }

    /// Bytes that [`write`](Self::write) could take now (loads the server's `req_cons`).
    pub fn writable(&mut self) -> Result<usize, RingError> {
        self.stream.writable().map(|n| n as usize)
    }

    /// Bytes that [`read`](Self::read) could return now (loads the server's `rsp_prod`).
    pub fn readable(&mut self) -> Result<usize, RingError> {
        self.stream.readable().map(|(_, n)| n as usize)
    }

    /// The violation that broke this ring, if any.
    pub fn broken(&self) -> Option<Violation> {
        self.stream.broken
    }

    /// The shared memory.
    pub fn memory(&self) -> &M {
        self.stream.region.memory()
    }
}

impl<M: SharedMemory> StreamClient<M, XenStore> {
    /// The features the server advertises (a hint: the server could change it at any time).
    pub fn server_features(&self) -> ServerFeatures {
        ServerFeatures(self.stream.region.load_acquire(XS_SERVER_FEATURES))
    }

    /// The connection state the page shows.
    pub fn connection(&self) -> Connection {
        Connection(self.stream.region.load_acquire(XS_CONNECTION))
    }

    /// The error the server reported, if it supports [`ServerFeatures::ERROR`].
    pub fn error(&self) -> XsErrorCode {
        XsErrorCode(self.stream.region.load_acquire(XS_ERROR))
    }
}

impl<M: SharedMemory, L: StreamLayout> StreamServer<M, L> {
    /// Sets up a fresh page: zeroes it whole (indices, buffers, XenStore fields) and attaches.
    pub fn init(mem: M) -> Result<Self, RingError> {
        let region = Stream::region(mem)?;
        if region.zero(0, crate::mem::PAGE_SIZE).is_none() {
            return Err(RingError::Broken(Violation::OutOfBounds));
        }
        Self::attach(region.into_inner())
    }

    /// Attaches to a page as it is, taking the indices found and checking them.
    pub fn attach(mem: M) -> Result<Self, RingError> {
        let layout = L::LAYOUT;
        Ok(StreamServer {
            stream: Stream::new(mem, layout.responses, layout.requests)?,
            _layout: PhantomData,
        })
    }

    /// Copies up to `buf.len()` request bytes out and frees their space; returns the number of
    /// bytes read (0 when there are none). Send an event afterwards.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        self.stream.read(buf)
    }

    /// Copies as much of `data` as fits into the response buffer and publishes it; returns
    /// the number of bytes written (0 when the buffer is full). Send an event afterwards.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, RingError> {
        self.stream.write(data)
    }

    /// Bytes that [`write`](Self::write) could take now (loads the client's `rsp_cons`).
    pub fn writable(&mut self) -> Result<usize, RingError> {
        self.stream.writable().map(|n| n as usize)
    }

    /// Bytes that [`read`](Self::read) could return now (loads the client's `req_prod`).
    pub fn readable(&mut self) -> Result<usize, RingError> {
        self.stream.readable().map(|(_, n)| n as usize)
    }

    /// The violation that broke this ring, if any.
    pub fn broken(&self) -> Option<Violation> {
        self.stream.broken
    }

    /// The shared memory.
    pub fn memory(&self) -> &M {
        self.stream.region.memory()
    }
}

impl<M: SharedMemory> StreamServer<M, XenStore> {
    /// Advertises `features` in `server_features`.
    pub fn set_server_features(&self, features: ServerFeatures) {
        self.stream
            .region
            .store_release(XS_SERVER_FEATURES, features.0);
    }

    /// Reports `error` in the `error` field.
    pub fn set_error(&self, error: XsErrorCode) {
        self.stream.region.store_release(XS_ERROR, error.0);
    }

    /// The connection state the page shows (the guest writes `RECONNECT` to ask for a reset).
    pub fn connection(&self) -> Connection {
        Connection(self.stream.region.load_acquire(XS_CONNECTION))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_c_headers() {
        // offsetof(struct xenstore_domain_interface, ...) and (struct xencons_interface, ...).
        let xs = XenStore::LAYOUT;
        assert_eq!((xs.requests.data, xs.responses.data), (0, 1024));
        assert_eq!(
            (xs.requests.cons.offset(), xs.requests.prod.offset()),
            (2048, 2052)
        );
        assert_eq!(
            (xs.responses.cons.offset(), xs.responses.prod.offset()),
            (2056, 2060)
        );
        assert_eq!(
            (
                XS_SERVER_FEATURES.offset(),
                XS_CONNECTION.offset(),
                XS_ERROR.offset()
            ),
            (2064, 2068, 2072)
        );
        let cons = Console::LAYOUT;
        assert_eq!((cons.responses.data, cons.responses.size), (0, 1024));
        assert_eq!((cons.requests.data, cons.requests.size), (1024, 2048));
        assert_eq!(
            (cons.responses.cons.offset(), cons.responses.prod.offset()),
            (3072, 3076)
        );
        assert_eq!(
            (cons.requests.cons.offset(), cons.requests.prod.offset()),
            (3080, 3084)
        );
    }
}
