//! A newc ("070701") cpio archive writer, the format the kernel unpacks as initramfs.
//!
//! The host has no cpio binary and the format is small: per entry a 110-byte ASCII header of
//! thirteen 8-digit hex fields, the NUL-terminated name padded to 4 bytes, the data padded to 4
//! bytes; a `TRAILER!!!` entry ends the archive. The kernel takes it uncompressed.

use std::io::Write;

const NEWC_MAGIC: &str = "070701";
const HEADER_BYTES: usize = 110;

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Builds an archive in memory, entry by entry.
#[derive(Debug, Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    next_inode: u32,
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

impl CpioWriter {
    pub fn new() -> Self {
        CpioWriter {
            out: Vec::new(),
            next_inode: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry_with_rdev(name, mode, data, (0, 0));
    }

    fn entry_with_rdev(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        let name = name.trim_start_matches('/');
        let inode = self.next_inode;
        self.next_inode += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so equal inputs give equal archives
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check (unused by newc)
        ];
        let start = self.out.len();
        self.out.extend_from_slice(NEWC_MAGIC.as_bytes());
        for field in fields {
            // Writing into a Vec cannot fail.
            let _ = write!(self.out, "{field:08x}");
        }
        debug_assert_eq!(self.out.len() - start, HEADER_BYTES);
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
    }

    /// A directory (parents must be added first).
    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, &[]);
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | (perm & 0o7777), data);
    }

    /// A character device node.
    pub fn char_device(&mut self, name: &str, major: u32, minor: u32, perm: u32) {
        self.entry_with_rdev(name, S_IFCHR | (perm & 0o7777), &[], (major, minor));
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, target.as_bytes());
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        // The kernel reads the archive in 512-byte blocks; pad like cpio does.
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, data) of every entry, parsed back.
    fn parse(archive: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            let header = std::str::from_utf8(&archive[at..at + HEADER_BYTES]).unwrap();
            assert!(header.starts_with(NEWC_MAGIC));
            let field = |i: usize| u32::from_str_radix(&header[6 + 8 * i..14 + 8 * i], 16).unwrap();
            let (mode, size, name_len) = (field(1), field(6) as usize, field(11) as usize);
            let name_at = at + HEADER_BYTES;
            let name = std::str::from_utf8(&archive[name_at..name_at + name_len - 1])
                .unwrap()
                .to_string();
            let data_at = (name_at + name_len).div_ceil(4) * 4;
            let data = archive[data_at..data_at + size].to_vec();
            at = (data_at + size).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                return entries;
            }
            entries.push((name, mode, data));
        }
    }

    #[test]
    fn archive_parses_back() {
        let mut cpio = CpioWriter::new();
        cpio.dir("/bin");
        cpio.file("bin/busybox", 0o755, b"ELF...");
        cpio.symlink("bin/sh", "busybox");
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        let archive = cpio.finish();
        assert_eq!(archive.len() % 512, 0);
        let entries = parse(&archive);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0], ("bin".to_string(), S_IFDIR | 0o755, vec![]));
        assert_eq!(
            entries[1],
            (
                "bin/busybox".to_string(),
                S_IFREG | 0o755,
                b"ELF...".to_vec()
            )
        );
        assert_eq!(
            entries[2],
            ("bin/sh".to_string(), S_IFLNK | 0o777, b"busybox".to_vec())
        );
        assert_eq!(entries[3].2, b"#!/bin/sh\n");
    }
}
