//! Running one generated workload in a tier: the sim tier through `sim_tier` (as `powercut sim`
//! does), the vm tier through `check_cmds::run` (as `powercut run` does), and the turns the two
//! take in `--tier both`.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use powercut_oracles::report::Report;
use powercut_workloads::generate::{step_kind, Generated};
use powercut_workloads::spec::Workload;
use powercut_writer::sim::{SimPlan, SimStep};
use powercut_writer::Mutant;

use super::findings::{step_of_ack, Candidate, Replays};
use super::Tier;
use crate::check_cmds::{self, CheckArgs};
use crate::record::RecordOptions;
use crate::sim_tier;
use crate::vm::image::{BuildOptions, KernelFlavor};
use crate::vm::progress::Progress;

/// Give up on one VM run after this long.
const VM_TIMEOUT: Duration = Duration::from_secs(300);
/// Shortest crash-state budget a VM run gets, even near the end of the campaign.
const MIN_VM_CHECK_BUDGET: Duration = Duration::from_secs(10);
/// Harness failures in a row after which the vm tier gives up (the VM, not the workloads, is
/// then broken).
const MAX_VM_ERRORS_IN_A_ROW: u32 = 3;

/// The tier one workload runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierKind {
    Sim,
    Vm,
}

impl TierKind {
    pub fn name(self) -> &'static str {
        match self {
            TierKind::Sim => "sim",
            TierKind::Vm => "vm",
        }
    }
}

/// What a tier made of one workload.
#[derive(Debug, Default)]
pub struct Outcome {
    pub states_checked: u64,
    /// Kinds of the steps the tier ran, in order (the sim tier runs no file steps).
    pub kinds: Vec<&'static str>,
    /// The run's first violation, if any.
    pub candidate: Option<Candidate>,
    pub incomplete: Option<String>,
    /// The harness failed on this workload.
    pub error: Option<String>,
    /// The VM recording.
    pub run_dir: Option<PathBuf>,
}

impl Outcome {
    /// Deletes the VM recording of a run that found nothing (hundreds of MiB of images).
    pub fn discard_recording(&self) {
        if let Some(dir) = &self.run_dir {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!("campaign: could not remove {}: {e}", dir.display());
            }
        }
    }

    /// Adds a violation: the candidate when it is the first, a count and maybe another
    /// invariant otherwise.
    fn add(&mut self, candidate: Candidate) {
        match &mut self.candidate {
            Some(first) => {
                first.violations += 1;
                if !first.invariants.contains(&candidate.invariant) {
                    first.invariants.push(candidate.invariant);
                }
            }
            None => self.candidate = Some(candidate),
        }
    }
}

/// The kind of each step of a sim plan, named as `generate::step_kind` names workload steps.
pub fn plan_kinds(plan: &SimPlan) -> Vec<&'static str> {
    plan.steps
        .iter()
        .map(|step| match step {
            SimStep::Append { group: 1, .. } => "append",
            SimStep::Append { .. } => "group_commit",
            SimStep::AppendConcurrent { .. } => "ingest",
            SimStep::Rotate => "rotate",
            SimStep::Retire { .. } => "retire",
            SimStep::Reopen => "reopen",
            SimStep::CrashReopen => "crash_reopen",
            SimStep::Fault { .. } => "fault",
            SimStep::ClearFault => "clear_fault",
        })
        .collect()
}

/// Runs the workload's journal steps in the sim tier, as `powercut sim` does.
pub fn sim(generated: &Generated, mutant: Option<Mutant>) -> Result<Outcome> {
    let workload = &generated.workload;
    let kinds = plan_kinds(&sim_tier::plan_for(workload)?);
    let report = sim_tier::run(workload, mutant, workload.seed)?;
    let mut outcome = Outcome {
        states_checked: report.states_checked,
        ..Outcome::default()
    };
    for v in &report.violations {
        let at = kinds.get(v.step).copied().unwrap_or("close");
        outcome.add(Candidate {
            invariant: v.invariant.name().to_string(),
            invariants: vec![v.invariant.name().to_string()],
            state: Some(v.state.to_string()),
            step: Some(format!(
                "plan step {} ({at}), after file-system op {}, acked up to LSN {}",
                v.step, v.at_op, v.acked_lsn
            )),
            failing_step: Some(v.step),
            expected: v.expected.clone(),
            found: v.found.clone(),
            violations: 1,
        });
    }
    if !report.completed && report.passed() {
        outcome.incomplete = Some("the sim run stopped before its last step".into());
    }
    outcome.kinds = kinds;
    Ok(outcome)
}

/// Runs a sim finding's workload `runs` more times as `powercut sim` would replay it and counts
/// the runs that violate `invariant` again.
pub fn sim_replays(
    generated: &Generated,
    mutant: Option<Mutant>,
    invariant: &str,
    runs: u32,
) -> Result<Replays> {
    let workload = &generated.workload;
    let mut showed_invariant = 0;
    for _ in 0..runs {
        let report = sim_tier::run(workload, mutant, workload.seed)?;
        showed_invariant += u32::from(
            report
                .violations
                .iter()
                .any(|v| v.invariant.name() == invariant),
        );
    }
    Ok(Replays {
        runs,
        showed_invariant,
    })
}

/// Where the vm tier records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VmBackend {
    /// A QEMU guest.
    Qemu,
    /// This host's device-mapper (root, dm-log-writes), no VM.
    Dm,
    /// Test aid: the dm backend run inside the guest by a static powercut (for hosts without
    /// device-mapper); each recording boots the guest once.
    #[value(hide = true)]
    DmInGuest,
}

/// The vm tier: a provisioned guest image and where recordings go.
#[derive(Debug)]
pub struct VmTier {
    runs: PathBuf,
    mutant: Option<Mutant>,
    image: BuildOptions,
    backend: VmBackend,
    /// `dm-in-guest`: the static powercut every guest runs, built once and copied to
    /// `DIR/powercut`.
    guest_powercut: Option<PathBuf>,
    errors_in_a_row: Cell<u32>,
}

impl VmTier {
    /// Builds (or finds cached) the guest image; fails with `Skipped` (exit 3) when QEMU cannot
    /// be provisioned, as `powercut run` does. A static agent is copied to `DIR/agent` and every
    /// run uses that copy, so that the engine under test stays the same for the whole campaign
    /// even if the workspace changes meanwhile.
    pub fn provision(
        out: &Path,
        mutant: Option<Mutant>,
        backend: VmBackend,
        progress: &Progress,
    ) -> Result<VmTier> {
        let mut image = BuildOptions {
            flavor: KernelFlavor::Cloud,
            agent: None,
            mutants: mutant.is_some(),
            guest_packages: Vec::new(),
            guest_files: Vec::new(),
        };
        if backend == VmBackend::Dm {
            // The engine runs in this process: no image, no agent.
            crate::dm_backend::check_host(true)?;
            return Ok(VmTier {
                runs: out.join("runs"),
                mutant,
                image,
                backend,
                guest_powercut: None,
                errors_in_a_row: Cell::new(0),
            });
        }
        crate::vm::provision::ensure_qemu(progress)?;
        let agent = crate::vm::image::agent(&image, progress)?;
        if agent.libraries.is_empty() {
            let pinned = out.join("agent");
            std::fs::copy(&agent.binary, &pinned).with_context(|| {
                format!("copying {} to {}", agent.binary.display(), pinned.display())
            })?;
            image.agent = Some(pinned);
        }
        crate::vm::image::build(&image, progress)?;
        let guest_powercut = if backend == VmBackend::DmInGuest {
            let built =
                crate::dm_backend::guest::build_static_powercut(mutant.is_some(), progress)?;
            let pinned = out.join("powercut");
            std::fs::copy(&built, &pinned)
                .with_context(|| format!("copying {} to {}", built.display(), pinned.display()))?;
            Some(pinned)
        } else {
            None
        };
        Ok(VmTier {
            runs: out.join("runs"),
            mutant,
            image,
            backend,
            guest_powercut,
            errors_in_a_row: Cell::new(0),
        })
    }

    /// Options of one recording of this tier.
    fn record_options(&self) -> RecordOptions {
        let mut options = RecordOptions::fresh(self.image.clone(), VM_TIMEOUT);
        options.backend = match self.backend {
            VmBackend::Qemu => crate::record::Backend::Qemu,
            VmBackend::Dm => crate::record::Backend::Dm(crate::dm_backend::DmOptions::default()),
            VmBackend::DmInGuest => {
                crate::record::Backend::DmInGuest(crate::dm_backend::guest::GuestDmOptions {
                    powercut: self.guest_powercut.clone(),
                    ..Default::default()
                })
            }
        };
        options
    }

    /// Records and checks the workload as `powercut run` does, its crash-state check bounded by
    /// `remaining`. A harness failure on one workload is an outcome, not the campaign's end,
    /// unless it means a capability is missing or it keeps happening.
    pub fn run(
        &self,
        generated: &Generated,
        remaining: Duration,
        progress: &Progress,
    ) -> Result<Outcome> {
        let mut workload = generated.workload.clone();
        workload.writer.mutant = self.mutant;
        let dir = self.runs.join(&workload.name);
        let options = self.record_options();
        let args = CheckArgs::defaults_with_budget(remaining.max(MIN_VM_CHECK_BUDGET));
        let kinds = workload.steps.iter().map(step_kind).collect();
        let report = match check_cmds::run(&workload, &dir, &options, &args, &[], progress) {
            Ok(report) => report,
            Err(e) if is_skip(&e) => return Err(e),
            Err(e) => {
                let errors = self.errors_in_a_row.get() + 1;
                self.errors_in_a_row.set(errors);
                if errors >= MAX_VM_ERRORS_IN_A_ROW {
                    bail!("{errors} VM runs in a row failed, the last with: {e:#}");
                }
                eprintln!("campaign: {} failed in the VM: {e:#}", workload.name);
                return Ok(Outcome {
                    kinds,
                    error: Some(format!("{e:#}")),
                    run_dir: Some(dir),
                    ..Outcome::default()
                });
            }
        };
        self.errors_in_a_row.set(0);
        Ok(vm_outcome(generated, &report, kinds, dir))
    }
}

impl VmTier {
    /// Records and checks a shrink candidate in `dir` as [`VmTier::run`] does and says which
    /// invariant its first violation broke, if any. A candidate the VM cannot run reproduces
    /// nothing.
    pub fn verdict(
        &self,
        candidate: &Workload,
        dir: &Path,
        budget: Duration,
        progress: &Progress,
    ) -> crate::shrink::Verdict {
        let mut workload = candidate.clone();
        workload.writer.mutant = self.mutant;
        let options = self.record_options();
        let args = CheckArgs::defaults_with_budget(budget.max(MIN_VM_CHECK_BUDGET));
        let report = check_cmds::run(&workload, dir, &options, &args, &[], progress).ok();
        let first = report.as_ref().and_then(|r| r.all_violations().next());
        crate::shrink::Verdict {
            invariant: first.map(crate::two_crash::finding_name),
            repro: first.and_then(|v| crate::two_crash::repro_command(dir, &v.state_id)),
        }
    }
}

fn vm_outcome(
    generated: &Generated,
    report: &Report,
    kinds: Vec<&'static str>,
    dir: PathBuf,
) -> Outcome {
    let mut outcome = Outcome {
        states_checked: report.states_checked,
        kinds,
        incomplete: report.not_covered(),
        run_dir: Some(dir),
        ..Outcome::default()
    };
    for v in report.all_violations() {
        outcome.add(Candidate {
            invariant: v.invariant.clone(),
            invariants: vec![v.invariant.clone()],
            state: Some(v.state_id.clone()),
            step: v.step.clone(),
            failing_step: v
                .step
                .as_deref()
                .and_then(|label| step_of_ack(&generated.workload, label)),
            expected: v.expected.clone(),
            found: v.found.clone(),
            violations: 1,
        });
    }
    outcome
}

/// Whether an error means "skipped" (exit 3): a missing capability, not a failure.
fn is_skip(e: &anyhow::Error) -> bool {
    use powercut_oracles::check::CheckError;
    use powercut_oracles::mount::MountError;
    e.chain().any(|cause| {
        cause.downcast_ref::<crate::Skipped>().is_some()
            || matches!(
                cause.downcast_ref::<MountError>(),
                Some(MountError::NeedsRoot)
            )
            || matches!(
                cause.downcast_ref::<CheckError>(),
                Some(CheckError::Mount(MountError::NeedsRoot))
            )
    })
}

/// Which tier runs the next workload: `both` gives the sim tier, after each VM run, as much
/// wall time as that run took; no VM run starts when the time left is shorter than the VM runs
/// so far took on average.
#[derive(Debug)]
pub struct Scheduler {
    tier: Tier,
    sim_credit: Duration,
    vm_runs: u32,
    vm_time: Duration,
}

impl Scheduler {
    pub fn new(tier: Tier) -> Scheduler {
        Scheduler {
            tier,
            sim_credit: Duration::ZERO,
            vm_runs: 0,
            vm_time: Duration::ZERO,
        }
    }

    fn vm_fits(&self, remaining: Duration) -> bool {
        self.vm_runs == 0 || remaining >= self.vm_time / self.vm_runs
    }

    /// The tier of the next workload, `None` when nothing fits in `remaining`.
    pub fn pick(&self, remaining: Duration) -> Option<TierKind> {
        match self.tier {
            Tier::Sim => Some(TierKind::Sim),
            Tier::Vm => self.vm_fits(remaining).then_some(TierKind::Vm),
            Tier::Both if self.sim_credit > Duration::ZERO || !self.vm_fits(remaining) => {
                Some(TierKind::Sim)
            }
            Tier::Both => Some(TierKind::Vm),
        }
    }

    /// A run in `tier` took `took`.
    pub fn spent(&mut self, tier: TierKind, took: Duration) {
        match tier {
            TierKind::Vm => {
                self.vm_runs += 1;
                self.vm_time += took;
                if self.tier == Tier::Both {
                    self.sim_credit += took;
                }
            }
            TierKind::Sim => self.sim_credit = self.sim_credit.saturating_sub(took),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_tiers_take_turns_of_equal_time() {
        let mut s = Scheduler::new(Tier::Both);
        let hour = Duration::from_secs(3600);
        assert_eq!(s.pick(hour), Some(TierKind::Vm));
        s.spent(TierKind::Vm, Duration::from_secs(30));
        for _ in 0..3 {
            assert_eq!(s.pick(hour), Some(TierKind::Sim));
            s.spent(TierKind::Sim, Duration::from_secs(10));
        }
        assert_eq!(s.pick(hour), Some(TierKind::Vm));
        // Too little time left for another VM run: the sim tier takes it.
        assert_eq!(s.pick(Duration::from_secs(5)), Some(TierKind::Sim));
        let mut vm = Scheduler::new(Tier::Vm);
        vm.spent(TierKind::Vm, Duration::from_secs(30));
        assert_eq!(vm.pick(Duration::from_secs(5)), None);
        assert_eq!(vm.pick(Duration::from_secs(40)), Some(TierKind::Vm));
    }
}
