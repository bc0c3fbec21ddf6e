//! Item 5 of "The shim against a real adversary": path-based calls that create, replace,
//! truncate or remove. With `bobdir` a tenant's symlink to the victim's world-writable
//! docroot, `open(O_CREAT)` was refused, but `mkstemp("bobdir/XXXXXX")` created a file
//! there, `rename` replaced the victim's file and `truncate` emptied it. Each such call
//! must act only in a directory (or on an object) the rule accepts.
//!
//! Needs root (skipped with `SKIP:` otherwise, a failure when `CI` is set).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::Path;

use toctou_guard_tests::shim_fixture::{ALICE, BOB, Fixture, SERVER, c_program};

/// Every entry of a directory tree: name → (mode, uid, size, bytes of a regular file).
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let bytes = if m.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            out.insert(name, (m.mode(), m.uid(), m.len(), bytes));
        }
    }
    out
}

/// The steps, joined by `,` for one run of `mutate`.
fn steps(list: &[Vec<String>]) -> Vec<OsString> {
    let mut args = Vec::new();
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            args.push(OsString::from(","));
        }
        args.extend(s.iter().map(OsString::from));
    }
    args
}

fn step(words: &str) -> Vec<String> {
    words.split(' ').map(str::to_string).collect()
}

/// Run `mutate` in `cwd` as `uid`, with the shim or bare; one output line per step.
fn mutate(f: &Fixture, shim: bool, uid: u32, cwd: &Path, list: &[Vec<String>]) -> Vec<String> {
    let args = steps(list);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let out = Fixture::run_maybe(shim.then_some(f), uid, cwd, &c_program("mutate"), &args);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "mutate: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), list.len(), "one line per step: {lines:?}");
    lines
}

/// Every mutating call, aimed through `via` (the tenant's link to the victim's directory)
/// or at the victim's objects by way of the tenant's own links.
fn attacks(via: &str) -> Vec<Vec<String>> {
    let v = |s: &str| step(&s.replace("V/", &format!("{via}/")));
    [
        "mkstemp V/XXXXXX",
        "mkstemp64 V/XXXXXX",
        "mkostemp V/XXXXXX",
        "mkstemps V/XXXXXX.php 4",
        "mkostemps V/XXXXXX.x 2",
        "mkdtemp V/dXXXXXX",
        "rename own.txt V/secret.txt",
        "renameat own.txt V/secret.txt",
        "renameat2 own.txt V/secret.txt exchange",
        "renameat2 own.txt V/fresh noreplace",
        "rename V/secret.txt stolen.txt",
        "truncate V/secret.txt 0",
        "truncate64 V/secret.txt 1",
        "truncate link 0",
        "unlink V/secret.txt",
        "unlinkat V/secret.txt",
        "remove V/secret.txt",
        "rmdir V/keepdir",
        "unlinkat-dir V/keepdir",
        "remove V/keepdir",
        "link own.txt V/planted",
        "linkat own.txt V/planted",
        "link V/secret.txt stolen-hard",
        "linkat-follow link stolen-follow",
        "symlink /etc/passwd V/planted-link",
        "symlinkat /etc/passwd V/planted-link",
        "mkdir V/newdir",
        "mkdirat V/newdir",
        "mkfifo V/fifo",
        "mkfifoat V/fifo",
        "mknod V/node",
        "mknodat V/node",
        "chmod V/secret.txt 777",
        "chmod link 777",
        "lchmod V/secret.txt 777",
        "fchmodat V/secret.txt 777",
        "fchmodat-nofollow V/secret.txt 777",
        "chown V/secret.txt 0",
        "chown link 0",
        "lchown V/secret.txt 0",
        "fchownat V/secret.txt 0",
        "fchownat-nofollow V/secret.txt 0",
    ]
    .iter()
    .map(|s| v(s))
    .collect()
}

/// Bob's docroot as the fixture made it, plus an empty subdirectory to remove; alice's file
/// to move into it; nothing the previous step left behind.
fn reset(f: &Fixture) {
    let bob = f.bob("");
    for e in fs::read_dir(&bob).unwrap() {
        let p = e.unwrap().path();
        match fs::symlink_metadata(&p).unwrap().is_dir() {
            true => fs::remove_dir_all(&p).unwrap(),
            false => fs::remove_file(&p).unwrap(),
        }
    }
    let secret = f.bob("secret.txt");
    fs::write(&secret, "BOB-SECRET\n").unwrap();
    chown(&secret, Some(BOB), Some(BOB)).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o666)).unwrap();
    let keep = f.bob("keepdir");
    fs::create_dir(&keep).unwrap();
    chown(&keep, Some(BOB), Some(BOB)).unwrap();
    fs::set_permissions(&keep, fs::Permissions::from_mode(0o777)).unwrap();
    for name in ["stolen.txt", "stolen-hard", "stolen-follow"] {
        let _ = fs::remove_file(f.alice(name));
    }
    let own = f.alice("own.txt");
    fs::write(&own, "alice-own\n").unwrap();
    chown(&own, Some(ALICE), Some(ALICE)).unwrap();
}

/// Item 5: every path-based mutation through the tenant's symlink to the victim's
/// world-writable directory (relative from the docroot, and absolute), or on the victim's
/// file through the tenant's own symlink, is refused with `EACCES` and logged, and leaves
/// the victim's names and bytes unchanged. Run as root, for whom the kernel itself refuses
/// nothing; each call from the same starting state. Without the shim the calls do the harm.
#[test]
fn item5_mutations_through_a_symlinked_directory_are_refused() {
    let Some(f) = Fixture::new("adv-mutate", "") else {
        return;
    };
    let docroot = f.alice("");
    reset(&f);
    let before = snapshot(&f.bob(""));
    let abs = f.alice("bobdir").display().to_string();
    let mut wrong = Vec::new();
    let mut harmed_bare = 0;
    for via in ["bobdir", abs.as_str()] {
        for s in attacks(via) {
            reset(&f);
            let got = mutate(&f, true, 0, &docroot, std::slice::from_ref(&s));
            let changed = snapshot(&f.bob("")) != before;
            if got[0] != "ERR EACCES" || changed {
                wrong.push(format!(
                    "{} -> {} (victim's tree changed: {changed})",
                    s.join(" "),
                    got[0]
                ));
            }
            reset(&f);
            mutate(&f, false, 0, &docroot, std::slice::from_ref(&s));
            harmed_bare += usize::from(snapshot(&f.bob("")) != before);
        }
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
    let logs = f.logs();
    assert!(
        logs.iter().any(|l| l.contains("deny") && l.contains("bobdir")),
        "no denial logged: {logs:?}"
    );
    // Without the guard the same calls do the harm (all but the two hard links made in the
    // tenant's own tree, which change nothing in the victim's): the test can fail.
    assert_eq!(
        harmed_bare,
        2 * (attacks("").len() - 2),
        "bare calls that changed the victim's tree"
    );
}

/// The same calls on the tenant's own tree, as the tenant: exactly libc's answers, step by
/// step, in two identical directories (one with the shim, one without).
#[test]
fn item5_own_tree_mutations_match_libc() {
    let Some(f) = Fixture::new("adv-mutate-own", "") else {
        return;
    };
    let list: Vec<Vec<String>> = OWN_STEPS
        .iter()
        .map(|s| step(&s.replace("UID", &ALICE.to_string())))
        .collect();
    let mut outputs = Vec::new();
    for (name, shim) in [("bare", false), ("shim", true)] {
        let dir = f.alice(name);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f.txt"), "0123456789\n").unwrap();
        for p in [&dir, &dir.join("f.txt")] {
            chown(p, Some(ALICE), Some(ALICE)).unwrap();
        }
        outputs.push(mutate(&f, shim, ALICE, &dir, &list));
    }
    for ((s, bare), shim) in list.iter().zip(&outputs[0]).zip(&outputs[1]) {
        assert_eq!(shim, bare, "{}", s.join(" "));
    }
    let logs = f.logs();
    assert!(logs.is_empty(), "legal calls logged denials: {logs:?}");
}

/// Found in review: `mkstemp` in a guarded directory asked `getrandom(2)` for its letters
/// without `GRND_NONBLOCK`: before the entropy pool is ready that blocks, and a signal then
/// fails the call with `EINTR`, which glibc's `mkstemp` never does (it asks without blocking
/// and falls back to the clock). With getrandom failing as before the pool is ready, every
/// call of the family makes a new name, as glibc's does.
#[test]
fn item5_mkstemp_without_entropy_matches_libc() {
    let Some(f) = Fixture::new("adv-mutate-rand", "") else {
        return;
    };
    let mut list = vec![step("no-getrandom")];
    for _ in 0..10 {
        for s in [
            "mkstemp XXXXXX",
            "mkostemp XXXXXX",
            "mkstemps XXXXXX.txt 4",
            "mkdtemp dXXXXXX",
        ] {
            list.push(step(s));
        }
    }
    for (name, shim) in [("bare", false), ("shim", true)] {
        let dir = f.alice(name);
        fs::create_dir(&dir).unwrap();
        chown(&dir, Some(ALICE), Some(ALICE)).unwrap();
        let got = mutate(&f, shim, ALICE, &dir, &list);
        assert!(got.iter().all(|l| l == "OK"), "{name}: {got:?}");
        // Forty distinct names: the fallback still varies from call to call.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), list.len() - 1, "{name}");
    }
    let logs = f.logs();
    assert!(logs.is_empty(), "legal calls logged denials: {logs:?}");
}

/// Legal calls on the tenant's own files, including the kernel's errors.
const OWN_STEPS: &[&str] = &[
    "mkdir d",
    "mkdir d",
    "mkdir missing/x",
    "mkdir f.txt/x",
    "mkdir d2/",
    "rmdir d2/",
    "rmdir d",
    "rmdir d",
    "rmdir f.txt",
    "rmdir .",
    "rmdir ..",
    "unlink .",
    "unlink ",
    "mkdir d",
    "symlink f.txt s",
    "symlink x s",
    "symlinkat f.txt s2",
    "symlink dangling-target dl",
    "link f.txt h",
    "linkat f.txt h2",
    "linkat-follow s h3",
    "link nosuch h4",
    "link d dlink",
    "rename h hh",
    "rename nosuch x",
    "rename d d/sub",
    "rename f.txt/ x",
    "renameat hh h",
    "renameat2 h s exchange",
    "renameat2 h s noreplace",
    "renameat2 h s2 0",
    "truncate f.txt 3",
    "truncate nosuch 0",
    "truncate d 0",
    "truncate s 1",
    "truncate dl 0",
    "truncate64 f.txt 2",
    "chmod f.txt 600",
    "chmod s 644",
    "chmod dl 644",
    "lchmod s 600",
    "fchmodat f.txt 640",
    "fchmodat-nofollow s 600",
    "fchmodat-nofollow f.txt 600",
    "chown f.txt UID",
    "lchown s UID",
    "fchownat f.txt UID",
    "fchownat-nofollow s UID",
    "chown nosuch UID",
    "chown dl UID",
    "mkfifo ff",
    "mkfifo ff",
    "mkfifoat ff2",
    "mknod nn",
    "mknodat nn2",
    "unlink ff",
    "unlinkat ff2",
    "unlinkat-dir d",
    "unlinkat-dir f.txt",
    "remove nn",
    "remove nosuch",
    "remove nn2",
    "mkdir e",
    "remove e",
    "mkstemp tXXXXXX",
    "mkstemp64 tXXXXXX",
    "mkstemp bad",
    "mkstemp tXXXXX",
    "mkostemp tXXXXXX",
    "mkstemps tXXXXXX.txt 4",
    "mkstemps tXXXXXX.txt 5",
    "mkostemps tXXXXXX.x 2",
    "mkdtemp dXXXXXX",
    "mkdtemp missing/dXXXXXX",
    "mkstemp missing/XXXXXX",
    "mkstemp f.txt/XXXXXX",
    "unlink s2/",
    "unlink dl",
    "unlink s",
];

/// Found in review: `allow_uid` (root's shared files, the server's own) opened *writes*.
/// With `allow_uid 0` and the tenant's symlink `sys` to a root-owned directory, a root server
/// unlinked, created, chowned, chmodded, truncated and renamed root's files there. `allow_uid`
/// is for reading: every call that changes a file or a directory's names needs the tenant's
/// own owner. Reading root's file through the link still works.
#[test]
fn item5_allow_uid_opens_reads_not_writes() {
    let Some(f) = Fixture::new("adv-mutate-allow", "allow_uid 0\n") else {
        return;
    };
    let sys = f.base.join("sys");
    fs::create_dir(&sys).unwrap();
    fs::set_permissions(&sys, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(sys.join("victim"), "ROOT-FILE\n").unwrap();
    fs::set_permissions(sys.join("victim"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(sys.join("sub")).unwrap();
    std::os::unix::fs::symlink(&sys, f.alice("sys")).unwrap();
    std::os::unix::fs::lchown(f.alice("sys"), Some(ALICE), Some(ALICE)).unwrap();
    let own = f.alice("own.txt");
    fs::write(&own, "alice-own\n").unwrap();
    chown(&own, Some(ALICE), Some(ALICE)).unwrap();
    let before = snapshot(&sys);
    let attacks: Vec<Vec<String>> = [
        "unlink sys/victim",
        "creat sys/planted",
        "mknod sys/planted",
        "mkdir sys/planted",
        "mkstemp sys/XXXXXX",
        "symlink x sys/planted",
        "link own.txt sys/planted",
        "rename own.txt sys/victim",
        "rename sys/victim stolen",
        "rmdir sys/sub",
        "chown sys/victim 42001",
        "chmod sys/victim 4777",
        "truncate sys/victim 0",
        "open-trunc sys/victim",
        "open-append sys/victim",
    ]
    .iter()
    .map(|s| step(s))
    .collect();
    let mut wrong = Vec::new();
    for s in &attacks {
        let got = mutate(&f, true, 0, &f.alice(""), std::slice::from_ref(s));
        if got[0] != "ERR EACCES" || snapshot(&sys) != before {
            wrong.push(format!("{} -> {}", s.join(" "), got[0]));
        }
    }
    assert!(
        wrong.is_empty(),
        "writes through allow_uid 0:\n{}",
        wrong.join("\n")
    );
    // Reading root's file is what allow_uid 0 is for.
    assert_eq!(
        mutate(&f, true, 0, &f.alice(""), &[step("open-read sys/victim")]),
        ["OK"]
    );
}

/// A file of `uid`'s with `text` (mode 0644).
fn owned_file(p: &Path, uid: u32, text: &str) {
    fs::write(p, text).unwrap();
    chown(p, Some(uid), Some(uid)).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
}

/// A directory of `uid`'s with `mode`, emptied first.
fn owned_dir(p: &Path, uid: u32, mode: u32) {
    let _ = fs::remove_dir_all(p);
    fs::create_dir_all(p).unwrap();
    chown(p, Some(uid), Some(uid)).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A symlink of alice's in her docroot.
fn alice_link(f: &Fixture, name: &str, target: &Path) {
    let p = f.alice(name);
    let _ = fs::remove_file(&p);
    std::os::unix::fs::symlink(target, &p).unwrap();
    std::os::unix::fs::lchown(&p, Some(ALICE), Some(ALICE)).unwrap();
}

/// Each step from the state `reset` makes, as `uid` in alice's docroot, with the shim or
/// bare: one answer per step.
fn each(f: &Fixture, shim: bool, uid: u32, steps: &[&str], reset: &dyn Fn()) -> Vec<String> {
    steps
        .iter()
        .map(|s| {
            reset();
            mutate(f, shim, uid, &f.alice(""), &[step(s)]).remove(0)
        })
        .collect()
}

/// Found in review: the sticky-directory exception (a new name in `/tmp` or PHP's session
/// directory, whose other entries the kernel protects) covered removal and rename too. With
/// `allow_uid 0`, a server that is not root unlinked, renamed, replaced and hard-linked its
/// *own* entries there through a tenant's symlink (`tmp` → the sticky directory). Now only a
/// new name is let through; an existing entry is judged by its own owner. New names there,
/// and the tenant's own entries, still get exactly libc's answers.
#[test]
fn item5_sticky_directory_exception_is_for_new_names_only() {
    let Some(f) = Fixture::new("adv-mutate-sticky", "allow_uid 0\n") else {
        return;
    };
    let sticky = f.base.join("sticky");
    let reset = || {
        owned_dir(&sticky, 0, 0o1777);
        owned_file(&sticky.join("sess_server"), SERVER, "SERVER-SESSION\n");
        owned_file(&sticky.join("sess_alice"), ALICE, "alice-session\n");
        owned_dir(&sticky.join("serverdir"), SERVER, 0o755);
        owned_file(&f.alice("uploads/mine"), SERVER, "server-upload\n");
        for name in ["uploads/stolen", "uploads/hard"] {
            let _ = fs::remove_file(f.alice(name));
        }
        alice_link(&f, "tmp", &sticky);
    };
    let attacks = [
        "unlink tmp/sess_server",
        "unlinkat tmp/sess_server",
        "remove tmp/sess_server",
        "rmdir tmp/serverdir",
        "unlinkat-dir tmp/serverdir",
        "rename tmp/sess_server tmp/moved",
        "rename tmp/sess_server uploads/stolen",
        "rename uploads/mine tmp/sess_server",
        "renameat2 uploads/mine tmp/sess_server exchange",
        "link tmp/sess_server uploads/hard",
        "open-append tmp/sess_server",
    ];
    reset();
    let before = snapshot(&sticky);
    let bare = each(&f, false, SERVER, &attacks, &reset);
    assert!(
        bare.iter().all(|l| l == "OK"),
        "without the guard the calls work: {bare:?}"
    );
    let mut wrong = Vec::new();
    for s in attacks {
        reset();
        let got = mutate(&f, true, SERVER, &f.alice(""), &[step(s)]);
        if got[0] != "ERR EACCES" || snapshot(&sticky) != before {
            wrong.push(format!("{s} -> {}", got[0]));
        }
    }
    assert!(
        wrong.is_empty(),
        "the server's own entries changed:\n{}",
        wrong.join("\n")
    );
    let logs = f.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("action=deny") && l.contains("sess_server") && l.contains("owner=42003")),
        "no denial naming the entry and its owner: {logs:?}"
    );
    let legal = [
        "creat tmp/new-by-server",
        "mkstemp tmp/XXXXXX",
        "mkdir tmp/newdir",
        "mkfifo tmp/fifo",
        "symlink x tmp/newlink",
        "renameat2 uploads/mine tmp/fresh noreplace",
        "rename uploads/mine tmp/fresh",
        "link uploads/mine tmp/fresh",
        "creat tmp/sess_server",
        "unlink tmp/sess_alice",
        "rename tmp/sess_alice uploads/stolen",
        "unlink tmp/missing",
    ];
    let bare = each(&f, false, SERVER, &legal, &reset);
    let shim = each(&f, true, SERVER, &legal, &reset);
    for ((s, b), g) in legal.iter().zip(&bare).zip(&shim) {
        assert_eq!(g, b, "{s}");
    }
    assert_eq!(bare[..8], ["OK"; 8], "new names are made");
}

/// Found in review: with `allow_uid <server uid>` the server could read its own files under
/// a root but not write, `chmod` or truncate them (the write rule ignored `allow_uid`), and
/// calls the kernel itself refuses (a link or rename out of a root-owned directory: `EXDEV`,
/// `EPERM`) answered `EACCES`. Now an allowed owner's object may be changed when it lies in
/// the tenant's own tree, by the kernel's name for it; every call here gets libc's answer.
#[test]
fn item5_allow_uid_server_writes_its_own_files_in_the_tree() {
    let Some(f) = Fixture::new("adv-mutate-allow-server", &format!("allow_uid {SERVER}\n")) else {
        return;
    };
    let shm = Path::new("/dev/shm").join(format!("tg-allow-{}", std::process::id()));
    let reset = || {
        owned_dir(&f.alice("uploads/sdir"), SERVER, 0o755);
        owned_file(&f.alice("uploads/cache.txt"), SERVER, "server-cache\n");
        owned_dir(&f.alice("rootdir"), 0, 0o755);
        owned_file(&f.alice("rootdir/f"), 0, "root-file\n");
        owned_dir(&f.alice("rootsticky"), 0, 0o1777);
        owned_file(&f.alice("rootsticky/g"), 0, "root-file\n");
        owned_dir(&f.alice("rootsticky-ro"), 0, 0o1755);
        owned_file(&f.alice("rootsticky-ro/g"), 0, "root-file\n");
        for name in ["uploads/h", "uploads/g2", "uploads/x"] {
            let _ = fs::remove_file(f.alice(name));
        }
        owned_dir(&shm, SERVER, 0o755);
    };
    let steps = [
        "open-append uploads/cache.txt",
        "open-trunc uploads/cache.txt",
        "chmod uploads/cache.txt 600",
        "fchmodat uploads/cache.txt 600",
        "truncate uploads/cache.txt 1",
        "chown uploads/cache.txt 42003",
        "creat uploads/sdir/new",
        "mkstemp uploads/sdir/XXXXXX",
        "rename uploads/cache.txt uploads/sdir/moved",
        "unlink uploads/cache.txt",
        "link uploads/cache.txt uploads/sdir/hard",
    ];
    let shm_x = shm.join("x").display().to_string();
    let errors = [
        format!("rename rootdir/f {shm_x}"),
        format!("link rootdir/f {shm_x}"),
        "link rootdir/f uploads/h".to_string(),
        "linkat rootdir/f uploads/h".to_string(),
        "linkat-follow rootdir/f uploads/h".to_string(),
        "rename rootsticky/g uploads/g2".to_string(),
        "unlink rootsticky/g".to_string(),
        "unlink rootsticky-ro/g".to_string(),
        "rename rootsticky-ro/g uploads/g2".to_string(),
        "rename uploads/cache.txt rootsticky/g".to_string(),
        "rename rootdir/missing uploads/x".to_string(),
        "mkdir rootdir/f".to_string(),
        "chmod rootdir/f 600".to_string(),
        "chown rootdir/f 42003".to_string(),
        "truncate rootdir/f 0".to_string(),
        "unlink rootdir/f".to_string(),
    ];
    let errors: Vec<&str> = errors.iter().map(String::as_str).collect();
    let all: Vec<&str> = steps.iter().copied().chain(errors.iter().copied()).collect();
    let bare = each(&f, false, SERVER, &all, &reset);
    let shim = each(&f, true, SERVER, &all, &reset);
    let _ = fs::remove_dir_all(&shm);
    let wrong: Vec<String> = all
        .iter()
        .zip(bare.iter().zip(&shim))
        .filter(|(_, (b, g))| b != g)
        .map(|(s, (b, g))| format!("{s}: libc {b}, shim {g}"))
        .collect();
    assert!(wrong.is_empty(), "not libc's answers:\n{}", wrong.join("\n"));
    assert!(bare[..steps.len()].iter().all(|l| l == "OK"), "{bare:?}");
    // The kernel's own refusals are there to be matched.
    for errno in ["ERR EXDEV", "ERR EPERM", "ERR ENOENT", "ERR EEXIST"] {
        assert!(bare.iter().any(|l| l == errno), "{errno} in {bare:?}");
    }
    let logs = f.logs();
    assert!(
        !logs.iter().any(|l| l.contains("uploads/")),
        "the server's own files logged: {logs:?}"
    );
}

/// The other side of the test above: `allow_uid <server uid>` must not let a tenant aim the
/// server's writes, through a symlink (or a hard link) in the tenant's tree, at a file (or
/// directory) of the server's outside that tree — its own state, or one in another
/// tenant's docroot. Reading
/// them is what `allow_uid` is for; every write is refused, nothing changes.
#[test]
fn item5_allow_uid_server_writes_cannot_be_redirected() {
    let Some(f) = Fixture::new("adv-mutate-allow-redirect", &format!("allow_uid {SERVER}\n")) else {
        return;
    };
    let srv = f.base.join("srv");
    let reset = || {
        owned_dir(&srv, SERVER, 0o755);
        owned_file(&srv.join("state.txt"), SERVER, "SERVER-STATE\n");
        owned_file(&f.bob("srvcache.txt"), SERVER, "BOB-SERVER-CACHE\n");
        alice_link(&f, "state", &srv.join("state.txt"));
        alice_link(&f, "srvdir", &srv);
        alice_link(&f, "bobcache", &f.bob("srvcache.txt"));
        owned_file(&f.alice("uploads/mine"), SERVER, "server-upload\n");
        let _ = fs::remove_file(f.alice("uploads/x"));
        // A hard link into the tenant's tree (root makes it: as a tenant can where
        // `fs.protected_hardlinks` is off, or to a file it may read and write).
        let _ = fs::remove_file(f.alice("uploads/statelink"));
        fs::hard_link(srv.join("state.txt"), f.alice("uploads/statelink")).unwrap();
    };
    let attacks = [
        "open-append state",
        "open-trunc state",
        "truncate state 0",
        "chmod state 600",
        "chown state 42003",
        "open-append bobcache",
        "truncate bobcache 0",
        "creat srvdir/planted",
        "mkdir srvdir/planted",
        "unlink srvdir/state.txt",
        "rename srvdir/state.txt uploads/x",
        "rename uploads/mine srvdir/state.txt",
        "linkat-follow state uploads/x",
        "open-append uploads/statelink",
        "truncate uploads/statelink 0",
        "chmod uploads/statelink 600",
    ];
    let bare = each(&f, false, SERVER, &attacks, &reset);
    assert!(
        bare.iter().all(|l| l == "OK"),
        "without the guard the calls work: {bare:?}"
    );
    reset();
    let before = (snapshot(&srv), fs::read(f.bob("srvcache.txt")).unwrap());
    let mut wrong = Vec::new();
    for s in attacks {
        reset();
        let got = mutate(&f, true, SERVER, &f.alice(""), &[step(s)]);
        let after = (snapshot(&srv), fs::read(f.bob("srvcache.txt")).unwrap());
        if got[0] != "ERR EACCES" || after != before {
            wrong.push(format!("{s} -> {}", got[0]));
        }
    }
    assert!(wrong.is_empty(), "redirected writes:\n{}", wrong.join("\n"));
    assert_eq!(
        mutate(
            &f,
            true,
            SERVER,
            &f.alice(""),
            &[step("open-read state"), step("open-read bobcache")]
        ),
        ["OK", "OK"]
    );
}

/// Found in review: a directory the server holds keeps the tenant it was entered under (the
/// expected owner, see item 3), but "lies in the tenant's tree" was judged against the tree
/// its path names *now*. Moved by its tenant into the victim's world-writable docroot,
/// `openat(held, "../srvcache.txt", O_WRONLY)` reached a server-owned file of the victim's
/// with alice's expected owner and bob's tree: `allow_uid <server uid>` let the write
/// through. A held directory moved within its own tree still writes the server's files.
#[test]
fn item5_allow_uid_writes_stay_in_the_tree_a_held_directory_was_entered_under() {
    let Some(f) = Fixture::new("adv-mutate-allow-moved", &format!("allow_uid {SERVER}\n")) else {
        return;
    };
    let moved = f.bob("mv");
    let reset = || {
        let _ = fs::remove_dir_all(&moved);
        let _ = fs::remove_dir_all(f.alice("uploads/mv2"));
        // 0777: the helper (the server's uid) stands in for alice moving her directory.
        owned_dir(&f.alice("uploads/mv"), ALICE, 0o777);
        owned_file(&f.bob("srvcache.txt"), SERVER, "BOB-SERVER-CACHE\n");
        owned_file(&f.alice("uploads/srvown.txt"), SERVER, "server-own\n");
    };
    let attack = format!("moved-append uploads/mv {} ../srvcache.txt", moved.display());
    let own = "moved-append uploads/mv uploads/mv2 ../srvown.txt";
    let bare = each(&f, false, SERVER, &[&attack, own], &reset);
    assert_eq!(bare, ["OK", "OK"], "without the guard both writes land");
    reset();
    assert_eq!(
        mutate(&f, true, SERVER, &f.alice(""), &[step(&attack)]),
        ["ERR EACCES"]
    );
    assert_eq!(
        fs::read_to_string(f.bob("srvcache.txt")).unwrap(),
        "BOB-SERVER-CACHE\n",
        "the victim's server-owned file was written through the moved directory"
    );
    reset();
    assert_eq!(mutate(&f, true, SERVER, &f.alice(""), &[step(own)]), ["OK"]);
    assert_eq!(
        fs::read_to_string(f.alice("uploads/srvown.txt")).unwrap(),
        "server-own\nMOVED-DIR\n"
    );
    let logs = f.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("owner-mismatch") && l.contains("srvcache.txt")),
        "no denial logged: {logs:?}"
    );
}

/// Found in review: the sticky-directory exception (a new name in `/tmp` or PHP's session
/// directory of an `allow_uid` owner) also covered such a directory inside *another
/// tenant's* tree. Through alice's symlink (`btmp` → bob's root-owned 1777 `tmp/`) the
/// server created server-owned files there, which bob's tree then serves as allowed. The
/// exception is for sticky directories outside every root, or in the tenant's own tree.
#[test]
fn item5_sticky_exception_is_not_for_another_tenants_tree() {
    let Some(f) = Fixture::new("adv-mutate-sticky-other", "allow_uid 0\n") else {
        return;
    };
    let sticky = f.base.join("sticky");
    let reset = || {
        owned_dir(&f.bob("tmp"), 0, 0o1777);
        owned_dir(&f.alice("tmp"), 0, 0o1777);
        owned_dir(&sticky, 0, 0o1777);
        alice_link(&f, "btmp", &f.bob("tmp"));
        alice_link(&f, "stmp", &sticky);
    };
    let attacks = [
        "creat btmp/planted.php",
        "mkstemp btmp/XXXXXX",
        "mkdir btmp/planted",
        "symlink /etc/passwd btmp/planted-link",
        "rename uploads/mine btmp/planted",
    ];
    let legal = [
        "creat tmp/new",
        "creat stmp/new",
        "mkstemp stmp/XXXXXX",
        "mkdir tmp/newdir",
    ];
    let with_mine = || {
        reset();
        owned_file(&f.alice("uploads/mine"), ALICE, "alice-upload\n");
    };
    let all: Vec<&str> = attacks.iter().chain(&legal).copied().collect();
    let bare = each(&f, false, SERVER, &all, &with_mine);
    assert!(bare.iter().all(|l| l == "OK"), "without the guard: {bare:?}");
    let shim = each(&f, true, SERVER, &all, &with_mine);
    let want: Vec<&str> = attacks
        .iter()
        .map(|_| "ERR EACCES")
        .chain(legal.iter().map(|_| "OK"))
        .collect();
    assert_eq!(shim, want, "{all:?}");
    with_mine();
    for s in attacks {
        mutate(&f, true, SERVER, &f.alice(""), &[step(s)]);
    }
    assert_eq!(snapshot(&f.bob("tmp")), BTreeMap::new(), "created in bob's tree");
}
