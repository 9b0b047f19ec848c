//! I6: the file operations acknowledged after their directory fsync hold.

use std::collections::BTreeMap;

use crate::{Finding, Invariant};

/// An acknowledged file operation (file and directory fsynced before the acknowledgement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilePromise {
    /// `path` exists with contents whose crc32c is `crc32c`.
    Create {
        /// Path relative to the files directory.
        path: String,
        /// crc32c of the contents.
        crc32c: u32,
    },
    /// `from` is gone and `to` exists with contents whose crc32c is `crc32c`.
    Rename {
        /// The path renamed away.
        from: String,
        /// The path renamed to.
        to: String,
        /// crc32c of the contents at `to`.
        crc32c: u32,
    },
    /// `path` is gone.
    Remove {
        /// Path relative to the files directory.
        path: String,
    },
}

/// What a path holds in the state checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSeen {
    /// Nothing is at the path.
    Absent,
    /// A file with contents of this crc32c.
    Contents(u32),
    /// Something is there but could not be read (why).
    Unreadable(String),
}

/// What a path must hold, and the promise that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Exists { crc32c: u32, promise: usize },
    Absent { promise: usize },
}

impl Want {
    fn promise(self) -> usize {
        match self {
            Want::Exists { promise, .. } | Want::Absent { promise } => promise,
        }
    }

    fn matches(self, seen: &FileSeen) -> bool {
        match self {
            Want::Exists { crc32c, .. } => *seen == FileSeen::Contents(crc32c),
            Want::Absent { .. } => *seen == FileSeen::Absent,
        }
    }

    /// Whether `self` and `other` ask for the same state of the path.
    fn same_state(self, other: Want) -> bool {
        match (self, other) {
            (Want::Exists { crc32c: a, .. }, Want::Exists { crc32c: b, .. }) => a == b,
            (Want::Absent { .. }, Want::Absent { .. }) => true,
            _ => false,
        }
    }
}

/// The state of each path after applying `promises` in order.
fn wanted<'a>(
    promises: impl IntoIterator<Item = (usize, &'a FilePromise)>,
) -> BTreeMap<&'a str, Want> {
    let mut wants = BTreeMap::new();
    for (promise, op) in promises {
        match op {
            FilePromise::Create { path, crc32c } => {
                wants.insert(
                    path.as_str(),
                    Want::Exists {
                        crc32c: *crc32c,
                        promise,
                    },
                );
            }
            FilePromise::Rename { from, to, crc32c } => {
                wants.insert(from.as_str(), Want::Absent { promise });
                wants.insert(
                    to.as_str(),
                    Want::Exists {
                        crc32c: *crc32c,
                        promise,
                    },
                );
            }
            FilePromise::Remove { path } => {
                wants.insert(path.as_str(), Want::Absent { promise });
            }
        }
    }
    wants
}

/// I6 on one state: `promises` acknowledged in order; `in_flight`, the operation that may have
/// been running at the cut, which may show whole or not at all; `look` tells what a path holds.
/// A finding's `promise` indexes `promises` (`None`: the operation in flight half applied).
pub fn judge_files(
    promises: &[FilePromise],
    in_flight: Option<&FilePromise>,
    look: &mut dyn FnMut(&str) -> FileSeen,
) -> Vec<Finding> {
    let acknowledged = wanted(promises.iter().enumerate());
    let after_in_flight = wanted(promises.iter().chain(in_flight).enumerate());
    // Paths whose wanted state the operation in flight changes.
    let touched: BTreeMap<&str, Want> = after_in_flight
        .iter()
        .filter(|(path, want)| {
            acknowledged
                .get(*path)
                .is_none_or(|before| !before.same_state(**want))
        })
        .map(|(path, want)| (*path, *want))
        .collect();
    let mut seen: BTreeMap<&str, FileSeen> = BTreeMap::new();
    let mut findings = Vec::new();
    for (path, want) in &acknowledged {
        let now = seen.entry(path).or_insert_with(|| look(path));
        if !touched.contains_key(path) && !want.matches(now) {
            findings.push(broken(path, *want, now));
        }
    }
    for path in touched.keys() {
        seen.entry(path).or_insert_with(|| look(path));
    }
    let before = touched.keys().all(|path| {
        acknowledged
            .get(path)
            .is_none_or(|want| want.matches(&seen[path]))
    });
    let after = touched.iter().all(|(path, want)| want.matches(&seen[path]));
    if !before && !after {
        findings.extend(half_applied(&acknowledged, &touched, &seen));
    }
    findings
}

/// The finding for a path that does not hold what `want` promised.
fn broken(path: &str, want: Want, seen: &FileSeen) -> Finding {
    let expected = match want {
        Want::Exists { crc32c, .. } => format!("{path} exists with crc32c {crc32c:08x}"),
        Want::Absent { .. } => format!("{path} absent"),
    };
    let found = match seen {
        FileSeen::Absent => format!("{path} absent"),
        FileSeen::Contents(crc) if matches!(want, Want::Absent { .. }) => {
            format!("{path} exists (crc32c {crc:08x})")
        }
        FileSeen::Contents(crc) => format!("crc32c {crc:08x}"),
        FileSeen::Unreadable(why) => format!("cannot read: {why}"),
    };
    Finding {
        invariant: Invariant::I6,
        promise: Some(want.promise()),
        expected,
        found,
    }
}

/// Paths the operation in flight touched that hold neither their acknowledged state nor the
/// operation's outcome; if each holds one of the two, the operation applied in part.
fn half_applied(
    acknowledged: &BTreeMap<&str, Want>,
    touched: &BTreeMap<&str, Want>,
    seen: &BTreeMap<&str, FileSeen>,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = touched
        .iter()
        .filter_map(|(path, outcome)| {
            let before = acknowledged.get(path)?;
            let now = &seen[path];
            (!before.matches(now) && !outcome.matches(now)).then(|| broken(path, *before, now))
        })
        .collect();
    if findings.is_empty() {
        let paths: Vec<&str> = touched.keys().copied().collect();
        findings.push(Finding {
            invariant: Invariant::I6,
            promise: None,
            expected: format!(
                "the operation in flight at the cut applied whole or not at all on {}",
                paths.join(", ")
            ),
            found: "some of its paths show it, others do not".into(),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(path: &str, crc32c: u32) -> FilePromise {
        FilePromise::Create {
            path: path.into(),
            crc32c,
        }
    }

    fn judge(
        promises: &[FilePromise],
        in_flight: Option<&FilePromise>,
        disk: &[(&str, u32)],
    ) -> Vec<(Invariant, Option<usize>)> {
        let mut look = |path: &str| {
            disk.iter()
                .find(|(p, _)| *p == path)
                .map_or(FileSeen::Absent, |(_, crc)| FileSeen::Contents(*crc))
        };
        judge_files(promises, in_flight, &mut look)
            .into_iter()
            .map(|f| (f.invariant, f.promise))
            .collect()
    }

    #[test]
    fn kept_promises_pass() {
        let promises = [
            create("a", 1),
            FilePromise::Rename {
                from: "a".into(),
                to: "b".into(),
                crc32c: 1,
            },
            create("c", 2),
            FilePromise::Remove { path: "c".into() },
        ];
        assert!(judge(&promises, None, &[("b", 1)]).is_empty());
    }

    #[test]
    fn lost_create_rename_and_remove_are_i6_of_their_promise() {
        let promises = [create("a", 1), create("x", 3)];
        assert_eq!(
            judge(&promises, None, &[("x", 3)]),
            vec![(Invariant::I6, Some(0))]
        );
        assert_eq!(
            judge(&promises, None, &[("a", 2), ("x", 3)]),
            vec![(Invariant::I6, Some(0))]
        );
        let removed = [create("a", 1), FilePromise::Remove { path: "a".into() }];
        assert_eq!(
            judge(&removed, None, &[("a", 1)]),
            vec![(Invariant::I6, Some(1))]
        );
    }

    #[test]
    fn the_operation_in_flight_may_show() {
        let promises = [create("a", 1)];
        let rename = FilePromise::Rename {
            from: "a".into(),
            to: "b".into(),
            crc32c: 1,
        };
        assert!(judge(&promises, Some(&rename), &[("b", 1)]).is_empty());
        assert!(judge(&promises, Some(&rename), &[("a", 1)]).is_empty());
        // Neither before (a) nor after (b): the rename half applied.
        assert_eq!(
            judge(&promises, Some(&rename), &[]),
            vec![(Invariant::I6, None)]
        );
        assert_eq!(
            judge(&promises, Some(&rename), &[("a", 2)]),
            vec![(Invariant::I6, Some(0))]
        );
    }
}
