//! The XenBus paths the block drivers share, through [`Machine::drive`]: what the glue is asked
//! to do for skipped, out-of-order and stale peer states, failures, resume, readiness and
//! removal. Each test is one sequence a kernel module meets; the glue only performs what these
//! lists say.

use xen_core::xenbus::{Action as A, Event, Input, Machine, Perform, Role, XenbusState as S};

/// A glue that records what it is asked to do and fails the actions it is told to.
#[derive(Default)]
struct Glue {
    done: Vec<A>,
    fail: Vec<A>,
    /// `(action, gave_up)` for each reported failure, in order, with the number of actions
    /// performed before the report.
    failures: Vec<(A, bool, usize)>,
}

impl Perform for Glue {
    type Error = &'static str;

    fn perform(&mut self, action: A) -> Result<(), &'static str> {
        self.done.push(action);
        if let Some(i) = self.fail.iter().position(|a| *a == action) {
            self.fail.remove(i);
            return Err("injected");
        }
        Ok(())
    }

    fn failed(&mut self, action: A, _error: &'static str, gave_up: bool) {
        self.failures.push((action, gave_up, self.done.len()));
    }
}

impl Glue {
    fn take(&mut self) -> Vec<A> {
        core::mem::take(&mut self.done)
    }
}

fn front() -> (Machine, Glue) {
    (Machine::new(Role::Frontend), Glue::default())
}

/// A frontend connected to a backend, its glue's log emptied.
fn connected_front() -> (Machine, Glue) {
    let (mut m, mut g) = front();
    assert!(m.drive(Input::Event(Event::Start), &mut g));
    assert!(m.drive(Input::Peer(S::InitWait), &mut g));
    assert!(m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(m.state(), S::Connected);
    g.take();
    (m, g)
}

const SETUP: [A; 3] = [
    A::ReadPeerFeatures,
    A::PublishRingRefs,
    A::SwitchState(S::Initialised),
];
const CONNECT: [A; 3] = [
    A::ReadDeviceProperties,
    A::Connect,
    A::SwitchState(S::Connected),
];

#[test]
fn frontend_handshake_performs_setup_then_connect() {
    let (mut m, mut g) = front();
    assert!(m.drive(Input::Event(Event::Start), &mut g));
    assert_eq!(g.take(), []);
    assert!(m.drive(Input::Peer(S::InitWait), &mut g));
    assert_eq!(g.take(), SETUP);
    assert!(m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(g.take(), CONNECT);
}

/// The stuck case of the block drivers' old hand-written handling: a backend first seen in
/// Connected (its InitWait and our own Initialised were never observed) left the idle
/// frontend waiting for an InitWait that had gone by.
#[test]
fn idle_frontend_seeing_backend_already_connected_sets_up_and_connects() {
    let (mut m, mut g) = front();
    assert!(m.drive(Input::Event(Event::Start), &mut g));
    assert!(m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(
        g.take(),
        [
            A::ReadPeerFeatures,
            A::PublishRingRefs,
            A::ReadDeviceProperties,
            A::Connect,
            A::SwitchState(S::Connected)
        ]
    );
    assert_eq!(m.state(), S::Connected);
}

#[test]
fn frontend_seeing_backend_initialised_instead_of_initwait_sets_up() {
    let (mut m, mut g) = front();
    assert!(m.drive(Input::Peer(S::Initialised), &mut g));
    assert_eq!(g.take(), SETUP);
}

#[test]
fn stale_or_repeated_backend_states_change_nothing() {
    let (mut m, mut g) = connected_front();
    // A watch delivered late, after the backend had moved on.
    for stale in [S::Initialising, S::InitWait, S::Initialised] {
        assert!(m.drive(Input::Peer(stale), &mut g));
        assert_eq!(g.take(), [], "{stale:?}");
        assert_eq!(m.state(), S::Connected);
    }
    // Before Connected, a repeated InitWait does not publish twice.
    let (mut m, mut g) = front();
    m.drive(Input::Peer(S::InitWait), &mut g);
    g.take();
    m.drive(Input::Peer(S::InitWait), &mut g);
    assert_eq!(g.take(), []);
}

/// Connected again while connected is how a backend announces a new size.
#[test]
fn repeated_connected_rereads_properties_only() {
    let (mut m, mut g) = connected_front();
    assert!(m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(g.take(), [A::ReadDeviceProperties]);
    assert_eq!(m.state(), S::Connected);
}

/// The block review's defect: a resize whose properties could not be read closed a working
/// disk. A failed re-read is reported and the connection stays.
#[test]
fn failed_resize_read_keeps_the_connection() {
    let (mut m, mut g) = connected_front();
    g.fail.push(A::ReadDeviceProperties);
    assert!(!m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(g.take(), [A::ReadDeviceProperties]);
    assert_eq!(g.failures, [(A::ReadDeviceProperties, false, 1)]);
    assert_eq!(m.state(), S::Connected);
    // The next resize works.
    assert!(m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(g.take(), [A::ReadDeviceProperties]);
}

/// A failure while connecting gives the connection up; the report comes after the glue
/// stopped I/O and said Closing, so the report (`xenbus_dev_error`) finds nothing half set up.
#[test]
fn failed_connect_gives_up_and_reports_after_quiescing() {
    let (mut m, mut g) = front();
    m.drive(Input::Peer(S::InitWait), &mut g);
    g.take();
    g.fail.push(A::Connect);
    assert!(!m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(
        g.take(),
        [
            A::ReadDeviceProperties,
            A::Connect,
            A::Quiesce,
            A::SwitchState(S::Closing)
        ]
    );
    assert_eq!(g.failures, [(A::Connect, true, 4)]);
    assert_eq!(m.state(), S::Closing);
    // Grants are revoked only once the backend stops mapping them.
    assert!(m.drive(Input::Peer(S::Closing), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closed)]);
}

#[test]
fn failed_setup_with_backend_gone_closes_at_once() {
    let (mut m, mut g) = front();
    g.fail.push(A::ReadPeerFeatures);
    // The backend shows Closed by the time the failure is handled.
    assert!(!m.drive(Input::Peer(S::InitWait), &mut g));
    assert_eq!(g.failures.len(), 1);
    assert!(m.drive(Input::Peer(S::Closed), &mut g));
    assert_eq!(m.state(), S::Closed);
}

#[test]
fn backend_closing_disconnects_then_says_closed() {
    let (mut m, mut g) = connected_front();
    assert!(m.drive(Input::Peer(S::Closing), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closed)]);
    // The backend's own Closed afterwards changes nothing; a new InitWait reconnects.
    assert!(m.drive(Input::Peer(S::Closed), &mut g));
    assert_eq!(g.take(), []);
    assert!(m.drive(Input::Peer(S::InitWait), &mut g));
    assert_eq!(g.take(), SETUP);
}

#[test]
fn backend_vanishing_disconnects() {
    let (mut m, mut g) = connected_front();
    assert!(m.drive(Input::Peer(S::Unknown), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closed)]);
}

/// After a restore the old backend's Connected belongs to another host: it must not make
/// the frontend connect to rings nobody mapped.
#[test]
fn resume_forgets_the_old_backend_and_waits_for_the_new_one() {
    let (mut m, mut g) = connected_front();
    assert!(m.drive(Input::Resume, &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Initialising)]);
    assert_eq!(m.peer(), S::Unknown);
    assert!(m.drive(Input::Peer(S::InitWait), &mut g));
    assert_eq!(g.take(), SETUP);
    assert!(m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(g.take(), CONNECT);
}

#[test]
fn removed_frontend_closes_at_once_whatever_the_backend_shows() {
    for peer in [S::Unknown, S::InitWait, S::Connected, S::Closing] {
        let (mut m, mut g) = connected_front();
        m.drive(Input::Peer(peer), &mut g);
        g.take();
        assert!(m.drive(Input::Event(Event::Removed), &mut g));
        let done = g.take();
        assert!(
            done.is_empty() || done == [A::Disconnect, A::SwitchState(S::Closed)],
            "{peer:?}: {done:?}"
        );
        assert_eq!(m.state(), S::Closed, "{peer:?}");
    }
}

// ---- backend ----

fn back_waiting_for_disk() -> (Machine, Glue) {
    let mut m = Machine::new(Role::Backend);
    let mut g = Glue::default();
    assert!(m.drive(Input::Ready(false), &mut g));
    assert!(m.drive(Input::Event(Event::Start), &mut g));
    assert_eq!(g.take(), [A::PublishFeatures, A::SwitchState(S::InitWait)]);
    (m, g)
}

const BACK_CONNECT: [A; 4] = [
    A::MapRing,
    A::PublishDeviceProperties,
    A::Connect,
    A::SwitchState(S::Connected),
];

#[test]
fn backend_holds_the_frontends_rings_until_its_disk_is_open() {
    let (mut m, mut g) = back_waiting_for_disk();
    assert!(m.drive(Input::Peer(S::Initialised), &mut g));
    assert_eq!(g.take(), []);
    assert_eq!(m.state(), S::InitWait);
    assert!(m.drive(Input::Ready(true), &mut g));
    assert_eq!(g.take(), BACK_CONNECT);
}

#[test]
fn backend_disk_open_before_the_frontend_is_seen_does_not_close() {
    let (mut m, mut g) = back_waiting_for_disk();
    assert!(m.drive(Input::Ready(true), &mut g));
    assert_eq!(g.take(), []);
    assert_eq!(m.state(), S::InitWait);
    assert!(m.drive(Input::Peer(S::Initialising), &mut g));
    assert_eq!(g.take(), []);
    assert!(m.drive(Input::Peer(S::Initialised), &mut g));
    assert_eq!(g.take(), BACK_CONNECT);
}

/// A frontend seen directly in Connected (it skipped Initialised in our eyes) is served.
#[test]
fn backend_seeing_frontend_connected_maps_and_connects() {
    let mut m = Machine::new(Role::Backend);
    let mut g = Glue::default();
    m.drive(Input::Event(Event::Start), &mut g);
    g.take();
    assert!(m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(g.take(), BACK_CONNECT);
}

#[test]
fn backend_failed_map_releases_then_reports_and_says_closing() {
    let (mut m, mut g) = back_waiting_for_disk();
    m.drive(Input::Ready(true), &mut g);
    g.fail.push(A::MapRing);
    assert!(!m.drive(Input::Peer(S::Initialised), &mut g));
    assert_eq!(
        g.take(),
        [A::MapRing, A::Disconnect, A::SwitchState(S::Closing)]
    );
    assert_eq!(g.failures, [(A::MapRing, true, 3)]);
    // The frontend closes; a new frontend (re-probed) gets a new offer.
    assert!(m.drive(Input::Peer(S::Closed), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closed)]);
    assert!(m.drive(Input::Peer(S::Initialising), &mut g));
    assert_eq!(g.take(), [A::PublishFeatures, A::SwitchState(S::InitWait)]);
}

/// A hostile frontend broke the ring: the engine gave up, the machine closes the device.
#[test]
fn backend_broken_ring_disconnects_before_saying_closing() {
    let (mut m, mut g) = back_waiting_for_disk();
    m.drive(Input::Ready(true), &mut g);
    m.drive(Input::Peer(S::Connected), &mut g);
    g.take();
    assert!(m.drive(Input::Event(Event::Failed), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closing)]);
}

#[test]
fn backend_frontend_closing_unmaps_first() {
    let (mut m, mut g) = back_waiting_for_disk();
    m.drive(Input::Ready(true), &mut g);
    m.drive(Input::Peer(S::Initialised), &mut g);
    g.take();
    assert!(m.drive(Input::Peer(S::Closing), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closing)]);
    assert!(m.drive(Input::Peer(S::Closed), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closed)]);
}

#[test]
fn removed_backend_disconnects_and_closes() {
    let (mut m, mut g) = back_waiting_for_disk();
    m.drive(Input::Ready(true), &mut g);
    m.drive(Input::Peer(S::Initialised), &mut g);
    g.take();
    assert!(m.drive(Input::Event(Event::Removed), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closed)]);
}

#[test]
fn garbage_peer_state_is_reported_and_changes_nothing() {
    let (mut m, mut g) = connected_front();
    assert!(m.drive(Input::PeerRead(Some(b"4x")), &mut g));
    assert_eq!(g.take(), [A::ReportInvalidPeerState]);
    assert_eq!((m.state(), m.peer()), (S::Connected, S::Connected));
}

/// blkback-detach caught this: a backend whose disk failed to open before it had read the
/// frontend's state went straight to Closed, as if the frontend were gone. The toolstack then
/// wrote Closing itself to detach the device and waited for a Closed that never came again.
#[test]
fn backend_failing_before_the_frontend_is_seen_says_closing_then_closes() {
    let (mut m, mut g) = back_waiting_for_disk();
    assert!(m.drive(Input::Event(Event::Failed), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closing)]);
    assert_eq!(m.state(), S::Closing);
    // The toolstack removes the frontend: now the peer is really gone.
    assert!(m.drive(Input::PeerRead(None), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closed)]);
}

#[test]
fn frontend_resumed_failing_before_the_new_backend_is_seen_closes_cleanly() {
    let (mut m, mut g) = connected_front();
    m.drive(Input::Resume, &mut g);
    g.take();
    // Nothing was published for the new backend yet: closing at once is safe.
    assert!(m.drive(Input::Event(Event::Failed), &mut g));
    assert_eq!(m.state(), S::Closed);
}

// --- a frontend that connects first (netif) -------------------------------------------------

/// Linux's netback maps the rings only once it sees the frontend Connected: a netif frontend
/// sets up and connects on the backend's InitWait, and says Connected straight away.
#[test]
fn connecting_first_frontend_connects_on_initwait() {
    let mut m = Machine::new_connecting_first();
    let mut g = Glue::default();
    assert!(m.drive(Input::Event(Event::Start), &mut g));
    assert_eq!(g.take(), []);
    assert!(m.drive(Input::Peer(S::InitWait), &mut g));
    assert_eq!(
        g.take(),
        [
            A::ReadPeerFeatures,
            A::PublishRingRefs,
            A::ReadDeviceProperties,
            A::Connect,
            A::SwitchState(S::Connected)
        ]
    );
    assert_eq!(m.state(), S::Connected);
    // The backend's own Connected then only re-reads the properties.
    assert!(m.drive(Input::Peer(S::Connected), &mut g));
    assert_eq!(g.take(), [A::ReadDeviceProperties]);
    // A backend closing takes the connection down as for any frontend.
    assert!(m.drive(Input::Peer(S::Closing), &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Closed)]);
}

/// After a restore the old backend is forgotten and the new one's InitWait connects again.
#[test]
fn connecting_first_frontend_reconnects_after_resume() {
    let mut m = Machine::new_connecting_first();
    let mut g = Glue::default();
    assert!(m.drive(Input::Event(Event::Start), &mut g));
    assert!(m.drive(Input::Peer(S::InitWait), &mut g));
    assert!(m.drive(Input::Peer(S::Connected), &mut g));
    g.take();
    assert!(m.drive(Input::Resume, &mut g));
    assert_eq!(g.take(), [A::Disconnect, A::SwitchState(S::Initialising)]);
    assert!(m.drive(Input::Peer(S::InitWait), &mut g));
    assert_eq!(m.state(), S::Connected);
    assert!(g.take().contains(&A::Connect));
}

/// A failed connect gives up as for any frontend (the release actions before the report).
#[test]
fn connecting_first_frontend_failed_setup_closes() {
    let mut m = Machine::new_connecting_first();
    let mut g = Glue {
        fail: vec![A::PublishRingRefs],
        ..Glue::default()
    };
    assert!(m.drive(Input::Event(Event::Start), &mut g));
    assert!(!m.drive(Input::Peer(S::InitWait), &mut g));
    assert_ne!(m.state(), S::Connected);
    assert_eq!(g.failures.len(), 1);
    assert!(g.failures[0].1);
}
