//! Checking the crash states of a batch of snapshots on several threads. The ledger does not
//! change while a batch is checked (the engine call that took the snapshots has not returned
//! yet), so each state's recovery and judgement are independent; the findings are then
//! recorded in the order a single thread would have met them, stopping where it would have
//! stopped, so a run's report is the same whatever the number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::super::fs::SimStorage;
use super::super::rng::derive_seed;
use super::driver::Run;
use super::ledger::Ledger;
use super::report::{SimInvariant, SimState};
use super::CHECK_STREAM;
use crate::recovery::{self, Recovery};
use crate::Mutant;

/// Threads that check crash states: the machine's cores, at most this many.
const MAX_CHECK_THREADS: usize = 8;

/// Fewer states than this in a batch are checked on the calling thread: starting threads
/// would cost more than it saves.
const MIN_PARALLEL_STATES: usize = 4;

/// The judge's findings on one state: invariant, what was expected, what was found.
pub(super) type Findings = Vec<(SimInvariant, String, String)>;

/// One crash state to check: which snapshot, which state of it.
#[derive(Clone, Copy)]
struct Job {
    snapshot: usize,
    state: SimState,
}

impl Run<'_> {
    /// The states of the next check (the durable-only one, then the seeded ones) and counts
    /// the check.
    pub(super) fn next_check_states(&mut self) -> Vec<SimState> {
        let check = self.checks;
        self.checks += 1;
        let mut states = vec![SimState::DurableOnly];
        states.extend((0..self.plan.crash_states_per_check).map(|index| {
            SimState::Seeded(derive_seed(self.seed, &[CHECK_STREAM, check, index as u64]))
        }));
        states
    }

    /// Checks every state of `snapshots` on several threads when that pays; false when there
    /// were too few states or threads and nothing was checked.
    pub(super) fn check_snapshots_in_parallel(
        &mut self,
        snapshots: &[SimStorage],
        step: usize,
    ) -> bool {
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_CHECK_THREADS);
        let states_per_check = 1 + self.plan.crash_states_per_check;
        if self.target.is_some()
            || threads < 2
            || snapshots.len() * states_per_check < MIN_PARALLEL_STATES
        {
            return false;
        }
        // Read before judging: a live file system's count may move meanwhile (background
        // segment preparation), and a single thread reads it before its states too.
        let at_ops: Vec<u64> = snapshots.iter().map(SimStorage::ops).collect();
        let mut jobs = Vec::new();
        for snapshot in 0..snapshots.len() {
            for state in self.next_check_states() {
                jobs.push(Job { snapshot, state });
            }
        }
        let judged = judge_all(
            &jobs,
            snapshots,
            &self.ledger,
            self.options.mutant,
            self.deadline,
            threads,
        );
        for (job, findings) in jobs.iter().zip(judged) {
            // A state left unjudged: the deadline passed.
            let Some(findings) = findings else {
                return true;
            };
            let at_op = at_ops[job.snapshot];
            self.record_state(step, job.state, at_op, findings);
            if self.stopped() {
                return true;
            }
        }
        true
    }
}

/// Recovers and judges every job on `threads` threads; `None` for the jobs not reached before
/// the deadline.
fn judge_all(
    jobs: &[Job],
    snapshots: &[SimStorage],
    ledger: &Ledger,
    mutant: Option<Mutant>,
    deadline: Option<Instant>,
    threads: usize,
) -> Vec<Option<Findings>> {
    let results: Vec<Mutex<Option<Findings>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(index) else {
                    return;
                };
                if deadline.is_some_and(|at| Instant::now() >= at) {
                    return;
                }
                let findings = judge_one(&snapshots[job.snapshot], job.state, ledger, mutant);
                *results[index].lock().unwrap_or_else(|p| p.into_inner()) = Some(findings);
            });
        }
    });
    results
        .into_iter()
        .map(|slot| slot.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// The crash state `state` of `fs`, recovered and judged (see [`judge_crashed`]).
fn judge_one(
    fs: &SimStorage,
    state: SimState,
    ledger: &Ledger,
    mutant: Option<Mutant>,
) -> Findings {
    judge_crashed(&crash_state(fs, state), ledger, mutant)
}

/// The file system a crash left, recovered (by the mutant's recovery, when it changes
/// recovery) and judged against the ledger.
pub(super) fn judge_crashed(
    crashed: &SimStorage,
    ledger: &Ledger,
    mutant: Option<Mutant>,
) -> Findings {
    let mut records = Vec::new();
    let result = recovery::scan(crashed, Run::dir(), mutant, &mut |r| {
        records.push(r.to_record())
    })
    .map(|scan| Recovery::new(scan.summary, records));
    ledger.verify(result)
}

/// The file system a crash leaves in `state`.
pub(super) fn crash_state(fs: &SimStorage, state: SimState) -> SimStorage {
    match state {
        SimState::Seeded(seed) => fs.crash(seed),
        SimState::DurableOnly | SimState::Live => fs.crash_durable_only(),
    }
}
