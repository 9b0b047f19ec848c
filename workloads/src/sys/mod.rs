//! Every `unsafe` block of the crate, behind safe types: the guest agent's system calls
//! (`guest`) and the libyaml event reader (`yaml`).

#![allow(unsafe_code)]

pub(crate) mod guest;
pub(crate) mod yaml;

/// A duplicate of `fd` at the lowest free descriptor number from `lowest` on, inherited by
/// programs this process executes (no close-on-exec).
pub(crate) fn dup_at_least(
    fd: &std::os::fd::OwnedFd,
    lowest: i32,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: F_DUPFD reads no memory; `fd` is open for the duration of the call.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, lowest) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` is a descriptor the kernel just created for this call; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(new) })
}
