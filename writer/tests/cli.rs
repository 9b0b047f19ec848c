//! The `powercut-writer` binary: flag errors exit 2, recover prints text and JSON, bench
//! prints the JSON fields others rely on.

mod common;

use std::process::Command;

use common::*;
use powercut_writer::Journal;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_powercut-writer"))
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["recover"],
        vec!["recover", "--dir"],
        vec!["recover", "--dir", "/x", "--bogus"],
        vec![
            "bench",
            "--dir",
            "/x",
            "--mode",
            "sometimes",
            "--record-bytes",
            "1",
            "--clients",
            "1",
            "--seconds",
            "1",
        ],
        vec![
            "bench",
            "--dir",
            "/x",
            "--mode",
            "dsync",
            "--record-bytes",
            "ten",
            "--clients",
            "1",
            "--seconds",
            "1",
        ],
        vec![
            "bench",
            "--dir",
            "/x",
            "--mode",
            "dsync",
            "--record-bytes",
            "1",
            "--clients",
            "0",
            "--seconds",
            "1",
        ],
        vec![
            "bench",
            "--dir",
            "/x",
            "--mode",
            "dsync",
            "--record-bytes",
            "1",
            "--clients",
            "1",
            "--seconds",
            "1",
            "--groups-in-flight",
            "9",
        ],
    ] {
        let output = binary().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty());
    }
}

#[test]
fn recover_prints_text_and_json() {
    let dir = scratch();
    let (journal, _) = Journal::open(dir.path(), small_options()).unwrap();
    for lsn in 1..=7 {
        journal.append_durable(&payload(lsn, 10)).unwrap();
    }
    journal.close().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let text = binary()
        .args(["recover", "--dir", dir_arg])
        .output()
        .unwrap();
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("records: 7 (LSN 1..=7)"));
    let json = binary()
        .args(["recover", "--dir", dir_arg, "--json"])
        .output()
        .unwrap();
    assert!(json.status.success());
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(
        json.contains("\"records\":7") && json.contains("\"truncated_tail\":null"),
        "{json}"
    );
    // Corruption is a failure (exit 1) naming segment and offset.
    let path = segment_file(dir.path(), 1);
    write_bytes(&path, 40, &[0xff]);
    let failed = binary()
        .args(["recover", "--dir", dir_arg])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr)
        .contains("mid-log corruption in segment 1 at offset 0"));
}

#[test]
fn bench_prints_the_json_fields() {
    let dir = scratch();
    let output = binary()
        .args([
            "bench",
            "--dir",
            dir.path().join("j").to_str().unwrap(),
            "--mode",
            "fdatasync",
            "--record-bytes",
            "512",
            "--clients",
            "4",
            "--seconds",
            "1",
            "--json",
            "--segment-bytes",
            "1048576",
            "--groups-in-flight",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = String::from_utf8_lossy(&output.stdout);
    for field in [
        "max_group_records",
        "mean_group_write_us",
        "records_per_second",
        "mib_per_second",
        "p50_us",
        "p99_us",
        "p999_us",
    ] {
        assert!(
            json.contains(&format!("\"{field}\":")),
            "{field} missing: {json}"
        );
    }
    assert!(json.contains("\"mode\":\"fdatasync\""));
    assert!(json.contains("\"io_path\":\"io_uring\"") || json.contains("\"io_path\":\"fallback\""));
    assert_eq!(json.trim().lines().count(), 1);
}
