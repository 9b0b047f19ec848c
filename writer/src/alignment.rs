//! Finding the direct-I/O alignment without root: the logical block size of the block device
//! under a path, read from sysfs.
//!
//! stat(path) gives st_dev = MAJ:MIN; /sys/dev/block/MAJ:MIN links to the device's sysfs
//! directory. A whole disk has `queue/logical_block_size`; a partition has none and its parent
//! directory is the disk; a stacked device (dm, md) lists its members under `slaves/`, and the
//! largest of their sizes is used when the device itself reports none.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Alignment used when sysfs cannot tell (tmpfs, overlay, network file systems).
pub const FALLBACK_ALIGNMENT_BYTES: usize = 4096;

/// Bounds the walk through `slaves/` links (dm on md on partition ... is never this deep).
const MAX_STACK_DEPTH: usize = 8;

/// The alignment for direct I/O to files under `path`, and how it was found.
pub fn discover_alignment_bytes(path: &Path) -> (usize, String) {
    discover_under(path, Path::new("/sys/dev/block"))
}

pub(crate) fn discover_under(path: &Path, sys_dev_block: &Path) -> (usize, String) {
    let dev = match std::fs::metadata(path) {
        Ok(meta) => meta.dev(),
        Err(err) => {
            return (
                FALLBACK_ALIGNMENT_BYTES,
                format!("fallback: stat {}: {err}", path.display()),
            )
        }
    };
    let (major, minor) = crate::sys::split_dev(dev);
    let link = sys_dev_block.join(format!("{major}:{minor}"));
    let Ok(device_dir) = std::fs::canonicalize(&link) else {
        return (
            FALLBACK_ALIGNMENT_BYTES,
            format!("fallback: no block device {major}:{minor} in sysfs"),
        );
    };
    match block_size_of(&device_dir, 0) {
        Some(bytes) => (
            bytes,
            format!(
                "{}/queue/logical_block_size of {major}:{minor}",
                device_dir.display()
            ),
        ),
        None => (
            FALLBACK_ALIGNMENT_BYTES,
            format!("fallback: no logical_block_size for {major}:{minor}"),
        ),
    }
}

fn read_size(file: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(file).ok()?;
    let bytes: usize = text.trim().parse().ok()?;
    (bytes >= 512 && bytes.is_power_of_two() && bytes <= 1 << 20).then_some(bytes)
}

fn block_size_of(device_dir: &Path, depth: usize) -> Option<usize> {
    if depth > MAX_STACK_DEPTH {
        return None;
    }
    if let Some(bytes) = read_size(&device_dir.join("queue/logical_block_size")) {
        return Some(bytes);
    }
    if device_dir.join("partition").exists() {
        let parent: PathBuf = device_dir.parent()?.to_path_buf();
        return block_size_of(&parent, depth + 1);
    }
    let slaves = std::fs::read_dir(device_dir.join("slaves")).ok()?;
    slaves
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| std::fs::canonicalize(entry.path()).ok())
        .filter_map(|slave| block_size_of(&slave, depth + 1))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs tree: a partition whose disk reports 4096, a dm device without a queue
    /// whose slave is that partition, and a nonexistent device.
    #[test]
    fn walks_partitions_and_slaves() {
        let root = tempfile::tempdir().unwrap();
        let devices = root.path().join("devices");
        let disk = devices.join("vdz");
        let part = disk.join("vdz1");
        let dm = devices.join("dm-9");
        std::fs::create_dir_all(disk.join("queue")).unwrap();
        std::fs::write(disk.join("queue/logical_block_size"), "4096\n").unwrap();
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("partition"), "1\n").unwrap();
        std::fs::create_dir_all(dm.join("slaves")).unwrap();
        symlink(&part, dm.join("slaves/vdz1")).unwrap();
        assert_eq!(block_size_of(&part, 0), Some(4096));
        assert_eq!(block_size_of(&dm, 0), Some(4096));
        assert_eq!(block_size_of(&devices.join("none"), 0), None);

        // A real path whose st_dev is absent from the fake tree falls back.
        let (bytes, how) = discover_under(root.path(), &root.path().join("dev-block"));
        assert_eq!(bytes, FALLBACK_ALIGNMENT_BYTES);
        assert!(how.starts_with("fallback"), "{how}");
    }
}
