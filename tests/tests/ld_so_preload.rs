//! `/etc/ld.so.preload` on a real box (issue 11, "What to build" item 4): deployed there the
//! shim loads into every process, so it must change nothing for a program it does not guard.
//!
//! Each everyday program (bash, ssh-keygen, sudo, passwd, apt-get, python3, perl, cron's
//! run-parts) runs with the library in `/etc/ld.so.preload` three ways: (a) no
//! `/etc/toctou-guard.conf`, (b) a valid one (the fixture's roots, no `programs` filter: the
//! program runs guarded), (c) a broken one (a syntax error: the program runs unguarded and
//! logs to syslog). Each run is compared with the same command under the same `/etc` minus
//! `ld.so.preload`: the exit status, stdout, stderr (the shim never writes to fd 2 of a
//! program it lets run) and the files the program left in its scratch directory (names,
//! modes, sizes: a key's bytes differ run to run) must be identical. As root, and as
//! `nobody` (65534, which has a passwd entry) where an unprivileged user runs the program.
//!
//! Then the server side: the `hooks` helper copied as `nginx` and `php-fpm8.2` refuses to
//! start under (a) and (c) (exit 1, `refusing to start` on stderr) and runs, guarded, under
//! (b); the same copy under a name that is no server runs all three ways.
//!
//! `/etc/ld.so.preload` and `/etc/toctou-guard.conf` are only ever written in a private mount
//! namespace, on an overlay over `/etc` that vanishes with it ([`PrivateEtc`]): never the real
//! `/etc`. Needs root; a missing program is a `SKIP:` locally and a failure in CI.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use toctou_guard_tests::prereq;
use toctou_guard_tests::private_etc::{PrivateEtc, hooks_copy};
use toctou_guard_tests::shim_fixture::{Fixture, SERVER};

/// `nobody`: an unprivileged uid with a passwd entry (sudo and passwd look the caller up).
const NOBODY: u32 = 65534;
const ROOT: u32 = 0;

/// One of the three states of `/etc/toctou-guard.conf`, with and without the library in
/// `/etc/ld.so.preload`.
struct Scenario {
    key: &'static str,
    what: &'static str,
    with: PrivateEtc,
    without: PrivateEtc,
}

/// (a) no config, (b) the fixture's valid config, (c) the same with a typo'd directive.
fn scenarios(f: &Fixture, tag: &str) -> [Scenario; 3] {
    let preload = format!("{}\n", f.so.display());
    let valid = fs::read(&f.conf).unwrap();
    let broken = broken_config(f);
    let make = |key: &'static str, what: &'static str, conf: Option<&[u8]>| {
        let mut etc: Vec<(&str, &[u8])> = Vec::new();
        if let Some(c) = conf {
            etc.push(("toctou-guard.conf", c));
        }
        let without = PrivateEtc::new(f, &format!("{tag}-{key}-without"), &etc);
        etc.push(("ld.so.preload", preload.as_bytes()));
        let with = PrivateEtc::new(f, &format!("{tag}-{key}-with"), &etc);
        Scenario {
            key,
            what,
            with,
            without,
        }
    };
    [
        make("a", "no config", None),
        make("b", "valid config", Some(&valid)),
        make("c", "broken config", Some(&broken)),
    ]
}

/// The fixture's config plus a misspelt `root` line: a syntax error on line 3.
fn broken_config(f: &Fixture) -> Vec<u8> {
    let mut text = fs::read(&f.conf).unwrap();
    text.extend_from_slice(format!("rooot {}/home/*/public_html\n", f.base.display()).as_bytes());
    text
}

/// An everyday program and how to run it. `DIR` in `args` is a fresh scratch directory of
/// the running uid's, whose contents are compared after the run.
struct Case {
    label: &'static str,
    program: &'static str,
    package: &'static str,
    args: &'static [&'static str],
    uids: &'static [u32],
    /// Files the run must leave in `DIR` (checked on the run without the library, so that a
    /// comparison of two failures cannot pass for one of two successes).
    leaves: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        label: "bash -c 'echo hi; exit 3'",
        program: "bash",
        package: "bash",
        args: &["-c", "echo hi; exit 3"],
        uids: &[ROOT, NOBODY],
        leaves: &[],
    },
    Case {
        label: "ssh-keygen -t ed25519 -N '' -f DIR/key -q",
        program: "ssh-keygen",
        package: "openssh-client",
        args: &["-t", "ed25519", "-N", "", "-f", "DIR/key", "-q"],
        uids: &[ROOT, NOBODY],
        leaves: &["key", "key.pub"],
    },
    Case {
        label: "sudo -n true",
        program: "sudo",
        package: "sudo",
        args: &["-n", "true"],
        uids: &[ROOT, NOBODY],
        leaves: &[],
    },
    Case {
        label: "passwd -S root",
        program: "passwd",
        package: "passwd",
        args: &["-S", "root"],
        uids: &[ROOT, NOBODY],
        leaves: &[],
    },
    Case {
        label: "passwd -S (own account)",
        program: "passwd",
        package: "passwd",
        args: &["-S"],
        uids: &[NOBODY],
        leaves: &[],
    },
    Case {
        label: "apt-get --version",
        program: "apt-get",
        package: "apt",
        args: &["--version"],
        uids: &[ROOT, NOBODY],
        leaves: &[],
    },
    Case {
        label: "python3 -c 'print(6*7)'",
        program: "python3",
        package: "python3",
        args: &["-c", "print(6*7)"],
        uids: &[ROOT, NOBODY],
        leaves: &[],
    },
    Case {
        label: "perl -e 'print 6*7'",
        program: "perl",
        package: "perl-base",
        args: &["-e", "print 6*7"],
        uids: &[ROOT, NOBODY],
        leaves: &[],
    },
    Case {
        label: "run-parts --test /etc/cron.daily",
        program: "run-parts",
        package: "debianutils",
        args: &["--test", "/etc/cron.daily"],
        uids: &[ROOT, NOBODY],
        leaves: &[],
    },
];

/// The program in the system's own directories (never a `~/.pyenv` shim or the like), or a
/// `SKIP:` naming its Debian package (a failure in CI).
#[track_caller]
fn find(program: &str, package: &str) -> Option<PathBuf> {
    let candidates: Vec<String> = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| format!("{d}/{program}"))
        .collect();
    let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
    prereq::program(&refs, &format!("{program} (Debian package {package})"))
}

/// What a run did, as compared: how it ended, its output, what it left in `DIR`.
#[derive(PartialEq)]
struct Observed {
    status: String,
    stdout: String,
    stderr: String,
    files: Vec<String>,
}

impl Observed {
    fn of(out: &Output, dir: &Path) -> Observed {
        let status = match (out.status.code(), out.status.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            (None, None) => format!("{:?}", out.status),
        };
        let mut files: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.path().symlink_metadata().unwrap();
                format!(
                    "{} mode {:o} uid {} size {}",
                    e.file_name().to_string_lossy(),
                    m.mode(),
                    m.uid(),
                    m.len()
                )
            })
            .collect();
        files.sort();
        Observed {
            status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            files,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}; stdout {:?}; stderr {:?}; files {:?}",
            self.status, self.stdout, self.stderr, self.files
        )
    }
}

fn uid_name(uid: u32) -> &'static str {
    if uid == ROOT { "root" } else { "nobody" }
}

/// Fresh scratch directories, one per run, owned by the uid that runs.
struct Scratch {
    root: PathBuf,
    next: usize,
}

impl Scratch {
    fn new(f: &Fixture) -> Scratch {
        let root = f.base.join("scratch");
        fs::create_dir_all(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { root, next: 0 }
    }

    fn fresh(&mut self, uid: u32) -> PathBuf {
        self.next += 1;
        let d = self.root.join(self.next.to_string());
        fs::create_dir(&d).unwrap();
        chown(&d, Some(uid), Some(uid)).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        d
    }
}

/// Run `case` as `uid` under `etc` in a fresh scratch directory.
fn observe(etc: &PrivateEtc, scratch: &mut Scratch, uid: u32, program: &Path, case: &Case) -> Observed {
    let dir = scratch.fresh(uid);
    let args: Vec<OsString> = case
        .args
        .iter()
        .map(|a| match a.strip_prefix("DIR") {
            Some(rest) => {
                let mut p = dir.clone().into_os_string();
                p.push(rest);
                p
            }
            None => OsString::from(a),
        })
        .collect();
    let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let out = etc.run(uid, &[], program, &refs);
    Observed::of(&out, &dir)
}

/// The library really is in every process of the "with" namespaces and in none of the
/// "without" ones: otherwise every "same" below would be vacuous.
fn assert_preload_takes_effect(f: &Fixture, scenarios: &[Scenario]) {
    let Some(cat) = find("cat", "coreutils") else {
        return;
    };
    let so = f.so.to_string_lossy().into_owned();
    for s in scenarios {
        for uid in [ROOT, NOBODY] {
            let maps = |etc: &PrivateEtc| {
                let out = etc.run(uid, &[], &cat, &[OsStr::new("/proc/self/maps")]);
                assert!(out.status.success(), "cat /proc/self/maps: {out:?}");
                String::from_utf8_lossy(&out.stdout).contains(&so)
            };
            assert!(
                maps(&s.with),
                "({}) {} is not mapped into a process as {}",
                s.key,
                so,
                uid_name(uid)
            );
            assert!(
                !maps(&s.without),
                "({}) {} is mapped without ld.so.preload",
                s.key,
                so
            );
        }
    }
}

/// Every everyday program, every uid, (a)/(b)/(c): identical with and without the library.
#[test]
fn everyday_programs_behave_the_same_under_ld_so_preload() {
    let Some(f) = Fixture::new("preload-everyday", "") else {
        return;
    };
    if find("unshare", "util-linux").is_none() || find("setpriv", "util-linux").is_none() {
        return;
    }
    let scenarios = scenarios(&f, "everyday");
    assert_preload_takes_effect(&f, &scenarios);
    let mut scratch = Scratch::new(&f);

    let mut table = String::new();
    let mut differences = String::new();
    let width = 52;
    writeln!(
        table,
        "{:<width$} {:<14} {:<14} {:<14} without the library",
        "program (uid)", "(a) no config", "(b) valid", "(c) broken"
    )
    .unwrap();
    for case in CASES {
        let Some(program) = find(case.program, case.package) else {
            continue;
        };
        for &uid in case.uids {
            let mut row = format!("{:<width$}", format!("{} ({})", case.label, uid_name(uid)));
            let mut baseline = String::new();
            for s in &scenarios {
                let without = observe(&s.without, &mut scratch, uid, &program, case);
                let with = observe(&s.with, &mut scratch, uid, &program, case);
                for name in case.leaves {
                    assert!(
                        without.files.iter().any(|l| l.split(' ').next() == Some(name)),
                        "{} as {}: the run without the library left no {name}: {}",
                        case.label,
                        uid_name(uid),
                        without.describe()
                    );
                }
                if baseline.is_empty() {
                    baseline = format!("{}, {} file(s)", without.status, without.files.len());
                }
                let verdict = if with == without { "same" } else { "DIFFERENT" };
                write!(row, " {verdict:<14}").unwrap();
                if with != without {
                    writeln!(
                        differences,
                        "{} as {}, ({}) {}:\n  without the library: {}\n  with the library:    {}",
                        case.label,
                        uid_name(uid),
                        s.key,
                        s.what,
                        without.describe(),
                        with.describe()
                    )
                    .unwrap();
                }
            }
            writeln!(table, "{row} {baseline}").unwrap();
        }
    }
    println!("\n/etc/ld.so.preload: with the library vs without it\n{table}");
    assert!(
        differences.is_empty(),
        "the library changed what a program it must leave alone did:\n{differences}"
    );
}

/// A server program (by the basename of its binary) refuses to start without a valid
/// configuration under `/etc/ld.so.preload`, and runs guarded with one; the same binary
/// under another name runs all three ways, silently.
#[test]
fn servers_refuse_to_start_without_a_valid_config() {
    let Some(f) = Fixture::new("preload-servers", "") else {
        return;
    };
    if find("unshare", "util-linux").is_none() || find("setpriv", "util-linux").is_none() {
        return;
    }
    let scenarios = scenarios(&f, "servers");
    let hostname = fs::read_to_string("/etc/hostname").unwrap_or_default();
    let hostname = format!("OK {}", hostname.lines().next().unwrap_or(""));
    let link = f.alice("link");
    let own = f.alice("index.html");
    let open = |p: &Path| vec![OsString::from("open"), p.as_os_str().to_owned()];
    let text = |out: &Output| {
        format!(
            "exit {:?}; stdout {:?}; stderr {:?}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let mut table = String::new();
    let mut failures = String::new();

    for name in ["nginx", "php-fpm8.2", "plain-tool"] {
        let bin = hooks_copy(&f.base.join(format!("bin-{name}/{name}")), 0o755);
        let server = name != "plain-tool";
        for uid in [SERVER, ROOT] {
            let mut row = format!("{:<24}", format!("{name} (uid {uid})"));
            for s in &scenarios {
                let run = |args: &[OsString]| {
                    let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
                    s.with.run(uid, &[], &bin, &refs)
                };
                let mut check = |ok: bool, what: &str, out: &Output| {
                    if !ok {
                        writeln!(
                            failures,
                            "{name} as uid {uid}, ({}) {}: {what}: {}",
                            s.key,
                            s.what,
                            text(out)
                        )
                        .unwrap();
                    }
                    ok
                };
                let out = run(&open(Path::new("/etc/hostname")));
                let verdict = if server && s.key != "b" {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let refused = check(
                        out.status.code() == Some(1)
                            && out.stdout.is_empty()
                            && stderr.starts_with("toctou-guard: ")
                            && stderr.contains("refusing to start"),
                        "expected a refusal to start (exit 1, `refusing to start` on stderr)",
                        &out,
                    );
                    if refused { "refuses" } else { "RAN" }
                } else {
                    let mut ok = check(
                        out.status.success()
                            && String::from_utf8_lossy(&out.stdout).trim() == hostname
                            && out.stderr.is_empty(),
                        "expected to run and read /etc/hostname, silently",
                        &out,
                    );
                    // Guarded under the valid config: the tenant's own file opens, the link
                    // to the victim's does not. Unguarded otherwise: both open.
                    let own_out = run(&open(&own));
                    ok &= check(
                        String::from_utf8_lossy(&own_out.stdout).trim() == "OK alice-own",
                        "the tenant's own file",
                        &own_out,
                    );
                    let link_out = run(&open(&link));
                    let guarded = String::from_utf8_lossy(&link_out.stdout).trim() == "ERR EACCES";
                    ok &= check(
                        guarded == (s.key == "b") && link_out.stderr.is_empty(),
                        if s.key == "b" {
                            "expected the link to the victim's file refused (guarded)"
                        } else {
                            "expected the link to the victim's file opened (unguarded)"
                        },
                        &link_out,
                    );
                    match (ok, guarded) {
                        (true, true) => "runs, guarded",
                        (true, false) => "runs, unguarded",
                        (false, _) => "WRONG",
                    }
                };
                write!(row, " {verdict:<16}").unwrap();
            }
            writeln!(table, "{}", row.trim_end()).unwrap();
        }
    }
    println!(
        "\nservers under /etc/ld.so.preload\n{:<24} {:<16} {:<16} {:<16}\n{table}",
        "binary (uid)", "(a) no config", "(b) valid", "(c) broken"
    );
    assert!(failures.is_empty(), "{failures}");
}
