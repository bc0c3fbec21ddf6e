//! The FUSE daemon's test harness: a scratch tree of two tenants ([`Tree`]), a running
//! `toctou-guard-fs` over it ([`Mount`], with any extra daemon arguments), and the checks
//! the tests share (a read as the unprivileged server uid, an EACCES refusal, the daemon's
//! `--stats FILE` counters).
//!
//! Needs root and /dev/fuse ([`prerequisites`] skips with `SKIP:` otherwise, a failure when
//! `CI` is set).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::poll::{poll_for, wait_for};
use crate::{artifacts, prereq};

/// The attacker tenant.
pub const ALICE: u32 = 43001;
/// The victim tenant.
pub const BOB: u32 = 43002;
/// The web server's uid.
pub const SERVER: u32 = 43003;

/// The victim's file, `SOURCE/bob/pub/secret`.
pub const VICTIM: &[u8] = b"BOB-SECRET-wp-config-DB_PASSWORD=hunter2\n";

/// How long the daemon may take to mount.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the daemon may take to exit on SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon may take to write `--stats FILE` after SIGUSR1.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// Root, /dev/fuse and the daemon (its path), or a reason to skip (a failure in CI).
#[track_caller]
pub fn prerequisites() -> Option<PathBuf> {
    if !prereq::root() || !prereq::fuse() {
        return None;
    }
    let daemon = artifacts::fs_daemon();
    prereq::require(
        daemon.is_some(),
        "toctou-guard-fs (cargo build --release --workspace)",
    )
    .then_some(daemon?)
}

/// Is a FUSE file system mounted at `mnt` (in this process's mount namespace)?
pub fn is_fuse_mount(mnt: &Path) -> bool {
    let want = mnt.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() > 4 && f[4] == want && l.contains(" - fuse")
        })
    })
}

/// `umount -l mnt` if a FUSE file system is mounted there.
pub fn lazy_unmount(mnt: &Path) {
    if is_fuse_mount(mnt) {
        let _ = Command::new("umount").arg("-l").arg(mnt).status();
    }
}

/// A scratch tree: `base/src/{alice,bob}/pub` (owned by [`ALICE`] and [`BOB`], with bob's
/// [`VICTIM`] at `bob/pub/secret`), a mount point `base/mnt`; removed (and unmounted) on
/// drop.
pub struct Tree {
    /// The scratch directory (`/tmp/tg-fuse-TAG-PID-N`); the daemon's log is `fs.log` here.
    pub base: PathBuf,
    /// The daemon's SOURCE.
    pub src: PathBuf,
    /// The mount point.
    pub mnt: PathBuf,
}

impl Tree {
    /// A fresh tree, unique to this process and call.
    pub fn new(tag: &str) -> Tree {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = PathBuf::from(format!(
            "/tmp/tg-fuse-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&base);
        let src = base.join("src");
        let mnt = base.join("mnt");
        for d in [&base, &src, &mnt] {
            fs::create_dir_all(d).expect("mkdir");
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let t = Tree { base, src, mnt };
        for (who, uid) in [("alice", ALICE), ("bob", BOB)] {
            t.dir(&format!("{who}/pub"), uid);
            chown(t.src.join(who), Some(uid), Some(uid)).expect("chown");
        }
        t.file("bob/pub/secret", VICTIM, BOB);
        t
    }

    /// `SOURCE/rel` (and its parents) as a directory owned by `uid`.
    pub fn dir(&self, rel: &str, uid: u32) {
        let p = self.src.join(rel);
        fs::create_dir_all(&p).expect("mkdir");
        chown(&p, Some(uid), Some(uid)).expect("chown");
    }

    /// `SOURCE/rel` holding `data`, owned by `uid`, mode 0644; its path.
    pub fn file(&self, rel: &str, data: &[u8], uid: u32) -> PathBuf {
        let p = self.src.join(rel);
        fs::write(&p, data).expect("write");
        chown(&p, Some(uid), Some(uid)).expect("chown");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    }

    /// `SOURCE/rel` as a symlink to `target`, owned by `uid`.
    pub fn link(&self, rel: &str, target: &str, uid: u32) {
        let p = self.src.join(rel);
        symlink(target, &p).expect("symlink");
        lchown(&p, Some(uid), Some(uid)).expect("lchown");
    }

    /// The daemon's log (stderr) of a [`Mount::start`] on this tree.
    pub fn log_path(&self) -> PathBuf {
        self.base.join("fs.log")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        lazy_unmount(&self.mnt);
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// A running daemon; dropping it kills it and lazily unmounts whatever is left.
pub struct Mount {
    child: Option<Child>,
    mnt: PathBuf,
    log: PathBuf,
}

impl Mount {
    /// `bin SOURCE MNT --allow-other EXTRA...` over `tree`, its stderr to
    /// [`Tree::log_path`]; returns once the mount is up (a panic, with the log, if the daemon
    /// exits first or [`MOUNT_TIMEOUT`] passes). `extra` is any daemon arguments
    /// (`--mode noopen`, `--config FILE`, `--entry-ttl-ms 0`, `-o rw`, ...).
    #[track_caller]
    pub fn start<S: AsRef<OsStr>>(bin: &Path, tree: &Tree, extra: &[S]) -> Mount {
        Mount::spawn(bin, &tree.src, &tree.mnt, &tree.log_path(), extra)
    }

    /// As [`Mount::start`] without `--allow-other`: the daemon's own defaults.
    #[track_caller]
    pub fn start_plain<S: AsRef<OsStr>>(bin: &Path, tree: &Tree, extra: &[S]) -> Mount {
        Mount::spawn_args(bin, &tree.src, &tree.mnt, &tree.log_path(), &[], extra)
    }

    /// As [`Mount::start`], with the daemon's descriptor limit (soft and hard) set to
    /// `nofile` by `prlimit`, so fd exhaustion is tested at a known scale.
    #[track_caller]
    pub fn start_limited<S: AsRef<OsStr>>(bin: &Path, tree: &Tree, nofile: u32, extra: &[S]) -> Mount {
        let limit = format!("--nofile={nofile}:{nofile}");
        let mut args: Vec<&OsStr> = vec![OsStr::new(&limit), OsStr::new("--"), bin.as_os_str()];
        args.extend([
            tree.src.as_os_str(),
            tree.mnt.as_os_str(),
            OsStr::new("--allow-other"),
        ]);
        args.extend(extra.iter().map(AsRef::as_ref));
        Mount::spawn_cmd(Path::new("prlimit"), &tree.mnt, &tree.log_path(), &args)
    }

    /// As [`Mount::start`], for any SOURCE and mount point, the daemon's stderr to `log`.
    #[track_caller]
    pub fn spawn<S: AsRef<OsStr>>(bin: &Path, src: &Path, mnt: &Path, log: &Path, extra: &[S]) -> Mount {
        Mount::spawn_args(bin, src, mnt, log, &["--allow-other"], extra)
    }

    #[track_caller]
    fn spawn_args<S: AsRef<OsStr>>(
        bin: &Path,
        src: &Path,
        mnt: &Path,
        log: &Path,
        first: &[&str],
        extra: &[S],
    ) -> Mount {
        let mut args: Vec<&OsStr> = vec![src.as_os_str(), mnt.as_os_str()];
        args.extend(first.iter().map(OsStr::new));
        args.extend(extra.iter().map(AsRef::as_ref));
        Mount::spawn_cmd(bin, mnt, log, &args)
    }

    /// Run `program args...` (the daemon, or a wrapper that execs it) and wait for the mount.
    #[track_caller]
    fn spawn_cmd(program: &Path, mnt: &Path, log: &Path, args: &[&OsStr]) -> Mount {
        let log_file = fs::File::create(log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn toctou-guard-fs");
        let mut m = Mount {
            child: Some(child),
            mnt: mnt.to_path_buf(),
            log: log.to_path_buf(),
        };
        wait_for(
            &format!("toctou-guard-fs to mount {}", mnt.display()),
            MOUNT_TIMEOUT,
            || {
                if is_fuse_mount(&m.mnt) {
                    return Some(());
                }
                if let Some(c) = m.child.as_mut()
                    && let Ok(Some(st)) = c.try_wait()
                {
                    panic!("toctou-guard-fs exited with {st}: {}", m.log());
                }
                None
            },
        );
        m
    }

    /// The daemon's pid (0 once stopped or killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mnt
    }

    /// What the daemon has written to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -SIG` the daemon (`"USR1"`, `"TERM"`, ...).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            send_signal(c.id(), sig);
        }
    }

    /// SIGTERM and wait (up to [`STOP_TIMEOUT`], then SIGKILL and `None`); the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        send_signal(child.id(), "TERM");
        let exited = poll_for(STOP_TIMEOUT, || child.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        exited
    }

    /// SIGKILL the daemon and reap it; the mount is left behind, dead (ENOTCONN).
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        send_signal(child.id(), "KILL");
        child.wait().ok()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        lazy_unmount(&self.mnt);
    }
}

/// `kill -SIG PID`.
pub fn send_signal(pid: u32, sig: &str) {
    assert!(pid > 1, "no such daemon");
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Read `path` as the unprivileged [`SERVER`] uid (`cat`): Ok(bytes) or Err(stderr).
pub fn read_as_server(path: &Path) -> Result<Vec<u8>, String> {
    read_as(SERVER, path)
}

/// Read `path` as `uid` (gid the same, no supplementary groups; `cat`): Ok(bytes) or
/// Err(stderr).
pub fn read_as(uid: u32, path: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("cat")
        .arg(path)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run cat");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `path` is refused with EACCES, to root and to the [`SERVER`] uid.
#[track_caller]
pub fn assert_eacces(path: &Path) {
    match fs::read(path) {
        Ok(data) => panic!(
            "{} was served ({} bytes, victim: {})",
            path.display(),
            data.len(),
            data == VICTIM
        ),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::EACCES),
            "{}: expected EACCES, got {e}",
            path.display()
        ),
    }
    let err = read_as_server(path).expect_err("served to the server uid");
    assert!(err.contains("Permission denied"), "{}: {err}", path.display());
}

/// The daemon's `--stats FILE` once it holds a dump other than `previous` (send SIGUSR1
/// first); a panic after [`STATS_TIMEOUT`].
#[track_caller]
pub fn wait_stats(path: &Path, previous: &str) -> String {
    wait_for(
        &format!("stats written to {}", path.display()),
        STATS_TIMEOUT,
        || {
            fs::read_to_string(path)
                .ok()
                .filter(|s| !s.is_empty() && s != previous)
        },
    )
}

/// Counter `name` of a stats dump (`dump=N lookup=N forget=N ...`); a panic if the dump
/// has no such counter or its value is not a number.
#[track_caller]
pub fn counter(stats: &str, name: &str) -> u64 {
    let value = stats
        .split_whitespace()
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no counter {name:?} in the stats dump {stats:?}"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("counter {name}={value:?} is not a number ({e}) in {stats:?}"))
}

#[cfg(test)]
mod tests {
    use super::counter;

    const DUMP: &str = "dump=2 lookup=7 open=0 opendir=3 read=12";

    #[test]
    fn counter_reads_the_named_counter_only() {
        assert_eq!(counter(DUMP, "open"), 0);
        assert_eq!(counter(DUMP, "opendir"), 3);
        assert_eq!(counter(DUMP, "read"), 12);
    }

    #[test]
    #[should_panic(expected = "no counter \"flush\"")]
    fn a_missing_counter_fails() {
        counter(DUMP, "flush");
    }

    #[test]
    #[should_panic(expected = "is not a number")]
    fn a_garbled_counter_fails() {
        counter("open=x", "open");
    }
}
