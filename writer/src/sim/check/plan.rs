//! What to run: the steps of a plan, the simulated device and journal options, the limits.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

#[cfg(doc)]
use super::super::SimStorage;

use super::super::fault::FaultOn;
use super::super::fs::SimConfig;
use super::super::SimError;
use crate::options::{Durability, IoPathChoice, JournalOptions, Preallocation};

/// Where the simulated journal lives.
pub const SIM_JOURNAL_DIR: &str = "/journal";
/// Most steps in a plan.
pub const MAX_STEPS: usize = 1000;
/// Most records one [`SimStep::Append`] appends.
pub const MAX_RECORDS_PER_STEP: u32 = 10_000;
/// Most records a whole plan appends.
pub const MAX_RECORDS_PER_RUN: u64 = 100_000;
/// Largest payload a plan may ask for.
pub const MAX_PAYLOAD_BYTES: usize = 32 * 1024;
/// Most seeded crash states per check (the durable-only state comes on top).
pub const MAX_CRASH_STATES_PER_CHECK: usize = 64;
/// Most threads of a [`SimStep::AppendConcurrent`].
pub const MAX_THREADS: u32 = 16;
/// Most records of a [`SimStep::AppendConcurrent`] (its crash states are checked at its end,
/// two snapshots per record at most).
pub const MAX_CONCURRENT_RECORDS: u64 = 1000;

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimStep {
    /// Appends `records` records, committing after every `group` of them: each commit is an
    /// acknowledgement, followed by a check.
    Append {
        /// Records to append.
        records: u32,
        /// Records per commit (at least 1).
        group: u32,
    },
    /// `threads` threads each append `records_per_thread` records, each waiting for its
    /// record to be durable before the next (group commit across threads, several groups in
    /// flight). Crash states taken meanwhile are checked once all threads are done, each
    /// against the acknowledgements that had returned before it was taken.
    AppendConcurrent {
        /// Appending threads (1 to 16).
        threads: u32,
        /// Records per thread.
        records_per_thread: u32,
    },
    /// Seals the current segment and continues in the next (`Journal::rotate`).
    Rotate,
    /// Releases every acknowledged record but the last `keep_records`
    /// (`Journal::retire_before`): their segments become free files that later rotations
    /// recycle by renaming. Released records are no longer required by I1.
    Retire {
        /// Acknowledged records that stay required.
        keep_records: u32,
    },
    /// Closes the journal cleanly and opens it again.
    Reopen,
    /// Power cut: continues on a seeded crash state of the file system, reopening the journal
    /// there (recovery, then appending on top: docs/design.md, I8). An armed fault does not
    /// survive it.
    CrashReopen,
    /// Arms an EIO fault on the file system ([`SimStorage::arm_fault`]; seeded from the run's
    /// seed and the step). From then on engine calls may fail: a failed call acknowledges
    /// nothing, and once the engine has failed one it must refuse every call with
    /// `JournalError::Poisoned` until the next [`SimStep::Reopen`] or
    /// [`SimStep::CrashReopen`] (I7).
    Fault {
        /// What fails.
        on: FaultOn,
        /// Every matching operation fails until [`SimStep::ClearFault`] (false: only the first
        /// one, a device error that goes away at once).
        persistent: bool,
        /// Only writes overlapping file offsets `start..end` fail (`None`: all writes).
        bytes: Option<(u64, u64)>,
        /// Disarm the fault after this many further steps (`None`: at [`SimStep::ClearFault`]
        /// or when it fires, if it is not persistent).
        clear_after_steps: Option<u32>,
    },
    /// Disarms the fault, if one is armed.
    ClearFault,
}

/// What to run: journal options, simulated device, steps, payload sizes, how many crash
/// states to check each time.
#[derive(Debug, Clone)]
pub struct SimPlan {
    /// Options of the journal (`mutant` is replaced by the one given to [`check_run`](super::check_run)).
    pub journal: JournalOptions,
    /// The simulated device and file system.
    pub sim: SimConfig,
    /// The steps, in order.
    pub steps: Vec<SimStep>,
    /// Smallest payload (bytes).
    pub min_payload_bytes: usize,
    /// Largest payload (bytes); each record's size is drawn from the seed.
    pub max_payload_bytes: usize,
    /// Seeded crash states per check, besides the durable-only one.
    pub crash_states_per_check: usize,
    /// Also check crash states after every changing file-system operation inside an engine
    /// call (with the writes in flight, so that they may tear), not only between calls.
    pub crash_between_ops: bool,
    /// Stop the run once this many violations were found (0: never stop early).
    pub max_violations: u64,
    /// Stop checking after this long (the report then says the run did not complete).
    pub time_budget: Option<Duration>,
    /// Counters a caller may watch while the run goes on (another thread prints them).
    pub progress: Option<Arc<SimProgress>>,
}

/// How far a run is, readable from another thread while it goes on.
#[derive(Debug, Default)]
pub struct SimProgress {
    /// Plan steps done.
    pub steps_done: AtomicU64,
    /// Crash states checked so far.
    pub states_checked: AtomicU64,
}

impl SimPlan {
    /// A plan with small segments (64 KiB), small staging, no background segment preparation
    /// (so a seed replays the same run) and 3 seeded crash states per check.
    pub fn new(
        durability: Durability,
        preallocation: Preallocation,
        recycle_segments: bool,
        steps: Vec<SimStep>,
    ) -> SimPlan {
        SimPlan {
            journal: JournalOptions {
                durability,
                preallocation,
                recycle_segments,
                segment_bytes: 64 * 1024,
                max_staging_bytes: 128 * 1024,
                io_path: IoPathChoice::Pwritev2,
                max_write_chunk_bytes: 1024 * 1024,
                direct_io: true,
                prepare_ahead: false,
                max_groups_in_flight: 2,
                mutant: None,
            },
            sim: SimConfig::default(),
            steps,
            min_payload_bytes: 1,
            max_payload_bytes: 700,
            crash_states_per_check: 3,
            crash_between_ops: true,
            max_violations: 8,
            time_budget: None,
            progress: None,
        }
    }

    /// The steps of the standard plans: appends in groups, rotations, a release of old
    /// records followed by a rotation that recycles their segment, a clean reopen, a power
    /// cut and more appends after it.
    pub fn standard_steps() -> Vec<SimStep> {
        use SimStep::*;
        vec![
            Append {
                records: 12,
                group: 3,
            },
            Rotate,
            Append {
                records: 12,
                group: 4,
            },
            Rotate,
            Retire { keep_records: 4 },
            Append {
                records: 12,
                group: 3,
            },
            // Recycles the segment released above (rename free-* -> seg-*).
            Rotate,
            Append {
                records: 12,
                group: 2,
            },
            Reopen,
            Append {
                records: 6,
                group: 3,
            },
            CrashReopen,
            Append {
                records: 6,
                group: 2,
            },
        ]
    }

    /// Named plans covering both durability modes and the three preallocation modes, each
    /// with the standard steps. A mutant is caught when any of them reports a violation.
    pub fn standard() -> Vec<(&'static str, SimPlan)> {
        let steps = SimPlan::standard_steps();
        vec![
            (
                "dsync-zero",
                SimPlan::new(Durability::Dsync, Preallocation::Zero, true, steps.clone()),
            ),
            (
                "fdatasync-zero",
                SimPlan::new(
                    Durability::Fdatasync,
                    Preallocation::Zero,
                    true,
                    steps.clone(),
                ),
            ),
            (
                "dsync-append",
                SimPlan::new(Durability::Dsync, Preallocation::None, true, steps.clone()),
            ),
            (
                "fdatasync-append",
                SimPlan::new(
                    Durability::Fdatasync,
                    Preallocation::None,
                    true,
                    steps.clone(),
                ),
            ),
            (
                "fdatasync-fallocate",
                SimPlan::new(Durability::Fdatasync, Preallocation::Fallocate, true, steps),
            ),
        ]
    }

    /// Checks the limits.
    pub fn validate(&self) -> Result<(), SimError> {
        self.sim.validate()?;
        let invalid = |text: String| Err(SimError::InvalidPlan(text));
        if self.steps.len() > MAX_STEPS {
            return invalid(format!(
                "{} steps, at most {MAX_STEPS} allowed",
                self.steps.len()
            ));
        }
        let mut total: u64 = 0;
        for (index, step) in self.steps.iter().enumerate() {
            if let SimStep::Append { records, group } = *step {
                if records > MAX_RECORDS_PER_STEP {
                    return invalid(format!(
                        "step {index} appends {records} records, at most \
                         {MAX_RECORDS_PER_STEP} allowed"
                    ));
                }
                if group == 0 {
                    return invalid(format!("step {index} commits groups of 0 records"));
                }
                total += u64::from(records);
            }
            if let SimStep::AppendConcurrent {
                threads,
                records_per_thread,
            } = *step
            {
                let records = u64::from(threads) * u64::from(records_per_thread);
                if !(1..=MAX_THREADS).contains(&threads) || records > MAX_CONCURRENT_RECORDS {
                    return invalid(format!(
                        "step {index}: {threads} threads x {records_per_thread} records; \
                         need 1 to {MAX_THREADS} threads and at most \
                         {MAX_CONCURRENT_RECORDS} records"
                    ));
                }
                total += records;
            }
        }
        if total > MAX_RECORDS_PER_RUN {
            return invalid(format!(
                "the plan appends {total} records, at most {MAX_RECORDS_PER_RUN} allowed"
            ));
        }
        if self.min_payload_bytes > self.max_payload_bytes
            || self.max_payload_bytes > MAX_PAYLOAD_BYTES
        {
            return invalid(format!(
                "payload sizes {}..={} bytes: need min <= max <= {MAX_PAYLOAD_BYTES}",
                self.min_payload_bytes, self.max_payload_bytes
            ));
        }
        if self.crash_states_per_check > MAX_CRASH_STATES_PER_CHECK {
            return invalid(format!(
                "{} crash states per check, at most {MAX_CRASH_STATES_PER_CHECK} allowed",
                self.crash_states_per_check
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced() {
        let mut plan = SimPlan::new(Durability::Dsync, Preallocation::Zero, true, vec![]);
        assert!(plan.validate().is_ok());
        plan.steps = vec![SimStep::Append {
            records: 1,
            group: 0,
        }];
        assert!(matches!(plan.validate(), Err(SimError::InvalidPlan(_))));
        plan.steps = vec![SimStep::Rotate; MAX_STEPS + 1];
        assert!(plan.validate().is_err());
        plan.steps.clear();
        plan.max_payload_bytes = MAX_PAYLOAD_BYTES + 1;
        assert!(plan.validate().is_err());
        plan.max_payload_bytes = 10;
        plan.min_payload_bytes = 11;
        assert!(plan.validate().is_err());
        plan.min_payload_bytes = 1;
        plan.crash_states_per_check = MAX_CRASH_STATES_PER_CHECK + 1;
        assert!(plan.validate().is_err());
        plan.crash_states_per_check = 1;
        plan.sim.alignment_bytes = 1000;
        assert!(matches!(plan.validate(), Err(SimError::InvalidConfig(_))));
    }
}
