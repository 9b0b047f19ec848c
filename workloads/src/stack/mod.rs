//! The recording stack, shared by the guest agent (qemu backend) and `powercut record --backend
//! dm` (a Linux host with device-mapper):
//!
//! ```text
//! data device -> LOG (dm-log-writes, log device beside it) -> DATA (linear, the fault layer) -> fs
//! ```
//!
//! [`Stack`] creates the two dm devices, writes acks as MARKs on LOG (`DM_TARGET_MSG`, in
//! process), swaps DATA's table for fault injection and power cuts, waits for the log to settle
//! and removes both devices, DATA first, when dropped. [`run_job`] mounts DATA, runs the
//! workload's executor with a [`StackSink`] and ends the recording cleanly (unmount, status,
//! removal), tearing everything down in order on any error too.
//!
//! Devices a process makes are named [`StackNames::for_process`] (`powercut-<pid>-log`,
//! `powercut-<pid>-data`) so that [`clean_leftovers`] can tell the leftovers of a crashed run
//! from anyone else's devices; the guest, which owns its whole kernel, uses
//! [`StackNames::guest`].

mod sink;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use sink::{AckCosts, CutMode, Reporter, StackSink};

use crate::executor;
use crate::guest::dm::{self, DmControl, LogWritesStatus, SuspendFlags};
use crate::guest::mount;
use crate::protocol::{DoneReport, Job};

/// Prefix of every dm device a host run creates.
pub const NAME_PREFIX: &str = "powercut-";

/// Names of the two dm devices of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackNames {
    /// dm-log-writes (marks go here).
    pub log: String,
    /// The fault layer the file system lives on.
    pub data: String,
}

impl StackNames {
    /// The guest's names: `pclog`, `pcdata`.
    pub fn guest() -> Self {
        StackNames {
            log: "pclog".into(),
            data: "pcdata".into(),
        }
    }

    /// The names of process `pid` on a host: `powercut-<pid>-log`, `powercut-<pid>-data`.
    pub fn for_process(pid: u32) -> Self {
        StackNames {
            log: format!("{NAME_PREFIX}{pid}-log"),
            data: format!("{NAME_PREFIX}{pid}-data"),
        }
    }

    /// The process that made the host dm device `name` (`powercut-<pid>-log|data`), if it is one.
    pub fn owner(name: &str) -> Option<u32> {
        let rest = name.strip_prefix(NAME_PREFIX)?;
        let (pid, role) = rest.split_once('-')?;
        if role != "log" && role != "data" {
            return None;
        }
        pid.parse().ok()
    }
}

/// A block device the stack is built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackDevice {
    /// Kernel name (`vda`, `loop3`), for its counters under `/sys/class/block`.
    pub name: String,
    /// `MAJ:MIN`, as dm tables take it.
    pub maj_min: String,
    /// Size in 512-byte sectors.
    pub size_sectors: u64,
}

/// A stack operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A device-mapper command failed.
    #[error(transparent)]
    Dm(#[from] dm::DmError),
    /// The dm-log-writes status could not be read.
    #[error("dm-log-writes status of {name} is unreadable: {status:?}")]
    Status {
        /// The log device.
        name: String,
        /// What the kernel said.
        status: String,
    },
    /// The log did not settle before a power cut.
    #[error("the block log did not settle within {}s before the power cut", LOG_SETTLE_LIMIT.as_secs())]
    Unsettled,
    /// Reading a sysfs counter failed.
    #[error("reading {path}: {source}")]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Polls of the log's progress before a power cut, and the gap between two.
const LOG_SETTLE_POLLS: u32 = 3;
const LOG_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A log that never settles (a workload still writing from other threads) is waited on at most
/// this long.
const LOG_SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// The two dm devices of a recording; dropping it removes them (DATA first).
#[derive(Debug)]
pub struct Stack<'a> {
    dm: &'a DmControl,
    names: StackNames,
    /// `/dev/mapper/LOG`, what the fault layer maps onto.
    log_path: PathBuf,
    data_path: PathBuf,
    size_sectors: u64,
    log_disk: String,
    removed: bool,
}

impl<'a> Stack<'a> {
    /// Creates LOG = `log-writes data log` and DATA = linear over LOG, `data.size_sectors`
    /// long. On failure nothing is left behind.
    pub fn create(
        dm: &'a DmControl,
        names: StackNames,
        data: &StackDevice,
        log: &StackDevice,
    ) -> Result<Self, StackError> {
        let size_sectors = data.size_sectors;
        let log_path = dm.create_device(
            &names.log,
            &dm::log_writes_table(&data.maj_min, &log.maj_min, size_sectors),
        )?;
        let data_path = match dm.create_device(
            &names.data,
            &dm::linear_table(&log_path.to_string_lossy(), size_sectors),
        ) {
            Ok(path) => path,
            Err(e) => {
                let _ = dm.remove_device(&names.log);
                return Err(e.into());
            }
        };
        Ok(Stack {
            dm,
            names,
            log_path,
            data_path,
            size_sectors,
            log_disk: log.name.clone(),
            removed: false,
        })
    }

    /// The device node the file system goes on.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// The names of the two devices.
    pub fn names(&self) -> &StackNames {
        &self.names
    }

    /// Writes `label` as a MARK into the log (`DM_TARGET_MSG` "mark LABEL" on LOG).
    pub fn mark(&self, label: &str) -> Result<(), StackError> {
        Ok(self
            .dm
            .message(&self.names.log, 0, &format!("mark {label}"))?)
    }

    /// The dm-log-writes status.
    pub fn log_status(&self) -> Result<LogWritesStatus, StackError> {
        let statuses = self.dm.status(&self.names.log)?;
        let status = statuses
            .first()
            .map(|s| s.status.clone())
            .unwrap_or_default();
        LogWritesStatus::parse(&status).ok_or(StackError::Status {
            name: self.names.log.clone(),
            status,
        })
    }

    /// Swaps the table of the fault layer without freezing the file system (`--nolockfs`), so
    /// dirty pages stay dirty and meet the new table when they are written.
    pub fn swap_table(&self, table: &[dm::Target]) -> Result<(), StackError> {
        self.dm.suspend(
            &self.names.data,
            SuspendFlags {
                skip_lockfs: true,
                no_flush: false,
            },
        )?;
        let loaded = self.dm.load_table(&self.names.data, table);
        // Resume in any case: a suspended device under a mounted file system hangs it.
        let resumed = self.dm.resume(&self.names.data);
        loaded?;
        Ok(resumed?)
    }

    /// Waits until dm-log-writes has written out every entry queued so far: its count of logged
    /// entries stops moving and the log disk has no request in flight, `LOG_SETTLE_POLLS`
    /// polls in a row.
    pub fn wait_for_log_written(&self) -> Result<(), StackError> {
        let inflight_path = Path::new("/sys/class/block")
            .join(&self.log_disk)
            .join("inflight");
        let started = Instant::now();
        let mut last = None;
        let mut settled = 0;
        while settled < LOG_SETTLE_POLLS {
            if started.elapsed() > LOG_SETTLE_LIMIT {
                return Err(StackError::Unsettled);
            }
            std::thread::sleep(LOG_POLL_INTERVAL);
            let logged = self.log_status()?.logged_entries;
            let inflight =
                std::fs::read_to_string(&inflight_path).map_err(|source| StackError::Sysfs {
                    path: inflight_path.clone(),
                    source,
                })?;
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

    /// Removes DATA, then LOG (dm-log-writes logs its end mark and rewrites its super then).
    pub fn remove(mut self) -> Result<(), StackError> {
        self.removed = true;
        let data = self.dm.remove_device(&self.names.data);
        let log = self.dm.remove_device(&self.names.log);
        data?;
        Ok(log?)
    }
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.dm.remove_device(&self.names.data);
            let _ = self.dm.remove_device(&self.names.log);
        }
    }
}

/// A mounted file system, unmounted when dropped (on the error paths).
struct Mounted {
    target: PathBuf,
    mounted: bool,
}

impl Mounted {
    fn unmount(mut self) -> Result<(), mount::MountError> {
        self.mounted = false;
        mount::unmount(&self.target)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            let _ = mount::unmount(&self.target);
        }
    }
}

/// What [`run_job`] needs besides the job.
#[derive(Debug)]
pub struct JobSetup<'a> {
    /// The open dm control.
    pub dm: &'a DmControl,
    /// Names of the two dm devices.
    pub names: StackNames,
    /// The data device (holding the formatted file system or the crash image).
    pub data: StackDevice,
    /// The log device (zeroed).
    pub log: StackDevice,
    /// Where the file system is mounted.
    pub mount_point: PathBuf,
    /// What happens at the power-cut ack of a fresh job.
    pub cut: CutMode,
    /// Set from outside (Ctrl-C, a timeout): the next ack fails and the run ends.
    pub stop: Option<&'a AtomicBool>,
}

/// How a [`run_job`] ended.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// What the agent sends as `done`.
    pub done: DoneReport,
    /// The durable ack after which the recording was cut ([`CutMode::Local`]).
    pub cut_after_ack: Option<u64>,
}

/// Builds the stack, mounts, runs `job`, and ends the recording cleanly: unmount (every write
/// flushed into the log), dm-log-writes status, removal of DATA and LOG. On any error the same
/// teardown happens in the same order before the error is returned.
pub fn run_job(
    setup: &JobSetup<'_>,
    job: &Job,
    reporter: &dyn Reporter,
) -> Result<JobOutcome, String> {
    let workload = job.workload();
    let stack = Stack::create(setup.dm, setup.names.clone(), &setup.data, &setup.log)
        .map_err(|e| e.to_string())?;
    let cut_after = match job {
        Job::Fresh(_) => workload.power_cut_after_ack(),
        Job::ContinueAfterCrash { .. } => None,
    };
    let sink = StackSink::new(&stack, reporter, cut_after, setup.cut, setup.stop);
    mount::mount(
        stack.data_path(),
        &setup.mount_point,
        workload.filesystem.name(),
    )
    .map_err(|e| e.to_string())?;
    let mounted = Mounted {
        target: setup.mount_point.clone(),
        mounted: true,
    };
    let root = setup.mount_point.join("pc");
    std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let started = Instant::now();
    let summary = run_executor(job, &root, &sink);
    let workload_s = started.elapsed().as_secs_f64();
    let cut_after_ack = sink.cut_after_ack();
    let mut summary = match (summary, cut_after_ack) {
        (Ok(summary), _) => summary,
        (Err(_), Some(n)) => serde_json::json!({ "power_cut_after_ack": n }),
        (Err(e), None) => return Err(e),
    };
    summary["ack_costs"] = serde_json::to_value(sink.costs()).unwrap_or_default();
    mounted.unmount().map_err(|e| e.to_string())?;
    // After the unmount every write has been flushed, so the status covers the whole run.
    let status = stack.log_status().map_err(|e| e.to_string())?;
    let acks = sink.count();
    stack.remove().map_err(|e| e.to_string())?;
    nix::unistd::sync();
    Ok(JobOutcome {
        done: DoneReport {
            acks,
            log_entries: status.logged_entries,
            log_last_sector: status.last_sector,
            logging_disabled: status.logging_disabled,
            kernel_errors: Vec::new(),
            workload_s,
            summary,
        },
        cut_after_ack,
    })
}

/// Runs the executor for `job` and summarises it as the `done` report's JSON.
fn run_executor(job: &Job, root: &Path, sink: &StackSink<'_>) -> Result<serde_json::Value, String> {
    match job {
        Job::Fresh(workload) => {
            let summary =
                executor::execute(workload, root, sink).map_err(|e| format!("workload: {e}"))?;
            Ok(execution_json(&summary))
        }
        Job::ContinueAfterCrash {
            workload,
            prior_acks,
        } => {
            let outcome = executor::continue_after_crash(workload, root, prior_acks, sink)
                .map_err(|e| format!("after crash: {e}"))?;
            Ok(serde_json::json!({
                "continued_after_crash": true,
                "prior_acks": prior_acks.len(),
                "recovered_records": outcome.recovered_records,
                "truncated_tail": outcome.truncated_tail,
                "prior_violations": outcome.prior_violations.len(),
                "execution": outcome.execution.as_ref().map(execution_json),
            }))
        }
    }
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

/// What [`clean_leftovers`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Mount points unmounted.
    pub unmounted: Vec<PathBuf>,
    /// dm devices removed.
    pub removed: Vec<String>,
}

/// Removes the stacks of host runs whose process is gone (`powercut-<pid>-*` with no
/// `/proc/<pid>`): unmounts whatever is mounted from their DATA device, then removes DATA and
/// LOG. Devices with other names, and those of live processes, are never touched.
pub fn clean_leftovers(dm: &DmControl) -> Result<Leftovers, StackError> {
    let mut found = Leftovers::default();
    let mut devices = dm.devices()?;
    devices.retain(|(name, _)| {
        StackNames::owner(name)
            .is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists())
    });
    // DATA sits on LOG: remove every DATA before any LOG.
    devices.sort_by_key(|(name, _)| !name.ends_with("-data"));
    for (name, dev) in devices {
        let maj_min = format!(
            "{}:{}",
            nix::sys::stat::major(dev as nix::libc::dev_t),
            nix::sys::stat::minor(dev as nix::libc::dev_t)
        );
        for target in mount_points_of(&maj_min) {
            mount::unmount(&target).map_err(|e| StackError::Sysfs {
                path: target.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            // The crashed run's mount point, an empty directory now.
            let _ = std::fs::remove_dir(&target);
            found.unmounted.push(target);
        }
        dm.remove_device(&name)?;
        found.removed.push(name);
    }
    Ok(found)
}

/// Mount points of the block device `maj_min`, deepest first (`/proc/self/mountinfo`).
pub fn mount_points_of(maj_min: &str) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let device = fields.nth(2)?;
            let point = fields.nth(1)?;
            (device == maj_min).then(|| PathBuf::from(unescape_mountinfo(point)))
        })
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(value as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_back_from_names() {
        let names = StackNames::for_process(4242);
        assert_eq!(names.log, "powercut-4242-log");
        assert_eq!(StackNames::owner(&names.log), Some(4242));
        assert_eq!(StackNames::owner(&names.data), Some(4242));
        for other in [
            "pclog",
            "powercut-x-log",
            "powercut-12-cache",
            "vg0-root",
            "powercut-12",
        ] {
            assert_eq!(StackNames::owner(other), None, "{other}");
        }
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }
}
