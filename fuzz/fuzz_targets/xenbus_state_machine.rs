//! Fuzzes the XenBus state machine: arbitrary peer `state` strings and local events for a
//! frontend and a backend, then a pair of machines driven by arbitrary notification orders.
//!
//! Checked on every run: no panic; at most one state switch per transition, never to Unknown,
//! and the reported state is the switched one; rings are granted or mapped only when none are
//! live, Connect only with live rings and not twice; a frontend never revokes grants while
//! the backend may still map them (XSA-396); a backend never announces Closing/Closed with
//! rings mapped; Closed means no live resources; a side that is Closing and sees its peer
//! Closed (frontend: or Closing) reaches Closed; garbage states change nothing; and a pair of
//! machines always settles (no endless ping-pong) once notifications are delivered fairly.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use xen_core::xenbus::{parse_state, state_text, Action as A, Event, Machine, Role, Transition, XenbusState as S};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Ev {
    Start,
    Close,
    Failed,
    Reconfigure,
    Resume,
    Removed,
}

impl Ev {
    fn event(self) -> Event {
        match self {
            Ev::Start => Event::Start,
            Ev::Close => Event::Close,
            Ev::Failed => Event::Failed,
            Ev::Reconfigure => Event::Reconfigure,
            Ev::Resume => Event::Resume,
            Ev::Removed => Event::Removed,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The peer's state node holds these bytes.
    PeerWrote(Vec<u8>),
    /// The peer's state node holds this state (common case, so it gets its own variant).
    PeerState(u8),
    PeerVanished,
    Local(Ev),
}

#[derive(Arbitrary, Debug)]
enum PairOp {
    NotifyFront,
    NotifyBack,
    Local { front: bool, ev: Ev },
}

#[derive(Arbitrary, Debug)]
struct Input {
    single: Vec<Op>,
    pair: Vec<PairOp>,
}

#[derive(Default, Debug)]
struct Resources {
    rings: bool,
    connected: bool,
}

fn check(role: Role, ours: S, peer: S, event: Event, t: &Transition, res: &mut Resources) {
    let switches: Vec<S> =
        t.actions.as_slice().iter().filter_map(|a| if let A::SwitchState(s) = a { Some(*s) } else { None }).collect();
    assert!(switches.len() <= 1, "several switches: {t:?}");
    assert_eq!(t.state, switches.first().copied().unwrap_or(ours));
    assert!(!(t.state == S::Unknown && ours != S::Unknown), "switched to Unknown");
    let peer_down = matches!(peer, S::Closing | S::Closed | S::Unknown);
    for a in t.actions.as_slice() {
        match (role, a) {
            (Role::Frontend, A::PublishRingRefs) | (Role::Backend, A::MapRing) => {
                assert!(!res.rings, "{a:?} while rings are live");
                res.rings = true;
            }
            (_, A::Connect) => {
                assert!(res.rings && !res.connected, "Connect with {res:?}");
                res.connected = true;
            }
            (Role::Frontend, A::Disconnect) => {
                assert!(
                    !res.rings || peer_down || matches!(event, Event::PeerVanished | Event::Resume | Event::Removed),
                    "frontend revoked grants while the backend ({peer:?}) may map them"
                );
                *res = Resources::default();
            }
            (Role::Backend, A::Disconnect) => *res = Resources::default(),
            (Role::Backend, A::SwitchState(S::Closing | S::Closed)) => {
                assert!(!res.rings, "backend announced closing with rings mapped");
            }
            (_, A::SwitchState(_) | A::Reconfigure | A::ReportInvalidPeerState) => {}
            (Role::Frontend, A::ReadPeerFeatures | A::ReadDeviceProperties | A::Quiesce) => {}
            (Role::Backend, A::PublishFeatures | A::PublishDeviceProperties) => {}
            (r, a) => panic!("{a:?} is not a {r:?} action"),
        }
    }
    if t.state == S::Closed {
        assert!(!res.rings && !res.connected, "Closed with live resources");
    }
    if t.state == S::Connected {
        assert!(res.connected, "Connected without a connection");
    }
    if event == Event::PeerChanged && ours == S::Closing {
        if peer == S::Closed || (role == Role::Frontend && peer == S::Closing) {
            assert_eq!(t.state, S::Closed, "Closing did not reach Closed");
        }
    }
    if event == Event::PeerStateInvalid {
        assert_eq!(t.state, ours);
        assert_eq!(t.actions.as_slice(), [A::ReportInvalidPeerState]);
    }
}

/// Applies one input to a machine and checks the transition.
fn drive(m: &mut Machine, res: &mut Resources, input: Result<Option<&[u8]>, Event>) {
    let before = m.state();
    let (actions, event) = match input {
        Ok(value) => {
            let event = match value {
                None => Event::PeerVanished,
                Some(v) if parse_state(v).is_ok() => Event::PeerChanged,
                Some(_) => Event::PeerStateInvalid,
            };
            (m.on_peer_state(value), event)
        }
        Err(event) => (m.on_event(event), event),
    };
    check(m.role(), before, m.peer(), event, &Transition { state: m.state(), actions }, res);
}

fuzz_target!(|input: Input| {
    if input.single.len() > 256 || input.pair.len() > 1024 {
        return;
    }
    // Each role alone against an arbitrary peer (the frontend in both flavours: waiting for the
    // backend's Connected, and connecting first as netif does).
    for fresh in [Machine::new(Role::Frontend), Machine::new_connecting_first(), Machine::new(Role::Backend)] {
        let mut m = fresh;
        let mut res = Resources::default();
        for op in &input.single {
            let digit;
            let inp: Result<Option<&[u8]>, Event> = match op {
                Op::PeerWrote(bytes) => Ok(Some(bytes.as_slice())),
                Op::PeerState(s) => {
                    digit = [b'0' + s % 10];
                    Ok(Some(&digit[..]))
                }
                Op::PeerVanished => Ok(None),
                Op::Local(ev) => Err(ev.event()),
            };
            drive(&mut m, &mut res, inp);
        }
    }

    // A pair: notifications are delivered in the fuzzer's order (possibly late, repeated, or
    // never, standing for coalesced watch firings).
    for fresh_front in [Machine::new(Role::Frontend), Machine::new_connecting_first()] {
        let mut front = fresh_front;
        let mut back = Machine::new(Role::Backend);
        let (mut fres, mut bres) = (Resources::default(), Resources::default());
        let notify = |m: &mut Machine, res: &mut Resources, other: S| {
            drive(m, res, Ok(Some(state_text(other).as_bytes())));
        };
        for op in &input.pair {
            match *op {
                PairOp::NotifyFront => notify(&mut front, &mut fres, back.state()),
                PairOp::NotifyBack => notify(&mut back, &mut bres, front.state()),
                PairOp::Local { front: true, ev } => drive(&mut front, &mut fres, Err(ev.event())),
                PairOp::Local { front: false, ev } => drive(&mut back, &mut bres, Err(ev.event())),
            }
        }
        // Fair delivery from here on: both sides must settle.
        let mut settled = false;
        for _ in 0..64 {
            let (f0, b0) = (front.state(), back.state());
            notify(&mut front, &mut fres, back.state());
            notify(&mut back, &mut bres, front.state());
            if (front.state(), back.state()) == (f0, b0) {
                settled = true;
                break;
            }
        }
        assert!(settled, "the pair never settled: front {:?} back {:?}", front.state(), back.state());
    }
});
