//! An in-memory xenstored that speaks the real wire protocol to every simulated domain.
//!
//! Each connection (one per [`XsConnection`] or [`XsRing`]) feeds raw bytes into a
//! [`Decoder`] from xen-core, parses each message with [`Request::parse`], applies it to the
//! tree with the caller's permissions, and queues the reply encoded by [`Reply::encode`]. So
//! the client in xen-core and this server share the codec but nothing else: a bug in one is
//! seen by the other.
//!
//! # Semantics
//!
//! - Permissions as in [`tree`]: a domain writes only where a node's permissions let it (its
//!   home `/local/domain/<id>`, unless the toolstack grants more); dom0 may do anything.
//! - Transactions are optimistic: each works on a snapshot taken at its start and records the
//!   version of every node it reads or writes; the commit fails with `EAGAIN` if any of those
//!   changed meanwhile, otherwise its writes are replayed on the live tree at once.
//! - Watches fire once when registered, then on every write, creation, removal or permission
//!   change at or below their path (and on removal of a node above them), for nodes the
//!   watcher may read. Relative watches get relative event paths.
//! - Path length: as C xenstored's default `path-max` quota, the part of a path after
//!   `/local/domain/<id>/` (the whole path elsewhere) is limited to `XENSTORE_REL_PATH_MAX`
//!   bytes (`EINVAL`), which is stricter than `XENSTORE_ABS_PATH_MAX`.
//! - Quotas: values over [`tree::VALUE_MAX`] bytes and nodes over
//!   [`tree::NODES_PER_DOMAIN`] per domain are refused (`ENOSPC`); at most
//!   [`WATCHES_PER_CONN`] watches (`E2BIG`) and [`TRANSACTIONS_PER_CONN`] open transactions
//!   (`ENOSPC`) per connection.
//! - A connection queues at most [`EVENTS_PER_CONN`] undelivered watch events; further events
//!   are dropped and counted (xenstored's answer to XSA-349), so a domain flooding a watched
//!   path cannot grow the daemon's memory.
//! - A header announcing more than [`PAYLOAD_MAX`] bytes loses framing: the connection is
//!   closed (a ring gets `XENSTORE_ERROR_PROTO`).
//!
//! Faults: [`Sim::inject_eagain`](crate::Sim::inject_eagain) fails the next commits with
//! `EAGAIN`; [`Sim::stall_xenstored`](crate::Sim::stall_xenstored) makes it swallow requests
//! without answering.

mod transport;
pub mod tree;

pub use transport::{XsConnection, XsRing};

use crate::evtchn::EventChannels;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tree::{can_read, is_under, Change, Tree};
use xen_core::xs::wire::{MSG_MAX, PAYLOAD_MAX, REL_PATH_MAX};
use xen_core::xs::{
    Decoder, Errno, Error, Header, Message, MsgType, Path, Perm, PermList, Reply, Request, Strings,
    TxId,
};
use xen_sys::{DomId, Port};

/// Watches one connection may hold.
pub const WATCHES_PER_CONN: usize = 128;
/// Open transactions one connection may hold.
pub const TRANSACTIONS_PER_CONN: usize = 16;
/// Watch events queued per connection before further ones are dropped.
pub const EVENTS_PER_CONN: usize = 64;

/// Counters of the simulated xenstored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XsStats {
    /// Requests handled.
    pub requests: u64,
    /// Error replies sent.
    pub errors: u64,
    /// Commits failed with `EAGAIN` (conflicts and injected).
    pub eagain: u64,
    /// Commits that succeeded.
    pub commits: u64,
    /// Watch events queued.
    pub watch_events: u64,
    /// Watch events dropped because the connection's queue was full.
    pub watch_events_dropped: u64,
    /// The most watch events ever queued on one connection.
    pub max_queued_events: u64,
    /// Connections closed for an oversized header.
    pub oversized: u64,
    /// Requests swallowed while stalled.
    pub swallowed: u64,
}

#[derive(Clone, Debug)]
enum Op {
    Write(String, Vec<u8>),
    Mkdir(String),
    Rm(String),
    SetPerms(String, Vec<Perm>),
}

struct Tx {
    tree: Tree,
    /// The global version counter when the snapshot was taken: snapshot nodes with a newer
    /// version were written by this transaction.
    start_gen: u64,
    accessed: HashMap<String, Option<u64>>,
    log: Vec<Op>,
}

impl Tx {
    /// Records the version `path` had in the snapshot, the first time it is accessed.
    fn touch(&mut self, path: &str) {
        if self.accessed.contains_key(path) {
            return;
        }
        let version = self.tree.version(path);
        if version.is_some_and(|v| v > self.start_gen) {
            // Created by this transaction; its absence was recorded when it was created.
            return;
        }
        self.accessed.insert(path.to_string(), version);
    }
}

struct Watch {
    given: String,
    abs: String,
    relative: bool,
    token: Vec<u8>,
}

struct OutMsg {
    bytes: Vec<u8>,
    event: bool,
}

struct Conn {
    dom: DomId,
    decoder: Box<Decoder>,
    out: VecDeque<OutMsg>,
    out_off: usize,
    queued_events: usize,
    watches: Vec<Watch>,
    txs: HashMap<u32, Tx>,
    closed: bool,
    /// The port raised when output is queued: the client's XenStore event channel, or the
    /// service thread's port for a ring connection.
    kick: Option<(DomId, Port)>,
}

struct State {
    tree: Tree,
    gen: u64,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    next_tx: u32,
    eagain_commits: u32,
    stalled: bool,
    introduced: BTreeSet<u16>,
    stats: XsStats,
}

/// The daemon: the tree and every connection.
pub(crate) struct Xenstored {
    state: Mutex<State>,
    /// Signalled whenever output is queued on any connection.
    output: Condvar,
    evtchn: Arc<EventChannels>,
}

/// The home of a domain.
pub fn domain_path(dom: DomId) -> String {
    format!("/local/domain/{}", dom.raw())
}

fn encode(reply: &Reply<'_>, request: MsgType, header: &Header) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; MSG_MAX];
    let n = reply
        .encode(request, header.req_id, header.tx_id, &mut buf)
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A reply whose data is owned, converted to a [`Reply`] only to encode it.
enum Answer {
    Ok,
    Value(Vec<u8>),
    Directory(Vec<u8>),
    DirectoryPart {
        generation: u64,
        children: Vec<u8>,
        complete: bool,
    },
    Perms(Vec<u8>),
    TxStarted(u32),
    DomainPath(String),
    Introduced(bool),
}

fn join_names<'a>(names: impl Iterator<Item = &'a String>) -> Vec<u8> {
    let mut out = Vec::new();
    for name in names {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    out
}

fn encode_perms(perms: &[Perm]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in perms {
        out.push(p.access.letter());
        out.extend_from_slice(p.domid.raw().to_string().as_bytes());
        out.push(0);
    }
    out
}

impl Xenstored {
    pub(crate) fn new(evtchn: Arc<EventChannels>) -> Xenstored {
        Xenstored {
            state: Mutex::new(State {
                tree: Tree::new(),
                gen: 0,
                conns: HashMap::new(),
                next_conn: 1,
                next_tx: 1,
                eagain_commits: 0,
                stalled: false,
                introduced: BTreeSet::new(),
                stats: XsStats::default(),
            }),
            output: Condvar::new(),
            evtchn,
        }
    }

    pub(crate) fn stats(&self) -> XsStats {
        self.state.lock().unwrap().stats
    }

    pub(crate) fn inject_eagain(&self, commits: u32) {
        self.state.lock().unwrap().eagain_commits = commits;
    }

    pub(crate) fn stall(&self, stalled: bool) {
        self.state.lock().unwrap().stalled = stalled;
    }

    /// Introduces a domain: records it, gives it a home it owns (readable by nobody else),
    /// and fires `@introduceDomain`.
    pub(crate) fn introduce(&self, dom: DomId) {
        let mut st = self.state.lock().unwrap();
        let home = domain_path(dom);
        let State { tree, gen, .. } = &mut *st;
        let _ = tree.mkdir(DomId::DOM0, &home, false, gen);
        let perms = [Perm {
            access: xen_core::xs::Access::None,
            domid: dom,
        }];
        let _ = tree.set_perms(DomId::DOM0, &home, &perms, false, gen);
        st.introduced.insert(dom.raw());
        let change = Change {
            path: "@introduceDomain".to_string(),
            perms: Vec::new(),
            removed: false,
        };
        self.fire(&mut st, &[change]);
    }

    /// Privileged direct access for tests and the toolstack helper.
    pub(crate) fn write_as(&self, dom: DomId, path: &str, value: &[u8]) -> Result<(), Errno> {
        let mut st = self.state.lock().unwrap();
        let State { tree, gen, .. } = &mut *st;
        let change = tree.write(dom, path, value, dom != DomId::DOM0, gen)?;
        self.fire(&mut st, &[change]);
        Ok(())
    }

    pub(crate) fn read(&self, path: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap();
        st.tree.get(path).map(|n| n.value.clone())
    }

    pub(crate) fn set_perms(&self, path: &str, perms: &[Perm]) -> Result<(), Errno> {
        let mut st = self.state.lock().unwrap();
        let State { tree, gen, .. } = &mut *st;
        let change = tree.set_perms(DomId::DOM0, path, perms, false, gen)?;
        self.fire(&mut st, &[change]);
        Ok(())
    }

    pub(crate) fn rm(&self, path: &str) -> Result<(), Errno> {
        let mut st = self.state.lock().unwrap();
        let State { tree, gen, .. } = &mut *st;
        let change = tree.rm(DomId::DOM0, path, false, gen)?;
        self.fire(&mut st, change.as_slice());
        Ok(())
    }

    pub(crate) fn node_count(&self) -> usize {
        self.state.lock().unwrap().tree.len()
    }

    pub(crate) fn open(&self, dom: DomId, kick: Option<(DomId, Port)>) -> u64 {
        let mut st = self.state.lock().unwrap();
        let id = st.next_conn;
        st.next_conn += 1;
        st.conns.insert(
            id,
            Conn {
                dom,
                decoder: Box::new(Decoder::new()),
                out: VecDeque::new(),
                out_off: 0,
                queued_events: 0,
                watches: Vec::new(),
                txs: HashMap::new(),
                closed: false,
                kick,
            },
        );
        id
    }

    pub(crate) fn close(&self, conn: u64) {
        self.state.lock().unwrap().conns.remove(&conn);
        self.output.notify_all();
    }

    pub(crate) fn is_closed(&self, conn: u64) -> bool {
        let st = self.state.lock().unwrap();
        st.conns.get(&conn).map_or(true, |c| c.closed)
    }

    /// Watch events queued on a connection and not yet read by its client.
    pub(crate) fn queued_events(&self, conn: u64) -> usize {
        let st = self.state.lock().unwrap();
        st.conns.get(&conn).map_or(0, |c| c.queued_events)
    }

    /// Feeds bytes from the client. Returns `false` if the connection is closed.
    pub(crate) fn receive(&self, conn: u64, mut input: &[u8]) -> bool {
        let mut st = self.state.lock().unwrap();
        while !input.is_empty() {
            let Some(c) = st.conns.get_mut(&conn) else {
                return false;
            };
            if c.closed {
                return false;
            }
            let (used, result) = c.decoder.feed(input);
            input = input.get(used..).unwrap_or(&[]);
            let owned = match result {
                Ok(Some(msg)) => Some((msg.header, msg.payload.to_vec())),
                Ok(None) => None,
                Err(Error::UnknownType(_)) => None,
                Err(_) => {
                    // Framing is lost (an oversized header): drop the connection.
                    c.closed = true;
                    st.stats.oversized += 1;
                    self.output.notify_all();
                    return false;
                }
            };
            if let Some((header, payload)) = owned {
                let msg = Message {
                    header,
                    payload: &payload,
                };
                self.handle(&mut st, conn, &msg);
            }
        }
        true
    }

    /// Copies queued output into `buf`, waiting up to `timeout` for some (`None`: no wait).
    /// `Ok(0)` if the connection is closed; `Err(())` on timeout.
    pub(crate) fn read_out(
        &self,
        conn: u64,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<usize, ()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.state.lock().unwrap();
        loop {
            let Some(c) = st.conns.get_mut(&conn) else {
                return Ok(0);
            };
            if !c.out.is_empty() {
                let mut done = 0;
                Self::drain(c, |bytes| {
                    let n = bytes.len().min(buf.len() - done);
                    buf[done..done + n].copy_from_slice(&bytes[..n]);
                    done += n;
                    n
                });
                return Ok(done);
            }
            if c.closed {
                return Ok(0);
            }
            let Some(deadline) = deadline else {
                return Err(());
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(());
            }
            st = self.output.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Hands queued output to `sink`, which returns how many bytes it took; stops when it
    /// takes less than offered.
    pub(crate) fn drain_out(&self, conn: u64, sink: impl FnMut(&[u8]) -> usize) {
        let mut st = self.state.lock().unwrap();
        if let Some(c) = st.conns.get_mut(&conn) {
            Self::drain(c, sink);
        }
    }

    fn drain(c: &mut Conn, mut sink: impl FnMut(&[u8]) -> usize) {
        while let Some(front) = c.out.front() {
            let rest = &front.bytes[c.out_off..];
            let n = sink(rest).min(rest.len());
            c.out_off += n;
            if c.out_off < front.bytes.len() {
                return;
            }
            if front.event {
                c.queued_events -= 1;
            }
            c.out.pop_front();
            c.out_off = 0;
        }
    }

    fn kick(&self, c: &Conn) {
        if let Some((dom, port)) = c.kick {
            let _ = self.evtchn.inject(dom, port, 1);
        }
        self.output.notify_all();
    }

    fn push_reply(&self, st: &mut State, conn: u64, bytes: Vec<u8>) {
        if let Some(c) = st.conns.get_mut(&conn) {
            c.out.push_back(OutMsg {
                bytes,
                event: false,
            });
            self.kick(c);
        }
    }

    fn push_event(&self, stats: &mut XsStats, c: &mut Conn, path: &str, token: &[u8]) {
        if c.closed {
            return;
        }
        if c.queued_events >= EVENTS_PER_CONN {
            stats.watch_events_dropped += 1;
            return;
        }
        let Ok(path) = Path::new(path) else {
            return;
        };
        let header = Header {
            msg_type: MsgType::WatchEvent,
            req_id: Default::default(),
            tx_id: TxId::NONE,
            len: 0,
        };
        let reply = Reply::WatchEvent { path, token };
        let Some(bytes) = encode(&reply, MsgType::WatchEvent, &header) else {
            return;
        };
        c.out.push_back(OutMsg { bytes, event: true });
        c.queued_events += 1;
        stats.watch_events += 1;
        stats.max_queued_events = stats.max_queued_events.max(c.queued_events as u64);
        self.kick(c);
    }

    /// Queues watch events for `changes` on every connection.
    fn fire(&self, st: &mut State, changes: &[Change]) {
        let State {
            conns, stats, tree, ..
        } = st;
        let _ = tree;
        for c in conns.values_mut() {
            let home = domain_path(c.dom);
            let mut events: Vec<(String, Vec<u8>)> = Vec::new();
            for w in &c.watches {
                for ch in changes {
                    let special = ch.path.starts_with('@');
                    let event_path = if special || w.abs.starts_with('@') {
                        (ch.path == w.abs).then(|| w.given.clone())
                    } else if is_under(&ch.path, &w.abs) {
                        if !can_read(c.dom, &ch.perms) {
                            continue;
                        }
                        Some(if w.relative {
                            ch.path
                                .strip_prefix(&home)
                                .and_then(|p| p.strip_prefix('/'))
                                .unwrap_or(&ch.path)
                                .to_string()
                        } else {
                            ch.path.clone()
                        })
                    } else if ch.removed && is_under(&w.abs, &ch.path) {
                        Some(w.given.clone())
                    } else {
                        None
                    };
                    if let Some(p) = event_path {
                        events.push((p, w.token.clone()));
                    }
                }
            }
            for (path, token) in events {
                self.push_event(stats, c, &path, &token);
            }
        }
    }

    fn resolve(dom: DomId, path: Path<'_>) -> Result<String, Errno> {
        let abs = if path.is_absolute() {
            path.as_str().to_string()
        } else if path.as_str().starts_with('@') {
            return Err(Errno::Einval);
        } else {
            format!("{}/{}", domain_path(dom), path.as_str())
        };
        // C xenstored's `path-max` quota (default `XENSTORE_REL_PATH_MAX`) on the part after
        // a domain's home prefix, for every connection, dom0's included.
        let home_len = abs
            .strip_prefix("/local/domain/")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(id, _)| {
                !id.is_empty() && id.len() <= 5 && id.bytes().all(|b| b.is_ascii_digit())
            })
            .map_or(0, |(id, _)| "/local/domain/".len() + id.len() + 1);
        if abs.len() - home_len > REL_PATH_MAX {
            return Err(Errno::Einval);
        }
        Ok(abs)
    }

    fn handle(&self, st: &mut State, conn: u64, msg: &Message<'_>) {
        if st.stalled {
            st.stats.swallowed += 1;
            return;
        }
        st.stats.requests += 1;
        let header = msg.header;
        let Some(dom) = st.conns.get(&conn).map(|c| c.dom) else {
            return;
        };
        let answer = match Request::parse(msg) {
            Ok(req) => self.apply(st, conn, dom, header.tx_id, &req),
            Err(_) => Err(Errno::Einval),
        };
        let new_watch = header.msg_type == MsgType::Watch && answer.is_ok();
        let bytes = match &answer {
            Ok(a) => Self::encode_answer(a, header),
            Err(_) => None,
        };
        let bytes = match (bytes, answer) {
            (Some(b), _) => b,
            (None, Err(errno)) => {
                st.stats.errors += 1;
                match encode(&Reply::Error(errno), header.msg_type, &header) {
                    Some(b) => b,
                    None => return,
                }
            }
            (None, Ok(_)) => {
                st.stats.errors += 1;
                match encode(&Reply::Error(Errno::E2big), header.msg_type, &header) {
                    Some(b) => b,
                    None => return,
                }
            }
        };
        self.push_reply(st, conn, bytes);
        // A new watch fires once, after its reply.
        if new_watch {
            let State { conns, stats, .. } = st;
            if let Some(c) = conns.get_mut(&conn) {
                if let Some(w) = c.watches.last() {
                    let (p, t) = (w.given.clone(), w.token.clone());
                    self.push_event(stats, c, &p, &t);
                }
            }
        }
    }

    fn encode_answer(a: &Answer, header: Header) -> Option<Vec<u8>> {
        let ty = header.msg_type;
        match a {
            Answer::Ok => encode(&Reply::Ok, ty, &header),
            Answer::Value(v) => encode(&Reply::Value(v), ty, &header),
            Answer::Directory(names) => {
                encode(&Reply::Directory(Strings::new(names).ok()?), ty, &header)
            }
            Answer::DirectoryPart {
                generation,
                children,
                complete,
            } => encode(
                &Reply::DirectoryPart {
                    generation: *generation,
                    children: Strings::new(children).ok()?,
                    complete: *complete,
                },
                ty,
                &header,
            ),
            Answer::Perms(p) => encode(&Reply::Perms(PermList::parse(p).ok()?), ty, &header),
            Answer::TxStarted(t) => encode(&Reply::TransactionStarted(TxId(*t)), ty, &header),
            Answer::DomainPath(p) => encode(&Reply::DomainPath(Path::new(p).ok()?), ty, &header),
            Answer::Introduced(b) => encode(&Reply::Introduced(*b), ty, &header),
        }
    }

    fn apply(
        &self,
        st: &mut State,
        conn: u64,
        dom: DomId,
        tx: TxId,
        req: &Request<'_>,
    ) -> Result<Answer, Errno> {
        let privileged = dom == DomId::DOM0;
        match *req {
            Request::Read { path } => {
                let path = Self::resolve(dom, path)?;
                self.read_op(st, conn, dom, tx, &path, |t, p| {
                    t.read(dom, p).map(|v| Answer::Value(v.to_vec()))
                })
            }
            Request::Directory { path } => {
                let path = Self::resolve(dom, path)?;
                self.read_op(st, conn, dom, tx, &path, |t, p| {
                    t.directory(dom, p)
                        .map(|(c, _)| Answer::Directory(join_names(c.iter())))
                })
            }
            Request::DirectoryPart { path, offset } => {
                let path = Self::resolve(dom, path)?;
                self.read_op(st, conn, dom, tx, &path, |t, p| {
                    let (c, generation) = t.directory(dom, p)?;
                    let all = join_names(c.iter());
                    let start = usize::try_from(offset).map_err(|_| Errno::Einval)?;
                    // As C xenstored: whole names that fit beside the generation and the
                    // final empty name; an offset at or past the end gets an empty, complete
                    // list.
                    let rest = all.get(start..).unwrap_or(&[]);
                    let room = PAYLOAD_MAX - generation.to_string().len() - 2;
                    let mut len = 0;
                    for name in rest.split_inclusive(|&b| b == 0) {
                        if len + name.len() > room {
                            break;
                        }
                        len += name.len();
                    }
                    Ok(Answer::DirectoryPart {
                        generation,
                        children: rest.get(..len).unwrap_or(&[]).to_vec(),
                        complete: len == rest.len(),
                    })
                })
            }
            Request::GetPerms { path } => {
                let path = Self::resolve(dom, path)?;
                self.read_op(st, conn, dom, tx, &path, |t, p| {
                    t.get_perms(dom, p).map(|p| Answer::Perms(encode_perms(p)))
                })
            }
            Request::Write { path, value } => {
                let path = Self::resolve(dom, path)?;
                self.write_op(st, conn, dom, tx, Op::Write(path, value.to_vec()))
            }
            Request::Mkdir { path } => {
                let path = Self::resolve(dom, path)?;
                self.write_op(st, conn, dom, tx, Op::Mkdir(path))
            }
            Request::Rm { path } => {
                let path = Self::resolve(dom, path)?;
                if path == "/" {
                    return Err(Errno::Einval);
                }
                self.write_op(st, conn, dom, tx, Op::Rm(path))
            }
            Request::SetPerms { path, perms } => {
                let path = Self::resolve(dom, path)?;
                let perms: Vec<Perm> = perms.iter().collect();
                // As C xenstored: the owner must be a domain it knows (ENOENT); other entries
                // may name any domain.
                if perms
                    .first()
                    .is_some_and(|owner| !st.introduced.contains(&owner.domid.raw()))
                {
                    return Err(Errno::Enoent);
                }
                self.write_op(st, conn, dom, tx, Op::SetPerms(path, perms))
            }
            Request::Watch { path, token } => {
                let c = st.conns.get_mut(&conn).ok_or(Errno::Einval)?;
                let relative = !path.is_absolute();
                let abs = if path.as_str().starts_with('@') {
                    path.as_str().to_string()
                } else {
                    Self::resolve(dom, path)?
                };
                if c.watches.iter().any(|w| w.abs == abs && w.token == token) {
                    return Err(Errno::Eexist);
                }
                if c.watches.len() >= WATCHES_PER_CONN {
                    return Err(Errno::E2big);
                }
                c.watches.push(Watch {
                    given: path.as_str().to_string(),
                    abs,
                    relative,
                    token: token.to_vec(),
                });
                Ok(Answer::Ok)
            }
            Request::Unwatch { path, token } => {
                let c = st.conns.get_mut(&conn).ok_or(Errno::Einval)?;
                let abs = if path.as_str().starts_with('@') {
                    path.as_str().to_string()
                } else {
                    Self::resolve(dom, path)?
                };
                let before = c.watches.len();
                c.watches.retain(|w| !(w.abs == abs && w.token == token));
                if c.watches.len() == before {
                    return Err(Errno::Enoent);
                }
                Ok(Answer::Ok)
            }
            Request::TransactionStart => {
                if tx != TxId::NONE {
                    return Err(Errno::Ebusy);
                }
                let id = st.next_tx;
                st.next_tx = st.next_tx.wrapping_add(1).max(1);
                let snapshot = st.tree.clone();
                let start_gen = st.gen;
                let c = st.conns.get_mut(&conn).ok_or(Errno::Einval)?;
                if c.txs.len() >= TRANSACTIONS_PER_CONN {
                    return Err(Errno::Enospc);
                }
                c.txs.insert(
                    id,
                    Tx {
                        tree: snapshot,
                        start_gen,
                        accessed: HashMap::new(),
                        log: Vec::new(),
                    },
                );
                Ok(Answer::TxStarted(id))
            }
            Request::TransactionEnd { commit } => self.commit(st, conn, dom, tx, commit),
            Request::GetDomainPath { domid } => Ok(Answer::DomainPath(domain_path(domid))),
            Request::IsDomainIntroduced { domid } => {
                Ok(Answer::Introduced(st.introduced.contains(&domid.raw())))
            }
            Request::Introduce { domid, .. } => {
                if !privileged {
                    return Err(Errno::Eacces);
                }
                st.introduced.insert(domid.raw());
                let change = Change {
                    path: "@introduceDomain".to_string(),
                    perms: Vec::new(),
                    removed: false,
                };
                self.fire(st, &[change]);
                Ok(Answer::Ok)
            }
            Request::Release { domid } => {
                if !privileged {
                    return Err(Errno::Eacces);
                }
                st.introduced.remove(&domid.raw());
                let change = Change {
                    path: "@releaseDomain".to_string(),
                    perms: Vec::new(),
                    removed: false,
                };
                self.fire(st, &[change]);
                Ok(Answer::Ok)
            }
            // C xenstored refuses to resume dom0 itself.
            Request::Resume { domid } if privileged && domid == DomId::DOM0 => Err(Errno::Einval),
            Request::Resume { .. } | Request::SetTarget { .. } => {
                if privileged {
                    Ok(Answer::Ok)
                } else {
                    Err(Errno::Eacces)
                }
            }
            Request::ResetWatches => {
                let c = st.conns.get_mut(&conn).ok_or(Errno::Einval)?;
                c.watches.clear();
                c.txs.clear();
                Ok(Answer::Ok)
            }
            // No command is implemented; C xenstored answers unknown ones with EINVAL.
            Request::Control { .. } => Err(Errno::Einval),
        }
    }

    fn read_op(
        &self,
        st: &mut State,
        conn: u64,
        _dom: DomId,
        tx: TxId,
        path: &str,
        f: impl FnOnce(&Tree, &str) -> Result<Answer, Errno>,
    ) -> Result<Answer, Errno> {
        if tx == TxId::NONE {
            return f(&st.tree, path);
        }
        let c = st.conns.get_mut(&conn).ok_or(Errno::Einval)?;
        let t = c.txs.get_mut(&tx.0).ok_or(Errno::Enoent)?;
        t.touch(path);
        f(&t.tree, path)
    }

    fn run(
        tree: &mut Tree,
        dom: DomId,
        op: &Op,
        check: bool,
        gen: &mut u64,
    ) -> Result<Vec<Change>, Errno> {
        Ok(match op {
            Op::Write(p, v) => vec![tree.write(dom, p, v, check, gen)?],
            Op::Mkdir(p) => tree.mkdir(dom, p, check, gen)?.into_iter().collect(),
            Op::Rm(p) => tree.rm(dom, p, check, gen)?.into_iter().collect(),
            Op::SetPerms(p, perms) => vec![tree.set_perms(dom, p, perms, check, gen)?],
        })
    }

    fn write_op(
        &self,
        st: &mut State,
        conn: u64,
        dom: DomId,
        tx: TxId,
        op: Op,
    ) -> Result<Answer, Errno> {
        if tx == TxId::NONE {
            let State { tree, gen, .. } = st;
            let changes = Self::run(tree, dom, &op, true, gen)?;
            self.fire(st, &changes);
            return Ok(Answer::Ok);
        }
        let c = st.conns.get_mut(&conn).ok_or(Errno::Einval)?;
        let t = c.txs.get_mut(&tx.0).ok_or(Errno::Enoent)?;
        let footprint = match &op {
            Op::Write(p, _) | Op::Mkdir(p) => t.tree.create_footprint(p),
            Op::Rm(p) => {
                let mut v = vec![p.clone()];
                if let Some(up) = tree::parent(p) {
                    v.push(up.to_string());
                }
                v
            }
            Op::SetPerms(p, _) => vec![p.clone()],
        };
        for p in &footprint {
            t.touch(p);
        }
        // Versions inside a snapshot only need to differ from the snapshot's own, so the
        // transaction gets a private counter continuing from the global one.
        let mut gen = st.gen;
        Self::run(&mut t.tree, dom, &op, true, &mut gen)?;
        t.log.push(op);
        Ok(Answer::Ok)
    }

    fn commit(
        &self,
        st: &mut State,
        conn: u64,
        dom: DomId,
        tx: TxId,
        commit: bool,
    ) -> Result<Answer, Errno> {
        let c = st.conns.get_mut(&conn).ok_or(Errno::Einval)?;
        let t = c.txs.remove(&tx.0).ok_or(Errno::Enoent)?;
        if !commit {
            return Ok(Answer::Ok);
        }
        if st.eagain_commits > 0 {
            st.eagain_commits -= 1;
            st.stats.eagain += 1;
            return Err(Errno::Eagain);
        }
        let conflict = t
            .accessed
            .iter()
            .any(|(path, version)| st.tree.version(path) != *version);
        if conflict {
            st.stats.eagain += 1;
            return Err(Errno::Eagain);
        }
        let mut changes = Vec::new();
        {
            let State { tree, gen, .. } = &mut *st;
            for op in &t.log {
                // Checked when logged against a snapshot identical in every node touched.
                if let Ok(mut ch) = Self::run(tree, dom, op, false, gen) {
                    changes.append(&mut ch);
                }
            }
        }
        st.stats.commits += 1;
        self.fire(st, &changes);
        Ok(Answer::Ok)
    }
}
