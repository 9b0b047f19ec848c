//! `powercut record`: one workload in a VM, its block log kept, nothing checked.

use std::path::PathBuf;

use anyhow::Result;

use super::{recording_inputs, VmArgs};
use crate::outputs::Io;
use crate::record;
use crate::vm::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Workload spec (YAML).
    workload: PathBuf,
    /// Output directory (created; existing recording files in it are replaced).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    vm: VmArgs,
    /// Start from a copy of this data disk image instead of formatting a new one (it is also
    /// the base image of the new log).
    #[arg(long)]
    base_image: Option<PathBuf>,
    /// Reboot after a power cut (invariant I8): DIR is the first run's recording (`record --out`
    /// of a workload with `power_cut:`). The data disk starts as DIR/final.img (unless
    /// --base-image is given); the guest recovers the journal, checks the acks of
    /// DIR/ledger.jsonl and runs the workload's `after_crash:` steps.
    #[arg(long, value_name = "DIR")]
    continue_from: Option<PathBuf>,
}

pub fn run(args: RecordArgs, progress: &Progress) -> Result<()> {
    let mut io = Io::new()
        .input("the workload", args.workload.as_path())
        .input("the base image (--base-image)", args.base_image.as_deref());
    if let Some(first) = &args.continue_from {
        io = recording_inputs(io, "the first run (--continue-from)", first);
    }
    io.dir("the recording (--out)", &args.out, &record::RECORDING_FILES)
        .check()?;
    let workload = args.vm.load(&args.workload)?;
    let mut options = args.vm.record_options(&workload)?;
    options.base_image = args.base_image;
    if let Some(first) = &args.continue_from {
        if options.base_image.is_none() {
            options.base_image = Some(first.join("final.img"));
        }
        options.continue_after_crash = Some(record::read_ledger_acks(&first.join("ledger.jsonl"))?);
    }
    let outcome = record::record(&workload, &args.out, &options, progress)?;
    println!("{}", serde_json::to_string_pretty(&outcome.summary)?);
    eprintln!(
        "{} acks recorded in {}",
        outcome.ledger.len(),
        outcome.out.display()
    );
    Ok(())
}
