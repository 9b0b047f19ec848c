//! EIO injection under QEMU (invariant I7): `powercut run workloads/eio-journal.yaml` maps the
//! journal's sectors to the dm error target in the middle of the run. On ext4 and XFS the run
//! must pass (no crash-state violation, no I7 finding of the guest), the poisoning must have
//! happened (records that failed, calls refused, fewer records acked than the workload asks),
//! and replaying the whole block log must give the final disk byte for byte: the fault layer
//! sits above dm-log-writes, so a failed write is in no crash state.
//!
//! Needs root and QEMU (provisioned by `powercut image build`); prints "SKIPPED: <reason>"
//! otherwise.

mod common;
use common::{image_ready, workspace, POWERCUT};

use std::path::Path;
use std::process::Command;

/// Records the steps of eio-journal.yaml ask for, failed ones included.
const WORKLOAD_RECORDS: u64 = 54;

fn run_eio_journal(filesystem: &str, out: &Path) {
    let json = out.with_extension("json");
    let output = Command::new(POWERCUT)
        .arg("run")
        .arg(workspace().join("workloads/eio-journal.yaml"))
        .args(["--filesystem", filesystem, "--out"])
        .arg(out)
        .arg("--json")
        .arg(&json)
        .current_dir(workspace())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "powercut run eio-journal on {filesystem} failed:\n{stdout}\n{stderr}"
    );
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    assert!(
        console.contains("fault armed: EIO on the journal's segment files"),
        "no fault armed in {}",
        out.join("console.log").display()
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        report["violations"].as_array().unwrap().len(),
        0,
        "{report}"
    );
    assert!(report["states_checked"].as_u64().unwrap() > 10, "{report}");
    assert_eq!(report["coverage"]["acks_uncovered"], 0, "{report}");

    // The poisoning happened: a write failed, the journal refused the calls after it, and the
    // acked records are exactly LSN 1..=n with n below what the workload asked for.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("record.json")).unwrap()).unwrap();
    let summary = &record["done"]["summary"];
    assert_eq!(record["end"], "clean", "{record}");
    assert!(
        summary["records_failed"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert!(
        summary["poisoned_refusals"].as_u64().unwrap() >= 2,
        "{summary}"
    );
    assert_eq!(summary["findings"], 0, "{summary}");
    let ledger = std::fs::read_to_string(out.join("ledger.jsonl")).unwrap();
    let mut next_lsn = 1;
    for line in ledger.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        if entry["ack"]["kind"] == "records" {
            assert_eq!(entry["ack"]["first_lsn"], next_lsn, "{line}");
            next_lsn = entry["ack"]["last_lsn"].as_u64().unwrap() + 1;
        }
    }
    let acked_records = next_lsn - 1;
    assert_eq!(
        Some(acked_records),
        summary["records"].as_u64(),
        "{summary}"
    );
    assert!(
        acked_records < WORKLOAD_RECORDS,
        "{acked_records} records acked"
    );

    // A failed write never reaches the log: the replayed log is the final disk.
    let replayed = out.join("replayed.img");
    let output = Command::new(POWERCUT)
        .arg("replay")
        .arg(out.join("log.bin"))
        .arg("--base")
        .arg(out.join("base.img"))
        .args(["--to", "end", "-o"])
        .arg(&replayed)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let same = std::fs::read(&replayed).unwrap() == std::fs::read(out.join("final.img")).unwrap();
    assert!(same, "replayed log differs from final.img on {filesystem}");
    println!(
        "eio-journal on {filesystem}: {} states, {acked_records} records acked, {} failed, {} \
         refused",
        report["states_checked"], summary["records_failed"], summary["poisoned_refusals"]
    );
}

#[test]
fn eio_on_the_journal_poisons_it_and_never_reaches_the_disk() {
    if let Err(reason) = image_ready() {
        println!("SKIPPED: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run_eio_journal("ext4", &dir.path().join("ext4"));
    run_eio_journal("xfs", &dir.path().join("xfs"));
}
