//! Benchmarks (run with `cargo bench -p powercut-oracles --bench replay`):
//! 1. incremental replay of a ~200 MiB synthetic log onto a 64 MiB image, stopping at every flush
//!    prefix: MiB/s and entries/s;
//! 2. building a crash image (clone of the prefix image + delta);
//! 3. mount + recovery + invariants per crash state on a 64 MiB ext4 image (root only), with one
//!    and with two workers: states/s.
//!
//! Set POWERCUT_BENCH_DIR to choose where the files go (default: the system temp directory).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use powercut_oracles::blocklog::{BlockLog, LogWriter};
use powercut_oracles::check::{check_log, CheckConfig};
use powercut_oracles::mount::FsType;
use powercut_oracles::replay::{clone_image, Replayer};
use rand::{Rng, SeedableRng};

const IMAGE_BYTES: u64 = 64 << 20;

fn main() {
    let root = std::env::var_os("POWERCUT_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = root.join(format!("powercut-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = 1234u64;
    println!("seed {seed}, files in {}", dir.display());
    replay_bench(&dir, seed);
    mount_bench(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn replay_bench(dir: &std::path::Path, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let log_path = dir.join("synthetic.log");
    let mut w = LogWriter::create(&log_path, 512).unwrap();
    let mut data_bytes = 0u64;
    let mut block = vec![0u8; 64 << 10];
    while data_bytes < 200 << 20 {
        let len = 4096 * rng.random_range(1..=16usize);
        let sector = rng.random_range(0..(IMAGE_BYTES - len as u64) / 4096) * 8;
        rng.fill(&mut block[..len]);
        w.write(sector, &block[..len], 0).unwrap();
        data_bytes += len as u64;
        if w.entries() % 33 == 32 {
            w.flush().unwrap();
        }
    }
    w.flush().unwrap();
    w.finish(None, 0).unwrap();
    let t = Instant::now();
    let log = BlockLog::open(&log_path).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let base = dir.join("base.img");
    std::fs::File::create(&base)
        .unwrap()
        .set_len(IMAGE_BYTES)
        .unwrap();
    let img = dir.join("prefix.img");
    clone_image(&base, &img).unwrap();
    let flushes: Vec<u64> = log
        .entries()
        .iter()
        .filter(|e| e.is_flush())
        .map(|e| e.index)
        .collect();
    let t = Instant::now();
    let mut r = Replayer::new(&log, &img).unwrap();
    for &f in &flushes {
        r.advance_to(f + 1).unwrap();
    }
    let s = t.elapsed().as_secs_f64();
    let st = r.stats();
    println!(
        "replay: log {:.0} MiB, {} entries, {} flush prefixes; scan {:.2} s; replay {:.2} s = {:.0} MiB/s, {:.0} entries/s",
        log.len_bytes() as f64 / 1048576.0,
        log.entries().len(),
        flushes.len(),
        open_s,
        s,
        st.bytes_written as f64 / 1048576.0 / s,
        st.entries_applied as f64 / s
    );
    let t = Instant::now();
    let copies = 20;
    let mut reflinked = false;
    for i in 0..copies {
        reflinked = clone_image(&img, &dir.join(format!("copy{}.img", i % 2))).unwrap();
    }
    println!(
        "clone of a 64 MiB image ({}): {:.2} ms each",
        if reflinked { "FICLONE" } else { "sparse copy" },
        t.elapsed().as_secs_f64() * 1000.0 / copies as f64
    );
}

fn mount_bench(dir: &std::path::Path) {
    if let Err(why) = common::capability() {
        println!("mount bench SKIPPED: {why}");
        return;
    }
    let base = common::make_base(dir, 64);
    let t = Instant::now();
    for i in 0..50 {
        clone_image(&base.image, &dir.join(format!("ext4-copy{}.img", i % 2))).unwrap();
    }
    println!(
        "clone of the 64 MiB ext4 image here (sparse copy unless reflink): {:.2} ms each",
        t.elapsed().as_secs_f64() * 1000.0 / 50.0
    );
    let batches: Vec<u64> = (0..40).map(|i| 1 + (i * 7) % 5).collect();
    let (log, n) = common::record_log(dir, &base, &batches, common::Engine::Correct);
    // Scratch on the directory's own file system (copies unless it reflinks), then the default:
    // a loop-mounted XFS scratch made for the run (FICLONE per state).
    for reflink_scratch in [false, true] {
        for workers in [1, 2] {
            let cfg = CheckConfig {
                workers,
                coverage: false,
                mid_log_corruption: false,
                reflink_scratch,
                scratch_dir: Some(dir.join(format!("scratch{workers}"))),
                ..CheckConfig::default()
            };
            let r = check_log(&common::toy_input(&log, &base.image), &cfg, &mut |_| {}).unwrap();
            assert!(r.violations.is_empty(), "{}", r.summary());
            println!(
                "mount+recover+check, 64 MiB ext4, {n} records, reflink_scratch {reflink_scratch}, {workers} workers: {} states in {:.2} s = {:.1} states/s",
                r.states_checked, r.elapsed_seconds, r.states_per_second
            );
        }
    }
    // Clone cost on a reflink-capable scratch file system (a loop-mounted XFS image).
    let xfs = dir.join("scratch-xfs.img");
    std::fs::File::create(&xfs)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let made = std::process::Command::new("mkfs.xfs")
        .args(["-q", "-f", "-m", "reflink=1"])
        .arg(&xfs)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        println!("xfs scratch SKIPPED: mkfs.xfs unavailable");
        return;
    }
    powercut_oracles::mount::with_mounted(&xfs, FsType::Xfs, &dir.join("xfs-mnt"), |scratch| {
        let local = scratch.join("base.img");
        clone_image(&base.image, &local).unwrap();
        let t = Instant::now();
        let mut reflinked = false;
        for i in 0..50 {
            reflinked = clone_image(&local, &scratch.join(format!("c{}.img", i % 2))).unwrap();
        }
        println!(
            "clone of the 64 MiB ext4 image on XFS ({}): {:.2} ms each",
            if reflinked { "FICLONE" } else { "sparse copy" },
            t.elapsed().as_secs_f64() * 1000.0 / 50.0
        );
    })
    .unwrap();
}
