//! Basic behaviour of the journal on the host's file system.

mod common;

use std::sync::Arc;

use common::{join_acked, reopen_and_append, scratch, small_options};
use powercut_writer::{recover, Durability, IoPathChoice, Journal, JournalOptions, Preallocation};

fn payload(lsn: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (lsn as usize * 31 + i * 7) as u8)
        .collect()
}

#[test]
fn append_commit_recover_all_modes() {
    for durability in [Durability::Dsync, Durability::Fdatasync] {
        for preallocation in [
            Preallocation::Zero,
            Preallocation::Fallocate,
            Preallocation::None,
        ] {
            for io_path in [IoPathChoice::Auto, IoPathChoice::Pwritev2] {
                let dir = scratch();
                let options = JournalOptions {
                    durability,
                    preallocation,
                    io_path,
                    ..small_options()
                };
                let (journal, report) = Journal::open(dir.path(), options.clone()).unwrap();
                assert!(report.direct_io, "O_DIRECT expected on /var/tmp: {report}");
                let mut expected = Vec::new();
                for lsn in 1..=300u64 {
                    let data = payload(lsn, (lsn as usize * 37) % 3000);
                    assert_eq!(journal.append(&data).unwrap(), lsn);
                    expected.push(data);
                    if lsn % 17 == 0 {
                        assert_eq!(journal.commit().unwrap(), lsn);
                    }
                }
                journal.close().unwrap();
                let recovery = recover(dir.path()).unwrap();
                assert_eq!(
                    recovery.records.len(),
                    300,
                    "{durability:?} {preallocation:?}"
                );
                assert!(recovery.truncated_tail.is_none(), "{recovery}");
                for (record, data) in recovery.records.iter().zip(&expected) {
                    assert_eq!(&record.payload, data);
                }
                assert!(recovery.segments.len() > 1, "rotation expected");
                if preallocation == Preallocation::None {
                    // Closed append-mode segments are truncated to their logical size.
                    let last = recovery.records.last().unwrap();
                    let seg = recovery
                        .segments
                        .iter()
                        .find(|s| s.index == last.segment)
                        .unwrap();
                    let end = last.offset + 32 + last.payload.len() as u64;
                    assert!(
                        seg.file_bytes >= end && seg.file_bytes < end + 8,
                        "{seg:?} {end}"
                    );
                }
                // Reopen and continue.
                reopen_and_append(dir.path(), options, 300, b"more");
            }
        }
    }
}

#[test]
fn concurrent_appenders_share_group_commits() {
    for durability in [Durability::Dsync, Durability::Fdatasync] {
        for max_groups_in_flight in [1, 2, 4] {
            let dir = scratch();
            let options = JournalOptions {
                durability,
                max_groups_in_flight,
                ..small_options()
            };
            let (journal, _) = Journal::open(dir.path(), options).unwrap();
            let journal = Arc::new(journal);
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let journal = Arc::clone(&journal);
                    std::thread::spawn(move || {
                        let mut lsns = Vec::new();
                        for i in 0..150u64 {
                            let len = ((t * 7919 + i as usize * 104729) % 6000) + 1;
                            let data = payload(t as u64 * 10_000 + i, len);
                            let lsn = journal.append_durable(&data).unwrap();
                            assert!(journal.durable_lsn() >= lsn);
                            lsns.push((lsn, data));
                        }
                        lsns
                    })
                })
                .collect();
            let all = join_acked(threads);
            let stats = journal.stats();
            println!("{durability:?} depth {max_groups_in_flight}: {stats:?}");
            assert_eq!(stats.records, 1200);
            if max_groups_in_flight == 1 {
                assert_eq!(stats.fresh_block_groups, 0);
            }
            assert!(stats.groups <= 1200);
            Arc::into_inner(journal).unwrap().close().unwrap();
            let recovery = recover(dir.path()).unwrap();
            assert_eq!(
                recovery.records.len(),
                1200,
                "{durability:?} depth {max_groups_in_flight}"
            );
            assert!(recovery.truncated_tail.is_none());
            for (record, (lsn, data)) in recovery.records.iter().zip(&all) {
                assert_eq!(record.lsn, *lsn);
                assert_eq!(&record.payload, data);
            }
        }
    }
}

#[test]
fn rotation_recycles_retired_segments() {
    let dir = scratch();
    let (journal, _) = Journal::open(dir.path(), small_options()).unwrap();
    for round in 0..3u64 {
        for i in 0..20u64 {
            journal.append(&payload(round * 100 + i, 1000)).unwrap();
        }
        journal.rotate().unwrap();
    }
    journal.append_durable(b"last").unwrap();
    let retired = journal.retire_before(41).unwrap();
    assert_eq!(retired, 2, "segments 1 and 2 hold LSNs 1..=40");
    // Next rotations reuse the retired files: stale records inside them must never appear.
    journal.rotate().unwrap();
    journal.append_durable(b"in recycled").unwrap();
    journal.rotate().unwrap();
    journal.append_durable(b"in recycled 2").unwrap();
    journal.close().unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("free-")),
        "free files reused: {names:?}"
    );
    let recovery = recover(dir.path()).unwrap();
    let lsns: Vec<u64> = recovery.records.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, (41..=63).collect::<Vec<_>>());
    assert_eq!(recovery.records.last().unwrap().payload, b"in recycled 2");
    assert!(recovery.ended_at_stale_record, "{recovery}");
    assert!(recovery.truncated_tail.is_none(), "{recovery}");
}

#[test]
fn reopen_with_smaller_segments_rotates() {
    let dir = scratch();
    let big = JournalOptions {
        segment_bytes: 1 << 20,
        ..small_options()
    };
    let (journal, _) = Journal::open(dir.path(), big).unwrap();
    for lsn in 1..=100u64 {
        journal.append(&payload(lsn, 5000)).unwrap();
    }
    journal.close().unwrap();
    // The current segment is now larger than the new segment size.
    reopen_and_append(dir.path(), small_options(), 100, b"next");
}

#[test]
fn staging_too_small_for_the_groups_in_flight_is_an_option_error() {
    use powercut_writer::sim::{SimConfig, SimStorage};
    // 4 KiB blocks on the simulated disk: 64 KiB among 9 buffers leaves one block each, no room
    // for a record beside the tail block.
    let storage = SimStorage::new(SimConfig {
        alignment_bytes: 4096,
        fs_block_bytes: 4096,
        ..SimConfig::default()
    })
    .unwrap();
    let options = JournalOptions {
        max_staging_bytes: 64 * 1024,
        max_groups_in_flight: 8,
        ..small_options()
    };
    match Journal::open_with_storage(std::path::Path::new("/j"), options, Arc::new(storage)) {
        Err(powercut_writer::JournalError::InvalidOptions(why)) => {
            assert!(why.contains("max_staging_bytes"), "{why}")
        }
        Err(other) => panic!("expected InvalidOptions, got {other}"),
        Ok(_) => panic!("a staging buffer without room for a record was accepted"),
    }
}
