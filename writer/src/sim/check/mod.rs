//! The checker: runs the engine (or one of its mutants) on a [`SimStorage`](super::SimStorage) along a plan, and
//! after every acknowledgement and every step recovers crash states of the file system as it
//! is at that moment and has the judge (`powercut_judge`) decide I1 to I4 and I9 on each.
//! With a fault armed it also holds the engine to I7 (see [`SimStep::Fault`]): the driver
//! checks what each call returns, and acknowledgements made before the engine failed become
//! I7 promises.

mod concurrent;
mod driver;
mod ledger;
mod parallel;
mod plan;
mod report;
mod steps;

pub use driver::{check_run, reproduce_state};
pub use plan::{
    SimPlan, SimProgress, SimStep, MAX_CONCURRENT_RECORDS, MAX_CRASH_STATES_PER_CHECK,
    MAX_PAYLOAD_BYTES, MAX_RECORDS_PER_RUN, MAX_RECORDS_PER_STEP, MAX_STEPS, MAX_THREADS,
    SIM_JOURNAL_DIR,
};
pub use report::{SimInvariant, SimReport, SimState, SimViolation};

/// Violations kept in a report (more are only counted).
const MAX_KEPT_VIOLATIONS: usize = 256;

// Labels that keep the seed streams of different purposes apart.
const PAYLOAD_STREAM: u64 = 1;
const CHECK_STREAM: u64 = 2;
const CRASH_REOPEN_STREAM: u64 = 3;
const HOLD_BACK_STREAM: u64 = 4;
const FAULT_STREAM: u64 = 5;
