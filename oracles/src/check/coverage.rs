//! Coverage: a check that needs no crash enumeration. For each ack MARK at log position p, build
//! the state "everything durable at p" (every write before the last FLUSH before p, plus the FUA
//! writes before p, nothing else) and check that the acked records and files are there (I1, I6,
//! and the rest of I2-I4 on that state). An engine that acks before its sync completed fails this
//! deterministically: its data sits after the mark, or before it but unflushed.

use std::collections::HashMap;
use std::path::Path;

use powercut_workloads::ack::Ack;

use super::config::CheckConfig;
use super::runner::{run_states, Progress};
use super::scratch::scratch;
use super::{open_log, LogInput, LogRun};
use crate::blocklog::BlockLog;
use crate::crash::{self, CrashState, StateId, Subset};
use crate::outcome::{CheckError, StateOutcome};
use crate::report::CoverageReport;

fn is_checked_ack(a: &Ack) -> bool {
    !matches!(a, Ack::Start { .. } | Ack::End { .. })
}

/// The durable-only states of the acks, deduplicated by image (each keeps the latest cut of its
/// group, so it expects every ack of the group), with the positions in `acks` of the acks whose own
/// durable state it is. Sorted for replay.
pub fn durable_states(log: &BlockLog, acks: &[(u64, Ack)]) -> Vec<(CrashState, Vec<usize>)> {
    let mut groups: Vec<(CrashState, Vec<usize>)> = Vec::new();
    let mut by_key: HashMap<u64, usize> = HashMap::new();
    for (pos, (mark, ack)) in acks.iter().enumerate() {
        if !is_checked_ack(ack) {
            continue;
        }
        let id = StateId {
            log_hash: log.hash(),
            cut: mark + 1,
            subset: Subset::List(Vec::new()),
            tear: None,
        };
        // The id comes from this log and an empty subset always resolves.
        let Ok(state) = crash::resolve(log, &id) else {
            continue;
        };
        match by_key.get(&state.image_key) {
            Some(&g) => {
                if state.id.cut > groups[g].0.id.cut {
                    groups[g].0 = state;
                }
                groups[g].1.push(pos);
            }
            None => {
                by_key.insert(state.image_key, groups.len());
                groups.push((state, vec![pos]));
            }
        }
    }
    groups.sort_by_key(|(s, _)| (s.prefix_len, s.id.cut));
    groups
}

/// What the coverage pass found: its report, the states it checked with their outcomes (the
/// crash-state pass reuses them) and what it covered.
type CoverageRun = (
    CoverageReport,
    Vec<(CrashState, StateOutcome)>,
    crate::report::PhaseReport,
);

/// The coverage pass of a run: checks the durable state of every ack, reporting progress as
/// `coverage`.
pub(super) fn run_coverage(
    run: &LogRun<'_>,
    scratch: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<CoverageRun, CheckError> {
    let started = std::time::Instant::now();
    let (log, acks) = (run.log, run.acks);
    let groups = durable_states(log, acks);
    let states: Vec<CrashState> = groups.iter().map(|(s, _)| s.clone()).collect();
    // One state per distinct durable image, within the run's deadline:
    // acks whose state was not reached are reported as unchecked, never as uncovered.
    let cfg = CheckConfig {
        mid_log_corruption: false,
        ..run.config.clone()
    };
    let coverage_run = LogRun {
        config: &cfg,
        ..*run
    };
    let (outcomes, exhausted) = run_states(
        &coverage_run,
        &scratch.join("coverage"),
        &states,
        progress,
        "coverage",
    )?;
    let phase = super::phase(
        "coverage",
        outcomes.len(),
        states.len(),
        "states",
        exhausted,
        started.elapsed(),
    );
    let by_id: HashMap<&str, usize> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| (o.state_id.as_str(), i))
        .collect();
    let report = tally(&groups, &outcomes, &by_id, acks);
    let checked = groups
        .into_iter()
        .filter_map(|(state, _)| {
            let i = *by_id.get(state.id.to_string().as_str())?;
            Some((state, outcomes[i].clone()))
        })
        .collect();
    Ok((report, checked, phase))
}

/// Each ack of `groups` is covered when its durable state was checked without a violation of it
/// (or of the state as a whole), uncovered when it was, unchecked when the budget ran out first.
fn tally(
    groups: &[(CrashState, Vec<usize>)],
    outcomes: &[StateOutcome],
    by_id: &HashMap<&str, usize>,
    acks: &[(u64, Ack)],
) -> CoverageReport {
    let mut report = CoverageReport::default();
    for (state, members) in groups {
        let id = state.id.to_string();
        let Some(outcome) = by_id.get(id.as_str()).map(|&i| &outcomes[i]) else {
            report.acks_unchecked += members.len() as u64;
            continue;
        };
        for &pos in members {
            let label = acks[pos].1.to_label();
            let uncovered = outcome
                .violations
                .iter()
                .any(|v| v.step.is_none() || v.step.as_deref() == Some(label.as_str()));
            if uncovered {
                report.acks_uncovered += 1;
                if report.uncovered.len() < 100 {
                    report.uncovered.push(label);
                }
            } else {
                report.acks_covered += 1;
            }
        }
        report.violations.extend(outcome.violations.iter().cloned());
    }
    report
}

/// Splits `states` into those still to check and the outcomes of those equal to a state the
/// coverage pass checked (the same image and the same expected acks): that outcome counts for
/// them, under their own id.
pub(super) fn split_by_coverage(
    states: &[CrashState],
    covered: &[(CrashState, StateOutcome)],
    acks: &[(u64, Ack)],
) -> (Vec<CrashState>, Vec<StateOutcome>) {
    let covered: HashMap<(u64, usize), &StateOutcome> = covered
        .iter()
        .map(|(state, outcome)| (equivalence(state, acks), outcome))
        .collect();
    let mut to_check = Vec::new();
    let mut reused = Vec::new();
    for state in states {
        match covered.get(&equivalence(state, acks)) {
            Some(outcome) => reused.push(StateOutcome {
                state_id: state.id.to_string(),
                kind: state.id.kind(),
                ..(*outcome).clone()
            }),
            None => to_check.push(state.clone()),
        }
    }
    (to_check, reused)
}

/// What decides a state's verdict: its image and how many acks it expects (the acks marked
/// before its cut; the one in flight follows from that).
fn equivalence(state: &CrashState, acks: &[(u64, Ack)]) -> (u64, usize) {
    let expected = acks.partition_point(|(mark, _)| *mark < state.id.cut);
    (state.image_key, expected)
}

/// Coverage of a log on its own (for `powercut log inspect` and `record`).
pub fn check_coverage(
    input: &LogInput<'_>,
    config: &CheckConfig,
) -> Result<CoverageReport, CheckError> {
    check_coverage_with(input, config, &mut |_| {})
}

/// [`check_coverage`] reporting its progress (phase `coverage`).
pub fn check_coverage_with(
    input: &LogInput<'_>,
    config: &CheckConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<CoverageReport, CheckError> {
    let (log, acks) = open_log(input.log_path, config)?;
    // A directory of this call's own: concurrent coverage checks of one process must never share
    // (or remove) each other's mounted images.
    let scratch = scratch(config)?;
    let timing = super::Timing::default();
    let run = LogRun::new(input, &log, &acks, config, &timing);
    run_coverage(&run, &scratch.path, progress).map(|(report, _, _)| report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklog::LogWriter;
    use crate::invariants;

    #[test]
    fn durable_states_group_acks_by_image() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = LogWriter::create(&p, 512).unwrap();
        w.mark("s:wl").unwrap();
        w.write(1, &[1; 512], 0).unwrap();
        w.flush().unwrap();
        w.mark("r:1-1:00000001").unwrap();
        w.mark("f:create:a:00000002").unwrap();
        w.write(2, &[2; 512], 0).unwrap(); // acked before its flush: durable state lacks it
        w.mark("r:2-2:00000003").unwrap();
        w.flush().unwrap();
        w.mark("r:3-3:00000004").unwrap();
        w.finish(None, 0).unwrap();
        let log = BlockLog::open(&p).unwrap();
        let acks = invariants::acks_of_log(&log).unwrap();
        assert_eq!(acks.len(), 5);
        let groups = durable_states(&log, &acks);
        // Marks 3, 4 and 6 share the durable image {entry 1}; mark 8 sees {1, 5}.
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, vec![1, 2, 3]);
        assert_eq!(groups[0].0.id.cut, 7);
        assert!(groups[0].0.applied.is_empty());
        assert_eq!(groups[0].0.prefix_len, 2);
        assert_eq!(groups[1].1, vec![4]);
        assert_eq!(groups[1].0.prefix_len, 7);
    }
}
