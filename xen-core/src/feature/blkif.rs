//! blkif (`io/blkif.h`) negotiation: ring size, queues, persistent grants, indirect segments,
//! disk geometry and discard.
//!
//! ```text
//! backend, before InitWait      BackOffer      max-ring-page-order, multi-queue-max-queues,
//!                                              feature-persistent
//! frontend, before Initialised  FrontRequest   ring-page-order, multi-queue-num-queues,
//!                                              feature-persistent, protocol
//!                               + per queue    [queue-N/]ring-ref | ring-refI, event-channel
//! backend, before Connected     DiskInfo       sectors, info, sector-size, physical-sector-size,
//!                                              feature-flush-cache, feature-barrier,
//!                                              feature-discard (+ discard-*),
//!                                              feature-max-indirect-segments
//! ```
//!
//! The frontend computes its [`FrontRequest`] from the offer and its [`FrontLimits`]
//! ([`FrontRequest::negotiate`]: ring order = min(ours, offered, 4), queues = min(ours,
//! offered) but at least 1, persistent only if both want it), and its [`DiskParams`] from the
//! [`DiskInfo`] ([`DiskParams::negotiate`]). The backend validates the frontend's request
//! against its own offer ([`FrontRequest::read`]): it refuses what it did not offer rather than
//! clamp it, since the frontend already sized its rings.

use super::{
    read_bool, read_grant_ref, read_port, read_u32, read_u64, write_bool, write_decimal,
    FeatureError, KeyBuf, Keys, KeysMut,
};
use xen_sys::wire::blkif::VdiskInfo;
use xen_sys::wire::blkif::{
    MAX_INDIRECT_PAGES_PER_REQUEST, MAX_SEGMENTS_PER_REQUEST, SEGMENTS_PER_INDIRECT_FRAME,
};
use xen_sys::{GrantRef, Port};

/// Largest ring order either side uses (16 pages), as in Linux.
pub const MAX_RING_PAGE_ORDER: u32 = 4;
/// Pages in the largest ring.
pub const MAX_RING_PAGES: usize = 1 << MAX_RING_PAGE_ORDER;
/// Most segments an indirect request can carry (8 pages of 512 segments).
pub const MAX_INDIRECT_SEGMENTS: u32 =
    (MAX_INDIRECT_PAGES_PER_REQUEST * SEGMENTS_PER_INDIRECT_FRAME) as u32;
/// Segments a direct request carries.
const DIRECT_SEGMENTS: u32 = MAX_SEGMENTS_PER_REQUEST as u32;
/// Segment descriptors per indirect page.
const SEGMENTS_PER_PAGE: u32 = SEGMENTS_PER_INDIRECT_FRAME as u32;
// The `as` conversions above are of small compile-time constants; check they were lossless.
const _: () = assert!(DIRECT_SEGMENTS as usize == MAX_SEGMENTS_PER_REQUEST);
const _: () = assert!(SEGMENTS_PER_PAGE as usize == SEGMENTS_PER_INDIRECT_FRAME);
const _: () = assert!(
    MAX_INDIRECT_SEGMENTS as usize == MAX_INDIRECT_PAGES_PER_REQUEST * SEGMENTS_PER_INDIRECT_FRAME
);

/// Most queues we accept on either side (Linux caps at the CPU count; this bounds loops).
pub const MAX_QUEUES: u32 = 64;
/// The native ABI string for `protocol` (`XEN_IO_PROTO_ABI_X86_64`).
pub const PROTOCOL_NATIVE: &str = "x86_64-abi";
/// `protocol` of a 32-bit x86 frontend (108-byte request slots).
pub const PROTOCOL_X86_32: &str = "x86_32-abi";
/// Largest logical sector size a Linux block device can have (one page).
pub const MAX_SECTOR_SIZE: u32 = 4096;
/// Largest physical sector size we accept.
pub const MAX_PHYSICAL_SECTOR_SIZE: u32 = 1 << 20;

const K_MAX_ORDER: &str = "max-ring-page-order";
const K_MAX_QUEUES: &str = "multi-queue-max-queues";
const K_PERSISTENT: &str = "feature-persistent";
const K_ORDER: &str = "ring-page-order";
const K_NUM_QUEUES: &str = "multi-queue-num-queues";
const K_PROTOCOL: &str = "protocol";
const K_EVTCHN: &str = "event-channel";

/// What a backend offers before InitWait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackOffer {
    /// `max-ring-page-order` (default 0).
    pub max_ring_page_order: u32,
    /// `multi-queue-max-queues` (default 1; 0 read as 1).
    pub max_queues: u32,
    /// `feature-persistent` (default off).
    pub persistent: bool,
}

impl Default for BackOffer {
    /// Linux blkback's offer, with a single queue.
    fn default() -> Self {
        Self {
            max_ring_page_order: MAX_RING_PAGE_ORDER,
            max_queues: 1,
            persistent: true,
        }
    }
}

impl BackOffer {
    /// A backend's offer from its module parameters, as Linux's blkback sizes it:
    /// `max_queues` 0 means one queue per online CPU, and no more queues than CPUs are offered;
    /// the ring order is capped at [`MAX_RING_PAGE_ORDER`].
    pub fn from_params(
        max_queues: u32,
        max_ring_page_order: u32,
        persistent: bool,
        online_cpus: u32,
    ) -> Self {
        let cpus = online_cpus.max(1);
        let queues = if max_queues == 0 {
            cpus
        } else {
            max_queues.min(cpus)
        };
        Self {
            max_ring_page_order: max_ring_page_order.min(MAX_RING_PAGE_ORDER),
            max_queues: queues.clamp(1, MAX_QUEUES),
            persistent,
        }
    }

    /// Writes the offer (backend side).
    pub fn write<K: KeysMut + ?Sized>(&self, keys: &mut K) -> Result<(), FeatureError> {
        write_decimal(keys, K_MAX_ORDER, self.max_ring_page_order)?;
        write_decimal(keys, K_MAX_QUEUES, self.max_queues)?;
        write_bool(keys, K_PERSISTENT, self.persistent)
    }

    /// Reads a backend's offer (frontend side). Any number is accepted here; negotiation caps
    /// it.
    pub fn read<K: Keys + ?Sized>(keys: &mut K) -> Result<Self, FeatureError> {
        Ok(Self {
            max_ring_page_order: read_u32(keys, K_MAX_ORDER, K_MAX_ORDER)?.unwrap_or(0),
            max_queues: read_u32(keys, K_MAX_QUEUES, K_MAX_QUEUES)?
                .unwrap_or(1)
                .max(1),
            persistent: read_bool(keys, K_PERSISTENT, false)?,
        })
    }
}

/// A frontend's own limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontLimits {
    /// Largest ring order we would allocate (capped at [`MAX_RING_PAGE_ORDER`]).
    pub max_ring_page_order: u32,
    /// Most queues we would use (at least 1 is always used).
    pub max_queues: u32,
    /// Whether we want persistent grants.
    pub persistent: bool,
    /// Most indirect segments per request we would use.
    pub max_indirect_segments: u32,
}

impl Default for FrontLimits {
    /// Linux blkfront's defaults: 32 indirect segments, up to 4 queues, persistent grants.
    fn default() -> Self {
        Self {
            max_ring_page_order: MAX_RING_PAGE_ORDER,
            max_queues: 4,
            persistent: true,
            max_indirect_segments: 32,
        }
    }
}

impl FrontLimits {
    /// A frontend's limits from its module parameters, as Linux's blkfront applies them: no
    /// more queues than online CPUs (and at least one), the ring order capped at
    /// [`MAX_RING_PAGE_ORDER`], and no more indirect segments than `engine_max_segments`, what
    /// the engine's request slots hold.
    pub fn from_params(
        max_indirect_segments: u32,
        max_queues: u32,
        max_ring_page_order: u32,
        persistent: bool,
        online_cpus: u32,
        engine_max_segments: u32,
    ) -> Self {
        Self {
            max_ring_page_order: max_ring_page_order.min(MAX_RING_PAGE_ORDER),
            max_queues: max_queues.min(online_cpus).clamp(1, MAX_QUEUES),
            persistent,
            max_indirect_segments: max_indirect_segments.min(engine_max_segments),
        }
    }
}

/// Which request layout a frontend uses (`protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `x86_64-abi`, or no `protocol` key: the native 64-bit layout.
    Native,
    /// `x86_32-abi`: a 32-bit x86 frontend's layout (108-byte request slots).
    X86_32,
}

impl Protocol {
    /// The `protocol` value.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Native => PROTOCOL_NATIVE,
            Protocol::X86_32 => PROTOCOL_X86_32,
        }
    }
}

/// What the frontend asks for and writes; the backend reads and checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontRequest {
    /// `ring-page-order`: the ring has `1 << order` pages.
    pub ring_page_order: u32,
    /// `multi-queue-num-queues`: at least 1.
    pub num_queues: u32,
    /// `feature-persistent`. Written by a frontend: its own wish (a Linux backend states its
    /// own only before Connected, see [`DiskInfo::persistent`]; [`DiskParams::persistent`] is
    /// what is used). Read by a backend: both sides want them.
    pub persistent: bool,
    /// `protocol`: the request layout.
    pub protocol: Protocol,
}

impl FrontRequest {
    /// The frontend's choice given the backend's offer. `persistent` is our own wish,
    /// whatever the offer says, as Linux's blkfront announces it.
    pub fn negotiate(limits: &FrontLimits, offer: &BackOffer) -> Self {
        Self {
            ring_page_order: limits
                .max_ring_page_order
                .min(offer.max_ring_page_order)
                .min(MAX_RING_PAGE_ORDER),
            num_queues: limits.max_queues.min(offer.max_queues).clamp(1, MAX_QUEUES),
            persistent: limits.persistent,
            protocol: Protocol::Native,
        }
    }

    /// Ring pages per queue.
    pub fn nr_ring_pages(&self) -> usize {
        1usize << self.ring_page_order.min(MAX_RING_PAGE_ORDER)
    }

    /// Writes the request (frontend side; the ring references go with [`write_queue`]).
    /// Like Linux, `ring-page-order` and `multi-queue-num-queues` are only written when they
    /// differ from the defaults, so backends without those features still understand us.
    pub fn write<K: KeysMut + ?Sized>(&self, keys: &mut K) -> Result<(), FeatureError> {
        if self.ring_page_order > 0 {
            write_decimal(keys, K_ORDER, self.ring_page_order)?;
        }
        if self.num_queues > 1 {
            write_decimal(keys, K_NUM_QUEUES, self.num_queues)?;
        }
        write_bool(keys, K_PERSISTENT, self.persistent)?;
        keys.write(K_PROTOCOL, self.protocol.name().as_bytes())?;
        Ok(())
    }

    /// Reads and checks a frontend's request against our offer (backend side).
    pub fn read<K: Keys + ?Sized>(keys: &mut K, offer: &BackOffer) -> Result<Self, FeatureError> {
        let ring_page_order = read_u32(keys, K_ORDER, K_ORDER)?.unwrap_or(0);
        if ring_page_order > offer.max_ring_page_order.min(MAX_RING_PAGE_ORDER) {
            return Err(FeatureError::OutOfRange(K_ORDER));
        }
        let num_queues = read_u32(keys, K_NUM_QUEUES, K_NUM_QUEUES)?.unwrap_or(1);
        if num_queues == 0 || num_queues > offer.max_queues.min(MAX_QUEUES) {
            return Err(FeatureError::OutOfRange(K_NUM_QUEUES));
        }
        let mut buf = [0u8; super::VALUE_MAX];
        let protocol = match keys.read(K_PROTOCOL, &mut buf) {
            Ok(None) => Protocol::Native,
            Ok(Some(p)) if p == PROTOCOL_NATIVE.as_bytes() => Protocol::Native,
            Ok(Some(p)) if p == PROTOCOL_X86_32.as_bytes() => Protocol::X86_32,
            Ok(Some(_)) | Err(crate::xs::Error::NoSpace) => {
                return Err(FeatureError::Unsupported(K_PROTOCOL))
            }
            Err(e) => return Err(FeatureError::Store(e)),
        };
        let persistent = read_bool(keys, K_PERSISTENT, false)? && offer.persistent;
        Ok(Self {
            ring_page_order,
            num_queues,
            persistent,
            protocol,
        })
    }
}

/// One queue's ring pages and event channel.
///
/// # Invariants
///
/// `nr <= MAX_RING_PAGES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRing {
    refs: [GrantRef; MAX_RING_PAGES],
    nr: usize,
    /// The queue's event channel.
    pub port: Port,
}

impl QueueRing {
    /// The grant references of the ring pages, in page order.
    pub fn refs(&self) -> &[GrantRef] {
        self.refs.get(..self.nr).unwrap_or(&[])
    }
}

fn check_queue(req: &FrontRequest, queue: u32) -> Result<(), FeatureError> {
    if queue >= req.num_queues {
        return Err(FeatureError::OutOfRange(K_NUM_QUEUES));
    }
    Ok(())
}

fn ref_key(req: &FrontRequest, queue: u32, page: usize) -> Result<KeyBuf, FeatureError> {
    let k = if req.ring_page_order == 0 {
        KeyBuf::queued(queue, req.num_queues, "ring-ref")
    } else if req.num_queues > 1 {
        KeyBuf::new(format_args!("queue-{queue}/ring-ref{page}"))
    } else {
        KeyBuf::new(format_args!("ring-ref{page}"))
    };
    Ok(k?)
}

/// Writes one queue's ring references and event channel (frontend side). `refs` must hold
/// exactly [`FrontRequest::nr_ring_pages`] references.
pub fn write_queue<K: KeysMut + ?Sized>(
    keys: &mut K,
    req: &FrontRequest,
    queue: u32,
    refs: &[GrantRef],
    port: Port,
) -> Result<(), FeatureError> {
    check_queue(req, queue)?;
    if refs.len() != req.nr_ring_pages() {
        return Err(FeatureError::Inconsistent("ring-ref"));
    }
    for (page, r) in refs.iter().enumerate() {
        write_decimal(keys, ref_key(req, queue, page)?.as_str(), u32::from(*r))?;
    }
    write_decimal(
        keys,
        KeyBuf::queued(queue, req.num_queues, K_EVTCHN)?.as_str(),
        u32::from(port),
    )
}

/// Reads one queue's ring references and event channel (backend side).
pub fn read_queue<K: Keys + ?Sized>(
    keys: &mut K,
    req: &FrontRequest,
    queue: u32,
) -> Result<QueueRing, FeatureError> {
    check_queue(req, queue)?;
    let nr = req.nr_ring_pages();
    let mut refs = [GrantRef::new(0); MAX_RING_PAGES];
    for (page, slot) in refs.iter_mut().enumerate().take(nr) {
        *slot = read_grant_ref(keys, ref_key(req, queue, page)?.as_str(), "ring-ref")?;
    }
    let port = read_port(
        keys,
        KeyBuf::queued(queue, req.num_queues, K_EVTCHN)?.as_str(),
        K_EVTCHN,
    )?
    .ok_or(FeatureError::Missing(K_EVTCHN))?;
    // INVARIANT: nr_ring_pages() <= MAX_RING_PAGES.
    Ok(QueueRing {
        refs,
        nr: nr.min(MAX_RING_PAGES),
        port,
    })
}

/// Discard parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Discard {
    /// `discard-granularity` in bytes (default: the sector size).
    pub granularity: u32,
    /// `discard-alignment` in bytes (default 0).
    pub alignment: u32,
    /// `discard-secure`.
    pub secure: bool,
}

/// Device properties a backend writes before Connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// `sectors`: capacity in 512-byte sectors (as Linux backends write it).
    pub sectors: u64,
    /// `info`: `VDISK_*` flags (unknown bits dropped).
    pub info: VdiskInfo,
    /// `sector-size`: logical block size in bytes.
    pub sector_size: u32,
    /// `physical-sector-size` (default: `sector-size`).
    pub physical_sector_size: u32,
    /// `feature-flush-cache`.
    pub flush_cache: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard` with its parameters.
    pub discard: Option<Discard>,
    /// `feature-max-indirect-segments`, if offered.
    pub max_indirect_segments: Option<u32>,
    /// `feature-persistent` as the backend states it before Connected. Linux's blkback
    /// writes it only then (not before InitWait), so a frontend announces its own wish in its
    /// [`FrontRequest`] and uses persistent grants only if this is set too, as Linux's
    /// blkfront does.
    pub persistent: bool,
}

const K_SECTORS: &str = "sectors";
const K_INFO: &str = "info";
const K_SECTOR_SIZE: &str = "sector-size";
const K_PSECTOR_SIZE: &str = "physical-sector-size";
const K_GRANULARITY: &str = "discard-granularity";
const K_ALIGNMENT: &str = "discard-alignment";
const K_INDIRECT: &str = "feature-max-indirect-segments";

/// Announces a new size while connected (backend side, online resize): writes `sectors` and
/// then `state` again (Connected, 4), which fires the frontend's watch on our state; a
/// frontend that finds Connected while connected re-reads `sectors`. Linux's blkback does the
/// same, in one transaction (the caller's `keys`).
pub fn announce_resize<K: KeysMut + ?Sized>(
    keys: &mut K,
    sectors: u64,
) -> Result<(), FeatureError> {
    write_decimal(keys, K_SECTORS, sectors)?;
    write_decimal(keys, "state", 4u32)
}

impl DiskInfo {
    /// Writes the properties (backend side).
    pub fn write<K: KeysMut + ?Sized>(&self, keys: &mut K) -> Result<(), FeatureError> {
        write_decimal(keys, K_SECTORS, self.sectors)?;
        write_decimal(keys, K_INFO, self.info.bits())?;
        write_decimal(keys, K_SECTOR_SIZE, self.sector_size)?;
        write_decimal(keys, K_PSECTOR_SIZE, self.physical_sector_size)?;
        write_bool(keys, "feature-flush-cache", self.flush_cache)?;
        write_bool(keys, "feature-barrier", self.barrier)?;
        write_bool(keys, "feature-discard", self.discard.is_some())?;
        if let Some(d) = self.discard {
            write_decimal(keys, K_GRANULARITY, d.granularity)?;
            write_decimal(keys, K_ALIGNMENT, d.alignment)?;
            write_bool(keys, "discard-secure", d.secure)?;
        }
        if let Some(n) = self.max_indirect_segments {
            write_decimal(keys, K_INDIRECT, n)?;
        }
        write_bool(keys, K_PERSISTENT, self.persistent)
    }

    /// Reads and validates a backend's properties (frontend side). Geometry errors fail;
    /// inconsistent discard parameters only disable discard (reported in
    /// [`DiskParams::discard_rejected`] by [`DiskParams::negotiate`]).
    pub fn read<K: Keys + ?Sized>(
        keys: &mut K,
    ) -> Result<(Self, Option<FeatureError>), FeatureError> {
        let sectors =
            read_u64(keys, K_SECTORS, K_SECTORS)?.ok_or(FeatureError::Missing(K_SECTORS))?;
        let info = VdiskInfo::from_bits_truncate(
            read_u32(keys, K_INFO, K_INFO)?.ok_or(FeatureError::Missing(K_INFO))?,
        );
        let sector_size = read_u32(keys, K_SECTOR_SIZE, K_SECTOR_SIZE)?
            .ok_or(FeatureError::Missing(K_SECTOR_SIZE))?;
        if !sector_size.is_power_of_two() || !(512..=MAX_SECTOR_SIZE).contains(&sector_size) {
            return Err(FeatureError::OutOfRange(K_SECTOR_SIZE));
        }
        let physical_sector_size =
            read_u32(keys, K_PSECTOR_SIZE, K_PSECTOR_SIZE)?.unwrap_or(sector_size);
        if !physical_sector_size.is_power_of_two()
            || physical_sector_size < sector_size
            || physical_sector_size > MAX_PHYSICAL_SECTOR_SIZE
        {
            return Err(FeatureError::Inconsistent(K_PSECTOR_SIZE));
        }
        // The capacity in bytes must be representable, whichever unit the backend meant.
        if sectors.checked_mul(u64::from(sector_size)).is_none() {
            return Err(FeatureError::OutOfRange(K_SECTORS));
        }
        let flush_cache = read_bool(keys, "feature-flush-cache", false)?;
        let barrier = read_bool(keys, "feature-barrier", false)?;
        let max_indirect_segments = read_u32(keys, K_INDIRECT, K_INDIRECT)?;
        let persistent = read_bool(keys, K_PERSISTENT, false)?;
        let (discard, discard_rejected) = if read_bool(keys, "feature-discard", false)? {
            match read_discard(keys, sector_size) {
                Ok(d) => (Some(d), None),
                Err(e @ (FeatureError::Store(_) | FeatureError::Missing(_))) => return Err(e),
                Err(e) => (None, Some(e)),
            }
        } else {
            (None, None)
        };
        let disk = Self {
            sectors,
            info,
            sector_size,
            physical_sector_size,
            flush_cache,
            barrier,
            discard,
            max_indirect_segments,
            persistent,
        };
        Ok((disk, discard_rejected))
    }
}

fn read_discard<K: Keys + ?Sized>(keys: &mut K, sector_size: u32) -> Result<Discard, FeatureError> {
    let granularity = read_u32(keys, K_GRANULARITY, K_GRANULARITY)?.unwrap_or(sector_size);
    let alignment = read_u32(keys, K_ALIGNMENT, K_ALIGNMENT)?.unwrap_or(0);
    let secure = read_bool(keys, "discard-secure", false)?;
    // A granularity of 0 means "not reported": use the sector size (blkif.h note 4).
    let granularity = if granularity == 0 {
        sector_size
    } else {
        granularity
    };
    if granularity % sector_size != 0 {
        return Err(FeatureError::Inconsistent(K_GRANULARITY));
    }
    if alignment >= granularity || alignment % 512 != 0 {
        return Err(FeatureError::Inconsistent(K_ALIGNMENT));
    }
    Ok(Discard {
        granularity,
        alignment,
        secure,
    })
}

/// What a frontend uses once connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskParams {
    /// Segments per indirect request; 0 means direct requests only (at most
    /// `BLKIF_MAX_SEGMENTS_PER_REQUEST`).
    pub indirect_segments: u32,
    /// Indirect pages per request for that many segments.
    pub indirect_pages: u32,
    /// Flushes may be sent.
    pub flush_cache: bool,
    /// Barriers may be sent.
    pub barrier: bool,
    /// Discards may be sent, with these parameters.
    pub discard: Option<Discard>,
    /// Why discard was turned off despite being offered, if it was.
    pub discard_rejected: Option<FeatureError>,
    /// Persistent grants are used: we want them and the backend said so before Connected.
    pub persistent: bool,
}

impl DiskParams {
    /// Combines our limits with the backend's properties. Indirect segments: the smallest of
    /// ours, the backend's and [`MAX_INDIRECT_SEGMENTS`], or 0 (direct only) if that is not
    /// more than a direct request carries.
    pub fn negotiate(
        limits: &FrontLimits,
        disk: &DiskInfo,
        discard_rejected: Option<FeatureError>,
    ) -> Self {
        let offered = disk.max_indirect_segments.unwrap_or(0);
        let mut indirect_segments = offered
            .min(limits.max_indirect_segments)
            .min(MAX_INDIRECT_SEGMENTS);
        if indirect_segments <= DIRECT_SEGMENTS {
            indirect_segments = 0;
        }
        let indirect_pages = indirect_segments.div_ceil(SEGMENTS_PER_PAGE);
        Self {
            indirect_segments,
            indirect_pages,
            flush_cache: disk.flush_cache,
            barrier: disk.barrier,
            discard: disk.discard,
            discard_rejected,
            persistent: limits.persistent && disk.persistent,
        }
    }
}

/// The disk the toolstack gave a backend, from the backend's own directory: `physical-device`
/// (written by the hotplug script), `mode`, `device-type` and `discard-enable` (written by
/// the toolstack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendDisk {
    /// The block device's major number.
    pub major: u32,
    /// The block device's minor number.
    pub minor: u32,
    /// `mode` contains `w`: the guest may write.
    pub writable: bool,
    /// `device-type` is `cdrom`.
    pub cdrom: bool,
    /// `discard-enable` is not `0` (absent means enabled, as in Linux's blkback).
    pub discard: bool,
}

const K_PHYSICAL: &str = "physical-device";

/// Parses `physical-device`: `major:minor` in hex, as the hotplug scripts write it; the numbers
/// must fit Linux's `dev_t` (12-bit major, 20-bit minor).
pub fn parse_physical_device(value: &[u8]) -> Option<(u32, u32)> {
    let s = core::str::from_utf8(value).ok()?.trim();
    let (major, minor) = s.split_once(':')?;
    let hex = |t: &str| {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(t, 16).ok())
            .flatten()
    };
    let (major, minor) = (hex(major)?, hex(minor)?);
    (major < (1 << 12) && minor < (1 << 20)).then_some((major, minor))
}

impl BackendDisk {
    /// Reads the disk's keys; `Ok(None)` while the hotplug script has not written
    /// `physical-device`. A malformed `physical-device` is refused.
    pub fn read<K: Keys + ?Sized>(keys: &mut K) -> Result<Option<Self>, FeatureError> {
        let mut buf = [0u8; 64];
        let (major, minor) = match keys.read(K_PHYSICAL, &mut buf) {
            Ok(None) => return Ok(None),
            Ok(Some(v)) => parse_physical_device(v).ok_or(FeatureError::Malformed(K_PHYSICAL))?,
            Err(crate::xs::Error::NoSpace) => return Err(FeatureError::Malformed(K_PHYSICAL)),
            Err(e) => return Err(FeatureError::Store(e)),
        };
        let mut small = |key: &'static str, default: bool, f: fn(&[u8]) -> bool| {
            let mut buf = [0u8; 16];
            match keys.read(key, &mut buf) {
                Ok(None) => Ok(default),
                Ok(Some(v)) => Ok(f(v)),
                // Longer than any value we know: not the one we look for.
                Err(crate::xs::Error::NoSpace) => Ok(f(b"")),
                Err(e) => Err(FeatureError::Store(e)),
            }
        };
        let writable = small("mode", false, |m| m.contains(&b'w'))?;
        let cdrom = small("device-type", false, |t| t == b"cdrom")?;
        let discard = small("discard-enable", true, |d| d != b"0")?;
        Ok(Some(Self {
            major,
            minor,
            writable,
            cdrom,
            discard,
        }))
    }
}

/// What a backend found out about the block device it opened, for [`DiskInfo::describe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceFacts {
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Logical block size in bytes.
    pub logical_block_size: u32,
    /// Physical block size in bytes.
    pub physical_block_size: u32,
    /// The device was opened for writing.
    pub opened_writable: bool,
    /// The device itself is read-only (e.g. a read-only loop device).
    pub read_only: bool,
    /// The device has a volatile write cache (flushes mean something).
    pub write_cache: bool,
    /// The device discards.
    pub discard: bool,
    /// The device can secure-erase.
    pub secure_erase: bool,
    /// Its discard granularity and alignment in bytes.
    pub discard_granularity: u32,
    /// Its discard alignment in bytes.
    pub discard_alignment: u32,
}

impl DiskInfo {
    /// What a backend writes before Connected for `facts`, the toolstack's `disk` keys and the
    /// negotiated `persistent`: read-only when the device was opened or is read-only (writes,
    /// flushes and discards are then refused); a flush only for a writable device with a write
    /// cache; barriers for any writable device; discard when the device discards, the
    /// toolstack did not turn it off (`discard-enable`) and the disk is writable, with a
    /// granularity of at least one logical block; secure discard only with discard; a CD-ROM
    /// is removable media (Linux's blkback says removable only when the device under it is).
    pub fn describe(
        facts: &DeviceFacts,
        disk: &BackendDisk,
        persistent: bool,
        max_indirect_segments: u32,
    ) -> Self {
        let read_only = !facts.opened_writable || facts.read_only;
        let discard = disk.discard && facts.discard && !read_only;
        let mut info = VdiskInfo::empty();
        if read_only {
            info |= VdiskInfo::READONLY;
        }
        if disk.cdrom {
            info |= VdiskInfo::CDROM | VdiskInfo::REMOVABLE;
        }
        Self {
            sectors: facts.sectors,
            info,
            sector_size: facts.logical_block_size,
            physical_sector_size: facts.physical_block_size,
            flush_cache: facts.write_cache && !read_only,
            barrier: !read_only,
            discard: discard.then(|| Discard {
                granularity: facts.discard_granularity.max(facts.logical_block_size),
                alignment: facts.discard_alignment,
                secure: facts.secure_erase,
            }),
            max_indirect_segments: Some(max_indirect_segments),
            persistent,
        }
    }

    /// Whether the disk is read-only ([`VdiskInfo::READONLY`]).
    pub fn read_only(&self) -> bool {
        self.info.contains(VdiskInfo::READONLY)
    }
}

impl DiskParams {
    /// The frontend shows a removable disk: the backend said removable, or it is a CD-ROM
    /// (which is removable media even when the backend does not say so).
    pub fn removable(disk: &DiskInfo) -> bool {
        disk.info
            .intersects(VdiskInfo::REMOVABLE | VdiskInfo::CDROM)
    }

    /// The queue has a write cache: flushes (or, failing them, barriers) are sent.
    pub fn write_cache(&self) -> bool {
        self.flush_cache || self.barrier
    }

    /// Flushes go out as empty write barriers: the backend offers barriers but no flush.
    pub fn barrier_only(&self) -> bool {
        self.barrier && !self.flush_cache
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::MapKeys;
    use super::*;

    fn offer(pairs: &[(&str, &str)]) -> Result<BackOffer, FeatureError> {
        BackOffer::read(&mut MapKeys::with(pairs))
    }

    #[test]
    fn defaults_when_backend_offers_nothing() {
        let o = offer(&[]).unwrap();
        assert_eq!(
            o,
            BackOffer {
                max_ring_page_order: 0,
                max_queues: 1,
                persistent: false
            }
        );
        let r = FrontRequest::negotiate(&FrontLimits::default(), &o);
        assert_eq!(
            r,
            FrontRequest {
                ring_page_order: 0,
                num_queues: 1,
                // Our own wish: the backend may still state its own before Connected.
                persistent: true,
                protocol: Protocol::Native
            }
        );
        let mut k = MapKeys::default();
        r.write(&mut k).unwrap();
        assert_eq!(k.get(K_ORDER), None);
        assert_eq!(k.get(K_NUM_QUEUES), None);
        assert_eq!(k.get(K_PROTOCOL), Some("x86_64-abi"));
    }

    #[test]
    fn a_resize_rewrites_sectors_and_the_connected_state() {
        let mut k = MapKeys::with(&[(K_SECTORS, "8192"), ("state", "4")]);
        announce_resize(&mut k, 16384).unwrap();
        assert_eq!(k.get(K_SECTORS), Some("16384"));
        assert_eq!(k.get("state"), Some("4"));
        // The frontend reads the new size with the other properties.
        let (info, _) = DiskInfo::read(&mut MapKeys::with(&[
            (K_SECTORS, "16384"),
            (K_INFO, "0"),
            (K_SECTOR_SIZE, "512"),
        ]))
        .unwrap();
        assert_eq!(info.sectors, 16384);
    }

    #[test]
    fn ring_order_5_capped_to_4() {
        let o = offer(&[(K_MAX_ORDER, "5")]).unwrap();
        let limits = FrontLimits {
            max_ring_page_order: 9,
            ..FrontLimits::default()
        };
        assert_eq!(FrontRequest::negotiate(&limits, &o).ring_page_order, 4);
        let o = offer(&[(K_MAX_ORDER, "4294967295")]).unwrap();
        assert_eq!(FrontRequest::negotiate(&limits, &o).ring_page_order, 4);
        let limits = FrontLimits {
            max_ring_page_order: 2,
            ..FrontLimits::default()
        };
        assert_eq!(FrontRequest::negotiate(&limits, &o).ring_page_order, 2);
    }

    #[test]
    fn zero_queues_offered_means_one() {
        let o = offer(&[(K_MAX_QUEUES, "0")]).unwrap();
        assert_eq!(
            FrontRequest::negotiate(&FrontLimits::default(), &o).num_queues,
            1
        );
        let limits = FrontLimits {
            max_queues: 0,
            ..FrontLimits::default()
        };
        assert_eq!(
            FrontRequest::negotiate(
                &limits,
                &BackOffer {
                    max_queues: 8,
                    ..BackOffer::default()
                }
            )
            .num_queues,
            1
        );
    }

    #[test]
    fn non_numeric_values_rejected() {
        assert_eq!(
            offer(&[(K_MAX_ORDER, "four")]),
            Err(FeatureError::Malformed(K_MAX_ORDER))
        );
        assert_eq!(
            offer(&[(K_MAX_ORDER, "-1")]),
            Err(FeatureError::Malformed(K_MAX_ORDER))
        );
        assert_eq!(
            offer(&[(K_MAX_QUEUES, "1.5")]),
            Err(FeatureError::Malformed(K_MAX_QUEUES))
        );
        assert_eq!(
            offer(&[(K_PERSISTENT, "true")]),
            Err(FeatureError::Malformed(K_PERSISTENT))
        );
    }

    #[test]
    fn backend_refuses_what_it_did_not_offer() {
        let o = BackOffer {
            max_ring_page_order: 2,
            max_queues: 4,
            persistent: false,
        };
        let read = |pairs: &[(&str, &str)]| FrontRequest::read(&mut MapKeys::with(pairs), &o);
        assert_eq!(
            read(&[(K_ORDER, "3")]),
            Err(FeatureError::OutOfRange(K_ORDER))
        );
        assert_eq!(
            read(&[(K_NUM_QUEUES, "0")]),
            Err(FeatureError::OutOfRange(K_NUM_QUEUES))
        );
        assert_eq!(
            read(&[(K_NUM_QUEUES, "5")]),
            Err(FeatureError::OutOfRange(K_NUM_QUEUES))
        );
        assert_eq!(
            read(&[(K_PROTOCOL, "x86_16-abi")]),
            Err(FeatureError::Unsupported(K_PROTOCOL))
        );
        // Both x86 layouts are served (the glue picks the slot size from the same key).
        assert!(read(&[(K_PROTOCOL, "x86_32-abi")]).is_ok());
        // The frontend wanting persistent grants does not turn them on if we did not offer them.
        assert_eq!(
            read(&[(K_ORDER, "2"), (K_NUM_QUEUES, "4"), (K_PERSISTENT, "1")]),
            Ok(FrontRequest {
                ring_page_order: 2,
                num_queues: 4,
                persistent: false,
                protocol: Protocol::Native
            })
        );
    }

    #[test]
    fn queue_keys_round_trip() {
        for (order, queues) in [(0, 1), (2, 1), (0, 3), (4, 2)] {
            let req = FrontRequest {
                ring_page_order: order,
                num_queues: queues,
                persistent: true,
                protocol: Protocol::Native,
            };
            let mut k = MapKeys::default();
            req.write(&mut k).unwrap();
            for q in 0..queues {
                let refs: std::vec::Vec<GrantRef> = (0..req.nr_ring_pages())
                    .map(|i| GrantRef::new(100 * q + i as u32 + 8))
                    .collect();
                write_queue(&mut k, &req, q, &refs, Port::new(q + 1)).unwrap();
            }
            let offer = BackOffer {
                max_ring_page_order: 4,
                max_queues: 8,
                persistent: true,
            };
            let back = FrontRequest::read(&mut k, &offer).unwrap();
            assert_eq!(back, req);
            for q in 0..queues {
                let ring = read_queue(&mut k, &back, q).unwrap();
                assert_eq!(ring.refs().len(), req.nr_ring_pages());
                assert_eq!(ring.refs()[0], GrantRef::new(100 * q + 8));
                assert_eq!(ring.port, Port::new(q + 1));
            }
            assert!(read_queue(&mut k, &back, queues).is_err());
        }
        let k = MapKeys::default();
        let mut w = k.clone();
        let req = FrontRequest {
            ring_page_order: 0,
            num_queues: 2,
            persistent: false,
            protocol: Protocol::Native,
        };
        write_queue(&mut w, &req, 1, &[GrantRef::new(9)], Port::new(3)).unwrap();
        assert_eq!(w.get("queue-1/ring-ref"), Some("9"));
        assert_eq!(w.get("queue-1/event-channel"), Some("3"));
        assert_eq!(
            write_queue(
                &mut w,
                &req,
                0,
                &[GrantRef::new(9), GrantRef::new(10)],
                Port::new(3)
            ),
            Err(FeatureError::Inconsistent("ring-ref"))
        );
    }

    #[test]
    fn missing_ring_ref_or_bad_event_channel_rejected() {
        let req = FrontRequest {
            ring_page_order: 1,
            num_queues: 1,
            persistent: false,
            protocol: Protocol::Native,
        };
        let mut k = MapKeys::with(&[("ring-ref0", "8"), ("event-channel", "5")]);
        assert_eq!(
            read_queue(&mut k, &req, 0),
            Err(FeatureError::Missing("ring-ref"))
        );
        let mut k = MapKeys::with(&[
            ("ring-ref0", "8"),
            ("ring-ref1", "x"),
            ("event-channel", "5"),
        ]);
        assert_eq!(
            read_queue(&mut k, &req, 0),
            Err(FeatureError::Malformed("ring-ref"))
        );
        let mut k = MapKeys::with(&[
            ("ring-ref0", "8"),
            ("ring-ref1", "9"),
            ("event-channel", "0"),
        ]);
        assert_eq!(
            read_queue(&mut k, &req, 0),
            Err(FeatureError::OutOfRange("event-channel"))
        );
        let mut k = MapKeys::with(&[("ring-ref0", "8"), ("ring-ref1", "9")]);
        assert_eq!(
            read_queue(&mut k, &req, 0),
            Err(FeatureError::Missing("event-channel"))
        );
    }

    fn disk(pairs: &[(&str, &str)]) -> Result<(DiskInfo, Option<FeatureError>), FeatureError> {
        let mut base = MapKeys::with(&[("sectors", "2048"), ("info", "0"), ("sector-size", "512")]);
        for (k, v) in pairs {
            base.0.insert((*k).into(), v.as_bytes().to_vec());
        }
        DiskInfo::read(&mut base)
    }

    #[test]
    fn disk_info_round_trips() {
        let d = DiskInfo {
            sectors: 1 << 30,
            info: VdiskInfo::READONLY,
            sector_size: 4096,
            physical_sector_size: 4096,
            flush_cache: true,
            barrier: false,
            discard: Some(Discard {
                granularity: 1 << 20,
                alignment: 4096,
                secure: true,
            }),
            max_indirect_segments: Some(256),
            persistent: true,
        };
        let mut k = MapKeys::default();
        d.write(&mut k).unwrap();
        assert_eq!(DiskInfo::read(&mut k), Ok((d, None)));
    }

    #[test]
    fn disk_geometry_checked() {
        assert_eq!(
            disk(&[("sector-size", "1000")]).err(),
            Some(FeatureError::OutOfRange(K_SECTOR_SIZE))
        );
        assert_eq!(
            disk(&[("sector-size", "256")]).err(),
            Some(FeatureError::OutOfRange(K_SECTOR_SIZE))
        );
        assert_eq!(
            disk(&[("sector-size", "8192")]).err(),
            Some(FeatureError::OutOfRange(K_SECTOR_SIZE))
        );
        assert_eq!(
            disk(&[("physical-sector-size", "256")]).err(),
            Some(FeatureError::Inconsistent(K_PSECTOR_SIZE))
        );
        assert_eq!(
            disk(&[("physical-sector-size", "1536")]).err(),
            Some(FeatureError::Inconsistent(K_PSECTOR_SIZE))
        );
        assert_eq!(
            disk(&[("sectors", "18446744073709551615"), ("sector-size", "4096")]).err(),
            Some(FeatureError::OutOfRange(K_SECTORS))
        );
        assert_eq!(
            disk(&[("sectors", "lots")]).err(),
            Some(FeatureError::Malformed(K_SECTORS))
        );
        let mut k = MapKeys::with(&[("sectors", "1"), ("info", "0")]);
        assert_eq!(
            DiskInfo::read(&mut k).err(),
            Some(FeatureError::Missing(K_SECTOR_SIZE))
        );
        // Unknown info bits are dropped.
        assert_eq!(
            disk(&[("info", "4294967295")]).unwrap().0.info,
            VdiskInfo::all()
        );
    }

    #[test]
    fn discard_granularity_and_alignment_checked() {
        let (d, why) = disk(&[("feature-discard", "1")]).unwrap();
        assert_eq!(
            d.discard,
            Some(Discard {
                granularity: 512,
                alignment: 0,
                secure: false
            })
        );
        assert_eq!(why, None);
        let (d, why) = disk(&[("feature-discard", "1"), (K_GRANULARITY, "0")]).unwrap();
        assert_eq!(d.discard.unwrap().granularity, 512);
        assert!(why.is_none());
        for (g, a, bad) in [
            ("1000", "0", K_GRANULARITY),
            ("4096", "4096", K_ALIGNMENT),
            ("4096", "100", K_ALIGNMENT),
        ] {
            let (d, why) = disk(&[
                ("feature-discard", "1"),
                (K_GRANULARITY, g),
                (K_ALIGNMENT, a),
            ])
            .unwrap();
            assert_eq!(d.discard, None, "{g} {a}");
            assert_eq!(why, Some(FeatureError::Inconsistent(bad)));
        }
        let (d, _) = disk(&[("feature-discard", "0"), (K_GRANULARITY, "garbage")]).unwrap();
        assert_eq!(d.discard, None);
        assert_eq!(
            disk(&[("feature-discard", "1"), (K_GRANULARITY, "x")])
                .unwrap()
                .1,
            Some(FeatureError::Malformed(K_GRANULARITY))
        );
    }

    #[test]
    fn huge_indirect_segment_counts_capped() {
        let (d, _) = disk(&[(K_INDIRECT, "4294967295")]).unwrap();
        let big = FrontLimits {
            max_indirect_segments: u32::MAX,
            ..FrontLimits::default()
        };
        let p = DiskParams::negotiate(&big, &d, None);
        assert_eq!(
            (p.indirect_segments, p.indirect_pages),
            (MAX_INDIRECT_SEGMENTS, 8)
        );
        let p = DiskParams::negotiate(&FrontLimits::default(), &d, None);
        assert_eq!((p.indirect_segments, p.indirect_pages), (32, 1));
        // Not more than a direct request carries: no indirect requests at all.
        let (d, _) = disk(&[(K_INDIRECT, "11")]).unwrap();
        assert_eq!(DiskParams::negotiate(&big, &d, None).indirect_segments, 0);
        let (d, _) = disk(&[]).unwrap();
        assert_eq!(DiskParams::negotiate(&big, &d, None).indirect_segments, 0);
        let (d, _) = disk(&[(K_INDIRECT, "513")]).unwrap();
        assert_eq!(DiskParams::negotiate(&big, &d, None).indirect_pages, 2);
    }
}
