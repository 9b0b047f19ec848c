//! The optional `writer: { mutant: MX }` field: parsed into the engine options, round-tripped
//! through JSON, and a bad name is a located error.

use powercut_workloads::spec::{self, SpecError};
use powercut_writer::Mutant;

#[test]
fn mutant_field_maps_to_the_engine_options_and_round_trips() {
    let text = "name: t\nwriter:\n  mutant: M3\nsteps:\n  - append: { count: 3, size: 100 }\n";
    let w = spec::parse(text, "x.yaml").unwrap();
    assert_eq!(w.writer.mutant, Some(Mutant::M3));
    assert_eq!(w.journal_options().mutant, Some(Mutant::M3));
    let back = powercut_workloads::spec::Workload::from_json(&w.to_json()).unwrap();
    assert_eq!(back.writer.mutant, Some(Mutant::M3));
}

#[test]
fn no_mutant_by_default() {
    let text = "name: t\nsteps:\n  - append: { count: 3, size: 100 }\n";
    let w = spec::parse(text, "x.yaml").unwrap();
    assert_eq!(w.journal_options().mutant, None);
    assert!(!w.to_json().contains("mutant"));
}

#[test]
fn unknown_mutant_is_a_located_error() {
    let text = "name: t\nwriter:\n  mutant: M99\nsteps:\n  - append: { count: 3, size: 100 }\n";
    match spec::parse(text, "x.yaml") {
        Err(SpecError::Invalid(d)) => {
            assert_eq!(d.line, Some(3), "{d}");
            assert!(d.field.contains("mutant"), "{d}");
            assert!(d.message.contains("M99"), "{d}");
        }
        other => panic!("expected a located error, got {other:?}"),
    }
}
