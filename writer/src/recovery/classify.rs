//! What follows the end of the log in a segment: a clean end, a torn tail, or proof of
//! corruption. Only the first [`SCAN_WINDOW_BYTES`] past the end are read: nothing the writer
//! of the segment's generation can have written lies further (docs/journal-format.md, "How far
//! recovery reads").

use std::ops::ControlFlow;

use super::read::SegmentReader;
use super::records::SECTOR_BYTES;
use super::zeros::{first_nonzero, last_nonzero};
use super::SCAN_WINDOW_BYTES;
use crate::error::JournalError;
use crate::record::{RecordHeader, RECORD_ALIGN_BYTES, RECORD_MAGIC};
use crate::segment::SegmentName;
use crate::Lsn;

/// A record of this segment's generation written after `missing` was durable: where it is,
/// its LSN and its `synced_lsn`.
pub(super) type Evidence = (u64, Lsn, Lsn);

pub(super) enum Remainder {
    Clean {
        stale: bool,
    },
    Dirty {
        discarded_bytes: u64,
        evidence: Option<Evidence>,
    },
}

/// What a walk over the bytes past the end finds, in file order.
enum Seen {
    /// A non-zero byte that is not inside a valid record (the last of a stretch).
    NonZero(u64),
    /// A valid record (any generation): offset, header, span.
    Record(u64, RecordHeader, u64),
}

/// Walks `[from, limit)` showing `see` the valid records at 8-byte boundaries (stepping over
/// each one found, as the writer never starts a record inside another) and the non-zero bytes
/// outside them, until `see` breaks.
fn walk(
    reader: &mut SegmentReader,
    from: u64,
    limit: u64,
    see: &mut dyn FnMut(Seen) -> ControlFlow<()>,
) -> Result<(), JournalError> {
    let align = RECORD_ALIGN_BYTES as u64;
    let first = from.div_ceil(align) * align;
    if let Some(i) = last_nonzero(reader.bytes(from, (first - from) as usize)?) {
        if see(Seen::NonZero(from + i as u64)).is_break() {
            return Ok(());
        }
    }
    let mut at = first;
    while at < limit.min(reader.len()) {
        // Zeros the storage vouches for need no reading (a simulated file's empty pages).
        let zeros_end = reader.zeros_until(at).min(limit) / align * align;
        if zeros_end > at {
            at = zeros_end;
            continue;
        }
        let (candidate, last_nz) = {
            let chunk = reader.chunk(at, limit)?;
            let (found, last_nz) = find_magic(chunk);
            let plain_bytes = found.unwrap_or(chunk.len()) as u64;
            (
                found.map(|k| at + k as u64),
                (last_nz.map(|i| at + i as u64), plain_bytes),
            )
        };
        if let Some(i) = last_nz.0 {
            if see(Seen::NonZero(i)).is_break() {
                return Ok(());
            }
        }
        let Some(candidate) = candidate else {
            if last_nz.1 == 0 {
                // The file ended early (it shrank while being read).
                break;
            }
            at += last_nz.1;
            continue;
        };
        let record = match reader.record(candidate, None)? {
            Ok(record) => Some((record.header, record.span_bytes as u64)),
            Err(_) => None,
        };
        let seen = match record {
            Some((header, span)) => Seen::Record(candidate, header, span),
            None => {
                // Not a record: its 8 bytes are plain bytes (the magic is non-zero).
                let word = reader.bytes(candidate, RECORD_ALIGN_BYTES)?;
                Seen::NonZero(candidate + last_nonzero(word).unwrap_or(0) as u64)
            }
        };
        at = match seen {
            Seen::Record(_, _, span) => candidate + span.max(align),
            Seen::NonZero(_) => candidate + align,
        };
        if see(seen).is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// The first 8-byte word of `chunk` (which starts 8-aligned in the file) that starts with the
/// record magic, and the last non-zero byte before it: zeros are passed over a word at a time.
fn find_magic(chunk: &[u8]) -> (Option<usize>, Option<usize>) {
    let magic = RECORD_MAGIC.to_le_bytes();
    let align = RECORD_ALIGN_BYTES;
    let mut last_nz = None;
    let mut k = 0;
    while let Some(i) = first_nonzero(&chunk[k..]) {
        let word = (k + i) / align * align;
        let word_end = (word + align).min(chunk.len());
        if chunk.get(word..word + magic.len()) == Some(&magic[..]) {
            return (Some(word), last_nz);
        }
        last_nz = last_nonzero(&chunk[word..word_end]).map(|j| word + j);
        k = word_end;
    }
    (None, last_nz)
}

/// Classifies the bytes of a segment from `pos` on (see the module comment of
/// [`crate::recovery`]). `missing_lsn` is the LSN the log needs next.
pub(super) fn classify(
    reader: &mut SegmentReader,
    pos: u64,
    segment: SegmentName,
    missing_lsn: Lsn,
) -> Result<Remainder, JournalError> {
    let pos = pos.min(reader.len());
    let limit = pos.saturating_add(SCAN_WINDOW_BYTES).min(reader.len());
    let mut first_stale: Option<u64> = None;
    let mut last_own_end: Option<u64> = None;
    let mut last_plain_nonzero: Option<u64> = None;
    let mut evidence = None;
    walk(reader, pos, limit, &mut |seen| {
        match seen {
            // Only what comes before the first stale record can be a torn tail.
            Seen::NonZero(i) if first_stale.is_none() => last_plain_nonzero = Some(i),
            Seen::NonZero(_) => {}
            Seen::Record(at, header, _) if header.generation != segment.generation => {
                first_stale.get_or_insert(at);
            }
            Seen::Record(at, header, span) => {
                last_own_end = Some(at + span);
                if header.synced_lsn >= missing_lsn && evidence.is_none() {
                    evidence = Some((at, header.lsn, header.synced_lsn));
                }
            }
        }
        ControlFlow::Continue(())
    })?;
    if first_stale.is_none() && last_own_end.is_none() && last_plain_nonzero.is_none() {
        return Ok(Remainder::Clean { stale: false });
    }
    if last_own_end.is_none() {
        if first_stale == Some(pos) {
            return Ok(Remainder::Clean { stale: true });
        }
        // A clean flush leaves zeros up to the end of its last block; after that a recycled
        // file shows whatever its earlier life left there, often mid-record: a fragment whose
        // header the new life overwrote, with or without whole stale records after it. With no
        // record of this generation anywhere after the end, nothing of this life is lost there.
        let sector_end = pos.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        let head = reader.bytes(pos, (sector_end - pos) as usize)?;
        if first_nonzero(head).is_none() {
            return Ok(Remainder::Clean {
                stale: first_stale.is_some(),
            });
        }
    }
    let nonzero_end = last_plain_nonzero.map_or(pos, |i| i + 1);
    let dirty_end = nonzero_end.max(last_own_end.unwrap_or(pos));
    Ok(Remainder::Dirty {
        discarded_bytes: dirty_end - pos,
        evidence,
    })
}

/// Looks for a record of the segment's own generation from `from` on whose writer knew LSN
/// `missing_lsn` was durable: proof that the end of the log is corruption, not a torn tail.
pub(super) fn find_durable_evidence(
    reader: &mut SegmentReader,
    from: u64,
    segment: SegmentName,
    missing_lsn: Lsn,
) -> Result<Option<Evidence>, JournalError> {
    let limit = from.saturating_add(SCAN_WINDOW_BYTES);
    let mut evidence = None;
    walk(reader, from, limit, &mut |seen| match seen {
        Seen::Record(at, header, _)
            if header.generation == segment.generation && header.synced_lsn >= missing_lsn =>
        {
            evidence = Some((at, header.lsn, header.synced_lsn));
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })?;
    Ok(evidence)
}
