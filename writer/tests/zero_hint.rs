//! The simulated storage tells recovery where its zero pages are (`ReadFile::zeros_until`) so
//! that it skips them unread. A hint must never change what recovery finds: every crash state of
//! a journal with recycled segments, torn tails and stale records recovers the same through the
//! simulated storage as through the same bytes read with no hint at all.

use std::io;
use std::path::Path;
use std::sync::Arc;

use powercut_writer::sim::{SimStorage, SplitMix64};

use powercut_writer::{
    recover_with_storage, Durability, IoPath, Journal, JournalOptions, OpenFlags, Preallocation,
    SegmentFile, Storage,
};

/// The simulated storage with every call passed through except `open_read`, which takes the
/// trait's default: the whole file read into memory, no zeros known.
#[derive(Debug)]
struct NoHint(SimStorage);

impl Storage for NoHint {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.0.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.0.list_dir(dir)
    }
    fn open(&self, path: &Path, flags: OpenFlags) -> io::Result<Box<dyn SegmentFile>> {
        self.0.open(path, flags)
    }
    fn read_file(&self, path: &Path, limit_bytes: u64) -> io::Result<Vec<u8>> {
        self.0.read_file(path, limit_bytes)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.sync_dir(dir)
    }
    fn alignment_bytes(&self, dir: &Path) -> (usize, String) {
        self.0.alignment_bytes(dir)
    }
    fn fs_block_bytes(&self, dir: &Path) -> usize {
        self.0.fs_block_bytes(dir)
    }
    fn io_path(&self) -> IoPath {
        self.0.io_path()
    }
    fn lock_dir(
        &self,
        dir: &Path,
        mode: powercut_writer::LockMode,
    ) -> Result<powercut_writer::DirLock, powercut_writer::DirLockError> {
        self.0.lock_dir(dir, mode)
    }
}

fn options() -> JournalOptions {
    JournalOptions {
        durability: Durability::Fdatasync,
        segment_bytes: 256 * 1024,
        max_staging_bytes: 128 * 1024,
        preallocation: Preallocation::Zero,
        recycle_segments: true,
        prepare_ahead: false,
        ..JournalOptions::default()
    }
}

#[test]
fn recovery_finds_the_same_with_and_without_the_zero_hint() {
    let seed = 20_261_207;
    println!("seed {seed}");
    let mut rng = SplitMix64::new(seed);
    let dir = Path::new("/j");
    let fs = SimStorage::default();
    let (journal, _) = Journal::open_with_storage(dir, options(), Arc::new(fs.clone())).unwrap();
    let mut compared = 0;
    for round in 0..12u64 {
        for i in 0..40u64 {
            let len = 1 + rng.below(6000) as usize;
            let payload = vec![(round * 40 + i) as u8 | 1; len];
            if i % 7 == 6 {
                journal.append(&payload).unwrap();
            } else {
                journal.append_durable(&payload).unwrap();
            }
            if i % 5 == 0 {
                for _ in 0..3 {
                    let state = fs.crash(rng.next_u64());
                    let hinted: Arc<dyn Storage> = Arc::new(state.clone());
                    let plain: Arc<dyn Storage> = Arc::new(NoHint(state));
                    let a = format!("{:?}", recover_with_storage(&hinted, dir));
                    let b = format!("{:?}", recover_with_storage(&plain, dir));
                    assert_eq!(a, b, "round {round} record {i} (seed {seed})");
                    compared += 1;
                }
            }
        }
        journal.rotate().unwrap();
        if round % 3 == 2 {
            let lsn = journal.append_durable(b"checkpoint").unwrap();
            journal.retire_before(lsn).unwrap();
        }
    }
    assert!(compared > 200, "{compared} crash states compared");
}
