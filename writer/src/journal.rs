//! The journal: staging, group commit, segments, poisoning.
//!
//! Appenders encode their record into the active staging buffer under a short lock and get an
//! LSN. Whoever then needs durability and finds no flush running becomes the leader: it takes
//! the active buffer (leaving a fresh one that starts with a copy of the partial tail block),
//! checks and stamps every record, writes the whole blocks in one submission, syncs, and wakes
//! every waiter. Appends continue into the fresh buffer meanwhile, and form the next group,
//! which may be written while the previous one still is (`max_groups_in_flight`).
//!
//! Waiters park on their own thread handle rather than on a shared condition variable: the
//! leader of a completed group unparks exactly the threads whose records it made durable,
//! after releasing the state lock, and they return without taking the lock again (a shared
//! condition variable would wake them all into a convoy on the mutex, one hand-off at a time).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};

use crate::dir_lock::{DirLock, LockMode};
use crate::error::JournalError;
#[cfg(feature = "mutants")]
use crate::mutants::{self, Mutant};
use crate::options::{Durability, JournalOptions, Preallocation, MAX_GROUPS_IN_FLIGHT};
use crate::record;
use crate::recovery::{self, RecordView, RecoverySummary};
use crate::segment::{self, SegmentName};
pub(crate) use crate::storage::IoPath;
use crate::storage::{AlignedBuf, OpenFlags, RealStorage, SegmentFile, Storage, MAX_BLOCK_BYTES};
use crate::Lsn;

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

struct State {
    active: AlignedBuf,
    /// File offset of `active[0]` (a multiple of the alignment).
    active_base: u64,
    /// Bytes of `active` in use.
    active_len: usize,
    /// Where the records not yet handed to a flush begin in `active` (before: the copy of the
    /// tail block, already written).
    active_new_from: usize,
    /// Staging buffers not in use.
    spares: Vec<AlignedBuf>,
    generation: u32,
    next_lsn: Lsn,
    durable_lsn: Lsn,
    /// Group commits running (at most `max_in_flight`).
    in_flight: usize,
    rotate_requested: bool,
    poisoned: bool,
    closed: bool,
    records_in_segment: u64,
    /// Group commits started so far.
    groups_started: u64,
    /// Highest LSN of group g at index g % MAX_GROUPS_IN_FLIGHT (valid while g runs).
    group_targets: [Lsn; MAX_GROUPS_IN_FLIGHT],
    /// Every group up to this one has completed its writes.
    written_group: u64,
    /// Every group up to this one is durable (and acknowledged).
    durable_group: u64,
    /// Threads waiting on `changed`.
    other_waiters: usize,
    /// When the oldest record not yet handed to a group was staged.
    first_staged_at: Option<std::time::Instant>,
    /// Threads parked until their record is durable (or until asked to lead a group).
    durable_waiters: Vec<DurableWaiter>,
    /// Identifies the next entry of `durable_waiters`.
    next_waiter_id: u64,
    /// Statistics.
    stats: JournalStats,
}

/// A thread parked in `wait_durable`. Whoever completes a group removes the entries it
/// satisfies and unparks their threads after releasing the state lock, so each woken thread
/// goes on without touching the lock (no convoy of wake-ups through the mutex).
struct DurableWaiter {
    lsn: Lsn,
    id: u64,
    thread: Thread,
}

/// Counters of a journal since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Group commits written.
    pub groups: u64,
    /// Records made durable.
    pub records: u64,
    /// Bytes handed to the kernel by group commits (tail rewrites and padding included).
    pub bytes_written: u64,
    /// Segment rotations.
    pub rotations: u64,
    /// Groups that started at a fresh block because the group before was still being written.
    pub fresh_block_groups: u64,
    /// Sum over written groups of the time from submitting a group's write to its completion
    /// (its sync included in fdatasync mode), in microseconds.
    pub group_write_us: u64,
    /// Records of the largest group commit.
    pub max_group_records: u64,
    /// Sum over written groups of the time their oldest record waited in staging before the
    /// group started, in microseconds.
    pub group_start_wait_us: u64,
    /// Sum over written groups of the time from the end of their write to their
    /// acknowledgement (waiting for earlier groups), in microseconds.
    pub group_ack_wait_us: u64,
}

struct Prepared {
    name: SegmentName,
    file: Box<dyn SegmentFile>,
}

/// What a rotation needs to know about the segment it seals.
#[derive(Clone, Copy)]
struct SealInfo {
    records_in_segment: u64,
    last_lsn: Lsn,
    logical_end: u64,
}

/// A segment before the current one, with records `first_lsn..=last_lsn`.
struct Sealed {
    name: SegmentName,
    last_lsn: Lsn,
}

struct Writer {
    file: Arc<dyn SegmentFile>,
    segment: SegmentName,
    /// Sealed segments holding records, oldest first.
    sealed: Vec<Sealed>,
    free: Vec<u32>,
    next_generation: u32,
    ahead: Option<JoinHandle<Result<Prepared, JournalError>>>,
    /// A prepared next segment whose preparation thread was already joined.
    ready: Option<Prepared>,
}

struct Inner {
    dir: PathBuf,
    options: JournalOptions,
    storage: Arc<dyn Storage>,
    alignment: usize,
    segment_bytes: u64,
    max_payload_bytes: usize,
    sync_after_write: bool,
    state: Mutex<State>,
    /// Woken when a flush ends, for anyone waiting for something other than their own group
    /// (staging space, rotation, close). Notified only when `other_waiters > 0`.
    changed: Condvar,
    /// `State::durable_lsn`, readable without the lock by parked waiters.
    durable_lsn_published: AtomicU64,
    /// Leaders of overlapping groups wait here for earlier groups' writes or durability.
    pipeline: Condvar,
    max_in_flight: usize,
    writer: Mutex<Writer>,
    /// The exclusive lock on `dir`, held while anything of the journal lives.
    _dir_lock: DirLock,
}

/// An append-only journal. `Send + Sync`: share it with `Arc` across threads.
pub struct Journal {
    inner: Arc<Inner>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("alignment", &self.inner.alignment)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves data that is still structurally valid.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn slot(group: u64) -> usize {
    (group % MAX_GROUPS_IN_FLIGHT as u64) as usize
}

impl State {
    /// Highest LSN handed to a group so far.
    fn groups_started_target(&self) -> Lsn {
        if self.in_flight == 0 {
            self.durable_lsn
        } else {
            self.group_targets[slot(self.groups_started)]
        }
    }
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

fn segment_path(dir: &Path, name: SegmentName) -> PathBuf {
    dir.join(name.file_name())
}

const ZERO_FILL_CHUNK_BYTES: usize = 1 << 20;

/// Writes zeros over `[from, to)` of a file (both multiples of the alignment).
fn zero_fill(
    file: &mut dyn SegmentFile,
    path: &Path,
    from: u64,
    to: u64,
    alignment: usize,
) -> Result<(), JournalError> {
    let mut buf = Some(AlignedBuf::new(ZERO_FILL_CHUNK_BYTES, alignment));
    let mut at = from;
    while at < to {
        let len = (to - at).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
        let Some(chunk) = buf.take() else {
            return Err(JournalError::io(
                "zero fill",
                path,
                at,
                std::io::Error::other("buffer lost"),
            ));
        };
        let (back, result) = file.write_at(at, chunk, 0..len);
        result.map_err(|err| JournalError::io("zero fill", path, at, err))?;
        buf = back;
        at += len as u64;
    }
    Ok(())
}

struct PrepareParams {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    preallocation: Preallocation,
    segment_bytes: u64,
    alignment: usize,
    flags: OpenFlags,
    /// The deliberately broken variant in use (docs/design.md section 6), if any.
    #[cfg_attr(not(feature = "mutants"), allow(dead_code))]
    mutant: Option<crate::Mutant>,
}

/// Makes a segment file ready for appends: a recycled file is renamed, a new one is created
/// and preallocated; the directory is fsynced before the file is used.
fn prepare_segment(
    params: &PrepareParams,
    name: SegmentName,
    recycle_from: Option<u32>,
) -> Result<Prepared, JournalError> {
    let path = segment_path(&params.dir, name);
    let storage = params.storage.as_ref();
    let mut file = match recycle_from {
        Some(old_generation) => {
            let from = params.dir.join(segment::free_file_name(old_generation));
            storage
                .rename(&from, &path)
                .map_err(|err| JournalError::io("rename free segment", &from, 0, err))?;
            storage
                .open(
                    &path,
                    OpenFlags {
                        create: false,
                        ..params.flags
                    },
                )
                .map_err(|err| JournalError::io("open segment", &path, 0, err))?
        }
        None => storage
            .open(&path, params.flags)
            .map_err(|err| JournalError::io("create segment", &path, 0, err))?,
    };
    let existing = file
        .len_bytes()
        .map_err(|err| JournalError::io("stat segment", &path, 0, err))?;
    if params.preallocation != Preallocation::None && existing < params.segment_bytes {
        // File systems without fallocate (ramfs, some FUSE) get the zero fill instead.
        let allocated = match file.allocate(params.segment_bytes) {
            Ok(()) => true,
            Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => false,
            Err(err) => return Err(JournalError::io("fallocate", &path, 0, err)),
        };
        if params.preallocation == Preallocation::Zero || !allocated {
            let from = existing / params.alignment as u64 * params.alignment as u64;
            // Keep any leading bytes of a recycled file's partial block: they are stale
            // records or zeros either way, so rewriting them as zeros is just as good.
            zero_fill(
                file.as_mut(),
                &path,
                from,
                params.segment_bytes,
                params.alignment,
            )?;
        }
        file.sync_data()
            .map_err(|err| JournalError::io("fsync new segment", &path, 0, err))?;
    }
    // M2 (new segment's directory entry never made durable) and M9 (recycling rename never
    // made durable): skip the directory fsync, so a crash can lose the segment's name.
    #[cfg(feature = "mutants")]
    if mutants::selected(params.mutant, Mutant::M2) && recycle_from.is_none()
        || mutants::selected(params.mutant, Mutant::M9) && recycle_from.is_some()
    {
        return Ok(Prepared { name, file });
    }
    storage
        .sync_dir(&params.dir)
        .map_err(|err| JournalError::io("fsync directory", &params.dir, 0, err))?;
    Ok(Prepared { name, file })
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` on the real file system.
    pub fn open(
        dir: &Path,
        options: JournalOptions,
    ) -> Result<(Journal, OpenReport), JournalError> {
        let storage = RealStorage::new(options.io_path, options.max_write_chunk_bytes)
            .map_err(|err| JournalError::io("set up io_uring", dir, 0, err))?;
        Journal::open_with_storage(dir, options, Arc::new(storage))
    }

    /// Opens the journal through a given storage (e.g. a [`crate::FaultyStorage`]).
    pub fn open_with_storage(
        dir: &Path,
        options: JournalOptions,
        storage: Arc<dyn Storage>,
    ) -> Result<(Journal, OpenReport), JournalError> {
        Journal::open_with_storage_visiting(dir, options, storage, &mut |_| {})
    }

    /// [`Journal::open`] that shows each recovered record to `visit` as the open's recovery
    /// streams past it (the journal keeps none of them).
    pub fn open_visiting(
        dir: &Path,
        options: JournalOptions,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> Result<(Journal, OpenReport), JournalError> {
        let storage = RealStorage::new(options.io_path, options.max_write_chunk_bytes)
            .map_err(|err| JournalError::io("set up io_uring", dir, 0, err))?;
        Journal::open_with_storage_visiting(dir, options, Arc::new(storage), visit)
    }

    /// [`Journal::open_with_storage`] with a visitor of the recovered records.
    pub fn open_with_storage_visiting(
        dir: &Path,
        options: JournalOptions,
        storage: Arc<dyn Storage>,
        visit: &mut dyn FnMut(RecordView<'_>),
    ) -> Result<(Journal, OpenReport), JournalError> {
        if options.mutant.is_some() && !crate::MUTANTS_BUILT {
            return Err(JournalError::MutantsNotBuilt);
        }
        if options.max_staging_bytes < 64 * 1024 {
            return Err(JournalError::InvalidOptions(
                "max_staging_bytes must be at least 64 KiB".into(),
            ));
        }
        if options.segment_bytes < 64 * 1024
            || options.segment_bytes > recovery::MAX_SEGMENT_FILE_BYTES
        {
            return Err(JournalError::InvalidOptions(format!(
                "segment_bytes must be between 64 KiB and {} bytes",
                recovery::MAX_SEGMENT_FILE_BYTES
            )));
        }
        storage
            .create_dir_all(dir)
            .map_err(|err| JournalError::io("create directory", dir, 0, err))?;
        let dir_lock = storage
            .lock_dir(dir, LockMode::Exclusive)
            .map_err(|err| JournalError::lock(dir, err))?;
        let (device_alignment, alignment_source) = storage.alignment_bytes(dir);
        // Writes are whole file-system blocks (themselves whole device blocks): a write that
        // is not block aligned makes ext4 and XFS serialise direct I/O on the file.
        let alignment = device_alignment
            .max(storage.fs_block_bytes(dir))
            .min(MAX_BLOCK_BYTES);
        let segment_bytes = round_up(options.segment_bytes, alignment as u64);
        let scan = recovery::scan(storage.as_ref(), dir, options.mutant, visit)?;
        let recovery = scan.summary.clone();
        let flags = OpenFlags {
            create: true,
            direct: options.direct_io,
            dsync: options.durability == Durability::Dsync,
        };
        // M6 (O_DIRECT taken for durable): no O_DSYNC in dsync mode.
        #[cfg(feature = "mutants")]
        let flags = OpenFlags {
            dsync: flags.dsync && !mutants::selected(options.mutant, Mutant::M6),
            ..flags
        };
        let params = PrepareParams {
            storage: Arc::clone(&storage),
            dir: dir.to_path_buf(),
            preallocation: options.preallocation,
            segment_bytes,
            alignment,
            flags,
            mutant: options.mutant,
        };
        let mut free = scan.listing.free.clone();
        let mut next_generation = scan.listing.max_generation.wrapping_add(1).max(1);

        // Segments past the end of the log hold nothing of it: retire them, so that a file
        // with leftovers of this generation is never appended to again.
        let end = recovery.end;
        let mut retired = 0usize;
        for seg in scan
            .listing
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

        let (segment_name, file, data) = if end.segment == 0 {
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
            let prepared = prepare_segment(&params, name, recycle)?;
            (prepared.name, prepared.file, Vec::new())
        } else {
            let name = SegmentName {
                index: end.segment,
                generation: end.generation,
            };
            let path = segment_path(dir, name);
            let file = storage
                .open(
                    &path,
                    OpenFlags {
                        create: false,
                        ..flags
                    },
                )
                .map_err(|err| JournalError::io("open segment", &path, 0, err))?;
            (name, file, scan.end_tail)
        };
        let direct_io = file.direct_io();
        let path = segment_path(dir, segment_name);

        let max_in_flight = options.max_groups_in_flight.clamp(1, MAX_GROUPS_IN_FLIGHT);
        // One buffer collects appends while up to max_in_flight others are being written.
        let staging_capacity = options.staging_buffer_bytes(alignment);
        let max_payload_bytes = JournalOptions {
            segment_bytes,
            ..options.clone()
        }
        .max_record_payload_bytes(alignment)
        .map_err(JournalError::InvalidOptions)?;
        let mut active = AlignedBuf::new(staging_capacity, alignment);

        // The tail block: bytes already in the file before the end of the log, kept in memory
        // and rewritten identically by the next flush.
        let end_offset = end.offset;
        let base = end_offset / alignment as u64 * alignment as u64;
        let tail_len = (end_offset - base) as usize;
        if tail_len > 0 {
            // The scan kept at least the largest write block before the end of the log.
            let from = usize::try_from(base - scan.end_tail_from).expect("tail within a block");
            active[..tail_len].copy_from_slice(&data[from..from + tail_len]);
        }

        // A torn tail is overwritten with zeros before anything else is appended, so that no
        // leftover of this generation can ever look like a continuation of the log.
        let mut zeroed_tail_bytes = 0;
        if let Some(tail) = recovery.truncated_tail {
            if tail.segment == segment_name.index && tail.discarded_bytes > 0 {
                let zero_end = round_up(tail.offset + tail.discarded_bytes, alignment as u64);
                let mut buf = AlignedBuf::new((zero_end - base) as usize, alignment);
                buf[..tail_len].copy_from_slice(&active[..tail_len]);
                let len = (zero_end - base) as usize;
                let (_, result) = file.write_at(base, buf, 0..len);
                result.map_err(|err| JournalError::io("zero torn tail", &path, base, err))?;
                file.sync_data()
                    .map_err(|err| JournalError::io("fdatasync", &path, base, err))?;
                zeroed_tail_bytes = tail.discarded_bytes;
            }
        }
        let records_in_segment = recovery
            .segments
            .iter()
            .find(|s| s.index == segment_name.index)
            .map_or(0, |s| s.records);
        let next_lsn = end.next_lsn;
        let sealed: Vec<Sealed> = recovery
            .segments
            .iter()
            .filter(|s| s.index < segment_name.index && s.records > 0)
            .map(|s| Sealed {
                name: SegmentName {
                    index: s.index,
                    generation: s.generation,
                },
                last_lsn: s.last_lsn,
            })
            .collect();
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            storage: Arc::clone(&storage),
            alignment,
            segment_bytes,
            max_payload_bytes,
            sync_after_write: options.durability == Durability::Fdatasync || !direct_io,
            state: Mutex::new(State {
                active,
                active_base: base,
                active_len: tail_len,
                active_new_from: tail_len,
                spares: (0..max_in_flight)
                    .map(|_| AlignedBuf::new(staging_capacity, alignment))
                    .collect(),
                generation: segment_name.generation,
                next_lsn,
                durable_lsn: next_lsn - 1,
                in_flight: 0,
                rotate_requested: false,
                poisoned: false,
                closed: false,
                records_in_segment,
                groups_started: 0,
                group_targets: [0; MAX_GROUPS_IN_FLIGHT],
                written_group: 0,
                durable_group: 0,
                other_waiters: 0,
                first_staged_at: None,
                durable_waiters: Vec::new(),
                next_waiter_id: 0,
                stats: JournalStats::default(),
            }),
            changed: Condvar::new(),
            durable_lsn_published: AtomicU64::new(next_lsn - 1),
            pipeline: Condvar::new(),
            max_in_flight,
            writer: Mutex::new(Writer {
                file: Arc::from(file),
                segment: segment_name,
                sealed,
                ready: None,
                free,
                next_generation,
                ahead: None,
            }),
            options: options.clone(),
            _dir_lock: dir_lock,
        });
        if options.prepare_ahead {
            // Have the next segment ready before the first rotation needs it.
            let inner_ref = &inner;
            let mut writer = lock(&inner_ref.writer);
            let name = inner_ref.next_name(&mut writer, segment_name.index + 1);
            let recycle = inner_ref.take_free(&mut writer);
            let params = inner_ref.prepare_params();
            writer.ahead = Some(std::thread::spawn(move || {
                prepare_segment(&params, name, recycle)
            }));
        }
        let journal = Journal { inner };
        let report = OpenReport {
            io_path: storage.io_path(),
            direct_io,
            alignment_bytes: device_alignment,
            write_block_bytes: alignment,
            alignment_source,
            durability: options.durability,
            sync_after_write: journal.inner.sync_after_write,
            recovery,
            segment: segment_name.index,
            zeroed_tail_bytes,
            retired_segments: retired,
        };
        Ok((journal, report))
    }

    /// Largest payload accepted by [`Journal::append`].
    pub fn max_payload_bytes(&self) -> usize {
        self.inner.max_payload_bytes
    }

    /// Stages a record and assigns its LSN. Not durable yet: see [`Journal::commit`].
    pub fn append(&self, payload: &[u8]) -> Result<Lsn, JournalError> {
        self.inner.append(payload)
    }

    /// Makes everything appended before the call durable; returns the highest durable LSN.
    pub fn commit(&self) -> Result<Lsn, JournalError> {
        let target = {
            let state = lock(&self.inner.state);
            check_usable(&state)?;
            state.next_lsn - 1
        };
        self.inner.wait_durable(target)
    }

    /// Appends a record and waits for a group commit that covers it.
    pub fn append_durable(&self, payload: &[u8]) -> Result<Lsn, JournalError> {
        let lsn = self.inner.append(payload)?;
        self.inner.wait_durable(lsn)?;
        Ok(lsn)
    }

    /// Waits until `lsn` is durable (starting a group commit if none is running).
    pub fn wait_durable(&self, lsn: Lsn) -> Result<Lsn, JournalError> {
        self.inner.wait_durable(lsn)
    }

    /// Highest durable LSN.
    pub fn durable_lsn(&self) -> Lsn {
        lock(&self.inner.state).durable_lsn
    }

    /// Counters since open.
    pub fn stats(&self) -> JournalStats {
        lock(&self.inner.state).stats
    }

    /// Whether an I/O error poisoned the journal.
    pub fn is_poisoned(&self) -> bool {
        lock(&self.inner.state).poisoned
    }

    /// Makes everything appended durable, seals the current segment and continues in the next
    /// one. A segment without records is not sealed (no-op).
    pub fn rotate(&self) -> Result<(), JournalError> {
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        check_usable(&state)?;
        if state.records_in_segment == 0 && state.active_len == state.active_new_from {
            return Ok(());
        }
        state.rotate_requested = true;
        loop {
            check_usable(&state)?;
            if !state.rotate_requested {
                return Ok(());
            }
            if state.in_flight == 0 {
                let (next, result) = inner.lead(state);
                state = next;
                result?;
            } else {
                state = inner.wait_changed(state);
            }
        }
    }

    /// Commits everything, truncates an append-mode segment to its logical size and closes.
    pub fn close(self) -> Result<(), JournalError> {
        self.commit()?;
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        while state.in_flight > 0 {
            state = inner.wait_changed(state);
        }
        check_usable(&state)?;
        state.closed = true;
        let logical_end = state.active_base + state.active_len as u64;
        drop(state);
        let mut writer = lock(&inner.writer);
        if let Some(ahead) = writer.ahead.take() {
            // Finish the preparation so that its directory fsync happened; the file stays.
            let _ = ahead.join();
        }
        if inner.options.preallocation == Preallocation::None {
            let path = segment_path(&inner.dir, writer.segment);
            writer
                .file
                .set_len(logical_end)
                .map_err(|err| JournalError::io("truncate segment", &path, logical_end, err))?;
            writer
                .file
                .sync_data()
                .map_err(|err| JournalError::io("fdatasync", &path, logical_end, err))?;
        }
        Ok(())
    }
}

fn check_usable(state: &State) -> Result<(), JournalError> {
    if state.poisoned {
        return Err(JournalError::Poisoned);
    }
    if state.closed {
        return Err(JournalError::Closed);
    }
    Ok(())
}

impl Inner {
    fn append(&self, payload: &[u8]) -> Result<Lsn, JournalError> {
        if payload.len() > self.max_payload_bytes {
            return Err(JournalError::RecordTooLarge {
                len_bytes: payload.len(),
                limit_bytes: self.max_payload_bytes,
            });
        }
        let span = record::record_span_bytes(payload.len());
        let mut state = lock(&self.state);
        loop {
            check_usable(&state)?;
            if state.rotate_requested {
                if state.in_flight > 0 {
                    state = self.wait_changed(state);
                } else {
                    let (next, result) = self.lead(state);
                    state = next;
                    result?;
                }
                continue;
            }
            // One block of slack: a group may move to the next block boundary (see `lead`).
            let end = state.active_base + (state.active_len + span + self.alignment) as u64;
            if end > self.segment_bytes {
                state.rotate_requested = true;
                continue;
            }
            if state.active_len + span + self.alignment > state.active.capacity() {
                // Staging is full: wait for (or run) the flush that empties it.
                if !self.can_lead(&state) {
                    state = self.wait_changed(state);
                } else {
                    let (next, result) = self.lead(state);
                    state = next;
                    result?;
                }
                continue;
            }
            break;
        }
        let lsn = state.next_lsn;
        let at = state.active_len;
        assert!(at + span <= state.active.capacity(), "staging bound");
        let synced = state.durable_lsn;
        let generation = state.generation;
        record::encode_record(
            &mut state.active[at..at + span],
            lsn,
            synced,
            generation,
            payload,
        );
        if state.active_len == state.active_new_from {
            state.first_staged_at = Some(std::time::Instant::now());
        }
        state.active_len += span;
        state.next_lsn += 1;
        state.records_in_segment += 1;
        Ok(lsn)
    }

    fn wait_durable(&self, lsn: Lsn) -> Result<Lsn, JournalError> {
        let mut state = lock(&self.state);
        loop {
            check_usable(&state)?;
            if state.durable_lsn >= lsn {
                return Ok(state.durable_lsn);
            }
            // The groups in flight are durable_group + 1 ..= groups_started; is lsn in one?
            let covered = state.in_flight > 0
                && (state.durable_group + 1..=state.groups_started)
                    .any(|g| lsn <= state.group_targets[slot(g)]);
            if !covered && self.can_lead(&state) {
                let (next, result) = self.lead(state);
                state = next;
                result?;
                continue;
            }
            // Park until a completed group covers lsn (or this thread is asked to lead).
            let id = state.next_waiter_id;
            state.next_waiter_id += 1;
            state.durable_waiters.push(DurableWaiter {
                lsn,
                id,
                thread: std::thread::current(),
            });
            drop(state);
            std::thread::park();
            let durable = self.durable_lsn_published.load(Ordering::Acquire);
            if durable >= lsn {
                return Ok(durable);
            }
            // Woken to lead, by poisoning, or spuriously: look again under the lock.
            state = lock(&self.state);
            state.durable_waiters.retain(|waiter| waiter.id != id);
        }
    }

    /// Whether a new group commit may start now: below the pipeline depth, something staged,
    /// and a rotation only ever runs alone.
    fn can_lead(&self, state: &State) -> bool {
        if state.poisoned || state.in_flight >= self.max_in_flight {
            return false;
        }
        if state.in_flight == 0 {
            return true;
        }
        !state.rotate_requested && state.active_len > state.active_new_from
    }

    fn wait_changed<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        state.other_waiters += 1;
        let mut state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        state.other_waiters -= 1;
        state
    }

    /// Runs one group commit as the leader. Called with the state locked and `can_lead`
    /// true; returns with the state locked again.
    ///
    /// Several groups may be written at once. A group starts with the partial last block of
    /// the group before; it rewrites that block only when the earlier write has completed,
    /// else it moves to the next block boundary (a zero gap recovery steps over). Groups are
    /// acknowledged strictly in order.
    fn lead<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> (MutexGuard<'a, State>, Result<(), JournalError>) {
        assert!(self.can_lead(&state));
        let rotate = state.rotate_requested;
        assert!(!rotate || state.in_flight == 0, "a rotation runs alone");
        state.in_flight += 1;
        state.groups_started += 1;
        let group = state.groups_started;
        let records_in_segment = state.records_in_segment;
        let staged_at = state.first_staged_at.take();
        let target = state.next_lsn - 1;
        state.group_targets[slot(group)] = target;
        let synced = state.durable_lsn;
        let base = state.active_base;
        let mut end = state.active_len;
        let mut new_from = state.active_new_from;
        // The first block holds the previous group's last bytes when new_from > 0. Rewriting
        // it while that group's write may still be running could let the older write land
        // last; so then this group starts at the next block boundary instead, leaving zeros
        // between the two groups (recovery steps over such a gap, see docs/journal-format.md).
        let previous_written = state.written_group + 1 >= group;
        let start_fresh_block = new_from > 0 && end > new_from && !previous_written;
        let fresh = state
            .spares
            .pop()
            .unwrap_or_else(|| AlignedBuf::new(state.active.capacity(), self.alignment));
        let mut batch = std::mem::replace(&mut state.active, fresh);
        assert!(end <= batch.capacity(), "staging overrun");
        assert_eq!(
            base % self.alignment as u64,
            0,
            "group base must be block aligned"
        );
        // Positions in the written buffer are those of `batch` plus `shift`: a group that
        // starts at a fresh block has its records moved there (outside the lock, below).
        let block = self.alignment;
        let shift = if start_fresh_block {
            block - new_from
        } else {
            0
        };
        if start_fresh_block {
            state.stats.fresh_block_groups += 1;
            assert!(
                block + (end - new_from) <= batch.capacity(),
                "block slack reserved by append"
            );
        }
        let tail_start = (end + shift) / block * block - shift;
        // The records reaching into the tail block are stamped before that block is copied:
        // the next group then rewrites it with exactly the bytes this group writes, never
        // changing an acknowledged byte. The others are stamped after the lock is released.
        let split = Self::first_record_reaching(&batch, new_from, end, tail_start);
        let stamped_tail = self.check_and_stamp(&mut batch, split, end, synced);
        let tail_len = end - tail_start;
        state.active[..tail_len].copy_from_slice(&batch[tail_start..end]);
        // M5 (tail block rebuilt from a zeroed buffer): the next group rewrites the partial
        // tail block with zeros where this group's acknowledged bytes are.
        #[cfg(feature = "mutants")]
        if self.mutant_is(Mutant::M5) {
            state.active[..tail_len].fill(0);
        }
        state.active_base = base + (tail_start + shift) as u64;
        state.active_len = tail_len;
        state.active_new_from = tail_len;
        drop(state);

        let stamped =
            stamped_tail.and_then(|()| self.check_and_stamp(&mut batch, new_from, split, synced));
        if start_fresh_block {
            batch.copy_within(new_from..end, block);
            batch[..block].fill(0);
            end += shift;
            new_from = block;
        }
        let write_started = std::time::Instant::now();
        let start_wait_us = staged_at.map_or(0, |at| (write_started - at).as_micros() as u64);
        let result = stamped.and_then(|()| {
            let file = Arc::clone(&lock(&self.writer).file);
            let returned = self.write_blocks(file.as_ref(), batch, group, base, end, new_from)?;
            let rotated = match rotate {
                true => Some(self.seal_and_switch(SealInfo {
                    records_in_segment,
                    last_lsn: target,
                    logical_end: base + end as u64,
                })?),
                false => None,
            };
            Ok((returned, rotated))
        });

        let write_ended = std::time::Instant::now();
        let write_us = (write_ended - write_started).as_micros() as u64;
        let mut state = lock(&self.state);
        // Acknowledge in order: wait for the group before this one.
        while result.is_ok() && !state.poisoned && state.durable_group + 1 < group {
            state = self.pipeline.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.in_flight -= 1;
        let result = match result {
            Ok(_) if state.poisoned => Err(JournalError::Poisoned),
            Ok((returned, rotated)) => {
                state.spares.extend(returned);
                if end > new_from {
                    state.stats.groups += 1;
                    let records = target - state.durable_lsn;
                    state.stats.records += records;
                    state.stats.max_group_records = state.stats.max_group_records.max(records);
                    state.stats.group_write_us += write_us;
                    state.stats.group_start_wait_us += start_wait_us;
                    state.stats.group_ack_wait_us += write_ended.elapsed().as_micros() as u64;
                    state.stats.bytes_written +=
                        (end.div_ceil(self.alignment) * self.alignment) as u64;
                }
                state.durable_group = group;
                state.written_group = state.written_group.max(group);
                state.durable_lsn = state.durable_lsn.max(target);
                if let Some(generation) = rotated {
                    state.rotate_requested = false;
                    state.generation = generation;
                    state.active_base = 0;
                    state.active_len = 0;
                    state.active_new_from = 0;
                    state.records_in_segment = 0;
                    state.stats.rotations += 1;
                }
                Ok(())
            }
            Err(err) => {
                // Never retry: whatever the kernel did with the pages, their state is unknown.
                state.poisoned = true;
                Err(err)
            }
        };
        self.pipeline.notify_all();
        self.durable_lsn_published
            .store(state.durable_lsn, Ordering::Release);
        let mut to_wake = Vec::new();
        if state.poisoned {
            to_wake.extend(state.durable_waiters.drain(..).map(|waiter| waiter.thread));
        } else {
            let durable = state.durable_lsn;
            let mut index = 0;
            while index < state.durable_waiters.len() {
                if state.durable_waiters[index].lsn <= durable {
                    to_wake.push(state.durable_waiters.swap_remove(index).thread);
                } else {
                    index += 1;
                }
            }
            let covered = state.groups_started_target();
            if state.next_lsn - 1 > covered {
                // Records wait that no group covers: wake one of their waiters to lead, first,
                // so that the next group is not held up by the other wake-ups.
                if let Some(index) = state
                    .durable_waiters
                    .iter()
                    .position(|waiter| waiter.lsn > covered)
                {
                    let leader = state.durable_waiters.swap_remove(index).thread;
                    to_wake.insert(0, leader);
                }
            }
        }
        if state.other_waiters > 0 || state.poisoned {
            self.changed.notify_all();
        }
        if to_wake.is_empty() {
            return (state, result);
        }
        drop(state);
        for thread in to_wake {
            thread.unpark();
        }
        (lock(&self.state), result)
    }

    /// Waits until every group before `group` has completed its writes. False when the
    /// journal got poisoned meanwhile.
    fn wait_written_before(&self, group: u64) -> bool {
        let mut state = lock(&self.state);
        while !state.poisoned && state.written_group + 1 < group {
            state = self.pipeline.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        !state.poisoned
    }

    fn mark_written(&self, group: u64) {
        let mut state = lock(&self.state);
        state.written_group = state.written_group.max(group);
        drop(state);
        self.pipeline.notify_all();
    }

    /// Writes (and in fdatasync mode syncs) the blocks of one group; returns the buffer.
    fn write_blocks(
        &self,
        file: &dyn SegmentFile,
        mut batch: AlignedBuf,
        group: u64,
        base: u64,
        end: usize,
        new_from: usize,
    ) -> Result<Option<AlignedBuf>, JournalError> {
        let path = || segment_path(&self.dir, lock(&self.writer).segment);
        if end == new_from {
            if !self.wait_written_before(group) {
                return Err(JournalError::Poisoned);
            }
            self.mark_written(group);
            return Ok(Some(batch));
        }
        let padded = round_up(end as u64, self.alignment as u64) as usize;
        batch[end..padded].fill(0);
        // A group that moved to a fresh block (new_from == one block, all zeros before it)
        // does not write its first block at all.
        let first = if new_from == self.alignment && batch[..new_from].iter().all(|&b| b == 0) {
            new_from
        } else {
            0
        };
        // M1 (ack before durable): the write and sync run in the background and the group is
        // acknowledged as soon as they are submitted; their errors are never seen.
        #[cfg(feature = "mutants")]
        if self.mutant_is(Mutant::M1) {
            let file = Arc::clone(&lock(&self.writer).file);
            let sync = self.sync_after_write;
            std::thread::spawn(move || {
                let (_, result) = file.write_at(base + first as u64, batch, first..padded);
                if result.is_ok() && sync {
                    let _ = file.sync_data();
                }
            });
            if !self.wait_written_before(group) {
                return Err(JournalError::Poisoned);
            }
            self.mark_written(group);
            return Ok(None);
        }
        let (back, result) = file.write_at(base + first as u64, batch, first..padded);
        result.map_err(|err| JournalError::io("write", path(), base, err))?;
        if !self.wait_written_before(group) {
            return Err(JournalError::Poisoned);
        }
        self.mark_written(group);
        // M6 (O_DIRECT taken for durable): no fdatasync after the write.
        #[cfg(feature = "mutants")]
        if self.mutant_is(Mutant::M6) {
            return Ok(back);
        }
        if self.sync_after_write {
            let synced = file.sync_data();
            // M3 (fsync retried after EIO) and M10 (fsync error ignored): a failed sync is
            // retried and trusted when the retry succeeds, or taken for a success outright.
            #[cfg(feature = "mutants")]
            let synced = match synced {
                Err(_) if self.mutant_is(Mutant::M10) => Ok(()),
                Err(_) if self.mutant_is(Mutant::M3) => file.sync_data(),
                other => other,
            };
            synced.map_err(|err| JournalError::io("fdatasync", path(), base, err))?;
        }
        Ok(back)
    }

    /// Start of the first record of `batch[from..end]` that ends after `tail_start` (`end`
    /// when none does; `from` when a header is unreadable, so that the whole range gets
    /// checked, and rejected, at once).
    fn first_record_reaching(batch: &[u8], from: usize, end: usize, tail_start: usize) -> usize {
        let mut at = from;
        while at < end {
            let span = record::parse_header(&batch[at..end])
                .map_or(0, |h| record::record_span_bytes(h.len as usize));
            if span == 0 || at + span > end {
                return from;
            }
            if at + span > tail_start {
                return at;
            }
            at += span;
        }
        end
    }

    /// Checks every record of a group right before it goes to the disk, and stamps the LSN
    /// known durable now: records of this group after a torn one then show whether the torn
    /// one had been acknowledged.
    fn check_and_stamp(
        &self,
        batch: &mut AlignedBuf,
        from: usize,
        end: usize,
        synced: Lsn,
    ) -> Result<(), JournalError> {
        let mut at = from;
        while at < end {
            let header = record::parse_header(&batch[at..end]);
            let span = header.map_or(0, |h| record::record_span_bytes(h.len as usize));
            if span == 0
                || at + span > end
                || !record::restamp_synced_lsn(&mut batch[at..at + span], synced)
            {
                return Err(JournalError::ChecksumBeforeWrite {
                    lsn: header.map_or(0, |h| h.lsn),
                });
            }
            at += span;
        }
        Ok(())
    }

    /// Seals the current segment (append mode: truncate to its logical size) and switches to
    /// the next one, returning its generation. Runs with no other group in flight.
    fn seal_and_switch(&self, seal: SealInfo) -> Result<u32, JournalError> {
        let mut writer = lock(&self.writer);
        let path = segment_path(&self.dir, writer.segment);
        if self.options.preallocation == Preallocation::None {
            writer.file.set_len(seal.logical_end).map_err(|err| {
                JournalError::io("truncate segment", &path, seal.logical_end, err)
            })?;
            writer
                .file
                .sync_data()
                .map_err(|err| JournalError::io("fdatasync", &path, seal.logical_end, err))?;
        }
        let next_index = writer.segment.index + 1;
        let prepared = match writer.ahead.take() {
            _ if writer.ready.is_some() => writer.ready.take().expect("checked"),
            Some(handle) => match handle.join() {
                Ok(result) => result?,
                Err(_) => {
                    return Err(JournalError::io(
                        "prepare segment",
                        &self.dir,
                        0,
                        std::io::Error::other("segment preparation thread panicked"),
                    ))
                }
            },
            None => {
                let name = self.next_name(&mut writer, next_index);
                let recycle = self.take_free(&mut writer);
                prepare_segment(&self.prepare_params(), name, recycle)?
            }
        };
        debug_assert_eq!(prepared.name.index, next_index);
        if seal.records_in_segment > 0 {
            let name = writer.segment;
            writer.sealed.push(Sealed {
                name,
                last_lsn: seal.last_lsn,
            });
        }
        writer.file = Arc::from(prepared.file);
        writer.segment = prepared.name;
        if self.options.prepare_ahead {
            let name = self.next_name(&mut writer, next_index + 1);
            let recycle = self.take_free(&mut writer);
            let params = self.prepare_params();
            writer.ahead = Some(std::thread::spawn(move || {
                prepare_segment(&params, name, recycle)
            }));
        }
        Ok(prepared.name.generation)
    }

    /// Whether the journal runs the deliberately broken variant `which`.
    #[cfg(feature = "mutants")]
    fn mutant_is(&self, which: Mutant) -> bool {
        mutants::selected(self.options.mutant, which)
    }

    fn next_name(&self, writer: &mut Writer, index: u64) -> SegmentName {
        let generation = writer.next_generation;
        writer.next_generation = writer.next_generation.wrapping_add(1).max(1);
        SegmentName { index, generation }
    }

    fn take_free(&self, writer: &mut Writer) -> Option<u32> {
        if self.options.recycle_segments {
            writer.free.pop()
        } else {
            None
        }
    }

    fn prepare_params(&self) -> PrepareParams {
        PrepareParams {
            storage: Arc::clone(&self.storage),
            dir: self.dir.clone(),
            preallocation: self.options.preallocation,
            segment_bytes: self.segment_bytes,
            alignment: self.alignment,
            flags: OpenFlags {
                create: true,
                direct: self.options.direct_io,
                // M6 (O_DIRECT taken for durable): no O_DSYNC in dsync mode.
                #[cfg(feature = "mutants")]
                dsync: self.options.durability == Durability::Dsync && !self.mutant_is(Mutant::M6),
                #[cfg(not(feature = "mutants"))]
                dsync: self.options.durability == Durability::Dsync,
            },
            mutant: self.options.mutant,
        }
    }
}

impl Journal {
    /// Retires every sealed segment whose records all have LSNs below `lsn` (the caller no
    /// longer needs them): the files go to the free list and are reused by later rotations.
    /// Returns how many were retired.
    pub fn retire_before(&self, lsn: Lsn) -> Result<usize, JournalError> {
        let inner = &self.inner;
        check_usable(&lock(&inner.state))?;
        // The renames and the directory fsync run without the writer lock, which every group
        // commit takes: a checkpoint must not stall the appenders for a directory fsync.
        let retiring: Vec<Sealed> = {
            let mut writer = lock(&inner.writer);
            // The newest sealed segment always stays: while the current one holds no durable
            // record, it is what tells a reopened journal the next LSN.
            #[allow(unused_mut)]
            let mut keep_from = writer.sealed.len().saturating_sub(1);
            // M12 (retire drops its guard): the newest sealed segment goes too.
            #[cfg(feature = "mutants")]
            if inner.mutant_is(Mutant::M12) {
                keep_from = writer.sealed.len();
            }
            let count = writer.sealed[..keep_from]
                .iter()
                .take_while(|sealed| sealed.last_lsn < lsn)
                .count();
            writer.sealed.drain(..count).collect()
        };
        let mut renamed = Vec::with_capacity(retiring.len());
        let mut failure = None;
        for sealed in &retiring {
            let from = segment_path(&inner.dir, sealed.name);
            let to = inner
                .dir
                .join(segment::free_file_name(sealed.name.generation));
            if let Err(err) = inner.storage.rename(&from, &to) {
                failure = Some(JournalError::io("retire segment", &from, 0, err));
                break;
            }
            renamed.push(sealed.name.generation);
        }
        if !renamed.is_empty() {
            if let Err(err) = inner.storage.sync_dir(&inner.dir) {
                failure.get_or_insert(JournalError::io("fsync directory", &inner.dir, 0, err));
            }
        }
        let mut writer = lock(&inner.writer);
        if let Some(err) = failure {
            // Segments not renamed stay live, oldest first, as before the call.
            let kept: Vec<Sealed> = retiring.into_iter().skip(renamed.len()).collect();
            writer.sealed.splice(..0, kept);
            return Err(err);
        }
        let retired = renamed.len();
        // Reusable only once the renames are durable.
        writer.free.extend(renamed);
        Ok(retired)
    }

    /// Waits until the background preparation of the next segment (if any) has finished, so
    /// that measurements do not include it. A preparation failure poisons the journal.
    pub fn wait_for_prepared_segment(&self) -> Result<(), JournalError> {
        let mut writer = lock(&self.inner.writer);
        if let Some(handle) = writer.ahead.take() {
            match handle.join() {
                Ok(Ok(prepared)) => writer.ready = Some(prepared),
                Ok(Err(err)) => {
                    lock(&self.inner.state).poisoned = true;
                    return Err(err);
                }
                Err(_) => {
                    lock(&self.inner.state).poisoned = true;
                    return Err(JournalError::io(
                        "prepare segment",
                        &self.inner.dir,
                        0,
                        std::io::Error::other("segment preparation thread panicked"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Options the journal was opened with.
    pub fn options(&self) -> &JournalOptions {
        &self.inner.options
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Join a running segment preparation so no thread outlives the journal's files.
        let handle = lock(&self.inner.writer).ahead.take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

// Journals are shared across threads with Arc.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Journal>();
    assert_send_sync::<OpenReport>();
};
