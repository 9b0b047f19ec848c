//! Segment files: names, listing, and the generation numbers that tell new records from
//! stale ones.
//!
//! A live segment is `seg-<index:016x>-<generation:08x>.wal`; a retired file waiting to be
//! reused is `free-<generation:08x>.wal`. Every time a file is (re)used it gets a generation
//! larger than any generation ever named in the directory, so records left over from its
//! earlier lives carry smaller generations than its name.

use std::path::Path;

use crate::error::JournalError;
use crate::storage::Storage;

/// A live segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentName {
    /// Position in the log: segments are read in increasing index order.
    pub index: u64,
    /// Generation written into every record of this life of the file.
    pub generation: u32,
}

impl SegmentName {
    /// The file name.
    pub fn file_name(&self) -> String {
        format!("seg-{:016x}-{:08x}.wal", self.index, self.generation)
    }
}

/// A retired file name.
pub fn free_file_name(generation: u32) -> String {
    format!("free-{generation:08x}.wal")
}

/// Only the names the engine writes (lower-case hex of the exact width) are its files: a name
/// like `seg-...-0000000A.wal` would parse, but the engine would reopen it under its canonical
/// lower-case name and not find it.
fn parse_hex<T: num_hex::Hex>(text: &str, digits: usize) -> Option<T> {
    let canonical = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if text.len() != digits || !text.bytes().all(canonical) {
        return None;
    }
    T::parse(text)
}

mod num_hex {
    pub trait Hex: Sized {
        fn parse(text: &str) -> Option<Self>;
    }
    impl Hex for u64 {
        fn parse(text: &str) -> Option<Self> {
            u64::from_str_radix(text, 16).ok()
        }
    }
    impl Hex for u32 {
        fn parse(text: &str) -> Option<Self> {
            u32::from_str_radix(text, 16).ok()
        }
    }
}

/// Parses a live segment name.
pub fn parse_segment_name(name: &str) -> Option<SegmentName> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".wal")?;
    let (index, generation) = rest.split_once('-')?;
    Some(SegmentName {
        index: parse_hex(index, 16)?,
        generation: parse_hex(generation, 8)?,
    })
}

/// Parses a retired file name, giving its generation.
pub fn parse_free_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("free-")?.strip_suffix(".wal")?;
    parse_hex(rest, 8)
}

/// What is in a journal directory.
#[derive(Debug, Clone, Default)]
pub struct DirListing {
    /// Live segments in index order.
    pub segments: Vec<SegmentName>,
    /// Generations of retired files.
    pub free: Vec<u32>,
    /// Largest generation named anywhere (0 when none).
    pub max_generation: u32,
}

/// Lists a journal directory. Two live segments with the same index are an error.
pub fn list(storage: &dyn Storage, dir: &Path) -> Result<DirListing, JournalError> {
    let names = storage
        .list_dir(dir)
        .map_err(|err| JournalError::io("list directory", dir, 0, err))?;
    let mut listing = DirListing::default();
    for name in names {
        if let Some(segment) = parse_segment_name(&name) {
            listing.max_generation = listing.max_generation.max(segment.generation);
            listing.segments.push(segment);
        } else if let Some(generation) = parse_free_name(&name) {
            listing.max_generation = listing.max_generation.max(generation);
            listing.free.push(generation);
        }
    }
    listing.segments.sort_by_key(|segment| segment.index);
    for pair in listing.segments.windows(2) {
        if pair[0].index == pair[1].index {
            return Err(JournalError::BadSegmentFile {
                path: dir.join(pair[1].file_name()),
                reason: format!("two segment files with index {}", pair[0].index),
            });
        }
    }
    listing.free.sort_unstable();
    Ok(listing)
}

/// Whether `dir` holds a journal's files (live or retired segments).
pub fn holds_journal(dir: &Path) -> Result<bool, JournalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(JournalError::io("list directory", dir, 0, err)),
    };
    for entry in entries {
        let entry = entry.map_err(|err| JournalError::io("list directory", dir, 0, err))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if parse_segment_name(&name).is_some() || parse_free_name(&name).is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = SegmentName {
            index: 0x1234,
            generation: 7,
        };
        assert_eq!(name.file_name(), "seg-0000000000001234-00000007.wal");
        assert_eq!(parse_segment_name(&name.file_name()), Some(name));
        assert_eq!(parse_free_name(&free_file_name(9)), Some(9));
        assert_eq!(parse_segment_name("seg-12-1.wal"), None);
        assert_eq!(
            parse_segment_name("seg-000000000000001g-00000007.wal"),
            None
        );
        assert_eq!(parse_free_name("free-+0000001.wal"), None);
        assert_eq!(
            parse_segment_name("seg-000000000000000A-00000007.wal"),
            None,
            "upper-case hex is not a name the engine writes"
        );
        assert_eq!(parse_free_name("free-0000000B.wal"), None);
    }
}
