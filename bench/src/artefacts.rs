//! Where the built shim, FUSE daemon and helper programs are.
//!
//! The benchmarks measure what `cargo build --release` produced; they do not build it
//! themselves (the README gives the command), but they say which file they used and when it
//! was built, so a stale library cannot pass unnoticed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The workspace's `target/release` directory, found from this executable's location
/// (`target/release/e2e`, `target/release/deps/open_loop-…`), or `CARGO_TARGET_DIR`.
pub fn release_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(dir).join("release");
        if d.is_dir() {
            return Some(d);
        }
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "release"))
        .map(Path::to_path_buf)
        .or_else(|| {
            // A debug build of the runner still measures the release shim.
            exe.ancestors()
                .find(|d| d.file_name().is_some_and(|n| n == "target"))
                .map(|t| t.join("release"))
        })
}

/// A release artefact by file name, overridable with an environment variable.
pub fn find(env: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return if p.exists() {
            Ok(p)
        } else {
            Err(format!("{env}={} does not exist", p.display()))
        };
    }
    let dir = release_dir().ok_or("cannot find target/release")?;
    let p = dir.join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found: run `cargo build --release -p toctou-guard-shim -p toctou-guard-fs` first (or set {env})",
            p.display()
        ))
    }
}

/// The LD_PRELOAD library (`TOCTOU_GUARD_SO` overrides).
pub fn shim() -> Result<PathBuf, String> {
    find("TOCTOU_GUARD_SO", "libtoctou_guard.so")
}

/// The FUSE daemon (`TOCTOU_GUARD_FS` overrides).
pub fn fuse_daemon() -> Result<PathBuf, String> {
    find("TOCTOU_GUARD_FS", "toctou-guard-fs")
}

/// The `openloop` child: next to the running executable, or in `target/release`.
pub fn openloop() -> Result<PathBuf, String> {
    if let Some(p) = option_env_openloop() {
        return Ok(p);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for d in [Some(dir), dir.parent()] {
            let p = d.map(|d| d.join("openloop"));
            if let Some(p) = p.filter(|p| p.exists()) {
                return Ok(p);
            }
        }
    }
    find("TOCTOU_BENCH_OPENLOOP", "openloop")
}

fn option_env_openloop() -> Option<PathBuf> {
    std::env::var_os("TOCTOU_BENCH_OPENLOOP").map(PathBuf::from)
}

/// `path (built N min ago)`, for reports.
pub fn describe(path: &Path) -> String {
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    match age {
        Some(a) => format!("{} (built {} min ago)", path.display(), a.as_secs() / 60),
        None => path.display().to_string(),
    }
}
