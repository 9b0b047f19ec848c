//! Injected EIO: which simulated operations fail while a fault is armed
//! ([`super::SimStorage::arm_fault`]), and how a failing write lands.
//!
//! A failing write returns EIO and leaves the file unchanged or some of its 512-byte sectors
//! written (not durable), as the seed decides. A failing sync (fdatasync, the durable half of
//! an O_DSYNC write) returns EIO and, as Linux does (fsyncgate), the file's pending changes
//! are not made durable but are no longer pending either: their write-back failed, so the
//! device never gets them and every later crash state lacks them, even after a later sync
//! succeeds; reads through an open file (the page cache) still see them, whole-file reads
//! (recovery's, which read the device) do not. A failing directory fsync makes no name durable
//! (a later one that succeeds does).

use std::ops::Range;

use super::rng::SplitMix64;

/// Which operations a fault makes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOn {
    /// Writes (`pwrite`), O_DSYNC or not.
    Writes,
    /// Flushes: fdatasync, the durable half of an O_DSYNC write, directory fsync.
    Syncs,
    /// Both.
    Both,
}

impl FaultOn {
    fn writes(self) -> bool {
        matches!(self, FaultOn::Writes | FaultOn::Both)
    }

    fn syncs(self) -> bool {
        matches!(self, FaultOn::Syncs | FaultOn::Both)
    }
}

/// An EIO fault to arm on a simulated file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFault {
    /// What fails.
    pub on: FaultOn,
    /// Every matching operation fails until the fault is cleared (false: only the first one,
    /// after which the fault clears itself).
    pub persistent: bool,
    /// Only writes that overlap these byte offsets of a file fail (`None`: every write).
    /// Syncs are not limited by it.
    pub bytes: Option<Range<u64>>,
    /// Seeds how much of each failing write lands.
    pub seed: u64,
}

/// An armed fault and what it has done so far.
#[derive(Debug, Clone)]
pub(super) struct ArmedFault {
    fault: SimFault,
    rng: SplitMix64,
}

impl ArmedFault {
    pub(super) fn new(fault: SimFault) -> ArmedFault {
        let rng = SplitMix64::new(fault.seed);
        ArmedFault { fault, rng }
    }
}

/// Whether the write of `len` bytes at `offset` fails; if so, the sector pieces of it that land
/// anyway (offset and range within the write's bytes). Disarms a transient fault that fired.
pub(super) fn write_fails(
    armed: &mut Option<ArmedFault>,
    offset: u64,
    len: usize,
    sector_bytes: u64,
) -> Option<Vec<(u64, Range<usize>)>> {
    let fault = armed.as_mut()?;
    let end = offset + len as u64;
    let overlaps = fault
        .fault
        .bytes
        .as_ref()
        .is_none_or(|bytes| bytes.start < end && offset < bytes.end);
    if !fault.fault.on.writes() || !overlaps {
        return None;
    }
    // Half the failing writes land nothing at all; the others a seeded subset of sectors.
    let mut landed = Vec::new();
    let partly = fault.rng.below(2) == 1;
    let mut at = 0usize;
    while partly && at < len {
        let file_pos = offset + at as u64;
        let sector_end = (file_pos / sector_bytes + 1) * sector_bytes;
        let piece = ((sector_end - file_pos) as usize).min(len - at);
        if fault.rng.below(2) == 1 {
            landed.push((file_pos, at..at + piece));
        }
        at += piece;
    }
    if !fault.fault.persistent {
        *armed = None;
    }
    Some(landed)
}

/// Whether a sync fails. Disarms a transient fault that fired.
pub(super) fn sync_fails(armed: &mut Option<ArmedFault>) -> bool {
    let Some(fault) = armed.as_ref() else {
        return false;
    };
    if !fault.fault.on.syncs() {
        return false;
    }
    if !fault.fault.persistent {
        *armed = None;
    }
    true
}
