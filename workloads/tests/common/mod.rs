//! Helpers shared by the workloads integration tests.

/// A scratch directory named `prefix...` on the disk the target directory lives on (not tmpfs,
/// so O_DIRECT is used).
pub fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}
