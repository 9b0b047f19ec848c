//! Checks of one step or one value alone: the same ones deserialization applies, so a workload
//! built in code is held to them too.

use super::limits::{
    MAX_COMMIT_EVERY, MAX_FILE_BYTES, MAX_INGEST_CLIENTS, MAX_RECORDS_PER_STEP, MAX_RECORD_BYTES,
    MAX_STEPS,
};
use super::{EioKind, FaultTarget, FileOp, SizeRange, Step};
use crate::ack;
use crate::payload::PAYLOAD_HEADER_BYTES;

impl Step {
    /// Range checks of the step alone (the same ones deserialization applies, so a workload
    /// built in code is held to them too).
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        match self {
            Step::Append(a) => {
                check_range("count", a.count, 1, MAX_RECORDS_PER_STEP)?;
                check_range("commit_every", a.commit_every, 1, MAX_COMMIT_EVERY)?;
                a.size.check().map_err(|m| ("size", m))
            }
            Step::Ingest(i) => {
                check_range("clients", i.clients, 1, MAX_INGEST_CLIENTS)?;
                check_range(
                    "records_per_client",
                    i.records_per_client,
                    1,
                    MAX_RECORDS_PER_STEP,
                )?;
                i.size.check().map_err(|m| ("size", m))
            }
            Step::File(op) => op.check().map_err(|m| ("", m)),
            Step::Fault(f) => {
                if let Some(n) = f.clear_after_steps {
                    check_range("clear_after_steps", n, 1, MAX_STEPS as u64)?;
                }
                if let Some(why) = f.target.problem() {
                    return Err(("target", why));
                }
                match (f.eio, &f.target) {
                    (EioKind::Flush, FaultTarget::Device) => Ok(()),
                    (EioKind::Flush, _) => Err((
                        "target",
                        "`eio: flush` fails the flushes of the whole device: give \
                         `target: device`"
                            .into(),
                    )),
                    (EioKind::Writes, FaultTarget::Device) => Err((
                        "target",
                        "`eio: writes` on the whole device aborts the file system's journal \
                         (EROFS) instead of failing the engine's writes: target `journal`, \
                         `{ file: NAME }` or `{ sectors: [start, count] }`"
                            .into(),
                    )),
                    _ => Ok(()),
                }
            }
            Step::Exec(e) => e.check(),
            Step::Rotate | Step::Retire | Step::Reopen | Step::ClearFault => Ok(()),
        }
    }
}

impl FaultTarget {
    /// Why the target alone is invalid, if it is: an empty sector range, a file name that is
    /// not a plain relative path.
    pub(super) fn problem(&self) -> Option<String> {
        match self {
            FaultTarget::Sectors([_, 0]) => {
                Some("a sector range needs a count of at least 1".into())
            }
            FaultTarget::File(name) => path_problem(name).map(|why| format!("file: {why}")),
            _ => None,
        }
    }
}

/// `value` in `min..=max`, else an error naming `field`.
fn check_range(
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), (&'static str, String)> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err((
            field,
            format!("expected an integer from {min} to {max}, got {value}"),
        ))
    }
}

impl SizeRange {
    /// The range is ordered, holds the payload header and stays under the record limit.
    pub(super) fn check(&self) -> Result<(), String> {
        let min_allowed = PAYLOAD_HEADER_BYTES as u64;
        if self.min_bytes > self.max_bytes {
            return Err(format!(
                "the smallest size {} is larger than the largest {}",
                self.min_bytes, self.max_bytes
            ));
        }
        if self.min_bytes < min_allowed {
            return Err(format!(
                "record size {} is smaller than the {min_allowed}-byte payload header",
                self.min_bytes
            ));
        }
        if self.max_bytes > MAX_RECORD_BYTES {
            return Err(format!(
                "record size {} is larger than the limit of {MAX_RECORD_BYTES} bytes",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

impl FileOp {
    /// The paths are valid, a created file is not too large, a rename changes the name.
    pub(super) fn check(&self) -> Result<(), String> {
        let check_path = |field: &str, p: &str| {
            path_problem(p).map_or(Ok(()), |why| Err(format!("{field}: {why}")))
        };
        match self {
            FileOp::Create {
                path, size_bytes, ..
            } => {
                check_path("path", path)?;
                if *size_bytes > MAX_FILE_BYTES {
                    return Err(format!(
                        "size: {size_bytes} bytes is larger than the limit of {MAX_FILE_BYTES}"
                    ));
                }
                Ok(())
            }
            FileOp::Rename { from, to, .. } => {
                check_path("path", from)?;
                check_path("to", to)?;
                if from == to {
                    return Err("to: a rename onto the same name".to_string());
                }
                Ok(())
            }
            FileOp::Remove { path, .. } => check_path("path", path),
        }
    }
}

/// Why `path` cannot name a file of a workload, if it cannot: it must be usable in an ack label
/// and stay inside `root/files`.
pub(super) fn path_problem(path: &str) -> Option<String> {
    if !ack::is_valid_label_path(path) {
        return Some(format!(
            "invalid path {path:?}: use 1 to 200 characters among letters, digits, '.', '_', '-' \
             and '/'"
        ));
    }
    if path.starts_with('/') {
        return Some(format!("invalid path {path:?}: must be a relative path"));
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Some(format!(
            "invalid path {path:?}: empty, '.' and '..' components are not allowed"
        ));
    }
    None
}

/// Why `name` cannot name a workload, if it cannot: it is used in the start and end acks.
pub(super) fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (!ok).then(|| {
        format!(
            "invalid name {name:?}: use 1 to 64 characters among letters, digits, '.', '_' and '-'"
        )
    })
}
