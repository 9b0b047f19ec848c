//! Programs under test, end to end under QEMU (`powercut run` on workloads with `exec:` steps):
//! a shell program that fsyncs before it acks holds, one that acks first is caught with a
//! minimal reproducer, one whose fsync meets an injected EIO nacks and holds (and, with the
//! fault on one named file and the program copied in by `guest_files:`, only that file's fsync
//! fails); SQLite (Debian's sqlite3 in the guest, WAL) holds with
//! synchronous=FULL and loses an acknowledged commit with synchronous=OFF, and cut by a power cut
//! and reopened holds on ext4 and XFS; a program cut off by
//! a power cut and run again on the crash image keeps every earlier ack, and one whose restart
//! truncates its log is caught (I8) with a minimal reproducer; a malformed ack
//! line and a checker that crashes are harness errors (exit 2) that say what went wrong.
//!
//! Needs root and QEMU; prints "SKIPPED: <reason>" (a failure under CI=true) otherwise.

mod common;

use common::{assert_clean_report, output_text, read_json, run_workload, vm_test_dir, workspace};

use std::path::Path;

/// Runs a workload of the workspace; returns its exit code, output and JSON report (if any).
fn run(workload: &Path, out: &Path) -> (Option<i32>, String, Option<serde_json::Value>) {
    run_with(workload, &[], out)
}

/// [`run`] with more arguments.
fn run_with(
    workload: &Path,
    extra: &[&str],
    out: &Path,
) -> (Option<i32>, String, Option<serde_json::Value>) {
    let (output, json) = run_workload(workload, extra, out);
    let report = json.exists().then(|| read_json(&json));
    (output.status.code(), output_text(&output), report)
}

fn bundled(name: &str) -> std::path::PathBuf {
    workspace().join("workloads").join(name)
}

/// The output directory of a bundled workload's run under `dir`.
fn out_of(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(name.trim_end_matches(".yaml").replace('/', "-"))
}

fn assert_holds(name: &str, dir: &Path) -> serde_json::Value {
    let (code, text, report) = run(&bundled(name), &out_of(dir, name));
    assert_eq!(code, Some(0), "{name} must hold:\n{text}");
    let report = report.unwrap();
    assert_clean_report(&report);
    assert!(report["states_checked"].as_u64().unwrap() > 10, "{report}");
    println!(
        "{name}: {} states, {:.1} states/s",
        report["states_checked"],
        report["states_per_second"].as_f64().unwrap()
    );
    report
}

fn assert_caught(name: &str, dir: &Path) -> serde_json::Value {
    let (code, text, report) = run(&bundled(name), &out_of(dir, name));
    assert_eq!(code, Some(1), "{name} must be caught:\n{text}");
    let report = report.unwrap();
    let violations = report["violations"].as_array().unwrap();
    assert!(!violations.is_empty());
    assert!(
        violations.iter().all(|v| v["invariant"] == "KV"),
        "{violations:?}"
    );
    assert!(
        violations[0]["found"].as_str().unwrap().contains("missing")
            || violations[0]["found"].as_str().unwrap().contains("holds"),
        "{:?}",
        violations[0]
    );
    assert!(!report["minimal_repro"].is_null(), "{report}");
    report
}

#[test]
fn vm_shell_programs_hold_when_they_fsync_first_and_are_caught_otherwise() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let report = assert_holds("programs/fsync-then-ack.yaml", dir.path());
    assert_eq!(report["coverage"]["acks_uncovered"], 0, "{report}");
    assert_caught("programs/ack-before-fsync.yaml", dir.path());
    // EIO on the program's files: its fsync fails, it nacks, and the states still hold.
    assert_holds("programs/eio-nack.yaml", dir.path());
    // EIO on one named file, from a script of `guest_files:`: only that file's fsync fails
    // (the script exits non-zero otherwise): k1 is nacked, k2 acked again.
    assert_holds("programs/eio-one-file.yaml", dir.path());
    let ledger = std::fs::read_to_string(
        out_of(dir.path(), "programs/eio-one-file.yaml").join("ledger.jsonl"),
    )
    .unwrap();
    let labels: Vec<String> = ledger
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"].to_string())
        .collect();
    let keys: Vec<&str> = labels
        .iter()
        .map(|l| l.trim_matches('"'))
        .filter_map(|l| l.get(..4))
        .collect();
    assert_eq!(
        keys,
        ["s:ei", "k:k1", "k:k2", "n:k1", "k:k2", "e:ei"],
        "{ledger}"
    );
}

#[test]
fn vm_programs_run_again_after_a_power_cut_and_lose_nothing_or_are_caught() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let report = assert_holds("programs/restart-after-cut.yaml", dir.path());
    let second = &report["second_crash"];
    assert_eq!(second["killed_after_ack"], 5, "{second}");
    // start + 5 acks before the cut; the run after it: start, 3 keys, end.
    assert_eq!(second["prior_acks"], 6, "{second}");
    assert_eq!(second["acks"], 5, "{second}");
    assert!(second["states_checked"].as_u64().unwrap() > 10, "{second}");

    let name = "programs/restart-loses-log.yaml";
    let (code, text, report) = run(&bundled(name), &out_of(dir.path(), name));
    assert_eq!(code, Some(1), "{name} must be caught:\n{text}");
    let report = report.unwrap();
    let violations = report["violations"].as_array().unwrap();
    assert!(
        !violations.is_empty()
            && violations.iter().all(|v| v["invariant"] == "I8"
                && v["expected"]
                    .as_str()
                    .unwrap()
                    .starts_with("KV after a second crash")),
        "{violations:?}"
    );
    // Only keys of the first run are lost; the run after the cut keeps its own.
    assert!(
        violations
            .iter()
            .all(|v| ["k:k1:", "k:k2:", "k:k3:", "k:k4:", "k:k5:"]
                .iter()
                .any(|k| v["step"].as_str().unwrap().starts_with(k))),
        "{violations:?}"
    );
    assert_eq!(report["second_crash"]["minimal_repro"]["invariant"], "KV");
    assert!(!report["minimal_repro"].is_null(), "{report}");
    // `repro` of the minimal state of the second log expects the first run's acks too.
    let second = out_of(dir.path(), name).join("after-crash");
    let minimal = report["second_crash"]["minimal_repro"]["minimal"]
        .as_str()
        .unwrap();
    let repro = std::process::Command::new(common::POWERCUT)
        .args(["repro", minimal, "--log"])
        .arg(second.join("log.bin"))
        .arg("--base")
        .arg(second.join("base.img"))
        .arg("--keep")
        .arg(dir.path().join("repro-kept"))
        .output()
        .unwrap();
    let text = output_text(&repro);
    assert_eq!(repro.status.code(), Some(1), "{text}");
    assert!(text.contains("violation  I8 at k:k1:"), "{text}");
    // The HTML page lists the program's invariants and I8, and rebuilds a state of the second
    // log from the second recording.
    let out = out_of(dir.path(), name);
    let page = dir.path().join("restart.html");
    let rendered = std::process::Command::new(common::POWERCUT)
        .arg("report")
        .arg(out.with_extension("json"))
        .arg("--recording")
        .arg(&out)
        .arg("-o")
        .arg(&page)
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", output_text(&rendered));
    let html = std::fs::read_to_string(&page).unwrap();
    for invariant in ["KV", "CHECKER", "I8"] {
        assert!(
            html.contains(&format!("<span class=\"inv\">{invariant}</span>")),
            "{invariant} missing from the invariants table"
        );
    }
    assert!(!html.contains("<span class=\"inv\">I1</span>"));
    assert!(html.contains(&format!("--log {}", second.join("log.bin").display())));

    // A program that fails when run again after the cut does not come back: an I8 finding
    // (RESTART) in `run`, and in `check` of the second recording.
    let text = std::fs::read_to_string(bundled("programs/restart-after-cut.yaml"))
        .unwrap()
        .replace("name: restart-after-cut", "name: restart-fails")
        .replace(
            "          for i in 9 10 11; do",
            "          echo 'log is corrupt' >&2; exit 3\n          for i in 9 10 11; do",
        );
    let failing = dir.path().join("restart-fails.yaml");
    std::fs::write(&failing, text).unwrap();
    let out = dir.path().join("restart-fails");
    let (code, text, report) = run(&failing, &out);
    assert_eq!(code, Some(1), "{text}");
    let restart = |violations: &serde_json::Value| {
        violations.as_array().unwrap().iter().any(|v| {
            v["invariant"] == "I8"
                && v["expected"].as_str().unwrap().starts_with("RESTART")
                && v["found"].as_str().unwrap().contains("log is corrupt")
        })
    };
    assert!(restart(&report.unwrap()["violations"]), "{text}");
    let json = dir.path().join("restart-fails-check.json");
    let check = std::process::Command::new(common::POWERCUT)
        .arg("check")
        .arg(out.join("after-crash"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", output_text(&check));
    assert!(restart(&read_json(&json)["violations"]));
}

#[test]
fn vm_sqlite_full_holds_and_off_loses_an_acknowledged_commit() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    assert_holds("sqlite-full.yaml", dir.path());
    assert_caught("sqlite-off.yaml", dir.path());
    // Cut after 12 commits and reopened (integrity check, 10 more rows), on ext4 and XFS.
    let report = assert_holds("sqlite-restart.yaml", dir.path());
    assert!(report["second_crash"]["states_checked"].as_u64().unwrap() > 10);
    let name = "sqlite-restart.yaml";
    let (code, text, report) = run_with(
        &bundled(name),
        &["--filesystem", "xfs"],
        &out_of(dir.path(), "sqlite-restart-xfs"),
    );
    assert_eq!(code, Some(0), "{name} on XFS must hold:\n{text}");
    let report = report.unwrap();
    assert_clean_report(&report);
    assert_eq!(report["fs"], "xfs");
    assert!(report["second_crash"]["states_checked"].as_u64().unwrap() > 10);
}

/// A workload written for the test: a program and a checker.
fn write_workload(dir: &Path, name: &str, script: &str, checker: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let text = format!(
        "name: {name}\nsteps:\n  - exec: {{ argv: [sh, -c, {script:?}], timeout: 30s }}\nchecker: {checker}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn vm_malformed_ack_lines_and_crashing_checkers_are_harness_errors() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let kv = "{ kv: { dump: [sh, -c, 'cat k1 2>/dev/null | sed s/^/k1\\ /; true'] } }";
    let malformed = write_workload(
        dir.path(),
        "malformed",
        "echo x > k1; sync k1; sync .; echo 'ack k1 x' >&$POWERCUT_ACK_FD; echo 'ack k2' >&$POWERCUT_ACK_FD",
        kv,
    );
    let (code, text, _) = run(&malformed, &dir.path().join("malformed"));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("malformed ack line 2") && text.contains("ack k2"),
        "{text}"
    );

    let crashing = write_workload(
        dir.path(),
        "crashing-checker",
        "echo x > k1; sync k1; sync .; echo 'ack k1 x' >&$POWERCUT_ACK_FD",
        "{ command: [sh, -c, 'cat > /dev/null; echo checker broke >&2; exit 2'] }",
    );
    let (code, text, _) = run(&crashing, &dir.path().join("crashing"));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("exit status 2") && text.contains("checker broke"),
        "{text}"
    );
}
