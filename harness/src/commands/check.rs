//! `powercut check DIR`: every crash state of an existing recording.

use std::path::PathBuf;

use anyhow::Result;

use super::{recording_inputs, report_outcome};
use crate::check_cmds::{self, CheckArgs};
use crate::outputs::Io;

#[derive(Debug, clap::Args)]
pub struct CheckRecordingArgs {
    /// A directory written by `powercut record --out`.
    dir: PathBuf,
    #[command(flatten)]
    check: CheckArgs,
}

pub fn run(args: CheckRecordingArgs) -> Result<()> {
    let io = recording_inputs(Io::new(), "the recording", &args.dir);
    args.check.report_outputs(io).check()?;
    let workload = check_cmds::load_recorded_workload(&args.dir)?;
    // record.json holds the guest's findings: needed with faults, read when it is there.
    let guest_found = if workload.has_faults() || args.dir.join("record.json").exists() {
        !check_cmds::guest_findings(&args.dir)?.is_empty()
    } else {
        false
    };
    let report = if workload.has_faults() || guest_found {
        check_cmds::check_fault_recording(&args.dir, &workload, &args.check)?
    } else {
        check_cmds::check_recording(&args.dir, &workload, &args.check)?
    };
    if let Some(path) = &args.check.html {
        crate::html::write(
            path,
            &crate::html::load::render_check(&report, Some(&args.dir)),
        )?;
    }
    report_outcome(&report)
}
