//! Rules of the whole workload: the steps checked in order (each alone and the files through
//! them), disk and log sizes, counts of steps and acks, the run after a crash, record sizes
//! against the engine's limit, fault sequences, disk space and the power cut.

use super::diagnostics::{SpecDiagnostic, SpecError};
use super::file_tree::FileTree;
use super::limits::{
    GUEST_WRITE_BLOCK_BYTES, MAX_DISK_MIB, MAX_LOG_MIB, MAX_STEPS, MAX_TOTAL_ACKS, MIB,
    MIN_EXT4_DISK_MIB, MIN_XFS_DISK_MIB, RECORD_OVERHEAD_BYTES, USABLE_DISK_PERCENT,
};
use super::program::{self, ExecUser};
use super::step_checks::name_problem;
use super::{FileOp, Filesystem, PowerCut, Step, Workload};

/// A rule broken: the field path and what is wrong.
type Broken = (String, String);

impl Workload {
    /// Checks a workload built or changed in code (for instance a seed set by the CLI) with
    /// every rule a parsed file obeys.
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |(field, message): Broken| {
            SpecError::Invalid(SpecDiagnostic {
                source_name: format!("workload {}", self.name),
                line: None,
                column: None,
                field,
                message,
            })
        };
        if let Some(why) = name_problem(&self.name) {
            return Err(invalid(("name".into(), why)));
        }
        check_steps("steps", &self.steps).map_err(invalid)?;
        if let Some(after_crash) = &self.after_crash {
            // The run after the crash starts from whatever the first run left: it may only touch
            // files it creates itself.
            check_steps("after_crash", after_crash).map_err(invalid)?;
        }
        if let Some(PowerCut::AtAck(0)) = self.power_cut {
            return Err(invalid((
                "power_cut.at_ack".into(),
                "must be at least 1".into(),
            )));
        }
        self.check_whole().map_err(invalid)
    }

    /// Checks that need the whole workload; errors carry the field path only.
    pub(super) fn check_whole(&self) -> Result<(), Broken> {
        self.check_disks()?;
        self.check_program()?;
        self.check_step_counts()?;
        let after_crash = self.after_crash_steps();
        self.check_after_crash(&after_crash)?;
        self.check_groups_in_flight()?;
        self.check_record_sizes(&after_crash)?;
        self.check_faults(&after_crash)?;
        self.check_disk_space(&after_crash)?;
        self.check_power_cut()
    }

    /// The data disk within what the file system accepts, the log disk at least as large.
    fn check_disks(&self) -> Result<(), Broken> {
        let min_disk = match self.filesystem {
            Filesystem::Ext4 => MIN_EXT4_DISK_MIB,
            Filesystem::Xfs => MIN_XFS_DISK_MIB,
        };
        if self.disk_mib < min_disk || self.disk_mib > MAX_DISK_MIB {
            let why = match self.filesystem {
                Filesystem::Xfs => " (mkfs.xfs refuses smaller file systems)",
                Filesystem::Ext4 => "",
            };
            return Err((
                "disk_mib".into(),
                format!(
                    "{} MiB is outside {min_disk}..={MAX_DISK_MIB} MiB for {}{why}",
                    self.disk_mib,
                    self.filesystem.name()
                ),
            ));
        }
        if self.log_mib < self.disk_mib || self.log_mib > MAX_LOG_MIB {
            return Err((
                "log_mib".into(),
                format!(
                    "{} MiB is outside {}..={MAX_LOG_MIB} MiB: the log disk holds every write \
                     to the data disk, mkfs included, so it is at least as large",
                    self.log_mib, self.disk_mib
                ),
            ));
        }
        Ok(())
    }

    /// At least one step, at most [`MAX_STEPS`] steps and [`MAX_TOTAL_ACKS`] acks.
    fn check_step_counts(&self) -> Result<(), Broken> {
        if self.steps.is_empty() {
            return Err(("steps".into(), "a workload needs at least one step".into()));
        }
        if self.steps.len() > MAX_STEPS {
            return Err((
                "steps".into(),
                format!(
                    "{} steps, more than the limit of {MAX_STEPS}",
                    self.steps.len()
                ),
            ));
        }
        let acks = self.total_acks_estimate();
        if acks > MAX_TOTAL_ACKS {
            return Err((
                "steps".into(),
                format!("the run would emit {acks} acks, more than the limit of {MAX_TOTAL_ACKS}"),
            ));
        }
        Ok(())
    }

    /// `after_crash` only with a power cut, with 1 to [`MAX_STEPS`] steps; the run after the
    /// crash (given or default) within [`MAX_TOTAL_ACKS`].
    fn check_after_crash(&self, after_crash: &[Step]) -> Result<(), Broken> {
        if self.after_crash.is_some() && self.power_cut.is_none() {
            return Err((
                "after_crash".into(),
                "after_crash runs after a power cut: add `power_cut:` or leave after_crash out"
                    .into(),
            ));
        }
        if let Some(given) = &self.after_crash {
            if given.is_empty() || given.len() > MAX_STEPS {
                return Err((
                    "after_crash".into(),
                    format!(
                        "{} steps: give 1 to {MAX_STEPS} steps (or leave after_crash out for the \
                         default)",
                        given.len()
                    ),
                ));
            }
        }
        let after_acks: u64 = 2 + after_crash.iter().map(Step::acks).sum::<u64>();
        if after_acks > MAX_TOTAL_ACKS {
            return Err((
                "after_crash".into(),
                format!(
                    "the run after the crash would emit {after_acks} acks, more than the limit \
                     of {MAX_TOTAL_ACKS}"
                ),
            ));
        }
        Ok(())
    }

    /// `writer.groups_in_flight` within what the engine writes at a time.
    fn check_groups_in_flight(&self) -> Result<(), Broken> {
        let most = powercut_writer::MAX_GROUPS_IN_FLIGHT as u64;
        if let Some(n) = self
            .writer
            .groups_in_flight
            .filter(|n| !(1..=most).contains(n))
        {
            return Err((
                "writer.groups_in_flight".into(),
                format!("{n} groups in flight: the engine writes 1 to {most} at a time"),
            ));
        }
        Ok(())
    }

    /// Every record of both runs within the engine's record limit with these writer options.
    fn check_record_sizes(&self, after_crash: &[Step]) -> Result<(), Broken> {
        let segment_bytes = self.segment_bytes();
        // The engine's own limit, stated once (`JournalOptions::max_record_payload_bytes`).
        let options = self.journal_options();
        let record_limit = options
            .max_record_payload_bytes(GUEST_WRITE_BLOCK_BYTES)
            .map_err(|why| ("writer.max_staging_bytes".to_string(), why))?;
        let listed = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("steps[{i}]"), s))
            .chain(after_crash.iter().enumerate().map(|(i, s)| {
                let field = if self.after_crash.is_some() {
                    format!("after_crash[{i}]")
                } else {
                    // The default steps have no line of their own.
                    "after_crash".to_string()
                };
                (field, s)
            }));
        for (field, step) in listed {
            let Some(size) = step.size_range() else {
                continue;
            };
            if size.max_bytes > record_limit as u64 {
                let field = if field == "after_crash" {
                    field
                } else {
                    format!("{field}.{}.size", step.kind())
                };
                return Err((
                    field,
                    format!(
                        "a record of {} bytes exceeds the engine's limit of {record_limit} \
                         bytes with these writer options (segments of {segment_bytes} \
                         bytes, staging buffers of {} bytes); raise writer.segment_bytes \
                         or writer.max_staging_bytes",
                        size.max_bytes,
                        options.staging_buffer_bytes(GUEST_WRITE_BLOCK_BYTES)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Disk space: every segment the run may touch (records, plus a fresh segment per
    /// rotation and reopen, plus one prepared ahead) and every file created. Recycling is
    /// not counted on: it only reuses segments the engine has retired.
    /// The run after a crash appends to the same journal and file tree.
    fn check_disk_space(&self, after_crash: &[Step]) -> Result<(), Broken> {
        let segment_bytes = self.segment_bytes();
        let both_runs = || self.steps.iter().chain(after_crash);
        let record_bytes: u64 = both_runs()
            .map(|s| s.max_record_bytes() + s.records() * RECORD_OVERHEAD_BYTES)
            .sum();
        let segment_switches = both_runs()
            .filter(|s| matches!(s, Step::Rotate | Step::Reopen))
            .count() as u64;
        // The open after the crash continues in the recovered segment: no switch of its own.
        let segments = record_bytes.div_ceil(segment_bytes).max(1) + segment_switches + 1;
        let file_bytes: u64 = both_runs()
            .map(|s| match s {
                Step::File(FileOp::Create { size_bytes, .. }) => size_bytes.next_multiple_of(4096),
                _ => 0,
            })
            .sum();
        let needed = segments
            .saturating_mul(segment_bytes)
            .saturating_add(file_bytes);
        let usable = self.disk_mib * MIB * USABLE_DISK_PERCENT / 100;
        if needed > usable {
            return Err((
                "disk_mib".into(),
                format!(
                    "the run may need {} MiB ({segments} segments of {segment_bytes} bytes and \
                     {file_bytes} bytes of files) but only {} MiB of the {} MiB disk are usable: \
                     raise disk_mib or use fewer records or smaller segments",
                    needed.div_ceil(MIB),
                    usable / MIB,
                    self.disk_mib
                ),
            ));
        }
        Ok(())
    }

    /// The power cut falls after an ack the run emits.
    fn check_power_cut(&self) -> Result<(), Broken> {
        match self.power_cut {
            Some(PowerCut::AtAck(n)) if n > self.durable_acks() && !self.is_program() => Err((
                "power_cut.at_ack".into(),
                format!(
                    "ack {n} never happens: the run has {} durability acks",
                    self.durable_acks()
                ),
            )),
            Some(PowerCut::Random) if self.durable_acks() == 0 && !self.is_program() => Err((
                "power_cut.random".into(),
                "the run has no durability ack to cut the power after".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Fault steps in a sequence that the agent can carry out: one fault at a time, cleared
    /// before the end, no reopen or ingest while armed (their recovery would read failing
    /// sectors), none in a run with a power cut (the crash image would hold the fault's
    /// half-finished state with no way to tell which writes failed).
    fn check_faults(&self, after_crash: &[Step]) -> Result<(), Broken> {
        if let Some(i) = after_crash
            .iter()
            .position(|s| matches!(s, Step::Fault(_) | Step::ClearFault))
        {
            return Err((
                format!("after_crash[{i}]"),
                "faults are not injected in the run after a power cut".into(),
            ));
        }
        if self.power_cut.is_some() && self.has_faults() {
            return Err((
                "power_cut".into(),
                "a workload with fault steps cannot also cut the power".into(),
            ));
        }
        let mut faults = FaultSequence::default();
        for (i, step) in self.steps.iter().enumerate() {
            faults
                .step(step)
                .map_err(|why| (format!("steps[{i}]"), why))?;
        }
        if faults.armed.is_some() {
            return Err((
                "steps".into(),
                "the last fault is never cleared: add `clear_fault: {}` or `clear_after_steps`"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Workload {
    /// A program's workload: `exec:` steps with faults around them and a checker, nothing of
    /// the engine, a power cut only at a given ack and with `exec:` steps after it; packages, a
    /// checker and root only with `exec:` steps.
    fn check_program(&self) -> Result<(), Broken> {
        if let Some(why) = program::packages_problem(&self.guest_packages) {
            return Err(("guest_packages".into(), why));
        }
        program::files_problem(&self.guest_files)?;
        if !self.is_program() {
            if let Some(i) = self
                .after_crash
                .iter()
                .flatten()
                .position(|s| matches!(s, Step::Exec(_)))
            {
                return Err((
                    format!("after_crash[{i}].exec"),
                    "`exec:` steps after a power cut run a program again: the workload's own \
                     `steps:` must run it first (a workload runs the engine or programs)"
                        .into(),
                ));
            }
            let stray = [
                ("guest_packages", !self.guest_packages.is_empty()),
                ("guest_files", !self.guest_files.is_empty()),
                ("checker", self.checker.is_some()),
                ("allow_root_exec", self.allow_root_exec),
            ];
            return match stray.iter().find(|(_, set)| *set) {
                Some((field, _)) => Err((
                    (*field).into(),
                    "only for workloads that run programs (`exec:` steps)".into(),
                )),
                None => Ok(()),
            };
        }
        let checker = self.checker.as_ref().ok_or_else(|| {
            (
                "checker".to_string(),
                "a workload with `exec:` steps needs a checker (`kv: { dump: [...] }` or                  `command: [...]`) to judge its crash states"
                    .to_string(),
            )
        })?;
        if let Some(why) = program::argv_problem(checker.argv()) {
            return Err(("checker".into(), why));
        }
        self.check_program_steps("steps", &self.steps, true)?;
        self.check_program_power_cut()
    }

    /// A program's steps: `exec` (as root only when allowed), and with `faults` also `fault`
    /// and `clear_fault`; nothing of the engine.
    fn check_program_steps(&self, list: &str, steps: &[Step], faults: bool) -> Result<(), Broken> {
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Exec(e) if e.user == ExecUser::Root && !self.allow_root_exec => {
                    return Err((
                        format!("{list}[{i}].exec.user"),
                        "`root` needs `allow_root_exec: true` here and `--allow-root-exec` on \
                         the command line: a program with raw device access can craft an image \
                         that attacks the host kernel mounting it (docs/programs.md)"
                            .into(),
                    ));
                }
                Step::Exec(_) => {}
                Step::Fault(_) | Step::ClearFault if faults => {}
                other => {
                    let allowed = if faults {
                        "only `exec`, `fault` and `clear_fault` steps"
                    } else {
                        "only `exec` steps (no faults after a power cut)"
                    };
                    return Err((
                        format!("{list}[{i}].{}", other.kind()),
                        format!(
                            "a workload with `exec:` steps runs programs, not the engine: \
                             {allowed}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A program's power cut: at a given ack (how many a program makes is known only when it
    /// runs), and what runs after the reboot given (`after_crash:` with `exec` steps: the
    /// engine's default continuation means nothing to a program).
    fn check_program_power_cut(&self) -> Result<(), Broken> {
        match (&self.power_cut, &self.after_crash) {
            (None, _) => Ok(()),
            (Some(PowerCut::Random), _) => Err((
                "power_cut.random".into(),
                "a program's acks are not known before it runs: give `at_ack: N`".into(),
            )),
            (Some(PowerCut::AtAck(_)), None) => Err((
                "after_crash".into(),
                "a program's power cut needs `after_crash:` with `exec:` steps that run the \
                 program again on the crash image (e.g. reopen the database and go on)"
                    .into(),
            )),
            (Some(PowerCut::AtAck(_)), Some(steps)) => {
                self.check_program_steps("after_crash", steps, false)
            }
        }
    }
}

/// Checks each step alone and the files through the steps; errors name `{list}[index]`.
fn check_steps(list: &str, steps: &[Step]) -> Result<(), Broken> {
    let mut tree = FileTree::default();
    for (index, step) in steps.iter().enumerate() {
        step.check().map_err(|(field, message)| {
            let field = if field.is_empty() {
                format!("{list}[{index}].{}", step.kind())
            } else {
                format!("{list}[{index}].{}.{field}", step.kind())
            };
            (field, message)
        })?;
        tree.apply(step)
            .map_err(|m| (format!("{list}[{index}]"), m))?;
    }
    Ok(())
}

/// The fault state through the steps of a run.
#[derive(Default)]
struct FaultSequence {
    /// Some(steps left before the automatic clear, if any) while a fault is armed.
    armed: Option<Option<u64>>,
    /// A fault may have poisoned the journal: only a reopen makes it usable again, and the
    /// ingest server's open would meet a refused close first.
    maybe_poisoned: bool,
}

impl FaultSequence {
    /// Takes one step, refusing it if the fault state rules it out.
    fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Fault(f) => {
                if self.armed.is_some() {
                    return Err(
                        "a fault is armed already: clear it (`clear_fault: {}`) first".into(),
                    );
                }
                self.armed = Some(f.clear_after_steps);
                self.maybe_poisoned = true;
                return Ok(());
            }
            Step::ClearFault if self.armed.is_none() => {
                return Err("no fault is armed at this step".into());
            }
            Step::ClearFault => {
                self.armed = None;
                return Ok(());
            }
            Step::Reopen | Step::Ingest(_) if self.armed.is_some() => {
                return Err(format!(
                    "`{}` while a fault is armed: recovery would read the failing sectors; \
                     clear the fault first",
                    step.kind()
                ));
            }
            Step::Ingest(_) if self.maybe_poisoned => {
                return Err("`ingest` after a fault: the journal may be poisoned; add \
                            `reopen: {}` after clearing the fault"
                    .into());
            }
            Step::Reopen => self.maybe_poisoned = false,
            _ => {}
        }
        if let Some(Some(left)) = self.armed {
            self.armed = if left <= 1 {
                None
            } else {
                Some(Some(left - 1))
            };
        }
        Ok(())
    }
}
