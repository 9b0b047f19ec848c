//! What the state lock guards: the staging buffers, the LSN counters, the groups in flight, the
//! parked waiters and the statistics.

use std::thread::Thread;
use std::time::Instant;

use crate::error::JournalError;
use crate::options::MAX_GROUPS_IN_FLIGHT;
use crate::storage::AlignedBuf;
use crate::Lsn;

pub(super) struct State {
    pub(super) active: AlignedBuf,
    /// File offset of `active[0]` (a multiple of the alignment).
    pub(super) active_base: u64,
    /// Bytes of `active` in use.
    pub(super) active_len: usize,
    /// Where the records not yet handed to a flush begin in `active` (before: the copy of the
    /// tail block, already written).
    pub(super) active_new_from: usize,
    /// Staging buffers not in use.
    pub(super) spares: Vec<AlignedBuf>,
    pub(super) generation: u32,
    pub(super) next_lsn: Lsn,
    pub(super) durable_lsn: Lsn,
    /// Group commits running (at most `max_in_flight`).
    pub(super) in_flight: usize,
    pub(super) rotate_requested: bool,
    pub(super) poisoned: bool,
    pub(super) closed: bool,
    pub(super) records_in_segment: u64,
    /// Group commits started so far.
    pub(super) groups_started: u64,
    /// Highest LSN of group g at index g % MAX_GROUPS_IN_FLIGHT (valid while g runs).
    pub(super) group_targets: [Lsn; MAX_GROUPS_IN_FLIGHT],
    /// Every group up to this one has completed its writes.
    pub(super) written_group: u64,
    /// Every group up to this one is durable (and acknowledged).
    pub(super) durable_group: u64,
    /// Threads waiting on `changed`.
    pub(super) other_waiters: usize,
    /// Threads waiting on `pipeline`.
    pub(super) pipeline_waiters: usize,
    /// When the oldest record not yet handed to a group was staged.
    pub(super) first_staged_at: Option<Instant>,
    /// Threads parked until their record is durable (or until asked to lead a group).
    pub(super) durable_waiters: Vec<DurableWaiter>,
    /// Identifies the next entry of `durable_waiters`.
    pub(super) next_waiter_id: u64,
    /// Statistics.
    pub(super) stats: JournalStats,
}

/// Where appends continue after opening: the segment, its first free byte and what the
/// staging buffer already holds of the block that byte is in.
pub(super) struct StagingStart {
    /// The staging buffer, starting with the partial tail block (if any).
    pub(super) active: AlignedBuf,
    /// File offset of the tail block.
    pub(super) base: u64,
    /// Bytes of the tail block already in the file.
    pub(super) tail_len: usize,
    /// Generation of the segment appends continue in.
    pub(super) generation: u32,
    /// LSN of the next record.
    pub(super) next_lsn: Lsn,
    /// Records of the log already in that segment.
    pub(super) records_in_segment: u64,
}

impl State {
    pub(super) fn new(start: StagingStart, spares: Vec<AlignedBuf>) -> State {
        State {
            active: start.active,
            active_base: start.base,
            active_len: start.tail_len,
            active_new_from: start.tail_len,
            spares,
            generation: start.generation,
            next_lsn: start.next_lsn,
            durable_lsn: start.next_lsn - 1,
            in_flight: 0,
            rotate_requested: false,
            poisoned: false,
            closed: false,
            records_in_segment: start.records_in_segment,
            groups_started: 0,
            group_targets: [0; MAX_GROUPS_IN_FLIGHT],
            written_group: 0,
            durable_group: 0,
            other_waiters: 0,
            pipeline_waiters: 0,
            first_staged_at: None,
            durable_waiters: Vec::new(),
            next_waiter_id: 0,
            stats: JournalStats::default(),
        }
    }

    /// Highest LSN handed to a group so far.
    pub(super) fn groups_started_target(&self) -> Lsn {
        if self.in_flight == 0 {
            self.durable_lsn
        } else {
            self.group_targets[slot(self.groups_started)]
        }
    }

    /// Appends continue at the start of a fresh segment of generation `generation`.
    pub(super) fn switch_segment(&mut self, generation: u32) {
        self.rotate_requested = false;
        self.generation = generation;
        self.active_base = 0;
        self.active_len = 0;
        self.active_new_from = 0;
        self.records_in_segment = 0;
        self.stats.rotations += 1;
    }
}

/// Where group `group`'s highest LSN is kept in `State::group_targets`.
pub(super) fn slot(group: u64) -> usize {
    (group % MAX_GROUPS_IN_FLIGHT as u64) as usize
}

pub(super) fn check_usable(state: &State) -> Result<(), JournalError> {
    if state.poisoned {
        return Err(JournalError::Poisoned);
    }
    if state.closed {
        return Err(JournalError::Closed);
    }
    Ok(())
}

/// A thread parked in `wait_durable`. Whoever completes a group removes the entries it
/// satisfies and unparks their threads after releasing the state lock, so each woken thread
/// goes on without touching the lock (no convoy of wake-ups through the mutex).
pub(super) struct DurableWaiter {
    pub(super) lsn: Lsn,
    pub(super) id: u64,
    pub(super) thread: Thread,
}

/// Counters of a journal since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Group commits written.
    pub groups: u64,
    /// Records made durable.
    pub records: u64,
    /// Bytes handed to the kernel by group commits (tail rewrites and padding included).
    pub bytes_written: u64,
    /// Segment rotations.
    pub rotations: u64,
    /// Groups that started at a fresh block because the group before was still being written.
    pub fresh_block_groups: u64,
    /// Sum over written groups of the time from submitting a group's write to its completion
    /// (its sync included in fdatasync mode), in microseconds.
    pub group_write_us: u64,
    /// Records of the largest group commit.
    pub max_group_records: u64,
    /// Sum over written groups of the time their oldest record waited in staging before the
    /// group started, in microseconds.
    pub group_start_wait_us: u64,
    /// Sum over written groups of the time from the end of their write to their
    /// acknowledgement (waiting for earlier groups), in microseconds.
    pub group_ack_wait_us: u64,
}
