//! The nightly workflow and the Kubernetes Job that run sharded campaigns: each states the shard
//! count in more than one place, and a mismatch would silently leave workloads unsearched (or
//! search some twice). These tests parse both files and check that the places agree, and show on
//! altered copies that each check can fail.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn load_all(relative: &str) -> Vec<Value> {
    let path = workspace().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
        })
        .collect()
}

fn job_manifest() -> Value {
    load_all("deploy/k8s/campaign-job.yaml")
        .into_iter()
        .find(|doc| doc["kind"] == "Job")
        .expect("a document of kind Job")
}

fn workflow() -> Value {
    let mut docs = load_all(".github/workflows/nightly-campaign.yml");
    assert_eq!(docs.len(), 1, "one workflow document");
    docs.remove(0)
}

/// The value after `--shard` in a shell command: quoted (spaces allowed) or one word, split
/// into what stands before the last `/` and the shard count after it.
fn shard_flag(command: &str) -> Result<(String, u64), String> {
    let at = command
        .find("--shard ")
        .ok_or_else(|| format!("no --shard in {command:?}"))?;
    let rest = command[at + "--shard ".len()..].trim_start();
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or_default(),
        None => rest.split_whitespace().next().unwrap_or_default(),
    };
    let (k, n) = value
        .rsplit_once('/')
        .ok_or_else(|| format!("--shard {value:?} is not K/N"))?;
    let n = n
        .parse()
        .map_err(|_| format!("--shard {value:?}: N is not a number"))?;
    Ok((k.to_string(), n))
}

/// The Job runs one shard per completion index, as many as it completes and runs at once,
/// privileged, with its results on a mounted volume.
fn check_job(job: &Value) -> Result<(), String> {
    let spec = &job["spec"];
    if job["apiVersion"] != "batch/v1" || job["kind"] != "Job" {
        return Err("not a batch/v1 Job".into());
    }
    if spec["completionMode"] != "Indexed" {
        return Err(format!(
            "completionMode is {:?}, not Indexed",
            spec["completionMode"]
        ));
    }
    let completions = spec["completions"].as_u64().ok_or("no completions")?;
    let parallelism = spec["parallelism"].as_u64().ok_or("no parallelism")?;
    if completions != parallelism {
        return Err(format!(
            "completions {completions} != parallelism {parallelism}"
        ));
    }
    let containers = spec["template"]["spec"]["containers"]
        .as_sequence()
        .ok_or("no containers")?;
    let campaign = containers
        .iter()
        .find(|c| command_of(c).contains("powercut campaign"))
        .ok_or("no container runs `powercut campaign`")?;
    if campaign["securityContext"]["privileged"] != true {
        return Err("the campaign container is not privileged".into());
    }
    let command = command_of(campaign);
    let (index, n) = shard_flag(&command)?;
    if !matches!(
        index.as_str(),
        "${JOB_COMPLETION_INDEX}" | "$JOB_COMPLETION_INDEX"
    ) {
        return Err(format!(
            "--shard takes K from {index:?}, not the completion index"
        ));
    }
    if n != completions {
        return Err(format!("--shard .../{n} but {completions} completions"));
    }
    let mounts: Vec<&str> = campaign["volumeMounts"]
        .as_sequence()
        .ok_or("no volume mounts")?
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    if !mounts.iter().any(|m| command.contains(&format!("{m}/"))) {
        return Err(format!("the results go to no mounted volume ({mounts:?})"));
    }
    for var in ["SEED", "BUDGET"] {
        let defined = campaign["env"]
            .as_sequence()
            .is_some_and(|env| env.iter().any(|e| e["name"] == var));
        if !defined || !command.contains(&format!("\"${var}\"")) {
            return Err(format!(
                "{var} is not defined in env and passed to the campaign"
            ));
        }
    }
    Ok(())
}

/// A container's command and args as one text.
fn command_of(container: &Value) -> String {
    ["command", "args"]
        .iter()
        .filter_map(|key| container[*key].as_sequence())
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Nightly and on demand; the matrix holds shards 0..N of the N given to `--shard`; a merge job
/// waits for the shard job and runs `powercut merge`.
fn check_workflow(workflow: &Value) -> Result<(), String> {
    let on = &workflow["on"];
    if on["schedule"].as_sequence().is_none_or(|s| s.is_empty()) {
        return Err("no schedule".into());
    }
    if on.get("workflow_dispatch").is_none() {
        return Err("no workflow_dispatch".into());
    }
    let jobs = workflow["jobs"].as_mapping().ok_or("no jobs")?;
    let (shard_job, job) = jobs
        .iter()
        .find(|(_, job)| job_runs(job, "powercut campaign").is_some())
        .ok_or("no job runs `powercut campaign`")?;
    let shard_job = shard_job.as_str().ok_or("job ids are strings")?;
    let command = job_runs(job, "powercut campaign").unwrap_or_default();
    let (index, n) = shard_flag(&command)?;
    if index.replace(' ', "") != "${{matrix.shard}}" {
        return Err(format!("--shard takes K from {index:?}, not matrix.shard"));
    }
    let shards: Vec<u64> = job["strategy"]["matrix"]["shard"]
        .as_sequence()
        .ok_or("no matrix of shards")?
        .iter()
        .map(|v| v.as_u64().ok_or("a shard is not a number"))
        .collect::<Result<_, _>>()?;
    if shards != (0..n).collect::<Vec<u64>>() {
        return Err(format!(
            "matrix shards {shards:?} are not 0..{n} of --shard K/{n}"
        ));
    }
    let merge = jobs
        .values()
        .find(|job| job_runs(job, "powercut merge").is_some())
        .ok_or("no job runs `powercut merge`")?;
    let needs: Vec<&str> = match &merge["needs"] {
        Value::String(one) => vec![one.as_str()],
        Value::Sequence(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !needs.contains(&shard_job) {
        return Err(format!(
            "the merge job does not need {shard_job:?} ({needs:?})"
        ));
    }
    Ok(())
}

/// The `run` text of the first step of `job` that contains `what`.
fn job_runs(job: &Value, what: &str) -> Option<String> {
    job["steps"]
        .as_sequence()?
        .iter()
        .filter_map(|step| step["run"].as_str())
        .find(|run| run.contains(what))
        .map(|run| run.replace("\\\n", " "))
}

#[test]
fn the_kubernetes_job_runs_one_shard_per_completion_index() {
    check_job(&job_manifest()).unwrap();
}

#[test]
fn the_nightly_workflow_runs_every_shard_then_merges() {
    check_workflow(&workflow()).unwrap();
}

#[test]
fn the_job_checks_fail_on_altered_copies() {
    let altered = |change: &dyn Fn(&mut Value)| {
        let mut job = job_manifest();
        change(&mut job);
        check_job(&job).expect_err("the altered Job passed")
    };
    let err = altered(&|j| j["spec"]["parallelism"] = 3.into());
    assert!(err.contains("completions 4 != parallelism 3"), "{err}");
    let err = altered(&|j| {
        j["spec"]["completions"] = 5.into();
        j["spec"]["parallelism"] = 5.into();
    });
    assert!(err.contains("--shard .../4 but 5 completions"), "{err}");
    let err = altered(&|j| j["spec"]["completionMode"] = "NonIndexed".into());
    assert!(err.contains("not Indexed"), "{err}");
    let err = altered(&|j| {
        j["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] =
            false.into();
    });
    assert!(err.contains("not privileged"), "{err}");
    let err = altered(&|j| {
        let command = &mut j["spec"]["template"]["spec"]["containers"][0]["command"][2];
        let text = command
            .as_str()
            .unwrap()
            .replace("${JOB_COMPLETION_INDEX}/4", "0/4");
        *command = text.into();
    });
    assert!(err.contains("not the completion index"), "{err}");
}

#[test]
fn the_workflow_checks_fail_on_altered_copies() {
    let altered = |change: &dyn Fn(&mut Value)| {
        let mut workflow = workflow();
        change(&mut workflow);
        check_workflow(&workflow).expect_err("the altered workflow passed")
    };
    let err = altered(&|w| {
        w["jobs"]["campaign"]["strategy"]["matrix"]["shard"] =
            serde_yaml::from_str("[0, 1, 2]").unwrap();
    });
    assert!(err.contains("are not 0..4"), "{err}");
    let err = altered(&|w| w["jobs"]["merge"]["needs"] = "build".into());
    assert!(err.contains("does not need \"campaign\""), "{err}");
    let err = altered(&|w| {
        w["on"].as_mapping_mut().unwrap().remove("schedule");
    });
    assert!(err.contains("no schedule"), "{err}");
}

#[test]
fn shard_flags_parse() {
    assert_eq!(
        shard_flag("x --shard \"${{ matrix.shard }}/4\" --out y").unwrap(),
        ("${{ matrix.shard }}".to_string(), 4)
    );
    assert_eq!(
        shard_flag("x --shard $JOB_COMPLETION_INDEX/8").unwrap(),
        ("$JOB_COMPLETION_INDEX".to_string(), 8)
    );
    assert!(shard_flag("x --shard all").is_err());
    assert!(shard_flag("x --seed 1").is_err());
}
