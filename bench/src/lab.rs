//! The end-to-end lab shared by `e2e`: the attack harness's two tenants serving the measured
//! files, the set-ups (bare, `+shim`, the server's own defence, a FUSE mount) started and
//! checked, and one `wrk` run with the server's CPU time and the other load around it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toctou_attack::Tools;
use toctou_attack::artefacts::SHIM;
use toctou_attack::guardconf::GuardConfig;
use toctou_attack::http::Conn;
use toctou_attack::targets::{Serving, Site, Tuning, WebServer};
use toctou_attack::tenants::{TenantOptions, Tenants, filler, relative};

use crate::fixture::SMALL_FILE_BYTES;
use crate::proc;
use crate::wrk::{self, WrkOptions, WrkResult};

/// The small file, 4 components below the document root.
pub const SMALL: &str = "/d1/d2/d3/small.html";
pub const BIG: &str = "/big.bin";
/// A symlink to the other tenant's secret: 403 when guarded, 200 when it leaks.
pub const LEAK: &str = "/leak.html";
pub const BIG_BYTES: usize = 1 << 20;

/// The attack harness's two tenants, serving what is measured: the attacker's document root
/// holds the files; its `leak.html` is a symlink to the victim's secret, so every set-up
/// also shows whether it is guarded at all. Removed on drop, unless kept.
pub struct Lab {
    pub tenants: Tenants,
    pub base: PathBuf,
    keep: bool,
    pub tools: Tools,
    pub shim: PathBuf,
    /// The guard configuration of `+shim`.
    pub conf: PathBuf,
    /// How every server is started.
    pub tuning: Tuning,
}

impl Lab {
    pub fn new(keep: bool, tuning: Tuning) -> Result<Lab, String> {
        let shim = SHIM.locate()?;
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let tools = Tools::detect(&exe, Some(shim.clone()), None);
        let tenants = Tenants::create(&TenantOptions::default()).map_err(|e| e.to_string())?;
        let base = tenants.base.clone().ok_or("no base directory")?;
        add_site(&tenants).map_err(|e| e.to_string())?;
        let conf = GuardConfig {
            root: tenants.root_pattern(),
            owner_euid: false,
            allow_root: false,
            audit: false,
            log_socket: tenants.run.join("log.sock"),
            log_rate: 1000,
        }
        .write(&tenants.run, "guard.conf")
        .map_err(|e| e.to_string())?;
        Ok(Lab {
            tenants,
            base,
            keep,
            tools,
            shim,
            conf,
            tuning,
        })
    }

    /// The attacker's document root in `www`: the tenants' base, or a mount of it.
    pub fn docroot(&self, www: &Path) -> PathBuf {
        let a = &self.tenants.attacker.docroot;
        www.join(a.strip_prefix(&self.tenants.www).unwrap_or(a))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep
            && let Some(base) = self.tenants.keep()
        {
            eprintln!("kept {}", base.display());
        }
    }
}

/// The small file 4 levels deep, the 1 MiB file, and the leaking link.
fn add_site(t: &Tenants) -> toctou_attack::Result<()> {
    let a = &t.attacker;
    a.add_file(&SMALL[1..], &filler(SMALL_FILE_BYTES))?;
    a.add_file(&BIG[1..], &filler(BIG_BYTES))?;
    a.add_symlink(&LEAK[1..], &relative(&a.docroot, &t.secret))?;
    Ok(())
}

/// What is measured: which server, serving which document root, with which protection.
#[derive(Clone)]
pub struct Setup {
    pub server: WebServer,
    /// Row label, e.g. `+shim`.
    pub label: String,
    pub docroot: PathBuf,
    /// The shim preloaded (the tree's [`Lab::shim`], or another build to compare), if any.
    pub shim: Option<PathBuf>,
    /// The server's own defence (nginx `disable_symlinks if_not_owner`, Apache
    /// `SymLinksIfOwnerMatch`).
    pub symlink_check: bool,
    /// Other processes whose CPU time is part of serving (the FUSE daemon).
    pub helper_pids: Vec<u32>,
}

/// A started, checked set-up.
pub struct Server {
    pub setup: Setup,
    pub serving: Serving,
    /// The status `GET /leak.html` answered.
    pub leak: String,
}

impl Server {
    /// Start `setup` with the lab's tuning and check it.
    pub fn start(setup: Setup, lab: &Lab) -> Result<Server, String> {
        Server::start_with(setup, lab, &lab.tools, Duration::from_secs(5))
    }

    /// The same with other programs (`tools`: a server run under a profiler) and the
    /// check's per-request timeout.
    pub fn start_with(setup: Setup, lab: &Lab, tools: &Tools, timeout: Duration) -> Result<Server, String> {
        let site = Site {
            docroot: &setup.docroot,
            work: &lab.tenants.run,
            tuning: lab.tuning,
            symlink_check: setup.symlink_check,
            shim: setup.shim.as_deref().map(|so| (so, lab.conf.as_path())),
        };
        let serving = setup.server.serve(tools, &site).map_err(|e| e.to_string())?;
        let mut server = Server {
            setup,
            serving,
            leak: String::new(),
        };
        server.leak = server
            .check(timeout)
            .map_err(|e| format!("{e} (see {})", server.serving.dir.display()))?;
        Ok(server)
    }

    /// Before measuring: both files served in full, the shim loaded where it should be.
    /// What `GET /leak.html` answers.
    fn check(&self, timeout: Duration) -> Result<String, String> {
        let mut conn = Conn::new(self.serving.addr, timeout);
        let mut get = |path: &str| {
            conn.get(path)
                .map(|r| (r.status, r.body.len()))
                .map_err(|e| format!("{}{path}: {e}", self.serving.addr))
        };
        let small = get(SMALL)?;
        let big = get(BIG)?;
        if small != (200, SMALL_FILE_BYTES) || big != (200, BIG_BYTES) {
            return Err(format!("small file gave {small:?}, 1 MB file gave {big:?}"));
        }
        if let Some(so) = &self.setup.shim {
            // The very file (`+shim B` loads another build of the same name).
            let real = std::fs::canonicalize(so).map_err(|e| format!("{}: {e}", so.display()))?;
            if !proc::maps_contain(self.pid(), &real.to_string_lossy()) {
                return Err(format!("{} is not loaded in the server", so.display()));
            }
        }
        Ok(get(LEAK)?.0.to_string())
    }

    /// The master process (or the program that runs it, e.g. valgrind).
    pub fn pid(&self) -> u32 {
        self.serving.process.pid()
    }

    /// The master process and the helpers (FUSE daemon) whose CPU time counts.
    pub fn cpu_roots(&self) -> Vec<u32> {
        let mut v = vec![self.pid()];
        v.extend(&self.setup.helper_pids);
        v
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.serving.addr)
    }
}

/// One wrk run against `server`, with the server's own CPU time and the foreign load.
pub fn measure(server: &Server, path: &str, opts: WrkOptions) -> Result<WrkResult, String> {
    let roots = server.cpu_roots();
    let before = proc::tree_cpu_ticks(&roots);
    let mut r = wrk::wrk(&server.url(path), opts)?;
    let server_s = proc::tree_cpu_ticks(&roots).saturating_sub(before) as f64 / proc::clock_ticks();
    if r.requests > 0 {
        r.server_cpu_us_per_req = server_s * 1e6 / r.requests as f64;
    }
    let foreign = (r.machine_cpu_s - server_s - r.wrk_cpu_s).max(0.0);
    r.foreign_load = foreign / (proc::cpus() * r.wall_s.max(0.1));
    Ok(r)
}
