//! The run after a power cut (invariant I8): the first run's acknowledged records (I1, I2, I3)
//! and files (I6) checked on the recovered state, then the after-crash steps.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use powercut_writer::{JournalError, Recovery};

use super::error::{ExecError, Phase};
use super::ledger::{RecordIdentity, Shared};
use super::run::{describe_open, open_collecting, Run};
use super::{AckSink, ExecutionSummary, PriorViolation};
use crate::ack::Ack;
use crate::payload;
use crate::spec::{Workload, AFTER_CRASH_WRITER_BASE};

/// RNG stream of the record sizes after a crash (stream 0 is the first run's appender).
const AFTER_CRASH_RNG_STREAM: u64 = 0x00AF_7E2C;

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
        Err(e) => return Ok(journal_did_not_open(sink, &e)),
    };
    run.check_record_limit(&Phase::Setup, journal.max_payload_bytes())?;
    run.summary.open_reports.push(describe_open(&report));
    run.journal = Some(journal);
    let mut violations = check_prior_records(workload.seed, prior_acks, &recovery);
    let expected_files = prior_file_expectations(prior_acks);
    violations.extend(check_prior_files(&run.files_dir, &expected_files));
    for violation in &violations {
        sink.prior_violation(violation);
    }
    run.resume_from(&recovery, expected_files);
    let summary = run.run_steps(&shared, sink, started)?;
    Ok(ContinuationSummary {
        recovered_records: recovery.records.len() as u64,
        truncated_tail: recovery.truncated_tail.map(|t| format!("{t:?}")),
        prior_violations: violations,
        execution: Some(summary),
    })
}

/// The journal of the crash image does not open: an I4 violation, and no steps run.
fn journal_did_not_open(sink: &dyn AckSink, error: &JournalError) -> ContinuationSummary {
    let violation = PriorViolation {
        invariant: "I4".into(),
        step: None,
        expected: "the journal of the crash image opens (recovery succeeds)".into(),
        found: format!("open failed: {error}"),
    };
    sink.prior_violation(&violation);
    ContinuationSummary {
        recovered_records: 0,
        truncated_tail: None,
        prior_violations: vec![violation],
        execution: None,
    }
}

impl Run<'_, '_> {
    /// Continues from the recovered journal and the first run's files: the recovered records
    /// are the ledger a later reopen is checked against, LSNs continue after them, and the
    /// files acked present are the ones a rename may move.
    fn resume_from(&mut self, recovery: &Recovery, files: BTreeMap<String, Option<u32>>) {
        let seed = self.shared.workload.seed;
        for record in &recovery.records {
            self.shared
                .record(record.lsn, RecordIdentity::recovered(seed, record));
        }
        self.next_lsn = recovery.records.last().map_or(1, |r| r.lsn + 1);
        for (path, expect) in files {
            if let Some(crc) = expect {
                self.file_crcs.insert(path, crc);
            }
        }
    }
}

/// I1 (every acked record, byte for byte), I2 (LSNs exactly 1..n, n at least the last acked)
/// and I3 (every payload derived from the seed) on a recovery.
pub fn check_prior_records(
    seed: u64,
    prior_acks: &[Ack],
    recovery: &powercut_writer::Recovery,
) -> Vec<PriorViolation> {
    // Records below the first recovered LSN may be gone when a retire allowed it.
    let retired_before = crate::ack::retired_before(prior_acks).unwrap_or(1);
    let first_lsn = recovery
        .records
        .first()
        .map_or(1, |r| r.lsn)
        .min(retired_before);
    let mut out = check_acked_records(prior_acks, recovery, first_lsn);
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
    if let Some((record, why)) = recovery
        .records
        .iter()
        .find_map(|r| payload::verify(seed, &r.payload).err().map(|why| (r, why)))
    {
        out.push(PriorViolation {
            invariant: "I3".into(),
            step: None,
            expected: "every recovered payload derived from the workload seed".into(),
            found: format!("LSN {}: {why}", record.lsn),
        });
    }
    out
}

/// I1: every records ack whose LSNs reach `first_lsn` (the first one still required) is
/// recovered byte for byte.
fn check_acked_records(
    prior_acks: &[Ack],
    recovery: &Recovery,
    first_lsn: u64,
) -> Vec<PriorViolation> {
    let by_lsn: BTreeMap<u64, &[u8]> = recovery
        .records
        .iter()
        .map(|r| (r.lsn, r.payload.as_slice()))
        .collect();
    let mut out = Vec::new();
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
