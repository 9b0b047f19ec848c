//! The check pipeline: record a workload (`run`) or take an existing recording (`check`), check
//! every crash state of its log (and of the log after a reboot on the crash image, I8), add the
//! guest's own findings (I7), shrink the first violation and write the reports.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use powercut_oracles::blocklog::BlockLog;
use powercut_oracles::check::{self, CheckConfig, Progress};
use powercut_oracles::invariants::Violation;
use powercut_oracles::report::PhaseReport;
use powercut_oracles::report::{self, Report};
use powercut_oracles::shrink::{self, ShrunkState};
use powercut_workloads::ack::Ack;
use powercut_workloads::executor::RunFinding;
use powercut_workloads::spec::Workload;

use super::args::CheckArgs;
use super::output::{write_rendered, write_report_files, write_reports, CheckMeters};
use crate::record::{self, RecordOptions};
use crate::recovery::{fs_type, guest_program_check, recovery_for, recovery_mutant};
use crate::two_crash;
use crate::vm;

/// Checks a recording directory (as `record` leaves it) and writes the reports.
pub fn check_recording(dir: &Path, workload: &Workload, args: &CheckArgs) -> Result<Report> {
    let args = &args.with_deadline();
    let log = dir.join("log.bin");
    let base = dir.join("base.img");
    for needed in [&log, &base] {
        if !needed.exists() {
            bail!(
                "{} is missing: is {} a recording made by `powercut record`?",
                needed.display(),
                dir.display()
            );
        }
    }
    let keep = dir.join("violations");
    let mut config = args.config(workload.seed, keep.clone());
    let block_log = BlockLog::open(&log).with_context(|| format!("reading {}", log.display()))?;
    config.max_entries = killed_log_whole_entries(dir, &block_log)?;
    config.acks = continued_acks(dir, &block_log)?;
    config.program = guest_program_check(workload);
    let continued = config.acks.is_some();
    drop(block_log);
    let mut report = check_states(&log, &base, workload, &config, "")?;
    report
        .phases
        .splice(0..0, args.phases_before.iter().cloned());
    if continued {
        report = two_crash::report_as_i8(report);
    }
    report.workload = workload.name.clone();
    write_reports(&report, args, &invariants_of(workload, continued))?;
    if !report.passed() {
        eprintln!(
            "failing images, the log and the ledger are kept in {}",
            keep.display()
        );
    }
    Ok(report)
}

/// The invariants a report of a recording of `workload` answers for (its JUnit testcases): the
/// engine's or a program checker's, I7 with fault steps, I8 for the run after a power cut
/// (`continued`).
fn invariants_of(workload: &Workload, continued: bool) -> Vec<&'static str> {
    let mut invariants = two_crash::invariants(workload.is_program(), continued);
    if workload.has_faults() {
        invariants.push(report::I7);
    }
    invariants
}

/// Whether the recording in `dir` is of the run after a power cut (it holds the first run's
/// acks).
fn is_continuation(dir: &Path) -> bool {
    dir.join(record::PRIOR_ACKS_FILE).exists()
}

/// The acks expected in every state of a continuation after a power cut (`record
/// --continue-from`, whose findings are I8): the first run's, then the log's own. None for a
/// recording that is not one.
pub(crate) fn continued_acks(dir: &Path, block_log: &BlockLog) -> Result<Option<Vec<(u64, Ack)>>> {
    if !is_continuation(dir) {
        return Ok(None);
    }
    let prior_path = dir.join(record::PRIOR_ACKS_FILE);
    let text = std::fs::read_to_string(&prior_path)
        .with_context(|| format!("reading {}", prior_path.display()))?;
    let prior: Vec<Ack> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", prior_path.display()))?;
    let acks = two_crash::expected_acks(&prior, block_log)
        .with_context(|| format!("acks of {}", block_log.path().display()))?;
    eprintln!(
        "{} holds the run after a power cut: {} acks of the first run expected in every \
         state, findings reported as I8",
        dir.display(),
        prior.len()
    );
    Ok(Some(acks))
}

/// Every crash state of `log` with progress on stderr, the first violation shrunk (within the
/// deadline of `config`); ends with where the time of each state went.
pub(crate) fn check_states(
    log: &Path,
    base: &Path,
    workload: &Workload,
    config: &CheckConfig,
    meter_label: &'static str,
) -> Result<Report> {
    eprintln!(
        "{meter_label}checking crash states of {} (seed {}, enumeration seed {})",
        log.display(),
        workload.seed,
        config.states.seed
    );
    let recovery = recovery_for(workload)?;
    if let Some(m) = recovery_mutant(workload) {
        eprintln!("recovery of every state: mutant {m} ({})", m.describe());
    }
    let mut meters = CheckMeters::new(meter_label);
    let mut on_progress = |p: Progress| meters.on(p);
    let input = check::LogInput {
        log_path: log,
        base_image: base,
        fs: fs_type(workload.filesystem),
        seed: workload.seed,
        recover: &recovery,
    };
    let mut report = check::check_log(&input, config, &mut on_progress)
        .with_context(|| format!("checking {}", log.display()))?;
    meters.finish();
    if let Some(split) = &report.time_split {
        eprintln!("{}", split.describe());
    }
    let first = report.all_violations().next().cloned();
    if let Some(first) = first {
        let target = shrink::Target {
            state_id: &first.state_id,
            invariant: &first.invariant,
        };
        let (shrunk, phase) = shrink_violation(&input, &target, config, meter_label);
        report.minimal_repro = shrunk;
        if let Some(phase) = phase {
            report.budget_exhausted |= phase.stopped_by_budget;
            report.phases.push(phase);
        }
    }
    Ok(report)
}

/// `powercut run`: record the workload in a VM, then check every crash state of its log. With a
/// power cut, then boot again on the crash image, continue the workload and check every crash
/// state of that second log as well (invariant I8, see [`crate::two_crash`]); the reports then
/// cover both logs. `forged_prior_acks` is a test aid (see `--forge-prior-ack`).
pub fn run(
    workload: &Workload,
    out: &Path,
    record_options: &RecordOptions,
    args: &CheckArgs,
    forged_prior_acks: &[Ack],
    progress: &vm::progress::Progress,
) -> Result<Report> {
    let started = Instant::now();
    // One deadline for the whole run: the recording, the checks, the shrink, the run after a
    // power cut (from the end of the recording when the caller asks so).
    let args = &if args.budget_after_recording {
        args.clone()
    } else {
        args.with_deadline()
    };
    eprintln!(
        "powercut run: workload {} seed {} -> {}",
        workload.name,
        workload.seed,
        out.display()
    );
    // A run after a power cut of an earlier recording here must not pass for this run's.
    let _ = std::fs::remove_dir_all(out.join(two_crash::AFTER_CRASH_DIR));
    let outcome = record::record(workload, out, record_options, progress)?;
    eprintln!(
        "recorded {} acks, {} bytes of block log in {:.1}s",
        outcome.summary.acks,
        outcome.summary.log_bytes,
        started.elapsed().as_secs_f64()
    );
    let args = &CheckArgs {
        phases_before: vec![recorded("record", started.elapsed().as_secs_f64())],
        ..args.with_deadline()
    };
    if outcome.summary.end != record::RunEnd::Killed {
        if let Some(n) = workload.power_cut_after_ack() {
            let acks = if workload.is_program() {
                "ack or nack lines"
            } else {
                "durable acks"
            };
            eprintln!(
                "note: the power cut after the {n}th of the {acks} never came (the run made {}): \
                 checked as a run without a power cut, no run after a crash (I8)",
                outcome.summary.durable_acks
            );
        }
        if !forged_prior_acks.is_empty() {
            bail!("--forge-prior-ack needs a workload with a power cut");
        }
        // The guest's own findings (I7 under faults; a reopen that disagreed with the acks in
        // any workload) join the report.
        if workload.has_faults() || !outcome.summary.guest_findings.is_empty() {
            return run_with_faults(out, workload, args, &outcome, started);
        }
        let report = check_recording(out, workload, args)?;
        eprintln!("whole run: {:.1}s", started.elapsed().as_secs_f64());
        return Ok(report);
    }
    let after = AfterCrash {
        outcome: &outcome,
        record_options,
        forged_prior_acks,
        progress,
    };
    let combined = check_both_logs(workload, out, args, &after)?;
    eprintln!(
        "both logs: {} states checked, {} violations; whole run: {:.1}s",
        combined.states_checked,
        combined.all_violations().count(),
        started.elapsed().as_secs_f64()
    );
    Ok(combined)
}

/// What the run after a power cut starts from: the first recording and how to record again.
struct AfterCrash<'a> {
    outcome: &'a record::RecordOutcome,
    record_options: &'a RecordOptions,
    forged_prior_acks: &'a [Ack],
    progress: &'a vm::progress::Progress,
}

/// A run killed at a power cut: its log, then the log of the run after a reboot on the crash
/// image; the reports are written once both are checked, as one.
fn check_both_logs(
    workload: &Workload,
    out: &Path,
    args: &CheckArgs,
    after: &AfterCrash<'_>,
) -> Result<Report> {
    // The first log's check gets half of what is left of the deadline, the run after the power
    // cut (its recording and check) the rest: one pass must not starve the other.
    let now = Instant::now();
    let first_args = CheckArgs {
        json: None,
        junit: None,
        deadline: args
            .deadline
            .map(|d| now + d.saturating_duration_since(now) / 2),
        ..args.clone()
    };
    let first = check_recording(out, workload, &first_args)?;
    if args.out_of_time() {
        return without_second_run(first, args, workload.is_program());
    }
    let second_keep = out.join(two_crash::AFTER_CRASH_DIR).join("violations");
    let second = two_crash::check_after_crash(
        workload,
        out,
        after.outcome,
        after.record_options,
        args.config(workload.seed, second_keep.clone()),
        after.forged_prior_acks,
        after.progress,
    )?;
    let combined = two_crash::combine(&first, &second);
    println!("{}", two_crash::summary_line(&second));
    if !second.report.passed() || !second.guest_prior_violations.is_empty() {
        println!("{}", second.report.summary());
        eprintln!(
            "failing images of the second log are kept in {}",
            second_keep.display()
        );
    }
    let json = two_crash::report_json(&combined, &second)?;
    write_rendered(
        &json,
        &combined,
        args,
        &two_crash::junit_invariants(workload.is_program()),
    )?;
    Ok(combined)
}

/// A recording that ran to its end (a recording is never cut short by the deadline: the check
/// after it then stops at once, and says so).
pub(crate) fn recorded(name: &str, seconds: f64) -> PhaseReport {
    PhaseReport {
        name: name.into(),
        done: 1,
        total: 1,
        unit: "recordings".into(),
        stopped_by_budget: false,
        seconds,
    }
}

/// The end of a run killed at a power cut whose deadline passed before the run after it: the
/// first log's report, saying that the second recording and its check did not happen.
fn without_second_run(mut first: Report, args: &CheckArgs, program: bool) -> Result<Report> {
    eprintln!("I8: the budget ran out before the run after the power cut: not recorded");
    first.budget_exhausted = true;
    first.phases.push(PhaseReport {
        name: "after_crash_record".into(),
        done: 0,
        total: 1,
        unit: "recordings".into(),
        stopped_by_budget: true,
        seconds: 0.0,
    });
    // The first log's summary is already printed: only what the budget left out is new.
    println!("I8 (second crash): not recorded, the budget ran out");
    write_report_files(&first, args, &two_crash::junit_invariants(program))?;
    Ok(first)
}

/// Shrinks a violation's crash state to the simplest state of its cut that still shows it,
/// within the deadline of `config` (None, with a note, when that cannot be done: the state is
/// then its own reproducer), and what the shrink covered.
fn shrink_violation(
    input: &check::LogInput<'_>,
    target: &shrink::Target<'_>,
    config: &CheckConfig,
    meter_label: &'static str,
) -> (Option<ShrunkState>, Option<PhaseReport>) {
    let started = Instant::now();
    let mut meters = CheckMeters::new(meter_label);
    let shrunk = shrink::shrink_within(input, target, config, &mut |p| meters.on(p));
    meters.finish();
    match shrunk {
        Ok((shrunk, phase)) => {
            eprintln!(
                "shrunk {} on {} in {:.1}s: {}{}",
                target.invariant,
                target.state_id,
                started.elapsed().as_secs_f64(),
                shrunk.describe(),
                if phase.stopped_by_budget {
                    format!(" (the budget ran out after {} tries)", phase.done)
                } else {
                    String::new()
                }
            );
            (Some(shrunk), Some(phase))
        }
        Err(e) => {
            eprintln!("could not shrink {}: {e}", target.state_id);
            (None, None)
        }
    }
}

/// How many entries of a killed recording's log are known whole (None: the recording ended
/// cleanly, all of them). Those are the entries up to the mark of the last ack the host saw
/// before it cut the power: the guest waits for dm-log-writes to finish writing everything up
/// to that mark before it reports the ack, while entries logged after it were being written
/// when QEMU was killed, so a header can be there without its data.
fn killed_log_whole_entries(dir: &Path, log: &BlockLog) -> Result<Option<u64>> {
    let summary_path = dir.join("record.json");
    let Ok(text) = std::fs::read_to_string(&summary_path) else {
        return Ok(None);
    };
    let summary: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", summary_path.display()))?;
    if summary["end"] != "killed" {
        return Ok(None);
    }
    let acks = record::read_ledger_acks(&dir.join("ledger.jsonl"))?;
    let last = acks
        .last()
        .context("a killed recording without any ack in its ledger")?
        .to_label();
    let mark = log
        .entries()
        .iter()
        .rev()
        .find(|e| e.mark.as_deref() == Some(last.as_str()))
        .with_context(|| {
            format!(
                "the mark of the last ack ({last}) is not in {}",
                log.path().display()
            )
        })?;
    let whole = mark.index + 1;
    let after = log.entries().len() as u64 - whole;
    eprintln!(
        "the power was cut: checking the {whole} log entries up to the mark of the last ack \
         ({last}); the {after} entries after it may be torn"
    );
    Ok(Some(whole))
}

/// The end of `powercut run` for a workload with fault steps: the crash states of the log as
/// usual, plus the guest's I7 findings (a failed write acknowledged, a poisoned journal that
/// accepted a call, a reopen that lost acknowledged records) as violations of the report.
fn run_with_faults(
    out: &Path,
    workload: &Workload,
    args: &CheckArgs,
    outcome: &record::RecordOutcome,
    started: Instant,
) -> Result<Report> {
    let report = check_with_guest_findings(out, workload, args, &outcome.summary.guest_findings)?;
    eprintln!("whole run: {:.1}s", started.elapsed().as_secs_f64());
    Ok(report)
}

/// `powercut check DIR` of a recording with fault steps, or whose guest found something during
/// the run: its crash states, plus the guest's findings that `record` kept in `record.json`.
pub fn check_fault_recording(dir: &Path, workload: &Workload, args: &CheckArgs) -> Result<Report> {
    let findings = guest_findings(dir)?;
    check_with_guest_findings(dir, workload, args, &findings)
}

/// The guest's findings during the recorded run, as `record` kept them in `DIR/record.json`.
pub fn guest_findings(dir: &Path) -> Result<Vec<RunFinding>> {
    let path = dir.join("record.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (written by `powercut record`)", path.display()))?;
    let summary: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let findings: Vec<RunFinding> = serde_json::from_value(summary["prior_violations"].clone())
        .with_context(|| {
            format!(
                "{}: `prior_violations` is not a list of findings",
                path.display()
            )
        })?;
    Ok(findings)
}

/// The crash states of the recording in `dir`, plus the guest's findings during the run (I7)
/// as violations with the state id [`GUEST_RUN_STATE_ID`].
fn check_with_guest_findings(
    dir: &Path,
    workload: &Workload,
    args: &CheckArgs,
    guest_findings: &[RunFinding],
) -> Result<Report> {
    let quiet = CheckArgs {
        json: None,
        junit: None,
        ..args.clone()
    };
    let mut report = check_recording(dir, workload, &quiet)?;
    let continued = is_continuation(dir);
    let findings: Vec<Violation> = guest_findings
        .iter()
        .map(|v| {
            if continued {
                // Found on the reboot after the power cut (or by the program run again there).
                two_crash::run_finding_as_i8(v, workload.seed)
            } else {
                Violation {
                    invariant: v.invariant.clone(),
                    state_id: GUEST_RUN_STATE_ID.into(),
                    seed: workload.seed,
                    step: v.step.clone(),
                    expected: v.expected.clone(),
                    found: v.found.clone(),
                }
            }
        })
        .collect();
    eprintln!("guest findings during the run: {}", findings.len());
    if !findings.is_empty() {
        report.violations.extend(findings);
        println!("{}", report.summary());
    }
    write_report_files(&report, args, &invariants_of(workload, continued))?;
    Ok(report)
}

/// State id of a finding of the guest during the recorded run itself (not a crash state).
pub const GUEST_RUN_STATE_ID: &str = "guest-run";

/// Loads `workload.json` that `record` leaves beside the log.
pub fn load_recorded_workload(dir: &Path) -> Result<Workload> {
    let path = dir.join("workload.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (written by `powercut record`)", path.display()))?;
    Workload::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
