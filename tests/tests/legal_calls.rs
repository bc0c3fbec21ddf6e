//! The shim never crashes a worker and never changes what a legal call returns (issue
//! "The shim never crashes a worker..."): one test per reproduced item, each comparing the
//! call under the shim with the same call bare. The broad sweep is `conformance.rs`.
//!
//! Needs root (skipped with `SKIP:` otherwise, a failure when `CI` is set).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use toctou_guard_tests::shim_fixture::{ALICE, Fixture, SERVER, c_program};

/// `hooks ARGS` as the server uid in `cwd`: under the shim with `Some(fixture)`, else bare.
fn hooks(shim: Option<&Fixture>, args: &[&OsStr], cwd: &Path) -> Output {
    Fixture::run_maybe(shim, SERVER, cwd, &c_program("hooks"), args)
}

fn bare(args: &[&OsStr], cwd: &Path) -> Output {
    hooks(None, args, cwd)
}

fn guarded(f: &Fixture, args: &[&OsStr], cwd: &Path) -> Output {
    hooks(Some(f), args, cwd)
}

fn show(o: &Output) -> String {
    format!(
        "{:?} {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).trim(),
        String::from_utf8_lossy(&o.stderr).trim()
    )
}

/// The call gives the same answer bare and guarded, and the guarded process did not die.
#[track_caller]
fn same(f: &Fixture, args: &[&OsStr], cwd: &Path) -> String {
    let b = bare(args, cwd);
    let g = guarded(f, args, cwd);
    assert!(
        g.status.code().is_some(),
        "killed by a signal under the shim: {}",
        show(&g)
    );
    assert_eq!(show(&b), show(&g), "bare vs guarded for {args:?}");
    show(&g)
}

/// `openat(-1, "/etc/hostname")` is legal (the dirfd of an absolute path is ignored); the
/// shim aborted on it (`BorrowedFd::borrow_raw(-1)`).
#[test]
fn openat_minus_one_with_an_absolute_path() {
    let Some(f) = Fixture::new("legal-badfd", "") else {
        return;
    };
    let own = f.alice("index.html");
    for p in [Path::new("/etc/hostname"), own.as_path()] {
        let r = same(&f, &[OsStr::new("openat-badfd"), p.as_os_str()], &f.base);
        assert!(r.contains("OK"), "{r}");
    }
    same(&f, &[OsStr::new("openat-badfd"), OsStr::new("relative")], &f.base);
}

/// Any hooked open segfaulted on a 16 KiB thread stack; `open` is async-signal-safe, so it
/// must also work in a handler on a `SIGSTKSZ` alternate stack. Under a root and outside.
#[test]
fn opens_on_small_stacks() {
    let Some(f) = Fixture::new("legal-stack", "") else {
        return;
    };
    let own = f.alice("index.html");
    let long = f.alice(&format!("{}index.html", "uploads/../".repeat(300)));
    for entry in ["thread16k", "sigalt"] {
        for p in [
            Path::new("/etc/hostname"),
            own.as_path(),
            long.as_path(),
            Path::new("index.html"),
        ] {
            let cwd = f.alice("");
            let r = same(&f, &[OsStr::new(entry), p.as_os_str()], &cwd);
            assert!(r.contains("OK"), "{entry} {}: {r}", p.display());
        }
        // And a refusal, logged from the small stack.
        let r = guarded(&f, &[OsStr::new(entry), f.alice("link").as_os_str()], &f.base);
        assert_eq!(show(&r), "Some(1) ERR EACCES", "{entry}");
    }
}

/// An `O_CREAT` of a non-clean path longer than 4 KiB that normalises to a path under a root
/// indexed past the end of a buffer. The kernel says ENAMETOOLONG; so must the shim.
#[test]
fn create_with_a_path_longer_than_path_max() {
    let Some(f) = Fixture::new("legal-long", "") else {
        return;
    };
    let dir = format!("{}/", f.alice("uploads").display());
    let r = same(&f, &[OsStr::new("creat-long"), OsStr::new(&dir)], &f.base);
    assert!(r.contains("ENAMETOOLONG"), "{r}");
}

/// `O_TRUNC` on a FIFO or a character device under a root failed with EINVAL (a deferred
/// `ftruncate` the kernel would never have done).
#[test]
fn truncate_only_regular_files() {
    let Some(f) = Fixture::new("legal-trunc", "") else {
        return;
    };
    let fifo = f.alice("fifo");
    let dev = f.alice("null");
    assert!(
        Command::new("mkfifo")
            .arg("-m")
            .arg("0666")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("mknod")
            .args(["-m", "0666"])
            .arg(&dev)
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success()
    );
    for p in [&fifo, &dev] {
        chown(p, Some(ALICE), Some(ALICE)).unwrap();
        let r = same(&f, &[OsStr::new("trunc-rdwr"), p.as_os_str()], &f.base);
        assert_eq!(r, "Some(0) OK opened", "{}", p.display());
    }
}

/// `openat(pipe_fd, "x")` answered EACCES instead of the kernel's ENOTDIR.
#[test]
fn openat_from_a_pipe_is_enotdir() {
    let Some(f) = Fixture::new("legal-pipe", "") else {
        return;
    };
    let r = same(&f, &[OsStr::new("openat-pipe"), OsStr::new("x")], &f.base);
    assert!(r.contains("ENOTDIR"), "{r}");
}

/// With a working directory deeper than 4096 bytes, relative opens outside every root got
/// EACCES: the base cannot be named, but no root can lie below its nameable ancestor.
#[test]
fn relative_opens_from_a_deep_directory_outside_every_root() {
    let Some(f) = Fixture::new("legal-deep", "") else {
        return;
    };
    let outside = f.base.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o777)).unwrap();
    let r = same(&f, &[OsStr::new("deepcwd"), OsStr::new("30")], &outside);
    assert_eq!(r, "Some(0) OK deep", "{r}");
    // Under a root, the tenant cannot be known: refused (the kernel would have served it),
    // from the first `mkdir` made from a working directory that cannot be named.
    let own = f.alice("uploads");
    let r = guarded(&f, &[OsStr::new("deepcwd"), OsStr::new("30")], &own);
    assert!(show(&r).contains("ERR mkdir EACCES"), "{}", show(&r));
}

/// Audit mode refused an `O_CREAT` through a dangling symlink (logged `action=deny ...
/// mode=audit`): audit must allow, and log `action=audit`.
#[test]
fn audit_mode_allows_a_create_through_a_dangling_link() {
    let Some(f) = Fixture::new("legal-audit", "mode audit\n") else {
        return;
    };
    let link = f.alice("uploads/dangling");
    let r = guarded(&f, &[OsStr::new("creat"), link.as_os_str()], &f.base);
    assert_eq!(show(&r), "Some(0) OK created");
    assert!(
        f.bob("created-by-attack").exists(),
        "audit mode creates what the bare call would"
    );
    let logs = f.logs();
    // Logged as what it is: a creation in a directory another tenant owns.
    assert!(
        logs.iter()
            .any(|l| l.contains("action=audit reason=owner-mismatch mode=audit")),
        "{logs:?}"
    );
    assert!(!logs.iter().any(|l| l.contains("action=deny")), "{logs:?}");
}

/// In enforce mode, a tenant's own `app.log -> logs/new.log` (a link to a file not created
/// yet, in its own tree) was refused where the bare call creates it.
#[test]
fn a_create_through_the_tenants_own_dangling_link() {
    let Some(f) = Fixture::new("legal-ownlink", "") else {
        return;
    };
    let logs = f.alice("logs");
    fs::create_dir(&logs).unwrap();
    chown(&logs, Some(ALICE), Some(ALICE)).unwrap();
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o777)).unwrap();
    let link = f.alice("uploads/app.log");
    symlink("../logs/new.log", &link).unwrap();
    lchown(&link, Some(ALICE), Some(ALICE)).unwrap();
    let r = guarded(&f, &[OsStr::new("creat"), link.as_os_str()], &f.base);
    assert_eq!(show(&r), "Some(0) OK created");
    assert_eq!(fs::read(logs.join("new.log")).unwrap(), b"created\n");
    // Into another tenant's directory it is still refused, and nothing is created there.
    let r = guarded(
        &f,
        &[OsStr::new("creat"), f.alice("uploads/dangling").as_os_str()],
        &f.base,
    );
    assert_eq!(show(&r), "Some(1) ERR EACCES");
    assert!(!f.bob("created-by-attack").exists());
}

/// A non-UTF-8 `TOCTOU_GUARD_CONFIG` silently fell back to `/etc/toctou-guard.conf`: the raw
/// bytes name the file.
#[test]
fn a_config_path_that_is_not_utf8() {
    let Some(f) = Fixture::new("legal-bytes", "") else {
        return;
    };
    let mut name = f.base.join("etc").into_os_string().into_vec();
    name.extend_from_slice(b"/conf-\xff.conf");
    let odd = OsString::from_vec(name);
    fs::copy(&f.conf, &odd).unwrap();
    fs::set_permissions(&odd, fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(c_program("hooks"))
        .args([OsStr::new("open"), f.alice("link").as_os_str()])
        .env("LD_PRELOAD", &f.so)
        .env("TOCTOU_GUARD_CONFIG", &odd)
        .uid(SERVER)
        .gid(SERVER)
        .output()
        .unwrap();
    assert_eq!(
        show(&out),
        "Some(1) ERR EACCES",
        "guarded by the file the bytes name"
    );
}
