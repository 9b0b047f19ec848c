//! `powercut merge` of campaign reports (`powercut campaign --json`): the shards of one campaign,
//! or several campaigns, joined into one report. Findings are deduplicated by signature (the
//! earliest first sighting kept, every report that saw it listed), counts and times summed.
//!
//! A campaign is identified by its seed, tier, file system, mutant and depth: the reports of one
//! campaign must be either one unsharded report or shards K/N of one N, each at most once. A
//! repeated shard (or an unsharded report beside others of the same campaign) is an error, since
//! its workloads would count twice; a missing shard is a warning, listed in `missing_shards`,
//! and makes the merge incomplete (exit 4 when nothing was found), since a shard job that failed
//! must not hide the findings of the others.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::exit::{Incomplete, ViolationFound};

/// The key a campaign report has and a check report has not.
pub const KIND_KEY: &str = "workloads_run";
/// The key only a merged campaign report has.
pub const MERGED_KEY: &str = "merged_reports";
/// Missing shards named in the report; the rest are only counted (N comes from untrusted JSON).
const MAX_LISTED_SHARDS: u32 = 32;

/// The parts of a campaign report that a merge reads.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ShardReport {
    pub seed: u64,
    pub tier: String,
    pub filesystem: String,
    pub mutant: Option<String>,
    pub shard: Option<String>,
    pub depth: u64,
    pub seconds: f64,
    pub stopped_by: String,
    pub workloads: u64,
    pub states_checked: u64,
    pub failing_workloads: u64,
    pub incomplete_runs: u64,
    pub errors: u64,
    pub findings: Vec<FindingIn>,
}

/// A finding of a campaign report: the fields a merge uses, the others kept as they are.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct FindingIn {
    pub signature: String,
    pub invariant: String,
    pub workload: String,
    pub repro: String,
    /// Workload runs of that report that showed it.
    pub hits: u64,
    /// Seconds into its campaign of the first one.
    pub seconds: f64,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A campaign report and the file it came from.
#[derive(Debug)]
pub struct Input {
    pub path: PathBuf,
    pub report: ShardReport,
    /// The shard, parsed (None: the whole campaign).
    shard: Option<(u32, u32)>,
}

impl Input {
    /// Checks the fields a merge relies on; `report` was read from `path`.
    pub fn new(path: &Path, report: ShardReport) -> Result<Input> {
        let shard = report
            .shard
            .as_deref()
            .map(powercut_oracles::report::parse_shard)
            .transpose()
            .with_context(|| format!("{}: field `shard`", path.display()))?;
        if !report.seconds.is_finite() || report.seconds < 0.0 {
            bail!("{}: field `seconds` is not a duration", path.display());
        }
        Ok(Input {
            path: path.to_path_buf(),
            report,
            shard,
        })
    }

    fn shard_text(&self) -> String {
        self.report.shard.clone().unwrap_or_else(|| "whole".into())
    }

    /// Seed, tier, file system, mutant and depth: the reports of one campaign share them.
    fn campaign(&self) -> CampaignKey {
        let r = &self.report;
        CampaignKey {
            seed: r.seed,
            tier: r.tier.clone(),
            filesystem: r.filesystem.clone(),
            mutant: r.mutant.clone(),
            depth: r.depth,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CampaignKey {
    seed: u64,
    tier: String,
    filesystem: String,
    mutant: Option<String>,
    depth: u64,
}

impl std::fmt::Display for CampaignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} ({} tier, {}, depth {}{})",
            self.seed,
            self.tier,
            self.filesystem,
            self.depth,
            self.mutant
                .as_deref()
                .map_or(String::new(), |m| format!(", mutant {m}"))
        )
    }
}

/// Where a finding was seen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seen {
    pub report: PathBuf,
    pub seed: u64,
    /// `K/N`, or `whole` for an unsharded campaign.
    pub shard: String,
    pub hits: u64,
    pub seconds: f64,
}

/// One signature over every report: the earliest first sighting, with every report that saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergedFinding {
    /// The finding as the report of its earliest sighting holds it, `hits` summed over all.
    #[serde(flatten)]
    pub first: FindingIn,
    pub first_seen: Seen,
    pub seen_in: Vec<Seen>,
}

/// One report given to the merge, in brief.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergedInput {
    pub report: PathBuf,
    pub seed: u64,
    pub shard: String,
    pub tier: String,
    pub workloads: u64,
    pub states_checked: u64,
    pub seconds: f64,
    pub stopped_by: String,
    pub findings: usize,
}

/// The merged report (`powercut merge -o`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergedCampaign {
    /// The campaign seeds, each once, in order.
    pub seeds: Vec<u64>,
    pub workloads: u64,
    pub states_checked: u64,
    /// Campaign time summed over the reports (shards run side by side: not wall time).
    pub seconds: f64,
    pub failing_workloads: u64,
    pub incomplete_runs: u64,
    pub errors: u64,
    /// Shards of a campaign no report was given for: `seed S (...): K/N`.
    pub missing_shards: Vec<String>,
    pub findings: Vec<MergedFinding>,
    pub merged_reports: Vec<MergedInput>,
}

impl MergedCampaign {
    /// The exit code of the merge: 1 with a finding, else 4 with a shard missing, else 0.
    pub fn outcome(&self) -> Result<()> {
        if !self.findings.is_empty() {
            let hits: u64 = self.findings.iter().map(|f| f.first.hits).sum();
            return Err(ViolationFound(format!(
                "{} findings ({hits} hits) in {} campaign reports",
                self.findings.len(),
                self.merged_reports.len()
            ))
            .into());
        }
        if !self.missing_shards.is_empty() {
            return Err(Incomplete(format!(
                "shards missing: {}",
                self.missing_shards.join("; ")
            ))
            .into());
        }
        Ok(())
    }

    /// The lines printed at the end of the merge.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        let _ = writeln!(
            s,
            "merged {} campaign reports (seeds {}): {} workloads, {} crash states, {:.1}s of \
             campaign time, {} findings, {} failing workloads, {} harness errors",
            self.merged_reports.len(),
            seeds.join(", "),
            self.workloads,
            self.states_checked,
            self.seconds,
            self.findings.len(),
            self.failing_workloads,
            self.errors
        );
        for missing in &self.missing_shards {
            let _ = writeln!(s, "INCOMPLETE: {missing} missing");
        }
        for f in &self.findings {
            let first = &f.first_seen;
            let _ = writeln!(
                s,
                "  {} ({}): {} hits in {} reports, first in {} (seed {} shard {}, {:.2}s): {}",
                f.first.signature,
                f.first.invariant,
                f.first.hits,
                f.seen_in.len(),
                f.first.workload,
                first.seed,
                first.shard,
                first.seconds,
                f.first.repro
            );
        }
        s
    }
}

/// Joins campaign reports; fails on a repeated shard, warns on a missing one.
pub fn merge(inputs: &[Input]) -> Result<MergedCampaign> {
    if inputs.is_empty() {
        bail!("no campaign reports to merge");
    }
    let missing_shards = check_shard_sets(inputs)?;
    for missing in &missing_shards {
        eprintln!("warning: campaign {missing} missing: the merge does not cover that campaign");
    }
    let mut seeds: Vec<u64> = inputs.iter().map(|i| i.report.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let sum = |field: fn(&ShardReport) -> u64| inputs.iter().map(|i| field(&i.report)).sum();
    Ok(MergedCampaign {
        seeds,
        workloads: sum(|r| r.workloads),
        states_checked: sum(|r| r.states_checked),
        seconds: inputs.iter().map(|i| i.report.seconds).sum(),
        failing_workloads: sum(|r| r.failing_workloads),
        incomplete_runs: sum(|r| r.incomplete_runs),
        errors: sum(|r| r.errors),
        missing_shards,
        findings: dedupe_findings(inputs),
        merged_reports: inputs.iter().map(brief).collect(),
    })
}

fn brief(input: &Input) -> MergedInput {
    let r = &input.report;
    MergedInput {
        report: input.path.clone(),
        seed: r.seed,
        shard: input.shard_text(),
        tier: r.tier.clone(),
        workloads: r.workloads,
        states_checked: r.states_checked,
        seconds: r.seconds,
        stopped_by: r.stopped_by.clone(),
        findings: r.findings.len(),
    }
}

/// Per campaign: one whole report, or shards of one N each at most once. Returns the missing
/// shards (`seed S (...): K/N`); a repeat, a whole report beside others or two shard counts are
/// errors naming the files.
fn check_shard_sets(inputs: &[Input]) -> Result<Vec<String>> {
    let mut campaigns: BTreeMap<CampaignKey, Vec<&Input>> = BTreeMap::new();
    for input in inputs {
        campaigns.entry(input.campaign()).or_default().push(input);
    }
    let mut missing = Vec::new();
    for (key, reports) in &campaigns {
        if let Some(whole) = reports.iter().find(|i| i.shard.is_none()) {
            if let Some(other) = reports.iter().find(|i| !std::ptr::eq(*i, whole)) {
                bail!(
                    "{} and {} are both reports of campaign {key}, and {} is the whole campaign \
                     (no `shard`): its workloads would count twice",
                    whole.path.display(),
                    other.path.display(),
                    whole.path.display()
                );
            }
            continue;
        }
        missing.extend(missing_shards(key, reports)?);
    }
    Ok(missing)
}

/// The shards of one N not given for the campaign `key`; an error for a shard given twice.
fn missing_shards(key: &CampaignKey, reports: &[&Input]) -> Result<Vec<String>> {
    let mut given: BTreeMap<u32, &Input> = BTreeMap::new();
    let (_, n) = reports[0].shard.expect("only shards here");
    for input in reports {
        let (k, m) = input.shard.expect("only shards here");
        if m != n {
            bail!(
                "{} (shard {}) and {} (shard {}) are shards of campaign {key} with different \
                 shard counts",
                reports[0].path.display(),
                reports[0].shard_text(),
                input.path.display(),
                input.shard_text()
            );
        }
        if let Some(first) = given.insert(k, input) {
            bail!(
                "shard {k}/{n} of campaign {key} is given more than once: {} and {}",
                first.path.display(),
                input.path.display()
            );
        }
    }
    let count = n - given.len() as u32;
    if count == 0 {
        return Ok(Vec::new());
    }
    let listed: Vec<String> = (0..n)
        .filter(|k| !given.contains_key(k))
        .take(MAX_LISTED_SHARDS as usize)
        .map(|k| format!("{k}/{n}"))
        .collect();
    let more = if count > MAX_LISTED_SHARDS {
        format!(" and {} more", count - MAX_LISTED_SHARDS)
    } else {
        String::new()
    };
    Ok(vec![format!("{key}: shard {}{more}", listed.join(", "))])
}

/// One finding per signature in order of first sighting (seconds into its campaign; ties by
/// the order of the reports), its hits summed.
fn dedupe_findings(inputs: &[Input]) -> Vec<MergedFinding> {
    let mut by_signature: BTreeMap<&str, MergedFinding> = BTreeMap::new();
    for input in inputs {
        for f in &input.report.findings {
            let seen = Seen {
                report: input.path.clone(),
                seed: input.report.seed,
                shard: input.shard_text(),
                hits: f.hits,
                seconds: f.seconds,
            };
            match by_signature.get_mut(f.signature.as_str()) {
                None => {
                    let merged = MergedFinding {
                        first: f.clone(),
                        first_seen: seen.clone(),
                        seen_in: vec![seen],
                    };
                    by_signature.insert(&f.signature, merged);
                }
                Some(merged) => {
                    let hits = merged.first.hits + f.hits;
                    if f.seconds < merged.first_seen.seconds {
                        merged.first = f.clone();
                        merged.first_seen = seen.clone();
                    }
                    merged.first.hits = hits;
                    merged.seen_in.push(seen);
                }
            }
        }
    }
    let mut findings: Vec<MergedFinding> = by_signature.into_values().collect();
    // Stable: equal times keep the order of the signatures, which is reproducible.
    findings.sort_by(|a, b| a.first_seen.seconds.total_cmp(&b.first_seen.seconds));
    findings
}

/// `--junit` of a merge: one testcase per report (a failure with its findings, an error if its
/// campaign stopped on a harness error) and one error per missing shard.
pub fn junit(merged: &MergedCampaign) -> Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("powercut campaign merge");
    for input in &merged.merged_reports {
        let signatures: Vec<&str> = merged
            .findings
            .iter()
            .filter(|f| f.seen_in.iter().any(|s| s.report == input.report))
            .map(|f| f.first.signature.as_str())
            .collect();
        let status = if !signatures.is_empty() {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_message(format!("findings {}", signatures.join(", ")));
            st
        } else if input.stopped_by == "error" {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
            st.set_message("the campaign stopped on a harness error");
            st
        } else {
            TestCaseStatus::success()
        };
        let name = format!("seed {} shard {}", input.seed, input.shard);
        let mut case = TestCase::new(name, status);
        case.set_classname(format!("powercut.campaign.{}", input.tier));
        case.set_time(Duration::from_secs_f64(input.seconds));
        suite.add_test_case(case);
    }
    for missing in &merged.missing_shards {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
        st.set_message("no report given for this shard");
        suite.add_test_case(TestCase::new(missing.clone(), st));
    }
    let mut report = Report::new("powercut-campaign-merge");
    report.add_test_suite(suite);
    report.to_string().context("rendering JUnit XML")
}
