//! `powercut-writer`: serve, recover, bench, bench-recovery. Flags are parsed by hand so the crate needs no
//! command-line library. Exit codes: 0 success, 1 the operation failed, 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[path = "powercut-writer/bench_recovery.rs"]
mod bench_recovery;

use powercut_writer::bench::{self, BenchOptions};
use powercut_writer::server::{self, ServeOptions};
use powercut_writer::{recover_visiting, Durability, IoPathChoice, JournalOptions, Preallocation};

const USAGE: &str = "usage:
  powercut-writer serve   --dir D [--listen 127.0.0.1:7171] [--mode dsync|fdatasync]
                          [--max-frame-bytes N] [--max-connections N] [--idle-timeout-seconds S]
                          [--frame-timeout-seconds S]
  powercut-writer recover --dir D [--json]
  powercut-writer bench   --dir D (empty or new) --mode dsync|fdatasync --record-bytes N --clients C --seconds S
                          [--json] [--segment-bytes N] [--preallocation zero|fallocate|none]
                          [--io-path auto|io_uring|pwritev2] [--max-staging-bytes N]
                          [--max-write-chunk-bytes N] [--groups-in-flight 1..8] [--keep-segments]
  powercut-writer bench-recovery --dir D [--sizes-mib 64,256,1024] [--segment-bytes N]
                          [--record-bytes N] [--runs R] [--json]
  (bench-recovery builds journals under D, or reuses those a run before built, and times
   recover beside a sequential read of the same files)
  (bench retires durable segments as it goes, so rotations recycle them, unless
   --keep-segments)
  (serve runs until SIGTERM or SIGINT, then answers new frames with status 6, lets appends
   in progress finish and closes the journal)";

struct Flags {
    values: Vec<(String, Option<String>)>,
}

const SWITCHES: &[&str] = &["--json", "--keep-segments"];

impl Flags {
    fn parse(args: &[String], allowed: &[&str]) -> Result<Flags, String> {
        let mut values = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if !allowed.contains(&arg.as_str()) {
                return Err(format!("unknown argument {arg:?}"));
            }
            if values.iter().any(|(name, _)| name == arg) {
                return Err(format!("{arg} given twice"));
            }
            if SWITCHES.contains(&arg.as_str()) {
                values.push((arg.clone(), None));
            } else {
                let value = iter.next().ok_or_else(|| format!("{arg} needs a value"))?;
                // `--dir --json` means a forgotten value, not a directory named "--json".
                if value.starts_with("--") {
                    return Err(format!("{arg} needs a value, got the flag {value:?}"));
                }
                values.push((arg.clone(), Some(value.clone())));
            }
        }
        Ok(Flags { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.values.iter().any(|(n, _)| n == name)
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("{name} is required"))
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("{name}: {text:?} is not a valid number")),
        }
    }
}

fn durability(flags: &Flags) -> Result<Option<Durability>, String> {
    flags
        .get("--mode")
        .map(|text| {
            Durability::parse(text)
                .ok_or_else(|| format!("--mode: {text:?} is not dsync or fdatasync"))
        })
        .transpose()
}

/// A timeout flag in whole seconds; zero would close every connection at once.
fn positive_seconds(flags: &Flags, name: &str) -> Result<Option<Duration>, Failure> {
    match flags.number::<u64>(name).map_err(Failure::Usage)? {
        None => Ok(None),
        Some(0) => Err(Failure::Usage(format!("{name} must be positive"))),
        Some(seconds) => Ok(Some(Duration::from_secs(seconds))),
    }
}

enum Failure {
    Usage(String),
    Run(String),
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some(command) = args.first() else {
        return Err(Failure::Usage("no command given".into()));
    };
    let rest = &args[1..];
    match command.as_str() {
        "serve" => serve_command(rest),
        "recover" => recover_command(rest),
        "bench" => bench_command(rest),
        "bench-recovery" => bench_recovery_command(rest),
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

/// Prints a result as JSON with `--json`, else as its human form.
fn print_result(flags: &Flags, json: impl FnOnce() -> String, human: impl std::fmt::Display) {
    if flags.has("--json") {
        println!("{}", json());
    } else {
        println!("{human}");
    }
}

fn serve_command(rest: &[String]) -> Result<(), Failure> {
    let flags = Flags::parse(
        rest,
        &[
            "--dir",
            "--listen",
            "--mode",
            "--max-frame-bytes",
            "--max-connections",
            "--idle-timeout-seconds",
            "--frame-timeout-seconds",
        ],
    )
    .map_err(Failure::Usage)?;
    let dir = PathBuf::from(flags.required("--dir").map_err(Failure::Usage)?);
    let mut journal = JournalOptions::default();
    if let Some(mode) = durability(&flags).map_err(Failure::Usage)? {
        journal.durability = mode;
    }
    let mut options = ServeOptions::default();
    if let Some(listen) = flags.get("--listen") {
        options.listen = listen.to_string();
    }
    if let Some(n) = flags.number("--max-frame-bytes").map_err(Failure::Usage)? {
        options.max_frame_bytes = n;
    }
    if let Some(n) = flags.number("--max-connections").map_err(Failure::Usage)? {
        options.max_connections = n;
    }
    if let Some(seconds) = positive_seconds(&flags, "--idle-timeout-seconds")? {
        options.idle_timeout = seconds;
    }
    if let Some(seconds) = positive_seconds(&flags, "--frame-timeout-seconds")? {
        options.frame_timeout = seconds;
    }
    server::serve(&dir, journal, options).map_err(|err| Failure::Run(err.to_string()))
}

fn recover_command(rest: &[String]) -> Result<(), Failure> {
    let flags = Flags::parse(rest, &["--dir", "--json"]).map_err(Failure::Usage)?;
    let dir = PathBuf::from(flags.required("--dir").map_err(Failure::Usage)?);
    // The library reads a missing directory as an empty journal (a crash state from
    // before its creation); asked about a given directory, that is a typo.
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Failure::Run(format!(
                "{} is not a directory",
                dir.display()
            )))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::Run(format!(
                "journal directory {} does not exist",
                dir.display()
            )))
        }
        Err(err) => return Err(Failure::Run(format!("{}: {err}", dir.display()))),
    }
    // Streamed: memory stays bounded by a segment, whatever the journal's length.
    let recovery =
        recover_visiting(&dir, None, &mut |_| {}).map_err(|err| Failure::Run(err.to_string()))?;
    print_result(&flags, || recovery.to_json(), &recovery);
    Ok(())
}

fn bench_command(rest: &[String]) -> Result<(), Failure> {
    let flags = Flags::parse(
        rest,
        &[
            "--dir",
            "--mode",
            "--record-bytes",
            "--clients",
            "--seconds",
            "--json",
            "--segment-bytes",
            "--preallocation",
            "--io-path",
            "--max-staging-bytes",
            "--max-write-chunk-bytes",
            "--keep-segments",
            "--groups-in-flight",
        ],
    )
    .map_err(Failure::Usage)?;
    let dir = PathBuf::from(flags.required("--dir").map_err(Failure::Usage)?);
    let mode = durability(&flags)
        .map_err(Failure::Usage)?
        .ok_or_else(|| Failure::Usage("--mode is required".into()))?;
    let need = |name: &str| -> Result<u64, Failure> {
        flags
            .number::<u64>(name)
            .map_err(Failure::Usage)?
            .ok_or_else(|| Failure::Usage(format!("{name} is required")))
    };
    let record_bytes = need("--record-bytes")? as usize;
    let clients = need("--clients")? as usize;
    let seconds = need("--seconds")?;
    if clients == 0 || clients > 4096 {
        return Err(Failure::Usage(
            "--clients must be between 1 and 4096".into(),
        ));
    }
    if seconds == 0 {
        return Err(Failure::Usage("--seconds must be positive".into()));
    }
    let options = BenchOptions {
        record_bytes,
        clients,
        duration: Duration::from_secs(seconds),
        journal: bench_journal_options(&flags, mode)?,
        retire: !flags.has("--keep-segments"),
    };
    let result = bench::run(&dir, &options).map_err(|err| Failure::Run(err.to_string()))?;
    print_result(&flags, || result.to_json(), &result);
    Ok(())
}

/// The journal options of `bench` (segments of 64 MiB unless `--segment-bytes` says otherwise).
fn bench_journal_options(flags: &Flags, durability: Durability) -> Result<JournalOptions, Failure> {
    let mut journal = JournalOptions {
        durability,
        segment_bytes: 64 * 1024 * 1024,
        ..JournalOptions::default()
    };
    if let Some(n) = flags.number("--segment-bytes").map_err(Failure::Usage)? {
        journal.segment_bytes = n;
    }
    if let Some(n) = flags
        .number("--max-staging-bytes")
        .map_err(Failure::Usage)?
    {
        journal.max_staging_bytes = n;
    }
    if let Some(n) = flags
        .number("--max-write-chunk-bytes")
        .map_err(Failure::Usage)?
    {
        journal.max_write_chunk_bytes = n;
    }
    if let Some(n) = flags
        .number::<usize>("--groups-in-flight")
        .map_err(Failure::Usage)?
    {
        if !(1..=powercut_writer::MAX_GROUPS_IN_FLIGHT).contains(&n) {
            return Err(Failure::Usage(format!(
                "--groups-in-flight must be between 1 and {}",
                powercut_writer::MAX_GROUPS_IN_FLIGHT
            )));
        }
        journal.max_groups_in_flight = n;
    }
    if let Some(text) = flags.get("--preallocation") {
        journal.preallocation = Preallocation::parse(text).ok_or_else(|| {
            Failure::Usage(format!(
                "--preallocation: {text:?} is not zero, fallocate or none"
            ))
        })?;
    }
    if let Some(text) = flags.get("--io-path") {
        journal.io_path = match text {
            "auto" => IoPathChoice::Auto,
            "io_uring" => IoPathChoice::IoUring,
            "pwritev2" => IoPathChoice::Pwritev2,
            _ => {
                return Err(Failure::Usage(format!(
                    "--io-path: {text:?} is not auto, io_uring or pwritev2"
                )))
            }
        };
    }
    Ok(journal)
}

fn bench_recovery_command(rest: &[String]) -> Result<(), Failure> {
    let flags = Flags::parse(
        rest,
        &[
            "--dir",
            "--sizes-mib",
            "--segment-bytes",
            "--record-bytes",
            "--runs",
            "--json",
        ],
    )
    .map_err(Failure::Usage)?;
    let dir = PathBuf::from(flags.required("--dir").map_err(Failure::Usage)?);
    let sizes_mib = flags
        .get("--sizes-mib")
        .unwrap_or("64,256,1024")
        .split(',')
        .map(|n| n.trim().parse::<u64>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| Failure::Usage("--sizes-mib: positive numbers, comma separated".into()))?;
    let options = bench_recovery::Options {
        dir,
        sizes_mib,
        segment_bytes: flags
            .number("--segment-bytes")
            .map_err(Failure::Usage)?
            .unwrap_or(64 << 20),
        record_bytes: flags
            .number("--record-bytes")
            .map_err(Failure::Usage)?
            .unwrap_or(4096)
            .max(1),
        runs: flags.number("--runs").map_err(Failure::Usage)?.unwrap_or(3),
    };
    let figures = bench_recovery::run(&options).map_err(Failure::Run)?;
    for figure in figures {
        print_result(&flags, || figure.json(), figure.line());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("powercut-writer: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Run(message)) => {
            eprintln!("powercut-writer: {message}");
            ExitCode::from(1)
        }
    }
}
