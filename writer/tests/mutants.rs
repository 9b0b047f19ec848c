//! Each deliberately broken variant really misbehaves where the host can show it, and the real
//! engine does not. M2, M6 and M9 only lose data in crash states (a directory entry or a write
//! that never reached stable storage); here the test only shows that the fsync (or O_DSYNC) is
//! missing, and the VM harness shows the loss.
#![cfg(feature = "mutants")]

mod common;

use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use powercut_writer::record::{encode_record, record_span_bytes};
use powercut_writer::{
    recover, recover_with, AlignedBuf, DirLock, DirLockError, Durability, FaultPlan, FaultyStorage,
    IoPath, IoPathChoice, Journal, JournalError, JournalOptions, LockMode, Mutant, OpenFlags,
    RealStorage, SegmentFile, Storage, MUTANTS_BUILT,
};

/// Real storage that records how files are opened, counts directory fsyncs and fdatasyncs,
/// and can fail exactly one fdatasync (a transient EIO: the next one succeeds).
#[derive(Debug, Clone, Default)]
struct Recorder {
    shared: Arc<RecorderState>,
}

#[derive(Debug, Default)]
struct RecorderState {
    opens: Mutex<Vec<OpenFlags>>,
    dir_syncs: AtomicU64,
    data_syncs: AtomicU64,
    fail_next_data_sync: AtomicBool,
}

#[derive(Debug)]
struct RecordedFile {
    inner: Box<dyn SegmentFile>,
    shared: Arc<RecorderState>,
}

fn real() -> RealStorage {
    RealStorage::new(IoPathChoice::Pwritev2, 256 * 1024).unwrap()
}

impl Storage for Recorder {
    fn lock_dir(&self, dir: &Path, mode: LockMode) -> Result<DirLock, DirLockError> {
        real().lock_dir(dir, mode)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        real().create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        real().list_dir(dir)
    }
    fn open(&self, path: &Path, flags: OpenFlags) -> io::Result<Box<dyn SegmentFile>> {
        self.shared.opens.lock().unwrap().push(flags);
        Ok(Box::new(RecordedFile {
            inner: real().open(path, flags)?,
            shared: Arc::clone(&self.shared),
        }))
    }
    fn read_file(&self, path: &Path, limit_bytes: u64) -> io::Result<Vec<u8>> {
        real().read_file(path, limit_bytes)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        real().rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.shared.dir_syncs.fetch_add(1, Ordering::SeqCst);
        real().sync_dir(dir)
    }
    fn alignment_bytes(&self, dir: &Path) -> (usize, String) {
        real().alignment_bytes(dir)
    }
    fn fs_block_bytes(&self, dir: &Path) -> usize {
        real().fs_block_bytes(dir)
    }
    fn io_path(&self) -> IoPath {
        IoPath::Pwritev2
    }
}

impl SegmentFile for RecordedFile {
    fn write_at(
        &self,
        offset: u64,
        buf: AlignedBuf,
        range: Range<usize>,
    ) -> (Option<AlignedBuf>, io::Result<()>) {
        self.inner.write_at(offset, buf, range)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.shared.data_syncs.fetch_add(1, Ordering::SeqCst);
        if self
            .shared
            .fail_next_data_sync
            .swap(false, Ordering::SeqCst)
        {
            return Err(io::Error::from_raw_os_error(libc_eio()));
        }
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

/// EIO on Linux.
fn libc_eio() -> i32 {
    5
}

impl Recorder {
    fn dir_syncs(&self) -> u64 {
        self.shared.dir_syncs.load(Ordering::SeqCst)
    }
    fn data_syncs(&self) -> u64 {
        self.shared.data_syncs.load(Ordering::SeqCst)
    }
}

fn options(mutant: Option<Mutant>, durability: Durability) -> JournalOptions {
    JournalOptions {
        durability,
        mutant,
        // No background preparation: the counters then count only what the test does.
        prepare_ahead: false,
        ..small_options()
    }
}

fn open_faulty(
    dir: &Path,
    mutant: Option<Mutant>,
    durability: Durability,
) -> (Journal, FaultyStorage) {
    let faulty = FaultyStorage::new(Arc::new(real()));
    let shared: Arc<dyn Storage> = Arc::new(faulty.clone());
    let (journal, _) =
        Journal::open_with_storage(dir, options(mutant, durability), shared).unwrap();
    (journal, faulty)
}

/// Appends one record durably while every sync from now on fails; returns the outcome.
fn append_with_failing_syncs(
    mutant: Option<Mutant>,
    durability: Durability,
) -> (Result<u64, JournalError>, bool) {
    let dir = scratch();
    let (journal, faulty) = open_faulty(dir.path(), mutant, durability);
    faulty.set_plan(FaultPlan {
        fail_write_at: None,
        fail_sync_at: Some(faulty.syncs() + 1),
    });
    let result = journal.append_durable(&payload(1, 100));
    (result, journal.is_poisoned())
}

// This test file only exists in builds that contain the mutants.
const _: () = assert!(MUTANTS_BUILT);

#[test]
fn m1_acknowledges_a_write_that_fails() {
    // The real engine reports the failed sync and poisons itself.
    let (real_result, real_poisoned) = append_with_failing_syncs(None, Durability::Fdatasync);
    assert!(
        matches!(real_result, Err(JournalError::Io { .. })),
        "{real_result:?}"
    );
    assert!(real_poisoned);
    // M1 acknowledged before the sync ran, so its failure is never seen.
    let (m1_result, m1_poisoned) =
        append_with_failing_syncs(Some(Mutant::M1), Durability::Fdatasync);
    assert_eq!(m1_result.unwrap(), 1);
    assert!(!m1_poisoned);

    // The same with a failing O_DSYNC write.
    for (mutant, acked) in [(None, false), (Some(Mutant::M1), true)] {
        let dir = scratch();
        let (journal, faulty) = open_faulty(dir.path(), mutant, Durability::Dsync);
        faulty.set_plan(FaultPlan {
            fail_write_at: Some(faulty.writes() + 1),
            fail_sync_at: None,
        });
        assert_eq!(journal.append_durable(b"lost").is_ok(), acked, "{mutant:?}");
    }
}

#[test]
fn m10_ignores_a_failed_fdatasync() {
    let (real_result, real_poisoned) = append_with_failing_syncs(None, Durability::Fdatasync);
    assert!(real_result.is_err());
    assert!(real_poisoned);
    let dir = scratch();
    let (journal, faulty) = open_faulty(dir.path(), Some(Mutant::M10), Durability::Fdatasync);
    faulty.set_plan(FaultPlan {
        fail_write_at: None,
        fail_sync_at: Some(faulty.syncs() + 1),
    });
    for lsn in 1..=3u64 {
        assert_eq!(journal.append_durable(&payload(lsn, 64)).unwrap(), lsn);
    }
    assert!(!journal.is_poisoned());
    assert!(faulty.syncs() >= 3, "the syncs were issued and failed");
}

#[test]
fn m3_trusts_a_retried_fdatasync() {
    for (mutant, acked) in [(None, false), (Some(Mutant::M3), true)] {
        let dir = scratch();
        let recorder = Recorder::default();
        let storage: Arc<dyn Storage> = Arc::new(recorder.clone());
        let (journal, _) =
            Journal::open_with_storage(dir.path(), options(mutant, Durability::Fdatasync), storage)
                .unwrap();
        let syncs_before = recorder.data_syncs();
        recorder
            .shared
            .fail_next_data_sync
            .store(true, Ordering::SeqCst);
        let result = journal.append_durable(&payload(1, 100));
        assert_eq!(result.is_ok(), acked, "{mutant:?}: {result:?}");
        assert_eq!(journal.is_poisoned(), !acked, "{mutant:?}");
        // The real engine never retries; M3 syncs a second time.
        let expected_syncs = if acked { 2 } else { 1 };
        assert_eq!(
            recorder.data_syncs() - syncs_before,
            expected_syncs,
            "{mutant:?}"
        );
    }
    // A sync that keeps failing still poisons M3 (it retries once, it does not ignore).
    let (result, poisoned) = append_with_failing_syncs(Some(Mutant::M3), Durability::Fdatasync);
    assert!(result.is_err());
    assert!(poisoned);
}

/// Writes `count` records, one group commit each, and closes the journal.
fn write_records(dir: &Path, count: u64, mutant: Option<Mutant>) -> Vec<Vec<u8>> {
    let (journal, _) = Journal::open(dir, options(mutant, Durability::Dsync)).unwrap();
    let payloads: Vec<Vec<u8>> = (1..=count).map(|lsn| payload(lsn, 40)).collect();
    for (index, data) in payloads.iter().enumerate() {
        assert_eq!(journal.append_durable(data).unwrap(), index as u64 + 1);
    }
    journal.close().unwrap();
    payloads
}

#[test]
fn m4_accepts_a_tail_record_with_a_bad_checksum() {
    let dir = scratch();
    let payloads = write_records(dir.path(), 3, None);
    let before = recover(dir.path()).unwrap();
    let last = before.records.last().unwrap().clone();
    // Flip one payload bit of the last record (a torn or rotted tail).
    let at = last.offset + 32;
    let path = segment_file(dir.path(), last.segment);
    let byte = read_bytes(&path)[at as usize];
    write_bytes(&path, at, &[byte ^ 0x10]);

    let real = recover(dir.path()).unwrap();
    assert_eq!(real.last_lsn(), 2);
    assert!(real.truncated_tail.is_some());

    let m4 = recover_with(dir.path(), Some(Mutant::M4)).unwrap();
    assert_eq!(m4.last_lsn(), 3);
    assert!(m4.truncated_tail.is_none());
    assert_ne!(
        m4.records[2].payload, payloads[2],
        "M4 returns the damaged payload"
    );
    // Other mutants recover like the real engine.
    let m1 = recover_with(dir.path(), Some(Mutant::M1)).unwrap();
    assert_eq!(m1.last_lsn(), 2);
}

#[test]
fn m7_accepts_a_stale_record_of_another_generation() {
    let dir = scratch();
    write_records(dir.path(), 3, None);
    let before = recover(dir.path()).unwrap();
    let last = before.records.last().unwrap().clone();
    let generation = before.segments[0].generation;
    // A record left by an earlier life of the file, right where the next record would go.
    let stale_payload = payload(77, 40);
    let mut stale = vec![0u8; record_span_bytes(stale_payload.len())];
    encode_record(
        &mut stale,
        2,
        1,
        generation.wrapping_add(100),
        &stale_payload,
    );
    let at = last.offset + record_span_bytes(last.payload.len()) as u64;
    write_bytes(&segment_file(dir.path(), last.segment), at, &stale);

    let real = recover(dir.path()).unwrap();
    assert_eq!(real.records.len(), 3);
    assert!(real.ended_at_stale_record);
    assert!(real.truncated_tail.is_none());

    let m7 = recover_with(dir.path(), Some(Mutant::M7)).unwrap();
    assert_eq!(m7.records.len(), 4);
    assert_eq!(m7.records[3].payload, stale_payload);
    assert_eq!(m7.records[3].lsn, 2, "an old LSN taken into the log");
}

#[test]
fn m8_reports_mid_log_corruption_as_a_torn_tail() {
    let dir = scratch();
    write_records(dir.path(), 3, None);
    let before = recover(dir.path()).unwrap();
    let second = before.records[1].clone();
    let path = segment_file(dir.path(), second.segment);
    let at = second.offset + 32;
    let byte = read_bytes(&path)[at as usize];
    write_bytes(&path, at, &[byte ^ 0x01]);

    let real = recover(dir.path());
    assert!(
        matches!(real, Err(JournalError::MidLogCorruption { .. })),
        "{real:?}"
    );
    let m8 = recover_with(dir.path(), Some(Mutant::M8)).unwrap();
    assert_eq!(
        m8.last_lsn(),
        1,
        "acknowledged records 2 and 3 silently dropped"
    );
    let tail = m8.truncated_tail.unwrap();
    assert_eq!(tail.offset, second.offset);
}

#[test]
fn m5_clobbers_acknowledged_bytes_of_the_tail_block() {
    for mutant in [None, Some(Mutant::M5)] {
        let dir = scratch();
        let payloads = write_records(dir.path(), 2, mutant);
        let bytes = read_bytes(&segment_file(dir.path(), 1));
        let first_span = record_span_bytes(payloads[0].len());
        let first_record_zeroed = bytes[..first_span].iter().all(|&b| b == 0);
        let recovered = recover(dir.path());
        match mutant {
            None => {
                assert!(!first_record_zeroed);
                let recovered = recovered.unwrap();
                assert_eq!(recovered.last_lsn(), 2);
                assert_eq!(recovered.records[0].payload, payloads[0]);
            }
            Some(_) => {
                // The second flush rewrote the shared block with zeros over record 1, which
                // had been acknowledged; record 2 proves it had been durable.
                assert!(first_record_zeroed);
                assert!(
                    matches!(recovered, Err(JournalError::MidLogCorruption { .. })),
                    "{recovered:?}"
                );
            }
        }
    }
}

/// Opens a fresh journal through a recorder and appends one record durably.
fn open_recorded(mutant: Option<Mutant>, durability: Durability) -> Recorder {
    let dir = scratch();
    let recorder = Recorder::default();
    let storage: Arc<dyn Storage> = Arc::new(recorder.clone());
    let (journal, _) =
        Journal::open_with_storage(dir.path(), options(mutant, durability), storage).unwrap();
    journal.append_durable(b"one").unwrap();
    recorder
}

#[test]
fn m2_skips_the_directory_fsync_of_a_new_segment() {
    // Only a crash shows the loss (the VM harness); here: the fsync is not issued.
    let real = open_recorded(None, Durability::Dsync);
    let m2 = open_recorded(Some(Mutant::M2), Durability::Dsync);
    assert_eq!(real.dir_syncs(), 1);
    assert_eq!(m2.dir_syncs(), 0);
}

#[test]
fn m6_neither_opens_o_dsync_nor_syncs() {
    // Only a crash shows the loss (the VM harness); here: no O_DSYNC and no fdatasync.
    let real = open_recorded(None, Durability::Dsync);
    assert!(real.shared.opens.lock().unwrap().iter().all(|f| f.dsync));
    let m6 = open_recorded(Some(Mutant::M6), Durability::Dsync);
    assert!(m6.shared.opens.lock().unwrap().iter().all(|f| !f.dsync));

    let real = open_recorded(None, Durability::Fdatasync);
    let m6 = open_recorded(Some(Mutant::M6), Durability::Fdatasync);
    // Preparing the segment syncs it once in both; the group commit syncs only in the real one.
    assert_eq!(real.data_syncs(), m6.data_syncs() + 1);
}

/// Directory fsyncs made by a rotation into a recycled segment file.
fn dir_syncs_of_recycling_rotation(mutant: Option<Mutant>) -> u64 {
    let dir = scratch();
    let recorder = Recorder::default();
    let storage: Arc<dyn Storage> = Arc::new(recorder.clone());
    let (journal, _) =
        Journal::open_with_storage(dir.path(), options(mutant, Durability::Dsync), storage)
            .unwrap();
    for _ in 0..2 {
        journal.append_durable(b"record").unwrap();
        journal.rotate().unwrap();
    }
    journal.append_durable(b"record").unwrap();
    // Segment 1 goes to the free list; the next rotation renames it into segment 4.
    assert_eq!(journal.retire_before(journal.durable_lsn()).unwrap(), 1);
    let before = recorder.dir_syncs();
    journal.rotate().unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("free")),
        "the free file was recycled: {names:?}"
    );
    recorder.dir_syncs() - before
}

#[test]
fn m9_recycles_without_a_directory_fsync() {
    // Only a crash shows the loss (the VM harness); here: the rename is not followed by one.
    assert_eq!(dir_syncs_of_recycling_rotation(None), 1);
    assert_eq!(dir_syncs_of_recycling_rotation(Some(Mutant::M9)), 0);
}
