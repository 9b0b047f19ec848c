//! The [`AckSink`] of a recording stack: acks become MARKs, faults become table swaps.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::Stack;
use crate::ack::Ack;
use crate::executor::{AckSink, FaultAction, ProgressEvent, RunFinding};
use crate::guest::dm::{self, Target};
use crate::guest::fault::{self, SectorRange};
use crate::guest::serial::Console;
use crate::protocol::GuestMessage;
use crate::spec::{EioKind, FaultTarget};

/// Where the messages of a run go: the serial console in the guest, the recording directory on
/// a host. Called with the ack lock held, so acks arrive in mark order.
pub trait Reporter: Sync {
    /// Takes one message. A reporter that cannot write says nothing: the block log is the
    /// record.
    fn send(&self, message: &GuestMessage);
}

impl<W: Write + Send> Reporter for Console<W> {
    fn send(&self, message: &GuestMessage) {
        let _ = Console::send(self, message);
    }
}

/// What happens at the power-cut ack (`power_cut:` of a fresh run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// The host kills the VM when it reads the ack: wait until the log holds everything up to
    /// the mark, then carry on until killed.
    HostKills,
    /// Cut here: the fault layer becomes all `error`, so no later write or flush of the file
    /// system reaches the log, and the run stops; the recording then ends cleanly.
    Local,
}

/// Acks become MARKs the moment the executor calls, then messages to the [`Reporter`]. One
/// lock covers both so the reporter sees mark order.
pub struct StackSink<'a> {
    stack: &'a Stack<'a>,
    reporter: &'a dyn Reporter,
    acks: Mutex<u64>,
    /// The durable ack after which the power is cut.
    cut_after_durable_ack: Option<u64>,
    cut_mode: CutMode,
    /// Durable acks so far (start and end not counted), updated under the `acks` lock.
    durable_acks: AtomicU64,
    /// Set once a [`CutMode::Local`] cut happened.
    cut_done: AtomicBool,
    stop: Option<&'a AtomicBool>,
    /// Nanoseconds spent in the mark ioctl, and in the whole ack (mark plus report).
    mark_ns: AtomicU64,
    ack_ns: AtomicU64,
}

/// What the acks of a run cost, as [`StackSink::costs`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AckCosts {
    /// Acks marked.
    pub acks: u64,
    /// Mean time of the `DM_TARGET_MSG` mark ioctl, in microseconds.
    pub mark_us_mean: f64,
    /// Mean time of a whole ack (mark, then the report: a serial line or a ledger line).
    pub ack_us_mean: f64,
}

impl std::fmt::Debug for StackSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackSink")
            .field("acks", &self.count())
            .field("cut_after_durable_ack", &self.cut_after_durable_ack)
            .finish_non_exhaustive()
    }
}

/// The error an ack returns once the power is cut: it ends the executor.
const CUT_MESSAGE: &str = "the power was cut here";

impl<'a> StackSink<'a> {
    /// A sink over `stack`; `stop`, when set from outside, fails the next ack.
    pub fn new(
        stack: &'a Stack<'a>,
        reporter: &'a dyn Reporter,
        cut_after_durable_ack: Option<u64>,
        cut_mode: CutMode,
        stop: Option<&'a AtomicBool>,
    ) -> Self {
        StackSink {
            stack,
            reporter,
            acks: Mutex::new(0),
            cut_after_durable_ack,
            cut_mode,
            durable_acks: AtomicU64::new(0),
            cut_done: AtomicBool::new(false),
            stop,
            mark_ns: AtomicU64::new(0),
            ack_ns: AtomicU64::new(0),
        }
    }

    /// Acks marked so far.
    pub fn count(&self) -> u64 {
        *self.acks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the acks cost so far.
    pub fn costs(&self) -> AckCosts {
        let acks = self.count();
        let mean = |ns: &AtomicU64| ns.load(Ordering::Relaxed) as f64 / 1e3 / acks.max(1) as f64;
        AckCosts {
            acks,
            mark_us_mean: mean(&self.mark_ns),
            ack_us_mean: mean(&self.ack_ns),
        }
    }

    /// The durable ack the recording was cut after, once a local cut happened.
    pub fn cut_after_ack(&self) -> Option<u64> {
        if self.cut_done.load(Ordering::SeqCst) {
            self.cut_after_durable_ack
        } else {
            None
        }
    }

    /// At the power-cut ack: wait for the log (the host kills next) or cut it here.
    fn power_cut(&self) -> Result<(), String> {
        match self.cut_mode {
            CutMode::HostKills => {
                // The host kills the VM as soon as it reads this ack: the log up to this mark
                // must be on the log disk by then, or its last entries could lose their data.
                self.stack.wait_for_log_written().map_err(|e| e.to_string())
            }
            CutMode::Local => {
                let all = [SectorRange {
                    start: 0,
                    count: self.stack.size_sectors,
                }];
                let table = fault::error_table("", self.stack.size_sectors, &all);
                self.stack.swap_table(&table).map_err(|e| e.to_string())?;
                self.cut_done.store(true, Ordering::SeqCst);
                Err(CUT_MESSAGE.into())
            }
        }
    }

    /// The table and description of a fault action.
    fn fault_table(&self, action: &FaultAction) -> Result<(Vec<Target>, String), String> {
        let device = self.stack.log_path.to_string_lossy();
        let size = self.stack.size_sectors;
        Ok(match action {
            FaultAction::Arm { fault, .. } if fault.eio == EioKind::Flush => {
                let table = fault::flush_fault_table(&device, size)
                    .ok_or("the data disk is too small for a flush fault")?;
                (
                    table,
                    "fault armed: EIO on every flush of the data device".to_string(),
                )
            }
            FaultAction::Arm { fault, journal_dir } => {
                let ranges = match &fault.target {
                    FaultTarget::Journal => {
                        fault::dir_sectors(journal_dir).map_err(|e| e.to_string())?
                    }
                    FaultTarget::File(name) => {
                        fault::file_sectors(&journal_dir.join(name)).map_err(|e| e.to_string())?
                    }
                    &FaultTarget::Sectors([start, count]) => vec![SectorRange { start, count }],
                    FaultTarget::Device => {
                        return Err("`eio: writes` takes no `target: device`".into())
                    }
                };
                let table = fault::error_table(&device, size, &ranges);
                let errors = || table.iter().filter(|t| t.target_type == "error");
                let failing: u64 = errors().map(|t| t.length_sectors).sum();
                if failing == 0 {
                    return Err(format!(
                        "{} covers no sector of the data disk",
                        fault.target
                    ));
                }
                let what = format!(
                    "fault armed: EIO on {} ({failing} sectors in {} ranges)",
                    fault.target,
                    errors().count()
                );
                (table, what)
            }
            FaultAction::Clear => (dm::linear_table(&device, size), "fault cleared".to_string()),
        })
    }
}

impl AckSink for StackSink<'_> {
    fn ack(&self, ack: &Ack) -> Result<(), String> {
        if self.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Err("stopped (interrupted or timed out)".into());
        }
        if self.cut_done.load(Ordering::SeqCst) {
            return Err(CUT_MESSAGE.into());
        }
        let label = ack.to_label();
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        self.stack.mark(&label).map_err(|e| e.to_string())?;
        let marked = started.elapsed();
        *acks += 1;
        let mut cut_here = false;
        if !matches!(ack, Ack::Start { .. } | Ack::End { .. }) {
            let durable = self.durable_acks.fetch_add(1, Ordering::Relaxed) + 1;
            cut_here = Some(durable) == self.cut_after_durable_ack;
            if cut_here && self.cut_mode == CutMode::HostKills {
                self.power_cut()?;
            }
        }
        self.reporter.send(&GuestMessage::Ack {
            index: *acks,
            label,
            ack: ack.clone(),
        });
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.mark_ns.fetch_add(nanos(marked), Ordering::Relaxed);
        self.ack_ns
            .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
        if cut_here && self.cut_mode == CutMode::Local {
            // Reported first: the ack was given; then nothing more reaches the log.
            return self.power_cut();
        }
        Ok(())
    }

    fn fault(&self, action: &FaultAction) -> Result<(), String> {
        let (table, what) = self.fault_table(action)?;
        self.stack.swap_table(&table).map_err(|e| e.to_string())?;
        self.reporter.send(&GuestMessage::Progress {
            what,
            detail: serde_json::json!({
                "fault_table": table
                    .iter()
                    .map(|t| format!("{} {} {} {}", t.start_sector, t.length_sectors, t.target_type, t.params))
                    .collect::<Vec<_>>(),
            }),
        });
        Ok(())
    }

    fn finding(&self, finding: &RunFinding) {
        self.reporter
            .send(&GuestMessage::RunFinding(finding.clone()));
    }

    fn prior_violation(&self, violation: &RunFinding) {
        self.reporter
            .send(&GuestMessage::RunFinding(violation.clone()));
    }

    fn progress(&self, event: &ProgressEvent) {
        let state = if event.finished { "done" } else { "start" };
        self.reporter.send(&GuestMessage::Progress {
            what: format!(
                "step {}/{} {state}: {}",
                event.step_index + 1,
                event.steps_total,
                event.description
            ),
            detail: serde_json::json!({
                "step_index": event.step_index,
                "finished": event.finished,
                "acks_so_far": event.acks_so_far,
                "acks_total": event.acks_total,
            }),
        });
    }
}
