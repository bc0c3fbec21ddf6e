//! The attacker's swapper: a forked child that drops to the attacker tenant's uid and runs
//! threads exchanging two names with `renameat2(RENAME_EXCHANGE)` as fast as they can.
//! Controlled like libpathrs's race tests: `Run`, `Pause`, `Quit`, through an atomic in a
//! shared page (no locks or pipes between the processes).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, RenameFlags};

use crate::error::{Error, Result, Wrap};
use crate::scenario::SwapPlan;
use crate::sys::{self, Forked, SharedPage};

/// What the swapper threads are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum State {
    Pause = 0,
    Run = 1,
    Quit = 2,
}

/// Exit codes of the swapper child, for error messages.
const EXIT_PRIVS: i32 = 10;
const EXIT_OPEN: i32 = 11;
const EXIT_THREAD: i32 = 12;

/// Who the swapper runs as and how hard it swaps.
#[derive(Debug, Clone, Copy)]
pub struct SwapperOptions {
    /// The attacker tenant's uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// Threads (capped by the plan's `max_threads`).
    pub threads: usize,
    /// Nice value set while still root (0: unchanged).
    pub nice: i32,
    /// It gives up by itself after this long.
    pub max_lifetime: Duration,
}

/// A running swapper child.
pub struct Swapper {
    pid: libc::pid_t,
    shared: Arc<SharedPage>,
    reaped: bool,
}

/// Statistics of a finished swapper.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwapStats {
    pub swaps: u64,
    pub errors: u64,
    pub first_errno: u32,
}

impl Swapper {
    /// Fork the swapper, paused.
    pub fn spawn(plan: &SwapPlan, opts: &SwapperOptions) -> Result<Swapper> {
        let shared = Arc::new(SharedPage::new().wrap(|| "mmap shared swapper page")?);
        let opts = SwapperOptions {
            threads: opts.threads.clamp(1, plan.max_threads.max(1)),
            ..*opts
        };
        // Everything the child needs is allocated before fork.
        let dir = CString::new(plan.dir.as_os_str().as_bytes()).map_err(|_| Error::msg("NUL in path"))?;
        let mut pairs = Vec::new();
        for (a, b) in &plan.pairs {
            let a = CString::new(a.as_bytes()).map_err(|_| Error::msg("NUL in name"))?;
            let b = CString::new(b.as_bytes()).map_err(|_| Error::msg("NUL in name"))?;
            pairs.push((a, b));
        }
        let pairs = Arc::new(pairs);
        // SAFETY: the child branch only drops privileges, opens one directory, starts threads
        // (glibc's malloc is fork-safe) and ends in exit_now; it takes no std lock another
        // thread of the parent might hold (no stdout/stderr, no env).
        match unsafe { sys::fork() }.wrap(|| "fork swapper")? {
            Forked::Child => child_main(&shared, &dir, &pairs, &opts),
            Forked::Parent(pid) => {
                let mut s = Swapper {
                    pid,
                    shared,
                    reaped: false,
                };
                s.wait_ready()?;
                Ok(s)
            }
        }
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.shared.ready.load(Ordering::Acquire) == 1 {
                return Ok(());
            }
            if let Some(status) = sys::try_wait(self.pid).wrap(|| "waitpid swapper")? {
                self.reaped = true;
                let why = match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
                    Some(EXIT_PRIVS) => "could not drop to the attacker's uid",
                    Some(EXIT_OPEN) => "could not open the swap directory as the attacker",
                    Some(EXIT_THREAD) => "could not start a thread",
                    _ => "died",
                };
                return Err(Error::msg(format!("swapper {why} (status {status:#x})")));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Err(Error::msg("swapper did not become ready within 10 s"))
    }

    pub fn set(&self, state: State) {
        self.shared.state.store(state as u32, Ordering::Release);
    }

    pub fn run(&self) {
        self.set(State::Run);
    }

    pub fn pause(&self) {
        self.set(State::Pause);
    }

    /// Swaps done so far.
    pub fn swaps(&self) -> u64 {
        self.shared.swaps.load(Ordering::Relaxed)
    }

    /// Tell the threads to quit, reap the child (killing it after 5 s) and report.
    pub fn quit(mut self) -> SwapStats {
        self.stop();
        SwapStats {
            swaps: self.shared.swaps.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            first_errno: self.shared.first_errno.load(Ordering::Relaxed),
        }
    }

    fn stop(&mut self) {
        if self.reaped {
            return;
        }
        self.set(State::Quit);
        sys::reap_or_kill(self.pid, Duration::from_secs(5));
        self.reaped = true;
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop();
    }
}

fn child_main(
    shared: &Arc<SharedPage>,
    dir: &CString,
    pairs: &Arc<Vec<(CString, CString)>>,
    opts: &SwapperOptions,
) -> ! {
    let SwapperOptions {
        uid,
        gid,
        threads,
        nice,
        max_lifetime,
    } = *opts;
    let _ = sys::set_parent_death_signal(libc::SIGKILL);
    // Still root here: a negative nice value keeps the swapper from being starved by the
    // server and the clients on a small machine (the attacker can't, but it makes the race
    // harder, not easier, for the guard).
    if nice != 0 {
        let _ = sys::set_nice(nice);
    }
    if sys::drop_privileges(uid, gid).is_err() || sys::geteuid() != uid {
        sys::exit_now(EXIT_PRIVS);
    }
    let dirfd = match rustix::fs::open(
        dir.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Arc::new(fd),
        Err(_) => sys::exit_now(EXIT_OPEN),
    };
    let deadline = Instant::now() + max_lifetime;
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (shared, dirfd, pairs) = (Arc::clone(shared), Arc::clone(&dirfd), Arc::clone(pairs));
        let h = std::thread::Builder::new().spawn(move || swap_loop(&shared, &dirfd, &pairs, deadline));
        match h {
            Ok(h) => handles.push(h),
            Err(_) => sys::exit_now(EXIT_THREAD),
        }
    }
    shared.ready.store(1, Ordering::Release);
    for h in handles {
        let _ = h.join();
    }
    sys::exit_now(0)
}

/// Exchange each pair there and back, cycling through the pairs, until told to quit or
/// the deadline passes. Bounded by time (checked every unit) and by count.
fn swap_loop(
    shared: &SharedPage,
    dirfd: &rustix::fd::OwnedFd,
    pairs: &[(CString, CString)],
    deadline: Instant,
) {
    const MAX_UNITS: u64 = 1 << 40;
    let mut unit: u64 = 0;
    let mut local = 0u64;
    while unit < MAX_UNITS {
        if Instant::now() >= deadline {
            break;
        }
        match shared.state.load(Ordering::Acquire) {
            s if s == State::Quit as u32 => break,
            s if s == State::Pause as u32 => {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            _ => {}
        }
        let (a, b) = &pairs[(unit % pairs.len() as u64) as usize];
        for _ in 0..2 {
            match rustix::fs::renameat_with(dirfd, a.as_c_str(), dirfd, b.as_c_str(), RenameFlags::EXCHANGE) {
                Ok(()) => local += 1,
                Err(e) => {
                    let _ = shared.first_errno.compare_exchange(
                        0,
                        e.raw_os_error() as u32,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        unit += 1;
        if local >= 256 {
            shared.swaps.fetch_add(local, Ordering::Relaxed);
            local = 0;
        }
    }
    shared.swaps.fetch_add(local, Ordering::Relaxed);
}
