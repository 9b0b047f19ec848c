//! The record format (see docs/journal-format.md for the byte diagram).
//!
//! ```text
//! offset  size  field
//!      0     4  magic        b"PCRJ"
//!      4     4  crc32c       over bytes 8..32 of the header, then the payload
//!      8     8  lsn          log sequence number, 1, 2, 3, ...
//!     16     8  synced_lsn   highest LSN known durable when the record was written
//!     24     4  len          payload length in bytes
//!     28     4  generation   generation of the segment file the record was written into
//!     32   len  payload
//!          pad  zeros up to the next multiple of 8
//! ```

/// The record magic, the bytes `PCRJ` on disk.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"PCRJ");
/// Size of the record header in bytes.
pub const HEADER_BYTES: usize = 32;
/// Records start at multiples of this many bytes.
pub const RECORD_ALIGN_BYTES: usize = 8;

/// The decoded header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Checksum stored in the header.
    pub crc32c: u32,
    /// Log sequence number.
    pub lsn: u64,
    /// Highest LSN durable when the record was written.
    pub synced_lsn: u64,
    /// Payload length.
    pub len: u32,
    /// Generation of the segment the record was written into.
    pub generation: u32,
}

const _: () = assert!(HEADER_BYTES == 4 + 4 + 8 + 8 + 4 + 4);
const _: () = assert!(HEADER_BYTES / RECORD_ALIGN_BYTES * RECORD_ALIGN_BYTES == HEADER_BYTES);

/// Bytes a record with `payload_bytes` of payload occupies, padding included.
pub const fn record_span_bytes(payload_bytes: usize) -> usize {
    let raw = HEADER_BYTES + payload_bytes;
    raw.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

fn checksum(header_tail: &[u8], payload: &[u8]) -> u32 {
    debug_assert_eq!(header_tail.len(), HEADER_BYTES - 8);
    crc32c::crc32c_append(crc32c::crc32c(header_tail), payload)
}

/// Writes a record (header, payload, zero padding) into `out`, which must be exactly
/// `record_span_bytes(payload.len())` long.
pub fn encode_record(out: &mut [u8], lsn: u64, synced_lsn: u64, generation: u32, payload: &[u8]) {
    assert_eq!(out.len(), record_span_bytes(payload.len()));
    let len = u32::try_from(payload.len()).expect("payload length checked by the caller");
    out[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    out[8..16].copy_from_slice(&lsn.to_le_bytes());
    out[16..24].copy_from_slice(&synced_lsn.to_le_bytes());
    out[24..28].copy_from_slice(&len.to_le_bytes());
    out[28..32].copy_from_slice(&generation.to_le_bytes());
    out[HEADER_BYTES..HEADER_BYTES + payload.len()].copy_from_slice(payload);
    out[HEADER_BYTES + payload.len()..].fill(0);
    let crc = checksum(&out[8..HEADER_BYTES], payload);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Rewrites the `synced_lsn` field of an encoded record and its checksum, after checking
/// that the record as it stands still carries a valid checksum. Returns false (and changes
/// nothing) when the existing checksum is wrong.
pub fn restamp_synced_lsn(record: &mut [u8], synced_lsn: u64) -> bool {
    let Some(header) = parse_header(record) else {
        return false;
    };
    let len = header.len as usize;
    if record.len() < HEADER_BYTES + len {
        return false;
    }
    // Two hardware CRC passes over the payload cost far less than `crc32c_combine`, which
    // builds its shift matrices in software on every call.
    let (head, payload) = record.split_at_mut(HEADER_BYTES);
    let payload = &payload[..len];
    if checksum(&head[8..HEADER_BYTES], payload) != header.crc32c {
        return false;
    }
    head[16..24].copy_from_slice(&synced_lsn.to_le_bytes());
    let new = checksum(&head[8..HEADER_BYTES], payload);
    head[4..8].copy_from_slice(&new.to_le_bytes());
    true
}

/// Parses the header fields without checking the checksum. None when fewer than
/// `HEADER_BYTES` bytes are given or the magic is wrong.
pub fn parse_header(bytes: &[u8]) -> Option<RecordHeader> {
    let header = bytes.get(..HEADER_BYTES)?;
    let u32_at = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let u64_at = |at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(raw)
    };
    if u32_at(0) != RECORD_MAGIC {
        return None;
    }
    Some(RecordHeader {
        crc32c: u32_at(4),
        lsn: u64_at(8),
        synced_lsn: u64_at(16),
        len: u32_at(24),
        generation: u32_at(28),
    })
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeFailure {
    /// Fewer bytes than a header.
    ShortHeader,
    /// The magic is wrong (zeros land here).
    BadMagic,
    /// The payload length runs past the available bytes.
    ShortPayload,
    /// Checksum mismatch.
    BadChecksum,
}

/// A record that passed every check; borrows its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    /// Header fields.
    pub header: RecordHeader,
    /// The payload.
    pub payload: &'a [u8],
    /// Bytes the record occupies including padding.
    pub span_bytes: usize,
}

/// Decodes the record at the start of `bytes`, checking magic, length and checksum. Never
/// allocates: the payload is a slice of the input, and a length is trusted only after it was
/// checked against the bytes available.
pub fn decode_record(bytes: &[u8]) -> Result<DecodedRecord<'_>, DecodeFailure> {
    decode(bytes, true)
}

/// M4 (no checksum check on the tail): [`decode_record`] without the checksum comparison, as a
/// deliberately broken recovery uses it.
#[cfg(feature = "mutants")]
pub(crate) fn decode_record_unchecked(bytes: &[u8]) -> Result<DecodedRecord<'_>, DecodeFailure> {
    decode(bytes, false)
}

/// [`decode_record`], with the checksum comparison only if `check_crc` (the M4 mutant skips it).
fn decode(bytes: &[u8], check_crc: bool) -> Result<DecodedRecord<'_>, DecodeFailure> {
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeFailure::ShortHeader);
    }
    let header = parse_header(bytes).ok_or(DecodeFailure::BadMagic)?;
    let len = header.len as usize;
    if len > bytes.len() - HEADER_BYTES {
        return Err(DecodeFailure::ShortPayload);
    }
    let payload = &bytes[HEADER_BYTES..HEADER_BYTES + len];
    if check_crc && checksum(&bytes[8..HEADER_BYTES], payload) != header.crc32c {
        return Err(DecodeFailure::BadChecksum);
    }
    // The padding may be cut off at the very end of a file truncated to its logical size.
    let span_bytes = record_span_bytes(len).min(bytes.len());
    Ok(DecodedRecord {
        header,
        payload,
        span_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let payload = b"hello journal";
        let mut out = vec![0xAAu8; record_span_bytes(payload.len())];
        encode_record(&mut out, 7, 6, 3, payload);
        let decoded = decode_record(&out).unwrap();
        assert_eq!(decoded.header.lsn, 7);
        assert_eq!(decoded.header.synced_lsn, 6);
        assert_eq!(decoded.header.generation, 3);
        assert_eq!(decoded.payload, payload);
        assert_eq!(decoded.span_bytes, out.len());
        assert_eq!(&out[..4], b"PCRJ");
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let payload = [1u8, 2, 3, 4, 5];
        let mut out = vec![0u8; record_span_bytes(payload.len())];
        encode_record(&mut out, 1, 0, 1, &payload);
        for bit in 0..(HEADER_BYTES + payload.len()) * 8 {
            let mut copy = out.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&copy).is_err(), "bit {bit} flip accepted");
        }
    }

    #[test]
    fn restamp_keeps_record_valid() {
        let payload = vec![9u8; 100];
        let mut out = vec![0u8; record_span_bytes(payload.len())];
        encode_record(&mut out, 5, 1, 2, &payload);
        assert!(restamp_synced_lsn(&mut out, 4));
        let decoded = decode_record(&out).unwrap();
        assert_eq!(decoded.header.synced_lsn, 4);
        out[40] ^= 1;
        assert!(!restamp_synced_lsn(&mut out, 4));
    }

    #[test]
    fn truncated_record_is_short() {
        let payload = vec![7u8; 50];
        let mut out = vec![0u8; record_span_bytes(payload.len())];
        encode_record(&mut out, 1, 0, 1, &payload);
        for cut in 0..HEADER_BYTES + payload.len() {
            assert!(decode_record(&out[..cut]).is_err());
        }
        assert!(decode_record(&out[..HEADER_BYTES + payload.len()]).is_ok());
    }
}
