//! The knobs of a crash-state check, shared by `run`, `check`, `shrink` and the commands that run
//! checks themselves (mutants, campaign), and the duration syntax of `--budget`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use powercut_oracles::check::CheckConfig;
use powercut_oracles::crash::EnumConfig;
use powercut_oracles::report;

use crate::outputs::Io;
use crate::recovery::guest_invariant_config;

/// Knobs shared by `run`, `check` and `repro`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Seed of the sampled subsets and tears (default: the workload seed).
    #[arg(long)]
    pub enumeration_seed: Option<u64>,
    /// The whole command's time (e.g. 90s, 5m, 1h), from its start: the recording, coverage,
    /// the crash states, the I5 probe, the shrink and the run after a power cut share it; no new
    /// work starts after it. The report says what each phase covered (`phases`); exit 4 when
    /// something was left unchecked and nothing was found.
    #[arg(long, value_parser = parse_duration)]
    pub budget: Option<Duration>,
    /// Check only shard K of N (0-based), e.g. 0/4; `powercut merge` joins the shard reports.
    #[arg(long, value_parser = report::parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// Epochs with at most this many writes get every subset checked; larger ones are sampled.
    #[arg(long, default_value_t = EnumConfig::default().max_exhaustive_subset)]
    pub max_exhaustive_subset: usize,
    /// Sampled subsets per large epoch.
    #[arg(long, default_value_t = EnumConfig::default().samples_per_epoch)]
    pub samples_per_epoch: usize,
    /// Torn variants per multi-sector write.
    #[arg(long, default_value_t = EnumConfig::default().torn_samples)]
    pub torn_samples: usize,
    /// The device's atomic write size: torn writes split only at multiples of it. 4096 (the
    /// file systems' block size) by default; 512 also tears file-system metadata blocks, which
    /// ext4 then refuses to mount (its metadata checksums fail): a file-system finding.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(512..=1048576))]
    pub atomic_write_bytes: u64,
    /// Build crash images here (a reflink-capable file system makes each state a clone).
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report here (one testcase per workload x invariant).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML report here (summary, timeline of the block log, each
    /// violation's crash state); the JSON report names it under `html`.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Parallel checkers (each mounts its own images).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Images of failing states kept under OUT/violations, per pass (the others keep their
    /// outcome and ledger; `powercut repro` rebuilds any of them).
    #[arg(long, default_value_t = powercut_oracles::check::DEFAULT_MAX_KEPT_IMAGES)]
    pub keep_images: usize,
    /// The command's one deadline (`--budget` from the command's start), shared by every phase:
    /// the recording, coverage, the states, the shrink, the run after a power cut.
    #[arg(skip)]
    pub deadline: Option<Instant>,
    /// Phases of the command that ran before the check (the recording of `run`): the report
    /// lists them first.
    #[arg(skip)]
    pub phases_before: Vec<powercut_oracles::report::PhaseReport>,
    /// `--budget` starts once the recording is done (a crash-state budget per run, as
    /// `powercut mutants --budget-per-run` says) instead of at the command's start.
    #[arg(skip)]
    pub budget_after_recording: bool,
}

impl CheckArgs {
    /// The options of `powercut run` left at their defaults, with a time budget: for commands
    /// that run checks themselves (mutants, campaign).
    pub(crate) fn defaults_with_budget(budget: Duration) -> CheckArgs {
        let defaults = CheckConfig::default();
        CheckArgs {
            enumeration_seed: None,
            budget: Some(budget),
            shard: None,
            max_exhaustive_subset: defaults.states.max_exhaustive_subset,
            samples_per_epoch: defaults.states.samples_per_epoch,
            torn_samples: defaults.states.torn_samples,
            atomic_write_bytes: defaults.states.atomic_write_bytes,
            scratch_dir: None,
            json: None,
            junit: None,
            html: None,
            workers: defaults.workers,
            keep_images: powercut_oracles::check::DEFAULT_MAX_KEPT_IMAGES,
            deadline: None,
            phases_before: Vec::new(),
            budget_after_recording: false,
        }
    }

    /// These flags with the command's deadline made now from `--budget`, unless already made.
    pub(crate) fn with_deadline(&self) -> CheckArgs {
        CheckArgs {
            deadline: self
                .deadline
                .or_else(|| self.budget.map(|b| Instant::now() + b)),
            ..self.clone()
        }
    }

    /// Whether the command's deadline has passed.
    pub(crate) fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The report files these flags write, for the check of outputs against inputs.
    pub(crate) fn report_outputs(&self, io: Io) -> Io {
        io.file("the JSON report (--json)", self.json.as_deref())
            .file("the JUnit report (--junit)", self.junit.as_deref())
            .file("the HTML report (--html)", self.html.as_deref())
    }

    pub(crate) fn config(&self, workload_seed: u64, keep_dir: PathBuf) -> CheckConfig {
        CheckConfig {
            budget: self.budget,
            deadline: self.deadline,
            shard: self.shard,
            states: EnumConfig {
                max_exhaustive_subset: self.max_exhaustive_subset,
                samples_per_epoch: self.samples_per_epoch,
                torn_samples: self.torn_samples,
                atomic_write_bytes: self.atomic_write_bytes,
                seed: self.enumeration_seed.unwrap_or(workload_seed),
            },
            keep_dir: Some(keep_dir),
            scratch_dir: self.scratch_dir.clone(),
            workers: self.workers.max(1),
            max_kept_images: self.keep_images,
            invariants: guest_invariant_config(),
            ..CheckConfig::default()
        }
    }
}

/// Parses `90`, `90s`, `5m`, `1h`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}: expected e.g. 90s, 5m, 1h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "bad duration unit {unit:?} in {text:?} (ms, s, m, h)"
            ))
        }
    };
    if !seconds.is_finite() || !(0.0..=30.0 * 86_400.0).contains(&seconds) {
        return Err(format!("duration {text:?} out of range (0 to 30 days)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("five").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
