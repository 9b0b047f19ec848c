//! fsyncgate under QEMU (docs/design.md section 6, invariant I7): `workloads/fsyncgate.yaml` writes the
//! journal buffered with fdatasync, and the guest maps the journal's sectors to the dm error
//! target, so the page-cache write-back fails during fdatasync; Linux marks the pages clean and
//! a retried fdatasync would return 0 with the data gone.
//!
//! - The real engine passes on ext4 and XFS: the failed records are never acknowledged, the
//!   journal refuses every call until reopened (after the fault cleared too), the reopen
//!   recovers exactly the acknowledged records, and every crash state holds them.
//! - A failed group spanning several blocks, then a reopen and more appends: the reopen must
//!   read the device, not the page cache that still holds the failed blocks, or the journal
//!   appends after records the disk never got and the crash states after lose acked records.
//! - Mutant M3 (retry the failed fdatasync, then acknowledge) is caught: acknowledged records
//!   are missing from crash states.
//!
//! Needs root and QEMU (provisioned by `powercut image build`); prints "SKIPPED: <reason>" (a failure under CI=true)
//! otherwise.

mod common;

use common::{run_workload, vm_test_dir, workspace};

use std::path::Path;
use std::process::Output;
use std::sync::Mutex;

/// One failed group of 16 records of 1000 bytes (about 16 KiB: several blocks on ext4 and on
/// XFS) after 16 acknowledged records, then a reopen and appends.
const SPANNING_FAULT: &str = "\
name: fsyncgate-span
description: one failed write-back spanning several blocks, a reopen, more appends
seed: 12
filesystem: ext4
disk_mib: 64
writer:
  durability: fdatasync
  direct_io: false
  segment_bytes: 256KiB
  preallocation: zero
steps:
  - append: { count: 8, size: 96, commit_every: 1 }
  - append: { count: 8, size: 96, commit_every: 4 }
  - fault: { eio: writes, target: journal }
  - append: { count: 16, size: 1000, commit_every: 16 }
  - clear_fault: {}
  - append: { count: 1, size: 96, commit_every: 1 }
  - reopen: {}
  - append: { count: 8, size: 96, commit_every: 1 }
  - append: { count: 8, size: 500, commit_every: 4 }
";

/// One VM at a time: the tests of this file run in parallel threads, and two TCG guests on a
/// small runner only slow each other down towards their timeouts.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn powercut_run(workload: &Path, extra: &[&str], out: &Path) -> (Output, serde_json::Value) {
    let _vm = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (output, json) = run_workload(workload, extra, out);
    let report = std::fs::read(&json)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null);
    (output, report)
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What a run of the real engine must have done: records acknowledged, records whose write-back
/// failed (never acknowledged), calls the poisoned journal refused.
struct Expected {
    acked: u64,
    failed: u64,
    refused: u64,
}

/// The run passed: exit 0, no violation, no guest finding, and the fault really poisoned the
/// journal (records failed, calls refused, exactly as many as the workload makes fail).
/// Returns the number of crash states checked.
fn assert_real_engine_passes(
    label: &str,
    output: &Output,
    report: &serde_json::Value,
    out: &Path,
    expected: Expected,
) -> u64 {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{label}: powercut run failed:\n{}",
        text(output)
    );
    assert_eq!(
        report["violations"].as_array().map(Vec::len),
        Some(0),
        "{label}: {report}"
    );
    assert_eq!(report["coverage"]["acks_uncovered"], 0, "{label}: {report}");
    let states = report["states_checked"].as_u64().unwrap();
    assert!(states > 10, "{label}: {report}");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    assert!(
        console.contains("fault armed: EIO on the journal's segment files"),
        "{label}: no fault armed in {}",
        out.join("console.log").display()
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("record.json")).unwrap()).unwrap();
    assert_eq!(record["end"], "clean", "{label}: {record}");
    let summary = &record["done"]["summary"];
    assert_eq!(summary["findings"], 0, "{label}: {summary}");
    assert_eq!(summary["records"], expected.acked, "{label}: {summary}");
    assert_eq!(
        summary["records_failed"], expected.failed,
        "{label}: {summary}"
    );
    assert_eq!(
        summary["poisoned_refusals"], expected.refused,
        "{label}: {summary}"
    );
    // The acks are exactly LSN 1..=n: no failed record was acknowledged and LSNs continue
    // after the recovered ones.
    let ledger = std::fs::read_to_string(out.join("ledger.jsonl")).unwrap();
    let mut next_lsn = 1;
    for line in ledger.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        if entry["ack"]["kind"] == "records" {
            assert_eq!(entry["ack"]["first_lsn"], next_lsn, "{label}: {line}");
            next_lsn = entry["ack"]["last_lsn"].as_u64().unwrap() + 1;
        }
    }
    assert_eq!(next_lsn - 1, expected.acked, "{label}: {ledger}");
    states
}

#[test]
fn vm_fsyncgate_real_engine_passes_on_ext4_and_xfs() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let workload = workspace().join("workloads/fsyncgate.yaml");
    for filesystem in ["ext4", "xfs"] {
        let out = dir.path().join(filesystem);
        let (output, report) = powercut_run(&workload, &["--filesystem", filesystem], &out);
        // 16 acked before the first fault, 1 failed, refused: the next call, the group of
        // two, the append after the fault cleared; 16 acked after the reopen, a group of 2
        // failed, refused: the next call and the append after the fault cleared itself; 8
        // acked after the second reopen.
        let expected = Expected {
            acked: 40,
            failed: 3,
            refused: 5,
        };
        let label = format!("fsyncgate on {filesystem}");
        let states = assert_real_engine_passes(&label, &output, &report, &out, expected);
        println!("fsyncgate on {filesystem}: {states} states, 40 records acked");
    }
}

#[test]
fn vm_fsyncgate_reopen_reads_the_device_not_the_page_cache() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let workload = dir.path().join("fsyncgate-span.yaml");
    std::fs::write(&workload, SPANNING_FAULT).unwrap();
    let out = dir.path().join("span");
    let (output, report) = powercut_run(&workload, &[], &out);
    // 16 acked before the fault, 16 after the reopen; the 16 failed ones are not among them,
    // and the refused calls are the next call and the append after the fault cleared.
    let expected = Expected {
        acked: 32,
        failed: 16,
        refused: 2,
    };
    let states = assert_real_engine_passes("fsyncgate-span", &output, &report, &out, expected);
    println!("fsyncgate-span: {states} states, 32 records acked");
}

#[test]
fn vm_fsyncgate_mutant_m3_loses_an_acknowledged_record() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let out = dir.path().join("m3");
    let workload = workspace().join("workloads/fsyncgate.yaml");
    let (output, report) = powercut_run(&workload, &["--mutant", "M3"], &out);
    assert_eq!(
        output.status.code(),
        Some(1),
        "M3 must be reported as a violation:\n{}",
        text(&output)
    );
    let violations = report["violations"].as_array().expect("a JSON report");
    assert!(!violations.is_empty(), "{report}");
    // The records M3 acknowledged after the failed fdatasync (LSN 17 first) are missing from
    // the crash states cut right after their acks.
    let lost = violations
        .iter()
        .find(|v| v["invariant"] == "I1")
        .unwrap_or_else(|| panic!("no I1 violation: {report}"));
    assert!(
        lost["found"]
            .as_str()
            .is_some_and(|f| f.starts_with("missing LSN")),
        "{lost}"
    );
    let first = &violations[0];
    println!(
        "M3 on fsyncgate: {} violations, first: {first}",
        violations.len()
    );
}
