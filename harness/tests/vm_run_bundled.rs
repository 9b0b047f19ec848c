//! End to end under QEMU, as a user runs it: `powercut run` on every bundled workload (ext4 and
//! XFS) must check its crash states and find no violation with the real writer; on the smoke
//! recording, `replay --to end` must give the final disk byte for byte, `repro` must rebuild a
//! state offline, and `log inspect --json` must report the contract's keys.
//!
//! Needs root and QEMU (provisioned by `powercut image build`); prints "SKIPPED: <reason>" (a failure under CI=true)
//! otherwise.

mod common;

use common::{assert_clean_report, assert_succeeded, read_json, vm_test_dir, workspace, POWERCUT};

use std::path::Path;
use std::process::{Command, Output};

fn powercut<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(POWERCUT)
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap()
}

fn os(s: &str) -> std::ffi::OsString {
    s.into()
}

/// `powercut run WORKLOAD --json` -> the report, asserting exit 0 and no violation.
fn run_clean(workload: &str, filesystem: Option<&str>, out: &Path) -> serde_json::Value {
    let json = out.with_extension("json");
    let mut args = vec![
        os("run"),
        workspace()
            .join("workloads")
            .join(workload)
            .into_os_string(),
        os("--out"),
        out.as_os_str().to_owned(),
        os("--json"),
        json.as_os_str().to_owned(),
    ];
    if let Some(fs) = filesystem {
        args.extend([os("--filesystem"), os(fs)]);
    }
    let output = powercut(&args);
    assert_succeeded(&output, &format!("powercut run {workload}"));
    let report = read_json(&json);
    assert_clean_report(&report);
    println!(
        "{workload} ({}): {} states checked, {:.1} states/s",
        report["fs"],
        report["states_checked"],
        report["states_per_second"].as_f64().unwrap()
    );
    report
}

#[test]
fn vm_run_every_bundled_workload_holds() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    for workload in [
        "append-dsync.yaml",
        "append-fdatasync.yaml",
        "rotate-recycle.yaml",
        "dir-ops.yaml",
        "ingest-clients.yaml",
        "smoke-xfs.yaml",
    ] {
        let name = workload.trim_end_matches(".yaml");
        run_clean(workload, None, &dir.path().join(name));
        // Every bundled ext4 workload runs on XFS too.
        if workload != "smoke-xfs.yaml" {
            run_clean(
                workload,
                Some("xfs"),
                &dir.path().join(format!("{name}-xfs")),
            );
        }
    }
}

#[test]
fn vm_smoke_run_then_replay_repro_and_inspect() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let out = dir.path().join("smoke");
    let report = run_clean("smoke.yaml", None, &out);
    let log = out.join("log.bin");
    let base = out.join("base.img");

    // The whole log replayed onto the base image is the disk after the clean shutdown.
    let replayed = dir.path().join("replayed.img");
    let output = powercut(&[
        os("replay"),
        log.as_os_str().to_owned(),
        os("--base"),
        base.as_os_str().to_owned(),
        os("--to"),
        os("end"),
        os("-o"),
        replayed.as_os_str().to_owned(),
    ]);
    assert_succeeded(&output, "powercut replay --to end");
    assert!(
        std::fs::read(&replayed).unwrap() == std::fs::read(out.join("final.img")).unwrap(),
        "replay --to end differs from final.img"
    );

    // log inspect: the contract's keys, consistent with the log.
    let output = powercut(&[
        os("log"),
        os("inspect"),
        log.as_os_str().to_owned(),
        os("--json"),
        os("--base"),
        base.as_os_str().to_owned(),
    ]);
    assert_succeeded(&output, "powercut log inspect");
    let stats: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for key in [
        "entries",
        "writes",
        "flushes",
        "fua",
        "discards",
        "marks",
        "data_bytes",
        "epochs",
        "acks_covered",
        "acks_uncovered",
    ] {
        assert!(
            stats.get(key).is_some(),
            "log inspect --json lacks {key}: {stats}"
        );
    }
    assert_eq!(stats["acks_uncovered"], 0);
    assert!(stats["marks"].as_u64().unwrap() >= stats["acks_covered"].as_u64().unwrap());

    // repro: the full-log prefix state, rebuilt offline from its id.
    let state_id = format!(
        "{}-c{}-p",
        report["log_hash"].as_str().unwrap(),
        stats["entries"]
    );
    let output = powercut(&[
        os("repro"),
        os(&state_id),
        os("--log"),
        log.as_os_str().to_owned(),
        os("--base"),
        base.as_os_str().to_owned(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("every invariant held"), "{stdout}");

    // A state id of another log is refused with a clear error (exit 2).
    let output = powercut(&[
        os("repro"),
        os("00000000-c1-p"),
        os("--log"),
        log.as_os_str().to_owned(),
        os("--base"),
        base.as_os_str().to_owned(),
    ]);
    assert_eq!(output.status.code(), Some(2));
}
