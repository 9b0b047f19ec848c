//! Hostile workload input is refused quickly and cheaply: only regular files, at most
//! `MAX_SPEC_BYTES`, nesting at most `MAX_NESTING_DEPTH` and at most `MAX_YAML_NODES` nodes with
//! aliases expanded, all before serde_yaml deserializes anything.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use powercut_workloads::spec::{
    self, InputError, SpecError, Workload, MAX_NESTING_DEPTH, MAX_SPEC_BYTES, MAX_YAML_NODES,
};

const STEPS: &str = "steps:\n  - append: { count: 3, size: 100 }\n";

/// Runs `f` on another thread and fails the test, rather than hanging it, if it takes longer
/// than `limit` (a FIFO opened for reading blocks until a writer appears).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("no answer within {limit:?}: {e}"))
}

fn input_error(result: Result<Workload, SpecError>) -> InputError {
    match result {
        Err(SpecError::Input(e)) => e,
        Err(e) => panic!("expected an input error, got: {e}"),
        Ok(w) => panic!("accepted: {w:?}"),
    }
}

/// Asserts a nesting refusal at `line`:`column` whose message names the file and the limit.
fn assert_too_deep(e: &InputError, source_name: &str, want_line: usize, want_column: usize) {
    match e {
        InputError::TooDeep {
            source_name: name,
            line,
            column,
            limit,
        } => {
            assert_eq!(name, source_name, "{e}");
            assert_eq!((*line, *column), (want_line, want_column), "{e}");
            assert_eq!(*limit, MAX_NESTING_DEPTH, "{e}");
        }
        other => panic!("expected a nesting error, got: {other}"),
    }
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{source_name}:{want_line}:{want_column}: ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("deeper than {MAX_NESTING_DEPTH} levels")),
        "{text}"
    );
}

#[test]
fn half_a_megabyte_of_open_brackets_is_refused_at_the_33rd() {
    // Was quadratic: about 90 s to be refused. The pass stops at the first level past the limit.
    let text = "[".repeat(500_000);
    let e = within(Duration::from_secs(60), move || {
        input_error(spec::parse(&text, "deep.yaml"))
    });
    assert_too_deep(&e, "deep.yaml", 1, MAX_NESTING_DEPTH + 1);

    // The same through a file, as `powercut workload check` reads it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.yaml");
    std::fs::write(&path, "[".repeat(500_000)).unwrap();
    let name = path.display().to_string();
    let e = within(Duration::from_secs(60), move || {
        input_error(spec::load(&path))
    });
    assert_too_deep(&e, &name, 1, MAX_NESTING_DEPTH + 1);
}

#[test]
fn every_kind_of_nesting_is_refused_past_the_limit() {
    let levels = 200_000;
    let past = MAX_NESTING_DEPTH + 1;
    // Flow maps: `{a: ` is 4 characters, so level N starts at column 4 (N - 1) + 1.
    let e = input_error(spec::parse(&"{a: ".repeat(levels), "t"));
    assert_too_deep(&e, "t", 1, 4 * (past - 1) + 1);
    // Compact block sequences on one line: `- ` is 2 characters.
    let e = input_error(spec::parse(&"- ".repeat(levels), "t"));
    assert_too_deep(&e, "t", 1, 2 * (past - 1) + 1);
    // Indented block maps: level N starts on line N, at column 2 (N - 1) + 1.
    let indented: String = (0..40).map(|i| format!("{}a:\n", "  ".repeat(i))).collect();
    let e = input_error(spec::parse(&indented, "t"));
    assert_too_deep(&e, "t", past, 2 * (past - 1) + 1);
}

#[test]
fn nesting_up_to_the_limit_reaches_serde_and_one_more_level_does_not() {
    // The workload's own map is level 1, so `x:` holds levels 2 and down.
    let nested = |levels: usize| {
        format!(
            "name: t\n{STEPS}x: {}{}\n",
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    match spec::parse(&nested(MAX_NESTING_DEPTH - 1), "t") {
        Err(SpecError::Invalid(d)) => assert!(d.message.contains("unknown field `x`"), "{d}"),
        other => panic!("expected serde_yaml's unknown-field error, got {other:?}"),
    }
    let e = input_error(spec::parse(&nested(MAX_NESTING_DEPTH), "t"));
    assert_too_deep(&e, "t", 4, 4 + MAX_NESTING_DEPTH - 1);
}

#[test]
fn billion_laughs_alias_bomb_is_refused() {
    let mut text = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .into_iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let aliases = vec![format!("*{prev}"); 10].join(", ");
        text.push_str(&format!("{name}: &{name} [{aliases}]\n"));
    }
    assert!(text.len() < 1000, "the bomb itself is tiny");
    let e = within(Duration::from_secs(60), move || {
        input_error(spec::parse(&text, "bomb.yaml"))
    });
    match &e {
        // Lines a..e hold 123,351 nodes; line 6 (`f`, 111,111 per alias) crosses the limit.
        InputError::TooManyNodes {
            source_name,
            line,
            limit,
            ..
        } => {
            assert_eq!(source_name, "bomb.yaml");
            assert_eq!(*line, 6, "{e}");
            assert_eq!(*limit, MAX_YAML_NODES);
        }
        other => panic!("expected a node-count error, got: {other}"),
    }
    let text = e.to_string();
    assert!(text.starts_with("bomb.yaml:6:"), "{text}");
    assert!(text.contains(&MAX_YAML_NODES.to_string()), "{text}");
}

#[test]
fn plain_nodes_are_counted_exactly() {
    // The map, its key `x` and the sequence are 3 nodes, then one per item; both texts are
    // under the size cap.
    let items = |n: usize| format!("x: [{}0]\n", "0,".repeat(n - 1));
    let limit = usize::try_from(MAX_YAML_NODES).unwrap();
    let at_limit = items(limit - 3);
    assert!(at_limit.len() < MAX_SPEC_BYTES);
    match spec::parse(&at_limit, "t") {
        Err(SpecError::Invalid(d)) => assert!(d.message.contains("unknown field `x`"), "{d}"),
        other => panic!("expected serde_yaml's unknown-field error, got {other:?}"),
    }
    let e = input_error(spec::parse(&items(limit - 2), "t"));
    assert!(matches!(e, InputError::TooManyNodes { line: 1, .. }), "{e}");
}

#[test]
fn aliases_nest_as_deep_as_what_they_repeat() {
    let half = MAX_NESTING_DEPTH / 2;
    let deep = format!("{}{}", "[".repeat(half), "]".repeat(half));
    // Level 1 (the map) + `half` levels of `*d` inside `half` levels of brackets.
    let text = format!(
        "d: &d {deep}\nx: {}*d{}\n",
        "[".repeat(half),
        "]".repeat(half)
    );
    let e = input_error(spec::parse(&text, "t"));
    assert!(matches!(e, InputError::TooDeep { line: 2, .. }), "{e}");
}

#[test]
fn an_alias_inside_its_own_anchor_is_refused() {
    let e = input_error(spec::parse("name: &loop [a, *loop]\n", "t"));
    match &e {
        InputError::RecursiveAlias {
            anchor,
            line,
            column,
            ..
        } => {
            assert_eq!(anchor, "loop");
            assert_eq!((*line, *column), (1, 17), "{e}");
        }
        other => panic!("expected a recursive-alias error, got: {other}"),
    }
    assert!(e.to_string().contains("*loop"), "{e}");
}

#[test]
fn ordinary_anchors_and_aliases_still_work() {
    let text = "name: t\nsteps:\n  - &step { append: { count: 3, size: 100 } }\n  - *step\n";
    let w = spec::parse(text, "t").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.steps.len(), 2);
    assert_eq!(w.steps[0], w.steps[1]);
}

#[test]
fn dev_zero_is_refused_without_reading_it() {
    let e = within(Duration::from_secs(10), || {
        input_error(spec::load(Path::new("/dev/zero")))
    });
    assert!(
        matches!(&e, InputError::NotRegularFile { path, kind: "character device" }
            if path == Path::new("/dev/zero")),
        "{e}"
    );
    assert!(e.to_string().starts_with("/dev/zero: "), "{e}");
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("w.yaml");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    let path = fifo.clone();
    let e = within(Duration::from_secs(10), move || {
        input_error(spec::load(&path))
    });
    assert!(
        matches!(&e, InputError::NotRegularFile { path, kind: "FIFO" } if *path == fifo),
        "{e}"
    );
    assert!(e.to_string().contains(&fifo.display().to_string()), "{e}");
}

#[test]
fn a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = input_error(spec::load(dir.path()));
    assert!(
        matches!(
            &e,
            InputError::NotRegularFile {
                kind: "directory",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_huge_file_is_refused_after_reading_one_byte_past_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    // Sparse: 8 GiB of zeros that take no disk, and would take 8 GiB of memory to read whole.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let name = path.display().to_string();
    let e = within(Duration::from_secs(60), move || {
        input_error(spec::load(&path))
    });
    assert!(
        matches!(&e, InputError::TooLarge { source_name, limit }
            if *source_name == name && *limit == MAX_SPEC_BYTES),
        "{e}"
    );
    assert!(e.to_string().contains(&MAX_SPEC_BYTES.to_string()), "{e}");
}

/// A valid workload whose description pads it to exactly `len` bytes.
fn padded_workload(len: usize) -> String {
    let head = "name: t\ndescription: \"";
    let tail = format!("\"\n{STEPS}");
    format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
}

#[test]
fn a_file_of_exactly_the_cap_loads_and_one_byte_more_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let at_cap = padded_workload(MAX_SPEC_BYTES);
    assert_eq!(at_cap.len(), MAX_SPEC_BYTES);
    std::fs::write(&path, &at_cap).unwrap();
    let w = spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.description.len(), at_cap.matches('x').count());
    assert_eq!(w.steps.len(), 1);

    std::fs::write(&path, padded_workload(MAX_SPEC_BYTES + 1)).unwrap();
    let e = input_error(spec::load(&path));
    assert!(matches!(e, InputError::TooLarge { .. }), "{e}");
    // Text handed straight to `parse` has the same cap.
    let e = input_error(spec::parse(&padded_workload(MAX_SPEC_BYTES + 1), "t"));
    assert!(matches!(e, InputError::TooLarge { .. }), "{e}");
}

#[test]
fn a_file_that_is_not_utf8_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"name: t\ndescription: caf\xe9\n").unwrap();
    let e = spec::load(&path).unwrap_err();
    assert!(matches!(e, SpecError::Read { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("line 2"), "{text}");
}
