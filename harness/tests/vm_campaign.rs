//! The real engine in a short vm-tier campaign, once on ext4 and once on XFS: generated
//! workloads recorded in a QEMU guest and checked, no finding, the report saying what it covered.
//!
//! Needs root and QEMU (provisioned by `powercut image build`); prints "SKIPPED: <reason>" (a
//! failure under CI=true) otherwise.

mod common;

use common::{image_ready, read_json, POWERCUT};
use powercut_writer::capability::runnable;

use std::process::Command;

#[test]
fn the_real_engine_is_clean_in_a_short_vm_campaign_on_ext4_and_xfs() {
    if !runnable(image_ready()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for filesystem in ["ext4", "xfs"] {
        let out = dir.path().join(filesystem);
        let json = dir.path().join(format!("{filesystem}.json"));
        let output = Command::new(POWERCUT)
            .args([
                "campaign", "--tier", "vm", "--budget", "300s", "--seed", "7",
            ])
            .args(["--max-workloads", "1", "--filesystem", filesystem])
            .arg("--out")
            .arg(&out)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.status.code(), Some(0), "{filesystem}: {text}");
        let report = read_json(&json);
        assert_eq!(report["workloads"], 1, "{filesystem}: {report}");
        assert!(report["states_checked"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{report}");
        assert!(
            report
                .to_string()
                .contains(&format!("filesystem={filesystem}")),
            "{filesystem}: {report}"
        );
    }
}
