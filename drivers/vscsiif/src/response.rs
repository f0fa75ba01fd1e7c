//! What a response means, and the frontend's check of it ([`check`]): the backend is
//! untrusted, so a response is decoded from one copy and refused unless every field is sane.

use xen_sys::wire::vscsiif::{self as wire, SENSE_BUFFERSIZE};

/// Largest host byte defined (`XEN_VSCSIIF_RSLT_HOST_TRANSPORT_MARGINAL`).
pub const HOST_MAX: u8 = 20;

/// SCSI status bytes (SAM-5) a command may end with.
pub const STATUSES: [u8; 11] = [
    0x00, 0x02, 0x04, 0x08, 0x10, 0x14, 0x18, 0x22, 0x28, 0x30, 0x40,
];

/// SCSI status: GOOD.
pub const STATUS_GOOD: u8 = 0x00;
/// SCSI status: CHECK CONDITION (sense data follows).
pub const STATUS_CHECK_CONDITION: u8 = 0x02;

/// How a command ended, as the backend reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Host byte (`XEN_VSCSIIF_RSLT_HOST_*`).
    pub host: u8,
    /// SCSI status byte.
    pub status: u8,
    /// Sense data; bytes past `sense_len` are zero.
    pub sense: [u8; SENSE_BUFFERSIZE],
    /// Valid sense bytes (at most 96).
    pub sense_len: u8,
    /// Bytes not transferred.
    pub residual: u32,
}

impl Outcome {
    /// Success, everything transferred.
    pub const GOOD: Outcome = Outcome {
        host: wire::RSLT_HOST_OK,
        status: STATUS_GOOD,
        sense: [0; SENSE_BUFFERSIZE],
        sense_len: 0,
        residual: 0,
    };

    /// A failure of the host adapter (no SCSI status), nothing transferred.
    pub fn host_error(host: u8, transfer: u32) -> Outcome {
        Outcome {
            host,
            residual: transfer,
            ..Outcome::GOOD
        }
    }

    /// CHECK CONDITION with fixed-format sense data (`key`, `asc`, `ascq`).
    pub fn check_condition(key: u8, asc: u8, ascq: u8, transfer: u32) -> Outcome {
        let mut sense = [0u8; SENSE_BUFFERSIZE];
        sense[0] = 0x70;
        sense[2] = key & 0x0f;
        sense[7] = 10;
        sense[12] = asc;
        sense[13] = ascq;
        Outcome {
            status: STATUS_CHECK_CONDITION,
            sense,
            sense_len: 18,
            residual: transfer,
            ..Outcome::GOOD
        }
    }

    /// The valid sense bytes.
    pub fn sense(&self) -> &[u8] {
        self.sense.get(..usize::from(self.sense_len)).unwrap_or(&[])
    }

    /// The wire `rslt`.
    pub fn rslt(&self) -> i32 {
        crate::parse::rslt(self.host, self.status)
    }
}

/// What the frontend asked, so the response can be checked against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// A command moving `transfer` bytes (0 for `DMA_NONE`).
    Command {
        /// Bytes of data the request described.
        transfer: u32,
    },
    /// An abort or a reset.
    Task,
}

/// A checked answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// How the command ended.
    Command(Outcome),
    /// Whether the abort or reset succeeded (`RESET_SUCCESS`; anything else valid is a
    /// failure).
    Task {
        /// `RSLT_RESET_SUCCESS`.
        success: bool,
    },
}

/// A response that breaks the protocol. Any of these fails the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFault {
    /// `rqid` names no slot of the table.
    BadRqid(u16),
    /// `rqid` names a slot with nothing outstanding, or of another use (duplicate or stale).
    NotOutstanding(u16),
    /// `rslt` has an unknown host byte or SCSI status, or a task result that is neither.
    BadResult(i32),
    /// `sense_len` above 96.
    SenseTooLong(u8),
    /// `residual_len` above the bytes the request described.
    ResidualTooLarge {
        /// What the backend said.
        residual: u32,
        /// What the request described.
        transfer: u32,
    },
    /// The backend broke the ring (impossible response producer).
    Ring,
}

/// Checks a command `rslt`: a known host byte and, with host OK, a known SCSI status. The
/// message and driver bytes (bits 8..15 and 24..31, set by some older backends) are ignored,
/// as Linux's frontend ignores them.
fn command_result(rslt: i32) -> Option<(u8, u8)> {
    let host = wire::rslt_host(rslt);
    let status = wire::rslt_status(rslt);
    (host <= HOST_MAX && STATUSES.contains(&status)).then_some((host, status))
}

/// Checks a response (already matched to its request by `rqid`) against what was asked.
pub fn check(rsp: &wire::Response, expected: Expected) -> Result<Answer, ResponseFault> {
    match expected {
        Expected::Task => {
            let success = match rsp.rslt {
                wire::RSLT_RESET_SUCCESS => true,
                wire::RSLT_RESET_FAILED => false,
                // A backend refusing the request itself answers with a host error.
                other => match command_result(other) {
                    Some((host, _)) if host != wire::RSLT_HOST_OK => false,
                    _ => return Err(ResponseFault::BadResult(other)),
                },
            };
            Ok(Answer::Task { success })
        }
        Expected::Command { transfer } => {
            let (host, status) =
                command_result(rsp.rslt).ok_or(ResponseFault::BadResult(rsp.rslt))?;
            if usize::from(rsp.sense_len) > SENSE_BUFFERSIZE {
                return Err(ResponseFault::SenseTooLong(rsp.sense_len));
            }
            if rsp.residual_len > transfer {
                return Err(ResponseFault::ResidualTooLarge {
                    residual: rsp.residual_len,
                    transfer,
                });
            }
            let mut sense = [0u8; SENSE_BUFFERSIZE];
            let n = usize::from(rsp.sense_len);
            for (d, s) in sense.iter_mut().zip(rsp.sense_buffer.iter()).take(n) {
                *d = *s;
            }
            Ok(Answer::Command(Outcome {
                host,
                status,
                sense,
                sense_len: rsp.sense_len,
                residual: rsp.residual_len,
            }))
        }
    }
}

/// The response image of an outcome (backend side): sense data clamped to 96 bytes, the
/// residual to the request's transfer, nothing else written.
pub fn encode(rqid: u16, outcome: &Outcome, transfer: u32) -> wire::Response {
    let mut r = wire::Response::ZERO;
    r.rqid = rqid;
    r.rslt = outcome.rslt();
    let n = usize::from(outcome.sense_len).min(SENSE_BUFFERSIZE);
    r.sense_len = u8::try_from(n).unwrap_or(0);
    for (d, s) in r.sense_buffer.iter_mut().zip(outcome.sense.iter()).take(n) {
        *d = *s;
    }
    r.residual_len = outcome.residual.min(transfer);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let o = Outcome::check_condition(5, 0x24, 0, 512);
        let r = encode(3, &o, 4096);
        assert_eq!(
            check(&r, Expected::Command { transfer: 4096 }),
            Ok(Answer::Command(o))
        );
        assert_eq!(
            check(&r, Expected::Command { transfer: 100 }),
            Err(ResponseFault::ResidualTooLarge {
                residual: 512,
                transfer: 100
            })
        );
        let mut bad = r;
        bad.sense_len = 97;
        assert_eq!(
            check(&bad, Expected::Command { transfer: 4096 }),
            Err(ResponseFault::SenseTooLong(97))
        );
        bad = r;
        bad.rslt = 21 << 16;
        assert_eq!(
            check(&bad, Expected::Command { transfer: 4096 }),
            Err(ResponseFault::BadResult(21 << 16))
        );
        bad.rslt = 0x03;
        assert!(check(&bad, Expected::Command { transfer: 4096 }).is_err());
        bad.rslt = wire::RSLT_RESET_SUCCESS;
        assert_eq!(
            check(&bad, Expected::Task),
            Ok(Answer::Task { success: true })
        );
        bad.rslt = 0;
        assert_eq!(
            check(&bad, Expected::Task),
            Err(ResponseFault::BadResult(0))
        );
    }
}
