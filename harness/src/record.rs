//! `powercut record`: one workload in a VM, leaving the block log and everything needed to check
//! it in an output directory:
//!
//! | file           | what                                                                   |
//! |----------------|------------------------------------------------------------------------|
//! | `log.bin`      | the dm-log-writes block log (the whole log disk)                        |
//! | `base.img`     | the data disk as formatted (or as given), before the workload           |
//! | `final.img`    | the data disk after the VM ended (clean shutdown, or at the power cut)  |
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
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use powercut_workloads::ack::Ack;
use powercut_workloads::executor::PriorViolation;
use powercut_workloads::guest::disks;
use powercut_workloads::guest::fault::FLUSH_FAULT_RESERVE_SECTORS;
use powercut_workloads::protocol::{self, DoneReport, GuestMessage, Job};
use powercut_workloads::spec::{Filesystem, Workload};

use crate::vm::image::{self, BuildOptions};
use crate::vm::progress::Progress;
use crate::vm::qemu::{Disk, RunningVm, VmConfig, KERNEL_APPEND};

/// Magic of the dm-log-writes super block.
const LOG_MAGIC: u64 = 0x006a_7366_7773_6872;
const SECTOR_BYTES: u64 = 512;

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
    "prior-acks.json",
];

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
}

impl RecordOptions {
    /// A run from a freshly formatted disk.
    pub fn fresh(image: BuildOptions, timeout: Duration) -> Self {
        RecordOptions {
            image,
            timeout,
            base_image: None,
            continue_after_crash: None,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// The agent reported done and powered off.
    Clean,
    /// The host killed QEMU after the power-cut ack.
    Killed,
}

/// One ack as reported over serial (a line of `ledger.jsonl`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LedgerEntry {
    /// 1-based over every ack, start and end included.
    pub index: u64,
    pub label: String,
    pub ack: Ack,
    /// Seconds since QEMU started, when the host read the line.
    pub host_s: f64,
}

/// `record.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordSummary {
    pub workload: String,
    pub seed: u64,
    pub filesystem: &'static str,
    pub kernel_package: String,
    pub image_key: String,
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
    /// Continuation runs: first-run acks the recovered state breaks, as the guest reported them.
    pub prior_violations: Vec<PriorViolation>,
}

/// What [`record`] leaves behind.
#[derive(Debug, Clone)]
pub struct RecordOutcome {
    pub out: PathBuf,
    pub summary: RecordSummary,
    pub ledger: Vec<LedgerEntry>,
}

/// Result of scanning a block log for its end (the oracles crate has the full reader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogScan {
    pub super_nr_entries: u64,
    pub entries: u64,
    /// First byte past the last valid entry.
    pub end_bytes: u64,
}

/// Walks entry headers from sector 1 until a zero or invalid header or the end of the file;
/// scans past the super's nr_entries, which lags behind after a kill.
pub fn scan_log(path: &Path) -> Result<LogScan> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut sector = [0u8; SECTOR_BYTES as usize];
    let read_at = |file: &mut File, offset: u64, buf: &mut [u8]| -> Result<bool> {
        use std::io::Seek;
        if offset + buf.len() as u64 > len {
            return Ok(false);
        }
        file.seek(std::io::SeekFrom::Start(offset))?;
        file.read_exact(buf)
            .with_context(|| format!("reading {} at {offset}", path.display()))?;
        Ok(true)
    };
    let u64_at = |buf: &[u8], at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
    if !read_at(&mut file, 0, &mut sector)? {
        bail!("{} is shorter than one sector", path.display());
    }
    if u64_at(&sector, 0) != LOG_MAGIC || u64_at(&sector, 8) != 1 {
        bail!(
            "{}: no dm-log-writes super (magic/version) at offset 0",
            path.display()
        );
    }
    let super_nr_entries = u64_at(&sector, 16);
    let sector_size = u64::from(u32::from_le_bytes(sector[24..28].try_into().unwrap()));
    if sector_size != SECTOR_BYTES {
        bail!(
            "{}: log sector size {sector_size}, expected 512",
            path.display()
        );
    }
    let mut offset = SECTOR_BYTES;
    let mut entries = 0;
    while read_at(&mut file, offset, &mut sector)? {
        let nr_sectors = u64_at(&sector, 8);
        let flags = u64_at(&sector, 16);
        if sector.iter().all(|&b| b == 0) || flags & !0x1f != 0 || flags == 0 && nr_sectors == 0 {
            break;
        }
        let data_sectors = if flags & 4 != 0 { 0 } else { nr_sectors };
        let next = offset + SECTOR_BYTES + data_sectors.saturating_mul(SECTOR_BYTES);
        if next > len {
            break;
        }
        offset = next;
        entries += 1;
    }
    Ok(LogScan {
        super_nr_entries,
        entries,
        end_bytes: offset,
    })
}

fn create_sized(path: &Path, bytes: u64) -> Result<()> {
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
fn format_data_disk(path: &Path, filesystem: Filesystem, disk_mib: u64) -> Result<()> {
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
    workload
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid workload: {e}"))?;
    // A workload that selects a mutant needs an agent built with them.
    let image_options = BuildOptions {
        mutants: options.image.mutants || workload.writer.mutant.is_some(),
        ..options.image.clone()
    };
    let image = image::build(&image_options, progress)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started_unix_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    if options.continue_after_crash.is_some() && options.base_image.is_none() {
        bail!("continuing after a crash needs the crash image as the base image");
    }
    std::fs::write(out.join("workload.json"), workload.to_json())?;
    let job_json = match &options.continue_after_crash {
        None => Job::Fresh(workload.clone()).to_json(),
        Some(prior_acks) => {
            std::fs::write(
                out.join("prior-acks.json"),
                serde_json::to_vec_pretty(prior_acks)?,
            )?;
            Job::ContinueAfterCrash {
                workload: workload.clone(),
                prior_acks: prior_acks.clone(),
            }
            .to_json()
        }
    };
    let data_disk = out.join("final.img");
    let base = out.join("base.img");
    let log = out.join("log.bin");
    let job = out.join("job.img");
    let ledger_path = out.join("ledger.jsonl");
    for stale in [
        &base,
        &log,
        &ledger_path,
        &out.join("record.json"),
        &out.join("prior-acks.json"),
    ] {
        let _ = std::fs::remove_file(stale);
    }
    match &options.base_image {
        Some(given) => {
            if given.canonicalize().ok() == data_disk.canonicalize().ok() {
                bail!(
                    "the base image {} is this recording's own data disk: give a copy or another \
                     output directory",
                    given.display()
                );
            }
            std::fs::copy(given, &data_disk).with_context(|| {
                format!(
                    "copying the base image {} to the data disk",
                    given.display()
                )
            })?;
        }
        None => progress.step(
            &format!(
                "formatting {} MiB {}",
                workload.disk_mib,
                workload.filesystem.name()
            ),
            || format_data_disk(&data_disk, workload.filesystem, workload.disk_mib),
        )?,
    }
    std::fs::copy(&data_disk, &base).context("copying the pristine base image")?;
    // A fresh log every run: stale entries of a longer old log would be scanned as real.
    let log_disk_bytes = workload.log_mib << 20;
    create_sized(&log, log_disk_bytes)?;
    std::fs::write(&job, protocol::encode_job(job_json.as_bytes()))?;

    let config = VmConfig {
        qemu: image.qemu.clone(),
        kernel: image.kernel.clone(),
        initrd: image.initrd.clone(),
        disks: vec![
            Disk {
                path: data_disk.clone(),
                serial: disks::DATA_SERIAL.into(),
                read_only: false,
            },
            Disk {
                path: log.clone(),
                serial: disks::LOG_SERIAL.into(),
                read_only: false,
            },
            Disk {
                path: job.clone(),
                serial: disks::JOB_SERIAL.into(),
                read_only: true,
            },
        ],
        memory_mib: 512,
        append: KERNEL_APPEND.into(),
    };
    // The run after a crash ends cleanly: its crash states come from its log.
    let continued = options.continue_after_crash.is_some();
    let cut_after = if continued {
        None
    } else {
        workload.power_cut_after_ack()
    };
    progress.line(format!(
        "booting {} ({}){}",
        image.kernel_package,
        workload.name,
        cut_after
            .map(|n| format!(", power cut after durable ack {n}"))
            .unwrap_or_default()
    ));
    let mut vm = RunningVm::spawn(&config, &out.join("console.log"))?;
    let deadline = Instant::now() + options.timeout;
    let mut ledger_file = File::create(&ledger_path)?;
    let mut ledger = Vec::new();
    let mut durable_acks = 0u64;
    let mut boot_to_agent_s = None;
    let mut host_boot_to_agent_s = None;
    let mut done = None;
    let mut guest_error = None;
    let mut prior_violations = Vec::new();
    let mut end = None;
    let mut last_progress = Instant::now();
    loop {
        let line = match vm.next_line(deadline) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                vm.kill()?;
                bail!(
                    "{e} after {:.0}s; console tail:\n{}",
                    options.timeout.as_secs_f64(),
                    vm.tail()
                );
            }
        };
        let Some(message) = GuestMessage::parse_line(&line) else {
            continue;
        };
        let message = message.context("garbled agent line")?;
        let host_s = vm.started.elapsed().as_secs_f64();
        match message {
            GuestMessage::Ready { uptime_s, kernel } => {
                boot_to_agent_s = Some(uptime_s);
                host_boot_to_agent_s = Some(host_s);
                progress.line(format!(
                    "agent ready on {kernel}: guest uptime {uptime_s:.2}s, host {host_s:.2}s"
                ));
            }
            GuestMessage::Progress { what, .. } => {
                if last_progress.elapsed() > Duration::from_secs(2) {
                    progress.line(format!("guest: {what}"));
                    last_progress = Instant::now();
                }
            }
            GuestMessage::Ack { index, label, ack } => {
                let entry = LedgerEntry {
                    index,
                    label,
                    ack,
                    host_s,
                };
                writeln!(ledger_file, "{}", serde_json::to_string(&entry)?)?;
                let durable = !matches!(entry.ack, Ack::Start { .. } | Ack::End { .. });
                ledger.push(entry);
                if durable {
                    durable_acks += 1;
                    if Some(durable_acks) == cut_after {
                        vm.kill()?;
                        progress.line(format!(
                            "power cut: killed QEMU after durable ack {durable_acks}"
                        ));
                        end = Some(RunEnd::Killed);
                        break;
                    }
                }
            }
            GuestMessage::Done(report) => done = Some(report),
            GuestMessage::Error { message } => guest_error = Some(message),
            GuestMessage::PriorViolation(violation) => {
                // I7 findings come from the run itself (fault injection), the others from the
                // run after a power cut.
                let when = if violation.invariant == "I7" {
                    "during the run"
                } else {
                    "after the crash"
                };
                progress.line(format!(
                    "guest: {} {when}: expected {}; found {}",
                    violation.invariant, violation.expected, violation.found
                ));
                prior_violations.push(violation);
            }
        }
    }
    ledger_file.flush()?;
    let end = match end {
        Some(end) => end,
        None => {
            let status = vm.wait(deadline)?;
            if let Some(message) = guest_error {
                bail!(
                    "the guest agent failed: {message}\nconsole tail:\n{}",
                    vm.tail()
                );
            }
            if done.is_none() {
                bail!(
                    "the VM ended ({status}) without the agent reporting done; console tail:\n{}",
                    vm.tail()
                );
            }
            RunEnd::Clean
        }
    };
    let vm_s = vm.started.elapsed().as_secs_f64();
    drop(vm);
    let _ = std::fs::remove_file(&job);

    let scan = scan_log(&log)?;
    let kernel_says_full = done.as_ref().is_some_and(|d| {
        d.logging_disabled
            || d.kernel_errors
                .iter()
                .any(|e| e.contains("Ran out of space"))
    });
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    // dm-log-writes stops logging once the next entry would not fit; within 1 MiB of the end
    // nothing tells a full log from a nearly full one, so both count as full.
    let log_filled = kernel_says_full
        || console.contains("Ran out of space on the logdev")
        || scan.end_bytes + (1 << 20) >= log_disk_bytes;
    let summary = RecordSummary {
        workload: workload.name.clone(),
        seed: workload.seed,
        filesystem: workload.filesystem.name(),
        kernel_package: image.kernel_package.clone(),
        image_key: image.key.clone(),
        started_unix_s,
        boot_to_agent_s,
        host_boot_to_agent_s,
        vm_s,
        workload_s: done.as_ref().map(|d| d.workload_s),
        acks: ledger.len() as u64,
        durable_acks,
        end,
        killed_after_ack: (end == RunEnd::Killed).then_some(durable_acks),
        log_bytes: scan.end_bytes,
        log_disk_bytes,
        log_entries_scanned: scan.entries,
        log_filled,
        done,
        continued_after_crash: continued,
        prior_acks: options
            .continue_after_crash
            .as_ref()
            .map_or(0, |a| a.len() as u64),
        prior_violations,
    };
    std::fs::write(
        out.join("record.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    if log_filled {
        bail!(
            "the log device filled up ({} of {} bytes used): writes after that point are missing \
             from the log; raise log_mib in the workload",
            scan.end_bytes,
            log_disk_bytes
        );
    }
    progress.line(format!(
        "recorded {} acks, {:.1} MiB of log, {:?} end, in {:.1}s",
        summary.acks,
        scan.end_bytes as f64 / (1 << 20) as f64,
        end,
        vm_s
    ));
    Ok(RecordOutcome {
        out: out.to_path_buf(),
        summary,
        ledger,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(sector: u64, nr_sectors: u64, flags: u64, data_len: u64) -> Vec<u8> {
        let mut header = vec![0u8; 512];
        for (i, v) in [sector, nr_sectors, flags, data_len]
            .into_iter()
            .enumerate()
        {
            header[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        header
    }

    fn log_with(entries: &[Vec<u8>], nr_entries: u64, total_bytes: usize) -> Vec<u8> {
        let mut log = vec![0u8; 512];
        log[0..8].copy_from_slice(&LOG_MAGIC.to_le_bytes());
        log[8..16].copy_from_slice(&1u64.to_le_bytes());
        log[16..24].copy_from_slice(&nr_entries.to_le_bytes());
        log[24..28].copy_from_slice(&512u32.to_le_bytes());
        for e in entries {
            log.extend_from_slice(e);
        }
        log.resize(total_bytes.max(log.len()), 0);
        log
    }

    fn scan_bytes(bytes: &[u8]) -> Result<LogScan> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.bin");
        std::fs::write(&path, bytes).unwrap();
        scan_log(&path)
    }

    #[test]
    fn scan_walks_entries_past_a_stale_entry_count() {
        let mut write = entry(8, 2, 0, 0);
        write.extend_from_slice(&[7u8; 1024]);
        let mut mark = entry(0, 0, 8, 3);
        mark[32..35].copy_from_slice(b"s:x");
        let flush = entry(0, 0, 1, 0);
        // nr_entries says 1 (lagging, as after a kill): the scan still finds all three.
        let log = log_with(&[write, mark, flush], 1, 8192);
        let scan = scan_bytes(&log).unwrap();
        assert_eq!(
            scan,
            LogScan {
                super_nr_entries: 1,
                entries: 3,
                end_bytes: 512 + 1536 + 512 + 512
            }
        );
    }

    #[test]
    fn scan_rejects_a_missing_super_and_stops_at_bad_flags_or_truncation() {
        assert!(scan_bytes(&[0u8; 100]).is_err());
        assert!(scan_bytes(&[0u8; 1024]).is_err());
        let bad_flags = log_with(&[entry(1, 1, 1 << 9, 0)], 0, 4096);
        assert_eq!(scan_bytes(&bad_flags).unwrap().entries, 0);
        // Claims more data sectors than the file holds.
        let truncated = log_with(&[entry(1, 1 << 40, 0, 0)], 0, 4096);
        assert_eq!(scan_bytes(&truncated).unwrap().end_bytes, 512);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn scan_never_panics_on_arbitrary_logs(tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut log = log_with(&[], 0, 512);
            log.extend_from_slice(&tail);
            let _ = scan_bytes(&log);
            let _ = scan_bytes(&tail);
        }
    }
}
