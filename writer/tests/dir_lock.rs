//! One journal directory, one writer: a second opener, a recovery beside a writer and a bench on
//! an existing journal are refused with errors naming the directory and the holder.

mod common;

use common::{payload, scratch, small_journal_of, small_options};
use powercut_writer::bench::{self, BenchOptions};
use powercut_writer::{recover, Journal, JournalError};

#[test]
fn a_second_journal_on_one_directory_is_refused_while_the_first_lives() {
    let dir = scratch();
    let (first, _) = Journal::open(dir.path(), small_options()).unwrap();
    first.append_durable(&payload(1, 100)).unwrap();
    match Journal::open(dir.path(), small_options()) {
        Err(JournalError::DirectoryLocked { path, holder_pid }) => {
            assert_eq!(path, dir.path());
            assert_eq!(holder_pid, Some(std::process::id()));
        }
        other => panic!("second writer not refused: {:?}", other.map(|_| ())),
    }
    let message = Journal::open(dir.path(), small_options())
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!("process {}", std::process::id())),
        "{message}"
    );
    // Recovery never reads a journal a writer is changing.
    assert!(matches!(
        recover(dir.path()),
        Err(JournalError::DirectoryLocked { .. })
    ));
    // The refused opens changed nothing: the first writer goes on, then a reopen sees all.
    assert_eq!(first.append_durable(&payload(2, 100)).unwrap(), 2);
    first.close().unwrap();
    let (second, report) = Journal::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.recovery.last_lsn, 2);
    drop(second);
    assert_eq!(recover(dir.path()).unwrap().last_lsn(), 2);
}

#[test]
fn recoveries_run_side_by_side_and_a_missing_directory_is_empty() {
    let dir = scratch();
    small_journal_of(dir.path(), 1);
    let both = std::thread::scope(|s| {
        let a = s.spawn(|| recover(dir.path()).map(|r| r.last_lsn()));
        let b = s.spawn(|| recover(dir.path()).map(|r| r.last_lsn()));
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert_eq!(both, (1, 1));
    assert_eq!(recover(&dir.path().join("absent")).unwrap().last_lsn(), 0);
}

#[test]
fn bench_refuses_a_directory_holding_a_journal() {
    let dir = scratch();
    small_journal_of(dir.path(), 1);
    let options = BenchOptions {
        record_bytes: 64,
        clients: 1,
        duration: std::time::Duration::from_millis(50),
        journal: small_options(),
        retire: true,
    };
    match bench::run(dir.path(), &options) {
        Err(JournalError::JournalExists { path }) => assert_eq!(path, dir.path()),
        other => panic!("bench ran on a journal: {:?}", other.map(|_| ())),
    }
    assert_eq!(
        recover(dir.path()).unwrap().last_lsn(),
        1,
        "the journal was touched"
    );
    let fresh = dir.path().join("bench");
    bench::run(&fresh, &options).unwrap();
}

/// Two `powercut-writer serve` processes on one directory: the second is refused, naming the
/// first one's process, and the first keeps serving.
#[test]
fn a_second_serve_process_on_one_directory_is_refused_naming_the_first() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = scratch();
    let binary = env!("CARGO_BIN_EXE_powercut-writer");
    let serve = |dir: &std::path::Path| {
        Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = serve(dir.path());
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
        .expect("the first server listens");
    let second = serve(dir.path()).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("in use by process {}", first.id())),
        "{stderr}"
    );
    let mut client = powercut_writer::server::Client::connect(addr.as_str()).unwrap();
    assert_eq!(client.append(b"still serving").unwrap(), 1);
    drop(client);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(recover(dir.path()).unwrap().last_lsn(), 1);
}
