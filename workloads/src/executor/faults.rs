//! Injected faults (invariant I7): arming and clearing them through the sink, what a failed
//! engine call under a fault must lead to (a poisoned journal refusing every call until a
//! reopen), and the reopen's recovery after it.

use std::collections::BTreeMap;

use powercut_writer::{JournalError, Recovery};

use super::error::{ExecError, Phase};
use super::ledger::RecordIdentity;
use super::run::Run;
use super::{FaultAction, PriorViolation, MAIN_WRITER};
use crate::payload;
use crate::spec::FaultSpec;

impl Run<'_, '_> {
    /// A `fault:` step: the sink arms the fault, which then counts down its steps, if any.
    pub(super) fn arm_fault(&mut self, phase: &Phase, fault: &FaultSpec) -> Result<(), ExecError> {
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

    /// An engine call failed. With a fault armed this is the injected EIO: the records of the
    /// call are not acknowledged, and the journal must refuse the next call with `Poisoned`
    /// (I7). On a journal already poisoned, `Poisoned` is the expected answer. Anything else
    /// is an error of the run, as without faults.
    pub(super) fn failed_under_fault(
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
        self.acked_before_fault = self.shared.ledger().len();
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
    pub(super) fn uncount(&mut self, group: &[(u64, RecordIdentity)]) {
        self.summary.records -= group.len() as u64;
        self.summary.record_bytes -= group.iter().map(|(_, i)| i.len_bytes as u64).sum::<u64>();
    }

    /// A call succeeded on a journal that a failed write poisoned and nothing reopened.
    pub(super) fn accepted_while_poisoned(&mut self, phase: &Phase, op: &str) {
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

    pub(super) fn clear_fault(&mut self, phase: &Phase) -> Result<(), ExecError> {
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
    pub(super) fn count_down_fault(&mut self, phase: &Phase) -> Result<(), ExecError> {
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
    pub(super) fn check_recovery_after_fault(&mut self, phase: &Phase, recovery: &Recovery) {
        let seed = self.shared.workload.seed;
        let mut problems = Vec::new();
        {
            let mut ledger = self.shared.ledger();
            if let Err(problem) = self.forget_retired(&mut ledger, recovery) {
                problems.push(problem);
            }
            problems.extend(acked_records_missing(seed, &ledger, recovery));
            for record in &recovery.records {
                ledger
                    .entry(record.lsn)
                    .or_insert_with(|| RecordIdentity::recovered(seed, record));
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
}

/// The acknowledged records of `ledger` that `recovery` lacks or holds with other bytes.
fn acked_records_missing(
    seed: u64,
    ledger: &BTreeMap<u64, RecordIdentity>,
    recovery: &Recovery,
) -> Vec<String> {
    let recovered: BTreeMap<u64, &[u8]> = recovery
        .records
        .iter()
        .map(|r| (r.lsn, r.payload.as_slice()))
        .collect();
    let mut problems = Vec::new();
    for (&lsn, identity) in ledger {
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
    problems
}
