//! Reader and writer of the dm-log-writes on-disk format (also written by QEMU's blklogwrites).
//!
//! Layout (little endian; see docs/block-log-format.md):
//!
//! ```text
//! byte 0:            super  {u64 magic, u64 version, u64 nr_entries, u32 sectorsize}, padded to sectorsize
//! byte sectorsize:   entry header {u64 sector, u64 nr_sectors, u64 flags, u64 data_len}
//!                    (MARK: data_len label bytes follow the header in the same sector), padded
//!                    then nr_sectors * sectorsize data bytes (none for DISCARD and MARK)
//! ```
//!
//! `sector` and `nr_sectors` count units of `sectorsize` (the data device's logical block size),
//! as both the kernel and QEMU write them. The reader is a parser of untrusted input: every length
//! is checked against the file size before anything is read or allocated.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Magic of the super block ("jsfwshr" little endian).
pub const LOG_MAGIC: u64 = 0x006a_7366_7773_6872;
/// The only format version.
pub const LOG_VERSION: u64 = 1;
/// Bytes of the super block fields.
pub const SUPER_BYTES: usize = 28;
/// Bytes of an entry header.
pub const ENTRY_HEADER_BYTES: usize = 32;
/// Largest data of one entry the reader accepts; a bio is never this large, so anything bigger is
/// a garbled header.
pub const MAX_ENTRY_DATA_BYTES: u64 = 1 << 30;

/// The preceding writes were flushed before this entry (its own data, if any, came after).
pub const FLAG_FLUSH: u64 = 1;
/// Forced unit access: this write was durable on completion.
pub const FLAG_FUA: u64 = 2;
/// Discard of `nr_sectors` at `sector`; no data in the log.
pub const FLAG_DISCARD: u64 = 4;
/// A user mark; `data_len` label bytes sit in the header sector.
pub const FLAG_MARK: u64 = 8;
/// The write was tagged REQ_META by the file system.
pub const FLAG_METADATA: u64 = 16;
const ALL_FLAGS: u64 = FLAG_FLUSH | FLAG_FUA | FLAG_DISCARD | FLAG_MARK | FLAG_METADATA;

/// What went wrong reading a log. Every variant names the file and where.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Reading or opening the log failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The log file.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The super block's magic is not dm-log-writes'.
    #[error("{path}: not a block log: bad magic {magic:#x} at byte 0")]
    BadMagic {
        /// The log file.
        path: PathBuf,
        /// The magic found.
        magic: u64,
    },
    /// The super block's version is not supported.
    #[error("{path}: unsupported block log version {version} at byte 8")]
    BadVersion {
        /// The log file.
        path: PathBuf,
        /// The version found.
        version: u64,
    },
    /// The super block's sector size is neither 512 nor 4096 bytes.
    #[error("{path}: sectorsize {sectorsize} at byte 24 is neither 512 nor 4096")]
    BadSectorSize {
        /// The log file.
        path: PathBuf,
        /// The sector size found, in bytes.
        sectorsize: u32,
    },
    /// The file is too short to hold a super block.
    #[error("{path}: file of {len_bytes} bytes is shorter than the super block")]
    NoSuper {
        /// The log file.
        path: PathBuf,
        /// Its length in bytes.
        len_bytes: u64,
    },
    /// The path is neither a regular file nor a block device.
    #[error("{path} is a {kind}: a block log is a regular file or a block device")]
    NotALogFile {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// An entry cannot be read.
    #[error("{path}: entry {index} at byte {offset}: {reason}")]
    BadEntry {
        /// The log file.
        path: PathBuf,
        /// The entry's index, from 0.
        index: u64,
        /// Byte offset of the entry in the log.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why the scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanEnd {
    /// The file ended exactly at an entry boundary.
    EndOfFile,
    /// A header of zeros (the unwritten rest of a log device).
    ZeroHeader,
    /// Past `nr_entries`, a header with unknown flags (stale or garbage).
    InvalidFlags,
    /// Past `nr_entries`, an entry cut short by the end of the file (a killed recorder).
    TruncatedEntry,
    /// Past `nr_entries`, a header that does not describe a sane entry.
    ImplausibleEntry,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, from 0.
    pub index: u64,
    /// Byte offset of the header sector in the log file.
    pub header_offset_bytes: u64,
    /// Target sector, in units of the log's sectorsize.
    pub sector: u64,
    /// Length, in units of the log's sectorsize.
    pub nr_sectors: u64,
    /// FLAG_* bits.
    pub flags: u64,
    /// The header's data_len (the label length for marks).
    pub data_len: u64,
    /// The label of a MARK (lossy UTF-8).
    pub mark: Option<String>,
    /// Byte offset of the target range on the data device.
    pub target_offset_bytes: u64,
    /// Byte length of the target range.
    pub target_len_bytes: u64,
    /// Byte offset of the data in the log (meaningful when [`Entry::has_data`]).
    pub data_offset_bytes: u64,
}

impl Entry {
    /// Whether the entry is a FLUSH.
    pub fn is_flush(&self) -> bool {
        self.flags & FLAG_FLUSH != 0
    }
    /// Whether the entry is a FUA write.
    pub fn is_fua(&self) -> bool {
        self.flags & FLAG_FUA != 0
    }
    /// Whether the entry is a discard.
    pub fn is_discard(&self) -> bool {
        self.flags & FLAG_DISCARD != 0
    }
    /// Whether the entry is a MARK.
    pub fn is_mark(&self) -> bool {
        self.flags & FLAG_MARK != 0
    }
    /// Whether the entry is flagged as file system metadata.
    pub fn is_metadata(&self) -> bool {
        self.flags & FLAG_METADATA != 0
    }
    /// Carries data bytes in the log (a write, not a discard or mark).
    pub fn has_data(&self) -> bool {
        !self.is_discard() && !self.is_mark() && self.nr_sectors > 0
    }
    /// Changes the data device (a write or a discard).
    pub fn modifies_device(&self) -> bool {
        !self.is_mark() && self.nr_sectors > 0
    }
    /// `FLUSH|FUA|...` rendering of the flags.
    pub fn flag_names(&self) -> String {
        let names = [
            (FLAG_FLUSH, "FLUSH"),
            (FLAG_FUA, "FUA"),
            (FLAG_DISCARD, "DISCARD"),
            (FLAG_MARK, "MARK"),
            (FLAG_METADATA, "METADATA"),
        ];
        let parts: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        if parts.is_empty() {
            "WRITE".to_string()
        } else {
            parts.join("|")
        }
    }
}

impl fmt::Display for Entry {
    /// One line of `powercut log inspect --list`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>8} @{:<12} {:<22} sector={} nr_sectors={}",
            self.index,
            self.header_offset_bytes,
            self.flag_names(),
            self.sector,
            self.nr_sectors
        )?;
        if let Some(label) = &self.mark {
            write!(f, " label={label}")?;
        }
        Ok(())
    }
}

/// Counts for `powercut log inspect` (JSON keys are part of the CLI contract).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogStats {
    /// Entries in the log.
    pub entries: u64,
    /// Entries that write data.
    pub writes: u64,
    /// FLUSH entries.
    pub flushes: u64,
    /// FUA writes.
    pub fua: u64,
    /// Discards.
    pub discards: u64,
    /// MARK entries.
    pub marks: u64,
    /// Bytes of data written.
    pub data_bytes: u64,
    /// Flushes + 1: the epochs the flushes delimit, the last one possibly empty.
    pub epochs: u64,
    /// Filled by the coverage check when it ran.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acks_covered: Option<u64>,
    /// Acks whose durable state was not shown on any state checked (filled with `acks_covered`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acks_uncovered: Option<u64>,
}

/// An opened, scanned log. Entry data stays on disk and is read with positioned reads.
#[derive(Debug)]
pub struct BlockLog {
    path: PathBuf,
    file: File,
    len_bytes: u64,
    sectorsize: u32,
    nr_entries_in_super: u64,
    entries: Vec<Entry>,
    scan_end: ScanEnd,
    hash: u32,
}

/// The walk over the entry headers of [`BlockLog::open`].
struct Scan<'a> {
    path: &'a Path,
    file: &'a File,
    len_bytes: u64,
    ss: u64,
    nr_entries_in_super: u64,
    header: Vec<u8>,
    /// Byte offset of the next header.
    offset: u64,
    /// Index of the next entry.
    index: u64,
    /// crc32c of the sectorsize and the headers so far ([`BlockLog::hash`]).
    hash: u32,
}

impl Scan<'_> {
    /// The next entry, or why the log ends here. Entries the super counts are trusted: a bad
    /// one is an error. Past them, the first bad one ends the log (stale or unwritten space).
    fn next_entry(&mut self) -> Result<Result<Entry, ScanEnd>, LogError> {
        if self.offset >= self.len_bytes {
            let why = format!(
                "log ends after {} entries but the super says {}",
                self.index, self.nr_entries_in_super
            );
            return self.stop(ScanEnd::EndOfFile, why);
        }
        if self.len_bytes - self.offset < self.ss {
            let why = "header sector cut short by the end of the file".to_string();
            return self.stop(ScanEnd::TruncatedEntry, why);
        }
        self.file
            .read_exact_at(&mut self.header, self.offset)
            .map_err(|source| LogError::Io {
                op: "read entry header",
                path: self.path.to_path_buf(),
                source,
            })?;
        let sector = le_u64(&self.header, 0);
        let nr_sectors = le_u64(&self.header, 8);
        let flags = le_u64(&self.header, 16);
        let data_len = le_u64(&self.header, 24);
        if self.header[..ENTRY_HEADER_BYTES].iter().all(|&b| b == 0) {
            return self.stop(ScanEnd::ZeroHeader, "zero header before nr_entries".into());
        }
        if flags & !ALL_FLAGS != 0 {
            return self.stop(ScanEnd::InvalidFlags, format!("unknown flags {flags:#x}"));
        }
        let (ss, offset) = (self.ss, self.offset);
        if let Err((reason, truncated)) = BlockLog::check_entry(
            sector,
            nr_sectors,
            flags,
            data_len,
            ss,
            offset,
            self.len_bytes,
        ) {
            let why = if truncated {
                ScanEnd::TruncatedEntry
            } else {
                ScanEnd::ImplausibleEntry
            };
            return self.stop(why, reason);
        }
        Ok(Ok(self.entry(sector, nr_sectors, flags, data_len)))
    }

    /// Where a bad header ends the log: an error among the entries the super counts (trusted),
    /// else the end of the log.
    fn stop(&self, end: ScanEnd, reason: String) -> Result<Result<Entry, ScanEnd>, LogError> {
        if self.index < self.nr_entries_in_super {
            return Err(LogError::BadEntry {
                path: self.path.to_path_buf(),
                index: self.index,
                offset: self.offset,
                reason,
            });
        }
        Ok(Err(end))
    }

    /// The entry of the header just read and checked; moves past it.
    fn entry(&mut self, sector: u64, nr_sectors: u64, flags: u64, data_len: u64) -> Entry {
        let (ss, offset) = (self.ss, self.offset);
        let is_mark = flags & FLAG_MARK != 0;
        let mark = if is_mark {
            // data_len <= sectorsize - 32 was checked above.
            let label = &self.header[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + data_len as usize];
            Some(String::from_utf8_lossy(label).into_owned())
        } else {
            None
        };
        let header_hash_len = ENTRY_HEADER_BYTES + if is_mark { data_len as usize } else { 0 };
        self.hash = crc32c::crc32c_append(self.hash, &self.header[..header_hash_len]);
        let carries_data = flags & (FLAG_MARK | FLAG_DISCARD) == 0;
        let data_bytes = if carries_data { nr_sectors * ss } else { 0 };
        let entry = Entry {
            index: self.index,
            header_offset_bytes: offset,
            sector,
            nr_sectors,
            flags,
            data_len,
            mark,
            // Checked against overflow above for everything but marks, which target nothing.
            target_offset_bytes: if is_mark {
                0
            } else {
                sector.saturating_mul(ss)
            },
            target_len_bytes: if is_mark {
                0
            } else {
                nr_sectors.saturating_mul(ss)
            },
            data_offset_bytes: offset + ss,
        };
        self.offset += ss + data_bytes;
        self.index += 1;
        entry
    }
}

/// What a file that is not a block log is, for [`LogError::NotALogFile`].
fn file_kind(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl BlockLog {
    /// Opens and scans `path`: reads every entry header (not the data).
    pub fn open(path: &Path) -> Result<BlockLog, LogError> {
        let io_err = |op, source| LogError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| io_err("open block log", e))?;
        let kind = file
            .metadata()
            .map_err(|e| io_err("stat block log", e))?
            .file_type();
        if !kind.is_file() && !kind.is_block_device() {
            return Err(LogError::NotALogFile {
                path: path.to_path_buf(),
                kind: file_kind(kind),
            });
        }
        // Reads of a file or a device then wait for their data as usual.
        let flags =
            fcntl(&file, FcntlArg::F_GETFL).map_err(|e| io_err("read flags of", e.into()))?;
        let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
        fcntl(&file, FcntlArg::F_SETFL(flags)).map_err(|e| io_err("set flags of", e.into()))?;
        // Seek rather than stat: a log device (block device) has no size in its metadata.
        let len_bytes = file
            .seek(SeekFrom::End(0))
            .map_err(|e| io_err("find the size of block log", e))?;
        Self::scan(path.to_path_buf(), file, len_bytes)
    }

    fn scan(path: PathBuf, file: File, len_bytes: u64) -> Result<BlockLog, LogError> {
        let (nr_entries_in_super, sectorsize) = Self::read_super(&path, &file, len_bytes)?;
        let mut scan = Scan {
            path: &path,
            file: &file,
            len_bytes,
            ss: u64::from(sectorsize),
            nr_entries_in_super,
            header: vec![0u8; sectorsize as usize],
            offset: u64::from(sectorsize),
            index: 0,
            hash: crc32c::crc32c(&sectorsize.to_le_bytes()),
        };
        // Capacity from the file size, never from nr_entries (untrusted).
        let mut entries = Vec::with_capacity(((len_bytes / scan.ss) as usize).min(1 << 16));
        let scan_end = loop {
            match scan.next_entry()? {
                Ok(entry) => entries.push(entry),
                Err(end) => break end,
            }
        };
        let hash = scan.hash;
        Ok(BlockLog {
            path,
            file,
            len_bytes,
            sectorsize,
            nr_entries_in_super,
            entries,
            scan_end,
            hash,
        })
    }

    /// Reads and checks the super block; returns its nr_entries and sectorsize.
    fn read_super(path: &Path, file: &File, len_bytes: u64) -> Result<(u64, u32), LogError> {
        let path = path.to_path_buf();
        let mut super_buf = [0u8; SUPER_BYTES];
        if len_bytes < SUPER_BYTES as u64 {
            return Err(LogError::NoSuper { path, len_bytes });
        }
        file.read_exact_at(&mut super_buf, 0)
            .map_err(|source| LogError::Io {
                op: "read super block",
                path: path.clone(),
                source,
            })?;
        let magic = le_u64(&super_buf, 0);
        if magic != LOG_MAGIC {
            return Err(LogError::BadMagic { path, magic });
        }
        let version = le_u64(&super_buf, 8);
        if version != LOG_VERSION {
            return Err(LogError::BadVersion { path, version });
        }
        let nr_entries_in_super = le_u64(&super_buf, 16);
        let sectorsize = u32::from_le_bytes(super_buf[24..28].try_into().unwrap_or([0; 4]));
        if sectorsize != 512 && sectorsize != 4096 {
            return Err(LogError::BadSectorSize { path, sectorsize });
        }
        Ok((nr_entries_in_super, sectorsize))
    }

    /// Validates one header; Err((reason, whether it is a truncation)).
    fn check_entry(
        sector: u64,
        nr_sectors: u64,
        flags: u64,
        data_len: u64,
        ss: u64,
        offset: u64,
        len_bytes: u64,
    ) -> Result<(), (String, bool)> {
        if flags & FLAG_MARK != 0 {
            if data_len > ss - ENTRY_HEADER_BYTES as u64 {
                return Err((
                    format!("mark label of {data_len} bytes does not fit the sector"),
                    false,
                ));
            }
            if nr_sectors != 0 || flags & FLAG_DISCARD != 0 {
                return Err(("mark with sectors or discard flag".into(), false));
            }
            return Ok(());
        }
        let Some(target_len) = nr_sectors.checked_mul(ss) else {
            return Err((format!("nr_sectors {nr_sectors} overflows"), false));
        };
        if sector
            .checked_mul(ss)
            .and_then(|s| s.checked_add(target_len))
            .is_none()
        {
            return Err((
                format!("sector {sector} + nr_sectors {nr_sectors} overflows"),
                false,
            ));
        }
        if flags & FLAG_DISCARD != 0 {
            if nr_sectors == 0 {
                return Err(("discard of zero sectors".into(), false));
            }
            return Ok(());
        }
        if nr_sectors == 0 {
            if flags & FLAG_FLUSH == 0 {
                return Err(("write of zero sectors that is not a flush".into(), false));
            }
            return Ok(());
        }
        if target_len > MAX_ENTRY_DATA_BYTES {
            return Err((
                format!("nr_sectors {nr_sectors} is absurd ({target_len} bytes)"),
                false,
            ));
        }
        let data_end = offset + ss + target_len;
        if data_end > len_bytes {
            return Err((
                format!(
                    "data of {target_len} bytes runs past the end of the file ({len_bytes} bytes)"
                ),
                true,
            ));
        }
        Ok(())
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The log's length in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }
    /// Bytes per log sector and per unit of `sector`/`nr_sectors`.
    pub fn sectorsize(&self) -> u32 {
        self.sectorsize
    }
    /// nr_entries as written in the super block (stale in QEMU logs).
    pub fn nr_entries_in_super(&self) -> u64 {
        self.nr_entries_in_super
    }
    /// Forgets every entry after the first `n` (no-op when there are fewer): the log is then
    /// read as if it ended there. Used for recordings whose tail is not known to be whole.
    pub fn keep_first_entries(&mut self, n: u64) {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.entries.truncate(n);
    }
    /// First byte past the last entry: how much of a log device the log uses. Scanning goes past
    /// the super's nr_entries, which lags behind when the recorder was killed.
    pub fn end_bytes(&self) -> u64 {
        self.entries.last().map_or(u64::from(self.sectorsize), |e| {
            e.data_offset_bytes + if e.has_data() { e.target_len_bytes } else { 0 }
        })
    }
    /// Entries found past nr_entries by scanning.
    pub fn entries_past_nr_entries(&self) -> u64 {
        (self.entries.len() as u64).saturating_sub(self.nr_entries_in_super)
    }
    /// How the scan for entries ended.
    pub fn scan_end(&self) -> ScanEnd {
        self.scan_end
    }
    /// The entries, in log order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// crc32c of the sectorsize and every entry header (and mark label): identifies the log in
    /// state ids without hashing gigabytes of data.
    pub fn hash(&self) -> u32 {
        self.hash
    }
    /// `hash()` as 8 lowercase hex digits.
    pub fn hash_hex(&self) -> String {
        format!("{:08x}", self.hash)
    }

    /// Reads `buf.len()` data bytes of `entry` starting `offset_in_entry` bytes into its data.
    pub fn read_data_at(
        &self,
        entry: &Entry,
        offset_in_entry: u64,
        buf: &mut [u8],
    ) -> Result<(), LogError> {
        let end = offset_in_entry.checked_add(buf.len() as u64);
        if !entry.has_data() || end.is_none_or(|e| e > entry.target_len_bytes) {
            return Err(LogError::BadEntry {
                path: self.path.clone(),
                index: entry.index,
                offset: entry.header_offset_bytes,
                reason: format!(
                    "read of {} bytes at {offset_in_entry} outside the entry's data",
                    buf.len()
                ),
            });
        }
        self.file
            .read_exact_at(buf, entry.data_offset_bytes + offset_in_entry)
            .map_err(|source| LogError::Io {
                op: "read entry data",
                path: self.path.clone(),
                source,
            })
    }

    /// Reads all data of `entry` (bounded by [`MAX_ENTRY_DATA_BYTES`] and the file size).
    pub fn read_data(&self, entry: &Entry) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![
            0u8;
            if entry.has_data() {
                entry.target_len_bytes as usize
            } else {
                0
            }
        ];
        if !buf.is_empty() {
            self.read_data_at(entry, 0, &mut buf)?;
        }
        Ok(buf)
    }

    /// Counts for `log inspect`.
    pub fn stats(&self) -> LogStats {
        let mut s = LogStats {
            entries: self.entries.len() as u64,
            ..LogStats::default()
        };
        for e in &self.entries {
            if e.is_flush() {
                s.flushes += 1;
            }
            if e.is_fua() {
                s.fua += 1;
            }
            if e.is_discard() {
                s.discards += 1;
            }
            if e.is_mark() {
                s.marks += 1;
            }
            if e.has_data() {
                s.writes += 1;
                s.data_bytes += e.target_len_bytes;
            }
        }
        s.epochs = s.flushes + 1;
        s
    }

    /// Index of the first MARK whose label is exactly `label`.
    pub fn find_mark(&self, label: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.mark.as_deref() == Some(label))
            .map(|e| e.index)
    }
}

/// Builds logs (tests, synthetic scenarios, benchmarks).
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    sectorsize: u32,
    entries: u64,
    zeros: Vec<u8>,
}

impl LogWriter {
    /// Creates (truncates) `path` with an empty log of `sectorsize` (512 or 4096).
    pub fn create(path: &Path, sectorsize: u32) -> io::Result<LogWriter> {
        if sectorsize != 512 && sectorsize != 4096 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "sectorsize must be 512 or 4096",
            ));
        }
        let file = File::create(path)?;
        let mut w = LogWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            sectorsize,
            entries: 0,
            zeros: vec![0u8; sectorsize as usize],
        };
        let sup = w.super_bytes(0);
        w.out.write_all(&sup)?;
        Ok(w)
    }

    fn super_bytes(&self, nr_entries: u64) -> Vec<u8> {
        let mut b = vec![0u8; self.sectorsize as usize];
        b[0..8].copy_from_slice(&LOG_MAGIC.to_le_bytes());
        b[8..16].copy_from_slice(&LOG_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&nr_entries.to_le_bytes());
        b[24..28].copy_from_slice(&self.sectorsize.to_le_bytes());
        b
    }

    /// Sector size of the log, in bytes.
    pub fn sectorsize(&self) -> u32 {
        self.sectorsize
    }

    /// Entries written so far (the index the next entry gets).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Appends a raw entry. `data` must be a whole number of sectors for data-carrying entries.
    pub fn raw_entry(
        &mut self,
        sector: u64,
        nr_sectors: u64,
        flags: u64,
        label: &[u8],
        data: &[u8],
    ) -> io::Result<u64> {
        let ss = self.sectorsize as usize;
        if label.len() > ss - ENTRY_HEADER_BYTES || !data.len().is_multiple_of(ss) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad label or data length",
            ));
        }
        let mut header = vec![0u8; ss];
        header[0..8].copy_from_slice(&sector.to_le_bytes());
        header[8..16].copy_from_slice(&nr_sectors.to_le_bytes());
        header[16..24].copy_from_slice(&flags.to_le_bytes());
        header[24..32].copy_from_slice(&(label.len() as u64).to_le_bytes());
        header[32..32 + label.len()].copy_from_slice(label);
        self.out.write_all(&header)?;
        self.out.write_all(data)?;
        self.entries += 1;
        Ok(self.entries - 1)
    }

    /// A write of `data` (whole sectors) at `sector` with extra `flags` (FUA, FLUSH, METADATA).
    pub fn write(&mut self, sector: u64, data: &[u8], flags: u64) -> io::Result<u64> {
        let nr = (data.len() / self.sectorsize as usize) as u64;
        self.raw_entry(sector, nr, flags, &[], data)
    }

    /// An empty flush.
    pub fn flush(&mut self) -> io::Result<u64> {
        self.raw_entry(0, 0, FLAG_FLUSH, &[], &[])
    }

    /// A discard of `nr_sectors` sectors at `sector`; returns the entry's index.
    pub fn discard(&mut self, sector: u64, nr_sectors: u64) -> io::Result<u64> {
        self.raw_entry(sector, nr_sectors, FLAG_DISCARD, &[], &[])
    }

    /// A MARK carrying `label`; returns the entry's index.
    pub fn mark(&mut self, label: &str) -> io::Result<u64> {
        self.raw_entry(0, 0, FLAG_MARK, label.as_bytes(), &[])
    }

    /// Writes the super with `nr_entries` (Some(n) < entries() imitates QEMU's stale count) and
    /// `trailing_zero_sectors` of zeros (the unwritten rest of a log device).
    pub fn finish(
        mut self,
        nr_entries: Option<u64>,
        trailing_zero_sectors: u64,
    ) -> io::Result<PathBuf> {
        for _ in 0..trailing_zero_sectors {
            let z = std::mem::take(&mut self.zeros);
            self.out.write_all(&z)?;
            self.zeros = z;
        }
        let sup = self.super_bytes(nr_entries.unwrap_or(self.entries));
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&sup)?;
        file.sync_data()?;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_log(dir: &Path, ss: u32) -> PathBuf {
        let p = dir.join("log");
        let mut w = LogWriter::create(&p, ss).unwrap();
        let s = ss as usize;
        w.write(8, &vec![1u8; 2 * s], 0).unwrap();
        w.flush().unwrap();
        w.mark("r:1-1:00000000").unwrap();
        w.write(16, &vec![2u8; s], FLAG_FUA).unwrap();
        w.discard(8, 1).unwrap();
        w.write(3, &vec![3u8; s], FLAG_FLUSH | FLAG_METADATA)
            .unwrap();
        w.finish(None, 0).unwrap()
    }

    #[test]
    fn round_trip_both_sector_sizes() {
        for ss in [512u32, 4096] {
            let dir = tempfile::tempdir().unwrap();
            let log = BlockLog::open(&sample_log(dir.path(), ss)).unwrap();
            assert_eq!(log.sectorsize(), ss);
            assert_eq!(log.entries().len(), 6);
            assert_eq!(log.scan_end(), ScanEnd::EndOfFile);
            let e = &log.entries()[0];
            assert_eq!(
                (e.sector, e.nr_sectors, e.target_offset_bytes),
                (8, 2, 8 * u64::from(ss))
            );
            assert_eq!(log.read_data(e).unwrap(), vec![1u8; 2 * ss as usize]);
            assert_eq!(log.entries()[2].mark.as_deref(), Some("r:1-1:00000000"));
            assert_eq!(log.find_mark("r:1-1:00000000"), Some(2));
            let s = log.stats();
            assert_eq!(
                (s.entries, s.writes, s.flushes, s.fua, s.discards, s.marks, s.epochs),
                (6, 3, 2, 1, 1, 1, 3)
            );
            assert_eq!(s.data_bytes, 4 * u64::from(ss));
            let json = serde_json::to_value(&s).unwrap();
            for key in [
                "entries",
                "writes",
                "flushes",
                "fua",
                "discards",
                "marks",
                "data_bytes",
                "epochs",
            ] {
                assert!(json.get(key).is_some(), "{key}");
            }
            assert!(log.entries()[5].to_string().contains("FLUSH|METADATA"));
        }
    }

    #[test]
    fn stale_nr_entries_scans_past_to_zero_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = LogWriter::create(&p, 512).unwrap();
        for i in 0..10 {
            w.write(i, &[7u8; 512], 0).unwrap();
        }
        w.mark("s:x").unwrap();
        w.flush().unwrap();
        w.finish(Some(4), 8).unwrap();
        let log = BlockLog::open(&p).unwrap();
        assert_eq!(log.entries().len(), 12);
        assert_eq!(log.entries_past_nr_entries(), 8);
        assert_eq!(log.scan_end(), ScanEnd::ZeroHeader);
        // The super, ten writes of a header and a data sector, a mark and a flush.
        assert_eq!(log.end_bytes(), 512 + 10 * 1024 + 2 * 512);
        assert_eq!(
            log.end_bytes() + 8 * 512,
            std::fs::metadata(&p).unwrap().len()
        );
    }

    #[test]
    fn garbled_logs_give_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample_log(dir.path(), 512);
        let good = std::fs::read(&p).unwrap();
        let q = dir.path().join("bad");
        let check = |bytes: &[u8], want: &str| {
            std::fs::write(&q, bytes).unwrap();
            let err = BlockLog::open(&q).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        };
        let mut b = good.clone();
        b[0] ^= 1;
        check(&b, "bad magic");
        let mut b = good.clone();
        b[8] = 2;
        check(&b, "version");
        let mut b = good.clone();
        b[24..28].copy_from_slice(&1024u32.to_le_bytes());
        check(&b, "sectorsize");
        check(&good[..good.len() - 100], "entry 5 at byte");
        let mut b = good.clone();
        // entry 0 header at 512: nr_sectors absurd
        b[520..528].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        check(&b, "entry 0 at byte 512");
        let mut b = good.clone();
        // entry 2 (mark) header: 512 + (512+1024) + 512 = 2560; data_len too big
        b[2560 + 24..2560 + 32].copy_from_slice(&600u64.to_le_bytes());
        check(&b, "entry 2 at byte 2560: mark label");
        let mut b = good.clone();
        b[512 + 16] = 0x40;
        check(&b, "unknown flags");
        check(&good[..10], "shorter than the super");
    }

    #[test]
    fn fifo_and_directory_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Opened on another thread: a regression hangs there and fails the timeout here.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(BlockLog::open(&path).map(|_| ()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("BlockLog::open of a FIFO blocked");
        let err = result.unwrap_err();
        assert!(
            matches!(err, LogError::NotALogFile { kind: "FIFO", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("is a FIFO"), "{err}");
        let err = BlockLog::open(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                LogError::NotALogFile {
                    kind: "directory",
                    ..
                }
            ),
            "{err}"
        );
        // A symlink to a log is followed and read like the log.
        let log = sample_log(dir.path(), 512);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&log, &link).unwrap();
        assert_eq!(BlockLog::open(&link).unwrap().entries().len(), 6);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("log");
            std::fs::write(&p, &bytes).unwrap();
            if let Ok(log) = BlockLog::open(&p) {
                for e in log.entries() {
                    let _ = log.read_data(e);
                }
                let _ = log.stats();
            }
        }

        #[test]
        fn mutated_valid_logs_never_panic(
            flips in proptest::collection::vec((0usize..6000, any::<u8>()), 1..8),
            cut in 0usize..7000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let p = sample_log(dir.path(), 512);
            let mut bytes = std::fs::read(&p).unwrap();
            for (at, v) in flips {
                if at < bytes.len() {
                    bytes[at] = v;
                }
            }
            bytes.truncate(cut);
            std::fs::write(&p, &bytes).unwrap();
            if let Ok(log) = BlockLog::open(&p) {
                for e in log.entries() {
                    let _ = log.read_data(e);
                }
            }
        }
    }
}
