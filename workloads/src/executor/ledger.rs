//! What the run acknowledged (the ledger, shared with the ingest client threads) and the check
//! of a clean reopen's recovery against it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use powercut_writer::{RecoveredRecord, Recovery};

use super::error::{ExecError, Phase};
use super::run::Run;
use super::AckSink;
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
    /// Drops from the ledger the records a recovery no longer holds because their segments were
    /// retired; fails if the recovery starts later than any retire allowed.
    pub(super) fn forget_retired(
        &self,
        ledger: &mut BTreeMap<u64, RecordIdentity>,
        recovery: &Recovery,
    ) -> Result<(), String> {
        let retired_before = self.shared.retired_before.load(Ordering::SeqCst);
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

    /// The recovery of a cleanly closed journal holds exactly the acknowledged records.
    pub(super) fn check_recovery(
        &self,
        phase: &Phase,
        recovery: &Recovery,
    ) -> Result<(), ExecError> {
        let mismatch = |message: String| ExecError::RecoveryMismatch {
            phase: phase.clone(),
            message,
        };
        let mut ledger = self.shared.ledger();
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
}
