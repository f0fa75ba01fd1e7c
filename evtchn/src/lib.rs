//! Event-channel ports, the operations drivers need, and a throttling policy for event storms.
//!
//! - [`EvtchnOps`]: allocate, bind, notify, mask, unmask and close ports; implemented by the
//!   kernel glue and by the host simulator. Errors are typed ([`EvtchnError`]).
//! - [`Throttle`]: a pure late-EOI policy. The handler reports whether an event brought real
//!   work; after a run of spurious events the policy delays re-enabling the port,
//!   exponentially and up to a cap, so a peer flooding a port cannot hog a CPU
//!   (XSA-332, XSA-391).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod ops;
mod throttle;

pub use ops::{EvtchnError, EvtchnOps};
pub use throttle::{Eoi, Nanos, Outcome, Throttle, ThrottleConfig};
pub use xen_sys::{DomId, Port};
