//! Reports: JSON (serde), a human summary, JUnit XML, and the merge of shard reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::invariants::Violation;

/// Result of the coverage check (every ack on the state "everything durable at its mark").
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CoverageReport {
    /// Acks shown on the state that has everything up to their mark durable.
    pub acks_covered: u64,
    /// Acks not shown there.
    pub acks_uncovered: u64,
    /// Acks whose durable state was not checked before the budget ran out.
    #[serde(default)]
    pub acks_unchecked: u64,
    /// Labels of the uncovered acks (first ones).
    pub uncovered: Vec<String>,
    /// Violations found by the coverage check.
    pub violations: Vec<Violation>,
}

/// The invariants a check covers on every crash state; JUnit gets one testcase per workload x
/// invariant. "MOUNT" is a crash image the file system refused to mount. I9 holds only
/// promises a reopen made (`o:` marks), and passes trivially in logs without them.
pub const INVARIANTS: [&str; 8] = ["I1", "I2", "I3", "I4", "I5", "I6", "I9", "MOUNT"];

/// Invariant I7 (EIO handling): found by the guest during a run with injected faults, not in a
/// crash state; JUnit lists it for workloads with fault steps. The guest's other findings during
/// a run (a reopen's recovery that disagrees with the acks: I1, I2, I3) come the same way.
pub const I7: &str = "I7";

/// What a check run found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Workload seed.
    pub seed: u64,
    /// Workload name (from the `s:NAME` mark), "unknown" if the log has none.
    pub workload: String,
    /// File system of the recording.
    pub fs: String,
    /// Log hash (8 hex digits), the prefix of every state id.
    pub log_hash: String,
    /// Seed of the sampled subsets and tears.
    pub enumeration_seed: u64,
    /// `K/N` when this is one shard.
    pub shard: Option<String>,
    /// States in this shard after deduplication.
    pub states_total: u64,
    /// States checked.
    pub states_checked: u64,
    /// States skipped as identical to one already checked.
    pub duplicates_skipped: u64,
    /// States equal to one the coverage pass checked (same image, same expected acks): counted
    /// as checked with that outcome, not mounted again.
    #[serde(default)]
    pub states_from_coverage: u64,
    /// States checked, by kind.
    pub states_by_kind: BTreeMap<String, u64>,
    /// States checked per second.
    pub states_per_second: f64,
    /// Wall time of the check, in seconds.
    pub elapsed_seconds: f64,
    /// States on which the I5 probe corrupted a record.
    pub mid_log_probes: u64,
    /// Violations found.
    pub violations: Vec<Violation>,
    /// The coverage check's result, when it ran.
    pub coverage: Option<CoverageReport>,
    /// The time budget ran out before every state was checked.
    pub budget_exhausted: bool,
    /// The first violation shrunk to the simplest state of its cut that still shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimal_repro: Option<crate::outcome::ShrunkState>,
    /// Why crash images were full copies of the image instead of reflink clones (several times
    /// slower per state), when they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_copies: Option<String>,
    /// What each phase of the command covered (coverage, states, the I5 probe, the shrink, the
    /// run after a power cut), in the order they ran.
    #[serde(default)]
    pub phases: Vec<PhaseReport>,
    /// Where the time of checking states went, summed over every state of every worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_split: Option<TimeSplit>,
}

/// What one phase of a command covered.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PhaseReport {
    /// The phase: `coverage`, `states`, `i5_probe`, `shrink`, `after_crash_record`, and the
    /// phases of the check after a power cut prefixed `after_crash_`.
    pub name: String,
    /// Units done.
    pub done: u64,
    /// Units there were to do (for `shrink`, the most tries it could have taken).
    pub total: u64,
    /// What is counted: `states`, `tries`, `probes`, `recordings`.
    pub unit: String,
    /// The deadline stopped this phase before it was done (or before it started).
    pub stopped_by_budget: bool,
    /// Wall time of the phase, in seconds.
    pub seconds: f64,
}

impl PhaseReport {
    /// `coverage: 812 of 2020 states (budget ran out)`.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} of {} {}{}",
            self.name,
            self.done,
            self.total,
            self.unit,
            if self.stopped_by_budget {
                " (budget ran out)"
            } else {
                ""
            }
        )
    }
}

/// Where the time of checking states went, in seconds summed over workers (so with two workers
/// the sum is about twice the wall time of the passes).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimeSplit {
    /// States whose time is counted.
    pub states: u64,
    /// The one copy of the base image onto the scratch file system, then replaying the durable
    /// prefix into a worker's prefix image (each entry once per worker and pass: it moves only
    /// forward).
    #[serde(default)]
    pub replay_s: f64,
    /// Building the state's image: the clone of the prefix image and the state's own writes.
    pub image_s: f64,
    /// Attaching the loop device and mounting (the file system's own journal replay included).
    pub mount_s: f64,
    /// The engine's recovery of the journal on the mounted state.
    pub recovery_s: f64,
    /// Judging: the expected records and files against what recovery returned.
    pub judge_s: f64,
    /// The I5 probe (copying the journal, corrupting a record, recovering again).
    pub probe_s: f64,
    /// Unmounting and detaching the loop device.
    pub unmount_s: f64,
    /// Keeping the evidence of failing states.
    pub keep_s: f64,
}

impl TimeSplit {
    /// The parts with their names, in the order a state goes through them.
    pub fn parts(&self) -> [(&'static str, f64); 8] {
        [
            ("replay", self.replay_s),
            ("image", self.image_s),
            ("mount", self.mount_s),
            ("recovery", self.recovery_s),
            ("judge", self.judge_s),
            ("i5 probe", self.probe_s),
            ("unmount", self.unmount_s),
            ("keep", self.keep_s),
        ]
    }

    /// Adds `other`'s figures to these.
    pub fn add(&mut self, other: &TimeSplit) {
        self.states += other.states;
        self.replay_s += other.replay_s;
        self.image_s += other.image_s;
        self.mount_s += other.mount_s;
        self.recovery_s += other.recovery_s;
        self.judge_s += other.judge_s;
        self.probe_s += other.probe_s;
        self.unmount_s += other.unmount_s;
        self.keep_s += other.keep_s;
    }

    /// `time per state 41.2 ms: image 6.1 (15%), mount 12.0 (29%), ...` (milliseconds).
    pub fn describe(&self) -> String {
        if self.states == 0 {
            return "time per state: no state checked".to_string();
        }
        let total: f64 = self.parts().iter().map(|(_, s)| s).sum();
        let n = self.states.max(1) as f64;
        let parts: Vec<String> = self
            .parts()
            .iter()
            .filter(|(_, s)| *s > 0.0)
            .map(|(name, s)| {
                format!(
                    "{name} {:.1} ({:.0}%)",
                    s * 1000.0 / n,
                    if total > 0.0 { s * 100.0 / total } else { 0.0 }
                )
            })
            .collect();
        format!(
            "time per state {:.1} ms over {} states: {} (ms, summed over workers)",
            total * 1000.0 / n,
            self.states,
            parts.join(", ")
        )
    }
}

/// Reports that cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// No report was given.
    #[error("no reports to merge")]
    Empty,
    /// Two reports are of different runs.
    #[error("reports disagree on {field}: {a} vs {b}")]
    Mismatch {
        /// The field that differs.
        field: &'static str,
        /// Its value in the first report.
        a: String,
        /// Its value in the other.
        b: String,
    },
    /// A report of a whole run (no `shard`) among others: it would be counted twice.
    #[error(
        "report {index} (from 0) is not a shard (no `shard` K/N): a whole run's report can only \
         be merged alone"
    )]
    Unsharded {
        /// The report's position, from 0.
        index: usize,
    },
    /// A report's shard does not parse.
    #[error("report {index} (from 0): {source}")]
    BadShard {
        /// The report's position, from 0.
        index: usize,
        /// Cause.
        source: BadShard,
    },
    /// The shards given are not each of 0..n exactly once: the merge would not cover the run.
    /// `missing` lists the first missing shards, `missing_count` counts them all.
    #[error("{}", shard_set_problem(*n, missing, *missing_count, duplicated))]
    ShardSet {
        /// Shards in all.
        n: u32,
        /// The first shards missing.
        missing: Vec<u32>,
        /// Shards missing in all.
        missing_count: u32,
        /// Shards given more than once.
        duplicated: Vec<u32>,
    },
}

fn shard_set_problem(n: u32, missing: &[u32], missing_count: u32, duplicated: &[u32]) -> String {
    let list = |shards: &[u32]| {
        shards
            .iter()
            .map(|k| format!("{k}/{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut problems = Vec::new();
    if missing_count > 0 {
        let more = missing_count as usize - missing.len();
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        problems.push(format!("missing {}{more}", list(missing)));
    }
    if !duplicated.is_empty() {
        problems.push(format!("given more than once {}", list(duplicated)));
    }
    format!(
        "shards 0/{n} to {}/{n} must each be given exactly once: {}",
        n.saturating_sub(1),
        problems.join("; ")
    )
}

/// A shard that is not `K/N` with `0 <= K < N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad shard {0:?}: expected K/N with 0 <= K < N, e.g. 0/4")]
pub struct BadShard(pub String);

/// Parses a shard `K/N` (0-based K), as `--shard` takes it and reports carry it.
pub fn parse_shard(text: &str) -> Result<(u32, u32), BadShard> {
    let bad = || BadShard(text.to_string());
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let k: u32 = k.trim().parse().map_err(|_| bad())?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    if k >= n {
        return Err(bad());
    }
    Ok((k, n))
}

impl Report {
    /// No violation, none in coverage either.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.coverage.as_ref().is_none_or(|c| c.acks_uncovered == 0)
    }

    /// All violations, coverage ones included.
    pub fn all_violations(&self) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .chain(self.coverage.iter().flat_map(|c| c.violations.iter()))
    }

    /// What this check did not cover (None: every state it was given was checked). A check of
    /// no state, or one whose budget ran out first, is no evidence that the invariants hold.
    pub fn not_covered(&self) -> Option<String> {
        let unchecked_acks = self.coverage.as_ref().map_or(0, |c| c.acks_unchecked);
        let mut what: Vec<String> = self.states_not_covered().into_iter().collect();
        if unchecked_acks > 0 {
            what.push(format!(
                "the durable states of {unchecked_acks} acks were not checked"
            ));
        }
        // A phase the deadline stopped that the figures above do not already tell (the shrink
        // is not a matter of coverage: its violation stands).
        what.extend(
            self.phases
                .iter()
                .filter(|p| {
                    p.stopped_by_budget
                        && !matches!(p.name.as_str(), "coverage" | "states" | "shrink")
                })
                .map(PhaseReport::describe),
        );
        (!what.is_empty()).then(|| what.join("; "))
    }

    fn states_not_covered(&self) -> Option<String> {
        let budget = if self.budget_exhausted {
            " (the budget ran out)"
        } else {
            ""
        };
        if self.states_checked == 0 {
            return Some(if self.states_total == 0 {
                "there was no crash state to check".to_string()
            } else {
                format!(
                    "none of the {} crash states was checked{budget}",
                    self.states_total
                )
            });
        }
        (self.states_checked < self.states_total).then(|| {
            format!(
                "{} of {} crash states were not checked{budget}",
                self.states_total - self.states_checked,
                self.states_total
            )
        })
    }

    /// What each phase covered when the budget stopped one, and where the time of the states
    /// went, a line each.
    fn write_phases(&self, s: &mut String) {
        if self.phases.iter().any(|p| p.stopped_by_budget) {
            let all: Vec<String> = self.phases.iter().map(PhaseReport::describe).collect();
            let _ = writeln!(s, "budget ran out: {}", all.join("; "));
        }
        if let Some(split) = &self.time_split {
            let _ = writeln!(s, "{}", split.describe());
        }
    }

    /// Human summary (a few lines, then one line per violation, at most 20).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "workload {} seed {} on {} (log {}){}",
            self.workload,
            self.seed,
            self.fs,
            self.log_hash,
            self.shard
                .as_ref()
                .map(|k| format!(" shard {k}"))
                .unwrap_or_default()
        );
        let kinds: Vec<String> = self
            .states_by_kind
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ =
            writeln!(
            s,
            "states: {} of {} checked ({}), {} duplicates skipped, {} equal to coverage states, \
             {:.1} states/s over {:.1} s{}",
            self.states_checked,
            self.states_total,
            kinds.join(", "),
            self.duplicates_skipped,
            self.states_from_coverage,
            self.states_per_second,
            self.elapsed_seconds,
            if self.budget_exhausted { ", BUDGET EXHAUSTED" } else { "" }
        );
        if let Some(c) = &self.coverage {
            let _ = writeln!(
                s,
                "coverage: {} acks covered, {} uncovered{}",
                c.acks_covered,
                c.acks_uncovered,
                if c.acks_unchecked > 0 {
                    format!(", {} not checked (the budget ran out)", c.acks_unchecked)
                } else {
                    String::new()
                }
            );
        }
        self.write_phases(&mut s);
        if let Some(why) = &self.image_copies {
            let _ = writeln!(
                s,
                "slow path: every crash state was a full copy of the image, not a clone: {why}"
            );
        }
        let all: Vec<&Violation> = self.all_violations().collect();
        let not_covered = self.not_covered();
        if all.is_empty() {
            match &not_covered {
                None => {
                    let _ = writeln!(s, "all invariants held");
                }
                Some(what) if self.states_checked == 0 => {
                    let _ = writeln!(s, "INCOMPLETE: {what}");
                }
                Some(what) => {
                    let _ = writeln!(
                        s,
                        "INCOMPLETE: {what}; no violation in the {} states checked",
                        self.states_checked
                    );
                }
            }
        } else {
            let _ = writeln!(s, "{} violations:", all.len());
            for v in all.iter().take(20) {
                let _ = writeln!(
                    s,
                    "  {} state {}{}: expected {}; found {}",
                    v.invariant,
                    v.state_id,
                    v.step
                        .as_ref()
                        .map(|st| format!(" step {st}"))
                        .unwrap_or_default(),
                    v.expected,
                    v.found
                );
            }
            if let Some(m) = &self.minimal_repro {
                let _ = writeln!(s, "minimal reproducer: {}", m.describe());
            }
            if let Some(what) = &not_covered {
                let _ = writeln!(s, "incomplete: {what}");
            }
        }
        s
    }

    /// JUnit XML: suite "powercut", one testcase per workload x invariant of [`INVARIANTS`].
    pub fn to_junit(&self) -> Result<String, quick_junit::SerializeError> {
        self.to_junit_with(&INVARIANTS)
    }

    /// JUnit XML with one testcase per workload x invariant of `invariants` (e.g. [`INVARIANTS`]
    /// plus "I8" for a run that also checked a second crash).
    pub fn to_junit_with(
        &self,
        invariants: &[&str],
    ) -> Result<String, quick_junit::SerializeError> {
        self.to_junit_linking(invariants, None)
    }

    /// [`Report::to_junit_with`] whose failure messages name the HTML page of the report
    /// (`html`), so a CI system's test view leads to the picture of the failing states.
    pub fn to_junit_linking(
        &self,
        invariants: &[&str],
        html: Option<&str>,
    ) -> Result<String, quick_junit::SerializeError> {
        use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
        let mut suite = TestSuite::new("powercut");
        for &inv in invariants {
            let failing: Vec<&Violation> = self
                .all_violations()
                .filter(|v| v.invariant == inv)
                .collect();
            let status = if failing.is_empty() {
                TestCaseStatus::success()
            } else {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let lines: Vec<String> = failing
                    .iter()
                    .take(20)
                    .map(|v| {
                        format!(
                            "state {}: expected {}; found {}",
                            v.state_id, v.expected, v.found
                        )
                    })
                    .collect();
                let link = html.map(|h| format!(" (report: {h})")).unwrap_or_default();
                st.set_message(format!("{} violations of {inv}{link}", failing.len()));
                st.set_description(lines.join("\n"));
                st
            };
            let mut case = TestCase::new(format!("{}::{inv}", self.workload), status);
            case.set_classname(format!("powercut.{}", self.fs));
            suite.add_test_case(case);
        }
        let mut report = JReport::new("powercut");
        report.add_test_suite(suite);
        report.to_string()
    }
}

/// Joins shard reports of one run: shards 0/N to N-1/N, each exactly once (a report without a
/// shard only alone). Errors if seeds, workloads, file systems or logs differ, or if a shard is
/// missing or given twice: such a merge would pass on states nobody checked.
pub fn merge(reports: &[Report]) -> Result<Report, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    check_shard_set(reports)?;
    let mut out = first.clone();
    out.shard = None;
    for r in &reports[1..] {
        let same = |field, a: String, b: String| {
            if a == b {
                Ok(())
            } else {
                Err(MergeError::Mismatch { field, a, b })
            }
        };
        same("seed", first.seed.to_string(), r.seed.to_string())?;
        same("workload", first.workload.clone(), r.workload.clone())?;
        same("fs", first.fs.clone(), r.fs.clone())?;
        same("log_hash", first.log_hash.clone(), r.log_hash.clone())?;
        same(
            "enumeration_seed",
            first.enumeration_seed.to_string(),
            r.enumeration_seed.to_string(),
        )?;
        out.states_total += r.states_total;
        out.states_checked += r.states_checked;
        out.duplicates_skipped = out.duplicates_skipped.max(r.duplicates_skipped);
        out.states_from_coverage += r.states_from_coverage;
        for (k, v) in &r.states_by_kind {
            *out.states_by_kind.entry(k.clone()).or_insert(0) += v;
        }
        // Shards run side by side: rates add up, wall time is the longest.
        out.states_per_second += r.states_per_second;
        out.elapsed_seconds = out.elapsed_seconds.max(r.elapsed_seconds);
        out.mid_log_probes += r.mid_log_probes;
        out.image_copies = out.image_copies.or_else(|| r.image_copies.clone());
        add_phases(&mut out.phases, &r.phases);
        if let Some(split) = &r.time_split {
            out.time_split
                .get_or_insert_with(TimeSplit::default)
                .add(split);
        }
        out.violations.extend(r.violations.iter().cloned());
        out.budget_exhausted |= r.budget_exhausted;
        if out.coverage.is_none() {
            out.coverage = r.coverage.clone();
        }
    }
    Ok(out)
}

/// Adds the phases of another shard (or log) to `into`: counts add up by name, wall time is the
/// longest, a phase the budget stopped anywhere stays stopped.
pub fn add_phases(into: &mut Vec<PhaseReport>, more: &[PhaseReport]) {
    for p in more {
        match into.iter_mut().find(|q| q.name == p.name) {
            Some(q) => {
                q.done += p.done;
                q.total += p.total;
                q.stopped_by_budget |= p.stopped_by_budget;
                q.seconds = q.seconds.max(p.seconds);
            }
            None => into.push(p.clone()),
        }
    }
}

/// The shards of `reports` are 0..N of one N, each exactly once (or one report of a whole run).
fn check_shard_set(reports: &[Report]) -> Result<(), MergeError> {
    if let [only] = reports {
        if only.shard.is_none() {
            return Ok(());
        }
    }
    let mut shards = Vec::with_capacity(reports.len());
    for (index, r) in reports.iter().enumerate() {
        let text = r.shard.as_deref().ok_or(MergeError::Unsharded { index })?;
        let shard = parse_shard(text).map_err(|source| MergeError::BadShard { index, source })?;
        shards.push(shard);
    }
    let n = shards[0].1;
    if let Some(other) = shards.iter().find(|(_, m)| *m != n) {
        return Err(MergeError::Mismatch {
            field: "shard count",
            a: n.to_string(),
            b: other.1.to_string(),
        });
    }
    // N comes from untrusted JSON: count what was given, never allocate per shard of N.
    let mut given: BTreeMap<u32, usize> = BTreeMap::new();
    for (k, _) in &shards {
        *given.entry(*k).or_insert(0) += 1;
    }
    let missing_count = n - given.len() as u32;
    let missing: Vec<u32> = (0..n)
        .filter(|k| !given.contains_key(k))
        .take(MAX_LISTED_SHARDS)
        .collect();
    let duplicated: Vec<u32> = given
        .iter()
        .filter(|(_, &count)| count > 1)
        .map(|(&k, _)| k)
        .collect();
    if missing_count == 0 && duplicated.is_empty() {
        Ok(())
    } else {
        Err(MergeError::ShardSet {
            n,
            missing,
            missing_count,
            duplicated,
        })
    }
}

/// Missing shards named in a [`MergeError::ShardSet`]; the rest are only counted.
const MAX_LISTED_SHARDS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn report(shard: &str, checked: u64, violations: Vec<Violation>) -> Report {
        Report {
            seed: 7,
            workload: "smoke".into(),
            fs: "ext4".into(),
            log_hash: "0badcafe".into(),
            enumeration_seed: 0,
            shard: Some(shard.into()),
            states_total: checked,
            states_checked: checked,
            duplicates_skipped: 3,
            states_from_coverage: 0,
            states_by_kind: BTreeMap::from([("prefix".to_string(), checked)]),
            states_per_second: 10.0,
            elapsed_seconds: checked as f64 / 10.0,
            mid_log_probes: 0,
            violations,
            coverage: None,
            budget_exhausted: false,
            minimal_repro: None,
            image_copies: None,
            phases: Vec::new(),
            time_split: None,
        }
    }

    fn v(inv: &str) -> Violation {
        Violation {
            invariant: inv.into(),
            state_id: "0badcafe-c3-p".into(),
            seed: 7,
            step: Some("r:1-2:00000000".into()),
            expected: "records 1..=2".into(),
            found: "missing LSN 2".into(),
        }
    }

    #[test]
    fn merge_sums_and_checks_identity() {
        let m = merge(&[report("0/2", 5, vec![]), report("1/2", 7, vec![v("I1")])]).unwrap();
        assert_eq!(m.states_checked, 12);
        assert_eq!(m.states_by_kind["prefix"], 12);
        assert_eq!(m.violations.len(), 1);
        assert!((m.states_per_second - 20.0).abs() < 1e-9);
        assert!(!m.passed());
        let mut other = report("1/2", 1, vec![]);
        other.seed = 8;
        assert!(matches!(
            merge(&[report("0/2", 1, vec![]), other]),
            Err(MergeError::Mismatch { field: "seed", .. })
        ));
        assert_eq!(merge(&[]), Err(MergeError::Empty));
    }

    #[test]
    fn shards_parse() {
        assert_eq!(parse_shard("1/4"), Ok((1, 4)));
        assert_eq!(parse_shard(" 0 / 1 "), Ok((0, 1)));
        for bad in ["4/4", "1", "0/0", "-1/4", "a/b", ""] {
            assert_eq!(parse_shard(bad), Err(BadShard(bad.into())), "{bad}");
        }
    }

    #[test]
    fn merge_refuses_missing_and_duplicated_shards() {
        let shard = |k: &str| report(k, 5, vec![]);
        // One shard of four alone, or the same shard four times: most states unchecked.
        let alone = merge(&[shard("1/4")]).unwrap_err();
        assert_eq!(
            alone,
            MergeError::ShardSet {
                n: 4,
                missing: vec![0, 2, 3],
                missing_count: 3,
                duplicated: vec![],
            }
        );
        assert!(
            alone.to_string().contains("missing 0/4, 2/4, 3/4"),
            "{alone}"
        );
        let same = merge(&[shard("0/4"), shard("0/4"), shard("0/4"), shard("0/4")]).unwrap_err();
        assert_eq!(
            same,
            MergeError::ShardSet {
                n: 4,
                missing: vec![1, 2, 3],
                missing_count: 3,
                duplicated: vec![0],
            }
        );
        assert!(
            same.to_string().contains("given more than once 0/4"),
            "{same}"
        );
        // Every shard once, in any order, merges.
        let whole = merge(&[shard("2/3"), shard("0/3"), shard("1/3")]).unwrap();
        assert_eq!((whole.states_checked, whole.shard), (15, None));
        assert!(matches!(
            merge(&[shard("0/2"), shard("1/3")]),
            Err(MergeError::Mismatch {
                field: "shard count",
                ..
            })
        ));
        let mut unsharded = shard("0/1");
        unsharded.shard = None;
        assert_eq!(
            merge(&[shard("0/2"), unsharded.clone()]),
            Err(MergeError::Unsharded { index: 1 })
        );
        assert_eq!(merge(std::slice::from_ref(&unsharded)), Ok(unsharded));
        assert!(matches!(
            merge(&[shard("0/2"), shard("2/2")]),
            Err(MergeError::BadShard { index: 1, .. })
        ));
        // A hostile N is counted, not allocated or listed shard by shard.
        let huge = merge(&[shard("0/4000000000")]).unwrap_err();
        let text = huge.to_string();
        assert!(text.contains("and 3999999967 more"), "{text}");
    }

    #[test]
    fn incomplete_checks_are_not_a_pass() {
        let whole = report("0/1", 5, vec![]);
        assert_eq!(whole.not_covered(), None);
        assert!(whole.summary().contains("all invariants held"));

        let mut nothing = report("0/1", 5, vec![]);
        nothing.states_checked = 0;
        nothing.budget_exhausted = true;
        let what = nothing.not_covered().unwrap();
        assert_eq!(
            what,
            "none of the 5 crash states was checked (the budget ran out)"
        );
        let s = nothing.summary();
        assert!(!s.contains("all invariants held"), "{s}");
        assert!(s.contains(&format!("INCOMPLETE: {what}")), "{s}");

        let mut empty = report("3/4", 0, vec![]);
        empty.states_by_kind.clear();
        assert_eq!(
            empty.not_covered().as_deref(),
            Some("there was no crash state to check")
        );

        let mut part = report("0/1", 5, vec![]);
        part.states_total = 9;
        part.budget_exhausted = true;
        assert_eq!(
            part.not_covered().as_deref(),
            Some("4 of 9 crash states were not checked (the budget ran out)")
        );
        assert!(!part.summary().contains("all invariants held"));
        // A budget that ran out after the last state was taken left nothing unchecked.
        let mut raced = report("0/1", 5, vec![]);
        raced.budget_exhausted = true;
        assert_eq!(raced.not_covered(), None);

        // A violation is still reported as one, with what was not covered.
        let mut failing = report("0/1", 5, vec![v("I1")]);
        failing.states_total = 9;
        let s = failing.summary();
        assert!(
            s.contains("1 violations") && s.contains("incomplete: 4 of 9"),
            "{s}"
        );
        assert!(!failing.passed());
        // Shards that ran out of budget merge into an incomplete run.
        let mut short = report("1/2", 5, vec![]);
        short.states_total = 6;
        short.budget_exhausted = true;
        let merged = merge(&[report("0/2", 5, vec![]), short]).unwrap();
        assert_eq!(
            merged.not_covered().as_deref(),
            Some("1 of 11 crash states were not checked (the budget ran out)")
        );
    }

    #[test]
    fn json_junit_and_summary() {
        let r = report("0/1", 4, vec![v("I1"), v("I1")]);
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "seed",
            "workload",
            "states_checked",
            "states_per_second",
            "violations",
            "states_by_kind",
            "coverage",
            "budget_exhausted",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let xml = r.to_junit().unwrap();
        assert_eq!(xml.matches("<testcase").count(), INVARIANTS.len());
        assert!(xml.contains("smoke::I1"));
        assert!(xml.contains("2 violations of I1"));
        let linked = r
            .to_junit_linking(&INVARIANTS, Some("out/report.html"))
            .unwrap();
        assert!(linked.contains("2 violations of I1 (report: out/report.html)"));
        assert_eq!(xml.matches("<failure").count(), 1);
        let with_i8 = r.to_junit_with(&["I1", "I8"]).unwrap();
        assert_eq!(with_i8.matches("<testcase").count(), 2);
        assert!(with_i8.contains("smoke::I8"));
        let s = r.summary();
        assert!(
            s.contains("2 violations") && s.contains("missing LSN 2"),
            "{s}"
        );
    }
}
