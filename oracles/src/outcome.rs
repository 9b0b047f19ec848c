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
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("ack ledger in the log: {0}")]
    Ledger(#[from] AckLabelError),
    #[error(transparent)]
    StateId(#[from] StateIdError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("mid-log corruption probe: {0}")]
    Probe(#[from] ProbeError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad shard {k}/{n}")]
    BadShard { k: u32, n: u32 },
}

/// A `map_err` for I/O on `path`.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckError {
    let path = path.to_path_buf();
    move |source| CheckError::Io { op, path, source }
}

/// What checking one state found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StateOutcome {
    pub state_id: String,
    pub kind: StateKind,
    pub violations: Vec<Violation>,
    pub records_recovered: Option<usize>,
    pub truncated_tail: Option<TailInfo>,
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
