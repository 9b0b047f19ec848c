//! Workload specs: what a run does, read from YAML files (and handed to the guest agent as JSON).
//!
//! The format is documented with every field and default in `docs/workloads.md`. Errors name the
//! file, the line and column, and the field path (`steps[3].append.count`) wherever the input
//! gives one: type and range errors are raised while deserializing so the YAML position is
//! attached; checks that need the whole workload (disk capacity, the power-cut ack) find their
//! line with a light scan of the text. Input is bounded before any of that (size, nesting and
//! node count, aliases expanded): see `input`.
//!
//! serde_yaml represents enums with YAML tags (`!append`), which reads badly, so a step is a
//! one-key map deserialized through a private `StepFile` struct and converted into the [`Step`] enum.
//!
//! The module is split by responsibility: the workload and its counts here; the steps in
//! `steps`, the engine options in `engine`, limits and defaults in `limits`; reading text in
//! `load` (bounded first by `input`), the serde forms of the file in `forms` and its scalars
//! (bounded integers, byte sizes) in `scalars`; the rules in `validate` and `file_tree`; error
//! positions in `diagnostics`.

mod diagnostics;
mod engine;
mod file_tree;
mod forms;
mod input;
mod limits;
mod load;
mod program;
mod scalars;
mod step_checks;
mod steps;
mod validate;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub use diagnostics::{SpecDiagnostic, SpecError};
pub use engine::{DurabilitySpec, IoPathSpec, PreallocationSpec, WriterSpec};
pub use input::{InputError, MAX_NESTING_DEPTH, MAX_SPEC_BYTES, MAX_YAML_NODES};
pub use limits::{
    DEFAULT_EXT4_DISK_MIB, DEFAULT_FILE_BYTES, DEFAULT_SEED, GUEST_FILES_DIR, MAX_ARGV,
    MAX_ARG_BYTES, MAX_COMMIT_EVERY, MAX_DISK_MIB, MAX_ENV_VARS, MAX_EXEC_TIMEOUT_S,
    MAX_FILE_BYTES, MAX_GUEST_FILES, MAX_GUEST_FILE_BYTES, MAX_GUEST_PACKAGES, MAX_INGEST_CLIENTS,
    MAX_LOG_MIB, MAX_RECORDS_PER_STEP, MAX_RECORD_BYTES, MAX_SEGMENT_BYTES, MAX_STAGING_BYTES,
    MAX_STEPS, MAX_TOTAL_ACKS, MIN_EXT4_DISK_MIB, MIN_SEGMENT_BYTES, MIN_STAGING_BYTES,
    MIN_XFS_DISK_MIB, PROGRAM_UID_GID,
};
pub use load::{load, parse};
pub use program::{
    argv_problem, guest_file_name, package_name_problem, parse_duration_s, CheckerSpec, ExecStep,
    ExecUser, DEFAULT_EXEC_TIMEOUT_S,
};
pub use scalars::parse_byte_size;
pub use steps::{AppendStep, EioKind, FaultSpec, FaultTarget, FileOp, IngestStep, SizeRange, Step};

use forms::{PowerCutFile, WorkloadFile};

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
    /// Debian packages whose files the guest image carries (with their dependencies), for the
    /// programs of `exec:` steps.
    pub guest_packages: Vec<String>,
    /// Files of the user's (paths on the host; [`load`] resolves relative ones against the
    /// workload file's directory) copied into the guest at [`GUEST_FILES_DIR`]`/<base name>`.
    pub guest_files: Vec<String>,
    /// How the crash states of a program's run are judged (needed with `exec:` steps).
    pub checker: Option<CheckerSpec>,
    /// `exec:` steps may run as root (docs/programs.md: such a program can write the raw
    /// device and craft an image that attacks the host kernel that mounts it).
    pub allow_root_exec: bool,
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

/// When the host cuts the power of a live run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PowerCutFile", into = "PowerCutFile")]
pub enum PowerCut {
    /// Right after the N-th durability ack (records or file; the start ack is not counted).
    AtAck(u64),
    /// After an ack chosen from the seed.
    Random,
}

impl Workload {
    /// Acks a complete run of the steps emits: start, one per records group, acked file
    /// operation, ingest record and retire, and end. Exact when no step injects a fault and the
    /// run is not cut short (a power cut, an error): the spec fixes every count. With fault
    /// steps it is an upper bound, since a call that fails under the fault, or that the
    /// poisoned journal refuses, acks nothing. The run after a power cut is counted apart
    /// ([`Workload::after_crash_acks`]).
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

    /// Every ack the run after the power cut emits: start, what its opening recovery returned
    /// (I9), its steps' and end.
    pub fn after_crash_acks(&self) -> u64 {
        3 + self.after_crash_steps().iter().map(Step::acks).sum::<u64>()
    }

    /// The first `exec:` step that runs as root, as a field path (`steps[2].exec.user`).
    pub fn root_exec_step(&self) -> Option<String> {
        let lists = [
            ("steps", Some(&self.steps)),
            ("after_crash", self.after_crash.as_ref()),
        ];
        lists.into_iter().find_map(|(list, steps)| {
            let i = steps?
                .iter()
                .position(|s| matches!(s, Step::Exec(e) if e.user == ExecUser::Root))?;
            Some(format!("{list}[{i}].exec.user"))
        })
    }

    /// Whether the workload runs programs under test (`exec:` steps) instead of the engine.
    pub fn is_program(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Exec(_)))
    }

    /// Whether any step injects a fault.
    pub fn has_faults(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Fault(_)))
    }
}

/// RNG stream of the seeded power-cut choice.
const POWER_CUT_RNG_STREAM: u64 = 0x00C0_FFEE;
