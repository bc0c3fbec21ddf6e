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
    if cfg.owner == OwnerRule::Euid {
        // The mount decides once per object and tenant and lets the kernel cache it; a rule
        // that depends on the calling process cannot be cached. The tenant rule still
        // applies: nothing is served unguarded.
        eprintln!(
            "toctou-guard-fs: {}: 'owner euid' is ignored here; files are judged by their \
             tenant directory's owner",
            cfg.source.display()
        );
    }
    let source = String::from_utf8_lossy(source_abs).into_owned();
    let source = source.trim_end_matches('/');
    let shorthand = match (opts.owner, opts.tenant_depth) {
        (Some(uid), _) => Some((format!("{source}/"), Some(uid))),
        (None, Some(depth)) => Some((format!("{source}{}", "/*".repeat(depth as usize)), None)),
        // Neither flag and no tree in the file: the classic layout, SOURCE/TENANT/...
        (None, None) if cfg.roots.is_empty() => Some((format!("{source}/*"), None)),
        (None, None) => None,
    };
    if let Some((text, uid)) = shorthand {
        let text = if text.is_empty() { "/".to_string() } else { text };
        let pattern = RootPattern::parse(&text, uid.is_none()).map_err(|e| format!("SOURCE: {e}"))?;
        cfg.add_root(pattern, uid).map_err(|e| e.to_string())?;
    }
    for r in &cfg.roots {
        let lit = r.pattern.as_str().split('*').next().unwrap_or_default();
        let under = lit.starts_with(source) || source.starts_with(lit.trim_end_matches('/'));
        if !under {
            eprintln!(
                "toctou-guard-fs: {}:{}: '{}' is not under SOURCE {source}: it guards nothing here",
                cfg.source.display(),
                r.line,
                r.pattern.as_str()
            );
        }
    }
    Ok(cfg)
}
