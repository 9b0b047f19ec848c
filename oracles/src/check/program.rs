//! The checker path of programs under test: with a crash state mounted, the workload's checker
//! (built-in `kv`, or a command of the user's) decides instead of the engine's recovery.
//!
//! Checkers run on the host, as the user running powercut, in the state's data directory (also
//! in `POWERCUT_STATE_DIR`), on a scratch copy of the state: what they write is thrown away.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use powercut_workloads::ack::Ack;
use powercut_workloads::program::kv;
use powercut_workloads::spec::CheckerSpec;

use crate::invariants::{Expectation, Violation};

/// Invariant name of a `kv` finding: a key acknowledged before the cut lacks its value.
pub const KV_INVARIANT: &str = "KV";
/// Invariant name of a custom checker's finding (exit status 1).
pub const CHECKER_INVARIANT: &str = "CHECKER";
/// The invariants of a program's run, for JUnit.
pub const PROGRAM_INVARIANTS: [&str; 3] = [KV_INVARIANT, CHECKER_INVARIANT, "MOUNT"];

/// How long one checker may run on one state.
pub const CHECKER_TIMEOUT: Duration = Duration::from_secs(60);
/// The most output of a checker kept (a dump of every key included).
const MAX_CHECKER_OUTPUT: u64 = 64 * 1024 * 1024;
/// Most of a failing checker's message put in a report.
const MAX_MESSAGE_CHARS: usize = 2000;

/// A program's checker and where its data lies in a mounted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCheck {
    /// The workload's checker.
    pub checker: CheckerSpec,
    /// The program's data directory, relative to the mount root.
    pub data_dir: PathBuf,
}

/// A checker that could not give a verdict: a harness error, never a finding.
#[derive(Debug, thiserror::Error)]
#[error("checker {argv0:?} on state {state_id}: {message}")]
pub struct CheckerError {
    /// The checker's program.
    pub argv0: String,
    /// The state it ran on.
    pub state_id: String,
    /// What went wrong.
    pub message: String,
}

/// What a finished checker printed and how it ended.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl ProgramCheck {
    /// Runs the checker on the state mounted at `root`; its findings as violations.
    pub(super) fn check(
        &self,
        exp: &Expectation<'_>,
        root: &Path,
    ) -> Result<Vec<Violation>, CheckerError> {
        let dir = root.join(&self.data_dir);
        let argv = self.checker.argv();
        let fail = |message: String| CheckerError {
            argv0: argv[0].clone(),
            state_id: exp.state_id.to_string(),
            message,
        };
        if !dir.is_dir() {
            // The data directory was made and fsynced before the first ack: before it, the
            // state holds nothing to check.
            return Ok(missing_dir(exp, &dir));
        }
        let input = match &self.checker {
            CheckerSpec::Kv { .. } => String::new(),
            CheckerSpec::Command { .. } => kv::checker_input(exp.acks, exp.in_flight),
        };
        let done = run_checker(argv, &dir, &input).map_err(fail)?;
        let violation =
            |invariant: &str, step: Option<String>, expected: String, found| Violation {
                invariant: invariant.to_string(),
                state_id: exp.state_id.to_string(),
                seed: exp.seed,
                step,
                expected,
                found,
            };
        match (&self.checker, done.code) {
            (CheckerSpec::Kv { .. }, Some(0)) => {
                let found = kv::parse_dump(&done.stdout).map_err(fail)?;
                Ok(kv::judge_kv(exp.acks, exp.in_flight, &found)
                    .into_iter()
                    .map(|f| violation(KV_INVARIANT, Some(f.ack), f.expected, f.found))
                    .collect())
            }
            // The dump could not read the state (a corrupt database): the acked keys are lost.
            (CheckerSpec::Kv { .. }, _) if !kv::expected_keys(exp.acks).is_empty() => {
                Ok(vec![violation(
                    KV_INVARIANT,
                    None,
                    "the dump lists the acknowledged keys".into(),
                    format!(
                        "the dump failed ({}): {}",
                        status(done.code),
                        cut(&done.stderr)
                    ),
                )])
            }
            (CheckerSpec::Kv { .. }, _) => Ok(Vec::new()),
            (CheckerSpec::Command { .. }, Some(0)) => Ok(Vec::new()),
            (CheckerSpec::Command { .. }, Some(1)) => Ok(vec![violation(
                CHECKER_INVARIANT,
                exp.acks
                    .iter()
                    .rev()
                    .find(|a| is_program_ack(a))
                    .map(Ack::to_label),
                "the checker holds (exit 0)".into(),
                cut(&format!("{}{}", done.stdout, done.stderr)),
            )]),
            (CheckerSpec::Command { .. }, code) => Err(fail(format!(
                "{} (0 is held, 1 violated, anything else an error of the checker): {}",
                status(code),
                cut(&done.stderr)
            ))),
        }
    }
}

fn is_program_ack(ack: &Ack) -> bool {
    matches!(ack, Ack::Key { .. } | Ack::Nack { .. })
}

/// The state has no data directory: a violation when anything was acked.
fn missing_dir(exp: &Expectation<'_>, dir: &Path) -> Vec<Violation> {
    match exp.acks.iter().find(|a| is_program_ack(a)) {
        None => Vec::new(),
        Some(first) => vec![Violation {
            invariant: KV_INVARIANT.into(),
            state_id: exp.state_id.to_string(),
            seed: exp.seed,
            step: Some(first.to_label()),
            expected: "the program's data directory exists (acks were made in it)".into(),
            found: format!("{} is missing", dir.display()),
        }],
    }
}

fn status(code: Option<i32>) -> String {
    code.map_or_else(
        || "killed by a signal".into(),
        |c| format!("exit status {c}"),
    )
}

fn cut(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_string();
    }
    let mut short: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    short.push_str("...");
    short
}

/// Runs `argv` in `dir` with `input` on stdin, within [`CHECKER_TIMEOUT`].
fn run_checker(argv: &[String], dir: &Path, input: &str) -> Result<Finished, String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .env("POWERCUT_STATE_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "cannot start it: {} is not installed on the host (checkers run on the host, \
                 beside powercut, not in the guest: install it there)",
                argv[0]
            ),
            _ => format!("cannot start it: {e}"),
        })?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    std::thread::scope(|scope| {
        let input = input.as_bytes();
        scope.spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                // A checker that does not read its input closes the pipe early: not an error.
                let _ = stdin.write_all(input);
            }
            drop(stdin);
        });
        let out = scope.spawn(move || read_bounded(stdout.as_mut()));
        let err = scope.spawn(move || read_bounded(stderr.as_mut()));
        let deadline = Instant::now() + CHECKER_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "still ran after {}s: killed",
                        CHECKER_TIMEOUT.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => break Err(format!("wait: {e}")),
            }
        };
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        status.map(|s| Finished {
            code: s.code(),
            stdout: out,
            stderr: err,
        })
    })
}

fn read_bounded(pipe: Option<&mut impl Read>) -> String {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(MAX_CHECKER_OUTPUT).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str, d: &str) -> Ack {
        Ack::Key {
            key: k.into(),
            digest: d.into(),
        }
    }

    fn exp<'a>(acks: &'a [Ack], in_flight: Option<&'a Ack>) -> Expectation<'a> {
        Expectation {
            state_id: "s1",
            seed: 1,
            acks,
            in_flight,
        }
    }

    /// A mounted-state stand-in: `root/pc/data` holding `keys.txt`.
    fn state(keys: &str) -> (tempfile::TempDir, ProgramCheck) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("pc/data")).unwrap();
        std::fs::write(root.path().join("pc/data/keys.txt"), keys).unwrap();
        let check = ProgramCheck {
            checker: CheckerSpec::Kv {
                dump: vec!["cat".into(), "keys.txt".into()],
            },
            data_dir: "pc/data".into(),
        };
        (root, check)
    }

    fn command(script: &str) -> CheckerSpec {
        CheckerSpec::Command {
            argv: vec!["sh".into(), "-c".into(), script.into()],
        }
    }

    #[test]
    fn kv_finds_a_missing_acknowledged_key() {
        let (root, check) = state("k1 a\n");
        let acks = [key("k1", "a"), key("k2", "b")];
        let v = check.check(&exp(&acks, None), root.path()).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].invariant, KV_INVARIANT);
        assert_eq!(v[0].step.as_deref(), Some("k:k2:b"));
        assert!(v[0].found.contains("k2 is missing"));
        assert!(check
            .check(&exp(&acks[..1], None), root.path())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_failing_dump_loses_the_acknowledged_keys() {
        let (root, mut check) = state("");
        check.checker = CheckerSpec::Kv {
            dump: vec![
                "sh".into(),
                "-c".into(),
                "echo malformed >&2; exit 1".into(),
            ],
        };
        let acks = [key("k1", "a")];
        let v = check.check(&exp(&acks, None), root.path()).unwrap();
        assert!(v[0].found.contains("malformed"), "{v:?}");
        assert!(check
            .check(&exp(&[], None), root.path())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn custom_checkers_read_the_acks_and_decide_by_exit_status() {
        let (root, mut check) = state("");
        let acks = [key("k1", "a"), Ack::Nack { key: "k2".into() }];
        let in_flight = key("k3", "c");
        check.checker = command(
            "test \"$(cat)\" = \"$(printf 'ack k1 a\\nnack k2\\ninflight ack k3 c')\" && \
             test \"$PWD\" = \"$POWERCUT_STATE_DIR\"",
        );
        let e = exp(&acks, Some(&in_flight));
        assert!(check.check(&e, root.path()).unwrap().is_empty());
        check.checker = command("cat > /dev/null; echo row 7 lost; exit 1");
        let v = check.check(&e, root.path()).unwrap();
        assert_eq!(v[0].invariant, CHECKER_INVARIANT);
        assert_eq!(v[0].found, "row 7 lost");
        check.checker = command("echo boom >&2; exit 2");
        let err = check.check(&e, root.path()).unwrap_err().to_string();
        assert!(err.contains("exit status 2") && err.contains("boom") && err.contains("s1"));
        check.checker = command("kill -9 $$");
        assert!(check.check(&e, root.path()).is_err());
    }

    #[test]
    fn a_state_without_the_data_directory_breaks_every_ack() {
        let root = tempfile::tempdir().unwrap();
        let check = ProgramCheck {
            checker: command("exit 0"),
            data_dir: "pc/data".into(),
        };
        let acks = [key("k1", "a")];
        assert_eq!(
            check.check(&exp(&acks, None), root.path()).unwrap().len(),
            1
        );
        assert!(check
            .check(&exp(&[], None), root.path())
            .unwrap()
            .is_empty());
    }
}
