//! A crash state as the timeline shows it (which writes it keeps, drops or tears, where it is
//! cut) and a violation's finding in words, worked out from the log and the state id.

use std::collections::BTreeMap;

use powercut_oracles::blocklog::BlockLog;
use powercut_oracles::crash::{self, StateId};

use super::model::{Item, Kind, Timeline};

/// What a crash state did with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Applied whole (durable prefix, FUA, or a volatile write the state keeps).
    Kept,
    /// A volatile write the state leaves out.
    Dropped,
    /// A volatile write applied in part.
    Torn { kept_sectors: u64 },
    /// Past the cut: never reached the device.
    AfterCut,
}

impl Fate {
    pub fn class(self) -> &'static str {
        match self {
            Fate::Kept => "kept",
            Fate::Dropped => "dropped",
            Fate::Torn { .. } => "torn",
            Fate::AfterCut => "after",
        }
    }
}

/// A resolved crash state.
#[derive(Debug)]
pub struct StateView {
    pub kind: &'static str,
    pub cut: u64,
    /// Entries before this are applied whole.
    pub prefix_len: u64,
    /// The fate of every write and discard from `prefix_len` on.
    pub fates: BTreeMap<u64, Fate>,
}

impl StateView {
    /// Resolves `id` against `log`; the error says why it cannot be drawn.
    pub fn resolve(log: &BlockLog, id: &str) -> Result<StateView, String> {
        let parsed: StateId = id
            .parse()
            .map_err(|e| format!("{id} is not a crash state id of a log ({e})"))?;
        let state = crash::resolve(log, &parsed).map_err(|e| e.to_string())?;
        let mut fates = BTreeMap::new();
        for e in &log.entries()[state.prefix_len as usize..] {
            if e.modifies_device() {
                let fate = if e.index >= parsed.cut {
                    Fate::AfterCut
                } else {
                    Fate::Dropped
                };
                fates.insert(e.index, fate);
            }
        }
        for applied in &state.applied {
            let fate = match &applied.mask {
                None => Fate::Kept,
                Some(mask) => Fate::Torn {
                    kept_sectors: mask.iter().filter(|k| **k).count() as u64,
                },
            };
            fates.insert(applied.index, fate);
        }
        Ok(StateView {
            kind: parsed.kind().as_str(),
            cut: parsed.cut,
            prefix_len: state.prefix_len,
            fates,
        })
    }

    /// The fate of entry `index` (entries of the durable prefix are kept).
    pub fn fate(&self, index: u64) -> Fate {
        match self.fates.get(&index) {
            Some(f) => *f,
            None if index >= self.cut => Fate::AfterCut,
            None => Fate::Kept,
        }
    }

    /// The state in one sentence: cut, durable prefix, what the volatile writes became.
    pub fn describe(&self) -> String {
        let volatile: Vec<Fate> = self
            .fates
            .iter()
            .filter(|(i, _)| **i < self.cut)
            .map(|(_, f)| *f)
            .collect();
        let dropped = volatile.iter().filter(|f| **f == Fate::Dropped).count();
        let torn = volatile
            .iter()
            .filter(|f| matches!(f, Fate::Torn { .. }))
            .count();
        format!(
            "{} state: entries 0 to {} completed before the power cut (cut {}); entries before \
             {} are durable (the last FLUSH); of the {} writes after it, {} kept, {} dropped, \
             {} torn",
            self.kind,
            self.cut.saturating_sub(1),
            self.cut,
            self.prefix_len,
            volatile.len(),
            volatile.len() - dropped - torn,
            dropped,
            torn
        )
    }
}

/// Sentences naming each acknowledged record this state loses and why: its ack mark, its
/// writes and their fate. Empty when no acknowledged record's writes are all missing.
pub fn lost_records(timeline: &Timeline, state: &StateView, limit: usize) -> Vec<String> {
    let mut carriers: BTreeMap<u64, Vec<&Item>> = BTreeMap::new();
    for item in timeline.items.iter().filter(|i| i.kind == Kind::Write) {
        if let Some(r) = item.records {
            for lsn in r.first_lsn..=r.last_lsn.min(r.first_lsn + 4096) {
                carriers.entry(lsn).or_default().push(item);
            }
        }
    }
    let mut out = Vec::new();
    for (lsn, writes) in &carriers {
        let Some(mark) = timeline.ack_of_lsn(*lsn) else {
            continue;
        };
        if mark.index >= state.cut || writes.iter().any(|w| state.fate(w.index) == Fate::Kept) {
            continue;
        }
        out.push(lost_sentence(*lsn, mark, writes, state));
        if out.len() == limit {
            break;
        }
    }
    out
}

fn lost_sentence(lsn: u64, mark: &Item, writes: &[&Item], state: &StateView) -> String {
    let fate_words = |w: &Item| match state.fate(w.index) {
        Fate::Dropped => "was dropped in this state".to_string(),
        Fate::Torn { kept_sectors } => format!(
            "was torn in this state ({kept_sectors} of {} sectors written)",
            w.nr_sectors
        ),
        Fate::AfterCut => format!("comes after the cut (cut {})", state.cut),
        Fate::Kept => "was kept".to_string(),
    };
    let head = format!(
        "LSN {lsn}, acknowledged at mark {} (entry {}), is missing",
        mark.label.as_deref().unwrap_or("?"),
        mark.index
    );
    if let [w] = writes {
        return format!(
            "{head}: its write (entry {}, {}) {}",
            w.index,
            w.sectors(),
            fate_words(w)
        );
    }
    let each: Vec<String> = writes
        .iter()
        .map(|w| format!("entry {} ({}) {}", w.index, w.sectors(), fate_words(w)))
        .collect();
    format!("{head}: of its writes, {}", each.join("; "))
}
