//! Runs a workload against a directory: the journal in `root/journal`, file operations under
//! `root/files`.
//!
//! Every acknowledgement goes to an [`AckSink`] right after the engine's call returns and before
//! anything else happens, so the guest agent can write a dm-log-writes MARK that is ordered
//! after every write the ack depends on and before every write that follows it.
//!
//! Determinism: record sizes come from a ChaCha8 stream of the workload seed (stream 0 for the
//! main appender, one stream per ingest client), payloads from `payload::derive(seed, writer,
//! sequence, len)` and file contents from (seed, path, step index). With one writer at a time
//! the same seed gives the same acks; concurrent ingest clients race for LSNs, so only the set
//! of records is reproducible there, not their order.
//!
//! The ingest server opens the journal itself, so an ingest step closes the main journal, lets
//! the server open it (checking its recovery as a reopen does), serves the clients from the
//! server's journal and takes that journal back when the server stops.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use powercut_writer::server::{ClientError, ServeOptions, ServerError, ServerHandle};
use powercut_writer::{Journal, JournalError, OpenReport, Recovery};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ack::Ack;
use crate::payload;
use crate::spec::{
    FaultSpec, FileOp, IngestStep, SizeRange, SpecError, Step, Workload, AFTER_CRASH_WRITER_BASE,
};

/// Writer id of the main appender; ingest clients are 1..=clients.
pub const MAIN_WRITER: u32 = 0;

/// Receives acks (and progress) from [`execute`]. Called from several threads during ingest
/// steps.
pub trait AckSink: Sync {
    /// Records one ack. An error stops the run: an ack that cannot be recorded is worthless.
    fn ack(&self, ack: &Ack) -> Result<(), String>;

    /// Reports progress; the default ignores it.
    fn progress(&self, event: &ProgressEvent) {
        let _ = event;
    }

    /// Reports an ack of the first run that the state after a crash breaks (see
    /// [`continue_after_crash`]), before the after-crash steps run; the default ignores it.
    fn prior_violation(&self, violation: &PriorViolation) {
        let _ = violation;
    }

    /// Arms or clears an injected I/O fault (a `fault:` or `clear_fault:` step). Only the guest
    /// agent can swap the device under the file system; the default refuses.
    fn fault(&self, action: &FaultAction) -> Result<(), String> {
        let _ = action;
        Err(
            "fault steps need the guest agent (device-mapper under the file system); \
             run the workload with `powercut run`"
                .into(),
        )
    }

    /// Reports a finding of the run itself (invariant I7 after an injected fault); the
    /// default ignores it. The run goes on.
    fn finding(&self, finding: &PriorViolation) {
        let _ = finding;
    }
}

/// What a `fault:` or `clear_fault:` step asks of the [`AckSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Make I/O to `target` fail with EIO from now on.
    Arm {
        /// The step's fault.
        fault: FaultSpec,
        /// The journal directory, whose segment files a [`crate::spec::FaultTarget::Journal`] covers.
        journal_dir: PathBuf,
    },
    /// Undo the armed fault.
    Clear,
}

/// Progress of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    /// Index of the step (0-based).
    pub step_index: usize,
    /// Number of steps of the workload.
    pub steps_total: usize,
    /// Acks emitted so far, start ack included.
    pub acks_so_far: u64,
    /// Acks a complete run emits.
    pub acks_total: u64,
    /// false when the step starts, true when it is done.
    pub finished: bool,
    /// What the step does.
    pub description: String,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionSummary {
    /// Acks emitted, start and end included.
    pub acks: u64,
    /// Records appended (and acknowledged).
    pub records: u64,
    /// Payload bytes of those records.
    pub record_bytes: u64,
    /// File operations done (acked or not).
    pub file_ops: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// One line per journal open: io path, O_DIRECT or not, alignment, durability.
    pub open_reports: Vec<String>,
    /// Records appended while a fault was armed whose append or commit failed (never acked).
    pub records_failed: u64,
    /// Calls the poisoned journal refused with `Poisoned`, as it must after a failed write.
    pub poisoned_refusals: u64,
    /// Invariant I7 findings (also sent to [`AckSink::finding`]).
    pub findings: Vec<PriorViolation>,
}

/// Where in a run something failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Creating the directories and opening the journal.
    Setup,
    /// A step of the workload.
    Step {
        /// 0-based index.
        index: usize,
        /// Its key (`append`, `file`, ...).
        kind: &'static str,
    },
    /// Closing the journal at the end.
    Finish,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Setup => f.write_str("setup"),
            Phase::Step { index, kind } => write!(f, "steps[{index}] ({kind})"),
            Phase::Finish => f.write_str("finish"),
        }
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The workload breaks a rule of the spec.
    #[error("invalid workload: {0}")]
    InvalidWorkload(#[from] SpecError),
    /// A file or directory operation failed.
    #[error("{phase}: {op} {}: {source}", path.display())]
    File {
        /// Where.
        phase: Phase,
        /// The operation (create, write, fsync, rename, ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The root holds a journal already: a run starts from nothing.
    #[error("{}: not empty; a run starts from an empty journal directory", path.display())]
    NotEmpty {
        /// The journal directory.
        path: PathBuf,
    },
    /// The engine returned an error.
    #[error("{phase}: journal {op}: {source}")]
    Journal {
        /// Where.
        phase: Phase,
        /// The call (open, append, commit, ...).
        op: &'static str,
        /// The engine's error.
        #[source]
        source: JournalError,
    },
    /// The ingest server could not start.
    #[error("{phase}: start the ingest server: {source}")]
    Server {
        /// Where.
        phase: Phase,
        /// The server's error.
        #[source]
        source: ServerError,
    },
    /// An ingest client failed.
    #[error("{phase}: ingest client {client}, record {sequence}: {source}")]
    Client {
        /// Where.
        phase: Phase,
        /// Writer id of the client.
        client: u32,
        /// Sequence number of the record it was sending.
        sequence: u64,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// The engine answered something its contract rules out (LSNs out of order, a commit
    /// that does not cover the appended records, a record larger than it accepts).
    #[error("{phase}: engine contract broken: {message}")]
    Contract {
        /// Where.
        phase: Phase,
        /// What was seen.
        message: String,
    },
    /// A reopen recovered something other than exactly the acknowledged records.
    #[error("{phase}: recovery disagrees with the acks: {message}")]
    RecoveryMismatch {
        /// Where.
        phase: Phase,
        /// The first difference.
        message: String,
    },
    /// The sink could not arm or clear a fault.
    #[error("{phase}: fault injection: {message}")]
    Fault {
        /// Where.
        phase: Phase,
        /// The sink's error.
        message: String,
    },
    /// The sink refused an ack.
    #[error("{phase}: recording ack {label} failed: {message}")]
    Sink {
        /// Where.
        phase: Phase,
        /// The ack's label.
        label: String,
        /// The sink's error.
        message: String,
    },
}

/// Identity of a durable record, kept to check a reopen's recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordIdentity {
    writer: u32,
    sequence: u64,
    len_bytes: usize,
    crc32c: u32,
}

/// State shared with ingest client threads.
struct Shared<'a> {
    workload: &'a Workload,
    sink: &'a dyn AckSink,
    /// LSN -> what was acknowledged there.
    ledger: Mutex<BTreeMap<u64, RecordIdentity>>,
    acks: std::sync::atomic::AtomicU64,
    /// Largest `before_lsn` of a `retire` step's ack (0: nothing retired): records below it
    /// may be gone from a recovery.
    retired_before: std::sync::atomic::AtomicU64,
}

impl<'a> Shared<'a> {
    fn new(workload: &'a Workload, sink: &'a dyn AckSink) -> Self {
        Shared {
            workload,
            sink,
            ledger: Mutex::new(BTreeMap::new()),
            acks: std::sync::atomic::AtomicU64::new(0),
            retired_before: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn ack(&self, phase: &Phase, ack: &Ack) -> Result<(), ExecError> {
        self.sink.ack(ack).map_err(|message| ExecError::Sink {
            phase: phase.clone(),
            label: ack.to_label(),
            message,
        })?;
        self.acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn acks(&self) -> u64 {
        self.acks.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn record(&self, lsn: u64, identity: RecordIdentity) {
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lsn, identity);
    }
}

/// Runs `workload` under `root` (created if missing; its `journal` directory must be absent or
/// empty), sending every ack to `sink`.
pub fn execute(
    workload: &Workload,
    root: &Path,
    sink: &dyn AckSink,
) -> Result<ExecutionSummary, ExecError> {
    workload.validate()?;
    let started = Instant::now();
    let shared = Shared::new(workload, sink);
    let mut run = Run::new(&shared, root, workload.steps.clone(), MAIN_WRITER, 0);
    run.setup()?;
    run.run_steps(&shared, sink, started)
}

/// RNG stream of the record sizes after a crash (stream 0 is the first run's appender).
const AFTER_CRASH_RNG_STREAM: u64 = 0x00AF_7E2C;

/// Something the run after a crash found wrong with what the first run acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PriorViolation {
    /// The invariant that failed on the recovered journal (I1, I2, I3, I4, I6).
    pub invariant: String,
    /// Label of the ack concerned, if one.
    pub step: Option<String>,
    pub expected: String,
    pub found: String,
}

/// What [`continue_after_crash`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuationSummary {
    /// Records the engine's recovery returned on the crash image.
    pub recovered_records: u64,
    /// The recovery's torn tail, as text.
    pub truncated_tail: Option<String>,
    /// Acks of the first run that the recovered state breaks (empty: all held).
    pub prior_violations: Vec<PriorViolation>,
    /// The after-crash steps; `None` when the journal could not be opened at all.
    pub execution: Option<ExecutionSummary>,
}

/// The run after a power cut (invariant I8): opens the journal that `root` holds (the engine's
/// recovery), checks that every record and file in `prior_acks` (the first run's acks) is
/// there byte for byte, then runs [`Workload::after_crash_steps`] with payload writer ids from
/// [`AFTER_CRASH_WRITER_BASE`], LSNs continuing after the recovered ones, every ack going to
/// `sink`. Broken prior acks are returned, not errors, so the caller can report them and still
/// finish cleanly; if the journal does not open, the steps are skipped.
pub fn continue_after_crash(
    workload: &Workload,
    root: &Path,
    prior_acks: &[Ack],
    sink: &dyn AckSink,
) -> Result<ContinuationSummary, ExecError> {
    workload.validate()?;
    let started = Instant::now();
    let shared = Shared::new(workload, sink);
    let mut run = Run::new(
        &shared,
        root,
        workload.after_crash_steps(),
        AFTER_CRASH_WRITER_BASE,
        AFTER_CRASH_RNG_STREAM,
    );
    run.create_dirs(false)?;
    let (journal, report, recovery) = match open_collecting(&run.journal_dir, workload) {
        Ok(opened) => opened,
        Err(e) => {
            let violation = PriorViolation {
                invariant: "I4".into(),
                step: None,
                expected: "the journal of the crash image opens (recovery succeeds)".into(),
                found: format!("open failed: {e}"),
            };
            sink.prior_violation(&violation);
            return Ok(ContinuationSummary {
                recovered_records: 0,
                truncated_tail: None,
                prior_violations: vec![violation],
                execution: None,
            });
        }
    };
    run.check_record_limit(&Phase::Setup, journal.max_payload_bytes())?;
    run.summary.open_reports.push(describe_open(&report));
    run.journal = Some(journal);
    let recovery = &recovery;
    let mut violations = check_prior_records(workload.seed, prior_acks, recovery);
    let expected_files = prior_file_expectations(prior_acks);
    violations.extend(check_prior_files(&run.files_dir, &expected_files));
    for violation in &violations {
        sink.prior_violation(violation);
    }
    // The recovered records are the ledger a later reopen is checked against.
    for record in &recovery.records {
        let origin = payload::verify(workload.seed, &record.payload).ok();
        shared.record(
            record.lsn,
            RecordIdentity {
                writer: origin.map_or(u32::MAX, |o| o.writer),
                sequence: origin.map_or(0, |o| o.sequence),
                len_bytes: record.payload.len(),
                crc32c: crc32c::crc32c(&record.payload),
            },
        );
    }
    run.next_lsn = recovery.records.last().map_or(1, |r| r.lsn + 1);
    for (path, expect) in expected_files {
        if let Some(crc) = expect {
            run.file_crcs.insert(path, crc);
        }
    }
    let summary = run.run_steps(&shared, sink, started)?;
    Ok(ContinuationSummary {
        recovered_records: recovery.records.len() as u64,
        truncated_tail: recovery.truncated_tail.map(|t| format!("{t:?}")),
        prior_violations: violations,
        execution: Some(summary),
    })
}

/// Opens the journal of `workload` in `dir`, collecting the records its recovery streams by
/// (workload journals are small; the engine itself keeps none of them).
fn open_collecting(
    dir: &Path,
    workload: &Workload,
) -> Result<(Journal, OpenReport, Recovery), JournalError> {
    let mut records = Vec::new();
    let (journal, report) = Journal::open_visiting(dir, workload.journal_options(), &mut |r| {
        records.push(r.to_record())
    })?;
    let recovery = Recovery::new(report.recovery.clone(), records);
    Ok((journal, report, recovery))
}

/// I1 (every acked record, byte for byte), I2 (LSNs exactly 1..n, n at least the last acked)
/// and I3 (every payload derived from the seed) on a recovery.
pub fn check_prior_records(
    seed: u64,
    prior_acks: &[Ack],
    recovery: &powercut_writer::Recovery,
) -> Vec<PriorViolation> {
    let mut out = Vec::new();
    let by_lsn: BTreeMap<u64, &[u8]> = recovery
        .records
        .iter()
        .map(|r| (r.lsn, r.payload.as_slice()))
        .collect();
    // Records below the first recovered LSN may be gone when a retire allowed it.
    let retired_before = crate::ack::retired_before(prior_acks).unwrap_or(1);
    let first_lsn = recovery
        .records
        .first()
        .map_or(1, |r| r.lsn)
        .min(retired_before);
    for ack in prior_acks {
        let Ack::Records {
            first_lsn: ack_first,
            last_lsn,
            crc32c,
        } = ack
        else {
            continue;
        };
        if *last_lsn < first_lsn {
            continue;
        }
        let expected = format!("records {ack_first}..={last_lsn} with crc32c {crc32c:08x}");
        // A group cut by a retired segment is checked from the first LSN still required.
        let from = (*ack_first).max(first_lsn);
        let mut crc = 0u32;
        let mut missing = Vec::new();
        for lsn in from..=(*last_lsn).min(from.saturating_add(1 << 20)) {
            match by_lsn.get(&lsn) {
                Some(p) => crc = crc32c::crc32c_append(crc, p),
                None => missing.push(lsn),
            }
        }
        let found = if let Some(first) = missing.first() {
            Some(format!("missing LSN {first} ({} missing)", missing.len()))
        } else if from == *ack_first && crc != *crc32c {
            Some(format!("recovered bytes have crc32c {crc:08x}"))
        } else {
            None
        };
        if let Some(found) = found {
            out.push(PriorViolation {
                invariant: "I1".into(),
                step: Some(ack.to_label()),
                expected,
                found,
            });
        }
    }
    if let Some((position, record)) = recovery
        .records
        .iter()
        .enumerate()
        .find(|(i, r)| r.lsn != first_lsn + *i as u64)
    {
        out.push(PriorViolation {
            invariant: "I2".into(),
            step: None,
            expected: format!("LSN {} at position {position}", first_lsn + position as u64),
            found: format!("LSN {}", record.lsn),
        });
    }
    for record in &recovery.records {
        if let Err(why) = payload::verify(seed, &record.payload) {
            out.push(PriorViolation {
                invariant: "I3".into(),
                step: None,
                expected: "every recovered payload derived from the workload seed".into(),
                found: format!("LSN {}: {why}", record.lsn),
            });
            break;
        }
    }
    out
}

/// Path -> crc32c the file must have (`None`: it must be absent), after the file acks in order.
fn prior_file_expectations(prior_acks: &[Ack]) -> BTreeMap<String, Option<u32>> {
    let mut out = BTreeMap::new();
    for ack in prior_acks {
        match ack {
            Ack::FileCreate { path, crc32c } => {
                out.insert(path.clone(), Some(*crc32c));
            }
            Ack::FileRename { from, to, crc32c } => {
                out.insert(from.clone(), None);
                out.insert(to.clone(), Some(*crc32c));
            }
            Ack::FileRemove { path } => {
                out.insert(path.clone(), None);
            }
            _ => {}
        }
    }
    out
}

/// I6 on the files of the first run.
fn check_prior_files(
    files_dir: &Path,
    expected: &BTreeMap<String, Option<u32>>,
) -> Vec<PriorViolation> {
    let mut out = Vec::new();
    for (path, want) in expected {
        let full = files_dir.join(path);
        let found = match (want, fs::read(&full)) {
            (Some(crc), Ok(bytes)) => {
                let got = crc32c::crc32c(&bytes);
                (got != *crc).then(|| format!("{path} has crc32c {got:08x}"))
            }
            (Some(_), Err(e)) => Some(format!("{path}: {e}")),
            (None, Ok(_)) => Some(format!("{path} exists")),
            (None, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
            (None, Err(e)) => Some(format!("{path}: {e}")),
        };
        if let Some(found) = found {
            out.push(PriorViolation {
                invariant: "I6".into(),
                step: None,
                expected: match want {
                    Some(crc) => format!("{path} exists with crc32c {crc:08x}"),
                    None => format!("{path} is absent"),
                },
                found,
            });
        }
    }
    out
}

struct Run<'a, 's> {
    shared: &'s Shared<'a>,
    root: PathBuf,
    journal_dir: PathBuf,
    files_dir: PathBuf,
    journal: Option<Journal>,
    main_rng: ChaCha8Rng,
    /// The steps this run does (the workload's, or its after-crash steps).
    steps: Vec<Step>,
    /// Payload writer id of the main appender; ingest clients follow it.
    writer_base: u32,
    /// Next payload sequence per writer.
    next_sequence: BTreeMap<u32, u64>,
    /// LSN the next record must get (all writers).
    next_lsn: u64,
    /// crc32c of each existing file's contents, by path under `files`.
    file_crcs: BTreeMap<String, u32>,
    /// A fault is armed, and the steps left before it clears itself (if it does).
    fault: Option<Option<u64>>,
    /// A call failed under a fault: the journal must refuse everything until reopened.
    poisoned: bool,
    /// Records acknowledged before the first failure of the current poisoning (I7 checks the
    /// reopen recovers them all).
    acked_before_fault: usize,
    summary: ExecutionSummary,
}

impl<'a, 's> Run<'a, 's> {
    fn new(
        shared: &'s Shared<'a>,
        root: &Path,
        steps: Vec<Step>,
        writer_base: u32,
        rng_stream: u64,
    ) -> Self {
        let mut main_rng = ChaCha8Rng::seed_from_u64(shared.workload.seed);
        main_rng.set_stream(rng_stream);
        Run {
            shared,
            root: root.to_path_buf(),
            journal_dir: root.join("journal"),
            files_dir: root.join("files"),
            journal: None,
            main_rng,
            steps,
            writer_base,
            next_sequence: BTreeMap::new(),
            next_lsn: 1,
            file_crcs: BTreeMap::new(),
            fault: None,
            poisoned: false,
            acked_before_fault: 0,
            summary: ExecutionSummary {
                acks: 0,
                records: 0,
                record_bytes: 0,
                file_ops: 0,
                elapsed: Duration::ZERO,
                open_reports: Vec::new(),
                records_failed: 0,
                poisoned_refusals: 0,
                findings: Vec::new(),
            },
        }
    }

    /// Start ack, the steps, close, end ack.
    fn run_steps(
        mut self,
        shared: &Shared<'_>,
        sink: &dyn AckSink,
        started: Instant,
    ) -> Result<ExecutionSummary, ExecError> {
        let workload = shared.workload;
        shared.ack(
            &Phase::Setup,
            &Ack::Start {
                name: workload.name.clone(),
            },
        )?;
        let steps = std::mem::take(&mut self.steps);
        let steps_total = steps.len();
        let acks_total = 2 + steps.iter().map(Step::acks).sum::<u64>();
        for (index, step) in steps.iter().enumerate() {
            let phase = Phase::Step {
                index,
                kind: step.kind(),
            };
            let event = |finished| ProgressEvent {
                step_index: index,
                steps_total,
                acks_so_far: shared.acks(),
                acks_total,
                finished,
                description: step.describe(),
            };
            sink.progress(&event(false));
            self.step(index, step, &phase)?;
            if !matches!(step, Step::Fault(_)) {
                self.count_down_fault(&phase)?;
            }
            sink.progress(&event(true));
        }
        self.steps = steps;
        let journal = self.journal.take().ok_or_else(|| ExecError::Contract {
            phase: Phase::Finish,
            message: "no journal open at the end".into(),
        })?;
        match journal.close() {
            // A journal poisoned by a fault and never reopened refuses its close too.
            Err(JournalError::Poisoned) if self.poisoned => {}
            result => result.map_err(|source| ExecError::Journal {
                phase: Phase::Finish,
                op: "close",
                source,
            })?,
        }
        shared.ack(
            &Phase::Finish,
            &Ack::End {
                name: workload.name.clone(),
            },
        )?;
        self.summary.acks = shared.acks();
        self.summary.elapsed = started.elapsed();
        Ok(self.summary)
    }

    fn setup(&mut self) -> Result<(), ExecError> {
        self.create_dirs(true)?;
        self.open_journal(&Phase::Setup).map(|_| ())
    }

    /// Creates the root, `journal` and `files` (fsyncing each new name). `fresh`: the journal
    /// directory must be absent or empty (a run from nothing).
    fn create_dirs(&mut self, fresh: bool) -> Result<(), ExecError> {
        let phase = Phase::Setup;
        let file_err = |op, path: &Path| {
            let phase = phase.clone();
            let path = path.to_path_buf();
            move |source| ExecError::File {
                phase,
                op,
                path,
                source,
            }
        };
        fs::create_dir_all(&self.root).map_err(file_err("create directory", &self.root))?;
        // The root's own name must be durable too (callers often create it just before).
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent).map_err(file_err("fsync directory", parent))?;
        }
        for dir in [&self.journal_dir, &self.files_dir] {
            match fs::read_dir(dir) {
                Ok(mut entries) => {
                    if fresh && dir == &self.journal_dir && entries.next().is_some() {
                        return Err(ExecError::NotEmpty { path: dir.clone() });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    fs::create_dir(dir).map_err(file_err("create directory", dir))?;
                }
                Err(e) => return Err(file_err("read directory", dir)(e)),
            }
            fsync_dir(dir).map_err(file_err("fsync directory", dir))?;
        }
        fsync_dir(&self.root).map_err(file_err("fsync directory", &self.root))?;
        Ok(())
    }

    /// Opens the journal; returns what its recovery found, records included.
    fn open_journal(&mut self, phase: &Phase) -> Result<Recovery, ExecError> {
        let (journal, report, recovery) = open_collecting(&self.journal_dir, self.shared.workload)
            .map_err(|source| ExecError::Journal {
                phase: phase.clone(),
                op: "open",
                source,
            })?;
        self.check_record_limit(phase, journal.max_payload_bytes())?;
        self.summary.open_reports.push(describe_open(&report));
        self.journal = Some(journal);
        Ok(recovery)
    }

    fn check_record_limit(&self, phase: &Phase, limit: usize) -> Result<(), ExecError> {
        let largest = self
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Append(a) => Some(a.size.max_bytes),
                Step::Ingest(i) => Some(i.size.max_bytes),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        if usize::try_from(largest).map_or(true, |l| l > limit) {
            return Err(ExecError::Contract {
                phase: phase.clone(),
                message: format!(
                    "the journal accepts records of at most {limit} bytes, the workload has \
                     {largest}: raise writer.max_staging_bytes or segment_bytes"
                ),
            });
        }
        Ok(())
    }

    fn journal(&self, phase: &Phase) -> Result<&Journal, ExecError> {
        self.journal.as_ref().ok_or_else(|| ExecError::Contract {
            phase: phase.clone(),
            message: "no journal open".into(),
        })
    }

    fn step(&mut self, index: usize, step: &Step, phase: &Phase) -> Result<(), ExecError> {
        match step {
            Step::Append(a) => self.append(phase, a.count, a.size, a.commit_every),
            Step::Rotate => match self.journal(phase)?.rotate() {
                Ok(()) if self.poisoned => {
                    self.accepted_while_poisoned(phase, "rotate");
                    Ok(())
                }
                Ok(()) => Ok(()),
                Err(source) => self.failed_under_fault(phase, "rotate", source, 0),
            },
            Step::Retire => self.retire(phase),
            Step::Fault(fault) => {
                self.shared
                    .sink
                    .fault(&FaultAction::Arm {
                        fault: fault.clone(),
                        journal_dir: self.journal_dir.clone(),
                    })
                    .map_err(|message| ExecError::Fault {
                        phase: phase.clone(),
                        message,
                    })?;
                self.fault = Some(fault.clear_after_steps);
                Ok(())
            }
            Step::ClearFault => self.clear_fault(phase),
            Step::Reopen => self.reopen(phase),
            Step::File(op) => self.file_op(index, op, phase),
            Step::Ingest(i) => self.ingest(index, i, phase),
        }
    }

    fn next_sequence(&mut self, writer: u32) -> u64 {
        let next = self.next_sequence.entry(writer).or_insert(1);
        let sequence = *next;
        *next += 1;
        sequence
    }

    fn append(
        &mut self,
        phase: &Phase,
        count: u64,
        size: SizeRange,
        commit_every: u64,
    ) -> Result<(), ExecError> {
        let mut remaining = count;
        while remaining > 0 {
            let group = remaining.min(commit_every);
            remaining -= group;
            let first_lsn = self.next_lsn;
            let mut crc = 0u32;
            let mut identities = Vec::new();
            let mut last_lsn = 0;
            for _ in 0..group {
                let len_bytes = draw_size(&mut self.main_rng, size);
                let writer = self.writer_base + MAIN_WRITER;
                let sequence = self.next_sequence(writer);
                let bytes = payload::derive(self.shared.workload.seed, writer, sequence, len_bytes);
                let journal = self.journal(phase)?;
                let (op, result) = if commit_every == 1 {
                    ("append_durable", journal.append_durable(&bytes))
                } else {
                    ("append", journal.append(&bytes))
                };
                let lsn = match result {
                    Ok(_) if self.poisoned => {
                        self.accepted_while_poisoned(phase, op);
                        return Ok(());
                    }
                    Ok(lsn) => lsn,
                    Err(source) => {
                        self.uncount(&identities);
                        let unacked = identities.len() as u64 + 1;
                        return self.failed_under_fault(phase, op, source, unacked);
                    }
                };
                if commit_every == 1 {
                    // Acknowledged durable: the sink goes first, checks after.
                    let record_crc = crc32c::crc32c(&bytes);
                    self.shared.ack(
                        phase,
                        &Ack::Records {
                            first_lsn: lsn,
                            last_lsn: lsn,
                            crc32c: record_crc,
                        },
                    )?;
                }
                if lsn != self.next_lsn {
                    return Err(ExecError::Contract {
                        phase: phase.clone(),
                        message: format!("record got LSN {lsn}, expected {}", self.next_lsn),
                    });
                }
                self.next_lsn += 1;
                last_lsn = lsn;
                crc = crc32c::crc32c_append(crc, &bytes);
                identities.push((
                    lsn,
                    RecordIdentity {
                        writer,
                        sequence,
                        len_bytes,
                        crc32c: crc32c::crc32c(&bytes),
                    },
                ));
                self.summary.records += 1;
                self.summary.record_bytes += len_bytes as u64;
            }
            if commit_every > 1 {
                let durable = match self.journal(phase)?.commit() {
                    Ok(_) if self.poisoned => {
                        self.accepted_while_poisoned(phase, "commit");
                        return Ok(());
                    }
                    Ok(durable) => durable,
                    Err(source) => {
                        self.uncount(&identities);
                        return self.failed_under_fault(phase, "commit", source, group);
                    }
                };
                self.shared.ack(
                    phase,
                    &Ack::Records {
                        first_lsn,
                        last_lsn,
                        crc32c: crc,
                    },
                )?;
                if durable < last_lsn {
                    return Err(ExecError::Contract {
                        phase: phase.clone(),
                        message: format!(
                            "commit returned durable LSN {durable} below the last appended {last_lsn}"
                        ),
                    });
                }
            }
            for (lsn, identity) in identities {
                self.shared.record(lsn, identity);
            }
        }
        Ok(())
    }

    /// A checkpoint: every record so far is acknowledged, so every sealed segment can go.
    fn retire(&mut self, phase: &Phase) -> Result<(), ExecError> {
        let before_lsn = self.next_lsn;
        match self.journal(phase)?.retire_before(before_lsn) {
            Ok(_) if self.poisoned => {
                self.accepted_while_poisoned(phase, "retire_before");
                Ok(())
            }
            Ok(_) => {
                self.shared
                    .retired_before
                    .fetch_max(before_lsn, std::sync::atomic::Ordering::SeqCst);
                self.summary.acks += 1;
                self.shared.ack(phase, &Ack::Retired { before_lsn })
            }
            Err(source) => self.failed_under_fault(phase, "retire_before", source, 0),
        }
    }

    /// Drops from the ledger the records a recovery no longer holds because their segments were
    /// retired; fails if the recovery starts later than any retire allowed.
    fn forget_retired(
        &self,
        ledger: &mut BTreeMap<u64, RecordIdentity>,
        recovery: &powercut_writer::Recovery,
    ) -> Result<(), String> {
        let retired_before = self
            .shared
            .retired_before
            .load(std::sync::atomic::Ordering::SeqCst);
        let Some(first) = recovery.records.first().map(|r| r.lsn) else {
            return Ok(());
        };
        if first > 1 && first > retired_before {
            return Err(format!(
                "the recovered log starts at LSN {first}, but only records below {} were retired",
                retired_before.max(1)
            ));
        }
        ledger.retain(|&lsn, _| lsn >= first);
        Ok(())
    }

    fn reopen(&mut self, phase: &Phase) -> Result<(), ExecError> {
        let journal = self.journal.take().ok_or_else(|| ExecError::Contract {
            phase: phase.clone(),
            message: "no journal open".into(),
        })?;
        let closed = journal.close();
        // A journal poisoned by a fault may refuse its close; the reopen is what recovers it.
        if !self.poisoned {
            closed.map_err(|source| ExecError::Journal {
                phase: phase.clone(),
                op: "close",
                source,
            })?;
        }
        let recovery = self.open_journal(phase)?;
        if self.poisoned {
            self.check_recovery_after_fault(phase, &recovery);
            self.poisoned = false;
            Ok(())
        } else {
            self.check_recovery(phase, &recovery)
        }
    }

    /// An engine call failed. With a fault armed this is the injected EIO: the records of the
    /// call are not acknowledged, and the journal must refuse the next call with `Poisoned`
    /// (I7). On a journal already poisoned, `Poisoned` is the expected answer. Anything else
    /// is an error of the run, as without faults.
    fn failed_under_fault(
        &mut self,
        phase: &Phase,
        op: &'static str,
        source: JournalError,
        unacked_records: u64,
    ) -> Result<(), ExecError> {
        if self.poisoned {
            if matches!(source, JournalError::Poisoned) {
                self.summary.poisoned_refusals += 1;
            } else {
                self.find(
                    phase,
                    format!("{op} on the poisoned journal refused with Poisoned until a reopen"),
                    format!("{op} failed with another error: {source}"),
                );
            }
            return Ok(());
        }
        if self.fault.is_none() {
            return Err(ExecError::Journal {
                phase: phase.clone(),
                op,
                source,
            });
        }
        self.poisoned = true;
        self.acked_before_fault = self
            .shared
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        self.summary.records_failed += unacked_records;
        // The very next call must be refused, whatever it is.
        let writer = self.writer_base + MAIN_WRITER;
        let sequence = self.next_sequence(writer);
        let probe = payload::derive(
            self.shared.workload.seed,
            writer,
            sequence,
            payload::PAYLOAD_HEADER_BYTES + 40,
        );
        match self.journal(phase)?.append(&probe) {
            Err(JournalError::Poisoned) => self.summary.poisoned_refusals += 1,
            Ok(lsn) => self.find(
                phase,
                format!("the append after a failed {op} ({source}) refused with Poisoned"),
                format!("accepted as LSN {lsn}"),
            ),
            Err(other) => self.find(
                phase,
                format!("the append after a failed {op} ({source}) refused with Poisoned"),
                format!("failed with another error: {other}"),
            ),
        }
        Ok(())
    }

    /// Takes records of a group that was never acknowledged out of the summary's counts.
    fn uncount(&mut self, group: &[(u64, RecordIdentity)]) {
        self.summary.records -= group.len() as u64;
        self.summary.record_bytes -= group.iter().map(|(_, i)| i.len_bytes as u64).sum::<u64>();
    }

    /// A call succeeded on a journal that a failed write poisoned and nothing reopened.
    fn accepted_while_poisoned(&mut self, phase: &Phase, op: &str) {
        self.find(
            phase,
            format!("{op} refused with Poisoned: an earlier write failed and no reopen followed"),
            format!("{op} succeeded"),
        );
    }

    /// Records an I7 finding and sends it to the sink.
    fn find(&mut self, phase: &Phase, expected: String, found: String) {
        let finding = PriorViolation {
            invariant: "I7".into(),
            step: Some(phase.to_string()),
            expected,
            found,
        };
        self.shared.sink.finding(&finding);
        self.summary.findings.push(finding);
    }

    fn clear_fault(&mut self, phase: &Phase) -> Result<(), ExecError> {
        self.shared
            .sink
            .fault(&FaultAction::Clear)
            .map_err(|message| ExecError::Fault {
                phase: phase.clone(),
                message,
            })?;
        self.fault = None;
        Ok(())
    }

    /// One more step done under an armed fault with `clear_after_steps`.
    fn count_down_fault(&mut self, phase: &Phase) -> Result<(), ExecError> {
        match self.fault {
            Some(Some(left)) if left <= 1 => self.clear_fault(phase),
            Some(Some(left)) => {
                self.fault = Some(Some(left - 1));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// I7 on the reopen after a fault: every record acknowledged before the failure is
    /// recovered, byte for byte. Records whose write failed may or may not be there (a failed
    /// O_DIRECT write leaves the old contents, but the engine promised nothing about them); the
    /// ones recovered join the ledger so a later reopen is checked exactly, and LSNs continue
    /// after them.
    fn check_recovery_after_fault(&mut self, phase: &Phase, recovery: &powercut_writer::Recovery) {
        let shared = self.shared;
        let seed = shared.workload.seed;
        let mut problems = Vec::new();
        {
            let mut ledger = shared.ledger.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(problem) = self.forget_retired(&mut ledger, recovery) {
                problems.push(problem);
            }
            let recovered: BTreeMap<u64, &[u8]> = recovery
                .records
                .iter()
                .map(|r| (r.lsn, r.payload.as_slice()))
                .collect();
            for (&lsn, identity) in ledger.iter() {
                match recovered.get(&lsn) {
                    None => problems.push(format!("LSN {lsn} missing")),
                    Some(bytes) => {
                        let origin = payload::verify(seed, bytes).ok();
                        if origin.map(|o| (o.writer, o.sequence))
                            != Some((identity.writer, identity.sequence))
                            || bytes.len() != identity.len_bytes
                            || crc32c::crc32c(bytes) != identity.crc32c
                        {
                            problems.push(format!("LSN {lsn} holds other bytes"));
                        }
                    }
                }
            }
            for record in &recovery.records {
                if ledger.contains_key(&record.lsn) {
                    continue;
                }
                let origin = payload::verify(seed, &record.payload).ok();
                ledger.insert(
                    record.lsn,
                    RecordIdentity {
                        writer: origin.map_or(u32::MAX, |o| o.writer),
                        sequence: origin.map_or(0, |o| o.sequence),
                        len_bytes: record.payload.len(),
                        crc32c: crc32c::crc32c(&record.payload),
                    },
                );
            }
        }
        self.next_lsn = recovery.records.last().map_or(1, |r| r.lsn + 1);
        if let Some(first) = problems.first() {
            self.find(
                phase,
                format!(
                    "the reopen after the fault recovers all {} records acknowledged before it",
                    self.acked_before_fault
                ),
                format!(
                    "{} of them wrong ({} recovered); first: {first}",
                    problems.len(),
                    recovery.records.len()
                ),
            );
        }
    }

    /// The recovery of a cleanly closed journal holds exactly the acknowledged records.
    fn check_recovery(
        &self,
        phase: &Phase,
        recovery: &powercut_writer::Recovery,
    ) -> Result<(), ExecError> {
        let mismatch = |message: String| ExecError::RecoveryMismatch {
            phase: phase.clone(),
            message,
        };
        let mut ledger = self.shared.ledger.lock().unwrap_or_else(|p| p.into_inner());
        self.forget_retired(&mut ledger, recovery)
            .map_err(mismatch)?;
        let first_lsn = recovery.records.first().map_or(1, |r| r.lsn);
        if let Some(tail) = recovery.truncated_tail {
            return Err(mismatch(format!(
                "a clean close left a torn tail: {tail:?}"
            )));
        }
        if recovery.records.len() != ledger.len() {
            return Err(mismatch(format!(
                "{} records recovered, {} acknowledged",
                recovery.records.len(),
                ledger.len()
            )));
        }
        let seed = self.shared.workload.seed;
        for (position, (record, (&lsn, identity))) in
            recovery.records.iter().zip(ledger.iter()).enumerate()
        {
            let expected_lsn = first_lsn + position as u64;
            if record.lsn != expected_lsn || lsn != expected_lsn {
                return Err(mismatch(format!(
                    "record {position} has LSN {} (acknowledged: {lsn}), expected {expected_lsn}",
                    record.lsn
                )));
            }
            let origin = payload::verify(seed, &record.payload)
                .map_err(|why| mismatch(format!("LSN {lsn}: payload {why}")))?;
            if origin.writer != identity.writer
                || origin.sequence != identity.sequence
                || record.payload.len() != identity.len_bytes
                || crc32c::crc32c(&record.payload) != identity.crc32c
            {
                return Err(mismatch(format!(
                    "LSN {lsn}: recovered writer {} sequence {} ({} bytes), acknowledged writer \
                     {} sequence {} ({} bytes)",
                    origin.writer,
                    origin.sequence,
                    record.payload.len(),
                    identity.writer,
                    identity.sequence,
                    identity.len_bytes
                )));
            }
        }
        Ok(())
    }

    fn ingest(&mut self, index: usize, step: &IngestStep, phase: &Phase) -> Result<(), ExecError> {
        // The server opens the journal itself: hand it the directory.
        let journal = self.journal.take().ok_or_else(|| ExecError::Contract {
            phase: phase.clone(),
            message: "no journal open".into(),
        })?;
        journal.close().map_err(|source| ExecError::Journal {
            phase: phase.clone(),
            op: "close",
            source,
        })?;
        let clients = u32::try_from(step.clients).unwrap_or(u32::MAX);
        let options = ServeOptions {
            listen: "127.0.0.1:0".to_string(),
            max_frame_bytes: usize::try_from(step.size.max_bytes).unwrap_or(usize::MAX),
            max_connections: clients as usize + 1,
            idle_timeout: Duration::from_secs(60),
            ..ServeOptions::default()
        };
        // The journal is closed: read what a reopen recovers, then let the server reopen it.
        let recovery = powercut_writer::recover_with(
            &self.journal_dir,
            self.shared.workload.journal_options().mutant,
        )
        .map_err(|source| ExecError::Journal {
            phase: phase.clone(),
            op: "recover",
            source,
        })?;
        let server = ServerHandle::start(
            &self.journal_dir,
            self.shared.workload.journal_options(),
            options,
        )
        .map_err(|source| ExecError::Server {
            phase: phase.clone(),
            source,
        })?;
        self.summary
            .open_reports
            .push(describe_open(&server.open_report));
        // The server's open ran recovery: it must hold exactly what was acked, as for a reopen.
        if server.open_report.recovery != recovery.summary() {
            return Err(ExecError::Contract {
                phase: phase.clone(),
                message: format!(
                    "the server's open recovered {} but recovery before it {}",
                    server.open_report.recovery,
                    recovery.summary()
                ),
            });
        }
        self.check_recovery(phase, &recovery)?;
        let addr = server.local_addr();
        let seed = self.shared.workload.seed;
        let writers = self.writer_base + 1..=self.writer_base.saturating_add(clients);
        let first_sequences: Vec<u64> = writers
            .clone()
            .map(|writer| {
                let first = *self.next_sequence.get(&writer).unwrap_or(&1);
                self.next_sequence
                    .insert(writer, first + step.records_per_client);
                first
            })
            .collect();
        let shared = self.shared;
        let results: Vec<Result<(u64, u64), ExecError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = writers
                .zip(first_sequences)
                .map(|(writer, first_sequence)| {
                    let phase = phase.clone();
                    scope.spawn(move || {
                        let mut rng = ChaCha8Rng::seed_from_u64(seed);
                        rng.set_stream(ingest_stream(index, writer));
                        run_client(shared, &phase, addr, writer, first_sequence, step, &mut rng)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ExecError::Contract {
                            phase: phase.clone(),
                            message: "an ingest client thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        // Take the journal back from the server (its connection threads drop their references
        // as they finish).
        let journal = Arc::clone(server.journal());
        server.shutdown();
        let journal = take_back(journal).ok_or_else(|| ExecError::Contract {
            phase: phase.clone(),
            message: "the ingest server kept its journal after shutting down".into(),
        })?;
        self.journal = Some(journal);
        for result in results {
            let (records, bytes) = result?;
            self.summary.records += records;
            self.summary.record_bytes += bytes;
        }
        let total = step.clients * step.records_per_client;
        let expected_last = self.next_lsn - 1 + total;
        let (ledger_len, last_lsn) = {
            let ledger = self.shared.ledger.lock().unwrap_or_else(|p| p.into_inner());
            (
                ledger.len() as u64,
                ledger.keys().next_back().copied().unwrap_or(0),
            )
        };
        if ledger_len != expected_last || last_lsn != expected_last {
            return Err(ExecError::Contract {
                phase: phase.clone(),
                message: format!(
                    "after ingest {ledger_len} records are acknowledged up to LSN {last_lsn},                      expected LSNs 1..={expected_last}"
                ),
            });
        }
        self.next_lsn += total;
        Ok(())
    }

    fn file_op(&mut self, index: usize, op: &FileOp, phase: &Phase) -> Result<(), ExecError> {
        self.summary.file_ops += 1;
        let file_err = |op: &'static str, path: &Path| {
            let phase = phase.clone();
            let path = path.to_path_buf();
            move |source| ExecError::File {
                phase,
                op,
                path,
                source,
            }
        };
        let seed = self.shared.workload.seed;
        match op {
            FileOp::Create {
                path,
                size_bytes,
                fsync_file,
                fsync_dir,
            } => {
                let full = self.files_dir.join(path);
                let new_dirs = create_parents(&self.files_dir, path)
                    .map_err(file_err("create directory", &full))?;
                let contents = file_contents(seed, path, index, *size_bytes);
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&full)
                    .map_err(file_err("create", &full))?;
                file.write_all(&contents)
                    .map_err(file_err("write", &full))?;
                if *fsync_file {
                    file.sync_all().map_err(file_err("fsync", &full))?;
                }
                drop(file);
                if *fsync_dir {
                    self.fsync_parents(&[path.as_str()], &new_dirs, phase)?;
                }
                let crc = crc32c::crc32c(&contents);
                if op.is_acked() {
                    self.shared.ack(
                        phase,
                        &Ack::FileCreate {
                            path: path.clone(),
                            crc32c: crc,
                        },
                    )?;
                }
                self.file_crcs.insert(path.clone(), crc);
            }
            FileOp::Rename {
                from,
                to,
                fsync_file,
                fsync_dir,
            } => {
                let from_full = self.files_dir.join(from);
                let to_full = self.files_dir.join(to);
                let crc = match self.file_crcs.get(from) {
                    Some(crc) => *crc,
                    None => {
                        return Err(ExecError::Contract {
                            phase: phase.clone(),
                            message: format!("rename of {from}, which this run did not create"),
                        })
                    }
                };
                if *fsync_file {
                    File::open(&from_full)
                        .and_then(|f| f.sync_all())
                        .map_err(file_err("fsync", &from_full))?;
                }
                let new_dirs = create_parents(&self.files_dir, to)
                    .map_err(file_err("create directory", &to_full))?;
                fs::rename(&from_full, &to_full).map_err(file_err("rename", &from_full))?;
                if *fsync_dir {
                    self.fsync_parents(&[from.as_str(), to.as_str()], &new_dirs, phase)?;
                }
                if op.is_acked() {
                    self.shared.ack(
                        phase,
                        &Ack::FileRename {
                            from: from.clone(),
                            to: to.clone(),
                            crc32c: crc,
                        },
                    )?;
                }
                self.file_crcs.remove(from);
                self.file_crcs.insert(to.clone(), crc);
            }
            FileOp::Remove { path, fsync_dir } => {
                let full = self.files_dir.join(path);
                fs::remove_file(&full).map_err(file_err("remove", &full))?;
                if *fsync_dir {
                    self.fsync_parents(&[path.as_str()], &[], phase)?;
                }
                if op.is_acked() {
                    self.shared
                        .ack(phase, &Ack::FileRemove { path: path.clone() })?;
                }
                self.file_crcs.remove(path);
            }
        }
        Ok(())
    }

    /// fsyncs the directories holding `paths` and, for each directory created on the way,
    /// the directory holding it: every new name then survives a crash.
    fn fsync_parents(
        &self,
        paths: &[&str],
        new_dirs: &[String],
        phase: &Phase,
    ) -> Result<(), ExecError> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for relative in paths
            .iter()
            .copied()
            .chain(new_dirs.iter().map(String::as_str))
        {
            let parent = match relative.rsplit_once('/') {
                Some((parent, _)) => self.files_dir.join(parent),
                None => self.files_dir.clone(),
            };
            if !dirs.contains(&parent) {
                dirs.push(parent);
            }
        }
        // Deepest first: a directory's own entries before the entry naming it.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            fsync_dir(&dir).map_err(|source| ExecError::File {
                phase: phase.clone(),
                op: "fsync directory",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// One ingest client: sends its records one at a time, acking each on the server's reply.
/// Returns (records, payload bytes).
fn run_client(
    shared: &Shared<'_>,
    phase: &Phase,
    addr: std::net::SocketAddr,
    writer: u32,
    first_sequence: u64,
    step: &IngestStep,
    rng: &mut ChaCha8Rng,
) -> Result<(u64, u64), ExecError> {
    let seed = shared.workload.seed;
    let client_err = |sequence| {
        move |source| ExecError::Client {
            phase: phase.clone(),
            client: writer,
            sequence,
            source,
        }
    };
    let mut client =
        powercut_writer::server::Client::connect(addr).map_err(client_err(first_sequence))?;
    let mut bytes_total = 0u64;
    for sequence in first_sequence..first_sequence + step.records_per_client {
        let len_bytes = draw_size(rng, step.size);
        let bytes = payload::derive(seed, writer, sequence, len_bytes);
        let lsn = client.append(&bytes).map_err(client_err(sequence))?;
        let crc = crc32c::crc32c(&bytes);
        shared.ack(
            phase,
            &Ack::Records {
                first_lsn: lsn,
                last_lsn: lsn,
                crc32c: crc,
            },
        )?;
        let identity = RecordIdentity {
            writer,
            sequence,
            len_bytes,
            crc32c: crc,
        };
        let mut ledger = shared.ledger.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = ledger.insert(lsn, identity) {
            return Err(ExecError::Contract {
                phase: phase.clone(),
                message: format!(
                    "LSN {lsn} returned twice: writer {} sequence {} and writer {writer} sequence \
                     {sequence}",
                    previous.writer, previous.sequence
                ),
            });
        }
        bytes_total += len_bytes as u64;
    }
    Ok((step.records_per_client, bytes_total))
}

/// Waits (bounded) until the server's threads have dropped their references to the journal.
fn take_back(mut journal: Arc<Journal>) -> Option<Journal> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Arc::try_unwrap(journal) {
            Ok(journal) => return Some(journal),
            Err(still_shared) => {
                if Instant::now() > deadline {
                    return None;
                }
                journal = still_shared;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// RNG stream of ingest client `writer` in step `index` (stream 0 is the main appender).
fn ingest_stream(index: usize, writer: u32) -> u64 {
    ((index as u64 + 1) << 16) | u64::from(writer)
}

fn draw_size(rng: &mut ChaCha8Rng, size: SizeRange) -> usize {
    let bytes = rng.random_range(size.min_bytes..=size.max_bytes);
    // Bounded by spec::MAX_RECORD_BYTES.
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

fn describe_open(report: &OpenReport) -> String {
    format!(
        "io path {}, {}, alignment {} bytes ({}), durability {}{}, segment {}",
        report.io_path.name(),
        if report.direct_io {
            "O_DIRECT"
        } else {
            "buffered + fdatasync"
        },
        report.alignment_bytes,
        report.alignment_source,
        report.durability.name(),
        if report.sync_after_write {
            " + fdatasync"
        } else {
            ""
        },
        report.segment
    )
}

/// Contents of a file created by step `step_index`: deterministic from the seed, the path and
/// the step, so two creations of the same path differ.
pub fn file_contents(seed: u64, path: &str, step_index: usize, len_bytes: u64) -> Vec<u8> {
    let state = seed
        ^ (u64::from(crc32c::crc32c(path.as_bytes())) << 32)
        ^ (step_index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    // Bounded by spec::MAX_FILE_BYTES.
    let len = usize::try_from(len_bytes).unwrap_or(0);
    let mut out = vec![0u8; len];
    crate::payload::fill_splitmix(state, &mut out);
    out
}

/// Creates the missing parent directories of `relative` under `base`; returns the ones created
/// (relative paths, outermost first).
fn create_parents(base: &Path, relative: &str) -> std::io::Result<Vec<String>> {
    let mut created = Vec::new();
    for (i, _) in relative.match_indices('/') {
        let dir = &relative[..i];
        match fs::create_dir(base.join(dir)) {
            Ok(()) => created.push(dir.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

fn fsync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}
