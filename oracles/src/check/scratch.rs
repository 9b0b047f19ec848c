//! Where crash images are built: a directory of the run's own under the scratch root, on a
//! reflink-capable file system when possible so that each state is a clone instead of a copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::config::CheckConfig;
use crate::mount::{self, FsType};
use crate::outcome::{io_err, CheckError};

/// The run's own directory under the scratch root, removed on drop (the crate keeps tempfile a
/// dev-dependency).
pub(crate) struct Scratch {
    pub(crate) path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub(crate) fn scratch(cfg: &CheckConfig) -> Result<Scratch, CheckError> {
    let root = cfg.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = root.join(format!(
        "powercut-check-{}-{}",
        std::process::id(),
        next_scratch_id()
    ));
    std::fs::create_dir_all(&path).map_err(io_err("create scratch directory", &path))?;
    Ok(Scratch { path })
}

/// Runs `f` on a scratch directory; on a reflink-capable file system when possible. Returns
/// `f`'s result and, when crash images are full copies instead of clones, why.
pub(super) fn with_scratch<T>(
    cfg: &CheckConfig,
    image_bytes: u64,
    f: impl FnOnce(&Path) -> Result<T, CheckError>,
) -> Result<(T, Option<String>), CheckError> {
    let scratch = scratch(cfg)?;
    if crate::replay::reflink_supported(&scratch.path) {
        return Ok((f(&scratch.path)?, None));
    }
    if !cfg.reflink_scratch {
        let why = "the scratch directory cannot reflink and the XFS scratch is turned off";
        return Ok((f(&scratch.path)?, Some(why.to_string())));
    }
    let img = scratch.path.join("reflink-scratch.img");
    let why = match make_reflink_scratch(&img, cfg, image_bytes) {
        Ok(()) => {
            let mut f = Some(f);
            let mounted =
                mount::with_mounted(&img, FsType::Xfs, &scratch.path.join("reflink"), |root| {
                    f.take().map(|f| f(root))
                });
            match (mounted, f) {
                (Ok(Some(result)), _) => return Ok((result?, None)),
                (Err(e), Some(f)) => {
                    let why = format!("mounting the XFS scratch file system failed ({e})");
                    return Ok((f(&scratch.path)?, Some(why)));
                }
                // `f` ran on the XFS scratch but its unmount failed.
                _ => {
                    return Err(CheckError::Io {
                        op: "unmount reflink scratch",
                        path: scratch.path.clone(),
                        source: std::io::Error::other("unmount failed"),
                    })
                }
            }
        }
        Err(why) => why,
    };
    Ok((f(&scratch.path)?, Some(why)))
}

/// A sparse XFS image with reflink for the crash images: room for the prefix and state images
/// of every worker plus the kept copies. Err: why not.
fn make_reflink_scratch(img: &Path, cfg: &CheckConfig, image_bytes: u64) -> Result<(), String> {
    let size = image_bytes
        .saturating_mul(4 * cfg.workers.max(1) as u64 + 4)
        .max(1 << 30);
    std::fs::File::create(img)
        .and_then(|file| file.set_len(size))
        .map_err(|e| format!("creating the XFS scratch image failed ({e})"))?;
    let status = std::process::Command::new("mkfs.xfs")
        .args(["-q", "-f", "-m", "reflink=1"])
        .arg(img)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("mkfs.xfs failed ({s})")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("mkfs.xfs is not installed (apt-get install xfsprogs)".to_string())
        }
        Err(e) => Err(format!("mkfs.xfs could not run ({e})")),
    }
}

fn next_scratch_id() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}
