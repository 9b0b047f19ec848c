//! Limits and defaults of a workload: what a file may ask for, what it gets when it asks for
//! nothing, and the guest's disk geometry the capacity check counts with.

/// Seed used when the workload file gives none (the CLI may override it).
pub const DEFAULT_SEED: u64 = 1;
/// Data disk size when the file gives none, for ext4.
pub const DEFAULT_EXT4_DISK_MIB: u64 = 64;
/// File size when `size` is not given.
pub const DEFAULT_FILE_BYTES: u64 = 4096;
/// mkfs.xfs (xfsprogs >= 5.19) refuses file systems of 300 MiB or less without test-mode
/// environment variables, so XFS data disks start there.
pub const MIN_XFS_DISK_MIB: u64 = 300;
/// Smallest ext4 data disk (room for the fs journal and a few segments).
pub const MIN_EXT4_DISK_MIB: u64 = 16;
/// Largest data disk: every crash state is an image of this size.
pub const MAX_DISK_MIB: u64 = 4096;
/// Largest log disk.
pub const MAX_LOG_MIB: u64 = 65536;
/// Largest record payload a workload may ask for.
pub const MAX_RECORD_BYTES: u64 = 256 * 1024;
/// Largest record count of one append step and of one ingest client.
pub const MAX_RECORDS_PER_STEP: u64 = 100_000;
/// Largest group of one commit.
pub const MAX_COMMIT_EVERY: u64 = 10_000;
/// Most ingest clients of one step.
pub const MAX_INGEST_CLIENTS: u64 = 64;
/// Largest file a file step creates.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most steps in a workload.
pub const MAX_STEPS: usize = 10_000;
/// Most acks in a run (each is a block-log MARK and a point where crash states are checked).
pub const MAX_TOTAL_ACKS: u64 = 200_000;
/// Segment size bounds.
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
/// Segment size bounds.
pub const MAX_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Staging memory bounds.
pub const MIN_STAGING_BYTES: u64 = 64 * 1024;
/// Staging memory bounds: the engine's own largest staging (which bounds how far recovery reads).
pub const MAX_STAGING_BYTES: u64 = powercut_writer::MAX_STAGING_BYTES as u64;
/// Bytes the engine adds to each record on disk, at most (header plus alignment padding); used
/// only to estimate whether a workload fits on its disk.
pub(super) const RECORD_OVERHEAD_BYTES: u64 = 64;
/// The write block of the guest's data disks (virtio, 512-byte sectors, formatted with 4 KiB
/// blocks): the engine's staging and record limits are counted in it.
pub(super) const GUEST_WRITE_BLOCK_BYTES: usize = 4096;
/// Share of the data disk a workload may plan to fill: the rest is file-system metadata and
/// journal (ext4 takes 4 MiB of a 64 MiB disk, XFS ~10 MiB of 300).
pub(super) const USABLE_DISK_PERCENT: u64 = 75;
/// Bytes in a MiB.
pub(super) const MIB: u64 = 1024 * 1024;
/// Most arguments of a program's command line (`exec:` and checkers).
pub const MAX_ARGV: usize = 256;
/// Longest argument or environment value of a program.
pub const MAX_ARG_BYTES: usize = 64 * 1024;
/// Most extra environment variables of an `exec:` step.
pub const MAX_ENV_VARS: usize = 64;
/// Longest an `exec:` step may run.
pub const MAX_EXEC_TIMEOUT_S: u64 = 3600;
/// Most Debian packages a workload may bring into the guest.
pub const MAX_GUEST_PACKAGES: usize = 32;
/// Most files of the user's a workload may copy into the guest (`guest_files:`).
pub const MAX_GUEST_FILES: usize = 32;
/// Largest file of `guest_files:` (it travels in the guest's initramfs, which lives in RAM).
pub const MAX_GUEST_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The guest directory where each file of `guest_files:` is placed under its base name.
pub const GUEST_FILES_DIR: &str = "/opt/powercut/files";
/// uid and gid of the unprivileged user that runs programs in the guest.
pub const PROGRAM_UID_GID: u32 = 1000;
