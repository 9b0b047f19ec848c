//! What a run found: violations, the states they are about, the report.

use std::fmt;
use std::time::Duration;

use powercut_judge::Invariant;

use crate::{Lsn, Mutant};

/// What a violation breaks: an invariant (docs/design.md section 5), as the judge decided it, or
/// the engine's contract while it was driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimInvariant {
    /// An invariant the judge found broken on a recovered state.
    Judged(Invariant),
    /// The engine failed or misbehaved while being driven, with no fault injected.
    Engine,
}

impl SimInvariant {
    /// `I1` to `I9`, or `engine`.
    pub fn name(self) -> &'static str {
        match self {
            SimInvariant::Judged(invariant) => invariant.name(),
            SimInvariant::Engine => "engine",
        }
    }
}

impl fmt::Display for SimInvariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which state of the file system a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimState {
    /// The crash state that keeps nothing unsynced ([`SimStorage::crash_durable_only`](crate::sim::SimStorage::crash_durable_only)).
    DurableOnly,
    /// The crash state of this seed ([`SimStorage::crash`](crate::sim::SimStorage::crash)).
    Seeded(u64),
    /// The running file system itself (engine failures, recovery after a clean reopen).
    Live,
}

impl fmt::Display for SimState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimState::DurableOnly => f.write_str("durable-only"),
            SimState::Seeded(seed) => write!(f, "seeded:{seed:#018x}"),
            SimState::Live => f.write_str("live"),
        }
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimViolation {
    /// The invariant.
    pub invariant: SimInvariant,
    /// Seed of the run.
    pub seed: u64,
    /// Index of the plan step during or after which the state was taken (the initial open
    /// counts as step 0 too).
    pub step: usize,
    /// Highest LSN acknowledged when the state was taken.
    pub acked_lsn: Lsn,
    /// File-system operations performed when the state was taken ([`SimStorage::ops`](crate::sim::SimStorage::ops)).
    pub at_op: u64,
    /// The state checked.
    pub state: SimState,
    /// What the invariant demands.
    pub expected: String,
    /// What was found.
    pub found: String,
}

impl fmt::Display for SimViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at step {} (seed {:#018x}, state {} after op {}, acked up to LSN {}): \
             expected {}; found {}",
            self.invariant,
            self.step,
            self.seed,
            self.state,
            self.at_op,
            self.acked_lsn,
            self.expected,
            self.found
        )
    }
}

/// The outcome of [`check_run`](super::check_run).
#[derive(Debug, Clone)]
pub struct SimReport {
    /// Seed of the run.
    pub seed: u64,
    /// The mutant run (`None`: the real engine).
    pub mutant: Option<Mutant>,
    /// Crash states recovered and checked.
    pub states_checked: u64,
    /// Commits acknowledged.
    pub acks: u64,
    /// Operations failed by injected faults ([`SimStep::Fault`](super::SimStep::Fault)).
    pub faults_hit: u64,
    /// Highest LSN acknowledged at the end.
    pub last_acked_lsn: Lsn,
    /// Violations found, first ones first (at most 256 kept; see `violations_total`).
    pub violations: Vec<SimViolation>,
    /// Violations found in all.
    pub violations_total: u64,
    /// Whether every step ran (false: stopped at `max_violations` or an engine failure).
    pub completed: bool,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl SimReport {
    /// No violation.
    pub fn passed(&self) -> bool {
        self.violations_total == 0
    }

    /// Crash states checked per second of the run.
    pub fn states_per_second(&self) -> f64 {
        self.states_checked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The invariants broken, each once, in the order first seen.
    pub fn invariants_violated(&self) -> Vec<SimInvariant> {
        let mut seen = Vec::new();
        for violation in &self.violations {
            if !seen.contains(&violation.invariant) {
                seen.push(violation.invariant);
            }
        }
        seen
    }
}
