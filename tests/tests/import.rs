//! `toctou-guard import apache|nginx` on real server configurations with a dozen virtual
//! hosts each, written under a scratch directory with their own ServerRoot / prefix: the
//! owner of each document root comes from `SuexecUserGroup`, `AssignUserID` (both under
//! `<IfModule>`, as neither module is loaded here) or the php-fpm pool it passes PHP to
//! (`fastcgi_pass`, an `upstream`, `SetHandler "proxy:unix:..."`, `ProxyPassMatch`); a vhost
//! with none is commented; a symlinked document root is warned of. Apache's vhosts are the
//! ones `apache2ctl -t -D DUMP_VHOSTS` lists: one reached only through `Include ${VAR}` is
//! found, one inside a false `<IfDefine>` is not. The fragment plus a `root` line passes
//! `check`, and the real server, guarded with it, serves the sites and refuses another
//! owner's file behind the symlinked document root (which no `root` line covers).
//!
//! Needs root, nginx, apache2, useradd and the shim (`SKIP:` locally, a failure when `CI` is
//! set). The users are created for the test and removed after it.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use toctou_attack::guardconf::LogListener;
use toctou_attack::process::ServerProcess;
use toctou_attack::targets::{apache, nginx, set_preload, spawn_listening};
use toctou_guard_tests::shim_fixture::c_program;
use toctou_guard_tests::{describe, heavy, prereq};

/// Named users for the test (`useradd`), removed on drop.
struct Users(Vec<String>);

/// useradd locks /etc/passwd: one at a time within this binary.
static USERADD: Mutex<()> = Mutex::new(());

impl Users {
    fn create(list: &[(String, u32)]) -> Users {
        let _g = USERADD.lock().unwrap_or_else(|p| p.into_inner());
        let mut made = Users(Vec::new());
        for (name, uid) in list {
            // A run that was killed may have left it.
            let _ = Command::new("userdel").arg(name).output();
            let out = Command::new("useradd")
                .args(["-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", "-u"])
                .arg(uid.to_string())
                .arg(name)
                .output()
                .expect("useradd");
            assert!(out.status.success(), "useradd {name}: {}", describe(&out));
            made.0.push(name.clone());
        }
        made
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        let _g = USERADD.lock().unwrap_or_else(|p| p.into_inner());
        for n in &self.0 {
            let _ = Command::new("userdel").arg(n).output();
        }
    }
}

/// One tenant: a home and document root of its own uid, holding `index.html`.
struct Tenant {
    name: String,
    uid: u32,
    home: PathBuf,
    /// The document root as the server names it (a symlink for one tenant).
    docroot: PathBuf,
}

/// The scratch tree: `BASE/home/NAME/public_html`, `BASE/www` (symlinked document roots),
/// `BASE/fpm/pool.d`, `BASE/run`, `BASE/etc`; removed on drop.
struct Tree {
    base: PathBuf,
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn mkdir(p: &Path, uid: u32) {
    fs::create_dir_all(p).unwrap();
    chown(p, Some(uid), Some(uid)).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
}

fn file(p: &Path, text: &str, uid: u32) {
    fs::write(p, text).unwrap();
    chown(p, Some(uid), Some(uid)).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
}

impl Tree {
    fn new(name: &str) -> Tree {
        let base = std::env::temp_dir().join(format!("tg-import-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        for d in ["", "home", "www", "fpm/pool.d", "run", "etc", "srv"] {
            mkdir(&base.join(d), 0);
        }
        Tree { base }
    }

    /// A tenant of `uid`; `symlinked`: the server names `BASE/www/NAME`, a root-owned symlink
    /// to its document root.
    fn tenant(&self, name: &str, uid: u32, symlinked: bool) -> Tenant {
        let home = self.base.join("home").join(name);
        mkdir(&home, uid);
        mkdir(&home.join("public_html"), uid);
        file(
            &home.join("public_html/index.html"),
            &format!("site {name}\n"),
            uid,
        );
        let docroot = if symlinked {
            let link = self.base.join("www").join(name);
            symlink(home.join("public_html"), &link).unwrap();
            link
        } else {
            home.join("public_html")
        };
        Tenant {
            name: name.to_string(),
            uid,
            home,
            docroot,
        }
    }

    fn pool(&self, name: &str, user: &str, listen: &str) {
        file(
            &self.base.join(format!("fpm/pool.d/{name}.conf")),
            &format!(
                "[{name}]\nuser = {user}\ngroup = nogroup\nlisten = {listen}\npm = static\npm.max_children = 1\n"
            ),
            0,
        );
    }

    fn sock(&self, name: &str) -> String {
        self.base.join(format!("run/{name}.sock")).display().to_string()
    }

    /// The operator's configuration: `root BASE/home/*/public_html` and the test's log socket.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let p = self.base.join("etc").join(name);
        file(
            &p,
            &format!(
                "root {}/home/*/public_html\nlog_socket {}/log.sock\nlog_rate 1000\n{extra}",
                self.base.display(),
                self.base.display()
            ),
            0,
        );
        p
    }
}

/// `GET path` with `Host: host`; (status, body).
fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read the response");
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    (status, body)
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run toctou-guard")
}

/// `import SERVER --conf CONF --config OPERATOR --fpm-conf FPM`.
fn import(bin: &Path, server: &str, conf: &Path, operator: &Path, fpm: &str) -> Output {
    let (conf, operator) = (conf.to_str().unwrap(), operator.to_str().unwrap());
    run(
        bin,
        &[
            "import",
            server,
            "--conf",
            conf,
            "--config",
            operator,
            "--fpm-conf",
            fpm,
        ],
    )
}

/// The `map` lines of `out`, and its stderr.
fn maps(out: &Output) -> (Vec<String>, String) {
    assert!(out.status.success(), "{}", describe(out));
    let text = String::from_utf8_lossy(&out.stdout);
    (
        text.lines()
            .filter(|l| l.starts_with("map "))
            .map(String::from)
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `root` + the fragment passes `check` with no warning (no map shadowed, nothing broken);
/// the combined file's path.
fn assert_fragment_checks(bin: &Path, tree: &Tree, fragment: &str) -> PathBuf {
    let conf = tree.config("combined.conf", fragment);
    let out = run(bin, &["check", conf.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "check of root + fragment: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("syntax is ok"),
        "{}",
        describe(&out)
    );
    assert!(out.stderr.is_empty(), "check warns: {}", describe(&out));
    conf
}

/// The guarded server serves every sampled site, and refuses `other.html` (another uid's
/// file) behind the symlinked document root, which only the imported map guards.
fn assert_served(addr: SocketAddr, log: &LogListener, sample: &[(&Tenant, String)], symlinked: &Tenant) {
    for (t, host) in sample {
        let (status, body) = get(addr, host, "/index.html");
        assert_eq!(
            (status, body.as_str()),
            (200, format!("site {}\n", t.name).as_str()),
            "{host}"
        );
    }
    let host = &sample.iter().find(|(t, _)| t.name == symlinked.name).unwrap().1;
    let (status, body) = get(addr, host, "/other.html");
    assert_eq!(
        status,
        403,
        "another owner's file behind {}: {body:?}",
        symlinked.docroot.display()
    );
    let path = format!(" path={}/other.html", symlinked.docroot.display());
    let expected = format!(" expected={} ", symlinked.uid);
    log.wait_for(&["action=deny", &path, &expected], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no denial line for {path} among {:?}", log.lines()));
}

/// What both tests need: the CLI, root, the server program at `server` and the shim; the
/// CLI's and the server's paths (`None` after a `SKIP:`, or a failure under `CI`).
fn prereqs(server: &str, name: &str) -> Option<(PathBuf, PathBuf)> {
    let bin = toctou_guard_tests::artifacts::guard_cli()?;
    if !prereq::root() {
        return None;
    }
    let program = prereq::program(&[server], name)?;
    prereq::file(
        &c_program("libtoctou_guard.so"),
        "the shim (cargo build --release -p toctou-guard-shim)",
    )
    .then_some((bin, program))
}

/// `import SERVER` of `conf` against an empty operator config with the tree's php-fpm pools:
/// it succeeds and its `map` lines are `expected`; its stdout and stderr.
fn imported(bin: &Path, tree: &Tree, server: &str, conf: &Path, expected: &[String]) -> (String, String) {
    let operator = tree.config("toctou-guard.conf", "");
    let fpm = format!("{}/fpm/pool.d", tree.base.display());
    let out = import(bin, server, conf, &operator, &fpm);
    let (got, stderr) = maps(&out);
    assert_eq!(got, expected, "{}", describe(&out));
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// The shim's environment for a server's command, as `nginx::spawn` / `apache::spawn` take it.
type Preload<'a> = &'a dyn Fn(&mut Command) -> toctou_attack::Result<()>;

/// `fragment` passes `check` under a `root` line; the server `start` spawns on a port, guarded
/// by that config, serves the `sample` tenants' sites and refuses another owner's file
/// behind `symlinked`'s document root; then it is stopped.
fn assert_guarded_serving(
    bin: &Path,
    tree: &Tree,
    fragment: &str,
    name: &str,
    start: impl Fn(u16, Preload) -> toctou_attack::Result<ServerProcess>,
    sample: &[&Tenant],
    symlinked: &Tenant,
) {
    let conf = assert_fragment_checks(bin, tree, fragment);
    let log = LogListener::bind(&tree.base.join("log.sock")).expect("log socket");
    let so = c_program("libtoctou_guard.so");
    let preload = |c: &mut Command| {
        set_preload(c, Some((&so, &conf)));
        Ok(())
    };
    let (mut server, addr) = spawn_listening("/", Duration::from_secs(20), |port| start(port, &preload))
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let sample: Vec<(&Tenant, String)> = sample.iter().map(|t| (*t, format!("{}.test", t.name))).collect();
    assert_served(addr, &log, &sample, symlinked);
    server.stop();
}

#[test]
fn import_nginx_maps_a_dozen_vhosts_by_their_php_fpm_pool_users() {
    let Some((bin, ngx)) = prereqs("/usr/sbin/nginx", "nginx") else {
        return;
    };
    let _g = heavy();
    let tree = Tree::new("nginx");
    let b = tree.base.display().to_string();
    // t01-t07, t11, t12 have named users; t10's pool names a uid; t08, t09 none.
    let uid = |i: u32| 42400 + i;
    let named: Vec<(String, u32)> = [1, 2, 3, 4, 5, 6, 7, 11, 12]
        .iter()
        .map(|&i| (format!("tgimp-n{i:02}"), uid(i)))
        .collect();
    let _users = Users::create(&named);
    let t: Vec<Tenant> = (1..=12)
        .map(|i| tree.tenant(&format!("t{i:02}"), uid(i), i == 7))
        .collect();
    let other = t[6].home.join("public_html/other.html");
    file(&other, "t02's\n", uid(2));
    let sites = tree.base.join("nginx/sites");
    mkdir(&sites, 0);
    let dir = tree.base.join("nginx");
    let mut expected = Vec::new();
    for (i, ten) in (1..).zip(&t) {
        let user = format!("tgimp-n{i:02}");
        let pass = match i {
            5 => {
                // `$pool` in listen and user, as php-fpm expands them.
                file(
                    &tree.base.join("fpm/pool.d/t05.conf"),
                    &format!("[{user}]\nuser = $pool\nlisten = {b}/run/$pool.sock\n"),
                    0,
                );
                format!("unix:{}", tree.sock(&user))
            }
            6 => {
                tree.pool("t06", &user, &tree.sock("t06"));
                "pool_t06".to_string()
            }
            8 => String::new(),
            9 => format!("unix:{}", tree.sock("nobody")),
            10 => {
                tree.pool("t10", &uid(10).to_string(), &tree.sock("t10"));
                format!("unix:{}", tree.sock("t10"))
            }
            11 => {
                tree.pool("t11", &user, "19011");
                "127.0.0.1:19011".to_string()
            }
            _ => {
                tree.pool(&ten.name, &user, &tree.sock(&ten.name));
                format!("unix:{}", tree.sock(&ten.name))
            }
        };
        let php = if pass.is_empty() {
            String::new()
        } else {
            format!("    location ~ \\.php$ {{ fastcgi_pass {pass}; }}\n")
        };
        let server = |name: &str| {
            format!(
                "server {{\n    listen 127.0.0.1:@PORT@;\n    server_name {name};\n    root {};\n{php}}}\n",
                ten.docroot.display()
            )
        };
        let mut text = server(&format!("{}.test", ten.name));
        if i == 12 {
            // The same document root under a second name: mapped once.
            text.push_str(&server("alias12.test"));
        }
        fs::write(sites.join(format!("{}.conf", ten.name)), text).unwrap();
        if !matches!(i, 8 | 9) {
            expected.push(format!("map {} {}", ten.docroot.display(), ten.uid));
        }
    }
    let main = |port: u16| {
        let text = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nuser www-data www-data;\npid {b}/nginx/nginx.pid;\n\
             error_log {b}/nginx/error.log warn;\nenv LD_PRELOAD;\nenv TOCTOU_GUARD_CONFIG;\nevents {{ worker_connections 64; }}\n\
             http {{\n    access_log off;\n    default_type text/plain;\n    client_body_temp_path {b}/nginx/body;\n    \
             proxy_temp_path {b}/nginx/proxy;\n    fastcgi_temp_path {b}/nginx/fastcgi;\n    uwsgi_temp_path {b}/nginx/uwsgi;\n    \
             scgi_temp_path {b}/nginx/scgi;\n    upstream pool_t06 {{ server unix:{}; }}\n    include {b}/nginx/sites/*.conf;\n}}\n",
            tree.sock("t06")
        );
        for e in fs::read_dir(&sites).unwrap().flatten() {
            let s = fs::read_to_string(e.path()).unwrap();
            let s = s.lines().map(|l| {
                if l.contains("listen 127.0.0.1:") {
                    format!("    listen 127.0.0.1:{port};")
                } else {
                    l.to_string()
                }
            });
            fs::write(e.path(), s.collect::<Vec<_>>().join("\n") + "\n").unwrap();
        }
        text
    };
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, main(1)).unwrap();
    let (stdout, stderr) = imported(&bin, &tree, "nginx", &conf_path, &expected);
    let f1 = format!("{}/t01.conf", sites.display());
    assert!(
        stdout.contains(&format!(
            "# vhost t01.test ({f1}:1): root {} at {f1}:4; owner from fastcgi_pass unix:{} at {f1}:5 -> php-fpm pool [t01] listen at {b}/fpm/pool.d/t01.conf:4, user tgimp-n01 at {b}/fpm/pool.d/t01.conf:2\n",
            t[0].docroot.display(),
            tree.sock("t01")
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}/public_html is owned by uid {} now, so perhaps:\n# map {}/public_html {}\n",
            t[7].home.display(),
            uid(8),
            t[7].home.display(),
            uid(8)
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "no php-fpm pool listens on unix:{}",
            tree.sock("nobody")
        )),
        "{stdout}"
    );
    assert!(stdout.contains("# (mapped above)\n"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "owner from fastcgi_pass pool_t06 -> upstream server unix:{} at ",
            tree.sock("t06")
        )),
        "{stdout}"
    );
    // The symlinked document root: not under the operator's root, with file and line.
    let f7 = format!("{}/t07.conf", sites.display());
    assert!(
        stderr.contains(&format!(
            "{f7}:4: warning: root {} is not under any root or map",
            t[6].docroot.display()
        )) && stderr.contains(&format!("it resolves to {}/public_html", t[6].home.display())),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("warning:").count(),
        1,
        "only the symlinked root: {stderr}"
    );

    let start = |port, preload: Preload| nginx::spawn(&ngx, &dir, &main(port), preload);
    let sample = [&t[0], &t[6], &t[7], &t[9], &t[11]];
    assert_guarded_serving(&bin, &tree, &stdout, "nginx", start, &sample, &t[6]);
}

#[test]
fn import_apache_maps_a_dozen_vhosts_from_dump_vhosts() {
    let Some((bin, httpd)) = prereqs("/usr/sbin/apache2", "apache2") else {
        return;
    };
    if prereq::program(&["/usr/sbin/apache2ctl"], "apache2ctl").is_none() {
        return;
    }
    let _g = heavy();
    let tree = Tree::new("apache");
    let b = tree.base.display().to_string();
    let uid = |i: u32| 42500 + i;
    let named: Vec<(String, u32)> = [1, 2, 3, 5, 6, 7, 8, 9, 11, 12, 13]
        .iter()
        .map(|&i| (format!("tgimp-a{i:02}"), uid(i)))
        .collect();
    let _users = Users::create(&named);
    let t: Vec<Tenant> = (1..=13)
        .map(|i| tree.tenant(&format!("a{i:02}"), uid(i), i == 9))
        .collect();
    file(&t[8].home.join("public_html/other.html"), "a02's\n", uid(2));
    let dir = tree.base.join("apache");
    for d in ["sites", "extra"] {
        mkdir(&dir.join(d), 0);
    }
    let mut expected = Vec::new();
    for (i, ten) in (1..).zip(&t) {
        let user = format!("tgimp-a{i:02}");
        let suexec = |u: &str| {
            format!("    <IfModule suexec_module>\n        SuexecUserGroup {u} nogroup\n    </IfModule>\n")
        };
        let who = match i {
            4 => suexec(&format!("\"#{}\"", uid(4))),
            5 | 6 => format!(
                "    <IfModule mpm_itk_module>\n        AssignUserID {user} nogroup\n    </IfModule>\n"
            ),
            7 | 8 => {
                tree.pool(&ten.name, &user, &tree.sock(&ten.name));
                format!(
                    "    <FilesMatch \"\\.php$\">\n        SetHandler \"proxy:unix:{}|fcgi://localhost\"\n    </FilesMatch>\n",
                    tree.sock(&ten.name)
                )
            }
            10 => String::new(),
            11 => {
                tree.pool(&ten.name, &user, &tree.sock(&ten.name));
                format!(
                    "    <IfModule proxy_module>\n        ProxyPassMatch \"^/(.*\\.php)$\" \"unix:{}|fcgi://localhost{}/$1\"\n    </IfModule>\n",
                    tree.sock(&ten.name),
                    ten.docroot.display()
                )
            }
            _ => suexec(&user),
        };
        let vhost = format!(
            "<VirtualHost 127.0.0.1:${{TG_PORT}}>\n    ServerName {}.test\n    DocumentRoot \"{}\"\n{who}</VirtualHost>\n",
            ten.name,
            ten.docroot.display()
        );
        let (sub, text) = match i {
            // Reached only through `Include ${TG_EXTRA}/*.conf`, which a file parser cannot expand.
            12 => ("extra", vhost),
            // Apache never loads it: DUMP_VHOSTS does not list it.
            13 => ("sites", format!("<IfDefine TG_NEVER>\n{vhost}</IfDefine>\n")),
            _ => ("sites", vhost),
        };
        fs::write(dir.join(sub).join(format!("{}.conf", ten.name)), text).unwrap();
        if !matches!(i, 10 | 13) {
            expected.push((i, format!("map {} {}", ten.docroot.display(), ten.uid)));
        }
    }
    // Files are read in include order: sites/*.conf, then extra/.
    expected.sort_by_key(|(i, _)| *i == 12);
    let expected: Vec<String> = expected.into_iter().map(|e| e.1).collect();
    let text = |port: u16| {
        format!(
            "ServerRoot \"{b}/apache\"\nServerName 127.0.0.1\nDefine TG_PORT {port}\nDefine TG_EXTRA {b}/apache/extra\n\
             Listen 127.0.0.1:{port}\nPidFile \"{b}/apache/apache.pid\"\nErrorLog \"{b}/apache/error.log\"\nLogLevel warn\n\
             DefaultRuntimeDir \"{b}/apache\"\nMutex file:{b}/apache default\n\
             LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so\n\
             LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so\nUser www-data\nGroup www-data\n\
             <Directory />\n    Options None\n    AllowOverride None\n    Require all denied\n</Directory>\n\
             <Directory \"{b}\">\n    Options FollowSymLinks\n    Require all granted\n</Directory>\n\
             IncludeOptional sites/*.conf\nInclude ${{TG_EXTRA}}/*.conf\n"
        )
    };
    let conf_path = dir.join("apache.conf");
    fs::write(&conf_path, text(1)).unwrap();
    let (stdout, stderr) = imported(&bin, &tree, "apache", &conf_path, &expected);
    assert!(stdout.contains("from `apache2ctl -t -D DUMP_VHOSTS`"), "{stdout}");
    let f = |n: &str| format!("{}/sites/{n}.conf", dir.display());
    for (n, owner) in [
        ("a01", format!("SuexecUserGroup tgimp-a01 at {}:5", f("a01"))),
        ("a04", format!("SuexecUserGroup #{} at {}:5", uid(4), f("a04"))),
        ("a05", format!("AssignUserID tgimp-a05 at {}:5", f("a05"))),
        (
            "a07",
            format!(
                "SetHandler unix:{} at {}:5 -> php-fpm pool [a07] listen at {b}/fpm/pool.d/a07.conf:4, user tgimp-a07",
                tree.sock("a07"),
                f("a07")
            ),
        ),
        (
            "a11",
            format!("ProxyPassMatch unix:{} at {}:5", tree.sock("a11"), f("a11")),
        ),
    ] {
        let i: usize = n[1..].parse().unwrap();
        let want = format!(
            "# vhost {n}.test ({}:1): DocumentRoot {} at {}:3; owner from {owner}",
            f(n),
            t[i - 1].docroot.display(),
            f(n)
        );
        assert!(stdout.contains(&want), "{want}\nnot in\n{stdout}");
    }
    assert!(
        stdout.contains(&format!(
            "# map {}/public_html {}\n",
            t[9].home.display(),
            uid(10)
        )),
        "a10 has no user: commented with its owner: {stdout}"
    );
    assert!(!stdout.contains("a13"), "a vhost Apache does not load: {stdout}");
    assert!(
        stderr.contains(&format!(
            "{}:2: note: this <VirtualHost> is not in apache2ctl",
            f("a13")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:3: warning: DocumentRoot {} is not under any root or map",
            f("a09"),
            t[8].docroot.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("warning:").count(),
        1,
        "only the symlinked root: {stderr}"
    );

    let start = |port, preload: Preload| apache::spawn(&httpd, &dir, &text(port), preload);
    let sample = [&t[0], &t[3], &t[6], &t[8], &t[9], &t[11]];
    assert_guarded_serving(&bin, &tree, &stdout, "apache", start, &sample, &t[8]);
}
