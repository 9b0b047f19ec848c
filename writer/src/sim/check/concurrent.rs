//! Concurrent appends: several threads appending through group commit, with writes held back
//! in seeded orders, each crash state held to the acknowledgements returned before it.

use super::super::rng::derive_seed;
use super::driver::Run;
use super::ledger::{concurrent_tag, payload_for};
use super::plan::SIM_JOURNAL_DIR;
use super::HOLD_BACK_STREAM;
use crate::error::JournalError;
use crate::journal::Journal;
use crate::Lsn;

impl Run<'_> {
    /// Runs [`SimStep::AppendConcurrent`]; false when the run cannot go on.
    pub(super) fn append_concurrent(
        &mut self,
        index: usize,
        journal: &Journal,
        threads: u32,
        records_per_thread: u32,
    ) -> bool {
        type Appended = Vec<(Lsn, Vec<u8>, u64)>;
        let (seed, incarnation) = (self.seed, self.incarnation);
        let (min_bytes, max_bytes) = (self.plan.min_payload_bytes, self.plan.max_payload_bytes);
        let fs = &self.fs;
        // Writes of different groups complete in seeded adversarial orders meanwhile.
        fs.hold_back_writes(Some(derive_seed(seed, &[HOLD_BACK_STREAM, index as u64])));
        // Each thread: (LSN, payload, operations done when its acknowledgement had returned).
        let outcomes: Vec<Result<Appended, JournalError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|thread| {
                    scope.spawn(move || {
                        let mut appended = Vec::new();
                        for sequence in 0..records_per_thread {
                            let tag = concurrent_tag(index, thread, sequence);
                            let payload = payload_for(seed, incarnation, tag, min_bytes, max_bytes);
                            let lsn = journal.append(&payload)?;
                            journal.wait_durable(lsn)?;
                            appended.push((lsn, payload, fs.ops()));
                        }
                        Ok(appended)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(JournalError::io(
                            "append",
                            SIM_JOURNAL_DIR,
                            0,
                            std::io::Error::other("an appending thread panicked"),
                        ))
                    })
                })
                .collect()
        });
        fs.hold_back_writes(None);
        let mut appended = Vec::new();
        let mut failure = None;
        for outcome in outcomes {
            match outcome {
                Ok(records) => appended.extend(records),
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        // Whatever got an LSN was written (or is in flight): I3 must accept it.
        for (lsn, payload, _) in &appended {
            self.ledger.written.insert(*lsn, payload.clone());
        }
        // Each state taken meanwhile is held to the acknowledgements returned before it.
        let mut timeline: Vec<(u64, Lsn)> = appended.iter().map(|(l, _, o)| (*o, *l)).collect();
        timeline.sort_unstable();
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
        if let Some(err) = failure {
            self.engine_failed(index, "concurrent append", &err);
            return false;
        }
        let expected: Vec<Lsn> = (self.ledger.next_lsn..).take(appended.len()).collect();
        let mut got: Vec<Lsn> = appended.iter().map(|(lsn, _, _)| *lsn).collect();
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
        self.ledger.next_lsn += appended.len() as u64;
        self.ledger.acked = self.ledger.acked.max(self.ledger.next_lsn - 1);
        self.report.acks += appended.len() as u64;
        self.check(index);
        !self.stopped()
    }
}
