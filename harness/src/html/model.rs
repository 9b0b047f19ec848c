//! The block log as the timeline draws it: one item per entry (its kind, row, sectors, mark
//! label in words), the rows, and the epochs between flushes.

use powercut_oracles::blocklog::BlockLog;
use powercut_workloads::ack::Ack;

use super::rows::{self, RecordSpan};

/// What an entry is on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Write,
    Discard,
    /// An empty flush.
    Flush,
    Mark,
}

/// One log entry.
#[derive(Debug, Clone)]
pub struct Item {
    pub index: u64,
    pub kind: Kind,
    /// Row of a write or discard.
    pub row: Option<usize>,
    pub fua: bool,
    /// A FLUSH flag (on an empty flush, or a write with a pre-flush).
    pub flush: bool,
    pub sector: u64,
    pub nr_sectors: u64,
    /// A mark's label as logged.
    pub label: Option<String>,
    /// Engine records the write carries.
    pub records: Option<RecordSpan>,
}

impl Item {
    /// `sectors A-B` of a write (inclusive, in log sectors).
    pub fn sectors(&self) -> String {
        format!(
            "sectors {}-{}",
            self.sector,
            self.sector + self.nr_sectors.saturating_sub(1)
        )
    }

    /// One line about this entry, for tooltips and findings.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Mark => format!(
                "entry {}: mark {}",
                self.index,
                self.label.as_deref().map(mark_words).unwrap_or_default()
            ),
            Kind::Flush => format!("entry {}: FLUSH", self.index),
            Kind::Discard => format!("entry {}: discard {}", self.index, self.sectors()),
            Kind::Write => {
                let mut s = format!("entry {}: write {}", self.index, self.sectors());
                if self.flush {
                    s.push_str(" FLUSH");
                }
                if self.fua {
                    s.push_str(" FUA");
                }
                if let Some(r) = self.records {
                    s.push_str(&format!(", records LSN {}-{}", r.first_lsn, r.last_lsn));
                }
                s
            }
        }
    }
}

/// The whole log, ready to draw.
#[derive(Debug)]
pub struct Timeline {
    pub items: Vec<Item>,
    pub rows: Vec<String>,
    /// `[start, end)` entry ranges; each ends after a FLUSH entry (the last one at the end).
    pub epochs: Vec<(u64, u64)>,
    pub log_hash: String,
}

impl Timeline {
    pub fn of(log: &BlockLog) -> Timeline {
        let rows = rows::classify(log);
        let items: Vec<Item> = log
            .entries()
            .iter()
            .map(|e| Item {
                index: e.index,
                kind: if e.is_mark() {
                    Kind::Mark
                } else if e.is_discard() {
                    Kind::Discard
                } else if e.modifies_device() {
                    Kind::Write
                } else {
                    Kind::Flush
                },
                row: rows.row_of.get(&e.index).copied(),
                fua: e.is_fua(),
                flush: e.is_flush(),
                sector: e.sector,
                nr_sectors: e.nr_sectors,
                label: e.mark.clone(),
                records: rows.records.get(&e.index).copied(),
            })
            .collect();
        let epochs = epochs(&items);
        Timeline {
            items,
            rows: rows.names,
            epochs,
            log_hash: log.hash_hex(),
        }
    }

    pub fn len(&self) -> u64 {
        self.items.len() as u64
    }

    /// The mark that acknowledged `lsn` (a records ack covering it), if any.
    pub fn ack_of_lsn(&self, lsn: u64) -> Option<&Item> {
        self.items.iter().find(|i| {
            matches!(
                i.label.as_deref().and_then(|l| Ack::parse_label(l).ok()),
                Some(Ack::Records { first_lsn, last_lsn, .. }) if (first_lsn..=last_lsn).contains(&lsn)
            )
        })
    }
}

fn epochs(items: &[Item]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    for item in items.iter().filter(|i| i.flush) {
        // A FLUSH entry closes the epoch before it; a write carrying it opens the next one.
        let end = if item.kind == Kind::Flush {
            item.index + 1
        } else {
            item.index
        };
        if end > start {
            out.push((start, end));
            start = end;
        }
    }
    if (start as usize) < items.len() {
        out.push((start, items.len() as u64));
    }
    out
}

/// A mark label in words: `LSN 3-5`, `create dir/f1`, `reopen recovered LSN 1-9`, ...
pub fn mark_words(label: &str) -> String {
    let words = match Ack::parse_label(label) {
        Ok(Ack::Records {
            first_lsn,
            last_lsn,
            ..
        }) if first_lsn == last_lsn => format!("LSN {first_lsn}"),
        Ok(Ack::Records {
            first_lsn,
            last_lsn,
            ..
        }) => format!("LSN {first_lsn}-{last_lsn}"),
        Ok(Ack::FileCreate { path, .. }) => format!("create {path}"),
        Ok(Ack::FileRename { from, to, .. }) => format!("rename {from} to {to}"),
        Ok(Ack::FileRemove { path }) => format!("remove {path}"),
        Ok(Ack::Retired { before_lsn }) => format!("retire below LSN {before_lsn}"),
        Ok(Ack::Recovered {
            first_lsn,
            last_lsn,
            ..
        }) => format!("reopen recovered LSN {first_lsn}-{last_lsn}"),
        Ok(Ack::Key { key, digest }) => format!("ack {key} = {digest}"),
        Ok(Ack::Nack { key }) => format!("nack {key}"),
        Ok(Ack::Start { name }) => format!("start of {name}"),
        Ok(Ack::End { name }) => format!("end of {name}"),
        Err(_) => return label.to_string(),
    };
    format!("{words} ({label})")
}

/// The short form of [`mark_words`], for labels drawn on the timeline.
pub fn mark_short(label: &str) -> String {
    let words = mark_words(label);
    match words.find(" (") {
        Some(i) => words[..i].to_string(),
        None => words,
    }
}
