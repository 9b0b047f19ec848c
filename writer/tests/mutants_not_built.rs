//! A default build refuses every mutant instead of silently running the real engine.
#![cfg(not(feature = "mutants"))]

mod common;

use common::*;
use powercut_writer::{recover_with, Journal, JournalError, JournalOptions, Mutant, MUTANTS_BUILT};

// This test file only exists in builds without the mutants.
const _: () = assert!(!MUTANTS_BUILT);

#[test]
fn opening_with_a_mutant_fails_without_the_feature() {
    for mutant in Mutant::ALL {
        let dir = scratch();
        let options = JournalOptions {
            mutant: Some(mutant),
            ..small_options()
        };
        let result = Journal::open(dir.path(), options);
        assert!(
            matches!(result, Err(JournalError::MutantsNotBuilt)),
            "{mutant}: {result:?}"
        );
        // Nothing was created: the check comes before any file system change.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(matches!(
            recover_with(dir.path(), Some(mutant)),
            Err(JournalError::MutantsNotBuilt)
        ));
    }
    // Without a mutant the same build opens and recovers normally.
    let dir = scratch();
    let (journal, _) = Journal::open(dir.path(), small_options()).unwrap();
    assert_eq!(journal.append_durable(b"real").unwrap(), 1);
    journal.close().unwrap();
    assert_eq!(recover_with(dir.path(), None).unwrap().last_lsn(), 1);
}
