//! The walk over the segments in index order: the records of the log, where it ends, and what
//! the end was.

use std::path::Path;

use super::classify::{classify, find_durable_evidence, Evidence, Remainder};
use super::read::SegmentReader;
use super::records::{next_record_at, refuse_renamed_generation, starts_log_at};
use super::summary::{
    LogEnd, RecordView, RecoverySummary, SegmentSummary, SummaryCounter, TruncatedTail,
};
use super::RecoveryOptions;
use crate::error::JournalError;
#[cfg(feature = "mutants")]
use crate::mutants::selected;
use crate::mutants::Mutant;
use crate::record::HEADER_BYTES;
use crate::segment::{self, SegmentName};
use crate::storage::Storage;
use crate::Lsn;

/// Recovery plus what the writer needs to continue.
pub(crate) struct Scan {
    pub summary: RecoverySummary,
    /// The bytes of the segment the log ends in from `end_tail_from` up to the end of the log
    /// (at most [`END_TAIL_BYTES`]): the partial last block the writer rewrites.
    pub end_tail: Vec<u8>,
    /// Offset in that segment of `end_tail`'s first byte.
    pub end_tail_from: u64,
    /// Live segments found.
    pub listing: segment::DirListing,
}

/// Bytes before the end of the log kept for the writer: at least its largest write block.
pub(crate) const END_TAIL_BYTES: u64 = crate::storage::MAX_BLOCK_BYTES as u64;

/// Recovers the journal in `dir` with the default options; `mutant` selects a deliberately
/// broken recovery (M4, M7, M8, M11; any other mutant recovers like the real engine).
pub(crate) fn scan(
    storage: &dyn Storage,
    dir: &Path,
    mutant: Option<Mutant>,
    visit: &mut dyn FnMut(RecordView<'_>),
) -> Result<Scan, JournalError> {
    scan_with(storage, dir, mutant, &RecoveryOptions::default(), visit)
}

/// [`scan`] with the given options.
pub(crate) fn scan_with(
    storage: &dyn Storage,
    dir: &Path,
    mutant: Option<Mutant>,
    options: &RecoveryOptions,
    visit: &mut dyn FnMut(RecordView<'_>),
) -> Result<Scan, JournalError> {
    // Only a mutant that says it changes recovery may (the harness relies on it).
    let mutant = mutant.filter(|m| m.changes_recovery());
    // M8 (mid-log corruption taken for a torn tail): the proof of corruption is ignored.
    #[cfg(feature = "mutants")]
    let report_corruption = !selected(mutant, Mutant::M8);
    #[cfg(not(feature = "mutants"))]
    let report_corruption = true;
    let listing = segment::list(storage, dir)?;
    let mut scanner = Scanner::new(storage, dir, mutant, report_corruption, &listing);
    scanner.chunk_bytes = options.read_chunk_bytes;
    for position in 0..listing.segments.len() {
        scanner.scan_segment(&listing.segments, position, visit)?;
    }
    Ok(scanner.finish(listing))
}

/// Where recovery is in its walk over the segments, in index order.
struct Scanner<'a> {
    storage: &'a dyn Storage,
    dir: &'a Path,
    mutant: Option<Mutant>,
    report_corruption: bool,
    /// The read window of each segment.
    chunk_bytes: usize,
    counter: SummaryCounter,
    summaries: Vec<SegmentSummary>,
    /// The next LSN the log needs; unknown only when the first segment was retired.
    expected: Option<Lsn>,
    /// The end of the log so far: segment and offset.
    end: Option<(SegmentName, u64)>,
    /// Whether the log cannot go on past `end` (later segments are only looked at for proof
    /// of corruption).
    end_is_final: bool,
    /// Offset and bytes of the last `END_TAIL_BYTES` before `end`.
    end_tail: (u64, Vec<u8>),
    truncated_tail: Option<TruncatedTail>,
    ended_at_stale_record: bool,
    /// The read buffer of the last segment read, for the next one.
    spare_buf: Option<crate::storage::AlignedBuf>,
}

impl<'a> Scanner<'a> {
    fn new(
        storage: &'a dyn Storage,
        dir: &'a Path,
        mutant: Option<Mutant>,
        report_corruption: bool,
        listing: &segment::DirListing,
    ) -> Scanner<'a> {
        let expected = match listing.segments.first() {
            Some(first) if first.index == 1 => Some(1),
            Some(_) => None,
            None => Some(1),
        };
        Scanner {
            storage,
            dir,
            mutant,
            report_corruption,
            chunk_bytes: RecoveryOptions::default().read_chunk_bytes,
            counter: SummaryCounter::default(),
            summaries: Vec::new(),
            expected,
            end: None,
            end_is_final: false,
            end_tail: (0, Vec::new()),
            truncated_tail: None,
            ended_at_stale_record: false,
            spare_buf: None,
        }
    }

    fn open(&mut self, seg: SegmentName) -> Result<SegmentReader, JournalError> {
        let buf = self.spare_buf.take();
        SegmentReader::open(self.storage, self.dir, seg, self.chunk_bytes, buf)
    }

    /// Scans `segments[position]`: its records of the log, then what follows them.
    fn scan_segment(
        &mut self,
        segments: &[SegmentName],
        position: usize,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> Result<(), JournalError> {
        let seg = segments[position];
        let mut reader = self.open(seg)?;
        let scanned = self.scan_opened(&mut reader, segments, position, visit);
        // The next segment reads into the same memory.
        self.spare_buf = reader.into_buf();
        scanned
    }

    /// [`Scanner::scan_segment`] once the segment is open.
    fn scan_opened(
        &mut self,
        reader: &mut SegmentReader,
        segments: &[SegmentName],
        position: usize,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> Result<(), JournalError> {
        let seg = segments[position];
        let mut summary = SegmentSummary {
            index: seg.index,
            generation: seg.generation,
            file_bytes: reader.len(),
            records: 0,
            last_lsn: 0,
        };
        let consecutive = match self.end {
            None => position == 0,
            Some((previous, _)) => !self.end_is_final && seg.index == previous.index + 1,
        };
        if !consecutive {
            self.past_end(seg, reader)?;
            self.summaries.push(summary);
            return Ok(());
        }
        let pos = self.read_records(reader, seg, &mut summary, visit)?;
        refuse_renamed_generation(reader, pos, seg, self.expected, self.dir)?;
        let remainder = self.remainder(reader, pos, seg, segments.get(position + 1))?;
        if summary.records == 0 && position > 0 {
            if let Remainder::Clean { stale } = remainder {
                // A prepared but unused segment: the log ended in the previous one.
                self.end_is_final = true;
                self.ended_at_stale_record |= stale;
                self.summaries.push(summary);
                return Ok(());
            }
        }
        self.settle_end(seg, reader, pos, remainder)?;
        self.summaries.push(summary);
        Ok(())
    }

    /// A segment past the end of the log: only looked at for proof that the end was
    /// corruption.
    fn past_end(
        &mut self,
        seg: SegmentName,
        reader: &mut SegmentReader,
    ) -> Result<(), JournalError> {
        self.end_is_final = true;
        if !self.report_corruption {
            return Ok(());
        }
        let missing = self.expected.unwrap_or(0);
        if let Some(evidence) = find_durable_evidence(reader, 0, seg, missing)? {
            let (end_seg, end_offset) = self.end.map_or((seg.index, 0), |(s, o)| (s.index, o));
            return Err(corruption(
                end_seg, end_offset, missing, seg.index, evidence,
            ));
        }
        Ok(())
    }

    /// Shows the records of the log in the segment to `visit`, in order; returns where they
    /// end.
    fn read_records(
        &mut self,
        reader: &mut SegmentReader,
        seg: SegmentName,
        summary: &mut SegmentSummary,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> Result<u64, JournalError> {
        let mut pos = 0u64;
        while let Some(found) = next_record_at(reader, pos, seg, self.expected, self.mutant)? {
            let lsn = found.header.lsn;
            // Just decoded, so in the read window.
            let payload =
                reader.bytes(found.at + HEADER_BYTES as u64, found.header.len as usize)?;
            visit(RecordView {
                lsn,
                payload,
                segment: seg.index,
                offset: found.at,
            });
            self.counter.add(lsn, payload);
            summary.records += 1;
            summary.last_lsn = lsn;
            self.expected = Some(lsn + 1);
            pos = found.at + found.span;
        }
        Ok(pos)
    }

    /// What follows the records of segment `seg` from `pos` on. `next` is the segment after
    /// it in the listing, looked at when the remainder looks dirty.
    fn remainder(
        &mut self,
        reader: &mut SegmentReader,
        pos: u64,
        seg: SegmentName,
        next: Option<&SegmentName>,
    ) -> Result<Remainder, JournalError> {
        let remainder = classify(reader, pos, seg, self.expected.unwrap_or(0))?;
        if !matches!(remainder, Remainder::Dirty { .. }) {
            return Ok(remainder);
        }
        // The sealed-segment rule: the writer moves to segment i+1 only after every record
        // of segment i is durable, so a next segment that starts at offset 0 with exactly
        // the next LSN proves this one was sealed at this end. What follows it here is
        // leftovers of the file's earlier life, not a torn tail, and the log goes on.
        if let Some(&next) = next.filter(|next| next.index == seg.index + 1) {
            let mut next_reader = self.open(next)?;
            if starts_log_at(&mut next_reader, next, self.expected, self.mutant)? {
                return Ok(Remainder::Clean { stale: false });
            }
        }
        Ok(remainder)
    }

    /// The log ends at `pos` of segment `seg` (so far): keeps the bytes before it for the
    /// writer, and records a torn tail (or fails on proof of corruption).
    fn settle_end(
        &mut self,
        seg: SegmentName,
        reader: &mut SegmentReader,
        pos: u64,
        remainder: Remainder,
    ) -> Result<(), JournalError> {
        self.end = Some((seg, pos));
        let tail_from = pos.saturating_sub(END_TAIL_BYTES);
        let tail = reader
            .bytes(tail_from, (pos - tail_from) as usize)?
            .to_vec();
        self.end_tail = (tail_from, tail);
        match remainder {
            Remainder::Clean { stale } => {
                self.ended_at_stale_record = stale;
            }
            Remainder::Dirty {
                discarded_bytes,
                evidence,
            } => {
                self.end_is_final = true;
                self.truncated_tail = Some(TruncatedTail {
                    segment: seg.index,
                    offset: pos,
                    discarded_bytes,
                });
                if let Some(evidence) = evidence.filter(|_| self.report_corruption) {
                    let missing = self.expected.unwrap_or(0);
                    return Err(corruption(seg.index, pos, missing, seg.index, evidence));
                }
            }
        }
        Ok(())
    }

    fn finish(self, listing: segment::DirListing) -> Scan {
        let (end_segment, end_offset) = match self.end {
            Some((seg, offset)) => (seg, offset),
            None => (
                SegmentName {
                    index: 0,
                    generation: 0,
                },
                0,
            ),
        };
        let end = LogEnd {
            segment: end_segment.index,
            generation: end_segment.generation,
            offset: end_offset,
            next_lsn: self.expected.unwrap_or(1),
        };
        Scan {
            summary: self.counter.finish(
                self.truncated_tail,
                end,
                self.summaries,
                self.ended_at_stale_record,
            ),
            end_tail_from: self.end_tail.0,
            end_tail: self.end_tail.1,
            listing,
        }
    }
}

fn corruption(
    segment: u64,
    offset: u64,
    missing: Lsn,
    evidence_segment: u64,
    (evidence_offset, evidence_lsn, evidence_synced): Evidence,
) -> JournalError {
    JournalError::MidLogCorruption {
        segment,
        offset,
        reason: format!(
            "record LSN {missing} is missing or damaged, but record LSN {evidence_lsn} in segment \
             {evidence_segment} at offset {evidence_offset} was written after LSN \
             {evidence_synced} was durable"
        ),
    }
}
