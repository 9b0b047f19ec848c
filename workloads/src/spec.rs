//! Workload specs: what a run does, read from YAML files (and handed to the guest agent as JSON).
//!
//! The format is documented with every field and default in `docs/workloads.md`. Errors name the
//! file, the line and column, and the field path (`steps[3].append.count`) wherever the input
//! gives one: type and range errors are raised while deserializing so the YAML position is
//! attached; checks that need the whole workload (disk capacity, the power-cut ack) find their
//! line with a light scan of the text. Input is bounded before any of that (size, nesting and
//! node count, aliases expanded): see `spec_input`.
//!
//! serde_yaml represents enums with YAML tags (`!append`), which reads badly, so a step is a
//! one-key map deserialized through a private `StepFile` struct and converted into the [`Step`] enum.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::ack;
use crate::payload::PAYLOAD_HEADER_BYTES;
pub use crate::spec_input::{InputError, MAX_NESTING_DEPTH, MAX_SPEC_BYTES, MAX_YAML_NODES};

/// Seed used when the workload file gives none (the CLI may override it).
pub const DEFAULT_SEED: u64 = 1;
/// Data disk size when the file gives none, for ext4.
pub const DEFAULT_EXT4_DISK_MIB: u64 = 64;
/// mkfs.xfs (xfsprogs >= 5.19) refuses file systems of 300 MiB or less without test-mode
/// environment variables, so XFS data disks start there.
pub const MIN_XFS_DISK_MIB: u64 = 300;
/// Smallest ext4 data disk (room for the fs journal and a few segments).
pub const MIN_EXT4_DISK_MIB: u64 = 16;
/// Largest data disk: every crash state is an image of this size.
pub const MAX_DISK_MIB: u64 = 4096;
/// Largest log disk.
pub const MAX_LOG_MIB: u64 = 65536;
/// Largest record payload a workload may ask for.
pub const MAX_RECORD_BYTES: u64 = 256 * 1024;
/// Largest record count of one append step and of one ingest client.
pub const MAX_RECORDS_PER_STEP: u64 = 100_000;
/// Largest group of one commit.
pub const MAX_COMMIT_EVERY: u64 = 10_000;
/// Most ingest clients of one step.
pub const MAX_INGEST_CLIENTS: u64 = 64;
/// Largest file a file step creates.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most steps in a workload.
pub const MAX_STEPS: usize = 10_000;
/// Most acks in a run (each is a block-log MARK and a point where crash states are checked).
pub const MAX_TOTAL_ACKS: u64 = 200_000;
/// Segment size bounds.
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
/// Segment size bounds.
pub const MAX_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Staging memory bounds.
pub const MIN_STAGING_BYTES: u64 = 64 * 1024;
/// Staging memory bounds.
pub const MAX_STAGING_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes the engine adds to each record on disk, at most (header plus alignment padding); used
/// only to estimate whether a workload fits on its disk.
const RECORD_OVERHEAD_BYTES: u64 = 64;
/// The write block of the guest's data disks (virtio, 512-byte sectors, formatted with 4 KiB
/// blocks): the engine's staging and record limits are counted in it.
const GUEST_WRITE_BLOCK_BYTES: usize = 4096;
/// Share of the data disk a workload may plan to fill: the rest is file-system metadata and
/// journal (ext4 takes 4 MiB of a 64 MiB disk, XFS ~10 MiB of 300).
const USABLE_DISK_PERCENT: u64 = 75;
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Errors

/// Where and why a workload is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecDiagnostic {
    /// The file name (or `<json>`, or whatever the caller passed to [`parse`]).
    pub source_name: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Field path such as `steps[3].append.count`; empty for the document itself.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source_name)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Errors of loading a workload.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("read workload file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The file or text is refused before it is parsed: not a regular file, too large, too
    /// deeply nested or too many nodes.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The text is not a valid workload.
    #[error("{0}")]
    Invalid(SpecDiagnostic),
}

impl SpecError {
    /// The diagnostic, for an invalid workload (not for input refused by its size or shape).
    pub fn diagnostic(&self) -> Option<&SpecDiagnostic> {
        match self {
            SpecError::Invalid(d) => Some(d),
            SpecError::Read { .. } | SpecError::Input(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The workload

/// A validated workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "WorkloadFile", into = "WorkloadFile")]
pub struct Workload {
    /// Name, used in the start and end acks (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Seed of record sizes, payloads and file contents.
    pub seed: u64,
    /// Free text.
    pub description: String,
    /// File system of the data disk.
    pub filesystem: Filesystem,
    /// Data disk size in MiB.
    pub disk_mib: u64,
    /// Log disk (dm-log-writes) size in MiB.
    pub log_mib: u64,
    /// Engine options; unset fields keep the engine's defaults.
    pub writer: WriterSpec,
    /// What the run does, in order.
    pub steps: Vec<Step>,
    /// When the host cuts the power of a live run, if at all.
    pub power_cut: Option<PowerCut>,
    /// What the run after the power cut does once it has recovered the journal (invariant I8);
    /// `None`: [`default_after_crash_steps`]. Only meaningful with a power cut.
    pub after_crash: Option<Vec<Step>>,
}

/// Payload writer id of the main appender after a crash: far above the ingest clients' ids, so
/// payloads of the second run never equal those of the first.
pub const AFTER_CRASH_WRITER_BASE: u32 = 1000;

/// The steps a run after a power cut does when the workload gives no `after_crash:`: 16 records
/// of 100-4000 bytes committed in pairs, a rotation, 8 more records.
pub fn default_after_crash_steps() -> Vec<Step> {
    let size = SizeRange {
        min_bytes: 100,
        max_bytes: 4000,
    };
    vec![
        Step::Append(AppendStep {
            count: 16,
            size,
            commit_every: 2,
        }),
        Step::Rotate,
        Step::Append(AppendStep {
            count: 8,
            size,
            commit_every: 2,
        }),
    ]
}

/// File system of the data disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filesystem {
    /// ext4 (the default).
    #[default]
    Ext4,
    /// XFS.
    Xfs,
}

impl Filesystem {
    /// `ext4` or `xfs`, as mkfs and mount call them.
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Xfs => "xfs",
        }
    }
}

/// Engine options of a workload; `None` keeps the engine's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterSpec {
    /// `dsync` or `fdatasync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<DurabilitySpec>,
    /// Segment file size in bytes (a multiple of 4096).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_segment_bytes"
    )]
    pub segment_bytes: Option<u64>,
    /// `zero`, `fallocate` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<PreallocationSpec>,
    /// Recycle retired segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle: Option<bool>,
    /// Staging memory bound in bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_staging_bytes"
    )]
    pub max_staging_bytes: Option<u64>,
    /// Group commits written at the same time (1 to `powercut_writer::MAX_GROUPS_IN_FLIGHT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_in_flight: Option<u64>,
    /// `auto`, `io_uring` or `pwritev2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_path: Option<IoPathSpec>,
    /// `false`: buffered writes through the page cache (made durable by fdatasync) instead of
    /// O_DIRECT, the setting of the fsyncgate workload (write-back errors, docs/design.md section 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_io: Option<bool>,
    /// A deliberately broken engine variant, `M1` to `M12` (docs/design.md section 6); only an agent
    /// built with the `mutants` feature can run it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_mutant",
        serialize_with = "ser_mutant"
    )]
    pub mutant: Option<powercut_writer::Mutant>,
}

/// Durability mode (see [`powercut_writer::Durability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilitySpec {
    /// O_DIRECT|O_DSYNC.
    Dsync,
    /// O_DIRECT writes and one fdatasync per group.
    Fdatasync,
}

/// Segment preparation (see [`powercut_writer::Preallocation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreallocationSpec {
    /// fallocate + zero fill + fsync.
    Zero,
    /// fallocate only.
    Fallocate,
    /// Appends extend the file.
    None,
}

/// Submission path (see [`powercut_writer::IoPathChoice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoPathSpec {
    /// io_uring when available, else pwritev2.
    Auto,
    /// io_uring or fail.
    IoUring,
    /// Synchronous pwritev2.
    Pwritev2,
}

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

/// Which sectors of the data disk a fault covers. Written `journal` or
/// `{ sectors: [start, count] }` (serde_yaml would otherwise want a YAML tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// Every block of the journal's segment files at the time of the fault (FIEMAP in the
    /// guest), so only the engine's own O_DIRECT writes fail and the file system stays usable.
    Journal,
    /// `[start, count]` in 512-byte sectors of the data disk.
    Sectors([u64; 2]),
    /// The whole data device: what a flush fault covers.
    Device,
}

const FAULT_TARGET_EXPECTED: &str = "`journal`, `device` or `{ sectors: [start, count] }`";

impl Serialize for FaultTarget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            FaultTarget::Journal => serializer.serialize_str("journal"),
            FaultTarget::Device => serializer.serialize_str("device"),
            FaultTarget::Sectors(range) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("sectors", range)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for FaultTarget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;
        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = FaultTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(FAULT_TARGET_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FaultTarget, E> {
                match v {
                    "journal" => Ok(FaultTarget::Journal),
                    "device" => Ok(FaultTarget::Device),
                    other => Err(E::custom(format!(
                        "unknown fault target {other:?}, expected {FAULT_TARGET_EXPECTED}"
                    ))),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<FaultTarget, A::Error> {
                let key: String = map.next_key()?.ok_or_else(|| {
                    de::Error::custom(format!("expected {FAULT_TARGET_EXPECTED}"))
                })?;
                if key != "sectors" {
                    return Err(de::Error::custom(format!(
                        "unknown fault target key `{key}`, expected {FAULT_TARGET_EXPECTED}"
                    )));
                }
                let range: [u64; 2] = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "a fault target has one key, expected {FAULT_TARGET_EXPECTED}"
                    )));
                }
                if range[1] == 0 {
                    return Err(de::Error::custom(
                        "a sector range needs a count of at least 1",
                    ));
                }
                Ok(FaultTarget::Sectors(range))
            }
        }
        deserializer.deserialize_any(TargetVisitor)
    }
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultTarget::Journal => f.write_str("the journal's segment files"),
            FaultTarget::Device => f.write_str("the data device"),
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

/// When the host cuts the power of a live run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PowerCutFile", into = "PowerCutFile")]
pub enum PowerCut {
    /// Right after the N-th durability ack (records or file; the start ack is not counted).
    AtAck(u64),
    /// After an ack chosen from the seed.
    Random,
}

impl Step {
    /// The step's key in the file: `append`, `rotate`, `file`, `ingest`, `reopen`.
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
        }
    }

    /// Acks this step produces.
    pub fn acks(&self) -> u64 {
        match self {
            Step::Append(a) => a.count.div_ceil(a.commit_every),
            Step::File(op) => u64::from(op.is_acked()),
            Step::Ingest(i) => i.clients * i.records_per_client,
            Step::Retire => 1,
            Step::Rotate | Step::Reopen | Step::Fault(_) | Step::ClearFault => 0,
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
    fn max_record_bytes(&self) -> u64 {
        match self {
            Step::Append(a) => a.count * a.size.max_bytes,
            Step::Ingest(i) => i.clients * i.records_per_client * i.size.max_bytes,
            _ => 0,
        }
    }

    fn size_range(&self) -> Option<SizeRange> {
        match self {
            Step::Append(a) => Some(a.size),
            Step::Ingest(i) => Some(i.size),
            _ => None,
        }
    }

    /// Range checks of the step alone (the same ones deserialization applies, so a workload
    /// built in code is held to them too).
    fn check(&self) -> Result<(), (&'static str, String)> {
        match self {
            Step::Append(a) => {
                check_range("count", a.count, 1, MAX_RECORDS_PER_STEP)?;
                check_range("commit_every", a.commit_every, 1, MAX_COMMIT_EVERY)?;
                a.size.check().map_err(|m| ("size", m))
            }
            Step::Ingest(i) => {
                check_range("clients", i.clients, 1, MAX_INGEST_CLIENTS)?;
                check_range(
                    "records_per_client",
                    i.records_per_client,
                    1,
                    MAX_RECORDS_PER_STEP,
                )?;
                i.size.check().map_err(|m| ("size", m))
            }
            Step::File(op) => op.check().map_err(|m| ("", m)),
            Step::Fault(f) => {
                if let Some(n) = f.clear_after_steps {
                    check_range("clear_after_steps", n, 1, MAX_STEPS as u64)?;
                }
                match (f.eio, f.target) {
                    (_, FaultTarget::Sectors([_, 0])) => Err((
                        "target",
                        "a sector range needs a count of at least 1".into(),
                    )),
                    (EioKind::Flush, FaultTarget::Device) => Ok(()),
                    (EioKind::Flush, _) => Err((
                        "target",
                        "`eio: flush` fails the flushes of the whole device: give \
                         `target: device`"
                            .into(),
                    )),
                    (EioKind::Writes, FaultTarget::Device) => Err((
                        "target",
                        "`eio: writes` on the whole device aborts the file system's journal \
                         (EROFS) instead of failing the engine's writes: target `journal` or \
                         `{ sectors: [start, count] }`"
                            .into(),
                    )),
                    _ => Ok(()),
                }
            }
            Step::Rotate | Step::Retire | Step::Reopen | Step::ClearFault => Ok(()),
        }
    }
}

fn check_range(
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), (&'static str, String)> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err((
            field,
            format!("expected an integer from {min} to {max}, got {value}"),
        ))
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

impl SizeRange {
    fn check(&self) -> Result<(), String> {
        let min_allowed = PAYLOAD_HEADER_BYTES as u64;
        if self.min_bytes > self.max_bytes {
            return Err(format!(
                "the smallest size {} is larger than the largest {}",
                self.min_bytes, self.max_bytes
            ));
        }
        if self.min_bytes < min_allowed {
            return Err(format!(
                "record size {} is smaller than the {min_allowed}-byte payload header",
                self.min_bytes
            ));
        }
        if self.max_bytes > MAX_RECORD_BYTES {
            return Err(format!(
                "record size {} is larger than the limit of {MAX_RECORD_BYTES} bytes",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

impl FileOp {
    fn check(&self) -> Result<(), String> {
        let check_path = |field: &str, p: &str| {
            path_problem(p).map_or(Ok(()), |why| Err(format!("{field}: {why}")))
        };
        match self {
            FileOp::Create {
                path, size_bytes, ..
            } => {
                check_path("path", path)?;
                if *size_bytes > MAX_FILE_BYTES {
                    return Err(format!(
                        "size: {size_bytes} bytes is larger than the limit of {MAX_FILE_BYTES}"
                    ));
                }
                Ok(())
            }
            FileOp::Rename { from, to, .. } => {
                check_path("path", from)?;
                check_path("to", to)?;
                if from == to {
                    return Err("to: a rename onto the same name".to_string());
                }
                Ok(())
            }
            FileOp::Remove { path, .. } => check_path("path", path),
        }
    }
}

/// Why `path` cannot name a file of a workload, if it cannot: it must be usable in an ack label
/// and stay inside `root/files`.
fn path_problem(path: &str) -> Option<String> {
    if !ack::is_valid_label_path(path) {
        return Some(format!(
            "invalid path {path:?}: use 1 to 200 characters among letters, digits, '.', '_', '-' \
             and '/'"
        ));
    }
    if path.starts_with('/') {
        return Some(format!(
            "invalid path {path:?}: must be relative to the files directory"
        ));
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Some(format!(
            "invalid path {path:?}: empty, '.' and '..' components are not allowed"
        ));
    }
    None
}

impl Workload {
    /// Engine options: the engine's defaults with this workload's settings applied.
    pub fn journal_options(&self) -> powercut_writer::JournalOptions {
        let mut options = powercut_writer::JournalOptions::default();
        let w = &self.writer;
        if let Some(d) = w.durability {
            options.durability = match d {
                DurabilitySpec::Dsync => powercut_writer::Durability::Dsync,
                DurabilitySpec::Fdatasync => powercut_writer::Durability::Fdatasync,
            };
        }
        if let Some(bytes) = w.segment_bytes {
            options.segment_bytes = bytes;
        }
        if let Some(p) = w.preallocation {
            options.preallocation = match p {
                PreallocationSpec::Zero => powercut_writer::Preallocation::Zero,
                PreallocationSpec::Fallocate => powercut_writer::Preallocation::Fallocate,
                PreallocationSpec::None => powercut_writer::Preallocation::None,
            };
        }
        if let Some(recycle) = w.recycle {
            options.recycle_segments = recycle;
        }
        if let Some(bytes) = w.max_staging_bytes {
            // Bounded by MAX_STAGING_BYTES at parse time, so it fits any usize >= 32 bits.
            options.max_staging_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(n) = w.groups_in_flight {
            options.max_groups_in_flight = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(p) = w.io_path {
            options.io_path = match p {
                IoPathSpec::Auto => powercut_writer::IoPathChoice::Auto,
                IoPathSpec::IoUring => powercut_writer::IoPathChoice::IoUring,
                IoPathSpec::Pwritev2 => powercut_writer::IoPathChoice::Pwritev2,
            };
        }
        if let Some(direct) = w.direct_io {
            options.direct_io = direct;
        }
        options.mutant = w.mutant;
        options
    }

    /// The workload as one line of JSON (how the host hands it to the guest agent).
    pub fn to_json(&self) -> String {
        // Only strings, integers, booleans and string-keyed maps: serialization cannot fail.
        serde_json::to_string(self).expect("a workload always serializes to JSON")
    }

    /// Reads a workload from [`Workload::to_json`]'s output, with the same checks as YAML.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let source_name = "<json>";
        let json_error = |field: String, e: serde_json::Error| {
            SpecError::Invalid(SpecDiagnostic {
                source_name: source_name.to_string(),
                line: Some(e.line()),
                column: Some(e.column()),
                field,
                message: strip_json_location(&e.to_string()),
            })
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let workload: Workload = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = display_path(e.path());
            json_error(field, e.into_inner())
        })?;
        de.end().map_err(|e| json_error(String::new(), e))?;
        workload.check_whole().map_err(|(field, message)| {
            SpecError::Invalid(SpecDiagnostic {
                source_name: source_name.to_string(),
                line: None,
                column: None,
                field,
                message,
            })
        })?;
        Ok(workload)
    }

    /// Checks a workload built or changed in code (for instance a seed set by the CLI) with
    /// every rule a parsed file obeys.
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |field: String, message: String| {
            SpecError::Invalid(SpecDiagnostic {
                source_name: format!("workload {}", self.name),
                line: None,
                column: None,
                field,
                message,
            })
        };
        if let Some(why) = name_problem(&self.name) {
            return Err(invalid("name".into(), why));
        }
        let mut tree = FileTree::default();
        for (index, step) in self.steps.iter().enumerate() {
            step.check().map_err(|(field, message)| {
                let field = if field.is_empty() {
                    format!("steps[{index}].{}", step.kind())
                } else {
                    format!("steps[{index}].{}.{field}", step.kind())
                };
                invalid(field, message)
            })?;
            tree.apply(step)
                .map_err(|m| invalid(format!("steps[{index}]"), m))?;
        }
        if let Some(after_crash) = &self.after_crash {
            // The run after the crash starts from whatever the first run left: it may only touch
            // files it creates itself.
            let mut tree = FileTree::default();
            for (index, step) in after_crash.iter().enumerate() {
                step.check().map_err(|(field, message)| {
                    let field = if field.is_empty() {
                        format!("after_crash[{index}].{}", step.kind())
                    } else {
                        format!("after_crash[{index}].{}.{field}", step.kind())
                    };
                    invalid(field, message)
                })?;
                tree.apply(step)
                    .map_err(|m| invalid(format!("after_crash[{index}]"), m))?;
            }
        }
        if let Some(PowerCut::AtAck(0)) = self.power_cut {
            return Err(invalid(
                "power_cut.at_ack".into(),
                "must be at least 1".into(),
            ));
        }
        self.check_whole().map_err(|(f, m)| invalid(f, m))
    }

    /// Every ack a complete run emits: start, one per records group, file operation and ingest
    /// record, and end. Exact, since the spec fixes every count.
    pub fn total_acks_estimate(&self) -> u64 {
        2 + self.durable_acks()
    }

    /// Acks of records and file operations (what [`PowerCut::AtAck`] counts).
    pub fn durable_acks(&self) -> u64 {
        self.steps.iter().map(Step::acks).sum()
    }

    /// Records a complete run appends.
    pub fn total_records(&self) -> u64 {
        self.steps.iter().map(Step::records).sum()
    }

    /// The durability ack after which the host cuts the power (1-based, start ack not counted),
    /// resolving [`PowerCut::Random`] from the seed; `None` without a power cut.
    pub fn power_cut_after_ack(&self) -> Option<u64> {
        let durable = self.durable_acks();
        match self.power_cut? {
            PowerCut::AtAck(n) => Some(n),
            PowerCut::Random if durable == 0 => None,
            PowerCut::Random => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
                // A stream of its own, so the choice does not shift the record sizes.
                rng.set_stream(POWER_CUT_RNG_STREAM);
                Some(rng.random_range(1..=durable))
            }
        }
    }

    /// What the run after the power cut does: `after_crash` or the default; empty without a
    /// power cut.
    pub fn after_crash_steps(&self) -> Vec<Step> {
        match (&self.power_cut, &self.after_crash) {
            (None, _) => Vec::new(),
            (Some(_), Some(steps)) => steps.clone(),
            (Some(_), None) => default_after_crash_steps(),
        }
    }

    /// Every ack the run after the power cut emits (start and end included).
    pub fn after_crash_acks(&self) -> u64 {
        2 + self.after_crash_steps().iter().map(Step::acks).sum::<u64>()
    }

    /// Segment size the engine will use.
    fn segment_bytes(&self) -> u64 {
        self.writer
            .segment_bytes
            .unwrap_or_else(|| powercut_writer::JournalOptions::default().segment_bytes)
    }

    /// Checks that need the whole workload; errors carry the field path only.
    fn check_whole(&self) -> Result<(), (String, String)> {
        let min_disk = match self.filesystem {
            Filesystem::Ext4 => MIN_EXT4_DISK_MIB,
            Filesystem::Xfs => MIN_XFS_DISK_MIB,
        };
        if self.disk_mib < min_disk || self.disk_mib > MAX_DISK_MIB {
            let why = match self.filesystem {
                Filesystem::Xfs => " (mkfs.xfs refuses smaller file systems)",
                Filesystem::Ext4 => "",
            };
            return Err((
                "disk_mib".into(),
                format!(
                    "{} MiB is outside {min_disk}..={MAX_DISK_MIB} MiB for {}{why}",
                    self.disk_mib,
                    self.filesystem.name()
                ),
            ));
        }
        if self.log_mib < self.disk_mib || self.log_mib > MAX_LOG_MIB {
            return Err((
                "log_mib".into(),
                format!(
                    "{} MiB is outside {}..={MAX_LOG_MIB} MiB: the log disk holds every write \
                     to the data disk, mkfs included, so it is at least as large",
                    self.log_mib, self.disk_mib
                ),
            ));
        }
        if self.steps.is_empty() {
            return Err(("steps".into(), "a workload needs at least one step".into()));
        }
        if self.steps.len() > MAX_STEPS {
            return Err((
                "steps".into(),
                format!(
                    "{} steps, more than the limit of {MAX_STEPS}",
                    self.steps.len()
                ),
            ));
        }
        let acks = self.total_acks_estimate();
        if acks > MAX_TOTAL_ACKS {
            return Err((
                "steps".into(),
                format!("the run would emit {acks} acks, more than the limit of {MAX_TOTAL_ACKS}"),
            ));
        }
        let after_crash = self.after_crash_steps();
        if self.after_crash.is_some() && self.power_cut.is_none() {
            return Err((
                "after_crash".into(),
                "after_crash runs after a power cut: add `power_cut:` or leave after_crash out"
                    .into(),
            ));
        }
        if let Some(given) = &self.after_crash {
            if given.is_empty() || given.len() > MAX_STEPS {
                return Err((
                    "after_crash".into(),
                    format!(
                        "{} steps: give 1 to {MAX_STEPS} steps (or leave after_crash out for the \
                         default)",
                        given.len()
                    ),
                ));
            }
        }
        let after_acks: u64 = 2 + after_crash.iter().map(Step::acks).sum::<u64>();
        if after_acks > MAX_TOTAL_ACKS {
            return Err((
                "after_crash".into(),
                format!(
                    "the run after the crash would emit {after_acks} acks, more than the limit \
                     of {MAX_TOTAL_ACKS}"
                ),
            ));
        }
        let most = powercut_writer::MAX_GROUPS_IN_FLIGHT as u64;
        if let Some(n) = self
            .writer
            .groups_in_flight
            .filter(|n| !(1..=most).contains(n))
        {
            return Err((
                "writer.groups_in_flight".into(),
                format!("{n} groups in flight: the engine writes 1 to {most} at a time"),
            ));
        }
        let segment_bytes = self.segment_bytes();
        // The engine's own limit, stated once (`JournalOptions::max_record_payload_bytes`).
        let options = self.journal_options();
        let record_limit = options
            .max_record_payload_bytes(GUEST_WRITE_BLOCK_BYTES)
            .map_err(|why| ("writer.max_staging_bytes".to_string(), why))?;
        let listed = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("steps[{i}]"), s))
            .chain(after_crash.iter().enumerate().map(|(i, s)| {
                let field = if self.after_crash.is_some() {
                    format!("after_crash[{i}]")
                } else {
                    // The default steps have no line of their own.
                    "after_crash".to_string()
                };
                (field, s)
            }));
        for (field, step) in listed {
            if let Some(size) = step.size_range() {
                if size.max_bytes > record_limit as u64 {
                    let field = if field == "after_crash" {
                        field
                    } else {
                        format!("{field}.{}.size", step.kind())
                    };
                    return Err((
                        field,
                        format!(
                            "a record of {} bytes exceeds the engine's limit of {record_limit} \
                             bytes with these writer options (segments of {segment_bytes} \
                             bytes, staging buffers of {} bytes); raise writer.segment_bytes \
                             or writer.max_staging_bytes",
                            size.max_bytes,
                            options.staging_buffer_bytes(GUEST_WRITE_BLOCK_BYTES)
                        ),
                    ));
                }
            }
        }
        self.check_faults(&after_crash)?;
        // Disk space: every segment the run may touch (records, plus a fresh segment per
        // rotation and reopen, plus one prepared ahead) and every file created. Recycling is
        // not counted on: it only reuses segments the engine has retired.
        // The run after a crash appends to the same journal and file tree.
        let record_bytes: u64 = self
            .steps
            .iter()
            .chain(&after_crash)
            .map(|s| s.max_record_bytes() + s.records() * RECORD_OVERHEAD_BYTES)
            .sum();
        let segment_switches = self
            .steps
            .iter()
            .chain(&after_crash)
            .filter(|s| matches!(s, Step::Rotate | Step::Reopen))
            .count() as u64;
        // The open after the crash continues in the recovered segment: no switch of its own.
        let segments = record_bytes.div_ceil(segment_bytes).max(1) + segment_switches + 1;
        let file_bytes: u64 = self
            .steps
            .iter()
            .chain(&after_crash)
            .map(|s| match s {
                Step::File(FileOp::Create { size_bytes, .. }) => size_bytes.next_multiple_of(4096),
                _ => 0,
            })
            .sum();
        let needed = segments
            .saturating_mul(segment_bytes)
            .saturating_add(file_bytes);
        let usable = self.disk_mib * MIB * USABLE_DISK_PERCENT / 100;
        if needed > usable {
            return Err((
                "disk_mib".into(),
                format!(
                    "the run may need {} MiB ({segments} segments of {segment_bytes} bytes and \
                     {file_bytes} bytes of files) but only {} MiB of the {} MiB disk are usable: \
                     raise disk_mib or use fewer records or smaller segments",
                    needed.div_ceil(MIB),
                    usable / MIB,
                    self.disk_mib
                ),
            ));
        }
        match self.power_cut {
            Some(PowerCut::AtAck(n)) if n > self.durable_acks() => Err((
                "power_cut.at_ack".into(),
                format!(
                    "ack {n} never happens: the run has {} durability acks",
                    self.durable_acks()
                ),
            )),
            Some(PowerCut::Random) if self.durable_acks() == 0 => Err((
                "power_cut.random".into(),
                "the run has no durability ack to cut the power after".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl Workload {
    /// Whether any step injects a fault.
    pub fn has_faults(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Fault(_)))
    }

    /// Fault steps in a sequence that the agent can carry out: one fault at a time, cleared
    /// before the end, no reopen or ingest while armed (their recovery would read failing
    /// sectors), none in a run with a power cut (the crash image would hold the fault's
    /// half-finished state with no way to tell which writes failed).
    fn check_faults(&self, after_crash: &[Step]) -> Result<(), (String, String)> {
        if let Some(i) = after_crash
            .iter()
            .position(|s| matches!(s, Step::Fault(_) | Step::ClearFault))
        {
            return Err((
                format!("after_crash[{i}]"),
                "faults are not injected in the run after a power cut".into(),
            ));
        }
        if self.power_cut.is_some() && self.has_faults() {
            return Err((
                "power_cut".into(),
                "a workload with fault steps cannot also cut the power".into(),
            ));
        }
        // Some(steps left before the automatic clear, if any) while a fault is armed.
        let mut armed: Option<Option<u64>> = None;
        // A fault may have poisoned the journal: only a reopen makes it usable again, and the
        // ingest server's open would meet a refused close first.
        let mut maybe_poisoned = false;
        for (i, step) in self.steps.iter().enumerate() {
            let field = format!("steps[{i}]");
            match step {
                Step::Fault(f) => {
                    if armed.is_some() {
                        return Err((
                            field,
                            "a fault is armed already: clear it (`clear_fault: {}`) first".into(),
                        ));
                    }
                    armed = Some(f.clear_after_steps);
                    maybe_poisoned = true;
                    continue;
                }
                Step::ClearFault if armed.is_none() => {
                    return Err((field, "no fault is armed at this step".into()));
                }
                Step::ClearFault => {
                    armed = None;
                    continue;
                }
                Step::Reopen | Step::Ingest(_) if armed.is_some() => {
                    return Err((
                        field,
                        format!(
                            "`{}` while a fault is armed: recovery would read the failing \
                             sectors; clear the fault first",
                            step.kind()
                        ),
                    ));
                }
                Step::Ingest(_) if maybe_poisoned => {
                    return Err((
                        field,
                        "`ingest` after a fault: the journal may be poisoned; add `reopen: {}` \
                         after clearing the fault"
                            .into(),
                    ));
                }
                Step::Reopen => maybe_poisoned = false,
                _ => {}
            }
            if let Some(Some(left)) = armed {
                armed = if left <= 1 {
                    None
                } else {
                    Some(Some(left - 1))
                };
            }
        }
        if armed.is_some() {
            return Err((
                "steps".into(),
                "the last fault is never cleared: add `clear_fault: {}` or `clear_after_steps`"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// RNG stream of the seeded power-cut choice.
const POWER_CUT_RNG_STREAM: u64 = 0x00C0_FFEE;

fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (!ok).then(|| {
        format!(
            "invalid name {name:?}: use 1 to 64 characters among letters, digits, '.', '_' and '-'"
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Files through the steps

/// Which files and directories exist after each step, so a step that renames or removes a file
/// that is not there is refused when the workload is read, not half-way through a VM run.
#[derive(Debug, Default)]
struct FileTree {
    /// Existing files and whether their current state was acknowledged.
    files: BTreeMap<String, bool>,
    /// Names whose absence was acknowledged (by a rename away or a removal).
    acked_absent: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

impl FileTree {
    fn apply(&mut self, step: &Step) -> Result<(), String> {
        let Step::File(op) = step else { return Ok(()) };
        let acked = op.is_acked();
        // An acknowledged state must stay the expected one: an unacknowledged change of the same
        // path may or may not reach the disk before a crash, and the ack ledger cannot say which.
        let acked_absent = &self.acked_absent;
        let guard = |path: &str, files: &BTreeMap<String, bool>| -> Result<(), String> {
            if !acked && files.get(path).copied().unwrap_or(false) {
                return Err(format!(
                    "{path} holds an acknowledged state, so an operation without fsync_file and \
                     fsync_dir may not change it (a crash could keep either version)"
                ));
            }
            if !acked && acked_absent.contains(path) {
                return Err(format!(
                    "{path} was acknowledged gone, so an operation without fsync_file and \
                     fsync_dir may not re-create it (a crash could keep either state)"
                ));
            }
            Ok(())
        };
        match op {
            FileOp::Create { path, .. } => {
                self.check_new_name(path)?;
                guard(path, &self.files)?;
                self.add_parents(path);
                self.files.insert(path.clone(), acked);
                self.acked_absent.remove(path);
            }
            FileOp::Rename { from, to, .. } => {
                if !self.files.contains_key(from) {
                    return Err(format!(
                        "rename of {from}, which does not exist at this step"
                    ));
                }
                self.check_new_name(to)?;
                guard(from, &self.files)?;
                guard(to, &self.files)?;
                self.files.remove(from);
                self.add_parents(to);
                self.files.insert(to.clone(), acked);
                self.acked_absent.remove(to);
                if acked {
                    self.acked_absent.insert(from.clone());
                }
            }
            FileOp::Remove { path, .. } => {
                if !self.files.contains_key(path) {
                    return Err(format!(
                        "removal of {path}, which does not exist at this step"
                    ));
                }
                guard(path, &self.files)?;
                self.files.remove(path);
                if acked {
                    self.acked_absent.insert(path.clone());
                }
            }
        }
        Ok(())
    }

    fn check_new_name(&self, path: &str) -> Result<(), String> {
        if self.dirs.contains(path) {
            return Err(format!("{path} is a directory at this step"));
        }
        for parent in parents(path) {
            if self.files.contains_key(parent) {
                return Err(format!("{parent} is a file at this step, not a directory"));
            }
        }
        Ok(())
    }

    fn add_parents(&mut self, path: &str) {
        for parent in parents(path) {
            self.dirs.insert(parent.to_string());
        }
    }
}

/// `a/b/c` -> `a`, `a/b`.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Reads and checks a workload file: a regular file of at most [`MAX_SPEC_BYTES`] bytes.
pub fn load(path: &Path) -> Result<Workload, SpecError> {
    let text = crate::spec_input::read_spec_file(path)?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks workload YAML; `source_name` is used in error messages. Text larger than
/// [`MAX_SPEC_BYTES`], nested deeper than [`MAX_NESTING_DEPTH`] or with more than
/// [`MAX_YAML_NODES`] nodes is refused before it is deserialized.
pub fn parse(text: &str, source_name: &str) -> Result<Workload, SpecError> {
    crate::spec_input::check_shape(text, source_name)?;
    let de = serde_yaml::Deserializer::from_str(text);
    let workload: Workload = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = display_path(e.path());
        let inner = e.into_inner();
        let location = inner.location();
        let message = clean_yaml_message(&inner.to_string(), location.as_ref(), &field);
        let mut line = location.as_ref().map(|l| (l.line(), l.column()));
        // Errors raised by this module's checks carry the position of the enclosing map or
        // sequence; the field path leads to the line of the field itself.
        if let Some(scanned) = field_line(text, &field) {
            if line.is_none_or(|(l, _)| scanned.0 > l) {
                line = Some(scanned);
            }
        }
        SpecError::Invalid(SpecDiagnostic {
            source_name: source_name.to_string(),
            line: line.map(|(l, _)| l),
            column: line.map(|(_, c)| c),
            message,
            field,
        })
    })?;
    workload.check_whole().map_err(|(field, message)| {
        let line = field_line(text, &field);
        SpecError::Invalid(SpecDiagnostic {
            source_name: source_name.to_string(),
            line: line.map(|(l, _)| l),
            column: line.map(|(_, c)| c),
            field,
            message,
        })
    })?;
    Ok(workload)
}

fn display_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    // `?` marks a position the parser never identified (syntax errors): drop it.
    let known = match text.find('?') {
        Some(i) => text[..i].trim_end_matches('.'),
        None => &text,
    };
    if known == "." {
        String::new()
    } else {
        known.to_string()
    }
}

/// serde_yaml's message carries its own (shorter) path prefix and an ` at line L column C`
/// suffix; the diagnostic shows both separately.
fn clean_yaml_message(
    message: &str,
    location: Option<&serde_yaml::Location>,
    field: &str,
) -> String {
    let mut message = match location {
        Some(l) => message.replacen(
            &format!(" at line {} column {}", l.line(), l.column()),
            "",
            1,
        ),
        None => message.to_string(),
    };
    if let Some((prefix, rest)) = message.split_once(": ") {
        let is_path = !prefix.is_empty()
            && !prefix.contains(' ')
            && (field == prefix
                || field.starts_with(&format!("{prefix}."))
                || field.starts_with(&format!("{prefix}[")));
        if is_path {
            message = rest.to_string();
        }
    }
    message
}

fn strip_json_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Line and column of a field path such as `disk_mib`, `writer.max_staging_bytes`,
/// `power_cut.at_ack` or `steps[2].append.size`, by a light scan of block-style YAML. `None`
/// when the layout is not the plain one (flow style, anchors): the field path still says where.
fn field_line(text: &str, field: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut parts = field.split('.');
    let first = parts.next()?;
    let (top_key, index) = match first.split_once('[') {
        Some((key, rest)) => (key, rest.strip_suffix(']')?.parse::<usize>().ok()),
        None => (first, None),
    };
    let top = lines.iter().position(|l| key_of(l) == Some((0, top_key)))?;
    let block_end = (top + 1..lines.len())
        .find(|&i| matches!(key_of(lines[i]), Some((0, _))))
        .unwrap_or(lines.len());
    let mut found = (top, 0usize);
    if let Some(index) = index {
        let items: Vec<usize> = (top + 1..block_end)
            .filter(|&i| lines[i].trim_start().starts_with('-'))
            .collect();
        let item_indent = items.first().map(|&i| indent(lines[i]))?;
        let items: Vec<usize> = items
            .into_iter()
            .filter(|&i| indent(lines[i]) == item_indent)
            .collect();
        let item = *items.get(index)?;
        found = (item, item_indent);
        let item_end = items
            .iter()
            .copied()
            .find(|&i| i > item)
            .unwrap_or(block_end);
        // Deeper keys of the item (`append.size`): the last component, searched in the item.
        if let Some(last) = field
            .rsplit('.')
            .next()
            .filter(|_| field.matches('.').count() >= 2)
        {
            if let Some(i) = (item..item_end).find(|&i| contains_key(lines[i], last)) {
                found = (i, lines[i].find(last).unwrap_or(0));
            }
        }
    } else if let Some(sub) = parts.next() {
        if let Some(i) = (top..block_end).find(|&i| contains_key(lines[i], sub)) {
            found = (i, lines[i].find(sub).unwrap_or(0));
        }
    }
    Some((found.0 + 1, found.1 + 1))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `(indent, key)` of a block mapping line `key: ...`.
fn key_of(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with('-') {
        return None;
    }
    let (key, _) = trimmed.split_once(':')?;
    (!key.is_empty() && !key.contains(' ')).then_some((indent(line), key))
}

fn contains_key(line: &str, key: &str) -> bool {
    line.match_indices(key).any(|(i, _)| {
        let before_ok = i == 0 || matches!(line.as_bytes()[i - 1], b' ' | b'{' | b',' | b'-');
        line[i + key.len()..].starts_with(':') && before_ok
    })
}

// ---------------------------------------------------------------------------------------------
// File representation (serde)

/// The workload as written in the file: optional fields, defaults applied on conversion.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    #[serde(deserialize_with = "de_name")]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(default)]
    filesystem: Filesystem,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_disk_mib"
    )]
    disk_mib: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_log_mib"
    )]
    log_mib: Option<u64>,
    #[serde(default)]
    writer: WriterSpec,
    steps: Steps,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    power_cut: Option<PowerCut>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_crash: Option<Steps>,
}

impl From<WorkloadFile> for Workload {
    fn from(f: WorkloadFile) -> Workload {
        let disk_mib = f.disk_mib.unwrap_or(match f.filesystem {
            Filesystem::Ext4 => DEFAULT_EXT4_DISK_MIB,
            Filesystem::Xfs => MIN_XFS_DISK_MIB,
        });
        Workload {
            name: f.name,
            seed: f.seed.unwrap_or(DEFAULT_SEED),
            description: f.description,
            filesystem: f.filesystem,
            disk_mib,
            log_mib: f
                .log_mib
                .unwrap_or(disk_mib.saturating_mul(4).min(MAX_LOG_MIB)),
            writer: f.writer,
            steps: f.steps.0,
            power_cut: f.power_cut,
            after_crash: f.after_crash.map(|s| s.0),
        }
    }
}

impl From<Workload> for WorkloadFile {
    fn from(w: Workload) -> WorkloadFile {
        WorkloadFile {
            name: w.name,
            seed: Some(w.seed),
            description: w.description,
            filesystem: w.filesystem,
            disk_mib: Some(w.disk_mib),
            log_mib: Some(w.log_mib),
            writer: w.writer,
            steps: Steps(w.steps),
            power_cut: w.power_cut,
            after_crash: w.after_crash.map(Steps),
        }
    }
}

/// The step list, read with the files that exist at each step in mind.
struct Steps(Vec<Step>);

impl Serialize for Steps {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Steps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepsVisitor;
        impl<'de> Visitor<'de> for StepsVisitor {
            type Value = Steps;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of steps")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Steps, A::Error> {
                let mut tree = FileTree::default();
                let mut steps = Vec::new();
                while let Some(step) = seq.next_element_seed(StepSeed { tree: &mut tree })? {
                    if steps.len() == MAX_STEPS {
                        return Err(de::Error::custom(format!("more than {MAX_STEPS} steps")));
                    }
                    steps.push(step);
                }
                Ok(Steps(steps))
            }
        }
        deserializer.deserialize_seq(StepsVisitor)
    }
}

/// Reads one step and applies it to the file tree, so an error lands on that step's line.
struct StepSeed<'a> {
    tree: &'a mut FileTree,
}

impl<'de> DeserializeSeed<'de> for StepSeed<'_> {
    type Value = Step;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Step, D::Error> {
        let step = Step::deserialize(deserializer)?;
        // Rules across a step's fields (a fault's kind and target), on the step's own line.
        if let Err((field, message)) = step.check() {
            return Err(de::Error::custom(if field.is_empty() {
                format!("{}: {message}", step.kind())
            } else {
                format!("{}.{field}: {message}", step.kind())
            }));
        }
        self.tree.apply(&step).map_err(de::Error::custom)?;
        Ok(step)
    }
}

/// A step as written: a map with exactly one of these keys.
#[derive(Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a step: a map with one key, such as `append: {...}` or `rotate: {}`"
)]
struct StepFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    append: Option<AppendStep>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_empty"
    )]
    rotate: Option<Empty>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_empty"
    )]
    retire: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<FileOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ingest: Option<IngestStep>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_empty"
    )]
    reopen: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fault: Option<FaultSpec>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_empty"
    )]
    clear_fault: Option<Empty>,
}

/// The body of `rotate: {}` and `reopen: {}` (which take no options).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `rotate:` with nothing after it is the same as `rotate: {}`.
fn de_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Empty>, D::Error> {
    Ok(Some(Option::<Empty>::deserialize(d)?.unwrap_or(Empty {})))
}

impl TryFrom<StepFile> for Step {
    type Error = String;
    fn try_from(f: StepFile) -> Result<Step, String> {
        let mut steps = Vec::new();
        if let Some(a) = f.append {
            steps.push(Step::Append(a));
        }
        if f.rotate.is_some() {
            steps.push(Step::Rotate);
        }
        if f.retire.is_some() {
            steps.push(Step::Retire);
        }
        if let Some(op) = f.file {
            steps.push(Step::File(op));
        }
        if let Some(i) = f.ingest {
            steps.push(Step::Ingest(i));
        }
        if f.reopen.is_some() {
            steps.push(Step::Reopen);
        }
        if let Some(fault) = f.fault {
            steps.push(Step::Fault(fault));
        }
        if f.clear_fault.is_some() {
            steps.push(Step::ClearFault);
        }
        if steps.len() != 1 {
            return Err(format!(
                "a step has exactly one of the keys `append`, `rotate`, `retire`, `file`, \
                 `ingest`, `reopen`, `fault`, `clear_fault`; this one has {}",
                steps.len()
            ));
        }
        Ok(steps.remove(0))
    }
}

impl From<Step> for StepFile {
    fn from(step: Step) -> StepFile {
        let mut f = StepFile {
            append: None,
            rotate: None,
            retire: None,
            file: None,
            ingest: None,
            reopen: None,
            fault: None,
            clear_fault: None,
        };
        match step {
            Step::Append(a) => f.append = Some(a),
            Step::Rotate => f.rotate = Some(Empty {}),
            Step::Retire => f.retire = Some(Empty {}),
            Step::File(op) => f.file = Some(op),
            Step::Ingest(i) => f.ingest = Some(i),
            Step::Reopen => f.reopen = Some(Empty {}),
            Step::Fault(fault) => f.fault = Some(fault),
            Step::ClearFault => f.clear_fault = Some(Empty {}),
        }
        f
    }
}

/// `file:` step as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStepFile {
    op: FileOpKind,
    #[serde(deserialize_with = "de_path")]
    path: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_path"
    )]
    to: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_file_size"
    )]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fsync_file: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fsync_dir: Option<bool>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FileOpKind {
    Create,
    Rename,
    Remove,
}

/// File size when `size` is not given.
pub const DEFAULT_FILE_BYTES: u64 = 4096;

impl TryFrom<FileStepFile> for FileOp {
    type Error = String;
    fn try_from(f: FileStepFile) -> Result<FileOp, String> {
        let not_for = |field: &str, op: &str| format!("`{field}` does not apply to op {op}");
        let op = match f.op {
            FileOpKind::Create => {
                if f.to.is_some() {
                    return Err(not_for("to", "create"));
                }
                FileOp::Create {
                    path: f.path,
                    size_bytes: f.size.unwrap_or(DEFAULT_FILE_BYTES),
                    fsync_file: f.fsync_file.unwrap_or(true),
                    fsync_dir: f.fsync_dir.unwrap_or(true),
                }
            }
            FileOpKind::Rename => {
                if f.size.is_some() {
                    return Err(not_for("size", "rename"));
                }
                let to = f.to.ok_or("op rename needs `to`, the new name")?;
                FileOp::Rename {
                    from: f.path,
                    to,
                    fsync_file: f.fsync_file.unwrap_or(true),
                    fsync_dir: f.fsync_dir.unwrap_or(true),
                }
            }
            FileOpKind::Remove => {
                if f.to.is_some() {
                    return Err(not_for("to", "remove"));
                }
                if f.size.is_some() {
                    return Err(not_for("size", "remove"));
                }
                if f.fsync_file.is_some() {
                    return Err(not_for("fsync_file", "remove"));
                }
                FileOp::Remove {
                    path: f.path,
                    fsync_dir: f.fsync_dir.unwrap_or(true),
                }
            }
        };
        op.check()?;
        Ok(op)
    }
}

impl From<FileOp> for FileStepFile {
    fn from(op: FileOp) -> FileStepFile {
        match op {
            FileOp::Create {
                path,
                size_bytes,
                fsync_file,
                fsync_dir,
            } => FileStepFile {
                op: FileOpKind::Create,
                path,
                to: None,
                size: Some(size_bytes),
                fsync_file: Some(fsync_file),
                fsync_dir: Some(fsync_dir),
            },
            FileOp::Rename {
                from,
                to,
                fsync_file,
                fsync_dir,
            } => FileStepFile {
                op: FileOpKind::Rename,
                path: from,
                to: Some(to),
                size: None,
                fsync_file: Some(fsync_file),
                fsync_dir: Some(fsync_dir),
            },
            FileOp::Remove { path, fsync_dir } => FileStepFile {
                op: FileOpKind::Remove,
                path,
                to: None,
                size: None,
                fsync_file: None,
                fsync_dir: Some(fsync_dir),
            },
        }
    }
}

/// `power_cut:` as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerCutFile {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_at_ack"
    )]
    at_ack: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    random: Option<bool>,
}

impl TryFrom<PowerCutFile> for PowerCut {
    type Error = &'static str;
    fn try_from(f: PowerCutFile) -> Result<PowerCut, &'static str> {
        match (f.at_ack, f.random) {
            (Some(n), None) => Ok(PowerCut::AtAck(n)),
            (None, Some(true)) => Ok(PowerCut::Random),
            (None, Some(false)) => Err("`random: false` means no power cut: leave power_cut out"),
            (Some(_), Some(_)) => Err("give either `at_ack` or `random`, not both"),
            (None, None) => Err("give `at_ack: N` or `random: true`"),
        }
    }
}

impl From<PowerCut> for PowerCutFile {
    fn from(p: PowerCut) -> PowerCutFile {
        match p {
            PowerCut::AtAck(n) => PowerCutFile {
                at_ack: Some(n),
                random: None,
            },
            PowerCut::Random => PowerCutFile {
                at_ack: None,
                random: Some(true),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars: bounded integers and byte sizes

fn one() -> u64 {
    1
}

/// Reads an integer (or, with `byte_units`, a size such as `256KiB`) in `min..=max`.
struct Bounded {
    min: u64,
    max: u64,
    byte_units: bool,
}

impl Bounded {
    fn check<E: de::Error>(&self, value: u64) -> Result<u64, E> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(E::custom(format!(
                "expected {} from {} to {}, got {value}",
                self.what(),
                self.min,
                self.max
            )))
        }
    }

    fn what(&self) -> &'static str {
        if self.byte_units {
            "a size"
        } else {
            "an integer"
        }
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.byte_units {
            write!(
                f,
                "a size from {} to {} bytes (an integer or a string such as \"256KiB\")",
                self.min, self.max
            )
        } else {
            write!(f, "an integer from {} to {}", self.min, self.max)
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.check(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.check(v),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        if !self.byte_units {
            return Err(E::invalid_type(de::Unexpected::Str(v), &self));
        }
        let bytes = parse_byte_size(v).map_err(E::custom)?;
        self.check(bytes)
    }
}

fn bounded<'de, D: Deserializer<'de>>(d: D, min: u64, max: u64) -> Result<u64, D::Error> {
    d.deserialize_any(Bounded {
        min,
        max,
        byte_units: false,
    })
}

fn byte_size<'de, D: Deserializer<'de>>(d: D, min: u64, max: u64) -> Result<u64, D::Error> {
    d.deserialize_any(Bounded {
        min,
        max,
        byte_units: true,
    })
}

/// Parses `4096`, `4KiB`, `4 KiB`, `4K`, `1MiB`, `1M`, `1GiB`: units are powers of 1024.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a size: expected digits then B, KiB, MiB or GiB"
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: number too large"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" | "kib" => 1024,
        "M" | "MiB" | "mib" => 1024 * 1024,
        "G" | "GiB" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use B, KiB, MiB or GiB (powers of 1024)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?}: size too large"))
}

fn de_records_count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded(d, 1, MAX_RECORDS_PER_STEP)
}

fn de_clear_after_steps<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, 1, MAX_STEPS as u64).map(Some)
}

fn de_commit_every<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded(d, 1, MAX_COMMIT_EVERY)
}

fn de_clients<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded(d, 1, MAX_INGEST_CLIENTS)
}

fn de_at_ack<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, 1, MAX_TOTAL_ACKS).map(Some)
}

fn de_disk_mib<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, MIN_EXT4_DISK_MIB, MAX_DISK_MIB).map(Some)
}

fn de_log_mib<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, MIN_EXT4_DISK_MIB, MAX_LOG_MIB).map(Some)
}

fn de_file_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    byte_size(d, 0, MAX_FILE_BYTES).map(Some)
}

fn de_staging_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    byte_size(d, MIN_STAGING_BYTES, MAX_STAGING_BYTES).map(Some)
}

fn de_segment_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let bytes = byte_size(d, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)?;
    if bytes % 4096 != 0 {
        return Err(de::Error::custom(format!(
            "{bytes} bytes is not a multiple of 4096"
        )));
    }
    Ok(Some(bytes))
}

fn de_mutant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<powercut_writer::Mutant>, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map(Some).map_err(de::Error::custom)
}

fn ser_mutant<S: Serializer>(
    mutant: &Option<powercut_writer::Mutant>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match mutant {
        Some(m) => s.serialize_str(m.name()),
        None => s.serialize_none(),
    }
}

fn de_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    match name_problem(&name) {
        Some(why) => Err(de::Error::custom(why)),
        None => Ok(name),
    }
}

fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let path = String::deserialize(d)?;
    match path_problem(&path) {
        Some(why) => Err(de::Error::custom(why)),
        None => Ok(path),
    }
}

fn de_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_path(d).map(Some)
}

impl Serialize for SizeRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.min_bytes == self.max_bytes {
            serializer.serialize_u64(self.min_bytes)
        } else {
            [self.min_bytes, self.max_bytes].serialize(serializer)
        }
    }
}

/// One bound of a size range, before the range is checked.
struct SizeValue(u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        byte_size(d, 0, u64::MAX).map(SizeValue)
    }
}

impl<'de> Deserialize<'de> for SizeRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RangeVisitor;
        impl<'de> Visitor<'de> for RangeVisitor {
            type Value = SizeRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a record size or a [min, max] pair of sizes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeRange, E> {
                checked_range(v, v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeRange, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))?;
                checked_range(v, v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeRange, E> {
                let bytes = parse_byte_size(v).map_err(E::custom)?;
                checked_range(bytes, bytes)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SizeRange, A::Error> {
                let wrong_length =
                    || de::Error::custom("a size range is a list of two sizes: [min, max]");
                let min: SizeValue = seq.next_element()?.ok_or_else(wrong_length)?;
                let max: SizeValue = seq.next_element()?.ok_or_else(wrong_length)?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(wrong_length());
                }
                checked_range(min.0, max.0)
            }
        }
        deserializer.deserialize_any(RangeVisitor)
    }
}

fn checked_range<E: de::Error>(min_bytes: u64, max_bytes: u64) -> Result<SizeRange, E> {
    let range = SizeRange {
        min_bytes,
        max_bytes,
    };
    range.check().map_err(E::custom)?;
    Ok(range)
}

#[cfg(test)]
mod direct_io_tests {
    use super::*;

    const STEPS: &str = "steps:\n  - append: { count: 3, size: 100 }\n";

    #[test]
    fn direct_io_false_maps_to_buffered_engine_and_round_trips() {
        let text = format!("name: t\nwriter:\n  direct_io: false\n{STEPS}");
        let w = parse(&text, "x.yaml").unwrap();
        assert_eq!(w.writer.direct_io, Some(false));
        assert!(!w.journal_options().direct_io);
        let back = Workload::from_json(&w.to_json()).unwrap();
        assert_eq!(back.writer.direct_io, Some(false));
        assert!(!back.journal_options().direct_io);
    }

    #[test]
    fn direct_io_defaults_to_the_engine_default() {
        let w = parse(&format!("name: t\n{STEPS}"), "x.yaml").unwrap();
        assert_eq!(w.writer.direct_io, None);
        assert!(w.journal_options().direct_io);
        assert!(!w.to_json().contains("direct_io"));
        let on = parse(
            &format!("name: t\nwriter:\n  direct_io: true\n{STEPS}"),
            "x.yaml",
        )
        .unwrap();
        assert!(on.journal_options().direct_io);
    }

    #[test]
    fn a_direct_io_that_is_not_a_boolean_is_a_located_error() {
        for bad in ["buffered", "0", "[true]"] {
            let text =
                format!("name: t\nwriter:\n  durability: fdatasync\n  direct_io: {bad}\n{STEPS}");
            match parse(&text, "x.yaml") {
                Err(SpecError::Invalid(d)) => {
                    assert_eq!(d.field, "writer.direct_io", "{d}");
                    assert_eq!(d.line, Some(4), "{d}");
                }
                other => panic!("direct_io: {bad}: expected a located error, got {other:?}"),
            }
        }
    }
}
