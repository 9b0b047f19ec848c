//! Provisioning of the host tools and Debian packages the guest is built from.
//!
//! QEMU: `qemu-system-x86` from bookworm cannot be installed next to the preinstalled
//! qemu-utils from bookworm-backports, so it comes from bookworm-backports too. The backports
//! suite is added in a private sources directory (copies of the system's own entries plus one
//! for `<codename>-backports`), passed to apt with `-o Dir::Etc::SourceParts=DIR`, so the
//! system's configuration stays untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::progress::Progress;
use crate::Skipped;

/// The QEMU binary we drive.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
const SYSTEM_SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// Whether we run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `name` found in `$PATH` (plus the sbin directories a non-login root shell may lack).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `$XDG_CACHE_HOME/powercut`, else `~/.cache/powercut`.
pub fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home =
                std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?;
            PathBuf::from(home).join(".cache")
        }
    };
    let dir = base.join("powercut");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs `command`, failing with its stderr tail when it exits non-zero. Returns stdout.
pub fn run(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("starting {shown}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{shown} failed ({}):\n{}", output.status, tail.join("\n"));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The distribution codename (`bookworm`) from /etc/os-release.
fn codename() -> Result<String> {
    let text = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    text.lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .context("/etc/os-release has no VERSION_CODENAME")
}

/// The deb822 stanza of `debian.sources` that carries `codename`, with its Suites replaced by
/// `<codename>-backports`.
pub fn backports_stanza(debian_sources: &str, codename: &str) -> Option<String> {
    for stanza in debian_sources.split("\n\n") {
        let Some(suites) = stanza.lines().find_map(|l| l.strip_prefix("Suites:")) else {
            continue;
        };
        if !suites.split_whitespace().any(|s| s == codename) {
            continue;
        }
        let lines: Vec<String> = stanza
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                if l.starts_with("Suites:") {
                    format!("Suites: {codename}-backports")
                } else {
                    l.to_string()
                }
            })
            .collect();
        return Some(lines.join("\n") + "\n");
    }
    None
}

/// The private sources directory: the system's entries plus a backports entry.
fn backports_sources_dir(cache: &Path) -> Result<PathBuf> {
    let codename = codename()?;
    let dir = cache.join("apt-sources");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut stanza = None;
    for entry in std::fs::read_dir(SYSTEM_SOURCES_DIR).context("listing apt sources")? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // apt only reads these two suffixes; anything else (disabled files) stays ignored.
        if !(name.ends_with(".sources") || name.ends_with(".list")) {
            continue;
        }
        std::fs::copy(entry.path(), dir.join(&name))
            .with_context(|| format!("copying {}", entry.path().display()))?;
        if name == "debian.sources" {
            let text = std::fs::read_to_string(entry.path())?;
            stanza = backports_stanza(&text, &codename);
        }
    }
    let stanza = stanza.with_context(|| {
        format!("{SYSTEM_SOURCES_DIR}/debian.sources has no entry for suite {codename}")
    })?;
    std::fs::write(dir.join("powercut-backports.sources"), stanza)?;
    Ok(dir)
}

/// Finds `qemu-system-x86_64`, installing it from backports first if it is missing and we are
/// root.
pub fn ensure_qemu(progress: &Progress) -> Result<PathBuf> {
    if let Some(qemu) = find_in_path(QEMU_BINARY) {
        return Ok(qemu);
    }
    let command = "apt-get install -t bookworm-backports --no-install-recommends qemu-system-x86 \
                   (with a bookworm-backports entry in the apt sources)";
    if !is_root() {
        return Err(Skipped(format!(
            "{QEMU_BINARY} is missing and installing it needs root; run as root: {command}"
        ))
        .into());
    }
    if find_in_path("apt-get").is_none() {
        bail!("{QEMU_BINARY} is missing and this host has no apt-get; install QEMU (x86_64 system emulator)");
    }
    let cache = cache_dir()?;
    let sources = backports_sources_dir(&cache)?;
    let parts = format!("Dir::Etc::SourceParts={}", sources.display());
    progress.step("apt-get update (with bookworm-backports)", || {
        run(Command::new("apt-get").args(["-o", &parts, "update", "-q"]))
    })?;
    let suite = format!("{}-backports", codename()?);
    progress.step("installing qemu-system-x86 from backports", || {
        run(Command::new("apt-get")
            .args([
                "-o",
                &parts,
                "install",
                "-y",
                "-q",
                "-t",
                &suite,
                "--no-install-recommends",
            ])
            .arg("qemu-system-x86")
            .env("DEBIAN_FRONTEND", "noninteractive"))
    })?;
    find_in_path(QEMU_BINARY)
        .with_context(|| format!("qemu-system-x86 installed but {QEMU_BINARY} is not in PATH"))
}

/// Host tools a run uses, each with the Debian package that brings it: mkfs for the data disks,
/// and mkfs.xfs also for the reflink scratch file system that makes each crash state a clone
/// instead of a full copy of the image (6-7x faster per state).
pub const HOST_TOOLS: &[(&str, &str)] = &[("mkfs.ext4", "e2fsprogs"), ("mkfs.xfs", "xfsprogs")];

/// Installs the missing [`HOST_TOOLS`] (as root, with apt-get). Returns what is still missing,
/// for the caller to warn about (not root, no apt-get).
pub fn ensure_host_tools(progress: &Progress) -> Result<Vec<&'static str>> {
    let missing: Vec<&str> = HOST_TOOLS
        .iter()
        .filter(|(tool, _)| find_in_path(tool).is_none())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() || !is_root() || find_in_path("apt-get").is_none() {
        return Ok(missing);
    }
    let list = missing.join(" ");
    progress.step(
        &format!("installing {list} (mkfs for the disks and the scratch)"),
        || {
            let install = |cmd: &mut Command| run(cmd.env("DEBIAN_FRONTEND", "noninteractive"));
            let args = ["install", "-y", "-q", "--no-install-recommends"];
            install(Command::new("apt-get").args(args).args(&missing)).or_else(|_| {
                install(Command::new("apt-get").args(["update", "-q"]))?;
                install(Command::new("apt-get").args(args).args(&missing))
            })
        },
    )?;
    Ok(HOST_TOOLS
        .iter()
        .filter(|(tool, _)| find_in_path(tool).is_none())
        .map(|(_, package)| *package)
        .collect())
}

/// The candidate version of `package` (`apt-cache policy`), updating the lists once if apt
/// does not know the package and we are root.
pub fn candidate_version(package: &str, progress: &Progress) -> Result<String> {
    let lookup = || -> Result<Option<String>> {
        let out = run(Command::new("apt-cache").args(["policy", package]))?;
        Ok(out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .map(|v| v.trim().to_string())
            .filter(|v| v != "(none)" && !v.is_empty()))
    };
    if let Some(version) = lookup()? {
        return Ok(version);
    }
    if is_root() {
        progress.step("apt-get update", || {
            run(Command::new("apt-get").args(["update", "-q"]))
        })?;
        if let Some(version) = lookup()? {
            return Ok(version);
        }
    }
    bail!("apt knows no installable version of {package} (run `apt-get update` as root)")
}

/// The versioned kernel package a meta package (`linux-image-cloud-amd64`) depends on.
pub fn kernel_package(meta: &str, progress: &Progress) -> Result<String> {
    candidate_version(meta, progress)?;
    let out = run(Command::new("apt-cache").args(["depends", meta]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|dep| dep.starts_with("linux-image-"))
        .map(str::to_string)
        .with_context(|| format!("apt-cache depends {meta} names no linux-image package"))
}

/// Downloads `package` at `version` into `debs` (once) and returns the .deb.
pub fn download_deb(
    package: &str,
    version: &str,
    debs: &Path,
    progress: &Progress,
) -> Result<PathBuf> {
    std::fs::create_dir_all(debs)?;
    // apt names files PACKAGE_VERSION_ARCH.deb with the epoch colon escaped as %3a.
    let prefix = format!("{package}_{}_", version.replace(':', "%3a"));
    let find = || -> Result<Option<PathBuf>> {
        for entry in std::fs::read_dir(debs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".deb") {
                return Ok(Some(entry.path()));
            }
        }
        Ok(None)
    };
    if let Some(deb) = find()? {
        return Ok(deb);
    }
    let spec = format!("{package}={version}");
    progress.step(&format!("apt-get download {spec}"), || {
        run(Command::new("apt-get")
            .args(["download", "-q", &spec])
            .current_dir(debs))
    })?;
    find()?.with_context(|| {
        format!(
            "apt-get download {spec} left no {prefix}*.deb in {}",
            debs.display()
        )
    })
}

/// Extracts `deb` into `dest` (once; an interrupted extraction is redone).
pub fn extract_deb(deb: &Path, dest: &Path, progress: &Progress) -> Result<()> {
    let done_marker = dest.join(".powercut-extracted");
    if done_marker.exists() {
        return Ok(());
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| format!("clearing {}", dest.display()))?;
    }
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let name = deb
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    progress.step(&format!("dpkg -x {name}"), || {
        run(Command::new("dpkg").arg("-x").arg(deb).arg(dest))
    })?;
    std::fs::write(&done_marker, b"")?;
    Ok(())
}

/// The packages `packages` need to run, themselves included: `apt-cache depends --recurse`
/// without recommends, suggests or pre-dependencies, virtual names skipped; each with its
/// candidate version (`apt-cache show`), sorted by name.
pub fn package_closure(packages: &[String]) -> Result<Vec<(String, String)>> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    let out = run(Command::new("apt-cache")
        .args([
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            "--no-pre-depends",
        ])
        .args(packages))?;
    let names = closure_names(&out);
    let shown = run(Command::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(&names))?;
    let versions = shown_versions(&shown);
    names
        .into_iter()
        .map(|name| {
            let version = versions.get(&name).cloned().with_context(|| {
                format!("apt-cache show gives no version of {name} (run `apt-get update`)")
            })?;
            Ok((name, version))
        })
        .collect()
}

/// The package names of `apt-cache depends --recurse` output: its unindented lines, virtual
/// packages (`<name>`) left out, sorted and deduplicated.
pub fn closure_names(depends: &str) -> Vec<String> {
    let names: BTreeSet<String> = depends
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<') && !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    names.into_iter().collect()
}

/// Package -> version of `apt-cache show` stanzas.
pub fn shown_versions(show: &str) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let mut package = None;
    for line in show.lines() {
        if let Some(name) = line.strip_prefix("Package:") {
            package = Some(name.trim().to_string());
        } else if let Some(version) = line.strip_prefix("Version:") {
            if let Some(name) = package.take() {
                versions
                    .entry(name)
                    .or_insert_with(|| version.trim().to_string());
            }
        }
    }
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_and_versions_parse() {
        let depends = "sqlite3\n  Depends: libc6\n  Depends: <libz>\nlibc6\n  Depends: libgcc-s1\n<libz>\nlibgcc-s1\nlibc6\n";
        assert_eq!(closure_names(depends), ["libc6", "libgcc-s1", "sqlite3"]);
        let show = "Package: sqlite3\nVersion: 3.40.1-2\nDepends: libc6\n\nPackage: libc6\nSource: glibc\nVersion: 2.36-9\n";
        let v = shown_versions(show);
        assert_eq!(v["sqlite3"], "3.40.1-2");
        assert_eq!(v["libc6"], "2.36-9");
    }

    #[test]
    fn backports_stanza_copies_the_main_entry() {
        let sources = "Types: deb\n# http://snapshot\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let stanza = backports_stanza(sources, "bookworm").unwrap();
        assert!(stanza.contains("Suites: bookworm-backports\n"));
        assert!(stanza.contains("URIs: http://deb.debian.org/debian\n"));
        assert!(stanza.contains("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"));
        assert!(!stanza.contains("security"));
        assert!(backports_stanza(sources, "trixie").is_none());
    }
}
