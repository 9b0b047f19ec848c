//! A path whose state was acknowledged (present or gone) may only change through acknowledged
//! operations: an unacknowledged change may or may not survive a crash, and the ledger could not
//! say which state to expect.

use powercut_workloads::spec;

fn parse(steps: &str) -> Result<spec::Workload, String> {
    let text = format!("name: t\nsteps:\n{steps}");
    spec::parse(&text, "t.yaml").map_err(|e| e.to_string())
}

#[test]
fn unacked_recreate_of_an_acked_gone_name_is_refused() {
    let err = parse(
        "  - file: { op: create, path: a.tmp, size: 100 }\n\
         \x20 - file: { op: rename, path: a.tmp, to: a }\n\
         \x20 - file: { op: create, path: a.tmp, size: 10, fsync_file: false, fsync_dir: false }\n",
    )
    .unwrap_err();
    assert!(err.contains("a.tmp was acknowledged gone"), "{err}");
    assert!(err.contains("t.yaml"), "{err}");
}

#[test]
fn acked_recreate_of_an_acked_gone_name_is_fine() {
    parse(
        "  - file: { op: create, path: a.tmp, size: 100 }\n\
         \x20 - file: { op: rename, path: a.tmp, to: a }\n\
         \x20 - file: { op: create, path: a.tmp, size: 10 }\n\
         \x20 - file: { op: remove, path: a.tmp }\n\
         \x20 - file: { op: create, path: a.tmp, size: 10 }\n",
    )
    .unwrap();
}

#[test]
fn unacked_recreate_after_an_acked_removal_is_refused() {
    let err = parse(
        "  - file: { op: create, path: b, size: 100 }\n\
         \x20 - file: { op: remove, path: b }\n\
         \x20 - file: { op: create, path: b, size: 10, fsync_dir: false }\n",
    )
    .unwrap_err();
    assert!(err.contains("b was acknowledged gone"), "{err}");
}
