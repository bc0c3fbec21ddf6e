//! The directory a relative path starts from, named as an absolute path: the working
//! directory (`getcwd`) or an `openat` descriptor (`/proc/self/fd/N`).
//!
//! The working directory comes from [`crate::cwd`]: remembered when no tenant can move it,
//! else asked of the kernel (`getcwd`) on every relative open — a remembered tenant-owned
//! one could go stale by a rename we never see, and a stale "outside every root" would pass
//! a tenant's symlink unjudged (tests/tests/cwd.rs).
//!
//! When it cannot be named — deleted, or deeper than `PATH_MAX` — the guard must not invent
//! a refusal for a path that is under no root: it climbs (`..`, one `O_PATH` descriptor at a
//! time) to the first ancestor it can name, and passes the open through untouched if no root
//! can lie below that ancestor.

use core::fmt::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::fmtbuf::FmtBuf;
use crate::guard::Dir;

/// Why a relative path's base directory has no name in the buffer given.
pub enum BaseDir {
    /// The kernel would refuse the open itself (`EBADF`, `ENOTDIR`): this is its answer.
    Kernel(Errno),
    /// Longer than the buffer (retry with a bigger one).
    TooLong,
    /// A directory that cannot be named at all (deleted, deeper than `PATH_MAX`).
    Unnamed,
}

/// The absolute path of the directory a relative path starts from, in `buf`.
pub fn dir_path(dir: Dir, buf: &mut [u8]) -> Result<&[u8], BaseDir> {
    match dir {
        Dir::Cwd => crate::cwd::path(buf).map_err(|e| match e {
            libc::ERANGE => BaseDir::TooLong,
            _ => BaseDir::Unnamed,
        }),
        Dir::Fd(fd) if fd < 0 => Err(BaseDir::Kernel(Errno::BADF)),
        Dir::Fd(fd) => fd_path(fd, buf),
    }
}

/// The path of descriptor `fd` (`/proc/thread-self/fd/N`: right in any thread, even once
/// the main thread has exited), checked to be a live directory first, with `fstat` on the
/// descriptor itself (no `/proc` needed to tell `EBADF` or `ENOTDIR`).
fn fd_path(fd: i32, buf: &mut [u8]) -> Result<&[u8], BaseDir> {
    let st = Dir::Fd(fd)
        .borrowed(|d| rustix::fs::fstat(d))
        .map_err(BaseDir::Kernel)?;
    // A relative open from anything but a directory (a pipe, a file) is ENOTDIR.
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(BaseDir::Kernel(Errno::NOTDIR));
    }
    // Deleted: the link reads "/old/path (deleted)", which names nothing.
    if st.st_nlink == 0 {
        return Err(BaseDir::Unnamed);
    }
    let mut link = FmtBuf::<40>::new();
    let _ = write!(link, "/proc/thread-self/fd/{fd}");
    let link = link.as_cstr().ok_or(BaseDir::Unnamed)?;
    match rustix::fs::readlinkat_raw(CWD, link, &mut *buf) {
        Ok(n) if n < buf.len() && buf.first() == Some(&b'/') => Ok(&buf[..n]),
        Ok(n) if n >= buf.len() => Err(BaseDir::TooLong),
        // Deeper than PATH_MAX (ENAMETOOLONG), or not a path we can judge.
        _ => Err(BaseDir::Unnamed),
    }
}

/// For a base directory that cannot be named: the nearest ancestor that can (its path in
/// `buf`), or `None` if none can.
pub fn named_ancestor(dir: Dir, buf: &mut [u8]) -> Result<Option<&[u8]>, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut cur: OwnedFd = dir.borrowed(|d| rustix::fs::openat(d, c".", flags, Mode::empty()))?;
    // Bounded: each step climbs one level, and no path has PATH_MAX levels.
    for _ in 0..toctou_policy::PATH_MAX {
        cur = match rustix::fs::openat(&cur, c"..", flags, Mode::empty()) {
            Ok(up) => up,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        match fd_path(cur.as_fd().as_raw_fd(), buf).map(<[u8]>::len) {
            Ok(n) => return Ok(Some(&buf[..n])),
            Err(BaseDir::Kernel(_)) => return Ok(None),
            Err(BaseDir::TooLong | BaseDir::Unnamed) => {}
        }
    }
    Ok(None)
}

/// Is the base directory deleted (its link count 0)? Then a relative open through it finds
/// nothing but the directory itself.
pub fn is_deleted(dir: Dir) -> bool {
    dir.borrowed(|d| rustix::fs::fstat(d))
        .is_ok_and(|st| st.st_nlink == 0)
}
