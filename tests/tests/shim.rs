//! The LD_PRELOAD shim against real files of two tenants, every hooked entry point, as an
//! unprivileged server uid. Needs root (to own files as tenants and drop to the server uid)
//! and the release build of the shim (`cargo build --release --workspace`). The fixture is
//! `toctou_guard_tests::shim_fixture`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use toctou_guard_tests::shim_fixture::{ALICE, BOB, Fixture, c_program};

const READ_ENTRIES: &[&str] = &[
    "open",
    "open64",
    "openat",
    "openat64",
    "__open_2",
    "__open64_2",
    "__openat_2",
    "__openat64_2",
    "fopen",
    "fopen64",
    "freopen",
    "freopen64",
];

#[test]
fn every_hook_serves_own_files_and_refuses_other_tenants() {
    let Some(f) = Fixture::new("hooks", "") else {
        return;
    };
    for entry in READ_ENTRIES {
        assert_eq!(
            f.hook(entry, &f.alice("index.html"), None),
            "OK alice-own",
            "{entry} own file"
        );
        assert_eq!(
            f.hook(entry, &f.alice("ownlink"), None),
            "OK alice-own",
            "{entry} own symlink"
        );
        for attack in ["link", "dotdot", "hard", "bobdir/secret.txt"] {
            assert_eq!(
                f.hook(entry, &f.alice(attack), None),
                "ERR EACCES",
                "{entry} {attack}"
            );
        }
        let escape = f.alice("../../bob/public_html/secret.txt");
        assert_eq!(f.hook(entry, &escape, None), "ERR EACCES", "{entry} ../ escape");
    }
    for entry in ["openat", "openat64", "__openat_2", "__openat64_2"] {
        let dir = f.alice("");
        assert_eq!(
            f.hook(entry, Path::new("index.html"), Some(&dir)),
            "OK alice-own",
            "{entry} dirfd own"
        );
        assert_eq!(
            f.hook(entry, Path::new("link"), Some(&dir)),
            "ERR EACCES",
            "{entry} dirfd link"
        );
        let up = Path::new("../../bob/public_html/secret.txt");
        assert_eq!(
            f.hook(entry, up, Some(&dir)),
            "ERR EACCES",
            "{entry} dirfd ../ escape"
        );
    }
    assert_eq!(
        f.hook("opendir", &f.alice(""), None),
        "OK 9 entries",
        "own docroot listing"
    );
    assert_eq!(
        f.hook("opendir", &f.alice("bobdir"), None),
        "ERR EACCES",
        "listing another tenant's dir"
    );
    // The victim reading its own file is of course fine.
    assert_eq!(f.hook("open", &f.bob("secret.txt"), None), "OK BOB-SECRET");
    // Outside every root: untouched.
    assert!(
        f.hook("open", Path::new("/etc/passwd"), None)
            .starts_with("OK root:")
    );
}

#[test]
fn refused_writes_leave_the_victims_file_alone() {
    let Some(f) = Fixture::new("writes", "") else {
        return;
    };
    for entry in ["trunc", "fopen-w", "creat", "creat64"] {
        assert_eq!(
            f.hook(entry, &f.alice("link"), None),
            "ERR EACCES",
            "{entry} through a symlink"
        );
        assert_eq!(
            fs::read_to_string(f.bob("secret.txt")).unwrap(),
            "BOB-SECRET\n",
            "{entry} harmed the victim"
        );
    }
    // Creation through a dangling symlink into the victim's (writable) docroot: refused,
    // and nothing is created there.
    assert_eq!(f.hook("creat", &f.alice("uploads/dangling"), None), "ERR EACCES");
    assert!(
        !f.bob("created-by-attack").exists(),
        "a file was created in the victim's tree"
    );
    // The server may create files in a tenant directory that the rule accepts.
    assert_eq!(f.hook("creat", &f.alice("uploads/new.txt"), None), "OK created");
    assert_eq!(
        fs::read_to_string(f.alice("uploads/new.txt")).unwrap(),
        "created\n"
    );
    // O_TRUNC on an allowed file still truncates (after the check).
    fs::write(f.alice("uploads/t.txt"), "data").unwrap();
    chown(f.alice("uploads/t.txt"), Some(ALICE), None).unwrap();
    fs::set_permissions(f.alice("uploads/t.txt"), fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(f.hook("trunc", &f.alice("uploads/t.txt"), None), "OK opened");
    assert_eq!(fs::read(f.alice("uploads/t.txt")).unwrap(), b"");
}

#[test]
fn denials_are_logged_to_authpriv_with_the_facts() {
    let Some(f) = Fixture::new("log", "") else { return };
    assert_eq!(f.hook("open", &f.alice("link"), None), "ERR EACCES");
    let logs = f.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let line = &logs[0];
    assert!(line.starts_with("<84>toctou-guard["), "authpriv.warning: {line}");
    for field in [
        "action=deny".to_string(),
        "reason=owner-mismatch".into(),
        "comm=hooks".into(),
        format!("path={}", f.alice("link").display()),
        format!("owner={BOB}"),
        format!("expected={ALICE}"),
        format!("tenant={}/home/alice", f.base.display()),
        "mode=enforce".into(),
    ] {
        assert!(line.contains(&field), "missing {field} in {line}");
    }
    assert_eq!(f.hook("open", &f.alice("index.html"), None), "OK alice-own");
    assert!(f.logs().is_empty(), "allowed opens are not logged");
}

#[test]
fn log_is_rate_limited() {
    let Some(f) = Fixture::new("rate", "log_rate 3\n") else {
        return;
    };
    // One process, many denials within a second: at most 3 lines (plus none for the rest).
    let script = format!(
        "for i in range(50):\n    try: open('{}')\n    except PermissionError: pass",
        f.alice("link").display()
    );
    let out = f.run(
        Path::new("/usr/bin/python3"),
        &[OsStr::new("-c"), OsStr::new(&script)],
    );
    assert!(out.status.success());
    let n = f.logs().len();
    assert!(
        (1..=6).contains(&n),
        "50 denials in one process gave {n} log lines"
    );
}

#[test]
fn audit_mode_allows_and_logs() {
    let Some(f) = Fixture::new("audit", "mode audit\n") else {
        return;
    };
    assert_eq!(f.hook("open", &f.alice("link"), None), "OK BOB-SECRET");
    let logs = f.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("action=audit") && l.contains("reason=owner-mismatch")),
        "{logs:?}"
    );
}

#[test]
fn fork_from_a_threaded_parent_does_not_deadlock() {
    let Some(f) = Fixture::new("fork", "log_rate 1\n") else {
        return;
    };
    let allowed = f.alice("index.html");
    let denied = f.alice("link");
    let out = f.run(
        &c_program("forkstress"),
        &[allowed.as_os_str(), denied.as_os_str(), OsStr::new("300")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "forkstress: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hung=0 child_bad=0"), "{stdout}");
}

#[test]
fn broken_config_stops_the_guarded_process_naming_file_and_line() {
    let Some(f) = Fixture::new("broken", "rooot /x\n") else {
        return;
    };
    let out = f.run(Path::new("/bin/cat"), &[f.alice("index.html").as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "the process ran unguarded");
    let expect = format!("toctou-guard: {}:3: unknown directive 'rooot'", f.conf.display());
    assert!(stderr.contains(&expect), "{stderr}");
    // It stops before main, from the library constructor, even if nothing is ever opened.
    let out = f.run(Path::new("/bin/true"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&expect));
}

#[test]
fn config_writable_by_a_tenant_is_refused() {
    let Some(f) = Fixture::new("untrusted", "") else {
        return;
    };
    chown(&f.conf, Some(ALICE), None).unwrap();
    let out = f.run(Path::new("/bin/cat"), &[f.alice("index.html").as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("is owned by uid {ALICE}")), "{stderr}");
    chown(&f.conf, Some(0), None).unwrap();
    fs::set_permissions(&f.conf, fs::Permissions::from_mode(0o664)).unwrap();
    let out = f.run(Path::new("/bin/cat"), &[f.alice("index.html").as_os_str()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("writable by group or others"));
}

#[test]
fn owner_euid_judges_by_the_workers_uid() {
    let Some(f) = Fixture::new("euid", "owner euid\nallow_uid 0\n") else {
        return;
    };
    // The server uid owns nothing under the roots: every tenant file is refused to it...
    assert_eq!(f.hook("open", &f.alice("index.html"), None), "ERR EACCES");
    // ...while a worker running as alice reads her files but not bob's, even by absolute path.
    let as_alice = |path: &Path| {
        let out = Command::new(c_program("hooks"))
            .args([OsStr::new("open"), path.as_os_str()])
            .env("LD_PRELOAD", &f.so)
            .env("TOCTOU_GUARD_CONFIG", &f.conf)
            .uid(ALICE)
            .gid(ALICE)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(as_alice(&f.alice("index.html")), "OK alice-own");
    assert_eq!(as_alice(&f.bob("secret.txt")), "ERR EACCES");
    assert_eq!(as_alice(&f.alice("link")), "ERR EACCES");
}

#[test]
fn map_and_allow_uid() {
    let Some(f) = Fixture::new("map", "") else { return };
    let conf = format!(
        "root {b}/home/*/public_html\nmap {b}/home/bob/public_html {ALICE}\nallow_uid 0\nlog_socket {b}/log.sock\n",
        b = f.base.display()
    );
    fs::write(&f.conf, conf).unwrap();
    // Bob's tree is mapped to alice's uid: bob's own file is now the odd one out.
    assert_eq!(f.hook("open", &f.bob("secret.txt"), None), "ERR EACCES");
    fs::write(f.alice("rootfile"), "root-owned\n").unwrap();
    assert_eq!(
        f.hook("open", &f.alice("rootfile"), None),
        "OK root-owned",
        "allow_uid 0"
    );
}

#[test]
fn guarded_opens_do_not_allocate() {
    let Some(f) = Fixture::new("noalloc", "log_rate 1000000\n") else {
        return;
    };
    let (own, link) = (f.alice("index.html"), f.alice("link"));
    let out = f.run(
        &c_program("noalloc"),
        &[own.as_os_str(), link.as_os_str(), OsStr::new("2000")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 2000 allowed and 2000 refused (and logged) opens, not one malloc among them.
    assert_eq!(stdout.trim(), "mallocs=0 ok=2000 denied=2000");
}

/// The system calls the traced program made right after it opened `needle`.
fn syscalls_after_open(f: &Fixture, needle: &Path) -> Vec<String> {
    let trace = f.base.join("strace.txt");
    let out = Command::new("strace")
        .arg("-o")
        .arg(&trace)
        .arg(c_program("hooks"))
        .args([OsStr::new("open"), needle.as_os_str()])
        .env("LD_PRELOAD", &f.so)
        .env("TOCTOU_GUARD_CONFIG", &f.conf)
        .output()
        .expect("strace (apt-get install strace)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = fs::read_to_string(&trace).unwrap();
    let quoted = format!("\"{}\"", needle.display());
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("openat(") && l.contains(&quoted))
        .expect("the open");
    lines[at + 1..].iter().take(2).map(|l| l.to_string()).collect()
}

#[test]
fn outside_every_root_costs_no_extra_system_call() {
    let Some(f) = Fixture::new("strace", "") else {
        return;
    };
    let after = syscalls_after_open(&f, Path::new("/etc/hostname"));
    assert!(
        after[0].starts_with("read(3,"),
        "extra system call after an unguarded open: {after:?}"
    );
    // Under a root: exactly one fstat of the opened descriptor, then the program's read.
    let after = syscalls_after_open(&f, &f.alice("index.html"));
    assert!(
        after[0].starts_with("fstat(3,") || after[0].starts_with("newfstatat(3, \"\""),
        "{after:?}"
    );
    assert!(after[1].starts_with("read(3,"), "{after:?}");
}

#[test]
fn programs_limits_which_processes_are_guarded() {
    let Some(f) = Fixture::new("programs", "programs nginx apache2 php-fpm*\n") else {
        return;
    };
    // `hooks` is not a listed program: it is left alone (as `ls` would be under ld.so.preload).
    assert_eq!(f.hook("open", &f.alice("link"), None), "OK BOB-SECRET");
    let conf = fs::read_to_string(&f.conf)
        .unwrap()
        .replace("programs nginx", "programs nginx hooks");
    fs::write(&f.conf, conf).unwrap();
    assert_eq!(f.hook("open", &f.alice("link"), None), "ERR EACCES");
}

#[test]
fn opens_from_other_libraries_constructors_are_judged_too() {
    let Some(f) = Fixture::new("early", "") else {
        return;
    };
    let early = c_program("early");
    // Whichever constructor runs first, the open made before main is guarded.
    for order in [[&early, &f.so], [&f.so, &early]] {
        let out_file = f.base.join("early.out");
        let _ = fs::remove_file(&out_file);
        let preload = format!("{} {}", order[0].display(), order[1].display());
        let out = Command::new("/bin/true")
            .env("LD_PRELOAD", &preload)
            .env("TOCTOU_GUARD_CONFIG", &f.conf)
            .env("EARLY_PATH", f.alice("link"))
            .env("EARLY_OUT", &out_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            fs::read_to_string(&out_file).unwrap(),
            "ERR EACCES\n",
            "preload order {preload}"
        );
    }
}
