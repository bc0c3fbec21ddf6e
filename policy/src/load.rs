//! Loading a configuration file: the one procedure every guard follows, with the system
//! calls supplied by the caller ([`ConfigIo`]), so the order of checks is written once.
//!
//! 1. Open the file read-only, non-blocking, without following a final symlink: a FIFO
//!    cannot hang a process at start, and a link cannot point the guard at a file the
//!    caller chose.
//! 2. `fstat` the opened descriptor: a regular file, owned by root (or the process's own
//!    uid), not writable by group or others, no larger than [`MAX_CONFIG_BYTES`]. The checks
//!    are on the object that will be read, so no swap of the name can change the answer.
//! 3. Every directory above it: the same ownership rule (sticky directories excepted).
//! 4. Read and parse; an error names the file and line.

use std::path::Path;

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::meta::Meta;
use crate::trust;

/// The largest configuration accepted: 100,000 `map` lines of long vhost paths fit.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// What `fstat` said of the opened configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub meta: Meta,
    pub size: u64,
}

impl Opened {
    pub fn new(uid: u32, mode: u32, size: u64) -> Opened {
        Opened {
            meta: Meta { uid, mode },
            size,
        }
    }
}

/// Why the configuration could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenFailure {
    /// No file at that path (`ENOENT`).
    NotFound,
    /// The final component is a symbolic link (`ELOOP` from `O_NOFOLLOW`).
    Symlink,
    /// Anything else, as the system's error text.
    Other(String),
}

impl OpenFailure {
    /// From the `open`'s errno (Linux numbers) and the system's text for it.
    pub fn from_errno(errno: i32, text: String) -> OpenFailure {
        const ENOENT: i32 = 2;
        const ELOOP: i32 = 40;
        match errno {
            ENOENT => OpenFailure::NotFound,
            ELOOP => OpenFailure::Symlink,
            _ => OpenFailure::Other(text),
        }
    }
}

/// A failed `read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFailure {
    /// `EINTR`: the loader reads again.
    Interrupted,
    Other(String),
}

/// The system calls the loader needs; each guard implements it with its own I/O layer.
pub trait ConfigIo {
    /// `open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)`, then `fstat` of the
    /// descriptor, which the implementation keeps for [`Self::read`].
    fn open(&mut self, path: &Path) -> Result<Opened, OpenFailure>;
    /// One `read` of the opened descriptor into `buf` (0 at its end).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadFailure>;
    /// `lstat` of a directory above the file.
    fn lstat(&mut self, path: &Path) -> Option<Meta>;
}

/// Read the opened file to its end, or stop once more than `limit` bytes came.
fn read_to_end(io: &mut impl ConfigIo, limit: u64) -> Result<Vec<u8>, String> {
    let mut text = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while text.len() as u64 <= limit {
        match io.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n.min(chunk.len())]),
            Err(ReadFailure::Interrupted) => continue,
            Err(ReadFailure::Other(e)) => return Err(e),
        }
    }
    Ok(text)
}

/// Whether the configuration must name guarded trees itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// The shim and the CLI: a configuration without `root`/`map` guards nothing.
    Required,
    /// The FUSE mount, which can also build its tree from SOURCE and `--tenant-depth`.
    Optional,
}

/// A failed load. `Missing` is kept apart: a library installed with no configuration at all
/// is a deployment decision, every other failure is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    Missing(Error),
    Invalid(Error),
}

impl LoadError {
    pub fn error(&self) -> &Error {
        match self {
            LoadError::Missing(e) | LoadError::Invalid(e) => e,
        }
    }
}

/// Open, check and parse the configuration at `path` for a process whose euid is `euid`.
pub fn load(io: &mut impl ConfigIo, path: &Path, euid: u32, roots: Roots) -> Result<Config, LoadError> {
    // With no program named, nothing is skipped: always `Some`.
    load_for(io, path, euid, roots, None)?.ok_or_else(|| {
        LoadError::Invalid(Error::new(
            ErrorKind::Invalid,
            path,
            None,
            "not parsed".to_string(),
        ))
    })
}

/// [`load`] for the program `program`: `Ok(None)` when the file's `programs` lines leave it
/// unguarded, decided after the trust checks but before parsing (see
/// [`crate::config::program_left_unguarded`]).
pub fn load_for(
    io: &mut impl ConfigIo,
    path: &Path,
    euid: u32,
    roots: Roots,
    program: Option<&[u8]>,
) -> Result<Option<Config>, LoadError> {
    let err = |kind, msg: String| LoadError::Invalid(Error::new(kind, path, None, msg));
    let opened = match io.open(path) {
        Ok(o) => o,
        Err(OpenFailure::NotFound) => {
            return Err(LoadError::Missing(Error::new(
                ErrorKind::Io,
                path,
                None,
                "cannot read: no such file",
            )));
        }
        Err(OpenFailure::Symlink) => {
            return Err(err(
                ErrorKind::UnsafeOwnership,
                "is a symbolic link: name the file itself (a link could be pointed elsewhere)".into(),
            ));
        }
        Err(OpenFailure::Other(e)) => return Err(err(ErrorKind::Io, format!("cannot read: {e}"))),
    };
    trust::check_component(path, path, opened.meta, euid, true).map_err(LoadError::Invalid)?;
    let too_large = || {
        err(
            ErrorKind::Invalid,
            format!("larger than {} MiB, the limit", MAX_CONFIG_BYTES >> 20),
        )
    };
    if opened.size > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    trust::check_ancestors(path, euid, |p| io.lstat(p)).map_err(LoadError::Invalid)?;
    let text =
        read_to_end(io, MAX_CONFIG_BYTES).map_err(|e| err(ErrorKind::Io, format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    if program.is_some_and(|p| crate::config::program_left_unguarded(&text, p) == Some(false)) {
        return Ok(None);
    }
    let parsed = match roots {
        Roots::Required => Config::parse_bytes(&text, path),
        Roots::Optional => Config::parse_settings_bytes(&text, path),
    };
    parsed.map(Some).map_err(LoadError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{S_IFDIR, S_IFREG};

    /// A scripted file system: one file, its parent, and what opening it does.
    struct Fake {
        open: Result<Opened, OpenFailure>,
        text: Vec<u8>,
        parent: Meta,
    }

    impl ConfigIo for Fake {
        fn open(&mut self, _: &Path) -> Result<Opened, OpenFailure> {
            self.open.clone()
        }
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadFailure> {
            let n = self.text.len().min(buf.len());
            buf[..n].copy_from_slice(&self.text[..n]);
            self.text.drain(..n);
            Ok(n)
        }
        fn lstat(&mut self, p: &Path) -> Option<Meta> {
            Some(if p == Path::new("/etc") {
                self.parent
            } else {
                Meta {
                    uid: 0,
                    mode: S_IFDIR | 0o755,
                }
            })
        }
    }

    fn fake(mode: u32, uid: u32, size: u64) -> Fake {
        Fake {
            open: Ok(Opened {
                meta: Meta { uid, mode },
                size,
            }),
            text: b"root /home/*/public_html\n".to_vec(),
            parent: Meta {
                uid: 0,
                mode: S_IFDIR | 0o755,
            },
        }
    }

    fn run(f: &mut Fake) -> Result<Config, String> {
        load(f, Path::new("/etc/tg.conf"), 33, Roots::Required).map_err(|e| e.error().to_string())
    }

    #[test]
    fn a_root_owned_file_loads() {
        let c = run(&mut fake(S_IFREG | 0o644, 0, 25)).unwrap();
        assert_eq!(c.roots.len(), 1);
    }

    #[test]
    fn every_refusal_names_the_file() {
        let e = run(&mut fake(0o010000 | 0o644, 0, 0)).unwrap_err();
        assert_eq!(
            e,
            "/etc/tg.conf: refusing to trust it: /etc/tg.conf is not a regular file (it must be owned by root and writable by its owner only)"
        );
        let e = run(&mut fake(S_IFREG | 0o664, 0, 25)).unwrap_err();
        assert!(
            e.starts_with("/etc/tg.conf: ") && e.contains("writable by group"),
            "{e}"
        );
        let e = run(&mut fake(S_IFREG | 0o644, 1001, 25)).unwrap_err();
        assert!(e.contains("owned by uid 1001"), "{e}");
        let e = run(&mut fake(S_IFREG | 0o644, 0, MAX_CONFIG_BYTES + 1)).unwrap_err();
        assert_eq!(e, "/etc/tg.conf: larger than 16 MiB, the limit");
        let mut f = fake(S_IFREG | 0o644, 0, 25);
        f.open = Err(OpenFailure::Symlink);
        assert!(
            run(&mut f)
                .unwrap_err()
                .starts_with("/etc/tg.conf: is a symbolic link")
        );
        let mut f = fake(S_IFREG | 0o644, 0, 25);
        f.parent = Meta {
            uid: 1001,
            mode: S_IFDIR | 0o755,
        };
        assert!(run(&mut f).unwrap_err().contains("/etc is owned by uid 1001"));
        let mut f = fake(S_IFREG | 0o644, 0, 25);
        f.text = b"root /a/*\n\xff\n".to_vec();
        assert_eq!(run(&mut f).unwrap_err(), "/etc/tg.conf:2: not UTF-8 text");
    }

    #[test]
    fn missing_is_told_apart() {
        let mut f = fake(S_IFREG | 0o644, 0, 25);
        f.open = Err(OpenFailure::NotFound);
        let e = load(&mut f, Path::new("/etc/tg.conf"), 0, Roots::Required).unwrap_err();
        assert!(matches!(e, LoadError::Missing(_)));
    }
}
