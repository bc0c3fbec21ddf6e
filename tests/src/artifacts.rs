//! The workspace's built programs, found by `toctou_attack::artefacts` (the locator the
//! harness and the benchmarks use too): the newest copy in `target/release` or its `deps/`
//! (`cargo test --release --workspace` leaves the shim only there and does not build the
//! FUSE daemon's binary). A missing one is built into a scratch target directory under
//! `target/tmp` (a nested `cargo build` into the same target directory would wait on the
//! running `cargo test`'s own lock).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use toctou_attack::artefacts::{self, ATTACK, Artefact, FS_DAEMON, SHIM};

/// `target/` of this workspace (derived from the running test binary,
/// `target/<profile>/deps/<test>-<hash>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    artefacts::release_dir(&exe)
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// `target/<profile>` (release under `cargo test --release`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    artefacts::search_dirs(&exe)
        .into_iter()
        .next()
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The scratch target directory for `package` (the FUSE tests use `target/tmp/fs-build` for
/// the daemon too, so it is built once).
fn scratch_for(package: &str) -> PathBuf {
    let name = if package == FS_DAEMON.package {
        "fs-build"
    } else {
        "tests-build"
    };
    target_dir().join("tmp").join(name)
}

static BUILT: OnceLock<Mutex<HashMap<String, Option<PathBuf>>>> = OnceLock::new();

/// `file` as built from `package` in release mode: the newest of `target/release/file`,
/// `target/release/deps/file` and the scratch build, else built now. `None` (with a
/// message) when the build fails.
pub fn artifact(package: &str, file: &str) -> Option<PathBuf> {
    let scratch = scratch_for(package);
    let dirs = [target_dir().join("release"), scratch.join("release")];
    if let Some(p) = artefacts::newest(&artefacts::candidates(&dirs, file)) {
        return Some(p);
    }
    let map = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(done) = map.get(package) {
        return done.clone();
    }
    let out = build(package, &scratch)
        .map(|()| scratch.join("release").join(file))
        .filter(|p| p.is_file());
    map.insert(package.to_string(), out.clone());
    out
}

fn build(package: &str, target: &Path) -> Option<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building {package} into {} ...", target.display());
    let mut child = Command::new(cargo)
        .current_dir(workspace_dir())
        .args(["build", "--release", "-p", package, "--target-dir"])
        .arg(target)
        .stdin(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st.success().then_some(()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn built(a: Artefact) -> Option<PathBuf> {
    artifact(a.package, a.file)
}

/// The shim, `libtoctou_guard.so`.
pub fn shim() -> Option<PathBuf> {
    built(SHIM)
}

/// The FUSE daemon, `toctou-guard-fs`.
pub fn fs_daemon() -> Option<PathBuf> {
    built(FS_DAEMON)
}

/// The harness binary, `toctou-attack` (also the naive server).
pub fn attack_exe() -> Option<PathBuf> {
    built(ATTACK)
}

/// The operator's command, `toctou-guard`, or `None` after a `SKIP:` (a panic in CI).
#[track_caller]
pub fn guard_cli() -> Option<PathBuf> {
    let bin = artifact("toctou-guard", "toctou-guard");
    crate::prereq::require(bin.is_some(), "toctou-guard (cargo build --release --workspace)").then_some(bin?)
}

/// Harness tools for these artifacts (each `None` if it could not be had).
pub fn attack_tools() -> Option<toctou_attack::Tools> {
    let exe = attack_exe()?;
    Some(toctou_attack::Tools::detect(&exe, shim(), fs_daemon()))
}
