//! Recovery reads what the log holds, not what was preallocated: a journal of large segments
//! with few records is read in bounded pieces and only `SCAN_WINDOW_BYTES` past the end of the
//! log, and what lies inside that window still decides between a clean end, a torn tail and
//! corruption (docs/journal-format.md, "How far recovery reads").

mod common;

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{few_records_in_a_1_gib_segment, payload, scratch};
use powercut_writer::record::{encode_record, record_span_bytes};
use powercut_writer::{
    recover, recover_with_storage, DirLock, DirLockError, IoPath, IoPathChoice, JournalError,
    LockMode, OpenFlags, ReadFile, RealStorage, RecoveryOptions, SegmentFile, Storage,
    SCAN_WINDOW_BYTES,
};

/// Counts the bytes recovery reads and the largest single read.
#[derive(Debug)]
struct Counting {
    inner: RealStorage,
    read: Arc<AtomicU64>,
    largest: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountedFile {
    inner: Box<dyn ReadFile>,
    read: Arc<AtomicU64>,
    largest: Arc<AtomicU64>,
}

impl ReadFile for CountedFile {
    fn len_bytes(&self) -> u64 {
        self.inner.len_bytes()
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let got = self.inner.read_at(buf, offset)?;
        self.read.fetch_add(got as u64, Ordering::SeqCst);
        self.largest.fetch_max(buf.len() as u64, Ordering::SeqCst);
        Ok(got)
    }
}

impl Storage for Counting {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn open(&self, path: &Path, flags: OpenFlags) -> io::Result<Box<dyn SegmentFile>> {
        self.inner.open(path, flags)
    }
    fn read_file(&self, _path: &Path, _limit_bytes: u64) -> io::Result<Vec<u8>> {
        panic!("recovery reads segments in pieces, never whole")
    }
    fn open_read(&self, path: &Path, limit_bytes: u64) -> io::Result<Box<dyn ReadFile>> {
        Ok(Box::new(CountedFile {
            inner: self.inner.open_read(path, limit_bytes)?,
            read: Arc::clone(&self.read),
            largest: Arc::clone(&self.largest),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
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
    fn lock_dir(&self, dir: &Path, mode: LockMode) -> Result<DirLock, DirLockError> {
        self.inner.lock_dir(dir, mode)
    }
}

const GIB: u64 = 1 << 30;

#[test]
fn few_records_in_large_segments_read_a_bounded_amount() {
    let dir = scratch();
    few_records_in_a_1_gib_segment(dir.path(), 20);

    let read = Arc::new(AtomicU64::new(0));
    let largest = Arc::new(AtomicU64::new(0));
    let storage: Arc<dyn Storage> = Arc::new(Counting {
        inner: RealStorage::new(IoPathChoice::Pwritev2, 1 << 20).unwrap(),
        read: Arc::clone(&read),
        largest: Arc::clone(&largest),
    });
    let recovery = recover_with_storage(&storage, dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 20);
    assert_eq!(recovery.truncated_tail, None);
    assert_eq!(recovery.segments[0].file_bytes, GIB);
    let (read, largest) = (read.load(Ordering::SeqCst), largest.load(Ordering::SeqCst));
    println!("read {read} bytes of a {GIB}-byte segment, largest read {largest}");
    let chunk = RecoveryOptions::default().read_chunk_bytes as u64;
    // The records, the window past them, and a chunk of rounding.
    assert!(read <= SCAN_WINDOW_BYTES + 2 * chunk, "{read}");
    assert!(read < GIB / 4, "{read}");
    assert!(largest <= chunk, "{largest}");
}

/// A directory with segment 1 (generation 1) of `SCAN_WINDOW_BYTES` plus 1 MiB, sparse,
/// holding record LSN 1 at offset 0, and a record of `lsn`/`synced` of the same generation
/// placed by `place` (given where the log ends). Returns the directory and where the log ends.
fn one_segment_with(lsn: u64, synced: u64, place: impl Fn(u64, u64) -> u64) -> tempfile::TempDir {
    let dir = scratch();
    let file = std::fs::File::create(dir.path().join(segment_name(1, 1))).unwrap();
    file.set_len(SCAN_WINDOW_BYTES + (1 << 20)).unwrap();
    let first = record(1, 0, 1, 100);
    file.write_all_at(&first, 0).unwrap();
    let end = first.len() as u64;
    let other = record(lsn, synced, 1, 200);
    let at = place(end, other.len() as u64);
    file.write_all_at(&other, at).unwrap();
    dir
}

fn segment_name(index: u64, generation: u32) -> String {
    format!("seg-{index:016x}-{generation:08x}.wal")
}

fn record(lsn: u64, synced: u64, generation: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; record_span_bytes(len)];
    encode_record(&mut out, lsn, synced, generation, &payload(lsn, len));
    out
}

/// The last 8-byte boundary at which a record of `span` bytes still ends inside the window.
fn just_inside(end: u64, span: u64) -> u64 {
    (end + SCAN_WINDOW_BYTES - span) / 8 * 8
}

#[test]
fn proof_of_corruption_just_inside_the_window_is_found() {
    // LSN 3 written after LSN 2 was durable: LSN 2 was acknowledged and is gone.
    let dir = one_segment_with(3, 2, just_inside);
    match recover(dir.path()) {
        Err(JournalError::MidLogCorruption {
            segment, offset, ..
        }) => {
            assert_eq!((segment, offset), (1, record_span_bytes(100) as u64));
        }
        other => panic!("expected mid-log corruption, got {other:?}"),
    }
}

#[test]
fn a_torn_record_just_inside_the_window_is_a_torn_tail() {
    // LSN 3 in flight with LSN 2 (synced_lsn 1): a torn tail reaching to its end.
    let dir = one_segment_with(3, 1, just_inside);
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 1);
    let end = record_span_bytes(100) as u64;
    let tail = recovery.truncated_tail.expect("torn tail");
    let record_end =
        just_inside(end, record_span_bytes(200) as u64) + record_span_bytes(200) as u64;
    assert_eq!((tail.segment, tail.offset), (1, end));
    assert_eq!(tail.discarded_bytes, record_end - end);
    assert!(record_end <= end + SCAN_WINDOW_BYTES);
}

#[test]
fn beyond_the_window_nothing_is_read() {
    // No writer can have put a record of this generation there: the end is clean.
    let dir = one_segment_with(3, 2, |end, _| end + SCAN_WINDOW_BYTES);
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 1);
    assert_eq!(recovery.truncated_tail, None, "{recovery}");
}

#[test]
fn later_segments_are_searched_for_proof_within_the_window() {
    for (offset_in_window, corrupt) in [(true, true), (false, false)] {
        let dir = scratch();
        // Segment 1 ends cleanly after LSN 1; segment 2 is prepared but unused, so the log
        // ends there; segment 3 holds LSN 5, written after LSN 3 was durable.
        let one = std::fs::File::create(dir.path().join(segment_name(1, 1))).unwrap();
        one.set_len(1 << 20).unwrap();
        one.write_all_at(&record(1, 0, 1, 100), 0).unwrap();
        let two = std::fs::File::create(dir.path().join(segment_name(2, 2))).unwrap();
        two.set_len(1 << 20).unwrap();
        let three = std::fs::File::create(dir.path().join(segment_name(3, 3))).unwrap();
        three.set_len(SCAN_WINDOW_BYTES + (1 << 20)).unwrap();
        let proof = record(5, 3, 3, 200);
        let at = if offset_in_window {
            just_inside(0, proof.len() as u64)
        } else {
            SCAN_WINDOW_BYTES
        };
        three.write_all_at(&proof, at).unwrap();
        let result = recover(dir.path());
        if corrupt {
            assert!(
                matches!(result, Err(JournalError::MidLogCorruption { .. })),
                "{result:?}"
            );
        } else {
            assert_eq!(result.unwrap().records.len(), 1);
        }
    }
}
