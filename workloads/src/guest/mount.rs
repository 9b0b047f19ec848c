//! Mounting the file system under test.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// A mount or unmount that failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounting {device} ({fstype}) on {target}: {source}")]
    Mount {
        device: PathBuf,
        target: PathBuf,
        fstype: String,
        source: nix::Error,
    },
    #[error("unmounting {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
    #[error("creating mount point {target}: {source}")]
    MountPoint {
        target: PathBuf,
        source: std::io::Error,
    },
}

/// Mounts `device` (file system `fstype`) on `target`, creating `target` if needed.
pub fn mount(device: &Path, target: &Path, fstype: &str) -> Result<(), MountError> {
    std::fs::create_dir_all(target).map_err(|source| MountError::MountPoint {
        target: target.into(),
        source,
    })?;
    nix::mount::mount(
        Some(device),
        target,
        Some(fstype),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| MountError::Mount {
        device: device.into(),
        target: target.into(),
        fstype: fstype.into(),
        source,
    })
}

/// Unmounts `target` (the file system writes everything out and flushes the device).
pub fn unmount(target: &Path) -> Result<(), MountError> {
    nix::mount::umount2(target, MntFlags::empty()).map_err(|source| MountError::Unmount {
        target: target.into(),
        source,
    })
}
