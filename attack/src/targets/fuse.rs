//! The FUSE mount for the `+fuse` targets: `toctou-guard-fs SOURCE MOUNTPOINT
//! --allow-other`, where SOURCE is the tenants' base (SOURCE/alice belongs to the owner of
//! SOURCE/alice). Ready once the mount point shows up as a fuse mount; SIGTERM unmounts.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{ServerProcess, is_fuse_mount};
use crate::target::StartEnv;

/// A mounted `toctou-guard-fs`.
pub struct FuseMount {
    pub mountpoint: PathBuf,
    proc_: ServerProcess,
}

impl FuseMount {
    pub fn start(env: &StartEnv<'_>) -> Result<FuseMount> {
        let fs_bin = env
            .tools
            .fs
            .clone()
            .ok_or_else(|| Error::msg("toctou-guard-fs not found"))?;
        let t = env.tenants;
        let base = t.base.as_ref().ok_or_else(|| Error::msg("no base directory"))?;
        let mountpoint = base.join("mnt");
        if is_fuse_mount(&mountpoint) {
            return Err(Error::msg(format!("{} is already mounted", mountpoint.display())));
        }
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
        let out = t.run.join("fuse.log");
        let mut p = ServerProcess::spawn("toctou-guard-fs", cmd, &out, vec![])?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !is_fuse_mount(&mountpoint) {
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
        Ok(FuseMount { mountpoint, proc_: p })
    }

    pub fn check_alive(&mut self) -> Result<()> {
        self.proc_.check_alive()
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
