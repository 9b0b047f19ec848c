//! What opening a journal found and chose.

use std::fmt;

use crate::options::Durability;
use crate::recovery::RecoverySummary;
use crate::storage::IoPath;

/// What opening found and chose.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// Submission path.
    pub io_path: IoPath,
    /// Whether O_DIRECT is in effect (false: buffered I/O + fdatasync).
    pub direct_io: bool,
    /// Alignment of writes in bytes.
    pub alignment_bytes: usize,
    /// How the alignment was found.
    pub alignment_source: String,
    /// Granularity of writes: the larger of the device alignment and the file system's block
    /// size.
    pub write_block_bytes: usize,
    /// Durability mode.
    pub durability: Durability,
    /// Whether every group ends with an fdatasync (fdatasync mode, or buffered fallback).
    pub sync_after_write: bool,
    /// What recovery found.
    pub recovery: RecoverySummary,
    /// Segment appends continue in.
    pub segment: u64,
    /// Bytes of a torn tail overwritten with zeros before appending.
    pub zeroed_tail_bytes: u64,
    /// Segment files past the end of the log moved to the free list.
    pub retired_segments: usize,
}

impl fmt::Display for OpenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "io path: {}; {}; durability: {}{}",
            match self.io_path {
                // A group that fits one write chunk is one pwritev2 from the leader thread
                // (cheaper than a ring round trip); larger groups go through the ring.
                IoPath::IoUring => "io_uring (groups of one chunk: pwritev2 from the leader)",
                IoPath::Pwritev2 => self.io_path.name(),
            },
            if self.direct_io {
                "O_DIRECT"
            } else {
                "buffered I/O + fdatasync (O_DIRECT refused by the file system)"
            },
            self.durability.name(),
            if self.sync_after_write && self.durability == Durability::Dsync {
                " + fdatasync"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "alignment: {} bytes ({}); writes in blocks of {} bytes",
            self.alignment_bytes, self.alignment_source, self.write_block_bytes
        )?;
        writeln!(
            f,
            "appending to segment {}; zeroed torn tail bytes: {}; retired segments: {}",
            self.segment, self.zeroed_tail_bytes, self.retired_segments
        )?;
        write!(f, "{}", self.recovery)
    }
}
