//! What the run acknowledged (the ledger, shared with the ingest client threads) and the check
//! of a clean reopen's recovery against it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use powercut_judge::records::{judge_recovery, Provenance, RecordPromise, RecordRules};
use powercut_judge::Invariant;
use powercut_writer::{RecoveredRecord, Recovery};

use super::error::{ExecError, Phase};
use super::run::Run;
use super::{AckSink, RunFinding};
use crate::ack::Ack;
use crate::payload;
use crate::spec::Workload;

/// Identity of a durable record, kept to check a reopen's recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordIdentity {
    pub(super) writer: u32,
    pub(super) sequence: u64,
    pub(super) len_bytes: usize,
    pub(super) crc32c: u32,
}

impl RecordIdentity {
    /// The identity of a record a recovery returned; a payload not derived from the seed gets
    /// writer `u32::MAX`, sequence 0.
    pub(super) fn recovered(seed: u64, record: &RecoveredRecord) -> Self {
        let origin = payload::verify(seed, &record.payload).ok();
        RecordIdentity {
            writer: origin.map_or(u32::MAX, |o| o.writer),
            sequence: origin.map_or(0, |o| o.sequence),
            len_bytes: record.payload.len(),
            crc32c: crc32c::crc32c(&record.payload),
        }
    }
}

/// Where a reopen's payloads may come from: the acknowledged identity at an acknowledged LSN;
/// elsewhere, with `unacknowledged_allowed`, any payload of the run (an append that failed under
/// a fault may have reached the device), else nothing (a clean close leaves only what was acked).
struct LedgerProvenance<'l> {
    seed: u64,
    ledger: &'l BTreeMap<u64, RecordIdentity>,
    unacknowledged_allowed: bool,
}

impl Provenance for LedgerProvenance<'_> {
    fn written(&self, lsn: u64, payload: &[u8]) -> Result<(), String> {
        let origin = payload::verify(self.seed, payload).map_err(|why| why.to_string())?;
        let found = RecordIdentity {
            writer: origin.writer,
            sequence: origin.sequence,
            len_bytes: payload.len(),
            crc32c: crc32c::crc32c(payload),
        };
        match self.ledger.get(&lsn) {
            Some(acked) if *acked == found => Ok(()),
            Some(acked) => Err(format!(
                "writer {} sequence {} ({} bytes) where writer {} sequence {} ({} bytes) was \
                 acknowledged",
                found.writer,
                found.sequence,
                found.len_bytes,
                acked.writer,
                acked.sequence,
                acked.len_bytes
            )),
            None if self.unacknowledged_allowed => Ok(()),
            None => Err("no record was acknowledged at this LSN before a clean close".into()),
        }
    }
}

/// State shared with ingest client threads.
pub(super) struct Shared<'a> {
    pub(super) workload: &'a Workload,
    pub(super) sink: &'a dyn AckSink,
    /// LSN -> what was acknowledged there.
    ledger: Mutex<BTreeMap<u64, RecordIdentity>>,
    acks: AtomicU64,
    /// Largest `before_lsn` of a `retire` step's ack (0: nothing retired): records below it
    /// may be gone from a recovery.
    pub(super) retired_before: AtomicU64,
}

impl<'a> Shared<'a> {
    pub(super) fn new(workload: &'a Workload, sink: &'a dyn AckSink) -> Self {
        Shared {
            workload,
            sink,
            ledger: Mutex::new(BTreeMap::new()),
            acks: AtomicU64::new(0),
            retired_before: AtomicU64::new(0),
        }
    }

    /// Sends `ack` to the sink and counts it.
    pub(super) fn ack(&self, phase: &Phase, ack: &Ack) -> Result<(), ExecError> {
        self.sink.ack(ack).map_err(|message| ExecError::Sink {
            phase: phase.clone(),
            label: ack.to_label(),
            message,
        })?;
        self.acks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Acks sent so far.
    pub(super) fn acks(&self) -> u64 {
        self.acks.load(Ordering::SeqCst)
    }

    /// Enters an acknowledged record in the ledger.
    pub(super) fn record(&self, lsn: u64, identity: RecordIdentity) {
        self.ledger().insert(lsn, identity);
    }

    /// The ledger, locked. A client thread that panicked holding it leaves it usable: its
    /// entries were complete before the panic.
    pub(super) fn ledger(&self) -> MutexGuard<'_, BTreeMap<u64, RecordIdentity>> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Run<'_, '_> {
    /// The recovery of a cleanly closed journal holds exactly the acknowledged records (I1,
    /// I2, I3 as the judge decides them): what breaks that is a finding of the run, reported to
    /// the sink, and the ledger then follows what was recovered so the run can go on.
    pub(super) fn check_recovery(&mut self, phase: &Phase, recovery: &Recovery) {
        let mut findings = self.judge_reopen(phase, Invariant::I1, recovery, false);
        if let Some(tail) = recovery.truncated_tail {
            findings.push(RunFinding {
                invariant: Invariant::I2.name().into(),
                step: Some(phase.to_string()),
                expected: "a cleanly closed journal ends without a torn tail".into(),
                found: format!("recovery truncated a torn tail: {tail:?}"),
            });
        }
        if findings.is_empty() {
            return;
        }
        for finding in findings {
            self.report_finding(finding);
        }
        self.follow_recovery(recovery);
    }

    /// The judge's findings on a reopen's recovery against the ledger: every acknowledged
    /// record byte for byte (a promise of `invariant`: I1 after a clean close, I7 after a fault),
    /// the log contiguous, and no payload the run did not write; with `unacknowledged_allowed`,
    /// records whose append failed may be there too.
    pub(super) fn judge_reopen(
        &self,
        phase: &Phase,
        invariant: Invariant,
        recovery: &Recovery,
        unacknowledged_allowed: bool,
    ) -> Vec<RunFinding> {
        let ledger = self.shared.ledger();
        let promises: Vec<RecordPromise> = ledger
            .iter()
            .map(|(&lsn, identity)| RecordPromise {
                first_lsn: lsn,
                last_lsn: lsn,
                crc32c: identity.crc32c,
                invariant,
            })
            .collect();
        let retired_before = self.shared.retired_before.load(Ordering::SeqCst);
        let provenance = LedgerProvenance {
            seed: self.shared.workload.seed,
            ledger: &ledger,
            unacknowledged_allowed,
        };
        let rules = RecordRules {
            promises: &promises,
            retired_before: (retired_before > 0).then_some(retired_before),
            provenance: &provenance,
        };
        let records = recovery.judged_records();
        judge_recovery(&rules, Ok(&records))
            .into_iter()
            .map(|finding| RunFinding {
                invariant: finding.invariant.name().into(),
                step: Some(phase.to_string()),
                expected: finding.expected,
                found: finding.found,
            })
            .collect()
    }

    /// From here on the ledger is what `recovery` returned and LSNs continue after it.
    pub(super) fn follow_recovery(&mut self, recovery: &Recovery) {
        let seed = self.shared.workload.seed;
        let mut ledger = self.shared.ledger();
        ledger.clear();
        for record in &recovery.records {
            ledger.insert(record.lsn, RecordIdentity::recovered(seed, record));
        }
        self.next_lsn = recovery.records.last().map_or(1, |r| r.lsn + 1);
    }

    /// Acks what a reopen's recovery returned (I9: it must stay durable from now on).
    pub(super) fn ack_recovered(
        &self,
        phase: &Phase,
        recovery: &Recovery,
    ) -> Result<(), ExecError> {
        let records = recovery
            .records
            .iter()
            .map(|r| (r.lsn, r.payload.as_slice()));
        self.shared.ack(phase, &Ack::recovered(records))
    }
}
