//! Real nginx and Apache instances on 127.0.0.1, each with its own configuration, pid file
//! and logs under a work directory, stopped when dropped.
//!
//! Written here rather than taken from `toctou-attack`'s targets: those were being written
//! at the same time, and a benchmark needs exact control of the few settings that change
//! throughput (workers, keep-alive, sendfile, access log off).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::Guarded;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Apache,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Apache => "apache",
        }
    }
}

/// What is measured: which server, serving which document root, with which protection.
#[derive(Clone, Debug)]
pub struct Setup {
    pub kind: Kind,
    /// Row label, e.g. `+shim`.
    pub label: String,
    pub docroot: PathBuf,
    /// `(libtoctou_guard.so, config)` to preload.
    pub guard: Option<(PathBuf, PathBuf)>,
    /// nginx `disable_symlinks if_not_owner` (else `off`).
    pub if_not_owner: bool,
    /// Apache `Options SymLinksIfOwnerMatch` (else `FollowSymLinks`).
    pub symlinks_if_owner_match: bool,
    /// Other processes whose CPU time is part of serving (the FUSE daemon).
    pub helper_pids: Vec<u32>,
}

pub struct Server {
    pub setup: Setup,
    pub port: u16,
    pub dir: PathBuf,
    process: Guarded,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn nginx_conf(s: &Setup, dir: &Path, port: u16) -> String {
    let d = dir.display();
    let user = if is_root() { "user www-data;\n" } else { "" };
    format!(
        "# toctou-guard-bench: {kind} {label}
{user}daemon off;
master_process on;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 30s;
    types {{ text/html html; application/octet-stream bin; }}
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};
        disable_symlinks {dis};
        location / {{ }}
    }}
}}
",
        kind = s.kind.as_str(),
        label = s.label,
        root = s.docroot.display(),
        dis = if s.if_not_owner { "if_not_owner" } else { "off" },
    )
}

fn apache_conf(s: &Setup, dir: &Path, port: u16) -> String {
    let d = dir.display();
    let m = "/usr/lib/apache2/modules";
    let user = if is_root() {
        "User www-data\nGroup www-data\n"
    } else {
        ""
    };
    let options = if s.symlinks_if_owner_match {
        "SymLinksIfOwnerMatch"
    } else {
        "FollowSymLinks"
    };
    format!(
        "# toctou-guard-bench: {kind} {label}
ServerRoot {d}
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule mime_module {m}/mod_mime.so
{user}ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {d}/httpd.pid
DefaultRuntimeDir {d}
ErrorLog {d}/error.log
LogLevel warn
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
EnableSendfile On
TypesConfig /etc/mime.types
DocumentRoot {root}
<Directory />
    Options None
    AllowOverride None
    Require all denied
</Directory>
<Directory {root}>
    Options {options}
    AllowOverride None
    Require all granted
</Directory>
",
        kind = s.kind.as_str(),
        label = s.label,
        root = s.docroot.display(),
    )
}

impl Server {
    /// Write the configuration under `work/NAME`, start the server in the foreground and
    /// wait (bounded) until it accepts connections.
    pub fn start(setup: Setup, work: &Path, name: &str) -> Result<Server, String> {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port()?;
        let conf = dir.join("server.conf");
        let text = match setup.kind {
            Kind::Nginx => nginx_conf(&setup, &dir, port),
            Kind::Apache => apache_conf(&setup, &dir, port),
        };
        std::fs::File::create(&conf)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        let (mut cmd, stop) = match setup.kind {
            Kind::Nginx => {
                let mut c = Command::new("nginx");
                c.arg("-p")
                    .arg(&dir)
                    .arg("-c")
                    .arg(&conf)
                    .arg("-e")
                    .arg(dir.join("error.log"));
                (c, libc::SIGQUIT)
            }
            Kind::Apache => {
                let mut c = Command::new("apache2");
                c.arg("-f").arg(&conf).arg("-DFOREGROUND");
                (c, libc::SIGTERM)
            }
        };
        cmd.env_remove("LD_PRELOAD").env_remove("TOCTOU_GUARD_CONFIG");
        if let Some((so, gconf)) = &setup.guard {
            cmd.env("LD_PRELOAD", so).env("TOCTOU_GUARD_CONFIG", gconf);
        }
        let log = dir.join("stderr.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        crate::proc::die_with_parent(&mut cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: cannot start: {e}", setup.kind.as_str()))?;
        let mut process = Guarded::new(name, child, stop);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Some(status) = process.exited() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default()
                    + &std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                return Err(format!("{name} exited ({status}): {}", tail.trim()));
            }
            if Instant::now() > deadline {
                return Err(format!("{name}: not listening on {addr} after 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server {
            setup,
            port,
            dir,
            process,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The master process and the helpers (FUSE daemon) whose CPU time counts.
    pub fn cpu_roots(&self) -> Vec<u32> {
        let mut v = vec![self.pid()];
        v.extend(&self.setup.helper_pids);
        v
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}
