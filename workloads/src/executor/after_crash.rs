//! The run after a power cut (invariant I8): the first run's acknowledged records (I1, I2, I3)
//! and files (I6) checked on the recovered state, then the after-crash steps.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use powercut_judge::Finding;
use powercut_writer::{JournalError, Recovery};

use super::error::{ExecError, Phase};
use super::ledger::{RecordIdentity, Shared};
use super::run::{describe_open, open_collecting, Run};
use super::{AckSink, ExecutionSummary, RunFinding};
use crate::ack::Ack;
use crate::promises;
use crate::spec::{Workload, AFTER_CRASH_WRITER_BASE};

/// RNG stream of the record sizes after a crash (stream 0 is the first run's appender).
const AFTER_CRASH_RNG_STREAM: u64 = 0x00AF_7E2C;

/// What [`continue_after_crash`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuationSummary {
    /// Records the engine's recovery returned on the crash image.
    pub recovered_records: u64,
    /// The recovery's torn tail, as text.
    pub truncated_tail: Option<String>,
    /// Acks of the first run that the recovered state breaks (empty: all held).
    pub prior_violations: Vec<RunFinding>,
    /// The after-crash steps; `None` when the journal could not be opened at all.
    pub execution: Option<ExecutionSummary>,
}

/// The run after a power cut (invariant I8): opens the journal that `root` holds (the engine's
/// recovery), checks that every record and file in `prior_acks` (the first run's acks) is
/// there byte for byte, then runs [`Workload::after_crash_steps`] with payload writer ids from
/// [`AFTER_CRASH_WRITER_BASE`], LSNs continuing after the recovered ones, every ack going to
/// `sink`. Broken prior acks are returned, not errors, so the caller can report them and still
/// finish cleanly; if the journal does not open, the steps are skipped.
///
/// A program's workload runs its `after_crash:` steps on the data directory the first run
/// left: a program run again on what the crash left, judged on the host.
pub fn continue_after_crash(
    workload: &Workload,
    root: &Path,
    prior_acks: &[Ack],
    sink: &dyn AckSink,
) -> Result<ContinuationSummary, ExecError> {
    workload.validate()?;
    let started = Instant::now();
    let shared = Shared::new(workload, sink);
    if workload.is_program() {
        return continue_program(&shared, root, sink, started);
    }
    let mut run = Run::new(
        &shared,
        root,
        workload.after_crash_steps(),
        AFTER_CRASH_WRITER_BASE,
        AFTER_CRASH_RNG_STREAM,
    );
    run.steps_list = "after_crash";
    run.create_dirs(false)?;
    let (journal, report, recovery) = match open_collecting(&run.journal_dir, workload) {
        Ok(opened) => opened,
        Err(e) => return Ok(journal_did_not_open(sink, &e)),
    };
    run.check_record_limit(&Phase::Setup, journal.max_payload_bytes())?;
    run.summary.open_reports.push(describe_open(&report));
    run.journal = Some(journal);
    let mut violations = check_prior_records(workload.seed, prior_acks, &recovery);
    violations.extend(check_prior_files(&run.files_dir, prior_acks));
    for violation in &violations {
        sink.prior_violation(violation);
    }
    run.resume_from(&recovery, prior_files_present(prior_acks));
    let records = recovery
        .records
        .iter()
        .map(|r| (r.lsn, r.payload.as_slice()));
    run.opened_with = Some(Ack::recovered(records));
    let summary = run.run_steps(&shared, sink, started)?;
    Ok(ContinuationSummary {
        recovered_records: recovery.records.len() as u64,
        truncated_tail: recovery.truncated_tail.map(|t| format!("{t:?}")),
        prior_violations: violations,
        execution: Some(summary),
    })
}

/// Name of the finding of a program that fails when run again after the power cut.
pub const PROGRAM_RESTART: &str = "RESTART";

/// A program's run after a power cut: the `after_crash:` steps (the program run again on what
/// the crash left). The first run's acks are judged on the host, in every crash state of this
/// run's log, by the workload's checker; a program that fails here (a non-zero status: it does
/// not come back from the crash) is a finding, and the steps after it are skipped.
fn continue_program(
    shared: &Shared<'_>,
    root: &Path,
    sink: &dyn AckSink,
    started: Instant,
) -> Result<ContinuationSummary, ExecError> {
    let mut run = Run::new(
        shared,
        root,
        shared.workload.after_crash_steps(),
        AFTER_CRASH_WRITER_BASE,
        AFTER_CRASH_RNG_STREAM,
    );
    run.steps_list = "after_crash";
    run.setup_program()?;
    let (execution, prior_violations) = match run.run_steps(shared, sink, started) {
        Ok(summary) => (Some(summary), Vec::new()),
        Err(ExecError::ProgramFailed { phase, message }) => {
            let finding = RunFinding {
                invariant: PROGRAM_RESTART.into(),
                step: None,
                expected: format!("the program runs again on the crash image ({phase} succeeds)"),
                found: message,
            };
            sink.prior_violation(&finding);
            (None, vec![finding])
        }
        Err(e) => return Err(e),
    };
    Ok(ContinuationSummary {
        recovered_records: 0,
        truncated_tail: None,
        prior_violations,
        execution,
    })
}

/// The journal of the crash image does not open: an I4 violation, and no steps run.
fn journal_did_not_open(sink: &dyn AckSink, error: &JournalError) -> ContinuationSummary {
    let violation = RunFinding {
        invariant: "I4".into(),
        step: None,
        expected: "the journal of the crash image opens (recovery succeeds)".into(),
        found: format!("open failed: {error}"),
    };
    sink.prior_violation(&violation);
    ContinuationSummary {
        recovered_records: 0,
        truncated_tail: None,
        prior_violations: vec![violation],
        execution: None,
    }
}

impl Run<'_, '_> {
    /// Continues from the recovered journal and the first run's files: the recovered records
    /// are the ledger a later reopen is checked against, LSNs continue after them, and the
    /// files acked present are the ones a rename may move.
    fn resume_from(&mut self, recovery: &Recovery, files: BTreeMap<String, u32>) {
        let seed = self.shared.workload.seed;
        for record in &recovery.records {
            self.shared
                .record(record.lsn, RecordIdentity::recovered(seed, record));
        }
        self.next_lsn = recovery.records.last().map_or(1, |r| r.lsn + 1);
        self.file_crcs.extend(files);
    }
}

/// I1, I2, I3 and I9 on a recovery after a power cut, against the acks of the run before it,
/// as the judge decides them.
pub fn check_prior_records(
    seed: u64,
    prior_acks: &[Ack],
    recovery: &powercut_writer::Recovery,
) -> Vec<RunFinding> {
    let records = recovery.judged_records();
    let findings = promises::judge_records(seed, prior_acks, None, Ok(&records));
    findings.into_iter().map(run_finding).collect()
}

/// A finding about the run before the power cut.
fn run_finding((finding, about): (Finding, Option<&Ack>)) -> RunFinding {
    RunFinding {
        invariant: finding.invariant.name().into(),
        step: about.map(Ack::to_label),
        expected: finding.expected,
        found: finding.found,
    }
}

/// I6 on the files of the run before the power cut.
fn check_prior_files(files_dir: &Path, prior_acks: &[Ack]) -> Vec<RunFinding> {
    let mut look = |path: &str| promises::file_seen(&files_dir.join(path));
    promises::judge_acked_files(prior_acks, None, &mut look)
        .into_iter()
        .map(run_finding)
        .collect()
}

/// Path -> crc32c of each file the acks leave present (the files a later rename may move).
fn prior_files_present(prior_acks: &[Ack]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for ack in prior_acks {
        match ack {
            Ack::FileCreate { path, crc32c } => {
                out.insert(path.clone(), *crc32c);
            }
            Ack::FileRename { from, to, crc32c } => {
                out.remove(from);
                out.insert(to.clone(), *crc32c);
            }
            Ack::FileRemove { path } => {
                out.remove(path);
            }
            _ => {}
        }
    }
    out
}
