//! Running the guest under QEMU (TCG) and streaming its serial console.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use powercut_workloads::protocol::MAX_LINE_BYTES;

/// One virtio-blk disk.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    /// Virtio serial the agent finds the disk by.
    pub serial: String,
    pub read_only: bool,
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub disks: Vec<Disk>,
    pub memory_mib: u32,
    pub append: String,
}

/// The kernel command line of the guest.
pub const KERNEL_APPEND: &str = "console=ttyS0 panic=-1 quiet";

impl VmConfig {
    /// The QEMU command line.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.qemu);
        command
            .args([
                "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1",
            ])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-nographic", "-nic", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &self.append]);
        for (index, disk) in self.disks.iter().enumerate() {
            // cache=none: the host page cache is bypassed, so what the guest flushed is in the
            // file when QEMU exits or is killed. The serial goes on the device (QEMU 10 dropped
            // `-drive serial=`).
            let mut drive = format!(
                "file={},format=raw,if=none,id=disk{index},cache=none,aio=threads",
                disk.path.display().to_string().replace(',', ",,"),
            );
            if disk.read_only {
                drive.push_str(",readonly=on");
            }
            command.arg("-drive").arg(drive);
            command.arg("-device").arg(format!(
                "virtio-blk-pci,drive=disk{index},serial={}",
                disk.serial
            ));
        }
        command
    }
}

/// A line from the VM.
#[derive(Debug)]
enum Event {
    Console(String),
    Stderr(String),
    ConsoleClosed,
}

/// A running VM whose console lines are read one at a time.
#[derive(Debug)]
pub struct RunningVm {
    child: Child,
    events: Receiver<Event>,
    console_log: File,
    tail: VecDeque<String>,
    stderr: Vec<String>,
    console_open: bool,
    pub started: Instant,
}

/// Splits a byte stream into lines (without `\r\n`), cutting lines longer than the limit.
fn pump_lines(source: impl Read, send: impl Fn(String) -> bool) {
    let mut reader = BufReader::new(source);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE_BYTES as u64);
        match limited.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                if !send(String::from_utf8_lossy(&line).into_owned()) {
                    return;
                }
            }
        }
    }
}

const TAIL_LINES: usize = 40;

impl RunningVm {
    /// Starts QEMU; every console line is also appended to `console_log`.
    pub fn spawn(config: &VmConfig, console_log: &Path) -> Result<RunningVm> {
        let console_log = File::create(console_log)
            .with_context(|| format!("creating {}", console_log.display()))?;
        let mut command = config.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", config.qemu.display()))?;
        let (send, events) = mpsc::channel();
        let stdout = child.stdout.take().context("QEMU stdout")?;
        let stderr = child.stderr.take().context("QEMU stderr")?;
        let console_send = send.clone();
        std::thread::spawn(move || {
            pump_lines(stdout, |line| {
                console_send.send(Event::Console(line)).is_ok()
            });
            let _ = console_send.send(Event::ConsoleClosed);
        });
        std::thread::spawn(move || {
            pump_lines(stderr, |line| send.send(Event::Stderr(line)).is_ok());
        });
        Ok(RunningVm {
            child,
            events,
            console_log,
            tail: VecDeque::new(),
            stderr: Vec::new(),
            console_open: true,
            started: Instant::now(),
        })
    }

    fn keep(&mut self, line: &str) {
        // A full disk for console.log must not stop the run; the lines also go to the tail.
        let _ = writeln!(self.console_log, "{line}");
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }

    /// The next console line; `Ok(None)` once the console closed (QEMU exited). Fails at
    /// `deadline`.
    pub fn next_line(&mut self, deadline: Instant) -> Result<Option<String>> {
        loop {
            if !self.console_open {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out waiting for the guest");
            }
            match self.events.recv_timeout(deadline - now) {
                Ok(Event::Console(line)) => {
                    self.keep(&line);
                    return Ok(Some(line));
                }
                Ok(Event::Stderr(line)) => {
                    let line = format!("[qemu stderr] {line}");
                    self.keep(&line);
                    self.stderr.push(line);
                }
                Ok(Event::ConsoleClosed) | Err(RecvTimeoutError::Disconnected) => {
                    self.console_open = false;
                }
                Err(RecvTimeoutError::Timeout) => bail!("timed out waiting for the guest"),
            }
        }
    }

    /// Kills QEMU at once (SIGKILL: a power cut) and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        // Ignore "already exited": the status below is what matters.
        let _ = self.child.kill();
        let status = self.child.wait().context("waiting for the killed QEMU")?;
        self.drain();
        Ok(status)
    }

    /// Waits for QEMU to exit on its own until `deadline`, then kills it.
    pub fn wait(&mut self, deadline: Instant) -> Result<ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for QEMU")? {
                self.drain();
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill()?;
                bail!("QEMU did not exit before the timeout");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Keeps whatever output is still queued.
    fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.console_open && self.next_line(deadline).is_ok() {}
        while let Ok(event) = self.events.try_recv() {
            if let Event::Stderr(line) | Event::Console(line) = event {
                self.keep(&line);
            }
        }
        let _ = self.console_log.flush();
    }

    /// The last console lines, for error messages.
    pub fn tail(&self) -> String {
        self.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_puts_serials_on_devices_and_marks_read_only_disks() {
        let config = VmConfig {
            qemu: "qemu-system-x86_64".into(),
            kernel: "/k".into(),
            initrd: "/i".into(),
            disks: vec![
                Disk {
                    path: "/a,b.img".into(),
                    serial: "pc-data".into(),
                    read_only: false,
                },
                Disk {
                    path: "/job.img".into(),
                    serial: "pc-job".into(),
                    read_only: true,
                },
            ],
            memory_mib: 512,
            append: KERNEL_APPEND.into(),
        };
        let args: Vec<String> = config
            .command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg"));
        assert!(joined.contains("-nic none"));
        assert!(joined.contains("-no-reboot"));
        // Commas in paths are doubled for QEMU's option parser.
        assert!(args.contains(
            &"file=/a,,b.img,format=raw,if=none,id=disk0,cache=none,aio=threads".to_string()
        ));
        assert!(args.contains(&"virtio-blk-pci,drive=disk0,serial=pc-data".to_string()));
        assert!(args
            .iter()
            .any(|a| a.starts_with("file=/job.img") && a.ends_with(",readonly=on")));
    }

    #[test]
    fn long_lines_are_cut_and_carriage_returns_stripped() {
        let mut input = b"first\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\nlast");
        let lines = std::sync::Mutex::new(Vec::new());
        pump_lines(&input[..], |line| {
            lines.lock().unwrap().push(line);
            true
        });
        let lines = lines.into_inner().unwrap();
        assert_eq!(lines[0], "first");
        assert_eq!(lines[1].len(), MAX_LINE_BYTES);
        assert_eq!(lines.last().unwrap(), "last");
    }
}
