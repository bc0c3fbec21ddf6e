//! `toctou-guard-fs` against a hostile tenant with a shell (issue 12): each test is named
//! after the numbered item it locks out, and failed on the daemon before its fix.
//!
//! The attacker is [`ALICE`], the victim [`BOB`], the web server [`SERVER`]. Needs root and
//! /dev/fuse (skipped with `SKIP:` otherwise, a failure when `CI` is set).

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use toctou_guard_tests::fuse_tree::{
    ALICE, BOB, Mount, SERVER, Tree, VICTIM, assert_eacces, counter, prerequisites, read_as, read_as_server,
    wait_stats,
};
use toctou_guard_tests::poll::{poll_for, wait_until};
use toctou_guard_tests::prereq;

const DB: &[u8] = b"DB_PASSWORD=bob-private-db\n";
/// A group only [`SERVER`]'s supplementary list holds (item 1).
const WEBGROUP: u32 = 43010;

use toctou_guard_tests::describe as text;

/// `sh -c script` as `uid` (gid the same, no supplementary groups, umask 022).
fn sh_as(uid: u32, script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask 022; {script}"))
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run sh")
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn no_null() -> &'static [&'static str] {
    &[]
}

/// Item 1: `ln -s ../private/db.conf SOURCE/bob/uploads/avatar.png` by the attacker, in the
/// victim's world-writable uploads directory, served the victim's 0700-protected file to the
/// attacker and to the server. A followed link must be owned by the tenant's owner (every
/// link on the way), and link targets are resolved with the caller's permissions (its uid,
/// gid and supplementary groups), whoever looked the name up first.
#[test]
fn item1_planted_links_and_caller_permissions() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv1");
    t.dir("bob/private", BOB);
    chmod(&t.src.join("bob/private"), 0o700);
    t.file("bob/private/db.conf", DB, BOB);
    t.dir("bob/uploads", BOB);
    chmod(&t.src.join("bob/uploads"), 0o1777);
    // A directory the web server may search by group only (0750 bob:WEBGROUP).
    t.dir("bob/grp", BOB);
    chown(t.src.join("bob/grp"), Some(BOB), Some(WEBGROUP)).expect("chown");
    chmod(&t.src.join("bob/grp"), 0o750);
    t.file("bob/grp/conf", DB, BOB);
    // Planted by the attacker.
    t.link("bob/uploads/avatar.png", "../private/db.conf", ALICE);
    t.link("bob/uploads/dir", "../private", ALICE);
    t.link("bob/uploads/pub.png", "../pub/secret", ALICE);
    // The victim's own links.
    t.link("bob/pub/conf", "../private/db.conf", BOB);
    t.link("bob/pub/chain", "../uploads/avatar.png", BOB);
    t.link("bob/pub/grpconf", "../grp/conf", BOB);
    let raw = read_as(ALICE, &t.src.join("bob/uploads/avatar.png"));
    assert!(raw.is_err(), "raw, the attacker cannot read it: {raw:?}");

    let m = Mount::start(&bin, &t, no_null());
    for p in [
        "bob/uploads/avatar.png",
        "bob/uploads/dir/db.conf",
        "bob/uploads/pub.png",
        "bob/pub/chain",
    ] {
        let p = t.mnt.join(p);
        assert_eacces(&p);
        let got = read_as(ALICE, &p);
        assert!(
            got.as_ref().is_err_and(|e| e.contains("Permission denied")),
            "{} as the attacker: {got:?}",
            p.display()
        );
    }
    // The victim's own link through its 0700 directory: the victim first (it may search
    // the directory raw, and the kernel caches what it looked up), then those who may not.
    let conf = t.mnt.join("bob/pub/conf");
    assert_eq!(read_as(BOB, &conf).expect("bob reads his own link"), DB);
    assert_eq!(fs::read(&conf).expect("root reads it"), DB);
    for uid in [SERVER, ALICE] {
        let got = read_as(uid, &conf);
        assert!(
            got.as_ref().is_err_and(|e| e.contains("Permission denied")),
            "uid {uid} searched bob/private through a link: {got:?}"
        );
    }
    // Supplementary groups count: SERVER with WEBGROUP may search bob/grp, without it not.
    let grpconf = t.mnt.join("bob/pub/grpconf");
    let with_group = Command::new("setpriv")
        .args(["--reuid", &SERVER.to_string(), "--regid", &SERVER.to_string()])
        .args(["--groups", &WEBGROUP.to_string(), "cat"])
        .arg(&grpconf)
        .output()
        .expect("setpriv");
    assert!(with_group.status.success(), "{}", text(&with_group));
    assert_eq!(with_group.stdout, DB);
    let got = read_as_server(&grpconf);
    assert!(
        got.as_ref().is_err_and(|e| e.contains("Permission denied")),
        "without the group: {got:?}"
    );
    drop(m);
}

/// Item 2: through `-o rw` the attacker wrote `bob/uploads/index.html` and a `.php` in a
/// 0777 victim directory, and got files owned by the victim (served, not removable by the
/// attacker). Objects are created as the caller, so the rule judges them at creation: a
/// create the rule would refuse to serve is refused (EACCES), nothing is left behind; a
/// tenant's own create belongs to the caller's uid and gid.
#[test]
fn item2_creates_are_made_as_the_caller() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv2");
    t.dir("bob/uploads", BOB);
    chmod(&t.src.join("bob/uploads"), 0o1777);
    t.dir("bob/www", BOB);
    chmod(&t.src.join("bob/www"), 0o777);
    chmod(&t.src.join("alice/pub"), 0o777);
    t.file("bob/uploads/photo.jpg", b"bob's photo\n", BOB);
    let m = Mount::start(&bin, &t, &["-o", "rw"]);
    let mnt = t.mnt.display();
    for (rel, script) in [
        (
            "bob/uploads/index.html",
            format!("echo pwned > {mnt}/bob/uploads/index.html"),
        ),
        (
            "bob/www/shell.php",
            format!("echo '<?php' > {mnt}/bob/www/shell.php"),
        ),
        ("bob/uploads/d", format!("mkdir {mnt}/bob/uploads/d")),
        ("bob/www/e", format!("mkdir {mnt}/bob/www/e")),
    ] {
        for uid in [ALICE, SERVER] {
            let out = sh_as(uid, &script);
            let made = fs::symlink_metadata(t.src.join(rel));
            assert!(
                !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
                "uid {uid}: {script}: {} (made: {:?})",
                text(&out),
                made.as_ref().map(|m| m.uid())
            );
            assert!(made.is_err(), "uid {uid}: {rel} left in SOURCE");
        }
    }
    // The sticky bit still protects the victim's upload from the attacker.
    let out = sh_as(ALICE, &format!("rm -f {mnt}/bob/uploads/photo.jpg"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(t.src.join("bob/uploads/photo.jpg").exists());
    // The tenant's own creates: the caller's uid and gid.
    let out = sh_as(
        ALICE,
        &format!(
            "echo mine > {mnt}/alice/pub/new.html && mkdir {mnt}/alice/pub/nd && mv {mnt}/alice/pub/new.html {mnt}/alice/pub/nd/n.html"
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    for rel in ["alice/pub/nd", "alice/pub/nd/n.html"] {
        let md = fs::metadata(t.src.join(rel)).expect(rel);
        assert_eq!((md.uid(), md.gid()), (ALICE, ALICE), "{rel}");
    }
    assert_eq!(
        fs::read(t.mnt.join("alice/pub/nd/n.html")).expect("read back"),
        b"mine\n"
    );
    drop(m);
}

/// Takes a read lease on each path (this process ignores SIGIO, as the attacker did): a
/// truncate of the file waits for the lease break (45 s by default).
fn read_leases(paths: &[&Path]) -> Vec<OwnedFd> {
    // SAFETY: setting SIGIO's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
    paths
        .iter()
        .map(|p| {
            let fd: OwnedFd = fs::File::open(p).expect("open for lease").into();
            // SAFETY: `fd` is an open descriptor; F_SETLEASE takes an int argument.
            let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
            assert_eq!(
                r,
                0,
                "F_SETLEASE {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            );
            fd
        })
        .collect()
}

/// Item 7: the attacker leased two of its files, ignored SIGIO and truncated both through
/// the mount: both worker threads waited for the lease break and every tenant's reads hung.
/// No request may block a worker on something a tenant controls: while the leases are
/// still held, another tenant's first read completes, and so do the truncates (refused
/// with EAGAIN rather than waiting).
#[test]
fn item7_leases_do_not_block_the_workers() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv7");
    let l1 = t.file("alice/pub/l1", b"leased one\n", ALICE);
    let l2 = t.file("alice/pub/l2", b"leased two\n", ALICE);
    t.file("bob/pub/fresh", b"bob's page\n", BOB);
    let m = Mount::start(&bin, &t, &["-o", "rw", "--threads", "2"]);
    let leases = read_leases(&[&l1, &l2]);
    let truncates: Vec<_> = ["l1", "l2"]
        .iter()
        .map(|n| {
            Command::new("truncate")
                .args(["-s", "0"])
                .arg(t.mnt.join("alice/pub").join(n))
                .uid(ALICE)
                .gid(ALICE)
                .stderr(Stdio::piped())
                .spawn()
                .expect("truncate")
        })
        .collect();
    // Both truncates have reached the daemon (or finished) before the read is tried.
    let fresh = t.mnt.join("bob/pub/fresh");
    let reader = std::thread::spawn(move || read_as_server(&fresh));
    // The bound is well under the 45 s lease-break time: a blocked pool never finishes.
    wait_until(
        "another tenant's read while the leases are held",
        Duration::from_secs(20),
        || reader.is_finished(),
    );
    assert_eq!(
        reader.join().expect("reader").expect("bob's page served"),
        b"bob's page\n"
    );
    for mut c in truncates {
        let st = poll_for(Duration::from_secs(20), || c.try_wait().ok().flatten())
            .expect("truncate returned while the lease is held");
        let mut err = String::new();
        std::io::Read::read_to_string(c.stderr.as_mut().expect("stderr"), &mut err).expect("read");
        assert!(
            !st.success() && err.contains("Resource temporarily unavailable"),
            "truncate under a lease: {st} {err}"
        );
    }
    drop(leases);
    // Once the lease is gone the truncate works.
    let out = sh_as(ALICE, &format!("truncate -s 0 {}/alice/pub/l1", t.mnt.display()));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::metadata(&l1).expect("l1").len(), 0);
    drop(m);
}

/// Item 9: a file rewritten in place in SOURCE with the same size and its old mtime restored
/// kept serving the old bytes. The change of ctime is seen at `getattr` and the kernel's
/// cached pages of that inode are invalidated.
#[test]
fn item9_same_size_same_mtime_rewrite_is_not_served_stale() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv9");
    let src = t.file("alice/pub/page.html", b"version-A version-A\n", ALICE);
    let m = Mount::start(&bin, &t, &["--attr-ttl-ms", "50", "--entry-ttl-ms", "50"]);
    let page = t.mnt.join("alice/pub/page.html");
    assert_eq!(fs::read(&page).expect("read"), b"version-A version-A\n");
    let old = fs::metadata(&src).expect("stat").modified().expect("mtime");
    fs::write(&src, b"version-B version-B\n").expect("rewrite in place");
    fs::File::options()
        .write(true)
        .open(&src)
        .and_then(|f| f.set_modified(old))
        .expect("restore mtime");
    wait_until(
        "the rewritten bytes to be served (attr TTL 50 ms)",
        Duration::from_secs(5),
        || fs::read(&page).expect("read") == b"version-B version-B\n",
    );
    drop(m);
}

/// The mount is usable by the web server by default when the daemon runs as root
/// (`allow_other`); `--no-allow-other` keeps it to the mounting user.
#[test]
fn item_allow_other_is_the_default_for_root() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv-ao");
    t.file("alice/pub/index.html", b"alice's page\n", ALICE);
    let m = Mount::start_plain(&bin, &t, no_null());
    let page = t.mnt.join("alice/pub/index.html");
    assert_eq!(
        read_as_server(&page).expect("the server reads by default"),
        b"alice's page\n"
    );
    drop(m);
    let m = Mount::start_plain(&bin, &t, &["--no-allow-other"]);
    let got = read_as_server(&page);
    assert!(
        got.as_ref().is_err_and(|e| e.contains("Permission denied")),
        "--no-allow-other: {got:?}"
    );
    assert_eq!(fs::read(&page).expect("root still reads"), b"alice's page\n");
    drop(m);
}

/// Item 10: the daemon's umask applied to creates (0666 became 0644), times before 1970 were
/// stored as 1970, and the subdirectory of a directory reached through a link shared its
/// inode with its real path (ELOOP for `totenant/pub`).
#[test]
fn item10_umask_old_times_and_linked_subdirectories() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv10");
    t.file("alice/pub/index.html", b"alice's page\n", ALICE);
    t.link("alice/pub/totenant", "..", ALICE);
    let m = Mount::start(&bin, &t, &["-o", "rw"]);
    let mnt = t.mnt.display();
    let out = sh_as(
        ALICE,
        &format!("umask 0; touch {mnt}/alice/pub/u && mkdir {mnt}/alice/pub/ud"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let mode = |rel: &str| fs::metadata(t.src.join(rel)).expect(rel).mode() & 0o7777;
    assert_eq!(mode("alice/pub/u"), 0o666, "touch under umask 0");
    assert_eq!(mode("alice/pub/ud"), 0o777, "mkdir under umask 0");
    let out = sh_as(
        ALICE,
        &format!("touch -d '1960-01-01 00:00:00.5 UTC' {mnt}/alice/pub/u"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let md = fs::metadata(t.src.join("alice/pub/u")).expect("u");
    assert_eq!(
        (md.mtime(), md.mtime_nsec()),
        (-315_619_200, 500_000_000),
        "mtime"
    );
    let through = fs::metadata(t.mnt.join("alice/pub/u")).expect("u via mount");
    assert_eq!(
        (through.mtime(), through.mtime_nsec()),
        (-315_619_200, 500_000_000)
    );
    // pub reached through a link to its own tenant directory: its own inode.
    let via = t.mnt.join("alice/pub/totenant/pub");
    assert_eq!(
        fs::read(via.join("index.html")).expect("totenant/pub/index.html"),
        b"alice's page\n"
    );
    let names: Vec<_> = fs::read_dir(&via)
        .expect("list totenant/pub")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(names.iter().any(|n| n == "index.html"), "{names:?}");
    assert_eq!(
        fs::read(t.mnt.join("alice/pub/index.html")).expect("the real path still works"),
        b"alice's page\n"
    );
    drop(m);
}

/// `openat(dir, name, O_PATH|O_DIRECTORY|O_NOFOLLOW)`, or `mkdirat` first when `make`.
fn step(dir: &OwnedFd, name: &str, make: bool) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(name).expect("name");
    if make {
        // SAFETY: `dir` is an open directory fd and `c` a NUL-terminated name.
        if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: as above; the returned fd (if any) is owned by the OwnedFd below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// `SOURCE/rel/name/name/...` (`levels` deep, owned by `uid`), made with `*at` calls (the
/// path is longer than PATH_MAX); the deepest directory's fd.
fn chain(t: &Tree, rel: &str, name: &str, levels: usize, uid: u32) -> OwnedFd {
    let mut fd: OwnedFd = fs::File::open(t.src.join(rel)).expect("open").into();
    for _ in 0..levels {
        fd = step(&fd, name, true).expect("mkdirat");
        // SAFETY: `fd` is an open fd; AT_EMPTY_PATH makes the call act on it.
        let r = unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, uid, libc::AT_EMPTY_PATH) };
        assert_eq!(r, 0, "fchownat: {}", std::io::Error::last_os_error());
    }
    fd
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// How much the daemon's RSS may grow while a client walks 600 levels of 255-byte names
/// (fusefs/README.md): the nodes cost about 1 KiB each; today's full path per node cost
/// ~46 MB.
const DEEP_RSS_BOUND_KIB: u64 = 16 * 1024;

/// Item 4: each node stored its full path, so memory grew with the square of the depth
/// (2000 levels: 504 MB). Nodes store (parent, name); depth is capped at 1024 levels and a
/// path below SOURCE at 192 KiB (deeper names: ENAMETOOLONG, the daemon stays up); a
/// relative link at the bottom is resolved from its directory's held fd.
#[test]
fn item4_deep_trees_cost_linear_memory_and_are_capped() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv4");
    t.file("alice/pub/index.html", b"alice's page\n", ALICE);
    t.dir("alice/pub/deep", ALICE);
    t.dir("alice/pub/short", ALICE);
    t.dir("alice/pub/wide", ALICE);
    let long = "n".repeat(255);
    let bottom = chain(&t, "alice/pub/deep", &long, 600, ALICE);
    drop(bottom);
    drop(chain(&t, "alice/pub/short", "a", 1100, ALICE));
    drop(chain(&t, "alice/pub/wide", &long, 800, ALICE));
    let m = Mount::start(&bin, &t, no_null());
    assert_eq!(
        fs::read(t.mnt.join("alice/pub/index.html")).expect("warm up"),
        b"alice's page\n"
    );
    let before = rss_kib(m.pid());
    let mut fd: OwnedFd = fs::File::open(t.mnt.join("alice/pub/deep")).expect("open").into();
    for level in 1..=600 {
        fd = step(&fd, &long, false).unwrap_or_else(|e| panic!("level {level}: {e}"));
    }
    let after = rss_kib(m.pid());
    eprintln!("daemon RSS walking 600 levels of 255-byte names: {before} KiB -> {after} KiB");
    assert!(
        after.saturating_sub(before) < DEEP_RSS_BOUND_KIB,
        "RSS {before} KiB -> {after} KiB walking 600 levels (bound {DEEP_RSS_BOUND_KIB} KiB)"
    );
    drop(fd);
    // The caps: 1024 levels, 192 KiB of path; refused past them, not a crash.
    // `alice/pub/short` is 3 levels below SOURCE; `/alice/pub/wide` 15 bytes long and each
    // 255-byte level adds 256.
    for (dir, name, levels) in [
        ("short", "a", 1024 - 3),
        ("wide", long.as_str(), (192 * 1024 - 15) / 256),
    ] {
        let mut fd: OwnedFd = fs::File::open(t.mnt.join("alice/pub").join(dir))
            .expect("open")
            .into();
        let mut reached = 0;
        for level in 1..=1100 {
            match step(&fd, name, false) {
                Ok(next) => {
                    fd = next;
                    reached = level;
                }
                Err(e) => {
                    assert_eq!(
                        e.raw_os_error(),
                        Some(libc::ENAMETOOLONG),
                        "{dir} level {level}: {e}"
                    );
                    break;
                }
            }
        }
        assert_eq!(reached, levels, "{dir}: levels served below alice/pub/{dir}");
    }
    assert_eq!(
        fs::read(t.mnt.join("alice/pub/index.html")).expect("the daemon is still up"),
        b"alice's page\n"
    );
    drop(m);
}

/// Item 8: after `mv site site.old; mv site.new site` through the mount, `site/current` (a
/// relative link) answered ENOENT and `site.old/current` served the new site: links were
/// resolved from the path a directory was first looked up by. They are resolved from the
/// held directory, `..` from where that directory is now.
#[test]
fn item8_relative_links_follow_renamed_directories() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv8");
    for d in ["site", "site/v1", "site.new", "site.new/v2", "a", "a/b", "deeper"] {
        t.dir(&format!("alice/pub/{d}"), ALICE);
    }
    t.file("alice/pub/site/v1/index.html", b"old site\n", ALICE);
    t.link("alice/pub/site/current", "v1", ALICE);
    t.file("alice/pub/site.new/v2/index.html", b"new site\n", ALICE);
    t.link("alice/pub/site.new/current", "v2", ALICE);
    t.link("alice/pub/a/b/up", "../../which", ALICE);
    t.file("alice/pub/which", b"pub\n", ALICE);
    t.file("alice/pub/deeper/which", b"deeper\n", ALICE);
    let m = Mount::start(&bin, &t, &["-o", "rw"]);
    let p = t.mnt.join("alice/pub");
    let read = |rel: &str| fs::read(p.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(read("site/current/index.html"), b"old site\n");
    assert_eq!(read("site.new/current/index.html"), b"new site\n");
    assert_eq!(read("a/b/up"), b"pub\n");
    fs::rename(p.join("site"), p.join("site.old")).expect("mv site site.old");
    fs::rename(p.join("site.new"), p.join("site")).expect("mv site.new site");
    fs::rename(p.join("a"), p.join("deeper/a")).expect("mv a deeper/a");
    assert_eq!(read("site/current/index.html"), b"new site\n");
    assert_eq!(read("site.old/current/index.html"), b"old site\n");
    assert_eq!(read("deeper/a/b/up"), b"deeper\n");
    drop(m);
}

/// The daemon's descriptor limit in the fd tests (items 5, 6): set by `prlimit`, so the
/// scale does not depend on the machine's limits.
const FD_LIMIT: u32 = 4096;

/// Open descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// A process of `uid` that opens every path listed in `list` with `O_PATH` and holds them
/// until its stdin closes (as the attacker's pinning processes did); returns it once it
/// has tried them all, with the number it holds.
fn hold_open(python: &Path, uid: u32, list: &Path) -> (std::process::Child, usize) {
    const HOLDER: &str = r#"
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
held = []
for p in open(sys.argv[1]).read().split("\n"):
    if p:
        try:
            held.append(os.open(p, os.O_PATH))
        except OSError:
            pass
print(len(held), flush=True)
sys.stdin.read()
"#;
    let mut child = Command::new(python)
        .args(["-c", HOLDER])
        .arg(list)
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    std::io::BufRead::read_line(&mut out, &mut line).expect("holder's count");
    let n = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("holder said {line:?}"));
    (child, n)
}

/// Item 5: 20,000 hard links to one symlink to one directory, held open with `O_PATH` by
/// two attacker processes, took the daemon to its fd limit, and the web server's read of
/// another tenant's file failed with EMFILE. Nodes reached as aliases of one object share
/// its descriptor, and each tenant has a quota (half the daemon's descriptors by default):
/// pinning many distinct files costs the attacker its own lookups (EMFILE), never the
/// others'.
#[test]
fn item5_pinned_aliases_and_files_do_not_exhaust_the_daemon() {
    let Some(bin) = prerequisites() else { return };
    // The system's, which every uid may run (not a per-user install).
    let Some(python) = prereq::program(&["/usr/bin/python3"], "python3 (Debian package python3)") else {
        return;
    };
    let t = Tree::new("adv5");
    t.dir("alice/pub/d", ALICE);
    t.dir("alice/pub/h", ALICE);
    t.link("alice/pub/h/l", "../d", ALICE);
    t.dir("alice/pub/many", ALICE);
    t.file("bob/pub/fresh", b"bob's page\n", BOB);
    let n = FD_LIMIT as usize + 100;
    let mut aliases = String::new();
    let mut files = String::new();
    for i in 0..n {
        // A hard link to the symlink itself (linkat without AT_SYMLINK_FOLLOW).
        fs::hard_link(
            t.src.join("alice/pub/h/l"),
            t.src.join(format!("alice/pub/h/{i}")),
        )
        .expect("link");
        aliases.push_str(&format!("{}/alice/pub/h/{i}\n", t.mnt.display()));
        t.file(&format!("alice/pub/many/{i}"), b"x", ALICE);
        files.push_str(&format!("{}/alice/pub/many/{i}\n", t.mnt.display()));
    }
    fs::write(t.base.join("aliases"), aliases).expect("list");
    fs::write(t.base.join("files"), files).expect("list");
    // Aliases of one directory, pinned by two processes.
    let m = Mount::start_limited(&bin, &t, FD_LIMIT, no_null());
    let (mut a1, held1) = hold_open(&python, ALICE, &t.base.join("aliases"));
    let (mut a2, held2) = hold_open(&python, ALICE, &t.base.join("aliases"));
    let fds = fd_count(m.pid());
    let served = read_as_server(&t.mnt.join("bob/pub/fresh"));
    for c in [&mut a1, &mut a2] {
        drop(c.stdin.take());
        let _ = c.wait();
    }
    eprintln!("held {held1}+{held2} aliases: {fds} daemon fds");
    assert_eq!(served.expect("the server reads bob's page"), b"bob's page\n");
    assert!(
        fds < 256,
        "{held1}+{held2} aliases of one directory cost the daemon {fds} fds"
    );
    drop(m);

    // Distinct files, pinned: the attacker meets its quota, bob does not.
    let m = Mount::start_limited(&bin, &t, FD_LIMIT, no_null());
    let (mut a3, held3) = hold_open(&python, ALICE, &t.base.join("files"));
    let fds = fd_count(m.pid());
    let served = read_as_server(&t.mnt.join("bob/pub/fresh"));
    let own = read_as(BOB, &t.mnt.join("bob/pub/secret"));
    drop(a3.stdin.take());
    let _ = a3.wait();
    eprintln!("held {held3} of {n} files: {fds} daemon fds");
    assert_eq!(served.expect("the server reads bob's page"), b"bob's page\n");
    assert_eq!(own.expect("bob reads his own file"), VICTIM);
    assert!(
        fds <= FD_LIMIT as usize * 6 / 10,
        "{held3} pinned files: the daemon holds {fds} of {FD_LIMIT} fds"
    );
    assert!(
        held3 < n,
        "the attacker's quota never applied ({held3} of {n} held)"
    );
    // Released, the tenant's cached names are trimmed and its own lookups work again.
    t.file("alice/pub/index.html", b"alice's page\n", ALICE);
    let page = t.mnt.join("alice/pub/index.html");
    wait_until(
        "alice's lookups to work again once her pins are released",
        Duration::from_secs(10),
        || read_as_server(&page).is_ok_and(|d| d == b"alice's page\n"),
    );
    drop(m);
}

/// Item 6: writing 9,990 files through `-o rw` left two descriptors per file (the held one
/// and the write one) after the writer exited; other tenants got EMFILE. Idle write
/// descriptors are closed (after about a second), so a written file costs what a read one
/// does.
#[test]
fn item6_idle_write_descriptors_are_closed() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv6");
    t.dir("alice/pub/w", ALICE);
    t.file("bob/pub/fresh", b"bob's page\n", BOB);
    let m = Mount::start_limited(&bin, &t, FD_LIMIT, &["-o", "rw"]);
    let files = FD_LIMIT as usize * 4 / 10;
    let out = sh_as(
        ALICE,
        &format!(
            "cd {}/alice/pub/w && i=0; while [ $i -lt {files} ]; do echo $i > f$i || exit 1; i=$((i+1)); done",
            t.mnt.display()
        ),
    );
    assert!(out.status.success(), "writing {files} files: {}", text(&out));
    let pid = m.pid();
    // One held descriptor per cached file remains; the write ones go.
    let bound = files + 64;
    wait_until(
        &format!("the daemon to hold fewer than {bound} fds after {files} files written"),
        Duration::from_secs(10),
        || fd_count(pid) < bound,
    );
    assert_eq!(
        read_as_server(&t.mnt.join("bob/pub/fresh")).expect("bob's page"),
        b"bob's page\n"
    );
    assert_eq!(
        fs::read(t.mnt.join(format!("alice/pub/w/f{}", files - 1))).expect("read back"),
        format!("{}\n", files - 1).as_bytes()
    );
    drop(m);
}

/// `owner euid` through the mount (`--owner caller`): the expected owner is the uid of the
/// process making the request, as for one php-fpm pool per tenant. Today the mount ignored
/// it and applied the tenant rule, so a pool running as the attacker read the victim's file
/// directly by path. Decided at every lookup (entry TTL 0 in this mode: a name the victim
/// looked up is not handed to the attacker from the kernel's cache).
#[test]
fn item_owner_caller_judges_by_the_requesting_uid() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("adv-caller");
    t.file("alice/pub/index.php", b"alice's page\n", ALICE);
    t.link("alice/pub/evil", "../../bob/pub/secret", ALICE);
    let conf = t.base.join("guard.conf");
    fs::write(&conf, format!("owner euid\nroot {}/*\n", t.src.display())).expect("config");
    chmod(&conf, 0o644);
    let conf_s = conf.to_string_lossy().into_owned();
    let m = Mount::start(&bin, &t, &["--config", &conf_s]);
    let secret = t.mnt.join("bob/pub/secret");
    // The victim's own pool first: it reads its file (and the kernel has the name cached).
    assert_eq!(
        read_as(BOB, &secret).expect("bob's pool reads bob's file"),
        VICTIM
    );
    for p in [&secret, &t.mnt.join("alice/pub/evil")] {
        let got = read_as(ALICE, p);
        assert!(
            got.as_ref().is_err_and(|e| e.contains("Permission denied")),
            "alice's pool read {}: {got:?}",
            p.display()
        );
    }
    assert_eq!(
        read_as(ALICE, &t.mnt.join("alice/pub/index.php")).expect("alice's pool reads her own"),
        b"alice's page\n"
    );
    // The shared web server owns nothing: under this rule it is served nothing.
    assert_eacces(&t.mnt.join("alice/pub/index.php"));
    drop(m);
}

/// `setfacl ARGS path` as root on SOURCE (the set-up, not the thing tested).
fn setfacl_raw(path: &Path, args: &[&str]) {
    let out = Command::new("setfacl")
        .args(args)
        .arg(path)
        .output()
        .expect("setfacl");
    assert!(
        out.status.success(),
        "setfacl {args:?} {}: {}",
        path.display(),
        text(&out)
    );
}

/// `getfacl -n` of `path` as `uid`, without the `# file:` line (it names the path).
fn getfacl_as(uid: u32, path: &Path) -> Output {
    let mut out = sh_as(uid, &format!("getfacl -n '{}'", path.display()));
    out.stdout = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("# file:"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes();
    out
}

/// `cat path` as `uid` with `groups` as its supplementary groups.
fn read_with_groups(uid: u32, groups: u32, path: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid", &uid.to_string(), "--regid", &uid.to_string()])
        .args(["--groups", &groups.to_string(), "cat"])
        .arg(path)
        .output()
        .expect("setpriv")
}

#[track_caller]
fn assert_denied(got: Result<Vec<u8>, String>, what: &str) {
    assert!(
        got.as_ref().is_err_and(|e| e.contains("Permission denied")),
        "{what}: {got:?}"
    );
}

/// Issue 13: the kernel's own root inode (made before INIT enabled ACLs) never caches its
/// ACL, so every walk through the mount root by a caller who is not its owner sent one
/// GETXATTR (one per HTTP request under nginx). As root the daemon now binds a looked-up
/// inode of SOURCE's root at the mount point: warm walks by the web server's uid send a
/// GETXATTR only when the kernel refreshed an inode's attributes (it then forgets the cached
/// ACL; before: one per read), and an ACL set later on SOURCE's root itself is still enforced
/// (the ctime change invalidates the cached one), as raw.
#[test]
fn item_mount_root_acl_is_cached_and_still_enforced() {
    let Some(bin) = prerequisites() else { return };
    if prereq::program(&["/usr/bin/setfacl", "/bin/setfacl"], "setfacl (package acl)").is_none() {
        return;
    }
    let t = Tree::new("rootacl");
    t.dir("alice/pub/d1", ALICE);
    t.dir("alice/pub/d1/d2", ALICE);
    t.file("alice/pub/d1/d2/page.html", b"alice page\n", ALICE);
    let stats = t.base.join("stats");
    let stats_s = stats.to_string_lossy().into_owned();
    let m = Mount::start(&bin, &t, &["--stats", &stats_s, "--attr-ttl-ms", "1000"]);
    let page = t.mnt.join("alice/pub/d1/d2/page.html");
    // The first walk fetches each inode's ACL once (the kernel caches the absence).
    assert_eq!(read_as_server(&page).as_deref(), Ok(&b"alice page\n"[..]));
    m.signal("USR1");
    let before = wait_stats(&stats, "");
    const READS: u64 = 20;
    for _ in 0..READS {
        assert_eq!(read_as_server(&page).as_deref(), Ok(&b"alice page\n"[..]));
    }
    m.signal("USR1");
    let after = wait_stats(&stats, &before);
    let fetched = counter(&after, "getxattr") - counter(&before, "getxattr");
    // A TTL (1 s) running out mid-loop on a loaded machine refreshes attributes, and with
    // them the ACLs: those GETXATTR come with a GETATTR or LOOKUP each; no others.
    let refreshed = counter(&after, "getattr") + counter(&after, "lookup")
        - counter(&before, "getattr")
        - counter(&before, "lookup");
    assert!(
        fetched <= refreshed && fetched < READS / 2,
        "{READS} warm reads by the server sent {fetched} GETXATTR ({refreshed} refreshes): {before} -> {after}"
    );
    // An ACL on SOURCE's root closing it to the server: refused raw, and through the mount
    // once the root's attributes (1 s) are fetched again.
    setfacl_raw(&t.src, &["-m", &format!("u:{SERVER}:---")]);
    assert_denied(
        read_as_server(&t.src.join("alice/pub/d1/d2/page.html")),
        "raw, SOURCE closed to the server by ACL",
    );
    wait_until(
        "the server to be refused after a raw setfacl on SOURCE's root",
        Duration::from_secs(5),
        || read_as_server(&page).is_err(),
    );
    assert_eq!(read_as(ALICE, &page).as_deref(), Ok(&b"alice page\n"[..]));
}

/// Item 3: `FUSE_POSIX_ACL` was not negotiated and xattrs answered `ENOSYS`, so the kernel
/// checked mode bits only: a 0644 file with `user:OTHER:---` was served to OTHER, and a 0640
/// file with `user:SERVER:r--` (the "web server by ACL" set-up) was refused to the server.
/// Every check is made against the raw answer for the same caller first.
#[test]
fn item3_posix_acls_are_honoured() {
    let Some(bin) = prerequisites() else { return };
    if prereq::program(&["/usr/bin/setfacl", "/bin/setfacl"], "setfacl (package acl)").is_none()
        || prereq::program(&["/usr/bin/setfattr", "/bin/setfattr"], "setfattr (package attr)").is_none()
    {
        return;
    }
    let t = Tree::new("adv3");
    let (s_bob, s_server, s_group) = (
        format!("u:{BOB}:---"),
        format!("u:{SERVER}:r--"),
        format!("g:{WEBGROUP}:r--"),
    );
    // A 0644 page the other tenant is denied by a named-user entry.
    let deny = t.file("alice/pub/deny.html", b"alice page\n", ALICE);
    setfacl_raw(&deny, &["-m", &s_bob]);
    // A 0640 file the web server may read by ACL only, one by a named group only.
    let allow = t.file("alice/pub/allow.php", b"<?php // alice\n", ALICE);
    chmod(&allow, 0o640);
    setfacl_raw(&allow, &["-m", &s_server]);
    let grp = t.file("alice/pub/grp.php", b"<?php // group\n", ALICE);
    chmod(&grp, 0o640);
    setfacl_raw(&grp, &["-m", &s_group]);
    // Directories: a 0750 one searchable by the server by ACL, a 0755 one closed to BOB.
    t.dir("alice/app", ALICE);
    chmod(&t.src.join("alice/app"), 0o750);
    setfacl_raw(&t.src.join("alice/app"), &["-m", &format!("u:{SERVER}:r-x")]);
    t.file("alice/app/index.php", b"<?php // app\n", ALICE);
    t.dir("alice/closed", ALICE);
    setfacl_raw(&t.src.join("alice/closed"), &["-m", &format!("u:{BOB}:---")]);
    t.file("alice/closed/page.html", b"closed\n", ALICE);
    // Raw, the answers the mount must give.
    assert_denied(read_as(BOB, &deny), "raw deny.html as BOB");
    assert_eq!(read_as(ALICE, &deny).as_deref(), Ok(&b"alice page\n"[..]));
    assert_eq!(read_as_server(&allow).as_deref(), Ok(&b"<?php // alice\n"[..]));
    assert_denied(read_as(BOB, &allow), "raw allow.php as BOB");

    let m = Mount::start(&bin, &t, &["--attr-ttl-ms", "50", "--entry-ttl-ms", "50"]);
    let at = |rel: &str| t.mnt.join(rel);
    assert_denied(
        read_as(BOB, &at("alice/pub/deny.html")),
        "deny.html as BOB (user:BOB:---)",
    );
    assert_eq!(
        read_as(SERVER, &at("alice/pub/deny.html")).as_deref(),
        Ok(&b"alice page\n"[..])
    );
    assert_eq!(
        read_as_server(&at("alice/pub/allow.php")).as_deref(),
        Ok(&b"<?php // alice\n"[..]),
        "allow.php as the server (user:SERVER:r--)"
    );
    assert_denied(read_as(BOB, &at("alice/pub/allow.php")), "allow.php as BOB");
    let with_group = read_with_groups(SERVER, WEBGROUP, &at("alice/pub/grp.php"));
    assert!(
        with_group.status.success(),
        "grp.php with WEBGROUP: {}",
        text(&with_group)
    );
    assert_denied(
        read_as_server(&at("alice/pub/grp.php")),
        "grp.php without WEBGROUP",
    );
    assert_eq!(
        read_as_server(&at("alice/app/index.php")).as_deref(),
        Ok(&b"<?php // app\n"[..]),
        "search of a 0750 directory granted by ACL"
    );
    assert_denied(read_as(BOB, &at("alice/app/index.php")), "alice/app as BOB");
    assert_denied(
        read_as(BOB, &at("alice/closed/page.html")),
        "alice/closed as BOB (user:BOB:---)",
    );
    assert_eq!(
        read_as(SERVER, &at("alice/closed/page.html")).as_deref(),
        Ok(&b"closed\n"[..])
    );
    // The ACL is shown as it is raw.
    for rel in ["alice/pub/deny.html", "alice/app"] {
        let (raw, mnt) = (getfacl_as(ALICE, &t.src.join(rel)), getfacl_as(ALICE, &at(rel)));
        assert!(mnt.status.success(), "getfacl through the mount: {}", text(&mnt));
        assert_eq!(
            String::from_utf8_lossy(&mnt.stdout),
            String::from_utf8_lossy(&raw.stdout),
            "{rel}"
        );
    }
    // A change made in SOURCE reaches the kernel's cached ACL (the ctime changed).
    setfacl_raw(&allow, &["-m", &format!("u:{SERVER}:---")]);
    wait_until(
        "the server to be refused after a raw setfacl",
        Duration::from_secs(5),
        || read_as_server(&at("alice/pub/allow.php")).is_err(),
    );
    // Read-only: no ACL or xattr can be set through the mount.
    let out = sh_as(
        ALICE,
        &format!(
            "setfacl -m u:{SERVER}:r-- '{}'",
            at("alice/pub/deny.html").display()
        ),
    );
    assert!(
        !out.status.success(),
        "setfacl on a read-only mount: {}",
        text(&out)
    );
    drop(m);

    // -o rw: setfacl/setfattr as the caller, with the kernel's checks for that caller.
    t.dir("alice/dflt", ALICE);
    setfacl_raw(&t.src.join("alice/dflt"), &["-m", &format!("d:u:{SERVER}:rw-")]);
    let m = Mount::start(
        &bin,
        &t,
        &["-o", "rw", "--attr-ttl-ms", "50", "--entry-ttl-ms", "50"],
    );
    let page = at("alice/pub/deny.html");
    let out = sh_as(ALICE, &format!("setfacl -m u:{SERVER}:--- '{}'", page.display()));
    assert!(out.status.success(), "the owner's setfacl: {}", text(&out));
    let raw = getfacl_as(ALICE, &deny);
    assert!(
        String::from_utf8_lossy(&raw.stdout).contains(&format!("user:{SERVER}:---")),
        "set in SOURCE: {}",
        text(&raw)
    );
    assert_denied(
        read_as_server(&page),
        "deny.html as the server after the owner's setfacl",
    );
    let out = sh_as(
        BOB,
        &format!("setfacl -m u:{BOB}:rw- '{}'", at("alice/pub/allow.php").display()),
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "another tenant's setfacl: {}",
        text(&out)
    );
    let out = sh_as(ALICE, &format!("setfacl -b '{}'", page.display()));
    assert!(out.status.success(), "setfacl -b: {}", text(&out));
    assert_eq!(
        read_as(BOB, &page).as_deref(),
        Ok(&b"alice page\n"[..]),
        "ACL removed"
    );
    // user.* xattrs: set, read, listed and removed by the owner; another tenant may read
    // (the file is 0644) but not write.
    let out = sh_as(
        ALICE,
        &format!(
            "setfattr -n user.tag -v v1 '{p}' && getfattr --only-values -n user.tag '{p}' && getfattr -d '{p}'",
            p = page.display()
        ),
    );
    assert!(out.status.success(), "user.* as the owner: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("v1"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("user.tag=\"v1\""),
        "{}",
        text(&out)
    );
    let out = sh_as(
        BOB,
        &format!("getfattr --only-values -n user.tag '{}'", page.display()),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1", "{}", text(&out));
    let out = sh_as(BOB, &format!("setfattr -n user.tag -v bob '{}'", page.display()));
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "another tenant's setfattr: {}",
        text(&out)
    );
    let out = sh_as(
        ALICE,
        &format!(
            "setfattr -x user.tag '{p}' && getfattr -n user.tag '{p}'",
            p = page.display()
        ),
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("No such attribute"),
        "{}",
        text(&out)
    );
    // Set-id bits: a write or truncate by a non-owner clears them, as raw (the daemon
    // writes as root, which would keep them; it is told by the kernel and clears them).
    for (op, script) in [
        ("append", "echo more >> '{}'"),
        ("truncate", "truncate -s 1 '{}'"),
    ] {
        let mut modes = Vec::new();
        for dir in [&t.src, &t.mnt] {
            let rel = format!("alice/pub/suid-{op}");
            let p = t.file(&rel, b"#!/bin/sh\n", ALICE);
            chmod(&p, 0o6777);
            let out = sh_as(BOB, &script.replace("{}", &dir.join(&rel).display().to_string()));
            assert!(
                out.status.success(),
                "{op} as BOB in {}: {}",
                dir.display(),
                text(&out)
            );
            modes.push(fs::metadata(&p).expect("stat").mode() & 0o7777);
        }
        assert_eq!(modes[0], 0o777, "raw {op}");
        assert_eq!(
            modes[1], modes[0],
            "{op} through the mount keeps set-id bits raw drops"
        );
    }
    // A default ACL is inherited as raw (umask not applied on top of it).
    let raw_new = sh_as(
        ALICE,
        &format!("echo x > '{}'", t.src.join("alice/dflt/raw.txt").display()),
    );
    let mnt_new = sh_as(
        ALICE,
        &format!("echo x > '{}'", at("alice/dflt/mnt.txt").display()),
    );
    assert!(
        raw_new.status.success() && mnt_new.status.success(),
        "{} {}",
        text(&raw_new),
        text(&mnt_new)
    );
    let (a, b) = (
        getfacl_as(ALICE, &t.src.join("alice/dflt/raw.txt")),
        getfacl_as(ALICE, &t.src.join("alice/dflt/mnt.txt")),
    );
    assert_eq!(
        String::from_utf8_lossy(&b.stdout),
        String::from_utf8_lossy(&a.stdout),
        "inherited ACL"
    );
    drop(m);
}
