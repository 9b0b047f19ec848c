//! `powercut report-fixture DIR --entries N` (hidden): a synthetic recording with a known
//! violation, for the report's tests and its size and speed figures. Its log looks like the
//! engine's: each group of records is a write into a journal segment, a FLUSH, then the ack
//! mark, with file-system metadata and other data between; one group is acknowledged before its
//! flush, so the crash state just after that mark without the write loses the record (as
//! mutant M1 does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use powercut_oracles::blocklog::{BlockLog, LogWriter, FLAG_METADATA};
use powercut_oracles::crash::{StateId, Subset};
use powercut_oracles::invariants::Violation;
use powercut_oracles::report::{CoverageReport, PhaseReport, Report, TimeSplit};

#[derive(Debug, clap::Args)]
pub struct FixtureArgs {
    /// Directory to write log.bin, workload.json and report.json into (created).
    dir: PathBuf,
    /// About this many log entries.
    #[arg(long, default_value_t = 400)]
    entries: u64,
}

const SEED: u64 = 7;
const SEGMENT_SECTORS: u64 = 1 << 16;

pub fn run(args: FixtureArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let log_path = args.dir.join("log.bin");
    let (lost_lsn, mark_entry) = write_log(&log_path, args.entries)
        .with_context(|| format!("writing {}", log_path.display()))?;
    let log =
        BlockLog::open(&log_path).with_context(|| format!("reading {}", log_path.display()))?;
    let report = report(&log, lost_lsn, mark_entry);
    write_json(
        &args.dir.join("report.json"),
        &serde_json::to_value(&report)?,
    )?;
    let workload = serde_json::json!({
        "name": "synthetic", "seed": SEED, "filesystem": "ext4", "disk_mib": 64, "log_mib": 256,
        "writer": {"durability": "dsync", "segment_bytes": 1_048_576},
        "steps": [{"append": {"count": lost_lsn * 2, "size": 100, "commit_every": 1}}]
    });
    write_json(&args.dir.join("workload.json"), &workload)?;
    println!(
        "{}: {} entries, LSN {lost_lsn} acknowledged at entry {mark_entry} before its flush",
        args.dir.display(),
        log.entries().len()
    );
    Ok(())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// One engine record (header, payload, padding) as the journal writes it.
fn record(lsn: u64, generation: u32, payload: &[u8]) -> Vec<u8> {
    let mut rec = vec![0u8; 32];
    rec[0..4].copy_from_slice(b"PCRJ");
    rec[8..16].copy_from_slice(&lsn.to_le_bytes());
    rec[16..24].copy_from_slice(&lsn.saturating_sub(1).to_le_bytes());
    rec[24..28].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    rec[28..32].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&rec[8..32]), payload);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
    rec.extend_from_slice(payload);
    rec.resize(rec.len().div_ceil(512) * 512, 0);
    rec
}

/// Writes the log; returns the LSN acknowledged early and the entry of its mark.
fn write_log(path: &Path, entries: u64) -> std::io::Result<(u64, u64)> {
    let mut w = LogWriter::create(path, 512)?;
    w.mark("s:synthetic")?;
    // A group takes 3.47 entries on average (write, flush, mark, and a third or a fifth of
    // the time another write).
    let groups = (entries * 288 / 1000).max(4);
    let early = groups / 2;
    let mut early_mark = 0;
    for lsn in 1..=groups {
        let generation = if lsn <= groups / 2 { 1 } else { 2 };
        let payload: Vec<u8> = (0..100u8).map(|b| b ^ lsn as u8).collect();
        let data = record(lsn, generation, &payload);
        let sector = 2048 + u64::from(generation) * SEGMENT_SECTORS + lsn;
        let label = format!("r:{lsn}-{lsn}:{:08x}", crc32c::crc32c(&payload));
        w.write(sector, &data, 0)?;
        if lsn % 3 == 0 {
            w.write(8 + (lsn % 16) * 8, &[0x11; 4096], FLAG_METADATA)?;
        } else if lsn % 5 == 0 {
            w.write(400_000 + lsn * 8, &[0x22; 4096], 0)?;
        }
        if lsn == early {
            early_mark = w.mark(&label)?;
            w.flush()?;
        } else {
            w.flush()?;
            w.mark(&label)?;
        }
    }
    w.mark("e:synthetic")?;
    w.finish(None, 8)?;
    Ok((early, early_mark))
}

/// A report as `check` writes it, with the violation the early ack causes.
fn report(log: &BlockLog, lost_lsn: u64, mark_entry: u64) -> Report {
    let state = StateId {
        log_hash: log.hash(),
        cut: mark_entry + 1,
        subset: Subset::List(Vec::new()),
        tear: None,
    };
    let violation = Violation {
        invariant: "I1".into(),
        state_id: state.to_string(),
        seed: SEED,
        step: log.entries()[mark_entry as usize].mark.clone(),
        expected: format!("acknowledged records 1..={lost_lsn} recovered"),
        found: format!("missing LSN {lost_lsn}"),
    };
    let states = log.entries().len() as u64;
    Report {
        seed: SEED,
        workload: "synthetic".into(),
        fs: "ext4".into(),
        log_hash: log.hash_hex(),
        enumeration_seed: SEED,
        shard: None,
        states_total: states,
        states_checked: states,
        duplicates_skipped: 0,
        states_from_coverage: 0,
        states_by_kind: BTreeMap::from([("prefix".to_string(), states)]),
        states_per_second: 100.0,
        elapsed_seconds: states as f64 / 100.0,
        mid_log_probes: 1,
        violations: vec![violation],
        coverage: Some(CoverageReport::default()),
        budget_exhausted: false,
        minimal_repro: None,
        image_copies: None,
        phases: vec![PhaseReport {
            name: "states".into(),
            done: states,
            total: states,
            unit: "states".into(),
            stopped_by_budget: false,
            seconds: states as f64 / 100.0,
        }],
        time_split: Some(TimeSplit {
            states,
            mount_s: states as f64 * 0.006,
            unmount_s: states as f64 * 0.004,
            ..TimeSplit::default()
        }),
    }
}
