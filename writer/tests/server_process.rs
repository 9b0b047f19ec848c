//! `powercut-writer serve` as a process: SIGTERM and SIGINT stop it cleanly (status 6 for what
//! arrives afterwards, acknowledged records recoverable, exit 0), and a full disk is logged
//! once, not once per refused frame.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use powercut_writer::server::{Client, ClientError, ErrorCode};

/// A running `powercut-writer serve`, killed on drop if still running.
struct Served {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Served {
    fn start(dir: &Path) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_powercut-writer"))
            .args(["serve", "--dir", dir.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--mode", "fdatasync"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (found, address) = mpsc::channel();
        let log = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = found.send(addr.parse::<SocketAddr>().unwrap());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut served = Served {
            child,
            // Replaced below; the drop kills the child if that fails.
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        match address.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => served.addr = addr,
            Err(_) => panic!("serve did not start: {}", served.stderr()),
        }
        served
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the exit (generously), then for the whole of stderr.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        status
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Stops a served journal with `signal` while clients are connected, one idle and one sending
/// frames without pause, and checks the exit, the replies and the recovered records.
fn stop_with(signal: Signal) {
    let dir = scratch();
    let mut served = Served::start(dir.path());
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();

    let mut idle = Client::connect(served.addr).unwrap();
    for i in 0..20u64 {
        let data = payload(i, 100 + i as usize);
        acked.push((idle.append(&data).unwrap(), data));
    }
    // A pipelining client that keeps sending until the server closes the connection.
    let mut sender = Client::connect(served.addr).unwrap();
    let receiver = sender.stream_mut().try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let mut sent = Vec::new();
        loop {
            let data = payload(10_000 + sent.len() as u64, 64);
            if sender.send(&data).is_err() || sent.len() >= 200_000 {
                break sent;
            }
            sent.push(data);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let receiving = read_replies(receiver);
    std::thread::sleep(Duration::from_millis(300));

    served.signal(signal);
    let status = served.wait();
    let stderr = served.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("{signal}")), "{stderr}");
    assert!(stderr.contains("journal closed"), "{stderr}");

    // The idle connection was told the server is stopping.
    match idle.receive() {
        Err(ClientError::Refused(ErrorCode::ShuttingDown)) => {}
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    // The pipelining client: its appends in progress were acknowledged, then status 6.
    let sent = sending.join().unwrap();
    let replies = receiving.join().unwrap();
    let (last, oks) = replies.split_last().expect("no replies");
    assert_eq!(last[0], ErrorCode::ShuttingDown as u8, "{replies:?}");
    assert!(!oks.is_empty());
    for (reply, data) in oks.iter().zip(&sent) {
        assert_eq!(reply[0], 0);
        let mut lsn = [0u8; 8];
        lsn.copy_from_slice(&reply[1..]);
        acked.push((u64::from_le_bytes(lsn), data.clone()));
    }

    // Exactly the acknowledged records, with their payloads.
    assert_recovers_exactly(dir.path(), &mut acked);
}

#[test]
fn sigterm_stops_serve_cleanly_with_status_6_and_acked_records_recoverable() {
    stop_with(Signal::SIGTERM);
}

#[test]
fn sigint_stops_serve_cleanly_with_status_6_and_acked_records_recoverable() {
    stop_with(Signal::SIGINT);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let size = format!("size={size_mib}m");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir.path())
            .output()
            .map(|output| output.status.success())
            .unwrap_or(false);
        mounted.then_some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).output();
    }
}

#[test]
fn disk_full_append_failure_is_logged_once_not_per_frame() {
    // 24 MiB holds the first 16 MiB segment but not the next one.
    let Some(tmpfs) = Tmpfs::mount(24) else {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let dir = tmpfs.dir.path().join("journal");
    let mut served = Served::start(&dir);

    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut refused = 0;
    let mut client = Client::connect(served.addr).unwrap();
    // About 16 MiB of records fill the segment; then every append is refused.
    for i in 0..2000u64 {
        let data = payload(i, 64 * 1024);
        match client.append(&data) {
            Ok(lsn) => acked.push((lsn, data)),
            Err(ClientError::Refused(code)) => {
                assert!(
                    matches!(code, ErrorCode::Io | ErrorCode::Poisoned),
                    "{code:?}"
                );
                refused += 1;
                if refused == 60 {
                    break;
                }
                client = Client::connect(served.addr).unwrap();
            }
            Err(err) => panic!("append {i}: {err}"),
        }
    }
    assert_eq!(refused, 60, "the disk never filled");
    assert!(!acked.is_empty());

    served.signal(Signal::SIGTERM);
    let status = served.wait();
    let stderr = served.stderr();
    // Closing a poisoned journal fails: exit 1.
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("close journal"), "{stderr}");
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "{stderr}"
    );
    // One line for the disk-full error, one for the poisoned journal after it: not 60.
    let failure_lines = stderr.matches("append failed").count();
    assert!((1..=2).contains(&failure_lines), "{stderr}");

    assert_recovers_exactly(&dir, &mut acked);
    drop(served);
}
