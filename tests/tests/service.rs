//! `toctou-guard enable` / `disable` / `status` as an operator runs them (issue 14, item 2).
//!
//! `enable`/`disable` write under `--root` (never the host's /etc) and, systemd not being
//! PID 1 here, verify the real unit files of nginx, Apache and php-fpm with the drop-in.
//! `status` is pointed at real nginx and Apache servers this test starts on 127.0.0.1 with
//! exactly the environment the generated drop-in sets (and at an nginx without it).
//!
//! Needs root, the release build (`toctou-guard`, the shim), nginx and apache2; a missing
//! prerequisite prints `SKIP:` locally and fails when `CI` is set.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use toctou_attack::guardconf::LogListener;
use toctou_attack::http::Conn;
use toctou_attack::process::{ServerProcess, free_port, wait_http};
use toctou_attack::targets::{apache, nginx};
use toctou_attack::tenants::mk_dir;
use toctou_attack::{TargetKind, Tenants, Tools};
use toctou_guard_tests::harness::tools_for;
use toctou_guard_tests::shim_fixture::c_program;
use toctou_guard_tests::{describe, heavy, prereq};

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("TOCTOU_GUARD_CONFIG")
        .output()
        .expect("run toctou-guard")
}

/// A root-owned 0755 scratch directory (the config's parents must not be writable by others).
/// A fresh world-readable scratch directory, its `guard.conf` holding `conf_text`, and an
/// empty `root/` in it for `--root`.
fn scratch(name: &str, conf_text: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("service-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = write_conf(&d, conf_text);
    let root = d.join("root");
    fs::create_dir(&root).unwrap();
    (d, conf, root)
}

fn write_conf(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("guard.conf");
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// Every file and directory under `dir`, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The prerequisites of the enable tests: root, the CLI, and the world-readable shim copy.
fn enable_prereqs() -> Option<(PathBuf, PathBuf)> {
    if !prereq::root() {
        return None;
    }
    let bin = toctou_guard_tests::artifacts::guard_cli()?;
    toctou_guard_tests::shim_fixture::prerequisites()?;
    Some((bin, c_program("libtoctou_guard.so")))
}

/// `enable SERVICE --root ROOT --config CONF --library SO`.
fn enable(bin: &Path, service: &str, root: &str, conf: &str, so: &str) -> Output {
    run(
        bin,
        &[
            "enable",
            service,
            "--root",
            root,
            "--config",
            conf,
            "--library",
            so,
        ],
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn enable_and_disable_with_root_write_and_remove_exactly_the_dropin() {
    let Some((bin, so)) = enable_prereqs() else { return };
    if !prereq::file(
        Path::new("/lib/systemd/system/nginx.service"),
        "nginx's unit file",
    ) {
        return;
    }
    let (_, conf, root) = scratch("enable", "mode audit\nroot /home/*/public_html\n");
    let (conf_s, so_s, root_s) = (
        conf.to_str().unwrap(),
        so.to_str().unwrap(),
        root.to_str().unwrap(),
    );
    let out = enable(&bin, "nginx", root_s, conf_s, so_s);
    assert!(out.status.success(), "{}", describe(&out));
    let dropin = "etc/systemd/system/nginx.service.d/toctou-guard.conf";
    assert_eq!(
        tree(&root),
        [
            "etc",
            "etc/systemd",
            "etc/systemd/system",
            "etc/systemd/system/nginx.service.d",
            dropin
        ]
    );
    let text = fs::read_to_string(root.join(dropin)).unwrap();
    let env: Vec<&str> = text.lines().filter(|l| l.starts_with("Environment=")).collect();
    assert_eq!(
        env,
        [
            format!("Environment=LD_PRELOAD={so_s}"),
            format!("Environment=TOCTOU_GUARD_CONFIG={conf_s}")
        ]
    );
    assert!(text.lines().any(|l| l == "[Service]"), "{text}");
    let mode = fs::metadata(root.join(dropin)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
    let s = stdout(&out);
    assert!(s.contains("systemd is not running"), "{s}");
    assert!(
        s.contains("systemd-analyze verify /lib/systemd/system/nginx.service with the drop-in: ok"),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "start nginx with this environment: LD_PRELOAD={so_s} TOCTOU_GUARD_CONFIG={conf_s}"
        )),
        "{s}"
    );

    let out = run(&bin, &["disable", "nginx", "--root", root_s]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains(&format!("{}: removed", root.join(dropin).display())));
    // The emptied SERVICE.service.d goes too; the directories above it are not ours to judge.
    assert_eq!(tree(&root), ["etc", "etc/systemd", "etc/systemd/system"]);
    let out = run(&bin, &["disable", "nginx", "--root", root_s]);
    assert!(
        out.status.success() && stdout(&out).contains("not installed"),
        "{}",
        describe(&out)
    );
}

#[test]
fn enable_refuses_a_bad_config_or_service_and_writes_nothing() {
    let Some((bin, so)) = enable_prereqs() else { return };
    let (d, conf, root) = scratch("refuse", "root /home/*/public_html\nmap /srv/shop alice\n");
    let (conf_s, so_s, root_s) = (
        conf.to_str().unwrap(),
        so.to_str().unwrap(),
        root.to_str().unwrap(),
    );
    let out = enable(&bin, "nginx", root_s, conf_s, so_s);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{conf_s}:2: 'map': a UID is not numeric"))
            && stderr.contains("  2 | map /srv/shop alice"),
        "{stderr}"
    );
    assert!(tree(&root).is_empty(), "{:?}", tree(&root));

    // A config others may write would let a tenant switch the guard off: refused too.
    let good = write_conf(&d, "root /home/*/public_html\n");
    fs::set_permissions(&good, fs::Permissions::from_mode(0o666)).unwrap();
    let out = enable(&bin, "nginx", root_s, good.to_str().unwrap(), so_s);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(good.to_str().unwrap()));
    fs::set_permissions(&good, fs::Permissions::from_mode(0o644)).unwrap();
    // Not a server's service, a missing library: refused before anything is written.
    let out = run(
        &bin,
        &[
            "enable",
            "sshd",
            "--root",
            root_s,
            "--config",
            good.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'sshd': not a web server or php-fpm service"));
    // Names that would put the drop-in elsewhere (../../, a hidden or odd file): refused.
    for bad in [
        "../../../tmp/php-fpm",
        "..php-fpm",
        "php-fpm\nx",
        ".php-fpm",
        "nginx/.",
    ] {
        let out = enable(&bin, bad, root_s, good.to_str().unwrap(), so_s);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not a web server or php-fpm service"),
            "{bad:?}: {}",
            describe(&out)
        );
    }
    let missing = d.join("no-such.so");
    let out = enable(
        &bin,
        "nginx",
        root_s,
        good.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{}: no such library", missing.display()))
    );
    assert!(tree(&root).is_empty(), "{:?}", tree(&root));
}

#[test]
fn generated_dropins_pass_systemd_analyze_verify_with_the_real_units() {
    let Some((bin, so)) = enable_prereqs() else { return };
    if prereq::program(&["/usr/bin/systemd-analyze"], "systemd-analyze").is_none() {
        return;
    }
    let (_, conf, root) = scratch("verify", "root /home/*/public_html\n");
    for service in ["nginx", "apache2", "php8.2-fpm"] {
        let unit = format!("/lib/systemd/system/{service}.service");
        if !prereq::file(Path::new(&unit), &format!("{service}'s unit file")) {
            return;
        }
        let out = enable(
            &bin,
            service,
            root.to_str().unwrap(),
            conf.to_str().unwrap(),
            so.to_str().unwrap(),
        );
        assert!(out.status.success(), "{service}: {}", describe(&out));
        assert!(
            stdout(&out).contains(&format!("systemd-analyze verify {unit} with the drop-in: ok")),
            "{service}: {}",
            describe(&out)
        );
    }
}

/// Two tenants, a log socket, a config with `log_socket` on it, and a hard link (made by
/// root) in the attacker's docroot to the victim's secret: one denial to count, which
/// Apache's `SymLinksIfOwnerMatch` does not refuse before the shim sees it.
struct Servers {
    tools: Tools,
    tenants: Tenants,
    log: LogListener,
    conf: PathBuf,
    link: PathBuf,
    bin: PathBuf,
}

impl Servers {
    fn new(kinds: &[TargetKind]) -> Option<Servers> {
        let tools = tools_for(kinds)?;
        let bin = toctou_guard_tests::artifacts::guard_cli()?;
        let tenants = Tenants::create(&Default::default()).expect("tenants");
        let log = LogListener::bind(&tenants.run.join("log.sock")).expect("log socket");
        let conf = toctou_guard_tests::harness::enforcing_config(&tenants, &log);
        let link = tenants.attacker.docroot.join("status-hard.txt");
        fs::hard_link(&tenants.secret, &link).expect("hard link");
        Some(Servers {
            tools,
            tenants,
            log,
            conf,
            link,
            bin,
        })
    }

    /// The environment `enable SERVICE` puts in its drop-in (read back from the file).
    fn dropin_env(&self, service: &str, conf: &Path) -> Vec<(String, String)> {
        let root = self.tenants.run.join(format!(
            "root-{service}-{}",
            conf.file_name().unwrap().to_string_lossy()
        ));
        mk_dir(&root, 0, 0, 0o755).expect("root");
        let so = c_program("libtoctou_guard.so");
        let out = enable(
            &self.bin,
            service,
            root.to_str().unwrap(),
            conf.to_str().unwrap(),
            so.to_str().unwrap(),
        );
        assert!(out.status.success(), "{}", describe(&out));
        let text = fs::read_to_string(root.join(format!(
            "etc/systemd/system/{service}.service.d/toctou-guard.conf"
        )))
        .unwrap();
        let env: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Environment="))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(env.len(), 2, "{text}");
        env
    }

    fn url(&self, file: &Path) -> String {
        format!("/{}", file.strip_prefix(&self.tenants.www).unwrap().display())
    }

    /// `server` answering on `port`; with `env` (the drop-in's) or without the library.
    fn start(&self, server: &str, env: Option<Vec<(String, String)>>) -> (ServerProcess, u16) {
        let port = free_port().expect("port");
        let dir = self.tenants.run.join(format!("{server}-{port}"));
        mk_dir(&dir, 0, 0, 0o755).expect("dir");
        let set_env = |cmd: &mut Command| {
            cmd.env_remove("LD_PRELOAD").env_remove("TOCTOU_GUARD_CONFIG");
            for (k, v) in env.iter().flatten() {
                cmd.env(k, v);
            }
            Ok(())
        };
        let mut p = if server == "nginx" {
            let text = nginx::config(&self.tenants.www, port, &dir, "off", "");
            nginx::spawn(self.tools.nginx.as_ref().unwrap(), &dir, &text, set_env).expect("nginx")
        } else {
            let text = apache::config(&self.tenants.www, port, &dir);
            apache::spawn(self.tools.apache.as_ref().unwrap(), &dir, &text, set_env).expect("apache2")
        };
        let addr = ([127, 0, 0, 1], port).into();
        let own = self.tenants.attacker.docroot.join("tg-legit/index.html");
        wait_http(addr, &self.url(&own), &mut [&mut p], Duration::from_secs(20)).expect("server up");
        (p, port)
    }

    fn get_status(&self, port: u16, file: &Path) -> u16 {
        Conn::new(([127, 0, 0, 1], port).into(), Duration::from_secs(10))
            .get(&self.url(file))
            .expect("GET")
            .status
    }

    /// `status --log FILE --pid PID` over the lines the log socket received.
    fn status(&self, pid: u32, json: bool) -> Output {
        let log = self.tenants.run.join("auth.log");
        fs::write(&log, self.log.lines().join("\n")).unwrap();
        let pid = pid.to_string();
        let mut args = vec!["status", "--log", log.to_str().unwrap(), "--pid", &pid];
        if json {
            args.push("--json");
        }
        run(&self.bin, &args)
    }
}

/// The table rows of `status`: (pid, ppid, role, user, uid, program, guarded, mode, denials,
/// exe, config...).
fn rows(out: &Output) -> Vec<Vec<String>> {
    stdout(out)
        .lines()
        .skip(1)
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && !l.contains(" of "))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// `status` on a `server` started with the drop-in's environment: every process guarded,
/// with its config, and the one denial counted for the worker that logged it.
fn assert_guarded(kind: TargetKind, server: &str, program: &str) {
    let Some(s) = Servers::new(&[kind]) else {
        return;
    };
    let _g = heavy();
    let env = s.dropin_env(if server == "nginx" { "nginx" } else { "apache2" }, &s.conf);
    let (p, port) = s.start(server, Some(env));
    assert_eq!(
        s.get_status(port, &s.link),
        403,
        "{server}: the hard link to the victim's secret"
    );
    let denial = "action=deny reason=owner-mismatch mode=enforce";
    let line = s
        .log
        .wait_for(
            &[denial, &format!(" path={}", s.link.display())],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no denial line among {:?}", s.log.lines()));
    let out = s.status(p.pid(), false);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let rows = rows(&out);
    let conf = s.conf.display().to_string();
    let master: Vec<&Vec<String>> = rows.iter().filter(|r| r[2] == "master").collect();
    let workers: Vec<&Vec<String>> = rows.iter().filter(|r| r[2] == "worker").collect();
    assert_eq!(master.len(), 1, "{}", stdout(&out));
    assert_eq!(master[0][0], p.pid().to_string(), "{}", stdout(&out));
    assert!(!workers.is_empty(), "{}", stdout(&out));
    for r in &rows {
        assert_eq!(
            (r[5].as_str(), r[6].as_str(), r[7].as_str(), r[10].as_str()),
            (program, "yes", "enforce", conf.as_str()),
            "{}",
            stdout(&out)
        );
        assert!(
            r[9].ends_with(&format!("/{program}")),
            "the executable: {}",
            stdout(&out)
        );
    }
    assert!(
        workers
            .iter()
            .all(|w| w[3] == "www-data" && w[4] == "33" && w[1] == p.pid().to_string()),
        "{}",
        stdout(&out)
    );
    // The denial is counted for the worker that logged it, and only there.
    let logger: String = line
        .split("toctou-guard[")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .to_string();
    for r in &rows {
        let expect = if r[0] == logger { "1" } else { "0" };
        assert_eq!(
            r[8],
            expect,
            "pid {} (the denial came from {logger}): {}",
            r[0],
            stdout(&out)
        );
    }
    let n = rows.len();
    assert!(
        stdout(&out).contains(&format!("{n} of {n} server processes guarded")),
        "{}",
        stdout(&out)
    );
    let json = stdout(&s.status(p.pid(), true));
    let v: serde_json::Value = serde_json::from_str(&json).expect(&json);
    assert_eq!(
        (v["guarded"].as_u64(), v["total"].as_u64()),
        (Some(n as u64), Some(n as u64)),
        "{json}"
    );
    for p in v["processes"].as_array().expect(&json) {
        assert_eq!(
            (p["config"].as_str(), p["mode"].as_str()),
            (Some(conf.as_str()), Some("enforce")),
            "{json}"
        );
    }
}

#[test]
fn status_reports_guarded_nginx_workers_with_their_config_and_denials() {
    assert_guarded(TargetKind::NginxShim, "nginx", "nginx");
}

#[test]
fn status_reports_guarded_apache_workers_with_their_config_and_denials() {
    assert_guarded(TargetKind::ApacheShim, "apache", "apache2");
}

#[test]
fn status_reports_an_nginx_without_the_library_unguarded_and_exits_1() {
    let Some(s) = Servers::new(&[TargetKind::NginxShim]) else {
        return;
    };
    let _g = heavy();
    let (p, port) = s.start("nginx", None);
    // Bare nginx serves the hard link: what an unguarded worker means.
    assert_eq!(s.get_status(port, &s.link), 200);
    let out = s.status(p.pid(), false);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let rows = rows(&out);
    assert!(rows.len() >= 2, "a master and its workers: {}", stdout(&out));
    for r in &rows {
        assert_eq!(r[6], "NO", "{}", stdout(&out));
    }
    let text = stdout(&out);
    assert!(text.contains("[UNGUARDED: library not mapped]"), "{text}");
    assert!(
        text.contains(&format!("0 of {} server processes guarded", rows.len())),
        "{text}"
    );
    let json = stdout(&s.status(p.pid(), true));
    let v: serde_json::Value = serde_json::from_str(&json).expect(&json);
    for p in v["processes"].as_array().expect(&json) {
        assert_eq!(
            (&p["guarded"], p["unguarded_because"].as_str(), &p["library"]),
            (
                &serde_json::Value::Bool(false),
                Some("library not mapped"),
                &serde_json::Value::Null
            ),
            "{json}"
        );
    }
}

#[test]
fn status_reports_a_library_its_config_leaves_out_as_unguarded() {
    let Some(s) = Servers::new(&[TargetKind::NginxShim]) else {
        return;
    };
    let _g = heavy();
    // `programs` (for /etc/ld.so.preload) that leaves nginx out: mapped, but not guarding.
    let text = fs::read_to_string(&s.conf).unwrap() + "programs php-fpm*\n";
    let conf = s.tenants.run.join("php-only.conf");
    fs::write(&conf, text).unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).unwrap();
    let env = s.dropin_env("nginx", &conf);
    let (p, port) = s.start("nginx", Some(env));
    assert_eq!(
        s.get_status(port, &s.link),
        200,
        "nginx left out serves the hard link"
    );
    let out = s.status(p.pid(), false);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let rows = rows(&out);
    assert!(rows.len() >= 2, "{}", stdout(&out));
    assert!(rows.iter().all(|r| r[6] == "NO"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(
            "[UNGUARDED: library mapped, no config announced: its `programs` line leaves this program out"
        ),
        "{}",
        stdout(&out)
    );
}

/// Kills the child processes it holds, then removes their directory, when the test ends,
/// pass or fail.
struct Children(Vec<std::process::Child>, PathBuf);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.1);
    }
}

/// A tenant with a shell can run processes named like a server: a copy of a binary called
/// `nginx` (its own file), a symlink `php-fpm8.2` to a system binary (`comm` says php-fpm8.2,
/// the executable is `sleep`), a root-owned server binary started by itself. None is a server
/// the guard is for, so none may make `status` report an unguarded server (exit 1); the
/// first and the third are listed as ignored with their uid and executable.
#[test]
fn status_ignores_a_tenant_process_named_like_a_server() {
    use std::os::unix::process::CommandExt;
    if !prereq::root() {
        return;
    }
    let Some(bin) = toctou_guard_tests::artifacts::guard_cli() else {
        return;
    };
    const TENANT: u32 = 42331;
    // Outside the checkout (a private directory in CI): the tenant runs programs from here.
    let d = std::env::temp_dir().join(format!("tg-fake-servers-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    let sleep = PathBuf::from("/bin/sleep");
    let own = d.join("own");
    fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(TENANT), Some(TENANT)).unwrap();
    let copy = own.join("nginx");
    fs::copy(&sleep, &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(TENANT), Some(TENANT)).unwrap();
    let link = own.join("php-fpm8.2");
    std::os::unix::fs::symlink(&sleep, &link).unwrap();
    let root_copy = d.join("apache2");
    fs::copy(&sleep, &root_copy).unwrap();
    fs::set_permissions(&root_copy, fs::Permissions::from_mode(0o755)).unwrap();
    let mut kids = Children(Vec::new(), d.clone());
    for exe in [&copy, &link, &root_copy] {
        let child = Command::new(exe)
            .arg("60")
            .env_clear()
            .uid(TENANT)
            .gid(TENANT)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        kids.0.push(child);
    }
    // Each has exec'd once /proc/PID/exe is the binary, not this test.
    let me = fs::read_link("/proc/self/exe").unwrap();
    for c in &kids.0 {
        toctou_guard_tests::poll::wait_until(
            &format!("pid {} to exec", c.id()),
            Duration::from_secs(5),
            || fs::read_link(format!("/proc/{}/exe", c.id())).is_ok_and(|e| e != me),
        );
    }
    let pids: Vec<String> = kids.0.iter().map(|c| c.id().to_string()).collect();
    let log = d.join("auth.log");
    fs::write(&log, "").unwrap();
    let mut args = vec!["status", "--log", log.to_str().unwrap()];
    for p in &pids {
        args.extend(["--pid", p.as_str()]);
    }
    let out = run(&bin, &args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(rows(&out).is_empty(), "{text}");
    assert!(text.contains("0 of 0 server processes guarded"), "{text}");
    let ignored = |pid: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("ignored: pid {pid} ")))
    };
    let l = ignored(&pids[0]).unwrap_or_else(|| panic!("the tenant's copy: {text}"));
    assert!(
        l.contains(&format!("uid {TENANT}"))
            && l.contains(&format!("exe {}", copy.display()))
            && l.contains("not a system binary"),
        "{l}"
    );
    assert!(
        ignored(&pids[1]).is_none(),
        "the symlink runs sleep, not a server: {text}"
    );
    let l = ignored(&pids[2]).unwrap_or_else(|| panic!("the root-owned binary: {text}"));
    assert!(
        l.contains(&format!("exe {}", root_copy.display()))
            && l.contains("started by uid 42331, not by root or a server"),
        "{l}"
    );
    let json = stdout(&run(&bin, &[&args[..], &["--json"]].concat()));
    let v: serde_json::Value = serde_json::from_str(&json).expect(&json);
    assert_eq!(
        (v["total"].as_u64(), v["ignored"].as_array().map(Vec::len)),
        (Some(0), Some(2)),
        "{json}"
    );
}
