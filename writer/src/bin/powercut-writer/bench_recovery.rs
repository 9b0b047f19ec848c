//! `powercut-writer bench-recovery`: builds journals of the given sizes under a directory (or
//! reuses them) and times `recover` on them beside a sequential O_DIRECT read of the same
//! files, plus one journal of a few records in a large preallocated segment, where recovery
//! should cost the records, not the segment.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use powercut_writer::{
    recover_visiting, AlignedBuf, Durability, IoPathChoice, Journal, JournalOptions, Preallocation,
    RealStorage, Storage, READ_ALIGN_BYTES,
};

/// What to build and time.
pub struct Options {
    pub dir: PathBuf,
    pub sizes_mib: Vec<u64>,
    pub segment_bytes: u64,
    pub record_bytes: usize,
    pub runs: usize,
}

/// One journal's figures (best of the runs).
pub struct Figure {
    pub name: String,
    pub records: u64,
    pub file_bytes: u64,
    pub files: usize,
    pub recover: Duration,
    pub sequential_read: Duration,
}

const MIB: u64 = 1 << 20;

impl Figure {
    fn rate(bytes: u64, time: Duration) -> f64 {
        bytes as f64 / MIB as f64 / time.as_secs_f64().max(1e-9)
    }

    /// One line of text.
    pub fn line(&self) -> String {
        format!(
            "{}: {} records, {:.0} MiB in {} file(s); recover {:.3} s = {:.0} MiB/s; sequential \
             O_DIRECT read of the files {:.3} s = {:.0} MiB/s",
            self.name,
            self.records,
            self.file_bytes as f64 / MIB as f64,
            self.files,
            self.recover.as_secs_f64(),
            Self::rate(self.file_bytes, self.recover),
            self.sequential_read.as_secs_f64(),
            Self::rate(self.file_bytes, self.sequential_read),
        )
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        format!(
            "{{\"journal\":\"{}\",\"records\":{},\"file_bytes\":{},\"files\":{},\"recover_seconds\":{:.6},\"recover_mib_per_s\":{:.1},\"read_seconds\":{:.6},\"read_mib_per_s\":{:.1}}}",
            self.name,
            self.records,
            self.file_bytes,
            self.files,
            self.recover.as_secs_f64(),
            Self::rate(self.file_bytes, self.recover),
            self.sequential_read.as_secs_f64(),
            Self::rate(self.file_bytes, self.sequential_read),
        )
    }
}

/// Builds (or reuses) and times every journal.
pub fn run(options: &Options) -> Result<Vec<Figure>, String> {
    let mut figures = Vec::new();
    for &mib in &options.sizes_mib {
        let dir = options.dir.join(format!("journal-{mib}mib"));
        let journal = JournalOptions {
            segment_bytes: options.segment_bytes,
            ..build_options()
        };
        build(&dir, &journal, mib * MIB, options.record_bytes)?;
        figures.push(measure(&dir, format!("{mib} MiB journal"), options.runs)?);
    }
    // A few records in a 1 GiB zero-filled segment: the preallocated size must not count.
    let dir = options.dir.join("journal-1mib-in-1gib-segment");
    let journal = JournalOptions {
        segment_bytes: 1 << 30,
        prepare_ahead: false,
        ..build_options()
    };
    build(&dir, &journal, MIB, options.record_bytes)?;
    figures.push(measure(
        &dir,
        "1 MiB of records in a 1 GiB segment".into(),
        options.runs,
    )?);
    Ok(figures)
}

fn build_options() -> JournalOptions {
    JournalOptions {
        durability: Durability::Fdatasync,
        preallocation: Preallocation::Zero,
        ..JournalOptions::default()
    }
}

/// Appends records of `record_bytes` until `payload_bytes` are in the journal, unless the
/// directory already holds a journal (a run before built it).
fn build(
    dir: &Path,
    options: &JournalOptions,
    payload_bytes: u64,
    record_bytes: usize,
) -> Result<(), String> {
    let has_segments = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        })
        .unwrap_or(false);
    if has_segments {
        eprintln!("reusing {}", dir.display());
        return Ok(());
    }
    eprintln!("building {}", dir.display());
    let fail = |err: powercut_writer::JournalError| format!("{}: {err}", dir.display());
    let (journal, _) = Journal::open(dir, options.clone()).map_err(fail)?;
    let payload: Vec<u8> = (0..record_bytes).map(|i| (i * 7) as u8 | 1).collect();
    let records = payload_bytes.div_ceil(record_bytes as u64);
    for n in 1..=records {
        journal.append(&payload).map_err(fail)?;
        // Groups of about 1 MiB.
        if n % (MIB / record_bytes as u64).max(1) == 0 {
            journal.commit().map_err(fail)?;
        }
    }
    journal.commit().map_err(fail)?;
    journal.close().map_err(fail)
}

/// The best of `runs` recoveries and of `runs` sequential reads of the segment files.
fn measure(dir: &Path, name: String, runs: usize) -> Result<Figure, String> {
    let files = segment_files(dir)?;
    let file_bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut recover = Duration::MAX;
    let mut sequential_read = Duration::MAX;
    let mut records = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let summary = recover_visiting(dir, None, &mut |_| {})
            .map_err(|err| format!("{}: {err}", dir.display()))?;
        recover = recover.min(started.elapsed());
        records = summary.record_count;
        let started = Instant::now();
        read_sequentially(&files)?;
        sequential_read = sequential_read.min(started.elapsed());
    }
    Ok(Figure {
        name,
        records,
        file_bytes,
        files: files.len(),
        recover,
        sequential_read,
    })
}

fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|err| format!("{}: {err}", dir.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every file whole, 1 MiB at a time, as recovery reads (O_DIRECT where possible).
fn read_sequentially(files: &[PathBuf]) -> Result<(), String> {
    let storage = RealStorage::new(IoPathChoice::Pwritev2, 1 << 20).map_err(|e| e.to_string())?;
    let mut buf = AlignedBuf::new(MIB as usize, READ_ALIGN_BYTES);
    for path in files {
        let fail = |err: std::io::Error| format!("{}: {err}", path.display());
        let mut file = storage.open_read(path, u64::MAX).map_err(fail)?;
        let mut offset = 0;
        while offset < file.len_bytes() {
            let got = file.read_at(&mut buf, offset).map_err(fail)?;
            if got == 0 {
                break;
            }
            offset += got as u64;
        }
    }
    Ok(())
}
