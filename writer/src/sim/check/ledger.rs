//! What the checks know about the records (payloads written, acknowledgements, what the last
//! reopen recovered) and how the judge's findings on one recovery are made from it.

use std::collections::BTreeMap;

use powercut_judge::records::{judge_recovery, Provenance, RecordPromise, RecordRules, RunCrc};
use powercut_judge::Invariant;

use super::super::rng::{derive_seed, SplitMix64};
use super::report::SimInvariant;
use super::PAYLOAD_STREAM;
use crate::error::JournalError;
use crate::recovery::Recovery;
use crate::Lsn;

/// every power cut, after which LSNs past the recovered end are written again). Sequential
/// appends use the LSN as tag; concurrent ones, which learn their LSN only from the append,
/// a tag naming step, thread and sequence number. The first 12 bytes (when the payload is
/// that long) are the tag and the incarnation, the rest seeded bytes.
pub(super) fn payload_for(
    seed: u64,
    incarnation: u32,
    tag: u64,
    min_bytes: usize,
    max_bytes: usize,
) -> Vec<u8> {
    let mut rng = SplitMix64::new(derive_seed(
        seed,
        &[PAYLOAD_STREAM, u64::from(incarnation), tag],
    ));
    let len = min_bytes + rng.below((max_bytes - min_bytes) as u64 + 1) as usize;
    let mut payload = vec![0u8; len];
    rng.fill(&mut payload);
    if len >= 12 {
        payload[..8].copy_from_slice(&tag.to_le_bytes());
        payload[8..12].copy_from_slice(&incarnation.to_le_bytes());
    }
    payload
}

/// Tag of the `sequence`-th payload of `thread` in concurrent step `step` (the top bit keeps
/// it apart from LSNs).
pub(super) fn concurrent_tag(step: usize, thread: u32, sequence: u32) -> u64 {
    (1 << 63) | ((step as u64) << 40) | (u64::from(thread) << 24) | u64::from(sequence)
}

/// A payload as a report shows it: its length and, when it carries one, its identity.
pub(super) fn describe_payload(payload: &[u8]) -> String {
    if payload.len() >= 12 {
        let mut lsn = [0u8; 8];
        lsn.copy_from_slice(&payload[..8]);
        let mut incarnation = [0u8; 4];
        incarnation.copy_from_slice(&payload[8..12]);
        format!(
            "{} bytes tagged {:#x} incarnation {}",
            payload.len(),
            u64::from_le_bytes(lsn),
            u32::from_le_bytes(incarnation)
        )
    } else {
        format!("{} bytes", payload.len())
    }
}

fn describe_recovery(recovery: &Recovery) -> String {
    let first = recovery.records.first().map_or(0, |r| r.lsn);
    let tail = match recovery.truncated_tail {
        Some(tail) => format!(
            "truncated tail in segment {} at offset {} ({} bytes)",
            tail.segment, tail.offset, tail.discarded_bytes
        ),
        None => "no truncated tail".to_string(),
    };
    let segments: Vec<String> = recovery
        .segments
        .iter()
        .map(|s| format!("{}/gen {}/{} records", s.index, s.generation, s.records))
        .collect();
    format!(
        "recovered {} records (LSN {}..={}), {}, segments [{}]",
        recovery.records.len(),
        first,
        recovery.last_lsn(),
        tail,
        segments.join(", ")
    )
}

/// What the checks need to know about the records.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// The payload last written for each LSN.
    pub(super) written: BTreeMap<Lsn, Vec<u8>>,
    /// Every LSN up to this one is acknowledged.
    pub(super) acked: Lsn,
    /// Records below this LSN were released (`Retire`); 0 when none were.
    pub(super) released_below: Lsn,
    /// LSN the next append gets.
    pub(super) next_lsn: Lsn,
    /// What the last reopen recovered (I9: it must stay durable).
    pub(super) recovered: Option<RecordPromise>,
    /// Payloads whose append failed before it returned an LSN (concurrent appends under a
    /// fault): they may have been written under any LSN.
    pub(super) unplaced: Vec<Vec<u8>>,
    /// When the engine failed a call under an injected fault: the LSN acknowledged then. The
    /// acknowledgements since the last reopen are I7 promises from then on.
    pub(super) poisoned_at: Option<Lsn>,
    /// The crc of the acknowledged payloads from an LSN to another, kept from one crash
    /// state to the next so that each state extends it instead of hashing every payload
    /// since the last reopen again.
    pub(super) acked_crc: std::sync::Mutex<Option<AckedCrc>>,
}

/// crc32c of the payloads `first..=last`, concatenated in LSN order.
#[derive(Debug, Clone, Copy)]
pub(super) struct AckedCrc(RunCrc);

impl Provenance for Ledger {
    fn written(&self, lsn: u64, payload: &[u8]) -> Result<(), String> {
        match self.written.get(&lsn) {
            Some(written) if written.as_slice() == payload => Ok(()),
            _ if self.unplaced.iter().any(|p| p.as_slice() == payload) => Ok(()),
            Some(written) => Err(format!(
                "{} where {} was written",
                describe_payload(payload),
                describe_payload(written)
            )),
            None => Err(format!(
                "{}, and no record LSN {lsn} was ever written",
                describe_payload(payload)
            )),
        }
    }
}

impl Ledger {
    /// The promises a crash state is held to: what the last reopen recovered (I9) and the
    /// acknowledgements since (I1), from the first LSN not released.
    pub(super) fn promises(&self) -> Vec<RecordPromise> {
        let first_required = self.released_below.max(1);
        let mut promises: Vec<RecordPromise> = self.recovered.into_iter().collect();
        let first_acked = self
            .recovered
            .map_or(1, |r| r.last_lsn + 1)
            .max(first_required);
        if self.acked >= first_acked {
            // After an EIO the promise is I7's: the reopen recovers what was acknowledged.
            let invariant = match self.poisoned_at {
                Some(_) => Invariant::I7,
                None => Invariant::I1,
            };
            promises.extend(self.acked_promise(invariant, first_acked));
        }
        promises
    }

    /// The promise of the acknowledged records from `first` on (up to the first LSN without a
    /// payload), extended from the last one computed when it starts at the same LSN. Payloads
    /// of acknowledged LSNs never change, so the crc of a prefix stays right.
    fn acked_promise(&self, invariant: Invariant, first: Lsn) -> Option<RecordPromise> {
        let mut cache = self.acked_crc.lock().unwrap_or_else(|p| p.into_inner());
        let mut run = match *cache {
            Some(AckedCrc(run)) if run.first_lsn == first && run.last_lsn <= self.acked => run,
            _ => RunCrc::empty(first),
        };
        while run.last_lsn < self.acked {
            let next = run.last_lsn + 1;
            let Some(payload) = self.written.get(&next) else {
                break;
            };
            run.push(next, payload);
        }
        *cache = Some(AckedCrc(run));
        run.promise(invariant)
    }

    /// The judge's findings on one recovery.
    pub(super) fn verify(
        &self,
        result: Result<Recovery, JournalError>,
    ) -> Vec<(SimInvariant, String, String)> {
        let promises = self.promises();
        let rules = RecordRules {
            promises: &promises,
            retired_before: (self.released_below > 0).then_some(self.released_below),
            provenance: self,
        };
        let (findings, summary) = match &result {
            Ok(recovery) => {
                let records = recovery.judged_records();
                let findings = judge_recovery(&rules, Ok(&records));
                (findings, describe_recovery(recovery))
            }
            Err(err) => (judge_recovery(&rules, Err(&err.to_string())), String::new()),
        };
        findings
            .into_iter()
            .map(|finding| {
                let found = if summary.is_empty() {
                    finding.found
                } else {
                    format!("{}; {summary}", finding.found)
                };
                (
                    SimInvariant::Judged(finding.invariant),
                    finding.expected,
                    found,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_fixed_by_seed_incarnation_and_lsn() {
        let a = payload_for(1, 0, 5, 1, 700);
        assert_eq!(a, payload_for(1, 0, 5, 1, 700));
        assert_ne!(a, payload_for(1, 1, 5, 1, 700));
        assert_ne!(a, payload_for(2, 0, 5, 1, 700));
        for lsn in 1..200 {
            let p = payload_for(3, 2, lsn, 12, 40);
            assert!((12..=40).contains(&p.len()));
            assert_eq!(
                describe_payload(&p),
                format!("{} bytes tagged {lsn:#x} incarnation 2", p.len())
            );
        }
        assert_eq!(payload_for(3, 0, 1, 0, 0), Vec::<u8>::new());
    }
}
