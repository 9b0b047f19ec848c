//! The payload limit is what the engine can really stage: a record of exactly
//! `max_payload_bytes()` is accepted after any earlier record (a partial tail block already in
//! the staging buffer), never left waiting forever for room that cannot come.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{payload, scratch};
use powercut_writer::{recover, Journal, JournalError, JournalOptions};

#[test]
fn a_record_of_the_limit_fits_after_a_partial_tail_block() {
    for (staging_bytes, groups_in_flight) in [(64 * 1024, 4), (64 * 1024, 1), (1 << 20, 8)] {
        let dir = scratch();
        let options = JournalOptions {
            max_staging_bytes: staging_bytes,
            max_groups_in_flight: groups_in_flight,
            segment_bytes: 1 << 20,
            ..JournalOptions::default()
        };
        let (journal, _) = Journal::open(dir.path(), options).unwrap();
        let limit = journal.max_payload_bytes();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let result = (|| {
                journal.append_durable(&payload(1, 100))?;
                journal.append_durable(&payload(2, limit))?;
                journal.append_durable(&payload(3, 1))?;
                journal.append_durable(&payload(4, limit))?;
                let too_large = journal.append_durable(&payload(5, limit + 1));
                assert!(matches!(
                    too_large,
                    Err(JournalError::RecordTooLarge { .. })
                ));
                journal.close()
            })();
            let _ = tx.send(result);
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(result) => result.unwrap(),
            Err(_) => panic!(
                "a {limit}-byte record (the limit) never got room with {staging_bytes} bytes of \
                 staging and {groups_in_flight} groups in flight"
            ),
        }
        let recovery = recover(dir.path()).unwrap();
        assert_eq!(recovery.last_lsn(), 4);
        assert_eq!(recovery.records[3].payload.len(), limit);
    }
}
