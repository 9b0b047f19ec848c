//! Finding the records of the log in a segment: which record may come next, over the zero gap
//! between two groups, and what a valid record of the wrong generation at the end means.

use std::path::Path;

use super::read::SegmentReader;
use super::zeros::first_nonzero;
use crate::error::JournalError;
#[cfg(feature = "mutants")]
use crate::mutants::selected;
use crate::mutants::Mutant;
use crate::record::{decode_record, DecodeFailure, DecodedRecord, RecordHeader};
use crate::segment::SegmentName;
use crate::Lsn;

/// Sector size below which a write cannot tear; the writer pads every flush with zeros to the
/// end of an alignment block (at least this large).
pub(super) const SECTOR_BYTES: u64 = 512;

/// Largest zero gap between two groups (a group moves to the next write block when the block
/// before is still being written; write blocks are at most 64 KiB).
const MAX_GAP_BYTES: usize = crate::storage::MAX_BLOCK_BYTES;

/// A record of the log found in a segment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Located {
    /// Offset of its header.
    pub at: u64,
    pub header: RecordHeader,
    /// Bytes it occupies, padding included (less when cut by the end of the file).
    pub span: u64,
}

/// Decodes a record of the log as recovery (or the broken variant `mutant` of it) does.
#[cfg_attr(not(feature = "mutants"), allow(unused_variables))]
pub(super) fn decode_for(
    bytes: &[u8],
    mutant: Option<Mutant>,
) -> Result<DecodedRecord<'_>, DecodeFailure> {
    // M4 (no checksum check on the tail): a record is accepted without its checksum.
    #[cfg(feature = "mutants")]
    if selected(mutant, Mutant::M4) {
        return crate::record::decode_record_unchecked(bytes);
    }
    decode_record(bytes)
}

/// Whether a valid record with `header` may be the next record of the log in `segment`.
#[cfg_attr(not(feature = "mutants"), allow(unused_variables))]
fn fits(
    header: &RecordHeader,
    segment: SegmentName,
    expected: Option<Lsn>,
    mutant: Option<Mutant>,
) -> bool {
    // M7 (stale records of a recycled file accepted): no generation check, and so any valid
    // record where the next one is expected is taken as part of the log.
    #[cfg(feature = "mutants")]
    if selected(mutant, Mutant::M7) {
        return true;
    }
    // M11 (a hole goes unnoticed): no LSN check.
    #[cfg(feature = "mutants")]
    if selected(mutant, Mutant::M11) {
        return header.generation == segment.generation;
    }
    header.generation == segment.generation && !matches!(expected, Some(want) if header.lsn != want)
}

/// The record at `at` if it is valid and may be the next of the log.
fn fitting_record_at(
    reader: &mut SegmentReader,
    at: u64,
    segment: SegmentName,
    expected: Option<Lsn>,
    mutant: Option<Mutant>,
) -> Result<Option<Located>, JournalError> {
    Ok(match reader.record(at, mutant)? {
        Ok(record) if fits(&record.header, segment, expected, mutant) => Some(Located {
            at,
            header: record.header,
            span: record.span_bytes as u64,
        }),
        _ => None,
    })
}

/// Where the next record of the log starts: at `pos`, or after a gap of zeros ending at a
/// 512-byte boundary, provided a valid record of the segment's generation with the expected
/// LSN is there. None at the end of the log.
pub(super) fn next_record_at(
    reader: &mut SegmentReader,
    pos: u64,
    segment: SegmentName,
    expected: Option<Lsn>,
    mutant: Option<Mutant>,
) -> Result<Option<Located>, JournalError> {
    if pos >= reader.len() {
        return Ok(None);
    }
    if let Some(found) = fitting_record_at(reader, pos, segment, expected, mutant)? {
        return Ok(Some(found));
    }
    // Only between records (never before the first one) and only over zeros.
    if expected.is_none() {
        return Ok(None);
    }
    let Some(gap) = first_nonzero(reader.bytes(pos, MAX_GAP_BYTES + 1)?) else {
        return Ok(None);
    };
    let at = pos + gap as u64;
    if gap == 0 || !at.is_multiple_of(SECTOR_BYTES) {
        return Ok(None);
    }
    fitting_record_at(reader, at, segment, expected, mutant)
}

/// Whether segment `seg` starts at offset 0 with a valid record of its own generation carrying
/// LSN `expected`.
pub(super) fn starts_log_at(
    reader: &mut SegmentReader,
    seg: SegmentName,
    expected: Option<Lsn>,
    mutant: Option<Mutant>,
) -> Result<bool, JournalError> {
    if expected.is_none() {
        return Ok(false);
    }
    let found = next_record_at(reader, 0, seg, expected, mutant)?;
    Ok(found.is_some_and(|record| record.at == 0))
}

/// A valid record of an older generation carrying exactly the LSN the log needs next, right
/// where the log needs it, is no leftover: leftovers of a recycled file were retired, so their
/// LSNs are below every LSN the log still needs. It means the file was renamed to another
/// generation (by hand, or by a tool), and taking its records for stale would silently drop
/// them and let the writer overwrite them.
pub(super) fn refuse_renamed_generation(
    reader: &mut SegmentReader,
    pos: u64,
    seg: SegmentName,
    expected: Option<Lsn>,
    dir: &Path,
) -> Result<(), JournalError> {
    let Some(want) = expected else {
        return Ok(());
    };
    let header = match reader.record(pos, None)? {
        Ok(record) => record.header,
        Err(_) => return Ok(()),
    };
    if header.generation == seg.generation || header.lsn != want {
        return Ok(());
    }
    Err(JournalError::BadSegmentFile {
        path: dir.join(seg.file_name()),
        reason: format!(
            "at offset {pos} it holds record LSN {want}, the next of the log, written as \
             generation {} in a file named generation {}: the file was renamed; rename it back \
             to {}",
            header.generation,
            seg.generation,
            SegmentName {
                generation: header.generation,
                ..seg
            }
            .file_name()
        ),
    })
}
