//! Concurrent appends: several threads appending through group commit, with writes held back
//! in seeded orders, each crash state held to the acknowledgements returned before it.

use super::super::rng::derive_seed;
use super::driver::{Called, Run};
use super::ledger::{concurrent_tag, payload_for};
use super::plan::SIM_JOURNAL_DIR;
use super::HOLD_BACK_STREAM;
use crate::error::JournalError;
use crate::journal::Journal;
use crate::Lsn;

/// What one appending thread did.
#[derive(Default)]
struct Thread {
    /// (LSN, payload, operations done when its acknowledgement had returned).
    acked: Vec<(Lsn, Vec<u8>, u64)>,
    /// Appended (an LSN returned) but not acknowledged: the wait for durability failed.
    unacked: Vec<(Lsn, Vec<u8>)>,
    /// Payload whose append failed: it got no LSN, but may be on the disk under one.
    unplaced: Option<Vec<u8>>,
    /// The error that stopped the thread.
    failure: Option<JournalError>,
}

/// The parameters every thread shares.
#[derive(Clone, Copy)]
struct Shared<'j> {
    journal: &'j Journal,
    fs: &'j super::super::fs::SimStorage,
    step: usize,
    seed: u64,
    incarnation: u32,
    min_bytes: usize,
    max_bytes: usize,
    /// The plan's time budget: threads stop appending once it ran out.
    deadline: Option<std::time::Instant>,
}

impl Shared<'_> {
    /// Appends `records` records one at a time, waiting for each to be durable.
    fn run_thread(self, thread: u32, records: u32) -> Thread {
        let mut done = Thread::default();
        for sequence in 0..records {
            if self
                .deadline
                .is_some_and(|at| std::time::Instant::now() >= at)
            {
                break;
            }
            let tag = concurrent_tag(self.step, thread, sequence);
            let payload = payload_for(
                self.seed,
                self.incarnation,
                tag,
                self.min_bytes,
                self.max_bytes,
            );
            let lsn = match self.journal.append(&payload) {
                Ok(lsn) => lsn,
                Err(err) => {
                    done.unplaced = Some(payload);
                    done.failure = Some(err);
                    break;
                }
            };
            if let Err(err) = self.journal.wait_durable(lsn) {
                done.unacked.push((lsn, payload));
                done.failure = Some(err);
                break;
            }
            done.acked.push((lsn, payload, self.fs.ops()));
        }
        done
    }
}

impl Run<'_> {
    /// Runs [`SimStep::AppendConcurrent`](super::SimStep::AppendConcurrent); false when the
    /// run cannot go on.
    pub(super) fn append_concurrent(
        &mut self,
        index: usize,
        journal: &Journal,
        threads: u32,
        records_per_thread: u32,
    ) -> bool {
        if self.poisoned {
            return self.expect_refusals(index, journal);
        }
        let shared = Shared {
            journal,
            fs: &self.fs,
            step: index,
            seed: self.seed,
            incarnation: self.incarnation,
            min_bytes: self.plan.min_payload_bytes,
            max_bytes: self.plan.max_payload_bytes,
            deadline: self.deadline,
        };
        let before = self.fs.fault_hits();
        // Writes of different groups complete in seeded adversarial orders meanwhile.
        let hold_back = derive_seed(self.seed, &[HOLD_BACK_STREAM, index as u64]);
        self.fs.hold_back_writes(Some(hold_back));
        let outcomes: Vec<Thread> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|thread| scope.spawn(move || shared.run_thread(thread, records_per_thread)))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| Thread {
                        failure: Some(JournalError::io(
                            "append",
                            SIM_JOURNAL_DIR,
                            0,
                            std::io::Error::other("an appending thread panicked"),
                        )),
                        ..Thread::default()
                    })
                })
                .collect()
        });
        self.fs.hold_back_writes(None);
        self.settle_concurrent(index, journal, before, outcomes)
    }

    /// Learns what the threads did, checks the crash states taken meanwhile, then judges the
    /// outcome; false when the run cannot go on.
    fn settle_concurrent(
        &mut self,
        index: usize,
        journal: &Journal,
        hits_before: u64,
        outcomes: Vec<Thread>,
    ) -> bool {
        let mut acked = Vec::new();
        let mut failure = None;
        let mut last_assigned = self.ledger.next_lsn.saturating_sub(1);
        for outcome in outcomes {
            // Whatever got an LSN was written (or is in flight): I3 must accept it.
            for (lsn, payload) in outcome.unacked {
                last_assigned = last_assigned.max(lsn);
                self.ledger.written.insert(lsn, payload);
            }
            for (lsn, payload, ops) in outcome.acked {
                last_assigned = last_assigned.max(lsn);
                self.ledger.written.insert(lsn, payload);
                acked.push((ops, lsn));
            }
            self.ledger.unplaced.extend(outcome.unplaced);
            if let Some(err) = outcome.failure {
                failure.get_or_insert(err);
            }
        }
        acked.sort_unstable();
        self.check_concurrent_snapshots(index, &acked);
        let count = acked.len() as u64;
        let result = match failure {
            Some(err) => Err(err),
            None => Ok(()),
        };
        match self.after_call(
            index,
            "concurrent append",
            Some(journal),
            hits_before,
            result,
            true,
        ) {
            Called::Done(()) => self.check_lsns_once(index, &acked),
            Called::Failed => {
                // Acknowledgements are in LSN order: the highest one covers those below.
                let highest = acked.iter().map(|(_, lsn)| *lsn).max().unwrap_or(0);
                self.ledger.acked = self.ledger.acked.max(highest);
                self.ledger.next_lsn = last_assigned + 1;
                self.report.acks += count;
                self.check(index);
                !self.stopped()
            }
            Called::Stop => false,
        }
    }

    /// Checks each state taken during the step against the acknowledgements returned before
    /// it (`timeline`: operations done when each returned, and its LSN; sorted).
    fn check_concurrent_snapshots(&mut self, index: usize, timeline: &[(u64, Lsn)]) {
        let base = self.ledger.acked;
        for snapshot in self.fs.take_op_snapshots() {
            if self.stopped() {
                break;
            }
            let taken_at = snapshot.ops();
            self.ledger.acked = timeline
                .iter()
                .take_while(|(ops, _)| *ops < taken_at)
                .map(|(_, lsn)| *lsn)
                .fold(base, Lsn::max);
            self.check_fs(&snapshot, index);
        }
        self.ledger.acked = base;
    }

    /// With no failure: every append got its own LSN, the next ones in order.
    fn check_lsns_once(&mut self, index: usize, acked: &[(u64, Lsn)]) -> bool {
        let expected: Vec<Lsn> = (self.ledger.next_lsn..).take(acked.len()).collect();
        let mut got: Vec<Lsn> = acked.iter().map(|(_, lsn)| *lsn).collect();
        got.sort_unstable();
        if got != expected {
            self.engine_misbehaved(
                index,
                format!(
                    "{} appends to get LSNs {}.. exactly once each",
                    expected.len(),
                    self.ledger.next_lsn
                ),
                format!("LSNs {got:?}"),
            );
            return false;
        }
        self.ledger.next_lsn += acked.len() as u64;
        self.ledger.acked = self.ledger.acked.max(self.ledger.next_lsn - 1);
        self.report.acks += acked.len() as u64;
        self.check(index);
        !self.stopped()
    }
}
