//! Invariant I8 end to end under QEMU: `powercut run` on a workload with a power cut records the
//! first run up to the kill, boots again on the crash image, continues, and checks every crash
//! state of both logs. A forged first-run ack (the hidden `--forge-prior-ack` test aid) must
//! make the I8 check fail, so the passing run is not a check that cannot fail.
//!
//! Needs root and qemu-system-x86_64; prints "SKIPPED: <reason>" (a failure under CI=true) and returns otherwise.

mod common;

use common::{vm_test_dir, POWERCUT};

use std::path::{Path, PathBuf};
use std::process::Command;

fn workload() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/two-crash.yaml")
}

/// `powercut run two-crash.yaml EXTRA..`: exit code, JSON report, JUnit text, stderr.
fn run(dir: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value, String, String) {
    let json = dir.join("report.json");
    let junit = dir.join("report.xml");
    let output = Command::new(POWERCUT)
        .arg("run")
        .arg(workload())
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let report = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); output:\n{stderr}"));
    (
        output.status.code(),
        serde_json::from_str(&report).unwrap(),
        std::fs::read_to_string(&junit).unwrap_or_default(),
        stderr,
    )
}

#[test]
fn vm_two_crashes_in_a_row_hold_every_invariant() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let (code, report, junit, output) = run(dir.path(), &[]);
    assert_eq!(code, Some(0), "{output}");
    let second = &report["second_crash"];
    let second_states = second["states_checked"].as_u64().unwrap();
    assert!(second_states > 0, "{second}");
    assert_eq!(second["violations"].as_array().unwrap().len(), 0);
    assert_eq!(
        second["guest_prior_violations"].as_array().unwrap().len(),
        0
    );
    // The first run was cut after its 9th durable ack: start plus 9 acks reach the second run.
    assert_eq!(second["killed_after_ack"], 9);
    assert_eq!(second["prior_acks"], 10);
    // 6 single records and two groups of 4 were acked before the cut.
    assert_eq!(second["guest_recovery"]["recovered_records"], 14);
    assert!(second["coverage"]["acks_covered"].as_u64().unwrap() > 0);
    let total = report["states_checked"].as_u64().unwrap();
    assert!(total > second_states, "both logs are counted: {total}");
    assert_eq!(report["violations"].as_array().unwrap().len(), 0);
    assert!(junit.contains("two-crash::I8"), "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");
}

#[test]
fn vm_a_forged_first_run_ack_fails_the_i8_check() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let (code, report, junit, output) = run(
        dir.path(),
        // The budget bounds the whole run (both recordings and both checks): room for two boots.
        &["--forge-prior-ack", "r:999-999:00000000", "--budget", "40s"],
    );
    assert_eq!(code, Some(1), "an I8 violation exits 1:\n{output}");
    let violations = report["violations"].as_array().unwrap();
    assert!(!violations.is_empty());
    // The first log is checked with the real acks only: every finding is I8.
    assert!(
        violations.iter().all(|v| v["invariant"] == "I8"),
        "{violations:?}"
    );
    assert!(
        violations.iter().any(|v| v["expected"]
            .as_str()
            .unwrap()
            .starts_with("I1 after a second crash: records 999..=999")),
        "{violations:?}"
    );
    // The guest saw it too when it rebooted on the crash image.
    let on_reboot = report["second_crash"]["guest_prior_violations"]
        .as_array()
        .unwrap();
    assert!(
        on_reboot
            .iter()
            .any(|v| v["invariant"] == "I1" && v["found"].as_str().unwrap().contains("999")),
        "{on_reboot:?}"
    );
    assert!(junit.contains("violations of I8"), "{junit}");
}
