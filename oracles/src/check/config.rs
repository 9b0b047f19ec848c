//! The knobs of a check run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use powercut_workloads::ack::Ack;

use super::program::ProgramCheck;
use crate::crash::EnumConfig;
use crate::invariants::InvariantConfig;

/// Failing images kept per run by default.
pub const DEFAULT_MAX_KEPT_IMAGES: usize = 8;

/// Knobs of a check run.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// Stop starting new states after this long (the report says what was covered).
    pub budget: Option<Duration>,
    /// Stop starting new work at this instant: the one deadline of a command, made at its start
    /// and shared by every phase (the recording, coverage, states, the I5 probe, the shrink, the
    /// run after a power cut). The earlier of this and `budget` counted from the check's start
    /// wins.
    pub deadline: Option<Instant>,
    /// `(k, n)`: check only shard k of n (0-based).
    pub shard: Option<(u32, u32)>,
    /// Which crash states are enumerated: subsets, samples, tears, the device's atomic write
    /// size and the seed of the samples (printed in the report; ids carry the derived seeds).
    pub states: EnumConfig,
    /// Failing images, the log and the ledger go here.
    pub keep_dir: Option<PathBuf>,
    /// Where images are built (default: a temporary directory). A reflink-capable file system
    /// (XFS, btrfs) makes each state a FICLONE instead of a copy.
    pub scratch_dir: Option<PathBuf>,
    /// Threads that check states in parallel.
    pub workers: usize,
    /// Where the engine's files live in the mounted file system.
    pub invariants: InvariantConfig,
    /// Run the I5 probe on the last full-prefix state.
    pub mid_log_corruption: bool,
    /// Run the coverage check (every ack on its durable state) as well.
    pub coverage: bool,
    /// When the scratch directory cannot reflink, build images on a loop-mounted XFS scratch
    /// file system made for the run (FICLONE instead of a copy per state); falls back to copies
    /// if mkfs.xfs is missing or the mount fails.
    pub reflink_scratch: bool,
    /// Acks with a log entry index, for logs without MARKs (QEMU blklogwrites with in-band acks):
    /// an ack at index i is expected in every state whose cut is past i, so give the index of the
    /// entry after which the ack was made (its flush). None: the log's own MARK labels.
    pub acks: Option<Vec<(u64, Ack)>>,
    /// Failing states whose image is kept in `keep_dir`, per pass (the crash states, then the
    /// coverage check's): the others keep their outcome and ledger, and `powercut repro ID`
    /// rebuilds any image. A mutant can fail hundreds of states of a 64 MiB disk.
    pub max_kept_images: usize,
    /// Check only the first N entries of the log. A recording cut by killing the VM can end in
    /// entries whose header reached the log disk but whose data did not; only the entries up
    /// to the last mark the recorder waited for are known whole.
    pub max_entries: Option<u64>,
    /// A program's run: its checker decides each state instead of the engine's recovery
    /// (no journal, no I5 probe).
    pub program: Option<ProgramCheck>,
}

impl CheckConfig {
    /// The instant at which a check started at `start` stops starting new work.
    pub fn deadline_from(&self, start: Instant) -> Option<Instant> {
        let from_budget = self.budget.map(|b| start + b);
        match (self.deadline, from_budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            budget: None,
            deadline: None,
            shard: None,
            states: EnumConfig::default(),
            keep_dir: None,
            scratch_dir: None,
            workers: 2,
            invariants: InvariantConfig::default(),
            mid_log_corruption: true,
            coverage: true,
            reflink_scratch: true,
            acks: None,
            max_kept_images: DEFAULT_MAX_KEPT_IMAGES,
            max_entries: None,
            program: None,
        }
    }
}
