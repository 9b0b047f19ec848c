//! What the sectors of each write belong to: file-system metadata (the METADATA flag), a
//! journal segment (the write carries engine records, whose headers name their generation), or
//! other data, grouped by sector range. The engine's records are found in the logged data, so
//! the rows come from the recording itself, not from a guess about the file system's layout.

use std::collections::BTreeMap;

use powercut_oracles::blocklog::{BlockLog, Entry};

/// The bytes `PCRJ`: the magic of an engine record (docs/journal-format.md).
const RECORD_MAGIC: &[u8; 4] = b"PCRJ";
const RECORD_HEADER_BYTES: usize = 32;
/// The most of a write scanned for records: the first records tell the segment.
const SCAN_BYTES: u64 = 1 << 20;
/// A payload larger than this is not taken for a record header.
const MAX_PAYLOAD_BYTES: u64 = 64 << 20;
/// Writes of other data closer than this (bytes) share a row.
const CLUSTER_GAP_BYTES: u64 = 1 << 20;
/// Rows of other data shown apart; the rest share one row.
const MAX_OTHER_ROWS: usize = 6;

/// Records found in one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub generation: u32,
    pub first_lsn: u64,
    pub last_lsn: u64,
}

/// The rows and, for each entry that changes the device, its row and the records it carries.
#[derive(Debug, Default)]
pub struct Rows {
    pub names: Vec<String>,
    /// Entry index -> row.
    pub row_of: BTreeMap<u64, usize>,
    pub records: BTreeMap<u64, RecordSpan>,
}

/// Classifies every write and discard of `log`.
pub fn classify(log: &BlockLog) -> Rows {
    let writes: Vec<&Entry> = log
        .entries()
        .iter()
        .filter(|e| e.modifies_device())
        .collect();
    let mut records = BTreeMap::new();
    for e in writes.iter().filter(|e| e.has_data() && !e.is_metadata()) {
        if let Some(span) = records_in(log, e) {
            records.insert(e.index, span);
        }
    }
    let mut rows = Rows {
        records,
        ..Rows::default()
    };
    if writes.iter().any(|e| e.is_metadata()) {
        rows.names.push("file-system metadata".into());
        for e in writes.iter().filter(|e| e.is_metadata()) {
            rows.row_of.insert(e.index, 0);
        }
    }
    let segments = segment_extents(&writes, &rows.records);
    let first_segment_row = rows.names.len();
    for generation in segments.keys() {
        rows.names
            .push(format!("journal segment, generation {generation:x}"));
    }
    let mut others = Vec::new();
    for e in &writes {
        if rows.row_of.contains_key(&e.index) {
            continue;
        }
        let gen = rows
            .records
            .get(&e.index)
            .map(|s| s.generation)
            .or_else(|| {
                segments
                    .iter()
                    .find(|(_, ranges)| ranges.iter().any(|r| overlaps(r, e)))
                    .map(|(g, _)| *g)
            });
        match gen {
            Some(g) => {
                let row = first_segment_row + segments.keys().position(|k| *k == g).unwrap_or(0);
                rows.row_of.insert(e.index, row);
            }
            None => others.push(*e),
        }
    }
    cluster_others(&mut rows, &others);
    rows
}

/// Byte ranges on the device of the writes of each generation.
fn segment_extents(
    writes: &[&Entry],
    records: &BTreeMap<u64, RecordSpan>,
) -> BTreeMap<u32, Vec<(u64, u64)>> {
    let mut out: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for e in writes {
        if let Some(span) = records.get(&e.index) {
            out.entry(span.generation).or_default().push((
                e.target_offset_bytes,
                e.target_offset_bytes + e.target_len_bytes,
            ));
        }
    }
    out
}

fn overlaps(range: &(u64, u64), e: &Entry) -> bool {
    e.target_offset_bytes < range.1 && range.0 < e.target_offset_bytes + e.target_len_bytes
}

/// Rows for the writes that are neither metadata nor journal: one per cluster of nearby
/// sectors, the smallest clusters merged into one row when there are many.
fn cluster_others(rows: &mut Rows, others: &[&Entry]) {
    let mut sorted: Vec<&Entry> = others.to_vec();
    sorted.sort_by_key(|e| e.target_offset_bytes);
    let mut clusters: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    for e in sorted {
        let (start, end) = (
            e.target_offset_bytes,
            e.target_offset_bytes + e.target_len_bytes,
        );
        match clusters.last_mut() {
            Some(c) if start <= c.1 + CLUSTER_GAP_BYTES => {
                c.1 = c.1.max(end);
                c.2.push(e.index);
            }
            _ => clusters.push((start, end, vec![e.index])),
        }
    }
    if clusters.len() > MAX_OTHER_ROWS {
        clusters.sort_by_key(|c| std::cmp::Reverse(c.2.len()));
        let rest: Vec<u64> = clusters
            .drain(MAX_OTHER_ROWS - 1..)
            .flat_map(|c| c.2)
            .collect();
        clusters.sort_by_key(|c| c.0);
        let row = rows.names.len() + clusters.len();
        for index in rest {
            rows.row_of.insert(index, row);
        }
        name_clusters(rows, &clusters);
        rows.names.push("other data, small ranges".into());
    } else {
        name_clusters(rows, &clusters);
    }
}

fn name_clusters(rows: &mut Rows, clusters: &[(u64, u64, Vec<u64>)]) {
    for (start, end, indexes) in clusters {
        let row = rows.names.len();
        rows.names.push(format!(
            "other data, bytes {} to {}",
            super::doc::bytes(*start),
            super::doc::bytes(*end)
        ));
        for index in indexes {
            rows.row_of.insert(*index, row);
        }
    }
}

/// The engine records in the first [`SCAN_BYTES`] of a write: their generation and LSNs.
pub fn records_in(log: &BlockLog, entry: &Entry) -> Option<RecordSpan> {
    let len = entry.target_len_bytes.min(SCAN_BYTES) as usize;
    let mut data = vec![0u8; len];
    log.read_data_at(entry, 0, &mut data).ok()?;
    let mut span: Option<RecordSpan> = None;
    let mut at = 0usize;
    while at + RECORD_HEADER_BYTES <= data.len() {
        match record_at(&data[at..]) {
            Some((generation, lsn, total)) => {
                let s = span.get_or_insert(RecordSpan {
                    generation,
                    first_lsn: lsn,
                    last_lsn: lsn,
                });
                s.first_lsn = s.first_lsn.min(lsn);
                s.last_lsn = s.last_lsn.max(lsn);
                at += total;
            }
            None => at += 8,
        }
    }
    span
}

/// A record header at the start of `bytes`: (generation, LSN, bytes taken with padding). The
/// checksum is checked when the payload is inside `bytes`; a record running past the scanned
/// bytes is taken on its header's plausibility.
fn record_at(bytes: &[u8]) -> Option<(u32, u64, usize)> {
    if &bytes[..4] != RECORD_MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let (crc, lsn, synced, len, generation) =
        (u32_at(4), u64_at(8), u64_at(16), u32_at(24), u32_at(28));
    if lsn == 0 || synced > lsn || u64::from(len) > MAX_PAYLOAD_BYTES {
        return None;
    }
    let end = RECORD_HEADER_BYTES + len as usize;
    if end <= bytes.len() {
        let sum = crc32c::crc32c_append(crc32c::crc32c(&bytes[8..32]), &bytes[32..end]);
        if sum != crc {
            return None;
        }
    }
    Some((generation, lsn, end.div_ceil(8) * 8))
}
