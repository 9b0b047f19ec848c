//! The files a command will write, checked against the files it reads before anything is opened
//! for writing: an output that is an input (by another name, a symlink or a hard link) would be
//! truncated or overwritten, and an output that cannot be written would only fail after the
//! whole run.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};
use nix::unistd::{access, AccessFlags};

/// What a command reads and writes. Build it with [`Io::input`], [`Io::file`] and [`Io::dir`],
/// then call [`Io::check`].
#[derive(Debug, Default)]
pub struct Io {
    inputs: Vec<(String, PathBuf)>,
    outputs: Vec<Output>,
}

#[derive(Debug)]
struct Output {
    what: String,
    path: PathBuf,
    kind: OutputKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    /// A file the command writes where the user said.
    File,
    /// A directory the command creates if needed.
    Dir,
    /// A file the command writes inside one of its output directories.
    InDir,
}

/// Identity of a path: device and inode when it exists, else its resolved absolute path.
#[derive(Debug, PartialEq, Eq)]
enum FileId {
    Inode(u64, u64),
    Path(PathBuf),
}

impl FileId {
    fn of(path: &Path) -> FileId {
        match std::fs::metadata(path) {
            Ok(meta) => FileId::Inode(meta.dev(), meta.ino()),
            Err(_) => FileId::Path(resolve(path)),
        }
    }
}

/// `path` made absolute with its longest existing ancestor canonicalised (symlinks resolved),
/// so that two spellings of a file that does not exist yet compare equal.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let components: Vec<Component<'_>> = absolute.components().collect();
    for existing in (1..=components.len()).rev() {
        let head: PathBuf = components[..existing].iter().collect();
        let Ok(mut resolved) = head.canonicalize() else {
            continue;
        };
        for c in &components[existing..] {
            match c {
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => resolved.push(name),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        return resolved;
    }
    absolute
}

impl Io {
    pub fn new() -> Io {
        Io::default()
    }

    /// A file the command reads (`what` names it in errors, e.g. "the base image (--base)").
    pub fn input<'p>(mut self, what: &str, path: impl Into<Option<&'p Path>>) -> Io {
        if let Some(path) = path.into() {
            self.inputs.push((what.to_string(), path.to_path_buf()));
        }
        self
    }

    /// A file the command writes at the path given.
    pub fn file<'p>(self, what: &str, path: impl Into<Option<&'p Path>>) -> Io {
        self.output(what, path.into(), OutputKind::File)
    }

    /// A directory the command creates and writes `files` into (others may follow).
    pub fn dir(mut self, what: &str, path: &Path, files: &[&str]) -> Io {
        self = self.output(what, Some(path), OutputKind::Dir);
        for name in files {
            self = self.output(
                &format!("{name} of {what}"),
                Some(&path.join(name)),
                OutputKind::InDir,
            );
        }
        self
    }

    fn output(mut self, what: &str, path: Option<&Path>, kind: OutputKind) -> Io {
        if let Some(path) = path {
            self.outputs.push(Output {
                what: what.to_string(),
                path: path.to_path_buf(),
                kind,
            });
        }
        self
    }

    /// Refuses an output that is the same file as an input or as another output, a file output
    /// that is a directory, whose directory does not exist or that cannot be written, and an
    /// output directory that is not a directory.
    pub fn check(&self) -> Result<()> {
        let inputs: Vec<(&(String, PathBuf), FileId)> = self
            .inputs
            .iter()
            .map(|input| (input, FileId::of(&input.1)))
            .collect();
        let outputs: Vec<(&Output, FileId)> = self
            .outputs
            .iter()
            .map(|out| (out, FileId::of(&out.path)))
            .collect();
        // Directories the command creates: a report may go into one of them.
        let created: Vec<PathBuf> = self
            .outputs
            .iter()
            .filter(|out| out.kind == OutputKind::Dir)
            .map(|out| resolve(&out.path))
            .collect();
        for (i, (out, id)) in outputs.iter().enumerate() {
            if let Some(((what, path), _)) = inputs.iter().find(|(_, input)| input == id) {
                bail!(
                    "refusing to write {} {}: it is the same file as {what} {} (give another \
                     output path)",
                    out.what,
                    out.path.display(),
                    path.display()
                );
            }
            if let Some((other, _)) = outputs[..i].iter().find(|(_, earlier)| earlier == id) {
                bail!(
                    "refusing to write {} {}: it is the same file as {} {}",
                    out.what,
                    out.path.display(),
                    other.what,
                    other.path.display()
                );
            }
            match out.kind {
                OutputKind::File => writable_file(out, &created)?,
                OutputKind::Dir => {
                    if out.path.exists() && !out.path.is_dir() {
                        bail!(
                            "{} {} exists and is not a directory",
                            out.what,
                            out.path.display()
                        );
                    }
                }
                OutputKind::InDir => {}
            }
        }
        Ok(())
    }
}

/// A file output can be created or replaced: not a directory, in a writable directory that
/// exists or that the command creates (one of `created`).
fn writable_file(out: &Output, created: &[PathBuf]) -> Result<()> {
    let (what, path) = (&out.what, &out.path);
    if path.is_dir() {
        bail!("{what} {} is a directory", path.display());
    }
    if path.exists() {
        if access(path, AccessFlags::W_OK).is_err() {
            bail!("{what} {} is not writable", path.display());
        }
        return Ok(());
    }
    let resolved = resolve(path);
    let parent = resolved.parent().unwrap_or(Path::new("/"));
    if !parent.exists() && created.iter().any(|dir| dir == parent) {
        return Ok(());
    }
    if !parent.is_dir() {
        bail!(
            "{what} {}: directory {} does not exist",
            path.display(),
            parent.display()
        );
    }
    if access(parent, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
        bail!(
            "{what} {}: directory {} is not writable",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(io: Io) -> String {
        format!("{:#}", io.check().unwrap_err())
    }

    #[test]
    fn outputs_equal_to_an_input_are_refused_by_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = d.join("base.img");
        std::fs::write(&input, b"base").unwrap();
        std::fs::hard_link(&input, d.join("hard")).unwrap();
        std::os::unix::fs::symlink(&input, d.join("soft")).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        let same = [
            input.clone(),
            d.join("hard"),
            d.join("soft"),
            d.join("sub/../base.img"),
            d.join("./base.img"),
        ];
        for out in &same {
            let e = err(Io::new()
                .input("the base image (--base)", input.as_path())
                .file("the output image (-o)", out.as_path()));
            assert!(
                e.contains("the output image (-o)")
                    && e.contains("same file as the base image (--base)")
                    && e.contains(&input.display().to_string()),
                "{e}"
            );
        }
        // A file the command writes into its output directory counts too.
        let e = err(Io::new().input("the workload", input.as_path()).dir(
            "the recording (--out)",
            d,
            &["log.bin", "base.img"],
        ));
        assert!(e.contains("base.img of the recording (--out)"), "{e}");
        // Two outputs on one file: the second would overwrite the first.
        let e = err(Io::new()
            .file("the JSON report (--json)", d.join("r").as_path())
            .file("the JUnit report (--junit)", d.join("sub/../r").as_path()));
        assert!(e.contains("same file as the JSON report"), "{e}");
        // Distinct files pass, existing or not.
        Io::new()
            .input("the base image", input.as_path())
            .file("the output", d.join("out.img").as_path())
            .file("the report", None)
            .dir("the recording", &d.join("rec"), &["base.img"])
            .check()
            .unwrap();
    }

    #[test]
    fn unwritable_file_outputs_are_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = err(Io::new().file(
            "the JSON report (--json)",
            d.join("no/such/r.json").as_path(),
        ));
        assert!(e.contains("does not exist"), "{e}");
        // Unless the command creates that directory itself.
        Io::new()
            .dir("the recording (--out)", &d.join("rec"), &[])
            .file("the JSON report (--json)", d.join("rec/r.json").as_path())
            .check()
            .unwrap();
        let e = err(Io::new().file("the JSON report (--json)", d));
        assert!(e.contains("is a directory"), "{e}");
        let file = d.join("f");
        std::fs::write(&file, b"").unwrap();
        let e = err(Io::new().dir("the recording (--out)", &file, &[]));
        assert!(e.contains("is not a directory"), "{e}");
        Io::new()
            .file("the JSON report", d.join("r.json").as_path())
            .check()
            .unwrap();
    }
}
