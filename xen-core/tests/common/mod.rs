//! A small in-memory xenstored behind an `XsTransport`, with fault injection, for client tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use xen_core::xs::wire::MSG_MAX;
use xen_core::xs::{
    Decoder, Errno, Error, MsgType, Path, Perm, Reply, ReqId, Request, Strings, TxId, XsTransport,
};
use xen_sys::DomId;

/// Encodes a reply into bytes.
pub fn reply_bytes(reply: &Reply<'_>, req_ty: MsgType, req: u32, tx: u32) -> Vec<u8> {
    let mut buf = vec![0u8; MSG_MAX];
    let n = reply
        .encode(req_ty, ReqId(req), TxId(tx), &mut buf)
        .expect("encode reply");
    buf.truncate(n);
    buf
}

/// Encodes a watch event.
pub fn event_bytes(path: &str, token: &[u8]) -> Vec<u8> {
    reply_bytes(
        &Reply::WatchEvent {
            path: Path::new(path).unwrap(),
            token,
        },
        MsgType::Watch,
        0,
        0,
    )
}

/// A raw message with any header values and payload.
pub fn raw_msg(ty: u32, req: u32, tx: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [ty, req, tx, payload.len() as u32] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// Writes buffered by an open transaction (`None` would be a removal).
pub type TxWrites = Vec<(String, Option<Vec<u8>>)>;

#[derive(Default)]
pub struct FakeXenstored {
    pub nodes: BTreeMap<String, Vec<u8>>,
    pub perms: BTreeMap<String, Vec<Perm>>,
    pub watches: Vec<(String, Vec<u8>)>,
    pub tx_next: u32,
    pub open_tx: BTreeMap<u32, TxWrites>,
    /// Commits to fail with EAGAIN before succeeding.
    pub eagain_commits: u32,
    pub starts: u32,
    pub commits: u32,
    pub aborts: u32,
    /// Answer DIRECTORY with E2BIG and serve DIRECTORY_PART in parts of this many bytes.
    pub directory_part_size: Option<usize>,
    /// Bytes to deliver before the next reply.
    pub before_reply: VecDeque<Vec<u8>>,
    /// Replace the next reply with these bytes.
    pub replace_reply: Option<Vec<u8>>,
    /// Max bytes per recv (0 = unlimited).
    pub chunk: usize,
    inbound: VecDeque<u8>,
    decoder: Option<Box<Decoder>>,
    pub requests: Vec<(MsgType, u32)>,
}

impl FakeXenstored {
    pub fn new() -> Self {
        Self {
            tx_next: 1,
            decoder: Some(Box::new(Decoder::new())),
            ..Default::default()
        }
    }

    pub fn push_inbound(&mut self, bytes: &[u8]) {
        self.inbound.extend(bytes.iter().copied());
    }

    fn fire(&mut self, changed: &str) {
        let mut events = Vec::new();
        for (wpath, token) in &self.watches {
            let w = Path::new(wpath).unwrap();
            let c = Path::new(changed).unwrap();
            if c.is_child_of(&w) {
                events.push(event_bytes(changed, token));
            }
        }
        for e in events {
            self.inbound.extend(e);
        }
    }

    fn children(&self, path: &str) -> Option<Vec<u8>> {
        if !self.nodes.contains_key(path) && path != "/" {
            return None;
        }
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for k in self.nodes.keys() {
            if let Some(rest) = k.strip_prefix(&prefix) {
                let leaf = rest.split('/').next().unwrap();
                if !leaf.is_empty() && seen.insert(leaf.to_string()) {
                    out.extend_from_slice(leaf.as_bytes());
                    out.push(0);
                }
            }
        }
        Some(out)
    }

    fn write_node(&mut self, path: &str, value: &[u8]) {
        let mut parent = String::new();
        for comp in path.trim_start_matches('/').split('/') {
            parent.push('/');
            parent.push_str(comp);
            self.nodes.entry(parent.clone()).or_default();
        }
        self.nodes.insert(path.to_string(), value.to_vec());
        self.fire(path);
    }

    fn handle(&mut self, req: Request<'_>, tx: u32, out: &mut Vec<u8>) -> Result<(), Errno> {
        let ty = req.msg_type();
        let ok = |out: &mut Vec<u8>| *out = reply_bytes(&Reply::Ok, ty, 0, 0);
        match req {
            Request::Read { path } => {
                let v = self.nodes.get(path.as_str()).ok_or(Errno::Enoent)?.clone();
                *out = reply_bytes(&Reply::Value(&v), ty, 0, 0);
            }
            Request::Write { path, value } => {
                if tx != 0 {
                    self.open_tx
                        .get_mut(&tx)
                        .ok_or(Errno::Einval)?
                        .push((path.as_str().into(), Some(value.to_vec())));
                } else {
                    self.write_node(path.as_str(), value);
                }
                ok(out);
            }
            Request::Mkdir { path } => {
                if !self.nodes.contains_key(path.as_str()) {
                    self.write_node(path.as_str(), b"");
                }
                ok(out);
            }
            Request::Rm { path } => {
                let p = path.as_str().to_string();
                self.nodes
                    .retain(|k, _| !(k == &p || k.starts_with(&format!("{p}/"))));
                self.fire(&p);
                ok(out);
            }
            Request::Directory { path } => {
                let c = self.children(path.as_str()).ok_or(Errno::Enoent)?;
                if self.directory_part_size.is_some() {
                    return Err(Errno::E2big);
                }
                *out = reply_bytes(&Reply::Directory(Strings::new(&c).unwrap()), ty, 0, 0);
            }
            Request::DirectoryPart { path, offset } => {
                let c = self.children(path.as_str()).ok_or(Errno::Enoent)?;
                let size = self.directory_part_size.unwrap_or(usize::MAX);
                let start = (offset as usize).min(c.len());
                // Whole names only.
                let mut end = start;
                for name in c[start..].split_inclusive(|&b| b == 0) {
                    if end > start && end - start + name.len() > size {
                        break;
                    }
                    end += name.len();
                }
                let complete = end == c.len();
                let part = &c[start..end];
                *out = reply_bytes(
                    &Reply::DirectoryPart {
                        generation: 7,
                        children: Strings::new(part).unwrap(),
                        complete,
                    },
                    ty,
                    0,
                    0,
                );
            }
            Request::GetPerms { path } => {
                self.nodes.get(path.as_str()).ok_or(Errno::Enoent)?;
                let perms = self.perms.get(path.as_str()).cloned().unwrap_or_else(|| {
                    vec![Perm {
                        access: xen_core::xs::Access::None,
                        domid: DomId::new(0),
                    }]
                });
                *out = reply_bytes(
                    &Reply::Perms(xen_core::xs::PermList::Slice(&perms)),
                    ty,
                    0,
                    0,
                );
            }
            Request::SetPerms { path, perms } => {
                self.nodes.get(path.as_str()).ok_or(Errno::Enoent)?;
                self.perms
                    .insert(path.as_str().into(), perms.iter().collect());
                ok(out);
            }
            Request::TransactionStart => {
                self.starts += 1;
                let id = self.tx_next;
                self.tx_next += 1;
                self.open_tx.insert(id, Vec::new());
                *out = reply_bytes(&Reply::TransactionStarted(TxId(id)), ty, 0, 0);
            }
            Request::TransactionEnd { commit } => {
                let writes = self.open_tx.remove(&tx).ok_or(Errno::Enoent)?;
                if commit {
                    self.commits += 1;
                    if self.eagain_commits > 0 {
                        self.eagain_commits -= 1;
                        return Err(Errno::Eagain);
                    }
                    for (p, v) in writes {
                        if let Some(v) = v {
                            self.write_node(&p, &v);
                        }
                    }
                } else {
                    self.aborts += 1;
                }
                ok(out);
            }
            Request::Watch { path, token } => {
                self.watches.push((path.as_str().into(), token.to_vec()));
                ok(out);
                // Fires once straight away, after the reply.
                out.extend(event_bytes(path.as_str(), token));
            }
            Request::Unwatch { path, token } => {
                let before = self.watches.len();
                self.watches
                    .retain(|(p, t)| !(p == path.as_str() && t == token));
                if before == self.watches.len() {
                    return Err(Errno::Enoent);
                }
                ok(out);
            }
            Request::GetDomainPath { domid } => {
                let p = format!("/local/domain/{}", u16::from(domid));
                *out = reply_bytes(&Reply::DomainPath(Path::new(&p).unwrap()), ty, 0, 0);
            }
            Request::ResetWatches => {
                self.watches.clear();
                ok(out);
            }
            _ => return Err(Errno::Enosys),
        }
        Ok(())
    }
}

impl XsTransport for FakeXenstored {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        let mut dec = self.decoder.take().unwrap();
        let (used, r) = dec.feed(msg);
        assert_eq!(
            used,
            msg.len(),
            "client sent a partial or multiple messages"
        );
        let m = r
            .expect("client sent a bad frame")
            .expect("client sent an incomplete frame");
        let (hdr, payload) = (m.header, m.payload.to_vec());
        self.decoder = Some(dec);
        self.requests.push((hdr.msg_type, hdr.req_id.0));
        let msg = xen_core::xs::Message {
            header: hdr,
            payload: &payload,
        };
        let req = Request::parse(&msg).expect("client sent a malformed request");
        let mut out = Vec::new();
        if let Err(errno) = self.handle(req, hdr.tx_id.0, &mut out) {
            out = reply_bytes(&Reply::Error(errno), hdr.msg_type, 0, 0);
        }
        // Patch the request id into the reply (the first message in `out`).
        out[4..8].copy_from_slice(&hdr.req_id.0.to_le_bytes());
        out[8..12].copy_from_slice(&hdr.tx_id.0.to_le_bytes());
        while let Some(pre) = self.before_reply.pop_front() {
            self.inbound.extend(pre);
        }
        if let Some(r) = self.replace_reply.take() {
            out = r;
        }
        self.inbound.extend(out);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.inbound.is_empty() {
            // Nothing will ever arrive: a real transport would block; report it instead.
            return Err(Error::Transport);
        }
        let mut n = buf.len().min(self.inbound.len());
        if self.chunk > 0 {
            n = n.min(self.chunk);
        }
        for b in buf.iter_mut().take(n) {
            *b = self.inbound.pop_front().unwrap();
        }
        Ok(n)
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.inbound.is_empty() {
            return Ok(0);
        }
        self.recv(buf)
    }
}
