//! The checking side of the CLI: `run` (record + check), `check` (an existing recording),
//! `repro`, `replay`, `log inspect` and `merge` of check reports.
//!
//! [`args`] holds the knobs, [`pipeline`] records and checks, `output` writes what a check shows,
//! [`offline`] holds the commands that need no VM. The names other modules use are re-exported
//! here, so callers say `check_cmds::run` whichever file holds it.

pub mod args;
pub mod offline;
mod output;
pub mod pipeline;

pub use crate::exit::ViolationFound;
// The mutants' tests check through these names which recovery a workload gets.
#[cfg(test)]
pub use crate::recovery::{recovery_for, recovery_mutant};
pub use args::{parse_duration, CheckArgs};
pub use offline::{inspect, merge, replay, repro};
pub use pipeline::{
    check_fault_recording, check_recording, guest_findings, load_recorded_workload, run,
    GUEST_RUN_STATE_ID,
};
