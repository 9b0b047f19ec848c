//! Debian packages a workload's programs need in the guest (`guest_packages:`): their
//! dependency closure is resolved with apt-cache, downloaded with `apt-get download`, unpacked
//! with `dpkg -x` and laid into the initramfs (binaries, shared libraries, data; no
//! documentation). The image is cached under a key that includes every package's version, as
//! for the kernel. The user's own files (`guest_files:`) go the same way, at
//! `/opt/powercut/files/<base name>`, keyed by their contents.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use powercut_workloads::spec::{guest_file_name, GUEST_FILES_DIR, MAX_GUEST_FILE_BYTES};

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

/// A file of the user's for the guest, read on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFile {
    /// Its base name: it lands at `/opt/powercut/files/<name>`.
    pub name: String,
    /// 0o755 when the host file has an execute bit, else 0o644.
    pub mode: u32,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// Reads the `guest_files:` of a workload (paths on the host): each a regular file (symbolic
/// links followed) of at most `MAX_GUEST_FILE_BYTES`, no two with the same base name.
pub fn read_files(paths: &[String]) -> Result<Vec<GuestFile>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out: Vec<GuestFile> = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let what = || format!("guest_files[{i}] {path}");
        let meta = std::fs::metadata(path).with_context(what)?;
        if !meta.is_file() {
            bail!("{}: not a regular file", what());
        }
        if meta.len() > MAX_GUEST_FILE_BYTES {
            bail!(
                "{}: {} bytes is larger than the limit of {MAX_GUEST_FILE_BYTES}",
                what(),
                meta.len()
            );
        }
        let name = guest_file_name(path).to_string();
        if let Some(first) = out.iter().position(|f| f.name == name) {
            bail!(
                "{}: a second file named {name} (guest_files[{first}])",
                what()
            );
        }
        let bytes = std::fs::read(path).with_context(what)?;
        if bytes.len() as u64 > MAX_GUEST_FILE_BYTES {
            bail!(
                "{}: grew past the limit of {MAX_GUEST_FILE_BYTES} bytes",
                what()
            );
        }
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        out.push(GuestFile { name, mode, bytes });
    }
    Ok(out)
}

/// The key text of the guest files: one `file NAME MODE SHA256` line each.
pub fn files_key_text(files: &[GuestFile]) -> String {
    files
        .iter()
        .map(|f| {
            let hash = super::image::sha256_hex(&f.bytes);
            format!("file {} {:o} {hash}\n", f.name, f.mode)
        })
        .collect()
}

/// Lays the files of the unpacked packages `roots` into `cpio` (directories once each,
/// symbolic links as links, modes kept), then the user's `files` in the guest files
/// directory; returns the number of files.
pub fn add_to_cpio(cpio: &mut CpioWriter, roots: &[PathBuf], files: &[GuestFile]) -> Result<usize> {
    let mut dirs: BTreeSet<String> = BASE_DIRS.iter().map(|d| (*d).to_string()).collect();
    let mut count = 0;
    for root in roots {
        count += add_tree(cpio, root, root, &mut dirs)?;
    }
    if !files.is_empty() {
        let dir = GUEST_FILES_DIR.trim_start_matches('/');
        let mut at = String::new();
        for part in dir.split('/') {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if dirs.insert(at.clone()) {
                cpio.dir(&at);
            }
        }
        for f in files {
            cpio.file(&format!("{dir}/{}", f.name), f.mode, &f.bytes);
            count += 1;
        }
    }
    Ok(count)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn path_of(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn guest_files_are_read_with_their_modes_and_keyed_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let data = dir.path().join("data.txt");
        std::fs::write(&data, "x").unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o600)).unwrap();
        let files = read_files(&[path_of(&script), path_of(&data)]).unwrap();
        assert_eq!(files[0].name, "run.sh");
        assert_eq!(files[0].mode, 0o755);
        assert_eq!(files[1].mode, 0o644);
        assert_eq!(files[1].bytes, b"x");
        let key = files_key_text(&files);
        std::fs::write(&data, "y").unwrap();
        let changed = files_key_text(&read_files(&[path_of(&script), path_of(&data)]).unwrap());
        assert_ne!(key, changed, "the key follows the contents");

        let mut cpio = CpioWriter::new();
        assert_eq!(add_to_cpio(&mut cpio, &[], &files).unwrap(), 2);
        let archive = cpio.finish();
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("opt/powercut/files/run.sh"), "{text}");
    }

    #[test]
    fn bad_guest_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = path_of(&dir.path().join("missing.sh"));
        let e = format!("{:#}", read_files(&[missing]).unwrap_err());
        assert!(
            e.contains("guest_files[0]") && e.contains("missing.sh"),
            "{e}"
        );

        let e = format!("{:#}", read_files(&[path_of(dir.path())]).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");

        let big = dir.path().join("big.bin");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_GUEST_FILE_BYTES + 1).unwrap();
        let e = format!("{:#}", read_files(&[path_of(&big)]).unwrap_err());
        assert!(e.contains("larger than the limit"), "{e}");

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("big.bin"), "z").unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, "s").unwrap();
        let e = format!(
            "{:#}",
            read_files(&[path_of(&small), path_of(&sub.join("small"))]).unwrap_err()
        );
        assert!(e.contains("guest_files[1]"), "{e}");
        std::fs::write(sub.join("small"), "t").unwrap();
        let e = format!(
            "{:#}",
            read_files(&[path_of(&small), path_of(&sub.join("small"))]).unwrap_err()
        );
        assert!(e.contains("a second file named small"), "{e}");
    }
}
