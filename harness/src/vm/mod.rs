//! The QEMU backend: provisioning, the guest image and running VMs.

pub mod guest_packages;
pub mod image;
pub mod initramfs;
pub mod progress;
pub mod provision;
pub mod qemu;
