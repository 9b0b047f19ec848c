//! Shrinking a failing crash state to a minimal reproducer.
//!
//! A violation found on a state with dropped or torn writes is easier to understand on the
//! simplest state of the same cut that still shows it. From the failing state, greedily:
//! 1. drop the tear (apply the torn write whole);
//! 2. try the plain prefix (every volatile write of the cut applied);
//! 3. otherwise apply the dropped writes back one at a time, keeping each that leaves the
//!    violation in place.
//!
//! "Still fails" means a violation of the same invariant. Each try is one image build, mount
//! and recovery (tens of milliseconds), and the number of tries is bounded.

use std::path::Path;

pub use crate::outcome::ShrunkState;

use crate::blocklog::BlockLog;
use crate::check::{check_one, CheckConfig, CheckError};
use crate::crash::{self, StateId, Subset};
use crate::invariants::RecoverFn;
use crate::mount::FsType;

/// Most states tried while shrinking one violation.
pub const MAX_SHRINK_TRIES: usize = 64;

/// Shrinks `state_id` (which violates `invariant`) to the simplest state of its cut that still
/// violates it. Errors only when the original state cannot be resolved or checked; a try that
/// fails to build or mount counts as not failing.
#[allow(clippy::too_many_arguments)]
pub fn shrink_state(
    state_id: &str,
    invariant: &str,
    log_path: &Path,
    base_image: &Path,
    fs: FsType,
    seed: u64,
    config: &CheckConfig,
    recover: &RecoverFn,
) -> Result<ShrunkState, CheckError> {
    let id: StateId = state_id.parse()?;
    let log = BlockLog::open(log_path)?;
    let original = crash::resolve(&log, &id)?;
    let volatile = crash::volatile_writes(&log, id.cut);
    // The volatile writes the failing state applies (whole or torn).
    let mut applied: Vec<u64> = original
        .applied
        .iter()
        .map(|a| a.index)
        .filter(|i| volatile.binary_search(i).is_ok())
        .collect();
    applied.sort_unstable();
    let still_fails = |candidate: &StateId| -> bool {
        let candidate = candidate.to_string();
        match check_one(&candidate, log_path, base_image, fs, seed, config, recover) {
            Ok(outcome) => outcome.violations.iter().any(|v| v.invariant == invariant),
            Err(_) => false,
        }
    };
    let mut search = Search {
        current: id,
        volatile,
        applied,
        tries: 0,
        still_fails: &still_fails,
    };
    search.run();
    Ok(ShrunkState {
        invariant: invariant.to_string(),
        original: state_id.to_string(),
        minimal: search.current.to_string(),
        dropped_writes: search.volatile.len().saturating_sub(search.applied.len()),
        volatile_writes: search.volatile.len(),
        torn: search.current.tear.is_some(),
        tries: search.tries,
    })
}

/// The greedy search of [`shrink_state`].
struct Search<'a> {
    /// The simplest failing state so far.
    current: StateId,
    /// The volatile writes of the cut, sorted.
    volatile: Vec<u64>,
    /// The volatile writes `current` applies, sorted.
    applied: Vec<u64>,
    tries: usize,
    still_fails: &'a dyn Fn(&StateId) -> bool,
}

impl Search<'_> {
    fn run(&mut self) {
        // The current subset spelled out, so that later steps can edit it.
        self.current = self.with_subset(&self.applied);
        // The torn write is in `applied` (resolve applies it torn whatever the subset), so
        // without the tear it is applied whole.
        if self.current.tear.is_some() {
            let mut whole = self.current.clone();
            whole.tear = None;
            self.keep_if_failing(whole, None);
        }
        if self.applied.len() < self.volatile.len() {
            let prefix = self.with_subset(&self.volatile);
            self.keep_if_failing(prefix, Some(self.volatile.clone()));
        }
        for i in 0..self.volatile.len() {
            if self.applied.len() == self.volatile.len() || self.tries >= MAX_SHRINK_TRIES {
                break;
            }
            let entry = self.volatile[i];
            if self.applied.binary_search(&entry).is_ok() {
                continue;
            }
            let mut list = self.applied.clone();
            list.push(entry);
            list.sort_unstable();
            let candidate = self.with_subset(&list);
            self.keep_if_failing(candidate, Some(list));
        }
    }

    /// Tries `candidate`; when it still fails it becomes the current state (applying `applied`,
    /// when given).
    fn keep_if_failing(&mut self, candidate: StateId, applied: Option<Vec<u64>>) {
        self.tries += 1;
        if (self.still_fails)(&candidate) {
            self.current = candidate;
            if let Some(applied) = applied {
                self.applied = applied;
            }
        }
    }

    /// `current` applying exactly `list` of the volatile writes.
    fn with_subset(&self, list: &[u64]) -> StateId {
        let mut next = self.current.clone();
        next.subset = if list.len() == self.volatile.len() {
            Subset::All
        } else {
            Subset::List(list.to_vec())
        };
        next
    }
}
