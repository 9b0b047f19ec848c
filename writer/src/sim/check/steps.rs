//! One step of a plan at a time: appends and commits, rotations, retirements, reopens, power
//! cuts, faults armed and cleared.

use super::super::fault::SimFault;
use super::super::rng::derive_seed;
use super::driver::{Called, Run};
use super::ledger::payload_for;
use super::plan::SimStep;
use super::report::SimState;
use super::{CRASH_REOPEN_STREAM, FAULT_STREAM};
use crate::journal::Journal;

impl Run<'_> {
    /// Runs one step; false when the run cannot go on.
    pub(super) fn step(&mut self, index: usize, step: SimStep, slot: &mut Option<Journal>) -> bool {
        let Some(journal) = slot.as_ref() else {
            return false;
        };
        match step {
            SimStep::Append { records, group } => self.append(index, journal, records, group),
            SimStep::AppendConcurrent {
                threads,
                records_per_thread,
            } => self.append_concurrent(index, journal, threads, records_per_thread),
            SimStep::Rotate => {
                let before = self.fs.fault_hits();
                let rotated = journal.rotate();
                self.check_op_snapshots(index);
                self.after_call(index, "rotate", Some(journal), before, rotated, false)
                    .go_on(|| self.check(index))
            }
            SimStep::Retire { keep_records } => self.retire(index, journal, keep_records),
            SimStep::Reopen => self.reopen(index, slot),
            SimStep::CrashReopen => self.crash_reopen(index, slot),
            SimStep::Fault {
                on,
                persistent,
                bytes,
                clear_after_steps,
            } => {
                self.fault_steps_left = clear_after_steps;
                self.fs.arm_fault(SimFault {
                    on,
                    persistent,
                    bytes: bytes.map(|(start, end)| start..end),
                    seed: derive_seed(self.seed, &[FAULT_STREAM, index as u64]),
                });
                true
            }
            SimStep::ClearFault => {
                self.fs.clear_fault();
                self.fault_steps_left = None;
                true
            }
        }
    }

    /// [`SimStep::Append`]: records appended one by one, committed in groups; each commit that
    /// returns is an acknowledgement, followed by a check. Once the engine failed a call, the
    /// step only checks that it refuses appending and committing.
    fn append(&mut self, index: usize, journal: &Journal, records: u32, group: u32) -> bool {
        if self.poisoned {
            return self.expect_refusals(index, journal);
        }
        let mut left = records;
        while left > 0 {
            let count = left.min(group);
            left -= count;
            for _ in 0..count {
                match self.append_one(index, journal) {
                    Called::Done(()) => {}
                    Called::Failed => return true,
                    Called::Stop => return false,
                }
            }
            let target = self.ledger.next_lsn - 1;
            let before = self.fs.fault_hits();
            let committed = journal.commit();
            self.check_op_snapshots(index);
            match self.after_call(index, "commit", Some(journal), before, committed, true) {
                Called::Done(durable) if durable >= target => {
                    self.ledger.acked = self.ledger.acked.max(target);
                    self.report.acks += 1;
                }
                Called::Done(durable) => {
                    self.engine_misbehaved(
                        index,
                        format!("commit to make LSN {target} durable"),
                        format!("it returned LSN {durable}"),
                    );
                    return false;
                }
                Called::Failed => return true,
                Called::Stop => return false,
            }
            self.check(index);
            if self.stopped() {
                return false;
            }
        }
        true
    }

    /// Appends the record of the next LSN (its payload counts as written from the call on:
    /// a failed append may still have put it on the disk).
    fn append_one(&mut self, index: usize, journal: &Journal) -> Called<()> {
        let lsn = self.ledger.next_lsn;
        let payload = payload_for(
            self.seed,
            self.incarnation,
            lsn,
            self.plan.min_payload_bytes,
            self.plan.max_payload_bytes,
        );
        self.ledger.written.insert(lsn, payload.clone());
        let before = self.fs.fault_hits();
        // An append may itself write (when staging is full).
        let appended = journal.append(&payload);
        self.check_op_snapshots(index);
        match self.after_call(index, "append", Some(journal), before, appended, true) {
            Called::Done(got) if got == lsn => {
                self.ledger.next_lsn += 1;
                Called::Done(())
            }
            Called::Done(got) => {
                self.engine_misbehaved(
                    index,
                    format!("append to get LSN {lsn}"),
                    format!("LSN {got}"),
                );
                Called::Stop
            }
            Called::Failed => Called::Failed,
            Called::Stop => Called::Stop,
        }
    }

    /// While the journal is poisoned: an append and a commit, each of which must be refused.
    /// The payload offered is the next LSN's, so that an append wrongly taken is a record
    /// whose provenance is known.
    pub(super) fn expect_refusals(&mut self, index: usize, journal: &Journal) -> bool {
        match self.append_one(index, journal) {
            Called::Done(()) | Called::Stop => return false,
            Called::Failed => {}
        }
        let before = self.fs.fault_hits();
        let committed = journal.commit();
        self.check_op_snapshots(index);
        !matches!(
            self.after_call(index, "commit", Some(journal), before, committed, true),
            Called::Done(_) | Called::Stop
        )
    }

    /// [`SimStep::Retire`].
    fn retire(&mut self, index: usize, journal: &Journal, keep_records: u32) -> bool {
        // The caller gives the records up when it calls: crash states taken during the call
        // no longer need them.
        let below = self.ledger.acked.saturating_sub(u64::from(keep_records)) + 1;
        if !self.poisoned {
            self.ledger.released_below = self.ledger.released_below.max(below);
        }
        let before = self.fs.fault_hits();
        let retired = journal.retire_before(below);
        self.check_op_snapshots(index);
        self.after_call(
            index,
            "retire_before",
            Some(journal),
            before,
            retired,
            false,
        )
        .go_on(|| self.check(index))
    }

    /// [`SimStep::Reopen`]: closes the journal (a poisoned one refuses, and is dropped) and
    /// opens it again; the recovery is judged on the live file system.
    fn reopen(&mut self, index: usize, slot: &mut Option<Journal>) -> bool {
        let Some(journal) = slot.take() else {
            return false;
        };
        let before = self.fs.fault_hits();
        let closed = journal.close();
        self.check_op_snapshots(index);
        // A poisoned journal refuses to close; it is dropped and opened again all the same.
        if let Called::Stop = self.after_call(index, "close", None, before, closed, false) {
            return false;
        }
        let opened = self.open();
        self.check_op_snapshots(index);
        match opened {
            Ok((journal, recovery)) => {
                let at_op = self.fs.ops();
                self.verify(index, SimState::Live, at_op, Ok(recovery.clone()));
                self.continue_after(&recovery);
                *slot = Some(journal);
                self.check(index);
                true
            }
            // With a fault still armed, opening may fail: nothing to judge, nothing to go on.
            Err(_) if self.fs.fault_armed() => false,
            Err(err) => {
                self.engine_failed(index, "reopen after a clean close", &err);
                false
            }
        }
    }

    /// [`SimStep::CrashReopen`].
    fn crash_reopen(&mut self, index: usize, slot: &mut Option<Journal>) -> bool {
        let state_seed = derive_seed(self.seed, &[CRASH_REOPEN_STREAM, index as u64]);
        let crashed = self.fs.crash(state_seed);
        let at_op = crashed.ops();
        self.offer(index, at_op, SimState::Seeded(state_seed), &crashed);
        if self.found.is_some() {
            return false;
        }
        // The power is cut: the old journal is dropped without closing, and whatever it still
        // does lands on the old file system, not on the crashed one.
        drop(slot.take());
        self.report.faults_hit += self.fs.fault_hits();
        self.fault_steps_left = None;
        crashed.record_op_snapshots(self.plan.crash_between_ops);
        self.fs = crashed;
        let state = SimState::Seeded(state_seed);
        let opened = self.open();
        self.check_op_snapshots(index);
        match opened {
            Ok((journal, recovery)) => {
                self.verify(index, state, at_op, Ok(recovery.clone()));
                self.continue_after(&recovery);
                // LSNs past the recovered end are written again, with new payloads.
                self.incarnation += 1;
                *slot = Some(journal);
                self.check(index);
                true
            }
            Err(err) => {
                self.verify(index, state, at_op, Err(err));
                false
            }
        }
    }
}
