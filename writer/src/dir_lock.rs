//! One journal, one writer: an advisory lock (`flock`) on the journal directory, held for the
//! journal's lifetime. Two writers on one directory would recover the same end, hand out the
//! same LSNs and overwrite each other's records; recovery takes the lock shared, so it never
//! reads a journal that a writer is changing under it.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Shared (readers) or exclusive (the writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Recovery: many at once, never beside a writer.
    Shared,
    /// The journal: alone.
    Exclusive,
}

/// A held lock on a directory, released when dropped (the descriptor closes). Storages without
/// a kernel behind them (the simulated file system) hand out [`DirLock::none`].
#[derive(Debug)]
pub struct DirLock {
    _file: Option<File>,
}

/// Why a lock was not granted.
#[derive(Debug)]
pub enum DirLockError {
    /// Another open file description holds a conflicting lock; its process id if /proc knows it.
    Held {
        /// Process id of the holder, if /proc names it.
        holder_pid: Option<u32>,
    },
    /// Opening or locking the directory failed.
    Io(io::Error),
}

impl DirLock {
    /// No lock (for storages with no other process to exclude).
    pub fn none() -> DirLock {
        DirLock { _file: None }
    }

    /// Takes the lock on `dir`, waiting at most [`TRANSIENT_HOLDER_WAIT`] for a holder to go.
    pub fn acquire(dir: &Path, mode: LockMode) -> Result<DirLock, DirLockError> {
        let file = File::open(dir).map_err(DirLockError::Io)?;
        let started = Instant::now();
        loop {
            let locked = match mode {
                LockMode::Shared => file.try_lock_shared(),
                LockMode::Exclusive => file.try_lock(),
            };
            match locked {
                Ok(()) => return Ok(DirLock { _file: Some(file) }),
                Err(TryLockError::WouldBlock) if started.elapsed() < TRANSIENT_HOLDER_WAIT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(DirLockError::Held {
                        holder_pid: holder_pid(&file),
                    })
                }
                Err(TryLockError::Error(err)) => return Err(DirLockError::Io(err)),
            }
        }
    }
}

/// A flock belongs to the open file description, and a child forked by any thread of the
/// process shares it until its exec closes the (close-on-exec) descriptor: a journal closed
/// while another thread spawns a program stays locked for that moment. A real second writer
/// holds the lock far longer than this.
pub const TRANSIENT_HOLDER_WAIT: Duration = Duration::from_secs(1);

/// The process holding a lock on the same inode as `file`, from /proc/locks
/// (`ID: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END`, device numbers in hex).
fn holder_pid(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Waiters are listed as `ID: -> FLOCK ...`; only holders count.
        if fields.get(1) == Some(&"->") || fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let pid: u32 = fields.get(4)?.parse().ok()?;
        let mut id = fields.get(5)?.split(':');
        let major = u64::from_str_radix(id.next()?, 16).ok()?;
        let minor = u64::from_str_radix(id.next()?, 16).ok()?;
        let inode: u64 = id.next()?.parse().ok()?;
        let same = inode == meta.ino() && (major, minor) == crate::sys::split_dev(meta.dev());
        same.then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_everyone_and_shared_only_writers() {
        let dir = tempfile::tempdir().unwrap();
        let writer = DirLock::acquire(dir.path(), LockMode::Exclusive).unwrap();
        for mode in [LockMode::Exclusive, LockMode::Shared] {
            match DirLock::acquire(dir.path(), mode) {
                Err(DirLockError::Held { holder_pid }) => {
                    assert_eq!(holder_pid, Some(std::process::id()))
                }
                other => panic!("{mode:?} granted beside a writer: {other:?}"),
            }
        }
        drop(writer);
        let a = DirLock::acquire(dir.path(), LockMode::Shared).unwrap();
        let _b = DirLock::acquire(dir.path(), LockMode::Shared).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path(), LockMode::Exclusive),
            Err(DirLockError::Held { .. })
        ));
        drop((a, _b));
        DirLock::acquire(dir.path(), LockMode::Exclusive).unwrap();
    }
}
