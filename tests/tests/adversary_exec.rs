//! Issue 10 item 8: programs a guarded PHP pool runs were unguarded. php-fpm's `clear_env`
//! empties each worker's environment (`clearenv()`), so `system("cat …/victim/…")`, `exec`,
//! `popen`, `proc_open` started children without `LD_PRELOAD`; tenant code could also drop or
//! replace `LD_PRELOAD`, or point `TOCTOU_GUARD_CONFIG` at a permissive config of its own.
//! Children of a guarded process stay guarded under the same configuration, however the
//! parent builds their environment.
//!
//! `tests/c/execs.c`, preloaded as the tenant ALICE under `owner euid`, rewrites its
//! environment one way, then starts `cat FILE` one way. Needs root (skipped with `SKIP:`
//! otherwise, a failure when `CI` is set).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use toctou_attack::guardconf::{GuardConfig, LogListener};
use toctou_attack::http::{Conn, Response, encode_query};
use toctou_attack::target::{StartEnv, Target, start};
use toctou_attack::tenants::mk_file;
use toctou_attack::{TargetKind, Tenants};
use toctou_guard_tests::harness::tools_for;
use toctou_guard_tests::heavy;
use toctou_guard_tests::private_etc::PrivateEtc;
use toctou_guard_tests::shim_fixture::{ALICE, Fixture, c_program};

const VIAS: &[&str] = &[
    "system",
    "popen",
    "wordexp",
    "execve",
    "execv",
    "execvp",
    "execvpe",
    "execl",
    "execl-many",
    "execlp",
    "execle",
    "posix_spawn",
    "posix_spawnp",
    "fexecve",
    "execveat",
];

/// Ways to lose (or swap) our variables before starting a child.
const ENVS: &[&str] = &[
    "keep",
    "clearenv",
    "unsetenv",
    "setempty",
    "setother",
    "setbehind",
    "putenv",
    "putenv-unset",
    "environ-null",
    "setconfig",
    "bigenv",
];

use toctou_guard_tests::describe as text;

/// A configuration the tenant owns (the loader accepts a file owned by the process's own
/// uid) that guards nothing: what `setconfig` points the children at.
fn permissive_config(f: &Fixture) -> std::path::PathBuf {
    let p = f.base.join("home/alice/permissive.conf");
    fs::write(
        &p,
        format!(
            "root {}/nowhere/*/x\nlog_socket {}\n",
            f.base.display(),
            f.sock.display()
        ),
    )
    .unwrap();
    chown(&p, Some(ALICE), Some(ALICE)).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p
}

#[test]
fn item8_children_of_a_guarded_pool_stay_guarded() {
    let Some(f) = Fixture::new("adv-exec", "owner euid\n") else {
        return;
    };
    let execs = c_program("execs");
    let conf = permissive_config(&f);
    let victim = f.bob("secret.txt");
    let own = f.alice("index.html");
    let mut failures = Vec::new();
    for env in ENVS {
        for via in VIAS {
            let run = |file: &std::path::Path| {
                f.run_as(
                    ALICE,
                    &execs,
                    &[
                        OsStr::new(env),
                        OsStr::new(via),
                        file.as_os_str(),
                        conf.as_os_str(),
                    ],
                )
            };
            let _ = f.logs();
            let out = run(&victim);
            let logs = f.logs();
            // cat's own failure (exit 1): not a crash, not a failed start.
            let refused =
                out.status.code() == Some(1) && !String::from_utf8_lossy(&out.stdout).contains("BOB-SECRET");
            // Logged by the child (`comm=cat`), under the pool's configuration.
            let logged = logs.iter().any(|l| {
                l.contains("action=deny")
                    && l.contains("comm=cat")
                    && l.contains(&format!("path={}", victim.display()))
            });
            if !refused || !logged {
                failures.push(format!(
                    "{env} {via}: victim not refused ({}; logs {logs:?})",
                    text(&out)
                ));
            }
            let out = run(&own);
            if out.status.code() != Some(0) || out.stdout != b"alice-own\n" {
                failures.push(format!("{env} {via}: own file not served ({})", text(&out)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        ENVS.len() * VIAS.len() * 2,
        failures.join("\n")
    );
}

/// The exec path allocates nothing and fits a small stack: exec may follow `fork()` in a
/// threaded parent (where malloc's lock can be held; `execs` exits 91 on any malloc in the
/// child), or run on a 16 KiB thread. `system`, `popen` and `wordexp` allocate inside glibc, so
/// they are only run on the small stack.
#[test]
fn item8_exec_after_fork_and_on_small_stacks() {
    let Some(f) = Fixture::new("adv-exec-fork", "owner euid\n") else {
        return;
    };
    let execs = c_program("execs");
    let conf = permissive_config(&f);
    let (victim, own) = (f.bob("secret.txt"), f.alice("index.html"));
    let mut failures = Vec::new();
    for place in ["forked", "smallstack"] {
        for env in ["clearenv", "setother", "setconfig", "bigenv"] {
            for via in VIAS {
                if place == "forked" && matches!(*via, "system" | "popen" | "wordexp") {
                    continue;
                }
                let run = |file: &std::path::Path| {
                    f.run_as(
                        ALICE,
                        &execs,
                        &[
                            OsStr::new(env),
                            OsStr::new(via),
                            file.as_os_str(),
                            conf.as_os_str(),
                            OsStr::new(place),
                        ],
                    )
                };
                let out = run(&victim);
                if out.status.code() != Some(1) || String::from_utf8_lossy(&out.stdout).contains("BOB-SECRET")
                {
                    failures.push(format!(
                        "{place} {env} {via}: victim not refused ({})",
                        text(&out)
                    ));
                }
                let out = run(&own);
                if out.status.code() != Some(0) || out.stdout != b"alice-own\n" {
                    failures.push(format!(
                        "{place} {env} {via}: own file not served ({})",
                        text(&out)
                    ));
                }
            }
        }
    }
    let _ = f.logs();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The exec hooks fail exactly as libc does: a missing program, a NULL path, a file that is
/// not executable, an argument over the kernel's limit, a bad descriptor or flags.
#[test]
fn item8_exec_errors_match_libc() {
    let Some(f) = Fixture::new("adv-exec-errno", "owner euid\n") else {
        return;
    };
    let execs = c_program("execs");
    let bare = Command::new(&execs)
        .arg("errno")
        .uid(ALICE)
        .gid(ALICE)
        .output()
        .unwrap();
    let shim = f.run_as(ALICE, &execs, &[OsStr::new("errno")]);
    assert!(bare.status.success(), "{}", text(&bare));
    assert!(shim.stderr.is_empty(), "the shim wrote to fd 2: {}", text(&shim));
    let bare = String::from_utf8_lossy(&bare.stdout);
    assert!(bare.lines().count() >= 20, "{bare}");
    assert!(bare.contains("execve-missing -1 2\n"), "{bare}");
    assert_eq!(String::from_utf8_lossy(&shim.stdout), bare);
}

/// The ways a PHP page starts a program, each running `cat` on the file named by `p`.
fn exec_page(www: &Path) -> String {
    format!(
        r#"<?php
// generated by the item 8 test: start `cat FILE` the way named by `via`
$f = '{}/' . $_GET['p'];
$cmd = 'cat ' . escapeshellarg($f);
header('Content-Type: text/plain');
switch ($_GET['via']) {{
case 'system': system($cmd); break;
case 'exec': exec($cmd, $out); echo implode("\n", $out), "\n"; break;
case 'shell_exec': echo shell_exec($cmd); break;
case 'passthru': passthru($cmd); break;
case 'backtick': echo `$cmd`; break;
case 'popen': $h = popen($cmd, 'r'); echo stream_get_contents($h); pclose($h); break;
case 'proc_open':
case 'proc_open_argv':
case 'proc_open_env':
    $c = $_GET['via'] === 'proc_open_argv' ? ['cat', $f] : $cmd;
    $env = $_GET['via'] === 'proc_open_env' ? ['A' => '1'] : null;
    $p = proc_open($c, [1 => ['pipe', 'w']], $pipes, null, $env);
    echo stream_get_contents($pipes[1]);
    proc_close($p);
    break;
case 'putenv': putenv('LD_PRELOAD='); system($cmd); break;
}}
"#,
        www.display()
    )
}

/// Real php-fpm (its default `clear_env = yes`) behind nginx, one pool as the attacker with
/// `owner euid`: every way PHP starts a program is refused the victim's file (the child
/// logs the denial) and serves the tenant's own; bare php-fpm leaks in the same run.
#[test]
fn item8_php_fpm_clear_env_children_stay_guarded() {
    let Some(mut tools) = tools_for(&[TargetKind::Php, TargetKind::PhpShim]) else {
        return;
    };
    // The world-readable copy: the pool's children load it as the tenant's uid, which cannot
    // reach a checkout under a private (0700) directory.
    tools.shim = Some(c_program("libtoctou_guard.so"));
    let _g = heavy();
    let tenants = Tenants::create(&Default::default()).expect("tenants");
    let log = LogListener::bind(&tenants.run.join("log.sock")).expect("log socket");
    let conf = GuardConfig {
        root: tenants.root_pattern(),
        owner_euid: true,
        allow_root: true,
        audit: false,
        log_socket: log.path.clone(),
        log_rate: 1000,
    }
    .write(&tenants.run, "guard-euid.conf")
    .expect("config");
    let a = &tenants.attacker;
    let page = a.docroot.join("exec.php");
    mk_file(&page, exec_page(&tenants.www).as_bytes(), a.uid, a.gid, 0o644).expect("page");
    let own = a.docroot.join("tg-legit/index.html");
    let own_content = fs::read(&own).expect("own file");
    let rel = |p: &Path| {
        p.strip_prefix(&tenants.www)
            .expect("under www")
            .display()
            .to_string()
    };
    let env = StartEnv {
        tenants: &tenants,
        tools: &tools,
        guard_config: &conf,
    };
    let get = |t: &dyn Target, via: &str, file: &Path| -> Response {
        let url = format!("/{}?via={via}&p={}", rel(&page), encode_query(&rel(file)));
        Conn::new(t.addr(), Duration::from_secs(10))
            .get(&url)
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    };
    let leaked = |r: &Response| toctou_attack::marker::contains(&r.body, tenants.marker.as_bytes());
    let vias = [
        "system",
        "exec",
        "shell_exec",
        "passthru",
        "backtick",
        "popen",
        "proc_open",
        "proc_open_argv",
        "proc_open_env",
        "putenv",
    ];
    {
        let bare = start(TargetKind::Php, &env).expect("start php");
        for via in vias {
            let r = get(&*bare, via, &tenants.secret);
            assert!(leaked(&r), "bare php {via} did not leak: the test proves nothing");
        }
    }
    let t = start(TargetKind::PhpShim, &env).expect("start php+shim");
    let mut failures = Vec::new();
    for via in vias {
        log.clear();
        let r = get(&*t, via, &tenants.secret);
        let needles = [
            "action=deny",
            "comm=cat",
            &format!(" path={}", tenants.secret.display()),
        ];
        if leaked(&r) {
            failures.push(format!("{via}: leaked ({})", r.status));
        } else if log.wait_for(&needles, Duration::from_secs(5)).is_none() {
            failures.push(format!("{via}: no denial logged by cat: {:?}", log.lines()));
        }
        let r = get(&*t, via, &own);
        if r.status != 200 || r.body != own_content {
            failures.push(format!(
                "{via}: own file not served ({}: {:?})",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
    }
    let _ = fs::remove_file(&page);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Under `/etc/ld.so.preload` every child loads the library anyway, but its configuration
/// came from the environment: a child must neither lose the `TOCTOU_GUARD_CONFIG` its parent
/// was guarded by (with no `/etc/toctou-guard.conf`, a child that is not a server would run
/// unguarded) nor take one the tenant put there (a permissive file of its own).
#[test]
fn item8_ld_so_preload_children_keep_the_parents_config() {
    let Some(f) = Fixture::new("adv-exec-etc", "owner euid\n") else {
        return;
    };
    let execs = c_program("execs");
    let permissive = permissive_config(&f);
    let victim = f.bob("secret.txt");
    let preload = format!("{}\n", f.so.display());
    let conf = fs::read(&f.conf).unwrap();
    let with_conf = PrivateEtc::new(
        &f,
        "conf",
        &[
            ("ld.so.preload", preload.as_bytes()),
            ("toctou-guard.conf", &conf),
        ],
    );
    let no_conf = PrivateEtc::new(&f, "noconf", &[("ld.so.preload", preload.as_bytes())]);
    let named = [("TOCTOU_GUARD_CONFIG", f.conf.as_os_str())];
    let mut failures = Vec::new();
    for via in VIAS {
        for (what, etc, env, mutation) in [
            ("tenant's config", &with_conf, &[][..], "setconfig"),
            ("parent's config lost", &no_conf, &named[..], "clearenv"),
            ("parent's config swapped", &no_conf, &named[..], "setconfig"),
        ] {
            let args = [
                OsStr::new(mutation),
                OsStr::new(via),
                victim.as_os_str(),
                permissive.as_os_str(),
            ];
            let out = etc.run(ALICE, env, &execs, &args);
            if out.status.code() != Some(1) || String::from_utf8_lossy(&out.stdout).contains("BOB-SECRET") {
                failures.push(format!("{what} {via}: victim not refused ({})", text(&out)));
            }
        }
    }
    let _ = f.logs();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `dir/libtoctou_guard.so`: a decoy of the guard's name that guards nothing (`c/decoy.c`).
fn decoy_library(dir: &Path) {
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join("libtoctou_guard.so"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("c/decoy.c"))
        .output()
        .expect("cc");
    assert!(out.status.success(), "cc decoy: {}", text(&out));
}

/// `f.base/decoy`, world-readable (tenant uids search it), holding a decoy library.
fn decoy_dir(f: &Fixture) -> std::path::PathBuf {
    let dir = f.base.join("decoy");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    decoy_library(&dir);
    dir
}

/// Found in review: a child's environment can bring back an unguarded loader. `LD_AUDIT`
/// names a library whose `la_symbind64` rebinds `open` to raw system calls; a bare-name
/// `LD_PRELOAD=libtoctou_guard.so` with `LD_LIBRARY_PATH` at a decoy of that name loads the
/// decoy. Both children read the victim's file; now `LD_AUDIT` is dropped and only our
/// absolute path counts as loading us.
#[test]
fn item8_children_cannot_bring_back_an_unguarded_loader() {
    let Some(f) = Fixture::new("adv-exec-loader", "owner euid\n") else {
        return;
    };
    let execs = c_program("execs");
    let audit = c_program("audit");
    let decoys = decoy_dir(&f);
    let victim = f.bob("secret.txt");
    let mut failures = Vec::new();
    for (env, arg) in [("setaudit", audit.as_os_str()), ("setdecoy", decoys.as_os_str())] {
        for via in ["execve", "execv", "posix_spawn", "system"] {
            let out = f.run_as(
                ALICE,
                &execs,
                &[OsStr::new(env), OsStr::new(via), victim.as_os_str(), arg],
            );
            if out.status.code() != Some(1) || String::from_utf8_lossy(&out.stdout).contains("BOB-SECRET") {
                failures.push(format!("{env} {via}: {}", text(&out)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "children read the victim's file:\n{}",
        failures.join("\n")
    );
}

/// Found in review: an `LD_PRELOAD` entry with a `/` counted as ours when `stat()` of its
/// literal text found our file. ld.so expands `$PLATFORM`, `$LIB`, `$ORIGIN` (and `${...}`)
/// first, so `BASE/$PLATFORM/libtoctou_guard.so` (the literal directory `$PLATFORM` holding a
/// link to the guard) loads `BASE/x86_64/libtoctou_guard.so`, a decoy. Only an entry equal,
/// byte for byte, to the path we were loaded from counts as ours; the child stays guarded.
#[test]
fn item8_a_preload_entry_ld_so_expands_is_not_ours() {
    let Some(f) = Fixture::new("adv-exec-dst", "owner euid\n") else {
        return;
    };
    let execs = c_program("execs");
    // What ld.so substitutes here: AT_PLATFORM is the machine's name (x86_64, aarch64);
    // `$LIB` is the multiarch directory on Debian (lib64, lib elsewhere).
    let lib = format!("lib/{}-linux-gnu", std::env::consts::ARCH);
    let mut values = Vec::new();
    for (token, expanded) in [
        ("$PLATFORM", std::env::consts::ARCH),
        ("${PLATFORM}", std::env::consts::ARCH),
        ("$LIB", lib.as_str()),
        ("${LIB}", lib.as_str()),
    ] {
        let literal = f.base.join(format!("dst/{token}"));
        let decoy = f.base.join(format!("dst/{expanded}"));
        for d in [&literal, &decoy] {
            fs::create_dir_all(d).unwrap();
        }
        let _ = std::os::unix::fs::symlink(&f.so, literal.join("libtoctou_guard.so"));
        if !decoy.join("libtoctou_guard.so").exists() {
            decoy_library(&decoy);
        }
        let value = literal.join("libtoctou_guard.so");
        // The precondition of the attack: the literal text is our very file.
        let (a, b) = (fs::metadata(&value).unwrap(), fs::metadata(&f.so).unwrap());
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{}", value.display());
        values.push(value);
    }
    for p in [f.base.join("dst"), f.base.join("dst/lib")] {
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o755));
    }
    let victim = f.bob("secret.txt");
    let mut failures = Vec::new();
    for value in &values {
        for via in ["execve", "execv", "posix_spawn", "system"] {
            let _ = f.logs();
            let out = f.run_as(
                ALICE,
                &execs,
                &[
                    OsStr::new("setpreload"),
                    OsStr::new(via),
                    victim.as_os_str(),
                    value.as_os_str(),
                ],
            );
            let logged = f
                .logs()
                .iter()
                .any(|l| l.contains("action=deny") && l.contains("comm=cat"));
            if out.status.code() != Some(1)
                || String::from_utf8_lossy(&out.stdout).contains("BOB-SECRET")
                || !logged
            {
                failures.push(format!("{} {via}: {}", value.display(), text(&out)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "children loaded the decoy instead of the guard:\n{}",
        failures.join("\n")
    );
}

/// The dynamic loader on this machine, by the name programs carry (`PT_INTERP`, a symlink on
/// Debian), by its real path, and by a hard link of the test's own: the guard must know the
/// file, not a name.
fn loader_names(f: &Fixture) -> Vec<std::path::PathBuf> {
    let interp = Path::new(match std::env::consts::ARCH {
        "aarch64" => "/lib/ld-linux-aarch64.so.1",
        _ => "/lib64/ld-linux-x86-64.so.2",
    });
    let real = fs::canonicalize(interp).expect("the loader");
    let dir = f.base.join("ldso");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let hard = dir.join("myld");
    fs::hard_link(&real, &hard).expect("a hard link to the loader (same file system as TMPDIR)");
    vec![interp.to_path_buf(), real, hard]
}

/// Found in review (R3): ld.so run as a program takes `--audit LIST` on its command line,
/// past the `LD_AUDIT` the guard drops from the environment: `ld.so --audit audit.so
/// /bin/cat LINK` from a guarded process read the victim's file (the auditor rebinds `open`
/// to raw system calls, or could drop the guard from the preload list in `la_objsearch`).
/// Every way to start a program refuses it with `EACCES` and a `reason=loader-options`
/// line, whatever name or hard link reaches the loader. The options left allowed (see
/// `shim/src/loader.rs`), and none, still run `cat` guarded: ld.so honours `LD_PRELOAD`,
/// which loads the guard by absolute path, first.
#[test]
fn r3_the_loader_run_as_a_program_cannot_take_an_auditor() {
    let Some(f) = Fixture::new("adv-exec-ldso", "owner euid\n") else {
        return;
    };
    let execs = c_program("execs");
    let audit = c_program("audit");
    let decoys = decoy_dir(&f);
    let victim = f.bob("secret.txt");
    let own = f.alice("index.html");
    let allowed: [&[&OsStr]; 5] = [
        &[],
        &[OsStr::new("--preload"), OsStr::new("libc.so.6")],
        &[OsStr::new("--library-path"), decoys.as_os_str()],
        &[OsStr::new("--inhibit-cache")],
        &[OsStr::new("--argv0"), OsStr::new("cat")],
    ];
    let vias: Vec<&str> = VIAS.iter().copied().filter(|v| *v != "execl-many").collect();
    let auditor = [OsStr::new("--audit"), audit.as_os_str()];
    // `execs` starts `PROGRAM OPTS... /bin/cat FILE` one way, in one place (main, forked
    // from a threaded parent where a malloc exits 91, on a small stack).
    let run = |program: &Path, via: &str, file: &Path, opts: &[&OsStr], place: &str| {
        let mut cmd = f.command(&execs);
        cmd.env("TG_LOADER", program);
        for (name, opt) in ["TG_OPT1", "TG_OPT2"].iter().zip(opts) {
            cmd.env(name, opt);
        }
        let _ = f.logs();
        let out = cmd
            .args([
                OsStr::new("keep"),
                OsStr::new(via),
                file.as_os_str(),
                OsStr::new("-"),
            ])
            .arg(place)
            .uid(ALICE)
            .gid(ALICE)
            .output()
            .expect("run execs");
        (out, f.logs())
    };
    let mut failures = Vec::new();
    let loaders = loader_names(&f);
    for loader in &loaders {
        for via in &vias {
            let case = format!("{} {via}", loader.display());
            let (out, logs) = run(loader, via, &victim, &auditor, "main");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let logged = logs
                .iter()
                .any(|l| l.contains("action=deny reason=loader-options"));
            // The exec itself fails with EACCES (execs prints the errno); a shell reports
            // 126 (found, not executable); `$(...)` expands to nothing.
            let eacces = match *via {
                "system" | "popen" => out.status.code() == Some(126),
                "wordexp" => out.status.code() == Some(1) && stdout.is_empty(),
                _ => stdout.contains("failed 13"),
            };
            if stdout.contains("BOB-SECRET") || !eacces || !logged {
                failures.push(format!("--audit {case}: logged {logged}: {}", text(&out)));
            }
            for opts in allowed {
                let case = format!("{opts:?} {case}");
                let (out, logs) = run(loader, via, &victim, opts, "main");
                let logged = logs.iter().any(|l| {
                    l.contains("action=deny reason=owner-mismatch")
                        && l.contains(&format!("path={}", victim.display()))
                });
                if out.status.code() != Some(1)
                    || String::from_utf8_lossy(&out.stdout).contains("BOB-SECRET")
                    || !logged
                {
                    failures.push(format!("{case}: logged {logged}: {}", text(&out)));
                }
                let (out, _) = run(loader, via, &own, opts, "main");
                if out.status.code() != Some(0) || out.stdout != b"alice-own\n" {
                    failures.push(format!("{case}: own file not served ({})", text(&out)));
                }
            }
        }
    }
    // The check allocates nothing and fits a small stack, as the rest of the exec path.
    for place in ["forked", "smallstack"] {
        for via in &vias {
            if place == "forked" && matches!(*via, "system" | "popen" | "wordexp") {
                continue;
            }
            let (out, _) = run(&loaders[0], via, &victim, &auditor, place);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let eacces = match *via {
                "system" | "popen" => out.status.code() == Some(126),
                "wordexp" => out.status.code() == Some(1) && stdout.is_empty(),
                _ => stdout.contains("failed 13"),
            };
            if stdout.contains("BOB-SECRET") || !eacces {
                failures.push(format!("--audit {place} {via}: {}", text(&out)));
            }
        }
    }
    // A script whose `#!` line names the loader with an option that takes an argument
    // (`--argv0`, which swallows the script's path) passes our argv's options on to it:
    // started with `--audit` in its argv it fails as a script run through a close-on-exec
    // descriptor does (ENOENT; a shell: 127, not found).
    let script = f.base.join("ldso/argv0");
    fs::write(&script, format!("#!{} --argv0\n", loaders[0].display())).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    for via in &vias {
        let (out, _) = run(&script, via, &victim, &auditor, "main");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let enoent = match *via {
            "system" | "popen" => out.status.code() == Some(127),
            "wordexp" => out.status.code() == Some(1) && stdout.is_empty(),
            _ => stdout.contains("failed 2"),
        };
        if stdout.contains("BOB-SECRET") || !enoent {
            failures.push(format!("script {via}: {}", text(&out)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `mode audit`: the loader with `--audit` is logged (`action=audit reason=loader-options`)
/// and started, as every refusal in audit mode is.
#[test]
fn r3_audit_mode_logs_the_loader_and_lets_it_run() {
    let Some(f) = Fixture::new("adv-exec-ldso-audit", "owner euid\nmode audit\n") else {
        return;
    };
    let (execs, audit) = (c_program("execs"), c_program("audit"));
    let loader = &loader_names(&f)[0];
    let own = f.alice("index.html");
    let mut failures = Vec::new();
    for via in ["execve", "execvp", "posix_spawn", "fexecve", "system"] {
        let _ = f.logs();
        let out = f
            .command(&execs)
            .env("TG_LOADER", loader)
            .env("TG_OPT1", "--audit")
            .env("TG_OPT2", &audit)
            .args([OsStr::new("keep"), OsStr::new(via), own.as_os_str()])
            .uid(ALICE)
            .gid(ALICE)
            .output()
            .expect("run execs");
        let logged = f
            .logs()
            .iter()
            .any(|l| l.contains("action=audit reason=loader-options") && l.contains(&format!("uid={ALICE}")));
        if out.status.code() != Some(0) || out.stdout != b"alice-own\n" || !logged {
            failures.push(format!("{via}: logged {logged}: {}", text(&out)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
