//! `powercut sim`: a workload's journal steps in process on the simulated file system.

use std::path::PathBuf;

use anyhow::Result;

use super::load_workload;
use crate::exit::ViolationFound;
use crate::outputs::Io;
use crate::sim_tier;

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Workload file (file steps are skipped, fault steps arm EIO on the simulated file system,
    /// ingest clients become concurrent appenders).
    workload: PathBuf,
    /// Seed of payloads and crash states (default: the workload's).
    #[arg(long)]
    seed: Option<u64>,
    /// Run a deliberately broken variant of the engine (needs a build with `--features
    /// mutants`).
    #[arg(long)]
    mutant: Option<powercut_writer::Mutant>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Stop checking after this long (e.g. 30s, 10m); the report then says the run did not
    /// complete and the exit code is 4 if nothing was found.
    #[arg(long, value_parser = crate::check_cmds::parse_duration)]
    budget: Option<std::time::Duration>,
}

pub fn run(args: SimArgs) -> Result<()> {
    Io::new()
        .input("the workload", args.workload.as_path())
        .file("the JSON report (--json)", args.json.as_deref())
        .check()?;
    let workload = load_workload(&args.workload, args.seed, None, None)?;
    let seed = workload.seed;
    println!("seed {seed} (re-run with --seed {seed})");
    let report = sim_tier::run_with_progress(&workload, args.mutant, seed, args.budget)?;
    println!("{}", sim_tier::summary(&workload, &report));
    for v in report.violations.iter().skip(1).take(9) {
        println!("  {v}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, sim_tier::report_json(&workload, &report)?)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    if report.passed() && !report.completed {
        Err(crate::exit::Incomplete(
            "the sim run stopped before its last step (its budget ran out)".into(),
        )
        .into())
    } else if report.passed() {
        Ok(())
    } else {
        Err(ViolationFound(format!(
            "{} violations in the sim tier",
            report.violations_total
        ))
        .into())
    }
}
