//! Device-mapper through `/dev/mapper/control` (dm ioctl interface version 4).
//!
//! Layout of `struct dm_ioctl` (native endian, 312 bytes), as in `linux/dm-ioctl.h`:
//!
//! ```text
//! 0 version[3] u32 | 12 data_size u32 | 16 data_start u32 | 20 target_count u32
//! 24 open_count i32 | 28 flags u32 | 32 event_nr u32 | 36 padding u32 | 40 dev u64
//! 48 name[128] | 176 uuid[129] | 305 data[7]
//! ```
//!
//! followed (table load, status) by `struct dm_target_spec` (40 bytes: sector_start u64, length
//! u64, status i32, next u32, `target_type[16]`) and a NUL-terminated parameter string.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::sys::guest::{dm_ioctl, DM_IOCTL_STRUCT_BYTES};

const DM_VERSION_CMD: u8 = 0;
const DM_LIST_DEVICES_CMD: u8 = 2;
const DM_DEV_CREATE_CMD: u8 = 3;
const DM_DEV_REMOVE_CMD: u8 = 4;
const DM_DEV_SUSPEND_CMD: u8 = 6;
const DM_TABLE_LOAD_CMD: u8 = 9;
const DM_TABLE_STATUS_CMD: u8 = 12;
const DM_LIST_VERSIONS_CMD: u8 = 13;
const DM_TARGET_MSG_CMD: u8 = 14;

const DM_SUSPEND_FLAG: u32 = 1 << 1;
const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;
const DM_SKIP_LOCKFS_FLAG: u32 = 1 << 10;
const DM_NOFLUSH_FLAG: u32 = 1 << 11;

const DM_NAME_LEN: usize = 128;
const DM_MAX_TYPE_NAME: usize = 16;
const TARGET_SPEC_BYTES: usize = 40;
/// Interface version we speak; the kernel accepts any 4.x with x <= its own minor.
const INTERFACE_VERSION: [u32; 3] = [4, 0, 0];

const OFFSET_DATA_SIZE: usize = 12;
const OFFSET_DATA_START: usize = 16;
const OFFSET_TARGET_COUNT: usize = 20;
const OFFSET_FLAGS: usize = 28;
const OFFSET_DEV: usize = 40;
const OFFSET_NAME: usize = 48;

const _: () = assert!(OFFSET_NAME + DM_NAME_LEN + 129 + 7 == DM_IOCTL_STRUCT_BYTES);
const _: () = assert!(DM_IOCTL_STRUCT_BYTES.is_multiple_of(8));

/// Path of the control node.
pub const CONTROL_PATH: &str = "/dev/mapper/control";

/// A device-mapper failure, naming the command and the device.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    /// Opening the dm control device failed.
    #[error("opening {path}: {source}")]
    Open {
        /// The device opened.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A dm ioctl failed.
    #[error("dm {op} on device {name:?}: {source}")]
    Ioctl {
        /// The dm command.
        op: &'static str,
        /// The dm device's name.
        name: String,
        /// Cause.
        source: nix::Error,
    },
    /// A dm reply makes no sense.
    #[error("dm {op} on device {name:?}: {reason}")]
    Invalid {
        /// The dm command.
        op: &'static str,
        /// The dm device's name.
        name: String,
        /// What is wrong with the reply.
        reason: String,
    },
    /// Creating the device node failed.
    #[error("creating device node {path}: {source}")]
    Node {
        /// The node's path.
        path: PathBuf,
        /// Cause.
        source: nix::Error,
    },
}

/// One line of a dm table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// First sector covered, in 512-byte sectors.
    pub start_sector: u64,
    /// Sectors covered.
    pub length_sectors: u64,
    /// Target type (`linear`, `log-writes`, `error`, ...).
    pub target_type: String,
    /// Target parameters, as in a dm table line.
    pub params: String,
}

/// Status of one target (`dmsetup status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// First sector covered, in 512-byte sectors.
    pub start_sector: u64,
    /// Sectors covered.
    pub length_sectors: u64,
    /// Target type (`linear`, `log-writes`, `error`, ...).
    pub target_type: String,
    /// The target's status line.
    pub status: String,
}

/// How to suspend a device.
#[derive(Debug, Clone, Copy, Default)]
pub struct SuspendFlags {
    /// Do not freeze the file system (`--nolockfs`): dirty pages stay dirty across a table swap.
    pub skip_lockfs: bool,
    /// Do not wait for in-flight I/O to drain (`--noflush`).
    pub no_flush: bool,
}

/// An open `/dev/mapper/control`.
#[derive(Debug)]
pub struct DmControl {
    control: File,
}

/// A request buffer: `struct dm_ioctl` plus `data_bytes` of data area.
fn request(name: &str, data_bytes: usize, op: &'static str) -> Result<Vec<u8>, DmError> {
    if name.is_empty() || name.len() >= DM_NAME_LEN || name.contains('/') {
        return Err(DmError::Invalid {
            op,
            name: name.into(),
            reason: "bad device name".into(),
        });
    }
    let total = DM_IOCTL_STRUCT_BYTES + data_bytes.div_ceil(8) * 8;
    let mut buf = vec![0u8; total];
    for (i, v) in INTERFACE_VERSION.iter().enumerate() {
        put_u32(&mut buf, i * 4, *v);
    }
    put_u32(&mut buf, OFFSET_DATA_SIZE, total as u32);
    put_u32(&mut buf, OFFSET_DATA_START, DM_IOCTL_STRUCT_BYTES as u32);
    buf[OFFSET_NAME..OFFSET_NAME + name.len()].copy_from_slice(name.as_bytes());
    Ok(buf)
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap())
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(buf[at..at + 8].try_into().unwrap())
}

/// The C string at the start of `bytes` (up to the first NUL).
fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Encodes a table (specs and parameter strings) for DM_TABLE_LOAD.
fn encode_table(name: &str, targets: &[Target]) -> Result<Vec<u8>, DmError> {
    let op = "table load";
    let invalid = |reason: String| DmError::Invalid {
        op,
        name: name.into(),
        reason,
    };
    let mut data = Vec::new();
    for target in targets {
        if target.target_type.is_empty() || target.target_type.len() >= DM_MAX_TYPE_NAME {
            return Err(invalid(format!("target type {:?}", target.target_type)));
        }
        if target.params.contains('\0') {
            return Err(invalid("NUL in target parameters".into()));
        }
        let spec_bytes = (TARGET_SPEC_BYTES + target.params.len() + 1).div_ceil(8) * 8;
        let at = data.len();
        data.resize(at + spec_bytes, 0);
        put_u64(&mut data, at, target.start_sector);
        put_u64(&mut data, at + 8, target.length_sectors);
        // `next` is the offset from this spec to the following one.
        put_u32(&mut data, at + 20, spec_bytes as u32);
        data[at + 24..at + 24 + target.target_type.len()]
            .copy_from_slice(target.target_type.as_bytes());
        let params_at = at + TARGET_SPEC_BYTES;
        data[params_at..params_at + target.params.len()].copy_from_slice(target.params.as_bytes());
    }
    let mut buf = request(name, data.len(), op)?;
    buf[DM_IOCTL_STRUCT_BYTES..DM_IOCTL_STRUCT_BYTES + data.len()].copy_from_slice(&data);
    put_u32(&mut buf, OFFSET_TARGET_COUNT, targets.len() as u32);
    Ok(buf)
}

/// The output area of a list request: `data_start..data_size` of the reply.
fn output_area<'a>(op: &'static str, buf: &'a [u8]) -> Result<&'a [u8], DmError> {
    let data_start = get_u32(buf, OFFSET_DATA_START) as usize;
    let data_size = (get_u32(buf, OFFSET_DATA_SIZE) as usize).min(buf.len());
    if data_start < DM_IOCTL_STRUCT_BYTES || data_start > data_size {
        return Err(DmError::Invalid {
            op,
            name: String::new(),
            reason: "data_start outside the buffer".into(),
        });
    }
    Ok(&buf[data_start..data_size])
}

/// Walks a chain of variable-size records (`struct dm_name_list`, `struct dm_target_versions`):
/// `next_at` is where each record keeps the offset of the following one, relative to itself;
/// 0 ends the chain. Calls `each(record)` with the bytes from the record to the end of `out`.
fn walk_chain(out: &[u8], min_bytes: usize, next_at: usize, mut each: impl FnMut(&[u8])) {
    let mut at = 0usize;
    while at + min_bytes <= out.len() {
        let record = &out[at..];
        each(record);
        let next = get_u32(record, next_at) as usize;
        if next == 0 {
            break;
        }
        at += next;
    }
}

/// Decodes the `struct dm_target_versions` chain of DM_LIST_VERSIONS: u32 next, u32 version[3],
/// then the NUL-terminated target name.
fn decode_versions(buf: &[u8]) -> Result<Vec<(String, [u32; 3])>, DmError> {
    let out = output_area("list versions", buf)?;
    let mut targets = Vec::new();
    walk_chain(out, 17, 0, |record| {
        let version = [get_u32(record, 4), get_u32(record, 8), get_u32(record, 12)];
        targets.push((c_str(&record[16..]), version));
    });
    Ok(targets)
}

/// Decodes the `struct dm_name_list` chain of DM_LIST_DEVICES: u64 dev, u32 next, then the
/// NUL-terminated name. A lone record with `dev` 0 means no devices.
fn decode_devices(buf: &[u8]) -> Result<Vec<(String, u64)>, DmError> {
    let out = output_area("list devices", buf)?;
    let mut devices = Vec::new();
    walk_chain(out, 13, 8, |record| {
        let dev = get_u64(record, 0);
        if dev != 0 {
            devices.push((c_str(&record[12..]), dev));
        }
    });
    Ok(devices)
}

/// Decodes the target specs and strings a status request returned.
fn decode_status(name: &str, buf: &[u8]) -> Result<Vec<TargetStatus>, DmError> {
    let op = "table status";
    let invalid = |reason: &str| DmError::Invalid {
        op,
        name: name.into(),
        reason: reason.into(),
    };
    let count = get_u32(buf, OFFSET_TARGET_COUNT) as usize;
    let data_start = get_u32(buf, OFFSET_DATA_START) as usize;
    let data_size = (get_u32(buf, OFFSET_DATA_SIZE) as usize).min(buf.len());
    if data_start < DM_IOCTL_STRUCT_BYTES || data_start > data_size {
        return Err(invalid("data_start outside the buffer"));
    }
    let out = &buf[data_start..data_size];
    let mut statuses = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        if at + TARGET_SPEC_BYTES > out.len() {
            return Err(invalid("target spec past the end of the buffer"));
        }
        let spec = &out[at..at + TARGET_SPEC_BYTES];
        statuses.push(TargetStatus {
            start_sector: get_u64(spec, 0),
            length_sectors: get_u64(spec, 8),
            target_type: c_str(&spec[24..40]),
            status: c_str(&out[at + TARGET_SPEC_BYTES..]),
        });
        // For status output `next` is the offset from the start of the output area.
        let next = get_u32(spec, 20) as usize;
        if next <= at {
            break;
        }
        at = next;
    }
    Ok(statuses)
}

impl DmControl {
    /// Opens the control node (created by devtmpfs when dm-mod loads).
    pub fn open() -> Result<Self, DmError> {
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open(CONTROL_PATH)
            .map_err(|source| DmError::Open {
                path: CONTROL_PATH.into(),
                source,
            })?;
        Ok(DmControl { control })
    }

    fn call(
        &self,
        op: &'static str,
        name: &str,
        command: u8,
        buf: &mut [u8],
    ) -> Result<(), DmError> {
        dm_ioctl(self.control.as_fd(), command, buf).map_err(|source| DmError::Ioctl {
            op,
            name: name.into(),
            source,
        })
    }

    /// The kernel's dm interface version.
    pub fn version(&self) -> Result<[u32; 3], DmError> {
        let mut buf = request("version", 0, "version")?;
        self.call("version", "", DM_VERSION_CMD, &mut buf)?;
        Ok([get_u32(&buf, 0), get_u32(&buf, 4), get_u32(&buf, 8)])
    }

    /// Creates an empty device; returns its device number (userspace `dev_t` encoding).
    pub fn create(&self, name: &str) -> Result<u64, DmError> {
        let mut buf = request(name, 0, "create")?;
        self.call("create", name, DM_DEV_CREATE_CMD, &mut buf)?;
        Ok(get_u64(&buf, OFFSET_DEV))
    }

    /// Loads `targets` as the inactive table of `name`.
    pub fn load_table(&self, name: &str, targets: &[Target]) -> Result<(), DmError> {
        let mut buf = encode_table(name, targets)?;
        self.call("table load", name, DM_TABLE_LOAD_CMD, &mut buf)
    }

    /// Resumes `name`, swapping in the inactive table if there is one.
    pub fn resume(&self, name: &str) -> Result<(), DmError> {
        let mut buf = request(name, 0, "resume")?;
        self.call("resume", name, DM_DEV_SUSPEND_CMD, &mut buf)
    }

    /// Suspends `name`.
    pub fn suspend(&self, name: &str, flags: SuspendFlags) -> Result<(), DmError> {
        let mut buf = request(name, 0, "suspend")?;
        let mut bits = DM_SUSPEND_FLAG;
        if flags.skip_lockfs {
            bits |= DM_SKIP_LOCKFS_FLAG;
        }
        if flags.no_flush {
            bits |= DM_NOFLUSH_FLAG;
        }
        put_u32(&mut buf, OFFSET_FLAGS, bits);
        self.call("suspend", name, DM_DEV_SUSPEND_CMD, &mut buf)
    }

    /// Sends a target message (`dmsetup message NAME SECTOR MESSAGE`).
    pub fn message(&self, name: &str, sector: u64, message: &str) -> Result<(), DmError> {
        if message.contains('\0') {
            return Err(DmError::Invalid {
                op: "target message",
                name: name.into(),
                reason: "NUL in message".into(),
            });
        }
        // struct dm_target_msg: sector u64, then the NUL-terminated message.
        let data_bytes = 8 + message.len() + 1;
        let mut buf = request(name, data_bytes, "target message")?;
        put_u64(&mut buf, DM_IOCTL_STRUCT_BYTES, sector);
        let at = DM_IOCTL_STRUCT_BYTES + 8;
        buf[at..at + message.len()].copy_from_slice(message.as_bytes());
        self.call("target message", name, DM_TARGET_MSG_CMD, &mut buf)
    }

    /// The status lines of the active table (`dmsetup status NAME`).
    pub fn status(&self, name: &str) -> Result<Vec<TargetStatus>, DmError> {
        let mut data_bytes = 4096;
        loop {
            let mut buf = request(name, data_bytes, "table status")?;
            self.call("table status", name, DM_TABLE_STATUS_CMD, &mut buf)?;
            if get_u32(&buf, OFFSET_FLAGS) & DM_BUFFER_FULL_FLAG == 0 {
                return decode_status(name, &buf);
            }
            if data_bytes >= 1 << 20 {
                return Err(DmError::Invalid {
                    op: "table status",
                    name: name.into(),
                    reason: "status larger than 1 MiB".into(),
                });
            }
            data_bytes *= 4;
        }
    }

    /// Runs a list command, growing the buffer while the kernel says it is full.
    fn list(&self, op: &'static str, command: u8) -> Result<Vec<u8>, DmError> {
        let mut data_bytes = 16 << 10;
        loop {
            let mut buf = request("list", data_bytes, op)?;
            // A list request names no device.
            buf[OFFSET_NAME..OFFSET_NAME + 4].fill(0);
            self.call(op, "", command, &mut buf)?;
            if get_u32(&buf, OFFSET_FLAGS) & DM_BUFFER_FULL_FLAG == 0 {
                return Ok(buf);
            }
            if data_bytes >= 4 << 20 {
                return Err(DmError::Invalid {
                    op,
                    name: String::new(),
                    reason: "reply larger than 4 MiB".into(),
                });
            }
            data_bytes *= 4;
        }
    }

    /// The target types the kernel has loaded, with their versions (`dmsetup targets`).
    pub fn target_versions(&self) -> Result<Vec<(String, [u32; 3])>, DmError> {
        decode_versions(&self.list("list versions", DM_LIST_VERSIONS_CMD)?)
    }

    /// Every dm device: name and device number (`dmsetup ls`).
    pub fn devices(&self) -> Result<Vec<(String, u64)>, DmError> {
        decode_devices(&self.list("list devices", DM_LIST_DEVICES_CMD)?)
    }

    /// Removes `name`.
    pub fn remove(&self, name: &str) -> Result<(), DmError> {
        let mut buf = request(name, 0, "remove")?;
        self.call("remove", name, DM_DEV_REMOVE_CMD, &mut buf)
    }

    /// Creates `name` with `targets`, activates it and makes `/dev/mapper/NAME` (no udev in the
    /// guest). Returns the node's path.
    pub fn create_device(&self, name: &str, targets: &[Target]) -> Result<PathBuf, DmError> {
        let dev = self.create(name)?;
        if let Err(e) = self
            .load_table(name, targets)
            .and_then(|()| self.resume(name))
        {
            let _ = self.remove(name);
            return Err(e);
        }
        let path = Path::new("/dev/mapper").join(name);
        // On a host with udev the node may already be there; keep it if it is this device.
        if let Ok(meta) = std::fs::metadata(&path) {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            if meta.file_type().is_block_device() && meta.rdev() == dev {
                return Ok(path);
            }
        }
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::create_dir_all("/dev/mapper");
        let made = nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            dev as nix::libc::dev_t,
        );
        match made {
            // udev made it in the meantime.
            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(path),
            Err(source) => {
                let _ = self.remove(name);
                Err(DmError::Node { path, source })
            }
        }
    }

    /// Removes `name` and its `/dev/mapper` node.
    pub fn remove_device(&self, name: &str) -> Result<(), DmError> {
        self.remove(name)?;
        let _ = std::fs::remove_file(Path::new("/dev/mapper").join(name));
        Ok(())
    }
}

/// The table of a linear mapping of all of `device` (`MAJ:MIN` or a path).
pub fn linear_table(device: &str, length_sectors: u64) -> Vec<Target> {
    vec![Target {
        start_sector: 0,
        length_sectors,
        target_type: "linear".into(),
        params: format!("{device} 0"),
    }]
}

/// The table of dm-log-writes logging writes to `data` onto `log`.
pub fn log_writes_table(data: &str, log: &str, length_sectors: u64) -> Vec<Target> {
    vec![Target {
        start_sector: 0,
        length_sectors,
        target_type: "log-writes".into(),
        params: format!("{data} {log}"),
    }]
}

/// Parsed dm-log-writes status (`<logged entries> <highest allocated sector> [logging_disabled]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogWritesStatus {
    /// Entries logged so far.
    pub logged_entries: u64,
    /// Highest sector of the log device allocated so far.
    pub last_sector: u64,
    /// Whether the target stopped logging (its log device is full or failed).
    pub logging_disabled: bool,
}

impl LogWritesStatus {
    /// Parses the status string of a log-writes target.
    pub fn parse(status: &str) -> Option<LogWritesStatus> {
        let mut words = status.split_whitespace();
        let logged_entries = words.next()?.parse().ok()?;
        let last_sector = words.next()?.parse().ok()?;
        let logging_disabled = words.next() == Some("logging_disabled");
        Some(LogWritesStatus {
            logged_entries,
            last_sector,
            logging_disabled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_encoding_places_spec_and_params() {
        let buf = encode_table("pclog", &log_writes_table("254:0", "254:16", 2048)).unwrap();
        assert_eq!(buf.len() % 8, 0);
        assert_eq!(get_u32(&buf, OFFSET_DATA_SIZE) as usize, buf.len());
        assert_eq!(get_u32(&buf, OFFSET_TARGET_COUNT), 1);
        assert_eq!(c_str(&buf[OFFSET_NAME..]), "pclog");
        let spec = &buf[DM_IOCTL_STRUCT_BYTES..];
        assert_eq!(get_u64(spec, 0), 0);
        assert_eq!(get_u64(spec, 8), 2048);
        assert_eq!(c_str(&spec[24..40]), "log-writes");
        assert_eq!(c_str(&spec[40..]), "254:0 254:16");
    }

    #[test]
    fn list_replies_decode_into_names() {
        let mut buf = request("list", 64, "list").unwrap();
        let at = DM_IOCTL_STRUCT_BYTES;
        // Two dm_name_list records, the second at offset 24.
        put_u64(&mut buf, at, 0xfd00);
        put_u32(&mut buf, at + 8, 24);
        buf[at + 12..at + 17].copy_from_slice(b"pclog");
        put_u64(&mut buf, at + 24, 0xfd01);
        buf[at + 36..at + 42].copy_from_slice(b"pcdata");
        assert_eq!(
            decode_devices(&buf).unwrap(),
            vec![
                ("pclog".to_string(), 0xfd00),
                ("pcdata".to_string(), 0xfd01)
            ]
        );
        let empty = request("list", 64, "list").unwrap();
        assert!(decode_devices(&empty).unwrap().is_empty());
        let mut versions = request("list", 64, "list").unwrap();
        put_u32(&mut versions, at, 32);
        put_u32(&mut versions, at + 4, 1);
        versions[at + 16..at + 26].copy_from_slice(b"log-writes");
        versions[at + 48..at + 53].copy_from_slice(b"error");
        let names: Vec<String> = decode_versions(&versions)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["log-writes", "error"]);
    }

    #[test]
    fn bad_names_and_types_are_rejected() {
        assert!(request("", 0, "create").is_err());
        assert!(request(&"x".repeat(128), 0, "create").is_err());
        let mut bad = linear_table("1:2", 8);
        bad[0].target_type = "a-very-long-target-type".into();
        assert!(encode_table("x", &bad).is_err());
    }

    #[test]
    fn status_decoding_reads_strings_and_stops_at_bad_offsets() {
        let mut buf = request("pclog", 200, "table status").unwrap();
        put_u32(&mut buf, OFFSET_TARGET_COUNT, 1);
        let at = DM_IOCTL_STRUCT_BYTES;
        put_u64(&mut buf, at + 8, 2048);
        buf[at + 24..at + 34].copy_from_slice(b"log-writes");
        buf[at + 40..at + 47].copy_from_slice(b"12 3456");
        let statuses = decode_status("pclog", &buf).unwrap();
        assert_eq!(statuses[0].target_type, "log-writes");
        let parsed = LogWritesStatus::parse(&statuses[0].status).unwrap();
        assert_eq!(
            parsed,
            LogWritesStatus {
                logged_entries: 12,
                last_sector: 3456,
                logging_disabled: false
            }
        );
        put_u32(&mut buf, OFFSET_TARGET_COUNT, 1000);
        put_u32(&mut buf, at + 20, 10_000);
        assert!(decode_status("pclog", &buf).is_err());
        put_u32(&mut buf, OFFSET_DATA_START, 1 << 30);
        assert!(decode_status("pclog", &buf).is_err());
        assert!(
            LogWritesStatus::parse("5 9 logging_disabled")
                .unwrap()
                .logging_disabled
        );
        assert!(LogWritesStatus::parse("x").is_none());
    }
}
