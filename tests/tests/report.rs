//! `toctou-guard report` on denial lines real guarded servers wrote in this run: nginx and
//! Apache with the shim, refusing other tenants' files (symlink, hard link) and a tenant
//! directory that is a symlink. The lines arrive on the test's syslog socket and are written
//! out as a syslog daemon would (`auth.log` with traditional and RFC 3339 stamps, and
//! journald's `journalctl -o json`), between lines that are not ours and one of ours that is
//! broken; `report` must count each tenant, reason, path and process exactly.
//!
//! Needs root, nginx, apache2 and the shim (`SKIP:` locally, a failure when `CI` is set).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use toctou_attack::guardconf::LogListener;
use toctou_attack::http::Conn;
use toctou_attack::target::{StartEnv, start};
use toctou_attack::tenants::{mk_dir, mk_symlink};
use toctou_attack::{TargetKind, Tenants};
use toctou_guard_tests::harness::tools_for;
use toctou_guard_tests::{describe, heavy, poll};

/// What the servers were made to deny, and the lines they sent.
struct Run {
    tenants: Tenants,
    /// Datagrams from nginx's workers and from Apache's, as received (`<84>toctou-guard[PID]: ...`).
    nginx_lines: Vec<String>,
    apache_lines: Vec<String>,
    attacker: String,
    victim: String,
    ghost: String,
    link: String,
    hard: String,
    victim_link: String,
    ghost_secret: String,
}

/// nginx+shim: the attacker's symlink to the victim's secret 3 times, its hard link twice,
/// the victim's symlink to an attacker file once, the secret through `www/ghost` (a symlink
/// to the victim's tenant directory) twice; Apache+shim: the hard link twice. Every one
/// answers 403 and sends one denial line.
fn produce() -> Option<Run> {
    let tools = tools_for(&[TargetKind::NginxShim, TargetKind::ApacheShim])?;
    let _g = heavy();
    let tenants = Tenants::create(&Default::default()).expect("tenants");
    let log = LogListener::bind(&tenants.run.join("log.sock")).expect("log socket");
    let conf = toctou_guard_tests::harness::enforcing_config(&tenants, &log);
    let (a, v) = (&tenants.attacker, &tenants.victim);
    let link = a.add_symlink("evil-link.txt", &tenants.secret).expect("symlink");
    let hard = a.docroot.join("evil-hard.txt");
    fs::hard_link(&tenants.secret, &hard).expect("hard link");
    let mine = a.add_file("mine.txt", b"attacker's\n").expect("file");
    let victim_link = v.add_symlink("to-attacker.txt", &mine).expect("symlink");
    let ghost = tenants.www.join("ghost");
    mk_symlink(&v.home, &ghost, 0, 0).expect("ghost tenant");
    let ghost_secret = ghost.join(tenants.secret.strip_prefix(&v.home).unwrap());
    let env = StartEnv {
        tenants: &tenants,
        tools: &tools,
        guard_config: &conf,
    };
    let mut lines = Vec::new();
    let mut sent = 0;
    for (kind, asks) in [
        (
            TargetKind::NginxShim,
            vec![(&link, 3), (&hard, 2), (&victim_link, 1), (&ghost_secret, 2)],
        ),
        (TargetKind::ApacheShim, vec![(&hard, 2)]),
    ] {
        let t = start(kind, &env).unwrap_or_else(|e| panic!("start {}: {e}", kind.name()));
        log.clear();
        for (file, n) in asks {
            for _ in 0..n {
                let url = t.url(file).expect("url");
                let r = Conn::new(t.addr(), Duration::from_secs(10))
                    .get(&url)
                    .unwrap_or_else(|e| panic!("GET {url}: {e}"));
                assert_eq!(r.status, 403, "{} {url}", kind.name());
                sent += 1;
            }
        }
        let n = sent - lines.iter().map(Vec::len).sum::<usize>();
        let got = poll::wait_for(
            &format!("{n} denial lines from {}", kind.name()),
            Duration::from_secs(10),
            || {
                let l = log.lines();
                (l.len() >= n).then_some(l)
            },
        );
        assert_eq!(got.len(), n, "one line per refused request: {got:#?}");
        lines.push(got);
    }
    let show = |p: &Path| p.display().to_string();
    Some(Run {
        attacker: show(&a.home),
        victim: show(&v.home),
        ghost: show(&ghost),
        link: show(&link),
        hard: show(&hard),
        victim_link: show(&victim_link),
        ghost_secret: show(&ghost_secret),
        apache_lines: lines.pop().unwrap(),
        nginx_lines: lines.pop().unwrap(),
        tenants,
    })
}

fn date(fmt: &str) -> String {
    let out = Command::new("date").args(["-u", fmt]).output().expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `<84>TAG[PID]: BODY` → `(TAG, PID, BODY)`.
fn split(datagram: &str) -> (&str, &str, &str) {
    let rest = datagram.split_once('>').unwrap().1;
    let (tag, rest) = rest.split_once('[').unwrap();
    let (pid, body) = rest.split_once("]: ").unwrap();
    (tag, pid, body)
}

fn report(bin: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin)
        .arg("report")
        .args(args)
        .output()
        .expect("run report");
    assert!(out.status.success(), "{}", describe(&out));
    out
}

/// The JSON report's row of `list` whose `key` is `value`.
fn row<'a>(j: &'a Value, list: &str, key: &str, value: &str) -> &'a Value {
    j[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no {list} row {key}={value} in {j:#}"))
}

/// The counts every source of this run's lines must give.
fn assert_counts(j: &Value, run: &Run) {
    assert_eq!(j["count"], 10, "{j:#}");
    assert_eq!((j["deny"].as_u64(), j["audit"].as_u64()), (Some(10), Some(0)));
    assert_eq!(row(j, "by_tenant", "tenant", &run.attacker)["count"], 7);
    assert_eq!(row(j, "by_tenant", "tenant", &run.victim)["count"], 1);
    assert_eq!(row(j, "by_tenant", "tenant", &run.ghost)["count"], 2);
    assert_eq!(j["by_tenant"].as_array().unwrap().len(), 3);
    assert_eq!(row(j, "by_reason", "reason", "owner-mismatch")["count"], 8);
    assert_eq!(row(j, "by_reason", "reason", "tenant-is-symlink")["count"], 2);
    for (path, n) in [
        (&run.link, 3),
        (&run.hard, 4),
        (&run.victim_link, 1),
        (&run.ghost_secret, 2),
    ] {
        assert_eq!(row(j, "by_path", "path", path)["count"], n, "{path}");
    }
    // The workers run as www-data, under their own names.
    let uid = toctou_attack::targets::server_user().0;
    let procs = j["by_process"].as_array().unwrap();
    let nginx = procs.iter().find(|p| p["comm"] == "nginx").expect("nginx row");
    assert_eq!(
        (nginx["count"].as_u64(), nginx["uid"].as_u64()),
        (Some(8), Some(u64::from(uid)))
    );
    let apache = procs
        .iter()
        .find(|p| p["comm"] == "apache2")
        .expect("apache2 row");
    assert_eq!(apache["count"], 2);
    // The pids of the workers that sent the lines (journald's `_PID`, syslog's `[PID]`).
    let pids = |lines: &[String]| {
        let mut p: Vec<&str> = lines.iter().map(|l| split(l).1).collect();
        p.sort();
        p.dedup();
        p.len()
    };
    assert_eq!(nginx["pids"], pids(&run.nginx_lines));
    assert_eq!(apache["pids"], pids(&run.apache_lines));
    let hours: u64 = j["per_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hours, 10, "every line is dated");
    assert!(j["first_seen"].is_string() && j["last_seen"].is_string(), "{j:#}");
}

#[test]
fn report_counts_what_real_servers_denied_from_auth_log_files() {
    let Some(bin) = toctou_guard_tests::artifacts::guard_cli() else {
        return;
    };
    let Some(run) = produce() else { return };
    let dir = run.tenants.run.join("report");
    fs::create_dir_all(&dir).unwrap();
    // rsyslog's two file formats: traditional stamps for nginx's lines, RFC 3339 for Apache's.
    let (trad, iso) = (date("+%b %e %H:%M:%S"), date("+%Y-%m-%dT%H:%M:%S.%6N+00:00"));
    let mut auth = format!("{trad} web1 sshd[811]: Accepted publickey for admin\n");
    for l in &run.nginx_lines {
        auth.push_str(&format!("{trad} web1 {}\n", l.split_once('>').unwrap().1));
    }
    // One of ours cut short (a truncated write), and a refused start: counted, not denials.
    let cut = &run.nginx_lines[0].split_once('>').unwrap().1[..60];
    auth.push_str(&format!("{trad} web1 {cut}\n"));
    auth.push_str(&format!(
        "{trad} web1 toctou-guard[77]: action=config-error /etc/toctou-guard.conf:3: 'map': a UID is not numeric; refusing to start\n"
    ));
    auth.push_str(&format!("{trad} web1 CRON[9]: (root) CMD (true)\n"));
    let auth_log = dir.join("auth.log");
    fs::write(&auth_log, auth).unwrap();
    let mut auth2 = String::new();
    for l in &run.apache_lines {
        auth2.push_str(&format!("{iso} web1 {}\n", l.split_once('>').unwrap().1));
    }
    let auth2_log = dir.join("auth.log.1");
    fs::write(&auth2_log, auth2).unwrap();
    let prom = dir.join("toctou_guard.prom");
    let (a1, a2, p) = (
        auth_log.to_str().unwrap(),
        auth2_log.to_str().unwrap(),
        prom.to_str().unwrap(),
    );

    let out = report(&bin, &["--file", a1, "--file", a2, "--json", "--prometheus", p]);
    let j: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("--json: {e}: {}", describe(&out)));
    assert_counts(&j, &run);
    assert_eq!(
        (j["config_errors"].as_u64(), j["other_lines"].as_u64()),
        (Some(1), Some(2))
    );
    let malformed = j["malformed"].as_array().unwrap();
    assert_eq!(malformed.len(), 1, "{j:#}");
    assert_eq!(malformed[0]["at"], format!("{a1}:{}", run.nginx_lines.len() + 2));

    // node_exporter's textfile: exact series, renamed into place (no temp file left).
    let text = fs::read_to_string(&prom).unwrap();
    for want in [
        "# TYPE toctou_guard_denials_total counter\n".to_string(),
        format!(
            "toctou_guard_denials_total{{reason=\"owner-mismatch\",tenant=\"{}\"}} 7\n",
            run.attacker
        ),
        format!(
            "toctou_guard_denials_total{{reason=\"owner-mismatch\",tenant=\"{}\"}} 1\n",
            run.victim
        ),
        format!(
            "toctou_guard_denials_total{{reason=\"tenant-is-symlink\",tenant=\"{}\"}} 2\n",
            run.ghost
        ),
        "toctou_guard_malformed_lines_total 1\n".to_string(),
        "toctou_guard_config_error_lines_total 1\n".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} not in\n{text}");
    }
    assert_eq!(text.matches("toctou_guard_denials_total{").count(), 3, "{text}");
    let left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 3, "only the two logs and the metrics file: {left:?}");

    // The table for people: one row per tenant with its count, and the malformed line named.
    let out = report(&bin, &["--file", a1, "--file", a2]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("toctou-guard report: 10 denial line(s) (10 deny, 0 audit)"),
        "{text}"
    );
    assert!(
        text.contains("note: a syslog file does not record who sent a line")
            && text.contains(": 10 of the denial line(s) above"),
        "a file cannot prove its lines came from a guard: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("7 ") && l.ends_with(&run.attacker)),
        "{text}"
    );
    assert!(
        text.contains(&format!("{a1}:{}: ", run.nginx_lines.len() + 2)),
        "{text}"
    );

    // --since after every line: nothing counted.
    let out = report(
        &bin,
        &["--file", a1, "--file", a2, "--json", "--since", "2100-01-01"],
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (j["count"].as_u64(), j["before_since"].as_u64()),
        (Some(0), Some(10))
    );
}

/// journald's export of the same lines (no systemd on the CI machine: the entries are made
/// from the real datagrams with the fields journald stores for a syslog message, its trusted
/// `_UID`/`_EXE`/`_COMM` those of the workers that sent them), read from a file and through
/// `--journal` (a stand-in `journalctl` first in `PATH` that prints them and records how it
/// was called). Between them, the same lines as a tenant forges them (`logger -t
/// toctou-guard`, a program that calls itself nginx): listed as not sent by a guard, not
/// counted.
#[test]
fn report_reads_journal_json_of_real_denial_lines() {
    let Some(bin) = toctou_guard_tests::artifacts::guard_cli() else {
        return;
    };
    let Some(run) = produce() else { return };
    let dir = run.tenants.run.join("journal");
    fs::create_dir_all(&dir).unwrap();
    let now_us: u64 = date("+%s%6N").parse().unwrap();
    let mut entries = vec![serde_json::json!({
        "__REALTIME_TIMESTAMP": now_us.to_string(), "SYSLOG_IDENTIFIER": "sshd",
        "_PID": "811", "MESSAGE": "Accepted publickey for admin", "PRIORITY": "6",
    })];
    let uid = toctou_attack::targets::server_user().0.to_string();
    let servers = run
        .nginx_lines
        .iter()
        .map(|l| (l, "/usr/sbin/nginx"))
        .chain(run.apache_lines.iter().map(|l| (l, "/usr/sbin/apache2")));
    for (i, (l, exe)) in servers.enumerate() {
        let (tag, pid, body) = split(l);
        // journald keeps a message that is not UTF-8 as an array of bytes: one entry so.
        let message = if i == 0 {
            serde_json::json!(body.as_bytes())
        } else {
            serde_json::json!(body)
        };
        entries.push(serde_json::json!({
            "__REALTIME_TIMESTAMP": (now_us + i as u64).to_string(),
            "SYSLOG_IDENTIFIER": tag, "_PID": pid, "SYSLOG_PID": pid, "SYSLOG_FACILITY": "10",
            "PRIORITY": "4", "MESSAGE": message,
            "_UID": uid, "_GID": uid, "_EXE": exe, "_COMM": exe.rsplit('/').next().unwrap(),
        }));
    }
    let (_, _, body) = split(&run.nginx_lines[0]);
    for (exe, comm) in [("/usr/bin/logger", "logger"), ("/home/alice/bin/x", "nginx")] {
        entries.push(serde_json::json!({
            "__REALTIME_TIMESTAMP": now_us.to_string(), "SYSLOG_IDENTIFIER": "toctou-guard",
            "_PID": "4242", "SYSLOG_PID": "4242", "MESSAGE": body,
            "_UID": "42001", "_GID": "42001", "_EXE": exe, "_COMM": comm,
        }));
    }
    let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
    let sample = dir.join("journal.json");
    fs::write(&sample, &text).unwrap();
    let out = report(&bin, &["--file", sample.to_str().unwrap(), "--json"]);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_counts(&j, &run);
    assert_eq!(j["other_lines"], 1);
    let forged: Vec<&str> = j["unverified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["why"].as_str().unwrap())
        .collect();
    assert_eq!(
        forged,
        [
            "sent by /usr/bin/logger (uid 42001, pid 4242), not a server program",
            "sent by /home/alice/bin/x (uid 42001, pid 4242), not a server program"
        ],
        "{j:#}"
    );
    assert_eq!(
        j["unchecked_sender"], 0,
        "every counted entry's sender was checked"
    );

    let fake = dir.join("bin");
    mk_dir(&fake, 0, 0, 0o755).unwrap();
    let script = fake.join("journalctl");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\ncat {}\n",
            dir.join("args").display(),
            sample.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(&bin)
        .args(["report", "--journal", "--json", "--since", "2020-01-02T03:04:05Z"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_counts(&j, &run);
    assert_eq!(j["sources"], serde_json::json!(["journal"]));
    let args = fs::read_to_string(dir.join("args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "-o",
            "json",
            "--no-pager",
            "--since=2020-01-02 03:04:05 UTC",
            "SYSLOG_IDENTIFIER=toctou-guard",
            "SYSLOG_IDENTIFIER=toctou-guard-fs"
        ]
    );
}
