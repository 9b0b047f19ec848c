//! The body of each `powercut` subcommand: its arguments, the check that no output is one of its
//! inputs, and the call into the module that does the work. `main` only parses and dispatches.

pub mod check;
pub mod image;
pub mod merge;
pub mod offline;
pub mod record;
pub mod report;
pub mod report_fixture;
pub mod run;
pub mod shrink;
pub mod sim;

use std::path::{Path, PathBuf};

use anyhow::Result;
use powercut_workloads::spec::Workload;

use crate::exit::{Incomplete, ViolationFound};
use crate::outputs::Io;
use crate::record::{RecordOptions, RECORDING_FILES};
use crate::vm::image::{BuildOptions, KernelFlavor};

/// How a workload is loaded and booted: shared by `run`, `record` and `shrink`.
#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Override the workload's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the workload's file system (an XFS data disk grows to the 300 MiB mkfs.xfs
    /// needs, with the log disk at 4x).
    #[arg(long, value_parser = ["ext4", "xfs"])]
    filesystem: Option<String>,
    #[arg(long, value_enum, default_value_t = KernelFlavor::Cloud)]
    kernel: KernelFlavor,
    /// Give up on the VM after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Use this static agent binary instead of building it from the workspace.
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Run a deliberately broken variant of the engine (M1 to M16; overrides the workload's
    /// `writer.mutant`); the agent is then built with the `mutants` feature.
    #[arg(long)]
    mutant: Option<powercut_writer::Mutant>,
    /// Let `exec:` steps with `user: root` run (the workload must say `allow_root_exec: true`
    /// too). Such a program can write the raw data device and craft an image that attacks
    /// this host's kernel when mounted (docs/programs.md).
    #[arg(long)]
    allow_root_exec: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// Where a recording is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendKind {
    /// A QEMU guest (TCG), the kernel of the guest image.
    Qemu,
    /// This host's device-mapper and kernel, no VM (root, dm-log-writes).
    Dm,
    /// Test aid: `--backend dm` run inside the guest by a static powercut.
    #[value(hide = true)]
    DmInGuest,
}

/// `--backend` and the dm backend's devices.
#[derive(Debug, clap::Args)]
pub struct BackendArgs {
    /// Record in a QEMU guest (default) or on this host's device-mapper (`dm`: root, the
    /// dm-log-writes target; see docs/dm-backend.md).
    #[arg(long, value_enum, default_value_t = BackendKind::Qemu)]
    backend: BackendKind,
    /// dm backend: record on this block device instead of a loop device (overwritten; never
    /// a device that is mounted or in use). Goes with --log-dev.
    #[arg(long, value_name = "DEV", requires = "log_dev")]
    data_dev: Option<PathBuf>,
    /// dm backend: the block log's device (zeroed first). Goes with --data-dev.
    #[arg(long, value_name = "DEV", requires = "data_dev")]
    log_dev: Option<PathBuf>,
    /// dm backend: directory of the loop devices' backing files (default: the output
    /// directory).
    #[arg(long, value_name = "DIR", conflicts_with = "data_dev")]
    scratch_dir: Option<PathBuf>,
    /// Test aid for `--backend dm-in-guest`: run powercut three times in the guest, the first
    /// interrupted (SIGINT) and the second killed (SIGKILL) this many milliseconds after they
    /// mounted; the third must clean up after the second.
    #[arg(long, hide = true, value_name = "MS")]
    guest_kill_first_after_ms: Option<u64>,
    /// Test aid for `--backend dm-in-guest` with a power cut: record the continuation after
    /// the cut in the guest too, into OUT/after-crash.
    #[arg(long, hide = true)]
    guest_continue_after_cut: bool,
    /// Test aid for `--backend dm-in-guest`: first try to record onto the guest's mounted work
    /// disk, which must be refused.
    #[arg(long, hide = true)]
    guest_refused_first: bool,
}

impl BackendArgs {
    /// The backend of [`RecordOptions`]; dm options without `--backend dm` are an error.
    fn backend(&self) -> Result<crate::record::Backend> {
        use crate::dm_backend::DmOptions;
        use crate::record::Backend;
        let dm = DmOptions {
            data_dev: self.data_dev.clone(),
            log_dev: self.log_dev.clone(),
            scratch_dir: self.scratch_dir.clone(),
        };
        let guest_only = self.guest_kill_first_after_ms.is_some()
            || self.guest_continue_after_cut
            || self.guest_refused_first;
        if guest_only && self.backend != BackendKind::DmInGuest {
            anyhow::bail!("the --guest-* test aids are for --backend dm-in-guest");
        }
        Ok(match self.backend {
            BackendKind::Qemu => {
                if dm != DmOptions::default() {
                    anyhow::bail!("--data-dev, --log-dev and --scratch-dir are for --backend dm");
                }
                Backend::Qemu
            }
            BackendKind::Dm => Backend::Dm(dm),
            BackendKind::DmInGuest => {
                Backend::DmInGuest(crate::dm_backend::guest::GuestDmOptions {
                    dm,
                    kill_first_after_ms: self.guest_kill_first_after_ms,
                    continue_after_cut: self.guest_continue_after_cut,
                    refused_first: self.guest_refused_first,
                    powercut: None,
                })
            }
        })
    }
}

impl VmArgs {
    fn load(&self, path: &Path) -> Result<Workload> {
        load_workload(path, self.seed, self.filesystem.as_deref(), self.mutant)
    }

    fn record_options(&self, workload: &Workload) -> Result<RecordOptions> {
        let mut options = RecordOptions::fresh(
            BuildOptions {
                flavor: self.kernel,
                agent: self.agent.clone(),
                mutants: workload.writer.mutant.is_some(),
                guest_packages: workload.guest_packages.clone(),
                guest_files: workload.guest_files.clone(),
            },
            std::time::Duration::from_secs(self.timeout),
        );
        options.backend = self.backend.backend()?;
        options.allow_root_exec = self.allow_root_exec;
        Ok(options)
    }
}

/// A workload file with the command line's overrides, validated again when any was given.
fn load_workload(
    path: &Path,
    seed: Option<u64>,
    filesystem: Option<&str>,
    mutant: Option<powercut_writer::Mutant>,
) -> Result<Workload> {
    use powercut_workloads::spec::{Filesystem, MIN_XFS_DISK_MIB};
    let mut workload = powercut_workloads::spec::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(seed) = seed {
        workload.seed = seed;
    }
    if mutant.is_some() {
        workload.writer.mutant = mutant;
    }
    match filesystem {
        Some("xfs") if workload.filesystem != Filesystem::Xfs => {
            workload.filesystem = Filesystem::Xfs;
            if workload.disk_mib < MIN_XFS_DISK_MIB {
                eprintln!(
                    "note: data disk grown from {} MiB to {MIN_XFS_DISK_MIB} MiB for XFS",
                    workload.disk_mib
                );
                workload.disk_mib = MIN_XFS_DISK_MIB;
                workload.log_mib = workload.log_mib.max(4 * MIN_XFS_DISK_MIB);
            }
        }
        Some("ext4") => workload.filesystem = Filesystem::Ext4,
        _ => {}
    }
    if seed.is_some() || filesystem.is_some() {
        workload.validate().map_err(|e| {
            anyhow::anyhow!("{} (after the command-line overrides): {e}", path.display())
        })?;
    }
    Ok(workload)
}

/// Exit code of a report: 1 when an invariant was violated, 4 when none was but not every crash
/// state was checked, 0 otherwise.
fn report_outcome(report: &powercut_oracles::report::Report) -> Result<()> {
    if !report.passed() {
        return Err(
            ViolationFound(format!("{} violations", report.all_violations().count())).into(),
        );
    }
    match report.not_covered() {
        Some(what) => Err(Incomplete(what).into()),
        None => Ok(()),
    }
}

/// The files of the recording in `dir`, as inputs of `io`.
fn recording_inputs(mut io: Io, what: &str, dir: &Path) -> Io {
    for name in RECORDING_FILES {
        io = io.input(&format!("{name} of {what}"), dir.join(name).as_path());
    }
    io
}
