//! The device model and crash-state enumeration (docs/design.md section 4).
//!
//! A crash state is named by a cut `c` (entries `[0, c)` completed before the power cut). Let `f`
//! be the last FLUSH entry before the cut (none: `f = 0`). Then the state is:
//! - every entry of `[0, f)` applied whole (flushed: durable);
//! - every FUA write of `[f, c)` applied whole (durable at completion);
//! - a chosen subset of the other writes and discards of `[f, c)` (the volatile cache; the data
//!   of the flush entry `f` itself is volatile unless FUA), one of them possibly torn;
//! - the acks expected are the MARKs of `[0, c)`.
//!
//! State ids are printable and parse back (grammar in docs/block-log-format.md):
//! `HASH-cCUT-BODY[tENTRY.MASKSEED]` with BODY `p` (all volatile writes applied), `s` + a list of
//! entry indexes and ranges (exactly those), or `r` + hex seed (a seeded random subset).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::str::FromStr;

use powercut_writer::sim::SplitMix64;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::blocklog::BlockLog;

/// Which volatile writes of the cut's epoch a state applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subset {
    /// Every volatile write (the plain prefix: what replay-log gives).
    All,
    /// Exactly these entry indexes (sorted, each a volatile write of the cut).
    List(Vec<u64>),
    /// A random subset drawn from this seed (each write kept with probability 1/2).
    Sampled(u64),
}

/// One volatile write applied torn: the units kept are drawn from `mask_seed`. A unit is
/// `unit_sectors` log sectors: the device's atomic write size (a tear never splits a unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tear {
    /// Index of the torn entry.
    pub entry: u64,
    /// Sectors of one atomic unit.
    pub unit_sectors: u64,
    /// Seed of the mask of units kept.
    pub mask_seed: u64,
}

/// Largest atomic unit accepted in ids (1 MiB of 512-byte sectors).
pub const MAX_TEAR_UNIT_SECTORS: u64 = 2048;

impl Tear {
    /// Units of a write of `nr_sectors` sectors (the last one may be short).
    pub fn units(unit_sectors: u64, nr_sectors: u64) -> u64 {
        nr_sectors.div_ceil(unit_sectors.max(1))
    }
}

/// Printable, parseable name of a crash state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateId {
    /// Hash of the log the state belongs to.
    pub log_hash: u32,
    /// Entries `[0, cut)` completed before the power cut.
    pub cut: u64,
    /// Which volatile writes of the cut's epoch are applied.
    pub subset: Subset,
    /// The write applied torn, if one.
    pub tear: Option<Tear>,
}

/// Kinds counted in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// Every volatile write of the cut applied.
    Prefix,
    /// An explicit list of volatile writes applied.
    Subset,
    /// A seeded random subset of the volatile writes applied.
    Sampled,
    /// One write applied torn.
    Torn,
}

impl StateKind {
    /// The kind's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Prefix => "prefix",
            StateKind::Subset => "subset",
            StateKind::Sampled => "sampled",
            StateKind::Torn => "torn",
        }
    }
}

impl StateId {
    /// The kind of state this id names.
    pub fn kind(&self) -> StateKind {
        match (&self.tear, &self.subset) {
            (Some(_), _) => StateKind::Torn,
            (None, Subset::All) => StateKind::Prefix,
            (None, Subset::List(_)) => StateKind::Subset,
            (None, Subset::Sampled(_)) => StateKind::Sampled,
        }
    }

    /// Shard of this state among `n` (stable: crc32c of the printed id).
    pub fn shard(&self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        crc32c::crc32c(self.to_string().as_bytes()) % n
    }
}

impl fmt::Display for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-c{}-", self.log_hash, self.cut)?;
        match &self.subset {
            Subset::All => f.write_str("p")?,
            Subset::Sampled(seed) => write!(f, "r{seed:x}")?,
            Subset::List(list) => {
                f.write_str("s")?;
                let mut i = 0;
                let mut first = true;
                while i < list.len() {
                    let mut j = i;
                    while j + 1 < list.len() && list[j + 1] == list[j] + 1 {
                        j += 1;
                    }
                    if !first {
                        f.write_str(",")?;
                    }
                    first = false;
                    if j > i {
                        write!(f, "{}-{}", list[i], list[j])?;
                    } else {
                        write!(f, "{}", list[i])?;
                    }
                    i = j + 1;
                }
            }
        }
        if let Some(t) = &self.tear {
            if t.unit_sectors == 1 {
                write!(f, "t{}.{:x}", t.entry, t.mask_seed)?;
            } else {
                write!(f, "t{}u{}.{:x}", t.entry, t.unit_sectors, t.mask_seed)?;
            }
        }
        Ok(())
    }
}

/// A string that is not a state id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad state id {id:?}: {reason}")]
pub struct StateIdError {
    /// The text given.
    pub id: String,
    /// Why it is not a state id.
    pub reason: &'static str,
}

/// Longest id accepted (bounds the list parser).
pub const MAX_STATE_ID_BYTES: usize = 4096;

impl FromStr for StateId {
    type Err = StateIdError;
    fn from_str(s: &str) -> Result<StateId, StateIdError> {
        let err = |reason| StateIdError {
            id: s.chars().take(100).collect(),
            reason,
        };
        if s.len() > MAX_STATE_ID_BYTES {
            return Err(err("too long"));
        }
        let (hash, rest) = s
            .split_once("-c")
            .ok_or_else(|| err("no -c after the log hash"))?;
        if hash.len() != 8 {
            return Err(err("log hash is not 8 hex digits"));
        }
        let log_hash = u32::from_str_radix(hash, 16).map_err(|_| err("log hash is not hex"))?;
        let (cut, body) = rest
            .split_once('-')
            .ok_or_else(|| err("no - after the cut"))?;
        let cut: u64 = cut.parse().map_err(|_| err("cut is not a number"))?;
        let (body, tear) = match body.split_once('t') {
            Some((b, t)) => (b, Some(parse_tear(t).map_err(err)?)),
            None => (body, None),
        };
        let subset = parse_subset(body).map_err(err)?;
        Ok(StateId {
            log_hash,
            cut,
            subset,
            tear,
        })
    }
}

/// The tear of a state id, after its `t`: `ENTRY[uUNIT].MASKSEED`.
fn parse_tear(t: &str) -> Result<Tear, &'static str> {
    let (e, m) = t.split_once('.').ok_or("tear without '.'")?;
    let (e, unit) = match e.split_once('u') {
        Some((e, u)) => (e, u),
        None => (e, "1"),
    };
    let entry = e.parse().map_err(|_| "tear entry is not a number")?;
    let unit_sectors: u64 = unit.parse().map_err(|_| "tear unit is not a number")?;
    if unit_sectors == 0 || unit_sectors > MAX_TEAR_UNIT_SECTORS {
        return Err("tear unit out of range");
    }
    let mask_seed = u64::from_str_radix(m, 16).map_err(|_| "tear seed is not hex")?;
    Ok(Tear {
        entry,
        unit_sectors,
        mask_seed,
    })
}

/// The subset of a state id: `p`, `rSEED` or `sLIST` (`a,b-c,...`, strictly increasing).
fn parse_subset(body: &str) -> Result<Subset, &'static str> {
    if body == "p" {
        return Ok(Subset::All);
    }
    if let Some(seed) = body.strip_prefix('r') {
        let seed = u64::from_str_radix(seed, 16).map_err(|_| "sample seed is not hex")?;
        return Ok(Subset::Sampled(seed));
    }
    let Some(list) = body.strip_prefix('s') else {
        return Err("body is not p, s.. or r..");
    };
    let mut out: Vec<u64> = Vec::new();
    if !list.is_empty() {
        for part in list.split(',') {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let a: u64 = a.parse().map_err(|_| "list item is not a number")?;
            let b: u64 = b.parse().map_err(|_| "list item is not a number")?;
            if b < a || b - a > MAX_STATE_ID_BYTES as u64 * 4 {
                return Err("bad range in list");
            }
            if out.last().is_some_and(|&l| l >= a) {
                return Err("list not strictly increasing");
            }
            out.extend(a..=b);
        }
    }
    Ok(Subset::List(out))
}

impl serde::Serialize for StateId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A state id that does not fit the log it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The state id belongs to another log.
    #[error("state {id} belongs to log {id_hash:08x}, this log is {log_hash:08x}")]
    WrongLog {
        /// The state id.
        id: String,
        /// Log hash in the id.
        id_hash: u32,
        /// Hash of the log given.
        log_hash: u32,
    },
    /// The cut is past the end of the log.
    #[error("state {id}: cut {cut} is past the end of the log ({entries} entries)")]
    CutPastEnd {
        /// The state id.
        id: String,
        /// The cut in the id.
        cut: u64,
        /// Entries in the log.
        entries: u64,
    },
    /// The id names an entry that is not a volatile write of the cut.
    #[error("state {id}: entry {entry} is not a volatile write of this cut")]
    NotVolatile {
        /// The state id.
        id: String,
        /// The entry named.
        entry: u64,
    },
    /// The id tears an entry shorter than two sectors.
    #[error("state {id}: entry {entry} cannot be torn (fewer than 2 sectors)")]
    NotTearable {
        /// The state id.
        id: String,
        /// The entry named.
        entry: u64,
    },
}

/// One entry applied on top of the durable prefix; `mask` is per sectorsize unit when torn.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppliedEntry {
    /// Index of the entry in the log.
    pub index: u64,
    /// Units kept (true) per sectorsize unit, when torn.
    pub mask: Option<Vec<bool>>,
}

/// A resolved crash state: how to build its image.
#[derive(Debug, Clone)]
pub struct CrashState {
    /// The state's id.
    pub id: StateId,
    /// Entries `[0, prefix_len)` applied whole.
    pub prefix_len: u64,
    /// Then these, in log order (FUA writes and the chosen volatile writes of `[prefix_len, cut)`).
    pub applied: Vec<AppliedEntry>,
    /// Some volatile write was dropped or torn (so recovery may see a torn tail).
    pub lossy: bool,
    /// Hash of the facts that determine the image, in a canonical form (the first device-changing
    /// entry not applied whole, then every applied entry after it with its mask): two states with
    /// the same key have the same image, whatever their cut (they differ in the acks expected).
    pub image_key: u64,
}

/// The last FLUSH index before `cut`, or 0.
pub fn durable_prefix_len(log: &BlockLog, cut: u64) -> u64 {
    let entries = log.entries();
    let end = (cut as usize).min(entries.len());
    entries[..end]
        .iter()
        .rev()
        .find(|e| e.is_flush())
        .map_or(0, |e| e.index)
}

/// Non-FUA writes and discards of `[durable_prefix_len(cut), cut)`.
pub fn volatile_writes(log: &BlockLog, cut: u64) -> Vec<u64> {
    let p = durable_prefix_len(log, cut) as usize;
    let end = (cut as usize).min(log.entries().len());
    log.entries()[p..end]
        .iter()
        .filter(|e| e.modifies_device() && !e.is_fua())
        .map(|e| e.index)
        .collect()
}

/// The first value of the engine's seeded stream for `z`: mixes the seeds of samples and tears.
fn splitmix(z: u64) -> u64 {
    SplitMix64::new(z).next_u64()
}

/// The units kept by a tear of `units` (>= 2) sectors: never all, never none. A third of the
/// seeds keep a prefix (the common torn write), a third a suffix, a third random sectors.
pub fn tear_mask(mask_seed: u64, units: u64) -> Vec<bool> {
    let u = units as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(mask_seed ^ units));
    let mut mask = vec![false; u];
    if u < 2 {
        return vec![true; u];
    }
    match rng.random_range(0..3u32) {
        0 => {
            let k = rng.random_range(1..u);
            mask[..k].fill(true);
        }
        1 => {
            let k = rng.random_range(1..u);
            mask[u - k..].fill(true);
        }
        _ => {
            for m in mask.iter_mut() {
                *m = rng.random::<bool>();
            }
            if mask.iter().all(|&m| m) {
                let i = rng.random_range(0..u);
                mask[i] = false;
            } else if mask.iter().all(|&m| !m) {
                let i = rng.random_range(0..u);
                mask[i] = true;
            }
        }
    }
    mask
}

fn sampled_subset(seed: u64, volatile: &[u64]) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(seed));
    volatile
        .iter()
        .copied()
        .filter(|_| rng.random::<bool>())
        .collect()
}

/// Builds the recipe of a state from its id.
pub fn resolve(log: &BlockLog, id: &StateId) -> Result<CrashState, ResolveError> {
    let ids = || id.to_string();
    if id.log_hash != log.hash() {
        return Err(ResolveError::WrongLog {
            id: ids(),
            id_hash: id.log_hash,
            log_hash: log.hash(),
        });
    }
    let n = log.entries().len() as u64;
    if id.cut > n {
        return Err(ResolveError::CutPastEnd {
            id: ids(),
            cut: id.cut,
            entries: n,
        });
    }
    let prefix_len = durable_prefix_len(log, id.cut);
    let volatile = volatile_writes(log, id.cut);
    let chosen = chosen_writes(id, &volatile)?;
    let torn = torn_write(log, id, &volatile)?;
    let mut applied = Vec::new();
    let mut lossy = chosen.len() < volatile.len();
    for e in &log.entries()[prefix_len as usize..id.cut as usize] {
        if !e.modifies_device() {
            continue;
        }
        if let Some((ti, mask)) = &torn {
            if *ti == e.index {
                applied.push(AppliedEntry {
                    index: e.index,
                    mask: Some(mask.clone()),
                });
                lossy = true;
                continue;
            }
        }
        if e.is_fua() || chosen.binary_search(&e.index).is_ok() {
            applied.push(AppliedEntry {
                index: e.index,
                mask: None,
            });
        }
    }
    let image_key = canonical_key(log, prefix_len, id.cut, &applied);
    Ok(CrashState {
        id: id.clone(),
        prefix_len,
        applied,
        lossy,
        image_key,
    })
}

/// The volatile writes of the cut that `id`'s subset applies.
fn chosen_writes(id: &StateId, volatile: &[u64]) -> Result<Vec<u64>, ResolveError> {
    Ok(match &id.subset {
        Subset::All => volatile.to_vec(),
        Subset::List(list) => {
            for &e in list {
                if volatile.binary_search(&e).is_err() {
                    return Err(ResolveError::NotVolatile {
                        id: id.to_string(),
                        entry: e,
                    });
                }
            }
            list.clone()
        }
        Subset::Sampled(seed) => sampled_subset(*seed, volatile),
    })
}

/// The write `id` tears and the sectors of it that reach the device.
fn torn_write(
    log: &BlockLog,
    id: &StateId,
    volatile: &[u64],
) -> Result<Option<(u64, Vec<bool>)>, ResolveError> {
    let Some(t) = &id.tear else {
        return Ok(None);
    };
    if volatile.binary_search(&t.entry).is_err() {
        return Err(ResolveError::NotVolatile {
            id: id.to_string(),
            entry: t.entry,
        });
    }
    let e = &log.entries()[t.entry as usize];
    let units = Tear::units(t.unit_sectors, e.nr_sectors);
    if units < 2 {
        return Err(ResolveError::NotTearable {
            id: id.to_string(),
            entry: t.entry,
        });
    }
    let unit_mask = tear_mask(t.mask_seed, units);
    let sector_mask = (0..e.nr_sectors)
        .map(|i| unit_mask[(i / t.unit_sectors) as usize])
        .collect();
    Ok(Some((t.entry, sector_mask)))
}

fn canonical_key(log: &BlockLog, prefix_len: u64, cut: u64, applied: &[AppliedEntry]) -> u64 {
    let entries = log.entries();
    let mut it = applied.iter().peekable();
    let mut first_gap = None;
    for e in &entries[prefix_len as usize..cut as usize] {
        if !e.modifies_device() {
            continue;
        }
        match it.peek() {
            Some(a) if a.index == e.index && a.mask.is_none() => {
                it.next();
            }
            _ => {
                first_gap = Some(e.index);
                break;
            }
        }
    }
    let first_gap = first_gap.unwrap_or_else(|| {
        entries[cut as usize..]
            .iter()
            .find(|e| e.modifies_device())
            .map_or(entries.len() as u64, |e| e.index)
    });
    let mut h = DefaultHasher::new();
    first_gap.hash(&mut h);
    for a in applied.iter().filter(|a| a.index >= first_gap) {
        a.hash(&mut h);
    }
    h.finish()
}

/// Knobs of the enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnumConfig {
    /// Epoch cuts with at most this many volatile writes get every subset.
    pub max_exhaustive_subset: usize,
    /// Else this many seeded random subsets per cut.
    pub samples_per_epoch: usize,
    /// Seeded torn variants per cut that has a multi-sector volatile write.
    pub torn_samples: usize,
    /// Seed of the sampled subsets and tears.
    pub seed: u64,
    /// The device's atomic write size in bytes: tears split writes only at multiples of it.
    /// 4096 by default (the file systems' block size): tearing inside one file-system block
    /// breaks metadata checksums of the file system itself, which is not the engine's bug.
    pub atomic_write_bytes: u64,
}

impl EnumConfig {
    /// The atomic unit in sectors of `log`.
    pub fn tear_unit_sectors(&self, log: &BlockLog) -> u64 {
        (self.atomic_write_bytes / u64::from(log.sectorsize())).clamp(1, MAX_TEAR_UNIT_SECTORS)
    }
}

impl Default for EnumConfig {
    fn default() -> Self {
        EnumConfig {
            max_exhaustive_subset: 6,
            samples_per_epoch: 16,
            torn_samples: 4,
            atomic_write_bytes: 4096,
            seed: 0,
        }
    }
}

/// The states of a log, deduplicated, in replay order.
#[derive(Debug, Clone)]
pub struct Enumeration {
    /// Sorted by (durable prefix, cut): a replayer walks them forward.
    pub states: Vec<CrashState>,
    /// Candidates dropped because an equal image was already listed.
    pub duplicates: u64,
}

/// The cut points: after every FUA, MARK and FLUSH entry, just before every FLUSH (the full
/// epoch, unflushed), and the end of the log.
pub fn cut_points(log: &BlockLog) -> Vec<u64> {
    let mut cuts = BTreeSet::new();
    for e in log.entries() {
        if e.is_fua() || e.is_mark() || e.is_flush() {
            cuts.insert(e.index + 1);
        }
        if e.is_flush() && e.index > 0 {
            cuts.insert(e.index);
        }
    }
    let n = log.entries().len() as u64;
    if n > 0 {
        cuts.insert(n);
    }
    cuts.into_iter().collect()
}

/// Every crash state the model allows, within the budget of `cfg`.
pub fn enumerate(log: &BlockLog, cfg: &EnumConfig) -> Enumeration {
    let mut ids: Vec<StateId> = Vec::new();
    for cut in cut_points(log) {
        cut_ids(log, cfg, cut, &mut ids);
    }
    let mut states: Vec<CrashState> = Vec::with_capacity(ids.len());
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut duplicates = 0;
    for id in ids {
        // Ids come from this log's own volatile sets, so resolving cannot fail.
        let Ok(state) = resolve(log, &id) else {
            continue;
        };
        match seen.get(&state.image_key) {
            Some(&i) => {
                duplicates += 1;
                // Same image: keep the later cut, which expects more acks.
                if state.id.cut > states[i].id.cut {
                    states[i] = state;
                }
            }
            None => {
                seen.insert(state.image_key, states.len());
                states.push(state);
            }
        }
    }
    states.sort_by_key(|s| (s.prefix_len, s.id.cut));
    Enumeration { states, duplicates }
}

/// The candidate ids of one cut: the plain prefix, every subset of a small epoch or seeded
/// samples of a large one, and seeded tears.
fn cut_ids(log: &BlockLog, cfg: &EnumConfig, cut: u64, ids: &mut Vec<StateId>) {
    let unit_sectors = cfg.tear_unit_sectors(log);
    let volatile = volatile_writes(log, cut);
    let mk = |subset, tear| StateId {
        log_hash: log.hash(),
        cut,
        subset,
        tear,
    };
    ids.push(mk(Subset::All, None));
    if volatile.len() <= cfg.max_exhaustive_subset {
        let full = (1u64 << volatile.len()) - 1;
        for bits in 0..full {
            let list: Vec<u64> = volatile
                .iter()
                .enumerate()
                .filter(|(i, _)| bits >> i & 1 == 1)
                .map(|(_, &e)| e)
                .collect();
            ids.push(mk(Subset::List(list), None));
        }
    } else {
        for j in 0..cfg.samples_per_epoch as u64 {
            ids.push(mk(
                Subset::Sampled(splitmix(cfg.seed ^ splitmix(cut) ^ j)),
                None,
            ));
        }
    }
    let tearable: Vec<u64> = volatile
        .iter()
        .copied()
        .filter(|&e| Tear::units(unit_sectors, log.entries()[e as usize].nr_sectors) >= 2)
        .collect();
    if tearable.is_empty() {
        return;
    }
    for j in 0..cfg.torn_samples as u64 {
        let s = splitmix(cfg.seed ^ splitmix(cut ^ 0x7465_6172) ^ j);
        let entry = tearable[(s % tearable.len() as u64) as usize];
        let subset_seed = splitmix(s ^ 1);
        ids.push(mk(
            Subset::Sampled(subset_seed),
            Some(Tear {
                entry,
                unit_sectors,
                mask_seed: splitmix(s ^ 2),
            }),
        ));
    }
}

/// Keeps the states of shard `k` of `n` (0-based; ids hashed, so every shard gets a fair share
/// and the shards partition the set).
pub fn shard(states: Vec<CrashState>, k: u32, n: u32) -> Vec<CrashState> {
    states.into_iter().filter(|s| s.id.shard(n) == k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklog::{LogWriter, FLAG_FUA};
    use proptest::prelude::*;

    fn log_of(dir: &std::path::Path, f: impl FnOnce(&mut LogWriter)) -> BlockLog {
        let p = dir.join("log");
        let mut w = LogWriter::create(&p, 512).unwrap();
        f(&mut w);
        w.finish(None, 0).unwrap();
        BlockLog::open(&p).unwrap()
    }

    #[test]
    fn counts_follow_the_model() {
        let dir = tempfile::tempdir().unwrap();
        // e0 w, e1 w, e2 FLUSH, e3 MARK, e4 w, e5 FUA w, e6 w(2 sectors)
        let log = log_of(dir.path(), |w| {
            w.write(0, &[1; 512], 0).unwrap();
            w.write(1, &[2; 512], 0).unwrap();
            w.flush().unwrap();
            w.mark("s:x").unwrap();
            w.write(2, &[3; 512], 0).unwrap();
            w.write(3, &[4; 512], FLAG_FUA).unwrap();
            w.write(4, &[5; 1024], 0).unwrap();
        });
        assert_eq!(cut_points(&log), vec![2, 3, 4, 6, 7]);
        assert_eq!(volatile_writes(&log, 2), vec![0, 1]);
        assert_eq!(volatile_writes(&log, 3), Vec::<u64>::new());
        assert_eq!(volatile_writes(&log, 7), vec![4, 6]);
        let cfg = EnumConfig {
            torn_samples: 0,
            ..EnumConfig::default()
        };
        let en = enumerate(&log, &cfg);
        // cut 2: 4 subsets of {0,1}; cut 3 and 4: the durable image {0,1} = cut 2's full
        // subset (dup); cut 6: {5 FUA} + subsets of {4}: 2; cut 7: {5} + subsets of {4,6}: 4, two of
        // which equal cut 6's. Unique: 4 + 2 + 2 = 8.
        assert_eq!(en.states.len(), 8);
        let keys: BTreeSet<u64> = en.states.iter().map(|s| s.image_key).collect();
        assert_eq!(keys.len(), 8);
        // The full-prefix image of cut 2 was replaced by the later cut 4 (more acks).
        let prefix_full = en
            .states
            .iter()
            .find(|s| s.prefix_len == 2 && s.applied.is_empty())
            .unwrap();
        assert_eq!(prefix_full.id.cut, 4);
        assert_eq!(en.duplicates, 4);
        // With tears: cut 7 has a 2-sector volatile write.
        let en2 = enumerate(
            &log,
            &EnumConfig {
                torn_samples: 3,
                atomic_write_bytes: 512,
                ..EnumConfig::default()
            },
        );
        assert!(en2.states.iter().any(|s| s.id.kind() == StateKind::Torn));
        for s in &en2.states {
            if let Some(t) = s.id.tear {
                let a = s.applied.iter().find(|a| a.index == t.entry).unwrap();
                let m = a.mask.as_ref().unwrap();
                assert!(m.iter().any(|&b| b) && !m.iter().all(|&b| b));
                assert!(s.lossy);
            }
        }
    }

    #[test]
    fn big_epochs_are_sampled_and_ids_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), |w| {
            for i in 0..20 {
                w.write(i, &[i as u8; 1024], 0).unwrap();
            }
            w.flush().unwrap();
        });
        let cfg = EnumConfig {
            max_exhaustive_subset: 4,
            samples_per_epoch: 5,
            torn_samples: 2,
            seed: 9,
            atomic_write_bytes: 512,
        };
        let en = enumerate(&log, &cfg);
        assert!(en.states.len() <= 1 + 5 + 2 + 1 + 1);
        assert!(en.states.iter().any(|s| s.id.kind() == StateKind::Sampled));
        for s in &en.states {
            let again = resolve(&log, &s.id.to_string().parse().unwrap()).unwrap();
            assert_eq!(again.applied, s.applied);
        }
        let wrong = StateId {
            log_hash: log.hash() ^ 1,
            cut: 1,
            subset: Subset::All,
            tear: None,
        };
        assert!(matches!(
            resolve(&log, &wrong),
            Err(ResolveError::WrongLog { .. })
        ));
        let bad = StateId {
            log_hash: log.hash(),
            cut: 21,
            subset: Subset::List(vec![3]),
            tear: None,
        };
        assert!(matches!(
            resolve(&log, &bad),
            Err(ResolveError::NotVolatile { .. })
        ));
        let past = StateId {
            log_hash: log.hash(),
            cut: 22,
            subset: Subset::All,
            tear: None,
        };
        assert!(matches!(
            resolve(&log, &past),
            Err(ResolveError::CutPastEnd { .. })
        ));
        let bad = StateId {
            log_hash: log.hash(),
            cut: 2,
            subset: Subset::List(vec![5]),
            tear: None,
        };
        assert!(matches!(
            resolve(&log, &bad),
            Err(ResolveError::NotVolatile { .. })
        ));
    }

    #[test]
    fn shards_partition_the_states() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), |w| {
            for i in 0..30u64 {
                w.write(i, &[i as u8; 1536], 0).unwrap();
                if i % 4 == 3 {
                    w.flush().unwrap();
                    w.mark("s:m").unwrap();
                }
            }
        });
        let all = enumerate(&log, &EnumConfig::default()).states;
        let mut union: Vec<String> = Vec::new();
        for k in 0..3 {
            let part = shard(all.clone(), k, 3);
            union.extend(part.iter().map(|s| s.id.to_string()));
        }
        let mut expected: Vec<String> = all.iter().map(|s| s.id.to_string()).collect();
        union.sort();
        expected.sort();
        assert_eq!(union, expected);
        assert!(all.len() > 20);
    }

    #[test]
    fn bad_ids_are_errors() {
        for bad in [
            "",
            "zz",
            "1234567-c1-p",
            "12345678-c-p",
            "12345678-c1-q",
            "12345678-c1-s3,2",
            "12345678-c1-s5-2",
            "12345678-c1-pt3",
            "12345678-c1-rzz",
        ] {
            assert!(bad.parse::<StateId>().is_err(), "{bad}");
        }
    }

    fn any_id() -> impl Strategy<Value = StateId> {
        let subset = prop_oneof![
            Just(Subset::All),
            any::<u64>().prop_map(Subset::Sampled),
            proptest::collection::btree_set(0u64..200, 0..12)
                .prop_map(|s| Subset::List(s.into_iter().collect())),
        ];
        let tear = proptest::option::of(
            (any::<u64>(), 1..=MAX_TEAR_UNIT_SECTORS, any::<u64>()).prop_map(
                |(entry, unit_sectors, mask_seed)| Tear {
                    entry,
                    unit_sectors,
                    mask_seed,
                },
            ),
        );
        (any::<u32>(), any::<u64>(), subset, tear).prop_map(|(log_hash, cut, subset, tear)| {
            StateId {
                log_hash,
                cut,
                subset,
                tear,
            }
        })
    }

    proptest! {
        #[test]
        fn ids_round_trip(id in any_id()) {
            let s = id.to_string();
            prop_assert!(!s.contains(' '));
            prop_assert_eq!(s.parse::<StateId>().unwrap(), id);
        }

        #[test]
        fn id_parser_never_panics(s in "[0-9a-fcprst.,-]{0,60}") {
            let _ = s.parse::<StateId>();
        }
    }
}
