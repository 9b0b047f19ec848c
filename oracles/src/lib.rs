//! Oracles of powercut: the dm-log-writes block log format, incremental replay, crash-state
//! enumeration, the invariants checked on each crash state, and the reports.
//!
//! - [`blocklog`]: reader and writer of the log (dm-log-writes and QEMU blklogwrites variants).
//! - [`replay`]: apply entries to an image incrementally; [`replay::replay_to`] for `powercut replay`.
//! - [`crash`]: the device model, crash-state enumeration, printable state ids, sharding.
//! - [`mount`]: loop-mount an image (root) and run a closure on the mounted file system.
//! - [`invariants`]: I1-I6 on a recovered journal and the mounted directory.
//! - [`coverage`]: every ack checked on the state "everything durable at its mark".
//! - [`check`]: the driver behind `powercut run` and `powercut repro`.
//! - [`report`]: JSON report, human summary, JUnit XML, shard merge.
//!
//! The engine's recovery is injected as an [`invariants::RecoverFn`]; this crate does not link
//! the engine. A whole run is one call:
//!
//! ```no_run
//! # use std::path::Path;
//! # use powercut_oracles::{check, invariants::RecoveredJournal, mount::FsType};
//! # fn recover(dir: &Path) -> Result<RecoveredJournal, String> { unimplemented!() }
//! let config = check::CheckConfig { keep_dir: Some("failures".into()), ..Default::default() };
//! let report = check::check_log(
//!     Path::new("block.log"), Path::new("base.img"), FsType::Ext4, 42, &config, &recover,
//!     &mut |p| eprintln!("{}/{}", p.states_done, p.states_total),
//! )?;
//! println!("{}", report.summary());
//! # Ok::<(), check::CheckError>(())
//! ```

pub mod blocklog;
pub mod check;
pub mod coverage;
pub mod crash;
pub mod invariants;
pub mod keep;
pub mod mount;
pub mod replay;
pub mod report;
pub mod shrink;
mod sys;
