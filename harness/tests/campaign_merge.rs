//! `powercut merge` of campaign reports, without a VM: the two shards of a sim campaign join into
//! the whole; findings are kept once per signature with every shard that saw them; a missing
//! shard makes the merge incomplete, a repeated one is refused; malformed inputs and a mix of
//! check and campaign reports are refused with the file named.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{output_text, POWERCUT};
use serde_json::{json, Value};

fn merge(args: &[&Path]) -> Output {
    Command::new(POWERCUT)
        .arg("merge")
        .args(args)
        .output()
        .unwrap()
}

/// Both shards of seed 5 in the sim tier, side by side: their JSON reports.
fn two_shards(dir: &Path) -> [PathBuf; 2] {
    let children: Vec<_> = ["0/2", "1/2"]
        .iter()
        .enumerate()
        .map(|(k, shard)| {
            Command::new(POWERCUT)
                .args(["campaign", "--tier", "sim", "--budget", "3s", "--seed", "5"])
                .args(["--shard", shard, "--json"])
                .arg(dir.join(format!("s{k}.json")))
                .arg("--out")
                .arg(dir.join(format!("out{k}")))
                .output()
                .unwrap()
        })
        .collect();
    for output in &children {
        assert_eq!(output.status.code(), Some(0), "{}", output_text(output));
    }
    [dir.join("s0.json"), dir.join("s1.json")]
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write(path: &Path, value: &Value) -> PathBuf {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path.to_path_buf()
}

fn finding(signature: &str, hits: u64, seconds: f64, workload: &str) -> Value {
    json!({
        "signature": signature,
        "shape": "I1 | dsync | at append | missing / N",
        "invariant": "I1",
        "invariants": ["I1", "I2"],
        "workload": workload,
        "index": 3,
        "seed": 99,
        "expected": "records",
        "found": "missing",
        "repro": format!("powercut sim {workload}.yaml --seed 99"),
        "hits": hits,
        "seconds": seconds,
        "also_in": [],
    })
}

// Longer than most: the refusals reuse the two shard reports, which take 3 s to make.
#[test]
fn shards_of_a_sim_campaign_merge_into_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [s0, s1] = two_shards(d);
    let (r0, r1) = (read(&s0), read(&s1));
    assert_eq!(r0["shard"], "0/2");
    let merged_path = d.join("merged.json");
    let junit = d.join("merged.xml");
    let output = merge(&[
        &s0,
        &s1,
        Path::new("-o"),
        &merged_path,
        Path::new("--junit"),
        &junit,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    let merged = read(&merged_path);
    let sum = |key: &str| r0[key].as_u64().unwrap() + r1[key].as_u64().unwrap();
    assert_eq!(merged["workloads"].as_u64(), Some(sum("workloads")));
    assert_eq!(
        merged["states_checked"].as_u64(),
        Some(sum("states_checked"))
    );
    let seconds = r0["seconds"].as_f64().unwrap() + r1["seconds"].as_f64().unwrap();
    assert!((merged["seconds"].as_f64().unwrap() - seconds).abs() < 1e-6);
    assert_eq!(merged["seeds"], json!([5]));
    assert_eq!(merged["missing_shards"], json!([]));
    assert_eq!(merged["findings"], json!([]));
    assert_eq!(merged["merged_reports"][1]["shard"], "1/2");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("seed 5 shard 0/2") && xml.contains("seed 5 shard 1/2"),
        "{xml}"
    );

    // One shard alone: merged, with a warning, and incomplete (exit 4).
    let output = merge(&[&s1]);
    assert_eq!(output.status.code(), Some(4), "{}", output_text(&output));
    assert!(
        output_text(&output).contains("shard 0/2 missing"),
        "{}",
        output_text(&output)
    );
    // The same shard twice: refused, both files named.
    let copy = write(&d.join("copy.json"), &r0);
    let output = merge(&[&s0, &s1, &copy]);
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("shard 0/2 of campaign seed 5")
            && err.contains("given more than once")
            && err.contains(&*s0.to_string_lossy())
            && err.contains(&*copy.to_string_lossy()),
        "{err}"
    );
    // The whole campaign beside one of its shards: refused.
    let mut whole = r0.clone();
    whole["shard"] = Value::Null;
    let whole = write(&d.join("whole.json"), &whole);
    let output = merge(&[&whole, &s1]);
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
    assert!(
        output_text(&output).contains("is the whole campaign"),
        "{}",
        output_text(&output)
    );
    // A merged report is not an input.
    let output = merge(&[&merged_path]);
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
    assert!(output_text(&output).contains("already a merged campaign report"));
}

#[test]
fn findings_are_kept_once_per_signature_with_every_shard_that_saw_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let [s0, s1] = two_shards(d);
    let mut r0 = read(&s0);
    let mut r1 = read(&s1);
    r0["findings"] = json!([
        finding("aaaaaaaaaaaa", 3, 2.5, "late"),
        finding("bbbbbbbbbbbb", 1, 0.1, "b")
    ]);
    r1["findings"] = json!([finding("aaaaaaaaaaaa", 4, 0.5, "early")]);
    let a = write(&d.join("a.json"), &r0);
    let b = write(&d.join("b.json"), &r1);
    // Another campaign (seed 6, unsharded) that met the same signature later still.
    let mut other = read(&s0);
    other["seed"] = json!(6);
    other["shard"] = Value::Null;
    other["findings"] = json!([finding("aaaaaaaaaaaa", 2, 9.0, "other")]);
    let c = write(&d.join("c.json"), &other);
    let merged_path = d.join("merged.json");
    let output = merge(&[&a, &b, &c, Path::new("-o"), &merged_path]);
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    let merged = read(&merged_path);
    assert_eq!(merged["seeds"], json!([5, 6]));
    let findings = merged["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    // In order of first sighting; the earliest sighting of a signature is kept.
    assert_eq!(findings[0]["signature"], "bbbbbbbbbbbb");
    let a_sig = &findings[1];
    assert_eq!(a_sig["workload"], "early");
    assert_eq!(a_sig["hits"], 9);
    assert_eq!(a_sig["first_seen"]["shard"], "1/2");
    assert_eq!(a_sig["first_seen"]["seed"], 5);
    let seen: Vec<(u64, &str)> = a_sig["seen_in"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["seed"].as_u64().unwrap(), s["shard"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(5, "0/2"), (5, "1/2"), (6, "whole")]);
    assert_eq!(a_sig["also_in"], json!([]), "other fields are kept");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("aaaaaaaaaaaa (I1): 9 hits in 3 reports"),
        "{stdout}"
    );
}

// Longer than most: a table of malformed inputs, each checked the same way.
#[test]
fn malformed_and_mixed_inputs_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let campaign = json!({
        "seed": 5, "tier": "sim", "filesystem": "ext4", "mutant": null, "shard": "0/1",
        "depth": 3, "seconds": 1.0, "stopped_by": "budget", "workloads": 2,
        "states_checked": 10, "failing_workloads": 0, "incomplete_runs": 0, "errors": 0,
        "findings": [], "workloads_run": [],
    });
    let good = write(&d.join("good.json"), &campaign);
    let output = merge(&[&good]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated.json",
            "{\"seed\": 5,".into(),
            "is not valid JSON",
        ),
        (
            "array.json",
            "[1, 2]".into(),
            "expected a report (a JSON object), found an array",
        ),
        (
            "other.json",
            "{\"hello\": 1}".into(),
            "neither a check report",
        ),
        (
            "no-states.json",
            without(&campaign, "states_checked"),
            "missing field `states_checked`",
        ),
        (
            "bad-shard.json",
            with(&campaign, "shard", json!("2/2")),
            "field `shard`",
        ),
        (
            "bad-seconds.json",
            with(&campaign, "seconds", json!(-1.0)),
            "field `seconds`",
        ),
        (
            "bad-findings.json",
            with(&campaign, "findings", json!([{"hits": 1}])),
            "not a valid campaign report",
        ),
    ];
    for (name, content, expected) in cases {
        let path = d.join(name);
        std::fs::write(&path, content).unwrap();
        let output = merge(&[&good, &path]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{name}: {}",
            output_text(&output)
        );
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains(&*path.to_string_lossy()), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
    }

    // A check report (`run --json`) among campaign reports.
    let check = json!({
        "seed": 7, "workload": "smoke", "fs": "ext4", "log_hash": "0badcafe",
        "enumeration_seed": 7, "shard": null, "states_total": 1, "states_checked": 1,
        "duplicates_skipped": 0, "states_from_coverage": 0, "states_by_kind": {},
        "states_per_second": 1.0, "elapsed_seconds": 1.0, "mid_log_probes": 0,
        "violations": [], "coverage": null, "budget_exhausted": false,
    });
    let check = write(&d.join("check.json"), &check);
    let output = merge(&[&good, &check]);
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(&format!("{} is a check report but", check.display()))
            && err.contains(&format!("{} is a campaign report", good.display())),
        "{err}"
    );
}

fn with(value: &Value, key: &str, field: Value) -> String {
    let mut v = value.clone();
    v[key] = field;
    v.to_string()
}

fn without(value: &Value, key: &str) -> String {
    let mut v = value.clone();
    v.as_object_mut().unwrap().remove(key);
    v.to_string()
}
