//! An I/O error on a write or a sync poisons the journal: nothing is acknowledged after it,
//! every later call fails with Poisoned (even once the fault is gone), and reopening recovers
//! every acknowledged record.

mod common;

use std::sync::Arc;

use common::*;
use powercut_writer::{
    recover, Durability, FaultPlan, FaultyStorage, IoPathChoice, Journal, JournalError,
    JournalOptions, RealStorage, Storage,
};

fn faulty() -> (FaultyStorage, Arc<dyn Storage>) {
    let real: Arc<dyn Storage> =
        Arc::new(RealStorage::new(IoPathChoice::Auto, 256 * 1024).unwrap());
    let faulty = FaultyStorage::new(real);
    let shared: Arc<dyn Storage> = Arc::new(faulty.clone());
    (faulty, shared)
}

fn options(durability: Durability) -> JournalOptions {
    JournalOptions {
        durability,
        // No background preparation: the fault counters then count only group commits.
        prepare_ahead: false,
        ..small_options()
    }
}

fn run_until_fault(durability: Durability, plan_after: FaultPlan, clients: usize) {
    let dir = scratch();
    let (storage, shared) = faulty();
    let (journal, _) = Journal::open_with_storage(dir.path(), options(durability), shared).unwrap();
    let journal = Arc::new(journal);
    // Arm relative to what opening already did.
    storage.set_plan(FaultPlan {
        fail_write_at: plan_after.fail_write_at.map(|n| storage.writes() + n),
        fail_sync_at: plan_after.fail_sync_at.map(|n| storage.syncs() + n),
    });
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let journal = Arc::clone(&journal);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..200u64 {
                    let data = payload(client as u64 * 1000 + i, 64 + i as usize);
                    match journal.append_durable(&data) {
                        Ok(lsn) => acked.push((lsn, data)),
                        Err(JournalError::Poisoned) | Err(JournalError::Io { .. }) => break,
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
                acked
            })
        })
        .collect();
    let acked = join_acked(threads);
    assert!(journal.is_poisoned(), "the fault must have been hit");
    let durable = journal.durable_lsn();
    assert!(
        acked.iter().all(|(lsn, _)| *lsn <= durable),
        "ack past the durable LSN"
    );
    // Nothing more is acknowledged, also after the fault clears.
    storage.clear_faults();
    assert!(matches!(
        journal.append(b"late"),
        Err(JournalError::Poisoned)
    ));
    assert!(matches!(journal.commit(), Err(JournalError::Poisoned)));
    assert!(matches!(
        journal.append_durable(b"late"),
        Err(JournalError::Poisoned)
    ));
    assert!(matches!(journal.rotate(), Err(JournalError::Poisoned)));
    assert_eq!(journal.durable_lsn(), durable);
    let journal = Arc::into_inner(journal).unwrap();
    assert!(matches!(journal.close(), Err(JournalError::Poisoned)));
    // Reopening recovers every acknowledged record.
    let recovery = recover(dir.path()).unwrap();
    for (lsn, data) in &acked {
        let record = recovery
            .records
            .get(*lsn as usize - 1)
            .unwrap_or_else(|| panic!("acked LSN {lsn} lost: {recovery}"));
        assert_eq!(record.lsn, *lsn);
        assert_eq!(&record.payload, data);
    }
    let (journal, report) = Journal::open(dir.path(), options(durability)).unwrap();
    let next = report.recovery.last_lsn + 1;
    assert_eq!(journal.append_durable(b"after reopen").unwrap(), next);
    journal.close().unwrap();
}

#[test]
fn failed_write_poisons_dsync() {
    for n in [1, 2, 5, 17] {
        run_until_fault(
            Durability::Dsync,
            FaultPlan {
                fail_write_at: Some(n),
                fail_sync_at: None,
            },
            1,
        );
        run_until_fault(
            Durability::Dsync,
            FaultPlan {
                fail_write_at: Some(n),
                fail_sync_at: None,
            },
            4,
        );
    }
}

#[test]
fn failed_write_poisons_fdatasync() {
    for n in [1, 3, 9] {
        run_until_fault(
            Durability::Fdatasync,
            FaultPlan {
                fail_write_at: Some(n),
                fail_sync_at: None,
            },
            4,
        );
    }
}

#[test]
fn failed_fdatasync_poisons_and_is_never_retried() {
    for n in [1, 2, 11] {
        let dir = scratch();
        let (storage, shared) = faulty();
        let (journal, _) =
            Journal::open_with_storage(dir.path(), options(Durability::Fdatasync), shared).unwrap();
        let syncs_before = storage.syncs();
        storage.set_plan(FaultPlan {
            fail_write_at: None,
            fail_sync_at: Some(syncs_before + n),
        });
        let mut acked = 0;
        let mut failure = None;
        for i in 0..100u64 {
            match journal.append_durable(&payload(i, 100)) {
                Ok(_) => acked += 1,
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        assert_eq!(acked, n - 1, "acks before the failing sync");
        assert!(
            matches!(
                failure,
                Some(JournalError::Io {
                    op: "fdatasync",
                    ..
                })
            ),
            "{failure:?}"
        );
        let syncs_at_failure = storage.syncs();
        storage.clear_faults();
        assert!(matches!(journal.commit(), Err(JournalError::Poisoned)));
        assert_eq!(
            storage.syncs(),
            syncs_at_failure,
            "fsync retried after a failure"
        );
        drop(journal);
        run_until_fault(
            Durability::Fdatasync,
            FaultPlan {
                fail_write_at: None,
                fail_sync_at: Some(n),
            },
            3,
        );
    }
}
