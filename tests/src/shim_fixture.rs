//! The shim's test harness: two tenants' docroots under `BASE/home/*/public_html`, a
//! config naming them, a syslog socket of the test's own ([`Fixture`]), and the C helpers
//! of `tests/c` with a copy of the shim, in a directory every uid can reach
//! ([`c_program`]).
//!
//! Needs root (to own files as tenants and drop to the server uid) and the release build of
//! the shim (`cargo build --release --workspace`); [`Fixture::new`] skips with `SKIP:`
//! otherwise (a failure when `CI` is set).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::{artifacts, prereq};

/// The attacker tenant (owns `home/alice`).
pub const ALICE: u32 = 42001;
/// The victim tenant (owns `home/bob`).
pub const BOB: u32 = 42002;
/// The web server's uid, which the helpers run as.
pub const SERVER: u32 = 42003;

/// Root and the built shim (its path), or a reason to skip (a failure in CI).
#[track_caller]
pub fn prerequisites() -> Option<PathBuf> {
    if !prereq::root() {
        return None;
    }
    let so = artifacts::shim();
    prereq::require(
        so.is_some(),
        "libtoctou_guard.so (cargo build --release --workspace)",
    )
    .then_some(so?)
}

/// `name` in the directory of the test programs: a helper compiled from `tests/c` (`hooks`,
/// `forkstress`, `noalloc`, `conform`, `early` (a shared library)) or the copy of the shim,
/// `libtoctou_guard.so`. All are built (copied) once per test binary, on first use.
pub fn c_program(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // Outside the checkout: the programs run as unprivileged uids, which cannot reach a
        // checkout under a private (0700) directory.
        let d = std::env::temp_dir().join(format!("tg-shim-bin-{}", std::process::id()));
        fs::create_dir_all(&d).expect("mkdir");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
        // Copied once, before any test runs a program that loads it.
        if let Some(shim) = artifacts::shim() {
            fs::copy(shim, d.join("libtoctou_guard.so")).expect("copy the shim");
        }
        for (src, extra) in [
            ("hooks", &["-pthread"][..]),
            ("forkstress", &["-pthread"][..]),
            ("noalloc", &[][..]),
            ("early", &["-shared", "-fPIC"][..]),
            ("conform", &["-pthread"][..]),
            ("mutate", &[][..]),
            ("listing", &[][..]),
            ("execs", &["-pthread"][..]),
            ("audit", &["-shared", "-fPIC"][..]),
            ("ownercache", &[][..]),
            ("cwd", &["-pthread"][..]),
        ] {
            let out = Command::new("cc")
                .args(["-O2", "-Wall", "-o"])
                .arg(d.join(src))
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("c/{src}.c")))
                .args(extra)
                .output()
                .expect("cc (install gcc)");
            assert!(
                out.status.success(),
                "cc {src}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        d
    });
    dir.join(name)
}

/// Two tenants under `BASE/home/*/public_html`, a config, a syslog socket of our own;
/// removed on drop.
///
/// `home/alice/public_html` ([`ALICE`]'s) holds `index.html` ("alice-own"), `uploads/`
/// (0777, with `dangling`, a symlink to a missing file in bob's docroot) and the ways into
/// bob's file: `link` (absolute symlink), `dotdot` (relative), `bobdir` (a symlink to bob's
/// docroot), `hard` (a hard link); `ownlink` is a symlink to alice's own `index.html`.
/// `home/bob/public_html` ([`BOB`]'s, 0777) holds `secret.txt` ("BOB-SECRET", 0666).
/// `etc/toctou-guard.conf` is `root BASE/home/*/public_html`, `log_socket BASE/log.sock` and
/// the caller's extra lines.
pub struct Fixture {
    /// The scratch directory (`$TMPDIR/tg-shim-NAME-PID`).
    pub base: PathBuf,
    /// The shim every uid can load (the copy beside the C programs).
    pub so: PathBuf,
    /// The config (`BASE/etc/toctou-guard.conf`), for `TOCTOU_GUARD_CONFIG`.
    pub conf: PathBuf,
    /// The config's `log_socket`.
    pub sock: PathBuf,
    log: UnixDatagram,
}

impl Fixture {
    /// The fixture, its config ending in `extra_conf`; `None` after a `SKIP:`.
    #[track_caller]
    pub fn new(name: &str, extra_conf: &str) -> Option<Fixture> {
        prerequisites()?;
        // The shim is loaded by unprivileged uids too: use the copy beside the C programs.
        let so = c_program("libtoctou_guard.so");
        let base = std::env::temp_dir().join(format!("tg-shim-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let alice = base.join("home/alice/public_html");
        let bob = base.join("home/bob/public_html");
        fs::create_dir_all(&alice).unwrap();
        fs::create_dir_all(&bob).unwrap();
        fs::create_dir_all(base.join("etc")).unwrap();
        for p in [&base, &base.join("home"), &base.join("etc")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let own = |p: &Path, uid: u32, mode: u32| {
            chown(p, Some(uid), Some(uid)).unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        };
        own(&base.join("home/alice"), ALICE, 0o755);
        own(&alice, ALICE, 0o755);
        own(&base.join("home/bob"), BOB, 0o755);
        // The victim's docroot is world-writable so that only the guard stands between the
        // server and harm (a creation or truncation the kernel would otherwise refuse).
        own(&bob, BOB, 0o777);
        fs::write(alice.join("index.html"), "alice-own\n").unwrap();
        own(&alice.join("index.html"), ALICE, 0o644);
        fs::write(bob.join("secret.txt"), "BOB-SECRET\n").unwrap();
        own(&bob.join("secret.txt"), BOB, 0o666);
        fs::create_dir(alice.join("uploads")).unwrap();
        own(&alice.join("uploads"), ALICE, 0o777);
        let link = |target: &Path, name: &str| {
            let p = alice.join(name);
            symlink(target, &p).unwrap();
            lchown(&p, Some(ALICE), Some(ALICE)).unwrap();
        };
        link(&bob.join("secret.txt"), "link");
        link(Path::new("../../bob/public_html/secret.txt"), "dotdot");
        link(&bob, "bobdir");
        link(&alice.join("index.html"), "ownlink");
        link(&bob.join("created-by-attack"), "uploads/dangling");
        // A hard link to the victim's file (root makes it: fs.protected_hardlinks).
        fs::hard_link(bob.join("secret.txt"), alice.join("hard")).unwrap();
        let sock = base.join("log.sock");
        let log = UnixDatagram::bind(&sock).unwrap();
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o777)).unwrap();
        log.set_nonblocking(true).unwrap();
        let conf = base.join("etc/toctou-guard.conf");
        fs::write(
            &conf,
            format!(
                "root {}/home/*/public_html\nlog_socket {}\n{extra_conf}",
                base.display(),
                sock.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).unwrap();
        Some(Fixture {
            base,
            so,
            conf,
            sock,
            log,
        })
    }

    /// `rel` in alice's docroot.
    pub fn alice(&self, rel: &str) -> PathBuf {
        self.base.join("home/alice/public_html").join(rel)
    }

    /// `rel` in bob's docroot.
    pub fn bob(&self, rel: &str) -> PathBuf {
        self.base.join("home/bob/public_html").join(rel)
    }

    /// `program` with the shim preloaded and this fixture's config (uid unchanged).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("LD_PRELOAD", &self.so)
            .env("TOCTOU_GUARD_CONFIG", &self.conf);
        cmd
    }

    /// Run a program as `uid` (and gid `uid`) with the shim loaded.
    pub fn run_as(&self, uid: u32, program: &Path, args: &[&OsStr]) -> Output {
        self.command(program)
            .args(args)
            .uid(uid)
            .gid(uid)
            .output()
            .expect("run helper")
    }

    /// Run a program as `uid` in `cwd`, with the shim of `shim` loaded, or bare (`None`): the
    /// two halves of a comparison with libc.
    pub fn run_maybe(
        shim: Option<&Fixture>,
        uid: u32,
        cwd: &Path,
        program: &Path,
        args: &[&OsStr],
    ) -> Output {
        let mut cmd = match shim {
            Some(f) => f.command(program),
            None => Command::new(program),
        };
        cmd.args(args)
            .current_dir(cwd)
            .uid(uid)
            .gid(uid)
            .output()
            .expect("run helper")
    }

    /// Run a program as the server uid with the shim loaded.
    pub fn run(&self, program: &Path, args: &[&OsStr]) -> Output {
        self.run_as(SERVER, program, args)
    }

    /// `hooks ENTRY PATH [DIR]` as the server uid: "OK <first line>" or "ERR <errno>"
    /// (a panic if the shim wrote to fd 2).
    #[track_caller]
    pub fn hook(&self, entry: &str, path: &Path, dir: Option<&Path>) -> String {
        let mut args = vec![OsStr::new(entry), path.as_os_str()];
        if let Some(d) = dir {
            args.push(d.as_os_str());
        }
        let out = self.run(&c_program("hooks"), &args);
        assert!(
            out.stderr.is_empty(),
            "the shim must not write to fd 2: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Log lines received so far (datagrams are queued before the sender's call returns).
    pub fn logs(&self) -> Vec<String> {
        let mut buf = [0u8; 2048];
        let mut lines = Vec::new();
        while let Ok(n) = self.log.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        lines
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}
