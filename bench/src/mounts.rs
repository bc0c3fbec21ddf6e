//! FUSE mounts for the end-to-end runs: `toctou-guard-fs` in each mode, and bindfs.
//! A [`Mount`] stops its daemon and detaches the mount when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::Guarded;

pub struct Mount {
    pub mountpoint: PathBuf,
    daemon: Option<Guarded>,
    /// `--stats FILE` of a toctou-guard-fs daemon: request counters written on SIGUSR1.
    stats: Option<PathBuf>,
}

/// Is `path` a mount point (per `/proc/self/mountinfo`)?
pub fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
        info.lines()
            .any(|l| l.split_whitespace().nth(4) == Some(want.as_ref()))
    })
}

impl Mount {
    /// Start `cmd` (a foreground FUSE daemon) and wait until `mountpoint` is mounted.
    pub fn start(name: &str, mut cmd: Command, mountpoint: &Path, log: &Path) -> Result<Mount, String> {
        std::fs::create_dir_all(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
        crate::proc::die_with_parent(&mut cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("{name}: cannot start: {e}"))?;
        let mut m = Mount {
            mountpoint: mountpoint.to_path_buf(),
            daemon: Some(Guarded::new(name, child, libc::SIGTERM)),
            stats: None,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if is_mounted(mountpoint) {
                return Ok(m);
            }
            if let Some(status) = m.daemon.as_mut().and_then(Guarded::exited) {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!(
                    "{name} exited ({status}) before mounting: {}",
                    tail.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{name}: {} not mounted after 15 s", mountpoint.display()))
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().map_or(0, Guarded::pid)
    }

    /// The daemon's request counters now (`name → count`), if it keeps any. Bounded: waits
    /// at most 2 s for the daemon to write them.
    pub fn stats(&self) -> Option<BTreeMap<String, u64>> {
        let file = self.stats.as_ref()?;
        let pid = self.daemon_pid();
        if pid == 0 {
            return None; // kill(0, …) would signal our whole process group
        }
        let _ = std::fs::remove_file(file);
        // SAFETY: `pid` is our own live child (the daemon); SIGUSR1 asks it for its counters.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) };
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

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(5));
        }
        if is_mounted(&self.mountpoint) {
            // The daemon is gone; a lazy unmount cannot hang on it.
            if let Ok(c) = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes()) {
                // SAFETY: `c` is a valid NUL-terminated path; MNT_DETACH never blocks.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// `toctou-guard-fs SOURCE MOUNTPOINT --mode MODE --allow-other --stats FILE`.
pub fn toctou_fs(
    daemon: &Path,
    source: &Path,
    mountpoint: &Path,
    mode: &str,
    log: &Path,
) -> Result<Mount, String> {
    let stats = log.with_extension("stats");
    let mut cmd = Command::new(daemon);
    cmd.arg(source)
        .arg(mountpoint)
        .args(["--mode", mode, "--allow-other", "--foreground", "--stats"])
        .arg(&stats);
    let mut m = Mount::start(&format!("toctou-guard-fs --mode {mode}"), cmd, mountpoint, log)?;
    m.stats = Some(stats);
    Ok(m)
}

/// bindfs in the foreground with `options` (default [`BINDFS_FASTEST`]).
pub fn bindfs(source: &Path, mountpoint: &Path, options: &[String], log: &Path) -> Result<Mount, String> {
    let mut cmd = Command::new("bindfs");
    cmd.arg("-f").args(options).arg(source).arg(mountpoint);
    Mount::start("bindfs", cmd, mountpoint, log)
}

/// bindfs at its fastest on this machine: single-threaded (on 2 cores `--multithreaded`
/// costs a thread hand-off per request and measured slower), page cache kept across opens,
/// long attribute and entry timeouts. The README lists the alternatives measured.
pub const BINDFS_FASTEST: &str = "-o kernel_cache,entry_timeout=60,attr_timeout=60";
