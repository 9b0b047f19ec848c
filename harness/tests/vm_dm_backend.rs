//! `powercut record --backend dm`, tested inside the guest (this machine's kernel has no
//! device-mapper): `--backend dm-in-guest` boots the guest with the static powercut on a work
//! disk and copies the recording back, with `guest.json` saying what the runs left behind.
//!
//! * equivalence: for a deterministic workload the qemu and dm backends give the same ack marks,
//!   and the state at every mark recovers the same records; the dm recording checks clean;
//! * a run interrupted (SIGINT) midway tears its stack down; one SIGKILLed midway leaves it,
//!   and the next run removes it and records;
//! * a named device that is mounted is refused; a power cut on named devices, its continuation (the reboot of the two-crash check, from
//!   the log replayed to the cut), and a run stopped midway by `--timeout`: the recordings
//!   check clean and nothing is left behind (no dm table, mount or loop device);
//! * `powercut run` on XFS: with a power cut, the whole two-crash check (the continuation
//!   recorded in a second guest on the crash image, I8) passes; with EIO fault steps (the fault
//!   layer's table swapped midway) the faults fire and the log checks clean.
//!
//! Needs root, QEMU and the musl target (for the static powercut); prints "SKIPPED: <reason>"
//! and returns otherwise (fails under CI=true).

mod common;

use common::{
    assert_clean_report, assert_succeeded, ledger_labels, output_text, read_json, run_workload,
    vm_test_dir, POWERCUT,
};

use std::path::Path;
use std::process::{Command, Output};

use powercut_oracles::blocklog::BlockLog;
use powercut_oracles::mount::{with_mounted, FsType};
use powercut_oracles::replay::Replayer;

fn musl_ready() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o) if !String::from_utf8_lossy(&o.stdout).contains("x86_64-unknown-linux-musl") => {
            Err("the x86_64-unknown-linux-musl target is not installed (static powercut)".into())
        }
        _ => Ok(()),
    }
}

/// A temporary directory when the guest image builds and the static powercut can be built.
fn dm_test_dir() -> Option<tempfile::TempDir> {
    let dir = vm_test_dir()?;
    powercut_writer::capability::runnable(musl_ready()).then_some(dir)
}

/// A single-threaded workload: its acks and the records behind each are the same on every run.
fn deterministic_yaml(name: &str, count: u32, extra: &str) -> String {
    format!(
        "name: {name}\nseed: 5\nfilesystem: ext4\ndisk_mib: 64\nlog_mib: 128\n\
         writer: {{segment_bytes: 1MiB}}\nsteps:\n\
         \x20 - append: {{count: {count}, size: [100, 5000], commit_every: 3}}\n\
         \x20 - file: {{op: create, path: d/a.txt, size: 3000, fsync_file: true, fsync_dir: true}}\n\
         \x20 - rotate: {{}}\n\
         \x20 - append: {{count: 8, size: 4096}}\n{extra}"
    )
}

fn record(yaml: &str, out: &Path, extra: &[&str]) -> Output {
    let spec = out.with_extension("yaml");
    std::fs::write(&spec, yaml).unwrap();
    Command::new(POWERCUT)
        .arg("record")
        .arg(&spec)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Asserts that the guest's runs left no dm device, mount or loop device.
fn assert_nothing_left(out: &Path) -> serde_json::Value {
    let guest = read_json(&out.join("guest.json"));
    for what in ["dm_devices", "mounts", "loop_devices"] {
        assert_eq!(
            guest["leftovers"][what],
            serde_json::json!([]),
            "{what} left behind: {guest}"
        );
    }
    guest
}

/// For every ack mark of the log in `out`: its label and the records (LSN, CRC-32C of the
/// payload) the engine's recovery finds in the state just before the mark.
fn states_at_marks(out: &Path, scratch: &Path) -> Vec<(String, Vec<(u64, u32)>)> {
    let log = BlockLog::open(&out.join("log.bin")).unwrap();
    let image = scratch.join("replay.img");
    std::fs::copy(out.join("base.img"), &image).unwrap();
    let mut replayer = Replayer::new(&log, &image).unwrap();
    let state = scratch.join("state.img");
    let mut found = Vec::new();
    for entry in log.entries() {
        let Some(label) = entry.mark.clone() else {
            continue;
        };
        if label == "dm-log-writes-end" {
            continue;
        }
        replayer.advance_to(entry.index).unwrap();
        std::fs::copy(&image, &state).unwrap();
        let records = with_mounted(&state, FsType::Ext4, &scratch.join("mnt"), |root| {
            let journal = root.join("pc/journal");
            if !journal.exists() {
                return Vec::new();
            }
            powercut_writer::recover(&journal)
                .unwrap_or_else(|e| panic!("recovery at mark {label}: {e}"))
                .records
                .iter()
                .map(|r| (r.lsn, crc32c::crc32c(&r.payload)))
                .collect()
        })
        .unwrap();
        found.push((label, records));
    }
    found
}

#[test]
fn vm_dm_backend_records_what_the_qemu_backend_records() {
    let Some(dir) = dm_test_dir() else {
        return;
    };
    let yaml = deterministic_yaml("same", 30, "");
    let qemu = dir.path().join("qemu");
    let dm = dir.path().join("dm");
    assert_succeeded(&record(&yaml, &qemu, &[]), "record --backend qemu");
    let output = record(&yaml, &dm, &["--backend", "dm-in-guest"]);
    assert_succeeded(&output, "record --backend dm (in the guest)");
    assert_nothing_left(&dm);
    let summary = read_json(&dm.join("record.json"));
    assert_eq!(summary["end"], "clean", "{summary}");
    assert_eq!(summary["image_key"], "dm-backend", "{summary}");
    // start + 10 groups + 1 file + 8 records + end, as on the qemu backend.
    assert_eq!(summary["acks"], 21, "{summary}");
    assert_eq!(ledger_labels(&dm), ledger_labels(&qemu));
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let on_dm = states_at_marks(&dm, &scratch);
    let on_qemu = states_at_marks(&qemu, &scratch);
    let labels: Vec<&String> = on_dm.iter().map(|(l, _)| l).collect();
    assert_eq!(labels, ledger_labels(&dm).iter().collect::<Vec<_>>());
    assert_eq!(on_dm, on_qemu, "the states at the marks differ");
    assert!(
        on_dm.last().is_some_and(|(_, records)| records.len() == 38),
        "the last state should hold every record: {:?}",
        on_dm.last()
    );
    let check = Command::new(POWERCUT)
        .arg("check")
        .arg(&dm)
        .output()
        .unwrap();
    assert_succeeded(&check, "check of the dm recording");
}

#[test]
fn vm_dm_backend_tears_down_on_sigint_and_cleans_up_after_sigkill() {
    let Some(dir) = dm_test_dir() else {
        return;
    };
    let out = dir.path().join("killed");
    let yaml = deterministic_yaml("killed", 300, "");
    let output = record(
        &yaml,
        &out,
        &[
            "--backend",
            "dm-in-guest",
            "--guest-kill-first-after-ms",
            "300",
        ],
    );
    assert_succeeded(&output, "the run after an interrupted and a killed one");
    let text = output_text(&output);
    assert!(
        text.contains("interrupted by SIGINT"),
        "the first run did not stop on SIGINT:\n{text}"
    );
    // The interrupted run tore its stack down; only the killed one's is left to clean.
    let cleaned = text
        .lines()
        .find(|l| l.contains("removed the devices of a crashed earlier run: "))
        .unwrap_or_else(|| panic!("the third run did not clean up the second:\n{text}"));
    let removed = cleaned
        .split("crashed earlier run: ")
        .nth(1)
        .and_then(|rest| rest.split(" (unmounted").next())
        .unwrap_or_default();
    assert_eq!(
        removed.split(", ").count(),
        2,
        "expected the two devices of the killed run: {cleaned}"
    );
    let guest = assert_nothing_left(&out);
    assert_eq!(
        guest["exit_codes"],
        serde_json::json!([2, null, 0]),
        "{guest}"
    );
    assert_eq!(read_json(&out.join("record.json"))["end"], "clean");
}

#[test]
fn vm_dm_backend_power_cut_and_timeout_on_named_devices() {
    let Some(dir) = dm_test_dir() else {
        return;
    };
    let named = [
        "--backend",
        "dm-in-guest",
        "--data-dev",
        "/dev/vdb",
        "--log-dev",
        "/dev/vdc",
    ];
    let cut = dir.path().join("cut");
    let mut args = named.to_vec();
    args.extend(["--guest-continue-after-cut", "--guest-refused-first"]);
    let output = record(
        &deterministic_yaml("cut", 30, "power_cut: {at_ack: 4}\n"),
        &cut,
        &args,
    );
    assert_succeeded(
        &output,
        "record with a power cut on named devices, then its continuation",
    );
    let text = output_text(&output);
    assert!(
        text.contains("--data-dev /dev/vda is mounted on /work"),
        "recording onto the mounted work disk was not refused:\n{text}"
    );
    let guest = assert_nothing_left(&cut);
    assert_eq!(guest["exit_codes"], serde_json::json!([2, 0, 0]), "{guest}");
    let summary = read_json(&cut.join("record.json"));
    assert_eq!(summary["end"], "killed", "{summary}");
    assert_eq!(summary["killed_after_ack"], 4, "{summary}");
    // start + four durable acks, then nothing.
    assert_eq!(ledger_labels(&cut).len(), 5);
    let log = BlockLog::open(&cut.join("log.bin")).unwrap();
    let marks: Vec<String> = log
        .entries()
        .iter()
        .filter_map(|e| e.mark.clone())
        .collect();
    assert_eq!(marks[..5], ledger_labels(&cut)[..]);
    let check = Command::new(POWERCUT)
        .arg("check")
        .arg(&cut)
        .output()
        .unwrap();
    assert_succeeded(&check, "check of the cut recording");
    // The reboot after the cut (I8), recorded on the dm backend from the log replayed to the
    // cut: the four acked groups of three records are all there, and its log checks clean with
    // the first run's acks expected in every state.
    let after = cut.join("after-crash");
    let second = read_json(&after.join("record.json"));
    assert_eq!(second["continued_after_crash"], true, "{second}");
    assert_eq!(second["prior_acks"], 5, "{second}");
    assert_eq!(
        second["prior_violations"],
        serde_json::json!([]),
        "{second}"
    );
    let recovered = second["done"]["summary"]["recovered_records"]
        .as_u64()
        .unwrap();
    assert!(recovered >= 12, "{second}");
    let check = Command::new(POWERCUT)
        .arg("check")
        .arg(&after)
        .output()
        .unwrap();
    assert_succeeded(&check, "check of the continuation after the cut");

    let stopped = dir.path().join("stopped");
    let mut args = named.to_vec();
    args.extend(["--timeout", "3"]);
    let output = record(&deterministic_yaml("stopped", 5000, ""), &stopped, &args);
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("timed out after 3s"), "{text}");
    let guest = assert_nothing_left(&stopped);
    assert_eq!(guest["exit_codes"], serde_json::json!([2]), "{guest}");
}

/// An XFS workload (the smallest disk mkfs.xfs makes) with `extra` lines.
fn xfs_yaml(name: &str, steps: &str, extra: &str) -> String {
    format!(
        "name: {name}\nseed: 3\nfilesystem: xfs\ndisk_mib: 300\n\
         writer: {{durability: dsync, segment_bytes: 256KiB, preallocation: zero}}\n\
         steps:\n{steps}{extra}"
    )
}

/// `powercut run --backend dm-in-guest` of `yaml` (named `name`) in `dir`: its output, its
/// recording directory and its JSON report.
fn run_in_guest(
    dir: &Path,
    name: &str,
    yaml: &str,
    extra: &[&str],
) -> (Output, std::path::PathBuf, serde_json::Value) {
    let spec = dir.join(format!("{name}.yaml"));
    std::fs::write(&spec, yaml).unwrap();
    let out = dir.join(name);
    let mut args = vec!["--backend", "dm-in-guest"];
    args.extend(extra);
    let (output, json) = run_workload(&spec, &args, &out);
    assert_succeeded(&output, &format!("run {name} --backend dm-in-guest"));
    let report = read_json(&json);
    (output, out, report)
}

#[test]
fn vm_dm_backend_run_on_xfs_with_a_power_cut_and_with_faults() {
    let Some(dir) = dm_test_dir() else {
        return;
    };
    // The two-crash check: the first log up to the cut, then the continuation recorded in a
    // second guest from the crash image, its log checked with the first run's acks expected.
    let steps = "  - append: {count: 8, size: [100, 3000], commit_every: 1}\n\
                 \x20 - file: {op: create, path: d/a, size: 3000, fsync_file: true, fsync_dir: true}\n\
                 \x20 - append: {count: 8, size: [100, 3000], commit_every: 4}\n";
    let after = "power_cut: {at_ack: 5}\nafter_crash:\n\
                 \x20 - append: {count: 6, size: [100, 3000], commit_every: 2}\n";
    let html = dir.path().join("cut.html");
    let html_arg = html.display().to_string();
    let (_, cut, report) = run_in_guest(
        dir.path(),
        "cut",
        &xfs_yaml("cut", steps, after),
        &["--html", &html_arg],
    );
    assert_clean_report(&report);
    let first = read_json(&cut.join("record.json"));
    assert_eq!(first["backend"], "dm", "{first}");
    assert_eq!(first["filesystem"], "xfs", "{first}");
    assert_eq!(first["end"], "killed", "{first}");
    assert_eq!(first["killed_after_ack"], 5, "{first}");
    let second = &report["second_crash"];
    assert_eq!(second["prior_acks"], 6, "{second}");
    assert_eq!(second["guest_prior_violations"], serde_json::json!([]));
    assert_eq!(second["violations"], serde_json::json!([]), "{second}");
    assert!(second["states_checked"].as_u64().unwrap() > 10, "{second}");
    let continued = read_json(&cut.join("after-crash/record.json"));
    assert_eq!(continued["continued_after_crash"], true, "{continued}");
    assert_eq!(continued["backend"], "dm", "{continued}");
    // Start, the reopen after recovery (acking the five records it found), three groups of
    // two, end.
    assert_eq!(continued["acks"], 6, "{continued}");
    assert_nothing_left(&cut);
    assert_nothing_left(&cut.join("after-crash"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("the fault layer failed every write") && !page.contains("QEMU killed"),
        "the HTML report's power cut row does not name the dm backend's cut"
    );

    // EIO on the journal's sectors: the fault layer's table swapped to error them, then back.
    let steps = "  - append: {count: 4, size: [100, 3000], commit_every: 1}\n\
                 \x20 - fault: {eio: writes, target: journal}\n\
                 \x20 - append: {count: 2, size: [100, 3000], commit_every: 1}\n\
                 \x20 - clear_fault: {}\n\
                 \x20 - append: {count: 1, size: [100, 3000], commit_every: 1}\n\
                 \x20 - reopen: {}\n\
                 \x20 - append: {count: 4, size: [100, 3000], commit_every: 2}\n";
    let (_, faulted, report) = run_in_guest(dir.path(), "eio", &xfs_yaml("eio", steps, ""), &[]);
    assert_clean_report(&report);
    let summary = read_json(&faulted.join("record.json"));
    let run = &summary["done"]["summary"];
    assert!(run["records_failed"].as_u64().unwrap() >= 1, "{run}");
    assert!(run["poisoned_refusals"].as_u64().unwrap() >= 1, "{run}");
    assert_eq!(
        summary["prior_violations"],
        serde_json::json!([]),
        "{summary}"
    );
    assert_nothing_left(&faulted);
}

/// Without device-mapper (this machine) or without root, `--backend dm` stops before making
/// anything and names what is missing and how to get it; dm options need `--backend dm`. On a
/// host that has device-mapper (as root) it records there instead, and the recording checks
/// clean.
#[test]
fn dm_backend_names_what_the_host_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let misuse = record(
        &deterministic_yaml("lacks", 3, ""),
        &out,
        &["--scratch-dir", "/tmp"],
    );
    assert_eq!(misuse.status.code(), Some(2), "{}", output_text(&misuse));
    assert!(output_text(&misuse).contains("are for --backend dm"));
    let root = nix::unistd::geteuid().is_root();
    let has_dm = Path::new("/dev/mapper/control").exists();
    if root && has_dm {
        // A host with device-mapper: record on it for real, natively.
        let output = record(
            &deterministic_yaml("native", 30, ""),
            &out,
            &["--backend", "dm"],
        );
        assert_succeeded(&output, "record --backend dm on this host");
        let check = Command::new(POWERCUT)
            .arg("check")
            .arg(&out)
            .output()
            .unwrap();
        assert_succeeded(&check, "check of the native dm recording");
        return;
    }
    let output = record(
        &deterministic_yaml("lacks", 3, ""),
        &out,
        &["--backend", "dm"],
    );
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    if root {
        assert!(
            text.contains("no device-mapper") && text.contains("modprobe dm-mod"),
            "{text}"
        );
    } else {
        assert!(text.contains("needs root"), "{text}");
    }
    assert!(text.contains("--backend qemu"), "{text}");
    assert!(
        !out.join("base.img").exists(),
        "made files before the check"
    );
}
