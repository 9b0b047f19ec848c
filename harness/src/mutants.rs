//! `powercut mutants`: every deliberately broken variant of the engine (docs/design.md section 6) runs
//! on the bundled workloads that can expose its bug, each recorded in a VM and checked like
//! `powercut run`, until one run catches it. The real engine then runs the same workloads and
//! must pass them all: a catch only means something if the baseline is clean.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use powercut_workloads::spec::{DurabilitySpec, Workload};
use powercut_writer::Mutant;

use crate::check_cmds::{self, CheckArgs};
use crate::outputs::Io;
use crate::record::RecordOptions;
use crate::vm;
use crate::vm::image::KernelFlavor;

/// Arguments of `powercut mutants`.
#[derive(Debug, clap::Args)]
pub struct MutantsArgs {
    /// Write a JSON summary here (`mutants[]` and `baseline_violations`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report here (each mutant, its catch and reproducer).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Only these mutants, e.g. `M1,M3` (default: all ten).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Mutant>,
    /// Crash-state budget of each checked run (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = check_cmds::parse_duration)]
    pub budget_per_run: Duration,
    /// Recordings and kept failing states go in DIR/MUTANT-WORKLOAD and DIR/baseline-WORKLOAD.
    #[arg(long, default_value = "out/mutants")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = KernelFlavor::Cloud)]
    pub kernel: KernelFlavor,
    /// Give up on a VM after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Parallel checkers per run.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

/// Where a target runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// Recorded in a QEMU guest on ext4/XFS, every crash state of the block log checked.
    Vm,
    /// In process on the engine's simulated file system ([`crate::sim_tier`]).
    Sim,
}

/// A bundled workload, optionally with another durability mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    /// Stem of `workloads/NAME.yaml`.
    file: &'static str,
    durability: Option<DurabilitySpec>,
    tier: Tier,
}

const fn bundled(file: &'static str) -> Target {
    Target {
        file,
        durability: None,
        tier: Tier::Vm,
    }
}

const fn fdatasync(file: &'static str) -> Target {
    Target {
        file,
        durability: Some(DurabilitySpec::Fdatasync),
        tier: Tier::Vm,
    }
}

const fn simulated(file: &'static str) -> Target {
    Target {
        file,
        durability: None,
        tier: Tier::Sim,
    }
}

impl Target {
    /// Name of the run: the workload, plus the durability mode when it is overridden.
    fn label(self) -> String {
        let name = match self.durability {
            Some(DurabilitySpec::Fdatasync) => format!("{}(fdatasync)", self.file),
            Some(DurabilitySpec::Dsync) => format!("{}(dsync)", self.file),
            None => self.file.to_string(),
        };
        match self.tier {
            Tier::Vm => name,
            Tier::Sim => format!("{name}(sim)"),
        }
    }

    fn dir_name(self) -> String {
        let name = match self.durability {
            Some(DurabilitySpec::Fdatasync) => format!("{}-fdatasync", self.file),
            Some(DurabilitySpec::Dsync) => format!("{}-dsync", self.file),
            None => self.file.to_string(),
        };
        match self.tier {
            Tier::Vm => name,
            Tier::Sim => format!("{name}-sim"),
        }
    }

    /// The bundled workload file.
    fn path(self) -> PathBuf {
        vm::image::workspace_root()
            .join("workloads")
            .join(format!("{}.yaml", self.file))
    }

    fn load(self) -> Result<Workload> {
        let path = self.path();
        let mut workload =
            powercut_workloads::spec::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(d) = self.durability {
            workload.writer.durability = Some(d);
        }
        workload
            .validate()
            .map_err(|e| anyhow::anyhow!("{} ({}): {e}", path.display(), self.label()))?;
        Ok(workload)
    }
}

const APPEND_DSYNC: Target = bundled("append-dsync");
const APPEND_FDATASYNC: Target = bundled("append-fdatasync");
const ROTATE_RECYCLE: Target = bundled("rotate-recycle");
const SMOKE: Target = bundled("smoke");
const EIO_JOURNAL_FDATASYNC: Target = fdatasync("eio-journal");
const RECYCLE_STALE: Target = bundled("recycle-stale");
const FSYNCGATE: Target = bundled("fsyncgate");
const ROTATE_RECYCLE_SIM: Target = simulated("rotate-recycle");
const SMOKE_SIM: Target = simulated("smoke");

/// The workloads that can expose each mutant's bug, tried in order until one catches it.
fn targets(mutant: Mutant) -> &'static [Target] {
    match mutant {
        // Acks before the data is durable: the coverage check (an ack no flush covers) and I1.
        Mutant::M1 | Mutant::M6 => &[APPEND_DSYNC, APPEND_FDATASYNC],
        // A new segment's name not made durable: ext4 and XFS commit a new file's name with the
        // file's own fdatasync (one journal transaction), so only the sim tier, which loses
        // every name whose directory was not fsynced, can show it (I1).
        Mutant::M2 => &[ROTATE_RECYCLE_SIM, SMOKE_SIM],
        // A recycling rename not made durable: O_DSYNC overwrites of a recycled file commit no
        // journal transaction on ext4, so the old name survives the states at the next acks.
        Mutant::M9 => &[ROTATE_RECYCLE, RECYCLE_STALE, ROTATE_RECYCLE_SIM],
        // Sync errors swallowed or retried into success: buffered writes whose write-back fails
        // make fdatasync the call that fails (with O_DIRECT the write itself fails first), and
        // the acked record is missing at its mark (I1).
        Mutant::M3 | Mutant::M10 => &[FSYNCGATE, EIO_JOURNAL_FDATASYNC],
        // Recovery mutants: torn tails (I3/I4) and the mid-log probe (I5).
        Mutant::M4 | Mutant::M8 => &[SMOKE, APPEND_DSYNC],
        // Tail block clobbered by a zeroed rewrite: I1 on states that keep the new block.
        Mutant::M5 => &[SMOKE, APPEND_DSYNC, APPEND_FDATASYNC],
        // Stale records of a recycled segment: I2 once a recycled file holds new records.
        Mutant::M7 => &[RECYCLE_STALE],
        // No bundled workload was written for these: the campaign must find them on its own.
        Mutant::M11 | Mutant::M12 | Mutant::M13 | Mutant::M14 | Mutant::M15 | Mutant::M16 => &[],
    }
}

/// One mutant's outcome.
#[derive(Debug, Clone, serde::Serialize)]
struct MutantOutcome {
    name: String,
    description: String,
    caught: bool,
    /// The run that caught it (or the last one tried).
    workload: Option<String>,
    /// Invariant of the first violation.
    invariant: Option<String>,
    /// Crash states checked over every run of this mutant.
    states_checked: u64,
    /// From the start of this mutant's runs to the end of the run that caught it.
    seconds_to_catch: Option<f64>,
    /// Minimal reproducer: the first violation's state shrunk to the fewest dropped and torn
    /// writes of its cut (`powercut repro ID --log DIR/log.bin --base ...`).
    repro: Option<String>,
    /// Recording directory of the catching run.
    recording: Option<PathBuf>,
    /// Runs that failed for a reason that is not a violation (a VM that never finished, ...).
    errors: Vec<String>,
}

/// One run of the real engine.
#[derive(Debug, Clone, serde::Serialize)]
struct BaselineRun {
    workload: String,
    states_checked: u64,
    violations: usize,
    first_violation: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct Summary {
    mutants: Vec<MutantOutcome>,
    baseline: Vec<BaselineRun>,
    baseline_violations: usize,
    budget_per_run_seconds: f64,
    passed: bool,
}

/// Some mutant escaped, or the real engine failed a workload (exit code 1).
#[derive(Debug)]
pub struct Escaped(pub String);

impl std::fmt::Display for Escaped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mutants check failed: {}", self.0)
    }
}

impl std::error::Error for Escaped {}

fn check_args(args: &MutantsArgs) -> CheckArgs {
    CheckArgs {
        workers: args.workers.max(1),
        // The catch needs one state; a mutant can fail hundreds.
        keep_images: 2,
        // The budget per run bounds its check and shrink, not its recording.
        budget_after_recording: true,
        ..CheckArgs::defaults_with_budget(args.budget_per_run)
    }
}

fn record_options(args: &MutantsArgs, mutants: bool) -> RecordOptions {
    RecordOptions::fresh(
        vm::image::BuildOptions {
            flavor: args.kernel,
            agent: None,
            mutants,
            guest_packages: Vec::new(),
            guest_files: Vec::new(),
        },
        Duration::from_secs(args.timeout),
    )
}

/// What one run of a target found, in either tier.
struct TargetRun {
    states_checked: u64,
    violations: usize,
    /// The first violation: its invariant, the minimal reproducer (a state id to hand to
    /// `powercut repro`, or the `powercut sim` command), and one line for logs.
    first: Option<Finding>,
    /// The crash-state budget ran out (VM tier).
    budget_exhausted: bool,
}

struct Finding {
    invariant: String,
    repro: String,
    line: String,
}

/// Runs `workload` (with its mutant, if any) in `target`'s tier; VM recordings go in `out`.
fn run_target(
    target: Target,
    workload: &Workload,
    out: &Path,
    args: &MutantsArgs,
    progress: &vm::progress::Progress,
) -> Result<TargetRun> {
    let mutant = workload.writer.mutant;
    if target.tier == Tier::Sim {
        let report = crate::sim_tier::run(workload, mutant, workload.seed)?;
        eprintln!("{}", crate::sim_tier::summary(workload, &report));
        return Ok(TargetRun {
            states_checked: report.states_checked,
            violations: usize::try_from(report.violations_total).unwrap_or(usize::MAX),
            first: report.violations.first().map(|v| Finding {
                invariant: v.invariant.name().to_string(),
                repro: format!(
                    "powercut sim workloads/{}.yaml{} --seed {}",
                    target.file,
                    mutant.map(|m| format!(" --mutant {m}")).unwrap_or_default(),
                    report.seed
                ),
                line: v.to_string(),
            }),
            budget_exhausted: false,
        });
    }
    let report = check_cmds::run(
        workload,
        out,
        &record_options(args, mutant.is_some()),
        &check_args(args),
        &[],
        progress,
    )?;
    let first = report.all_violations().next().map(|v| Finding {
        invariant: v.invariant.clone(),
        // The shrunk state when the check could shrink it: the minimal reproducer.
        repro: report
            .minimal_repro
            .as_ref()
            .map_or_else(|| v.state_id.clone(), |m| m.minimal.clone()),
        line: format!("{} {}", v.invariant, v.state_id),
    });
    Ok(TargetRun {
        states_checked: report.states_checked,
        violations: report.all_violations().count(),
        first,
        budget_exhausted: report.budget_exhausted,
    })
}

fn run_mutant(
    mutant: Mutant,
    args: &MutantsArgs,
    progress: &vm::progress::Progress,
) -> Result<MutantOutcome> {
    let started = Instant::now();
    let mut outcome = MutantOutcome {
        name: mutant.name().to_string(),
        description: mutant.describe().to_string(),
        caught: false,
        workload: None,
        invariant: None,
        states_checked: 0,
        seconds_to_catch: None,
        repro: None,
        recording: None,
        errors: Vec::new(),
    };
    for &target in targets(mutant) {
        let mut workload = target.load()?;
        workload.writer.mutant = Some(mutant);
        let out = args
            .out
            .join(format!("{}-{}", mutant.name(), target.dir_name()));
        eprintln!(
            "mutants: {} ({}) on {} -> {}",
            mutant,
            mutant.describe(),
            target.label(),
            out.display()
        );
        outcome.workload = Some(target.label());
        let run = match run_target(target, &workload, &out, args, progress) {
            Ok(run) => run,
            Err(e) => {
                eprintln!("mutants: {mutant} on {}: run failed: {e:#}", target.label());
                outcome.errors.push(format!("{}: {e:#}", target.label()));
                continue;
            }
        };
        outcome.states_checked += run.states_checked;
        if let Some(first) = run.first {
            outcome.caught = true;
            outcome.invariant = Some(first.invariant);
            outcome.repro = Some(first.repro);
            outcome.recording = (target.tier == Tier::Vm).then(|| out.clone());
            outcome.seconds_to_catch = Some(started.elapsed().as_secs_f64());
            eprintln!(
                "mutants: {mutant} CAUGHT on {} by {} (minimal: {}) after {:.1}s",
                target.label(),
                first.line,
                outcome.repro.as_deref().unwrap_or("-"),
                started.elapsed().as_secs_f64()
            );
            return Ok(outcome);
        }
        eprintln!(
            "mutants: {mutant} not caught on {} ({} states checked{})",
            target.label(),
            run.states_checked,
            if run.budget_exhausted {
                ", budget ran out"
            } else {
                ""
            }
        );
    }
    eprintln!("mutants: {mutant} ESCAPED every workload that targets it");
    Ok(outcome)
}

fn print_table(summary: &Summary) {
    println!(
        "{:<4} {:<26} {:<7} {:<10} {:>8} {:>9}  repro",
        "", "workload", "caught", "invariant", "states", "seconds"
    );
    for m in &summary.mutants {
        println!(
            "{:<4} {:<26} {:<7} {:<10} {:>8} {:>9}  {}",
            m.name,
            m.workload.as_deref().unwrap_or("-"),
            if m.caught { "yes" } else { "NO" },
            m.invariant.as_deref().unwrap_or("-"),
            m.states_checked,
            m.seconds_to_catch
                .map(|s| format!("{s:.0}"))
                .unwrap_or_else(|| "-".into()),
            m.repro.as_deref().unwrap_or("-")
        );
    }
    for b in &summary.baseline {
        println!(
            "base {:<26} {:<7} {:<10} {:>8} {:>9}  {}",
            b.workload,
            if b.violations == 0 { "clean" } else { "FAILED" },
            "-",
            b.states_checked,
            "-",
            b.first_violation.as_deref().unwrap_or("-")
        );
    }
    println!(
        "{} of {} mutants caught; baseline (the real engine): {} violations",
        summary.mutants.iter().filter(|m| m.caught).count(),
        summary.mutants.len(),
        summary.baseline_violations
    );
}

/// `powercut mutants`: see the module docs. Exit 1 ([`Escaped`]) unless every selected mutant
/// was caught and the baseline is clean.
pub fn run(args: &MutantsArgs, progress: &vm::progress::Progress) -> Result<()> {
    let selected = select(args)?;
    let mut io = Io::new();
    for target in selected.iter().flat_map(|m| targets(*m)) {
        io = io.input("the bundled workload", target.path().as_path());
    }
    io.file("the JSON summary (--json)", args.json.as_deref())
        .file("the HTML report (--html)", args.html.as_deref())
        .dir("the recordings (--out)", &args.out, &[])
        .check()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut mutants = Vec::new();
    for (i, &mutant) in selected.iter().enumerate() {
        eprintln!("mutants: [{}/{}] {mutant}", i + 1, selected.len());
        mutants.push(run_mutant(mutant, args, progress)?);
    }

    let baseline = run_baseline(&selected, &mutants, args, progress)?;
    let baseline_violations = baseline.iter().map(|b| b.violations).sum();
    let escaped: Vec<String> = mutants
        .iter()
        .filter(|m| !m.caught)
        .map(|m| m.name.clone())
        .collect();
    let summary = Summary {
        passed: escaped.is_empty() && baseline_violations == 0,
        mutants,
        baseline,
        baseline_violations,
        budget_per_run_seconds: args.budget_per_run.as_secs_f64(),
    };
    print_table(&summary);
    let mut value = serde_json::to_value(&summary)?;
    if let (Some(page), Some(map)) = (&args.html, value.as_object_mut()) {
        map.insert("html".into(), page.display().to_string().into());
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&value)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JSON summary: {}", path.display());
    }
    if let Some(path) = &args.html {
        crate::html::write(path, &crate::html::mutants(&value))?;
    }
    if summary.passed {
        return Ok(());
    }
    let mut problems = Vec::new();
    if !escaped.is_empty() {
        problems.push(format!("escaped: {}", escaped.join(", ")));
    }
    if baseline_violations > 0 {
        problems.push(format!(
            "the real engine has {baseline_violations} violations"
        ));
    }
    Err(Escaped(problems.join("; ")).into())
}

/// The mutants `--only` selects (all without it), each once; refuses mutants no bundled
/// workload targets and in-process mutants this binary was built without.
fn select(args: &MutantsArgs) -> Result<Vec<Mutant>> {
    let mut selected: Vec<Mutant> = if args.only.is_empty() {
        Mutant::ALL.to_vec()
    } else {
        args.only.clone()
    };
    if let Some(m) = selected.iter().find(|m| targets(**m).is_empty()) {
        bail!(
            "{m} has no bundled workload that targets it; search for it with generated \
             workloads: powercut campaign --mutant {m} --budget 1m"
        );
    }
    let mut seen = Vec::new();
    selected.retain(|m| {
        let first = !seen.contains(m);
        seen.push(*m);
        first
    });
    // Recovery mutants are judged by their own recovery on the host, and the sim tier runs
    // the engine in this process: both need the broken variants in this binary. (A mutant
    // with VM targets as well still runs there; its sim target then reports an error.)
    if !powercut_writer::MUTANTS_BUILT {
        let in_process =
            |m: &Mutant| m.changes_recovery() || targets(*m).iter().all(|t| t.tier == Tier::Sim);
        if let Some(m) = selected.iter().find(|m| in_process(m)) {
            bail!(
                "{m} runs in this process (a recovery mutant, or one only the sim tier catches), and \
                 this powercut was built without the mutants (build with `cargo build -p \
                 powercut --features mutants`, or leave it out with --only)"
            );
        }
    }
    Ok(selected)
}

/// The real engine on every workload a mutant ran on.
fn run_baseline(
    selected: &[Mutant],
    mutants: &[MutantOutcome],
    args: &MutantsArgs,
    progress: &vm::progress::Progress,
) -> Result<Vec<BaselineRun>> {
    let mut baseline_targets: Vec<Target> = Vec::new();
    for &mutant in selected {
        let tried = mutants
            .iter()
            .find(|m| m.name == mutant.name())
            .and_then(|m| m.workload.clone());
        for &target in targets(mutant) {
            if !baseline_targets.contains(&target) {
                baseline_targets.push(target);
            }
            if tried.as_deref() == Some(target.label().as_str()) {
                break;
            }
        }
    }
    let mut baseline = Vec::new();
    for (i, target) in baseline_targets.iter().enumerate() {
        let workload = target.load()?;
        let out = args.out.join(format!("baseline-{}", target.dir_name()));
        eprintln!(
            "mutants: baseline [{}/{}] the real engine on {} -> {}",
            i + 1,
            baseline_targets.len(),
            target.label(),
            out.display()
        );
        let run = run_target(*target, &workload, &out, args, progress)
            .with_context(|| format!("baseline run of {}", target.label()))?;
        baseline.push(BaselineRun {
            workload: target.label(),
            states_checked: run.states_checked,
            violations: run.violations,
            first_violation: run.first.map(|f| f.line),
        });
    }
    Ok(baseline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_targets_a_bundled_workload_that_parses() {
        for m in Mutant::ALL {
            assert!(!targets(m).is_empty(), "{m}");
            for t in targets(m) {
                let w = t
                    .load()
                    .unwrap_or_else(|e| panic!("{m} {}: {e:#}", t.label()));
                if let Some(d) = t.durability {
                    assert_eq!(w.writer.durability, Some(d));
                }
            }
        }
    }

    #[test]
    fn recovery_mutants_are_judged_by_their_own_recovery() {
        let mut w = SMOKE.load().unwrap();
        w.writer.mutant = Some(Mutant::M7);
        assert_eq!(check_cmds::recovery_mutant(&w), Some(Mutant::M7));
        w.writer.mutant = Some(Mutant::M1);
        assert_eq!(check_cmds::recovery_mutant(&w), None);
        assert!(
            check_cmds::recovery_for(&w).is_ok(),
            "a non-recovery mutant needs no mutant recovery on the host"
        );
        w.writer.mutant = Some(Mutant::M4);
        assert_eq!(
            check_cmds::recovery_for(&w).is_ok(),
            powercut_writer::MUTANTS_BUILT
        );
    }
}
