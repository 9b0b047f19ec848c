//! What the CLI tests share: capability checks, the one image build per test binary, and how
//! they show and read what `powercut` wrote.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The `powercut` binary under test.
pub const POWERCUT: &str = env!("CARGO_BIN_EXE_powercut");

/// The workspace root.
#[allow(dead_code)] // not every test binary needs it
pub fn workspace() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn find_in_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(name).is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// `powercut run WORKLOAD EXTRA... --out OUT --json OUT.json` from the workspace root: its
/// output, and the path of its JSON report.
#[allow(dead_code)] // not every test binary needs it
pub fn run_workload(
    workload: &std::path::Path,
    extra: &[&str],
    out: &std::path::Path,
) -> (std::process::Output, PathBuf) {
    let json = out.with_extension("json");
    let output = Command::new(POWERCUT)
        .arg("run")
        .arg(workload)
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .arg(&json)
        .current_dir(workspace())
        .output()
        .unwrap();
    (output, json)
}

/// A temporary directory for a test that needs the guest image, or None where the image cannot
/// be built here: the test then returns (`runnable` prints SKIPPED, and fails it under CI=true).
#[allow(dead_code)] // not every test binary needs it
pub fn vm_test_dir() -> Option<tempfile::TempDir> {
    powercut_writer::capability::runnable(image_ready()).then(|| tempfile::tempdir().unwrap())
}

/// Builds the guest image once per test binary. `Err(reason)`: the test prints
/// "SKIPPED: reason" and returns. A build that fails for another reason fails the test: CI has
/// every capability, so a broken agent must not pass as a skip.
#[allow(dead_code)] // not every test binary needs it
pub fn image_ready() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            if !is_root() {
                return Err("not root (QEMU provisioning and loop mounts need it)".into());
            }
            let output = Command::new(POWERCUT)
                .args(["image", "build"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            match output.status.code() {
                Some(0) if find_in_path("qemu-system-x86_64") => Ok(()),
                Some(0) => panic!("image build succeeded but qemu-system-x86_64 is not on PATH"),
                Some(3) => Err(format!("image build skipped: {stderr}")),
                _ => panic!("powercut image build failed:\n{stderr}"),
            }
        })
        .clone()
}

/// Asserts that `powercut` exited 0, showing `what` and its output otherwise.
#[allow(dead_code)] // not every test binary needs it
pub fn assert_succeeded(output: &std::process::Output, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The JSON file at `path`.
#[allow(dead_code)] // not every test binary needs it
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The ack labels of a recording's `ledger.jsonl`, in order.
#[allow(dead_code)] // not every test binary needs it
pub fn ledger_labels(out: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(out.join("ledger.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            entry["label"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Asserts that a run's report found nothing: no violation, more than 10 states checked, every
/// ack covered.
#[allow(dead_code)] // not every test binary needs it
pub fn assert_clean_report(report: &serde_json::Value) {
    assert_eq!(
        report["violations"].as_array().unwrap().len(),
        0,
        "{report}"
    );
    assert!(report["states_checked"].as_u64().unwrap() > 10, "{report}");
    assert_eq!(report["coverage"]["acks_uncovered"], 0, "{report}");
}

/// The exit code, stdout and stderr of a `powercut` run, for assertion messages.
#[allow(dead_code)] // not every test binary needs it
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
