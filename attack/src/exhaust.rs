//! The daemon-exhaustion side of `deep-tree` and `alias-pinning`: the attacker's helper (a
//! forked child under the attacker's uid, like the swapper) working through the served tree
//! — the FUSE mount, which every local user can reach, or the raw tree for a bare target —
//! while the HTTP lanes run; and the FUSE daemon's resident memory and descriptor count,
//! read from `/proc/PID` before, during and at the end of the cell.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, Result, Wrap};
use crate::swapper::State;
use crate::sys::{self, Forked, SharedPage};

/// What the attacker's helper does (paths as the tenants' files are named; mapped onto the
/// served tree with [`MountLoad::served`]).
#[derive(Debug, Clone)]
pub enum MountLoad {
    /// Walk `top`, then `depth` times `name`, one component at a time from the held parent,
    /// and read each of `leaves` there; again and again until the cell ends.
    Walk {
        top: PathBuf,
        name: String,
        depth: usize,
        leaves: Vec<String>,
        /// Names there that must not be readable (the attacker's links to the victim's
        /// files); one read is a leak.
        refused: Vec<String>,
    },
    /// Open each of `names` in `dir` with `O_PATH` (following a link) and hold them all until
    /// the cell ends.
    Pin { dir: PathBuf, names: Vec<String> },
}

impl MountLoad {
    /// The same load on the tree served at `served` instead of `source`.
    pub fn served(&self, source: &Path, served: &Path) -> Result<MountLoad> {
        let map = |p: &Path| -> Result<PathBuf> {
            p.strip_prefix(source)
                .map(|r| served.join(r))
                .map_err(|_| Error::msg(format!("{} is not under {}", p.display(), source.display())))
        };
        Ok(match self {
            MountLoad::Walk {
                top,
                name,
                depth,
                leaves,
                refused,
            } => MountLoad::Walk {
                top: map(top)?,
                name: name.clone(),
                depth: *depth,
                leaves: leaves.clone(),
                refused: refused.clone(),
            },
            MountLoad::Pin { dir, names } => MountLoad::Pin {
                dir: map(dir)?,
                names: names.clone(),
            },
        })
    }
}

/// What the helper did: walks or reads done (`Walk`) or names held (`Pin`), and failures
/// (a failure is the daemon refusing the attacker its own files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HelperStats {
    pub ops: u64,
    pub errors: u64,
    pub first_errno: u32,
    /// Reads of a name that must be refused.
    pub leaks: u64,
}

/// A running helper child.
pub struct Helper {
    pid: libc::pid_t,
    shared: Arc<SharedPage>,
    reaped: bool,
}

const EXIT_PRIVS: i32 = 10;
const EXIT_OPEN: i32 = 11;

/// Most reads one `Walk` helper does (it stops at the deadline long before).
const MAX_WALKS: u64 = 1 << 32;

impl Helper {
    /// Fork the helper as `uid:gid`; returns once it runs (for `Pin`: once every name is
    /// opened or refused). It quits by itself after `max_lifetime`.
    pub fn spawn(load: &MountLoad, uid: u32, gid: u32, max_lifetime: Duration) -> Result<Helper> {
        let shared = Arc::new(SharedPage::new().wrap(|| "mmap shared helper page")?);
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::msg("NUL in path"));
        let cs = |s: &str| CString::new(s).map_err(|_| Error::msg("NUL in name"));
        // Everything the child needs is allocated before fork.
        let job = match load {
            MountLoad::Walk {
                top,
                name,
                depth,
                leaves,
                refused,
            } => Job::Walk {
                top: c(top)?,
                name: cs(name)?,
                depth: *depth,
                leaves: leaves.iter().map(|l| cs(l)).collect::<Result<_>>()?,
                refused: refused.iter().map(|l| cs(l)).collect::<Result<_>>()?,
            },
            MountLoad::Pin { dir, names } => Job::Pin {
                dir: c(dir)?,
                names: names.iter().map(|n| cs(n)).collect::<Result<_>>()?,
                held: Vec::with_capacity(names.len()),
            },
        };
        // SAFETY: the child branch only sets its descriptor limit, drops privileges, makes
        // `*at` system calls and pushes into a vector reserved before fork (glibc's malloc is
        // fork-safe), and ends in exit_now; it takes no std lock (no stdout/stderr, no env).
        match unsafe { sys::fork() }.wrap(|| "fork helper")? {
            Forked::Child => child_main(&shared, job, uid, gid, max_lifetime),
            Forked::Parent(pid) => {
                let mut h = Helper {
                    pid,
                    shared,
                    reaped: false,
                };
                h.wait_ready()?;
                Ok(h)
            }
        }
    }

    fn wait_ready(&mut self) -> Result<()> {
        // Opening thousands of names through a mount takes a while on a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.shared.ready.load(Ordering::Acquire) == 1 {
                return Ok(());
            }
            if let Some(status) = sys::try_wait(self.pid).wrap(|| "waitpid helper")? {
                self.reaped = true;
                let why = match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
                    Some(EXIT_PRIVS) => "could not drop to the attacker's uid".to_string(),
                    Some(EXIT_OPEN) => format!(
                        "could not open its directory as the attacker (errno {})",
                        self.shared.first_errno.load(Ordering::Relaxed)
                    ),
                    _ => "died".to_string(),
                };
                return Err(Error::msg(format!("helper {why} (status {status:#x})")));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(Error::msg("helper did not become ready within 60 s"))
    }

    /// Tell it to quit (releasing what it holds), reap it (killing it after 5 s), report.
    pub fn quit(mut self) -> HelperStats {
        self.stop();
        HelperStats {
            ops: self.shared.swaps.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            first_errno: self.shared.first_errno.load(Ordering::Relaxed),
            leaks: self.shared.leaks.load(Ordering::Relaxed),
        }
    }

    fn stop(&mut self) {
        if self.reaped {
            return;
        }
        self.shared.state.store(State::Quit as u32, Ordering::Release);
        sys::reap_or_kill(self.pid, Duration::from_secs(5));
        self.reaped = true;
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Job {
    Walk {
        top: CString,
        name: CString,
        depth: usize,
        leaves: Vec<CString>,
        refused: Vec<CString>,
    },
    Pin {
        dir: CString,
        names: Vec<CString>,
        held: Vec<OwnedFd>,
    },
}

fn record_error(shared: &SharedPage, e: rustix::io::Errno) {
    let _ =
        shared
            .first_errno
            .compare_exchange(0, e.raw_os_error() as u32, Ordering::Relaxed, Ordering::Relaxed);
    shared.errors.fetch_add(1, Ordering::Relaxed);
}

fn child_main(shared: &SharedPage, job: Job, uid: u32, gid: u32, max_lifetime: Duration) -> ! {
    let _ = sys::set_parent_death_signal(libc::SIGKILL);
    let deadline = Instant::now() + max_lifetime;
    if let Job::Pin { names, .. } = &job {
        // Still root: room for every pin (a tenant can raise its own soft limit to its hard
        // limit; root makes sure the hard limit is no smaller than the test needs).
        let want = names.len() as u64 + 64;
        let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let max = lim.maximum.map_or(want, |m| m.max(want));
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(want),
                maximum: Some(max),
            },
        );
    }
    if sys::drop_privileges(uid, gid).is_err() || sys::geteuid() != uid {
        sys::exit_now(EXIT_PRIVS);
    }
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match job {
        Job::Pin { dir, names, mut held } => {
            let dirfd = match rustix::fs::open(dir.as_c_str(), dir_flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) => {
                    record_error(shared, e);
                    sys::exit_now(EXIT_OPEN)
                }
            };
            for n in &names {
                // Follows the link: each name is an alias of the directory it leads to.
                match rustix::fs::openat(
                    &dirfd,
                    n.as_c_str(),
                    OFlags::PATH | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => {
                        held.push(fd);
                        shared.swaps.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => record_error(shared, e),
                }
            }
            shared.ready.store(1, Ordering::Release);
            while Instant::now() < deadline && shared.state.load(Ordering::Acquire) != State::Quit as u32 {
                std::thread::sleep(Duration::from_millis(2));
            }
            drop(held);
        }
        Job::Walk {
            top,
            name,
            depth,
            leaves,
            refused,
        } => {
            shared.ready.store(1, Ordering::Release);
            let mut buf = [0u8; 4096];
            let mut walks = 0u64;
            while walks < MAX_WALKS
                && Instant::now() < deadline
                && shared.state.load(Ordering::Acquire) != State::Quit as u32
            {
                walks += 1;
                let mut cur = match rustix::fs::open(top.as_c_str(), dir_flags, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(e) => {
                        record_error(shared, e);
                        continue;
                    }
                };
                let mut ok = true;
                for _ in 0..depth {
                    match rustix::fs::openat(&cur, name.as_c_str(), dir_flags, Mode::empty()) {
                        Ok(fd) => cur = fd,
                        Err(e) => {
                            record_error(shared, e);
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                for leaf in &leaves {
                    let read = rustix::fs::openat(
                        &cur,
                        leaf.as_c_str(),
                        OFlags::RDONLY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .and_then(|f| rustix::io::read(&f, &mut buf));
                    match read {
                        Ok(n) if n > 0 => {
                            shared.swaps.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => record_error(shared, rustix::io::Errno::NODATA),
                        Err(e) => record_error(shared, e),
                    }
                }
                for r in &refused {
                    let read = rustix::fs::openat(
                        &cur,
                        r.as_c_str(),
                        OFlags::RDONLY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .and_then(|f| rustix::io::read(&f, &mut buf));
                    if read.is_ok() {
                        shared.leaks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    sys::exit_now(0)
}

/// A process's resident memory and open descriptors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub rss_kib: u64,
    pub fds: u64,
}

impl Usage {
    /// The larger of each.
    fn max(self, o: Usage) -> Usage {
        Usage {
            rss_kib: self.rss_kib.max(o.rss_kib),
            fds: self.fds.max(o.fds),
        }
    }
}

/// `VmRSS` of `/proc/PID/status` and the entries of `/proc/PID/fd`; `None` if it is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage { rss_kib, fds })
}

/// The daemon's usage over a cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DaemonUsage {
    pub before: Usage,
    /// The largest seen while the attacker ran (sampled every 20 ms).
    pub peak: Usage,
    /// At the end of the load, the attacker's helper still holding what it holds.
    pub end: Usage,
    /// How many descriptors it may gain in the cell (the scenario's bound).
    pub fd_growth_bound: u64,
}

/// How much a guarded daemon's RSS may grow in a `deep-tree` or `alias-pinning` cell (the
/// daemon before issue 12 grew by 45 MB walking 600 levels of 255-byte names).
pub const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;
/// The descriptor bound when the scenario states none.
pub const FD_GROWTH_BOUND: u64 = 1024;

impl DaemonUsage {
    pub fn rss_growth_kib(&self) -> u64 {
        self.peak
            .rss_kib
            .max(self.end.rss_kib)
            .saturating_sub(self.before.rss_kib)
    }

    pub fn max_fds(&self) -> u64 {
        self.peak.fds.max(self.end.fds)
    }

    pub fn fd_growth(&self) -> u64 {
        self.max_fds().saturating_sub(self.before.fds)
    }

    /// RSS growth below [`RSS_GROWTH_BOUND_KIB`], descriptor growth at most the bound?
    pub fn within_bounds(&self) -> bool {
        self.rss_growth_kib() < RSS_GROWTH_BOUND_KIB && self.fd_growth() <= self.fd_growth_bound
    }
}

/// Samples a process's usage in a thread until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Usage>>,
}

impl Sampler {
    /// Sample `pid` every 20 ms for at most `max` (bounded in time and in count).
    pub fn start(pid: u32, max: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + max;
            let mut peak = Usage::default();
            for _ in 0..(max.as_millis() / 20 + 1) {
                if let Some(u) = usage(pid) {
                    peak = peak.max(u);
                }
                if flag.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop and return the peak.
    pub fn finish(mut self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for Sampler {
    /// A cell that failed half-way does not leave it sampling.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
