//! XenStore: the wire protocol, a client over any byte transport, and the trait drivers use.
//!
//! Layers, bottom up:
//!
//! * [`wire`]: message types, the 16-byte header, error names, limits, field splitting and an
//!   encoder into caller buffers;
//! * [`path`]: path syntax ([`Path`]) and a fixed-capacity builder ([`PathBuf`]);
//! * [`msg`]: typed [`Request`]s and [`Reply`]s with per-type NUL rules, both directions;
//! * [`Decoder`]: reassembles messages from arbitrary chunks, never allocating or panicking;
//! * [`watch`]: the bounded per-watch event queue (XSA-349);
//! * [`client`]: a synchronous [`Client`] generic over an [`XsTransport`];
//! * [`ring`]: the transport over the shared-page byte ring (guests, the kernel); with the
//!   `std` feature, `unix` is the transport over xenstored's Unix socket (dom0 userspace);
//! * [`store`]: the [`XenStore`] trait protocol engines are written against, and
//!   [`with_transaction`], the bounded `EAGAIN` retry loop.
//!
//! Nothing in this module allocates: message buffers are fixed arrays of [`wire::MSG_MAX`] bytes
//! and results are copied into buffers the caller provides.

pub mod client;
mod decode;
pub mod msg;
pub mod path;
pub mod ring;
pub mod store;
pub mod transport;
pub mod watch;
pub mod wire;

#[cfg(feature = "std")]
pub mod unix;

pub use client::Client;
pub use decode::Decoder;
pub use msg::{Access, Perm, PermList, Reply, Request};
pub use path::{Path, PathBuf};
pub use ring::{RingEvents, RingTransport};
pub use store::{with_transaction, TransactionError, WatchEvent, WatchId, XenStore};
pub use transport::XsTransport;
pub use wire::{Errno, Error, Header, Message, MsgType, ReqId, Strings, TxId};
