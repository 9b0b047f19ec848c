//! The disk behind a trait, so the engine runs unchanged on real files (O_DIRECT + io_uring or
//! pwritev2) and on a wrapper that injects failures.
//!
//! The bottom layer of the crate: it knows nothing of segments, recovery or the journal.

use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::dir_lock::{DirLock, DirLockError, LockMode};
pub use crate::sys::AlignedBuf;

mod faulty;
mod real;

pub use faulty::{FaultPlan, FaultyStorage};
pub use real::RealStorage;

/// Largest write block considered (file systems with larger blocks still get aligned writes).
/// The writer never writes in larger blocks, so recovery never needs to step over a larger gap.
pub(crate) const MAX_BLOCK_BYTES: usize = 64 * 1024;

/// The submission path in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPath {
    /// io_uring, batched.
    IoUring,
    /// Synchronous pwritev2: chosen when asked for (`IoPathChoice::Pwritev2`), or by
    /// `IoPathChoice::Auto` when no io_uring ring can be set up.
    Pwritev2,
}

impl IoPath {
    /// `io_uring` or `fallback`, as reports spell it. `fallback` names the pwritev2 path in the
    /// JSON and text reports, whichever way it was chosen; readers of those reports match on it.
    pub fn name(self) -> &'static str {
        match self {
            IoPath::IoUring => "io_uring",
            IoPath::Pwritev2 => "fallback",
        }
    }
}

/// How to open a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags {
    /// Create the file when missing.
    pub create: bool,
    /// Ask for O_DIRECT (the file may still be opened buffered, see `SegmentFile::direct_io`).
    pub direct: bool,
    /// O_DSYNC: each write is durable when it completes.
    pub dsync: bool,
}

/// Result of a write: the buffer comes back when the operation no longer uses it (None when
/// it had to be leaked because the kernel might still read it), and the outcome.
pub type WriteOutcome = (Option<AlignedBuf>, io::Result<()>);

/// An open segment file. Writes to disjoint ranges may run concurrently from several threads.
pub trait SegmentFile: Send + Sync + std::fmt::Debug {
    /// Writes `buf[range]` at file offset `offset` (offset and range bounds multiples of the
    /// alignment in direct mode).
    fn write_at(&self, offset: u64, buf: AlignedBuf, range: Range<usize>) -> WriteOutcome;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// fallocate the first `len_bytes`.
    fn allocate(&self, len_bytes: u64) -> io::Result<()>;
    /// ftruncate.
    fn set_len(&self, len_bytes: u64) -> io::Result<()>;
    /// Current file size.
    fn len_bytes(&self) -> io::Result<u64>;
    /// Reads at `offset`; returns the bytes read (short at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Whether writes bypass the page cache.
    fn direct_io(&self) -> bool;
}

/// Offsets, lengths and buffer addresses that are multiples of this make the fastest reads of a
/// [`ReadFile`] (straight from the device into the buffer on O_DIRECT files).
pub const READ_ALIGN_BYTES: usize = 4096;

/// A file opened for reading with [`Storage::open_read`].
pub trait ReadFile: Send + std::fmt::Debug {
    /// Size of the file when it was opened.
    fn len_bytes(&self) -> u64;
    /// Reads at `offset` into `buf`; returns the bytes read, fewer than `buf.len()` only at the
    /// end of the file. Any offset and length work; multiples of [`READ_ALIGN_BYTES`] into an
    /// [`AlignedBuf`] are fastest.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Where a run of bytes known to be zeros, starting at `offset`, ends: a hint that lets a
    /// reader skip them unread. `offset` itself (the default) when nothing is known.
    fn zeros_until(&self, offset: u64) -> u64 {
        offset
    }
}

/// A [`ReadFile`] over bytes already in memory (shared, never copied whole).
#[derive(Debug, Clone)]
pub(crate) struct BytesFile {
    data: Arc<Vec<u8>>,
}

impl BytesFile {
    pub(crate) fn new(data: Arc<Vec<u8>>) -> BytesFile {
        BytesFile { data }
    }
}

impl ReadFile for BytesFile {
    fn len_bytes(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let count = buf.len().min(self.data.len() - start);
        buf[..count].copy_from_slice(&self.data[start..start + count]);
        Ok(count)
    }
}

/// The error of a file larger than a reader's limit.
pub(crate) fn too_large(len_bytes: u64, limit_bytes: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("file of {len_bytes} bytes exceeds the limit of {limit_bytes}"),
    )
}

/// File-system operations of the journal.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// mkdir -p.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (no error for a missing directory: empty).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a segment file for writing.
    fn open(&self, path: &Path, flags: OpenFlags) -> io::Result<Box<dyn SegmentFile>>;
    /// Reads a whole file of at most `limit_bytes` (larger files are an error).
    fn read_file(&self, path: &Path, limit_bytes: u64) -> io::Result<Vec<u8>>;
    /// Opens a file of at most `limit_bytes` (larger files are an error) to be read in pieces,
    /// as recovery reads segments: from the device, like [`Storage::read_file`]. The default
    /// reads the whole file with `read_file`, for storages with nothing better.
    fn open_read(&self, path: &Path, limit_bytes: u64) -> io::Result<Box<dyn ReadFile>> {
        Ok(Box::new(BytesFile::new(Arc::new(
            self.read_file(path, limit_bytes)?,
        ))))
    }
    /// rename(2).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync of a directory.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Alignment for direct I/O under `dir`, and how it was found.
    fn alignment_bytes(&self, dir: &Path) -> (usize, String);
    /// The file system's block size under `dir` (a power of two; the alignment when unknown).
    fn fs_block_bytes(&self, dir: &Path) -> usize;
    /// The submission path writes take.
    fn io_path(&self) -> IoPath;
    /// Locks the journal directory `dir` (which exists) against other processes.
    fn lock_dir(&self, dir: &Path, mode: LockMode) -> Result<DirLock, DirLockError>;
}
