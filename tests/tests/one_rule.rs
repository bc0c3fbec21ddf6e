//! One rule, one loader, one log line: the shim, `toctou-guard explain` and the FUSE daemon,
//! given the same configuration file, answer the same for the same path, refuse the same
//! bad configurations with the same `FILE: reason`, and log denials in one format.
//!
//! Needs root, /dev/fuse and the release build (skipped with `SKIP:` otherwise, a failure
//! when `CI` is set).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use regex::Regex;
use toctou_guard_tests::fuse_tree::{self, ALICE, BOB, Mount, Tree};
use toctou_guard_tests::poll::poll_for;
use toctou_guard_tests::shim_fixture::{SERVER, c_program};
use toctou_guard_tests::{artifacts, prereq};

/// The owner of the `map`ped shop, and an owner no rule expects.
const SHOP: u32 = 43005;
const STRANGER: u32 = 43009;

/// One regular expression for every denial line, the shim's and the daemon's alike.
fn denial_line() -> Regex {
    Regex::new(
        r"^<84>(?P<tag>toctou-guard|toctou-guard-fs)\[(?P<pid>\d+)\]: action=(?P<action>deny|audit) reason=(?P<reason>[a-z-]+) mode=(?P<mode>enforce|audit) uid=(?P<uid>\d+|-) owner=(?P<owner>\d+|-) expected=(?P<expected>\d+|-) suppressed=(?P<suppressed>\d+) comm=(?P<comm>\S*) tenant=(?P<tenant>\S*) path=(?P<path>\S*)$",
    )
    .expect("regex")
}

/// The fields of a denial line that both guards must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    action: String,
    reason: String,
    mode: String,
    owner: String,
    expected: String,
    tenant: String,
    path: String,
}

#[track_caller]
fn parse(re: &Regex, line: &str) -> (String, Fields) {
    let c = re
        .captures(line)
        .unwrap_or_else(|| panic!("not a denial line: {line:?}"));
    let f = |n: &str| c[n].to_string();
    (
        f("tag"),
        Fields {
            action: f("action"),
            reason: f("reason"),
            mode: f("mode"),
            owner: f("owner"),
            expected: f("expected"),
            tenant: f("tenant"),
            path: f("path"),
        },
    )
}

/// Root, /dev/fuse, the daemon, the CLI and the shim, or `None` after a `SKIP:`.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let daemon = fuse_tree::prerequisites()?;
    let cli = artifacts::artifact("toctou-guard", "toctou-guard");
    let shim = artifacts::shim();
    if !prereq::require(
        cli.is_some() && shim.is_some(),
        "toctou-guard and libtoctou_guard.so (cargo build --release --workspace)",
    ) {
        return None;
    }
    Some((daemon, cli?))
}

/// A root-owned 0644 file in the root-owned 0755 `dir`.
fn write_root_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// What `toctou-guard explain` says: its labelled lines.
fn explain(cli: &Path, conf: &Path, path: &Path) -> BTreeMap<String, String> {
    let out = Command::new(cli)
        .arg("explain")
        .arg(path)
        .arg("--config")
        .arg(conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "explain {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// explain's answer in the denial line's terms: `None` for allow.
fn explained(e: &BTreeMap<String, String>) -> Option<(String, String, String)> {
    let decision = &e["decision"];
    if decision == "allow" {
        return None;
    }
    let reason = Regex::new(r"^deny \(([a-z-]+)\)")
        .unwrap()
        .captures(decision)
        .map(|c| c[1].to_string());
    let expected = e
        .get("expected")
        .and_then(|x| x.strip_prefix("uid "))
        .and_then(|x| x.split_whitespace().next())
        .unwrap_or("-")
        .to_string();
    let tenant = e.get("tenant").cloned().unwrap_or_default();
    Some((
        reason.unwrap_or_else(|| panic!("decision {decision:?}")),
        expected,
        tenant,
    ))
}

fn recv_all(sock: &UnixDatagram) -> Vec<String> {
    let mut buf = [0u8; 4096];
    let mut lines = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    lines
}

/// The next line from `sock` within a short deadline (the daemon sends before it answers,
/// the shim before its hook returns).
fn next_line(sock: &UnixDatagram) -> Option<String> {
    poll_for(Duration::from_secs(2), || recv_all(sock).into_iter().next())
}

/// The tree both guards judge: tenants under `SRC/*/pub`, a fixed-owner `map` for `SRC/shop`,
/// ISPConfig-like `SRC/clients/*/*/{web}` (webM is root's: the tenant is `clients/C/W/web`).
fn build(t: &Tree) {
    t.file("alice/pub/index.html", b"alice\n", ALICE);
    t.link("alice/pub/evil", "../../bob/pub/secret", ALICE);
    t.file("alice/pub/rootfile", b"root's\n", 0);
    fs::hard_link(t.src.join("bob/pub/secret"), t.src.join("alice/pub/hard")).unwrap();
    t.file("alice/private.txt", b"outside every root\n", ALICE);
    t.dir("shop", 0);
    t.file("shop/index.html", b"shop\n", SHOP);
    t.file("shop/foreign", b"alice's in the shop\n", ALICE);
    // ISPConfig: webM is root's, only web/ is the site user's: the tenant is marked {web}.
    t.dir("clients/c1/web7", 0);
    t.dir("clients/c1/web7/web", SHOP);
    chown(t.src.join("clients"), Some(0), Some(0)).unwrap();
    chown(t.src.join("clients/c1"), Some(0), Some(0)).unwrap();
    t.file("clients/c1/web7/web/index.php", b"site\n", SHOP);
    t.file("clients/c1/web7/web/alien.php", b"alice's\n", ALICE);
}

const PATHS: &[&str] = &[
    "alice/pub/index.html",
    "alice/pub/evil",
    "alice/pub/rootfile",
    "alice/pub/hard",
    "alice/private.txt",
    "bob/pub/secret",
    "shop/index.html",
    "shop/foreign",
    "clients/c1/web7/web/index.php",
    "clients/c1/web7/web/alien.php",
];

/// For one path: explain's answer, the daemon's (through the mount) and the shim's (`open`
/// of the same path in SOURCE), each as `None` (served) or the denial's fields.
type Answer = Option<(String, String, String)>;

fn fuse_answer(mnt: &Path, rel: &str, sock: &UnixDatagram, re: &Regex) -> Answer {
    match fs::read(mnt.join(rel)) {
        Ok(_) => None,
        Err(e) => {
            assert_eq!(
                e.raw_os_error(),
                Some(libc::EACCES),
                "{rel} through the mount: {e}"
            );
            let line = next_line(sock).unwrap_or_else(|| panic!("{rel}: refused by the daemon, but no line"));
            let (tag, f) = parse(re, &line);
            assert_eq!(tag, "toctou-guard-fs");
            Some((f.reason, f.expected, f.tenant))
        }
    }
}

fn shim_answer(conf: &Path, path: &Path, sock: &UnixDatagram, re: &Regex) -> Answer {
    let out = hooks_as_server(conf, path);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if stdout.starts_with("OK") {
        return None;
    }
    assert_eq!(
        stdout,
        "ERR EACCES",
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let line =
        next_line(sock).unwrap_or_else(|| panic!("{}: refused by the shim, but no line", path.display()));
    let (tag, f) = parse(re, &line);
    assert_eq!(tag, "toctou-guard");
    Some((f.reason, f.expected, f.tenant))
}

fn hooks_as_server(conf: &Path, path: &Path) -> Output {
    use std::os::unix::process::CommandExt;
    Command::new(c_program("hooks"))
        .args([OsStr::new("open"), path.as_os_str()])
        .env("LD_PRELOAD", c_program("libtoctou_guard.so"))
        .env("TOCTOU_GUARD_CONFIG", conf)
        .uid(SERVER)
        .gid(SERVER)
        .output()
        .expect("run hooks")
}

/// Every path of the table: explain, the daemon and the shim give the same decision, and
/// for every refusal the same reason, expected owner and tenant. Then every file the rule
/// allowed is given to a stranger, so that the same three answers are compared on the
/// tenant and expected owner of every guarded path.
#[test]
fn explain_the_daemon_and_the_shim_agree_on_every_path() {
    let Some((daemon, cli)) = tools() else { return };
    let t = Tree::new("onerule");
    build(&t);
    let sock_path = t.base.join("deny.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    fs::set_permissions(&sock_path, fs::Permissions::from_mode(0o777)).unwrap();
    let src = t.src.display();
    let conf = write_root_file(
        &t.base.join("etc"),
        "tg.conf",
        &format!(
            "root {src}/*/pub\nmap {src}/shop {SHOP}\nroot {src}/clients/*/*/{{web}}\nlog_socket {}\nlog_rate 1000\n",
            sock_path.display()
        ),
    );
    // Entries and attributes uncached: the second round sees the changed owners at once.
    let _m = Mount::start(
        &daemon,
        &t,
        &[
            "--config".as_ref(),
            conf.as_os_str(),
            "--entry-ttl-ms".as_ref(),
            "0".as_ref(),
            "--attr-ttl-ms".as_ref(),
            "0".as_ref(),
        ],
    );
    let re = denial_line();

    let mut denials = 0;
    for round in 0..2 {
        for rel in PATHS {
            let e = explain(&cli, &conf, &t.src.join(rel));
            let by_explain = explained(&e);
            let by_fuse = fuse_answer(&t.mnt, rel, &sock, &re);
            let by_shim = shim_answer(&conf, &t.src.join(rel), &sock, &re);
            assert_eq!(
                by_explain, by_fuse,
                "round {round}, {rel}: explain {e:?} vs the daemon"
            );
            assert_eq!(
                by_explain, by_shim,
                "round {round}, {rel}: explain {e:?} vs the shim"
            );
            denials += usize::from(by_explain.is_some());
        }
        // Round two: every file the rule served now belongs to a stranger.
        for rel in PATHS {
            let p = t.src.join(rel);
            if fs::symlink_metadata(&p).unwrap().file_type().is_file() && !rel.ends_with("hard") {
                chown(&p, Some(STRANGER), Some(STRANGER)).unwrap();
            }
        }
    }
    // Sanity: the table covers both answers (and round two refuses every guarded path).
    assert!(denials >= 12, "only {denials} refusals in the table");
    // The marked tenant, not the root-owned webM: the site's own file was served in round 1.
    let site = explain(&cli, &conf, &t.src.join("clients/c1/web7/web/index.php"));
    assert_eq!(site["tenant"], format!("{src}/clients/c1/web7/web"), "{site:?}");
    let outside = explain(&cli, &conf, &t.src.join("alice/private.txt"));
    assert!(outside["root"].starts_with("none"), "{outside:?}");
}

/// The shim, `toctou-guard check` and `toctou-guard-fs --config` refuse the same bad
/// configuration files with the same `FILE: reason`.
#[test]
fn a_bad_config_is_refused_alike_by_all_three() {
    let Some((daemon, cli)) = tools() else { return };
    let t = Tree::new("badconf");
    let dir = t.base.join("etc");
    let good = "root /srv/*/pub\n";
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "fifo",
            {
                let p = dir.join("fifo.conf");
                fs::create_dir_all(&dir).unwrap();
                assert!(
                    Command::new("mkfifo")
                        .arg("-m")
                        .arg("0644")
                        .arg(&p)
                        .status()
                        .unwrap()
                        .success()
                );
                p
            },
            "is not a regular file",
        ),
        (
            "symlink",
            {
                let target = write_root_file(&dir, "real.conf", good);
                let p = dir.join("link.conf");
                std::os::unix::fs::symlink(&target, &p).unwrap();
                p
            },
            "is a symbolic link",
        ),
        (
            "group-writable",
            {
                let p = write_root_file(&dir, "gw.conf", good);
                fs::set_permissions(&p, fs::Permissions::from_mode(0o664)).unwrap();
                p
            },
            "writable by group or others (mode 664)",
        ),
        (
            "too large",
            {
                let p = write_root_file(&dir, "big.conf", good);
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len((16 << 20) + 1)
                    .unwrap();
                p
            },
            "larger than 16 MiB, the limit",
        ),
    ];
    for (what, conf, reason) in cases {
        let want = format!("{}: ", conf.display());
        // The shim: a process that asked to be guarded refuses to start.
        let shim = bounded(
            Command::new("/bin/true")
                .env("LD_PRELOAD", c_program("libtoctou_guard.so"))
                .env("TOCTOU_GUARD_CONFIG", &conf),
        );
        // The operator's check.
        let check = bounded(Command::new(&cli).arg("check").arg(&conf));
        // The daemon, before it mounts anything.
        let fsd = bounded(
            Command::new(&daemon)
                .arg(&t.src)
                .arg(&t.mnt)
                .arg("--config")
                .arg(&conf),
        );
        assert!(!fuse_tree::is_fuse_mount(&t.mnt), "{what}: the daemon mounted");
        for (who, out) in [("shim", &shim), ("check", &check), ("toctou-guard-fs", &fsd)] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{what}, {who}: {stderr}");
            let line = stderr
                .lines()
                .find(|l| l.contains(&want))
                .unwrap_or_else(|| panic!("{what}, {who}: no '{want}' in {stderr:?}"));
            let msg = &line[line.find(&want).unwrap()..];
            assert!(msg.contains(reason), "{what}, {who}: {msg}");
        }
    }
}

/// Run `cmd` with no input, killed after 20 s (a FIFO config must not hang anyone).
fn bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let exited = poll_for(Duration::from_secs(20), || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("{cmd:?} hung: {}", String::from_utf8_lossy(&out.stderr));
    }
    child.wait_with_output().unwrap()
}

/// A denial by the shim and one by the daemon, for the same file under the same config:
/// one regular expression parses both into the same fields (the pid, uid and comm aside).
#[test]
fn both_guards_write_one_line_format() {
    let Some((daemon, _cli)) = tools() else { return };
    let t = Tree::new("oneline");
    // A name a tenant chose, with bytes that must be escaped.
    t.link("alice/pub/a b=c\u{e9}", "../../bob/pub/secret", ALICE);
    let sock_path = t.base.join("deny.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    fs::set_permissions(&sock_path, fs::Permissions::from_mode(0o777)).unwrap();
    let conf = write_root_file(
        &t.base.join("etc"),
        "tg.conf",
        &format!(
            "root {}/*/pub\nlog_socket {}\n",
            t.src.display(),
            sock_path.display()
        ),
    );
    let _m = Mount::start(&daemon, &t, &["--config".as_ref(), conf.as_os_str()]);
    let re = denial_line();
    let name = "alice/pub/a b=c\u{e9}";

    let out = hooks_as_server(&conf, &t.src.join(name));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ERR EACCES");
    let shim_line = next_line(&sock).expect("the shim's line");
    let err = fuse_tree::read_as_server(&t.mnt.join(name)).expect_err("served through the mount");
    assert!(err.contains("Permission denied"), "{err}");
    let fs_line = next_line(&sock).expect("the daemon's line");

    let (shim_tag, shim) = parse(&re, &shim_line);
    let (fs_tag, fsd) = parse(&re, &fs_line);
    assert_eq!(
        (shim_tag.as_str(), fs_tag.as_str()),
        ("toctou-guard", "toctou-guard-fs")
    );
    assert_eq!(shim, fsd, "\n{shim_line}\n{fs_line}");
    let escaped = format!("{}/alice/pub/a\\x20b\\x3dc\\xc3\\xa9", t.src.display());
    assert_eq!(shim.path, escaped);
    assert_eq!((shim.owner, shim.expected), (BOB.to_string(), ALICE.to_string()));
    // Who asked: the shim's helper ran as its server uid, the daemon's caller as its own.
    for (line, uid, comm) in [
        (&shim_line, SERVER, "hooks"),
        (&fs_line, fuse_tree::SERVER, "cat"),
    ] {
        let c = re.captures(line).unwrap();
        assert_eq!(
            (&c["uid"], &c["comm"]),
            (uid.to_string().as_str(), comm),
            "{line}"
        );
    }
}
