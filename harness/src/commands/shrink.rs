//! `powercut shrink`: minimise a failing workload while it keeps violating the same invariant.

use std::path::{Path, PathBuf};

use anyhow::Result;
use powercut_workloads::spec::Workload;

use super::VmArgs;
use crate::check_cmds::{self, CheckArgs};
use crate::outputs::Io;
use crate::record::RecordOptions;
use crate::shrink::{self, Verdict};
use crate::sim_tier;
use crate::vm::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct ShrinkArgs {
    /// Workload spec (YAML) that shows a violation.
    workload: PathBuf,
    /// Where each candidate runs: `vm` (recorded in QEMU and checked, ~20-60 s a run) or `sim`
    /// (in process, milliseconds a run; journal steps only).
    #[arg(long, value_parser = ["vm", "sim"], default_value = "vm")]
    tier: String,
    /// Stop trying candidates after this long (e.g. 10m); `--budget` bounds each candidate's
    /// run (its recording, check and shrink), within what is left of this.
    #[arg(long, default_value = "15m", value_parser = check_cmds::parse_duration)]
    shrink_budget: std::time::Duration,
    /// Candidate recordings and minimal.yaml go here (default: out/shrink-WORKLOAD-SEED).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    vm: VmArgs,
    #[command(flatten)]
    check: CheckArgs,
}

pub fn run(args: ShrinkArgs, progress: &Progress) -> Result<()> {
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
    let candidates = Candidates {
        sim: args.tier == "sim",
        out: &out,
        options: args.vm.record_options(&workload)?,
        check: &args.check,
        progress,
        deadline: std::time::Instant::now() + args.shrink_budget,
    };
    let mut run_candidate =
        |candidate: &Workload, attempt: usize| candidates.verdict(candidate, attempt);
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

/// How each candidate of the shrink runs.
struct Candidates<'a> {
    /// In the sim tier, not in a VM.
    sim: bool,
    out: &'a Path,
    options: RecordOptions,
    check: &'a CheckArgs,
    progress: &'a Progress,
    /// The end of `--shrink-budget`: no candidate's check goes past it.
    deadline: std::time::Instant,
}

impl Candidates<'_> {
    /// Runs candidate number `attempt` and says which invariant it violated, if any.
    fn verdict(&self, candidate: &Workload, attempt: usize) -> Result<Verdict> {
        let now = std::time::Instant::now();
        eprintln!(
            "shrink: run {attempt}: {} steps, {} records ({:.0}s of the shrink budget left)",
            candidate.steps.len(),
            candidate.total_records(),
            self.deadline.saturating_duration_since(now).as_secs_f64()
        );
        // The candidate's own budget from now, within what is left of the shrink's.
        let own = self.check.budget.map_or(self.deadline, |b| now + b);
        let check = CheckArgs {
            deadline: Some(own.min(self.deadline)),
            ..self.check.clone()
        };
        if self.sim {
            let report = sim_tier::run(candidate, candidate.writer.mutant, candidate.seed)?;
            let first = report.violations.first();
            return Ok(Verdict {
                invariant: first.map(|v| v.invariant.name().to_string()),
                repro: first.map(|v| v.to_string()),
            });
        }
        let dir = self.out.join(format!("run-{attempt}"));
        let report = check_cmds::run(candidate, &dir, &self.options, &check, &[], self.progress)?;
        let first = report.all_violations().next();
        Ok(Verdict {
            invariant: first.map(crate::two_crash::finding_name),
            repro: first.and_then(|v| {
                let state = report
                    .minimal_repro
                    .as_ref()
                    .map_or(v.state_id.as_str(), |m| m.minimal.as_str());
                crate::two_crash::repro_command(&dir, state)
            }),
        })
    }
}
