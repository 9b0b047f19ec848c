//! Group commit: who leads a group, how groups overlap (pipelining), and how they are
//! acknowledged, strictly in order, waking exactly the waiters they satisfy.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::thread::Thread;
use std::time::Instant;

use super::segments::SealInfo;
use super::state::{check_usable, slot, DurableWaiter, State};
use super::{lock, Inner};
use crate::error::JournalError;
#[cfg(feature = "mutants")]
use crate::mutants::Mutant;
use crate::storage::AlignedBuf;
use crate::Lsn;

/// A group commit, from its leader taking the staged records to their acknowledgement.
struct Group {
    /// Groups are numbered 1, 2, 3, ... in the order they start.
    number: u64,
    /// Whether the segment is sealed after this group (a rotation).
    rotate: bool,
    /// Records of the current segment, this group's included.
    records_in_segment: u64,
    /// When the group's oldest record was staged.
    staged_at: Option<Instant>,
    /// The group's highest LSN.
    target: Lsn,
    /// LSN known durable when the group started, stamped into its records.
    synced: Lsn,
    /// File offset of the group's buffer.
    base: u64,
    /// End of the group's records in its buffer.
    end: usize,
    /// Where the group's own records begin in its buffer (before: the tail block of the
    /// group before, already written).
    new_from: usize,
    /// Records from here on reach into the tail block; they are stamped under the lock.
    split: usize,
    /// Whether the group starts at the next block boundary rather than rewriting the tail
    /// block of a group still being written.
    start_fresh_block: bool,
    /// How far the records move when the group starts at a fresh block.
    shift: usize,
}

/// What a group's write gives back: its buffer (None when the buffer had to be leaked) and,
/// after a rotation, the generation of the segment appends continue in.
type Written = (Option<AlignedBuf>, Option<u32>);

/// When a group's write ran, for the statistics.
struct GroupTiming {
    write_us: u64,
    start_wait_us: u64,
    write_ended: Instant,
}

impl Inner {
    pub(super) fn wait_durable(&self, lsn: Lsn) -> Result<Lsn, JournalError> {
        self.wait_durable_locked(lock(&self.state), lsn)
    }

    /// [`Inner::wait_durable`] from a state lock already held (`append_durable` keeps the one
    /// its append took: one acquisition of the lock per record instead of two).
    pub(super) fn wait_durable_locked<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        lsn: Lsn,
    ) -> Result<Lsn, JournalError> {
        loop {
            check_usable(&state)?;
            if state.durable_lsn >= lsn {
                return Ok(state.durable_lsn);
            }
            // The groups in flight are durable_group + 1 ..= groups_started; is lsn in one?
            let covered = state.in_flight > 0
                && (state.durable_group + 1..=state.groups_started)
                    .any(|g| lsn <= state.group_targets[slot(g)]);
            if !covered && self.can_lead(&state) {
                let (next, result) = self.lead_and_release(state);
                result?;
                state = match next {
                    Some(state) => state,
                    None => {
                        // The lock was released to wake the group's waiters; the durable LSN
                        // it published covers this record unless another thread's group
                        // failed before it.
                        let durable = self.durable_lsn_published.load(Ordering::Acquire);
                        if durable >= lsn {
                            return Ok(durable);
                        }
                        lock(&self.state)
                    }
                };
                continue;
            }
            // Park until a completed group covers lsn (or this thread is asked to lead).
            let id = state.next_waiter_id;
            state.next_waiter_id += 1;
            state.durable_waiters.push(DurableWaiter {
                lsn,
                id,
                thread: std::thread::current(),
            });
            drop(state);
            std::thread::park();
            let durable = self.durable_lsn_published.load(Ordering::Acquire);
            if durable >= lsn {
                return Ok(durable);
            }
            // Woken to lead, by poisoning, or spuriously: look again under the lock.
            state = lock(&self.state);
            state.durable_waiters.retain(|waiter| waiter.id != id);
        }
    }

    /// Whether a new group commit may start now: below the pipeline depth, something staged,
    /// and a rotation only ever runs alone.
    pub(super) fn can_lead(&self, state: &State) -> bool {
        if state.poisoned || state.in_flight >= self.max_in_flight {
            return false;
        }
        if state.in_flight == 0 {
            return true;
        }
        !state.rotate_requested && state.active_len > state.active_new_from
    }

    pub(super) fn wait_changed<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        state.other_waiters += 1;
        let mut state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        state.other_waiters -= 1;
        state
    }

    /// Waits on `pipeline` (for an earlier group's write or acknowledgement), counted in
    /// `pipeline_waiters` so that completions notify only when someone waits.
    pub(super) fn wait_pipeline<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        state.pipeline_waiters += 1;
        let mut state = self.pipeline.wait(state).unwrap_or_else(|p| p.into_inner());
        state.pipeline_waiters -= 1;
        state
    }

    /// Waits for the groups in flight to finish, then refuses every later call. Returns the
    /// logical end of the current segment.
    pub(super) fn close_staging(&self) -> Result<u64, JournalError> {
        let mut state = lock(&self.state);
        while state.in_flight > 0 {
            state = self.wait_changed(state);
        }
        check_usable(&state)?;
        state.closed = true;
        Ok(state.active_base + state.active_len as u64)
    }

    /// Runs one group commit as the leader. Called with the state locked and `can_lead`
    /// true; returns with the state locked again.
    ///
    /// Several groups may be written at once. A group starts with the partial last block of
    /// the group before; it rewrites that block only when the earlier write has completed,
    /// else it moves to the next block boundary (a zero gap recovery steps over). Groups are
    /// acknowledged strictly in order.
    pub(super) fn lead<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
    ) -> (MutexGuard<'a, State>, Result<(), JournalError>) {
        let (state, result) = self.lead_and_release(state);
        (state.unwrap_or_else(|| lock(&self.state)), result)
    }

    /// [`Inner::lead`] that returns without the state lock (None) when it released it to wake
    /// waiters, so that a caller with nothing more to do under the lock need not take it again.
    fn lead_and_release<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> (Option<MutexGuard<'a, State>>, Result<(), JournalError>) {
        let (mut group, mut batch) = self.start_group(&mut state);
        let stamped_tail = self.carry_tail_block(&mut state, &mut group, &mut batch);
        drop(state);

        let stamped = stamped_tail.and_then(|()| {
            self.check_and_stamp(&mut batch, group.new_from, group.split, group.synced)
        });
        if group.start_fresh_block {
            move_to_fresh_block(&mut group, &mut batch, self.alignment);
        }
        let write_started = Instant::now();
        let start_wait_us = group
            .staged_at
            .map_or(0, |at| (write_started - at).as_micros() as u64);
        let result = stamped.and_then(|()| self.write_group(&group, batch));
        let write_ended = Instant::now();
        let timing = GroupTiming {
            write_us: (write_ended - write_started).as_micros() as u64,
            start_wait_us,
            write_ended,
        };
        let (mut state, result) = self.acknowledge(lock(&self.state), &group, result, &timing);
        if state.pipeline_waiters > 0 {
            self.pipeline.notify_all();
        }
        self.durable_lsn_published
            .store(state.durable_lsn, Ordering::Release);
        let to_wake = threads_to_wake(&mut state);
        if state.other_waiters > 0 || state.poisoned {
            self.changed.notify_all();
        }
        if to_wake.is_empty() {
            return (Some(state), result);
        }
        drop(state);
        for thread in to_wake {
            thread.unpark();
        }
        (None, result)
    }

    /// Starts a group under the state lock: numbers it and takes the active buffer, leaving a
    /// spare in its place.
    fn start_group(&self, state: &mut State) -> (Group, AlignedBuf) {
        assert!(self.can_lead(state));
        let rotate = state.rotate_requested;
        assert!(!rotate || state.in_flight == 0, "a rotation runs alone");
        state.in_flight += 1;
        state.groups_started += 1;
        let number = state.groups_started;
        let target = state.next_lsn - 1;
        state.group_targets[slot(number)] = target;
        let end = state.active_len;
        let new_from = state.active_new_from;
        // The first block holds the previous group's last bytes when new_from > 0. Rewriting
        // it while that group's write may still be running could let the older write land
        // last; so then this group starts at the next block boundary instead, leaving zeros
        // between the two groups (recovery steps over such a gap, see docs/journal-format.md).
        let previous_written = state.written_group + 1 >= number;
        let start_fresh_block = new_from > 0 && end > new_from && !previous_written;
        let group = Group {
            number,
            rotate,
            records_in_segment: state.records_in_segment,
            staged_at: state.first_staged_at.take(),
            target,
            synced: self.durable_stamp(state, target),
            base: state.active_base,
            end,
            new_from,
            split: end,
            start_fresh_block,
            shift: 0,
        };
        let fresh = state
            .spares
            .pop()
            .unwrap_or_else(|| AlignedBuf::new(state.active.capacity(), self.alignment));
        let batch = std::mem::replace(&mut state.active, fresh);
        (group, batch)
    }

    /// Still under the state lock: stamps the records reaching into the group's last, partial
    /// block and copies that block to the start of the new active buffer, where the next group
    /// continues it.
    fn carry_tail_block(
        &self,
        state: &mut State,
        group: &mut Group,
        batch: &mut AlignedBuf,
    ) -> Result<(), JournalError> {
        let (base, end, new_from) = (group.base, group.end, group.new_from);
        assert!(end <= batch.capacity(), "staging overrun");
        assert_eq!(
            base % self.alignment as u64,
            0,
            "group base must be block aligned"
        );
        // Positions in the written buffer are those of `batch` plus `shift`: a group that
        // starts at a fresh block has its records moved there (outside the lock, later).
        let block = self.alignment;
        if group.start_fresh_block {
            group.shift = block - new_from;
            state.stats.fresh_block_groups += 1;
            assert!(
                block + (end - new_from) <= batch.capacity(),
                "block slack reserved by append"
            );
        }
        let shift = group.shift;
        let tail_start = (end + shift) / block * block - shift;
        // The records reaching into the tail block are stamped before that block is copied:
        // the next group then rewrites it with exactly the bytes this group writes, never
        // changing an acknowledged byte. The others are stamped after the lock is released.
        group.split = Self::first_record_reaching(batch, new_from, end, tail_start);
        let stamped_tail = self.check_and_stamp(batch, group.split, end, group.synced);
        let tail_len = end - tail_start;
        state.active[..tail_len].copy_from_slice(&batch[tail_start..end]);
        // M5 (tail block rebuilt from a zeroed buffer): the next group rewrites the partial
        // tail block with zeros where this group's acknowledged bytes are.
        #[cfg(feature = "mutants")]
        if self.mutant_is(Mutant::M5) {
            state.active[..tail_len].fill(0);
        }
        state.active_base = base + (tail_start + shift) as u64;
        state.active_len = tail_len;
        state.active_new_from = tail_len;
        stamped_tail
    }

    /// Writes the group's blocks and, for a rotation, seals the segment and switches to the
    /// next one.
    fn write_group(&self, group: &Group, batch: AlignedBuf) -> Result<Written, JournalError> {
        let file = Arc::clone(&lock(&self.writer).file);
        let returned = self.write_blocks(
            file.as_ref(),
            batch,
            group.number,
            group.base,
            group.end,
            group.new_from,
        )?;
        let rotated = match group.rotate {
            true => Some(self.seal_and_switch(SealInfo {
                records_in_segment: group.records_in_segment,
                last_lsn: group.target,
                logical_end: group.base + group.end as u64,
            })?),
            false => None,
        };
        Ok((returned, rotated))
    }

    /// The LSN stamped into a group's records as known durable when it started: records up to
    /// it are vouched for, so recovery calls a hole below it corruption rather than a torn tail.
    /// M14 stamps the group's own last LSN, vouching for groups still in flight.
    fn durable_stamp(&self, state: &State, target: Lsn) -> Lsn {
        #[cfg(feature = "mutants")]
        if self.mutant_is(Mutant::M14) {
            return target;
        }
        let _ = target;
        state.durable_lsn
    }

    /// Whether M13 runs: a pipelined group trusts completion order, waiting neither for the
    /// groups before it to be written nor to be acknowledged.
    pub(super) fn acks_out_of_order(&self) -> bool {
        #[cfg(feature = "mutants")]
        return self.mutant_is(Mutant::M13);
        #[cfg(not(feature = "mutants"))]
        false
    }

    /// Acknowledges a written group once every group before it is acknowledged, or poisons
    /// the journal when its write failed.
    fn acknowledge<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        group: &Group,
        result: Result<Written, JournalError>,
        timing: &GroupTiming,
    ) -> (MutexGuard<'a, State>, Result<(), JournalError>) {
        // Acknowledge in order: wait for the group before this one. M13 does not wait.
        while result.is_ok()
            && !state.poisoned
            && state.durable_group + 1 < group.number
            && !self.acks_out_of_order()
        {
            state = self.wait_pipeline(state);
        }
        state.in_flight -= 1;
        let result = match result {
            Ok(_) if state.poisoned => Err(JournalError::Poisoned),
            Ok((returned, rotated)) => {
                state.spares.extend(returned);
                if group.end > group.new_from {
                    self.count_group(&mut state, group, timing);
                }
                state.durable_group = group.number;
                state.written_group = state.written_group.max(group.number);
                state.durable_lsn = state.durable_lsn.max(group.target);
                if let Some(generation) = rotated {
                    state.switch_segment(generation);
                }
                Ok(())
            }
            Err(err) => {
                // Never retry: whatever the kernel did with the pages, their state is unknown.
                state.poisoned = true;
                Err(err)
            }
        };
        (state, result)
    }

    /// Adds a written group to the statistics (before its records count as durable).
    fn count_group(&self, state: &mut State, group: &Group, timing: &GroupTiming) {
        let records = group.target - state.durable_lsn;
        let stats = &mut state.stats;
        stats.groups += 1;
        stats.records += records;
        stats.max_group_records = stats.max_group_records.max(records);
        stats.group_write_us += timing.write_us;
        stats.group_start_wait_us += timing.start_wait_us;
        stats.group_ack_wait_us += timing.write_ended.elapsed().as_micros() as u64;
        stats.bytes_written += (group.end.div_ceil(self.alignment) * self.alignment) as u64;
    }
}

/// Moves a group's records to the start of the next block, zeros before them: the group
/// leaves the tail block of the group before alone.
fn move_to_fresh_block(group: &mut Group, batch: &mut AlignedBuf, block: usize) {
    batch.copy_within(group.new_from..group.end, block);
    batch[..block].fill(0);
    group.end += group.shift;
    group.new_from = block;
}

/// Takes from the parked waiters those a just-acknowledged group released: every one whose
/// record is now durable (all of them when the journal is poisoned), and, first, one waiter of
/// records no group covers yet, to lead the next group.
fn threads_to_wake(state: &mut State) -> Vec<Thread> {
    let mut to_wake = Vec::new();
    if state.poisoned {
        to_wake.extend(state.durable_waiters.drain(..).map(|waiter| waiter.thread));
        return to_wake;
    }
    let durable = state.durable_lsn;
    let mut index = 0;
    while index < state.durable_waiters.len() {
        if state.durable_waiters[index].lsn <= durable {
            to_wake.push(state.durable_waiters.swap_remove(index).thread);
        } else {
            index += 1;
        }
    }
    let covered = state.groups_started_target();
    if state.next_lsn - 1 > covered {
        // Records wait that no group covers: wake one of their waiters to lead, first, so
        // that the next group is not held up by the other wake-ups.
        if let Some(index) = state
            .durable_waiters
            .iter()
            .position(|waiter| waiter.lsn > covered)
        {
            let leader = state.durable_waiters.swap_remove(index).thread;
            to_wake.insert(0, leader);
        }
    }
    to_wake
}
