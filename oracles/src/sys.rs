//! Every raw syscall of this crate, behind safe functions: FICLONE and the loop device ioctls.
//!
//! Loop devices are driven by ioctls here rather than through the loopdev-3 crate because that
//! crate generates its bindings with bindgen at build time, which needs libclang on every build
//! machine; the three ioctls and the one struct below are stable kernel ABI.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

// _IOW(0x94, 9, int)
nix::ioctl_write_int_bad!(ioctl_ficlone, 0x4004_9409);
// LOOP_CTL_GET_FREE, LOOP_CONFIGURE, LOOP_CLR_FD from <linux/loop.h>.
nix::ioctl_none_bad!(ioctl_loop_ctl_get_free, 0x4C82);
nix::ioctl_write_ptr_bad!(ioctl_loop_configure, 0x4C0A, LoopConfig);
nix::ioctl_none_bad!(ioctl_loop_clr_fd, 0x4C01);

const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64` from <linux/loop.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` from <linux/loop.h> (LOOP_CONFIGURE, Linux >= 5.8).
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// Clones `src` into `dst` (both open files) sharing extents. Errors with EOPNOTSUPP/EXDEV/EINVAL
/// where the file system cannot reflink; callers fall back to copying.
pub fn ficlone(dst: &File, src: &File) -> io::Result<()> {
    let src_fd: RawFd = src.as_raw_fd();
    // SAFETY: FICLONE takes the source descriptor as an integer argument; both descriptors are
    // open for the duration of the call (borrowed Files).
    unsafe { ioctl_ficlone(dst.as_raw_fd(), src_fd) }.map_err(io::Error::from)?;
    Ok(())
}

/// An attached loop device; detached when dropped.
#[derive(Debug)]
pub struct LoopDevice {
    device: File,
    path: PathBuf,
}

impl LoopDevice {
    /// Attaches `backing` (opened read-write) to a free loop device.
    pub fn attach(backing: &Path) -> io::Result<LoopDevice> {
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/loop-control")?;
        let backing_file = OpenOptions::new().read(true).write(true).open(backing)?;
        let mut info = LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_AUTOCLEAR,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; LO_KEY_SIZE],
            lo_init: [0; 2],
        };
        let name = backing.as_os_str().as_encoded_bytes();
        let n = name.len().min(LO_NAME_SIZE - 1);
        info.lo_file_name[..n].copy_from_slice(&name[..n]);
        let fd = u32::try_from(backing_file.as_raw_fd())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative fd"))?;
        let config = LoopConfig {
            fd,
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        // LOOP_CTL_GET_FREE hands every caller the same free device until one configures it, so
        // the threads of this process take turns; another process can still win the race
        // (LOOP_CONFIGURE then fails with EBUSY), so the loser asks again after a short backoff.
        static ATTACH: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ATTACH.lock().unwrap_or_else(|p| p.into_inner());
        let mut last_error = io::Error::other("no free loop device");
        for attempt in 0..64u64 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(attempt.min(20)));
            }
            // SAFETY: LOOP_CTL_GET_FREE takes no argument; `control` is open.
            let number = unsafe { ioctl_loop_ctl_get_free(control.as_raw_fd()) }?;
            let path = PathBuf::from(format!("/dev/loop{number}"));
            let device = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(d) => d,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            // SAFETY: `config` is a fully initialised loop_config that outlives the call; the
            // kernel only reads it.
            match unsafe { ioctl_loop_configure(device.as_raw_fd(), &config) } {
                Ok(_) => return Ok(LoopDevice { device, path }),
                Err(nix::errno::Errno::EBUSY) => {
                    last_error = io::Error::from(nix::errno::Errno::EBUSY);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_error)
    }

    /// The device node, e.g. `/dev/loop3`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // SAFETY: LOOP_CLR_FD takes no argument; the device file is open. With autoclear set the
        // kernel may already have detached it (ENXIO), which is fine.
        let _ = unsafe { ioctl_loop_clr_fd(self.device.as_raw_fd()) };
    }
}
