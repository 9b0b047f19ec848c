//! End to end under QEMU: `powercut mutants --only M1` must catch the mutant that acknowledges
//! before the sync completes (the coverage check and I1 see acks no flush covers), and the real
//! engine must pass the same workloads (baseline 0 violations).
//!
//! Needs root and QEMU (provisioned by `powercut image build`); prints "SKIPPED: <reason>" (a failure under CI=true)
//! otherwise.

mod common;

use common::{assert_succeeded, read_json, vm_test_dir, workspace, POWERCUT};

use std::process::Command;

#[test]
fn vm_mutants_m1_is_caught_and_the_baseline_is_clean() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let json = dir.path().join("mutants.json");
    let output = Command::new(POWERCUT)
        .args([
            "mutants",
            "--only",
            "M1",
            "--budget-per-run",
            "60s",
            "--out",
        ])
        .arg(dir.path().join("out"))
        .arg("--json")
        .arg(&json)
        .current_dir(workspace())
        .output()
        .unwrap();
    assert_succeeded(&output, "powercut mutants --only M1");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = read_json(&json);
    let mutants = summary["mutants"].as_array().unwrap();
    assert_eq!(mutants.len(), 1, "{summary}");
    let m1 = &mutants[0];
    assert_eq!(m1["name"], "M1", "{summary}");
    assert_eq!(m1["caught"], true, "{summary}");
    assert!(
        m1["invariant"].as_str().is_some_and(|i| !i.is_empty()),
        "{summary}"
    );
    assert!(
        m1["repro"].as_str().is_some_and(|r| !r.is_empty()),
        "{summary}"
    );
    assert!(m1["seconds_to_catch"].as_f64().unwrap() > 0.0, "{summary}");
    assert!(m1["workload"].as_str().is_some(), "{summary}");
    assert_eq!(summary["baseline_violations"], 0, "{summary}");
    assert!(
        !summary["baseline"].as_array().unwrap().is_empty(),
        "{summary}"
    );
    assert!(stdout.contains("1 of 1 mutants caught"), "{stdout}");
    println!("{stdout}");
}
