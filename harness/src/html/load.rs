//! What a page is made of, read from a report file or a directory: the report, and for a check
//! the recording beside it (block log, workload.json, record.json). Bad input is an error that
//! names the file and what is wrong with it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use powercut_oracles::blocklog::BlockLog;
use powercut_oracles::report::Report;
use serde_json::Value;

use super::CheckInputs;

/// The report files a directory may hold, in the order they are looked for.
pub const REPORT_FILES: [&str; 3] = ["report.json", "campaign.json", "mutants.json"];

/// The report file of `path`: itself, or the first of [`REPORT_FILES`] in the directory.
pub fn report_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        if !path.exists() {
            bail!("{}: no such file or directory", path.display());
        }
        return Ok(path.to_path_buf());
    }
    REPORT_FILES
        .iter()
        .map(|name| path.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} holds no report: none of {} (write one with `powercut check {} --json {}`)",
                path.display(),
                REPORT_FILES.join(", "),
                path.display(),
                path.join("report.json").display()
            )
        })
}

/// Renders the page of the report at `path` (a file, or a directory holding one). A check
/// report's recording is `recording`, else the report's own directory.
pub fn render(path: &Path, recording: Option<&Path>) -> Result<String> {
    let file = report_file(path)?;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON report", file.display()))?;
    let has = |k: &str| value.get(k).is_some();
    if has("log_hash") {
        let report: Report = serde_json::from_value(value.clone())
            .with_context(|| format!("{} is not a check report", file.display()))?;
        let dir = recording.map(Path::to_path_buf).or_else(|| {
            let parent = file.parent()?;
            Some(if parent.as_os_str().is_empty() {
                Path::new(".").to_path_buf()
            } else {
                parent.to_path_buf()
            })
        });
        return Ok(render_check(&report, dir.as_deref()));
    }
    if has("workloads_run") || has("merged_reports") {
        return Ok(super::campaign(&value));
    }
    if has("mutants") {
        return Ok(super::mutants(&value));
    }
    bail!(
        "{} is not a powercut report: it has none of the keys log_hash (check), workloads_run \
         or merged_reports (campaign), mutants (mutants)",
        file.display()
    )
}

/// The page of `report` with what the recording in `dir` holds; a missing or unreadable
/// block log leaves the page without a timeline and says why.
pub fn render_check(report: &Report, dir: Option<&Path>) -> String {
    let read_json = |name: &str| -> Option<Value> {
        let text = std::fs::read_to_string(dir?.join(name)).ok()?;
        serde_json::from_str(&text).ok()
    };
    let workload = read_json("workload.json");
    let record = read_json("record.json");
    let (log, no_log) = match dir.map(|d| d.join("log.bin")) {
        None => (None, Some("no recording directory given".to_string())),
        Some(path) if !path.exists() => (None, Some(format!("{} does not exist", path.display()))),
        Some(path) => match BlockLog::open(&path) {
            Ok(log) if log.hash_hex() == report.log_hash => (Some(log), None),
            Ok(log) => (
                None,
                Some(format!(
                    "{} is log {}, the report is of log {}",
                    path.display(),
                    log.hash_hex(),
                    report.log_hash
                )),
            ),
            Err(e) => (None, Some(format!("{}: {e}", path.display()))),
        },
    };
    let second_dir = dir.map(|d| d.join(crate::two_crash::AFTER_CRASH_DIR));
    let second_log = second_dir
        .as_ref()
        .and_then(|d| BlockLog::open(&d.join("log.bin")).ok());
    let second = match (&second_log, &second_dir) {
        (Some(log), Some(dir)) => Some(super::check_page::SecondRecording { log, dir }),
        _ => None,
    };
    super::check(&CheckInputs {
        report,
        log: log.as_ref(),
        workload: workload.as_ref(),
        record: record.as_ref(),
        dir,
        no_log,
        second,
    })
}
