//! Read a configuration exactly as the guards do (`toctou_policy::load`), with `std::fs`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use toctou_policy::load::{self, ConfigIo, OpenFailure, Opened, ReadFailure, Roots};
use toctou_policy::{CONFIG_ENV, Config, DEFAULT_CONFIG_PATH, Error, Meta};

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

/// `std::fs` for the policy's loader.
#[derive(Default)]
struct StdIo {
    file: Option<File>,
}

impl ConfigIo for StdIo {
    fn open(&mut self, path: &Path) -> Result<Opened, OpenFailure> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| OpenFailure::from_errno(e.raw_os_error().unwrap_or(0), e.to_string()))?;
        let m = file.metadata().map_err(|e| OpenFailure::Other(e.to_string()))?;
        self.file = Some(file);
        let ns = |s: i64, n: i64| s.wrapping_mul(1_000_000_000).wrapping_add(n);
        Ok(Opened::new(m.uid(), m.mode(), m.size()).with_stamp(
            m.dev(),
            m.ino(),
            ns(m.mtime(), m.mtime_nsec()),
            ns(m.ctime(), m.ctime_nsec()),
        ))
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadFailure> {
        let file = self.file.as_mut().ok_or(ReadFailure::Other("not open".into()))?;
        loop {
            match file.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r.map_err(|e| ReadFailure::Other(e.to_string())),
            }
        }
    }

    fn lstat(&mut self, path: &Path) -> Option<Meta> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(Meta::new(m.uid(), m.mode()))
    }
}

pub fn load(path: &Path) -> Result<Config, Error> {
    load::load(&mut StdIo::default(), path, euid(), Roots::Required).map_err(|e| e.error().clone())
}

/// [`load`] with the `fstat` of the text parsed, for `compile`.
pub fn load_stamped(path: &Path) -> Result<(Config, toctou_policy::image::Stamp), String> {
    load::load_stamped(&mut StdIo::default(), path, euid()).map_err(|e| describe(e.error()))
}

/// Is the compiled form of `path` there and fresh? (`check`, and `compile` after writing.)
pub fn compiled_status(path: &Path) -> Result<load::Compiled, String> {
    load::compiled_status(&mut StdIo::default(), path, euid()).map_err(|e| describe(e.error()))
}

/// An error for the operator: the guards' message, then the offending line itself. The CLI
/// may show it (the guards never do): it read the file with the operator's own rights.
pub fn describe(e: &Error) -> String {
    let mut msg = e.to_string();
    if let Some(n) = e.line()
        && let Ok(text) = std::fs::read(e.file())
        && let Some(line) = text.split(|&b| b == b'\n').nth(n - 1)
    {
        msg.push_str(&format!("\n  {n} | {}", String::from_utf8_lossy(line)));
    }
    msg
}
