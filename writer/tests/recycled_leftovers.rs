//! A recycled segment ends inside the leftover of a record from its earlier life: a fragment
//! with no header, after the zero padding of the new life's last block. That is a clean end of
//! the segment, never a torn tail: the log continues in the next segment, and no acknowledged
//! record of it is lost or called corrupt.

use powercut_writer::{recover, Journal, JournalOptions, Lsn, Preallocation};
use proptest::prelude::*;

const SEGMENT_BYTES: u64 = 64 * 1024;
/// Records of the first life: spans of 3,000 bytes; 20 of them end at 60,000, the last one
/// covering [57,000, 60,000).
const SMALL_PAYLOAD: usize = 3000 - 32;
/// Records of the second life: 9 spans of 6,000 bytes end at 54,000, so the last write block
/// (4 KiB) ends at 57,344: past the header of the first life's last record, inside its payload.
const LARGE_PAYLOAD: usize = 6000 - 32;

fn options() -> JournalOptions {
    JournalOptions {
        segment_bytes: SEGMENT_BYTES,
        preallocation: Preallocation::Zero,
        recycle_segments: true,
        prepare_ahead: false,
        ..JournalOptions::default()
    }
}

fn payload(lsn: Lsn, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (lsn as usize * 31 + i) as u8 | 1)
        .collect()
}

/// Life 1 of a file as segment 1 (20 small records), then segments 2 and 3, a retire of
/// segment 1, and life 2 of that file as segment 4 (9 large records), then `extra` records in
/// segment 5.
fn journal_with_leftovers(dir: &std::path::Path, extra: usize) -> Vec<(Lsn, Vec<u8>)> {
    let (journal, _) = Journal::open(dir, options()).unwrap();
    let mut acked = Vec::new();
    let mut append = |journal: &Journal, len: usize| {
        let lsn = journal.durable_lsn() + 1;
        let p = payload(lsn, len);
        assert_eq!(journal.append_durable(&p).unwrap(), lsn);
        acked.push((lsn, p));
    };
    for _ in 0..20 {
        append(&journal, SMALL_PAYLOAD);
    }
    journal.rotate().unwrap();
    append(&journal, SMALL_PAYLOAD);
    journal.rotate().unwrap();
    append(&journal, SMALL_PAYLOAD);
    assert_eq!(journal.retire_before(22).unwrap(), 1, "segment 1 retired");
    journal.rotate().unwrap();
    for _ in 0..9 {
        append(&journal, LARGE_PAYLOAD);
    }
    journal.rotate().unwrap();
    for _ in 0..extra {
        append(&journal, LARGE_PAYLOAD);
    }
    journal.close().unwrap();
    acked
}

fn assert_recovers_every_acked_record(dir: &std::path::Path, acked: &[(Lsn, Vec<u8>)]) {
    let recovery = recover(dir).unwrap_or_else(|e| panic!("the engine's own journal: {e}"));
    let first = recovery.records.first().map_or(0, |r| r.lsn);
    for (lsn, payload) in acked.iter().filter(|(lsn, _)| *lsn >= first) {
        let r = recovery.records.iter().find(|r| r.lsn == *lsn);
        assert!(r.is_some(), "acked LSN {lsn} lost: {recovery}");
        assert!(
            r.is_some_and(|r| &r.payload == payload),
            "acked LSN {lsn} changed"
        );
    }
    assert_eq!(recovery.last_lsn(), acked.last().unwrap().0);
    assert_eq!(recovery.truncated_tail, None, "{recovery}");
}

#[test]
fn a_recycled_segment_ending_in_leftovers_is_a_clean_end() {
    for extra in [1, 2, 5] {
        let dir = tempfile::tempdir().unwrap();
        let acked = journal_with_leftovers(dir.path(), extra);
        assert_recovers_every_acked_record(dir.path(), &acked);
        // Reopening continues after the last acknowledged record, in the newest segment.
        let (journal, report) = Journal::open(dir.path(), options()).unwrap();
        assert_eq!(report.retired_segments, 0, "{report}");
        let next = acked.last().unwrap().0 + 1;
        assert_eq!(journal.append_durable(b"after reopen").unwrap(), next);
        journal.close().unwrap();
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Clients appending at once (several groups in flight), each its payload sizes in turn.
    Append(Vec<Vec<usize>>),
    Rotate,
    /// Retire every sealed segment but the newest.
    Retire,
}

fn step() -> impl Strategy<Value = Step> {
    let sizes = proptest::collection::vec(0usize..7000, 1..12);
    prop_oneof![
        6 => proptest::collection::vec(sizes, 1..5).prop_map(Step::Append),
        1 => Just(Step::Rotate),
        2 => Just(Step::Retire),
    ]
}

/// Runs `step` on a freshly reopened journal and returns the records it acknowledged.
fn run_step(dir: &std::path::Path, step: &Step, groups_in_flight: usize) -> Vec<(Lsn, Vec<u8>)> {
    let options = JournalOptions {
        max_groups_in_flight: groups_in_flight,
        ..options()
    };
    let (journal, _) = Journal::open(dir, options).unwrap();
    let acked = std::sync::Mutex::new(Vec::new());
    match step {
        Step::Append(clients) => std::thread::scope(|s| {
            for (client, sizes) in clients.iter().enumerate() {
                let (journal, acked) = (&journal, &acked);
                s.spawn(move || {
                    for (i, &len) in sizes.iter().enumerate() {
                        let p = payload((client * 1000 + i) as Lsn, len);
                        let lsn = journal.append_durable(&p).unwrap();
                        acked.lock().unwrap().push((lsn, p));
                    }
                });
            }
        }),
        Step::Rotate => journal.rotate().unwrap(),
        Step::Retire => {
            journal.retire_before(journal.durable_lsn() + 1).unwrap();
        }
    }
    journal.close().unwrap();
    acked.into_inner().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The engine never calls its own journal corrupt nor loses an acknowledged record, through
    /// recycling, retirement and concurrent groups, reopened after every step.
    #[test]
    fn recycling_with_concurrent_groups_recovers_exactly_the_acknowledged_records(
        steps in proptest::collection::vec(step(), 1..24),
        groups_in_flight in 1usize..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut acked: Vec<(Lsn, Vec<u8>)> = Vec::new();
        for step in &steps {
            acked.extend(run_step(dir.path(), step, groups_in_flight));
            acked.sort_by_key(|(lsn, _)| *lsn);
            if !acked.is_empty() {
                assert_recovers_every_acked_record(dir.path(), &acked);
            }
            let recovery = recover(dir.path()).unwrap();
            let first = recovery.records.first().map_or(1, |r| r.lsn);
            for (i, r) in recovery.records.iter().enumerate() {
                prop_assert_eq!(r.lsn, first + i as u64, "LSNs contiguous");
            }
        }
    }
}
