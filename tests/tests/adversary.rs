//! The shim against a hostile tenant with a shell (issue "The shim against a real
//! adversary"): each test is named after the bypass it locks out, and failed on the code
//! before its fix.
//!
//! `/etc/ld.so.preload` and `/etc/toctou-guard.conf` are only ever written in a private mount
//! namespace, on an overlay over `/etc` that vanishes with it: never the real `/etc`.
//! Needs root (skipped with `SKIP:` otherwise, a failure when `CI` is set).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use toctou_guard_tests::private_etc::{PrivateEtc, hooks_copy};
use toctou_guard_tests::shim_fixture::{ALICE, Fixture, SERVER};

use toctou_guard_tests::describe as text;

/// Item 1: `TOCTOU_GUARD_CONFIG=/etc/shadow chage -l me` printed root's shadow line. In
/// secure-execution mode the shim ignores our variables (as ld.so ignores `LD_*`): a setuid
/// program under `/etc/ld.so.preload` reads only `/etc/toctou-guard.conf`, prints nothing of
/// a root-only file named in its environment, and is still guarded by the real config.
#[test]
fn item1_setuid_programs_ignore_our_environment() {
    let Some(f) = Fixture::new("adv-setuid", "") else {
        return;
    };
    let secret = f.base.join("root-only.conf");
    fs::write(&secret, "SECRETWORD1\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let suid = hooks_copy(&f.base.join("suid/hooks-suid"), 0o4755);
    let preload = format!("{}\n", f.so.display());
    let conf = fs::read(&f.conf).unwrap();
    let etc = PrivateEtc::new(
        &f,
        "setuid",
        &[
            ("ld.so.preload", preload.as_bytes()),
            ("toctou-guard.conf", &conf),
        ],
    );
    let env = [("TOCTOU_GUARD_CONFIG", secret.as_os_str())];
    let out = etc.run(
        ALICE,
        &env,
        &suid,
        &[OsStr::new("open"), OsStr::new("/etc/hostname")],
    );
    assert!(
        !text(&out).contains("SECRETWORD1"),
        "the root-only file leaked: {}",
        text(&out)
    );
    assert!(
        out.status.success() && out.stdout.starts_with(b"OK"),
        "{}",
        text(&out)
    );
    // Still guarded, by /etc/toctou-guard.conf: the tenant's link to bob's file is refused.
    let link = f.alice("link");
    let out = etc.run(ALICE, &env, &suid, &[OsStr::new("open"), link.as_os_str()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ERR EACCES",
        "{}",
        text(&out)
    );
}

/// Item 1, second half: a configuration error quotes nothing of the line but its directive
/// word, whatever file the guard was pointed at.
#[test]
fn item1_config_errors_quote_no_value() {
    let Some(f) = Fixture::new("adv-quote", "") else {
        return;
    };
    let bad = f.base.join("etc/bad.conf");
    fs::write(&bad, "map /srv/x s3cr3tvalue\n").unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("/bin/true")
        .env("LD_PRELOAD", &f.so)
        .env("TOCTOU_GUARD_CONFIG", &bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:1: 'map'", bad.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t"), "a value was quoted: {stderr}");
}

/// Item 6: `/proc/self/exe` was read into 256 bytes, so a server binary at a longer path, or
/// a deleted one (`NAME (deleted)`), ran unguarded under `programs`.
#[test]
fn item6_programs_filter_fails_closed() {
    let Some(f) = Fixture::new("adv-programs", "programs guarded-hooks\n") else {
        return;
    };
    let link = f.alice("link");
    let args = [OsStr::new("open"), link.as_os_str()];
    // A 300-byte path to the binary.
    let mut long = f.base.join("bin");
    for i in 0..6 {
        long.push(format!("{i}{}", "d".repeat(45)));
    }
    let long = hooks_copy(&long.join("guarded-hooks"), 0o755);
    assert!(long.as_os_str().len() > 256);
    let out = f
        .command(&long)
        .args(args)
        .uid(SERVER)
        .gid(SERVER)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ERR EACCES",
        "{}",
        text(&out)
    );
    // The binary deleted before it runs: exec'd through a descriptor of the unlinked file.
    let gone = hooks_copy(&f.base.join("bin2/guarded-hooks"), 0o755);
    let script = format!(
        "exec 3<{0}; rm -f {0}; exec /proc/self/fd/3 \"$@\"",
        gone.display()
    );
    fs::set_permissions(f.base.join("bin2"), fs::Permissions::from_mode(0o777)).unwrap();
    let out = f
        .command(Path::new("/bin/sh"))
        .args([OsStr::new("-c"), OsStr::new(&script), OsStr::new("sh")])
        .args(args)
        .uid(SERVER)
        .gid(SERVER)
        .output()
        .unwrap();
    assert!(!gone.exists(), "the binary was not deleted: {}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ERR EACCES",
        "{}",
        text(&out)
    );
}

/// Item 7: with `/etc/toctou-guard.conf` missing, nginx under `/etc/ld.so.preload` served the
/// victim's file and logged nothing; a renamed library with no config was silently inert. A
/// server program refuses to start without a configuration however it was preloaded, and so
/// does any program that preloads this library by name, whatever the file is called; other
/// programs under `/etc/ld.so.preload` still run.
#[test]
fn item7_no_silent_fail_open_without_a_config() {
    let Some(f) = Fixture::new("adv-noconf", "") else {
        return;
    };
    let nginx = hooks_copy(&f.base.join("sbin/nginx"), 0o755);
    let plain = hooks_copy(&f.base.join("sbin/plain-tool"), 0o755);
    let preload = format!("{}\n", f.so.display());
    let etc = PrivateEtc::new(&f, "noconf", &[("ld.so.preload", preload.as_bytes())]);
    let link = f.alice("link");
    let args = [OsStr::new("open"), link.as_os_str()];
    let out = etc.run(SERVER, &[], &nginx, &args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a server ran without a config: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such file; refusing to start"),
        "{}",
        text(&out)
    );
    let out = etc.run(
        SERVER,
        &[],
        &plain,
        &[OsStr::new("open"), OsStr::new("/etc/hostname")],
    );
    assert!(
        out.status.success() && out.stdout.starts_with(b"OK"),
        "a non-server was bricked: {}",
        text(&out)
    );

    // LD_PRELOAD naming a renamed copy of the library, no config anywhere.
    let renamed = f.base.join("lib/libtgshim.so");
    fs::create_dir_all(renamed.parent().unwrap()).unwrap();
    fs::set_permissions(renamed.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::copy(&f.so, &renamed).unwrap();
    fs::set_permissions(&renamed, fs::Permissions::from_mode(0o755)).unwrap();
    let etc = PrivateEtc::new(&f, "renamed", &[]);
    let out = etc.run(SERVER, &[("LD_PRELOAD", renamed.as_os_str())], &plain, &args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the renamed library was inert: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to start"),
        "{}",
        text(&out)
    );
}

/// Item 3: a directory descriptor or working directory entered under a root, then moved by
/// its tenant out of every root (`public_html/mv` → `private/mv`), named a place outside
/// every root: `openat(fd, "x")` with `x` a symlink to the victim's file, or `open("x")`
/// from the moved working directory, read the victim's file. The directory keeps the
/// tenant it was entered under.
#[test]
fn item3_directory_moved_out_of_the_root_keeps_its_tenant() {
    let Some(f) = Fixture::new("adv-moved", "") else {
        return;
    };
    let private = f.base.join("home/alice/private");
    fs::create_dir(&private).unwrap();
    std::os::unix::fs::chown(&private, Some(ALICE), Some(ALICE)).unwrap();
    for entry in ["moved-dirfd", "moved-cwd"] {
        let mv = f.alice("mv");
        fs::create_dir(&mv).unwrap();
        std::os::unix::fs::symlink(f.bob("secret.txt"), mv.join("x")).unwrap();
        fs::write(mv.join("own.txt"), "alice-moved\n").unwrap();
        for p in [&mv, &mv.join("own.txt")] {
            std::os::unix::fs::chown(p, Some(ALICE), Some(ALICE)).unwrap();
        }
        std::os::unix::fs::lchown(mv.join("x"), Some(ALICE), Some(ALICE)).unwrap();
        let to = private.join(entry);
        let run = |name: &str| {
            let args = [
                OsStr::new(entry),
                OsStr::new(name),
                mv.as_os_str(),
                to.as_os_str(),
            ];
            let out = f.run_as(
                ALICE,
                &toctou_guard_tests::shim_fixture::c_program("hooks"),
                &args,
            );
            // Put it back for the next name.
            let _ = fs::rename(&to, &mv);
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(
            run("x"),
            "ERR EACCES",
            "{entry}: the victim's file through the moved directory"
        );
        assert_eq!(run("own.txt"), "OK alice-moved", "{entry}: the tenant's own file");
        fs::remove_dir_all(&mv).unwrap();
    }
    let logs = f.logs();
    assert!(
        logs.iter().any(|l| l.contains("owner-mismatch")),
        "no denial logged: {logs:?}"
    );
}
