//! Recovery: reads the segments in index order and returns the records of the log, stopping at
//! the first record that fails its checks.
//!
//! What follows the end decides what the end was:
//! - nothing but zeros, or a valid record of an older generation (a recycled file): a clean end;
//! - anything else (garbage, a cut record, records that were in flight): a torn tail, reported
//!   as [`TruncatedTail`], never as records and never as an error;
//! - a valid record of the segment's own generation whose `synced_lsn` shows the writer knew
//!   the missing record was durable: mid-log corruption, a hard error.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::dir_lock::{DirLock, DirLockError, LockMode};
use crate::error::JournalError;
#[cfg(feature = "mutants")]
use crate::mutants::selected;
use crate::mutants::Mutant;
use crate::record::{
    decode_record, DecodeFailure, DecodedRecord, RECORD_ALIGN_BYTES, RECORD_MAGIC,
};
use crate::segment::{self, SegmentName};
use crate::storage::{RealStorage, Storage};
use crate::Lsn;

/// Largest segment file recovery reads (segments are read whole).
pub const MAX_SEGMENT_FILE_BYTES: u64 = 1 << 30;

/// A record returned by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRecord {
    /// Its log sequence number.
    pub lsn: Lsn,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Index of the segment holding it.
    pub segment: u64,
    /// Byte offset of its header in the segment file.
    pub offset: u64,
}

/// A torn tail that recovery cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncatedTail {
    /// Segment index.
    pub segment: u64,
    /// Offset of the first byte that is not part of the log.
    pub offset: u64,
    /// Bytes from `offset` to the end of the discarded (non-zero, non-stale) data.
    pub discarded_bytes: u64,
}

/// Where the log ends: the next record goes here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEnd {
    /// Segment index (0 when the directory holds no segment).
    pub segment: u64,
    /// Generation of that segment.
    pub generation: u32,
    /// Byte offset in the segment.
    pub offset: u64,
    /// LSN of the next record.
    pub next_lsn: Lsn,
}

/// A record as recovery reads it, borrowed from the segment being scanned: recovery streams
/// records to a visitor, so that neither it nor the journal's open holds the log in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Its log sequence number.
    pub lsn: Lsn,
    /// Its payload.
    pub payload: &'a [u8],
    /// Index of the segment holding it.
    pub segment: u64,
    /// Byte offset of its header in the segment file.
    pub offset: u64,
}

impl RecordView<'_> {
    /// An owned copy.
    pub fn to_record(&self) -> RecoveredRecord {
        RecoveredRecord {
            lsn: self.lsn,
            payload: self.payload.to_vec(),
            segment: self.segment,
            offset: self.offset,
        }
    }
}

/// One segment file as recovery saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Index.
    pub index: u64,
    /// Generation.
    pub generation: u32,
    /// File size.
    pub file_bytes: u64,
    /// Records of the log in it.
    pub records: u64,
    /// LSN of its last record of the log (0 when it holds none).
    pub last_lsn: Lsn,
}

/// What recovery found, without the records themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverySummary {
    /// Records of the log.
    pub record_count: u64,
    /// LSN of the first record (0 when empty).
    pub first_lsn: Lsn,
    /// LSN of the last record (0 when empty).
    pub last_lsn: Lsn,
    /// Payload bytes of all records.
    pub payload_bytes: u64,
    /// CRC-32C of all payloads in LSN order.
    pub payload_crc32c: u32,
    /// The torn tail, if one was cut off.
    pub truncated_tail: Option<TruncatedTail>,
    /// Where the log ends.
    pub end: LogEnd,
    /// The segments scanned.
    pub segments: Vec<SegmentSummary>,
    /// Whether the log ended at a stale record of an older generation.
    pub ended_at_stale_record: bool,
}

/// The result of recovery, records included.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The records of the log, LSNs contiguous.
    pub records: Vec<RecoveredRecord>,
    /// The torn tail, if one was cut off.
    pub truncated_tail: Option<TruncatedTail>,
    /// Where the log ends.
    pub end: LogEnd,
    /// The segments scanned.
    pub segments: Vec<SegmentSummary>,
    /// Whether the log ended at a stale record of an older generation.
    pub ended_at_stale_record: bool,
}

impl Recovery {
    /// The records as the judge reads them (`powercut_judge`), borrowing the payloads.
    pub fn judged_records(&self) -> Vec<powercut_judge::records::RecoveredRecord<'_>> {
        self.records
            .iter()
            .map(|r| powercut_judge::records::RecoveredRecord {
                lsn: r.lsn,
                payload: &r.payload,
            })
            .collect()
    }

    /// The records collected by a visitor of a recovery, with its summary.
    pub fn new(summary: RecoverySummary, records: Vec<RecoveredRecord>) -> Recovery {
        debug_assert_eq!(summary.record_count, records.len() as u64);
        Recovery {
            records,
            truncated_tail: summary.truncated_tail,
            end: summary.end,
            segments: summary.segments,
            ended_at_stale_record: summary.ended_at_stale_record,
        }
    }

    /// LSN of the last record (0 when empty).
    pub fn last_lsn(&self) -> Lsn {
        self.records.last().map_or(0, |record| record.lsn)
    }

    /// The summary of this recovery.
    pub fn summary(&self) -> RecoverySummary {
        let mut counter = SummaryCounter::default();
        for r in &self.records {
            counter.add(r.lsn, &r.payload);
        }
        counter.finish(
            self.truncated_tail,
            self.end,
            self.segments.clone(),
            self.ended_at_stale_record,
        )
    }

    /// The report as one JSON object (records summarised, payloads omitted).
    pub fn to_json(&self) -> String {
        self.summary().to_json()
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.summary().fmt(f)
    }
}

/// Counts records into a summary as they stream by.
#[derive(Debug, Default)]
struct SummaryCounter {
    count: u64,
    first_lsn: Lsn,
    last_lsn: Lsn,
    payload_bytes: u64,
    crc: u32,
}

impl SummaryCounter {
    fn add(&mut self, lsn: Lsn, payload: &[u8]) {
        if self.count == 0 {
            self.first_lsn = lsn;
        }
        self.count += 1;
        self.last_lsn = lsn;
        self.payload_bytes += payload.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, payload);
    }

    fn finish(
        &self,
        truncated_tail: Option<TruncatedTail>,
        end: LogEnd,
        segments: Vec<SegmentSummary>,
        ended_at_stale_record: bool,
    ) -> RecoverySummary {
        RecoverySummary {
            record_count: self.count,
            first_lsn: self.first_lsn,
            last_lsn: self.last_lsn,
            payload_bytes: self.payload_bytes,
            payload_crc32c: self.crc,
            truncated_tail,
            end,
            segments,
            ended_at_stale_record,
        }
    }
}

impl RecoverySummary {
    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        let tail = match self.truncated_tail {
            Some(tail) => format!(
                "{{\"segment\":{},\"offset\":{},\"discarded_bytes\":{}}}",
                tail.segment, tail.offset, tail.discarded_bytes
            ),
            None => "null".to_string(),
        };
        let segments: Vec<String> = self
            .segments
            .iter()
            .map(|s| {
                format!(
                    "{{\"index\":{},\"generation\":{},\"file_bytes\":{},\"records\":{}}}",
                    s.index, s.generation, s.file_bytes, s.records
                )
            })
            .collect();
        format!(
            "{{\"records\":{},\"first_lsn\":{},\"last_lsn\":{},\"payload_bytes\":{},\"payload_crc32c\":\"{:08x}\",\"truncated_tail\":{},\"end\":{{\"segment\":{},\"generation\":{},\"offset\":{},\"next_lsn\":{}}},\"ended_at_stale_record\":{},\"segments\":[{}]}}",
            self.record_count,
            self.first_lsn,
            self.last_lsn,
            self.payload_bytes,
            self.payload_crc32c,
            tail,
            self.end.segment,
            self.end.generation,
            self.end.offset,
            self.end.next_lsn,
            self.ended_at_stale_record,
            segments.join(",")
        )
    }
}

impl fmt::Display for RecoverySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "records: {} (LSN {}..={}), {} segment(s)",
            self.record_count,
            self.first_lsn,
            self.last_lsn,
            self.segments.len()
        )?;
        match self.truncated_tail {
            Some(tail) => writeln!(
                f,
                "truncated tail: segment {} offset {} ({} bytes discarded)",
                tail.segment, tail.offset, tail.discarded_bytes
            )?,
            None => writeln!(f, "truncated tail: none")?,
        }
        write!(
            f,
            "log end: segment {} offset {} next LSN {}{}",
            self.end.segment,
            self.end.offset,
            self.end.next_lsn,
            if self.ended_at_stale_record {
                " (stale records of an older generation follow)"
            } else {
                ""
            }
        )
    }
}

/// Reads the journal in `dir` without modifying anything.
pub fn recover(dir: &Path) -> Result<Recovery, JournalError> {
    recover_with(dir, None)
}

/// [`recover`] as a deliberately broken variant would do it (`None` is the real recovery).
/// Only the mutants whose [`Mutant::changes_recovery`] says so (M4, M7, M8) change recovery; the
/// others recover like the real engine. Fails with
/// [`JournalError::MutantsNotBuilt`] when a mutant is given to a build without the `mutants`
/// feature.
pub fn recover_with(dir: &Path, mutant: Option<Mutant>) -> Result<Recovery, JournalError> {
    let mut records = Vec::new();
    let summary = recover_visiting(dir, mutant, &mut |r| records.push(r.to_record()))?;
    Ok(Recovery::new(summary, records))
}

/// [`recover_with`] streaming: each record of the log goes to `visit`, in LSN order, and only
/// the summary is returned. Memory stays bounded by a segment, whatever the journal's length.
pub fn recover_visiting(
    dir: &Path,
    mutant: Option<Mutant>,
    visit: &mut dyn FnMut(RecordView<'_>),
) -> Result<RecoverySummary, JournalError> {
    if mutant.is_some() && !crate::MUTANTS_BUILT {
        return Err(JournalError::MutantsNotBuilt);
    }
    let storage = RealStorage::new(crate::IoPathChoice::Pwritev2, 1 << 20)
        .map_err(|err| JournalError::io("set up storage", dir, 0, err))?;
    let _lock = lock_shared(&storage, dir)?;
    scan(&storage, dir, mutant, visit).map(|scan| scan.summary)
}

/// Recovery reads beside other readers, never beside a writer changing the journal. A missing
/// directory is an empty journal (a crash state from before its creation) and needs no lock.
fn lock_shared(storage: &dyn Storage, dir: &Path) -> Result<DirLock, JournalError> {
    match storage.lock_dir(dir, LockMode::Shared) {
        Err(DirLockError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {
            Ok(DirLock::none())
        }
        other => other.map_err(|err| JournalError::lock(dir, err)),
    }
}

/// [`recover`] through a given storage.
pub fn recover_with_storage(
    storage: &Arc<dyn Storage>,
    dir: &Path,
) -> Result<Recovery, JournalError> {
    let _lock = lock_shared(storage.as_ref(), dir)?;
    let mut records = Vec::new();
    let summary = scan(storage.as_ref(), dir, None, &mut |r| {
        records.push(r.to_record())
    })?
    .summary;
    Ok(Recovery::new(summary, records))
}

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

enum Remainder {
    Clean {
        stale: bool,
    },
    Dirty {
        discarded_bytes: u64,
        evidence: Option<(u64, Lsn, Lsn)>,
    },
}

/// Sector size below which a write cannot tear; the writer pads every flush with zeros to the
/// end of an alignment block (at least this large).
const SECTOR_BYTES: usize = 512;

/// Index of the first non-zero byte of `data`. Recovery runs over whole zero-filled segments
/// (and the oracles run it on every crash state), so it compares 8 bytes at a time.
fn first_nonzero(data: &[u8]) -> Option<usize> {
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
fn last_nonzero(data: &[u8]) -> Option<usize> {
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

/// Classifies the bytes of a segment from `pos` on (see the module comment). `missing_lsn` is
/// the LSN the log needs next.
fn classify(data: &[u8], pos: usize, segment: SegmentName, missing_lsn: Lsn) -> Remainder {
    let pos = pos.min(data.len());
    let rest = &data[pos..];
    if first_nonzero(rest).is_none() {
        return Remainder::Clean { stale: false };
    }
    let mut first_stale: Option<usize> = None;
    let mut last_own_end: Option<usize> = None;
    let mut evidence = None;
    let mut at = pos.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;
    while at + 4 <= data.len() {
        if magic_at(data, at) {
            if let Ok(record) = decode_record(&data[at..]) {
                if record.header.generation != segment.generation {
                    first_stale.get_or_insert(at);
                } else {
                    last_own_end = Some(at + record.span_bytes);
                    if record.header.synced_lsn >= missing_lsn && evidence.is_none() {
                        evidence = Some((at as u64, record.header.lsn, record.header.synced_lsn));
                    }
                }
                at += record.span_bytes.max(RECORD_ALIGN_BYTES);
                continue;
            }
        }
        at += RECORD_ALIGN_BYTES;
    }
    if last_own_end.is_none() {
        if first_stale == Some(pos) {
            return Remainder::Clean { stale: true };
        }
        // A clean flush leaves zeros up to the end of its last block; after that a recycled
        // file shows whatever its earlier life left there, often mid-record: a fragment whose
        // header the new life overwrote, with or without whole stale records after it. With no
        // record of this generation anywhere after the end, nothing of this life is lost there.
        let sector_end = pos.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        let head_zero = data[pos..sector_end.min(data.len())]
            .iter()
            .all(|&b| b == 0);
        if head_zero {
            return Remainder::Clean {
                stale: first_stale.is_some(),
            };
        }
    }
    let garbage_end = first_stale.unwrap_or(data.len());
    let nonzero_end = last_nonzero(&data[pos..garbage_end]).map_or(pos, |i| pos + i + 1);
    let dirty_end = nonzero_end.max(last_own_end.unwrap_or(pos));
    Remainder::Dirty {
        discarded_bytes: (dirty_end - pos) as u64,
        evidence,
    }
}

/// Largest zero gap between two groups (a group moves to the next write block when the block
/// before is still being written; write blocks are at most 64 KiB).
const MAX_GAP_BYTES: usize = crate::storage::MAX_BLOCK_BYTES;

/// Where the next record of the log starts: at `pos`, or after a gap of zeros ending at a
/// 512-byte boundary, provided a valid record of the segment's generation with the expected
/// LSN is there. None at the end of the log.
fn next_record_at(
    data: &[u8],
    pos: usize,
    segment: SegmentName,
    expected: Option<Lsn>,
    mutant: Option<Mutant>,
) -> Option<usize> {
    let fits = |at: usize| match decode_for(&data[at..], mutant) {
        // M7 (stale records of a recycled file accepted): no generation check, and so any
        // valid record where the next one is expected is taken as part of the log.
        #[cfg(feature = "mutants")]
        Ok(_) if selected(mutant, Mutant::M7) => true,
        // M11 (a hole goes unnoticed): no LSN check.
        #[cfg(feature = "mutants")]
        Ok(record) if selected(mutant, Mutant::M11) => {
            record.header.generation == segment.generation
        }
        Ok(record) => {
            record.header.generation == segment.generation
                && !matches!(expected, Some(want) if record.header.lsn != want)
        }
        Err(_) => false,
    };
    if pos >= data.len() {
        return None;
    }
    if fits(pos) {
        return Some(pos);
    }
    // Only between records (never before the first one) and only over zeros.
    expected?;
    let window = &data[pos..data.len().min(pos + MAX_GAP_BYTES + 1)];
    let gap = first_nonzero(window)?;
    let at = pos + gap;
    // SECTOR_BYTES is a power of two.
    (gap > 0 && at & (SECTOR_BYTES - 1) == 0 && fits(at)).then_some(at)
}

/// A valid record of an older generation carrying exactly the LSN the log needs next, right
/// where the log needs it, is no leftover: leftovers of a recycled file were retired, so their
/// LSNs are below every LSN the log still needs. It means the file was renamed to another
/// generation (by hand, or by a tool), and taking its records for stale would silently drop
/// them and let the writer overwrite them.
fn refuse_renamed_generation(
    data: &[u8],
    pos: usize,
    seg: SegmentName,
    expected: Option<Lsn>,
    dir: &Path,
) -> Result<(), JournalError> {
    let Some(want) = expected else {
        return Ok(());
    };
    let Some(bytes) = data.get(pos..) else {
        return Ok(());
    };
    match decode_record(bytes) {
        Ok(record) if record.header.generation != seg.generation && record.header.lsn == want => {
            Err(JournalError::BadSegmentFile {
                path: dir.join(seg.file_name()),
                reason: format!(
                    "at offset {pos} it holds record LSN {want}, the next of the log, written as \
                     generation {} in a file named generation {}: the file was renamed; \
                     rename it back to {}",
                    record.header.generation,
                    seg.generation,
                    SegmentName {
                        generation: record.header.generation,
                        ..seg
                    }
                    .file_name()
                ),
            })
        }
        _ => Ok(()),
    }
}

/// Reads a segment file whole, refusing one the engine cannot have written: every life of a
/// segment file starts with zeros (prepared, unused), a record header of this or an earlier
/// generation, or (append mode) nothing. Anything else is a stray file with a segment's name,
/// which opening would otherwise zero-fill as a "torn tail".
fn read_segment(
    storage: &dyn Storage,
    dir: &Path,
    seg: SegmentName,
) -> Result<Vec<u8>, JournalError> {
    let path = dir.join(seg.file_name());
    let data = storage
        .read_file(&path, MAX_SEGMENT_FILE_BYTES)
        .map_err(|err| JournalError::io("read segment", &path, 0, err))?;
    let head = &data[..data.len().min(4)];
    if !head.iter().all(|&b| b == 0) && head != RECORD_MAGIC.to_le_bytes() {
        return Err(JournalError::BadSegmentFile {
            path,
            reason: format!(
                "starts with {head:02x?}, neither zeros nor a record header: not a segment this \
                 engine wrote, so it is left untouched"
            ),
        });
    }
    Ok(data)
}

/// Whether `data` (segment `seg`) starts at offset 0 with a valid record of its own generation
/// carrying LSN `expected`.
fn starts_log_at(
    data: &[u8],
    seg: SegmentName,
    expected: Option<Lsn>,
    mutant: Option<Mutant>,
) -> bool {
    expected.is_some() && next_record_at(data, 0, seg, expected, mutant) == Some(0)
}

/// Decodes a record of the log as recovery (or the broken variant `mutant` of it) does.
#[cfg_attr(not(feature = "mutants"), allow(unused_variables))]
fn decode_for(bytes: &[u8], mutant: Option<Mutant>) -> Result<DecodedRecord<'_>, DecodeFailure> {
    // M4 (no checksum check on the tail): a record is accepted without its checksum.
    #[cfg(feature = "mutants")]
    if selected(mutant, Mutant::M4) {
        return crate::record::decode_record_unchecked(bytes);
    }
    decode_record(bytes)
}

fn magic_at(data: &[u8], at: usize) -> bool {
    data.get(at..at + 4)
        .is_some_and(|bytes| bytes == RECORD_MAGIC.to_le_bytes())
}

/// Looks for a record of the segment's own generation from `from` on whose writer knew LSN
/// `missing_lsn` was durable: proof that the end of the log is corruption, not a torn tail.
fn find_durable_evidence(
    data: &[u8],
    from: usize,
    segment: SegmentName,
    missing_lsn: Lsn,
) -> Option<(u64, Lsn, Lsn)> {
    let mut at = from.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;
    while at + 4 <= data.len() {
        if magic_at(data, at) {
            if let Ok(record) = decode_record(&data[at..]) {
                if record.header.generation == segment.generation
                    && record.header.synced_lsn >= missing_lsn
                {
                    return Some((at as u64, record.header.lsn, record.header.synced_lsn));
                }
            }
        }
        at += RECORD_ALIGN_BYTES;
    }
    None
}

/// Bytes before the end of the log kept for the writer: at least its largest write block.
pub(crate) const END_TAIL_BYTES: u64 = crate::storage::MAX_BLOCK_BYTES as u64;

/// Recovers the journal in `dir`; `mutant` selects a deliberately broken recovery (M4, M7,
/// M8; any other mutant recovers like the real engine).
pub(crate) fn scan(
    storage: &dyn Storage,
    dir: &Path,
    mutant: Option<Mutant>,
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
    /// A segment read ahead by the sealed-segment rule, kept for its own turn.
    read_ahead: Option<(SegmentName, Vec<u8>)>,
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
            counter: SummaryCounter::default(),
            summaries: Vec::new(),
            expected,
            end: None,
            end_is_final: false,
            end_tail: (0, Vec::new()),
            truncated_tail: None,
            ended_at_stale_record: false,
            read_ahead: None,
        }
    }

    /// Scans `segments[position]`: its records of the log, then what follows them.
    fn scan_segment(
        &mut self,
        segments: &[SegmentName],
        position: usize,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> Result<(), JournalError> {
        let seg = segments[position];
        let data = match self.read_ahead.take() {
            Some((next, data)) if next == seg => data,
            _ => read_segment(self.storage, self.dir, seg)?,
        };
        let mut summary = SegmentSummary {
            index: seg.index,
            generation: seg.generation,
            file_bytes: data.len() as u64,
            records: 0,
            last_lsn: 0,
        };
        let consecutive = match self.end {
            None => position == 0,
            Some((previous, _)) => !self.end_is_final && seg.index == previous.index + 1,
        };
        if !consecutive {
            self.past_end(seg, &data)?;
            self.summaries.push(summary);
            return Ok(());
        }
        let pos = self.read_records(&data, seg, &mut summary, visit);
        refuse_renamed_generation(&data, pos, seg, self.expected, self.dir)?;
        let remainder = self.remainder(&data, pos, seg, segments.get(position + 1))?;
        if summary.records == 0 && position > 0 {
            if let Remainder::Clean { stale } = remainder {
                // A prepared but unused segment: the log ended in the previous one.
                self.end_is_final = true;
                self.ended_at_stale_record |= stale;
                self.summaries.push(summary);
                return Ok(());
            }
        }
        self.settle_end(seg, &data, pos, remainder)?;
        self.summaries.push(summary);
        Ok(())
    }

    /// A segment past the end of the log: only looked at for proof that the end was
    /// corruption.
    fn past_end(&mut self, seg: SegmentName, data: &[u8]) -> Result<(), JournalError> {
        self.end_is_final = true;
        let missing = self.expected.unwrap_or(0);
        if let Some((at, lsn, synced)) =
            find_durable_evidence(data, 0, seg, missing).filter(|_| self.report_corruption)
        {
            let (end_seg, end_offset) = self.end.map_or((seg.index, 0), |(s, o)| (s.index, o));
            return Err(corruption(
                end_seg, end_offset, missing, seg.index, at, lsn, synced,
            ));
        }
        Ok(())
    }

    /// Shows the records of the log in `data` to `visit`, in order; returns where they end.
    fn read_records(
        &mut self,
        data: &[u8],
        seg: SegmentName,
        summary: &mut SegmentSummary,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> usize {
        let mut pos = 0usize;
        while let Some(at) = next_record_at(data, pos, seg, self.expected, self.mutant) {
            let Ok(record) = decode_for(&data[at..], self.mutant) else {
                break;
            };
            visit(RecordView {
                lsn: record.header.lsn,
                payload: record.payload,
                segment: seg.index,
                offset: at as u64,
            });
            self.counter.add(record.header.lsn, record.payload);
            summary.records += 1;
            summary.last_lsn = record.header.lsn;
            self.expected = Some(record.header.lsn + 1);
            pos = at + record.span_bytes;
        }
        pos
    }

    /// What follows the records of segment `seg` from `pos` on. `next` is the segment after
    /// it in the listing, read ahead when the remainder looks dirty.
    fn remainder(
        &mut self,
        data: &[u8],
        pos: usize,
        seg: SegmentName,
        next: Option<&SegmentName>,
    ) -> Result<Remainder, JournalError> {
        let remainder = classify(data, pos, seg, self.expected.unwrap_or(0));
        if !matches!(remainder, Remainder::Dirty { .. }) {
            return Ok(remainder);
        }
        self.read_ahead = match next {
            Some(&next) if next.index == seg.index + 1 => {
                Some((next, read_segment(self.storage, self.dir, next)?))
            }
            _ => None,
        };
        // The sealed-segment rule: the writer moves to segment i+1 only after every record
        // of segment i is durable, so a next segment that starts at offset 0 with exactly
        // the next LSN proves this one was sealed at this end. What follows it here is
        // leftovers of the file's earlier life, not a torn tail, and the log goes on.
        let (expected, mutant) = (self.expected, self.mutant);
        if self
            .read_ahead
            .as_ref()
            .is_some_and(|(next, d)| starts_log_at(d, *next, expected, mutant))
        {
            return Ok(Remainder::Clean { stale: false });
        }
        Ok(remainder)
    }

    /// The log ends at `pos` of segment `seg` (so far): keeps the bytes before it for the
    /// writer, and records a torn tail (or fails on proof of corruption).
    fn settle_end(
        &mut self,
        seg: SegmentName,
        data: &[u8],
        pos: usize,
        remainder: Remainder,
    ) -> Result<(), JournalError> {
        self.end = Some((seg, pos as u64));
        let tail_from = (pos as u64).saturating_sub(END_TAIL_BYTES);
        self.end_tail = (tail_from, data[tail_from as usize..pos].to_vec());
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
                    offset: pos as u64,
                    discarded_bytes,
                });
                if let Some((at, lsn, synced)) = evidence.filter(|_| self.report_corruption) {
                    let missing = self.expected.unwrap_or(0);
                    return Err(corruption(
                        seg.index, pos as u64, missing, seg.index, at, lsn, synced,
                    ));
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
    evidence_offset: u64,
    evidence_lsn: Lsn,
    evidence_synced: Lsn,
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
