//! Test aid: `powercut record --backend dm` run inside the guest, for machines whose own kernel
//! has no device-mapper. The host builds `powercut` static (musl), puts it with the workload, a
//! base image and the command line on an ext4 work disk (`mkfs.ext4 -d`), boots the guest with
//! `powercut.mode=dm-backend` (the agent then runs that `powercut` instead of a job), and copies
//! the recording back off the work disk with `debugfs rdump` (no mount needed).
//!
//! The reboot after a power cut (the two-crash check's second recording, `run`'s I8) works the
//! same way: the crash image is the base image on the work disk, the first run's acks the
//! ledger of a directory `first/` there, and the guest runs `record --continue-from first`.
//!
//! Disks in the guest: the work disk is `/dev/vda`; with `--data-dev`/`--log-dev` two blank
//! disks follow as `/dev/vdb` (data) and `/dev/vdc` (log), and the names given are passed on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use powercut_workloads::guest::disks;
use powercut_workloads::guest::fault::FLUSH_FAULT_RESERVE_SECTORS;
use powercut_workloads::protocol::GuestMessage;
use powercut_workloads::spec::Workload;

use super::DmOptions;
use crate::record::{self, LedgerEntry, RecordOptions, RecordOutcome, RecordSummary};
use crate::vm::image::{self, BuildOptions};
use crate::vm::progress::Progress;
use crate::vm::provision;
use crate::vm::qemu::{Disk, RunningVm, VmConfig, KERNEL_APPEND};

/// The kernel command line word the agent looks for.
const MODE: &str = "powercut.mode=dm-backend";
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// Where the agent mounts the work disk.
const WORK: &str = "/work";
/// Room on the work disk beyond the recording's own files.
const WORK_SLACK_MIB: u64 = 64;
/// The VM gets this long beyond `--timeout` (boot, making and copying the disks).
const BOOT_SLACK: std::time::Duration = std::time::Duration::from_secs(120);

/// The guest mode's options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestDmOptions {
    /// The dm backend's own options, passed on.
    pub dm: DmOptions,
    /// Run `powercut` three times: SIGINT to the first run this many milliseconds after it
    /// mounted its file system (it must tear down), SIGKILL to the second (it leaves its
    /// stack), and the third must clean up the second one's stack and record as usual.
    pub kill_first_after_ms: Option<u64>,
    /// After the recording (a workload with a power cut), record its continuation in the guest
    /// too, `record --continue-from` into `OUT/after-crash` (the two-crash check's second run).
    pub continue_after_cut: bool,
    /// First try to record onto the work disk itself (`/dev/vda`, mounted): that run must be
    /// refused before it touches anything.
    pub refused_first: bool,
    /// Put this static powercut on the work disk instead of building one from the workspace
    /// (a campaign pins one, so the engine under test stays the same throughout).
    pub powercut: Option<PathBuf>,
}

/// `cargo build --release --target musl -p powercut`: the static CLI for the guest (with the
/// engine's mutants if `mutants`).
pub fn build_static_powercut(mutants: bool, progress: &Progress) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(image::workspace_root())
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args([
            "-p",
            "powercut",
            "--bin",
            "powercut",
            "--target",
            MUSL_TARGET,
        ])
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    if mutants {
        command.args(["--features", "mutants"]);
    }
    let stdout = progress.step("building the static powercut (musl, release)", || {
        provision::run(&mut command).context("building the static powercut")
    })?;
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|m| {
            (m["reason"] == "compiler-artifact" && m["target"]["name"] == "powercut")
                .then(|| m["executable"].as_str().map(PathBuf::from))
                .flatten()
        })
        .context("cargo built no static powercut executable")
}

/// The workload as the guest's powercut reads it: its `guest_files:` are in the guest image
/// already, where its steps name them, not at their host paths.
fn in_guest(workload: &Workload) -> Workload {
    use powercut_workloads::spec::{guest_file_name, GUEST_FILES_DIR};
    Workload {
        guest_files: workload
            .guest_files
            .iter()
            .map(|path| format!("{GUEST_FILES_DIR}/{}", guest_file_name(path)))
            .collect(),
        ..workload.clone()
    }
}

/// The guest's `powercut record` command line (one argument a line in `args`): into `out` (in
/// the work disk), from `start` (`--base-image base-in.img`, `--continue-from DIR`, or both).
fn guest_args(options: &RecordOptions, dm: &DmOptions, out: &str, start: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["record", "workload.yaml", "--out", out, "--backend", "dm"]
        .iter()
        .chain(start)
        .map(|a| a.to_string())
        .collect();
    args.extend(["--timeout".into(), options.timeout.as_secs().to_string()]);
    if options.allow_root_exec {
        args.push("--allow-root-exec".into());
    }
    if let (Some(data), Some(log)) = (&dm.data_dev, &dm.log_dev) {
        args.extend([
            "--data-dev".into(),
            data.display().to_string(),
            "--log-dev".into(),
            log.display().to_string(),
        ]);
    }
    if let Some(scratch) = &dm.scratch_dir {
        args.extend(["--scratch-dir".into(), scratch.display().to_string()]);
    }
    args
}

/// Where the guest's (first) run starts: the base image, and for the reboot after a power cut
/// (the two-crash check's second recording) the first run's acks too, as the ledger of a
/// recording directory `first` on the work disk that `--continue-from` reads (its data disk is
/// the base image, here the crash image).
fn first_start(options: &RecordOptions, dir: &Path) -> Result<Vec<&'static str>> {
    let base = ["--base-image", "base-in.img"];
    let Some(prior) = &options.continue_after_crash else {
        return Ok(base.to_vec());
    };
    let first = dir.join("first");
    std::fs::create_dir_all(&first)?;
    let mut ledger = String::new();
    for ack in prior {
        ledger.push_str(&serde_json::to_string(&serde_json::json!({ "ack": ack }))?);
        ledger.push('\n');
    }
    std::fs::write(first.join("ledger.jsonl"), ledger)?;
    Ok([&base[..], &["--continue-from", "first"]].concat())
}

/// Makes the work disk image: `powercut`, the workload (JSON is YAML), the base image, `args`.
fn work_disk(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
    guest: &GuestDmOptions,
    powercut: &Path,
    progress: &Progress,
) -> Result<PathBuf> {
    let dir = out.join("guest-work");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(powercut, dir.join("powercut")).context("copying the static powercut")?;
    std::fs::write(dir.join("workload.yaml"), in_guest(workload).to_json())?;
    let base = dir.join("base-in.img");
    record::make_data_disk(workload, &base, options, progress)?;
    let mut args = guest_args(options, &guest.dm, "rec", &first_start(options, &dir)?).join("\n");
    args.push('\n');
    if guest.continue_after_cut {
        let after = guest_args(
            options,
            &guest.dm,
            "rec/after-crash",
            &["--continue-from", "rec"],
        );
        args = format!("{args}\n{}\n", after.join("\n"));
    }
    if guest.refused_first {
        let dm = DmOptions {
            data_dev: Some("/dev/vda".into()),
            log_dev: Some(
                guest
                    .dm
                    .log_dev
                    .clone()
                    .unwrap_or_else(|| "/dev/vdc".into()),
            ),
            scratch_dir: None,
        };
        let refused = guest_args(options, &dm, "refused", &["--base-image", "base-in.img"]);
        args = format!("{}\n\n{args}", refused.join("\n"));
    }
    if let Some(ms) = guest.kill_first_after_ms {
        args = format!(
            "interrupt-after-mount-ms={ms}\n{args}\nkill-after-mount-ms={ms}\n{args}\n{args}"
        );
    }
    std::fs::write(dir.join("args"), args)?;
    let base_mib = std::fs::metadata(&base)?.len() >> 20;
    // Base, data and final images and the log, twice over for a continuation.
    let mib = 8 * (base_mib + 1) + 3 * workload.log_mib + WORK_SLACK_MIB;
    let image = out.join("guest-work.img");
    record::create_sized(&image, mib << 20)?;
    let mkfs = provision::find_in_path("mkfs.ext4").context("mkfs.ext4 is missing (e2fsprogs)")?;
    let mut command = Command::new(mkfs);
    command.args(["-F", "-q", "-d"]).arg(&dir).arg(&image);
    progress.step("making the work disk", || provision::run(&mut command))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(image)
}

/// Blank disks for `--data-dev`/`--log-dev` in the guest.
fn named_disks(workload: &Workload, out: &Path, dm: &DmOptions) -> Result<Vec<Disk>> {
    if dm.data_dev.is_none() {
        return Ok(Vec::new());
    }
    let data = out.join("guest-data.img");
    let log = out.join("guest-log.img");
    let data_bytes = (workload.disk_mib << 20) + FLUSH_FAULT_RESERVE_SECTORS * 512;
    record::create_sized(&data, data_bytes)?;
    record::create_sized(&log, workload.log_mib << 20)?;
    Ok([(data, disks::DATA_SERIAL), (log, disks::LOG_SERIAL)]
        .into_iter()
        .map(|(path, serial)| Disk {
            path,
            serial: serial.into(),
            read_only: false,
        })
        .collect())
}

/// Boots the guest in the dm-backend mode and waits for it to end; the agent's error, if any.
fn boot(
    config: &VmConfig,
    out: &Path,
    options: &RecordOptions,
    progress: &Progress,
) -> Result<Option<String>> {
    let mut vm = RunningVm::spawn(config, &out.join("guest-console.log"))?;
    let deadline = Instant::now() + options.timeout + BOOT_SLACK;
    let mut outcome: Option<Option<String>> = None;
    while let Some(line) = vm.next_line(deadline).inspect_err(|_| {
        let _ = vm.kill();
    })? {
        match GuestMessage::parse_line(&line) {
            Some(Ok(GuestMessage::Done(_))) => outcome = Some(None),
            Some(Ok(GuestMessage::Error { message })) => outcome = Some(Some(message)),
            Some(_) => {}
            None => progress.line(format!("guest: {line}")),
        }
    }
    vm.wait(deadline)?;
    outcome.with_context(|| {
        format!(
            "the guest ended without a report; console tail:\n{}",
            vm.tail()
        )
    })
}

/// Copies `/rec` (if the guest's powercut got that far) and `/guest.json` of the work disk
/// into `out` with debugfs, which reads ext4 without a mount.
fn copy_back(image: &Path, out: &Path) -> Result<()> {
    let debugfs = provision::find_in_path("debugfs").context("debugfs is missing (e2fsprogs)")?;
    let staging = out.join("guest-rec");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let request = format!(
        "rdump /rec {0}\ndump /guest.json {0}/guest.json\n",
        staging.display()
    );
    let requests = out.join("guest-debugfs.txt");
    std::fs::write(&requests, request)?;
    let mut command = Command::new(debugfs);
    command.arg("-f").arg(&requests).arg(image);
    provision::run(&mut command)?;
    let _ = std::fs::remove_file(&requests);
    let guest_json = staging.join("guest.json");
    std::fs::rename(&guest_json, out.join("guest.json"))
        .context("the guest left no guest.json on the work disk")?;
    if let Ok(entries) = std::fs::read_dir(staging.join("rec")) {
        for entry in entries {
            let entry = entry?;
            let target = out.join(entry.file_name());
            if target.is_dir() {
                std::fs::remove_dir_all(&target)?;
            }
            std::fs::rename(entry.path(), target)?;
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(())
}

/// The last run's exit code from `guest.json`; an error unless it is 0.
fn last_run_succeeded(out: &Path, agent_error: Option<String>) -> Result<()> {
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("guest.json"))?)?;
    if let Some(message) = agent_error {
        bail!("the agent failed: {message} (guest.json: {status})");
    }
    let last = status["exit_codes"]
        .as_array()
        .and_then(|codes| codes.last())
        .cloned()
        .unwrap_or_default();
    if last != serde_json::json!(0) {
        bail!(
            "powercut in the guest exited with {last} (see guest-console.log; guest.json: \
             {status})"
        );
    }
    Ok(())
}

/// Runs `powercut record --backend dm` for `workload` in the guest; the recording lands in
/// `out` as if made here.
pub fn record(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
    guest: &GuestDmOptions,
    progress: &Progress,
) -> Result<RecordOutcome> {
    guest.dm.validate()?;
    if options.continue_after_crash.is_some() {
        if options.base_image.is_none() {
            bail!("continuing after a crash needs the crash image as the base image");
        }
        // The reboot of the two-crash check: one run in the guest, without the test aids that
        // add runs around the first recording.
        let plain = GuestDmOptions {
            dm: guest.dm.clone(),
            powercut: guest.powercut.clone(),
            ..GuestDmOptions::default()
        };
        return record_in_guest(workload, out, options, &plain, progress);
    }
    record_in_guest(workload, out, options, guest, progress)
}

/// [`record()`] once the mode's options are settled.
fn record_in_guest(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
    guest: &GuestDmOptions,
    progress: &Progress,
) -> Result<RecordOutcome> {
    workload
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid workload: {e}"))?;
    let mutants = options.image.mutants || workload.writer.mutant.is_some();
    let image = image::build(
        &BuildOptions {
            mutants,
            ..options.image.clone()
        },
        progress,
    )?;
    let powercut = match &guest.powercut {
        Some(pinned) => pinned.clone(),
        None => build_static_powercut(mutants, progress)?,
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let work = work_disk(workload, out, options, guest, &powercut, progress)?;
    let mut disks = vec![Disk {
        path: work.clone(),
        serial: disks::WORK_SERIAL.into(),
        read_only: false,
    }];
    disks.extend(named_disks(workload, out, &guest.dm)?);
    let config = VmConfig {
        qemu: image.qemu.clone(),
        kernel: image.kernel.clone(),
        initrd: image.initrd.clone(),
        disks,
        memory_mib: 512,
        append: format!("{KERNEL_APPEND} {MODE}"),
    };
    progress.line(format!(
        "booting {} to run powercut record --backend dm in {WORK}",
        image.kernel_package
    ));
    // The disks go whatever happened: a failed boot has nothing on them worth keeping.
    let copied = boot(&config, out, options, progress)
        .and_then(|agent_error| copy_back(&work, out).map(|()| agent_error));
    for scratch in ["guest-work.img", "guest-data.img", "guest-log.img"] {
        let _ = std::fs::remove_file(out.join(scratch));
    }
    let agent_error = copied?;
    last_run_succeeded(out, agent_error)?;
    read_outcome(out)
}

/// The recording's `record.json` and `ledger.jsonl` as [`record()`] returns them.
fn read_outcome(out: &Path) -> Result<RecordOutcome> {
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("record.json")).context("the guest left no record.json")?,
    )?;
    let summary: RecordSummary =
        serde_json::from_value(json).with_context(|| format!("{}/record.json", out.display()))?;
    let text = std::fs::read_to_string(out.join("ledger.jsonl"))?;
    let ledger = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| serde_json::from_str::<LedgerEntry>(line).context("ledger.jsonl"))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordOutcome {
        out: out.to_path_buf(),
        summary,
        ledger,
    })
}
