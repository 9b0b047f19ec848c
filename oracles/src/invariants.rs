//! The invariants checked on a crash state (docs/design.md section 5).
//!
//! The verdicts are the judge's (`powercut_judge`, shared with the sim tier and the guest); this
//! module turns a mounted state into what the judge asks. The engine's recovery is injected as a
//! [`RecoverFn`], given the journal directory of the mounted state, so a check can run a
//! mutant's recovery or a recorded one.

use std::path::{Path, PathBuf};

use powercut_judge::probe::{mid_log_candidates, mid_log_verdict};
use powercut_judge::records::RecordPromise;
use powercut_judge::Finding;
use powercut_workloads::ack::Ack;
use powercut_workloads::promises::{self, RecoveredRecord};

use crate::blocklog::BlockLog;

/// Where recovery found the end of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TailInfo {
    /// Segment number where the journal ends.
    pub segment: u64,
    /// Byte offset in that segment where the journal ends.
    pub offset: u64,
    /// Bytes of torn tail recovery dropped.
    pub discarded_bytes: u64,
}

/// What the engine's recovery returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveredJournal {
    /// (LSN, payload) in the order recovery returned them.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Some when recovery truncated a torn tail.
    pub truncated_tail: Option<TailInfo>,
}

/// The engine's recovery, run on a journal directory; Err is a recovery error (its message).
pub type RecoverFn = dyn Fn(&Path) -> Result<RecoveredJournal, String> + Sync;

/// One broken invariant on one state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    /// "I1" .. "I6".
    pub invariant: String,
    /// Id of the crash state.
    pub state_id: String,
    /// Workload seed.
    pub seed: u64,
    /// The ack label (workload step) the violation is about, if any.
    pub step: Option<String>,
    /// What the invariant required.
    pub expected: String,
    /// What the state showed instead.
    pub found: String,
}

/// Where the engine's files live inside the mounted file system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InvariantConfig {
    /// Journal directory, relative to the mount root.
    pub journal_dir: PathBuf,
    /// Root of the file operations of file acks, relative to the mount root.
    pub files_dir: PathBuf,
}

impl Default for InvariantConfig {
    fn default() -> Self {
        InvariantConfig {
            journal_dir: PathBuf::from("journal"),
            files_dir: PathBuf::from("files"),
        }
    }
}

/// What a state must show.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// Id of the crash state.
    pub state_id: &'a str,
    /// Workload seed.
    pub seed: u64,
    /// Acks marked before the cut, in log order.
    pub acks: &'a [Ack],
    /// The first ack after the cut: its operation may have been in flight at the cut, so its
    /// effect on a file may already be on disk although it was not yet acknowledged.
    pub in_flight: Option<&'a Ack>,
}

impl Expectation<'_> {
    fn violation(
        &self,
        inv: &str,
        step: Option<&Ack>,
        expected: String,
        found: String,
    ) -> Violation {
        Violation {
            invariant: inv.to_string(),
            state_id: self.state_id.to_string(),
            seed: self.seed,
            step: step.map(|a| a.to_label()),
            expected,
            found,
        }
    }
}

/// Acks of a log: every MARK whose label is one of ours, with its entry index, in log order.
/// Foreign marks (e.g. `dm-log-writes-end`) are skipped; a label of ours that does not parse is an
/// error (a damaged ledger).
pub fn acks_of_log(
    log: &BlockLog,
) -> Result<Vec<(u64, Ack)>, powercut_workloads::ack::AckLabelError> {
    let mut out = Vec::new();
    for e in log.entries() {
        if let Some(label) = &e.mark {
            if Ack::is_ack_label(label) {
                out.push((e.index, Ack::parse_label(label)?));
            }
        }
    }
    Ok(out)
}

/// The acks a check uses: `given` (acks placed at entry indexes by the caller, for logs without
/// MARKs) or the log's own marks, sorted by entry index (stable).
pub fn ledger(
    log: &BlockLog,
    given: Option<&[(u64, Ack)]>,
) -> Result<Vec<(u64, Ack)>, powercut_workloads::ack::AckLabelError> {
    let mut acks = match given {
        Some(a) => a.to_vec(),
        None => acks_of_log(log)?,
    };
    acks.sort_by_key(|(index, _)| *index);
    Ok(acks)
}

/// The acks with entry index `< cut` (a prefix of `acks_of_log`).
pub fn acks_before(acks: &[(u64, Ack)], cut: u64) -> Vec<Ack> {
    acks.iter()
        .take_while(|(i, _)| *i < cut)
        .map(|(_, a)| a.clone())
        .collect()
}

impl Expectation<'_> {
    /// The judge's finding as this state's violation.
    fn violation_of(&self, (finding, about): (Finding, Option<&Ack>)) -> Violation {
        self.violation(
            finding.invariant.name(),
            about,
            finding.expected,
            finding.found,
        )
    }
}

/// I1-I4 and I9 on the result of recovery, as the judge decides them.
pub fn check_journal(
    exp: &Expectation<'_>,
    result: &Result<RecoveredJournal, String>,
) -> Vec<Violation> {
    let recovered: Result<Vec<RecoveredRecord<'_>>, &str> = match result {
        Ok(journal) => Ok(journal
            .records
            .iter()
            .map(|(lsn, payload)| RecoveredRecord { lsn: *lsn, payload })
            .collect()),
        Err(message) => Err(message.as_str()),
    };
    let recovered = recovered.as_deref().map_err(|m| *m);
    promises::judge_records(exp.seed, exp.acks, exp.in_flight, recovered)
        .into_iter()
        .map(|found| exp.violation_of(found))
        .collect()
}

/// I6: every acked file operation holds under `files_root`; the operation in flight at the cut
/// ([`Expectation::in_flight`]) may show whole or not at all.
pub fn check_files(exp: &Expectation<'_>, files_root: &Path) -> Vec<Violation> {
    let mut look = |path: &str| promises::file_seen(&files_root.join(path));
    promises::judge_acked_files(exp.acks, exp.in_flight, &mut look)
        .into_iter()
        .map(|found| exp.violation_of(found))
        .collect()
}

/// Result of the I5 probe on one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MidLogProbe {
    /// Nothing to corrupt (fewer than two recovered records, or payloads not found in the files).
    NotApplicable(String),
    /// Recovery refused the corrupted copy.
    Refused,
    /// Recovery accepted it: an I5 violation.
    Violated(Violation),
}

/// Errors of the I5 probe itself (copying files).
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct ProbeError {
    /// The operation.
    pub op: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Cause.
    pub source: std::io::Error,
}

fn perr(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ProbeError {
    let path = path.to_path_buf();
    move |source| ProbeError { op, path, source }
}

fn copy_dir(src: &Path, dst: &Path, files: &mut Vec<PathBuf>) -> Result<(), ProbeError> {
    let e = perr;
    std::fs::create_dir_all(dst).map_err(e("create directory", dst))?;
    for entry in std::fs::read_dir(src).map_err(e("read directory", src))? {
        let entry = entry.map_err(e("read directory", src))?;
        let ty = entry.file_type().map_err(e("stat", &entry.path()))?;
        let to = dst.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &to, files)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &to).map_err(e("copy", &entry.path()))?;
            files.push(to);
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() || from > hay.len() - needle.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// I5: copies the journal directory to `scratch`, flips one bit in the middle of the payload of an
/// acked record that is followed (in the same file) by another valid record and, later in the
/// log, by a record of a later acked group, and runs recovery on the copy: it must fail, not
/// silently truncate.
pub fn check_mid_log_corruption(
    exp: &Expectation<'_>,
    journal_dir: &Path,
    recovered: &RecoveredJournal,
    recover: &RecoverFn,
    scratch: &Path,
) -> Result<MidLogProbe, ProbeError> {
    let recs = &recovered.records;
    if recs.len() < 2 {
        return Ok(MidLogProbe::NotApplicable(
            "fewer than two recovered records".into(),
        ));
    }
    let copy = scratch.join("i5-journal");
    let _ = std::fs::remove_dir_all(&copy);
    let mut files = Vec::new();
    copy_dir(journal_dir, &copy, &mut files)?;
    files.sort();
    let e = perr;
    let promises: Vec<RecordPromise> = exp.acks.iter().filter_map(Ack::record_promise).collect();
    let lsns: Vec<u64> = recs.iter().map(|(lsn, _)| *lsn).collect();
    let order = mid_log_candidates(&promises, &lsns);
    for &i in order.iter().take(16) {
        let (lsn, victim) = &recs[i];
        let (next_lsn, next) = &recs[i + 1];
        for f in &files {
            let mut bytes = std::fs::read(f).map_err(e("read", f))?;
            let Some(at) = find(&bytes, victim, 0) else {
                continue;
            };
            if find(&bytes, next, at + victim.len()).is_none() {
                continue;
            }
            let flip_at = at + victim.len() / 2;
            bytes[flip_at] ^= 0x10;
            std::fs::write(f, &bytes).map_err(e("write", f))?;
            let result = recover(&copy);
            let _ = std::fs::remove_dir_all(&copy);
            let where_ = format!(
                "bit flipped at byte {flip_at} of {} inside LSN {lsn}, followed by LSN {next_lsn}",
                f.strip_prefix(&copy).unwrap_or(f).display()
            );
            let described = result.map(|j| {
                format!(
                    "recovery returned {} records, truncated_tail {:?}",
                    j.records.len(),
                    j.truncated_tail
                )
            });
            return Ok(match mid_log_verdict(&where_, described) {
                None => MidLogProbe::Refused,
                Some(finding) => MidLogProbe::Violated(exp.violation_of((finding, None))),
            });
        }
    }
    let _ = std::fs::remove_dir_all(&copy);
    Ok(MidLogProbe::NotApplicable(
        "no acked record found followed by another in the same file".into(),
    ))
}

/// Runs recovery on `root/journal_dir`, then I1-I4 and I6. Returns the violations and what
/// recovery returned (for I5).
pub fn check_mounted(
    exp: &Expectation<'_>,
    root: &Path,
    cfg: &InvariantConfig,
    recover: &RecoverFn,
) -> (Vec<Violation>, Result<RecoveredJournal, String>) {
    let result = recover(&root.join(&cfg.journal_dir));
    let mut v = check_journal(exp, &result);
    v.extend(check_files(exp, &root.join(&cfg.files_dir)));
    (v, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use powercut_workloads::payload::derive;

    const SEED: u64 = 42;

    fn rec(lsn: u64) -> (u64, Vec<u8>) {
        (lsn, derive(SEED, 0, lsn, 40 + lsn as usize))
    }

    fn ack_for(first: u64, last: u64) -> Ack {
        let mut crc = 0;
        for l in first..=last {
            crc = crc32c::crc32c_append(crc, &rec(l).1);
        }
        Ack::Records {
            first_lsn: first,
            last_lsn: last,
            crc32c: crc,
        }
    }

    fn exp(acks: &[Ack]) -> Expectation<'_> {
        Expectation {
            state_id: "00000000-c1-p",
            seed: SEED,
            acks,
            in_flight: None,
        }
    }

    fn journal(lsns: &[u64]) -> Result<RecoveredJournal, String> {
        Ok(RecoveredJournal {
            records: lsns.iter().map(|&l| rec(l)).collect(),
            truncated_tail: None,
        })
    }

    fn invariants(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|x| x.invariant.as_str()).collect()
    }

    #[test]
    fn all_acked_and_recovered_passes() {
        let acks = [ack_for(1, 2), ack_for(3, 3)];
        assert!(check_journal(&exp(&acks), &journal(&[1, 2, 3, 4])).is_empty());
    }

    #[test]
    fn missing_acked_record_is_i1() {
        let acks = [ack_for(1, 3)];
        let v = check_journal(&exp(&acks), &journal(&[1, 2]));
        assert!(invariants(&v).contains(&"I1"), "{v:?}");
        assert!(invariants(&v).contains(&"I2"));
        assert_eq!(v[0].step.as_deref(), Some(acks[0].to_label().as_str()));
    }

    #[test]
    fn hole_is_i2() {
        let v = check_journal(&exp(&[]), &journal(&[1, 3]));
        assert_eq!(invariants(&v), vec!["I2"]);
        let v = check_journal(&exp(&[]), &journal(&[1, 1]));
        assert_eq!(invariants(&v), vec!["I2"]);
        let v = check_journal(&exp(&[]), &journal(&[2, 1]));
        assert_eq!(invariants(&v), vec!["I2"]);
    }

    #[test]
    fn garbage_is_i3() {
        let mut j = journal(&[1, 2]).unwrap();
        j.records[1].1[30] ^= 1;
        let v = check_journal(&exp(&[]), &Ok(j));
        assert_eq!(invariants(&v), vec!["I3"]);
    }

    #[test]
    fn torn_tail_passes_and_recovery_error_is_i4() {
        let mut j = journal(&[1, 2]).unwrap();
        j.truncated_tail = Some(TailInfo {
            segment: 0,
            offset: 100,
            discarded_bytes: 7,
        });
        assert!(check_journal(&exp(&[ack_for(1, 2)]), &Ok(j)).is_empty());
        let v = check_journal(&exp(&[ack_for(1, 2)]), &Err("bad record at 100".into()));
        assert_eq!(invariants(&v), vec!["I4"]);
    }

    #[test]
    fn wrong_ledger_is_caught() {
        // An ack for a record never written.
        let v = check_journal(&exp(&[ack_for(1, 5)]), &journal(&[1, 2, 3]));
        assert!(invariants(&v).contains(&"I1"));
        // An ack whose crc does not match what was written.
        let bad = Ack::Records {
            first_lsn: 1,
            last_lsn: 2,
            crc32c: 0x1234_5678,
        };
        let v = check_journal(&exp(std::slice::from_ref(&bad)), &journal(&[1, 2]));
        assert_eq!(invariants(&v), vec!["I1"]);
        assert!(v[0].found.contains("crc32c"));
    }

    #[test]
    fn file_acks_are_i6() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/a"), b"alpha").unwrap();
        std::fs::write(root.join("b"), b"beta").unwrap();
        let crc_a = crc32c::crc32c(b"alpha");
        let ok = [
            Ack::FileCreate {
                path: "d/a.tmp".into(),
                crc32c: crc_a,
            },
            Ack::FileRename {
                from: "d/a.tmp".into(),
                to: "d/a".into(),
                crc32c: crc_a,
            },
            Ack::FileCreate {
                path: "b".into(),
                crc32c: crc32c::crc32c(b"beta"),
            },
            Ack::FileCreate {
                path: "gone".into(),
                crc32c: 0,
            },
            Ack::FileRemove {
                path: "gone".into(),
            },
        ];
        assert!(check_files(&exp(&ok), root).is_empty());
        let bad = [
            Ack::FileCreate {
                path: "b".into(),
                crc32c: 1,
            },
            Ack::FileCreate {
                path: "missing".into(),
                crc32c: 0,
            },
            Ack::FileRemove { path: "d/a".into() },
        ];
        let v = check_files(&exp(&bad), root);
        assert_eq!(invariants(&v), vec!["I6", "I6", "I6"]);
    }

    #[test]
    fn i6_accepts_the_outcome_of_the_operation_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("swap.tmp"), b"again").unwrap();
        let acked = [Ack::FileRename {
            from: "swap.tmp".into(),
            to: "swap".into(),
            crc32c: 0,
        }];
        std::fs::write(root.join("swap"), b"").unwrap();
        // swap.tmp exists again: wrong unless an operation re-creating it was in flight.
        let v = check_files(&exp(&acked), root);
        assert_eq!(invariants(&v), vec!["I6"]);
        let recreate = Ack::FileCreate {
            path: "swap.tmp".into(),
            crc32c: crc32c::crc32c(b"again"),
        };
        let with_in_flight = Expectation {
            in_flight: Some(&recreate),
            ..exp(&acked)
        };
        assert!(check_files(&with_in_flight, root).is_empty());
        // The in-flight operation's outcome must match exactly, though.
        std::fs::write(root.join("swap.tmp"), b"other").unwrap();
        assert_eq!(invariants(&check_files(&with_in_flight, root)), vec!["I6"]);
    }

    /// A toy journal: one file of [u32 len][u64 lsn][u32 crc(payload)][payload] records.
    fn toy_recover(dir: &Path) -> Result<RecoveredJournal, String> {
        let bytes = std::fs::read(dir.join("seg0")).map_err(|e| e.to_string())?;
        let mut at = 0;
        let mut records = Vec::new();
        while at + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            let lsn = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap());
            let crc = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap());
            let Some(p) = bytes.get(at + 16..at + 16 + len) else {
                break;
            };
            if crc32c::crc32c(p) != crc {
                return Err(format!("bad record at {at}"));
            }
            records.push((lsn, p.to_vec()));
            at += 16 + len;
        }
        Ok(RecoveredJournal {
            records,
            truncated_tail: None,
        })
    }

    fn toy_lenient(dir: &Path) -> Result<RecoveredJournal, String> {
        // The M8 bug: a bad record ends the log silently.
        match toy_recover(dir) {
            Ok(j) => Ok(j),
            Err(_) => Ok(RecoveredJournal::default()),
        }
    }

    #[test]
    fn mid_log_corruption_probe() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("journal");
        std::fs::create_dir_all(&j).unwrap();
        let mut seg = Vec::new();
        for l in 1..=4 {
            let p = rec(l).1;
            seg.extend_from_slice(&(p.len() as u32).to_le_bytes());
            seg.extend_from_slice(&l.to_le_bytes());
            seg.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
            seg.extend_from_slice(&p);
        }
        std::fs::write(j.join("seg0"), &seg).unwrap();
        let recovered = toy_recover(&j).unwrap();
        let scratch = dir.path().join("scratch");
        // One group: damage there cannot be told from its torn write; not probed.
        let one_group = [ack_for(1, 4)];
        let r = check_mid_log_corruption(&exp(&one_group), &j, &recovered, &toy_recover, &scratch)
            .unwrap();
        assert!(matches!(r, MidLogProbe::NotApplicable(_)), "{r:?}");
        let acks = [ack_for(1, 2), ack_for(3, 4)];
        let e = exp(&acks);
        let r = check_mid_log_corruption(&e, &j, &recovered, &toy_recover, &scratch).unwrap();
        assert_eq!(r, MidLogProbe::Refused);
        let r = check_mid_log_corruption(&e, &j, &recovered, &toy_lenient, &scratch).unwrap();
        assert!(
            matches!(r, MidLogProbe::Violated(ref v) if v.invariant == "I5"),
            "{r:?}"
        );
        // The original is untouched.
        assert_eq!(toy_recover(&j).unwrap(), recovered);
        let one = RecoveredJournal {
            records: vec![rec(1)],
            truncated_tail: None,
        };
        assert!(matches!(
            check_mid_log_corruption(&e, &j, &one, &toy_recover, &scratch).unwrap(),
            MidLogProbe::NotApplicable(_)
        ));
    }
}
