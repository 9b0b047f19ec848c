//! Progress on stderr: lines with timings for the steps of a VM run, and [`Meter`] for the long
//! phases of a check (a bar on a terminal, a plain line every few seconds otherwise).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

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

/// Seconds between two plain progress lines when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// Progress of one long phase (coverage, states, a shrink's tries): on a terminal a bar, otherwise
/// (CI logs, nightly jobs) a plain line every [`LINE_EVERY`], e.g.
/// `coverage: 812/2020 states, 53.0 states/s, ETA 23s, 0 violations`, and one when it ends.
pub struct Meter {
    what: String,
    unit: &'static str,
    start: Instant,
    out: Output,
    /// The last figures shown: (done, total, note).
    last: (u64, u64, String),
}

enum Output {
    Bar(ProgressBar),
    Lines {
        out: Box<dyn Write + Send>,
        every: Duration,
        last_line: Instant,
    },
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("what", &self.what)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Meter {
    /// A meter on stderr: a bar on a terminal, lines every [`LINE_EVERY`] otherwise.
    pub fn stderr(what: &str, unit: &'static str) -> Meter {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} {msg} (eta {eta})",
                )
                .expect("static progress template")
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            Meter::with(what, unit, Output::Bar(bar))
        } else {
            Meter::lines(what, unit, Box::new(std::io::stderr()), LINE_EVERY)
        }
    }

    /// A meter writing plain lines to `out`, at most one per `every` (and one at the end).
    pub fn lines(
        what: &str,
        unit: &'static str,
        out: Box<dyn Write + Send>,
        every: Duration,
    ) -> Meter {
        let now = Instant::now();
        Meter::with(
            what,
            unit,
            Output::Lines {
                out,
                every,
                last_line: now,
            },
        )
    }

    fn with(what: &str, unit: &'static str, out: Output) -> Meter {
        Meter {
            what: what.to_string(),
            unit,
            start: Instant::now(),
            out,
            last: (0, 0, String::new()),
        }
    }

    /// `done` of `total` units so far; `note` (e.g. "2 violations") follows the figures.
    pub fn update(&mut self, done: u64, total: u64, note: &str) {
        self.last = (done, total, note.to_string());
        match &mut self.out {
            Output::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(note.to_string());
            }
            Output::Lines {
                out,
                every,
                last_line,
            } => {
                if last_line.elapsed() >= *every {
                    *last_line = Instant::now();
                    let line = progress_line(
                        &self.what,
                        self.unit,
                        done,
                        total,
                        self.start.elapsed(),
                        note,
                    );
                    let _ = writeln!(out, "{line}");
                }
            }
        }
    }

    /// The phase is over: the bar goes, or a last line says where it ended and how long it took.
    pub fn finish(&mut self) {
        let (done, total, note) = &self.last;
        match &mut self.out {
            Output::Bar(bar) => bar.finish_and_clear(),
            Output::Lines { out, .. } => {
                let elapsed = self.start.elapsed();
                let note = if note.is_empty() {
                    String::new()
                } else {
                    format!(", {note}")
                };
                let _ = writeln!(
                    out,
                    "{}: {done}/{total} {} in {:.1}s{note}",
                    self.what,
                    self.unit,
                    elapsed.as_secs_f64()
                );
            }
        }
    }
}

/// `coverage: 812/2020 states, 53.0 states/s, ETA 23s, 0 violations`.
pub fn progress_line(
    what: &str,
    unit: &str,
    done: u64,
    total: u64,
    elapsed: Duration,
    note: &str,
) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta = if rate > 0.0 && total >= done {
        format!("ETA {:.0}s", (total - done) as f64 / rate)
    } else {
        "ETA ?".to_string()
    };
    let note = if note.is_empty() {
        String::new()
    } else {
        format!(", {note}")
    };
    format!("{what}: {done}/{total} {unit}, {rate:.1} {unit}/s, {eta}{note}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose text the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn lines_name_the_phase_rate_and_eta() {
        let line = progress_line("coverage", "states", 812, 2020, Duration::from_secs(16), "");
        assert_eq!(line, "coverage: 812/2020 states, 50.8 states/s, ETA 24s");
        let none = progress_line("shrink", "tries", 0, 9, Duration::ZERO, "1 violation");
        assert_eq!(none, "shrink: 0/9 tries, 0.0 tries/s, ETA ?, 1 violation");
    }

    #[test]
    fn without_a_terminal_lines_are_spaced_and_the_end_is_said() {
        let out = Shared::default();
        let mut m = Meter::lines("states", "states", Box::new(out.clone()), Duration::ZERO);
        for done in 1..=3 {
            m.update(done, 3, "0 violations");
        }
        m.finish();
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("states: 1/3 states, "), "{text}");
        assert!(lines[2].contains(", ETA 0s, 0 violations"), "{text}");
        assert!(lines[3].starts_with("states: 3/3 states in "), "{text}");
        // A long interval: only the closing line.
        let quiet = Shared::default();
        let mut m = Meter::lines("coverage", "states", Box::new(quiet.clone()), LINE_EVERY);
        for done in 1..=100 {
            m.update(done, 100, "");
        }
        m.finish();
        assert_eq!(quiet.text().lines().count(), 1, "{}", quiet.text());
    }
}
