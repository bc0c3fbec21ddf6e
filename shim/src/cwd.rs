//! The working directory, remembered when no tenant can move it.
//!
//! A relative open is judged by the absolute path of the working directory. Asking the
//! kernel (`getcwd`) on every such open costs a system call; remembering the answer from a
//! hooked `chdir` is only sound if nothing we cannot see can change it. What can:
//!
//! - a rename of the directory or of any ancestor (a tenant moving its directory into its
//!   docroot). So a directory is remembered only when it is **frozen**: it and every
//!   ancestor are directories owned by root, and every ancestor is writable by its owner
//!   alone or sticky. Renaming any of them then needs root (a sticky directory lets only the
//!   owner of the entry or of the directory, both root here, move it; a group or ACL grant of
//!   write shows as the group write bit). None may be on a FUSE filesystem: a user can mount
//!   one (`fusermount3`), and its daemon reports whatever owner it likes and renames at will.
//!   Tenant-owned working directories — the ones a tenant could move — are asked of the
//!   kernel on every open, as before.
//! - the process's own calls that change it without our `chdir`: `fchdir`, `chroot`, glibc's
//!   internal ones (`daemon`, `fts` without `FTS_NOCHDIR`), a thread that `unshare`s its
//!   `CLONE_FS` or `setns`es, a `clone(CLONE_FS)` child that shares the directory but not our
//!   memory, a `vfork` child that shares our memory but not the directory. Each is hooked:
//!   the first ones forget the directory, the ones after which threads or processes may not
//!   agree on it stop remembering for the life of the process image. A remembered directory
//!   is only learnt by the process it belongs to (pid checked), never by a `vfork` child.
//! - a raw `chdir`/`fchdir` system call, which no hook sees: a compromised server process,
//!   out of the shim's scope (it could as well make a raw `openat`).
//!
//! Readers copy the path under a sequence lock (no lock taken, no allocation); a reader that
//! meets a writer falls back to `getcwd`. A `chdir` racing an open in another thread of the
//! same process is the race the process itself made: the kernel may resolve the open against
//! either directory, as with `getcwd` before the open.

use core::ffi::{c_char, c_int, c_long, c_void};
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

use rustix::fs::{AtFlags, CWD, FileType};

use crate::ffi;
use crate::guard::Dir;

/// The longest working directory remembered (longer ones are asked for each time).
const MAX: usize = 256;
const WORDS: usize = MAX / 8;

/// Nothing known: learn it at the next relative open.
const UNKNOWN: u8 = 0;
/// `PATH` holds the working directory.
const VALID: u8 = 1;
/// Not frozen (or too long): ask the kernel until the next change.
const UNCACHED: u8 = 2;
/// Threads or processes may disagree about it from now on: never remember again.
const DISABLED: u8 = 3;

/// The state (the low two bits) and a count of changes (the rest) in one word: a learner
/// commits with one compare-exchange against the word it read before asking `getcwd`, so no
/// `chdir` can fit between a check and a store (as it could with two separate atomics).
static WORD: AtomicU64 = AtomicU64::new(UNKNOWN as u64);
const STATE_MASK: u64 = 3;
const ONE_CHANGE: u64 = 4;

fn state_of(word: u64) -> u8 {
    (word & STATE_MASK) as u8
}
/// Even: stable; odd: being written.
static SEQ: AtomicU32 = AtomicU32::new(0);
/// The process the remembered directory belongs to (a `vfork` child must not teach it).
static OWNER_PID: AtomicI32 = AtomicI32::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)] // the array initialiser, each word its own
const ZERO: AtomicU64 = AtomicU64::new(0);
static PATH: [AtomicU64; WORDS] = [ZERO; WORDS];

/// The library's constructor, and the child of every `fork()` (atfork handler: atomics only).
pub extern "C" fn owned_by_this_process() {
    OWNER_PID.store(rustix::process::getpid().as_raw_nonzero().get(), Ordering::SeqCst);
    // A thread of the parent that was writing at the fork does not exist here.
    let seq = SEQ.load(Ordering::Relaxed);
    if seq % 2 == 1 {
        forget();
        SEQ.store(seq.wrapping_add(1), Ordering::Release);
    }
}

/// The working directory may be changing (called before and after each such call).
pub fn forget() {
    let _ = WORD.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
        let count = (w & !STATE_MASK).wrapping_add(ONE_CHANGE);
        Some(
            count
                | if state_of(w) == DISABLED {
                    u64::from(DISABLED)
                } else {
                    u64::from(UNKNOWN)
                },
        )
    });
}

/// Run `f`, a call that may move the working directory, forgetting it before and after (a
/// reader between the two asks the kernel).
pub fn moving<R>(f: impl FnOnce() -> R) -> R {
    forget();
    let r = f();
    forget();
    r
}

/// From now on threads or processes may not agree on the working directory.
pub fn disable() {
    WORD.fetch_or(u64::from(DISABLED), Ordering::SeqCst); // both state bits: any commit fails
}

/// The working directory's absolute path in `buf`, remembered or asked of the kernel
/// (`Err(errno)` as [`ffi::getcwd`]).
pub fn path(buf: &mut [u8]) -> Result<&[u8], i32> {
    if let Some((len, ..)) = remembered(buf) {
        return Ok(&buf[..len]);
    }
    let word = WORD.load(Ordering::SeqCst);
    if state_of(word) != UNKNOWN {
        return ffi::getcwd(buf);
    }
    let len = ffi::getcwd(buf)?.len();
    learn(&buf[..len], word);
    Ok(&buf[..len])
}

/// `(st_dev, st_ino)` of the working directory, if remembered (no system call).
pub fn ids() -> Option<(u64, u64)> {
    remembered(&mut []).map(|(_, dev, ino)| (dev, ino))
}

/// The remembered directory copied into `buf` (only its ids if `buf` is empty): `(length,
/// dev, ino)`, or `None` if there is none, it does not fit, or a writer was met.
pub fn remembered(buf: &mut [u8]) -> Option<(usize, u64, u64)> {
    let word = WORD.load(Ordering::Acquire);
    if state_of(word) != VALID {
        return None;
    }
    let before = SEQ.load(Ordering::Acquire);
    if before % 2 == 1 {
        return None;
    }
    let len = LEN.load(Ordering::Relaxed);
    if !buf.is_empty() {
        if len > buf.len() || len > MAX {
            return None;
        }
        for (i, chunk) in buf[..len].chunks_mut(8).enumerate() {
            let word = PATH[i].load(Ordering::Relaxed).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    let (dev, ino) = (DEV.load(Ordering::Relaxed), INO.load(Ordering::Relaxed));
    fence(Ordering::Acquire);
    (SEQ.load(Ordering::Relaxed) == before && WORD.load(Ordering::Relaxed) == word).then_some((len, dev, ino))
}

/// Remember `path` (what `getcwd` answered after `word` was read) if it is frozen, this
/// process owns the memory it would be written to, and nothing changed meanwhile.
fn learn(path: &[u8], word: u64) {
    if rustix::process::getpid().as_raw_nonzero().get() != OWNER_PID.load(Ordering::SeqCst) {
        return; // a vfork child (shares our memory, not our directory), or a raw clone
    }
    let ids = if path.len() <= MAX { frozen(path) } else { None };
    let seq = SEQ.load(Ordering::Relaxed);
    if seq % 2 == 1
        || SEQ
            .compare_exchange(seq, seq.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return; // another thread is writing: it will have the newer answer
    }
    // Another thread may have learnt (and committed) since `word` was read, before we took
    // the lock: overwriting its directory with ours, whose commit then fails, would leave
    // "remembered" naming our stale path. Only learners commit, and they hold the lock, so
    // an unchanged word now means nothing was committed in between.
    if WORD.load(Ordering::SeqCst) != word {
        SEQ.store(seq.wrapping_add(2), Ordering::Release);
        return;
    }
    fence(Ordering::Release);
    let next = match ids {
        Some((dev, ino)) => {
            for (i, chunk) in path.chunks(8).enumerate() {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                PATH[i].store(u64::from_le_bytes(word), Ordering::Relaxed);
            }
            LEN.store(path.len(), Ordering::Relaxed);
            DEV.store(dev, Ordering::Relaxed);
            INO.store(ino, Ordering::Relaxed);
            VALID
        }
        None => UNCACHED,
    };
    let _ = WORD.compare_exchange(
        word,
        (word & !STATE_MASK) | u64::from(next),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    SEQ.store(seq.wrapping_add(2), Ordering::Release);
}

/// `FUSE_SUPER_MAGIC`: `statfs`'s `f_type` of a FUSE filesystem.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// `(st_dev, st_ino)` of the working directory if `path` names it and no one but root can
/// move it: every component from `/` to `path` a root-owned directory (not followed) on no
/// FUSE filesystem, every ancestor writable only by root or sticky.
fn frozen(path: &[u8]) -> Option<(u64, u64)> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let mut name = [0u8; MAX + 1];
    let mut last: Option<(u64, u64)> = None;
    // Each prefix ending before a '/' (the root itself: "/"), then the whole path.
    let ends = path
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i > 0)
        .map(|(i, _)| i)
        .chain([path.len()]);
    let mut prefixes = 0;
    for end in core::iter::once(1).chain(ends) {
        prefixes += 1;
        if prefixes > MAX {
            return None;
        }
        name[..end].copy_from_slice(&path[..end]);
        name[end] = 0;
        let c = core::ffi::CStr::from_bytes_until_nul(&name[..=end]).ok()?;
        let st = rustix::fs::statat(CWD, c, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory || st.st_uid != 0 {
            return None;
        }
        // Each filesystem met (the root's, then at every mount crossed) must not be FUSE.
        if last.is_none_or(|(dev, _)| dev != st.st_dev) {
            let fs = rustix::fs::statfs(c).ok()?;
            if fs.f_type == FUSE_SUPER_MAGIC {
                return None;
            }
        }
        let ancestor = end < path.len();
        let mode = st.st_mode;
        if ancestor && mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return None;
        }
        last = Some((st.st_dev, st.st_ino));
        if end == path.len() {
            break;
        }
    }
    // The string names the directory we are in (it was not replaced between the calls).
    let here = rustix::fs::statat(CWD, c".", AtFlags::empty()).ok()?;
    let (dev, ino) = last?;
    (here.st_dev == dev && here.st_ino == ino).then_some((dev, ino))
}

/// `fts_open`'s option that keeps the working directory where it is (glibc's `<fts.h>`).
const FTS_NOCHDIR: c_int = 0x0004;

/// For `c/clone_hook.c`: what a `clone` shares. A child sharing the working directory but
/// not our memory (or the reverse) can change it, or teach us its own, behind our back.
#[unsafe(no_mangle)]
pub extern "C" fn toctou_guard_cwd_clone_flags(flags: c_int) {
    let shares_fs = flags & libc::CLONE_FS != 0;
    let shares_vm = flags & libc::CLONE_VM != 0;
    if shares_fs != shares_vm || flags & libc::CLONE_NEWNS != 0 {
        disable();
    }
}

unsafe extern "C" {
    fn toctou_guard_clone();
}

static REAL_VFORK: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// For the `vfork` trampoline, in the parent before the child exists: while a `vfork` child
/// runs it shares our memory but not our directory, so our other threads would teach it
/// theirs (or it, by a `chdir`, would hand them its own): stop remembering. Returns glibc's
/// `vfork` to jump to.
extern "C" fn before_vfork() -> *mut c_void {
    disable();
    let f = ffi::next_symbol(c"vfork", &REAL_VFORK);
    if f.is_null() {
        return vfork_unavailable as *mut c_void;
    }
    f
}

extern "C" fn vfork_unavailable() -> c_int {
    ffi::fail(rustix::io::Errno::NOSYS, -1)
}

static REAL_DAEMON: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static REAL_FTS_OPEN: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static REAL_FTS64_OPEN: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
type FtsOpenFn = unsafe extern "C" fn(*const *const c_char, c_int, *const c_void) -> *mut c_void;

/// glibc's `fts_open` or `fts64_open`; one that will `fchdir` as it walks (no
/// `FTS_NOCHDIR`) ends the remembering.
///
/// # Safety
/// C `fts_open`.
unsafe fn fts_open_via(
    name: &core::ffi::CStr,
    cache: &AtomicPtr<c_void>,
    argv: *const *const c_char,
    options: c_int,
    compar: *const c_void,
) -> *mut c_void {
    if options & FTS_NOCHDIR == 0 {
        disable();
    }
    let f = ffi::next_symbol(name, cache);
    if f.is_null() {
        return ffi::fail(rustix::io::Errno::NOSYS, core::ptr::null_mut());
    }
    // SAFETY: `f` is glibc's function of this name, whose signature is `FtsOpenFn`.
    let real: FtsOpenFn = unsafe { core::mem::transmute::<*mut c_void, FtsOpenFn>(f) };
    // SAFETY: the caller's arguments, per the C contract.
    unsafe { real(argv, options, compar) }
}

pub mod symbols {
    use super::*;

    crate::exec::variadic_trampoline!(clone, toctou_guard_clone);

    /// `vfork` cannot be wrapped by a function that calls glibc's: the child would return
    /// through (and clobber) the frame the parent returns through later. So: call
    /// `before_vfork` (which returns), then jump to glibc's `vfork` with the caller's own
    /// return address on the stack, as if it had been called directly.
    ///
    /// # Safety
    /// C `vfork`.
    #[unsafe(no_mangle)]
    // SAFETY: `before_vfork` is an `extern "C" fn() -> *mut c_void` that returns (the stack is
    // 16-byte aligned around the call); the registers it clobbers are caller-saved for
    // `vfork()`, which takes no arguments; the jump is to glibc's `vfork` or to
    // `vfork_unavailable`, both `extern "C" fn() -> c_int`.
    #[unsafe(naked)]
    pub unsafe extern "C" fn vfork() -> c_int {
        #[cfg(target_arch = "x86_64")]
        core::arch::naked_asm!(
            "sub rsp, 8",
            "call {before}",
            "add rsp, 8",
            "jmp rax",
            before = sym before_vfork,
        );
        #[cfg(target_arch = "aarch64")]
        core::arch::naked_asm!(
            "stp x29, x30, [sp, #-16]!",
            "bl {before}",
            "ldp x29, x30, [sp], #16",
            // x16: a BTI landing pad (`bti c` at glibc's vfork) accepts `br` through x16/x17 only.
            "mov x16, x0",
            "br x16",
            before = sym before_vfork,
        );
    }

    /// # Safety
    /// C `fchdir`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn fchdir(fd: c_int) -> c_int {
        let r = moving(|| Dir::Fd(fd).borrowed(|d| rustix::process::fchdir(d)));
        r.map_or_else(|e| ffi::fail(e, -1), |()| 0)
    }

    /// # Safety
    /// C `chroot`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn chroot(path: *const c_char) -> c_int {
        // SAFETY: the C caller passes NULL or a NUL-terminated path.
        let Some(path) = (unsafe { ffi::cstr(path) }) else {
            return ffi::fail(rustix::io::Errno::FAULT, -1);
        };
        let r = moving(|| rustix::process::chroot(path));
        r.map_or_else(|e| ffi::fail(e, -1), |()| 0)
    }

    /// # Safety
    /// C `unshare`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn unshare(flags: c_int) -> c_int {
        if flags & (libc::CLONE_FS | libc::CLONE_NEWNS) != 0 {
            disable(); // this thread's working directory may part from the others'
        }
        // SAFETY: the unshare system call with the caller's flags, as glibc's wrapper makes
        // it; `syscall` sets errno on failure.
        unsafe { libc::syscall(libc::SYS_unshare, c_long::from(flags)) as c_int }
    }

    /// # Safety
    /// C `setns`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn setns(fd: c_int, nstype: c_int) -> c_int {
        disable(); // entering a mount namespace moves this thread's root and directory
        // SAFETY: the setns system call with the caller's arguments, as glibc's wrapper.
        unsafe { libc::syscall(libc::SYS_setns, c_long::from(fd), c_long::from(nstype)) as c_int }
    }

    /// # Safety
    /// C `daemon` (glibc's `chdir("/")` inside it is not a call we see).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn daemon(nochdir: c_int, noclose: c_int) -> c_int {
        type DaemonFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
        let f = ffi::next_symbol(c"daemon", &REAL_DAEMON);
        if f.is_null() {
            return ffi::fail(rustix::io::Errno::NOSYS, -1);
        }
        // SAFETY: `f` is glibc's `daemon`, whose signature is `DaemonFn`.
        let real: DaemonFn = unsafe { core::mem::transmute::<*mut c_void, DaemonFn>(f) };
        // SAFETY: the caller's arguments.
        moving(|| unsafe { real(nochdir, noclose) })
    }

    /// # Safety
    /// C `fts_open`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn fts_open(
        argv: *const *const c_char,
        options: c_int,
        compar: *const c_void,
    ) -> *mut c_void {
        // SAFETY: per the contract.
        unsafe { fts_open_via(c"fts_open", &REAL_FTS_OPEN, argv, options, compar) }
    }

    /// # Safety
    /// C `fts64_open`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn fts64_open(
        argv: *const *const c_char,
        options: c_int,
        compar: *const c_void,
    ) -> *mut c_void {
        // SAFETY: per the contract.
        unsafe { fts_open_via(c"fts64_open", &REAL_FTS64_OPEN, argv, options, compar) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_directory_we_are_in_and_only_a_root_owned_chain_is_frozen() {
        let back = std::env::current_dir().unwrap();
        std::env::set_current_dir("/").unwrap();
        // "/" is root's and writable by root alone on any machine these tests run on.
        let here = frozen(b"/");
        // A frozen path that is not where we are: the string must name the directory.
        let elsewhere = frozen(b"/usr");
        let relative = frozen(b"usr");
        std::env::set_current_dir(back).unwrap();
        assert!(here.is_some());
        assert_eq!(elsewhere, None);
        assert_eq!(relative, None);
    }
}
