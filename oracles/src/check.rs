//! The driver behind `powercut run` and `powercut repro`: enumerate the crash states of a log,
//! build each image incrementally, mount it, run the engine's recovery and the invariants.
//!
//! Two workers (the machine has two cores; the mount is the bottleneck) each keep their own
//! prefix image that only moves forward and their own scratch image per state.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use powercut_workloads::ack::{Ack, AckLabelError};

use crate::blocklog::{BlockLog, LogError};
use crate::crash::{self, CrashState, EnumConfig, ResolveError, StateId, StateIdError, StateKind};
use crate::invariants::{
    self, check_mid_log_corruption, Expectation, InvariantConfig, MidLogProbe, ProbeError,
    RecoverFn, TailInfo, Violation,
};
use crate::keep::{self, Keeper};
use crate::mount::{self, FsType, MountError};
use crate::replay::{apply_entry, clone_image, ReplayError, Replayer};
use crate::report::Report;

/// Failing images kept per run by default.
pub const DEFAULT_MAX_KEPT_IMAGES: usize = 8;

/// Knobs of a check run.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// Stop starting new states after this long (the report says what was covered).
    pub budget: Option<Duration>,
    /// `(k, n)`: check only shard k of n (0-based).
    pub shard: Option<(u32, u32)>,
    pub max_exhaustive_subset: usize,
    pub samples_per_epoch: usize,
    pub torn_samples: usize,
    /// The device's atomic write size: tears split writes only at multiples of it.
    pub atomic_write_bytes: u64,
    /// Seed of sampled subsets and tears (printed in the report; ids carry the derived seeds).
    pub seed: u64,
    /// Failing images, the log and the ledger go here.
    pub keep_dir: Option<PathBuf>,
    /// Where images are built (default: a temporary directory). A reflink-capable file system
    /// (XFS, btrfs) makes each state a FICLONE instead of a copy.
    pub scratch_dir: Option<PathBuf>,
    pub workers: usize,
    pub invariants: InvariantConfig,
    /// Run the I5 probe on the last full-prefix state.
    pub mid_log_corruption: bool,
    /// Run the coverage check (every ack on its durable state) as well.
    pub coverage: bool,
    /// When the scratch directory cannot reflink, build images on a loop-mounted XFS scratch
    /// file system made for the run (FICLONE instead of a copy per state); falls back to copies
    /// if mkfs.xfs is missing or the mount fails.
    pub reflink_scratch: bool,
    /// Acks with a log entry index, for logs without MARKs (QEMU blklogwrites with in-band acks):
    /// an ack at index i is expected in every state whose cut is past i, so give the index of the
    /// entry after which the ack was made (its flush). None: the log's own MARK labels.
    pub acks: Option<Vec<(u64, Ack)>>,
    /// Failing states whose image is kept in `keep_dir`, per pass (the crash states, then the
    /// coverage check's): the others keep their outcome and ledger, and `powercut repro ID`
    /// rebuilds any image. A mutant can fail hundreds of states of a 64 MiB disk.
    pub max_kept_images: usize,
    /// Check only the first N entries of the log. A recording cut by killing the VM can end in
    /// entries whose header reached the log disk but whose data did not; only the entries up
    /// to the last mark the recorder waited for are known whole.
    pub max_entries: Option<u64>,
}

impl Default for CheckConfig {
    fn default() -> Self {
        let e = EnumConfig::default();
        CheckConfig {
            budget: None,
            shard: None,
            max_exhaustive_subset: e.max_exhaustive_subset,
            samples_per_epoch: e.samples_per_epoch,
            torn_samples: e.torn_samples,
            atomic_write_bytes: e.atomic_write_bytes,
            seed: 0,
            keep_dir: None,
            scratch_dir: None,
            workers: 2,
            invariants: InvariantConfig::default(),
            mid_log_corruption: true,
            coverage: true,
            reflink_scratch: true,
            acks: None,
            max_kept_images: DEFAULT_MAX_KEPT_IMAGES,
            max_entries: None,
        }
    }
}

impl CheckConfig {
    pub fn enum_config(&self) -> EnumConfig {
        EnumConfig {
            max_exhaustive_subset: self.max_exhaustive_subset,
            samples_per_epoch: self.samples_per_epoch,
            torn_samples: self.torn_samples,
            atomic_write_bytes: self.atomic_write_bytes,
            seed: self.seed,
        }
    }
}

/// Progress callback payload.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub states_done: u64,
    pub states_total: u64,
    pub violations: u64,
    pub elapsed: Duration,
}

/// Failures of the harness itself (not findings).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("ack ledger in the log: {0}")]
    Ledger(#[from] AckLabelError),
    #[error(transparent)]
    StateId(#[from] StateIdError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("mid-log corruption probe: {0}")]
    Probe(#[from] ProbeError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad shard {k}/{n}")]
    BadShard { k: u32, n: u32 },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckError {
    let path = path.to_path_buf();
    move |source| CheckError::Io { op, path, source }
}

/// What checking one state found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StateOutcome {
    pub state_id: String,
    pub kind: StateKind,
    pub violations: Vec<Violation>,
    pub records_recovered: Option<usize>,
    pub truncated_tail: Option<TailInfo>,
    pub recovery_error: Option<String>,
    /// I5 probe result, when it ran: "refused", "violated" or "not applicable: why".
    pub mid_log_probe: Option<String>,
    /// Where the failing image was kept.
    pub kept: Option<PathBuf>,
}

/// Builds the image of `state` into `out` from scratch (repro): copy `base`, replay the durable
/// prefix, apply the chosen entries.
pub fn build_state_image(
    log: &BlockLog,
    base: &Path,
    state: &CrashState,
    out: &Path,
) -> Result<(), ReplayError> {
    clone_image(base, out)?;
    let mut r = Replayer::new(log, out)?;
    r.advance_to(state.prefix_len)?;
    drop(r);
    apply_delta(log, state, out)
}

/// `powercut repro ID -o OUT` without mounting: parses the id, checks it belongs to the log, and
/// writes the crash image to `out`. Returns the resolved state.
pub fn rebuild_state(
    log_path: &Path,
    base_image: &Path,
    state_id: &str,
    out: &Path,
) -> Result<CrashState, CheckError> {
    let id: StateId = state_id.parse()?;
    let log = BlockLog::open(log_path)?;
    let state = crash::resolve(&log, &id)?;
    build_state_image(&log, base_image, &state, out)?;
    Ok(state)
}

/// Applies the entries of `state` beyond its durable prefix to `image`.
fn apply_delta(log: &BlockLog, state: &CrashState, image: &Path) -> Result<(), ReplayError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|source| ReplayError::Io {
            op: "open state image",
            path: image.to_path_buf(),
            offset: 0,
            source,
        })?;
    let len = f
        .metadata()
        .map_err(|source| ReplayError::Io {
            op: "stat state image",
            path: image.to_path_buf(),
            offset: 0,
            source,
        })?
        .len();
    let mut buf = Vec::new();
    for a in &state.applied {
        let e = &log.entries()[a.index as usize];
        apply_entry(log, e, &f, image, len, a.mask.as_deref(), &mut buf)?;
    }
    Ok(())
}

/// Shared context of a run over a list of states.
struct Run<'a> {
    log: &'a BlockLog,
    base: &'a Path,
    fs: FsType,
    seed: u64,
    acks: &'a [(u64, Ack)],
    cfg: &'a CheckConfig,
    recover: &'a RecoverFn,
    scratch: &'a Path,
    /// State index that gets the I5 probe.
    probe_index: Option<usize>,
    /// Failing images kept so far (at most `cfg.max_kept_images`).
    kept_images: AtomicUsize,
    /// Where failing states are kept (`cfg.keep_dir`), beside their log.
    keeper: Option<Keeper>,
}

impl Run<'_> {
    fn check_state(
        &self,
        state: &CrashState,
        image: &Path,
        mnt: &Path,
        probe: bool,
        work: &Path,
    ) -> Result<StateOutcome, CheckError> {
        let id = state.id.to_string();
        let acks = invariants::acks_before(self.acks, state.id.cut);
        let exp = Expectation {
            state_id: &id,
            seed: self.seed,
            acks: &acks,
            in_flight: self
                .acks
                .iter()
                .find(|(i, _)| *i >= state.id.cut)
                .map(|(_, a)| a),
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
        let mounted = mount::with_mounted(image, self.fs, mnt, |root| -> Result<_, CheckError> {
            let (violations, result) =
                invariants::check_mounted(&exp, root, &self.cfg.invariants, self.recover);
            let mut probe_result = None;
            if probe {
                if let Ok(j) = &result {
                    let journal = root.join(&self.cfg.invariants.journal_dir);
                    probe_result = Some(check_mid_log_corruption(
                        &exp,
                        &journal,
                        j,
                        self.recover,
                        work,
                    )?);
                }
            }
            Ok((violations, result, probe_result))
        });
        match mounted {
            Ok(inner) => {
                let (violations, result, probe_result) = inner?;
                outcome.violations = violations;
                match result {
                    Ok(j) => {
                        outcome.records_recovered = Some(j.records.len());
                        outcome.truncated_tail = j.truncated_tail;
                    }
                    Err(e) => outcome.recovery_error = Some(e),
                }
                outcome.mid_log_probe = probe_result.map(|p| match p {
                    MidLogProbe::Refused => "refused".to_string(),
                    MidLogProbe::NotApplicable(why) => format!("not applicable: {why}"),
                    MidLogProbe::Violated(v) => {
                        outcome.violations.push(v);
                        "violated".to_string()
                    }
                });
            }
            Err(MountError::Mount { source, .. }) => {
                // The file system did not survive the crash state: a finding, not a harness error.
                outcome.violations.push(Violation {
                    invariant: "MOUNT".into(),
                    state_id: id.clone(),
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
                outcome.kept = Some(self.keep(keeper, image, &outcome, &acks)?);
            }
        }
        Ok(outcome)
    }

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

    /// Checks `states` (sorted for replay) with the configured workers; stops at the budget.
    /// Returns the outcomes and whether the budget ran out.
    fn run(
        &self,
        states: &[CrashState],
        progress: &mut dyn FnMut(Progress),
        start: Instant,
    ) -> Result<(Vec<StateOutcome>, bool), CheckError> {
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
                    if let Err(e) = self.worker(w, states, next, exhausted, failed, start, &tx) {
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

    #[allow(clippy::too_many_arguments)]
    fn worker(
        &self,
        w: usize,
        states: &[CrashState],
        next: &AtomicUsize,
        exhausted: &AtomicBool,
        failed: &AtomicBool,
        start: Instant,
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
            if self.cfg.budget.is_some_and(|b| start.elapsed() >= b) {
                exhausted.store(true, Ordering::SeqCst);
                return Ok(());
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(state) = states.get(i) else {
                return Ok(());
            };
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
            clone_image(&prefix, &image)?;
            apply_delta(self.log, state, &image)?;
            let outcome =
                self.check_state(state, &image, &mnt, self.probe_index == Some(i), &dir)?;
            if tx.send(Ok(outcome)).is_err() {
                return Ok(());
            }
        }
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

/// The run's own directory under the scratch root, removed on drop (the crate keeps tempfile a
/// dev-dependency).
pub(crate) struct Scratch {
    pub(crate) path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub(crate) fn scratch(cfg: &CheckConfig) -> Result<Scratch, CheckError> {
    let root = cfg.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = root.join(format!(
        "powercut-check-{}-{}",
        std::process::id(),
        next_scratch_id()
    ));
    std::fs::create_dir_all(&path).map_err(io_err("create scratch directory", &path))?;
    Ok(Scratch { path })
}

/// Runs `f` on a scratch directory; on a reflink-capable file system when possible. Returns
/// `f`'s result and, when crash images are full copies instead of clones, why.
fn with_scratch<T>(
    cfg: &CheckConfig,
    image_bytes: u64,
    f: impl FnOnce(&Path) -> Result<T, CheckError>,
) -> Result<(T, Option<String>), CheckError> {
    let scratch = scratch(cfg)?;
    if crate::replay::reflink_supported(&scratch.path) {
        return Ok((f(&scratch.path)?, None));
    }
    if !cfg.reflink_scratch {
        let why = "the scratch directory cannot reflink and the XFS scratch is turned off";
        return Ok((f(&scratch.path)?, Some(why.to_string())));
    }
    let img = scratch.path.join("reflink-scratch.img");
    let why = match make_reflink_scratch(&img, cfg, image_bytes) {
        Ok(()) => {
            let mut f = Some(f);
            let mounted =
                mount::with_mounted(&img, FsType::Xfs, &scratch.path.join("reflink"), |root| {
                    f.take().map(|f| f(root))
                });
            match (mounted, f) {
                (Ok(Some(result)), _) => return Ok((result?, None)),
                (Err(e), Some(f)) => {
                    let why = format!("mounting the XFS scratch file system failed ({e})");
                    return Ok((f(&scratch.path)?, Some(why)));
                }
                // `f` ran on the XFS scratch but its unmount failed.
                _ => {
                    return Err(CheckError::Io {
                        op: "unmount reflink scratch",
                        path: scratch.path.clone(),
                        source: std::io::Error::other("unmount failed"),
                    })
                }
            }
        }
        Err(why) => why,
    };
    Ok((f(&scratch.path)?, Some(why)))
}

/// A sparse XFS image with reflink for the crash images: room for the prefix and state images
/// of every worker plus the kept copies. Err: why not.
fn make_reflink_scratch(img: &Path, cfg: &CheckConfig, image_bytes: u64) -> Result<(), String> {
    let size = image_bytes
        .saturating_mul(4 * cfg.workers.max(1) as u64 + 4)
        .max(1 << 30);
    std::fs::File::create(img)
        .and_then(|file| file.set_len(size))
        .map_err(|e| format!("creating the XFS scratch image failed ({e})"))?;
    let status = std::process::Command::new("mkfs.xfs")
        .args(["-q", "-f", "-m", "reflink=1"])
        .arg(img)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("mkfs.xfs failed ({s})")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("mkfs.xfs is not installed (apt-get install xfsprogs)".to_string())
        }
        Err(e) => Err(format!("mkfs.xfs could not run ({e})")),
    }
}

/// Splits `states` into those still to check and the outcomes of those equal to a state the
/// coverage pass checked (the same image and the same expected acks): that outcome counts for
/// them, under their own id.
fn split_by_coverage(
    states: &[CrashState],
    covered: &[(CrashState, StateOutcome)],
    acks: &[(u64, Ack)],
) -> (Vec<CrashState>, Vec<StateOutcome>) {
    let covered: HashMap<(u64, usize), &StateOutcome> = covered
        .iter()
        .map(|(state, outcome)| (equivalence(state, acks), outcome))
        .collect();
    let mut to_check = Vec::new();
    let mut reused = Vec::new();
    for state in states {
        match covered.get(&equivalence(state, acks)) {
            Some(outcome) => reused.push(StateOutcome {
                state_id: state.id.to_string(),
                kind: state.id.kind(),
                ..(*outcome).clone()
            }),
            None => to_check.push(state.clone()),
        }
    }
    (to_check, reused)
}

/// What decides a state's verdict: its image and how many acks it expects (the acks marked
/// before its cut; the one in flight follows from that).
fn equivalence(state: &CrashState, acks: &[(u64, Ack)]) -> (u64, usize) {
    let expected = acks.partition_point(|(mark, _)| *mark < state.id.cut);
    (state.image_key, expected)
}

/// The state that gets the I5 probe: the last full prefix of the log.
fn probe_state(config: &CheckConfig, states: &[CrashState], n_entries: u64) -> Option<usize> {
    if !config.mid_log_corruption {
        return None;
    }
    states
        .iter()
        .rposition(|s| s.id.cut == n_entries && s.id.kind() == StateKind::Prefix)
}

fn keeper_of(config: &CheckConfig, log: &BlockLog) -> Option<Keeper> {
    let keep = config.keep_dir.as_deref()?;
    Some(Keeper::new(keep, log.path(), &log.hash_hex()))
}

fn next_scratch_id() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Checks every crash state of `log_path` (or the configured shard) within the budget.
pub fn check_log(
    log_path: &Path,
    base_image: &Path,
    fs: FsType,
    seed: u64,
    config: &CheckConfig,
    recover: &RecoverFn,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, CheckError> {
    mount::can_mount()?;
    let start = Instant::now();
    let mut log = BlockLog::open(log_path)?;
    if let Some(n) = config.max_entries {
        log.keep_first_entries(n);
    }
    let acks = invariants::ledger(&log, config.acks.as_deref())?;
    let enumeration = crash::enumerate(&log, &config.enum_config());
    let mut states = enumeration.states;
    if let Some((k, n)) = config.shard {
        if n == 0 || k >= n {
            return Err(CheckError::BadShard { k, n });
        }
        states = crash::shard(states, k, n);
    }
    let n_entries = log.entries().len() as u64;
    let image_bytes = std::fs::metadata(base_image)
        .map_err(io_err("stat base image", base_image))?
        .len();
    let ((coverage, outcomes, exhausted, states_from_coverage), image_copies) =
        with_scratch(config, image_bytes, |scratch| {
            let (coverage, covered) = if config.coverage && config.shard.is_none_or(|(k, _)| k == 0)
            {
                let (report, outcomes) = crate::coverage::run_coverage(
                    &log, base_image, fs, seed, &acks, config, recover, scratch, start,
                )?;
                (Some(report), outcomes)
            } else {
                (None, Vec::new())
            };
            let (to_check, mut outcomes) = split_by_coverage(&states, &covered, &acks);
            let reused = outcomes.len() as u64;
            let run = Run {
                log: &log,
                base: base_image,
                fs,
                seed,
                acks: &acks,
                cfg: config,
                recover,
                scratch,
                probe_index: probe_state(config, &to_check, n_entries),
                kept_images: AtomicUsize::new(0),
                keeper: keeper_of(config, &log),
            };
            let (checked, exhausted) = run.run(&to_check, progress, start)?;
            outcomes.extend(checked);
            Ok((coverage, outcomes, exhausted, reused))
        })?;
    let elapsed = start.elapsed().as_secs_f64();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut probes = 0;
    for o in &outcomes {
        *by_kind.entry(o.kind.as_str().to_string()).or_insert(0) += 1;
        violations.extend(o.violations.iter().cloned());
        if o.mid_log_probe
            .as_deref()
            .is_some_and(|p| p == "refused" || p == "violated")
        {
            probes += 1;
        }
    }
    Ok(Report {
        seed,
        workload: workload_name(&acks),
        fs: fs.to_string(),
        log_hash: log.hash_hex(),
        enumeration_seed: config.seed,
        shard: config.shard.map(|(k, n)| format!("{k}/{n}")),
        states_total: states.len() as u64,
        states_checked: outcomes.len() as u64,
        duplicates_skipped: enumeration.duplicates,
        states_from_coverage,
        states_by_kind: by_kind,
        states_per_second: if elapsed > 0.0 {
            outcomes.len() as f64 / elapsed
        } else {
            0.0
        },
        elapsed_seconds: elapsed,
        mid_log_probes: probes,
        violations,
        coverage,
        budget_exhausted: exhausted,
        minimal_repro: None,
        image_copies,
    })
}

/// `powercut repro ID`: rebuilds the one state from scratch, mounts and checks it (with the I5
/// probe if `config.mid_log_corruption`). The image is kept in `config.keep_dir` on violation.
#[allow(clippy::too_many_arguments)]
pub fn check_one(
    state_id: &str,
    log_path: &Path,
    base_image: &Path,
    fs: FsType,
    seed: u64,
    config: &CheckConfig,
    recover: &RecoverFn,
) -> Result<StateOutcome, CheckError> {
    mount::can_mount()?;
    let id: StateId = state_id.parse()?;
    let log = BlockLog::open(log_path)?;
    let acks = invariants::ledger(&log, config.acks.as_deref())?;
    let state = crash::resolve(&log, &id)?;
    let scratch = scratch(config)?;
    let image = scratch.path.join("state.img");
    build_state_image(&log, base_image, &state, &image)?;
    let run = Run {
        log: &log,
        base: base_image,
        fs,
        seed,
        acks: &acks,
        cfg: config,
        recover,
        scratch: &scratch.path,
        probe_index: None,
        kept_images: AtomicUsize::new(0),
        keeper: keeper_of(config, &log),
    };
    run.check_state(
        &state,
        &image,
        &scratch.path.join("mnt"),
        config.mid_log_corruption,
        &scratch.path,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_states(
    log: &BlockLog,
    base: &Path,
    fs: FsType,
    seed: u64,
    acks: &[(u64, Ack)],
    cfg: &CheckConfig,
    recover: &RecoverFn,
    scratch: &Path,
    states: &[CrashState],
    start: Instant,
) -> Result<Vec<StateOutcome>, CheckError> {
    let run = Run {
        log,
        base,
        fs,
        seed,
        acks,
        cfg,
        recover,
        scratch,
        probe_index: None,
        kept_images: AtomicUsize::new(0),
        keeper: keeper_of(cfg, log),
    };
    let mut no_progress = |_: Progress| {};
    Ok(run.run(states, &mut no_progress, start)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklog::{LogWriter, FLAG_FUA};

    /// Every enumerated state, rebuilt from its printed id alone, equals the model: the durable
    /// prefix, then the FUA and chosen writes, the torn one only in its masked units.
    #[test]
    fn state_images_match_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = LogWriter::create(&p, 512).unwrap();
        for i in 0..14u64 {
            let data: Vec<u8> = (0..512 * (1 + i % 3)).map(|b| (b * 7 + i) as u8).collect();
            w.write((i * 5) % 40, &data, if i % 5 == 4 { FLAG_FUA } else { 0 })
                .unwrap();
            if i % 4 == 3 {
                w.flush().unwrap();
            }
            if i % 6 == 5 {
                w.mark("s:m").unwrap();
            }
        }
        w.finish(None, 0).unwrap();
        let log = BlockLog::open(&p).unwrap();
        let base = dir.path().join("base");
        std::fs::write(&base, vec![0xAAu8; 48 * 512]).unwrap();
        let en = crash::enumerate(
            &log,
            &EnumConfig {
                torn_samples: 3,
                atomic_write_bytes: 512,
                ..EnumConfig::default()
            },
        );
        assert!(en.states.len() > 30);
        let out = dir.path().join("state");
        for st in &en.states {
            let again = crash::resolve(&log, &st.id.to_string().parse().unwrap()).unwrap();
            build_state_image(&log, &base, &again, &out).unwrap();
            let mut model = vec![0xAAu8; 48 * 512];
            let mut put = |e: &crate::blocklog::Entry, mask: Option<&Vec<bool>>| {
                let data = log.read_data(e).unwrap();
                for u in 0..e.nr_sectors as usize {
                    if mask.is_none_or(|m| m[u]) {
                        let o = e.target_offset_bytes as usize + u * 512;
                        model[o..o + 512].copy_from_slice(&data[u * 512..(u + 1) * 512]);
                    }
                }
            };
            for e in &log.entries()[..st.prefix_len as usize] {
                if e.has_data() {
                    put(e, None);
                }
            }
            for a in &st.applied {
                put(&log.entries()[a.index as usize], a.mask.as_ref());
            }
            assert_eq!(std::fs::read(&out).unwrap(), model, "state {}", st.id);
            let via_path = dir.path().join("rebuilt");
            rebuild_state(&p, &base, &st.id.to_string(), &via_path).unwrap();
            assert_eq!(std::fs::read(&via_path).unwrap(), model);
        }
        assert!(matches!(
            rebuild_state(&p, &base, "00000000-c1-p", &out),
            Err(CheckError::Resolve(_))
        ));
        assert!(matches!(
            rebuild_state(&p, &base, "nonsense", &out),
            Err(CheckError::StateId(_))
        ));
    }
}
