//! Where in a run something failed, and what.

use std::fmt;
use std::path::PathBuf;

use powercut_writer::server::{ClientError, ServerError};
use powercut_writer::JournalError;

use crate::spec::SpecError;

/// Where in a run something failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Creating the directories and opening the journal.
    Setup,
    /// A step of the workload.
    Step {
        /// The list the step is in: `steps`, or `after_crash` in the run after a power cut.
        list: &'static str,
        /// 0-based index.
        index: usize,
        /// Its key (`append`, `file`, ...).
        kind: &'static str,
    },
    /// Closing the journal at the end.
    Finish,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Setup => f.write_str("setup"),
            Phase::Step { list, index, kind } => write!(f, "{list}[{index}] ({kind})"),
            Phase::Finish => f.write_str("finish"),
        }
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The workload breaks a rule of the spec.
    #[error("invalid workload: {0}")]
    InvalidWorkload(#[from] SpecError),
    /// A file or directory operation failed.
    #[error("{phase}: {op} {}: {source}", path.display())]
    File {
        /// Where.
        phase: Phase,
        /// The operation (create, write, fsync, rename, ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The root holds a journal already: a run starts from nothing.
    #[error("{}: not empty; a run starts from an empty journal directory", path.display())]
    NotEmpty {
        /// The journal directory.
        path: PathBuf,
    },
    /// The engine returned an error.
    #[error("{phase}: journal {op}: {source}")]
    Journal {
        /// Where.
        phase: Phase,
        /// The call (open, append, commit, ...).
        op: &'static str,
        /// The engine's error.
        #[source]
        source: JournalError,
    },
    /// The ingest server could not start.
    #[error("{phase}: start the ingest server: {source}")]
    Server {
        /// Where.
        phase: Phase,
        /// The server's error.
        #[source]
        source: ServerError,
    },
    /// An ingest client failed.
    #[error("{phase}: ingest client {client}, record {sequence}: {source}")]
    Client {
        /// Where.
        phase: Phase,
        /// Writer id of the client.
        client: u32,
        /// Sequence number of the record it was sending.
        sequence: u64,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// The engine answered something its contract rules out (LSNs out of order, a commit
    /// that does not cover the appended records, a record larger than it accepts).
    #[error("{phase}: engine contract broken: {message}")]
    Contract {
        /// Where.
        phase: Phase,
        /// What was seen.
        message: String,
    },
    /// The sink could not arm or clear a fault.
    #[error("{phase}: fault injection: {message}")]
    Fault {
        /// Where.
        phase: Phase,
        /// The sink's error.
        message: String,
    },
    /// A program of an `exec:` step could not start, failed, or outlived its timeout.
    #[error("{phase}: program: {message}")]
    Program {
        /// Where.
        phase: Phase,
        /// What happened (with the end of the program's output).
        message: String,
    },
    /// A program of an `exec:` step ran to its end and reported failure (a non-zero status or
    /// a signal). After a power cut this is a finding: the program does not come back.
    #[error("{phase}: program: {message}")]
    ProgramFailed {
        /// Where.
        phase: Phase,
        /// The status (with the end of the program's output).
        message: String,
    },
    /// A program wrote a line that breaks the ack protocol.
    #[error("{phase}: {source}")]
    AckLine {
        /// Where.
        phase: Phase,
        /// The line and what is wrong with it.
        #[source]
        source: crate::program::AckLineError,
    },
    /// The sink refused an ack.
    #[error("{phase}: recording ack {label} failed: {message}")]
    Sink {
        /// Where.
        phase: Phase,
        /// The ack's label.
        label: String,
        /// The sink's error.
        message: String,
    },
}
