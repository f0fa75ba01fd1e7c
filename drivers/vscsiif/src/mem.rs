//! An in-memory SCSI target for tests and fuzzing: one disk of 512-byte blocks per LUN,
//! answering INQUIRY, TEST UNIT READY, READ CAPACITY (10), REPORT LUNS, READ (10) and
//! WRITE (10), and CHECK CONDITION with sense data for anything else.

use crate::back::{Command, DataSeg, ScsiTarget, Started};
use crate::parse::Direction;
use crate::response::Outcome;
use std::collections::BTreeMap;
use std::vec::Vec;
use xen_core::platform::PageBytes;

/// Bytes per block.
pub const BLOCK: usize = 512;

/// Disks by LUN handle; commands complete at once, or (with `deferred`) wait in
/// [`MemTarget::pending`] for the test to complete them.
#[derive(Debug, Default)]
pub struct MemTarget {
    /// Each LUN's bytes.
    pub disks: BTreeMap<u32, Vec<u8>>,
    /// Hold outcomes instead of completing at once.
    pub deferred: bool,
    /// Commands held, with the outcome they will get.
    pub pending: Vec<(usize, Outcome)>,
    /// Aborts and resets seen.
    pub tasks: Vec<(&'static str, u32)>,
}

impl MemTarget {
    /// Adds LUN `lun` with `blocks` zeroed blocks.
    pub fn add_disk(&mut self, lun: u32, blocks: usize) {
        self.disks.insert(lun, std::vec![0; blocks * BLOCK]);
    }

    /// Takes every held command (to complete them through the engine).
    pub fn take_pending(&mut self) -> Vec<(usize, Outcome)> {
        core::mem::take(&mut self.pending)
    }

    fn run<M: PageBytes>(&mut self, cmd: &Command<'_, M>) -> Outcome {
        let length = cmd.length;
        let illegal = Outcome::check_condition(0x05, 0x20, 0x00, length);
        let Some(disk) = self.disks.get_mut(&cmd.lun) else {
            return Outcome::check_condition(0x05, 0x25, 0x00, length);
        };
        let cdb = cmd.cdb;
        let opcode = cdb.first().copied().unwrap_or(0xff);
        let reply = |bytes: &[u8]| -> Outcome {
            if cmd.direction != Direction::FromDevice {
                return illegal;
            }
            let n = copy_out(cmd.data, bytes);
            Outcome {
                residual: length.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX)),
                ..Outcome::GOOD
            }
        };
        match opcode {
            0x00 => Outcome::GOOD,
            0x12 => {
                let mut inq = [0u8; 36];
                inq[2] = 6;
                inq[3] = 2;
                inq[4] = 31;
                inq[8..16].copy_from_slice(b"XENPVRS ");
                inq[16..32].copy_from_slice(b"MEMTARGET       ");
                inq[32..36].copy_from_slice(b"0001");
                let alloc = usize::from(u16::from_be_bytes([
                    cdb.get(3).copied().unwrap_or(0),
                    cdb.get(4).copied().unwrap_or(0),
                ]));
                reply(inq.get(..alloc.min(36)).unwrap_or(&[]))
            }
            0x25 => {
                let last = (disk.len() / BLOCK).saturating_sub(1) as u32;
                let mut cap = [0u8; 8];
                cap[..4].copy_from_slice(&last.to_be_bytes());
                cap[4..].copy_from_slice(&(BLOCK as u32).to_be_bytes());
                reply(&cap)
            }
            0xa0 => {
                let luns: Vec<u32> = self.disks.keys().copied().collect();
                let mut out = std::vec![0u8; 8 + 8 * luns.len()];
                out[..4].copy_from_slice(&((8 * luns.len()) as u32).to_be_bytes());
                for (i, l) in luns.iter().enumerate() {
                    out[8 + 8 * i + 1] = *l as u8;
                }
                reply(&out)
            }
            0x28 | 0x2a => {
                let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]) as usize;
                let blocks = usize::from(u16::from_be_bytes([cdb[7], cdb[8]]));
                let (start, end) = (lba * BLOCK, (lba + blocks) * BLOCK);
                if end > disk.len() {
                    return Outcome::check_condition(0x05, 0x21, 0x00, length);
                }
                let span = &mut disk[start..end];
                let n = if opcode == 0x28 {
                    if cmd.direction != Direction::FromDevice {
                        return illegal;
                    }
                    copy_out(cmd.data, span)
                } else {
                    if cmd.direction != Direction::ToDevice {
                        return illegal;
                    }
                    copy_in(cmd.data, span)
                };
                Outcome {
                    residual: length.saturating_sub(n as u32),
                    ..Outcome::GOOD
                }
            }
            _ => illegal,
        }
    }
}

/// Copies `src` into the segments in order; returns the bytes copied.
fn copy_out<M: PageBytes>(segs: &[DataSeg<M>], src: &[u8]) -> usize {
    let mut done = 0;
    for s in segs {
        let Some(m) = &s.mapping else { break };
        let n = usize::from(s.len).min(src.len() - done);
        if n == 0 || !m.write_bytes(usize::from(s.offset), &src[done..done + n]) {
            break;
        }
        done += n;
    }
    done
}

/// Fills `dst` from the segments in order; returns the bytes copied.
fn copy_in<M: PageBytes>(segs: &[DataSeg<M>], dst: &mut [u8]) -> usize {
    let mut done = 0;
    for s in segs {
        let Some(m) = &s.mapping else { break };
        let n = usize::from(s.len).min(dst.len() - done);
        if n == 0 || !m.read_bytes(usize::from(s.offset), &mut dst[done..done + n]) {
            break;
        }
        done += n;
    }
    done
}

impl<M: PageBytes> ScsiTarget<M> for MemTarget {
    fn submit(&mut self, tag: usize, cmd: &Command<'_, M>) -> Started {
        let outcome = self.run(cmd);
        if self.deferred {
            self.pending.push((tag, outcome));
            Started::Pending
        } else {
            Started::Done(outcome)
        }
    }

    fn abort(&mut self, lun: u32, tag: usize) -> bool {
        self.tasks.push(("abort", lun));
        match self.pending.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, o)) => {
                *o = Outcome::host_error(xen_sys::wire::vscsiif::RSLT_HOST_ABORT, o.residual);
                true
            }
            None => false,
        }
    }

    fn reset(&mut self, lun: u32) -> bool {
        self.tasks.push(("reset", lun));
        self.disks.contains_key(&lun)
    }
}
