//! `powercut shrink`: minimise a failing workload. Steps are dropped one at a time (last
//! first), then the record counts of the remaining appends and ingests halved, each candidate
//! re-run (recorded in a VM and checked, or run in the sim tier) and kept when it still
//! violates the same invariant. The last failing run's first violation is shrunk to its minimal
//! crash state as every run does, so the result is a minimal workload plus a minimal state.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use powercut_workloads::spec::{Step, Workload};

/// Most candidate runs of one shrink.
pub const MAX_SHRINK_RUNS: usize = 200;

/// What a run of a candidate found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Invariant of the first violation (None: the candidate passed).
    pub invariant: Option<String>,
    /// How to reproduce that violation (a state id, a command).
    pub repro: Option<String>,
}

/// The outcome of a shrink.
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub workload: Workload,
    pub invariant: String,
    pub repro: Option<String>,
    pub runs: usize,
    pub steps_before: usize,
    pub records_before: u64,
    /// The time budget ran out before every candidate was tried.
    pub budget_exhausted: bool,
}

/// Shrinks `original` while `run` keeps finding a violation of the invariant it finds first.
/// `run` gets each candidate and the index of the attempt.
pub fn shrink(
    original: &Workload,
    budget: Duration,
    run: &mut dyn FnMut(&Workload, usize) -> Result<Verdict>,
) -> Result<Shrunk> {
    let started = Instant::now();
    let first = run(original, 0)?;
    let Some(invariant) = first.invariant else {
        bail!(
            "workload {} shows no violation: nothing to shrink",
            original.name
        );
    };
    let mut best = original.clone();
    let mut repro = first.repro;
    let mut runs = 1usize;
    let mut budget_exhausted = false;
    let mut try_candidate = |candidate: Workload,
                             best: &mut Workload,
                             repro: &mut Option<String>,
                             runs: &mut usize|
     -> Result<bool> {
        if candidate.validate().is_err() || candidate == *best {
            return Ok(false);
        }
        if *runs >= MAX_SHRINK_RUNS || started.elapsed() >= budget {
            budget_exhausted = true;
            return Ok(false);
        }
        let verdict = run(&candidate, *runs)?;
        *runs += 1;
        if verdict.invariant.as_deref() == Some(invariant.as_str()) {
            *best = candidate;
            *repro = verdict.repro;
            return Ok(true);
        }
        Ok(false)
    };
    // Drop steps, last first (later steps depend on earlier ones, rarely the other way).
    let mut i = best.steps.len();
    while i > 0 {
        i -= 1;
        if best.steps.len() <= 1 {
            break;
        }
        let mut candidate = best.clone();
        candidate.steps.remove(i);
        try_candidate(candidate, &mut best, &mut repro, &mut runs)?;
    }
    // Halve record counts while the violation stays.
    for i in 0..best.steps.len() {
        loop {
            let mut candidate = best.clone();
            if !halve(&mut candidate.steps[i]) {
                break;
            }
            if !try_candidate(candidate, &mut best, &mut repro, &mut runs)? {
                break;
            }
        }
    }
    Ok(Shrunk {
        steps_before: original.steps.len(),
        records_before: original.total_records(),
        workload: best,
        invariant,
        repro,
        runs,
        budget_exhausted,
    })
}

/// Halves the records of an append or ingest step; false when there is nothing to halve.
fn halve(step: &mut Step) -> bool {
    match step {
        Step::Append(a) if a.count > 1 => {
            a.count /= 2;
            a.commit_every = a.commit_every.min(a.count);
            true
        }
        Step::Ingest(i) if i.records_per_client > 1 => {
            i.records_per_client /= 2;
            true
        }
        Step::Ingest(i) if i.clients > 1 => {
            i.clients /= 2;
            true
        }
        _ => false,
    }
}

/// The name of the minimal workload in the output directory.
pub const MINIMAL_FILE: &str = "minimal.yaml";

/// Writes the minimal workload as YAML with a header saying where it came from.
pub fn write_minimal(shrunk: &Shrunk, source: &Path, out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(MINIMAL_FILE);
    let yaml = serde_yaml::to_string(&shrunk.workload).context("writing the workload as YAML")?;
    let text = format!(
        "# Shrunk from {} by `powercut shrink`: {} of {} steps, {} of {} records, still {}.\n{yaml}",
        source.display(),
        shrunk.workload.steps.len(),
        shrunk.steps_before,
        shrunk.workload.total_records(),
        shrunk.records_before,
        shrunk.invariant
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(text: &str) -> Workload {
        powercut_workloads::spec::parse(text, "t.yaml").unwrap()
    }

    const FAILING: &str = "name: t\nwriter: { segment_bytes: 64KiB }\nsteps:\n  \
         - append: { count: 40, size: 100, commit_every: 4 }\n  \
         - rotate: {}\n  - append: { count: 12, size: 100 }\n  - reopen: {}\n  \
         - append: { count: 9, size: 100, commit_every: 3 }\n";

    /// A stand-in for a buggy engine: the violation needs a rotation followed (at any
    /// distance) by at least 3 records.
    fn fails(w: &Workload) -> bool {
        let mut rotated = false;
        let mut after = 0;
        for s in &w.steps {
            match s {
                Step::Rotate => rotated = true,
                Step::Append(a) if rotated => after += a.count,
                _ => {}
            }
        }
        after >= 3
    }

    #[test]
    fn shrinks_to_the_steps_and_records_the_violation_needs() {
        let original = workload(FAILING);
        let mut seen = Vec::new();
        let shrunk = shrink(&original, Duration::from_secs(60), &mut |w, n| {
            seen.push(n);
            Ok(Verdict {
                invariant: fails(w).then(|| "I1".to_string()),
                repro: fails(w).then(|| format!("run {n}")),
            })
        })
        .unwrap();
        assert_eq!(shrunk.invariant, "I1");
        assert!(fails(&shrunk.workload));
        // One rotation and one append of 3 records are all it takes.
        assert_eq!(
            shrunk.workload.steps.len(),
            2,
            "{:?}",
            shrunk.workload.steps
        );
        assert_eq!(shrunk.workload.total_records(), 3);
        assert_eq!(shrunk.runs, seen.len());
        assert!(!shrunk.budget_exhausted);
        let dir = tempfile::tempdir().unwrap();
        let path = write_minimal(&shrunk, Path::new("t.yaml"), dir.path()).unwrap();
        let back = powercut_workloads::spec::load(&path).unwrap();
        assert_eq!(back.steps, shrunk.workload.steps);
    }

    #[test]
    fn a_passing_workload_is_an_error_and_other_invariants_do_not_count() {
        let original = workload(FAILING);
        let passing = shrink(&original, Duration::from_secs(60), &mut |_, _| {
            Ok(Verdict {
                invariant: None,
                repro: None,
            })
        });
        assert!(passing.is_err());
        // Candidates that fail differently are not kept.
        let shrunk = shrink(&original, Duration::from_secs(60), &mut |_, n| {
            Ok(Verdict {
                invariant: Some(if n == 0 { "I1" } else { "I3" }.to_string()),
                repro: None,
            })
        })
        .unwrap();
        assert_eq!(shrunk.workload, original);
    }
}
