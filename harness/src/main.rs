//! The `powercut` command line: one subcommand per module.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod record;
mod vm;

use vm::image::KernelFlavor;

/// Exit code: the harness itself failed (bad input, missing tool, VM error).
const EXIT_HARNESS_FAILURE: u8 = 2;
/// Exit code: skipped because a capability is missing (e.g. root is needed).
const EXIT_SKIPPED: u8 = 3;

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
    about = "Crash-consistency testing under real kernels"
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
    /// Run one workload in a VM and record its block log, without checking it.
    Record(RecordArgs),
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
    },
}

#[derive(Debug, clap::Args)]
struct RecordArgs {
    /// Workload spec (YAML).
    workload: PathBuf,
    /// Output directory (created; existing recording files in it are replaced).
    #[arg(long)]
    out: PathBuf,
    /// Override the workload's seed.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, value_enum, default_value_t = KernelFlavor::Cloud)]
    kernel: KernelFlavor,
    /// Give up on the VM after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Use this static agent binary instead of building it from the workspace.
    #[arg(long)]
    agent: Option<PathBuf>,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let progress = vm::progress::Progress::stderr();
    match cli.command {
        Command::Image {
            command: ImageCommand::Build { kernel, agent },
        } => {
            let options = vm::image::BuildOptions {
                flavor: kernel,
                agent,
            };
            let image = vm::image::build(&options, &progress)?;
            println!("kernel  {}", image.kernel.display());
            println!("initrd  {}", image.initrd.display());
            println!("key     {}", image.key);
            Ok(())
        }
        Command::Record(args) => {
            let mut workload = powercut_workloads::spec::load(&args.workload).map_err(|e| {
                anyhow::anyhow!("loading workload {}: {e}", args.workload.display())
            })?;
            if let Some(seed) = args.seed {
                workload.seed = seed;
            }
            let options = record::RecordOptions {
                image: vm::image::BuildOptions {
                    flavor: args.kernel,
                    agent: args.agent,
                },
                timeout: std::time::Duration::from_secs(args.timeout),
            };
            let outcome = record::record(&workload, &args.out, &options, &progress)?;
            println!("{}", serde_json::to_string_pretty(&outcome.summary)?);
            eprintln!(
                "{} acks recorded in {}",
                outcome.ledger.len(),
                outcome.out.display()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(skipped) = e.downcast_ref::<Skipped>() {
                eprintln!("powercut: {skipped}");
                return ExitCode::from(EXIT_SKIPPED);
            }
            eprintln!("powercut: error: {e:#}");
            ExitCode::from(EXIT_HARNESS_FAILURE)
        }
    }
}
