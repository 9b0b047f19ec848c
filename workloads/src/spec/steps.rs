//! The steps of a workload: what each does, how it reads in progress output, how many acks and
//! records it produces.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::forms::{FileStepFile, StepFile};
use super::program::ExecStep;
use super::scalars::{de_clear_after_steps, de_clients, de_commit_every, de_records_count, one};

/// One step of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StepFile", into = "StepFile")]
pub enum Step {
    /// Append records from the main writer.
    Append(AppendStep),
    /// Close the current segment and continue in the next one.
    Rotate,
    /// A checkpoint: retire every sealed segment whose records are all acknowledged, so that
    /// later segments reuse those files (with `recycle: true`). Acked as `t:LSN`.
    Retire,
    /// A file or directory operation under `root/files`.
    File(FileOp),
    /// Records sent by concurrent clients of the engine's ingest server.
    Ingest(IngestStep),
    /// Close the journal, check its recovery, open it again.
    Reopen,
    /// Make I/O to some sectors of the data disk fail with EIO from here on (invariant I7).
    Fault(FaultSpec),
    /// Map the whole data disk back to the device below (undo `fault:`).
    ClearFault,
    /// Run a program under test in the guest; its ack lines become acks.
    Exec(ExecStep),
}

/// `fault:` step: which I/O fails and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What fails (`writes`: reads and writes of the target sectors return EIO).
    pub eio: EioKind,
    /// The sectors that fail.
    pub target: FaultTarget,
    /// Clear the fault after this many further steps (none: a `clear_fault:` step clears it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_clear_after_steps"
    )]
    pub clear_after_steps: Option<u64>,
}

/// What an injected fault makes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EioKind {
    /// Reads and writes of the target sectors fail (dm `error` target); flushes still succeed.
    Writes,
    /// Every flush of the data device fails (a dm-flakey piece with `error_writes` over the
    /// reserved tail of the disk, which the file system never writes: dm sends each flush to
    /// every target of the table). Writes still succeed; `fdatasync` returns EIO. Target:
    /// `device`.
    Flush,
}

/// Which sectors of the data disk a fault covers. Written `journal`, `device`,
/// `{ file: NAME }` or `{ sectors: [start, count] }` (serde_yaml would otherwise want a YAML tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTarget {
    /// Every block of the journal's segment files at the time of the fault (FIEMAP in the
    /// guest), so only the engine's own O_DIRECT writes fail and the file system stays usable.
    Journal,
    /// `[start, count]` in 512-byte sectors of the data disk.
    Sectors([u64; 2]),
    /// The whole data device: what a flush fault covers.
    Device,
    /// Every block of one file at the time of the fault (FIEMAP in the guest): NAME is relative
    /// to the program's data directory (an engine workload's: its journal directory).
    File(String),
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultTarget::Journal => {
                f.write_str("the journal's segment files (a program's: its data directory's files)")
            }
            FaultTarget::Device => f.write_str("the data device"),
            FaultTarget::File(name) => write!(f, "the file {name}"),
            FaultTarget::Sectors([start, count]) => {
                write!(f, "sectors {start}..{}", start.saturating_add(*count))
            }
        }
    }
}

/// `append:` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendStep {
    /// Number of records.
    #[serde(deserialize_with = "de_records_count")]
    pub count: u64,
    /// Payload size, drawn uniformly from the range per record.
    pub size: SizeRange,
    /// 1: each record is appended durably and acked alone; k > 1: k records are appended, then
    /// one commit acks the group.
    #[serde(default = "one", deserialize_with = "de_commit_every")]
    pub commit_every: u64,
}

/// `ingest:` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestStep {
    /// Concurrent client connections (writers 1..=clients).
    #[serde(deserialize_with = "de_clients")]
    pub clients: u64,
    /// Records each client sends, one at a time, each acked on the server's reply.
    #[serde(deserialize_with = "de_records_count")]
    pub records_per_client: u64,
    /// Payload size range.
    pub size: SizeRange,
}

/// An inclusive range of record payload sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    /// Smallest payload.
    pub min_bytes: u64,
    /// Largest payload.
    pub max_bytes: u64,
}

/// `file:` step, checked: the fields each operation needs and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FileStepFile", into = "FileStepFile")]
pub enum FileOp {
    /// Create (or overwrite) `path` with `size_bytes` of seed-derived contents.
    Create {
        /// Path under `root/files`.
        path: String,
        /// Size of the contents.
        size_bytes: u64,
        /// fsync the file after writing.
        fsync_file: bool,
        /// fsync its directory (and any directory created for it).
        fsync_dir: bool,
    },
    /// Rename `from` to `to`.
    Rename {
        /// Existing file.
        from: String,
        /// New name (replaced if it exists).
        to: String,
        /// fsync the file before the rename.
        fsync_file: bool,
        /// fsync the directories involved after the rename.
        fsync_dir: bool,
    },
    /// Remove `path`.
    Remove {
        /// Existing file.
        path: String,
        /// fsync its directory after the removal.
        fsync_dir: bool,
    },
}

impl FileOp {
    /// Whether the operation is acknowledged: only when every fsync that makes it durable was
    /// asked for, since only then is durability promised.
    pub fn is_acked(&self) -> bool {
        match self {
            FileOp::Create {
                fsync_file,
                fsync_dir,
                ..
            }
            | FileOp::Rename {
                fsync_file,
                fsync_dir,
                ..
            } => *fsync_file && *fsync_dir,
            FileOp::Remove { fsync_dir, .. } => *fsync_dir,
        }
    }
}

impl Step {
    /// The step's key in the file: `append`, `rotate`, `file`, `ingest`, `reopen`, `exec`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Append(_) => "append",
            Step::Rotate => "rotate",
            Step::Retire => "retire",
            Step::File(_) => "file",
            Step::Ingest(_) => "ingest",
            Step::Reopen => "reopen",
            Step::Fault(_) => "fault",
            Step::ClearFault => "clear_fault",
            Step::Exec(_) => "exec",
        }
    }

    /// A one-line description for progress output and error messages.
    pub fn describe(&self) -> String {
        match self {
            Step::Append(a) => format!(
                "append {} records of {} bytes, commit every {}",
                a.count, a.size, a.commit_every
            ),
            Step::Rotate => "rotate".to_string(),
            Step::Retire => "retire the segments of acked records".to_string(),
            Step::File(FileOp::Create {
                path, size_bytes, ..
            }) => {
                format!("create {path} ({size_bytes} bytes)")
            }
            Step::File(FileOp::Rename { from, to, .. }) => format!("rename {from} to {to}"),
            Step::File(FileOp::Remove { path, .. }) => format!("remove {path}"),
            Step::Ingest(i) => format!(
                "ingest: {} clients x {} records of {} bytes",
                i.clients, i.records_per_client, i.size
            ),
            Step::Reopen => "reopen".to_string(),
            Step::Fault(f) => {
                let what = match f.eio {
                    EioKind::Writes => format!("EIO on {}", f.target),
                    EioKind::Flush => format!("EIO on every flush of {}", f.target),
                };
                match f.clear_after_steps {
                    Some(n) => format!("fault: {what} for {n} steps"),
                    None => format!("fault: {what}"),
                }
            }
            Step::ClearFault => "clear fault".to_string(),
            Step::Exec(e) => e.describe(),
        }
    }

    /// Acks this step produces.
    pub fn acks(&self) -> u64 {
        match self {
            Step::Append(a) => a.count.div_ceil(a.commit_every),
            Step::File(op) => u64::from(op.is_acked()),
            Step::Ingest(i) => i.clients * i.records_per_client,
            // A reopen acks what its recovery returned (I9).
            Step::Retire | Step::Reopen => 1,
            // A program acks what it chooses to: not known in advance.
            Step::Rotate | Step::Fault(_) | Step::ClearFault | Step::Exec(_) => 0,
        }
    }

    /// Records this step appends.
    pub fn records(&self) -> u64 {
        match self {
            Step::Append(a) => a.count,
            Step::Ingest(i) => i.clients * i.records_per_client,
            _ => 0,
        }
    }

    /// Largest number of record bytes (payloads) this step may append.
    pub(super) fn max_record_bytes(&self) -> u64 {
        match self {
            Step::Append(a) => a.count * a.size.max_bytes,
            Step::Ingest(i) => i.clients * i.records_per_client * i.size.max_bytes,
            _ => 0,
        }
    }

    /// Payload sizes of the records this step appends, if it appends any.
    pub(super) fn size_range(&self) -> Option<SizeRange> {
        match self {
            Step::Append(a) => Some(a.size),
            Step::Ingest(i) => Some(i.size),
            _ => None,
        }
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min_bytes == self.max_bytes {
            write!(f, "{}", self.min_bytes)
        } else {
            write!(f, "{}-{}", self.min_bytes, self.max_bytes)
        }
    }
}
