//! The commands on files that need no VM: `repro`, `replay`, `log inspect`, `workload check`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::check_cmds;
use crate::exit::ViolationFound;
use crate::outputs::Io;

#[derive(Debug, clap::Args)]
pub struct ReproArgs {
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
pub struct ReplayArgs {
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
pub enum LogCommand {
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

#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Parse and validate workload files.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn repro(args: ReproArgs) -> Result<()> {
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
        Err(ViolationFound(format!("state {}", args.state_id)).into())
    }
}

pub fn replay(args: ReplayArgs) -> Result<()> {
    Io::new()
        .input("the block log", args.log.as_path())
        .input("the base image (--base)", args.base.as_path())
        .file("the output image (-o)", args.out.as_path())
        .check()?;
    check_cmds::replay(&args.log, &args.base, args.to, args.mark, &args.out)
}

pub fn log(command: LogCommand) -> Result<()> {
    let LogCommand::Inspect {
        log,
        list,
        json,
        base,
        fs,
        seed,
    } = command;
    check_cmds::inspect(&log, list, json, base.as_deref(), fs, seed)
}

pub fn workload(command: WorkloadCommand) -> Result<()> {
    let WorkloadCommand::Check { files } = command;
    let mut failed = 0;
    for file in &files {
        match powercut_workloads::spec::load(file) {
            Ok(w) => println!(
                "{}: ok ({} steps, {})",
                file.display(),
                w.steps.len(),
                if w.is_program() {
                    "acks as its programs write them".to_string()
                } else {
                    format!("about {} acks", w.total_acks_estimate())
                }
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
