//! `powercut run`: record a workload in a VM, then check every crash state of its block log.

use std::path::PathBuf;

use anyhow::Result;

use super::{report_outcome, VmArgs};
use crate::check_cmds::{self, CheckArgs};
use crate::outputs::Io;
use crate::record;
use crate::vm::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Workload spec (YAML).
    workload: PathBuf,
    /// Output directory for the recording and the kept failing states
    /// (default: out/WORKLOAD-SEED).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    vm: VmArgs,
    /// Test aid, not for real runs: add this ack label (e.g. `r:999-999:00000000`) to the first
    /// run's acks handed to the run after the power cut and to its checker, as if the first run
    /// had acknowledged it. The I8 check must then report violations; tests use this to prove
    /// that it can fail. Repeatable.
    #[arg(long, hide = true)]
    forge_prior_ack: Vec<String>,
    #[command(flatten)]
    check: CheckArgs,
}

pub fn run(args: RunArgs, progress: &Progress) -> Result<()> {
    let workload = args.vm.load(&args.workload)?;
    eprintln!(
        "seed {} (re-run with --seed {})",
        workload.seed, workload.seed
    );
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from("out").join(format!("{}-{}", workload.name, workload.seed))
    });
    let io = Io::new()
        .input("the workload", args.workload.as_path())
        .dir("the recording (--out)", &out, &record::RECORDING_FILES);
    args.check.report_outputs(io).check()?;
    let options = args.vm.record_options(&workload)?;
    let forged = args
        .forge_prior_ack
        .iter()
        .map(|label| {
            powercut_workloads::ack::Ack::parse_label(label)
                .map_err(|e| anyhow::anyhow!("--forge-prior-ack: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let report = check_cmds::run(&workload, &out, &options, &args.check, &forged, progress)?;
    if let Some(path) = &args.check.html {
        crate::html::write(path, &crate::html::load::render_check(&report, Some(&out)))?;
    }
    report_outcome(&report)
}
