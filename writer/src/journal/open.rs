//! Opening a journal: the options checked, the directory locked, recovery run, segments past
//! the end of the log retired, the segment appends continue in opened (or the first one
//! prepared), a torn tail zeroed, and the staging buffer started with the partial last block.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};

use super::segments::{prepare_segment, segment_path, PrepareParams, Sealed, Writer};
use super::state::{StagingStart, State};
use super::{lock, round_up, Inner, OpenReport};
use crate::dir_lock::{DirLock, LockMode};
use crate::error::JournalError;
use crate::options::{Durability, JournalOptions, MAX_GROUPS_IN_FLIGHT};
use crate::recovery::{self, RecordView, RecoverySummary, Scan};
use crate::segment::{self, DirListing, SegmentName};
use crate::storage::{AlignedBuf, OpenFlags, SegmentFile, Storage, MAX_BLOCK_BYTES};

/// The journal directory, locked, and the block sizes writes use in it.
struct LockedDir {
    lock: DirLock,
    /// The device's alignment for direct I/O, and how it was found.
    device_alignment: usize,
    alignment_source: String,
    /// The write block: whole file-system blocks, themselves whole device blocks.
    alignment: usize,
}

/// The segment appends continue in, and the segment files around it.
struct Segments {
    name: SegmentName,
    file: Box<dyn SegmentFile>,
    /// The bytes before the end of the log recovery kept (empty for a fresh segment).
    tail: Vec<u8>,
    /// Offset in the segment of `tail`'s first byte.
    tail_from: u64,
    free: Vec<u32>,
    next_generation: u32,
    /// Segments past the end of the log moved to the free list.
    retired: usize,
}

/// Opens the journal in `dir` through `storage`, showing each recovered record to `visit`.
pub(super) fn open(
    dir: &Path,
    options: JournalOptions,
    storage: Arc<dyn Storage>,
    visit: &mut dyn FnMut(RecordView<'_>),
) -> Result<(Arc<Inner>, OpenReport), JournalError> {
    check_options(&options)?;
    let locked = lock_dir(storage.as_ref(), dir)?;
    let alignment = locked.alignment;
    let segment_bytes = round_up(options.segment_bytes, alignment as u64);
    let Scan {
        summary: recovery,
        end_tail,
        end_tail_from,
        listing,
    } = recovery::scan(storage.as_ref(), dir, options.mutant, visit)?;
    let params = PrepareParams::new(&storage, dir, &options, segment_bytes, alignment);
    let recovered_tail = (end_tail, end_tail_from);
    let segments = set_up_segments(&params, &options, &recovery, listing, recovered_tail)?;
    let direct_io = segments.file.direct_io();
    let max_in_flight = options.max_groups_in_flight.clamp(1, MAX_GROUPS_IN_FLIGHT);
    // One buffer collects appends while up to max_in_flight others are being written.
    let staging_capacity = options.staging_buffer_bytes(alignment);
    let max_payload_bytes = max_payload_bytes(&options, segment_bytes, alignment)?;
    let active = AlignedBuf::new(staging_capacity, alignment);
    #[allow(unused_mut)]
    let (mut start, zeroed_tail_bytes) =
        start_staging(dir, &recovery, &segments, active, alignment)?;
    // M16 (tail carried by whole sectors): the partial sector at the end of the log is not
    // carried, so the next record is placed over the last one's final bytes.
    #[cfg(feature = "mutants")]
    if crate::mutants::selected(options.mutant, crate::Mutant::M16) {
        start.tail_len -= start.tail_len % 512;
    }
    let spares = (0..max_in_flight)
        .map(|_| AlignedBuf::new(staging_capacity, alignment))
        .collect();
    let state = State::new(start, spares);
    let report = OpenReport {
        io_path: storage.io_path(),
        direct_io,
        alignment_bytes: locked.device_alignment,
        write_block_bytes: alignment,
        alignment_source: locked.alignment_source,
        durability: options.durability,
        sync_after_write: options.durability == Durability::Fdatasync || !direct_io,
        recovery,
        segment: segments.name.index,
        zeroed_tail_bytes,
        retired_segments: segments.retired,
    };
    let writer = writer(segments, &report.recovery);
    let inner = Arc::new(Inner {
        dir: dir.to_path_buf(),
        storage,
        alignment,
        segment_bytes,
        max_payload_bytes,
        sync_after_write: report.sync_after_write,
        durable_lsn_published: AtomicU64::new(state.durable_lsn),
        state: Mutex::new(state),
        changed: Condvar::new(),
        pipeline: Condvar::new(),
        max_in_flight,
        writer: Mutex::new(writer),
        options,
        _dir_lock: locked.lock,
    });
    if inner.options.prepare_ahead {
        // Have the next segment ready before the first rotation needs it.
        let mut writer = lock(&inner.writer);
        let next_index = writer.segment.index + 1;
        inner.prepare_ahead(&mut writer, next_index);
    }
    Ok((inner, report))
}

/// The payload limit with the segment size rounded to whole write blocks.
fn max_payload_bytes(
    options: &JournalOptions,
    segment_bytes: u64,
    alignment: usize,
) -> Result<usize, JournalError> {
    JournalOptions {
        segment_bytes,
        ..options.clone()
    }
    .max_record_payload_bytes(alignment)
    .map_err(JournalError::InvalidOptions)
}

fn check_options(options: &JournalOptions) -> Result<(), JournalError> {
    if options.mutant.is_some() && !crate::MUTANTS_BUILT {
        return Err(JournalError::MutantsNotBuilt);
    }
    if options.max_staging_bytes < 64 * 1024 {
        return Err(JournalError::InvalidOptions(
            "max_staging_bytes must be at least 64 KiB".into(),
        ));
    }
    if options.segment_bytes < 64 * 1024 || options.segment_bytes > recovery::MAX_SEGMENT_FILE_BYTES
    {
        return Err(JournalError::InvalidOptions(format!(
            "segment_bytes must be between 64 KiB and {} bytes",
            recovery::MAX_SEGMENT_FILE_BYTES
        )));
    }
    Ok(())
}

/// Creates and locks the directory, and finds the block size writes use in it.
fn lock_dir(storage: &dyn Storage, dir: &Path) -> Result<LockedDir, JournalError> {
    storage
        .create_dir_all(dir)
        .map_err(|err| JournalError::io("create directory", dir, 0, err))?;
    let lock = storage
        .lock_dir(dir, LockMode::Exclusive)
        .map_err(|err| JournalError::lock(dir, err))?;
    let (device_alignment, alignment_source) = storage.alignment_bytes(dir);
    // Writes are whole file-system blocks (themselves whole device blocks): a write that
    // is not block aligned makes ext4 and XFS serialise direct I/O on the file.
    let alignment = device_alignment
        .max(storage.fs_block_bytes(dir))
        .min(MAX_BLOCK_BYTES);
    Ok(LockedDir {
        lock,
        device_alignment,
        alignment_source,
        alignment,
    })
}

/// Retires the segments past the end of the log, then opens the segment the log ends in
/// (whose last bytes recovery kept in `recovered_tail`, with their offset), or prepares the
/// first one of an empty journal.
fn set_up_segments(
    params: &PrepareParams,
    options: &JournalOptions,
    recovery: &RecoverySummary,
    listing: DirListing,
    recovered_tail: (Vec<u8>, u64),
) -> Result<Segments, JournalError> {
    let mut free = listing.free.clone();
    let mut next_generation = listing.max_generation.wrapping_add(1).max(1);
    let retired = retire_past_end(params, recovery, &listing, &mut free)?;
    let end = recovery.end;
    let (name, file, (tail, tail_from)) = if end.segment == 0 {
        let name = SegmentName {
            index: 1,
            generation: next_generation,
        };
        next_generation += 1;
        let recycle = if options.recycle_segments {
            free.pop()
        } else {
            None
        };
        let prepared = prepare_segment(params, name, recycle)?;
        (prepared.name, prepared.file, (Vec::new(), 0))
    } else {
        let name = SegmentName {
            index: end.segment,
            generation: end.generation,
        };
        let path = segment_path(&params.dir, name);
        let flags = OpenFlags {
            create: false,
            ..params.flags
        };
        let file = params
            .storage
            .open(&path, flags)
            .map_err(|err| JournalError::io("open segment", &path, 0, err))?;
        // Recovered implies durable (I9): what recovery just read may sit only in a cache a
        // crash drops (a write whose sync failed before this open), and the caller may act on
        // it as soon as the open returns.
        file.sync_data()
            .map_err(|err| JournalError::io("fdatasync recovered segment", &path, 0, err))?;
        (name, file, recovered_tail)
    };
    Ok(Segments {
        name,
        file,
        tail,
        tail_from,
        free,
        next_generation,
        retired,
    })
}

/// Segments past the end of the log hold nothing of it: they are retired, so that a file
/// with leftovers of this generation is never appended to again. Returns how many were.
fn retire_past_end(
    params: &PrepareParams,
    recovery: &RecoverySummary,
    listing: &DirListing,
    free: &mut Vec<u32>,
) -> Result<usize, JournalError> {
    let (dir, storage) = (params.dir.as_path(), params.storage.as_ref());
    let end = recovery.end;
    let mut retired = 0usize;
    // M15 (segments past the end kept): what a crash left past the end of the log stays live.
    #[cfg(feature = "mutants")]
    if crate::mutants::selected(params.mutant, crate::Mutant::M15) {
        return Ok(0);
    }
    for seg in listing
        .segments
        .iter()
        .filter(|s| s.index > end.segment && end.segment != 0)
    {
        let from = segment_path(dir, *seg);
        let to = dir.join(segment::free_file_name(seg.generation));
        storage
            .rename(&from, &to)
            .map_err(|err| JournalError::io("retire segment", &from, 0, err))?;
        free.push(seg.generation);
        retired += 1;
    }
    if retired > 0 {
        storage
            .sync_dir(dir)
            .map_err(|err| JournalError::io("fsync directory", dir, 0, err))?;
    }
    Ok(retired)
}

/// Starts the staging buffer `active` with the partial block the log ends in (kept in
/// memory and rewritten identically by the next flush), and zeros a torn tail. Returns where
/// appends continue, and the torn tail bytes zeroed.
fn start_staging(
    dir: &Path,
    recovery: &RecoverySummary,
    segments: &Segments,
    mut active: AlignedBuf,
    alignment: usize,
) -> Result<(StagingStart, u64), JournalError> {
    let end_offset = recovery.end.offset;
    let base = end_offset / alignment as u64 * alignment as u64;
    let tail_len = (end_offset - base) as usize;
    if tail_len > 0 {
        // The scan kept at least the largest write block before the end of the log.
        let from = usize::try_from(base - segments.tail_from).expect("tail within a block");
        active[..tail_len].copy_from_slice(&segments.tail[from..from + tail_len]);
    }
    let zeroed_tail_bytes = zero_torn_tail(
        dir,
        recovery,
        segments,
        &active[..tail_len],
        base,
        alignment,
    )?;
    let records_in_segment = recovery
        .segments
        .iter()
        .find(|s| s.index == segments.name.index)
        .map_or(0, |s| s.records);
    let start = StagingStart {
        active,
        base,
        tail_len,
        generation: segments.name.generation,
        next_lsn: recovery.end.next_lsn,
        records_in_segment,
    };
    Ok((start, zeroed_tail_bytes))
}

/// A torn tail is overwritten with zeros before anything else is appended, so that no
/// leftover of this generation can ever look like a continuation of the log. `tail_block` is
/// the start of the block at `base`, which stays. Returns the torn bytes zeroed.
fn zero_torn_tail(
    dir: &Path,
    recovery: &RecoverySummary,
    segments: &Segments,
    tail_block: &[u8],
    base: u64,
    alignment: usize,
) -> Result<u64, JournalError> {
    let Some(tail) = recovery.truncated_tail else {
        return Ok(0);
    };
    if tail.segment != segments.name.index || tail.discarded_bytes == 0 {
        return Ok(0);
    }
    let zero_end = round_up(tail.offset + tail.discarded_bytes, alignment as u64);
    let len = (zero_end - base) as usize;
    let mut buf = AlignedBuf::new(len, alignment);
    buf[..tail_block.len()].copy_from_slice(tail_block);
    let path = segment_path(dir, segments.name);
    let (_, result) = segments.file.write_at(base, buf, 0..len);
    result.map_err(|err| JournalError::io("zero torn tail", &path, base, err))?;
    segments
        .file
        .sync_data()
        .map_err(|err| JournalError::io("fdatasync", &path, base, err))?;
    Ok(tail.discarded_bytes)
}

/// The writer's view of the segments: the current one, the sealed ones holding records
/// (oldest first), and the free files.
fn writer(segments: Segments, recovery: &RecoverySummary) -> Writer {
    let current = segments.name;
    let sealed: Vec<Sealed> = recovery
        .segments
        .iter()
        .filter(|s| s.index < current.index && s.records > 0)
        .map(|s| Sealed {
            name: SegmentName {
                index: s.index,
                generation: s.generation,
            },
            last_lsn: s.last_lsn,
        })
        .collect();
    Writer {
        file: Arc::from(segments.file),
        segment: current,
        sealed,
        ready: None,
        free: segments.free,
        next_generation: segments.next_generation,
        ahead: None,
    }
}
