//! The frontend of the netif control ring (`feature-ctrl-ring`): Toeplitz receive hashing for a multi-queue vif, set up one checked request at a time.
//!
//! Linux's netfront never uses the control ring, so a Linux guest's packets reach its queues
//! however the backend likes. With it, the frontend chooses: the backend hashes each received
//! packet's addresses (and TCP ports) with the Toeplitz function and a key the frontend gives
//! it, and looks the hash up in a table the frontend fills to pick the queue, as RSS hardware
//! does. The hash also comes back with the packet (an `XEN_NETIF_EXTRA_TYPE_HASH` slot, which
//! [`RxParser`](crate::RxParser) accepts), for the glue to give the stack.
//!
//! # The sequence
//!
//! [`Sequence`] is the pure state machine; [`CtrlFront`] runs it over the ring. One request is
//! outstanding at a time, and hashing is turned on last, once key and table are in place:
//!
//! | step | request | on success |
//! |---|---|---|
//! | [`Step::SetAlgorithm`] | `SET_HASH_ALGORITHM` Toeplitz | |
//! | [`Step::GetFlags`] | `GET_HASH_FLAGS` | the flags to set: those asked for that the backend offers (none in common: stop) |
//! | [`Step::SetKey`] | `SET_HASH_KEY` (a page granted read-only holding the key) | |
//! | [`Step::GetMappingSize`] | `GET_HASH_MAPPING_SIZE` (only with several queues) | the table size: the one asked for, at most what the backend takes; no table if it takes fewer entries than there are queues (the hash then picks the queue modulo their number) |
//! | [`Step::SetMappingSize`] | `SET_HASH_MAPPING_SIZE` | |
//! | [`Step::SetMapping`] | `SET_HASH_MAPPING` (a page granted read-only holding the table: entry `i` is queue `i % queues`) | |
//! | [`Step::SetFlags`] | `SET_HASH_FLAGS` | hashing is on: [`CtrlOutcome::Configured`] |
//!
//! A refusal (any status but success, except `NOT_SUPPORTED` for the table size, which means
//! "no table") ends the sequence; if the algorithm was already set, one more request
//! ([`Step::Disable`], `SET_HASH_ALGORITHM` none) leaves the backend steering as it did
//! before, rather than with half a configuration (a table of zeros sends every packet to
//! queue 0).
//!
//! # What is checked
//!
//! Each response is copied off the ring once ([`parse_response`]) and must answer the request
//! outstanding: the same `id` (every request has a fresh one, so a stale or repeated answer
//! does not match), the same type, a known status. The ring refuses a response producer past
//! the requests. The one value the sequence takes from the backend and uses as a size, the
//! table size, is bounded by the size asked for ([`MAX_MAPPING_ENTRIES`] at most, one page)
//! before anything uses it; the flags offered are masked with those asked for. A response that
//! breaks the protocol fails the ring for good ([`CtrlOutcome::Failed`]): the page is revoked
//! (deferred if the backend still maps it) and every later event is spurious. The glue treats
//! that like a fault on a data ring: the backend is hostile or broken, disconnect the vif.
//!
//! The engine has no timer: a backend that never answers leaves the sequence waiting, and
//! the glue gives up with [`CtrlFront::close`] when it likes (hashing is an optimisation; the
//! data path does not wait for it).

use xen_core::feature::netif::MAX_QUEUES;
use xen_core::platform::{PageAlloc, PageBytes, Progress};
use xen_evtchn::{EvtchnError, EvtchnOps};
use xen_grant::{Access, EndAccess, GrantOps};
use xen_ring::{FrontRing, RingError, SharedMemory};
use xen_sys::wire::netif::{
    CtrlRequest, CtrlResponse, CtrlStatus, CtrlType, HashAlgorithm, HashFlags,
};
use xen_sys::{DomId, GrantRef, Port};

use crate::tx::PAGE;

/// Slots of a one-page control ring (16-byte slots: `__CONST_RING_SIZE(xen_netif_ctrl, 4096)`).
pub const CTRL_RING_SLOTS: u32 = 128;
/// A control ring slot as the ring copies it: a request's bytes.
pub type CtrlReqBytes = [u8; CtrlRequest::SIZE];
/// A response's bytes.
pub type CtrlRspBytes = [u8; CtrlResponse::SIZE];

/// Bytes of a Toeplitz key: the longest input hashed (IPv6 addresses and TCP ports, 36 bytes)
/// plus the 4 bytes the 32-bit window reaches past it. Key bytes beyond that are never used;
/// `io/netif.h` sets no limit of its own (it is "backend specific"), Linux's netback takes 40.
pub const KEY_LEN: usize = 40;

/// Microsoft's RSS verification key, the usual default (what NICs and Windows use).
pub const DEFAULT_KEY: [u8; KEY_LEN] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Most mapping-table entries we set: one page of `u32` queue numbers, so one
/// `SET_HASH_MAPPING` request carries the whole table.
pub const MAX_MAPPING_ENTRIES: u32 = (PAGE / 4) as u32;
/// The table size asked for by default (what Linux's netback takes at most).
pub const DEFAULT_MAPPING_ENTRIES: u32 = 128;
/// Responses one [`CtrlFront::handle_event`] call takes at most: the longest sequence.
pub const MAX_RESPONSES_PER_EVENT: u32 = 8;

/// The Toeplitz hash of `input` under `key` (key bytes past its end count as zero).
///
/// For each bit of the input, most significant first, that is set, the 32 key bits starting
/// at the same bit position are XORed into the result. A 64-bit window holds the key bits
/// from the current input byte's first bit on, refilled a byte at a time.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));
    let mut window = (0..8).fold(0u64, |w, i| (w << 8) | key_byte(i));
    let mut hash = 0u32;
    for (i, &byte) in input.iter().enumerate() {
        for bit in 0..8u32 {
            if byte & (0x80 >> bit) != 0 {
                // Key bits `bit .. bit + 32` of the window (counted from its top).
                hash ^= (window >> (32 - bit)) as u32;
            }
        }
        window = (window << 8) | key_byte(i + 8);
    }
    hash
}

/// The bytes a hash covers, in the order `io/netif.h` gives: source address, destination
/// address, then (for the TCP types) source port and destination port, in network order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashInput {
    buf: [u8; 36],
    len: usize,
}

impl HashInput {
    /// An IPv4 packet ([`HashFlags::IPV4`], or [`HashFlags::IPV4_TCP`] with `ports`).
    pub fn ipv4(src: [u8; 4], dst: [u8; 4], ports: Option<(u16, u16)>) -> Self {
        Self::build(&src, &dst, ports)
    }

    /// An IPv6 packet ([`HashFlags::IPV6`], or [`HashFlags::IPV6_TCP`] with `ports`).
    pub fn ipv6(src: [u8; 16], dst: [u8; 16], ports: Option<(u16, u16)>) -> Self {
        Self::build(&src, &dst, ports)
    }

    fn build(src: &[u8], dst: &[u8], ports: Option<(u16, u16)>) -> Self {
        let mut out = HashInput {
            buf: [0; 36],
            len: 0,
        };
        let (sp, dp) = ports.map_or(([0; 2], [0; 2]), |(s, d)| {
            (s.to_be_bytes(), d.to_be_bytes())
        });
        let port_bytes: &[&[u8]] = if ports.is_some() { &[&sp, &dp] } else { &[] };
        for part in [src, dst].iter().chain(port_bytes) {
            for &b in part.iter() {
                if let Some(slot) = out.buf.get_mut(out.len) {
                    *slot = b;
                    out.len += 1;
                }
            }
        }
        out
    }

    /// The bytes to hash.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// The default mapping table's entry `entry`: queues in turn (`entry % num_queues`), so
/// every queue gets the same share of hash values.
pub fn default_queue(entry: u32, num_queues: u32) -> u32 {
    entry % num_queues.max(1)
}

/// What the frontend asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashConfig {
    /// Queues the vif has (`multi-queue-num-queues`), 1 to [`MAX_QUEUES`]. With one queue no
    /// table is set (hashing still gives the stack each packet's hash).
    pub num_queues: u32,
    /// Packet types to hash (those the backend does not offer are dropped from the set).
    pub flags: HashFlags,
    /// The key; bytes past `key_len` are not sent.
    pub key: [u8; KEY_LEN],
    /// Bytes of `key` to send, 1 to [`KEY_LEN`].
    pub key_len: u8,
    /// Table entries wanted, `num_queues` to [`MAX_MAPPING_ENTRIES`] (fewer if the backend
    /// takes fewer).
    pub mapping_entries: u32,
}

impl HashConfig {
    /// Every packet type, [`DEFAULT_KEY`] and [`DEFAULT_MAPPING_ENTRIES`], for `num_queues`.
    pub fn new(num_queues: u32) -> Self {
        HashConfig {
            num_queues,
            flags: HashFlags::all(),
            key: DEFAULT_KEY,
            key_len: KEY_LEN as u8,
            mapping_entries: DEFAULT_MAPPING_ENTRIES.max(num_queues),
        }
    }

    /// Checks the bounds of each field.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.num_queues == 0 || self.num_queues > MAX_QUEUES {
            return Err(ConfigError::Queues);
        }
        if self.flags.is_empty() || HashFlags::from_bits(self.flags.bits()).is_none() {
            return Err(ConfigError::Flags);
        }
        if self.key_len == 0 || usize::from(self.key_len) > KEY_LEN {
            return Err(ConfigError::KeyLength);
        }
        if self.mapping_entries < self.num_queues || self.mapping_entries > MAX_MAPPING_ENTRIES {
            return Err(ConfigError::MappingEntries);
        }
        Ok(())
    }

    /// The key bytes sent.
    pub fn key(&self) -> &[u8] {
        self.key
            .get(..usize::from(self.key_len))
            .unwrap_or(&self.key)
    }
}

/// A [`HashConfig`] field out of bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `num_queues` is 0 or more than [`MAX_QUEUES`].
    Queues,
    /// `flags` is empty or has an unknown bit.
    Flags,
    /// `key_len` is 0 or more than [`KEY_LEN`].
    KeyLength,
    /// `mapping_entries` is below `num_queues` or above [`MAX_MAPPING_ENTRIES`].
    MappingEntries,
}

/// A step of the [`Sequence`], named for what it sets or gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Select Toeplitz.
    SetAlgorithm,
    /// Ask which packet types the backend hashes.
    GetFlags,
    /// Give the key.
    SetKey,
    /// Ask the largest table the backend takes.
    GetMappingSize,
    /// Set the table's size.
    SetMappingSize,
    /// Fill the table.
    SetMapping,
    /// Turn hashing on for the chosen packet types.
    SetFlags,
    /// After a refusal: select no algorithm again.
    Disable,
}

impl Step {
    /// The request type this step sends.
    pub fn ctrl_type(self) -> CtrlType {
        match self {
            Step::SetAlgorithm | Step::Disable => CtrlType::SetHashAlgorithm,
            Step::GetFlags => CtrlType::GetHashFlags,
            Step::SetKey => CtrlType::SetHashKey,
            Step::GetMappingSize => CtrlType::GetHashMappingSize,
            Step::SetMappingSize => CtrlType::SetHashMappingSize,
            Step::SetMapping => CtrlType::SetHashMapping,
            Step::SetFlags => CtrlType::SetHashFlags,
        }
    }
}

/// What a request needs besides its words: a page to fill and grant, whose reference goes in
/// `data[0]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The key ([`HashConfig::key`]) from offset 0.
    Key,
    /// The table's `entries` entries ([`default_queue`], native-endian `u32`s) from offset 0.
    Mapping {
        /// Entries (at most [`MAX_MAPPING_ENTRIES`]).
        entries: u32,
    },
}

/// The request the sequence wants sent next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// The step.
    pub step: Step,
    /// The request's words; with a payload, `data[0]` is left 0 for the page's grant.
    pub data: [u32; 3],
    /// The page the request points to, if any.
    pub payload: Option<Payload>,
}

/// A response, checked against its request: the status and the data word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// A known status.
    pub status: CtrlStatus,
    /// The data word (meaningful for a `Get*` request that succeeded; not looked at
    /// otherwise).
    pub data: u32,
}

/// A response that breaks the protocol: the control ring fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The `id` is not the outstanding request's: bogus, stale or a repeated answer.
    BadId {
        /// The response's id.
        id: u16,
        /// The outstanding request's.
        expected: u16,
    },
    /// A response with no request outstanding.
    Unexpected(u16),
    /// The type is not the outstanding request's.
    WrongType {
        /// The response's type (raw).
        ty: u16,
        /// The request's.
        expected: CtrlType,
    },
    /// The status is no `XEN_NETIF_CTRL_STATUS_*`.
    UnknownStatus(u32),
}

/// Copies a response out of its bytes once and checks it answers the request `id` of type
/// `ty`: same id, same type, known status.
pub fn parse_response(raw: &CtrlRspBytes, id: u16, ty: CtrlType) -> Result<Reply, Fault> {
    let rsp = CtrlResponse::from_bytes(raw);
    if rsp.id != id {
        return Err(Fault::BadId {
            id: rsp.id,
            expected: id,
        });
    }
    if rsp.ty != u16::from(ty) {
        return Err(Fault::WrongType {
            ty: rsp.ty,
            expected: ty,
        });
    }
    let status = CtrlStatus::try_from(rsp.status).map_err(|u| Fault::UnknownStatus(u.0))?;
    Ok(Reply {
        status,
        data: rsp.data,
    })
}

/// The hashing the backend was set up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashSetup {
    /// Packet types hashed: asked for and offered.
    pub flags: HashFlags,
    /// What the backend offered (known bits only).
    pub offered: HashFlags,
    /// Key bytes sent.
    pub key_len: u8,
    /// Table entries (queue `i % num_queues` at entry `i`), or 0: no table, the backend picks
    /// the queue as the hash modulo the number of queues.
    pub mapping_entries: u32,
}

/// How the sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlOutcome {
    /// Hashing is on.
    Configured(HashSetup),
    /// The backend answered `step` with `status` (not success); hashing is off.
    Refused {
        /// The step refused.
        step: Step,
        /// Its status.
        status: CtrlStatus,
    },
    /// The backend hashes none of the packet types asked for; hashing is off.
    NoCommonFlags {
        /// What it offered (known bits only).
        offered: HashFlags,
    },
    /// A page or grant for `step` could not be had; hashing is off (if the backend could be
    /// told).
    NoResources {
        /// The step that needed it.
        step: Step,
    },
    /// The ring broke, a response broke the protocol, or the engine was closed first.
    Failed(Error),
}

/// The sequence of control requests that sets up hashing: a pure state machine, fed one
/// checked [`Reply`] per [`Command`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequence {
    config: HashConfig,
    /// The step whose command is next or outstanding; `None` once finished.
    step: Option<Step>,
    offered: HashFlags,
    flags: HashFlags,
    mapping_entries: u32,
    /// The backend accepted the algorithm: a refusal later must select none again.
    algorithm_set: bool,
    /// How the sequence ends (set before the final `Disable`, if one is needed).
    outcome: Option<CtrlOutcome>,
}

impl Sequence {
    /// A sequence for `config` (checked), at its first step.
    pub fn new(config: HashConfig) -> Result<Self, ConfigError> {
        config.check()?;
        Ok(Sequence {
            config,
            step: Some(Step::SetAlgorithm),
            offered: HashFlags::empty(),
            flags: HashFlags::empty(),
            mapping_entries: 0,
            algorithm_set: false,
            outcome: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HashConfig {
        &self.config
    }

    /// The current step; `None` once finished.
    pub fn step(&self) -> Option<Step> {
        self.step
    }

    /// The request to send for the current step; `None` once finished.
    pub fn command(&self) -> Option<Command> {
        let step = self.step?;
        let (data, payload) = match step {
            Step::SetAlgorithm => ([u32::from(HashAlgorithm::Toeplitz), 0, 0], None),
            Step::Disable => ([u32::from(HashAlgorithm::None), 0, 0], None),
            Step::GetFlags | Step::GetMappingSize => ([0; 3], None),
            Step::SetKey => ([0, u32::from(self.config.key_len), 0], Some(Payload::Key)),
            Step::SetMappingSize => ([self.mapping_entries, 0, 0], None),
            Step::SetMapping => (
                [0, self.mapping_entries, 0],
                Some(Payload::Mapping {
                    entries: self.mapping_entries,
                }),
            ),
            Step::SetFlags => ([self.flags.bits(), 0, 0], None),
        };
        Some(Command {
            step,
            data,
            payload,
        })
    }

    /// Feeds the reply to the current step's request; moves to the next step (or finishes).
    /// Does nothing once finished.
    pub fn answer(&mut self, reply: Reply) {
        let Some(step) = self.step else { return };
        let ok = reply.status == CtrlStatus::Success;
        let refused = CtrlOutcome::Refused {
            step,
            status: reply.status,
        };
        // `NOT_SUPPORTED` to the table size means "no table", not a refusal.
        let no_table = step == Step::GetMappingSize && reply.status == CtrlStatus::NotSupported;
        match step {
            Step::Disable => self.step = None,
            _ if !(ok || no_table) => self.stop(refused),
            Step::SetAlgorithm => {
                self.algorithm_set = true;
                self.step = Some(Step::GetFlags);
            }
            Step::GetFlags => {
                self.offered = HashFlags::from_bits_truncate(reply.data);
                self.flags = self.config.flags & self.offered;
                if self.flags.is_empty() {
                    self.stop(CtrlOutcome::NoCommonFlags {
                        offered: self.offered,
                    });
                } else {
                    self.step = Some(Step::SetKey);
                }
            }
            Step::SetKey if self.config.num_queues > 1 => self.step = Some(Step::GetMappingSize),
            Step::SetKey => self.step = Some(Step::SetFlags),
            Step::GetMappingSize => {
                // `NOT_SUPPORTED` or 0: no table. The backend's maximum is bounded by ours
                // before it is used; a table with fewer entries than queues would leave some
                // queues out, the modulo does not.
                let max = if ok { reply.data } else { 0 };
                if max < self.config.num_queues {
                    self.mapping_entries = 0;
                    self.step = Some(Step::SetFlags);
                } else {
                    self.mapping_entries = self.config.mapping_entries.min(max);
                    self.step = Some(Step::SetMappingSize);
                }
            }
            Step::SetMappingSize => self.step = Some(Step::SetMapping),
            Step::SetMapping => self.step = Some(Step::SetFlags),
            Step::SetFlags => {
                self.step = None;
                self.outcome = Some(CtrlOutcome::Configured(HashSetup {
                    flags: self.flags,
                    offered: self.offered,
                    key_len: self.config.key_len,
                    mapping_entries: self.mapping_entries,
                }));
            }
        }
    }

    /// Ends the sequence with `outcome` because the current step cannot be sent (no page or
    /// grant); like a refusal, the algorithm is unset again if it was set.
    pub fn abort(&mut self, outcome: CtrlOutcome) {
        match self.step {
            // Even the reset could not be sent: give up.
            Some(Step::Disable) | None => self.step = None,
            Some(_) => self.stop(outcome),
        }
    }

    fn stop(&mut self, outcome: CtrlOutcome) {
        self.outcome = Some(outcome);
        self.step = if self.algorithm_set {
            Some(Step::Disable)
        } else {
            None
        };
    }

    /// Whether the sequence is over.
    pub fn is_finished(&self) -> bool {
        self.step.is_none()
    }

    /// How it ended; `None` while it runs (including its final `Disable`).
    pub fn outcome(&self) -> Option<CtrlOutcome> {
        if self.is_finished() {
            self.outcome
        } else {
            None
        }
    }
}

/// Why an engine call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The configuration is out of bounds (nothing was set up).
    Config(ConfigError),
    /// The ring is unusable: the memory cannot hold it, or the backend broke it (an
    /// impossible index). The control ring failed.
    Ring(RingError),
    /// A notification could not be sent: the control ring failed (the backend would never
    /// see the request).
    Evtchn(EvtchnError),
    /// The backend sent a response that breaks the protocol: the control ring failed.
    Fault(Fault),
    /// Closed before the sequence finished.
    Closed,
}

/// Counters of a control ring (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtrlStats {
    /// Requests sent.
    pub requests: u64,
    /// Responses taken (checked or not).
    pub responses: u64,
    /// Notifications sent.
    pub notifications: u64,
    /// [`CtrlFront::handle_event`] calls.
    pub events: u64,
    /// Those that found no response.
    pub spurious_events: u64,
    /// Pages allocated (and zeroed).
    pub page_allocs: u64,
    /// Grants made.
    pub grants: u64,
    /// Grants ended.
    pub grant_ends: u64,
    /// Pages the backend still mapped when their grant was ended: deferred, never reused.
    pub deferred_frees: u64,
}

/// The request on the ring.
#[derive(Clone, Copy, Debug)]
struct Outstanding {
    id: u16,
    ty: CtrlType,
}

/// The frontend of a netif control ring: runs a [`Sequence`] over a one-page ring granted to
/// the backend, with its own event channel.
///
/// The glue allocates and grants the ring page, binds the port, writes both with
/// `xen_core::feature::netif::write_ctrl_ring`, and once the backend is Connected calls
/// [`start`](Self::start); on each event on the port it calls
/// [`handle_event`](Self::handle_event) and passes the verdict to the late EOI, until
/// [`outcome`](Self::outcome) is `Some`. The requests' pages (key, table) are the engine's,
/// zeroed before they are filled and granted read-only; each grant is ended when its answer
/// comes (a page the backend still maps is deferred, never reused).
///
/// # Invariants
///
/// At most one request is outstanding, and `gref` is set only while it is (it is the grant
/// of `page` the request points to).
pub struct CtrlFront<P: GrantOps, M> {
    env: P,
    backend: DomId,
    port: Port,
    ring: FrontRing<M, CtrlReqBytes, CtrlRspBytes>,
    seq: Sequence,
    started: bool,
    outstanding: Option<Outstanding>,
    next_id: u16,
    /// The page for key and table, kept between the two.
    page: Option<P::Page>,
    gref: Option<GrantRef>,
    failed: Option<Error>,
    closed: bool,
    stats: CtrlStats,
}

impl<P, M> CtrlFront<P, M>
where
    P: GrantOps + EvtchnOps + PageAlloc<Page = <P as GrantOps>::Page>,
    <P as GrantOps>::Page: PageBytes,
    M: SharedMemory,
{
    /// A control ring over `ring` (one page, already granted to `backend`), notifying
    /// through `port`, to set up `config`. Initialises (zeroes) the ring; sends nothing yet.
    pub fn new(
        env: P,
        ring: M,
        backend: DomId,
        port: Port,
        config: HashConfig,
    ) -> Result<Self, Error> {
        let seq = Sequence::new(config).map_err(Error::Config)?;
        let ring = FrontRing::init(ring).map_err(Error::Ring)?;
        Ok(CtrlFront {
            env,
            backend,
            port,
            ring,
            seq,
            started: false,
            outstanding: None,
            next_id: 0,
            page: None,
            gref: None,
            failed: None,
            closed: false,
            stats: CtrlStats::default(),
        })
    }

    /// The platform.
    pub fn env(&self) -> &P {
        &self.env
    }

    /// Counters.
    pub fn stats(&self) -> CtrlStats {
        self.stats
    }

    /// The sequence (its step and configuration).
    pub fn sequence(&self) -> &Sequence {
        &self.seq
    }

    /// How the sequence ended; `None` while it runs. Closing it before the end makes it
    /// [`Error::Closed`]; closing it after keeps the outcome.
    pub fn outcome(&self) -> Option<CtrlOutcome> {
        if let Some(e) = self.failed {
            return Some(CtrlOutcome::Failed(e));
        }
        match self.seq.outcome() {
            Some(o) => Some(o),
            None if self.closed => Some(CtrlOutcome::Failed(Error::Closed)),
            None => None,
        }
    }

    /// Whether the ring failed or was closed: it takes no more answers.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some() || self.closed
    }

    /// Whether a request waits for its answer.
    pub fn is_waiting(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Pages the engine holds (at most one).
    pub fn pages_held(&self) -> usize {
        usize::from(self.page.is_some())
    }

    /// Sends the first request. Only the first call does anything.
    pub fn start(&mut self) -> Result<(), Error> {
        if self.started || self.is_failed() {
            return Ok(());
        }
        self.started = true;
        self.send_next()
    }

    /// Handles an event on the control port: takes the answers waiting (at most
    /// [`MAX_RESPONSES_PER_EVENT`]), each checked, sending the next request after each.
    /// `spurious` if no answer was there; after a failure every event is.
    pub fn handle_event(&mut self) -> Result<Progress, Error> {
        self.stats.events = self.stats.events.wrapping_add(1);
        let p = self.take_responses();
        if let Ok(p) = &p {
            if p.spurious {
                self.stats.spurious_events = self.stats.spurious_events.wrapping_add(1);
            }
        }
        p
    }

    fn take_responses(&mut self) -> Result<Progress, Error> {
        if self.is_failed() {
            return Ok(Progress {
                done: 0,
                more: false,
                spurious: true,
            });
        }
        let mut done = 0u32;
        while done < MAX_RESPONSES_PER_EVENT {
            let raw = match self.ring.next_response() {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => return Err(self.fail_with(Error::Ring(e))),
            };
            done += 1;
            self.stats.responses = self.stats.responses.wrapping_add(1);
            self.answer(&raw)?;
        }
        let more = if done >= MAX_RESPONSES_PER_EVENT {
            true
        } else {
            match self.ring.final_check_for_responses() {
                Ok(more) => more,
                Err(e) => return Err(self.fail_with(Error::Ring(e))),
            }
        };
        Ok(Progress {
            done,
            more,
            spurious: done == 0,
        })
    }

    /// Checks one response against the outstanding request, feeds it to the sequence, and
    /// sends the next request.
    fn answer(&mut self, raw: &CtrlRspBytes) -> Result<(), Error> {
        let Some(out) = self.outstanding else {
            // The ring lets no more answers through than requests were sent; this would
            // take a bug of ours.
            let id = CtrlResponse::from_bytes(raw).id;
            return Err(self.fail_with(Error::Fault(Fault::Unexpected(id))));
        };
        let reply = match parse_response(raw, out.id, out.ty) {
            Ok(r) => r,
            Err(f) => return Err(self.fail_with(Error::Fault(f))),
        };
        self.outstanding = None;
        // The backend has answered: it may no longer read the page.
        self.end_grant();
        self.seq.answer(reply);
        self.send_next()
    }

    /// Sends the sequence's next request (if it has one and none is outstanding): fills and
    /// grants its page first. A page or grant that cannot be had ends the sequence
    /// ([`CtrlOutcome::NoResources`], after unsetting the algorithm if needed).
    fn send_next(&mut self) -> Result<(), Error> {
        while self.outstanding.is_none() {
            let Some(cmd) = self.seq.command() else {
                // Finished: the page is not needed any more.
                self.page = None;
                return Ok(());
            };
            let mut data = cmd.data;
            if let Some(payload) = cmd.payload {
                match self.grant_payload(payload) {
                    Some(gref) => {
                        if let Some(d0) = data.first_mut() {
                            *d0 = gref.raw();
                        }
                    }
                    None => {
                        self.seq.abort(CtrlOutcome::NoResources { step: cmd.step });
                        continue;
                    }
                }
            }
            let ty = cmd.step.ctrl_type();
            let id = self.next_id;
            let req = CtrlRequest::new(id, ty, data);
            if let Err(e) = self.ring.queue_request(&req.to_bytes()) {
                // One request at a time: the ring is never full; only a broken ring refuses.
                return Err(self.fail_with(Error::Ring(e)));
            }
            self.next_id = self.next_id.wrapping_add(1);
            self.outstanding = Some(Outstanding { id, ty });
            self.stats.requests = self.stats.requests.wrapping_add(1);
            match self.ring.push_requests() {
                Ok(n) if n.is_required() => {
                    self.stats.notifications = self.stats.notifications.wrapping_add(1);
                    if let Err(e) = self.env.notify(self.port) {
                        return Err(self.fail_with(Error::Evtchn(e)));
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(self.fail_with(Error::Ring(e))),
            }
        }
        Ok(())
    }

    /// Fills the engine's page with `payload` (zeroed first) and grants it read-only;
    /// `None` if no page or grant could be had.
    fn grant_payload(&mut self, payload: Payload) -> Option<GrantRef> {
        let mut page = match self.page.take() {
            Some(p) => p,
            None => {
                let p = self.env.alloc_page()?;
                self.stats.page_allocs = self.stats.page_allocs.wrapping_add(1);
                p
            }
        };
        // Not granted (a page the backend still mapped was never kept): plain zeroing is
        // allowed, and leaves nothing of the last payload next to this one.
        self.env.zero_page(&mut page);
        let written = match payload {
            Payload::Key => page.write_bytes(0, self.seq.config().key()),
            Payload::Mapping { entries } => write_mapping(
                &page,
                entries.min(MAX_MAPPING_ENTRIES),
                self.seq.config().num_queues,
            ),
        };
        if !written {
            self.page = Some(page);
            return None;
        }
        let gref = match self.env.grant_access(self.backend, &page, Access::ReadOnly) {
            Ok(g) => g,
            Err(_) => {
                self.page = Some(page);
                return None;
            }
        };
        self.stats.grants = self.stats.grants.wrapping_add(1);
        self.page = Some(page);
        // INVARIANT: the request that points to this grant is queued next.
        self.gref = Some(gref);
        Some(gref)
    }

    /// Ends the grant of the page (if any): the page stays for reuse, or is deferred (never
    /// reused) while the backend still maps it.
    fn end_grant(&mut self) {
        let Some(gref) = self.gref.take() else { return };
        self.stats.grant_ends = self.stats.grant_ends.wrapping_add(1);
        if self.env.end_access(gref) == EndAccess::StillMapped {
            self.stats.deferred_frees = self.stats.deferred_frees.wrapping_add(1);
            if let Some(page) = self.page.take() {
                self.env.defer_free(gref, page);
            }
        }
    }

    fn fail_with(&mut self, e: Error) -> Error {
        if self.failed.is_none() {
            self.failed = Some(e);
        }
        self.outstanding = None;
        self.end_grant();
        self.page = None;
        e
    }

    /// Closes the ring (teardown, a fault the glue saw elsewhere, or a backend that takes
    /// too long): revokes the page (deferred while the backend maps it); every later event
    /// is spurious. Idempotent. An outcome already reached stays; an unfinished sequence
    /// ends [`Error::Closed`].
    pub fn close(&mut self) {
        self.closed = true;
        self.outstanding = None;
        self.end_grant();
        self.page = None;
    }

    /// The ring memory, after [`close`](Self::close), for the glue to revoke and free with
    /// `xen_core::platform::release_ring`.
    pub fn into_ring(mut self) -> M {
        self.close();
        self.ring.into_memory()
    }
}

/// Writes the default table of `entries` entries for `num_queues` queues into `page` from
/// offset 0; `false` if the page refused a write.
fn write_mapping<Pg: PageBytes>(page: &Pg, entries: u32, num_queues: u32) -> bool {
    let mut chunk = [0u8; 256];
    let per_chunk = (chunk.len() / 4) as u32;
    let mut entry = 0u32;
    while entry < entries {
        let n = per_chunk.min(entries - entry);
        for (i, out) in chunk.chunks_exact_mut(4).take(n as usize).enumerate() {
            let q = default_queue(entry + i as u32, num_queues);
            out.copy_from_slice(&q.to_ne_bytes());
        }
        let bytes = chunk.get(..n as usize * 4).unwrap_or(&[]);
        if !page.write_bytes(entry as usize * 4, bytes) {
            return false;
        }
        entry += n;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(groups: [u16; 8]) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (o, g) in out.chunks_exact_mut(2).zip(groups) {
            o.copy_from_slice(&g.to_be_bytes());
        }
        out
    }

    /// Microsoft's "Verifying the RSS Hash Calculation" IPv4 table: (destination, source,
    /// IPv4 hash, IPv4 with TCP hash). The input is source, destination, source port,
    /// destination port.
    type Vector4 = ([u8; 4], u16, [u8; 4], u16, u32, u32);
    const MS_IPV4: [Vector4; 5] = [
        (
            [161, 142, 100, 80],
            1766,
            [66, 9, 149, 187],
            2794,
            0x323e_8fc2,
            0x51cc_c178,
        ),
        (
            [65, 69, 140, 83],
            4739,
            [199, 92, 111, 2],
            14230,
            0xd718_262a,
            0xc626_b0ea,
        ),
        (
            [12, 22, 207, 184],
            38024,
            [24, 19, 198, 95],
            12898,
            0xd2d0_a5de,
            0x5c2b_394a,
        ),
        (
            [209, 142, 163, 6],
            2217,
            [38, 27, 205, 30],
            48228,
            0x8298_9176,
            0xafc7_327f,
        ),
        (
            [202, 188, 127, 2],
            1303,
            [153, 39, 163, 191],
            44251,
            0x5d18_09c5,
            0x10e8_28a2,
        ),
    ];

    #[test]
    fn toeplitz_matches_microsoft_ipv4_vectors() {
        for (dst, dport, src, sport, ip, tcp) in MS_IPV4 {
            let plain = HashInput::ipv4(src, dst, None);
            assert_eq!(plain.as_bytes().len(), 8);
            assert_eq!(toeplitz(&DEFAULT_KEY, plain.as_bytes()), ip, "{dst:?}");
            let with_ports = HashInput::ipv4(src, dst, Some((sport, dport)));
            assert_eq!(with_ports.as_bytes().len(), 12);
            assert_eq!(
                toeplitz(&DEFAULT_KEY, with_ports.as_bytes()),
                tcp,
                "{dst:?}"
            );
        }
    }

    #[test]
    fn toeplitz_matches_microsoft_ipv6_vectors() {
        let cases = [
            (
                [0x3ffe, 0x2501, 0x200, 3, 0, 0, 0, 1],
                1766,
                [0x3ffe, 0x2501, 0x200, 0x1fff, 0, 0, 0, 7],
                2794,
                0x2cc1_8cd5,
                0x4020_7d3d,
            ),
            (
                [0xff02, 0, 0, 0, 0, 0, 0, 1],
                4739,
                [0x3ffe, 0x501, 8, 0, 0x260, 0x97ff, 0xfe40, 0xefab],
                14230,
                0x0f0c_461c,
                0xdde5_1bbf,
            ),
            (
                [0xfe80, 0, 0, 0, 0x200, 0xf8ff, 0xfe21, 0x67cf],
                38024,
                [0x3ffe, 0x1900, 0x4545, 3, 0x200, 0xf8ff, 0xfe21, 0x67cf],
                44251,
                0x4b61_e985,
                0x02d1_feef,
            ),
        ];
        for (dst, dport, src, sport, ip, tcp) in cases {
            let plain = HashInput::ipv6(v6(src), v6(dst), None);
            assert_eq!(plain.as_bytes().len(), 32);
            assert_eq!(toeplitz(&DEFAULT_KEY, plain.as_bytes()), ip);
            let with_ports = HashInput::ipv6(v6(src), v6(dst), Some((sport, dport)));
            assert_eq!(with_ports.as_bytes().len(), 36);
            assert_eq!(toeplitz(&DEFAULT_KEY, with_ports.as_bytes()), tcp);
        }
    }

    /// The definition, one bit at a time: for input bit `i` set, XOR key bits `i..i + 32`.
    fn toeplitz_by_bits(key: &[u8], input: &[u8]) -> u32 {
        let key_bit = |i: usize| key.get(i / 8).map_or(0, |b| (b >> (7 - i % 8)) & 1);
        let mut hash = 0u32;
        for i in 0..input.len() * 8 {
            if (input[i / 8] >> (7 - i % 8)) & 1 == 1 {
                let word = (0..32).fold(0u32, |w, j| (w << 1) | u32::from(key_bit(i + j)));
                hash ^= word;
            }
        }
        hash
    }

    #[test]
    fn toeplitz_agrees_with_its_bitwise_definition_and_short_keys_are_zero_padded() {
        let mut x = 0x1234_5678u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for len in 0..=36 {
            let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            for key_len in [0, 1, 4, 7, 8, 9, 20, 39, 40] {
                let key = &DEFAULT_KEY[..key_len];
                assert_eq!(
                    toeplitz(key, &input),
                    toeplitz_by_bits(key, &input),
                    "len {len} key {key_len}"
                );
            }
        }
        assert_eq!(toeplitz(&[], &[0xff; 12]), 0);
        assert_eq!(toeplitz(&DEFAULT_KEY, &[]), 0);
        // The first input bit alone picks the key's first 32 bits.
        assert_eq!(toeplitz(&DEFAULT_KEY, &[0x80]), 0x6d5a_56da);
    }

    #[test]
    fn one_page_ring_has_128_slots() {
        let g = xen_ring::Geometry::new::<CtrlReqBytes, CtrlRspBytes>(PAGE).unwrap();
        assert_eq!((g.entry_size(), g.entries()), (16, CTRL_RING_SLOTS));
    }

    #[test]
    fn default_table_takes_queues_in_turn() {
        let t: Vec<u32> = (0..8).map(|i| default_queue(i, 3)).collect();
        assert_eq!(t, [0, 1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(default_queue(5, 0), 0);
        assert_eq!(default_queue(u32::MAX, 64), 63);
    }

    #[test]
    fn config_bounds() {
        assert_eq!(HashConfig::new(4).check(), Ok(()));
        assert_eq!(HashConfig::new(0).check(), Err(ConfigError::Queues));
        assert_eq!(HashConfig::new(65).check(), Err(ConfigError::Queues));
        let c = HashConfig::new(4);
        for (bad, err) in [
            (HashConfig { key_len: 0, ..c }, ConfigError::KeyLength),
            (HashConfig { key_len: 41, ..c }, ConfigError::KeyLength),
            (
                HashConfig {
                    mapping_entries: 3,
                    ..c
                },
                ConfigError::MappingEntries,
            ),
            (
                HashConfig {
                    mapping_entries: 1025,
                    ..c
                },
                ConfigError::MappingEntries,
            ),
            (
                HashConfig {
                    flags: HashFlags::empty(),
                    ..c
                },
                ConfigError::Flags,
            ),
            (
                HashConfig {
                    flags: HashFlags::from_bits_retain(0x10),
                    ..c
                },
                ConfigError::Flags,
            ),
        ] {
            assert_eq!(bad.check(), Err(err), "{bad:?}");
            assert_eq!(Sequence::new(bad), Err(err));
        }
        assert_eq!(HashConfig { key_len: 5, ..c }.key(), &DEFAULT_KEY[..5]);
    }

    fn ok(data: u32) -> Reply {
        Reply {
            status: CtrlStatus::Success,
            data,
        }
    }

    fn status(s: CtrlStatus) -> Reply {
        Reply { status: s, data: 0 }
    }

    /// Runs `seq`, answering each step with `backend`; returns the steps and commands seen.
    fn run(seq: &mut Sequence, mut backend: impl FnMut(&Command) -> Reply) -> Vec<Command> {
        let mut seen = Vec::new();
        while let Some(cmd) = seq.command() {
            assert!(seen.len() < 16, "sequence does not end");
            seq.answer(backend(&cmd));
            seen.push(cmd);
        }
        seen
    }

    fn steps(cmds: &[Command]) -> Vec<Step> {
        cmds.iter().map(|c| c.step).collect()
    }

    /// A backend like Linux's netback: every type, tables of up to 128 entries.
    fn netback(cmd: &Command) -> Reply {
        match cmd.step {
            Step::GetFlags => ok(0xf),
            Step::GetMappingSize => ok(128),
            _ => ok(0),
        }
    }

    #[test]
    fn full_sequence_turns_hashing_on_last() {
        let mut seq = Sequence::new(HashConfig::new(4)).unwrap();
        let cmds = run(&mut seq, netback);
        assert_eq!(
            steps(&cmds),
            [
                Step::SetAlgorithm,
                Step::GetFlags,
                Step::SetKey,
                Step::GetMappingSize,
                Step::SetMappingSize,
                Step::SetMapping,
                Step::SetFlags,
            ]
        );
        assert_eq!(cmds[0].data, [1, 0, 0]);
        assert_eq!(
            (cmds[2].data, cmds[2].payload),
            ([0, 40, 0], Some(Payload::Key))
        );
        assert_eq!(cmds[4].data, [128, 0, 0]);
        assert_eq!(
            (cmds[5].data, cmds[5].payload),
            ([0, 128, 0], Some(Payload::Mapping { entries: 128 }))
        );
        assert_eq!(cmds[6].data, [0xf, 0, 0]);
        assert_eq!(
            seq.outcome(),
            Some(CtrlOutcome::Configured(HashSetup {
                flags: HashFlags::all(),
                offered: HashFlags::all(),
                key_len: 40,
                mapping_entries: 128,
            }))
        );
        // Finished: nothing more, answers ignored.
        seq.answer(ok(0));
        assert_eq!(seq.command(), None);
    }

    #[test]
    fn one_queue_sets_no_table() {
        let mut seq = Sequence::new(HashConfig::new(1)).unwrap();
        let cmds = run(&mut seq, netback);
        assert_eq!(
            steps(&cmds),
            [
                Step::SetAlgorithm,
                Step::GetFlags,
                Step::SetKey,
                Step::SetFlags
            ]
        );
        assert!(matches!(
            seq.outcome(),
            Some(CtrlOutcome::Configured(HashSetup {
                mapping_entries: 0,
                ..
            }))
        ));
    }

    #[test]
    fn backend_without_hashing_is_refused_without_a_reset() {
        let mut seq = Sequence::new(HashConfig::new(4)).unwrap();
        let cmds = run(&mut seq, |_| status(CtrlStatus::NotSupported));
        assert_eq!(steps(&cmds), [Step::SetAlgorithm]);
        assert_eq!(
            seq.outcome(),
            Some(CtrlOutcome::Refused {
                step: Step::SetAlgorithm,
                status: CtrlStatus::NotSupported
            })
        );
    }

    #[test]
    fn refusal_after_the_algorithm_resets_it() {
        for refused in [
            Step::GetFlags,
            Step::SetKey,
            Step::SetMappingSize,
            Step::SetMapping,
            Step::SetFlags,
        ] {
            let mut seq = Sequence::new(HashConfig::new(4)).unwrap();
            let cmds = run(&mut seq, |c| {
                if c.step == refused {
                    status(CtrlStatus::InvalidParameter)
                } else if c.step == Step::Disable {
                    // Whatever the reset gets, the outcome stays the refusal.
                    status(CtrlStatus::BufferOverflow)
                } else {
                    netback(c)
                }
            });
            assert_eq!(cmds.last().unwrap().step, Step::Disable, "{refused:?}");
            assert_eq!(cmds.last().unwrap().data, [0, 0, 0]);
            assert_eq!(
                seq.outcome(),
                Some(CtrlOutcome::Refused {
                    step: refused,
                    status: CtrlStatus::InvalidParameter
                })
            );
        }
    }

    #[test]
    fn no_common_flags_resets_the_algorithm() {
        let config = HashConfig {
            flags: HashFlags::IPV6_TCP,
            ..HashConfig::new(2)
        };
        let mut seq = Sequence::new(config).unwrap();
        // Unknown bits offered are dropped.
        let cmds = run(&mut seq, |c| match c.step {
            Step::GetFlags => ok(0xffff_fff3),
            _ => ok(0),
        });
        assert_eq!(
            steps(&cmds),
            [Step::SetAlgorithm, Step::GetFlags, Step::Disable]
        );
        assert_eq!(
            seq.outcome(),
            Some(CtrlOutcome::NoCommonFlags {
                offered: HashFlags::IPV4 | HashFlags::IPV4_TCP
            })
        );
    }

    #[test]
    fn only_offered_flags_are_set() {
        let mut seq = Sequence::new(HashConfig::new(2)).unwrap();
        let cmds = run(&mut seq, |c| match c.step {
            Step::GetFlags => ok(0xffff_0005),
            Step::GetMappingSize => ok(128),
            _ => ok(0),
        });
        assert_eq!(cmds.last().unwrap().data, [0x5, 0, 0]);
    }

    #[test]
    fn no_table_when_the_backend_takes_none_or_too_few() {
        for answer in [ok(0), ok(3), status(CtrlStatus::NotSupported)] {
            let mut seq = Sequence::new(HashConfig::new(4)).unwrap();
            let cmds = run(&mut seq, |c| match c.step {
                Step::GetFlags => ok(0xf),
                Step::GetMappingSize => answer,
                _ => ok(0),
            });
            assert_eq!(
                steps(&cmds),
                [
                    Step::SetAlgorithm,
                    Step::GetFlags,
                    Step::SetKey,
                    Step::GetMappingSize,
                    Step::SetFlags
                ],
                "{answer:?}"
            );
            assert!(matches!(
                seq.outcome(),
                Some(CtrlOutcome::Configured(HashSetup {
                    mapping_entries: 0,
                    ..
                }))
            ));
        }
    }

    #[test]
    fn huge_mapping_size_is_bounded_before_use() {
        for (max, want) in [(u32::MAX, 128), (1 << 20, 128), (100, 100), (4, 4)] {
            let mut seq = Sequence::new(HashConfig::new(4)).unwrap();
            let cmds = run(&mut seq, |c| match c.step {
                Step::GetFlags => ok(0xf),
                Step::GetMappingSize => ok(max),
                _ => ok(0),
            });
            assert_eq!(cmds[4].data, [want, 0, 0], "{max}");
            assert_eq!(cmds[5].payload, Some(Payload::Mapping { entries: want }));
        }
        // Asking for the most: still one page.
        let config = HashConfig {
            mapping_entries: MAX_MAPPING_ENTRIES,
            ..HashConfig::new(4)
        };
        let mut seq = Sequence::new(config).unwrap();
        let cmds = run(&mut seq, |c| match c.step {
            Step::GetFlags => ok(0xf),
            Step::GetMappingSize => ok(u32::MAX),
            _ => ok(0),
        });
        assert_eq!(cmds[4].data, [MAX_MAPPING_ENTRIES, 0, 0]);
    }

    #[test]
    fn abort_resets_the_algorithm_once() {
        let mut seq = Sequence::new(HashConfig::new(4)).unwrap();
        seq.answer(ok(0));
        seq.answer(ok(0xf));
        assert_eq!(seq.step(), Some(Step::SetKey));
        seq.abort(CtrlOutcome::NoResources { step: Step::SetKey });
        assert_eq!(seq.step(), Some(Step::Disable));
        assert_eq!(seq.outcome(), None, "not over before the reset");
        // The reset cannot be sent either: give up.
        seq.abort(CtrlOutcome::NoResources {
            step: Step::Disable,
        });
        assert_eq!(
            seq.outcome(),
            Some(CtrlOutcome::NoResources { step: Step::SetKey })
        );
        // Before the algorithm was accepted there is nothing to reset.
        let mut seq = Sequence::new(HashConfig::new(4)).unwrap();
        seq.abort(CtrlOutcome::NoResources {
            step: Step::SetAlgorithm,
        });
        assert!(seq.is_finished());
    }

    fn rsp(id: u16, ty: u16, status: u32, data: u32) -> CtrlRspBytes {
        let mut r = CtrlResponse::ZERO;
        r.id = id;
        r.ty = ty;
        r.status = status;
        r.data = data;
        r.to_bytes()
    }

    #[test]
    fn parse_response_accepts_the_answer_to_the_request() {
        assert_eq!(
            parse_response(&rsp(7, 4, 0, 128), 7, CtrlType::GetHashMappingSize),
            Ok(ok(128))
        );
        assert_eq!(
            parse_response(&rsp(7, 3, 3, 0), 7, CtrlType::SetHashKey),
            Ok(status(CtrlStatus::BufferOverflow))
        );
    }

    #[test]
    fn parse_response_rejects_bogus_id() {
        assert_eq!(
            parse_response(&rsp(8, 4, 0, 128), 7, CtrlType::GetHashMappingSize),
            Err(Fault::BadId { id: 8, expected: 7 })
        );
    }

    #[test]
    fn parse_response_rejects_wrong_type() {
        assert_eq!(
            parse_response(&rsp(7, 5, 0, 128), 7, CtrlType::GetHashMappingSize),
            Err(Fault::WrongType {
                ty: 5,
                expected: CtrlType::GetHashMappingSize
            })
        );
    }

    #[test]
    fn parse_response_rejects_unknown_status() {
        for s in [4, 0x8000_0000, u32::MAX] {
            assert_eq!(
                parse_response(&rsp(7, 7, s, 0), 7, CtrlType::SetHashAlgorithm),
                Err(Fault::UnknownStatus(s))
            );
        }
    }
}
