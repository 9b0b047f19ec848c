//! Alignment discovery on real file systems: ext4 and XFS made on loop devices with 512- and
//! 4096-byte logical sectors. Needs root (loop devices, mount); prints SKIPPED otherwise (fails under CI=true).

mod common;

use std::path::{Path, PathBuf};

use common::{mkfs_and_mount, run_tool, unmount, unmount_and_detach};
use powercut_writer::capability::runnable;
use powercut_writer::{recover, Journal, JournalOptions};

/// A loop device with a file system, mounted; unmounted and detached on drop, also when the
/// test fails.
struct MountedLoop {
    device: String,
    mount_point: tempfile::TempDir,
    _image_dir: tempfile::TempDir,
    mounted: bool,
}

impl MountedLoop {
    fn new(fs: &str, sector_bytes: usize) -> Result<MountedLoop, String> {
        let image_dir = common::scratch();
        let image: PathBuf = image_dir.path().join("fs.img");
        let size_bytes: u64 = if fs == "xfs" { 320 << 20 } else { 64 << 20 };
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size_bytes))
            .map_err(|err| format!("create image: {err}"))?;
        let device = run_tool(
            "losetup",
            &[
                "--sector-size",
                &sector_bytes.to_string(),
                "-f",
                "--show",
                image.to_str().unwrap(),
            ],
        )?;
        let mount_point = tempfile::tempdir().map_err(|err| err.to_string())?;
        let mut guard = MountedLoop {
            device,
            mount_point,
            _image_dir: image_dir,
            mounted: false,
        };
        mkfs_and_mount(fs, &guard.device, guard.mount_point.path())?;
        guard.mounted = true;
        Ok(guard)
    }

    fn path(&self) -> &Path {
        self.mount_point.path()
    }
}

impl Drop for MountedLoop {
    fn drop(&mut self) {
        unmount_and_detach(self.mounted, self.mount_point.path(), &self.device);
    }
}

fn capability() -> Result<(), String> {
    common::loop_capability(&["losetup", "mkfs.ext4", "mkfs.xfs", "mount"])
}

#[test]
fn alignment_matches_the_loop_device_sector_size() {
    if !runnable(capability()) {
        return;
    }
    for fs in ["ext4", "xfs"] {
        for sector_bytes in [512usize, 4096] {
            let mounted = MountedLoop::new(fs, sector_bytes)
                .unwrap_or_else(|err| panic!("{fs} on {sector_bytes}-byte sectors: {err}"));
            let dir = mounted.path().join("journal");
            let options = JournalOptions {
                segment_bytes: 1 << 20,
                ..JournalOptions::default()
            };
            let (journal, report) = Journal::open(&dir, options.clone()).unwrap();
            assert_eq!(
                report.alignment_bytes, sector_bytes,
                "{fs}: report {report}"
            );
            assert!(report.direct_io, "{fs}: {report}");
            assert_eq!(report.write_block_bytes % sector_bytes, 0);
            for lsn in 1..=300u64 {
                let data = common::payload(lsn, (lsn as usize * 53) % 9000);
                assert_eq!(journal.append_durable(&data).unwrap(), lsn);
            }
            journal.close().unwrap();
            let recovery = recover(&dir).unwrap();
            assert_eq!(recovery.records.len(), 300, "{fs}/{sector_bytes}");
            assert!(recovery.truncated_tail.is_none());
            drop(mounted);
        }
    }
}

#[test]
fn memory_file_systems_fall_back_to_buffered_io() {
    if !runnable(capability()) {
        return;
    }
    // tmpfs refuses O_DIRECT before Linux 6.6; ramfs refuses it on every kernel.
    for fs in ["tmpfs", "ramfs"] {
        let direct = journal_on_memory_fs(fs);
        if fs == "ramfs" {
            assert!(!direct, "ramfs cannot do O_DIRECT");
        }
    }
}

fn journal_on_memory_fs(fs: &str) -> bool {
    let mount_point = tempfile::tempdir().unwrap();
    let target = mount_point.path().to_str().unwrap().to_string();
    run_tool("mount", &["-t", fs, "-o", "size=64m", fs, &target]).unwrap();
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            unmount(&self.0);
        }
    }
    let _guard = Unmount(target);
    let dir = mount_point.path().join("journal");
    let (journal, report) = Journal::open(&dir, common::small_options()).unwrap();
    let text = report.to_string();
    if report.direct_io {
        println!("{fs} accepted O_DIRECT on this kernel: {text}");
    } else {
        assert!(report.sync_after_write);
        assert!(text.contains("buffered I/O + fdatasync"), "{text}");
    }
    for lsn in 1..=50u64 {
        journal.append_durable(&common::payload(lsn, 700)).unwrap();
    }
    journal.close().unwrap();
    assert_eq!(recover(&dir).unwrap().records.len(), 50);
    report.direct_io
}
