//! The only `unsafe` of the guest agent: the device-mapper ioctl.
//!
//! The `devicemapper` crate would need libdevmapper headers and bindgen at build time, which a
//! static musl agent built on a bare host does not have; the stack needs eight commands of the
//! stable dm ioctl interface (version 4), so they are encoded by hand in [`crate::guest::dm`].

use std::os::fd::{AsRawFd, BorrowedFd};

/// `DM_IOCTL` type byte of `linux/dm-ioctl.h`.
const DM_IOCTL_TYPE: u8 = 0xfd;
/// `sizeof(struct dm_ioctl)`, the size encoded in every dm request code.
pub(crate) const DM_IOCTL_STRUCT_BYTES: usize = 312;

/// Issues dm ioctl command `command` with `buf` as the `struct dm_ioctl` plus its data area.
///
/// `buf` must hold at least a full `struct dm_ioctl` whose `data_size` field equals `buf.len()`;
/// the kernel reads and writes at most `data_size` bytes.
pub(crate) fn dm_ioctl(control: BorrowedFd<'_>, command: u8, buf: &mut [u8]) -> nix::Result<()> {
    assert!(
        buf.len() >= DM_IOCTL_STRUCT_BYTES,
        "dm ioctl buffer shorter than struct dm_ioctl"
    );
    let data_size = u32::from_ne_bytes(buf[12..16].try_into().unwrap());
    assert_eq!(
        data_size as usize,
        buf.len(),
        "dm ioctl data_size disagrees with the buffer"
    );
    let request = nix::request_code_readwrite!(DM_IOCTL_TYPE, command, DM_IOCTL_STRUCT_BYTES)
        as nix::sys::ioctl::ioctl_num_type;
    // SAFETY: `control` is an open descriptor; `buf` is a live, exclusively borrowed buffer of
    // `buf.len()` bytes and its `data_size` field (checked above) tells the kernel not to read or
    // write past that length. The kernel copies in and out with copy_{from,to}_user, so the
    // buffer needs no particular alignment.
    let rc = unsafe { libc::ioctl(control.as_raw_fd(), request, buf.as_mut_ptr()) };
    nix::errno::Errno::result(rc).map(drop)
}

/// Powers the machine off at once (the caller has synced).
pub(crate) fn power_off() -> nix::Error {
    // SAFETY: reboot(2) takes no pointers; with RB_POWER_OFF it either stops the machine or
    // fails with an errno (EPERM without CAP_SYS_BOOT), which is returned.
    let rc = unsafe { libc::reboot(libc::RB_POWER_OFF) };
    nix::errno::Errno::result(rc)
        .err()
        .unwrap_or(nix::errno::Errno::EINVAL)
}

/// `FS_IOC_FIEMAP` is `_IOWR('f', 11, struct fiemap)`.
const FIEMAP_IOCTL_TYPE: u8 = b'f';
const FIEMAP_IOCTL_NUMBER: u8 = 11;
/// `sizeof(struct fiemap)` (the header before the extents).
pub(crate) const FIEMAP_HEADER_BYTES: usize = 32;
/// `sizeof(struct fiemap_extent)`.
pub(crate) const FIEMAP_EXTENT_BYTES: usize = 56;

/// Issues `FS_IOC_FIEMAP` on `file` with `buf` as the `struct fiemap` plus room for the number
/// of extents its `fm_extent_count` field says.
pub(crate) fn fiemap(file: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<()> {
    assert!(
        buf.len() >= FIEMAP_HEADER_BYTES,
        "fiemap buffer shorter than struct fiemap"
    );
    let extent_count = u32::from_ne_bytes(buf[24..28].try_into().unwrap()) as usize;
    assert!(
        buf.len() >= FIEMAP_HEADER_BYTES + extent_count * FIEMAP_EXTENT_BYTES,
        "fiemap buffer shorter than its fm_extent_count extents"
    );
    let request =
        nix::request_code_readwrite!(FIEMAP_IOCTL_TYPE, FIEMAP_IOCTL_NUMBER, FIEMAP_HEADER_BYTES)
            as nix::sys::ioctl::ioctl_num_type;
    // SAFETY: `file` is an open descriptor; `buf` is a live, exclusively borrowed buffer holding
    // the header and `fm_extent_count` extents (checked above), the most the kernel writes. The
    // kernel copies with copy_{from,to}_user, so no alignment is needed.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, buf.as_mut_ptr()) };
    nix::errno::Errno::result(rc).map(drop)
}
