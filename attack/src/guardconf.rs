//! The shim's side of a run: the guard configuration the harness writes (root-owned, in a
//! root-owned directory, as the shim demands) and a datagram socket standing in for
//! syslog, which collects the shim's denial lines.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Result, Wrap};
use crate::tenants::mk_file;

/// What the generated configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// `root PATTERN`.
    pub root: String,
    /// `owner euid` instead of the tenant directory's owner (PHP pools).
    pub owner_euid: bool,
    /// `allow_uid 0`.
    pub allow_root: bool,
    /// `mode audit` instead of `mode enforce`.
    pub audit: bool,
    /// `log_socket`.
    pub log_socket: PathBuf,
    /// `log_rate`.
    pub log_rate: u32,
}

impl GuardConfig {
    pub fn text(&self) -> String {
        let mut s = String::from("# written by toctou-attack\n");
        s.push_str(if self.audit {
            "mode audit\n"
        } else {
            "mode enforce\n"
        });
        s.push_str(&format!("root {}\n", self.root));
        if self.owner_euid {
            s.push_str("owner euid\n");
        }
        if self.allow_root {
            s.push_str("allow_uid 0\n");
        }
        s.push_str(&format!("log_socket {}\n", self.log_socket.display()));
        s.push_str(&format!("log_rate {}\n", self.log_rate));
        s
    }

    /// Write it as `dir/name` (root-owned, 0644).
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let path = dir.join(name);
        mk_file(&path, self.text().as_bytes(), 0, 0, 0o644)?;
        Ok(path)
    }
}

/// A bound `SOCK_DGRAM` unix socket collecting syslog lines (like `/dev/log`).
pub struct LogListener {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    lines: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const KEEP_LINES: usize = 2000;

impl LogListener {
    /// Bind `path` (mode 0666, so that workers running as any user can log).
    pub fn bind(path: &Path) -> Result<LogListener> {
        let _ = fs::remove_file(path);
        let sock = UnixDatagram::bind(path).wrap(|| format!("bind {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o666))
            .wrap(|| format!("chmod {}", path.display()))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .wrap(|| "set_read_timeout")?;
        let stop = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let (s, l, c) = (Arc::clone(&stop), Arc::clone(&lines), Arc::clone(&count));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            // Bounded by the stop flag, checked at least every 100 ms (read timeout).
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    c.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut v) = l.lock()
                        && v.len() < KEEP_LINES
                    {
                        v.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
                    }
                }
            }
        });
        Ok(LogListener {
            path: path.to_path_buf(),
            stop,
            lines,
            count,
            thread: Some(thread),
        })
    }

    /// Datagrams received so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The lines kept so far (the first 2000).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Forget the lines kept so far.
    pub fn clear(&self) {
        if let Ok(mut v) = self.lines.lock() {
            v.clear();
        }
    }

    /// Wait up to `timeout` for a line containing every one of `needles`.
    pub fn wait_for(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LogListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}
