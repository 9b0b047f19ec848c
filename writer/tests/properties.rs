//! Property tests: any sequence of appends, commits, rotations and reopens recovers exactly
//! the committed prefix (plus possibly a contiguous extension of uncommitted records); the
//! decoder and recovery survive arbitrary bytes.

mod common;

use common::*;
use powercut_writer::record::{decode_record, encode_record, record_span_bytes};
use powercut_writer::{recover, Durability, Journal, JournalOptions, Preallocation};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    AppendDurable(usize),
    Commit,
    Rotate,
    /// Drop without close: staged records are lost, as in a process crash.
    Crash,
    CloseReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3000).prop_map(Op::Append),
        3 => (0usize..3000).prop_map(Op::AppendDurable),
        2 => Just(Op::Commit),
        1 => Just(Op::Rotate),
        1 => Just(Op::Crash),
        1 => Just(Op::CloseReopen),
    ]
}

fn check(recovered: &[powercut_writer::RecoveredRecord], model: &[Vec<u8>], committed: usize) {
    assert!(
        recovered.len() >= committed,
        "{} < committed {}",
        recovered.len(),
        committed
    );
    assert!(recovered.len() <= model.len());
    for (i, record) in recovered.iter().enumerate() {
        assert_eq!(record.lsn, i as u64 + 1);
        assert_eq!(record.payload, model[i], "LSN {}", i + 1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn committed_prefix_survives(
        ops in proptest::collection::vec(op(), 1..40),
        fdatasync in any::<bool>(),
        preallocation in prop_oneof![Just(Preallocation::Zero), Just(Preallocation::Fallocate), Just(Preallocation::None)],
    ) {
        let dir = scratch();
        let options = JournalOptions {
            durability: if fdatasync { Durability::Fdatasync } else { Durability::Dsync },
            preallocation,
            segment_bytes: 64 * 1024,
            max_staging_bytes: 64 * 1024,
            ..JournalOptions::default()
        };
        let (mut journal, _) = Journal::open(dir.path(), options.clone()).unwrap();
        // model[i] = payload of LSN i+1 as appended; committed = LSNs known durable.
        let mut model: Vec<Vec<u8>> = Vec::new();
        let mut committed = 0usize;
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Append(len) | Op::AppendDurable(len) => {
                    seq += 1;
                    let data = payload(seq, len);
                    let lsn = if matches!(op, Op::Append(_)) {
                        journal.append(&data).unwrap()
                    } else {
                        let lsn = journal.append_durable(&data).unwrap();
                        committed = lsn as usize;
                        lsn
                    };
                    prop_assert_eq!(lsn as usize, model.len() + 1);
                    model.push(data);
                }
                Op::Commit => {
                    committed = journal.commit().unwrap() as usize;
                    prop_assert_eq!(committed, model.len());
                }
                Op::Rotate => {
                    journal.rotate().unwrap();
                    committed = model.len();
                }
                Op::Crash | Op::CloseReopen => {
                    if matches!(op, Op::CloseReopen) {
                        journal.close().unwrap();
                        committed = model.len();
                    } else {
                        drop(journal);
                    }
                    let mut records = Vec::new();
                    let (reopened, report) =
                        Journal::open_visiting(dir.path(), options.clone(), &mut |r| {
                            records.push(r.to_record())
                        })
                        .unwrap();
                    check(&records, &model, committed);
                    prop_assert!(report.recovery.truncated_tail.is_none());
                    model.truncate(records.len());
                    committed = model.len();
                    journal = reopened;
                }
            }
        }
        drop(journal);
        let recovery = recover(dir.path()).unwrap();
        check(&recovery.records, &model, committed);
    }

    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_record(&bytes);
    }

    #[test]
    fn decoder_rejects_mutated_records(
        payload_bytes in proptest::collection::vec(any::<u8>(), 0..300),
        flip in any::<usize>(),
        claimed_len in any::<u32>(),
    ) {
        let mut encoded = vec![0u8; record_span_bytes(payload_bytes.len())];
        encode_record(&mut encoded, 3, 2, 1, &payload_bytes);
        let decoded = decode_record(&encoded).unwrap();
        prop_assert_eq!(decoded.payload, &payload_bytes[..]);
        let bit = flip % ((32 + payload_bytes.len()) * 8);
        let mut flipped = encoded.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode_record(&flipped).is_err());
        // A hostile length never reads past the input or allocates.
        let mut hostile = encoded;
        hostile[24..28].copy_from_slice(&claimed_len.to_le_bytes());
        if claimed_len as usize != payload_bytes.len() {
            prop_assert!(decode_record(&hostile).is_err());
        }
    }

    #[test]
    fn recovery_survives_arbitrary_segment_contents(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        splice_valid in any::<bool>(),
    ) {
        let dir = scratch();
        let mut contents = bytes;
        if splice_valid && contents.len() > 100 {
            let mut record = vec![0u8; record_span_bytes(20)];
            encode_record(&mut record, 1, 0, 1, &[7u8; 20]);
            contents[..record.len()].copy_from_slice(&record);
        }
        std::fs::write(dir.path().join("seg-0000000000000001-00000001.wal"), &contents).unwrap();
        std::fs::write(dir.path().join("seg-0000000000000002-00000002.wal"), &contents).unwrap();
        match recover(dir.path()) {
            Ok(recovery) => {
                for (i, record) in recovery.records.iter().enumerate() {
                    prop_assert_eq!(record.lsn, i as u64 + 1);
                }
            }
            Err(err) => {
                // Mid-log corruption, or a file no engine wrote (refused, left untouched).
                let text = err.to_string();
                prop_assert!(
                    text.contains("corruption") || text.contains("not a segment this engine wrote"),
                    "{}",
                    text
                );
            }
        }
    }
}
