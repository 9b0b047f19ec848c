//! The campaigns' history: one JSON file that each campaign given `--history F` appends itself
//! to: its seed, shard, tier, mutant, workloads, crash
//! states, seconds, and its findings with the time each signature was first seen in any
//! campaign of the history. A nightly job keeps the file between runs to see when a finding
//! appeared and whether a fixed one came back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Campaigns kept in a history (the oldest are dropped first).
pub const MAX_CAMPAIGNS: usize = 10_000;

/// One campaign as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the Unix epoch when the campaign ended.
    pub ended_unix_seconds: u64,
    pub seed: u64,
    pub shard: Option<String>,
    pub tier: String,
    pub mutant: Option<String>,
    pub workloads: u64,
    pub states_checked: u64,
    pub seconds: f64,
    pub findings: Vec<Seen>,
}

/// A finding of a campaign, and when the history first saw its signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub signature: String,
    pub invariant: String,
    /// Seconds since the Unix epoch of the first campaign of the history that found it.
    pub first_seen_unix_seconds: u64,
    /// Whether this campaign is the first of the history to find it.
    pub new: bool,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub campaigns: Vec<Entry>,
}

impl History {
    /// Reads `path` (an absent file is an empty history; a damaged one an error naming it).
    pub fn load(path: &Path) -> Result<History> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a campaign history (move it away to start a new one)",
                path.display()
            )
        })
    }

    /// When each signature was first seen.
    fn first_seen(&self) -> BTreeMap<&str, u64> {
        let mut first = BTreeMap::new();
        for campaign in &self.campaigns {
            for seen in &campaign.findings {
                first
                    .entry(seen.signature.as_str())
                    .or_insert(seen.first_seen_unix_seconds);
            }
        }
        first
    }

    /// Adds a campaign whose findings are `(signature, invariant)`, ending now.
    pub fn add(&mut self, mut entry: Entry, findings: &[(String, String)]) {
        let now = entry.ended_unix_seconds;
        let first = self.first_seen();
        entry.findings = findings
            .iter()
            .map(|(signature, invariant)| {
                let known = first.get(signature.as_str()).copied();
                Seen {
                    signature: signature.clone(),
                    invariant: invariant.clone(),
                    first_seen_unix_seconds: known.unwrap_or(now),
                    new: known.is_none(),
                }
            })
            .collect();
        self.campaigns.push(entry);
        let excess = self.campaigns.len().saturating_sub(MAX_CAMPAIGNS);
        self.campaigns.drain(..excess);
    }

    /// Writes the history to `path` through a temporary file and a rename, so a crash never
    /// leaves half a history.
    pub fn save(&self, path: &Path) -> Result<()> {
        if path.is_dir() {
            bail!("the campaign history {} is a directory", path.display());
        }
        let text = serde_json::to_string_pretty(self)? + "\n";
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: u64) -> Entry {
        Entry {
            ended_unix_seconds: at,
            seed: 1,
            shard: None,
            tier: "sim".into(),
            mutant: None,
            workloads: 3,
            states_checked: 30,
            seconds: 1.0,
            findings: Vec::new(),
        }
    }

    #[test]
    fn a_signature_keeps_the_time_it_was_first_seen() {
        let mut history = History::default();
        history.add(entry(100), &[("a".into(), "I1".into())]);
        history.add(
            entry(200),
            &[("a".into(), "I1".into()), ("b".into(), "I2".into())],
        );
        let last = &history.campaigns[1].findings;
        assert_eq!((last[0].first_seen_unix_seconds, last[0].new), (100, false));
        assert_eq!((last[1].first_seen_unix_seconds, last[1].new), (200, true));
    }

    #[test]
    fn it_round_trips_and_a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        assert_eq!(History::load(&path).unwrap(), History::default());
        let mut history = History::default();
        history.add(entry(5), &[("s".into(), "I9".into())]);
        history.save(&path).unwrap();
        assert_eq!(History::load(&path).unwrap(), history);
        std::fs::write(&path, "{ not json").unwrap();
        let err = format!("{:#}", History::load(&path).unwrap_err());
        assert!(
            err.contains("history.json") && err.contains("not a campaign history"),
            "{err}"
        );
    }
}
