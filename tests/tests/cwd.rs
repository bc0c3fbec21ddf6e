//! Relative opens are judged by where the working directory is when they happen, however it
//! got there: `chdir`, `fchdir`, another thread's `chdir` (through libc or the raw system
//! call, which no hook sees), and a rename that moves it into a tenant's root behind the
//! guard's back. (Moved *out of* a root: `adversary.rs`, `moved-cwd`.) The shim remembers the
//! working directory only when no tenant can move it (a root-owned chain, shim/src/cwd.rs),
//! forgets it on every call that moves it, and never learns it from another process's
//! directory; a tenant-owned one is asked of the kernel (`getcwd`) on every relative open.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use toctou_guard_tests::fuse_tree;
use toctou_guard_tests::shim_fixture::{ALICE, Fixture, SERVER, c_program};

fn cwd(f: &Fixture, args: &[&Path]) -> Vec<String> {
    let args: Vec<&OsStr> = args.iter().map(|p| p.as_os_str()).collect();
    let out = f.run(&c_program("cwd"), &args);
    assert!(
        out.stderr.is_empty(),
        "the shim must not write to fd 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn relative_opens_follow_the_working_directory_however_it_changed() {
    let Some(f) = Fixture::new("cwd", "") else {
        return;
    };
    let docroot = f.alice("");
    for mode in ["chdir", "fchdir", "thread-chdir", "thread-rawchdir"] {
        let m = Path::new(mode);
        assert_eq!(
            cwd(&f, &[m, &docroot, Path::new("index.html")]),
            ["OK alice-own"],
            "{mode}: own file"
        );
        assert_eq!(
            cwd(&f, &[m, &docroot, Path::new("link")]),
            ["ERR EACCES"],
            "{mode}: judged under alice's root"
        );
    }
}

#[test]
fn a_working_directory_moved_into_a_root_is_judged_there() {
    let Some(f) = Fixture::new("cwd-moved", "") else {
        return;
    };
    // alice's directory outside every root, with her symlink to bob's file in it; the server
    // may move it (0777 parents, as a shared upload area would be).
    let private = f.base.join("home/alice/private");
    let x = private.join("x");
    fs::create_dir_all(&x).unwrap();
    for d in [&private, &x] {
        chown(d, Some(ALICE), Some(ALICE)).unwrap();
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let link = x.join("link");
    symlink(f.bob("secret.txt"), &link).unwrap();
    lchown(&link, Some(ALICE), Some(ALICE)).unwrap();
    let moved = f.alice("uploads/x");
    assert_eq!(
        cwd(&f, &[Path::new("moved-into"), &x, Path::new("link"), &moved]),
        [
            // Outside every root nothing is judged (by design: roots are what is guarded)...
            "OK BOB-SECRET",
            // ...but the same working directory, now inside alice's root, is judged there.
            "ERR EACCES",
        ]
    );
}

#[test]
fn a_remembered_directory_is_forgotten_by_every_call_that_moves_it() {
    let Some(f) = Fixture::new("cwd-forget", "") else {
        return;
    };
    let docroot = f.alice("");
    // "/" is remembered first; each call then moves the working directory into alice's
    // docroot. Judged by the stale "/", `link` would be `/link`: outside every root, unjudged.
    for how in [
        "after-chdir",
        "after-fchdir",
        "after-thread-chdir",
        "after-fts",
        "after-clone-fs",
    ] {
        let h = Path::new(how);
        assert_eq!(
            cwd(&f, &[h, &docroot, Path::new("index.html")]),
            ["OK alice-own"],
            "{how}: own file"
        );
        assert_eq!(
            cwd(&f, &[h, &docroot, Path::new("link")]),
            ["ERR EACCES"],
            "{how}: judged under alice's root"
        );
    }
    // glibc's daemon() moves to "/" with a chdir no hook sees; "/proc" was remembered.
    let from_root = f.alice("link");
    let rel = from_root.strip_prefix("/").unwrap();
    assert_eq!(
        cwd(&f, &[Path::new("after-daemon"), rel]),
        ["ERR EACCES"],
        "daemon"
    );
}

#[test]
fn no_other_process_or_thread_teaches_its_directory() {
    let Some(f) = Fixture::new("cwd-teach", "") else {
        return;
    };
    let docroot = f.alice("");
    // A vfork child shares our memory, not our directory; a thread that unshared CLONE_FS
    // has its own. Either learning "/" for us would make `link` read as `/link`. And the
    // reverse: our other thread learning our "/" while a vfork child is in alice's docroot.
    for how in ["vfork-teach", "unshare-teach", "vfork-thread"] {
        let h = Path::new(how);
        assert_eq!(
            cwd(&f, &[h, &docroot, Path::new("link")]),
            ["ERR EACCES"],
            "{how}"
        );
        assert_eq!(
            cwd(&f, &[h, &docroot, Path::new("index.html")]),
            ["OK alice-own"],
            "{how}: own file"
        );
    }
}

#[test]
fn nftw_with_ftw_chdir_forgets_the_directory_it_walked_on_its_way_back() {
    let Some(f) = Fixture::new("cwd-nftw", "") else {
        return;
    };
    // The walk remembers "/" in its callback, then goes back to alice's docroot: judged by
    // the stale "/", `link` would be `/link`, outside every root, and bob's secret served.
    for rel in ["link", "index.html"] {
        let want = if rel == "link" {
            "ERR EACCES"
        } else {
            "OK alice-own"
        };
        assert_eq!(
            cwd(&f, &[Path::new("nftw-back"), &f.alice(""), Path::new(rel)]),
            [want],
            "{rel}"
        );
    }
}

/// `getcwd` system calls made by `cwd count DIR REL N` (as the server uid, under strace,
/// whose trace is all that reaches fd 2: the shim never writes there), and what it printed.
fn getcwd_calls(f: &Fixture, dir: &Path, rel: &str, n: u32) -> (usize, Vec<String>) {
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=getcwd"])
        .arg(c_program("cwd"))
        .args([
            OsStr::new("count"),
            dir.as_os_str(),
            OsStr::new(rel),
            OsStr::new(&n.to_string()),
        ])
        .env("LD_PRELOAD", &f.so)
        .env("TOCTOU_GUARD_CONFIG", &f.conf)
        .uid(SERVER)
        .gid(SERVER)
        .output()
        .expect("strace (apt-get install strace)");
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{trace}");
    let calls = trace.lines().filter(|l| l.contains("getcwd(")).count();
    let printed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (calls, printed)
}

#[test]
fn a_root_owned_working_directory_costs_one_getcwd_a_tenants_one_per_open() {
    let Some(f) = Fixture::new("cwd-count", "") else {
        return;
    };
    // The fixture's base: root's, under the sticky /tmp, so no tenant can move it. Paths
    // into alice's root from it are judged there, with no getcwd after the first.
    let base_mode = fs::metadata(&f.base).unwrap().permissions().mode();
    assert_eq!(
        base_mode & 0o022,
        0,
        "the fixture's base must be writable by root only"
    );
    let (calls, printed) = getcwd_calls(&f, &f.base, "home/alice/public_html/link", 200);
    assert_eq!(printed, ["ERR EACCES"]);
    assert_eq!(calls, 1, "one getcwd to learn the directory, none per open");
    let (calls, printed) = getcwd_calls(&f, &f.base, "home/alice/public_html/index.html", 200);
    assert_eq!(printed, ["OK alice-own"]);
    assert_eq!(calls, 1);
    // alice's own directory could be renamed by her at any moment: asked every time.
    let (calls, printed) = getcwd_calls(&f, &f.alice(""), "link", 200);
    assert_eq!(printed, ["ERR EACCES"]);
    assert_eq!(calls, 200);
}

#[test]
fn a_working_directory_on_fuse_is_never_remembered() {
    let Some(f) = Fixture::new("cwd-fuse", "") else {
        return;
    };
    let Some(daemon) = fuse_tree::prerequisites() else {
        return;
    };
    // Root-owned all the way down, but on FUSE: a user's own mount (fusermount3) could report
    // any owner and rename at will, so the kernel is asked every time.
    let tree = fuse_tree::Tree::new("cwd");
    tree.dir("sys", 0);
    let _mount = fuse_tree::Mount::start(&daemon, &tree, &["--mode", "noopen"]);
    let (calls, printed) = getcwd_calls(&f, &tree.mnt.join("sys"), "none", 50);
    assert_eq!(printed, ["ERR ENOENT"]);
    assert_eq!(calls, 50);
}
