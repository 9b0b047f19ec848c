//! Writing one group: its records are checked and stamped right before they go to the disk,
//! its whole blocks written in one submission and, in fdatasync mode, synced. A group counts
//! as written only once every group before it has been.

#[cfg(feature = "mutants")]
use std::sync::Arc;

use super::segments::segment_path;
use super::{lock, round_up, Inner};
use crate::error::JournalError;
#[cfg(feature = "mutants")]
use crate::mutants::Mutant;
use crate::record;
use crate::storage::{AlignedBuf, SegmentFile};
use crate::Lsn;

impl Inner {
    /// Writes (and in fdatasync mode syncs) the blocks of one group; returns the buffer.
    pub(super) fn write_blocks(
        &self,
        file: &dyn SegmentFile,
        mut batch: AlignedBuf,
        group: u64,
        base: u64,
        end: usize,
        new_from: usize,
    ) -> Result<Option<AlignedBuf>, JournalError> {
        if end == new_from {
            self.wait_and_mark_written(group)?;
            return Ok(Some(batch));
        }
        let padded = round_up(end as u64, self.alignment as u64) as usize;
        batch[end..padded].fill(0);
        // A group that moved to a fresh block (new_from == one block, all zeros before it)
        // does not write its first block at all.
        let first = if new_from == self.alignment && batch[..new_from].iter().all(|&b| b == 0) {
            new_from
        } else {
            0
        };
        // M1 (ack before durable): the write and sync run in the background and the group is
        // acknowledged as soon as they are submitted; their errors are never seen.
        #[cfg(feature = "mutants")]
        if self.mutant_is(Mutant::M1) {
            let file = Arc::clone(&lock(&self.writer).file);
            let sync = self.sync_after_write;
            std::thread::spawn(move || {
                let (_, result) = file.write_at(base + first as u64, batch, first..padded);
                if result.is_ok() && sync {
                    let _ = file.sync_data();
                }
            });
            self.wait_and_mark_written(group)?;
            return Ok(None);
        }
        let (back, result) = file.write_at(base + first as u64, batch, first..padded);
        result.map_err(|err| JournalError::io("write", self.current_path(), base, err))?;
        self.wait_and_mark_written(group)?;
        // M6 (O_DIRECT taken for durable): no fdatasync after the write.
        #[cfg(feature = "mutants")]
        if self.mutant_is(Mutant::M6) {
            return Ok(back);
        }
        if self.sync_after_write {
            self.sync_group(file, base)?;
        }
        Ok(back)
    }

    /// The fdatasync that ends a group in fdatasync mode (and with buffered I/O).
    fn sync_group(&self, file: &dyn SegmentFile, base: u64) -> Result<(), JournalError> {
        let synced = file.sync_data();
        // M3 (fsync retried after EIO) and M10 (fsync error ignored): a failed sync is
        // retried and trusted when the retry succeeds, or taken for a success outright.
        #[cfg(feature = "mutants")]
        let synced = match synced {
            Err(_) if self.mutant_is(Mutant::M10) => Ok(()),
            Err(_) if self.mutant_is(Mutant::M3) => file.sync_data(),
            other => other,
        };
        synced.map_err(|err| JournalError::io("fdatasync", self.current_path(), base, err))
    }

    /// Path of the segment being appended to, for error messages.
    fn current_path(&self) -> std::path::PathBuf {
        segment_path(&self.dir, lock(&self.writer).segment)
    }

    /// Marks `group` written once every group before it is (M13 does not wait), under one
    /// acquisition of the state lock. Fails when the journal got poisoned meanwhile.
    fn wait_and_mark_written(&self, group: u64) -> Result<(), JournalError> {
        let mut state = lock(&self.state);
        while !state.poisoned && state.written_group + 1 < group && !self.acks_out_of_order() {
            state = self.wait_pipeline(state);
        }
        if state.poisoned {
            return Err(JournalError::Poisoned);
        }
        state.written_group = state.written_group.max(group);
        let notify = state.pipeline_waiters > 0;
        drop(state);
        if notify {
            self.pipeline.notify_all();
        }
        Ok(())
    }

    /// Start of the first record of `batch[from..end]` that ends after `tail_start` (`end`
    /// when none does; `from` when a header is unreadable, so that the whole range gets
    /// checked, and rejected, at once).
    pub(super) fn first_record_reaching(
        batch: &[u8],
        from: usize,
        end: usize,
        tail_start: usize,
    ) -> usize {
        let mut at = from;
        while at < end {
            let span = record::parse_header(&batch[at..end])
                .map_or(0, |h| record::record_span_bytes(h.len as usize));
            if span == 0 || at + span > end {
                return from;
            }
            if at + span > tail_start {
                return at;
            }
            at += span;
        }
        end
    }

    /// Checks every record of a group right before it goes to the disk, and stamps the LSN
    /// known durable now: records of this group after a torn one then show whether the torn
    /// one had been acknowledged.
    pub(super) fn check_and_stamp(
        &self,
        batch: &mut AlignedBuf,
        from: usize,
        end: usize,
        synced: Lsn,
    ) -> Result<(), JournalError> {
        let mut at = from;
        while at < end {
            let header = record::parse_header(&batch[at..end]);
            let span = header.map_or(0, |h| record::record_span_bytes(h.len as usize));
            if span == 0
                || at + span > end
                || !record::restamp_synced_lsn(&mut batch[at..at + span], synced)
            {
                return Err(JournalError::ChecksumBeforeWrite {
                    lsn: header.map_or(0, |h| h.lsn),
                });
            }
            at += span;
        }
        Ok(())
    }
}
