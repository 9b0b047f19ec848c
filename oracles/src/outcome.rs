//! What checking crash states yields: the outcome of one state, the minimal state a shrink finds,
//! and the errors of the harness itself.
//!
//! These types sit below the modules that produce and print them (`check`, `keep`, `shrink`,
//! `report`), so that those depend on each other in one direction only: `keep` <- `check` <-
//! `shrink`, and `report` beside them.

use std::path::{Path, PathBuf};

use powercut_workloads::ack::AckLabelError;

use crate::blocklog::LogError;
use crate::crash::{ResolveError, StateIdError, StateKind};
use crate::invariants::{ProbeError, TailInfo, Violation};
use crate::mount::MountError;
use crate::replay::ReplayError;

/// Failures of the harness itself (not findings).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Reading the block log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Building a crash image failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// Mounting a crash image failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// A MARK label is not an ack.
    #[error("ack ledger in the log: {0}")]
    Ledger(#[from] AckLabelError),
    /// A state id does not parse.
    #[error(transparent)]
    StateId(#[from] StateIdError),
    /// A state id does not fit the log.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The I5 probe failed.
    #[error("mid-log corruption probe: {0}")]
    Probe(#[from] ProbeError),
    /// A program's checker gave no verdict (exit status other than 0 or 1, timeout).
    #[error(transparent)]
    Checker(#[from] crate::check::CheckerError),
    /// Other I/O failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The shard is not one of `0..n`.
    #[error("bad shard {k}/{n}")]
    BadShard {
        /// The shard's index.
        k: u32,
        /// Shards in all.
        n: u32,
    },
}

/// A `map_err` for I/O on `path`.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckError {
    let path = path.to_path_buf();
    move |source| CheckError::Io { op, path, source }
}

/// What checking one state found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StateOutcome {
    /// Id of the crash state.
    pub state_id: String,
    /// How the state was chosen.
    pub kind: StateKind,
    /// Invariants the state broke.
    pub violations: Vec<Violation>,
    /// Records recovery returned, when it ran.
    pub records_recovered: Option<usize>,
    /// The torn tail recovery truncated, if any.
    pub truncated_tail: Option<TailInfo>,
    /// Why recovery failed, when it did.
    pub recovery_error: Option<String>,
    /// I5 probe result, when it ran: "refused", "violated" or "not applicable: why".
    pub mid_log_probe: Option<String>,
    /// Where the failing image was kept.
    pub kept: Option<PathBuf>,
}

/// The smallest failing state found for a violation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShrunkState {
    /// The invariant that keeps failing.
    pub invariant: String,
    /// The state the violation was found on.
    pub original: String,
    /// The simplest state of the same cut that still fails it.
    pub minimal: String,
    /// Volatile writes of the cut that the minimal state drops.
    pub dropped_writes: usize,
    /// Volatile writes of the cut.
    pub volatile_writes: usize,
    /// Whether the minimal state still tears a write.
    pub torn: bool,
    /// States checked while shrinking.
    pub tries: usize,
}

impl ShrunkState {
    /// One line for reports: what the minimal state keeps of the cut.
    pub fn describe(&self) -> String {
        format!(
            "{} on {}: {} of {} volatile writes dropped{} ({} states tried)",
            self.invariant,
            self.minimal,
            self.dropped_writes,
            self.volatile_writes,
            if self.torn {
                ", one torn"
            } else {
                ", none torn"
            },
            self.tries
        )
    }
}
