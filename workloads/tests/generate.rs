//! The campaign's workload generator: deterministic per seed, every workload valid, the
//! exhaustive mode enumerating exactly the sequences of the alphabet.

use std::collections::BTreeSet;

use powercut_workloads::generate::{
    exhaustive_count, step_kind, Generator, GeneratorConfig, Mode, Op, ALPHABET, EPILOGUE,
    PROLOGUE, RANDOM_EVERY,
};
use powercut_workloads::spec::{self, EioKind, Filesystem, Step};

fn generator(seed: u64, depth: usize) -> Generator {
    Generator::new(GeneratorConfig {
        depth,
        filesystems: vec![Filesystem::Ext4, Filesystem::Xfs],
        ..GeneratorConfig::new(seed)
    })
    .unwrap()
}

fn first(generator: &Generator, n: usize) -> Vec<String> {
    generator.iter().take(n).map(|g| g.unwrap().yaml).collect()
}

#[test]
fn the_same_seed_gives_the_same_workloads_and_another_seed_others() {
    let a = first(&generator(1, 3), 200);
    let b = first(&generator(1, 3), 200);
    assert_eq!(a, b);
    let c = first(&generator(2, 3), 200);
    let differing = a.iter().zip(&c).filter(|(x, y)| x != y).count();
    // Names carry the seed; the bodies (options, payload seeds, random steps) differ too.
    let bodies = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|y| y.lines().filter(|l| !l.contains("gen-s")).collect())
            .collect()
    };
    let body_differs = bodies(&a)
        .iter()
        .zip(&bodies(&c))
        .filter(|(x, y)| x != y)
        .count();
    assert_eq!(differing, 200);
    assert!(body_differs > 150, "{body_differs} of 200 bodies differ");
    // Random access: workload i alone equals workload i of the sequence.
    let g = generator(1, 3);
    assert_eq!(g.generate(137).unwrap().yaml, a[137]);
}

#[test]
fn hundreds_of_generated_workloads_pass_the_workload_checks() {
    let mut kinds = BTreeSet::new();
    let mut filesystems = BTreeSet::new();
    let mut modes = BTreeSet::new();
    for seed in [1u64, 7, 1 << 40] {
        let g = generator(seed, 3);
        for index in (0..300).chain(5000..5100) {
            let generated = g.generate(index).unwrap();
            let parsed = spec::parse(&generated.yaml, "generated.yaml")
                .unwrap_or_else(|e| panic!("{e}\n{}", generated.yaml));
            assert_eq!(parsed, generated.workload);
            parsed.validate().unwrap();
            assert_eq!(parsed.steps.first(), Some(&Step::Append(PROLOGUE)));
            assert_eq!(parsed.steps.last(), Some(&Step::Append(EPILOGUE)));
            kinds.extend(parsed.steps.iter().map(step_kind));
            filesystems.insert(parsed.filesystem.name());
            modes.insert(generated.mode);
            assert!(parsed.writer.mutant.is_none());
        }
    }
    for kind in [
        "append",
        "group_commit",
        "ingest",
        "rotate",
        "retire",
        "reopen",
        "create",
        "rename",
        "remove",
        "fault",
        "clear_fault",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    assert_eq!(filesystems.len(), 2);
    assert_eq!(modes.len(), 2);
}

#[test]
fn exhaustive_mode_enumerates_every_sequence_of_up_to_two_operations_once() {
    let g = generator(3, 2);
    let letters = ALPHABET.len() as u64;
    assert_eq!(letters, 13);
    assert_eq!(g.exhaustive_total(), letters + letters * letters);
    assert_eq!(exhaustive_count(2), 182);
    assert_eq!(exhaustive_count(3), 182 + 2197);
    let mut sequences = BTreeSet::new();
    let mut exhaustive = 0;
    let mut random = 0;
    // Far past the last exhaustive one: the count must stop at 182.
    for generated in g.iter().take(400) {
        let generated = generated.unwrap();
        match generated.mode {
            Mode::Exhaustive => {
                exhaustive += 1;
                assert!(sequences.insert(generated.ops.clone()), "twice");
            }
            Mode::Random => {
                random += 1;
                assert!(generated.ops.len() > 2);
            }
        }
    }
    assert_eq!(exhaustive, 182);
    assert_eq!(random, 400 - 182);
    let mut expected = BTreeSet::new();
    for a in ALPHABET {
        expected.insert(vec![a]);
        for b in ALPHABET {
            expected.insert(vec![a, b]);
        }
    }
    assert_eq!(sequences, expected);
    // Random workloads are interleaved while exhaustive ones remain.
    let early: Vec<Mode> = (0..RANDOM_EVERY * 3)
        .map(|i| g.generate(i).unwrap().mode)
        .collect();
    assert_eq!(early.iter().filter(|m| **m == Mode::Random).count(), 3);
}

#[test]
fn file_operations_that_need_a_file_get_one() {
    let g = generator(5, 2);
    let ordinal_of = |ops: &[Op]| {
        (0..g.exhaustive_total())
            .find(|&o| powercut_workloads::generate::exhaustive_ops(o, 2).unwrap() == ops)
            .unwrap()
    };
    // Workload index of exhaustive ordinal o (every RANDOM_EVERY-th index is random).
    let index_of = |o: u64| o + o / (RANDOM_EVERY - 1);
    let ordinal = ordinal_of(&[Op::Remove, Op::Rename]);
    let generated = g.generate(index_of(ordinal)).unwrap();
    assert_eq!(generated.ops, vec![Op::Remove, Op::Rename]);
    let kinds: Vec<&str> = generated.workload.steps.iter().map(step_kind).collect();
    assert_eq!(
        kinds,
        [
            "append",
            "create",
            "remove",
            "create",
            "rename",
            "group_commit"
        ]
    );
}

#[test]
fn bad_configurations_are_refused() {
    for (depth, max_random_ops, filesystems) in [
        (0, 10, vec![Filesystem::Ext4]),
        (4, 10, vec![Filesystem::Ext4]),
        (3, 3, vec![Filesystem::Ext4]),
        (2, 10, vec![]),
    ] {
        let config = GeneratorConfig {
            depth,
            max_random_ops,
            filesystems,
            ..GeneratorConfig::new(1)
        };
        assert!(Generator::new(config).is_err());
    }
}

/// Faults follow the rules of a workload file and end in a reopen; power cuts come only
/// without faults, and some random workloads get one.
#[test]
fn faults_are_cleared_and_reopened_and_some_workloads_cut_the_power() {
    let g = generator(11, 3);
    let mut faults = [0u32; 2];
    let mut cuts = 0;
    for index in 0..600 {
        let workload = g.generate(index).unwrap().workload;
        workload.validate().unwrap();
        let fault_at = workload
            .steps
            .iter()
            .rposition(|s| matches!(s, Step::Fault(_)));
        if let Some(at) = fault_at {
            assert!(workload.power_cut.is_none());
            // The fault is met by an append, and a reopen follows before the epilogue.
            assert!(matches!(workload.steps[at + 1], Step::Append(_)));
            assert!(workload.steps[at..].contains(&Step::Reopen));
            for step in &workload.steps {
                if let Step::Fault(f) = step {
                    faults[usize::from(f.eio == EioKind::Flush)] += 1;
                    if f.eio == EioKind::Flush {
                        assert_eq!(f.clear_after_steps, Some(1));
                    }
                }
            }
        }
        cuts += u32::from(workload.power_cut.is_some());
    }
    assert!(faults[0] > 20 && faults[1] > 20, "{faults:?}");
    assert!(cuts > 8, "{cuts} power cuts");
}
