//! Options of [`crate::Journal::open`].

/// Most group commits written at the same time (the largest `max_groups_in_flight`).
pub const MAX_GROUPS_IN_FLIGHT: usize = 8;

/// Most staging memory a journal uses: a larger `max_staging_bytes` is taken as this. It bounds
/// how far past the end of the log a writer can have written, which is how far recovery reads
/// past it (docs/journal-format.md, "How far recovery reads").
pub const MAX_STAGING_BYTES: usize = 64 * 1024 * 1024;

/// How a write is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Files opened O_DIRECT|O_DSYNC: each write is durable when it completes.
    Dsync,
    /// Writes followed by one fdatasync per group commit.
    Fdatasync,
}

/// How a new segment file is prepared before records are written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocation {
    /// fallocate + zero fill + fsync + directory fsync: appends are overwrites of written
    /// blocks and change no metadata.
    Zero,
    /// fallocate only (unwritten extents): every first write converts extents.
    Fallocate,
    /// No preallocation: appends extend the file; the file is truncated to its logical size
    /// on rotation and close.
    None,
}

/// Which submission path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPathChoice {
    /// io_uring when it can be set up, else pwritev2.
    Auto,
    /// io_uring or fail to open.
    IoUring,
    /// Synchronous pwritev2.
    Pwritev2,
}

/// Options of a journal.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Durability mode.
    pub durability: Durability,
    /// Size of a segment file in bytes (rounded up to the alignment).
    pub segment_bytes: u64,
    /// Segment preparation.
    pub preallocation: Preallocation,
    /// Reuse retired segment files (rename + directory fsync) instead of creating new ones.
    pub recycle_segments: bool,
    /// Upper bound on the memory of the staging buffers, shared by `max_groups_in_flight + 1`
    /// buffers; at most [`MAX_STAGING_BYTES`] is used.
    pub max_staging_bytes: usize,
    /// Submission path.
    pub io_path: IoPathChoice,
    /// Largest single write submitted to the kernel; a group larger than this is split into
    /// several writes submitted together (io_uring). Default 1 MiB: a group is then one write,
    /// and in dsync mode one device cache flush, however many records it holds (several
    /// smaller O_DSYNC writes each need their own flush).
    pub max_write_chunk_bytes: usize,
    /// Try O_DIRECT (falls back to buffered I/O when the file system refuses it).
    pub direct_io: bool,
    /// Prepare the next segment in a background thread while the current one is written.
    pub prepare_ahead: bool,
    /// Group commits that may be written at the same time (1 to 8): above 1, the next group is
    /// submitted while earlier ones are still being written; acknowledgements stay in order.
    pub max_groups_in_flight: usize,
    /// A deliberately broken variant to run (docs/design.md section 6); `None` is the real engine.
    /// Opening fails with [`crate::JournalError::MutantsNotBuilt`] unless the crate was built
    /// with the `mutants` feature.
    pub mutant: Option<crate::Mutant>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            durability: Durability::Dsync,
            segment_bytes: 16 * 1024 * 1024,
            preallocation: Preallocation::Zero,
            recycle_segments: true,
            max_staging_bytes: 8 * 1024 * 1024,
            io_path: IoPathChoice::Auto,
            max_write_chunk_bytes: 1024 * 1024,
            direct_io: true,
            prepare_ahead: true,
            max_groups_in_flight: 4,
            mutant: None,
        }
    }
}

impl JournalOptions {
    /// Bytes of one staging buffer: `max_staging_bytes` is shared by the buffer collecting
    /// appends and one per group in flight, each a whole number of write blocks.
    pub fn staging_buffer_bytes(&self, write_block_bytes: usize) -> usize {
        let buffers = self.max_groups_in_flight.clamp(1, MAX_GROUPS_IN_FLIGHT) + 1;
        (self.max_staging_bytes.min(MAX_STAGING_BYTES) / buffers) / write_block_bytes
            * write_block_bytes
    }

    /// The largest payload the engine accepts with these options on a device whose write block
    /// is `write_block_bytes` (the larger of its logical block and the file system block; 4096
    /// on the disks the harness formats), or why none fits. The one statement of the limit: the
    /// engine, the workload validation and the docs use it.
    ///
    /// A record must fit in one staging buffer beside the copy of the partial tail block the
    /// buffer starts with (less than one block) and one block of slack (a group may move to the
    /// next block boundary), and in a segment.
    pub fn max_record_payload_bytes(&self, write_block_bytes: usize) -> Result<usize, String> {
        let overhead = crate::record::HEADER_BYTES + crate::record::RECORD_ALIGN_BYTES;
        let buffer = self.staging_buffer_bytes(write_block_bytes);
        let staged = buffer
            .checked_sub(2 * write_block_bytes + overhead)
            .filter(|&bytes| bytes > 0)
            .ok_or_else(|| {
                format!(
                    "max_staging_bytes {} shared by {} buffers leaves {buffer} bytes each, too \
                     small for two {write_block_bytes}-byte blocks and a record: raise \
                     max_staging_bytes or lower max_groups_in_flight",
                    self.max_staging_bytes,
                    self.max_groups_in_flight.clamp(1, MAX_GROUPS_IN_FLIGHT) + 1
                )
            })?;
        let segment = usize::try_from(self.segment_bytes).unwrap_or(usize::MAX);
        // A fresh segment must hold the record and the block of slack.
        let in_segment = segment.saturating_sub(write_block_bytes + overhead);
        Ok(staged.min(in_segment).min(u32::MAX as usize))
    }
}

impl Durability {
    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Dsync => "dsync",
            Durability::Fdatasync => "fdatasync",
        }
    }

    /// Parses `dsync` or `fdatasync`.
    pub fn parse(text: &str) -> Option<Durability> {
        match text {
            "dsync" => Some(Durability::Dsync),
            "fdatasync" => Some(Durability::Fdatasync),
            _ => None,
        }
    }
}

impl Preallocation {
    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Preallocation::Zero => "zero",
            Preallocation::Fallocate => "fallocate",
            Preallocation::None => "none",
        }
    }

    /// Parses `zero`, `fallocate` or `none`.
    pub fn parse(text: &str) -> Option<Preallocation> {
        match text {
            "zero" => Some(Preallocation::Zero),
            "fallocate" => Some(Preallocation::Fallocate),
            "none" => Some(Preallocation::None),
            _ => None,
        }
    }
}
