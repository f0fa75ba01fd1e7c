//! A synchronous XenStore client over any [`XsTransport`], with fixed buffers and bounded watch queues.
//!
//! One request is in flight at a time: [`Client::call`] encodes the request with a fresh
//! request id, sends it, then reads messages until the reply carrying that id arrives. Watch
//! events that arrive meanwhile are routed by token into per-watch [`WatchQueue`]s (bounded, see
//! [`super::watch`]); replies with other ids (left over from an interrupted call, or invented by
//! a misbehaving daemon) are discarded, at most [`MAX_STRAY_REPLIES`] per call.
//!
//! Memory is fixed by the type: two message buffers of [`MSG_MAX`] bytes plus `WATCHES` slots of
//! one path and `DEPTH` queued event paths of [`EVENT_PATH_MAX`] bytes each.

use super::decode::Decoder;
use super::msg::{Perm, PermList, Reply, Request};
use super::path::{Path, PathBuf};
use super::store::{WatchEvent, WatchId, XenStore};
use super::transport::XsTransport;
use super::watch::{Popped, WatchQueue, EVENT_PATH_MAX};
use super::wire::{Errno, Error, Message, MsgType, ReqId, Strings, TxId, MSG_MAX};
use xen_sys::DomId;

/// Replies with a foreign request id tolerated while waiting for one reply.
pub const MAX_STRAY_REPLIES: u32 = 16;

/// Messages [`Client::process_pending`] handles per call, so a flooding peer cannot keep it
/// busy forever.
pub const PENDING_BUDGET: u32 = 64;

/// Diagnostic counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Replies whose request id matched nothing outstanding.
    pub stray_replies: u64,
    /// Messages of an unknown type that were skipped.
    pub unknown_types: u64,
    /// Watch events that failed to parse.
    pub malformed_events: u64,
    /// Watch events whose token matched no live watch.
    pub unmatched_events: u64,
}

/// Longest token this client generates (`xc<slot>.<generation>`).
const TOKEN_MAX: usize = 16;

fn make_token(slot: u16, generation: u16) -> ([u8; TOKEN_MAX], usize) {
    let mut out = [0u8; TOKEN_MAX];
    let s = crate::num::Decimal::new(slot);
    let g = crate::num::Decimal::new(generation);
    let parts: [&[u8]; 4] = [b"xc", s.as_bytes(), b".", g.as_bytes()];
    let mut len = 0;
    for part in parts {
        // 2 + 5 + 1 + 5 = 13 bytes at most, within TOKEN_MAX.
        if let Some(dst) = out.get_mut(len..len + part.len()) {
            dst.copy_from_slice(part);
            len += part.len();
        }
    }
    (out, len)
}

struct Slot<const DEPTH: usize> {
    live: bool,
    generation: u16,
    path: PathBuf<EVENT_PATH_MAX>,
    queue: WatchQueue<DEPTH>,
}

impl<const DEPTH: usize> Slot<DEPTH> {
    fn token(&self, index: u16) -> ([u8; TOKEN_MAX], usize) {
        make_token(index, self.generation)
    }
}

/// A XenStore connection with `WATCHES` watch slots of `DEPTH` queued events each.
pub struct Client<T: XsTransport, const WATCHES: usize = 8, const DEPTH: usize = 8> {
    transport: T,
    decoder: Decoder,
    out: [u8; MSG_MAX],
    next_req: u32,
    slots: [Slot<DEPTH>; WATCHES],
    stats: ClientStats,
}

fn copy_into(buf: &mut [u8], src: &[u8]) -> Result<usize, Error> {
    let dst = buf.get_mut(..src.len()).ok_or(Error::NoSpace)?;
    dst.copy_from_slice(src);
    Ok(src.len())
}

fn expect_ok(reply: Reply<'_>) -> Result<(), Error> {
    match reply {
        Reply::Ok => Ok(()),
        _ => Err(Error::UnexpectedReply),
    }
}

/// Reads until one whole message is in `decoder` (then available from `decoder.message()`).
fn receive<T: XsTransport>(
    transport: &mut T,
    decoder: &mut Decoder,
    stats: &mut ClientStats,
) -> Result<(), Error> {
    loop {
        let spare = decoder.spare();
        if spare.is_empty() {
            return Err(Error::Broken);
        }
        let n = transport.recv(spare)?;
        if n == 0 {
            return Err(Error::Transport);
        }
        match decoder.step(n) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(Error::UnknownType(_)) => stats.unknown_types = stats.unknown_types.wrapping_add(1),
            Err(e) => return Err(e),
        }
    }
}

/// Routes a watch event to its slot; returns the slot index if one matched.
fn dispatch_event<const DEPTH: usize>(
    slots: &mut [Slot<DEPTH>],
    stats: &mut ClientStats,
    msg: &Message<'_>,
) -> Option<usize> {
    let (path, token) = match Reply::parse(msg) {
        Ok(Reply::WatchEvent { path, token }) => (path, token),
        _ => {
            stats.malformed_events = stats.malformed_events.wrapping_add(1);
            return None;
        }
    };
    for (i, slot) in slots.iter_mut().enumerate() {
        let Ok(index) = u16::try_from(i) else { break };
        let (tok, len) = slot.token(index);
        if slot.live && tok.get(..len) == Some(token) {
            slot.queue.push(path.as_bytes());
            return Some(i);
        }
    }
    stats.unmatched_events = stats.unmatched_events.wrapping_add(1);
    None
}

impl<T: XsTransport, const WATCHES: usize, const DEPTH: usize> Client<T, WATCHES, DEPTH> {
    /// A client over `transport`, which must be at a message boundary.
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            decoder: Decoder::new(),
            out: [0; MSG_MAX],
            next_req: 1,
            slots: core::array::from_fn(|_| Slot {
                live: false,
                generation: 0,
                path: PathBuf::new(),
                queue: WatchQueue::new(),
            }),
            stats: ClientStats::default(),
        }
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Diagnostic counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Whether framing was lost; every call fails with [`Error::Broken`] until
    /// [`Client::reset_connection`].
    pub fn is_broken(&self) -> bool {
        self.decoder.is_broken()
    }

    /// Restarts decoding at a message boundary (after the transport reconnected). Watches stay
    /// registered locally; xenstored may have dropped them, so re-register if needed.
    pub fn reset_connection(&mut self) {
        self.decoder.reset();
    }

    /// Sends `req` and hands its reply to `on_reply`. An `XS_ERROR` reply becomes
    /// [`Error::Daemon`]; a reply of another type than the request becomes
    /// [`Error::UnexpectedReply`].
    pub fn call<R>(
        &mut self,
        tx: TxId,
        req: &Request<'_>,
        on_reply: impl FnOnce(Reply<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if self.decoder.is_broken() {
            return Err(Error::Broken);
        }
        let req_id = ReqId(self.next_req);
        self.next_req = self.next_req.wrapping_add(1);
        let n = req.encode(req_id, tx, &mut self.out)?;
        self.transport
            .send(self.out.get(..n).ok_or(Error::NoSpace)?)?;
        let expected = req.msg_type();
        let mut strays = 0u32;
        loop {
            receive(&mut self.transport, &mut self.decoder, &mut self.stats)?;
            let Some(msg) = self.decoder.message() else {
                return Err(Error::Broken);
            };
            if msg.header.msg_type == MsgType::WatchEvent {
                dispatch_event(&mut self.slots, &mut self.stats, &msg);
                continue;
            }
            if msg.header.req_id != req_id {
                self.stats.stray_replies = self.stats.stray_replies.wrapping_add(1);
                strays += 1;
                if strays > MAX_STRAY_REPLIES {
                    return Err(Error::UnexpectedReply);
                }
                continue;
            }
            if msg.header.msg_type == MsgType::Error {
                return Err(match Reply::parse(&msg)? {
                    Reply::Error(e) => Error::Daemon(e),
                    _ => Error::Malformed,
                });
            }
            if msg.header.msg_type != expected {
                return Err(Error::UnexpectedReply);
            }
            return on_reply(Reply::parse(&msg)?);
        }
    }

    /// Blocks until a watch event arrives for a live watch, and returns that watch. Replies
    /// arriving with no request outstanding are discarded (at most [`MAX_STRAY_REPLIES`]).
    pub fn wait_event(&mut self) -> Result<WatchId, Error> {
        if let Some(id) = self.pending_watch() {
            return Ok(id);
        }
        let mut strays = 0u32;
        loop {
            receive(&mut self.transport, &mut self.decoder, &mut self.stats)?;
            let Some(msg) = self.decoder.message() else {
                return Err(Error::Broken);
            };
            if msg.header.msg_type == MsgType::WatchEvent {
                if let Some(i) = dispatch_event(&mut self.slots, &mut self.stats, &msg) {
                    if let Some(id) = self.id_of(i) {
                        return Ok(id);
                    }
                }
                continue;
            }
            self.stats.stray_replies = self.stats.stray_replies.wrapping_add(1);
            strays += 1;
            if strays > MAX_STRAY_REPLIES {
                return Err(Error::UnexpectedReply);
            }
        }
    }

    /// Handles messages that have already arrived, without blocking: watch events are queued,
    /// replies (none can be outstanding here) are discarded as strays. Stops after
    /// [`PENDING_BUDGET`] messages; returns how many were handled. Call it when the transport
    /// signals input (e.g. from the XenStore event-channel handler).
    pub fn process_pending(&mut self) -> Result<u32, Error> {
        let mut handled = 0u32;
        while handled < PENDING_BUDGET {
            let spare = self.decoder.spare();
            if spare.is_empty() {
                return Err(Error::Broken);
            }
            let n = self.transport.try_recv(spare)?;
            if n == 0 {
                break;
            }
            match self.decoder.step(n) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(Error::UnknownType(_)) => {
                    self.stats.unknown_types = self.stats.unknown_types.wrapping_add(1);
                    handled += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
            handled += 1;
            let Some(msg) = self.decoder.message() else {
                return Err(Error::Broken);
            };
            if msg.header.msg_type == MsgType::WatchEvent {
                dispatch_event(&mut self.slots, &mut self.stats, &msg);
            } else {
                self.stats.stray_replies = self.stats.stray_replies.wrapping_add(1);
            }
        }
        Ok(handled)
    }

    /// A live watch with something pending, if any.
    pub fn pending_watch(&self) -> Option<WatchId> {
        (0..WATCHES).find_map(|i| {
            let slot = self.slots.get(i)?;
            if slot.live && !slot.queue.is_empty() {
                self.id_of(i)
            } else {
                None
            }
        })
    }

    fn id_of(&self, i: usize) -> Option<WatchId> {
        let slot = self.slots.get(i)?;
        Some(WatchId {
            slot: u16::try_from(i).ok()?,
            generation: slot.generation,
        })
    }

    fn slot_mut(&mut self, id: WatchId) -> Result<&mut Slot<DEPTH>, Error> {
        match self.slots.get_mut(usize::from(id.slot)) {
            Some(s) if s.live && s.generation == id.generation => Ok(s),
            _ => Err(Error::NoSuchWatch),
        }
    }

    /// Reads the value of `path` into `buf`; returns its length.
    pub fn read(&mut self, tx: TxId, path: Path<'_>, buf: &mut [u8]) -> Result<usize, Error> {
        self.call(tx, &Request::Read { path }, |r| match r {
            Reply::Value(v) => copy_into(buf, v),
            _ => Err(Error::UnexpectedReply),
        })
    }

    /// Writes `value` at `path`.
    pub fn write(&mut self, tx: TxId, path: Path<'_>, value: &[u8]) -> Result<(), Error> {
        self.call(tx, &Request::Write { path, value }, expect_ok)
    }

    /// Creates `path`.
    pub fn mkdir(&mut self, tx: TxId, path: Path<'_>) -> Result<(), Error> {
        self.call(tx, &Request::Mkdir { path }, expect_ok)
    }

    /// Removes `path` and its children.
    pub fn rm(&mut self, tx: TxId, path: Path<'_>) -> Result<(), Error> {
        self.call(tx, &Request::Rm { path }, expect_ok)
    }

    /// Lists the children of `path` into `buf`. Falls back to `XS_DIRECTORY_PART` when
    /// xenstored answers `E2BIG`; a list that changes between parts fails with `EAGAIN`.
    pub fn directory<'b>(
        &mut self,
        tx: TxId,
        path: Path<'_>,
        buf: &'b mut [u8],
    ) -> Result<Strings<'b>, Error> {
        let whole = self.call(tx, &Request::Directory { path }, |r| match r {
            Reply::Directory(children) => copy_into(buf, children.remainder()),
            _ => Err(Error::UnexpectedReply),
        });
        let len = match whole {
            Ok(n) => n,
            Err(Error::Daemon(Errno::E2big)) => self.directory_parts(tx, path, buf)?,
            Err(e) => return Err(e),
        };
        Strings::new(buf.get(..len).ok_or(Error::NoSpace)?)
    }

    fn directory_parts(
        &mut self,
        tx: TxId,
        path: Path<'_>,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        let mut filled = 0usize;
        let mut generation = None;
        // Each part must add at least one byte, so `buf.len() + 1` parts bound the loop.
        for _ in 0..=buf.len() {
            let offset = u32::try_from(filled).map_err(|_| Error::NoSpace)?;
            let dst = buf.get_mut(filled..).ok_or(Error::NoSpace)?;
            let (gen, n, complete) =
                self.call(tx, &Request::DirectoryPart { path, offset }, |r| match r {
                    Reply::DirectoryPart {
                        generation,
                        children,
                        complete,
                    } => Ok((generation, copy_into(dst, children.remainder())?, complete)),
                    _ => Err(Error::UnexpectedReply),
                })?;
            if generation.is_some_and(|g| g != gen) {
                return Err(Error::Daemon(Errno::Eagain));
            }
            generation = Some(gen);
            filled = filled.checked_add(n).ok_or(Error::NoSpace)?;
            if complete {
                return Ok(filled);
            }
            if n == 0 {
                return Err(Error::Malformed);
            }
        }
        Err(Error::NoSpace)
    }

    /// Reads the permissions of `path` into `buf`.
    pub fn get_perms<'b>(
        &mut self,
        tx: TxId,
        path: Path<'_>,
        buf: &'b mut [u8],
    ) -> Result<PermList<'b>, Error> {
        let len = self.call(tx, &Request::GetPerms { path }, |r| match r {
            Reply::Perms(PermList::Wire(raw)) => copy_into(buf, raw),
            _ => Err(Error::UnexpectedReply),
        })?;
        PermList::parse(buf.get(..len).ok_or(Error::NoSpace)?)
    }

    /// Replaces the permissions of `path`.
    pub fn set_perms(&mut self, tx: TxId, path: Path<'_>, perms: &[Perm]) -> Result<(), Error> {
        self.call(
            tx,
            &Request::SetPerms {
                path,
                perms: PermList::Slice(perms),
            },
            expect_ok,
        )
    }

    /// Starts a transaction.
    pub fn transaction_start(&mut self) -> Result<TxId, Error> {
        self.call(TxId::NONE, &Request::TransactionStart, |r| match r {
            Reply::TransactionStarted(tx) if tx != TxId::NONE => Ok(tx),
            _ => Err(Error::UnexpectedReply),
        })
    }

    /// Commits or aborts a transaction.
    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), Error> {
        self.call(tx, &Request::TransactionEnd { commit }, expect_ok)
    }

    /// Registers a watch. Paths longer than [`EVENT_PATH_MAX`] are refused with
    /// [`Error::NoSpace`].
    pub fn watch(&mut self, path: Path<'_>) -> Result<WatchId, Error> {
        let index = self
            .slots
            .iter()
            .position(|s| !s.live)
            .ok_or(Error::TooManyWatches)?;
        let index16 = u16::try_from(index).map_err(|_| Error::TooManyWatches)?;
        let slot = self.slots.get_mut(index).ok_or(Error::TooManyWatches)?;
        slot.path.set(path)?;
        slot.generation = slot.generation.wrapping_add(1);
        slot.queue.clear();
        // Live before the request goes out: xenstored fires the watch once straight away.
        slot.live = true;
        let id = WatchId {
            slot: index16,
            generation: slot.generation,
        };
        let (token, len) = slot.token(index16);
        let result = self.call(
            TxId::NONE,
            &Request::Watch {
                path,
                token: token.get(..len).unwrap_or(&[]),
            },
            expect_ok,
        );
        if let Err(e) = result {
            if let Some(slot) = self.slots.get_mut(index) {
                slot.live = false;
                slot.queue.clear();
            }
            return Err(e);
        }
        Ok(id)
    }

    /// Removes a watch. The local slot is freed even if xenstored reports an error; `ENOENT`
    /// (xenstored had already forgotten it) counts as success.
    pub fn unwatch(&mut self, id: WatchId) -> Result<(), Error> {
        let slot = self.slot_mut(id)?;
        slot.live = false;
        slot.queue.clear();
        let path_copy = slot.path.clone();
        let (token, len) = make_token(id.slot, id.generation);
        let path = path_copy.as_path()?;
        match self.call(
            TxId::NONE,
            &Request::Unwatch {
                path,
                token: token.get(..len).unwrap_or(&[]),
            },
            expect_ok,
        ) {
            Ok(()) | Err(Error::Daemon(Errno::Enoent)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes the next pending event of watch `id`, after [`Client::process_pending`].
    pub fn poll_watch(&mut self, id: WatchId, buf: &mut [u8]) -> Result<Option<WatchEvent>, Error> {
        self.slot_mut(id)?;
        self.process_pending()?;
        let slot = self.slot_mut(id)?;
        match slot.queue.pop(buf) {
            Ok(Some(Popped::Changed { len })) => Ok(Some(WatchEvent::Changed { len })),
            Ok(Some(Popped::Overflow)) => Ok(Some(WatchEvent::Overflow)),
            Ok(None) => Ok(None),
            Err(_) => Err(Error::NoSpace),
        }
    }

    /// Event counters of watch `id`'s queue.
    pub fn watch_stats(&mut self, id: WatchId) -> Result<super::watch::QueueStats, Error> {
        Ok(self.slot_mut(id)?.queue.stats())
    }

    /// Drops every watch and transaction of this connection (`XS_RESET_WATCHES`).
    pub fn reset_watches(&mut self) -> Result<(), Error> {
        for slot in self.slots.iter_mut() {
            slot.live = false;
            slot.queue.clear();
        }
        self.call(TxId::NONE, &Request::ResetWatches, expect_ok)
    }

    /// Copies the home path of `domid` into `buf`; returns its length.
    pub fn get_domain_path(&mut self, domid: DomId, buf: &mut [u8]) -> Result<usize, Error> {
        self.call(TxId::NONE, &Request::GetDomainPath { domid }, |r| match r {
            Reply::DomainPath(p) => copy_into(buf, p.as_bytes()),
            _ => Err(Error::UnexpectedReply),
        })
    }
}

impl<T: XsTransport, const WATCHES: usize, const DEPTH: usize> XenStore
    for Client<T, WATCHES, DEPTH>
{
    fn read(&mut self, tx: TxId, path: Path<'_>, buf: &mut [u8]) -> Result<usize, Error> {
        Client::read(self, tx, path, buf)
    }

    fn write(&mut self, tx: TxId, path: Path<'_>, value: &[u8]) -> Result<(), Error> {
        Client::write(self, tx, path, value)
    }

    fn directory<'b>(
        &mut self,
        tx: TxId,
        path: Path<'_>,
        buf: &'b mut [u8],
    ) -> Result<Strings<'b>, Error> {
        Client::directory(self, tx, path, buf)
    }

    fn mkdir(&mut self, tx: TxId, path: Path<'_>) -> Result<(), Error> {
        Client::mkdir(self, tx, path)
    }

    fn remove(&mut self, tx: TxId, path: Path<'_>) -> Result<(), Error> {
        Client::rm(self, tx, path)
    }

    fn get_perms<'b>(
        &mut self,
        tx: TxId,
        path: Path<'_>,
        buf: &'b mut [u8],
    ) -> Result<PermList<'b>, Error> {
        Client::get_perms(self, tx, path, buf)
    }

    fn set_perms(&mut self, tx: TxId, path: Path<'_>, perms: &[Perm]) -> Result<(), Error> {
        Client::set_perms(self, tx, path, perms)
    }

    fn transaction_start(&mut self) -> Result<TxId, Error> {
        Client::transaction_start(self)
    }

    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), Error> {
        Client::transaction_end(self, tx, commit)
    }

    fn watch(&mut self, path: Path<'_>) -> Result<WatchId, Error> {
        Client::watch(self, path)
    }

    fn unwatch(&mut self, id: WatchId) -> Result<(), Error> {
        Client::unwatch(self, id)
    }

    fn poll_watch(&mut self, id: WatchId, buf: &mut [u8]) -> Result<Option<WatchEvent>, Error> {
        Client::poll_watch(self, id, buf)
    }

    fn get_domain_path(&mut self, domid: DomId, buf: &mut [u8]) -> Result<usize, Error> {
        Client::get_domain_path(self, domid, buf)
    }
}
