//! The commands that work on files without a VM: `repro` (one crash state), `replay` (a log onto
//! an image), `log inspect` and `merge` of check reports.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use powercut_oracles::blocklog::{BlockLog, Entry, LogStats, ScanEnd};
use powercut_oracles::check::{self, CheckConfig};
use powercut_oracles::coverage;
use powercut_oracles::mount::FsType;
use powercut_oracles::replay::{self, ReplayTarget};
use powercut_oracles::report::{self, Report};
use powercut_workloads::spec::Workload;

use super::output::printable;
use super::pipeline::load_recorded_workload;
use crate::exit::ViolationFound;
use crate::recovery::{
    checked_recovery_mutant, fs_type, guest_invariant_config, guest_program_check,
    writer_recovery_with,
};
use crate::two_crash;

/// The workload recorded beside the log (`workload.json`), if readable, and the file system and
/// seed of a check: as given, else the recorded ones; `missing` says what is missing when
/// neither has it (fs, then seed).
fn recorded_fs_and_seed(
    log: &Path,
    fs: Option<FsType>,
    seed: Option<u64>,
    missing: [&'static str; 2],
) -> Result<(Option<Workload>, FsType, u64)> {
    let recorded = log
        .parent()
        .map(load_recorded_workload)
        .transpose()
        .ok()
        .flatten();
    let fs = fs
        .or(recorded.as_ref().map(|w| fs_type(w.filesystem)))
        .context(missing[0])?;
    let seed = seed
        .or(recorded.as_ref().map(|w| w.seed))
        .context(missing[1])?;
    Ok((recorded, fs, seed))
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
    let (recorded, fs, seed) = recorded_fs_and_seed(
        log,
        fs,
        seed,
        [
            "no --fs given and no workload.json beside the log to take it from",
            "no --seed given and no workload.json beside the log to take it from",
        ],
    )?;
    // A state of the run after a power cut must also hold the first run's acks (I8).
    let prior_acks = match log.parent() {
        Some(dir) => {
            let block_log =
                BlockLog::open(log).with_context(|| format!("reading {}", log.display()))?;
            super::pipeline::continued_acks(dir, &block_log)?
        }
        None => None,
    };
    let continued = prior_acks.is_some();
    let config = CheckConfig {
        keep_dir: Some(keep.to_path_buf()),
        invariants: guest_invariant_config(),
        program: recorded.as_ref().and_then(guest_program_check),
        acks: prior_acks,
        ..CheckConfig::default()
    };
    let mutant = checked_recovery_mutant(recorded.as_ref())?;
    let recovery = move |dir: &Path| writer_recovery_with(dir, mutant);
    let input = check::LogInput {
        log_path: log,
        base_image: base,
        fs,
        seed,
        recover: &recovery,
    };
    let mut outcome = check::check_one(state_id, &input, &config)
        .with_context(|| format!("rebuilding state {state_id}"))?;
    if continued {
        outcome.violations = outcome
            .violations
            .into_iter()
            .map(two_crash::as_i8)
            .collect();
    }
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
        let coverage = ack_coverage(log_path, base, fs, seed)?;
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
            write_entries(&mut out, &log)?;
        }
        write_stats(&mut out, log_path, &log, &stats)?;
    }
    if stats.acks_uncovered.is_some_and(|u| u > 0) {
        bail!(ViolationFound(format!(
            "{} acks not covered by a flush or FUA write",
            stats.acks_uncovered.unwrap_or(0)
        )));
    }
    Ok(())
}

/// `log inspect --base`: which acks of the log are covered by a flush before them.
fn ack_coverage(
    log_path: &Path,
    base: &Path,
    fs: Option<FsType>,
    seed: Option<u64>,
) -> Result<report::CoverageReport> {
    let (recorded, fs, seed) = recorded_fs_and_seed(
        log_path,
        fs,
        seed,
        [
            "--base needs --fs (or a workload.json beside the log)",
            "--base needs --seed (or a workload.json beside the log)",
        ],
    )?;
    let config = CheckConfig {
        invariants: guest_invariant_config(),
        program: recorded.as_ref().and_then(guest_program_check),
        ..CheckConfig::default()
    };
    let mutant = checked_recovery_mutant(recorded.as_ref())?;
    let recovery = move |dir: &Path| writer_recovery_with(dir, mutant);
    let mut meters = super::output::CheckMeters::new("");
    let mut on_progress = |p: powercut_oracles::check::Progress| meters.on(p);
    let input = check::LogInput {
        log_path,
        base_image: base,
        fs,
        seed,
        recover: &recovery,
    };
    let report = coverage::check_coverage_with(&input, &config, &mut on_progress)
        .context("checking that every ack is covered by a flush");
    meters.finish();
    report
}

/// `log inspect --list`: one line per entry.
fn write_entries(out: &mut impl std::io::Write, log: &BlockLog) -> Result<()> {
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
    Ok(())
}

/// The counts of `log inspect` as text.
fn write_stats(
    out: &mut impl std::io::Write,
    log_path: &Path,
    log: &BlockLog,
    stats: &LogStats,
) -> Result<()> {
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

/// `powercut merge A.json B.json.. [-o OUT]` of check reports: `reports` read from `inputs`.
pub fn merge(
    inputs: &[PathBuf],
    reports: &[Report],
    out: Option<&Path>,
    junit: Option<&Path>,
) -> Result<Report> {
    let merged = report::merge(reports).with_context(|| {
        let given: Vec<String> = inputs
            .iter()
            .zip(reports)
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
            .any(|v| v.invariant == two_crash::I8)
        {
            two_crash::junit_invariants(false)
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
