//! `powercut campaign`: a search for bugs nobody planted (docs/campaign.md). Workloads come
//! from the seeded generator (`powercut_workloads::generate`), each is checked in the sim tier
//! (the code path of `powercut sim`) or recorded and checked in a VM (the code path of
//! `powercut run`), findings are deduplicated by a signature and kept with their reproducer,
//! and the campaign stops at its budget with a report of what it covered.

mod findings;
mod history;
pub mod merge;
mod report;
mod tiers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use powercut_workloads::generate::{Generated, Generator, GeneratorConfig, MAX_DEPTH};
use powercut_workloads::spec::{Filesystem, Workload};
use powercut_writer::sim::SplitMix64;
use powercut_writer::Mutant;

use crate::check_cmds;
use crate::outputs::Io;
use crate::vm::progress::Progress;
use findings::{Corpus, Findings};
use report::{CampaignReport, Coverage, WorkloadRun};
use tiers::{Outcome, Scheduler, TierKind, VmTier};

/// Where each workload is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tier {
    /// In process on the simulated file system (milliseconds a workload; journal steps only).
    Sim,
    /// Recorded in a QEMU guest and checked crash state by crash state (~20-40 s a workload).
    Vm,
    /// The two take turns of equal wall time.
    Both,
}

impl Tier {
    fn name(self) -> &'static str {
        match self {
            Tier::Sim => "sim",
            Tier::Vm => "vm",
            Tier::Both => "both",
        }
    }
}

/// File systems the generated workloads use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsChoice {
    Ext4,
    Xfs,
    /// Drawn per workload.
    Both,
}

impl FsChoice {
    fn name(self) -> &'static str {
        match self {
            FsChoice::Ext4 => "ext4",
            FsChoice::Xfs => "xfs",
            FsChoice::Both => "both",
        }
    }

    fn filesystems(self) -> Vec<Filesystem> {
        match self {
            FsChoice::Ext4 => vec![Filesystem::Ext4],
            FsChoice::Xfs => vec![Filesystem::Xfs],
            FsChoice::Both => vec![Filesystem::Ext4, Filesystem::Xfs],
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CampaignArgs {
    /// Stop starting workloads after this long (e.g. 10s, 30m, 8h).
    #[arg(long, value_parser = check_cmds::parse_duration)]
    pub budget: Duration,
    /// Seed of the workload sequence (default: drawn, and printed first).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where workloads are checked.
    #[arg(long, value_enum, default_value_t = Tier::Sim)]
    pub tier: Tier,
    /// File system of the generated workloads (matters in the vm tier).
    #[arg(long, value_enum, default_value_t = FsChoice::Ext4)]
    pub filesystem: FsChoice,
    /// Run only workload i of the sequence with i mod N = K (0-based), e.g. 0/4: N shards of one
    /// seed together run what one campaign of that seed runs.
    #[arg(long, value_parser = powercut_oracles::report::parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// Findings (DIR/findings/SIG/), VM recordings and campaign.json go here
    /// (default: out/campaign-SEED).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the campaign report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report here (one testcase per workload).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML report here (summary, findings, states checked over time).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Save each workload that showed a finding or a new combination of step kinds here (YAML).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Append this campaign (seed, workloads, states, findings with when each was first seen)
    /// to this JSON history.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Run a deliberately broken variant of the engine (needs a build with `--features
    /// mutants`); the workloads do not depend on it.
    #[arg(long)]
    pub mutant: Option<Mutant>,
    /// Longest exhaustive sequence of operations (every sequence of 1 to K operations of the
    /// alphabet comes first, one random workload in four interleaved).
    #[arg(long, default_value_t = MAX_DEPTH, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_DEPTH as u64))]
    pub depth: usize,
    /// Stop after the first N workloads of the sequence (counted over all shards).
    #[arg(long)]
    pub max_workloads: Option<u64>,
    /// Where the vm tier records: a QEMU guest (default) or this host's device-mapper (`dm`,
    /// loop devices in each run's directory; docs/dm-backend.md).
    #[arg(long, value_enum, default_value_t = tiers::VmBackend::Qemu)]
    pub backend: tiers::VmBackend,
}

/// The report file the campaign always writes into its output directory.
const CAMPAIGN_JSON: &str = "campaign.json";
/// Replays of each new sim finding, to tell a steady one from a timing-dependent one.
const SIM_REPLAYS: u32 = 3;
/// Seconds between two progress lines of the sim tier.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Longest a new sim finding is shrunk (within what is left of the campaign's budget).
const SHRINK_BUDGET: Duration = Duration::from_secs(5);
/// Longest a new vm finding is shrunk (each candidate is a recorded guest run).
const SHRINK_BUDGET_VM: Duration = Duration::from_secs(120);

/// `powercut campaign`.
pub fn run(args: &CampaignArgs, progress: &Progress) -> Result<()> {
    let seed = args.seed.unwrap_or_else(fresh_seed);
    println!("campaign seed {seed} (re-run with --seed {seed})");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(format!("campaign-{seed}")));
    let mut io = Io::new()
        .dir("the campaign output (--out)", &out, &[CAMPAIGN_JSON])
        .file("the JSON report (--json)", args.json.as_deref())
        .file("the JUnit report (--junit)", args.junit.as_deref())
        .file("the HTML report (--html)", args.html.as_deref());
    if let Some(corpus) = &args.corpus {
        io = io.dir("the corpus (--corpus)", corpus, &[]);
    }
    io.check()?;
    if let Some(m) = args.mutant {
        if !powercut_writer::MUTANTS_BUILT {
            bail!(
                "--mutant {m} needs powercut built with the mutants: cargo build --release -p \
                 powercut --features powercut/mutants"
            );
        }
    }
    let generator = Generator::new(GeneratorConfig {
        depth: args.depth,
        filesystems: args.filesystem.filesystems(),
        ..GeneratorConfig::new(seed)
    })?;
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    let vm = match args.tier {
        Tier::Sim => None,
        Tier::Vm | Tier::Both => Some(VmTier::provision(
            &out,
            args.mutant,
            args.backend,
            progress,
        )?),
    };
    let mut campaign = Campaign::new(args, seed, &out, vm)?;
    let stop = campaign.run(&generator, progress);
    campaign.finish(&generator, stop)
}

/// A seed for a campaign given none: time and process id, mixed.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let x = nanos ^ (u64::from(std::process::id()) << 32);
    // Mixed so that neighbouring start times give unrelated seeds; 53 bits: exact as a JSON
    // number in every reader (jq reads doubles).
    SplitMix64::new(x).next_u64() >> 11
}

/// Why the loop ended.
enum Stop {
    Budget,
    MaxWorkloads,
    Error(anyhow::Error),
}

/// The state of a running campaign.
struct Campaign<'a> {
    args: &'a CampaignArgs,
    seed: u64,
    out: PathBuf,
    started: Instant,
    scheduler: Scheduler,
    vm: Option<VmTier>,
    findings: Findings,
    corpus: Option<Corpus>,
    coverage: Coverage,
    runs: Vec<WorkloadRun>,
    first_finding: Option<f64>,
    last_progress: Instant,
}

impl<'a> Campaign<'a> {
    fn new(
        args: &'a CampaignArgs,
        seed: u64,
        out: &std::path::Path,
        vm: Option<VmTier>,
    ) -> Result<Self> {
        let corpus = args.corpus.as_deref().map(Corpus::open).transpose()?;
        if let Some(c) = &corpus {
            eprintln!("corpus: {} behaviours known", c.known());
        }
        Ok(Campaign {
            args,
            seed,
            out: out.to_path_buf(),
            started: Instant::now(),
            scheduler: Scheduler::new(args.tier),
            vm,
            findings: Findings::new(out.join("findings")),
            corpus,
            coverage: Coverage::default(),
            runs: Vec::new(),
            first_finding: None,
            last_progress: Instant::now(),
        })
    }

    fn in_shard(&self, index: u64) -> bool {
        self.args
            .shard
            .is_none_or(|(k, n)| index % u64::from(n) == u64::from(k))
    }

    /// Runs workloads until the budget, `--max-workloads` or a harness error stops it.
    fn run(&mut self, generator: &Generator, progress: &Progress) -> Stop {
        for index in 0u64.. {
            if self.args.max_workloads.is_some_and(|n| index >= n) {
                return Stop::MaxWorkloads;
            }
            let elapsed = self.started.elapsed();
            if elapsed >= self.args.budget {
                return Stop::Budget;
            }
            if !self.in_shard(index) {
                continue;
            }
            let Some(tier) = self.scheduler.pick(self.args.budget - elapsed) else {
                return Stop::Budget;
            };
            if let Err(e) = self.one(generator, index, tier, progress) {
                return Stop::Error(e);
            }
            self.progress_line(tier == TierKind::Vm);
        }
        Stop::Budget
    }

    /// Generates workload `index`, checks it in `tier` and records what came of it.
    fn one(
        &mut self,
        generator: &Generator,
        index: u64,
        tier: TierKind,
        progress: &Progress,
    ) -> Result<()> {
        let generated = generator.generate(index)?;
        let started = Instant::now();
        let outcome = match tier {
            TierKind::Sim => tiers::sim(&generated, self.args.mutant)?,
            TierKind::Vm => {
                let remaining = self.args.budget.saturating_sub(self.started.elapsed());
                let vm = self.vm.as_ref().expect("provisioned for the vm tier");
                vm.run(&generated, remaining, progress)?
            }
        };
        let seconds = started.elapsed();
        self.scheduler.spent(tier, seconds);
        self.record(&generated, tier, outcome, seconds, progress)
    }

    fn record(
        &mut self,
        generated: &Generated,
        tier: TierKind,
        outcome: Outcome,
        seconds: Duration,
        progress: &Progress,
    ) -> Result<()> {
        let mut run = WorkloadRun {
            index: generated.index,
            name: generated.workload.name.clone(),
            mode: generated.mode.name(),
            tier: tier.name(),
            states_checked: outcome.states_checked,
            seconds: seconds.as_secs_f64(),
            invariants: Vec::new(),
            signature: None,
            incomplete: outcome.incomplete.clone(),
            error: outcome.error.clone(),
        };
        if let Some(candidate) = &outcome.candidate {
            run.invariants.clone_from(&candidate.invariants);
            run.signature =
                Some(self.note_finding(generated, tier, &outcome, candidate, progress)?);
        }
        if let Some(corpus) = &mut self.corpus {
            corpus.offer(generated, !run.invariants.is_empty())?;
        }
        if run.invariants.is_empty() && run.error.is_none() {
            outcome.discard_recording();
        }
        self.coverage.add(generated, &run, &outcome.kinds);
        self.runs.push(run);
        Ok(())
    }

    /// Deduplicates a run's finding; a new one is kept (sim: after its replays) and announced.
    fn note_finding(
        &mut self,
        generated: &Generated,
        tier: TierKind,
        outcome: &Outcome,
        candidate: &findings::Candidate,
        progress: &Progress,
    ) -> Result<String> {
        let at = findings::Origin {
            generated,
            campaign_seed: self.seed,
            tier: tier.name(),
            mutant: self.args.mutant,
            run_dir: outcome.run_dir.as_deref(),
            seconds: self.started.elapsed().as_secs_f64(),
        };
        let mutant = self.args.mutant;
        let replay = || match tier {
            TierKind::Sim => {
                tiers::sim_replays(generated, mutant, &candidate.invariant, SIM_REPLAYS).map(Some)
            }
            TierKind::Vm => Ok(None),
        };
        let (signature, new) = self.findings.add(candidate, &outcome.kinds, at, replay)?;
        if new {
            self.shrink_finding(&signature, generated, tier, &candidate.invariant, progress)?;
        }
        if new {
            self.first_finding.get_or_insert(at.seconds);
            let finding = self.findings.all().last().expect("just added");
            let replays = finding
                .replays
                .map(|r| {
                    format!(
                        ", {} of {} replays show it again",
                        r.showed_invariant, r.runs
                    )
                })
                .unwrap_or_default();
            eprintln!(
                "campaign: new finding {signature} ({}) in {} after {:.2}s{replays}: {}",
                candidate.invariant, generated.workload.name, at.seconds, finding.repro
            );
        }
        Ok(signature)
    }

    /// Shrinks a new finding's workload while it keeps violating `invariant`, in its own tier,
    /// within [`SHRINK_BUDGET`] (sim) or [`SHRINK_BUDGET_VM`] and what is left of the
    /// campaign's budget, and keeps the result as `minimal.yaml` in the finding's directory.
    fn shrink_finding(
        &mut self,
        signature: &str,
        generated: &Generated,
        tier: TierKind,
        invariant: &str,
        progress: &Progress,
    ) -> Result<()> {
        let left = self.args.budget.saturating_sub(self.started.elapsed());
        let budget = match tier {
            TierKind::Sim => SHRINK_BUDGET,
            TierKind::Vm => SHRINK_BUDGET_VM,
        }
        .min(left);
        if budget.is_zero() {
            return Ok(());
        }
        let mutant = self.args.mutant;
        let shrink_dir = self.out.join("shrink").join(signature);
        let vm = self.vm.as_ref();
        // A candidate that cannot run (e.g. nothing left to append) reproduces nothing.
        let mut run = |candidate: &Workload, attempt: usize| {
            if let (TierKind::Vm, Some(vm)) = (tier, vm) {
                let dir = shrink_dir.join(format!("run-{attempt}"));
                return Ok(vm.verdict(candidate, &dir, budget, progress));
            }
            let first = crate::sim_tier::run(candidate, mutant, candidate.seed)
                .ok()
                .and_then(|report| report.violations.into_iter().next());
            Ok(crate::shrink::Verdict {
                invariant: first.as_ref().map(|v| v.invariant.name().to_string()),
                repro: first.map(|v| v.to_string()),
            })
        };
        // A finding that a race showed once may not show again: it stays unshrunk.
        let shrunk = match crate::shrink::shrink(&generated.workload, budget, &mut run) {
            // For I8 the shrink also keeps the invariant behind it (`I8/KV`).
            Ok(shrunk) if shrunk.invariant.split('/').next() == Some(invariant) => shrunk,
            Ok(_) | Err(_) => {
                eprintln!("campaign: {signature} not shrunk (its workload did not show it again)");
                return Ok(());
            }
        };
        let dir = self.findings.root().join(signature);
        let path = crate::shrink::write_minimal(&shrunk, &dir.join("workload.yaml"), &dir)?;
        let command = match tier {
            TierKind::Sim => "sim",
            TierKind::Vm => "run",
        };
        let repro = format!(
            "powercut {command} {} --seed {}{}",
            path.display(),
            shrunk.workload.seed,
            mutant.map(|m| format!(" --mutant {m}")).unwrap_or_default()
        );
        let minimal = findings::Minimal {
            workload: path,
            steps: shrunk.workload.steps.len(),
            records: shrunk.workload.total_records(),
            repro,
        };
        self.findings.set_minimal(signature, minimal)
    }

    fn progress_line(&mut self, always: bool) {
        if !always && self.last_progress.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last_progress = Instant::now();
        eprintln!(
            "campaign: {} workloads, {} states, {} findings ({} failing workloads), {:.1}s/{:.0}s",
            self.coverage.workloads,
            self.coverage.states_checked,
            self.findings.len(),
            self.coverage.failing_workloads,
            self.started.elapsed().as_secs_f64(),
            self.args.budget.as_secs_f64()
        );
    }

    /// Writes the reports and turns the outcome into the exit code.
    fn finish(self, generator: &Generator, stop: Stop) -> Result<()> {
        let (stopped_by, error) = match stop {
            Stop::Budget => ("budget", None),
            Stop::MaxWorkloads => ("max-workloads", None),
            Stop::Error(e) => ("error", Some(e)),
        };
        self.findings.finish()?;
        self.write_reports(generator, stopped_by)?;
        self.append_history()?;
        if let Some(e) = error {
            return Err(e.context("the campaign stopped on a harness error"));
        }
        if !self.findings.is_empty() {
            return Err(check_cmds::ViolationFound(format!(
                "{} findings ({} signatures) in the campaign, kept in {}",
                self.coverage.failing_workloads,
                self.findings.len(),
                self.out.join("findings").display()
            ))
            .into());
        }
        if self.coverage.errors > 0 {
            bail!(
                "the harness failed on {} workloads (see {})",
                self.coverage.errors,
                self.out.join(CAMPAIGN_JSON).display()
            );
        }
        Ok(())
    }

    /// Appends the campaign to `--history`.
    fn append_history(&self) -> Result<()> {
        let Some(path) = &self.args.history else {
            return Ok(());
        };
        let mut log = history::History::load(path)?;
        let entry = history::Entry {
            ended_unix_seconds: history::now_unix_seconds(),
            seed: self.seed,
            shard: self.args.shard.map(|(k, n)| format!("{k}/{n}")),
            tier: self.args.tier.name().to_string(),
            mutant: self.args.mutant.map(|m| m.name().to_string()),
            workloads: self.coverage.workloads,
            states_checked: self.coverage.states_checked,
            seconds: self.started.elapsed().as_secs_f64(),
            findings: Vec::new(),
        };
        let found: Vec<(String, String)> = self
            .findings
            .all()
            .map(|f| (f.signature.clone(), f.invariant.clone()))
            .collect();
        log.add(entry, &found);
        log.save(path)?;
        eprintln!(
            "campaign: history of {} campaigns in {}",
            log.campaigns.len(),
            path.display()
        );
        Ok(())
    }

    /// Prints the summary and writes `DIR/campaign.json`, `--json` and `--junit`.
    fn write_reports(&self, generator: &Generator, stopped_by: &'static str) -> Result<()> {
        let findings: Vec<_> = self.findings.all().collect();
        let report = CampaignReport {
            seed: self.seed,
            tier: self.args.tier.name(),
            filesystem: self.args.filesystem.name(),
            mutant: self.args.mutant.map(|m| m.name().to_string()),
            shard: self.args.shard.map(|(k, n)| format!("{k}/{n}")),
            depth: generator.config().depth,
            exhaustive_total: generator.exhaustive_total(),
            budget_seconds: self.args.budget.as_secs_f64(),
            seconds: self.started.elapsed().as_secs_f64(),
            stopped_by,
            workloads: self.coverage.workloads,
            states_checked: self.coverage.states_checked,
            first_finding_seconds: self.first_finding,
            coverage: &self.coverage,
            corpus_saved: self.corpus.as_ref().map(|c| c.saved),
            findings: findings.clone(),
            workloads_run: &self.runs,
        };
        print!("{}", report.summary(self.args.budget));
        let mut value = serde_json::to_value(&report)?;
        let html = self.args.html.as_ref().map(|p| p.display().to_string());
        if let (Some(page), Some(map)) = (&html, value.as_object_mut()) {
            map.insert("html".into(), page.as_str().into());
        }
        let json = serde_json::to_string_pretty(&value)? + "\n";
        report::write(&self.out.join(CAMPAIGN_JSON), &json)?;
        if let Some(path) = &self.args.json {
            report::write(path, &json)?;
        }
        if let Some(path) = &self.args.junit {
            let text = report::junit(&self.runs, &findings, html.as_deref())?;
            report::write(path, &text)?;
        }
        if let Some(path) = &self.args.html {
            crate::html::write(path, &crate::html::campaign(&value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_workloads_become_valid_sim_plans() {
        let generator = Generator::new(GeneratorConfig {
            filesystems: vec![Filesystem::Ext4, Filesystem::Xfs],
            ..GeneratorConfig::new(11)
        })
        .unwrap();
        for index in (0..300).chain(4000..4100) {
            let generated = generator.generate(index).unwrap();
            let plan = crate::sim_tier::plan_for(&generated.workload)
                .unwrap_or_else(|e| panic!("{index}: {e:#}\n{}", generated.yaml));
            assert_eq!(
                tiers::plan_kinds(&plan).len(),
                generated
                    .workload
                    .steps
                    .iter()
                    .filter(|s| !matches!(s, powercut_workloads::spec::Step::File(_)))
                    .count()
            );
        }
    }

    #[test]
    fn shards_partition_the_sequence() {
        let args = |shard| CampaignArgs {
            budget: Duration::from_secs(1),
            seed: Some(1),
            tier: Tier::Sim,
            filesystem: FsChoice::Ext4,
            shard,
            out: None,
            json: None,
            junit: None,
            html: None,
            corpus: None,
            history: None,
            mutant: None,
            depth: 2,
            max_workloads: None,
            backend: tiers::VmBackend::Qemu,
        };
        let dir = tempfile::tempdir().unwrap();
        let shards: Vec<CampaignArgs> = (0..3).map(|k| args(Some((k, 3)))).collect();
        let campaigns: Vec<Campaign<'_>> = shards
            .iter()
            .map(|a| Campaign::new(a, 1, dir.path(), None).unwrap())
            .collect();
        for index in 0..100 {
            let owners = campaigns.iter().filter(|c| c.in_shard(index)).count();
            assert_eq!(owners, 1, "workload {index}");
        }
    }
}
