//! Many checks at once in one process (more workers than cores, ext4 and XFS, shared and separate
//! scratch and keep directories) give the verdicts the same checks give one at a time, leave
//! every input log untouched, and keep every failing state beside the log it came from.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{
    check_seeded, make_base_fs, record_log, runnable, toy_recover, toy_recover_lenient,
    xfs_capability, Engine,
};
use powercut_oracles::blocklog::BlockLog;
use powercut_oracles::check::CheckConfig;
use powercut_oracles::crash::EnumConfig;
use powercut_oracles::invariants::RecoverFn;
use powercut_oracles::keep::KEPT_LOG_NAME;
use powercut_oracles::mount::FsType;

struct Case {
    name: String,
    fs: FsType,
    log: PathBuf,
    base: PathBuf,
    recover: &'static RecoverFn,
    keep: PathBuf,
    scratch: PathBuf,
}

/// What a check decided: states checked and every violation (invariant, state, step).
type Verdict = (u64, BTreeSet<(String, String, Option<String>)>);

fn verdict(case: &Case, workers: usize) -> Verdict {
    let config = CheckConfig {
        keep_dir: Some(case.keep.clone()),
        scratch_dir: Some(case.scratch.clone()),
        states: EnumConfig {
            max_exhaustive_subset: 3,
            samples_per_epoch: 3,
            torn_samples: 2,
            atomic_write_bytes: 512,
            seed: 11,
        },
        workers,
        ..CheckConfig::default()
    };
    let report = check_seeded(&case.log, &case.base, case.fs, &config, case.recover)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let mut found: BTreeSet<_> = report
        .violations
        .iter()
        .map(|v| (v.invariant.clone(), v.state_id.clone(), v.step.clone()))
        .collect();
    if let Some(c) = &report.coverage {
        found.extend(
            c.violations
                .iter()
                .map(|v| (v.invariant.clone(), v.state_id.clone(), v.step.clone())),
        );
    }
    (report.states_checked, found)
}

fn cases(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for (fs, size_mib) in [(FsType::Ext4, 32), (FsType::Xfs, 320)] {
        let dir = root.join(fs.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let base = make_base_fs(&dir, size_mib, fs);
        let (good, _) = record_log(&dir, &base, &[2, 3, 1], Engine::Correct);
        let (bad, _) = record_log(&dir, &base, &[2, 3, 1], Engine::AckBeforeSync);
        let engines: [(&str, &PathBuf, &'static RecoverFn); 3] = [
            ("correct", &good, &toy_recover),
            ("ack-before-sync", &bad, &toy_recover),
            ("lenient-recovery", &good, &toy_recover_lenient),
        ];
        for (engine, log, recover) in engines {
            for shared in [true, false] {
                let name = format!("{fs}-{engine}-{}", if shared { "shared" } else { "own" });
                let (keep, scratch) = if shared {
                    (root.join("shared-keep"), root.join("shared-scratch"))
                } else {
                    (
                        root.join(format!("keep-{name}")),
                        root.join(format!("scratch-{name}")),
                    )
                };
                cases.push(Case {
                    name,
                    fs,
                    log: log.clone(),
                    base: base.image.clone(),
                    recover,
                    keep,
                    scratch,
                });
            }
        }
    }
    cases
}

/// Every kept state sits in a directory whose block.log is the log its id names.
fn assert_kept_beside_their_logs(keep: &Path) {
    let Ok(entries) = std::fs::read_dir(keep) else {
        return;
    };
    let log_path = keep.join(KEPT_LOG_NAME);
    let hash = log_path
        .exists()
        .then(|| BlockLog::open(&log_path).unwrap().hash_hex());
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !p.is_dir() {
            assert!(
                !name.starts_with('.'),
                "temporary file left: {}",
                p.display()
            );
            continue;
        }
        if name.starts_with("log-") {
            assert_kept_beside_their_logs(&p);
            continue;
        }
        let hash = hash.as_deref().expect("kept states without a block.log");
        assert!(
            name.starts_with(hash),
            "{name} kept beside log {hash} in {}",
            keep.display()
        );
        assert!(p.join("outcome.json").exists() && p.join("ledger.json").exists());
    }
}

#[test]
fn concurrent_checks_give_the_verdicts_of_checks_run_one_at_a_time() {
    if !runnable(xfs_capability()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = cases(dir.path());
    let logs: BTreeSet<&PathBuf> = cases.iter().map(|c| &c.log).collect();
    let before: Vec<Vec<u8>> = logs.iter().map(|l| std::fs::read(l).unwrap()).collect();
    let alone: Vec<Verdict> = cases.iter().map(|c| verdict(c, 1)).collect();
    assert!(
        alone.iter().any(|(_, v)| v.is_empty()) && alone.iter().any(|(_, v)| !v.is_empty()),
        "the cases must include passing and failing checks"
    );
    for round in 0..2 {
        let together: Vec<Verdict> = std::thread::scope(|s| {
            let handles: Vec<_> = cases
                .iter()
                .map(|c| s.spawn(move || verdict(c, 3)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for ((case, a), t) in cases.iter().zip(&alone).zip(&together) {
            assert_eq!(
                a, t,
                "round {round}: {} differs when run concurrently",
                case.name
            );
        }
    }
    let after: Vec<Vec<u8>> = logs.iter().map(|l| std::fs::read(l).unwrap()).collect();
    assert!(before == after, "an input log changed");
    let keeps: BTreeSet<&PathBuf> = cases.iter().map(|c| &c.keep).collect();
    for keep in keeps {
        assert_kept_beside_their_logs(keep);
    }
}
