//! I5: which records a mid-log corruption probe may damage, and its verdict.
//!
//! Damage in the last promised group of a log cannot be told from a torn write of that group
//! (nothing written later vouches for it), so only a record inside a promised group that ends
//! before the last recovered record is a candidate.

use crate::records::RecordPromise;
use crate::{Finding, Invariant};

/// Positions in `recovered_lsns` (the LSNs recovery returned, in order) of the records the probe
/// may damage, nearest the middle of the log first: each lies in a promised group that ends
/// before the last recovered LSN, and has another recovered record after it.
pub fn mid_log_candidates(promises: &[RecordPromise], recovered_lsns: &[u64]) -> Vec<usize> {
    let Some(&last_lsn) = recovered_lsns.last() else {
        return Vec::new();
    };
    let group_end = |lsn: u64| {
        promises
            .iter()
            .find(|p| (p.first_lsn..=p.last_lsn).contains(&lsn))
            .map(|p| p.last_lsn)
    };
    let mut order: Vec<usize> = (0..recovered_lsns.len().saturating_sub(1))
        .filter(|&i| group_end(recovered_lsns[i]).is_some_and(|end| end < last_lsn))
        .collect();
    let middle = recovered_lsns.len() / 2;
    order.sort_by_key(|&i| i.abs_diff(middle));
    order
}

/// The verdict once a damaged copy was recovered: `where_damaged` says what the probe did,
/// `recovered` is `Err` when recovery refused the copy (as it must), else what it returned.
pub fn mid_log_verdict(where_damaged: &str, recovered: Result<String, String>) -> Option<Finding> {
    let what_recovery_did = recovered.ok()?;
    Some(Finding {
        invariant: Invariant::I5,
        promise: None,
        expected: format!("recovery error ({where_damaged})"),
        found: what_recovery_did,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(first_lsn: u64, last_lsn: u64) -> RecordPromise {
        RecordPromise {
            first_lsn,
            last_lsn,
            crc32c: 0,
            invariant: Invariant::I1,
        }
    }

    #[test]
    fn only_records_of_groups_followed_by_a_later_group_are_candidates() {
        let promises = [group(1, 2), group(3, 5)];
        let lsns = [1, 2, 3, 4, 5];
        let mut found = mid_log_candidates(&promises, &lsns);
        found.sort_unstable();
        assert_eq!(found, vec![0, 1]);
        assert!(mid_log_candidates(&[group(1, 5)], &lsns).is_empty());
        assert!(mid_log_candidates(&promises, &[]).is_empty());
    }

    #[test]
    fn refusal_passes_and_acceptance_is_i5() {
        assert_eq!(mid_log_verdict("bit 3", Err("crc".into())), None);
        let finding = mid_log_verdict("bit 3", Ok("5 records".into())).unwrap();
        assert_eq!(finding.invariant, Invariant::I5);
    }
}
