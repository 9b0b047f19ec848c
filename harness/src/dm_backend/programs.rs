//! A program's workload on the dm backend runs on this host, not in a guest: what the guest
//! image would carry must be here. `guest_packages:` must be installed (checked with
//! `dpkg-query` where there is one), and `guest_files:` are put where the workload's `exec:`
//! steps name them, [`GUEST_FILES_DIR`]`/<name>`, a directory of powercut's own.

use std::path::Path;

use anyhow::{bail, Context, Result};
use powercut_workloads::spec::{Workload, GUEST_FILES_DIR};

use crate::vm::guest_packages;
use crate::vm::progress::Progress;

/// Makes this host ready for the programs of `workload` (nothing for the engine's workloads).
pub fn prepare(workload: &Workload, progress: &Progress) -> Result<()> {
    if !workload.is_program() {
        return Ok(());
    }
    check_packages(&workload.guest_packages, progress)?;
    install_files(&workload.guest_files, progress)
}

/// Every package of `guest_packages:` installed on this host.
fn check_packages(packages: &[String], progress: &Progress) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let Ok(output) = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Status}\\n"])
        .args(packages)
        .output()
    else {
        progress.line(format!(
            "note: no dpkg-query here: guest_packages ({}) are taken to be installed on this host",
            packages.join(", ")
        ));
        return Ok(());
    };
    let missing = missing_packages(packages, &String::from_utf8_lossy(&output.stdout));
    if !missing.is_empty() {
        bail!(
            "guest_packages: {} not installed on this host, where the dm backend runs the \
             program: apt-get install {}",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

/// The packages that `dpkg-query -W -f '${Package} ${db:Status-Status}\n'` does not list as
/// `installed` (an unknown package is not listed at all).
fn missing_packages(packages: &[String], listing: &str) -> Vec<String> {
    let installed: Vec<&str> = listing
        .lines()
        .filter_map(|line| {
            let (name, status) = line.split_once(' ')?;
            (status.trim() == "installed").then_some(name)
        })
        .collect();
    packages
        .iter()
        .filter(|p| !installed.contains(&p.as_str()))
        .cloned()
        .collect()
}

/// Copies each of `guest_files:` to [`GUEST_FILES_DIR`] (with the mode the guest would give
/// it), over whatever an earlier run left there.
fn install_files(paths: &[String], progress: &Progress) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let dir = Path::new(GUEST_FILES_DIR);
    let files = guest_packages::read_files(paths)
        .context("guest_files (the dm backend runs the program on this host)")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in &files {
        install_one(dir, file)?;
    }
    progress.line(format!(
        "guest_files: {} in {GUEST_FILES_DIR} (the dm backend runs the program on this host)",
        files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// Writes one file into `dir` through a temporary name, so a program never sees half of it.
fn install_one(dir: &Path, file: &guest_packages::GuestFile) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target = dir.join(&file.name);
    let staging = dir.join(format!(".{}.partial-{}", file.name, std::process::id()));
    std::fs::write(&staging, &file.bytes)
        .with_context(|| format!("writing {}", staging.display()))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(file.mode))
        .with_context(|| format!("setting the mode of {}", staging.display()))?;
    std::fs::rename(&staging, &target).with_context(|| format!("installing {}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_not_listed_as_installed_are_missing() {
        let wanted: Vec<String> = ["sqlite3", "libfoo", "gone"].map(String::from).to_vec();
        let listing = "sqlite3 installed\nlibfoo config-files\n";
        assert_eq!(missing_packages(&wanted, listing), ["libfoo", "gone"]);
        assert!(missing_packages(&wanted[..1], listing).is_empty());
    }

    #[test]
    fn a_file_is_installed_whole_with_its_mode_over_an_older_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.sh"), b"old").unwrap();
        let file = guest_packages::GuestFile {
            name: "run.sh".into(),
            mode: 0o755,
            bytes: b"#!/bin/sh\necho new\n".to_vec(),
        };
        install_one(dir.path(), &file).unwrap();
        let target = dir.path().join("run.sh");
        assert_eq!(std::fs::read(&target).unwrap(), file.bytes);
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no staging file left");
    }
}
