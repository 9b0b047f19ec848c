//! `powercut record`: one workload in a VM, leaving the block log and everything needed to check
//! it in an output directory:
//!
//! | file           | what                                                                   |
//! |----------------|------------------------------------------------------------------------|
//! | `log.bin`      | the dm-log-writes block log (the whole log disk)                        |
//! | `base.img`     | the data disk as formatted (or as given), before the workload           |
//! | `final.img`    | the data disk after a clean shutdown; after a power cut, the log replayed onto `base.img` up to the cut's mark |
//! | `console.log`  | every console line                                                      |
//! | `ledger.jsonl` | acks as the agent reported them over serial, one JSON object a line     |
//! | `workload.json`| the workload as the guest got it                                        |
//! | `record.json`  | [`RecordSummary`]                                                       |
//! | `prior-acks.json` | continuation runs: the first run's acks handed to the guest          |
//!
//! [`RecordOptions::base_image`] starts from a given data disk instead of a formatted one;
//! [`RecordOptions::continue_after_crash`] makes the run the reboot after a power cut (I8): the
//! guest recovers the journal on that disk, checks the given acks of the first run and runs the
//! workload's after-crash steps.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use powercut_oracles::blocklog::BlockLog;
use powercut_oracles::replay::Replayer;
use powercut_workloads::ack::Ack;
use powercut_workloads::executor::RunFinding;
use powercut_workloads::guest::disks;
use powercut_workloads::guest::fault::FLUSH_FAULT_RESERVE_SECTORS;
use powercut_workloads::protocol::{self, DoneReport, GuestMessage, Job};
use powercut_workloads::spec::{Filesystem, Workload};

use crate::vm::image::{self, BuildOptions};
use crate::vm::progress::Progress;
use crate::vm::qemu::{Disk, RunningVm, VmConfig, KERNEL_APPEND};

/// What `record --out DIR` writes into DIR: the files of the module docs' table and `job.img`, the
/// job disk handed to the guest.
pub const RECORDING_FILES: [&str; 9] = [
    "log.bin",
    "base.img",
    "final.img",
    "job.img",
    "console.log",
    "ledger.jsonl",
    "workload.json",
    "record.json",
    PRIOR_ACKS_FILE,
];

/// The first run's acks, in the recording of the run after a power cut (what makes it one).
pub const PRIOR_ACKS_FILE: &str = "prior-acks.json";

/// Options of one recording.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub image: BuildOptions,
    /// Upper bound for the whole VM run.
    pub timeout: Duration,
    /// Start from a copy of this data disk instead of formatting one (it is also the log's base
    /// image).
    pub base_image: Option<PathBuf>,
    /// The reboot after a power cut: the first run's acks, which the guest checks against what
    /// it recovers before running the after-crash steps. Needs `base_image` (the crash image).
    pub continue_after_crash: Option<Vec<Ack>>,
    /// Where the recording is made (a VM by default).
    pub backend: Backend,
    /// `--allow-root-exec`: a workload's `exec:` steps may run as root (the workload must ask
    /// for it too, with `allow_root_exec: true`; docs/programs.md says why both are needed).
    pub allow_root_exec: bool,
}

/// Where a recording is made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    /// A QEMU guest (the default).
    #[default]
    Qemu,
    /// This host's device-mapper, no VM (`--backend dm`).
    Dm(crate::dm_backend::DmOptions),
    /// Test aid: `powercut record --backend dm` run inside the guest (a static build on a work
    /// disk), the recording copied back.
    DmInGuest(crate::dm_backend::guest::GuestDmOptions),
}

impl RecordOptions {
    /// A run from a freshly formatted disk.
    pub fn fresh(image: BuildOptions, timeout: Duration) -> Self {
        RecordOptions {
            image,
            timeout,
            base_image: None,
            continue_after_crash: None,
            backend: Backend::Qemu,
            allow_root_exec: false,
        }
    }
}

/// Reads the acks of a `ledger.jsonl` (as [`record`] writes it), in order.
pub fn read_ledger_acks(path: &Path) -> Result<Vec<Ack>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            #[derive(serde::Deserialize)]
            struct Line {
                ack: Ack,
            }
            serde_json::from_str::<Line>(line)
                .map(|l| l.ack)
                .with_context(|| format!("{} line {}: not a ledger entry", path.display(), i + 1))
        })
        .collect()
}

/// How the VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// The agent reported done and powered off.
    Clean,
    /// The host killed QEMU after the power-cut ack.
    Killed,
}

/// Which backend made a recording (`record.json`'s `backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedBy {
    /// A QEMU guest; a power cut kills QEMU.
    Qemu,
    /// Device-mapper without a VM (`--backend dm`, on a host or in a guest); a power cut turns
    /// the fault layer into `error`.
    Dm,
}

/// One ack as reported over serial (a line of `ledger.jsonl`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LedgerEntry {
    /// 1-based over every ack, start and end included.
    pub index: u64,
    pub label: String,
    pub ack: Ack,
    /// Seconds since QEMU started, when the host read the line.
    pub host_s: f64,
}

/// `record.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecordSummary {
    pub workload: String,
    pub seed: u64,
    pub filesystem: Filesystem,
    pub kernel_package: String,
    pub image_key: String,
    /// Absent in recordings made before the key existed (all on the qemu backend but those
    /// whose `image_key` is `dm-backend`).
    #[serde(default)]
    pub backend: Option<RecordedBy>,
    pub started_unix_s: u64,
    /// Guest kernel uptime when the agent started.
    pub boot_to_agent_s: Option<f64>,
    /// Host wall time from starting QEMU to the agent's ready line.
    pub host_boot_to_agent_s: Option<f64>,
    /// Host wall time of the whole VM run.
    pub vm_s: f64,
    /// Time the agent spent in the executor (clean runs).
    pub workload_s: Option<f64>,
    pub acks: u64,
    /// Durability acks (start and end not counted), what a power cut counts.
    pub durable_acks: u64,
    pub end: RunEnd,
    /// The durability ack the power cut followed.
    pub killed_after_ack: Option<u64>,
    /// Bytes of log in use (super plus entries found by scanning).
    pub log_bytes: u64,
    pub log_disk_bytes: u64,
    pub log_entries_scanned: u64,
    /// The log device ran out of space (the run then fails).
    pub log_filled: bool,
    pub done: Option<DoneReport>,
    /// The run continued after a power cut (started from a crash image).
    pub continued_after_crash: bool,
    /// Continuation runs: acks of the first run the guest checked.
    pub prior_acks: u64,
    /// What the guest found: on a continuation run, first-run acks the recovered state breaks;
    /// on any run, I7 findings after injected faults and reopens that lost acked records. The
    /// JSON key is older than the I7 findings.
    #[serde(rename = "prior_violations")]
    pub guest_findings: Vec<RunFinding>,
}

/// What [`record`] leaves behind.
#[derive(Debug, Clone)]
pub struct RecordOutcome {
    pub out: PathBuf,
    pub summary: RecordSummary,
    pub ledger: Vec<LedgerEntry>,
}

pub(crate) fn create_sized(path: &Path, bytes: u64) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(bytes)
        .with_context(|| format!("sizing {}", path.display()))?;
    Ok(())
}

/// Formats the data disk image on the host, lazy initialisation off so the guest's first writes
/// are the workload's. The file system spans `disk_mib`; the disk has
/// [`FLUSH_FAULT_RESERVE_SECTORS`] more, never written by the file system, where a flush fault
/// puts its failing piece.
pub(crate) fn format_data_disk(path: &Path, filesystem: Filesystem, disk_mib: u64) -> Result<()> {
    if filesystem == Filesystem::Xfs && disk_mib < 300 {
        bail!("XFS needs a data disk of at least 300 MiB (mkfs.xfs refuses smaller); disk_mib is {disk_mib}");
    }
    create_sized(path, (disk_mib << 20) + FLUSH_FAULT_RESERVE_SECTORS * 512)?;
    // mkfs.ext4 [options] DEVICE FS-SIZE; mkfs.xfs [options] -d size=S DEVICE.
    let path = path.as_os_str().to_owned();
    let (tool, args): (&str, Vec<std::ffi::OsString>) = match filesystem {
        Filesystem::Ext4 => (
            "mkfs.ext4",
            vec![
                "-F".into(),
                "-q".into(),
                "-E".into(),
                "lazy_itable_init=0,lazy_journal_init=0".into(),
                path,
                format!("{}k", disk_mib * 1024).into(),
            ],
        ),
        Filesystem::Xfs => (
            "mkfs.xfs",
            vec![
                "-f".into(),
                "-q".into(),
                "-d".into(),
                format!("size={disk_mib}m").into(),
                path,
            ],
        ),
    };
    let binary = crate::vm::provision::find_in_path(tool)
        .with_context(|| format!("{tool} is missing (install e2fsprogs / xfsprogs)"))?;
    let mut command = Command::new(binary);
    command.args(args);
    crate::vm::provision::run(&mut command)?;
    Ok(())
}

/// Runs `workload` in a VM and leaves the recording in `out` (see the module docs). A log
/// device that filled up is an error, after `record.json` is written.
pub fn record(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
    progress: &Progress,
) -> Result<RecordOutcome> {
    refuse_root_without_consent(workload, options)?;
    match &options.backend {
        Backend::Qemu => {}
        Backend::Dm(dm) => return crate::dm_backend::record(workload, out, options, dm, progress),
        Backend::DmInGuest(dm) => {
            return crate::dm_backend::guest::record(workload, out, options, dm, progress)
        }
    }
    workload
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid workload: {e}"))?;
    // A workload that selects a mutant needs an agent built with them.
    let image_options = BuildOptions {
        mutants: options.image.mutants || workload.writer.mutant.is_some(),
        guest_packages: workload.guest_packages.clone(),
        guest_files: workload.guest_files.clone(),
        ..options.image.clone()
    };
    let image = image::build(&image_options, progress)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started_unix_s = unix_now();
    let files = prepare_disks(workload, out, options, progress)?;
    let config = vm_config(&image, &files);
    // The run after a crash ends cleanly: its crash states come from its log.
    let continued = options.continue_after_crash.is_some();
    let cut_after = if continued {
        None
    } else {
        workload.power_cut_after_ack()
    };
    let booting = format!("{} ({})", image.kernel_package, workload.name);
    let (gathered, end, vm_s) =
        run_vm(&config, &files, out, options, cut_after, &booting, progress)?;
    let log_use = log_use(
        &files.log,
        out,
        files.log_disk_bytes,
        gathered.done.as_ref(),
    )?;
    if end == RunEnd::Killed {
        // The disk at the kill also holds writes made after the cut's ack, which the log's
        // check leaves out (they may be torn); the reboot starts from the state at the ack.
        let last = gathered
            .ledger
            .last()
            .context("a power cut before any ack")?;
        let entries = replay_to_cut(out, &last.label)?;
        progress.line(format!(
            "final.img: base.img with the {entries} log entries up to the cut's mark (what the \
             run after the power cut starts from)"
        ));
    }
    let summary = RecordSummary {
        workload: workload.name.clone(),
        seed: workload.seed,
        filesystem: workload.filesystem,
        kernel_package: image.kernel_package.clone(),
        image_key: image.key.clone(),
        backend: Some(RecordedBy::Qemu),
        started_unix_s,
        boot_to_agent_s: gathered.boot_to_agent_s,
        host_boot_to_agent_s: gathered.host_boot_to_agent_s,
        vm_s,
        workload_s: gathered.done.as_ref().map(|d| d.workload_s),
        acks: gathered.ledger.len() as u64,
        durable_acks: gathered.durable_acks,
        end,
        killed_after_ack: (end == RunEnd::Killed).then_some(gathered.durable_acks),
        log_bytes: log_use.end_bytes,
        log_disk_bytes: files.log_disk_bytes,
        log_entries_scanned: log_use.entries,
        log_filled: log_use.filled,
        done: gathered.done,
        continued_after_crash: continued,
        prior_acks: options
            .continue_after_crash
            .as_ref()
            .map_or(0, |a| a.len() as u64),
        guest_findings: gathered.guest_findings,
    };
    finish(out, summary, gathered.ledger, progress)
}

/// Makes `final.img` the state a reboot after the cut sees: `base.img` with every log entry up to
/// the mark of `label` (the cut's ack) applied, written into a fresh file. The second run of
/// the two-crash check (I8) starts from it. Returns the entries applied.
pub(crate) fn replay_to_cut(out: &Path, label: &str) -> Result<u64> {
    let log_path = out.join("log.bin");
    let log = BlockLog::open(&log_path)
        .with_context(|| format!("reading the block log {}", log_path.display()))?;
    let mark = log
        .find_mark(label)
        .with_context(|| format!("the cut's mark {label} is not in {}", log_path.display()))?;
    let fresh = out.join("final.img.replaying");
    std::fs::copy(out.join("base.img"), &fresh).context("copying base.img")?;
    let mut replayer = Replayer::new(&log, &fresh)?;
    replayer.advance_to(mark + 1)?;
    drop(replayer);
    std::fs::rename(&fresh, out.join("final.img")).context("replacing final.img")?;
    Ok(mark + 1)
}

/// A program that runs as root is run only when the command line says so as well as the
/// workload: the workload file may come from someone else, and such a program can write the raw
/// data device and craft an image that attacks the kernel of the host mounting it.
fn refuse_root_without_consent(workload: &Workload, options: &RecordOptions) -> Result<()> {
    if let Some(field) = workload.root_exec_step() {
        if !options.allow_root_exec {
            bail!(
                "{field} of workload {} runs a program as root: pass --allow-root-exec to \
                 allow it (a program with raw device access can craft an image that attacks \
                 this host's kernel when mounted; docs/programs.md)",
                workload.name
            );
        }
    }
    Ok(())
}

/// Boots the VM and gathers the agent's lines until it ends or the power cut; returns what was
/// gathered, how the run ended and how long the VM ran.
fn run_vm(
    config: &VmConfig,
    files: &DiskFiles,
    out: &Path,
    options: &RecordOptions,
    cut_after: Option<u64>,
    booting: &str,
    progress: &Progress,
) -> Result<(Gathered, RunEnd, f64)> {
    progress.line(format!(
        "booting {booting}{}",
        cut_after
            .map(|n| format!(", power cut after durable ack {n}"))
            .unwrap_or_default()
    ));
    let mut vm = RunningVm::spawn(config, &out.join("console.log"))?;
    let deadline = Instant::now() + options.timeout;
    let mut gathered = Gathered::default();
    gathered.listen(
        &mut vm,
        deadline,
        options.timeout,
        &files.ledger,
        cut_after,
        progress,
    )?;
    let end = wait_for_end(&mut vm, deadline, &mut gathered)?;
    let vm_s = vm.started.elapsed().as_secs_f64();
    drop(vm);
    let _ = std::fs::remove_file(&files.job);
    Ok((gathered, end, vm_s))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The files of a recording the VM gets as disks.
struct DiskFiles {
    data_disk: PathBuf,
    log: PathBuf,
    job: PathBuf,
    ledger: PathBuf,
    log_disk_bytes: u64,
}

/// Writes `workload.json` (and `prior-acks.json` for a continuation) after removing the files
/// of an older recording in `out`; returns the job. Shared by both backends.
pub(crate) fn write_job_files(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
) -> Result<Job> {
    if options.continue_after_crash.is_some() && options.base_image.is_none() {
        bail!("continuing after a crash needs the crash image as the base image");
    }
    for stale in [
        "base.img",
        "log.bin",
        "ledger.jsonl",
        "record.json",
        PRIOR_ACKS_FILE,
    ] {
        let _ = std::fs::remove_file(out.join(stale));
    }
    std::fs::write(out.join("workload.json"), workload.to_json())?;
    Ok(match &options.continue_after_crash {
        None => Job::Fresh(workload.clone()),
        Some(prior_acks) => {
            std::fs::write(
                out.join(PRIOR_ACKS_FILE),
                serde_json::to_vec_pretty(prior_acks)?,
            )?;
            Job::ContinueAfterCrash {
                workload: workload.clone(),
                prior_acks: prior_acks.clone(),
            }
        }
    })
}

/// Writes the workload and the job, and makes the data disk (formatted or copied from the
/// given base), its pristine copy `base.img` and an empty log disk.
fn prepare_disks(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
    progress: &Progress,
) -> Result<DiskFiles> {
    let job_json = write_job_files(workload, out, options)?.to_json();
    let files = DiskFiles {
        data_disk: out.join("final.img"),
        log: out.join("log.bin"),
        job: out.join("job.img"),
        ledger: out.join("ledger.jsonl"),
        log_disk_bytes: workload.log_mib << 20,
    };
    let base = out.join("base.img");
    make_data_disk(workload, &files.data_disk, options, progress)?;
    std::fs::copy(&files.data_disk, &base).context("copying the pristine base image")?;
    // A fresh log every run: stale entries of a longer old log would be scanned as real.
    create_sized(&files.log, files.log_disk_bytes)?;
    std::fs::write(&files.job, protocol::encode_job(job_json.as_bytes()))?;
    Ok(files)
}

/// The data disk: a copy of the given base image, or a freshly formatted one.
pub(crate) fn make_data_disk(
    workload: &Workload,
    data_disk: &Path,
    options: &RecordOptions,
    progress: &Progress,
) -> Result<()> {
    match &options.base_image {
        Some(given) => {
            if given.canonicalize().ok() == data_disk.canonicalize().ok() {
                bail!(
                    "the base image {} is this recording's own data disk: give a copy or another \
                     output directory",
                    given.display()
                );
            }
            std::fs::copy(given, data_disk).with_context(|| {
                format!(
                    "copying the base image {} to the data disk",
                    given.display()
                )
            })?;
            Ok(())
        }
        None => progress.step(
            &format!(
                "formatting {} MiB {}",
                workload.disk_mib,
                workload.filesystem.name()
            ),
            || format_data_disk(data_disk, workload.filesystem, workload.disk_mib),
        ),
    }
}

fn vm_config(image: &image::GuestImage, files: &DiskFiles) -> VmConfig {
    VmConfig {
        qemu: image.qemu.clone(),
        kernel: image.kernel.clone(),
        initrd: image.initrd.clone(),
        disks: vec![
            Disk {
                path: files.data_disk.clone(),
                serial: disks::DATA_SERIAL.into(),
                read_only: false,
            },
            Disk {
                path: files.log.clone(),
                serial: disks::LOG_SERIAL.into(),
                read_only: false,
            },
            Disk {
                path: files.job.clone(),
                serial: disks::JOB_SERIAL.into(),
                read_only: true,
            },
        ],
        memory_mib: 512,
        append: KERNEL_APPEND.into(),
    }
}

/// What the host gathered from the agent's lines during a run.
#[derive(Default)]
struct Gathered {
    ledger: Vec<LedgerEntry>,
    durable_acks: u64,
    boot_to_agent_s: Option<f64>,
    host_boot_to_agent_s: Option<f64>,
    done: Option<DoneReport>,
    guest_error: Option<String>,
    guest_findings: Vec<RunFinding>,
    /// The host cut the power after the durable ack the workload names.
    killed: bool,
}

impl Gathered {
    /// Reads the agent's lines until the VM ends or the power cut, writing `ledger.jsonl`.
    fn listen(
        &mut self,
        vm: &mut RunningVm,
        deadline: Instant,
        timeout: Duration,
        ledger_path: &Path,
        cut_after: Option<u64>,
        progress: &Progress,
    ) -> Result<()> {
        let mut ledger_file = File::create(ledger_path)?;
        let mut last_progress = Instant::now();
        loop {
            let line = match vm.next_line(deadline) {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    vm.kill()?;
                    bail!(
                        "{e} after {:.0}s; console tail:\n{}",
                        timeout.as_secs_f64(),
                        vm.tail()
                    );
                }
            };
            let Some(message) = GuestMessage::parse_line(&line) else {
                continue;
            };
            let message = message.context("garbled agent line")?;
            let host_s = vm.started.elapsed().as_secs_f64();
            if let GuestMessage::Progress { what, .. } = &message {
                if last_progress.elapsed() > Duration::from_secs(2) {
                    progress.line(format!("guest: {what}"));
                    last_progress = Instant::now();
                }
                continue;
            }
            if let GuestMessage::Ack { index, label, ack } = message {
                let entry = LedgerEntry {
                    index,
                    label,
                    ack,
                    host_s,
                };
                writeln!(ledger_file, "{}", serde_json::to_string(&entry)?)?;
                if self.ack(entry, cut_after) {
                    vm.kill()?;
                    progress.line(format!(
                        "power cut: killed QEMU after durable ack {}",
                        self.durable_acks
                    ));
                    self.killed = true;
                    break;
                }
                continue;
            }
            self.other(message, host_s, progress);
        }
        ledger_file.flush()?;
        Ok(())
    }

    /// Records an ack; true when the power is to be cut after it.
    fn ack(&mut self, entry: LedgerEntry, cut_after: Option<u64>) -> bool {
        let durable = !matches!(entry.ack, Ack::Start { .. } | Ack::End { .. });
        self.ledger.push(entry);
        if durable {
            self.durable_acks += 1;
        }
        durable && Some(self.durable_acks) == cut_after
    }

    /// Every message but progress and acks.
    fn other(&mut self, message: GuestMessage, host_s: f64, progress: &Progress) {
        match message {
            GuestMessage::Ready { uptime_s, kernel } => {
                self.boot_to_agent_s = Some(uptime_s);
                self.host_boot_to_agent_s = Some(host_s);
                progress.line(format!(
                    "agent ready on {kernel}: guest uptime {uptime_s:.2}s, host {host_s:.2}s"
                ));
            }
            GuestMessage::Done(report) => self.done = Some(report),
            GuestMessage::Error { message } => self.guest_error = Some(message),
            GuestMessage::RunFinding(finding) => {
                // I7 findings come from the run itself (fault injection), the others from the
                // run after a power cut.
                let when = if finding.invariant == "I7" {
                    "during the run"
                } else {
                    "after the crash"
                };
                progress.line(format!(
                    "guest: {} {when}: expected {}; found {}",
                    finding.invariant, finding.expected, finding.found
                ));
                self.guest_findings.push(finding);
            }
            GuestMessage::Progress { .. } | GuestMessage::Ack { .. } => {}
        }
    }
}

/// How the run ended: the power cut, or the VM's own end after the agent reported done.
fn wait_for_end(vm: &mut RunningVm, deadline: Instant, gathered: &mut Gathered) -> Result<RunEnd> {
    if gathered.killed {
        return Ok(RunEnd::Killed);
    }
    let status = vm.wait(deadline)?;
    if let Some(message) = &gathered.guest_error {
        bail!(
            "the guest agent failed: {message}\nconsole tail:\n{}",
            vm.tail()
        );
    }
    if gathered.done.is_none() {
        bail!(
            "the VM ended ({status}) without the agent reporting done; console tail:\n{}",
            vm.tail()
        );
    }
    Ok(RunEnd::Clean)
}

/// How much of the log disk the recording used.
pub(crate) struct LogUse {
    /// First byte past the last entry.
    pub end_bytes: u64,
    pub entries: u64,
    /// The log device ran out of space.
    pub filled: bool,
}

pub(crate) fn log_use(
    log_path: &Path,
    out: &Path,
    log_disk_bytes: u64,
    done: Option<&DoneReport>,
) -> Result<LogUse> {
    let log = BlockLog::open(log_path)
        .with_context(|| format!("reading the block log {}", log_path.display()))?;
    let kernel_says_full = done.is_some_and(|d| {
        d.logging_disabled
            || d.kernel_errors
                .iter()
                .any(|e| e.contains("Ran out of space"))
    });
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    // dm-log-writes stops logging once the next entry would not fit; within 1 MiB of the end
    // nothing tells a full log from a nearly full one, so both count as full.
    let filled = kernel_says_full
        || console.contains("Ran out of space on the logdev")
        || log.end_bytes() + (1 << 20) >= log_disk_bytes;
    Ok(LogUse {
        end_bytes: log.end_bytes(),
        entries: log.entries().len() as u64,
        filled,
    })
}

/// Writes `record.json`; a log device that filled up is an error after that.
pub(crate) fn finish(
    out: &Path,
    summary: RecordSummary,
    ledger: Vec<LedgerEntry>,
    progress: &Progress,
) -> Result<RecordOutcome> {
    std::fs::write(
        out.join("record.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    if summary.log_filled {
        bail!(
            "the log device filled up ({} of {} bytes used): writes after that point are missing \
             from the log; raise log_mib in the workload",
            summary.log_bytes,
            summary.log_disk_bytes
        );
    }
    progress.line(format!(
        "recorded {} acks, {:.1} MiB of log, {:?} end, in {:.1}s",
        summary.acks,
        summary.log_bytes as f64 / (1 << 20) as f64,
        summary.end,
        summary.vm_s
    ));
    Ok(RecordOutcome {
        out: out.to_path_buf(),
        summary,
        ledger,
    })
}
