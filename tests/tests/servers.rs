//! Real Apache (`Options SymLinksIfOwnerMatch`), real nginx (`disable_symlinks off`) and real
//! php-fpm behind nginx, started on 127.0.0.1 with the shim preloaded: another tenant's file
//! (through a symlink, a hard link, or by absolute path from PHP) answers 403, the tenant's
//! own file 200, and the denial line arrives on the test's own log socket; a broken or unsafe
//! configuration stops the server at start with the file and line on its stderr.
//!
//! Needs root, apache2, nginx, php-fpm8.2 and the shim. A missing prerequisite prints
//! `SKIP:` locally and fails when `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use toctou_attack::guardconf::{GuardConfig, LogListener};
use toctou_attack::http::{Conn, Response};
use toctou_attack::process::free_port;
use toctou_attack::target::{StartEnv, Target, start};
use toctou_attack::targets::{apache, nginx};
use toctou_attack::tenants::{mk_dir, mk_symlink};
use toctou_attack::{Report, RunOptions, Scenario, TargetKind, Tenants, Tools, run_matrix};
use toctou_guard_tests::harness::tools_for;
use toctou_guard_tests::heavy;

/// Two tenants, a log socket, and the files the tests ask for.
struct Site {
    log: LogListener,
    tools: Tools,
    /// The attacker's own file.
    own: PathBuf,
    /// Attacker-owned symlink to the victim's secret.
    link: PathBuf,
    /// Hard link (made by root) to the victim's secret, in the attacker's docroot.
    hard: PathBuf,
    tenants: Tenants,
}

impl Site {
    fn new(kinds: &[TargetKind]) -> Option<Site> {
        let tools = tools_for(kinds)?;
        let tenants = Tenants::create(&Default::default()).expect("tenants");
        let log = LogListener::bind(&tenants.run.join("log.sock")).expect("log socket");
        let a = &tenants.attacker;
        let own = a.docroot.join("tg-legit/index.html");
        let link = a.docroot.join("evil-link.txt");
        mk_symlink(&tenants.secret, &link, a.uid, a.gid).expect("symlink");
        let hard = a.docroot.join("evil-hard.txt");
        std::fs::hard_link(&tenants.secret, &hard).expect("hard link");
        Some(Site {
            log,
            tools,
            own,
            link,
            hard,
            tenants,
        })
    }

    fn config(&self, owner_euid: bool) -> PathBuf {
        let gc = GuardConfig {
            root: self.tenants.root_pattern(),
            owner_euid,
            allow_root: true,
            audit: false,
            log_socket: self.log.path.clone(),
            log_rate: 1000,
        };
        gc.write(
            &self.tenants.run,
            if owner_euid {
                "guard-euid.conf"
            } else {
                "guard.conf"
            },
        )
        .expect("config")
    }

    fn start(&self, kind: TargetKind, conf: &Path) -> Box<dyn Target> {
        let env = StartEnv {
            tenants: &self.tenants,
            tools: &self.tools,
            guard_config: conf,
        };
        start(kind, &env).unwrap_or_else(|e| panic!("start {}: {e}", kind.name()))
    }

    fn get(&self, t: &dyn Target, file: &Path) -> Response {
        let url = t.url(file).expect("url");
        Conn::new(t.addr(), Duration::from_secs(10))
            .get(&url)
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    fn leaked(&self, r: &Response) -> bool {
        toctou_attack::marker::contains(&r.body, self.tenants.marker.as_bytes())
    }

    /// The denial line for `path`: owner = victim, expected = attacker.
    fn assert_denial_logged(&self, path: &Path) -> String {
        let (v, a) = (self.tenants.victim.uid, self.tenants.attacker.uid);
        let needles = [
            "<84>toctou-guard[".to_string(),
            "action=deny".to_string(),
            // The path is the line's last field (README, "The denial line").
            format!(" path={}", path.display()),
            format!("owner={v} "),
            format!("expected={a} "),
            "mode=enforce".to_string(),
        ];
        let n: Vec<&str> = needles.iter().map(String::as_str).collect();
        let line = self.log.wait_for(&n, Duration::from_secs(5)).unwrap_or_else(|| {
            panic!(
                "no denial line for {} among {:?}",
                path.display(),
                self.log.lines()
            )
        });
        assert!(line.ends_with(&needles[2]), "the path ends the line: {line}");
        line
    }
}

fn assert_status(r: &Response, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: body {:?}",
        String::from_utf8_lossy(&r.body)
    );
}

#[test]
fn apache_symlinks_if_owner_match_with_shim_refuses_other_tenants_files() {
    let Some(site) = Site::new(&[TargetKind::Apache, TargetKind::ApacheShim]) else {
        return;
    };
    let _g = heavy();
    let conf = site.config(false);
    {
        // Without the shim, SymLinksIfOwnerMatch stops the symlink but not the hard link.
        let bare = site.start(TargetKind::Apache, &conf);
        assert_status(&site.get(&*bare, &site.link), 403, "bare apache, symlink");
        let r = site.get(&*bare, &site.hard);
        assert!(
            r.status == 200 && site.leaked(&r),
            "bare apache should serve the hard link: {}",
            r.status
        );
    }
    let t = site.start(TargetKind::ApacheShim, &conf);
    let r = site.get(&*t, &site.own);
    assert_status(&r, 200, "own file");
    assert_eq!(r.body, b"attacker legit index\n");
    let r = site.get(&*t, &site.link);
    assert_status(&r, 403, "symlink to the victim's secret");
    assert!(!site.leaked(&r));
    let r = site.get(&*t, &site.hard);
    assert_status(&r, 403, "hard link to the victim's secret");
    assert!(!site.leaked(&r));
    let line = site.assert_denial_logged(&site.hard);
    assert!(
        line.contains(&format!("tenant={} ", site.tenants.attacker.home.display())),
        "{line}"
    );
    assert!(line.contains("reason=owner-mismatch"), "{line}");
}

#[test]
fn nginx_with_shim_refuses_other_tenants_files() {
    let Some(site) = Site::new(&[TargetKind::Nginx, TargetKind::NginxShim]) else {
        return;
    };
    let _g = heavy();
    let conf = site.config(false);
    {
        // disable_symlinks off: bare nginx follows the symlink.
        let bare = site.start(TargetKind::Nginx, &conf);
        let r = site.get(&*bare, &site.link);
        assert!(
            r.status == 200 && site.leaked(&r),
            "bare nginx should serve the symlink: {}",
            r.status
        );
    }
    let t = site.start(TargetKind::NginxShim, &conf);
    let r = site.get(&*t, &site.own);
    assert_status(&r, 200, "own file");
    assert_eq!(r.body, b"attacker legit index\n");
    let r = site.get(&*t, &site.link);
    assert_status(&r, 403, "symlink to the victim's secret");
    assert!(!site.leaked(&r));
    site.assert_denial_logged(&site.link);
    assert_status(
        &site.get(&*t, &site.hard),
        403,
        "hard link to the victim's secret",
    );
    site.assert_denial_logged(&site.hard);
    // The victim still gets its own secret.
    let r = site.get(&*t, &site.tenants.secret);
    assert!(
        r.status == 200 && site.leaked(&r),
        "victim's own secret: {}",
        r.status
    );
}

/// A configuration with an error on line 3.
fn broken_config(site: &Site) -> PathBuf {
    let p = site.tenants.run.join("broken.conf");
    let text = format!(
        "mode enforce\nroot {}\nfrobnicate yes\n",
        site.tenants.root_pattern()
    );
    toctou_attack::tenants::mk_file(&p, text.as_bytes(), 0, 0, 0o644).expect("write config");
    p
}

fn shim_env(site: &Site, conf: &Path) -> impl FnOnce(&mut Command) -> toctou_attack::Result<()> {
    let shim = site.tools.shim.clone().expect("shim");
    let conf = conf.to_path_buf();
    move |c: &mut Command| {
        c.env("LD_PRELOAD", std::fs::canonicalize(shim).expect("shim path"))
            .env("TOCTOU_GUARD_CONFIG", conf);
        Ok(())
    }
}

fn assert_refuses_to_start(mut p: toctou_attack::process::ServerProcess, needle: &str) {
    let st = p
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{} started despite the bad config", p.name));
    assert!(!st.success(), "{} exited successfully", p.name);
    let tail = p.tail();
    assert!(
        tail.contains(needle),
        "{} stderr does not name {needle:?}:\n{tail}",
        p.name
    );
    assert!(tail.contains("toctou-guard"), "{tail}");
}

#[test]
fn broken_config_stops_apache_naming_file_and_line() {
    let Some(site) = Site::new(&[TargetKind::ApacheShim]) else {
        return;
    };
    let conf = broken_config(&site);
    let port = free_port().expect("port");
    let dir = site.tenants.run.join("apache-broken");
    mk_dir(&dir, 0, 0, 0o755).expect("dir");
    let apache_bin = site.tools.apache.clone().expect("apache2");
    let text = apache::config(&site.tenants.www, port, &dir);
    let p = apache::spawn(&apache_bin, &dir, &text, shim_env(&site, &conf)).expect("spawn apache2");
    assert_refuses_to_start(p, &format!("{}:3", conf.display()));
}

#[test]
fn broken_config_stops_nginx_naming_file_and_line() {
    let Some(site) = Site::new(&[TargetKind::NginxShim]) else {
        return;
    };
    let conf = broken_config(&site);
    let port = free_port().expect("port");
    let dir = site.tenants.run.join("nginx-broken");
    mk_dir(&dir, 0, 0, 0o755).expect("dir");
    let nginx_bin = site.tools.nginx.clone().expect("nginx");
    let text = nginx::config(&site.tenants.www, port, &dir, "off", "");
    let p = nginx::spawn(&nginx_bin, &dir, &text, shim_env(&site, &conf)).expect("spawn nginx");
    assert_refuses_to_start(p, &format!("{}:3", conf.display()));
}

#[test]
fn config_writable_by_others_stops_nginx() {
    use std::os::unix::fs::PermissionsExt;
    let Some(site) = Site::new(&[TargetKind::NginxShim]) else {
        return;
    };
    let conf = site.config(false);
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let port = free_port().expect("port");
    let dir = site.tenants.run.join("nginx-unsafe");
    mk_dir(&dir, 0, 0, 0o755).expect("dir");
    let nginx_bin = site.tools.nginx.clone().expect("nginx");
    let text = nginx::config(&site.tenants.www, port, &dir, "off", "");
    let p = nginx::spawn(&nginx_bin, &dir, &text, shim_env(&site, &conf)).expect("spawn nginx");
    assert_refuses_to_start(p, &conf.display().to_string());
}

#[test]
fn php_pool_with_owner_euid_serves_own_file_and_refuses_victims_file() {
    let Some(site) = Site::new(&[TargetKind::Php, TargetKind::PhpShim]) else {
        return;
    };
    let _g = heavy();
    let conf = site.config(true);
    {
        // Bare: the pool's uid can read the victim's world-readable file.
        let bare = site.start(TargetKind::Php, &conf);
        let r = site.get(&*bare, &site.tenants.secret);
        assert!(
            r.status == 200 && site.leaked(&r),
            "bare php should read the victim's file: {}",
            r.status
        );
    }
    let t = site.start(TargetKind::PhpShim, &conf);
    let r = site.get(&*t, &site.own);
    assert_status(&r, 200, "own file through php");
    assert_eq!(r.body, b"attacker legit index\n");
    let r = site.get(&*t, &site.tenants.secret);
    assert_status(&r, 403, "victim's file by absolute path");
    assert!(!site.leaked(&r));
    site.assert_denial_logged(&site.tenants.secret);
    let r = site.get(&*t, &site.link);
    assert_status(&r, 403, "symlink to the victim's file");
    assert!(!site.leaked(&r));
}

/// The page reads its own file while the attacker flips it to a symlink to the victim's:
/// bare php leaks, php with the shim (`owner euid`) never does.
#[test]
fn php_page_reading_a_flipping_file_never_leaks_with_shim() {
    let Some(tools) = tools_for(&[TargetKind::Php, TargetKind::PhpShim]) else {
        return;
    };
    let _g = heavy();
    let mut opts = RunOptions::new(tools);
    opts.targets = vec![TargetKind::Php, TargetKind::PhpShim];
    opts.scenarios = vec![Scenario::Final];
    opts.max_requests = 100_000;
    opts.max_time = Duration::from_secs(20);
    let report = run_matrix(&opts, |c| eprintln!("{}", Report::table_row(c))).expect("run");
    let bare = report.cell(TargetKind::Php, Scenario::Final).expect("php cell");
    let shim = report
        .cell(TargetKind::PhpShim, Scenario::Final)
        .expect("php+shim cell");
    assert!(
        bare.error.is_none() && shim.error.is_none(),
        "{:?} {:?}",
        bare.error,
        shim.error
    );
    assert!(
        bare.load.leaks > 0,
        "bare php did not leak: the race proves nothing"
    );
    assert!(shim.swaps > 0, "no swaps");
    assert_eq!(shim.load.leaks, 0, "php+shim leaked");
    assert!(shim.load.denials > 0, "php+shim never saw the symlink");
    assert_eq!(shim.load.false_denials, 0, "{:?}", shim.load.first_false_denial);
}
