//! The rule around one open: classify the path, open, `fstat` the descriptor, decide.
//!
//! Everything here runs on the caller's stack with raw system calls: no allocation, no
//! lock. Paths outside every root are opened with no extra system call at all.

use core::ffi::CStr;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;
use toctou_policy::logline::Denial;
use toctou_policy::{Decision, DenyReason, Expected, Meta, PATH_MAX, ScratchPath, Target};

use crate::ffi;
use crate::fmtbuf::FmtBuf;
use crate::state::{self, Phase, State};

/// The directory a relative path is resolved against.
#[derive(Clone, Copy)]
pub enum Dir {
    Cwd,
    /// An `openat` dirfd as the caller passed it (validity is the kernel's business).
    Fd(RawFd),
}

impl Dir {
    pub fn from_raw(fd: RawFd) -> Dir {
        if fd == libc::AT_FDCWD {
            Dir::Cwd
        } else {
            Dir::Fd(fd)
        }
    }

    /// Run `f` with the directory as a descriptor, for a system call on `path`.
    fn with<R>(self, path: &CStr, f: impl FnOnce(BorrowedFd<'_>) -> Result<R, Errno>) -> Result<R, Errno> {
        match self {
            Dir::Cwd => f(CWD),
            // The kernel ignores the directory of an absolute path (even -1).
            Dir::Fd(_) if path.to_bytes().first() == Some(&b'/') => f(CWD),
            // A negative number is no descriptor (`BorrowedFd` cannot even hold -1).
            Dir::Fd(fd) if fd < 0 => Err(Errno::BADF),
            // SAFETY: `fd` is not negative, and it is only passed to system calls for the
            // duration of this call; if it is not open the kernel answers EBADF, as libc would.
            Dir::Fd(fd) => f(unsafe { BorrowedFd::borrow_raw(fd) }),
        }
    }
}

/// `openat(dir, path, flags, mode)` under the rule.
pub fn open(dir: Dir, path: &CStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    let req = OpenReq {
        dir,
        path,
        flags,
        mode,
    };
    match state::current() {
        Phase::Passthrough => req.raw(),
        Phase::Guard(st) => guarded(st, &req),
    }
}

/// One open as the caller asked for it.
struct OpenReq<'a> {
    dir: Dir,
    path: &'a CStr,
    flags: OFlags,
    mode: Mode,
}

impl OpenReq<'_> {
    /// The open itself, untouched.
    fn raw(&self) -> Result<OwnedFd, Errno> {
        self.raw_with(self.flags)
    }

    fn raw_with(&self, flags: OFlags) -> Result<OwnedFd, Errno> {
        self.dir
            .with(self.path, |d| rustix::fs::openat(d, self.path, flags, self.mode))
    }

    fn bytes(&self) -> &[u8] {
        self.path.to_bytes()
    }
}

fn guarded(st: &State, req: &OpenReq<'_>) -> Result<OwnedFd, Errno> {
    let bytes = req.bytes();
    // Fast path: a clean absolute path (what servers pass) is matched in place, no copy.
    if bytes.first() == Some(&b'/')
        && let Some(target) = st.policy.classify_clean(bytes)
    {
        return apply(st, target, bytes, req);
    }
    if bytes.len() >= PATH_MAX {
        return Err(Errno::NAMETOOLONG); // the kernel's answer for any path this long
    }
    let mut base_buf = [0u8; PATH_MAX];
    let base = if bytes.first() == Some(&b'/') {
        None
    } else {
        match dir_path(req.dir, &mut base_buf) {
            Ok(b) => Some(b),
            // Not a directory, not open: the kernel's own answer, as without the guard.
            Err(BaseDir::Kernel(e)) => return Err(e),
            Err(BaseDir::Unnamed) => {
                return refuse_unopened(st, DenyReason::UnresolvedDirfd, bytes, b"", req);
            }
        }
    };
    let mut norm = ScratchPath::new();
    match st.policy.classify(base, bytes, &mut norm) {
        // Log the path as asked: the normalised one stops where the walk was refused.
        Target::Deny(reason) => refuse_unopened(st, reason, bytes, b"", req),
        target => apply(st, target, norm.as_bytes(), req),
    }
}

/// Act on a classified path; `normalized` is what tenant lengths index into.
fn apply(st: &State, target: Target, normalized: &[u8], req: &OpenReq<'_>) -> Result<OwnedFd, Errno> {
    let (tenant_len, expected) = match target {
        Target::Outside => return req.raw(),
        Target::Deny(reason) => return refuse_unopened(st, reason, normalized, b"", req),
        Target::Guarded {
            tenant_len, expected, ..
        } => (tenant_len, expected),
    };
    let tenant = &normalized[..tenant_len];
    let expected_uid = match expected {
        Expected::Uid(uid) => uid,
        Expected::Euid => rustix::process::geteuid().as_raw(),
        Expected::TenantOwner => match cached_tenant_owner(st, tenant) {
            Ok(uid) => uid,
            Err(reason) => return refuse_unopened(st, reason, normalized, tenant, req),
        },
    };
    let check = Check {
        st,
        expected: expected_uid,
        path: normalized,
        tenant,
    };
    if req.flags.contains(OFlags::TMPFILE) {
        return check.tmpfile(req);
    }
    if req.flags.contains(OFlags::CREATE) {
        return check.create(req);
    }
    // O_TRUNC waits for the verdict: a refused open must not have emptied the victim's file.
    let fd = req.raw_with(req.flags - OFlags::TRUNC)?;
    check.opened(fd, req.flags)
}

/// The expected owner and the names to log, for one guarded open.
struct Check<'a> {
    st: &'a State,
    expected: u32,
    path: &'a [u8],
    tenant: &'a [u8],
}

impl Check<'_> {
    /// Decide on the descriptor the caller will read; on refusal close it *then* fail.
    fn opened(&self, fd: OwnedFd, flags: OFlags) -> Result<OwnedFd, Errno> {
        let st = rustix::fs::fstat(&fd)?;
        self.verdict(st.st_uid)?;
        // Only regular files are truncated: the kernel ignores O_TRUNC on FIFOs, devices
        // and sockets, where ftruncate would fail with EINVAL.
        let regular = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
        if flags.contains(OFlags::TRUNC) && writable(flags) && regular {
            rustix::fs::ftruncate(&fd, 0)?;
        }
        Ok(fd)
    }

    /// Allow, or log and answer EACCES (audit mode: log and allow).
    fn verdict(&self, owner: u32) -> Result<(), Errno> {
        match self.st.policy.decide(owner, self.expected) {
            Decision::Allow => Ok(()),
            d => self.refused(d, Some(owner)),
        }
    }

    /// Log a refusal; `Err(EACCES)` unless audit mode lets it through.
    fn refused(&self, decision: Decision, owner: Option<u32>) -> Result<(), Errno> {
        let (audit, reason) = match decision {
            Decision::Allow => return Ok(()),
            Decision::Audit(r) => (true, r),
            Decision::Deny(r) => (false, r),
        };
        log(
            self.st,
            audit,
            reason,
            owner,
            Some(self.expected),
            self.tenant,
            self.path,
        );
        if audit { Ok(()) } else { Err(Errno::ACCESS) }
    }

    /// `O_CREAT`: an existing file is judged by its owner; a new one may only be created in
    /// a directory the rule accepts, judged on the directory object we then create it in
    /// (`O_EXCL|O_NOFOLLOW`, so no symlink can redirect the creation).
    fn create(&self, req: &OpenReq<'_>) -> Result<OwnedFd, Errno> {
        let flags = req.flags;
        let user_excl = flags.contains(OFlags::EXCL);
        let Some((parent, name)) = split_parent(req.path) else {
            // `dir/`, `.`, `..`: nothing can be created there; open what exists and judge it.
            let fd = req.raw_with(flags - OFlags::CREATE - OFlags::EXCL - OFlags::TRUNC)?;
            return self.opened(fd, flags);
        };
        // Bounded: each round either finds the file, creates it, or loses a race to a
        // concurrent creator; a dangling symlink in its place makes every round fail.
        for _ in 0..3 {
            if !user_excl {
                match req.raw_with(flags - OFlags::CREATE - OFlags::TRUNC) {
                    Ok(fd) => return self.opened(fd, flags),
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(e),
                }
            }
            let pdir = req.dir.with(parent.as_c(), |d| {
                rustix::fs::openat(d, parent.as_c(), dir_flags(), Mode::empty())
            })?;
            self.verdict(rustix::fs::fstat(&pdir)?.st_uid)?;
            let create = (flags | OFlags::EXCL | OFlags::NOFOLLOW) - OFlags::TRUNC;
            match rustix::fs::openat(&pdir, name, create, req.mode) {
                Ok(fd) => return Ok(fd), // new and empty: nothing to truncate
                Err(Errno::EXIST) if !user_excl => continue,
                Err(e) => return Err(e),
            }
        }
        // Still "exists" yet cannot be opened: a dangling symlink (or a lost race each time).
        let audit = self.st.policy.refuse(DenyReason::DanglingSymlink);
        self.refused(audit, None)?;
        req.raw() // audit mode: what the call would have done without the guard
    }

    /// `O_TMPFILE`: the new inode belongs to us; judge the directory it is created in.
    fn tmpfile(&self, req: &OpenReq<'_>) -> Result<OwnedFd, Errno> {
        let pdir = req.raw_with(dir_flags())?;
        self.verdict(rustix::fs::fstat(&pdir)?.st_uid)?;
        rustix::fs::openat(&pdir, c".", req.flags, req.mode)
    }
}

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn writable(flags: OFlags) -> bool {
    flags.intersects(OFlags::WRONLY | OFlags::RDWR)
}

/// One denial line (or audit line) to syslog.
fn log(
    st: &State,
    audit: bool,
    reason: DenyReason,
    owner: Option<u32>,
    expected: Option<u32>,
    tenant: &[u8],
    path: &[u8],
) {
    st.log.event(Denial {
        audit,
        reason,
        mode: st.policy.mode(),
        uid: Some(rustix::process::geteuid().as_raw()),
        owner,
        expected,
        suppressed: 0,
        comm: b"",
        tenant,
        path,
    });
}

/// Refuse a path that is wrong before anything is opened (audit mode: log, then open).
fn refuse_unopened(
    st: &State,
    reason: DenyReason,
    path: &[u8],
    tenant: &[u8],
    req: &OpenReq<'_>,
) -> Result<OwnedFd, Errno> {
    let audit = matches!(st.policy.refuse(reason), Decision::Audit(_));
    let path = if path.is_empty() { req.bytes() } else { path };
    log(st, audit, reason, None, None, tenant, path);
    match reason {
        _ if audit => req.raw(),
        DenyReason::PathTooLong => Err(Errno::NAMETOOLONG),
        _ => Err(Errno::ACCESS),
    }
}

/// The tenant directory's owner: cached, else `lstat` (never following it).
fn cached_tenant_owner(st: &State, tenant: &[u8]) -> Result<u32, DenyReason> {
    let key = st.owners.key(tenant);
    let now = state::now_ms();
    if let Some(uid) = st.owners.get(key, now) {
        return Ok(uid);
    }
    let meta = if tenant.len() < 256 {
        lstat(tenant, &mut [0u8; 256])
    } else {
        lstat(tenant, &mut [0u8; PATH_MAX])
    };
    let uid = toctou_policy::tenant_owner(meta)?;
    st.owners.put(key, uid, now);
    Ok(uid)
}

/// `lstat` of `name` (copied into `buf` to add the NUL); `None` if it cannot be read.
fn lstat(name: &[u8], buf: &mut [u8]) -> Option<Meta> {
    let nul = buf.get_mut(..=name.len())?;
    nul[..name.len()].copy_from_slice(name);
    nul[name.len()] = 0;
    let c = CStr::from_bytes_with_nul(nul).ok()?;
    let s = rustix::fs::statat(CWD, c, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some(Meta {
        uid: s.st_uid,
        mode: s.st_mode,
    })
}

/// Why a relative path's base directory has no name.
enum BaseDir {
    /// The kernel would refuse the open itself: this is its answer.
    Kernel(Errno),
    /// It is a directory, but it cannot be named (deleted, or deeper than `PATH_MAX`).
    Unnamed,
}

/// The absolute path of the directory a relative path starts from.
fn dir_path(dir: Dir, buf: &mut [u8; PATH_MAX]) -> Result<&[u8], BaseDir> {
    let fd = match dir {
        Dir::Cwd => return ffi::getcwd(&mut buf[..]).ok_or(BaseDir::Unnamed),
        Dir::Fd(fd) if fd < 0 => return Err(BaseDir::Kernel(Errno::BADF)),
        Dir::Fd(fd) => fd,
    };
    let mut link = FmtBuf::<32>::new();
    let _ = core::fmt::Write::write_fmt(&mut link, format_args!("/proc/self/fd/{fd}"));
    let link = link.as_cstr().ok_or(BaseDir::Unnamed)?;
    match rustix::fs::readlinkat_raw(CWD, link, &mut buf[..]) {
        Ok(n) if n < PATH_MAX && buf.first() == Some(&b'/') => {
            // Named; but a relative open from anything but a directory is ENOTDIR.
            let st = rustix::fs::statat(CWD, link, AtFlags::empty()).map_err(BaseDir::Kernel)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Err(BaseDir::Kernel(Errno::NOTDIR));
            }
            Ok(&buf[..n])
        }
        Err(Errno::NOENT) => Err(BaseDir::Kernel(Errno::BADF)), // not an open descriptor
        // `pipe:[N]`, `socket:[N]`, `anon_inode:...`: not a directory.
        Ok(_) if buf.first() != Some(&b'/') => Err(BaseDir::Kernel(Errno::NOTDIR)),
        _ => Err(BaseDir::Unnamed),
    }
}

/// A parent directory path (NUL-terminated, on the stack) and the final name.
struct Parent {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl Parent {
    fn as_c(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).unwrap_or(c".")
    }
}

fn split_parent(path: &CStr) -> Option<(Parent, &CStr)> {
    let bytes = path.to_bytes_with_nul();
    let body = &bytes[..bytes.len() - 1];
    let slash = body.iter().rposition(|&b| b == b'/');
    let name = CStr::from_bytes_with_nul(&bytes[slash.map_or(0, |i| i + 1)..]).ok()?;
    if matches!(name.to_bytes(), b"" | b"." | b"..") {
        return None;
    }
    let mut parent = Parent {
        buf: [0; PATH_MAX],
        len: 1,
    };
    match slash {
        None => parent.buf[0] = b'.',
        Some(0) => parent.buf[0] = b'/',
        Some(i) => {
            parent.buf[..i].copy_from_slice(&body[..i]);
            parent.len = i;
        }
    }
    parent.buf[parent.len] = 0;
    Some((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        let (p, n) = split_parent(c"/home/a/x.html").unwrap();
        assert_eq!((p.as_c(), n), (c"/home/a", c"x.html"));
        let (p, n) = split_parent(c"x").unwrap();
        assert_eq!((p.as_c(), n), (c".", c"x"));
        let (p, n) = split_parent(c"/x").unwrap();
        assert_eq!((p.as_c(), n), (c"/", c"x"));
        assert!(split_parent(c"a/").is_none());
        assert!(split_parent(c"a/..").is_none());
    }
}
