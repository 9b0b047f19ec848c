//! Times a shrink's tries on a recorded log: `check_one` per try (the log and its ledger read,
//! the base image copied and the durable prefix replayed every time) against one
//! `with_state_checker` (read and replayed once). The recovery is a stub: the figures are of
//! the harness's own work, image building and mounting.
//!
//! `cargo run --release -p powercut-oracles --example shrink_tries -- LOG BASE STATE_ID [TRIES]`
use std::path::Path;
use std::time::Instant;

use powercut_oracles::check::{check_one, with_state_checker, CheckConfig, LogInput};
use powercut_oracles::invariants::RecoveredJournal;
use powercut_oracles::mount::FsType;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, log, base, id, rest @ ..] = args.as_slice() else {
        eprintln!("usage: shrink_tries LOG BASE STATE_ID [TRIES]");
        std::process::exit(2);
    };
    let tries: u32 = rest
        .first()
        .map_or(5, |n| n.parse().expect("TRIES: a number"));
    let (log, base) = (Path::new(log), Path::new(base));
    let recover = |_: &Path| -> Result<RecoveredJournal, String> {
        Ok(RecoveredJournal {
            records: Vec::new(),
            truncated_tail: None,
        })
    };
    let config = CheckConfig {
        mid_log_corruption: false,
        keep_dir: None,
        ..CheckConfig::default()
    };
    let input = LogInput {
        log_path: log,
        base_image: base,
        fs: FsType::Ext4,
        seed: 1,
        recover: &recover,
    };
    let t = Instant::now();
    for _ in 0..tries {
        check_one(id, &input, &config).expect("check_one");
    }
    let per_try_old = t.elapsed().as_secs_f64() / f64::from(tries);
    let t = Instant::now();
    let state: powercut_oracles::crash::StateId = id.parse().expect("a state id");
    with_state_checker(&input, &config, |_, checker| {
        for _ in 0..tries {
            checker.check(&state).expect("check");
        }
    })
    .expect("with_state_checker");
    let per_try_new = t.elapsed().as_secs_f64() / f64::from(tries);
    println!(
        "{tries} tries of {id}: check_one {:.0} ms per try, one state checker {:.0} ms per try",
        per_try_old * 1000.0,
        per_try_new * 1000.0
    );
}
