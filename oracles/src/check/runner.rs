//! The worker pool: checks a list of crash states on the configured number of workers, each
//! with its own prefix image that only moves forward and its own scratch image per state.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::config::CheckConfig;
use super::one_state::Run;
use super::state_image::apply_delta;
use super::timing::Part;
use super::LogRun;
use crate::crash::{CrashState, StateKind};
use crate::outcome::{io_err, CheckError, StateOutcome};
use crate::replay::{clone_image, Replayer};

/// Progress callback payload.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The pass: `coverage` or `states` (or `shrink` for a shrink's tries).
    pub phase: &'static str,
    /// States checked so far.
    pub states_done: u64,
    /// States to check in all.
    pub states_total: u64,
    /// Violations found so far.
    pub violations: u64,
    /// Time since the check started.
    pub elapsed: Duration,
}

impl Run<'_> {
    /// Checks `states` (sorted for replay) with the configured workers; stops at the deadline.
    /// Returns the outcomes and whether the deadline came first. `phase` names the pass in
    /// the progress reports.
    pub(super) fn run(
        &self,
        states: &[CrashState],
        progress: &mut dyn FnMut(Progress),
        phase: &'static str,
    ) -> Result<(Vec<StateOutcome>, bool), CheckError> {
        let start = Instant::now();
        // The pass has begun: progress shows it before its first state is done.
        progress(Progress {
            phase,
            states_done: 0,
            states_total: states.len() as u64,
            violations: 0,
            elapsed: Duration::ZERO,
        });
        let next = AtomicUsize::new(0);
        let exhausted = AtomicBool::new(false);
        let failed = AtomicBool::new(false);
        let workers = self.cfg.workers.clamp(1, 16);
        let (tx, rx) = mpsc::channel::<Result<StateOutcome, CheckError>>();
        let mut outcomes = Vec::new();
        let mut first_error = None;
        std::thread::scope(|scope| {
            for w in 0..workers {
                let tx = tx.clone();
                let (next, exhausted, failed) = (&next, &exhausted, &failed);
                scope.spawn(move || {
                    if let Err(e) = self.worker(w, states, next, exhausted, failed, &tx) {
                        failed.store(true, Ordering::SeqCst);
                        let _ = tx.send(Err(e));
                    }
                });
            }
            drop(tx);
            let mut violations = 0u64;
            for msg in rx {
                match msg {
                    Ok(o) => {
                        violations += o.violations.len() as u64;
                        outcomes.push(o);
                        progress(Progress {
                            phase,
                            states_done: outcomes.len() as u64,
                            states_total: states.len() as u64,
                            violations,
                            elapsed: start.elapsed(),
                        });
                    }
                    Err(e) => {
                        if first_error.is_none() {
                            first_error = Some(e);
                        }
                    }
                }
            }
        });
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok((outcomes, exhausted.load(Ordering::SeqCst)))
    }

    fn worker(
        &self,
        w: usize,
        states: &[CrashState],
        next: &AtomicUsize,
        exhausted: &AtomicBool,
        failed: &AtomicBool,
        tx: &mpsc::Sender<Result<StateOutcome, CheckError>>,
    ) -> Result<(), CheckError> {
        let dir = self.scratch.join(format!("worker{w}"));
        std::fs::create_dir_all(&dir).map_err(io_err("create scratch directory", &dir))?;
        let prefix = dir.join("prefix.img");
        let image = dir.join("state.img");
        let mnt = dir.join("mnt");
        let mut replayer: Option<Replayer<'_>> = None;
        loop {
            if failed.load(Ordering::SeqCst) {
                return Ok(());
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                exhausted.store(true, Ordering::SeqCst);
                return Ok(());
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(state) = states.get(i) else {
                return Ok(());
            };
            let building = Instant::now();
            // States are sorted by durable prefix and each worker takes increasing indexes, so the
            // prefix image only moves forward.
            let r = match &mut replayer {
                Some(r) if r.position() <= state.prefix_len => r,
                slot => {
                    clone_image(self.base, &prefix)?;
                    slot.insert(Replayer::new(self.log, &prefix)?)
                }
            };
            r.advance_to(state.prefix_len)?;
            let building = self.timing.lap(Part::Replay, building);
            clone_image(&prefix, &image)?;
            apply_delta(self.log, state, &image)?;
            self.timing.lap(Part::Image, building);
            let outcome =
                self.check_state(state, &image, &mnt, self.probe_index == Some(i), &dir)?;
            if tx.send(Ok(outcome)).is_err() {
                return Ok(());
            }
        }
    }
}

/// Checks `states` (sorted for replay) of `run`'s log without the I5 probe, reporting progress
/// as `phase`. Returns the outcomes and whether the deadline came first.
pub(crate) fn run_states(
    run: &LogRun<'_>,
    scratch: &Path,
    states: &[CrashState],
    progress: &mut dyn FnMut(Progress),
    phase: &'static str,
) -> Result<(Vec<StateOutcome>, bool), CheckError> {
    Run::new(run, scratch).run(states, progress, phase)
}

/// The state that gets the I5 probe: the last full prefix of the log.
pub(super) fn probe_state(
    config: &CheckConfig,
    states: &[CrashState],
    n_entries: u64,
) -> Option<usize> {
    if !config.mid_log_corruption {
        return None;
    }
    states
        .iter()
        .rposition(|s| s.id.cut == n_entries && s.id.kind() == StateKind::Prefix)
}
