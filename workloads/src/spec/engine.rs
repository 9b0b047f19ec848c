//! Engine options of a workload (`writer:`) and their translation into the engine's
//! [`powercut_writer::JournalOptions`].

use serde::{Deserialize, Serialize};

use super::scalars::{de_mutant, de_segment_bytes, de_staging_bytes, ser_mutant};
use super::Workload;

/// Engine options of a workload; `None` keeps the engine's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterSpec {
    /// `dsync` or `fdatasync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<DurabilitySpec>,
    /// Segment file size in bytes (a multiple of 4096).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_segment_bytes"
    )]
    pub segment_bytes: Option<u64>,
    /// `zero`, `fallocate` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<PreallocationSpec>,
    /// Recycle retired segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle: Option<bool>,
    /// Staging memory bound in bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_staging_bytes"
    )]
    pub max_staging_bytes: Option<u64>,
    /// Group commits written at the same time (1 to `powercut_writer::MAX_GROUPS_IN_FLIGHT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_in_flight: Option<u64>,
    /// `auto`, `io_uring` or `pwritev2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_path: Option<IoPathSpec>,
    /// `false`: buffered writes through the page cache (made durable by fdatasync) instead of
    /// O_DIRECT, the setting of the fsyncgate workload (write-back errors, docs/design.md section 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_io: Option<bool>,
    /// A deliberately broken engine variant, `M1` to `M16` (docs/design.md section 6); only an agent
    /// built with the `mutants` feature can run it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_mutant",
        serialize_with = "ser_mutant"
    )]
    pub mutant: Option<powercut_writer::Mutant>,
}

/// Durability mode (see [`powercut_writer::Durability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilitySpec {
    /// O_DIRECT|O_DSYNC.
    Dsync,
    /// O_DIRECT writes and one fdatasync per group.
    Fdatasync,
}

/// Segment preparation (see [`powercut_writer::Preallocation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreallocationSpec {
    /// fallocate + zero fill + fsync.
    Zero,
    /// fallocate only.
    Fallocate,
    /// Appends extend the file.
    None,
}

/// Submission path (see [`powercut_writer::IoPathChoice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoPathSpec {
    /// io_uring when available, else pwritev2.
    Auto,
    /// io_uring or fail.
    IoUring,
    /// Synchronous pwritev2.
    Pwritev2,
}

impl Workload {
    /// Engine options: the engine's defaults with this workload's settings applied.
    pub fn journal_options(&self) -> powercut_writer::JournalOptions {
        let mut options = powercut_writer::JournalOptions::default();
        let w = &self.writer;
        if let Some(d) = w.durability {
            options.durability = match d {
                DurabilitySpec::Dsync => powercut_writer::Durability::Dsync,
                DurabilitySpec::Fdatasync => powercut_writer::Durability::Fdatasync,
            };
        }
        if let Some(bytes) = w.segment_bytes {
            options.segment_bytes = bytes;
        }
        if let Some(p) = w.preallocation {
            options.preallocation = match p {
                PreallocationSpec::Zero => powercut_writer::Preallocation::Zero,
                PreallocationSpec::Fallocate => powercut_writer::Preallocation::Fallocate,
                PreallocationSpec::None => powercut_writer::Preallocation::None,
            };
        }
        if let Some(recycle) = w.recycle {
            options.recycle_segments = recycle;
        }
        if let Some(bytes) = w.max_staging_bytes {
            // Bounded by MAX_STAGING_BYTES at parse time, so it fits any usize >= 32 bits.
            options.max_staging_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(n) = w.groups_in_flight {
            options.max_groups_in_flight = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(p) = w.io_path {
            options.io_path = match p {
                IoPathSpec::Auto => powercut_writer::IoPathChoice::Auto,
                IoPathSpec::IoUring => powercut_writer::IoPathChoice::IoUring,
                IoPathSpec::Pwritev2 => powercut_writer::IoPathChoice::Pwritev2,
            };
        }
        if let Some(direct) = w.direct_io {
            options.direct_io = direct;
        }
        options.mutant = w.mutant;
        options
    }

    /// Segment size the engine will use.
    pub(super) fn segment_bytes(&self) -> u64 {
        self.writer
            .segment_bytes
            .unwrap_or_else(|| powercut_writer::JournalOptions::default().segment_bytes)
    }
}

#[cfg(test)]
mod direct_io_tests {
    use crate::spec::{parse, SpecError, Workload};

    const STEPS: &str = "steps:\n  - append: { count: 3, size: 100 }\n";

    #[test]
    fn direct_io_false_maps_to_buffered_engine_and_round_trips() {
        let text = format!("name: t\nwriter:\n  direct_io: false\n{STEPS}");
        let w = parse(&text, "x.yaml").unwrap();
        assert_eq!(w.writer.direct_io, Some(false));
        assert!(!w.journal_options().direct_io);
        let back = Workload::from_json(&w.to_json()).unwrap();
        assert_eq!(back.writer.direct_io, Some(false));
        assert!(!back.journal_options().direct_io);
    }

    #[test]
    fn direct_io_defaults_to_the_engine_default() {
        let w = parse(&format!("name: t\n{STEPS}"), "x.yaml").unwrap();
        assert_eq!(w.writer.direct_io, None);
        assert!(w.journal_options().direct_io);
        assert!(!w.to_json().contains("direct_io"));
        let on = parse(
            &format!("name: t\nwriter:\n  direct_io: true\n{STEPS}"),
            "x.yaml",
        )
        .unwrap();
        assert!(on.journal_options().direct_io);
    }

    #[test]
    fn a_direct_io_that_is_not_a_boolean_is_a_located_error() {
        for bad in ["buffered", "0", "[true]"] {
            let text =
                format!("name: t\nwriter:\n  durability: fdatasync\n  direct_io: {bad}\n{STEPS}");
            match parse(&text, "x.yaml") {
                Err(SpecError::Invalid(d)) => {
                    assert_eq!(d.field, "writer.direct_io", "{d}");
                    assert_eq!(d.line, Some(4), "{d}");
                }
                other => panic!("direct_io: {bad}: expected a located error, got {other:?}"),
            }
        }
    }
}
