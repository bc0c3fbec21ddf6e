//! One module per server; the plumbing they share lives here: the static-file target, the
//! web server user, the shim's environment and the FUSE mount.
#![forbid(unsafe_code)]

pub mod apache;
pub mod external;
pub mod fuse;
pub mod naive;
pub mod nginx;
pub mod php;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::process::ServerProcess;
use crate::target::{Guard, StartEnv, Target, TargetKind};

/// uid:gid of the web server user (www-data, else nobody).
pub fn server_user() -> (u32, u32) {
    for name in ["www-data", "nobody"] {
        if let Ok(Some(ids)) = crate::sys::lookup_user(name) {
            return ids;
        }
    }
    (65534, 65534)
}

/// Add `LD_PRELOAD` and `TOCTOU_GUARD_CONFIG` for shim targets.
pub fn add_shim_env(kind: TargetKind, env: &StartEnv<'_>, cmd: &mut Command) -> Result<()> {
    if kind.guard() == Guard::Shim {
        let shim = env.tools.shim.as_ref().ok_or_else(|| Error::msg("no shim"))?;
        let shim = std::fs::canonicalize(shim)
            .map_err(|e| Error::io(format!("canonicalize {}", shim.display()), e))?;
        cmd.env("LD_PRELOAD", shim)
            .env(toctou_config_env(), env.guard_config);
    }
    Ok(())
}

/// The shim's configuration variable.
pub fn toctou_config_env() -> &'static str {
    "TOCTOU_GUARD_CONFIG"
}

/// A per-start scratch directory under the run directory.
pub fn scratch(env: &StartEnv<'_>, name: &str, port: u16) -> Result<PathBuf> {
    let d = env.tenants.run.join(format!("{name}-{port}"));
    crate::tenants::mk_dir(&d, 0, 0, 0o755)?;
    Ok(d)
}

/// A server of static files: URL `/x` is `www/x`, where `www` is the tenants' base (or
/// the FUSE mount of it).
pub struct StaticTarget {
    pub kind: TargetKind,
    pub addr: SocketAddr,
    /// The directory URL `/` maps to, as the tenants' files are named (not the mount).
    pub www: PathBuf,
    /// Dropped first: servers stop before the mount goes away.
    pub procs: Vec<ServerProcess>,
    pub mount: Option<fuse::FuseMount>,
}

impl Target for StaticTarget {
    fn kind(&self) -> TargetKind {
        self.kind
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn url(&self, file: &Path) -> Option<String> {
        let rel = file.strip_prefix(&self.www).ok()?;
        Some(format!("/{}", rel.to_str()?))
    }
    fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            p.check_alive()?;
        }
        if let Some(m) = &mut self.mount {
            m.check_alive()?;
        }
        Ok(())
    }
    fn describe(&self) -> String {
        let pids: Vec<String> = self
            .procs
            .iter()
            .map(|p| format!("{} pid {}", p.name, p.pid()))
            .collect();
        format!("{} on {} ({})", self.kind.name(), self.addr, pids.join(", "))
    }
}

/// The directory a server of `kind` serves: the tenants' base, or a FUSE mount of it.
pub fn docroot_for(kind: TargetKind, env: &StartEnv<'_>) -> Result<(PathBuf, Option<fuse::FuseMount>)> {
    if kind.guard() == Guard::Fuse {
        let m = fuse::FuseMount::start(env)?;
        Ok((m.mountpoint.clone(), Some(m)))
    } else {
        Ok((env.tenants.www.clone(), None))
    }
}

/// Try `start` up to 3 times (a free port can be taken between probe and bind).
pub fn with_port_retries<T>(mut start: impl FnMut(u16) -> Result<T>) -> Result<T> {
    let mut last = None;
    for _ in 0..3 {
        let port = crate::process::free_port()?;
        match start(port) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::msg("no attempt")))
}
