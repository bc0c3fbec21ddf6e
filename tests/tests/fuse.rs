//! `toctou-guard-fs` against real files of two tenants, in both data modes: own files read
//! byte for byte; another tenant's file through a symlink, a hard link, `..` or a swapped
//! directory refused with EACCES; a RENAME_EXCHANGE race that never leaks; a killed daemon
//! that fails closed (ENOTCONN); denial lines on the syslog socket; a clean SIGTERM.
//!
//! Needs root and /dev/fuse (skipped with `SKIP:` otherwise, a failure when `CI` is set).
//! Uses target/release/toctou-guard-fs (from `cargo build --release --workspace`), or builds
//! it into this test's scratch directory. The harness is `toctou_guard_tests::fuse_tree`.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use toctou_guard_tests::fuse_tree::{
    ALICE, BOB, Mount, Tree, VICTIM, assert_eacces, counter, is_fuse_mount, prerequisites, read_as_server,
    wait_stats,
};
use toctou_guard_tests::poll::{wait_for, wait_until};

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn own_files_and_refusals(mode: &str) {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new(mode);
    let files: Vec<(String, Vec<u8>)> = [0usize, 1, 4095, 4097, 200_000, 3 << 20]
        .iter()
        .map(|&n| (format!("f{n}.bin"), pseudo_random(n, n as u64 + 7)))
        .collect();
    for (name, data) in &files {
        t.file(&format!("alice/pub/{name}"), data, ALICE);
    }
    t.file("alice/pub/index.html", b"alice's page\n", ALICE);
    t.dir("alice/pub/sub", ALICE);
    t.file("alice/pub/sub/deep.txt", b"deep\n", ALICE);
    // Links that stay in alice's tree: served as their targets.
    t.link("alice/pub/good", "index.html", ALICE);
    t.link("alice/www", "pub", ALICE);
    let abs_own = t.src.join("alice/pub/index.html");
    t.link("alice/pub/abs-own", abs_own.to_str().expect("utf-8"), ALICE);
    // Every way into bob's file from alice's tree.
    t.link("alice/pub/evil", "../../bob/pub/secret", ALICE);
    let abs_victim = t.src.join("bob/pub/secret");
    t.link("alice/pub/evil-abs", abs_victim.to_str().expect("utf-8"), ALICE);
    t.link("alice/pub/etc", "/etc/passwd", ALICE);
    t.link("alice/pub/up", "../../../../../../../etc/passwd", ALICE);
    t.link("alice/pub/dotdot", "sub/../../../bob/pub/secret", ALICE);
    t.link("alice/pub/bobdir", "../../bob/pub", ALICE);
    fs::hard_link(&abs_victim, t.src.join("alice/pub/hard")).expect("hard link");
    // A swapped directory: alice's `swap` exchanged for a symlink to bob's directory.
    t.dir("alice/pub/swap", ALICE);
    t.file("alice/pub/swap/secret", b"alice's own swap/secret\n", ALICE);
    t.link("alice/pub/swap.new", "../../bob/pub", ALICE);
    assert!(
        exchange(&t.src.join("alice/pub/swap.new"), &t.src.join("alice/pub/swap")),
        "RENAME_EXCHANGE"
    );
    // A directory of bob's moved into alice's tree (by root; a tenant cannot).
    t.dir("bob/moved", BOB);
    t.file("bob/moved/secret", VICTIM, BOB);
    fs::rename(t.src.join("bob/moved"), t.src.join("alice/pub/moved")).expect("mv dir");
    // A tenant directory that is a symlink (its owner says nothing about what it leads to).
    symlink("bob", t.src.join("carol")).expect("symlink tenant");

    let mut m = Mount::start(&bin, &t, &["--mode", mode]);
    let pubdir = t.mnt.join("alice/pub");
    for (name, data) in &files {
        let got = fs::read(pubdir.join(name)).expect("read own file");
        assert!(got == *data, "{name}: {} bytes differ", data.len());
        let got = read_as_server(&pubdir.join(name)).expect("server reads own file");
        assert!(got == *data, "{name} as server uid: bytes differ");
    }
    for p in ["good", "abs-own", "index.html"] {
        assert_eq!(fs::read(pubdir.join(p)).expect(p), b"alice's page\n", "{p}");
    }
    assert_eq!(
        fs::read(t.mnt.join("alice/www/sub/deep.txt")).expect("through dir link"),
        b"deep\n"
    );
    assert_eq!(
        fs::read(t.mnt.join("bob/pub/secret")).expect("bob reads his own"),
        VICTIM,
        "bob's file in bob's tree is bob's to serve"
    );
    // Links are never shown to the kernel: no readlink, realpath stays in alice's tree.
    let meta = fs::symlink_metadata(pubdir.join("good")).expect("lstat");
    assert!(meta.file_type().is_file(), "a link is presented as its target");
    assert!(fs::read_link(pubdir.join("good")).is_err());
    let real = fs::canonicalize(t.mnt.join("alice/www/index.html")).expect("realpath");
    assert!(real.starts_with(t.mnt.join("alice")), "{}", real.display());

    for p in [
        "evil",
        "evil-abs",
        "etc",
        "up",
        "dotdot",
        "hard",
        "bobdir/secret",
        "moved/secret",
    ] {
        assert_eacces(&pubdir.join(p));
    }
    assert_eacces(&pubdir.join("swap/secret"));
    assert_eacces(&t.mnt.join("carol/pub/secret"));
    assert!(
        fs::read_dir(pubdir.join("bobdir")).is_err(),
        "bob's directory listed"
    );
    // readdir works and names what is there.
    let names: Vec<String> = fs::read_dir(&pubdir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for n in ["index.html", "evil", "sub", "f0.bin"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    // Read-only by default.
    let err = fs::write(pubdir.join("new"), b"x").expect_err("writable");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert!(m.stop().is_some_and(|s| s.success()), "SIGTERM: exit 0");
    assert!(!is_fuse_mount(&t.mnt), "still mounted after SIGTERM");
}

#[test]
fn fuse_own_files_and_refusals_noopen() {
    own_files_and_refusals("noopen");
}

#[test]
fn fuse_own_files_and_refusals_passthrough() {
    own_files_and_refusals("passthrough");
}

/// `renameat2(RENAME_EXCHANGE)` of two paths.
fn exchange(a: &Path, b: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let (Ok(a), Ok(b)) = (
        CString::new(a.as_os_str().as_bytes()),
        CString::new(b.as_os_str().as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    r == 0
}

/// A tenant flips its own file with a symlink to the victim's, as fast as it can, while
/// readers read the name through the mount (entry/attr caching off, so every open looks the
/// name up again). Zero reads may return the victim's bytes.
fn race(mode: &str, intermediate: bool) {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new(&format!("race-{mode}"));
    let own = b"ALICE-OWN-CONTENT\n".repeat(4);
    // Flipped: the final component (file <-> link to bob's file), or an intermediate
    // directory (alice's dir <-> link to bob's dir holding a file of the same name).
    let (flip_a, flip_b, read_rel) = if intermediate {
        t.dir("alice/pub/d", ALICE);
        t.file("alice/pub/d/page", &own, ALICE);
        t.file("bob/pub/page", VICTIM, BOB);
        t.link("alice/pub/d.flip", "../../bob/pub", ALICE);
        ("alice/pub/d", "alice/pub/d.flip", "alice/pub/d/page")
    } else {
        t.file("alice/pub/page", &own, ALICE);
        t.link("alice/pub/page.flip", "../../bob/pub/secret", ALICE);
        ("alice/pub/page", "alice/pub/page.flip", "alice/pub/page")
    };
    let _m = Mount::start(
        &bin,
        &t,
        &["--mode", mode, "--entry-ttl-ms", "0", "--attr-ttl-ms", "0"],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, flips) = (stop.clone(), flips.clone());
        let (a, b) = (t.src.join(flip_a), t.src.join(flip_b));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if exchange(&a, &b) {
                    flips.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let (ok, denied, other, leaked) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    const READS_PER_THREAD: u64 = 5_000;
    let deadline = Instant::now() + Duration::from_secs(8);
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (ok, denied, other, leaked) = (ok.clone(), denied.clone(), other.clone(), leaked.clone());
            let path = t.mnt.join(read_rel);
            let own = own.clone();
            std::thread::spawn(move || {
                for _ in 0..READS_PER_THREAD {
                    if Instant::now() >= deadline {
                        break;
                    }
                    match fs::read(&path) {
                        Ok(d) if d == VICTIM || d.windows(11).any(|w| w == b"BOB-SECRET-") => {
                            leaked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(d) if d == own => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        // A short read of a file that was swapped mid-read is still alice's.
                        Ok(_) => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                            denied.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == ErrorKind::NotFound => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            })
        })
        .collect();
    // Control, same run: the raw tree, which checks nothing, does serve the victim's bytes.
    let raw_leaks = {
        let raw = t.src.join(read_rel);
        let mut n = 0u64;
        for _ in 0..20_000 {
            if fs::read(&raw).is_ok_and(|d| d == VICTIM) {
                n += 1;
                if n >= 10 {
                    break;
                }
            }
        }
        n
    };
    for r in readers {
        r.join().expect("reader");
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper");
    let (ok, denied, other, leaked) = (
        ok.load(Ordering::Relaxed),
        denied.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        leaked.load(Ordering::Relaxed),
    );
    eprintln!(
        "race {mode} {}: {ok} own, {denied} refused, {other} other, {leaked} leaked, {} flips; \
         raw tree leaked {raw_leaks}",
        if intermediate {
            "intermediate dir"
        } else {
            "final component"
        },
        flips.load(Ordering::Relaxed)
    );
    assert!(
        raw_leaks > 0,
        "the raw tree never leaked: the race proves nothing"
    );
    assert_eq!(leaked, 0, "victim bytes served through the mount");
    assert!(ok > 0, "no read saw the tenant's own file: the race was not run");
    assert!(denied > 0, "no read hit the symlink: the race was not run");
}

#[test]
fn fuse_race_rename_exchange_noopen() {
    race("noopen", false);
}

#[test]
fn fuse_race_directory_swap_noopen() {
    race("noopen", true);
}

#[test]
fn fuse_race_directory_swap_passthrough() {
    race("passthrough", true);
}

#[test]
fn fuse_race_rename_exchange_passthrough() {
    race("passthrough", false);
}

/// kill -9 the daemon while readers read: errors, never the victim's bytes, and the mount
/// answers ENOTCONN (never the raw tree).
#[test]
fn fuse_killed_daemon_fails_closed() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("kill");
    let own = pseudo_random(100_000, 3);
    t.file("alice/pub/page", &own, ALICE);
    t.link("alice/pub/evil", "../../bob/pub/secret", ALICE);
    let mut m = Mount::start(&bin, &t, &["--entry-ttl-ms", "50", "--attr-ttl-ms", "50"]);
    let stop = Arc::new(AtomicBool::new(false));
    // Per reader (0: alice's page, 1: the link to bob's file): reads served and failed.
    let served: Arc<[AtomicU64; 2]> = Arc::default();
    let failed: Arc<[AtomicU64; 2]> = Arc::default();
    let leaked = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let (stop, served, failed, leaked) =
                (stop.clone(), served.clone(), failed.clone(), leaked.clone());
            let path = t.mnt.join(if i == 0 {
                "alice/pub/page"
            } else {
                "alice/pub/evil"
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match fs::read(&path) {
                        Ok(d) if d.windows(11).any(|w| w == b"BOB-SECRET-") => {
                            leaked.fetch_add(1, Ordering::Relaxed)
                        }
                        Ok(_) => served[i].fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed[i].fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let load = |c: &[AtomicU64; 2]| [c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed)];
    // Both readers under way against the live daemon: the page served, the link refused.
    wait_until(
        "the readers' first answers from the live daemon (page served, link refused)",
        Duration::from_secs(4),
        || load(&served)[0] > 0 && load(&failed)[1] > 0,
    );
    m.kill();
    let served_at_kill = load(&served)[0];
    // Both readers go on against the dead mount until each has failed a good many times
    // (names and attributes cached before the kill expire within 50 ms).
    let failed_at_kill = load(&failed);
    wait_until(
        "both readers to fail 20 times against the killed daemon's mount",
        Duration::from_secs(4),
        || {
            let now = load(&failed);
            (0..2).all(|i| now[i] >= failed_at_kill[i] + 20)
        },
    );
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
    assert_eq!(leaked.load(Ordering::Relaxed), 0, "victim bytes served");
    assert!(served_at_kill > 0, "no read succeeded before the kill");
    let page = t.mnt.join("alice/pub/page");
    // Once the page's cached attributes have expired (50 ms), the kernel has to ask the
    // dead daemon.
    let err = wait_for(
        "a stat of the page on the dead mount to reach the kernel (attr TTL 50 ms)",
        Duration::from_secs(2),
        || fs::metadata(&page).err(),
    );
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    let err = fs::read(&page).expect_err("dead mount served a file");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    assert!(fs::read_dir(&t.mnt).is_err(), "the raw tree is visible");
    let st = Command::new("umount")
        .arg("-l")
        .arg(&t.mnt)
        .status()
        .expect("umount");
    assert!(st.success());
}

/// Denials reach the syslog socket as one line each, in the documented format; write
/// mode creates files owned by the tenant; SIGUSR1 writes the counters.
#[test]
fn fuse_denial_log_rw_and_stats() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("log");
    t.file("alice/pub/index.html", b"hello\n", ALICE);
    t.link("alice/pub/evil", "../../bob/pub/secret", ALICE);
    let sock_path = t.base.join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind log socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let conf = t.base.join("guard.conf");
    fs::write(
        &conf,
        format!(
            "mode enforce\nroot {}/*\nlog_socket {}\n",
            t.src.display(),
            sock_path.display()
        ),
    )
    .expect("write config");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).expect("chmod");
    let stats = t.base.join("stats");
    let conf_s = conf.to_string_lossy().into_owned();
    let stats_s = stats.to_string_lossy().into_owned();
    // Short cache TTLs: a change made to SOURCE outside the mount shows within 50 ms.
    let mut m = Mount::start(
        &bin,
        &t,
        &[
            "--config",
            &conf_s,
            "-o",
            "rw",
            "--stats",
            &stats_s,
            "--entry-ttl-ms",
            "50",
            "--attr-ttl-ms",
            "50",
        ],
    );

    assert_eacces(&t.mnt.join("alice/pub/evil"));
    let mut buf = [0u8; 1024];
    let n = sock.recv(&mut buf).expect("a denial line");
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    // The shared line format (README, "The denial line"): the first reader is this test,
    // as root (uid=0), under its thread's name.
    let fixed = format!(
        "]: action=deny reason=owner-mismatch mode=enforce uid=0 owner={BOB} expected={ALICE} \
         suppressed=0 comm="
    );
    let names = format!(
        " tenant={src}/alice path={src}/alice/pub/evil",
        src = t.src.display()
    );
    assert!(
        line.starts_with(&format!("<84>toctou-guard-fs[{}", m.pid()))
            && line.contains(&fixed)
            && line.ends_with(&names),
        "{line}"
    );

    // Warm reads: no OPEN, FLUSH or READ reaches the daemon (no-open mode, page cache).
    let page = t.mnt.join("alice/pub/index.html");
    assert_eq!(fs::read(&page).expect("read"), b"hello\n");
    m.signal("USR1");
    let before = wait_stats(&stats, "");
    for _ in 0..50 {
        assert_eq!(fs::read(&page).expect("warm read"), b"hello\n");
    }
    m.signal("USR1");
    let after = wait_stats(&stats, &before);
    for op in ["open", "flush", "read", "release"] {
        assert_eq!(
            counter(&before, op),
            counter(&after, op),
            "{op}: {before} -> {after}"
        );
    }

    // Writes under the same rule: new files belong to the tenant; O_TRUNC is not lost.
    fs::write(t.mnt.join("alice/pub/new.txt"), b"first version, long\n").expect("create");
    fs::write(t.mnt.join("alice/pub/new.txt"), b"second\n").expect("truncate+write");
    assert_eq!(
        fs::read(t.src.join("alice/pub/new.txt")).expect("src"),
        b"second\n"
    );
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(t.src.join("alice/pub/new.txt")).expect("stat");
    assert_eq!(md.uid(), ALICE, "created through the mount, owned by the tenant");
    fs::create_dir(t.mnt.join("alice/pub/d")).expect("mkdir");
    fs::rename(t.mnt.join("alice/pub/new.txt"), t.mnt.join("alice/pub/d/n.txt")).expect("rename");
    fs::remove_file(t.mnt.join("alice/pub/d/n.txt")).expect("unlink");
    fs::remove_dir(t.mnt.join("alice/pub/d")).expect("rmdir");
    assert!(symlink("x", t.mnt.join("alice/pub/l")).is_err(), "symlink made");
    // A change made to SOURCE outside the mount shows once the attribute TTL runs out (its
    // size differs, so the kernel drops the cached pages whatever the mtime granularity).
    t.file("alice/pub/index.html", b"changed outside\n", ALICE);
    wait_until(
        "a change to SOURCE to show through the mount (attr TTL 50 ms)",
        Duration::from_secs(2),
        || fs::read(&page).expect("read") == b"changed outside\n",
    );
    assert!(m.stop().is_some_and(|s| s.success()), "SIGTERM: exit 0");
}

/// `mode audit`: an owner mismatch is served and logged as `action=audit`; a link out of
/// SOURCE is still refused. `--owner UID`: one owner for the whole tree.
#[test]
fn fuse_audit_mode_and_fixed_owner() {
    let Some(bin) = prerequisites() else { return };
    let t = Tree::new("audit");
    t.file("alice/pub/index.html", b"hello\n", ALICE);
    t.link("alice/pub/evil", "../../bob/pub/secret", ALICE);
    t.link("alice/pub/etc", "/etc/passwd", ALICE);
    let sock_path = t.base.join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind log socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let conf = t.base.join("guard.conf");
    fs::write(
        &conf,
        format!(
            "mode audit\nroot {}/*\nlog_socket {}\n",
            t.src.display(),
            sock_path.display()
        ),
    )
    .expect("write config");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).expect("chmod");
    let conf_s = conf.to_string_lossy().into_owned();
    let mut m = Mount::start(&bin, &t, &["--config", &conf_s]);
    assert_eq!(
        fs::read(t.mnt.join("alice/pub/evil")).expect("audit serves"),
        VICTIM
    );
    let mut buf = [0u8; 1024];
    let n = sock.recv(&mut buf).expect("an audit line");
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        line.contains("]: action=audit reason=owner-mismatch mode=audit ")
            && line.ends_with(&format!(" path={}/alice/pub/evil", t.src.display())),
        "{line}"
    );
    assert_eacces(&t.mnt.join("alice/pub/etc"));
    let n = sock.recv(&mut buf).expect("a deny line");
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        line.contains("]: action=deny reason=escapes-tenant mode=audit ")
            && line.ends_with(&format!(" path={}/alice/pub/etc", t.src.display())),
        "{line}"
    );
    assert!(m.stop().is_some_and(|s| s.success()), "SIGTERM: exit 0");

    // --owner: the whole tree is ALICE's; bob's file anywhere is refused, alice's served.
    let owner = ALICE.to_string();
    let m = Mount::start(&bin, &t, &["--owner", &owner]);
    assert_eq!(
        fs::read(t.mnt.join("alice/pub/index.html")).expect("own"),
        b"hello\n"
    );
    assert_eacces(&t.mnt.join("bob/pub/secret"));
    assert_eacces(&t.mnt.join("alice/pub/evil"));
    drop(m);
}
