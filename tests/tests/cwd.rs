//! Relative opens are judged by where the working directory is when they happen, however it
//! got there: `chdir`, `fchdir`, another thread's `chdir` (through libc or the raw system
//! call, which no hook sees), and a rename that moves it into a tenant's root behind the
//! guard's back. (Moved *out of* a root: `adversary.rs`, `moved-cwd`.) The shim asks the
//! kernel (`getcwd`) on every relative open rather than remember the directory: see
//! shim/src/basedir.rs for why a remembered one cannot be trusted.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::path::Path;

use toctou_guard_tests::shim_fixture::{ALICE, Fixture, c_program};

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
