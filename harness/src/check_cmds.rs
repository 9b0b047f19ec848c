//! The checking side of the CLI: `run` (record + check), `check` (an existing recording),
//! `repro`, `replay`, `log inspect` and `merge`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use powercut_oracles::blocklog::{BlockLog, Entry, LogStats, ScanEnd};
use powercut_oracles::check::{self, CheckConfig, Progress};
use powercut_oracles::coverage;
use powercut_oracles::invariants::{InvariantConfig, RecoveredJournal, TailInfo, Violation};
use powercut_oracles::mount::FsType;
use powercut_oracles::replay::{self, ReplayTarget};
use powercut_oracles::report::{self, Report};
use powercut_workloads::executor::PriorViolation;
use powercut_workloads::spec::{Filesystem, Workload};
use powercut_writer::Mutant;

use crate::outputs::Io;
use crate::record::{self, RecordOptions};
use crate::vm;

/// Exit code of a run in which an invariant was violated.
pub const EXIT_VIOLATION: u8 = 1;

/// The guest agent runs the workload in `pc/` of the data file system.
const GUEST_JOURNAL_DIR: &str = "pc/journal";
const GUEST_FILES_DIR: &str = "pc/files";

/// Knobs shared by `run`, `check` and `repro`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Seed of the sampled subsets and tears (default: the workload seed).
    #[arg(long)]
    pub enumeration_seed: Option<u64>,
    /// Stop starting new crash states after this long (e.g. 90s, 5m, 1h); the report says what
    /// was covered.
    #[arg(long, value_parser = parse_duration)]
    pub budget: Option<Duration>,
    /// Check only shard K of N (0-based), e.g. 0/4; `powercut merge` joins the shard reports.
    #[arg(long, value_parser = report::parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// Epochs with at most this many writes get every subset checked; larger ones are sampled.
    #[arg(long, default_value_t = CheckConfig::default().max_exhaustive_subset)]
    pub max_exhaustive_subset: usize,
    /// Sampled subsets per large epoch.
    #[arg(long, default_value_t = CheckConfig::default().samples_per_epoch)]
    pub samples_per_epoch: usize,
    /// Torn variants per multi-sector write.
    #[arg(long, default_value_t = CheckConfig::default().torn_samples)]
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
    /// Parallel checkers (each mounts its own images).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Images of failing states kept under OUT/violations, per pass (the others keep their
    /// outcome and ledger; `powercut repro` rebuilds any of them).
    #[arg(long, default_value_t = powercut_oracles::check::DEFAULT_MAX_KEPT_IMAGES)]
    pub keep_images: usize,
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
            max_exhaustive_subset: defaults.max_exhaustive_subset,
            samples_per_epoch: defaults.samples_per_epoch,
            torn_samples: defaults.torn_samples,
            atomic_write_bytes: defaults.atomic_write_bytes,
            scratch_dir: None,
            json: None,
            junit: None,
            workers: defaults.workers,
            keep_images: powercut_oracles::check::DEFAULT_MAX_KEPT_IMAGES,
        }
    }

    /// The report files these flags write, for the check of outputs against inputs.
    pub(crate) fn report_outputs(&self, io: Io) -> Io {
        io.file("the JSON report (--json)", self.json.as_deref())
            .file("the JUnit report (--junit)", self.junit.as_deref())
    }

    pub(crate) fn config(&self, workload_seed: u64, keep_dir: PathBuf) -> CheckConfig {
        CheckConfig {
            budget: self.budget,
            shard: self.shard,
            max_exhaustive_subset: self.max_exhaustive_subset,
            samples_per_epoch: self.samples_per_epoch,
            torn_samples: self.torn_samples,
            atomic_write_bytes: self.atomic_write_bytes,
            seed: self.enumeration_seed.unwrap_or(workload_seed),
            keep_dir: Some(keep_dir),
            scratch_dir: self.scratch_dir.clone(),
            workers: self.workers.max(1),
            max_kept_images: self.keep_images,
            invariants: guest_invariant_config(),
            ..CheckConfig::default()
        }
    }
}

/// Where the guest agent keeps the journal and the files inside the data file system.
pub fn guest_invariant_config() -> InvariantConfig {
    InvariantConfig {
        journal_dir: PathBuf::from(GUEST_JOURNAL_DIR),
        files_dir: PathBuf::from(GUEST_FILES_DIR),
    }
}

/// The recovery mutant a workload selects, if any (other mutants recover like the engine).
pub fn recovery_mutant(workload: &Workload) -> Option<Mutant> {
    workload.writer.mutant.filter(|m| m.changes_recovery())
}

/// The recovery the oracles run on the states of `workload`'s logs: the engine's, or a
/// recovery mutant's. Fails when the mutant's recovery is not in this build of the harness
/// (without the check every state would fail to recover, which is not the mutant's bug).
pub fn recovery_for(
    workload: &Workload,
) -> Result<impl Fn(&Path) -> Result<RecoveredJournal, String> + Sync> {
    let mutant = checked_recovery_mutant(Some(workload))?;
    Ok(move |dir: &Path| writer_recovery_with(dir, mutant))
}

/// [`recovery_mutant`] of a workload (when known), if this build of the harness has it.
fn checked_recovery_mutant(workload: Option<&Workload>) -> Result<Option<Mutant>> {
    let Some(workload) = workload else {
        return Ok(None);
    };
    let mutant = recovery_mutant(workload);
    if let Some(m) = mutant {
        if !powercut_writer::MUTANTS_BUILT {
            bail!(
                "workload {} selects the recovery mutant {m}, but this powercut was built \
                 without it: build it with `cargo build -p powercut --features mutants`",
                workload.name
            );
        }
    }
    Ok(mutant)
}

/// The engine's recovery, or with `Some(mutant)` that mutant's, in the shape the oracles take.
pub fn writer_recovery_with(
    dir: &Path,
    mutant: Option<Mutant>,
) -> Result<RecoveredJournal, String> {
    let recovery = powercut_writer::recover_with(dir, mutant).map_err(|e| e.to_string())?;
    Ok(RecoveredJournal {
        records: recovery
            .records
            .into_iter()
            .map(|r| (r.lsn, r.payload))
            .collect(),
        truncated_tail: recovery.truncated_tail.map(|t| TailInfo {
            segment: t.segment,
            offset: t.offset,
            discarded_bytes: t.discarded_bytes,
        }),
    })
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

pub(crate) fn fs_type(fs: Filesystem) -> FsType {
    match fs {
        Filesystem::Ext4 => FsType::Ext4,
        Filesystem::Xfs => FsType::Xfs,
    }
}

fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} {msg} (eta {eta})",
        )
        .expect("static progress template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Checks a recording directory (as `record` leaves it) and writes the reports.
pub fn check_recording(dir: &Path, workload: &Workload, args: &CheckArgs) -> Result<Report> {
    let log = dir.join("log.bin");
    let base = dir.join("base.img");
    for needed in [&log, &base] {
        if !needed.exists() {
            bail!(
                "{} is missing: is {} a recording made by `powercut record`?",
                needed.display(),
                dir.display()
            );
        }
    }
    let keep = dir.join("violations");
    let mut config = args.config(workload.seed, keep.clone());
    let block_log = BlockLog::open(&log).with_context(|| format!("reading {}", log.display()))?;
    config.max_entries = killed_log_whole_entries(dir, &block_log)?;
    // A continuation after a power cut (`record --continue-from`): the first run's acks are
    // expected in every state, and findings are I8.
    let prior_path = dir.join("prior-acks.json");
    let continued = prior_path.exists();
    if continued {
        let text = std::fs::read_to_string(&prior_path)
            .with_context(|| format!("reading {}", prior_path.display()))?;
        let prior: Vec<powercut_workloads::ack::Ack> = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", prior_path.display()))?;
        config.acks = Some(
            crate::two_crash::expected_acks(&prior, &block_log)
                .with_context(|| format!("acks of {}", log.display()))?,
        );
        eprintln!(
            "{} holds the run after a power cut: {} acks of the first run expected in every \
             state, findings reported as I8",
            dir.display(),
            prior.len()
        );
    }
    drop(block_log);
    eprintln!(
        "checking crash states of {} (seed {}, enumeration seed {})",
        log.display(),
        workload.seed,
        config.seed
    );
    let recovery = recovery_for(workload)?;
    if let Some(m) = recovery_mutant(workload) {
        eprintln!("recovery of every state: mutant {m} ({})", m.describe());
    }
    let bar = progress_bar(0, "states");
    let mut on_progress = |p: Progress| {
        bar.set_length(p.states_total);
        bar.set_position(p.states_done);
        bar.set_message(format!("{} violations", p.violations));
    };
    let mut report = check::check_log(
        &log,
        &base,
        fs_type(workload.filesystem),
        workload.seed,
        &config,
        &recovery,
        &mut on_progress,
    )
    .with_context(|| format!("checking {}", log.display()))?;
    bar.finish_and_clear();
    let first = report.all_violations().next().cloned();
    if let Some(first) = first {
        report.minimal_repro = shrink_violation(
            &first,
            &log,
            &base,
            fs_type(workload.filesystem),
            workload.seed,
            &config,
            &recovery,
        );
    }
    let mut report = if continued {
        crate::two_crash::report_as_i8(report)
    } else {
        report
    };
    report.workload = workload.name.clone();
    let invariants = if continued {
        crate::two_crash::junit_invariants()
    } else {
        report::INVARIANTS.to_vec()
    };
    write_reports(&report, args, &invariants)?;
    if !report.passed() {
        eprintln!(
            "failing images, the log and the ledger are kept in {}",
            keep.display()
        );
    }
    Ok(report)
}

fn write_reports(report: &Report, args: &CheckArgs, invariants: &[&str]) -> Result<()> {
    println!("{}", report.summary());
    write_report_files(report, args, invariants)
}

fn write_report_files(report: &Report, args: &CheckArgs, invariants: &[&str]) -> Result<()> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JSON report: {}", path.display());
    }
    if let Some(path) = &args.junit {
        let text = report
            .to_junit_with(invariants)
            .context("rendering JUnit XML")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JUnit report: {}", path.display());
    }
    Ok(())
}

/// `powercut run`: record the workload in a VM, then check every crash state of its log. With a
/// power cut, then boot again on the crash image, continue the workload and check every crash
/// state of that second log as well (invariant I8, see [`crate::two_crash`]); the reports then
/// cover both logs. `forged_prior_acks` is a test aid (see `--forge-prior-ack`).
pub fn run(
    workload: &Workload,
    out: &Path,
    record_options: &RecordOptions,
    args: &CheckArgs,
    forged_prior_acks: &[powercut_workloads::ack::Ack],
    progress: &vm::progress::Progress,
) -> Result<Report> {
    let started = Instant::now();
    eprintln!(
        "powercut run: workload {} seed {} -> {}",
        workload.name,
        workload.seed,
        out.display()
    );
    let outcome = record::record(workload, out, record_options, progress)?;
    eprintln!(
        "recorded {} acks, {} bytes of block log in {:.1}s",
        outcome.summary.acks,
        outcome.summary.log_bytes,
        started.elapsed().as_secs_f64()
    );
    if outcome.summary.end != record::RunEnd::Killed {
        if !forged_prior_acks.is_empty() {
            bail!("--forge-prior-ack needs a workload with a power cut");
        }
        if workload.has_faults() {
            return run_with_faults(out, workload, args, &outcome, started);
        }
        let report = check_recording(out, workload, args)?;
        eprintln!("whole run: {:.1}s", started.elapsed().as_secs_f64());
        return Ok(report);
    }
    // Two logs: the reports are written once both are checked.
    let first_args = CheckArgs {
        json: None,
        junit: None,
        ..args.clone()
    };
    let first = check_recording(out, workload, &first_args)?;
    let second_keep = out
        .join(crate::two_crash::AFTER_CRASH_DIR)
        .join("violations");
    let second = crate::two_crash::check_after_crash(
        workload,
        out,
        &outcome,
        record_options,
        args.config(workload.seed, second_keep.clone()),
        fs_type(workload.filesystem),
        forged_prior_acks,
        progress,
    )?;
    let combined = crate::two_crash::combine(&first, &second);
    println!("{}", crate::two_crash::summary_line(&second));
    if !second.report.passed() || !second.guest_prior_violations.is_empty() {
        println!("{}", second.report.summary());
        eprintln!(
            "failing images of the second log are kept in {}",
            second_keep.display()
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, crate::two_crash::report_json(&combined, &second)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JSON report: {}", path.display());
    }
    if let Some(path) = &args.junit {
        let text = combined
            .to_junit_with(&crate::two_crash::junit_invariants())
            .context("rendering JUnit XML")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JUnit report: {}", path.display());
    }
    eprintln!(
        "both logs: {} states checked, {} violations; whole run: {:.1}s",
        combined.states_checked,
        combined.all_violations().count(),
        started.elapsed().as_secs_f64()
    );
    Ok(combined)
}

/// Shrinks a violation's crash state to the simplest state of its cut that still shows it
/// (None, with a note, when that cannot be done: the state is then its own reproducer).
fn shrink_violation(
    violation: &powercut_oracles::invariants::Violation,
    log: &Path,
    base: &Path,
    fs: FsType,
    seed: u64,
    config: &CheckConfig,
    recovery: &powercut_oracles::invariants::RecoverFn,
) -> Option<powercut_oracles::shrink::ShrunkState> {
    let started = Instant::now();
    match powercut_oracles::shrink::shrink_state(
        &violation.state_id,
        &violation.invariant,
        log,
        base,
        fs,
        seed,
        config,
        recovery,
    ) {
        Ok(shrunk) => {
            eprintln!(
                "shrunk {} on {} in {:.1}s: {}",
                violation.invariant,
                violation.state_id,
                started.elapsed().as_secs_f64(),
                shrunk.describe()
            );
            Some(shrunk)
        }
        Err(e) => {
            eprintln!("could not shrink {}: {e}", violation.state_id);
            None
        }
    }
}

/// How many entries of a killed recording's log are known whole (None: the recording ended
/// cleanly, all of them). Those are the entries up to the mark of the last ack the host saw
/// before it cut the power: the guest waits for dm-log-writes to finish writing everything up
/// to that mark before it reports the ack, while entries logged after it were being written
/// when QEMU was killed, so a header can be there without its data.
fn killed_log_whole_entries(dir: &Path, log: &BlockLog) -> Result<Option<u64>> {
    let summary_path = dir.join("record.json");
    let Ok(text) = std::fs::read_to_string(&summary_path) else {
        return Ok(None);
    };
    let summary: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", summary_path.display()))?;
    if summary["end"] != "killed" {
        return Ok(None);
    }
    let acks = record::read_ledger_acks(&dir.join("ledger.jsonl"))?;
    let last = acks
        .last()
        .context("a killed recording without any ack in its ledger")?
        .to_label();
    let mark = log
        .entries()
        .iter()
        .rev()
        .find(|e| e.mark.as_deref() == Some(last.as_str()))
        .with_context(|| {
            format!(
                "the mark of the last ack ({last}) is not in {}",
                log.path().display()
            )
        })?;
    let whole = mark.index + 1;
    let after = log.entries().len() as u64 - whole;
    eprintln!(
        "the power was cut: checking the {whole} log entries up to the mark of the last ack \
         ({last}); the {after} entries after it may be torn"
    );
    Ok(Some(whole))
}

/// The end of `powercut run` for a workload with fault steps: the crash states of the log as
/// usual, plus the guest's I7 findings (a failed write acknowledged, a poisoned journal that
/// accepted a call, a reopen that lost acknowledged records) as violations of the report.
fn run_with_faults(
    out: &Path,
    workload: &Workload,
    args: &CheckArgs,
    outcome: &record::RecordOutcome,
    started: Instant,
) -> Result<Report> {
    let report = check_with_guest_findings(out, workload, args, &outcome.summary.prior_violations)?;
    eprintln!("whole run: {:.1}s", started.elapsed().as_secs_f64());
    Ok(report)
}

/// `powercut check DIR` of a recording with fault steps: its crash states, plus the guest's I7
/// findings that `record` kept in `record.json`.
pub fn check_fault_recording(dir: &Path, workload: &Workload, args: &CheckArgs) -> Result<Report> {
    let path = dir.join("record.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (written by `powercut record`)", path.display()))?;
    let summary: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let findings: Vec<PriorViolation> = serde_json::from_value(summary["prior_violations"].clone())
        .with_context(|| {
            format!(
                "{}: `prior_violations` is not a list of findings",
                path.display()
            )
        })?;
    check_with_guest_findings(dir, workload, args, &findings)
}

/// The crash states of the recording in `dir`, plus the guest's findings during the run (I7)
/// as violations with the state id [`GUEST_RUN_STATE_ID`].
fn check_with_guest_findings(
    dir: &Path,
    workload: &Workload,
    args: &CheckArgs,
    guest_findings: &[PriorViolation],
) -> Result<Report> {
    let quiet = CheckArgs {
        json: None,
        junit: None,
        ..args.clone()
    };
    let mut report = check_recording(dir, workload, &quiet)?;
    let findings: Vec<Violation> = guest_findings
        .iter()
        .map(|v| Violation {
            invariant: v.invariant.clone(),
            state_id: GUEST_RUN_STATE_ID.into(),
            seed: workload.seed,
            step: v.step.clone(),
            expected: v.expected.clone(),
            found: v.found.clone(),
        })
        .collect();
    eprintln!(
        "fault injection: {} guest findings (invariant {})",
        findings.len(),
        report::I7
    );
    if !findings.is_empty() {
        report.violations.extend(findings);
        println!("{}", report.summary());
    }
    let mut invariants = report::INVARIANTS.to_vec();
    invariants.push(report::I7);
    write_report_files(&report, args, &invariants)?;
    Ok(report)
}

/// State id of a finding of the guest during the recorded run itself (not a crash state).
pub const GUEST_RUN_STATE_ID: &str = "guest-run";

/// Loads `workload.json` that `record` leaves beside the log.
pub fn load_recorded_workload(dir: &Path) -> Result<Workload> {
    let path = dir.join("workload.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (written by `powercut record`)", path.display()))?;
    Workload::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `powercut repro STATE_ID --log LOG --base BASE`: rebuild one state offline and check it.
pub fn repro(
    state_id: &str,
    log: &Path,
    base: &Path,
    fs: Option<FsType>,
    seed: Option<u64>,
    keep: &Path,
) -> Result<bool> {
    let recorded = log
        .parent()
        .map(load_recorded_workload)
        .transpose()
        .ok()
        .flatten();
    let fs = fs
        .or(recorded.as_ref().map(|w| fs_type(w.filesystem)))
        .context("no --fs given and no workload.json beside the log to take it from")?;
    let seed = seed
        .or(recorded.as_ref().map(|w| w.seed))
        .context("no --seed given and no workload.json beside the log to take it from")?;
    let config = CheckConfig {
        keep_dir: Some(keep.to_path_buf()),
        invariants: guest_invariant_config(),
        ..CheckConfig::default()
    };
    let mutant = checked_recovery_mutant(recorded.as_ref())?;
    let recovery = move |dir: &Path| writer_recovery_with(dir, mutant);
    let outcome = check::check_one(state_id, log, base, fs, seed, &config, &recovery)
        .with_context(|| format!("rebuilding state {state_id}"))?;
    println!("state      {}", outcome.state_id);
    println!("kind       {}", outcome.kind.as_str());
    match (&outcome.recovery_error, outcome.records_recovered) {
        (Some(e), _) => println!("recovery   error: {e}"),
        (None, Some(n)) => println!("recovery   {n} records"),
        (None, None) => println!("recovery   not run"),
    }
    if let Some(t) = outcome.truncated_tail {
        println!(
            "torn tail  segment {} offset {} ({} bytes discarded)",
            t.segment, t.offset, t.discarded_bytes
        );
    }
    if let Some(p) = &outcome.mid_log_probe {
        println!("I5 probe   {p}");
    }
    if outcome.violations.is_empty() {
        println!("verdict    every invariant held");
    } else {
        for v in &outcome.violations {
            println!(
                "violation  {} at {}: expected {}, found {}",
                v.invariant,
                v.step.as_deref().unwrap_or("-"),
                v.expected,
                v.found
            );
        }
        if let Some(k) = &outcome.kept {
            println!("image kept {}", k.display());
        }
    }
    Ok(outcome.violations.is_empty())
}

/// `powercut replay LOG --base BASE --to N|--mark LABEL -o OUT`.
pub fn replay(
    log: &Path,
    base: &Path,
    to: Option<String>,
    mark: Option<String>,
    out: &Path,
) -> Result<()> {
    let target = match (to, mark) {
        (Some(end), None) if end == "end" => ReplayTarget::End,
        (Some(n), None) => ReplayTarget::Entry(
            n.parse()
                .with_context(|| format!("--to {n:?}: expected an entry index or `end`"))?,
        ),
        (None, Some(label)) => ReplayTarget::Mark(label),
        _ => bail!("give exactly one of --to N and --mark LABEL"),
    };
    let started = Instant::now();
    let summary = replay::replay_to(log, base, target, out)
        .with_context(|| format!("replaying {} onto {}", log.display(), base.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string_pretty(&summary)?);
    println!("wrote {} in {seconds:.2}s", out.display());
    Ok(())
}

/// `powercut log inspect LOG [--list] [--json] [--base BASE]`.
pub fn inspect(
    log_path: &Path,
    list: bool,
    json: bool,
    base: Option<&Path>,
    fs: Option<FsType>,
    seed: Option<u64>,
) -> Result<()> {
    let log =
        BlockLog::open(log_path).with_context(|| format!("reading {}", log_path.display()))?;
    let mut stats = log.stats();
    if let Some(base) = base {
        let recorded = log_path
            .parent()
            .map(load_recorded_workload)
            .transpose()
            .ok()
            .flatten();
        let fs = fs
            .or(recorded.as_ref().map(|w| fs_type(w.filesystem)))
            .context("--base needs --fs (or a workload.json beside the log)")?;
        let seed = seed
            .or(recorded.as_ref().map(|w| w.seed))
            .context("--base needs --seed (or a workload.json beside the log)")?;
        let config = CheckConfig {
            invariants: guest_invariant_config(),
            ..CheckConfig::default()
        };
        let mutant = checked_recovery_mutant(recorded.as_ref())?;
        let recovery = move |dir: &Path| writer_recovery_with(dir, mutant);
        let coverage = coverage::check_coverage(log_path, base, fs, seed, &config, &recovery)
            .context("checking that every ack is covered by a flush")?;
        stats.acks_covered = Some(coverage.acks_covered);
        stats.acks_uncovered = Some(coverage.acks_uncovered);
        if !json {
            for label in &coverage.uncovered {
                println!("uncovered ack: {}", printable(label));
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        // One document: the counts, how the scan ended and, with --list, the entries.
        let doc = InspectJson {
            stats: &stats,
            nr_entries_in_super: log.nr_entries_in_super(),
            entries_past_nr_entries: log.entries_past_nr_entries(),
            scan_end: log.scan_end(),
            list: list.then(|| log.entries().iter().map(ListedEntry::from).collect()),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        if list {
            for entry in log.entries() {
                let mut line = format!(
                    "#{:<7} @{:<10} {:<14} sector {:<10} sectors {:<6}",
                    entry.index,
                    entry.header_offset_bytes,
                    entry.flag_names(),
                    entry.sector,
                    entry.nr_sectors
                );
                if let Some(label) = &entry.mark {
                    line.push_str(&format!(" mark {}", printable(label)));
                }
                writeln!(out, "{line}")?;
            }
        }
        writeln!(
            out,
            "log        {} ({} bytes, sector size {})",
            log_path.display(),
            log.len_bytes(),
            log.sectorsize()
        )?;
        let past = log.entries_past_nr_entries();
        let stopped = if past > 0 {
            format!("; the scan stopped at {}", scan_end_text(log.scan_end()))
        } else {
            String::new()
        };
        writeln!(
            out,
            "entries    {} ({past} past the super's nr_entries{stopped})",
            stats.entries,
        )?;
        writeln!(
            out,
            "writes     {} ({} bytes of data)",
            stats.writes, stats.data_bytes
        )?;
        writeln!(
            out,
            "flushes    {}  fua {}  discards {}  marks {}",
            stats.flushes, stats.fua, stats.discards, stats.marks
        )?;
        writeln!(out, "epochs     {}", stats.epochs)?;
        if let (Some(c), Some(u)) = (stats.acks_covered, stats.acks_uncovered) {
            writeln!(out, "acks       {c} covered by a flush, {u} uncovered")?;
        }
    }
    if stats.acks_uncovered.is_some_and(|u| u > 0) {
        bail!(ViolationFound(format!(
            "{} acks not covered by a flush or FUA write",
            stats.acks_uncovered.unwrap_or(0)
        )));
    }
    Ok(())
}

/// `log inspect --json`: the counts (top-level keys, the CLI contract), where the scan of the log
/// ended and, with `--list`, every entry.
#[derive(Debug, serde::Serialize)]
struct InspectJson<'a> {
    #[serde(flatten)]
    stats: &'a LogStats,
    nr_entries_in_super: u64,
    entries_past_nr_entries: u64,
    /// Why the scan stopped (past nr_entries: a zero header, invalid flags, the end of the file).
    scan_end: ScanEnd,
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<Vec<ListedEntry>>,
}

/// One entry of `log inspect --list --json`.
#[derive(Debug, serde::Serialize)]
struct ListedEntry {
    index: u64,
    header_offset_bytes: u64,
    flags: String,
    sector: u64,
    nr_sectors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mark: Option<String>,
}

impl From<&Entry> for ListedEntry {
    fn from(e: &Entry) -> ListedEntry {
        ListedEntry {
            index: e.index,
            header_offset_bytes: e.header_offset_bytes,
            flags: e.flag_names(),
            sector: e.sector,
            nr_sectors: e.nr_sectors,
            mark: e.mark.clone(),
        }
    }
}

/// Why the scan of a log stopped, in words.
fn scan_end_text(end: ScanEnd) -> &'static str {
    match end {
        ScanEnd::EndOfFile => "the end of the file",
        ScanEnd::ZeroHeader => "a zero header",
        ScanEnd::InvalidFlags => "a header with invalid flags",
        ScanEnd::TruncatedEntry => "an entry cut short by the end of the file",
        ScanEnd::ImplausibleEntry => "a header that describes no sane entry",
    }
}

/// `text` safe for a terminal: control characters (escape sequences), bidirectional overrides and
/// backslashes written as escapes, so a label from a log cannot rewrite the screen.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        );
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || bidi {
            let code = u32::from(c);
            if code < 0x100 {
                out.push_str(&format!("\\x{code:02x}"));
            } else {
                out.push_str(&format!("\\u{{{code:04x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `powercut merge A.json B.json.. [-o OUT]`.
pub fn merge(inputs: &[PathBuf], out: Option<&Path>, junit: Option<&Path>) -> Result<Report> {
    let mut reports = Vec::new();
    for path in inputs {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let r: Report = serde_json::from_str(&text)
            .with_context(|| format!("parsing report {}", path.display()))?;
        reports.push(r);
    }
    let merged = report::merge(&reports).with_context(|| {
        let given: Vec<String> = inputs
            .iter()
            .zip(&reports)
            .map(|(path, r)| {
                format!(
                    "{} (shard {})",
                    path.display(),
                    r.shard.as_deref().map_or("none".into(), printable)
                )
            })
            .collect();
        format!("merging the shard reports {}", given.join(", "))
    })?;
    println!("{}", merged.summary());
    if let Some(out) = out {
        std::fs::write(out, serde_json::to_string_pretty(&merged)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    if let Some(path) = junit {
        // Shards of a run with a second crash carry I8 findings: give them their testcase.
        let invariants = if merged
            .all_violations()
            .any(|v| v.invariant == crate::two_crash::I8)
        {
            crate::two_crash::junit_invariants()
        } else {
            report::INVARIANTS.to_vec()
        };
        let text = merged
            .to_junit_with(&invariants)
            .context("rendering JUnit XML")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(merged)
}

/// An invariant violation found by a command that is not `run` (exit code 1).
#[derive(Debug)]
pub struct ViolationFound(pub String);

impl std::fmt::Display for ViolationFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invariant violated: {}", self.0)
    }
}

impl std::error::Error for ViolationFound {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_a_terminal_would_act_on() {
        assert_eq!(printable("r:1-2:00000000"), "r:1-2:00000000");
        assert_eq!(
            printable("s:x\u{1b}[2J\u{7}\n\\"),
            "s:x\\x1b[2J\\x07\\x0a\\\\"
        );
        assert_eq!(printable("a\u{202e}b\u{9b}é"), "a\\u{202e}b\\x9bé");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("five").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
