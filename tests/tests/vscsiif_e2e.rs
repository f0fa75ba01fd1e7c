//! The xen-vscsiif frontend against the xen-vscsiif backend through the simulated Xen, with
//! an in-memory SCSI target (`MemTarget`) answering INQUIRY, READ CAPACITY, REPORT LUNS,
//! READ and WRITE.

use xen_core::feature::vscsiif::Hctl;
use xen_core::platform::RingMemory;
use xen_sim::{Domain, Mapping, Pages, Sim};
use xen_sys::wire::vscsiif as wire;
use xen_sys::{DomId, Port};
use xen_vscsiif::back::MAX_SEGS;
use xen_vscsiif::{
    Answer, BackConfig, CommandSpec, Completion, Connection, DataSeg, Direction, FrontConfig, Kind,
    MemTarget, Outcome, ScsiBack, ScsiFront, Ticket, VAddr,
};

const D0: DomId = DomId::DOM0;
const LUN0: VAddr = VAddr {
    channel: 0,
    id: 0,
    lun: 0,
};
/// Pages per command the frontend handles (more than 26: descriptor pages).
const S: usize = 64;

type Front = ScsiFront<Domain, Pages, 16, S>;
type Back = ScsiBack<Domain, MemTarget, Mapping, Vec<DataSeg<Mapping>>>;
type Done = Vec<(Completion, Vec<u8>)>;

struct Rig {
    sim: Sim,
    front: Front,
    back: Back,
}

fn hctl(t: u32) -> Hctl {
    Hctl {
        host: 0,
        channel: 0,
        target: t,
        lun: 0,
    }
}

impl Rig {
    fn new(deferred: bool) -> Rig {
        Rig::on(Sim::new(), deferred)
    }

    fn on(sim: Sim, deferred: bool) -> Rig {
        let fe = sim.create_domain(1);
        let be = sim.domain(0);
        let ring = fe.alloc_ring(1).unwrap();
        let gref = fe.grant_ring_page(D0, &ring, 0).unwrap();
        let fport = fe.alloc_unbound(D0).unwrap();
        let bport: Port = be.bind_interdomain(fe.id(), fport).unwrap();
        let config = FrontConfig {
            max_segments: 64,
            ..FrontConfig::default()
        };
        let front = Front::new(fe.clone(), ring, D0, fport, config).unwrap();
        let mapped = RingMemory::map_ring(&be, fe.id(), &[gref]).unwrap();
        let mut target = MemTarget {
            deferred,
            ..MemTarget::default()
        };
        target.add_disk(0, 2048);
        let segs = (0..16 * MAX_SEGS).map(|_| DataSeg::EMPTY).collect();
        let mut back = Back::new(
            be,
            target,
            mapped,
            Connection {
                front: fe.id(),
                port: bport,
            },
            BackConfig::default(),
            segs,
        )
        .unwrap();
        back.luns_mut().insert(0, hctl(0), None).unwrap();
        assert!(back.luns_mut().activate(0, true));
        Rig { sim, front, back }
    }

    fn submit(&mut self, cdb: &[u8], dir: Direction, len: usize, data: &[u8]) -> Ticket {
        let spec = CommandSpec {
            addr: LUN0,
            cdb,
            direction: dir,
            length: len,
        };
        let t = self.front.submit_command(&spec, data).unwrap();
        self.front.push().unwrap();
        t
    }

    fn round(&mut self) -> Done {
        self.back.handle_event().unwrap();
        self.collect()
    }

    fn collect(&mut self) -> Done {
        let mut done = Vec::new();
        self.front
            .handle_event(|c, d| {
                let mut b = vec![0u8; d.len()];
                assert!(d.copy_to(&mut b));
                done.push((c, b));
            })
            .unwrap();
        done
    }

    fn one(&mut self, cdb: &[u8], dir: Direction, len: usize, data: &[u8]) -> (Outcome, Vec<u8>) {
        let t = self.submit(cdb, dir, len, data);
        let mut done = self.round();
        assert_eq!(done.len(), 1);
        let (c, b) = done.pop().unwrap();
        assert_eq!(c.ticket, t);
        match c.answer {
            Answer::Command(o) => (o, b),
            other => panic!("{other:?}"),
        }
    }
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn inquiry_read_capacity_and_report_luns() {
    let mut rig = Rig::new(false);
    let (o, b) = rig.one(&[0x12, 0, 0, 0, 36, 0], Direction::FromDevice, 36, &[]);
    assert_eq!((o.host, o.status, o.residual), (0, 0, 0));
    assert_eq!(&b[8..16], b"XENPVRS ");
    assert_eq!(&b[16..25], b"MEMTARGET");
    let (o, b) = rig.one(
        &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        Direction::FromDevice,
        8,
        &[],
    );
    assert_eq!(o.status, 0);
    assert_eq!(u32::from_be_bytes(b[..4].try_into().unwrap()), 2047);
    assert_eq!(u32::from_be_bytes(b[4..].try_into().unwrap()), 512);
    let mut rl = [0u8; 12];
    rl[0] = 0xa0;
    rl[9] = 64;
    let (o, b) = rig.one(&rl, Direction::FromDevice, 64, &[]);
    assert_eq!(o.residual, 64 - 16, "one LUN: 16 bytes of 64");
    assert_eq!(u32::from_be_bytes(b[..4].try_into().unwrap()), 8);
    // TEST UNIT READY: no data.
    let (o, b) = rig.one(&[0, 0, 0, 0, 0, 0], Direction::None, 0, &[]);
    assert_eq!((o.status, b.len()), (0, 0));
}

#[test]
fn whole_pattern_written_and_read_back_direct_and_indirect() {
    let mut rig = Rig::new(false);
    // 8 KiB direct, then 256 KiB (64 pages) through descriptor pages.
    for (lba, blocks) in [(0u32, 16u16), (100, 512)] {
        let len = usize::from(blocks) * 512;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + lba as usize) as u8).collect();
        let (o, _) = rig.one(&rw10(0x2a, lba, blocks), Direction::ToDevice, len, &data);
        assert_eq!((o.host, o.status, o.residual), (0, 0, 0));
        let (o, b) = rig.one(&rw10(0x28, lba, blocks), Direction::FromDevice, len, &[]);
        assert_eq!((o.status, o.residual), (0, 0));
        assert_eq!(b, data);
    }
    assert_eq!(rig.front.stats().indirect, 2);
    assert_eq!(rig.back.stats().indirect, 2);
    // Only the ring stays mapped and granted.
    assert_eq!(rig.sim.grant_stats().live_maps, 1);
    assert_eq!(rig.sim.live_grants(DomId::new(1)), 1);
}

#[test]
fn check_condition_carries_sense_data_up() {
    let mut rig = Rig::new(false);
    // Unknown operation code: ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
    let (o, _) = rig.one(&[0xc5, 0, 0, 0, 0, 0], Direction::None, 0, &[]);
    assert_eq!(o.status, 0x02);
    assert_eq!(o.sense_len, 18);
    assert_eq!((o.sense()[2] & 0xf, o.sense()[12]), (5, 0x20));
    // Past the end of the disk: LBA OUT OF RANGE.
    let (o, _) = rig.one(&rw10(0x28, 2047, 2), Direction::FromDevice, 1024, &[]);
    assert_eq!((o.status, o.sense()[12], o.residual), (0x02, 0x21, 1024));
}

#[test]
fn abort_and_lun_reset_are_answered() {
    let mut rig = Rig::new(true);
    let victim = rig.submit(&rw10(0x28, 0, 8), Direction::FromDevice, 4096, &[]);
    assert!(rig.round().is_empty(), "held by the target");
    let abort = rig.front.submit_abort(victim).unwrap();
    rig.front.push().unwrap();
    let done = rig.round();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0.ticket, abort);
    assert_eq!(done[0].0.kind, Kind::Abort(victim));
    assert_eq!(done[0].0.answer, Answer::Task { success: true });
    // The aborted command completes with the host byte ABORT.
    for (tag, o) in rig.back.target_mut().take_pending() {
        rig.back.complete(tag, o);
    }
    rig.back.resume().unwrap();
    let done = rig.collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0.ticket, victim);
    match done[0].0.answer {
        Answer::Command(o) => assert_eq!(o.host, wire::RSLT_HOST_ABORT),
        other => panic!("{other:?}"),
    }
    let reset = rig.front.submit_reset(LUN0).unwrap();
    rig.front.push().unwrap();
    let done = rig.round();
    assert_eq!(done[0].0.ticket, reset);
    assert_eq!(done[0].0.answer, Answer::Task { success: true });
    assert_eq!(rig.back.target().tasks, [("abort", 0), ("reset", 0)]);
    assert_eq!(rig.sim.grant_stats().live_maps, 1);
}

#[test]
fn outstanding_commands_are_reissued_after_restore() {
    let sim = Sim::new();
    let mut old = Rig::on(sim.clone(), true);
    let data: Vec<u8> = (0..8192).map(|i| (i % 253) as u8).collect();
    old.submit(&rw10(0x2a, 40, 16), Direction::ToDevice, 8192, &data);
    old.submit(&rw10(0x28, 0, 8), Direction::FromDevice, 4096, &[]);
    assert!(old.round().is_empty());
    // The old backend's target never answers (the domain was saved); drain the frontend.
    let mut again = Vec::new();
    old.front.drain(|r, d| {
        let mut b = vec![
            0u8;
            if r.direction == Direction::ToDevice {
                d.len()
            } else {
                0
            }
        ];
        assert!(d.copy_to(&mut b));
        again.push((r, b));
    });
    assert_eq!(again.len(), 2);
    assert!(old.front.is_failed());
    assert_eq!(old.front.outstanding(), 0);
    // The new connection serves them.
    let mut new = Rig::on(sim, false);
    for (r, b) in &again {
        new.front.submit_command(&r.spec(), b).unwrap();
    }
    new.front.push().unwrap();
    let done = new.round();
    assert_eq!(done.len(), 2);
    assert!(done
        .iter()
        .all(|(c, _)| matches!(c.answer, Answer::Command(o) if o.status == 0)));
    let disk = &new.back.target().disks[&0];
    assert_eq!(&disk[40 * 512..56 * 512], &data[..]);
}

#[test]
fn removed_lun_answers_no_connect() {
    let mut rig = Rig::new(false);
    rig.back.luns_mut().remove(0).unwrap();
    let (o, _) = rig.one(&[0, 0, 0, 0, 0, 0], Direction::None, 0, &[]);
    assert_eq!(o.host, wire::RSLT_HOST_NO_CONNECT);
    // Added again (hotplug): served.
    rig.back.luns_mut().insert(0, hctl(0), None).unwrap();
    rig.back.luns_mut().activate(0, true);
    let (o, _) = rig.one(&[0, 0, 0, 0, 0, 0], Direction::None, 0, &[]);
    assert_eq!(o.host, 0);
}

#[test]
fn orderly_close_finishes_commands_in_flight_and_turns_new_ones_away() {
    let mut rig = Rig::new(true);
    let data: Vec<u8> = (0..4096).map(|i| (i % 251) as u8).collect();
    let write = rig.submit(&rw10(0x2a, 8, 8), Direction::ToDevice, 4096, &data);
    let read = rig.submit(&rw10(0x28, 0, 8), Direction::FromDevice, 4096, &[]);
    assert!(rig.round().is_empty(), "both held by the target");
    assert_eq!(rig.back.in_flight(), 2);
    // Queued after the close began: answered at once, never submitted or mapped.
    let late = rig.submit(&rw10(0x28, 16, 8), Direction::FromDevice, 4096, &[]);
    let maps_before = rig.back.stats().maps;
    rig.back.close().unwrap();
    assert!(rig.back.is_closing());
    let done = rig.collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0.ticket, late);
    match done[0].0.answer {
        Answer::Command(o) => assert_eq!(o.host, wire::RSLT_HOST_NO_CONNECT),
        other => panic!("{other:?}"),
    }
    assert_eq!(rig.back.stats().maps, maps_before, "nothing mapped for it");
    assert_eq!(rig.back.stats().turned_away, 1);
    assert_eq!(
        rig.back.target().pending.len(),
        2,
        "nothing submitted for it"
    );
    // The commands in flight finish and are answered as usual.
    for (tag, o) in rig.back.target_mut().take_pending() {
        rig.back.complete(tag, o);
    }
    rig.back.resume().unwrap();
    let mut done = rig.collect();
    done.sort_by_key(|(c, _)| c.ticket != write);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].0.ticket, write);
    assert_eq!(done[1].0.ticket, read);
    assert!(done
        .iter()
        .all(|(c, _)| matches!(c.answer, Answer::Command(o) if o.status == 0 && o.host == 0)));
    assert_eq!(rig.back.in_flight(), 0);
    assert_eq!(&rig.back.target().disks[&0][8 * 512..16 * 512], &data[..]);
    rig.back.disconnect();
    assert_eq!(
        rig.sim.grant_stats().live_maps,
        0,
        "every data and ring mapping gone"
    );
}
