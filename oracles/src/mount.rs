//! Loop-mounting a crash image (as root), so the kernel replays the file system journal exactly as
//! after a reboot, then running a check on the mounted tree.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::sys::LoopDevice;

/// File systems the oracles mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
}

impl FsType {
    /// The name mount(2) and mkfs know it by.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsType {
    type Err = String;
    fn from_str(s: &str) -> Result<FsType, String> {
        match s {
            "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            other => Err(format!("unsupported file system {other:?} (ext4 or xfs)")),
        }
    }
}

/// Mounting failures.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The process is not root.
    #[error("mounting crash images needs root (loop devices and mount(2)): run powercut as root")]
    NeedsRoot,
    /// Loop devices are missing (why).
    #[error("no loop device support: {0}")]
    NoLoop(String),
    /// Attaching an image to a loop device failed.
    #[error("attach {image} to a loop device: {source}")]
    Loop {
        /// The image.
        image: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Mounting failed.
    #[error("mount {device} ({fs}) on {mountpoint}: {source}")]
    Mount {
        /// The loop device.
        device: PathBuf,
        /// The mount point.
        mountpoint: PathBuf,
        /// The file system type.
        fs: FsType,
        /// Cause.
        source: nix::errno::Errno,
    },
    /// Unmounting failed.
    #[error("unmount {mountpoint}: {source}")]
    Umount {
        /// The mount point.
        mountpoint: PathBuf,
        /// Cause.
        source: nix::errno::Errno,
    },
    /// Creating the mount point failed.
    #[error("create mount point {path}: {source}")]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Ok when this process can loop-mount images: root and /dev/loop-control.
pub fn can_mount() -> Result<(), MountError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(MountError::NeedsRoot);
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err(MountError::NoLoop("/dev/loop-control is missing".into()));
    }
    Ok(())
}

struct Mounted<'a> {
    mountpoint: &'a Path,
    active: bool,
}

impl Mounted<'_> {
    fn unmount(&mut self) -> Result<(), MountError> {
        if !self.active {
            return Ok(());
        }
        // A process that just closed files can hold the mount briefly; retry, then detach lazily.
        let mut last = nix::errno::Errno::EBUSY;
        for _ in 0..100 {
            match umount2(self.mountpoint, MntFlags::empty()) {
                Ok(()) => {
                    self.active = false;
                    return Ok(());
                }
                Err(nix::errno::Errno::EBUSY) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        let _ = umount2(self.mountpoint, MntFlags::MNT_DETACH);
        self.active = false;
        Err(MountError::Umount {
            mountpoint: self.mountpoint.to_path_buf(),
            source: last,
        })
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

/// Attaches `image` to a loop device, mounts it on `mountpoint` (created if missing), runs `f` on
/// the mounted root, unmounts and detaches (also when `f` panics).
pub fn with_mounted<T>(
    image: &Path,
    fs: FsType,
    mountpoint: &Path,
    f: impl FnOnce(&Path) -> T,
) -> Result<T, MountError> {
    can_mount()?;
    std::fs::create_dir_all(mountpoint).map_err(|source| MountError::MountPoint {
        path: mountpoint.to_path_buf(),
        source,
    })?;
    // Crash images of one base share its UUID; XFS refuses a second mount of a UUID unless told.
    let options = match fs {
        FsType::Ext4 => None,
        FsType::Xfs => Some("nouuid"),
    };
    let device = LoopDevice::attach(image).map_err(|source| MountError::Loop {
        image: image.to_path_buf(),
        source,
    })?;
    mount(
        Some(device.path()),
        mountpoint,
        Some(fs.as_str()),
        MsFlags::MS_NOATIME,
        options,
    )
    .map_err(|source| MountError::Mount {
        device: device.path().to_path_buf(),
        mountpoint: mountpoint.to_path_buf(),
        fs,
        source,
    })?;
    let mut guard = Mounted {
        mountpoint,
        active: true,
    };
    let out = f(mountpoint);
    guard.unmount()?;
    drop(device);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_type_parses() {
        assert_eq!("ext4".parse::<FsType>().unwrap(), FsType::Ext4);
        assert_eq!("xfs".parse::<FsType>().unwrap().to_string(), "xfs");
        assert!("btrfs".parse::<FsType>().is_err());
    }

    #[test]
    fn mounts_an_ext4_image() {
        if !powercut_writer::capability::runnable(can_mount().map_err(|e| e.to_string())) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let st = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .status();
        let made = match st {
            Ok(s) if s.success() => Ok(()),
            _ => Err("mkfs.ext4 unavailable".to_string()),
        };
        if !powercut_writer::capability::runnable(made) {
            return;
        }
        let mp = dir.path().join("mnt");
        let wrote = with_mounted(&img, FsType::Ext4, &mp, |root| {
            std::fs::write(root.join("hello"), b"world").unwrap();
            root.join("lost+found").exists()
        })
        .unwrap();
        assert!(wrote);
        // A second image that differs: loop devices get reused, and neither may serve the other's
        // cached blocks.
        let img_b = dir.path().join("img-b");
        std::fs::copy(&img, &img_b).unwrap();
        with_mounted(&img_b, FsType::Ext4, &mp, |root| {
            std::fs::write(root.join("hello"), b"other").unwrap()
        })
        .unwrap();
        for _ in 0..3 {
            let a = with_mounted(&img, FsType::Ext4, &mp, |root| {
                std::fs::read(root.join("hello")).unwrap()
            })
            .unwrap();
            let b = with_mounted(&img_b, FsType::Ext4, &mp, |root| {
                std::fs::read(root.join("hello")).unwrap()
            })
            .unwrap();
            assert_eq!((a.as_slice(), b.as_slice()), (&b"world"[..], &b"other"[..]));
        }
        let read = with_mounted(&img, FsType::Ext4, &mp, |root| {
            std::fs::read(root.join("hello")).unwrap()
        })
        .unwrap();
        assert_eq!(read, b"world");
    }
}
