//! One test per hosting panel layout (issue 14): a tree built like that panel's (its
//! document roots, and its exact ownership: ISPConfig's `webM` root:root, HestiaCP's
//! `web/` root:USER, DirectAdmin's `~/public_html` symlink...) under a temp dir;
//! `toctou-guard init --layout X --prefix TMP` writes the config, `check` accepts it,
//! `scan` finds nothing on the clean tree (exit 0) and a guarded nginx serves every site's
//! index; then planted problems — a cross-tenant symlink to another tenant's
//! `wp-config.php`, root- and nobody-owned files, a hard link made by root to another
//! tenant's file, a tenant directory that is a symlink — are each reported by `scan`
//! (exact kind and path, exit 1, the same in `--json`), and nginx refuses the link (403,
//! with a denial line).
//!
//! Needs root, nginx and the release build (shim, `toctou-guard`); `SKIP:` otherwise (a
//! failure in CI).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use toctou_attack::guardconf::LogListener;
use toctou_attack::http::Conn;
use toctou_attack::process::{ServerProcess, wait_http};
use toctou_attack::targets::{
    ConfigBase, Tuning, nginx, scratch_in, server_user, set_preload, with_port_retries,
};
use toctou_attack::tenants::{mk_dir, mk_file, mk_symlink};
use toctou_guard_tests::shim_fixture::{c_program, prerequisites};
use toctou_guard_tests::{artifacts, describe, prereq};

/// The site owners (numeric, as the other tests' tenants): the attacker plants, the
/// victim's `wp-config.php` is the prize.
const ATTACKER: u32 = 44101;
const VICTIM: u32 = 44102;
const NOBODY: u32 = 65534;

/// A panel's tree under `base`: what `build` made, for the checks.
struct Tree {
    base: PathBuf,
    /// Every document root (relative to `base`) with its owner; `index.html` is served from each.
    sites: Vec<(String, u32)>,
    /// More URLs for the same files (DirectAdmin's `~/public_html` symlink).
    aliases: Vec<String>,
    /// The attacker's document root, where the problems are planted.
    attacker_docroot: String,
    /// The victim's `wp-config.php`.
    secret: String,
    /// (link, target): a tenant directory that is a symlink, planted with the rest.
    tenant_link: (String, String),
}

impl Tree {
    fn p(&self, rel: &str) -> PathBuf {
        self.base.join(rel)
    }
    fn dir(&self, rel: &str, uid: u32, gid: u32, mode: u32) {
        mk_dir(&self.p(rel), uid, gid, mode).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
    fn site(&mut self, rel: &str, uid: u32) {
        let body = format!("index of {rel}\n");
        mk_file(
            &self.p(&format!("{rel}/index.html")),
            body.as_bytes(),
            uid,
            uid,
            0o644,
        )
        .unwrap();
        self.sites.push((rel.to_string(), uid));
    }
}

/// Builds the clean tree of one layout (directories in order, each with the panel's owner,
/// group and mode; the web server's group stands in for `nobody`/`psacln`/`psaserv`).
fn build(layout: &str, t: &mut Tree) {
    let (a, v) = (ATTACKER, VICTIM);
    let www = server_user().1;
    match layout {
        "cpanel" => {
            t.dir("home", 0, 0, 0o755);
            for (u, id) in [("alice", a), ("bob", v)] {
                t.dir(&format!("home/{u}"), id, id, 0o711);
                t.dir(&format!("home/{u}/public_html"), id, www, 0o750);
                t.site(&format!("home/{u}/public_html"), id);
                t.dir(&format!("home/{u}/{u}-addon.tld"), id, www, 0o750);
                t.site(&format!("home/{u}/{u}-addon.tld"), id);
            }
            t.attacker_docroot = "home/alice/public_html".into();
            t.secret = "home/bob/bob-addon.tld/wp-config.php".into();
            t.tenant_link = ("home/evil".into(), "bob".into());
        }
        "plesk" => {
            for d in ["var", "var/www", "var/www/vhosts"] {
                t.dir(d, 0, 0, 0o755);
            }
            for (d, id) in [("alice.tld", a), ("bob.tld", v)] {
                t.dir(&format!("var/www/vhosts/{d}"), id, www, 0o710);
                t.dir(&format!("var/www/vhosts/{d}/httpdocs"), id, www, 0o750);
                t.site(&format!("var/www/vhosts/{d}/httpdocs"), id);
                t.dir(&format!("var/www/vhosts/{d}/logs"), 0, 0, 0o700);
            }
            t.dir("var/www/vhosts/system", 0, 0, 0o755);
            t.attacker_docroot = "var/www/vhosts/alice.tld/httpdocs".into();
            t.secret = "var/www/vhosts/bob.tld/httpdocs/wp-config.php".into();
            t.tenant_link = ("var/www/vhosts/evil.tld".into(), "bob.tld".into());
        }
        "directadmin" => {
            t.dir("home", 0, 0, 0o755);
            for (u, id) in [("alice", a), ("bob", v)] {
                t.dir(&format!("home/{u}"), id, id, 0o711);
                t.dir(&format!("home/{u}/domains"), id, id, 0o711);
                for d in [format!("{u}.tld"), format!("{u}-2.tld")] {
                    t.dir(&format!("home/{u}/domains/{d}"), id, id, 0o711);
                    t.dir(&format!("home/{u}/domains/{d}/public_html"), id, id, 0o755);
                    t.site(&format!("home/{u}/domains/{d}/public_html"), id);
                    mk_symlink(
                        Path::new("./public_html"),
                        &t.p(&format!("home/{u}/domains/{d}/private_html")),
                        id,
                        id,
                    )
                    .unwrap();
                }
                mk_symlink(
                    Path::new(&format!("./domains/{u}.tld/public_html")),
                    &t.p(&format!("home/{u}/public_html")),
                    id,
                    id,
                )
                .unwrap();
                t.aliases.push(format!("home/{u}/public_html/index.html"));
                t.aliases
                    .push(format!("home/{u}/domains/{u}.tld/private_html/index.html"));
            }
            t.attacker_docroot = "home/alice/domains/alice.tld/public_html".into();
            t.secret = "home/bob/domains/bob-2.tld/public_html/wp-config.php".into();
            t.tenant_link = ("home/evil".into(), "bob".into());
        }
        "ispconfig" => {
            for d in ["var", "var/www", "var/www/clients"] {
                t.dir(d, 0, 0, 0o755);
            }
            t.dir("var/www/clients/client1", 0, 0, 0o755);
            for (w, id) in [("web1", a), ("web2", v)] {
                let webm = format!("var/www/clients/client1/{w}");
                t.dir(&webm, 0, 0, 0o755); // root:root, as ISPConfig makes it
                t.dir(&format!("{webm}/web"), id, id, 0o755);
                t.site(&format!("{webm}/web"), id);
                t.dir(&format!("{webm}/private"), id, id, 0o755);
                t.dir(&format!("{webm}/log"), 0, 0, 0o755);
                mk_symlink(
                    Path::new(&format!("/var/www/clients/client1/{w}")),
                    &t.p(&format!("var/www/{w}.tld")),
                    0,
                    0,
                )
                .unwrap();
                // ISPConfig's default website_symlinks also puts clients/clientN/DOMAIN ->
                // webM (absolute, root's) beside webM: an alias of a tree the scan walks.
                mk_symlink(
                    &t.p(&webm),
                    &t.p(&format!("var/www/clients/client1/{w}.tld")),
                    0,
                    0,
                )
                .unwrap();
            }
            t.dir("var/www/clients/client1/web9", 0, 0, 0o755);
            t.attacker_docroot = "var/www/clients/client1/web1/web".into();
            t.secret = "var/www/clients/client1/web2/web/wp-config.php".into();
            t.tenant_link = ("var/www/clients/client1/web9/web".into(), "../web2/web".into());
        }
        "hestiacp" => {
            t.dir("home", 0, 0, 0o755);
            for (u, id) in [("alice", a), ("bob", v)] {
                t.dir(&format!("home/{u}"), id, id, 0o711);
                t.dir(&format!("home/{u}/web"), 0, id, 0o751); // root:USER
                let d = format!("home/{u}/web/{u}.tld");
                t.dir(&d, id, id, 0o751);
                t.dir(&format!("{d}/public_html"), id, id, 0o751);
                t.site(&format!("{d}/public_html"), id);
                t.dir(&format!("{d}/public_shtml"), id, id, 0o751);
                t.site(&format!("{d}/public_shtml"), id);
            }
            t.attacker_docroot = "home/alice/web/alice.tld/public_html".into();
            t.secret = "home/bob/web/bob.tld/public_html/wp-config.php".into();
            t.tenant_link = ("home/evil".into(), "bob".into());
        }
        "virtualmin" => {
            t.dir("home", 0, 0, 0o755);
            for (u, id) in [("alice", a), ("bob", v)] {
                t.dir(&format!("home/{u}"), id, id, 0o711);
                t.dir(&format!("home/{u}/public_html"), id, id, 0o755);
                t.site(&format!("home/{u}/public_html"), id);
                t.dir(&format!("home/{u}/domains"), id, id, 0o711);
                let sub = format!("home/{u}/domains/sub.{u}.tld");
                t.dir(&sub, id, id, 0o711);
                t.dir(&format!("{sub}/public_html"), id, id, 0o755);
                t.site(&format!("{sub}/public_html"), id);
            }
            t.attacker_docroot = "home/alice/domains/sub.alice.tld/public_html".into();
            t.secret = "home/bob/domains/sub.bob.tld/public_html/wp-config.php".into();
            t.tenant_link = ("home/evil".into(), "bob".into());
        }
        other => panic!("no tree for {other}"),
    }
    mk_file(
        &t.p(&t.secret),
        b"define('DB_PASSWORD', 'VICTIM-SECRET');\n",
        v,
        v,
        0o644,
    )
    .unwrap();
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run toctou-guard")
}

/// `(kind, path)` of each finding line of `scan`'s text output (after the summary).
fn text_findings(out: &str) -> BTreeSet<(String, String)> {
    out.lines()
        .filter(|l| {
            l.split_whitespace().count() >= 4
                && !l.starts_with("scan:")
                && l.split_whitespace().nth(1).is_some_and(|t| t.starts_with('/'))
        })
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].to_string(), w[2].to_string())
        })
        .collect()
}

fn json_findings(out: &str) -> BTreeSet<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("--json: {e}: {out}"));
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// nginx (master as root, workers as www-data) serving `base`, with the shim and `conf`.
fn guarded_nginx(base: &Path, run_dir: &Path, so: &Path, conf: &Path) -> Option<(ServerProcess, SocketAddr)> {
    let bin = prereq::program(&["/usr/sbin/nginx", "/usr/local/sbin/nginx"], "nginx")?;
    let started = with_port_retries(|port| {
        let dir = scratch_in(run_dir, "nginx", port)?;
        let text = nginx::text(
            &ConfigBase {
                docroot: base,
                port,
                dir: &dir,
                tuning: Tuning::RACE,
            },
            "off",
            "",
        );
        let mut p = nginx::spawn(&bin, &dir, &text, |c| {
            set_preload(c, Some((so, conf)));
            Ok(())
        })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_http(addr, "/", &mut [&mut p], Duration::from_secs(20))?;
        Ok((p, addr))
    });
    Some(started.unwrap_or_else(|e| panic!("start nginx: {e}")))
}

fn get(addr: SocketAddr, rel: &str) -> (u16, Vec<u8>) {
    let r = Conn::new(addr, Duration::from_secs(10))
        .get(&format!("/{rel}"))
        .unwrap_or_else(|e| panic!("GET /{rel}: {e}"));
    (r.status, r.body)
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A scan test's scratch tree: `BASE/home` and `BASE/run` (root's 0755) and
/// `BASE/run/toctou-guard.conf` guarding `BASE/home/*/public_html`; removed on drop. Needs
/// root and the CLI (`None` after a `SKIP:`).
struct ScanBase {
    bin: PathBuf,
    base: PathBuf,
    conf: PathBuf,
    _cleanup: Cleanup,
}

fn scan_base(name: &str) -> Option<ScanBase> {
    if !prereq::root() {
        return None;
    }
    let bin = artifacts::guard_cli()?;
    let base = std::env::temp_dir().join(format!("tg-scan-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let _cleanup = Cleanup(base.clone());
    for d in ["", "home", "run"] {
        mk_dir(&base.join(d), 0, 0, 0o755).unwrap();
    }
    let conf = base.join("run/toctou-guard.conf");
    let rule = format!("root {}/home/*/public_html\n", base.display());
    mk_file(&conf, rule.as_bytes(), 0, 0, 0o644).unwrap();
    Some(ScanBase {
        bin,
        base,
        conf,
        _cleanup,
    })
}

fn panel(layout: &str) {
    let Some(_) = prerequisites() else { return };
    let Some(bin) = artifacts::guard_cli() else { return };
    let base = std::env::temp_dir().join(format!("tg-panel-{layout}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let _cleanup = Cleanup(base.clone());
    mk_dir(&base, 0, 0, 0o755).unwrap();
    let mut t = Tree {
        base: base.clone(),
        sites: Vec::new(),
        aliases: Vec::new(),
        attacker_docroot: String::new(),
        secret: String::new(),
        tenant_link: Default::default(),
    };
    build(layout, &mut t);
    let b = base.display().to_string();

    // init, then check: the written file is root's 0644, and it must be accepted as is.
    let run_dir = base.join("run");
    mk_dir(&run_dir, 0, 0, 0o755).unwrap();
    let conf = run_dir.join("toctou-guard.conf");
    let conf_s = conf.to_str().unwrap();
    let out = run(
        &bin,
        &["init", "--layout", layout, "--prefix", &b, "--output", conf_s],
    );
    assert!(out.status.success(), "init: {}", describe(&out));
    // Audit by default (the rollout's trial day); the test needs enforce, as after that day.
    assert!(fs::read_to_string(&conf).unwrap().contains("\nmode audit\n"));
    let handlers = String::from_utf8_lossy(&out.stderr);
    assert!(
        handlers.contains("  yes ") && handlers.contains("  no "),
        "init names protected and unprotected handlers: {handlers}"
    );
    let again = run(
        &bin,
        &["init", "--layout", layout, "--prefix", &b, "--output", conf_s],
    );
    assert_eq!(
        again.status.code(),
        Some(1),
        "init must not overwrite: {}",
        describe(&again)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists (use --force"));
    fs::write(&conf, "not a config\n").unwrap();
    let forced = run(
        &bin,
        &[
            "init", "--layout", layout, "--mode", "enforce", "--prefix", &b, "--output", conf_s, "--force",
        ],
    );
    assert!(forced.status.success(), "init --force: {}", describe(&forced));
    let m = fs::metadata(&conf).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (0, 0, 0o644),
        "root's 0644"
    );
    let text = fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains(&format!("root {b}/")) && text.contains("\nmode enforce\n"),
        "{text}"
    );
    let log = LogListener::bind(&run_dir.join("log.sock")).expect("log socket");
    let mut f = fs::OpenOptions::new().append(true).open(&conf).unwrap();
    writeln!(f, "log_socket {}\nlog_rate 1000", log.path.display()).unwrap();
    drop(f);
    let out = run(&bin, &["check", conf_s]);
    assert!(out.status.success(), "check: {}", describe(&out));

    // The clean tree: nothing to report.
    let out = run(&bin, &["scan", "--config", conf_s]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "scan of the clean tree: {}",
        describe(&out)
    );
    assert!(text.contains("nothing would be denied"), "{text}");
    assert!(text_findings(&text).is_empty(), "{text}");
    let out = run(&bin, &["scan", "--config", conf_s, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(json_findings(&String::from_utf8_lossy(&out.stdout)).is_empty());

    // Every site is under a root, with the panel's tenant (independent of the config: how
    // many components down each panel's tenant directory is).
    let tenant_depth = match layout {
        "plesk" => 4,
        "ispconfig" => 6,
        _ => 2,
    };
    for (site, _) in &t.sites {
        let index = format!("{b}/{site}/index.html");
        let out = run(&bin, &["explain", &index, "--config", conf_s]);
        let text = String::from_utf8_lossy(&out.stdout);
        let tenant: Vec<&str> = site.split('/').take(tenant_depth).collect();
        assert!(
            text.contains(&format!("tenant:   {b}/{}\n", tenant.join("/")))
                && text.contains("decision: allow"),
            "{layout}: {index}:\n{text}"
        );
    }

    // Every site of the clean tree is served by the guarded server: no false denial.
    let so = c_program("libtoctou_guard.so");
    let Some((mut ngx, addr)) = guarded_nginx(&base, &run_dir, &so, &conf) else {
        return;
    };
    assert!(!t.sites.is_empty());
    for (site, _) in &t.sites {
        let rel = format!("{site}/index.html");
        let (status, body) = get(addr, &rel);
        assert_eq!(
            status,
            200,
            "{layout}: GET /{rel}: {}\n{}",
            String::from_utf8_lossy(&body),
            ngx.tail()
        );
        assert_eq!(body, fs::read(t.p(&rel)).unwrap(), "{layout}: /{rel}");
    }
    for rel in &t.aliases {
        let (status, body) = get(addr, rel);
        assert_eq!(
            status,
            200,
            "{layout}: GET /{rel} (through a symlink): {}",
            ngx.tail()
        );
        assert_eq!(body, fs::read(t.p(rel)).unwrap());
    }

    // Plant the problems.
    let ad = t.attacker_docroot.clone();
    let secret = t.p(&t.secret);
    let link = format!("{ad}/evil-link.txt");
    mk_symlink(&secret, &t.p(&link), ATTACKER, ATTACKER).unwrap();
    mk_file(&t.p(&format!("{ad}/root-owned.txt")), b"root\n", 0, 0, 0o644).unwrap();
    mk_file(
        &t.p(&format!("{ad}/nobody.php")),
        b"<?php // a DSO upload\n",
        NOBODY,
        NOBODY,
        0o644,
    )
    .unwrap();
    // As root: fs.protected_hardlinks stops the tenant itself.
    fs::hard_link(&secret, t.p(&format!("{ad}/hard.php"))).unwrap();
    let (tl, target) = t.tenant_link.clone();
    mk_symlink(Path::new(&target), &t.p(&tl), ATTACKER, ATTACKER).unwrap();
    let want: BTreeSet<(String, String)> = [
        ("symlink-leaves-tenant", link.clone()),
        ("owner-mismatch", format!("{ad}/root-owned.txt")),
        ("owner-mismatch", format!("{ad}/nobody.php")),
        ("hardlink", format!("{ad}/hard.php")),
        ("tenant-symlink", tl.clone()),
    ]
    .into_iter()
    .map(|(k, p)| (k.to_string(), format!("{b}/{p}")))
    .collect();
    let out = run(&bin, &["scan", "--config", conf_s]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "scan of the dirty tree: {}",
        describe(&out)
    );
    assert_eq!(text_findings(&text), want, "{layout}:\n{text}");
    assert!(
        text.contains(&format!("resolves to {}", secret.display())),
        "where the link goes: {text}"
    );
    let out = run(&bin, &["scan", "--config", conf_s, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        json_findings(&String::from_utf8_lossy(&out.stdout)),
        want,
        "{layout}: --json"
    );

    // The guarded server refuses the planted link, and says so.
    let (status, body) = get(addr, &link);
    assert_eq!(
        status,
        403,
        "{layout}: GET /{link}: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(!String::from_utf8_lossy(&body).contains("VICTIM-SECRET"));
    let path = format!(" path={b}/{link}");
    let needles = ["action=deny", "reason=owner-mismatch", path.as_str()];
    let line = log.wait_for(&needles, Duration::from_secs(5));
    assert!(
        line.is_some(),
        "{layout}: no denial line for {link}: {:?}",
        log.lines()
    );
    ngx.stop();
}

#[test]
fn cpanel() {
    panel("cpanel");
}

#[test]
fn plesk() {
    panel("plesk");
}

#[test]
fn directadmin() {
    panel("directadmin");
}

#[test]
fn ispconfig() {
    panel("ispconfig");
}

#[test]
fn hestiacp() {
    panel("hestiacp");
}

#[test]
fn virtualmin() {
    panel("virtualmin");
}

/// `scan` never follows a link: a directory symlink that leaves the tenant is reported and
/// not entered (the victim's files behind it are not listed as the attacker's), a link back
/// into the tenant (`loop -> .`) is not entered either; and a directory swapped with a
/// symlink to the victim's docroot while scans run is reported as a link or as replaced,
/// never walked through.
#[test]
fn scan_reports_a_symlinked_directory_and_never_enters_it() {
    let Some(ScanBase {
        bin,
        base,
        conf,
        _cleanup,
    }) = scan_base("swap")
    else {
        return;
    };
    let (a, v) = (ATTACKER, VICTIM);
    let alice = base.join("home/alice/public_html");
    let bob = base.join("home/bob/public_html");
    for (d, id) in [
        (base.join("home/alice"), a),
        (alice.clone(), a),
        (base.join("home/bob"), v),
        (bob.clone(), v),
    ] {
        mk_dir(&d, id, id, 0o755).unwrap();
    }
    for i in 0..50 {
        mk_file(&bob.join(format!("secret-{i}.php")), b"VICTIM\n", v, v, 0o644).unwrap();
    }
    let sub = alice.join("sub");
    mk_dir(&sub, a, a, 0o755).unwrap();
    for i in 0..20 {
        let d = sub.join(format!("d{i}"));
        mk_dir(&d, a, a, 0o755).unwrap();
        for j in 0..100 {
            mk_file(&d.join(format!("f{j}")), b"own\n", a, a, 0o644).unwrap();
        }
    }
    mk_symlink(&bob, &alice.join("bobdir"), a, a).unwrap();
    mk_symlink(Path::new("."), &alice.join("loop"), a, a).unwrap();
    let conf_s = conf.to_str().unwrap();
    let scan = || {
        let out = run(&bin, &["scan", "--config", conf_s, "--json"]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", describe(&out));
        json_findings(&String::from_utf8_lossy(&out.stdout))
    };
    let bobdir = format!("{}/bobdir", alice.display());
    let want: BTreeSet<(String, String)> = [("symlink-leaves-tenant".to_string(), bobdir.clone())].into();
    assert_eq!(
        scan(),
        want,
        "the link is reported; nothing behind it or behind loop -> ."
    );

    // Now swap sub with a symlink to bob's docroot while scanning.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let real = alice.join("sub.real");
    let sub_s = sub.display().to_string();
    let (mut seen_swap, mut runs) = (0, 0);
    std::thread::scope(|s| {
        let swapper = s.spawn(|| {
            let mut n = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                fs::rename(&sub, &real).unwrap();
                std::os::unix::fs::symlink(&bob, &sub).unwrap();
                fs::remove_file(&sub).unwrap();
                fs::rename(&real, &sub).unwrap();
                n += 1;
            }
            n
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while runs < 40 && Instant::now() < deadline {
            let found = scan();
            runs += 1;
            for (kind, path) in &found {
                assert!(
                    !path.starts_with(&format!("{sub_s}/")) && !path.starts_with(&format!("{bobdir}/")),
                    "the walk went through a link: {kind} {path}"
                );
                assert!(
                    path == &bobdir || path == &sub_s || path.starts_with(&format!("{sub_s}.real")),
                    "unexpected finding {kind} {path}"
                );
                if path == &sub_s {
                    assert!(
                        kind == "symlink-leaves-tenant" || kind == "unreadable",
                        "{kind} {path}"
                    );
                }
            }
            seen_swap += usize::from(found.iter().any(|(_, p)| p == &sub_s));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        assert!(swaps > 0 && runs > 0);
        assert!(
            seen_swap > 0,
            "in {runs} scans during {swaps} swaps, none met sub as a symlink or as replaced"
        );
    });
}

/// A configuration that cannot be loaded, or a bad argument, is an error: exit 2 (not 1, which
/// means "something would be denied"), the file named.
#[test]
fn scan_exits_2_on_error() {
    let Some(bin) = artifacts::guard_cli() else { return };
    let missing = std::env::temp_dir().join(format!("tg-no-such-{}.conf", std::process::id()));
    let out = run(&bin, &["scan", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("toctou-guard: scan: {}", missing.display())),
        "{err}"
    );
    let out = run(&bin, &["scan", "--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

/// A directory of a tenant's tree on another file system (a tmpfs mounted there) is
/// reported as `other-mount` and not entered; it denies nothing by itself (exit 0).
#[test]
fn scan_reports_another_mount_and_does_not_enter_it() {
    let Some(ScanBase {
        bin,
        base,
        conf,
        _cleanup,
    }) = scan_base("mount")
    else {
        return;
    };
    let docroot = base.join("home/alice/public_html");
    mk_dir(&base.join("home/alice"), ATTACKER, ATTACKER, 0o755).unwrap();
    mk_dir(&docroot, ATTACKER, ATTACKER, 0o755).unwrap();
    let mnt = docroot.join("mnt");
    mk_dir(&mnt, ATTACKER, ATTACKER, 0o755).unwrap();
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size=1m,mode=0755,uid={ATTACKER},gid={ATTACKER}"),
            "tg-scan-test",
        ])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !prereq::require(ok, "mount -t tmpfs (root in a namespace that may mount)") {
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    // Root's file on the other file system: it would be a finding if the walk went in.
    fs::write(mnt.join("root-owned.txt"), "x\n").unwrap();
    let out = run(&bin, &["scan", "--config", conf.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let want: BTreeSet<(String, String)> = [("other-mount".to_string(), mnt.display().to_string())].into();
    assert_eq!(text_findings(&text), want, "{text}");
}

/// What a hostile tenant can put in its tree: names with a newline, a tab, a space, a `\`
/// and bytes that are not UTF-8 (root-owned, so each is a finding), FIFOs, a socket and a
/// device, 600 directories of 255-byte names (far past PATH_MAX), 20,000 entries in one
/// directory, a 0000 directory. The scan ends (bounded), exits 1, prints each name escaped as
/// the denial line does (one line per finding, nothing raw), stops at PATH_MAX with one
/// `path-too-long`, and as the tenant itself reports the 0000 directory `unreadable`.
#[test]
fn scan_survives_hostile_names_depth_and_special_files() {
    use std::os::unix::ffi::OsStrExt;
    let Some(ScanBase {
        bin,
        base,
        conf,
        _cleanup,
    }) = scan_base("hostile")
    else {
        return;
    };
    let a = ATTACKER;
    let home = base.join("home/alice");
    let d = home.join("public_html");
    mk_dir(&home, a, a, 0o755).unwrap();
    mk_dir(&d, a, a, 0o755).unwrap();
    let odd: [&[u8]; 5] = [
        b"new\nline",
        b"tab\there",
        b"sp ace",
        b"back\\slash",
        b"bad\xff\xfe",
    ];
    for n in odd {
        fs::write(d.join(std::ffi::OsStr::from_bytes(n)), "root's\n").unwrap();
    }
    for (name, kind) in [("fifo", "p"), ("null", "c")] {
        let mut c = Command::new("mknod");
        c.arg(d.join(name)).arg(kind);
        if kind == "c" {
            c.args(["1", "3"]);
        }
        assert!(c.status().unwrap().success(), "mknod {name}");
        std::os::unix::fs::lchown(d.join(name), Some(a), Some(a)).unwrap();
    }
    let sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
    std::os::unix::fs::lchown(d.join("sock"), Some(a), Some(a)).unwrap();
    let locked = d.join("locked");
    mk_dir(&locked, a, a, 0o755).unwrap();
    mk_file(&locked.join("inside"), b"own\n", a, a, 0o644).unwrap();
    fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let many = d.join("many");
    mk_dir(&many, a, a, 0o755).unwrap();
    for i in 0..20_000 {
        mk_file(&many.join(format!("f{i}")), b"", a, a, 0o644).unwrap();
    }
    // 600 levels, each made relative to its parent's descriptor (no path from / could be).
    let deep = "import os, sys\n\
                fd = os.open(sys.argv[1], os.O_RDONLY)\n\
                for _ in range(600):\n\
                \x20   os.mkdir('d' * 255, dir_fd=fd)\n\
                \x20   os.chown('d' * 255, int(sys.argv[2]), int(sys.argv[2]), dir_fd=fd)\n\
                \x20   fd = os.open('d' * 255, os.O_RDONLY, dir_fd=fd)\n";
    let out = Command::new("python3")
        .args(["-c", deep])
        .arg(&d)
        .arg(a.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "the deep tree: {}", describe(&out));

    let conf_s = conf.to_str().unwrap();
    let out = Command::new("timeout")
        .args(["60"])
        .arg(&bin)
        .args(["scan", "--config", conf_s])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8(out.stdout.clone()).expect("the output is ASCII");
    let ds = d.display().to_string();
    for shown in [
        "new\\x0aline",
        "tab\\x09here",
        "sp\\x20ace",
        "back\\x5cslash",
        "bad\\xff\\xfe",
    ] {
        let line = format!(
            "owner-mismatch {} {ds}/{shown} owner uid 0, expected uid {a}",
            home.display()
        );
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    let findings: Vec<&str> = text
        .lines()
        .filter(|l| l.split(' ').nth(2).is_some_and(|p| p.starts_with(&ds)))
        .collect();
    assert_eq!(findings.len(), 6, "the five names and one path-too-long:\n{text}");
    assert_eq!(
        findings
            .iter()
            .filter(|l| l.starts_with("path-too-long "))
            .count(),
        1,
        "{text}"
    );
    assert!(text.is_ascii() && !text.contains('\t'), "{text}");

    // The tenant's own scan (a copy of the CLI it can run: target/ may be private): its 0000
    // directory is unreadable, reported, not fatal.
    let tg = base.join("run/toctou-guard");
    fs::copy(&bin, &tg).unwrap();
    let out = Command::new("setpriv")
        .args([
            format!("--reuid={a}"),
            format!("--regid={a}"),
            "--clear-groups".into(),
        ])
        .arg(&tg)
        .args(["scan", "--config", conf_s])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("unreadable {} {} ", home.display(), locked.display()))),
        "{text}"
    );
    assert!(
        text.contains("when enforcing in what was scanned; 1 part(s) not scanned (other-mount, unreadable)"),
        "{text}"
    );
    drop(sock);
}

/// A symlink that stays inside the tenant but leads out of every root (`img -> ../private`,
/// or DirectAdmin's `domains` moved aside and linked back) hides the tree behind it from
/// the walk, which follows no link; yet the guard judges every file opened through it, and
/// here refuses one (`explain` says so). The scan must name the link as a part not scanned,
/// never print a bare "nothing would be denied".
#[test]
fn scan_names_an_in_tenant_link_to_a_tree_outside_every_root() {
    let Some(ScanBase {
        bin,
        base,
        conf,
        _cleanup,
    }) = scan_base("inlink")
    else {
        return;
    };
    let a = ATTACKER;
    let home = base.join("home/alice");
    for d in [
        "",
        "public_html",
        "private",
        ".d",
        ".d/a.com",
        ".d/a.com/public_html",
    ] {
        mk_dir(&home.join(d), a, a, 0o755).unwrap();
    }
    // What enforcement refuses behind the links: a nobody-owned upload, a link to bob's file.
    mk_file(&home.join("private/upload.jpg"), b"x\n", NOBODY, NOBODY, 0o644).unwrap();
    let v = VICTIM;
    mk_dir(&base.join("home/bob"), v, v, 0o755).unwrap();
    mk_dir(&base.join("home/bob/public_html"), v, v, 0o755).unwrap();
    let bob = base.join("home/bob/public_html/wp-config.php");
    mk_file(&bob, b"VICTIM-SECRET\n", v, v, 0o644).unwrap();
    mk_symlink(&bob, &home.join(".d/a.com/public_html/wp.php"), a, a).unwrap();
    mk_symlink(Path::new("../private"), &home.join("public_html/img"), a, a).unwrap();
    mk_symlink(Path::new(".d"), &home.join("domains"), a, a).unwrap();
    let marked = base.join("run/marked.conf");
    let rule = format!("root {}/home/{{*}}/domains/*/public_html\n", base.display());
    mk_file(&marked, rule.as_bytes(), 0, 0, 0o644).unwrap();
    for (conf, link, served) in [
        (&conf, "public_html/img", "public_html/img/upload.jpg"),
        (&marked, "domains", "domains/a.com/public_html/wp.php"),
    ] {
        let conf_s = conf.to_str().unwrap();
        let served = home.join(served);
        let out = run(&bin, &["explain", "--config", conf_s, served.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("decision: deny (owner-mismatch)"),
            "{conf_s}: enforcement judges {}: {}",
            served.display(),
            describe(&out)
        );
        let out = run(&bin, &["scan", "--config", conf_s]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let want: BTreeSet<(String, String)> =
            [("unreadable".to_string(), home.join(link).display().to_string())].into();
        assert_eq!(text_findings(&text), want, "{conf_s}: {text}");
        assert!(
            text.contains("nothing would be denied in what was scanned; 1 part(s) not scanned"),
            "{text}"
        );
    }
}
