//! Path-based calls that create, replace, truncate or remove (item 5 of "The shim against a
//! real adversary"). `open(O_CREAT)` was already judged on the directory it creates in, but
//! `mkstemp`, `rename`, `truncate`, `unlink`, `link`, `symlink`, `mkdir`, `chmod`, `chown`...
//! are their own system calls: through a tenant's symlink to a victim's writable directory
//! they replaced, emptied and removed the victim's files. WebDAV (nginx `dav_methods`,
//! Apache `mod_dav_fs`) is made of exactly these calls.
//!
//! Two ways to judge, as for `open`:
//! - a call that acts on a *name* in a directory (create, remove, rename, link) opens the
//!   directory the name lies in (following whatever symlinks lead there), judges that
//!   directory object by its owner (in a sticky directory let through only for new names:
//!   an existing entry by the entry's own owner), then acts relative to it: the last name is
//!   never followed, and no later swap of the path can move the call elsewhere;
//! - a call that acts on an *object* (`chmod`, `chown`, `truncate`) opens it `O_PATH`,
//!   judges it like any open, then acts on that descriptor.
//!
//! Outside every root each call is the plain system call (or glibc's own function, for the
//! `mkstemp` family), so the results are libc's.

use core::ffi::{CStr, c_char, c_int, c_uint};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libc::{dev_t, gid_t, mode_t, off_t, uid_t};
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, RenameFlags, Uid};
use rustix::io::Errno;

use crate::ffi;
use crate::fmtbuf::FmtBuf;
use crate::guard::{self, Check, Dir, PathCall};
use crate::scratch;

/// Where a call on a name acts.
enum At<'a> {
    /// The caller's own directory and path, untouched (outside every root).
    Caller(Dir, &'a CStr),
    /// A directory the rule accepted, held open, and the last name in it.
    Held(OwnedFd, &'a CStr),
    /// An object the rule accepted, reached through its magic link (for `linkat` with
    /// `AT_SYMLINK_FOLLOW`, which follows it to the object itself).
    Object(OwnedFd),
}

impl At<'_> {
    fn with<R>(&self, f: impl FnOnce(BorrowedFd<'_>, &CStr) -> Result<R, Errno>) -> Result<R, Errno> {
        match self {
            At::Caller(dir, path) => dir.with(path, |d| f(d, path)),
            At::Held(fd, name) => f(fd.as_fd(), name),
            At::Object(fd) => with_magic_link(fd, |link| f(CWD, link)),
        }
    }
}

/// A path as a call names it: the directory it starts from and the path.
type PathArg<'a> = (Dir, &'a CStr);

/// What a call does with the name it acts on, and the other path of a two-path call (for the
/// kernel's own answers, which come before ours: see [`Role::kernel_refusal`]).
#[derive(Clone, Copy)]
enum Role<'a> {
    /// A new name: `mkdir`, `mknod`, `symlink`, `mkstemp`...
    Create,
    /// An existing entry removed: `unlink`, `rmdir`, `remove`.
    Remove,
    /// `rename`'s source; the target.
    RenameFrom(PathArg<'a>),
    /// `rename`'s target (replaced if it exists, unless `noreplace`); the source.
    RenameTo { from: PathArg<'a>, noreplace: bool },
    /// `link`'s source (given a new name); the target.
    LinkFrom(PathArg<'a>),
    /// `link`'s new name; the source, unless it is a descriptor or an object already judged.
    LinkTo(Option<PathArg<'a>>),
}

impl Role<'_> {
    /// Only a new name is made: nothing already there is removed or replaced.
    fn new_name(self) -> bool {
        matches!(
            self,
            Role::Create | Role::LinkTo(_) | Role::RenameTo { noreplace: true, .. }
        )
    }

    /// The call the rule refuses on the name `name` in `pdir` (`pst`): would the kernel
    /// refuse it too, with another errno? Its answer then, in the kernel's order (both
    /// parents looked up; `rename`: `EXDEV`, a missing source, `EEXIST`, the sticky bit;
    /// `link`: a missing source, `EEXIST`, `EXDEV`, `fs.protected_hardlinks`), so a call no
    /// guard could have let through fails as it does without one. Where the kernel would
    /// answer `EACCES` too, ours stands (and is logged).
    #[inline(never)] // rare: only on a refusal
    fn kernel_refusal(self, pdir: &OwnedFd, pst: &rustix::fs::Stat, name: &CStr) -> Option<Errno> {
        let own = entry(pdir, name);
        match self {
            Role::Create => own.ok().map(|_| Errno::EXIST),
            Role::Remove => match own {
                Err(e) => Some(e),
                Ok(est) => sticky_refusal(pdir, pst, &est),
            },
            Role::RenameFrom(to) => with_parent(to, |tdir, tname| {
                rename_refusal((pdir, pst, name), (tdir, tname), false)
            }),
            Role::RenameTo { from, noreplace } => with_parent(from, |fdir, fname| {
                let fst = rustix::fs::fstat(fdir).ok()?;
                rename_refusal((fdir, &fst, fname), (pdir, name), noreplace)
            }),
            Role::LinkFrom(to) => {
                let src = match own {
                    Err(e) => return Some(e),
                    Ok(st) => st,
                };
                with_parent(to, |tdir, tname| link_refusal(pdir, name, &src, tdir, tname))
            }
            Role::LinkTo(None) => own.ok().map(|_| Errno::EXIST),
            Role::LinkTo(Some(from)) => with_parent(from, |fdir, fname| {
                let src = match entry(fdir, fname) {
                    Err(e) => return Some(e),
                    Ok(st) => st,
                };
                link_refusal(fdir, fname, &src, pdir, name)
            }),
        }
    }
}

/// The entry `name` of `dir` itself (a symlink is not followed).
fn entry(dir: &OwnedFd, name: &CStr) -> Result<rustix::fs::Stat, Errno> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// The kernel's `rename` refusals before its permission checks (see `kernel_refusal`).
fn rename_refusal(
    from: (&OwnedFd, &rustix::fs::Stat, &CStr),
    to: (&OwnedFd, &CStr),
    noreplace: bool,
) -> Option<Errno> {
    let (fdir, fst, fname) = from;
    if mount_of(fdir) != mount_of(to.0) {
        return Some(Errno::XDEV);
    }
    let src = match entry(fdir, fname) {
        Err(e) => return Some(e),
        Ok(st) => st,
    };
    let dst = entry(to.0, to.1).ok();
    if noreplace && dst.is_some() {
        return Some(Errno::EXIST);
    }
    if !writable(fdir) {
        return None; // the kernel's EACCES, before it looks at the target
    }
    sticky_refusal(fdir, fst, &src).or_else(|| {
        let tst = rustix::fs::fstat(to.0).ok()?;
        dst.and_then(|d| sticky_refusal(to.0, &tst, &d))
    })
}

/// The kernel's `link` refusals before its permission checks (see `kernel_refusal`).
fn link_refusal(
    fdir: &OwnedFd,
    fname: &CStr,
    src: &rustix::fs::Stat,
    tdir: &OwnedFd,
    tname: &CStr,
) -> Option<Errno> {
    if entry(tdir, tname).is_ok() {
        return Some(Errno::EXIST);
    }
    if mount_of(fdir) != mount_of(tdir) {
        return Some(Errno::XDEV);
    }
    hardlink_refusal(src, || {
        rustix::fs::accessat(
            fdir,
            fname,
            rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
            AtFlags::EACCESS | AtFlags::SYMLINK_NOFOLLOW,
        )
        .is_ok()
    })
}

/// `fs.protected_hardlinks` (on by default): a process that is not root may only link a file
/// it owns, or a regular file (not set-id) it can read and write; never a directory (which
/// is `EPERM` either way).
fn hardlink_refusal(src: &rustix::fs::Stat, read_write: impl FnOnce() -> bool) -> Option<Errno> {
    let euid = rustix::process::geteuid();
    let regular = FileType::from_raw_mode(src.st_mode) == FileType::RegularFile;
    let setid = src.st_mode & libc::S_ISUID != 0
        || src.st_mode & (libc::S_ISGID | libc::S_IXGRP) == (libc::S_ISGID | libc::S_IXGRP);
    if FileType::from_raw_mode(src.st_mode) == FileType::Directory {
        return Some(Errno::PERM);
    }
    let may = euid.is_root() || src.st_uid == euid.as_raw() || (regular && !setid && read_write());
    (!may && protected_hardlinks()).then_some(Errno::PERM)
}

/// Is `fs.protected_hardlinks` on (as it is unless the file says `0`)?
fn protected_hardlinks() -> bool {
    let path = c"/proc/sys/fs/protected_hardlinks";
    let Ok(fd) = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
        return true;
    };
    let mut b = [0u8; 2];
    !matches!(rustix::io::read(&fd, &mut b), Ok(n) if n > 0 && b[0] == b'0')
}

/// The sticky bit: a process that is not root may only remove or replace an entry of a
/// sticky directory (`fd`, `dir`) that it or the directory's owner owns. The kernel checks
/// write permission on the directory first (its `EACCES` is ours too).
fn sticky_refusal(fd: &OwnedFd, dir: &rustix::fs::Stat, entry: &rustix::fs::Stat) -> Option<Errno> {
    let euid = rustix::process::geteuid();
    let refused = dir.st_mode & libc::S_ISVTX != 0
        && !euid.is_root()
        && entry.st_uid != euid.as_raw()
        && dir.st_uid != euid.as_raw()
        && writable(fd);
    refused.then_some(Errno::PERM)
}

/// May this process add and remove names in the directory `fd`?
fn writable(fd: &OwnedFd) -> bool {
    let wx = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
    rustix::fs::accessat(fd, c".", wx, AtFlags::EACCESS).is_ok()
}

/// The mount a descriptor's object is on (`EXDEV` is per mount, not per file system).
fn mount_of(fd: &OwnedFd) -> Option<u64> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, rustix::fs::StatxFlags::MNT_ID)
        .ok()
        .map(|s| s.stx_mnt_id)
}

/// `path` split into the directory its last name lies in and that name (trailing slashes
/// kept); `None` for `/` itself.
fn split_last(path: &CStr) -> Option<(&[u8], &CStr)> {
    let bytes = path.to_bytes_with_nul();
    let body = &bytes[..bytes.len() - 1];
    let end = body.iter().rposition(|&b| b != b'/')?;
    let slash = body[..end].iter().rposition(|&b| b == b'/');
    let name = CStr::from_bytes_with_nul(&bytes[slash.map_or(0, |i| i + 1)..]).ok()?;
    let parent: &[u8] = match slash {
        None => b".",
        Some(0) => b"/",
        Some(i) => &body[..i],
    };
    Some((parent, name))
}

/// Open the directory `parent` (relative to `dir`), following symlinks, as `O_PATH`.
fn open_dir(dir: Dir, parent: &[u8]) -> Result<OwnedFd, Errno> {
    scratch::with_cstr(parent, |p| {
        dir.with(p, |d| rustix::fs::openat(d, p, guard::dir_flags(), Mode::empty()))
    })
}

/// `f` on the (unjudged) directory the last name of `path` lies in, and that name: for the
/// kernel's answers only. The lookup's own error is the kernel's answer.
fn with_parent(path: PathArg<'_>, f: impl FnOnce(&OwnedFd, &CStr) -> Option<Errno>) -> Option<Errno> {
    let (parent, name) = split_last(path.1)?;
    match open_dir(path.0, parent) {
        Ok(d) => f(&d, name),
        Err(e) => Some(e),
    }
}

/// The directory a name lies in, judged (see the module comment).
struct ParentOf<'a> {
    dir: Dir,
    path: &'a CStr,
    role: Role<'a>,
}

impl<'a> PathCall for ParentOf<'a> {
    type Out = At<'a>;

    fn dir(&self) -> Dir {
        self.dir
    }

    fn path(&self) -> &CStr {
        self.path
    }

    fn raw(&self) -> Result<At<'a>, Errno> {
        Ok(At::Caller(self.dir, self.path))
    }

    fn judged(&self, check: &Check<'_>) -> Result<At<'a>, Errno> {
        // The last name keeps its trailing slashes: the kernel then gives the answers it
        // gives for `dir/` (ENOTDIR for a file, and so on), relative to the held directory.
        let Some((parent, name)) = split_last(self.path) else {
            return Ok(At::Caller(self.dir, self.path)); // "/" itself: names no tenant object
        };
        let pdir = open_dir(self.dir, parent)?;
        let pst = rustix::fs::fstat(&pdir)?;
        let kernel = || self.role.kernel_refusal(&pdir, &pst, name);
        if self.role.new_name() {
            check.create_verdict(pdir.as_fd(), &pst, kernel)?;
        } else {
            check.entry_verdict(pdir.as_fd(), &pst, name, kernel)?;
        }
        Ok(At::Held(pdir, name))
    }
}

fn parent_of<'a>(dir: Dir, path: &'a CStr, role: Role<'a>) -> Result<At<'a>, Errno> {
    guard::run(&ParentOf { dir, path, role })
}

/// The object `linkat(..., AT_SYMLINK_FOLLOW)` links: judged like an open of it.
struct FollowedObject<'a> {
    dir: Dir,
    path: &'a CStr,
    /// The new name (for the kernel's answers).
    to: PathArg<'a>,
}

impl<'a> PathCall for FollowedObject<'a> {
    type Out = At<'a>;

    fn dir(&self) -> Dir {
        self.dir
    }

    fn path(&self) -> &CStr {
        self.path
    }

    fn raw(&self) -> Result<At<'a>, Errno> {
        Ok(At::Caller(self.dir, self.path))
    }

    fn judged(&self, check: &Check<'_>) -> Result<At<'a>, Errno> {
        // A new name for the object: judged as a change to it.
        let fd = open_path(self.dir, self.path, true)?;
        let st = rustix::fs::fstat(&fd)?;
        // Refused: the kernel's own `link` refusals first (see `Role::kernel_refusal`).
        let kernel = || {
            with_parent(self.to, |tdir, tname| {
                if entry(tdir, tname).is_ok() {
                    return Some(Errno::EXIST);
                }
                if mount_of(&fd) != mount_of(tdir) {
                    return Some(Errno::XDEV);
                }
                hardlink_refusal(&st, || {
                    let rw = rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK;
                    with_magic_link(&fd, |l| rustix::fs::accessat(CWD, l, rw, AtFlags::EACCESS)).is_ok()
                })
            })
        };
        check.write_verdict_or(fd.as_fd(), &st, kernel)?;
        Ok(At::Object(fd))
    }
}

fn open_path(dir: Dir, path: &CStr, follow: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    dir.with(path, |d| rustix::fs::openat(d, path, flags, Mode::empty()))
}

/// Run `f` on `/proc/thread-self/fd/N`: a path to the very object `fd` holds, with no
/// lookup a tenant could race.
fn with_magic_link<R>(fd: &OwnedFd, f: impl FnOnce(&CStr) -> Result<R, Errno>) -> Result<R, Errno> {
    let mut link = FmtBuf::<40>::new();
    let _ = core::fmt::Write::write_fmt(&mut link, format_args!("/proc/thread-self/fd/{}", fd.as_raw_fd()));
    f(link.as_cstr().ok_or(Errno::INVAL)?)
}

/// What a call on an object does.
#[derive(Clone, Copy)]
enum ObjectOp {
    /// `fchmodat`; `nofollow` is glibc's `AT_SYMLINK_NOFOLLOW` emulation (no kernel flag).
    Chmod {
        mode: Mode,
        nofollow: bool,
    },
    Chown {
        owner: Option<Uid>,
        group: Option<Gid>,
        nofollow: bool,
    },
    Truncate(u64),
}

struct OnObject<'a> {
    dir: Dir,
    path: &'a CStr,
    op: ObjectOp,
}

impl OnObject<'_> {
    fn follows(&self) -> bool {
        match self.op {
            ObjectOp::Chmod { nofollow, .. } | ObjectOp::Chown { nofollow, .. } => !nofollow,
            ObjectOp::Truncate(_) => true,
        }
    }

    /// The rule refuses the call on an object (`st`): the kernel's own answer if it would
    /// refuse it with another errno (`chmod`/`chown` of a file not ours: `EPERM`; `truncate`
    /// of a directory: `EISDIR`, of any other non-file: `EINVAL`).
    #[inline(never)] // rare: only on a refusal
    fn kernel_refusal(&self, st: &rustix::fs::Stat) -> Option<Errno> {
        let euid = rustix::process::geteuid();
        let not_ours = !euid.is_root() && st.st_uid != euid.as_raw();
        match self.op {
            ObjectOp::Chmod { .. } => not_ours.then_some(Errno::PERM),
            // Changing nothing (-1, -1) is allowed to anyone who can reach the file.
            ObjectOp::Chown {
                owner: None,
                group: None,
                ..
            } => None,
            ObjectOp::Chown { owner, .. } => {
                let gives_away = owner.is_some_and(|o| o.as_raw() != st.st_uid);
                (not_ours || (!euid.is_root() && gives_away)).then_some(Errno::PERM)
            }
            ObjectOp::Truncate(_) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => None,
                FileType::Directory => Some(Errno::ISDIR),
                _ => Some(Errno::INVAL),
            },
        }
    }

    /// The call on the object `fd` holds (`O_PATH`, opened as `follows()` says).
    fn on_fd(&self, fd: &OwnedFd) -> Result<(), Errno> {
        match self.op {
            // glibc: a symlink's mode cannot be changed on Linux (EOPNOTSUPP), and a chmod
            // through the magic link answering ENOENT means the same.
            ObjectOp::Chmod { mode, nofollow } => {
                if nofollow && FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode) == FileType::Symlink {
                    return Err(Errno::OPNOTSUPP);
                }
                match with_magic_link(fd, |l| rustix::fs::chmodat(CWD, l, mode, AtFlags::empty())) {
                    Err(Errno::NOENT) if nofollow => Err(Errno::OPNOTSUPP),
                    r => r,
                }
            }
            ObjectOp::Chown { owner, group, .. } => {
                rustix::fs::chownat(fd, c"", owner, group, AtFlags::EMPTY_PATH)
            }
            ObjectOp::Truncate(len) => with_magic_link(fd, |l| truncate_path(l, len)),
        }
    }
}

impl PathCall for OnObject<'_> {
    type Out = ();

    fn dir(&self) -> Dir {
        self.dir
    }

    fn path(&self) -> &CStr {
        self.path
    }

    fn raw(&self) -> Result<(), Errno> {
        match self.op {
            ObjectOp::Chmod {
                mode,
                nofollow: false,
            } => self.dir.with(self.path, |d| {
                rustix::fs::chmodat(d, self.path, mode, AtFlags::empty())
            }),
            ObjectOp::Chmod { nofollow: true, .. } => self.on_fd(&open_path(self.dir, self.path, false)?),
            ObjectOp::Chown {
                owner,
                group,
                nofollow,
            } => {
                let flags = if nofollow {
                    AtFlags::SYMLINK_NOFOLLOW
                } else {
                    AtFlags::empty()
                };
                self.dir.with(self.path, |d| {
                    rustix::fs::chownat(d, self.path, owner, group, flags)
                })
            }
            ObjectOp::Truncate(len) => self.dir.with(self.path, |_| truncate_path(self.path, len)),
        }
    }

    fn judged(&self, check: &Check<'_>) -> Result<(), Errno> {
        let fd = open_path(self.dir, self.path, self.follows())?;
        let st = rustix::fs::fstat(&fd)?;
        check.write_verdict_or(fd.as_fd(), &st, || self.kernel_refusal(&st))?;
        self.on_fd(&fd)
    }
}

fn truncate_path(path: &CStr, len: u64) -> Result<(), Errno> {
    // SAFETY: a NUL-terminated path and a length, as truncate(2) takes them; the raw system
    // call, because libc's `truncate` is our own hook.
    let r = unsafe { libc::syscall(libc::SYS_truncate, path.as_ptr(), len as libc::c_long) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(ffi::errno()))
    }
}

fn rename(od: Dir, old: &CStr, nd: Dir, new: &CStr, flags: c_uint) -> Result<(), Errno> {
    let noreplace = flags & libc::RENAME_NOREPLACE != 0;
    let from = parent_of(od, old, Role::RenameFrom((nd, new)))?;
    let to = parent_of(
        nd,
        new,
        Role::RenameTo {
            from: (od, old),
            noreplace,
        },
    )?;
    from.with(|f, fname| {
        to.with(|t, tname| match flags {
            0 => rustix::fs::renameat(f, fname, t, tname),
            _ => rustix::fs::renameat_with(f, fname, t, tname, RenameFlags::from_bits_retain(flags)),
        })
    })
}

fn unlink(dir: Dir, path: &CStr, flags: AtFlags) -> Result<(), Errno> {
    parent_of(dir, path, Role::Remove)?.with(|d, name| rustix::fs::unlinkat(d, name, flags))
}

/// glibc's `remove`: unlink, and rmdir what turns out to be a directory.
fn remove(path: &CStr) -> Result<(), Errno> {
    let at = parent_of(Dir::Cwd, path, Role::Remove)?;
    at.with(|d, name| match rustix::fs::unlinkat(d, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => rustix::fs::unlinkat(d, name, AtFlags::REMOVEDIR),
        r => r,
    })
}

fn mknod(dir: Dir, path: &CStr, mode: mode_t, dev: dev_t) -> Result<(), Errno> {
    // glibc: the kernel's device number is 32 bits; a wider one is EINVAL, not truncated.
    let kdev = dev as c_uint;
    if dev_t::from(kdev) != dev {
        return Err(Errno::INVAL);
    }
    parent_of(dir, path, Role::Create)?.with(|d, name| {
        // SAFETY: mknodat(2) with a descriptor, a NUL-terminated name and plain integers; raw,
        // because the mode's type bits must reach the kernel exactly as given.
        let r = unsafe { libc::syscall(libc::SYS_mknodat, d.as_raw_fd(), name.as_ptr(), mode, kdev) };
        if r == 0 {
            Ok(())
        } else {
            Err(Errno::from_raw_os_error(ffi::errno()))
        }
    })
}

fn link(od: Dir, old: &CStr, nd: Dir, new: &CStr, flags: c_int) -> Result<(), Errno> {
    let flags = AtFlags::from_bits_retain(flags as u32);
    let to_new = |from: &At<'_>, source: Option<PathArg<'_>>| {
        let to = parent_of(nd, new, Role::LinkTo(source))?;
        from.with(|f, fname| to.with(|t, tname| rustix::fs::linkat(f, fname, t, tname, flags)))
    };
    if old.is_empty() && flags.contains(AtFlags::EMPTY_PATH) {
        // The object is the descriptor itself, which the process already holds.
        let to = parent_of(nd, new, Role::LinkTo(None))?;
        return od.borrowed(|f| to.with(|t, tname| rustix::fs::linkat(f, c"", t, tname, flags)));
    }
    if flags.contains(AtFlags::SYMLINK_FOLLOW) {
        let object = guard::run(&FollowedObject {
            dir: od,
            path: old,
            to: (nd, new),
        })?;
        return to_new(&object, None);
    }
    to_new(&parent_of(od, old, Role::LinkFrom((nd, new)))?, Some((od, old)))
}

/// `chown`/`lchown`/`fchownat`: -1 leaves an id unchanged.
fn chown(dir: Dir, path: &CStr, owner: uid_t, group: gid_t, flags: c_int) -> Result<(), Errno> {
    let owner = (owner != uid_t::MAX).then(|| Uid::from_raw(owner));
    let group = (group != gid_t::MAX).then(|| Gid::from_raw(group));
    let at = AtFlags::from_bits_retain(flags as u32);
    if path.is_empty() && at.contains(AtFlags::EMPTY_PATH) {
        return dir.borrowed(|d| rustix::fs::chownat(d, c"", owner, group, at));
    }
    if !(at - AtFlags::SYMLINK_NOFOLLOW - AtFlags::EMPTY_PATH).is_empty() {
        return Err(Errno::INVAL);
    }
    let op = ObjectOp::Chown {
        owner,
        group,
        nofollow: at.contains(AtFlags::SYMLINK_NOFOLLOW),
    };
    guard::run(&OnObject { dir, path, op })
}

fn chmod(dir: Dir, path: &CStr, mode: mode_t, flags: c_int) -> Result<(), Errno> {
    if flags & !libc::AT_SYMLINK_NOFOLLOW != 0 {
        return Err(Errno::INVAL); // glibc checks the flags first
    }
    let op = ObjectOp::Chmod {
        mode: Mode::from_raw_mode(mode),
        nofollow: flags & libc::AT_SYMLINK_NOFOLLOW != 0,
    };
    guard::run(&OnObject { dir, path, op })
}

fn truncate(path: &CStr, len: i64) -> Result<(), Errno> {
    let len = u64::try_from(len).map_err(|_| Errno::INVAL)?; // the kernel's first check
    guard::run(&OnObject {
        dir: Dir::Cwd,
        path,
        op: ObjectOp::Truncate(len),
    })
}

/// What `mkstemp` and friends make.
#[derive(Clone, Copy)]
enum Temp {
    File(OFlags),
    Dir,
}

/// glibc's `__gen_tempname` attempt count: 62³ names before giving up with EEXIST.
const TEMP_ATTEMPTS: u32 = 62 * 62 * 62;
const TEMP_LETTERS: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// 64 random bits for one name, as glibc's `__gen_tempname` gets them: `getrandom` without
/// blocking (before the entropy pool is ready it would block, and a signal would then fail
/// `mkstemp` with EINTR, which glibc never does); failing that, the clocks mixed into the
/// previous value (glibc's `random_bits`). `O_EXCL` makes a guessed name harmless.
fn temp_bits(prev: u64) -> u64 {
    let mut b = [0u8; 8];
    for _ in 0..4 {
        match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::NONBLOCK) {
            Ok(8) => return u64::from_ne_bytes(b),
            Err(Errno::INTR) => continue,
            _ => break,
        }
    }
    let mix = |r: u64, s: u64| r.wrapping_mul(2862933555777941757).wrapping_add(3037000493) ^ s;
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let s = mix(mix(prev, now.tv_sec as u64), now.tv_nsec as u64);
    mix(
        s,
        (cpu.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(cpu.tv_nsec as u64),
    )
}

/// What `make_temp` did.
enum Made {
    /// The template lies outside every root: glibc's own function should make it.
    Outside,
    File(OwnedFd),
    Dir,
}

/// `mkstemp` and friends in a held directory: the `XXXXXX` before the suffix are replaced in
/// the caller's template until a new name is made (`O_EXCL`/`mkdirat`: nothing followed).
///
/// # Safety
/// `tmpl` is NULL or a writable NUL-terminated string (the `mkstemp` contract).
unsafe fn make_temp(tmpl: *mut c_char, suffixlen: c_int, kind: Temp) -> Result<Made, Errno> {
    // SAFETY: per the contract.
    let path = unsafe { ffi::cstr(tmpl) }.ok_or(Errno::FAULT)?;
    let len = path.to_bytes().len();
    let suffix = usize::try_from(suffixlen).map_err(|_| Errno::INVAL)?;
    if len < 6 + suffix || &path.to_bytes()[len - 6 - suffix..len - suffix] != b"XXXXXX" {
        return Err(Errno::INVAL);
    }
    // SAFETY: the template is writable for `len + 1` bytes (the contract), and nothing else
    // refers to it any more (`path` is not used past this point).
    let buf = unsafe { core::slice::from_raw_parts_mut(tmpl.cast::<u8>(), len + 1) };
    let xs = len - 6 - suffix..len - suffix;
    let mut bits = 0u64;
    for _ in 0..TEMP_ATTEMPTS {
        // As glibc: the template is rewritten first, whatever happens next.
        bits = temp_bits(bits);
        let mut v = bits;
        for c in &mut buf[xs.clone()] {
            let n = TEMP_LETTERS.len() as u64;
            *c = TEMP_LETTERS[(v % n) as usize];
            v /= n; // 62^6 < 2^36: six letters from one value
        }
        // Judged again for each name: the `X`s may lie in a directory of the template
        // (`d/XXXXXX/f` with a suffix of 2), and then each try names another directory.
        let path = CStr::from_bytes_with_nul(buf).map_err(|_| Errno::INVAL)?;
        let (pdir, name_start) = match parent_of(Dir::Cwd, path, Role::Create)? {
            At::Held(pdir, name) => (pdir, len - name.to_bytes().len()),
            At::Caller(..) | At::Object(_) => {
                // glibc's own function wants its `X`s back.
                buf[xs].copy_from_slice(b"XXXXXX");
                return Ok(Made::Outside);
            }
        };
        let name = CStr::from_bytes_with_nul(&buf[name_start..]).map_err(|_| Errno::INVAL)?;
        let made = match kind {
            Temp::File(flags) => {
                let create = (flags - OFlags::ACCMODE) | OFlags::RDWR | OFlags::CREATE | OFlags::EXCL;
                match rustix::fs::openat(&pdir, name, create, Mode::RUSR | Mode::WUSR) {
                    // The caller's descriptor gets the number a plain mkstemp would have.
                    Ok(fd) => return Ok(Made::File(guard::lowest(fd, [pdir], flags))),
                    Err(e) => e,
                }
            }
            Temp::Dir => match rustix::fs::mkdirat(&pdir, name, Mode::RWXU) {
                Ok(()) => return Ok(Made::Dir),
                Err(e) => e,
            },
        };
        if made != Errno::EXIST {
            return Err(made);
        }
    }
    Err(Errno::EXIST)
}

fn status(r: Result<(), Errno>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => ffi::fail(e, -1),
    }
}

/// One C path argument: `Err(EFAULT)` for NULL, as the kernel answers.
///
/// # Safety
/// `p` is NULL or NUL-terminated.
unsafe fn arg<'a>(p: *const c_char) -> Result<&'a CStr, Errno> {
    // SAFETY: per the contract.
    unsafe { ffi::cstr(p) }.ok_or(Errno::FAULT)
}

type MkstempFn = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type MkdtempFn = unsafe extern "C" fn(*mut c_char) -> *mut c_char;
static REAL_MKOSTEMPS: core::sync::atomic::AtomicPtr<libc::c_void> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
static REAL_MKDTEMP: core::sync::atomic::AtomicPtr<libc::c_void> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Look glibc's functions up before `main` (a first call could come in a child forked from a
/// threaded parent, where `dlsym` may find a lock held).
pub fn resolve() {
    let _ = ffi::next_symbol(c"mkostemps", &REAL_MKOSTEMPS);
    let _ = ffi::next_symbol(c"mkdtemp", &REAL_MKDTEMP);
}

/// Every file variant of the family is `mkostemps` with some arguments fixed.
///
/// # Safety
/// The `mkostemps` contract.
unsafe fn mkostemps_common(tmpl: *mut c_char, suffixlen: c_int, flags: c_int) -> c_int {
    let oflags = OFlags::from_bits_retain(flags as u32);
    // SAFETY: the contract is passed on.
    match unsafe { make_temp(tmpl, suffixlen, Temp::File(oflags)) } {
        Ok(Made::File(fd)) => std::os::fd::IntoRawFd::into_raw_fd(fd),
        Ok(Made::Dir) => ffi::fail(Errno::INVAL, -1), // not asked for
        Err(e) => ffi::fail(e, -1),
        Ok(Made::Outside) => {
            let f = ffi::next_symbol(c"mkostemps", &REAL_MKOSTEMPS);
            if f.is_null() {
                return ffi::fail(Errno::NOSYS, -1);
            }
            // SAFETY: `f` is glibc's `mkostemps`, whose signature is `MkstempFn`.
            let real = unsafe { core::mem::transmute::<*mut libc::c_void, MkstempFn>(f) };
            // SAFETY: the caller's arguments, under the same contract.
            unsafe { real(tmpl, suffixlen, flags) }
        }
    }
}

pub mod symbols {
    use super::*;

    /// # Safety
    /// C `rename`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
        // SAFETY: C strings or NULL, per the contract (the same for every hook below).
        status(unsafe {
            arg(old).and_then(|o| arg(new).and_then(|n| super::rename(Dir::Cwd, o, Dir::Cwd, n, 0)))
        })
    }

    /// # Safety
    /// C `renameat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn renameat(od: c_int, old: *const c_char, nd: c_int, new: *const c_char) -> c_int {
        // SAFETY: as above.
        status(unsafe {
            arg(old).and_then(|o| {
                arg(new).and_then(|n| super::rename(Dir::from_raw(od), o, Dir::from_raw(nd), n, 0))
            })
        })
    }

    /// # Safety
    /// C `renameat2`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn renameat2(
        od: c_int,
        old: *const c_char,
        nd: c_int,
        new: *const c_char,
        flags: c_uint,
    ) -> c_int {
        // SAFETY: as above.
        status(unsafe {
            arg(old).and_then(|o| {
                arg(new).and_then(|n| super::rename(Dir::from_raw(od), o, Dir::from_raw(nd), n, flags))
            })
        })
    }

    /// # Safety
    /// C `unlink`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::unlink(Dir::Cwd, p, AtFlags::empty())))
    }

    /// # Safety
    /// C `unlinkat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn unlinkat(dir: c_int, path: *const c_char, flags: c_int) -> c_int {
        let flags = AtFlags::from_bits_retain(flags as u32);
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::unlink(Dir::from_raw(dir), p, flags)))
    }

    /// # Safety
    /// C `rmdir`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::unlink(Dir::Cwd, p, AtFlags::REMOVEDIR)))
    }

    /// glibc's `remove` calls its internal unlink and rmdir, past the two hooks above.
    ///
    /// # Safety
    /// C `remove`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn remove(path: *const c_char) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(super::remove))
    }

    /// # Safety
    /// C `mkdir`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| mkdir_at(Dir::Cwd, p, mode)))
    }

    /// # Safety
    /// C `mkdirat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkdirat(dir: c_int, path: *const c_char, mode: mode_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| mkdir_at(Dir::from_raw(dir), p, mode)))
    }

    fn mkdir_at(dir: Dir, path: &CStr, mode: mode_t) -> Result<(), Errno> {
        parent_of(dir, path, Role::Create)?
            .with(|d, name| rustix::fs::mkdirat(d, name, Mode::from_raw_mode(mode)))
    }

    /// # Safety
    /// C `mknod`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mknod(path: *const c_char, mode: mode_t, dev: dev_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::mknod(Dir::Cwd, p, mode, dev)))
    }

    /// # Safety
    /// C `mknodat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mknodat(dir: c_int, path: *const c_char, mode: mode_t, dev: dev_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::mknod(Dir::from_raw(dir), p, mode, dev)))
    }

    /// # Safety
    /// C `mkfifo`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkfifo(path: *const c_char, mode: mode_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::mknod(Dir::Cwd, p, mode | libc::S_IFIFO, 0)))
    }

    /// # Safety
    /// C `mkfifoat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkfifoat(dir: c_int, path: *const c_char, mode: mode_t) -> c_int {
        // SAFETY: as above.
        status(
            unsafe { arg(path) }.and_then(|p| super::mknod(Dir::from_raw(dir), p, mode | libc::S_IFIFO, 0)),
        )
    }

    /// # Safety
    /// C `symlink`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn symlink(target: *const c_char, path: *const c_char) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(target).and_then(|t| arg(path).and_then(|p| symlink_at(t, Dir::Cwd, p))) })
    }

    /// # Safety
    /// C `symlinkat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn symlinkat(target: *const c_char, dir: c_int, path: *const c_char) -> c_int {
        // SAFETY: as above.
        status(unsafe {
            arg(target).and_then(|t| arg(path).and_then(|p| symlink_at(t, Dir::from_raw(dir), p)))
        })
    }

    /// The target is only text stored in the link: only where the link is made is judged.
    fn symlink_at(target: &CStr, dir: Dir, path: &CStr) -> Result<(), Errno> {
        parent_of(dir, path, Role::Create)?.with(|d, name| rustix::fs::symlinkat(target, d, name))
    }

    /// # Safety
    /// C `link`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn link(old: *const c_char, new: *const c_char) -> c_int {
        // SAFETY: as above.
        status(unsafe {
            arg(old).and_then(|o| arg(new).and_then(|n| super::link(Dir::Cwd, o, Dir::Cwd, n, 0)))
        })
    }

    /// # Safety
    /// C `linkat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn linkat(
        od: c_int,
        old: *const c_char,
        nd: c_int,
        new: *const c_char,
        flags: c_int,
    ) -> c_int {
        // SAFETY: as above.
        status(unsafe {
            arg(old).and_then(|o| {
                arg(new).and_then(|n| super::link(Dir::from_raw(od), o, Dir::from_raw(nd), n, flags))
            })
        })
    }

    /// # Safety
    /// C `chmod`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn chmod(path: *const c_char, mode: mode_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::chmod(Dir::Cwd, p, mode, 0)))
    }

    /// # Safety
    /// C `lchmod`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn lchmod(path: *const c_char, mode: mode_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::chmod(Dir::Cwd, p, mode, libc::AT_SYMLINK_NOFOLLOW)))
    }

    /// # Safety
    /// C `fchmodat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn fchmodat(dir: c_int, path: *const c_char, mode: mode_t, flags: c_int) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::chmod(Dir::from_raw(dir), p, mode, flags)))
    }

    /// # Safety
    /// C `chown`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn chown(path: *const c_char, owner: uid_t, group: gid_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::chown(Dir::Cwd, p, owner, group, 0)))
    }

    /// # Safety
    /// C `lchown`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn lchown(path: *const c_char, owner: uid_t, group: gid_t) -> c_int {
        // SAFETY: as above.
        status(
            unsafe { arg(path) }
                .and_then(|p| super::chown(Dir::Cwd, p, owner, group, libc::AT_SYMLINK_NOFOLLOW)),
        )
    }

    /// # Safety
    /// C `fchownat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn fchownat(
        dir: c_int,
        path: *const c_char,
        owner: uid_t,
        group: gid_t,
        flags: c_int,
    ) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::chown(Dir::from_raw(dir), p, owner, group, flags)))
    }

    /// # Safety
    /// C `truncate`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn truncate(path: *const c_char, len: off_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::truncate(p, len)))
    }

    /// # Safety
    /// C `truncate64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn truncate64(path: *const c_char, len: libc::off64_t) -> c_int {
        // SAFETY: as above.
        status(unsafe { arg(path) }.and_then(|p| super::truncate(p, len)))
    }

    /// # Safety
    /// C `mkstemp`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkstemp(tmpl: *mut c_char) -> c_int {
        // SAFETY: the contract is passed on (the same for the family below).
        unsafe { mkostemps_common(tmpl, 0, 0) }
    }

    /// # Safety
    /// C `mkstemp64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkstemp64(tmpl: *mut c_char) -> c_int {
        // SAFETY: as above (off_t is 64 bits: O_LARGEFILE is implied).
        unsafe { mkostemps_common(tmpl, 0, 0) }
    }

    /// # Safety
    /// C `mkostemp`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkostemp(tmpl: *mut c_char, flags: c_int) -> c_int {
        // SAFETY: as above.
        unsafe { mkostemps_common(tmpl, 0, flags) }
    }

    /// # Safety
    /// C `mkostemp64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkostemp64(tmpl: *mut c_char, flags: c_int) -> c_int {
        // SAFETY: as above.
        unsafe { mkostemps_common(tmpl, 0, flags) }
    }

    /// # Safety
    /// C `mkstemps`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkstemps(tmpl: *mut c_char, suffixlen: c_int) -> c_int {
        // SAFETY: as above.
        unsafe { mkostemps_common(tmpl, suffixlen, 0) }
    }

    /// # Safety
    /// C `mkstemps64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkstemps64(tmpl: *mut c_char, suffixlen: c_int) -> c_int {
        // SAFETY: as above.
        unsafe { mkostemps_common(tmpl, suffixlen, 0) }
    }

    /// # Safety
    /// C `mkostemps`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkostemps(tmpl: *mut c_char, suffixlen: c_int, flags: c_int) -> c_int {
        // SAFETY: as above.
        unsafe { mkostemps_common(tmpl, suffixlen, flags) }
    }

    /// # Safety
    /// C `mkostemps64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkostemps64(tmpl: *mut c_char, suffixlen: c_int, flags: c_int) -> c_int {
        // SAFETY: as above.
        unsafe { mkostemps_common(tmpl, suffixlen, flags) }
    }

    /// # Safety
    /// C `mkdtemp`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn mkdtemp(tmpl: *mut c_char) -> *mut c_char {
        // SAFETY: as above.
        match unsafe { make_temp(tmpl, 0, Temp::Dir) } {
            Ok(Made::Dir) => tmpl,
            Ok(Made::File(_)) => ffi::fail(Errno::INVAL, core::ptr::null_mut()), // not asked for
            Err(e) => ffi::fail(e, core::ptr::null_mut()),
            Ok(Made::Outside) => {
                let f = ffi::next_symbol(c"mkdtemp", &REAL_MKDTEMP);
                if f.is_null() {
                    return ffi::fail(Errno::NOSYS, core::ptr::null_mut());
                }
                // SAFETY: `f` is glibc's `mkdtemp`, whose signature is `MkdtempFn`.
                let real = unsafe { core::mem::transmute::<*mut libc::c_void, MkdtempFn>(f) };
                // SAFETY: the caller's template, under the same contract.
                unsafe { real(tmpl) }
            }
        }
    }
}
