//! I9 (recovered implies durable) on crafted logs over a real ext4 image: what a reopen
//! recovered must be in every later crash state. Root only (loop mounts); fails under CI=true.

mod common;

use common::{capability, make_base, record_script, runnable, toy_input, Scripted};
use powercut_oracles::check::{check_log, CheckConfig};
use powercut_oracles::crash::EnumConfig;

fn violations(script: &[Scripted], name: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let base = make_base(dir.path(), 32);
    let log = record_script(dir.path(), &base, name, script);
    let config = CheckConfig {
        keep_dir: Some(dir.path().join("keep")),
        scratch_dir: Some(dir.path().join("scratch")),
        states: EnumConfig {
            max_exhaustive_subset: 4,
            samples_per_epoch: 6,
            torn_samples: 2,
            atomic_write_bytes: 512,
            seed: 3,
        },
        ..CheckConfig::default()
    };
    let report = check_log(&toy_input(&log, &base.image), &config, &mut |_| {}).unwrap();
    println!("{}", report.summary());
    report
        .violations
        .iter()
        .map(|v| (v.invariant.clone(), v.step.clone().unwrap_or_default()))
        .collect()
}

/// Three records acknowledged after their flush, then a group of two whose sync failed:
/// written, never flushed, never acknowledged.
const FAILED_GROUP: [Scripted; 4] = [
    Scripted::Write { records: 3 },
    Scripted::Flush,
    Scripted::Ack,
    Scripted::Write { records: 2 },
];

#[test]
fn a_recovered_record_a_later_state_lacks_is_i9() {
    if !runnable(capability()) {
        return;
    }
    // A group whose sync failed: written, never flushed, never acknowledged. The reopen
    // recovers it (it read the bytes back) but does not make it durable.
    let script = [FAILED_GROUP.as_slice(), &[Scripted::Reopened]].concat();
    let found = violations(&script, "reopen-without-sync");
    assert!(
        found
            .iter()
            .any(|(inv, step)| inv == "I9" && step.starts_with("o:1-5:")),
        "{found:?}"
    );
    assert!(!found.iter().any(|(inv, _)| inv == "I1"), "{found:?}");
}

#[test]
fn a_failed_record_on_the_device_is_accepted() {
    if !runnable(capability()) {
        return;
    }
    // The same failed group, but the reopen syncs what it recovered before saying so: it is on
    // the device, and every later state holds it.
    let script = [
        FAILED_GROUP.as_slice(),
        &[
            Scripted::Flush,
            Scripted::Reopened,
            Scripted::Write { records: 2 },
            Scripted::Flush,
            Scripted::Ack,
        ],
    ]
    .concat();
    assert_eq!(violations(&script, "reopen-with-sync"), vec![]);
}
