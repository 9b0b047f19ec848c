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
//! and recovery (tens of milliseconds): the log and its ledger are read once and the durable
//! prefix of the cut replayed once, so a try costs the same whatever the log's length. The
//! number of tries is bounded, and no try starts after the config's deadline (or budget).

use std::time::Instant;

pub use crate::outcome::ShrunkState;

use crate::check::{with_state_checker, CheckConfig, CheckError, LogInput, Progress};
use crate::crash::{self, StateId, Subset};
use crate::report::PhaseReport;

/// Most states tried while shrinking one violation.
pub const MAX_SHRINK_TRIES: usize = 64;

/// Shrinks `state_id` of `input`'s log (a state which violates `invariant`) to the simplest
/// state of its cut that still violates it. Errors only when the original state cannot be
/// resolved or checked; a try that fails to build or mount counts as not failing.
pub fn shrink_state(
    state_id: &str,
    invariant: &str,
    input: &LogInput<'_>,
    config: &CheckConfig,
) -> Result<ShrunkState, CheckError> {
    let target = Target {
        state_id,
        invariant,
    };
    shrink_within(input, &target, config, &mut |_| {}).map(|(s, _)| s)
}

/// The violation to shrink: its state and its invariant (the log it was found in is the
/// [`LogInput`] the shrink is given).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The failing state.
    pub state_id: &'a str,
    /// The invariant it violates.
    pub invariant: &'a str,
}

/// [`shrink_state`] of `target` within the config's deadline (`config.deadline`, else
/// `config.budget` from now), reporting each try to `progress` (phase `shrink`). Returns the
/// simplest failing state found so far and what the shrink covered (phase `shrink`, in tries;
/// stopped by the budget when the deadline came before the search was done).
pub fn shrink_within(
    input: &LogInput<'_>,
    target: &Target<'_>,
    config: &CheckConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<(ShrunkState, PhaseReport), CheckError> {
    let started = Instant::now();
    let deadline = config.deadline_from(started);
    let (t, invariant) = (target, target.invariant);
    with_state_checker(input, config, |log, checker| {
        let id: StateId = t.state_id.parse()?;
        let original = crash::resolve(log, &id)?;
        let volatile = crash::volatile_writes(log, id.cut);
        // The volatile writes the failing state applies (whole or torn).
        let mut applied: Vec<u64> = original
            .applied
            .iter()
            .map(|a| a.index)
            .filter(|i| volatile.binary_search(i).is_ok())
            .collect();
        applied.sort_unstable();
        let most = max_tries(&id, &volatile, &applied);
        let mut still_fails = |candidate: &StateId, tries: usize| -> bool {
            let failed = match checker.check(candidate) {
                Ok(outcome) => outcome.violations.iter().any(|v| v.invariant == invariant),
                Err(_) => false,
            };
            progress(Progress {
                phase: "shrink",
                states_done: tries as u64,
                states_total: most as u64,
                violations: 0,
                elapsed: started.elapsed(),
            });
            failed
        };
        let mut search = Search {
            current: id,
            volatile,
            applied,
            tries: 0,
            deadline,
            stopped: false,
            still_fails: &mut still_fails,
        };
        search.run();
        let phase = PhaseReport {
            name: "shrink".into(),
            done: search.tries as u64,
            total: most as u64,
            unit: "tries".into(),
            stopped_by_budget: search.stopped,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((
            ShrunkState {
                invariant: invariant.to_string(),
                original: t.state_id.to_string(),
                minimal: search.current.to_string(),
                dropped_writes: search.volatile.len().saturating_sub(search.applied.len()),
                volatile_writes: search.volatile.len(),
                torn: search.current.tear.is_some(),
                tries: search.tries,
            },
            phase,
        ))
    })?
}

/// The most tries the search of a state can take: the tear, the prefix, then each dropped
/// write, at most [`MAX_SHRINK_TRIES`].
fn max_tries(id: &StateId, volatile: &[u64], applied: &[u64]) -> usize {
    let dropped = volatile.len().saturating_sub(applied.len());
    let first = usize::from(id.tear.is_some()) + usize::from(dropped > 0);
    (first + dropped).min(MAX_SHRINK_TRIES.max(first))
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
    /// No try starts at or after this instant.
    deadline: Option<Instant>,
    /// The deadline stopped the search before it was done.
    stopped: bool,
    still_fails: &'a mut dyn FnMut(&StateId, usize) -> bool,
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
            let done = self.applied.len() == self.volatile.len();
            if done || self.stopped || self.tries >= MAX_SHRINK_TRIES {
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
        if self.stopped || self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stopped = true;
            return;
        }
        self.tries += 1;
        if (self.still_fails)(&candidate, self.tries) {
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
