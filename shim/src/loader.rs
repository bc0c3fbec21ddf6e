//! The dynamic loader run as a program (review R3): `ld.so --audit LIST PROGRAM` loads
//! auditors from its command line, past the `LD_AUDIT` that `exec.rs` drops from a child's
//! environment. An auditor is loaded before the preload list and sees every search
//! (`la_objsearch` can drop or replace this library) and every binding (`la_symbind64` can
//! rebind `open` to raw system calls), so a guarded `cat` read another tenant's file.
//!
//! Which of ld.so's options (glibc 2.36) are refused, and why the others are not:
//! * `--audit LIST`: refused, as above.
//! * `--preload LIST`: loaded after `LD_PRELOAD`'s list (rtld handles the environment
//!   first), so after the guard, whose hooks bind first: what `LD_PRELOAD=GUARD:THEIRS`
//!   already gives, which children keep.
//! * `--library-path`, `--inhibit-cache`, `--inhibit-rpath`, `--glibc-hwcaps-prepend`,
//!   `--glibc-hwcaps-mask`: change where a search for a library *by name* looks. The guard
//!   is loaded by absolute path (no search) and binds first; `--library-path` is
//!   `LD_LIBRARY_PATH`, which children keep too.
//! * `--argv0`, `--list`, `--verify`, `--list-tunables`, `--list-diagnostics`, `--help`,
//!   `--version`: load nothing more.
//!
//! ld.so takes an option only as a whole argument (`--audit=X` is refused by ld.so itself).
//! Every argument after `argv[0]` counts, not only those before the program's name: a
//! mismatch with ld.so's parser can then only make us look, never miss. Only such an exec
//! (rare) pays: the file is opened `O_PATH`, its `(st_dev, st_ino)` compared with the
//! loader's — by inode, so another name or a hard link is caught — and that very object is
//! executed (`execveat(fd, "", AT_EMPTY_PATH)`), so the name cannot be swapped after the
//! check. A script started that way fails with `ENOENT`, as `fexecve` of a close-on-exec
//! descriptor does (the kernel cannot hand the interpreter a path): one whose `#!` line
//! names the loader with an option taking an argument (`--argv0`, swallowing the script's
//! path) would pass our argv's options on. `posix_spawn` execs a path inside glibc: it is
//! given the descriptor's `/proc/self/fd/N`, and only a file that starts as ELF.
//!
//! The loader is the running one (the main program's `PT_INTERP`) and this platform's
//! standard path. A loader of another ABI (32-bit `ld-linux.so.2`, x32) cannot load this
//! library at all, so its programs are unguarded anyway, like a static binary; a *copy* of
//! the loader is a program of the tenant's own, of the same kind. Both are stated limits.

use core::ffi::{CStr, c_char};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{CWD, FileType, Mode, OFlags};
use rustix::io::Errno;
use toctou_policy::{Decision, DenyReason, PATH_MAX};

use crate::ffi::{self, Mapped};
use crate::fmtbuf::FmtBuf;
use crate::state::{self, Phase, State};

type Argv = *const *const c_char;

/// The options refused (see the module's comment for the others).
const REFUSED: &[&[u8]] = &[b"--audit"];

#[cfg(target_arch = "x86_64")]
const SYSTEM_LOADER: &CStr = c"/lib64/ld-linux-x86-64.so.2";
#[cfg(target_arch = "aarch64")]
const SYSTEM_LOADER: &CStr = c"/lib/ld-linux-aarch64.so.1";

/// The state to judge this exec by: the process is guarded and `argv` names a refused
/// option. `None` for every other exec, which goes on untouched (no system call here).
///
/// # Safety
/// `argv` is NULL or a NULL-terminated array of C strings (the exec functions' contract).
pub unsafe fn watched(argv: Argv) -> Option<&'static State> {
    let Phase::Guard(st) = state::current() else {
        return None;
    };
    // SAFETY: per the contract, a non-NULL array has at least its terminating NULL.
    if argv.is_null() || unsafe { (*argv).is_null() } {
        return None;
    }
    // Bounded by the array's NULL (the kernel takes at most MAX_ARG_STRINGS anyway).
    for i in 1.. {
        // SAFETY: per the contract, entries up to the terminating NULL are readable, and
        // entry `i - 1` was not it.
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-NULL entry is a NUL-terminated string.
        let arg = unsafe { CStr::from_ptr(p) }.to_bytes();
        if REFUSED.contains(&arg) {
            return Some(st);
        }
    }
    None
}

/// Open what an exec of `path` (relative to `dir`) would run, without running it.
pub fn pin(dir: BorrowedFd<'_>, path: &CStr, nofollow: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    rustix::fs::openat(dir, path, flags, Mode::empty())
}

/// Refuse (`EACCES`, one `reason=loader-options` line) if `file` is the dynamic loader;
/// `name` is what the caller called it, for the line. Fails closed when no loader can be
/// identified at all. Audit mode: logged, allowed.
pub fn judge(st: &State, file: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let st_file = rustix::fs::fstat(file)?;
    let id = (st_file.st_dev, st_file.st_ino);
    let mut known = false;
    let mut is_loader = false;
    for loader in [ffi::program_interpreter(), Some(SYSTEM_LOADER)]
        .into_iter()
        .flatten()
    {
        if let Ok(l) = rustix::fs::stat(loader) {
            known = true;
            is_loader |= (l.st_dev, l.st_ino) == id;
        }
    }
    if known && !is_loader {
        return Ok(());
    }
    let decision = st.policy.refuse(DenyReason::LoaderOptions);
    let audit = matches!(decision, Decision::Audit(_));
    crate::guard::log(
        st,
        audit,
        DenyReason::LoaderOptions,
        Some(st_file.st_uid),
        None,
        b"",
        name,
    );
    if audit { Ok(()) } else { Err(Errno::ACCESS) }
}

/// glibc's `PATH` search for `execvp`/`posix_spawnp` of a `file` with no `/`: `each` is
/// tried on `DIR/file` for every entry of `PATH` (default `/bin:/usr/bin`; an empty entry is
/// the working directory), and its error decides as glibc's does — `EACCES` is remembered
/// and the search goes on, a missing file or directory goes on, any other error ends it.
/// `Ok` ends it too.
pub fn search<R>(file: &CStr, mut each: impl FnMut(&CStr) -> Result<R, Errno>) -> Result<R, Errno> {
    let file = file.to_bytes();
    if file.is_empty() {
        return Err(Errno::NOENT);
    }
    if file.len() > 255 {
        return Err(Errno::NAMETOOLONG);
    }
    let path = ffi::getenv(c"PATH").unwrap_or(b"/bin:/usr/bin");
    // Rare (a refused option in argv): a mapping, not the stack, holds the candidates.
    let mut map = Mapped::zeroed(PATH_MAX + 256 + 2).ok_or(Errno::NOMEM)?;
    let buf = map.bytes_mut();
    let mut eacces = false;
    for dir in path.split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        if dir.len() >= PATH_MAX {
            continue;
        }
        let n = dir.len() + 1 + file.len();
        buf[..dir.len()].copy_from_slice(dir);
        buf[dir.len()] = b'/';
        buf[dir.len() + 1..n].copy_from_slice(file);
        buf[n] = 0;
        let Ok(candidate) = CStr::from_bytes_with_nul(&buf[..=n]) else {
            continue;
        };
        match each(candidate) {
            Ok(r) => return Ok(r),
            Err(Errno::ACCESS) => eacces = true,
            Err(Errno::NOENT | Errno::STALE | Errno::NOTDIR | Errno::NODEV | Errno::TIMEDOUT) => {}
            Err(e) => return Err(e),
        }
    }
    Err(if eacces { Errno::ACCESS } else { Errno::NOENT })
}

/// `/proc/self/fd/N` for `fd`: how a spawn, which calls glibc's internal `execve` with a
/// path, is made to run the very object judged (the child has a copy of the descriptor
/// until its exec).
pub fn fd_path(fd: BorrowedFd<'_>) -> FmtBuf<40> {
    let mut link = FmtBuf::<40>::new();
    let _ = core::fmt::Write::write_fmt(&mut link, format_args!("/proc/self/fd/{}", fd.as_raw_fd()));
    link
}

/// `Ok` if `file` is a regular file that starts as an ELF file does; else `EACCES` (not a
/// regular file, as exec says) or `ENOENT` (what `execveat` of a close-on-exec descriptor
/// answers for a script). Read through its
/// `/proc/self/fd` link, so the very object judged: `EACCES` if it cannot be read (an
/// execute-only file), so this fails closed.
pub fn elf_only(file: BorrowedFd<'_>) -> Result<(), Errno> {
    if FileType::from_raw_mode(rustix::fs::fstat(file)?.st_mode) != FileType::RegularFile {
        return Err(Errno::ACCESS);
    }
    let mut link = fd_path(file);
    let link = link.as_cstr().ok_or(Errno::NAMETOOLONG)?;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let f = rustix::fs::openat(CWD, link, flags, Mode::empty())?;
    let mut magic = [0u8; 4];
    match rustix::io::pread(&f, &mut magic, 0) {
        Ok(4) if &magic == b"\x7fELF" => Ok(()),
        Ok(_) => Err(Errno::NOENT),
        Err(e) => Err(e),
    }
}
