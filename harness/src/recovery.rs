//! How the oracles find and recover the guest's journal in a crash state: where the agent keeps
//! it, and which recovery (the engine's or a recovery mutant's) runs on it. Shared by the check
//! pipeline and the second-crash check, below both.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use powercut_oracles::check::ProgramCheck;
use powercut_oracles::invariants::{InvariantConfig, RecoveredJournal, TailInfo};
use powercut_oracles::mount::FsType;
use powercut_workloads::spec::{Filesystem, Workload};
use powercut_writer::Mutant;

/// The guest agent runs the workload in `pc/` of the data file system.
const GUEST_JOURNAL_DIR: &str = "pc/journal";
const GUEST_FILES_DIR: &str = "pc/files";

/// Where the guest agent keeps the journal and the files inside the data file system.
pub fn guest_invariant_config() -> InvariantConfig {
    InvariantConfig {
        journal_dir: PathBuf::from(GUEST_JOURNAL_DIR),
        files_dir: PathBuf::from(GUEST_FILES_DIR),
    }
}

/// The checker of a program's workload and where the agent keeps the program's data (`pc/` +
/// the executor's data directory); None for the engine's workloads.
pub fn guest_program_check(workload: &Workload) -> Option<ProgramCheck> {
    Some(ProgramCheck {
        checker: workload.checker.clone().filter(|_| workload.is_program())?,
        data_dir: Path::new(GUEST_JOURNAL_DIR)
            .with_file_name(powercut_workloads::executor::PROGRAM_DATA_DIR),
    })
}

/// The recovery mutant a workload selects, if any (other mutants recover like the engine).
pub fn recovery_mutant(workload: &Workload) -> Option<Mutant> {
    workload.writer.mutant.filter(|m| m.changes_recovery())
}

/// The recovery the oracles run on the states of `workload`'s logs: the engine's, or a
/// recovery mutant's. Fails when the mutant's recovery is not in this build of the harness
/// (without the check every state would fail to recover, which is not the mutant's bug).
pub fn recovery_for(
    workload: &Workload,
) -> Result<impl Fn(&Path) -> Result<RecoveredJournal, String> + Sync> {
    let mutant = checked_recovery_mutant(Some(workload))?;
    Ok(move |dir: &Path| writer_recovery_with(dir, mutant))
}

/// [`recovery_mutant`] of a workload (when known), if this build of the harness has it.
pub fn checked_recovery_mutant(workload: Option<&Workload>) -> Result<Option<Mutant>> {
    let Some(workload) = workload else {
        return Ok(None);
    };
    let mutant = recovery_mutant(workload);
    if let Some(m) = mutant {
        if !powercut_writer::MUTANTS_BUILT {
            bail!(
                "workload {} selects the recovery mutant {m}, but this powercut was built \
                 without it: build it with `cargo build -p powercut --features mutants`",
                workload.name
            );
        }
    }
    Ok(mutant)
}

/// The engine's recovery, or with `Some(mutant)` that mutant's, in the shape the oracles take.
pub fn writer_recovery_with(
    dir: &Path,
    mutant: Option<Mutant>,
) -> Result<RecoveredJournal, String> {
    let recovery = powercut_writer::recover_with(dir, mutant).map_err(|e| e.to_string())?;
    Ok(RecoveredJournal {
        records: recovery
            .records
            .into_iter()
            .map(|r| (r.lsn, r.payload))
            .collect(),
        truncated_tail: recovery.truncated_tail.map(|t| TailInfo {
            segment: t.segment,
            offset: t.offset,
            discarded_bytes: t.discarded_bytes,
        }),
    })
}

pub(crate) fn fs_type(fs: Filesystem) -> FsType {
    match fs {
        Filesystem::Ext4 => FsType::Ext4,
        Filesystem::Xfs => FsType::Xfs,
    }
}
