//! The CLI against a careless or hostile user, without a VM: outputs that are inputs, shard sets
//! that do not cover a run, checks that checked nothing, report paths that cannot be written,
//! labels with terminal escapes, a FIFO given as a log.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{output_text, workspace, POWERCUT};
use powercut_oracles::blocklog::{LogWriter, FLAG_MARK};
use powercut_oracles::report::Report;

/// Runs `command` to its end and returns what it wrote; panics saying `what` hung if it runs
/// longer than 30 s (it is killed first).
fn output_unless_hung(command: &mut Command, what: &str) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn powercut<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(POWERCUT).args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `output` is of an exit with `code` whose stderr says `said`.
#[track_caller]
fn assert_exits_saying(output: &Output, code: i32, said: &str) {
    assert_eq!(output.status.code(), Some(code), "{}", output_text(output));
    assert!(stderr(output).contains(said), "{}", output_text(output));
}

/// A small block log: a write and a flush (no ack: nothing for the coverage pass to mount).
fn small_log(path: &Path) {
    let mut w = LogWriter::create(path, 512).unwrap();
    w.write(0, &[5u8; 512], 0).unwrap();
    w.flush().unwrap();
    w.finish(None, 0).unwrap();
}

#[test]
fn replay_refuses_an_output_that_is_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("log.bin");
    let base = d.join("base.img");
    small_log(&log);
    std::fs::write(&base, vec![9u8; 8192]).unwrap();
    std::fs::hard_link(&base, d.join("base-link.img")).unwrap();
    std::os::unix::fs::symlink(&log, d.join("log-symlink")).unwrap();
    let log_bytes = std::fs::read(&log).unwrap();
    let base_bytes = std::fs::read(&base).unwrap();
    let replay = |out: &Path| {
        powercut(&[
            "replay".as_ref(),
            log.as_os_str(),
            "--base".as_ref(),
            base.as_os_str(),
            "--to".as_ref(),
            "end".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
        ])
    };
    for (out, input) in [
        (base.clone(), &base),
        (log.clone(), &log),
        (d.join("base-link.img"), &base),
        (d.join("log-symlink"), &log),
        (d.join(".").join("base.img"), &base),
    ] {
        let output = replay(&out);
        assert_eq!(
            output.status.code(),
            Some(2),
            "-o {}: {}",
            out.display(),
            output_text(&output)
        );
        let err = stderr(&output);
        assert!(
            err.contains(&out.display().to_string())
                && err.contains(&input.display().to_string())
                && err.contains("same file"),
            "the message names both files: {err}"
        );
        assert_eq!(std::fs::read(&log).unwrap(), log_bytes, "log untouched");
        assert_eq!(std::fs::read(&base).unwrap(), base_bytes, "base untouched");
    }
    // A distinct output is written: the refusals above are not a replay that always fails.
    let fresh = d.join("out.img");
    let output = replay(&fresh);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    let replayed = std::fs::read(&fresh).unwrap();
    assert_eq!(&replayed[..512], &[5u8; 512][..]);
}

fn shard_report(shard: Option<&str>, checked: u64, total: u64) -> Report {
    Report {
        seed: 7,
        workload: "smoke".into(),
        fs: "ext4".into(),
        log_hash: "0badcafe".into(),
        enumeration_seed: 7,
        shard: shard.map(str::to_string),
        states_total: total,
        states_checked: checked,
        duplicates_skipped: 0,
        states_from_coverage: 0,
        states_by_kind: [("prefix".to_string(), checked)].into(),
        states_per_second: 1.0,
        elapsed_seconds: 1.0,
        mid_log_probes: 0,
        violations: Vec::new(),
        coverage: None,
        budget_exhausted: checked < total,
        minimal_repro: None,
        image_copies: None,
        phases: Vec::new(),
        time_split: None,
    }
}

fn write_report(dir: &Path, name: &str, report: &Report) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(report).unwrap()).unwrap();
    path
}

/// Writes a.json, shard 0/2 checking all of its 5 states, and b.json, shard 1/2 checking
/// `checked` of `total`.
fn two_shard_reports(dir: &Path, checked: u64, total: u64) -> (PathBuf, PathBuf) {
    let a = write_report(dir, "a.json", &shard_report(Some("0/2"), 5, 5));
    let b = write_report(dir, "b.json", &shard_report(Some("1/2"), checked, total));
    (a, b)
}

fn merge(args: &[&Path]) -> Output {
    let mut all: Vec<&std::ffi::OsStr> = vec!["merge".as_ref()];
    all.extend(args.iter().map(|p| p.as_os_str()));
    powercut(&all)
}

#[test]
fn merge_refuses_missing_and_duplicated_shards() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let shards: Vec<PathBuf> = (0..4)
        .map(|k| {
            let shard = format!("{k}/4");
            write_report(d, &format!("s{k}.json"), &shard_report(Some(&shard), 5, 5))
        })
        .collect();

    // One shard of four alone.
    let output = merge(&[&shards[1]]);
    assert_exits_saying(&output, 2, "missing 0/4, 2/4, 3/4");
    // The same shard four times.
    let s0 = shards[0].as_path();
    let output = merge(&[s0, s0, s0, s0]);
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
    let err = stderr(&output);
    assert!(
        err.contains("missing 1/4, 2/4, 3/4") && err.contains("given more than once 0/4"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("all invariants held"));
    // A whole run's report among shards.
    let whole = write_report(d, "whole.json", &shard_report(None, 5, 5));
    let output = merge(&[&whole, &shards[0]]);
    assert_exits_saying(&output, 2, "is not a shard");

    // Every shard once passes; alone, a whole run's report passes as it is.
    let refs: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
    let output = merge(&refs);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("all invariants held"));
    let output = merge(&[&whole]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
}

#[test]
fn merge_of_a_shard_whose_budget_ran_out_is_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_shard_reports(dir.path(), 0, 6);
    let output = merge(&[&a, &b]);
    assert_eq!(output.status.code(), Some(4), "{}", output_text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("all invariants held"), "{stdout}");
    assert!(
        stdout.contains("INCOMPLETE: 6 of 11 crash states were not checked (the budget ran out)"),
        "{stdout}"
    );
    // A violation still wins over incompleteness.
    let mut failing = shard_report(Some("0/2"), 5, 5);
    failing
        .violations
        .push(powercut_oracles::invariants::Violation {
            invariant: "I1".into(),
            state_id: "0badcafe-c3-p".into(),
            seed: 7,
            step: None,
            expected: "records 1..=2".into(),
            found: "missing LSN 2".into(),
        });
    let a = write_report(dir.path(), "a.json", &failing);
    let output = merge(&[&a, &b]);
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
}

#[test]
fn merge_refuses_an_output_that_is_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_shard_reports(dir.path(), 5, 5);
    let a_bytes = std::fs::read(&a).unwrap();
    let b_bytes = std::fs::read(&b).unwrap();
    for flag in ["-o", "--junit"] {
        for input in [&a, &b] {
            let output = merge(&[&a, &b, Path::new(flag), input]);
            let said = format!("same file as the shard report {}", input.display());
            assert_exits_saying(&output, 2, &said);
            assert_eq!(std::fs::read(&a).unwrap(), a_bytes);
            assert_eq!(std::fs::read(&b).unwrap(), b_bytes);
        }
    }
    let merged = dir.path().join("merged.json");
    let output = merge(&[&a, &b, Path::new("-o"), &merged]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    let back: Report = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    assert_eq!(back.states_checked, 10);
}

#[test]
fn sim_and_shrink_refuse_to_write_over_their_workload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let workload = d.join("minimal.yaml");
    std::fs::copy(workspace().join("workloads/smoke.yaml"), &workload).unwrap();
    let before = std::fs::read(&workload).unwrap();
    let output = powercut(&[
        "sim".as_ref(),
        workload.as_os_str(),
        "--json".as_ref(),
        workload.as_os_str(),
    ]);
    assert_exits_saying(&output, 2, "same file as the workload");
    // Shrinking a minimal workload into the directory it came from would overwrite it.
    let output = powercut(&[
        "shrink".as_ref(),
        workload.as_os_str(),
        "--tier".as_ref(),
        "sim".as_ref(),
        "--out".as_ref(),
        d.as_os_str(),
    ]);
    assert_exits_saying(&output, 2, "minimal.yaml of the shrink output (--out)");
    assert_eq!(std::fs::read(&workload).unwrap(), before);
}

#[test]
fn workload_check_without_files_is_a_usage_error() {
    let output = powercut(&["workload", "check"]);
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
    let output = powercut(&[
        "workload".as_ref(),
        "check".as_ref(),
        workspace().join("workloads/smoke.yaml").as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
}

#[test]
fn help_documents_every_exit_code() {
    let output = powercut(&["--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for code in [
        "0 every invariant held",
        "1 an invariant was violated",
        "2 the harness itself failed",
        "3 skipped",
        "4 incomplete",
    ] {
        assert!(help.contains(code), "{code:?} not in:\n{help}");
    }
}

/// A recording as `record` leaves it, from a crafted log over `base`.
fn recording(dir: &Path, base: &[u8]) -> PathBuf {
    let rec = dir.join("rec");
    std::fs::create_dir(&rec).unwrap();
    small_log(&rec.join("log.bin"));
    std::fs::write(rec.join("base.img"), base).unwrap();
    let workload =
        powercut_workloads::spec::load(&workspace().join("workloads/smoke.yaml")).unwrap();
    std::fs::write(rec.join("workload.json"), workload.to_json()).unwrap();
    rec
}

#[test]
fn check_refuses_unwritable_report_paths_before_checking() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), &[0u8; 65536]);
    let log_bytes = std::fs::read(rec.join("log.bin")).unwrap();
    let check = |flag: &str, path: &Path| {
        powercut(&[
            "check".as_ref(),
            rec.as_os_str(),
            flag.as_ref(),
            path.as_os_str(),
        ])
    };
    for (flag, path, why) in [
        (
            "--json",
            dir.path().join("no-such-dir/r.json"),
            "does not exist",
        ),
        ("--junit", dir.path().to_path_buf(), "is a directory"),
        (
            "--json",
            rec.join("log.bin"),
            "same file as log.bin of the recording",
        ),
        (
            "--junit",
            rec.join("workload.json"),
            "same file as workload.json of the recording",
        ),
    ] {
        let output = check(flag, &path);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flag} {}: {}",
            path.display(),
            output_text(&output)
        );
        let err = stderr(&output);
        assert!(err.contains(why), "{why:?} not in {err}");
        assert!(
            !err.contains("checking crash states"),
            "checked before refusing: {err}"
        );
        assert!(!rec.join("violations").exists());
    }
    assert_eq!(std::fs::read(rec.join("log.bin")).unwrap(), log_bytes);
}

#[test]
fn check_with_no_budget_left_is_incomplete_not_a_pass() {
    // The check mounts nothing with a budget of zero, but it refuses to start without mounts.
    let mounts = powercut_oracles::mount::can_mount().map_err(|e| e.to_string());
    if !powercut_writer::capability::runnable(mounts) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-F", "-q"])
        .arg(&image)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("mkfs.ext4: {e}"))
        .and_then(|s| s.success().then_some(()).ok_or(format!("mkfs.ext4: {s}")));
    if !powercut_writer::capability::runnable(mkfs) {
        return;
    }
    let rec = recording(dir.path(), &std::fs::read(&image).unwrap());
    let json = dir.path().join("report.json");
    let output = powercut(&[
        "check".as_ref(),
        rec.as_os_str(),
        "--budget".as_ref(),
        "0".as_ref(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(4), "{}", output_text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("all invariants held"), "{stdout}");
    assert!(stdout.contains("INCOMPLETE: none of the"), "{stdout}");
    assert!(
        stderr(&output).contains("powercut: incomplete:"),
        "{}",
        output_text(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["states_checked"], 0, "{report}");
    assert!(report["states_total"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn log_inspect_escapes_labels_and_says_why_the_scan_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.bin");
    let hostile = "s:x\x1b[2J\x1b]0;pwned\x07";
    let mut w = LogWriter::create(&log, 512).unwrap();
    w.write(8, &[1u8; 512], 0).unwrap();
    w.raw_entry(0, 0, FLAG_MARK, hostile.as_bytes(), &[])
        .unwrap();
    w.flush().unwrap();
    w.write(9, &[2u8; 512], 0).unwrap();
    // The super says 2 entries (as a killed recorder leaves it); zeros end the scan.
    w.finish(Some(2), 4).unwrap();

    let inspect = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["log".as_ref(), "inspect".as_ref(), log.as_os_str()];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        powercut(&args)
    };
    let output = inspect(&["--list"]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    assert!(
        !output.stdout.contains(&0x1b) && !output.stdout.contains(&0x07),
        "{}",
        output_text(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(r"mark s:x\x1b[2J\x1b]0;pwned\x07"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 past the super's nr_entries; the scan stopped at a zero header"),
        "{stdout}"
    );

    let output = inspect(&["--list", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", output_text(&output)));
    assert_eq!(doc["entries"], 4, "{doc}");
    assert_eq!(doc["marks"], 1, "{doc}");
    assert_eq!(doc["entries_past_nr_entries"], 2, "{doc}");
    assert_eq!(doc["scan_end"], "zero_header", "{doc}");
    let list = doc["list"].as_array().unwrap();
    assert_eq!(list.len(), 4, "{doc}");
    assert_eq!(
        list[1]["mark"], hostile,
        "JSON keeps the label, escaped as JSON"
    );
    assert_eq!(list[2]["flags"], "FLUSH");

    // Past nr_entries, a header with unknown flags ends the scan; say so.
    let mut bytes = std::fs::read(&log).unwrap();
    let next_header = 512 + 2 * 512 + 512 + 512 + 2 * 512;
    bytes[next_header..next_header + 8].copy_from_slice(&1u64.to_le_bytes());
    bytes[next_header + 16..next_header + 24].copy_from_slice(&0x400u64.to_le_bytes());
    std::fs::write(&log, &bytes).unwrap();
    let output = inspect(&[]);
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("the scan stopped at a header with invalid flags"),
        "{}",
        output_text(&output)
    );
    let output = inspect(&["--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["scan_end"], "invalid_flags", "{doc}");
    assert!(doc.get("list").is_none(), "{doc}");

    // Without the trailing zeros the file ends after the last entry.
    std::fs::write(&log, &bytes[..next_header]).unwrap();
    let output = inspect(&[]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("the scan stopped at the end of the file"),
        "{}",
        output_text(&output)
    );
}

#[test]
fn log_inspect_of_a_fifo_fails_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let output = output_unless_hung(
        Command::new(POWERCUT).args(["log", "inspect"]).arg(&fifo),
        "powercut log inspect of a FIFO",
    );
    assert_exits_saying(&output, 2, "is a FIFO");
}

#[test]
fn replay_onto_a_fifo_base_fails_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.bin");
    small_log(&log);
    let fifo = dir.path().join("base-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let output = output_unless_hung(
        Command::new(POWERCUT)
            .arg("replay")
            .arg(&log)
            .arg("--base")
            .arg(&fifo)
            .args(["--to", "end", "-o"])
            .arg(dir.path().join("out.img")),
        "powercut replay onto a FIFO base",
    );
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
    assert!(
        stderr(&output).contains("base-fifo") && stderr(&output).contains("not a regular file"),
        "{}",
        output_text(&output)
    );
}

#[test]
fn sim_stops_at_its_budget_with_progress_and_says_it_is_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("long.yaml");
    std::fs::write(
        &workload,
        "name: long\nseed: 7\nwriter: { groups_in_flight: 8 }\nsteps:\n  - ingest: { clients: 8, \
         records_per_client: 120, size: 100 }\n",
    )
    .unwrap();
    let started = Instant::now();
    let output = Command::new(POWERCUT)
        .arg("sim")
        .arg(&workload)
        .args(["--budget", "2s"])
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the budget did not stop it"
    );
    assert_eq!(output.status.code(), Some(4), "{}", output_text(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("sim: step 0/1,"), "{err}");
    assert!(err.contains("incomplete"), "{err}");
}

#[test]
fn a_program_as_root_needs_the_command_line_flag_too() {
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("root.yaml");
    std::fs::write(
        &workload,
        "name: as-root\nallow_root_exec: true\nsteps:\n  - exec: { argv: [true], user: root }\n\
         checker: { command: [true] }\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    for command in ["run", "record"] {
        let output = output_unless_hung(
            Command::new(POWERCUT)
                .arg(command)
                .arg(&workload)
                .arg("--out")
                .arg(&out),
            "a root program without --allow-root-exec",
        );
        assert_exits_saying(&output, 2, "steps[0].exec.user");
        assert!(stderr(&output).contains("--allow-root-exec"));
        assert!(!out.join("log.bin").exists(), "nothing was recorded");
    }
}
