//! The `powercut` command line: one subcommand per module.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod campaign;
mod check_cmds;
mod mutants;
mod outputs;
mod record;
mod shrink;
mod sim_tier;
mod two_crash;
mod vm;

use outputs::Io;
use vm::image::KernelFlavor;

/// Exit code: the harness itself failed (bad input, missing tool, VM error).
const EXIT_HARNESS_FAILURE: u8 = 2;
/// Exit code: skipped because a capability is missing (e.g. root is needed).
const EXIT_SKIPPED: u8 = 3;
/// Exit code: no invariant was violated, but not every crash state was checked.
const EXIT_INCOMPLETE: u8 = 4;

/// A check that found no violation but did not cover every crash state (exit code 4): no
/// evidence that the invariants hold on the rest.
#[derive(Debug)]
pub struct Incomplete(pub String);

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "incomplete: {}", self.0)
    }
}

impl std::error::Error for Incomplete {}

/// An error that means "skipped", not "failed" (exit code 3).
#[derive(Debug)]
pub struct Skipped(pub String);

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

impl std::error::Error for Skipped {}

#[derive(Debug, Parser)]
#[command(
    name = "powercut",
    version,
    about = "Crash-consistency testing under real kernels",
    after_help = "Exit codes: 0 every invariant held on every crash state; 1 an invariant was \
                  violated; 2 the harness itself failed (bad input, missing tool, VM error); 3 \
                  skipped (a capability is missing); 4 incomplete: no violation, but not every \
                  crash state was checked (the --budget ran out, or there was none to check)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Guest VM images (kernel + initramfs with the agent).
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Record a workload in a VM, then check every crash state of its block log.
    Run(RunArgs),
    /// Run one workload in a VM and record its block log, without checking it.
    Record(RecordArgs),
    /// Check every crash state of an existing recording (a `record --out` directory).
    Check(CheckRecordingArgs),
    /// Rebuild one crash state offline (no VM) and say what the oracle finds in it.
    Repro(ReproArgs),
    /// Replay a block log onto a base image up to an entry or a mark.
    Replay(ReplayArgs),
    /// Block logs.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Join the JSON reports of shards (`--shard K/N`) into one.
    Merge(MergeArgs),
    /// Parse a workload file and report errors with file, line and field.
    Workload {
        #[command(subcommand)]
        command: WorkloadCommand,
    },
    /// Run the engine's deliberately broken variants (M1-M10) on the bundled workloads that
    /// target them and show that each is caught, and that the real engine passes them.
    Mutants(mutants::MutantsArgs),
    /// Minimise a failing workload (fewer steps, fewer records) while it keeps violating the
    /// same invariant, then its crash state; writes OUT/minimal.yaml.
    Shrink(ShrinkArgs),
    /// Run a workload's journal steps in process on the simulated file system (no VM), which
    /// loses unsynced data and names whose directory was not fsynced, and check crash states
    /// after every file-system operation.
    Sim(SimArgs),
    /// Search for unknown bugs: generate workloads from a seed (every short sequence of an
    /// alphabet of operations, then random longer ones), check each in the sim tier or a VM,
    /// keep each finding once (by signature) with its reproducer, stop at the budget.
    Campaign(campaign::CampaignArgs),
}

#[derive(Debug, clap::Args)]
struct ShrinkArgs {
    /// Workload spec (YAML) that shows a violation.
    workload: PathBuf,
    /// Where each candidate runs: `vm` (recorded in QEMU and checked, ~20-60 s a run) or `sim`
    /// (in process, milliseconds a run; journal steps only).
    #[arg(long, value_parser = ["vm", "sim"], default_value = "vm")]
    tier: String,
    /// Stop trying candidates after this long (e.g. 10m); `--budget` bounds each candidate's
    /// crash-state check.
    #[arg(long, default_value = "15m", value_parser = check_cmds::parse_duration)]
    shrink_budget: std::time::Duration,
    /// Candidate recordings and minimal.yaml go here (default: out/shrink-WORKLOAD-SEED).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    vm: VmArgs,
    #[command(flatten)]
    check: check_cmds::CheckArgs,
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Workload file (file, fault and ingest-server steps have no simulated form: file and
    /// fault steps are skipped, ingest clients become concurrent appenders).
    workload: std::path::PathBuf,
    /// Seed of payloads and crash states (default: the workload's).
    #[arg(long)]
    seed: Option<u64>,
    /// Run a deliberately broken variant of the engine (needs a build with `--features
    /// mutants`).
    #[arg(long)]
    mutant: Option<powercut_writer::Mutant>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// How a workload is loaded and booted: shared by `run` and `record`.
#[derive(Debug, clap::Args)]
struct VmArgs {
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
    /// Run a deliberately broken variant of the engine (M1 to M13; overrides the workload's
    /// `writer.mutant`); the agent is then built with the `mutants` feature.
    #[arg(long)]
    mutant: Option<powercut_writer::Mutant>,
}

impl VmArgs {
    fn load(&self, path: &std::path::Path) -> anyhow::Result<powercut_workloads::spec::Workload> {
        load_workload(path, self.seed, self.filesystem.as_deref(), self.mutant)
    }

    fn record_options(
        &self,
        workload: &powercut_workloads::spec::Workload,
    ) -> record::RecordOptions {
        record::RecordOptions::fresh(
            vm::image::BuildOptions {
                flavor: self.kernel,
                agent: self.agent.clone(),
                mutants: workload.writer.mutant.is_some(),
            },
            std::time::Duration::from_secs(self.timeout),
        )
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Workload spec (YAML).
    workload: PathBuf,
    /// Output directory for the recording and the kept failing states
    /// (default: out/WORKLOAD-SEED).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    vm: VmArgs,
    /// Test aid, not for real runs: add this ack label (e.g. `r:999-999:00000000`) to the first
    /// run's acks handed to the run after the power cut and to its checker, as if the first run
    /// had acknowledged it. The I8 check must then report violations; tests use this to prove
    /// that it can fail. Repeatable.
    #[arg(long, hide = true)]
    forge_prior_ack: Vec<String>,
    #[command(flatten)]
    check: check_cmds::CheckArgs,
}

#[derive(Debug, clap::Args)]
struct CheckRecordingArgs {
    /// A directory written by `powercut record --out`.
    dir: PathBuf,
    #[command(flatten)]
    check: check_cmds::CheckArgs,
}

#[derive(Debug, clap::Args)]
struct ReproArgs {
    /// The state id printed in a report (e.g. 0e96f691-c20-s18-19).
    state_id: String,
    #[arg(long)]
    log: PathBuf,
    #[arg(long)]
    base: PathBuf,
    /// File system of the image (default: from workload.json beside the log).
    #[arg(long)]
    fs: Option<powercut_oracles::mount::FsType>,
    /// Workload seed (default: from workload.json beside the log).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the image here when the state violates an invariant.
    #[arg(long, default_value = "repro-out")]
    keep: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    log: PathBuf,
    #[arg(long)]
    base: PathBuf,
    /// Apply entries 0..=N (`end`: every entry).
    #[arg(long, conflicts_with = "mark")]
    to: Option<String>,
    /// Apply entries up to and including the first MARK with this label.
    #[arg(long)]
    mark: Option<String>,
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Counts of entries, writes, flushes, FUA, discards, marks and epochs.
    Inspect {
        log: PathBuf,
        /// One line per entry.
        #[arg(long)]
        list: bool,
        /// One JSON object.
        #[arg(long)]
        json: bool,
        /// Also check that every ack is covered by a flush (needs the base image; root).
        #[arg(long)]
        base: Option<PathBuf>,
        #[arg(long)]
        fs: Option<powercut_oracles::mount::FsType>,
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// Shard reports (`--json` of `run`/`check`).
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Write the merged JSON report here.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Write a JUnit XML report of the merged result here.
    #[arg(long)]
    junit: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum WorkloadCommand {
    /// Parse and validate workload files.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Provision QEMU, the Debian kernel and busybox, build the agent and the initramfs (cached).
    Build {
        /// Debian kernel flavour: `cloud` (boots faster) or `generic`.
        #[arg(long, value_enum, default_value_t = KernelFlavor::Cloud)]
        kernel: KernelFlavor,
        /// Use this static agent binary instead of building it from the workspace.
        #[arg(long)]
        agent: Option<PathBuf>,
        /// Build the agent with the engine's deliberately broken variants (`mutants` feature).
        #[arg(long)]
        mutants: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RecordArgs {
    /// Workload spec (YAML).
    workload: PathBuf,
    /// Output directory (created; existing recording files in it are replaced).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    vm: VmArgs,
    /// Start from a copy of this data disk image instead of formatting a new one (it is also
    /// the base image of the new log).
    #[arg(long)]
    base_image: Option<PathBuf>,
    /// Reboot after a power cut (invariant I8): DIR is the first run's recording (`record --out`
    /// of a workload with `power_cut:`). The data disk starts as DIR/final.img (unless
    /// --base-image is given); the guest recovers the journal, checks the acks of
    /// DIR/ledger.jsonl and runs the workload's `after_crash:` steps.
    #[arg(long, value_name = "DIR")]
    continue_from: Option<PathBuf>,
}

fn load_workload(
    path: &std::path::Path,
    seed: Option<u64>,
    filesystem: Option<&str>,
    mutant: Option<powercut_writer::Mutant>,
) -> anyhow::Result<powercut_workloads::spec::Workload> {
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
fn report_outcome(report: &powercut_oracles::report::Report) -> anyhow::Result<()> {
    if !report.passed() {
        return Err(check_cmds::ViolationFound(format!(
            "{} violations",
            report.all_violations().count()
        ))
        .into());
    }
    match report.not_covered() {
        Some(what) => Err(Incomplete(what).into()),
        None => Ok(()),
    }
}

/// The files of the recording in `dir`, as inputs of `io`.
fn recording_inputs(mut io: Io, what: &str, dir: &std::path::Path) -> Io {
    for name in record::RECORDING_FILES {
        io = io.input(&format!("{name} of {what}"), dir.join(name).as_path());
    }
    io
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let progress = vm::progress::Progress::stderr();
    match cli.command {
        Command::Image {
            command:
                ImageCommand::Build {
                    kernel,
                    agent,
                    mutants,
                },
        } => {
            let options = vm::image::BuildOptions {
                flavor: kernel,
                agent,
                mutants,
            };
            let image = vm::image::build(&options, &progress)?;
            println!("kernel  {}", image.kernel.display());
            println!("initrd  {}", image.initrd.display());
            println!("key     {}", image.key);
            Ok(())
        }
        Command::Record(args) => {
            let mut io = Io::new()
                .input("the workload", args.workload.as_path())
                .input("the base image (--base-image)", args.base_image.as_deref());
            if let Some(first) = &args.continue_from {
                io = recording_inputs(io, "the first run (--continue-from)", first);
            }
            io.dir("the recording (--out)", &args.out, &record::RECORDING_FILES)
                .check()?;
            let workload = args.vm.load(&args.workload)?;
            let mut options = args.vm.record_options(&workload);
            options.base_image = args.base_image;
            if let Some(first) = &args.continue_from {
                if options.base_image.is_none() {
                    options.base_image = Some(first.join("final.img"));
                }
                options.continue_after_crash =
                    Some(record::read_ledger_acks(&first.join("ledger.jsonl"))?);
            }
            let outcome = record::record(&workload, &args.out, &options, &progress)?;
            println!("{}", serde_json::to_string_pretty(&outcome.summary)?);
            eprintln!(
                "{} acks recorded in {}",
                outcome.ledger.len(),
                outcome.out.display()
            );
            Ok(())
        }
        Command::Run(args) => {
            let workload = args.vm.load(&args.workload)?;
            eprintln!(
                "seed {} (re-run with --seed {})",
                workload.seed, workload.seed
            );
            let out = args.out.unwrap_or_else(|| {
                PathBuf::from("out").join(format!("{}-{}", workload.name, workload.seed))
            });
            let io = Io::new()
                .input("the workload", args.workload.as_path())
                .dir("the recording (--out)", &out, &record::RECORDING_FILES);
            args.check.report_outputs(io).check()?;
            let options = args.vm.record_options(&workload);
            let forged = args
                .forge_prior_ack
                .iter()
                .map(|label| {
                    powercut_workloads::ack::Ack::parse_label(label)
                        .map_err(|e| anyhow::anyhow!("--forge-prior-ack: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let report =
                check_cmds::run(&workload, &out, &options, &args.check, &forged, &progress)?;
            report_outcome(&report)
        }
        Command::Check(args) => {
            let io = recording_inputs(Io::new(), "the recording", &args.dir);
            args.check.report_outputs(io).check()?;
            let workload = check_cmds::load_recorded_workload(&args.dir)?;
            let report = if workload.has_faults() {
                check_cmds::check_fault_recording(&args.dir, &workload, &args.check)?
            } else {
                check_cmds::check_recording(&args.dir, &workload, &args.check)?
            };
            report_outcome(&report)
        }
        Command::Repro(args) => {
            Io::new()
                .input("the block log (--log)", args.log.as_path())
                .input("the base image (--base)", args.base.as_path())
                .dir("the kept images (--keep)", &args.keep, &[])
                .check()?;
            let held = check_cmds::repro(
                &args.state_id,
                &args.log,
                &args.base,
                args.fs,
                args.seed,
                &args.keep,
            )?;
            if held {
                Ok(())
            } else {
                Err(check_cmds::ViolationFound(format!("state {}", args.state_id)).into())
            }
        }
        Command::Replay(args) => {
            Io::new()
                .input("the block log", args.log.as_path())
                .input("the base image (--base)", args.base.as_path())
                .file("the output image (-o)", args.out.as_path())
                .check()?;
            check_cmds::replay(&args.log, &args.base, args.to, args.mark, &args.out)
        }
        Command::Log {
            command:
                LogCommand::Inspect {
                    log,
                    list,
                    json,
                    base,
                    fs,
                    seed,
                },
        } => check_cmds::inspect(&log, list, json, base.as_deref(), fs, seed),
        Command::Merge(args) => {
            let mut io = Io::new();
            for report in &args.reports {
                io = io.input("the shard report", report.as_path());
            }
            io.file("the merged report (-o)", args.out.as_deref())
                .file("the JUnit report (--junit)", args.junit.as_deref())
                .check()?;
            let merged =
                check_cmds::merge(&args.reports, args.out.as_deref(), args.junit.as_deref())?;
            report_outcome(&merged)
        }
        Command::Mutants(args) => mutants::run(&args, &progress),
        Command::Campaign(args) => campaign::run(&args, &progress),
        Command::Shrink(args) => {
            let workload = args.vm.load(&args.workload)?;
            eprintln!(
                "seed {} (re-run with --seed {})",
                workload.seed, workload.seed
            );
            let out = args.out.clone().unwrap_or_else(|| {
                PathBuf::from("out").join(format!("shrink-{}-{}", workload.name, workload.seed))
            });
            let io = Io::new()
                .input("the workload", args.workload.as_path())
                .dir("the shrink output (--out)", &out, &[shrink::MINIMAL_FILE]);
            args.check.report_outputs(io).check()?;
            let options = args.vm.record_options(&workload);
            let mut run_candidate = |candidate: &powercut_workloads::spec::Workload,
                                     attempt: usize|
             -> anyhow::Result<shrink::Verdict> {
                eprintln!(
                    "shrink: run {attempt}: {} steps, {} records",
                    candidate.steps.len(),
                    candidate.total_records()
                );
                if args.tier == "sim" {
                    let report = sim_tier::run(candidate, candidate.writer.mutant, candidate.seed)?;
                    let first = report.violations.first();
                    return Ok(shrink::Verdict {
                        invariant: first.map(|v| v.invariant.name().to_string()),
                        repro: first.map(|v| v.to_string()),
                    });
                }
                let report = check_cmds::run(
                    candidate,
                    &out.join(format!("run-{attempt}")),
                    &options,
                    &args.check,
                    &[],
                    &progress,
                )?;
                let first = report.all_violations().next();
                Ok(shrink::Verdict {
                    invariant: first.map(|v| v.invariant.clone()),
                    repro: first.map(|v| {
                        let state = report
                            .minimal_repro
                            .as_ref()
                            .map_or(v.state_id.as_str(), |m| m.minimal.as_str());
                        let dir = out.join(format!("run-{attempt}"));
                        format!(
                            "powercut repro {state} --log {} --base {}",
                            dir.join("log.bin").display(),
                            dir.join("base.img").display()
                        )
                    }),
                })
            };
            let shrunk = shrink::shrink(&workload, args.shrink_budget, &mut run_candidate)?;
            let path = shrink::write_minimal(&shrunk, &args.workload, &out)?;
            println!(
                "shrunk {} ({}): {} of {} steps, {} of {} records, {} runs{}",
                workload.name,
                shrunk.invariant,
                shrunk.workload.steps.len(),
                shrunk.steps_before,
                shrunk.workload.total_records(),
                shrunk.records_before,
                shrunk.runs,
                if shrunk.budget_exhausted {
                    " (budget ran out)"
                } else {
                    ""
                }
            );
            println!("minimal workload: {}", path.display());
            if let Some(repro) = &shrunk.repro {
                println!("minimal reproducer: {repro}");
            }
            Ok(())
        }
        Command::Sim(args) => {
            Io::new()
                .input("the workload", args.workload.as_path())
                .file("the JSON report (--json)", args.json.as_deref())
                .check()?;
            let workload = load_workload(&args.workload, args.seed, None, None)?;
            let seed = workload.seed;
            println!("seed {seed} (re-run with --seed {seed})");
            let report = sim_tier::run(&workload, args.mutant, seed)?;
            println!("{}", sim_tier::summary(&workload, &report));
            for v in report.violations.iter().skip(1).take(9) {
                println!("  {v}");
            }
            if let Some(path) = &args.json {
                std::fs::write(path, sim_tier::report_json(&workload, &report)?)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            }
            if report.passed() {
                Ok(())
            } else {
                Err(check_cmds::ViolationFound(format!(
                    "{} violations in the sim tier",
                    report.violations_total
                ))
                .into())
            }
        }
        Command::Workload {
            command: WorkloadCommand::Check { files },
        } => {
            let mut failed = 0;
            for file in &files {
                match powercut_workloads::spec::load(file) {
                    Ok(w) => println!(
                        "{}: ok ({} steps, about {} acks)",
                        file.display(),
                        w.steps.len(),
                        w.total_acks_estimate()
                    ),
                    Err(e) => {
                        eprintln!("{e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} workload files are invalid", files.len());
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(violation) = e.downcast_ref::<check_cmds::ViolationFound>() {
                eprintln!("powercut: {violation}");
                return ExitCode::from(check_cmds::EXIT_VIOLATION);
            }
            if let Some(escaped) = e.downcast_ref::<mutants::Escaped>() {
                eprintln!("powercut: {escaped}");
                return ExitCode::from(check_cmds::EXIT_VIOLATION);
            }
            if let Some(incomplete) = e.downcast_ref::<Incomplete>() {
                eprintln!("powercut: {incomplete}");
                return ExitCode::from(EXIT_INCOMPLETE);
            }
            if let Some(skipped) = e.downcast_ref::<Skipped>() {
                eprintln!("powercut: {skipped}");
                return ExitCode::from(EXIT_SKIPPED);
            }
            let needs_root = e.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<powercut_oracles::mount::MountError>(),
                    Some(powercut_oracles::mount::MountError::NeedsRoot)
                ) || matches!(
                    cause.downcast_ref::<powercut_oracles::check::CheckError>(),
                    Some(powercut_oracles::check::CheckError::Mount(
                        powercut_oracles::mount::MountError::NeedsRoot
                    ))
                )
            });
            if needs_root {
                eprintln!("powercut: skipped: {e:#}");
                return ExitCode::from(EXIT_SKIPPED);
            }
            eprintln!("powercut: error: {e:#}");
            ExitCode::from(EXIT_HARNESS_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn every_command_has_unique_flags() {
        // Duplicate or conflicting argument names only show when a command is parsed.
        Cli::command().debug_assert();
    }
}
