//! A [`Storage`] wrapper that fails chosen writes and syncs, for the poisoning tests and the
//! in-process fault runs.

use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{AlignedBuf, IoPath, OpenFlags, ReadFile, SegmentFile, Storage, WriteOutcome};
use crate::dir_lock::{DirLock, DirLockError, LockMode};

/// Which operations a [`FaultyStorage`] fails. Counting starts at 1 and covers every file of
/// the storage: `fail_write_at: Some(3)` fails the third write overall.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Fail the Nth write (EIO), and every write after it while the plan is armed.
    pub fail_write_at: Option<u64>,
    /// Fail the Nth fdatasync or directory fsync (EIO), and every one after it.
    pub fail_sync_at: Option<u64>,
}

#[derive(Debug, Default)]
struct FaultState {
    plan: Mutex<FaultPlan>,
    writes: AtomicU64,
    syncs: AtomicU64,
}

impl FaultState {
    fn check_write(&self) -> io::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        match self.plan.lock().map(|plan| plan.fail_write_at) {
            Ok(Some(at)) if n >= at => Err(injected("write", n)),
            _ => Ok(()),
        }
    }
    fn check_sync(&self) -> io::Result<()> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        match self.plan.lock().map(|plan| plan.fail_sync_at) {
            Ok(Some(at)) if n >= at => Err(injected("sync", n)),
            _ => Ok(()),
        }
    }
}

/// The error of the `n`th `op` (counted from 1) failed by the plan: of the kind EIO has, and
/// saying which call it was, so that a test's failure message points at the planned fault.
fn injected(op: &str, n: u64) -> io::Error {
    io::Error::new(
        io::Error::from_raw_os_error(libc::EIO).kind(),
        format!("injected EIO: {op} number {n} failed as the fault plan asks"),
    )
}

/// Wraps a storage and fails chosen writes and syncs with an EIO error (without performing
/// them), for
/// the poisoning tests and the in-process fault runs. Cheap to clone; clones share counters.
#[derive(Debug, Clone)]
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    state: Arc<FaultState>,
}

impl FaultyStorage {
    /// Wraps `inner` with no fault armed.
    pub fn new(inner: Arc<dyn Storage>) -> FaultyStorage {
        FaultyStorage {
            inner,
            state: Arc::new(FaultState::default()),
        }
    }
    /// Arms a plan (counters keep running).
    pub fn set_plan(&self, plan: FaultPlan) {
        if let Ok(mut guard) = self.state.plan.lock() {
            *guard = plan;
        }
    }
    /// Disarms every fault: later operations succeed again.
    pub fn clear_faults(&self) {
        self.set_plan(FaultPlan::default());
    }
    /// Writes attempted so far (successful or not).
    pub fn writes(&self) -> u64 {
        self.state.writes.load(Ordering::SeqCst)
    }
    /// Syncs attempted so far (fdatasync and directory fsync).
    pub fn syncs(&self) -> u64 {
        self.state.syncs.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn SegmentFile>,
    state: Arc<FaultState>,
    dsync: bool,
}

impl SegmentFile for FaultyFile {
    fn write_at(&self, offset: u64, buf: AlignedBuf, range: Range<usize>) -> WriteOutcome {
        if let Err(err) = self.state.check_write() {
            return (Some(buf), Err(err));
        }
        // With O_DSYNC a write is also a sync: a planned sync failure fails it too.
        if self.dsync {
            if let Err(err) = self.state.check_sync() {
                return (Some(buf), Err(err));
            }
        }
        self.inner.write_at(offset, buf, range)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.state.check_sync()?;
        self.inner.sync_data()
    }
    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.allocate(len_bytes)
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn len_bytes(&self) -> io::Result<u64> {
        self.inner.len_bytes()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn direct_io(&self) -> bool {
        self.inner.direct_io()
    }
}

impl Storage for FaultyStorage {
    fn lock_dir(&self, dir: &Path, mode: LockMode) -> Result<DirLock, DirLockError> {
        self.inner.lock_dir(dir, mode)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn open(&self, path: &Path, flags: OpenFlags) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(FaultyFile {
            inner: self.inner.open(path, flags)?,
            state: Arc::clone(&self.state),
            dsync: flags.dsync,
        }))
    }
    fn read_file(&self, path: &Path, limit_bytes: u64) -> io::Result<Vec<u8>> {
        self.inner.read_file(path, limit_bytes)
    }
    fn open_read(&self, path: &Path, limit_bytes: u64) -> io::Result<Box<dyn ReadFile>> {
        self.inner.open_read(path, limit_bytes)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.state.check_sync()?;
        self.inner.sync_dir(dir)
    }
    fn alignment_bytes(&self, dir: &Path) -> (usize, String) {
        self.inner.alignment_bytes(dir)
    }
    fn fs_block_bytes(&self, dir: &Path) -> usize {
        self.inner.fs_block_bytes(dir)
    }
    fn io_path(&self) -> IoPath {
        self.inner.io_path()
    }
}
