//! The driver: opens the engine on a simulated file system, runs a plan's steps, checks crash
//! states after every operation and acknowledgement.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use powercut_judge::records::RecordPromise;
use powercut_judge::Invariant;

use super::super::fs::SimStorage;

use super::super::SimError;
use super::ledger::Ledger;
use super::parallel::{crash_state, judge_crashed, Findings};
use super::plan::{SimPlan, SimStep, SIM_JOURNAL_DIR};
use super::report::{SimInvariant, SimReport, SimState, SimViolation};
use super::MAX_KEPT_VIOLATIONS;
use crate::error::JournalError;
use crate::journal::Journal;
use crate::options::JournalOptions;
use crate::recovery::Recovery;
use crate::Mutant;

pub(super) struct Run<'a> {
    pub(super) plan: &'a SimPlan,
    pub(super) options: JournalOptions,
    pub(super) seed: u64,
    pub(super) fs: SimStorage,
    pub(super) ledger: Ledger,
    pub(super) incarnation: u32,
    pub(super) checks: u64,
    /// When rebuilding one state: which, and the state once met.
    pub(super) target: Option<Target>,
    pub(super) found: Option<SimStorage>,
    pub(super) report: SimReport,
    /// The engine failed a call under an injected fault: until the next reopen it must refuse
    /// every call (I7).
    pub(super) poisoned: bool,
    /// Injected failures counted when the journal was last opened: an engine call may fail
    /// only after one more.
    pub(super) hits_at_open: u64,
    /// Steps left before the armed fault is cleared by itself.
    pub(super) fault_steps_left: Option<u32>,
    /// When the plan's time budget runs out.
    pub(super) deadline: Option<Instant>,
}

/// What became of an engine call.
pub(super) enum Called<T> {
    /// It succeeded.
    Done(T),
    /// It failed as an injected fault allows (nothing acknowledged); the run goes on.
    Failed,
    /// The run cannot go on.
    Stop,
}

impl<T> Called<T> {
    /// Runs `then` after a call that succeeded; false when the run cannot go on.
    pub(super) fn go_on(self, then: impl FnOnce()) -> bool {
        match self {
            Called::Done(_) => {
                then();
                true
            }
            Called::Failed => true,
            Called::Stop => false,
        }
    }
}

/// Runs `plan` on a fresh simulated file system with the real engine (`mutant` None) or a
/// mutant, checking crash states after the initial open, after every acknowledgement, after
/// every step and (with `crash_between_ops`) after every file-system operation of the engine.
/// `seed` fixes payloads and crash states.
///
/// Errors only when the run cannot start: an invalid plan, or a mutant in a build without the
/// `mutants` feature (`SimError::Journal(JournalError::MutantsNotBuilt)`); whatever the engine
/// does wrong afterwards is a violation in the report.
pub fn check_run(plan: &SimPlan, mutant: Option<Mutant>, seed: u64) -> Result<SimReport, SimError> {
    drive(plan, mutant, seed, None).map(|(report, _)| report)
}

/// Rebuilds the crash state a violation of `check_run(plan, mutant, violation.seed)` names:
/// runs the plan again up to that state and returns it (a file system holding only durable
/// data; recover it with [`crate::recover_with_storage`] at [`SIM_JOURNAL_DIR`]). `None` when
/// the run did not reach the same state (a plan with concurrent appends, background segment
/// preparation or mutant M1 depends on thread timing) or the violation is about the live
/// file system rather than a crash state.
pub fn reproduce_state(
    plan: &SimPlan,
    mutant: Option<Mutant>,
    violation: &SimViolation,
) -> Result<Option<SimStorage>, SimError> {
    let target = Target {
        step: violation.step,
        at_op: violation.at_op,
        state: violation.state,
    };
    if target.state == SimState::Live {
        return Ok(None);
    }
    drive(plan, mutant, violation.seed, Some(target)).map(|(_, found)| found)
}

/// A crash state to rebuild instead of checking everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    step: usize,
    at_op: u64,
    state: SimState,
}

fn drive(
    plan: &SimPlan,
    mutant: Option<Mutant>,
    seed: u64,
    target: Option<Target>,
) -> Result<(SimReport, Option<SimStorage>), SimError> {
    plan.validate()?;
    let started = Instant::now();
    let fs = SimStorage::new(plan.sim.clone())?;
    fs.record_op_snapshots(plan.crash_between_ops);
    let mut run = Run::new(plan, mutant, seed, fs, target);
    let opened = run.open();
    run.check_op_snapshots(0);
    let journal = match opened {
        Ok((journal, _)) => journal,
        Err(JournalError::MutantsNotBuilt) => {
            return Err(SimError::Journal(JournalError::MutantsNotBuilt))
        }
        Err(err) => {
            run.engine_failed(0, "open the journal on an empty file system", &err);
            return Ok(run.finish(started));
        }
    };
    if plan.max_payload_bytes > journal.max_payload_bytes() {
        return Err(SimError::InvalidPlan(format!(
            "payloads up to {} bytes, but the journal accepts at most {}",
            plan.max_payload_bytes,
            journal.max_payload_bytes()
        )));
    }
    let mut journal = Some(journal);
    run.check(0);
    let mut completed = !run.stopped();
    for (index, step) in plan.steps.iter().enumerate() {
        if !completed {
            break;
        }
        completed = run.step(index, *step, &mut journal) && !run.stopped();
        if !matches!(step, SimStep::Fault { .. }) {
            run.count_fault_step();
        }
        if let Some(progress) = &plan.progress {
            progress.steps_done.fetch_add(1, Ordering::Relaxed);
        }
    }
    if completed {
        if let Some(journal) = journal.take() {
            completed = run.close_at_end(journal);
        }
    }
    run.report.completed = completed && !run.stopped();
    Ok(run.finish(started))
}

impl<'a> Run<'a> {
    fn new(
        plan: &'a SimPlan,
        mutant: Option<Mutant>,
        seed: u64,
        fs: SimStorage,
        target: Option<Target>,
    ) -> Run<'a> {
        Run {
            plan,
            options: JournalOptions {
                mutant,
                ..plan.journal.clone()
            },
            seed,
            fs,
            ledger: Ledger {
                next_lsn: 1,
                ..Ledger::default()
            },
            incarnation: 0,
            checks: 0,
            target,
            found: None,
            poisoned: false,
            hits_at_open: 0,
            fault_steps_left: None,
            deadline: plan.time_budget.map(|budget| Instant::now() + budget),
            report: SimReport {
                seed,
                mutant,
                states_checked: 0,
                acks: 0,
                faults_hit: 0,
                last_acked_lsn: 0,
                violations: Vec::new(),
                violations_total: 0,
                completed: false,
                elapsed: Duration::ZERO,
            },
        }
    }
}

impl Run<'_> {
    pub(super) fn dir() -> &'static Path {
        Path::new(SIM_JOURNAL_DIR)
    }

    /// Opens the journal and collects what its recovery returned (sim journals are small).
    pub(super) fn open(&self) -> Result<(Journal, Recovery), JournalError> {
        let mut records = Vec::new();
        let (journal, report) = Journal::open_with_storage_visiting(
            Self::dir(),
            self.options.clone(),
            Arc::new(self.fs.clone()),
            &mut |r| records.push(r.to_record()),
        )?;
        Ok((journal, Recovery::new(report.recovery, records)))
    }

    pub(super) fn finish(mut self, started: Instant) -> (SimReport, Option<SimStorage>) {
        self.report.elapsed = started.elapsed();
        self.report.last_acked_lsn = self.ledger.acked;
        self.report.faults_hit += self.fs.fault_hits();
        (self.report, self.found)
    }

    pub(super) fn stopped(&self) -> bool {
        self.found.is_some()
            || self.plan.max_violations > 0
                && self.report.violations_total >= self.plan.max_violations
            || self.deadline.is_some_and(|at| Instant::now() >= at)
    }

    /// While rebuilding a state: keeps `crashed` if it is the one wanted.
    pub(super) fn offer(&mut self, step: usize, at_op: u64, state: SimState, crashed: &SimStorage) {
        if self.target == Some(Target { step, at_op, state }) && self.found.is_none() {
            self.found = Some(crashed.crash_durable_only());
        }
    }

    pub(super) fn record(
        &mut self,
        invariant: SimInvariant,
        step: usize,
        state: SimState,
        at_op: u64,
        expected: String,
        found: String,
    ) {
        self.report.violations_total += 1;
        if self.report.violations.len() < MAX_KEPT_VIOLATIONS {
            self.report.violations.push(SimViolation {
                invariant,
                seed: self.seed,
                step,
                acked_lsn: self.ledger.acked,
                at_op,
                state,
                expected,
                found,
            });
        }
    }

    pub(super) fn engine_failed(&mut self, step: usize, what: &str, err: &JournalError) {
        self.engine_misbehaved(
            step,
            format!("{what} succeeds (no fault is injected)"),
            format!("{err}"),
        );
    }

    pub(super) fn engine_misbehaved(&mut self, step: usize, expected: String, found: String) {
        let at_op = self.fs.ops();
        self.record(
            SimInvariant::Engine,
            step,
            SimState::Live,
            at_op,
            expected,
            found,
        );
    }

    /// Checks the crash states of the file system as it is now.
    pub(super) fn check(&mut self, step: usize) {
        let fs = self.fs.clone();
        if !self.check_snapshots_in_parallel(std::slice::from_ref(&fs), step) {
            self.check_fs(&fs, step);
        }
    }

    /// Checks the crash states of every copy the file system kept since the last call (one
    /// per operation of the engine call that just returned). Called before the ledger learns
    /// the call's outcome: acknowledgements count only once the call returned.
    pub(super) fn check_op_snapshots(&mut self, step: usize) {
        let snapshots = self.fs.take_op_snapshots();
        if self.stopped() || self.check_snapshots_in_parallel(&snapshots, step) {
            return;
        }
        for snapshot in snapshots {
            if self.stopped() {
                return;
            }
            self.check_fs(&snapshot, step);
        }
    }

    /// Recovers the durable-only state and the seeded crash states of `fs`, checking each.
    pub(super) fn check_fs(&mut self, fs: &SimStorage, step: usize) {
        let at_op = fs.ops();
        for state in self.next_check_states() {
            let crashed = crash_state(fs, state);
            self.offer(step, at_op, state, &crashed);
            // The mutant's own recovery: M4, M7 and M8 change it, the others recover as the
            // real engine does.
            let findings = judge_crashed(&crashed, &self.ledger, self.options.mutant);
            self.record_state(step, state, at_op, findings);
            if self.stopped() {
                return;
            }
        }
    }

    /// Counts a checked crash state (in the report and the progress) and records its findings.
    pub(super) fn record_state(
        &mut self,
        step: usize,
        state: SimState,
        at_op: u64,
        findings: Findings,
    ) {
        self.report.states_checked += 1;
        if let Some(progress) = &self.plan.progress {
            progress.states_checked.fetch_add(1, Ordering::Relaxed);
        }
        for (invariant, expected, found) in findings {
            self.record(invariant, step, state, at_op, expected, found);
        }
    }

    pub(super) fn verify(
        &mut self,
        step: usize,
        state: SimState,
        at_op: u64,
        result: Result<Recovery, JournalError>,
    ) {
        let findings = self.ledger.verify(result);
        self.record_state(step, state, at_op, findings);
    }

    /// After a reopen the log is what recovery found: records past its end are gone, and the
    /// records it holds are the durable log from now on.
    pub(super) fn continue_after(&mut self, recovery: &Recovery) {
        let last = recovery.last_lsn();
        self.ledger.written.retain(|&lsn, _| lsn <= last);
        // The contiguous run from the first record: a hole was already a finding of I2.
        self.ledger.recovered = recovery.records.first().and_then(|first| {
            let payloads = (first.lsn..)
                .zip(&recovery.records)
                .take_while(|(lsn, record)| record.lsn == *lsn)
                .map(|(_, record)| record.payload.as_slice());
            RecordPromise::of_payloads(Invariant::I9, first.lsn, payloads)
        });
        self.ledger.acked = last;
        self.ledger.next_lsn = recovery.end.next_lsn.max(last + 1);
        // Whatever was recovered is the log now, whether or not its append returned.
        for record in &recovery.records {
            self.ledger
                .written
                .insert(record.lsn, record.payload.clone());
        }
        self.ledger.unplaced.clear();
        self.ledger.poisoned_at = None;
        self.poisoned = false;
        self.hits_at_open = self.fs.fault_hits();
    }

    /// One step ran with the fault armed: clears it when its steps are up.
    fn count_fault_step(&mut self) {
        if let Some(left) = self.fault_steps_left.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.fs.clear_fault();
                self.fault_steps_left = None;
            }
        }
    }

    /// Closes the journal after the last step and checks the crash states; false when the
    /// close failed without a fault to explain it.
    fn close_at_end(&mut self, journal: Journal) -> bool {
        let step = self.plan.steps.len();
        let before = self.fs.fault_hits();
        let closed = journal.close();
        self.check_op_snapshots(step);
        let called = self.after_call(step, "close", None, before, closed, false);
        called.go_on(|| self.check(step))
    }

    /// Judges what an engine call returned, given the injected failures (`hits_before`: the
    /// count when it was made). While poisoned, the call must be refused with `Poisoned`. A
    /// call must not succeed when one of its own writes or syncs failed. A call may fail once
    /// a fault has failed an operation since the journal was opened; a failed `records` call
    /// (append, commit) must leave the journal poisoned. Any other failure is an engine one.
    pub(super) fn after_call<T>(
        &mut self,
        step: usize,
        what: &str,
        journal: Option<&Journal>,
        hits_before: u64,
        result: Result<T, JournalError>,
        records: bool,
    ) -> Called<T> {
        let hits = self.fs.fault_hits();
        if self.poisoned {
            let found = match result {
                Err(JournalError::Poisoned) => return Called::Failed,
                Ok(_) => "it succeeded".to_string(),
                Err(err) => err.to_string(),
            };
            let expected = format!("{what} refused (Poisoned) until a reopen, after an EIO");
            self.i7_violated(step, expected, found);
            return Called::Stop;
        }
        match result {
            Ok(value) => {
                if hits > hits_before {
                    let expected = format!("{what} fails when a write or sync of it failed");
                    let found = format!("it succeeded after {} injected EIO", hits - hits_before);
                    self.i7_violated(step, expected, found);
                }
                Called::Done(value)
            }
            Err(err) if hits > self.hits_at_open => {
                if journal.is_none_or(Journal::is_poisoned) {
                    self.poisoned = true;
                    self.ledger.poisoned_at.get_or_insert(self.ledger.acked);
                } else if records {
                    let expected = format!("a failed {what} poisons the journal");
                    self.i7_violated(step, expected, format!("{err}; not poisoned"));
                    return Called::Stop;
                }
                Called::Failed
            }
            Err(err) => {
                self.engine_failed(step, what, &err);
                Called::Stop
            }
        }
    }

    fn i7_violated(&mut self, step: usize, expected: String, found: String) {
        let at_op = self.fs.ops();
        let invariant = SimInvariant::Judged(Invariant::I7);
        self.record(invariant, step, SimState::Live, at_op, expected, found);
    }
}
