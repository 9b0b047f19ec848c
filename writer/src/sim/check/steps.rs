//! One step of a plan at a time: appends and commits, rotations, retirements, reopens, power
//! cuts.

use super::super::rng::derive_seed;
use super::driver::Run;
use super::ledger::payload_for;
use super::plan::SimStep;
use super::report::SimState;
use super::CRASH_REOPEN_STREAM;
use crate::journal::Journal;

impl Run<'_> {
    /// Runs one step; false when the run cannot go on.
    pub(super) fn step(&mut self, index: usize, step: SimStep, slot: &mut Option<Journal>) -> bool {
        let Some(journal) = slot.as_ref() else {
            return false;
        };
        match step {
            SimStep::Append { records, group } => {
                let mut left = records;
                while left > 0 {
                    let count = left.min(group);
                    left -= count;
                    for _ in 0..count {
                        let lsn = self.ledger.next_lsn;
                        let payload = payload_for(
                            self.seed,
                            self.incarnation,
                            lsn,
                            self.plan.min_payload_bytes,
                            self.plan.max_payload_bytes,
                        );
                        self.ledger.written.insert(lsn, payload.clone());
                        // An append may itself write (when staging is full).
                        let appended = journal.append(&payload);
                        self.check_op_snapshots(index);
                        match appended {
                            Ok(got) if got == lsn => self.ledger.next_lsn += 1,
                            Ok(got) => {
                                self.engine_misbehaved(
                                    index,
                                    format!("append to get LSN {lsn}"),
                                    format!("LSN {got}"),
                                );
                                return false;
                            }
                            Err(err) => {
                                self.engine_failed(index, "append", &err);
                                return false;
                            }
                        }
                    }
                    let target = self.ledger.next_lsn - 1;
                    let committed = journal.commit();
                    self.check_op_snapshots(index);
                    match committed {
                        Ok(durable) if durable >= target => {
                            self.ledger.acked = self.ledger.acked.max(target);
                            self.report.acks += 1;
                        }
                        Ok(durable) => {
                            self.engine_misbehaved(
                                index,
                                format!("commit to make LSN {target} durable"),
                                format!("it returned LSN {durable}"),
                            );
                            return false;
                        }
                        Err(err) => {
                            self.engine_failed(index, "commit", &err);
                            return false;
                        }
                    }
                    self.check(index);
                    if self.stopped() {
                        return false;
                    }
                }
                true
            }
            SimStep::AppendConcurrent {
                threads,
                records_per_thread,
            } => self.append_concurrent(index, journal, threads, records_per_thread),
            SimStep::Rotate => {
                let rotated = journal.rotate();
                self.check_op_snapshots(index);
                match rotated {
                    Ok(()) => {
                        self.check(index);
                        true
                    }
                    Err(err) => {
                        self.engine_failed(index, "rotate", &err);
                        false
                    }
                }
            }
            SimStep::Retire { keep_records } => {
                // The caller gives the records up when it calls: crash states taken during
                // the call no longer need them.
                let below = self.ledger.acked.saturating_sub(u64::from(keep_records)) + 1;
                self.ledger.released_below = self.ledger.released_below.max(below);
                let retired = journal.retire_before(below);
                self.check_op_snapshots(index);
                match retired {
                    Ok(_) => {
                        self.check(index);
                        true
                    }
                    Err(err) => {
                        self.engine_failed(index, "retire_before", &err);
                        false
                    }
                }
            }
            SimStep::Reopen => {
                let Some(journal) = slot.take() else {
                    return false;
                };
                let closed = journal.close();
                self.check_op_snapshots(index);
                if let Err(err) = closed {
                    self.engine_failed(index, "close", &err);
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
                    Err(err) => {
                        self.engine_failed(index, "reopen after a clean close", &err);
                        false
                    }
                }
            }
            SimStep::CrashReopen => {
                let state_seed = derive_seed(self.seed, &[CRASH_REOPEN_STREAM, index as u64]);
                let crashed = self.fs.crash(state_seed);
                let at_op = crashed.ops();
                self.offer(index, at_op, SimState::Seeded(state_seed), &crashed);
                if self.found.is_some() {
                    return false;
                }
                // The power is cut: the old journal is dropped without closing, and whatever
                // it still does lands on the old file system, not on the crashed one.
                drop(slot.take());
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
    }
}
