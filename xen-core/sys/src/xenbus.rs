//! XenBus device states (`io/xenbus.h`), as written to a device's `state` key.

use crate::{bindings, Unknown};

/// A XenBus device state (`enum xenbus_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum XenbusState {
    /// Not yet written, or unreadable.
    Unknown = 0,
    /// The device is being set up.
    Initialising = 1,
    /// Waiting for information from the peer (the backend published its features).
    InitWait = 2,
    /// Set-up done, waiting for the peer to connect (the frontend published its rings).
    Initialised = 3,
    /// Connected; I/O may flow.
    Connected = 4,
    /// Shutting down.
    Closing = 5,
    /// Shut down.
    Closed = 6,
    /// Reconfiguring (vscsiif LUN hotplug).
    Reconfiguring = 7,
    /// Reconfiguration done.
    Reconfigured = 8,
}

const _: () = {
    use bindings as b;
    assert!(XenbusState::Unknown as u32 == b::XenbusStateUnknown);
    assert!(XenbusState::Initialising as u32 == b::XenbusStateInitialising);
    assert!(XenbusState::InitWait as u32 == b::XenbusStateInitWait);
    assert!(XenbusState::Initialised as u32 == b::XenbusStateInitialised);
    assert!(XenbusState::Connected as u32 == b::XenbusStateConnected);
    assert!(XenbusState::Closing as u32 == b::XenbusStateClosing);
    assert!(XenbusState::Closed as u32 == b::XenbusStateClosed);
    assert!(XenbusState::Reconfiguring as u32 == b::XenbusStateReconfiguring);
    assert!(XenbusState::Reconfigured as u32 == b::XenbusStateReconfigured);
};

impl TryFrom<u32> for XenbusState {
    type Error = Unknown<u32>;
    fn try_from(raw: u32) -> Result<Self, Self::Error> {
        Ok(match raw {
            0 => XenbusState::Unknown,
            1 => XenbusState::Initialising,
            2 => XenbusState::InitWait,
            3 => XenbusState::Initialised,
            4 => XenbusState::Connected,
            5 => XenbusState::Closing,
            6 => XenbusState::Closed,
            7 => XenbusState::Reconfiguring,
            8 => XenbusState::Reconfigured,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<XenbusState> for u32 {
    fn from(state: XenbusState) -> u32 {
        state as u32
    }
}
