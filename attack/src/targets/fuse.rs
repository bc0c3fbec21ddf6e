//! FUSE mounts. The `+fuse` targets' mount: `toctou-guard-fs SOURCE MOUNTPOINT
//! --allow-other`, where SOURCE is the tenants' base (SOURCE/alice belongs to the owner of
//! SOURCE/alice); the benchmarks' mounts: `toctou-guard-fs` in each mode, and bindfs. Ready
//! once the mount point shows up as a fuse mount; SIGTERM unmounts, and a mount left behind
//! is detached on drop.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Wrap};
use crate::process::{ServerProcess, is_fuse_mount};
use crate::target::StartEnv;

/// A mounted FUSE file system and its daemon.
pub struct FuseMount {
    pub mountpoint: PathBuf,
    proc_: ServerProcess,
    /// `--stats FILE` of a `toctou-guard-fs` daemon: request counters written on SIGUSR1.
    stats: Option<PathBuf>,
}

impl FuseMount {
    /// The `+fuse` targets' mount: the tenants' base at `BASE/mnt`, with the guard
    /// configuration and no kernel caching of names or attributes.
    pub fn start(env: &StartEnv<'_>) -> Result<FuseMount> {
        let fs_bin = env
            .tools
            .fs
            .clone()
            .ok_or_else(|| Error::msg("toctou-guard-fs not found"))?;
        let t = env.tenants;
        let base = t.base.as_ref().ok_or_else(|| Error::msg("no base directory"))?;
        let mountpoint = base.join("mnt");
        let mut cmd = Command::new(fs_bin);
        cmd.arg(&t.www)
            .arg(&mountpoint)
            .arg("--allow-other")
            .arg("--config")
            .arg(env.guard_config)
            // No kernel caching of names or attributes: every request then walks through the
            // daemon's lookup, so the swaps are really raced against the check (with the
            // default 1 s TTL the server would mostly see a cached, pre-swap entry).
            .args(["--entry-ttl-ms", "0", "--attr-ttl-ms", "0"]);
        FuseMount::spawn("toctou-guard-fs", cmd, &mountpoint, &t.run.join("fuse.log"))
    }

    /// `toctou-guard-fs SOURCE MOUNTPOINT --allow-other --mode MODE --stats LOG.stats`,
    /// with the daemon's default caching (the benchmarks).
    pub fn guard_fs(
        daemon: &Path,
        source: &Path,
        mountpoint: &Path,
        mode: &str,
        log: &Path,
    ) -> Result<FuseMount> {
        let stats = log.with_extension("stats");
        let mut cmd = Command::new(daemon);
        cmd.arg(source)
            .arg(mountpoint)
            .args(["--allow-other", "--mode", mode, "--stats"])
            .arg(&stats);
        let mut m = FuseMount::spawn(&format!("toctou-guard-fs --mode {mode}"), cmd, mountpoint, log)?;
        m.stats = Some(stats);
        Ok(m)
    }

    /// `bindfs -f OPTIONS SOURCE MOUNTPOINT` (the benchmarks' baseline).
    pub fn bindfs(
        bindfs: &Path,
        source: &Path,
        mountpoint: &Path,
        options: &[String],
        log: &Path,
    ) -> Result<FuseMount> {
        let mut cmd = Command::new(bindfs);
        cmd.arg("-f").args(options).arg(source).arg(mountpoint);
        FuseMount::spawn("bindfs", cmd, mountpoint, log)
    }

    /// Start `cmd`, a FUSE daemon staying in the foreground, its output to `log`, and wait
    /// (15 s at most) until `mountpoint` (created if missing) is a fuse mount.
    pub fn spawn(name: &str, cmd: Command, mountpoint: &Path, log: &Path) -> Result<FuseMount> {
        std::fs::create_dir_all(mountpoint).wrap(|| format!("mkdir {}", mountpoint.display()))?;
        if is_fuse_mount(mountpoint) {
            return Err(Error::msg(format!("{} is already mounted", mountpoint.display())));
        }
        let mut p = ServerProcess::spawn(name, cmd, log, vec![])?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !is_fuse_mount(mountpoint) {
            p.check_alive()?;
            if Instant::now() >= deadline {
                return Err(Error::msg(format!(
                    "{} not mounted after 15 s\n{}",
                    mountpoint.display(),
                    p.tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(FuseMount {
            mountpoint: mountpoint.to_path_buf(),
            proc_: p,
            stats: None,
        })
    }

    pub fn check_alive(&mut self) -> Result<()> {
        self.proc_.check_alive()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.proc_.pid()
    }

    /// The daemon's request counters now (`name → count`), if it keeps any. Bounded: waits
    /// at most 2 s for the daemon to write them.
    pub fn stats(&self) -> Option<BTreeMap<String, u64>> {
        let file = self.stats.as_ref()?;
        let _ = std::fs::remove_file(file);
        crate::sys::kill(self.pid() as libc::pid_t, libc::SIGUSR1).ok()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(file)
                && text.contains('=')
                && text.ends_with('\n')
            {
                return Some(
                    text.split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                        .collect(),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        self.proc_.stop();
        if is_fuse_mount(&self.mountpoint) {
            for prog in ["fusermount3", "umount"] {
                let flag = if prog == "umount" { "-l" } else { "-uz" };
                let _ = Command::new(prog).arg(flag).arg(&self.mountpoint).status();
                if !is_fuse_mount(&self.mountpoint) {
                    break;
                }
            }
        }
    }
}
