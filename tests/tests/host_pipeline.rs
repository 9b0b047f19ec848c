//! The whole pipeline on the host, no VM: the executor runs a bundled workload with the real
//! writer, the acks it reports are checked by the oracles against the writer's own recovery.
//! Then the same oracle is shown a forged ledger and an altered journal, and must fail.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use powercut_oracles::invariants::{
    check_files, check_journal, Expectation, RecoveredJournal, TailInfo,
};
use powercut_workloads::ack::Ack;
use powercut_workloads::executor::{execute, AckSink};
use powercut_workloads::spec;

#[derive(Default)]
struct Ledger(Mutex<Vec<Ack>>);

impl AckSink for Ledger {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        self.0.lock().unwrap().push(ack.clone());
        Ok(())
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn recovered(dir: &Path) -> Result<RecoveredJournal, String> {
    let r = powercut_writer::recover(dir).map_err(|e| e.to_string())?;
    Ok(RecoveredJournal {
        records: r.records.into_iter().map(|r| (r.lsn, r.payload)).collect(),
        truncated_tail: r.truncated_tail.map(|t| TailInfo {
            segment: t.segment,
            offset: t.offset,
            discarded_bytes: t.discarded_bytes,
        }),
    })
}

/// A scratch directory on a disk file system (the target dir), so O_DIRECT is exercised.
fn scratch() -> tempfile::TempDir {
    let base = workspace().join("target");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn run_bundled(name: &str) -> (tempfile::TempDir, spec::Workload, Vec<Ack>) {
    let workload = spec::load(&workspace().join("workloads").join(name)).unwrap();
    let dir = scratch();
    let ledger = Ledger::default();
    execute(&workload, dir.path(), &ledger).unwrap();
    let acks = ledger.0.into_inner().unwrap();
    (dir, workload, acks)
}

#[test]
fn every_bundled_workload_passes_the_oracle_on_the_host() {
    for name in [
        "smoke.yaml",
        "append-dsync.yaml",
        "append-fdatasync.yaml",
        "rotate-recycle.yaml",
        "dir-ops.yaml",
        "ingest-clients.yaml",
    ] {
        let (dir, workload, acks) = run_bundled(name);
        let exp = Expectation {
            state_id: "host-final",
            seed: workload.seed,
            acks: &acks,
            in_flight: None,
        };
        let journal = recovered(&dir.path().join("journal"));
        let mut violations = check_journal(&exp, &journal);
        violations.extend(check_files(&exp, &dir.path().join("files")));
        assert!(violations.is_empty(), "{name}: {violations:#?}");
        println!("{name}: {} acks held", acks.len());
    }
}

#[test]
fn a_forged_ack_is_caught() {
    let (dir, workload, mut acks) = run_bundled("smoke.yaml");
    let last = acks
        .iter()
        .filter_map(|a| match a {
            Ack::Records { last_lsn, .. } => Some(*last_lsn),
            _ => None,
        })
        .max()
        .unwrap();
    // An ack for records that were never written.
    acks.push(Ack::Records {
        first_lsn: last + 1,
        last_lsn: last + 3,
        crc32c: 0x1234_5678,
    });
    assert_journal_violates(dir.path(), "forged", workload.seed, &acks, "I1");
}

#[test]
fn a_wrong_seed_is_caught_as_garbage() {
    let (dir, workload, acks) = run_bundled("smoke.yaml");
    assert_journal_violates(dir.path(), "wrong-seed", workload.seed ^ 1, &acks, "I3");
}

/// Checks the journal under `dir` against `acks` as recorded with `seed` and asserts a
/// violation of `invariant`.
fn assert_journal_violates(dir: &Path, state_id: &str, seed: u64, acks: &[Ack], invariant: &str) {
    let exp = Expectation {
        state_id,
        seed,
        acks,
        in_flight: None,
    };
    let violations = check_journal(&exp, &recovered(&dir.join("journal")));
    assert!(
        violations.iter().any(|v| v.invariant == invariant),
        "{violations:#?}"
    );
}

#[test]
fn a_lost_acked_file_is_caught() {
    let (dir, workload, acks) = run_bundled("dir-ops.yaml");
    let created = acks
        .iter()
        .find_map(|a| match a {
            Ack::FileCreate { path, .. } => Some(path.clone()),
            _ => None,
        })
        .expect("dir-ops acks a file creation");
    let path = dir.path().join("files").join(&created);
    if path.exists() {
        std::fs::remove_file(&path).unwrap();
    }
    // Whatever happened to it later in the workload, a ledger that ends at its creation expects it.
    let upto = acks
        .iter()
        .position(|a| matches!(a, Ack::FileCreate { path, .. } if *path == created))
        .unwrap();
    let exp = Expectation {
        state_id: "lost-file",
        seed: workload.seed,
        acks: &acks[..=upto],
        in_flight: None,
    };
    let violations = check_files(&exp, &dir.path().join("files"));
    assert!(
        violations.iter().any(|v| v.invariant == "I6"),
        "{violations:#?}"
    );
}
