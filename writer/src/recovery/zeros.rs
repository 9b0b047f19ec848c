//! Word-at-a-time searches for non-zero bytes: most of what recovery reads past the end of the
//! log is zeros.

/// Index of the first non-zero byte of `data`, 8 bytes at a time.
pub(super) fn first_nonzero(data: &[u8]) -> Option<usize> {
    let mut chunks = data.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if u64::from_ne_bytes(word) != 0 {
            return chunk.iter().position(|&b| b != 0).map(|i| at + i);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b != 0)
        .map(|i| at + i)
}

/// Index of the last non-zero byte of `data`, 8 bytes at a time from the end.
pub(super) fn last_nonzero(data: &[u8]) -> Option<usize> {
    let tail = data.len() % 8;
    if let Some(i) = data[data.len() - tail..].iter().rposition(|&b| b != 0) {
        return Some(data.len() - tail + i);
    }
    let body = &data[..data.len() - tail];
    for (k, chunk) in body.chunks_exact(8).enumerate().rev() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if u64::from_ne_bytes(word) != 0 {
            return chunk.iter().rposition(|&b| b != 0).map(|i| k * 8 + i);
        }
    }
    None
}

#[cfg(test)]
mod zero_scan_tests {
    use super::{first_nonzero, last_nonzero};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn word_scans_agree_with_byte_scans(
            data in proptest::collection::vec(prop_oneof![9 => Just(0u8), 1 => any::<u8>()], 0..200)
        ) {
            prop_assert_eq!(first_nonzero(&data), data.iter().position(|&b| b != 0));
            prop_assert_eq!(last_nonzero(&data), data.iter().rposition(|&b| b != 0));
        }
    }
}
