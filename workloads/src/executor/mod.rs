//! Runs a workload against a directory: the journal in `root/journal`, file operations under
//! `root/files`.
//!
//! Every acknowledgement goes to an [`AckSink`] right after the engine's call returns and before
//! anything else happens, so the guest agent can write a dm-log-writes MARK that is ordered
//! after every write the ack depends on and before every write that follows it.
//!
//! Determinism: record sizes come from a ChaCha8 stream of the workload seed (stream 0 for the
//! main appender, one stream per ingest client), payloads from `payload::derive(seed, writer,
//! sequence, len)` and file contents from (seed, path, step index). With one writer at a time
//! the same seed gives the same acks; concurrent ingest clients race for LSNs, so only the set
//! of records is reproducible there, not their order.
//!
//! The ingest server opens the journal itself, so an ingest step closes the main journal, lets
//! the server open it (checking its recovery as a reopen does), serves the clients from the
//! server's journal and takes that journal back when the server stops.
//!
//! The module is split by responsibility: the entry points and results here; the [`AckSink`]
//! in `sink`; errors in `error`; the run and its steps in `run`, appends in `append`, file
//! operations in `files`, ingest clients in `ingest`, injected faults in `faults`; what was
//! acknowledged (the ledger) and the recovery checks against it in `ledger`; the run after a
//! power cut in `after_crash`.

mod after_crash;
mod error;
mod faults;
mod files;
mod ingest;
mod ledger;
mod program;
mod records;
mod run;
mod sink;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::spec::Workload;

pub use after_crash::{
    check_prior_records, continue_after_crash, ContinuationSummary, PROGRAM_RESTART,
};
pub use error::{ExecError, Phase};
pub use files::file_contents;
pub use program::PROGRAM_DATA_DIR;
pub use sink::{AckSink, FaultAction, ProgressEvent};

use ledger::Shared;
use run::Run;

/// Writer id of the main appender; ingest clients are 1..=clients.
pub const MAIN_WRITER: u32 = 0;

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionSummary {
    /// Acks emitted, start and end included.
    pub acks: u64,
    /// Records appended (and acknowledged).
    pub records: u64,
    /// Payload bytes of those records.
    pub record_bytes: u64,
    /// File operations done (acked or not).
    pub file_ops: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// One line per journal open: io path, O_DIRECT or not, alignment, durability.
    pub open_reports: Vec<String>,
    /// Records appended while a fault was armed whose append or commit failed (never acked).
    pub records_failed: u64,
    /// Calls the poisoned journal refused with `Poisoned`, as it must after a failed write.
    pub poisoned_refusals: u64,
    /// Invariant I7 findings (also sent to [`AckSink::finding`]).
    pub findings: Vec<RunFinding>,
}

/// Runs `workload` under `root` (created if missing; its `journal` directory must be absent or
/// empty), sending every ack to `sink`.
pub fn execute(
    workload: &Workload,
    root: &Path,
    sink: &dyn AckSink,
) -> Result<ExecutionSummary, ExecError> {
    workload.validate()?;
    let started = Instant::now();
    let shared = Shared::new(workload, sink);
    let mut run = Run::new(&shared, root, workload.steps.clone(), MAIN_WRITER, 0);
    if workload.is_program() {
        run.setup_program()?;
    } else {
        run.setup()?;
    }
    run.run_steps(&shared, sink, started)
}

/// Something a run found wrong: after a crash, an ack of the first run the recovered state
/// breaks; during a run, an I7 finding after an injected fault, or a reopen whose recovery
/// differs from what was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunFinding {
    /// The invariant that failed (I1, I2, I3, I4, I6 on a recovered journal; I7 during a run).
    pub invariant: String,
    /// Label of the ack concerned, if one.
    pub step: Option<String>,
    /// What the first run acknowledged (or the run promised).
    pub expected: String,
    /// What the checked state holds instead.
    pub found: String,
}
