//! `fault:` and `clear_fault:` steps: parsing, the JSON round trip to the guest, located errors
//! for bad ones, and the host executor refusing them clearly (only the guest agent can inject).

use powercut_workloads::ack::Ack;
use powercut_workloads::executor::{self, AckSink, ExecError};
use powercut_workloads::spec::{
    self, EioKind, FaultSpec, FaultTarget, SpecDiagnostic, SpecError, Step, Workload,
};

fn diagnostic(text: &str) -> SpecDiagnostic {
    match spec::parse(text, "workloads/x.yaml") {
        Ok(w) => panic!("parsed an invalid workload: {w:?}"),
        Err(SpecError::Invalid(d)) => d,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn with_steps(steps: &str) -> String {
    format!(
        "name: t\nwriter: {{ segment_bytes: 256KiB }}\nsteps:\n  - append: {{ count: 3, size: 100 }}\n{steps}"
    )
}

#[test]
fn fault_steps_parse_and_round_trip_through_json() {
    let text = with_steps(
        "  - fault: { eio: writes, target: journal, clear_after_steps: 1 }\n  \
         - append: { count: 2, size: 100 }\n  - fault: { eio: writes, target: { sectors: [2048, 16] } }\n  \
         - append: { count: 2, size: 100 }\n  - clear_fault: {}\n  - reopen: {}\n",
    );
    let w = spec::parse(&text, "x.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        w.steps[1],
        Step::Fault(FaultSpec {
            eio: EioKind::Writes,
            target: FaultTarget::Journal,
            clear_after_steps: Some(1),
        })
    );
    assert_eq!(
        w.steps[3],
        Step::Fault(FaultSpec {
            eio: EioKind::Writes,
            target: FaultTarget::Sectors([2048, 16]),
            clear_after_steps: None,
        })
    );
    assert_eq!(w.steps[5], Step::ClearFault);
    assert!(w.has_faults());
    assert_eq!(w.steps[5].kind(), "clear_fault");
    assert_eq!(Workload::from_json(&w.to_json()).unwrap(), w);
}

#[test]
fn bad_fault_fields_are_located() {
    let d = diagnostic(&with_steps("  - fault: { eio: reads, target: journal }\n"));
    assert_eq!(d.field, "steps[1].fault.eio", "{d}");
    assert_eq!(d.line, Some(5), "{d}");
    assert!(d.message.contains("writes"), "{d}");

    let d = diagnostic(&with_steps(
        "  - fault: { eio: flush, target: journal }\n  - clear_fault:\n",
    ));
    assert!(d.field.starts_with("steps[1]"), "{d}");
    assert_eq!(d.line, Some(5), "{d}");
    assert!(d.message.contains("fault.target: `eio: flush`"), "{d}");

    let d = diagnostic(&with_steps(
        "  - fault: { eio: writes, target: device }\n  - clear_fault:\n",
    ));
    assert!(d.field.starts_with("steps[1]"), "{d}");
    assert!(d.message.contains("aborts"), "{d}");

    let w = powercut_workloads::spec::parse(
        &with_steps(
            "  - fault: { eio: flush, target: device, clear_after_steps: 1 }\n  \
                     - append: { count: 1, size: 100 }\n",
        ),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(
        w.steps[1],
        Step::Fault(FaultSpec {
            eio: EioKind::Flush,
            target: FaultTarget::Device,
            clear_after_steps: Some(1),
        })
    );
    assert_eq!(Workload::from_json(&w.to_json()).unwrap(), w);

    let d = diagnostic(&with_steps(
        "  - fault: { eio: writes, target: disk }\n  - clear_fault:\n",
    ));
    assert!(d.field.starts_with("steps[1].fault.target"), "{d}");
    assert_eq!(d.line, Some(5), "{d}");
    assert!(d.message.contains("sectors: [start, count]"), "{d}");

    let d = diagnostic(&with_steps(
        "  - fault: { eio: writes, target: journal, clear_after_steps: 0 }\n",
    ));
    assert_eq!(d.field, "steps[1].fault.clear_after_steps", "{d}");

    let d = diagnostic(&with_steps(
        "  - fault: { eio: writes, target: journal, after: 3 }\n  - clear_fault: {}\n",
    ));
    assert!(d.message.contains("after"), "{d}");

    let d = diagnostic(&with_steps(
        "  - fault: { eio: writes, target: { sectors: [8, 0] } }\n  - clear_fault: {}\n",
    ));
    assert!(d.field.starts_with("steps[1]"), "{d}");
    assert!(d.message.contains("count"), "{d}");
}

#[test]
fn fault_sequences_are_checked() {
    // Never cleared.
    let d = diagnostic(&with_steps("  - fault: { eio: writes, target: journal }\n"));
    assert!(d.message.contains("never cleared"), "{d}");
    // Cleared by clear_after_steps: fine.
    spec::parse(
        &with_steps(
            "  - fault: { eio: writes, target: journal, clear_after_steps: 2 }\n  \
             - append: { count: 1, size: 100 }\n  - append: { count: 1, size: 100 }\n  - reopen:\n",
        ),
        "x.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // A reopen while armed (the automatic clear comes one step too late).
    let d = diagnostic(&with_steps(
        "  - fault: { eio: writes, target: journal, clear_after_steps: 2 }\n  \
         - append: { count: 1, size: 100 }\n  - reopen:\n",
    ));
    assert_eq!(d.field, "steps[3]", "{d}");
    assert!(d.message.contains("reopen"), "{d}");
    // Two faults at once, a clear with none armed.
    let d = diagnostic(&with_steps(
        "  - fault: { eio: writes, target: journal }\n  - fault: { eio: writes, target: journal }\n",
    ));
    assert_eq!(d.field, "steps[2]", "{d}");
    let d = diagnostic(&with_steps(
        "  - fault: { eio: writes, target: journal }\n  - clear_fault: {}\n  \
         - ingest: { clients: 1, records_per_client: 1, size: 100 }\n",
    ));
    assert_eq!(d.field, "steps[3]", "{d}");
    assert!(d.message.contains("reopen"), "{d}");
    let d = diagnostic(&with_steps("  - clear_fault: {}\n"));
    assert_eq!(d.field, "steps[1]", "{d}");
    assert!(d.message.contains("no fault"), "{d}");
    // Faults and power cuts do not mix.
    let d = diagnostic(&format!(
        "{}power_cut: {{ at_ack: 1 }}\n",
        with_steps("  - fault: { eio: writes, target: journal }\n  - clear_fault:\n")
    ));
    assert_eq!(d.field, "power_cut", "{d}");
}

#[test]
fn every_existing_step_kind_still_parses_beside_faults() {
    let text = with_steps(
        "  - rotate:\n  - file: { op: create, path: a, size: 10 }\n  - reopen: {}\n  \
         - fault: { eio: writes, target: journal }\n  - clear_fault:\n",
    );
    let w = spec::parse(&text, "x.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.steps.len(), 6);
}

struct Collect(std::sync::Mutex<Vec<Ack>>);

impl AckSink for Collect {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        self.0.lock().unwrap().push(ack.clone());
        Ok(())
    }
}

#[test]
fn the_host_executor_refuses_faults_clearly() {
    let w = spec::parse(
        &with_steps("  - fault: { eio: writes, target: journal }\n  - clear_fault:\n"),
        "x.yaml",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = Collect(std::sync::Mutex::new(Vec::new()));
    match executor::execute(&w, dir.path(), &sink) {
        Err(ExecError::Fault { phase, message }) => {
            assert_eq!(phase.to_string(), "steps[1] (fault)");
            assert!(message.contains("guest agent"), "{message}");
        }
        other => panic!("expected a fault error, got {other:?}"),
    }
}

/// A sink that accepts fault actions without injecting anything (so nothing fails) and keeps
/// them, with the number of acks seen before each.
#[derive(Default)]
struct FaultLog {
    acks: std::sync::Mutex<Vec<Ack>>,
    actions: std::sync::Mutex<Vec<(usize, executor::FaultAction)>>,
}

impl AckSink for FaultLog {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        self.acks.lock().unwrap().push(ack.clone());
        Ok(())
    }

    fn fault(&self, action: &executor::FaultAction) -> Result<(), String> {
        let acks = self.acks.lock().unwrap().len();
        self.actions.lock().unwrap().push((acks, action.clone()));
        Ok(())
    }
}

#[test]
fn clear_after_steps_clears_after_that_many_steps() {
    let w = spec::parse(
        &with_steps(
            "  - fault: { eio: writes, target: journal, clear_after_steps: 2 }\n  \
             - append: { count: 2, size: 100 }\n  - append: { count: 3, size: 100 }\n  \
             - append: { count: 1, size: 100 }\n",
        ),
        "x.yaml",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = FaultLog::default();
    let summary = executor::execute(&w, dir.path(), &sink).unwrap_or_else(|e| panic!("{e}"));
    // Nothing failed (no device under the sink), so every record is acked, none refused.
    assert_eq!(summary.records, 9);
    assert_eq!(summary.records_failed, 0);
    assert_eq!(summary.poisoned_refusals, 0);
    assert!(summary.findings.is_empty());
    let actions = sink.actions.into_inner().unwrap();
    assert_eq!(actions.len(), 2, "{actions:?}");
    // Armed after the start ack and the 3 records of step 0, with the journal directory.
    match &actions[0] {
        (4, executor::FaultAction::Arm { fault, journal_dir }) => {
            assert_eq!(fault.target, FaultTarget::Journal);
            assert_eq!(journal_dir, &dir.path().join("journal"));
        }
        other => panic!("{other:?}"),
    }
    // Cleared once the two steps after the fault (2 + 3 records) are done, before the last.
    assert_eq!(actions[1], (9, executor::FaultAction::Clear));
}

#[test]
fn file_fault_targets_parse_round_trip_and_bad_names_are_located() {
    let text = with_steps(
        "  - fault: { eio: writes, target: { file: sub/k1.db } }\n  - clear_fault: {}\n",
    );
    let w = spec::parse(&text, "x.yaml").unwrap_or_else(|e| panic!("{e}"));
    let Step::Fault(fault) = &w.steps[1] else {
        panic!("{:?}", w.steps[1]);
    };
    assert_eq!(fault.target, FaultTarget::File("sub/k1.db".into()));
    assert_eq!(
        w.steps[1].describe(),
        "fault: EIO on the file sub/k1.db",
        "{w:?}"
    );
    assert_eq!(Workload::from_json(&w.to_json()).unwrap(), w);
    let yaml = serde_yaml::to_string(&w).unwrap();
    assert!(yaml.contains("file: sub/k1.db"), "{yaml}");
    assert_eq!(spec::parse(&yaml, "y.yaml").unwrap(), w);

    let long = "a".repeat(201);
    for (name, why) in [
        ("/etc/passwd", "relative"),
        ("../k1", "'..'"),
        ("a/../k1", "'..'"),
        ("''", "1 to 200"),
        (long.as_str(), "1 to 200"),
        ("'a b'", "1 to 200"),
    ] {
        let d = diagnostic(&with_steps(&format!(
            "  - fault: {{ eio: writes, target: {{ file: {name} }} }}\n  - clear_fault: {{}}\n"
        )));
        assert!(d.field.starts_with("steps[1].fault.target"), "{name}: {d}");
        assert_eq!(d.line, Some(5), "{name}: {d}");
        assert!(d.message.contains(why), "{name}: {d}");
    }

    // A flush fault covers the device, never one file.
    let d = diagnostic(&with_steps(
        "  - fault: { eio: flush, target: { file: k1 } }\n  - clear_fault: {}\n",
    ));
    assert!(d.message.contains("target: device"), "{d}");

    // A workload built in code is held to the same checks.
    let mut built = w.clone();
    built.steps[1] = Step::Fault(FaultSpec {
        eio: EioKind::Writes,
        target: FaultTarget::File("../escape".into()),
        clear_after_steps: None,
    });
    let err = Workload::from_json(&built.to_json())
        .unwrap_err()
        .to_string();
    assert!(err.contains("'..'"), "{err}");
}
