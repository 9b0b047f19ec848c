//! Exit codes and the errors that select them (the CLI contract: 0 held, 1 violated, 2 harness
//! failure, 3 skipped, 4 incomplete).

/// Exit code of a run in which an invariant was violated.
pub const EXIT_VIOLATION: u8 = 1;
/// Exit code: the harness itself failed (bad input, missing tool, VM error).
pub const EXIT_HARNESS_FAILURE: u8 = 2;
/// Exit code: skipped because a capability is missing (e.g. root is needed).
pub const EXIT_SKIPPED: u8 = 3;
/// Exit code: no invariant was violated, but not every crash state was checked.
pub const EXIT_INCOMPLETE: u8 = 4;

/// An invariant violation found by a command that is not `run` (exit code 1).
#[derive(Debug)]
pub struct ViolationFound(pub String);

impl std::fmt::Display for ViolationFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invariant violated: {}", self.0)
    }
}

impl std::error::Error for ViolationFound {}

/// A check that found no violation but did not cover every crash state (exit code 4): no
/// evidence that the invariants hold on the rest.
#[derive(Debug)]
pub struct Incomplete(pub String);

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "incomplete: {}", self.0)
    }
}

impl std::error::Error for Incomplete {}

/// An error that means "skipped", not "failed" (exit code 3).
#[derive(Debug)]
pub struct Skipped(pub String);

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

impl std::error::Error for Skipped {}

/// Whether `e` comes from a mount that needs root: the run is skipped, not failed.
pub fn needs_root(e: &anyhow::Error) -> bool {
    use powercut_oracles::check::CheckError;
    use powercut_oracles::mount::MountError;
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<MountError>(),
            Some(MountError::NeedsRoot)
        ) || matches!(
            cause.downcast_ref::<CheckError>(),
            Some(CheckError::Mount(MountError::NeedsRoot))
        )
    })
}
