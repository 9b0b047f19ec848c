//! The `sim` tier (docs/design.md section 7): a bundled workload's journal steps run in process on the
//! engine's simulated file system (`powercut_writer::sim`), which keeps a live and a durable
//! view and loses what POSIX allows a crash to lose: unsynced data (dropped or torn at sector
//! granularity) and names whose directory was not fsynced. ext4 and XFS commit a new file's
//! name with the file's own fsync, so a missing directory fsync (M2) shows only here.
//!
//! File steps have no simulated counterpart and are skipped; ingest clients become concurrent
//! appenders. Fault steps arm EIO on the simulated file system (`SimStep::Fault`):
//! `eio: writes` fails the engine's writes, `eio: flush` its syncs (fdatasync, O_DSYNC,
//! directory fsync). Byte ranges of the disk are not modelled (the simulated files have no
//! sectors on a disk), so a `sectors` target fails every write of the journal, as `journal`
//! does. A fault cleared after one step fails only the first operation it matches (a device
//! error that goes away at once: what a retried fdatasync, M3, relies on); one cleared after
//! more steps, or by `clear_fault`, fails every matching operation until then. Each workload
//! step other than a file step becomes exactly one simulated step.
//!
//! A power cut (`power_cut:`) is the vm tier's: the sim tier already checks crash states after
//! every operation, and runs the workload's steps without cutting them short.

use anyhow::{bail, Context, Result};
use powercut_workloads::spec::{EioKind, FaultSpec, Step, Workload};
use powercut_writer::sim::{self, FaultOn, SimPlan, SimReport, SimStep};
use powercut_writer::Mutant;

/// The simulated plan of `workload`: its writer options (no background preparation, so that a
/// seed replays the same run), its journal steps, its payload size range.
pub fn plan_for(workload: &Workload) -> Result<SimPlan> {
    let options = workload.journal_options();
    let mut plan = SimPlan::new(
        options.durability,
        options.preallocation,
        options.recycle_segments,
        Vec::new(),
    );
    plan.journal.segment_bytes = options.segment_bytes;
    plan.journal.max_staging_bytes = options.max_staging_bytes;
    plan.journal.max_groups_in_flight = options.max_groups_in_flight;
    let mut sizes = Sizes::default();
    for step in &workload.steps {
        plan.steps.extend(map_step(step, &mut sizes)?);
    }
    if plan.steps.is_empty() {
        bail!(
            "workload {} has no journal steps to simulate",
            workload.name
        );
    }
    // A workload that appends nothing keeps the plan's own sizes (no payload is ever drawn).
    if sizes.max > 0 {
        plan.min_payload_bytes = usize::try_from(sizes.min.min(sim::MAX_PAYLOAD_BYTES as u64))?;
        plan.max_payload_bytes = usize::try_from(sizes.max.min(sim::MAX_PAYLOAD_BYTES as u64))?;
    }
    plan.validate()
        .map_err(|e| anyhow::anyhow!("workload {} as a sim plan: {e}", workload.name))?;
    Ok(plan)
}

/// The payload sizes a plan's appends draw from (the smallest and largest over all steps).
struct Sizes {
    min: u64,
    max: u64,
}

impl Default for Sizes {
    fn default() -> Sizes {
        Sizes {
            min: u64::MAX,
            max: 0,
        }
    }
}

impl Sizes {
    fn add(&mut self, min: u64, max: u64) {
        self.min = self.min.min(min);
        self.max = self.max.max(max);
    }
}

/// The simulated step of one workload step (`None` for a file step).
fn map_step(step: &Step, sizes: &mut Sizes) -> Result<Option<SimStep>> {
    Ok(match step {
        Step::Append(a) => {
            sizes.add(a.size.min_bytes, a.size.max_bytes);
            Some(SimStep::Append {
                records: u32::try_from(a.count).context("append count")?,
                group: u32::try_from(a.commit_every).context("commit_every")?,
            })
        }
        Step::Ingest(i) => {
            sizes.add(i.size.min_bytes, i.size.max_bytes);
            Some(SimStep::AppendConcurrent {
                threads: u32::try_from(i.clients).context("clients")?,
                records_per_thread: u32::try_from(i.records_per_client)
                    .context("records_per_client")?,
            })
        }
        Step::Rotate => Some(SimStep::Rotate),
        Step::Retire => Some(SimStep::Retire { keep_records: 0 }),
        Step::Reopen => Some(SimStep::Reopen),
        Step::Fault(fault) => Some(fault_step(fault)?),
        Step::ClearFault => Some(SimStep::ClearFault),
        Step::Exec(_) => anyhow::bail!(
            "the sim tier runs the engine only: a workload with `exec:` steps needs `powercut run`"
        ),
        Step::File(_) => None,
    })
}

/// The simulated fault of a `fault:` step (see the module documentation).
fn fault_step(fault: &FaultSpec) -> Result<SimStep> {
    let on = match fault.eio {
        EioKind::Writes => FaultOn::Writes,
        EioKind::Flush => FaultOn::Syncs,
    };
    let clear_after_steps = fault
        .clear_after_steps
        .map(u32::try_from)
        .transpose()
        .context("clear_after_steps")?;
    Ok(SimStep::Fault {
        on,
        persistent: clear_after_steps != Some(1),
        bytes: None,
        clear_after_steps,
    })
}

/// Runs `workload` in the sim tier with the real engine (`None`) or a mutant.
pub fn run(workload: &Workload, mutant: Option<Mutant>, seed: u64) -> Result<SimReport> {
    let plan = plan_for(workload)?;
    sim::check_run(&plan, mutant, seed)
        .map_err(|e| anyhow::anyhow!("sim run of {}: {e}", workload.name))
}

/// [`run`] bounded by `budget`, printing a progress line on stderr every second (steps done of
/// all, crash states checked, states/s, an ETA from the steps' pace).
pub fn run_with_progress(
    workload: &Workload,
    mutant: Option<Mutant>,
    seed: u64,
    budget: Option<std::time::Duration>,
) -> Result<SimReport> {
    let mut plan = plan_for(workload)?;
    let progress = std::sync::Arc::new(sim::SimProgress::default());
    plan.time_budget = budget;
    plan.progress = Some(std::sync::Arc::clone(&progress));
    let steps_total = plan.steps.len() as u64;
    let done = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|scope| {
        scope.spawn(|| print_progress(&progress, steps_total, &done));
        let report = sim::check_run(&plan, mutant, seed);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        report
    });
    report.map_err(|e| anyhow::anyhow!("sim run of {}: {e}", workload.name))
}

/// Prints the run's progress every second until `done`.
fn print_progress(
    progress: &sim::SimProgress,
    steps_total: u64,
    done: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    let started = std::time::Instant::now();
    let mut next = std::time::Duration::from_secs(1);
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let elapsed = started.elapsed();
        if elapsed < next {
            continue;
        }
        next += std::time::Duration::from_secs(1);
        let steps = progress.steps_done.load(Ordering::Relaxed);
        let states = progress.states_checked.load(Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let eta = if steps > 0 {
            format!(
                ", about {:.0}s left",
                seconds * (steps_total.saturating_sub(steps)) as f64 / steps as f64
            )
        } else {
            String::new()
        };
        eprintln!(
            "sim: step {steps}/{steps_total}, {states} crash states ({:.0}/s), {seconds:.0}s{eta}",
            states as f64 / seconds
        );
    }
}

/// One line for a finished run.
pub fn summary(workload: &Workload, report: &SimReport) -> String {
    let mut line = format!(
        "sim: {} seed {}{}: {} crash states checked over {} acks in {:.1}s ({:.0} states/s), {} \
         violations",
        workload.name,
        report.seed,
        report
            .mutant
            .map(|m| format!(" mutant {m}"))
            .unwrap_or_default(),
        report.states_checked,
        report.acks,
        report.elapsed.as_secs_f64(),
        report.states_per_second(),
        report.violations_total
    );
    if let Some(first) = report.violations.first() {
        line.push_str(&format!("\n  first: {first}"));
    }
    line
}

/// The report as JSON: the figures and each violation with its invariant, step and state.
pub fn report_json(workload: &Workload, report: &SimReport) -> Result<String> {
    let violations: Vec<serde_json::Value> = report
        .violations
        .iter()
        .map(|v| {
            serde_json::json!({
                "invariant": v.invariant.name(),
                "seed": v.seed,
                "step": v.step,
                "acked_lsn": v.acked_lsn,
                "at_op": v.at_op,
                "state": v.state.to_string(),
                "expected": v.expected,
                "found": v.found,
            })
        })
        .collect();
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "tier": "sim",
        "workload": workload.name,
        "seed": report.seed,
        "mutant": report.mutant.map(|m| m.name()),
        "states_checked": report.states_checked,
        "acks": report.acks,
        "faults_hit": report.faults_hit,
        "elapsed_seconds": report.elapsed.as_secs_f64(),
        "states_per_second": report.states_per_second(),
        "violations_total": report.violations_total,
        "violations": violations,
        "passed": report.passed(),
    }))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled(name: &str) -> Workload {
        let path = crate::vm::image::workspace_root()
            .join("workloads")
            .join(format!("{name}.yaml"));
        powercut_workloads::spec::load(&path).unwrap()
    }

    #[test]
    fn bundled_journal_workloads_become_valid_plans() {
        for name in ["smoke", "rotate-recycle", "recycle-stale", "ingest-clients"] {
            let w = bundled(name);
            let plan = plan_for(&w).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(!plan.steps.is_empty(), "{name}");
            assert_eq!(
                plan.journal.segment_bytes,
                w.journal_options().segment_bytes
            );
        }
    }

    #[test]
    fn a_workload_that_appends_nothing_is_still_a_valid_plan() {
        let text =
            "name: t\nwriter: { segment_bytes: 1MiB }\nsteps:\n  - reopen: {}\n  - rotate: {}\n";
        let w = powercut_workloads::spec::parse(text, "t.yaml").unwrap();
        let plan = plan_for(&w).unwrap();
        assert_eq!(plan.steps.len(), 2);
    }

    #[test]
    fn fault_steps_become_sim_steps() {
        let plan = plan_for(&bundled("eio-flush")).unwrap();
        assert!(plan.steps.iter().any(|s| matches!(
            s,
            SimStep::Fault {
                on: FaultOn::Syncs,
                ..
            }
        )));
        let plan = plan_for(&bundled("eio-journal")).unwrap();
        assert!(plan.steps.contains(&SimStep::ClearFault));
        assert!(plan.steps.iter().any(|s| matches!(
            s,
            SimStep::Fault {
                persistent: false,
                clear_after_steps: Some(1),
                ..
            }
        )));
    }

    /// The bundled fault workloads (and the power-cut one, whose cut the sim tier leaves to
    /// the vm tier) on the real engine: clean, and the faults really failed operations.
    #[test]
    fn the_real_engine_passes_the_fault_workloads_in_the_sim_tier() {
        for name in ["eio-flush", "eio-journal", "fsyncgate", "two-crash"] {
            let workload = bundled(name);
            let report = run(&workload, None, 7).unwrap();
            println!("{}", summary(&workload, &report));
            assert!(report.passed(), "{name}: {:?}", report.violations.first());
            assert!(report.completed, "{name}");
            assert_eq!(report.faults_hit > 0, name != "two-crash", "{name}");
        }
    }

    #[test]
    fn the_real_engine_passes_rotate_recycle_in_the_sim_tier() {
        let report = run(&bundled("rotate-recycle"), None, 7).unwrap();
        println!("{}", summary(&bundled("rotate-recycle"), &report));
        assert!(report.states_checked > 0);
        assert!(report.passed(), "{:?}", report.violations.first());
    }
}
