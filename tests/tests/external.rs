//! `toctou-attack --url` (the `external` target, issue 14 item 7) against an nginx this test
//! starts itself, as if it were an operator's live server: the harness's own target code
//! starts nothing, it is only told the URL and the two document roots. Bare, the race must
//! leak (the harness then exits 1: to it, a live server is one that claims to be guarded);
//! with the shim preloaded, 0 leaks, 0 false denials, exit 0. The operator's one-line proof
//! after `toctou-guard enable nginx`.
//!
//! Needs root, nginx, the shim and `toctou-attack`; a missing prerequisite prints `SKIP:`
//! locally and fails when `CI` is set.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use regex::Regex;
use toctou_attack::TargetKind;
use toctou_attack::process::{ServerProcess, free_port, wait_http};
use toctou_attack::targets::nginx;
use toctou_guard_tests::harness::tools_for;
use toctou_guard_tests::shim_fixture::c_program;
use toctou_guard_tests::{artifacts, describe, heavy};

const ALICE: u32 = 42301;
const BOB: u32 = 42302;

/// Two tenants' document roots as a hosting box has them (`home/USER/public_html`, owned by
/// USER), and a guard config for them; removed on drop.
struct HostingBox {
    base: PathBuf,
    conf: PathBuf,
}

impl HostingBox {
    fn new() -> HostingBox {
        let base = std::env::temp_dir().join(format!("tg-external-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        for (user, uid) in [("alice", ALICE), ("bob", BOB)] {
            let doc = base.join(format!("home/{user}/public_html"));
            fs::create_dir_all(&doc).unwrap();
            for p in [doc.parent().unwrap(), &doc] {
                chown(p, Some(uid), Some(uid)).unwrap();
                fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        for p in [&base, &base.join("home")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        // `allow_uid 0`: the legit lane reads a root-owned shared file.
        let conf = base.join("guard.conf");
        fs::write(
            &conf,
            format!(
                "root {}/home/*/public_html\nallow_uid 0\nlog_socket {}/no-log.sock\n",
                base.display(),
                base.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).unwrap();
        HostingBox { base, conf }
    }

    fn docroot(&self, user: &str) -> PathBuf {
        self.base.join(format!("home/{user}/public_html"))
    }

    /// nginx serving `home/` on 127.0.0.1 (`disable_symlinks off`, the default), with the
    /// shim preloaded or not.
    fn nginx(&self, bin: &Path, guarded: bool) -> (ServerProcess, u16) {
        let port = free_port().expect("port");
        let dir = self.base.join(format!("nginx-{port}"));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let text = nginx::config(&self.base.join("home"), port, &dir, "off", "");
        let so = c_program("libtoctou_guard.so");
        let mut p = nginx::spawn(bin, &dir, &text, |cmd: &mut Command| {
            cmd.env_remove("LD_PRELOAD").env_remove("TOCTOU_GUARD_CONFIG");
            if guarded {
                cmd.env("LD_PRELOAD", &so).env("TOCTOU_GUARD_CONFIG", &self.conf);
            }
            Ok(())
        })
        .expect("nginx");
        // Any answer will do (a 404 for the empty docroot): it is up.
        wait_http(
            ([127, 0, 0, 1], port).into(),
            "/",
            &mut [&mut p],
            Duration::from_secs(20),
        )
        .expect("nginx up");
        (p, port)
    }
}

impl Drop for HostingBox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// `toctou-attack --url ... --json` against 127.0.0.1:`port`.
fn attack(exe: &Path, b: &HostingBox, port: u16, scenarios: &str) -> Output {
    Command::new(exe)
        .arg("--url")
        .arg(format!("http://127.0.0.1:{port}/alice/public_html"))
        .arg("--attacker-docroot")
        .arg(b.docroot("alice"))
        .arg("--victim-docroot")
        .arg(b.docroot("bob"))
        .args([
            "--scenarios",
            scenarios,
            "--seconds",
            "4",
            "--requests",
            "60000",
            "--json",
        ])
        .output()
        .expect("run toctou-attack")
}

/// (scenario, leaks, false denials, verdict) of each external cell of the JSON report.
fn cells(out: &Output) -> Vec<(String, u64, u64, String)> {
    let re = Regex::new(
        r#""target": "external", "scenario": "([a-z-]+)".*?"leaks": (\d+),.*?"false_denials": (\d+),.*?"verdict": "([A-Za-z-]+)""#,
    )
    .unwrap();
    re.captures_iter(&String::from_utf8_lossy(&out.stdout))
        .map(|c| {
            (
                c[1].to_string(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
                c[4].to_string(),
            )
        })
        .collect()
}

#[test]
fn external_race_leaks_from_a_bare_nginx_and_not_from_a_guarded_one() {
    let Some(tools) = tools_for(&[TargetKind::NginxShim]) else {
        return;
    };
    let exe = artifacts::attack_exe().expect("toctou-attack");
    let nginx_bin = tools.nginx.clone().expect("nginx");
    let _g = heavy();
    let b = HostingBox::new();

    let (bare, port) = b.nginx(&nginx_bin, false);
    let out = attack(&exe, &b, port, "final,dir,legit");
    drop(bare);
    let got = cells(&out);
    eprintln!("bare nginx (scenario, leaks, false denials, verdict): {got:?}");
    assert_eq!(got.len(), 3, "{}", describe(&out));
    // To the harness a live server is meant to be guarded: a leak is exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"exit_code\": 1"));
    for (scenario, leaks, falsed, verdict) in &got {
        assert_eq!(*falsed, 0, "bare {scenario}: {}", describe(&out));
        if scenario != "legit" {
            assert!(
                *leaks > 0 && verdict == "LEAK",
                "bare nginx must leak in {scenario}: {}",
                describe(&out)
            );
        }
    }

    let (guarded, port) = b.nginx(&nginx_bin, true);
    let scenarios = "final,dir,hardlink,dotdot,dirfile,legit";
    let out = attack(&exe, &b, port, scenarios);
    drop(guarded);
    let got = cells(&out);
    eprintln!("guarded nginx (scenario, leaks, false denials, verdict): {got:?}");
    assert_eq!(got.len(), scenarios.split(',').count(), "{}", describe(&out));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for (scenario, leaks, falsed, verdict) in &got {
        assert_eq!(
            (*leaks, *falsed, verdict.as_str()),
            (0, 0, "ok"),
            "guarded {scenario}: {}",
            describe(&out)
        );
    }
    // The harness removed what it laid out in the operator's document roots.
    for user in ["alice", "bob"] {
        let left: Vec<_> = fs::read_dir(b.docroot(user))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{user}'s docroot after the race: {left:?}");
    }
}
