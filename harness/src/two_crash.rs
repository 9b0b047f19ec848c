//! Invariant I8, two crashes in a row: after a run killed at a power cut, boot again on the crash
//! image, let the guest recover the journal, check the first run's acks and append more, then
//! check every crash state of that second log.
//!
//! The second log's base image is the first run's `final.img` (the first log replayed onto its
//! base up to the cut's mark: every write before the cut's ack, none after it),
//! so every crash state of the second log must still hold every ack of the first run: those go
//! into the ledger at entry index 0 ("expected in every state"), followed by the second log's
//! own marks. Whatever fails there, or in the guest's own check of the first run's acks on
//! reboot, is reported as I8 with the underlying invariant named in the expected text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use powercut_oracles::blocklog::BlockLog;
use powercut_oracles::check::{self, CheckConfig};
use powercut_oracles::invariants::{self, Violation};
use powercut_oracles::report::{CoverageReport, PhaseReport, Report, TimeSplit};
use powercut_workloads::ack::Ack;
use powercut_workloads::executor::RunFinding;
use powercut_workloads::spec::Workload;

use crate::record::{self, RecordOptions, RecordOutcome};
use crate::vm;

/// Name of the invariant in reports.
pub const I8: &str = "I8";
/// Directory of the second recording inside the first one's.
pub const AFTER_CRASH_DIR: &str = "after-crash";
/// State id of the findings of the guest on reboot (not a crash state of a log).
pub const REBOOT_STATE_ID: &str = "reboot-on-crash-image";

/// The second-crash part of a `run` report (the `second_crash` key of its JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecondCrash {
    /// The second recording (log, base image, ledger).
    pub recording: PathBuf,
    /// The durable ack of the first run after which the power was cut.
    pub killed_after_ack: Option<u64>,
    /// Acks of the first run handed to the second (forged ones included).
    pub prior_acks: u64,
    /// Acks added with the `--forge-prior-ack` test aid.
    pub forged_prior_acks: u64,
    /// What the guest's recovery found on the crash image (records, torn tail).
    pub guest_recovery: Option<serde_json::Value>,
    /// Acks of the first run that the guest found broken on reboot.
    pub guest_prior_violations: Vec<RunFinding>,
    /// Acks the second run emitted.
    pub acks: u64,
    /// Host wall time of the second VM run.
    pub vm_s: f64,
    /// The check of the second log; its violations are already I8.
    #[serde(flatten)]
    pub report: Report,
}

/// The expected acks of the second log: `prior` at index 0, then the log's own marks.
pub fn expected_acks(
    prior: &[Ack],
    log: &BlockLog,
) -> Result<Vec<(u64, Ack)>, powercut_workloads::ack::AckLabelError> {
    let mut acks: Vec<(u64, Ack)> = prior.iter().cloned().map(|a| (0, a)).collect();
    acks.extend(invariants::acks_of_log(log)?);
    Ok(acks)
}

/// A violation of the second log as I8, keeping the underlying invariant in the text.
pub fn as_i8(v: Violation) -> Violation {
    if v.invariant == I8 {
        return v;
    }
    Violation {
        expected: format!("{} after a second crash: {}", v.invariant, v.expected),
        invariant: I8.into(),
        ..v
    }
}

/// What a shrink compares runs by: the invariant, and for I8 the one behind it (`I8/KV`,
/// `I8/RESTART`): a program that does not come back and one that loses a key are different bugs.
pub fn finding_name(v: &Violation) -> String {
    if v.invariant != I8 {
        return v.invariant.clone();
    }
    match v.expected.split_once(' ') {
        Some((inner, _)) if !inner.is_empty() && inner != I8 => format!("{I8}/{inner}"),
        _ => I8.into(),
    }
}

/// A finding of the guest on reboot as an I8 violation.
pub fn run_finding_as_i8(v: &RunFinding, seed: u64) -> Violation {
    Violation {
        invariant: I8.into(),
        state_id: REBOOT_STATE_ID.into(),
        seed,
        step: v.step.clone(),
        expected: format!(
            "{} on reboot after the power cut: {}",
            v.invariant, v.expected
        ),
        found: v.found.clone(),
    }
}

/// Turns a check report of the second log into its I8 form: violations renamed, uncovered acks
/// (an ack not preceded by a flush) reported as a violation.
pub fn report_as_i8(mut report: Report) -> Report {
    report.violations = report.violations.into_iter().map(as_i8).collect();
    if let Some(coverage) = report.coverage.take() {
        let mut coverage = CoverageReport {
            violations: coverage.violations.into_iter().map(as_i8).collect(),
            ..coverage
        };
        if coverage.acks_uncovered > 0 {
            report.violations.push(Violation {
                invariant: I8.into(),
                state_id: format!("{}-coverage", report.log_hash),
                seed: report.seed,
                step: coverage.uncovered.first().cloned(),
                expected: "coverage after a second crash: every ack follows the flush that made \
                           it durable"
                    .into(),
                found: format!(
                    "{} acks uncovered: {}",
                    coverage.acks_uncovered,
                    coverage.uncovered.join(", ")
                ),
            });
        }
        coverage.acks_uncovered = 0;
        report.coverage = Some(coverage);
    }
    report
}

/// Adds the second log's figures and violations to the first log's report.
pub fn combine(first: &Report, second: &SecondCrash) -> Report {
    let mut out = first.clone();
    let r = &second.report;
    out.states_total += r.states_total;
    out.states_checked += r.states_checked;
    out.duplicates_skipped += r.duplicates_skipped;
    out.states_from_coverage += r.states_from_coverage;
    for (k, v) in &r.states_by_kind {
        *out.states_by_kind.entry(k.clone()).or_insert(0) += v;
    }
    out.elapsed_seconds += r.elapsed_seconds;
    out.states_per_second = if out.elapsed_seconds > 0.0 {
        out.states_checked as f64 / out.elapsed_seconds
    } else {
        0.0
    };
    out.mid_log_probes += r.mid_log_probes;
    out.budget_exhausted |= r.budget_exhausted;
    out.phases.push(crate::check_cmds::pipeline::recorded(
        "after_crash_record",
        second.vm_s,
    ));
    out.phases.extend(r.phases.iter().map(|p| PhaseReport {
        name: format!("after_crash_{}", p.name),
        ..p.clone()
    }));
    if let Some(split) = &r.time_split {
        out.time_split
            .get_or_insert_with(TimeSplit::default)
            .add(split);
    }
    out.violations.extend(r.all_violations().cloned());
    // The first log held: the reproducer of the run is the second log's.
    if first.all_violations().next().is_none() {
        out.minimal_repro.clone_from(&r.minimal_repro);
    }
    out.violations.extend(
        second
            .guest_prior_violations
            .iter()
            .map(|v| run_finding_as_i8(v, first.seed)),
    );
    out
}

/// Reboots on the first run's crash image, records the continuation and checks its log.
/// `first_out` is the first recording's directory; `forged` are extra prior acks (test aid).
/// The first violation of the second log is shrunk as the first log's is.
pub fn check_after_crash(
    workload: &Workload,
    first_out: &Path,
    first: &RecordOutcome,
    record_options: &RecordOptions,
    config: CheckConfig,
    forged: &[Ack],
    progress: &vm::progress::Progress,
) -> Result<SecondCrash> {
    let dir = first_out.join(AFTER_CRASH_DIR);
    let mut prior: Vec<Ack> = first.ledger.iter().map(|e| e.ack.clone()).collect();
    prior.extend(forged.iter().cloned());
    let options = RecordOptions {
        base_image: Some(first_out.join("final.img")),
        continue_after_crash: Some(prior.clone()),
        ..record_options.clone()
    };
    progress.line(format!(
        "I8: rebooting on the crash image with {} acks of the first run{}",
        prior.len(),
        if forged.is_empty() {
            String::new()
        } else {
            format!(" ({} forged)", forged.len())
        }
    ));
    let second = record::record(workload, &dir, &options, progress)
        .context("recording the run after the power cut")?;
    let log_path = dir.join("log.bin");
    let log = BlockLog::open(&log_path)
        .with_context(|| format!("reading the second log {}", log_path.display()))?;
    let config = CheckConfig {
        acks: Some(expected_acks(&prior, &log).context("acks of the second log")?),
        program: crate::recovery::guest_program_check(workload),
        ..config
    };
    drop(log);
    eprintln!(
        "I8: {} acks of the first run expected in every state of the second log",
        prior.len()
    );
    let mut report = crate::check_cmds::pipeline::check_states(
        &log_path,
        &dir.join("base.img"),
        workload,
        &config,
        "after-crash ",
    )?;
    report.workload = workload.name.clone();
    let summary = &second.summary;
    Ok(SecondCrash {
        recording: dir,
        killed_after_ack: first.summary.killed_after_ack,
        prior_acks: prior.len() as u64,
        forged_prior_acks: forged.len() as u64,
        guest_recovery: guest_recovery(workload, summary),
        guest_prior_violations: summary.guest_findings.clone(),
        acks: summary.acks,
        vm_s: summary.vm_s,
        report: report_as_i8(report),
    })
}

/// The recording whose log holds crash state `state_id` of the run recorded in `dir`: `dir`, or
/// for a state of the run after a power cut, its recording; None for what is not a crash state
/// of a log (a finding of the guest on reboot).
fn recording_of_state(dir: &Path, state_id: &str) -> Option<PathBuf> {
    let id: powercut_oracles::crash::StateId = state_id.parse().ok()?;
    let second = dir.join(AFTER_CRASH_DIR);
    let in_second = BlockLog::open(&second.join("log.bin"))
        .is_ok_and(|log| log.hash_hex() == format!("{:08x}", id.log_hash));
    Some(if in_second { second } else { dir.to_path_buf() })
}

/// `powercut repro` of crash state `state_id` of the run recorded in `dir` (from the recording
/// whose log holds it); None for what is not a crash state of a log.
pub fn repro_command(dir: &Path, state_id: &str) -> Option<String> {
    let recording = recording_of_state(dir, state_id)?;
    Some(format!(
        "powercut repro {state_id} --log {} --base {}",
        recording.join("log.bin").display(),
        recording.join("base.img").display()
    ))
}

/// What the guest's recovery found on the crash image: its records and torn tail (none for a
/// program's workload: its guest recovers nothing itself).
fn guest_recovery(
    workload: &Workload,
    summary: &record::RecordSummary,
) -> Option<serde_json::Value> {
    if workload.is_program() {
        return None;
    }
    summary.done.as_ref().map(|d| {
        let s = &d.summary;
        serde_json::json!({
            "recovered_records": s.get("recovered_records"),
            "truncated_tail": s.get("truncated_tail"),
        })
    })
}

/// The JSON of a `run` report with its second-crash part.
pub fn report_json(combined: &Report, second: &SecondCrash) -> Result<String> {
    let mut value = serde_json::to_value(combined)?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("second_crash".into(), serde_json::to_value(second)?);
    }
    Ok(serde_json::to_string_pretty(&value)?)
}

/// The invariants of a `run` JUnit report with a second crash: the engine's, or a program's
/// checker's (`program`), and I8.
pub fn junit_invariants(program: bool) -> Vec<&'static str> {
    invariants(program, true)
}

/// The invariants a check of a run answers for: the engine's, or a program's checker's
/// (`program`), and I8 when the run had a second crash (`second_crash`).
pub fn invariants(program: bool, second_crash: bool) -> Vec<&'static str> {
    let mut all = if program {
        check::PROGRAM_INVARIANTS.to_vec()
    } else {
        powercut_oracles::report::INVARIANTS.to_vec()
    };
    if second_crash {
        all.push(I8);
    }
    all
}

/// One-line summary of the second crash.
pub fn summary_line(second: &SecondCrash) -> String {
    let by_kind: BTreeMap<&str, u64> = second
        .report
        .states_by_kind
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    format!(
        "I8 (second crash): {} of {} states checked ({by_kind:?}) in {:.1}s, {} violations, \
         {} on reboot",
        second.report.states_checked,
        second.report.states_total,
        second.report.elapsed_seconds,
        second.report.all_violations().count(),
        second.guest_prior_violations.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(inv: &str) -> Violation {
        Violation {
            invariant: inv.into(),
            state_id: "0badcafe-c3-p".into(),
            seed: 7,
            step: Some("r:1-2:00000000".into()),
            expected: "records 1..=2".into(),
            found: "missing LSN 2".into(),
        }
    }

    fn report(violations: Vec<Violation>) -> Report {
        Report {
            seed: 7,
            workload: "two-crash".into(),
            fs: "ext4".into(),
            log_hash: "0badcafe".into(),
            enumeration_seed: 7,
            shard: None,
            states_total: 10,
            states_checked: 10,
            duplicates_skipped: 1,
            states_from_coverage: 0,
            states_by_kind: BTreeMap::from([("prefix".to_string(), 10)]),
            states_per_second: 5.0,
            elapsed_seconds: 2.0,
            mid_log_probes: 1,
            violations,
            coverage: Some(CoverageReport {
                acks_covered: 3,
                acks_uncovered: 1,
                acks_unchecked: 0,
                uncovered: vec!["r:5-5:00000001".into()],
                violations: vec![violation("I6")],
            }),
            budget_exhausted: false,
            minimal_repro: None,
            image_copies: None,
            phases: Vec::new(),
            time_split: None,
        }
    }

    #[test]
    fn second_log_findings_become_i8_and_add_up() {
        let first = Report {
            coverage: None,
            ..report(vec![])
        };
        let second_report = report_as_i8(report(vec![violation("I1")]));
        assert!(second_report
            .all_violations()
            .all(|v| v.invariant == I8 && v.expected.contains("after a second crash")));
        assert!(second_report.violations[0]
            .expected
            .starts_with("I1 after a second crash: records 1..=2"));
        let second = SecondCrash {
            recording: PathBuf::from("x"),
            killed_after_ack: Some(3),
            prior_acks: 4,
            forged_prior_acks: 0,
            guest_recovery: None,
            guest_prior_violations: vec![RunFinding {
                invariant: "I1".into(),
                step: Some("r:9-9:00000000".into()),
                expected: "records 9..=9".into(),
                found: "missing LSN 9".into(),
            }],
            acks: 5,
            vm_s: 1.0,
            report: second_report,
        };
        let combined = combine(&first, &second);
        assert_eq!(combined.states_checked, 20);
        assert_eq!(combined.states_by_kind["prefix"], 20);
        // I1 of a state, the uncovered ack, the coverage I6, the guest's finding on reboot.
        let i8: Vec<&Violation> = combined
            .violations
            .iter()
            .filter(|v| v.invariant == I8)
            .collect();
        assert_eq!(i8.len(), 4, "{i8:?}");
        assert!(i8.iter().any(|v| v.state_id == REBOOT_STATE_ID));
        assert!(!combined.passed());
        let json: serde_json::Value =
            serde_json::from_str(&report_json(&combined, &second).unwrap()).unwrap();
        assert_eq!(json["states_checked"], 20);
        assert_eq!(json["second_crash"]["states_checked"], 10);
        assert_eq!(json["second_crash"]["prior_acks"], 4);
        let xml = combined.to_junit_with(&junit_invariants(false)).unwrap();
        assert!(xml.contains("two-crash::I8"));
        assert!(xml.contains("4 violations of I8"));
    }

    #[test]
    fn a_shrink_tells_i8_findings_apart_by_the_invariant_behind_them() {
        let lost = as_i8(violation("KV"));
        let restart = run_finding_as_i8(
            &RunFinding {
                invariant: "RESTART".into(),
                step: None,
                expected: "the program runs again".into(),
                found: "exited with status 3".into(),
            },
            7,
        );
        assert_eq!(finding_name(&lost), "I8/KV");
        assert_eq!(finding_name(&restart), "I8/RESTART");
        assert_eq!(finding_name(&violation("I1")), "I1");
    }

    #[test]
    fn clean_second_log_passes() {
        let mut r = report(vec![]);
        r.coverage = None;
        let second = report_as_i8(r.clone());
        assert!(second.passed());
        assert_eq!(
            as_i8(as_i8(violation("I2"))).expected.matches("I2").count(),
            1
        );
    }
}
