//! The `powercut` command line: parses the arguments and dispatches to one module per command
//! ([`commands`], [`mutants`], [`campaign`]), then turns the outcome into the exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod campaign;
mod check_cmds;
mod commands;
mod dm_backend;
mod exit;
// New and reworked in its own change, which splits its long page builder.
#[allow(clippy::too_many_lines)]
mod html;
mod mutants;
mod outputs;
mod record;
mod recovery;
mod shrink;
mod sim_tier;
mod two_crash;
mod vm;

// At the crate root because the VM provisioning and the campaign's vm tier name them there.
pub use exit::{Incomplete, Skipped};

use commands::{
    check, image, merge, offline, record as record_cmd, report, report_fixture, run,
    shrink as shrink_cmd, sim,
};
use exit::{EXIT_HARNESS_FAILURE, EXIT_INCOMPLETE, EXIT_SKIPPED, EXIT_VIOLATION};

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
        command: image::ImageCommand,
    },
    /// Record a workload in a VM, then check every crash state of its block log.
    Run(run::RunArgs),
    /// Run one workload in a VM and record its block log, without checking it.
    Record(record_cmd::RecordArgs),
    /// Check every crash state of an existing recording (a `record --out` directory).
    Check(check::CheckRecordingArgs),
    /// Rebuild one crash state offline (no VM) and say what the oracle finds in it.
    Repro(offline::ReproArgs),
    /// Replay a block log onto a base image up to an entry or a mark.
    Replay(offline::ReplayArgs),
    /// Block logs.
    Log {
        #[command(subcommand)]
        command: offline::LogCommand,
    },
    /// Write the HTML page of a check, campaign or mutants report: a summary, a picture of the
    /// block log and each violation's crash state on it (one self-contained file).
    Report(report::ReportArgs),
    /// Test aid: write a synthetic recording with a known violation (log.bin, workload.json,
    /// report.json) for the HTML report's tests and figures.
    #[command(hide = true)]
    ReportFixture(report_fixture::FixtureArgs),
    /// Join the JSON reports of shards (`--shard K/N`) into one.
    Merge(merge::MergeArgs),
    /// Parse a workload file and report errors with file, line and field.
    Workload {
        #[command(subcommand)]
        command: offline::WorkloadCommand,
    },
    /// Run the engine's deliberately broken variants (M1-M10) on the bundled workloads that
    /// target them and show that each is caught, and that the real engine passes them.
    Mutants(mutants::MutantsArgs),
    /// Minimise a failing workload (fewer steps, fewer records) while it keeps violating the
    /// same invariant, then its crash state; writes OUT/minimal.yaml.
    Shrink(shrink_cmd::ShrinkArgs),
    /// Run a workload's journal steps in process on the simulated file system (no VM), which
    /// loses unsynced data and names whose directory was not fsynced, and check crash states
    /// after every file-system operation.
    Sim(sim::SimArgs),
    /// Search for unknown bugs: generate workloads from a seed (every short sequence of an
    /// alphabet of operations, then random longer ones), check each in the sim tier or a VM,
    /// keep each finding once (by signature) with its reproducer, stop at the budget.
    Campaign(campaign::CampaignArgs),
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let progress = vm::progress::Progress::stderr();
    match cli.command {
        Command::Image { command } => image::run(command, &progress),
        Command::Record(args) => record_cmd::run(args, &progress),
        Command::Run(args) => run::run(args, &progress),
        Command::Check(args) => check::run(args),
        Command::Repro(args) => offline::repro(args),
        Command::Replay(args) => offline::replay(args),
        Command::Log { command } => offline::log(command),
        Command::Merge(args) => merge::run(args),
        Command::Report(args) => report::run(args),
        Command::ReportFixture(args) => report_fixture::run(args),
        Command::Mutants(args) => mutants::run(&args, &progress),
        Command::Campaign(args) => campaign::run(&args, &progress),
        Command::Shrink(args) => shrink_cmd::run(args, &progress),
        Command::Sim(args) => sim::run(args),
        Command::Workload { command } => offline::workload(command),
    }
}

/// The exit code of a command's error, with its line on stderr.
fn exit_code(e: &anyhow::Error) -> ExitCode {
    let (code, text) = if let Some(violation) = e.downcast_ref::<exit::ViolationFound>() {
        (EXIT_VIOLATION, violation.to_string())
    } else if let Some(escaped) = e.downcast_ref::<mutants::Escaped>() {
        (EXIT_VIOLATION, escaped.to_string())
    } else if let Some(incomplete) = e.downcast_ref::<Incomplete>() {
        (EXIT_INCOMPLETE, incomplete.to_string())
    } else if let Some(skipped) = e.downcast_ref::<Skipped>() {
        (EXIT_SKIPPED, skipped.to_string())
    } else if exit::needs_root(e) {
        (EXIT_SKIPPED, format!("skipped: {e:#}"))
    } else {
        (EXIT_HARNESS_FAILURE, format!("error: {e:#}"))
    };
    eprintln!("powercut: {text}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_code(&e),
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
