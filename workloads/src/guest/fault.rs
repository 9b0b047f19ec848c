//! EIO injection under the file system (invariant I7): the physical sectors of files (FIEMAP)
//! and the dm table that maps chosen sector ranges of the data device to the `error` target
//! and everything else linearly to the device below.
//!
//! The fault device sits above dm-log-writes, so a failed write never reaches the block log and
//! the replayed log matches the disk.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::dm::Target;
use crate::sys::guest::{fiemap, FIEMAP_EXTENT_BYTES, FIEMAP_HEADER_BYTES};

/// Bytes of a sector in dm tables.
pub const SECTOR_BYTES: u64 = 512;
/// Extents fetched per FIEMAP call.
const EXTENTS_PER_CALL: u32 = 128;
/// `FIEMAP_FLAG_SYNC`: write dirty data out first so every extent has its final place.
const FIEMAP_FLAG_SYNC: u32 = 0x1;
/// `FIEMAP_EXTENT_LAST`.
const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// `FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_DATA_INLINE`: extents whose
/// physical address says nothing about where the data will be.
const FIEMAP_EXTENT_NO_PLACE: u32 = 0x2 | 0x4 | 0x200;
/// Most extents of one file accepted (a journal segment has a handful).
const MAX_EXTENTS: usize = 65_536;

/// Errors of locating files on the device.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A file or directory could not be opened or listed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
    /// FIEMAP failed.
    #[error("FIEMAP of {} at offset {offset}: {source}", path.display())]
    Fiemap {
        /// The file.
        path: PathBuf,
        /// File offset of the request.
        offset: u64,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// An extent without a fixed physical place (delayed allocation, inline data, ...).
    #[error("{} has an extent at offset {offset} with no fixed place on the device (flags {flags:#x})", path.display())]
    Unplaced {
        /// The file.
        path: PathBuf,
        /// File offset of the extent.
        offset: u64,
        /// Its FIEMAP flags.
        flags: u32,
    },
    /// An extent not aligned to sectors, or more extents than accepted.
    #[error("{}: {message}", path.display())]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A sector range `[start, start + count)` of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SectorRange {
    /// First sector (512 bytes).
    pub start: u64,
    /// Number of sectors.
    pub count: u64,
}

/// The sectors of the file system's device that hold `path`'s data, in file order.
pub fn file_sectors(path: &Path) -> Result<Vec<SectorRange>, FaultError> {
    let file = File::open(path).map_err(|source| FaultError::Io {
        op: "open",
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let mut buf =
            vec![0u8; FIEMAP_HEADER_BYTES + EXTENTS_PER_CALL as usize * FIEMAP_EXTENT_BYTES];
        buf[0..8].copy_from_slice(&offset.to_ne_bytes());
        buf[8..16].copy_from_slice(&u64::MAX.to_ne_bytes());
        buf[16..20].copy_from_slice(&FIEMAP_FLAG_SYNC.to_ne_bytes());
        buf[24..28].copy_from_slice(&EXTENTS_PER_CALL.to_ne_bytes());
        fiemap(file.as_fd(), &mut buf).map_err(|source| FaultError::Fiemap {
            path: path.to_path_buf(),
            offset,
            source,
        })?;
        let mapped = u32::from_ne_bytes(buf[20..24].try_into().unwrap_or_default())
            .min(EXTENTS_PER_CALL) as usize;
        if mapped == 0 {
            return Ok(out);
        }
        let mut last = false;
        for i in 0..mapped {
            let at = FIEMAP_HEADER_BYTES + i * FIEMAP_EXTENT_BYTES;
            let word = |o: usize| {
                u64::from_ne_bytes(buf[at + o..at + o + 8].try_into().unwrap_or_default())
            };
            let logical = word(0);
            let physical = word(8);
            let length = word(16);
            let flags = u32::from_ne_bytes(buf[at + 40..at + 44].try_into().unwrap_or_default());
            if flags & FIEMAP_EXTENT_NO_PLACE != 0 {
                return Err(FaultError::Unplaced {
                    path: path.to_path_buf(),
                    offset: logical,
                    flags,
                });
            }
            if physical % SECTOR_BYTES != 0 || length % SECTOR_BYTES != 0 {
                return Err(FaultError::Layout {
                    path: path.to_path_buf(),
                    message: format!(
                        "extent at offset {logical} (physical {physical}, {length} bytes) is not \
                         sector aligned"
                    ),
                });
            }
            out.push(SectorRange {
                start: physical / SECTOR_BYTES,
                count: length / SECTOR_BYTES,
            });
            if out.len() > MAX_EXTENTS {
                return Err(FaultError::Layout {
                    path: path.to_path_buf(),
                    message: format!("more than {MAX_EXTENTS} extents"),
                });
            }
            offset = logical.saturating_add(length);
            last = flags & FIEMAP_EXTENT_LAST != 0;
        }
        if last {
            return Ok(out);
        }
    }
}

/// The sectors of every regular file directly in `dir` (the journal's segment files).
pub fn dir_sectors(dir: &Path) -> Result<Vec<SectorRange>, FaultError> {
    let io = |op| {
        move |source| FaultError::Io {
            op,
            path: dir.to_path_buf(),
            source,
        }
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list"))? {
        let entry = entry.map_err(io("list"))?;
        if entry.file_type().map_err(io("stat an entry of"))?.is_file() {
            out.extend(file_sectors(&entry.path())?);
        }
    }
    Ok(out)
}

/// Sectors at the end of the data disk that the file system never uses (the host formats it
/// that much smaller than the disk): the flush fault puts its failing piece there.
pub const FLUSH_FAULT_RESERVE_SECTORS: u64 = 2048;

/// The table of a flush fault over a device of `length_sectors`: linear everywhere, the last
/// [`FLUSH_FAULT_RESERVE_SECTORS`] on a dm-flakey piece that is always down (up 0 s, down 1 s)
/// with `error_writes`. dm sends every flush to every target of the table, and flakey fails
/// writes and flushes while down, so every flush fails while the file system's own writes,
/// which never reach the reserved tail, go through.
pub fn flush_fault_table(device: &str, length_sectors: u64) -> Option<Vec<Target>> {
    let split = length_sectors.checked_sub(FLUSH_FAULT_RESERVE_SECTORS)?;
    if split == 0 {
        return None;
    }
    Some(vec![
        Target {
            start_sector: 0,
            length_sectors: split,
            target_type: "linear".into(),
            params: format!("{device} 0"),
        },
        Target {
            start_sector: split,
            length_sectors: FLUSH_FAULT_RESERVE_SECTORS,
            target_type: "flakey".into(),
            params: format!("{device} {split} 0 1 1 error_writes"),
        },
    ])
}

/// The table of a device of `length_sectors` that maps `ranges` (clipped to the device, merged
/// where they touch) to `error` and every other sector to the same sector of `device`.
pub fn error_table(device: &str, length_sectors: u64, ranges: &[SectorRange]) -> Vec<Target> {
    let mut sorted: Vec<SectorRange> = ranges
        .iter()
        .filter(|r| r.count > 0 && r.start < length_sectors)
        .map(|r| SectorRange {
            start: r.start,
            count: r.count.min(length_sectors - r.start),
        })
        .collect();
    sorted.sort();
    let mut merged: Vec<SectorRange> = Vec::new();
    for r in sorted {
        match merged.last_mut() {
            Some(m) if r.start <= m.start + m.count => {
                let end = (m.start + m.count).max(r.start + r.count);
                m.count = end - m.start;
            }
            _ => merged.push(r),
        }
    }
    let linear = |start: u64, end: u64| Target {
        start_sector: start,
        length_sectors: end - start,
        target_type: "linear".into(),
        params: format!("{device} {start}"),
    };
    let mut table = Vec::new();
    let mut at = 0;
    for r in merged {
        if r.start > at {
            table.push(linear(at, r.start));
        }
        table.push(Target {
            start_sector: r.start,
            length_sectors: r.count,
            target_type: "error".into(),
            params: String::new(),
        });
        at = r.start + r.count;
    }
    if at < length_sectors {
        table.push(linear(at, length_sectors));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, count: u64) -> SectorRange {
        SectorRange { start, count }
    }

    #[test]
    fn error_table_covers_the_device_exactly() {
        let table = error_table(
            "253:0",
            100,
            &[r(50, 10), r(10, 5), r(58, 4), r(95, 20), r(200, 1)],
        );
        let kinds: Vec<(u64, u64, &str, &str)> = table
            .iter()
            .map(|t| {
                (
                    t.start_sector,
                    t.length_sectors,
                    t.target_type.as_str(),
                    t.params.as_str(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (0, 10, "linear", "253:0 0"),
                (10, 5, "error", ""),
                (15, 35, "linear", "253:0 15"),
                (50, 12, "error", ""),
                (62, 33, "linear", "253:0 62"),
                (95, 5, "error", ""),
            ]
        );
    }

    #[test]
    fn no_ranges_is_a_linear_table() {
        let table = error_table("/dev/mapper/pclog", 64, &[]);
        assert_eq!(table.len(), 1);
        assert_eq!(table[0].target_type, "linear");
        assert_eq!(table[0].length_sectors, 64);
    }

    /// [`file_sectors`] of `path`, or None (SKIPPED; a failure under CI=true) where the file
    /// system has no FIEMAP (tmpfs and some overlay file systems).
    fn sectors_where_fiemap_works(path: &Path) -> Option<Vec<SectorRange>> {
        match file_sectors(path) {
            Ok(ranges) => Some(ranges),
            Err(FaultError::Fiemap {
                source: nix::Error::EOPNOTSUPP | nix::Error::ENOTTY,
                ..
            }) => {
                let why = "no FIEMAP on the temporary directory's file system";
                powercut_writer::capability::runnable(Err(why.into()));
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// An empty file has no sector: a `target: { file: NAME }` fault on it finds an all-linear
    /// table, which the fault arm refuses ("covers no sector of the data disk").
    #[test]
    fn fiemap_of_an_empty_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        if let Some(ranges) = sectors_where_fiemap_works(&path) {
            assert!(ranges.is_empty(), "{ranges:?}");
        }
        let missing = file_sectors(&dir.path().join("missing")).unwrap_err();
        assert!(
            missing.to_string().starts_with("open ") && missing.to_string().contains("missing"),
            "{missing}"
        );
    }

    #[test]
    fn fiemap_of_a_written_file_covers_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 64 * 1024]).unwrap();
        if let Some(ranges) = sectors_where_fiemap_works(&path) {
            let sectors: u64 = ranges.iter().map(|r| r.count).sum();
            assert!(sectors >= 128, "{ranges:?}");
        }
    }
}
