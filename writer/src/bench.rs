//! The `bench` command: acknowledged records per second and latency percentiles of
//! `append_durable` from concurrent clients.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Durability, IoPath, Journal, JournalError, JournalOptions, JournalStats, OpenReport};

/// Parameters of a run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Payload bytes per record.
    pub record_bytes: usize,
    /// Concurrent clients (threads calling `append_durable`).
    pub clients: usize,
    /// Duration of the measurement.
    pub duration: Duration,
    /// Journal options (durability mode included).
    pub journal: JournalOptions,
    /// Retire durable segments while running (recycling them), as a checkpointing user would.
    pub retire: bool,
}

/// Results of a run.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Acknowledged records.
    pub records: u64,
    /// Measured wall time in seconds.
    pub elapsed_seconds: f64,
    /// Acknowledged records per second.
    pub records_per_second: f64,
    /// Acknowledged payload MiB per second.
    pub mib_per_second: f64,
    /// Median latency.
    pub p50_us: f64,
    /// 99th percentile latency.
    pub p99_us: f64,
    /// 99.9th percentile latency.
    pub p999_us: f64,
    /// Durability mode.
    pub mode: Durability,
    /// Submission path.
    pub io_path: IoPath,
    /// Whether O_DIRECT was in effect.
    pub direct_io: bool,
    /// Alignment in bytes.
    pub alignment_bytes: usize,
    /// Clients.
    pub clients: usize,
    /// Payload bytes per record.
    pub record_bytes: usize,
    /// Group commits written.
    pub groups: u64,
    /// Records of the largest group commit.
    pub max_group_records: u64,
    /// Mean time from submitting a group's write to its completion, in microseconds.
    pub mean_group_write_us: f64,
    /// Mean time the oldest record of a group waited in staging before the group started.
    pub mean_group_start_wait_us: f64,
    /// Mean time from the end of a group's write to its acknowledgement.
    pub mean_group_ack_wait_us: f64,
}

impl BenchResult {
    /// Records per group commit on average.
    pub fn mean_group_records(&self) -> f64 {
        if self.groups == 0 {
            0.0
        } else {
            self.records as f64 / self.groups as f64
        }
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"records\":{},\"elapsed_seconds\":{:.3},\"records_per_second\":{:.1},\"mib_per_second\":{:.2},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"mode\":\"{}\",\"io_path\":\"{}\",\"direct_io\":{},\"alignment_bytes\":{},\"clients\":{},\"record_bytes\":{},\"groups\":{},\"mean_group_records\":{:.2},\"max_group_records\":{},\"mean_group_write_us\":{:.1},\"mean_group_start_wait_us\":{:.1},\"mean_group_ack_wait_us\":{:.1}}}",
            self.records,
            self.elapsed_seconds,
            self.records_per_second,
            self.mib_per_second,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.mode.name(),
            self.io_path.name(),
            self.direct_io,
            self.alignment_bytes,
            self.clients,
            self.record_bytes,
            self.groups,
            self.mean_group_records(),
            self.max_group_records,
            self.mean_group_write_us,
            self.mean_group_start_wait_us,
            self.mean_group_ack_wait_us
        )
    }
}

impl std::fmt::Display for BenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} clients x {} B records, {} ({}, {}): {:.0} records/s, {:.1} MiB/s, latency p50 {:.0} us, p99 {:.0} us, p999 {:.0} us ({} records in {:.1} s, {:.1} records per group commit, at most {}; group write {:.0} us on average, oldest record staged {:.0} us before, acknowledged {:.0} us after)",
            self.clients,
            self.record_bytes,
            self.mode.name(),
            self.io_path.name(),
            if self.direct_io { "O_DIRECT" } else { "buffered" },
            self.records_per_second,
            self.mib_per_second,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.records,
            self.elapsed_seconds,
            self.mean_group_records(),
            self.max_group_records,
            self.mean_group_write_us,
            self.mean_group_start_wait_us,
            self.mean_group_ack_wait_us
        )
    }
}

/// Latency samples kept per client at most (beyond, samples are dropped, counts are not).
const MAX_SAMPLES_PER_CLIENT: usize = 4_000_000;

fn percentile_us(sorted_ns: &[u64], fraction: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_ns.len() as f64 * fraction).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns[rank - 1] as f64 / 1000.0
}

/// Runs the benchmark on a new journal in `dir`. A directory that already holds a journal is
/// refused: the benchmark retires segments as it goes and would destroy its records.
pub fn run(dir: &Path, options: &BenchOptions) -> Result<BenchResult, JournalError> {
    assert!(options.clients > 0, "at least one client");
    let (journal, report) = open_new(dir, options)?;
    let journal = Arc::new(journal);
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(options.clients + 1));
    let threads: Vec<_> = (0..options.clients)
        .map(|client| spawn_client(&journal, &stop, &barrier, client, options.record_bytes))
        .collect();
    barrier.wait();
    let start = Instant::now();
    checkpoint_until(&journal, options, start)?;
    stop.store(true, Ordering::Relaxed);
    let joined = join_clients(threads);
    let elapsed_seconds = start.elapsed().as_secs_f64();
    let (records, mut samples) = joined?;
    let stats = journal.stats();
    if let Some(journal) = Arc::into_inner(journal) {
        journal.close()?;
    }
    samples.sort_unstable();
    let run = Measured {
        records,
        elapsed_seconds,
        sorted_samples: samples,
        stats,
    };
    Ok(run.result(options, &report))
}

/// Opens a journal in `dir`, which must not hold one, and waits for its next segment.
fn open_new(dir: &Path, options: &BenchOptions) -> Result<(Journal, OpenReport), JournalError> {
    if crate::segment::holds_journal(dir)? {
        return Err(JournalError::JournalExists {
            path: dir.to_path_buf(),
        });
    }
    let (journal, report) = Journal::open(dir, options.journal.clone())?;
    if options.record_bytes > journal.max_payload_bytes() {
        return Err(JournalError::RecordTooLarge {
            len_bytes: options.record_bytes,
            limit_bytes: journal.max_payload_bytes(),
        });
    }
    journal.wait_for_prepared_segment()?;
    Ok((journal, report))
}

/// What a client thread returns: its acknowledged records and its latency samples (ns).
type ClientRun = JoinHandle<Result<(u64, Vec<u64>), JournalError>>;

/// Starts client `client`: from the barrier on, `append_durable` in a loop until `stop`.
fn spawn_client(
    journal: &Arc<Journal>,
    stop: &Arc<AtomicBool>,
    barrier: &Arc<Barrier>,
    client: usize,
    record_bytes: usize,
) -> ClientRun {
    let journal = Arc::clone(journal);
    let stop = Arc::clone(stop);
    let barrier = Arc::clone(barrier);
    std::thread::spawn(move || -> Result<(u64, Vec<u64>), JournalError> {
        let payload: Vec<u8> = (0..record_bytes).map(|i| (i + client) as u8).collect();
        let mut samples = Vec::with_capacity(1 << 16);
        let mut count = 0u64;
        barrier.wait();
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            journal.append_durable(&payload)?;
            let ns = start.elapsed().as_nanos() as u64;
            count += 1;
            if samples.len() < MAX_SAMPLES_PER_CLIENT {
                samples.push(ns);
            }
        }
        Ok((count, samples))
    })
}

/// Waits out the measurement from `start`, retiring durable segments every 50 ms when asked.
fn checkpoint_until(
    journal: &Journal,
    options: &BenchOptions,
    start: Instant,
) -> Result<(), JournalError> {
    // Like a database checkpointing its log: records already durable are released, so
    // rotations reuse (recycle) written segments instead of zero-filling new ones.
    while start.elapsed() < options.duration {
        std::thread::sleep(
            Duration::from_millis(50).min(options.duration.saturating_sub(start.elapsed())),
        );
        if options.retire {
            journal.retire_before(journal.durable_lsn())?;
        }
    }
    Ok(())
}

/// Joins every client; returns their records and samples, or the first failure.
fn join_clients(threads: Vec<ClientRun>) -> Result<(u64, Vec<u64>), JournalError> {
    let mut records = 0u64;
    let mut samples = Vec::new();
    let mut first_error = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok((count, mut client_samples))) => {
                records += count;
                samples.append(&mut client_samples);
            }
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(_) => {
                first_error.get_or_insert(JournalError::Closed);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok((records, samples)),
    }
}

/// What a run measured, before it is summarised.
struct Measured {
    records: u64,
    elapsed_seconds: f64,
    sorted_samples: Vec<u64>,
    stats: JournalStats,
}

impl Measured {
    fn result(&self, options: &BenchOptions, report: &OpenReport) -> BenchResult {
        let (stats, groups) = (self.stats, self.stats.groups);
        let per_group = |total_us: u64| {
            if groups == 0 {
                0.0
            } else {
                total_us as f64 / groups as f64
            }
        };
        let records_per_second = self.records as f64 / self.elapsed_seconds;
        let samples = &self.sorted_samples;
        BenchResult {
            records: self.records,
            elapsed_seconds: self.elapsed_seconds,
            records_per_second,
            mib_per_second: records_per_second * options.record_bytes as f64 / (1024.0 * 1024.0),
            p50_us: percentile_us(samples, 0.50),
            p99_us: percentile_us(samples, 0.99),
            p999_us: percentile_us(samples, 0.999),
            mode: options.journal.durability,
            io_path: report.io_path,
            direct_io: report.direct_io,
            alignment_bytes: report.alignment_bytes,
            clients: options.clients,
            record_bytes: options.record_bytes,
            groups,
            max_group_records: stats.max_group_records,
            mean_group_write_us: per_group(stats.group_write_us),
            mean_group_start_wait_us: per_group(stats.group_start_wait_us),
            mean_group_ack_wait_us: per_group(stats.group_ack_wait_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let samples: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&samples, 0.5), 500.0);
        assert_eq!(percentile_us(&samples, 0.99), 990.0);
        assert_eq!(percentile_us(&samples, 0.999), 999.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
