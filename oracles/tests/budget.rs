//! The deadline of a check with the real kernel (root only; prints SKIPPED otherwise, fails under
//! CI=true): a long check stops near it and says what each phase covered; a shrink stops at it.
//! No assertion on timing beyond generous bounds: the figures asserted are the reported ones.

mod common;

use std::time::{Duration, Instant};

use common::{
    capability, check_seeded, make_base, record_log, runnable, toy_input, toy_recover, Engine,
};
use powercut_oracles::check::{check_log, CheckConfig, Progress};
use powercut_oracles::mount::FsType;
use powercut_oracles::report::PhaseReport;
use powercut_oracles::shrink::{shrink_within, Target};

fn cfg(dir: &std::path::Path) -> CheckConfig {
    CheckConfig {
        workers: 1,
        ..common::small_check_config(dir)
    }
}

fn phase<'a>(phases: &'a [PhaseReport], name: &str) -> &'a PhaseReport {
    phases
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no phase {name} in {phases:?}"))
}

/// A check of a few hundred states given half a second stops soon after it, with every pass
/// saying how far it got, and progress reported for the coverage pass too.
#[test]
fn a_long_check_stops_near_its_budget_and_reports_partial_coverage() {
    if !runnable(capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let batches: Vec<u64> = (0..150).map(|i| 1 + i % 3).collect();
    let (log, _) = record_log(dir.path(), &base, &batches, Engine::Correct);
    let budget = Duration::from_millis(500);
    let config = CheckConfig {
        budget: Some(budget),
        ..cfg(dir.path())
    };
    let mut seen: Vec<Progress> = Vec::new();
    let started = Instant::now();
    let report = check_log(&toy_input(&log, &base.image), &config, &mut |p| {
        seen.push(p)
    })
    .unwrap();
    let took = started.elapsed();
    println!("{}", report.summary());
    // Enough work that no machine checks it all in the budget (a mount alone takes ~10 ms).
    assert!(report.states_total >= 300, "{}", report.states_total);
    assert!(report.budget_exhausted, "{}", report.summary());
    assert!(report.not_covered().is_some());
    assert!(report.violations.is_empty(), "{}", report.summary());
    // Near the budget: a state in flight finishes, nothing new starts (generous bound).
    assert!(took < budget + Duration::from_secs(20), "{took:?}");
    let coverage = phase(&report.phases, "coverage");
    assert!(coverage.stopped_by_budget, "{coverage:?}");
    assert!(coverage.done < coverage.total, "{coverage:?}");
    let cov = report.coverage.as_ref().unwrap();
    assert!(cov.acks_unchecked > 0, "{cov:?}");
    let states = phase(&report.phases, "states");
    assert!(states.stopped_by_budget, "{states:?}");
    assert_eq!(states.done, report.states_checked);
    assert_eq!(states.total, report.states_total);
    assert!(states.done < states.total);
    // The probe belongs to the last full prefix, which the budget did not reach.
    let probe = phase(&report.phases, "i5_probe");
    assert_eq!((probe.done, probe.stopped_by_budget), (0, true));
    // The summary says it; the JSON carries it under new keys.
    let summary = report.summary();
    assert!(summary.contains("budget ran out: coverage: "), "{summary}");
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["phases"][0]["name"], "coverage");
    assert_eq!(json["phases"][0]["stopped_by_budget"], true);
    assert!(json["budget_exhausted"].as_bool().unwrap());
    // Where the time went: every state checked counted, mount and recovery measured.
    let split = report.time_split.as_ref().unwrap();
    assert_eq!(split.states, coverage.done);
    assert!(split.mount_s > 0.0 && split.recovery_s > 0.0, "{split:?}");
    assert!(json["time_split"]["mount_s"].as_f64().unwrap() > 0.0);
    // Progress came from the coverage pass, counting up to what it checked.
    let cov_progress: Vec<&Progress> = seen.iter().filter(|p| p.phase == "coverage").collect();
    // One report as the pass begins, then one per state.
    assert_eq!(cov_progress[0].states_done, 0);
    assert_eq!(cov_progress.len() as u64, coverage.done + 1);
    assert!(cov_progress
        .iter()
        .all(|p| p.states_total == coverage.total));
}

/// A command's deadline already passed when the check starts: no pass starts, each says so.
#[test]
fn a_passed_deadline_stops_every_pass_before_it_starts() {
    if !runnable(capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let (log, _) = record_log(dir.path(), &base, &[1, 3, 2, 7], Engine::Correct);
    let config = CheckConfig {
        deadline: Some(Instant::now()),
        ..cfg(dir.path())
    };
    let report = check_seeded(&log, &base.image, FsType::Ext4, &config, &toy_recover).unwrap();
    assert_eq!(report.states_checked, 0);
    assert!(report.budget_exhausted);
    for name in ["coverage", "states", "i5_probe"] {
        let p = phase(&report.phases, name);
        assert_eq!(p.done, 0, "{p:?}");
        assert!(p.total > 0 && p.stopped_by_budget, "{p:?}");
    }
    assert_eq!(report.time_split.as_ref().unwrap().states, 0);
}

/// The shrink of a violation stops at the deadline (the failing state is then its own
/// reproducer) and runs to its end without one, reporting its tries either way.
#[test]
fn the_shrink_stops_at_its_budget() {
    if !runnable(capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let (log, _) = record_log(dir.path(), &base, &[4, 3, 5], Engine::AckBeforeSync);
    let c = CheckConfig {
        coverage: false,
        ..cfg(dir.path())
    };
    let report = check_seeded(&log, &base.image, FsType::Ext4, &c, &toy_recover).unwrap();
    let failing = report
        .violations
        .iter()
        .filter(|v| v.invariant == "I1")
        .find(|v| !v.state_id.ends_with("-p"))
        .expect("acks before the sync lose records in a subset state");
    let target = Target {
        state_id: &failing.state_id,
        invariant: "I1",
    };
    let input = toy_input(&log, &base.image);
    let stopped = CheckConfig {
        deadline: Some(Instant::now()),
        ..c.clone()
    };
    let mut tries_seen = 0;
    let (shrunk, phase) =
        shrink_within(&input, &target, &stopped, &mut |_| tries_seen += 1).unwrap();
    assert_eq!(tries_seen, 0);
    assert_eq!((shrunk.tries, phase.done), (0, 0));
    assert!(phase.stopped_by_budget && phase.total > 0, "{phase:?}");
    assert_eq!(shrunk.minimal, failing.state_id, "no try: the state itself");
    let mut progress: Vec<Progress> = Vec::new();
    let (shrunk, phase) = shrink_within(&input, &target, &c, &mut |p| progress.push(p)).unwrap();
    println!("{} {phase:?}", shrunk.describe());
    assert!(!phase.stopped_by_budget, "{phase:?}");
    assert!(shrunk.tries > 0 && phase.done == shrunk.tries as u64);
    assert!(phase.done <= phase.total, "{phase:?}");
    assert_eq!(progress.len(), shrunk.tries);
    assert!(progress.iter().all(|p| p.phase == "shrink"));
}
