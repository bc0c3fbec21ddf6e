//! Every system call the harness makes through `unsafe`, one small wrapper each.
//!
//! The rest of the crate calls these (or safe `std`/`rustix` APIs) and keeps no `unsafe`
//! of its own, except `CommandExt::pre_exec` hooks in `process.rs`, which only call the
//! async-signal-safe wrappers below.

use std::ffi::CString;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// The result of [`fork`].
pub enum Forked {
    Parent(libc::pid_t),
    Child,
}

/// `fork()`.
///
/// # Safety
/// The caller's child branch must only do what is sound in a child of a (possibly)
/// multi-threaded process: no locks another thread may have held (stdout, env), and it
/// must end in [`exit_now`], never return into the caller's stack.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; the caller upholds the
    // post-fork restrictions documented above.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// `_exit(code)`: leave at once, running no atexit handlers or destructors.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// `prctl(PR_SET_PDEATHSIG, sig)`: the kernel sends `sig` when the parent dies.
/// Async-signal-safe (used in `pre_exec`).
pub fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes an integer signal number and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Drop to `uid`/`gid` for the whole process: no supplementary groups, real, effective and
/// saved ids all set. Call only while the process is single-threaded (after `fork`, or
/// before any thread is started).
pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: setgroups with a count of 0 never reads the (null) list.
    if unsafe { libc::setgroups(0, std::ptr::null()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresgid(gid, gid, gid) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresuid(uid, uid, uid) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `setpriority(PRIO_PROCESS, 0, nice)`: this process's nice value (threads started later
/// inherit it). Lowering it below 0 needs root.
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments; `which` is a valid PRIO_* constant.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The effective uid.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// The effective gid.
pub fn getegid() -> u32 {
    // SAFETY: getegid cannot fail and touches no memory.
    unsafe { libc::getegid() }
}

/// `kill(pid, sig)`; a negative pid names a process group. `ESRCH` is not an error.
pub fn kill(pid: libc::pid_t, sig: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    if unsafe { libc::kill(pid, sig) } == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

/// `waitpid(pid, WNOHANG)`: `Some(status)` once the child has exited.
pub fn try_wait(pid: libc::pid_t) -> io::Result<Option<i32>> {
    let mut status: libc::c_int = 0;
    // SAFETY: status is a valid, writable c_int for the duration of the call.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match rc {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        _ => Ok(Some(status)),
    }
}

/// Reap a child that was asked to quit: wait up to `grace` for it to exit, then `SIGKILL`
/// it and wait (bounded, 5 s) for that. Returns once it is reaped or cannot be.
pub fn reap_or_kill(pid: libc::pid_t, grace: std::time::Duration) {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match try_wait(pid) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    let _ = kill(pid, libc::SIGKILL);
    for _ in 0..1000 {
        if !matches!(try_wait(pid), Ok(None)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Counters shared between the harness and its forked swapper child: one anonymous
/// `MAP_SHARED` page, so atomics written by either side are seen by the other.
#[repr(C)]
#[derive(Default)]
pub struct SwapShared {
    /// `swapper::State` as a number.
    pub state: AtomicU32,
    /// Set by the child once it runs as the attacker and has opened its directories.
    pub ready: AtomicU32,
    pub swaps: AtomicU64,
    pub errors: AtomicU64,
    /// The first errno a swap failed with.
    pub first_errno: AtomicU32,
    /// The attack helper (`exhaust.rs`): reads of a name that must be refused that were not.
    pub leaks: AtomicU64,
}

/// An owned `MAP_SHARED | MAP_ANONYMOUS` mapping holding one [`SwapShared`].
pub struct SharedPage {
    ptr: std::ptr::NonNull<SwapShared>,
}

// SAFETY: SwapShared only contains atomics, which are Sync; the mapping lives as long as
// the SharedPage.
unsafe impl Send for SharedPage {}
// SAFETY: as above: shared access only goes through atomics.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    pub fn new() -> io::Result<Self> {
        let len = std::mem::size_of::<SwapShared>();
        // SAFETY: an anonymous mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = p.cast::<SwapShared>();
        // SAFETY: the mapping is at least size_of::<SwapShared>() bytes, page-aligned (so
        // aligned for SwapShared) and not yet shared with anyone.
        unsafe { ptr.write(SwapShared::default()) };
        std::ptr::NonNull::new(ptr)
            .map(|ptr| SharedPage { ptr })
            .ok_or_else(|| io::Error::other("mmap: null"))
    }
}

impl std::ops::Deref for SharedPage {
    type Target = SwapShared;
    fn deref(&self) -> &SwapShared {
        // SAFETY: initialised in new(), valid until Drop; only shared references are handed out.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in new() with this length and is unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), std::mem::size_of::<SwapShared>()) };
    }
}

/// Install `handler` for SIGINT and SIGTERM.
pub fn on_termination_signals(handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = handler as usize;
        // SAFETY: sa.sa_mask is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: sa is fully initialised; the old action is not wanted.
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Fill `buf` from the kernel's random source.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    for _ in 0..64 {
        if done == buf.len() {
            return Ok(());
        }
        let rest = &mut buf[done..];
        // SAFETY: rest is a valid writable buffer of rest.len() bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        } else {
            done += n as usize;
        }
    }
    if done == buf.len() {
        Ok(())
    } else {
        Err(io::Error::other("getrandom: short read"))
    }
}

/// A user's uid and gid by name (`getpwnam_r`).
pub fn lookup_user(name: &str) -> io::Result<Option<(u32, u32)>> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: zeroed passwd is a valid out-parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives it and its length is passed.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if result.is_null() {
        Ok(None)
    } else {
        Ok(Some((pwd.pw_uid, pwd.pw_gid)))
    }
}
