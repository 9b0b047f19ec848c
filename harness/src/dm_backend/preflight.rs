//! What the host needs for the dm backend, each missing piece named with the way to get it.

use std::path::Path;

use anyhow::{bail, Result};
use powercut_workloads::guest::dm::{self, DmControl};

/// The dm targets the recording stack uses: the log (required), the fault layer's pieces.
const LOG_TARGET: &str = "log-writes";

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Checks root, `/dev/mapper/control`, the `log-writes` target and, for scratch devices,
/// `/dev/loop-control`; returns the open dm control.
pub fn check_host(needs_loop: bool) -> Result<DmControl> {
    let release = kernel_release();
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the dm backend needs root (device-mapper, loop devices and mount(2)): run powercut \
             as root, or record in a VM with --backend qemu (the default)"
        );
    }
    if !Path::new(dm::CONTROL_PATH).exists() {
        bail!(
            "this host has no device-mapper ({} is missing): load it with `modprobe dm-mod` \
             (CONFIG_BLK_DEV_DM, kernel {release}); in a container, run it privileged with \
             /dev/mapper shared; or use --backend qemu",
            dm::CONTROL_PATH
        );
    }
    let control = DmControl::open().map_err(|e| {
        anyhow::anyhow!("{e}: the dm backend needs device-mapper; or use --backend qemu")
    })?;
    let targets = control
        .target_versions()
        .map_err(|e| anyhow::anyhow!("listing the device-mapper targets: {e}"))?;
    if !targets.iter().any(|(name, _)| name == LOG_TARGET) {
        // Loading the module registers the target; try once, as `dmsetup` users would by hand.
        let _ = std::process::Command::new("modprobe")
            .arg("dm-log-writes")
            .stderr(std::process::Stdio::null())
            .status();
        let again = control.target_versions().unwrap_or_default();
        if !again.iter().any(|(name, _)| name == LOG_TARGET) {
            let names: Vec<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
            bail!(
                "the device-mapper target dm-log-writes is missing (kernel {release} has: {}): \
                 `modprobe dm-log-writes` (CONFIG_DM_LOG_WRITES); or use --backend qemu",
                names.join(", ")
            );
        }
    }
    if needs_loop && !Path::new("/dev/loop-control").exists() {
        bail!(
            "no loop devices (/dev/loop-control is missing) for the scratch files: \
             `modprobe loop`, or name the devices with --data-dev and --log-dev"
        );
    }
    Ok(control)
}
