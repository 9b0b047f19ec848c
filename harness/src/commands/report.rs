//! `powercut report DIR|REPORT.json -o report.html`: the HTML page of a check, campaign or
//! mutants report.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use crate::html;
use crate::outputs::Io;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A JSON report (of `run`/`check --json`, `campaign --json`, `mutants --json` or
    /// `merge`), or a directory holding report.json, campaign.json or mutants.json.
    input: PathBuf,
    /// The HTML file to write (default: report.html beside the report).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// The recording of a check report (log.bin, workload.json, record.json), when it is not
    /// the report's own directory.
    #[arg(long)]
    recording: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let file = html::load::report_file(&args.input)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| file.with_extension("html"));
    Io::new()
        .input("the report", file.as_path())
        .file("the HTML report (-o)", output.as_path())
        .check()?;
    let started = Instant::now();
    let page = html::load::render(&file, args.recording.as_deref())?;
    let seconds = started.elapsed().as_secs_f64();
    html::write(&output, &page)?;
    println!(
        "{}: {} bytes, rendered in {:.3} s",
        output.display(),
        page.len(),
        seconds
    );
    Ok(())
}
