//! The XenBus state machine: handshakes, skipped states, closing, reconfiguration, resume, and
//! property tests of resource safety and convergence.

use proptest::prelude::*;
use xen_core::xenbus::{
    step, Action, Action as A, Event, Machine, Role, Transition, XenbusState as S,
};

fn acts(t: &Transition) -> Vec<Action> {
    t.actions.as_slice().to_vec()
}

#[test]
fn happy_handshake() {
    let b = step(
        Role::Backend,
        S::Initialising,
        S::Initialising,
        Event::Start,
    );
    assert_eq!(acts(&b), [A::PublishFeatures, A::SwitchState(S::InitWait)]);
    let f = step(
        Role::Frontend,
        S::Initialising,
        S::InitWait,
        Event::PeerChanged,
    );
    assert_eq!(
        acts(&f),
        [
            A::ReadPeerFeatures,
            A::PublishRingRefs,
            A::SwitchState(S::Initialised)
        ]
    );
    let b = step(
        Role::Backend,
        S::InitWait,
        S::Initialised,
        Event::PeerChanged,
    );
    assert_eq!(
        acts(&b),
        [
            A::MapRing,
            A::PublishDeviceProperties,
            A::Connect,
            A::SwitchState(S::Connected)
        ]
    );
    let f = step(
        Role::Frontend,
        S::Initialised,
        S::Connected,
        Event::PeerChanged,
    );
    assert_eq!(
        acts(&f),
        [
            A::ReadDeviceProperties,
            A::Connect,
            A::SwitchState(S::Connected)
        ]
    );
    // Both connected: a repeated Connected only re-reads properties (e.g. a resize).
    let f = step(
        Role::Frontend,
        S::Connected,
        S::Connected,
        Event::PeerChanged,
    );
    assert_eq!(acts(&f), [A::ReadDeviceProperties]);
    let b = step(
        Role::Backend,
        S::Connected,
        S::Connected,
        Event::PeerChanged,
    );
    assert!(b.actions.is_empty());
}

#[test]
fn skipped_states_tolerated() {
    // The frontend missed InitWait and sees the backend already Connected.
    let f = step(
        Role::Frontend,
        S::Initialising,
        S::Connected,
        Event::PeerChanged,
    );
    assert_eq!(
        acts(&f),
        [
            A::ReadPeerFeatures,
            A::PublishRingRefs,
            A::ReadDeviceProperties,
            A::Connect,
            A::SwitchState(S::Connected)
        ]
    );
    // The backend bypassed InitWait and went Initialised (default parameters).
    let f = step(
        Role::Frontend,
        S::Initialising,
        S::Initialised,
        Event::PeerChanged,
    );
    assert_eq!(f.state, S::Initialised);
    // The frontend went Initialised (or Connected) before the backend even started.
    for peer in [S::Initialised, S::Connected] {
        let b = step(Role::Backend, S::Initialising, peer, Event::Start);
        assert_eq!(
            acts(&b),
            [
                A::PublishFeatures,
                A::MapRing,
                A::PublishDeviceProperties,
                A::Connect,
                A::SwitchState(S::Connected)
            ]
        );
    }
    // The backend jumped straight to Connected from the frontend's point of view at start.
    let f = step(Role::Frontend, S::Initialising, S::Connected, Event::Start);
    assert_eq!(f.state, S::Connected);
    // A frontend whose state node was never written (Unknown) behaves as Initialising.
    let f = step(Role::Frontend, S::Unknown, S::InitWait, Event::PeerChanged);
    assert_eq!(f.state, S::Initialised);
}

#[test]
fn frontend_keeps_grants_until_backend_closes() {
    // XSA-396: closing from Connected must not revoke grants the backend may still map.
    let f = step(Role::Frontend, S::Connected, S::Connected, Event::Close);
    assert_eq!(acts(&f), [A::Quiesce, A::SwitchState(S::Closing)]);
    assert!(!f.actions.contains(A::Disconnect));
    // Backend still Connected (a spurious watch): keep waiting.
    assert!(
        step(Role::Frontend, S::Closing, S::Connected, Event::PeerChanged)
            .actions
            .is_empty()
    );
    // Backend unmapped and says Closing: now revoke and close.
    let f = step(Role::Frontend, S::Closing, S::Closing, Event::PeerChanged);
    assert_eq!(acts(&f), [A::Disconnect, A::SwitchState(S::Closed)]);
}

#[test]
fn backend_unmaps_before_announcing_closing() {
    let b = step(Role::Backend, S::Connected, S::Closing, Event::PeerChanged);
    assert_eq!(acts(&b), [A::Disconnect, A::SwitchState(S::Closing)]);
    let b = step(Role::Backend, S::Connected, S::Connected, Event::Close);
    assert_eq!(acts(&b), [A::Disconnect, A::SwitchState(S::Closing)]);
    let b = step(Role::Backend, S::Closing, S::Closed, Event::PeerChanged);
    assert_eq!(acts(&b), [A::Disconnect, A::SwitchState(S::Closed)]);
}

#[test]
fn backend_close_during_handshake_is_acknowledged() {
    let b = step(Role::Backend, S::InitWait, S::Initialising, Event::Close);
    assert_eq!(acts(&b), [A::Disconnect, A::SwitchState(S::Closing)]);
    let f = step(
        Role::Frontend,
        S::Initialising,
        S::Closing,
        Event::PeerChanged,
    );
    assert_eq!(acts(&f), [A::Disconnect, A::SwitchState(S::Closed)]);
    let b = step(Role::Backend, S::Closing, S::Closed, Event::PeerChanged);
    assert_eq!(b.state, S::Closed);
}

#[test]
fn reprobed_frontend_waits_for_closed_backend() {
    // The old backend is still Closed when the re-probed frontend looks: wait, don't close.
    assert!(step(
        Role::Frontend,
        S::Initialising,
        S::Closed,
        Event::PeerChanged
    )
    .actions
    .is_empty());
}

#[test]
fn peer_vanished_or_unknown_closes() {
    for role in [Role::Frontend, Role::Backend] {
        let t = step(role, S::Connected, S::Unknown, Event::PeerVanished);
        assert_eq!(acts(&t), [A::Disconnect, A::SwitchState(S::Closed)]);
        let t = step(role, S::Connected, S::Unknown, Event::PeerChanged);
        assert_eq!(t.state, S::Closed);
        // Before anything was set up, a not-yet-written peer is just waited for.
        assert!(step(role, S::Initialising, S::Unknown, Event::PeerChanged)
            .actions
            .is_empty());
    }
}

#[test]
fn garbage_state_value_rejected() {
    let mut m = Machine::new(Role::Frontend);
    m.on_event(Event::Start);
    m.on_peer_state(Some(b"2"));
    assert_eq!(m.state(), S::Initialised);
    for garbage in [
        &b"9"[..],
        b"-4",
        b"4 ",
        b"",
        b"\0",
        b"Connected",
        b"18446744073709551620",
    ] {
        let a = m.on_peer_state(Some(garbage));
        assert_eq!(a.as_slice(), [A::ReportInvalidPeerState], "{garbage:?}");
        assert_eq!(m.state(), S::Initialised);
        assert_eq!(m.peer(), S::InitWait);
    }
}

#[test]
fn reconnect_after_close() {
    // Backend closed; frontend re-probed: Initialising -> backend InitWait -> handshake again.
    let f = step(Role::Frontend, S::Closed, S::Closed, Event::Start);
    assert_eq!(acts(&f), [A::SwitchState(S::Initialising)]);
    let b = step(
        Role::Backend,
        S::Closed,
        S::Initialising,
        Event::PeerChanged,
    );
    assert_eq!(acts(&b), [A::PublishFeatures, A::SwitchState(S::InitWait)]);
    // A closed frontend that sees a fresh backend in InitWait reconnects by itself.
    let f = step(Role::Frontend, S::Closed, S::InitWait, Event::PeerChanged);
    assert_eq!(f.state, S::Initialised);
}

#[test]
fn resume_redoes_handshake() {
    let f = step(Role::Frontend, S::Connected, S::InitWait, Event::Resume);
    assert_eq!(
        acts(&f),
        [
            A::Disconnect,
            A::ReadPeerFeatures,
            A::PublishRingRefs,
            A::SwitchState(S::Initialised)
        ]
    );
    let f = step(Role::Frontend, S::Connected, S::Initialising, Event::Resume);
    assert_eq!(acts(&f), [A::Disconnect, A::SwitchState(S::Initialising)]);
}

#[test]
fn vscsi_reconfiguration_round() {
    // Toolstack (or the backend itself) sets the backend Reconfiguring.
    let b = step(
        Role::Backend,
        S::Connected,
        S::Connected,
        Event::Reconfigure,
    );
    assert_eq!(acts(&b), [A::SwitchState(S::Reconfiguring)]);
    let f = step(
        Role::Frontend,
        S::Connected,
        S::Reconfiguring,
        Event::PeerChanged,
    );
    assert_eq!(acts(&f), [A::Reconfigure, A::SwitchState(S::Reconfiguring)]);
    let b = step(
        Role::Backend,
        S::Reconfiguring,
        S::Reconfiguring,
        Event::PeerChanged,
    );
    assert_eq!(acts(&b), [A::Reconfigure, A::SwitchState(S::Reconfigured)]);
    let f = step(
        Role::Frontend,
        S::Reconfiguring,
        S::Reconfigured,
        Event::PeerChanged,
    );
    assert_eq!(acts(&f), [A::Reconfigure, A::SwitchState(S::Connected)]);
    let b = step(
        Role::Backend,
        S::Reconfigured,
        S::Connected,
        Event::PeerChanged,
    );
    assert_eq!(acts(&b), [A::SwitchState(S::Connected)]);
    // A stale read of the frontend while the backend is still Reconfiguring changes nothing.
    assert!(step(
        Role::Backend,
        S::Reconfiguring,
        S::Connected,
        Event::PeerChanged
    )
    .actions
    .is_empty());
}

// ---- properties ----

const STATES: [S; 9] = [
    S::Unknown,
    S::Initialising,
    S::InitWait,
    S::Initialised,
    S::Connected,
    S::Closing,
    S::Closed,
    S::Reconfiguring,
    S::Reconfigured,
];
const EVENTS: [Event; 9] = [
    Event::Start,
    Event::PeerChanged,
    Event::PeerStateInvalid,
    Event::PeerVanished,
    Event::Close,
    Event::Failed,
    Event::Reconfigure,
    Event::Resume,
    Event::Removed,
];

/// The glue's resources, as the actions say they should be.
#[derive(Default, Debug)]
struct Resources {
    rings: bool,
    connected: bool,
}

/// Checks one transition against the resource model; returns a description of a violation.
fn check(
    role: Role,
    ours: S,
    peer: S,
    event: Event,
    t: &Transition,
    res: &mut Resources,
) -> Result<(), String> {
    let switches: Vec<S> = t
        .actions
        .as_slice()
        .iter()
        .filter_map(|a| {
            if let A::SwitchState(s) = a {
                Some(*s)
            } else {
                None
            }
        })
        .collect();
    if switches.len() > 1 {
        return Err(format!("several switches {switches:?}"));
    }
    if t.state != switches.first().copied().unwrap_or(ours) {
        return Err("state differs from the switch".into());
    }
    if t.state == S::Unknown && ours != S::Unknown {
        return Err("switched to Unknown".into());
    }
    let peer_down = matches!(peer, S::Closing | S::Closed | S::Unknown);
    for a in t.actions.as_slice() {
        match (role, a) {
            (Role::Frontend, A::PublishRingRefs) | (Role::Backend, A::MapRing) => {
                if res.rings {
                    return Err(format!("{a:?} while rings are live"));
                }
                res.rings = true;
            }
            (_, A::Connect) => {
                if !res.rings || res.connected {
                    return Err(format!("Connect with {res:?}"));
                }
                res.connected = true;
            }
            (Role::Frontend, A::Disconnect) => {
                if res.rings
                    && !(peer_down
                        || matches!(event, Event::PeerVanished | Event::Resume | Event::Removed))
                {
                    return Err(format!(
                        "frontend revoked grants while backend {peer:?} may map them"
                    ));
                }
                *res = Resources::default();
            }
            (Role::Backend, A::Disconnect) => *res = Resources::default(),
            (Role::Frontend, A::Quiesce) => {}
            (Role::Backend, A::SwitchState(S::Closing | S::Closed)) if res.rings => {
                return Err("backend announced closing with rings mapped".into());
            }
            (_, A::SwitchState(_) | A::Reconfigure | A::ReportInvalidPeerState) => {}
            (Role::Frontend, A::ReadPeerFeatures | A::ReadDeviceProperties) => {}
            (Role::Backend, A::PublishFeatures | A::PublishDeviceProperties) => {}
            (r, a) => return Err(format!("{a:?} is not a {r:?} action")),
        }
    }
    if t.state == S::Closed && (res.rings || res.connected) {
        return Err("Closed with live resources".into());
    }
    if t.state == S::Connected && !res.connected {
        return Err("Connected without a connection".into());
    }
    if event == Event::PeerChanged && ours == S::Closing {
        let must_close = peer == S::Closed || (role == Role::Frontend && peer == S::Closing);
        if must_close && t.state != S::Closed {
            return Err("Closing did not reach Closed".into());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any sequence of peer states and events: no panic, resources never leak or double up,
    /// Closing ends in Closed.
    #[test]
    fn single_role_invariants(
        frontend in any::<bool>(),
        steps in proptest::collection::vec((0usize..9, 0usize..9), 1..64),
    ) {
        let role = if frontend { Role::Frontend } else { Role::Backend };
        let mut ours = S::Initialising;
        let mut res = Resources::default();
        for (p, e) in steps {
            let (peer, event) = (STATES[p], EVENTS[e]);
            let t = step(role, ours, peer, event);
            if let Err(msg) = check(role, ours, peer, event, &t, &mut res) {
                return Err(TestCaseError::fail(format!("{role:?} {ours:?} peer {peer:?} {event:?} -> {t:?}: {msg}")));
            }
            ours = t.state;
        }
    }

    /// A frontend and a backend driven by randomly ordered (and duplicated) watch
    /// notifications always connect, close and reconnect.
    #[test]
    fn pair_converges(choices in proptest::collection::vec(0u8..6, 0..400)) {
        let mut sim = Pair::new();
        let mut it = choices.into_iter();
        // Handshake.
        sim.run(&mut it, &[(true, Event::Start), (false, Event::Start)])?;
        prop_assert_eq!((sim.front.state(), sim.back.state()), (S::Connected, S::Connected));
        // Close from a random side.
        let front_closes = it.next().unwrap_or(0) % 2 == 0;
        sim.run(&mut it, &[(front_closes, Event::Close)])?;
        prop_assert_eq!((sim.front.state(), sim.back.state()), (S::Closed, S::Closed));
        prop_assert!(!sim.front_res.rings && !sim.back_res.rings);
        // The frontend is re-probed: everything comes back.
        sim.run(&mut it, &[(true, Event::Start)])?;
        prop_assert_eq!((sim.front.state(), sim.back.state()), (S::Connected, S::Connected));
    }
}

/// Two machines and the notifications in flight between them.
struct Pair {
    front: Machine,
    back: Machine,
    front_res: Resources,
    back_res: Resources,
    to_front: bool,
    to_back: bool,
}

impl Pair {
    fn new() -> Self {
        Self {
            front: Machine::new(Role::Frontend),
            back: Machine::new(Role::Backend),
            front_res: Resources::default(),
            back_res: Resources::default(),
            to_front: false,
            to_back: false,
        }
    }

    fn apply(&mut self, front: bool, event: Option<Event>) -> Result<(), TestCaseError> {
        let (me, other_state) = if front {
            (self.front, self.back.state())
        } else {
            (self.back, self.front.state())
        };
        let before = me.state();
        let mut m = me;
        let actions = match event {
            Some(e) => m.on_event(e),
            None => m.on_peer_state(Some(xen_core::xenbus::state_text(other_state).as_bytes())),
        };
        let t = Transition {
            state: m.state(),
            actions,
        };
        let res = if front {
            &mut self.front_res
        } else {
            &mut self.back_res
        };
        check(
            m.role(),
            before,
            m.peer(),
            event.unwrap_or(Event::PeerChanged),
            &t,
            res,
        )
        .map_err(|e| TestCaseError::fail(format!("{:?} {before:?} {event:?}: {e}", m.role())))?;
        if t.actions
            .as_slice()
            .iter()
            .any(|a| matches!(a, A::SwitchState(_)))
        {
            if front {
                self.to_back = true;
            } else {
                self.to_front = true;
            }
        }
        if front {
            self.front = m;
        } else {
            self.back = m;
        }
        Ok(())
    }

    /// Runs local `events` (in an order the choices pick) and notifications until quiet.
    fn run(
        &mut self,
        choices: &mut impl Iterator<Item = u8>,
        events: &[(bool, Event)],
    ) -> Result<(), TestCaseError> {
        let mut todo: Vec<(bool, Event)> = events.to_vec();
        for _ in 0..10_000 {
            if todo.is_empty() && !self.to_front && !self.to_back {
                return Ok(());
            }
            match choices.next().unwrap_or(0) {
                0 | 1 if self.to_front => {
                    self.to_front = false;
                    self.apply(true, None)?;
                }
                2 | 3 if self.to_back => {
                    self.to_back = false;
                    self.apply(false, None)?;
                }
                // A spurious watch firing on either side.
                4 => self.apply(true, None)?,
                5 => self.apply(false, None)?,
                _ => {
                    if let Some((front, e)) = todo.pop() {
                        self.apply(front, Some(e))?;
                    } else if self.to_front {
                        self.to_front = false;
                        self.apply(true, None)?;
                    } else if self.to_back {
                        self.to_back = false;
                        self.apply(false, None)?;
                    }
                }
            }
        }
        Err(TestCaseError::fail("did not settle"))
    }
}
