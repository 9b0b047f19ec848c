//! Finding the host's disks in the guest by their virtio serial (`-drive ...,serial=NAME`), so the
//! agent never depends on the order in which the kernel names `vda`, `vdb`, ...

use std::path::{Path, PathBuf};

/// Virtio serial of the data disk.
pub const DATA_SERIAL: &str = "pc-data";
/// Virtio serial of the block-log disk.
pub const LOG_SERIAL: &str = "pc-log";
/// Virtio serial of the work disk of the dm-backend mode (the static `powercut` and its
/// arguments; the recording is written back onto it).
pub const WORK_SERIAL: &str = "pc-work";
/// Virtio serial of the job disk.
pub const JOB_SERIAL: &str = "pc-job";

/// A whole block device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDisk {
    /// Kernel name (`vda`).
    pub name: String,
    /// `/dev/NAME` (devtmpfs).
    pub dev_path: PathBuf,
    /// `MAJ:MIN`, usable directly in dm tables.
    pub maj_min: String,
    /// Size in 512-byte sectors.
    pub size_sectors: u64,
}

/// A disk that could not be found or described.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// No disk carries the serial.
    #[error("no block device with virtio serial {serial:?} under {sysfs}")]
    NotFound {
        /// The virtio serial looked for.
        serial: String,
        /// The sysfs directory searched.
        sysfs: PathBuf,
    },
    /// Reading a sysfs attribute failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The attribute read.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A sysfs attribute is not a number.
    #[error("{path} holds {content:?}, not a number")]
    Parse {
        /// The attribute read.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
}

fn read_trimmed(path: &Path) -> Result<String, DiskError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| DiskError::Read {
            path: path.into(),
            source,
        })
}

/// Looks up the disk whose serial is `serial` under `sysfs_block` (normally `/sys/block`).
pub fn find_by_serial(sysfs_block: &Path, serial: &str) -> Result<BlockDisk, DiskError> {
    let entries = std::fs::read_dir(sysfs_block).map_err(|source| DiskError::Read {
        path: sysfs_block.into(),
        source,
    })?;
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(found) = std::fs::read_to_string(dir.join("serial")) else {
            continue;
        };
        if found.trim() != serial {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let maj_min = read_trimmed(&dir.join("dev"))?;
        let size_path = dir.join("size");
        let size_text = read_trimmed(&size_path)?;
        let size_sectors = size_text.parse().map_err(|_| DiskError::Parse {
            path: size_path,
            content: size_text,
        })?;
        return Ok(BlockDisk {
            dev_path: Path::new("/dev").join(&name),
            name,
            maj_min,
            size_sectors,
        });
    }
    Err(DiskError::NotFound {
        serial: serial.into(),
        sysfs: sysfs_block.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_disk_by_serial_in_a_fake_sysfs() {
        let root = tempfile::tempdir().unwrap();
        for (name, serial, dev, size) in [
            ("vda", "pc-data", "254:0", "131072"),
            ("vdb", "pc-log", "254:16", "x"),
        ] {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("serial"), format!("{serial}\n")).unwrap();
            std::fs::write(dir.join("dev"), format!("{dev}\n")).unwrap();
            std::fs::write(dir.join("size"), format!("{size}\n")).unwrap();
        }
        let data = find_by_serial(root.path(), DATA_SERIAL).unwrap();
        assert_eq!(data.name, "vda");
        assert_eq!(data.maj_min, "254:0");
        assert_eq!(data.size_sectors, 131072);
        assert!(matches!(
            find_by_serial(root.path(), LOG_SERIAL),
            Err(DiskError::Parse { .. })
        ));
        assert!(matches!(
            find_by_serial(root.path(), JOB_SERIAL),
            Err(DiskError::NotFound { .. })
        ));
    }
}
