//! Times the phases of one crash-state check: clone, attach+mount, unmount+detach.
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("mt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("base.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    assert!(std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .arg(&img)
        .status()
        .unwrap()
        .success());
    let mnt = dir.join("mnt");
    let n = 40;
    let mut clone_s = 0.0;
    let mut inside_s = 0.0;
    let t_all = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        powercut_oracles::replay::clone_image(&img, &dir.join("s.img")).unwrap();
        clone_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut t_in = 0.0;
        powercut_oracles::mount::with_mounted(
            &dir.join("s.img"),
            powercut_oracles::mount::FsType::Ext4,
            &mnt,
            |_| {
                t_in = t.elapsed().as_secs_f64();
            },
        )
        .unwrap();
        inside_s += t_in;
    }
    let total = t_all.elapsed().as_secs_f64();
    println!(
        "per state: clone {:.2} ms, attach+mount {:.2} ms, unmount+detach {:.2} ms",
        clone_s * 1e3 / n as f64,
        inside_s * 1e3 / n as f64,
        (total - clone_s - inside_s) * 1e3 / n as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
