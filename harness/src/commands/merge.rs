//! `powercut merge`: join the JSON reports of shards into one.

use std::path::PathBuf;

use anyhow::Result;

use super::report_outcome;
use crate::check_cmds;
use crate::outputs::Io;

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Shard reports (`--json` of `run`/`check`).
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Write the merged JSON report here.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Write a JUnit XML report of the merged result here.
    #[arg(long)]
    junit: Option<PathBuf>,
}

pub fn run(args: MergeArgs) -> Result<()> {
    let mut io = Io::new();
    for report in &args.reports {
        io = io.input("the shard report", report.as_path());
    }
    io.file("the merged report (-o)", args.out.as_deref())
        .file("the JUnit report (--junit)", args.junit.as_deref())
        .check()?;
    let merged = check_cmds::merge(&args.reports, args.out.as_deref(), args.junit.as_deref())?;
    report_outcome(&merged)
}
