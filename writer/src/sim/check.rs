//! The checker: runs the engine (or one of its mutants) on a [`SimStorage`] along a plan, and
//! after every acknowledgement and every step recovers crash states of the file system as it
//! is at that moment and has the judge (`powercut_judge`) decide I1 to I4 and I9 on each.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use powercut_judge::records::{judge_recovery, Provenance, RecordPromise, RecordRules};
use powercut_judge::Invariant;

use super::fs::{SimConfig, SimStorage};
use super::rng::{derive_seed, SplitMix64};
use super::SimError;
use crate::error::JournalError;
use crate::journal::Journal;
use crate::options::{Durability, IoPathChoice, JournalOptions, Preallocation};
use crate::recovery::{self, Recovery};
use crate::{Lsn, Mutant};

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
/// Violations kept in a report (more are only counted).
const MAX_KEPT_VIOLATIONS: usize = 256;

// Labels that keep the seed streams of different purposes apart.
const PAYLOAD_STREAM: u64 = 1;
const CHECK_STREAM: u64 = 2;
const CRASH_REOPEN_STREAM: u64 = 3;
const HOLD_BACK_STREAM: u64 = 4;

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
    /// there (recovery, then appending on top: docs/design.md, I8).
    CrashReopen,
}

/// What to run: journal options, simulated device, steps, payload sizes, how many crash
/// states to check each time.
#[derive(Debug, Clone)]
pub struct SimPlan {
    /// Options of the journal (`mutant` is replaced by the one given to [`check_run`]).
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

/// What a violation breaks: an invariant (docs/design.md section 5), as the judge decided it, or
/// the engine's contract while it was driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimInvariant {
    /// An invariant the judge found broken on a recovered state.
    Judged(Invariant),
    /// The engine failed or misbehaved while being driven, with no fault injected.
    Engine,
}

impl SimInvariant {
    /// `I1` to `I9`, or `engine`.
    pub fn name(self) -> &'static str {
        match self {
            SimInvariant::Judged(invariant) => invariant.name(),
            SimInvariant::Engine => "engine",
        }
    }
}

impl fmt::Display for SimInvariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which state of the file system a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimState {
    /// The crash state that keeps nothing unsynced ([`SimStorage::crash_durable_only`]).
    DurableOnly,
    /// The crash state of this seed ([`SimStorage::crash`]).
    Seeded(u64),
    /// The running file system itself (engine failures, recovery after a clean reopen).
    Live,
}

impl fmt::Display for SimState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimState::DurableOnly => f.write_str("durable-only"),
            SimState::Seeded(seed) => write!(f, "seeded:{seed:#018x}"),
            SimState::Live => f.write_str("live"),
        }
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimViolation {
    /// The invariant.
    pub invariant: SimInvariant,
    /// Seed of the run.
    pub seed: u64,
    /// Index of the plan step during or after which the state was taken (the initial open
    /// counts as step 0 too).
    pub step: usize,
    /// Highest LSN acknowledged when the state was taken.
    pub acked_lsn: Lsn,
    /// File-system operations performed when the state was taken ([`SimStorage::ops`]).
    pub at_op: u64,
    /// The state checked.
    pub state: SimState,
    /// What the invariant demands.
    pub expected: String,
    /// What was found.
    pub found: String,
}

impl fmt::Display for SimViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at step {} (seed {:#018x}, state {} after op {}, acked up to LSN {}): \
             expected {}; found {}",
            self.invariant,
            self.step,
            self.seed,
            self.state,
            self.at_op,
            self.acked_lsn,
            self.expected,
            self.found
        )
    }
}

/// The outcome of [`check_run`].
#[derive(Debug, Clone)]
pub struct SimReport {
    /// Seed of the run.
    pub seed: u64,
    /// The mutant run (`None`: the real engine).
    pub mutant: Option<Mutant>,
    /// Crash states recovered and checked.
    pub states_checked: u64,
    /// Commits acknowledged.
    pub acks: u64,
    /// Highest LSN acknowledged at the end.
    pub last_acked_lsn: Lsn,
    /// Violations found, first ones first (at most 256 kept; see `violations_total`).
    pub violations: Vec<SimViolation>,
    /// Violations found in all.
    pub violations_total: u64,
    /// Whether every step ran (false: stopped at `max_violations` or an engine failure).
    pub completed: bool,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl SimReport {
    /// No violation.
    pub fn passed(&self) -> bool {
        self.violations_total == 0
    }

    /// Crash states checked per second of the run.
    pub fn states_per_second(&self) -> f64 {
        self.states_checked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The invariants broken, each once, in the order first seen.
    pub fn invariants_violated(&self) -> Vec<SimInvariant> {
        let mut seen = Vec::new();
        for violation in &self.violations {
            if !seen.contains(&violation.invariant) {
                seen.push(violation.invariant);
            }
        }
        seen
    }
}

/// The payload with tag `tag` in the `incarnation`-th life of the journal (incremented by
/// every power cut, after which LSNs past the recovered end are written again). Sequential
/// appends use the LSN as tag; concurrent ones, which learn their LSN only from the append,
/// a tag naming step, thread and sequence number. The first 12 bytes (when the payload is
/// that long) are the tag and the incarnation, the rest seeded bytes.
pub(crate) fn payload_for(
    seed: u64,
    incarnation: u32,
    tag: u64,
    min_bytes: usize,
    max_bytes: usize,
) -> Vec<u8> {
    let mut rng = SplitMix64::new(derive_seed(
        seed,
        &[PAYLOAD_STREAM, u64::from(incarnation), tag],
    ));
    let len = min_bytes + rng.below((max_bytes - min_bytes) as u64 + 1) as usize;
    let mut payload = vec![0u8; len];
    rng.fill(&mut payload);
    if len >= 12 {
        payload[..8].copy_from_slice(&tag.to_le_bytes());
        payload[8..12].copy_from_slice(&incarnation.to_le_bytes());
    }
    payload
}

/// Tag of the `sequence`-th payload of `thread` in concurrent step `step` (the top bit keeps
/// it apart from LSNs).
fn concurrent_tag(step: usize, thread: u32, sequence: u32) -> u64 {
    (1 << 63) | ((step as u64) << 40) | (u64::from(thread) << 24) | u64::from(sequence)
}

/// A payload as a report shows it: its length and, when it carries one, its identity.
fn describe_payload(payload: &[u8]) -> String {
    if payload.len() >= 12 {
        let mut lsn = [0u8; 8];
        lsn.copy_from_slice(&payload[..8]);
        let mut incarnation = [0u8; 4];
        incarnation.copy_from_slice(&payload[8..12]);
        format!(
            "{} bytes tagged {:#x} incarnation {}",
            payload.len(),
            u64::from_le_bytes(lsn),
            u32::from_le_bytes(incarnation)
        )
    } else {
        format!("{} bytes", payload.len())
    }
}

fn describe_recovery(recovery: &Recovery) -> String {
    let first = recovery.records.first().map_or(0, |r| r.lsn);
    let tail = match recovery.truncated_tail {
        Some(tail) => format!(
            "truncated tail in segment {} at offset {} ({} bytes)",
            tail.segment, tail.offset, tail.discarded_bytes
        ),
        None => "no truncated tail".to_string(),
    };
    let segments: Vec<String> = recovery
        .segments
        .iter()
        .map(|s| format!("{}/gen {}/{} records", s.index, s.generation, s.records))
        .collect();
    format!(
        "recovered {} records (LSN {}..={}), {}, segments [{}]",
        recovery.records.len(),
        first,
        recovery.last_lsn(),
        tail,
        segments.join(", ")
    )
}

/// What the checks need to know about the records.
#[derive(Debug, Default)]
struct Ledger {
    /// The payload last written for each LSN.
    written: BTreeMap<Lsn, Vec<u8>>,
    /// Every LSN up to this one is acknowledged.
    acked: Lsn,
    /// Records below this LSN were released (`Retire`); 0 when none were.
    released_below: Lsn,
    /// LSN the next append gets.
    next_lsn: Lsn,
    /// What the last reopen recovered (I9: it must stay durable).
    recovered: Option<RecordPromise>,
}

impl Provenance for Ledger {
    fn written(&self, lsn: u64, payload: &[u8]) -> Result<(), String> {
        match self.written.get(&lsn) {
            Some(written) if written.as_slice() == payload => Ok(()),
            Some(written) => Err(format!(
                "{} where {} was written",
                describe_payload(payload),
                describe_payload(written)
            )),
            None => Err(format!(
                "{}, and no record LSN {lsn} was ever written",
                describe_payload(payload)
            )),
        }
    }
}

impl Ledger {
    /// The promises a crash state is held to: what the last reopen recovered (I9) and the
    /// acknowledgements since (I1), from the first LSN not released.
    fn promises(&self) -> Vec<RecordPromise> {
        let first_required = self.released_below.max(1);
        let mut promises: Vec<RecordPromise> = self.recovered.into_iter().collect();
        let first_acked = self
            .recovered
            .map_or(1, |r| r.last_lsn + 1)
            .max(first_required);
        if self.acked >= first_acked {
            let payloads = (first_acked..=self.acked)
                .map_while(|lsn| self.written.get(&lsn).map(Vec::as_slice));
            promises.extend(RecordPromise::of_payloads(
                Invariant::I1,
                first_acked,
                payloads,
            ));
        }
        promises
    }

    /// The judge's findings on one recovery.
    fn verify(
        &self,
        result: Result<Recovery, JournalError>,
    ) -> Vec<(SimInvariant, String, String)> {
        let promises = self.promises();
        let rules = RecordRules {
            promises: &promises,
            retired_before: (self.released_below > 0).then_some(self.released_below),
            provenance: self,
        };
        let (findings, summary) = match &result {
            Ok(recovery) => {
                let records = recovery.judged_records();
                let findings = judge_recovery(&rules, Ok(&records));
                (findings, describe_recovery(recovery))
            }
            Err(err) => (judge_recovery(&rules, Err(&err.to_string())), String::new()),
        };
        findings
            .into_iter()
            .map(|finding| {
                let found = if summary.is_empty() {
                    finding.found
                } else {
                    format!("{}; {summary}", finding.found)
                };
                (
                    SimInvariant::Judged(finding.invariant),
                    finding.expected,
                    found,
                )
            })
            .collect()
    }
}

struct Run<'a> {
    plan: &'a SimPlan,
    options: JournalOptions,
    seed: u64,
    fs: SimStorage,
    ledger: Ledger,
    incarnation: u32,
    checks: u64,
    /// When rebuilding one state: which, and the state once met.
    target: Option<Target>,
    found: Option<SimStorage>,
    report: SimReport,
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
struct Target {
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
    let mut run = Run {
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
        report: SimReport {
            seed,
            mutant,
            states_checked: 0,
            acks: 0,
            last_acked_lsn: 0,
            violations: Vec::new(),
            violations_total: 0,
            completed: false,
            elapsed: Duration::ZERO,
        },
    };
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
    }
    if completed {
        if let Some(journal) = journal.take() {
            let closed = journal.close();
            run.check_op_snapshots(plan.steps.len());
            match closed {
                Ok(()) => run.check(plan.steps.len()),
                Err(err) => {
                    run.engine_failed(plan.steps.len(), "close", &err);
                    completed = false;
                }
            }
        }
    }
    run.report.completed = completed && !run.stopped();
    Ok(run.finish(started))
}

impl Run<'_> {
    fn dir() -> &'static Path {
        Path::new(SIM_JOURNAL_DIR)
    }

    /// Opens the journal and collects what its recovery returned (sim journals are small).
    fn open(&self) -> Result<(Journal, Recovery), JournalError> {
        let mut records = Vec::new();
        let (journal, report) = Journal::open_with_storage_visiting(
            Self::dir(),
            self.options.clone(),
            Arc::new(self.fs.clone()),
            &mut |r| records.push(r.to_record()),
        )?;
        Ok((journal, Recovery::new(report.recovery, records)))
    }

    fn finish(mut self, started: Instant) -> (SimReport, Option<SimStorage>) {
        self.report.elapsed = started.elapsed();
        self.report.last_acked_lsn = self.ledger.acked;
        (self.report, self.found)
    }

    fn stopped(&self) -> bool {
        self.found.is_some()
            || self.plan.max_violations > 0
                && self.report.violations_total >= self.plan.max_violations
    }

    /// While rebuilding a state: keeps `crashed` if it is the one wanted.
    fn offer(&mut self, step: usize, at_op: u64, state: SimState, crashed: &SimStorage) {
        if self.target == Some(Target { step, at_op, state }) && self.found.is_none() {
            self.found = Some(crashed.crash_durable_only());
        }
    }

    fn record(
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

    fn engine_failed(&mut self, step: usize, what: &str, err: &JournalError) {
        self.engine_misbehaved(
            step,
            format!("{what} succeeds (no fault is injected)"),
            format!("{err}"),
        );
    }

    fn engine_misbehaved(&mut self, step: usize, expected: String, found: String) {
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
    fn check(&mut self, step: usize) {
        let fs = self.fs.clone();
        self.check_fs(&fs, step);
    }

    /// Checks the crash states of every copy the file system kept since the last call (one
    /// per operation of the engine call that just returned). Called before the ledger learns
    /// the call's outcome: acknowledgements count only once the call returned.
    fn check_op_snapshots(&mut self, step: usize) {
        for snapshot in self.fs.take_op_snapshots() {
            if self.stopped() {
                return;
            }
            self.check_fs(&snapshot, step);
        }
    }

    /// Recovers the durable-only state and the seeded crash states of `fs`, checking each.
    fn check_fs(&mut self, fs: &SimStorage, step: usize) {
        let check = self.checks;
        self.checks += 1;
        let at_op = fs.ops();
        let mut states = vec![SimState::DurableOnly];
        states.extend((0..self.plan.crash_states_per_check).map(|index| {
            SimState::Seeded(derive_seed(self.seed, &[CHECK_STREAM, check, index as u64]))
        }));
        for state in states {
            let crashed = match state {
                SimState::Seeded(seed) => fs.crash(seed),
                SimState::DurableOnly | SimState::Live => fs.crash_durable_only(),
            };
            self.offer(step, at_op, state, &crashed);
            // The mutant's own recovery: M4, M7 and M8 change it, the others recover as the
            // real engine does.
            let mut records = Vec::new();
            let result = recovery::scan(&crashed, Self::dir(), self.options.mutant, &mut |r| {
                records.push(r.to_record())
            })
            .map(|scan| Recovery::new(scan.summary, records));
            self.verify(step, state, at_op, result);
            if self.stopped() {
                return;
            }
        }
    }

    fn verify(
        &mut self,
        step: usize,
        state: SimState,
        at_op: u64,
        result: Result<Recovery, JournalError>,
    ) {
        self.report.states_checked += 1;
        for (invariant, expected, found) in self.ledger.verify(result) {
            self.record(invariant, step, state, at_op, expected, found);
        }
    }

    /// Runs one step; false when the run cannot go on.
    fn step(&mut self, index: usize, step: SimStep, slot: &mut Option<Journal>) -> bool {
        let Some(journal) = slot.as_ref() else {
            return false;
        };
        match step {
            SimStep::Append { records, group } => {
                let mut left = records;
                while left > 0 {
                    let count = left.min(group);
                    left -= count;
                    for _ in 0..count {
                        let lsn = self.ledger.next_lsn;
                        let payload = payload_for(
                            self.seed,
                            self.incarnation,
                            lsn,
                            self.plan.min_payload_bytes,
                            self.plan.max_payload_bytes,
                        );
                        self.ledger.written.insert(lsn, payload.clone());
                        // An append may itself write (when staging is full).
                        let appended = journal.append(&payload);
                        self.check_op_snapshots(index);
                        match appended {
                            Ok(got) if got == lsn => self.ledger.next_lsn += 1,
                            Ok(got) => {
                                self.engine_misbehaved(
                                    index,
                                    format!("append to get LSN {lsn}"),
                                    format!("LSN {got}"),
                                );
                                return false;
                            }
                            Err(err) => {
                                self.engine_failed(index, "append", &err);
                                return false;
                            }
                        }
                    }
                    let target = self.ledger.next_lsn - 1;
                    let committed = journal.commit();
                    self.check_op_snapshots(index);
                    match committed {
                        Ok(durable) if durable >= target => {
                            self.ledger.acked = self.ledger.acked.max(target);
                            self.report.acks += 1;
                        }
                        Ok(durable) => {
                            self.engine_misbehaved(
                                index,
                                format!("commit to make LSN {target} durable"),
                                format!("it returned LSN {durable}"),
                            );
                            return false;
                        }
                        Err(err) => {
                            self.engine_failed(index, "commit", &err);
                            return false;
                        }
                    }
                    self.check(index);
                    if self.stopped() {
                        return false;
                    }
                }
                true
            }
            SimStep::AppendConcurrent {
                threads,
                records_per_thread,
            } => self.append_concurrent(index, journal, threads, records_per_thread),
            SimStep::Rotate => {
                let rotated = journal.rotate();
                self.check_op_snapshots(index);
                match rotated {
                    Ok(()) => {
                        self.check(index);
                        true
                    }
                    Err(err) => {
                        self.engine_failed(index, "rotate", &err);
                        false
                    }
                }
            }
            SimStep::Retire { keep_records } => {
                // The caller gives the records up when it calls: crash states taken during
                // the call no longer need them.
                let below = self.ledger.acked.saturating_sub(u64::from(keep_records)) + 1;
                self.ledger.released_below = self.ledger.released_below.max(below);
                let retired = journal.retire_before(below);
                self.check_op_snapshots(index);
                match retired {
                    Ok(_) => {
                        self.check(index);
                        true
                    }
                    Err(err) => {
                        self.engine_failed(index, "retire_before", &err);
                        false
                    }
                }
            }
            SimStep::Reopen => {
                let Some(journal) = slot.take() else {
                    return false;
                };
                let closed = journal.close();
                self.check_op_snapshots(index);
                if let Err(err) = closed {
                    self.engine_failed(index, "close", &err);
                    return false;
                }
                let opened = self.open();
                self.check_op_snapshots(index);
                match opened {
                    Ok((journal, recovery)) => {
                        let at_op = self.fs.ops();
                        self.verify(index, SimState::Live, at_op, Ok(recovery.clone()));
                        self.continue_after(&recovery);
                        *slot = Some(journal);
                        self.check(index);
                        true
                    }
                    Err(err) => {
                        self.engine_failed(index, "reopen after a clean close", &err);
                        false
                    }
                }
            }
            SimStep::CrashReopen => {
                let state_seed = derive_seed(self.seed, &[CRASH_REOPEN_STREAM, index as u64]);
                let crashed = self.fs.crash(state_seed);
                let at_op = crashed.ops();
                self.offer(index, at_op, SimState::Seeded(state_seed), &crashed);
                if self.found.is_some() {
                    return false;
                }
                // The power is cut: the old journal is dropped without closing, and whatever
                // it still does lands on the old file system, not on the crashed one.
                drop(slot.take());
                crashed.record_op_snapshots(self.plan.crash_between_ops);
                self.fs = crashed;
                let state = SimState::Seeded(state_seed);
                let opened = self.open();
                self.check_op_snapshots(index);
                match opened {
                    Ok((journal, recovery)) => {
                        self.verify(index, state, at_op, Ok(recovery.clone()));
                        self.continue_after(&recovery);
                        // LSNs past the recovered end are written again, with new payloads.
                        self.incarnation += 1;
                        *slot = Some(journal);
                        self.check(index);
                        true
                    }
                    Err(err) => {
                        self.verify(index, state, at_op, Err(err));
                        false
                    }
                }
            }
        }
    }

    /// Runs [`SimStep::AppendConcurrent`]; false when the run cannot go on.
    fn append_concurrent(
        &mut self,
        index: usize,
        journal: &Journal,
        threads: u32,
        records_per_thread: u32,
    ) -> bool {
        type Appended = Vec<(Lsn, Vec<u8>, u64)>;
        let (seed, incarnation) = (self.seed, self.incarnation);
        let (min_bytes, max_bytes) = (self.plan.min_payload_bytes, self.plan.max_payload_bytes);
        let fs = &self.fs;
        // Writes of different groups complete in seeded adversarial orders meanwhile.
        fs.hold_back_writes(Some(derive_seed(seed, &[HOLD_BACK_STREAM, index as u64])));
        // Each thread: (LSN, payload, operations done when its acknowledgement had returned).
        let outcomes: Vec<Result<Appended, JournalError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|thread| {
                    scope.spawn(move || {
                        let mut appended = Vec::new();
                        for sequence in 0..records_per_thread {
                            let tag = concurrent_tag(index, thread, sequence);
                            let payload = payload_for(seed, incarnation, tag, min_bytes, max_bytes);
                            let lsn = journal.append(&payload)?;
                            journal.wait_durable(lsn)?;
                            appended.push((lsn, payload, fs.ops()));
                        }
                        Ok(appended)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(JournalError::io(
                            "append",
                            SIM_JOURNAL_DIR,
                            0,
                            std::io::Error::other("an appending thread panicked"),
                        ))
                    })
                })
                .collect()
        });
        fs.hold_back_writes(None);
        let mut appended = Vec::new();
        let mut failure = None;
        for outcome in outcomes {
            match outcome {
                Ok(records) => appended.extend(records),
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        // Whatever got an LSN was written (or is in flight): I3 must accept it.
        for (lsn, payload, _) in &appended {
            self.ledger.written.insert(*lsn, payload.clone());
        }
        // Each state taken meanwhile is held to the acknowledgements returned before it.
        let mut timeline: Vec<(u64, Lsn)> = appended.iter().map(|(l, _, o)| (*o, *l)).collect();
        timeline.sort_unstable();
        let base = self.ledger.acked;
        for snapshot in self.fs.take_op_snapshots() {
            if self.stopped() {
                break;
            }
            let taken_at = snapshot.ops();
            self.ledger.acked = timeline
                .iter()
                .take_while(|(ops, _)| *ops < taken_at)
                .map(|(_, lsn)| *lsn)
                .fold(base, Lsn::max);
            self.check_fs(&snapshot, index);
        }
        self.ledger.acked = base;
        if let Some(err) = failure {
            self.engine_failed(index, "concurrent append", &err);
            return false;
        }
        let expected: Vec<Lsn> = (self.ledger.next_lsn..).take(appended.len()).collect();
        let mut got: Vec<Lsn> = appended.iter().map(|(lsn, _, _)| *lsn).collect();
        got.sort_unstable();
        if got != expected {
            self.engine_misbehaved(
                index,
                format!(
                    "{} appends to get LSNs {}.. exactly once each",
                    expected.len(),
                    self.ledger.next_lsn
                ),
                format!("LSNs {got:?}"),
            );
            return false;
        }
        self.ledger.next_lsn += appended.len() as u64;
        self.ledger.acked = self.ledger.acked.max(self.ledger.next_lsn - 1);
        self.report.acks += appended.len() as u64;
        self.check(index);
        !self.stopped()
    }

    /// After a reopen the log is what recovery found: records past its end are gone, and the
    /// records it holds are the durable log from now on.
    fn continue_after(&mut self, recovery: &Recovery) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_fixed_by_seed_incarnation_and_lsn() {
        let a = payload_for(1, 0, 5, 1, 700);
        assert_eq!(a, payload_for(1, 0, 5, 1, 700));
        assert_ne!(a, payload_for(1, 1, 5, 1, 700));
        assert_ne!(a, payload_for(2, 0, 5, 1, 700));
        for lsn in 1..200 {
            let p = payload_for(3, 2, lsn, 12, 40);
            assert!((12..=40).contains(&p.len()));
            assert_eq!(
                describe_payload(&p),
                format!("{} bytes tagged {lsn:#x} incarnation 2", p.len())
            );
        }
        assert_eq!(payload_for(3, 0, 1, 0, 0), Vec::<u8>::new());
    }

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
