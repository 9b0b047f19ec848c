//! The driver behind `powercut run` and `powercut repro`: enumerate the crash states of a log,
//! build each image incrementally, mount it, run the engine's recovery and the invariants.
//!
//! Two workers (the machine has two cores; the mount is the bottleneck) each keep their own
//! prefix image that only moves forward and their own scratch image per state.
//!
//! The parts, each depending only on those listed before it: [`input`](LogInput) (what is
//! checked), [`config`](CheckConfig) (the knobs), `scratch` (where images are built),
//! `state_image` (one state's image), `one_state` (the context of a run and checking one mounted
//! image), `runner` (the worker pool), [`coverage`] (every ack on its durable state), and here
//! the entry points.

mod config;
pub mod coverage;
mod input;
mod one_state;
pub mod program;
mod runner;
mod scratch;
mod state_image;
mod timing;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use powercut_workloads::ack::Ack;

pub use self::config::{CheckConfig, DEFAULT_MAX_KEPT_IMAGES};
pub use self::input::LogInput;
pub use self::program::{CheckerError, ProgramCheck, PROGRAM_INVARIANTS};
pub use self::runner::Progress;
pub use self::state_image::{build_state_image, rebuild_state};
pub use self::timing::Timing;
pub use crate::outcome::{CheckError, StateOutcome};

use self::coverage::{run_coverage, split_by_coverage};
use self::one_state::Run;
use self::runner::probe_state;
use self::scratch::{scratch, with_scratch};
use crate::blocklog::BlockLog;
use crate::crash::{self, CrashState, StateId};
use crate::invariants::{self, RecoverFn};
use crate::mount::{self, FsType};
use crate::outcome::io_err;
use crate::report::{CoverageReport, PhaseReport, Report};

/// Checks every crash state of `input`'s log (or the configured shard) within the budget.
pub fn check_log(
    input: &LogInput<'_>,
    config: &CheckConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, CheckError> {
    let start = Instant::now();
    let (log, acks) = open_log(input.log_path, config)?;
    let enumeration = crash::enumerate(&log, &config.states);
    let mut states = enumeration.states;
    if let Some((k, n)) = config.shard {
        if n == 0 || k >= n {
            return Err(CheckError::BadShard { k, n });
        }
        states = crash::shard(states, k, n);
    }
    let base_image = input.base_image;
    let image_bytes = std::fs::metadata(base_image)
        .map_err(io_err("stat base image", base_image))?
        .len();
    let timing = Timing::default();
    let run = LogRun {
        start,
        deadline: config.deadline_from(start),
        ..LogRun::new(input, &log, &acks, config, &timing)
    };
    let (passes, image_copies) = with_scratch(config, image_bytes, |scratch| {
        // One copy of the base image onto the scratch file system: every worker's prefix image
        // of every pass is then a clone of it, not a copy of the whole disk (a 1 GiB disk took
        // seconds per worker and pass before the first state).
        let base = local_base(scratch, base_image, &timing)?;
        let run = LogRun { base: &base, ..run };
        run.passes(&states, scratch, progress)
    })?;
    let states_total = states.len() as u64;
    let mut report = run.report(passes, states_total, enumeration.duplicates, image_copies);
    report.time_split = Some(timing.split());
    Ok(report)
}

/// One check of a log: the log, its ledger, what to check it with and when the check started.
#[derive(Clone, Copy)]
pub(crate) struct LogRun<'a> {
    log: &'a BlockLog,
    base: &'a Path,
    fs: FsType,
    seed: u64,
    acks: &'a [(u64, Ack)],
    config: &'a CheckConfig,
    recover: &'a RecoverFn,
    start: Instant,
    /// When to stop starting new states (the config's deadline or budget).
    deadline: Option<Instant>,
    /// Where the time of each state goes.
    timing: &'a Timing,
}

impl<'a> LogRun<'a> {
    /// A check of `log` (read from `input`'s log, with its ledger `acks`) starting now.
    fn new(
        input: &LogInput<'a>,
        log: &'a BlockLog,
        acks: &'a [(u64, Ack)],
        config: &'a CheckConfig,
        timing: &'a Timing,
    ) -> LogRun<'a> {
        let start = Instant::now();
        LogRun {
            log,
            base: input.base_image,
            fs: input.fs,
            seed: input.seed,
            acks,
            config,
            recover: input.recover,
            start,
            deadline: config.deadline_from(start),
            timing,
        }
    }
}

/// Opens the log (cut to `config.max_entries`) and its ledger, once mounting is known to work.
fn open_log(
    log_path: &Path,
    config: &CheckConfig,
) -> Result<(BlockLog, Vec<(u64, Ack)>), CheckError> {
    mount::can_mount()?;
    let mut log = BlockLog::open(log_path)?;
    if let Some(n) = config.max_entries {
        log.keep_first_entries(n);
    }
    let acks = invariants::ledger(&log, config.acks.as_deref())?;
    Ok((log, acks))
}

/// What the passes of a run found.
struct Passes {
    coverage: Option<CoverageReport>,
    /// What each pass covered.
    phases: Vec<PhaseReport>,
    outcomes: Vec<StateOutcome>,
    budget_exhausted: bool,
    /// States whose outcome is that of an equal state of the coverage pass.
    states_from_coverage: u64,
}

impl LogRun<'_> {
    /// The coverage pass (on the first shard), then every crash state it did not already check.
    fn passes(
        &self,
        states: &[CrashState],
        scratch: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Passes, CheckError> {
        let config = self.config;
        let mut phases = Vec::new();
        let (coverage, covered) = if config.coverage && config.shard.is_none_or(|(k, _)| k == 0) {
            let (report, outcomes, phase) = run_coverage(self, scratch, progress)?;
            phases.push(phase);
            (Some(report), outcomes)
        } else {
            (None, Vec::new())
        };
        let (to_check, mut outcomes) = split_by_coverage(states, &covered, self.acks);
        let states_from_coverage = outcomes.len() as u64;
        let n_entries = self.log.entries().len() as u64;
        let mut run = Run::new(self, scratch);
        run.probe_index = probe_state(config, &to_check, n_entries);
        let started = Instant::now();
        let (checked, budget_exhausted) = run.run(&to_check, progress, "states")?;
        let seconds = started.elapsed();
        let probed = checked.iter().any(|o| o.mid_log_probe.is_some());
        outcomes.extend(checked);
        phases.push(phase(
            "states",
            outcomes.len(),
            states.len(),
            "states",
            budget_exhausted,
            seconds,
        ));
        if run.probe_index.is_some() {
            let stopped = budget_exhausted && !probed;
            phases.push(phase(
                "i5_probe",
                usize::from(probed),
                1,
                "probes",
                stopped,
                seconds,
            ));
        }
        Ok(Passes {
            coverage,
            phases,
            outcomes,
            budget_exhausted,
            states_from_coverage,
        })
    }

    /// The report of the run.
    fn report(
        &self,
        passes: Passes,
        states_total: u64,
        duplicates_skipped: u64,
        image_copies: Option<String>,
    ) -> Report {
        let elapsed = self.start.elapsed().as_secs_f64();
        let outcomes = &passes.outcomes;
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        let mut violations = Vec::new();
        let mut probes = 0;
        for o in outcomes {
            *by_kind.entry(o.kind.as_str().to_string()).or_insert(0) += 1;
            violations.extend(o.violations.iter().cloned());
            if o.mid_log_probe
                .as_deref()
                .is_some_and(|p| p == "refused" || p == "violated")
            {
                probes += 1;
            }
        }
        Report {
            seed: self.seed,
            workload: workload_name(self.acks),
            fs: self.fs.to_string(),
            log_hash: self.log.hash_hex(),
            enumeration_seed: self.config.states.seed,
            shard: self.config.shard.map(|(k, n)| format!("{k}/{n}")),
            states_total,
            states_checked: outcomes.len() as u64,
            duplicates_skipped,
            states_from_coverage: passes.states_from_coverage,
            states_by_kind: by_kind,
            states_per_second: if elapsed > 0.0 {
                outcomes.len() as f64 / elapsed
            } else {
                0.0
            },
            elapsed_seconds: elapsed,
            mid_log_probes: probes,
            violations,
            coverage: passes.coverage,
            budget_exhausted: passes.budget_exhausted
                || passes.phases.iter().any(|p| p.stopped_by_budget),
            minimal_repro: None,
            image_copies,
            phases: passes.phases,
            time_split: None,
        }
    }
}

/// A phase's figures; stopped by the budget only when it did not get through its work.
pub(crate) fn phase(
    name: &str,
    done: usize,
    total: usize,
    unit: &str,
    exhausted: bool,
    seconds: Duration,
) -> PhaseReport {
    PhaseReport {
        name: name.to_string(),
        done: done as u64,
        total: total as u64,
        unit: unit.to_string(),
        stopped_by_budget: exhausted && done < total,
        seconds: seconds.as_secs_f64(),
    }
}

/// `powercut repro ID`: rebuilds the one state from scratch, mounts and checks it (with the I5
/// probe if `config.mid_log_corruption`). The image is kept in `config.keep_dir` on violation.
pub fn check_one(
    state_id: &str,
    input: &LogInput<'_>,
    config: &CheckConfig,
) -> Result<StateOutcome, CheckError> {
    mount::can_mount()?;
    let id: StateId = state_id.parse()?;
    let log = BlockLog::open(input.log_path)?;
    let acks = invariants::ledger(&log, config.acks.as_deref())?;
    let state = crash::resolve(&log, &id)?;
    let scratch = scratch(config)?;
    let image = scratch.path.join("state.img");
    build_state_image(&log, input.base_image, &state, &image)?;
    let timing = Timing::default();
    let run = LogRun::new(input, &log, &acks, config, &timing);
    let run = Run::new(&run, &scratch.path);
    run.check_state(
        &state,
        &image,
        &scratch.path.join("mnt"),
        config.mid_log_corruption,
        &scratch.path,
    )
}

/// Checks states of one log one after another (a shrink's tries), as [`check_one`] would each
/// but with the log and its ledger read once and the durable prefix replayed once per cut: `f`
/// gets the log (cut to `config.max_entries`) and a checker of its states.
pub fn with_state_checker<T>(
    input: &LogInput<'_>,
    config: &CheckConfig,
    f: impl FnOnce(&BlockLog, &mut StateChecker<'_>) -> T,
) -> Result<T, CheckError> {
    let (log, acks) = open_log(input.log_path, config)?;
    let base_image = input.base_image;
    let image_bytes = std::fs::metadata(base_image)
        .map_err(io_err("stat base image", base_image))?
        .len();
    let timing = Timing::default();
    // On the reflink scratch as a check's passes are: each try's image is then a clone of the
    // prefix image, not a copy of the whole disk.
    let (out, _) = with_scratch(config, image_bytes, |scratch| {
        let base = local_base(scratch, base_image, &timing)?;
        let input = LogInput {
            base_image: &base,
            ..*input
        };
        let run = LogRun::new(&input, &log, &acks, config, &timing);
        let mut checker = StateChecker {
            run: Run::new(&run, scratch),
            replayer: None,
        };
        Ok(f(&log, &mut checker))
    })?;
    Ok(out)
}

/// The base image to clone prefix images from: one copy on the scratch file system when it can
/// reflink (every clone of it is then cheap), else the original.
fn local_base(
    scratch: &Path,
    base_image: &Path,
    timing: &Timing,
) -> Result<std::path::PathBuf, CheckError> {
    if !crate::replay::reflink_supported(scratch) {
        return Ok(base_image.to_path_buf());
    }
    let copying = Instant::now();
    let local = scratch.join("base.img");
    crate::replay::clone_image(base_image, &local)?;
    timing.add(timing::Part::Replay, copying.elapsed());
    Ok(local)
}

/// The checker of [`with_state_checker`].
pub struct StateChecker<'a> {
    run: Run<'a>,
    /// The durable prefix image, kept between states (a shrink's tries share their cut).
    replayer: Option<crate::replay::Replayer<'a>>,
}

impl std::fmt::Debug for StateChecker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateChecker")
            .field("scratch", &self.run.scratch)
            .finish_non_exhaustive()
    }
}

impl StateChecker<'_> {
    /// Builds `id`'s image from the kept prefix image, mounts and checks it (with the I5 probe
    /// if `config.mid_log_corruption`).
    pub fn check(&mut self, id: &StateId) -> Result<StateOutcome, CheckError> {
        let run = &self.run;
        let state = crash::resolve(run.log, id)?;
        let prefix = run.scratch.join("prefix.img");
        let image = run.scratch.join("state.img");
        let r = match &mut self.replayer {
            Some(r) if r.position() <= state.prefix_len => r,
            slot => {
                crate::replay::clone_image(run.base, &prefix)?;
                slot.insert(crate::replay::Replayer::new(run.log, &prefix)?)
            }
        };
        r.advance_to(state.prefix_len)?;
        crate::replay::clone_image(&prefix, &image)?;
        state_image::apply_delta(run.log, &state, &image)?;
        let probe = run.cfg.mid_log_corruption;
        run.check_state(&state, &image, &run.scratch.join("mnt"), probe, run.scratch)
    }

    /// Where the time of the states checked so far went.
    pub fn time_split(&self) -> crate::report::TimeSplit {
        self.run.timing.split()
    }
}

fn workload_name(acks: &[(u64, Ack)]) -> String {
    acks.iter()
        .find_map(|(_, a)| match a {
            Ack::Start { name } => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".into())
}
