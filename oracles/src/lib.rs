//! Oracles of powercut: the dm-log-writes block log format, incremental replay, crash-state
//! enumeration, the invariants checked on each crash state, and the reports.
//!
//! - [`blocklog`]: reader and writer of the log (dm-log-writes and QEMU blklogwrites variants).
//! - [`replay`]: apply entries to an image incrementally; [`replay::replay_to`] for `powercut replay`.
//! - [`crash`]: the device model, crash-state enumeration, printable state ids, sharding.
//! - [`mount`]: loop-mount an image (root) and run a closure on the mounted file system.
//! - [`invariants`]: I1-I6 on a recovered journal and the mounted directory.
//! - [`keep`]: the evidence of failing states (image, log, ledger, outcome).
//! - [`check`]: the driver behind `powercut run` and `powercut repro`; [`coverage`] (every ack
//!   checked on the state "everything durable at its mark") is its first pass.
//! - [`shrink`]: a failing state reduced to the simplest one of its cut that still fails.
//! - [`report`]: JSON report, human summary, JUnit XML, shard merge.
//!
//! Dependencies inside the crate point one way: the readers and the model (`blocklog`, `crash`,
//! `replay`, `mount`, `invariants`), then the outcome types every check shares, then `keep`,
//! `check`, `shrink`; `report` needs only the outcome types.
//!
//! The engine's recovery is injected as an [`invariants::RecoverFn`], so a check runs whatever
//! recovery the caller hands it (the engine's, a mutant's, the guest's). The crate still links the
//! engine: the workload crate it builds on depends on it, and the seeded generator of the crash
//! states is the engine's own. A whole run is one call:
//!
//! ```no_run
//! # use std::path::Path;
//! # use powercut_oracles::{check, invariants::RecoveredJournal, mount::FsType};
//! # fn recover(dir: &Path) -> Result<RecoveredJournal, String> { unimplemented!() }
//! let input = check::LogInput {
//!     log_path: Path::new("block.log"),
//!     base_image: Path::new("base.img"),
//!     fs: FsType::Ext4,
//!     seed: 42,
//!     recover: &recover,
//! };
//! let config = check::CheckConfig { keep_dir: Some("failures".into()), ..Default::default() };
//! let report = check::check_log(&input, &config, &mut |p| {
//!     eprintln!("{}/{}", p.states_done, p.states_total)
//! })?;
//! println!("{}", report.summary());
//! # Ok::<(), check::CheckError>(())
//! ```

pub mod blocklog;
pub mod check;
pub mod crash;
pub mod invariants;
pub mod keep;
pub mod mount;
mod outcome;
pub mod replay;
pub mod report;
pub mod shrink;
mod sys;

pub use check::coverage;
/// Loop devices over image files (also under the dm backend's stack).
pub use sys::LoopDevice;
