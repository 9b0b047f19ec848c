//! The run after a power cut (invariant I8): `after_crash:` in specs, the executor's
//! continuation on an existing journal, and the job that carries the first run's acks.

mod common;

use std::path::Path;
use std::sync::Mutex;

use common::scratch;
use powercut_workloads::ack::Ack;
use powercut_workloads::executor::{self, AckSink, RunFinding};
use powercut_workloads::payload;
use powercut_workloads::protocol::{GuestMessage, Job};
use powercut_workloads::spec::{self, SpecError, Step, Workload, AFTER_CRASH_WRITER_BASE};

#[derive(Default)]
struct Sink {
    acks: Mutex<Vec<Ack>>,
    prior_violations: Mutex<Vec<RunFinding>>,
}

impl AckSink for Sink {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        self.acks.lock().unwrap().push(ack.clone());
        Ok(())
    }

    fn prior_violation(&self, violation: &RunFinding) {
        self.prior_violations
            .lock()
            .unwrap()
            .push(violation.clone());
    }
}

const CUT: &str = "name: t\nseed: 5\nwriter: { segment_bytes: 64KiB }\nsteps:\n  - append: { count: 6, size: [100, 900], commit_every: 1 }\n  - file: { op: create, path: d/f, size: 700 }\n  - append: { count: 4, size: [100, 900], commit_every: 2 }\npower_cut: { at_ack: 5 }\n";

fn err(text: &str) -> spec::SpecDiagnostic {
    match spec::parse(text, "x.yaml") {
        Err(SpecError::Invalid(d)) => d,
        other => panic!("expected an invalid workload, got {other:?}"),
    }
}

#[test]
fn after_crash_defaults_parses_and_round_trips() {
    let w = spec::parse(CUT, "x.yaml").unwrap();
    assert_eq!(w.after_crash, None);
    let steps = w.after_crash_steps();
    assert_eq!(steps, spec::default_after_crash_steps());
    assert_eq!(steps.len(), 3);
    assert!(matches!(steps[1], Step::Rotate));
    // 8 + 4 commits of two records, plus start, what the opening recovery returned, and end.
    assert_eq!(w.after_crash_acks(), 15);

    let given = format!("{CUT}after_crash:\n  - append: {{ count: 3, size: 200 }}\n  - file: {{ op: create, path: g, size: 10 }}\n");
    let w = spec::parse(&given, "x.yaml").unwrap();
    assert_eq!(w.after_crash_steps().len(), 2);
    assert_eq!(w.after_crash_acks(), 3 + 3 + 1);
    let back = Workload::from_json(&w.to_json()).unwrap();
    assert_eq!(back, w);

    // No power cut: no run after it.
    let no_cut = CUT.replace("power_cut: { at_ack: 5 }\n", "");
    assert!(spec::parse(&no_cut, "x.yaml")
        .unwrap()
        .after_crash_steps()
        .is_empty());
}

#[test]
fn after_crash_errors_are_located() {
    let no_cut = CUT.replace(
        "power_cut: { at_ack: 5 }\n",
        "after_crash:\n  - rotate: {}\n",
    );
    let d = err(&no_cut);
    assert_eq!(d.field, "after_crash");
    assert!(d.message.contains("power cut"), "{}", d.message);
    assert_eq!(d.line, Some(8));

    let bad_count =
        format!("{CUT}after_crash:\n  - rotate: {{}}\n  - append: {{ count: 0, size: 100 }}\n");
    let d = err(&bad_count);
    assert!(d.field.starts_with("after_crash[1]"), "{}", d.field);
    assert_eq!(d.line, Some(11), "{d:?}");

    // The run after the crash may only touch files it creates itself.
    let rename = format!("{CUT}after_crash:\n  - file: {{ op: rename, path: d/f, to: d/g }}\n");
    let d = err(&rename);
    assert!(d.field.starts_with("after_crash[0]"), "{}", d.field);

    let too_big = format!("{CUT}after_crash:\n  - append: {{ count: 1, size: 70000 }}\n");
    let d = err(&too_big);
    assert!(d.field.starts_with("after_crash[0].append"), "{}", d.field);

    // The disk must hold both runs.
    let huge = format!(
        "{CUT}after_crash:\n  - append: {{ count: 20000, size: 4000, commit_every: 100 }}\n"
    );
    let d = err(&huge);
    assert_eq!(d.field, "disk_mib", "{d:?}");
    assert!(spec::parse(&huge.replace("count: 20000", "count: 200"), "x.yaml").is_ok());

    let empty = format!("{CUT}after_crash: []\n");
    assert_eq!(err(&empty).field, "after_crash");

    // Changed in code: validate() catches it too.
    let mut w = spec::parse(CUT, "x.yaml").unwrap();
    w.power_cut = None;
    w.after_crash = Some(vec![Step::Rotate]);
    assert!(w.validate().is_err());
}

/// The acks of the first run up to its power cut (start ack plus `durable` acks).
fn first_run(w: &Workload, root: &Path, durable: usize) -> Vec<Ack> {
    let sink = Sink::default();
    executor::execute(w, root, &sink).unwrap();
    let acks = sink.acks.into_inner().unwrap();
    acks[..=durable].to_vec()
}

#[test]
fn continuation_recovers_checks_and_appends_after_the_recovered_records() {
    let w = spec::parse(CUT, "x.yaml").unwrap();
    let dir = scratch("after-crash-");
    let root = dir.path().join("pc");
    let prior = first_run(&w, &root, 5);
    let sink = Sink::default();
    let outcome = executor::continue_after_crash(&w, &root, &prior, &sink).unwrap();
    assert_eq!(outcome.prior_violations, vec![]);
    assert!(sink.prior_violations.lock().unwrap().is_empty());
    assert_eq!(outcome.recovered_records, 10);
    let execution = outcome.execution.unwrap();
    assert_eq!(execution.records, 24);
    let acks = sink.acks.into_inner().unwrap();
    assert_eq!(acks.len() as u64, w.after_crash_acks());
    assert!(
        matches!(
            acks[1],
            Ack::Recovered {
                first_lsn: 1,
                last_lsn: 10,
                ..
            }
        ),
        "the opening recovery's records are acked (I9): {:?}",
        acks[1]
    );
    assert!(
        matches!(
            acks[2],
            Ack::Records {
                first_lsn: 11,
                last_lsn: 12,
                ..
            }
        ),
        "the first new records continue at LSN 11: {:?}",
        acks[2]
    );
    let recovery = powercut_writer::recover(&root.join("journal")).unwrap();
    assert_eq!(recovery.records.len(), 34);
    for (i, record) in recovery.records.iter().enumerate() {
        assert_eq!(record.lsn, i as u64 + 1);
        let origin = payload::verify(w.seed, &record.payload).unwrap();
        if i < 10 {
            assert_eq!(origin.writer, 0);
        } else {
            assert_eq!(origin.writer, AFTER_CRASH_WRITER_BASE);
        }
    }
    // The file of the first run is still there, untouched.
    assert!(root.join("files/d/f").exists());
}

#[test]
fn continuation_reports_broken_prior_acks_instead_of_failing() {
    let w = spec::parse(CUT, "x.yaml").unwrap();
    let dir = scratch("after-crash-");
    let root = dir.path().join("pc");
    let mut prior = first_run(&w, &root, 5);
    prior.push(Ack::Records {
        first_lsn: 999,
        last_lsn: 999,
        crc32c: 0,
    });
    prior.push(Ack::FileCreate {
        path: "never".into(),
        crc32c: 0,
    });
    // An acked record whose bytes differ: LSN 1 with a wrong crc.
    prior.push(Ack::Records {
        first_lsn: 1,
        last_lsn: 1,
        crc32c: 0xdead_beef,
    });
    let sink = Sink::default();
    let outcome = executor::continue_after_crash(&w, &root, &prior, &sink).unwrap();
    let invariants: Vec<&str> = outcome
        .prior_violations
        .iter()
        .map(|v| v.invariant.as_str())
        .collect();
    assert_eq!(
        invariants,
        ["I1", "I1", "I2", "I6"],
        "{:?}",
        outcome.prior_violations
    );
    assert!(outcome.prior_violations[0]
        .found
        .contains("missing LSN 999"));
    assert!(outcome.prior_violations[1].found.contains("crc32c"));
    assert_eq!(
        *sink.prior_violations.lock().unwrap(),
        outcome.prior_violations
    );
    // The steps still ran.
    assert_eq!(outcome.execution.unwrap().records, 24);
}

#[test]
fn continuation_on_an_unopenable_journal_is_a_finding() {
    let w = spec::parse(CUT, "x.yaml").unwrap();
    let dir = scratch("after-crash-");
    let root = dir.path().join("pc");
    let prior = first_run(&w, &root, 5);
    // A segment the engine cannot make sense of: garbage over the whole first segment.
    let journal = root.join("journal");
    let mut segments: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let first = &segments[0];
    let len = std::fs::metadata(first).unwrap().len() as usize;
    std::fs::write(first, vec![0x5a; len]).unwrap();
    let sink = Sink::default();
    let outcome = executor::continue_after_crash(&w, &root, &prior, &sink).unwrap();
    assert!(
        !outcome.prior_violations.is_empty(),
        "garbage instead of acked records must be reported"
    );
    assert!(outcome
        .prior_violations
        .iter()
        .any(|v| v.invariant == "I4" || v.invariant == "I1"));
}

#[test]
fn continuation_jobs_round_trip_and_plain_jobs_stay_workloads() {
    let w = spec::parse(CUT, "x.yaml").unwrap();
    let fresh = Job::Fresh(w.clone());
    assert_eq!(fresh.to_json(), w.to_json());
    assert_eq!(Job::from_json(&fresh.to_json()).unwrap(), fresh);
    let cont = Job::ContinueAfterCrash {
        workload: w.clone(),
        prior_acks: vec![
            Ack::Start { name: "t".into() },
            Ack::Records {
                first_lsn: 1,
                last_lsn: 2,
                crc32c: 7,
            },
        ],
    };
    let back = Job::from_json(&cont.to_json()).unwrap();
    assert_eq!(back, cont);
    assert_eq!(back.workload(), &w);
    assert!(Job::from_json("{\"continue_after_crash\": {\"prior_acks\": []}}").is_err());
    assert!(Job::from_json("{\"continue_after_crash\": 3, \"workload\": {}}").is_err());
    assert!(Job::from_json("not json").is_err());

    let message = GuestMessage::RunFinding(RunFinding {
        invariant: "I1".into(),
        step: Some("r:3-3:00000000".into()),
        expected: "records 3..=3".into(),
        found: "missing LSN 3".into(),
    });
    let line = format!("{}\r", message.to_line());
    assert_eq!(GuestMessage::parse_line(&line).unwrap().unwrap(), message);
    // The wire name stays the one hosts and recordings know.
    assert!(message.to_line().contains(r#""type":"prior_violation""#));
}
