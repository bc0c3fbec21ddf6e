//! Under load, in real servers: Apache prefork, Apache event and nginx (`worker_processes 2`)
//! each serve a tenant's static file to `wrk` while the test reloads them in a loop
//! (`apache2 -f CONF -k graceful`, `nginx -s reload`), and php-fpm (`pm = dynamic`,
//! `pm.max_requests = 50`: children come and go) serves a tiny PHP page behind nginx with its
//! pool running as the tenant (`owner euid`). Each runs twice, bare and with the shim
//! enforcing, for the same time and the same reload pace, and the guarded run must show:
//!
//! - no worker death: no `exited on signal`, `exit signal`, `SIGSEGV`, `SIGABRT`, ... line in
//!   the server's error logs and stderr (that count is checked not to be blind: after the
//!   bare run's load one worker is killed with SIGSEGV and its line must appear);
//! - no failed request that succeeds bare: no non-2xx answer in either run (the file is the
//!   tenant's own), and no more socket errors than the bare run shows per reload (a reload
//!   can reset a connection in both runs), give or take a few, and none at all in a
//!   warm-up without reloads (nor in php-fpm's run, which reloads nothing);
//! - flat memory: the RSS of the master and of its largest worker, sampled from /proc under
//!   load every [`TICK`] (just before each reload), grows from the first samples to the
//!   last by less than [`RSS_GROWTH_LIMIT_KB`];
//! - the shim is mapped in the master and every worker, denies nothing during the load, and
//!   still refuses the victim's file (a hard link in the tenant's tree) after the reloads.
//!
//! One `LOAD ...` line per server and mode carries the numbers (run with `--nocapture`).
//!
//! Needs root, apache2, nginx, php-fpm8.2, wrk and the shim. A missing prerequisite prints
//! `SKIP:` locally and fails when `CI` is set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use regex::Regex;
use toctou_attack::guardconf::{GuardConfig, LogListener};
use toctou_attack::http::{Conn, encode_query};
use toctou_attack::process::{ServerProcess, wait_http};
use toctou_attack::targets::{
    ConfigBase, Site, Tuning, WebServer, apache, nginx, php, scratch_in, set_preload, spawn_listening,
    with_port_retries,
};
use toctou_attack::tenants::mk_file;
use toctou_attack::{TargetKind, Tenants, Tools};
use toctou_guard_tests::harness::tools_for;
use toctou_guard_tests::poll::poll_for;
use toctou_guard_tests::{heavy, prereq};

/// Seconds of measured load per server and mode.
const RUN_SECS: u64 = 15;
/// Seconds of load before the first RSS sample (buffers, caches, the first connections).
const WARMUP_SECS: u64 = 2;
/// wrk's threads and connections (2 cores: the servers need the other half).
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 8;
/// One RSS sample and one reload at most this often: the pace of the loop beside wrk, the
/// same bare and guarded.
const TICK: Duration = Duration::from_millis(500);
/// How long one reload may take until the new generation of workers serves alone.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many ticks per run (the loop is also bounded by the run's time).
const MAX_TICKS: u32 = 200;
/// RSS samples taken together (their largest values) at the start and at the end of a run.
const RSS_SAMPLES: usize = 3;
/// Allowed RSS growth of the master and of the largest worker over the guarded run.
const RSS_GROWTH_LIMIT_KB: i64 = 4096;
/// Socket errors the guarded run may show beyond the bare run's rate per reload.
const SOCKET_ERROR_SLACK: u64 = 16;
/// php-fpm's pool: children come and go.
const PHP_MAX_REQUESTS: u32 = 50;

const MODULES: &str = "/usr/lib/apache2/modules";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    ApachePrefork,
    ApacheEvent,
    Nginx,
    PhpFpm,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::ApachePrefork => "apache-prefork",
            Stack::ApacheEvent => "apache-event",
            Stack::Nginx => "nginx",
            Stack::PhpFpm => "php-fpm",
        }
    }

    /// The harness targets whose prerequisites this stack shares.
    fn kinds(self) -> [TargetKind; 2] {
        match self {
            Stack::ApachePrefork | Stack::ApacheEvent => [TargetKind::Apache, TargetKind::ApacheShim],
            Stack::Nginx => [TargetKind::Nginx, TargetKind::NginxShim],
            Stack::PhpFpm => [TargetKind::Php, TargetKind::PhpShim],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Guarded,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::Guarded => "guarded",
        }
    }
}

/// Two tenants, a log socket, wrk, and the files asked for.
struct Lab {
    tools: Tools,
    wrk: PathBuf,
    log: LogListener,
    /// The attacker tenant's own static file (what wrk asks for).
    own: PathBuf,
    /// A hard link (made by root) to the victim's secret, in the attacker's docroot.
    hard: PathBuf,
    /// The PHP page (php-fpm only), in the attacker's docroot, owned by the attacker.
    page: PathBuf,
    tenants: Tenants,
}

impl Lab {
    fn new(stack: Stack) -> Option<Lab> {
        let tools = tools_for(&stack.kinds())?;
        let wrk = prereq::program(&["/usr/bin/wrk", "/usr/local/bin/wrk"], "wrk")?;
        if stack == Stack::ApachePrefork {
            let so = format!("{MODULES}/mod_mpm_prefork.so");
            if !prereq::file(Path::new(&so), "Apache's prefork MPM") {
                return None;
            }
        }
        let tenants = Tenants::create(&Default::default()).expect("tenants");
        let log = LogListener::bind(&tenants.run.join("log.sock")).expect("log socket");
        let a = &tenants.attacker;
        let own = a.docroot.join("tg-legit/index.html");
        let hard = a.docroot.join("evil-hard.txt");
        std::fs::hard_link(&tenants.secret, &hard).expect("hard link");
        let page = a.docroot.join("read.php");
        if stack == Stack::PhpFpm {
            mk_file(
                &page,
                php::page_source(&tenants.www).as_bytes(),
                a.uid,
                a.gid,
                0o644,
            )
            .expect("read.php");
        }
        Some(Lab {
            tools,
            wrk,
            log,
            own,
            hard,
            page,
            tenants,
        })
    }

    /// The guard's configuration (root-owned, in the root-owned run directory).
    fn guard_config(&self, owner_euid: bool) -> PathBuf {
        let gc = GuardConfig {
            root: self.tenants.root_pattern(),
            owner_euid,
            allow_root: true,
            audit: false,
            log_socket: self.log.path.clone(),
            log_rate: 1000,
        };
        let name = if owner_euid {
            "guard-euid.conf"
        } else {
            "guard.conf"
        };
        gc.write(&self.tenants.run, name).expect("guard config")
    }

    /// The URL path of `file` (under the tenants' base) on `stack`.
    fn url(&self, stack: Stack, file: &Path) -> String {
        let rel = |p: &Path| {
            p.strip_prefix(&self.tenants.www)
                .expect("under the base")
                .to_str()
                .expect("utf-8")
                .to_string()
        };
        match stack {
            Stack::PhpFpm => format!("/{}?p={}", rel(&self.page), encode_query(&rel(file))),
            _ => format!("/{}", rel(file)),
        }
    }

    fn start(&self, stack: Stack, mode: Mode) -> Running {
        let conf = self.guard_config(stack == Stack::PhpFpm);
        let shim = match mode {
            Mode::Bare => None,
            Mode::Guarded => {
                Some(std::fs::canonicalize(self.tools.shim.as_ref().expect("shim")).expect("shim path"))
            }
        };
        let preload = shim.as_deref().map(|s| (s, conf.as_path()));
        let r = match stack {
            Stack::ApachePrefork | Stack::ApacheEvent => self.start_apache(stack, mode, preload),
            Stack::Nginx => self.start_nginx(preload),
            Stack::PhpFpm => self.start_php(mode, preload),
        };
        r.unwrap_or_else(|e| panic!("start {} {}: {e}", stack.name(), mode.name()))
    }

    fn start_apache(
        &self,
        stack: Stack,
        mode: Mode,
        preload: Option<(&Path, &Path)>,
    ) -> toctou_attack::Result<Running> {
        let bin = self.tools.apache.clone().expect("apache2");
        let name = format!("{}-{}", stack.name(), mode.name());
        let mut dir = PathBuf::new();
        let (process, addr) = spawn_listening("/", Duration::from_secs(20), |port| {
            dir = scratch_in(&self.tenants.run, &name, port)?;
            let base = ConfigBase {
                docroot: &self.tenants.www,
                port,
                dir: &dir,
                tuning: Tuning {
                    workers: None,
                    sendfile: false,
                    mime_types: false,
                    webdav: false,
                },
            };
            let text = apache_config(&base, stack == Stack::ApachePrefork);
            apache::spawn(&bin, &dir, &text, |c| {
                set_preload(c, preload);
                Ok(())
            })
        })?;
        let reload = Reload::Apache {
            bin,
            conf: dir.join("apache.conf"),
            dir: dir.clone(),
        };
        Ok(Running {
            master: process.pid(),
            logs: vec![dir.join("error.log"), dir.join("stderr.log")],
            procs: vec![process],
            addr,
            reload: Some(reload),
        })
    }

    fn start_nginx(&self, preload: Option<(&Path, &Path)>) -> toctou_attack::Result<Running> {
        let site = Site {
            docroot: &self.tenants.www,
            work: &self.tenants.run,
            // worker_processes 2, every response read from the file.
            tuning: Tuning::RACE,
            symlink_check: false,
            shim: preload,
        };
        let s = WebServer::Nginx.serve(&self.tools, &site)?;
        let reload = Reload::Nginx {
            bin: self.tools.nginx.clone().expect("nginx"),
            dir: s.dir.clone(),
        };
        Ok(Running {
            master: s.process.pid(),
            logs: vec![s.dir.join("error.log"), s.dir.join("stderr.log")],
            procs: vec![s.process],
            addr: s.addr,
            reload: Some(reload),
        })
    }

    fn start_php(&self, mode: Mode, preload: Option<(&Path, &Path)>) -> toctou_attack::Result<Running> {
        let nginx_bin = self.tools.nginx.clone().expect("nginx");
        let fpm_bin = self.tools.php_fpm.clone().expect("php-fpm");
        let a = &self.tenants.attacker;
        let probe = self.url(Stack::PhpFpm, &self.own);
        with_port_retries(|port| {
            let dir = scratch_in(&self.tenants.run, &format!("php-{}", mode.name()), port)?;
            let fpm_text = php_fpm_config(&dir, a.uid, a.gid);
            let mut fpm = php::spawn_fpm(&fpm_bin, &dir, &fpm_text, |c| {
                set_preload(c, preload);
                Ok(())
            })?;
            let text = nginx::config(&self.tenants.www, port, &dir, "off", &php::fastcgi_location(&dir));
            let mut ngx = nginx::spawn(&nginx_bin, &dir, &text, |c| {
                set_preload(c, None);
                Ok(())
            })?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            wait_http(addr, &probe, &mut [&mut ngx, &mut fpm], Duration::from_secs(20))?;
            Ok(Running {
                master: fpm.pid(),
                logs: vec![
                    dir.join("php-fpm.log"),
                    dir.join("stderr.log"),
                    dir.join("error.log"),
                ],
                // nginx stops first, then php-fpm.
                procs: vec![ngx, fpm],
                addr,
                reload: None,
            })
        })
    }
}

/// The lab's Apache configuration with the MPM asked for, sized so that a graceful restart
/// has scoreboard room for the new generation while the old one drains.
fn apache_config(base: &ConfigBase<'_>, prefork: bool) -> String {
    let text = apache::text(base, "SymLinksIfOwnerMatch");
    let event = format!("LoadModule mpm_event_module {MODULES}/mod_mpm_event.so\n");
    assert!(
        text.contains(&event),
        "the lab's Apache config loads the event MPM:\n{text}"
    );
    let mpm = if prefork {
        format!(
            "LoadModule mpm_prefork_module {MODULES}/mod_mpm_prefork.so\n\
             StartServers 4\nMinSpareServers 2\nMaxSpareServers 8\nServerLimit 32\nMaxRequestWorkers 32\n"
        )
    } else {
        format!(
            "{event}StartServers 2\nServerLimit 8\nThreadsPerChild 16\nMaxRequestWorkers 32\n\
             MinSpareThreads 16\nMaxSpareThreads 48\n"
        )
    };
    text.replace(&event, &mpm)
}

/// The lab's php-fpm pool, made dynamic: up to 4 children, 1-2 spare, each exiting after
/// [`PHP_MAX_REQUESTS`] requests.
fn php_fpm_config(dir: &Path, uid: u32, gid: u32) -> String {
    let text = php::fpm_config(dir, uid, gid, 4);
    let edits = [
        ("[global]\n", "[global]\nlog_level = notice\n".to_string()),
        ("pm = static\n", "pm = dynamic\n".to_string()),
        (
            "pm.max_requests = 0\n",
            format!(
                "pm.max_requests = {PHP_MAX_REQUESTS}\npm.start_servers = 2\npm.min_spare_servers = 1\n\
                 pm.max_spare_servers = 2\n"
            ),
        ),
    ];
    edits.iter().fold(text, |t, (from, to)| {
        assert!(t.contains(from), "the lab's php-fpm config has {from:?}:\n{t}");
        t.replacen(from, to, 1)
    })
}

/// A started server.
struct Running {
    /// Stopped on drop, in order.
    procs: Vec<ServerProcess>,
    addr: SocketAddr,
    /// The process whose children are the workers measured (Apache's parent, nginx's
    /// master, php-fpm's master).
    master: u32,
    reload: Option<Reload>,
    /// Where worker deaths would be logged: the error logs and the servers' stderr.
    logs: Vec<PathBuf>,
}

/// How a server is reloaded.
enum Reload {
    /// `apache2 -f CONF -k graceful`: the parent re-reads CONF, the children are replaced.
    Apache {
        bin: PathBuf,
        conf: PathBuf,
        dir: PathBuf,
    },
    /// `nginx -s reload`: the master re-reads the config and starts new workers.
    Nginx { bin: PathBuf, dir: PathBuf },
}

impl Reload {
    /// The reload command (without the shim: it only signals the running server).
    fn command(&self) -> Command {
        let mut c = self.bare_command();
        set_preload(&mut c, None);
        c
    }

    fn bare_command(&self) -> Command {
        match self {
            Reload::Apache { bin, conf, dir } => {
                let mut c = Command::new(bin);
                c.arg("-f").arg(conf).args(["-k", "graceful"]);
                c.env("APACHE_RUN_DIR", dir)
                    .env("APACHE_LOG_DIR", dir)
                    .env("APACHE_LOCK_DIR", dir);
                c
            }
            Reload::Nginx { bin, dir } => {
                let mut c = Command::new(bin);
                let mut prefix = dir.as_os_str().to_owned();
                prefix.push("/");
                c.arg("-p")
                    .arg(prefix)
                    .arg("-c")
                    .arg(dir.join("nginx.conf"))
                    .arg("-e")
                    .arg(dir.join("error.log"))
                    .args(["-s", "reload"]);
                c
            }
        }
    }

    /// How many workers a finished reload has at least.
    fn min_workers(&self) -> usize {
        match self {
            Reload::Apache { .. } => 1,
            Reload::Nginx { .. } => 2,
        }
    }

    /// Apache's count of finished (re)starts, in its error log.
    fn restarts(&self) -> usize {
        match self {
            Reload::Apache { dir, .. } => std::fs::read_to_string(dir.join("error.log"))
                .unwrap_or_default()
                .matches("resuming normal operations")
                .count(),
            Reload::Nginx { .. } => 0,
        }
    }

    /// Reload once and wait until the new generation serves alone: `Ok(true)` when it did
    /// within [`RELOAD_TIMEOUT`], `Ok(false)` when it did not, `Err` when the command failed.
    fn once(&self, master: u32) -> Result<bool, String> {
        let old = children(master);
        let restarts = self.restarts();
        let out = run_bounded(self.command(), Duration::from_secs(10))?;
        if !out.status.success() {
            return Err(format!(
                "{:?} failed ({}): {}{}",
                self.command(),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let is_apache = matches!(self, Reload::Apache { .. });
        let done = poll_for(RELOAD_TIMEOUT, || {
            let now = children(master);
            let turned_over = now.len() >= self.min_workers() && now.iter().all(|p| !old.contains(p));
            let restarted = !is_apache || self.restarts() > restarts;
            (turned_over && restarted).then_some(())
        });
        Ok(done.is_some())
    }
}

/// What the loop beside wrk saw and did.
#[derive(Debug, Default)]
struct Ticks {
    /// Reloads whose new workers took over within [`RELOAD_TIMEOUT`].
    done: u32,
    /// Reloads that did not.
    stuck: u32,
    /// A reload command that failed (ends the loop).
    error: Option<String>,
    /// RSS of the master and its workers at each tick, under load (before each reload: the
    /// workers have served a whole period).
    samples: Vec<Rss>,
}

/// Until `stop` (or the run's time, or [`MAX_TICKS`]), once every [`TICK`]: sample the RSS
/// of `master` and its workers, then reload with `reload` (if any) and wait for it.
fn tick_loop(reload: Option<&Reload>, master: u32, stop: &AtomicBool) -> Ticks {
    let mut st = Ticks::default();
    let end = Instant::now() + Duration::from_secs(RUN_SECS + 5);
    for _ in 0..MAX_TICKS {
        if stop.load(Ordering::Relaxed) || Instant::now() >= end {
            break;
        }
        let started = Instant::now();
        st.samples.push(Rss::sample(master));
        match reload.map(|r| r.once(master)) {
            None => {}
            Some(Ok(true)) => st.done += 1,
            Some(Ok(false)) => st.stuck += 1,
            Some(Err(e)) => {
                st.error = Some(e);
                break;
            }
        }
        // Pacing, not synchronisation: the next tick no sooner than TICK after this one
        // began (the same pace bare and guarded), stopping early on `stop`.
        while !stop.load(Ordering::Relaxed) && started.elapsed() < TICK {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    st
}

/// Sets the flag when dropped: the tick loop stops even if wrk panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Run `cmd` (stdin null, output captured), killed if it has not exited within `timeout`.
fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(r) => r.map_err(|e| format!("wait for {:?}: {e}", cmd.get_program())),
        Err(_) => {
            let _ = toctou_attack::sys::kill(pid as libc::pid_t, libc::SIGKILL);
            Err(format!("{cmd:?} did not exit within {timeout:?}"))
        }
    };
    let _ = waiter.join();
    out
}

/// What wrk reported.
#[derive(Debug, Default, Clone, Copy)]
struct Wrk {
    requests: u64,
    rps: f64,
    non_2xx: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
}

impl Wrk {
    fn socket_errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }

    fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors()
    }

    fn parse(text: &str) -> Option<Wrk> {
        let after = |label: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .map(str::trim)
        };
        let requests = text
            .lines()
            .find(|l| l.contains(" requests in "))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let rps = after("Requests/sec:")?.parse().ok()?;
        let non_2xx = after("Non-2xx or 3xx responses:").map_or(Some(0), |v| v.parse().ok())?;
        let mut w = Wrk {
            requests,
            rps,
            non_2xx,
            ..Wrk::default()
        };
        if let Some(errs) = after("Socket errors:") {
            for part in errs.split(',') {
                let mut it = part.split_whitespace();
                let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse().ok())) else {
                    return None;
                };
                match k {
                    "connect" => w.connect = v,
                    "read" => w.read = v,
                    "write" => w.write = v,
                    "timeout" => w.timeout = v,
                    _ => return None,
                }
            }
        }
        Some(w)
    }
}

/// `wrk` against `url` for `secs` seconds, bounded by `timeout(1)` in case it hangs.
fn wrk(wrk: &Path, url: &str, secs: u64) -> Wrk {
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", &(secs + 15).to_string()])
        .arg(wrk)
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{secs}s"))
        .args(["--timeout", "5s"])
        .arg(url);
    set_preload(&mut cmd, None);
    let out = run_bounded(cmd, Duration::from_secs(secs + 30)).unwrap_or_else(|e| panic!("wrk: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk {url} failed ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Wrk::parse(&text).unwrap_or_else(|| panic!("cannot parse wrk's output:\n{text}"))
}

/// The live children of `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| ppid(p) == Some(pid))
        .collect()
}

/// The parent of `pid`, if it is alive (not a zombie).
fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: the fields start after the last ')'.
    let mut f = s.get(s.rfind(')')? + 2..)?.split_whitespace();
    let state = f.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    f.next()?.parse().ok()
}

/// VmRSS of `pid` in kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Does `pid` map the shim? `None` when it is gone or exiting (no mappings left): a
/// php-fpm child lives a few milliseconds under load.
fn maps_shim(pid: u32) -> Option<bool> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    // A child exiting this instant (php-fpm's after max_requests) has its mappings removed
    // one by one, lowest first, and a listing read meanwhile (seen under load on 6.18) may
    // lack the shim only because it is half gone. Its program's own mapping, the lowest,
    // goes first: a listing without it is no answer.
    (maps.contains(exe.to_string_lossy().as_ref())).then(|| maps.contains("libtoctou_guard"))
}

/// RSS of a master and its workers at one moment.
#[derive(Debug, Default, Clone)]
struct Rss {
    master_kb: u64,
    workers_kb: Vec<u64>,
}

impl Rss {
    fn sample(master: u32) -> Rss {
        Rss {
            master_kb: rss_kb(master).unwrap_or(0),
            workers_kb: children(master).into_iter().filter_map(rss_kb).collect(),
        }
    }

    fn max(&self) -> u64 {
        self.workers_kb.iter().copied().max().unwrap_or(0)
    }
}

/// A few RSS samples in one: the master's and the workers' largest, the workers' mean.
#[derive(Debug, Default, Clone, Copy)]
struct RssSpan {
    master_kb: u64,
    worker_max_kb: u64,
    worker_mean_kb: u64,
    workers: usize,
}

impl RssSpan {
    fn of(samples: &[Rss]) -> RssSpan {
        let all: Vec<u64> = samples
            .iter()
            .flat_map(|s| s.workers_kb.iter().copied())
            .collect();
        RssSpan {
            master_kb: samples.iter().map(|s| s.master_kb).max().unwrap_or(0),
            worker_max_kb: samples.iter().map(Rss::max).max().unwrap_or(0),
            worker_mean_kb: all.iter().sum::<u64>() / all.len().max(1) as u64,
            workers: samples.iter().map(|s| s.workers_kb.len()).max().unwrap_or(0),
        }
    }
}

/// Lines of `logs` that tell of a worker (or master) killed by a signal, or a crash.
fn death_lines(logs: &[PathBuf]) -> Vec<String> {
    let re = Regex::new(
        r"(?i)exited on signal|exit signal|child .* exited on signal|SIGSEGV|SIGABRT|SIGBUS|SIGILL|SIGFPE|segmentation fault|core dumped|exited with code [1-9]",
    )
    .expect("regex");
    logs.iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.lines()
                .filter(|l| re.is_match(l))
                .map(|l| format!("{}: {l}", p.display()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// php-fpm children started, from its log.
fn php_children_started(logs: &[PathBuf]) -> usize {
    let re = Regex::new(r"child \d+ started").expect("regex");
    logs.iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.lines().filter(|l| re.is_match(l)).count()
        })
        .sum()
}

/// One server, one mode.
#[derive(Debug)]
struct Outcome {
    stack: Stack,
    mode: Mode,
    /// The warm-up: the same load, nothing reloaded.
    warmup: Wrk,
    wrk: Wrk,
    ticks: Ticks,
    deaths: Vec<String>,
    /// Shim denial lines during the load (the tenant's own file: none expected).
    denials: u64,
    /// php-fpm children started during the run.
    children_started: usize,
    /// The status of the victim's file (through the hard link) after the load.
    foreign_status: u16,
    wall: Duration,
}

impl Outcome {
    /// RSS over the first and the last [`RSS_SAMPLES`] ticks.
    fn rss(&self) -> (RssSpan, RssSpan) {
        let s = &self.ticks.samples;
        let n = RSS_SAMPLES.min(s.len());
        (RssSpan::of(&s[..n]), RssSpan::of(&s[s.len() - n..]))
    }

    /// Socket errors per reload (per run when nothing was reloaded).
    fn socket_errors_per_reload(&self) -> f64 {
        self.wrk.socket_errors() as f64 / f64::from(self.ticks.done.max(1))
    }

    fn line(&self) -> String {
        let (a, b) = self.rss();
        format!(
            "LOAD server={} mode={} requests={} rps={:.0} errors={} (non2xx={} socket={}: connect {} read {} \
             write {} timeout {}) warmup_requests={} warmup_errors={} deaths={} reloads={} stuck={} \
             php_children_started={} rss_master_kb={}->{} rss_worker_max_kb={}->{} \
             rss_worker_mean_kb={}->{} workers={}->{} rss_samples={} denials_during_load={} \
             victim_file_after={} wall={:.1}s",
            self.stack.name(),
            self.mode.name(),
            self.wrk.requests,
            self.wrk.rps,
            self.wrk.errors(),
            self.wrk.non_2xx,
            self.wrk.socket_errors(),
            self.wrk.connect,
            self.wrk.read,
            self.wrk.write,
            self.wrk.timeout,
            self.warmup.requests,
            self.warmup.errors(),
            self.deaths.len(),
            self.ticks.done,
            self.ticks.stuck,
            self.children_started,
            a.master_kb,
            b.master_kb,
            a.worker_max_kb,
            b.worker_max_kb,
            a.worker_mean_kb,
            b.worker_mean_kb,
            a.workers,
            b.workers,
            self.ticks.samples.len(),
            self.denials,
            self.foreign_status,
            self.wall.as_secs_f64(),
        )
    }
}

fn get(addr: SocketAddr, url: &str) -> toctou_attack::http::Response {
    Conn::new(addr, Duration::from_secs(10))
        .get(url)
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Assert that the master and every worker of `srv` map the shim exactly when guarded.
fn assert_shim_mapped(srv: &Running, stack: Stack, mode: Mode) {
    let mut seen = 0;
    for p in std::iter::once(srv.master).chain(children(srv.master)) {
        let Some(mapped) = maps_shim(p) else {
            continue;
        };
        seen += 1;
        assert_eq!(
            mapped,
            mode == Mode::Guarded,
            "{} {}: pid {p} maps the shim: {mapped}",
            stack.name(),
            mode.name(),
        );
    }
    assert!(seen >= 2, "{}: no live workers besides the master", stack.name());
}

/// The death count is not blind: a worker killed with SIGSEGV (after the bare run's load,
/// when the workers are idle) shows up in `srv`'s logs, where `before` deaths were.
fn assert_death_detected(srv: &Running, stack: Stack, before: usize) {
    for _ in 0..3 {
        let Some(&victim) = children(srv.master).first() else {
            break;
        };
        toctou_attack::sys::kill(victim as libc::pid_t, libc::SIGSEGV).expect("kill -SEGV");
        let seen = poll_for(Duration::from_secs(5), || {
            let lines = death_lines(&srv.logs);
            (lines.len() > before).then(|| lines[before..].join(" | "))
        });
        if let Some(line) = seen {
            println!(
                "DEATH-CHECK server={} killed={victim} logged: {line}",
                stack.name()
            );
            return;
        }
    }
    panic!(
        "{}: a worker killed with SIGSEGV left no line in {:?}",
        stack.name(),
        srv.logs
    );
}

/// Start `stack` in `mode`, warm it up, load it for [`RUN_SECS`] while sampling its RSS and
/// reloading it, check it still serves (and guards), stop it.
fn measure(lab: &Lab, stack: Stack, mode: Mode) -> Outcome {
    let t0 = Instant::now();
    let mut srv = lab.start(stack, mode);
    let own_url = lab.url(stack, &lab.own);
    let r = get(srv.addr, &own_url);
    assert_eq!(r.status, 200, "{} {}: own file", stack.name(), mode.name());
    assert_eq!(r.body, b"attacker legit index\n");
    let url = format!("http://{}{own_url}", srv.addr);

    let warmup = wrk(&lab.wrk, &url, WARMUP_SECS);
    assert_shim_mapped(&srv, stack, mode);
    let denials0 = lab.log.count();
    let stop = AtomicBool::new(false);
    let (stop, master) = (&stop, srv.master);
    let (load, ticks) = std::thread::scope(|s| {
        let reload = srv.reload.as_ref();
        let ticker = s.spawn(move || tick_loop(reload, master, stop));
        let w = {
            let _stop = StopOnDrop(stop);
            wrk(&lab.wrk, &url, RUN_SECS)
        };
        (w, ticker.join().expect("tick thread"))
    });
    let denials = lab.log.count() - denials0;
    assert_shim_mapped(&srv, stack, mode);

    // After the load (and the reloads) the own file is still served, and the victim's
    // file is still refused with the shim (served bare: the shim is what refuses it).
    assert_eq!(get(srv.addr, &own_url).status, 200, "own file after the load");
    let foreign = get(srv.addr, &lab.url(stack, &lab.hard));
    for p in &mut srv.procs {
        if let Err(e) = p.check_alive() {
            panic!("{} {}: {e}", stack.name(), mode.name());
        }
    }
    // Read before stopping: a shutdown logs its own signals.
    let deaths = death_lines(&srv.logs);
    let children_started = php_children_started(&srv.logs);
    if mode == Mode::Bare {
        assert_death_detected(&srv, stack, deaths.len());
    }
    drop(srv);
    Outcome {
        stack,
        mode,
        warmup,
        wrk: load,
        ticks,
        deaths,
        denials,
        children_started,
        foreign_status: foreign.status,
        wall: t0.elapsed(),
    }
}

/// Bare then guarded, the numbers printed, the guarded run held to the bare one.
fn load_and_reload(stack: Stack) {
    let Some(lab) = Lab::new(stack) else {
        return;
    };
    let _g = heavy();
    let bare = measure(&lab, stack, Mode::Bare);
    println!("{}", bare.line());
    let guarded = measure(&lab, stack, Mode::Guarded);
    println!("{}", guarded.line());
    let name = stack.name();

    for o in [&bare, &guarded] {
        let m = o.mode.name();
        assert!(o.wrk.requests > 0, "{name} {m}: no requests");
        if let Some(e) = &o.ticks.error {
            panic!("{name} {m}: reload failed: {e}");
        }
        // The tenant's own static file: nothing but 2xx, bare or not; and while nothing
        // is reloaded (the warm-up), no socket error either.
        assert_eq!(o.wrk.non_2xx, 0, "{name} {m}: non-2xx answers\n{}", o.line());
        assert_eq!(
            o.warmup.errors(),
            0,
            "{name} {m}: errors in the warm-up\n{}",
            o.line()
        );
        assert!(
            o.ticks.samples.len() >= 2 * RSS_SAMPLES,
            "{name} {m}: too few RSS samples\n{}",
            o.line()
        );
    }
    assert_eq!(bare.foreign_status, 200, "{name} bare should serve the hard link");
    assert_eq!(
        guarded.foreign_status, 403,
        "{name} guarded: the victim's file after the load"
    );
    assert!(
        guarded.deaths.is_empty(),
        "{name} guarded: workers died:\n{}",
        guarded.deaths.join("\n")
    );
    assert_eq!(
        guarded.denials, 0,
        "{name} guarded: denials of the tenant's own file"
    );
    assert!(
        guarded.ticks.stuck <= bare.ticks.stuck,
        "{name}: {} guarded reloads did not finish in {RELOAD_TIMEOUT:?} ({} bare)",
        guarded.ticks.stuck,
        bare.ticks.stuck
    );
    if stack == Stack::PhpFpm {
        assert!(
            guarded.children_started > 4 && bare.children_started > 4,
            "php-fpm children did not come and go: {} bare, {} guarded",
            bare.children_started,
            guarded.children_started
        );
        // No reloads: children exiting after max_requests must not cost a request.
        assert_eq!(bare.wrk.socket_errors(), 0, "php-fpm bare socket errors");
        assert_eq!(guarded.wrk.socket_errors(), 0, "php-fpm guarded socket errors");
    } else {
        assert!(
            guarded.ticks.done >= 5 && bare.ticks.done >= 5,
            "{name}: too few reloads: {} bare, {} guarded",
            bare.ticks.done,
            guarded.ticks.done
        );
    }

    // Socket errors: a reload can reset a connection in either run, so the guarded run is
    // held to the bare run's rate per reload, a quarter more, plus a few.
    let allowed = (bare.socket_errors_per_reload() * f64::from(guarded.ticks.done.max(1)) * 1.25).ceil()
        as u64
        + SOCKET_ERROR_SLACK;
    assert!(
        guarded.wrk.socket_errors() <= allowed,
        "{name}: guarded socket errors {} > {allowed} (bare {} over {} reloads, guarded over {})",
        guarded.wrk.socket_errors(),
        bare.wrk.socket_errors(),
        bare.ticks.done,
        guarded.ticks.done
    );

    let grow = |a: u64, b: u64| b as i64 - a as i64;
    let (a, b) = guarded.rss();
    assert!(
        grow(a.master_kb, b.master_kb) < RSS_GROWTH_LIMIT_KB,
        "{name} guarded: master RSS grew {} kB -> {} kB",
        a.master_kb,
        b.master_kb
    );
    assert!(
        grow(a.worker_max_kb, b.worker_max_kb) < RSS_GROWTH_LIMIT_KB,
        "{name} guarded: worker RSS grew {} kB -> {} kB",
        a.worker_max_kb,
        b.worker_max_kb
    );
}

#[test]
fn apache_prefork_under_load_and_graceful_restarts() {
    load_and_reload(Stack::ApachePrefork);
}

#[test]
fn apache_event_under_load_and_graceful_restarts() {
    load_and_reload(Stack::ApacheEvent);
}

#[test]
fn nginx_two_workers_under_load_and_reloads() {
    load_and_reload(Stack::Nginx);
}

#[test]
fn php_fpm_dynamic_pool_under_load_with_children_coming_and_going() {
    load_and_reload(Stack::PhpFpm);
}

#[test]
fn wrk_output_parses() {
    let t = "Running 1s test @ http://127.0.0.1:1/\n  2 threads and 8 connections\n\
             \x20 1000 requests in 1.00s, 1.00MB read\n\
             \x20 Socket errors: connect 0, read 2, write 1, timeout 3\n\
             \x20 Non-2xx or 3xx responses: 7\nRequests/sec:  12345.67\nTransfer/sec: 1MB\n";
    let w = Wrk::parse(t).expect("parse");
    assert_eq!(
        (w.requests, w.non_2xx, w.read, w.write, w.timeout),
        (1000, 7, 2, 1, 3)
    );
    assert_eq!(w.errors(), 13);
    let clean = "  5 requests in 1.00s, 1KB read\nRequests/sec:      5.00\n";
    assert_eq!(Wrk::parse(clean).expect("parse").errors(), 0);
}
