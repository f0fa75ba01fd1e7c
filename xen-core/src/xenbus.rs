//! The XenBus connection state machine, as a pure function for frontends and backends.
//!
//! Each end of a split device publishes its [`XenbusState`] in its `state` key and watches the
//! other end's. [`step`] maps `(role, our state, peer state, event)` to a [`Transition`]: the
//! state to publish next and the [`Action`]s the glue performs, in order. The glue owns all
//! effects (XenStore writes, grants, event channels); this module owns only the decisions, so
//! every path through the handshake can be tested and fuzzed without Xen.
//!
//! # The handshake
//!
//! ```text
//!  frontend                                   backend
//!  Initialising                               Initialising
//!                                             PublishFeatures -> InitWait
//!  ReadPeerFeatures, PublishRingRefs
//!    -> Initialised
//!                                             MapRing, PublishDeviceProperties, Connect
//!                                               -> Connected
//!  ReadDeviceProperties, Connect
//!    -> Connected
//! ```
//!
//! # Rules beyond the happy path
//!
//! * **Skipped states.** The peer's state is read when a watch fires, so intermediate values
//!   can be missed, and `io/blkif.h` lets either side skip states. Whatever the peer's state,
//!   the work of every skipped step is done in one transition (e.g. a frontend still
//!   Initialising that sees the backend Connected reads features, publishes rings and connects).
//! * **Closing.** A backend always unmaps ([`Action::Disconnect`]) *before* announcing Closing or
//!   Closed. A frontend that wants to close first stops I/O ([`Action::Quiesce`]) and announces
//!   Closing, but only revokes its grants ([`Action::Disconnect`]) once the backend is Closing,
//!   Closed or gone, so it never frees a page the backend may still map (XSA-396). Once the
//!   handshake has begun, either side that sees its peer Closing/Closed (or gone) reaches
//!   Closed, so Closing always ends in Closed. A frontend that has published nothing yet
//!   (Initialising) closes when the backend is Closing (the backend waits for that), but waits
//!   when the backend is Closed: a re-probed frontend must not close again because it read the
//!   old backend's Closed, or both ends would stay Closed.
//! * **Untrusted input.** The peer's state is a string the peer wrote; [`parse_state`] accepts
//!   only decimal `0..=8`. Anything else is [`Event::PeerStateInvalid`], which changes nothing
//!   but asks the glue to report it ([`Action::ReportInvalidPeerState`]).
//! * **Peer gone.** A missing peer `state` node, or `Unknown` (0), means the peer was torn down
//!   (once we have started): treated like Closed.
//! * **Reconfiguration** (vscsiif LUN hotplug): the toolstack sets the backend Reconfiguring;
//!   the frontend reacts ([`Action::Reconfigure`]) and goes Reconfiguring; the backend applies
//!   the change and goes Reconfigured; the frontend re-scans and returns to Connected; the
//!   backend follows.
//! * **Resume.** After suspend/resume a frontend's grants and event channels are gone:
//!   [`Event::Resume`] disconnects and redoes the handshake with whatever backend is there.
//!   [`Machine::on_resume`] forgets the old backend's state first: it belonged to a backend
//!   on another host.
//! * **Removal.** [`Event::Removed`] disconnects and goes Closed at once on either side.
//! * **Readiness.** A [`Machine`] can be told it is not ready to connect
//!   ([`Machine::set_ready`]), e.g. a block backend whose disk the hotplug script has not named
//!   yet. Transitions that would set up a connection are held, not lost, and run when it
//!   becomes ready.
//! * **Failed actions.** [`Machine::drive`] performs a transition's actions through the glue's
//!   [`Perform`] and turns a failed action into [`Event::Failed`], except a re-read of a live
//!   connection's device properties (a resize), whose failure leaves the connection as it was.
//!
//! Every resource-creating action ([`Action::PublishRingRefs`], [`Action::MapRing`],
//! [`Action::Connect`]) is only emitted when the previous connection was torn down by an
//! [`Action::Disconnect`] (which must be idempotent), so a hostile peer flipping states cannot
//! make the glue map or grant twice.

pub use xen_sys::XenbusState;

use crate::num::{parse_u32, ParseError};

/// Why a peer's `state` value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// Not a plain decimal number.
    NotDecimal(ParseError),
    /// A number, but not a XenBus state.
    OutOfRange(u32),
}

/// Parses a `state` value read from XenStore: decimal `0..=8`, nothing else (no sign,
/// whitespace or NUL).
pub fn parse_state(text: &[u8]) -> Result<XenbusState, StateError> {
    let raw = parse_u32(text).map_err(StateError::NotDecimal)?;
    XenbusState::try_from(raw).map_err(|_| StateError::OutOfRange(raw))
}

/// The text to write to a `state` key.
pub fn state_text(state: XenbusState) -> &'static str {
    match state {
        XenbusState::Unknown => "0",
        XenbusState::Initialising => "1",
        XenbusState::InitWait => "2",
        XenbusState::Initialised => "3",
        XenbusState::Connected => "4",
        XenbusState::Closing => "5",
        XenbusState::Closed => "6",
        XenbusState::Reconfiguring => "7",
        XenbusState::Reconfigured => "8",
    }
}

/// Which end of the device we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The guest side: grants rings, issues requests.
    Frontend,
    /// The driver-domain side: maps rings, serves requests.
    Backend,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The device was probed (or re-probed after Closed): begin the handshake.
    Start,
    /// The peer's `state` changed; its new, validated value is the `peer` argument of [`step`].
    PeerChanged,
    /// The peer's `state` held something [`parse_state`] refused.
    PeerStateInvalid,
    /// The peer's `state` node disappeared.
    PeerVanished,
    /// We want to close (unplug, driver unload, toolstack `online` = 0).
    Close,
    /// An action failed (bad peer feature, grant or map failure): give up on this connection.
    Failed,
    /// A backend wants to reconfigure (frontends ignore this; their peer drives it).
    Reconfigure,
    /// A frontend resumed from suspend: old grants and event channels are void.
    Resume,
    /// The device is being removed (driver unbound, module unloaded, device deleted): release
    /// the connection now and say Closed, whatever the peer shows. A frontend's revoke defers
    /// freeing what the backend still maps, as on every [`Action::Disconnect`].
    Removed,
}

/// Something the glue must do, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Backend: write `feature-*` keys and transport limits (one transaction).
    PublishFeatures,
    /// Frontend: read and validate the backend's features; negotiate.
    ReadPeerFeatures,
    /// Frontend: allocate and grant rings, allocate event channels, write `ring-ref*`,
    /// `event-channel*` and negotiated keys (one transaction).
    PublishRingRefs,
    /// Backend: read and validate the frontend's ring references and event channels, map the
    /// rings, bind the event channels.
    MapRing,
    /// Backend: write device properties (e.g. `sectors`, `info`, `sector-size`).
    PublishDeviceProperties,
    /// Frontend: read and validate device properties (also on a repeated Connected, e.g. a
    /// resize).
    ReadDeviceProperties,
    /// Start I/O.
    Connect,
    /// Frontend: stop issuing requests and wait for outstanding ones, keeping rings granted.
    Quiesce,
    /// Stop I/O and release the connection: the backend unmaps and unbinds; the frontend
    /// revokes grants (deferring frees the peer may still map) and unbinds. Idempotent.
    Disconnect,
    /// Re-read the device list and apply additions/removals (vscsiif LUN hotplug).
    Reconfigure,
    /// Write this state to our `state` key.
    SwitchState(XenbusState),
    /// Report (rate-limited) that the peer wrote garbage to its `state`.
    ReportInvalidPeerState,
}

/// Most actions any transition emits.
pub const MAX_ACTIONS: usize = 8;

/// A fixed-capacity, ordered list of actions.
///
/// # Invariants
///
/// `len <= MAX_ACTIONS`; `items[..len]` are the actions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    items: [Action; MAX_ACTIONS],
    len: usize,
}

impl Actions {
    const fn new() -> Self {
        Self {
            items: [Action::Disconnect; MAX_ACTIONS],
            len: 0,
        }
    }

    fn push(&mut self, action: Action) {
        // Every transition below emits at most 6 actions; a (impossible) seventh+ overflow
        // would be dropped rather than panic.
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = action;
            self.len += 1;
        }
    }

    fn extend(&mut self, actions: &[Action]) {
        for &a in actions {
            self.push(a);
        }
    }

    /// The actions, in order.
    pub fn as_slice(&self) -> &[Action] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Whether `action` is in the list.
    pub fn contains(&self, action: Action) -> bool {
        self.as_slice().contains(&action)
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Debug for Actions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<'a> IntoIterator for &'a Actions {
    type Item = &'a Action;
    type IntoIter = core::slice::Iter<'a, Action>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// The outcome of [`step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Our state after the actions (equal to the last [`Action::SwitchState`], if any).
    pub state: XenbusState,
    /// What to do, in order.
    pub actions: Actions,
}

impl Transition {
    fn stay(ours: XenbusState) -> Self {
        Self {
            state: ours,
            actions: Actions::new(),
        }
    }

    fn to(ours: XenbusState, actions: &[Action], next: XenbusState) -> Self {
        let mut list = Actions::new();
        list.extend(actions);
        if next != ours || !actions.is_empty() {
            list.push(Action::SwitchState(next));
        }
        Self {
            state: next,
            actions: list,
        }
    }

    fn only(ours: XenbusState, actions: &[Action]) -> Self {
        let mut list = Actions::new();
        list.extend(actions);
        Self {
            state: ours,
            actions: list,
        }
    }
}

use Action as A;
use XenbusState as S;

/// Decides the next step. Pure: same inputs, same output; never panics.
///
/// `peer` is the peer's latest validated state (for [`Event::PeerChanged`], the new value; for
/// other events, the last value seen, or [`XenbusState::Unknown`] if none).
pub fn step(role: Role, ours: XenbusState, peer: XenbusState, event: Event) -> Transition {
    match role {
        Role::Frontend => frontend(ours, peer, event, false),
        Role::Backend => backend(ours, peer, event),
    }
}

/// [`step`] for a frontend that connects first: it says Connected as soon as its rings are
/// published, without waiting for the backend's Connected, because its backend connects
/// only once it sees the frontend Connected (netif: Linux's netback maps the rings on the
/// frontend's Connected and ignores Initialised). Setting up is then followed at once by
/// `ReadDeviceProperties` and `Connect`; the rest is [`step`]'s frontend.
pub fn step_connecting_first(ours: XenbusState, peer: XenbusState, event: Event) -> Transition {
    frontend(ours, peer, event, true)
}

fn close_now(ours: XenbusState) -> Transition {
    Transition::to(ours, &[A::Disconnect], S::Closed)
}

fn frontend(ours: XenbusState, peer: XenbusState, event: Event, eager: bool) -> Transition {
    const SETUP: [Action; 2] = [A::ReadPeerFeatures, A::PublishRingRefs];
    const SETUP_AND_CONNECT: [Action; 4] = [
        A::ReadPeerFeatures,
        A::PublishRingRefs,
        A::ReadDeviceProperties,
        A::Connect,
    ];
    const CONNECT: [Action; 2] = [A::ReadDeviceProperties, A::Connect];
    let peer_down = matches!(peer, S::Closing | S::Closed | S::Unknown);

    // From Initialising (or after a reset): act on whatever the backend shows.
    let from_initialising = |ours: XenbusState, prefix: &[Action]| -> Transition {
        let mut actions = Actions::new();
        actions.extend(prefix);
        let next = match peer {
            S::InitWait | S::Initialised if eager => {
                actions.extend(&SETUP_AND_CONNECT);
                S::Connected
            }
            S::InitWait | S::Initialised => {
                actions.extend(&SETUP);
                S::Initialised
            }
            S::Connected => {
                actions.extend(&SETUP_AND_CONNECT);
                S::Connected
            }
            _ => S::Initialising,
        };
        if next != ours || !actions.is_empty() {
            actions.push(A::SwitchState(next));
        }
        Transition {
            state: next,
            actions,
        }
    };

    match event {
        Event::PeerStateInvalid => Transition::only(ours, &[A::ReportInvalidPeerState]),
        Event::Reconfigure => Transition::stay(ours),
        Event::Start => match ours {
            S::Unknown | S::Initialising | S::Closed => from_initialising(ours, &[]),
            _ => Transition::stay(ours),
        },
        Event::Resume => match ours {
            S::Closing | S::Closed => Transition::stay(ours),
            _ => from_initialising(ours, &[A::Disconnect]),
        },
        Event::Removed => match ours {
            S::Closed => Transition::stay(ours),
            _ => close_now(ours),
        },
        Event::Close | Event::Failed => match ours {
            S::Closed => Transition::stay(ours),
            S::Closing if peer_down => close_now(ours),
            S::Closing => Transition::stay(ours),
            S::Unknown | S::Initialising => close_now(ours),
            _ if peer_down => close_now(ours),
            _ => Transition::to(ours, &[A::Quiesce], S::Closing),
        },
        Event::PeerVanished => match ours {
            S::Closed | S::Unknown | S::Initialising => Transition::stay(ours),
            _ => close_now(ours),
        },
        Event::PeerChanged => match (ours, peer) {
            (S::Closed, S::InitWait) => from_initialising(ours, &[]),
            (S::Closed, _) => Transition::stay(ours),
            // Nothing published yet: a backend that is Closed (or not yet there) is waited for;
            // it leaves Closed when it sees us Initialising. Closing here would leave both ends
            // Closed for good. A backend that is Closing waits for us, so we do close.
            (S::Unknown | S::Initialising, S::Closed | S::Unknown) => Transition::stay(ours),
            (_, S::Closing | S::Closed | S::Unknown) => close_now(ours),
            (S::Closing, _) => Transition::stay(ours),
            (S::Unknown | S::Initialising, _) => from_initialising(ours, &[]),
            (S::Initialised, S::Connected) => Transition::to(ours, &CONNECT, S::Connected),
            (S::Connected | S::Reconfigured, S::Connected) => {
                Transition::only(ours, &[A::ReadDeviceProperties])
            }
            (S::Connected, S::Reconfiguring) => {
                Transition::to(ours, &[A::Reconfigure], S::Reconfiguring)
            }
            (S::Connected | S::Reconfiguring | S::Reconfigured, S::Reconfigured) => {
                Transition::to(ours, &[A::Reconfigure], S::Connected)
            }
            // The backend went back to Connected without Reconfigured (the toolstack gave up):
            // re-scan and carry on.
            (S::Reconfiguring, S::Connected) => {
                Transition::to(ours, &[A::Reconfigure], S::Connected)
            }
            _ => Transition::stay(ours),
        },
    }
}

fn backend(ours: XenbusState, peer: XenbusState, event: Event) -> Transition {
    const CONNECT: [Action; 3] = [A::MapRing, A::PublishDeviceProperties, A::Connect];
    const PUBLISH_AND_CONNECT: [Action; 4] = [
        A::PublishFeatures,
        A::MapRing,
        A::PublishDeviceProperties,
        A::Connect,
    ];
    let peer_down = matches!(peer, S::Closed | S::Unknown);

    match event {
        Event::PeerStateInvalid => Transition::only(ours, &[A::ReportInvalidPeerState]),
        Event::Resume => Transition::stay(ours),
        Event::Removed => match ours {
            S::Closed => Transition::stay(ours),
            _ => close_now(ours),
        },
        Event::Start => match ours {
            S::Unknown | S::Initialising | S::Closed => match peer {
                S::Initialised | S::Connected => {
                    Transition::to(ours, &PUBLISH_AND_CONNECT, S::Connected)
                }
                _ => Transition::to(ours, &[A::PublishFeatures], S::InitWait),
            },
            _ => Transition::stay(ours),
        },
        Event::Reconfigure => match ours {
            S::Connected => Transition::to(ours, &[], S::Reconfiguring),
            _ => Transition::stay(ours),
        },
        Event::Close | Event::Failed => match ours {
            S::Closed => Transition::stay(ours),
            S::Closing if peer_down => close_now(ours),
            S::Closing => Transition::stay(ours),
            _ if peer_down => close_now(ours),
            _ => Transition::to(ours, &[A::Disconnect], S::Closing),
        },
        Event::PeerVanished => match ours {
            S::Closed | S::Unknown | S::Initialising => Transition::stay(ours),
            _ => close_now(ours),
        },
        Event::PeerChanged => match (ours, peer) {
            (S::Closed, S::Initialising) => {
                Transition::to(ours, &[A::PublishFeatures], S::InitWait)
            }
            (S::Closed, _) => Transition::stay(ours),
            (_, S::Closed) => close_now(ours),
            (S::Unknown | S::Initialising, S::Unknown) => Transition::stay(ours),
            (_, S::Unknown) => close_now(ours),
            (S::Closing, _) => Transition::stay(ours),
            (_, S::Closing) => Transition::to(ours, &[A::Disconnect], S::Closing),
            (S::Unknown | S::Initialising, _) => Transition::stay(ours),
            (S::InitWait, S::Initialised | S::Connected) => {
                Transition::to(ours, &CONNECT, S::Connected)
            }
            (S::Connected | S::Reconfiguring, S::Reconfiguring) => {
                Transition::to(ours, &[A::Reconfigure], S::Reconfigured)
            }
            (S::Reconfigured, S::Connected) => Transition::to(ours, &[], S::Connected),
            _ => Transition::stay(ours),
        },
    }
}

/// One device end: our state, the peer's last valid state, and [`step`] applied to both.
///
/// The glue feeds it peer `state` values as read from XenStore and local events, performs the
/// returned actions in order, and reports a failed action with [`Event::Failed`];
/// [`Machine::drive`] does all of that through a [`Perform`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    role: Role,
    ours: XenbusState,
    peer: XenbusState,
    /// Connections may be set up (see [`Machine::set_ready`]).
    ready: bool,
    /// A frontend that connects first ([`step_connecting_first`]).
    eager: bool,
    /// A peer state was delivered since we started or resumed. Until then `peer` is
    /// `Unknown` for "not read yet", which must not count as a peer that went away.
    peer_seen: bool,
}

/// What a [`Machine`] is told: the input of [`Machine::drive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// The peer's `state` node as read: `Some(value)`, or `None` if it does not exist.
    PeerRead(Option<&'a [u8]>),
    /// The peer's state as the kernel's XenBus core read it (a missing node, or a number
    /// outside the states, arrives as `Unknown`).
    Peer(XenbusState),
    /// A local event.
    Event(Event),
    /// A frontend resumed from suspend ([`Machine::on_resume`]).
    Resume,
    /// Whether connections may be set up changed ([`Machine::set_ready`]).
    Ready(bool),
}

/// The glue's half of [`Machine::drive`]: performs actions, hears of failures.
pub trait Perform {
    /// Why an action failed.
    type Error;

    /// Performs one action.
    fn perform(&mut self, action: Action) -> Result<(), Self::Error>;

    /// `action` failed with `error`. `gave_up` is true when the connection was given up for
    /// it: the actions of [`Event::Failed`] have then been performed already, so the glue
    /// reports the failure (log, `xenbus_dev_error`) after the rings are released.
    fn failed(&mut self, action: Action, error: Self::Error, gave_up: bool);
}

impl Machine {
    /// A fresh device end: we are Initialising, the peer is not yet known, connections may be
    /// set up.
    pub const fn new(role: Role) -> Self {
        Self {
            role,
            ours: S::Initialising,
            peer: S::Unknown,
            ready: true,
            peer_seen: false,
            eager: false,
        }
    }

    /// A fresh frontend that connects first: its transitions are [`step_connecting_first`]'s.
    pub const fn new_connecting_first() -> Self {
        Self {
            eager: true,
            ..Self::new(Role::Frontend)
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Our state.
    pub fn state(&self) -> XenbusState {
        self.ours
    }

    /// The peer's last valid state.
    pub fn peer(&self) -> XenbusState {
        self.peer
    }

    /// Whether connections may be set up.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The peer's `state` node was read: `Some(value)` or `None` if it does not exist.
    pub fn on_peer_state(&mut self, value: Option<&[u8]>) -> Actions {
        match value {
            None => {
                self.peer = S::Unknown;
                self.peer_seen = true;
                self.apply(Event::PeerVanished)
            }
            Some(text) => match parse_state(text) {
                Ok(state) => self.on_peer(state),
                Err(_) => self.apply(Event::PeerStateInvalid),
            },
        }
    }

    /// The peer's state, already parsed (the kernel's XenBus core hands drivers a number).
    pub fn on_peer(&mut self, state: XenbusState) -> Actions {
        self.peer = state;
        self.peer_seen = true;
        self.apply(Event::PeerChanged)
    }

    /// A local event.
    pub fn on_event(&mut self, event: Event) -> Actions {
        self.apply(event)
    }

    /// A frontend resumed from suspend: the backend state we knew was another host's, so it
    /// is forgotten before [`Event::Resume`]; the new backend's state arrives as usual.
    pub fn on_resume(&mut self) -> Actions {
        self.peer = S::Unknown;
        self.peer_seen = false;
        self.apply(Event::Resume)
    }

    /// Sets whether connections may be set up. While not ready, a transition that would grant
    /// or map rings ([`Action::PublishRingRefs`], [`Action::MapRing`]) is held: nothing
    /// changes. Becoming ready re-runs the peer's last state, so nothing held is lost (unless
    /// no peer state was seen yet: there is nothing to re-run).
    pub fn set_ready(&mut self, ready: bool) -> Actions {
        let was = self.ready;
        self.ready = ready;
        if ready && !was && self.peer_seen {
            self.apply(Event::PeerChanged)
        } else {
            Actions::new()
        }
    }

    /// Applies `input` and performs the resulting actions through `glue`, in order.
    ///
    /// The first failed action ends the list. A failed [`Action::ReadDeviceProperties`] of a
    /// frontend already Connected (a repeated Connected, such as a resize) is only reported:
    /// the connection stays as it was. Any other failure gives the connection up: the actions
    /// of [`Event::Failed`] are performed (their own failures reported, not acted on), then
    /// the failure is reported with `gave_up`. Returns whether every action succeeded.
    pub fn drive<P: Perform>(&mut self, input: Input<'_>, glue: &mut P) -> bool {
        let before = self.ours;
        let actions = match input {
            Input::PeerRead(value) => self.on_peer_state(value),
            Input::Peer(state) => self.on_peer(state),
            Input::Event(event) => self.on_event(event),
            Input::Resume => self.on_resume(),
            Input::Ready(ready) => self.set_ready(ready),
        };
        let mut all_done = true;
        for &action in actions.as_slice() {
            let Err(error) = glue.perform(action) else {
                continue;
            };
            all_done = false;
            let refresh = self.role == Role::Frontend
                && action == A::ReadDeviceProperties
                && matches!(before, S::Connected | S::Reconfigured);
            if refresh {
                glue.failed(action, error, false);
                continue;
            }
            for &recovery in self.apply(Event::Failed).as_slice() {
                if let Err(e) = glue.perform(recovery) {
                    glue.failed(recovery, e, false);
                }
            }
            glue.failed(action, error, true);
            return false;
        }
        all_done
    }

    fn apply(&mut self, event: Event) -> Actions {
        // A peer not read yet is taken as one that has not started (Initialising), not as one
        // that went away: a local failure or close before then must say Closing and wait,
        // not jump to Closed (a toolstack removing the device waits for our Closed after it
        // wrote Closing itself; it would never see it).
        let peer = if self.peer_seen {
            self.peer
        } else {
            S::Initialising
        };
        let t = if self.eager {
            step_connecting_first(self.ours, peer, event)
        } else {
            step(self.role, self.ours, peer, event)
        };
        let sets_up = t
            .actions
            .as_slice()
            .iter()
            .any(|a| matches!(a, A::PublishRingRefs | A::MapRing));
        if sets_up && !self.ready {
            return Actions::new();
        }
        self.ours = t.state;
        t.actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_states() {
        for (i, s) in [
            S::Unknown,
            S::Initialising,
            S::InitWait,
            S::Initialised,
            S::Connected,
            S::Closing,
            S::Closed,
            S::Reconfiguring,
            S::Reconfigured,
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(parse_state(state_text(s).as_bytes()), Ok(s));
            assert_eq!(u32::from(s) as usize, i);
        }
    }

    #[test]
    fn garbage_state_value_rejected() {
        assert_eq!(parse_state(b"9"), Err(StateError::OutOfRange(9)));
        assert_eq!(
            parse_state(b"4294967295"),
            Err(StateError::OutOfRange(u32::MAX))
        );
        for bad in [
            &b""[..],
            b"-1",
            b"4\n",
            b" 4",
            b"4\0",
            b"connected",
            b"0x4",
            b"99999999999999999999",
        ] {
            assert!(parse_state(bad).is_err(), "{bad:?}");
        }
        let mut m = Machine::new(Role::Backend);
        m.on_event(Event::Start);
        let a = m.on_peer_state(Some(b"\xff\xfe"));
        assert_eq!(a.as_slice(), [Action::ReportInvalidPeerState]);
        assert_eq!(m.state(), S::InitWait);
        assert_eq!(m.peer(), S::Unknown);
    }
}
