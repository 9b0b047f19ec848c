//! The files and directories a workload's file steps leave after each step, checked as the
//! steps are read.

use std::collections::{BTreeMap, BTreeSet};

use super::{FileOp, Step};

/// Which files and directories exist after each step, so a step that renames or removes a file
/// that is not there is refused when the workload is read, not half-way through a VM run.
#[derive(Debug, Default)]
pub(super) struct FileTree {
    /// Existing files and whether their current state was acknowledged.
    files: BTreeMap<String, bool>,
    /// Names whose absence was acknowledged (by a rename away or a removal).
    acked_absent: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

impl FileTree {
    /// Applies `step` (file steps only), refusing what the files at this step rule out.
    pub(super) fn apply(&mut self, step: &Step) -> Result<(), String> {
        let Step::File(op) = step else { return Ok(()) };
        let acked = op.is_acked();
        // An acknowledged state must stay the expected one: an unacknowledged change of the same
        // path may or may not reach the disk before a crash, and the ack ledger cannot say which.
        let acked_absent = &self.acked_absent;
        let guard = |path: &str, files: &BTreeMap<String, bool>| -> Result<(), String> {
            if !acked && files.get(path).copied().unwrap_or(false) {
                return Err(format!(
                    "{path} holds an acknowledged state, so an operation without fsync_file and \
                     fsync_dir may not change it (a crash could keep either version)"
                ));
            }
            if !acked && acked_absent.contains(path) {
                return Err(format!(
                    "{path} was acknowledged gone, so an operation without fsync_file and \
                     fsync_dir may not re-create it (a crash could keep either state)"
                ));
            }
            Ok(())
        };
        match op {
            FileOp::Create { path, .. } => {
                self.check_new_name(path)?;
                guard(path, &self.files)?;
                self.add_parents(path);
                self.files.insert(path.clone(), acked);
                self.acked_absent.remove(path);
            }
            FileOp::Rename { from, to, .. } => {
                if !self.files.contains_key(from) {
                    return Err(format!(
                        "rename of {from}, which does not exist at this step"
                    ));
                }
                self.check_new_name(to)?;
                guard(from, &self.files)?;
                guard(to, &self.files)?;
                self.files.remove(from);
                self.add_parents(to);
                self.files.insert(to.clone(), acked);
                self.acked_absent.remove(to);
                if acked {
                    self.acked_absent.insert(from.clone());
                }
            }
            FileOp::Remove { path, .. } => {
                if !self.files.contains_key(path) {
                    return Err(format!(
                        "removal of {path}, which does not exist at this step"
                    ));
                }
                guard(path, &self.files)?;
                self.files.remove(path);
                if acked {
                    self.acked_absent.insert(path.clone());
                }
            }
        }
        Ok(())
    }

    fn check_new_name(&self, path: &str) -> Result<(), String> {
        if self.dirs.contains(path) {
            return Err(format!("{path} is a directory at this step"));
        }
        for parent in parents(path) {
            if self.files.contains_key(parent) {
                return Err(format!("{parent} is a file at this step, not a directory"));
            }
        }
        Ok(())
    }

    fn add_parents(&mut self, path: &str) {
        for parent in parents(path) {
            self.dirs.insert(parent.to_string());
        }
    }
}

/// `a/b/c` -> `a`, `a/b`.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}
