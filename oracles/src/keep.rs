//! Keeping the evidence of failing states: the block log once per keep directory, and per state
//! its image, ledger and outcome.
//!
//! Several checks may keep into one directory at the same time (the workers of one check, the
//! coverage pass, shards, concurrent checks of one process or of several). So nothing here ever
//! writes through a name that may already exist: the log is placed by `link(2)`, which either
//! creates the name or fails with EEXIST, or by a whole copy under a unique name that is then
//! linked into place; every other file is written under a unique name and renamed over its final
//! one. A keep directory that already holds a different log keeps this log's states under
//! `log-HASH/` instead, so kept states always sit beside the log they came from.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::outcome::CheckError;
use crate::replay::clone_image;

/// The name of the kept block log inside a keep directory.
pub const KEPT_LOG_NAME: &str = "block.log";

/// Where one check keeps its failing states; places the log on first use.
#[derive(Debug)]
pub(crate) struct Keeper {
    keep_dir: PathBuf,
    log_path: PathBuf,
    log_hash: String,
    /// The directory the states go to, once the log is placed.
    root: Mutex<Option<PathBuf>>,
}

impl Keeper {
    pub(crate) fn new(keep_dir: &Path, log_path: &Path, log_hash: &str) -> Keeper {
        Keeper {
            keep_dir: keep_dir.to_path_buf(),
            log_path: log_path.to_path_buf(),
            log_hash: log_hash.to_string(),
            root: Mutex::new(None),
        }
    }

    /// The directory kept states go to, beside their log (placed on the first call).
    pub(crate) fn root(&self) -> Result<PathBuf, CheckError> {
        let mut root = self.root.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = root.as_ref() {
            return Ok(r.clone());
        }
        let placed = self.place()?;
        *root = Some(placed.clone());
        Ok(placed)
    }

    fn place(&self) -> Result<PathBuf, CheckError> {
        if place_log(&self.log_path, &self.keep_dir)? {
            return Ok(self.keep_dir.clone());
        }
        let own = self.keep_dir.join(format!("log-{}", self.log_hash));
        if place_log(&self.log_path, &own)? {
            return Ok(own);
        }
        Err(CheckError::Io {
            op: "keep the block log in",
            path: own,
            source: std::io::Error::other(format!(
                "{KEPT_LOG_NAME} there is a different log than {}",
                self.log_path.display()
            )),
        })
    }
}

/// Places `log` as `dir/block.log` unless that name is taken. Returns false if the name holds a
/// different log (the caller keeps elsewhere), true if it now holds this log's bytes.
fn place_log(log: &Path, dir: &Path) -> Result<bool, CheckError> {
    std::fs::create_dir_all(dir).map_err(io_err("create keep directory", dir))?;
    let target = dir.join(KEPT_LOG_NAME);
    match std::fs::hard_link(log, &target) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return same_log(log, &target),
        // Another file system (EXDEV) or links refused: a whole copy, linked into place.
        Err(_) => {}
    }
    let tmp = unique_name(dir, KEPT_LOG_NAME);
    let copied = std::fs::copy(log, &tmp).map_err(io_err("copy the block log to", &tmp));
    let linked = copied.and_then(|_| match std::fs::hard_link(&tmp, &target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => same_log(log, &target),
        Err(e) => Err(io_err("link the kept block log", &target)(e)),
    });
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// Whether `kept` holds the same bytes as `log` (the same file, or an identical copy).
fn same_log(log: &Path, kept: &Path) -> Result<bool, CheckError> {
    let a = std::fs::metadata(log).map_err(io_err("stat block log", log))?;
    let b = std::fs::metadata(kept).map_err(io_err("stat kept block log", kept))?;
    if a.dev() == b.dev() && a.ino() == b.ino() {
        return Ok(true);
    }
    if a.len() != b.len() {
        return Ok(false);
    }
    let mut fa = File::open(log).map_err(io_err("open block log", log))?;
    let mut fb = File::open(kept).map_err(io_err("open kept block log", kept))?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(io_err("read block log", log))?;
        let m = read_full(&mut fb, &mut bb).map_err(io_err("read kept block log", kept))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Writes `bytes` to `path` through a unique temporary name and a rename, so a reader or a
/// concurrent keeper of the same state never sees a partial file.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CheckError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = unique_name(dir, name);
    let written = std::fs::write(&tmp, bytes).map_err(io_err("write", &tmp));
    finish(written, &tmp, path)
}

/// Clones `image` to `path` through a unique temporary name and a rename.
pub(crate) fn clone_new(image: &Path, path: &Path) -> Result<(), CheckError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = unique_name(dir, "image");
    let cloned = clone_image(image, &tmp)
        .map(|_| ())
        .map_err(CheckError::from);
    finish(cloned, &tmp, path)
}

fn finish(done: Result<(), CheckError>, tmp: &Path, path: &Path) -> Result<(), CheckError> {
    let renamed = done.and_then(|()| std::fs::rename(tmp, path).map_err(io_err("rename to", path)));
    if renamed.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    renamed
}

/// A name in `dir` no other keeper of this or another process uses.
fn unique_name(dir: &Path, base: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{base}.tmp-{}-{n}", std::process::id()))
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckError {
    let path = path.to_path_buf();
    move |source| CheckError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_keepers_of_one_log_place_it_once_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("input.log");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&log, &bytes).unwrap();
        let keep = dir.path().join("keep");
        let keepers: Vec<Keeper> = (0..16).map(|_| Keeper::new(&keep, &log, "abc")).collect();
        let roots: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = keepers.iter().map(|k| s.spawn(|| k.root())).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert!(roots.iter().all(|r| r == &keep), "{roots:?}");
        assert_eq!(std::fs::read(&log).unwrap(), bytes, "the input log changed");
        assert_eq!(std::fs::read(keep.join(KEPT_LOG_NAME)).unwrap(), bytes);
    }

    #[test]
    fn a_keep_directory_holding_another_log_keeps_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        std::fs::write(&a, b"first log").unwrap();
        std::fs::write(&b, b"other log").unwrap();
        let keep = dir.path().join("keep");
        assert_eq!(Keeper::new(&keep, &a, "aaaa").root().unwrap(), keep);
        let root_b = Keeper::new(&keep, &b, "bbbb").root().unwrap();
        assert_eq!(root_b, keep.join("log-bbbb"));
        assert_eq!(
            std::fs::read(keep.join(KEPT_LOG_NAME)).unwrap(),
            b"first log"
        );
        assert_eq!(
            std::fs::read(root_b.join(KEPT_LOG_NAME)).unwrap(),
            b"other log"
        );
        // An identical copy (another recording of the same bytes) is the same log.
        let c = dir.path().join("c.log");
        std::fs::write(&c, b"first log").unwrap();
        assert_eq!(Keeper::new(&keep, &c, "aaaa").root().unwrap(), keep);
        assert_eq!(std::fs::read(&a).unwrap(), b"first log");
    }

    #[test]
    fn write_new_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("outcome.json");
        write_new(&p, b"one").unwrap();
        write_new(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary files left behind");
    }
}
