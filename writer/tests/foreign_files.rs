//! Files in the journal directory that the engine did not write are refused, never followed,
//! zeroed or hung on: a symlink with a segment's name, a stray file with one, a FIFO.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{scratch, small_options};
use powercut_writer::{recover, Journal, JournalError};

const SEGMENT_NAME: &str = "seg-0000000000000001-00000001.wal";

fn open_error(dir: &Path) -> String {
    match Journal::open(dir, small_options()) {
        Ok(_) => panic!("a journal opened over a foreign file"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_symlink_named_like_a_segment_is_never_followed() {
    let dir = scratch();
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let target = dir.path().join("precious.txt");
    let precious = b"not a journal, and it must stay exactly so\n".repeat(200);
    std::fs::write(&target, &precious).unwrap();
    std::os::unix::fs::symlink(&target, journal.join(SEGMENT_NAME)).unwrap();
    let message = open_error(&journal);
    assert!(message.contains("symbolic link"), "{message}");
    assert!(message.contains(SEGMENT_NAME), "{message}");
    assert!(recover(&journal).is_err());
    assert_eq!(
        std::fs::read(&target).unwrap(),
        precious,
        "the link's target changed"
    );
}

#[test]
fn a_stray_file_with_a_segment_name_is_refused_not_zeroed() {
    let dir = scratch();
    let stray = b"#!/bin/sh\necho some user's file\n".repeat(100);
    std::fs::write(dir.path().join(SEGMENT_NAME), &stray).unwrap();
    let message = open_error(dir.path());
    assert!(
        message.contains("not a segment this engine wrote"),
        "{message}"
    );
    assert!(matches!(
        recover(dir.path()),
        Err(JournalError::BadSegmentFile { .. })
    ));
    assert_eq!(std::fs::read(dir.path().join(SEGMENT_NAME)).unwrap(), stray);
}

#[test]
fn a_fifo_named_like_a_segment_is_refused_without_hanging() {
    let dir = scratch();
    let fifo = dir.path().join(SEGMENT_NAME);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let opened = Journal::open(&path, small_options()).map(|_| ());
        let recovered = recover(&path).map(|_| ());
        let _ = tx.send((opened, recovered));
    });
    let (opened, recovered) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("open or recover hung on a FIFO");
    let message = opened.unwrap_err().to_string();
    assert!(message.contains("not a regular file"), "{message}");
    assert!(recovered.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_segment_of_the_engine_with_a_torn_first_write_still_opens() {
    // Zeros at the start (a prepared segment whose first write never landed) are the engine's.
    let dir = scratch();
    std::fs::write(dir.path().join(SEGMENT_NAME), vec![0u8; 256 * 1024]).unwrap();
    let (journal, report) = Journal::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.recovery.last_lsn, 0);
    assert_eq!(journal.append_durable(b"first").unwrap(), 1);
}
