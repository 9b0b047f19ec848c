//! `powercut campaign` in the sim tier, end to end: the real engine runs clean and covers
//! workloads and crash states; shards of a seed together run exactly the unsharded sequence;
//! the corpus keeps new behaviour once; and (with the `mutants` feature) a broken engine is
//! found, each finding kept once with a workload file and a command that replays it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const POWERCUT: &str = env!("CARGO_BIN_EXE_powercut");

fn campaign(args: &[&str], out: &Path, json: &Path) -> (Output, serde_json::Value) {
    let output = Command::new(POWERCUT)
        .arg("campaign")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("campaign seed "),
        "the seed comes first:\n{stdout}"
    );
    let report = match std::fs::read(json) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(e) => panic!(
            "no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    };
    (output, report)
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn names(report: &serde_json::Value) -> Vec<String> {
    report["workloads_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_real_engine_runs_clean_and_the_report_says_what_was_covered() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let junit = dir.path().join("c.xml");
    let (output, report) = campaign(
        &[
            "--tier",
            "sim",
            "--budget",
            "3s",
            "--seed",
            "1",
            "--junit",
            junit.to_str().unwrap(),
        ],
        &dir.path().join("out"),
        &json,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(report["seed"], 1);
    assert_eq!(report["tier"], "sim");
    assert_eq!(report["stopped_by"], "budget");
    let workloads = report["workloads"].as_u64().unwrap();
    assert!(workloads > 0, "{report}");
    assert!(report["states_checked"].as_u64().unwrap() > 0, "{report}");
    assert!(report["seconds"].as_f64().unwrap() >= 3.0, "{report}");
    assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{report}");
    for kind in [
        "append",
        "group_commit",
        "ingest",
        "rotate",
        "retire",
        "reopen",
    ] {
        assert!(report["ops_by_kind"][kind].as_u64().unwrap() > 0, "{kind}");
    }
    // The sim tier does not run file steps, and says so.
    assert!(report["ops_skipped_by_kind"]["create"].as_u64().unwrap() > 0);
    assert!(report["ops_by_kind"].get("create").is_none());
    assert_eq!(names(&report).len() as u64, workloads);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count() as u64, workloads);
    assert!(xml.contains("failures=\"0\""), "{xml}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("campaign: "), "progress lines:\n{stderr}");
}

#[test]
fn shards_of_a_seed_together_run_exactly_the_unsharded_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, shard: Option<&str>| {
        let mut args = vec!["--budget", "120s", "--seed", "9", "--max-workloads", "45"];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let (output, report) = campaign(
            &args,
            &dir.path().join(name),
            &dir.path().join(format!("{name}.json")),
        );
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert_eq!(report["stopped_by"], "max-workloads");
        names(&report)
    };
    let whole = run("whole", None);
    let zero = run("zero", Some("0/2"));
    let one = run("one", Some("1/2"));
    assert_eq!(whole.len(), 45);
    assert_eq!(zero.len(), 23);
    assert_eq!(one.len(), 22);
    let zero: BTreeSet<String> = zero.into_iter().collect();
    let one: BTreeSet<String> = one.into_iter().collect();
    assert!(zero.is_disjoint(&one));
    let joined: BTreeSet<String> = zero.union(&one).cloned().collect();
    let whole: BTreeSet<String> = whole.into_iter().collect();
    assert_eq!(joined, whole);
}

#[test]
fn the_corpus_keeps_each_new_combination_of_step_kinds_once() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    let run = |name: &str| {
        let (output, report) = campaign(
            &[
                "--budget",
                "120s",
                "--seed",
                "4",
                "--max-workloads",
                "40",
                "--corpus",
                corpus.to_str().unwrap(),
            ],
            &dir.path().join(name),
            &dir.path().join(format!("{name}.json")),
        );
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        report["corpus_saved"].as_u64().unwrap()
    };
    let saved = run("first");
    assert!(saved > 3, "{saved} saved");
    let files: Vec<_> = std::fs::read_dir(&corpus).unwrap().collect();
    assert_eq!(files.len() as u64, saved);
    for file in files {
        let path = file.unwrap().path();
        powercut_workloads::spec::load(&path).unwrap();
    }
    // The same workloads again: nothing new.
    assert_eq!(run("second"), 0);
}

#[test]
fn bad_arguments_are_harness_errors() {
    for args in [
        vec!["campaign", "--budget", "1s", "--depth", "4"],
        vec!["campaign", "--budget", "1s", "--tier", "qemu"],
        vec!["campaign", "--budget", "1s", "--shard", "2/2"],
        vec!["campaign", "--seed", "1"],
    ] {
        let output = Command::new(POWERCUT).args(&args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&output)
        );
    }
}

#[cfg(not(feature = "mutants"))]
#[test]
fn a_mutant_needs_the_mutants_build() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(POWERCUT)
        .args([
            "campaign", "--budget", "2s", "--seed", "1", "--mutant", "M1",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--features"));
}

#[cfg(feature = "mutants")]
#[test]
fn m1_is_found_each_finding_is_kept_once_and_its_command_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let junit = dir.path().join("c.xml");
    let (output, report) = campaign(
        &[
            "--budget",
            "3s",
            "--seed",
            "1",
            "--mutant",
            "M1",
            "--junit",
            junit.to_str().unwrap(),
        ],
        &out,
        &dir.path().join("c.json"),
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let findings = report["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "{report}");
    assert!(report["first_finding_seconds"].as_f64().is_some());
    // Deduplicated: many failing workloads, few signatures, one of them met several times.
    let failing = report["failing_workloads"].as_u64().unwrap();
    assert!(failing > findings.len() as u64, "{report}");
    // One cause, M1, reached by about a thousand workloads: a handful of signatures (by
    // durability mode, step kind and symptom), not one per LSN or record count. How many of the
    // symptoms show depends on thread timing under M1 and on how far 3 s gets: 15 to 18 seen.
    assert!(findings.len() <= 24, "{} signatures", findings.len());
    assert!(findings.iter().any(|f| f["hits"].as_u64().unwrap() > 1));
    // The workload of the first finding loses acked records in a single append: steady.
    let steady = &findings[0]["replays"];
    assert_eq!(steady["showed_invariant"], steady["runs"], "{report}");
    // It was shrunk to a valid reproducer (its replay, like the finding's, depends on thread
    // timing under M1, so only its validity is asserted here).
    let minimal = &findings[0]["minimal"];
    let shrunk =
        std::path::PathBuf::from(minimal["workload"].as_str().expect("a shrunk reproducer"));
    assert!(minimal["steps"].as_u64().unwrap() >= 1, "{report}");
    let check = Command::new(POWERCUT)
        .args(["workload", "check"])
        .arg(&shrunk)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    let hits: u64 = findings.iter().map(|f| f["hits"].as_u64().unwrap()).sum();
    assert_eq!(hits, failing);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<failure").count() as u64, failing);
    for finding in findings {
        let signature = finding["signature"].as_str().unwrap();
        let kept = out.join("findings").join(signature);
        for file in ["workload.yaml", "finding.json", "repro.txt"] {
            assert!(kept.join(file).is_file(), "{}", kept.join(file).display());
        }
        let on_disk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(kept.join("finding.json")).unwrap()).unwrap();
        assert_eq!(on_disk["signature"], signature);
        assert_eq!(on_disk["tier"], "sim");
        assert_eq!(on_disk["hits"], finding["hits"]);
        let check = Command::new(POWERCUT)
            .args(["workload", "check"])
            .arg(kept.join("workload.yaml"))
            .output()
            .unwrap();
        assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
        replays(&kept, finding, dir.path());
    }
}

/// The first command of `repro.txt` finds a violation again, and the finding's invariant when
/// the campaign's own replays showed it every time (M1 acknowledges from a background thread:
/// which crash state, and so which invariant, shows a rare race depends on thread timing; the
/// campaign reports how steady each finding is).
#[cfg(feature = "mutants")]
fn replays(kept: &Path, finding: &serde_json::Value, scratch: &Path) {
    let repro = std::fs::read_to_string(kept.join("repro.txt")).unwrap();
    let command = repro
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    assert_eq!(command, finding["repro"].as_str().unwrap());
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(&words[..2], ["powercut", "sim"], "{command}");
    assert!(command.contains("--mutant M1"), "{command}");
    let json = scratch.join("replay.json");
    let output = Command::new(POWERCUT)
        .args(&words[1..])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{command}: {}",
        describe(&output)
    );
    let replay: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let invariants: Vec<&str> = replay["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["invariant"].as_str().unwrap())
        .collect();
    let replays = &finding["replays"];
    assert!(replays["runs"].as_u64().unwrap() > 0, "{finding}");
    if replays["showed_invariant"] == replays["runs"] {
        assert!(
            invariants.contains(&finding["invariant"].as_str().unwrap()),
            "{command}: {invariants:?} vs {finding}"
        );
    }
}
