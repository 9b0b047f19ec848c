//! The guest agent: started by the guest init, it reads the job from the job disk, stacks
//! `pclog` = dm-log-writes(data disk, log disk) and above it `pcdata` = linear over `pclog` (the
//! fault layer goes above the log so failed I/O never reaches it), mounts `pcdata` at /mnt, runs
//! the workload with every ack written as a MARK into the log, unmounts (which flushes), removes
//! the dm devices (dm-log-writes writes its super on removal), reports over the serial console
//! and powers the VM off.
//!
//! A continuation job (the reboot after a power cut, invariant I8) does the same on the crash
//! image the host passes as the data disk: the mount replays the file system's journal, the
//! executor opens the existing journal (the engine's recovery), every ack of the first run that
//! the recovered state breaks is reported as a `prior_violation` line, then the after-crash steps
//! run with their acks as MARKs as usual.

use std::fs::File;
use std::io::Stdout;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use powercut_workloads::ack::Ack;
use powercut_workloads::executor::{self, AckSink, FaultAction, ProgressEvent, RunFinding};
use powercut_workloads::guest::disks::{self, BlockDisk};
use powercut_workloads::guest::dm::{self, DmControl, LogWritesStatus, SuspendFlags};
use powercut_workloads::guest::fault::{self as fault_dev, SectorRange};
use powercut_workloads::guest::serial::Console;
use powercut_workloads::guest::{kmsg, mount};
use powercut_workloads::protocol::{self, DoneReport, GuestMessage, Job};
use powercut_workloads::spec::{EioKind, FaultTarget};

/// dm-log-writes device (marks go here).
const LOG_DEVICE: &str = "pclog";
/// Device the file system lives on (linear now; swapped to error/flakey for fault injection).
const DATA_DEVICE: &str = "pcdata";
const MOUNT_POINT: &str = "/mnt";
/// Kernel log lines worth forwarding to the host.
const KERNEL_NEEDLES: &[&str] = &[
    "log-writes",
    "device-mapper",
    "Ran out of space",
    "XFS",
    "EXT4-fs error",
];

/// Acks become MARKs right when the executor acknowledges, then serial lines. One lock covers
/// both so the console order is the mark order.
struct MarkSink<'a> {
    dm: &'a DmControl,
    console: &'a Console<Stdout>,
    acks: Mutex<u64>,
    /// `/dev/mapper/pclog`, what the fault layer maps to.
    log_device_path: String,
    /// Size of the data disk.
    size_sectors: u64,
    /// The durable ack after which the host cuts the power (a fresh run with `power_cut:`).
    cut_after_durable_ack: Option<u64>,
    /// Durable acks so far (start and end not counted), updated under the `acks` lock.
    durable_acks: AtomicU64,
    /// Kernel name of the log disk (`vdb`), for its in-flight counters in sysfs.
    log_disk_name: String,
}

impl MarkSink<'_> {
    /// Swaps the table of the fault layer without freezing the file system (`--nolockfs`), so
    /// dirty pages stay dirty and meet the new table when they are written.
    fn swap_fault_table(&self, table: &[dm::Target]) -> Result<(), String> {
        self.dm
            .suspend(
                DATA_DEVICE,
                SuspendFlags {
                    skip_lockfs: true,
                    no_flush: false,
                },
            )
            .map_err(|e| format!("suspend {DATA_DEVICE}: {e}"))?;
        let loaded = self
            .dm
            .load_table(DATA_DEVICE, table)
            .map_err(|e| format!("load the fault table of {DATA_DEVICE}: {e}"));
        // Resume in any case: a suspended device under a mounted file system hangs it.
        let resumed = self
            .dm
            .resume(DATA_DEVICE)
            .map_err(|e| format!("resume {DATA_DEVICE}: {e}"));
        loaded.and(resumed)
    }
}

/// Polls of the log's progress before a power cut, and the gap between two.
const LOG_SETTLE_POLLS: u32 = 3;
const LOG_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A log that never settles (a workload still writing from other threads) is waited on at most
/// this long.
const LOG_SETTLE_LIMIT: Duration = Duration::from_secs(5);

impl MarkSink<'_> {
    /// Waits until dm-log-writes has written out every entry queued so far, the mark just made
    /// included: its count of logged entries stops moving and the log disk has no request in
    /// flight, [`LOG_SETTLE_POLLS`] polls in a row.
    fn wait_for_log_written(&self) -> Result<(), String> {
        let inflight_path = format!("/sys/block/{}/inflight", self.log_disk_name);
        let started = Instant::now();
        let mut last = None;
        let mut settled = 0;
        while settled < LOG_SETTLE_POLLS {
            if started.elapsed() > LOG_SETTLE_LIMIT {
                return Err(format!(
                    "the block log did not settle within {}s before the power cut",
                    LOG_SETTLE_LIMIT.as_secs()
                ));
            }
            std::thread::sleep(LOG_POLL_INTERVAL);
            let logged = self
                .dm
                .status(LOG_DEVICE)
                .map_err(|e| e.to_string())?
                .first()
                .and_then(|s| LogWritesStatus::parse(&s.status))
                .ok_or("dm-log-writes status is unreadable")?
                .logged_entries;
            let inflight = std::fs::read_to_string(&inflight_path)
                .map_err(|e| format!("reading {inflight_path}: {e}"))?;
            let idle = inflight.split_whitespace().all(|n| n == "0");
            settled = if idle && last == Some(logged) {
                settled + 1
            } else {
                0
            };
            last = Some(logged);
        }
        Ok(())
    }

    fn count(&self) -> u64 {
        *self.acks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AckSink for MarkSink<'_> {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        let label = ack.to_label();
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        self.dm
            .message(LOG_DEVICE, 0, &format!("mark {label}"))
            .map_err(|e| e.to_string())?;
        *acks += 1;
        if !matches!(ack, Ack::Start { .. } | Ack::End { .. }) {
            let durable = self.durable_acks.fetch_add(1, Ordering::Relaxed) + 1;
            if Some(durable) == self.cut_after_durable_ack {
                // The host kills the VM as soon as it reads this ack: the log up to this mark
                // must be on the log disk by then, or its last entries could lose their data.
                self.wait_for_log_written()?;
            }
        }
        // The mark is the record; a console write error does not undo it.
        let _ = self.console.send(&GuestMessage::Ack {
            index: *acks,
            label,
            ack: ack.clone(),
        });
        Ok(())
    }

    fn fault(&self, action: &FaultAction) -> Result<(), String> {
        let (table, what) = match action {
            FaultAction::Arm { fault, .. } if fault.eio == EioKind::Flush => {
                let table = fault_dev::flush_fault_table(&self.log_device_path, self.size_sectors)
                    .ok_or("the data disk is too small for a flush fault")?;
                (
                    table,
                    "fault armed: EIO on every flush of the data device".to_string(),
                )
            }
            FaultAction::Arm { fault, journal_dir } => {
                let ranges = match fault.target {
                    FaultTarget::Journal => {
                        fault_dev::dir_sectors(journal_dir).map_err(|e| e.to_string())?
                    }
                    FaultTarget::Sectors([start, count]) => vec![SectorRange { start, count }],
                    FaultTarget::Device => {
                        return Err("`eio: writes` takes no `target: device`".into())
                    }
                };
                let table =
                    fault_dev::error_table(&self.log_device_path, self.size_sectors, &ranges);
                let failing: u64 = table
                    .iter()
                    .filter(|t| t.target_type == "error")
                    .map(|t| t.length_sectors)
                    .sum();
                if failing == 0 {
                    return Err(format!(
                        "{} covers no sector of the data disk",
                        fault.target
                    ));
                }
                let what = format!(
                    "fault armed: EIO on {} ({failing} sectors in {} ranges)",
                    fault.target,
                    table.iter().filter(|t| t.target_type == "error").count()
                );
                (table, what)
            }
            FaultAction::Clear => (
                dm::linear_table(&self.log_device_path, self.size_sectors),
                "fault cleared".to_string(),
            ),
        };
        self.swap_fault_table(&table)?;
        let _ = self.console.send(&GuestMessage::Progress {
            what,
            detail: serde_json::json!({
                "fault_table": table
                    .iter()
                    .map(|t| format!("{} {} {} {}", t.start_sector, t.length_sectors, t.target_type, t.params))
                    .collect::<Vec<_>>(),
            }),
        });
        Ok(())
    }

    fn finding(&self, finding: &RunFinding) {
        let _ = self
            .console
            .send(&GuestMessage::RunFinding(finding.clone()));
    }

    fn prior_violation(&self, violation: &RunFinding) {
        let _ = self
            .console
            .send(&GuestMessage::RunFinding(violation.clone()));
    }

    fn progress(&self, event: &ProgressEvent) {
        let state = if event.finished { "done" } else { "start" };
        let _ = self.console.send(&GuestMessage::Progress {
            what: format!(
                "step {}/{} {state}: {}",
                event.step_index + 1,
                event.steps_total,
                event.description
            ),
            detail: serde_json::json!({
                "step_index": event.step_index,
                "finished": event.finished,
                "acks_so_far": event.acks_so_far,
                "acks_total": event.acks_total,
            }),
        });
    }
}

fn find_disk(serial: &str) -> Result<BlockDisk, String> {
    disks::find_by_serial(Path::new("/sys/block"), serial).map_err(|e| e.to_string())
}

fn read_job() -> Result<Job, String> {
    let disk = find_disk(disks::JOB_SERIAL)?;
    let mut file = File::open(&disk.dev_path)
        .map_err(|e| format!("opening {}: {e}", disk.dev_path.display()))?;
    let json = protocol::decode_job(&mut file).map_err(|e| e.to_string())?;
    let text = String::from_utf8(json).map_err(|_| "the job is not UTF-8".to_string())?;
    Job::from_json(&text).map_err(|e| format!("job: {e}"))
}

fn run(console: &Console<Stdout>) -> Result<DoneReport, String> {
    let job = read_job()?;
    let workload = job.workload();
    let data = find_disk(disks::DATA_SERIAL)?;
    let log = find_disk(disks::LOG_SERIAL)?;
    let dm = DmControl::open().map_err(|e| e.to_string())?;
    let pclog = dm
        .create_device(
            LOG_DEVICE,
            &dm::log_writes_table(&data.maj_min, &log.maj_min, data.size_sectors),
        )
        .map_err(|e| e.to_string())?;
    let pcdata = dm
        .create_device(
            DATA_DEVICE,
            &dm::linear_table(&pclog.to_string_lossy(), data.size_sectors),
        )
        .map_err(|e| e.to_string())?;
    // The executor acks the start (`s:NAME`) and the clean end (`e:NAME`) itself.
    let sink = MarkSink {
        dm: &dm,
        console,
        acks: Mutex::new(0),
        log_device_path: pclog.to_string_lossy().into_owned(),
        size_sectors: data.size_sectors,
        cut_after_durable_ack: match &job {
            Job::Fresh(_) => workload.power_cut_after_ack(),
            Job::ContinueAfterCrash { .. } => None,
        },
        durable_acks: AtomicU64::new(0),
        log_disk_name: log.name.clone(),
    };
    let mount_point = Path::new(MOUNT_POINT);
    mount::mount(&pcdata, mount_point, workload.filesystem.name()).map_err(|e| e.to_string())?;
    let root = mount_point.join("pc");
    std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let started = Instant::now();
    let summary_json = match &job {
        Job::Fresh(_) => {
            let summary =
                executor::execute(workload, &root, &sink).map_err(|e| format!("workload: {e}"))?;
            execution_json(&summary)
        }
        Job::ContinueAfterCrash { prior_acks, .. } => {
            let outcome = executor::continue_after_crash(workload, &root, prior_acks, &sink)
                .map_err(|e| format!("after crash: {e}"))?;
            serde_json::json!({
                "continued_after_crash": true,
                "prior_acks": prior_acks.len(),
                "recovered_records": outcome.recovered_records,
                "truncated_tail": outcome.truncated_tail,
                "prior_violations": outcome.prior_violations.len(),
                "execution": outcome.execution.as_ref().map(execution_json),
            })
        }
    };
    let workload_s = started.elapsed().as_secs_f64();
    mount::unmount(mount_point).map_err(|e| e.to_string())?;
    // After the unmount every write has been flushed, so the status covers the whole run.
    let status = dm
        .status(LOG_DEVICE)
        .map_err(|e| e.to_string())?
        .first()
        .and_then(|s| LogWritesStatus::parse(&s.status))
        .ok_or("dm-log-writes status is unreadable")?;
    dm.remove_device(DATA_DEVICE).map_err(|e| e.to_string())?;
    dm.remove_device(LOG_DEVICE).map_err(|e| e.to_string())?;
    nix::unistd::sync();
    let kernel_errors =
        kmsg::matching_lines(&["log-writes", "Ran out of space"]).unwrap_or_default();
    Ok(DoneReport {
        acks: sink.count(),
        log_entries: status.logged_entries,
        log_last_sector: status.last_sector,
        logging_disabled: status.logging_disabled,
        kernel_errors,
        workload_s,
        summary: summary_json,
    })
}

fn execution_json(summary: &executor::ExecutionSummary) -> serde_json::Value {
    serde_json::json!({
        "acks": summary.acks,
        "records": summary.records,
        "record_bytes": summary.record_bytes,
        "file_ops": summary.file_ops,
        "elapsed_s": summary.elapsed.as_secs_f64(),
        "open_reports": summary.open_reports,
        "records_failed": summary.records_failed,
        "poisoned_refusals": summary.poisoned_refusals,
        "findings": summary.findings.len(),
    })
}

fn main() {
    let console = Console::new(std::io::stdout());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = console.send(&GuestMessage::Ready {
        uptime_s: powercut_workloads::guest::uptime_s().unwrap_or(-1.0),
        kernel: kernel.trim().to_string(),
    });
    match run(&console) {
        Ok(report) => {
            let _ = console.send(&GuestMessage::Done(report));
        }
        Err(message) => {
            for line in kmsg::matching_lines(KERNEL_NEEDLES).unwrap_or_default() {
                let _ = console.plain(&format!("kernel: {line}"));
            }
            let _ = console.send(&GuestMessage::Error { message });
        }
    }
    let error = powercut_workloads::guest::sync_and_power_off();
    let _ = console.send(&GuestMessage::Error {
        message: format!("power off: {error}"),
    });
}
