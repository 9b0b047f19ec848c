//! Recovery reads the journal from the device, not from the page cache.
//!
//! After a failed write-back Linux marks the pages clean and keeps the bytes that never
//! reached the disk in the page cache (fsyncgate). A recovery that read through the cache
//! would return those never-acknowledged records and the journal would append after bytes the
//! disk does not have. `RealStorage::read_file` therefore reads with O_DIRECT where the file
//! system allows it. The loop-device test makes the cache and the disk disagree the same way
//! without device-mapper: it changes the image file under a mounted ext4.
//!
//! The loop-device test needs root (losetup, mkfs.ext4, mount); it prints SKIPPED otherwise (fails under CI=true).

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{mkfs_and_mount, run_tool, unmount_and_detach};
use powercut_writer::capability::runnable;
use powercut_writer::{
    recover, Durability, IoPathChoice, Journal, JournalOptions, RealStorage, Storage,
};

fn storage() -> RealStorage {
    RealStorage::new(IoPathChoice::Pwritev2, 1 << 20).unwrap()
}

/// File sizes around the 512- and 4096-byte boundaries O_DIRECT reads are aligned to.
const SIZES: [usize; 9] = [
    0,
    1,
    511,
    513,
    4095,
    4096,
    4097,
    3 * 4096 + 100,
    (1 << 20) + 13,
];

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) as u8) ^ (i >> 9) as u8 ^ salt)
        .collect()
}

fn check_read_file_in(dir: &Path) {
    let storage = storage();
    for (n, len) in SIZES.into_iter().enumerate() {
        let path = dir.join(format!("f{n}"));
        let bytes = pattern(len, n as u8);
        std::fs::write(&path, &bytes).unwrap();
        let read = storage.read_file(&path, 1 << 30).unwrap();
        assert_eq!(read.len(), len, "{}", path.display());
        assert!(read == bytes, "{} bytes differ", path.display());
        // Dropping the cached pages after the read loses nothing (tmpfs keeps its only copy
        // there).
        assert!(std::fs::read(&path).unwrap() == bytes, "{}", path.display());
        // The limit is checked against the file's size.
        if len > 0 {
            let err = storage.read_file(&path, len as u64 - 1).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        }
    }
    let missing = storage
        .read_file(&dir.join("missing"), 1 << 20)
        .unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn read_file_returns_the_file_bytes_on_a_disk_file_system() {
    // /var/tmp is a disk file system here: the O_DIRECT path.
    let dir = common::scratch();
    check_read_file_in(dir.path());
}

#[test]
fn read_file_returns_the_file_bytes_on_tmpfs() {
    // /dev/shm is tmpfs: O_DIRECT is refused before Linux 6.6 (buffered fallback) and
    // accepted after; the bytes are the same either way.
    let shm = Path::new("/dev/shm");
    if !runnable(if shm.is_dir() {
        Ok(())
    } else {
        Err("no /dev/shm".into())
    }) {
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    check_read_file_in(dir.path());
}

fn capability() -> Result<(), String> {
    common::loop_capability(&["losetup", "mkfs.ext4", "mount", "umount"])
}

/// ext4 on a loop device over an image file (buffered loop: the image file is what the device
/// reads), mounted; unmounted and detached on drop.
struct MountedExt4 {
    image: PathBuf,
    device: String,
    mount_point: tempfile::TempDir,
    _image_dir: tempfile::TempDir,
    mounted: bool,
}

impl MountedExt4 {
    fn new() -> Result<MountedExt4, String> {
        let image_dir = common::scratch();
        let image = image_dir.path().join("fs.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .map_err(|err| format!("create image: {err}"))?;
        let device = run_tool("losetup", &["-f", "--show", image.to_str().unwrap()])?;
        let mut guard = MountedExt4 {
            image,
            device,
            mount_point: tempfile::tempdir().map_err(|err| err.to_string())?,
            _image_dir: image_dir,
            mounted: false,
        };
        mkfs_and_mount("ext4", &guard.device, guard.mount_point.path())?;
        guard.mounted = true;
        Ok(guard)
    }
}

impl Drop for MountedExt4 {
    fn drop(&mut self) {
        unmount_and_detach(self.mounted, self.mount_point.path(), &self.device);
    }
}

/// Where `needle` starts in the file at `path` (read in 1 MiB chunks).
fn find_in_file(path: &Path, needle: &[u8]) -> Option<u64> {
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let chunk = 1 << 20;
    let mut buf = vec![0u8; chunk + needle.len()];
    let mut at = 0u64;
    while at < len {
        let want = ((len - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..want], at).unwrap();
        if let Some(pos) = buf[..want].windows(needle.len()).position(|w| w == needle) {
            return Some(at + pos as u64);
        }
        at += chunk as u64;
    }
    None
}

#[test]
fn recovery_reads_the_device_not_a_stale_page_cache() {
    if !runnable(capability()) {
        return;
    }
    let mounted = MountedExt4::new().unwrap();
    let dir = mounted.mount_point.path().join("journal");
    let options = JournalOptions {
        durability: Durability::Fdatasync,
        direct_io: false,
        segment_bytes: 256 * 1024,
        io_path: IoPathChoice::Pwritev2,
        ..JournalOptions::default()
    };
    let (journal, report) = Journal::open(&dir, options.clone()).unwrap();
    assert!(!report.direct_io, "{report}");
    for lsn in 1..=40u64 {
        assert_eq!(
            journal.append_durable(&common::payload(lsn, 200)).unwrap(),
            lsn
        );
    }
    journal.close().unwrap();
    let segment = common::segment_file(&dir, 1);
    // Read buffered: the segment's pages are now in the page cache.
    let cached = std::fs::read(&segment).unwrap();
    let logical_end = 40 * 232; // 40 records of a 32-byte header + 200 bytes
    assert!(cached[..logical_end].iter().any(|&b| b != 0));

    // Find the segment in the image and zero records 21..=40 there, behind the file
    // system's back: the disk now holds 20 records, the page cache still 40, as after a
    // write-back that failed.
    let image_at = find_in_file(&mounted.image, &cached[..512])
        .expect("the segment's first bytes are in the image");
    let image = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&mounted.image)
        .unwrap();
    let mut on_image = vec![0u8; logical_end];
    image.read_exact_at(&mut on_image, image_at).unwrap();
    assert!(
        on_image == cached[..logical_end],
        "the segment is not contiguous in the image; the test cannot place its change"
    );
    let keep = 20 * 232;
    image
        .write_all_at(&vec![0u8; logical_end - keep], image_at + keep as u64)
        .unwrap();
    image.sync_all().unwrap();

    let still_cached = std::fs::read(&segment).unwrap();
    assert!(
        still_cached[..logical_end] == cached[..logical_end],
        "the page cache lost the segment; the test cannot tell the cache from the disk"
    );
    let recovery = recover(&dir).unwrap();
    assert_eq!(
        recovery.records.len(),
        20,
        "recovery read the page cache: {recovery}"
    );
    for (i, record) in recovery.records.iter().enumerate() {
        assert_eq!(record.lsn, i as u64 + 1);
        assert!(record.payload == common::payload(record.lsn, 200));
    }
    // The stale pages are gone too: a buffered read now sees the disk.
    let after = std::fs::read(&segment).unwrap();
    assert!(after[keep..logical_end].iter().all(|&b| b == 0));

    // The journal continues after record 20, and its next write keeps records 1..=20.
    let (journal, report) = Journal::open(&dir, options).unwrap();
    assert_eq!(report.recovery.record_count as usize, 20, "{report}");
    assert_eq!(
        journal.append_durable(&common::payload(99, 300)).unwrap(),
        21
    );
    journal.close().unwrap();
    let recovery = recover(&dir).unwrap();
    assert_eq!(recovery.records.len(), 21, "{recovery}");
    assert!(recovery.records[20].payload == common::payload(99, 300));
    assert!(recovery.records[19].payload == common::payload(20, 200));
}
