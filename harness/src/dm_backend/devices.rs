//! The devices under the dm backend's stack: loop devices over scratch files (default), or the
//! block devices the user named, checked to be unused, and copied into the recording at the end.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use powercut_oracles::LoopDevice;
use powercut_workloads::spec::Workload;
use powercut_workloads::stack::{self, StackDevice};

use super::DmOptions;
use crate::record::{self, RecordOptions};
use crate::vm::progress::Progress;

/// Bytes copied per read when moving device contents.
const COPY_CHUNK: usize = 1 << 20;

/// The data and log devices of one recording, and where the file system is mounted. Dropping
/// it detaches the loop devices (after the stack is gone) and removes the mount point.
pub struct Devices {
    pub data: StackDevice,
    pub log: StackDevice,
    pub mount_point: PathBuf,
    kind: Kind,
}

enum Kind {
    Scratch {
        data_file: PathBuf,
        log_file: PathBuf,
        /// Held until the end; each detaches itself once the stack above has let go.
        loops: Vec<LoopDevice>,
    },
    Named {
        data_dev: PathBuf,
        log_dev: PathBuf,
    },
}

/// The log of a finished recording.
pub struct Files {
    pub log: PathBuf,
    pub log_disk_bytes: u64,
}

/// `MAJ:MIN`, kernel name and size of the block device at `path`.
fn describe(path: &Path) -> Result<StackDevice> {
    let meta = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if !meta.file_type().is_block_device() {
        bail!("{} is not a block device", path.display());
    }
    let rdev = meta.rdev() as nix::libc::dev_t;
    let maj_min = format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    let sysfs = Path::new("/sys/dev/block").join(&maj_min);
    let size_path = sysfs.join("size");
    let size = std::fs::read_to_string(&size_path)
        .with_context(|| format!("reading {}", size_path.display()))?;
    let size_sectors = size
        .trim()
        .parse()
        .with_context(|| format!("{} holds {size:?}", size_path.display()))?;
    let name = sysfs
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .with_context(|| format!("resolving {}", sysfs.display()))?;
    Ok(StackDevice {
        name,
        maj_min,
        size_sectors,
    })
}

/// Refuses a named device that is mounted, held by another device (dm, md, a partition in
/// use) or opened exclusively by anyone: an exclusive open fails with EBUSY then.
fn check_unused(path: &Path, device: &StackDevice, what: &str) -> Result<()> {
    let mounted = stack::mount_points_of(&device.maj_min);
    if !mounted.is_empty() {
        bail!(
            "{what} {} is mounted on {}: the dm backend never touches a device in use",
            path.display(),
            mounted[0].display()
        );
    }
    let holders = Path::new("/sys/class/block")
        .join(&device.name)
        .join("holders");
    if let Some(holder) = std::fs::read_dir(&holders)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
    {
        bail!(
            "{what} {} is in use by {}: the dm backend never touches a device in use",
            path.display(),
            holder.file_name().to_string_lossy()
        );
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(path)
        .map(drop)
        .with_context(|| {
            format!(
                "{what} {} is in use (an exclusive open failed): the dm backend never touches a \
                 device in use",
                path.display()
            )
        })
}

/// Copies `bytes` bytes of `from` into `to` at offset 0, skipping (seeking over) all-zero
/// chunks when `sparse`.
fn copy_prefix(from: &Path, to: &mut File, bytes: u64, sparse: bool) -> Result<()> {
    let mut source = File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut done = 0u64;
    while done < bytes {
        let want = (bytes - done).min(COPY_CHUNK as u64) as usize;
        source
            .read_exact(&mut buf[..want])
            .with_context(|| format!("reading {} at {done}", from.display()))?;
        if sparse && buf[..want].iter().all(|&b| b == 0) {
            to.seek(SeekFrom::Current(want as i64))?;
        } else {
            to.write_all(&buf[..want])?;
        }
        done += want as u64;
    }
    Ok(())
}

/// Writes zeros over the first `bytes` of the device `path`.
fn zero_device(path: &Path, bytes: u64) -> Result<()> {
    let mut device = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let zeros = vec![0u8; COPY_CHUNK];
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(COPY_CHUNK as u64) as usize;
        device
            .write_all(&zeros[..n])
            .with_context(|| format!("zeroing {} at {done}", path.display()))?;
        done += n as u64;
    }
    device.sync_all()?;
    Ok(())
}

/// Makes the data disk and the log of a recording and the devices under the stack.
pub fn prepare(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
    dm_options: &DmOptions,
    pid: u32,
    progress: &Progress,
) -> Result<Devices> {
    match (&dm_options.data_dev, &dm_options.log_dev) {
        (Some(data), Some(log)) => named(workload, out, options, data, log, pid, progress),
        _ => scratch(workload, out, options, dm_options, pid, progress),
    }
}

fn scratch(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
    dm_options: &DmOptions,
    pid: u32,
    progress: &Progress,
) -> Result<Devices> {
    let scratch = dm_options.scratch_dir.as_deref().unwrap_or(out);
    std::fs::create_dir_all(scratch)
        .with_context(|| format!("creating the scratch directory {}", scratch.display()))?;
    let in_out = scratch.canonicalize().ok() == out.canonicalize().ok();
    let (data_file, log_file) = if in_out {
        (out.join("final.img"), out.join("log.bin"))
    } else {
        (
            scratch.join(format!("powercut-{pid}-data.img")),
            scratch.join(format!("powercut-{pid}-log.img")),
        )
    };
    record::make_data_disk(workload, &data_file, options, progress)?;
    std::fs::copy(&data_file, out.join("base.img")).context("copying the pristine base image")?;
    // A fresh log every run: stale entries of a longer old log would be scanned as real.
    record::create_sized(&log_file, workload.log_mib << 20)?;
    let attach = |file: &Path| {
        LoopDevice::attach(file)
            .with_context(|| format!("attaching {} to a loop device", file.display()))
    };
    let data_loop = attach(&data_file)?;
    let log_loop = attach(&log_file)?;
    let data = describe(data_loop.path())?;
    let log = describe(log_loop.path())?;
    progress.line(format!(
        "dm backend: data {} on {}, log {} on {}",
        data_file.display(),
        data_loop.path().display(),
        log_file.display(),
        log_loop.path().display()
    ));
    let mount_point = scratch.join(format!("powercut-{pid}-mnt"));
    Ok(Devices {
        data,
        log,
        mount_point,
        kind: Kind::Scratch {
            data_file,
            log_file,
            loops: vec![data_loop, log_loop],
        },
    })
}

fn named(
    workload: &Workload,
    out: &Path,
    options: &RecordOptions,
    data_dev: &Path,
    log_dev: &Path,
    pid: u32,
    progress: &Progress,
) -> Result<Devices> {
    let mut data = describe(data_dev)?;
    let log = describe(log_dev)?;
    if data.maj_min == log.maj_min {
        bail!(
            "--data-dev {} and --log-dev {} are the same device",
            data_dev.display(),
            log_dev.display()
        );
    }
    check_unused(data_dev, &data, "--data-dev")?;
    check_unused(log_dev, &log, "--log-dev")?;
    // The file system is made (or copied) as base.img and written onto the device.
    let base = out.join("base.img");
    record::make_data_disk(workload, &base, options, progress)?;
    let base_bytes = std::fs::metadata(&base)?.len();
    if base_bytes > data.size_sectors * 512 {
        bail!(
            "--data-dev {} holds {} bytes, the data disk needs {base_bytes}",
            data_dev.display(),
            data.size_sectors * 512
        );
    }
    data.size_sectors = base_bytes / 512;
    let mut device = OpenOptions::new()
        .write(true)
        .open(data_dev)
        .with_context(|| format!("opening {}", data_dev.display()))?;
    progress.step(
        &format!("writing the data disk onto {}", data_dev.display()),
        || copy_prefix(&base, &mut device, base_bytes, false),
    )?;
    device.sync_all()?;
    progress.step(
        &format!("zeroing the log device {}", log_dev.display()),
        || zero_device(log_dev, log.size_sectors * 512),
    )?;
    Ok(Devices {
        data,
        log,
        mount_point: std::env::temp_dir().join(format!("powercut-{pid}-mnt")),
        kind: Kind::Named {
            data_dev: data_dev.into(),
            log_dev: log_dev.into(),
        },
    })
}

impl Devices {
    /// After the stack is gone: detaches the loop devices and leaves `final.img` and `log.bin`
    /// in `out` (moved or copied from the scratch files, or read off the named devices).
    pub fn finish(mut self, out: &Path) -> Result<Files> {
        let final_img = out.join("final.img");
        let log_bin = out.join("log.bin");
        let log_disk_bytes = self.log.size_sectors * 512;
        let data_bytes = self.data.size_sectors * 512;
        match &mut self.kind {
            Kind::Scratch {
                data_file,
                log_file,
                loops,
            } => {
                loops.clear();
                for (from, to) in [(&*data_file, &final_img), (&*log_file, &log_bin)] {
                    if from != to && std::fs::rename(from, to).is_err() {
                        std::fs::copy(from, to).with_context(|| {
                            format!("copying {} to {}", from.display(), to.display())
                        })?;
                        let _ = std::fs::remove_file(from);
                    }
                }
            }
            Kind::Named { data_dev, log_dev } => {
                for (from, to, bytes) in [
                    (&*data_dev, &final_img, data_bytes),
                    (&*log_dev, &log_bin, log_disk_bytes),
                ] {
                    let _ = std::fs::remove_file(to);
                    let mut file = File::create(to)?;
                    copy_prefix(from, &mut file, bytes, true)?;
                    file.set_len(bytes)?;
                }
            }
        }
        Ok(Files {
            log: log_bin,
            log_disk_bytes,
        })
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        if let Kind::Scratch {
            loops,
            data_file,
            log_file,
        } = &mut self.kind
        {
            loops.clear();
            // Scratch files of a failed run outside the recording (moved away on success).
            for file in [data_file, log_file] {
                let ours = file
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("powercut-"));
                if ours {
                    let _ = std::fs::remove_file(file);
                }
            }
        }
        let _ = std::fs::remove_dir(&self.mount_point);
    }
}
