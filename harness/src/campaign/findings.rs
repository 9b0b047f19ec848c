//! Findings of a campaign: the signature that deduplicates them, the directory each one is kept
//! in (`DIR/findings/SIG/`: `workload.yaml`, `finding.json`, `repro.txt`) and the corpus of
//! workloads worth keeping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use powercut_workloads::ack::Ack;
use powercut_workloads::generate::{step_kind, Generated};
use powercut_workloads::spec::{DurabilitySpec, Step, Workload};
use sha2::{Digest, Sha256};

/// Hex digits of a signature.
const SIGNATURE_HEX: usize = 12;
/// Other failing workloads a finding lists besides its first.
const MAX_ALSO_IN: usize = 20;

/// The first violation of one workload run, before deduplication. A run's later violations
/// mostly follow from its first (lost records break I1 and I2 in one state), so a run makes
/// one candidate; the other invariants it broke are listed.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// `I1`..`I8`, or `engine` (sim tier: the engine failed with no fault injected).
    pub invariant: String,
    /// Every invariant the run violated, the first one first.
    pub invariants: Vec<String>,
    /// The crash state (sim: `durable-only`, `seeded:0x..`, `live`; vm: the state id).
    pub state: Option<String>,
    /// Where in the run (sim: the plan step; vm: the ack label).
    pub step: Option<String>,
    /// Index into the kinds the tier ran of the step the state was taken in, when known.
    pub failing_step: Option<usize>,
    pub expected: String,
    pub found: String,
    /// Violations in the run.
    pub violations: u64,
}

/// The normalised form a signature hashes, and the signature. It keeps what tells causes
/// apart: the invariant, the symptom (what was expected and what was found, numbers and paths
/// left out, so "records lost" and "records with other bytes" differ but not which LSN), the
/// durability mode (the two sync paths of the engine; not for I5, which corrupts a copy of a
/// state on purpose), and the kind of step the crash state was taken in (single and group
/// appends count as one kind). It leaves out what varies between workloads reaching one bug:
/// counts, sizes, payloads, the steps before and after, the other engine options.
pub fn signature(
    invariant: &str,
    durability: &str,
    failing_kind: &str,
    expected: &str,
    found: &str,
) -> (String, String) {
    let kind = match failing_kind {
        "group_commit" => "append",
        other => other,
    };
    // I5 judges recovery of a corrupted copy of a state, however its bytes were written.
    let durability = if invariant == "I5" { "any" } else { durability };
    let shape = format!(
        "{invariant}|{durability}|at {kind}|{}",
        symptom(expected, found)
    );
    let digest = Sha256::digest(shape.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (hex[..SIGNATURE_HEX].to_string(), shape)
}

/// The kind of the step a crash state was taken in: `kinds[at]`, `close` past the last step,
/// `unknown` when the tier did not say.
pub fn failing_kind<'k>(kinds: &[&'k str], at: Option<usize>) -> &'k str {
    match at {
        Some(at) => kinds.get(at).copied().unwrap_or("close"),
        None => "unknown",
    }
}

/// `expected / found`, each up to its first `;` (the rest describes the recovered log), with
/// every number written `N`.
fn symptom(expected: &str, found: &str) -> String {
    let head = |s: &'_ str| s.split(';').next().unwrap_or("").trim().to_string();
    without_numbers(&format!("{} / {}", head(expected), head(found)))
}

/// `text` with each word that holds a digit (a number, a hex checksum, a segment number in a
/// file name) replaced by `N`.
fn without_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.bytes().any(|b| b.is_ascii_digit()) {
            out.push('N');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// `dsync` or `fdatasync`, as the engine will run the workload.
pub fn durability_name(workload: &Workload) -> &'static str {
    match workload.writer.durability {
        Some(DurabilitySpec::Fdatasync) => "fdatasync",
        Some(DurabilitySpec::Dsync) | None => "dsync",
    }
}

/// The workload step an ack label of a VM run belongs to: the step that appended its first
/// record, the retire of that LSN, or the file operation on that path.
pub fn step_of_ack(workload: &Workload, label: &str) -> Option<usize> {
    let ack = Ack::parse_label(label).ok()?;
    let mut next_lsn = 1u64;
    for (index, step) in workload.steps.iter().enumerate() {
        let records = step.records();
        let hit = match (&ack, step) {
            (Ack::Records { first_lsn, .. }, _) => {
                records > 0 && (next_lsn..next_lsn + records).contains(first_lsn)
            }
            (Ack::Retired { before_lsn }, Step::Retire) => *before_lsn == next_lsn,
            (Ack::FileCreate { path, .. }, Step::File(op))
            | (Ack::FileRemove { path }, Step::File(op)) => {
                step_kind(step) == ack_kind(&ack) && file_path(op) == path
            }
            (Ack::FileRename { from, .. }, Step::File(op)) => {
                step_kind(step) == "rename" && file_path(op) == from
            }
            _ => false,
        };
        if hit {
            return Some(index);
        }
        next_lsn += records;
    }
    None
}

fn ack_kind(ack: &Ack) -> &'static str {
    match ack {
        Ack::FileCreate { .. } => "create",
        Ack::FileRemove { .. } => "remove",
        _ => "",
    }
}

fn file_path(op: &powercut_workloads::spec::FileOp) -> &str {
    use powercut_workloads::spec::FileOp;
    match op {
        FileOp::Create { path, .. } | FileOp::Remove { path, .. } => path,
        FileOp::Rename { from, .. } => from,
    }
}

/// One deduplicated finding, as `finding.json` and the campaign report hold it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub signature: String,
    /// What the signature hashes.
    pub shape: String,
    pub invariant: String,
    /// Every invariant the first workload's run violated.
    pub invariants: Vec<String>,
    /// The first workload that showed it.
    pub workload: String,
    pub index: u64,
    pub mode: &'static str,
    /// Its operations between the prologue and the epilogue.
    pub ops: Vec<&'static str>,
    /// Seed of the workload (payloads and crash states); `--seed` of the repro command.
    pub seed: u64,
    pub campaign_seed: u64,
    pub tier: &'static str,
    pub filesystem: &'static str,
    pub mutant: Option<String>,
    pub state: Option<String>,
    pub step: Option<String>,
    pub expected: String,
    pub found: String,
    /// Violations in the first workload's run.
    pub violations: u64,
    /// The command that replays it.
    pub repro: String,
    /// Every command of `repro.txt`, comments left out.
    pub repro_commands: Vec<String>,
    pub dir: PathBuf,
    /// Workload runs that showed this signature.
    pub hits: u64,
    /// Seconds into the campaign of the first one.
    pub seconds: f64,
    /// Other workloads that showed it (at most 20).
    pub also_in: Vec<String>,
    /// Sim tier: how many replays of the first workload's run, with its seed, showed the
    /// invariant again (a mutant or a race that writes from another thread may show its bug in
    /// another crash state, or under another invariant, from one run to the next).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replays: Option<Replays>,
    /// Sim tier: the shrunk reproducer (`minimal.yaml` beside `workload.yaml`), when shrinking
    /// kept the invariant within its budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimal: Option<Minimal>,
}

/// A finding's shrunk workload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Minimal {
    /// The shrunk workload file.
    pub workload: PathBuf,
    pub steps: usize,
    pub records: u64,
    /// The command that replays it.
    pub repro: String,
}

/// Replays of a finding and how many showed its invariant again.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Replays {
    pub runs: u32,
    pub showed_invariant: u32,
}

/// Where a finding was met.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub generated: &'a Generated,
    pub campaign_seed: u64,
    pub tier: &'static str,
    pub mutant: Option<powercut_writer::Mutant>,
    /// The VM run's recording (vm tier).
    pub run_dir: Option<&'a Path>,
    pub seconds: f64,
}

/// The findings so far, one per signature, each kept in its directory.
#[derive(Debug)]
pub struct Findings {
    root: PathBuf,
    by_signature: BTreeMap<String, Finding>,
    /// Signatures in the order first met.
    order: Vec<String>,
}

impl Findings {
    /// Findings kept under `root` (`DIR/findings`).
    pub fn new(root: PathBuf) -> Findings {
        Findings {
            root,
            by_signature: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    /// Records a candidate; returns its signature and whether it is new (its directory is then
    /// written at once, so a campaign stopped later keeps it). `replay` runs only for a new
    /// signature.
    pub fn add(
        &mut self,
        candidate: &Candidate,
        kinds: &[&str],
        at: Origin<'_>,
        replay: impl FnOnce() -> Result<Option<Replays>>,
    ) -> Result<(String, bool)> {
        let workload = &at.generated.workload;
        let (signature, shape) = signature(
            &candidate.invariant,
            durability_name(workload),
            failing_kind(kinds, candidate.failing_step),
            &candidate.expected,
            &candidate.found,
        );
        if let Some(known) = self.by_signature.get_mut(&signature) {
            known.hits += 1;
            if known.also_in.len() < MAX_ALSO_IN {
                known.also_in.push(workload.name.clone());
            }
            return Ok((signature, false));
        }
        let replays = replay()?;
        let dir = self.root.join(&signature);
        let (repro, lines) = repro_lines(&dir, workload, &at, candidate);
        let finding = Finding {
            signature: signature.clone(),
            shape,
            invariant: candidate.invariant.clone(),
            invariants: candidate.invariants.clone(),
            workload: workload.name.clone(),
            index: at.generated.index,
            mode: at.generated.mode.name(),
            ops: at.generated.ops.iter().map(|op| op.name()).collect(),
            seed: workload.seed,
            campaign_seed: at.campaign_seed,
            tier: at.tier,
            filesystem: workload.filesystem.name(),
            mutant: at.mutant.map(|m| m.name().to_string()),
            state: candidate.state.clone(),
            step: candidate.step.clone(),
            expected: candidate.expected.clone(),
            found: candidate.found.clone(),
            violations: candidate.violations,
            repro,
            repro_commands: lines
                .iter()
                .filter(|l| !l.starts_with('#'))
                .cloned()
                .collect(),
            dir: dir.clone(),
            hits: 1,
            seconds: at.seconds,
            also_in: Vec::new(),
            replays,
            minimal: None,
        };
        write_finding_dir(&finding, &at.generated.yaml, &lines)?;
        self.order.push(signature.clone());
        self.by_signature.insert(signature.clone(), finding);
        Ok((signature, true))
    }

    /// Records the shrunk reproducer of the finding `signature` and rewrites its `finding.json`.
    pub fn set_minimal(&mut self, signature: &str, minimal: Minimal) -> Result<()> {
        let Some(finding) = self.by_signature.get_mut(signature) else {
            return Ok(());
        };
        finding.minimal = Some(minimal);
        write_json(&finding.dir.join("finding.json"), finding)
    }

    /// The directory holding one directory per finding.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The findings in the order first met.
    pub fn all(&self) -> impl Iterator<Item = &Finding> {
        self.order.iter().map(|s| &self.by_signature[s])
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Rewrites every `finding.json` with its final hit count.
    pub fn finish(&self) -> Result<()> {
        for finding in self.all() {
            write_json(&finding.dir.join("finding.json"), finding)?;
        }
        Ok(())
    }
}

/// The commands of `repro.txt` (comments start with `#`) and the first command.
fn repro_lines(
    dir: &Path,
    workload: &Workload,
    at: &Origin<'_>,
    candidate: &Candidate,
) -> (String, Vec<String>) {
    let file = dir.join("workload.yaml");
    let mutant = at
        .mutant
        .map(|m| format!(" --mutant {m}"))
        .unwrap_or_default();
    let seed = workload.seed;
    let mut lines = vec![format!(
        "# {} in {} (campaign seed {}, workload {}, tier {}): replay with",
        candidate.invariant, workload.name, at.campaign_seed, at.generated.index, at.tier
    )];
    let first = if at.tier == "sim" {
        format!("powercut sim {} --seed {seed}{mutant}", file.display())
    } else {
        format!(
            "powercut run {} --seed {seed} --filesystem {}{mutant} --out {}",
            file.display(),
            workload.filesystem.name(),
            dir.join("rerun").display()
        )
    };
    lines.push(first.clone());
    if let (Some(state), Some(run)) = (&candidate.state, at.run_dir) {
        if at.tier == "vm" && state != crate::check_cmds::GUEST_RUN_STATE_ID {
            lines.push("# the crash state alone, from the campaign's recording:".into());
            lines.push(format!(
                "powercut repro {state} --log {} --base {}",
                run.join("log.bin").display(),
                run.join("base.img").display()
            ));
        }
    }
    lines.push("# minimise it (writes minimal.yaml):".into());
    lines.push(format!(
        "powercut shrink {} --tier {} --seed {seed}{mutant} --out {}",
        file.display(),
        at.tier,
        dir.join("shrink").display()
    ));
    (first, lines)
}

fn write_finding_dir(finding: &Finding, yaml: &str, repro: &[String]) -> Result<()> {
    let dir = &finding.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("workload.yaml", yaml)?;
    write("repro.txt", &format!("{}\n", repro.join("\n")))?;
    write_json(&dir.join("finding.json"), finding)
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The combination of step kinds a workload exercises: its behaviour, as the corpus tells new
/// from known.
pub fn behaviour(workload: &Workload) -> String {
    let kinds: BTreeSet<&str> = workload.steps.iter().map(step_kind).collect();
    kinds.into_iter().collect::<Vec<_>>().join("+")
}

/// `--corpus DIR`: the generated workloads that showed a finding or a combination of step kinds
/// not seen before (in this campaign or in the workloads already in DIR).
#[derive(Debug)]
pub struct Corpus {
    dir: PathBuf,
    seen: BTreeSet<String>,
    pub saved: u64,
}

impl Corpus {
    /// Opens (creates) DIR and learns the behaviours of the workloads in it.
    pub fn open(dir: &Path) -> Result<Corpus> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut seen = BTreeSet::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                match powercut_workloads::spec::load(&path) {
                    Ok(w) => {
                        seen.insert(behaviour(&w));
                    }
                    Err(e) => eprintln!("corpus: skipping {}: {e}", path.display()),
                }
            }
        }
        Ok(Corpus {
            dir: dir.to_path_buf(),
            seen,
            saved: 0,
        })
    }

    /// Behaviours known.
    pub fn known(&self) -> usize {
        self.seen.len()
    }

    /// Saves `generated` when it found something or behaves in a new way.
    pub fn offer(&mut self, generated: &Generated, found: bool) -> Result<bool> {
        let new = self.seen.insert(behaviour(&generated.workload));
        if !(new || found) {
            return Ok(false);
        }
        let path = self.dir.join(format!("{}.yaml", generated.workload.name));
        std::fs::write(&path, &generated.yaml)
            .with_context(|| format!("writing {}", path.display()))?;
        self.saved += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cause_reached_by_different_workloads_keeps_one_signature() {
        let lost = |lsn: u64| {
            (
                format!("acknowledged LSNs 1..={lsn} recovered byte for byte"),
                format!(
                    "{} (first: LSN {lsn}) missing, 0 with other bytes; recovered {} records",
                    lsn % 5 + 1,
                    lsn - 1
                ),
            )
        };
        let (e1, f1) = lost(3);
        let (e2, f2) = lost(17);
        // Other LSNs, single or group commits: one signature.
        let a = signature("I1", "dsync", "append", &e1, &f1);
        let b = signature("I1", "dsync", "group_commit", &e2, &f2);
        assert_eq!(a.0, b.0, "{} vs {}", a.1, b.1);
        assert_eq!(a.0.len(), SIGNATURE_HEX);
        // Another invariant, durability mode, step kind or symptom: another signature.
        let corrupt = "0 missing, 1 (first: LSN 3) with other bytes; recovered 4 records";
        for other in [
            signature("I2", "dsync", "append", &e1, &f1),
            signature("I1", "fdatasync", "append", &e1, &f1),
            signature("I1", "dsync", "rotate", &e1, &f1),
            signature("I1", "dsync", "append", &e1, corrupt),
        ] {
            assert_ne!(a.0, other.0, "{} vs {}", a.1, other.1);
        }
        assert_eq!(
            signature("I5", "dsync", "unknown", "recovery error", "2 records").0,
            signature("I5", "fdatasync", "unknown", "recovery error", "5 records").0
        );
        assert_eq!(
            without_numbers("LSN 12 at 0x1f3a, seg-00000002.wal (0 bytes)"),
            "LSN N at N, seg-N.wal (N bytes)"
        );
        assert_eq!(
            without_numbers("records 1..=1 with crc32c eb6256e0"),
            without_numbers("records 2..=3 with crc32c 67bd4b8e")
        );
        assert_eq!(failing_kind(&["append", "rotate"], Some(1)), "rotate");
        assert_eq!(failing_kind(&["append", "rotate"], Some(2)), "close");
        assert_eq!(failing_kind(&["append"], None), "unknown");
    }

    #[test]
    fn ack_labels_map_to_their_steps() {
        let text = "name: t\nwriter: { segment_bytes: 65536 }\nsteps:\n  - append: { count: 3, size: 100 }\n  - rotate: {}\n  - \
                    retire: {}\n  - file: { op: create, path: a }\n  - ingest: { clients: 2, \
                    records_per_client: 2, size: 100 }\n  - file: { op: rename, path: a, to: b }\n";
        let w = powercut_workloads::spec::parse(text, "t.yaml").unwrap();
        assert_eq!(step_of_ack(&w, "r:2-2:00000000"), Some(0));
        assert_eq!(step_of_ack(&w, "t:4"), Some(2));
        assert_eq!(step_of_ack(&w, "f:create:a:00000000"), Some(3));
        assert_eq!(step_of_ack(&w, "r:6-6:00000000"), Some(4));
        assert_eq!(step_of_ack(&w, "f:rename:a>b:00000000"), Some(5));
        assert_eq!(step_of_ack(&w, "r:9-9:00000000"), None);
        assert_eq!(step_of_ack(&w, "nonsense"), None);
    }
}
