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
//!
//! The stack, marks, faults and teardown are `powercut_workloads::stack`, which `powercut record
//! --backend dm` uses on a host as well. With `powercut.mode=dm-backend` on the kernel command
//! line the agent instead runs the static `powercut` of the work disk (serial `pc-work`) with
//! that disk's `args`: the dm backend, tested inside the guest.

use std::fs::File;
use std::io::Stdout;
use std::path::Path;

use nix::sys::signal::Signal;
use powercut_workloads::guest::disks::{self, BlockDisk};
use powercut_workloads::guest::dm::DmControl;
use powercut_workloads::guest::serial::Console;
use powercut_workloads::guest::{kmsg, mount};
use powercut_workloads::protocol::{self, DoneReport, GuestMessage, Job};
use powercut_workloads::stack::{self, CutMode, JobSetup, StackDevice, StackNames};

const MOUNT_POINT: &str = "/mnt";
/// A word of the kernel command line that makes the agent run `powercut` from the work disk
/// (`powercut record --backend dm` inside the guest) instead of a job of its own.
const DM_BACKEND_MODE: &str = "powercut.mode=dm-backend";
/// Where the work disk is mounted in that mode; it holds `powercut` and `args` (one a line).
const WORK_MOUNT: &str = "/work";
/// Kernel log lines worth forwarding to the host.
const KERNEL_NEEDLES: &[&str] = &[
    "log-writes",
    "device-mapper",
    "Ran out of space",
    "XFS",
    "EXT4-fs error",
];

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

fn stack_device(disk: &BlockDisk) -> StackDevice {
    StackDevice {
        name: disk.name.clone(),
        maj_min: disk.maj_min.clone(),
        size_sectors: disk.size_sectors,
    }
}

fn run(console: &Console<Stdout>) -> Result<DoneReport, String> {
    let job = read_job()?;
    let data = find_disk(disks::DATA_SERIAL)?;
    let log = find_disk(disks::LOG_SERIAL)?;
    let dm = DmControl::open().map_err(|e| e.to_string())?;
    let setup = JobSetup {
        dm: &dm,
        names: StackNames::guest(),
        data: stack_device(&data),
        log: stack_device(&log),
        mount_point: MOUNT_POINT.into(),
        cut: CutMode::HostKills,
        stop: None,
    };
    let mut done = stack::run_job(&setup, &job, console)?.done;
    done.kernel_errors =
        kmsg::matching_lines(&["log-writes", "Ran out of space"]).unwrap_or_default();
    Ok(done)
}

/// How long a run to be killed is given to mount its file system.
const KILL_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// One `powercut` run of the dm-backend mode: its arguments, and when a test kills it.
struct PowercutRun {
    args: Vec<String>,
    /// Send this signal this long after the run mounted its file system.
    signal_after: Option<(Signal, std::time::Duration)>,
}

/// Runs of the work disk's `args`: one argument a line, runs separated by an empty line; a run
/// whose first line is `kill-after-mount-ms=N` (or `interrupt-after-mount-ms=N`) gets SIGKILL
/// (SIGINT) N ms after it mounted its file system: a crash (a Ctrl-C) midway, with the stack up.
fn parse_runs(text: &str) -> Result<Vec<PowercutRun>, String> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut lines: Vec<&str> = block.lines().filter(|l| !l.is_empty()).collect();
            let mut signal_after = None;
            for (prefix, signal) in [
                ("kill-after-mount-ms=", Signal::SIGKILL),
                ("interrupt-after-mount-ms=", Signal::SIGINT),
            ] {
                if let Some(ms) = lines.first().and_then(|l| l.strip_prefix(prefix)) {
                    let ms: u64 = ms
                        .parse()
                        .map_err(|_| format!("args: bad {prefix}{ms:?}"))?;
                    signal_after = Some((signal, std::time::Duration::from_millis(ms)));
                    lines.remove(0);
                    break;
                }
            }
            Ok(PowercutRun {
                args: lines.into_iter().map(String::from).collect(),
                signal_after,
            })
        })
        .collect()
}

/// Runs `/work/powercut` once (output on the console); its exit code, `None` when killed.
fn run_powercut_once(run: &PowercutRun, console: &Console<Stdout>) -> Result<Option<i32>, String> {
    let _ = console.send(&GuestMessage::Progress {
        what: format!("running powercut {}", run.args.join(" ")),
        detail: serde_json::Value::Null,
    });
    let mut child = std::process::Command::new(Path::new(WORK_MOUNT).join("powercut"))
        .args(&run.args)
        .current_dir(WORK_MOUNT)
        .spawn()
        .map_err(|e| format!("starting {WORK_MOUNT}/powercut: {e}"))?;
    if let Some((signal, after)) = run.signal_after {
        let mounts = || leftovers(None)["mounts"].as_array().map_or(0, Vec::len);
        let started = std::time::Instant::now();
        while mounts() == 0 && started.elapsed() < KILL_WAIT_LIMIT {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(after);
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for powercut: {e}"))?;
    Ok(status.code())
}

/// What the runs left behind: dm devices, mounts besides the agent's own, attached loop
/// devices. Empty after a correct teardown.
fn leftovers(dm: Option<&DmControl>) -> serde_json::Value {
    let devices: Vec<String> = dm
        .and_then(|dm| dm.devices().ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let ours = ["/", "/proc", "/sys", "/dev", WORK_MOUNT];
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|point| !ours.contains(&point.as_str()))
        .collect();
    let loops: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("loop/backing_file").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({ "dm_devices": devices, "mounts": mounts, "loop_devices": loops })
}

/// The dm-backend mode: mounts the work disk, runs its `powercut` with its `args`, writes what
/// happened (exit codes, leftovers) to `guest.json` on the work disk, unmounts and reports.
fn run_powercut(console: &Console<Stdout>) -> Result<DoneReport, String> {
    let work = find_disk(disks::WORK_SERIAL)?;
    let mount_point = Path::new(WORK_MOUNT);
    mount::mount(&work.dev_path, mount_point, "ext4").map_err(|e| e.to_string())?;
    let args_path = mount_point.join("args");
    let runs = std::fs::read_to_string(&args_path)
        .map_err(|e| format!("reading {}: {e}", args_path.display()))
        .and_then(|text| parse_runs(&text));
    let started = std::time::Instant::now();
    let exits = runs.and_then(|runs| {
        runs.iter()
            .map(|run| run_powercut_once(run, console))
            .collect::<Result<Vec<_>, String>>()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let dm = DmControl::open().ok();
    let status = serde_json::json!({
        "exit_codes": exits.as_ref().ok(),
        "error": exits.as_ref().err(),
        "powercut_s": elapsed,
        "leftovers": leftovers(dm.as_ref()),
    });
    let written = std::fs::write(mount_point.join("guest.json"), status.to_string())
        .map_err(|e| format!("writing guest.json: {e}"));
    mount::unmount(mount_point).map_err(|e| e.to_string())?;
    written?;
    exits?;
    Ok(DoneReport {
        acks: 0,
        log_entries: 0,
        log_last_sector: 0,
        logging_disabled: false,
        kernel_errors: Vec::new(),
        workload_s: elapsed,
        summary: status,
    })
}

fn main() {
    let console = Console::new(std::io::stdout());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = console.send(&GuestMessage::Ready {
        uptime_s: powercut_workloads::guest::uptime_s().unwrap_or(-1.0),
        kernel: kernel.trim().to_string(),
    });
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let outcome = if cmdline.split_whitespace().any(|w| w == DM_BACKEND_MODE) {
        run_powercut(&console)
    } else {
        run(&console)
    };
    match outcome {
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
