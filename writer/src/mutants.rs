//! Deliberately broken variants of the engine (docs/design.md section 6), used to show that the
//! crash-testing harness catches each class of durability bug.
//!
//! The enum is always compiled so that callers can name mutants in every build; the broken
//! behaviour itself exists only in builds with the `mutants` feature. A default build refuses
//! to open a journal with a mutant selected ([`crate::JournalError::MutantsNotBuilt`]).

use std::fmt;
use std::str::FromStr;

/// One deliberately broken variant of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// Acknowledge a group before its write and sync complete.
    M1,
    /// Skip the directory fsync after creating or preparing a new segment.
    M2,
    /// Retry fdatasync after it failed and acknowledge when the retry succeeds.
    M3,
    /// Recovery accepts the tail record(s) without verifying their checksum.
    M4,
    /// Rewrite the partial tail block from a zeroed buffer holding only the new bytes.
    M5,
    /// Treat O_DIRECT as durable: no O_DSYNC in dsync mode, no fdatasync in fdatasync mode.
    M6,
    /// Recovery accepts stale records of a recycled segment (no generation check).
    M7,
    /// Recovery reports mid-log corruption as a torn tail and truncates it.
    M8,
    /// Recycle a segment (rename) without fsyncing the directory.
    M9,
    /// Ignore a failed sync: treat it as success.
    M10,
    /// Recovery accepts the next record of the segment's generation whatever its LSN (a hole
    /// in the log goes unnoticed).
    M11,
    /// A retire also retires the newest sealed segment, the one that tells a reopen where the
    /// log goes on while the current segment holds no durable record.
    M12,
    /// A pipelined group trusts completion order: it waits neither for the groups before it to
    /// be written nor to be acknowledged (search only; either wait alone masks the other's
    /// absence).
    M13,
    /// Stamps each group's records with the group's own last LSN as the LSN known durable, so
    /// a later group vouches for an earlier one still in flight (search only).
    M14,
    /// Opening keeps the segments a crash left past the end of the log instead of retiring
    /// them (search only).
    M15,
    /// Opening carries the partial tail block by whole sectors only, so the next record lands
    /// over the last recovered record's final bytes (search only).
    M16,
}

/// Whether this build contains the broken behaviour of the mutants (the `mutants` feature).
pub const MUTANTS_BUILT: bool = cfg!(feature = "mutants");

impl Mutant {
    /// Whether the mutant changes recovery (`recover_with`), so that a checker must run the
    /// mutant's own recovery on crash states rather than the real one.
    pub fn changes_recovery(self) -> bool {
        matches!(self, Mutant::M4 | Mutant::M7 | Mutant::M8 | Mutant::M11)
    }

    /// The mutants no bundled workload targets: bug classes chosen by reading the engine after
    /// M1-M10, for the campaign to find with workloads it generates (`powercut mutants` and its
    /// gate stay on [`Mutant::ALL`]).
    pub const SEARCH_ONLY: [Mutant; 6] = [
        Mutant::M11,
        Mutant::M12,
        Mutant::M13,
        Mutant::M14,
        Mutant::M15,
        Mutant::M16,
    ];

    /// The catalogue M1-M10, each targeted by bundled workloads, in order.
    pub const ALL: [Mutant; 10] = [
        Mutant::M1,
        Mutant::M2,
        Mutant::M3,
        Mutant::M4,
        Mutant::M5,
        Mutant::M6,
        Mutant::M7,
        Mutant::M8,
        Mutant::M9,
        Mutant::M10,
    ];

    /// The short name, `M1` to `M12`.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::M1 => "M1",
            Mutant::M2 => "M2",
            Mutant::M3 => "M3",
            Mutant::M4 => "M4",
            Mutant::M5 => "M5",
            Mutant::M6 => "M6",
            Mutant::M7 => "M7",
            Mutant::M8 => "M8",
            Mutant::M9 => "M9",
            Mutant::M10 => "M10",
            Mutant::M11 => "M11",
            Mutant::M12 => "M12",
            Mutant::M13 => "M13",
            Mutant::M14 => "M14",
            Mutant::M15 => "M15",
            Mutant::M16 => "M16",
        }
    }

    /// One line saying which bug the mutant has.
    pub fn describe(self) -> &'static str {
        match self {
            Mutant::M1 => "acknowledges a group before its write and sync complete",
            Mutant::M2 => "no directory fsync after creating a new segment",
            Mutant::M3 => "retries fdatasync after EIO and acknowledges if the retry succeeds",
            Mutant::M4 => "recovery skips the checksum check on the tail records",
            Mutant::M5 => "rewrites the partial tail block from a zeroed buffer",
            Mutant::M6 => "treats O_DIRECT as durable (no O_DSYNC, no fdatasync)",
            Mutant::M7 => "recovery accepts stale records of a recycled segment",
            Mutant::M8 => "recovery treats mid-log corruption as a torn tail",
            Mutant::M9 => "recycles a segment by rename without a directory fsync",
            Mutant::M10 => "ignores a failed fdatasync",
            Mutant::M11 => "recovery accepts a record of the wrong LSN where the next is expected",
            Mutant::M12 => "a retire also retires the newest sealed segment",
            Mutant::M13 => {
                "a pipelined group waits neither for earlier groups' writes nor their acks"
            }
            Mutant::M14 => "stamps a group's own last LSN as known durable in its records",
            Mutant::M15 => "opening keeps the segments a crash left past the end of the log",
            Mutant::M16 => {
                "opening carries the tail block by whole sectors, cutting the last record"
            }
        }
    }
}

/// Whether `which` is the mutant selected: the one test each hook makes. Exists only in builds
/// with the `mutants` feature, so every hook is compiled out of default builds.
#[cfg(feature = "mutants")]
pub(crate) fn selected(mutant: Option<Mutant>, which: Mutant) -> bool {
    mutant == Some(which)
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mutant {
    type Err = String;

    /// Parses `M1` to `M16`, case-insensitive.
    fn from_str(text: &str) -> Result<Mutant, String> {
        Mutant::ALL
            .into_iter()
            .chain(Mutant::SEARCH_ONLY)
            .find(|m| m.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| format!("unknown mutant {text:?}: expected M1 to M16"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_case_insensitively() {
        for m in Mutant::ALL.into_iter().chain(Mutant::SEARCH_ONLY) {
            assert_eq!(m.name().parse::<Mutant>(), Ok(m));
            assert_eq!(m.name().to_ascii_lowercase().parse::<Mutant>(), Ok(m));
            assert!(!m.describe().is_empty());
        }
        assert!("M0".parse::<Mutant>().is_err());
        assert!("M17".parse::<Mutant>().is_err());
        assert!("".parse::<Mutant>().is_err());
    }
}
