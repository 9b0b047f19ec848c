//! The context of a run over crash states, and checking one built image with it: mount it, run
//! the engine's recovery and the invariants (and the I5 probe on the state chosen for it), and
//! keep the evidence of a failing state.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use powercut_workloads::ack::Ack;

use super::config::CheckConfig;
use super::timing::{Part, Timing};
use super::LogRun;
use crate::blocklog::BlockLog;
use crate::crash::CrashState;
use crate::invariants::{
    self, check_mid_log_corruption, Expectation, MidLogProbe, RecoverFn, RecoveredJournal,
    Violation,
};
use crate::keep::{self, Keeper};
use crate::mount::{self, FsType, MountError};
use crate::outcome::{io_err, CheckError, StateOutcome};

/// What the mounted file system showed: the violations, the engine's recovery and the I5 probe.
type Mounted = (
    Vec<Violation>,
    Result<RecoveredJournal, String>,
    Option<MidLogProbe>,
);

/// Shared context of a run over a list of states.
pub(super) struct Run<'a> {
    pub(super) log: &'a BlockLog,
    pub(super) base: &'a Path,
    pub(super) fs: FsType,
    pub(super) seed: u64,
    pub(super) acks: &'a [(u64, Ack)],
    pub(super) cfg: &'a CheckConfig,
    pub(super) recover: &'a RecoverFn,
    pub(super) scratch: &'a Path,
    /// State index that gets the I5 probe.
    pub(super) probe_index: Option<usize>,
    /// Failing images kept so far (at most `cfg.max_kept_images`).
    pub(super) kept_images: AtomicUsize,
    /// Where failing states are kept (`cfg.keep_dir`), beside their log.
    pub(super) keeper: Option<Keeper>,
    /// When to stop starting new states.
    pub(super) deadline: Option<Instant>,
    /// Where the time of each state goes.
    pub(super) timing: &'a Timing,
    /// The acks of `acks` without their indexes, built once: a state expects a prefix of them.
    all_acks: Vec<Ack>,
}

impl<'a> Run<'a> {
    /// A run of `run`'s log without the I5 probe, building its images under `scratch`.
    pub(super) fn new(run: &LogRun<'a>, scratch: &'a Path) -> Run<'a> {
        Run {
            log: run.log,
            base: run.base,
            fs: run.fs,
            seed: run.seed,
            acks: run.acks,
            cfg: run.config,
            recover: run.recover,
            scratch,
            probe_index: None,
            kept_images: AtomicUsize::new(0),
            keeper: keeper_of(run.config, run.log),
            deadline: run.deadline,
            timing: run.timing,
            all_acks: run.acks.iter().map(|(_, a)| a.clone()).collect(),
        }
    }
}

impl Run<'_> {
    /// Checks `state`, whose image is built at `image`; `work` is scratch room for the probe.
    pub(super) fn check_state(
        &self,
        state: &CrashState,
        image: &Path,
        mnt: &Path,
        probe: bool,
        work: &Path,
    ) -> Result<StateOutcome, CheckError> {
        let id = state.id.to_string();
        // The ledger is sorted by entry index: the expected acks are a prefix of it, the one in
        // flight the next (no per-state copy or scan of the ledger).
        let n = self.acks.partition_point(|(i, _)| *i < state.id.cut);
        let acks = &self.all_acks[..n];
        let exp = Expectation {
            state_id: &id,
            seed: self.seed,
            acks,
            in_flight: self.acks.get(n).map(|(_, a)| a),
        };
        let mut outcome = StateOutcome {
            state_id: id.clone(),
            kind: state.id.kind(),
            violations: Vec::new(),
            records_recovered: None,
            truncated_tail: None,
            recovery_error: None,
            mid_log_probe: None,
            kept: None,
        };
        match self.check_mounted(&exp, image, mnt, probe, work) {
            Ok(mounted) => {
                fill_outcome(&mut outcome, mounted?);
                if self.cfg.program.is_some() {
                    // No journal was recovered: the checker judged the state.
                    outcome.records_recovered = None;
                }
            }
            Err(MountError::Mount { source, .. }) => {
                // The file system did not survive the crash state: a finding, not a harness error.
                outcome.violations.push(Violation {
                    invariant: "MOUNT".into(),
                    state_id: id,
                    seed: self.seed,
                    step: None,
                    expected: format!("the {} file system mounts after a crash", self.fs),
                    found: format!("mount failed: {source}"),
                });
            }
            Err(e) => return Err(e.into()),
        }
        if !outcome.violations.is_empty() {
            if let Some(keeper) = &self.keeper {
                let keeping = Instant::now();
                outcome.kept = Some(self.keep(keeper, image, &outcome, acks)?);
                self.timing.lap(Part::Keep, keeping);
            }
        }
        self.timing.count_state();
        Ok(outcome)
    }

    /// Mounts `image` and checks the invariants on it; the outer error is the mount's.
    fn check_mounted(
        &self,
        exp: &Expectation<'_>,
        image: &Path,
        mnt: &Path,
        probe: bool,
        work: &Path,
    ) -> Result<Result<Mounted, CheckError>, MountError> {
        let t = self.timing;
        let mounting = Instant::now();
        let mut unmounting = None;
        let mounted = mount::with_mounted(image, self.fs, mnt, |root| {
            let recovering = t.lap(Part::Mount, mounting);
            if let Some(program) = &self.cfg.program {
                // A program's checker judges the state; no journal is recovered.
                let violations = program.check(exp, root)?;
                unmounting = Some(t.lap(Part::Judge, recovering));
                return Ok((violations, Ok(RecoveredJournal::default()), None));
            }
            // What `invariants::check_mounted` does, timed in its two parts.
            let result = (self.recover)(&root.join(&self.cfg.invariants.journal_dir));
            let judging = t.lap(Part::Recovery, recovering);
            let mut violations = invariants::check_journal(exp, &result);
            let files = root.join(&self.cfg.invariants.files_dir);
            violations.extend(invariants::check_files(exp, &files));
            let probing = t.lap(Part::Judge, judging);
            let probed = self.probe(exp, root, probe, &result, work);
            unmounting = Some(t.lap(Part::Probe, probing));
            probed.map(|p| (violations, result, p))
        });
        if let Some(since) = unmounting {
            t.lap(Part::Unmount, since);
        }
        mounted
    }

    /// The I5 probe on the mounted state when `probe` (and recovery succeeded).
    fn probe(
        &self,
        exp: &Expectation<'_>,
        root: &Path,
        probe: bool,
        result: &Result<RecoveredJournal, String>,
        work: &Path,
    ) -> Result<Option<MidLogProbe>, CheckError> {
        {
            let mut probe_result = None;
            if probe {
                if let Ok(j) = result {
                    let journal = root.join(&self.cfg.invariants.journal_dir);
                    probe_result = Some(check_mid_log_corruption(
                        exp,
                        &journal,
                        j,
                        self.recover,
                        work,
                    )?);
                }
            }
            Ok(probe_result)
        }
    }

    /// Keeps the image (up to `max_kept_images` per run), the ledger and the outcome of a
    /// failing state; returns its directory.
    fn keep(
        &self,
        keeper: &Keeper,
        image: &Path,
        outcome: &StateOutcome,
        acks: &[Ack],
    ) -> Result<PathBuf, CheckError> {
        let dir = keeper.root()?.join(&outcome.state_id);
        std::fs::create_dir_all(&dir).map_err(io_err("create keep directory", &dir))?;
        if self.kept_images.fetch_add(1, Ordering::SeqCst) < self.cfg.max_kept_images {
            keep::clone_new(image, &dir.join("image"))?;
        } else {
            let note = format!(
                "More than {} failing states in this run: their images are not kept.\n\
                 `powercut repro {} --log LOG --base BASE` rebuilds this one.\n",
                self.cfg.max_kept_images, outcome.state_id
            );
            keep::write_new(&dir.join("image-not-kept.txt"), note.as_bytes())?;
        }
        let ledger: Vec<String> = acks.iter().map(Ack::to_label).collect();
        let ledger = serde_json::to_string_pretty(&ledger).unwrap_or_default();
        keep::write_new(&dir.join("ledger.json"), ledger.as_bytes())?;
        let outcome = serde_json::to_string_pretty(outcome).unwrap_or_default();
        keep::write_new(&dir.join("outcome.json"), outcome.as_bytes())?;
        Ok(dir)
    }
}

/// Records what the mounted state showed in `outcome`.
fn fill_outcome(outcome: &mut StateOutcome, (violations, result, probe): Mounted) {
    outcome.violations = violations;
    match result {
        Ok(j) => {
            outcome.records_recovered = Some(j.records.len());
            outcome.truncated_tail = j.truncated_tail;
        }
        Err(e) => outcome.recovery_error = Some(e),
    }
    outcome.mid_log_probe = probe.map(|p| match p {
        MidLogProbe::Refused => "refused".to_string(),
        MidLogProbe::NotApplicable(why) => format!("not applicable: {why}"),
        MidLogProbe::Violated(v) => {
            outcome.violations.push(v);
            "violated".to_string()
        }
    });
}

fn keeper_of(config: &CheckConfig, log: &BlockLog) -> Option<Keeper> {
    let keep = config.keep_dir.as_deref()?;
    Some(Keeper::new(keep, log.path(), &log.hash_hex()))
}
