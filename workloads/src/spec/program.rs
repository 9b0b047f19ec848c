//! Programs under test: the `exec:` step that runs a program in the guest, the Debian packages
//! the guest needs for it (`guest_packages:`) and the checker that judges each crash state
//! (`checker:`). docs/programs.md says how to use them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::limits::{
    GUEST_FILES_DIR, MAX_ARGV, MAX_ARG_BYTES, MAX_ENV_VARS, MAX_EXEC_TIMEOUT_S, MAX_GUEST_FILES,
    MAX_GUEST_PACKAGES, PROGRAM_UID_GID,
};

/// `exec:` step: run a program in the guest and turn the lines it writes on its ack channel
/// into acks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecStep {
    /// The program and its arguments; `argv[0]` is looked up in `PATH`
    /// (`/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`) unless it holds a `/`.
    pub argv: Vec<String>,
    /// Seconds the program may run; past it, its process group is killed and the run fails.
    #[serde(rename = "timeout", default = "default_timeout", with = "timeout_form")]
    pub timeout_s: u64,
    /// Extra environment variables (the agent sets `PATH`, `HOME`, `POWERCUT_ACK_FD` and
    /// `POWERCUT_DATA_DIR` itself).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Who runs it.
    #[serde(default)]
    pub user: ExecUser,
}

/// Seconds an `exec:` step may run when the workload says nothing.
pub const DEFAULT_EXEC_TIMEOUT_S: u64 = 60;

fn default_timeout() -> u64 {
    DEFAULT_EXEC_TIMEOUT_S
}

/// Who runs a program in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecUser {
    /// An unprivileged user (uid and gid [`PROGRAM_UID_GID`], no supplementary groups, no
    /// capabilities): it cannot open the block devices, so every image the host mounts was
    /// written by the guest kernel's file system.
    #[default]
    Program,
    /// root: only with `allow_root_exec: true` at the top of the workload (docs/programs.md
    /// says why that is dangerous for the host).
    Root,
}

impl ExecUser {
    /// uid and gid the program runs with.
    pub fn ids(self) -> (u32, u32) {
        match self {
            ExecUser::Program => (PROGRAM_UID_GID, PROGRAM_UID_GID),
            ExecUser::Root => (0, 0),
        }
    }
}

/// How each crash state of a program's run is judged, on the host, with the state mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CheckerFile", into = "CheckerFile")]
pub enum CheckerSpec {
    /// Built in: `dump` prints `KEY DIGEST` for every key the state holds; every key acked
    /// before the cut must be there with its digest.
    Kv {
        /// The command that lists the state's keys (run in the mounted data directory).
        dump: Vec<String>,
    },
    /// A command of the user's: the acks up to the cut on stdin, the data directory as its
    /// working directory and in `POWERCUT_STATE_DIR`; exit 0 held, 1 violated, else an error.
    Command {
        /// The command and its arguments.
        argv: Vec<String>,
    },
}

/// `checker:` as written: a map with one key (serde_yaml would want a YAML tag for an enum).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckerFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kv: Option<KvFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvFile {
    dump: Vec<String>,
}

impl TryFrom<CheckerFile> for CheckerSpec {
    type Error = String;
    fn try_from(f: CheckerFile) -> Result<CheckerSpec, String> {
        let checker = match (f.kv, f.command) {
            (Some(kv), None) => CheckerSpec::Kv { dump: kv.dump },
            (None, Some(argv)) => CheckerSpec::Command { argv },
            _ => {
                return Err("a checker is either `kv: { dump: [...] }` or `command: [...]`".into())
            }
        };
        match argv_problem(checker.argv()) {
            Some(why) => Err(why),
            None => Ok(checker),
        }
    }
}

impl From<CheckerSpec> for CheckerFile {
    fn from(c: CheckerSpec) -> CheckerFile {
        match c {
            CheckerSpec::Kv { dump } => CheckerFile {
                kv: Some(KvFile { dump }),
                command: None,
            },
            CheckerSpec::Command { argv } => CheckerFile {
                kv: None,
                command: Some(argv),
            },
        }
    }
}

impl CheckerSpec {
    /// The command the checker runs.
    pub fn argv(&self) -> &[String] {
        match self {
            CheckerSpec::Kv { dump } => dump,
            CheckerSpec::Command { argv } => argv,
        }
    }
}

/// Accepts `30`, `"30s"`, `"2m"`: seconds, from 1 to [`MAX_EXEC_TIMEOUT_S`].
mod timeout_form {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;
    use std::fmt;

    use super::MAX_EXEC_TIMEOUT_S;

    pub(super) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v}s"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a duration such as 30s or 2m, from 1s to {MAX_EXEC_TIMEOUT_S}s"
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                bounded(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                bounded(u64::try_from(v).map_err(|_| E::custom("a negative timeout"))?)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                bounded(super::parse_duration_s(v).map_err(E::custom)?)
            }
        }
        d.deserialize_any(V)
    }

    fn bounded<E: de::Error>(v: u64) -> Result<u64, E> {
        if (1..=MAX_EXEC_TIMEOUT_S).contains(&v) {
            Ok(v)
        } else {
            Err(E::custom(format!(
                "timeout {v}s is outside 1s..={MAX_EXEC_TIMEOUT_S}s"
            )))
        }
    }
}

/// `"30s"`, `"2m"`, `"1h"` or a bare number of seconds.
pub fn parse_duration_s(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s or 2m"))?;
    let scale = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        other => return Err(format!("unknown duration unit {other:?} (s, m or h)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// What is wrong with a command line, if anything: 1 to [`MAX_ARGV`] arguments of at most
/// [`MAX_ARG_BYTES`] bytes, none holding a NUL byte, the first not empty.
pub fn argv_problem(argv: &[String]) -> Option<String> {
    if argv.is_empty() || argv.len() > MAX_ARGV {
        return Some(format!(
            "needs 1 to {MAX_ARGV} arguments, has {}",
            argv.len()
        ));
    }
    if argv[0].is_empty() {
        return Some("the program (argv[0]) is empty".into());
    }
    argv.iter().enumerate().find_map(|(i, arg)| {
        if arg.len() > MAX_ARG_BYTES {
            Some(format!("argument {i} is longer than {MAX_ARG_BYTES} bytes"))
        } else if arg.contains('\0') {
            Some(format!("argument {i} holds a NUL byte"))
        } else {
            None
        }
    })
}

/// Names the agent sets itself; a workload may not override them.
const RESERVED_ENV_PREFIX: &str = "POWERCUT_";

/// What is wrong with an environment, if anything.
fn env_problem(env: &BTreeMap<String, String>) -> Option<String> {
    if env.len() > MAX_ENV_VARS {
        return Some(format!("more than {MAX_ENV_VARS} variables"));
    }
    env.iter().find_map(|(name, value)| {
        let valid_name = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_name {
            Some(format!(
                "{name:?}: a variable name is letters, digits and '_', not starting with a digit"
            ))
        } else if name.starts_with(RESERVED_ENV_PREFIX) {
            Some(format!(
                "{name}: names starting with {RESERVED_ENV_PREFIX} are the agent's"
            ))
        } else if value.len() > MAX_ARG_BYTES || value.contains('\0') {
            Some(format!(
                "{name}: a value is at most {MAX_ARG_BYTES} bytes without NUL"
            ))
        } else {
            None
        }
    })
}

impl ExecStep {
    /// The step's own rules: its command line and environment.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(why) = argv_problem(&self.argv) {
            return Err(("argv", why));
        }
        if !(1..=MAX_EXEC_TIMEOUT_S).contains(&self.timeout_s) {
            return Err(("timeout", format!("outside 1s..={MAX_EXEC_TIMEOUT_S}s")));
        }
        env_problem(&self.env).map_or(Ok(()), |why| Err(("env", why)))
    }

    /// One line for progress output.
    pub fn describe(&self) -> String {
        let mut line = self.argv.join(" ");
        if line.len() > 80 {
            let mut cut = 77;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str("...");
        }
        format!("exec {line}")
    }
}

/// What is wrong with a Debian package name, if anything (Debian policy 5.6.1: lowercase
/// letters, digits, `+`, `-`, `.`, at least two characters, starting alphanumeric).
pub fn package_name_problem(name: &str) -> Option<String> {
    let ok = name.len() >= 2
        && name.len() <= 100
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        });
    (!ok).then(|| {
        format!("{name:?} is not a Debian package name (lowercase letters, digits, '+', '-', '.')")
    })
}

/// The base name under which a file of `guest_files:` lands in [`GUEST_FILES_DIR`].
pub fn guest_file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The `guest_files:` list: at most [`MAX_GUEST_FILES`] paths, each naming a file (a base name
/// usable in the guest) and no two with the same base name; the error names the entry.
pub(super) fn files_problem(files: &[String]) -> Result<(), (String, String)> {
    if files.len() > MAX_GUEST_FILES {
        return Err((
            "guest_files".into(),
            format!("more than {MAX_GUEST_FILES} files"),
        ));
    }
    let mut seen = std::collections::BTreeMap::new();
    for (i, path) in files.iter().enumerate() {
        let field = || format!("guest_files[{i}]");
        let name = guest_file_name(path);
        let plain = !name.is_empty()
            && name.len() <= 200
            && name != "."
            && name != ".."
            && !path.contains('\0')
            && path.len() <= 4096
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
        if !plain {
            return Err((
                field(),
                format!(
                    "{path:?}: the file's name must be 1 to 200 characters among letters, \
                     digits, '.', '_', '-' and '+' (it becomes {GUEST_FILES_DIR}/NAME)"
                ),
            ));
        }
        if let Some(first) = seen.insert(name, i) {
            return Err((
                field(),
                format!(
                    "{path:?}: a second file named {name} (guest_files[{first}]): both would \
                     be {GUEST_FILES_DIR}/{name}"
                ),
            ));
        }
    }
    Ok(())
}

/// The `guest_packages:` list: valid names, no duplicates, at most [`MAX_GUEST_PACKAGES`].
pub(super) fn packages_problem(packages: &[String]) -> Option<String> {
    if packages.len() > MAX_GUEST_PACKAGES {
        return Some(format!("more than {MAX_GUEST_PACKAGES} packages"));
    }
    let mut seen = std::collections::BTreeSet::new();
    packages.iter().find_map(|p| {
        package_name_problem(p)
            .or_else(|| (!seen.insert(p)).then(|| format!("{p} is listed twice")))
    })
}
