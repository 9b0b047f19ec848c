//! Debian packages a workload's programs need in the guest (`guest_packages:`): their
//! dependency closure is resolved with apt-cache, downloaded with `apt-get download`, unpacked
//! with `dpkg -x` and laid into the initramfs (binaries, shared libraries, data; no
//! documentation). The image is cached under a key that includes every package's version, as
//! for the kernel.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::initramfs::CpioWriter;
use super::progress::Progress;
use super::provision;

/// Paths of a package left out of the guest: documentation nobody reads there.
const SKIPPED_PREFIXES: [&str; 5] = [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
];

/// Directories the initramfs has already (made by the image builder itself).
pub const BASE_DIRS: [&str; 11] = [
    "bin",
    "dev",
    "dev/mapper",
    "etc",
    "lib",
    "lib/modules",
    "mnt",
    "proc",
    "run",
    "sys",
    "tmp",
];

/// The closure of `packages` with versions, kept in `<cache>/resolved-guest-<hash>.json` until
/// the apt lists change (`stamp`).
pub fn resolve(
    packages: &[String],
    cache: &Path,
    stamp: u128,
    progress: &Progress,
) -> Result<Vec<(String, String)>> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted = packages.to_vec();
    sorted.sort();
    let name = super::image::sha256_hex(sorted.join(" ").as_bytes());
    let memo = cache.join(format!("resolved-guest-{}.json", &name[..16]));
    if let Ok(bytes) = std::fs::read(&memo) {
        if let Ok((memo_stamp, closure)) =
            serde_json::from_slice::<(u128, Vec<(String, String)>)>(&bytes)
        {
            if memo_stamp == stamp && stamp != 0 {
                return Ok(closure);
            }
        }
    }
    let closure = progress.step(
        &format!("resolving guest packages {} (apt-cache)", sorted.join(" ")),
        || provision::package_closure(&sorted),
    )?;
    std::fs::write(&memo, serde_json::to_vec(&(stamp, &closure))?)?;
    Ok(closure)
}

/// The key text of a closure: one `guest NAME VERSION` line per package.
pub fn key_text(closure: &[(String, String)]) -> String {
    closure
        .iter()
        .map(|(name, version)| format!("guest {name} {version}\n"))
        .collect()
}

/// Downloads and unpacks every package of `closure`; returns their roots.
pub fn fetch(
    closure: &[(String, String)],
    cache: &Path,
    progress: &Progress,
) -> Result<Vec<PathBuf>> {
    let debs = cache.join("debs");
    closure
        .iter()
        .map(|(name, version)| {
            let deb = provision::download_deb(name, version, &debs, progress)?;
            let root = cache.join("pkgs").join(format!("{name}_{version}"));
            provision::extract_deb(&deb, &root, progress)?;
            Ok(root)
        })
        .collect()
}

/// Lays the files of the unpacked packages `roots` into `cpio` (directories once each,
/// symbolic links as links, modes kept); returns the number of files.
pub fn add_to_cpio(cpio: &mut CpioWriter, roots: &[PathBuf]) -> Result<usize> {
    let mut dirs: BTreeSet<String> = BASE_DIRS.iter().map(|d| (*d).to_string()).collect();
    let mut files = 0;
    for root in roots {
        files += add_tree(cpio, root, root, &mut dirs)?;
    }
    Ok(files)
}

fn add_tree(
    cpio: &mut CpioWriter,
    root: &Path,
    dir: &Path,
    dirs: &mut BTreeSet<String>,
) -> Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    let mut files = 0;
    for entry in entries {
        let path = entry.path();
        let inside = path
            .strip_prefix(root)
            .context("a package path outside its root")?
            .to_string_lossy()
            .into_owned();
        if inside == ".powercut-extracted" || SKIPPED_PREFIXES.iter().any(|p| inside.starts_with(p))
        {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            cpio.symlink(&inside, &target.to_string_lossy());
            files += 1;
        } else if meta.is_dir() {
            if dirs.insert(inside.clone()) {
                cpio.dir(&inside);
            }
            files += add_tree(cpio, root, &path, dirs)?;
        } else if meta.is_file() {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            cpio.file(&inside, meta.permissions().mode() & 0o7777, &bytes);
            files += 1;
        }
    }
    Ok(files)
}
