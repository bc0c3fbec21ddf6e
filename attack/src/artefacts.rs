//! Where the workspace's built programs are: the one locator of the harness, the benchmarks
//! and the integration tests.
//!
//! `cargo build --release` leaves them in `target/release`; `cargo test --release` leaves
//! the shim only in `target/release/deps`. A program looks in the profile directory it was
//! built into and in `target/release`, in each of those also in `deps/`; the newest copy
//! wins, so a stale one cannot shadow a fresh build.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A program or library this workspace builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artefact {
    /// The package that builds it (`cargo build --release -p PACKAGE`).
    pub package: &'static str,
    /// Its file name in the target directory.
    pub file: &'static str,
    /// The environment variable that names it instead (see [`Artefact::locate`]).
    pub env: Option<&'static str>,
}

/// The LD_PRELOAD library.
pub const SHIM: Artefact = Artefact {
    package: "toctou-guard-shim",
    file: "libtoctou_guard.so",
    env: Some("TOCTOU_GUARD_SO"),
};

/// The FUSE daemon.
pub const FS_DAEMON: Artefact = Artefact {
    package: "toctou-guard-fs",
    file: "toctou-guard-fs",
    env: Some("TOCTOU_GUARD_FS"),
};

/// The harness itself (also the naive server).
pub const ATTACK: Artefact = Artefact {
    package: "toctou-attack",
    file: "toctou-attack",
    env: None,
};

/// The benchmarks' open-loop child.
pub const OPENLOOP: Artefact = Artefact {
    package: "toctou-guard-bench",
    file: "openloop",
    env: Some("TOCTOU_BENCH_OPENLOOP"),
};

impl Artefact {
    /// The newest copy seen from the program at `exe` (see [`search_dirs`]).
    pub fn near(&self, exe: &Path) -> Option<PathBuf> {
        find(exe, self.file)
    }

    /// The file its environment variable names (an error if that does not exist), else the
    /// newest copy seen from this program; the error says how to build it.
    pub fn locate(&self) -> Result<PathBuf, String> {
        if let Some(env) = self.env
            && let Some(p) = std::env::var_os(env)
        {
            let p = PathBuf::from(p);
            return if p.exists() {
                Ok(p)
            } else {
                Err(format!("{env}={} does not exist", p.display()))
            };
        }
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        self.near(&exe).ok_or_else(|| {
            let looked: Vec<String> = search_dirs(&exe)
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            let or_env = self.env.map(|e| format!(" (or set {e})")).unwrap_or_default();
            format!(
                "{} not found in {}: run `cargo build --release -p {}` first{or_env}",
                self.file,
                looked.join(", "),
                self.package
            )
        })
    }
}

/// The workspace's `target/release`, seen from the program at `exe`: `$CARGO_TARGET_DIR/release`,
/// else the `release` directory `exe` is in, else `release` in the `target` directory it
/// is in (a debug build of a runner still finds the release shim).
pub fn release_dir(exe: &Path) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(dir).join("release");
        if d.is_dir() {
            return Some(d);
        }
    }
    let named = |name: &str| exe.ancestors().find(|d| d.file_name().is_some_and(|n| n == name));
    named("release")
        .map(Path::to_path_buf)
        .or_else(|| named("target").map(|t| t.join("release")))
}

/// Where built programs are looked for from the program at `exe`: the profile directory it
/// is in (its own directory, or the parent of `deps/`), then [`release_dir`].
pub fn search_dirs(exe: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = exe.parent() {
        let dir = if dir.ends_with("deps") {
            dir.parent().unwrap_or(dir)
        } else {
            dir
        };
        dirs.push(dir.to_path_buf());
    }
    if let Some(r) = release_dir(exe)
        && !dirs.contains(&r)
    {
        dirs.push(r);
    }
    dirs
}

/// `dir/file` and `dir/deps/file` for each of `dirs`.
pub fn candidates(dirs: &[PathBuf], file: &str) -> Vec<PathBuf> {
    dirs.iter()
        .flat_map(|d| [d.join(file), d.join("deps").join(file)])
        .collect()
}

/// The newest `file` seen from the program at `exe`.
pub fn find(exe: &Path, file: &str) -> Option<PathBuf> {
    newest(&candidates(&search_dirs(exe), file))
}

/// The most recently modified of `cands` that exists.
pub fn newest(cands: &[PathBuf]) -> Option<PathBuf> {
    cands
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p.clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_the_profile_and_the_release_directory() {
        // Only when CARGO_TARGET_DIR does not redirect the release directory.
        if std::env::var_os("CARGO_TARGET_DIR").is_some() {
            return;
        }
        let p = PathBuf::from;
        assert_eq!(
            search_dirs(Path::new("/w/target/release/deps/open_loop-0123")),
            vec![p("/w/target/release")]
        );
        assert_eq!(
            search_dirs(Path::new("/w/target/debug/e2e")),
            vec![p("/w/target/debug"), p("/w/target/release")]
        );
        assert_eq!(
            search_dirs(Path::new("/usr/bin/toctou-attack")),
            vec![p("/usr/bin")]
        );
        assert_eq!(candidates(&[p("/r")], "x"), vec![p("/r/x"), p("/r/deps/x")]);
    }
}
