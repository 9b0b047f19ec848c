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

use crate::blocklog::BlockLog;
use crate::check::{check_one, CheckConfig, CheckError};
use crate::crash::{self, StateId, Subset};
use crate::invariants::RecoverFn;
use crate::mount::FsType;

/// Most states tried while shrinking one violation.
pub const MAX_SHRINK_TRIES: usize = 64;

/// The smallest failing state found for a violation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShrunkState {
    /// The invariant that keeps failing.
    pub invariant: String,
    /// The state the violation was found on.
    pub original: String,
    /// The simplest state of the same cut that still fails it.
    pub minimal: String,
    /// Volatile writes of the cut that the minimal state drops.
    pub dropped_writes: usize,
    /// Volatile writes of the cut.
    pub volatile_writes: usize,
    /// Whether the minimal state still tears a write.
    pub torn: bool,
    /// States checked while shrinking.
    pub tries: usize,
}

impl ShrunkState {
    /// One line for reports: what the minimal state keeps of the cut.
    pub fn describe(&self) -> String {
        format!(
            "{} on {}: {} of {} volatile writes dropped{} ({} states tried)",
            self.invariant,
            self.minimal,
            self.dropped_writes,
            self.volatile_writes,
            if self.torn {
                ", one torn"
            } else {
                ", none torn"
            },
            self.tries
        )
    }
}

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
    let mut current = id.clone();
    let mut tries = 0usize;
    let fails = |candidate: &StateId, tries: &mut usize| -> bool {
        *tries += 1;
        match check_one(
            &candidate.to_string(),
            log_path,
            base_image,
            fs,
            seed,
            config,
            recover,
        ) {
            Ok(outcome) => outcome.violations.iter().any(|v| v.invariant == invariant),
            Err(_) => false,
        }
    };
    let with_subset = |base: &StateId, list: &[u64]| -> StateId {
        let mut next = base.clone();
        next.subset = if list.len() == volatile.len() {
            Subset::All
        } else {
            Subset::List(list.to_vec())
        };
        next
    };
    // The current subset spelled out, so that later steps can edit it.
    current = with_subset(&current, &applied);
    // The torn write is in `applied` (resolve applies it torn whatever the subset), so without
    // the tear it is applied whole.
    if current.tear.is_some() {
        let mut whole = current.clone();
        whole.tear = None;
        if fails(&whole, &mut tries) {
            current = whole;
        }
    }
    if applied.len() < volatile.len() {
        let prefix = with_subset(&current, &volatile);
        if fails(&prefix, &mut tries) {
            applied = volatile.clone();
            current = prefix;
        }
    }
    for &entry in &volatile {
        if applied.len() == volatile.len() || tries >= MAX_SHRINK_TRIES {
            break;
        }
        if applied.binary_search(&entry).is_ok() {
            continue;
        }
        let mut list = applied.clone();
        list.push(entry);
        list.sort_unstable();
        let candidate = with_subset(&current, &list);
        if fails(&candidate, &mut tries) {
            applied = list;
            current = candidate;
        }
    }
    Ok(ShrunkState {
        invariant: invariant.to_string(),
        original: state_id.to_string(),
        minimal: current.to_string(),
        dropped_writes: volatile.len().saturating_sub(applied.len()),
        volatile_writes: volatile.len(),
        torn: current.tear.is_some(),
        tries,
    })
}
