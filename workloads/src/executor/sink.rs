//! The run's environment: where acks, progress and findings go, and who arms faults.

use std::path::PathBuf;

use super::RunFinding;
use crate::ack::Ack;
use crate::spec::FaultSpec;

/// What a run reports to and asks of its environment: it receives the acks, progress and
/// findings of [`execute`](super::execute) and
/// [`continue_after_crash`](super::continue_after_crash), and it also arms and clears the
/// injected I/O faults of `fault:` and `clear_fault:` steps ([`AckSink::fault`]), which only
/// the guest agent can do. Called from several threads during ingest steps.
pub trait AckSink: Sync {
    /// Records one ack. An error stops the run: an ack that cannot be recorded is worthless.
    fn ack(&self, ack: &Ack) -> Result<(), String>;

    /// Reports progress; the default ignores it.
    fn progress(&self, event: &ProgressEvent) {
        let _ = event;
    }

    /// Reports an ack of the first run that the state after a crash breaks (see
    /// [`continue_after_crash`](super::continue_after_crash)), before the after-crash steps
    /// run; the default ignores it.
    fn prior_violation(&self, violation: &RunFinding) {
        let _ = violation;
    }

    /// Arms or clears an injected I/O fault (a `fault:` or `clear_fault:` step). Only the guest
    /// agent can swap the device under the file system; the default refuses.
    fn fault(&self, action: &FaultAction) -> Result<(), String> {
        let _ = action;
        Err(
            "fault steps need the guest agent (device-mapper under the file system); \
             run the workload with `powercut run`"
                .into(),
        )
    }

    /// Reports a finding of the run itself (invariant I7 after an injected fault); the
    /// default ignores it. The run goes on.
    fn finding(&self, finding: &RunFinding) {
        let _ = finding;
    }
}

/// What a `fault:` or `clear_fault:` step asks of the [`AckSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Make I/O to `target` fail with EIO from now on.
    Arm {
        /// The step's fault.
        fault: FaultSpec,
        /// The journal directory, whose segment files a [`crate::spec::FaultTarget::Journal`] covers.
        journal_dir: PathBuf,
    },
    /// Undo the armed fault.
    Clear,
}

/// Progress of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    /// Index of the step (0-based).
    pub step_index: usize,
    /// Number of steps of the workload.
    pub steps_total: usize,
    /// Acks emitted so far, start ack included.
    pub acks_so_far: u64,
    /// Acks a complete run emits.
    pub acks_total: u64,
    /// false when the step starts, true when it is done.
    pub finished: bool,
    /// What the step does.
    pub description: String,
}
