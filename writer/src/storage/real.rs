//! The real kernel behind [`Storage`]: O_DIRECT files written through io_uring or pwritev2.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{
    too_large, AlignedBuf, IoPath, OpenFlags, ReadFile, SegmentFile, Storage, WriteOutcome,
    READ_ALIGN_BYTES,
};
use crate::dir_lock::{DirLock, DirLockError, LockMode};
use crate::options::IoPathChoice;
use crate::sys;

/// The real kernel: files opened with O_DIRECT (and O_DSYNC), writes through io_uring or
/// pwritev2.
#[derive(Debug)]
pub struct RealStorage {
    io_path: IoPath,
    max_write_chunk_bytes: usize,
}

impl RealStorage {
    /// Chooses the submission path: io_uring when a ring can be set up (unless pwritev2 is
    /// asked for). `IoPathChoice::IoUring` fails when io_uring is unavailable.
    pub fn new(choice: IoPathChoice, max_write_chunk_bytes: usize) -> io::Result<RealStorage> {
        let io_path = match choice {
            IoPathChoice::Pwritev2 => IoPath::Pwritev2,
            IoPathChoice::IoUring => {
                sys::UringWriter::new()?;
                IoPath::IoUring
            }
            IoPathChoice::Auto => match sys::UringWriter::new() {
                Ok(_) => IoPath::IoUring,
                Err(_) => IoPath::Pwritev2,
            },
        };
        Ok(RealStorage {
            io_path,
            max_write_chunk_bytes: max_write_chunk_bytes.max(4096),
        })
    }
}

#[derive(Debug)]
struct RealFile {
    file: File,
    direct: bool,
    /// Idle rings; a write takes one (or sets up another) so concurrent writes never share.
    rings: Option<std::sync::Mutex<Vec<sys::UringWriter>>>,
    chunk_bytes: usize,
}

impl SegmentFile for RealFile {
    fn write_at(&self, offset: u64, buf: AlignedBuf, range: Range<usize>) -> WriteOutcome {
        // A write of one chunk gains nothing from the ring (the caller waits for it anyway).
        // Measured on ext4 over a virtio disk without FUA, where every O_DSYNC write costs a
        // cache flush: with 32 clients, single-chunk groups written by pwritev2 from the
        // leader's own thread gave about 40% more records per second than through io_uring
        // (writer/BENCH.md). The ring still submits groups larger than a chunk.
        let ring = self
            .rings
            .as_ref()
            .filter(|_| range.len() > self.chunk_bytes);
        match ring {
            Some(pool) => {
                let idle = pool.lock().ok().and_then(|mut rings| rings.pop());
                let mut ring = match idle {
                    Some(ring) => ring,
                    None => match sys::UringWriter::new() {
                        Ok(ring) => ring,
                        Err(err) => return (Some(buf), Err(err)),
                    },
                };
                let outcome = ring.write_all(&self.file, buf, range, offset, self.chunk_bytes);
                if let Ok(mut rings) = pool.lock() {
                    rings.push(ring);
                }
                outcome
            }
            None => {
                let result = match buf.get(range) {
                    Some(bytes) => sys::pwritev2_all(&self.file, bytes, offset),
                    None => Err(io::Error::from(io::ErrorKind::InvalidInput)),
                };
                (Some(buf), result)
            }
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        sys::fallocate(&self.file, len_bytes)
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        sys::read_at(&self.file, buf, offset)
    }
    fn direct_io(&self) -> bool {
        self.direct
    }
}

/// Smallest alignment of O_DIRECT reads: a multiple of every common logical block size, so the
/// reads are valid even where the device's block size could not be found.
const DIRECT_READ_ALIGNMENT_BYTES: usize = READ_ALIGN_BYTES;

/// A file read in pieces from the device (O_DIRECT) where the file system allows it; see
/// [`RealStorage::read_file`] for why never from the page cache.
#[derive(Debug)]
struct DeviceReader {
    file: File,
    len: u64,
    /// O_DIRECT in effect; cleared when the device refuses the alignment (EINVAL).
    direct: bool,
    alignment: usize,
}

impl DeviceReader {
    fn open(path: &Path, limit_bytes: u64) -> io::Result<DeviceReader> {
        let (file, direct) = match sys::open_read_direct(path)? {
            Some(file) => (file, true),
            None => (sys::open_read(path)?, false),
        };
        let len = file.metadata()?.len();
        if len > limit_bytes {
            return Err(too_large(len, limit_bytes));
        }
        let (device_alignment, _) = crate::alignment::discover_alignment_bytes(path);
        Ok(DeviceReader {
            file,
            len,
            direct,
            alignment: device_alignment.max(DIRECT_READ_ALIGNMENT_BYTES),
        })
    }

    /// Reads `buf[..want]` at `offset`, `buf` aligned for O_DIRECT (its length too): the last
    /// block is read whole and the kernel stops at the end of the file.
    fn read_direct(&self, buf: &mut [u8], offset: u64, want: usize) -> io::Result<usize> {
        let mut done = 0usize;
        while done < want {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(done.min(want))
    }

    /// A direct read of `buf.len()` bytes at `offset`, through an aligned bounce buffer when
    /// the caller's buffer or offset is not aligned.
    fn read_aligned(&self, buf: &mut [u8], offset: u64, want: usize) -> io::Result<usize> {
        let a = self.alignment;
        if (buf.as_ptr() as usize).is_multiple_of(a)
            && buf.len().is_multiple_of(a)
            && offset.is_multiple_of(a as u64)
        {
            return self.read_direct(buf, offset, want);
        }
        let from = offset / a as u64 * a as u64;
        let skip = (offset - from) as usize;
        let mut bounce = AlignedBuf::new(skip + want, a);
        let got = self.read_direct(&mut bounce, from, skip + want)?;
        let count = got.saturating_sub(skip).min(want);
        buf[..count].copy_from_slice(&bounce[skip..skip + count]);
        Ok(count)
    }
}

impl ReadFile for DeviceReader {
    fn len_bytes(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.len.saturating_sub(offset)).unwrap_or(usize::MAX));
        if self.direct {
            match self.read_aligned(buf, offset, want) {
                Ok(got) => return Ok(got),
                // Alignments this code does not know (a device with larger blocks than it
                // reports): drop what is cached, then read buffered.
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                    let _ = sys::drop_cached_pages(&self.file);
                    self.direct = false;
                }
                Err(err) => return Err(err),
            }
        }
        sys::read_at(&self.file, &mut buf[..want], offset)
    }
}

impl Drop for DeviceReader {
    fn drop(&mut self) {
        // Stale pages would still be seen by buffered readers and by a partial-page write of
        // the tail block: drop them (only clean pages go).
        let _ = sys::drop_cached_pages(&self.file);
    }
}

/// The size of an open file, or InvalidData when it exceeds `limit_bytes`.
fn checked_len(file: &File, limit_bytes: u64) -> io::Result<usize> {
    let len = file.metadata()?.len();
    if len > limit_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file of {len} bytes exceeds the limit of {limit_bytes}"),
        ));
    }
    usize::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file of {len} bytes does not fit in memory"),
        )
    })
}

impl Storage for RealStorage {
    fn lock_dir(&self, dir: &Path, mode: LockMode) -> Result<DirLock, DirLockError> {
        DirLock::acquire(dir, mode)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut names = Vec::new();
        for entry in entries {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }
    fn open(&self, path: &Path, flags: OpenFlags) -> io::Result<Box<dyn SegmentFile>> {
        let (file, direct) = sys::open_file(path, flags.create, flags.direct, flags.dsync)?;
        let rings = match self.io_path {
            IoPath::IoUring => Some(std::sync::Mutex::new(vec![sys::UringWriter::new()?])),
            IoPath::Pwritev2 => None,
        };
        Ok(Box::new(RealFile {
            file,
            direct,
            rings,
            chunk_bytes: self.max_write_chunk_bytes,
        }))
    }
    fn read_file(&self, path: &Path, limit_bytes: u64) -> io::Result<Vec<u8>> {
        // Read the device, not the page cache: after a failed write-back (fsyncgate) Linux
        // keeps the bytes that never reached the disk in clean cached pages, and a recovery
        // that read them would return records that were never durable nor acknowledged, and
        // append after bytes the disk does not have.
        if let Some(file) = sys::open_read_direct(path)? {
            let len = checked_len(&file, limit_bytes)?;
            let (device_alignment, _) = crate::alignment::discover_alignment_bytes(path);
            let alignment = device_alignment.max(DIRECT_READ_ALIGNMENT_BYTES);
            match sys::read_direct(&file, len, alignment) {
                Ok((buf, got)) => {
                    // Stale pages would still be seen by buffered readers and by a partial-
                    // page write of the tail block: drop them (only clean pages go).
                    let _ = sys::drop_cached_pages(&file);
                    return Ok(buf[..got].to_vec());
                }
                // Alignments this code does not know (a device with larger blocks than it
                // reports): drop what is cached, then read buffered.
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                    let _ = sys::drop_cached_pages(&file);
                }
                Err(err) => return Err(err),
            }
        }
        let file = sys::open_read(path)?;
        let len = checked_len(&file, limit_bytes)?;
        let mut data = vec![0u8; len];
        let got = sys::read_at(&file, &mut data, 0)?;
        data.truncate(got);
        Ok(data)
    }
    fn open_read(&self, path: &Path, limit_bytes: u64) -> io::Result<Box<dyn ReadFile>> {
        Ok(Box::new(DeviceReader::open(path, limit_bytes)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sys::sync_dir(dir)
    }
    fn alignment_bytes(&self, dir: &Path) -> (usize, String) {
        crate::alignment::discover_alignment_bytes(dir)
    }
    fn fs_block_bytes(&self, dir: &Path) -> usize {
        match nix::sys::statvfs::statvfs(dir) {
            Ok(stat) => {
                let bytes = stat.block_size() as usize;
                if bytes.is_power_of_two() {
                    bytes
                } else {
                    512
                }
            }
            Err(_) => 512,
        }
    }
    fn io_path(&self) -> IoPath {
        self.io_path
    }
}
