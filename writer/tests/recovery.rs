//! Recovery on damaged journals: torn tails at every byte, garbage, stale records of recycled
//! segments, torn groups, and mid-log corruption.

mod common;

use common::*;
use powercut_writer::{recover, Journal, JournalError, JournalOptions, Preallocation};

/// Writes `count` records one group each (dsync, single appender) and closes.
fn build(options: &JournalOptions, count: u64, len: usize) -> tempfile::TempDir {
    let dir = scratch();
    let (journal, _) = Journal::open(dir.path(), options.clone()).unwrap();
    for lsn in 1..=count {
        assert_eq!(journal.append_durable(&payload(lsn, len)).unwrap(), lsn);
    }
    journal.close().unwrap();
    dir
}

#[test]
fn last_record_cut_at_every_byte() {
    for preallocation in [Preallocation::Zero, Preallocation::None] {
        let options = JournalOptions {
            preallocation,
            ..small_options()
        };
        let len = 300;
        let dir = build(&options, 5, len);
        let full = recover(dir.path()).unwrap();
        assert_eq!(full.records.len(), 5);
        let last = full.records.last().unwrap().clone();
        let path = segment_file(dir.path(), last.segment);
        let original = read_bytes(&path);
        let record_end = last.offset as usize + 32 + len;
        for cut in last.offset as usize..record_end {
            let mut damaged = original.clone();
            if preallocation == Preallocation::None {
                damaged.truncate(cut);
            } else {
                damaged[cut..record_end].fill(0);
            }
            std::fs::write(&path, &damaged).unwrap();
            let recovery = recover(dir.path())
                .unwrap_or_else(|err| panic!("{preallocation:?} cut at {cut}: {err}"));
            assert_eq!(recovery.records.len(), 4, "cut at {cut}");
            assert_eq!(recovery.records, full.records[..4]);
            if cut == last.offset as usize {
                assert_eq!(recovery.truncated_tail, None, "nothing of the record left");
            } else {
                let tail = recovery.truncated_tail.expect("torn tail reported");
                assert_eq!(tail.segment, last.segment);
                assert_eq!(tail.offset, last.offset);
                assert!(
                    tail.discarded_bytes > 0 && tail.discarded_bytes <= (cut as u64 - last.offset)
                );
            }
            // The journal continues after the torn tail (checked on a sample of cuts).
            if cut % 23 == 0 {
                let copy = copy_dir(dir.path());
                let again = reopen_and_append(copy.path(), options.clone(), 4, b"after the tail");
                assert_eq!(again.truncated_tail, None, "{again}");
            }
        }
        std::fs::write(&path, &original).unwrap();
    }
}

#[test]
fn garbage_after_the_tail_is_a_torn_tail() {
    let dir = build(&small_options(), 10, 500);
    let full = recover(dir.path()).unwrap();
    let end = full.end;
    let path = segment_file(dir.path(), end.segment);
    let mut seed = 0x9e3779b97f4a7c15u64;
    let garbage: Vec<u8> = (0..777)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed as u8) | 0x80
        })
        .collect();
    write_bytes(&path, end.offset, &garbage);
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records, full.records);
    let tail = recovery.truncated_tail.unwrap();
    assert_eq!(
        (tail.segment, tail.offset, tail.discarded_bytes),
        (end.segment, end.offset, 777)
    );
    // Opening zeroes the garbage, so later records never meet it.
    let (journal, report) = Journal::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.zeroed_tail_bytes, 777);
    journal.append_durable(b"x").unwrap();
    journal.close().unwrap();
    let after = recover(dir.path()).unwrap();
    assert_eq!(after.records.len(), 11);
    assert_eq!(after.truncated_tail, None);
}

#[test]
fn zero_filled_preallocated_space_is_a_clean_end() {
    let dir = build(&small_options(), 3, 100);
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 3);
    assert_eq!(recovery.truncated_tail, None);
    assert!(!recovery.ended_at_stale_record);
    let file_bytes = recovery.segments[0].file_bytes;
    assert_eq!(file_bytes, 256 * 1024, "segment preallocated");
}

#[test]
fn stale_records_of_a_recycled_segment_are_never_returned() {
    let dir = build(&small_options(), 40, 1000);
    let full = recover(dir.path()).unwrap();
    assert_eq!(full.records.len(), 40);
    // Give the file a newer generation and a later index, as recycling does (the log then
    // starts at a retired LSN): every record in it is now stale.
    let path = segment_file(dir.path(), 1);
    let renamed = dir.path().join(format!("seg-{:016x}-{:08x}.wal", 5, 0x77));
    std::fs::rename(&path, &renamed).unwrap();
    for other in std::fs::read_dir(dir.path()).unwrap() {
        let other = other.unwrap().path();
        if other != renamed {
            std::fs::remove_file(other).unwrap();
        }
    }
    let stale = recover(dir.path()).unwrap();
    assert!(stale.records.is_empty(), "{stale}");
    assert!(stale.ended_at_stale_record);
    assert_eq!(stale.truncated_tail, None);
    // New short records end in the middle of a stale one: still a clean end.
    let (journal, _) = Journal::open(dir.path(), small_options()).unwrap();
    for i in 0..3u64 {
        journal.append_durable(&payload(1000 + i, 100)).unwrap();
    }
    drop(journal);
    let mixed = recover(dir.path()).unwrap();
    assert_eq!(mixed.records.len(), 3);
    assert!(mixed.records.iter().all(|r| r.payload.len() == 100));
    assert_eq!(mixed.truncated_tail, None, "{mixed}");
    assert!(mixed.ended_at_stale_record);
}

#[test]
fn flipped_bit_mid_log_is_a_hard_error() {
    let dir = build(&small_options(), 20, 200);
    let full = recover(dir.path()).unwrap();
    for victim in [0usize, 7, 18] {
        let record = &full.records[victim];
        let path = segment_file(dir.path(), record.segment);
        let original = read_bytes(&path);
        for byte in [4usize, 9, 20, 40, 100] {
            let mut damaged = original.clone();
            damaged[record.offset as usize + byte] ^= 0x10;
            std::fs::write(&path, &damaged).unwrap();
            match recover(dir.path()) {
                Err(JournalError::MidLogCorruption {
                    segment, offset, ..
                }) => {
                    assert_eq!((segment, offset), (record.segment, record.offset));
                }
                other => panic!("record {victim} byte {byte}: expected corruption, got {other:?}"),
            }
            assert!(
                Journal::open(dir.path(), small_options()).is_err(),
                "open refuses"
            );
        }
        std::fs::write(&path, &original).unwrap();
    }
    // The last record has no successor to vouch for it: a flip there is a torn tail.
    let last = full.records.last().unwrap();
    let path = segment_file(dir.path(), last.segment);
    let mut damaged = read_bytes(&path);
    damaged[last.offset as usize + 50] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 19);
    assert!(recovery.truncated_tail.is_some());
}

#[test]
fn torn_group_with_lost_middle_sector_is_a_torn_tail() {
    let dir = scratch();
    let (journal, _) = Journal::open(dir.path(), small_options()).unwrap();
    for lsn in 1..=10 {
        journal.append_durable(&payload(lsn, 600)).unwrap();
    }
    for lsn in 11..=20 {
        journal.append(&payload(lsn, 600)).unwrap();
    }
    journal.commit().unwrap();
    journal.close().unwrap();
    let full = recover(dir.path()).unwrap();
    assert_eq!(full.records.len(), 20);
    // The group 11..=20 was one write; lose the sector holding record 12's header.
    let victim = &full.records[11];
    let path = segment_file(dir.path(), victim.segment);
    let sector = victim.offset / 512 * 512;
    write_bytes(&path, sector, &[0u8; 512]);
    let recovery = recover(dir.path()).unwrap();
    let first_bad = recovery.records.len();
    assert!((10..=11).contains(&first_bad), "{recovery}");
    assert_eq!(recovery.records[..], full.records[..first_bad]);
    let tail = recovery.truncated_tail.expect("torn tail");
    assert!(tail.discarded_bytes > 0);
    // A lost sector in an acknowledged group followed by a later group is corruption.
    let dir2 = scratch();
    let (journal, _) = Journal::open(dir2.path(), small_options()).unwrap();
    for lsn in 1..=10 {
        journal.append_durable(&payload(lsn, 600)).unwrap();
    }
    journal.close().unwrap();
    let full = recover(dir2.path()).unwrap();
    let victim = &full.records[3];
    let path = segment_file(dir2.path(), victim.segment);
    write_bytes(&path, victim.offset, &[0u8; 8]);
    assert!(matches!(
        recover(dir2.path()),
        Err(JournalError::MidLogCorruption { .. })
    ));
}

/// Writes a segment file by hand: records (offset, lsn, synced, generation, payload).
fn craft_segment(
    dir: &std::path::Path,
    generation: u32,
    records: &[(usize, u64, u64, u32, Vec<u8>)],
) {
    use powercut_writer::record::{encode_record, record_span_bytes};
    let mut data = vec![0u8; 64 * 1024];
    for (offset, lsn, synced, record_generation, payload) in records {
        let span = record_span_bytes(payload.len());
        encode_record(
            &mut data[*offset..*offset + span],
            *lsn,
            *synced,
            *record_generation,
            payload,
        );
    }
    std::fs::write(
        dir.join(format!("seg-0000000000000001-{generation:08x}.wal")),
        data,
    )
    .unwrap();
}

#[test]
fn zero_gap_between_groups_is_stepped_over_only_to_the_next_lsn() {
    let dir = scratch();
    // Group 1 ends mid-block; group 2 started at the next 4 KiB block.
    craft_segment(
        dir.path(),
        5,
        &[(0, 1, 0, 5, vec![1; 100]), (4096, 2, 0, 5, vec![2; 100])],
    );
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(
        recovery
            .records
            .iter()
            .map(|r| r.offset)
            .collect::<Vec<_>>(),
        vec![0, 4096]
    );
    assert_eq!(recovery.truncated_tail, None);

    // The record after the gap is not the next LSN (LSN 2 was lost): a torn tail, and the
    // later record was in flight (synced_lsn 0), so not corruption.
    craft_segment(
        dir.path(),
        5,
        &[(0, 1, 0, 5, vec![1; 100]), (4096, 3, 0, 5, vec![3; 100])],
    );
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 1);
    let tail = recovery.truncated_tail.unwrap();
    assert_eq!(tail.offset, 136);
    assert_eq!(tail.discarded_bytes, 4096 + 136 - 136);

    // Same, but the later record shows LSN 2 had been durable: corruption.
    craft_segment(
        dir.path(),
        5,
        &[(0, 1, 0, 5, vec![1; 100]), (4096, 3, 2, 5, vec![3; 100])],
    );
    assert!(matches!(
        recover(dir.path()),
        Err(JournalError::MidLogCorruption { offset: 136, .. })
    ));

    // A gap that does not end on a sector boundary is not a group boundary.
    craft_segment(
        dir.path(),
        5,
        &[(0, 1, 0, 5, vec![1; 100]), (1000, 2, 0, 5, vec![2; 100])],
    );
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 1);
    assert!(recovery.truncated_tail.is_some());

    // A stale record (older generation) after the gap ends the log.
    craft_segment(
        dir.path(),
        5,
        &[(0, 1, 0, 5, vec![1; 100]), (4096, 2, 0, 4, vec![2; 100])],
    );
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 1);
    assert!(recovery.ended_at_stale_record);
    assert_eq!(recovery.truncated_tail, None);
}

#[test]
fn a_segment_renamed_to_another_generation_is_refused_not_overwritten() {
    let dir = build(&small_options(), 40, 1000);
    let path = segment_file(dir.path(), 1);
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let renamed = dir.path().join(format!("{}{:08x}.wal", &name[..21], 0x77));
    std::fs::rename(&path, &renamed).unwrap();
    let before = std::fs::read(&renamed).unwrap();
    let message = match recover(dir.path()) {
        Err(err @ JournalError::BadSegmentFile { .. }) => err.to_string(),
        other => panic!("a renamed segment read as stale: {other:?}"),
    };
    assert!(message.contains("renamed"), "{message}");
    assert!(
        message.contains(&name),
        "names the file to rename it back to: {message}"
    );
    assert!(Journal::open(dir.path(), small_options()).is_err());
    assert_eq!(
        std::fs::read(&renamed).unwrap(),
        before,
        "the records were touched"
    );
    std::fs::rename(&renamed, &path).unwrap();
    assert_eq!(recover(dir.path()).unwrap().records.len(), 40);
}
