//! Recovery: reads the segments in index order and returns the records of the log, stopping at
//! the first record that fails its checks.
//!
//! What follows the end decides what the end was:
//! - nothing but zeros, or a valid record of an older generation (a recycled file): a clean end;
//! - anything else (garbage, a cut record, records that were in flight): a torn tail, reported
//!   as [`TruncatedTail`], never as records and never as an error;
//! - a valid record of the segment's own generation whose `synced_lsn` shows the writer knew
//!   the missing record was durable: mid-log corruption, a hard error.
//!
//! Segments are read in pieces of [`RecoveryOptions::read_chunk_bytes`], and no further than
//! [`SCAN_WINDOW_BYTES`] past the end of the log: the time is that of the log, not of the
//! preallocated files.
//!
//! Layout: `summary` (what recovery returns), `read` (bounded reads of a segment), `records`
//! (the records of the log and the gaps between groups), `classify` (what follows the end),
//! `scan` (the walk over the segments), `zeros` (word-at-a-time zero searches).

mod classify;
mod read;
mod records;
mod scan;
mod summary;
mod zeros;

use std::path::Path;
use std::sync::Arc;

use crate::dir_lock::{DirLock, DirLockError, LockMode};
use crate::error::JournalError;
use crate::mutants::Mutant;
use crate::storage::{RealStorage, Storage};

pub(crate) use scan::{scan, Scan};
pub use summary::{
    LogEnd, RecordView, RecoveredRecord, Recovery, RecoverySummary, SegmentSummary, TruncatedTail,
};

/// Largest segment file recovery reads.
pub const MAX_SEGMENT_FILE_BYTES: u64 = 1 << 30;

/// How far past the end of the log (in the segment it ends in, and from the start of each
/// segment after it) recovery looks: twice the most staging memory a writer uses. Every byte a
/// writer of the segment's generation wrote past the end lies closer, and so does the first
/// record proving the end was corruption (docs/journal-format.md, "How far recovery reads").
pub const SCAN_WINDOW_BYTES: u64 = 2 * crate::options::MAX_STAGING_BYTES as u64;

/// Options of a recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// Bytes of a segment read at a time, and so the memory recovery holds (besides one record
    /// longer than this, read whole). At least 128 KiB are used.
    pub read_chunk_bytes: usize,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            // Large enough that a read costs little beside its copy, small enough to stay in
            // the caches.
            read_chunk_bytes: 1 << 20,
        }
    }
}

/// Reads the journal in `dir` without modifying anything.
pub fn recover(dir: &Path) -> Result<Recovery, JournalError> {
    recover_with(dir, None)
}

/// [`recover`] as a deliberately broken variant would do it (`None` is the real recovery).
/// Only the mutants whose [`Mutant::changes_recovery`] says so (M4, M7, M8, M11) change
/// recovery; the others recover like the real engine. Fails with
/// [`JournalError::MutantsNotBuilt`] when a mutant is given to a build without the `mutants`
/// feature.
pub fn recover_with(dir: &Path, mutant: Option<Mutant>) -> Result<Recovery, JournalError> {
    let mut records = Vec::new();
    let summary = recover_visiting(dir, mutant, &mut |r| records.push(r.to_record()))?;
    Ok(Recovery::new(summary, records))
}

/// [`recover_with`] streaming: each record of the log goes to `visit`, in LSN order, and only
/// the summary is returned. Memory stays bounded by the read window, whatever the journal's
/// length.
pub fn recover_visiting(
    dir: &Path,
    mutant: Option<Mutant>,
    visit: &mut dyn FnMut(RecordView<'_>),
) -> Result<RecoverySummary, JournalError> {
    recover_with_options(dir, mutant, &RecoveryOptions::default(), visit)
}

/// [`recover_visiting`] with the given options.
pub fn recover_with_options(
    dir: &Path,
    mutant: Option<Mutant>,
    options: &RecoveryOptions,
    visit: &mut dyn FnMut(RecordView<'_>),
) -> Result<RecoverySummary, JournalError> {
    if mutant.is_some() && !crate::MUTANTS_BUILT {
        return Err(JournalError::MutantsNotBuilt);
    }
    let storage = RealStorage::new(crate::IoPathChoice::Pwritev2, 1 << 20)
        .map_err(|err| JournalError::io("set up storage", dir, 0, err))?;
    let _lock = lock_shared(&storage, dir)?;
    scan::scan_with(&storage, dir, mutant, options, visit).map(|scan| scan.summary)
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
