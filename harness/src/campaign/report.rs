//! What a campaign covered and found: the summary it prints, `--json` and `--junit`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use powercut_workloads::generate::{step_kind, Generated};

use super::findings::Finding;

/// One workload run of the campaign.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadRun {
    pub index: u64,
    pub name: String,
    pub mode: &'static str,
    pub tier: &'static str,
    pub states_checked: u64,
    pub seconds: f64,
    /// Invariants violated, each once, the first one first.
    pub invariants: Vec<String>,
    /// Signature of the run's finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Why the run did not check every crash state, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// The harness failed on this workload (no verdict).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts over every workload run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Coverage {
    pub workloads: u64,
    pub workloads_by_tier: BTreeMap<&'static str, u64>,
    pub workloads_by_mode: BTreeMap<&'static str, u64>,
    pub states_checked: u64,
    /// Steps run, by kind (`append`, `group_commit`, `ingest`, `rotate`, ...).
    pub ops_by_kind: BTreeMap<&'static str, u64>,
    /// Steps of the workloads that their tier does not run (file steps in the sim tier).
    pub ops_skipped_by_kind: BTreeMap<&'static str, u64>,
    /// Engine options and file systems of the workloads run (`durability=dsync`, ...).
    pub options: BTreeMap<String, u64>,
    /// Workloads with at least one finding.
    pub failing_workloads: u64,
    /// Runs that did not check every crash state.
    pub incomplete_runs: u64,
    /// Runs on which the harness itself failed.
    pub errors: u64,
    /// `[seconds, states checked]` after each run (at most [`MAX_TIME_POINTS`], thinned
    /// evenly), for the chart of the HTML report.
    pub states_over_time: Vec<(f64, u64)>,
    #[serde(skip)]
    clock: Clock,
}

/// Points kept in [`Coverage::states_over_time`]; past it every other point is dropped.
pub const MAX_TIME_POINTS: usize = 2000;

/// When the campaign started (its coverage is made then).
#[derive(Debug)]
struct Clock(std::time::Instant);

impl Default for Clock {
    fn default() -> Self {
        Clock(std::time::Instant::now())
    }
}

impl Coverage {
    /// Counts one run of `generated` in `tier`, whose tier ran the steps of kinds `ran`.
    pub fn add(&mut self, generated: &Generated, run: &WorkloadRun, ran: &[&'static str]) {
        self.workloads += 1;
        *self.workloads_by_tier.entry(run.tier).or_default() += 1;
        *self.workloads_by_mode.entry(run.mode).or_default() += 1;
        self.states_checked += run.states_checked;
        let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
        for step in &generated.workload.steps {
            *skipped.entry(step_kind(step)).or_default() += 1;
        }
        for kind in ran {
            *self.ops_by_kind.entry(kind).or_default() += 1;
            if let Some(n) = skipped.get_mut(kind) {
                *n = n.saturating_sub(1);
            }
        }
        for (kind, n) in skipped.into_iter().filter(|(_, n)| *n > 0) {
            *self.ops_skipped_by_kind.entry(kind).or_default() += n;
        }
        for option in option_labels(generated) {
            *self.options.entry(option).or_default() += 1;
        }
        self.failing_workloads += u64::from(!run.invariants.is_empty());
        self.incomplete_runs += u64::from(run.incomplete.is_some());
        self.errors += u64::from(run.error.is_some());
        if self.states_over_time.len() >= MAX_TIME_POINTS {
            let mut keep = false;
            self.states_over_time.retain(|_| {
                keep = !keep;
                keep
            });
        }
        self.states_over_time
            .push((self.clock.0.elapsed().as_secs_f64(), self.states_checked));
    }
}

/// `durability=dsync`, `preallocation=zero`, `segment_bytes=65536`, `recycle=true`,
/// `max_staging_bytes=default`, `filesystem=ext4`.
fn option_labels(generated: &Generated) -> Vec<String> {
    let w = &generated.workload;
    let options = w.journal_options();
    vec![
        format!("durability={:?}", options.durability).to_lowercase(),
        format!("preallocation={:?}", options.preallocation).to_lowercase(),
        format!("segment_bytes={}", options.segment_bytes),
        format!("recycle={}", options.recycle_segments),
        format!(
            "max_staging_bytes={}",
            w.writer
                .max_staging_bytes
                .map_or("default".to_string(), |b| b.to_string())
        ),
        format!("filesystem={}", w.filesystem.name()),
    ]
}

/// `--json`: the figures, the findings and every workload run.
#[derive(Debug, serde::Serialize)]
pub struct CampaignReport<'a> {
    pub seed: u64,
    pub tier: &'static str,
    pub filesystem: &'static str,
    pub mutant: Option<String>,
    pub shard: Option<String>,
    pub depth: usize,
    pub exhaustive_total: u64,
    pub budget_seconds: f64,
    pub seconds: f64,
    /// `budget`, `max-workloads` or `error`.
    pub stopped_by: &'static str,
    pub workloads: u64,
    pub states_checked: u64,
    pub first_finding_seconds: Option<f64>,
    #[serde(flatten)]
    pub coverage: &'a Coverage,
    pub corpus_saved: Option<u64>,
    pub findings: Vec<&'a Finding>,
    pub workloads_run: &'a [WorkloadRun],
}

impl CampaignReport<'_> {
    /// The lines printed at the end.
    pub fn summary(&self, budget: Duration) -> String {
        let c = self.coverage;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "campaign seed {}: {} workloads ({}) in {:.1}s of {:.0}s (stopped by {})",
            self.seed,
            self.workloads,
            join_counts(c.workloads_by_mode.iter().chain(&c.workloads_by_tier)),
            self.seconds,
            budget.as_secs_f64(),
            self.stopped_by
        );
        let _ = writeln!(s, "crash states checked: {}", self.states_checked);
        let _ = writeln!(s, "steps run: {}", join_counts(c.ops_by_kind.iter()));
        if !c.ops_skipped_by_kind.is_empty() {
            let _ = writeln!(
                s,
                "steps skipped by their tier: {}",
                join_counts(c.ops_skipped_by_kind.iter())
            );
        }
        let _ = writeln!(s, "options: {}", join_counts(c.options.iter()));
        if c.incomplete_runs > 0 || c.errors > 0 {
            let _ = writeln!(
                s,
                "runs without a full check: {} incomplete, {} harness errors",
                c.incomplete_runs, c.errors
            );
        }
        let _ = writeln!(
            s,
            "findings: {} signatures over {} failing workloads{}",
            self.findings.len(),
            c.failing_workloads,
            self.first_finding_seconds
                .map(|t| format!(", first after {t:.2}s"))
                .unwrap_or_default()
        );
        for f in &self.findings {
            let replays = f
                .replays
                .map(|r| format!(", shown again by {}/{} replays", r.showed_invariant, r.runs))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} {} x{} first in {} ({} tier, {:.2}s{replays}): {}",
                f.signature, f.invariant, f.hits, f.workload, f.tier, f.seconds, f.repro
            );
        }
        s
    }
}

fn join_counts<'a, K: std::fmt::Display + 'a>(
    counts: impl Iterator<Item = (&'a K, &'a u64)>,
) -> String {
    counts
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--junit`: one testcase per workload run, a failure per finding (its message names the
/// HTML report `html`, when there is one).
pub fn junit(runs: &[WorkloadRun], findings: &[&Finding], html: Option<&str>) -> Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("powercut campaign");
    for run in runs {
        let status = if let Some(error) = &run.error {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
            st.set_message(error.clone());
            st
        } else if run.invariants.is_empty() {
            TestCaseStatus::success()
        } else {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let signature = run.signature.as_deref().unwrap_or("-");
            let link = html.map(|h| format!(" (report: {h})")).unwrap_or_default();
            st.set_message(format!(
                "{} violated (signature {signature}){link}",
                run.invariants.join(", ")
            ));
            if let Some(f) = findings.iter().find(|f| f.signature == signature) {
                st.set_description(format!(
                    "first seen in {}: expected {}; found {}\nreplay: {}",
                    f.workload, f.expected, f.found, f.repro
                ));
            }
            st
        };
        let mut case = TestCase::new(run.name.clone(), status);
        case.set_classname(format!("powercut.campaign.{}", run.tier));
        case.set_time(Duration::from_secs_f64(run.seconds));
        suite.add_test_case(case);
    }
    let mut report = Report::new("powercut-campaign");
    report.add_test_suite(suite);
    report.to_string().context("rendering JUnit XML")
}

/// Writes `text` to `path`.
pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
