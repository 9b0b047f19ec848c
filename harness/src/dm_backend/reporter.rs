//! The dm backend's [`Reporter`]: what the agent sends over serial goes to `console.log` as the
//! same protocol lines, acks to `ledger.jsonl` as the qemu backend writes them.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use powercut_workloads::ack::Ack;
use powercut_workloads::executor::RunFinding;
use powercut_workloads::protocol::GuestMessage;
use powercut_workloads::stack::Reporter;

use crate::record::LedgerEntry;
use crate::vm::progress::Progress;

/// Gap between two progress lines on the terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What the run reported.
#[derive(Debug, Default)]
pub struct Gathered {
    pub ledger: Vec<LedgerEntry>,
    pub durable_acks: u64,
    pub findings: Vec<RunFinding>,
}

struct State {
    console: File,
    ledger_file: File,
    gathered: Gathered,
    last_progress: Instant,
    error: Option<std::io::Error>,
}

/// Writes the recording's `console.log` and `ledger.jsonl` as messages arrive.
pub struct Recorder<'a> {
    state: Mutex<State>,
    started: Instant,
    progress: &'a Progress,
}

impl<'a> Recorder<'a> {
    /// Creates `console.log` and `ledger.jsonl` in `out`.
    pub fn create(out: &Path, progress: &'a Progress) -> Result<Self> {
        let create = |name: &str| {
            let path = out.join(name);
            File::create(&path).with_context(|| format!("creating {}", path.display()))
        };
        Ok(Recorder {
            state: Mutex::new(State {
                console: create("console.log")?,
                ledger_file: create("ledger.jsonl")?,
                gathered: Gathered::default(),
                last_progress: Instant::now(),
                error: None,
            }),
            started: Instant::now(),
            progress,
        })
    }

    /// What was gathered; an error writing the files is reported here.
    pub fn finish(self) -> Result<Gathered> {
        let mut state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = state.error.take() {
            return Err(e).context("writing console.log or ledger.jsonl");
        }
        state.ledger_file.flush()?;
        Ok(state.gathered)
    }

    fn take(&self, state: &mut State, message: &GuestMessage) -> std::io::Result<()> {
        writeln!(state.console, "{}", message.to_line())?;
        match message {
            GuestMessage::Ack { index, label, ack } => {
                let entry = LedgerEntry {
                    index: *index,
                    label: label.clone(),
                    ack: ack.clone(),
                    host_s: self.started.elapsed().as_secs_f64(),
                };
                let line = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
                writeln!(state.ledger_file, "{line}")?;
                if !matches!(ack, Ack::Start { .. } | Ack::End { .. }) {
                    state.gathered.durable_acks += 1;
                }
                state.gathered.ledger.push(entry);
            }
            GuestMessage::Progress { what, .. }
                if state.last_progress.elapsed() > PROGRESS_EVERY =>
            {
                self.progress.line(format!("dm: {what}"));
                state.last_progress = Instant::now();
            }
            GuestMessage::RunFinding(finding) => {
                self.progress.line(format!(
                    "{}: expected {}; found {}",
                    finding.invariant, finding.expected, finding.found
                ));
                state.gathered.findings.push(finding.clone());
            }
            _ => {}
        }
        Ok(())
    }
}

impl Reporter for Recorder<'_> {
    fn send(&self, message: &GuestMessage) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.take(&mut state, message) {
            state.error.get_or_insert(e);
        }
    }
}
