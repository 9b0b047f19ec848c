//! End to end with the real kernel: crafted dm-log-writes logs over a real ext4 image, every crash
//! state loop-mounted (root only; prints SKIPPED otherwise, fails under CI=true).

mod common;

use common::capability;
use common::check_seeded;
use common::{
    make_base, make_base_fs, record_log, record_log_without_marks, runnable, toy_input,
    toy_recover, toy_recover_lenient, xfs_capability, Engine,
};
use powercut_oracles::check::{check_log, check_one, CheckConfig};
use powercut_oracles::coverage::check_coverage;
use powercut_oracles::crash::StateKind;
use powercut_oracles::mount::FsType;
use powercut_oracles::replay::{replay_to, ReplayTarget};

fn cfg(dir: &std::path::Path) -> CheckConfig {
    common::small_check_config(dir)
}

#[test]
fn correct_engine_passes_every_state() {
    if !runnable(capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let (log, n) = record_log(dir.path(), &base, &[1, 3, 2, 7, 1, 12], Engine::Correct);
    let mut last = None;
    let report = check_log(&toy_input(&log, &base.image), &cfg(dir.path()), &mut |p| {
        last = Some(p)
    })
    .unwrap();
    println!("{}", report.summary());
    assert!(report.violations.is_empty(), "{}", report.summary());
    assert!(report.passed());
    assert_eq!(report.workload, "toy");
    assert_eq!(report.states_checked, report.states_total);
    assert!(report.states_checked >= 20, "{}", report.states_checked);
    assert!(
        report
            .states_by_kind
            .get(StateKind::Torn.as_str())
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert_eq!(
        report.mid_log_probes, 1,
        "the I5 probe ran on the final state"
    );
    let cov = report.coverage.as_ref().unwrap();
    assert_eq!((cov.acks_covered, cov.acks_uncovered), (6, 0));
    // States equal to a coverage state are counted with its outcome, not mounted again.
    assert!(report.states_from_coverage > 0, "{}", report.summary());
    assert_eq!(
        last.unwrap().states_done + report.states_from_coverage,
        report.states_checked
    );
    // The full replay holds every record.
    let out = dir.path().join("full.img");
    replay_to(&log, &base.image, ReplayTarget::Mark("e:toy".into()), &out).unwrap();
    assert!(n == 26);
}

// Longer than most: one recording checked three ways (coverage, crash states, one state).
#[test]
fn ack_before_sync_is_caught_by_coverage_and_crash_states() {
    if !runnable(capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let (log, _) = record_log(dir.path(), &base, &[2, 3, 1], Engine::AckBeforeSync);
    let c = CheckConfig {
        max_kept_images: 2,
        ..cfg(dir.path())
    };
    let cov = check_coverage(&toy_input(&log, &base.image), &c).unwrap();
    assert_eq!(cov.acks_covered, 0);
    assert_eq!(cov.acks_uncovered, 3);
    let report = check_seeded(&log, &base.image, FsType::Ext4, &c, &toy_recover).unwrap();
    assert!(
        report.violations.iter().any(|v| v.invariant == "I1"),
        "{}",
        report.summary()
    );
    assert!(!report.passed());
    // The failing state is kept with its ledger, and repro rebuilds it with the same verdict.
    let v = report
        .violations
        .iter()
        .find(|v| v.invariant == "I1")
        .unwrap();
    let kept = dir.path().join("keep").join(&v.state_id);
    assert!(kept.join("ledger.json").exists() && kept.join("outcome.json").exists());
    // Images are kept for the first failing states of each pass only; the others say how to
    // rebuild them. Three passes shared this keep directory: the coverage check above, and
    // check_log's coverage and crash-state passes. Which failing states come first depends on
    // which worker finishes first, so the passes may keep images of different states.
    let states: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("keep"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    let with_image = states.iter().filter(|p| p.join("image").exists()).count();
    assert!(
        with_image >= states.len().min(c.max_kept_images)
            && with_image <= 3 * c.max_kept_images
            && with_image < states.len(),
        "{with_image} images of {} failing states kept",
        states.len()
    );
    assert!(states
        .iter()
        .all(|p| p.join("image").exists() || p.join("image-not-kept.txt").exists()));
    assert!(dir.path().join("keep/block.log").exists());
    let one = check_one(&v.state_id, &toy_input(&log, &base.image), &c).unwrap();
    assert!(one.violations.iter().any(|x| x.invariant == "I1"));
    let junit = report.to_junit().unwrap();
    assert!(junit.contains("toy::I1") && junit.contains("<failure"));
}

#[test]
fn lenient_recovery_fails_the_mid_log_probe_and_shards_partition() {
    if !runnable(capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let (log, _) = record_log(dir.path(), &base, &[2, 2, 2], Engine::Correct);
    let c = cfg(dir.path());
    let report = check_seeded(&log, &base.image, FsType::Ext4, &c, &toy_recover_lenient).unwrap();
    let i5: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.invariant == "I5")
        .collect();
    assert_eq!(i5.len(), 1, "{}", report.summary());
    // Shards: together they check exactly the unsharded states.
    let mut parts = Vec::new();
    for k in 0..2 {
        let c = CheckConfig {
            shard: Some((k, 2)),
            mid_log_corruption: false,
            ..cfg(dir.path())
        };
        parts.push(check_seeded(&log, &base.image, FsType::Ext4, &c, &toy_recover).unwrap());
    }
    let merged = powercut_oracles::report::merge(&parts).unwrap();
    assert_eq!(merged.states_checked, report.states_checked);
    assert!(merged.violations.is_empty());
    // A budget of zero checks nothing and says so.
    let c = CheckConfig {
        budget: Some(std::time::Duration::ZERO),
        coverage: false,
        ..cfg(dir.path())
    };
    let r = check_seeded(&log, &base.image, FsType::Ext4, &c, &toy_recover).unwrap();
    assert!(r.budget_exhausted);
    assert_eq!(r.states_checked, 0);
}

#[test]
fn xfs_crash_states_mount_and_pass() {
    if !runnable(xfs_capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base_fs(dir.path(), 320, FsType::Xfs);
    let (log, _) = record_log(dir.path(), &base, &[2, 5, 1], Engine::Correct);
    let report = check_seeded(
        &log,
        &base.image,
        FsType::Xfs,
        &cfg(dir.path()),
        &toy_recover,
    )
    .unwrap();
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(report.fs, "xfs");
    assert!(report.states_checked >= 10);
    let (bad, _) = record_log(dir.path(), &base, &[2, 5, 1], Engine::AckBeforeSync);
    let report = check_seeded(
        &bad,
        &base.image,
        FsType::Xfs,
        &cfg(dir.path()),
        &toy_recover,
    )
    .unwrap();
    assert!(report.violations.iter().any(|v| v.invariant == "I1"));
}

#[test]
fn logs_without_marks_use_given_acks() {
    if !runnable(capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let (log, acks) = record_log_without_marks(dir.path(), &base, &[1, 4, 2], false);
    let parsed = powercut_oracles::blocklog::BlockLog::open(&log).unwrap();
    assert_eq!(parsed.nr_entries_in_super(), 0);
    assert!(parsed.entries_past_nr_entries() > 0);
    let c = CheckConfig {
        acks: Some(acks),
        ..cfg(dir.path())
    };
    let report = check_seeded(&log, &base.image, FsType::Ext4, &c, &toy_recover).unwrap();
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(report.workload, "toy");
    assert_eq!(report.coverage.as_ref().unwrap().acks_covered, 3);
    let (log, acks) = record_log_without_marks(dir.path(), &base, &[1, 4, 2], true);
    let c = CheckConfig {
        acks: Some(acks),
        ..cfg(dir.path())
    };
    let report = check_seeded(&log, &base.image, FsType::Ext4, &c, &toy_recover).unwrap();
    assert_eq!(
        report.coverage.as_ref().unwrap().acks_uncovered,
        3,
        "{}",
        report.summary()
    );
    assert!(report.violations.iter().any(|v| v.invariant == "I1"));
}

// Longer than most: finding the failing state to shrink needs a full check of its log first.
#[test]
fn a_failing_state_shrinks_to_fewer_dropped_writes_that_still_fail() {
    if !runnable(capability()) {
        return;
    }
    use powercut_oracles::crash::{self, StateId};
    use powercut_oracles::shrink::shrink_state;
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let (log, _) = record_log(dir.path(), &base, &[4, 3, 5], Engine::AckBeforeSync);
    let c = cfg(dir.path());
    let report = check_seeded(&log, &base.image, FsType::Ext4, &c, &toy_recover).unwrap();
    let block_log = powercut_oracles::blocklog::BlockLog::open(&log).unwrap();
    let dropped = |id: &str| {
        let id: StateId = id.parse().unwrap();
        let state = crash::resolve(&block_log, &id).unwrap();
        let volatile = crash::volatile_writes(&block_log, id.cut);
        let applied = state
            .applied
            .iter()
            .filter(|a| a.mask.is_none() && volatile.contains(&a.index))
            .count();
        volatile.len() - applied
    };
    // The I1 violation on the state that drops the most writes (torn ones count as dropped).
    let worst = report
        .violations
        .iter()
        .filter(|v| v.invariant == "I1")
        .max_by_key(|v| dropped(&v.state_id))
        .expect("acks before the sync lose records in some crash state");
    let before = dropped(&worst.state_id);
    assert!(before >= 2, "{} drops only {before}", worst.state_id);
    let shrunk = shrink_state(&worst.state_id, "I1", &toy_input(&log, &base.image), &c).unwrap();
    println!("{}", shrunk.describe());
    assert_eq!(shrunk.original, worst.state_id);
    assert!(shrunk.tries > 0);
    assert!(
        !shrunk.torn,
        "a lost record needs no tear: {}",
        shrunk.describe()
    );
    assert!(
        shrunk.dropped_writes < before,
        "{} drops {before}, the shrunk {}",
        worst.state_id,
        shrunk.describe()
    );
    assert_eq!(dropped(&shrunk.minimal), shrunk.dropped_writes);
    let again = check_one(&shrunk.minimal, &toy_input(&log, &base.image), &c).unwrap();
    assert!(again.violations.iter().any(|v| v.invariant == "I1"));
}

#[test]
fn a_check_that_copies_images_says_why_once() {
    if !runnable(xfs_capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let (log, _) = record_log(dir.path(), &base, &[1, 2], Engine::Correct);
    let check = |reflink_scratch: bool| {
        let config = CheckConfig {
            reflink_scratch,
            coverage: false,
            ..cfg(dir.path())
        };
        check_seeded(&log, &base.image, FsType::Ext4, &config, &toy_recover).unwrap()
    };
    // On a scratch directory that cannot reflink, the XFS scratch file system gives clones.
    if powercut_oracles::replay::reflink_supported(dir.path()) {
        println!("the temporary directory reflinks: nothing to fall back from");
        return;
    }
    let cloned = check(true);
    assert_eq!(cloned.image_copies, None, "{}", cloned.summary());
    let copied = check(false);
    let why = copied.image_copies.clone().expect("copies are reported");
    assert!(why.contains("cannot reflink"), "{why}");
    assert!(
        copied.summary().contains("slow path"),
        "{}",
        copied.summary()
    );
    assert!(copied.passed(), "the verdict does not depend on the path");
}

#[test]
fn the_budget_bounds_the_coverage_pass_too() {
    if !runnable(capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let (log, _) = record_log(dir.path(), &base, &[1, 3, 2, 7, 1, 12], Engine::Correct);
    let config = CheckConfig {
        budget: Some(std::time::Duration::ZERO),
        ..cfg(dir.path())
    };
    let report = check_seeded(&log, &base.image, FsType::Ext4, &config, &toy_recover).unwrap();
    let cov = report.coverage.as_ref().unwrap();
    // Acks the budget did not reach are unchecked, never "uncovered" (a false finding).
    assert_eq!((cov.acks_covered, cov.acks_uncovered), (0, 0));
    assert_eq!(cov.acks_unchecked, 6);
    assert_eq!(report.states_checked, 0);
    assert!(report.not_covered().is_some(), "{}", report.summary());
    assert!(report.violations.is_empty());
}
