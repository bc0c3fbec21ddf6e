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
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use toctou_guard_tests::shim_fixture::{ALICE, Fixture, c_program};

const VIAS: &[&str] = &[
    "system",
    "popen",
    "execve",
    "execv",
    "execvp",
    "execvpe",
    "execl",
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
];

fn text(out: &Output) -> String {
    format!(
        "exit {:?}; stdout {:?}; stderr {:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

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
/// child), or run on a 16 KiB thread. `system` and `popen` allocate inside glibc anyway, so
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
        for env in ["clearenv", "setother", "setconfig"] {
            for via in VIAS {
                if place == "forked" && matches!(*via, "system" | "popen") {
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
