//! Programs under test: the `exec:` step, `guest_packages:` and `checker:` in the spec (parsed,
//! round-tripped through JSON, refused with located errors), and the executor running shell
//! programs whose ack lines become acks, failing on malformed lines, timeouts and exits.

mod common;

use std::sync::Mutex;

use common::scratch;
use powercut_workloads::ack::Ack;
use powercut_workloads::executor::{self, AckSink, ExecError, PROGRAM_DATA_DIR};
use powercut_workloads::spec::{self, CheckerSpec, ExecUser, SpecError, Step, Workload};

#[derive(Default)]
struct Sink(Mutex<Vec<Ack>>);

impl AckSink for Sink {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        assert_eq!(&Ack::parse_label(&ack.to_label()).unwrap(), ack);
        self.0.lock().unwrap().push(ack.clone());
        Ok(())
    }
}

fn program(script: &str, extra: &str) -> String {
    format!(
        "name: prog\nguest_packages: [sqlite3]\nsteps:\n  - exec:\n      argv: [sh, -c, {script:?}]\n      timeout: 5s\n{extra}checker:\n  kv: {{ dump: [cat, keys.txt] }}\n"
    )
}

fn parse(text: &str) -> Workload {
    spec::parse(text, "p.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn invalid(text: &str) -> String {
    match spec::parse(text, "p.yaml") {
        Ok(w) => panic!("parsed an invalid workload: {w:?}"),
        Err(e @ SpecError::Invalid(_)) => e.to_string(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// One program at a time: the ack channel takes the lowest free descriptor, which the test
/// programs' `sh` (dash: one digit in `>&$FD`) needs below 10; tests running programs side by
/// side would hold the low numbers open for each other.
static ONE_PROGRAM_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by every test while it runs a program.
fn one_program_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_PROGRAM_AT_A_TIME
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

fn run(w: &Workload) -> (Result<executor::ExecutionSummary, ExecError>, Vec<Ack>) {
    let _one = one_program_at_a_time();
    let dir = scratch("program");
    let sink = Sink::default();
    let result = executor::execute(w, &dir.path().join("pc"), &sink);
    let acks = sink.0.into_inner().unwrap();
    (result, acks)
}

#[test]
fn exec_step_parses_and_round_trips() {
    let w = parse(&program(
        "true",
        "      env: { MODE: full }\n      user: program\n",
    ));
    assert!(w.is_program());
    assert_eq!(w.guest_packages, ["sqlite3"]);
    let Step::Exec(e) = &w.steps[0] else {
        panic!("{:?}", w.steps[0])
    };
    assert_eq!(e.argv, ["sh", "-c", "true"]);
    assert_eq!(e.timeout_s, 5);
    assert_eq!(e.env["MODE"], "full");
    assert_eq!(e.user, ExecUser::Program);
    assert_eq!(
        w.checker,
        Some(CheckerSpec::Kv {
            dump: vec!["cat".into(), "keys.txt".into()]
        })
    );
    let back = Workload::from_json(&w.to_json()).unwrap();
    assert_eq!(back, w);
}

#[test]
fn bad_program_workloads_are_refused_with_their_place() {
    let no_checker = "name: p\nsteps:\n  - exec: { argv: [true] }\n";
    assert!(invalid(no_checker).contains("needs a checker"));
    let e = invalid(&program("true", "      user: root\n"));
    assert!(e.contains("allow_root_exec"), "{e}");
    let e = invalid(&program("true", "      timeout: 2d\n").replace("      timeout: 5s\n", ""));
    assert!(e.contains("duration unit"), "{e}");
    let e = invalid(&program("true", "      env: { POWERCUT_ACK_FD: '3' }\n"));
    assert!(e.contains("agent's"), "{e}");
    let e = invalid(&program("true", "").replace("[sqlite3]", "[SQLite]"));
    assert!(e.contains("guest_packages"), "{e}");
    let mixed =
        program("true", "").replace("steps:\n", "steps:\n  - append: { count: 1, size: 100 }\n");
    assert!(invalid(&mixed).contains("not the engine"));
    let e = invalid("name: p\nsteps:\n  - exec: { argv: [] }\nchecker: { command: [x] }\n");
    assert!(
        e.contains("steps[0].exec.argv") || e.contains("argv"),
        "{e}"
    );
    let engine_with_checker = "name: p\nsteps:\n  - rotate: {}\nchecker: { command: [x] }\n";
    assert!(invalid(engine_with_checker).contains("only for workloads that run programs"));
    let with_root = program("true", "      user: root\n") + "allow_root_exec: true\n";
    assert_eq!(
        parse(&with_root).steps[0],
        parse(&with_root).steps[0],
        "root is accepted with the flag"
    );
}

#[test]
fn ack_lines_become_acks_in_order_in_the_data_directory() {
    let script = "test \"$PWD\" = \"$POWERCUT_DATA_DIR\" || exit 9; \
                  printf v1 > k1 && echo \"ack k1 $(printf v1 | od -An -tx1 | tr -d ' ') k1\" >&$POWERCUT_ACK_FD; \
                  echo 'nack k2 disk full' >&$POWERCUT_ACK_FD; echo 'ack k3 Zm9v' >&$POWERCUT_ACK_FD";
    let (result, acks) = run(&parse(&program(script, "")));
    let summary = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.acks, 5);
    assert_eq!(
        acks[1..4],
        [
            Ack::Key {
                key: "k1".into(),
                digest: "7631".into()
            },
            Ack::Nack { key: "k2".into() },
            Ack::Key {
                key: "k3".into(),
                digest: "Zm9v".into()
            },
        ]
    );
    assert!(matches!(acks[0], Ack::Start { .. }));
    assert!(matches!(acks[4], Ack::End { .. }));
}

#[test]
fn a_malformed_line_fails_the_run_naming_the_line() {
    let script = "echo 'ack k1 aa' >&$POWERCUT_ACK_FD; echo 'ack k2' >&$POWERCUT_ACK_FD; sleep 8";
    let started = std::time::Instant::now();
    let (result, acks) = run(&parse(&program(script, "")));
    assert!(
        started.elapsed().as_secs() < 6,
        "the program is stopped at the malformed line"
    );
    let e = result.unwrap_err();
    assert!(matches!(e, ExecError::AckLine { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("line 2") && text.contains("ack k2"), "{text}");
    assert_eq!(
        acks.len(),
        2,
        "the valid line before it was acked: {acks:?}"
    );
}

#[test]
fn a_program_past_its_timeout_is_killed_and_fails_the_run() {
    let text = program("echo started; sleep 30", "").replace("timeout: 5s", "timeout: 3s");
    let started = std::time::Instant::now();
    let e = run(&parse(&text)).0.unwrap_err().to_string();
    assert!(started.elapsed().as_secs() < 12);
    assert!(e.contains("timeout of 3s") && e.contains("started"), "{e}");
}

#[test]
fn a_background_child_holding_the_channel_is_killed_at_the_timeout() {
    // The line is written at once; the timeout only has to outlast a loaded machine's start.
    let text = program("sleep 30 & echo 'ack k1 aa' >&$POWERCUT_ACK_FD", "")
        .replace("timeout: 5s", "timeout: 3s");
    let (result, acks) = run(&parse(&text));
    assert!(result.unwrap_err().to_string().contains("timeout"));
    assert_eq!(acks.len(), 2);
}

#[test]
fn a_failing_program_fails_the_run_with_its_output() {
    let e = run(&parse(&program("echo oops >&2; exit 3", "")))
        .0
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("exited with status 3") && e.contains("oops"),
        "{e}"
    );
    let missing = program("true", "").replace("argv: [sh, -c, \"true\"]", "argv: [/no/such]");
    let e = run(&parse(&missing)).0.unwrap_err().to_string();
    assert!(e.contains("/no/such"), "{e}");
}

#[test]
fn the_data_directory_is_made_for_the_program() {
    let dir = scratch("program");
    let root = dir.path().join("pc");
    let w = parse(&program("echo x > f", ""));
    let one = one_program_at_a_time();
    executor::execute(&w, &root, &Sink::default()).unwrap();
    drop(one);
    assert_eq!(
        std::fs::read_to_string(root.join(PROGRAM_DATA_DIR).join("f")).unwrap(),
        "x\n"
    );
}

#[test]
fn guest_files_parse_resolve_beside_the_workload_and_bad_lists_are_located() {
    let with_files = |files: &str| program("true", "") + &format!("guest_files: {files}\n");
    let w = parse(&with_files("[tools/run.sh, /abs/check]"));
    assert_eq!(w.guest_files, ["tools/run.sh", "/abs/check"]);
    assert_eq!(Workload::from_json(&w.to_json()).unwrap(), w);
    assert_eq!(spec::guest_file_name("tools/run.sh"), "run.sh");

    // `load` resolves relative paths against the workload file's directory, made absolute.
    let dir = scratch("guest-files");
    let path = dir.path().join("w.yaml");
    std::fs::write(&path, with_files("[tools/run.sh, /abs/check]")).unwrap();
    let loaded = spec::load(&path).unwrap();
    assert!(loaded.guest_files[0].starts_with('/'), "{loaded:?}");
    assert_eq!(
        loaded.guest_files,
        [
            dir.path()
                .join("tools/run.sh")
                .to_string_lossy()
                .into_owned(),
            "/abs/check".to_string()
        ]
    );

    for (files, field, why) in [
        (
            "[a/run.sh, b/run.sh]",
            "guest_files[1]",
            "a second file named run.sh",
        ),
        ("[tools/]", "guest_files[0]", "the file's name"),
        ("['']", "guest_files[0]", "the file's name"),
        ("[..]", "guest_files[0]", "the file's name"),
        ("['a b']", "guest_files[0]", "the file's name"),
    ] {
        let e = invalid(&with_files(files));
        assert!(e.contains(field) && e.contains(why), "{files}: {e}");
    }
    let many: Vec<String> = (0..=spec::MAX_GUEST_FILES)
        .map(|i| format!("f{i}"))
        .collect();
    let e = invalid(&with_files(&format!("[{}]", many.join(", "))));
    assert!(e.contains("more than"), "{e}");

    // Only for workloads that run programs.
    let e = invalid("name: e\nsteps:\n  - append: { count: 1, size: 100 }\nguest_files: [x.sh]\n");
    assert!(e.contains("guest_files") && e.contains("exec:"), "{e}");
}

/// A program's workload with a power cut after ack `at` and `after` as the after-crash script.
fn with_power_cut(script: &str, at: &str, after: &str) -> String {
    program(script, "")
        + &format!(
            "power_cut: {at}\nafter_crash:\n  - exec: {{ argv: [sh, -c, {after:?}], timeout: 5s }}\n"
        )
}

#[test]
fn a_programs_power_cut_is_at_a_given_ack_with_exec_steps_after_it() {
    let w = parse(&with_power_cut("true", "{ at_ack: 40 }", "true"));
    assert_eq!(
        w.power_cut_after_ack(),
        Some(40),
        "a program's ack count is unknown: any ack may be named"
    );
    let e = invalid(&with_power_cut("true", "{ random: true }", "true"));
    assert!(
        e.contains("power_cut.random") && e.contains("at_ack"),
        "{e}"
    );
    let e = invalid(&(program("true", "") + "power_cut: { at_ack: 2 }\n"));
    assert!(
        e.contains("after_crash") && e.contains("run the program again"),
        "{e}"
    );
    let engine_after = program("true", "")
        + "power_cut: { at_ack: 2 }\nafter_crash:\n  - append: { count: 1, size: 100 }\n";
    assert!(invalid(&engine_after).contains("after_crash[0].append"));
    let fault_after = with_power_cut("true", "{ at_ack: 2 }", "true")
        .replace("after_crash:\n", "after_crash:\n  - clear_fault: {}\n");
    let e = invalid(&fault_after);
    assert!(
        e.contains("after_crash[0].clear_fault") && e.contains("no faults after a power cut"),
        "{e}"
    );
    let engine_then_exec = "name: p\nsteps:\n  - append: { count: 4, size: 100 }\n\
                            power_cut: { at_ack: 2 }\nafter_crash:\n  - exec: { argv: [true] }\n";
    let e = invalid(engine_then_exec);
    assert!(
        e.contains("after_crash[0].exec") && e.contains("run a program again"),
        "{e}"
    );
    let root_after = with_power_cut("true", "{ at_ack: 2 }", "true")
        .replace("timeout: 5s }\n", "timeout: 5s, user: root }\n");
    let e = invalid(&root_after);
    assert!(
        e.contains("after_crash[0].exec.user") && e.contains("--allow-root-exec"),
        "{e}"
    );
    let allowed = parse(&format!("{root_after}allow_root_exec: true\n"));
    assert_eq!(
        allowed.root_exec_step().as_deref(),
        Some("after_crash[0].exec.user")
    );
    assert_eq!(parse(&program("true", "")).root_exec_step(), None);
}

#[derive(Default)]
struct PriorSink {
    acks: Sink,
    findings: Mutex<Vec<executor::RunFinding>>,
}

impl AckSink for PriorSink {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        self.acks.ack(ack)
    }

    fn prior_violation(&self, violation: &executor::RunFinding) {
        self.findings.lock().unwrap().push(violation.clone());
    }
}

/// The first run, then the run after a (simulated) crash on the same directory.
fn run_twice(w: &Workload) -> (executor::ContinuationSummary, Vec<Ack>, PriorSink) {
    let _one = one_program_at_a_time();
    let dir = scratch("program");
    let root = dir.path().join("pc");
    let first = Sink::default();
    executor::execute(w, &root, &first).unwrap_or_else(|e| panic!("{e}"));
    let prior = first.0.into_inner().unwrap();
    let sink = PriorSink::default();
    let outcome =
        executor::continue_after_crash(w, &root, &prior, &sink).unwrap_or_else(|e| panic!("{e}"));
    (outcome, prior, sink)
}

#[test]
fn after_a_crash_the_program_runs_again_on_what_the_first_run_left() {
    let w = parse(&with_power_cut(
        "echo v1 > k1 && echo 'ack k1 v1' >&$POWERCUT_ACK_FD",
        "{ at_ack: 1 }",
        "test \"$(cat k1)\" = v1 || exit 7; echo 'ack k2 v2' >&$POWERCUT_ACK_FD",
    ));
    let (outcome, prior, sink) = run_twice(&w);
    assert_eq!(prior.len(), 3, "start, k1, end: {prior:?}");
    assert!(outcome.prior_violations.is_empty(), "{outcome:?}");
    let execution = outcome.execution.expect("the after-crash steps ran");
    assert_eq!(execution.acks, 3, "start, k2, end");
    let acks = sink.acks.0.into_inner().unwrap();
    assert_eq!(
        acks[1],
        Ack::Key {
            key: "k2".into(),
            digest: "v2".into()
        }
    );
}

#[test]
fn a_program_that_fails_after_the_crash_is_a_restart_finding_not_an_error() {
    let w = parse(&with_power_cut(
        "echo v1 > k1 && echo 'ack k1 v1' >&$POWERCUT_ACK_FD",
        "{ at_ack: 1 }",
        "echo 'database disk image is malformed' >&2; exit 11",
    ));
    let (outcome, _, sink) = run_twice(&w);
    assert!(outcome.execution.is_none());
    let findings = sink.findings.into_inner().unwrap();
    assert_eq!(findings, outcome.prior_violations);
    let [finding] = &findings[..] else {
        panic!("one finding: {findings:?}")
    };
    assert_eq!(finding.invariant, executor::PROGRAM_RESTART);
    assert!(finding.expected.contains("after_crash[0]"), "{finding:?}");
    assert!(
        finding.found.contains("exited with status 11") && finding.found.contains("malformed"),
        "{finding:?}"
    );
    // A program that cannot even start after the crash is the harness's error, not a finding.
    let w = parse(&with_power_cut("true", "{ at_ack: 1 }", "true").replace(
        "after_crash:\n  - exec: { argv: [sh,",
        "after_crash:\n  - exec: { argv: [/no/such,",
    ));
    let _one = one_program_at_a_time();
    let dir = scratch("program");
    let e = executor::continue_after_crash(&w, &dir.path().join("pc"), &[], &PriorSink::default())
        .unwrap_err();
    assert!(e.to_string().contains("/no/such"), "{e}");
}
