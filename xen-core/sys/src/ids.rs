//! Newtypes for the ids every Xen interface passes around: domains, grants, ports, frames.

use core::fmt;

/// A domain id (`domid_t`).
///
/// Any 16-bit value can be held; values from [`DomId::FIRST_RESERVED`] up name special
/// domains or nothing, and are rejected where a real peer is expected
/// ([`DomId::is_reserved`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct DomId(u16);

impl DomId {
    /// The first reserved id (`DOMID_FIRST_RESERVED`).
    pub const FIRST_RESERVED: u16 = 0x7FF0;
    /// The control domain.
    pub const DOM0: DomId = DomId(0);
    /// The calling domain, in hypercalls (`DOMID_SELF`).
    pub const SELF: DomId = DomId(0x7FF0);
    /// Owner of I/O memory (`DOMID_IO`).
    pub const IO: DomId = DomId(0x7FF1);
    /// The hypervisor (`DOMID_XEN`).
    pub const XEN: DomId = DomId(0x7FF2);
    /// Owner of shared copy-on-write pages (`DOMID_COW`).
    pub const COW: DomId = DomId(0x7FF3);
    /// No domain (`DOMID_INVALID`).
    pub const INVALID: DomId = DomId(0x7FF4);
    /// The idle domain (`DOMID_IDLE`).
    pub const IDLE: DomId = DomId(0x7FFF);

    /// Wraps a raw id.
    pub const fn new(raw: u16) -> DomId {
        DomId(raw)
    }

    /// The raw id.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// Whether this is a special or invalid id rather than a domain that can be a peer.
    pub const fn is_reserved(self) -> bool {
        self.0 >= Self::FIRST_RESERVED
    }
}

impl From<u16> for DomId {
    fn from(raw: u16) -> DomId {
        DomId(raw)
    }
}

impl From<DomId> for u16 {
    fn from(id: DomId) -> u16 {
        id.0
    }
}

impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

/// A grant reference (`grant_ref_t`): an index into the granting domain's grant table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct GrantRef(u32);

impl GrantRef {
    /// References below this are reserved for the toolstack (`GNTTAB_NR_RESERVED_ENTRIES`)
    /// and never handed out by an allocator.
    pub const NR_RESERVED: u32 = 8;
    /// The console ring's reference (`GNTTAB_RESERVED_CONSOLE`).
    pub const CONSOLE: GrantRef = GrantRef(0);
    /// The XenStore ring's reference (`GNTTAB_RESERVED_XENSTORE`).
    pub const XENSTORE: GrantRef = GrantRef(1);

    /// Wraps a raw reference.
    pub const fn new(raw: u32) -> GrantRef {
        GrantRef(raw)
    }

    /// The raw reference.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Whether the reference is one of the toolstack's reserved entries.
    pub const fn is_reserved(self) -> bool {
        self.0 < Self::NR_RESERVED
    }
}

impl From<u32> for GrantRef {
    fn from(raw: u32) -> GrantRef {
        GrantRef(raw)
    }
}

impl From<GrantRef> for u32 {
    fn from(r: GrantRef) -> u32 {
        r.0
    }
}

impl fmt::Display for GrantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gref {}", self.0)
    }
}

/// An event-channel port (`evtchn_port_t`), local to the domain that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Port(u32);

impl Port {
    /// Wraps a raw port.
    pub const fn new(raw: u32) -> Port {
        Port(raw)
    }

    /// The raw port.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Whether the port could name a channel: Xen never allocates port 0.
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }
}

impl From<u32> for Port {
    fn from(raw: u32) -> Port {
        Port(raw)
    }
}

impl From<Port> for u32 {
    fn from(p: Port) -> u32 {
        p.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// A guest frame number: what Xen calls a frame in grant entries and memory hypercalls.
///
/// For a PV guest this is the machine frame, for an HVM or PVH guest the guest physical
/// frame (Linux's `xen_page_to_gfn`); either way a 4 KiB page number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Gfn(u64);

impl Gfn {
    /// Wraps a raw frame number.
    pub const fn new(raw: u64) -> Gfn {
        Gfn(raw)
    }

    /// The raw frame number.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl From<u64> for Gfn {
    fn from(raw: u64) -> Gfn {
        Gfn(raw)
    }
}

impl From<Gfn> for u64 {
    fn from(g: Gfn) -> u64 {
        g.0
    }
}

impl fmt::Display for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gfn {:#x}", self.0)
    }
}

const _: () = {
    use crate::bindings;
    use core::mem::size_of;
    assert!(size_of::<DomId>() == size_of::<bindings::domid_t>());
    assert!(size_of::<GrantRef>() == size_of::<bindings::grant_ref_t>());
    assert!(size_of::<Port>() == size_of::<bindings::evtchn_port_t>());
    assert!(GrantRef::NR_RESERVED == bindings::GNTTAB_NR_RESERVED_ENTRIES);
    assert!(GrantRef::CONSOLE.0 == bindings::GNTTAB_RESERVED_CONSOLE);
    assert!(GrantRef::XENSTORE.0 == bindings::GNTTAB_RESERVED_XENSTORE);
};
