//! The executor on a real directory: every bundled workload runs, the journal recovers exactly
//! the acknowledged records, acknowledged files hold on disk, and a seed reproduces a run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::scratch;
use powercut_workloads::ack::Ack;
use powercut_workloads::executor::{self, AckSink, ExecError, Phase, ProgressEvent};
use powercut_workloads::payload;
use powercut_workloads::spec::{self, Step, Workload};

#[derive(Default)]
struct RecordingSink {
    acks: Mutex<Vec<Ack>>,
    progress: Mutex<Vec<ProgressEvent>>,
}

impl AckSink for RecordingSink {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        // Every ack must survive the label round trip the guest agent puts it through.
        let parsed = Ack::parse_label(&ack.to_label()).map_err(|e| e.to_string())?;
        assert_eq!(&parsed, ack);
        self.acks.lock().unwrap().push(ack.clone());
        Ok(())
    }

    fn progress(&self, event: &ProgressEvent) {
        self.progress.lock().unwrap().push(event.clone());
    }
}

fn bundled(name: &str) -> Workload {
    spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("{name}.yaml"))).unwrap()
}

fn bundled_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn run(workload: &Workload, root: &Path) -> Vec<Ack> {
    let sink = RecordingSink::default();
    let summary = executor::execute(workload, root, &sink)
        .unwrap_or_else(|e| panic!("{}: {e}", workload.name));
    let acks = sink.acks.into_inner().unwrap();
    assert_eq!(summary.acks, acks.len() as u64);
    assert_eq!(
        summary.acks,
        workload.total_acks_estimate(),
        "{}",
        workload.name
    );
    assert_eq!(summary.records, workload.total_records());
    assert!(!summary.open_reports.is_empty());
    let progress = sink.progress.into_inner().unwrap();
    assert_eq!(progress.len(), 2 * workload.steps.len());
    let last = progress.last().unwrap();
    assert!(last.finished && last.step_index + 1 == last.steps_total);
    assert_eq!(
        last.acks_so_far + 1,
        summary.acks,
        "all but the end ack by the last step"
    );
    acks
}

/// Checks the journal and the files against the acks, as a crash-state oracle would for the
/// final (clean) state.
fn check_against_acks(workload: &Workload, root: &Path, acks: &[Ack]) {
    assert_eq!(
        acks.first(),
        Some(&Ack::Start {
            name: workload.name.clone()
        })
    );
    assert_eq!(
        acks.last(),
        Some(&Ack::End {
            name: workload.name.clone()
        })
    );

    let recovery = powercut_writer::recover(&root.join("journal")).unwrap();
    assert!(
        recovery.truncated_tail.is_none(),
        "{:?}",
        recovery.truncated_tail
    );
    let n = workload.total_records();
    // A `retire` step takes whole segments of acknowledged records away: the log then starts
    // later, but never past the largest retired LSN.
    let retired_before = powercut_workloads::ack::retired_before(acks).unwrap_or(1);
    let first = recovery.records.first().map_or(1, |r| r.lsn);
    assert!(
        first <= retired_before,
        "{}: log starts at {first}",
        workload.name
    );
    assert_eq!(
        recovery.records.len() as u64 + first - 1,
        n,
        "{}",
        workload.name
    );
    let mut origins = BTreeSet::new();
    for (i, record) in recovery.records.iter().enumerate() {
        assert_eq!(record.lsn, first + i as u64, "LSNs first..n without holes");
        let origin = payload::verify(workload.seed, &record.payload).unwrap();
        assert!(
            origins.insert((origin.writer, origin.sequence)),
            "duplicate payload {origin:?}"
        );
    }
    // Every LSN still in the log is covered by exactly one Records ack whose crc matches the
    // recovered payloads.
    let mut covered = vec![0u32; recovery.records.len()];
    for ack in acks {
        if let Ack::Records {
            first_lsn,
            last_lsn,
            crc32c,
        } = ack
        {
            if *first_lsn < first {
                assert!(
                    *last_lsn < first,
                    "{}: ack {ack} cut by a retire",
                    workload.name
                );
                continue;
            }
            let mut crc = 0;
            for lsn in *first_lsn..=*last_lsn {
                covered[(lsn - first) as usize] += 1;
                crc = crc32c::crc32c_append(crc, &recovery.records[(lsn - first) as usize].payload);
            }
            assert_eq!(crc, *crc32c, "{}: ack {ack}", workload.name);
        }
    }
    assert!(
        covered.iter().all(|&c| c == 1),
        "{}: coverage {covered:?}",
        workload.name
    );

    // Acknowledged file states hold on disk.
    let files = root.join("files");
    let mut present: BTreeMap<String, u32> = BTreeMap::new();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    for ack in acks {
        match ack {
            Ack::FileCreate { path, crc32c } => {
                gone.remove(path);
                present.insert(path.clone(), *crc32c);
            }
            Ack::FileRename { from, to, crc32c } => {
                present.remove(from);
                gone.insert(from.clone());
                gone.remove(to);
                present.insert(to.clone(), *crc32c);
            }
            Ack::FileRemove { path } => {
                present.remove(path);
                gone.insert(path.clone());
            }
            _ => {}
        }
    }
    for (path, crc) in &present {
        let contents = std::fs::read(files.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(crc32c::crc32c(&contents), *crc, "{path}");
    }
    for path in &gone {
        assert!(!files.join(path).exists(), "{path} should be gone");
    }
}

#[test]
fn every_bundled_workload_runs_and_recovers_exactly_its_acks() {
    let names = bundled_names();
    assert!(names.len() >= 7, "{names:?}");
    for name in names {
        let workload = bundled(&name);
        // Fault steps need the guest agent (tests/spec_faults.rs checks the host refuses them,
        // harness/tests/vm_faults.rs runs them).
        if workload.has_faults() {
            continue;
        }
        // Programs under test need their guest packages (workloads/tests/program_exec.rs runs
        // shell programs on the host, harness/tests/vm_programs.rs these in the guest).
        if workload.is_program() {
            continue;
        }
        let dir = scratch("executor-");
        let acks = run(&workload, dir.path());
        check_against_acks(&workload, dir.path(), &acks);
    }
}

#[test]
fn dir_ops_acks_only_fully_synced_operations() {
    let workload = bundled("dir-ops");
    let dir = scratch("executor-");
    let acks = run(&workload, dir.path());
    let file_acks: Vec<&Ack> = acks
        .iter()
        .filter(|a| {
            matches!(
                a,
                Ack::FileCreate { .. } | Ack::FileRename { .. } | Ack::FileRemove { .. }
            )
        })
        .collect();
    let acked_steps = workload
        .steps
        .iter()
        .filter(|s| matches!(s, Step::File(op) if op.is_acked()))
        .count();
    assert_eq!(file_acks.len(), acked_steps);
    assert!(
        acked_steps
            < workload
                .steps
                .iter()
                .filter(|s| matches!(s, Step::File(_)))
                .count()
    );
    for ack in &file_acks {
        let label = ack.to_label();
        assert!(
            !label.contains("scratch/"),
            "unsynced operation acked: {label}"
        );
    }
    // The unacknowledged operations ran all the same.
    let files = dir.path().join("files");
    assert!(files.join("scratch/renamed").exists());
    assert!(files.join("scratch/name-only").exists());
    assert!(!files.join("scratch/data-only").exists());
    assert_eq!(
        std::fs::metadata(files.join("moved/file")).unwrap().len(),
        12000
    );
    assert_eq!(std::fs::metadata(files.join("swap")).unwrap().len(), 300);
    assert_eq!(std::fs::metadata(files.join("empty")).unwrap().len(), 0);
}

#[test]
fn same_seed_same_acks_other_seed_other_acks() {
    let workload = bundled("smoke");
    let (a, b, c) = (
        scratch("executor-"),
        scratch("executor-"),
        scratch("executor-"),
    );
    let first = run(&workload, a.path());
    let second = run(&workload, b.path());
    assert_eq!(first, second);
    let mut other = workload.clone();
    other.seed ^= 0xDEAD_BEEF;
    let third = run(&other, c.path());
    assert_eq!(first.len(), third.len());
    assert_ne!(first, third);
    check_against_acks(&other, c.path(), &third);
}

#[test]
fn ingest_with_one_client_is_reproducible_and_with_several_the_set_is() {
    // One client: a single writer at a time, so the whole ack sequence repeats.
    let text = "name: one-client\nseed: 9\nwriter: { segment_bytes: 256KiB }\nsteps:\n  - append: \
                { count: 3, size: [24, 500] }\n  - ingest: { clients: 1, records_per_client: 10, \
                size: [24, 2000] }\n  - append: { count: 4, size: 100, commit_every: 2 }\n";
    let workload = spec::parse(text, "one-client.yaml").unwrap();
    let (a, b) = (scratch("executor-"), scratch("executor-"));
    let first = run(&workload, a.path());
    assert_eq!(first, run(&workload, b.path()));
    check_against_acks(&workload, a.path(), &first);

    // Several clients race for LSNs: the LSN order may differ between runs, but the set of
    // records (crc of each single-record ack) and the acks before the ingest step do not.
    let workload = bundled("ingest-clients");
    let (a, b) = (scratch("executor-"), scratch("executor-"));
    let first = run(&workload, a.path());
    let second = run(&workload, b.path());
    let crcs = |acks: &[Ack]| -> Vec<u32> {
        let mut crcs: Vec<u32> = acks
            .iter()
            .filter_map(|a| match a {
                Ack::Records {
                    first_lsn,
                    last_lsn,
                    crc32c,
                } if first_lsn == last_lsn => Some(*crc32c),
                _ => None,
            })
            .collect();
        crcs.sort_unstable();
        crcs
    };
    assert_eq!(crcs(&first), crcs(&second));
    assert_eq!(
        first[..5],
        second[..5],
        "start + the 4 appends before the ingest step"
    );
}

#[test]
fn a_refusing_sink_stops_the_run_at_its_step() {
    struct Refuse(AtomicUsize);
    impl AckSink for Refuse {
        fn ack(&self, _: &Ack) -> Result<(), String> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 3 {
                Err("log device full".into())
            } else {
                Ok(())
            }
        }
    }
    let workload = bundled("smoke");
    let dir = scratch("executor-");
    let err = executor::execute(&workload, dir.path(), &Refuse(AtomicUsize::new(0))).unwrap_err();
    match &err {
        ExecError::Sink {
            phase:
                Phase::Step {
                    list: "steps",
                    index: 0,
                    kind: "append",
                },
            label,
            message,
        } => {
            assert!(label.starts_with("r:3-3:"), "{label}");
            assert_eq!(message, "log device full");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("steps[0] (append)"), "{err}");
}

#[test]
fn a_journal_dir_with_contents_is_refused() {
    let dir = scratch("executor-");
    std::fs::create_dir_all(dir.path().join("journal")).unwrap();
    std::fs::write(dir.path().join("journal/leftover"), b"x").unwrap();
    let err =
        executor::execute(&bundled("smoke"), dir.path(), &RecordingSink::default()).unwrap_err();
    assert!(matches!(err, ExecError::NotEmpty { .. }), "{err}");
}

#[test]
fn reopen_detects_a_journal_damaged_behind_the_engine() {
    // A sink that zeroes the first segment's records once LSN 4 is acked: the reopen step that
    // follows must report it as a finding of the run (I1, with the step), never carry on
    // silently with fewer records than were acknowledged, and never end as a harness error.
    struct Vandal {
        journal: PathBuf,
    }
    impl AckSink for Vandal {
        fn ack(&self, ack: &Ack) -> Result<(), String> {
            if let Ack::Records { last_lsn: 4, .. } = ack {
                let mut segments: Vec<PathBuf> = std::fs::read_dir(&self.journal)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
                    .collect();
                segments.sort();
                let first = segments.first().ok_or("no segment")?;
                let file = std::fs::OpenOptions::new().write(true).open(first).unwrap();
                use std::os::unix::fs::FileExt;
                file.write_all_at(&[0u8; 4096], 0).unwrap();
                file.sync_all().unwrap();
            }
            Ok(())
        }
    }
    let text = "name: vandal\nwriter: { segment_bytes: 256KiB, preallocation: zero }\nsteps:\n  - \
                append: { count: 4, size: 100 }\n  - reopen: {}\n  - append: { count: 1, size: \
                100 }\n";
    let workload = spec::parse(text, "vandal.yaml").unwrap();
    let dir = scratch("executor-");
    let summary = executor::execute(
        &workload,
        dir.path(),
        &Vandal {
            journal: dir.path().join("journal"),
        },
    )
    .unwrap();
    assert!(
        summary.findings.iter().any(|f| f.invariant == "I1"
            && f.step.as_deref().is_some_and(|s| s.contains("reopen"))),
        "{:?}",
        summary.findings
    );
    // The run went on from what was recovered: the last append got LSN 1 again.
    assert_eq!(summary.records, 5);
}

#[test]
fn invalid_workloads_are_refused_before_anything_runs() {
    let mut workload = bundled("smoke");
    workload.name = "two words".into();
    let dir = scratch("executor-");
    let err = executor::execute(&workload, dir.path(), &RecordingSink::default()).unwrap_err();
    assert!(matches!(err, ExecError::InvalidWorkload(_)), "{err}");
    assert!(!dir.path().join("journal").exists());
}

#[test]
fn file_contents_depend_on_seed_path_and_step() {
    let a = executor::file_contents(1, "a", 0, 100);
    assert_eq!(a.len(), 100);
    assert_eq!(a, executor::file_contents(1, "a", 0, 100));
    assert_ne!(a, executor::file_contents(2, "a", 0, 100));
    assert_ne!(a, executor::file_contents(1, "b", 0, 100));
    assert_ne!(a, executor::file_contents(1, "a", 1, 100));
}

#[test]
fn runs_on_tmpfs_without_a_block_device() {
    // No sysfs block device behind tmpfs: the engine falls back on a default alignment (and on
    // buffered I/O where tmpfs refuses O_DIRECT, before Linux 6.6).
    let shm = Path::new("/dev/shm");
    let is_tmpfs = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(1) == Some("/dev/shm") && l.contains(" tmpfs "))
        })
        .unwrap_or(false);
    let tmpfs = if is_tmpfs {
        Ok(())
    } else {
        Err("/dev/shm is not a tmpfs here".into())
    };
    if !powercut_writer::capability::runnable(tmpfs) {
        return;
    }
    let workload = bundled("smoke");
    let dir = tempfile::Builder::new()
        .prefix("executor-")
        .tempdir_in(shm)
        .unwrap();
    let sink = RecordingSink::default();
    let summary = executor::execute(&workload, dir.path(), &sink).unwrap();
    assert!(
        summary.open_reports[0].contains("alignment"),
        "{:?}",
        summary.open_reports
    );
    check_against_acks(&workload, dir.path(), &sink.acks.into_inner().unwrap());
}
