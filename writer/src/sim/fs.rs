//! An in-memory file system with a live and a durable view, implementing [`Storage`].
//!
//! The model is POSIX's weakest promise, weaker than ext4 or XFS in ordered mode:
//! - a file's data, size and allocation become durable only by its own `sync_data`
//!   (fdatasync), or write by write when it was opened with O_DSYNC;
//! - a name (create, rename, unlink) becomes durable only by `sync_dir` of its directory;
//!   a file's own fsync never makes its name durable (on ext4/XFS it does in practice, because
//!   both land in the same journal transaction: this is why M2 and M9 escape the real kernel);
//! - directories made by `create_dir_all` are durable at once (the journal's directory is not
//!   what the simulation tests);
//! - an armed fault ([`SimStorage::arm_fault`]) fails writes or syncs with EIO; a failed sync's
//!   writes never become durable, and whole-file reads, which read the device as the real
//!   storage does with O_DIRECT, no longer see them (the model is in `sim/fault.rs`).
//!
//! A crash builds a new file system from the durable view: every write since a file's last
//! sync is kept whole, dropped, or torn (an arbitrary subset of its 512-byte sectors), each
//! independently and in order, chosen by a seeded generator; names not made durable are gone
//! (a renamed file is found under its old durable name, a new file not at all).

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::fault::{self, ArmedFault, SimFault};
use super::pages::Pages;
use super::rng::SplitMix64;
use super::SimError;
use crate::dir_lock::{DirLock, DirLockError, LockMode};
use crate::storage::IoPath;
use crate::storage::{AlignedBuf, OpenFlags, SegmentFile, Storage, WriteOutcome};

/// Granularity at which an unsynced write can tear.
pub const SECTOR_BYTES: usize = 512;

/// Most unsynced changes kept per file (older ones are written back, see `push_pending`).
pub const MAX_PENDING_OPS: usize = 1024;

// Largest alignment and block size the simulated device accepts: the writer's largest block.
use crate::storage::MAX_BLOCK_BYTES;

/// Shape of a simulated device and file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Whether files opened with O_DIRECT really bypass the cache (`direct_io()` true) or
    /// fall back to buffered I/O (as on tmpfs). O_DIRECT writes must be aligned.
    pub direct_io: bool,
    /// Logical block size of the simulated device: the alignment of direct I/O (512 to
    /// 64 KiB, a power of two).
    pub alignment_bytes: usize,
    /// Block size of the simulated file system (512 to 64 KiB, a power of two).
    pub fs_block_bytes: usize,
    /// Largest size of one file; writes beyond fail with EFBIG.
    pub max_file_bytes: u64,
    /// Largest number of files; creating more fails with ENOSPC.
    pub max_files: usize,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            direct_io: true,
            alignment_bytes: 4096,
            fs_block_bytes: 4096,
            max_file_bytes: 64 * 1024 * 1024,
            max_files: 1024,
        }
    }
}

impl SimConfig {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), SimError> {
        for (name, bytes) in [
            ("alignment_bytes", self.alignment_bytes),
            ("fs_block_bytes", self.fs_block_bytes),
        ] {
            if !bytes.is_power_of_two() || !(SECTOR_BYTES..=MAX_BLOCK_BYTES).contains(&bytes) {
                return Err(SimError::InvalidConfig(format!(
                    "{name} must be a power of two from {SECTOR_BYTES} to {MAX_BLOCK_BYTES}, \
                     not {bytes}"
                )));
            }
        }
        if self.max_file_bytes == 0 || self.max_file_bytes > 1 << 32 {
            return Err(SimError::InvalidConfig(format!(
                "max_file_bytes must be from 1 to 4 GiB, not {}",
                self.max_file_bytes
            )));
        }
        if self.max_files == 0 || self.max_files > 1 << 20 {
            return Err(SimError::InvalidConfig(format!(
                "max_files must be from 1 to 2^20, not {}",
                self.max_files
            )));
        }
        Ok(())
    }
}

/// A change to a file not yet made durable by a sync.
#[derive(Debug, Clone)]
enum Pending {
    /// Bytes written at an offset; `durable` for an O_DSYNC write (never lost, but it may
    /// follow non-durable ones that are).
    Write {
        offset: u64,
        bytes: Arc<[u8]>,
        durable: bool,
        /// Number of the operation that wrote it (concurrent writes complete in any order).
        op: u64,
    },
    /// ftruncate.
    SetLen { len_bytes: u64 },
    /// fallocate: the size grows to at least this.
    Extend { len_bytes: u64 },
}

#[derive(Debug, Clone)]
struct Inode {
    /// What reads through an open file see (the page cache).
    live: Pages,
    /// Contents as of the last sync (plus O_DSYNC writes with nothing unsynced before them).
    synced: Pages,
    /// Changes since `synced`, in order.
    pending: Vec<Pending>,
    /// A sync failed (EIO) since the live view last matched the device: the live view holds
    /// bytes the device never got, and whole-file reads (which read the device) do not see
    /// them.
    stale_cache: bool,
}

impl Inode {
    fn empty() -> Inode {
        Inode {
            live: Pages::default(),
            synced: Pages::default(),
            pending: Vec::new(),
            stale_cache: false,
        }
    }

    /// Adds an unsynced change. Past [`MAX_PENDING_OPS`] the oldest one is written back, as
    /// a device does on its own sooner or later: memory stays bounded, at the price of the
    /// crash states in which that oldest change is lost.
    fn push_pending(&mut self, op: Pending) {
        self.pending.push(op);
        if self.pending.len() > MAX_PENDING_OPS {
            let oldest = self.pending.remove(0);
            apply(&mut self.synced, &oldest);
        }
        self.fold_durable_prefix();
    }

    /// fdatasync: every pending change becomes durable.
    fn sync(&mut self) {
        if !self.stale_cache {
            self.synced = self.live.clone();
            self.pending.clear();
            return;
        }
        // The live view holds what a failed sync lost: rebuild the durable one without it.
        for op in self.pending.drain(..) {
            apply(&mut self.synced, &op);
        }
        if self.synced == self.live {
            self.stale_cache = false;
        }
    }

    /// A sync that returned EIO (fsyncgate): the pending changes never reach the device, and
    /// no later sync writes them (they are no longer pending), but the live view keeps them.
    fn fail_write_back(&mut self) {
        if !self.pending.is_empty() {
            self.pending.clear();
            self.stale_cache = self.synced != self.live;
        }
    }

    /// What the device holds: the synced contents and the pending changes (the live view
    /// unless a failed sync left bytes in it that the device never got).
    fn device(&self) -> Pages {
        if !self.stale_cache {
            return self.live.clone();
        }
        let mut data = self.synced.clone();
        for op in &self.pending {
            apply(&mut data, op);
        }
        data
    }

    /// Moves leading O_DSYNC writes into the synced contents: nothing before them can be
    /// lost any more, so keeping them pending would only slow crashes down.
    fn fold_durable_prefix(&mut self) {
        let count = self
            .pending
            .iter()
            .take_while(|op| matches!(op, Pending::Write { durable: true, .. }))
            .count();
        if count == 0 {
            return;
        }
        for op in self.pending.drain(..count) {
            apply(&mut self.synced, &op);
        }
    }
}

/// Applies one change to file contents.
fn apply(data: &mut Pages, op: &Pending) {
    match op {
        Pending::Write { offset, bytes, .. } => write_into(data, *offset, bytes),
        Pending::SetLen { len_bytes } => data.resize(*len_bytes as usize),
        Pending::Extend { len_bytes } => {
            if data.len() < *len_bytes as usize {
                data.resize(*len_bytes as usize);
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Dir {
    live: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct FsState {
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Changing operations so far (writes, syncs, size changes, creations, renames, unlinks).
    ops: u64,
    /// Copies of the state after each changing operation, while recording.
    snapshots: Option<Vec<SimStorage>>,
    /// Snapshots not kept because the buffer was full.
    snapshots_dropped: u64,
    /// The EIO fault armed, if any (never carried into snapshots or crash states).
    fault: Option<ArmedFault>,
    /// Operations failed by injected faults so far.
    fault_hits: u64,
}

/// Most snapshots buffered between two [`SimStorage::take_op_snapshots`].
pub const MAX_BUFFERED_SNAPSHOTS: usize = 4096;

impl FsState {
    /// A file system holding a copy of this state, itself not recording.
    fn snapshot(&self, config: &SimConfig) -> SimStorage {
        SimStorage::from_state(
            config.clone(),
            FsState {
                dirs: self.dirs.clone(),
                inodes: self.inodes.clone(),
                next_inode: self.next_inode,
                ops: self.ops,
                snapshots: None,
                snapshots_dropped: 0,
                fault: None,
                fault_hits: 0,
            },
        )
    }

    /// Counts a changing operation and, while recording, keeps a copy of the state after it.
    fn after_op(&mut self, config: &SimConfig) {
        self.ops += 1;
        let Some(buffered) = self.snapshots.as_ref().map(Vec::len) else {
            return;
        };
        if buffered >= MAX_BUFFERED_SNAPSHOTS {
            self.snapshots_dropped += 1;
            return;
        }
        let snapshot = self.snapshot(config);
        if let Some(snapshots) = self.snapshots.as_mut() {
            snapshots.push(snapshot);
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: SimConfig,
    state: Mutex<FsState>,
    /// Seed of the writes held back (0: none are): see [`SimStorage::hold_back_writes`].
    hold_back_seed: AtomicU64,
    /// Writes that asked whether to wait so far (the coin of each is drawn from its number).
    hold_back_calls: AtomicU64,
}

/// How long a held-back write waits before it lands.
const HOLD_BACK: Duration = Duration::from_millis(1);

/// The simulated file system. Cheap to clone: clones are handles on the same file system.
/// Thread-safe (one lock around the whole state).
#[derive(Debug, Clone)]
pub struct SimStorage {
    shared: Arc<Shared>,
}

/// Sizes of a simulated file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimUsage {
    /// Files created and not yet forgotten (a file without any name is forgotten only by a
    /// crash).
    pub files: usize,
    /// Bytes of all files' live contents.
    pub live_bytes: u64,
    /// Writes and size changes not yet durable, over all files.
    pub pending_ops: usize,
}

fn lock(shared: &Shared) -> MutexGuard<'_, FsState> {
    // A panic while holding the lock leaves a state that is still structurally valid.
    shared
        .state
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// Asks the armed fault whether an operation fails (`decide` returns what the failure does)
/// and counts the failures.
fn injected<T>(
    shared: &Shared,
    decide: impl FnOnce(&mut Option<ArmedFault>) -> Option<T>,
) -> Option<T> {
    let mut state = lock(shared);
    let hit = decide(&mut state.fault);
    if hit.is_some() {
        state.fault_hits += 1;
    }
    hit
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// `a/./b/` and `a/b` name the same directory.
fn normalise(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Splits a file path into its directory and its name.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let path = normalise(path);
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| errno(libc::EINVAL))?
        .to_string();
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((parent, name))
}

fn write_into(data: &mut Pages, offset: u64, bytes: &[u8]) {
    // Offsets are bounded by max_file_bytes (at most 4 GiB) before reaching here.
    data.write(offset as usize, bytes);
}

/// What happens to one unsynced write in a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Dropped,
    Kept,
    Torn,
}

/// Replays a file's pending changes onto its synced contents as a crash leaves them: O_DSYNC
/// writes always, the others as `rng` decides (none at all without a generator).
fn crash_contents(inode: &Inode, mut rng: Option<&mut SplitMix64>) -> Pages {
    let no_durable_pending = !inode
        .pending
        .iter()
        .any(|op| matches!(op, Pending::Write { durable: true, .. }));
    if inode.pending.is_empty() || (rng.is_none() && no_durable_pending) {
        return inode.synced.clone();
    }
    let mut data = inode.synced.clone();
    for op in &inode.pending {
        let fate = match (op, rng.as_deref_mut()) {
            (Pending::Write { durable: true, .. }, _) => Fate::Kept,
            (_, None) => Fate::Dropped,
            (Pending::Write { .. }, Some(rng)) => match rng.below(3) {
                0 => Fate::Dropped,
                1 => Fate::Kept,
                _ => Fate::Torn,
            },
            (_, Some(rng)) => match rng.below(2) {
                0 => Fate::Dropped,
                _ => Fate::Kept,
            },
        };
        match (op, fate) {
            (_, Fate::Dropped) => {}
            (Pending::Write { offset, bytes, .. }, Fate::Kept) => {
                write_into(&mut data, *offset, bytes);
            }
            (Pending::Write { offset, bytes, .. }, Fate::Torn) => {
                let Some(rng) = rng.as_deref_mut() else {
                    continue;
                };
                // Sectors are aligned to file offsets: a write that starts mid-sector has a
                // short first piece.
                let mut at = 0usize;
                while at < bytes.len() {
                    let file_pos = *offset + at as u64;
                    let sector_end = (file_pos / SECTOR_BYTES as u64 + 1) * SECTOR_BYTES as u64;
                    let piece = ((sector_end - file_pos) as usize).min(bytes.len() - at);
                    if rng.below(2) == 1 {
                        write_into(&mut data, file_pos, &bytes[at..at + piece]);
                    }
                    at += piece;
                }
            }
            (Pending::SetLen { len_bytes }, _) => data.resize(*len_bytes as usize),
            (Pending::Extend { len_bytes }, _) => {
                if data.len() < *len_bytes as usize {
                    data.resize(*len_bytes as usize);
                }
            }
        }
    }
    data
}

impl Default for SimStorage {
    fn default() -> SimStorage {
        SimStorage::with_valid_config(SimConfig::default())
    }
}

impl SimStorage {
    /// An empty file system.
    pub fn new(config: SimConfig) -> Result<SimStorage, SimError> {
        config.validate()?;
        Ok(SimStorage::with_valid_config(config))
    }

    fn with_valid_config(config: SimConfig) -> SimStorage {
        SimStorage::from_state(
            config,
            FsState {
                next_inode: 1,
                ..FsState::default()
            },
        )
    }

    fn from_state(config: SimConfig, state: FsState) -> SimStorage {
        SimStorage {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(state),
                hold_back_seed: AtomicU64::new(0),
                hold_back_calls: AtomicU64::new(0),
            }),
        }
    }

    /// Starts (or stops) keeping a copy of the file system after every changing operation
    /// (write, sync, size change, creation, rename, unlink, directory fsync), so that crash
    /// states can be taken between the operations of one engine call. A write is copied while
    /// still in flight: not yet durable even with O_DSYNC, so it may tear. Stopping discards
    /// the copies not taken. At most [`MAX_BUFFERED_SNAPSHOTS`] are kept between two takes;
    /// later ones are counted in [`SimStorage::snapshots_dropped`].
    pub fn record_op_snapshots(&self, enabled: bool) {
        let mut state = lock(&self.shared);
        state.snapshots = enabled.then(Vec::new);
    }

    /// The copies kept since the last call, oldest first (each an independent file system
    /// whose [`SimStorage::ops`] tells after which operation it was taken).
    pub fn take_op_snapshots(&self) -> Vec<SimStorage> {
        let mut state = lock(&self.shared);
        match state.snapshots.as_mut() {
            Some(snapshots) => std::mem::take(snapshots),
            None => Vec::new(),
        }
    }

    /// Makes concurrent writes complete in adversarial orders (`seed` Some) or in call order
    /// (None): a write chosen by the seed waits a while before it lands, so a later write of
    /// another thread, and a sync that does not cover the held one, can complete first.
    pub fn hold_back_writes(&self, seed: Option<u64>) {
        let seed = seed.map_or(0, |s| s | 1);
        self.shared.hold_back_seed.store(seed, Ordering::SeqCst);
    }

    /// Arms `fault` (replacing any armed one): from now on the operations it names fail
    /// with EIO, see the [`SimFault`] fields and the model in `sim/fault.rs`.
    pub fn arm_fault(&self, fault: SimFault) {
        lock(&self.shared).fault = Some(ArmedFault::new(fault));
    }

    /// Disarms the fault, if one is armed. What failed stays as it was left.
    pub fn clear_fault(&self) {
        lock(&self.shared).fault = None;
    }

    /// Whether a fault is armed (a transient one disarms itself when it fires).
    pub fn fault_armed(&self) -> bool {
        lock(&self.shared).fault.is_some()
    }

    /// Operations failed by injected faults so far.
    pub fn fault_hits(&self) -> u64 {
        lock(&self.shared).fault_hits
    }

    /// Snapshots not kept because the buffer was full.
    pub fn snapshots_dropped(&self) -> u64 {
        lock(&self.shared).snapshots_dropped
    }

    /// Changing operations performed so far (carried over by snapshots and crashes).
    pub fn ops(&self) -> u64 {
        lock(&self.shared).ops
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The file system a power cut leaves now, chosen by `seed`: every unsynced write of
    /// every file is independently kept, dropped or torn at 512-byte sectors (applied in
    /// order), every unsynced size change kept or dropped; names not made durable by a
    /// directory fsync are lost. The same seed on the same file system state gives the same
    /// crash state. The result is an independent file system, everything in it durable.
    pub fn crash(&self, seed: u64) -> SimStorage {
        let mut rng = SplitMix64::new(seed);
        self.crash_with(Some(&mut rng))
    }

    /// The crash state that keeps nothing unsynced: the durable view alone.
    pub fn crash_durable_only(&self) -> SimStorage {
        self.crash_with(None)
    }

    fn crash_with(&self, mut rng: Option<&mut SplitMix64>) -> SimStorage {
        let state = lock(&self.shared);
        let mut dirs = BTreeMap::new();
        let mut reachable = std::collections::BTreeSet::new();
        for (path, dir) in &state.dirs {
            reachable.extend(dir.durable.values().copied());
            dirs.insert(
                path.clone(),
                Dir {
                    live: dir.durable.clone(),
                    durable: dir.durable.clone(),
                },
            );
        }
        let mut inodes = BTreeMap::new();
        // BTreeSet order: the generator's choices follow inode numbers, not hashing.
        for id in reachable {
            let Some(inode) = state.inodes.get(&id) else {
                continue;
            };
            let data = crash_contents(inode, rng.as_deref_mut());
            inodes.insert(
                id,
                Inode {
                    live: data.clone(),
                    synced: data,
                    pending: Vec::new(),
                    stale_cache: false,
                },
            );
        }
        SimStorage::from_state(
            self.shared.config.clone(),
            FsState {
                dirs,
                inodes,
                next_inode: state.next_inode,
                ops: state.ops,
                snapshots: None,
                snapshots_dropped: 0,
                fault: None,
                fault_hits: 0,
            },
        )
    }

    /// unlink(2): removes the live name (durable after `sync_dir`).
    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        let (parent, name) = split(path)?;
        let mut state = lock(&self.shared);
        let dir = state
            .dirs
            .get_mut(&parent)
            .ok_or_else(|| errno(libc::ENOENT))?;
        dir.live.remove(&name).ok_or_else(|| errno(libc::ENOENT))?;
        state.after_op(&self.shared.config);
        Ok(())
    }

    /// Names of a directory that a crash now would keep (sorted; empty for a missing
    /// directory).
    pub fn durable_names(&self, dir: &Path) -> Vec<String> {
        let state = lock(&self.shared);
        state
            .dirs
            .get(&normalise(dir))
            .map(|dir| dir.durable.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How much the file system holds.
    pub fn usage(&self) -> SimUsage {
        let state = lock(&self.shared);
        SimUsage {
            files: state.inodes.len(),
            live_bytes: state.inodes.values().map(|i| i.live.len() as u64).sum(),
            pending_ops: state.inodes.values().map(|i| i.pending.len()).sum(),
        }
    }

    /// What the device holds of the file at `path` (after a failed sync, not the bytes only
    /// the page cache still has), refused when larger than `limit_bytes`.
    fn device_bytes(&self, path: &Path, limit_bytes: u64) -> io::Result<Pages> {
        let state = lock(&self.shared);
        let id = SimStorage::lookup(&state, path)?;
        let data = state
            .inodes
            .get(&id)
            .ok_or_else(|| errno(libc::ESTALE))?
            .device();
        if data.len() as u64 > limit_bytes {
            return Err(crate::storage::too_large(data.len() as u64, limit_bytes));
        }
        Ok(data)
    }

    fn lookup(state: &FsState, path: &Path) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        state
            .dirs
            .get(&parent)
            .and_then(|dir| dir.live.get(&name))
            .copied()
            .ok_or_else(|| errno(libc::ENOENT))
    }
}

/// An open file of a [`SimStorage`].
#[derive(Debug)]
struct SimFile {
    shared: Arc<Shared>,
    inode: u64,
    direct: bool,
    dsync: bool,
}

impl SimFile {
    /// Runs `op` on the file's inode; `changes`: the operation changes the file, so a
    /// recording file system snapshots the state after it.
    fn with_inode<T>(
        &self,
        changes: bool,
        op: impl FnOnce(&SimConfig, u64, &mut Inode) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = lock(&self.shared);
        let ops = state.ops;
        // An inode lives as long as the file system: unlinking only drops names.
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| errno(libc::ESTALE))?;
        let result = op(&self.shared.config, ops, inode)?;
        if changes {
            state.after_op(&self.shared.config);
        }
        Ok(result)
    }

    fn check_len(config: &SimConfig, len_bytes: u64) -> io::Result<()> {
        if len_bytes > config.max_file_bytes {
            Err(errno(libc::EFBIG))
        } else {
            Ok(())
        }
    }

    /// While writes are held back: one in four, chosen by the seed, waits a while first.
    fn maybe_hold_back(&self) {
        let seed = self.shared.hold_back_seed.load(Ordering::SeqCst);
        if seed == 0 {
            return;
        }
        let call = self.shared.hold_back_calls.fetch_add(1, Ordering::SeqCst);
        if SplitMix64::new(seed ^ call.wrapping_mul(0x9e37_79b9_7f4a_7c15)).below(4) != 0 {
            return;
        }
        // Long enough for another thread's group to be written, synced and acknowledged
        // meanwhile: the held write then lands after an acknowledgement that may need it.
        std::thread::sleep(HOLD_BACK);
    }

    fn write(&self, offset: u64, buf: &AlignedBuf, range: Range<usize>) -> io::Result<()> {
        let bytes = buf.get(range).ok_or_else(|| errno(libc::EINVAL))?;
        self.maybe_hold_back();
        let failing = injected(&self.shared, |armed| {
            fault::write_fails(armed, offset, bytes.len(), SECTOR_BYTES as u64)
        });
        if let Some(landed) = failing {
            self.land_pieces(offset, bytes, landed)?;
            return Err(errno(libc::EIO));
        }
        // The write is first in flight (may tear, even with O_DSYNC: a recording file system
        // snapshots this moment), then, with O_DSYNC, durable.
        let written = self.with_inode(true, |config, state_ops, inode| {
            if self.direct {
                // O_DIRECT refuses what the device cannot address (the buffer itself is
                // aligned by AlignedBuf).
                let align = config.alignment_bytes as u64;
                if !offset.is_multiple_of(align) || !(bytes.len() as u64).is_multiple_of(align) {
                    return Err(errno(libc::EINVAL));
                }
            }
            let end = offset
                .checked_add(bytes.len() as u64)
                .ok_or_else(|| errno(libc::EFBIG))?;
            Self::check_len(config, end)?;
            write_into(&mut inode.live, offset, bytes);
            // Numbered like the snapshot taken right after it (`after_op` counts it).
            let op = state_ops + 1;
            inode.push_pending(Pending::Write {
                offset,
                bytes: Arc::from(bytes),
                durable: false,
                op,
            });
            Ok(op)
        })?;
        if self.dsync
            && injected(&self.shared, |armed| fault::sync_fails(armed).then_some(())).is_some()
        {
            self.with_inode(true, |_, _, inode| {
                inode.fail_write_back();
                Ok(())
            })?;
            return Err(errno(libc::EIO));
        }
        if self.dsync {
            self.with_inode(false, |_, _, inode| {
                // A later write may have been queued meanwhile (several groups in flight):
                // find this one. A sync since then has made it durable already.
                for pending in inode.pending.iter_mut() {
                    if let Pending::Write { durable, op, .. } = pending {
                        if *op == written {
                            *durable = true;
                        }
                    }
                }
                inode.fold_durable_prefix();
                Ok(())
            })?;
        }
        Ok(())
    }
}

impl SimFile {
    /// The sectors of a failing write that land anyway: live, not durable.
    fn land_pieces(
        &self,
        offset: u64,
        bytes: &[u8],
        landed: Vec<(u64, Range<usize>)>,
    ) -> io::Result<()> {
        if landed.is_empty() {
            return Ok(());
        }
        self.with_inode(true, |config, state_ops, inode| {
            Self::check_len(config, offset + bytes.len() as u64)?;
            for (at, piece) in landed {
                let piece = &bytes[piece];
                write_into(&mut inode.live, at, piece);
                inode.push_pending(Pending::Write {
                    offset: at,
                    bytes: Arc::from(piece),
                    durable: false,
                    op: state_ops + 1,
                });
            }
            Ok(())
        })
    }
}

impl SegmentFile for SimFile {
    fn write_at(&self, offset: u64, buf: AlignedBuf, range: Range<usize>) -> WriteOutcome {
        let result = self.write(offset, &buf, range);
        (Some(buf), result)
    }

    fn sync_data(&self) -> io::Result<()> {
        let fails = injected(&self.shared, |armed| fault::sync_fails(armed).then_some(()));
        self.with_inode(true, |_, _, inode| {
            if fails.is_some() {
                inode.fail_write_back();
            } else {
                inode.sync();
            }
            Ok(())
        })?;
        match fails {
            Some(()) => Err(errno(libc::EIO)),
            None => Ok(()),
        }
    }

    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        self.with_inode(true, |config, _, inode| {
            Self::check_len(config, len_bytes)?;
            if (inode.live.len() as u64) < len_bytes {
                inode.live.resize(len_bytes as usize);
                inode.push_pending(Pending::Extend { len_bytes });
            }
            Ok(())
        })
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.with_inode(true, |config, _, inode| {
            Self::check_len(config, len_bytes)?;
            inode.live.resize(len_bytes as usize);
            inode.push_pending(Pending::SetLen { len_bytes });
            Ok(())
        })
    }

    fn len_bytes(&self) -> io::Result<u64> {
        self.with_inode(false, |_, _, inode| Ok(inode.live.len() as u64))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with_inode(false, |_, _, inode| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            Ok(inode.live.read(start, buf))
        })
    }

    fn direct_io(&self) -> bool {
        self.direct
    }
}

impl Storage for SimStorage {
    /// One simulated file system per process: no other writer to exclude.
    fn lock_dir(&self, _dir: &Path, _mode: LockMode) -> Result<DirLock, DirLockError> {
        Ok(DirLock::none())
    }

    /// Creates the directory and its ancestors; they are durable at once.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = normalise(dir);
        let mut state = lock(&self.shared);
        for ancestor in dir.ancestors() {
            state.dirs.entry(ancestor.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = normalise(dir);
        let state = lock(&self.shared);
        let Some(entries) = state.dirs.get(&dir) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = entries.live.keys().cloned().collect();
        names.extend(
            state
                .dirs
                .keys()
                .filter(|path| path.parent() == Some(dir.as_path()) && **path != dir)
                .filter_map(|path| path.file_name()?.to_str().map(str::to_string)),
        );
        Ok(names)
    }

    fn open(&self, path: &Path, flags: OpenFlags) -> io::Result<Box<dyn SegmentFile>> {
        let (parent, name) = split(path)?;
        let mut state = lock(&self.shared);
        let existing = state
            .dirs
            .get(&parent)
            .ok_or_else(|| errno(libc::ENOENT))?
            .live
            .get(&name)
            .copied();
        let inode = match existing {
            Some(inode) => inode,
            None if flags.create => {
                if state.inodes.len() >= self.shared.config.max_files {
                    return Err(errno(libc::ENOSPC));
                }
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::empty());
                if let Some(dir) = state.dirs.get_mut(&parent) {
                    dir.live.insert(name, id);
                }
                state.after_op(&self.shared.config);
                id
            }
            None => return Err(errno(libc::ENOENT)),
        };
        Ok(Box::new(SimFile {
            shared: Arc::clone(&self.shared),
            inode,
            direct: flags.direct && self.shared.config.direct_io,
            dsync: flags.dsync,
        }))
    }

    /// Reads the device, as the real storage does with O_DIRECT: after a failed sync, not the
    /// bytes only the page cache still holds.
    fn read_file(&self, path: &Path, limit_bytes: u64) -> io::Result<Vec<u8>> {
        Ok(self.device_bytes(path, limit_bytes)?.to_vec())
    }

    /// Reads the device, like [`Storage::read_file`]; they share the file's current bytes (a
    /// copy on write of the live view, unless a failed sync made the two differ): nothing is
    /// copied whole.
    fn open_read(
        &self,
        path: &Path,
        limit_bytes: u64,
    ) -> io::Result<Box<dyn crate::storage::ReadFile>> {
        let data = self.device_bytes(path, limit_bytes)?;
        Ok(Box::new(PagesFile { data }))
    }

    /// Replaces the destination's live name; durable only after `sync_dir` (of both
    /// directories when they differ).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        let mut state = lock(&self.shared);
        if !state.dirs.contains_key(&to_dir) {
            return Err(errno(libc::ENOENT));
        }
        let id = state
            .dirs
            .get_mut(&from_dir)
            .and_then(|dir| dir.live.remove(&from_name))
            .ok_or_else(|| errno(libc::ENOENT))?;
        if let Some(dir) = state.dirs.get_mut(&to_dir) {
            dir.live.insert(to_name, id);
        }
        state.after_op(&self.shared.config);
        Ok(())
    }

    /// Makes the directory's current entries durable (none when an injected fault fails it).
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if injected(&self.shared, |armed| fault::sync_fails(armed).then_some(())).is_some() {
            return Err(errno(libc::EIO));
        }
        let mut state = lock(&self.shared);
        let entries = state
            .dirs
            .get_mut(&normalise(dir))
            .ok_or_else(|| errno(libc::ENOENT))?;
        entries.durable = entries.live.clone();
        state.after_op(&self.shared.config);
        Ok(())
    }

    fn alignment_bytes(&self, _dir: &Path) -> (usize, String) {
        (
            self.shared.config.alignment_bytes,
            "simulated device".to_string(),
        )
    }

    fn fs_block_bytes(&self, _dir: &Path) -> usize {
        self.shared.config.fs_block_bytes
    }

    /// Writes complete synchronously in the caller's thread.
    fn io_path(&self) -> IoPath {
        IoPath::Pwritev2
    }
}

/// A file of a [`SimStorage`] opened for reading: its pages as they were when opened.
#[derive(Debug)]
struct PagesFile {
    data: Pages,
}

impl crate::storage::ReadFile for PagesFile {
    fn len_bytes(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        Ok(self
            .data
            .read(usize::try_from(offset).unwrap_or(usize::MAX), buf))
    }

    fn zeros_until(&self, offset: u64) -> u64 {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        self.data.zeros_until(offset) as u64
    }
}
