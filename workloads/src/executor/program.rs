//! `exec:` steps: a program under test runs in the guest, unprivileged by default, and every
//! line it writes on its ack channel (`POWERCUT_ACK_FD`, the write end of a pipe) becomes an
//! ack the moment the agent reads it, so its MARK follows every write the program made durable
//! before writing the line.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::error::{ExecError, Phase};
use super::files::{file_err, fsync_dir};
use super::ledger::Shared;
use super::run::Run;
use crate::program::{parse_ack_line, MAX_ACK_LINE_BYTES};
use crate::spec::{ExecStep, ExecUser, Step};

/// The directory of a program's files under the run's root: its working directory and
/// `HOME`, owned by the program's user. The checker gets it back in each crash state.
pub const PROGRAM_DATA_DIR: &str = "data";

/// `PATH` of a program in the guest (packages land in /usr, busybox in /bin).
const PROGRAM_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// The end of a program's output kept for an error message.
const OUTPUT_TAIL_BYTES: u64 = 2048;

/// Output files made so far by this process (their names must differ).
static OUTPUTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How often the agent looks whether the program ended.
const POLL: Duration = Duration::from_millis(5);

impl Run<'_, '_> {
    /// Creates the root and the data directory (owned by the program's user when a step runs
    /// unprivileged), each name fsynced.
    pub(super) fn setup_program(&mut self) -> Result<(), ExecError> {
        let data = self.root.join(PROGRAM_DATA_DIR);
        let setup_err = |op, path: &Path| file_err(&Phase::Setup, op, path);
        fs::create_dir_all(&data).map_err(setup_err("create directory", &data))?;
        let unprivileged = self
            .steps
            .iter()
            .any(|s| matches!(s, Step::Exec(e) if e.user == ExecUser::Program));
        if unprivileged && nix::unistd::geteuid().is_root() {
            let (uid, gid) = ExecUser::Program.ids();
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                .map_err(setup_err("chown", &data))?;
            fs::set_permissions(&data, fs::Permissions::from_mode(0o755))
                .map_err(setup_err("chmod", &data))?;
        }
        fsync_dir(&data).map_err(setup_err("fsync directory", &data))?;
        fsync_dir(&self.root).map_err(setup_err("fsync directory", &self.root))?;
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent).map_err(setup_err("fsync directory", parent))?;
        }
        // A `fault: { target: journal }` of a program covers its data directory's files.
        self.journal_dir = data;
        Ok(())
    }

    /// Runs one `exec:` step to its end, acking each line of its ack channel as it arrives.
    pub(super) fn exec(
        &mut self,
        index: usize,
        step: &ExecStep,
        phase: &Phase,
    ) -> Result<(), ExecError> {
        let data = self.root.join(PROGRAM_DATA_DIR);
        // Outside the data disk: the output is no part of any crash state.
        let output = std::env::temp_dir().join(format!(
            "powercut-exec-{}-{}-{index}.out",
            std::process::id(),
            OUTPUTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let (read_end, write_end) = ack_pipe(phase)?;
        let child = spawn(step, &data, &output, &write_end, phase)?;
        // Only the program (and what it starts) holds the write end now: EOF when they end.
        drop(write_end);
        let result = supervise(self.shared, step, child, read_end, phase);
        let result = result.map_err(|e| with_output(e, &output));
        let _ = fs::remove_file(&output);
        result
    }
}

/// Descriptors from this one up are free for the ack channel (0-2 are the standard streams).
const FIRST_ACK_FD: i32 = 3;

/// A pipe whose read end stays in the agent and whose write end the program inherits, at the
/// lowest free descriptor number: shells such as dash take only one digit in `>&$FD`, so
/// `echo ... >&$POWERCUT_ACK_FD` works as long as fewer than seven other files are open.
fn ack_pipe(phase: &Phase) -> Result<(OwnedFd, OwnedFd), ExecError> {
    let err = |what: &str, e: nix::Error| ExecError::Program {
        phase: phase.clone(),
        message: format!("{what}: {e}"),
    };
    let (read_end, write_end) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| err("create the ack pipe", e))?;
    // The lowest free number from FIRST_ACK_FD on, without close-on-exec; the original
    // (close-on-exec) end is closed here.
    let low =
        crate::sys::dup_at_least(&write_end, FIRST_ACK_FD).map_err(|e| ExecError::Program {
            phase: phase.clone(),
            message: format!("let the program inherit the ack pipe: {e}"),
        })?;
    drop(write_end);
    Ok((read_end, low))
}

/// Starts the program in its own process group, as its user, in the data directory.
fn spawn(
    step: &ExecStep,
    data: &Path,
    output: &Path,
    ack_fd: &OwnedFd,
    phase: &Phase,
) -> Result<Child, ExecError> {
    let out = fs::File::create(output).map_err(file_err(phase, "create", output))?;
    let err_out = out.try_clone().map_err(file_err(phase, "dup", output))?;
    let mut command = Command::new(&step.argv[0]);
    command
        .args(&step.argv[1..])
        .env_clear()
        .env("PATH", PROGRAM_PATH)
        .env("HOME", data)
        .env("POWERCUT_DATA_DIR", data)
        .env("POWERCUT_ACK_FD", ack_fd.as_raw_fd().to_string())
        .envs(&step.env)
        .current_dir(data)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err_out)
        .process_group(0);
    // As root (the agent), drop to the step's user; std then also clears the supplementary
    // groups (setgroups(0)) before setuid. Not root (a host test): already unprivileged.
    if nix::unistd::geteuid().is_root() {
        let (uid, gid) = step.user.ids();
        command.gid(gid).uid(uid);
    }
    command.spawn().map_err(|e| ExecError::Program {
        phase: phase.clone(),
        message: format!("start {:?}: {e}", step.argv[0]),
    })
}

/// Reads the ack channel in a thread while waiting for the program within its timeout.
fn supervise(
    shared: &Shared<'_>,
    step: &ExecStep,
    mut child: Child,
    read_end: OwnedFd,
    phase: &Phase,
) -> Result<(), ExecError> {
    let deadline = Instant::now() + Duration::from_secs(step.timeout_s);
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    std::thread::scope(|scope| {
        let (done, reader_done) = mpsc::channel();
        scope.spawn(move || {
            let read = read_acks(shared, read_end, phase);
            if read.is_err() {
                // A malformed line (or a refused ack) ends the run: stop the program now.
                let _ = killpg(group, Signal::SIGKILL);
            }
            let _ = done.send(read);
        });
        let status = wait_until(&mut child, deadline);
        // Whatever the program left running (or the program itself, past its time) dies now:
        // nothing it does after this point is acked.
        let reader = match &status {
            Ok(_) => reader_done.recv_timeout(deadline.saturating_duration_since(Instant::now())),
            Err(_) => Err(mpsc::RecvTimeoutError::Timeout),
        };
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
        let timed_out = status.is_err() || reader.is_err();
        match reader.or_else(|_| reader_done.recv().map_err(|_| ())) {
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
            Err(()) => {
                return Err(ExecError::Program {
                    phase: phase.clone(),
                    message: "the ack channel's reader ended without a word".into(),
                })
            }
        }
        match status {
            Ok(status) if !timed_out && !status.success() => Err(ExecError::ProgramFailed {
                phase: phase.clone(),
                message: format!("{:?} {}", step.argv[0], describe_status(status)),
            }),
            Ok(_) if !timed_out => Ok(()),
            _ => Err(ExecError::Program {
                phase: phase.clone(),
                message: format!(
                    "{:?} still ran (or held its ack channel open) after its timeout of {}s: \
                     killed",
                    step.argv[0], step.timeout_s
                ),
            }),
        }
    })
}

/// The program's exit status, or `Err` when `deadline` passed first.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<std::process::ExitStatus, ()> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => return Err(()),
            Ok(None) => std::thread::sleep(POLL),
            Err(_) => return Err(()),
        }
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended with {status}"),
    }
}

/// Acks every line of the channel until EOF; returns how many. A malformed line ends it with
/// an error naming the line.
fn read_acks(shared: &Shared<'_>, read_end: OwnedFd, phase: &Phase) -> Result<u64, ExecError> {
    let mut reader = BufReader::new(fs::File::from(read_end));
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let limit = u64::try_from(MAX_ACK_LINE_BYTES).unwrap_or(u64::MAX) + 2;
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(|e| ExecError::Program {
                phase: phase.clone(),
                message: format!("reading the ack channel: {e}"),
            })?;
        if n == 0 {
            return Ok(number);
        }
        number += 1;
        let raw = line.strip_suffix(b"\n").unwrap_or(&line);
        let ack = parse_ack_line(number, raw).map_err(|source| ExecError::AckLine {
            phase: phase.clone(),
            source,
        })?;
        shared.ack(phase, &ack)?;
    }
}

/// Adds the end of the program's output to a failure.
fn with_output(error: ExecError, output: &Path) -> ExecError {
    let tail = output_tail(output);
    let add_tail = |message: String| {
        if tail.trim().is_empty() {
            message
        } else {
            format!("{message}; its output ends with:\n{tail}")
        }
    };
    match error {
        ExecError::Program { phase, message } => ExecError::Program {
            phase,
            message: add_tail(message),
        },
        ExecError::ProgramFailed { phase, message } => ExecError::ProgramFailed {
            phase,
            message: add_tail(message),
        },
        other => other,
    }
}

fn output_tail(path: &Path) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(OUTPUT_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
