//! Reading the kernel log (`/dev/kmsg`) without blocking, to report device-mapper errors such as
//! dm-log-writes' "Ran out of space on the logdev" to the host.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// Kernel log messages (text only) containing any of `needles`, from the start of the buffer.
pub fn matching_lines(needles: &[&str]) -> std::io::Result<Vec<String>> {
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/dev/kmsg")?;
    let mut found = Vec::new();
    // Each read returns one record: "prio,seq,usec,flags;text\n" plus continuation lines.
    let mut record = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&record[..n]);
                let message = text.split_once(';').map_or(&*text, |(_, m)| m);
                let message = message.lines().next().unwrap_or("").to_string();
                if needles.iter().any(|needle| message.contains(needle)) {
                    found.push(message);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // EPIPE: records were overwritten while reading; the next read continues.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}
