//! The simulator's own rules: grant access checks, event delivery, xenstored semantics.

use std::time::Duration;
use xen_core::xs::{Client, Errno, Error, Path, TxId, WatchEvent};
use xen_sim::{CopyOp, CopyPtr, GrantError, MapOp, Sim};
use xen_sys::DomId;

const D0: DomId = DomId::DOM0;
const D1: DomId = DomId::new(1);
const D2: DomId = DomId::new(2);

fn p(s: &str) -> Path<'_> {
    Path::new(s).unwrap()
}

#[test]
fn only_the_granted_domain_may_map() {
    let sim = Sim::new();
    let (d1, d2) = (sim.create_domain(1), sim.create_domain(2));
    let page = d1.alloc_pages(1);
    let gref = d1.grant_access(D0, page.frame(0).unwrap(), false).unwrap();
    let op = MapOp {
        granter: D1,
        gref,
        writable: true,
    };
    let stranger = d2.map_grants(&[op]);
    assert_eq!(
        stranger[0].as_ref().unwrap_err(),
        &GrantError::PermissionDenied
    );
    let mapped = sim.domain(0).map_grants(&[op]).pop().unwrap().unwrap();
    assert_eq!(sim.grant_stats().live_maps, 1);
    page.write(10, b"hello");
    let mut buf = [0u8; 5];
    assert!(mapped.read(10, &mut buf));
    assert_eq!(&buf, b"hello");
    drop(mapped);
    assert_eq!(sim.grant_stats().live_maps, 0);
    d1.end_access(gref).unwrap();
    assert_eq!(sim.grant_stats().live_grants, 0);
}

#[test]
fn read_only_grant_cannot_be_mapped_writable_or_copied_into() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let d0 = sim.domain(0);
    let page = d1.alloc_pages(1);
    let gref = d1.grant_access(D0, page.frame(0).unwrap(), true).unwrap();
    let rw = MapOp {
        granter: D1,
        gref,
        writable: true,
    };
    assert_eq!(
        d0.map_grants(&[rw])[0].as_ref().unwrap_err(),
        &GrantError::ReadOnly
    );
    let ro = d0
        .map_grants(&[MapOp {
            writable: false,
            ..rw
        }])
        .pop()
        .unwrap()
        .unwrap();
    assert!(!ro.write(0, b"x"), "a read-only mapping refuses writes");
    let local = d0.alloc_pages(1);
    let into_ro = CopyOp {
        src: CopyPtr::Local {
            frame: local.frame(0).unwrap(),
            offset: 0,
        },
        dst: CopyPtr::Gref {
            granter: D1,
            gref,
            offset: 0,
        },
        len: 16,
    };
    let out_of_ro = CopyOp {
        src: into_ro.dst,
        dst: into_ro.src,
        len: 16,
    };
    let too_long = CopyOp {
        len: 4096,
        src: CopyPtr::Gref {
            granter: D1,
            gref,
            offset: 1,
        },
        ..out_of_ro
    };
    let results = d0.copy(&[into_ro, out_of_ro, too_long]);
    assert_eq!(
        results,
        vec![Err(GrantError::ReadOnly), Ok(()), Err(GrantError::BadRange)]
    );
    drop(ro);
    d1.end_access(gref).unwrap();
}

#[test]
fn mapped_grant_cannot_be_revoked() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let page = d1.alloc_pages(1);
    let gref = d1.grant_access(D0, page.frame(0).unwrap(), false).unwrap();
    let m = sim
        .domain(0)
        .map_grants(&[MapOp {
            granter: D1,
            gref,
            writable: true,
        }])
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(d1.end_access(gref), Err(GrantError::StillMapped));
    assert_eq!(sim.grant_stats().end_access_busy, 1);
    drop(m);
    assert_eq!(d1.end_access(gref), Ok(()));
    drop(page);
    let stats = sim.grant_stats();
    assert_eq!(
        (stats.freed_while_granted, stats.freed_while_mapped),
        (0, 0)
    );
}

#[test]
fn freeing_a_granted_page_is_counted() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let page = d1.alloc_pages(1);
    let _gref = d1.grant_access(D0, page.frame(0).unwrap(), false).unwrap();
    drop(page);
    assert_eq!(sim.grant_stats().freed_while_granted, 1);
}

#[test]
fn ring_mapping_needs_contiguous_frames() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let ring = d1.alloc_pages(4);
    let grefs: Vec<_> = (0..4)
        .map(|i| d1.grant_access(D0, ring.frame(i).unwrap(), false).unwrap())
        .collect();
    let m = sim.domain(0).map_ring(D1, &grefs).unwrap();
    assert_eq!(m.pages(), 4);
    ring.write(3 * 4096 + 7, b"z");
    let mut b = [0u8];
    assert!(m.read(3 * 4096 + 7, &mut b));
    assert_eq!(&b, b"z");
    drop(m);
    let shuffled = [grefs[1], grefs[0]];
    assert_eq!(
        sim.domain(0).map_ring(D1, &shuffled).unwrap_err(),
        GrantError::NotContiguous
    );
    assert_eq!(
        sim.grant_stats().live_maps,
        0,
        "a failed ring map takes nothing"
    );
}

#[test]
fn notify_wakes_the_waiting_domain() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let d0 = sim.domain(0);
    let unbound = d1.alloc_unbound(D0).unwrap();
    let back = d0.bind_interdomain(D1, unbound).unwrap();
    let waiter = std::thread::spawn(move || d1.wait(&[unbound], Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(20));
    d0.notify(back).unwrap();
    assert_eq!(waiter.join().unwrap(), Some(unbound));
    let d1 = sim.domain(1);
    assert_eq!(d1.close_port(unbound), Ok(()));
    assert!(
        d0.notify(back).is_err(),
        "the remote end reverted to unbound"
    );
}

#[test]
fn masked_port_keeps_event_pending() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let d0 = sim.domain(0);
    let unbound = d1.alloc_unbound(D0).unwrap();
    let back = d0.bind_interdomain(D1, unbound).unwrap();
    d1.mask(unbound).unwrap();
    d0.notify(back).unwrap();
    assert_eq!(d1.wait(&[unbound], Duration::from_millis(10)), None);
    d1.unmask(unbound).unwrap();
    assert_eq!(
        d1.wait(&[unbound], Duration::from_millis(10)),
        Some(unbound)
    );
}

#[test]
fn domain_writes_only_its_own_home() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    sim.create_domain(2);
    let mut xs = Client::<_>::new(d1.xenstore());
    xs.write(TxId::NONE, p("/local/domain/1/data/x"), b"1")
        .unwrap();
    xs.write(TxId::NONE, p("data/y"), b"2").unwrap();
    let denied = Err(Error::Daemon(Errno::Eacces));
    assert_eq!(
        xs.write(TxId::NONE, p("/local/domain/2/data"), b"1"),
        denied
    );
    assert_eq!(xs.write(TxId::NONE, p("/tool/x"), b"1"), denied);
    let mut buf = [0u8; 16];
    assert_eq!(
        xs.read(TxId::NONE, p("/local/domain/2"), &mut buf),
        Err(Error::Daemon(Errno::Eacces))
    );
    assert_eq!(sim.xs_read("/local/domain/1/data/y").unwrap(), b"2");
}

#[test]
fn conflicting_transaction_fails_with_eagain() {
    let sim = Sim::new();
    sim.create_domain(1);
    let mut a = Client::<_>::new(sim.domain(0).xenstore());
    let mut b = Client::<_>::new(sim.domain(0).xenstore());
    a.write(TxId::NONE, p("/t/x"), b"0").unwrap();
    let tx = a.transaction_start().unwrap();
    let mut buf = [0u8; 8];
    a.read(tx, p("/t/x"), &mut buf).unwrap();
    a.write(tx, p("/t/y"), b"from-a").unwrap();
    b.write(TxId::NONE, p("/t/x"), b"1").unwrap();
    assert_eq!(
        a.transaction_end(tx, true),
        Err(Error::Daemon(Errno::Eagain))
    );
    assert!(
        sim.xs_read("/t/y").is_none(),
        "a failed commit changes nothing"
    );
    // Without interference the same transaction commits, creating nodes on the way.
    let tx = a.transaction_start().unwrap();
    a.read(tx, p("/t/x"), &mut buf).unwrap();
    a.write(tx, p("/t/new/deep"), b"v").unwrap();
    a.write(tx, p("/t/new/deeper"), b"w").unwrap();
    a.transaction_end(tx, true).unwrap();
    assert_eq!(sim.xs_read("/t/new/deeper").unwrap(), b"w");
}

#[test]
fn watch_fires_on_register_and_on_writes_below() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let mut xs = Client::<_>::new(d1.xenstore());
    let w = xs.watch(p("/local/domain/1/device")).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        xs.poll_watch(w, &mut buf).unwrap(),
        Some(WatchEvent::Changed { len: 22 })
    );
    assert_eq!(xs.poll_watch(w, &mut buf).unwrap(), None);
    sim.xs_write("/local/domain/1/device/echo/0/state", b"1")
        .unwrap();
    let Some(WatchEvent::Changed { len }) = xs.poll_watch(w, &mut buf).unwrap() else {
        panic!("no event for a write below the watch");
    };
    assert_eq!(&buf[..len], b"/local/domain/1/device/echo/0/state");
    sim.xs_write("/local/domain/1/other", b"1").unwrap();
    assert_eq!(xs.poll_watch(w, &mut buf).unwrap(), None);
}

#[test]
fn xenstore_over_the_ring_page() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let mut xs = Client::<_>::new(d1.xenstore_ring());
    // Values large enough to wrap the 1 KiB ring buffers several times.
    let value = vec![b'v'; 1500];
    for i in 0..20 {
        let path = format!("/local/domain/1/data/k{i}");
        xs.write(TxId::NONE, p(&path), &value).unwrap();
        let mut buf = [0u8; 2048];
        let n = xs.read(TxId::NONE, p(&path), &mut buf).unwrap();
        assert_eq!(&buf[..n], &value[..]);
    }
    let w = xs.watch(p("data")).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        xs.poll_watch(w, &mut buf).unwrap(),
        Some(WatchEvent::Changed { len: 4 })
    );
    assert_eq!(&buf[..4], b"data", "a relative watch gets relative paths");
    sim.xs_write("/local/domain/1/data/k0", b"x").unwrap();
    // The event crosses the ring asynchronously; wait for it on the XenStore port.
    let port = xs.transport_mut().port();
    let mut got = None;
    for _ in 0..100 {
        if let Some(ev) = xs.poll_watch(w, &mut buf).unwrap() {
            got = Some(ev);
            break;
        }
        d1.wait(&[port], Duration::from_millis(50));
    }
    let Some(WatchEvent::Changed { len }) = got else {
        panic!("no watch event over the ring");
    };
    assert_eq!(&buf[..len], b"data/k0");
}

#[test]
fn directory_and_perms_round_trip() {
    let sim = Sim::new();
    let d1 = sim.create_domain(1);
    let mut xs = Client::<_>::new(d1.xenstore());
    xs.write(TxId::NONE, p("data/a"), b"").unwrap();
    xs.write(TxId::NONE, p("data/b"), b"").unwrap();
    let mut buf = [0u8; 64];
    let names: Vec<&[u8]> = xs
        .directory(TxId::NONE, p("data"), &mut buf)
        .unwrap()
        .collect();
    assert_eq!(names, vec![&b"a"[..], &b"b"[..]]);
    let mut buf = [0u8; 64];
    let perms: Vec<_> = xs
        .get_perms(TxId::NONE, p("data/a"), &mut buf)
        .unwrap()
        .iter()
        .collect();
    assert_eq!(
        perms[0].domid, D1,
        "a node is owned by the domain that created it"
    );
    let _ = D2;
}

#[test]
fn memory_reservation_stops_at_a_frame_given_back_twice() {
    use xen_core::hypercall::{Hypercalls, Pfn};
    use xen_sys::Gfn;
    let sim = Sim::new();
    let mut d1 = sim.create_domain(1);
    d1.set_memory(100, 110);
    let frames = [Gfn::new(5), Gfn::new(6), Gfn::new(5), Gfn::new(7)];
    assert_eq!(d1.decrease_reservation(&frames), Ok(2));
    assert_eq!(d1.current_reservation(), Ok(98));
    let pfns: Vec<Pfn> = (0..20).map(Pfn::new).collect();
    assert_eq!(d1.populate_physmap(&pfns), Ok(12), "stops at the maximum");
    assert_eq!(d1.maximum_reservation(), Ok(110));
    let mut fresh = [Gfn::new(0); 4];
    assert_eq!(d1.increase_reservation(&mut fresh), Ok(0));
    assert!(d1.populate_physmap(&pfns).is_err());
}
