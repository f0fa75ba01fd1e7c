//! Free-running 32-bit ring indices and the notification hold-off arithmetic of `ring.h`.

use core::fmt;

/// A free-running ring index (`RING_IDX`): it counts entries produced or consumed since the ring
/// was set up and wraps at 2^32. The slot it names is `index & (entries - 1)`.
///
/// Indices are only ever compared by distance (`later - earlier`, wrapping), never by `<`, so
/// wrap-around is invisible to the protocol.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct RingIndex(u32);

impl RingIndex {
    /// The index with the raw value `raw`.
    pub const fn new(raw: u32) -> Self {
        RingIndex(raw)
    }

    /// The raw value, as stored in the shared page.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The index `n` entries later (wrapping).
    #[must_use]
    pub const fn add(self, n: u32) -> Self {
        RingIndex(self.0.wrapping_add(n))
    }

    /// How many entries `self` is after `earlier` (wrapping): `self - earlier` mod 2^32.
    pub const fn since(self, earlier: RingIndex) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }
}

impl From<u32> for RingIndex {
    fn from(raw: u32) -> Self {
        RingIndex(raw)
    }
}

impl From<RingIndex> for u32 {
    fn from(index: RingIndex) -> Self {
        index.0
    }
}

impl fmt::Debug for RingIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingIndex({:#x})", self.0)
    }
}

/// Whether the peer must be sent an event after a push.
///
/// Returned by the push operations (`RING_PUSH_*_AND_CHECK_NOTIFY`); the caller sends the event
/// on the ring's event channel when it is [`Notify::Yes`].
#[must_use = "the peer may be asleep waiting for this event"]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Notify {
    /// The peer asked for an event inside the range just published: send one.
    Yes,
    /// The peer is still busy (it will see the new entries on its final check): no event.
    No,
}

impl Notify {
    /// Applies `ring.h`'s hold-off rule: having moved our producer index from `old` to `new`, the
    /// peer wants an event iff its event index lies in `(old, new]`, which in wrapping
    /// arithmetic is `new - event < new - old`.
    #[inline]
    pub const fn decide(old: RingIndex, new: RingIndex, event: RingIndex) -> Self {
        if new.since(event) < new.since(old) {
            Notify::Yes
        } else {
            Notify::No
        }
    }

    /// `true` for [`Notify::Yes`].
    pub const fn is_required(self) -> bool {
        matches!(self, Notify::Yes)
    }
}
