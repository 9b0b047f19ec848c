//! Guest-agent pieces: device-mapper, disks, mounts, the kernel log and the serial console.
//!
//! These run inside the VM (as root, from the initramfs); the host side of the protocol is in
//! [`crate::protocol`].

pub mod disks;
pub mod dm;
pub mod fault;
pub mod kmsg;
pub mod mount;
pub mod serial;

/// Syncs and powers the VM off; returns only if the kernel refused (not PID 1's privileges).
pub fn sync_and_power_off() -> nix::Error {
    nix::unistd::sync();
    crate::sys::guest::power_off()
}

/// Seconds since the kernel booted (`/proc/uptime`).
pub fn uptime_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
