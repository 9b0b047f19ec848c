//! A run of steps: the state it keeps, setting up and opening the journal, each step in turn,
//! the reopen, and closing at the end.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use powercut_writer::{Journal, JournalError, OpenReport, Recovery};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::error::{ExecError, Phase};
use super::files::{file_err, fsync_dir};
use super::ledger::Shared;
use super::{AckSink, ExecutionSummary, ProgressEvent};
use crate::ack::Ack;
use crate::spec::{SizeRange, Step, Workload};

/// One run of a list of steps against a journal and a file tree.
pub(super) struct Run<'a, 's> {
    /// The workload, the sink and the ledger, shared with ingest client threads.
    pub(super) shared: &'s Shared<'a>,
    pub(super) root: PathBuf,
    pub(super) journal_dir: PathBuf,
    pub(super) files_dir: PathBuf,
    pub(super) journal: Option<Journal>,
    pub(super) main_rng: ChaCha8Rng,
    /// The steps this run does (the workload's, or its after-crash steps).
    pub(super) steps: Vec<Step>,
    /// Payload writer id of the main appender; ingest clients follow it.
    pub(super) writer_base: u32,
    /// Where the steps come from, as errors name them (`steps`, `after_crash`).
    pub(super) steps_list: &'static str,
    /// Next payload sequence per writer.
    pub(super) next_sequence: BTreeMap<u32, u64>,
    /// LSN the next record must get (all writers).
    pub(super) next_lsn: u64,
    /// The ack of what the opening recovery returned, sent right after the start ack (a run
    /// after a power cut starts from a recovered journal: I9).
    pub(super) opened_with: Option<Ack>,
    /// crc32c of each existing file's contents, by path under `files`.
    pub(super) file_crcs: BTreeMap<String, u32>,
    /// A fault is armed, and the steps left before it clears itself (if it does).
    pub(super) fault: Option<Option<u64>>,
    /// A call failed under a fault: the journal must refuse everything until reopened.
    pub(super) poisoned: bool,
    /// Records acknowledged before the first failure of the current poisoning (I7 checks the
    /// reopen recovers them all).
    pub(super) acked_before_fault: usize,
    /// What the run did so far.
    pub(super) summary: ExecutionSummary,
}

impl<'a, 's> Run<'a, 's> {
    pub(super) fn new(
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
            steps_list: "steps",
            next_sequence: BTreeMap::new(),
            next_lsn: 1,
            opened_with: None,
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
    pub(super) fn run_steps(
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
        let opened_acks = match self.opened_with.take() {
            Some(ack) => shared.ack(&Phase::Setup, &ack).map(|()| 1)?,
            None => 0,
        };
        let steps = std::mem::take(&mut self.steps);
        let steps_total = steps.len();
        let acks_total = 2 + opened_acks + steps.iter().map(Step::acks).sum::<u64>();
        for (index, step) in steps.iter().enumerate() {
            let phase = Phase::Step {
                list: self.steps_list,
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
        if workload.is_program() {
            // Programs run no journal: the run ends with its last step.
            return self.finish(shared, started);
        }
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
        self.finish(shared, started)
    }

    /// The end ack and the summary.
    fn finish(
        mut self,
        shared: &Shared<'_>,
        started: Instant,
    ) -> Result<ExecutionSummary, ExecError> {
        shared.ack(
            &Phase::Finish,
            &Ack::End {
                name: shared.workload.name.clone(),
            },
        )?;
        self.summary.acks = shared.acks();
        self.summary.elapsed = started.elapsed();
        Ok(self.summary)
    }

    /// Creates the directories and opens a fresh journal.
    pub(super) fn setup(&mut self) -> Result<(), ExecError> {
        self.create_dirs(true)?;
        self.open_journal(&Phase::Setup).map(|_| ())
    }

    /// Creates the root, `journal` and `files` (fsyncing each new name). `fresh`: the journal
    /// directory must be absent or empty (a run from nothing).
    pub(super) fn create_dirs(&mut self, fresh: bool) -> Result<(), ExecError> {
        let setup_err = |op, path: &Path| file_err(&Phase::Setup, op, path);
        fs::create_dir_all(&self.root).map_err(setup_err("create directory", &self.root))?;
        // The root's own name must be durable too (callers often create it just before).
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent).map_err(setup_err("fsync directory", parent))?;
        }
        for dir in [&self.journal_dir, &self.files_dir] {
            match fs::read_dir(dir) {
                Ok(mut entries) => {
                    if fresh && dir == &self.journal_dir && entries.next().is_some() {
                        return Err(ExecError::NotEmpty { path: dir.clone() });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    fs::create_dir(dir).map_err(setup_err("create directory", dir))?;
                }
                Err(e) => return Err(setup_err("read directory", dir)(e)),
            }
            fsync_dir(dir).map_err(setup_err("fsync directory", dir))?;
        }
        fsync_dir(&self.root).map_err(setup_err("fsync directory", &self.root))?;
        Ok(())
    }

    /// Opens the journal; returns what its recovery found, records included.
    pub(super) fn open_journal(&mut self, phase: &Phase) -> Result<Recovery, ExecError> {
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

    /// The largest record of the steps within what the open journal accepts.
    pub(super) fn check_record_limit(&self, phase: &Phase, limit: usize) -> Result<(), ExecError> {
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

    /// The open journal.
    pub(super) fn journal(&self, phase: &Phase) -> Result<&Journal, ExecError> {
        self.journal.as_ref().ok_or_else(|| ExecError::Contract {
            phase: phase.clone(),
            message: "no journal open".into(),
        })
    }

    /// Does one step.
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
            Step::Fault(fault) => self.arm_fault(phase, fault),
            Step::ClearFault => self.clear_fault(phase),
            Step::Reopen => self.reopen(phase),
            Step::File(op) => self.file_op(index, op, phase),
            Step::Ingest(i) => self.ingest(index, i, phase),
            Step::Exec(e) => self.exec(index, e, phase),
        }
    }

    /// The next payload sequence of `writer`.
    pub(super) fn next_sequence(&mut self, writer: u32) -> u64 {
        let next = self.next_sequence.entry(writer).or_insert(1);
        let sequence = *next;
        *next += 1;
        sequence
    }

    /// Closes the journal and opens it again, checking what its recovery returns.
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
        } else {
            self.check_recovery(phase, &recovery);
        }
        self.ack_recovered(phase, &recovery)
    }
}

/// Opens the journal of `workload` in `dir`, collecting the records its recovery streams by
/// (workload journals are small; the engine itself keeps none of them).
pub(super) fn open_collecting(
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

/// A record size drawn from `size`.
pub(super) fn draw_size(rng: &mut ChaCha8Rng, size: SizeRange) -> usize {
    let bytes = rng.random_range(size.min_bytes..=size.max_bytes);
    // Bounded by spec::MAX_RECORD_BYTES.
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// One line of what an open chose: io path, O_DIRECT or not, alignment, durability, segment.
pub(super) fn describe_open(report: &OpenReport) -> String {
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
