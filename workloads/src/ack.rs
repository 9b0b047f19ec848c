//! Acknowledgements as they travel in the block log: one dm-log-writes MARK per ack.
//!
//! The guest agent writes a MARK right after the engine's acknowledgement returns, so the ack is
//! totally ordered with the writes it depends on. The MARK label is the ack itself, so the block
//! log alone is enough to check a crash state (the ledger file is a readable copy).
//!
//! dm-log-writes takes a message of exactly two words (`mark LABEL`) and a label of at most
//! 479 bytes, so labels have no spaces and are bounded. Grammar (all numbers decimal, crc as 8
//! lowercase hex digits, crc32c):
//!
//! ```text
//! r:FIRST-LAST:CRC            records FIRST..=LAST are durable; CRC covers their payloads concatenated
//! f:create:PATH:CRC           PATH exists (durably) with contents whose crc32c is CRC
//! f:rename:FROM>TO:CRC        FROM was renamed to TO (durably); TO's contents have crc CRC
//! f:remove:PATH               PATH is durably gone
//! t:LSN                       segments holding only records below LSN were retired: those
//!                             records may be gone from here on (a checkpoint)
//! o:FIRST-LAST:CRC            a reopen's recovery returned records FIRST..=LAST (CRC over their
//!                             payloads): they must be durable from here on (I9); LAST =
//!                             FIRST-1 when it returned none (`o:1-0:00000000`)
//! k:KEY:DIGEST                a program under test acked: KEY holds the value of DIGEST durably
//! n:KEY                       a program under test reported a failed operation on KEY
//! s:NAME                      start of the workload (NAME: workload name)
//! e:NAME                      clean end of the workload
//! ```

use std::fmt;

use powercut_judge::files::FilePromise;
use powercut_judge::records::{RecordPromise, RunCrc};
use powercut_judge::Invariant;

use crate::program;

/// dm-log-writes refuses longer labels (the sector holds the entry header too).
pub const MAX_LABEL_BYTES: usize = 479;

/// One acknowledged fact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ack {
    /// Records `first_lsn..=last_lsn` were acknowledged durable.
    Records {
        /// First LSN acknowledged.
        first_lsn: u64,
        /// Last LSN acknowledged (inclusive).
        last_lsn: u64,
        /// crc32c of the payloads, concatenated in LSN order.
        crc32c: u32,
    },
    /// A file was created (or overwritten) and acknowledged durable, file and directory fsynced.
    FileCreate {
        /// Path relative to the files directory.
        path: String,
        /// crc32c of the contents.
        crc32c: u32,
    },
    /// A rename was acknowledged durable (directory fsynced).
    FileRename {
        /// The path renamed away.
        from: String,
        /// The path renamed to.
        to: String,
        /// crc32c of the contents at `to`.
        crc32c: u32,
    },
    /// A removal was acknowledged durable (directory fsynced).
    FileRemove {
        /// Path relative to the files directory.
        path: String,
    },
    /// Sealed segments whose records are all below `before_lsn` were retired (the renames and
    /// the directory fsync returned): recovery may start after them from here on.
    Retired {
        /// Every record below this LSN may be gone.
        before_lsn: u64,
    },
    /// A reopen's recovery returned records `first_lsn..=last_lsn`, none when `last_lsn` is
    /// `first_lsn - 1` (I9: recovered implies durable, so every later crash state holds them
    /// unless a later retirement removed them).
    Recovered {
        /// First LSN recovered.
        first_lsn: u64,
        /// Last LSN recovered (inclusive; `first_lsn - 1` when none).
        last_lsn: u64,
        /// crc32c of the recovered payloads, concatenated in LSN order.
        crc32c: u32,
    },
    /// A program under test promised that `key` holds the value whose digest is `digest`,
    /// durably (an `ack KEY DIGEST` line, see [`crate::program`]).
    Key {
        /// The key ([`crate::program::is_valid_key`]).
        key: String,
        /// The digest ([`crate::program::is_valid_digest`]).
        digest: String,
    },
    /// A program under test reported that an operation on `key` failed (a `nack KEY` line):
    /// the key's value is unknown until its next ack.
    Nack {
        /// The key.
        key: String,
    },
    /// The workload started.
    Start {
        /// The workload's name.
        name: String,
    },
    /// The workload ended cleanly.
    End {
        /// The workload's name.
        name: String,
    },
}

/// A label that is not one of the forms above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad ack label {label:?}: {reason}")]
pub struct AckLabelError {
    /// The label as read.
    pub label: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Names that may appear in labels: no spaces (dm message words), no `:` or `>` (our separators).
pub fn is_valid_label_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 200
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}

impl Ack {
    /// The MARK label. Panics if a path breaks [`is_valid_label_path`]: callers validate paths when
    /// the workload is parsed, so reaching that is a bug.
    pub fn to_label(&self) -> String {
        let label = match self {
            Ack::Records {
                first_lsn,
                last_lsn,
                crc32c,
            } => {
                format!("r:{first_lsn}-{last_lsn}:{crc32c:08x}")
            }
            Ack::FileCreate { path, crc32c } => {
                assert!(is_valid_label_path(path), "invalid path in ack: {path:?}");
                format!("f:create:{path}:{crc32c:08x}")
            }
            Ack::FileRename { from, to, crc32c } => {
                assert!(is_valid_label_path(from), "invalid path in ack: {from:?}");
                assert!(is_valid_label_path(to), "invalid path in ack: {to:?}");
                format!("f:rename:{from}>{to}:{crc32c:08x}")
            }
            Ack::FileRemove { path } => {
                assert!(is_valid_label_path(path), "invalid path in ack: {path:?}");
                format!("f:remove:{path}")
            }
            Ack::Retired { before_lsn } => format!("t:{before_lsn}"),
            Ack::Recovered {
                first_lsn,
                last_lsn,
                crc32c,
            } => format!("o:{first_lsn}-{last_lsn}:{crc32c:08x}"),
            Ack::Key { key, digest } => {
                assert!(program::is_valid_key(key), "invalid key in ack: {key:?}");
                assert!(
                    program::is_valid_digest(digest),
                    "invalid digest: {digest:?}"
                );
                format!("k:{key}:{digest}")
            }
            Ack::Nack { key } => {
                assert!(program::is_valid_key(key), "invalid key in ack: {key:?}");
                format!("n:{key}")
            }
            Ack::Start { name } => format!("s:{name}"),
            Ack::End { name } => format!("e:{name}"),
        };
        assert!(label.len() <= MAX_LABEL_BYTES);
        label
    }

    /// Parses a MARK label. Labels that are not acks (other tools' marks) are errors; callers that
    /// tolerate foreign marks check [`Ack::is_ack_label`] first.
    pub fn parse_label(label: &str) -> Result<Ack, AckLabelError> {
        let err = |reason| AckLabelError {
            label: label.chars().take(80).collect(),
            reason,
        };
        if label.len() > MAX_LABEL_BYTES {
            return Err(err("longer than 479 bytes"));
        }
        let (kind, rest) = label
            .split_once(':')
            .ok_or_else(|| err("no ':' after the kind"))?;
        let parse_crc = |s: &str| {
            if s.len() != 8 {
                return Err(err("crc is not 8 hex digits"));
            }
            u32::from_str_radix(s, 16).map_err(|_| err("crc is not hex"))
        };
        let check_path = |p: &str| {
            if is_valid_label_path(p) {
                Ok(p.to_string())
            } else {
                Err(err("invalid path"))
            }
        };
        let parse_range = |rest: &str, empty_allowed: bool| {
            let (range, crc) = rest.split_once(':').ok_or_else(|| err("no crc"))?;
            let (first, last) = range.split_once('-').ok_or_else(|| err("no LSN range"))?;
            let first_lsn: u64 = first.parse().map_err(|_| err("bad first LSN"))?;
            let last_lsn: u64 = last.parse().map_err(|_| err("bad last LSN"))?;
            let empty = empty_allowed && last_lsn + 1 == first_lsn;
            if first_lsn == 0 || (last_lsn < first_lsn && !empty) {
                return Err(err("empty or zero LSN range"));
            }
            Ok((first_lsn, last_lsn, parse_crc(crc)?))
        };
        match kind {
            "r" => {
                let (first_lsn, last_lsn, crc32c) = parse_range(rest, false)?;
                Ok(Ack::Records {
                    first_lsn,
                    last_lsn,
                    crc32c,
                })
            }
            "o" => {
                let (first_lsn, last_lsn, crc32c) = parse_range(rest, true)?;
                Ok(Ack::Recovered {
                    first_lsn,
                    last_lsn,
                    crc32c,
                })
            }
            "f" => {
                let (op, rest) = rest
                    .split_once(':')
                    .ok_or_else(|| err("no file operation"))?;
                match op {
                    "create" => {
                        let (path, crc) = rest.rsplit_once(':').ok_or_else(|| err("no crc"))?;
                        Ok(Ack::FileCreate {
                            path: check_path(path)?,
                            crc32c: parse_crc(crc)?,
                        })
                    }
                    "rename" => {
                        let (paths, crc) = rest.rsplit_once(':').ok_or_else(|| err("no crc"))?;
                        let (from, to) = paths.split_once('>').ok_or_else(|| err("no '>'"))?;
                        Ok(Ack::FileRename {
                            from: check_path(from)?,
                            to: check_path(to)?,
                            crc32c: parse_crc(crc)?,
                        })
                    }
                    "remove" => Ok(Ack::FileRemove {
                        path: check_path(rest)?,
                    }),
                    _ => Err(err("unknown file operation")),
                }
            }
            "t" => {
                let before_lsn: u64 = rest.parse().map_err(|_| err("bad LSN"))?;
                if before_lsn == 0 {
                    return Err(err("zero LSN"));
                }
                Ok(Ack::Retired { before_lsn })
            }
            "k" | "n" => parse_program_label(kind, rest).map_err(err),
            "s" => Ok(Ack::Start {
                name: check_path(rest)?,
            }),
            "e" => Ok(Ack::End {
                name: check_path(rest)?,
            }),
            _ => Err(err("unknown kind")),
        }
    }

    /// Whether a label looks like one of ours (foreign marks are ignored by the oracles).
    pub fn is_ack_label(label: &str) -> bool {
        matches!(
            label.split_once(':'),
            Some(("r" | "o" | "f" | "t" | "k" | "n" | "s" | "e", _))
        )
    }
}

/// The labels of a program's acks: `k:KEY:DIGEST` and `n:KEY`.
fn parse_program_label(kind: &str, rest: &str) -> Result<Ack, &'static str> {
    if kind == "n" {
        return if program::is_valid_key(rest) {
            Ok(Ack::Nack {
                key: rest.to_string(),
            })
        } else {
            Err("invalid key")
        };
    }
    let (key, digest) = rest.split_once(':').ok_or("no digest")?;
    if !program::is_valid_key(key) {
        return Err("invalid key");
    }
    if !program::is_valid_digest(digest) {
        return Err("invalid digest");
    }
    Ok(Ack::Key {
        key: key.to_string(),
        digest: digest.to_string(),
    })
}

/// The largest `before_lsn` of the retire acks among `acks` (None: nothing was retired):
/// records below it may be gone from a recovered log, which then starts at most there.
pub fn retired_before<'a>(acks: impl IntoIterator<Item = &'a Ack>) -> Option<u64> {
    acks.into_iter()
        .filter_map(|a| match a {
            Ack::Retired { before_lsn } => Some(*before_lsn),
            _ => None,
        })
        .max()
}

impl Ack {
    /// What this ack promises about records, for the judge: acknowledged records are I1's,
    /// records a reopen recovered are I9's.
    pub fn record_promise(&self) -> Option<RecordPromise> {
        let (first_lsn, last_lsn, crc32c, invariant) = match self {
            Ack::Records {
                first_lsn,
                last_lsn,
                crc32c,
            } => (*first_lsn, *last_lsn, *crc32c, Invariant::I1),
            Ack::Recovered {
                first_lsn,
                last_lsn,
                crc32c,
            } if last_lsn >= first_lsn => (*first_lsn, *last_lsn, *crc32c, Invariant::I9),
            _ => return None,
        };
        Some(RecordPromise {
            first_lsn,
            last_lsn,
            crc32c,
            invariant,
        })
    }

    /// The ack of a reopen whose recovery returned `records` (LSN order): the contiguous run
    /// from the first (a hole is recovery's own finding), or none.
    pub fn recovered<'a>(records: impl IntoIterator<Item = (u64, &'a [u8])>) -> Ack {
        let mut records = records.into_iter().peekable();
        // LSNs start at 1; a record at 0 (a broken recovery) ends the run before it begins.
        let mut run = RunCrc::empty(records.peek().map_or(1, |(lsn, _)| (*lsn).max(1)));
        for (lsn, payload) in records {
            if !run.push(lsn, payload) {
                break;
            }
        }
        Ack::Recovered {
            first_lsn: run.first_lsn,
            last_lsn: run.last_lsn,
            crc32c: run.crc32c,
        }
    }

    /// What this ack promises about files, for the judge (I6).
    pub fn file_promise(&self) -> Option<FilePromise> {
        match self {
            Ack::FileCreate { path, crc32c } => Some(FilePromise::Create {
                path: path.clone(),
                crc32c: *crc32c,
            }),
            Ack::FileRename { from, to, crc32c } => Some(FilePromise::Rename {
                from: from.clone(),
                to: to.clone(),
                crc32c: *crc32c,
            }),
            Ack::FileRemove { path } => Some(FilePromise::Remove { path: path.clone() }),
            _ => None,
        }
    }
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_recovery_ack_covers_the_contiguous_records_from_the_first() {
        let records: [(u64, &[u8]); 3] = [(4, b"a"), (5, b"b"), (7, b"c")];
        assert_eq!(
            Ack::recovered(records),
            Ack::Recovered {
                first_lsn: 4,
                last_lsn: 5,
                crc32c: crc32c::crc32c(b"ab"),
            }
        );
        let none: [(u64, &[u8]); 0] = [];
        assert!(matches!(
            Ack::recovered(none),
            Ack::Recovered {
                first_lsn: 1,
                last_lsn: 0,
                ..
            }
        ));
        // A broken recovery's record at LSN 0 acks nothing (and does not panic the agent).
        let zero: [(u64, &[u8]); 1] = [(0, b"x")];
        assert!(matches!(
            Ack::recovered(zero),
            Ack::Recovered {
                first_lsn: 1,
                last_lsn: 0,
                ..
            }
        ));
    }

    #[test]
    fn labels_round_trip() {
        let acks = [
            Ack::Records {
                first_lsn: 1,
                last_lsn: 7,
                crc32c: 0xdead_beef,
            },
            Ack::FileCreate {
                path: "d/a.txt".into(),
                crc32c: 1,
            },
            Ack::FileRename {
                from: "d/a.tmp".into(),
                to: "d/a".into(),
                crc32c: 2,
            },
            Ack::FileRemove { path: "d/a".into() },
            Ack::Retired { before_lsn: 41 },
            Ack::Recovered {
                first_lsn: 3,
                last_lsn: 9,
                crc32c: 0x0102_0304,
            },
            Ack::Recovered {
                first_lsn: 1,
                last_lsn: 0,
                crc32c: 0,
            },
            Ack::Key {
                key: "row/7".into(),
                digest: "0f3a".into(),
            },
            Ack::Nack { key: "k!1".into() },
            Ack::Start {
                name: "smoke".into(),
            },
            Ack::End {
                name: "smoke".into(),
            },
        ];
        for ack in acks {
            assert_eq!(Ack::parse_label(&ack.to_label()).unwrap(), ack);
        }
    }

    #[test]
    fn bad_labels_are_errors() {
        for bad in [
            "",
            "r:",
            "r:5-3:00000000",
            "r:0-1:00000000",
            "r:1-2:xyz",
            "f:chmod:a",
            "t:0",
            "t:x",
            "t:",
            "q:x",
            "k:a",
            "k::abc",
            "k:a:b*c",
            "n:",
            "n:a b",
        ] {
            assert!(Ack::parse_label(bad).is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,600}") {
            let _ = Ack::parse_label(&s);
        }
    }
}
