//! Random small workloads (steps of every kind, random sizes, groups and fsync choices) run on a
//! real directory: the journal recovers exactly the acknowledged records and acknowledged files
//! hold. The case count is modest so the suite stays fast; a failing case prints its workload,
//! seed included, as JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use powercut_workloads::ack::Ack;
use powercut_workloads::executor::{self, AckSink};
use powercut_workloads::payload;
use powercut_workloads::spec::{
    AppendStep, FileOp, Filesystem, IngestStep, SizeRange, Step, Workload, WriterSpec,
};
use proptest::prelude::*;

#[derive(Default)]
struct RecordingSink(Mutex<Vec<Ack>>);

impl AckSink for RecordingSink {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        self.0.lock().unwrap().push(ack.clone());
        Ok(())
    }
}

fn size_range() -> impl Strategy<Value = SizeRange> {
    (24u64..3000, 0u64..5000).prop_map(|(min_bytes, extra)| SizeRange {
        min_bytes,
        max_bytes: min_bytes + extra,
    })
}

const PATHS: [&str; 4] = ["a", "b", "d/c", "d/e/f"];

fn step() -> impl Strategy<Value = Step> {
    let path = || proptest::sample::select(&PATHS[..]).prop_map(str::to_string);
    prop_oneof![
        4 => (1u64..12, size_range(), 1u64..5).prop_map(|(count, size, commit_every)| {
            Step::Append(AppendStep { count, size, commit_every })
        }),
        1 => Just(Step::Rotate),
        1 => Just(Step::Retire),
        1 => Just(Step::Reopen),
        1 => (1u64..4, 1u64..5, size_range()).prop_map(|(clients, records_per_client, size)| {
            Step::Ingest(IngestStep { clients, records_per_client, size })
        }),
        2 => (path(), 0u64..9000, any::<bool>(), any::<bool>()).prop_map(
            |(path, size_bytes, fsync_file, fsync_dir)| {
                Step::File(FileOp::Create { path, size_bytes, fsync_file, fsync_dir })
            }
        ),
        1 => (path(), path(), any::<bool>(), any::<bool>()).prop_map(
            |(from, to, fsync_file, fsync_dir)| {
                Step::File(FileOp::Rename { from, to, fsync_file, fsync_dir })
            }
        ),
        1 => (path(), any::<bool>())
            .prop_map(|(path, fsync_dir)| Step::File(FileOp::Remove { path, fsync_dir })),
    ]
}

fn workload() -> impl Strategy<Value = Workload> {
    (
        any::<u64>(),
        proptest::collection::vec(step(), 1..8),
        any::<bool>(),
    )
        .prop_map(|(seed, steps, fdatasync)| Workload {
            name: "prop".into(),
            seed,
            description: String::new(),
            filesystem: Filesystem::Ext4,
            disk_mib: 64,
            log_mib: 256,
            writer: WriterSpec {
                durability: Some(if fdatasync {
                    powercut_workloads::spec::DurabilitySpec::Fdatasync
                } else {
                    powercut_workloads::spec::DurabilitySpec::Dsync
                }),
                segment_bytes: Some(128 * 1024),
                ..WriterSpec::default()
            },
            steps,
            power_cut: None,
            after_crash: None,
            guest_packages: Vec::new(),
            guest_files: Vec::new(),
            checker: None,
            allow_root_exec: false,
        })
}

fn check(workload: &Workload, root: &Path, acks: &[Ack]) -> Result<(), TestCaseError> {
    let recovery = powercut_writer::recover(&root.join("journal")).unwrap();
    // Retired segments take their records with them: the log then starts later, but never
    // past the last retire's LSN.
    let retired_before = powercut_workloads::ack::retired_before(acks).unwrap_or(1);
    let first_lsn = recovery.records.first().map_or(1, |r| r.lsn);
    prop_assert!(first_lsn <= retired_before, "log starts at {first_lsn}");
    prop_assert_eq!(
        recovery.records.len() as u64 + first_lsn - 1,
        workload.total_records()
    );
    for (i, record) in recovery.records.iter().enumerate() {
        prop_assert_eq!(record.lsn, first_lsn + i as u64);
        prop_assert!(payload::verify(workload.seed, &record.payload).is_ok());
    }
    let mut files: BTreeMap<String, u32> = BTreeMap::new();
    for ack in acks {
        match ack {
            Ack::Records {
                first_lsn,
                last_lsn,
                crc32c,
            }
            | Ack::Recovered {
                first_lsn,
                last_lsn,
                crc32c,
            } => {
                // An empty recovery's ack (o:1-0) promises nothing.
                if last_lsn < first_lsn {
                    continue;
                }
                if *first_lsn < recovery.records.first().map_or(1, |r| r.lsn) {
                    continue;
                }
                let base = recovery.records[0].lsn;
                let mut crc = 0;
                for lsn in *first_lsn..=*last_lsn {
                    crc = crc32c::crc32c_append(
                        crc,
                        &recovery.records[(lsn - base) as usize].payload,
                    );
                }
                prop_assert_eq!(crc, *crc32c);
            }
            Ack::FileCreate { path, crc32c } => {
                files.insert(path.clone(), *crc32c);
            }
            Ack::FileRename { from, to, crc32c } => {
                files.remove(from);
                files.insert(to.clone(), *crc32c);
            }
            Ack::FileRemove { path } => {
                files.remove(path);
            }
            Ack::Retired { .. } | Ack::Start { .. } | Ack::End { .. } => {}
            Ack::Key { .. } | Ack::Nack { .. } => {
                prop_assert!(false, "a program ack from the engine")
            }
        }
    }
    for (path, crc) in files {
        let contents = std::fs::read(root.join("files").join(&path)).unwrap();
        prop_assert_eq!(crc32c::crc32c(&contents), crc, "{}", path);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, max_global_rejects: 100_000, ..ProptestConfig::default() })]
    #[test]
    fn random_workloads_recover_exactly_their_acks(workload in workload()) {
        // Steps that rename or remove missing files (and the like) are refused by the spec.
        prop_assume!(workload.validate().is_ok());
        let dir = tempfile::Builder::new()
            .prefix("executor-prop-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let sink = RecordingSink::default();
        let summary = executor::execute(&workload, dir.path(), &sink)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", workload.to_json())))?;
        let acks = sink.0.into_inner().unwrap();
        prop_assert_eq!(summary.acks, workload.total_acks_estimate());
        prop_assert_eq!(acks.len() as u64, summary.acks);
        check(&workload, dir.path(), &acks)?;
    }
}
