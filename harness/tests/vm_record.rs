//! End to end under QEMU: `powercut record` boots the guest, runs a small workload on ext4 and on
//! XFS, and leaves a block log whose marks are the acks in order and whose replay onto the base
//! image gives the final image; a power cut leaves a log that still parses.
//!
//! Needs root (to provision QEMU and the image on first use) and qemu-system-x86_64; prints
//! "SKIPPED: <reason>" and returns otherwise.

mod common;

use common::{ledger_labels, vm_test_dir, POWERCUT};

use std::path::Path;
use std::process::Command;

const LOG_MAGIC: u64 = 0x006a_7366_7773_6872;
const FLAG_DISCARD: u64 = 4;
const FLAG_MARK: u64 = 8;

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Labels of the log's marks, and the base image with every logged write applied.
fn read_log(log: &[u8], base: &[u8]) -> (Vec<String>, Vec<u8>, u64) {
    assert!(log.len() >= 512, "log shorter than its super");
    assert_eq!(u64_at(log, 0), LOG_MAGIC, "log super magic");
    assert_eq!(u64_at(log, 8), 1, "log version");
    let mut image = base.to_vec();
    let mut marks = Vec::new();
    let mut entries = 0;
    let mut at = 512usize;
    while at + 512 <= log.len() {
        let header = &log[at..at + 32];
        let (sector, nr_sectors, flags, data_len) = (
            u64_at(header, 0),
            u64_at(header, 8),
            u64_at(header, 16),
            u64_at(header, 24),
        );
        if header.iter().all(|&b| b == 0) {
            break;
        }
        assert_eq!(
            flags & !0x1f,
            0,
            "invalid flags {flags:#x} at log offset {at}"
        );
        entries += 1;
        if flags & FLAG_MARK != 0 {
            marks.push(
                String::from_utf8(log[at + 32..at + 32 + data_len as usize].to_vec()).unwrap(),
            );
        }
        let data_bytes = if flags & FLAG_DISCARD != 0 {
            0
        } else {
            nr_sectors as usize * 512
        };
        if flags & FLAG_MARK == 0 && data_bytes > 0 {
            let dst = sector as usize * 512;
            image[dst..dst + data_bytes].copy_from_slice(&log[at + 512..at + 512 + data_bytes]);
        }
        at += 512 + data_bytes;
    }
    (marks, image, entries)
}

fn record(yaml: &str, out: &Path) -> serde_json::Value {
    let spec = out.with_extension("yaml");
    std::fs::write(&spec, yaml).unwrap();
    let output = Command::new(POWERCUT)
        .arg("record")
        .arg(&spec)
        .arg("--out")
        .arg(out)
        .args(["--timeout", "240"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "powercut record failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("record.json")).unwrap()).unwrap()
}

fn smoke_yaml(name: &str, filesystem: &str, disk_mib: u64, extra: &str) -> String {
    format!(
        "name: {name}\nseed: 11\nfilesystem: {filesystem}\ndisk_mib: {disk_mib}\nlog_mib: {}\n\
         writer: {{segment_bytes: 1MiB}}\nsteps:\n\
         \x20 - append: {{count: 30, size: [100, 5000], commit_every: 3}}\n\
         \x20 - file: {{op: create, path: d/a.txt, size: 3000, fsync_file: true, fsync_dir: true}}\n\
         \x20 - rotate: {{}}\n\
         \x20 - append: {{count: 8, size: 4096}}\n{extra}",
        disk_mib * 2
    )
}

fn check_clean_run(filesystem: &str, disk_mib: u64) {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let out = dir.path().join("out");
    let summary = record(
        &smoke_yaml(&format!("smoke-{filesystem}"), filesystem, disk_mib, ""),
        &out,
    );
    assert_eq!(summary["end"], "clean");
    assert_eq!(summary["log_filled"], false);
    // start + 10 record groups + 1 file + 8 records + end
    assert_eq!(summary["acks"], 21, "{summary}");
    for file in [
        "log.bin",
        "base.img",
        "final.img",
        "console.log",
        "ledger.jsonl",
        "workload.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let log = std::fs::read(out.join("log.bin")).unwrap();
    let base = std::fs::read(out.join("base.img")).unwrap();
    let (marks, replayed, entries) = read_log(&log, &base);
    assert!(entries > 21, "only {entries} log entries");
    let labels = ledger_labels(&out);
    assert_eq!(
        labels.first().map(String::as_str),
        Some(format!("s:smoke-{filesystem}").as_str())
    );
    // Every ack is a mark, in ack order; dm-log-writes adds its own end mark on removal.
    assert_eq!(marks.last().map(String::as_str), Some("dm-log-writes-end"));
    assert_eq!(marks[..marks.len() - 1], labels[..]);
    let final_image = std::fs::read(out.join("final.img")).unwrap();
    assert_ne!(base, final_image, "the workload changed nothing");
    assert!(
        replayed == final_image,
        "replaying log.bin onto base.img differs from final.img"
    );
}

#[test]
fn vm_record_smoke_on_ext4() {
    check_clean_run("ext4", 64);
}

#[test]
fn vm_record_smoke_on_xfs() {
    check_clean_run("xfs", 320);
}

#[test]
fn vm_power_cut_leaves_a_parsable_log() {
    let Some(dir) = vm_test_dir() else {
        return;
    };
    let out = dir.path().join("out");
    let summary = record(
        &smoke_yaml("cut", "ext4", 64, "power_cut: {at_ack: 4}\n"),
        &out,
    );
    assert_eq!(summary["end"], "killed");
    assert_eq!(summary["killed_after_ack"], 4);
    let labels = ledger_labels(&out);
    assert_eq!(labels.len(), 5, "start plus four durable acks: {labels:?}");
    let log = std::fs::read(out.join("log.bin")).unwrap();
    let base = std::fs::read(out.join("base.img")).unwrap();
    let (marks, _, entries) = read_log(&log, &base);
    assert!(entries > 0);
    // A mark reaches the log disk asynchronously (the dm-log-writes thread), so the newest acks
    // may be missing from the log, and the guest may have marked one more before the kill
    // landed; whatever is there agrees with the ledger, in order.
    let common = marks.len().min(labels.len());
    assert!(common >= 1, "no ack marks survived the kill: {marks:?}");
    assert_eq!(marks[..common], labels[..common]);
    assert!(
        !marks.iter().any(|m| m == "dm-log-writes-end"),
        "a killed run never removes the device"
    );
}
