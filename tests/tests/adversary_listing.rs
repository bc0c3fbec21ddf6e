//! Issue 10 item 4: directory listings through libc's internal opens. `glob`, `scandir`,
//! `scandirat`, `nftw` and `ftw` open directories inside glibc, past the shim's `opendir`
//! hook: each listed the victim's directory through the tenant's symlink
//! `public_html/v -> ../../bob/public_html`. Under the shim each must report that directory
//! the way it reports an unreadable one (and the denial is logged), and list the tenant's own
//! tree exactly as glibc does bare (the conformance tests below).
//!
//! Needs root (skipped with `SKIP:` otherwise, a failure when `CI` is set).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use toctou_guard_tests::shim_fixture::{ALICE, BOB, Fixture, SERVER, c_program};

/// Names in bob's docroot that no listing through alice's links may show.
const VICTIM_NAMES: [&str; 4] = ["secret.txt", "bob-private", "bob-sub", "bob-deep"];

/// The fixture, plus alice's `v -> ../../bob/public_html` and more known names in bob's tree.
fn victim_fixture(name: &str) -> Option<Fixture> {
    victim_fixture_with(name, "")
}

fn victim_fixture_with(name: &str, extra_conf: &str) -> Option<Fixture> {
    let f = Fixture::new(name, extra_conf)?;
    let v = f.alice("v");
    symlink("../../bob/public_html", &v).unwrap();
    lchown(&v, Some(ALICE), Some(ALICE)).unwrap();
    fs::write(f.bob("bob-private-1.txt"), "x").unwrap();
    fs::create_dir(f.bob("bob-sub")).unwrap();
    fs::write(f.bob("bob-sub/bob-deep.txt"), "x").unwrap();
    for p in ["bob-private-1.txt", "bob-sub", "bob-sub/bob-deep.txt"] {
        chown(f.bob(p), Some(BOB), Some(BOB)).unwrap();
        let mode = if p == "bob-sub" { 0o755 } else { 0o644 };
        fs::set_permissions(f.bob(p), fs::Permissions::from_mode(mode)).unwrap();
    }
    Some(f)
}

/// `listing ARGS` as the server uid in `cwd`, under the shim with `Some(fixture)`, else bare.
fn listing(shim: Option<&Fixture>, args: &[&str], cwd: &Path) -> Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    Fixture::run_maybe(shim, SERVER, cwd, &c_program("listing"), &args)
}

/// The guarded run's stdout; it must have exited normally without a word on fd 2.
#[track_caller]
fn guarded(f: &Fixture, args: &[&str], cwd: &Path) -> String {
    let out = listing(Some(f), args, cwd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code().is_some() && out.stderr.is_empty(),
        "{args:?}: exit {:?}, stderr {:?}, stdout {stdout}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Nothing of bob's names in `out` (but those the caller wrote in its own arguments), and at
/// least one denial logged since the last check.
#[track_caller]
fn not_listed(f: &Fixture, args: &[&str], out: &str) {
    for name in VICTIM_NAMES
        .iter()
        .filter(|n| !args.iter().any(|a| a.contains(*n)))
    {
        assert!(!out.contains(name), "{args:?} listed the victim's {name}:\n{out}");
    }
    let logs = f.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("action=deny") && l.contains("reason=owner-mismatch")),
        "{args:?}: no denial logged: {logs:?}\n{out}"
    );
}

#[test]
fn item4_glob_does_not_list_the_victims_directory() {
    let Some(f) = victim_fixture("list-glob") else {
        return;
    };
    let docroot = f.alice("");
    let abs = format!("{}/v/*", docroot.display());
    // The bare call lists bob's directory: the test would catch the leak.
    let bare = listing(None, &["glob", "-", "v/*"], &docroot);
    assert!(String::from_utf8_lossy(&bare.stdout).contains("v/secret.txt"));
    for (flags, pattern, ret) in [
        ("-", "v/*", "3"),
        ("ERR", "v/*", "2"),
        ("MARK,NOSORT", abs.as_str(), "3"),
        ("BRACE", "{v,bobdir}/*", "3"),
        ("ONLYDIR", "v/*/", "3"),
        ("-", "v/bob-sub/*", "3"),
    ] {
        let args = ["glob", flags, pattern];
        let out = guarded(&f, &args, &docroot);
        not_listed(&f, &args, &out);
        // Refused like an unreadable directory: errfunc hears EACCES, GLOB_ERR aborts.
        assert!(out.contains(" EACCES\n"), "{args:?}: no errfunc EACCES:\n{out}");
        assert!(
            out.contains(&format!("-> {ret}\n")),
            "{args:?}: expected {ret}:\n{out}"
        );
    }
    // Names confirmed without a listing (no wildcard in the last part, `{a,b}`): judged on
    // the directory that holds them, so a guess is not confirmed either.
    for (flags, pattern) in [
        ("-", "v/secret.txt"),
        ("BRACE", "v/{nope,secret}.txt"),
        ("MARK", "*/secret.txt"),
        ("-", "*/bob-sub"),
        ("ONLYDIR", "v/bob-sub/"),
    ] {
        let bare = listing(None, &["glob", flags, pattern], &docroot);
        assert!(
            !String::from_utf8_lossy(&bare.stdout).contains("pathc 0 "),
            "bare glob {pattern} confirmed nothing"
        );
        let args = ["glob", flags, pattern];
        let out = guarded(&f, &args, &docroot);
        assert!(
            out.contains("pathc 0 "),
            "{args:?} confirmed a victim's name:\n{out}"
        );
        assert!(!f.logs().is_empty(), "{args:?}: no denial logged");
    }
    // NOCHECK: the pattern itself comes back, nothing else.
    let args = ["glob", "NOCHECK", "v/*"];
    let out = guarded(&f, &args, &docroot);
    not_listed(&f, &args, &out);
    assert!(out.contains("pathc 1 ") && out.contains("  v/*\n"), "{out}");
}

#[test]
fn item4_scandir_does_not_list_the_victims_directory() {
    let Some(f) = victim_fixture("list-scandir") else {
        return;
    };
    let docroot = f.alice("");
    let bare = listing(None, &["scandir", "v"], &docroot);
    assert!(String::from_utf8_lossy(&bare.stdout).contains("secret.txt"));
    let abs = f.alice("v/bob-sub");
    let abs = abs.to_str().unwrap();
    for args in [
        &["scandir", "v"][..],
        &["scandir", "v", "nodot", "alpha"],
        &["scandir", "bobdir/"],
        &["scandir", abs, "alpha"],
        &["scandirat", ".", "v"],
        &["scandirat", ".", "v/bob-sub", "nodot"],
        &["scandirat", "/", abs],
    ] {
        let out = guarded(&f, args, &docroot);
        not_listed(&f, args, &out);
        assert_eq!(out, "scandir -> -1 EACCES\n", "{args:?}");
    }
}

#[test]
fn item4_nftw_does_not_list_the_victims_directory() {
    let Some(f) = victim_fixture("list-nftw") else {
        return;
    };
    let docroot = f.alice("");
    let home = f.base.join("home/alice");
    let bare = listing(None, &["nftw", "public_html", "-", "20"], &home);
    assert!(String::from_utf8_lossy(&bare.stdout).contains("v/secret.txt"));
    let abs = docroot.to_str().unwrap().trim_end_matches('/').to_string();
    for flags in [
        "-",
        "DEPTH",
        "CHDIR",
        "MOUNT",
        "DEPTH,CHDIR,MOUNT",
        "ACTIONRETVAL",
    ] {
        for (path, nopenfd) in [("public_html", "20"), (abs.as_str(), "1")] {
            let args = ["nftw", path, flags, nopenfd];
            let out = guarded(&f, &args, &home);
            not_listed(&f, &args, &out);
            // The first link into bob's tree is followed and refused: an unreadable
            // directory (the other, to the same directory, is then skipped as already seen,
            // as glibc does).
            let dnr = |l: &str| {
                l.starts_with("DNR level 1 ")
                    && (l.contains("/v mode 40000") || l.contains("/bobdir mode 40000"))
            };
            assert!(out.lines().any(dnr), "{args:?}: v not reported FTW_DNR:\n{out}");
            assert!(out.contains("nftw -> 0"), "{args:?}:\n{out}");
        }
    }
    // FTW_PHYS: the links are reported as links; a walk started through one is refused.
    let args = ["nftw", "public_html", "PHYS", "20"];
    let out = guarded(&f, &args, &home);
    assert!(
        out.contains("SL level 1 base 12 public_html/v mode 120000\n"),
        "{out}"
    );
    assert!(!VICTIM_NAMES.iter().any(|n| out.contains(*n)), "{out}");
    for flags in ["PHYS", "PHYS,DEPTH,CHDIR"] {
        for path in ["public_html/v/.", "public_html/v/bob-sub"] {
            let args = ["nftw", path, flags, "5"];
            let out = guarded(&f, &args, &home);
            not_listed(&f, &args, &out);
            assert!(out.starts_with("DNR level 0 "), "{args:?}:\n{out}");
        }
    }
}

#[test]
fn item4_ftw_does_not_list_the_victims_directory() {
    let Some(f) = victim_fixture("list-ftw") else {
        return;
    };
    let home = f.base.join("home/alice");
    let bare = listing(None, &["ftw", "public_html", "20"], &home);
    assert!(String::from_utf8_lossy(&bare.stdout).contains("v/secret.txt"));
    for (path, nopenfd) in [("public_html", "20"), ("public_html/v", "1")] {
        let args = ["ftw", path, nopenfd];
        let out = guarded(&f, &args, &home);
        not_listed(&f, &args, &out);
        assert!(
            out.lines()
                .any(|l| l.starts_with("DNR ") && l.contains("/v mode 40000")),
            "{args:?}: v not reported FTW_DNR:\n{out}"
        );
    }
}

/// `mode audit`: the walkers list what they would have been refused, and each refusal is
/// logged as an audit line (the rollout mode of every other hook).
#[test]
fn item4_audit_mode_lists_and_logs() {
    let Some(f) = victim_fixture_with("list-audit", "mode audit\n") else {
        return;
    };
    let docroot = f.alice("");
    for args in [
        &["glob", "-", "v/*"][..],
        &["scandir", "v"],
        &["nftw", "v/.", "PHYS", "5"],
    ] {
        let out = guarded(&f, args, &docroot);
        assert!(out.contains("secret.txt"), "{args:?}: audit mode refused:\n{out}");
        let logs = f.logs();
        assert!(
            logs.iter().any(|l| l.contains("action=audit")),
            "{args:?}: no audit line: {logs:?}"
        );
    }
}

/// Alice's own trees: every kind of entry the walkers report differently.
///
/// `tree`: files, a dot file, `sub/` (with `sib*` and `skip*` names for FTW_ACTIONRETVAL),
/// `deep/d1/d2/f.txt` (deeper than one descriptor), a dangling link, a link to a file, a link
/// to the tree itself (a cycle), `locked/` (0700: unreadable to the server).
/// `tree2`: `nostat/` (0744: readable, not searchable: entries the walk cannot stat).
fn own_trees(f: &Fixture) {
    let t = f.alice("tree");
    for d in ["sub/skipme", "skipdir", "deep/d1/d2", "locked", "x.y"] {
        fs::create_dir_all(t.join(d)).unwrap();
    }
    for file in [
        "a.txt",
        "b.php",
        ".hidden",
        "sub/c.txt",
        "sub/sibA",
        "sub/z.txt",
        "sub/skipme/x",
        "skipdir/inner",
        "deep/d1/d2/f.txt",
        "locked/l.txt",
        "x.y/{q}",
    ] {
        fs::write(t.join(file), file).unwrap();
    }
    symlink("nothere", t.join("dangling")).unwrap();
    symlink("a.txt", t.join("ownfile")).unwrap();
    symlink(".", t.join("self")).unwrap();
    let t2 = f.alice("tree2");
    fs::create_dir_all(t2.join("nostat")).unwrap();
    fs::write(t2.join("nostat/n1"), "n").unwrap();
    fs::write(t2.join("top.txt"), "t").unwrap();
    let out = Command::new("chown")
        .args(["-hR", &format!("{ALICE}:{ALICE}")])
        .arg(&t)
        .arg(&t2)
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::set_permissions(t.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(t2.join("nostat"), fs::Permissions::from_mode(0o744)).unwrap();
}

/// Each call answers the same bare and guarded (the stdout is the whole answer) and logs
/// nothing.
#[track_caller]
fn conform(f: &Fixture, cases: &[Vec<String>], cwd: &Path) {
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bare = listing(None, &args, cwd);
        let bare = String::from_utf8_lossy(&bare.stdout);
        let shim = guarded(f, &args, cwd);
        assert_eq!(bare, shim, "bare vs guarded for {args:?}");
        assert!(!shim.starts_with("usage"), "{args:?}");
    }
    let logs = f.logs();
    assert!(logs.is_empty(), "own trees logged denials: {logs:?}");
}

fn case(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

#[test]
fn item4_glob_and_scandir_list_own_trees_as_glibc() {
    let Some(f) = Fixture::new("list-own", "") else {
        return;
    };
    own_trees(&f);
    let docroot = f.alice("");
    let abs = format!("{}/tree", docroot.display());
    let mut cases = Vec::new();
    for flags in [
        "-",
        "MARK",
        "ONLYDIR",
        "NOSORT",
        "PERIOD",
        "ERR",
        "MARK,ONLYDIR,PERIOD",
    ] {
        for pattern in [
            "tree/*",
            "tree/*/*",
            "tree/.*",
            "tree2/*/*",
            "t*/s*/*",
            "tree/a.txt",
        ] {
            cases.push(case(&["glob", flags, pattern]));
        }
        cases.push(case(&["glob", flags, &format!("{abs}/*/*")]));
    }
    for flags in ["BRACE", "BRACE,MARK", "BRACE,NOCHECK"] {
        cases.push(case(&["glob", flags, "tree/{a,b}.*"]));
        cases.push(case(&["glob", flags, "tree/{sub,deep/d1}/*"]));
        cases.push(case(&["glob", flags, "tree/x.y/{q}"]));
    }
    for flags in ["NOCHECK", "NOCHECK,MARK", "NOESCAPE", "NOCHECK,NOESCAPE"] {
        cases.push(case(&["glob", flags, "tree/nomatch*"]));
        cases.push(case(&["glob", flags, "tree/\\*"]));
        cases.push(case(&["glob", flags, "/nonexistent-dir/*"]));
    }
    // GLOB_APPEND (every pattern after the first), with and without GLOB_DOOFFS.
    for flags in ["-", "DOOFFS", "MARK,DOOFFS", "NOCHECK"] {
        cases.push(case(&[
            "glob",
            flags,
            "tree/a*",
            "tree/sub/*",
            "tree/none*",
            "tree/locked/*",
        ]));
    }
    cases.push(case(&["glob-alt", "tree/*"]));
    for dir in [
        "tree",
        "tree/",
        "tree/sub",
        "tree2/nostat",
        "tree/locked",
        "tree/a.txt",
        "none",
        "",
    ] {
        for extra in [&[][..], &["nodot"], &["alpha"], &["nodot", "alpha"]] {
            let mut c = case(&["scandir", dir]);
            c.extend(case(extra));
            cases.push(c);
        }
    }
    for (d, name) in [
        ("tree", "sub"),
        ("tree", "."),
        ("tree", "../tree2"),
        ("/", &abs),
        ("tree", "locked"),
    ] {
        cases.push(case(&["scandirat", d, name, "alpha"]));
    }
    conform(&f, &cases, &docroot);
}

#[test]
fn item4_nftw_and_ftw_walk_own_trees_as_glibc() {
    let Some(f) = Fixture::new("list-own-walk", "") else {
        return;
    };
    own_trees(&f);
    let docroot = f.alice("");
    let abs = format!("{}/tree", docroot.display());
    let mut cases = Vec::new();
    let paths = [
        "tree",
        "tree/",
        "./tree//",
        "tree2",
        abs.as_str(),
        "tree/sub",
        "tree/a.txt",
    ];
    for flags in [
        "-",
        "PHYS",
        "DEPTH",
        "CHDIR",
        "MOUNT",
        "DEPTH,PHYS,CHDIR",
        "ACTIONRETVAL",
        "ACTIONRETVAL,DEPTH",
        "ACTIONRETVAL,CHDIR,PHYS",
        "MOUNT,PHYS,DEPTH",
    ] {
        for path in paths {
            for nopenfd in ["1", "2", "20"] {
                cases.push(case(&["nftw", path, flags, nopenfd]));
            }
        }
    }
    for path in ["tree/dangling", "tree/ownfile", "tree/self", "none", ""] {
        cases.push(case(&["nftw", path, "-", "5"]));
        cases.push(case(&["nftw", path, "PHYS,CHDIR", "5"]));
    }
    cases.push(case(&["nftw", "tree", "BOGUS", "5"]));
    for path in ["tree", "tree2", "tree/sub", abs.as_str(), "none"] {
        for nopenfd in ["0", "1", "20"] {
            cases.push(case(&["ftw", path, nopenfd]));
        }
    }
    conform(&f, &cases, &docroot);
    // FTW_CHDIR from a working directory the server may search but not read (glibc then
    // returns to it by name, the guard through an O_PATH descriptor).
    let hidden = f.alice("tree/x.y");
    fs::set_permissions(&hidden, fs::Permissions::from_mode(0o711)).unwrap();
    let mut cases = Vec::new();
    for flags in ["CHDIR", "CHDIR,DEPTH,PHYS"] {
        for path in ["../sub", "..", &abs] {
            cases.push(case(&["nftw", path, flags, "3"]));
        }
    }
    conform(&f, &cases, &hidden);
}

/// The same listings while the tenant flips `race/r` between its own directory and bob's
/// (`renameat2(RENAME_EXCHANGE)` with `race/r-alt`, the harness's swapper): the guard decides
/// on the directory it opened, so no interleaving shows bob's names; bare, they leak.
#[test]
fn item4_listings_under_a_symlink_flip_race() {
    use std::time::Duration;
    use toctou_attack::scenario::SwapPlan;
    use toctou_attack::swapper::{Swapper, SwapperOptions};
    use toctou_guard_tests::poll::wait_until;

    let Some(f) = victim_fixture("list-race") else {
        return;
    };
    let _heavy = toctou_guard_tests::heavy();
    let race = f.alice("race");
    fs::create_dir_all(race.join("own")).unwrap();
    fs::write(race.join("own/own-1.txt"), "own").unwrap();
    symlink("own", race.join("r")).unwrap();
    symlink("../../../bob/public_html", race.join("r-alt")).unwrap();
    let out = Command::new("chown")
        .args(["-hR", &format!("{ALICE}:{ALICE}")])
        .arg(&race)
        .output()
        .unwrap();
    assert!(out.status.success());
    let plan = SwapPlan {
        dir: race.clone(),
        pairs: vec![("r".into(), "r-alt".into())],
        max_threads: 1,
    };
    let opts = SwapperOptions {
        uid: ALICE,
        gid: ALICE,
        threads: 1,
        nice: 0,
        max_lifetime: Duration::from_secs(120),
    };
    let swapper = Swapper::spawn(&plan, &opts).expect("swapper");
    swapper.run();
    wait_until("the swapper's first swaps", Duration::from_secs(10), || {
        swapper.swaps() > 100
    });
    let docroot = f.alice("");
    // Each run repeats its listing until it has seen both states of the flip (bounded in
    // count and time inside the helper).
    let run = |shim: Option<&Fixture>, args: &[&str], seen2: &str| {
        let program = c_program("listing");
        let mut cmd = match shim {
            Some(f) => f.command(&program),
            None => Command::new(&program),
        };
        let out = cmd
            .args(args)
            .env("LISTING_REPEAT", "200000")
            .env("LISTING_SEEN1", "own-1.txt")
            .env("LISTING_SEEN2", seen2)
            .current_dir(&docroot)
            .uid(SERVER)
            .gid(SERVER)
            .output()
            .unwrap();
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cases: [(&[&str], &str); 4] = [
        (&["glob", "-", "race/r/*"], " EACCES"),
        (&["scandir", "race/r"], "-1 EACCES"),
        (&["nftw", "race/r", "-", "5"], "DNR level 0"),
        (&["nftw", "race/r/.", "PHYS,CHDIR", "5"], "DNR level 0"),
    ];
    for (args, refused) in cases {
        let bare = run(None, args, "secret.txt");
        assert!(
            bare.contains("secret.txt") && bare.contains("own-1.txt"),
            "{args:?}: bare, the race never showed both directories:\n{bare}"
        );
        let out = run(Some(&f), args, refused);
        not_listed(&f, args, &out);
        assert!(
            out.contains("own-1.txt") && out.contains(refused),
            "{args:?}: the race never showed both directories:\n{out}"
        );
    }
    let stats = swapper.quit();
    assert!(stats.swaps > 0);
}
