//! `powercut merge`: join the JSON reports of shards into one. Each input is a check report
//! (`run`/`check --json`) or a campaign report (`campaign --json`), told apart by its keys; one
//! merge takes one kind.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use powercut_oracles::report::Report;
use serde_json::Value;

use super::report_outcome;
use crate::campaign::merge as campaign_merge;
use crate::check_cmds;
use crate::outputs::Io;

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Shard reports: `--json` of `run`/`check`, or of `campaign` (shards of one campaign or
    /// several campaigns); one kind per merge.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Write the merged JSON report here.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Write a JUnit XML report of the merged result here.
    #[arg(long)]
    junit: Option<PathBuf>,
}

/// One input report, by kind (a handful per merge: their size does not matter).
#[allow(clippy::large_enum_variant)]
enum Input {
    Check(Report),
    Campaign(campaign_merge::Input),
}

impl Input {
    fn kind(&self) -> &'static str {
        match self {
            Input::Check(_) => "a check report",
            Input::Campaign(_) => "a campaign report",
        }
    }
}

pub fn run(args: MergeArgs) -> Result<()> {
    let mut io = Io::new();
    for report in &args.reports {
        io = io.input("the shard report", report.as_path());
    }
    io.file("the merged report (-o)", args.out.as_deref())
        .file("the JUnit report (--junit)", args.junit.as_deref())
        .check()?;
    let inputs = args
        .reports
        .iter()
        .map(|path| read_input(path))
        .collect::<Result<Vec<_>>>()?;
    same_kind(&args.reports, &inputs)?;
    if let Some(Input::Campaign(_)) = inputs.first() {
        let campaigns: Vec<campaign_merge::Input> = inputs
            .into_iter()
            .filter_map(|i| match i {
                Input::Campaign(c) => Some(c),
                Input::Check(_) => None,
            })
            .collect();
        return merge_campaigns(&campaigns, &args);
    }
    let reports: Vec<Report> = inputs
        .into_iter()
        .filter_map(|i| match i {
            Input::Check(r) => Some(r),
            Input::Campaign(_) => None,
        })
        .collect();
    let merged = check_cmds::merge(
        &args.reports,
        &reports,
        args.out.as_deref(),
        args.junit.as_deref(),
    )?;
    report_outcome(&merged)
}

/// Reads one report and tells its kind by its keys; every error names the file.
fn read_input(path: &Path) -> Result<Input> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Value::Object(map) = &value else {
        bail!(
            "{}: expected a report (a JSON object), found {}",
            path.display(),
            json_type(&value)
        );
    };
    if map.contains_key(campaign_merge::MERGED_KEY) {
        bail!(
            "{} is already a merged campaign report: merge the campaign reports it came from",
            path.display()
        );
    }
    if map.contains_key(campaign_merge::KIND_KEY) {
        let report = serde_json::from_value(value)
            .with_context(|| format!("{}: not a valid campaign report", path.display()))?;
        return Ok(Input::Campaign(campaign_merge::Input::new(path, report)?));
    }
    if map.contains_key("log_hash") {
        let report = serde_json::from_value(value)
            .with_context(|| format!("{}: not a valid check report", path.display()))?;
        return Ok(Input::Check(report));
    }
    bail!(
        "{}: neither a check report (`run`/`check --json`, with `log_hash`) nor a campaign report \
         (`campaign --json`, with `{}`)",
        path.display(),
        campaign_merge::KIND_KEY
    )
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One merge joins reports of one kind: the first file that differs from the first is named.
fn same_kind(paths: &[PathBuf], inputs: &[Input]) -> Result<()> {
    let Some(first) = inputs.first() else {
        return Ok(());
    };
    for (path, input) in paths.iter().zip(inputs) {
        if input.kind() != first.kind() {
            bail!(
                "{} is {} but {} is {}: merge reports of one kind at a time",
                path.display(),
                input.kind(),
                paths[0].display(),
                first.kind()
            );
        }
    }
    Ok(())
}

/// Campaign reports: the merged summary on stdout, `-o` and `--junit`, the exit code.
fn merge_campaigns(inputs: &[campaign_merge::Input], args: &MergeArgs) -> Result<()> {
    let merged = campaign_merge::merge(inputs)?;
    print!("{}", merged.summary());
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&merged)? + "\n";
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, campaign_merge::junit(&merged)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    merged.outcome()
}
