//! Targets: the servers the harness attacks, behind one trait. Each starts on 127.0.0.1 on
//! a free port, is ready once it answers HTTP, and stops on drop.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::artefacts;
pub use crate::artefacts::newest;
use crate::error::Result;
use crate::scenario::Scenario;
use crate::tenants::Tenants;

/// What stands between the attacker and the victim's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Nothing but the server's own path check: must leak in every race.
    Bare,
    /// The LD_PRELOAD shim: must never leak.
    Shim,
    /// The FUSE mount: must never leak.
    Fuse,
    /// A server's own defence shown for reference (nginx `disable_symlinks if_not_owner`):
    /// reported, but it decides no exit status.
    Reference,
    /// An operator's live server: must never leak.
    External,
}

impl Guard {
    /// Must this target show zero leaks and zero false denials?
    pub fn must_hold(self) -> bool {
        matches!(self, Guard::Shim | Guard::Fuse | Guard::External)
    }
}

/// Every target the harness knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Naive,
    NaiveShim,
    NaiveFuse,
    Apache,
    ApacheShim,
    ApacheFuse,
    Nginx,
    NginxShim,
    NginxFuse,
    NginxIfNotOwner,
    Php,
    PhpShim,
    PhpFuse,
    External,
}

impl TargetKind {
    pub const ALL: [TargetKind; 14] = [
        TargetKind::Naive,
        TargetKind::NaiveShim,
        TargetKind::NaiveFuse,
        TargetKind::Apache,
        TargetKind::ApacheShim,
        TargetKind::ApacheFuse,
        TargetKind::Nginx,
        TargetKind::NginxShim,
        TargetKind::NginxFuse,
        TargetKind::NginxIfNotOwner,
        TargetKind::Php,
        TargetKind::PhpShim,
        TargetKind::PhpFuse,
        TargetKind::External,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Naive => "naive",
            TargetKind::NaiveShim => "naive+shim",
            TargetKind::NaiveFuse => "naive+fuse",
            TargetKind::Apache => "apache",
            TargetKind::ApacheShim => "apache+shim",
            TargetKind::ApacheFuse => "apache+fuse",
            TargetKind::Nginx => "nginx",
            TargetKind::NginxShim => "nginx+shim",
            TargetKind::NginxFuse => "nginx+fuse",
            TargetKind::NginxIfNotOwner => "nginx-if-not-owner",
            TargetKind::Php => "php",
            TargetKind::PhpShim => "php+shim",
            TargetKind::PhpFuse => "php+fuse",
            TargetKind::External => "external",
        }
    }

    pub fn parse(s: &str) -> Option<TargetKind> {
        TargetKind::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            TargetKind::Naive => {
                "built-in server: lstat-checks symlink owners on the path (like SymLinksIfOwnerMatch), then opens it"
            }
            TargetKind::NaiveShim => "the same server re-executed with LD_PRELOAD=libtoctou_guard.so",
            TargetKind::NaiveFuse => {
                "the built-in server serving the tenants through the toctou-guard-fs mount"
            }
            TargetKind::Apache => {
                "apache2 -DFOREGROUND, event MPM, Options SymLinksIfOwnerMatch, User www-data"
            }
            TargetKind::ApacheShim => "the same Apache with LD_PRELOAD=libtoctou_guard.so",
            TargetKind::ApacheFuse => "the same Apache serving the tenants through the toctou-guard-fs mount",
            TargetKind::Nginx => "nginx, disable_symlinks off, master + 2 workers as www-data",
            TargetKind::NginxShim => "the same nginx with LD_PRELOAD=libtoctou_guard.so",
            TargetKind::NginxFuse => "the same nginx serving the tenants through the toctou-guard-fs mount",
            TargetKind::NginxIfNotOwner => {
                "nginx with disable_symlinks if_not_owner (nginx's own defence, for reference)"
            }
            TargetKind::Php => {
                "nginx + php-fpm8.2, one pool running as the attacker tenant, a page that reads a file"
            }
            TargetKind::PhpShim => "the same with LD_PRELOAD=libtoctou_guard.so in php-fpm and `owner euid`",
            TargetKind::PhpFuse => {
                "the same pool serving the tenants through the toctou-guard-fs mount with `owner euid` (the caller's uid)"
            }
            TargetKind::External => "an operator's live server (--url, --attacker-docroot, --victim-docroot)",
        }
    }

    pub fn guard(self) -> Guard {
        match self {
            TargetKind::Naive | TargetKind::Apache | TargetKind::Nginx | TargetKind::Php => Guard::Bare,
            TargetKind::NaiveShim | TargetKind::ApacheShim | TargetKind::NginxShim | TargetKind::PhpShim => {
                Guard::Shim
            }
            TargetKind::NaiveFuse | TargetKind::ApacheFuse | TargetKind::NginxFuse | TargetKind::PhpFuse => {
                Guard::Fuse
            }
            TargetKind::NginxIfNotOwner => Guard::Reference,
            TargetKind::External => Guard::External,
        }
    }

    pub fn is_php(self) -> bool {
        matches!(self, TargetKind::Php | TargetKind::PhpShim | TargetKind::PhpFuse)
    }

    /// Does `scenario` apply to this target?
    pub fn supports(self, scenario: Scenario) -> bool {
        match self {
            TargetKind::Php | TargetKind::PhpShim | TargetKind::PhpFuse => {
                matches!(
                    scenario,
                    Scenario::Final | Scenario::Direct | Scenario::Legit | Scenario::PrivateSwap
                )
            }
            // WebDAV: nginx `dav_methods` and Apache `mod_dav_fs` write; the naive server and
            // the (read-only) FUSE mounts do not.
            _ if scenario == Scenario::Dav => matches!(
                self,
                TargetKind::Apache
                    | TargetKind::ApacheShim
                    | TargetKind::Nginx
                    | TargetKind::NginxShim
                    | TargetKind::NginxIfNotOwner
            ),
            // Issue 12's attacks on the FUSE daemon, and the bare servers shown beside them.
            // Not the bare naive server for `uploads-link`: its lstat check (like
            // SymLinksIfOwnerMatch) refuses a link whose owner is not its target's, which is
            // exactly this non-race case; nor the shim targets: the shim judges the opened
            // file, here the victim's own in the victim's tree, and never sees the link
            // (nginx+shim serves the planted links: measured, a limitation of the shim).
            _ if scenario == Scenario::UploadsLink => {
                matches!(
                    self,
                    TargetKind::Nginx
                        | TargetKind::NginxIfNotOwner
                        | TargetKind::NaiveFuse
                        | TargetKind::NginxFuse
                )
            }
            _ if scenario.exhausts_daemon() => matches!(
                self,
                TargetKind::Naive | TargetKind::Nginx | TargetKind::NaiveFuse | TargetKind::NginxFuse
            ),
            // Only the naive server serves from a directory it holds open.
            _ if matches!(scenario, Scenario::DirfdEscape | Scenario::CwdEscape) => {
                matches!(self, TargetKind::Naive | TargetKind::NaiveShim)
            }
            TargetKind::External => !matches!(
                scenario,
                Scenario::Docroot
                    | Scenario::Escape
                    | Scenario::Direct
                    | Scenario::Dav
                    | Scenario::PrivateSwap
            ),
            _ => !matches!(scenario, Scenario::Direct | Scenario::PrivateSwap),
        }
    }
}

/// An operator's live server.
#[derive(Debug, Clone)]
pub struct ExternalSpec {
    /// `http://127.0.0.1:8080/~eve` - the URL of the attacker's document root.
    pub url: String,
    pub attacker_docroot: PathBuf,
    pub victim_docroot: PathBuf,
}

/// Where the programs are.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    /// `toctou-attack` itself (re-executed as the naive server).
    pub self_exe: PathBuf,
    pub shim: Option<PathBuf>,
    pub fs: Option<PathBuf>,
    pub apache: Option<PathBuf>,
    pub nginx: Option<PathBuf>,
    pub php_fpm: Option<PathBuf>,
    /// bindfs (the benchmarks' FUSE baseline).
    pub bindfs: Option<PathBuf>,
    pub external: Option<ExternalSpec>,
}

fn first_existing(cands: &[&str]) -> Option<PathBuf> {
    cands.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl Tools {
    /// Find the servers on this machine; the shim and the FUSE daemon default to the newest
    /// built copies seen from `self_exe` (`target/release/`, or `target/release/deps/`
    /// where `cargo test` leaves the shim: see [`crate::artefacts`]).
    pub fn detect(self_exe: &Path, shim: Option<PathBuf>, fs: Option<PathBuf>) -> Tools {
        let shim = shim.or_else(|| artefacts::SHIM.near(self_exe));
        let fs = fs.or_else(|| artefacts::FS_DAEMON.near(self_exe));
        Tools {
            self_exe: self_exe.to_path_buf(),
            shim: shim.filter(|p| p.is_file()),
            fs: fs.filter(|p| p.is_file()),
            apache: first_existing(&["/usr/sbin/apache2", "/usr/sbin/httpd"]),
            nginx: first_existing(&["/usr/sbin/nginx", "/usr/bin/nginx"]),
            php_fpm: first_existing(&["/usr/sbin/php-fpm8.2", "/usr/sbin/php-fpm"]),
            bindfs: first_existing(&["/usr/bin/bindfs", "/usr/local/bin/bindfs"]),
            external: None,
        }
    }

    /// Why `kind` cannot run here, if it cannot.
    pub fn missing(&self, kind: TargetKind) -> Option<String> {
        let mut why = Vec::new();
        if crate::sys::geteuid() != 0 {
            why.push("root".to_string());
        }
        let need_shim = kind.guard() == Guard::Shim;
        let need_fs = kind.guard() == Guard::Fuse;
        if need_shim && self.shim.is_none() {
            why.push(
                "the shim libtoctou_guard.so (cargo build --release -p toctou-guard-shim, or --shim PATH)"
                    .into(),
            );
        }
        if need_fs {
            if self.fs.is_none() {
                why.push("the FUSE daemon toctou-guard-fs (cargo build --release -p toctou-guard-fs, or --fs PATH)".into());
            }
            if !Path::new("/dev/fuse").exists() {
                why.push("/dev/fuse".into());
            }
        }
        match kind {
            TargetKind::Apache | TargetKind::ApacheShim | TargetKind::ApacheFuse if self.apache.is_none() => {
                why.push("apache2".into())
            }
            TargetKind::Nginx
            | TargetKind::NginxShim
            | TargetKind::NginxFuse
            | TargetKind::NginxIfNotOwner
                if self.nginx.is_none() =>
            {
                why.push("nginx".into())
            }
            TargetKind::Php | TargetKind::PhpShim | TargetKind::PhpFuse => {
                if self.nginx.is_none() {
                    why.push("nginx".into());
                }
                if self.php_fpm.is_none() {
                    why.push("php-fpm8.2".into());
                }
            }
            TargetKind::External if self.external.is_none() => {
                why.push("--url, --attacker-docroot and --victim-docroot".into())
            }
            _ => {}
        }
        if why.is_empty() {
            None
        } else {
            Some(format!("needs {}", why.join(", ")))
        }
    }
}

/// What a target is started with.
pub struct StartEnv<'a> {
    pub tenants: &'a Tenants,
    pub tools: &'a Tools,
    /// The guard configuration (shim targets; the FUSE daemon gets it too).
    pub guard_config: &'a Path,
}

/// A running target.
pub trait Target {
    fn kind(&self) -> TargetKind;
    /// Where to send requests.
    fn addr(&self) -> SocketAddr;
    /// The URL path asking this target for `file` (a path under the tenants' directories),
    /// or `None` when this target cannot address it.
    fn url(&self, file: &Path) -> Option<String>;
    /// An error if any of its processes died.
    fn check_alive(&mut self) -> Result<()>;
    /// PIDs of its main processes (for the report).
    fn describe(&self) -> String;
    /// The FUSE daemon's pid and the mount point serving the tenants' base, for a `+fuse`
    /// target.
    fn fuse_daemon(&self) -> Option<(u32, PathBuf)> {
        None
    }
}

/// Start `kind`.
pub fn start(kind: TargetKind, env: &StartEnv<'_>) -> Result<Box<dyn Target>> {
    use crate::targets;
    match kind {
        TargetKind::Naive | TargetKind::NaiveShim | TargetKind::NaiveFuse => targets::naive::start(kind, env),
        TargetKind::Apache | TargetKind::ApacheShim | TargetKind::ApacheFuse => {
            targets::apache::start(kind, env)
        }
        TargetKind::Nginx | TargetKind::NginxShim | TargetKind::NginxFuse | TargetKind::NginxIfNotOwner => {
            targets::nginx::start(kind, env)
        }
        TargetKind::Php | TargetKind::PhpShim | TargetKind::PhpFuse => targets::php::start(kind, env),
        TargetKind::External => targets::external::start(env),
    }
}
