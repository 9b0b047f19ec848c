//! The journal: staging, group commit, segments, poisoning.
//!
//! Appenders encode their record into the active staging buffer under a short lock and get an
//! LSN. Whoever then needs durability and finds no flush running becomes the leader: it takes
//! the active buffer (leaving a fresh one that starts with a copy of the partial tail block),
//! checks and stamps every record, writes the whole blocks in one submission, syncs, and wakes
//! every waiter. Appends continue into the fresh buffer meanwhile, and form the next group,
//! which may be written while the previous one still is (`max_groups_in_flight`).
//!
//! Waiters park on their own thread handle rather than on a shared condition variable: the
//! leader of a completed group unparks exactly the threads whose records it made durable,
//! after releasing the state lock, and they return without taking the lock again (a shared
//! condition variable would wake them all into a convoy on the mutex, one hand-off at a time).
//!
//! The parts: `open` (locking, recovery hand-off, segment set-up), `staging` (appending into
//! the staging buffer), `commit` (group commit: leading, pipelining, acknowledging),
//! `group_write` (checking, stamping, writing and syncing one group's blocks), `segments`
//! (preparation, rotation, retirement, recycling), `state` (what the state lock guards) and
//! `report` (what opening found).

mod commit;
mod group_write;
mod open;
mod report;
mod segments;
mod staging;
mod state;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::dir_lock::DirLock;
use crate::error::JournalError;
#[cfg(feature = "mutants")]
use crate::mutants::{self, Mutant};
use crate::options::JournalOptions;
use crate::recovery::RecordView;
use crate::storage::{RealStorage, Storage};
use crate::Lsn;

pub use report::OpenReport;
pub use state::JournalStats;

use segments::Writer;
use state::{check_usable, State};

/// What the journal's handles share.
struct Inner {
    dir: PathBuf,
    options: JournalOptions,
    storage: Arc<dyn Storage>,
    alignment: usize,
    segment_bytes: u64,
    max_payload_bytes: usize,
    sync_after_write: bool,
    state: Mutex<State>,
    /// Woken when a flush ends, for anyone waiting for something other than their own group
    /// (staging space, rotation, close). Notified only when `other_waiters > 0`.
    changed: Condvar,
    /// `State::durable_lsn`, readable without the lock by parked waiters.
    durable_lsn_published: AtomicU64,
    /// Leaders of overlapping groups wait here for earlier groups' writes or durability.
    pipeline: Condvar,
    max_in_flight: usize,
    writer: Mutex<Writer>,
    /// The exclusive lock on `dir`, held while anything of the journal lives.
    _dir_lock: DirLock,
}

/// An append-only journal. `Send + Sync`: share it with `Arc` across threads.
pub struct Journal {
    inner: Arc<Inner>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("alignment", &self.inner.alignment)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves data that is still structurally valid.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

fn real_storage(dir: &Path, options: &JournalOptions) -> Result<Arc<dyn Storage>, JournalError> {
    let storage = RealStorage::new(options.io_path, options.max_write_chunk_bytes)
        .map_err(|err| JournalError::io("set up io_uring", dir, 0, err))?;
    Ok(Arc::new(storage))
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` on the real file system.
    pub fn open(
        dir: &Path,
        options: JournalOptions,
    ) -> Result<(Journal, OpenReport), JournalError> {
        let storage = real_storage(dir, &options)?;
        Journal::open_with_storage(dir, options, storage)
    }

    /// Opens the journal through a given storage (e.g. a [`crate::FaultyStorage`]).
    pub fn open_with_storage(
        dir: &Path,
        options: JournalOptions,
        storage: Arc<dyn Storage>,
    ) -> Result<(Journal, OpenReport), JournalError> {
        Journal::open_with_storage_visiting(dir, options, storage, &mut |_| {})
    }

    /// [`Journal::open`] that shows each recovered record to `visit` as the open's recovery
    /// streams past it (the journal keeps none of them).
    pub fn open_visiting(
        dir: &Path,
        options: JournalOptions,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> Result<(Journal, OpenReport), JournalError> {
        let storage = real_storage(dir, &options)?;
        Journal::open_with_storage_visiting(dir, options, storage, visit)
    }

    /// [`Journal::open_with_storage`] with a visitor of the recovered records.
    pub fn open_with_storage_visiting(
        dir: &Path,
        options: JournalOptions,
        storage: Arc<dyn Storage>,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> Result<(Journal, OpenReport), JournalError> {
        let (inner, report) = open::open(dir, options, storage, visit)?;
        Ok((Journal { inner }, report))
    }

    /// Largest payload accepted by [`Journal::append`].
    pub fn max_payload_bytes(&self) -> usize {
        self.inner.max_payload_bytes
    }

    /// Stages a record and assigns its LSN. Not durable yet: see [`Journal::commit`].
    pub fn append(&self, payload: &[u8]) -> Result<Lsn, JournalError> {
        self.inner.append(payload)
    }

    /// Makes everything appended before the call durable; returns the highest durable LSN.
    pub fn commit(&self) -> Result<Lsn, JournalError> {
        let target = {
            let state = lock(&self.inner.state);
            check_usable(&state)?;
            state.next_lsn - 1
        };
        self.inner.wait_durable(target)
    }

    /// Appends a record and waits for a group commit that covers it.
    pub fn append_durable(&self, payload: &[u8]) -> Result<Lsn, JournalError> {
        let (state, lsn) = self.inner.append_locked(payload)?;
        self.inner.wait_durable_locked(state, lsn)?;
        Ok(lsn)
    }

    /// Waits until `lsn` is durable (starting a group commit if none is running).
    pub fn wait_durable(&self, lsn: Lsn) -> Result<Lsn, JournalError> {
        self.inner.wait_durable(lsn)
    }

    /// Highest durable LSN.
    pub fn durable_lsn(&self) -> Lsn {
        lock(&self.inner.state).durable_lsn
    }

    /// Counters since open.
    pub fn stats(&self) -> JournalStats {
        lock(&self.inner.state).stats
    }

    /// Whether an I/O error poisoned the journal.
    pub fn is_poisoned(&self) -> bool {
        lock(&self.inner.state).poisoned
    }

    /// Makes everything appended durable, seals the current segment and continues in the next
    /// one. A segment without records is not sealed (no-op).
    pub fn rotate(&self) -> Result<(), JournalError> {
        self.inner.rotate()
    }

    /// Commits everything, truncates an append-mode segment to its logical size and closes.
    pub fn close(self) -> Result<(), JournalError> {
        self.commit()?;
        let logical_end = self.inner.close_staging()?;
        self.inner.close_segment(logical_end)
    }

    /// Retires every sealed segment whose records all have LSNs below `lsn` (the caller no
    /// longer needs them): the files go to the free list and are reused by later rotations.
    /// Returns how many were retired.
    pub fn retire_before(&self, lsn: Lsn) -> Result<usize, JournalError> {
        self.inner.retire_before(lsn)
    }

    /// Waits until the background preparation of the next segment (if any) has finished, so
    /// that measurements do not include it. A preparation failure poisons the journal.
    pub fn wait_for_prepared_segment(&self) -> Result<(), JournalError> {
        self.inner.wait_for_prepared_segment()
    }

    /// Options the journal was opened with.
    pub fn options(&self) -> &JournalOptions {
        &self.inner.options
    }
}

impl Inner {
    /// Whether the journal runs the deliberately broken variant `which`.
    #[cfg(feature = "mutants")]
    fn mutant_is(&self, which: Mutant) -> bool {
        mutants::selected(self.options.mutant, which)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Join a running segment preparation so no thread outlives the journal's files.
        let handle = lock(&self.inner.writer).ahead.take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

// Journals are shared across threads with Arc.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Journal>();
    assert_send_sync::<OpenReport>();
};
