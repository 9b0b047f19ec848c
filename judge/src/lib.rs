//! The invariants of powercut (docs/design.md section 5), decided in one place.
//!
//! Every tier asks this crate for its verdicts: the host oracles on mounted crash states, the
//! simulated file system of the sim tier, and the guest agent's own checks after an injected
//! fault (I7) or a power cut (I8). What differs between tiers is only how they learn the facts
//! (a block log, a simulated device, the engine's answers); what a fact requires is decided here.
//!
//! The crate knows nothing of block logs, workloads or the engine: callers translate what they
//! saw into [`records::RecordPromise`]s, [`files::FilePromise`]s and recovered records, and get
//! [`Finding`]s back.

pub mod files;
pub mod probe;
pub mod records;

use std::fmt;

/// One invariant of docs/design.md section 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// Every acknowledged record is recovered, byte for byte.
    I1,
    /// The recovered records are exactly LSN first..n, n at least the last promised.
    I2,
    /// Nothing is recovered that was never written.
    I3,
    /// Recovery succeeds on a crash state.
    I4,
    /// A damaged acknowledged record followed by later records is a recovery error.
    I5,
    /// Every acknowledged file creation, rename or removal holds.
    I6,
    /// After an injected EIO: no failed sync acknowledged, calls refused until a reopen, and the
    /// reopen recovers every record acknowledged before the fault.
    I7,
    /// After a power cut: the recovered journal holds every acknowledgement of the first run.
    I8,
    /// Recovered implies durable: what a reopen recovered stays in every later crash state.
    I9,
}

impl Invariant {
    /// Every invariant, in order.
    pub const ALL: [Invariant; 9] = [
        Invariant::I1,
        Invariant::I2,
        Invariant::I3,
        Invariant::I4,
        Invariant::I5,
        Invariant::I6,
        Invariant::I7,
        Invariant::I8,
        Invariant::I9,
    ];

    /// "I1" .. "I9": the name reports, JSON and ack protocols carry.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::I1 => "I1",
            Invariant::I2 => "I2",
            Invariant::I3 => "I3",
            Invariant::I4 => "I4",
            Invariant::I5 => "I5",
            Invariant::I6 => "I6",
            Invariant::I7 => "I7",
            Invariant::I8 => "I8",
            Invariant::I9 => "I9",
        }
    }

    /// The invariant in one sentence, for reports and `--help`.
    pub fn statement(self) -> &'static str {
        match self {
            Invariant::I1 => "every acknowledged record is recovered, byte for byte",
            Invariant::I2 => {
                "the recovered records are exactly LSN first..n (no hole, duplicate or reorder), \
                 n at least the last acknowledged"
            }
            Invariant::I3 => "nothing is recovered that was never written",
            Invariant::I4 => "recovery succeeds on every crash state (a torn tail is truncated)",
            Invariant::I5 => {
                "a damaged acknowledged record followed by later records is a recovery error"
            }
            Invariant::I6 => "every acknowledged file creation, rename or removal holds",
            Invariant::I7 => {
                "after an injected EIO no failed sync is acknowledged, the journal refuses calls \
                 until reopened, and the reopen recovers every record acknowledged before"
            }
            Invariant::I8 => {
                "after a power cut the recovered journal holds every acknowledgement of the run \
                 before it"
            }
            Invariant::I9 => {
                "every record a reopen recovered is in every later crash state (recovered implies \
                 durable)"
            }
        }
    }

    /// The invariant named `name` ("I1" .. "I9").
    pub fn from_name(name: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.name() == name)
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken invariant, as the judge words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The invariant broken.
    pub invariant: Invariant,
    /// Index of the promise the finding is about in the caller's list, if it is about one.
    pub promise: Option<usize>,
    /// What the invariant required.
    pub expected: String,
    /// What the state showed instead.
    pub found: String,
}

/// Findings of one invariant on one state kept (the first ones tell the story; more only repeat).
pub const MAX_FINDINGS_PER_INVARIANT: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for invariant in Invariant::ALL {
            assert_eq!(Invariant::from_name(invariant.name()), Some(invariant));
            assert!(!invariant.statement().is_empty());
        }
        assert_eq!(Invariant::from_name("I10"), None);
    }
}
