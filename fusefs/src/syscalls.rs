//! Every system call the daemon makes on SOURCE, one wrapper each.
//!
//! The short names are the safe ones: [`open_child`] never follows a symlink and never
//! leaves the directory it is given (one component, `O_NOFOLLOW`, names with `/` refused).
//! Following a link is done by `resolve.rs`, one hop at a time, on top of these.
//! This is the only module allowed to contain `unsafe`.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};

/// Is `name` one plain directory entry name (not empty, `.`, `..`, no `/`, no NUL)?
pub fn is_plain_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// Open one entry of `dir` as an `O_PATH` handle, never following a symlink: a symlink
/// gives a handle on the link itself. The handle pins the object (its inode cannot be
/// reused while it is held) and is what every later decision and read is made on.
pub fn open_child(dir: impl AsFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    if !is_plain_name(name.as_bytes()) {
        return Err(Errno::EINVAL);
    }
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The parent directory of the directory `dir`, as it is on disk now (`..` is never a
/// symlink), as an `O_PATH` handle.
pub fn open_parent(dir: impl AsFd) -> Result<OwnedFd, Errno> {
    nix::fcntl::openat(
        dir,
        "..",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Open the operator-given SOURCE directory (the operator's path may contain symlinks;
/// nothing below it is ever opened by path again).
pub fn open_source(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

pub fn fstat(fd: impl AsFd) -> Result<FileStat, Errno> {
    nix::sys::stat::fstat(fd)
}

/// The target of the symlink `fd` (an `O_PATH|O_NOFOLLOW` handle on the link itself).
pub fn readlink_fd(fd: impl AsFd) -> Result<Vec<u8>, Errno> {
    nix::fcntl::readlinkat(fd, "").map(|s| s.as_bytes().to_vec())
}

/// The magic link naming the object behind `fd`.
fn proc_fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Open the very object `fd` holds with real access `flags` (`O_RDONLY`, `O_RDWR`).
/// Goes through `/proc/self/fd/N`, which names the held inode, not a path that could be
/// swapped: the result is the object that was checked.
pub fn reopen(fd: &OwnedFd, flags: OFlag) -> Result<OwnedFd, Errno> {
    let flags = flags & (OFlag::O_ACCMODE | OFlag::O_APPEND | OFlag::O_NOATIME);
    nix::fcntl::open(
        proc_fd_path(fd).as_str(),
        flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .or_else(|e| {
        // O_NOATIME is refused for files we do not own when not root.
        if e == Errno::EPERM && flags.contains(OFlag::O_NOATIME) {
            reopen(fd, flags - OFlag::O_NOATIME)
        } else {
            Err(e)
        }
    })
}

/// Open the directory `fd` holds for reading its entries.
pub fn open_dir_for_read(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    nix::fcntl::openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

pub fn pread(fd: impl AsFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    nix::sys::uio::pread(fd, buf, off)
}

pub fn pwrite(fd: impl AsFd, buf: &[u8], offset: u64) -> Result<usize, Errno> {
    let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    nix::sys::uio::pwrite(fd, buf, off)
}

/// Fill `buf` with `linux_dirent64` records starting at directory offset `offset`.
/// Returns the number of bytes filled (0 at the end).
pub fn getdents(dir: &OwnedFd, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    nix::unistd::lseek(dir, off, nix::unistd::Whence::SeekSet)?;
    // SAFETY: `dir` is an open directory fd for the duration of the call; `buf` is a valid,
    // writable region of `buf.len()` bytes that the kernel fills with at most that many bytes.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    Errno::result(n).map(|n| n as usize)
}

/// One parsed `linux_dirent64` record.
pub struct RawDirent<'a> {
    pub ino: u64,
    pub next_off: u64,
    pub d_type: u8,
    pub name: &'a [u8],
}

/// Parse the records `getdents` wrote into `buf[..len]` (no `unsafe`: plain byte decoding).
pub fn parse_dirents(buf: &[u8]) -> impl Iterator<Item = RawDirent<'_>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rec = buf.get(pos..pos + 19)?;
        let ino = u64::from_ne_bytes(rec[0..8].try_into().ok()?);
        let next_off = i64::from_ne_bytes(rec[8..16].try_into().ok()?) as u64;
        let reclen = u16::from_ne_bytes(rec[16..18].try_into().ok()?) as usize;
        let d_type = rec[18];
        let name_area = buf.get(pos + 19..pos + reclen)?;
        let name_len = name_area.iter().position(|&b| b == 0).unwrap_or(name_area.len());
        if reclen == 0 {
            return None;
        }
        pos += reclen;
        Some(RawDirent {
            ino,
            next_off,
            d_type,
            name: &name_area[..name_len],
        })
    })
}

pub fn fchmod_held(fd: &OwnedFd, mode: u32) -> Result<(), Errno> {
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        proc_fd_path(fd).as_str(),
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
}

pub fn fchown_held(fd: &OwnedFd, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
    nix::unistd::fchownat(
        fd,
        "",
        uid.map(nix::unistd::Uid::from_raw),
        gid.map(nix::unistd::Gid::from_raw),
        AtFlags::AT_EMPTY_PATH,
    )
}

pub fn utimens_held(
    fd: &OwnedFd,
    atime: &nix::sys::time::TimeSpec,
    mtime: &nix::sys::time::TimeSpec,
) -> Result<(), Errno> {
    nix::sys::stat::utimensat(
        fd,
        "",
        atime,
        mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .or_else(|e| {
        if e == Errno::ENOENT || e == Errno::EINVAL {
            // Older kernels: utimensat(fd, "", AT_EMPTY_PATH) is not available.
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                proc_fd_path(fd).as_str(),
                atime,
                mtime,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )
        } else {
            Err(e)
        }
    })
}

/// `proc_fd_path` as a C string (no interior NUL possible: digits only).
fn proc_fd_cpath(fd: &impl AsRawFd) -> std::ffi::CString {
    std::ffi::CString::new(proc_fd_path(fd)).unwrap_or_default()
}

fn xattr_name(name: &OsStr) -> Result<std::ffi::CString, Errno> {
    std::ffi::CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)
}

/// The extended attribute `name` of the object `fd` holds (an `O_PATH` handle works:
/// through `/proc/self/fd/N`, the held inode, never a path that could be swapped).
/// `size` 0 asks for the length only (returned as an empty vector's wanted length).
pub fn getxattr_held(fd: &OwnedFd, name: &OsStr, size: usize) -> Result<(usize, Vec<u8>), Errno> {
    let (path, name) = (proc_fd_cpath(fd), xattr_name(name)?);
    let mut buf = vec![0u8; size];
    // SAFETY: `path` and `name` are NUL-terminated strings alive for the call; `buf` is a
    // writable region of `buf.len()` bytes (a null-free empty Vec pointer with size 0 is
    // never written to).
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = Errno::result(n)? as usize;
    buf.truncate(n);
    Ok((n, buf))
}

/// The NUL-separated names of the extended attributes of the object `fd` holds.
pub fn listxattr_held(fd: &OwnedFd, size: usize) -> Result<(usize, Vec<u8>), Errno> {
    let path = proc_fd_cpath(fd);
    let mut buf = vec![0u8; size];
    // SAFETY: `path` is a NUL-terminated string alive for the call; `buf` is a writable
    // region of `buf.len()` bytes.
    let n = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = Errno::result(n)? as usize;
    buf.truncate(n);
    Ok((n, buf))
}

pub fn setxattr_held(fd: &OwnedFd, name: &OsStr, value: &[u8], flags: i32) -> Result<(), Errno> {
    let (path, name) = (proc_fd_cpath(fd), xattr_name(name)?);
    // SAFETY: `path` and `name` are NUL-terminated strings and `value` a readable region of
    // `value.len()` bytes, all alive for the call and only read by the kernel.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    Errno::result(r).map(drop)
}

pub fn removexattr_held(fd: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    let (path, name) = (proc_fd_cpath(fd), xattr_name(name)?);
    // SAFETY: `path` and `name` are NUL-terminated strings alive for the call.
    let r = unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) };
    Errno::result(r).map(drop)
}

/// Create a regular file `name` in `dir` (exclusively, never following a symlink).
pub fn create_child(dir: &OwnedFd, name: &OsStr, flags: OFlag, mode: u32) -> Result<OwnedFd, Errno> {
    if !is_plain_name(name.as_bytes()) {
        return Err(Errno::EINVAL);
    }
    let acc = flags & (OFlag::O_ACCMODE | OFlag::O_APPEND);
    nix::fcntl::openat(
        dir,
        name,
        acc | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
}

pub fn mkdir_child(dir: &OwnedFd, name: &OsStr, mode: u32) -> Result<(), Errno> {
    if !is_plain_name(name.as_bytes()) {
        return Err(Errno::EINVAL);
    }
    nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(mode))
}

/// Make a FIFO or socket node `name` in `dir` (`mode` holds the type and permissions).
pub fn mknod_child(dir: &OwnedFd, name: &OsStr, mode: u32) -> Result<(), Errno> {
    if !is_plain_name(name.as_bytes()) {
        return Err(Errno::EINVAL);
    }
    let kind = nix::sys::stat::SFlag::from_bits_truncate(mode & libc::S_IFMT);
    nix::sys::stat::mknodat(dir, name, kind, Mode::from_bits_truncate(mode), 0)
}

pub fn unlink_child(dir: &OwnedFd, name: &OsStr, is_dir: bool) -> Result<(), Errno> {
    if !is_plain_name(name.as_bytes()) {
        return Err(Errno::EINVAL);
    }
    let flag = if is_dir {
        nix::unistd::UnlinkatFlags::RemoveDir
    } else {
        nix::unistd::UnlinkatFlags::NoRemoveDir
    };
    nix::unistd::unlinkat(dir, name, flag)
}

pub fn rename_child(
    from: &OwnedFd,
    name: &OsStr,
    to: &OwnedFd,
    newname: &OsStr,
    flags: u32,
) -> Result<(), Errno> {
    if !is_plain_name(name.as_bytes()) || !is_plain_name(newname.as_bytes()) {
        return Err(Errno::EINVAL);
    }
    nix::fcntl::renameat2(
        from,
        name,
        to,
        newname,
        nix::fcntl::RenameFlags::from_bits_truncate(flags),
    )
}

/// Act as another user on this thread only: filesystem uid and gid and the supplementary
/// groups (Linux keeps all three per thread; glibc's `setgroups` would change every thread,
/// so the raw system call is used). A non-zero fsuid also drops CAP_DAC_OVERRIDE,
/// CAP_DAC_READ_SEARCH, CAP_FOWNER and CAP_CHOWN from the effective set, so the kernel
/// checks exactly what it would check for that user. Restored when the guard drops.
pub struct Creds {
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
}

/// Longest supplementary group list taken from a caller (the kernel's NGROUPS_MAX).
const MAX_GROUPS: usize = 65536;

fn thread_groups() -> Vec<libc::gid_t> {
    // SAFETY: a null pointer with size 0 only asks for the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut v = vec![0 as libc::gid_t; n.clamp(0, MAX_GROUPS as i32) as usize];
    // SAFETY: `v` is a writable buffer of `v.len()` gids; getgroups writes at most that.
    let got = unsafe { libc::getgroups(v.len() as libc::c_int, v.as_mut_ptr()) };
    v.truncate(got.max(0) as usize);
    v
}

fn set_thread_groups(groups: &[libc::gid_t]) -> Result<(), Errno> {
    // SAFETY: `groups` is a valid array of `groups.len()` gids, only read by the kernel;
    // SYS_setgroups changes the calling thread's credentials only.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    Errno::result(r).map(drop)
}

impl Creds {
    /// Become `uid`/`gid` with `groups` on this thread. Fails (nothing changed) if the
    /// group list cannot be set: the caller then must not go on as the daemon.
    pub fn assume(uid: u32, gid: u32, groups: &[u32]) -> Result<Creds, Errno> {
        let old_groups = thread_groups();
        set_thread_groups(&groups[..groups.len().min(MAX_GROUPS)])?;
        let old_gid = nix::unistd::setfsgid(nix::unistd::Gid::from_raw(gid));
        let old_uid = nix::unistd::setfsuid(nix::unistd::Uid::from_raw(uid));
        Ok(Creds {
            uid: old_uid.as_raw(),
            gid: old_gid.as_raw(),
            groups: old_groups,
        })
    }
}

impl Drop for Creds {
    fn drop(&mut self) {
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(self.uid));
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(self.gid));
        let _ = set_thread_groups(&self.groups);
    }
}

/// The supplementary groups of process `pid`, if its filesystem uid and gid are still
/// `uid` and `gid` (the pid of a request may have exited and been reused: then no groups,
/// which can only deny more).
pub fn groups_of(pid: u32, uid: u32, gid: u32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    // "Uid:\treal\teffective\tsaved\tfs"
    let fs_id = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u32>().ok())
    };
    if fs_id("Uid:") != Some(uid) || fs_id("Gid:") != Some(gid) {
        return Vec::new();
    }
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .take(MAX_GROUPS)
                .collect()
        })
        .unwrap_or_default()
}

/// Truncate the held object through a fresh non-blocking write open, never by path: a
/// path truncate waits for a tenant's file lease to break (up to lease-break-time, 45 s);
/// a non-blocking open fails with EWOULDBLOCK instead and starts the break.
pub fn truncate_held(fd: &OwnedFd, size: u64) -> Result<(), Errno> {
    let size = i64::try_from(size).map_err(|_| Errno::EINVAL)?;
    let w = reopen(fd, OFlag::O_WRONLY)?;
    nix::unistd::ftruncate(&w, size)
}

/// Raise the open-file limit to its hard maximum: the daemon holds one fd per known inode.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit struct read by the kernel.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    lim.rlim_cur
}

/// `fork()` before any thread exists (`--background`). Returns `Some(child pid)` in the
/// parent, `None` in the child.
pub fn fork_before_threads() -> Result<Option<i32>, Errno> {
    // SAFETY: called from `main` before any other thread is started, so the child is a
    // complete copy of a single-threaded process and may run arbitrary code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw())),
        nix::unistd::ForkResult::Child => Ok(None),
    }
}

pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}
