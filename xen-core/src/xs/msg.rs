//! Typed XenStore requests and replies: per-type payload syntax, NUL rules, parsing and encoding.
//!
//! Both directions are here so the same code serves the client (encode requests, parse replies)
//! and a XenStore server such as the host simulator (parse requests, encode replies).
//!
//! NUL rules, following docs/misc/xenstore.txt and what both C and OCaml xenstored send:
//!
//! | type | request payload | reply payload |
//! |---|---|---|
//! | READ | `path\0` | `value` (binary, no NUL) |
//! | WRITE | `path\0value` | `OK\0` |
//! | MKDIR, RM | `path\0` | `OK\0` |
//! | DIRECTORY | `path\0` | `child\0`* |
//! | DIRECTORY_PART | `path\0offset\0` | `gencnt\0` `child\0`* (`\0` once complete) |
//! | GET_PERMS | `path\0` | `perm\0`+ |
//! | SET_PERMS | `path\0` `perm\0`+ | `OK\0` |
//! | WATCH, UNWATCH | `path\0token\0` | `OK\0` |
//! | WATCH_EVENT | — | `path\0token\0` |
//! | TRANSACTION_START | `\0` | `txid\0` |
//! | TRANSACTION_END | `T\0` or `F\0` | `OK\0` |
//! | INTRODUCE | `domid\0mfn\0port\0` | `OK\0` |
//! | RELEASE, RESUME | `domid\0` | `OK\0` |
//! | GET_DOMAIN_PATH | `domid\0` | `path\0` |
//! | IS_DOMAIN_INTRODUCED | `domid\0` | `T\0` or `F\0` |
//! | SET_TARGET | `domid\0tdomid\0` | `OK\0` |
//! | RESET_WATCHES | `\0` | `OK\0` |
//! | CONTROL | `arg\0`+ | implementation-defined |
//! | ERROR | — | `ENAME\0` |
//!
//! Every parser refuses a missing final NUL ([`Error::MissingNul`]), an embedded NUL or a wrong
//! field count ([`Error::Malformed`]), and bad paths ([`Error::InvalidPath`],
//! [`Error::PathTooLong`]).

use core::fmt;

use super::path::Path;
use super::wire::{fields, Encoder, Errno, Error, Message, MsgType, ReqId, Strings, TxId};
use crate::num::{parse_u16, parse_u32, parse_u64};
use xen_sys::DomId;

/// The access a permission entry grants (`n`, `r`, `w`, `b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read only.
    Read,
    /// `w`: write only.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// The wire letter.
    pub const fn letter(self) -> u8 {
        match self {
            Self::None => b'n',
            Self::Read => b'r',
            Self::Write => b'w',
            Self::Both => b'b',
        }
    }

    /// Parses a wire letter.
    pub fn from_letter(letter: u8) -> Option<Self> {
        match letter {
            b'n' => Some(Self::None),
            b'r' => Some(Self::Read),
            b'w' => Some(Self::Write),
            b'b' => Some(Self::Both),
            _ => None,
        }
    }
}

/// One permission entry, `<letter><domid>`. The first entry of a list names the owner and the
/// access everyone else gets; later entries are per-domain grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// What is granted.
    pub access: Access,
    /// To whom.
    pub domid: DomId,
}

impl Perm {
    /// Parses `r5`, `b0`, ... (domid: strict decimal `0..=65535`).
    pub fn parse(text: &[u8]) -> Result<Self, Error> {
        let (&letter, digits) = text.split_first().ok_or(Error::Malformed)?;
        let access = Access::from_letter(letter).ok_or(Error::Malformed)?;
        let domid = DomId::from(parse_u16(digits)?);
        Ok(Self { access, domid })
    }

    fn encode(&self, e: &mut Encoder<'_>) -> Result<(), Error> {
        let digits = crate::num::Decimal::new(u16::from(self.domid));
        e.bytes(&[self.access.letter()])?
            .bytes(digits.as_bytes())?
            .bytes(&[0])?;
        Ok(())
    }
}

/// A list of permissions: either the caller's slice (to encode) or validated wire bytes (parsed).
#[derive(Clone, Copy)]
pub enum PermList<'a> {
    /// Entries supplied by the caller.
    Slice(&'a [Perm]),
    /// One or more NUL-terminated entries, each already checked by [`Perm::parse`].
    Wire(&'a [u8]),
}

impl<'a> PermList<'a> {
    /// Validates wire bytes: one or more NUL-terminated entries.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut n = 0usize;
        for item in Strings::new(bytes)? {
            Perm::parse(item)?;
            n += 1;
        }
        if n == 0 {
            return Err(Error::Malformed);
        }
        Ok(Self::Wire(bytes))
    }

    /// The entries.
    pub fn iter(&self) -> impl Iterator<Item = Perm> + 'a {
        let (slice, wire): (&'a [Perm], &'a [u8]) = match *self {
            Self::Slice(s) => (s, &[]),
            Self::Wire(w) => (&[], w),
        };
        // The wire form was validated, so `parse` cannot fail here; `ok()` only satisfies types.
        let wire_items = Strings::new(wire)
            .into_iter()
            .flatten()
            .filter_map(|t| Perm::parse(t).ok());
        slice.iter().copied().chain(wire_items)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for PermList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for PermList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// A request from a client to xenstored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Request<'a> {
    /// `XS_CONTROL`: one or more NUL-terminated arguments, given as raw payload.
    Control {
        /// The arguments, each followed by NUL.
        args: &'a [u8],
    },
    /// `XS_DIRECTORY`.
    Directory {
        /// Node to list.
        path: Path<'a>,
    },
    /// `XS_DIRECTORY_PART`.
    DirectoryPart {
        /// Node to list.
        path: Path<'a>,
        /// Byte offset into the full child list.
        offset: u32,
    },
    /// `XS_READ`.
    Read {
        /// Node to read.
        path: Path<'a>,
    },
    /// `XS_GET_PERMS`.
    GetPerms {
        /// Node to query.
        path: Path<'a>,
    },
    /// `XS_WATCH`.
    Watch {
        /// Path (or `@special`) to watch.
        path: Path<'a>,
        /// Opaque token echoed in events (no NUL).
        token: &'a [u8],
    },
    /// `XS_UNWATCH`.
    Unwatch {
        /// Path given to the watch.
        path: Path<'a>,
        /// Token given to the watch.
        token: &'a [u8],
    },
    /// `XS_TRANSACTION_START`.
    TransactionStart,
    /// `XS_TRANSACTION_END`.
    TransactionEnd {
        /// `T` (commit) or `F` (abort).
        commit: bool,
    },
    /// `XS_INTRODUCE`.
    Introduce {
        /// New domain.
        domid: DomId,
        /// Machine frame of its XenStore page.
        mfn: u64,
        /// Its unbound event channel.
        port: u32,
    },
    /// `XS_RELEASE`.
    Release {
        /// Domain to forget.
        domid: DomId,
    },
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath {
        /// Domain whose home path is wanted.
        domid: DomId,
    },
    /// `XS_WRITE`.
    Write {
        /// Node to write.
        path: Path<'a>,
        /// New value (binary, not NUL-terminated).
        value: &'a [u8],
    },
    /// `XS_MKDIR`.
    Mkdir {
        /// Node to create.
        path: Path<'a>,
    },
    /// `XS_RM`.
    Rm {
        /// Node to remove with its children.
        path: Path<'a>,
    },
    /// `XS_SET_PERMS`.
    SetPerms {
        /// Node to change.
        path: Path<'a>,
        /// New permissions (at least one).
        perms: PermList<'a>,
    },
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced {
        /// Domain to ask about.
        domid: DomId,
    },
    /// `XS_RESUME`.
    Resume {
        /// Domain to resume.
        domid: DomId,
    },
    /// `XS_SET_TARGET`.
    SetTarget {
        /// Domain gaining rights.
        domid: DomId,
        /// Domain it targets.
        target: DomId,
    },
    /// `XS_RESET_WATCHES`.
    ResetWatches,
}

fn path_field(bytes: &[u8]) -> Result<Path<'_>, Error> {
    Path::from_bytes(bytes)
}

fn domid_field(bytes: &[u8]) -> Result<DomId, Error> {
    Ok(DomId::from(parse_u16(bytes)?))
}

fn flag_field(bytes: &[u8]) -> Result<bool, Error> {
    match bytes {
        b"T" => Ok(true),
        b"F" => Ok(false),
        _ => Err(Error::Malformed),
    }
}

fn check_token(token: &[u8]) -> Result<(), Error> {
    if token.contains(&0) {
        return Err(Error::Malformed);
    }
    Ok(())
}

impl<'a> Request<'a> {
    /// The wire type of this request.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Self::Control { .. } => MsgType::Control,
            Self::Directory { .. } => MsgType::Directory,
            Self::DirectoryPart { .. } => MsgType::DirectoryPart,
            Self::Read { .. } => MsgType::Read,
            Self::GetPerms { .. } => MsgType::GetPerms,
            Self::Watch { .. } => MsgType::Watch,
            Self::Unwatch { .. } => MsgType::Unwatch,
            Self::TransactionStart => MsgType::TransactionStart,
            Self::TransactionEnd { .. } => MsgType::TransactionEnd,
            Self::Introduce { .. } => MsgType::Introduce,
            Self::Release { .. } => MsgType::Release,
            Self::GetDomainPath { .. } => MsgType::GetDomainPath,
            Self::Write { .. } => MsgType::Write,
            Self::Mkdir { .. } => MsgType::Mkdir,
            Self::Rm { .. } => MsgType::Rm,
            Self::SetPerms { .. } => MsgType::SetPerms,
            Self::IsDomainIntroduced { .. } => MsgType::IsDomainIntroduced,
            Self::Resume { .. } => MsgType::Resume,
            Self::SetTarget { .. } => MsgType::SetTarget,
            Self::ResetWatches => MsgType::ResetWatches,
        }
    }

    /// Parses a request message (server side). `WATCH_EVENT` and `ERROR` are not requests.
    pub fn parse(msg: &Message<'a>) -> Result<Self, Error> {
        let p = msg.payload;
        Ok(match msg.header.msg_type {
            MsgType::Control => {
                if Strings::new(p)?.next().is_none() {
                    return Err(Error::Malformed);
                }
                Self::Control { args: p }
            }
            MsgType::Directory => Self::Directory {
                path: path_field(fields::<1>(p)?[0])?,
            },
            MsgType::DirectoryPart => {
                let [path, offset] = fields::<2>(p)?;
                Self::DirectoryPart {
                    path: path_field(path)?,
                    offset: parse_u32(offset)?,
                }
            }
            MsgType::Read => Self::Read {
                path: path_field(fields::<1>(p)?[0])?,
            },
            MsgType::GetPerms => Self::GetPerms {
                path: path_field(fields::<1>(p)?[0])?,
            },
            MsgType::Watch => {
                let [path, token] = fields::<2>(p)?;
                Self::Watch {
                    path: path_field(path)?,
                    token,
                }
            }
            MsgType::Unwatch => {
                let [path, token] = fields::<2>(p)?;
                Self::Unwatch {
                    path: path_field(path)?,
                    token,
                }
            }
            MsgType::TransactionStart => {
                fields::<1>(p)?[0]
                    .is_empty()
                    .then_some(())
                    .ok_or(Error::Malformed)?;
                Self::TransactionStart
            }
            MsgType::TransactionEnd => Self::TransactionEnd {
                commit: flag_field(fields::<1>(p)?[0])?,
            },
            MsgType::Introduce => {
                let [domid, mfn, port] = fields::<3>(p)?;
                Self::Introduce {
                    domid: domid_field(domid)?,
                    mfn: parse_u64(mfn)?,
                    port: parse_u32(port)?,
                }
            }
            MsgType::Release => Self::Release {
                domid: domid_field(fields::<1>(p)?[0])?,
            },
            MsgType::GetDomainPath => Self::GetDomainPath {
                domid: domid_field(fields::<1>(p)?[0])?,
            },
            MsgType::Write => {
                let nul = p.iter().position(|&b| b == 0).ok_or(Error::MissingNul)?;
                let path = p.get(..nul).ok_or(Error::Malformed)?;
                let value = p.get(nul + 1..).unwrap_or(&[]);
                Self::Write {
                    path: path_field(path)?,
                    value,
                }
            }
            MsgType::Mkdir => Self::Mkdir {
                path: path_field(fields::<1>(p)?[0])?,
            },
            MsgType::Rm => Self::Rm {
                path: path_field(fields::<1>(p)?[0])?,
            },
            MsgType::SetPerms => {
                let mut it = Strings::new(p)?;
                let path = path_field(it.next().ok_or(Error::Malformed)?)?;
                Self::SetPerms {
                    path,
                    perms: PermList::parse(it.remainder())?,
                }
            }
            MsgType::IsDomainIntroduced => Self::IsDomainIntroduced {
                domid: domid_field(fields::<1>(p)?[0])?,
            },
            MsgType::Resume => Self::Resume {
                domid: domid_field(fields::<1>(p)?[0])?,
            },
            MsgType::SetTarget => {
                let [domid, target] = fields::<2>(p)?;
                Self::SetTarget {
                    domid: domid_field(domid)?,
                    target: domid_field(target)?,
                }
            }
            MsgType::ResetWatches => {
                fields::<1>(p)?[0]
                    .is_empty()
                    .then_some(())
                    .ok_or(Error::Malformed)?;
                Self::ResetWatches
            }
            MsgType::WatchEvent | MsgType::Error => return Err(Error::UnexpectedReply),
            MsgType::Invalid => return Err(Error::UnknownType(u32::from(MsgType::Invalid))),
        })
    }

    /// Encodes header and payload into `out`; returns the message length.
    pub fn encode(&self, req_id: ReqId, tx_id: TxId, out: &mut [u8]) -> Result<usize, Error> {
        let mut e = Encoder::new(out)?;
        match *self {
            Self::Control { args } => {
                if Strings::new(args)?.next().is_none() {
                    return Err(Error::Malformed);
                }
                e.bytes(args)?;
            }
            Self::Directory { path }
            | Self::Read { path }
            | Self::GetPerms { path }
            | Self::Mkdir { path }
            | Self::Rm { path } => {
                e.string(path.as_bytes())?;
            }
            Self::DirectoryPart { path, offset } => {
                e.string(path.as_bytes())?.decimal(offset)?;
            }
            Self::Watch { path, token } | Self::Unwatch { path, token } => {
                check_token(token)?;
                e.string(path.as_bytes())?.string(token)?;
            }
            Self::TransactionStart | Self::ResetWatches => {
                e.bytes(&[0])?;
            }
            Self::TransactionEnd { commit } => {
                e.string(if commit { b"T" } else { b"F" })?;
            }
            Self::Introduce { domid, mfn, port } => {
                e.decimal(u16::from(domid))?.decimal(mfn)?.decimal(port)?;
            }
            Self::Release { domid }
            | Self::GetDomainPath { domid }
            | Self::IsDomainIntroduced { domid }
            | Self::Resume { domid } => {
                e.decimal(u16::from(domid))?;
            }
            Self::Write { path, value } => {
                e.string(path.as_bytes())?.bytes(value)?;
            }
            Self::SetPerms { path, perms } => {
                if perms.is_empty() {
                    return Err(Error::Malformed);
                }
                e.string(path.as_bytes())?;
                for perm in perms.iter() {
                    perm.encode(&mut e)?;
                }
            }
            Self::SetTarget { domid, target } => {
                e.decimal(u16::from(domid))?.decimal(u16::from(target))?;
            }
        }
        e.finish(self.msg_type(), req_id, tx_id)
    }
}

/// A reply (or watch event) from xenstored.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply<'a> {
    /// `OK\0`, the success reply of requests without a result.
    Ok,
    /// `XS_ERROR`.
    Error(Errno),
    /// `XS_READ`: the value.
    Value(&'a [u8]),
    /// `XS_DIRECTORY`: child leaf names.
    Directory(Strings<'a>),
    /// `XS_DIRECTORY_PART`.
    DirectoryPart {
        /// Generation count of the node; equal counts mean the list did not change.
        generation: u64,
        /// Child leaf names in this part.
        children: Strings<'a>,
        /// Whether this part reaches the end of the list.
        complete: bool,
    },
    /// `XS_GET_PERMS`.
    Perms(PermList<'a>),
    /// `XS_TRANSACTION_START`: the new transaction.
    TransactionStarted(TxId),
    /// `XS_GET_DOMAIN_PATH`.
    DomainPath(Path<'a>),
    /// `XS_IS_DOMAIN_INTRODUCED`.
    Introduced(bool),
    /// `XS_CONTROL`: implementation-defined output.
    Control(&'a [u8]),
    /// `XS_WATCH_EVENT` (req_id and tx_id are 0).
    WatchEvent {
        /// The path that changed (relative if the watch was).
        path: Path<'a>,
        /// The watch's token.
        token: &'a [u8],
    },
}

/// Types whose success reply is `OK\0`.
fn is_ok_type(ty: MsgType) -> bool {
    matches!(
        ty,
        MsgType::Write
            | MsgType::Mkdir
            | MsgType::Rm
            | MsgType::SetPerms
            | MsgType::Watch
            | MsgType::Unwatch
            | MsgType::TransactionEnd
            | MsgType::Introduce
            | MsgType::Release
            | MsgType::Resume
            | MsgType::SetTarget
            | MsgType::ResetWatches
    )
}

impl<'a> Reply<'a> {
    /// Parses a reply or watch event according to its header type.
    pub fn parse(msg: &Message<'a>) -> Result<Self, Error> {
        let p = msg.payload;
        let ty = msg.header.msg_type;
        if is_ok_type(ty) {
            return match fields::<1>(p)? {
                [b"OK"] => Ok(Self::Ok),
                _ => Err(Error::Malformed),
            };
        }
        Ok(match ty {
            MsgType::Error => {
                Self::Error(Errno::from_name(fields::<1>(p)?[0]).ok_or(Error::UnknownErrno)?)
            }
            MsgType::Read => Self::Value(p),
            MsgType::Directory => Self::Directory(Strings::new(p)?),
            MsgType::DirectoryPart => {
                let mut it = Strings::new(p)?;
                let generation = parse_u64(it.next().ok_or(Error::Malformed)?)?;
                let rest = it.remainder();
                // The list ends with an empty name (a second NUL) once complete.
                let (children, complete) = match rest.strip_suffix(&[0]) {
                    Some(body) if body.is_empty() || body.last() == Some(&0) => (body, true),
                    _ => (rest, false),
                };
                Self::DirectoryPart {
                    generation,
                    children: Strings::new(children)?,
                    complete,
                }
            }
            MsgType::GetPerms => Self::Perms(PermList::parse(p)?),
            MsgType::TransactionStart => {
                Self::TransactionStarted(TxId(parse_u32(fields::<1>(p)?[0])?))
            }
            MsgType::GetDomainPath => Self::DomainPath(path_field(fields::<1>(p)?[0])?),
            MsgType::IsDomainIntroduced => Self::Introduced(flag_field(fields::<1>(p)?[0])?),
            MsgType::Control => Self::Control(p),
            MsgType::WatchEvent => {
                let [path, token] = fields::<2>(p)?;
                Self::WatchEvent {
                    path: path_field(path)?,
                    token,
                }
            }
            _ => return Err(Error::UnexpectedReply),
        })
    }

    /// The header type this reply travels with, given the type of the request it answers.
    /// Fails if the reply cannot answer such a request.
    pub fn wire_type(&self, request: MsgType) -> Result<MsgType, Error> {
        let fits = |ty: MsgType| {
            if request == ty {
                Ok(ty)
            } else {
                Err(Error::UnexpectedReply)
            }
        };
        match self {
            Self::Ok if is_ok_type(request) => Ok(request),
            Self::Ok => Err(Error::UnexpectedReply),
            Self::Error(_) => Ok(MsgType::Error),
            Self::WatchEvent { .. } => Ok(MsgType::WatchEvent),
            Self::Value(_) => fits(MsgType::Read),
            Self::Directory(_) => fits(MsgType::Directory),
            Self::DirectoryPart { .. } => fits(MsgType::DirectoryPart),
            Self::Perms(_) => fits(MsgType::GetPerms),
            Self::TransactionStarted(_) => fits(MsgType::TransactionStart),
            Self::DomainPath(_) => fits(MsgType::GetDomainPath),
            Self::Introduced(_) => fits(MsgType::IsDomainIntroduced),
            Self::Control(_) => fits(MsgType::Control),
        }
    }

    /// Encodes this reply to a request of type `request` into `out` (server side).
    pub fn encode(
        &self,
        request: MsgType,
        req_id: ReqId,
        tx_id: TxId,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let ty = self.wire_type(request)?;
        let mut e = Encoder::new(out)?;
        match *self {
            Self::Ok => {
                e.string(b"OK")?;
            }
            Self::Error(errno) => {
                e.string(errno.name().as_bytes())?;
            }
            Self::Value(v) | Self::Control(v) => {
                e.bytes(v)?;
            }
            Self::Directory(ref children) => {
                e.bytes(children.remainder())?;
            }
            Self::DirectoryPart {
                generation,
                ref children,
                complete,
            } => {
                e.decimal(generation)?.bytes(children.remainder())?;
                if complete {
                    e.bytes(&[0])?;
                }
            }
            Self::Perms(perms) => {
                if perms.is_empty() {
                    return Err(Error::Malformed);
                }
                for perm in perms.iter() {
                    perm.encode(&mut e)?;
                }
            }
            Self::TransactionStarted(tx) => {
                e.decimal(tx.0)?;
            }
            Self::DomainPath(path) => {
                e.string(path.as_bytes())?;
            }
            Self::Introduced(yes) => {
                e.string(if yes { b"T" } else { b"F" })?;
            }
            Self::WatchEvent { path, token } => {
                check_token(token)?;
                e.string(path.as_bytes())?.string(token)?;
            }
        }
        let (req_id, tx_id) = if ty == MsgType::WatchEvent {
            (ReqId(0), TxId(0))
        } else {
            (req_id, tx_id)
        };
        e.finish(ty, req_id, tx_id)
    }
}
