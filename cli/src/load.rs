//! Read a configuration the way the shim does: ownership first, then syntax.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use toctou_policy::trust::{self, Meta};
use toctou_policy::{CONFIG_ENV, Config, DEFAULT_CONFIG_PATH, Error, ErrorKind};

pub fn default_path() -> PathBuf {
    std::env::var_os(CONFIG_ENV).map_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH), PathBuf::from)
}

pub fn euid() -> u32 {
    // Without unsafe: the owner of a file we create would do, but /proc says it directly.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

pub fn load(path: &Path) -> Result<Config, Error> {
    let io = |e: std::io::Error| Error::new(ErrorKind::Io, path, None, format!("cannot read: {e}"));
    let text = std::fs::read(path).map_err(io)?;
    let euid = euid();
    trust::check_path(path, euid, |p| {
        std::fs::symlink_metadata(p).ok().map(|m| Meta {
            uid: m.uid(),
            mode: m.mode(),
        })
    })?;
    let m = std::fs::metadata(path).map_err(io)?;
    trust::check_component(
        path,
        path,
        Meta {
            uid: m.uid(),
            mode: m.mode(),
        },
        euid,
        true,
    )?;
    let text =
        String::from_utf8(text).map_err(|_| Error::new(ErrorKind::Syntax, path, None, "not UTF-8 text"))?;
    Config::parse(&text, path)
}
