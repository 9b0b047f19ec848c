//! Ctrl-C, SIGTERM, SIGHUP and `--timeout` during a dm recording: the run stops at its next ack
//! and the stack is torn down in order, instead of the process dying with tables, a mount and
//! loop devices left behind.
//!
//! The signals are blocked in this thread before the executor starts its threads (they inherit
//! the mask), and a watcher thread takes them with `sigwait`. A signal that arrives after the
//! recording (while `run` checks states, say) ends the process as it would have.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Exit status of a process ended by a signal after the recording: 128 + the signal.
const SIGNAL_EXIT_BASE: i32 = 128;

/// Stops the recording on a signal or at the deadline.
pub struct StopOnSignal {
    done: Option<mpsc::Sender<()>>,
}

/// Set while a recording runs; the watcher stops the recording then, and ends the process
/// otherwise.
static RECORDING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static WATCHER: std::sync::Once = std::sync::Once::new();
static REASON: Mutex<Option<String>> = Mutex::new(None);

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

fn watch() {
    loop {
        let Ok(signal) = signals().wait() else {
            continue;
        };
        if RECORDING.load(Ordering::SeqCst) {
            *REASON.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("interrupted by {signal}"));
            STOP.store(true, Ordering::SeqCst);
            eprintln!("{signal}: stopping at the next ack and tearing the dm stack down");
        } else {
            std::process::exit(SIGNAL_EXIT_BASE + signal as i32);
        }
    }
}

impl StopOnSignal {
    /// Blocks the signals in this thread, starts the watcher (once a process) and a timer.
    pub fn install(timeout: Duration) -> Result<StopOnSignal> {
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals()), None)
            .context("blocking SIGINT/SIGTERM/SIGHUP for the teardown")?;
        WATCHER.call_once(|| {
            std::thread::spawn(watch);
        });
        STOP.store(false, Ordering::SeqCst);
        *REASON.lock().unwrap_or_else(|p| p.into_inner()) = None;
        RECORDING.store(true, Ordering::SeqCst);
        let (done, finished) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if finished.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
                *REASON.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                    "timed out after {}s (--timeout)",
                    timeout.as_secs()
                ));
                STOP.store(true, Ordering::SeqCst);
            }
        });
        Ok(StopOnSignal { done: Some(done) })
    }

    /// The flag the stack's sink checks at every ack.
    pub fn flag(&self) -> &'static AtomicBool {
        &STOP
    }

    /// Ends the watch; returns why the recording was stopped, if it was.
    pub fn finish(mut self) -> Option<String> {
        RECORDING.store(false, Ordering::SeqCst);
        drop(self.done.take());
        let reason = REASON.lock().unwrap_or_else(|p| p.into_inner()).take();
        reason.filter(|_| STOP.load(Ordering::SeqCst))
    }
}
