//! Directory walkers that glibc runs on its own internal opens (`__opendir`, `__openat`),
//! which never reach the `opendir`/`openat` hooks: `glob`, `scandir`, `nftw`, `ftw`. Without
//! these a tenant's symlink to another tenant's directory was listed in full.
//!
//! - `glob`/`glob64` call glibc's own with `GLOB_ALTDIRFUNC`, its documented way to supply
//!   the directory functions: `gl_opendir` is the guarded open, `gl_lstat`/`gl_stat` stat a
//!   name relative to its directory opened under the rule (glob confirms names without
//!   listing), `gl_readdir`/`gl_closedir` are libc's. All of glibc's matching (braces,
//!   tilde, sorting, `GLOB_APPEND`, errfunc) stays glibc's.
//! - `scandir*` and `nftw`/`ftw` have no such hook: they are reimplemented here on guarded
//!   opens, following glibc 2.36 step by step (same order, typeflags, levels, bases, errno,
//!   descriptor use), so that a legal walk gives what glibc gives.
//!
//! A refused directory fails with `EACCES` (and the denial is logged by `guard`), which each
//! walker already reports for an unreadable directory: errfunc / `GLOB_ABORTED`, -1, FTW_DNR.
//! None of this is the hot path of a server (the results must be `malloc`ed anyway), so it
//! allocates; it holds no lock.
//!
//! Not covered: `fts_*` and `wordexp` (glibc's `fts_build` opens internally too, and
//! `wordexp` calls glibc's internal glob; see the README), and a callback that `longjmp`s out
//! of `nftw` (that skips the walk's Rust frames, which Rust does not promise to survive;
//! glibc's own walk leaks its memory then).

use core::ffi::{CStr, c_char, c_int, c_void};
use core::sync::atomic::AtomicPtr;
use std::collections::BTreeSet;
use std::os::fd::{IntoRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::ffi;
use crate::guard::{self, Dir};

/// `opendir` under the rule, relative to `dir`, with `flags` (glibc's opendir flags, or its
/// `openat` flags inside `nftw`). NULL with errno on failure (`EACCES` when refused).
fn opendir_at(dir: Dir, path: &CStr, flags: OFlags) -> *mut libc::DIR {
    match guard::open(dir, path, flags, Mode::empty()) {
        Ok(fd) => ffi::fdopendir(fd.into_raw_fd()),
        Err(e) => {
            ffi::set_errno(e.raw_os_error());
            core::ptr::null_mut()
        }
    }
}

/// What glibc's `opendir` passes to the kernel.
fn opendir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::DIRECTORY | OFlags::CLOEXEC
}

// ------------------------------------------------------------------------------------ glob

/// glibc's `glob_t` (and `glob64_t`, the same on LP64): the libc crate hides the five
/// function pointers, which glibc declares in this order.
#[repr(C)]
struct GlobT {
    gl_pathc: usize,
    gl_pathv: *mut *mut c_char,
    gl_offs: usize,
    gl_flags: c_int,
    gl_closedir: *mut c_void,
    gl_readdir: *mut c_void,
    gl_opendir: *mut c_void,
    gl_lstat: *mut c_void,
    gl_stat: *mut c_void,
}

const _: () = assert!(core::mem::size_of::<GlobT>() == core::mem::size_of::<libc::glob_t>());
const _: () = assert!(core::mem::size_of::<GlobT>() == core::mem::size_of::<libc::glob64_t>());
// glob (dirent, stat) and glob64 (dirent64, stat64) share one layout on LP64 Linux.
const _: () = assert!(core::mem::size_of::<libc::dirent>() == core::mem::size_of::<libc::dirent64>());
const _: () = assert!(core::mem::size_of::<libc::stat>() == core::mem::size_of::<libc::stat64>());

type ErrFn = Option<unsafe extern "C" fn(*const c_char, c_int) -> c_int>;
type GlobFn = unsafe extern "C" fn(*const c_char, c_int, ErrFn, *mut GlobT) -> c_int;

static REAL_GLOB: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static REAL_GLOB64: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// `gl_opendir`: glibc's glob hands it the directory part of the pattern as written.
unsafe extern "C" fn glob_opendir(path: *const c_char) -> *mut c_void {
    // SAFETY: glob passes a NUL-terminated directory name.
    match unsafe { ffi::cstr(path) } {
        Some(p) => opendir_at(Dir::Cwd, p, opendir_flags()).cast(),
        None => {
            ffi::set_errno(libc::EFAULT);
            core::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn glob_closedir(d: *mut c_void) {
    // SAFETY: `d` is a stream `glob_opendir` returned, closed once by glob.
    unsafe { libc::closedir(d.cast()) };
}

unsafe extern "C" fn glob_readdir64(d: *mut c_void) -> *mut c_void {
    // SAFETY: as above; glob reads the entry before the next call.
    unsafe { libc::readdir64(d.cast()).cast() }
}

unsafe extern "C" fn glob_lstat64(path: *const c_char, st: *mut c_void) -> c_int {
    // SAFETY: glob passes a path and a `struct stat` buffer (stat64's layout on LP64).
    unsafe { glob_stat_in_dir(path, st.cast(), true) }
}

unsafe extern "C" fn glob_stat64(path: *const c_char, st: *mut c_void) -> c_int {
    // SAFETY: as above.
    unsafe { glob_stat_in_dir(path, st.cast(), false) }
}

/// `gl_lstat`/`gl_stat`: glob confirms a name without listing its directory (a pattern whose
/// last part has no wildcard, `{a,b}` alternatives, GLOB_MARK): judge the directory that holds
/// the name like a listing of it, then stat the name relative to that very directory. Else
/// `glob("v/{wp-config,secret}.php")` would confirm guessed names in the victim's directory.
///
/// # Safety
/// `path` NULL or NUL-terminated; `st` a writable `stat64`.
unsafe fn glob_stat_in_dir(path: *const c_char, st: *mut libc::stat64, nofollow: bool) -> c_int {
    // SAFETY: per the contract.
    let Some(p) = (unsafe { ffi::cstr(path) }) else {
        ffi::set_errno(libc::EFAULT);
        return -1;
    };
    let bytes = p.to_bytes();
    let slash = bytes.iter().rposition(|&b| b == b'/');
    let name = &bytes[slash.map_or(0, |i| i + 1)..];
    let parent: &[u8] = match slash {
        None => b".",
        Some(0) => b"/",
        Some(i) => &bytes[..i],
    };
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let (Ok(parent), Ok(name)) = (std::ffi::CString::new(parent), std::ffi::CString::new(name)) else {
        ffi::set_errno(libc::EINVAL);
        return -1;
    };
    // `dir/`, `.`, `..`: no name inside a directory; judge the object itself.
    let (dir_path, at_name, at_flags) = if matches!(name.as_bytes(), b"" | b"." | b"..") {
        (p, c"", libc::AT_EMPTY_PATH)
    } else {
        let f = if nofollow { libc::AT_SYMLINK_NOFOLLOW } else { 0 };
        (parent.as_c_str(), name.as_c_str(), f)
    };
    let dir_flags = if at_name.is_empty() {
        flags - OFlags::DIRECTORY
    } else {
        flags
    };
    match guard::open(Dir::Cwd, dir_path, dir_flags, Mode::empty()) {
        Ok(fd) => {
            use std::os::fd::AsRawFd;
            // SAFETY: our descriptor, a NUL-terminated name, the caller's stat buffer.
            unsafe { libc::fstatat64(fd.as_raw_fd(), at_name.as_ptr(), st, at_flags) }
        }
        Err(e) => {
            ffi::set_errno(e.raw_os_error());
            -1
        }
    }
}

/// # Safety
/// C `glob` contract.
unsafe fn glob_common(
    name: &CStr,
    cache: &AtomicPtr<c_void>,
    pattern: *const c_char,
    flags: c_int,
    errfunc: ErrFn,
    pglob: *mut GlobT,
) -> c_int {
    let f = ffi::next_symbol(name, cache);
    if f.is_null() {
        ffi::set_errno(libc::ENOSYS);
        return libc::GLOB_NOSPACE;
    }
    // SAFETY: `f` is libc's glob (or glob64), whose signature is `GlobFn`.
    let real = unsafe { core::mem::transmute::<*mut c_void, GlobFn>(f) };
    // The caller's own directory functions are the caller's business (an opendir they call
    // goes through our hook); glibc rejects a NULL pglob (or bad flags) itself.
    if flags & libc::GLOB_ALTDIRFUNC != 0 || pglob.is_null() {
        // SAFETY: the caller's arguments, as given.
        return unsafe { real(pattern, flags, errfunc, pglob) };
    }
    // SAFETY: non-NULL, and the caller passes a glob_t it owns for the call.
    let g = unsafe { &mut *pglob };
    let saved = (g.gl_closedir, g.gl_readdir, g.gl_opendir, g.gl_lstat, g.gl_stat);
    let saved_flags = g.gl_flags;
    g.gl_closedir = glob_closedir as *mut c_void;
    g.gl_readdir = glob_readdir64 as *mut c_void;
    g.gl_opendir = glob_opendir as *mut c_void;
    g.gl_lstat = glob_lstat64 as *mut c_void;
    g.gl_stat = glob_stat64 as *mut c_void;
    // SAFETY: the caller's arguments plus GLOB_ALTDIRFUNC, whose five functions are set.
    let r = unsafe { real(pattern, flags | libc::GLOB_ALTDIRFUNC, errfunc, pglob) };
    let errno = ffi::errno();
    // SAFETY: as above (glob is done with it).
    let g = unsafe { &mut *pglob };
    (g.gl_closedir, g.gl_readdir, g.gl_opendir, g.gl_lstat, g.gl_stat) = saved;
    // glob stores its flags in gl_flags: ours added GLOB_ALTDIRFUNC, which the caller
    // never asked for (untouched when glob did not write the field).
    if g.gl_flags != saved_flags || saved_flags & libc::GLOB_ALTDIRFUNC == 0 {
        g.gl_flags &= !libc::GLOB_ALTDIRFUNC;
    }
    ffi::set_errno(errno);
    r
}

// --------------------------------------------------------------------------------- scandir

type FilterFn = Option<unsafe extern "C" fn(*const libc::dirent64) -> c_int>;
type ComparFn = Option<unsafe extern "C" fn(*mut *const libc::dirent64, *mut *const libc::dirent64) -> c_int>;
type QsortFn = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

/// glibc's `scandir-tail-common.c` on a guarded `opendirat`.
///
/// # Safety
/// C `scandirat` contract.
unsafe fn scandir_common(
    dir: Dir,
    path: *const c_char,
    namelist: *mut *mut *mut libc::dirent64,
    filter: FilterFn,
    compar: ComparFn,
) -> c_int {
    // SAFETY: NULL or NUL-terminated, per the contract.
    let Some(path) = (unsafe { ffi::cstr(path) }) else {
        ffi::set_errno(libc::EFAULT);
        return -1;
    };
    let dp = opendir_at(dir, path, opendir_flags());
    if dp.is_null() {
        return -1;
    }
    let save = ffi::errno();
    ffi::set_errno(0);
    let mut v: *mut *mut libc::dirent64 = core::ptr::null_mut();
    let (mut cnt, mut vsize) = (0usize, 0usize);
    loop {
        // SAFETY: `dp` is our open stream.
        let d = unsafe { libc::readdir64(dp) };
        if d.is_null() {
            break;
        }
        if let Some(select) = filter {
            // SAFETY: the caller's filter, on the entry readdir just returned.
            let selected = unsafe { select(d) };
            // The filter may leave errno set on success; only readdir's counts below.
            ffi::set_errno(0);
            if selected == 0 {
                continue;
            }
        }
        if cnt == vsize {
            vsize = if vsize == 0 { 10 } else { vsize * 2 };
            // SAFETY: growing our own malloc'd array (NULL at first).
            let new = unsafe { libc::realloc(v.cast(), vsize * core::mem::size_of::<*mut libc::dirent64>()) };
            if new.is_null() {
                break; // ENOMEM set by realloc
            }
            v = new.cast();
        }
        // SAFETY: `d` is a valid entry of `d_reclen` bytes (glibc's _D_ALLOC_NAMLEN copy).
        let dsize = usize::from(unsafe { (*d).d_reclen });
        // SAFETY: a fresh allocation of `dsize` bytes.
        let vnew = unsafe { libc::malloc(dsize) };
        if vnew.is_null() {
            break;
        }
        // SAFETY: `dsize` bytes from the entry into the new block; `cnt < vsize` slots.
        unsafe {
            core::ptr::copy_nonoverlapping(d.cast::<u8>(), vnew.cast::<u8>(), dsize);
            *v.add(cnt) = vnew.cast();
        }
        cnt += 1;
        ffi::set_errno(0);
    }
    if ffi::errno() == 0 {
        // SAFETY: our stream, closed once.
        unsafe { libc::closedir(dp) };
        if let Some(cmp) = compar
            && cnt > 0
        {
            // SAFETY: glibc sorts with the caller's compar cast to qsort's type, exactly so:
            // it is called with two pointers into `v`, each a `struct dirent **`.
            unsafe {
                let cmp = core::mem::transmute::<
                    unsafe extern "C" fn(*mut *const libc::dirent64, *mut *const libc::dirent64) -> c_int,
                    QsortFn,
                >(cmp);
                libc::qsort(
                    v.cast(),
                    cnt,
                    core::mem::size_of::<*mut libc::dirent64>(),
                    Some(cmp),
                );
            }
        }
        // SAFETY: the caller's out-pointer, per the contract.
        unsafe { *namelist = v };
        ffi::set_errno(save);
        c_int::try_from(cnt).unwrap_or(c_int::MAX)
    } else {
        let e = ffi::errno();
        // SAFETY: freeing what we allocated, and our stream, once each.
        unsafe {
            for i in 0..cnt {
                libc::free((*v.add(i)).cast());
            }
            libc::free(v.cast());
            libc::closedir(dp);
        }
        ffi::set_errno(e);
        -1
    }
}

// ------------------------------------------------------------------------------- nftw, ftw

const FTW_F: c_int = 0;
const FTW_D: c_int = 1;
const FTW_DNR: c_int = 2;
const FTW_NS: c_int = 3;
const FTW_SL: c_int = 4;
const FTW_DP: c_int = 5;
const FTW_SLN: c_int = 6;
const FTW_PHYS: c_int = 1;
const FTW_MOUNT: c_int = 2;
const FTW_CHDIR: c_int = 4;
const FTW_DEPTH: c_int = 8;
const FTW_ACTIONRETVAL: c_int = 16;
const FTW_STOP: c_int = 1;
const FTW_SKIP_SUBTREE: c_int = 2;
const FTW_SKIP_SIBLINGS: c_int = 3;
/// What `ftw` callbacks see for each internal type (glibc's `ftw_arr`).
const FTW_CVT: [c_int; 7] = [FTW_F, FTW_D, FTW_DNR, FTW_NS, FTW_F, FTW_D, FTW_NS];

/// glibc's `struct FTW`.
#[repr(C)]
pub struct Ftw {
    base: c_int,
    level: c_int,
}

type NftwFn = unsafe extern "C" fn(*const c_char, *const libc::stat64, c_int, *mut Ftw) -> c_int;
type FtwFn = unsafe extern "C" fn(*const c_char, *const libc::stat64, c_int) -> c_int;

#[derive(Clone, Copy)]
enum Func {
    Ftw(FtwFn),
    Nftw(NftwFn),
}

/// One directory of the walk: its stream while open, else the names read from it before it
/// had to be closed to respect the caller's descriptor limit.
struct Level {
    stream: *mut libc::DIR,
    fd: c_int,
    content: Vec<Vec<u8>>,
    next: usize,
}

struct Walk {
    /// Open streams, as levels of `levels`; glibc's `dirstreams` ring of `maxdir`.
    ring: Vec<Option<usize>>,
    actdir: usize,
    maxdir: usize,
    levels: Vec<Level>,
    /// The current object's path, NUL-terminated (what callbacks receive).
    dirbuf: Vec<u8>,
    ftw: Ftw,
    flags: c_int,
    func: Func,
    dev: u64,
    known: BTreeSet<(u64, u64)>,
    /// The caller's working directory with FTW_CHDIR: where the walk starts from.
    start: Option<OwnedFd>,
}

fn is_dir(st: &libc::stat64) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_lnk(st: &libc::stat64) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

fn zeroed_stat() -> libc::stat64 {
    // SAFETY: `stat64` is plain integers; all zeroes is a value.
    unsafe { core::mem::zeroed() }
}

/// `stat`/`lstat` of a NUL-terminated name (`fd` -1: by path from the working directory).
fn stat_at(fd: c_int, name: &[u8], nofollow: bool, st: &mut libc::stat64) -> c_int {
    let flags = if nofollow { libc::AT_SYMLINK_NOFOLLOW } else { 0 };
    let dfd = if fd == -1 { libc::AT_FDCWD } else { fd };
    // SAFETY: `name` ends in NUL (callers pass NUL-terminated slices); `st` is writable.
    unsafe { libc::fstatat64(dfd, name.as_ptr().cast(), st, flags) }
}

impl Walk {
    fn call(&mut self, st: &libc::stat64, flag: c_int) -> c_int {
        let path = self.dirbuf.as_ptr().cast::<c_char>();
        match self.func {
            // SAFETY: the caller's callback, with a NUL-terminated path and a stat buffer
            // valid for the call (ftw's callbacks take the first three of nftw's arguments).
            Func::Nftw(f) => unsafe { f(path, st, flag, &mut self.ftw) },
            // SAFETY: as above.
            Func::Ftw(f) => unsafe { f(path, st, FTW_CVT[flag as usize]) },
        }
    }

    /// The name at `base` in `dirbuf`, with its NUL.
    fn base_name(&self) -> &[u8] {
        &self.dirbuf[self.ftw.base as usize..]
    }

    fn strlen(&self) -> usize {
        self.dirbuf
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.dirbuf.len())
    }

    fn set_len(&mut self, len: usize) {
        self.dirbuf.truncate(len);
        self.dirbuf.push(0);
    }

    /// glibc's `open_dir_stream`: make room in the ring (reading the oldest open directory
    /// to its end and closing it), then open the directory named in `dirbuf` under the rule.
    fn open_dir_stream(&mut self, old: Option<usize>) -> Result<(), ()> {
        if let Some(oldest) = self.ring[self.actdir].take() {
            let lv = &mut self.levels[oldest];
            loop {
                // SAFETY: an open stream of ours.
                let d = unsafe { libc::readdir64(lv.stream) };
                if d.is_null() {
                    break;
                }
                // SAFETY: d_name is NUL-terminated within the entry.
                let name = unsafe { CStr::from_ptr((*d).d_name.as_ptr()) };
                lv.content.push(name.to_bytes_with_nul().to_vec());
            }
            // SAFETY: closed once; the level no longer refers to it.
            unsafe { libc::closedir(lv.stream) };
            lv.stream = core::ptr::null_mut();
            lv.fd = -1;
        }
        let parent_fd = old.map_or(-1, |o| self.levels[o].fd);
        let stream = if parent_fd != -1 {
            let name = CStr::from_bytes_until_nul(self.base_name()).map_err(|_| ())?;
            // glibc's __openat64_nocancel flags (no O_CLOEXEC).
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK;
            opendir_at(Dir::Fd(parent_fd), name, flags)
        } else if self.flags & FTW_CHDIR != 0 {
            match (old, &self.start) {
                // The start directory: glibc has already changed to its parent, through
                // whatever symlinks the path holds; open it by its whole name from the
                // caller's directory instead, so the rule sees the path as the caller wrote it.
                (None, Some(start)) => {
                    let name = CStr::from_bytes_until_nul(&self.dirbuf).map_err(|_| ())?;
                    use std::os::fd::AsRawFd;
                    opendir_at(Dir::Fd(start.as_raw_fd()), name, opendir_flags())
                }
                _ => {
                    let mut name = CStr::from_bytes_until_nul(self.base_name()).map_err(|_| ())?;
                    if name.is_empty() {
                        name = c".";
                    }
                    opendir_at(Dir::Cwd, name, opendir_flags())
                }
            }
        } else {
            let name = CStr::from_bytes_until_nul(&self.dirbuf).map_err(|_| ())?;
            opendir_at(Dir::Cwd, name, opendir_flags())
        };
        if stream.is_null() {
            return Err(());
        }
        // SAFETY: an open stream of ours.
        let fd = unsafe { libc::dirfd(stream) };
        self.levels.push(Level {
            stream,
            fd,
            content: Vec::new(),
            next: 0,
        });
        self.ring[self.actdir] = Some(self.levels.len() - 1);
        self.actdir += 1;
        if self.actdir == self.maxdir {
            self.actdir = 0;
        }
        Ok(())
    }

    /// Close the newest open stream (this level's) and free its ring slot.
    fn close_level(&mut self, me: usize) {
        let lv = &mut self.levels[me];
        if !lv.stream.is_null() {
            let e = ffi::errno();
            // SAFETY: an open stream of ours, closed once.
            unsafe { libc::closedir(lv.stream) };
            lv.stream = core::ptr::null_mut();
            lv.fd = -1;
            ffi::set_errno(e);
            self.actdir = if self.actdir == 0 {
                self.maxdir - 1
            } else {
                self.actdir - 1
            };
            self.ring[self.actdir] = None;
        }
    }

    /// The next name in level `me`: from its stream, or from what was read before it was
    /// closed.
    fn next_entry(&mut self, me: usize) -> Option<Vec<u8>> {
        let lv = &mut self.levels[me];
        if !lv.stream.is_null() {
            // SAFETY: an open stream of ours.
            let d = unsafe { libc::readdir64(lv.stream) };
            if d.is_null() {
                return None;
            }
            // SAFETY: a valid entry; d_name is NUL-terminated within it.
            let name = unsafe { CStr::from_ptr((*d).d_name.as_ptr()) };
            return Some(name.to_bytes().to_vec());
        }
        let name = lv.content.get(lv.next)?;
        lv.next += 1;
        Some(name[..name.len() - 1].to_vec())
    }

    /// glibc's `process_entry`.
    fn process_entry(&mut self, me: usize, name: &[u8]) -> c_int {
        if name == b"." || name == b".." {
            return 0;
        }
        let base = self.ftw.base as usize;
        self.set_len(base);
        self.dirbuf.pop();
        self.dirbuf.extend_from_slice(name);
        self.dirbuf.push(0);
        let phys = self.flags & FTW_PHYS != 0;
        let fd = self.levels[me].fd;
        // By descriptor while the directory is open, else by path (the name alone from the
        // directory we changed to with FTW_CHDIR).
        let path: Vec<u8> = if fd != -1 || self.flags & FTW_CHDIR != 0 {
            self.dirbuf[base..].to_vec()
        } else {
            self.dirbuf.clone()
        };
        let mut st = zeroed_stat();
        let mut result = 0;
        let flag;
        if stat_at(fd, &path, phys, &mut st) < 0 {
            let e = ffi::errno();
            if e != libc::EACCES && e != libc::ENOENT {
                result = -1;
                flag = FTW_NS;
            } else if phys {
                flag = FTW_NS;
            } else if stat_at(fd, &path, true, &mut st) == 0 && is_lnk(&st) {
                // glibc 2.34+: a dangling link is reported with the link's own lstat.
                flag = FTW_SLN;
            } else {
                flag = FTW_NS;
            }
        } else if is_dir(&st) {
            flag = FTW_D;
        } else if is_lnk(&st) {
            flag = FTW_SL;
        } else {
            flag = FTW_F;
        }
        if result == 0 && (flag == FTW_NS || self.flags & FTW_MOUNT == 0 || st.st_dev == self.dev) {
            if flag == FTW_D {
                if phys || self.known.insert((st.st_dev, st.st_ino)) {
                    result = self.ftw_dir(&st, Some(me));
                }
            } else {
                result = self.call(&st, flag);
            }
        }
        if self.flags & FTW_ACTIONRETVAL != 0 && result == FTW_SKIP_SUBTREE {
            result = 0;
        }
        result
    }

    /// glibc's `ftw_dir`: the directory named in `dirbuf`, whose stat is `st`.
    fn ftw_dir(&mut self, st: &libc::stat64, old: Option<usize>) -> c_int {
        let previous_base = self.ftw.base;
        if self.open_dir_stream(old).is_err() {
            if ffi::errno() == libc::EACCES {
                return self.call(st, FTW_DNR);
            }
            return -1;
        }
        let me = self.levels.len() - 1;
        let fail = |w: &mut Walk, result: c_int| {
            let e = ffi::errno();
            w.close_level(me);
            w.levels.pop();
            ffi::set_errno(e);
            result
        };
        if self.flags & FTW_DEPTH == 0 {
            let result = self.call(st, FTW_D);
            if result != 0 {
                return fail(self, result);
            }
        }
        if self.flags & FTW_CHDIR != 0 {
            // SAFETY: fchdir on our open directory descriptor.
            if unsafe { libc::fchdir(self.levels[me].fd) } < 0 {
                return fail(self, -1);
            }
        }
        self.ftw.level += 1;
        let mut end = self.strlen();
        if end == 0 || self.dirbuf[end - 1] != b'/' {
            self.set_len(end);
            self.dirbuf.insert(end, b'/');
            end += 1;
        }
        self.ftw.base = end as c_int;
        let mut result = 0;
        while let Some(name) = self.next_entry(me) {
            result = self.process_entry(me, &name);
            if result != 0 {
                break;
            }
        }
        self.close_level(me);
        if self.flags & FTW_ACTIONRETVAL != 0 && result == FTW_SKIP_SIBLINGS {
            result = 0;
        }
        self.set_len(self.ftw.base as usize - 1);
        self.ftw.level -= 1;
        self.ftw.base = previous_base;
        if result == 0 && self.flags & FTW_DEPTH != 0 {
            result = self.call(st, FTW_DP);
        }
        if let Some(o) = old
            && self.flags & FTW_CHDIR != 0
            && (result == 0 || (self.flags & FTW_ACTIONRETVAL != 0 && result != -1 && result != FTW_STOP))
        {
            let pfd = self.levels[o].fd;
            // SAFETY: fchdir on an open directory descriptor of ours.
            let done = pfd != -1 && unsafe { libc::fchdir(pfd) } == 0;
            if !done {
                let to = if self.ftw.base == 1 { c"/" } else { c".." };
                // SAFETY: a NUL-terminated literal.
                if unsafe { libc::chdir(to.as_ptr()) } < 0 {
                    result = -1;
                }
            }
        }
        self.levels.pop();
        result
    }
}

/// glibc's `ftw_startup`.
///
/// # Safety
/// C `nftw` contract: `path` NULL or NUL-terminated; `func` callable as declared.
unsafe fn ftw_startup(path: *const c_char, func: Func, descriptors: c_int, flags: c_int) -> c_int {
    // SAFETY: per the contract.
    let Some(path) = (unsafe { ffi::cstr(path) }) else {
        ffi::set_errno(libc::EFAULT);
        return -1;
    };
    if path.is_empty() {
        ffi::set_errno(libc::ENOENT);
        return -1;
    }
    let maxdir = descriptors.max(1) as usize;
    let mut dirbuf = path.to_bytes().to_vec();
    while dirbuf.len() > 1 && dirbuf.last() == Some(&b'/') {
        dirbuf.pop();
    }
    let base = dirbuf.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    dirbuf.push(0);
    let mut w = Walk {
        ring: vec![None; maxdir],
        actdir: 0,
        maxdir,
        levels: Vec::new(),
        dirbuf,
        ftw: Ftw {
            base: base as c_int,
            level: 0,
        },
        flags,
        func,
        dev: 0,
        known: BTreeSet::new(),
        start: None,
    };
    let mut result = 0;
    if flags & FTW_CHDIR != 0 {
        // A descriptor to come back to (glibc's, which counts against the limit); a working
        // directory we may not read is still held as O_PATH (glibc falls back to its name).
        match rustix::fs::open(c".", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
            Ok(fd) => {
                w.start = Some(fd);
                if w.maxdir > 1 {
                    w.maxdir -= 1;
                }
            }
            Err(Errno::ACCESS) => {
                let fl = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
                match rustix::fs::open(c".", fl, Mode::empty()) {
                    Ok(fd) => w.start = Some(fd),
                    Err(e) => {
                        ffi::set_errno(e.raw_os_error());
                        return -1;
                    }
                }
            }
            Err(e) => {
                ffi::set_errno(e.raw_os_error());
                return -1;
            }
        }
        if base > 0 {
            let r = if base == 1 {
                // SAFETY: a NUL-terminated literal.
                unsafe { libc::chdir(c"/".as_ptr()) }
            } else {
                let mut parent = w.dirbuf[..base - 1].to_vec();
                parent.push(0);
                // SAFETY: NUL-terminated just above.
                unsafe { libc::chdir(parent.as_ptr().cast()) }
            };
            result = r;
        }
    }
    if result == 0 {
        let name: Vec<u8> = if flags & FTW_CHDIR != 0 {
            let n = &w.dirbuf[base..];
            if n == b"\0" { b".\0".to_vec() } else { n.to_vec() }
        } else {
            w.dirbuf.clone()
        };
        let phys = flags & FTW_PHYS != 0;
        let mut st = zeroed_stat();
        if stat_at(-1, &name, phys, &mut st) < 0 {
            if !phys && ffi::errno() == libc::ENOENT && stat_at(-1, &name, true, &mut st) == 0 && is_lnk(&st)
            {
                result = w.call(&st, FTW_SLN);
            } else {
                result = -1;
            }
        } else if is_dir(&st) {
            w.dev = st.st_dev;
            if !phys {
                w.known.insert((st.st_dev, st.st_ino));
            }
            result = w.ftw_dir(&st, None);
        } else {
            let flag = if is_lnk(&st) { FTW_SL } else { FTW_F };
            result = w.call(&st, flag);
        }
        if flags & FTW_ACTIONRETVAL != 0 && (result == FTW_SKIP_SUBTREE || result == FTW_SKIP_SIBLINGS) {
            result = 0;
        }
    }
    if let Some(start) = w.start.take() {
        let e = ffi::errno();
        // Back where the caller was: a raw fchdir, so the directory the walk remembered
        // (its callback's relative opens) must be forgotten.
        let _ = crate::cwd::moving(|| rustix::process::fchdir(&start));
        drop(start);
        ffi::set_errno(e);
    }
    result
}

pub mod symbols {
    use super::*;

    /// # Safety
    /// C `glob`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn glob(
        pattern: *const c_char,
        flags: c_int,
        errfunc: ErrFn,
        pglob: *mut libc::glob_t,
    ) -> c_int {
        // SAFETY: the caller's arguments (GlobT is glob_t's glibc layout).
        unsafe { glob_common(c"glob", &REAL_GLOB, pattern, flags, errfunc, pglob.cast()) }
    }

    /// # Safety
    /// C `glob64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn glob64(
        pattern: *const c_char,
        flags: c_int,
        errfunc: ErrFn,
        pglob: *mut libc::glob64_t,
    ) -> c_int {
        // SAFETY: as above.
        unsafe { glob_common(c"glob64", &REAL_GLOB64, pattern, flags, errfunc, pglob.cast()) }
    }

    /// # Safety
    /// C `scandir`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn scandir(
        dir: *const c_char,
        namelist: *mut *mut *mut libc::dirent64,
        filter: FilterFn,
        compar: ComparFn,
    ) -> c_int {
        // SAFETY: the caller's arguments (dirent is dirent64 on LP64).
        unsafe { scandir_common(Dir::Cwd, dir, namelist, filter, compar) }
    }

    /// # Safety
    /// C `scandir64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn scandir64(
        dir: *const c_char,
        namelist: *mut *mut *mut libc::dirent64,
        filter: FilterFn,
        compar: ComparFn,
    ) -> c_int {
        // SAFETY: as above.
        unsafe { scandir_common(Dir::Cwd, dir, namelist, filter, compar) }
    }

    /// # Safety
    /// C `scandirat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn scandirat(
        dfd: c_int,
        dir: *const c_char,
        namelist: *mut *mut *mut libc::dirent64,
        filter: FilterFn,
        compar: ComparFn,
    ) -> c_int {
        // SAFETY: as above.
        unsafe { scandir_common(Dir::from_raw(dfd), dir, namelist, filter, compar) }
    }

    /// # Safety
    /// C `scandirat64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn scandirat64(
        dfd: c_int,
        dir: *const c_char,
        namelist: *mut *mut *mut libc::dirent64,
        filter: FilterFn,
        compar: ComparFn,
    ) -> c_int {
        // SAFETY: as above.
        unsafe { scandir_common(Dir::from_raw(dfd), dir, namelist, filter, compar) }
    }

    /// # Safety
    /// C `nftw`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn nftw(
        path: *const c_char,
        func: NftwFn,
        descriptors: c_int,
        flags: c_int,
    ) -> c_int {
        // SAFETY: the caller's arguments.
        unsafe { nftw_common(path, func, descriptors, flags) }
    }

    /// # Safety
    /// C `nftw64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn nftw64(
        path: *const c_char,
        func: NftwFn,
        descriptors: c_int,
        flags: c_int,
    ) -> c_int {
        // SAFETY: the caller's arguments (stat is stat64 on LP64).
        unsafe { nftw_common(path, func, descriptors, flags) }
    }

    /// # Safety
    /// C `ftw`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn ftw(path: *const c_char, func: FtwFn, descriptors: c_int) -> c_int {
        // SAFETY: the caller's arguments.
        unsafe { ftw_startup(path, Func::Ftw(func), descriptors, 0) }
    }

    /// # Safety
    /// C `ftw64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn ftw64(path: *const c_char, func: FtwFn, descriptors: c_int) -> c_int {
        // SAFETY: the caller's arguments.
        unsafe { ftw_startup(path, Func::Ftw(func), descriptors, 0) }
    }
}

/// # Safety
/// C `nftw` contract.
unsafe fn nftw_common(path: *const c_char, func: NftwFn, descriptors: c_int, flags: c_int) -> c_int {
    // glibc's current nftw (GLIBC_2.3.3) rejects flags it does not know.
    if flags & !(FTW_PHYS | FTW_MOUNT | FTW_CHDIR | FTW_DEPTH | FTW_ACTIONRETVAL) != 0 {
        ffi::set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: per the contract.
    unsafe { ftw_startup(path, Func::Nftw(func), descriptors, flags) }
}
