//! Prerequisites. A missing one prints `SKIP: <what>` and skips the test on a developer's
//! machine, but fails the test when `CI` is set: a test CI silently skips proves nothing.

use std::path::Path;

/// Is this a CI run (`CI` set to anything but empty, `0` or `false`)?
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// `ok`, or skip (locally) / panic (in CI) naming `what` is missing.
#[track_caller]
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("missing prerequisite in CI: {what}");
    }
    eprintln!("SKIP: {what}");
    false
}

/// Running as root.
#[track_caller]
pub fn root() -> bool {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(2).map(|s| s.to_string()));
    require(
        euid.as_deref() == Some("0"),
        "root (tests chown files to tenant uids and start servers)",
    )
}

/// An executable or file at `path`.
#[track_caller]
pub fn file(path: &Path, what: &str) -> bool {
    require(path.is_file(), &format!("{what} ({})", path.display()))
}

/// `/dev/fuse`.
#[track_caller]
pub fn fuse() -> bool {
    require(Path::new("/dev/fuse").exists(), "/dev/fuse")
}

/// The first of `candidates` that exists, or a skip/failure naming `what`.
#[track_caller]
pub fn program(candidates: &[&str], what: &str) -> Option<std::path::PathBuf> {
    let found = candidates
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file());
    if require(
        found.is_some(),
        &format!("{what} (looked for {})", candidates.join(", ")),
    ) {
        found
    } else {
        None
    }
}
