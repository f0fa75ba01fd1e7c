//! The vscsiif SCSI ring protocol (`io/vscsiif.h`): one-page ring of 252-byte slots.

use super::wire_struct;
use crate::{bindings, Unknown};

/// Segments in a [`Request`] (`VSCSIIF_SG_TABLESIZE`).
pub const SG_TABLESIZE: usize = 26;
/// Bytes of a CDB (`VSCSIIF_MAX_COMMAND_SIZE`).
pub const MAX_COMMAND_SIZE: usize = 16;
/// Bytes of sense data in a [`Response`] (`VSCSIIF_SENSE_BUFFERSIZE`).
pub const SENSE_BUFFERSIZE: usize = 96;
/// Bit of `nr_segments` saying the segments point at pages of further segments
/// (`VSCSIIF_SG_GRANT`, with `feature-sg-grant`); the low 7 bits count those pages.
pub const SG_GRANT: u8 = 0x80;
/// [`Segment`]s in one 4 KiB page of indirect segments (`VSCSIIF_SG_PER_PAGE`).
pub const SG_PER_PAGE: usize = 4096 / Segment::SIZE;

/// `rslt` host byte: no error (`XEN_VSCSIIF_RSLT_HOST_OK`).
pub const RSLT_HOST_OK: u8 = 0;
/// `rslt` host byte: could not connect before the timeout.
pub const RSLT_HOST_NO_CONNECT: u8 = 1;
/// `rslt` host byte: bad target.
pub const RSLT_HOST_BAD_TARGET: u8 = 4;
/// `rslt` host byte: aborted.
pub const RSLT_HOST_ABORT: u8 = 5;
/// `rslt` host byte: internal error.
pub const RSLT_HOST_ERROR: u8 = 7;
/// `rslt` host byte: reset by somebody.
pub const RSLT_HOST_RESET: u8 = 8;
/// `rslt` of a successful reset request.
pub const RSLT_RESET_SUCCESS: i32 = 0x2002;
/// `rslt` of a failed reset request.
pub const RSLT_RESET_FAILED: i32 = 0x2003;

const _: () = {
    assert!(SG_TABLESIZE as u32 == bindings::VSCSIIF_SG_TABLESIZE);
    assert!(MAX_COMMAND_SIZE as u32 == bindings::VSCSIIF_MAX_COMMAND_SIZE);
    assert!(SENSE_BUFFERSIZE as u32 == bindings::VSCSIIF_SENSE_BUFFERSIZE);
    assert!(SG_GRANT as u32 == bindings::VSCSIIF_SG_GRANT);
    assert!(SG_PER_PAGE == 512 && bindings::VSCSIIF_PAGE_SIZE == 4096);
    assert!(RSLT_HOST_OK as u32 == bindings::XEN_VSCSIIF_RSLT_HOST_OK);
    assert!(RSLT_HOST_NO_CONNECT as u32 == bindings::XEN_VSCSIIF_RSLT_HOST_NO_CONNECT);
    assert!(RSLT_HOST_BAD_TARGET as u32 == bindings::XEN_VSCSIIF_RSLT_HOST_BAD_TARGET);
    assert!(RSLT_HOST_ABORT as u32 == bindings::XEN_VSCSIIF_RSLT_HOST_ABORT);
    assert!(RSLT_HOST_ERROR as u32 == bindings::XEN_VSCSIIF_RSLT_HOST_ERROR);
    assert!(RSLT_HOST_RESET as u32 == bindings::XEN_VSCSIIF_RSLT_HOST_RESET);
    assert!(RSLT_RESET_SUCCESS as u32 == bindings::XEN_VSCSIIF_RSLT_RESET_SUCCESS);
    assert!(RSLT_RESET_FAILED as u32 == bindings::XEN_VSCSIIF_RSLT_RESET_FAILED);
};

/// The SCSI status byte of a response's `rslt` (`XEN_VSCSIIF_RSLT_STATUS`).
pub fn rslt_status(rslt: i32) -> u8 {
    rslt.to_le_bytes()[0]
}

/// The host byte of a response's `rslt` (`XEN_VSCSIIF_RSLT_HOST`).
pub fn rslt_host(rslt: i32) -> u8 {
    rslt.to_le_bytes()[2]
}

/// A request's action (`VSCSIIF_ACT_SCSI_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Act {
    /// Execute the CDB.
    ScsiCdb = 1,
    /// Abort the request `ref_rqid`.
    ScsiAbort = 2,
    /// Reset the device.
    ScsiReset = 3,
    /// Deprecated scatter/gather preset; reserved so the value is never reused.
    ScsiSgPreset = 4,
}

const _: () = {
    assert!(Act::ScsiCdb as u32 == bindings::VSCSIIF_ACT_SCSI_CDB);
    assert!(Act::ScsiAbort as u32 == bindings::VSCSIIF_ACT_SCSI_ABORT);
    assert!(Act::ScsiReset as u32 == bindings::VSCSIIF_ACT_SCSI_RESET);
    assert!(Act::ScsiSgPreset as u32 == bindings::VSCSIIF_ACT_SCSI_SG_PRESET);
};

impl TryFrom<u8> for Act {
    type Error = Unknown<u8>;
    fn try_from(raw: u8) -> Result<Self, Self::Error> {
        Ok(match raw {
            1 => Act::ScsiCdb,
            2 => Act::ScsiAbort,
            3 => Act::ScsiReset,
            4 => Act::ScsiSgPreset,
            other => return Err(Unknown(other)),
        })
    }
}

impl From<Act> for u8 {
    fn from(act: Act) -> u8 {
        act as u8
    }
}

wire_struct! {
    /// A granted data range (`struct scsiif_request_segment`).
    pub struct Segment (8 bytes, like bindings::scsiif_request_segment) {
        /// Grant reference of the page.
        pub gref: u32 => gref,
        /// Offset of the data in the page.
        pub offset: u16 => offset,
        /// Bytes of data.
        pub length: u16 => length,
    }
}

wire_struct! {
    /// A SCSI request (`struct vscsiif_request`).
    pub struct Request (252 bytes, like bindings::vscsiif_request) {
        /// The frontend's cookie, echoed in the response.
        pub rqid: u16 => rqid,
        /// An [`Act`] (raw: the peer may send anything).
        pub act: u8 => act,
        /// Valid bytes in `cmnd`.
        pub cmd_len: u8 => cmd_len,
        /// The CDB.
        pub cmnd: [u8; MAX_COMMAND_SIZE] => cmnd,
        /// Deprecated timeout in seconds.
        pub timeout_per_command: u16 => timeout_per_command,
        /// Virtual channel.
        pub channel: u16 => channel,
        /// Virtual target.
        pub id: u16 => id,
        /// Virtual LUN.
        pub lun: u16 => lun,
        /// The request to abort, for [`Act::ScsiAbort`].
        pub ref_rqid: u16 => ref_rqid,
        /// DMA direction: 0 bidirectional, 1 to device, 2 from device, 3 none.
        pub sc_data_direction: u8 => sc_data_direction,
        /// Segments in use, possibly with [`SG_GRANT`].
        pub nr_segments: u8 => nr_segments,
        /// Data segments (or pages of segments with [`SG_GRANT`]).
        pub seg: [Segment; SG_TABLESIZE] => seg,
        _reserved: [u32; 3],
    }
}

wire_struct! {
    /// A SCSI response (`struct vscsiif_response`).
    pub struct Response (252 bytes, like bindings::vscsiif_response) {
        /// The request's `rqid`.
        pub rqid: u16 => rqid,
        /// Deprecated.
        pub act: u8 => act,
        /// Valid bytes in `sense_buffer`.
        pub sense_len: u8 => sense_len,
        /// Sense data.
        pub sense_buffer: [u8; SENSE_BUFFERSIZE] => sense_buffer,
        /// Host byte and SCSI status byte (see [`rslt_host`], [`rslt_status`]).
        pub rslt: i32 => rslt,
        /// Bytes not transferred.
        pub residual_len: u32 => residual_len,
        _reserved: [u32; 36],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rslt_bytes_are_split_as_in_c() {
        let rslt = 0x0007_0002;
        assert_eq!(rslt_status(rslt), 2);
        assert_eq!(rslt_host(rslt), RSLT_HOST_ERROR);
        assert_eq!(rslt_status(-1), 0xff);
        assert_eq!(rslt_host(-1), 0xff);
    }

    #[test]
    fn unknown_act_is_an_error() {
        assert_eq!(Act::try_from(0), Err(Unknown(0)));
        assert_eq!(Act::try_from(5), Err(Unknown(5)));
        assert_eq!(Act::try_from(1), Ok(Act::ScsiCdb));
    }

    #[test]
    fn response_round_trips_with_full_sense_buffer() {
        let mut r = Response::ZERO;
        r.rqid = 3;
        r.sense_len = 96;
        r.sense_buffer = [0x70; SENSE_BUFFERSIZE];
        r.rslt = -5;
        assert_eq!(Response::from_bytes(&r.to_bytes()), r);
        assert_eq!(&r.to_bytes()[108..], &[0u8; 144][..]);
    }
}
