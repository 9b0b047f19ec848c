//! Injected faults (invariant I7): arming and clearing them through the sink, what a failed
//! engine call under a fault must lead to (a poisoned journal refusing every call until a
//! reopen), and the reopen's recovery after it.

use powercut_judge::Invariant;

use powercut_writer::{JournalError, Recovery};

use super::error::{ExecError, Phase};
use super::ledger::RecordIdentity;
use super::run::Run;
use super::{FaultAction, RunFinding, MAIN_WRITER};
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
        self.report_finding(RunFinding {
            invariant: Invariant::I7.name().into(),
            step: Some(phase.to_string()),
            expected,
            found,
        });
    }

    /// Sends a finding of the run to the sink and keeps it in the summary; the run goes on.
    pub(super) fn report_finding(&mut self, finding: RunFinding) {
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
        let findings = self.judge_reopen(phase, Invariant::I7, recovery, true);
        for finding in findings {
            self.report_finding(finding);
        }
        self.follow_recovery(recovery);
    }
}
