//! The `sim` backend (docs/design.md section 7): the engine's file operations on an in-memory file
//! system that keeps a live and a durable view, and a checker that runs the engine on it and
//! verifies the invariants I1 to I4 in crash states taken after every file-system operation
//! the engine performs (writes caught in flight, so that they may tear) and after every
//! acknowledgement, each against the acknowledgements returned before it.
//!
//! Injected EIO ([`SimStorage::arm_fault`], [`SimStep::Fault`]): writes, syncs or both fail,
//! once or until cleared; a failed sync loses its writes for good, as Linux does (fsyncgate;
//! see [`SimFault`]). The checker then holds the engine to I7: a failed call acknowledges
//! nothing, the journal refuses every call until reopened, and the reopen recovers every
//! record acknowledged before the fault (mutants M3 and M10 break it).
//!
//! What the model leaves out: corruption of durable data (M8, the harness's I5), and
//! reordering of two overlapping writes in flight at once (they land in submission order; the
//! engine never overlaps writes in flight). A sync makes everything written to the file before
//! it durable, even a write still in flight.
//!
//! The model ([`SimStorage`]) promises only what POSIX does: data is durable after its file's
//! fdatasync (or an O_DSYNC write), a name after its directory's fsync. Real ext4 and XFS
//! commit a new file's directory entry together with its first fsync, so a missing directory
//! fsync (mutants M2, M9) goes unseen on them; here it loses the file. No kernel is involved:
//! the simulation complements the VM and dm tiers, it does not replace them.
//!
//! Reproducing: a crash state is fixed by the file system it was taken from and its seed
//! ([`SimStorage::crash`]); a run of [`check_run`] is fixed by its plan, mutant and seed, as
//! long as the engine's own I/O is deterministic (no [`SimStep::AppendConcurrent`], no
//! segment preparation in the background: the defaults of [`SimPlan::new`]), and
//! [`reproduce_state`] rebuilds the crash state a violation names. Mutant M1 writes from a
//! background thread, so which crash state shows its loss depends on thread timing.

mod check;
mod fault;
mod fs;
mod pages;
mod rng;

pub use check::{
    check_run, reproduce_state, SimInvariant, SimPlan, SimProgress, SimReport, SimState, SimStep,
    SimViolation, MAX_CONCURRENT_RECORDS, MAX_CRASH_STATES_PER_CHECK, MAX_PAYLOAD_BYTES,
    MAX_RECORDS_PER_RUN, MAX_RECORDS_PER_STEP, MAX_STEPS, MAX_THREADS, SIM_JOURNAL_DIR,
};
pub use fault::{FaultOn, SimFault};
pub use fs::{
    SimConfig, SimStorage, SimUsage, MAX_BUFFERED_SNAPSHOTS, MAX_PENDING_OPS, SECTOR_BYTES,
};
pub use rng::SplitMix64;

use crate::error::JournalError;

/// What can stop a simulation before it checks anything.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The simulated device or file system was given impossible sizes.
    #[error("invalid simulated file system configuration: {0}")]
    InvalidConfig(String),
    /// The plan breaks a limit or asks for something the engine cannot do.
    #[error("invalid simulation plan: {0}")]
    InvalidPlan(String),
    /// The engine refused to start for a reason that is not a finding (e.g. a mutant was
    /// selected in a build without the `mutants` feature: `JournalError::MutantsNotBuilt`).
    #[error(transparent)]
    Journal(#[from] JournalError),
}
