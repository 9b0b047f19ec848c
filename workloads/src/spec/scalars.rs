//! Scalars of the file: integers bounded while they are deserialized (so the error carries the
//! YAML position), byte sizes such as `256KiB`, names, paths and record size ranges.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::limits::{
    MAX_COMMIT_EVERY, MAX_DISK_MIB, MAX_FILE_BYTES, MAX_INGEST_CLIENTS, MAX_LOG_MIB,
    MAX_RECORDS_PER_STEP, MAX_SEGMENT_BYTES, MAX_STAGING_BYTES, MAX_STEPS, MAX_TOTAL_ACKS,
    MIN_EXT4_DISK_MIB, MIN_SEGMENT_BYTES, MIN_STAGING_BYTES,
};
use super::step_checks::{name_problem, path_problem};
use super::SizeRange;

/// `commit_every` when the step gives none.
pub(super) fn one() -> u64 {
    1
}

/// Reads an integer (or, with `byte_units`, a size such as `256KiB`) in `min..=max`.
struct Bounded {
    min: u64,
    max: u64,
    byte_units: bool,
}

impl Bounded {
    fn check<E: de::Error>(&self, value: u64) -> Result<u64, E> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(E::custom(format!(
                "expected {} from {} to {}, got {value}",
                self.what(),
                self.min,
                self.max
            )))
        }
    }

    fn what(&self) -> &'static str {
        if self.byte_units {
            "a size"
        } else {
            "an integer"
        }
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.byte_units {
            write!(
                f,
                "a size from {} to {} bytes (an integer or a string such as \"256KiB\")",
                self.min, self.max
            )
        } else {
            write!(f, "an integer from {} to {}", self.min, self.max)
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.check(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.check(v),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        if !self.byte_units {
            return Err(E::invalid_type(de::Unexpected::Str(v), &self));
        }
        let bytes = parse_byte_size(v).map_err(E::custom)?;
        self.check(bytes)
    }
}

fn bounded<'de, D: Deserializer<'de>>(d: D, min: u64, max: u64) -> Result<u64, D::Error> {
    d.deserialize_any(Bounded {
        min,
        max,
        byte_units: false,
    })
}

fn byte_size<'de, D: Deserializer<'de>>(d: D, min: u64, max: u64) -> Result<u64, D::Error> {
    d.deserialize_any(Bounded {
        min,
        max,
        byte_units: true,
    })
}

/// Parses `4096`, `4KiB`, `4 KiB`, `4K`, `1MiB`, `1M`, `1GiB`: units are powers of 1024.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a size: expected digits then B, KiB, MiB or GiB"
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: number too large"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" | "kib" => 1024,
        "M" | "MiB" | "mib" => 1024 * 1024,
        "G" | "GiB" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use B, KiB, MiB or GiB (powers of 1024)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?}: size too large"))
}

pub(super) fn de_records_count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded(d, 1, MAX_RECORDS_PER_STEP)
}

pub(super) fn de_clear_after_steps<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    bounded(d, 1, MAX_STEPS as u64).map(Some)
}

pub(super) fn de_commit_every<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded(d, 1, MAX_COMMIT_EVERY)
}

pub(super) fn de_clients<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded(d, 1, MAX_INGEST_CLIENTS)
}

pub(super) fn de_at_ack<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, 1, MAX_TOTAL_ACKS).map(Some)
}

pub(super) fn de_disk_mib<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, MIN_EXT4_DISK_MIB, MAX_DISK_MIB).map(Some)
}

pub(super) fn de_log_mib<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, MIN_EXT4_DISK_MIB, MAX_LOG_MIB).map(Some)
}

pub(super) fn de_file_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    byte_size(d, 0, MAX_FILE_BYTES).map(Some)
}

pub(super) fn de_staging_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    byte_size(d, MIN_STAGING_BYTES, MAX_STAGING_BYTES).map(Some)
}

pub(super) fn de_segment_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let bytes = byte_size(d, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)?;
    if bytes % 4096 != 0 {
        return Err(de::Error::custom(format!(
            "{bytes} bytes is not a multiple of 4096"
        )));
    }
    Ok(Some(bytes))
}

pub(super) fn de_mutant<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<powercut_writer::Mutant>, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map(Some).map_err(de::Error::custom)
}

pub(super) fn ser_mutant<S: Serializer>(
    mutant: &Option<powercut_writer::Mutant>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match mutant {
        Some(m) => s.serialize_str(m.name()),
        None => s.serialize_none(),
    }
}

pub(super) fn de_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    match name_problem(&name) {
        Some(why) => Err(de::Error::custom(why)),
        None => Ok(name),
    }
}

pub(super) fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let path = String::deserialize(d)?;
    match path_problem(&path) {
        Some(why) => Err(de::Error::custom(why)),
        None => Ok(path),
    }
}

pub(super) fn de_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_path(d).map(Some)
}

impl Serialize for SizeRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.min_bytes == self.max_bytes {
            serializer.serialize_u64(self.min_bytes)
        } else {
            [self.min_bytes, self.max_bytes].serialize(serializer)
        }
    }
}

/// One bound of a size range, before the range is checked.
struct SizeValue(u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        byte_size(d, 0, u64::MAX).map(SizeValue)
    }
}

impl<'de> Deserialize<'de> for SizeRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RangeVisitor;
        impl<'de> Visitor<'de> for RangeVisitor {
            type Value = SizeRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a record size or a [min, max] pair of sizes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeRange, E> {
                checked_range(v, v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeRange, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))?;
                checked_range(v, v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeRange, E> {
                let bytes = parse_byte_size(v).map_err(E::custom)?;
                checked_range(bytes, bytes)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SizeRange, A::Error> {
                let wrong_length =
                    || de::Error::custom("a size range is a list of two sizes: [min, max]");
                let min: SizeValue = seq.next_element()?.ok_or_else(wrong_length)?;
                let max: SizeValue = seq.next_element()?.ok_or_else(wrong_length)?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(wrong_length());
                }
                checked_range(min.0, max.0)
            }
        }
        deserializer.deserialize_any(RangeVisitor)
    }
}

fn checked_range<E: de::Error>(min_bytes: u64, max_bytes: u64) -> Result<SizeRange, E> {
    let range = SizeRange {
        min_bytes,
        max_bytes,
    };
    range.check().map_err(E::custom)?;
    Ok(range)
}
