//! `powercut record --backend dm`: the recording stack of the guest built on this host's own
//! kernel, no VM. Loop devices over files in `--scratch-dir` (the output directory by default),
//! or the devices `--data-dev`/`--log-dev` name:
//!
//! ```text
//! data -> powercut-<pid>-log (dm-log-writes, log device) -> powercut-<pid>-data (fault layer) -> fs
//! ```
//!
//! The stack, the marks, the fault swaps and the teardown are `powercut_workloads::stack`, the
//! guest agent's own code; the executor runs in this process. The output directory gets the
//! same files as a qemu recording (`log.bin`, `base.img`, `final.img`, `ledger.jsonl`,
//! `console.log` with the agent's protocol lines, `workload.json`, `record.json`), so `check`,
//! `repro`, `run` and campaigns read it unchanged.
//!
//! A power cut ends the recording at the chosen ack: the fault layer becomes all `error`, so no
//! later write or flush reaches the log, and the stack is torn down cleanly; `record.json` says
//! `end: killed` with `killed_after_ack`, as after a VM kill, and `final.img` is `base.img` with
//! the log replayed up to the cut's mark (onto a fresh file), where the two-crash check's
//! second run starts. Teardown (unmount, DATA, LOG,
//! loop devices, in that order) happens on success, error, `--timeout` and Ctrl-C; the stacks
//! of a crashed earlier run (`powercut-<pid>-*` of a dead pid) are removed at the next start.

mod devices;
pub mod guest;
mod preflight;
mod programs;
mod reporter;
mod signals;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use powercut_workloads::protocol::Job;
use powercut_workloads::spec::Workload;
use powercut_workloads::stack::{self, CutMode, JobSetup, StackNames};

use crate::record::{self, RecordOptions, RecordOutcome, RecordSummary, RunEnd};
use crate::vm::progress::Progress;

pub use preflight::check_host;

/// Where the dm backend puts its devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DmOptions {
    /// A block device for the data (formatted or overwritten: never a device in use).
    pub data_dev: Option<PathBuf>,
    /// A block device for the block log (zeroed first).
    pub log_dev: Option<PathBuf>,
    /// Directory of the loop devices' backing files (default: the output directory).
    pub scratch_dir: Option<PathBuf>,
}

impl DmOptions {
    /// Named devices are given both or not at all.
    pub fn validate(&self) -> Result<()> {
        match (&self.data_dev, &self.log_dev) {
            (Some(_), None) | (None, Some(_)) => {
                bail!("--data-dev and --log-dev go together: name both devices, or neither")
            }
            (Some(_), Some(_)) if self.scratch_dir.is_some() => {
                bail!("--scratch-dir is for loop devices; it does not go with --data-dev/--log-dev")
            }
            _ => Ok(()),
        }
    }
}

/// Records `workload` on this host's device-mapper into `out` (see the module docs).
pub fn record(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
    dm_options: &DmOptions,
    progress: &Progress,
) -> Result<RecordOutcome> {
    workload
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid workload: {e}"))?;
    dm_options.validate()?;
    let dm = check_host(dm_options.data_dev.is_none())?;
    programs::prepare(workload, progress)?;
    let leftovers = stack::clean_leftovers(&dm).context("removing a crashed run's devices")?;
    if !leftovers.removed.is_empty() {
        progress.line(format!(
            "removed the devices of a crashed earlier run: {} (unmounted {:?})",
            leftovers.removed.join(", "),
            leftovers.unmounted
        ));
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started_unix_s = record::unix_now();
    let job = record::write_job_files(workload, out, options)?;
    let pid = std::process::id();
    let devices = devices::prepare(workload, out, options, dm_options, pid, progress)?;
    let reporter = reporter::Recorder::create(out, progress)?;
    let stop = signals::StopOnSignal::install(options.timeout)?;
    let started = Instant::now();
    let setup = JobSetup {
        dm: &dm,
        names: StackNames::for_process(pid),
        data: devices.data.clone(),
        log: devices.log.clone(),
        mount_point: devices.mount_point.clone(),
        cut: CutMode::Local,
        stop: Some(stop.flag()),
    };
    let ran = stack::run_job(&setup, &job, &reporter);
    let run_s = started.elapsed().as_secs_f64();
    let stopped = stop.finish();
    let outcome = match ran {
        Ok(outcome) => outcome,
        Err(e) => {
            drop(devices);
            if let Some(why) = stopped {
                bail!("{why}: the recording stopped ({e}); every device was torn down");
            }
            bail!("the dm backend failed: {e}; every device was torn down");
        }
    };
    let files = devices.finish(out)?;
    let gathered = reporter.finish()?;
    let log_use = record::log_use(&files.log, out, files.log_disk_bytes, Some(&outcome.done))?;
    let end = if outcome.cut_after_ack.is_some() {
        let last = gathered
            .ledger
            .last()
            .context("a power cut before any ack")?;
        let entries = record::replay_to_cut(out, &last.label)?;
        progress.line(format!(
            "power cut after durable ack {}: nothing after it reached the log; final.img is \
             base.img with the {entries} log entries up to its mark",
            gathered.durable_acks
        ));
        RunEnd::Killed
    } else {
        RunEnd::Clean
    };
    let summary = RecordSummary {
        workload: workload.name.clone(),
        seed: workload.seed,
        filesystem: workload.filesystem,
        kernel_package: format!("host kernel {}", preflight::kernel_release()),
        image_key: "dm-backend".into(),
        backend: Some(record::RecordedBy::Dm),
        started_unix_s,
        boot_to_agent_s: None,
        host_boot_to_agent_s: None,
        vm_s: run_s,
        workload_s: Some(outcome.done.workload_s),
        acks: gathered.ledger.len() as u64,
        durable_acks: gathered.durable_acks,
        end,
        killed_after_ack: outcome.cut_after_ack,
        log_bytes: log_use.end_bytes,
        log_disk_bytes: files.log_disk_bytes,
        log_entries_scanned: log_use.entries,
        log_filled: log_use.filled,
        done: Some(outcome.done),
        continued_after_crash: matches!(job, Job::ContinueAfterCrash { .. }),
        prior_acks: options
            .continue_after_crash
            .as_ref()
            .map_or(0, |a| a.len() as u64),
        guest_findings: gathered.findings,
    };
    record::finish(out, summary, gathered.ledger, progress)
}
