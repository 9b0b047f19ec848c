//! Segments as the writer sees them: preparing the next file (recycled or new, preallocated,
//! its name made durable), rotating to it, retiring sealed segments to the free list, and
//! sealing the last one on close.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::state::check_usable;
use super::{lock, Inner};
use crate::error::JournalError;
#[cfg(feature = "mutants")]
use crate::mutants::{self, Mutant};
use crate::options::{Durability, JournalOptions, Preallocation};
use crate::segment::{self, SegmentName};
use crate::storage::{AlignedBuf, OpenFlags, SegmentFile, Storage};
use crate::Lsn;

/// The segment being appended to and the segments around it; behind its own lock, which
/// every group commit takes briefly.
pub(super) struct Writer {
    pub(super) file: Arc<dyn SegmentFile>,
    pub(super) segment: SegmentName,
    /// Sealed segments holding records, oldest first.
    pub(super) sealed: Vec<Sealed>,
    pub(super) free: Vec<u32>,
    pub(super) next_generation: u32,
    pub(super) ahead: Option<JoinHandle<Result<Prepared, JournalError>>>,
    /// A prepared next segment whose preparation thread was already joined.
    pub(super) ready: Option<Prepared>,
}

/// A segment file ready for appends.
pub(super) struct Prepared {
    pub(super) name: SegmentName,
    pub(super) file: Box<dyn SegmentFile>,
}

/// What a rotation needs to know about the segment it seals.
#[derive(Clone, Copy)]
pub(super) struct SealInfo {
    pub(super) records_in_segment: u64,
    pub(super) last_lsn: Lsn,
    pub(super) logical_end: u64,
}

/// A segment before the current one, with records `first_lsn..=last_lsn`.
pub(super) struct Sealed {
    pub(super) name: SegmentName,
    pub(super) last_lsn: Lsn,
}

pub(super) fn segment_path(dir: &Path, name: SegmentName) -> PathBuf {
    dir.join(name.file_name())
}

/// How segment files are opened for appends.
pub(super) fn segment_open_flags(options: &JournalOptions) -> OpenFlags {
    OpenFlags {
        create: true,
        direct: options.direct_io,
        // M6 (O_DIRECT taken for durable): no O_DSYNC in dsync mode.
        #[cfg(feature = "mutants")]
        dsync: options.durability == Durability::Dsync
            && !mutants::selected(options.mutant, Mutant::M6),
        #[cfg(not(feature = "mutants"))]
        dsync: options.durability == Durability::Dsync,
    }
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

/// Everything preparing a segment needs, movable to the thread that prepares ahead.
pub(super) struct PrepareParams {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) dir: PathBuf,
    pub(super) preallocation: Preallocation,
    pub(super) segment_bytes: u64,
    pub(super) alignment: usize,
    pub(super) flags: OpenFlags,
    /// The deliberately broken variant in use (docs/design.md section 6), if any.
    #[cfg_attr(not(feature = "mutants"), allow(dead_code))]
    pub(super) mutant: Option<crate::Mutant>,
}

impl PrepareParams {
    pub(super) fn new(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        options: &JournalOptions,
        segment_bytes: u64,
        alignment: usize,
    ) -> PrepareParams {
        PrepareParams {
            storage: Arc::clone(storage),
            dir: dir.to_path_buf(),
            preallocation: options.preallocation,
            segment_bytes,
            alignment,
            flags: segment_open_flags(options),
            mutant: options.mutant,
        }
    }
}

/// Makes a segment file ready for appends: a recycled file is renamed, a new one is created
/// and preallocated; the directory is fsynced before the file is used.
pub(super) fn prepare_segment(
    params: &PrepareParams,
    name: SegmentName,
    recycle_from: Option<u32>,
) -> Result<Prepared, JournalError> {
    let path = segment_path(&params.dir, name);
    let mut file = open_for_preparation(params, &path, recycle_from)?;
    preallocate(params, file.as_mut(), &path)?;
    // M2 (new segment's directory entry never made durable) and M9 (recycling rename never
    // made durable): skip the directory fsync, so a crash can lose the segment's name.
    #[cfg(feature = "mutants")]
    if mutants::selected(params.mutant, Mutant::M2) && recycle_from.is_none()
        || mutants::selected(params.mutant, Mutant::M9) && recycle_from.is_some()
    {
        return Ok(Prepared { name, file });
    }
    params
        .storage
        .sync_dir(&params.dir)
        .map_err(|err| JournalError::io("fsync directory", &params.dir, 0, err))?;
    Ok(Prepared { name, file })
}

/// Renames the free file of generation `recycle_from` to `path` and opens it, or creates
/// `path` when there is none.
fn open_for_preparation(
    params: &PrepareParams,
    path: &Path,
    recycle_from: Option<u32>,
) -> Result<Box<dyn SegmentFile>, JournalError> {
    let storage = params.storage.as_ref();
    match recycle_from {
        Some(old_generation) => {
            let from = params.dir.join(segment::free_file_name(old_generation));
            storage
                .rename(&from, path)
                .map_err(|err| JournalError::io("rename free segment", &from, 0, err))?;
            let flags = OpenFlags {
                create: false,
                ..params.flags
            };
            storage
                .open(path, flags)
                .map_err(|err| JournalError::io("open segment", path, 0, err))
        }
        None => storage
            .open(path, params.flags)
            .map_err(|err| JournalError::io("create segment", path, 0, err)),
    }
}

/// Allocates (and in zero mode writes) the whole segment and syncs it, unless preallocation
/// is off or the file is already that large.
fn preallocate(
    params: &PrepareParams,
    file: &mut dyn SegmentFile,
    path: &Path,
) -> Result<(), JournalError> {
    let existing = file
        .len_bytes()
        .map_err(|err| JournalError::io("stat segment", path, 0, err))?;
    if params.preallocation == Preallocation::None || existing >= params.segment_bytes {
        return Ok(());
    }
    // File systems without fallocate (ramfs, some FUSE) get the zero fill instead.
    let allocated = match file.allocate(params.segment_bytes) {
        Ok(()) => true,
        Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => false,
        Err(err) => return Err(JournalError::io("fallocate", path, 0, err)),
    };
    if params.preallocation == Preallocation::Zero || !allocated {
        let from = existing / params.alignment as u64 * params.alignment as u64;
        // Keep any leading bytes of a recycled file's partial block: they are stale
        // records or zeros either way, so rewriting them as zeros is just as good.
        zero_fill(file, path, from, params.segment_bytes, params.alignment)?;
    }
    file.sync_data()
        .map_err(|err| JournalError::io("fsync new segment", path, 0, err))
}

impl Inner {
    /// See [`super::Journal::rotate`].
    pub(super) fn rotate(&self) -> Result<(), JournalError> {
        let mut state = lock(&self.state);
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
                let (next, result) = self.lead(state);
                state = next;
                result?;
            } else {
                state = self.wait_changed(state);
            }
        }
    }

    /// Seals the current segment (append mode: truncate to its logical size) and switches to
    /// the next one, returning its generation. Runs with no other group in flight.
    pub(super) fn seal_and_switch(&self, seal: SealInfo) -> Result<u32, JournalError> {
        let mut writer = lock(&self.writer);
        if self.options.preallocation == Preallocation::None {
            let path = segment_path(&self.dir, writer.segment);
            truncate_to(writer.file.as_ref(), &path, seal.logical_end)?;
        }
        let next_index = writer.segment.index + 1;
        let prepared = self.take_prepared(&mut writer, next_index)?;
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
            self.prepare_ahead(&mut writer, next_index + 1);
        }
        Ok(prepared.name.generation)
    }

    /// The next segment: the one prepared ahead, or one prepared now.
    fn take_prepared(
        &self,
        writer: &mut Writer,
        next_index: u64,
    ) -> Result<Prepared, JournalError> {
        if let Some(ready) = writer.ready.take() {
            // `ahead` is empty whenever `ready` is set: the preparation it held was joined.
            drop(writer.ahead.take());
            return Ok(ready);
        }
        match writer.ahead.take() {
            Some(handle) => match handle.join() {
                Ok(result) => result,
                Err(_) => Err(self.preparation_panicked()),
            },
            None => {
                let name = self.next_name(writer, next_index);
                let recycle = self.take_free(writer);
                prepare_segment(&self.prepare_params(), name, recycle)
            }
        }
    }

    fn preparation_panicked(&self) -> JournalError {
        JournalError::io(
            "prepare segment",
            &self.dir,
            0,
            std::io::Error::other("segment preparation thread panicked"),
        )
    }

    /// Starts preparing segment `index` on a thread of its own.
    pub(super) fn prepare_ahead(&self, writer: &mut Writer, index: u64) {
        let name = self.next_name(writer, index);
        let recycle = self.take_free(writer);
        let params = self.prepare_params();
        writer.ahead = Some(std::thread::spawn(move || {
            prepare_segment(&params, name, recycle)
        }));
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
        PrepareParams::new(
            &self.storage,
            &self.dir,
            &self.options,
            self.segment_bytes,
            self.alignment,
        )
    }

    /// Finishes a running preparation and, in append mode, truncates the current segment to
    /// `logical_end`: the last step of closing.
    pub(super) fn close_segment(&self, logical_end: u64) -> Result<(), JournalError> {
        let mut writer = lock(&self.writer);
        if let Some(ahead) = writer.ahead.take() {
            // Finish the preparation so that its directory fsync happened; the file stays.
            let _ = ahead.join();
        }
        if self.options.preallocation == Preallocation::None {
            let path = segment_path(&self.dir, writer.segment);
            truncate_to(writer.file.as_ref(), &path, logical_end)?;
        }
        Ok(())
    }

    /// See [`super::Journal::retire_before`].
    pub(super) fn retire_before(&self, lsn: Lsn) -> Result<usize, JournalError> {
        check_usable(&lock(&self.state))?;
        // The renames and the directory fsync run without the writer lock, which every group
        // commit takes: a checkpoint must not stall the appenders for a directory fsync.
        let retiring = self.take_retiring(lsn);
        let (renamed, failure) = self.rename_to_free(&retiring);
        let mut writer = lock(&self.writer);
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

    /// Removes from the sealed list the oldest segments whose records are all below `lsn`.
    fn take_retiring(&self, lsn: Lsn) -> Vec<Sealed> {
        let mut writer = lock(&self.writer);
        // The newest sealed segment always stays: while the current one holds no durable
        // record, it is what tells a reopened journal the next LSN.
        #[allow(unused_mut)]
        let mut keep_from = writer.sealed.len().saturating_sub(1);
        // M12 (retire drops its guard): the newest sealed segment goes too.
        #[cfg(feature = "mutants")]
        if self.mutant_is(Mutant::M12) {
            keep_from = writer.sealed.len();
        }
        let count = writer.sealed[..keep_from]
            .iter()
            .take_while(|sealed| sealed.last_lsn < lsn)
            .count();
        writer.sealed.drain(..count).collect()
    }

    /// Renames segments to free files, oldest first, and fsyncs the directory; stops at the
    /// first failure. Returns the generations renamed and the failure, if any.
    fn rename_to_free(&self, retiring: &[Sealed]) -> (Vec<u32>, Option<JournalError>) {
        let mut renamed = Vec::with_capacity(retiring.len());
        let mut failure = None;
        for sealed in retiring {
            let from = segment_path(&self.dir, sealed.name);
            let to = self
                .dir
                .join(segment::free_file_name(sealed.name.generation));
            if let Err(err) = self.storage.rename(&from, &to) {
                failure = Some(JournalError::io("retire segment", &from, 0, err));
                break;
            }
            renamed.push(sealed.name.generation);
        }
        if !renamed.is_empty() {
            if let Err(err) = self.storage.sync_dir(&self.dir) {
                failure.get_or_insert(JournalError::io("fsync directory", &self.dir, 0, err));
            }
        }
        (renamed, failure)
    }

    /// See [`super::Journal::wait_for_prepared_segment`].
    pub(super) fn wait_for_prepared_segment(&self) -> Result<(), JournalError> {
        let mut writer = lock(&self.writer);
        if let Some(handle) = writer.ahead.take() {
            let joined = match handle.join() {
                Ok(result) => result,
                Err(_) => Err(self.preparation_panicked()),
            };
            match joined {
                Ok(prepared) => writer.ready = Some(prepared),
                Err(err) => {
                    lock(&self.state).poisoned = true;
                    return Err(err);
                }
            }
        }
        Ok(())
    }
}

/// Truncates an append-mode segment to its logical size and makes that durable.
fn truncate_to(file: &dyn SegmentFile, path: &Path, logical_end: u64) -> Result<(), JournalError> {
    file.set_len(logical_end)
        .map_err(|err| JournalError::io("truncate segment", path, logical_end, err))?;
    file.sync_data()
        .map_err(|err| JournalError::io("fdatasync", path, logical_end, err))
}
