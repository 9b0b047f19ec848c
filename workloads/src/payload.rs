//! Record payloads derived from (seed, writer, sequence), so an oracle can tell a payload that was
//! really written from garbage without keeping a copy of every record (invariant I3).
//!
//! Layout, little endian:
//!
//! ```text
//! 0      4        8           16          20            24
//! +------+--------+-----------+-----------+-------------+----------------------+
//! | PCWL | writer | sequence  | len (all) | crc32c body | body (len - 24 bytes) |
//! +------+--------+-----------+-----------+-------------+----------------------+
//! ```
//!
//! The body is a keyed stream of (seed, writer, sequence). LSNs are assigned by the engine (several
//! concurrent writers race for them), so the payload names its writer and sequence instead.

use powercut_writer::sim::SplitMix64;

/// Magic at the start of every generated payload.
pub const PAYLOAD_MAGIC: [u8; 4] = *b"PCWL";
/// Bytes before the body.
pub const PAYLOAD_HEADER_BYTES: usize = 24;

/// Builds the payload of `len_bytes` (at least [`PAYLOAD_HEADER_BYTES`]).
pub fn derive(seed: u64, writer: u32, sequence: u64, len_bytes: usize) -> Vec<u8> {
    assert!(
        len_bytes >= PAYLOAD_HEADER_BYTES,
        "payload shorter than its header"
    );
    let len_u32 = u32::try_from(len_bytes).expect("payload length fits u32");
    let mut out = vec![0u8; len_bytes];
    fill_body(seed, writer, sequence, &mut out[PAYLOAD_HEADER_BYTES..]);
    let body_crc = crc32c::crc32c(&out[PAYLOAD_HEADER_BYTES..]);
    out[0..4].copy_from_slice(&PAYLOAD_MAGIC);
    out[4..8].copy_from_slice(&writer.to_le_bytes());
    out[8..16].copy_from_slice(&sequence.to_le_bytes());
    out[16..20].copy_from_slice(&len_u32.to_le_bytes());
    out[20..24].copy_from_slice(&body_crc.to_le_bytes());
    out
}

/// Who wrote a payload, as decoded from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadOrigin {
    /// The writer's number (the main writer is 0).
    pub writer: u32,
    /// The payload's sequence number within that writer.
    pub sequence: u64,
}

/// Checks that `payload` is exactly what [`derive()`] makes for `seed`; returns its origin.
pub fn verify(seed: u64, payload: &[u8]) -> Result<PayloadOrigin, &'static str> {
    if payload.len() < PAYLOAD_HEADER_BYTES {
        return Err("shorter than the payload header");
    }
    if payload[0..4] != PAYLOAD_MAGIC {
        return Err("no PCWL magic");
    }
    let writer = u32::from_le_bytes(payload[4..8].try_into().unwrap());
    let sequence = u64::from_le_bytes(payload[8..16].try_into().unwrap());
    let len = u32::from_le_bytes(payload[16..20].try_into().unwrap());
    if usize::try_from(len).ok() != Some(payload.len()) {
        return Err("length field disagrees with the record length");
    }
    let expected = derive(seed, writer, sequence, payload.len());
    if expected != payload {
        return Err("bytes differ from the payload derived from seed, writer and sequence");
    }
    Ok(PayloadOrigin { writer, sequence })
}

fn fill_body(seed: u64, writer: u32, sequence: u64, body: &mut [u8]) {
    let state = seed ^ (u64::from(writer) << 48) ^ sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    fill_splitmix(state, body);
}

/// Fills `out` with the engine's SplitMix64 stream of `state`: cheap, deterministic, and good enough to
/// make every record's (and generated file's) bytes distinct.
pub fn fill_splitmix(state: u64, out: &mut [u8]) {
    SplitMix64::new(state).fill(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_payloads_verify_and_differ() {
        let a = derive(7, 0, 1, 100);
        let b = derive(7, 0, 2, 100);
        assert_ne!(a, b);
        assert_eq!(
            verify(7, &a).unwrap(),
            PayloadOrigin {
                writer: 0,
                sequence: 1
            }
        );
        assert!(verify(8, &a).is_err());
        let mut c = a.clone();
        c[50] ^= 1;
        assert!(verify(7, &c).is_err());
        assert!(verify(7, &a[..60]).is_err());
    }
}
