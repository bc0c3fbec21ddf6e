//! A PHP site for the matrix tests: two tenants (toctou-attack's [`Tenants`]), and two
//! php-fpm pools running as the attacker tenant behind their own nginx on 127.0.0.1: one
//! bare, one with the shim preloaded under the strong `owner euid` configuration
//! ([`STRONG_CONFIG`]: `root /`, `allow_uid 0`). The test writes any PHP script into the
//! attacker's document root ([`PhpSite::script`]), the victim's files
//! ([`PhpSite::victim_file`]: 0640, group www-data, the pools' group, so that the bare pool
//! really reads them) and the attacker's own, and GETs the script from either pool.
//!
//! The pools run with `clear_env = yes` (php-fpm's default, written out): what a shared
//! host runs. php-fpm and nginx are started with toctou-attack's own helpers.
//!
//! Needs root, nginx, php-fpm8.2 and the shim; [`PhpSite::new`] skips with `SKIP:` otherwise
//! (a failure when `CI` is set).

use std::net::SocketAddr;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toctou_attack::guardconf::{GuardConfig, LogListener};
use toctou_attack::http::{Conn, Response, encode_query};
use toctou_attack::process::{ServerProcess, wait_http};
use toctou_attack::targets::php::{fastcgi_location, fpm_config, spawn_fpm};
use toctou_attack::targets::{nginx, scratch_in, server_user, set_preload, with_port_retries};
use toctou_attack::tenants::{mk_dir, mk_file, mk_symlink};
use toctou_attack::{TargetKind, Tenants};

use crate::harness::tools_for;
use crate::shim_fixture::c_program;

/// The strong form for one pool per tenant (`owner euid`): every open anywhere is judged by
/// the opened file's owner, so no path the pool is steered to (realpath cache, a directory
/// moved out of a root, a library's own open) escapes the rule; root's files (the system,
/// php.ini, zoneinfo, /dev/null) pass by `allow_uid 0`, the pool's own (sessions, uploads,
/// /proc/self) by `owner euid`.
pub const STRONG_CONFIG: &str = "root /\nowner euid\nallow_uid 0\n";

/// Which pool answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// No shim: the baseline that must leak, or a row proves nothing.
    Bare,
    /// The shim preloaded into php-fpm with [`STRONG_CONFIG`].
    Guarded,
}

struct Server {
    addr: SocketAddr,
    /// nginx first, php-fpm second (dropped, so stopped, in that order).
    _procs: Vec<ServerProcess>,
}

/// The tenants and the two running pools; everything is stopped and removed on drop.
pub struct PhpSite {
    /// The pools' denial lines (`log_socket`).
    pub log: LogListener,
    /// php-fpm and nginx, as found by toctou-attack.
    pub fpm_bin: PathBuf,
    pub nginx_bin: PathBuf,
    /// The world-readable shim copy and the strong configuration the guarded pool uses.
    pub so: PathBuf,
    pub conf: PathBuf,
    bare: Server,
    guarded: Server,
    /// Declared last: dropped after the servers that use its directories.
    pub tenants: Tenants,
}

impl PhpSite {
    /// Start both pools; `None` after a `SKIP:` (a panic in CI).
    #[track_caller]
    pub fn new() -> Option<PhpSite> {
        let tools = tools_for(&[TargetKind::Php, TargetKind::PhpShim])?;
        let nginx_bin = tools.nginx.clone()?;
        let fpm_bin = tools.php_fpm.clone()?;
        // A world-readable copy: the pool's children (item 8) load it as the tenant's uid.
        let so = c_program("libtoctou_guard.so");
        let tenants = Tenants::create(&Default::default()).expect("tenants");
        let log = LogListener::bind(&tenants.run.join("log.sock")).expect("log socket");
        let conf = tenants.run.join("guard-strong.conf");
        let text = strong_config_text(&log.path);
        mk_file(&conf, text.as_bytes(), 0, 0, 0o644).expect("write the guard config");
        let start = |name: &str, shim: Option<(&Path, &Path)>| -> Server {
            let (gid, a) = (server_user().1, &tenants.attacker);
            let res = with_port_retries(|port| {
                let dir = scratch_in(&tenants.run, name, port)?;
                // The pool's group is www-data's, as the victim's 0640 files': without the
                // shim the attacker's pool really reads them.
                let pool = format!("{}clear_env = yes\n", fpm_config(&dir, a.uid, gid, 2));
                let mut fpm = spawn_fpm(&fpm_bin, &dir, &pool, |c| {
                    set_preload(c, shim);
                    Ok(())
                })?;
                let ngx_conf = nginx::config(&tenants.www, port, &dir, "off", &fastcgi_location(&dir));
                let mut ngx = nginx::spawn(&nginx_bin, &dir, &ngx_conf, |c| {
                    set_preload(c, None);
                    Ok(())
                })?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                wait_http(addr, "/", &mut [&mut ngx, &mut fpm], Duration::from_secs(20))?;
                Ok(Server {
                    addr,
                    _procs: vec![ngx, fpm],
                })
            });
            res.unwrap_or_else(|e| panic!("start the {name} pool: {e}"))
        };
        let bare = start("php-bare", None);
        let guarded = start("php-guarded", Some((&so, &conf)));
        Some(PhpSite {
            log,
            fpm_bin,
            nginx_bin,
            so,
            conf,
            bare,
            guarded,
            tenants,
        })
    }

    /// The run's fresh marker: bytes that appear in a response only if a victim's file was read.
    pub fn marker(&self) -> &str {
        &self.tenants.marker
    }

    /// A marker for the attacker's own files (distinct from the victim's).
    pub fn own_marker(&self) -> String {
        format!("OWN-{}", &self.tenants.marker[7..])
    }

    /// `rel` under the victim's document root, the directories on the way made as the
    /// victim (0755).
    pub fn victim_path(&self, rel: &str) -> PathBuf {
        let v = &self.tenants.victim;
        let path = v.docroot.join(rel);
        let mut dir = v.docroot.clone();
        for c in Path::new(rel).parent().into_iter().flat_map(Path::components) {
            dir.push(c);
            mk_dir(&dir, v.uid, v.gid, 0o755).expect("victim dir");
        }
        path
    }

    /// A victim's file: owner victim, group www-data, 0640 (the pools' group can read it).
    pub fn victim_file(&self, rel: &str, content: &[u8]) -> PathBuf {
        let path = self.victim_path(rel);
        mk_file(&path, content, self.tenants.victim.uid, server_user().1, 0o640).expect("victim file");
        path
    }

    /// The attacker's own file (0644), under its document root.
    pub fn own_file(&self, rel: &str, content: &[u8]) -> PathBuf {
        self.tenants.attacker.add_file(rel, content).expect("own file")
    }

    /// A symlink in the attacker's document root, owned by the attacker.
    pub fn own_symlink(&self, rel: &str, target: &Path) -> PathBuf {
        self.tenants
            .attacker
            .add_symlink(rel, target)
            .expect("own symlink")
    }

    /// A PHP script in the attacker's document root (`tg-php/NAME`); returns its URL path.
    pub fn script(&self, name: &str, source: &str) -> String {
        let path = self.own_file(&format!("tg-php/{name}"), source.as_bytes());
        let rel = path.strip_prefix(&self.tenants.www).expect("script under www");
        format!("/{}", rel.display())
    }

    /// GET `url` from `pool`.
    pub fn get(&self, pool: Pool, url: &str) -> Response {
        let addr = match pool {
            Pool::Bare => self.bare.addr,
            Pool::Guarded => self.guarded.addr,
        };
        Conn::new(addr, Duration::from_secs(20))
            .get(url)
            .unwrap_or_else(|e| panic!("GET {url} ({pool:?}): {e}"))
    }

    /// GET `url?f=FILE`.
    pub fn get_file(&self, pool: Pool, url: &str, file: &Path) -> Response {
        let q = encode_query(file.to_str().expect("utf-8 path"));
        self.get(pool, &format!("{url}?f={q}"))
    }

    /// A file made by PHP itself (an SQLite database, a zip, an image), written by the bare
    /// pool as the attacker into `tg-gen/NAME`: `code` writes to `$out` and runs once.
    pub fn generate(&self, name: &str, code: &str) -> PathBuf {
        let out = self.own_file(&format!("tg-gen/{name}"), b"");
        let url = self.script(
            &format!("gen-{name}.php"),
            &format!("<?php\n$out = $_GET['f'];\n{code}\necho 'GENERATED';\n"),
        );
        let r = self.get_file(Pool::Bare, &url, &out);
        assert!(
            r.status == 200 && body(&r).contains("GENERATED"),
            "generate {name}: {} {}",
            r.status,
            body(&r)
        );
        out
    }

    /// [`Self::generate`], then handed to the victim as `rel` (owner victim, group
    /// www-data, 0640).
    pub fn generate_victim(&self, rel: &str, code: &str) -> PathBuf {
        let made = self.generate(&rel.replace('/', "-"), code);
        let path = self.victim_path(rel);
        std::fs::rename(&made, &path).expect("move the generated file");
        chown(&path, Some(self.tenants.victim.uid), Some(server_user().1)).expect("chown");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        path
    }

    /// The one check of every row, on the script at `url` reading `?f=`:
    /// - the bare pool, given `victim`, returns `leak` (so the row can fail);
    /// - the guarded pool, given `victim`, never does, and a denial line names the victim
    ///   as owner and the attacker as expected;
    /// - the guarded pool, given `own`, returns `own_needle`.
    #[track_caller]
    pub fn assert_row(&self, url: &str, victim: &Path, leak: &str, own: &Path, own_needle: &str) {
        let r = self.get_file(Pool::Bare, url, victim);
        assert!(
            body(&r).contains(leak),
            "the bare pool did not read the victim's {} (the row proves nothing): {} {:?}",
            victim.display(),
            r.status,
            body(&r)
        );
        self.assert_refused(url, victim, leak);
        let r = self.get_file(Pool::Guarded, url, own);
        assert!(
            body(&r).contains(own_needle),
            "the guarded pool refused the tenant's own {}: {} {:?}",
            own.display(),
            r.status,
            body(&r)
        );
    }

    /// The guarded pool, given `victim`, does not return `leak`, and logs a denial.
    #[track_caller]
    pub fn assert_refused(&self, url: &str, victim: &Path, leak: &str) {
        // Only this request's denial counts.
        self.log.clear();
        let r = self.get_file(Pool::Guarded, url, victim);
        assert!(
            !body(&r).contains(leak),
            "LEAK: the guarded pool returned the victim's {}: {:?}",
            victim.display(),
            body(&r)
        );
        self.assert_denial_logged();
    }

    /// A denial line: owner = victim, expected = attacker, enforced.
    #[track_caller]
    pub fn assert_denial_logged(&self) -> String {
        let (v, a) = (self.tenants.victim.uid, self.tenants.attacker.uid);
        let owner = format!("owner={v} ");
        let expected = format!("expected={a} ");
        let needles = ["action=deny", "mode=enforce", owner.as_str(), expected.as_str()];
        self.log
            .wait_for(&needles, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no denial line among {:?}", self.log.lines()))
    }
}

/// [`STRONG_CONFIG`] with the test's log socket.
pub fn strong_config_text(log_socket: &Path) -> String {
    let gc = GuardConfig {
        root: "/".into(),
        owner_euid: true,
        allow_root: true,
        audit: false,
        log_socket: log_socket.to_path_buf(),
        log_rate: 1000,
    };
    let text = gc.text();
    debug_assert!(STRONG_CONFIG.lines().all(|l| text.lines().any(|t| t == l)));
    text
}

/// The response body as text (lossy).
pub fn body(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Make `path` a symlink to `target` owned by the attacker, replacing what is there.
pub fn replace_with_symlink(site: &PhpSite, path: &Path, target: &Path) {
    let a = &site.tenants.attacker;
    let tmp = path.with_extension("tg-new");
    mk_symlink(target, &tmp, a.uid, a.gid).expect("symlink");
    if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir_all(path).expect("remove the directory");
    }
    std::fs::rename(&tmp, path).expect("rename the symlink into place");
}
