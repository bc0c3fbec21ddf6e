//! One module per server; the plumbing they share lives here: the static-file target, the
//! web server user, the shim's environment, the FUSE mount, and [`WebServer`]: nginx or
//! Apache serving any directory, tuned for the race or for throughput (the benchmarks).
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
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::{ServerProcess, wait_http};
use crate::target::{Guard, StartEnv, Target, TargetKind, Tools};

/// uid:gid of the web server user (www-data, else nobody).
pub fn server_user() -> (u32, u32) {
    for name in ["www-data", "nobody"] {
        if let Ok(Some(ids)) = crate::sys::lookup_user(name) {
            return ids;
        }
    }
    (65534, 65534)
}

/// Add `LD_PRELOAD` and `TOCTOU_GUARD_CONFIG` for shim targets (remove them for others).
pub fn add_shim_env(kind: TargetKind, env: &StartEnv<'_>, cmd: &mut Command) -> Result<()> {
    let shim = shim_for(kind, env)?;
    set_preload(cmd, shim.as_deref().map(|s| (s, env.guard_config)));
    Ok(())
}

/// The shim (canonical path) for a shim target, `None` for the others.
pub fn shim_for(kind: TargetKind, env: &StartEnv<'_>) -> Result<Option<PathBuf>> {
    if kind.guard() != Guard::Shim {
        return Ok(None);
    }
    let shim = env.tools.shim.as_ref().ok_or_else(|| Error::msg("no shim"))?;
    std::fs::canonicalize(shim)
        .map(Some)
        .map_err(|e| Error::io(format!("canonicalize {}", shim.display()), e))
}

/// `LD_PRELOAD=shim TOCTOU_GUARD_CONFIG=config` for `Some((shim, config))`; neither
/// variable (not even inherited) for `None`.
pub fn set_preload(cmd: &mut Command, shim: Option<(&Path, &Path)>) {
    match shim {
        Some((so, conf)) => cmd.env("LD_PRELOAD", so).env(toctou_config_env(), conf),
        None => cmd.env_remove("LD_PRELOAD").env_remove(toctou_config_env()),
    };
}

/// The shim's configuration variable.
pub fn toctou_config_env() -> &'static str {
    "TOCTOU_GUARD_CONFIG"
}

/// A per-start scratch directory under the run directory.
pub fn scratch(env: &StartEnv<'_>, name: &str, port: u16) -> Result<PathBuf> {
    scratch_in(&env.tenants.run, name, port)
}

/// `work/NAME-PORT`, created root-owned: a server's configuration, pid file and logs.
pub fn scratch_in(work: &Path, name: &str, port: u16) -> Result<PathBuf> {
    let d = work.join(format!("{name}-{port}"));
    crate::tenants::mk_dir(&d, 0, 0, 0o755)?;
    Ok(d)
}

/// How a web server is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Worker processes (nginx `worker_processes`; Apache `StartServers` and `ServerLimit`,
    /// 32 threads each); `None`: the server's own default (nginx `auto`, the event MPM's).
    pub workers: Option<u32>,
    /// `sendfile on` and `tcp_nopush on` (nginx), `EnableSendfile On` (Apache).
    pub sendfile: bool,
    /// Content types by extension (nginx `types`, Apache `mod_mime`); else `text/plain`.
    pub mime_types: bool,
    /// WebDAV writes: nginx `dav_methods PUT DELETE MOVE`, Apache `Dav On` (`mod_dav_fs`).
    pub webdav: bool,
}

impl Tuning {
    /// The attack targets: two workers, every response read from the file.
    pub const RACE: Tuning = Tuning {
        workers: Some(2),
        sendfile: false,
        mime_types: false,
        webdav: true,
    };
    /// The benchmarks: the servers' own worker defaults, sendfile, content types.
    pub const THROUGHPUT: Tuning = Tuning {
        workers: None,
        sendfile: true,
        mime_types: true,
        webdav: false,
    };
}

/// What every server configuration states: `docroot` on 127.0.0.1:`port`, the server's
/// own files (pid, logs, temp) in `dir`, tuned so.
#[derive(Debug, Clone, Copy)]
pub struct ConfigBase<'a> {
    pub docroot: &'a Path,
    pub port: u16,
    pub dir: &'a Path,
    pub tuning: Tuning,
}

/// A web server of static files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebServer {
    Nginx,
    Apache,
}

/// What a [`WebServer`] serves, and how.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// The directory URL `/` maps to.
    pub docroot: &'a Path,
    /// Where each start gets its scratch directory ([`scratch_in`]).
    pub work: &'a Path,
    pub tuning: Tuning,
    /// The server's own symlink check: nginx `disable_symlinks if_not_owner` (else `off`),
    /// Apache `Options SymLinksIfOwnerMatch` (else `FollowSymLinks`).
    pub symlink_check: bool,
    /// `(libtoctou_guard.so, config)` to preload.
    pub shim: Option<(&'a Path, &'a Path)>,
}

/// A started web server, answering HTTP.
pub struct Serving {
    pub process: ServerProcess,
    pub addr: SocketAddr,
    /// Its scratch directory: configuration, pid file, logs.
    pub dir: PathBuf,
}

impl WebServer {
    pub fn name(self) -> &'static str {
        match self {
            WebServer::Nginx => "nginx",
            WebServer::Apache => "apache",
        }
    }

    /// Its configuration serving `site` on `port`, its own files in `dir`.
    pub fn config(self, site: &Site<'_>, port: u16, dir: &Path) -> String {
        let base = ConfigBase {
            docroot: site.docroot,
            port,
            dir,
            tuning: site.tuning,
        };
        match (self, site.symlink_check) {
            (WebServer::Nginx, false) => nginx::text(&base, "off", ""),
            (WebServer::Nginx, true) => nginx::text(&base, "if_not_owner", ""),
            (WebServer::Apache, false) => apache::text(&base, "FollowSymLinks"),
            (WebServer::Apache, true) => apache::text(&base, "SymLinksIfOwnerMatch"),
        }
    }

    /// Start it serving `site` on a free port of 127.0.0.1 and wait until it answers HTTP.
    pub fn serve(self, tools: &Tools, site: &Site<'_>) -> Result<Serving> {
        let (bin, program) = match self {
            WebServer::Nginx => (&tools.nginx, "nginx"),
            WebServer::Apache => (&tools.apache, "apache2"),
        };
        let bin = bin
            .as_ref()
            .ok_or_else(|| Error::msg(format!("{program} not found")))?;
        let (process, addr) = spawn_listening("/", Duration::from_secs(20), |port| {
            let dir = scratch_in(site.work, self.name(), port)?;
            let shim_env = |c: &mut Command| {
                set_preload(c, site.shim);
                Ok(())
            };
            let text = self.config(site, port, &dir);
            match self {
                WebServer::Nginx => nginx::spawn(bin, &dir, &text, shim_env),
                WebServer::Apache => apache::spawn(bin, &dir, &text, shim_env),
            }
        })?;
        let dir = site.work.join(format!("{}-{}", self.name(), addr.port()));
        Ok(Serving { process, addr, dir })
    }
}

/// Start a server on a free port with `spawn` and wait up to `timeout` until it answers an
/// HTTP `GET probe`; up to 3 ports (one can be taken between probe and bind).
pub fn spawn_listening(
    probe: &str,
    timeout: Duration,
    mut spawn: impl FnMut(u16) -> Result<ServerProcess>,
) -> Result<(ServerProcess, SocketAddr)> {
    with_port_retries(|port| {
        let mut p = spawn(port)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_http(addr, probe, &mut [&mut p], timeout)?;
        Ok((p, addr))
    })
}

/// Start `server` as the target `kind`: the tenants' base (or its FUSE mount) as document
/// root, tuned for the race, the shim preloaded for a `+shim` kind.
pub fn start_static(
    kind: TargetKind,
    env: &StartEnv<'_>,
    server: WebServer,
    symlink_check: bool,
) -> Result<Box<dyn Target>> {
    let (docroot, mount) = docroot_for(kind, env)?;
    let shim = shim_for(kind, env)?;
    let site = Site {
        docroot: &docroot,
        work: &env.tenants.run,
        tuning: Tuning::RACE,
        symlink_check,
        shim: shim.as_deref().map(|s| (s, env.guard_config)),
    };
    let s = server.serve(env.tools, &site)?;
    Ok(StaticTarget::boxed(kind, env, (s.process, s.addr), mount))
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

impl StaticTarget {
    /// The target `kind` served by `server`, naming the tenants' files as they are.
    pub fn boxed(
        kind: TargetKind,
        env: &StartEnv<'_>,
        (process, addr): (ServerProcess, SocketAddr),
        mount: Option<fuse::FuseMount>,
    ) -> Box<dyn Target> {
        Box::new(StaticTarget {
            kind,
            addr,
            www: env.tenants.www.clone(),
            procs: vec![process],
            mount,
        })
    }
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
        check_all(&mut self.procs)?;
        if let Some(m) = &mut self.mount {
            m.check_alive()?;
        }
        Ok(())
    }
    fn describe(&self) -> String {
        describe_procs(self.kind, self.addr, &self.procs)
    }
    fn fuse_daemon(&self) -> Option<(u32, PathBuf)> {
        self.mount.as_ref().map(|m| (m.pid(), m.mountpoint.clone()))
    }
}

/// An error if any of `procs` has exited.
pub fn check_all(procs: &mut [ServerProcess]) -> Result<()> {
    procs.iter_mut().try_for_each(ServerProcess::check_alive)
}

/// `KIND on ADDR (NAME pid PID, ...)`.
pub fn describe_procs(kind: TargetKind, addr: SocketAddr, procs: &[ServerProcess]) -> String {
    let pids: Vec<String> = procs
        .iter()
        .map(|p| format!("{} pid {}", p.name, p.pid()))
        .collect();
    format!("{} on {addr} ({})", kind.name(), pids.join(", "))
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
