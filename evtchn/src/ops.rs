//! The event-channel operations a driver needs, as a trait the kernel glue and the host
//! simulator both implement.

use xen_sys::{DomId, Port};

/// Why an event-channel operation failed.
///
/// The hypervisor and Linux report these as negative errno values, which are the same
/// numbers in both (Xen's `errno.h` follows x86 Linux); [`EvtchnError::from_errno`] and
/// [`EvtchnError::errno`] convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvtchnError {
    /// No free port (`-ENOSPC`).
    NoFreePorts,
    /// The remote domain does not exist (`-ESRCH`).
    NoSuchDomain,
    /// The port is not allocated, or not in a state allowing the operation (`-EINVAL`).
    InvalidPort,
    /// The caller may not perform the operation (`-EPERM`).
    PermissionDenied,
    /// The port is in use (`-EBUSY`).
    Busy,
    /// Any other negative errno.
    Other(i32),
}

const EPERM: i32 = 1;
const ESRCH: i32 = 3;
const EBUSY: i32 = 16;
const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;

impl EvtchnError {
    /// The error for a negative errno (as returned by hypercalls and kernel functions).
    pub fn from_errno(errno: i32) -> EvtchnError {
        match errno.checked_neg() {
            Some(ENOSPC) => EvtchnError::NoFreePorts,
            Some(ESRCH) => EvtchnError::NoSuchDomain,
            Some(EINVAL) => EvtchnError::InvalidPort,
            Some(EPERM) => EvtchnError::PermissionDenied,
            Some(EBUSY) => EvtchnError::Busy,
            _ => EvtchnError::Other(errno),
        }
    }

    /// The negative errno.
    pub fn errno(self) -> i32 {
        match self {
            EvtchnError::NoFreePorts => -ENOSPC,
            EvtchnError::NoSuchDomain => -ESRCH,
            EvtchnError::InvalidPort => -EINVAL,
            EvtchnError::PermissionDenied => -EPERM,
            EvtchnError::Busy => -EBUSY,
            EvtchnError::Other(errno) => errno,
        }
    }
}

/// The event-channel operations drivers use.
///
/// Methods take `&self`: handlers and the control path share one implementation, which
/// synchronises internally. Ports are local to the calling domain; a port passed in that the
/// caller does not own yields [`EvtchnError::InvalidPort`], never a panic.
pub trait EvtchnOps {
    /// Allocates a port that `remote` may bind to (the frontend side: the port number goes
    /// into XenStore as `event-channel`).
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, EvtchnError>;

    /// Binds a new local port to `remote`'s unbound `remote_port` (the backend side).
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, EvtchnError>;

    /// Sends an event to the other end of `port`.
    fn notify(&self, port: Port) -> Result<(), EvtchnError>;

    /// Stops event delivery on `port`; events arriving meanwhile stay pending.
    fn mask(&self, port: Port) -> Result<(), EvtchnError>;

    /// Resumes event delivery on `port` (and delivers a pending event). With late EOI this is
    /// the end-of-interrupt the [`Throttle`](crate::Throttle) decides when to send.
    fn unmask(&self, port: Port) -> Result<(), EvtchnError>;

    /// Closes `port`; its number may be reused afterwards.
    fn close(&self, port: Port) -> Result<(), EvtchnError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_round_trips_for_every_value() {
        for errno in (-200..=200).chain([i32::MIN, i32::MAX]) {
            assert_eq!(EvtchnError::from_errno(errno).errno(), errno);
        }
        assert_eq!(EvtchnError::from_errno(-28), EvtchnError::NoFreePorts);
        assert_eq!(EvtchnError::from_errno(28), EvtchnError::Other(28));
    }
}
