//! The wire format (module docs of `server`): frame headers, replies and their status codes.

use crate::Lsn;

/// Bytes of a request frame header.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Bytes of a reply.
pub const REPLY_BYTES: usize = 9;

/// Why the server refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame's length exceeds the limit.
    FrameTooLarge = 1,
    /// The payload does not match its checksum.
    Malformed = 2,
    /// The journal refuses appends after an I/O error.
    Poisoned = 3,
    /// Another journal error.
    Io = 4,
    /// The connection limit is reached.
    Busy = 5,
    /// The server is stopping.
    ShuttingDown = 6,
}

impl ErrorCode {
    /// The code of a non-zero status byte; None for an unknown one.
    pub(super) fn from_status(status: u8) -> Option<ErrorCode> {
        Some(match status {
            1 => ErrorCode::FrameTooLarge,
            2 => ErrorCode::Malformed,
            3 => ErrorCode::Poisoned,
            4 => ErrorCode::Io,
            5 => ErrorCode::Busy,
            6 => ErrorCode::ShuttingDown,
            _ => return None,
        })
    }
}

/// A frame header: the payload's length in bytes and its crc32c.
pub(super) fn encode_header(len: u32, crc: u32) -> [u8; FRAME_HEADER_BYTES] {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The payload length in bytes and the crc32c a frame header carries.
pub(super) fn decode_header(header: &[u8; FRAME_HEADER_BYTES]) -> (usize, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, crc)
}

/// The reply to one frame: its LSN, or the status of the refusal.
pub(super) fn encode_reply(reply: Result<Lsn, ErrorCode>) -> [u8; REPLY_BYTES] {
    let mut out = [0u8; REPLY_BYTES];
    match reply {
        Ok(lsn) => out[1..].copy_from_slice(&lsn.to_le_bytes()),
        Err(code) => out[0] = code as u8,
    }
    out
}

/// The LSN of a reply, or its non-zero status.
pub(super) fn decode_reply(reply: &[u8; REPLY_BYTES]) -> Result<Lsn, u8> {
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&reply[1..]);
    match reply[0] {
        0 => Ok(u64::from_le_bytes(lsn)),
        status => Err(status),
    }
}
