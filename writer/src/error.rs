//! Errors of the journal.

use std::path::PathBuf;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An earlier write or sync failed; nothing is acknowledged until the journal is reopened.
    #[error("journal is poisoned by an earlier I/O error; reopen it to recover")]
    Poisoned,
    /// A record that fails its checks is followed by data that proves it was once durable.
    #[error("mid-log corruption in segment {segment} at offset {offset}: {reason}")]
    MidLogCorruption {
        /// Segment index.
        segment: u64,
        /// Byte offset of the bad record in the segment file.
        offset: u64,
        /// What was found.
        reason: String,
    },
    /// A system call failed.
    #[error("{op} {path} at offset {offset}: {source}")]
    Io {
        /// The operation (open, write, fdatasync, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The file offset, 0 when not applicable.
        offset: u64,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
    /// A record larger than the journal can hold.
    #[error("record of {len_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    RecordTooLarge {
        /// Payload length.
        len_bytes: usize,
        /// Largest accepted payload.
        limit_bytes: usize,
    },
    /// Options that cannot work.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A file in the journal directory that cannot belong to it.
    #[error("unexpected journal file {path}: {reason}")]
    BadSegmentFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another journal (or a recovery, for a writer) has the directory open.
    #[error(
        "journal directory {path} is in use by {}: one journal directory has one writer at a time",
        holder_pid.map_or("another process".to_string(), |pid| format!("process {pid}"))
    )]
    DirectoryLocked {
        /// The journal directory.
        path: PathBuf,
        /// The process holding the lock, when /proc/locks tells.
        holder_pid: Option<u32>,
    },
    /// `bench` was pointed at a directory that already holds a journal.
    #[error(
        "{path} already holds a journal: bench writes and retires segments and would destroy \
         its records; give bench an empty or new directory"
    )]
    JournalExists {
        /// The directory.
        path: PathBuf,
    },
    /// A mutant was selected but this build does not contain the mutants.
    #[error("a mutant was selected but the engine was built without the `mutants` feature")]
    MutantsNotBuilt,
    /// The journal has been closed.
    #[error("journal is closed")]
    Closed,
    /// A checksum computed before writing did not match (memory corruption).
    #[error("record LSN {lsn} failed its checksum right before writing")]
    ChecksumBeforeWrite {
        /// The record.
        lsn: u64,
    },
}

impl JournalError {
    /// The lock on journal directory `dir` was not granted.
    pub(crate) fn lock(dir: &std::path::Path, err: crate::DirLockError) -> JournalError {
        match err {
            crate::DirLockError::Held { holder_pid } => JournalError::DirectoryLocked {
                path: dir.to_path_buf(),
                holder_pid,
            },
            crate::DirLockError::Io(source) => JournalError::io("lock directory", dir, 0, source),
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        offset: u64,
        source: std::io::Error,
    ) -> JournalError {
        JournalError::Io {
            op,
            path: path.into(),
            offset,
            source,
        }
    }
}
