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
//!
//! [`load_policy_for`] first tries the compiled form (`CONFIG.tgc`, see [`crate::image`]):
//! the text is still opened and checked (steps 1–3) but not read; the image is opened and
//! checked the same way, validated, and used only if it was compiled from the text as it is
//! now (its `fstat`). Otherwise the text is parsed, and the reason is given once.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::decide::Policy;
use crate::error::{Error, ErrorKind};
use crate::image::{self, Bytes, Image, MAX_IMAGE_BYTES, Stamp};
use crate::meta::Meta;
use crate::trust;

/// The largest configuration accepted: 100,000 `map` lines of long vhost paths fit.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// What `fstat` said of the opened configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub meta: Meta,
    pub size: u64,
    /// What decides whether a compiled form is fresh (zero: unknown, never fresh).
    pub stamp: Stamp,
}

impl Opened {
    pub fn new(uid: u32, mode: u32, size: u64) -> Opened {
        Opened {
            meta: Meta { uid, mode },
            size,
            stamp: Stamp::default(),
        }
    }

    /// With the rest of the `fstat`: device, inode, mtime and ctime (nanoseconds).
    pub fn with_stamp(self, dev: u64, ino: u64, mtime_ns: i64, ctime_ns: i64) -> Opened {
        Opened {
            stamp: Stamp {
                dev,
                ino,
                size: self.size,
                mtime_ns,
                ctime_ns,
            },
            ..self
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
    /// The whole opened file (`size` bytes by its `fstat`) as a compiled image. The shim maps
    /// it read-only, shared with every process; by default it is read.
    fn image(&mut self, size: u64) -> Result<Arc<dyn Bytes>, String>
    where
        Self: Sized,
    {
        let _ = size;
        let bytes = read_to_end(self, MAX_IMAGE_BYTES)?;
        Ok(Arc::new(bytes))
    }
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
    open_checked(io, path, euid)?;
    let text = read_text(io, path)?;
    if program.is_some_and(|p| crate::config::program_left_unguarded(&text, p) == Some(false)) {
        return Ok(None);
    }
    parse(&text, path, roots).map(Some)
}

/// [`load`] with the `fstat` of the text that was parsed, for compiling it.
pub fn load_stamped(io: &mut impl ConfigIo, path: &Path, euid: u32) -> Result<(Config, Stamp), LoadError> {
    let opened = open_checked(io, path, euid)?;
    let text = read_text(io, path)?;
    Ok((parse(&text, path, Roots::Required)?, opened.stamp))
}

fn parse(text: &[u8], path: &Path, roots: Roots) -> Result<Config, LoadError> {
    match roots {
        Roots::Required => Config::parse_bytes(text, path),
        Roots::Optional => Config::parse_settings_bytes(text, path),
    }
    .map_err(LoadError::Invalid)
}

/// Steps 1–3: open `path`, check the opened file and every directory above it.
fn open_checked(io: &mut impl ConfigIo, path: &Path, euid: u32) -> Result<Opened, LoadError> {
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
    if opened.size > MAX_CONFIG_BYTES {
        return Err(too_large(path));
    }
    trust::check_ancestors(path, euid, |p| io.lstat(p)).map_err(LoadError::Invalid)?;
    Ok(opened)
}

fn too_large(path: &Path) -> LoadError {
    LoadError::Invalid(Error::new(
        ErrorKind::Invalid,
        path,
        None,
        format!("larger than {} MiB, the limit", MAX_CONFIG_BYTES >> 20),
    ))
}

/// Step 4's read of the opened text.
fn read_text(io: &mut impl ConfigIo, path: &Path) -> Result<Vec<u8>, LoadError> {
    let text = read_to_end(io, MAX_CONFIG_BYTES).map_err(|e| {
        LoadError::Invalid(Error::new(ErrorKind::Io, path, None, format!("cannot read: {e}")))
    })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large(path));
    }
    Ok(text)
}

/// What became of the compiled form next to a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiled {
    /// Used: compiled from the text as it is now.
    Fresh,
    /// There is none (`CONFIG.tgc` does not exist).
    Absent,
    /// Compiled from another state of the text: the text was edited since.
    Stale,
    /// Refused or malformed (a symlink, tenant-writable, truncated, ...): the reason.
    Refused(Error),
}

impl Compiled {
    /// The one line a guard logs when it parses the text although a compiled form exists.
    pub fn note(&self, text: &Path) -> Option<String> {
        match self {
            Compiled::Fresh | Compiled::Absent => None,
            Compiled::Stale => Some(format!(
                "{}: compiled form stale, parsing text (run toctou-guard compile)",
                image::path_for(text).display()
            )),
            Compiled::Refused(e) => Some(format!("{e}; parsing text")),
        }
    }
}

/// A loaded policy, and what became of the compiled form.
#[derive(Debug)]
pub struct Loaded {
    pub policy: Policy,
    pub compiled: Compiled,
}

/// Open the compiled form of the text whose `fstat` gave `text`, with the text's own trust
/// checks, and validate it. `Ok(None)`: fresh, but its `programs` lines leave `program`
/// unguarded.
fn open_image(
    io: &mut impl ConfigIo,
    text_path: &Path,
    euid: u32,
    text: Stamp,
    program: Option<&[u8]>,
) -> Result<Option<(Image, Config)>, Compiled> {
    let path = &image::path_for(text_path);
    let refuse = |kind, msg: String| Compiled::Refused(Error::new(kind, path, None, msg));
    let opened = match io.open(path) {
        Ok(o) => o,
        Err(OpenFailure::NotFound) => return Err(Compiled::Absent),
        Err(OpenFailure::Symlink) => {
            return Err(refuse(
                ErrorKind::UnsafeOwnership,
                "is a symbolic link: the compiled form is not used".into(),
            ));
        }
        Err(OpenFailure::Other(e)) => return Err(refuse(ErrorKind::Io, format!("cannot read: {e}"))),
    };
    trust::check_component(path, path, opened.meta, euid, true).map_err(Compiled::Refused)?;
    if opened.size > MAX_IMAGE_BYTES {
        return Err(refuse(
            ErrorKind::Invalid,
            format!("larger than {} MiB, the limit", MAX_IMAGE_BYTES >> 20),
        ));
    }
    trust::check_ancestors(path, euid, |p| io.lstat(p)).map_err(Compiled::Refused)?;
    let bytes = io
        .image(opened.size)
        .map_err(|e| refuse(ErrorKind::Io, format!("cannot read: {e}")))?;
    let (img, mut cfg) = Image::open_header(bytes, path).map_err(Compiled::Refused)?;
    if !text.is_known() || img.stamp() != text {
        return Err(Compiled::Stale);
    }
    cfg.source = text_path.to_path_buf(); // messages name the file the operator edits
    // A program the `programs` lines leave out stops here, before the image is read through.
    if program.is_some_and(|p| !cfg.guards_program(p)) {
        return Ok(None);
    }
    img.validate(path).map_err(Compiled::Refused)?;
    Ok(Some((img, cfg)))
}

/// Is there a compiled form of the configuration at `path`, and is it fresh? (The text is
/// checked as [`load`] does; it is not read.)
pub fn compiled_status(io: &mut impl ConfigIo, path: &Path, euid: u32) -> Result<Compiled, LoadError> {
    let text = open_checked(io, path, euid)?;
    Ok(match open_image(io, path, euid, text.stamp, None) {
        Ok(_) => Compiled::Fresh,
        Err(c) => c,
    })
}

/// [`load_for`] with `Roots::Required`, as a [`Policy`]: from the compiled form when it is
/// fresh and valid, else from the text (and [`Loaded::compiled`] says why).
pub fn load_policy_for(
    io: &mut impl ConfigIo,
    path: &Path,
    euid: u32,
    program: Option<&[u8]>,
) -> Result<Option<Loaded>, LoadError> {
    let text = open_checked(io, path, euid)?;
    let compiled = match open_image(io, path, euid, text.stamp, program) {
        Ok(loaded) => {
            return Ok(loaded.map(|(img, cfg)| Loaded {
                policy: Policy::from_image(cfg, img),
                compiled: Compiled::Fresh,
            }));
        }
        Err(c) => c,
    };
    // The text is opened again, and checked again, by the one text loader.
    Ok(
        load_for(io, path, euid, Roots::Required, program)?.map(|cfg| Loaded {
            policy: Policy::new(cfg),
            compiled,
        }),
    )
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
            open: Ok(Opened::new(uid, mode, size)),
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

    /// Two files, the text and its compiled form, by path.
    struct Two {
        files: Vec<(PathBuf, Result<Opened, OpenFailure>, Vec<u8>)>,
        reading: Vec<u8>,
        opens: Vec<PathBuf>,
    }

    use std::path::PathBuf;

    impl ConfigIo for Two {
        fn open(&mut self, p: &Path) -> Result<Opened, OpenFailure> {
            self.opens.push(p.to_path_buf());
            let (_, o, bytes) = self
                .files
                .iter()
                .find(|(q, _, _)| q == p)
                .ok_or(OpenFailure::NotFound)?;
            self.reading = bytes.clone();
            o.clone()
        }
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadFailure> {
            let n = self.reading.len().min(buf.len());
            buf[..n].copy_from_slice(&self.reading[..n]);
            self.reading.drain(..n);
            Ok(n)
        }
        fn lstat(&mut self, _: &Path) -> Option<Meta> {
            Some(Meta {
                uid: 0,
                mode: S_IFDIR | 0o755,
            })
        }
    }

    const TEXT: &[u8] = b"root /home/*/public_html\nmap /srv/shop 1005\nprograms nginx\n";

    fn text_opened(ctime_ns: i64) -> Opened {
        Opened::new(0, S_IFREG | 0o644, TEXT.len() as u64).with_stamp(8, 1234, 5, ctime_ns)
    }

    /// The text, and an image compiled from it when its ctime was `compiled_at`.
    fn two(compiled_at: i64, now: i64, image: Result<Opened, OpenFailure>) -> Two {
        let cfg = Config::parse_bytes(TEXT, Path::new("/etc/tg.conf")).unwrap();
        let bytes = image::compile(&cfg, text_opened(compiled_at).stamp).unwrap();
        let image = image.map(|o| Opened {
            size: bytes.len() as u64,
            ..o
        });
        Two {
            files: vec![
                (PathBuf::from("/etc/tg.conf"), Ok(text_opened(now)), TEXT.to_vec()),
                (PathBuf::from("/etc/tg.conf.tgc"), image, bytes),
            ],
            reading: Vec::new(),
            opens: Vec::new(),
        }
    }

    fn good() -> Result<Opened, OpenFailure> {
        Ok(Opened::new(0, S_IFREG | 0o644, 0))
    }

    fn load_two(t: &mut Two, program: Option<&[u8]>) -> Option<Loaded> {
        load_policy_for(t, Path::new("/etc/tg.conf"), 33, program).unwrap()
    }

    #[test]
    fn a_fresh_image_is_used_without_reading_the_text() {
        let mut t = two(7, 7, good());
        let l = load_two(&mut t, Some(b"nginx")).unwrap();
        assert_eq!(l.compiled, Compiled::Fresh);
        assert!(l.policy.is_compiled());
        assert_eq!(l.policy.config().source, Path::new("/etc/tg.conf"));
        assert_eq!(l.policy.root_count(), 2);
        assert!(matches!(
            l.policy.classify_clean(b"/srv/shop/x"),
            Some(crate::Target::Guarded {
                expected: crate::Expected::Uid(1005),
                ..
            })
        ));
        assert_eq!(
            t.opens.len(),
            2,
            "the text once (checked, not read), the image once"
        );
        assert!(
            load_two(&mut two(7, 7, good()), Some(b"bash")).is_none(),
            "programs"
        );
        let mut t = two(7, 7, good());
        assert_eq!(
            compiled_status(&mut t, Path::new("/etc/tg.conf"), 33),
            Ok(Compiled::Fresh)
        );
    }

    #[test]
    fn a_stale_image_is_ignored_and_said_once() {
        let mut t = two(7, 8, good());
        let l = load_two(&mut t, None).unwrap();
        assert_eq!(l.compiled, Compiled::Stale);
        assert!(!l.policy.is_compiled(), "the text is parsed");
        assert_eq!(
            l.compiled.note(Path::new("/etc/tg.conf")).unwrap(),
            "/etc/tg.conf.tgc: compiled form stale, parsing text (run toctou-guard compile)"
        );
        // A stamp no one filled in (inode 0) never passes for fresh.
        let mut t = two(7, 7, good());
        t.files[0].1 = Ok(Opened::new(0, S_IFREG | 0o644, TEXT.len() as u64));
        assert_eq!(load_two(&mut t, None).unwrap().compiled, Compiled::Stale);
        // No image: nothing to say.
        let mut t = two(7, 7, good());
        t.files.pop();
        let l = load_two(&mut t, None).unwrap();
        assert_eq!(
            (l.compiled.clone(), l.compiled.note(Path::new("x"))),
            (Compiled::Absent, None)
        );
    }

    #[test]
    fn an_untrusted_or_broken_image_is_refused_for_the_text() {
        let refused = |image: Result<Opened, OpenFailure>, edit: &dyn Fn(&mut Vec<u8>)| {
            let mut t = two(7, 7, image);
            edit(&mut t.files[1].2);
            let l = load_two(&mut t, None).unwrap();
            assert!(!l.policy.is_compiled());
            match l.compiled {
                Compiled::Refused(e) => e.to_string(),
                other => panic!("{other:?}"),
            }
        };
        let none = |_: &mut Vec<u8>| {};
        let e = refused(Ok(Opened::new(1001, S_IFREG | 0o644, 0)), &none);
        assert!(
            e.starts_with("/etc/tg.conf.tgc: refusing to trust it") && e.contains("owned by uid 1001"),
            "{e}"
        );
        let e = refused(Ok(Opened::new(0, S_IFREG | 0o666, 0)), &none);
        assert!(e.contains("writable by group or others"), "{e}");
        let e = refused(Err(OpenFailure::Symlink), &none);
        assert!(e.starts_with("/etc/tg.conf.tgc: is a symbolic link"), "{e}");
        let e = refused(good(), &|b| b.truncate(b.len() - 1));
        assert!(e.starts_with("/etc/tg.conf.tgc: compiled form: truncated"), "{e}");
        let e = refused(good(), &|b| b[8] = 9);
        assert!(e.contains("format version 9"), "{e}");
        let mut t = two(7, 7, good());
        t.files[1].2[0] = b'x';
        let status = compiled_status(&mut t, Path::new("/etc/tg.conf"), 33).unwrap();
        let note = status.note(Path::new("/etc/tg.conf")).unwrap();
        assert!(note.ends_with("(bad magic); parsing text"), "{note}");
    }
}
