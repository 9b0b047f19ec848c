//! The guest image: a Debian kernel plus an initramfs holding busybox, the guest init script,
//! the kernel modules the guest needs and the static guest agent. Built once per input set and
//! cached under `<cache>/images/<flavor>-<key>/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::guest_packages;
use super::initramfs::CpioWriter;
use super::progress::Progress;
use super::provision;

/// The guest's PID 1 (busybox sh script).
const INIT_SCRIPT: &str = include_str!("../../../vm-images/init");
/// Modules the guest loads, one name a line (`#` comments).
const MODULE_LIST: &str = include_str!("../../../vm-images/modules.txt");
/// Bumped when the image layout changes, so old cache entries are not reused.
const IMAGE_FORMAT_VERSION: u32 = 1;
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const AGENT_BIN: &str = "powercut-agent";

/// Which Debian kernel to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelFlavor {
    /// linux-image-*-cloud-amd64: fewer drivers, ext4 built in, boots in ~4 s under TCG.
    Cloud,
    /// linux-image-*-amd64: the generic kernel, ~7 s under TCG.
    Generic,
}

impl KernelFlavor {
    fn meta_package(self) -> &'static str {
        match self {
            KernelFlavor::Cloud => "linux-image-cloud-amd64",
            KernelFlavor::Generic => "linux-image-amd64",
        }
    }

    fn name(self) -> &'static str {
        match self {
            KernelFlavor::Cloud => "cloud",
            KernelFlavor::Generic => "generic",
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub flavor: KernelFlavor,
    /// A prebuilt agent instead of `cargo build` of the workspace's.
    pub agent: Option<PathBuf>,
    /// Build the agent with the engine's deliberately broken variants (`--features mutants`).
    /// Such an image is cached under its own key, so the default image never contains them.
    pub mutants: bool,
    /// Debian packages whose files (with their dependencies') the guest carries for the
    /// programs of `exec:` steps; their versions are part of the cache key.
    pub guest_packages: Vec<String>,
    /// Files of the user's (host paths) placed at `/opt/powercut/files/<base name>` in the
    /// guest; their contents and modes are part of the cache key.
    pub guest_files: Vec<String>,
}

/// A built image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuestImage {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Cache key (hash of every input).
    pub key: String,
    pub kernel_package: String,
    pub kernel_version: String,
    pub busybox_version: String,
    pub agent_sha256: String,
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The workspace root (this crate lives in `<root>/harness`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The agent binary and, for a dynamically linked build, the shared libraries it needs.
#[derive(Debug)]
pub struct Agent {
    pub binary: PathBuf,
    pub libraries: Vec<PathBuf>,
}

fn musl_target_installed() -> bool {
    let Ok(out) = provision::run(Command::new("rustup").args(["target", "list", "--installed"]))
    else {
        // No rustup: trust the toolchain to have what cargo needs; the build says if not.
        return true;
    };
    out.lines().any(|l| l.trim() == MUSL_TARGET)
}

/// `cargo build --release` of the agent; returns the executable path cargo reports.
fn cargo_build_agent(target: Option<&str>, mutants: bool) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(["-p", "powercut-workloads", "--bin", AGENT_BIN]);
    if mutants {
        command.args(["--features", "mutants"]);
    }
    if let Some(target) = target {
        // The workspace's release profile keeps line tables for profiling; in the guest they
        // only make the initramfs (and its unpacking under TCG) larger. Only the musl build gets
        // this, so host release builds are not invalidated.
        command
            .args(["--target", target])
            .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    }
    let stdout = provision::run(&mut command).context("building the guest agent")?;
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" && message["target"]["name"] == AGENT_BIN {
            if let Some(path) = message["executable"].as_str() {
                return Ok(PathBuf::from(path));
            }
        }
    }
    bail!("cargo built no {AGENT_BIN} executable")
}

/// Shared libraries `ldd` lists for `binary` (the fallback for a glibc build).
fn ldd_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = provision::run(Command::new("ldd").arg(binary))?;
    let mut libraries = Vec::new();
    for line in out.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

pub fn agent(options: &BuildOptions, progress: &Progress) -> Result<Agent> {
    if let Some(binary) = &options.agent {
        return Ok(Agent {
            binary: binary.clone(),
            libraries: Vec::new(),
        });
    }
    if musl_target_installed() {
        let what = if options.mutants {
            "building the static agent with mutants (musl, release)"
        } else {
            "building the static agent (musl, release)"
        };
        let binary = progress.step(what, || {
            cargo_build_agent(Some(MUSL_TARGET), options.mutants)
        })?;
        return Ok(Agent {
            binary,
            libraries: Vec::new(),
        });
    }
    progress.line(format!(
        "{MUSL_TARGET} is not installed: building a glibc agent plus its libraries"
    ));
    let binary = progress.step("building the agent (glibc, release)", || {
        cargo_build_agent(None, options.mutants)
    })?;
    let libraries = ldd_libraries(&binary)?;
    Ok(Agent { binary, libraries })
}

/// Module name as the kernel compares them (`dm-mod` and `dm_mod` are the same module).
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

/// Name of a module from its path in modules.dep (`kernel/drivers/md/dm-mod.ko` -> `dm_mod`).
fn module_name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    module_key(stem)
}

/// Module files (relative to the modules directory) to load, dependencies first, for `wanted`.
/// Names built into the kernel (`modules.builtin`) need nothing.
pub fn resolve_modules(
    modules_dep: &str,
    modules_builtin: &str,
    wanted: &[&str],
) -> Result<Vec<String>> {
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let path = path.trim().to_string();
        let dep_paths: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(module_name_of(&path), (path, dep_paths));
    }
    let builtin: BTreeSet<String> = modules_builtin.lines().map(module_name_of).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some((path, dep_paths)) = deps.get(name) {
            for dep in dep_paths {
                visit(&module_name_of(dep), deps, seen, order);
            }
            order.push(path.clone());
        }
    }
    for name in wanted {
        let key = module_key(name);
        if builtin.contains(&key) {
            continue;
        }
        if !deps.contains_key(&key) {
            bail!("kernel module {name} is neither in modules.dep nor built in");
        }
        visit(&key, &deps, &mut seen, &mut order);
    }
    Ok(order)
}

/// The module names of [`MODULE_LIST`].
fn wanted_modules() -> Vec<&'static str> {
    MODULE_LIST
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `<extracted kernel package>/lib/modules/<release>` (or under usr/).
fn modules_dir(kernel_root: &Path, release: &str) -> Result<PathBuf> {
    for base in ["lib/modules", "usr/lib/modules"] {
        let dir = kernel_root.join(base).join(release);
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    bail!("no lib/modules/{release} in {}", kernel_root.display())
}

/// Package versions the image is built from, as apt resolved them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Resolved {
    /// Newest modification time of the apt lists when this was resolved.
    lists_stamp_ns: u128,
    kernel_package: String,
    kernel_version: String,
    busybox_version: String,
}

/// Newest modification time under /var/lib/apt/lists: changes exactly when apt's view does.
fn apt_lists_stamp_ns() -> u128 {
    let Ok(entries) = std::fs::read_dir("/var/lib/apt/lists") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .max()
        .unwrap_or(0)
}

/// Resolves the kernel and busybox versions; apt-cache takes about a second per query here, so
/// the answer is kept until the apt lists change.
fn resolve_packages(flavor: KernelFlavor, cache: &Path, progress: &Progress) -> Result<Resolved> {
    let memo = cache.join(format!("resolved-{}.json", flavor.name()));
    let stamp = apt_lists_stamp_ns();
    if let Ok(bytes) = std::fs::read(&memo) {
        if let Ok(resolved) = serde_json::from_slice::<Resolved>(&bytes) {
            if resolved.lists_stamp_ns == stamp && stamp != 0 {
                return Ok(resolved);
            }
        }
    }
    let resolved = progress.step(
        "resolving package versions (apt-cache)",
        || -> Result<Resolved> {
            let kernel_package = provision::kernel_package(flavor.meta_package(), progress)?;
            let kernel_version = provision::candidate_version(&kernel_package, progress)?;
            let busybox_version = provision::candidate_version("busybox-static", progress)?;
            // An `apt-get update` during resolution changes the stamp: take it afterwards.
            Ok(Resolved {
                lists_stamp_ns: apt_lists_stamp_ns(),
                kernel_package,
                kernel_version,
                busybox_version,
            })
        },
    )?;
    std::fs::write(&memo, serde_json::to_vec_pretty(&resolved)?)?;
    Ok(resolved)
}

/// Images of `flavor` kept besides the newest (older ones are removed after a build).
const IMAGES_KEPT: usize = 4;

/// Removes all but the newest [`IMAGES_KEPT`] images of `flavor` among those not used within
/// [`PRUNE_GRACE`]; `current` always stays.
/// Best effort: a failure leaves a few megabytes behind, nothing worse.
fn prune_old_images(images: &Path, flavor: KernelFlavor, current: &Path) {
    let Ok(entries) = std::fs::read_dir(images) else {
        return;
    };
    let prefix = format!("{}-", flavor.name());
    let now = std::time::SystemTime::now();
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| e.path() != current && e.path().extension().is_none())
        .filter_map(|e| Some((last_used(&e.path())?, e.path())))
        // Another powercut may be booting an image it used a moment ago.
        .filter(|(used, _)| now.duration_since(*used).unwrap_or_default() > PRUNE_GRACE)
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(IMAGES_KEPT);
    for (_, path) in found.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// An image used within this time is never pruned: a run boots its image a while after it
/// found it (a campaign finds it again for every run), and runs beside it may build others.
const PRUNE_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The file whose time says when an image was last used.
const LAST_USED_FILE: &str = "last-used";

/// Stamps the image in `image_dir` as used now (best effort: a read-only cache still works).
fn mark_used(image_dir: &Path) {
    let _ = std::fs::write(image_dir.join(LAST_USED_FILE), b"");
}

/// When the image in `dir` was last used (built, or found in the cache).
fn last_used(dir: &Path) -> Option<std::time::SystemTime> {
    let stamp = dir.join(LAST_USED_FILE);
    let meta = stamp.metadata().or_else(|_| dir.metadata()).ok()?;
    meta.modified().ok()
}

/// Builds (or finds in the cache) the guest image.
pub fn build(options: &BuildOptions, progress: &Progress) -> Result<GuestImage> {
    let qemu = provision::ensure_qemu(progress)?;
    let missing = provision::ensure_host_tools(progress)?;
    if !missing.is_empty() {
        eprintln!(
            "warning: {} not installed (needs root: apt-get install {}): without mkfs.xfs every \
             crash state is a full copy of the image instead of a clone, several times slower",
            missing.join(" and "),
            missing.join(" ")
        );
    }
    let cache = provision::cache_dir()?;
    let Resolved {
        kernel_package,
        kernel_version,
        busybox_version,
        ..
    } = resolve_packages(options.flavor, &cache, progress)?;
    let release = kernel_package
        .strip_prefix("linux-image-")
        .context("kernel package name does not start with linux-image-")?
        .to_string();

    let agent = agent(options, progress)?;
    let agent_bytes = std::fs::read(&agent.binary)
        .with_context(|| format!("reading the agent {}", agent.binary.display()))?;
    let agent_sha256 = sha256_hex(&agent_bytes);

    let guest = guest_packages::resolve(
        &options.guest_packages,
        &cache,
        apt_lists_stamp_ns(),
        progress,
    )?;
    let files = guest_packages::read_files(&options.guest_files)?;
    let key = image_key(
        options,
        &agent,
        &format!(
            "kernel {kernel_package} {kernel_version}\nbusybox {busybox_version}\n{}{}",
            guest_packages::key_text(&guest),
            guest_packages::files_key_text(&files)
        ),
        &agent_sha256,
    );
    let variant = if options.mutants { "-mutants" } else { "" };
    let image_dir = cache
        .join("images")
        .join(format!("{}{variant}-{key}", options.flavor.name()));
    let image = GuestImage {
        qemu,
        kernel: image_dir.join("vmlinuz"),
        initrd: image_dir.join("initramfs.cpio"),
        key,
        kernel_package: kernel_package.clone(),
        kernel_version: kernel_version.clone(),
        busybox_version: busybox_version.clone(),
        agent_sha256,
    };
    if image.kernel.is_file() && image.initrd.is_file() {
        mark_used(&image_dir);
        progress.line(format!(
            "image {} is cached ({})",
            image.key,
            image_dir.display()
        ));
        return Ok(image);
    }

    let (kernel_root, busybox) = fetch_packages(
        &cache,
        &kernel_package,
        &kernel_version,
        &busybox_version,
        progress,
    )?;
    let modules = modules_dir(&kernel_root, &release)?;
    let load_order = module_load_order(&modules, &kernel_root, &release, &busybox, progress)?;
    let guest_roots = guest_packages::fetch(&guest, &cache, progress)?;

    progress.step("writing the initramfs", || -> Result<()> {
        let mut archive = initramfs(&busybox, &agent, &agent_bytes, &modules, &load_order)?;
        if !guest_roots.is_empty() || !files.is_empty() {
            archive = with_guest_packages(archive, &guest_roots, &files, progress)?;
        }
        install(&image_dir, &kernel_root, &release, &archive, &image)?;
        progress.line(format!(
            "initramfs: {} modules, {:.1} MiB",
            load_order.len(),
            archive.len() as f64 / (1 << 20) as f64
        ));
        Ok(())
    })?;
    mark_used(&image_dir);
    prune_old_images(&cache.join("images"), options.flavor, &image_dir);
    progress.line(format!(
        "image {} built ({})",
        image.key,
        image_dir.display()
    ));
    Ok(image)
}

/// The cache key of an image: a hash of every input that changes its bytes.
fn image_key(options: &BuildOptions, agent: &Agent, packages: &str, agent_sha256: &str) -> String {
    let mut key_input = format!("format {IMAGE_FORMAT_VERSION}\n{packages}agent {agent_sha256}\n");
    for library in &agent.libraries {
        key_input.push_str(&format!("lib {}\n", library.display()));
    }
    if options.mutants {
        key_input.push_str("mutants\n");
    }
    key_input.push_str(INIT_SCRIPT);
    key_input.push_str(MODULE_LIST);
    sha256_hex(key_input.as_bytes())[..16].to_string()
}

/// Downloads and unpacks the kernel and busybox packages; returns the kernel package's root and
/// the busybox binary.
fn fetch_packages(
    cache: &Path,
    kernel_package: &str,
    kernel_version: &str,
    busybox_version: &str,
    progress: &Progress,
) -> Result<(PathBuf, PathBuf)> {
    let debs = cache.join("debs");
    let kernel_deb = provision::download_deb(kernel_package, kernel_version, &debs, progress)?;
    let busybox_deb = provision::download_deb("busybox-static", busybox_version, &debs, progress)?;
    let kernel_root = cache
        .join("pkgs")
        .join(format!("{kernel_package}_{kernel_version}"));
    let busybox_root = cache
        .join("pkgs")
        .join(format!("busybox-static_{busybox_version}"));
    provision::extract_deb(&kernel_deb, &kernel_root, progress)?;
    provision::extract_deb(&busybox_deb, &busybox_root, progress)?;
    let busybox = busybox_root.join("bin/busybox");
    if !busybox.is_file() {
        bail!(
            "busybox-static has no bin/busybox ({})",
            busybox_root.display()
        );
    }
    Ok((kernel_root, busybox))
}

/// The modules to load, dependencies first; runs busybox depmod when the package has no
/// modules.dep.
fn module_load_order(
    modules: &Path,
    kernel_root: &Path,
    release: &str,
    busybox: &Path,
    progress: &Progress,
) -> Result<Vec<String>> {
    if !modules.join("modules.dep").is_file() {
        progress.step("busybox depmod", || {
            provision::run(
                Command::new(busybox)
                    .arg("depmod")
                    .arg("-b")
                    .arg(kernel_root)
                    .arg(release),
            )
        })?;
        if !modules.join("modules.dep").is_file() {
            bail!("busybox depmod wrote no {}/modules.dep", modules.display());
        }
    }
    let modules_dep = std::fs::read_to_string(modules.join("modules.dep"))?;
    let modules_builtin =
        std::fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    resolve_modules(&modules_dep, &modules_builtin, &wanted_modules())
}

/// The initramfs: busybox, the init script, the agent and its libraries, the modules.
fn initramfs(
    busybox: &Path,
    agent: &Agent,
    agent_bytes: &[u8],
    modules: &Path,
    load_order: &[String],
) -> Result<Vec<u8>> {
    let mut cpio = CpioWriter::new();
    for dir in super::guest_packages::BASE_DIRS {
        cpio.dir(dir);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    cpio.char_device("dev/console", 5, 1, 0o600);
    cpio.file("bin/busybox", 0o755, &std::fs::read(busybox)?);
    cpio.symlink("bin/sh", "busybox");
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
    cpio.file(&format!("bin/{AGENT_BIN}"), 0o755, agent_bytes);
    let mut made_dirs = BTreeSet::new();
    for library in &agent.libraries {
        let inside = library
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        let mut parent = String::new();
        for part in inside
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            parent = if parent.is_empty() {
                part.to_string()
            } else {
                format!("{parent}/{part}")
            };
            if made_dirs.insert(parent.clone()) && !["lib", "bin"].contains(&parent.as_str()) {
                cpio.dir(&parent);
            }
        }
        let bytes =
            std::fs::read(library).with_context(|| format!("reading {}", library.display()))?;
        cpio.file(&inside, 0o755, &bytes);
    }
    let mut load_list = String::new();
    for module in load_order {
        let file = module.rsplit('/').next().unwrap_or(module);
        if !file.ends_with(".ko") {
            bail!("module {module} is compressed; only plain .ko modules are supported");
        }
        let bytes = std::fs::read(modules.join(module))
            .with_context(|| format!("reading module {module}"))?;
        cpio.file(&format!("lib/modules/{file}"), 0o644, &bytes);
        load_list.push_str(file);
        load_list.push('\n');
    }
    cpio.file("etc/modules.load", 0o644, load_list.as_bytes());
    Ok(cpio.finish())
}

/// The initramfs `archive` with the files of the unpacked guest packages and the user's guest
/// files appended: a newc archive is a sequence of members, so a second archive concatenated
/// after the first (its own trailer included) is unpacked by the kernel as well.
fn with_guest_packages(
    mut archive: Vec<u8>,
    roots: &[PathBuf],
    user_files: &[guest_packages::GuestFile],
    progress: &Progress,
) -> Result<Vec<u8>> {
    let mut cpio = CpioWriter::new();
    let files = guest_packages::add_to_cpio(&mut cpio, roots, user_files)?;
    archive.extend_from_slice(&cpio.finish());
    progress.line(format!(
        "guest packages: {} packages, {files} files; guest files: {}",
        roots.len(),
        user_files.len()
    ));
    Ok(archive)
}

/// Moves the kernel, the initramfs and `image.json` into `image_dir`, through a staging
/// directory so that a reader never sees half an image.
fn install(
    image_dir: &Path,
    kernel_root: &Path,
    release: &str,
    archive: &[u8],
    image: &GuestImage,
) -> Result<()> {
    // Per process: concurrent builds of the same image must not share a staging directory.
    let staging = image_dir.with_extension(format!("partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    let vmlinuz = kernel_root.join("boot").join(format!("vmlinuz-{release}"));
    std::fs::copy(&vmlinuz, staging.join("vmlinuz"))
        .with_context(|| format!("copying {}", vmlinuz.display()))?;
    std::fs::write(staging.join("initramfs.cpio"), archive)?;
    std::fs::write(
        staging.join("image.json"),
        serde_json::to_vec_pretty(image)?,
    )?;
    if image_dir.exists() && !image_dir.join("initramfs.cpio").is_file() {
        std::fs::remove_dir_all(image_dir)?;
    }
    if let Err(e) = std::fs::rename(&staging, image_dir) {
        // Another build of the same key finished first: its image is identical.
        std::fs::remove_dir_all(&staging)?;
        if !image_dir.join("initramfs.cpio").is_file() {
            return Err(e).with_context(|| format!("moving the image to {}", image_dir.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_resolve_dependencies_first_and_skip_builtins() {
        let dep = "kernel/drivers/md/dm-mod.ko:\n\
                   kernel/drivers/md/dm-log-writes.ko: kernel/drivers/md/dm-mod.ko\n\
                   kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\n\
                   kernel/lib/libcrc32c.ko:\n";
        let builtin = "kernel/drivers/virtio/virtio_pci.ko\n";
        let order = resolve_modules(
            dep,
            builtin,
            &["virtio_pci", "dm-log-writes", "dm_mod", "xfs"],
        )
        .unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/md/dm-mod.ko",
                "kernel/drivers/md/dm-log-writes.ko",
                "kernel/lib/libcrc32c.ko",
                "kernel/fs/xfs/xfs.ko"
            ]
        );
        assert!(resolve_modules(dep, builtin, &["nonexistent"]).is_err());
    }

    #[test]
    fn module_list_names_the_targets_the_guest_needs() {
        let wanted = wanted_modules();
        for name in ["dm-mod", "dm-log-writes", "dm-flakey", "xfs", "virtio_blk"] {
            assert!(
                wanted.contains(&name),
                "{name} missing from vm-images/modules.txt"
            );
        }
    }
}

#[cfg(test)]
mod prune_tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// An image directory of the cloud flavor last used `age` ago.
    fn image(images: &Path, name: &str, age: Duration) -> PathBuf {
        let dir = images.join(format!("cloud-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        mark_used(&dir);
        let stamp = std::fs::File::options()
            .write(true)
            .open(dir.join(LAST_USED_FILE))
            .unwrap();
        stamp.set_modified(SystemTime::now() - age).unwrap();
        dir
    }

    #[test]
    fn images_used_lately_are_never_pruned_and_old_ones_beyond_the_kept_are() {
        let images = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let old: Vec<PathBuf> = (0..6u32)
            .map(|i| image(images.path(), &format!("old{i}"), hour * (10 + i)))
            .collect();
        let busy: Vec<PathBuf> = (0..3)
            .map(|i| image(images.path(), &format!("busy{i}"), Duration::from_secs(60)))
            .collect();
        let current = image(images.path(), "current", Duration::ZERO);
        prune_old_images(images.path(), KernelFlavor::Cloud, &current);
        assert!(current.exists());
        assert!(
            busy.iter().all(|d| d.exists()),
            "an image used a minute ago stays"
        );
        // The IMAGES_KEPT most recently used of the old ones stay, the two oldest go.
        let kept: Vec<bool> = old.iter().map(|d| d.exists()).collect();
        assert_eq!(kept, [true, true, true, true, false, false]);
    }
}
