//! What a check of one block log is about: the log, what it was recorded on, and how its states
//! are judged.

use std::path::Path;

use crate::invariants::RecoverFn;
use crate::mount::FsType;

/// The inputs every check of one log takes ([`check_log`](super::check_log),
/// [`check_one`](super::check_one), [`coverage::check_coverage`](super::coverage::check_coverage),
/// [`with_state_checker`](super::with_state_checker), the shrink): the log, the base image it was
/// recorded over, its file system, the workload's seed and the recovery run on each state. The
/// knobs of a check ([`CheckConfig`](super::CheckConfig)) stay apart: one log is checked under
/// several of them (the coverage pass, a shrink within a deadline).
#[derive(Clone, Copy)]
pub struct LogInput<'a> {
    /// The block log.
    pub log_path: &'a Path,
    /// The image the log's writes apply to.
    pub base_image: &'a Path,
    /// The file system of the image.
    pub fs: FsType,
    /// The workload's seed (the payloads the invariants expect derive from it).
    pub seed: u64,
    /// The engine's recovery, run on each mounted state.
    pub recover: &'a RecoverFn,
}

impl std::fmt::Debug for LogInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogInput")
            .field("log_path", &self.log_path)
            .field("base_image", &self.base_image)
            .field("fs", &self.fs)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}
