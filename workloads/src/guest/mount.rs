//! Mounting the file system under test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};

/// A mount or unmount that failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Mounting failed.
    #[error("mounting {device} ({fstype}) on {target}: {source}")]
    Mount {
        /// The block device.
        device: PathBuf,
        /// The mount point.
        target: PathBuf,
        /// The file system type.
        fstype: String,
        /// Cause.
        source: nix::Error,
    },
    /// Unmounting failed.
    #[error("unmounting {target}: {source}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// Cause.
        source: nix::Error,
    },
    /// Creating the mount point failed.
    #[error("creating mount point {target}: {source}")]
    MountPoint {
        /// The mount point.
        target: PathBuf,
        /// Cause.
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

/// How long an unmount waits for the last references to the file system to go.
pub const UNMOUNT_BUSY_WAIT: Duration = Duration::from_secs(5);

/// Unmounts `target` (the file system writes everything out and flushes the device). A file
/// just closed can still hold the mount for a moment (io_uring releases its files from a kernel
/// work queue), so EBUSY is retried for up to [`UNMOUNT_BUSY_WAIT`]; never a lazy detach, which
/// would end the recording before everything reached the log.
pub fn unmount(target: &Path) -> Result<(), MountError> {
    let started = Instant::now();
    loop {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Err(nix::errno::Errno::EBUSY) if started.elapsed() < UNMOUNT_BUSY_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => {
                return result.map_err(|source| MountError::Unmount {
                    target: target.into(),
                    source,
                })
            }
        }
    }
}
