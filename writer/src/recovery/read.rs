//! Reading a segment in bounded pieces: a window of `read_chunk_bytes` slides over the file,
//! so recovery never holds (nor allocates, nor zero-fills) a whole segment.

use std::path::{Path, PathBuf};

use super::records::decode_for;
use super::MAX_SEGMENT_FILE_BYTES;
use crate::error::JournalError;
use crate::mutants::Mutant;
use crate::options::MAX_STAGING_BYTES;
use crate::record::{
    parse_header, record_span_bytes, DecodeFailure, DecodedRecord, HEADER_BYTES, RECORD_MAGIC,
};
use crate::segment::SegmentName;
use crate::storage::{AlignedBuf, ReadFile, Storage, MAX_BLOCK_BYTES, READ_ALIGN_BYTES};

/// Smallest window: a gap between two groups (under one write block) and the header after it
/// fit in one read.
pub(super) const MIN_READ_CHUNK_BYTES: usize = 2 * MAX_BLOCK_BYTES;

/// Longest payload a writer can have written: a record fits in one staging buffer. A header
/// claiming more is not a record, and is never read whole.
const MAX_PAYLOAD_BYTES: u64 = MAX_STAGING_BYTES as u64;

/// One segment file, read through a window of at least `chunk` bytes (larger only to hold a
/// record longer than that).
#[derive(Debug)]
pub(super) struct SegmentReader {
    file: Box<dyn ReadFile>,
    path: PathBuf,
    len: u64,
    chunk: usize,
    buf: Option<AlignedBuf>,
    /// File offset of the window's first byte.
    start: u64,
    /// Bytes of the window read from the file.
    filled: usize,
    /// Size of the next read: it starts small and doubles up to `chunk`, so that a short
    /// read (a log ending early in a large preallocated file) allocates and zeroes little.
    next_read: usize,
}

impl SegmentReader {
    /// Opens segment `seg`, refusing a file the engine cannot have written: every life of a
    /// segment file starts with zeros (prepared, unused), a record header of this or an
    /// earlier generation, or (append mode) nothing. Anything else is a stray file with a
    /// segment's name, which opening would otherwise zero-fill as a "torn tail".
    pub(super) fn open(
        storage: &dyn Storage,
        dir: &Path,
        seg: SegmentName,
        chunk_bytes: usize,
        buf: Option<AlignedBuf>,
    ) -> Result<SegmentReader, JournalError> {
        let path = dir.join(seg.file_name());
        let file = storage
            .open_read(&path, MAX_SEGMENT_FILE_BYTES)
            .map_err(|err| JournalError::io("read segment", &path, 0, err))?;
        let chunk = chunk_bytes
            .max(MIN_READ_CHUNK_BYTES)
            .div_ceil(READ_ALIGN_BYTES)
            * READ_ALIGN_BYTES;
        let mut reader = SegmentReader {
            len: file.len_bytes(),
            file,
            path,
            chunk,
            buf,
            start: 0,
            filled: 0,
            next_read: MIN_READ_CHUNK_BYTES.min(chunk),
        };
        let head = reader.bytes(0, 4)?.to_vec();
        if !head.iter().all(|&b| b == 0) && head != RECORD_MAGIC.to_le_bytes() {
            return Err(JournalError::BadSegmentFile {
                path: reader.path,
                reason: format!(
                    "starts with {head:02x?}, neither zeros nor a record header: not a segment \
                     this engine wrote, so it is left untouched"
                ),
            });
        }
        Ok(reader)
    }

    /// The read buffer, for another reader.
    pub(super) fn into_buf(self) -> Option<AlignedBuf> {
        self.buf
    }

    /// File size.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Where the zeros the storage knows of from `offset` end (`offset` when it knows none).
    pub(super) fn zeros_until(&self, offset: u64) -> u64 {
        self.file
            .zeros_until(offset)
            .clamp(offset, self.len.max(offset))
    }

    /// The bytes from `offset` to `offset + len`, fewer at the end of the file.
    pub(super) fn bytes(&mut self, offset: u64, len: usize) -> Result<&[u8], JournalError> {
        let end = offset.saturating_add(len as u64).min(self.len);
        if offset >= end {
            return Ok(&[]);
        }
        if offset < self.start || end > self.start + self.filled as u64 {
            self.load(offset, (end - offset) as usize)?;
        }
        let from = (offset - self.start) as usize;
        let to = ((end - self.start) as usize).min(self.filled);
        Ok(&self.window()[from.min(to)..to])
    }

    /// The bytes from `offset` on that are in the window (read first when `offset` is not),
    /// up to `limit`: at least one byte while `offset < limit` and the file goes on.
    pub(super) fn chunk(&mut self, offset: u64, limit: u64) -> Result<&[u8], JournalError> {
        let limit = limit.min(self.len);
        let in_window = offset >= self.start && offset < self.start + self.filled as u64;
        let len = if in_window {
            self.start + self.filled as u64 - offset
        } else {
            self.next_read as u64
        };
        self.bytes(offset, len.min(limit.saturating_sub(offset)) as usize)
    }

    /// Decodes the record at `at` as recovery (or the broken variant `mutant` of it) does,
    /// reading only as much as its header claims, and never more than a writer can write.
    pub(super) fn record(
        &mut self,
        at: u64,
        mutant: Option<Mutant>,
    ) -> Result<Result<DecodedRecord<'_>, DecodeFailure>, JournalError> {
        let head = self.bytes(at, HEADER_BYTES)?;
        if head.len() < HEADER_BYTES {
            return Ok(Err(DecodeFailure::ShortHeader));
        }
        let Some(header) = parse_header(head) else {
            return Ok(Err(DecodeFailure::BadMagic));
        };
        let len = u64::from(header.len);
        if len > self.len - at - HEADER_BYTES as u64 || len > MAX_PAYLOAD_BYTES {
            return Ok(Err(DecodeFailure::ShortPayload));
        }
        // Cut at the end of the file, like the padding of a file truncated to its logical size.
        let bytes = self.bytes(at, record_span_bytes(len as usize))?;
        Ok(decode_for(bytes, mutant))
    }

    fn window(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => &buf[..self.filled],
            None => &[],
        }
    }

    /// Reads the window so that it starts at or before `offset` and holds `len` bytes from it.
    fn load(&mut self, offset: u64, len: usize) -> Result<(), JournalError> {
        let align = READ_ALIGN_BYTES as u64;
        let start = offset / align * align;
        let need = (offset - start) as usize + len;
        let to_end = (self.len - start).div_ceil(align) * align;
        let size = need.max(self.next_read).div_ceil(READ_ALIGN_BYTES) * READ_ALIGN_BYTES;
        self.next_read = (self.next_read * 2).min(self.chunk);
        let size = size.min(usize::try_from(to_end).unwrap_or(usize::MAX));
        if self.buf.as_ref().is_none_or(|buf| buf.capacity() < size) {
            // The first reads of a file (while the window grows) and a record longer than the
            // chunk get here.
            // The old buffer goes first: the two are never held at once.
            self.buf = None;
            self.buf = Some(AlignedBuf::new(size, READ_ALIGN_BYTES));
        }
        let buf = self.buf.as_mut().expect("allocated above");
        let got = self
            .file
            .read_at(&mut buf[..size], start)
            .map_err(|err| JournalError::io("read segment", &self.path, start, err))?;
        self.start = start;
        self.filled = got;
        Ok(())
    }
}
