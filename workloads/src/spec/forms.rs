//! The workload as written in the file, for serde: optional fields whose defaults are applied
//! on conversion, a step as a one-key map, a fault target as `journal` or `{ sectors: [..] }`.
//! serde_yaml would otherwise want YAML tags (`!append`) for the enums.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::file_tree::FileTree;
use super::limits::{
    DEFAULT_EXT4_DISK_MIB, DEFAULT_FILE_BYTES, DEFAULT_SEED, MAX_LOG_MIB, MAX_STEPS,
    MIN_XFS_DISK_MIB,
};
use super::program::{CheckerSpec, ExecStep};
use super::scalars::{
    de_at_ack, de_disk_mib, de_file_size, de_log_mib, de_name, de_opt_path, de_path,
};
use super::{
    AppendStep, FaultSpec, FaultTarget, FileOp, Filesystem, IngestStep, PowerCut, Step, Workload,
    WriterSpec,
};

const FAULT_TARGET_EXPECTED: &str =
    "`journal`, `device`, `{ file: NAME }` or `{ sectors: [start, count] }`";

impl Serialize for FaultTarget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            FaultTarget::Journal => serializer.serialize_str("journal"),
            FaultTarget::Device => serializer.serialize_str("device"),
            FaultTarget::Sectors(range) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("sectors", range)?;
                map.end()
            }
            FaultTarget::File(name) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("file", name)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for FaultTarget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;
        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = FaultTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(FAULT_TARGET_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FaultTarget, E> {
                match v {
                    "journal" => Ok(FaultTarget::Journal),
                    "device" => Ok(FaultTarget::Device),
                    other => Err(E::custom(format!(
                        "unknown fault target {other:?}, expected {FAULT_TARGET_EXPECTED}"
                    ))),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<FaultTarget, A::Error> {
                let key: String = map.next_key()?.ok_or_else(|| {
                    de::Error::custom(format!("expected {FAULT_TARGET_EXPECTED}"))
                })?;
                let target = match key.as_str() {
                    "sectors" => FaultTarget::Sectors(map.next_value()?),
                    "file" => FaultTarget::File(map.next_value()?),
                    _ => {
                        return Err(de::Error::custom(format!(
                            "unknown fault target key `{key}`, expected {FAULT_TARGET_EXPECTED}"
                        )))
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "a fault target has one key, expected {FAULT_TARGET_EXPECTED}"
                    )));
                }
                match target.problem() {
                    Some(why) => Err(de::Error::custom(why)),
                    None => Ok(target),
                }
            }
        }
        deserializer.deserialize_any(TargetVisitor)
    }
}

/// The workload as written in the file: optional fields, defaults applied on conversion.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WorkloadFile {
    #[serde(deserialize_with = "de_name")]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(default)]
    filesystem: Filesystem,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_disk_mib"
    )]
    disk_mib: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_log_mib"
    )]
    log_mib: Option<u64>,
    #[serde(default)]
    writer: WriterSpec,
    steps: Steps,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    power_cut: Option<PowerCut>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_crash: Option<Steps>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    guest_packages: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    guest_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checker: Option<CheckerSpec>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    allow_root_exec: bool,
}

impl From<WorkloadFile> for Workload {
    fn from(f: WorkloadFile) -> Workload {
        let disk_mib = f.disk_mib.unwrap_or(match f.filesystem {
            Filesystem::Ext4 => DEFAULT_EXT4_DISK_MIB,
            Filesystem::Xfs => MIN_XFS_DISK_MIB,
        });
        Workload {
            name: f.name,
            seed: f.seed.unwrap_or(DEFAULT_SEED),
            description: f.description,
            filesystem: f.filesystem,
            disk_mib,
            log_mib: f
                .log_mib
                .unwrap_or(disk_mib.saturating_mul(4).min(MAX_LOG_MIB)),
            writer: f.writer,
            steps: f.steps.0,
            power_cut: f.power_cut,
            after_crash: f.after_crash.map(|s| s.0),
            guest_packages: f.guest_packages,
            guest_files: f.guest_files,
            checker: f.checker,
            allow_root_exec: f.allow_root_exec,
        }
    }
}

impl From<Workload> for WorkloadFile {
    fn from(w: Workload) -> WorkloadFile {
        WorkloadFile {
            name: w.name,
            seed: Some(w.seed),
            description: w.description,
            filesystem: w.filesystem,
            disk_mib: Some(w.disk_mib),
            log_mib: Some(w.log_mib),
            writer: w.writer,
            steps: Steps(w.steps),
            power_cut: w.power_cut,
            after_crash: w.after_crash.map(Steps),
            guest_packages: w.guest_packages,
            guest_files: w.guest_files,
            checker: w.checker,
            allow_root_exec: w.allow_root_exec,
        }
    }
}

/// The step list, read with the files that exist at each step in mind.
struct Steps(Vec<Step>);

impl Serialize for Steps {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Steps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepsVisitor;
        impl<'de> Visitor<'de> for StepsVisitor {
            type Value = Steps;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of steps")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Steps, A::Error> {
                let mut tree = FileTree::default();
                let mut steps = Vec::new();
                while let Some(step) = seq.next_element_seed(StepSeed { tree: &mut tree })? {
                    if steps.len() == MAX_STEPS {
                        return Err(de::Error::custom(format!("more than {MAX_STEPS} steps")));
                    }
                    steps.push(step);
                }
                Ok(Steps(steps))
            }
        }
        deserializer.deserialize_seq(StepsVisitor)
    }
}

/// Reads one step and applies it to the file tree, so an error lands on that step's line.
struct StepSeed<'a> {
    tree: &'a mut FileTree,
}

impl<'de> DeserializeSeed<'de> for StepSeed<'_> {
    type Value = Step;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Step, D::Error> {
        let step = Step::deserialize(deserializer)?;
        // Rules across a step's fields (a fault's kind and target), on the step's own line.
        if let Err((field, message)) = step.check() {
            return Err(de::Error::custom(if field.is_empty() {
                format!("{}: {message}", step.kind())
            } else {
                format!("{}.{field}: {message}", step.kind())
            }));
        }
        self.tree.apply(&step).map_err(de::Error::custom)?;
        Ok(step)
    }
}

/// A step as written: a map with exactly one of these keys.
#[derive(Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a step: a map with one key, such as `append: {...}` or `rotate: {}`"
)]
pub(super) struct StepFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    append: Option<AppendStep>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_empty"
    )]
    rotate: Option<Empty>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_empty"
    )]
    retire: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<FileOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ingest: Option<IngestStep>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_empty"
    )]
    reopen: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fault: Option<FaultSpec>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_empty"
    )]
    clear_fault: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exec: Option<ExecStep>,
}

/// The body of `rotate: {}` and `reopen: {}` (which take no options).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `rotate:` with nothing after it is the same as `rotate: {}`.
fn de_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Empty>, D::Error> {
    Ok(Some(Option::<Empty>::deserialize(d)?.unwrap_or(Empty {})))
}

impl TryFrom<StepFile> for Step {
    type Error = String;
    fn try_from(f: StepFile) -> Result<Step, String> {
        let mut steps = Vec::new();
        if let Some(a) = f.append {
            steps.push(Step::Append(a));
        }
        if f.rotate.is_some() {
            steps.push(Step::Rotate);
        }
        if f.retire.is_some() {
            steps.push(Step::Retire);
        }
        if let Some(op) = f.file {
            steps.push(Step::File(op));
        }
        if let Some(i) = f.ingest {
            steps.push(Step::Ingest(i));
        }
        if f.reopen.is_some() {
            steps.push(Step::Reopen);
        }
        if let Some(fault) = f.fault {
            steps.push(Step::Fault(fault));
        }
        if f.clear_fault.is_some() {
            steps.push(Step::ClearFault);
        }
        if let Some(e) = f.exec {
            steps.push(Step::Exec(e));
        }
        if steps.len() != 1 {
            return Err(format!(
                "a step has exactly one of the keys `append`, `rotate`, `retire`, `file`, \
                 `ingest`, `reopen`, `fault`, `clear_fault`, `exec`; this one has {}",
                steps.len()
            ));
        }
        Ok(steps.remove(0))
    }
}

impl From<Step> for StepFile {
    fn from(step: Step) -> StepFile {
        let mut f = StepFile {
            append: None,
            rotate: None,
            retire: None,
            file: None,
            ingest: None,
            reopen: None,
            fault: None,
            clear_fault: None,
            exec: None,
        };
        match step {
            Step::Append(a) => f.append = Some(a),
            Step::Rotate => f.rotate = Some(Empty {}),
            Step::Retire => f.retire = Some(Empty {}),
            Step::File(op) => f.file = Some(op),
            Step::Ingest(i) => f.ingest = Some(i),
            Step::Reopen => f.reopen = Some(Empty {}),
            Step::Fault(fault) => f.fault = Some(fault),
            Step::ClearFault => f.clear_fault = Some(Empty {}),
            Step::Exec(e) => f.exec = Some(e),
        }
        f
    }
}

/// `file:` step as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStepFile {
    op: FileOpKind,
    #[serde(deserialize_with = "de_path")]
    path: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_path"
    )]
    to: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_file_size"
    )]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fsync_file: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fsync_dir: Option<bool>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FileOpKind {
    Create,
    Rename,
    Remove,
}

impl TryFrom<FileStepFile> for FileOp {
    type Error = String;
    fn try_from(f: FileStepFile) -> Result<FileOp, String> {
        let not_for = |field: &str, op: &str| format!("`{field}` does not apply to op {op}");
        let op = match f.op {
            FileOpKind::Create => {
                if f.to.is_some() {
                    return Err(not_for("to", "create"));
                }
                FileOp::Create {
                    path: f.path,
                    size_bytes: f.size.unwrap_or(DEFAULT_FILE_BYTES),
                    fsync_file: f.fsync_file.unwrap_or(true),
                    fsync_dir: f.fsync_dir.unwrap_or(true),
                }
            }
            FileOpKind::Rename => {
                if f.size.is_some() {
                    return Err(not_for("size", "rename"));
                }
                let to = f.to.ok_or("op rename needs `to`, the new name")?;
                FileOp::Rename {
                    from: f.path,
                    to,
                    fsync_file: f.fsync_file.unwrap_or(true),
                    fsync_dir: f.fsync_dir.unwrap_or(true),
                }
            }
            FileOpKind::Remove => {
                if f.to.is_some() {
                    return Err(not_for("to", "remove"));
                }
                if f.size.is_some() {
                    return Err(not_for("size", "remove"));
                }
                if f.fsync_file.is_some() {
                    return Err(not_for("fsync_file", "remove"));
                }
                FileOp::Remove {
                    path: f.path,
                    fsync_dir: f.fsync_dir.unwrap_or(true),
                }
            }
        };
        op.check()?;
        Ok(op)
    }
}

impl From<FileOp> for FileStepFile {
    fn from(op: FileOp) -> FileStepFile {
        match op {
            FileOp::Create {
                path,
                size_bytes,
                fsync_file,
                fsync_dir,
            } => FileStepFile {
                op: FileOpKind::Create,
                path,
                to: None,
                size: Some(size_bytes),
                fsync_file: Some(fsync_file),
                fsync_dir: Some(fsync_dir),
            },
            FileOp::Rename {
                from,
                to,
                fsync_file,
                fsync_dir,
            } => FileStepFile {
                op: FileOpKind::Rename,
                path: from,
                to: Some(to),
                size: None,
                fsync_file: Some(fsync_file),
                fsync_dir: Some(fsync_dir),
            },
            FileOp::Remove { path, fsync_dir } => FileStepFile {
                op: FileOpKind::Remove,
                path,
                to: None,
                size: None,
                fsync_file: None,
                fsync_dir: Some(fsync_dir),
            },
        }
    }
}

/// `power_cut:` as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PowerCutFile {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_at_ack"
    )]
    at_ack: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    random: Option<bool>,
}

impl TryFrom<PowerCutFile> for PowerCut {
    type Error = &'static str;
    fn try_from(f: PowerCutFile) -> Result<PowerCut, &'static str> {
        match (f.at_ack, f.random) {
            (Some(n), None) => Ok(PowerCut::AtAck(n)),
            (None, Some(true)) => Ok(PowerCut::Random),
            (None, Some(false)) => Err("`random: false` means no power cut: leave power_cut out"),
            (Some(_), Some(_)) => Err("give either `at_ack` or `random`, not both"),
            (None, None) => Err("give `at_ack: N` or `random: true`"),
        }
    }
}

impl From<PowerCut> for PowerCutFile {
    fn from(p: PowerCut) -> PowerCutFile {
        match p {
            PowerCut::AtAck(n) => PowerCutFile {
                at_ack: Some(n),
                random: None,
            },
            PowerCut::Random => PowerCutFile {
                at_ack: None,
                random: Some(true),
            },
        }
    }
}
