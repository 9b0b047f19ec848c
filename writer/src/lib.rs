//! The durable-write engine: an append-only journal of checksummed records on O_DIRECT files,
//! written through io_uring (or pwritev2) with group commit.
//!
//! The byte format, the segment naming, the recovery rules and the ingest server's wire
//! protocol are described in `docs/journal-format.md`.

mod alignment;
mod dir_lock;
mod error;
mod journal;
mod mutants;
mod options;
pub mod record;
mod recovery;
mod segment;
pub mod server;
pub mod sim;
mod storage;
mod sys;

pub mod bench;
pub mod capability;

pub use alignment::discover_alignment_bytes;
pub use dir_lock::{DirLock, DirLockError, LockMode, TRANSIENT_HOLDER_WAIT};
pub use error::JournalError;
pub use journal::{Journal, JournalStats, OpenReport};
pub use mutants::{Mutant, MUTANTS_BUILT};
pub use options::{
    Durability, IoPathChoice, JournalOptions, Preallocation, MAX_GROUPS_IN_FLIGHT,
    MAX_STAGING_BYTES,
};
pub use recovery::{
    recover, recover_visiting, recover_with, recover_with_options, recover_with_storage, LogEnd,
    RecordView, RecoveredRecord, Recovery, RecoveryOptions, RecoverySummary, SegmentSummary,
    TruncatedTail, MAX_SEGMENT_FILE_BYTES, SCAN_WINDOW_BYTES,
};
pub use storage::{
    AlignedBuf, FaultPlan, FaultyStorage, IoPath, OpenFlags, ReadFile, RealStorage, SegmentFile,
    Storage, READ_ALIGN_BYTES,
};

/// Log sequence number: records are numbered 1, 2, 3, ... without holes.
pub type Lsn = u64;
