//! Applying log entries to an image file, incrementally.
//!
//! A [`Replayer`] owns an image that holds the state after the first `position()` entries; it
//! only ever moves forward, applying entries `[position, target)`, so walking every flush prefix
//! of a log reads each entry once (never the O(n^2) re-scan from the start per state). Crash
//! states are built from such a prefix image by [`clone_image`] (FICLONE where the file system
//! can reflink, else a sparse copy) plus a small delta.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::blocklog::{BlockLog, Entry, LogError};

/// Replay failures, naming the entry, image and offset.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the block log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Reading or writing failed.
    #[error("{op} {path} at byte {offset}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Byte offset of the I/O.
        offset: u64,
        /// Cause.
        source: io::Error,
    },
    #[error(
        "entry {index} writes bytes {offset}..{end} past the end of image {path} ({image_len} bytes): wrong base image for this log?"
    )]
    /// An entry writes past the end of the image.
    PastImageEnd {
        /// The entry's index.
        index: u64,
        /// Byte offset of the write in the image.
        offset: u64,
        /// Byte offset where the write ends.
        end: u64,
        /// The image's length in bytes.
        image_len: u64,
        /// The image.
        path: PathBuf,
    },
    /// The replay target (an entry or a position) is past the log or behind the replayer.
    #[error("replay target {0} not found in the log")]
    TargetNotFound(String),
    /// A tear mask does not fit its entry.
    #[error("tear mask of entry {index} has {mask_units} units, the entry has {entry_units}")]
    BadMask {
        /// The entry's index.
        index: u64,
        /// Units in the mask.
        mask_units: usize,
        /// Units of the entry.
        entry_units: u64,
    },
}

/// Bytes moved by a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayStats {
    /// Entries applied.
    pub entries_applied: u64,
    /// Bytes written to the image.
    pub bytes_written: u64,
    /// Bytes discarded in the image.
    pub bytes_discarded: u64,
}

impl ReplayStats {
    fn add(&mut self, o: ReplayStats) {
        self.entries_applied += o.entries_applied;
        self.bytes_written += o.bytes_written;
        self.bytes_discarded += o.bytes_discarded;
    }
}

const CHUNK_BYTES: usize = 1 << 20;

/// Applies one entry to `image` (of `image_len` bytes). `mask`, if given, has one flag per
/// sectorsize unit of the entry: only units set are applied (a torn write). Marks and empty
/// flushes change nothing.
pub fn apply_entry(
    log: &BlockLog,
    entry: &Entry,
    image: &File,
    image_path: &Path,
    image_len: u64,
    mask: Option<&[bool]>,
    buf: &mut Vec<u8>,
) -> Result<ReplayStats, ReplayError> {
    let mut stats = ReplayStats {
        entries_applied: 1,
        ..ReplayStats::default()
    };
    if !entry.modifies_device() {
        return Ok(stats);
    }
    let end = entry.target_offset_bytes + entry.target_len_bytes;
    if end > image_len {
        return Err(ReplayError::PastImageEnd {
            index: entry.index,
            offset: entry.target_offset_bytes,
            end,
            image_len,
            path: image_path.to_path_buf(),
        });
    }
    let ss = u64::from(log.sectorsize());
    let units = entry.nr_sectors;
    // Runs of consecutive units to apply: (first unit, count).
    let runs: Vec<(u64, u64)> = match mask {
        None => vec![(0, units)],
        Some(m) => {
            if m.len() as u64 != units {
                return Err(ReplayError::BadMask {
                    index: entry.index,
                    mask_units: m.len(),
                    entry_units: units,
                });
            }
            let mut runs = Vec::new();
            let mut i = 0u64;
            while i < units {
                if m[i as usize] {
                    let start = i;
                    while i < units && m[i as usize] {
                        i += 1;
                    }
                    runs.push((start, i - start));
                } else {
                    i += 1;
                }
            }
            runs
        }
    };
    for (first, count) in runs {
        let run_offset = first * ss;
        let run_len = count * ss;
        let target = entry.target_offset_bytes + run_offset;
        if entry.is_discard() {
            discard_range(image, image_path, target, run_len, buf)?;
            stats.bytes_discarded += run_len;
            continue;
        }
        let mut done = 0u64;
        while done < run_len {
            let n = (run_len - done).min(CHUNK_BYTES as u64) as usize;
            buf.resize(n, 0);
            log.read_data_at(entry, run_offset + done, &mut buf[..n])?;
            image
                .write_all_at(&buf[..n], target + done)
                .map_err(|source| ReplayError::Io {
                    op: "write image",
                    path: image_path.to_path_buf(),
                    offset: target + done,
                    source,
                })?;
            done += n as u64;
        }
        stats.bytes_written += run_len;
    }
    Ok(stats)
}

fn discard_range(
    image: &File,
    path: &Path,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<(), ReplayError> {
    use nix::fcntl::{fallocate, FallocateFlags};
    let punched = i64::try_from(offset)
        .ok()
        .zip(i64::try_from(len).ok())
        .is_some_and(|(o, l)| {
            fallocate(
                image.as_fd(),
                FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
                o,
                l,
            )
            .is_ok()
        });
    if punched {
        return Ok(());
    }
    // No hole punching on this file system: write zeros.
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK_BYTES as u64) as usize;
        buf.clear();
        buf.resize(n, 0);
        image
            .write_all_at(buf, offset + done)
            .map_err(|source| ReplayError::Io {
                op: "zero discarded range",
                path: path.to_path_buf(),
                offset: offset + done,
                source,
            })?;
        done += n as u64;
    }
    Ok(())
}

/// An image holding the state after the first `position()` entries of a log.
#[derive(Debug)]
pub struct Replayer<'a> {
    log: &'a BlockLog,
    image: File,
    image_path: PathBuf,
    image_len: u64,
    position: u64,
    buf: Vec<u8>,
    stats: ReplayStats,
}

impl<'a> Replayer<'a> {
    /// Takes `image_path`, which must hold the base image (no entries applied), as its state.
    pub fn new(log: &'a BlockLog, image_path: &Path) -> Result<Replayer<'a>, ReplayError> {
        let io_err = |op, source| ReplayError::Io {
            op,
            path: image_path.to_path_buf(),
            offset: 0,
            source,
        };
        let image = OpenOptions::new()
            .read(true)
            .write(true)
            .open(image_path)
            .map_err(|e| io_err("open image", e))?;
        let image_len = image.metadata().map_err(|e| io_err("stat image", e))?.len();
        Ok(Replayer {
            log,
            image,
            image_path: image_path.to_path_buf(),
            image_len,
            position: 0,
            buf: Vec::new(),
            stats: ReplayStats::default(),
        })
    }

    /// Entries applied so far: the image is the state after entries `[0, position)`.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The image replayed into.
    pub fn image_path(&self) -> &Path {
        &self.image_path
    }

    /// The image's length in bytes.
    pub fn image_len(&self) -> u64 {
        self.image_len
    }

    /// Totals since creation.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// Applies entries `[position, target)`. A target behind the position is an error: replay
    /// never goes backwards (rebuild from a clone instead).
    pub fn advance_to(&mut self, target: u64) -> Result<ReplayStats, ReplayError> {
        let n = self.log.entries().len() as u64;
        if target < self.position || target > n {
            return Err(ReplayError::TargetNotFound(format!(
                "position {target} (replayer at {}, log has {n} entries)",
                self.position
            )));
        }
        let mut stats = ReplayStats::default();
        for i in self.position..target {
            let entry = &self.log.entries()[i as usize];
            let s = apply_entry(
                self.log,
                entry,
                &self.image,
                &self.image_path,
                self.image_len,
                None,
                &mut self.buf,
            )?;
            stats.add(s);
        }
        self.position = target;
        self.stats.add(stats);
        Ok(stats)
    }
}

/// Whether files in `dir` can be reflinked (FICLONE), probed with two small files.
pub fn reflink_supported(dir: &Path) -> bool {
    let a = dir.join(".reflink-probe-a");
    let b = dir.join(".reflink-probe-b");
    let ok = std::fs::write(&a, [0u8; 4096]).is_ok()
        && File::open(&a)
            .and_then(|src| Ok((src, File::create(&b)?)))
            .is_ok_and(|(src, dst)| crate::sys::ficlone(&dst, &src).is_ok());
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    ok
}

/// Makes `dst` a copy of `src`: a reflink (FICLONE) where the file system supports it, else a
/// sparse copy (holes stay holes). Returns true when it was a reflink.
pub fn clone_image(src: &Path, dst: &Path) -> Result<bool, ReplayError> {
    let io_err = |op, path: &Path, offset, source| ReplayError::Io {
        op,
        path: path.to_path_buf(),
        offset,
        source,
    };
    // Opening a FIFO or a device for reading would block or read something else than an image.
    let kind = std::fs::metadata(src).map_err(|e| io_err("stat source image", src, 0, e))?;
    if !kind.is_file() {
        let not_file = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        return Err(io_err("open source image", src, 0, not_file));
    }
    let s = File::open(src).map_err(|e| io_err("open source image", src, 0, e))?;
    let d = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dst)
        .map_err(|e| io_err("create image copy", dst, 0, e))?;
    if crate::sys::ficlone(&d, &s).is_ok() {
        return Ok(true);
    }
    let len = s
        .metadata()
        .map_err(|e| io_err("stat source image", src, 0, e))?
        .len();
    d.set_len(len)
        .map_err(|e| io_err("size image copy", dst, 0, e))?;
    sparse_copy(&s, src, &d, dst, len)?;
    Ok(false)
}

fn sparse_copy(s: &File, src: &Path, d: &File, dst: &Path, len: u64) -> Result<(), ReplayError> {
    use nix::unistd::{lseek, Whence};
    let mut pos: u64 = 0;
    let mut buf = Vec::new();
    while pos < len {
        let data_start = match lseek(s.as_fd(), pos as i64, Whence::SeekData) {
            Ok(o) => o as u64,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole remains
            Err(_) => pos,                          // no SEEK_DATA: copy everything
        };
        let data_end = match lseek(s.as_fd(), data_start as i64, Whence::SeekHole) {
            Ok(o) => (o as u64).min(len),
            Err(_) => len,
        };
        copy_range(s, src, d, dst, data_start, data_end - data_start, &mut buf)?;
        pos = data_end;
    }
    Ok(())
}

fn copy_range(
    s: &File,
    src: &Path,
    d: &File,
    dst: &Path,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<(), ReplayError> {
    let mut done = 0u64;
    while done < len {
        let mut off_in = (offset + done) as i64;
        let mut off_out = off_in;
        let want = (len - done).min(1 << 30) as usize;
        match nix::fcntl::copy_file_range(
            s.as_fd(),
            Some(&mut off_in),
            d.as_fd(),
            Some(&mut off_out),
            want,
        ) {
            Ok(0) => break,
            Ok(n) => done += n as u64,
            Err(_) => {
                // Fall back to read + write for this range.
                let n = (len - done).min(CHUNK_BYTES as u64) as usize;
                buf.resize(n, 0);
                s.read_exact_at(&mut buf[..n], offset + done)
                    .map_err(|source| ReplayError::Io {
                        op: "read image",
                        path: src.to_path_buf(),
                        offset: offset + done,
                        source,
                    })?;
                d.write_all_at(&buf[..n], offset + done)
                    .map_err(|source| ReplayError::Io {
                        op: "write image copy",
                        path: dst.to_path_buf(),
                        offset: offset + done,
                        source,
                    })?;
                done += n as u64;
            }
        }
    }
    Ok(())
}

/// Where `powercut replay` stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayTarget {
    /// Entries `0..=n` applied (the state right after entry n).
    Entry(u64),
    /// Entries up to and including the first MARK with this label.
    Mark(String),
    /// Every entry.
    End,
}

/// What [`replay_to`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplaySummary {
    /// Entries applied: the image is the state after entries `[0, entries)`.
    pub entries: u64,
    /// Bytes moved.
    pub stats: ReplayStats,
    /// Whether the image was a reflink clone of the base.
    pub reflinked: bool,
}

/// `powercut replay LOG --base BASE --to N|--mark LABEL -o OUT`: copies `base` to `out` and
/// applies the log up to `target`.
pub fn replay_to(
    log_path: &Path,
    base: &Path,
    target: ReplayTarget,
    out: &Path,
) -> Result<ReplaySummary, ReplayError> {
    let log = BlockLog::open(log_path)?;
    let n = log.entries().len() as u64;
    let end = match &target {
        ReplayTarget::Entry(i) if *i < n => i + 1,
        ReplayTarget::Entry(i) => {
            return Err(ReplayError::TargetNotFound(format!(
                "entry {i} (log has {n} entries)"
            )))
        }
        ReplayTarget::Mark(label) => {
            log.find_mark(label)
                .ok_or_else(|| ReplayError::TargetNotFound(format!("mark {label:?}")))?
                + 1
        }
        ReplayTarget::End => n,
    };
    let reflinked = clone_image(base, out)?;
    let mut r = Replayer::new(&log, out)?;
    let stats = r.advance_to(end)?;
    Ok(ReplaySummary {
        entries: end,
        stats,
        reflinked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklog::{LogWriter, FLAG_FUA};
    use proptest::prelude::*;

    /// Naive model: a byte vector written entry by entry.
    fn naive(log: &BlockLog, base: &[u8], upto: u64) -> Vec<u8> {
        let mut img = base.to_vec();
        for e in &log.entries()[..upto as usize] {
            if !e.modifies_device() {
                continue;
            }
            let o = e.target_offset_bytes as usize;
            let l = e.target_len_bytes as usize;
            if e.is_discard() {
                img[o..o + l].fill(0);
            } else {
                img[o..o + l].copy_from_slice(&log.read_data(e).unwrap());
            }
        }
        img
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, u64, u8, bool),
        Flush,
        Discard(u64, u64),
        Mark,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..60, 1u64..5, any::<u8>(), any::<bool>()).prop_map(|(s, n, b, f)| Op::Write(s, n, b, f)),
            1 => Just(Op::Flush),
            1 => (0u64..60, 1u64..5).prop_map(|(s, n)| Op::Discard(s, n)),
            1 => Just(Op::Mark),
        ]
    }

    fn build(dir: &Path, ops: &[Op]) -> (PathBuf, PathBuf, Vec<u8>) {
        let logp = dir.join("log");
        let mut w = LogWriter::create(&logp, 512).unwrap();
        for op in ops {
            match *op {
                Op::Write(s, n, b, fua) => {
                    let data: Vec<u8> = (0..n * 512).map(|i| b.wrapping_add(i as u8)).collect();
                    w.write(s, &data, if fua { FLAG_FUA } else { 0 }).unwrap();
                }
                Op::Flush => {
                    w.flush().unwrap();
                }
                Op::Discard(s, n) => {
                    w.discard(s, n).unwrap();
                }
                Op::Mark => {
                    w.mark("s:x").unwrap();
                }
            }
        }
        w.finish(None, 0).unwrap();
        let base: Vec<u8> = (0..64 * 512).map(|i| (i % 251) as u8).collect();
        let basep = dir.join("base");
        std::fs::write(&basep, &base).unwrap();
        (logp, basep, base)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn incremental_equals_naive_for_every_prefix(ops in proptest::collection::vec(op(), 1..25)) {
            let dir = tempfile::tempdir().unwrap();
            let (logp, basep, base) = build(dir.path(), &ops);
            let log = BlockLog::open(&logp).unwrap();
            let img = dir.path().join("img");
            clone_image(&basep, &img).unwrap();
            let mut r = Replayer::new(&log, &img).unwrap();
            let n = log.entries().len() as u64;
            for p in 0..=n {
                r.advance_to(p).unwrap();
                prop_assert_eq!(std::fs::read(&img).unwrap(), naive(&log, &base, p));
            }
            // replay_to matches too, for each entry and the last mark.
            for i in 0..n {
                let out = dir.path().join("out");
                let s = replay_to(&logp, &basep, ReplayTarget::Entry(i), &out).unwrap();
                prop_assert_eq!(s.entries, i + 1);
                prop_assert_eq!(std::fs::read(&out).unwrap(), naive(&log, &base, i + 1));
            }
        }
    }

    #[test]
    fn torn_mask_applies_only_selected_units_and_past_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (logp, basep, base) = build(
            dir.path(),
            &[
                Op::Write(2, 4, 9, false),
                Op::Flush,
                Op::Write(63, 2, 1, false),
            ],
        );
        let log = BlockLog::open(&logp).unwrap();
        let img = dir.path().join("img");
        clone_image(&basep, &img).unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&img)
            .unwrap();
        let mut buf = Vec::new();
        let e = &log.entries()[0];
        apply_entry(
            &log,
            e,
            &f,
            &img,
            base.len() as u64,
            Some(&[true, false, false, true]),
            &mut buf,
        )
        .unwrap();
        let got = std::fs::read(&img).unwrap();
        let data = log.read_data(e).unwrap();
        assert_eq!(&got[1024..1536], &data[..512]);
        assert_eq!(&got[1536..2560], &base[1536..2560]);
        assert_eq!(&got[2560..3072], &data[1536..]);
        let err = apply_entry(
            &log,
            &log.entries()[2],
            &f,
            &img,
            base.len() as u64,
            None,
            &mut buf,
        )
        .unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let mark = replay_to(
            &logp,
            &basep,
            ReplayTarget::Mark("nope".into()),
            &dir.path().join("o"),
        );
        assert!(mark.is_err());
    }
}
