//! I1-I4, I7, I8 and I9 on what one recovery returned: the promises about records, the shape of
//! the log, and where every recovered byte came from.

use std::collections::HashMap;

use crate::{Finding, Invariant, MAX_FINDINGS_PER_INVARIANT};

/// A promise that records `first_lsn..=last_lsn` are in the journal with payloads whose
/// concatenation has crc32c `crc32c`. Which invariant it belongs to says who made it: an
/// acknowledgement (I1), an acknowledgement before an injected fault (I7) or before a power cut
/// (I8), or a reopen's recovery (I9: what recovery returned must be durable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPromise {
    /// First LSN promised.
    pub first_lsn: u64,
    /// Last LSN promised (inclusive).
    pub last_lsn: u64,
    /// crc32c of the promised payloads, concatenated in LSN order.
    pub crc32c: u32,
    /// Which invariant the promise belongs to (who made it).
    pub invariant: Invariant,
}

impl RecordPromise {
    /// The promise for records `first_lsn..` with these payloads, in LSN order.
    pub fn of_payloads<'a>(
        invariant: Invariant,
        first_lsn: u64,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<RecordPromise> {
        let mut run = RunCrc::empty(first_lsn);
        for payload in payloads {
            run.push(run.last_lsn + 1, payload);
        }
        run.promise(invariant)
    }
}

/// The crc32c of consecutive records' payloads, concatenated in LSN order, grown one record at
/// a time: what acks and promises about records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCrc {
    /// First LSN of the run (at least 1).
    pub first_lsn: u64,
    /// Last LSN in the run; `first_lsn - 1` while it is empty.
    pub last_lsn: u64,
    /// crc32c of the payloads so far.
    pub crc32c: u32,
}

impl RunCrc {
    /// A run starting at `first_lsn` (at least 1), holding no record yet.
    pub fn empty(first_lsn: u64) -> RunCrc {
        assert!(first_lsn >= 1, "LSNs start at 1");
        RunCrc {
            first_lsn,
            last_lsn: first_lsn - 1,
            crc32c: 0,
        }
    }

    /// Adds record `lsn` when it is the next of the run; false, and nothing added, otherwise.
    pub fn push(&mut self, lsn: u64, payload: &[u8]) -> bool {
        if lsn != self.last_lsn + 1 {
            return false;
        }
        self.crc32c = crc32c::crc32c_append(self.crc32c, payload);
        self.last_lsn = lsn;
        true
    }

    /// The promise of `invariant` about the records of the run; None while it is empty.
    pub fn promise(&self, invariant: Invariant) -> Option<RecordPromise> {
        (self.last_lsn >= self.first_lsn).then_some(RecordPromise {
            first_lsn: self.first_lsn,
            last_lsn: self.last_lsn,
            crc32c: self.crc32c,
            invariant,
        })
    }
}

/// Where recovered payloads may come from (I3): each tier knows what it wrote.
pub trait Provenance {
    /// `Ok` when `payload` could have been written as record `lsn`; otherwise why not.
    fn written(&self, lsn: u64, payload: &[u8]) -> Result<(), String>;
}

/// One record as recovery returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredRecord<'a> {
    /// The record's LSN.
    pub lsn: u64,
    /// The record's payload.
    pub payload: &'a [u8],
}

/// What a state must show about its records.
#[derive(Clone, Copy)]
pub struct RecordRules<'a> {
    /// Promises in the order they were made.
    pub promises: &'a [RecordPromise],
    /// Records below this LSN may have been retired (the largest retirement acknowledged or in
    /// flight): the log may start later, at most here. `None`: nothing was retired.
    pub retired_before: Option<u64>,
    /// Where recovered payloads may come from (I3).
    pub provenance: &'a dyn Provenance,
}

impl std::fmt::Debug for RecordRules<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordRules")
            .field("promises", &self.promises.len())
            .field("retired_before", &self.retired_before)
            .finish_non_exhaustive()
    }
}

/// Looks recovered payloads up by LSN: by position when the LSNs are contiguous (the normal
/// case, no allocation), else through a map keeping the first record of each LSN.
enum ByLsn<'r, 'a> {
    Contiguous(&'r [RecoveredRecord<'a>]),
    Map(HashMap<u64, &'a [u8]>),
}

impl<'r, 'a> ByLsn<'r, 'a> {
    fn new(records: &'r [RecoveredRecord<'a>]) -> Self {
        let contiguous = records.windows(2).all(|w| w[1].lsn == w[0].lsn + 1);
        if contiguous {
            return ByLsn::Contiguous(records);
        }
        let mut map = HashMap::with_capacity(records.len());
        for record in records {
            map.entry(record.lsn).or_insert(record.payload);
        }
        ByLsn::Map(map)
    }

    fn get(&self, lsn: u64) -> Option<&'a [u8]> {
        match self {
            ByLsn::Contiguous(records) => {
                let first = records.first()?.lsn;
                let index = usize::try_from(lsn.checked_sub(first)?).ok()?;
                records.get(index).map(|r| r.payload)
            }
            ByLsn::Map(map) => map.get(&lsn).copied(),
        }
    }
}

/// Counts findings per invariant so a report keeps the first few of each.
#[derive(Default)]
struct Findings {
    list: Vec<Finding>,
}

impl Findings {
    fn room_for(&self, invariant: Invariant) -> bool {
        self.list
            .iter()
            .filter(|f| f.invariant == invariant)
            .count()
            < MAX_FINDINGS_PER_INVARIANT
    }

    fn push(
        &mut self,
        invariant: Invariant,
        promise: Option<usize>,
        expected: String,
        found: String,
    ) {
        if self.room_for(invariant) {
            self.list.push(Finding {
                invariant,
                promise,
                expected,
                found,
            });
        }
    }
}

/// The verdict on one recovery: `Err` is recovery's error message (I4), `Ok` the records it
/// returned in its order.
pub fn judge_recovery(
    rules: &RecordRules<'_>,
    recovered: Result<&[RecoveredRecord<'_>], &str>,
) -> Vec<Finding> {
    let records = match recovered {
        Ok(records) => records,
        Err(message) => {
            return vec![Finding {
                invariant: Invariant::I4,
                promise: None,
                expected: "recovery succeeds on a crash state (torn or dropped writes end in a \
                           truncated tail)"
                    .into(),
                found: format!("recovery error: {message}"),
            }]
        }
    };
    let mut findings = Findings::default();
    let floor = log_floor(rules, records);
    judge_promises(rules, records, floor, &mut findings);
    judge_shape(rules, records, floor, &mut findings);
    judge_provenance(rules, records, &mut findings);
    findings.list
}

/// The LSN the log must start at: 1, or where recovery started if that is at most the largest
/// retirement (records below it may be gone).
fn log_floor(rules: &RecordRules<'_>, records: &[RecoveredRecord<'_>]) -> u64 {
    let retired_before = rules.retired_before.unwrap_or(1).max(1);
    records
        .first()
        .map_or(1, |r| r.lsn)
        .clamp(1, retired_before)
}

/// I1/I7/I8/I9: every promised record is there with the promised bytes. A promise cut by a
/// retirement is checked from the floor on, without its crc (which covers retired records too).
fn judge_promises(
    rules: &RecordRules<'_>,
    records: &[RecoveredRecord<'_>],
    floor: u64,
    findings: &mut Findings,
) {
    let by_lsn = ByLsn::new(records);
    for (index, promise) in rules.promises.iter().enumerate() {
        if promise.last_lsn < floor || !findings.room_for(promise.invariant) {
            continue;
        }
        let expected = format!(
            "records {}..={} with crc32c {:08x}",
            promise.first_lsn, promise.last_lsn, promise.crc32c
        );
        let from = promise.first_lsn.max(floor);
        let span = promise.last_lsn - from + 1;
        if span > records.len() as u64 {
            let found = format!(
                "{span} promised records but only {} recovered",
                records.len()
            );
            findings.push(promise.invariant, Some(index), expected, found);
            continue;
        }
        let mut missing = Vec::new();
        let mut crc = 0u32;
        for lsn in from..=promise.last_lsn {
            match by_lsn.get(lsn) {
                Some(payload) => crc = crc32c::crc32c_append(crc, payload),
                None if missing.len() < 10 => missing.push(lsn.to_string()),
                None => {}
            }
        }
        if !missing.is_empty() {
            let found = format!("missing LSN {}", missing.join(", "));
            findings.push(promise.invariant, Some(index), expected, found);
        } else if from == promise.first_lsn && crc != promise.crc32c {
            let culprit = (from..=promise.last_lsn).find_map(|lsn| {
                let payload = by_lsn.get(lsn)?;
                let reason = rules.provenance.written(lsn, payload).err()?;
                Some(format!("; first foreign record: LSN {lsn} ({reason})"))
            });
            let found = format!(
                "recovered bytes have crc32c {crc:08x}{}",
                culprit.unwrap_or_default()
            );
            findings.push(promise.invariant, Some(index), expected, found);
        }
    }
}

/// I2: exactly floor..n, no hole, duplicate or reorder, and n reaches every promise.
fn judge_shape(
    rules: &RecordRules<'_>,
    records: &[RecoveredRecord<'_>],
    floor: u64,
    findings: &mut Findings,
) {
    let misplaced = records
        .iter()
        .enumerate()
        .find(|(position, record)| record.lsn != floor + *position as u64);
    if let Some((position, record)) = misplaced {
        findings.push(
            Invariant::I2,
            None,
            format!(
                "LSN {} at position {position} (records exactly {floor}..n)",
                floor + position as u64
            ),
            format!(
                "LSN {} at position {position} (a hole, duplicate or reorder; {} records \
                 recovered)",
                record.lsn,
                records.len()
            ),
        );
    }
    let furthest = rules
        .promises
        .iter()
        .enumerate()
        .max_by_key(|(_, promise)| promise.last_lsn);
    if let Some((index, promise)) = furthest {
        let end = records.last().map_or(0, |r| r.lsn);
        if end < promise.last_lsn {
            findings.push(
                Invariant::I2,
                Some(index),
                format!("records up to at least LSN {}", promise.last_lsn),
                format!("the log ends at LSN {end} ({} records)", records.len()),
            );
        }
    }
}

/// I3: every recovered payload was written, as that record.
fn judge_provenance(
    rules: &RecordRules<'_>,
    records: &[RecoveredRecord<'_>],
    findings: &mut Findings,
) {
    for record in records {
        if !findings.room_for(Invariant::I3) {
            return;
        }
        if let Err(reason) = rules.provenance.written(record.lsn, record.payload) {
            findings.push(
                Invariant::I3,
                None,
                "every recovered payload was written as that record".into(),
                format!(
                    "LSN {} ({} bytes): {reason}",
                    record.lsn,
                    record.payload.len()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payload of LSN n: n repeated, 4 bytes.
    fn payload(lsn: u64) -> Vec<u8> {
        vec![lsn as u8; 4]
    }

    #[test]
    fn a_run_crc_grows_by_the_next_record_only() {
        let mut run = RunCrc::empty(3);
        assert_eq!(run.promise(Invariant::I1), None);
        assert!(run.push(3, &payload(3)));
        assert!(!run.push(5, &payload(5)), "a gap is refused");
        assert!(!run.push(3, &payload(3)), "so is a repeat");
        assert!(run.push(4, &payload(4)));
        let whole = [payload(3), payload(4)].concat();
        assert_eq!(
            run.promise(Invariant::I9),
            Some(RecordPromise {
                first_lsn: 3,
                last_lsn: 4,
                crc32c: crc32c::crc32c(&whole),
                invariant: Invariant::I9,
            })
        );
        let of_payloads = RecordPromise::of_payloads(
            Invariant::I9,
            3,
            [payload(3), payload(4)].iter().map(|p| p.as_slice()),
        );
        assert_eq!(of_payloads, run.promise(Invariant::I9));
    }

    struct Exact;
    impl Provenance for Exact {
        fn written(&self, lsn: u64, payload: &[u8]) -> Result<(), String> {
            if payload == super::tests::payload(lsn).as_slice() {
                Ok(())
            } else {
                Err("not written".into())
            }
        }
    }

    fn promise(invariant: Invariant, first: u64, last: u64) -> RecordPromise {
        let payloads: Vec<Vec<u8>> = (first..=last).map(payload).collect();
        RecordPromise::of_payloads(invariant, first, payloads.iter().map(Vec::as_slice)).unwrap()
    }

    fn judge(
        promises: &[RecordPromise],
        retired_before: Option<u64>,
        records: &[(u64, Vec<u8>)],
    ) -> Vec<(Invariant, Option<usize>)> {
        let recovered: Vec<RecoveredRecord<'_>> = records
            .iter()
            .map(|(lsn, p)| RecoveredRecord {
                lsn: *lsn,
                payload: p,
            })
            .collect();
        let rules = RecordRules {
            promises,
            retired_before,
            provenance: &Exact,
        };
        judge_recovery(&rules, Ok(&recovered))
            .into_iter()
            .map(|f| (f.invariant, f.promise))
            .collect()
    }

    fn log(lsns: impl IntoIterator<Item = u64>) -> Vec<(u64, Vec<u8>)> {
        lsns.into_iter().map(|l| (l, payload(l))).collect()
    }

    #[test]
    fn every_promise_kept_passes() {
        let promises = [promise(Invariant::I1, 1, 3), promise(Invariant::I9, 4, 5)];
        assert!(judge(&promises, None, &log(1..=6)).is_empty());
    }

    #[test]
    fn a_missing_record_breaks_the_promise_that_made_it() {
        let promises = [promise(Invariant::I1, 1, 3), promise(Invariant::I9, 4, 5)];
        let found = judge(&promises, None, &log(1..=4));
        assert!(found.contains(&(Invariant::I9, Some(1))), "{found:?}");
        assert!(found.contains(&(Invariant::I2, Some(1))), "{found:?}");
        assert!(!found.iter().any(|(i, _)| *i == Invariant::I1), "{found:?}");
    }

    #[test]
    fn other_bytes_break_the_crc_and_provenance() {
        let promises = [promise(Invariant::I1, 1, 2)];
        let mut records = log(1..=2);
        records[1].1 = vec![9; 4];
        let found = judge(&promises, None, &records);
        assert_eq!(found, vec![(Invariant::I1, Some(0)), (Invariant::I3, None)]);
    }

    #[test]
    fn holes_duplicates_and_late_starts_are_i2() {
        assert_eq!(judge(&[], None, &log([1, 3])), vec![(Invariant::I2, None)]);
        assert_eq!(judge(&[], None, &log([1, 1])), vec![(Invariant::I2, None)]);
        assert_eq!(judge(&[], None, &log([2, 3])), vec![(Invariant::I2, None)]);
        assert_eq!(judge(&[], None, &log([0])), vec![(Invariant::I2, None)]);
    }

    #[test]
    fn retirement_lets_the_log_start_later_but_not_past_it() {
        let promises = [promise(Invariant::I1, 1, 6)];
        assert!(judge(&promises, Some(4), &log(4..=6)).is_empty());
        assert!(judge(&promises, Some(4), &log(3..=6)).is_empty());
        let found = judge(&promises, Some(4), &log(5..=6));
        assert!(found.contains(&(Invariant::I1, Some(0))), "{found:?}");
        assert!(found.contains(&(Invariant::I2, None)), "{found:?}");
    }

    #[test]
    fn recovery_error_is_i4_alone() {
        let rules = RecordRules {
            promises: &[],
            retired_before: None,
            provenance: &Exact,
        };
        let found = judge_recovery(&rules, Err("bad checksum"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].invariant, Invariant::I4);
        assert!(found[0].found.contains("bad checksum"));
    }

    #[test]
    fn findings_per_invariant_are_bounded() {
        let records: Vec<(u64, Vec<u8>)> = (1..=50).map(|l| (l, vec![0xee; 3])).collect();
        let found = judge(&[], None, &records);
        assert_eq!(found.len(), MAX_FINDINGS_PER_INVARIANT);
    }

    proptest::proptest! {
        /// A log that holds exactly the written records 1..=n never fails, whatever prefix of
        /// it was promised and in how many groups.
        #[test]
        fn a_faithful_log_passes(n in 1u64..60, cuts in proptest::collection::vec(1u64..60, 0..6)) {
            let mut bounds: Vec<u64> = cuts.into_iter().filter(|c| *c <= n).collect();
            bounds.push(n);
            bounds.sort_unstable();
            bounds.dedup();
            let mut promises = Vec::new();
            let mut first = 1;
            for last in bounds {
                promises.push(promise(Invariant::I1, first, last));
                first = last + 1;
            }
            proptest::prop_assert!(judge(&promises, None, &log(1..=n)).is_empty());
        }

        /// Dropping any one promised record is always caught, as I1 of its promise.
        #[test]
        fn any_lost_record_is_caught(n in 2u64..40, lost in 1u64..40) {
            let lost = lost.min(n);
            let promises = [promise(Invariant::I1, 1, n)];
            let records = log((1..=n).filter(|l| *l != lost));
            let found = judge(&promises, None, &records);
            proptest::prop_assert!(found.contains(&(Invariant::I1, Some(0))));
        }
    }
}
