//! What recovery returns: the records, the torn tail, where the log ends, the segments seen,
//! and their summary as JSON and text.

use std::fmt;

use crate::Lsn;

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
pub(super) struct SummaryCounter {
    count: u64,
    first_lsn: Lsn,
    last_lsn: Lsn,
    payload_bytes: u64,
    crc: u32,
}

impl SummaryCounter {
    pub(super) fn add(&mut self, lsn: Lsn, payload: &[u8]) {
        if self.count == 0 {
            self.first_lsn = lsn;
        }
        self.count += 1;
        self.last_lsn = lsn;
        self.payload_bytes += payload.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, payload);
    }

    pub(super) fn finish(
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
