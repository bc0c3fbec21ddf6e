//! The `toctou-attack` binary: usage, listing, and a short demo run whose table and exit
//! status say the bare naive server leaked and the shimmed one did not.
//! The run needs root (and the shim for `naive+shim`): `SKIP:` locally, a failure in CI.

use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_toctou-attack");

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn require(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(!in_ci(), "missing prerequisite in CI: {what}");
        eprintln!("SKIP: {what}");
    }
    ok
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn help_and_list() {
    let out = Command::new(EXE).arg("--help").output().expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--targets") && help.contains("Exit status"),
        "{help}"
    );
    let out = Command::new(EXE).arg("--list").output().expect("run --list");
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    for name in [
        "naive+shim",
        "apache+shim",
        "nginx-if-not-owner",
        "php+shim",
        "nginx+fuse",
        "final",
        "dirfile",
        "legit",
    ] {
        assert!(list.contains(name), "--list lacks {name}");
    }
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(EXE)
        .args(["--targets", "nosuch"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown target"));
}

#[test]
fn demo_run_naive_leaks_and_naive_shim_holds() {
    if !require(is_root(), "root") {
        return;
    }
    // `cargo test` leaves the shim in deps/, `cargo build` next to the binary.
    let shim = toctou_attack::artefacts::SHIM.near(std::path::Path::new(EXE));
    let Some(shim) = shim else {
        require(
            false,
            "the shim next to toctou-attack (cargo build --release -p toctou-guard-shim)",
        );
        return;
    };
    let out = Command::new(EXE)
        .args([
            "--targets",
            "naive,naive+shim",
            "--scenarios",
            "final,dir,legit",
            "--requests",
            "30000",
            "--seconds",
            "8",
        ])
        .arg("--shim")
        .arg(&shim)
        .output()
        .expect("run toctou-attack");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "exit status");
    assert!(stdout.contains("naive+shim") && stdout.contains("guarded (must not leak)"));
    let out = Command::new(EXE)
        .args([
            "--targets",
            "naive+shim",
            "--scenarios",
            "hardlink",
            "--requests",
            "2000",
            "--json",
        ])
        .arg("--shim")
        .arg(&shim)
        .output()
        .expect("run toctou-attack --json");
    let json = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert!(
        json.contains("\"target\": \"naive+shim\"") && json.contains("\"leaks\": 0,"),
        "{json}"
    );
    assert!(json.contains("\"exit_code\": 0"), "{json}");
}

/// Children of `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(") ")
                        .map(|(_, rest)| rest.split(' ').nth(1) == Some(&pid.to_string()))
                })
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn sigterm_mid_run_stops_servers_and_removes_the_tenants() {
    if !require(is_root(), "root") {
        return;
    }
    let mut child = Command::new(EXE)
        .args([
            "--targets",
            "naive",
            "--scenarios",
            "final",
            "--requests",
            "100000000",
            "--seconds",
            "60",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start toctou-attack");
    let pid = child.id();
    let prefix = format!("toctou-attack-{pid}-");
    let base = || {
        std::fs::read_dir("/tmp")
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
    };
    // Wait (bounded) until the tenants exist and the naive server and the swapper run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut kids = Vec::new();
    while std::time::Instant::now() < deadline {
        kids = children(pid);
        if base().is_some() && kids.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dir = base().expect("tenant base directory appeared");
    assert!(kids.len() >= 2, "server and swapper running: {kids:?}");
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "toctou-attack did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "exit status after SIGTERM");
    assert!(!dir.exists(), "{} left behind", dir.display());
    for k in kids {
        let alive = std::fs::read_to_string(format!("/proc/{k}/stat")).is_ok_and(|s| !s.contains(") Z "));
        assert!(!alive, "child {k} still running");
    }
}
