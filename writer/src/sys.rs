//! Every `unsafe` block and raw system call of the crate, behind safe types:
//! an aligned heap buffer, files opened with O_DIRECT/O_DSYNC, pwritev2, fallocate and an
//! io_uring writer that owns a buffer for as long as the kernel may use it.

#![allow(unsafe_code)]

use std::alloc::Layout;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::ptr::NonNull;

/// A zero-initialised heap buffer whose start address and capacity are multiples of an
/// alignment (the device's logical block size), as O_DIRECT requires.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: AlignedBuf exclusively owns its allocation, like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only give out &[u8]; no interior mutability.
unsafe impl Sync for AlignedBuf {}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("capacity_bytes", &self.layout.size())
            .field("alignment_bytes", &self.layout.align())
            .finish()
    }
}

impl AlignedBuf {
    /// Allocates `capacity_bytes` (rounded up to `alignment_bytes`) of zeroed memory aligned to
    /// `alignment_bytes`, a power of two.
    pub fn new(capacity_bytes: usize, alignment_bytes: usize) -> AlignedBuf {
        assert!(
            alignment_bytes.is_power_of_two(),
            "alignment must be a power of two"
        );
        let size = capacity_bytes.max(1).div_ceil(alignment_bytes) * alignment_bytes;
        let layout = Layout::from_size_align(size, alignment_bytes).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, layout }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Alignment in bytes.
    pub fn alignment(&self) -> usize {
        self.layout.align()
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to layout.size() initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to layout.size() initialised bytes exclusively owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout and not freed before.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Opens a file for the journal. With `direct`, O_DIRECT is requested; a file system that
/// refuses it (EINVAL, e.g. tmpfs) gets the file opened buffered. Returns the file and
/// whether O_DIRECT is in effect.
pub fn open_file(path: &Path, create: bool, direct: bool, dsync: bool) -> io::Result<(File, bool)> {
    let open = |with_direct: bool| {
        // Never through a symlink, never a FIFO or device (O_NONBLOCK: a FIFO would block the
        // open); see `regular_file`.
        let mut flags = libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        if with_direct {
            flags |= libc::O_DIRECT;
        }
        if dsync {
            flags |= libc::O_DSYNC;
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .custom_flags(flags)
            .mode(0o644)
            .open(path)
            .map_err(name_links)
            .and_then(regular_file)
    };
    if direct {
        match open(true) {
            Ok(file) => return Ok((file, true)),
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {}
            Err(err) => return Err(err),
        }
    }
    Ok((open(false)?, false))
}

/// Opens `path` read-only and buffered, refusing symlinks and anything but a regular file.
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(name_links)
        .and_then(regular_file)
}

/// O_NOFOLLOW reports a symlink as ELOOP ("too many levels of symbolic links"): say what it is.
fn name_links(err: io::Error) -> io::Error {
    if err.raw_os_error() == Some(libc::ELOOP) {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link: journal files are never opened through links",
        );
    }
    err
}

/// A journal file must be a regular file: a symlink (refused by O_NOFOLLOW with ELOOP) could
/// make the engine zero-fill or overwrite whatever it points at, and a FIFO hangs a reader.
/// O_NONBLOCK only served the open; regular files ignore it, but it is cleared anyway.
fn regular_file(file: File) -> io::Result<File> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (journal files are never FIFOs, devices or directories)",
        ));
    }
    let flags =
        nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))
        .map_err(io::Error::from)?;
    Ok(file)
}

/// fsync of a directory, making the names in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fallocate(2) mode 0: allocates blocks (unwritten extents) and extends the size.
pub fn fallocate(file: &File, len_bytes: u64) -> io::Result<()> {
    let len = i64::try_from(len_bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    nix::fcntl::fallocate(file.as_fd(), nix::fcntl::FallocateFlags::empty(), 0, len)
        .map_err(io::Error::from)
}

/// Reads as many bytes as available at `offset` (stops at end of file).
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(done)
}

/// Opens `path` read-only with O_DIRECT, so that reads come from the device and never from the
/// page cache. `Ok(None)` when the file system refuses O_DIRECT (EINVAL: ramfs, tmpfs before
/// Linux 6.6), where the page cache is the only copy of the data anyway.
pub fn open_read_direct(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(name_links)
        .and_then(regular_file)
    {
        Ok(file) => Ok(Some(file)),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Reads the first `len_bytes` of a file opened with O_DIRECT into an aligned buffer: every
/// read starts at a multiple of `alignment_bytes` (a power of two, at least the device's logical
/// block size) into a buffer aligned alike. Returns the buffer and the bytes read (fewer when
/// the file is shorter). A read the device cannot serve at these alignments fails with EINVAL.
pub fn read_direct(
    file: &File,
    len_bytes: usize,
    alignment_bytes: usize,
) -> io::Result<(AlignedBuf, usize)> {
    let mut buf = AlignedBuf::new(len_bytes.max(1), alignment_bytes);
    let mut done = 0usize;
    while done < len_bytes {
        // The whole aligned rest of the buffer: the last block is read whole, and the kernel
        // stops at the end of the file.
        match file.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok((buf, done.min(len_bytes)))
}

/// Drops the clean cached pages of a file (POSIX_FADV_DONTNEED). After a failed write-back the
/// kernel keeps the bytes that never reached the disk in pages it marked clean; once they are
/// dropped, buffered reads and partial-page writes of the file see what the device holds.
pub fn drop_cached_pages(file: &File) -> io::Result<()> {
    nix::fcntl::posix_fadvise(
        file.as_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .map_err(io::Error::from)
}

/// (major, minor) of a device number as the kernel encodes it in st_dev.
pub fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Writes `buf[..len]` at `offset` with pwritev2, continuing after short writes.
pub fn pwritev2_all(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let rest = &buf[done..];
        let iov = libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        };
        let at = libc::off_t::try_from(offset + done as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: iov describes `rest`, a live slice borrowed for the duration of the call;
        // pwritev2 only reads from it; the fd is open.
        let written = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, at, 0) };
        if written < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if written == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwritev2 wrote 0 bytes",
            ));
        }
        done += written as usize;
    }
    Ok(())
}

/// Number of submission queue entries of a ring.
const RING_ENTRIES: u32 = 64;

/// An io_uring instance that submits batches of writes and waits for all of them.
pub struct UringWriter {
    ring: io_uring::IoUring,
    /// Set when completions could not be reaped: the kernel may still own memory handed to it,
    /// so the ring is never used again.
    broken: bool,
}

impl std::fmt::Debug for UringWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringWriter")
            .field("broken", &self.broken)
            .finish()
    }
}

impl UringWriter {
    /// Sets up a ring; fails where io_uring is disabled (sysctl, seccomp, old kernel).
    pub fn new() -> io::Result<UringWriter> {
        Ok(UringWriter {
            ring: io_uring::IoUring::new(RING_ENTRIES)?,
            broken: false,
        })
    }

    /// Writes `buf[range]` to `file` at `offset` as writes of at most `chunk_bytes` submitted
    /// together, and waits for every one of them. The buffer belongs to the operation until
    /// all completions came back; it is returned then. When completions cannot be reaped the
    /// buffer is leaked (None) rather than freed under the kernel's feet.
    pub fn write_all(
        &mut self,
        file: &File,
        buf: AlignedBuf,
        range: std::ops::Range<usize>,
        offset: u64,
        chunk_bytes: usize,
    ) -> (Option<AlignedBuf>, io::Result<()>) {
        if range.start > range.end || range.end > buf.capacity() {
            return (Some(buf), Err(io::Error::from(io::ErrorKind::InvalidInput)));
        }
        // Positions below are relative to range.start; `offset` is where range.start goes.
        let start = range.start;
        let len = range.end - range.start;
        assert!(chunk_bytes > 0);
        if self.broken {
            return (
                Some(buf),
                Err(io::Error::other(
                    "io_uring ring unusable after an earlier failure",
                )),
            );
        }
        let mut first_error: Option<io::Error> = None;
        let mut next = 0usize;
        while next < len && first_error.is_none() {
            // One wave: up to RING_ENTRIES chunks.
            let mut in_flight = 0usize;
            let mut expected: Vec<(u64, u32)> = Vec::new();
            {
                let mut sq = self.ring.submission();
                while next < len && in_flight < RING_ENTRIES as usize {
                    let this_len = chunk_bytes.min(len - next);
                    let entry = io_uring::opcode::Write::new(
                        io_uring::types::Fd(file.as_raw_fd()),
                        buf[start + next..].as_ptr(),
                        this_len as u32,
                    )
                    .offset(offset + next as u64)
                    .build()
                    .user_data(expected.len() as u64);
                    // SAFETY: the entry points into `buf`, which this function owns and does
                    // not release (return or drop) before every submitted entry has completed;
                    // if completions cannot be reaped, the buffer is leaked instead.
                    if unsafe { sq.push(&entry) }.is_err() {
                        break;
                    }
                    expected.push((offset + next as u64, this_len as u32));
                    next += this_len;
                    in_flight += 1;
                }
            }
            let mut completed = 0usize;
            while completed < in_flight {
                match self.ring.submit_and_wait(in_flight - completed) {
                    Ok(_) => {}
                    Err(err)
                        if err.kind() == io::ErrorKind::Interrupted
                            || err.raw_os_error() == Some(libc::EBUSY)
                            || err.raw_os_error() == Some(libc::EAGAIN) => {}
                    Err(err) => {
                        // The kernel may still hold entries of this wave: never free the buffer.
                        self.broken = true;
                        std::mem::forget(buf);
                        return (None, Err(err));
                    }
                }
                for cqe in self.ring.completion() {
                    completed += 1;
                    let index = cqe.user_data() as usize;
                    let result = cqe.result();
                    let (at, want) = expected.get(index).copied().unwrap_or((0, 0));
                    if result < 0 {
                        first_error.get_or_insert(io::Error::from_raw_os_error(-result));
                    } else if result as u32 != want {
                        first_error.get_or_insert(io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("short write at offset {at}: {result} of {want} bytes"),
                        ));
                    }
                }
            }
        }
        match first_error {
            Some(err) => (Some(buf), Err(err)),
            None => (Some(buf), Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_is_aligned_and_zeroed() {
        for align in [512usize, 4096] {
            let buf = AlignedBuf::new(10_000, align);
            assert_eq!(buf.as_ptr() as usize % align, 0);
            assert_eq!(buf.capacity() % align, 0);
            assert!(buf.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn split_dev_matches_libc() {
        let dev = libc::makedev(259, 70000);
        assert_eq!(split_dev(dev), (259, 70000));
    }
}
