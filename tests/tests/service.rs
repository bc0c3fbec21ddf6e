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

use toctou_attack::guardconf::{GuardConfig, LogListener};
use toctou_attack::http::Conn;
use toctou_attack::process::{ServerProcess, free_port, wait_http};
use toctou_attack::targets::{apache, nginx};
use toctou_attack::tenants::mk_dir;
use toctou_attack::{TargetKind, Tenants, Tools};
use toctou_guard_tests::harness::tools_for;
use toctou_guard_tests::shim_fixture::c_program;
use toctou_guard_tests::{describe, heavy, prereq};

fn cli() -> Option<PathBuf> {
    let bin = toctou_guard_tests::artifacts::artifact("toctou-guard", "toctou-guard");
    prereq::require(bin.is_some(), "toctou-guard (cargo build --release --workspace)").then_some(bin?)
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("TOCTOU_GUARD_CONFIG")
        .output()
        .expect("run toctou-guard")
}

/// A root-owned 0755 scratch directory (the config's parents must not be writable by others).
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("service-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    d
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
    let bin = cli()?;
    toctou_guard_tests::shim_fixture::prerequisites()?;
    Some((bin, c_program("libtoctou_guard.so")))
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
    let d = scratch("enable");
    let conf = write_conf(&d, "mode audit\nroot /home/*/public_html\n");
    let root = d.join("root");
    fs::create_dir(&root).unwrap();
    let (conf_s, so_s, root_s) = (
        conf.to_str().unwrap(),
        so.to_str().unwrap(),
        root.to_str().unwrap(),
    );
    let out = run(
        &bin,
        &[
            "enable",
            "nginx",
            "--root",
            root_s,
            "--config",
            conf_s,
            "--library",
            so_s,
        ],
    );
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
    let d = scratch("refuse");
    let conf = write_conf(&d, "root /home/*/public_html\nmap /srv/shop alice\n");
    let root = d.join("root");
    fs::create_dir(&root).unwrap();
    let (conf_s, so_s, root_s) = (
        conf.to_str().unwrap(),
        so.to_str().unwrap(),
        root.to_str().unwrap(),
    );
    let out = run(
        &bin,
        &[
            "enable",
            "nginx",
            "--root",
            root_s,
            "--config",
            conf_s,
            "--library",
            so_s,
        ],
    );
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
    let out = run(
        &bin,
        &[
            "enable",
            "nginx",
            "--root",
            root_s,
            "--config",
            good.to_str().unwrap(),
            "--library",
            so_s,
        ],
    );
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
    let missing = d.join("no-such.so");
    let out = run(
        &bin,
        &[
            "enable",
            "nginx",
            "--root",
            root_s,
            "--config",
            good.to_str().unwrap(),
            "--library",
            missing.to_str().unwrap(),
        ],
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
    let d = scratch("verify");
    let conf = write_conf(&d, "root /home/*/public_html\n");
    let root = d.join("root");
    fs::create_dir(&root).unwrap();
    for service in ["nginx", "apache2", "php8.2-fpm"] {
        let unit = format!("/lib/systemd/system/{service}.service");
        if !prereq::file(Path::new(&unit), &format!("{service}'s unit file")) {
            return;
        }
        let out = run(
            &bin,
            &[
                "enable",
                service,
                "--root",
                root.to_str().unwrap(),
                "--config",
                conf.to_str().unwrap(),
                "--library",
                so.to_str().unwrap(),
            ],
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
        let bin = cli()?;
        let tenants = Tenants::create(&Default::default()).expect("tenants");
        let log = LogListener::bind(&tenants.run.join("log.sock")).expect("log socket");
        let gc = GuardConfig {
            root: tenants.root_pattern(),
            owner_euid: false,
            allow_root: true,
            audit: false,
            log_socket: log.path.clone(),
            log_rate: 1000,
        };
        let conf = gc.write(&tenants.run, "guard.conf").expect("config");
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
        let out = run(
            &self.bin,
            &[
                "enable",
                service,
                "--root",
                root.to_str().unwrap(),
                "--config",
                conf.to_str().unwrap(),
                "--library",
                so.to_str().unwrap(),
            ],
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

/// The table rows of `status`: (pid, role, user, guarded, mode, denials, config...).
fn rows(out: &Output) -> Vec<Vec<String>> {
    stdout(out)
        .lines()
        .skip(1)
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && !l.contains(" of "))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn assert_guarded(s: &Servers, server: &str, program: &str) {
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
            (r[4].as_str(), r[5].as_str(), r[6].as_str(), r[8].as_str()),
            (program, "yes", "enforce", conf.as_str()),
            "{}",
            stdout(&out)
        );
    }
    assert!(
        workers
            .iter()
            .all(|w| w[3] == "www-data" && w[1] == p.pid().to_string()),
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
            r[7],
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
    assert!(
        json.contains(&format!("\"guarded\":{n},\"total\":{n},")),
        "{json}"
    );
    assert!(
        json.contains(&format!("\"config\":\"{conf}\",\"mode\":\"enforce\"")),
        "{json}"
    );
}

#[test]
fn status_reports_guarded_nginx_workers_with_their_config_and_denials() {
    let Some(s) = Servers::new(&[TargetKind::NginxShim]) else {
        return;
    };
    let _g = heavy();
    assert_guarded(&s, "nginx", "nginx");
}

#[test]
fn status_reports_guarded_apache_workers_with_their_config_and_denials() {
    let Some(s) = Servers::new(&[TargetKind::ApacheShim]) else {
        return;
    };
    let _g = heavy();
    assert_guarded(&s, "apache", "apache2");
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
        assert_eq!(r[5], "NO", "{}", stdout(&out));
    }
    let text = stdout(&out);
    assert!(text.contains("[UNGUARDED: library not mapped]"), "{text}");
    assert!(
        text.contains(&format!("0 of {} server processes guarded", rows.len())),
        "{text}"
    );
    let json = stdout(&s.status(p.pid(), true));
    assert!(
        json.contains("\"guarded\":false,\"unguarded_because\":\"library not mapped\",\"library\":null"),
        "{json}"
    );
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
    assert!(rows.iter().all(|r| r[5] == "NO"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(
            "[UNGUARDED: library mapped, no config announced: its `programs` line leaves this program out"
        ),
        "{}",
        stdout(&out)
    );
}
