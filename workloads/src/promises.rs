//! What a run's acks promise, judged: the one translation from acks to the judge's promises,
//! used by the host oracles on crash states and by the guest after a power cut (I8).

use powercut_judge::files::{judge_files, FilePromise, FileSeen};
use powercut_judge::records::{judge_recovery, Provenance, RecordPromise, RecordRules};
use powercut_judge::Finding;

use crate::ack::{self, Ack};
use crate::payload;

pub use powercut_judge::records::RecoveredRecord;

/// Payloads of a workload derive from its seed (I3).
#[derive(Debug, Clone, Copy)]
pub struct SeededPayloads(pub u64);

impl Provenance for SeededPayloads {
    fn written(&self, _lsn: u64, payload: &[u8]) -> Result<(), String> {
        payload::verify(self.0, payload)
            .map(|_| ())
            .map_err(|reason| reason.to_string())
    }
}

/// The judge's findings on one recovery (I1-I4, I9) against `acks` (in log order), each with
/// the ack it is about. `in_flight`, the ack after the cut, counts only as a retirement that
/// may already have happened; `recovered` is `Err` with recovery's message when it failed.
pub fn judge_records<'a>(
    seed: u64,
    acks: &'a [Ack],
    in_flight: Option<&'a Ack>,
    recovered: Result<&[RecoveredRecord<'_>], &str>,
) -> Vec<(Finding, Option<&'a Ack>)> {
    let (promised_by, promises): (Vec<&Ack>, Vec<RecordPromise>) = acks
        .iter()
        .filter_map(|ack| Some((ack, ack.record_promise()?)))
        .unzip();
    let rules = RecordRules {
        promises: &promises,
        retired_before: ack::retired_before(acks.iter().chain(in_flight)),
        provenance: &SeededPayloads(seed),
    };
    judge_recovery(&rules, recovered)
        .into_iter()
        .map(|finding| {
            let about = finding.promise.map(|i| promised_by[i]);
            (finding, about)
        })
        .collect()
}

/// The judge's findings on the files of a state (I6) against `acks`; the file operation of
/// `in_flight` may show whole or not at all. `look` tells what a path (relative to the files
/// directory) holds.
pub fn judge_acked_files<'a>(
    acks: &'a [Ack],
    in_flight: Option<&Ack>,
    look: &mut dyn FnMut(&str) -> FileSeen,
) -> Vec<(Finding, Option<&'a Ack>)> {
    let (promised_by, promises): (Vec<&Ack>, Vec<FilePromise>) = acks
        .iter()
        .filter_map(|ack| Some((ack, ack.file_promise()?)))
        .unzip();
    let in_flight = in_flight.and_then(Ack::file_promise);
    judge_files(&promises, in_flight.as_ref(), look)
        .into_iter()
        .map(|finding| {
            let about = finding.promise.map(|i| promised_by[i]);
            (finding, about)
        })
        .collect()
}

/// What `path` holds on the real file system, as the judge asks.
pub fn file_seen(path: &std::path::Path) -> FileSeen {
    if std::fs::symlink_metadata(path).is_err() {
        return FileSeen::Absent;
    }
    match file_crc(path) {
        Ok(crc) => FileSeen::Contents(crc),
        Err(e) => FileSeen::Unreadable(e.to_string()),
    }
}

fn file_crc(path: &std::path::Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut crc = 0u32;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}
