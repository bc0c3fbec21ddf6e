//! Children of a guarded process stay guarded (issue 10 item 8).
//!
//! php-fpm's `clear_env` empties each worker's environment, and tenant code can drop or
//! replace `LD_PRELOAD`, or point `TOCTOU_GUARD_CONFIG` at a permissive file it owns (the
//! loader trusts files owned by the process's own uid): a program the pool then starts would
//! run unguarded. So every way to start a program hands the child an environment where
//! `LD_PRELOAD` names this library (when this process was preloaded that way; under
//! `/etc/ld.so.preload` children load it anyway) and `TOCTOU_GUARD_CONFIG` is exactly what
//! this process used (removed when our configuration did not come from it). glibc's `system`
//! and `popen` (and `wordexp`'s `$(...)`) spawn with `environ` internally, past any hook, so
//! `environ` itself is kept right too: after `clearenv`, `setenv`, `unsetenv`, `putenv` touch
//! our names, and before `system`/`popen`/`wordexp` (a program may assign `environ` directly).
//!
//! The exec path allocates nothing (exec may follow `fork()` in a threaded parent, where
//! malloc's lock can be held): the child's envp is built on the stack, or in a mapping of
//! its own when large. `execve`, `execv` and `execveat` are the system calls, as in glibc;
//! `execvp`/`execvpe` call glibc's `execvpe` (its PATH search and script fallback), the
//! others glibc's own, with the child's envp. Those are looked up in the library
//! constructor, never after a fork. An exec whose argv carries `--audit` is judged first:
//! the dynamic loader run as a program is refused it (`loader.rs`).

use core::ffi::{CStr, c_char, c_int, c_void};
use core::sync::atomic::AtomicPtr;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::OnceLock;

use rustix::fs::CWD;
use rustix::io::Errno;

use crate::ffi::{self, Mapped};
use crate::loader;
use crate::state::{self, Phase, State};

const PRELOAD: &[u8] = b"LD_PRELOAD";
const AUDIT: &[u8] = b"LD_AUDIT";
const CONFIG: &[u8] = b"TOCTOU_GUARD_CONFIG";

type Envp = *const *const c_char;

/// What a child of this process must carry, fixed when the configuration loaded.
struct ChildEnv {
    /// `LD_PRELOAD=<this library, absolute>`, when this process was preloaded through it.
    preload: Option<CString>,
    /// `TOCTOU_GUARD_CONFIG=<path>`, when the configuration in use came from it.
    config: Option<CString>,
}

static CHILD: OnceLock<ChildEnv> = OnceLock::new();

/// Called by the loader of a guarded process (before its state is published). `preloaded`
/// and `config` are as the loader honoured them: both empty in secure-execution mode, so a
/// setuid parent adds nothing it did not honour itself.
pub fn prepare(preloaded: bool, config: Option<&[u8]>) {
    let preload = own_absolute_path()
        .filter(|_| preloaded)
        .and_then(|p| entry(PRELOAD, &p));
    let config = config.and_then(|c| entry(CONFIG, c));
    let _ = CHILD.set(ChildEnv { preload, config });
    resolve();
}

/// Look up glibc's definitions now (library constructor, configuration load), so that no
/// exec path calls `dlsym` later, after a `fork()` from a threaded parent: guarded or not,
/// every process that starts programs goes through these hooks.
pub fn resolve() {
    for real in REALS {
        let _ = real.get();
    }
}

fn entry(name: &[u8], value: &[u8]) -> Option<CString> {
    CString::new([name, b"=", value].concat()).ok()
}

/// This library's path, absolute: a child may run in another directory.
fn own_absolute_path() -> Option<Vec<u8>> {
    let own = ffi::own_library_path()?.to_bytes();
    if own.first() == Some(&b'/') {
        return Some(own.to_vec());
    }
    let mut buf = [0u8; toctou_policy::PATH_MAX];
    let cwd = ffi::getcwd(&mut buf).ok()?;
    Some([cwd, b"/", own].concat())
}

/// The value part of an `entry` built by [`entry`], as a C string.
fn value_of_entry<'a>(entry: &'a CString, name: &[u8]) -> &'a CStr {
    let bytes = entry.as_bytes_with_nul();
    CStr::from_bytes_with_nul(&bytes[name.len() + 1..]).unwrap_or(c"")
}

/// What children need, if this process is guarded.
fn child_env() -> Option<&'static ChildEnv> {
    match state::current() {
        Phase::Guard(_) => CHILD.get(),
        Phase::Passthrough => None,
    }
}

/// `VALUE` of an environment entry `NAME=VALUE`.
fn value<'a>(entry: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    entry.strip_prefix(name)?.strip_prefix(b"=")
}

impl ChildEnv {
    /// Our own path, as children get it.
    fn own(&self) -> Option<&CStr> {
        self.preload.as_ref().map(|e| value_of_entry(e, PRELOAD))
    }

    /// Does an `LD_PRELOAD` value load this library first? Earlier libraries interpose
    /// first (`LD_PRELOAD=libc.so.6:OURS` binds `open` to libc), so ours must lead, named
    /// byte for byte as we were loaded: ld.so finds a bare name in a search path the child's
    /// environment chooses (`LD_LIBRARY_PATH` at a decoy of the same name), and expands
    /// `$ORIGIN`, `$LIB`, `$PLATFORM` (and `${...}`) in any other, so a name that `stat`s as
    /// our file (a directory literally called `$LIB`) can still load a decoy, and a path
    /// with symlinks can be swapped later. Any other first entry: ours is put before it.
    fn loads_us(&self, list: &[u8]) -> bool {
        let first = list.split(|&b| b == b' ' || b == b':').find(|e| !e.is_empty());
        first.is_some_and(|first| self.own().is_some_and(|own| own.to_bytes() == first))
    }
}

/// The entries of a C environment array (NULL: none).
///
/// # Safety
/// `envp` is NULL or a NULL-terminated array of C strings that outlive the iteration
/// (the contract of every exec function).
unsafe fn entries<'a>(envp: Envp) -> impl Iterator<Item = &'a CStr> {
    let mut i = 0;
    core::iter::from_fn(move || {
        if envp.is_null() {
            return None;
        }
        // SAFETY: per the contract, entries up to the terminating NULL are readable.
        let p = unsafe { *envp.add(i) };
        // SAFETY: a non-NULL entry is a NUL-terminated string.
        let s = (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) })?;
        i += 1;
        Some(s)
    })
}

/// The `LD_PRELOAD` entry a child gets.
#[derive(Clone, Copy)]
enum Preload<'a> {
    /// Not ours to manage (`/etc/ld.so.preload`): the caller's entries pass.
    Untouched,
    /// The caller's entry (the last one: ld.so honours the last), which loads us first.
    Keep(*const c_char),
    /// Ours alone.
    Ours(*const c_char),
    /// Ours, then the caller's list.
    Prepend(&'a [u8], &'a [u8]),
}

impl Preload<'_> {
    /// Bytes of text the entry needs built (with its NUL).
    fn text_len(self) -> usize {
        match self {
            Preload::Prepend(own, theirs) => PRELOAD.len() + 1 + own.len() + 1 + theirs.len() + 1,
            _ => 0,
        }
    }
}

/// How many entries `envp` has, and what the child's `LD_PRELOAD` is.
///
/// # Safety
/// As [`entries`].
unsafe fn plan<'a>(ce: &'a ChildEnv, envp: Envp) -> (usize, Preload<'a>) {
    let mut n = 0usize;
    let mut last: Option<(*const c_char, &[u8])> = None;
    // SAFETY: per this function's contract.
    for e in unsafe { entries(envp) } {
        n += 1;
        if let Some(v) = value(e.to_bytes(), PRELOAD) {
            last = Some((e.as_ptr(), v));
        }
    }
    let preload = match (&ce.preload, ce.own(), last) {
        (None, _, _) | (_, None, _) => Preload::Untouched,
        (_, _, Some((p, v))) if ce.loads_us(v) => Preload::Keep(p),
        (_, Some(own), Some((_, v))) if !v.is_empty() => Preload::Prepend(own.to_bytes(), v),
        (Some(ours), _, _) => Preload::Ours(ours.as_ptr()),
    };
    (n, preload)
}

/// Write the child's environment for `envp` into `ptrs` (NULL-terminated; `n + 3` slots,
/// zeroed) and `text` (`preload.text_len()` bytes, zeroed).
///
/// # Safety
/// As [`entries`]; `ptrs` and `text` as sized by [`plan`] for the same `envp`.
unsafe fn fill(ce: &ChildEnv, envp: Envp, preload: Preload<'_>, ptrs: &mut [*const c_char], text: &mut [u8]) {
    let mut i = 0;
    let mut push = |p: *const c_char| {
        // At most n + 2 pushes into n + 3 slots: the last stays NULL.
        if i + 1 < ptrs.len() {
            ptrs[i] = p;
            i += 1;
        }
    };
    // `LD_AUDIT` is dropped too: an audit library can rebind `open` to raw system calls
    // (`la_symbind64`) under the preloaded guard.
    let ours = |b: &[u8]| {
        (!matches!(preload, Preload::Untouched) && value(b, PRELOAD).is_some())
            || value(b, CONFIG).is_some()
            || value(b, AUDIT).is_some()
    };
    // SAFETY: per this function's contract.
    for e in unsafe { entries(envp) } {
        if !ours(e.to_bytes()) {
            push(e.as_ptr());
        }
    }
    match preload {
        Preload::Untouched => {}
        Preload::Keep(p) | Preload::Ours(p) => push(p),
        Preload::Prepend(own, theirs) => {
            let mut at = 0;
            for part in [PRELOAD, b"=", own, b":", theirs] {
                text[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            // text[at] is the NUL (zeroed).
            push(text.as_ptr().cast());
        }
    }
    if let Some(c) = &ce.config {
        push(c.as_ptr());
    }
}

/// Children's environments up to this size are built on the caller's stack (about 1.3 KiB):
/// no system call, and nothing left behind by a `vfork()` child that execs.
const STACK_SLOTS: usize = 96;
const STACK_TEXT: usize = 512;

/// Run `call` with the environment a child must get in place of `envp` (`envp` itself when
/// this process is not guarded); `Err` if it could not be built (a child is never started
/// unguarded). `call` only returns when the exec failed or a spawn is done with the array;
/// the errno it left is kept.
///
/// # Safety
/// As [`entries`].
unsafe fn with_child_envp<R>(envp: Envp, call: impl FnOnce(Envp) -> R) -> Result<R, Errno> {
    let Some(ce) = child_env() else {
        return Ok(call(envp));
    };
    // SAFETY: per this function's contract.
    let (n, preload) = unsafe { plan(ce, envp) };
    let slots = n + 3; // the kept entries, ours (two at most), NULL
    let text_len = preload.text_len();
    if slots <= STACK_SLOTS && text_len <= STACK_TEXT {
        let mut ptrs = [core::ptr::null::<c_char>(); STACK_SLOTS];
        let mut text = [0u8; STACK_TEXT];
        // SAFETY: per this function's contract; the buffers are large enough.
        unsafe { fill(ce, envp, preload, &mut ptrs[..slots], &mut text) };
        return Ok(call(ptrs.as_ptr()));
    }
    let ptr_bytes = slots * size_of::<*const c_char>();
    let mut map = Mapped::zeroed(ptr_bytes + text_len).ok_or(Errno::NOMEM)?;
    let (head, text) = map.bytes_mut().split_at_mut(ptr_bytes);
    // SAFETY: `head` is `slots` pointers' worth of zeroed (NULL), page-aligned bytes of our
    // own mapping, borrowed exclusively here.
    let ptrs = unsafe { core::slice::from_raw_parts_mut(head.as_mut_ptr().cast::<*const c_char>(), slots) };
    // SAFETY: per this function's contract; the buffers are sized by `plan`.
    unsafe { fill(ce, envp, preload, ptrs, text) };
    let r = call(ptrs.as_ptr());
    let saved = ffi::errno();
    drop(map);
    ffi::set_errno(saved);
    Ok(r)
}

/// Make `environ` carry what children need (for glibc's own spawns in `system`/`popen`,
/// and so the program's later spawns see it). Uses glibc's `setenv`/`unsetenv`, which may
/// allocate: only called where the caller's own call allocates anyway.
fn keep_environ() {
    let Some(ce) = child_env() else {
        return;
    };
    let saved = ffi::errno();
    if let Some(ours) = &ce.preload {
        let ours = value_of_entry(ours, PRELOAD);
        match ffi::getenv(c"LD_PRELOAD") {
            Some(v) if ce.loads_us(v) => {}
            Some(v) if !v.is_empty() => {
                let o = ours.to_bytes();
                let len = o.len() + 1 + v.len() + 1;
                if let Some(mut m) = Mapped::zeroed(len) {
                    let b = m.bytes_mut();
                    b[..o.len()].copy_from_slice(o);
                    b[o.len()] = b':';
                    b[o.len() + 1..len - 1].copy_from_slice(v);
                    if let Ok(joined) = CStr::from_bytes_with_nul(&b[..len]) {
                        real_setenv(c"LD_PRELOAD", joined);
                    }
                }
            }
            _ => real_setenv(c"LD_PRELOAD", ours),
        }
    }
    if ffi::getenv(c"LD_AUDIT").is_some() {
        real_unsetenv(c"LD_AUDIT");
    }
    match &ce.config {
        Some(c) => {
            let c = value_of_entry(c, CONFIG);
            if ffi::getenv(c"TOCTOU_GUARD_CONFIG") != Some(c.to_bytes()) {
                real_setenv(c"TOCTOU_GUARD_CONFIG", c);
            }
        }
        None => {
            if ffi::getenv(c"TOCTOU_GUARD_CONFIG").is_some() {
                real_unsetenv(c"TOCTOU_GUARD_CONFIG");
            }
        }
    }
    ffi::set_errno(saved);
}

/// Is `name` (up to a `=`, as `putenv` takes it) one of our variables?
fn is_ours(name: *const c_char) -> bool {
    // SAFETY: the C caller passes NULL or a NUL-terminated string.
    let Some(name) = (unsafe { ffi::cstr(name) }) else {
        return false;
    };
    let b = name.to_bytes();
    let b = b.split(|&c| c == b'=').next().unwrap_or(b);
    b == PRELOAD || b == CONFIG || b == AUDIT
}

/// glibc's definition of one symbol we shadow, looked up once.
struct Real(&'static CStr, AtomicPtr<c_void>);

impl Real {
    const fn new(name: &'static CStr) -> Real {
        Real(name, AtomicPtr::new(core::ptr::null_mut()))
    }

    fn get(&self) -> Option<*mut c_void> {
        let f = ffi::next_symbol(self.0, &self.1);
        (!f.is_null()).then_some(f)
    }
}

static EXECVPE: Real = Real::new(c"execvpe");
static FEXECVE: Real = Real::new(c"fexecve");
static POSIX_SPAWN: Real = Real::new(c"posix_spawn");
static POSIX_SPAWNP: Real = Real::new(c"posix_spawnp");
static SYSTEM: Real = Real::new(c"system");
static POPEN: Real = Real::new(c"popen");
static WORDEXP: Real = Real::new(c"wordexp");
static SETENV: Real = Real::new(c"setenv");
static UNSETENV: Real = Real::new(c"unsetenv");
static PUTENV: Real = Real::new(c"putenv");
static CLEARENV: Real = Real::new(c"clearenv");
static REALS: [&Real; 11] = [
    &EXECVPE,
    &FEXECVE,
    &POSIX_SPAWN,
    &POSIX_SPAWNP,
    &SYSTEM,
    &POPEN,
    &WORDEXP,
    &SETENV,
    &UNSETENV,
    &PUTENV,
    &CLEARENV,
];

type ExecvpeFn = unsafe extern "C" fn(*const c_char, Envp, Envp) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, Envp, Envp) -> c_int;
type SpawnFn =
    unsafe extern "C" fn(*mut libc::pid_t, *const c_char, *const c_void, *const c_void, Envp, Envp) -> c_int;
type SystemFn = unsafe extern "C" fn(*const c_char) -> c_int;
type PopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
type WordexpFn = unsafe extern "C" fn(*const c_char, *mut c_void, c_int) -> c_int;
/// glibc's `<wordexp.h>` (not in the libc crate).
const WRDE_NOCMD: c_int = 4;
const WRDE_NOSPACE: c_int = 1;
type SetenvFn = unsafe extern "C" fn(*const c_char, *const c_char, c_int) -> c_int;
type NameFn = unsafe extern "C" fn(*const c_char) -> c_int;
type ClearenvFn = unsafe extern "C" fn() -> c_int;

fn real_setenv(name: &CStr, value: &CStr) {
    if let Some(f) = SETENV.get() {
        // SAFETY: `f` is glibc's `setenv`, of type `SetenvFn`.
        let real = unsafe { core::mem::transmute::<*mut c_void, SetenvFn>(f) };
        // SAFETY: two NUL-terminated strings; glibc copies them.
        unsafe { real(name.as_ptr(), value.as_ptr(), 1) };
    }
}

fn real_unsetenv(name: &CStr) {
    if let Some(f) = UNSETENV.get() {
        // SAFETY: `f` is glibc's `unsetenv`, of type `NameFn`.
        let real = unsafe { core::mem::transmute::<*mut c_void, NameFn>(f) };
        // SAFETY: a NUL-terminated name.
        unsafe { real(name.as_ptr()) };
    }
}

fn enosys<T>(value: T) -> T {
    ffi::set_errno(libc::ENOSYS);
    value
}

/// The process's environment as it is now.
fn environ_now() -> Envp {
    unsafe extern "C" {
        static mut environ: Envp;
    }
    // SAFETY: reading the pointer value of libc's `environ` (a plain C global).
    unsafe { (&raw const environ).read() }
}

/// An exec whose `argv` names a refused loader option (`loader.rs`): judge the object
/// `path` names (relative to `dirfd`, by `execveat`'s `flags`), then run that very object.
/// Returns only on failure, with the error.
///
/// # Safety
/// C `execveat`.
unsafe fn exec_judged(
    st: &State,
    dirfd: c_int,
    path: *const c_char,
    argv: Envp,
    envp: Envp,
    flags: c_int,
) -> Errno {
    // SAFETY: the caller's path, NULL or NUL-terminated.
    let Some(p) = (unsafe { ffi::cstr(path) }) else {
        return Errno::FAULT;
    };
    let dir = match dirfd {
        libc::AT_FDCWD => CWD,
        d if d < 0 => return Errno::BADF,
        // SAFETY: the caller's descriptor, open for the length of this call.
        d => unsafe { BorrowedFd::borrow_raw(d) },
    };
    // `execveat(fd, "", AT_EMPTY_PATH)` names a held object already; it is run through a
    // close-on-exec copy, so that a script fails (`ENOENT`) here too: the kernel would hand
    // its interpreter `/dev/fd/N`, and an interpreter line naming the loader with an option
    // that takes an argument (`#!ld.so --argv0`) would pass our argv's options on to it.
    let held = flags & libc::AT_EMPTY_PATH != 0 && p.is_empty();
    let fd = if held {
        rustix::io::fcntl_dupfd_cloexec(dir, 0)
    } else {
        loader::pin(dir, p, flags & libc::AT_SYMLINK_NOFOLLOW != 0)
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    if let Err(e) = loader::judge(st, fd.as_fd(), p.to_bytes()) {
        return e;
    }
    let (at, flags) = (c"", (flags & !libc::AT_SYMLINK_NOFOLLOW) | libc::AT_EMPTY_PATH);
    let raw = fd.as_raw_fd();
    // SAFETY: per the contract; the kernel validates every pointer (EFAULT).
    let exec = |e: Envp| unsafe { libc::syscall(libc::SYS_execveat, raw, at.as_ptr(), argv, e, flags) };
    // SAFETY: `envp` per the contract.
    match unsafe { with_child_envp(envp, exec) } {
        Ok(_) => Errno::from_raw_os_error(ffi::errno()),
        Err(e) => e,
    }
}

/// `execve` as glibc does it: the system call itself.
///
/// # Safety
/// C `execve`.
unsafe fn execve_in(path: *const c_char, argv: Envp, envp: Envp) -> c_int {
    // SAFETY: `argv` per the contract.
    if let Some(st) = unsafe { loader::watched(argv) } {
        // SAFETY: per the contract.
        return ffi::fail(
            unsafe { exec_judged(st, libc::AT_FDCWD, path, argv, envp, 0) },
            -1,
        );
    }
    // SAFETY: per the contract; the kernel validates every pointer (EFAULT).
    let exec = |e: Envp| unsafe { libc::syscall(libc::SYS_execve, path, argv, e) } as c_int;
    // SAFETY: `envp` per the contract.
    unsafe { with_child_envp(envp, exec) }.unwrap_or_else(|e| ffi::fail(e, -1))
}

/// # Safety
/// C `execvpe`.
unsafe fn execvpe_in(file: *const c_char, argv: Envp, envp: Envp) -> c_int {
    // SAFETY: `argv` per the contract.
    if let Some(st) = unsafe { loader::watched(argv) } {
        // SAFETY: the caller's file name, NULL or NUL-terminated.
        let Some(name) = (unsafe { ffi::cstr(file) }) else {
            return ffi::fail(Errno::FAULT, -1);
        };
        let e = if name.to_bytes().contains(&b'/') {
            // SAFETY: per the contract.
            unsafe { exec_judged(st, libc::AT_FDCWD, file, argv, envp, 0) }
        } else {
            loader::search(name, |c| {
                // SAFETY: per the contract; `c` is a C string of our own.
                Err::<(), _>(unsafe { exec_judged(st, libc::AT_FDCWD, c.as_ptr(), argv, envp, 0) })
            })
            .err()
            .unwrap_or(Errno::NOENT)
        };
        return ffi::fail(e, -1);
    }
    let Some(f) = EXECVPE.get() else { return enosys(-1) };
    // SAFETY: `f` is glibc's `execvpe`, of type `ExecvpeFn`: its PATH search and script
    // fallback stay glibc's.
    let real = unsafe { core::mem::transmute::<*mut c_void, ExecvpeFn>(f) };
    // SAFETY: per the contract.
    unsafe { with_child_envp(envp, |e| real(file, argv, e)) }.unwrap_or_else(|e| ffi::fail(e, -1))
}

/// # Safety
/// C `posix_spawn`/`posix_spawnp`.
unsafe fn spawn_in(
    real: &Real,
    pid: *mut libc::pid_t,
    path: *const c_char,
    actions: *const c_void,
    attr: *const c_void,
    argv: Envp,
    envp: Envp,
) -> c_int {
    let searches = core::ptr::eq(real, &POSIX_SPAWNP);
    let Some(f) = real.get() else { return libc::ENOSYS };
    // SAFETY: `f` is glibc's `posix_spawn` or `posix_spawnp`, both of type `SpawnFn`.
    let real = unsafe { core::mem::transmute::<*mut c_void, SpawnFn>(f) };
    // SAFETY: `argv` per the contract.
    if let Some(st) = unsafe { loader::watched(argv) } {
        // SAFETY: the caller's path, NULL or NUL-terminated.
        let Some(name) = (unsafe { ffi::cstr(path) }) else {
            return libc::EFAULT;
        };
        // glibc's spawn execs a path in the child: the judged object's /proc/self/fd link
        // (without /proc the spawn fails, closed).
        let spawn = |c: &CStr| -> Result<(), Errno> {
            let fd = loader::pin(CWD, c, false)?;
            loader::judge(st, fd.as_fd(), c.to_bytes())?;
            // A path in the child cannot be made to fail for a script, as `execveat` of a
            // close-on-exec descriptor does: only an ELF file is spawned.
            loader::elf_only(fd.as_fd())?;
            let mut link = loader::fd_path(fd.as_fd());
            let link = link.as_cstr().ok_or(Errno::NAMETOOLONG)?;
            // SAFETY: per the contract; `fd` stays open until the child has exec'd.
            let r = unsafe { with_child_envp(envp, |e| real(pid, link.as_ptr(), actions, attr, argv, e)) }?;
            if r == 0 {
                Ok(())
            } else {
                Err(Errno::from_raw_os_error(r))
            }
        };
        let r = if searches && !name.to_bytes().contains(&b'/') {
            loader::search(name, spawn)
        } else {
            spawn(name)
        };
        return r.map_or_else(|e| e.raw_os_error(), |()| 0);
    }
    // SAFETY: per the contract; the child has exec'd (or failed) when `real` returns, so
    // the array may go.
    unsafe { with_child_envp(envp, |e| real(pid, path, actions, attr, argv, e)) }
        .unwrap_or_else(|e| e.raw_os_error())
}

unsafe extern "C" {
    fn toctou_guard_execl();
    fn toctou_guard_execlp();
    fn toctou_guard_execle();
}

/// A C variadic function we export: a jump to its C collector (`c/exec_variadic.c`), with
/// the caller's registers and stack untouched. A cdylib exports only Rust's own symbols, so
/// the C definitions cannot carry the public names themselves.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the execl/execlp/execle trampolines are written for x86_64 and aarch64 only");

macro_rules! variadic_trampoline {
    ($name:ident, $target:ident) => {
        /// # Safety
        /// The C function of this name (variadic).
        #[unsafe(no_mangle)]
        // SAFETY: the body is one tail jump to a C function with this exact C signature.
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name() {
            #[cfg(target_arch = "x86_64")]
            core::arch::naked_asm!("jmp {}", sym $target);
            #[cfg(target_arch = "aarch64")]
            core::arch::naked_asm!("b {}", sym $target);
        }
    };
}

pub(crate) use variadic_trampoline;

pub mod symbols {
    use super::*;

    variadic_trampoline!(execl, toctou_guard_execl);
    variadic_trampoline!(execlp, toctou_guard_execlp);
    variadic_trampoline!(execle, toctou_guard_execle);

    /// For `c/exec_variadic.c`: `execve` under our rule for children.
    ///
    /// # Safety
    /// C `execve`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn toctou_guard_execve(path: *const c_char, argv: Envp, envp: Envp) -> c_int {
        // SAFETY: per the contract.
        unsafe { execve_in(path, argv, envp) }
    }

    /// For `c/exec_variadic.c`: `execvpe` under our rule for children.
    ///
    /// # Safety
    /// C `execvpe`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn toctou_guard_execvpe(file: *const c_char, argv: Envp, envp: Envp) -> c_int {
        // SAFETY: per the contract.
        unsafe { execvpe_in(file, argv, envp) }
    }

    /// # Safety
    /// C `execve`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn execve(path: *const c_char, argv: Envp, envp: Envp) -> c_int {
        // SAFETY: per the contract.
        unsafe { execve_in(path, argv, envp) }
    }

    /// glibc's `execv` is `execve` with `environ`.
    ///
    /// # Safety
    /// C `execv`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn execv(path: *const c_char, argv: Envp) -> c_int {
        // SAFETY: per the contract; `environ` is the process's own environment.
        unsafe { execve_in(path, argv, environ_now()) }
    }

    /// # Safety
    /// C `execvpe`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Envp, envp: Envp) -> c_int {
        // SAFETY: per the contract.
        unsafe { execvpe_in(file, argv, envp) }
    }

    /// glibc's `execvp` is `execvpe` with `environ`.
    ///
    /// # Safety
    /// C `execvp`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn execvp(file: *const c_char, argv: Envp) -> c_int {
        // SAFETY: per the contract.
        unsafe { execvpe_in(file, argv, environ_now()) }
    }

    /// # Safety
    /// C `execveat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn execveat(
        dirfd: c_int,
        path: *const c_char,
        argv: Envp,
        envp: Envp,
        flags: c_int,
    ) -> c_int {
        // SAFETY: `argv` per the contract.
        if let Some(st) = unsafe { loader::watched(argv) } {
            // SAFETY: per the contract.
            return ffi::fail(unsafe { exec_judged(st, dirfd, path, argv, envp, flags) }, -1);
        }
        // SAFETY: glibc's `execveat` is the system call; the kernel validates the pointers.
        let exec =
            |e: Envp| unsafe { libc::syscall(libc::SYS_execveat, dirfd, path, argv, e, flags) } as c_int;
        // SAFETY: `envp` per the contract.
        unsafe { with_child_envp(envp, exec) }.unwrap_or_else(|e| ffi::fail(e, -1))
    }

    /// # Safety
    /// C `fexecve`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn fexecve(fd: c_int, argv: Envp, envp: Envp) -> c_int {
        let Some(f) = FEXECVE.get() else { return enosys(-1) };
        // SAFETY: `f` is glibc's `fexecve`, of type `FexecveFn`.
        let real = unsafe { core::mem::transmute::<*mut c_void, FexecveFn>(f) };
        if fd < 0 || argv.is_null() || envp.is_null() {
            // SAFETY: per the contract; glibc answers EINVAL before anything runs.
            return unsafe { real(fd, argv, envp) };
        }
        // SAFETY: `argv` per the contract.
        if let Some(st) = unsafe { loader::watched(argv) } {
            // glibc's `fexecve` is `execveat(fd, "", AT_EMPTY_PATH)`.
            // SAFETY: per the contract.
            let e = unsafe { exec_judged(st, fd, c"".as_ptr(), argv, envp, libc::AT_EMPTY_PATH) };
            return ffi::fail(e, -1);
        }
        // SAFETY: per the contract.
        unsafe { with_child_envp(envp, |e| real(fd, argv, e)) }.unwrap_or_else(|e| ffi::fail(e, -1))
    }

    /// # Safety
    /// C `posix_spawn`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn posix_spawn(
        pid: *mut libc::pid_t,
        path: *const c_char,
        actions: *const c_void,
        attr: *const c_void,
        argv: Envp,
        envp: Envp,
    ) -> c_int {
        // SAFETY: per the contract.
        unsafe { spawn_in(&POSIX_SPAWN, pid, path, actions, attr, argv, envp) }
    }

    /// # Safety
    /// C `posix_spawnp`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn posix_spawnp(
        pid: *mut libc::pid_t,
        file: *const c_char,
        actions: *const c_void,
        attr: *const c_void,
        argv: Envp,
        envp: Envp,
    ) -> c_int {
        // SAFETY: per the contract.
        unsafe { spawn_in(&POSIX_SPAWNP, pid, file, actions, attr, argv, envp) }
    }

    /// glibc spawns `/bin/sh` with `environ`, internally: make `environ` right first.
    ///
    /// # Safety
    /// C `system`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn system(command: *const c_char) -> c_int {
        let Some(f) = SYSTEM.get() else { return enosys(-1) };
        // SAFETY: `f` is glibc's `system`, of type `SystemFn`.
        let real = unsafe { core::mem::transmute::<*mut c_void, SystemFn>(f) };
        keep_environ();
        // SAFETY: per the contract.
        unsafe { real(command) }
    }

    /// As `system`.
    ///
    /// # Safety
    /// C `popen`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn popen(command: *const c_char, mode: *const c_char) -> *mut libc::FILE {
        let Some(f) = POPEN.get() else {
            return enosys(core::ptr::null_mut());
        };
        // SAFETY: `f` is glibc's `popen`, of type `PopenFn`.
        let real = unsafe { core::mem::transmute::<*mut c_void, PopenFn>(f) };
        keep_environ();
        // SAFETY: per the contract.
        unsafe { real(command, mode) }
    }

    /// `$(command)` runs `/bin/sh` with `environ`, inside glibc: as `system`.
    ///
    /// # Safety
    /// C `wordexp`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn wordexp(words: *const c_char, result: *mut c_void, flags: c_int) -> c_int {
        let Some(f) = WORDEXP.get() else {
            return WRDE_NOSPACE;
        };
        // SAFETY: `f` is glibc's `wordexp`, of type `WordexpFn`.
        let real = unsafe { core::mem::transmute::<*mut c_void, WordexpFn>(f) };
        if flags & WRDE_NOCMD == 0 {
            keep_environ();
        }
        // SAFETY: per the contract.
        unsafe { real(words, result, flags) }
    }

    /// # Safety
    /// C `setenv`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn setenv(name: *const c_char, value: *const c_char, overwrite: c_int) -> c_int {
        let Some(f) = SETENV.get() else { return enosys(-1) };
        // SAFETY: `f` is glibc's `setenv`, of type `SetenvFn`.
        let real = unsafe { core::mem::transmute::<*mut c_void, SetenvFn>(f) };
        // SAFETY: per the contract.
        let r = unsafe { real(name, value, overwrite) };
        if r == 0 && is_ours(name) {
            keep_environ();
        }
        r
    }

    /// # Safety
    /// C `unsetenv`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn unsetenv(name: *const c_char) -> c_int {
        let Some(f) = UNSETENV.get() else {
            return enosys(-1);
        };
        // SAFETY: `f` is glibc's `unsetenv`, of type `NameFn`.
        let real = unsafe { core::mem::transmute::<*mut c_void, NameFn>(f) };
        // SAFETY: per the contract.
        let r = unsafe { real(name) };
        if r == 0 && is_ours(name) {
            keep_environ();
        }
        r
    }

    /// `putenv("NAME")` (no `=`) removes NAME in glibc: both forms are checked.
    ///
    /// # Safety
    /// C `putenv`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn putenv(string: *mut c_char) -> c_int {
        let Some(f) = PUTENV.get() else { return enosys(-1) };
        // SAFETY: `f` is glibc's `putenv`, whose signature is `NameFn` (it takes `char *`).
        let real = unsafe { core::mem::transmute::<*mut c_void, NameFn>(f) };
        // SAFETY: per the contract.
        let r = unsafe { real(string) };
        if r == 0 && is_ours(string) {
            keep_environ();
        }
        r
    }

    /// # Safety
    /// C `clearenv`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn clearenv() -> c_int {
        let Some(f) = CLEARENV.get() else {
            return enosys(-1);
        };
        // SAFETY: `f` is glibc's `clearenv`, of type `ClearenvFn`.
        let real = unsafe { core::mem::transmute::<*mut c_void, ClearenvFn>(f) };
        // SAFETY: no arguments.
        let r = unsafe { real() };
        keep_environ();
        r
    }
}
