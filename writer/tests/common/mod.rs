//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use powercut_writer::JournalOptions;

/// A scratch directory on the root disk (/var/tmp is ext4 here, not tmpfs, so O_DIRECT works).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("powercut-writer-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// Small segments and staging so tests rotate and stay fast.
pub fn small_options() -> JournalOptions {
    JournalOptions {
        segment_bytes: 256 * 1024,
        max_staging_bytes: 128 * 1024,
        ..JournalOptions::default()
    }
}

/// Writes `records` durable 1000-byte records (LSN 1 on) into a journal in `dir` of 1 GiB
/// segments preallocated as unwritten extents (costing no writing, reading as zeros), and
/// closes it.
pub fn few_records_in_a_1_gib_segment(dir: &Path, records: u64) {
    let options = JournalOptions {
        segment_bytes: 1 << 30,
        preallocation: powercut_writer::Preallocation::Fallocate,
        prepare_ahead: false,
        ..JournalOptions::default()
    };
    let (journal, _) = powercut_writer::Journal::open(dir, options).unwrap();
    for lsn in 1..=records {
        journal.append_durable(&payload(lsn, 1000)).unwrap();
    }
    journal.close().unwrap();
}

/// Reopens the journal in `dir`, which must recover `records` records, appends `more` as the
/// next record (LSN `records + 1`) and closes it; recovery then ends with it. Returns that
/// recovery.
pub fn reopen_and_append(
    dir: &Path,
    options: JournalOptions,
    records: usize,
    more: &[u8],
) -> powercut_writer::Recovery {
    let (journal, report) = powercut_writer::Journal::open(dir, options).unwrap();
    assert_eq!(report.recovery.record_count as usize, records);
    assert_eq!(journal.append_durable(more).unwrap(), records as u64 + 1);
    journal.close().unwrap();
    let recovery = powercut_writer::recover(dir).unwrap();
    assert_eq!(recovery.records.len(), records + 1);
    assert_eq!(recovery.records[records].payload, more);
    recovery
}

/// Writes the durable records LSN 1 to `records` (10-byte payloads) into a journal of small
/// segments in `dir`, and closes it.
pub fn small_journal_of(dir: &Path, records: u64) {
    let (journal, _) = powercut_writer::Journal::open(dir, small_options()).unwrap();
    for lsn in 1..=records {
        journal.append_durable(&payload(lsn, 10)).unwrap();
    }
    journal.close().unwrap();
}

/// A payload without zero bytes, derived from the LSN.
pub fn payload(lsn: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((lsn as usize).wrapping_mul(131) + i * 7) as u8 | 1)
        .collect()
}

/// The file of segment `index`.
pub fn segment_file(dir: &Path, index: u64) -> PathBuf {
    let prefix = format!("seg-{index:016x}-");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
        })
        .unwrap_or_else(|| panic!("no segment {index} in {}", dir.display()))
}

/// Copies every file of a directory into a new scratch directory.
pub fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = scratch();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

/// Overwrites bytes of a file at an offset.
pub fn write_bytes(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

/// Reads a file's bytes.
pub fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// The journal in `dir` holds exactly the `acked` records (LSN, payload), byte for byte.
pub fn assert_recovers_exactly(dir: &Path, acked: &mut [(u64, Vec<u8>)]) {
    acked.sort();
    let recovery = powercut_writer::recover(dir).unwrap();
    assert_eq!(recovery.records.len(), acked.len(), "{recovery}");
    for (record, (lsn, data)) in recovery.records.iter().zip(acked.iter()) {
        assert_eq!(record.lsn, *lsn);
        assert_eq!(&record.payload, data, "payload of LSN {lsn}");
    }
}

/// One 9-byte server reply, or None when the connection ended first.
pub fn raw_reply(stream: &mut std::net::TcpStream) -> Option<[u8; 9]> {
    use std::io::Read;
    let mut reply = [0u8; 9];
    stream.read_exact(&mut reply).ok().map(|()| reply)
}

/// (LSN, payload) pairs acknowledged.
pub type Acked = Vec<(u64, Vec<u8>)>;

/// Joins threads that each return the (LSN, payload) pairs acknowledged to them; all of them,
/// in LSN order.
pub fn join_acked(threads: Vec<std::thread::JoinHandle<Acked>>) -> Acked {
    let mut acked: Acked = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    acked.sort();
    acked
}

/// Reads replies from `stream` in a thread until the server closes it (or 60 s pass without
/// one); the thread returns them in order.
pub fn read_replies(mut stream: std::net::TcpStream) -> std::thread::JoinHandle<Vec<[u8; 9]>> {
    std::thread::spawn(move || {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut replies = Vec::new();
        while let Some(reply) = raw_reply(&mut stream) {
            replies.push(reply);
        }
        replies
    })
}

/// Runs a tool; its trimmed stdout, or what it said on stderr.
pub fn run_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| format!("{program}: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Ok when this process may attach loop devices and mount (root, /dev/loop-control) and has
/// `tools`; otherwise what is missing.
pub fn loop_capability(tools: &[&str]) -> Result<(), String> {
    // /proc/self belongs to the effective user of the process.
    let is_root = std::fs::metadata("/proc/self")
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
        .unwrap_or(false);
    if !is_root {
        return Err("needs root for loop devices and mounts".into());
    }
    for tool in tools {
        if run_tool("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Err(format!("{tool} not installed"));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control".into());
    }
    Ok(())
}

/// Makes a file system (`xfs`, else ext4) on `device` and mounts it at `mount_point`.
pub fn mkfs_and_mount(fs: &str, device: &str, mount_point: &Path) -> Result<(), String> {
    match fs {
        "xfs" => run_tool("mkfs.xfs", &["-q", "-f", device])?,
        _ => run_tool(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                device,
            ],
        )?,
    };
    run_tool("mount", &[device, mount_point.to_str().unwrap()])?;
    Ok(())
}

/// Unmounts, retrying while the kernel still holds the file system busy (closing io_uring
/// rings releases their files asynchronously), then detaching lazily as a last resort.
pub fn unmount(target: &str) {
    for _ in 0..100 {
        if run_tool("umount", &[target]).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("umount {target} kept failing; detaching lazily");
    let _ = run_tool("umount", &["-l", target]);
}

/// [`unmount`]s `mount_point` if `mounted`, then detaches the loop `device`, retrying while it
/// is busy.
pub fn unmount_and_detach(mounted: bool, mount_point: &Path, device: &str) {
    if mounted {
        unmount(mount_point.to_str().unwrap());
    }
    for _ in 0..50 {
        if run_tool("losetup", &["-d", device]).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
