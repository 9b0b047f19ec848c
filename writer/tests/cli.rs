//! The `powercut-writer` binary: flag errors exit 2, recover prints text and JSON, bench
//! prints the JSON fields others rely on.

mod common;

use std::process::Command;

use common::*;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_powercut-writer"))
}

/// `bench --dir DIR --mode MODE --record-bytes BYTES --clients N --seconds 1`, then `extra`.
fn bench_args<'a>(
    dir: &'a str,
    mode: &'a str,
    record_bytes: &'a str,
    clients: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "bench",
        "--dir",
        dir,
        "--mode",
        mode,
        "--record-bytes",
        record_bytes,
        "--clients",
        clients,
        "--seconds",
        "1",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["recover"],
        vec!["recover", "--dir"],
        vec!["recover", "--dir", "/x", "--bogus"],
        bench_args("/x", "sometimes", "1", "1", &[]),
        bench_args("/x", "dsync", "ten", "1", &[]),
        bench_args("/x", "dsync", "1", "0", &[]),
        bench_args("/x", "dsync", "1", "1", &["--groups-in-flight", "9"]),
    ] {
        let output = binary().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty());
    }
}

#[test]
fn recover_prints_text_and_json() {
    let dir = scratch();
    small_journal_of(dir.path(), 7);
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
        .args(bench_args(
            dir.path().join("j").to_str().unwrap(),
            "fdatasync",
            "512",
            "4",
            &[
                "--json",
                "--segment-bytes",
                "1048576",
                "--groups-in-flight",
                "2",
            ],
        ))
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

#[test]
fn zero_timeouts_are_usage_errors() {
    for flag in ["--idle-timeout-seconds", "--frame-timeout-seconds"] {
        // An address that cannot be bound: were the flag accepted, serve would fail (exit 1)
        // rather than run forever.
        let output = binary()
            .args(["serve", "--dir", "/nonexistent/journal"])
            .args(["--listen", "256.0.0.1:1", flag, "0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} must be positive")),
            "{stderr}"
        );
    }
}

#[test]
fn recover_of_a_missing_directory_fails_naming_it() {
    let dir = scratch();
    let missing = dir.path().join("no-such-journal");
    let output = binary()
        .args(["recover", "--dir", missing.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("records:"));
    // A file is not a journal directory either.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let output = binary()
        .args(["recover", "--dir", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a directory"));
}

#[test]
fn flag_value_that_is_a_flag_is_a_usage_error_naming_the_flag() {
    let bench = |args: &[&'static str]| bench_args("/nonexistent/bench", "dsync", "1", "1", args);
    for (args, flag) in [
        (vec!["recover", "--dir", "--json"], "--dir"),
        (vec!["serve", "--dir", "--listen", "127.0.0.1:0"], "--dir"),
        (
            vec!["serve", "--dir", "/x", "--listen", "--mode"],
            "--listen",
        ),
        (vec!["serve", "--dir", "/x", "--mode", "--dir"], "--mode"),
        (
            vec!["serve", "--dir", "/x", "--idle-timeout-seconds", "--json"],
            "--idle-timeout-seconds",
        ),
        (
            vec!["serve", "--dir", "/x", "--frame-timeout-seconds", "--x"],
            "--frame-timeout-seconds",
        ),
        (
            vec!["serve", "--dir", "/x", "--max-connections", "--"],
            "--max-connections",
        ),
        (bench(&["--segment-bytes", "--json"]), "--segment-bytes"),
        (bench(&["--io-path", "--keep-segments"]), "--io-path"),
        (
            vec!["bench", "--dir", "--mode", "dsync", "--seconds", "1"],
            "--dir",
        ),
    ] {
        let output = binary().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} needs a value")),
            "{args:?}: {stderr}"
        );
    }
}
