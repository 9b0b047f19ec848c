//! Workload specs: the bundled files parse, bad files give errors naming file, line and field,
//! and JSON (how the host hands a workload to the guest) round-trips.

use std::path::{Path, PathBuf};

use powercut_workloads::spec::{
    self, DurabilitySpec, FileOp, Filesystem, PowerCut, SizeRange, SpecDiagnostic, SpecError, Step,
    Workload,
};

fn bundled() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn diagnostic(text: &str) -> SpecDiagnostic {
    match spec::parse(text, "workloads/x.yaml") {
        Ok(w) => panic!("parsed an invalid workload: {w:?}"),
        Err(SpecError::Invalid(d)) => d,
        Err(e) => panic!("unexpected error {e}"),
    }
}

const MINIMAL: &str = "name: t\nsteps:\n  - append: { count: 3, size: 100 }\n";

#[test]
fn every_bundled_workload_parses_and_fits_its_bounds() {
    let files = bundled();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in [
        "smoke",
        "smoke-xfs",
        "append-dsync",
        "append-fdatasync",
        "rotate-recycle",
        "dir-ops",
        "ingest-clients",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "{required}.yaml missing: {names:?}"
        );
    }
    for file in &files {
        let w = spec::load(file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            w.name,
            file.file_stem().unwrap().to_string_lossy(),
            "name of {file:?}"
        );
        assert!(!w.description.is_empty() || w.name != "smoke");
        w.validate().unwrap();
        // Small enough that every crash state can be mounted and checked.
        assert!(
            w.total_acks_estimate() <= 250,
            "{}: {} acks",
            w.name,
            w.total_acks_estimate()
        );
    }
    let smoke = spec::load(files.iter().find(|p| p.ends_with("smoke.yaml")).unwrap()).unwrap();
    assert_eq!(smoke.filesystem, Filesystem::Ext4);
    assert_eq!(smoke.disk_mib, 64);
    assert_eq!(smoke.log_mib, 256);
    assert_eq!(smoke.writer.durability, Some(DurabilitySpec::Dsync));
    assert_eq!(smoke.writer.segment_bytes, Some(256 * 1024));
    assert_eq!(smoke.total_records(), 40);
    assert!(smoke.steps.iter().any(|s| matches!(s, Step::Rotate)));
    let xfs = spec::load(
        files
            .iter()
            .find(|p| p.ends_with("smoke-xfs.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(xfs.filesystem, Filesystem::Xfs);
    assert_eq!(xfs.steps, smoke.steps);
}

#[test]
fn defaults_and_forms() {
    let w = spec::parse(MINIMAL, "t.yaml").unwrap();
    assert_eq!(w.seed, spec::DEFAULT_SEED);
    assert_eq!(w.writer, spec::WriterSpec::default());
    let options = w.journal_options();
    let defaults = powercut_writer::JournalOptions::default();
    assert_eq!(options.segment_bytes, defaults.segment_bytes);
    assert_eq!(options.durability, defaults.durability);
    assert_eq!(options.recycle_segments, defaults.recycle_segments);

    let w = spec::parse(
        "name: t\nwriter: { segment_bytes: 256KiB }\nsteps:\n  - append: { count: 3, size: [24, \
         \"1KiB\"] }\n  - rotate:\n  - reopen: {}\n  - file: { op: create, path: a/b }\n",
        "t.yaml",
    )
    .unwrap();
    assert_eq!(w.filesystem, Filesystem::Ext4);
    assert_eq!((w.disk_mib, w.log_mib), (64, 256));
    assert_eq!(w.power_cut, None);
    let Step::Append(a) = &w.steps[0] else {
        panic!()
    };
    assert_eq!(
        a.size,
        SizeRange {
            min_bytes: 24,
            max_bytes: 1024
        }
    );
    assert_eq!(a.commit_every, 1);
    assert_eq!(w.steps[1], Step::Rotate);
    assert_eq!(w.steps[2], Step::Reopen);
    assert_eq!(
        w.steps[3],
        Step::File(FileOp::Create {
            path: "a/b".into(),
            size_bytes: spec::DEFAULT_FILE_BYTES,
            fsync_file: true,
            fsync_dir: true
        })
    );
    // start + 3 records + the reopen's recovered records + 1 file + end
    assert_eq!(w.total_acks_estimate(), 7);
    assert_eq!(w.durable_acks(), 5);

    let xfs = spec::parse(&format!("filesystem: xfs\n{MINIMAL}"), "t.yaml").unwrap();
    assert_eq!(xfs.disk_mib, spec::MIN_XFS_DISK_MIB);
}

#[test]
fn writer_options_reach_the_journal_options() {
    let w = spec::parse(
        "name: t\nwriter:\n  durability: fdatasync\n  segment_bytes: 1MiB\n  preallocation: none\n  \
         recycle: false\n  max_staging_bytes: 2MiB\n  io_path: pwritev2\nsteps:\n  - append: { \
         count: 1, size: 100 }\n",
        "t.yaml",
    )
    .unwrap();
    let o = w.journal_options();
    assert_eq!(o.durability, powercut_writer::Durability::Fdatasync);
    assert_eq!(o.segment_bytes, 1024 * 1024);
    assert_eq!(o.preallocation, powercut_writer::Preallocation::None);
    assert!(!o.recycle_segments);
    assert_eq!(o.max_staging_bytes, 2 * 1024 * 1024);
    assert_eq!(o.io_path, powercut_writer::IoPathChoice::Pwritev2);
    let w = spec::parse(
        &format!("writer: {{ io_path: io_uring }}\n{MINIMAL}"),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(
        w.journal_options().io_path,
        powercut_writer::IoPathChoice::IoUring
    );
}

#[test]
fn syntax_error_names_file_and_line() {
    let d = diagnostic("name: t\nsteps:\n  - append: { count: 3, size: 100\n  - rotate: {}\n");
    assert_eq!(d.source_name, "workloads/x.yaml");
    assert!(matches!(d.line, Some(3 | 4)), "{d}");
    assert!(d.to_string().starts_with("workloads/x.yaml:"), "{d}");
}

#[test]
fn wrong_type_names_line_and_field() {
    let text = "name: t\nsteps:\n  - append: { count: 3, size: 100 }\n  - rotate: {}\n  - \
                append:\n      count: ten\n      size: 100\n";
    let d = diagnostic(text);
    assert_eq!(d.line, Some(6), "{d}");
    assert_eq!(d.field, "steps[2].append.count", "{d}");
    assert!(d.message.contains("\"ten\""), "{d}");
    assert!(d.message.contains("integer"), "{d}");
    assert!(
        d.to_string()
            .starts_with("workloads/x.yaml:6:14: steps[2].append.count: "),
        "{d}"
    );
}

#[test]
fn out_of_range_count_names_the_field() {
    let d = diagnostic("name: t\nsteps:\n  - append:\n      count: 0\n      size: 100\n");
    assert_eq!(d.field, "steps[0].append.count", "{d}");
    assert!(d.line.is_some_and(|l| (3..=4).contains(&l)), "{d}");
    assert!(d.message.contains("got 0"), "{d}");
}

#[test]
fn unknown_field_lists_the_allowed_ones() {
    let d = diagnostic("name: t\nsteps:\n  - append: { count: 3, size: 100 }\n  - append:\n      count: 1\n      size: 100\n      comit_every: 2\n");
    assert_eq!(d.line, Some(7), "{d}");
    assert!(d.field.starts_with("steps[1].append"), "{d}");
    assert!(d.message.contains("comit_every"), "{d}");
    assert!(
        d.message.contains("commit_every") && d.message.contains("count"),
        "{d}"
    );

    let d = diagnostic(&format!("{MINIMAL}colour: blue\n"));
    assert_eq!(d.line, Some(4), "{d}");
    assert!(
        d.message.contains("colour") && d.message.contains("steps"),
        "{d}"
    );

    let d = diagnostic("name: t\nsteps:\n  - appendd: { count: 3, size: 100 }\n");
    assert_eq!(d.line, Some(3), "{d}");
    assert!(
        d.message.contains("appendd") && d.message.contains("ingest"),
        "{d}"
    );
}

#[test]
fn invalid_path_names_line_and_field() {
    for bad in ["a b", "../escape", "/abs", "a//b", "x:y", "a>b", ""] {
        let text = format!("name: t\nsteps:\n  - file:\n      op: create\n      path: \"{bad}\"\n");
        let d = diagnostic(&text);
        assert_eq!(d.field, "steps[0].file.path", "{bad:?}: {d}");
        assert_eq!(d.line, Some(5), "{bad:?}: {d}");
        assert!(d.message.contains("invalid path"), "{d}");
    }
}

#[test]
fn record_size_too_small_or_too_large() {
    let d = diagnostic("name: t\nsteps:\n  - append:\n      count: 2\n      size: [10, 100]\n");
    assert_eq!(d.field, "steps[0].append.size", "{d}");
    assert_eq!(d.line, Some(5), "{d}");
    assert!(d.message.contains("24-byte payload header"), "{d}");
    let d = diagnostic("name: t\nsteps:\n  - append: { count: 2, size: 1GiB }\n");
    assert!(d.message.contains("limit"), "{d}");
    let d = diagnostic("name: t\nsteps:\n  - append: { count: 2, size: [200, 100] }\n");
    assert!(d.message.contains("larger than the largest"), "{d}");
    let d = diagnostic("name: t\nsteps:\n  - append: { count: 2, size: 4kb }\n");
    assert!(d.message.contains("unknown unit"), "{d}");
}

#[test]
fn semantic_errors_point_at_their_step() {
    // Rename of a file that does not exist.
    let d = diagnostic(&format!(
        "{MINIMAL}  - file: {{ op: rename, path: nope, to: x }}\n"
    ));
    assert_eq!(d.field, "steps[1]", "{d}");
    assert_eq!(d.line, Some(4), "{d}");
    assert!(d.message.contains("does not exist"), "{d}");
    // An unacknowledged change of an acknowledged file.
    let d = diagnostic(&format!(
        "{MINIMAL}  - file: {{ op: create, path: f }}\n  - file: {{ op: remove, path: f, \
         fsync_dir: false }}\n"
    ));
    assert_eq!(d.line, Some(5), "{d}");
    assert!(d.message.contains("acknowledged"), "{d}");
    // A step with two kinds.
    let d = diagnostic("name: t\nsteps:\n  - rotate: {}\n    reopen: {}\n");
    assert_eq!(d.line, Some(3), "{d}");
    assert!(d.message.contains("exactly one"), "{d}");
    // Fields that do not belong to the operation.
    let d = diagnostic(&format!(
        "{MINIMAL}  - file: {{ op: create, path: f, to: g }}\n"
    ));
    assert!(d.message.contains("`to` does not apply"), "{d}");
    let d = diagnostic(&format!(
        "{MINIMAL}  - file: {{ op: create, path: f }}\n  - file: {{ op: rename, path: f }}\n"
    ));
    assert!(d.message.contains("needs `to`"), "{d}");
    // A file where a directory is needed.
    let d = diagnostic(&format!(
        "{MINIMAL}  - file: {{ op: create, path: f }}\n  - file: {{ op: create, path: f/g }}\n"
    ));
    assert!(d.message.contains("is a file"), "{d}");
}

#[test]
fn whole_workload_checks_name_their_field_and_line() {
    // mkfs.xfs refuses small file systems.
    let d = diagnostic(&format!("filesystem: xfs\ndisk_mib: 64\n{MINIMAL}"));
    assert_eq!((d.field.as_str(), d.line), ("disk_mib", Some(2)), "{d}");
    // Does not fit on the disk.
    let d = diagnostic(
        "name: t\ndisk_mib: 16\nsteps:\n  - append: { count: 5000, size: [10000, 20000] }\n",
    );
    assert_eq!(d.field, "disk_mib", "{d}");
    assert_eq!(d.line, Some(2), "{d}");
    // A record larger than a segment.
    let d = diagnostic(
        "name: t\nwriter:\n  segment_bytes: 64KiB\nsteps:\n  - rotate: {}\n  - append: { \
         count: 1, size: 100KiB }\n",
    );
    assert_eq!(d.field, "steps[1].append.size", "{d}");
    assert_eq!(d.line, Some(6), "{d}");
    // A power cut after an ack that never comes.
    let d = diagnostic(&format!("{MINIMAL}power_cut:\n  at_ack: 4\n"));
    assert_eq!(d.field, "power_cut.at_ack", "{d}");
    assert_eq!(d.line, Some(5), "{d}");
    // Segment size not a multiple of 4096.
    let d = diagnostic(&format!("writer:\n  segment_bytes: 100000\n{MINIMAL}"));
    assert_eq!(d.field, "writer.segment_bytes", "{d}");
    assert_eq!(d.line, Some(2), "{d}");
    // Missing steps, bad name.
    let d = diagnostic("name: t\n");
    assert!(d.message.contains("steps"), "{d}");
    let d = diagnostic("name: \"two words\"\nsteps: []\n");
    assert_eq!(d.field, "name", "{d}");
    let d = diagnostic("name: t\nsteps: []\n");
    assert!(d.message.contains("at least one step"), "{d}");
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "name: t\nsteps:\n  - ingest: { clients: 0, records_per_client: 1, size: 100 }\n",
    )
    .unwrap();
    let e = spec::load(&path).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}:3:", path.display())),
        "{text}"
    );
    assert!(text.contains("steps[0].ingest.clients"), "{text}");
    let missing = spec::load(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(matches!(missing, SpecError::Read { .. }), "{missing}");
}

#[test]
fn json_round_trips_every_bundled_workload() {
    for file in bundled() {
        let w = spec::load(&file).unwrap();
        let json = w.to_json();
        assert!(!json.contains('\n'));
        let back = Workload::from_json(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(back, w, "{file:?}");
    }
    let mut w = spec::parse(&format!("{MINIMAL}power_cut: {{ random: true }}\n"), "t").unwrap();
    w.seed = u64::MAX;
    assert_eq!(Workload::from_json(&w.to_json()).unwrap(), w);
}

#[test]
fn json_is_checked_like_yaml() {
    let w = spec::parse(MINIMAL, "t").unwrap();
    let json = w.to_json().replace("\"count\":3", "\"count\":0");
    let e = Workload::from_json(&json).unwrap_err();
    let d = e.diagnostic().unwrap();
    assert_eq!(d.field, "steps[0].append.count", "{d}");
    assert!(d.line.is_some());
    assert!(Workload::from_json("{").is_err());
    assert!(Workload::from_json(&format!("{} x", w.to_json())).is_err());
}

#[test]
fn power_cut_forms() {
    let w = spec::parse(&format!("{MINIMAL}power_cut: {{ at_ack: 2 }}\n"), "t").unwrap();
    assert_eq!(w.power_cut, Some(PowerCut::AtAck(2)));
    assert_eq!(w.power_cut_after_ack(), Some(2));
    let mut w = spec::parse(&format!("{MINIMAL}power_cut: {{ random: true }}\n"), "t").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        w.seed = seed;
        let n = w.power_cut_after_ack().unwrap();
        assert!((1..=3).contains(&n));
        assert_eq!(w.power_cut_after_ack(), Some(n), "same seed, same choice");
        seen.insert(n);
    }
    assert_eq!(seen.len(), 3, "every ack gets chosen for some seed");
    for bad in [
        "{ random: false }",
        "{}",
        "{ at_ack: 1, random: true }",
        "{ at_ack: 0 }",
    ] {
        let d = diagnostic(&format!("{MINIMAL}power_cut: {bad}\n"));
        assert!(d.line == Some(4), "{bad}: {d}");
    }
}

#[test]
fn validate_catches_workloads_changed_in_code() {
    let mut w = spec::parse(MINIMAL, "t").unwrap();
    w.validate().unwrap();
    let Step::Append(a) = &mut w.steps[0] else {
        panic!()
    };
    a.size.min_bytes = 3;
    let e = w.validate().unwrap_err();
    assert_eq!(e.diagnostic().unwrap().field, "steps[0].append.size", "{e}");
    let mut w = spec::parse(MINIMAL, "t").unwrap();
    w.steps.push(Step::File(FileOp::Remove {
        path: "ghost".into(),
        fsync_dir: true,
    }));
    assert!(w
        .validate()
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
}

#[test]
fn byte_sizes() {
    assert_eq!(spec::parse_byte_size("4096").unwrap(), 4096);
    assert_eq!(spec::parse_byte_size("4KiB").unwrap(), 4096);
    assert_eq!(spec::parse_byte_size("4 K").unwrap(), 4096);
    assert_eq!(spec::parse_byte_size("2MiB").unwrap(), 2 << 20);
    assert_eq!(spec::parse_byte_size("1GiB").unwrap(), 1 << 30);
    for bad in [
        "",
        "KiB",
        "4 KB",
        "-1",
        "99999999999999999999",
        "99999999999GiB",
    ] {
        assert!(spec::parse_byte_size(bad).is_err(), "{bad:?}");
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parse_never_panics(text in "[ -~\n]{0,300}") {
            let _ = spec::parse(&text, "fuzz.yaml");
            let _ = Workload::from_json(&text);
        }

        #[test]
        fn mutated_smoke_never_panics(cut in 0usize..900, byte in any::<u8>()) {
            let text = include_str!("../smoke.yaml");
            let mut bytes = text.as_bytes().to_vec();
            let at = cut % bytes.len();
            bytes[at] = byte;
            if let Ok(text) = String::from_utf8(bytes) {
                if let Ok(w) = spec::parse(&text, "fuzz.yaml") {
                    prop_assert!(w.validate().is_ok());
                    prop_assert_eq!(Workload::from_json(&w.to_json()).unwrap(), w);
                }
            }
        }
    }
}

/// The engine's record limit is the one the workload check applies: with 64 KiB of staging a
/// 28,608-byte record passed the check and the engine refused it (or hung) only in the VM.
#[test]
fn record_sizes_are_checked_against_the_engines_own_limit() {
    let with = |size: u64| {
        spec::parse(
            &format!(
                "name: t\nwriter:\n  max_staging_bytes: 64KiB\nsteps:\n  - append: {{ count: 1, \
                 size: {size} }}\n"
            ),
            "t.yaml",
        )
    };
    let options = with(100).unwrap().journal_options();
    let limit = options.max_record_payload_bytes(4096).unwrap() as u64;
    assert_eq!(
        limit, 4056,
        "12 KiB buffers less two blocks and a record's overhead"
    );
    with(limit).unwrap();
    let err = with(28_608).unwrap_err().to_string();
    assert!(err.contains(&format!("limit of {limit} bytes")), "{err}");
    assert!(with(limit + 1).is_err());
}
