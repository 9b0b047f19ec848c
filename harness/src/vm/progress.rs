//! Progress lines with timings, on stderr.

use std::time::Instant;

/// Prints `[  12.3s] message` lines.
#[derive(Debug)]
pub struct Progress {
    start: Instant,
}

impl Progress {
    /// Lines on stderr.
    pub fn stderr() -> Self {
        Progress {
            start: Instant::now(),
        }
    }

    /// One progress line.
    pub fn line(&self, message: impl std::fmt::Display) {
        eprintln!("[{:7.1}s] {message}", self.start.elapsed().as_secs_f64());
    }

    /// Runs one step, printing its start and its duration.
    pub fn step<T, E>(&self, what: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.line(format_args!("{what} ..."));
        let started = Instant::now();
        let result = f();
        let outcome = if result.is_ok() { "done" } else { "FAILED" };
        self.line(format_args!(
            "{what}: {outcome} in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        result
    }
}
