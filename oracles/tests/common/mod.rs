//! A small real-kernel scenario: an ext4 image with a preallocated journal segment, a toy journal
//! format, and block logs crafted as dm-log-writes would record the toy engine's writes.
#![allow(dead_code)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use powercut_oracles::blocklog::LogWriter;
use powercut_oracles::check::{check_log, CheckConfig, CheckError, LogInput};
use powercut_oracles::invariants::{RecoverFn, RecoveredJournal, TailInfo};
use powercut_oracles::mount::{can_mount, with_mounted, FsType};
use powercut_oracles::report::Report;
use powercut_workloads::ack::Ack;
use powercut_workloads::payload::derive;

pub const SEED: u64 = 0x5eed;

/// A check of the toy scenario's logs: images and kept states under `dir`, a small enumeration.
pub fn small_check_config(dir: &Path) -> CheckConfig {
    CheckConfig {
        keep_dir: Some(dir.join("keep")),
        scratch_dir: Some(dir.join("scratch")),
        states: powercut_oracles::crash::EnumConfig {
            max_exhaustive_subset: 4,
            samples_per_epoch: 6,
            torn_samples: 3,
            atomic_write_bytes: 512,
            seed: 11,
        },
        ..CheckConfig::default()
    }
}
pub const BLOCK: usize = 4096;
pub const SEG_BYTES: usize = 256 * 1024;
const MAGIC: &[u8; 4] = b"TJR1";
const HEADER: usize = 20;

/// Checks a log with the scenario's seed and no progress callback.
pub fn check_seeded(
    log: &Path,
    base_image: &Path,
    fs: FsType,
    config: &CheckConfig,
    recover: &RecoverFn,
) -> Result<Report, CheckError> {
    let input = LogInput {
        log_path: log,
        base_image,
        fs,
        seed: SEED,
        recover,
    };
    check_log(&input, config, &mut |_| {})
}

/// A toy log over its ext4 base image, with the scenario's seed and the toy engine's recovery.
pub fn toy_input<'a>(log: &'a Path, base_image: &'a Path) -> LogInput<'a> {
    LogInput {
        log_path: log,
        base_image,
        fs: FsType::Ext4,
        seed: SEED,
        recover: &toy_recover,
    }
}

/// The base image and where each 4 KiB block of `journal/seg0` sits in it.
pub struct Base {
    pub image: PathBuf,
    pub block_offsets: Vec<u64>,
}

/// Why the scenario cannot run here, if it cannot.
pub fn capability() -> Result<(), String> {
    can_mount().map_err(|e| e.to_string())?;
    if Command::new("mkfs.ext4").arg("-V").output().is_err() {
        return Err("mkfs.ext4 not installed".into());
    }
    Ok(())
}

/// mkfs.ext4 an image of `size_mib`, create journal/seg0 (SEG_BYTES, each block tagged so it can be
/// found in the image), map it, then zero the segment's blocks in the image file.
pub fn make_base(dir: &Path, size_mib: u64) -> Base {
    make_base_fs(dir, size_mib, FsType::Ext4)
}

/// `make_base` for either file system (XFS needs at least 300 MiB).
pub fn make_base_fs(dir: &Path, size_mib: u64, fs: FsType) -> Base {
    let image = dir.join("base.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(size_mib << 20)
        .unwrap();
    let st = match fs {
        FsType::Ext4 => Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-b",
                "4096",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
            ])
            .arg(&image)
            .status()
            .unwrap(),
        FsType::Xfs => Command::new("mkfs.xfs")
            .args(["-q", "-f"])
            .arg(&image)
            .status()
            .unwrap(),
    };
    assert!(st.success());
    let tag = |i: usize| format!("SEGBLOCK-{i:08}-{SEED:x}").into_bytes();
    with_mounted(&image, fs, &dir.join("mnt"), |root| {
        std::fs::create_dir_all(root.join("journal")).unwrap();
        std::fs::create_dir_all(root.join("files")).unwrap();
        let mut seg = vec![0u8; SEG_BYTES];
        for i in 0..SEG_BYTES / BLOCK {
            let t = tag(i);
            seg[i * BLOCK..i * BLOCK + t.len()].copy_from_slice(&t);
        }
        std::fs::write(root.join("journal/seg0"), &seg).unwrap();
        std::fs::File::open(root.join("journal/seg0"))
            .unwrap()
            .sync_all()
            .unwrap();
    })
    .unwrap();
    let bytes = std::fs::read(&image).unwrap();
    let mut block_offsets = Vec::new();
    for i in 0..SEG_BYTES / BLOCK {
        let t = tag(i);
        let at = (0..bytes.len() / BLOCK)
            .map(|b| b * BLOCK)
            .find(|&o| bytes[o..o + t.len()] == t[..])
            .expect("segment block in image");
        block_offsets.push(at as u64);
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    for &o in &block_offsets {
        f.write_all_at(&[0u8; BLOCK], o).unwrap();
    }
    f.sync_all().unwrap();
    Base {
        image,
        block_offsets,
    }
}

pub fn payload_of(lsn: u64) -> Vec<u8> {
    derive(SEED, 0, lsn, 100 + (lsn as usize * 37) % 900)
}

fn encode(lsn: u64) -> Vec<u8> {
    let p = payload_of(lsn);
    let mut r = Vec::with_capacity(HEADER + p.len());
    r.extend_from_slice(MAGIC);
    r.extend_from_slice(&(p.len() as u32).to_le_bytes());
    r.extend_from_slice(&lsn.to_le_bytes());
    r.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
    r.extend_from_slice(&p);
    r
}

/// How the recorded engine behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// write, flush, then ack (mark).
    Correct,
    /// ack (mark) before the flush (M1-like).
    AckBeforeSync,
}

/// Appends records `lsn + 1..=lsn + n` to the segment `seg` and logs the blocks they touch,
/// each rewritten whole, as the engine's writes; advances `lsn` and returns the records' CRC.
fn write_records(w: &mut LogWriter, base: &Base, seg: &mut Vec<u8>, lsn: &mut u64, n: u64) -> u32 {
    let start = seg.len();
    let mut crc = 0;
    for _ in 0..n {
        *lsn += 1;
        seg.extend_from_slice(&encode(*lsn));
        crc = crc32c::crc32c_append(crc, &payload_of(*lsn));
    }
    assert!(seg.len() <= SEG_BYTES);
    for b in start / BLOCK..seg.len().div_ceil(BLOCK) {
        let mut block = vec![0u8; BLOCK];
        let end = ((b + 1) * BLOCK).min(seg.len());
        block[..end - b * BLOCK].copy_from_slice(&seg[b * BLOCK..end]);
        w.write(base.block_offsets[b] / 512, &block, 0).unwrap();
    }
    crc
}

/// Records `batches` (records per group commit) as a dm-log-writes log would: the tail blocks
/// rewritten whole, a flush, then the ack mark. Returns the log path and the LSN count.
pub fn record_log(dir: &Path, base: &Base, batches: &[u64], engine: Engine) -> (PathBuf, u64) {
    let path = dir.join(format!("{engine:?}.log"));
    let mut w = LogWriter::create(&path, 512).unwrap();
    w.mark("s:toy").unwrap();
    let mut seg: Vec<u8> = Vec::new();
    let mut lsn = 0u64;
    for &n in batches {
        let first = lsn + 1;
        let crc = write_records(&mut w, base, &mut seg, &mut lsn, n);
        let label = format!("r:{first}-{lsn}:{crc:08x}");
        match engine {
            Engine::Correct => {
                w.flush().unwrap();
                w.mark(&label).unwrap();
            }
            Engine::AckBeforeSync => {
                w.mark(&label).unwrap();
                w.flush().unwrap();
            }
        }
    }
    w.mark("e:toy").unwrap();
    w.mark("dm-log-writes-end").unwrap();
    (w.finish(None, 16).unwrap(), lsn)
}

/// One step of a scripted recording ([`record_script`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub enum Scripted {
    /// Write the next `records` records (their blocks, no flush).
    Write { records: u64 },
    /// A flush (what a sync of the device does).
    Flush,
    /// Acknowledge every record written since the last acknowledgement (`r:` mark).
    Ack,
    /// A reopen's recovery returned every record written so far (`o:` mark).
    Reopened,
}

/// Records a script of writes, flushes and marks over the toy segment; returns the log.
#[allow(dead_code)]
pub fn record_script(dir: &Path, base: &Base, name: &str, script: &[Scripted]) -> PathBuf {
    let path = dir.join(format!("{name}.log"));
    let mut w = LogWriter::create(&path, 512).unwrap();
    w.mark("s:toy").unwrap();
    let mut seg: Vec<u8> = Vec::new();
    let mut lsn = 0u64;
    let mut acked = 0u64;
    let crc_of = |first: u64, last: u64| {
        (first..=last).fold(0, |crc, l| crc32c::crc32c_append(crc, &payload_of(l)))
    };
    for step in script {
        match *step {
            Scripted::Write { records } => {
                write_records(&mut w, base, &mut seg, &mut lsn, records);
            }
            Scripted::Flush => {
                w.flush().unwrap();
            }
            Scripted::Ack => {
                w.mark(&format!(
                    "r:{}-{lsn}:{:08x}",
                    acked + 1,
                    crc_of(acked + 1, lsn)
                ))
                .unwrap();
                acked = lsn;
            }
            Scripted::Reopened => {
                w.mark(&format!("o:1-{lsn}:{:08x}", crc_of(1, lsn)))
                    .unwrap();
                acked = lsn;
            }
        }
    }
    w.mark("e:toy").unwrap();
    w.mark("dm-log-writes-end").unwrap();
    w.finish(None, 16).unwrap()
}

/// The same writes as QEMU blklogwrites records them: no marks, and a stale `nr_entries` (0) in
/// the super. The acks are returned placed at the entry after which each was made (its flush),
/// or, with `early`, at the entry before its flush (an ack before the sync).
pub fn record_log_without_marks(
    dir: &Path,
    base: &Base,
    batches: &[u64],
    early: bool,
) -> (PathBuf, Vec<(u64, Ack)>) {
    let path = dir.join(format!("nomarks-{early}.log"));
    let mut w = LogWriter::create(&path, 512).unwrap();
    let mut seg: Vec<u8> = Vec::new();
    let mut lsn = 0u64;
    let mut acks = vec![(0, Ack::Start { name: "toy".into() })];
    for &n in batches {
        let first = lsn + 1;
        let crc = write_records(&mut w, base, &mut seg, &mut lsn, n);
        let flush = w.flush().unwrap();
        let at = if early { flush - 1 } else { flush };
        acks.push((
            at,
            Ack::Records {
                first_lsn: first,
                last_lsn: lsn,
                crc32c: crc,
            },
        ));
    }
    (w.finish(Some(0), 16).unwrap(), acks)
}

/// The toy engine's recovery: records until zeros (clean end); a bad record followed only by
/// zeros or a partial record is a torn tail; a bad record followed by a valid one is an error.
pub fn toy_recover(journal: &Path) -> Result<RecoveredJournal, String> {
    recover_impl(journal, false)
}

/// The M8 bug: mid-log corruption treated as a torn tail.
pub fn toy_recover_lenient(journal: &Path) -> Result<RecoveredJournal, String> {
    recover_impl(journal, true)
}

fn parse_at(bytes: &[u8], at: usize) -> Option<(u64, Vec<u8>, usize)> {
    let h = bytes.get(at..at + HEADER)?;
    if &h[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    let lsn = u64::from_le_bytes(h[8..16].try_into().unwrap());
    let crc = u32::from_le_bytes(h[16..20].try_into().unwrap());
    let p = bytes.get(at + HEADER..at + HEADER + len)?;
    (crc32c::crc32c(p) == crc).then(|| (lsn, p.to_vec(), at + HEADER + len))
}

fn recover_impl(journal: &Path, lenient: bool) -> Result<RecoveredJournal, String> {
    let bytes = std::fs::read(journal.join("seg0")).map_err(|e| format!("read seg0: {e}"))?;
    let mut at = 0;
    let mut records = Vec::new();
    while at < bytes.len() {
        if let Some((lsn, p, next)) = parse_at(&bytes, at) {
            records.push((lsn, p));
            at = next;
            continue;
        }
        if bytes[at..].iter().all(|&b| b == 0) {
            return Ok(RecoveredJournal {
                records,
                truncated_tail: None,
            });
        }
        // A record with a never-written (zero) sector is a torn write: the tail.
        let header = &bytes[at..(at + HEADER).min(bytes.len())];
        let claimed = if header.starts_with(MAGIC) && header.len() >= 8 {
            (u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize).min(SEG_BYTES)
        } else {
            0
        };
        let region_end = (at + HEADER + claimed).min(bytes.len());
        let torn = header.iter().all(|&b| b == 0)
            || (at / 512..region_end.div_ceil(512)).any(|s| {
                bytes[s * 512..((s + 1) * 512).min(bytes.len())]
                    .iter()
                    .all(|&b| b == 0)
            });
        // A fully written bad record with valid records after it is mid-log corruption.
        let later = !torn
            && (at + 1..bytes.len().saturating_sub(HEADER)).any(|o| {
                bytes[o..o + 4] == MAGIC[..]
                    && parse_at(&bytes, o).is_some_and(|(l, _, _)| l > records.len() as u64)
            });
        if later && !lenient {
            return Err(format!(
                "corrupt record at byte {at} followed by valid records"
            ));
        }
        let discarded = bytes[at..]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |p| p + 1) as u64;
        return Ok(RecoveredJournal {
            records,
            truncated_tail: Some(TailInfo {
                segment: 0,
                offset: at as u64,
                discarded_bytes: discarded,
            }),
        });
    }
    Ok(RecoveredJournal {
        records,
        truncated_tail: None,
    })
}

#[allow(unused_imports)]
pub use powercut_writer::capability::runnable;

/// `capability()` plus mkfs.xfs.
pub fn xfs_capability() -> Result<(), String> {
    capability()?;
    if Command::new("mkfs.xfs").arg("-V").output().is_err() {
        return Err("mkfs.xfs not installed (apt-get install xfsprogs)".into());
    }
    Ok(())
}
