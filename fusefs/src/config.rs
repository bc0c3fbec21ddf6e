//! The daemon's configuration: the guards' one file (`--config`, loaded by
//! `toctou_policy::load`, so it is refused for the same reasons as the shim's), plus the
//! command line's shorthands, which build the same `root`/`map` patterns the file would.
#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode as NixMode;
use toctou_policy::load::{self, ConfigIo, OpenFailure, Opened, ReadFailure, Roots};
use toctou_policy::{Config, Meta, OwnerRule, RootPattern};

use crate::args::Options;
use crate::syscalls;

/// The loader's system calls, through nix.
#[derive(Default)]
struct NixIo {
    fd: Option<OwnedFd>,
}

impl ConfigIo for NixIo {
    fn open(&mut self, path: &Path) -> Result<Opened, OpenFailure> {
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let failed = |e: Errno| OpenFailure::from_errno(e as i32, e.desc().into());
        let fd = nix::fcntl::open(path, flags, NixMode::empty()).map_err(failed)?;
        let st = syscalls::fstat(&fd).map_err(failed)?;
        let opened = Opened::new(st.st_uid, st.st_mode, st.st_size as u64);
        self.fd = Some(fd);
        Ok(opened)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadFailure> {
        let Some(fd) = &self.fd else {
            return Err(ReadFailure::Other("not open".into()));
        };
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => Err(ReadFailure::Interrupted),
            other => other.map_err(|e| ReadFailure::Other(e.desc().into())),
        }
    }

    fn lstat(&mut self, path: &Path) -> Option<Meta> {
        nix::sys::stat::lstat(path)
            .ok()
            .map(|st| Meta::new(st.st_uid, st.st_mode))
    }
}

/// The configuration for a mount of SOURCE (`source_abs`, canonical).
pub fn load(opts: &Options, source_abs: &[u8]) -> Result<Config, String> {
    let mut cfg = match &opts.config {
        Some(p) => load::load(&mut NixIo::default(), p, syscalls::euid(), Roots::Optional)
            .map_err(|e| e.error().to_string())?,
        None => Config::empty(Path::new("(command line)")),
    };
    if opts.owner_caller {
        // `--owner caller` is the file's `owner euid`: judged against the requesting uid
        // at every lookup (the kernel is not let cache those names).
        cfg.owner = OwnerRule::Euid;
    }
    // Patterns are text: a SOURCE that is not UTF-8 could never be matched by one, and a
    // mount whose patterns match nothing would serve every file unguarded.
    let source = std::str::from_utf8(source_abs)
        .map_err(|_| "SOURCE: its canonical path is not UTF-8; patterns could never match it".to_string())?;
    let source = source.trim_end_matches('/');
    let shorthand = match (opts.owner, opts.tenant_depth) {
        (Some(uid), _) => Some((format!("{source}/"), Some(uid))),
        (None, Some(depth)) => Some((format!("{source}{}", "/*".repeat(depth as usize)), None)),
        // Neither flag and no tree in the file: the classic layout, SOURCE/TENANT/...
        (None, None) => None,
    };
    match shorthand {
        // One source of trees: the first root a path enters decides, and a pattern in the
        // file could silently outrank the flag's.
        Some(_) if !cfg.roots.is_empty() => {
            return Err(format!(
                "{}: has root/map lines; --tenant-depth and --owner cannot be added to them",
                cfg.source.display()
            ));
        }
        Some((text, uid)) => add(&mut cfg, &text, uid)?,
        None if cfg.roots.is_empty() => add(&mut cfg, &format!("{source}/*"), None)?,
        None => {}
    }
    let at = if source.is_empty() { "/" } else { source };
    for r in &cfg.roots {
        let applies =
            r.pattern.match_clean(at.as_bytes()).is_some() || r.pattern.could_lie_below(at.as_bytes());
        if !applies {
            eprintln!(
                "toctou-guard-fs: {}:{}: '{}' matches nothing in SOURCE {at}",
                cfg.source.display(),
                r.line,
                r.pattern.as_str()
            );
        }
    }
    if !toctou_policy::Policy::new(cfg.clone()).may_guard_below(at.as_bytes()) {
        return Err(format!(
            "{}: no root or map applies to SOURCE {at}: every file would be served unguarded",
            cfg.source.display()
        ));
    }
    Ok(cfg)
}

/// Add the tree a command-line shorthand stands for.
fn add(cfg: &mut Config, text: &str, uid: Option<u32>) -> Result<(), String> {
    let text = if text.is_empty() { "/" } else { text };
    let pattern = RootPattern::parse(text, uid.is_none()).map_err(|e| format!("SOURCE: {e}"))?;
    cfg.add_root(pattern, uid).map_err(|e| e.to_string())
}
