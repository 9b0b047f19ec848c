//! File steps under `root/files`: create, rename and remove, each made durable by the fsyncs
//! the step asks for, and the contents a created file gets.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::{ExecError, Phase};
use super::run::Run;
use crate::ack::Ack;
use crate::spec::FileOp;

/// The error of file operation `op` on `path`, for `map_err`.
pub(super) fn file_err(
    phase: &Phase,
    op: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> ExecError {
    let phase = phase.clone();
    let path = path.to_path_buf();
    move |source| ExecError::File {
        phase,
        op,
        path,
        source,
    }
}

impl Run<'_, '_> {
    /// A `file:` step; acked when every fsync that makes it durable was asked for.
    pub(super) fn file_op(
        &mut self,
        index: usize,
        op: &FileOp,
        phase: &Phase,
    ) -> Result<(), ExecError> {
        self.summary.file_ops += 1;
        match op {
            FileOp::Create {
                path,
                size_bytes,
                fsync_file,
                fsync_dir,
            } => {
                let crc =
                    self.create_file(index, path, *size_bytes, *fsync_file, *fsync_dir, phase)?;
                if op.is_acked() {
                    self.shared.ack(
                        phase,
                        &Ack::FileCreate {
                            path: path.clone(),
                            crc32c: crc,
                        },
                    )?;
                }
                self.file_crcs.insert(path.clone(), crc);
            }
            FileOp::Rename {
                from,
                to,
                fsync_file,
                fsync_dir,
            } => {
                let crc = self.rename_file(from, to, *fsync_file, *fsync_dir, phase)?;
                if op.is_acked() {
                    self.shared.ack(
                        phase,
                        &Ack::FileRename {
                            from: from.clone(),
                            to: to.clone(),
                            crc32c: crc,
                        },
                    )?;
                }
                self.file_crcs.remove(from);
                self.file_crcs.insert(to.clone(), crc);
            }
            FileOp::Remove { path, fsync_dir } => {
                let full = self.files_dir.join(path);
                fs::remove_file(&full).map_err(file_err(phase, "remove", &full))?;
                if *fsync_dir {
                    self.fsync_parents(&[path.as_str()], &[], phase)?;
                }
                if op.is_acked() {
                    self.shared
                        .ack(phase, &Ack::FileRemove { path: path.clone() })?;
                }
                self.file_crcs.remove(path);
            }
        }
        Ok(())
    }

    /// Creates (or overwrites) `path` with the contents of step `index`; returns their crc32c.
    fn create_file(
        &self,
        index: usize,
        path: &str,
        size_bytes: u64,
        fsync_file: bool,
        fsync_dir: bool,
        phase: &Phase,
    ) -> Result<u32, ExecError> {
        let full = self.files_dir.join(path);
        let new_dirs = create_parents(&self.files_dir, path).map_err(file_err(
            phase,
            "create directory",
            &full,
        ))?;
        let contents = file_contents(self.shared.workload.seed, path, index, size_bytes);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&full)
            .map_err(file_err(phase, "create", &full))?;
        file.write_all(&contents)
            .map_err(file_err(phase, "write", &full))?;
        if fsync_file {
            file.sync_all().map_err(file_err(phase, "fsync", &full))?;
        }
        drop(file);
        if fsync_dir {
            self.fsync_parents(&[path], &new_dirs, phase)?;
        }
        Ok(crc32c::crc32c(&contents))
    }

    /// Renames `from` (a file this run created) to `to`; returns the crc32c of its contents.
    fn rename_file(
        &self,
        from: &str,
        to: &str,
        fsync_file: bool,
        fsync_dir: bool,
        phase: &Phase,
    ) -> Result<u32, ExecError> {
        let from_full = self.files_dir.join(from);
        let to_full = self.files_dir.join(to);
        let Some(&crc) = self.file_crcs.get(from) else {
            return Err(ExecError::Contract {
                phase: phase.clone(),
                message: format!("rename of {from}, which this run did not create"),
            });
        };
        if fsync_file {
            File::open(&from_full)
                .and_then(|f| f.sync_all())
                .map_err(file_err(phase, "fsync", &from_full))?;
        }
        let new_dirs = create_parents(&self.files_dir, to).map_err(file_err(
            phase,
            "create directory",
            &to_full,
        ))?;
        fs::rename(&from_full, &to_full).map_err(file_err(phase, "rename", &from_full))?;
        if fsync_dir {
            self.fsync_parents(&[from, to], &new_dirs, phase)?;
        }
        Ok(crc)
    }

    /// fsyncs the directories holding `paths` and, for each directory created on the way,
    /// the directory holding it: every new name then survives a crash.
    fn fsync_parents(
        &self,
        paths: &[&str],
        new_dirs: &[String],
        phase: &Phase,
    ) -> Result<(), ExecError> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for relative in paths
            .iter()
            .copied()
            .chain(new_dirs.iter().map(String::as_str))
        {
            let parent = match relative.rsplit_once('/') {
                Some((parent, _)) => self.files_dir.join(parent),
                None => self.files_dir.clone(),
            };
            if !dirs.contains(&parent) {
                dirs.push(parent);
            }
        }
        // Deepest first: a directory's own entries before the entry naming it.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            fsync_dir(&dir).map_err(|source| ExecError::File {
                phase: phase.clone(),
                op: "fsync directory",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }
}
/// Contents of a file created by step `step_index`: deterministic from the seed, the path and
/// the step, so two creations of the same path differ.
pub fn file_contents(seed: u64, path: &str, step_index: usize, len_bytes: u64) -> Vec<u8> {
    let state = seed
        ^ (u64::from(crc32c::crc32c(path.as_bytes())) << 32)
        ^ (step_index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    // Bounded by spec::MAX_FILE_BYTES.
    let len = usize::try_from(len_bytes).unwrap_or(0);
    let mut out = vec![0u8; len];
    crate::payload::fill_splitmix(state, &mut out);
    out
}

/// Creates the missing parent directories of `relative` under `base`; returns the ones created
/// (relative paths, outermost first).
fn create_parents(base: &Path, relative: &str) -> std::io::Result<Vec<String>> {
    let mut created = Vec::new();
    for (i, _) in relative.match_indices('/') {
        let dir = &relative[..i];
        match fs::create_dir(base.join(dir)) {
            Ok(()) => created.push(dir.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// fsyncs a directory, making the names in it durable.
pub(super) fn fsync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}
