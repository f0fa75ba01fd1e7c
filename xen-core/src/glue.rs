//! Every trait the kernel glue (and the host simulator) implements, gathered in one place.
//!
//! Protocol engines are generic over these; none is defined twice in the project:
//!
//! | trait | defined in | what it abstracts |
//! |---|---|---|
//! | [`XenStore`] | [`crate::xs`] | reads, writes, directories, transactions, watches |
//! | [`XsTransport`], [`RingEvents`] | [`crate::xs`] | the byte stream to xenstored (for [`crate::xs::Client`]) |
//! | [`Hypercalls`] | [`crate::hypercall`] | memory reservation (balloon) |
//! | [`PageBytes`], [`PageAlloc`], [`RingMemory`] | [`crate::platform`] | copies in and out of pages, fresh pages, multi-page rings |
//! | [`GrantOps`] | `xen-grant` | grant, revoke, map, unmap, copy |
//! | [`EvtchnOps`] | `xen-evtchn` | allocate, bind, notify, mask, unmask, close ports |
//! | [`SharedMemory`] | `xen-ring` | the accessor for pages shared with a peer |

pub use crate::hypercall::Hypercalls;
pub use crate::platform::{PageAlloc, PageBytes, RingMemory};
pub use crate::xs::{RingEvents, XenStore, XsTransport};
pub use xen_evtchn::EvtchnOps;
pub use xen_grant::GrantOps;
pub use xen_ring::SharedMemory;
